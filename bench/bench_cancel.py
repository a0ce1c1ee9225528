"""Benchmark: cancel latency of a cooperative job, against `python -c pass`.

    .venv/bin/python bench/bench_cancel.py [--quick] [--rounds N]

4. `job-cancel ID` of a running cooperative job (cooperative_cancel = True; it
   polls bgjobs.cancel_requested() every 2 ms), from the command's start until
   it exits, which it does once the job is final (cancelled). Against the wall
   time of `python -c pass`. Goal: at most 3x.

Also shown: the same through cancel_job() in a warm process, and when the job
itself saw the request (so the cost splits into "reach the job" and "record
and notice the end"). Before each cancel the job is running and has stamped a
"ready" file. Rounds alternate A B, B A, ... Not a test: nothing gates CI.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BIN,
    PY,
    BenchProject,
    Report,
    fmt_ms,
    interleave,
    load_note,
    parser,
    rounds_of,
    run_timed,
    wait_file,
)

GOAL = 3.0


def main() -> int:
    args = parser(__doc__.split("\n")[0], rounds=15, quick_rounds=5).parse_args()
    rounds = rounds_of(args)
    report = Report(
        "Cancel latency",
        "From the start of the cancel to the job's final state (`job-cancel` exits only then), "
        "for a running cooperative job that polls bgjobs.cancel_requested() every 2 ms. "
        f"{rounds} interleaved rounds after one warm-up; each cancel starts on a project whose "
        "only job is the one being cancelled.",
    )
    seen: dict[str, list[float]] = {"cli": [], "api": []}
    with BenchProject("cancel", keep=args.keep) as proj:
        code = proj.code_note()
        proj.enter()
        from bgjobs import api

        env, cwd = proj.env(), proj.root
        job_cancel = str(BIN / "job-cancel")

        def running_job() -> tuple[int, str]:
            ready, saw = proj.mark("ready"), proj.mark("seen")
            job_id = api.run_background_job(
                "benchjobs.tasks.Cooperative", "run", ready, saw, config=proj.config_path
            )
            wait_file(ready)
            time.sleep(0.05)  # let the runner settle into its wait
            return job_id, saw

        def cancel_cli() -> float:
            job_id, saw = running_job()
            t0 = time.monotonic_ns()
            dt, out = run_timed([job_cancel, str(job_id)], env, cwd)
            if "cancelled" not in out:
                raise RuntimeError(f"job-cancel {job_id}: {out!r}")
            seen["cli"].append((wait_file(saw) - t0) / 1e9)
            return dt

        def cancel_api() -> float:
            job_id, saw = running_job()
            t0 = time.monotonic_ns()
            result = api.cancel_job(job_id, config=proj.config_path)
            dt = (time.monotonic_ns() - t0) / 1e9
            if not result.cancelled:
                raise RuntimeError(f"cancel_job({job_id}): {result.job.status}")
            seen["api"].append((wait_file(saw) - t0) / 1e9)
            return dt

        def bare() -> float:
            return run_timed([PY, "-c", "pass"], env, cwd)[0]

        s = interleave(
            rounds,
            {"cli": cancel_cli, "pass": bare, "api": cancel_api},
            between=proj.quiesce,
            progress="cancel",
        )
        proj.quiesce()
    # the warm-up round's stamps are in `seen` too; drop them
    seen = {k: v[-rounds:] for k, v in seen.items()}

    def add(measure, ours, base, goal=None):
        report.compare(measure, ours, base, fmt_ms, goal)

    add("4. cancel latency: `job-cancel` → final state, vs `python -c pass`", s["cli"], s["pass"], GOAL)
    add("(info) `cancel_job()` in a warm process → final state, vs `python -c pass`", s["api"], s["pass"])
    add(
        "(info) `job-cancel` start → the job sees cancel_requested(), vs `python -c pass`",
        seen["cli"],
        s["pass"],
    )
    add(
        "(info) `cancel_job()` call → the job sees cancel_requested(), vs `python -c pass`",
        seen["api"],
        s["pass"],
    )
    report.note(f"{code}. IQR is the 25th–75th percentile over the rounds; {load_note()} at the end.")
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
