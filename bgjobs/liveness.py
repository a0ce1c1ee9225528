"""Liveness: is a job's runner alive? On one host, a flock.

A runner holds an exclusive flock on `state_dir/locks/ID.lock` for its job's
whole life. The lock is taken inside the claim (the dispatcher holds it before
it marks the job running) and handed to the runner it starts as an inherited
descriptor, so it is held without a gap from claim to the runner's exit. The
kernel drops it however the runner dies (kill -9, OOM, a segfault, a reboot),
so "running, but its lock can be taken" means exactly "its runner is gone".

The lock file of a final job is removed by whoever holds its lock then; a
lock taken on a file that was unlinked meanwhile is taken again (procs).
"""

from __future__ import annotations

import os

from . import procs

# The environment variable that names the lock's descriptor in a spawned runner.
HANDOVER_ENV = "BGJOBS_LOCK_FD"


class FlockLiveness:
    """Liveness by flock on lock files under `state_dir`. A token is the open
    descriptor that holds the lock."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def path(self, job_id: int) -> str:
        return os.path.join(self.state_dir, "locks", f"{job_id}.lock")

    def open(self) -> None:
        """Nothing to open ahead: a lock file is opened as it is taken."""

    def take(self, job_id: int) -> int | None:
        """The lock of job `job_id`, or None if a live runner (or a reconciler)
        holds it. Taken inside the claim, and by reconcile to probe a runner."""
        return procs.take_lock(self.path(job_id))

    def release(self, token: int, job_id: int, *, final: bool) -> None:
        """Let go of the lock; with `final` (the job is final), its file goes too."""
        procs.release_lock(token, self.path(job_id), remove=final)

    def renew(self, job_id: int) -> bool:
        """Whether this runner still holds the job's lock: a flock is never lost
        while its holder lives."""
        return True

    def may_settle(self, job, store) -> bool:
        """Whether a running job whose lock was free may be settled now: at once."""
        return True

    def forget(self, job_id: int) -> None:
        """A job became final with no runner (cancelled while it waited): remove
        its lock file, if a runner of an earlier attempt left one."""
        procs.remove_lock_if_free(self.path(job_id))

    def drop_copy(self, token: int) -> None:
        """In a forked attempt: let go of its copy of the runner's token (the
        runner's death must free the lock, whatever the attempt does)."""
        os.close(token)

    def inherited(self) -> int | None:
        """In a spawned runner: the lock its dispatcher handed over, if any."""
        fd = os.environ.pop(HANDOVER_ENV, None)
        if fd is None:
            return None
        fd = int(fd)
        os.set_inheritable(fd, False)
        return fd

    # --- the waker's lock: at most one waker per store ----------------------

    @property
    def waker_path(self) -> str:
        return os.path.join(self.state_dir, "waker.lock")

    def take_waker(self) -> int | None:
        fd = procs.open_lock(self.waker_path)
        if procs.try_lock(fd):
            return fd
        os.close(fd)
        return None

    def release_waker(self, token: int) -> None:
        os.close(token)
