"""Launching a job: job-run and the Python API, their output and exit codes, and job-status."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import BIN
from tests.overlap import peak_concurrency
from tests.programs import run_program


def test_job_run_prints_id_and_job_succeeds(project):
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--params=hello", check=True)
    job_id = int(proc.stdout.strip())
    job = project.wait_final(job_id)
    assert job.status.value == "succeeded"
    assert json.loads(job.result) == "hello"
    assert project.events(job_id) == ["queued", "started", "succeeded"]


def test_wait_exit_codes_and_json(project):
    ok = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--wait", "--json")
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["status"] == "succeeded" and isinstance(body["id"], int)
    bad = project.cli("job-run", "testjobs.tasks.Tasks", "fail", "--wait")
    assert bad.returncode == 1
    assert "failed" in bad.stdout


def test_wait_timeout_gives_up_with_exit_6_and_the_job_runs_on(project):
    slow = project.cli(
        "job-run", "testjobs.tasks.Tasks", "sleep", "--params=30", "--wait", "--wait-timeout=0.3"
    )
    assert slow.returncode == 6, slow.stderr
    assert slow.stderr.count("\n") == 1 and "runs on" in slow.stderr and "job-cancel" in slow.stderr
    job_id = int(slow.stderr.split()[2])  # "error: job N is still ..."
    assert project.wait_status(job_id, "running").status.value == "running"
    project.cli("job-cancel", str(job_id), check=True)
    misuse = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--wait-timeout=5")
    assert misuse.returncode == 2 and misuse.stderr.count("\n") == 1 and "--wait" in misuse.stderr


def test_python_api_with_class_object(project):
    from testjobs.tasks import Tasks

    from bgjobs import run_background_job

    job_id = run_background_job(Tasks, "ok", "param1", config=project.config_path)
    assert isinstance(job_id, int)
    assert project.wait_final(job_id).status.value == "succeeded"


def test_async_method_runs_with_asyncio(project):
    job_id = project.submit("async_ok", "21")
    job = project.wait_final(job_id)
    assert job.status.value == "succeeded" and job.result == "42"


def test_output_goes_to_per_job_file(project):
    job_id = project.submit("print_lines", 3)
    project.wait_final(job_id)
    text = (project.root / "logs" / "jobs" / f"{job_id}.out").read_text()
    assert "line 0\nline 1\nline 2\n" in text and "to stderr" in text


def test_inherited_method_from_a_listed_class_base_is_allowed(project):
    job_id = project.submit("inherited")
    assert project.wait_final(job_id).status.value == "succeeded"


def test_static_method_runs(project):
    job_id = project.submit("static_ok")
    assert project.wait_final(job_id).result == '"static"'


def test_job_survives_the_callers_exit(project, tmp_path):
    marker = tmp_path / "started.jsonl"
    proc = run_program(project, "launch_and_exit", project.config_path, marker, timeout=30)
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout)
    # The caller is gone; the job still runs to the end.
    assert project.wait_final(job_id).status.value == "succeeded"
    assert marker.exists()


@pytest.mark.slow
def test_fifty_concurrent_job_runs(project):
    project.write_config(max_concurrent=4)

    def launch(i):
        return project.cli("job-run", "testjobs.tasks.Tasks", "ok", f"--params=v{i}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        procs = list(pool.map(launch, range(50)))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs if p.returncode]
    ids = [int(p.stdout) for p in procs]
    assert len(set(ids)) == 50
    for job_id in ids:
        assert project.wait_final(job_id, timeout=60).status.value == "succeeded"
    records = project.records()  # every line parses
    assert sum(r["event"] == "succeeded" for r in records) == 50
    # Within the limit all along, by the jobs' own timestamps (each inside its slot).
    jobs = [project.job(job_id) for job_id in ids]
    assert peak_concurrency((job.started_at, job.finished_at) for job in jobs) <= 4


def test_job_status_table_and_json(project):
    job_id = project.submit("ok", "x")
    project.wait_final(job_id)
    table = project.cli("job-status", check=True).stdout
    assert "Tasks.ok" in table and "succeeded" in table
    body = json.loads(project.cli("job-status", str(job_id), "--json", check=True).stdout)
    for key in (
        "id",
        "status",
        "class",
        "method",
        "params",
        "attempts",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ):
        assert key in body
    assert body["params"] == ["x"] and body["attempts"] == 1
    missing = project.cli("job-status", "999")
    assert missing.returncode == 3 and "no job 999" in missing.stderr


def test_help_is_complete(project):
    for cmd, words in {
        "job-run": [
            "--params",
            "--priority",
            "--delay",
            "--at",
            "--max-retries",
            "--retry-delay",
            "--timeout",
            "--wait",
            "--json",
            "--config",
            "exit codes",
        ],
        "job-status": ["--json", "--config", "--status", "exit codes"],
        "job-cancel": ["--grace", "--json", "--config", "exit codes"],
    }.items():
        out = project.cli(cmd, "--help", check=True).stdout
        for word in words:
            assert word in out, f"{cmd} --help lacks {word}"


def test_unwritable_log_does_not_kill_the_job(project):
    logs = project.root / "logs"
    logs.mkdir()
    (logs / "background_jobs.log").mkdir()  # a directory where the file should be
    job_id = project.submit("ok")
    assert project.wait_status(job_id, "succeeded", "failed").status.value == "succeeded"


@pytest.mark.parametrize("script", ["job-run", "job-status", "job-cancel", "job-logs"])
def test_an_error_without_stderr_never_lands_on_stdout(project, script):
    """Python's sys.stderr is None with fd 2 closed, and print(file=None) writes to
    stdout: in `id=$(job-run ... 2>&-)` the error would pass for the job's id."""
    args = {
        "job-run": "jobs.example.Nope handle",
        "job-status": "999",
        "job-cancel": "999",
        "job-logs": "999",
    }[script]
    proc = subprocess.run(
        f"{BIN / script} {args} 2>&-",
        shell=True,
        env=project.env,
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and proc.stdout == "", proc.stdout
