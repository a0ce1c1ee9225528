"""Run every benchmark (bench/bench_*.py) and collect their tables into
docs/benchmarks.md.

    .venv/bin/python bench/run_all.py            # every script, full rounds
    .venv/bin/python bench/run_all.py --quick    # fewer rounds
    .venv/bin/python bench/run_all.py --only launch,cancel --label "after the lazy-import fix"
    .venv/bin/python bench/run_all.py --rewrite-text   # the page's prose from page_text(), no run

The scripts run one after another (never at once: they would disturb each
other). Each prints a markdown table; this collects them under one header
that says what was measured on (commit, CPUs, load). The summary of the run
before is kept under "Earlier runs", so a change shows its before and after.
These are benchmarks, not tests: nothing here gates CI, and the exit code is 0
whether or not a goal is met (it is 1 only when a script itself fails).

By default the code measured is a snapshot of HEAD (--commit, --work-tree),
installed as a regular package into a fresh venv that run_all builds (with pip,
from the package index) together with the Python peers, RQ and Celery: the
figures then do not depend on how the development venv installs bgjobs, nor
on edits made while they run. --dev-venv runs in this venv instead. The
system peers are bench-only too (not in requirements.txt):

    apt-get update && apt-get install -y redis-server task-spooler

A peer that is missing is skipped with a note in its table. bench_fleet.py
also needs PostgreSQL's server programs, initdb and pg_ctl, as the fleet tests
do (Debian: `apt-get install -y postgresql`); it starts a throwaway server of
its own (tests/pgserver.py), and without one it prints a note, not a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOC = REPO / "docs" / "benchmarks.md"
KEEP_EARLIER = 10
RUN_START, RUN_END = "<!-- run:start -->", "<!-- run:end -->"


def git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def code_fingerprint(root: Path = REPO) -> str:
    """A hash of the code the benchmarks measure (bgjobs/ and jobs/)."""
    h = hashlib.sha1()
    for f in sorted([*root.glob("bgjobs/**/*.py"), *root.glob("jobs/*.py")]):
        try:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
        except OSError:
            pass
    return h.hexdigest()[:12]


def snapshot(commit: str | None) -> Path:
    """bgjobs/, jobs/ and the packaging files as of `commit` (None: the work
    tree as it is now), in a temp folder: the code to measure. The work tree is
    shared and changes; a snapshot keeps one run one version."""
    import io
    import tarfile

    folder = Path(tempfile.mkdtemp(prefix="bgjobs-bench-code-"))
    names = ["bgjobs", "jobs", "pyproject.toml", "README.md"]
    if commit is None:
        for name in names:
            src = REPO / name
            if src.is_dir():
                shutil.copytree(src, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif src.exists():
                shutil.copy(src, folder / name)
        return folder
    have = [
        n
        for n in names
        if subprocess.run(
            ["git", "cat-file", "-e", f"{commit}:{n}"], cwd=REPO, capture_output=True
        ).returncode
        == 0
    ]
    data = subprocess.run(
        ["git", "archive", "--format=tar", commit, *have], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def bench_venv(code: Path) -> tuple[Path, str]:
    """A fresh venv with the snapshot installed as a regular package (what a
    user gets), plus the peers. Returns (its python, what went in)."""
    base = getattr(sys, "_base_executable", sys.executable)
    venv = code / ".venv"
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    print("== building the bench venv: bgjobs from the snapshot, then the peers", file=sys.stderr)
    # The pip that writes the console scripts, as dev.py installs it (its PIP): 25.2 and
    # later write wrappers without `import re`, which each command would pay for.
    subprocess.run([*pip, _dev_pip()], check=True, cwd=code.parent)
    # With the fleet extra (psycopg, Procrastinate), for bench_fleet.py: bgjobs
    # imports it only in fleet mode, so no other figure changes.
    subprocess.run([*pip, f"{code}[fleet]"], check=True, cwd=code.parent)
    peers = "rq and celery"
    # (celery 5.7 imports packaging without declaring it)
    if subprocess.run([*pip, "rq", "celery", "redis", "packaging"], cwd=code.parent).returncode != 0:
        peers = "no peers (pip could not install rq and celery; their rows are skipped)"
    pip_version = subprocess.run(
        [str(py), "-m", "pip", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[:2]
    return py, f"{' '.join(pip_version)} (it wrote the console scripts), {peers}"


def _dev_pip() -> str:
    """dev.py's PIP: the requirement dev.py installs pip by."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dev", REPO / "dev.py")
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    return dev.PIP


def install_mode() -> str:
    """How bgjobs is installed in this venv: it changes every interpreter's start."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    if list(site.glob("__editable___bgjobs*_finder.py")):
        return (
            "bgjobs installed editable in finder mode: every interpreter in the venv "
            "(baselines included) imports the finder hook, with pathlib and re, at start"
        )
    if list(site.glob("__editable__*bgjobs*.pth")):
        return "bgjobs installed editable in compat mode (a plain path entry)"
    return "bgjobs installed as a regular package"


def machine() -> str:
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        mem = f", {kb / 2**20:.0f} GiB memory"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPUs{mem}, Linux {platform.release()}, Python {platform.python_version()}"


def run_script(script: Path, quick: bool, timeout: float, env: dict, python: str) -> dict:
    """Run one script; those built on bench/_common.py with `python` (the bench
    venv), others with this interpreter (they may need the dashboard extras)."""
    if "from _common import" not in script.read_text(errors="replace"):
        python = sys.executable
        env = {k: v for k, v in env.items() if k not in ("BENCH_CODE_DIR", "BENCH_INSTALLED")}
    try:  # which of our flags does it take? (others' scripts may take neither)
        text = subprocess.run(
            [python, str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=60, env=env
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    argv = [python, str(script)]
    if quick and "--quick" in text:
        argv.append("--quick")
    json_path = None
    if "--json" in text:
        fd, json_path = tempfile.mkstemp(prefix=f"{script.stem}-", suffix=".json")
        os.close(fd)
        argv += ["--json", json_path]
    print(f"== {script.name}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    err_lines: list[str] = []
    out_chunks: list[str] = []

    def tee() -> None:  # show progress as it comes, keep it for the report
        for line in proc.stderr:
            err_lines.append(line)
            sys.stderr.write(f"   {line}")
            sys.stderr.flush()

    def collect() -> None:
        out_chunks.append(proc.stdout.read())

    threads = [threading.Thread(target=f, daemon=True) for f in (tee, collect)]
    for t in threads:
        t.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the script's own group; its cleanup did not run
        proc.wait()
        code = f"timed out after {timeout:g}s"
    except BaseException:
        os.killpg(proc.pid, 15)
        proc.wait()
        raise
    for t in threads:
        t.join(timeout=10)
    out = "".join(out_chunks)
    result = {
        "script": script.name,
        "argv": argv[1:],
        "code": code,
        "stdout": out,
        "stderr": "".join(err_lines),
        "seconds": time.monotonic() - t0,
        "json": None,
    }
    if json_path:
        try:
            result["json"] = json.loads(Path(json_path).read_text())
        except (OSError, ValueError):
            pass
        os.unlink(json_path)
    sys.stdout.write(out)
    sys.stdout.flush()
    return result


def section(result: dict) -> str:
    head = f"## {result['script']}\n\n"
    out = result["stdout"].strip()
    if result["code"] != 0:
        tail = "\n".join(result["stderr"].strip().splitlines()[-15:])
        head += (
            f"**This script failed** (exit {result['code']}); the end of its stderr:\n\n```\n{tail}\n```\n\n"
        )
    if not out:
        return head + "_(no output)_\n"
    if any(line.startswith("|") for line in out.splitlines()):
        return head + out + "\n"
    return head + f"```\n{out}\n```\n"


def _met(value) -> str:
    if value is None:
        return ""
    if value == "borderline":
        return "borderline"
    return "yes" if value else "**no**"


def summary(results: list[dict]) -> str:
    lines = [
        "| measure | ours | baseline | ratio of medians | per-round ratio (IQR) | goal | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = []
    for r in results:
        data = r["json"]
        if data:
            rows += [row for row in data["rows"] if not row["measure"].startswith("(info)")]
    rows.sort(key=lambda row: row["measure"].split(".")[0])  # 1. launch, 2. start ... (stable)
    for row in rows:
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
        met = _met(row["met"])
        ours = row["ours"].split(" (")[0]
        base = row["baseline"].split(" (")[0]
        lines.append(
            f"| {row['measure']} | {ours} | {base} | {ratio} | {row.get('paired', '')} "
            f"| {row['goal']} | {met} |"
        )
    others = [r["script"] for r in results if not r["json"]]
    if others:
        lines += ["", f"Not in this summary (see their sections): {', '.join(others)}."]
    return "\n".join(lines) + "\n"


def old_sections(old: str) -> dict[str, str]:
    """The per-script sections of the previous doc, by script name."""
    found = {}
    for m in re.finditer(r"^## (bench_\S+\.py)\n(.*?)(?=^## |\Z)", old, flags=re.S | re.M):
        found[m.group(1)] = m.group(2).strip()
    return found


def earlier_runs(old: str) -> list[str]:
    """The run blocks of the previous doc, newest first."""
    return [
        m.strip() for m in re.findall(re.escape(RUN_START) + r"(.*?)" + re.escape(RUN_END), old, flags=re.S)
    ]


def page_text() -> list[str]:
    """The page's fixed text, above its runs (--rewrite-text puts it on the page alone)."""
    return [
        "# Benchmarks",
        "",
        "<!-- Written by bench/run_all.py; change the scripts in bench/, not this page. -->",
        "",
        "How bgjobs compares with the physical limit (a fresh Python interpreter per job) and",
        "with peers people choose instead: RQ and Celery (with Redis) and task-spooler. Run them all with",
        "",
        "```",
        ".venv/bin/python bench/run_all.py          # add --quick for fewer rounds",
        "```",
        "",
        "Each script creates its own temp project (config.yaml, allowlist, state, logs) and",
        "never touches the repo's state/ or logs/. Rounds are interleaved (A B, B A, ...) and",
        "the figures are medians, with the interquartile range in brackets. A ratio is ours",
        "divided by the baseline: for times and memory lower is better, for throughput higher.",
        "These are benchmarks, not tests; nothing here gates CI. run_all.py measures a snapshot",
        "of HEAD, installed as a regular package in a fresh venv it builds with the Python peers",
        "(RQ, Celery), so the figures match what a user installs. The system peers are bench-only:",
        "",
        "```",
        "apt-get update && apt-get install -y redis-server task-spooler",
        "```",
        "",
        "### The public-API change: its bar, before and after",
        "",
        "The public-API change took out bgjobs' start-up tricks: it imported CPython's private modules",
        "(`_sqlite3`, `_json`, `_signal`, `_thread`, `_collections`) and planted a stand-in `functools`",
        "in `sys.modules`; it now imports `json`, `enum`, `typing`, `signal`, `threading` and, with the",
        'store\'s first connection, `sqlite3` plainly (docs/architecture.md, "The start-up budget"). Its',
        "bar: **`job-run` → the job's first line at most 4x `python -c pass`**, and **the runner's RSS",
        'at most 1.5x a bare interpreter**. Before is session 7\'s two full runs (under "Earlier runs");',
        "after is the two `launch,memory` runs after the change (the latest run and the one below it;",
        "both measured at a load average of 1.5 to 3.6 on 2 CPUs). A range is the two runs' ratios of",
        "medians.",
        "",
        "| measure | bar | before (session 7) | after | met |",
        "| --- | --- | --- | --- | --- |",
        "| `job-run` → job's first line, vs `python -c pass` | ≤ 4x | 2.16x, 2.42x | 3.66x, 3.75x (per round 3.88x, 3.55x) | yes, narrowly: at least a quarter of the first run's rounds were above 4x |",
        "| runner RSS vs a bare sleeping interpreter's | ≤ 1.5x | 1.33x, 1.34x | 1.55x (job-run's runner) to 1.71x (a spawned runner) | **no** |",
        "| runner USS, with the pages it shares only with its attempt | ≤ 1.5x | 1.43x, 1.44x | 2.38x to 2.48x | **no** |",
        "| `job-run` → job's first line, vs a fresh interpreter running the job (goal 2) | ≤ 3x | 2.47x, 2.60x (2.40x in a third run) | 4.29x, 4.60x | **no** |",
        "| launch cost: `job-run` vs `python -c pass` (goal 1) | ≤ 3x | 1.93x, 2.08x | 3.44x, 3.23x | **no** |",
        "| CPU per job from `job-run` (all its processes) vs a fresh interpreter running the job | | not measured | 4.12x, 4.35x (floor 3.08x, 2.91x) | |",
        "",
        '- Session 7 did not time `job-run` → first line against `python -c pass`: its "before" is the',
        "  row's median over the `python -c pass` median of goal 1 in the same run (72.8 ms against",
        "  33.7 ms, 62.1 ms against 25.7 ms). After: 56.2 ms against 15.4 ms, 58.6 ms against 15.6 ms.",
        "  `python -c pass` is timed to its exit, the fresh interpreter to the job's first line, so the",
        "  bar's ratio is lower than goal 2's for the same times.",
        "- Session 7 measured the runner the API's warm spare became (in one of its seven rounds, a",
        "  spawned one). Now each way a runner starts has its rows: job-run's fork 1.55x RSS, a",
        "  spawned runner 1.70x to 1.71x, the warm spare 1.69x to 1.70x.",
        "- The floor under the memory bar is the bar itself: a sleeping interpreter that imported only",
        "  `sqlite3, json, signal, threading, enum, typing, errno, fcntl, select` and read the store has",
        "  1.50x a bare one's RSS (1.20x with the private modules). No runner that imports these",
        "  plainly can meet it.",
        "- The two runs measured two commits (`553b90d`, `fa213af`): others' work between them changed",
        "  the store and the lifecycle code, not what any process imports.",
        "",
        "### Where a goal was missed or is close, and the floor under it",
        "",
        "Each script also measures a *floor*: the same shape of work with no bgjobs code, in the",
        "same run (the `(info) the floor ...` rows). Where a goal is missed, the floor says how",
        "much of the gap is Python itself. The floors import what bgjobs imports, by the same public",
        "names (bench/_common.py: `sqlite3, json, signal, threading, enum, typing, errno, fcntl`, and",
        "`select` for a runner).",
        "",
        "_Since the public-API change, bgjobs imports `json`, `enum`, `typing`, `signal`, `threading`",
        "and `sqlite3` plainly, so the imports session 7 had taken off job-run's path (`re`, `enum`,",
        "`collections`, `functools`) are back on it and in every runner, and the floors import the same",
        "public modules. The figures below are from the runs after the change; session 7's are under",
        '"Earlier runs" and in "Where start-up time goes" below._',
        "",
        "- **2, from `job-run`: the change's bar (4x `python -c pass`) met, narrowly; goal 2 (3x a fresh",
        "  interpreter running the job) missed.** `json` imports `re`, and with it `enum`, `functools`",
        "  and `collections`; `typing` and `threading` add their own. They load on both sides of the",
        "  fork: in job-run before it forks, and, for `sqlite3`, in the fork before it can insert. The",
        "  floor of job-run's shape (`the floor for 2 from a command`: an interpreter with those modules",
        "  forks a runner, which imports `sqlite3` and forks the attempt, which runs the job) is 2.5x to",
        "  2.8x by itself (1.5x to 1.6x with the private modules); above it are bgjobs' own modules and,",
        "  in series once the call is checked, the insert, the claim, the attempt's fork and the job's",
        "  import. job-run's path uses both CPUs (job-run checks the call while its fork opens the",
        "  store), so a busy machine slows it more than the one-process baseline. CPU time moves less",
        "  with the load: a job from `job-run` costs 4.1x to 4.35x the CPU of a fresh interpreter",
        "  running it (job-run, its runner, the attempt and the waker together), against 2.9x to 3.1x",
        "  for the floor.",
        "- **1, `job-run`'s launch cost: missed (3.2x to 3.4x).** A bare interpreter that imports the",
        "  console scripts' standard modules (`the floor for 1 and 4`) takes 2.2x to 2.4x `python -c",
        "  pass` before any bgjobs code. job-run's own process does not open the store (its fork does),",
        "  but it waits for the fork's insert. 4, `job-cancel`, was not re-run after the change (its",
        "  section below is from session 7); it pays the same imports.",
        "- **5, memory: missed, by RSS and by USS.** The floor is 1.50x RSS (above). The runners are",
        "  1.55x (job-run's fork) to 1.71x (a spawned runner) by RSS, and 2.4x to 2.5x by USS (the pages",
        "  only the runner holds, with those it shares only with its attempt). job-run's runner's heap is",
        "  6.8 MiB against a bare interpreter's 2.8 MiB, where session 7's runner's was 4.0 MiB.",
        "",
        "## Where start-up time goes (session 7's measurements)",
        "",
        "These figures are from session 7's measurements on the 2-CPU benchmark machine, **before the",
        "public-API change**: bgjobs then reached CPython's C modules directly, and since that change",
        "it imports `json`, `enum`, `typing`, `signal`, `threading` and `sqlite3` plainly; the",
        "`jsonc` and `records` modules and the stand-in `functools` are gone. So they say what each",
        "of those tricks saved, not what the code does now; the runs above and below measure the code",
        'as it is. docs/architecture.md ("The start-up budget") gives the rules that remain, and why.',
        "",
        "- A bare `python -c pass` took 21 to 34 ms, as the machine's other load went.",
        "- Still avoided today:",
        "  - `pathlib` (with `urllib.parse`, `fnmatch` and `ipaddress`) cost a runner about 8 ms.",
        "  - Starting a runner with `-m` ran `runpy` first: about 14 ms before the runner's first line.",
        "  - `ctypes` for `prctl(PR_SET_PDEATHSIG)` cost every runner about 4 ms and 0.4 MiB (the",
        "    O_ASYNC lifeline pipe replaced it; a runner now imports ctypes to become a child",
        "    subreaper).",
        "  - Importing argparse and building a parser cost each command about two thirds of",
        "    `python -c pass`.",
        "  - pip's console-script wrapper before 25.2 imported `re`: about 5 ms on every command.",
        "  - A runner's bookkeeping (recording its attempt's pid, dispatching) held up the job's first",
        "    line by 1 to 3 ms on a busy machine, before it waited for the attempt's start.",
        "- Given up by the public-API change:",
        "  - The `sqlite3` and `threading` wrappers, against their C modules: 3 to 4 ms on every",
        "    command and about 0.8 MiB of a runner's RSS (13.2 → 12.4 MiB in session 4's run).",
        "  - The `functools` that `_sqlite3` imports (with `collections`, `types` and `reprlib`):",
        "    about 5 ms, three times `_sqlite3` itself; the stand-in took 8.8 ms off `job-run` → the",
        "    job's first line (in the fork, an import also copies every page it touches) and about",
        "    5 ms off every other command and runner that opened the store.",
        "  - `json` imports `re`, which brings `enum`, `functools` and the regex compiler: about half",
        "    of `python -c pass`.",
        "  - `enum` (with the `functools` and `collections` it imports) cost `job-run` about 8 ms",
        "    before its fork.",
        "- `job-run` → the job's first line, against one fresh interpreter running the job: two",
        "  interpreters in series (one that only spawns a second, which runs the job) took about 2.5",
        "  times as long; `job-run` with a spawned spare runner 4.3 to 4.7 times; with its runner a",
        "  fork of job-run, 3.2 to 3.8 times; and 2.4 to 2.6 times once the imports above were gone.",
        "  `job-run` itself returned about 2 ms later with the fork (2.4 to 2.6 times `python -c",
        "  pass`, from 2.2 to 2.3), because it waits for the fork's insert; without those imports it",
        "  was 1.9 to 2.1 times.",
        "- The Python API's warm spare took `run_background_job()` → the job's first line from about",
        "  50 ms (a spawned runner) to 10 to 17 ms, about 0.55 times a fresh interpreter running the",
        "  job; the call itself returned about 3 ms later than without a spare (5.4 against 2.3 ms),",
        "  because it waits for the claim.",
        "",
        "## Fleet",
        "",
        "`bench/bench_fleet.py` measures fleet mode on this machine: a throwaway PostgreSQL 15 and three",
        "`job-worker` processes (hosts h1, h2, h3) with `worker_slots: 1` each, so 3 jobs at once, against",
        "the local mode (the same project on its SQLite file) with `max_concurrent: 3`, in interleaved",
        "rounds. The benchmark process is a fourth host, `client`, that runs no jobs: it submits with",
        "`run_background_job()` and cancels with `cancel_job()`, as an application would. Beside them,",
        "Celery 5.7 (Redis broker and results) with a prefork pool of 3, and again with",
        "`--max-tasks-per-child=1`, a fresh pool process per task (the nearest Celery comes to a process",
        "per job). Rerun it with",
        "",
        "```",
        ".venv/bin/python bench/bench_fleet.py              # --quick: 200 jobs, 4 latency rounds",
        ".venv/bin/python bench/run_all.py --only fleet     # on a snapshot of HEAD, in a fresh venv with Celery",
        "```",
        "",
        "It needs PostgreSQL's `initdb` and `pg_ctl` (as the fleet tests do); Celery's rows need",
        "`redis-server` and `celery`, and are skipped with a note without them.",
        "",
        "The fleet-mode issue's goals, over three runs. Runs 1 and 2 measured the fleet before `4e9cfd9`",
        "(a host's live runners count against its `worker_slots`), run 3 after it; the local mode and Celery",
        "ran in the same rounds each time. The machine was shared with other work (others' test suites ran",
        "during run 1): load average (1 min, 2 CPUs) 3.5 to 17.9 during run 1, 2.0 to 6.3 during run 2, 1.2",
        "to 6.9 during run 3. Times are p50 / p90.",
        "",
        "| measure | goal | fleet, run 3 | fleet, runs 1 and 2 | local mode, runs 1, 2, 3 | Celery prefork, runs 1, 2, 3 | Celery `--max-tasks-per-child=1`, runs 1, 2, 3 | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        "| throughput, 1,000 no-op jobs through the API | | 39.5/s | 9.3/s, 8.2/s | 134/s, 117/s, 108/s | 410/s, 361/s, 449/s | 6.6/s, 9.0/s, 7.9/s | |",
        "| CPU per job, every process | | 39.7 ms (29.5 ms without PostgreSQL) | 178 ms, 190 ms | 11.3 ms, 13.9 ms, 14.3 ms | | | |",
        "| submit → job's first line, warm (right after another job) | p50 ≤ 20 ms | 70.2 / 110 ms | 63.5 / 101 ms, 63.8 / 90.7 ms | 57.3 / 156 ms, 60.8 / 132 ms, 81.0 / 148 ms | 3.3 / 9.4 ms, 5.3 / 9.8 ms, 6.1 / 11.7 ms | 19.5 / 2753 ms, 15.3 / 3068 ms, 13.9 / 2581 ms | **no**: 3.2x to 3.5x the goal |",
        "| submit → job's first line, cold (after 2.5 s idle) | | 44.6 / 89.6 ms | 34.4 / 44.0 ms, 38.2 / 53.1 ms | 22.3 / 38.9 ms, 16.1 / 23.5 ms, 20.8 / 32.4 ms | | | |",
        "| `cancel_job()` → final state, a running job on another host, grace 0 | p50 ≤ 100 ms + grace | 32.4 / 46.1 ms | 30.4 / 54.6 ms, 22.3 / 48.9 ms | 9.7 / 17.5 ms, 7.0 / 10.6 ms, 6.9 / 12.8 ms | | | yes |",
        "",
        "- **Warm start: missed**, by 44 to 50 ms at the p50; the idle fleet's start (34 to 45 ms) misses",
        "  the 20 ms too. A probe of the timeline after `4e9cfd9` (three chains of four no-op jobs, rows'",
        "  times on the database's clock, the jobs' stamps on the machine's, load average about 2.5) shows",
        "  where it goes. Each job submitted right after another was taken by that job's runner, which",
        "  first finished the job before: from a no-op's first line to its success recorded took 7 to 38",
        "  ms (the attempt's exit, then the output tail and the success, a compare-and-set with its events",
        "  row, written to PostgreSQL), and from there to the next job's first line 19 to 33 ms (the lock",
        "  released, the claim under the fleet's claim lock, `start_attempt`, the attempt's fork, the job's",
        "  import). The new job's wake-up started no runner of its own in these chains. An idle fleet's",
        "  start (six probes): the row is in about 2 ms after the call; Procrastinate starts the wake-up",
        "  task 4 to 10 ms later; from there to the warm claimer's `start_attempt` (the task's slot and due",
        "  counts, `go`, the claim) 13 to 31 ms, while the next warm claimer boots beside it on the same two",
        "  CPUs; then 8 to 22 ms to the job's first line. The local mode's warm spare starts a job in 16 to",
        "  22 ms (p50): it takes the job from its caller through a pipe, with no broker hop and no round",
        "  trips to a server. Right after another job the local mode misses too (57 to 81 ms): its spare",
        "  has not booted again yet, and a runner is spawned.",
        "- **Cancel: met**, with room: 22 to 32 ms at the p50, under 55 ms at the p90. The flag's NOTIFY",
        "  reaches the runner's listening connection; it sends SIGTERM, then SIGKILL at once (grace 0), and",
        "  records the cancel; the caller polls the row. 3x to 4.7x the local mode's cancel.",
        "- **Throughput** (no goal in the issue): 0.36x the local mode after `4e9cfd9`, 0.07x before it.",
        "  Before, each wake-up on a host that looked free (its `worker_slots` less its claimed rows) sent",
        "  its warm claimer and booted another, so the hosts started 439 to 535 runner processes for 1,000",
        "  jobs, up to 13 alive at once under a worker with 1 slot; a boot costs 176 to 239 ms of CPU (15x",
        "  to 19x `python -c pass`: an interpreter, bgjobs, psycopg, two connections), which made 178 to",
        "  190 ms of CPU per job, and the two CPUs the limit. After it, 3 to 9 runners ran the 1,000 jobs in",
        "  chains, and a job costs 39.7 ms of CPU: the runners and attempts 15 to 18 ms, PostgreSQL 9 to",
        "  10 ms, the three workers themselves 7 to 9 ms (Procrastinate fetches and acknowledges one wake-up",
        "  per job; the sweeps), the submits 3 to 4 ms; the local mode's is 11 to 14 ms.",
        "- Celery's prefork pool runs every task in the same long-lived processes (no isolation between",
        "  tasks): 3 to 6 ms to a task's first line, 361 to 449 tasks/s. With `--max-tasks-per-child=1`",
        "  (a process per task, as bgjobs has a process per attempt) it managed 6.6 to 9.0 tasks/s, and",
        "  its p90 to a task's first line was 2.6 to 3.1 s; the fleet after `4e9cfd9` did 5x its throughput.",
        "  bench_throughput.py's Celery row below is a pool of 2 (the CPU count), with 500 jobs.",
        "",
    ]


def rewrite_text(path: Path) -> int:
    """Put page_text() on the page at `path` in place of its fixed text."""
    old = path.read_text() if path.exists() else ""
    at = old.find("\n## Latest run\n")
    if at < 0:
        print(f"{path} has no '## Latest run' section: run the benchmarks instead", file=sys.stderr)
        return 2
    path.write_text("\n".join(page_text()) + old[at:])
    print(f"rewrote the text of {path}", file=sys.stderr)
    return 0


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # Stopping run_all (Ctrl-C, or SIGTERM; a shell's `&` ignores SIGINT) stops
    # the script it runs with SIGTERM, so that script's cleanup runs too.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer rounds (scripts that support it)")
    p.add_argument(
        "--only", metavar="NAMES", help="comma-separated parts of script names, e.g. launch,cancel"
    )
    p.add_argument("--label", help="a few words on what this run measures, e.g. 'after fix X'")
    p.add_argument(
        "--out", type=Path, default=DOC, help=f"the page to write (default {DOC.relative_to(REPO)})"
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds per script (default 1800)")
    p.add_argument(
        "--commit",
        default="HEAD",
        help="measure bgjobs/ and jobs/ as of this commit (default HEAD), from a snapshot",
    )
    p.add_argument(
        "--work-tree",
        action="store_true",
        help="measure a copy of the work tree as it is now instead of a commit",
    )
    p.add_argument(
        "--dev-venv",
        action="store_true",
        help="run in this venv (the code on PYTHONPATH) instead of a fresh venv with a "
        "regular install; then how this venv installs bgjobs affects every figure",
    )
    p.add_argument(
        "--rewrite-text",
        action="store_true",
        help="run nothing: rewrite the page's fixed text (above its runs) from this script, "
        "keeping its runs and sections as they are",
    )
    args = p.parse_args()
    if args.rewrite_text:
        return rewrite_text(args.out)

    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        scripts = [s for s in scripts if any(w in s.stem for w in wanted)]
    if not scripts:
        print("no bench/bench_*.py scripts matched", file=sys.stderr)
        return 2

    started = time.strftime("%Y-%m-%d %H:%M %Z")
    env = dict(os.environ)
    if args.work_tree:
        commit = git("rev-parse", "--short", "HEAD") or "unknown"
        dirty = git("status", "--porcelain", "--", "bgjobs", "jobs")
        what = f"a copy of the work tree at commit `{commit}`" + (
            " with uncommitted changes in bgjobs/ or jobs/" if dirty else ""
        )
    else:
        commit = git("rev-parse", "--short", args.commit) or args.commit
        subject = git("log", "-1", "--format=%s", args.commit)
        what = f"commit `{commit}` ({subject[:80]})"
    code_dir = snapshot(None if args.work_tree else args.commit)
    fingerprint = code_fingerprint(code_dir)
    env["BENCH_CODE_DIR"] = str(code_dir)
    python = sys.executable
    try:
        if args.dev_venv:
            code_line = f"- code: bgjobs/ and jobs/ of {what}, on PYTHONPATH in the development venv"
            environment = install_mode()
        else:
            try:
                py, peers = bench_venv(code_dir)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"!! could not build the bench venv ({exc}); use --dev-venv", file=sys.stderr)
                raise SystemExit(2) from None
            python = str(py)
            env["BENCH_INSTALLED"] = "1"
            code_line = f"- code: bgjobs/ and jobs/ of {what}"
            environment = (
                f"a fresh venv with that code installed as a regular package (as a user "
                f"has it), plus {peers}; the log and dashboard scripts run in the "
                "development venv"
            )
    except BaseException:
        shutil.rmtree(code_dir, ignore_errors=True)
        raise
    load0 = os.getloadavg()
    results = []
    try:
        for script in scripts:
            results.append(run_script(script, args.quick, args.timeout, env, python))
    finally:
        shutil.rmtree(code_dir, ignore_errors=True)
    load1 = os.getloadavg()
    command = (
        ["bench/run_all.py"]
        + (["--quick"] if args.quick else [])
        + (["--only", args.only] if args.only else [])
        + (["--work-tree"] if args.work_tree else [])
        + (["--dev-venv"] if args.dev_venv else [])
    )

    head = [
        f"**{started}**{' — ' + args.label if args.label else ''}",
        "",
        code_line + f"; code fingerprint `{fingerprint}`",
        f"- machine: {machine()}; shared with other work, so expect noise",
        f"- environment: {environment}",
        f"- load average (1 min): {load0[0]:.2f} before, {load1[0]:.2f} after",
        f"- `{' '.join(command)}`, {sum(r['seconds'] for r in results) / 60:.1f} minutes",
        "",
    ]
    run_block = "\n".join(head) + "\n" + summary(results)

    old = args.out.read_text() if args.out.exists() else ""
    earlier = earlier_runs(old)[:KEEP_EARLIER]
    doc = [
        *page_text(),
        "## Latest run",
        "",
        RUN_START,
        run_block.strip(),
        RUN_END,
        "",
    ]
    carried = old_sections(old)
    ran = {r["script"]: r for r in results}
    for script in sorted(set(ran) | ({s.name for s in HERE.glob("bench_*.py")} & set(carried))):
        if script in ran:
            doc.append(section(ran[script]))
        else:  # --only: keep what the last run of this script said
            body = re.sub(r"^_\(Not re-run.*?\)_\n\n", "", carried[script], flags=re.S)
            doc.append(f"## {script}\n\n_(Not re-run in the latest run; from an earlier run.)_\n\n{body}\n")
    if earlier:
        doc += ["## Earlier runs", "", "The summaries of the runs before this one, newest first.", ""]
        for block in earlier:
            doc += [RUN_START, block, RUN_END, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(doc).rstrip() + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if any(r["code"] != 0 for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
