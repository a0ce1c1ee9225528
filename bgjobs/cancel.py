"""Cancel a job: at once if it waits, by signal through its runner if it runs.

The runner of a running job is identified by (pid, start time) and signalled
through a pidfd, so a recycled pid is never hit. The runner forwards SIGTERM
to the attempt's process group and SIGKILLs it after the grace period.
"""

from __future__ import annotations

import signal
import time
from typing import NamedTuple

from . import lifecycle, procs, recovery
from .errors import AlreadyFinal, CancelInProgress, NoSuchJob
from .job import Job, Status
from .limits import check_grace
from .runtime import Runtime

MARGIN = recovery.STUCK_MARGIN  # seconds past the grace before we stop the attempt ourselves


class CancelResult(NamedTuple):
    """`job` as it ended up, and `waited`: seconds from the request to the final state."""

    job: Job
    waited: float

    @property
    def cancelled(self) -> bool:
        return self.job.status is Status.CANCELLED


def cancel(
    rt: Runtime,
    job_id: int,
    *,
    grace: float | None = None,
    source: str = "api",
    user: str | None = None,
    wait: bool = True,
) -> CancelResult:
    """Stop job `job_id` and return its final state.

    Raises NoSuchJob, AlreadyFinal (with the state it ended in), or
    CancelInProgress when another caller's cancel won the race (after that
    cancel has finished, so its message carries the outcome).
    """
    from .launcher import dispatch

    t0 = time.monotonic()
    store = rt.store
    grace = None if grace is None else check_grace(grace)
    recovery.reconcile(rt)
    for _ in range(10):  # a few rounds: the job may change state under us
        job = store.get(job_id)
        if job is None:
            raise NoSuchJob(job_id)
        if job.is_final:
            raise AlreadyFinal(job)
        if job.status in (Status.QUEUED, Status.RETRYING):
            done = lifecycle.cancel_waiting(rt, job, source, user)
            if done is None:
                continue  # it was claimed, or cancelled, meanwhile
            procs.remove_lock_if_free(rt.lock_path(job_id))  # a retry's lock file outlives its runner
            dispatch(rt)
            return CancelResult(done, time.monotonic() - t0)
        grace = job.cancel_grace if grace is None else float(grace)
        flagged = lifecycle.request_cancel(rt, job_id, source, user, grace)
        if flagged is None:
            job = store.get(job_id)
            if job.status is Status.RUNNING and job.cancel_requested_at is not None:
                final = _wait_final(rt, job_id, job.cancel_grace + MARGIN) if wait else job
                raise CancelInProgress(final)
            continue
        signalled = flagged.runner_pid if _signal_runner(rt, flagged) else None
        if not wait:
            return CancelResult(flagged, time.monotonic() - t0)
        final = _wait_final(rt, job_id, grace + MARGIN, resignal=True, signalled_pid=signalled)
        if not final.is_final:
            final = _force(rt, final)
            dispatch(rt)  # the runner did not live to fill its slot
        return CancelResult(final, time.monotonic() - t0)
    job = store.get(job_id)
    raise AlreadyFinal(job) if job.is_final else CancelInProgress(job)


def _signal_runner(rt: Runtime, job: Job) -> bool:
    """SIGTERM the job's runner if it is provably still that runner. When the
    runner is gone (or the pid was reused), reconcile settles the job instead."""
    if job.runner_pid is None:
        return False  # claimed, not started: the runner sees the flag on start
    if procs.signal_verified(job.runner_pid, job.runner_start, signal.SIGTERM, group=False):
        return True
    recovery.reconcile(rt)
    return False


def _wait_final(
    rt: Runtime, job_id: int, limit: float, resignal: bool = False, signalled_pid: int | None = None
) -> Job:
    """Poll until job `job_id` is final or `limit` seconds pass. With `resignal`,
    signal a runner other than `signalled_pid` (already told) once it appears."""
    start = time.monotonic()
    deadline = start + limit
    pause = 0.0005
    while True:
        job = rt.store.get(job_id)
        if job.is_final or time.monotonic() >= deadline:
            return job
        if resignal and job.runner_pid and job.runner_pid != signalled_pid:
            # The runner recorded itself after our first look: tell it now.
            if _signal_runner(rt, job):
                signalled_pid = job.runner_pid
        if not procs.same_process(job.runner_pid, job.runner_start) and job.runner_pid:
            recovery.reconcile(rt)
        time.sleep(pause)
        # A read of one row is cheap (~0.1 ms): look often while a prompt stop is
        # likely. A cooperative job is recorded 2 to 4 ms after the signal, and
        # these looks (at 0.5, 1.1, 1.8, 2.7, 3.7, 5.0 ms) catch that sooner than
        # a 1 ms start with 1.5 steps (1, 2.5, 4.75 ms).
        pause = min(pause * 1.2, 0.004 if time.monotonic() - start < 1.0 else 0.05)


def _force(rt: Runtime, job: Job) -> Job:
    """The runner did not finish in grace + margin: kill the attempt group and
    the runner ourselves, then let reconcile record the cancel."""
    recovery.force_stop(job)
    return _wait_final(rt, job.id, MARGIN)
