"""Run every benchmark (bench/bench_*.py) and collect their tables into
docs/benchmarks.md.

    .venv/bin/python bench/run_all.py            # every script, full rounds
    .venv/bin/python bench/run_all.py --quick    # fewer rounds
    .venv/bin/python bench/run_all.py --only launch,cancel --label "after the lazy-import fix"

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

A peer that is missing is skipped with a note in its table.
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
    subprocess.run([*pip, str(code)], check=True, cwd=code.parent)
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
    args = p.parse_args()

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
        "### Where a goal was missed or is close, and the floor under it",
        "",
        "Each script also measures a *floor*: the same shape of work with no bgjobs code, in the",
        "same run (the `(info) the floor ...` rows). Where a goal is missed, the floor says how",
        "much of the gap is Python itself.",
        "",
        "- **2, from `job-run`: met since session 7, with a margin the machine's load can eat.**",
        "  With a spawned spare runner, whose boot was the critical path, this was 4.3x to 4.7x; with",
        "  job-run's runner a fork of job-run (docs/architecture.md, departure 6), 3.2x to 3.8x. What",
        "  was left was imports, on both sides of the fork: the `re` that pip's console-script",
        "  wrapper imported before 25.2, `enum` (for `Status`) and `collections` (for the named",
        "  tuples), and the `functools` that `_sqlite3` imports for one function. None of them is on",
        "  job-run's path now (docs/architecture.md, the start-up budget, and departure 7): the full",
        "  runs of session 7 measured 2.40x, 2.47x and 2.60x (46.5 ms against 19.4 ms; 72.8 ms",
        "  against 29.4 ms and 62.1 ms against 23.9 ms on a busier machine), 2.2x to 2.6x by the",
        "  per-round median. job-run's path uses both CPUs (job-run checks the call while its fork",
        "  opens the store), so a busy machine slows it more than the one-process baseline: A/B",
        "  rounds at a load average of 1.5 on 2 CPUs measured 2.5x to 3.15x. The floor of that shape",
        "  (`the floor for 2 from a command`: an interpreter with the standard modules forks a",
        "  runner, which forks the attempt, which runs the job, with `_sqlite3` imported as bgjobs",
        "  imports it) is about 1.5x to 1.6x; above it are bgjobs' own modules and, in series once",
        "  the call is checked, the insert, the claim, the attempt's fork and the job's import.",
        "- **1 and 4, the console scripts: met.** A console script needs SQLite, `_json`, `_signal`",
        "  and fcntl before any bgjobs code (`the floor for 1 and 4`; job-run's own process does",
        "  not open the store, so it needs less). No console script imports json, argparse or",
        "  signal for a plain command line (docs/architecture.md, the start-up budget). bgjobs' own",
        "  modules and the work add the rest, and to job-cancel a cancel's round trip (the runner",
        "  forwards the signal, the job notices it, the runner records the outcome).",
        "- **5, memory: met, by RSS and by USS.** A sleeping interpreter with only the runner's",
        "  standard modules and an open database is about 1.2x a bare one (the floor row); the",
        "  runner is about 1.33x to 1.34x. By USS (the pages only the runner holds), the stricter",
        "  row of our own, it is about 1.44x; it was 1.65x while the runner imported enum,",
        "  functools and collections.",
        "",
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
