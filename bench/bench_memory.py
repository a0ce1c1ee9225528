"""Benchmark: the runner's memory while its job runs, against a bare sleeping
interpreter.

    .venv/bin/python bench/bench_memory.py [--quick] [--rounds N]

5. The runner (`python -c "...bgjobs.runner..." ID`, the process whose parent is not
   itself a runner) while its job sleeps, measured with psutil: USS (memory
   only this process holds) and RSS. Against `python -c "import time;
   time.sleep(60)"` in the same environment. Goal: at most 1.5x.

Also shown: the attempt (the runner's forked child, running the job) and the
waker, which lives while any job is active. Not a test: nothing gates CI.
"""

from __future__ import annotations

import collections
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PY,
    SQLITE_AS_BGJOBS,
    BenchProject,
    Report,
    fmt_mib,
    interleave,
    load_note,
    parser,
    rounds_of,
    wait_file,
)

GOAL = 1.5
# The floor: a sleeping interpreter that imported only the standard modules a
# runner needs (the store, JSON records, signals, locks) and opened the store.
# Each as bgjobs imports it: the C modules, not their wrappers, and _sqlite3
# without functools.
FLOOR_MODULES = "_sqlite3, _json, _signal, fcntl, select"
FLOOR_CODE = (
    f"{SQLITE_AS_BGJOBS}import {FLOOR_MODULES}, time;"
    "c = _sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM jobs').fetchone();"
    "time.sleep(60)"
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
    extra: dict[str, list[float]] = {
        "runner rss": [],
        "attempt uss": [],
        "attempt rss": [],
        "waker uss": [],
        "waker rss": [],
        "bare rss": [],
        "runner anon": [],
        "bare anon": [],
        "pair": [],
        "runner uss": [],
        "floor rss": [],
    }
    with BenchProject("memory", keep=args.keep) as proj:
        code = proj.code_note()
        proj.enter()
        from bgjobs import api

        env, cwd = proj.env(), proj.root
        from bgjobs.config import load_config

        db_path = load_config(proj.config_path).db_path

        def runner_case() -> float:
            ready = proj.mark("ready")
            job_id = api.run_background_job(
                "benchjobs.tasks.Sleeper", "run", ready, 60, config=proj.config_path
            )
            wait_file(ready)
            procs = proj.processes("bgjobs.runner")
            pids = {p.pid for p in procs}
            runners = [p for p in procs if p.ppid() not in pids]
            attempts = [p for p in procs if p.ppid() in pids]
            if len(runners) != 1 or len(attempts) != 1:
                raise RuntimeError(f"expected one runner and one attempt, got {procs}")
            mem = settled_memory(runners[0])
            child = attempts[0].memory_full_info()
            unique = pair_unique(runners[0].pid, attempts[0].pid)
            extra["runner rss"].append(mem.rss)
            extra["runner uss"].append(mem.uss)
            extra["runner anon"].append(anonymous(runners[0].pid))
            extra["attempt uss"].append(child.uss)
            extra["attempt rss"].append(child.rss)
            if unique is not None:
                extra["pair"].append(unique[1])
            wakers = proj.processes("bgjobs.waker")
            if wakers:
                wm = wakers[0].memory_full_info()
                extra["waker uss"].append(wm.uss)
                extra["waker rss"].append(wm.rss)
            api.cancel_job(job_id, config=proj.config_path)
            return mem.uss if unique is None else unique[0]

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

        s = interleave(
            rounds,
            {"runner": runner_case, "bare": bare_case, "floor": floor_case},
            between=proj.quiesce,
            progress="memory",
        )
        proj.quiesce()
    extra = {k: v[-rounds:] for k, v in extra.items()}

    def add(measure, ours, base, goal=None):
        report.compare(measure, ours, base, fmt_mib, goal)

    fair = bool(extra["pair"])
    add(
        "5. runner USS, counting the pages it shares only with its own attempt, vs bare USS"
        if fair
        else "5. runner USS (psutil) vs bare sleeping interpreter USS",
        s["runner"],
        s["bare"],
        GOAL,
    )
    add("5. runner RSS vs bare sleeping interpreter RSS", extra["runner rss"], extra["bare rss"], GOAL)
    add(
        "(info) the floor for 5: RSS of a sleeping interpreter that imported only "
        f"`{FLOOR_MODULES}` (`_sqlite3` without functools, as bgjobs imports it) and read the "
        "store, vs bare RSS",
        extra["floor rss"],
        extra["bare rss"],
    )
    if fair:
        add("(info) runner USS as psutil counts it, vs bare USS", extra["runner uss"], s["bare"])
    add("(info) runner anonymous memory (heap) vs bare", extra["runner anon"], extra["bare anon"])
    if fair:
        add("(info) runner + attempt together: pages only they map, vs bare USS", extra["pair"], s["bare"])
    add("(info) attempt (forked child running the job) USS, vs bare USS", extra["attempt uss"], s["bare"])
    add("(info) attempt RSS, vs bare RSS", extra["attempt rss"], extra["bare rss"])
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
