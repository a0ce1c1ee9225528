"""Shared fixtures: a temp project with its own config.yaml and job module.

Every test that starts jobs gets a fresh project in tmp_path; at teardown,
every process that still runs in that project (runners, attempts, wakers) is
killed, so no test leaks processes into the next.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.testjobs_src import SOURCE

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def gone_or_zombie(pid: int) -> bool:
    """True once process `pid` has exited (reaped or not)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def cmdline(proc: psutil.Process) -> list[str]:
    """`proc`'s command line, or [] if it has exited meanwhile (a zombie has none)."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def zombie_children(pid: int) -> list[int]:
    """The children of `pid` that have exited and wait to be reaped."""
    found = []
    for child in psutil.Process(pid).children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass  # reaped between the listing and the look
    return found


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    """Poll `predicate` until it returns a truthy value; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Project:
    """A throwaway bgjobs project: config, job module, logs, state."""

    def __init__(self, root: Path, **config) -> None:
        self.root = root
        (root / "testjobs").mkdir()
        (root / "testjobs" / "__init__.py").write_text("")
        (root / "testjobs" / "tasks.py").write_text(SOURCE)
        self.config_path = root / "config.yaml"
        self.write_config(**config)

    def write_config(self, **overrides) -> None:
        cfg = {
            "allowed_classes": [
                "testjobs.tasks.Tasks",
                "testjobs.tasks.Cooperative",
                "testjobs.tasks.NeedsArgs",
            ],
            "max_retries": 0,
            "retry_delay": 0.05,
            "retry_backoff": 1,
            "cancel_grace": 2,
            "max_concurrent": 8,
        }
        cfg.update(overrides)
        self.config_path.write_text(yaml.safe_dump(cfg))
        self._rt = None

    @property
    def rt(self):
        from bgjobs.wiring import wire

        return wire(self.config_path)

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env["BGJOBS_CONFIG"] = str(self.config_path)
        env["BGJOBS_TEST_DIR"] = str(self.root)
        env["BGJOBS_CACHE_DIR"] = str(self.root / ".cache")
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        env.pop("BGJOBS_LOCK_FD", None)
        return env

    def cli(self, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a console script (job-run, job-status, ...) in this project."""
        proc = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
        return proc

    def submit(self, method: str, *params, cls: str = "testjobs.tasks.Tasks", **options) -> int:
        from bgjobs import api

        return api.run_background_job(cls, method, *params, config=self.config_path, **options)

    def python(self, code: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run Python `code` in a fresh interpreter, in this project."""
        return subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def fill_slots(self, seconds: float = 600) -> int:
        """With max_concurrent 1, start a job that holds the only slot; returns its id."""
        self.write_config(max_concurrent=1)
        blocker = self.submit("sleep", seconds)
        self.wait_status(blocker, "running")
        return blocker

    def job(self, job_id: int):
        return self.rt.store.get(job_id)

    def wait_status(self, job_id: int, *statuses: str, timeout: float = 20.0):
        from bgjobs import launcher

        def check():
            launcher.dispatch(self.rt)
            job = self.job(job_id)
            return job if job.status.value in statuses else None

        return wait_until(
            check,
            timeout,
            what=f"job {job_id} to be {'/'.join(statuses)} (it is {self.job(job_id).status.value})",
        )

    def wait_final(self, job_id: int, timeout: float = 20.0):
        """Wait until the job is final in the store and its final record is logged
        (the runner commits the state first, then writes the record)."""
        job = self.wait_status(job_id, "succeeded", "failed", "cancelled", timeout=timeout)
        wait_until(
            lambda: job.status.value in self.events(job_id), timeout=5, what=f"job {job_id}'s final record"
        )
        return job

    def records(self, errors: bool = False) -> list[dict]:
        name = "background_jobs_errors.log" if errors else "background_jobs.log"
        path = self.root / "logs" / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def events(self, job_id: int | None = None) -> list[str]:
        return [r["event"] for r in self.records() if job_id is None or r["job_id"] == job_id]

    def processes(self) -> list[psutil.Process]:
        """Every live process working in this project (runners, attempts, wakers)."""
        found = []
        config = str(self.config_path)
        for proc in psutil.process_iter(["pid", "cwd", "status"]):
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            try:
                ours = proc.info["cwd"] and Path(proc.info["cwd"]) == self.root
                # A runner that has not reached its chdir yet is known by its env.
                ours = ours or proc.environ().get("BGJOBS_CONFIG") == config
            except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
                continue
            if ours:
                found.append(proc)
        return found

    def kill_all(self) -> None:
        """SIGKILL every process of the project; return once each has exited
        (a signalled process is still running for a moment after the kill)."""
        killed = []
        for proc in self.processes():
            try:
                proc.send_signal(signal.SIGKILL)
                killed.append(proc.pid)
            except psutil.NoSuchProcess:
                pass
        wait_until(lambda: all(map(gone_or_zombie, killed)), timeout=10, what="the killed processes to exit")


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    root.mkdir()
    proj = Project(root)
    monkeypatch.setenv("BGJOBS_TEST_DIR", str(root))
    monkeypatch.setenv("BGJOBS_CACHE_DIR", str(root / ".cache"))  # no cache files left in ~/.cache
    monkeypatch.syspath_prepend(str(root))
    yield proj
    proj.kill_all()
    for name in list(sys.modules):
        if name == "testjobs" or name.startswith("testjobs."):
            del sys.modules[name]


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL for the whole session (tests/pgserver.py); the fleet
    tests skip, saying why, where none can be had."""
    from tests.pgserver import PgServer

    server = PgServer.start_new()
    if server is None:
        pytest.skip(PgServer.why_not)
    yield server
    server.destroy()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh, empty database on the session's PostgreSQL."""
    return pg_server.url(pg_server.new_database())
