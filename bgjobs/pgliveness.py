"""Liveness across hosts: a PostgreSQL session advisory lock per job.

A runner takes the advisory lock whose key is its job's id, on a connection of
its own, inside its claim, and holds it for the job's whole life. PostgreSQL
frees a session lock when its session ends: the holder is killed, its host
dies (TCP keepalives notice within about 30 s, docs/fleet.md), or the
connection is cut. So "running, but its lock can be taken" means "its runner
is gone", on whichever host it ran. A SIGSTOPped runner keeps its lock (its
session lives), just as it keeps a flock.

Any host's reconcile probes a job with a try-lock, and holds it while it
settles the job, so two hosts never settle one job twice. Keys below zero are
never job ids: the waker's lock (one sweep per store) uses one of them.
"""

from __future__ import annotations

import os

WAKER_KEY = -101  # the one sweep per store (job ids are positive)


class AdvisoryLiveness:
    """Liveness by session advisory locks, on one connection per process,
    opened on first use (`connect` makes it, see bgjobs.pg)."""

    def __init__(self, connect, window: float) -> None:
        self._connect = connect
        # Seconds a lock-free job's runner has to take its lock back (fence_after:
        # by then a runner has renewed its lease, or fenced itself).
        self.window = window
        self._conn = None
        self._pid = os.getpid()

    @property
    def conn(self):
        if self._conn is None or self._conn.closed or self._pid != os.getpid():
            self._conn = self._connect()
            self._pid = os.getpid()
        return self._conn

    def open(self) -> None:
        """Open the connection now (a warm claimer, ahead of its claim)."""
        self.conn  # noqa: B018 - the property opens it

    def _try(self, key: int) -> bool:
        return bool(self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])

    def _unlock(self, key: int) -> None:
        try:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except Exception:  # noqa: BLE001 - a lost session has let go of its locks already
            pass

    def take(self, job_id: int) -> int | None:
        """The job's lock, or None if a live runner on any host (or a reconciler) holds it."""
        return job_id if self._try(job_id) else None

    def release(self, token: int, job_id: int, *, final: bool) -> None:
        self._unlock(job_id)

    def renew(self, job_id: int) -> bool:
        """Whether this runner still holds its job's lock. A session that was
        lost (PostgreSQL restarted, the network blinked) let go of it: take it
        again on a new connection. That works within the restart window, while
        no reconcile may settle the job (may_settle); past it, another host may
        have taken it, and the runner must fence itself (False)."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return True
        self._conn = None
        return self._try(job_id)

    def may_settle(self, job, store) -> bool:
        """A job whose lock is free is settled only once its runner has not
        renewed its lease (the row's updated_at) for `window` seconds on
        the database's clock: a restart of PostgreSQL frees every lock at once,
        and the runners get that long to take theirs back."""
        return job.updated_at is None or store.db_now() - job.updated_at >= self.window

    def forget(self, job_id: int) -> None:
        """Nothing to clean up: an advisory lock leaves no file behind."""

    def drop_copy(self, token: int) -> None:
        """In a forked attempt: close this process's copy of the lock's socket,
        so that the runner's death ends the session (and frees the lock),
        whatever the attempt does. The attempt never uses the connection."""
        if self._conn is not None and not self._conn.closed:
            os.close(self._conn.fileno())

    def inherited(self) -> None:
        """A fleet runner takes its lock itself, in its claim: nothing is handed over."""
        return None

    def take_waker(self) -> int | None:
        return WAKER_KEY if self._try(WAKER_KEY) else None

    def release_waker(self, token: int) -> None:
        self._unlock(WAKER_KEY)

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
