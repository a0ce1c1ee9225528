"""The README documents every command, exit code and config key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bgjobs import errors
from bgjobs.config import _TOP_KEYS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_every_console_script_is_documented():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"job-run", "job-status", "job-cancel", "job-logs", "job-worker"}
    for name in scripts:
        assert f"`{name} " in README, f"{name} is not in the README's CLI table"


def test_every_exit_code_is_documented():
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    table = re.findall(r"^\| (\d+) \|", README, re.M)
    assert codes == {int(c) for c in table}


def test_every_config_key_is_documented():
    for key in _TOP_KEYS:
        assert f"`{key}`" in README, f"config key {key} is not in the README"


def test_quick_start_has_exactly_two_commands():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    commands = [line for line in block.splitlines() if line.strip()]
    assert commands == ["python3 dev.py start", "python3 dev.py test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("python3 dev.py test")


def test_the_library_example_runs_as_printed(project):
    """The README's "As a library" block, verbatim, in a throwaway project that
    allows the example job: it must run to the end and print what it says."""
    block = README.split("## As a library", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    project.write_config(allowed_classes=["jobs.example.ExampleJob"])
    proc = project.python(block, timeout=60)
    assert proc.returncode == 0, proc.stderr
    expected = [line.split("# ", 1)[1] for line in block.splitlines() if line.startswith("print(")]
    assert proc.stdout.splitlines() == [e.split(" (", 1)[0] for e in expected]
