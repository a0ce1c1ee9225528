"""Signaller: ask a running job to stop, or stop it by force. On one host,
pid-verified signals.

A runner is named by (pid, start time), and so is an attempt, which leads its
own process group. Every signal goes through a pidfd after the start time is
checked (procs.signal_verified), so a pid the kernel has handed to another
process is never signalled.
"""

from __future__ import annotations

import os
import signal

from . import procs
from .job import Job


class PidSignaller:
    """Signals the processes of jobs on this host."""

    def request_stop(self, job: Job) -> bool:
        """SIGTERM the job's runner, which forwards it to the attempt's group
        and SIGKILLs it after the grace period. False when the runner is not
        (or no longer) provably the one recorded: reconcile settles it."""
        if job.runner_pid is None:
            return False  # claimed, not started: the runner sees the flag as it starts
        return procs.signal_verified(job.runner_pid, job.runner_start, signal.SIGTERM, group=False)

    def listen(self, job_id: int) -> int | None:
        """A descriptor to watch for word of a cancel: none here (SIGTERM is the word)."""
        return None

    def heard(self, job_id: int) -> bool:
        return False

    def runner_alive(self, job: Job) -> bool:
        """Whether the runner recorded on `job` is still that process."""
        return procs.same_process(job.runner_pid, job.runner_start)

    def force_stop(self, job: Job) -> None:
        """SIGKILL the job's attempt group and its runner (both verified), for a
        runner that missed its grace period. Reconcile then records the job."""
        self.stop_leftovers(job)
        procs.signal_verified(job.runner_pid, job.runner_start, signal.SIGKILL, group=False)

    def stop_leftovers(self, job: Job) -> None:
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
