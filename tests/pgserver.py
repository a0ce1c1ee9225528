"""A throwaway PostgreSQL server for the fleet tests: initdb and pg_ctl in a
temp dir, run as the `postgres` user when the suite runs as root (initdb
refuses root), on a free loopback port and on a unix socket.

`PgServer.start()` returns None with the reason in `why_not` where no
PostgreSQL can be had; the tests then skip with that reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def _bindir() -> str | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One PostgreSQL cluster in a temp dir, started and stopped by the tests."""

    why_not = ""

    def __init__(self, root: Path, bindir: str, user: str | None) -> None:
        self.root = root
        self.bindir = bindir
        self.user = user  # run the server as this user (root cannot)
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = _free_port()

    @classmethod
    def start_new(cls) -> PgServer | None:
        bindir = _bindir()
        if bindir is None:
            cls.why_not = "no PostgreSQL here (initdb not found); `python3 dev.py test` installs it as root"
            return None
        user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                cls.why_not = "running as root and there is no postgres user to run PostgreSQL as"
                return None
            user = "postgres"
        root = Path(tempfile.mkdtemp(prefix="bgjobs-pg-"))
        server = cls(root, bindir, user)
        try:
            server._initdb()
            server.start()
        except (OSError, subprocess.SubprocessError) as exc:
            cls.why_not = f"could not start PostgreSQL: {exc}"
            server.destroy()
            return None
        return server

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.user:
            cmd = ["su", self.user, "-s", "/bin/sh", "-c", " ".join(_quote(a) for a in cmd)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)

    def _initdb(self) -> None:
        self.sockets.mkdir(parents=True)
        if self.user:
            pw = pwd.getpwnam(self.user)
            for path in (self.root, self.sockets):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.sockets}'\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nmax_connections = 200\n"
                # A dead host's advisory locks are freed within about 30 s (docs/fleet.md).
                "tcp_keepalives_idle = 10\ntcp_keepalives_interval = 5\ntcp_keepalives_count = 3\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-m", "fast", "-w", "restart"
        )

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except (OSError, subprocess.SubprocessError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        """A URL over TCP on loopback."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str = "postgres") -> str:
        """A URL over the unix socket."""
        return f"postgresql://postgres@/{dbname}?host={self.sockets}&port={self.port}"

    def new_database(self) -> str:
        """A fresh, empty database; returns its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.sql(f"CREATE DATABASE {name}")
        return name

    def sql(self, statement: str, dbname: str = "postgres"):
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchall() if cur.description else None

    def wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
