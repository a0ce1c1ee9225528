"""Reconcile: find jobs marked running whose runner is gone, and settle them.

A runner holds an exclusive flock on its job's lock file for its whole life,
and the kernel drops that lock however the runner dies (kill -9, OOM, a
segfault, a reboot). So a running job whose lock we can take has lost its
runner. We hold the lock while we settle the job, so reconcilers in other
processes cannot settle it twice.
"""

from __future__ import annotations

import _signal as signal  # the C module: the signal wrapper builds IntEnums of all signals
import os
import time

from . import procs
from .job import Job, Status
from .runtime import Runtime

# Seconds past a cancel's grace period before reconcile stops the job itself.
STUCK_MARGIN = 5.0


def reconcile(rt: Runtime) -> list[Job]:
    """Settle every running job whose runner died. Returns the settled jobs."""
    settled = []
    now = time.time()
    for job in rt.store.jobs_in(Status.RUNNING):
        fd = procs.open_lock(rt.lock_path(job.id))
        try:
            if not procs.try_lock(fd):
                if (
                    job.cancel_requested_at
                    and now > job.cancel_requested_at + job.cancel_grace + STUCK_MARGIN
                ):
                    force_stop(job)  # the runner is alive but did not stop in time
                continue  # its runner is alive
            current = rt.store.get(job.id)
            if current is None or current.status is not Status.RUNNING:
                continue  # it finished while we looked
            stop_leftovers(current)
            done = settle_lost(rt, current, "its runner process died (killed, crashed or rebooted)")
            if done is not None:
                settled.append(done)
        finally:
            os.close(fd)
    return settled


def force_stop(job: Job) -> None:
    """SIGKILL a cancelled job's attempt group and its runner (both verified), for a
    runner that missed its grace period. The next reconcile records the cancel."""
    stop_leftovers(job)
    procs.signal_verified(job.runner_pid, job.runner_start, signal.SIGKILL, group=False)


def stop_leftovers(job: Job) -> None:
    """SIGKILL what is left of the job's attempt process group, if provably ours."""
    if not job.pid:
        return
    if procs.signal_verified(job.pid, job.pid_start, signal.SIGKILL, group=True):
        return
    # The leader is gone. While any member of its group lives, the kernel will
    # not hand out that pid again, so a group with no process at `pid` is ours.
    if procs.start_time(job.pid) is None and procs.group_alive(job.pid):
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def settle_lost(rt: Runtime, job: Job, reason: str) -> Job | None:
    """running -> cancelled (if asked), retrying (attempts left) or failed."""
    store, log = rt.store, rt.log
    if job.cancel_requested_at is not None:
        done = store.mark_lost(job.id, retry_at=None, cancelled=True, error=f"cancelled; {reason}")
        if done:
            log_cancelled(log, done, f"job {job.id} cancelled ({reason})")
        return done
    retry_at = time.time() + job.next_retry_delay() if job.attempts_left else None
    done = store.mark_lost(job.id, retry_at=retry_at, cancelled=False, error=reason)
    if done is None:
        return None
    log.emit(
        "lost",
        level="ERROR",
        job=done,
        message=f"job {job.id} lost: {reason}",
        exception="RunnerLost",
        error=reason,
        traceback=None,
        pid=job.runner_pid,
    )
    log_next_step(log, job, done, f"after {job.attempt} attempt(s)", "RunnerLost", reason)
    return done


def log_cancelled(log, done: Job, message: str, **extra) -> None:
    """The `cancelled` record of a job now cancelled, naming who asked for it."""
    log.emit(
        "cancelled",
        level="WARNING",
        job=done,
        message=message,
        source=done.cancel_source,
        user=done.cancel_user,
        **extra,
    )


def log_next_step(log, job: Job, done: Job, why: str, exception: str | None, error: str | None) -> None:
    """After a failed attempt of `job` (now `done`): log the retry, or the failure."""
    if done.status is Status.RETRYING:
        log.emit(
            "retry_scheduled",
            level="WARNING",
            job=done,
            message=f"job {job.id} will retry in {job.next_retry_delay():g}s "
            f"(attempt {job.attempt + 1} of {job.max_attempts})",
            delay=job.next_retry_delay(),
        )
    else:
        log.emit(
            "failed",
            level="ERROR",
            job=done,
            message=f"job {job.id} failed {why}: {error}",
            exception=exception,
            error=error,
            duration=done.duration,
        )
