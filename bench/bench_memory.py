"""Benchmark: the runner's memory while its job runs, against a bare sleeping
interpreter.

    .venv/bin/python bench/bench_memory.py [--quick] [--rounds N]

5. The runner (the process whose parent is not itself a runner) while its job
   sleeps, measured with psutil: USS (memory only this process holds) and RSS.
   Against `python -c "import time; time.sleep(60)"` in the same environment.
   Goal: at most 1.5x, for each of the three ways a runner starts: job-run's
   runner (a fork of job-run, bgjobs.fork), a spawned runner (`python -c
   RUNNER_CODE ID`, as a dispatch starts one, here through the API with
   `warm_spare: false`), and the API's warm spare (`python -c SPARE_CODE`,
   bgjobs.spare) once it has taken the job.

Also shown: the attempt (the runner's forked child, running the job) and the
waker, which lives while any job is active. Not a test: nothing gates CI.
"""

from __future__ import annotations

import collections
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BIN,
    PY,
    RUNNER_MARKS,
    RUNNER_STDLIB,
    BenchProject,
    Report,
    fmt_mib,
    interleave,
    load_note,
    parser,
    rounds_of,
    run_timed,
    wait_file,
)

GOAL = 1.5
# The floor: a sleeping interpreter that imported only the standard modules a
# runner needs (the store, JSON records, signals, locks, pipes), as bgjobs
# imports them (bench/_common.py), and read the store.
FLOOR_CODE = (
    f"import sys, time, {RUNNER_STDLIB};"
    "c = sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM jobs').fetchone();"
    "time.sleep(60)"
)
# The ways a runner starts, measured one by one: (key, how the rows name it,
# what its command line matches).
KINDS = (
    ("fork", "job-run's runner (a fork of job-run)", r"^bgjobs\.runner \d"),
    (
        "spawned",
        "a spawned runner (`warm_spare: false`; as a dispatch starts one)",
        r"from bgjobs\.runner import",
    ),
    ("spare", "the API's warm spare, once it takes the job", r"from bgjobs\.spare import"),
)


PAGE = os.sysconf("SC_PAGE_SIZE")


def present_pages(pid: int) -> list[int]:
    """The physical frame numbers of every page `pid` has in memory (root only)."""
    pfns = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo >= 0xFFFF_FFFF_FFFF_F000 or "[vsyscall]" in line:
                continue
            pagemap.seek(lo // PAGE * 8)
            data = pagemap.read((hi - lo) // PAGE * 8)
            for (entry,) in struct.iter_unpack("<Q", data):
                if entry >> 63:  # present
                    pfns.append(entry & ((1 << 55) - 1))
    return pfns


def pair_unique(runner: int, child: int) -> tuple[int, int] | None:
    """(runner's own bytes, the pair's bytes): pages that no process other than
    the runner and its forked child maps; the first counts only those the
    runner maps. psutil's USS under-counts a process that shares pages
    copy-on-write with its child: such pages count in neither's USS. None
    where the kernel hides frame numbers (not root)."""
    try:
        a, b = present_pages(runner), present_pages(child)
        if not any(a):
            return None  # frame numbers read as 0 without CAP_SYS_ADMIN
        in_a = collections.Counter(a)
        both = in_a + collections.Counter(b)
        own = pair = 0
        with open("/proc/kpagecount", "rb") as kc:
            for pfn, n in both.items():
                kc.seek(pfn * 8)
                (count,) = struct.unpack("<Q", kc.read(8))
                if count <= n:
                    pair += PAGE
                    if pfn in in_a:
                        own += PAGE
        return own, pair
    except OSError:
        return None


def anonymous(pid: int) -> int:
    """Anonymous memory (the heap, Python's objects), counted even where it is
    shared copy-on-write with a forked child."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    return 0


def settled_memory(proc, min_wait: float = 0.3, timeout: float = 10.0):
    """memory_full_info() once two readings 0.1 s apart agree (startup is over)."""
    deadline = time.monotonic() + timeout
    time.sleep(min_wait)
    last = proc.memory_full_info()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = proc.memory_full_info()
        if (now.rss, now.uss) == (last.rss, last.uss):
            return now
        last = now
    return last


def main() -> int:
    args = parser(__doc__.split("\n")[0], rounds=7, quick_rounds=3).parse_args()
    rounds = rounds_of(args)
    import psutil

    report = Report(
        "Memory",
        "USS is the memory only that process holds (what ending it gives back); RSS also "
        "counts shared pages such as the interpreter's own code. Lower is better. "
        f"{rounds} interleaved rounds after one warm-up.",
    )
    names = ("rss", "uss", "psutil uss", "anon", "pair", "attempt uss", "attempt rss")
    runner: dict[str, dict[str, list[float]]] = {k: {n: [] for n in names} for k, _, _ in KINDS}
    extra: dict[str, list[float]] = {
        "waker uss": [],
        "waker rss": [],
        "bare rss": [],
        "bare anon": [],
        "floor rss": [],
    }
    with BenchProject("memory", keep=args.keep) as proj:
        code = proj.code_note()
        proj.enter()
        from bgjobs import api, spare

        env, cwd = proj.env(), proj.root
        from bgjobs.config import load_config

        db_path = load_config(proj.config_path).db_path
        no_spare = proj.variant("no-spare", warm_spare=False)
        job_run = str(BIN / "job-run")

        def start_fork(ready: str) -> int:
            _, out = run_timed([job_run, "benchjobs.tasks.Sleeper", "run", f"--params={ready}"], env, cwd)
            return int(out.split()[0])

        def start_spawned(ready: str) -> int:
            return api.run_background_job("benchjobs.tasks.Sleeper", "run", ready, 60, config=no_spare)

        def start_spare(ready: str) -> int:
            # The API keeps a warm spare from a process's second launch on; each
            # one that takes a job is replaced. Wait until the next has booted.
            deadline = time.monotonic() + 10
            while spare.warm_spare_pid(ready=True) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError("no warm spare booted")
                if spare.warm_spare_pid() is None:  # none yet: launches start one
                    api.run_background_job("jobs.noop.Noop", "run", config=proj.config_path)
                    proj.quiesce()
                time.sleep(0.01)
            return api.run_background_job(
                "benchjobs.tasks.Sleeper", "run", ready, 60, config=proj.config_path
            )

        starts = {"fork": start_fork, "spawned": start_spawned, "spare": start_spare}

        def runner_case(kind: str, mark: str) -> float:
            ready = proj.mark("ready")
            job_id = starts[kind](ready)
            wait_file(ready)
            procs = proj.processes(RUNNER_MARKS)
            pids = {p.pid for p in procs}
            runners = [p for p in procs if p.ppid() not in pids]
            attempts = [p for p in procs if p.ppid() in pids]
            if len(runners) != 1 or len(attempts) != 1:
                raise RuntimeError(f"expected one runner and one attempt, got {procs}")
            line = " ".join(runners[0].cmdline())
            if not re.search(mark, line):
                raise RuntimeError(f"{kind}: the runner is {line!r}, not one matching {mark!r}")
            mem = settled_memory(runners[0])
            child = attempts[0].memory_full_info()
            unique = pair_unique(runners[0].pid, attempts[0].pid)
            got = runner[kind]
            got["rss"].append(mem.rss)
            got["psutil uss"].append(mem.uss)
            got["uss"].append(mem.uss if unique is None else unique[0])
            got["anon"].append(anonymous(runners[0].pid))
            got["attempt uss"].append(child.uss)
            got["attempt rss"].append(child.rss)
            if unique is not None:
                got["pair"].append(unique[1])
            wakers = proj.processes("bgjobs.waker")
            if wakers:
                wm = wakers[0].memory_full_info()
                extra["waker uss"].append(wm.uss)
                extra["waker rss"].append(wm.rss)
            api.cancel_job(job_id, config=proj.config_path)
            return got["uss"][-1]

        def sleeper(code: str, *args: str):
            """(settled memory, anonymous bytes) of `python -c code args` while it sleeps."""
            proc = subprocess.Popen([PY, "-c", code, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL)
            try:
                return settled_memory(psutil.Process(proc.pid)), anonymous(proc.pid)
            finally:
                proc.kill()
                proc.wait()

        def bare_case() -> float:
            mem, anon = sleeper("import time; time.sleep(60)")
            extra["bare anon"].append(anon)
            extra["bare rss"].append(mem.rss)
            return mem.uss

        def floor_case() -> float:
            mem, _ = sleeper(FLOOR_CODE, db_path)
            extra["floor rss"].append(mem.rss)
            return mem.uss

        cases = {kind: (lambda kind=kind, mark=mark: runner_case(kind, mark)) for kind, _, mark in KINDS}
        s = interleave(
            rounds,
            {**cases, "bare": bare_case, "floor": floor_case},
            between=proj.quiesce,
            progress="memory",
        )
        proj.quiesce()
    extra = {k: v[-rounds:] for k, v in extra.items()}
    runner = {k: {n: v[-rounds:] for n, v in got.items()} for k, got in runner.items()}

    def add(measure, ours, base, goal=None):
        report.compare(measure, ours, base, fmt_mib, goal)

    fair = all(got["pair"] for got in runner.values())
    for kind, name, _ in KINDS:
        add(
            f"5. runner USS, counting the pages it shares only with its own attempt, vs bare USS: {name}"
            if fair
            else f"5. runner USS (psutil) vs bare sleeping interpreter USS: {name}",
            runner[kind]["uss"],
            s["bare"],
            GOAL,
        )
    for kind, name, _ in KINDS:
        add(
            f"5. runner RSS vs bare sleeping interpreter RSS: {name}",
            runner[kind]["rss"],
            extra["bare rss"],
            GOAL,
        )
    add(
        "(info) the floor for 5: RSS of a sleeping interpreter that imported only "
        f"`{RUNNER_STDLIB}` and read the store, vs bare RSS",
        extra["floor rss"],
        extra["bare rss"],
    )
    # The three differ little past their start: the details of job-run's runner.
    got, name = runner["fork"], KINDS[0][1]
    if fair:
        add(f"(info) {name}: USS as psutil counts it, vs bare USS", got["psutil uss"], s["bare"])
    add(f"(info) {name}: anonymous memory (heap) vs bare", got["anon"], extra["bare anon"])
    if fair:
        add(f"(info) {name} + its attempt: pages only they map, vs bare USS", got["pair"], s["bare"])
    add(
        "(info) its attempt (the forked child running the job): USS, vs bare USS",
        got["attempt uss"],
        s["bare"],
    )
    add("(info) its attempt: RSS, vs bare RSS", got["attempt rss"], extra["bare rss"])
    if extra["waker uss"]:
        add(
            "(info) waker USS (one per project while jobs are active), vs bare USS",
            extra["waker uss"],
            s["bare"],
        )
    report.note(
        "The runner's USS under-counts it: the attempt is forked from the runner, so "
        "the pages they still share copy-on-write count in neither USS. The goal's USS row "
        "charges them to the runner (from /proc/PID/pagemap and /proc/kpagecount, "
        "which need root; without it the row falls back to psutil's USS)."
    )
    report.note(f"{code}. IQR is the 25th–75th percentile over the rounds; {load_note()} at the end.")
    report.emit(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
