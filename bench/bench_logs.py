"""Benchmark: read_log against pyarrow.json.read_json, and LogTail.refresh against
a full read. Not a test; run it by hand:

    .venv/bin/python bench/bench_logs.py [--records 1000000] [--rounds 3]

It writes a realistic main log (INFO/WARNING/ERROR, some long tracebacks) into a
temporary folder, then times the candidates interleaved (A B A B ...) so drift
in the machine's load hits both alike, and prints medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLASSES = [
    ("jobs.example.ExampleJob", "handle"),
    ("jobs.reports.MonthlyReport", "build"),
    ("jobs.mail.Newsletter", "send_batch"),
    ("jobs.etl.Import", "run"),
    ("jobs.cleanup.Purge", "old_files"),
]


def _traceback(rng: random.Random, lines: int) -> str:
    frames = []
    for i in range(lines):
        frames.append(
            f'  File "/srv/app/jobs/module_{i % 17}.py", line {rng.randint(1, 900)}, in step_{i}\n'
            f"    result = self.compute(batch[{i}], retries={rng.randint(0, 5)})\n"
        )
    return "Traceback (most recent call last):\n" + "".join(frames) + "ValueError: bad row 17\n"


def job_records(rng: random.Random, job_id: int, t: float):
    """The records one job writes over its life, as the launcher and runner do."""
    cls, method = rng.choice(CLASSES)
    base = {"job_id": job_id, "class": cls, "method": method}

    def rec(event, level, attempt, message, **extra):
        nonlocal t
        t += rng.random() * 0.05
        secs = int(t)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((t - secs) * 1000):03d}Z"
        return {
            "ts": ts,
            "level": level,
            "event": event,
            **base,
            "attempt": attempt,
            "message": message,
            **extra,
        }

    out = [
        rec(
            "queued",
            "INFO",
            1,
            f"{cls}.{method} queued with priority 0",
            params=[rng.randint(1, 100)],
            priority=0,
            source="cli",
            user="ops",
            run_after="2026-11-28T16:22:15.123Z",
        )
    ]
    attempt = 1
    while True:
        out.append(
            rec(
                "started",
                "INFO",
                attempt,
                f"job {job_id} attempt {attempt} of 3 started",
                pid=rng.randint(1000, 60000),
            )
        )
        roll = rng.random()
        if roll < 0.85:
            out.append(
                rec(
                    "succeeded",
                    "INFO",
                    attempt,
                    f"job {job_id} succeeded",
                    duration=round(rng.random() * 30, 3),
                    result=json.dumps(rng.randint(0, 999)),
                )
            )
            break
        if roll < 0.88:
            out.append(
                rec(
                    "cancel_requested",
                    "INFO",
                    attempt,
                    f"cancel of job {job_id} requested by cli",
                    source="cli",
                    user="ops",
                )
            )
            out.append(
                rec(
                    "cancelled",
                    "WARNING",
                    attempt,
                    f"job {job_id} cancelled",
                    source="cli",
                    user="ops",
                    duration=round(rng.random() * 30, 3),
                )
            )
            break
        tb = _traceback(rng, rng.choices((8, 30, 200), weights=(70, 27, 3))[0])  # 200 frames: ~20 KB
        out.append(
            rec(
                "attempt_failed",
                "ERROR",
                attempt,
                f"job {job_id} attempt {attempt} failed: bad row 17",
                exception="ValueError",
                error="bad row 17",
                traceback=tb,
                exit_code=1,
                exit_signal=None,
            )
        )
        if attempt < 3:
            out.append(
                rec(
                    "retry_scheduled",
                    "WARNING",
                    attempt,
                    f"job {job_id} will retry in 5s (attempt {attempt + 1} of 3)",
                    delay=5.0,
                )
            )
            attempt += 1
            continue
        out.append(
            rec(
                "failed",
                "ERROR",
                attempt,
                f"job {job_id} failed after 3 attempt(s): bad row 17",
                exception="ValueError",
                error="bad row 17",
                duration=round(rng.random() * 90, 3),
            )
        )
        break
    return out, t


def generate(path: Path, n: int, seed: int = 5, start_id: int = 1, t0: float = 1.79e9) -> float:
    """Append at least `n` records (whole jobs) to `path`; returns the last timestamp."""
    rng = random.Random(seed)
    t, job_id, written = t0, start_id, 0
    with open(path, "a", encoding="utf-8") as f:
        buf = []
        while written < n:
            recs, t = job_records(rng, job_id, t)
            job_id += 1
            for r in recs[: n - written]:
                buf.append(json.dumps(r, ensure_ascii=False))
            written += min(len(recs), n - written)
            if len(buf) > 5000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")
    return t


def _records_bytes(n: int, seed: int, start_id: int, t0: float) -> tuple[bytes, float]:
    rng = random.Random(seed)
    out, t, job_id = [], t0, start_id
    while len(out) < n:
        recs, t = job_records(rng, job_id, t)
        job_id += 1
        out.extend(json.dumps(r, ensure_ascii=False) for r in recs)
    return ("\n".join(out[:n]) + "\n").encode(), t


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--append", type=int, default=10_000, help="records appended before each refresh")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    import pyarrow.json as pj

    from bgjobs.logtable import LogTail, read_log

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "background_jobs.log"
        started = time.perf_counter()
        t = generate(path, args.records)
        size = path.stat().st_size
        print(
            f"wrote {args.records:,} records, {size / 2**20:.0f} MiB, in {time.perf_counter() - started:.0f}s"
        )

        rows = {}
        full_read, arrow_read = [], []
        for _ in range(args.rounds):  # A B A B ...
            arrow_read.append(_time(lambda: rows.__setitem__("arrow", pj.read_json(path).num_rows)))
            full_read.append(_time(lambda: rows.__setitem__("log", len(read_log(path)))))
        assert rows["arrow"] == rows["log"] == args.records, rows

        tail = LogTail(path)
        tail.refresh()
        refresh, full_after, frame = [], [], []
        for i in range(args.rounds):
            chunk, t = _records_bytes(args.append, seed=100 + i, start_id=10**7 + i * args.append, t0=t)
            with open(path, "ab") as f:
                f.write(chunk)
            refresh.append(_time(lambda: rows.__setitem__("new", len(tail.refresh()))))
            assert rows["new"] == args.append, rows
            frame.append(_time(lambda: tail.frame))
            full_after.append(_time(lambda: rows.__setitem__("full", len(read_log(path)))))
        tail.close()

    med = statistics.median
    lines = [
        ("pyarrow.json.read_json (whole file)", med(arrow_read), None),
        ("read_log (whole file)", med(full_read), med(full_read) / med(arrow_read)),
        (f"LogTail.refresh() after {args.append:,} appended", med(refresh), med(refresh) / med(full_after)),
        ("LogTail.frame after that refresh (concat)", med(frame), med(frame) / med(full_after)),
        ("read_log (whole file, after appends)", med(full_after), None),
    ]
    print(f"\n{'what':<46} {'median s':>9}  {'ratio':>8}  rounds: {args.rounds}")
    for name, secs, ratio in lines:
        print(f"{name:<46} {secs:>9.3f}  {'' if ratio is None else f'{ratio:8.3f}':>8}")
    print("\nread_log / pyarrow: goal <= 2.0   refresh / full read_log: goal <= 0.05")
    print(
        "all rounds (s): pyarrow",
        [round(x, 2) for x in arrow_read],
        "read_log",
        [round(x, 2) for x in full_read],
        "refresh",
        [round(x, 3) for x in refresh],
        "full",
        [round(x, 2) for x in full_after],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
