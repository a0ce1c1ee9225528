"""The job store on PostgreSQL (fleet mode): the methods, and the promises, of
the SQLite store (bgjobs.store.Store), for any number of hosts at once.

Every state change is one compare-and-set, `UPDATE jobs ... WHERE id = %s AND
status = ANY(...) RETURNING *`: of two racing writers, on any hosts, exactly
one wins (PostgreSQL re-checks the WHERE clause on the row a concurrent writer
left). A method returns the job as changed, or None.

Three things differ from one host, each for the fleet's sake:

- Time is the database's. Every time the store records (created_at,
  updated_at, started_at, finished_at, cancel_requested_at) is the database
  server's clock_timestamp(), and a claim compares run_after with it; no
  host's clock decides when a job runs. A time a caller passes (insert's
  run_after, fail_attempt's and mark_lost's retry_at, the filters of
  list_jobs and counts, claim_due's now) was computed on the caller's clock:
  the store converts it by offset, `t - caller_now + db_now`, so "in 5 s" on
  a host whose clock is off stays 5 s. next_due gives its time back on the
  caller's clock (the waker sleeps until it).
- Claims run one at a time across the fleet: each takes the transaction
  advisory lock pg.CLAIM_KEY first, so the running counts it reads are final
  and max_concurrent, per-class limits and `host_slots` hold across hosts.
  A claim records its host in the row (`host`).
- Runner-side writes are fenced. Given `attempt=`, a write also requires
  `attempt = %s AND host = <this store's host>`: a runner that lost its job
  (its host was cut off, the job was taken for lost and claimed again)
  changes nothing. A runner's start_attempt (with a runner pid) requires the
  claim to be this host's.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import NamedTuple

from . import pg
from .fleetsignal import CANCEL_CHANNEL
from .job import ACTIVE, WAITING, Job, Status
from .pg import RUNNING_SQL, WAITING_SQL

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

# The database's clock, in epoch seconds. A statement reads it once through
# `FROM {_CLOCK}` (a subquery in FROM is evaluated once), so the times one
# change writes agree with each other.
_NOW_SQL = "extract(epoch FROM clock_timestamp())::double precision"
_CLOCK = f"(SELECT {_NOW_SQL} AS now) AS clock"
_COLUMNS = frozenset(Job._fields) | {"host", "output_tail"}
_ACTIVE = [s.value for s in ACTIVE]
_CLAIM_ORDER = "priority, created_at, id"


_WAITING_VALUES = tuple(s.value for s in WAITING)


class _Now:
    """A value: the database's clock at the change."""


NOW = _Now()


class CallerTime(NamedTuple):
    """A value: epoch time `t` on the caller's clock, stored on the database's."""

    t: float


def claim_sql(full_classes: int = 0, after: bool = False) -> str:
    """The claim's SELECT: due waiting rows in claim order, read through the
    partial index jobs_waiting, and locked for the claim's transaction (a
    cancel_waiting that races the claim waits for it, then finds the job
    running and fails its compare-and-set). Its parameters: the database
    time, then `full_classes` class paths to leave out, then (with `after`)
    the claim-order key to start after, then a limit."""
    sql = f"SELECT * FROM jobs WHERE {WAITING_SQL} AND run_after <= %s"
    if full_classes:
        sql += f" AND class_path NOT IN ({','.join(['%s'] * full_classes)})"
    if after:
        sql += f" AND ({_CLAIM_ORDER}) > (%s, %s, %s)"
    return sql + f" ORDER BY {_CLAIM_ORDER} LIMIT %s FOR UPDATE"


def _col(name: str) -> str:
    if name not in _COLUMNS:
        raise ValueError(f"jobs has no column {name!r}")
    return f'"{name}"'


def _translated(method=None, *, read: bool = False):
    """Wrap a PgStore method so that what PostgreSQL reports leaves it as a
    StoreError naming the database and what to do. A read (`read=True`) that
    met a connection the server had dropped meanwhile (a restart) is tried
    once more on a new one; a write is not, since it may have landed."""

    def wrap(method):
        def translated(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except pg.driver().Error as exc:
                if not (read and isinstance(exc, pg.driver().OperationalError)):
                    raise pg.store_error(exc, self.url) from exc
                self._connections.close()
            try:
                return method(self, *args, **kwargs)
            except pg.driver().Error as exc:
                raise pg.store_error(exc, self.url) from exc

        translated.__name__, translated.__qualname__ = method.__name__, method.__qualname__
        translated.__doc__, translated.__wrapped__ = method.__doc__, method
        return translated

    return wrap if method is None else wrap(method)


class PgStore:
    """A handle on the job store in the PostgreSQL database at `url`, for
    bgjobs on host `host`. One connection per thread (bgjobs.pg.Connections);
    the schema is created or migrated on the first connection (pg.ensure_schema).

    Every method raises StoreError (exit 7), never a raw psycopg error, when
    the database cannot be used: it names the database (never a password) and
    says what to do. `path` is the URL without a password, as messages show it.

    `id_floor()`: as for the SQLite store, called once when the tables are
    created; new ids start above it. `clock`: the caller's clock (time.time),
    from which the times passed in are converted (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        host: str,
        *,
        id_floor: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.time,
        wake: Callable[[psycopg.Connection, int, float], object] | None = None,
    ) -> None:
        """`wake(conn, job_id, run_after)`, if given (fleet mode's transport,
        bgjobs.fleet), is called inside the transaction of every change that
        leaves a job waiting (insert, a retry, a lost runner's retry, an
        unclaim), with its start time on the database's clock: the row and its
        wake-up commit together, or neither does."""
        self.url, self.host, self.id_floor, self.clock, self.wake = url, host, id_floor, clock, wake
        self.path = pg.describe(url)
        self._connections = pg.Connections(url, host, setup=self._setup)

    def _setup(self, conn: psycopg.Connection) -> None:
        from psycopg.rows import dict_row

        conn.row_factory = dict_row
        pg.ensure_schema(conn, id_floor=self.id_floor)
        if self.wake is not None:
            pg.ensure_transport_schema(conn)

    def _conn(self) -> psycopg.Connection:
        return self._connections.get()

    @_translated
    def open(self) -> None:
        """Open this thread's connection now; it is otherwise opened on first use."""
        self._conn()

    def close(self) -> None:
        """Close this thread's connection (the runner does so before it forks)."""
        self._connections.close()

    def _offset(self, t: float) -> float:
        """Caller time `t` as an offset from now, to add to the database's now.
        The connection is made first: a new one's setup (connect, schema check)
        between the offset and the statement would shift the time by as much."""
        self._conn()
        return float(t) - self.clock()

    # --- reads ----------------------------------------------------------------

    @_translated(read=True)
    def get(self, job_id: int) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    @_translated(read=True)
    def list_jobs(
        self,
        *,
        statuses: tuple[str, ...] | None = None,
        class_path: str | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        limit: int | None = 100,
        host: str | None = None,
    ) -> list[Job]:
        """Jobs newest first, filtered (`since` and `until` on the caller's clock;
        `host`: the jobs whose runner is, or was last, on that host)."""
        where, args = [], []
        if host:
            where.append("host = %s")
            args.append(host)
        if statuses:
            where.append("status = ANY(%s)")
            args.append([str(s) for s in statuses])
        if class_path:
            where.append("class_path = %s")
            args.append(class_path)
        if since is not None:
            where.append(f"created_at >= %s + {_NOW_SQL}")
            args.append(self._offset(since))
        if until is not None:
            where.append(f"created_at <= %s + {_NOW_SQL}")
            args.append(self._offset(until))
        if text:
            # ILIKE without an escape character: as SQLite's LIKE matches.
            where.append(
                "(class_path || '.' || method || ' ' || params || ' ' || coalesce(error, '')) ILIKE %s ESCAPE ''"
            )
            args.append(f"%{text}%")
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Job.from_row(r) for r in self._conn().execute(sql, args).fetchall()]

    @_translated(read=True)
    def jobs_in(self, *statuses: Status) -> list[Job]:
        rows = self._conn().execute(
            "SELECT * FROM jobs WHERE status = ANY(%s) ORDER BY id", ([s.value for s in statuses],)
        )
        return [Job.from_row(r) for r in rows.fetchall()]

    @_translated(read=True)
    def counts(self, since: float | None = None) -> dict[str, int]:
        """Jobs per status; with `since` (the caller's clock), only jobs
        finished since then or not finished."""
        sql, args = "SELECT status, count(*) AS n FROM jobs", []
        if since is not None:
            sql += f" WHERE finished_at >= %s + {_NOW_SQL} OR finished_at IS NULL"
            args.append(self._offset(since))
        sql += " GROUP BY status"
        return {r["status"]: r["n"] for r in self._conn().execute(sql, args).fetchall()}

    @_translated(read=True)
    def has_active(self) -> bool:
        row = self._conn().execute("SELECT 1 FROM jobs WHERE status = ANY(%s) LIMIT 1", (_ACTIVE,)).fetchone()
        return row is not None

    @_translated(read=True)
    def has_waiting(self) -> bool:
        return self._conn().execute(f"SELECT 1 FROM jobs WHERE {WAITING_SQL} LIMIT 1").fetchone() is not None

    @_translated(read=True)
    def next_due(self) -> float | None:
        """The earliest start time of a waiting job, on the caller's clock, or
        None when none waits."""
        row = (
            self._conn()
            .execute(f"SELECT min(run_after) - {_NOW_SQL} AS due_in FROM jobs WHERE {WAITING_SQL}")
            .fetchone()
        )
        return None if row["due_in"] is None else self.clock() + row["due_in"]

    @_translated(read=True)
    def running_on(self, host: str) -> int:
        """How many jobs run on host `host` (claimed there, not yet final)."""
        row = (
            self._conn()
            .execute(f"SELECT count(*) AS n FROM jobs WHERE {RUNNING_SQL} AND host = %s", (host,))
            .fetchone()
        )
        return row["n"]

    @_translated(read=True)
    def due_count(self, limit: int | None = None) -> int:
        """How many waiting jobs are due now, by the database's clock; counted
        up to `limit` at most (a backlog is not counted through)."""
        sql = f"SELECT 1 FROM jobs WHERE {WAITING_SQL} AND run_after <= {_NOW_SQL}"
        if limit is not None:
            sql += f" LIMIT {max(int(limit), 0)}"
        return self._conn().execute(f"SELECT count(*) AS n FROM ({sql}) AS due").fetchone()["n"]

    # --- hosts ------------------------------------------------------------------

    @_translated
    def upsert_host(
        self,
        *,
        name: str,
        pid: int,
        started: float,
        slots: int,
        version: str,
        config_fingerprint: str,
    ) -> None:
        """Record host `name` in the hosts table (docs/fleet.md): its worker's
        pid, when it started (the caller's clock), its slots, bgjobs version
        and config fingerprint; last_seen is the database's now, and running
        what runs there now."""
        self._conn().execute(
            "INSERT INTO hosts (name, pid, started, last_seen, slots, running, version, config_fingerprint) "
            f"SELECT %s, %s, clock.now + %s, clock.now, %s, "
            f"(SELECT count(*) FROM jobs WHERE {RUNNING_SQL} AND host = %s), %s, %s FROM {_CLOCK} "
            "ON CONFLICT (name) DO UPDATE SET pid = excluded.pid, started = excluded.started, "
            "last_seen = excluded.last_seen, slots = excluded.slots, running = excluded.running, "
            "version = excluded.version, config_fingerprint = excluded.config_fingerprint",
            (name, pid, self._offset(started), slots, name, version, config_fingerprint),
        )

    @_translated(read=True)
    def hosts(self) -> list[dict]:
        """The hosts table's rows, by name; `last_seen` and `started` on the
        database's clock, with `seen_ago` (seconds since last_seen)."""
        return (
            self._conn()
            .execute(f"SELECT *, {_NOW_SQL} - last_seen AS seen_ago FROM hosts ORDER BY name")
            .fetchall()
        )

    # --- transitions ------------------------------------------------------------

    @_translated
    def insert(self, *, on_insert: Callable[[int], object] | None = None, **values) -> Job:
        """queued: a new row. `values` hold the validated spec (class_path,
        method, params) and its policy; `run_after` is on the caller's clock.
        `on_insert(id)` is called with the new row's id before it is committed."""
        values = dict(values)
        if "class" in values:  # the column's old name, from a caller not yet moved
            values["class_path"] = values.pop("class")
        values["params"] = json.dumps(list(values["params"]))
        run_after = values.pop("run_after", None)
        values.update(status=Status.QUEUED.value, created_at=NOW, updated_at=NOW)
        values["run_after"] = NOW if run_after is None else CallerTime(run_after)
        cols, exprs, args = [], [], []
        for name, value in values.items():
            cols.append(_col(name))
            if value is NOW:
                exprs.append("(SELECT now FROM clock)")
            elif isinstance(value, CallerTime):
                exprs.append("(SELECT now FROM clock) + %s")
                args.append(self._offset(value.t))
            else:
                exprs.append("%s")
                args.append(value)
        conn = self._conn()
        with conn.transaction():
            row = conn.execute(
                f"WITH clock AS (SELECT {_NOW_SQL} AS now) "
                f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join(exprs)}) RETURNING *",
                args,
            ).fetchone()
            if self.wake is not None:
                self.wake(conn, row["id"], row["run_after"])
            if on_insert is not None:
                on_insert(row["id"])
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
        """queued/retrying -> running, for due jobs (run_after against the
        database's clock, or against `now` on the caller's clock), lowest
        priority value first, then oldest, within the global and per-class
        limits and, with `host_slots`, under that many running on this host.
        `accept(job)` returns a token (the runner's lock) or None to skip the
        job. The claim sets `host` on the rows it takes.

        Claims run one at a time across the fleet (the advisory lock
        pg.CLAIM_KEY, held to the commit). As the SQLite store's claim: a
        class at its limit is left out in SQL, and a due row that cannot run
        as it stands goes to failed with the reason as its error."""
        claimed: list[tuple[Job, object]] = []
        conn = self._conn()
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg.CLAIM_KEY,))
            # Read after the lock: every claim before this one has committed.
            offset = 0.0 if now is None else self._offset(now)
            due = conn.execute(f"SELECT {_NOW_SQL} + %s AS due", (offset,)).fetchone()["due"]
            per_class = {
                r["class_path"]: r["n"]
                for r in conn.execute(
                    f"SELECT class_path, count(*) AS n FROM jobs WHERE {RUNNING_SQL} GROUP BY class_path"
                ).fetchall()
            }
            free = max_running - sum(per_class.values())
            if host_slots is not None:
                row = conn.execute(
                    f"SELECT count(*) AS n FROM jobs WHERE {RUNNING_SQL} AND host = %s", (self.host,)
                ).fetchone()
                free = min(free, host_slots - row["n"])
            full = {c for c, limit in class_limits.items() if per_class.get(c, 0) >= limit}
            after: tuple | None = None  # the claim-order key of the last row accept() refused
            refusals_left = max(free * 4, 64)
            while free > 0 and refusals_left > 0:
                args: list = [due, *sorted(full)]
                if after is not None:
                    args.extend(after)
                sql = claim_sql(len(full), after is not None)
                rows = conn.execute(sql, (*args, free + 16)).fetchall()
                if not rows:
                    break
                for row in rows:
                    class_path = row["class_path"]
                    if class_path in full:
                        continue
                    job = Job.from_row(row)
                    if job.defect is not None:
                        self._fail_unreadable(conn, job)
                        continue
                    token = accept(job)
                    if token is None:
                        after = (job.priority, job.created_at, job.id)
                        refusals_left -= 1
                        if refusals_left <= 0:
                            break
                        continue
                    claimed.append((self._take(conn, job), token))
                    free -= 1
                    per_class[class_path] = per_class.get(class_path, 0) + 1
                    limit = class_limits.get(class_path)
                    if limit is not None and per_class[class_path] >= limit:
                        full.add(class_path)
                    if free <= 0:
                        break
        return claimed

    def _take(self, conn: psycopg.Connection, job: Job) -> Job:
        """queued/retrying -> running, for a row claim_due holds locked."""
        row = conn.execute(
            "UPDATE jobs SET status = %s, host = %s, updated_at = clock.now, pid = NULL, pid_start = NULL, "
            f"runner_pid = NULL, runner_start = NULL FROM {_CLOCK} "
            "WHERE id = %s AND status = %s RETURNING jobs.*",
            (Status.RUNNING.value, self.host, job.id, job.status.value),
        ).fetchone()
        return Job.from_row(row)

    def _fail_unreadable(self, conn: psycopg.Connection, job: Job) -> None:
        """queued/retrying -> failed, for a due row that cannot run as it stands."""
        conn.execute(
            "UPDATE jobs SET status = %s, finished_at = clock.now, updated_at = clock.now, error = %s "
            f"FROM {_CLOCK} WHERE id = %s AND status = %s",
            (Status.FAILED.value, f"not run: its row is unreadable ({job.defect})", job.id, job.status.value),
        )

    @_translated
    def unclaim(self, job_id: int, error: str) -> Job | None:
        """running -> queued: the runner could not be started; try again later."""
        return self._cas(job_id, (Status.RUNNING,), status=Status.QUEUED.value, error=error, host=None)

    @_translated
    def start_attempt(self, job_id: int, runner_pid: int | None, runner_start: int | None) -> Job | None:
        """running (claimed) -> running (attempt n+1 begins). None if not
        running. A runner's start (`runner_pid` given) also requires that the
        claim was this host's; reconcile's (None) does not."""
        sql = (
            "UPDATE jobs SET attempt = jobs.attempt + 1, runner_pid = %s, runner_start = %s, "
            "pid = NULL, pid_start = NULL, started_at = coalesce(jobs.started_at, clock.now), "
            "updated_at = clock.now, progress = NULL, progress_message = NULL "
            f"FROM {_CLOCK} WHERE id = %s AND {RUNNING_SQL}"
        )
        args: list = [runner_pid, runner_start, job_id]
        if runner_pid is not None:
            sql += " AND host = %s"
            args.append(self.host)
        conn = self._conn()
        with conn.transaction():
            row = conn.execute(sql + " RETURNING jobs.*", args).fetchone()
            if row and self.wake is not None and row["status"] in _WAITING_VALUES:
                self.wake(conn, row["id"], row["run_after"])
        return Job.from_row(row) if row else None

    @_translated
    def set_attempt_process(
        self, job_id: int, pid: int, pid_start: int | None, *, attempt: int | None = None
    ) -> None:
        self._cas(job_id, (Status.RUNNING,), fence=attempt, pid=pid, pid_start=pid_start)

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
        """running -> retrying (when `retry_at`, on the caller's clock, is set) or -> failed."""
        if retry_at is None:
            return self._finish(job_id, Status.FAILED, fence=attempt, **outcome)
        return self._cas(
            job_id,
            (Status.RUNNING,),
            fence=attempt,
            status=Status.RETRYING.value,
            run_after=CallerTime(retry_at),
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
        return self._cas(
            job_id,
            (Status.QUEUED, Status.RETRYING),
            status=Status.CANCELLED.value,
            finished_at=NOW,
            cancel_requested_at=NOW,
            cancel_source=source,
            cancel_user=user,
            error="cancelled before it ran",
            exception=None,
        )

    @_translated
    def request_cancel(self, job_id: int, source: str, user: str | None, grace: float) -> Job | None:
        """Flag a running job for cancellation. Exactly one caller wins (returns the job)."""
        conn = self._conn()
        with conn.transaction():
            row = conn.execute(
                "UPDATE jobs SET cancel_requested_at = clock.now, cancel_source = %s, cancel_user = %s, "
                f"cancel_grace = %s, updated_at = clock.now FROM {_CLOCK} "
                f"WHERE id = %s AND {RUNNING_SQL} AND cancel_requested_at IS NULL RETURNING jobs.*",
                (source, user, grace, job_id),
            ).fetchone()
            if row:
                # The job's runner, on whichever host, listens (bgjobs.fleetsignal);
                # sent on commit, with the flag.
                conn.execute("SELECT pg_notify(%s, %s)", (CANCEL_CHANNEL, str(job_id)))
        return Job.from_row(row) if row else None

    @_translated
    def mark_lost(self, job_id: int, *, retry_at: float | None, cancelled: bool, error: str) -> Job | None:
        """running -> retrying | failed | cancelled, for a job whose runner died.
        A cancel clears the exception (an earlier lost attempt's RunnerLost)."""
        if cancelled:
            return self._finish(job_id, Status.CANCELLED, error=error, exception=None)
        return self.fail_attempt(
            job_id, retry_at=retry_at, error=error, exception="RunnerLost", exit_code=None, exit_signal=None
        )

    @contextlib.contextmanager
    def unit(self):
        """`with store.unit():` runs what is inside in one transaction on this
        thread's connection: a transition and its events row commit together.
        A failure, the commit's too, is a StoreError."""
        try:
            with self._conn().transaction():
                yield
        except pg.driver().Error as exc:
            raise pg.store_error(exc, self.url) from exc

    @_translated
    def insert_event(self, record: dict) -> None:
        """A log record as a row of the events table (fleet mode)."""
        self._conn().execute(
            "INSERT INTO events (level, event, job_id, class, method, attempt, message, host, record) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            (
                record.get("level"),
                record.get("event"),
                record.get("job_id"),
                record.get("class"),
                record.get("method"),
                record.get("attempt"),
                record.get("message"),
                record.get("host"),
                json.dumps(record, default=str),
            ),
        )

    @_translated
    def events_after(
        self, last_id: int, *, job_id: int | None = None, limit: int = 10_000
    ) -> list[tuple[int, dict]]:
        """(id, record) of the events rows after `last_id`, oldest first: read
        incrementally, as a file tail reads by offset."""
        sql, args = "SELECT id, record FROM events WHERE id > %s", [last_id]
        if job_id is not None:
            sql += " AND job_id = %s"
            args.append(job_id)
        rows = self._conn().execute(sql + " ORDER BY id LIMIT %s", [*args, limit]).fetchall()
        return [tuple(pg._row(r)) for r in rows]

    @_translated
    def set_output_tail(self, job_id: int, text: str, *, attempt: int | None = None) -> None:
        """The latest tail of the job's output (its runner's host has the file)."""
        self._cas(job_id, None, fence=attempt, output_tail=text)

    @_translated
    def output_tail(self, job_id: int) -> str | None:
        row = self._conn().execute("SELECT output_tail FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return pg._row(row)[0] if row else None

    @_translated
    def touch(self, job_id: int, *, attempt: int | None = None) -> None:
        """The runner's lease: it is alive and running this attempt, on this
        host (updated_at, on the database's clock; see pgliveness.may_settle)."""
        self._cas(job_id, (Status.RUNNING,), fence=attempt)

    @_translated
    def db_now(self) -> float:
        """The database's clock, in epoch seconds."""
        (now,) = pg._row(self._conn().execute(f"SELECT {_NOW_SQL} AS now").fetchone())
        return float(now)

    @_translated
    def set_output_error(self, job_id: int, why: str, *, attempt: int | None = None) -> None:
        """Note that the job's output is lost from here on, and why (the job runs on)."""
        self._cas(job_id, None, fence=attempt, output_error=why)

    @_translated
    def set_progress(
        self, job_id: int, fraction: float | None, message: str | None, *, attempt: int | None = None
    ) -> None:
        self._cas(job_id, (Status.RUNNING,), fence=attempt, progress=fraction, progress_message=message)

    # --- helpers ----------------------------------------------------------------

    def _finish(self, job_id: int, status: Status, *, fence: int | None = None, **values) -> Job | None:
        return self._cas(
            job_id, (Status.RUNNING,), fence=fence, status=status.value, finished_at=NOW, **values
        )

    def _cas(
        self, job_id: int, expected: tuple[Status, ...] | None, *, fence: int | None = None, **values
    ) -> Job | None:
        """The one compare-and-set: set `values` if the job is in `expected`
        (any status, for None) and, with `fence`, if the job is at attempt
        `fence` on this host."""
        values["updated_at"] = NOW
        sets, args = [], []
        for name, value in values.items():
            if value is NOW:
                sets.append(f"{_col(name)} = clock.now")
            elif isinstance(value, CallerTime):
                sets.append(f"{_col(name)} = clock.now + %s")
                args.append(self._offset(value.t))
            else:
                sets.append(f"{_col(name)} = %s")
                args.append(value)
        sql = f"UPDATE jobs SET {', '.join(sets)} FROM {_CLOCK} WHERE id = %s"
        args.append(job_id)
        if expected is not None:
            sql += " AND status = ANY(%s)"
            args.append([s.value for s in expected])
        if fence is not None:
            sql += " AND attempt = %s AND host = %s"
            args.extend((fence, self.host))
        conn = self._conn()
        with conn.transaction():
            row = conn.execute(sql + " RETURNING jobs.*", args).fetchone()
            if row and self.wake is not None and row["status"] in _WAITING_VALUES:
                self.wake(conn, row["id"], row["run_after"])
        return Job.from_row(row) if row else None
