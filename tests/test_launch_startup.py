"""Start-up imports: what job-run, job-cancel and a runner load before the job's first line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.conftest import BIN
from tests.programs import program, run_program


def test_core_does_not_import_pandas_or_streamlit(project):
    proc = run_program(project, "core_imports")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Modules the hot paths (job-run, job-cancel, the runner up to the job's first
# line) have no use for: the heavy ones, and those only some commands need.
# (The core imports the standard library plainly: json, enum, typing, signal,
# threading and, at its first connection, sqlite3 are loaded.)
NOT_AT_START_UP = [
    "pathlib",
    "zlib",
    "getpass",
    "runpy",
    "yaml",
    "traceback",
    "inspect",
    "dataclasses",
    "shutil",
    "subprocess",
    "asyncio",
    "pandas",
    "streamlit",
    "pyarrow",
    "argparse",
    "gettext",
]
# And what job-run's own process must not load either: it never opens the store
# (its forked runner does).
NOT_IN_JOB_RUN = ["_sqlite3"]


def test_start_up_imports_stay_lean(project):
    # A job that lists what its process had loaded before the job's module.
    shutil.copy(program("probejobs"), project.root / "testjobs" / "probe.py")
    project.write_config(allowed_classes=["testjobs.probe.Probe", "testjobs.tasks.Tasks"])
    # What bgjobs adds, not what this interpreter loads anyway (a setuptools
    # editable install, say, imports pathlib in every interpreter of its venv).
    at_start = set(run_program(project, "loaded_modules").stdout.split())
    ours = [name for name in NOT_AT_START_UP if name not in at_start]
    # The runner, as a job sees it on its first line (the attempt is the runner's
    # fork): one the API spawns, and job-run's, a fork of job-run.
    job = project.wait_final(project.submit("loaded", ours, cls="testjobs.probe.Probe"))
    assert job.status.value == "succeeded", job.error
    assert json.loads(job.result) == []
    job_id = int(
        project.cli(
            "job-run", "testjobs.probe.Probe", "loaded", f"--params={json.dumps(ours)}", check=True
        ).stdout
    )
    job = project.wait_final(job_id)
    assert job.status.value == "succeeded", job.error
    assert json.loads(job.result) == []
    # job-run and job-cancel as installed, with every module each one imports
    # listed by -X importtime.
    for args in (["job-run", "testjobs.probe.Probe", "loaded", "--params=[]"], ["job-cancel", str(job_id)]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", str(BIN / args[0]), *args[1:]],
            env=project.env,
            cwd=project.root,
            capture_output=True,
            text=True,
        )
        lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
        imported = {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # [0] is the header
        assert "bgjobs.cli.common" in imported, proc.stderr
        assert sorted(set(ours) & imported) == [], (args, (BIN / args[0]).read_text())
        if args[0] == "job-run":
            assert sorted(set(NOT_IN_JOB_RUN) & imported - at_start) == [], imported
