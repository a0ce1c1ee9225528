"""The code stays as pyproject.toml's ruff settings want it (STYLE.md, point 8)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF = Path(sys.executable).with_name("ruff")  # installed by requirements.txt, at a pinned minor


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff_is_clean(args):
    if not RUFF.exists():
        pytest.skip(f"ruff is not installed next to {sys.executable} (python3 dev.py test installs it)")
    proc = subprocess.run([RUFF, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"ruff {' '.join(args)} (run it to see, or `ruff format .` to fix):\n{proc.stdout}{proc.stderr}"
    )
