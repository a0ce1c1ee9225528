"""The job store: SQLite schema, migrations, and every state transition.

Each transition is one compare-and-set (`UPDATE ... WHERE id = ? AND status IN
(...)`) inside `BEGIN IMMEDIATE`, so two racing writers cannot both win. The
functions here are the only code that changes a job's status.

This class is one implementation of the store seam (bgjobs.seams.Store); the
other is PostgreSQL's, for a fleet of hosts (bgjobs.pgstore). Callers use its
methods, never SQL.

Runner-side writes are fenced: given `attempt=`, a write also requires the
row to be at that attempt, so a runner whose attempt is over (its job was
taken for lost and started again) changes nothing.

A file that cannot serve as the store (not a bgjobs database, damaged, of a
newer schema, deleted while open, on a full disk) is a StoreError that names
it and says what to do; no method raises a raw sqlite3 error, and none
overwrites or recreates the file to get past one.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from threading import local as thread_local

from .errors import StoreError
from .job import ACTIVE, Job, Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable


def driver():
    """The sqlite3 module, imported with the first connection rather than with
    this module: job-run's own process never opens the store."""
    import sqlite3

    return sqlite3


# Waiting jobs (job.WAITING) and running ones, as the partial indexes below name them. A
# query uses such an index only if its WHERE clause holds this very term, so every query
# for them spells it this way (and names the index, so a plan that does not use it is an
# error rather than a slow scan). The terms hold literals, not parameters, for the same
# reason; they are spelled from Status so that the two cannot drift apart.
WAITING_SQL = f"status IN ('{Status.QUEUED.value}', '{Status.RETRYING.value}')"
RUNNING_SQL = f"status = '{Status.RUNNING.value}'"

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
    [  # the claim, next_due and the per-class count read only the rows they need
        f"CREATE INDEX jobs_waiting ON jobs (priority, created_at, id) WHERE {WAITING_SQL}",
        f"CREATE INDEX jobs_waiting_run_after ON jobs (run_after) WHERE {WAITING_SQL}",
        f"CREATE INDEX jobs_running ON jobs (class) WHERE {RUNNING_SQL}",
    ],
    # 3: why a job's output was lost (a full disk, a file size limit), if it was.
    ["ALTER TABLE jobs ADD COLUMN output_error TEXT"],
    # 4: the column is named as Job names it. SQLite renames it in jobs_running too.
    ["ALTER TABLE jobs RENAME COLUMN class TO class_path"],
]
SCHEMA_VERSION = len(MIGRATIONS)
_ACTIVE = tuple(s.value for s in ACTIVE)
_BUSY_RETRY_FOR = 60.0  # seconds, as the busy timeout: how long a first open waits for another
_CLAIM_ORDER = "priority, created_at, id"
_CLAIM = f"SELECT * FROM jobs INDEXED BY jobs_waiting WHERE {WAITING_SQL} AND run_after <= ?"
# The store's version and what it holds, read at one moment (one statement).
_SCHEMA = (
    "SELECT (SELECT user_version FROM pragma_user_version), EXISTS (SELECT 1 FROM sqlite_master), "
    "EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs')"
)
_ADVICE = "move it aside and bgjobs will create a new one, or restore it from a backup"


def _placeholders(values) -> str:
    return ",".join("?" * len(values))


def _translated(method):
    """Wrap a Store method so that an error SQLite reports (a damaged or
    foreign file, a full disk, a lock held too long) leaves it as a StoreError
    that names the file and says what to do, never as a raw sqlite3 error."""

    def translated(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except driver().DatabaseError as exc:
            raise self._store_error(exc) from exc

    translated.__name__, translated.__qualname__ = method.__name__, method.__qualname__
    translated.__doc__, translated.__wrapped__ = method.__doc__, method
    return translated


class Store:
    """A handle on one SQLite job database. One connection per thread.

    Every method raises StoreError, never a raw sqlite3 error, when the file
    cannot be used: it is not a bgjobs database, it is damaged or of a newer
    schema, it was deleted or replaced while open, or it cannot be written.
    The file is never overwritten or recreated to get past such an error."""

    def __init__(self, path: str | os.PathLike, *, id_floor: Callable[[], int] | None = None) -> None:
        """`id_floor()`, called once when this creates a brand-new database,
        gives the highest job id already used outside it (by output files and
        log records, see highest_used_id); new ids start above it, so a job
        never takes over the output or the history of an older one."""
        self.path = os.fspath(path)
        self.id_floor = id_floor
        self._local = thread_local()

    # --- connection and transactions ---------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            return self._connect()
        # One stat a call: a store deleted or replaced under this process must
        # not go on taking (and losing) what it records.
        try:
            st = os.stat(self.path)
            same = (st.st_dev, st.st_ino) == self._local.file
        except FileNotFoundError:
            same = False
        if not same:
            raise StoreError(
                f"{self.path} was deleted or replaced while this process had it open, so what it "
                "records now would be lost; restore it from a backup, or restart the process to "
                "use the file now there (bgjobs creates a new one if none is)",
                path=self.path,
            )
        return conn

    def _connect(self) -> sqlite3.Connection:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        sqlite3 = driver()
        conn = sqlite3.connect(self.path, timeout=_BUSY_RETRY_FOR, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            # Read at one moment: a store another process is creating is either
            # still empty or already migrated, never half of each.
            version, has_tables, has_jobs = conn.execute(_SCHEMA).fetchone()
            # Refused before anything is written, WAL mode included: a newer or
            # foreign database is left exactly as it was.
            self._check_schema(version, has_tables, has_jobs)
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._set_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            if version != SCHEMA_VERSION:
                self._migrate(conn)
            st = os.stat(self.path)
        except BaseException:
            conn.close()
            raise
        self._local.conn, self._local.file = conn, (st.st_dev, st.st_ino)
        return conn

    def _set_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL. Two processes creating the same new store at once can
        each hold what the other needs to switch; SQLite then refuses at once
        (no busy wait), so the switch is tried again, with a bounded backoff."""
        deadline = time.monotonic() + _BUSY_RETRY_FOR
        pause = 0.001
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except driver().OperationalError as exc:
                busy = getattr(exc, "sqlite_errorname", "SQLITE_BUSY").startswith("SQLITE_BUSY")
                if not busy or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _check_schema(self, version: int, has_tables: bool, has_jobs: bool) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this bgjobs knows "
                f"({SCHEMA_VERSION}); upgrade bgjobs, or {_ADVICE}",
                path=self.path,
            )
        # A migration sets the version in the transaction that makes the tables,
        # so a store of version 0 holds none, and one of a later version holds jobs.
        why = "it holds other tables" if version == 0 and has_tables else None
        if version > 0 and not has_jobs:
            why = f"it has schema version {version} but no jobs table"
        if why:
            raise StoreError(f"{self.path} is not a bgjobs database ({why}); {_ADVICE}", path=self.path)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _Transaction(conn):
            version, has_tables, has_jobs = conn.execute(_SCHEMA).fetchone()
            self._check_schema(version, has_tables, has_jobs)
            for step in MIGRATIONS[version:]:
                for ddl in step:
                    conn.execute(ddl)
            if version == 0 and self.id_floor is not None:
                floor = int(self.id_floor())
                if floor > 0:  # AUTOINCREMENT gives the next id above sqlite_sequence's
                    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('jobs', ?)", (floor,))
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _store_error(self, exc: Exception) -> StoreError:
        """The StoreError for `exc`, an error SQLite reported on this store."""
        name = getattr(exc, "sqlite_errorname", "") or ""
        path, what = self.path, str(exc)
        if name == "SQLITE_NOTADB":
            message = f"{path} is not a bgjobs database ({what}); {_ADVICE}"
        elif name.startswith("SQLITE_CORRUPT"):
            message = f"{path} is damaged ({what}); {_ADVICE}"
        elif name == "SQLITE_FULL":
            message = f"{path} could not be written: the disk is full ({what}); free some space and try again"
        elif name.startswith("SQLITE_IOERR") and "READ" in name:
            message = f"{path} could not be read ({what}); check the disk, then try again"
        elif name.startswith("SQLITE_IOERR"):
            message = (
                f"{path} could not be written ({what}): the disk may be full or failing, or a file "
                "size limit (ulimit -f) reached; free some space and try again"
            )
        elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            message = (
                f"{path} stayed locked by another process for {_BUSY_RETRY_FOR:.0f}s ({what}); "
                f"find it (fuser {path}) and try again"
            )
        elif name == "SQLITE_READONLY_DBMOVED":
            message = (
                f"{path} was deleted or moved while this process had it open ({what}); "
                "restore it from a backup, or restart the process"
            )
        elif name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN", "SQLITE_AUTH")):
            message = (
                f"{path} cannot be opened or written ({what}); check the permissions of it and its directory"
            )
        else:
            message = f"{path} could not be used ({what}); if this persists, {_ADVICE}"
        return StoreError(message, path=path)

    def _tx(self, conn: sqlite3.Connection | None = None) -> _Transaction:
        """`with self._tx() as conn:` runs the block in one BEGIN IMMEDIATE
        transaction: committed if it returns, rolled back if it raises."""
        return _Transaction(conn or self._conn())

    @_translated
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

    @_translated
    def get(self, job_id: int) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    @_translated
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
            where.append("class_path = ?")
            args.append(class_path)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at <= ?")
            args.append(until)
        if text:
            where.append("(class_path || '.' || method || ' ' || params || ' ' || IFNULL(error, '')) LIKE ?")
            args.append(f"%{text}%")
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Job.from_row(r) for r in self._conn().execute(sql, args).fetchall()]

    @_translated
    def jobs_in(self, *statuses: Status) -> list[Job]:
        values = [s.value for s in statuses]
        rows = self._conn().execute(
            f"SELECT * FROM jobs WHERE status IN ({_placeholders(values)}) ORDER BY id", values
        )
        return [Job.from_row(r) for r in rows.fetchall()]

    @_translated
    def counts(self, since: float | None = None) -> dict[str, int]:
        """Jobs per status; with `since`, only jobs finished since then or not finished."""
        sql, args = "SELECT status, COUNT(*) FROM jobs", []
        if since is not None:
            sql += " WHERE finished_at >= ? OR finished_at IS NULL"
            args.append(since)
        sql += " GROUP BY status"
        return {s: n for s, n in self._conn().execute(sql, args).fetchall()}

    @_translated
    def has_active(self) -> bool:
        row = self._conn().execute("SELECT 1 FROM jobs WHERE status IN (?, ?, ?) LIMIT 1", _ACTIVE).fetchone()
        return row is not None

    @_translated
    def has_waiting(self) -> bool:
        row = (
            self._conn()
            .execute(f"SELECT 1 FROM jobs INDEXED BY jobs_waiting WHERE {WAITING_SQL} LIMIT 1")
            .fetchone()
        )
        return row is not None

    @_translated
    def next_due(self) -> float | None:
        """The earliest start time of a waiting job, or None when none waits."""
        row = (
            self._conn()
            .execute(f"SELECT MIN(run_after) FROM jobs INDEXED BY jobs_waiting_run_after WHERE {WAITING_SQL}")
            .fetchone()
        )
        return row[0]

    @_translated
    def running_on(self, host: str) -> int:
        """How many jobs run on host `host`: every running job of a SQLite
        store runs on this host, whatever its name."""
        row = self._conn().execute(f"SELECT COUNT(*) FROM jobs INDEXED BY jobs_running WHERE {RUNNING_SQL}")
        return row.fetchone()[0]

    @_translated
    def due_count(self, limit: int | None = None) -> int:
        """How many waiting jobs are due now; counted up to `limit` at most."""
        sql = f"SELECT 1 FROM jobs INDEXED BY jobs_waiting_run_after WHERE {WAITING_SQL} AND run_after <= ?"
        if limit is not None:
            sql += f" LIMIT {max(int(limit), 0)}"
        return self._conn().execute(f"SELECT COUNT(*) FROM ({sql})", (time.time(),)).fetchone()[0]

    # --- transitions --------------------------------------------------------

    @_translated
    def insert(self, *, on_insert: Callable[[int], object] | None = None, **values) -> Job:
        """queued: a new row. `values` hold the validated spec (class_path,
        method, params) and its policy. `on_insert(id)` is called with the new
        row's id before it is committed."""
        now = time.time()
        values = dict(values)
        if "class" in values:  # the column's name before schema 4, from a caller not yet moved
            values["class_path"] = values.pop("class")
        values["params"] = json.dumps(list(values["params"]))
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

    @_translated
    def claim_due(
        self,
        *,
        max_running: int,
        class_limits: dict[str, int],
        accept: Callable[[Job], object | None],
        now: float | None = None,
        host_slots: int | None = None,
    ) -> list[tuple[Job, object]]:
        """queued/retrying -> running, for due jobs, lowest priority value first,
        then oldest, within the global and per-class limits. `accept(job)`
        returns a token (the runner's lock) or None to skip the job.
        `host_slots` caps the jobs running on this host; every job of a SQLite
        store runs on this host, so it is a second global cap here.

        A class at its limit is left out in SQL, so no backlog of it keeps
        another class's job from a free slot. A due row that cannot be run as
        it stands (see Job.defect: params that are not JSON, a missing count)
        goes queued/retrying -> failed here, with the reason as its error."""
        now = time.time() if now is None else now
        claimed: list[tuple[Job, object]] = []
        with self._tx() as conn:
            per_class = dict(
                conn.execute(
                    f"SELECT class_path, COUNT(*) FROM jobs INDEXED BY jobs_running WHERE {RUNNING_SQL} "
                    "GROUP BY class_path"
                ).fetchall()
            )
            free = max_running - sum(per_class.values())
            if host_slots is not None:
                free = min(free, host_slots - sum(per_class.values()))
            full = {c for c, limit in class_limits.items() if per_class.get(c, 0) >= limit}
            after: tuple | None = None  # the claim-order key of the last row accept() refused
            refusals_left = max(free * 4, 64)  # as many as it may look at before it gives up
            while free > 0 and refusals_left > 0:
                sql, args = _CLAIM, [now]
                if full:
                    sql += f" AND class_path NOT IN ({_placeholders(full)})"
                    args.extend(full)
                if after is not None:
                    sql += f" AND ({_CLAIM_ORDER}) > (?, ?, ?)"
                    args.extend(after)
                rows = conn.execute(f"{sql} ORDER BY {_CLAIM_ORDER} LIMIT ?", (*args, free + 16)).fetchall()
                if not rows:
                    break
                for row in rows:
                    class_path = row["class_path"]
                    if class_path in full:  # it reached its limit in this batch
                        continue
                    job = Job.from_row(row)  # only for a row it may take
                    if job.defect is not None:
                        _fail_unreadable(conn, job, now)
                        continue
                    token = accept(job)
                    if token is None:
                        after = (job.priority, job.created_at, job.id)
                        refusals_left -= 1
                        if refusals_left <= 0:
                            break
                        continue
                    claimed.append((_take(conn, job, now), token))
                    free -= 1
                    per_class[class_path] = per_class.get(class_path, 0) + 1
                    limit = class_limits.get(class_path)
                    if limit is not None and per_class[class_path] >= limit:
                        full.add(class_path)
                    if free <= 0:
                        break
        return claimed

    @_translated
    def unclaim(self, job_id: int, error: str) -> Job | None:
        """running -> queued: the runner could not be started; try again later."""
        return self._cas(job_id, (Status.RUNNING,), status=Status.QUEUED.value, error=error)

    @_translated
    def start_attempt(self, job_id: int, runner_pid: int, runner_start: int) -> Job | None:
        """running (claimed) -> running (attempt n+1 begins). None if not running."""
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET attempt = attempt + 1, runner_pid = ?, runner_start = ?, "
                "pid = NULL, pid_start = NULL, started_at = IFNULL(started_at, ?), "
                "updated_at = ?, progress = NULL, progress_message = NULL "
                f"WHERE id = ? AND {RUNNING_SQL}",
                (runner_pid, runner_start, now, now, job_id),
            )
            return self._get(conn, job_id) if cur.rowcount else None

    @_translated
    def set_attempt_process(
        self, job_id: int, pid: int, pid_start: int | None, *, attempt: int | None = None
    ) -> None:
        self._cas(job_id, (Status.RUNNING,), fence=attempt, read=False, pid=pid, pid_start=pid_start)

    @_translated
    def succeed(self, job_id: int, result: str | None, *, attempt: int | None = None) -> Job | None:
        """running -> succeeded."""
        return self._finish(
            job_id,
            Status.SUCCEEDED,
            fence=attempt,
            result=result,
            error=None,
            exception=None,
            exit_code=0,
            exit_signal=None,
            progress=1.0,
        )

    @_translated
    def fail_attempt(
        self, job_id: int, *, retry_at: float | None, attempt: int | None = None, **outcome
    ) -> Job | None:
        """running -> retrying (when `retry_at` is set) or -> failed."""
        if retry_at is None:
            return self._finish(job_id, Status.FAILED, fence=attempt, **outcome)
        return self._cas(
            job_id,
            (Status.RUNNING,),
            fence=attempt,
            status=Status.RETRYING.value,
            run_after=retry_at,
            **outcome,
        )

    @_translated
    def cancelled(self, job_id: int, *, attempt: int | None = None, **outcome) -> Job | None:
        """running -> cancelled, after the runner stopped the attempt. A cancel
        is not an exception: one an earlier attempt left is cleared."""
        return self._finish(job_id, Status.CANCELLED, fence=attempt, **{"exception": None, **outcome})

    @_translated
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
            exception=None,
        )

    @_translated
    def request_cancel(self, job_id: int, source: str, user: str | None, grace: float) -> Job | None:
        """Flag a running job for cancellation. Exactly one caller wins (returns the job)."""
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET cancel_requested_at = ?, cancel_source = ?, cancel_user = ?, "
                f"cancel_grace = ?, updated_at = ? WHERE id = ? AND {RUNNING_SQL} "
                "AND cancel_requested_at IS NULL",
                (now, source, user, grace, now, job_id),
            )
            return self._get(conn, job_id) if cur.rowcount else None

    @_translated
    def mark_lost(self, job_id: int, *, retry_at: float | None, cancelled: bool, error: str) -> Job | None:
        """running -> retrying | failed | cancelled, for a job whose runner died.
        A cancel clears the exception (an earlier lost attempt's RunnerLost)."""
        if cancelled:
            return self._finish(job_id, Status.CANCELLED, error=error, exception=None)
        return self.fail_attempt(
            job_id, retry_at=retry_at, error=error, exception="RunnerLost", exit_code=None, exit_signal=None
        )

    def unit(self):
        """`with store.unit():` a transition and its record. On one host the
        record goes to the files, not the store: nothing to join."""
        return contextlib.nullcontext()

    def set_output_tail(self, job_id: int, text: str, *, attempt: int | None = None) -> None:
        """On one host the output file is the tail: nothing to keep."""

    def output_tail(self, job_id: int) -> str | None:
        return None

    @_translated
    def touch(self, job_id: int, *, attempt: int | None = None) -> None:
        """The runner's lease: it is alive and running this attempt (updated_at)."""
        sql, args = f"UPDATE jobs SET updated_at = ? WHERE id = ? AND {RUNNING_SQL}", [time.time(), job_id]
        if attempt is not None:
            sql += " AND attempt = ?"
            args.append(attempt)
        with self._tx() as conn:
            conn.execute(sql, args)

    def db_now(self) -> float:
        """The store's clock: this host's, for a file on this host."""
        return time.time()

    @_translated
    def set_output_error(self, job_id: int, why: str, *, attempt: int | None = None) -> None:
        """Note that the job's output is lost from here on, and why (the job runs on)."""
        self._cas(job_id, None, fence=attempt, read=False, output_error=why)

    @_translated
    def set_progress(
        self, job_id: int, fraction: float | None, message: str | None, *, attempt: int | None = None
    ) -> None:
        self._cas(
            job_id, (Status.RUNNING,), fence=attempt, read=False, progress=fraction, progress_message=message
        )

    # --- helpers ------------------------------------------------------------

    def _get(self, conn: sqlite3.Connection, job_id: int) -> Job:
        return Job.from_row(conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())

    def _finish(self, job_id: int, status: Status, *, fence: int | None = None, **values) -> Job | None:
        return self._cas(
            job_id, (Status.RUNNING,), fence=fence, status=status.value, finished_at=time.time(), **values
        )

    def _cas(
        self,
        job_id: int,
        expected: tuple[Status, ...] | None,
        *,
        fence: int | None = None,
        read: bool = True,
        **values,
    ) -> Job | None:
        """The one compare-and-set: set `values` if the job is in `expected`
        (any status, for None) and, with `fence`, at attempt `fence`. Returns
        the job as changed (without `read`: None, and no read), or None."""
        values["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in values)
        sql, args = f"UPDATE jobs SET {sets} WHERE id = ?", [*values.values(), job_id]
        if expected is not None:
            exp = [s.value for s in expected]
            sql += f" AND status IN ({_placeholders(exp)})"
            args.extend(exp)
        if fence is not None:
            sql += " AND attempt = ?"
            args.append(fence)
        with self._tx() as conn:
            cur = conn.execute(sql, args)
            return self._get(conn, job_id) if cur.rowcount and read else None


def _take(conn: sqlite3.Connection, job: Job, now: float) -> Job:
    """queued/retrying -> running, for a job claim_due took; the job as it is now."""
    conn.execute(
        "UPDATE jobs SET status = ?, updated_at = ?, pid = NULL, "
        "pid_start = NULL, runner_pid = NULL, runner_start = NULL "
        "WHERE id = ? AND status = ?",
        (Status.RUNNING.value, now, job.id, job.status.value),
    )
    return job._replace(
        status=Status.RUNNING, updated_at=now, pid=None, pid_start=None, runner_pid=None, runner_start=None
    )


def _fail_unreadable(conn: sqlite3.Connection, job: Job, now: float) -> None:
    """queued/retrying -> failed, for a due row that cannot run as it stands."""
    conn.execute(
        "UPDATE jobs SET status = ?, finished_at = ?, updated_at = ?, error = ? WHERE id = ? AND status = ?",
        (
            Status.FAILED.value,
            now,
            now,
            f"not run: its row is unreadable ({job.defect})",
            job.id,
            job.status.value,
        ),
    )


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
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return False
            except BaseException:
                self._roll_back()  # a COMMIT that failed (a full disk) may leave it open
                raise
        self._roll_back()
        return False

    def _roll_back(self) -> None:
        # SQLite may have rolled back already (after SQLITE_FULL, say): the
        # connection must leave with no transaction open, and the error that
        # got here is the one to report.
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except driver().Error:
                pass


def highest_used_id(
    output_dir: str | os.PathLike, log_files: tuple[str, ...] = (), tail: int = 256 * 1024
) -> int:
    """The highest job id that files outside the store have used: an output
    file `ID.out` in `output_dir`, or a record (a JSON line with "job_id") in
    the last `tail` bytes of one of `log_files`. 0 if none. A new store starts
    its ids above this (Store's `id_floor`), so a job never writes into an
    older job's output, nor shares its history in the logs."""
    highest = 0
    try:
        names = os.listdir(output_dir)
    except OSError:
        names = []
    for name in names:
        stem, dot, ext = name.partition(".")
        if ext == "out" and stem.isdigit():
            highest = max(highest, int(stem))
    for path in log_files:
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - tail))
                text = f.read()
        except OSError:
            continue
        lines = text.splitlines()
        if size > tail:
            lines = lines[1:]  # the first may be cut
        for line in lines:
            try:
                job_id = json.loads(line).get("job_id")
            except (ValueError, AttributeError, RecursionError):
                continue  # a bad line, skipped as every reader skips it
            if type(job_id) is int:
                highest = max(highest, job_id)
    return highest
