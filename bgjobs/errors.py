"""The one exception hierarchy. Every message says what was wrong and what to do."""

from __future__ import annotations

# Exit codes shared by every console script (documented in --help and the README).
EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2  # bad config, bad arguments, a refused launch
EXIT_NO_JOB = 3
EXIT_ALREADY_FINAL = 4
EXIT_CANCEL_IN_PROGRESS = 5
EXIT_TIMEOUT = 6
EXIT_STORE = 7  # the job store (state/jobs.sqlite3, or PostgreSQL) is damaged, foreign, newer, gone, unreachable, or cannot be written


class BgjobsError(Exception):
    """Base class of every error bgjobs raises on purpose."""

    exit_code = EXIT_USAGE


class ConfigError(BgjobsError):
    """config.yaml is missing, malformed, or holds a wrong key or value."""


class RejectedError(BgjobsError):
    """A launch was refused: class not allowed, bad method, or bad params."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        # Which input was wrong ("class", "method", "params", "priority", or a
        # parameter name), so the dashboard can show the error at the field.
        self.field = field


class NoSuchJob(BgjobsError):
    exit_code = EXIT_NO_JOB

    def __init__(self, job_id: int) -> None:
        super().__init__(f"no job {job_id}; run `job-status` to list jobs")
        self.job_id = job_id


class AlreadyFinal(BgjobsError):
    exit_code = EXIT_ALREADY_FINAL

    def __init__(self, job) -> None:
        super().__init__(f"job {job.id} already {job.status.value}")
        self.job = job


class CancelInProgress(BgjobsError):
    """Another caller won the race to cancel this job; it reports the outcome."""

    exit_code = EXIT_CANCEL_IN_PROGRESS

    def __init__(self, job) -> None:
        who = job.cancel_source or "another caller"
        super().__init__(
            f"job {job.id} is already being cancelled (requested by {who}); it is now {job.status.value}"
        )
        self.job = job


class WaitTimeout(BgjobsError):
    """wait_for() gave up before the job was final; the job itself runs on."""

    exit_code = EXIT_TIMEOUT


class StoreError(BgjobsError):
    """The job store cannot be used: the file is not a bgjobs database, is
    damaged or of a newer schema, was deleted while open, or cannot be written
    (a full disk). The message names the file and says what to do; the file
    itself is left as it was."""

    exit_code = EXIT_STORE

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path
