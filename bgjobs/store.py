"""The job store: SQLite schema, migrations, and every state transition.

Each transition is one compare-and-set (`UPDATE ... WHERE id = ? AND status IN
(...)`) inside `BEGIN IMMEDIATE`, so two racing writers cannot both win. The
functions here are the only code that changes a job's status.

This class is the seam for a second implementation (a shared database for a
fleet of machines): callers use its methods, never SQL.
"""

from __future__ import annotations

import os
import sys
import time

from . import jsonc

# Every command and runner imports this module, so it takes the C modules that
# `sqlite3` and `threading` wrap, with the same classes: the wrappers would add
# about 0.8 MiB to each runner's RSS and 3 to 4 ms to each command (sqlite3
# imports datetime, for adapters we never use: times are epoch floats).
try:
    from _thread import _local as thread_local
except ImportError:  # an implementation without it
    from threading import local as thread_local

from .job import ACTIVE, WAITING, Job, Status

TYPE_CHECKING = False  # typing and collections.abc are kept out of the start-up path
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable


def driver():
    """SQLite's C module, imported on first use, not with this module: job-run's
    own process never opens the store, and its forked runner loads this while
    job-run reads the call.

    Of functools, `_sqlite3` uses one thing: as it initialises, it reads
    `functools.lru_cache` for each connection's statement cache. Importing
    functools (with the collections, types and reprlib it imports) costs about
    5 ms here, three times `_sqlite3` itself. So a process with one thread
    and no functools yet gets, for that import only, a stand-in whose
    `lru_cache` is functools' own: the C `_functools._lru_cache_wrapper` that
    `functools.lru_cache` returns. Signals are blocked while the stand-in is in
    place, and it is gone when the import ends: a later `import functools` gets
    the real module. If the import fails with it, it is made the plain way."""
    loaded = sys.modules.get("_sqlite3")
    if loaded is not None:
        return loaded
    from .procs import single_threaded  # no other thread can import functools meanwhile

    if "functools" not in sys.modules and single_threaded():
        try:
            return _import_with_lru_cache_only()
        except (ImportError, AttributeError):  # a Python whose _sqlite3 wants more: the plain way
            pass
    try:
        import _sqlite3 as sqlite3
    except ImportError:  # an implementation without it
        import sqlite3
    return sqlite3


def _import_with_lru_cache_only():
    from _functools import _lru_cache_wrapper

    def lru_cache(maxsize=128, typed=False):
        return lambda function: _lru_cache_wrapper(function, maxsize, typed, _cache_info)

    stand_in = type(sys)("functools", "lru_cache only, while _sqlite3 is imported (bgjobs.store.driver)")
    stand_in.lru_cache = lru_cache
    # Signals wait until it is gone: a Python signal handler runs between two
    # bytecodes of whatever runs, the import included, and could meet it.
    import _signal as signal

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    sys.modules["functools"] = stand_in
    try:
        import _sqlite3
    finally:
        if sys.modules.get("functools") is stand_in:
            del sys.modules["functools"]
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return _sqlite3


def _cache_info(*info):  # what cache_info() would return; SQLite never asks
    return info


# Each entry migrates the schema from version i to i + 1 (PRAGMA user_version).
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            class TEXT NOT NULL,
            method TEXT NOT NULL,
            params TEXT NOT NULL,
            status TEXT NOT NULL,
            priority INTEGER NOT NULL DEFAULT 0,
            attempt INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            retry_delay REAL NOT NULL,
            retry_backoff REAL NOT NULL,
            timeout REAL,
            cancel_grace REAL NOT NULL,
            run_after REAL NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            updated_at REAL NOT NULL,
            runner_pid INTEGER,
            runner_start INTEGER,
            pid INTEGER,
            pid_start INTEGER,
            exit_code INTEGER,
            exit_signal INTEGER,
            exception TEXT,
            error TEXT,
            result TEXT,
            progress REAL,
            progress_message TEXT,
            cancel_requested_at REAL,
            cancel_source TEXT,
            cancel_user TEXT,
            source TEXT,
            user TEXT,
            retry_of INTEGER
        )""",
        "CREATE INDEX jobs_due ON jobs (status, priority, created_at)",
        "CREATE INDEX jobs_created ON jobs (created_at)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)
_IN = {
    "active": tuple(s.value for s in ACTIVE),
    "waiting": tuple(s.value for s in WAITING),
}


def _placeholders(values) -> str:
    return ",".join("?" * len(values))


class Store:
    """A handle on one SQLite job database. One connection per thread."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._local = thread_local()

    # --- connection and transactions ---------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            sqlite3 = driver()
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 60000")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            self._migrate(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._tx(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this bgjobs "
                    f"({SCHEMA_VERSION}); upgrade bgjobs"
                )
            for step in MIGRATIONS[version:]:
                for ddl in step:
                    conn.execute(ddl)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _tx(self, conn: sqlite3.Connection | None = None) -> _Transaction:
        """`with self._tx() as conn:` runs the block in one BEGIN IMMEDIATE
        transaction: committed if it returns, rolled back if it raises."""
        return _Transaction(conn or self._conn())

    def open(self) -> None:
        """Open this thread's connection now; it is otherwise opened on first use."""
        self._conn()

    def close(self) -> None:
        """Close this thread's connection (the runner does so before it forks)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # --- reads --------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def list_jobs(
        self,
        *,
        statuses: tuple[str, ...] | None = None,
        class_path: str | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        limit: int | None = 100,
    ) -> list[Job]:
        """Jobs newest first, filtered."""
        where, args = [], []
        if statuses:
            where.append(f"status IN ({_placeholders(statuses)})")
            args.extend(statuses)
        if class_path:
            where.append("class = ?")
            args.append(class_path)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at <= ?")
            args.append(until)
        if text:
            where.append("(class || '.' || method || ' ' || params || ' ' || IFNULL(error, '')) LIKE ?")
            args.append(f"%{text}%")
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Job.from_row(r) for r in self._conn().execute(sql, args)]

    def jobs_in(self, *statuses: Status) -> list[Job]:
        values = [s.value for s in statuses]
        rows = self._conn().execute(
            f"SELECT * FROM jobs WHERE status IN ({_placeholders(values)}) ORDER BY id", values
        )
        return [Job.from_row(r) for r in rows]

    def counts(self, since: float | None = None) -> dict[str, int]:
        """Jobs per status; with `since`, only jobs finished since then or not finished."""
        sql, args = "SELECT status, COUNT(*) FROM jobs", []
        if since is not None:
            sql += " WHERE finished_at >= ? OR finished_at IS NULL"
            args.append(since)
        sql += " GROUP BY status"
        return {s: n for s, n in self._conn().execute(sql, args)}

    def has_active(self) -> bool:
        row = (
            self._conn()
            .execute("SELECT 1 FROM jobs WHERE status IN (?, ?, ?) LIMIT 1", _IN["active"])
            .fetchone()
        )
        return row is not None

    def has_waiting(self) -> bool:
        row = (
            self._conn()
            .execute("SELECT 1 FROM jobs WHERE status IN (?, ?) LIMIT 1", _IN["waiting"])
            .fetchone()
        )
        return row is not None

    def next_due(self) -> float | None:
        """The earliest start time of a waiting job, or None when none waits."""
        row = (
            self._conn()
            .execute("SELECT MIN(run_after) FROM jobs WHERE status IN (?, ?)", _IN["waiting"])
            .fetchone()
        )
        return row[0]

    # --- transitions --------------------------------------------------------

    def insert(self, *, on_insert: Callable[[int], object] | None = None, **values) -> Job:
        """queued: a new row. `values` hold the validated spec and its policy.
        `on_insert(id)` is called with the new row's id before it is committed."""
        now = time.time()
        values = dict(values)
        values["params"] = jsonc.dumps(list(values["params"]))
        values.setdefault("run_after", now)
        values.update(status=Status.QUEUED.value, created_at=now, updated_at=now)
        cols = list(values)
        with self._tx() as conn:
            cur = conn.execute(
                f"INSERT INTO jobs ({','.join(cols)}) VALUES ({_placeholders(cols)})",
                [values[c] for c in cols],
            )
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (cur.lastrowid,)).fetchone()
            if on_insert is not None:
                on_insert(cur.lastrowid)
        return Job.from_row(row)

    def claim_due(
        self,
        *,
        max_running: int,
        class_limits: dict[str, int],
        accept: Callable[[Job], object | None],
        now: float | None = None,
    ) -> list[tuple[Job, object]]:
        """queued/retrying -> running, for due jobs, lowest priority value first,
        then oldest, within the global and per-class limits. `accept(job)`
        returns a token (the runner's lock) or None to skip the job."""
        now = time.time() if now is None else now
        claimed: list[tuple[Job, object]] = []
        with self._tx() as conn:
            per_class = dict(
                conn.execute("SELECT class, COUNT(*) FROM jobs WHERE status = ? GROUP BY class", ("running",))
            )
            free = max_running - sum(per_class.values())
            if free <= 0:
                return claimed
            rows = conn.execute(
                "SELECT * FROM jobs WHERE status IN (?, ?) AND run_after <= ? "
                "ORDER BY priority, created_at, id LIMIT ?",
                (*_IN["waiting"], now, max(free * 4, 64)),
            ).fetchall()
            for row in rows:
                if free <= 0:
                    break
                job = Job.from_row(row)
                limit = class_limits.get(job.class_path)
                if limit is not None and per_class.get(job.class_path, 0) >= limit:
                    continue
                token = accept(job)
                if token is None:
                    continue
                conn.execute(
                    "UPDATE jobs SET status = 'running', updated_at = ?, pid = NULL, "
                    "pid_start = NULL, runner_pid = NULL, runner_start = NULL "
                    "WHERE id = ? AND status = ?",
                    (now, job.id, job.status.value),
                )
                per_class[job.class_path] = per_class.get(job.class_path, 0) + 1
                free -= 1
                claimed.append((self._get(conn, job.id), token))
        return claimed

    def unclaim(self, job_id: int, error: str) -> Job | None:
        """running -> queued: the runner could not be started; try again later."""
        return self._cas(job_id, (Status.RUNNING,), status=Status.QUEUED.value, error=error)

    def start_attempt(self, job_id: int, runner_pid: int, runner_start: int) -> Job | None:
        """running (claimed) -> running (attempt n+1 begins). None if not running."""
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET attempt = attempt + 1, runner_pid = ?, runner_start = ?, "
                "pid = NULL, pid_start = NULL, started_at = IFNULL(started_at, ?), "
                "updated_at = ?, progress = NULL, progress_message = NULL "
                "WHERE id = ? AND status = 'running'",
                (runner_pid, runner_start, now, now, job_id),
            )
            return self._get(conn, job_id) if cur.rowcount else None

    def set_attempt_process(self, job_id: int, pid: int, pid_start: int | None) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET pid = ?, pid_start = ?, updated_at = ? WHERE id = ? AND status = 'running'",
                (pid, pid_start, time.time(), job_id),
            )

    def succeed(self, job_id: int, result: str | None) -> Job | None:
        """running -> succeeded."""
        return self._finish(
            job_id,
            Status.SUCCEEDED,
            result=result,
            error=None,
            exception=None,
            exit_code=0,
            exit_signal=None,
            progress=1.0,
        )

    def fail_attempt(self, job_id: int, *, retry_at: float | None, **outcome) -> Job | None:
        """running -> retrying (when `retry_at` is set) or -> failed."""
        if retry_at is None:
            return self._finish(job_id, Status.FAILED, **outcome)
        return self._cas(
            job_id, (Status.RUNNING,), status=Status.RETRYING.value, run_after=retry_at, **outcome
        )

    def cancelled(self, job_id: int, **outcome) -> Job | None:
        """running -> cancelled, after the runner stopped the attempt."""
        return self._finish(job_id, Status.CANCELLED, **outcome)

    def cancel_waiting(self, job_id: int, source: str, user: str | None) -> Job | None:
        """queued/retrying -> cancelled, at once: no runner is doing anything."""
        now = time.time()
        return self._cas(
            job_id,
            (Status.QUEUED, Status.RETRYING),
            status=Status.CANCELLED.value,
            finished_at=now,
            cancel_requested_at=now,
            cancel_source=source,
            cancel_user=user,
            error="cancelled before it ran",
        )

    def request_cancel(self, job_id: int, source: str, user: str | None, grace: float) -> Job | None:
        """Flag a running job for cancellation. Exactly one caller wins (returns the job)."""
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET cancel_requested_at = ?, cancel_source = ?, cancel_user = ?, "
                "cancel_grace = ?, updated_at = ? WHERE id = ? AND status = 'running' "
                "AND cancel_requested_at IS NULL",
                (now, source, user, grace, now, job_id),
            )
            return self._get(conn, job_id) if cur.rowcount else None

    def mark_lost(self, job_id: int, *, retry_at: float | None, cancelled: bool, error: str) -> Job | None:
        """running -> retrying | failed | cancelled, for a job whose runner died."""
        if cancelled:
            return self._finish(job_id, Status.CANCELLED, error=error)
        return self.fail_attempt(
            job_id, retry_at=retry_at, error=error, exception="RunnerLost", exit_code=None, exit_signal=None
        )

    def set_progress(self, job_id: int, fraction: float | None, message: str | None) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET progress = ?, progress_message = ?, updated_at = ? "
                "WHERE id = ? AND status = 'running'",
                (fraction, message, time.time(), job_id),
            )

    # --- helpers ------------------------------------------------------------

    def _get(self, conn: sqlite3.Connection, job_id: int) -> Job:
        return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def _finish(self, job_id: int, status: Status, **values) -> Job | None:
        return self._cas(job_id, (Status.RUNNING,), status=status.value, finished_at=time.time(), **values)

    def _cas(self, job_id: int, expected: tuple[Status, ...], **values) -> Job | None:
        """The one compare-and-set: set `values` if the job is in `expected`."""
        values["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in values)
        exp = [s.value for s in expected]
        with self._tx() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND status IN ({_placeholders(exp)})",
                [*values.values(), job_id, *exp],
            )
            return self._get(conn, job_id) if cur.rowcount else None


class _Transaction:
    """The context manager behind Store._tx. A class rather than
    @contextlib.contextmanager: contextlib would be one more import for every
    runner and console script, which only ever need these few lines."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        return False
