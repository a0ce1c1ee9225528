"""Reconcile: find jobs marked running whose runner is gone, and settle them.

A runner holds an exclusive flock on its job's lock file for its whole life,
and the kernel drops that lock however the runner dies (kill -9, OOM, a
segfault, a reboot). So a running job whose lock we can take has lost its
runner. We hold the lock while we settle the job, so reconcilers in other
processes cannot settle it twice.
"""

from __future__ import annotations

import os
import signal
import time

from . import lifecycle, procs
from .job import Job, Status
from .runtime import Runtime

# Seconds past a cancel's grace period before reconcile stops the job itself.
STUCK_MARGIN = 5.0


def reconcile(rt: Runtime) -> list[Job]:
    """Settle every running job whose runner died. Returns the settled jobs."""
    settled = []
    now = time.time()
    for job in rt.store.jobs_in(Status.RUNNING):
        path = rt.lock_path(job.id)
        fd = procs.take_lock(path)
        if fd is None:
            if job.cancel_requested_at and now > job.cancel_requested_at + job.cancel_grace + STUCK_MARGIN:
                force_stop(job)  # the runner is alive but did not stop in time
            continue  # its runner is alive
        done = None
        try:
            current = rt.store.get(job.id)
            if current is not None and current.status is Status.RUNNING:
                stop_leftovers(current)
                done = lifecycle.lost(rt, current, "its runner process died (killed, crashed or rebooted)")
                if done is not None:
                    settled.append(done)
                else:
                    done = rt.store.get(job.id)
            else:
                done = current  # it finished while we looked
        finally:
            # The lock file of a final job goes with it (its runner removes it
            # when it can; we may have just made it again by opening it).
            procs.release_lock(fd, path, remove=done is None or done.is_final)
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
