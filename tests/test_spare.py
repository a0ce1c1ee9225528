"""The Python API's warm spare: a runner booted ahead of a process's next launch, which
takes that launch's job at once (bgjobs.spare)."""

from __future__ import annotations

import json
import os
import signal

import psutil
import pytest

from bgjobs import api
from bgjobs import spare as spares
from bgjobs.config import load_config
from bgjobs.executor import RUNNER_CODE
from bgjobs.spare import SPARE_CODE
from tests.conftest import gone_or_zombie, wait_until
from tests.programs import run_program


def _status(project, job_id: int) -> str:
    return project.job(job_id).status.value


def _ready_spare() -> int:
    return wait_until(lambda: spares.warm_spare_pid(ready=True), what="a warm spare to boot")


def _launch_twice(project) -> None:
    """A process keeps a warm spare from its second launch on."""
    for word in ("first", "second"):
        project.wait_final(project.submit("ok", word))


def test_the_api_keeps_a_warm_spare_that_runs_the_next_launch(project):
    _launch_twice(project)
    spare = _ready_spare()
    assert psutil.Process(spare).cmdline()[1:] == ["-c", SPARE_CODE]
    # Nobody else may take the job first: a runner looking for its next job, or
    # the waker's tick (both gone soon after the earlier jobs are done). The idle
    # spare is not listed: it has not entered the project yet.
    wait_until(lambda: project.processes() == [], what="the earlier runners and the waker to exit")
    job_id = project.submit("sleep", 30)
    job = wait_until(lambda: (j := project.job(job_id)).pid and j, what="the job to start")
    assert job.runner_pid == spare  # the spare became its runner
    new = _ready_spare()
    assert new != spare  # and a new one boots for the launch after


def test_a_warm_spare_gives_the_job_the_callers_environment_of_now(project, tmp_path, monkeypatch):
    _launch_twice(project)
    _ready_spare()  # booted with the environment of then
    monkeypatch.setenv("BGJOBS_SET_LATER", "yes")
    monkeypatch.setenv("BGJOBS_DASHBOARD_PASSWORD", "hunter2")
    out = tmp_path / "env.json"
    project.wait_final(project.submit("dump_env", str(out)))
    names = json.loads(out.read_text())
    assert "BGJOBS_SET_LATER" in names and "BGJOBS_DASHBOARD_PASSWORD" not in names


def test_a_warm_spare_with_no_free_slot_takes_nothing_and_stays(project):
    _launch_twice(project)
    blocker = project.fill_slots()
    spare = _ready_spare()
    job_id = project.submit("ok", "later")
    assert project.job(job_id).status.value == "queued"
    assert spares.warm_spare_pid() == spare  # it answered idle, and waits for the next launch
    api.cancel_job(blocker, config=project.config_path)
    assert project.wait_final(job_id).status.value == "succeeded"


def test_a_dead_warm_spare_is_replaced_and_the_launch_still_runs(project):
    _launch_twice(project)
    spare = _ready_spare()
    os.kill(spare, signal.SIGKILL)
    wait_until(lambda: gone_or_zombie(spare), what="the spare to die")
    job_id = project.submit("ok", "after")
    assert project.wait_final(job_id).status.value == "succeeded"
    assert project.job(job_id).runner_pid != spare
    assert _ready_spare() != spare


def test_warm_spare_false_keeps_none(project):
    project.write_config(warm_spare=False)
    before = spares.warm_spare_pid()  # one per process: an earlier test's, maybe
    job_id = project.submit("sleep", 30)
    job = wait_until(lambda: (j := project.job(job_id)).pid and j, what="the job to start")
    assert psutil.Process(job.runner_pid).cmdline()[1:] == ["-c", RUNNER_CODE, str(job_id)]  # spawned for it
    assert spares.warm_spare_pid() == before  # neither used nor started


def test_a_warm_spare_exits_with_its_caller_and_is_not_inherited_by_a_fork(project):
    proc = run_program(project, "spare_exits_with_caller")
    assert proc.returncode == 0, proc.stderr
    spare, child_status = map(int, proc.stdout.split())
    assert child_status == 0  # the forked child had no spare of its parent's, nor its pipes
    # Its caller has exited: the spare reads end of input and exits, unused.
    wait_until(lambda: gone_or_zombie(spare), what="the spare to exit with its caller")


def test_a_fork_never_falls_between_making_a_spare_pipe_and_noting_it(project):
    # Another thread forks while a Spare being made has made a pipe but not yet
    # noted its ends: the fork must wait, or the child keeps copies it does not know of.
    proc = run_program(project, "spare_pipe_fork_race")
    assert proc.stdout.split() == ["0", "True"], proc.stderr  # the child closed both; the parent noted both


def test_a_gone_warm_spare_costs_a_caller_with_default_sigpipe_nothing(project):
    # Some programs put SIGPIPE back to SIG_DFL; a write to the pipe of a spare
    # that has exited (killed here; idle for 5 minutes in life) must not kill them.
    proc = run_program(project, "spare_gone_default_sigpipe")
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    job_id = int(proc.stdout.split()[-1])
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the launch to run after all")


def test_a_warm_spare_serves_a_caller_with_fds_past_1024(project):
    proc = run_program(project, "spare_fds_past_1024")
    if "Operation not permitted" in proc.stderr or "Too many open files" in proc.stderr:
        pytest.skip("cannot open 1100 files here")
    assert proc.returncode == 0, proc.stderr
    spare, job_id = map(int, proc.stdout.split())
    job = wait_until(lambda: (j := project.job(job_id)).status.value == "succeeded" and j, what="job c")
    assert job.runner_pid == spare


def test_a_warm_spare_takes_nothing_when_the_callers_config_is_not_the_files(project):
    _launch_twice(project)
    spare = _ready_spare()
    stale = load_config(project.config_path)
    project.write_config(max_retries=2)  # the file moves on; the caller still holds the old one
    job_id = api.run_background_job("testjobs.tasks.Tasks", "ok", "x", config=stale)
    assert project.wait_final(job_id).status.value == "succeeded"  # the caller dispatched it
    assert project.job(job_id).runner_pid != spare
    assert spares.warm_spare_pid() == spare  # it answered `mismatch`, and stays
