"""Benchmark: how long the dashboard's Jobs and Logs pages take to render with
real volumes. Not a test; run it by hand:

    .venv/bin/python bench/bench_dashboard.py [--jobs 10000] [--records 1000000] [--rounds 3]

It seeds a temporary project with `--jobs` finished jobs in the store and a main
log of `--records` records (plus the matching errors log), then times
AppTest runs of dashboard.py: the first (cold) render of each page in this
process, then warm reruns, then a rerun after 1,000 new records were appended
(what a live refresh costs). By default the first run starts the background
parse of both logs (bgjobs.ui.logdata.warm_up) and the Logs page is timed after
it; --no-warm-up makes the Logs page parse the log itself. AppTest runs the
script in-process, so the times are the server's work per run, without the
browser's drawing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CLASSES = [
    ("jobs.example.ExampleJob", "handle"),
    ("jobs.demo.AlwaysFails", "run"),
    ("jobs.demo.Printer", "run"),
    ("jobs.demo.LongTask", "run"),
    ("jobs.demo.Noop", "run"),
]
TRACEBACK = (
    "Traceback (most recent call last):\n"
    + "".join(
        f'  File "/srv/app/jobs/module_{i}.py", line {10 * i + 3}, in step_{i}\n    self.step_{i + 1}(row)\n'
        for i in range(12)
    )
    + "ValueError: bad row 17\n"
)


def _iso(t: float) -> str:
    secs = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((t - secs) * 1000):03d}Z"


def seed_jobs(root: Path, n: int) -> None:
    """`n` finished jobs, written straight into the store (a benchmark fixture,
    not something the dashboard or the library would do)."""
    from bgjobs.config import load_config
    from bgjobs.store import Store

    cfg = load_config(root / "config.yaml")
    store = Store(cfg.db_path)
    store.list_jobs(limit=1)  # creates the schema
    rng = random.Random(1)
    now = time.time()
    rows = []
    for i in range(n):
        cls, method = rng.choice(CLASSES)
        created = now - (n - i) * 30
        status = rng.choices(["succeeded", "failed", "cancelled"], [85, 10, 5])[0]
        started, finished = created + rng.random(), created + 1 + rng.random() * 20
        rows.append(
            (
                cls,
                method,
                json.dumps([rng.randint(1, 100)]),
                status,
                0,
                1,
                1,
                5.0,
                2.0,
                10.0,
                created,
                created,
                started,
                finished,
                finished,
                "ValueError" if status == "failed" else None,
                "bad row 17" if status == "failed" else None,
                1.0 if status == "succeeded" else None,
                "cli",
                "ops",
            )
        )
    conn = sqlite3.connect(cfg.db_path)
    with conn:
        conn.executemany(
            "INSERT INTO jobs (class_path, method, params, status, priority, attempt, max_attempts, "
            "retry_delay, retry_backoff, cancel_grace, run_after, created_at, started_at, finished_at, "
            "updated_at, exception, error, progress, source, user) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    conn.close()


def write_logs(log_dir: Path, records: int, start_id: int = 1, t0: float | None = None) -> int:
    """About `records` records in the shapes the launcher and runner write;
    returns the next job id."""
    rng = random.Random(start_id)
    log_dir.mkdir(parents=True, exist_ok=True)
    t = t0 if t0 is not None else time.time() - records * 0.5
    job_id, written = start_id, 0
    dumps = json.dumps
    with (
        open(log_dir / "background_jobs.log", "a") as main,
        open(log_dir / "background_jobs_errors.log", "a") as errors,
    ):
        while written < records:
            cls, method = rng.choice(CLASSES)
            base = {"job_id": job_id, "class": cls, "method": method}

            def rec(event, level, attempt, message, base=base, **extra):
                nonlocal t, written
                t += rng.random()
                line = (
                    dumps(
                        {
                            "ts": _iso(t),
                            "level": level,
                            "event": event,
                            **base,
                            "attempt": attempt,
                            "message": message,
                            **extra,
                        }
                    )
                    + "\n"
                )
                main.write(line)
                if level == "ERROR":
                    errors.write(line)
                written += 1

            rec(
                "queued",
                "INFO",
                0,
                f"{cls}.{method} queued with priority 0",
                params=[1],
                source="cli",
                user="ops",
            )
            rec("started", "INFO", 1, f"attempt 1 of job {job_id} started", pid=4242)
            duration = rng.lognormvariate(0, 1.2)
            if rng.random() < 0.9:
                rec("succeeded", "INFO", 1, f"job {job_id} succeeded in {duration:.2f}s", duration=duration)
            else:
                rec(
                    "attempt_failed",
                    "ERROR",
                    1,
                    "attempt 1 failed: ValueError: bad row 17",
                    exception="ValueError",
                    error="bad row 17",
                    traceback=TRACEBACK,
                    duration=duration,
                )
                rec(
                    "failed",
                    "ERROR",
                    1,
                    f"job {job_id} failed after 1 attempt",
                    exception="ValueError",
                    error="bad row 17",
                    traceback=TRACEBACK,
                )
            job_id += 1
    return job_id


def timed_run(at) -> float:
    t = time.perf_counter()
    at.run(timeout=300)
    elapsed = time.perf_counter() - t
    if at.exception:
        raise SystemExit(f"the page raised: {[e.value for e in at.exception]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--no-warm-up",
        action="store_true",
        help="do not parse the logs in the background: the Logs page parses them itself",
    )
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bgjobs-bench-dash-"))
    (root / "config.yaml").write_text(
        "allowed_classes:\n" + "".join(f"  - {c}\n" for c, _ in CLASSES) + "max_concurrent: 2\n"
    )
    os.environ["BGJOBS_CONFIG"] = str(root / "config.yaml")
    os.environ.pop("BGJOBS_DASHBOARD_PASSWORD", None)
    os.chdir(REPO)

    t = time.perf_counter()
    seed_jobs(root, args.jobs)
    next_id = write_logs(root / "logs", args.records)
    size = (root / "logs" / "background_jobs.log").stat().st_size
    print(
        f"seeded {args.jobs:,} jobs and {args.records:,} log records ({size / 1e6:.0f} MB) "
        f"in {time.perf_counter() - t:.1f}s; project {root}"
    )

    from streamlit.testing.v1 import AppTest

    from bgjobs import logtable

    t = time.perf_counter()
    logtable.read_log(root / "logs" / "background_jobs.log")
    parse_only = time.perf_counter() - t

    from bgjobs.ui import logdata

    if args.no_warm_up:
        logdata.warm_up = lambda *paths: None

    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=300)
    t = time.perf_counter()
    jobs = [timed_run(at)]
    for thread in threading.enumerate():  # the background parse started by the first run
        if thread.name.startswith("bgjobs-read-"):
            thread.join()
    warm_up = time.perf_counter() - t
    jobs += [timed_run(at) for _ in range(args.rounds)]
    at.switch_page("bgjobs/ui/pages/logs.py")
    logs = [timed_run(at) for _ in range(args.rounds + 1)]
    write_logs(root / "logs", 1000, start_id=next_id, t0=time.time())
    appended = timed_run(at)
    errors = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=300)
    errors.query_params["logs_tab"] = "Errors"
    errors.run(timeout=300)
    errors.switch_page("bgjobs/ui/pages/logs.py")
    errors_first = timed_run(errors)
    errors_warm = statistics.median(timed_run(errors) for _ in range(args.rounds))

    print(f"(for scale: logtable.read_log of the main log alone took {parse_only:.2f}s in this process)")
    print(f"Jobs page : first {jobs[0]:.2f}s, warm median {statistics.median(jobs[1:]):.2f}s")
    if args.no_warm_up:
        print(f"Logs page : first {logs[0]:.2f}s (parses the {args.records:,}-record log itself)")
    else:
        print(
            f"            the background parse of both logs, started by that first run, took {warm_up:.2f}s"
        )
        print(f"Logs page : first {logs[0]:.2f}s (after the background parse)")
    print(
        f"            warm median {statistics.median(logs[1:]):.2f}s, after 1,000 new records {appended:.2f}s"
    )
    print(f"Errors tab: first {errors_first:.2f}s, warm median {errors_warm:.2f}s")


if __name__ == "__main__":
    main()
