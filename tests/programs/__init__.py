"""Child programs the tests run as real files: `python tests/programs/NAME.py ARGS`.

Each program takes what it needs as arguments (no code is built from strings).
One that injects a fault says which, in a comment, and does it through a public
hook of bgjobs (it wraps a public module attribute such as `bgjobs.fork.send`),
never by rebinding a private name. Files named `store_*` and `fault*` are for
the fault tests; the job modules here (`probejobs.py`, `slowjobs.py`) are copied
into a test project rather than run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent


def program(name: str) -> Path:
    """The path of program `name` (its file name without `.py`); it must exist."""
    path = PROGRAMS / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"no program {path}")
    return path


def run_program(
    project, name: str, *args: object, timeout: float = 60, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run program `name` with `args` (each as str) in a fresh interpreter, in
    `project`'s directory and environment (or in `env`); wait for it to exit."""
    return subprocess.run(
        [sys.executable, str(program(name)), *map(str, args)],
        env=project.env if env is None else env,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
