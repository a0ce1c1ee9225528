"""job-run's runner, a fork of job-run: its title, session and environment, and what
happens when the fork fails at each step (the programs in tests/programs/fork_*.py
inject those faults).

These tests read the store without dispatching (project.wait_status dispatches),
so that only job-run, its runner and the waker can start a job."""

from __future__ import annotations

import json
import os
import subprocess
import time

import psutil
import pytest

from bgjobs import api
from bgjobs.config import load_config
from bgjobs.executor import RUNNER_CODE
from tests.conftest import BIN, wait_until
from tests.programs import run_program


def _status(project, job_id: int) -> str:
    return project.job(job_id).status.value


def _running(project, job_id: int):
    return wait_until(lambda: (j := project.job(job_id)).pid and j, what="the attempt to start")


def test_job_run_forks_its_runner_and_titles_it_without_the_params(project, tmp_path):
    secret = f"--params={tmp_path / 'hunter2-not-for-ps'}"
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "record_start", secret, "--params=30", check=True)
    job_id = int(proc.stdout)
    job = _running(project, job_id)  # job-run has exited; its output was not held open
    runner, attempt = psutil.Process(job.runner_pid), psutil.Process(job.pid)
    assert RUNNER_CODE not in runner.cmdline()  # forked, not spawned: no interpreter booted
    for p in (runner, attempt):  # the runner and its attempt, as ps and top show them
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            assert f.read() == f"bgjobs.runner {job_id}\0".encode()
        assert p.name() == "bgjobs.runner"
    # Its own session, out of job-run's (and so out of a terminal's reach).
    assert os.getsid(runner.pid) == runner.pid != os.getsid(0)
    api.cancel_job(job_id, grace=0.5, config=project.config_path)


def _job_run(project, *args: str, env: dict | None = None, shell_redirect: str = "") -> str:
    """job-run's stdout, run with `env` added (and, through sh, a redirection such as `<&-`)."""
    argv = [str(BIN / "job-run"), *args]
    if shell_redirect:
        argv = ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", *argv]
    # `env` first: what comes after a variable the fork erases must still be read.
    proc = subprocess.run(
        argv, env={**(env or {}), **project.env}, cwd=project.root, capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


def test_job_runs_forked_runner_gets_a_runners_environment(project, tmp_path):
    out, proc_out = tmp_path / "env.json", tmp_path / "proc-environ.json"
    secrets = {"BGJOBS_DASHBOARD_PASSWORD": "hunter2", "BGJOBS_LOCK_FD": "9"}
    job_id = int(_job_run(project, "testjobs.tasks.Tasks", "dump_env", f"--params={out}", env=secrets))
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the job to run")
    names = json.loads(out.read_text())
    assert "BGJOBS_DASHBOARD_PASSWORD" not in names and "BGJOBS_LOCK_FD" not in names
    assert "BGJOBS_CONFIG" in names  # as a spawned runner's
    # Nor in the environment /proc shows (and `ps e`): what job-run started with,
    # in memory the fork and its attempt inherit.
    job_id = int(
        _job_run(project, "testjobs.tasks.Tasks", "dump_proc_environ", f"--params={proc_out}", env=secrets)
    )
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the job to run")
    seen = json.loads(proc_out.read_text())
    assert set(seen) == {"attempt", "runner"}
    for environ in seen.values():
        assert "hunter2" not in environ and "BGJOBS_DASHBOARD_PASSWORD" not in environ
        # Read as psutil reads it, to the first empty entry: nothing after the
        # erased one is hidden.
        entries = environ.split("\0")
        entries = entries[: entries.index("")] if "" in entries else entries
        assert f"BGJOBS_CONFIG={project.config_path}" in entries


def test_job_run_forks_with_a_standard_fd_closed_and_exits_cleanly_without_stdout(project):
    # A pipe made while fd 0 is closed takes it; the fork keeps its pipes above 2.
    job_id = int(_job_run(project, "testjobs.tasks.Tasks", "sleep", "--params=30", shell_redirect="<&-"))
    job = _running(project, job_id)
    assert psutil.Process(job.runner_pid).name() == "bgjobs.runner"  # forked, not the fallback
    api.cancel_job(job_id, grace=0.5, config=project.config_path)
    # Without stdout or stderr, Python's stream is None: job-run opens one on its
    # fd before it forks, and the fork runs the job (whose output still goes to
    # its file), not lost and retried.
    for closed in (">&-", "2>&-"):
        out = _job_run(project, "testjobs.tasks.Tasks", "print_lines", "--wait", shell_redirect=closed)
        job = api.list_jobs(config=project.config_path, refresh=False)[0]
        assert out == ("" if closed == ">&-" else f"{job.id} succeeded\n")
        assert job.status.value == "succeeded" and job.attempt == 1
        assert "line 0" in (project.root / "logs" / "jobs" / f"{job.id}.out").read_text()
    assert "lost" not in {r["event"] for r in project.records()}


def test_job_run_of_a_delayed_job_leaves_it_to_the_waker(project, tmp_path):
    marker = tmp_path / "starts.jsonl"
    before = time.time()
    proc = project.cli(
        "job-run", "testjobs.tasks.Tasks", "record_start", f"--params={marker}", "--delay=1", check=True
    )
    job_id = int(proc.stdout)
    # The fork records it, finds nothing due, dispatches (which starts the waker) and exits.
    wait_until(lambda: _status(project, job_id) == "succeeded", 15, what="the delayed job to run")
    assert json.loads(marker.read_text().splitlines()[0])["t"] >= before + 1


def test_a_refused_job_run_leaves_its_fork_to_exit_with_nothing_done(project):
    db = load_config(project.config_path).db_path
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "_private")
    assert proc.returncode == 2 and "private" in proc.stderr
    wait_until(lambda: project.processes() == [], what="job-run's fork to exit")
    assert not os.path.exists(db)  # the fork opens the store only if there is one already
    assert api.list_jobs(config=project.config_path, refresh=False) == []
    project.wait_final(project.submit("ok"))  # now there is one
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "_private")
    assert proc.returncode == 2
    wait_until(lambda: project.processes() == [], what="job-run's fork to exit")
    assert len(api.list_jobs(config=project.config_path, refresh=False)) == 1


def _running_in_a_spawned_runner(project, proc):
    """The job whose id `proc` printed last, once it runs, in a runner spawned for it."""
    assert proc.returncode == 0, proc.stderr
    job = _running(project, int(proc.stdout.split()[-1]))
    assert psutil.Process(job.runner_pid).cmdline()[1:] == ["-c", RUNNER_CODE, str(job.id)]
    return job


def _single_job(project, proc) -> int:
    """The id job-run printed, once it has run; the only row in the store."""
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout)  # one id, once: no second job-run printed one
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the job to run after all")
    assert [job.id for job in api.list_jobs(config=project.config_path, refresh=False)] == [job_id]
    return job_id


@pytest.mark.parametrize("error", ["OSError", "ImportError"])
def test_a_fork_that_fails_before_it_starts_exits_and_never_acts_as_job_run(project, error):
    # An error in the child before the runner's code has begun (an OSError would
    # even look like a failed fork to fork_runner): the child must exit, never go
    # on in job-run's code, where it would record the job a second time.
    _single_job(project, run_program(project, "fork_fails_before_start", error))


@pytest.mark.parametrize("dies", ["before its commit", "after its commit"])
def test_a_fork_that_dies_around_its_insert_leaves_one_job_that_runs(project, dies):
    # The fork sends the row's id before its commit and the row after it. If it
    # dies in between, job-run finds the row if it was committed (and
    # dispatches it), or records the job itself: never twice, never not at all.
    nth = 1 if dies == "before its commit" else 2  # fork.send: 1 the id, 2 the row
    _single_job(project, run_program(project, "fork_dies_around_insert", nth))


def test_a_fork_that_dies_before_its_commit_never_lends_its_id_to_another_launch(project):
    # The id the fork sent was rolled back with its insert, and another launch
    # got it before job-run looked: that row is not job-run's, which records its own.
    proc = run_program(project, "fork_id_lent_to_another_launch")
    assert proc.returncode == 0, proc.stderr
    (_, other), (mine,) = (line.split() for line in proc.stdout.splitlines())
    assert other != mine
    wait_until(lambda: _status(project, int(mine)) == "succeeded", what="job-run's own job to run")
    assert project.job(int(mine)).result == '"mine"' and project.job(int(other)).params == ("other",)


def test_a_fork_that_fails_after_its_claim_requeues_the_job_for_a_spawned_runner(project):
    # job-run has printed the id and gone: the job must neither wait for the
    # next command's dispatch nor be found lost and retried.
    job_id = _single_job(project, run_program(project, "fork_title_fails_after_claim"))
    assert project.job(job_id).attempt == 1
    assert "lost" not in {r["event"] for r in project.records()}


def test_a_fork_that_reads_the_config_differently_records_nothing(project):
    # The file changed between job-run's read and the fork's: job-run records.
    proc = run_program(project, "fork_reads_config_differently", project.config_path)
    job = _running_in_a_spawned_runner(project, proc)
    assert len(api.list_jobs(config=project.config_path, refresh=False)) == 1
    api.cancel_job(job.id, grace=0.5, config=project.config_path)


def test_job_run_records_and_dispatches_itself_when_its_fork_is_gone(project):
    proc = run_program(project, "fork_killed_before_launch")
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout.split()[-1])
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the job to run after all")
    assert project.job(job_id).result == '"fallback"'


def test_where_the_title_cannot_be_set_the_job_goes_to_a_spawned_runner(project):
    # As if the kernel refused the write to /proc/self/mem: ps would show the
    # params for the job's whole life, so the fork hands the job on.
    job = _running_in_a_spawned_runner(project, run_program(project, "fork_cannot_set_title"))
    api.cancel_job(job.id, grace=0.5, config=project.config_path)


def test_job_run_with_a_second_thread_does_not_fork(project):
    proc = run_program(project, "fork_with_second_thread")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None"


def test_a_job_run_started_with_sigchld_ignored_still_sees_its_job_succeed(project):
    # An ignored SIGCHLD is inherited across exec; a runner that kept it would
    # find its attempt already reaped, and take a succeeded job for lost.
    proc = run_program(project, "job_run_sigchld_ignored", BIN / "job-run")
    assert proc.returncode == 0, proc.stderr
    job_id, status = proc.stdout.split()
    assert status == "succeeded" and project.job(int(job_id)).attempt == 1


def test_job_run_wait_reaps_a_fork_that_is_done_before_the_job(project):
    # A delayed job: the fork records it and exits; job-run waits on.
    proc = subprocess.Popen(
        [str(BIN / "job-run"), "testjobs.tasks.Tasks", "ok", "--delay=3", "--wait"],
        env=project.env,
        cwd=project.root,
        stdout=subprocess.PIPE,
        text=True,
    )
    job_run = psutil.Process(proc.pid)
    wait_until(lambda: job_run.children(), what="job-run's fork")
    wait_until(lambda: job_run.children() == [], what="the fork to be reaped, not left a zombie")
    assert proc.poll() is None  # job-run still waits
    assert proc.communicate(timeout=30)[0].split()[1] == "succeeded"
