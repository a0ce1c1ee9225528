"""Benchmark: fleet mode (three job-workers on this machine, one PostgreSQL) against the local mode.

    .venv/bin/python bench/bench_fleet.py [--quick] [--rounds N] [--jobs 1000] [--slots 1]

The fleet: a throwaway PostgreSQL 15 (tests/pgserver.py: initdb and pg_ctl in a
temp folder, as the postgres user when run as root, on a free loopback port)
and three `job-worker` processes, hosts h1, h2 and h3, each with `worker_slots`
(--slots, default 1) and a state and log folder of its own. This process is a
fourth host, `client`, that runs no jobs: it submits and cancels through the
Python API, as an application would. The local mode is the same project on its
SQLite file, with `max_concurrent` equal to the fleet's slots (3 by default), so
both run as many jobs at once. Rounds interleave the two modes (A B, B A, ...).

- Throughput: N no-op jobs (jobs.noop.Noop, default 1,000) submitted one by one
  with `bgjobs.api.run_background_job` from this process, from the first submit
  until every one is final, in jobs per second. CPU per job: user + system of
  every process involved, until the last of them has exited and been reaped:
  this process (the submits), and in local mode every runner, attempt, waker
  and warm spare (reaped by this process, a child subreaper); in fleet mode the
  workers and every runner and attempt they started (read from /proc: a
  worker's own time and its reaped children's), and separately the PostgreSQL
  server (the postmaster, its exited backends, and the live ones).
- Submit → the job's first line (the job stamps CLOCK_MONOTONIC as its first
  line), p50 and p90. Cold: the first job after the mode has been idle (no job
  running; each host's warm claimer booted) for COLD_IDLE seconds, longer than
  a worker's sweep. Warm: a job submitted the moment the job before it wrote
  its first line (chains of jobs back to back, the first of each not counted),
  so the fleet is busy: the previous job's runner is still finishing, and may
  take the next job itself. Goal: warm p50 at most 20 ms.
- Boot: the CPU of one warm claimer (what each runner a wake-up needs costs
  before its first job), from its spawn to its exit unused, against
  `python -c pass`.
- Cancel → final state: `bgjobs.api.cancel_job` of a running job (a sleeper,
  which SIGTERM ends) that runs on another host (h1, h2 or
  h3; the caller is `client`), with a grace of 0 (SIGTERM, then SIGKILL at
  once), wall time of the call, which returns once the job is final. Goal: p50
  at most 100 ms plus the grace.
- Peers, where installed: Celery (Redis broker and results) with a prefork pool
  of the same size, and the same with --max-tasks-per-child=1 (a fresh pool
  process per task): throughput and submit → first line. They are bench-only
  (bench/run_all.py installs celery in its venv; redis-server is a system
  package: `apt-get install -y redis-server`) and skipped with a note when missing.

Every wait is bounded by a deadline. At the end the workers get SIGTERM, then
SIGKILL, every process left in the project is killed, and PostgreSQL is stopped
and its folder removed. Not a test: nothing here gates CI.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BIN,
    CPUS,
    PY,
    REPO,
    RUNNER_MARKS,
    BenchProject,
    Report,
    become_subreaper,
    fmt_ms,
    fmt_rate,
    load_note,
    parser,
    reap_orphans,
    wait_cpu,
    wait_file,
)

HOSTS = ("h1", "h2", "h3")
GOAL_WARM_P50 = 0.020  # seconds: submit -> first line, warm
GOAL_CANCEL = 0.100  # seconds, plus the grace: cancel -> final state
GRACE = 0.0  # the cancel's grace period: SIGTERM, then SIGKILL at once
COLD_IDLE = 2.5  # seconds a mode is left idle before a cold start (a worker sweeps every 2 s)
CHAIN = 3  # warm samples per chain (each chain's first job is cold and not counted)
DEADLINE = 600.0  # seconds any one round may take
# What job-worker runs to keep a warm claimer (bgjobs.fleet.WARM_CODE): it boots
# (bgjobs, psycopg, its store and lock connections, the attempt module), then
# waits for a line on stdin; at end of input it exits unused. Its CPU to that
# exit is what each runner a wake-up starts pays before its first job.
WARM_CODE = "import sys; from bgjobs.runner import main; sys.exit(main(['--claim', '--warm']))"
BOOTS = 5  # warm claimer boots measured, against as many `python -c pass`


class Unavailable(Exception):
    """The fleet cannot be had here (no PostgreSQL, no fleet extra)."""


def _pgserver():
    """tests/pgserver.py's PgServer, loaded by path: putting the repo on
    sys.path would make this process import the work tree's bgjobs, not the
    code being measured."""
    spec = importlib.util.spec_from_file_location("bench_pgserver", REPO / "tests" / "pgserver.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PgServer


def _proc_cpu(pid: int, children: bool = True) -> float:
    """User + system seconds of `pid` (and of the children it has reaped) from /proc."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    total = t.user + t.system
    if children:
        total += t.children_user + t.children_system
    return total


def _tree_cpu(pid: int) -> float:
    """CPU seconds of the live process `pid` and all its live descendants, each
    with the children it has reaped: everything the tree has spent, save what
    died unreaped or was reaped outside it."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        try:
            total += _proc_cpu(proc.pid)
        except psutil.NoSuchProcess:
            pass  # exited meanwhile: its parent's children time has it once reaped
    return total


def _self_cpu(exclude: set[int]) -> float:
    """This process's CPU seconds, its reaped children's, and its live
    descendants' (the API's warm spare, a runner), but for the trees under
    `exclude` (the job-workers, the peers' servers)."""
    import psutil

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    for child in psutil.Process().children():
        if child.pid not in exclude:
            total += _tree_cpu(child.pid)
    return total


def _until(pred, what: str, timeout: float, interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def pct(xs: list[float], p: int) -> float:
    """The p-th percentile (inclusive method), e.g. 50 or 90."""
    if len(xs) == 1:
        return xs[0]
    return statistics.quantiles(xs, n=100, method="inclusive")[p - 1]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of `pid` from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])


class SpawnCounter(threading.Thread):
    """Counts the processes the workers start (their runners) while it runs, by
    looking at /proc every 10 ms for new pids whose parent is a worker (a
    runner lives at least an interpreter's start), and the most that were alive
    at once under one worker (`peak`). Its own CPU time is kept in `cpu`, to
    take out of this process's."""

    def __init__(self, parents: set[int]) -> None:
        super().__init__(name="bench-spawn-counter", daemon=True)
        self.parents = parents
        self.found: set[int] = set()
        self.cpu = 0.0
        self.peak = 0
        self.halt = threading.Event()
        self.looked = {int(name) for name in os.listdir("/proc") if name.isdigit()}
        self.live: dict[int, int] = {}  # pid -> its worker, for the workers' live children
        for pid in self.looked:
            st = _stat(pid)
            if st and st[1] in parents and st[0] != "Z":
                self.live[pid] = st[1]

    def _scan(self) -> None:
        # A pid is looked at once: one reused within a round (after the pid space
        # wrapped) would be missed; the round is far shorter than that.
        for pid in {int(name) for name in os.listdir("/proc") if name.isdigit()} - self.looked:
            self.looked.add(pid)
            st = _stat(pid)
            if st and st[1] in self.parents:
                self.found.add(pid)
                self.live[pid] = st[1]
        for pid, parent in list(self.live.items()):
            st = _stat(pid)
            if st is None or st[0] == "Z" or st[1] != parent:
                del self.live[pid]
        per_worker: dict[int, int] = {}
        for parent in self.live.values():
            per_worker[parent] = per_worker.get(parent, 0) + 1
        self.peak = max(self.peak, *per_worker.values(), 0)

    def run(self) -> None:
        t0 = time.thread_time()
        while not self.halt.wait(0.01):
            self._scan()
        self.cpu = time.thread_time() - t0

    def finish(self) -> int:
        self.halt.set()
        self.join(timeout=10)
        return len(self.found)


class Fleet:
    """PostgreSQL and one job-worker per host in HOSTS, in project `proj`.
    `config` is the client's config (host `client`, which runs no job-worker)."""

    def __init__(self, proj: BenchProject, slots: int) -> None:
        try:
            import procrastinate  # noqa: F401
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise Unavailable(f'{exc.name} is not installed: pip install "bgjobs[fleet]"') from None
        self.proj = proj
        self.workers: list[subprocess.Popen] = []
        self.host_configs: list[Path] = []
        PgServer = _pgserver()
        self.pg = PgServer.start_new()
        if self.pg is None:
            raise Unavailable(PgServer.why_not)
        try:
            self._start(slots)
        except BaseException:
            self.close()
            raise

    def _start(self, slots: int) -> None:
        proj = self.proj
        self.url = self.pg.url(self.pg.new_database())
        self.version = self.pg.sql("SHOW server_version")[0][0]
        common = dict(
            store=self.url,
            executor="procrastinate",
            worker_slots=slots,
            max_concurrent=slots * len(HOSTS),
            fence_after=30,
        )
        self.config = proj.variant(
            "client", host="client", state_dir="state-client", log_dir="logs-client", **common
        )
        from bgjobs import api

        api.job_counts(config=self.config)  # creates the schema, before the workers race for it
        for host in HOSTS:
            cfg = proj.variant(host, host=host, state_dir=f"state-{host}", log_dir=f"logs-{host}", **common)
            self.host_configs.append(cfg)
            with open(proj.root / f"worker-{host}.out", "wb") as out:
                self.workers.append(
                    subprocess.Popen(
                        [str(BIN / "job-worker")],
                        env=proj.env(BGJOBS_CONFIG=str(cfg), BGJOBS_HOST=None),
                        cwd=proj.root,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

        def all_up() -> bool:
            for w in self.workers:
                if w.poll() is not None:
                    raise RuntimeError(f"a job-worker exited ({w.returncode}): {self.worker_output()}")
            return {h["name"] for h in api.hosts(config=self.config)} >= set(HOSTS)

        _until(all_up, "the three job-workers' heartbeats", 60, 0.05)
        self.pids = {w.pid for w in self.workers}

    def worker_output(self) -> str:
        return " | ".join(
            (self.proj.root / f"worker-{h}.out").read_text(errors="replace").strip()[-500:] for h in HOSTS
        )

    def check_workers(self) -> None:
        for w in self.workers:
            if w.poll() is not None:
                raise RuntimeError(f"a job-worker exited ({w.returncode}): {self.worker_output()}")

    def settle(self, timeout: float = 30) -> None:
        """Wait until no job is active and every worker is idle: it has reaped
        what it started, and what it still has is at most one warm claimer
        (booted and waiting for its `go`, so using no CPU), which has no child."""
        from bgjobs import api

        _until(
            lambda: (
                not any(
                    api.job_counts(config=self.config).get(s, 0) for s in ("queued", "running", "retrying")
                )
            ),
            "the fleet's jobs to end",
            timeout,
            0.02,
        )
        _until(self._idle, "the workers to be idle (runners reaped, warm claimers booted)", timeout, 0.02)

    def _idle(self) -> bool:
        import psutil

        try:
            seen = []
            for pid in self.pids:
                kids = psutil.Process(pid).children()
                if len(kids) > 1:
                    return False
                for kid in kids:
                    if (
                        kid.status() not in (psutil.STATUS_SLEEPING, psutil.STATUS_IDLE)
                        or "--warm" not in " ".join(kid.cmdline())
                        or kid.children()
                    ):
                        return False
                    seen.append((kid, kid.cpu_times()))
            time.sleep(0.05)
            return all(kid.cpu_times() == times for kid, times in seen)  # not booting any more
        except psutil.NoSuchProcess:
            return False

    def workers_cpu(self) -> tuple[float, float]:
        """The workers' CPU seconds, with every runner and attempt they started;
        and the workers' own (Procrastinate's worker, the sweeps)."""
        return sum(_tree_cpu(pid) for pid in self.pids), sum(_proc_cpu(p, children=False) for p in self.pids)

    def server_cpu(self) -> float:
        """The PostgreSQL server's CPU seconds: the postmaster's own, its exited
        backends' (it reaps them), and its live ones'."""
        import psutil

        pm = int((self.pg.data / "postmaster.pid").read_text().split()[0])
        total = _proc_cpu(pm)
        for child in psutil.Process(pm).children():
            try:
                total += _proc_cpu(child.pid, children=False)
            except psutil.NoSuchProcess:
                pass  # it exited meanwhile: the postmaster's children time has it
        return total

    def runner_count(self, first_id: int) -> int:
        import psycopg

        with psycopg.connect(self.url) as conn:
            return conn.execute(
                "SELECT COUNT(DISTINCT (host, runner_pid)) FROM jobs WHERE id >= %s", (first_id,)
            ).fetchone()[0]

    def close(self) -> None:
        for w in self.workers:
            _killpg(w.pid, signal.SIGTERM)
        for w in self.workers:
            try:
                w.wait(timeout=10)
            except subprocess.TimeoutExpired:
                _killpg(w.pid, signal.SIGKILL)
                w.wait(timeout=10)
        try:  # the runners are detached from their workers: stop what is left
            self.proj.quiesce(10, include_waker=False)
        except RuntimeError:
            for proc in self.proj.processes():
                try:
                    proc.kill()
                except Exception:  # noqa: BLE001 - gone already, or not ours to kill
                    pass
        self.pg.destroy()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Modes:
    """The measurements, each for one mode: 'local' (SQLite) or 'fleet'."""

    def __init__(self, proj: BenchProject, fleet: Fleet) -> None:
        from bgjobs import api

        self.api, self.proj, self.fleet = api, proj, fleet
        self.config = {"local": proj.config_path, "fleet": fleet.config}
        self.runners: dict[str, list[int]] = {"local": [], "fleet": []}
        self.returned: dict[str, list[float]] = {"local": [], "fleet": []}  # run_background_job() calls
        self.spawned: list[int] = []  # runner processes the workers started, per fleet round
        self.peak: list[int] = []  # the most runner processes alive at once under one worker, per round
        self.server_cpu: list[float] = []  # PostgreSQL's CPU per job, per fleet round
        self.worker_cpu: list[float] = []  # the job-workers' own CPU per job, per fleet round
        self.runner_cpu: list[float] = []  # the runners' and attempts' CPU per job, per fleet round
        self.client_cpu: list[float] = []  # this process's CPU per job, per fleet round
        self.peers: list = []  # Celery's, whose processes are this one's children too

    def reset(self) -> None:
        """Forget the warm-up's figures."""
        self.runners = {"local": [], "fleet": []}
        self.returned = {"local": [], "fleet": []}
        for figures in (
            self.spawned,
            self.peak,
            self.server_cpu,
            self.worker_cpu,
            self.runner_cpu,
            self.client_cpu,
        ):
            figures.clear()

    def exclude(self) -> set[int]:
        """This process's children that are not the mode's: the job-workers and the peers' servers."""
        return set(self.fleet.pids) | {p.pid for peer in self.peers for p in peer.procs}

    def settle(self, mode: str) -> None:
        if mode == "fleet":
            self.fleet.check_workers()
            self.fleet.settle()
        else:
            _until(self._local_idle, "the local mode's runners and waker to exit", 30, 0.02)
            time.sleep(0.3)  # bgjobs' reaper thread in this process looks every 0.2 s
            reap_orphans()

    def _local_idle(self) -> bool:
        """No runner or waker of the local mode is left (the fleet's warm
        claimers work in the same folder, under the workers)."""
        import psutil

        fleet = set()
        for pid in self.fleet.pids:
            try:
                fleet |= {p.pid for p in psutil.Process(pid).children(recursive=True)}
            except psutil.NoSuchProcess:
                pass
        return not [p for p in self.proj.processes((*RUNNER_MARKS, "bgjobs.waker")) if p.pid not in fleet]

    def throughput(self, mode: str, n: int) -> tuple[float, float]:
        """N no-op jobs: (jobs per second, CPU seconds per job)."""
        api, cfg = self.api, self.config[mode]
        self.settle(mode)
        before = api.job_counts(config=cfg).get("succeeded", 0)
        counter = None
        if mode == "fleet":
            counter = SpawnCounter(self.fleet.pids)
            counter.start()
            fleet0, server0 = self.fleet.workers_cpu(), self.fleet.server_cpu()
        exclude = self.exclude()
        me0 = _self_cpu(exclude)
        t0 = time.perf_counter()
        first = api.run_background_job("jobs.noop.Noop", "run", config=cfg)
        for _ in range(n - 1):
            api.run_background_job("jobs.noop.Noop", "run", config=cfg)
        deadline = time.monotonic() + DEADLINE
        while True:
            counts = api.job_counts(config=cfg)
            if not any(counts.get(s, 0) for s in ("queued", "running", "retrying")):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode}: jobs still active after {DEADLINE:g}s: {counts}")
            if mode == "fleet":
                self.fleet.check_workers()
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        ok = counts.get("succeeded", 0) - before
        if ok != n:
            raise RuntimeError(f"{mode}: {ok} of {n} jobs succeeded: {counts}")
        self.settle(mode)  # every process of the round has exited and been reaped
        cpu = _self_cpu(exclude) - me0
        if mode == "fleet":
            self.spawned.append(counter.finish())
            self.peak.append(counter.peak)
            cpu -= counter.cpu
            server = self.fleet.server_cpu() - server0
            tree, own = self.fleet.workers_cpu()
            tree, own = tree - fleet0[0], own - fleet0[1]
            self.client_cpu.append(cpu / n)
            self.worker_cpu.append(own / n)
            self.runner_cpu.append((tree - own) / n)
            self.server_cpu.append(server / n)
            cpu += tree + server
            self.runners[mode].append(self.fleet.runner_count(first))
        else:
            self.runners[mode].append(self._local_runner_count(first))
        return n / dt, cpu / n

    def _local_runner_count(self, first_id: int) -> int:
        import sqlite3

        conn = sqlite3.connect(f"file:{self.proj.root / 'state' / 'jobs.sqlite3'}?mode=ro", uri=True)
        try:
            return conn.execute(
                "SELECT COUNT(DISTINCT runner_pid) FROM jobs WHERE id >= ?", (first_id,)
            ).fetchone()[0]
        finally:
            conn.close()

    def boot_cpu(self, code: str) -> float | None:
        """CPU seconds of `python -c code` run as host h1's runner would be, to
        its exit (stdin at end of input). None if it fails."""
        proc = subprocess.Popen(
            [PY, "-c", code],
            env=self.proj.env(BGJOBS_CONFIG=str(self.fleet.host_configs[0]), BGJOBS_HOST=None),
            cwd=self.proj.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        cpu = wait_cpu(proc)
        return cpu if proc.returncode == 0 else None

    def first_line(self, mode: str) -> float:
        """Seconds from the submit to the job's first line."""
        path = self.proj.mark(f"stamp-{mode}")
        t0 = time.monotonic_ns()
        self.api.run_background_job("benchjobs.tasks.Stamp", "run", path, config=self.config[mode])
        self.returned[mode].append((time.monotonic_ns() - t0) / 1e9)
        return (wait_file(path, timeout=60) - t0) / 1e9

    def cold(self, mode: str) -> float:
        self.settle(mode)
        time.sleep(COLD_IDLE)
        return self.first_line(mode)

    def warm(self, mode: str) -> list[float]:
        """A chain of jobs, each submitted when the one before wrote its first line."""
        self.settle(mode)
        self.first_line(mode)
        return [self.first_line(mode) for _ in range(CHAIN)]

    def cancel(self, mode: str) -> float:
        """Seconds of cancel_job() of a running job (on another host in the fleet)."""
        api, cfg = self.api, self.config[mode]
        self.settle(mode)
        ready = self.proj.mark(f"ready-{mode}")
        job_id = api.run_background_job("benchjobs.tasks.Sleeper", "run", ready, 120, config=cfg)
        wait_file(ready, timeout=60)
        time.sleep(0.1)  # let the runner settle into its wait
        job = api.get_job(job_id, config=cfg, refresh=False)
        if mode == "fleet" and job.host not in HOSTS:
            raise RuntimeError(f"job {job_id} runs on {job.host!r}, not on a worker's host")
        t0 = time.perf_counter()
        result = api.cancel_job(job_id, grace=GRACE, config=cfg)
        dt = time.perf_counter() - t0
        if not result.cancelled:
            raise RuntimeError(f"{mode}: cancel_job({job_id}) left it {result.job.status.value}")
        return dt


# --- Celery, where installed ------------------------------------------------------------

CELERY_APP = '''\
"""A Celery app for the fleet benchmark (generated by bench/bench_fleet.py)."""

import os
import time

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"], backend=os.environ["BENCH_REDIS_URL"])
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                result_expires=3600)


@app.task(name="bench.noop")
def noop():
    return None


@app.task(name="bench.stamp")
def stamp(path):
    t = time.monotonic_ns()  # the task's first line
    with open(path + ".tmp", "w") as f:
        f.write(str(t))
    os.rename(path + ".tmp", path)
'''


def celery_peers(proj: BenchProject, size: int, notes: list[str]) -> list:
    """Celery with a prefork pool of `size`, and the same with
    --max-tasks-per-child=1; [] (and a note) where Celery or redis-server is missing."""
    try:
        import bench_throughput as bt  # its Redis helpers
    except ImportError as exc:
        notes.append(f"Celery skipped: bench/bench_throughput.py did not import: {exc}")
        return []

    class CeleryPeer(bt._RedisPeer):
        name = "Celery"
        modules = ("celery", "redis")
        pip = "celery redis"
        app = None
        per_child = None
        module = ""

        def _start(self, proj: BenchProject) -> None:
            import importlib

            import celery

            self.port = bt.free_port()
            self.procs.append(bt._redis_server(self.port, self.tmp))
            url = f"redis://127.0.0.1:{self.port}/0"
            (proj.root / "benchjobs" / f"{self.module}.py").write_text(CELERY_APP)
            os.environ["BENCH_REDIS_URL"] = url  # for the app imported here, the client
            mod = importlib.import_module(f"benchjobs.{self.module}")
            self.app, self.noop, self.stamp = mod.app, mod.noop, mod.stamp
            bt._until(lambda: bt._ping_url(url), "redis-server to answer")
            argv = [
                str(BIN / "celery"),
                "-A",
                f"benchjobs.{self.module}",
                "worker",
                f"--concurrency={size}",
                "--pool=prefork",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
            if self.per_child:
                argv.append(f"--max-tasks-per-child={self.per_child}")
            self.procs.append(
                subprocess.Popen(
                    argv,
                    env=proj.env(BENCH_REDIS_URL=url),
                    cwd=self.tmp,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            bt._until(lambda: bool(self.app.control.ping(timeout=0.5)), "the Celery worker to answer", 60)
            self.version = f"celery {celery.__version__}, prefork pool of {size}" + (
                f", --max-tasks-per-child={self.per_child}" if self.per_child else ""
            )

        def throughput(self, n: int) -> float:
            from celery.result import ResultSet

            t0 = time.perf_counter()
            results = ResultSet([self.noop.delay() for _ in range(n)])
            results.join_native(timeout=DEADLINE, propagate=True)
            dt = time.perf_counter() - t0
            results.forget()
            return n / dt

        def first_line(self) -> float:
            path = proj.mark(f"stamp-{self.module}")
            t0 = time.monotonic_ns()
            result = self.stamp.delay(path)
            dt = (wait_file(path, timeout=60) - t0) / 1e9
            result.get(timeout=60)
            result.forget()
            return dt

        def close(self) -> None:
            try:
                if self.app is not None:
                    self.app.close()
            except Exception:  # noqa: BLE001 - a benchmark reports what failed and goes on
                pass
            super().close()

    class Prefork(CeleryPeer):
        module = "celery_prefork"
        label = "Celery prefork"

    class OnePerChild(CeleryPeer):
        module = "celery_per_child"
        label = "Celery --max-tasks-per-child=1"
        per_child = 1

    why = CeleryPeer.missing()
    if why:
        notes.append(why)
        return []
    peers = []
    for cls in (Prefork, OnePerChild):
        try:
            peers.append(cls(proj))
        except Exception as exc:  # noqa: BLE001 - a peer that will not start is skipped, not fatal
            notes.append(f"{cls.label} skipped: it did not start: {exc}")
    return peers


# --- the report -------------------------------------------------------------------------


def fmt_pcts(xs: list[float]) -> str:
    return f"p50 {fmt_ms(pct(xs, 50))}, p90 {fmt_ms(pct(xs, 90))} (n={len(xs)})"


def pct_row(report: Report, measure: str, ours: list[float], base: list[float], goal_p50=None, goal=""):
    """A row of p50 and p90: the ratio is of the p50s; met is ours' p50 against `goal_p50`."""
    report.row(
        measure,
        fmt_pcts(ours),
        fmt_pcts(base) if base else "—",
        pct(ours, 50) / pct(base, 50) if base else None,
        goal=goal,
        met=None if goal_p50 is None else pct(ours, 50) <= goal_p50,
        paired=f"p90: {pct(ours, 90) / pct(base, 90):.2f}x" if base else "",
        ours_p50=pct(ours, 50),
        ours_p90=pct(ours, 90),
        baseline_p50=pct(base, 50) if base else None,
        baseline_p90=pct(base, 90) if base else None,
        samples=len(ours),
    )


def main() -> int:
    p = parser(__doc__.split("\n")[0], rounds=12, quick_rounds=4)
    p.add_argument("--jobs", type=int, help="no-op jobs per throughput round (default 1000; --quick 200)")
    p.add_argument("--throughput-rounds", type=int, help="measured throughput rounds (default 3; --quick 1)")
    p.add_argument("--slots", type=int, default=1, help="worker_slots per host (default 1)")
    args = p.parse_args()
    rounds = args.rounds or (args.quick_rounds if args.quick else args.default_rounds)
    n = args.jobs or (200 if args.quick else 1000)
    t_rounds = args.throughput_rounds or (1 if args.quick else 3)
    slots = args.slots
    total = slots * len(HOSTS)
    os.environ.pop("BGJOBS_HOST", None)  # each config names its host
    report = Report(
        "Fleet mode",
        f"Three job-workers (hosts h1, h2, h3, worker_slots {slots} each: {total} jobs at once) on this "
        f"machine ({CPUS} CPUs) with a local PostgreSQL, against the local mode (SQLite, max_concurrent "
        f"{total}) in interleaved rounds. This process submits and cancels through the Python API as "
        "a host of its own that runs no jobs. Ratios are the fleet's over the local mode's: for "
        "throughput higher is better, for times lower.",
    )
    notes: list[str] = []
    loads = [os.getloadavg()[0]]  # the 1-minute load average, at the start and after each round
    with BenchProject("fleet", keep=args.keep, max_concurrent=total) as proj:
        code = proj.code_note()
        proj.enter()
        try:
            fleet = Fleet(proj, slots)
        except Unavailable as exc:
            report.note(f"Not run: no fleet here ({exc}).")
            report.emit(args.json)
            return 0
        peers: list = []
        try:
            # After PostgreSQL's start (its postmaster must not become our child).
            subreaper = become_subreaper()
            modes = Modes(proj, fleet)
            peers = modes.peers = celery_peers(proj, total, notes)
            order = ["local", "fleet"]

            # Warm-up: each mode's first jobs (imports, the warm spare, the
            # database's caches, Procrastinate's first fetch).
            for mode in order:
                modes.throughput(mode, min(n, 50))
                modes.cold(mode)
            for peer in peers:
                peer.throughput(min(n, 50))
            modes.reset()

            rate = {m: [] for m in order}
            cpu = {m: [] for m in order}
            peer_rate: dict[str, list[float]] = {peer.label: [] for peer in peers}
            peer_first: dict[str, list[float]] = {peer.label: [] for peer in peers}
            for r in range(t_rounds):
                for mode in order if r % 2 == 0 else order[::-1]:
                    jobs_s, cpu_job = modes.throughput(mode, n)
                    rate[mode].append(jobs_s)
                    cpu[mode].append(cpu_job)
                for peer in peers:
                    peer_rate[peer.label].append(peer.throughput(n))
                loads.append(os.getloadavg()[0])
                print(
                    f"  fleet: throughput round {r + 1}/{t_rounds}: "
                    + ", ".join(f"{m} {rate[m][-1]:.1f}/s" for m in order),
                    file=sys.stderr,
                    flush=True,
                )

            cold = {m: [] for m in order}
            warm = {m: [] for m in order}
            cancel = {m: [] for m in order}
            for r in range(rounds):
                this = order if r % 2 == 0 else order[::-1]
                for mode in this:
                    cold[mode].append(modes.cold(mode))
                for mode in this:
                    warm[mode] += modes.warm(mode)
                for mode in this:
                    cancel[mode].append(modes.cancel(mode))
                for peer in peers:
                    peer_first[peer.label] += [peer.first_line() for _ in range(CHAIN)]
                loads.append(os.getloadavg()[0])
                print(
                    f"  fleet: latency round {r + 1}/{rounds}: cold "
                    f"{cold['fleet'][-1] * 1000:.0f} ms, warm {warm['fleet'][-1] * 1000:.0f} ms, "
                    f"cancel {cancel['fleet'][-1] * 1000:.0f} ms",
                    file=sys.stderr,
                    flush=True,
                )
            for mode in order:
                modes.settle(mode)
            boot = [modes.boot_cpu(WARM_CODE) for _ in range(BOOTS)]
            bare = [modes.boot_cpu("pass") for _ in range(BOOTS)]
        finally:
            for peer in peers:
                peer.close()
            fleet.close()

    report.compare(
        f"6. fleet: throughput of {n} no-op jobs through the API, 3 hosts × {slots} slot(s) vs local mode "
        f"(max_concurrent {total})",
        rate["fleet"],
        rate["local"],
        fmt_rate,
        higher_is_better=True,
    )
    if subreaper:
        report.compare(
            "(info) fleet: CPU per job, every process (this one's submits, the workers, their runners "
            "and attempts, PostgreSQL) vs local mode (this process, its runners, attempts, waker, spare)",
            cpu["fleet"],
            cpu["local"],
            fmt_ms,
        )
        report.compare(
            "(info) fleet: CPU per job without the PostgreSQL server, vs local mode",
            [c - s for c, s in zip(cpu["fleet"], modes.server_cpu, strict=True)],
            cpu["local"],
            fmt_ms,
        )
    for peer in peers:
        report.compare(
            f"(info) fleet: throughput vs {peer.version} (Redis broker and results)",
            rate["fleet"],
            peer_rate[peer.label],
            fmt_rate,
            higher_is_better=True,
        )
        report.compare(
            f"(info) local mode: throughput vs {peer.version}",
            rate["local"],
            peer_rate[peer.label],
            fmt_rate,
            higher_is_better=True,
        )
    boot, bare = [b for b in boot if b is not None], [b for b in bare if b is not None]
    if boot and bare:
        report.compare(
            "(info) fleet: CPU of one runner's boot (a warm claimer: interpreter, bgjobs, psycopg, two "
            "connections, to its exit unused), vs `python -c pass`",
            boot,
            bare,
            fmt_ms,
        )
    else:
        report.note("No boot row: this bgjobs has no warm claimer (`--claim --warm`).")
    pct_row(
        report,
        "6. fleet: submit → job's first line, warm (right after another job), vs local mode",
        warm["fleet"],
        warm["local"],
        GOAL_WARM_P50,
        f"p50 ≤ {GOAL_WARM_P50 * 1000:.0f} ms",
    )
    pct_row(
        report,
        f"(info) fleet: submit → job's first line, cold (after {COLD_IDLE:g} s idle), vs local mode",
        cold["fleet"],
        cold["local"],
    )
    pct_row(
        report,
        "(info) fleet: `run_background_job()` returns (cold and warm above), vs local mode",
        modes.returned["fleet"],
        modes.returned["local"],
    )
    for peer in peers:
        pct_row(
            report,
            f"(info) fleet: submit → job's first line, warm, vs {peer.version}",
            warm["fleet"],
            peer_first[peer.label],
        )
    pct_row(
        report,
        f"6. fleet: `cancel_job()` → final state, a running job on another host, grace {GRACE:g} s, "
        "vs local mode",
        cancel["fleet"],
        cancel["local"],
        GOAL_CANCEL + GRACE,
        f"p50 ≤ {(GOAL_CANCEL + GRACE) * 1000:.0f} ms (100 ms + grace)",
    )
    if modes.spawned:
        report.note(
            f"Runner processes the workers started per {n}-job round: "
            f"{', '.join(str(s) for s in modes.spawned)}; of them, runners that ran a job: "
            f"{', '.join(str(s) for s in modes.runners['fleet'])} (local mode: "
            f"{', '.join(str(s) for s in modes.runners['local'])}). A wake-up on a host with a free slot "
            "sends its warm claimer to claim and boots the next one, a fresh interpreter that imports "
            "bgjobs and psycopg; a claimer that finds nothing to claim (another host's runner, running "
            "its chain, took the job) exits. The most runner processes alive at once under one worker "
            f"(worker_slots {slots}; its warm claimer included), per round: "
            f"{', '.join(str(p) for p in modes.peak)}."
        )
    if modes.server_cpu:

        def each(xs: list[float]) -> str:
            return ", ".join(fmt_ms(x) for x in xs)

        report.note(
            f"The fleet's CPU per job, by part, in each throughput round: the runners and their attempts "
            f"{each(modes.runner_cpu)}; PostgreSQL {each(modes.server_cpu)}; the three job-workers "
            f"themselves (Procrastinate's worker, the sweeps) {each(modes.worker_cpu)}; this process "
            f"(the submits, and its polls for the end) {each(modes.client_cpu)}."
        )
    if not subreaper:
        report.note("No CPU rows: this process could not become a child subreaper.")
    for why in notes:
        report.note(why)
    report.note(
        f"Cold: the mode idle for {COLD_IDLE:g} s (no job running; in the fleet each host's warm "
        f"claimer booted and waiting), then one job. Warm: chains of "
        f"{CHAIN + 1} jobs, each submitted as soon as the one before wrote its first line; the chain's "
        "first job is not counted. In local mode the caller's warm spare runner takes a job when it "
        "has booted (not yet, right after the job before took the last one); in the fleet a wake-up "
        "hands the job to its host's warm claimer, if that has booted (the host that ran the job "
        "before is booting its next one), and the previous job's runner may take the job first. "
        f"Cancel: a sleeper killed by SIGTERM, grace {GRACE:g} s, the call timed until it returns with "
        "the job final."
    )
    report.note(
        f"PostgreSQL {fleet.version} on loopback (fsync off, as tests/pgserver.py sets it up); "
        f"{rounds} latency rounds and {t_rounds} throughput rounds after a warm-up. {code}. Load "
        f"average (1 min) {min(loads):.2f} to {max(loads):.2f} over the run (sampled at the start "
        f"and after each round); {load_note()} at the end."
    )
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
