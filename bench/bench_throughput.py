"""Benchmark: throughput of no-op jobs, against one fresh interpreter per job,
RQ, Celery and task-spooler.

    .venv/bin/python bench/bench_throughput.py [--quick] [--rounds N] [--jobs 500]

Every system runs the same workload: N no-op jobs, CPU-count at a time, timed
from the first submit to the moment all are final, in jobs per second.

- ours: run_background_job("jobs.noop.Noop", "run") N times from one warm
  process, max_concurrent = CPU count; done when no job is queued or running.
- limit: N `python -c "import jobs.noop"`, CPU-count at a time (a fresh
  interpreter per job, nothing recorded). Goal: ours >= 0.7x this.
- RQ: a local redis-server on a free loopback port and CPU-count `rq worker`
  processes, started before the clock (a broker's workers are always up); the
  job is a module-level no-op function; RQ forks a work horse per job.
- Celery: the same no-op as a Celery task, a prefork pool of CPU-count
  processes (long-lived: no process per job), Redis as broker and result
  backend; done when every AsyncResult is ready (ResultSet.join_native).
- task-spooler: `tsp -n python -c "import jobs.noop"` N times with `tsp -S
  CPU-count` on a private TS_SOCKET.

A peer whose package or binary is missing is skipped with a note. They are
bench-only; install them with:

    apt-get update && apt-get install -y redis-server task-spooler
    .venv/bin/pip install rq celery

Not a test: nothing here gates CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CPUS,
    PY,
    BenchProject,
    Report,
    describe,
    fmt_rate,
    interleave,
    load_note,
    parser,
    rounds_of,
)

GOAL = 0.7
NOOP_CODE = "import jobs.noop"


# --- the fresh-interpreter limit ----------------------------------------------------


def run_limit(n: int, env: dict, cwd: Path) -> float:
    """N fresh interpreters, CPUS at a time; returns jobs per second."""
    argv = [PY, "-c", NOOP_CODE]
    mine: set[int] = set()
    launched = done = 0
    t0 = time.perf_counter()
    while done < n:
        while len(mine) < CPUS and launched < n:
            mine.add(
                os.posix_spawn(
                    PY, argv, env, file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
                )
            )
            launched += 1
        pid, status = os.wait()
        if pid in mine:  # (a runner of ours the reaper had not collected yet is not counted)
            mine.discard(pid)
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(f"python -c {NOOP_CODE!r} failed: {status}")
            done += 1
    return n / (time.perf_counter() - t0)


# --- ours ----------------------------------------------------------------------------


class Ours:
    def __init__(self, proj: BenchProject) -> None:
        proj.enter()
        from bgjobs import api

        self.api, self.proj = api, proj
        self.succeeded = 0
        self.runners: list[float] = []  # runner processes started per round
        self.runners_queued: list[float] = []

    def run(self, n: int) -> float:
        api, cfg = self.api, self.proj.config_path
        t0 = time.perf_counter()
        first = api.run_background_job("jobs.noop.Noop", "run", config=cfg)
        for _ in range(n - 1):
            api.run_background_job("jobs.noop.Noop", "run", config=cfg)
        rate = self._finish(n, t0)
        self.runners.append(self.runner_count(first))
        return rate

    def run_queued(self, n: int) -> float:
        """N jobs queued first (no dispatch), then released with one dispatch:
        the runners can chain through a full queue. Timed from the release."""
        from bgjobs import launcher
        from bgjobs.wiring import wire

        rt = wire(self.proj.config_path)

        def queue() -> int:  # a launch without its dispatch, as the API's source
            return launcher.insert_job(rt, launcher.prepare(rt, "jobs.noop.Noop", "run", source="api")).id

        first = queue()
        for _ in range(n - 1):
            queue()
        t0 = time.perf_counter()
        launcher.dispatch(rt)
        rate = self._finish(n, t0)
        self.runners_queued.append(self.runner_count(first))
        return rate

    def _finish(self, n: int, t0: float) -> float:
        """Wait until no job is active; check that all `n` new ones succeeded;
        return jobs per second since `t0`."""
        api, cfg = self.api, self.proj.config_path
        while True:
            counts = api.job_counts(config=cfg)
            if not any(counts.get(s, 0) for s in ("queued", "running", "retrying")):
                break
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        ok = counts.get("succeeded", 0) - self.succeeded
        self.succeeded = counts.get("succeeded", 0)
        if ok != n:
            raise RuntimeError(f"bgjobs: {ok} of {n} jobs succeeded: {counts}")
        return n / dt

    def runner_count(self, first_id: int) -> int:
        """Runner processes that ran the jobs from `first_id` on. A runner takes
        the next due job itself, so one per slot would be ideal."""
        import sqlite3

        db = self.proj.root / "state" / "jobs.sqlite3"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute(
                "SELECT COUNT(DISTINCT runner_pid) FROM jobs WHERE id >= ?", (first_id,)
            ).fetchone()[0]
        finally:
            conn.close()


# --- RQ ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _RedisPeer:
    """A peer that needs a private redis-server: says why it cannot run, starts
    in its own temp folder, and stops everything it started, even on error."""

    name = ""
    modules: tuple[str, ...] = ()
    pip = ""

    @classmethod
    def missing(cls) -> str | None:
        import importlib

        for module in cls.modules:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                return f"{cls.name} skipped: {exc.name} is not installed (`.venv/bin/pip install {cls.pip}`)"
        if not shutil.which("redis-server"):
            return f"{cls.name} skipped: no redis-server on PATH (`apt-get install -y redis-server`)"
        return None

    def __init__(self, proj: BenchProject) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bgjobs-bench-{self.name.lower()}-"))
        self.procs: list[subprocess.Popen] = []
        try:
            self._start(proj)
        except BaseException:
            self.close()  # what did start (redis-server, workers) must not outlive us
            raise

    def _start(self, proj: BenchProject) -> None:
        raise NotImplementedError

    def close(self) -> None:
        _stop(self.procs)
        shutil.rmtree(self.tmp, ignore_errors=True)


class RQPeer(_RedisPeer):
    name = "RQ"
    modules = ("redis", "rq")
    pip = "rq"

    def _start(self, proj: BenchProject) -> None:
        import redis
        import rq

        self.port = free_port()
        self.procs.append(_redis_server(self.port, self.tmp))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.conn = redis.Redis.from_url(self.url)
        _until(lambda: _ping(self.conn), "redis-server to answer")
        self.version = f"rq {rq.__version__}, redis-server {self.conn.info()['redis_version']}"
        env = proj.env()
        for i in range(CPUS):
            self.procs.append(
                subprocess.Popen(
                    [
                        str(Path(PY).parent / "rq"),
                        "worker",
                        "--url",
                        self.url,
                        "--quiet",
                        "--name",
                        f"bench-{i}",
                        "bench",
                    ],
                    env=env,
                    cwd=self.tmp,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        self.queue = rq.Queue("bench", connection=self.conn)
        from rq.registry import FailedJobRegistry, FinishedJobRegistry

        self.finished = FinishedJobRegistry(queue=self.queue)
        self.failed = FailedJobRegistry(queue=self.queue)
        _until(lambda: len(rq.Worker.all(connection=self.conn)) == CPUS, "rq workers to register")

    def run(self, n: int) -> float:
        before = self.finished.count
        t0 = time.perf_counter()
        for _ in range(n):
            self.queue.enqueue("benchjobs.tasks.noop", result_ttl=3600)
        while self.finished.count - before < n:
            if self.failed.count:
                raise RuntimeError(f"RQ: {self.failed.count} jobs failed")
            time.sleep(0.01)
        return n / (time.perf_counter() - t0)


def _ping(conn) -> bool:
    try:
        return bool(conn.ping())
    except Exception:  # noqa: BLE001 - a benchmark reports what failed and goes on
        return False


# --- Celery --------------------------------------------------------------------------

CELERY_APP = '''\
"""A Celery app for the throughput benchmark (generated by bench/bench_throughput.py)."""

import os

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"], backend=os.environ["BENCH_REDIS_URL"])
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                result_expires=3600)


@app.task(name="bench.noop")
def noop():
    return None
'''


class CeleryPeer(_RedisPeer):
    name = "Celery"
    modules = ("celery", "redis")
    pip = "celery redis"
    app = None

    def _start(self, proj: BenchProject) -> None:
        import celery

        self.port = free_port()
        self.procs.append(_redis_server(self.port, self.tmp))
        url = f"redis://127.0.0.1:{self.port}/0"
        (proj.root / "benchjobs" / "celery_app.py").write_text(CELERY_APP)
        os.environ["BENCH_REDIS_URL"] = url  # for the app imported here, the client
        sys.modules.pop("benchjobs.celery_app", None)
        import importlib

        mod = importlib.import_module("benchjobs.celery_app")
        self.app, self.task = mod.app, mod.noop
        _until(lambda: _ping_url(url), "redis-server to answer")
        self.procs.append(
            subprocess.Popen(
                [
                    str(Path(PY).parent / "celery"),
                    "-A",
                    "benchjobs.celery_app",
                    "worker",
                    f"--concurrency={CPUS}",
                    "--pool=prefork",
                    "--loglevel=WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                env=proj.env(BENCH_REDIS_URL=url),
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        _until(lambda: bool(self.app.control.ping(timeout=0.5)), "the Celery worker to answer", 60)
        self.version = f"celery {celery.__version__}, prefork pool of {CPUS}, redis broker and results"

    def run(self, n: int) -> float:
        from celery.result import ResultSet

        t0 = time.perf_counter()
        results = ResultSet([self.task.delay() for _ in range(n)])
        results.join_native(timeout=600, propagate=True)
        dt = time.perf_counter() - t0
        results.forget()
        return n / dt

    def close(self) -> None:
        try:
            if self.app is not None:
                self.app.close()
        except Exception:  # noqa: BLE001 - a benchmark reports what failed and goes on
            pass
        super().close()


def _ping_url(url: str) -> bool:
    import redis

    return _ping(redis.Redis.from_url(url))


def _redis_server(port: int, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--loglevel",
            "warning",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        cwd=folder,
        start_new_session=True,
    )


# --- task-spooler ----------------------------------------------------------------------


def _tsp_binary() -> str | None:
    for name in ("tsp", "ts"):  # Debian calls it tsp; `ts` may be moreutils' timestamper
        path = shutil.which(name)
        if path:
            try:
                out = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if "TS_SOCKET" in out.stdout + out.stderr:
                return path
    return None


class TspPeer:
    name = "task-spooler"

    @staticmethod
    def missing() -> str | None:
        if _tsp_binary() is None:
            return "task-spooler skipped: no tsp binary (`apt-get install -y task-spooler`)"
        return None

    def __init__(self, proj: BenchProject) -> None:
        self.bin = _tsp_binary()
        self.tmp = Path(tempfile.mkdtemp(prefix="bgjobs-bench-tsp-"))
        try:
            self._start(proj)
        except BaseException:
            self.close()
            raise

    def _start(self, proj: BenchProject) -> None:
        self.env = proj.env(
            TS_SOCKET=str(self.tmp / "socket"),
            TMPDIR=str(self.tmp),
            TS_MAXFINISHED="1000",
            TS_MAXCONN="1000",
            TS_SLOTS=str(CPUS),
        )
        self.cwd = self.tmp
        self._tsp("-S", str(CPUS))  # starts the private server
        out = subprocess.run([self.bin, "-V"], env=self.env, capture_output=True, text=True)
        self.version = (
            (out.stdout + out.stderr).strip().splitlines()[0] if (out.stdout + out.stderr).strip() else "tsp"
        )

    def _tsp(self, *args: str) -> str:
        out = subprocess.run(
            [self.bin, *args],
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def run(self, n: int) -> float:
        self._tsp("-C")  # clear the finished list
        t0 = time.perf_counter()
        last = None
        for _ in range(n):
            last = self._tsp("-n", PY, "-c", NOOP_CODE).strip()
        self._tsp("-w", last)
        while True:
            listing = self._tsp("-l")
            if not any(word in listing for word in ("running", "queued", "allocating")):
                break
            time.sleep(0.01)
        dt = time.perf_counter() - t0
        bad = [
            line
            for line in listing.splitlines()[1:]
            if line.split()[1:2] == ["finished"] and line.split()[3:4] != ["0"]
        ]
        if bad:
            raise RuntimeError(f"task-spooler: failed jobs: {bad[:3]}")
        return n / dt

    def close(self) -> None:
        try:
            subprocess.run([self.bin, "-K"], env=self.env, capture_output=True, timeout=10)
        except Exception:  # noqa: BLE001 - a benchmark reports what failed and goes on
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- helpers -------------------------------------------------------------------------


def _until(pred, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _stop(procs: list[subprocess.Popen]) -> None:
    """Stop workers first, the server last; each was started as its own process
    group, so what it forked (work horses, pool processes) goes with it."""
    for p in reversed(procs):
        if p.poll() is None:
            _killpg(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        _killpg(p.pid, signal.SIGKILL)  # leftovers of the group, if any
        if p.poll() is None:
            p.wait()


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main() -> int:
    p = parser(__doc__.split("\n")[0], rounds=5, quick_rounds=2)
    p.add_argument("--jobs", type=int, default=500, help="jobs per round (default 500)")
    args = p.parse_args()
    rounds, n = rounds_of(args), args.jobs
    report = Report(
        "Throughput",
        f"{n} no-op jobs, {CPUS} at a time ({CPUS} CPUs), from the first submit until all are "
        f"final, in jobs per second (higher is better). {rounds} interleaved rounds after one "
        "warm-up. The ratio is ours divided by the other.",
    )
    peers, notes = [], []
    with BenchProject("throughput", keep=args.keep, max_concurrent=CPUS) as proj:
        code = proj.code_note()
        ours = Ours(proj)
        env = proj.env()
        cases = {
            "ours": lambda: ours.run(n),
            "limit": lambda: run_limit(n, env, proj.root),
            "ours queued": lambda: ours.run_queued(n),
        }
        try:
            for peer_cls in (RQPeer, CeleryPeer, TspPeer):
                why = peer_cls.missing()
                if why:
                    notes.append(why)
                    continue
                try:
                    peer = peer_cls(proj)
                except Exception as exc:  # noqa: BLE001 - a peer that will not start is skipped, not fatal
                    notes.append(f"{peer_cls.name} skipped: it did not start: {exc}")
                    continue
                peers.append(peer)
                cases[peer.name] = (lambda pr: lambda: pr.run(n))(peer)
            s = interleave(
                rounds, cases, between=lambda: proj.quiesce(include_waker=False), progress="throughput"
            )
        finally:
            for peer in peers:
                peer.close()
        proj.quiesce()

    report.compare(
        "3. throughput: ours vs one fresh interpreter per job (the limit)",
        s["ours"],
        s["limit"],
        fmt_rate,
        GOAL,
        higher_is_better=True,
    )
    for peer in peers:
        report.compare(
            f"3. throughput: ours vs {peer.name} ({peer.version})", s["ours"], s[peer.name], fmt_rate
        )
    report.compare(
        f"(info) ours with all {n} jobs queued first, then released: from the release "
        "to all final, vs the limit",
        s["ours queued"],
        s["limit"],
        fmt_rate,
        higher_is_better=True,
    )
    for label, runners in (
        ("submitted one by one", ours.runners[-rounds:]),
        ("queued first", ours.runners_queued[-rounds:]),
    ):
        if runners:
            report.note(
                f"Runner processes bgjobs started for {n} jobs {label}: "
                f"{statistics.median(runners):.0f} (median; range {min(runners)}–{max(runners)}). "
                f"With {CPUS} slots, {CPUS} runners that each take the next due job "
                "themselves would be the ideal."
            )
    for why in notes:
        report.row(f"3. throughput: {why.split(':')[0]}", describe(s["ours"], fmt_rate), "—", None)
        report.note(why)
    report.note(
        "RQ's and Celery's workers and redis-server are started before the clock, as "
        "a broker's always are; bgjobs and task-spooler start processes on demand. "
        "bgjobs forks one process per attempt from a runner that takes the next due job "
        "itself; RQ forks a work horse per job from a warm worker; Celery runs every "
        "job in the same long-lived pool processes (no isolation between jobs); "
        "task-spooler runs a fresh interpreter per job, like the limit."
    )
    report.note(f"{code}. IQR is the 25th–75th percentile over the rounds; {load_note()} at the end.")
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
