"""Benchmark: launch cost and time to start, against a bare interpreter.

    .venv/bin/python bench/bench_launch.py [--quick] [--rounds N]

1. Launch cost: the wall time of `job-run jobs.noop.Noop run` (fork the runner,
   validate, have the runner record the job, return) against `python -c pass`.
   Goal: at most 3x.
2. Time to start: from the call to the job's first line running, against a
   fresh `python -c "from benchjobs.tasks import Stamp; Stamp().run(p)"` (one
   interpreter, the job's import, its first line). Goal: at most 3x. Measured
   from `job-run` and from run_background_job() in an already-warm process,
   whose warm spare runner takes the job (and, as an info row, with
   `warm_spare: false`, as before there was one). From `job-run` also against
   `python -c pass`, the public-API change's bar: at most 4x.

Also shown, as info rows: the CPU time (user + system) a job costs from
`job-run`, over every process it takes (job-run, its forked runner, the attempt,
the waker), against the fresh interpreter running the job. Unlike wall time, it
hardly moves with the machine's other load.

Each case runs on an idle project: before each, the benchmark waits until the
last round's runner and waker have exited. Rounds alternate A B, B A, ...
Not a test: nothing here gates CI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BIN,
    CLI_STDLIB,
    PY,
    RUNNER_STDLIB,
    STDLIB,
    BenchProject,
    Report,
    become_subreaper,
    fmt_ms,
    interleave,
    load_note,
    parser,
    reap_orphans,
    rounds_of,
    run_timed,
    wait_cpu,
    wait_file,
)

GOAL = 3.0
# The public-API change's bar: `job-run` → the job's first line at most 4x `python -c pass`.
GOAL_VS_PASS = 4.0
# The floors import the standard modules the work needs, as bgjobs imports them
# (bench/_common.py), and no bgjobs code. job-run's own process does not open
# the store, its fork does: the floor of job-run's shape imports sqlite3 after
# its fork, as job-run's runner does.


def main() -> int:
    args = parser(__doc__.split("\n")[0], rounds=15, quick_rounds=5).parse_args()
    rounds = rounds_of(args)
    report = Report(
        "Launch cost and time to start",
        "Launch cost is the wall time of the command, from spawn to exit. Time to start runs "
        "from the moment the caller starts (the `job-run` spawn, or the run_background_job() "
        "call) to the job's first line, as the job itself stamps it with CLOCK_MONOTONIC. "
        f"{rounds} interleaved rounds after one warm-up; each case starts on an idle project.",
    )
    with BenchProject("launch", keep=args.keep) as proj:
        code = proj.code_note()
        proj.enter()
        from bgjobs import api, spare

        env, cwd = proj.env(), proj.root
        job_run = str(BIN / "job-run")
        stamp_code = "import sys; from benchjobs.tasks import Stamp; Stamp().run(sys.argv[1])"

        def launch_cli() -> float:
            dt, out = run_timed([job_run, "jobs.noop.Noop", "run"], env, cwd)
            assert out.strip().isdigit(), out
            return dt

        def launch_pass() -> float:
            return run_timed([PY, "-c", "pass"], env, cwd)[0]

        # The floor: what a bare interpreter takes to import only the standard
        # modules a console script of this kind needs, before any bgjobs code.
        def launch_stdlib() -> float:
            return run_timed([PY, "-c", f"import {CLI_STDLIB}"], env, cwd)[0]

        # CPU seconds per case, over every process it started (see _common.py:
        # this process reaps the orphans, job-run's fork and the waker).
        cpu: dict[str, list[float]] = {"start cli": [], "start bare": [], "start chain floor": []}

        def settle_cpu(case: str, own: float) -> None:
            proj.quiesce()  # the runner and the waker have exited: reap them
            cpu[case].append(own + reap_orphans())

        def start_cli() -> float:
            mark = proj.mark("cli")
            t0 = time.monotonic_ns()
            proc = subprocess.Popen(
                [job_run, "benchjobs.tasks.Stamp", "run", f"--params={mark}"],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            t1 = wait_file(mark)
            err = proc.stderr.read()
            proc.stderr.close()
            own = wait_cpu(proc)
            if proc.returncode:
                raise RuntimeError(f"job-run failed: {err.decode()}")
            settle_cpu("start cli", own)
            return (t1 - t0) / 1e9

        # The API keeps a warm spare runner for its next launch (warm_spare:
        # true, the default); the variant config turns it off, as before it.
        no_spare = proj.variant("no-spare", warm_spare=False)

        took: list[bool] = []  # per call with the spare on: did the warm spare take the job?

        def start_api(config=proj.config_path) -> float:
            mark = proj.mark("api")
            warm = spare.warm_spare_pid(ready=True) if config == proj.config_path else None
            t0 = time.monotonic_ns()
            api.run_background_job("benchjobs.tasks.Stamp", "run", mark, config=config)
            dt = (wait_file(mark) - t0) / 1e9
            if config == proj.config_path:  # a spare that takes a job is replaced at once
                took.append(warm is not None and spare.warm_spare_pid() != warm)
            return dt

        def start_api_no_spare() -> float:
            return start_api(no_spare)

        def start_bare(before: str = "", case: str | None = "start bare") -> float:
            mark = proj.mark("bare")
            t0 = time.monotonic_ns()
            code = before + stamp_code
            proc = subprocess.Popen([PY, "-c", code, mark], env=env, cwd=cwd, stdin=subprocess.DEVNULL)
            t1 = wait_file(mark)
            own = wait_cpu(proc)
            if case:
                cpu[case].append(own)
            return (t1 - t0) / 1e9

        def start_stdlib() -> float:
            return start_bare(f"import {RUNNER_STDLIB}\n", case=None)

        # The floor of job-run's shape, with no bgjobs code (no argument parsing,
        # no store): an interpreter imports a runner's standard modules but
        # sqlite3 and forks the runner, which imports sqlite3 and forks the
        # attempt, which imports the job's module and runs it. (A launcher that
        # spawned a fresh interpreter for its runner instead would be two
        # interpreters in series.)
        def start_chain_floor() -> float:
            mark = proj.mark("chain")
            code = (
                f"import os, select, {STDLIB}\n"
                "if os.fork() == 0:\n"
                "    os.setsid()\n"
                "    import sqlite3\n"
                "    if os.fork() == 0:\n"
                f"        {stamp_code}\n"
                "        os._exit(0)\n"
                "    os.wait()\n"
                "    os._exit(0)\n"
            )
            t0 = time.monotonic_ns()
            proc = subprocess.Popen([PY, "-c", code, mark], env=env, cwd=cwd, stdin=subprocess.DEVNULL)
            t1 = wait_file(mark)
            own = wait_cpu(proc)
            settle_cpu("start chain floor", own)
            return (t1 - t0) / 1e9

        # Returning from the API call: a warm process validates, records and
        # spawns; the nearest bare equivalent is Popen of an interpreter.
        def return_api(config=proj.config_path) -> float:
            t0 = time.perf_counter()
            api.run_background_job("jobs.noop.Noop", "run", config=config)
            return time.perf_counter() - t0

        def return_api_no_spare() -> float:
            return return_api(no_spare)

        def return_popen() -> float:
            t0 = time.perf_counter()
            proc = subprocess.Popen([PY, "-c", "pass"], env=env, cwd=cwd, stdin=subprocess.DEVNULL)
            dt = time.perf_counter() - t0
            proc.wait()
            return dt

        # This sandbox (and so CI) sets PYTHONDONTWRITEBYTECODE=1: then every
        # job-run compiles bgjobs from source. Shown as a separate row.
        nocache = proj.env(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=None)

        def launch_cli_nocache() -> float:
            return run_timed([job_run, "jobs.noop.Noop", "run"], nocache, cwd)[0]

        def launch_pass_nocache() -> float:
            return run_timed([PY, "-c", "pass"], nocache, cwd)[0]

        def between() -> None:
            proj.quiesce()
            reap_orphans()  # e.g. a waker a warm spare started: not the next case's

        subreaper = become_subreaper()
        # The API keeps a warm spare from a process's second launch on: one
        # launch first, so that the warm-up round's starts the spare.
        api.run_background_job("jobs.noop.Noop", "run", config=proj.config_path)
        between()
        s = interleave(
            rounds,
            {
                "job-run": launch_cli,
                "pass": launch_pass,
                "start cli": start_cli,
                "start api": start_api,
                "start api no spare": start_api_no_spare,
                "start bare": start_bare,
                "stdlib floor": launch_stdlib,
                "start stdlib floor": start_stdlib,
                "start chain floor": start_chain_floor,
            },
            between=between,
            progress="launch/start",
        )
        s2 = interleave(
            max(3, rounds // 2),
            {
                "api return": return_api,
                "popen return": return_popen,
                "api return no spare": return_api_no_spare,
                "job-run nocache": launch_cli_nocache,
                "pass nocache": launch_pass_nocache,
            },
            between=between,
            progress="api return / no bytecode cache",
        )
        proj.quiesce()
    # the warm-up round's are in `cpu` too; drop them
    cpu = {k: v[-rounds:] for k, v in cpu.items()}

    def add(measure, ours, base, goal=None):
        report.compare(measure, ours, base, fmt_ms, goal)

    add("1. launch cost: `job-run` vs `python -c pass`", s["job-run"], s["pass"], GOAL)
    add(
        f"(info) the floor for 1 and 4: a bare interpreter importing only `{CLI_STDLIB}`, "
        "vs `python -c pass`",
        s["stdlib floor"],
        s["pass"],
    )
    add(
        "2. time to start: `job-run` → job's first line, vs fresh interpreter running the job",
        s["start cli"],
        s["start bare"],
        GOAL,
    )
    add(
        "2. time to start: `job-run` → job's first line, vs `python -c pass` (the public-API change's bar)",
        s["start cli"],
        s["pass"],
        GOAL_VS_PASS,
    )
    add(
        "2. time to start: `run_background_job()` → job's first line, vs fresh interpreter "
        "(the caller's warm spare runner takes the job)",
        s["start api"],
        s["start bare"],
        GOAL,
    )
    add(
        "(info) the same with `warm_spare: false`: a runner is spawned for the job",
        s["start api no spare"],
        s["start bare"],
    )
    add(
        f"(info) the floor for 2: a fresh interpreter importing only `{RUNNER_STDLIB}`, then "
        "running the job, vs fresh interpreter running the job",
        s["start stdlib floor"],
        s["start bare"],
    )
    add(
        f"(info) the floor for 2 from a command: an interpreter importing only `{STDLIB}, select` "
        "forks a runner, which imports sqlite3 and forks the attempt, which runs the job "
        "(job-run's shape, with no bgjobs code), vs fresh interpreter running the job",
        s["start chain floor"],
        s["start bare"],
    )
    if subreaper:
        add(
            "(info) CPU per job from `job-run` (user + system: job-run, its forked runner, the "
            "attempt, the waker), vs a fresh interpreter running the job",
            cpu["start cli"],
            cpu["start bare"],
        )
        add(
            "(info) CPU of the floor of job-run's shape (the processes of the row above that "
            "names it), vs a fresh interpreter running the job",
            cpu["start chain floor"],
            cpu["start bare"],
        )
    add(
        "(info) `run_background_job()` returns (it waits for the warm spare's claim), vs "
        "`Popen(python -c pass)` returns",
        s2["api return"],
        s2["popen return"],
    )
    add("(info) the same with `warm_spare: false`", s2["api return no spare"], s2["popen return"])
    add(
        "(info) launch cost without a bytecode cache (PYTHONDONTWRITEBYTECODE=1, as on this "
        "machine and in CI)",
        s2["job-run nocache"],
        s2["pass nocache"],
    )
    report.note(
        "Children run with bytecode caching on (PYTHONPYCACHEPREFIX in the temp project), "
        "as a user's machine has it; the last row shows the sandbox's setting."
    )
    took = took[-rounds:]
    report.note(
        f"The warm spare took the job in {sum(took)} of the {len(took)} measured "
        "`run_background_job()` rounds (in the others none had booted, or it could not serve)."
    )
    if not subreaper:
        report.note("No CPU rows: this process could not become a child subreaper to reap job-run's fork.")
    report.note(f"{code}. IQR is the 25th–75th percentile over the rounds; {load_note()} at the end.")
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
