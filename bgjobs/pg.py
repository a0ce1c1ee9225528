"""PostgreSQL for fleet mode: connections, errors, and the schema.

Everything that talks to PostgreSQL goes through here: `connect` opens a
connection that notices a dead peer (TCP keepalives and a user timeout), names
its host to the server (application_name "bgjobs HOST"), and turns a failure
into a StoreError that names the database and says what to do; `Connections`
keeps one per thread; `ensure_schema` creates or migrates bgjobs' tables on
first use, under a session advisory lock.

psycopg is imported with the first connection, not with this module, and only
in fleet mode: a missing `bgjobs[fleet]` extra is one ConfigError (exit 2)
that says how to install it.

Advisory lock keys. PostgreSQL has one space of 64-bit advisory lock keys per
database. A job's own lock (fleet liveness) takes its id, which is positive;
bgjobs' fleet-wide locks take negative keys, so no job id can ever take one:

    SCHEMA_KEY  -1  session lock while the schema is created or migrated
    CLAIM_KEY   -2  transaction lock around every claim: claims run one at a
                    time across the fleet, so max_concurrent, per-class limits
                    and worker_slots hold across hosts
    -3 .. -99       reserved for bgjobs' other fleet-wide locks (the waker, ...)

Keep the store's database to bgjobs (and Procrastinate, which takes no
advisory locks): another application's advisory locks would share these keys.
"""

from __future__ import annotations

import os
from threading import local as thread_local

from .errors import ConfigError, StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

SCHEMA_KEY = -1
CLAIM_KEY = -2
RESERVED_KEYS = range(-99, 0)  # every advisory key bgjobs itself takes or may take

# A connection to a dead or unreachable server is dropped within about 25 s,
# whether it is idle (keepalives: 10 s, then 3 probes 5 s apart) or waiting for
# a write to be acknowledged (the user timeout), so that a runner can tell it
# lost the store well within fence_after (30 s by default).
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,  # milliseconds
}
CONNECT_TIMEOUT = 10  # seconds, unless the URL sets connect_timeout
UNREACHABLE_ADVICE = "is PostgreSQL running? check store: in config.yaml"


def driver():
    """The psycopg module, imported at the first connection. Without the
    fleet extra installed, a ConfigError (exit 2) that says how to get it."""
    try:
        import psycopg
    except ImportError as exc:
        raise ConfigError(
            f"store: postgresql://... needs psycopg, which is not installed ({exc}); "
            'install the fleet extra: pip install "bgjobs[fleet]"'
        ) from None
    return psycopg


# --- naming a database, never its password ------------------------------------


def _conninfo(url: str) -> dict[str, str]:
    """The URL's parameters, as libpq reads them (the URL's own query ones
    included), without connecting; {} if it cannot be read."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
        info = {
            "user": unquote(parts.username or ""),
            "host": unquote(parts.hostname or ""),
            "port": str(parts.port or ""),
            "dbname": unquote(parts.path.lstrip("/")),
        }
        info.update(parse_qsl(parts.query))
    except ValueError:
        return {}
    info.pop("password", None)
    return {k: v for k, v in info.items() if v}


def where(url: str) -> str:
    """The database `url` names, for a message: "database NAME at HOST:PORT"
    (libpq's defaults where the URL leaves them out). Never a password."""
    info = _conninfo(url)
    host = info.get("host") or os.environ.get("PGHOST") or "the default socket"
    port = info.get("port") or os.environ.get("PGPORT") or "5432"
    name = info.get("dbname") or os.environ.get("PGDATABASE") or info.get("user") or "(default)"
    return f"database {name} at {host}:{port}"


def describe(url: str) -> str:
    """`url` as bgjobs shows it: the URL as written, with any password taken out."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    try:
        parts = urlsplit(url)
        if parts.password is not None:
            user, _, hostport = parts.netloc.rpartition("@")
            url = url.replace(f"//{parts.netloc}", f"//{user.partition(':')[0]}@{hostport}", 1)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if any(k == "password" for k, _ in query):
            kept = urlencode([(k, v) for k, v in query if k != "password"], safe="/")
            url = url.replace(f"?{parts.query}", f"?{kept}" if kept else "", 1)
        return url
    except ValueError:
        return "postgresql://(a URL that cannot be read)"


# --- connecting ---------------------------------------------------------------


def connect(url: str, host: str, *, autocommit: bool = True) -> psycopg.Connection:
    """A new connection to `url`, for bgjobs on host `host`: TCP keepalives
    and a user timeout (KEEPALIVES), a connect timeout (CONNECT_TIMEOUT unless
    the URL sets one), and application_name "bgjobs HOST", so pg_stat_activity
    shows which host each session is. Autocommit by default: a transaction is
    explicit (`with conn.transaction():`). No server-side prepared statements:
    a long-lived session's cached plan would break when another host's newer
    bgjobs migrates the schema, and a pooler in transaction mode cannot
    carry them.

    Raises StoreError (exit 7) naming the database and what to do when it
    cannot connect, and ConfigError (exit 2) when psycopg is not installed."""
    psycopg = driver()
    options = dict(KEEPALIVES, application_name=f"bgjobs {host}"[:63])
    if "connect_timeout" not in _conninfo(url):
        options["connect_timeout"] = CONNECT_TIMEOUT
    try:
        conn = psycopg.connect(url, autocommit=autocommit, **options)
    except psycopg.Error as exc:
        raise store_error(exc, url) from None
    conn.prepare_threshold = None
    return conn


def one_line(text: object) -> str:
    """The first line of an error's text: libpq adds a hint on the next (and
    a multi-host URL a line per host); bgjobs' message says what to do."""
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def store_error(exc: Exception, url: str) -> StoreError:
    """The StoreError for psycopg error `exc` on the store at `url`: one line
    that names the database (never a password) and says what to do."""
    at = where(url)
    what = one_line(exc) or type(exc).__name__
    state = getattr(exc, "sqlstate", None) or ""
    lowered = what.lower()
    if state in ("28P01", "28000") or ("password" in lowered and "authentication" in lowered):
        message = (
            f"PostgreSQL refused the login to {at} ({what}); check the user in store: (config.yaml) "
            "and its password in libpq's passfile (~/.pgpass) or PGPASSWORD"
        )
    elif "no password supplied" in lowered:
        message = (
            f"PostgreSQL at {at} asks for a password and none was given ({what}); put it in libpq's "
            "passfile (~/.pgpass) or PGPASSWORD, never in config.yaml"
        )
    elif state == "3D000":
        name = at.split()[1]
        message = f"{at} does not exist ({what}); create it (createdb {name}), or fix store: in config.yaml"
    elif state == "53300":
        message = (
            f"PostgreSQL at {at} has no free connection ({what}); raise its max_connections, "
            "or lower worker_slots on the hosts"
        )
    elif state == "53100":
        message = f"PostgreSQL at {at} is out of disk space ({what}); free some space on its server"
    elif state == "25006":
        message = f"{at} is read-only ({what}); point store: in config.yaml at the primary, not a standby"
    elif state == "42501":
        message = (
            f"the user of store: may not use {at} as bgjobs needs ({what}); grant it the right "
            "(CREATE on the database, for the first use), or use the database's owner"
        )
    elif state.startswith("57P"):
        message = f"PostgreSQL at {at} is shutting down or starting up ({what}); try again in a moment"
    elif state.startswith("08") or (not state and isinstance(exc, driver().OperationalError)):
        message = f"cannot reach PostgreSQL for the job store, {at} ({what}); {UNREACHABLE_ADVICE}"
    else:
        message = f"the job store, {at}, could not be used ({what}); check store: in config.yaml and the server's log"
    return StoreError(message, path=describe(url))


class Connections:
    """One connection to `url` per thread, and per process: a forked child
    never touches its parent's connection (it makes its own), and a connection
    that broke (the server restarted, the network failed) is replaced on the
    next call. `setup(conn)` runs on each new connection (PgStore checks the
    schema there)."""

    def __init__(self, url: str, host: str, *, setup: Callable[[psycopg.Connection], None] | None = None):
        self.url, self.host, self.setup = url, host, setup
        self._local = thread_local()

    def get(self) -> psycopg.Connection:
        """This thread's connection, opened (or opened again) if need be."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid() and not conn.closed and not conn.broken:
            if not _ended_by_server(conn):
                return conn
        self._local.conn = None
        if conn is not None and self._local.pid == os.getpid():
            conn.close()  # broken: drop it; a forked copy is left alone (psycopg closes it in no child)
        conn = connect(self.url, self.host)
        try:
            if self.setup is not None:
                self.setup(conn)
        except BaseException:
            conn.close()
            raise
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection, if this process opened it."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and self._local.pid == os.getpid():
            conn.close()


def _ended_by_server(conn: psycopg.Connection) -> bool:
    """Whether idle `conn` was ended by the server meanwhile (a restart,
    pg_terminate_backend): its socket is readable, with the server's goodbye or
    its end, where nothing else comes to an idle connection that does not
    LISTEN. psycopg learns it only at the next statement, which would fail: a
    write is not tried again (it may have landed), so the first write after a
    restart would fail for nothing. No round trip: a poll of the socket."""
    if conn.info.transaction_status != driver().pq.TransactionStatus.IDLE:
        return False  # inside a transaction: never swapped for another
    import select

    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


# --- the schema -----------------------------------------------------------------

# Waiting and running jobs, as the partial indexes name them; a query uses such
# an index only if its WHERE clause holds this very term (literals, not
# parameters), so every query for them spells it this way.
WAITING_SQL = "status IN ('queued', 'retrying')"
RUNNING_SQL = "status = 'running'"

# Each entry migrates the schema from version i to i + 1; bgjobs_schema_version
# holds the version (a name of its own: "schema_version" is Flyway's, and
# others'). Every step runs in one transaction, with its version.
MIGRATIONS: list[list[str]] = [
    [
        "CREATE TABLE bgjobs_schema_version (version integer NOT NULL)",
        # The columns of the SQLite store's jobs table (bgjobs.store), plus host.
        """CREATE TABLE jobs (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            class_path text NOT NULL,
            method text NOT NULL,
            params text NOT NULL,
            status text NOT NULL,
            priority integer NOT NULL DEFAULT 0,
            attempt integer NOT NULL DEFAULT 0,
            max_attempts integer NOT NULL,
            retry_delay double precision NOT NULL,
            retry_backoff double precision NOT NULL,
            timeout double precision,
            cancel_grace double precision NOT NULL,
            run_after double precision NOT NULL,
            created_at double precision NOT NULL,
            started_at double precision,
            finished_at double precision,
            updated_at double precision NOT NULL,
            runner_pid integer,
            runner_start bigint,
            pid integer,
            pid_start bigint,
            exit_code integer,
            exit_signal integer,
            exception text,
            error text,
            result text,
            progress double precision,
            progress_message text,
            cancel_requested_at double precision,
            cancel_source text,
            cancel_user text,
            source text,
            "user" text,
            retry_of bigint,
            output_error text,
            host text
        )""",
        # The claim reads waiting jobs in claim order through this index.
        f"CREATE INDEX jobs_waiting ON jobs (priority, created_at, id) WHERE {WAITING_SQL}",
        f"CREATE INDEX jobs_waiting_run_after ON jobs (run_after) WHERE {WAITING_SQL}",
        f"CREATE INDEX jobs_running ON jobs (class_path) WHERE {RUNNING_SQL}",
        f"CREATE INDEX jobs_running_host ON jobs (host) WHERE {RUNNING_SQL}",
        "CREATE INDEX jobs_created ON jobs (created_at)",
        # Log records, as the JSON Lines files hold them, with the host that
        # wrote each (written by the fleet's events seam; see docs/fleet.md).
        """CREATE TABLE events (
            id bigserial PRIMARY KEY,
            ts timestamptz NOT NULL DEFAULT clock_timestamp(),
            level text NOT NULL,
            event text NOT NULL,
            job_id bigint,
            class text,
            method text,
            attempt integer,
            message text,
            host text,
            record jsonb NOT NULL
        )""",
        "CREATE INDEX events_job ON events (job_id, id)",
        "CREATE INDEX events_ts ON events (ts)",
        # One row per host that runs a job-worker (see docs/fleet.md).
        """CREATE TABLE hosts (
            name text PRIMARY KEY,
            pid integer,
            started double precision,
            last_seen double precision,
            slots integer,
            running integer,
            version text,
            config_fingerprint text
        )""",
    ],
    # 2: a job's output tail, for the dashboard and job-output on any host.
    ["ALTER TABLE jobs ADD COLUMN output_tail text"],
]
SCHEMA_VERSION = len(MIGRATIONS)
TABLES = ("jobs", "events", "hosts")
_ADVICE = "point store: in config.yaml at a database of bgjobs' own (createdb bgjobs)"


def schema_version(conn: psycopg.Connection) -> int:
    """The schema version of the database `conn` is on: 0 if bgjobs has not
    made its tables there. StoreError if it holds tables of the same names
    that bgjobs did not make."""
    row = conn.execute(
        "SELECT to_regclass('bgjobs_schema_version') IS NOT NULL AS ours, "
        "array_remove(ARRAY[to_regclass('jobs'), to_regclass('events'), to_regclass('hosts')]::text[], NULL) "
        "AS others"
    ).fetchone()
    ours, others = _row(row)
    if not ours:
        if others:
            raise StoreError(
                f"{where_of(conn)} is not a bgjobs database: it holds tables named {', '.join(others)} "
                f"that bgjobs did not make; {_ADVICE}",
                path=where_of(conn),
            )
        return 0
    versions = [_row(r)[0] for r in conn.execute("SELECT version FROM bgjobs_schema_version").fetchall()]
    return max(versions, default=0)


def ensure_schema(conn: psycopg.Connection, *, id_floor: Callable[[], int] | None = None) -> int:
    """Create or migrate bgjobs' tables on the database of `conn` (an
    autocommit connection), and return the schema version. Cheap when the
    schema is current (one query). Otherwise it takes the session advisory
    lock SCHEMA_KEY, so that of many commands starting at once on a new
    database one creates the tables and the others wait for it, and runs each
    missing step in one transaction.

    `id_floor()`, called once when the tables are created, gives the highest
    job id already used outside the store (output files, log records): new ids
    start above it. A database of a newer schema is refused, untouched."""
    version = schema_version(conn)
    if version == SCHEMA_VERSION:
        return version
    _refuse_newer(conn, version)
    conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_KEY,))
    try:
        version = schema_version(conn)  # another process may have done it meanwhile
        _refuse_newer(conn, version)
        for step in range(version, SCHEMA_VERSION):
            with conn.transaction():
                for ddl in MIGRATIONS[step]:
                    conn.execute(ddl)
                if step == 0 and id_floor is not None:
                    floor = int(id_floor())
                    if floor > 0:
                        conn.execute("SELECT setval(pg_get_serial_sequence('jobs', 'id'), %s)", (floor,))
                conn.execute("DELETE FROM bgjobs_schema_version")
                conn.execute("INSERT INTO bgjobs_schema_version (version) VALUES (%s)", (step + 1,))
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_KEY,))
    return SCHEMA_VERSION


def ensure_transport_schema(conn: psycopg.Connection) -> None:
    """Create Procrastinate's tables (fleet mode's transport) if they are not
    there yet, under the same lock as bgjobs' own (SCHEMA_KEY). Procrastinate
    owns that schema; its migrations, on an upgrade of Procrastinate, are
    applied with its own tool (`procrastinate schema --migrate`; docs/fleet.md)."""
    if _transport_present(conn):
        return
    from procrastinate.schema import SchemaManager

    conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_KEY,))
    try:
        if not _transport_present(conn):
            with conn.transaction():
                conn.execute(SchemaManager.get_schema())
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_KEY,))


def _transport_present(conn: psycopg.Connection) -> bool:
    (present,) = _row(
        conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present").fetchone()
    )
    return bool(present)


def _refuse_newer(conn: psycopg.Connection, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where_of(conn)} has bgjobs schema version {version}, newer than this bgjobs knows "
            f"({SCHEMA_VERSION}); upgrade bgjobs on this host",
            path=where_of(conn),
        )


def where_of(conn: psycopg.Connection) -> str:
    """The database `conn` is on, as `where` names it."""
    info = conn.info
    return f"database {info.dbname} at {info.host}:{info.port}"


def _row(row) -> list:
    """A row's values in order, whatever the connection's row factory."""
    return list(row.values()) if isinstance(row, dict) else list(row)
