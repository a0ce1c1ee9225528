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
import time

from . import pg
from .errors import StoreError

WAKER_KEY = -101  # the one sweep per store (job ids are positive)
# Seconds between a runner's tries to take back the lock of a lost session,
# while a reconciler's probe holds it.
RETRY_PAUSE = 0.05


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
        self._held: set[int] = set()  # the keys this process's session holds
        self._where = "the job store"

    @property
    def conn(self):
        conn = self._conn
        if conn is None or conn.closed or conn.broken or self._pid != os.getpid():
            self._held = set()  # a new session holds nothing yet
            self._conn = None
            self._conn = self._connect()
            self._pid = os.getpid()
            self._where = pg.where_of(self._conn)
        return self._conn

    def open(self) -> None:
        """Open the connection now (a warm claimer, ahead of its claim)."""
        self.conn  # noqa: B018 - the property opens it

    def _try(self, key: int) -> bool:
        """Try the lock `key` on this process's session. A session that was
        lost meanwhile (psycopg learns it only at its next use; the server
        restarted, or ended it) holds nothing: the try is made again, once,
        on a new one. A failure is a StoreError, as the store's are."""
        for again in (True, False):
            try:
                taken = bool(self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])
            except pg.driver().Error as exc:
                self._lost()
                if again and isinstance(exc, pg.driver().OperationalError):
                    continue
                raise self._failed(exc) from None
            if taken:
                self._held.add(key)
            return taken
        raise AssertionError("unreachable")

    def _lost(self) -> None:
        """Drop a session that failed: its locks are gone with it."""
        conn, self._conn, self._held = self._conn, None, set()
        if conn is not None and self._pid == os.getpid():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    def _failed(self, exc: Exception) -> StoreError:
        return StoreError(
            f"the job locks' connection to {self._where} failed ({pg.one_line(exc)}); {pg.UNREACHABLE_ADVICE}",
            path=self._where,
        )

    def _unlock(self, key: int) -> None:
        self._held.discard(key)
        if self._conn is None or self._pid != os.getpid():
            return  # no session of ours: nothing held
        try:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except Exception:  # noqa: BLE001 - a lost session has let go of its locks already
            self._lost()

    def take(self, job_id: int) -> int | None:
        """The job's lock, or None if a live runner on any host (or a reconciler) holds it."""
        return job_id if self._try(job_id) else None

    def release(self, token: int, job_id: int, *, final: bool) -> None:
        self._unlock(job_id)

    def renew(self, job_id: int) -> bool:
        """Whether this runner still holds its job's lock. Its session is
        checked (one round trip): a session lost to a PostgreSQL restart or a
        cut connection let go of the lock, though psycopg does not know it until
        the connection is used. Then the lock is taken again on a new session,
        as long as the job is still this runner's (running, with this process
        as its runner) and its lease younger than the window: within it no
        reconcile may settle the job (may_settle), and whoever holds the lock
        meanwhile is a reconciler's probe (take, look, release), waited out.
        Otherwise another host may have settled the job and run it again: the
        runner must fence itself (False)."""
        if job_id in self._held and self._session_alive():
            return True
        from .procs import start_time

        me = (os.getpid(), start_time(os.getpid()))
        while True:
            taken = self._try(job_id)
            if self._still_mine(job_id, me):
                if taken:
                    return True
            else:
                if taken:
                    self._unlock(job_id)
                return False
            time.sleep(RETRY_PAUSE)

    def _session_alive(self) -> bool:
        if self._conn is None or self._conn.closed or self._pid != os.getpid():
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - lost: renew takes the lock again
            self._lost()
            return False

    def _still_mine(self, job_id: int, runner: tuple[int, int | None]) -> bool:
        """Whether job `job_id` is running, with `runner` (pid, start time) as
        its runner, and its lease younger than the window (by the database's
        clock): no reconcile has settled it, nor may yet."""
        try:
            row = self.conn.execute(
                f"SELECT {pg.RUNNING_SQL} AND runner_pid = %s AND runner_start IS NOT DISTINCT FROM %s "
                "AND extract(epoch FROM clock_timestamp()) - updated_at < %s FROM jobs WHERE id = %s",
                (*runner, self.window, job_id),
            ).fetchone()
        except pg.driver().Error as exc:
            self._lost()
            raise self._failed(exc) from None
        return bool(row and row[0])

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
        self._conn, self._held = None, set()
