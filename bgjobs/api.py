"""The library: what the CLI, the dashboard and user code all call."""

from __future__ import annotations

import os
import time

from . import launcher, limits, spare
from .config import Config
from .errors import NoSuchJob, WaitTimeout
from .job import Job
from .wiring import wire

_ConfigArg = Config | str | os.PathLike | None


def run_background_job(job, method: str, *params, config: _ConfigArg = None, **options) -> int:
    """Validate and queue `job.method(*params)` to run in its own process; returns
    the new job's id at once. `job` is a class or a dotted path string.

    Options (as on the CLI): priority, delay, at, max_retries, retry_delay,
    timeout, source, user. Raises RejectedError (nothing is created) when the
    class, method or params are not allowed.
    """
    return submit(job, method, params, config=config, **options).id


def submit(job, method: str, params=(), *, config: _ConfigArg = None, **options) -> Job:
    """Like run_background_job, but returns the new Job snapshot."""
    options.setdefault("source", "api")
    rt = wire(config)
    row = launcher.insert_job(rt, launcher.prepare(rt, job, method, params, **options))
    spare.dispatch(rt)  # through this process's warm spare, if it has one
    return row


def cancel_job(
    job_id: int,
    *,
    grace: float | None = None,
    source: str = "api",
    user: str | None = None,
    config: _ConfigArg = None,
    wait: bool = True,
):
    """Stop job `job_id`; returns a CancelResult once it is final. Raises NoSuchJob,
    AlreadyFinal or CancelInProgress. See bgjobs.cancel."""
    from .cancel import cancel

    rt = wire(config)
    result = cancel(rt, int(job_id), grace=grace, source=source, user=user, wait=wait)
    launcher.dispatch(rt)  # the slot it freed, if any, goes to the next job
    return result


def get_job(job_id: int, *, config: _ConfigArg = None, refresh: bool = True) -> Job:
    """The job's current row (after a dispatch, so lost runners are settled)."""
    rt = wire(config)
    if refresh:
        launcher.dispatch(rt)
    job = rt.store.get(int(job_id))
    if job is None:
        raise NoSuchJob(job_id)
    return job


def list_jobs(*, config: _ConfigArg = None, refresh: bool = True, **filters) -> list[Job]:
    """Recent jobs, newest first; filters as Store.list_jobs (statuses, class_path,
    since, until, text, limit)."""
    if filters.get("limit") is not None:
        filters["limit"] = limits.whole("limit", filters["limit"], 1, 10**6)
    rt = wire(config)
    if refresh:
        launcher.dispatch(rt)
    return rt.store.list_jobs(**filters)


def wait_for(job_id: int, *, timeout: float | None = None, config: _ConfigArg = None) -> Job:
    """Block until the job is final; returns it. Raises WaitTimeout."""
    rt = wire(config)
    deadline = None if timeout is None else time.monotonic() + timeout
    pause, last_dispatch = 0.002, time.monotonic()
    while True:
        job = rt.store.get(int(job_id))
        if job is None:
            raise NoSuchJob(job_id)
        if job.is_final:
            return job
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise WaitTimeout(
                f"job {job_id} is still {job.status.value} after {timeout:g}s and runs on; "
                f"see it with `job-status {job_id}`, stop it with `job-cancel {job_id}`"
            )
        if now - last_dispatch > 1.0:
            launcher.dispatch(rt)  # settle a lost runner, start a due retry
            last_dispatch = now
        time.sleep(pause)
        pause = min(pause * 1.5, 0.05)


def job_counts(*, config: _ConfigArg = None, since: float | None = None) -> dict[str, int]:
    """Jobs per status. With `since` (epoch seconds), only jobs finished since then
    or not finished yet."""
    return wire(config).store.counts(since=since)


def retry_job(job_id: int, *, source: str = "api", user: str | None = None, config: _ConfigArg = None) -> Job:
    """Launch a new job with the same class, method, params, priority, retries,
    retry delay and timeout as job `job_id` (re-validated against today's allowlist)."""
    rt = wire(config)
    old = rt.store.get(int(job_id))
    if old is None:
        raise NoSuchJob(job_id)
    launch = launcher.prepare(
        rt,
        old.class_path,
        old.method,
        old.params,
        priority=old.priority,
        max_retries=old.max_attempts - 1,
        retry_delay=old.retry_delay,
        timeout=old.timeout,
        source=source,
        user=user,
        retry_of=old.id,
    )
    row = launcher.insert_job(rt, launch)
    spare.dispatch(rt)
    return row


def hosts(*, config: _ConfigArg = None) -> list[dict]:
    """Fleet mode: each host's row (name, pid, started, last_seen, seen_ago,
    slots, version, config_fingerprint) with `running`, its running jobs now,
    and `warnings` (a config that differs from this one's, a host not seen for
    a while). [] on one host."""
    rt = wire(config)
    if rt.config.executor != "procrastinate":
        return []
    from .fleet import config_fingerprint
    from .worker import SWEEP

    mine = config_fingerprint(rt.config)
    rows = []
    for row in rt.store.hosts():
        row = dict(row)
        row["running"] = rt.store.running_on(row["name"])
        warnings = []
        if row.get("config_fingerprint") != mine:
            warnings.append("its allowlist or defaults differ from this config's: it re-checks every job")
        if (row.get("seen_ago") or 0) > 5 * SWEEP:
            warnings.append(f"not seen for {row['seen_ago']:.0f} s: its job-worker is stopped or cut off")
        row["warnings"] = warnings
        rows.append(row)
    return rows


def output_tail(job_id: int, *, max_bytes: int = 64 * 1024, config: _ConfigArg = None) -> str:
    """The last `max_bytes` of the job's stdout/stderr file ('' if none yet).
    In fleet mode, for a job whose output is on another host, the tail its
    runner stored last (every few seconds, and at the end of each attempt)."""
    from .output import tail

    rt = wire(config)
    text = tail(rt.config.output_path(int(job_id)), max_bytes)
    if text is None:
        text = (rt.store.output_tail(int(job_id)) or "")[-max_bytes:]
    return text


def catalog(*, config: _ConfigArg = None) -> list[dict]:
    """What may run: one entry per allowlisted class with its allowed methods and
    their params (name, kind, default), for forms such as the dashboard's.
    A class that fails to import is listed with an `error`."""
    from . import allowlist

    rt = wire(config)
    return allowlist.describe(rt.config)
