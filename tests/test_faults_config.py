"""Faults in config.yaml: a config cannot be used to exhaust memory or disk.
Each is run through the real job-status, as an operator would meet it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from bgjobs.config import load_config
from bgjobs.errors import ConfigError
from tests.conftest import BIN

# "Billion laughs": each line holds nine copies of the line above, so these
# 546 bytes expand to 9**LEVELS (387 million) strings if the aliases are followed.
LEVELS = 9
BOMB = "allowed_classes:\n  - testjobs.tasks.Tasks\n" + "".join(
    f"x{n}: &a{n} [" + ", ".join([f"*a{n - 1}" if n else '"lol"'] * 9) + "]\n" for n in range(LEVELS)
)


def job_status(root: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, BGJOBS_CONFIG=str(config), BGJOBS_CACHE_DIR=str(root / "cache"))
    return subprocess.run(
        [str(BIN / "job-status"), *args], env=env, cwd=root, capture_output=True, text=True, timeout=60
    )


def cache_bytes(root: Path) -> int:
    folder = root / "cache"
    return sum(f.stat().st_size for f in folder.iterdir()) if folder.exists() else 0


@pytest.mark.timeout(60)  # followed, the aliases would take minutes and gigabytes
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(BOMB)
    assert len(BOMB) < 2048
    proc = job_status(tmp_path, config)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr == (
        f"error: {config}, line 4: YAML aliases (*a0) are not allowed in a bgjobs config; write the value out\n"
    )
    assert cache_bytes(tmp_path) == 0


def test_any_alias_is_refused_even_a_harmless_one(tmp_path, monkeypatch):
    monkeypatch.setenv("BGJOBS_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "config.yaml"
    config.write_text(
        "retry_delay: &delay 5\ncancel_grace: 10\nallowed_classes:\n  - class: jobs.a.A\n    retry_delay: *delay\n"
    )
    with pytest.raises(ConfigError, match=r"config\.yaml, line 5: YAML aliases \(\*delay\) are not allowed"):
        load_config(config)
    # An anchor alone, or a '*' inside a string, is no alias.
    config.write_text("retry_delay: &delay 5\nallowed_classes: ['jobs.a.A']\nlog_dir: 'logs*'\n")
    assert load_config(config).defaults.retry_delay == 5.0


def test_a_config_that_fails_validation_is_not_cached(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"allowed_classes": ["jobs.a.A"], "max_retries": "many"}))
    proc = job_status(tmp_path, config)
    assert proc.returncode == 2
    assert "key 'max_retries' must be a whole number" in proc.stderr
    assert cache_bytes(tmp_path) == 0
    config.write_text(yaml.safe_dump({"allowed_classes": ["jobs.a.A"], "max_retries": 2}))
    proc = job_status(tmp_path, config)
    assert proc.returncode == 0, proc.stderr
    assert cache_bytes(tmp_path) > 0  # a good one is


def test_an_oversized_config_is_refused_before_it_is_parsed(tmp_path):
    config = tmp_path / "config.yaml"
    with config.open("w") as f:
        f.write("allowed_classes:\n")
        f.writelines(f"  - jobs.many.Class{i}\n" for i in range(60_000))  # about 1.4 MB
    proc = job_status(tmp_path, config)
    assert proc.returncode == 2
    assert "config is larger than 1024 KB" in proc.stderr
    assert cache_bytes(tmp_path) == 0


def test_an_integer_too_long_to_convert_is_a_config_error(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("max_retries: " + "9" * 5000 + "\n")
    proc = job_status(tmp_path, config)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {config}: malformed YAML: ")
    assert "Traceback" not in proc.stderr
