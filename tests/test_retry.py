"""Failed attempts: retries with backoff, hard deaths, timeouts, and how failures are reported."""

from __future__ import annotations

import pytest


def test_exception_is_retried_then_failed_with_traceback(project):
    job_id = project.submit("fail", "kaput", max_retries=2)
    job = project.wait_final(job_id)
    assert job.status.value == "failed"
    assert job.attempt == 3 and job.exception == "ValueError" and job.error == "kaput"
    events = project.events(job_id)
    assert events.count("attempt_failed") == 3
    assert events.count("retry_scheduled") == 2
    assert events[-1] == "failed"
    errors = [r for r in project.records(errors=True) if r["job_id"] == job_id]
    tracebacks = [r["traceback"] for r in errors if r["event"] == "attempt_failed"]
    assert len(tracebacks) == 3 and all("ValueError: kaput" in tb for tb in tracebacks)
    assert all(r["level"] == "ERROR" for r in errors)


def test_retry_succeeds_on_second_attempt(project, tmp_path):
    job_id = project.submit("fail_then_ok", str(tmp_path / "marker"), max_retries=1)
    job = project.wait_final(job_id)
    assert job.status.value == "succeeded" and job.attempt == 2


def test_retry_delay_grows_with_backoff(project):
    project.write_config(retry_delay=0.3, retry_backoff=2, max_retries=2)
    job_id = project.submit("fail")
    project.wait_final(job_id)
    from datetime import datetime

    starts = [
        datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
        for r in project.records()
        if r["job_id"] == job_id and r["event"] == "started"
    ]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 2
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # 0.3 * 2^0, then 0.3 * 2^1


@pytest.mark.parametrize(
    ("method", "exception", "detail"),
    [
        ("exit_hard", "ExitCode", "exited with code 3"),
        ("kill_self", "KilledBySignal", "SIGKILL"),
        ("segfault", "KilledBySignal", "SIGSEGV"),
    ],
)
def test_hard_deaths_are_recorded_and_retried(project, method, exception, detail):
    job_id = project.submit(method, max_retries=1)
    job = project.wait_final(job_id)
    assert job.status.value == "failed"
    assert job.attempt == 2
    assert job.exception == exception and detail in job.error
    assert job.exit_code == (3 if method == "exit_hard" else None)
    assert project.events(job_id).count("attempt_failed") == 2


def test_timeout_stops_attempt_and_counts_as_failure(project):
    project.write_config(cancel_grace=0.5)
    job_id = project.submit("sleep", 60, timeout=0.3, max_retries=1)
    job = project.wait_final(job_id)
    assert job.status.value == "failed"
    assert job.exception == "TimeoutError" and "timed out" in job.error
    assert project.events(job_id).count("timed_out") == 2


def test_a_failure_too_long_to_report_whole_is_cut_and_still_reported(project):
    # 20,000 snowmen: 120 KB as JSON escapes, twice over (the error, and the
    # traceback that ends with it), against a report limit of 60 KiB.
    job_id = project.submit("fail", "\u2603" * 20_000)
    job = project.wait_final(job_id)
    assert (job.status.value, job.exception) == ("failed", "ValueError")
    assert job.error.startswith("\u2603" * 100) and len(job.error) < 20_000
    failed = [r for r in project.records(errors=True) if r["job_id"] == job_id and r.get("traceback")]
    assert failed and failed[-1]["traceback"].rstrip().endswith("\u2603" * 100)
