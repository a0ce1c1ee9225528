"""The config a launch reads: bad files, the --config flag, relative paths, the parse cache."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import BIN
from tests.programs import run_program


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_retries: [1\n", "line 2 column 1: malformed YAML: did not find expected ',' or ']'"),
        ("retry_delay: -1\n", "'retry_delay'"),
        ("retry_delay: .nan\n", "'retry_delay'"),
        ("retry_delay: fast\n", "'retry_delay'"),
        ("max_retries: 1.5\n", "'max_retries'"),
        ("colour: blue\n", "unknown key 'colour'"),
        ("allowed_classes: jobs.X\n", "'allowed_classes'"),
        ("allowed_classes:\n  - {class: a.B, retries: 2}\n", "unknown key 'allowed_classes[0].retries'"),
        ("- just\n- a list\n", "top level must be a mapping"),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(project, text, message):
    project.config_path.write_text(text)
    for cmd in (["job-run", "testjobs.tasks.Tasks", "ok"], ["job-status"]):
        proc = project.cli(*cmd)
        assert proc.returncode == 2
        assert str(project.config_path) in proc.stderr and message in proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr  # one line, like every refusal
    assert not (project.root / "state" / "jobs.sqlite3").exists()


def test_missing_config_and_config_flag(project, tmp_path):
    proc = project.cli("job-status", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "no such config file" in proc.stderr
    proc = project.cli("job-status", "--config", str(project.config_path))
    assert proc.returncode == 0


def test_relative_paths_resolve_against_config_folder(project, tmp_path):
    project.write_config(log_dir="mylogs", state_dir="mystate")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = project.env
    proc = subprocess.run(
        [str(BIN / "job-run"), "testjobs.tasks.Tasks", "ok", "--wait"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (project.root / "mylogs" / "background_jobs.log").exists()
    assert (project.root / "mystate" / "jobs.sqlite3").exists()
    assert not (elsewhere / "mylogs").exists()


def test_parsed_config_is_cached_until_the_file_changes(project, tmp_path, monkeypatch):
    env = dict(project.env, BGJOBS_CACHE_DIR=str(tmp_path / "cache"))

    def load():
        proc = run_program(project, "config_cache", project.config_path, env=env)
        return proc.stdout.split(), proc

    assert load()[0] == ["8", "True"]  # parsed, and cached
    assert load()[0] == ["8", "False"]  # from the cache: PyYAML not even imported
    project.write_config(max_concurrent=3)
    assert load()[0] == ["3", "True"]  # the file changed: parsed again
    project.config_path.write_text("max_concurrent: [\n")
    out, proc = load()
    assert proc.returncode != 0 and "malformed YAML" in proc.stderr
