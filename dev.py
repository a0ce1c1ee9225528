#!/usr/bin/env python3
"""Set everything up, then start the dashboard or run the tests.

    python3 dev.py start     # venv + deps, then the Streamlit dashboard
    python3 dev.py test      # venv + deps (and Chromium, as root), then the whole test suite

Needs only python3 (3.11+). Dependencies go to .venv/, reinstalled when
requirements.txt or pyproject.toml change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".bgjobs-deps"
# pip 25.2 and later write console-script wrappers that do not import `re`; the
# older wrapper's `import re` cost every job-run, job-cancel and job-status about
# 5 ms before bgjobs' first line (docs/architecture.md, the start-up budget).
PIP = "pip>=25.2"


def _deps_hash() -> str:
    h = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    h.update(PIP.encode())
    return h.hexdigest()


def setup() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs on any python3
        sys.exit(f"bgjobs needs Python 3.11 or later; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    want = _deps_hash()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    print("installing dependencies into .venv ...", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, PIP], check=True, cwd=ROOT)  # first: it writes the console scripts
    subprocess.run([*pip, "-r", str(ROOT / "requirements.txt")], check=True, cwd=ROOT)
    # Again, as a plain path entry: setuptools' default editable mode installs an
    # import hook that every interpreter in the venv (each job-run, each runner)
    # pays for at start-up.
    compat = ["--no-deps", "--force-reinstall", "-e", str(ROOT), "--config-settings", "editable_mode=compat"]
    subprocess.run([*pip, *compat], check=True, cwd=ROOT)
    STAMP.write_text(want)


def compile_sources() -> None:
    """Write bytecode for our own code up front: with PYTHONDONTWRITEBYTECODE set
    (as in some sandboxes and CI), every job-run and runner would otherwise
    recompile whatever changed since the last cache."""
    subprocess.run(
        [str(BIN / "python"), "-m", "compileall", "-q", "bgjobs", "jobs"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=False,
    )


def ensure_chromium() -> None:
    """The end-to-end test drives Debian's Chromium. Install it where we can (as
    root, with apt-get); elsewhere that one test skips and says why."""
    import shutil

    if shutil.which("chromium"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("chromium is not installed (apt-get install chromium): the browser test will skip")
        return
    print("installing chromium for the browser test ...", flush=True)
    quiet = {"stdout": subprocess.DEVNULL}
    subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, **quiet)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    if command not in ("start", "test", "setup"):
        print(__doc__)
        return 2
    setup()
    compile_sources()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.setdefault("BGJOBS_CONFIG", str(ROOT / "config.yaml"))
    if command == "setup":
        return 0
    if command == "test":
        ensure_chromium()
        args = [str(BIN / "python"), "-m", "pytest", *argv[1:]]
    else:
        args = [str(BIN / "streamlit"), "run", str(ROOT / "dashboard.py"), *argv[1:]]
    os.chdir(ROOT)
    os.execve(args[0], args, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
