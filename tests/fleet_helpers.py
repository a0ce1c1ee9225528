"""A fleet on one machine, for tests/test_fleet.py: one real PostgreSQL
database, a `job-worker` process per host (each with its own BGJOBS_HOST,
config file, log_dir and state_dir), and a client config for a host that runs
no worker (it launches, cancels and watches).

Every wait is a poll bounded by a deadline; all traffic is on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import yaml

from tests.conftest import BIN, wait_until

FINAL = ("succeeded", "failed", "cancelled")
TASKS = "testjobs.tasks.Tasks"

# Small enough to keep the suite fast, large enough for a busy 2-core machine.
FLEET_CONFIG = {
    "worker_slots": 2,
    "fence_after": 3,
    "max_retries": 0,
    "retry_delay": 0.2,
    "retry_backoff": 1,
    "cancel_grace": 2,
    "max_concurrent": 16,
}

# A second job class, a subclass of testjobs' Tasks, so a per-class limit can
# be told apart from the global one; and a job whose first run is long and
# whose later runs are short, each run a line in `path` and its own result.
MORE_SOURCE = """
import json
import os
import time
from pathlib import Path

import bgjobs
from testjobs.tasks import Tasks


class Other(Tasks):
    def long_then_short(self, path: str, long: float, short: float) -> str:
        job_id = bgjobs.current_job().id
        p = Path(path)
        lines = p.read_text().splitlines() if p.exists() else []
        run = 1 + sum(json.loads(line)["id"] == job_id for line in lines)
        with open(path, "a") as f:
            f.write(json.dumps({"id": job_id, "run": run, "pid": os.getpid()}) + "\\n")
        time.sleep(long if run == 1 else short)
        return f"run {run}"
"""


class Fleet:
    """Hosts of one fleet in `project` (tests/conftest.py's Project), on the
    PostgreSQL database at `url`. The project's config.yaml is the client's
    (host "client", no worker); each host's file differs from it only in
    log_dir and state_dir, and its name comes from BGJOBS_HOST."""

    def __init__(self, project, url: str, **config) -> None:
        self.project, self.url, self.root = project, url, project.root
        (self.root / "testjobs" / "more.py").write_text(MORE_SOURCE)
        self.workers: dict[str, subprocess.Popen] = {}
        self._store = None
        self.configure(**config)

    # --- config -------------------------------------------------------------

    def configure(self, **config) -> None:
        """Write the client's config and every host's (the same keys)."""
        self.config = {
            "allowed_classes": ["testjobs.tasks.Tasks", "testjobs.tasks.Cooperative", "testjobs.more.Other"],
            **FLEET_CONFIG,
            **config,
            "store": self.url,
            "executor": "procrastinate",
        }
        self.project.write_config(**self.config, host="client")

    def host_config(self, host: str) -> Path:
        path = self.root / f"{host}.yaml"
        path.write_text(
            yaml.safe_dump({**self.config, "log_dir": f"logs-{host}", "state_dir": f"state-{host}"})
        )
        return path

    def host_env(self, host: str) -> dict:
        return {**self.project.env, "BGJOBS_HOST": host, "BGJOBS_CONFIG": str(self.host_config(host))}

    @property
    def client_rt(self):
        return self.project.rt

    @property
    def store(self):
        """A store handle of the test's own (host "pytest"): it only reads, and
        never reconciles, so it changes nothing the hosts do."""
        if self._store is None:
            from bgjobs.pgstore import PgStore

            self._store = PgStore(self.url, "pytest")
        return self._store

    # --- workers --------------------------------------------------------------

    def start_worker(self, host: str, *, timeout: float = 60) -> subprocess.Popen:
        """Start `job-worker` for `host`, and wait for its first heartbeat."""
        out = open(self.root / f"{host}.worker.out", "ab")  # noqa: SIM115 - the child has its copy
        try:
            proc = subprocess.Popen(
                [str(BIN / "job-worker")],
                env=self.host_env(host),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            out.close()
        self.workers[host] = proc

        def seen():
            if proc.poll() is not None:
                raise AssertionError(
                    f"job-worker {host} exited {proc.returncode}: {self.worker_output(host)}"
                )
            return any(h["name"] == host and h["pid"] == proc.pid for h in self.store.hosts())

        wait_until(seen, timeout, interval=0.1, what=f"job-worker {host}'s first heartbeat")
        # The heartbeat comes before Procrastinate's worker listens: wait for its line too.
        wait_until(
            lambda: f"bgjobs worker {host}:" in self.worker_output(host),
            timeout,
            interval=0.05,
            what=f"job-worker {host} to start",
        )
        return proc

    def worker_output(self, host: str) -> str:
        path = self.root / f"{host}.worker.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_workers(self) -> None:
        """SIGTERM every worker still running; SIGKILL one that does not exit."""
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    # --- jobs -----------------------------------------------------------------

    def submit(self, method: str, *params, cls: str = TASKS, **options) -> int:
        """Insert a job from the client, as job-run and the API do in fleet mode
        (the row, its queued record and its wake-up in one transaction)."""
        from bgjobs import launcher

        rt = self.client_rt
        return launcher.insert_job(rt, launcher.prepare(rt, cls, method, list(params), **options)).id

    def job(self, job_id: int):
        return self.store.get(job_id)

    def wait_status(self, job_id: int, *statuses: str, timeout: float = 60):
        def check():
            job = self.job(job_id)
            return job if job.status.value in statuses else None

        try:
            return wait_until(check, timeout, interval=0.05, what=f"job {job_id} to be {'/'.join(statuses)}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it is {self.job(job_id)}\n{self.diagnostics()}") from None

    def wait_final(self, ids, timeout: float = 90) -> list:
        """Wait until every job of `ids` is final; returns them."""
        ids = list(ids)
        deadline = time.monotonic() + timeout
        for job_id in ids:
            self.wait_status(job_id, *FINAL, timeout=max(deadline - time.monotonic(), 0.1))
        return [self.job(i) for i in ids]

    def wait_running(self, job_id: int, *, attempt: int = 1, timeout: float = 60):
        """Wait until the job's attempt `attempt` runs, with its pid recorded."""

        def check():
            job = self.job(job_id)
            if job.is_final:
                raise AssertionError(f"job {job_id} ended before it was seen running: {job}")
            ok = job.status.value == "running" and job.attempt == attempt and job.pid and job.runner_pid
            return job if ok else None

        try:
            return wait_until(check, timeout, interval=0.05, what=f"job {job_id} attempt {attempt} to run")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None

    def events(self, job_id: int) -> list[dict]:
        """The job's records, from the store's events table (every host's)."""
        return [record for _, record in self.store.events_after(0, job_id=job_id)]

    def cli(self, *args: str, host: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """A console script with the client's config, or `host`'s."""
        env = self.project.env if host is None else self.host_env(host)
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def status_json(self, limit: int = 1000) -> list[dict]:
        out = self.cli("job-status", "--json", "--limit", str(limit))
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def diagnostics(self) -> str:
        """What a failed wait shows: the rows, and each worker's output."""
        lines = [f"{j.id} {j.status.value} attempt={j.attempt} host={j.host}" for j in self.store.list_jobs()]
        for host in self.workers:
            lines.append(f"--- {host} worker:\n{self.worker_output(host)[-2000:]}")
        for path in sorted(self.root.glob("logs-*/jobs/*.out")):
            lines.append(f"--- {path.relative_to(self.root)}:\n{path.read_text(errors='replace')[-1500:]}")
        return "\n".join(lines)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has exited)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marker_lines(path: Path) -> list[dict]:
    """testjobs' record_start lines: one per run of a job."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def terminate_sessions(server, url: str, application_name: str) -> int:
    """End every PostgreSQL session of `application_name` on `url`'s database
    (as a cut network would, from the server's side); returns how many."""
    dbname = url.rsplit("/", 1)[1]
    rows = server.sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{dbname}' AND application_name = '{application_name}'"
    )
    return len(rows or [])


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def advisory_locks_held(server, url: str) -> set[int]:
    """The keys of the session advisory locks granted on `url`'s database (job
    ids, for the job locks: a bigint key k is classid k >> 32, objid k & 0xffffffff)."""
    dbname = url.rsplit("/", 1)[1]
    rows = server.sql(
        "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        f"WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND d.datname = '{dbname}'"
    )
    return {row[0] for row in rows or []}


def warm_claimers(host: str) -> list[int]:
    """The pids of `host`'s warm claimers (job-worker's runner booted ahead)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE or "--warm" not in " ".join(
            proc.info["cmdline"] or ()
        ):
            continue
        try:
            if proc.environ().get("BGJOBS_HOST") == host:
                found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found
