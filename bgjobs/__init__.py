"""bgjobs: broker-free background jobs. Each job is its own OS process.

    from bgjobs import run_background_job
    job_id = run_background_job("jobs.example.ExampleJob", "handle", 5)

Names are imported lazily, so a runner or `job-run` loads only what it uses.
"""

from __future__ import annotations

__version__ = "0.1.0"

_EXPORTS = {
    "run_background_job": "api",
    "submit": "api",
    "cancel_job": "api",
    "get_job": "api",
    "list_jobs": "api",
    "wait_for": "api",
    "JobCancelled": "context",
    "cancel_requested": "context",
    "current_job": "context",
    "progress": "context",
    "Job": "job",
    "Status": "job",
    "load_config": "config",
    "BgjobsError": "errors",
    "ConfigError": "errors",
    "RejectedError": "errors",
    "NoSuchJob": "errors",
    "AlreadyFinal": "errors",
    "CancelInProgress": "errors",
    "WaitTimeout": "errors",
    "StoreError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bgjobs' has no attribute {name!r}")
    import sys

    __import__(f"bgjobs.{module}")
    value = getattr(sys.modules[f"bgjobs.{module}"], name)
    globals()[name] = value
    return value
