"""Cancel a job: at once if it waits; if it runs, flag, then signal, then wait.

The flag is a compare-and-set on the row (one caller wins). The signaller then
tells the job's runner (on one host, SIGTERM to the verified runner), which
forwards it to the attempt's process group and SIGKILLs it after the grace
period. The runner also polls its row, a backstop for a lost signal.
"""

from __future__ import annotations

import time
from typing import NamedTuple

from . import lifecycle, recovery
from .errors import AlreadyFinal, CancelInProgress, NoSuchJob
from .job import WAITING, Job, Status
from .limits import check_grace

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .seams import Wiring

MARGIN = recovery.STUCK_MARGIN  # seconds past the grace before we stop the attempt ourselves
SWEEP_GAP = 2.0  # seconds between a job-worker's sweeps (bgjobs.worker.SWEEP), for fleet mode


class CancelResult(NamedTuple):
    """`job` as it ended up, and `waited`: seconds from the request to the final state."""

    job: Job
    waited: float

    @property
    def cancelled(self) -> bool:
        return self.job.status is Status.CANCELLED


def cancel(
    rt: Wiring,
    job_id: int,
    *,
    grace: float | None = None,
    source: str = "api",
    user: str | None = None,
    wait: bool = True,
) -> CancelResult:
    """Stop job `job_id` and return its final state: a waiting job at once; a
    running one by its cancel flag, then a verified signal to its runner, then
    a wait for the final state.

    Raises NoSuchJob, AlreadyFinal (with the state it ended in), or
    CancelInProgress when another caller's cancel won the race (after that
    cancel has finished, so its message carries the outcome). Filling the
    slot a cancel frees is the caller's (bgjobs.api dispatches after it).
    """
    t0 = time.monotonic()
    store = rt.store
    grace = None if grace is None else check_grace(grace)
    for _ in range(10):  # a few rounds: the job may change state under us
        job = store.get(job_id)
        if job is None:
            raise NoSuchJob(job_id)
        if job.is_final:
            raise AlreadyFinal(job)
        if job.status in WAITING:
            done = lifecycle.cancel_waiting(rt, job, source, user)
            if done is None:
                continue  # it was claimed, or cancelled, meanwhile
            rt.liveness.forget(job_id)  # a retry's token outlives its first runner
            return CancelResult(done, time.monotonic() - t0)
        flagged = lifecycle.request_cancel(
            rt, job_id, source, user, job.cancel_grace if grace is None else grace
        )
        if flagged is None:
            job = store.get(job_id)
            if job.status is Status.RUNNING and job.cancel_requested_at is not None:
                raise CancelInProgress(_wait_final(rt, job) if wait else job)
            continue
        rt.signaller.request_stop(flagged)
        if not wait:
            return CancelResult(flagged, time.monotonic() - t0)
        return CancelResult(_wait_final(rt, flagged), time.monotonic() - t0)
    job = store.get(job_id)
    raise AlreadyFinal(job) if job.is_final else CancelInProgress(job)


def _wait_final(rt: Wiring, job: Job) -> Job:
    """Wait until flagged `job` is final. Its runner stops the attempt and
    records the cancel; a runner that records itself after the flag is told
    too. If the runner dies, or misses its grace period (plus MARGIN), the job
    is settled once: force-stopped if need be, then reconciled."""
    start = time.monotonic()
    deadline = start + job.cancel_grace + MARGIN
    told = job.runner_pid
    pause = 0.0005
    while True:
        job = rt.store.get(job.id)
        if job.is_final:
            return job
        if job.runner_pid and job.runner_pid != told and rt.signaller.request_stop(job):
            told = job.runner_pid  # it started after our first look
        runner_gone = job.runner_pid is not None and not rt.signaller.runner_alive(job)
        if runner_gone or time.monotonic() >= deadline:
            break
        time.sleep(pause)
        # Look often while a prompt stop is likely (a cooperative job is recorded
        # a few ms after the signal), then less and less.
        pause = min(pause * 1.2, 0.004 if time.monotonic() - start < 1.0 else 0.05)
    if not runner_gone:
        rt.signaller.force_stop(job)
    return _settle(rt, job)


def _settle(rt: Wiring, job: Job) -> Job:
    """Reconcile `job` once its runner is gone (a killed process frees its
    token a moment after the kill): it is recorded cancelled."""
    deadline = time.monotonic() + MARGIN
    if job.host not in (None, rt.config.host):
        # Another host's runner: only its host's sweep can stop it, and its lock
        # may be free before its lease is fence_after old.
        deadline += rt.config.fence_after + 2 * SWEEP_GAP
    while True:
        done = recovery.settle(rt, job.id)
        if done is not None:
            return done
        job = rt.store.get(job.id)
        if job.is_final or time.monotonic() >= deadline:
            return job
        time.sleep(0.01)
