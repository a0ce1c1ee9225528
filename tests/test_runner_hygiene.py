"""A runner's process hygiene: what it inherits from its caller (fds, environment), what ps
shows of it (argv, title), and no thread when it forks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from bgjobs import api
from bgjobs.executor import RUNNER_CODE, WAKER_CODE
from bgjobs.spare import SPARE_CODE
from tests.conftest import BIN, cmdline, wait_until
from tests.programs import program, run_program


@pytest.mark.parametrize("launch", ["job-run", "api", "delayed"])
def test_a_runner_keeps_none_of_the_callers_other_fds(project, launch):
    """A caller's inheritable fd (`3>file`, a CI runner's pipe) must not stay open
    in the runner, its waker or its job: a pipe's reader would wait for them."""
    import select

    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        if launch == "job-run":  # the runner is job-run's fork
            proc = subprocess.run(
                [str(BIN / "job-run"), "testjobs.tasks.Tasks", "sleep", "--params=30"],
                env=project.env,
                cwd=project.root,
                pass_fds=(w,),
                capture_output=True,
                text=True,
                timeout=60,
            )
            job_id = int(proc.stdout)
        elif launch == "api":  # spawned, with whatever this process has open
            project.submit("sleep", 30)
            job_id = project.submit("sleep", 30)  # and a warm spare booted for the next launch
        else:  # the waker, spawned to start it when due
            job_id = project.submit("sleep", 30, delay=60)
        wanted = "queued" if launch == "delayed" else "running"
        project.wait_status(job_id, wanted)
        if launch == "delayed":
            wait_until(lambda: any(WAKER_CODE in cmdline(p) for p in project.processes()), what="a waker")
    finally:
        os.close(w)
    readable, _, _ = select.select([r], [], [], 10)
    assert readable and os.read(r, 1) == b"", "a process of the job still holds the caller's pipe"
    os.close(r)
    assert project.job(job_id).status.value == wanted


def test_runner_argv_holds_only_the_job_id(project):
    job_id = project.submit("sleep", 30)
    project.wait_status(job_id, "running")

    def runner_cmdline():
        for p in project.processes():
            cmd = cmdline(p)
            if RUNNER_CODE in cmd:
                return cmd
        return None

    cmd = wait_until(runner_cmdline, what="the runner process")
    # Started for this job, or started ahead of it (a warm spare): no params either way.
    assert cmd[1:] in (["-c", RUNNER_CODE, str(job_id)], ["-c", SPARE_CODE])


def test_callers_secrets_do_not_reach_the_job(project, tmp_path, monkeypatch):
    monkeypatch.setenv("BGJOBS_DASHBOARD_PASSWORD", "hunter2")
    out = tmp_path / "env.json"
    job_id = project.submit("dump_env", str(out))
    project.wait_final(job_id)
    names = json.loads(out.read_text())
    assert "BGJOBS_DASHBOARD_PASSWORD" not in names and "BGJOBS_LOCK_FD" not in names


def test_a_title_longer_than_the_command_line_is_cut_to_fit(project):
    proc = run_program(project, "set_long_title")
    ok, kept, name = proc.stdout.split()
    assert ok == "True" and name == "a-name-longer-t"
    # Cut to the argv strings the kernel reads: python and the program's path, less the final NUL.
    assert int(kept) == len(sys.executable) + len(str(program("set_long_title"))) + 1


def test_a_runner_never_has_a_thread_when_it_forks(project):
    # After a second, the runner starts the waker as its watchdog. It reaps it in
    # its own loop: a thread in a process that forks attempts would be unsafe.
    job_id = project.submit("sleep", 30, max_retries=0)
    job = wait_until(lambda: (j := project.job(job_id)).pid and j, what="the attempt to start")
    runner = psutil.Process(job.runner_pid)  # recorded by the runner itself with the attempt
    wait_until(lambda: any(WAKER_CODE in cmdline(p) for p in project.processes()), what="the watchdog waker")
    assert runner.num_threads() == 1
    api.cancel_job(job_id, grace=0.5, config=project.config_path)
