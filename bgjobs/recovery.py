"""Reconcile: find jobs marked running whose runner is gone, and settle them.

A runner holds its job's liveness token for its whole life, and loses it
however it dies (bgjobs.liveness). So a running job whose token we can take
has lost its runner. We hold the token while we settle the job, so
reconcilers in other processes cannot settle it twice.
"""

from __future__ import annotations

from . import lifecycle
from .job import Job, Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .seams import Wiring

# Seconds past a cancel's grace period before reconcile stops the job itself.
STUCK_MARGIN = 5.0
LOST = "its runner process died (killed, crashed or rebooted)"


def reconcile(rt: Wiring) -> list[Job]:
    """Settle every running job whose runner died. Returns the settled jobs."""
    settled = []
    now = rt.store.db_now()  # cancel_requested_at is on the store's clock, not this host's
    for job in rt.store.jobs_in(Status.RUNNING):
        done = settle(rt, job.id)
        if done is not None:
            settled.append(done)
        elif job.cancel_requested_at and now > job.cancel_requested_at + job.cancel_grace + STUCK_MARGIN:
            rt.signaller.force_stop(job)  # the runner is alive but did not stop in time
    return settled


def settle(rt: Wiring, job_id: int) -> Job | None:
    """If running job `job_id` has lost its runner, settle it (cancelled if
    asked, retrying or failed) and return it; None if its runner is alive, or
    it is not running."""
    token = rt.liveness.take(job_id)
    if token is None:
        return None  # its runner is alive
    done = current = None
    try:
        current = rt.store.get(job_id)
        if (
            current is not None
            and current.status is Status.RUNNING
            and (_runner_dead_here(rt, current) or rt.liveness.may_settle(current, rt.store))
        ):
            rt.signaller.stop_leftovers(current)
            done = lifecycle.lost(rt, current, LOST)
            current = done or rt.store.get(job_id)
    finally:
        # The token of a final job goes with it (its runner removes it when it
        # can; taking it may have made it again).
        rt.liveness.release(token, job_id, final=current is None or current.is_final)
    return done


def _runner_dead_here(rt: Wiring, job: Job) -> bool:
    """The job's runner ran on this host and its recorded (pid, start time)
    names no process now: a free lock then needs no restart window."""
    return job.runner_pid is not None and not rt.signaller.runner_alive(job)
