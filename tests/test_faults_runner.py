"""Faults around a job's runner: each ends in a recorded state, and nothing runs twice.

Real processes, real files, /dev/full, RLIMIT_FSIZE and real signals; the
jobs that cause the faults are tests/programs/faultjobs.py.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import gone_or_zombie, wait_until

PROGRAMS = Path(__file__).parent / "programs"
FAULTS = "faultjobs.Faults"


@pytest.fixture
def fp(project):
    """The project, with the fault jobs allowlisted."""
    shutil.copy(PROGRAMS / "faultjobs.py", project.root / "faultjobs.py")
    project.write_config(
        allowed_classes=["testjobs.tasks.Tasks", FAULTS, "faultjobs.KeepsChildren"],
        max_retries=0,
        retry_delay=0.05,
        retry_backoff=1,
        cancel_grace=1,
    )
    return project


def row(project, job_id: int) -> dict:
    """The job's row, read with plain sqlite3 (no bgjobs code, no dispatch)."""
    with sqlite3.connect(project.root / "state" / "jobs.sqlite3") as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return dict(found) if found else {}


def final_row(project, job_id: int, timeout: float = 30) -> dict:
    return wait_until(
        lambda: (r := row(project, job_id)) and r["status"] in ("succeeded", "failed", "cancelled") and r,
        timeout,
        what=f"job {job_id} to be final",
    )


def alive(pid: int) -> bool:
    return not gone_or_zombie(pid)


# --- 1. a runner that cannot start, or dies before its attempt, still ends ---


def test_an_output_file_that_cannot_be_opened_fails_the_job_after_its_attempts(fp):
    fp.write_config(allowed_classes=[FAULTS], max_retries=1, retry_delay=0.05, retry_backoff=1)
    (fp.root / "logs").mkdir()
    (fp.root / "logs" / "jobs").write_text("a file where the folder should be")
    run = fp.cli("job-run", FAULTS, "hello", "--wait", "--wait-timeout", "30")
    assert run.returncode == 1, run.stderr
    job_id = int(run.stdout.split()[0])
    job = row(fp, job_id)
    assert (job["status"], job["attempt"]) == ("failed", 2)
    assert "output" in job["error"] or "runner" in job["error"], job["error"]
    assert job["exception"] in ("NotADirectoryError", "FileExistsError", "FileNotFoundError")
    events = fp.events(job_id)
    assert events.count("attempt_failed") == 2 and events[-1] == "failed", events
    assert "retry_scheduled" in events


def test_a_runner_that_dies_before_its_attempt_uses_up_an_attempt(fp):
    fp.write_config(allowed_classes=[FAULTS], max_retries=1, retry_delay=0.05, retry_backoff=1)
    job_id = fp.submit("hello", cls=FAULTS, delay=5.0)  # the waker starts it, after the config breaks
    # The waker has read the config once it works in the project's folder.
    wait_until(lambda: any(_is_waker(p, fp.root) for p in fp.processes()), what="the waker")
    # Every runner started from now on dies reading its config, before its attempt.
    fp.config_path.write_text("allowed_classes: [unclosed\n")
    job = final_row(fp, job_id, timeout=90)  # two lost runners, found by the waker's ticks
    assert (job["status"], job["attempt"]) == ("failed", 2), job
    assert job["exception"] == "RunnerLost"
    assert fp.events(job_id).count("lost") == 2


def _is_waker(proc, root: Path) -> bool:
    try:
        return any("bgjobs.waker" in part for part in proc.cmdline()) and Path(proc.cwd()) == root
    except psutil.Error:
        return False


# --- 2. a full disk under log_dir does not stop a job ---------------------


def test_output_to_a_full_disk_is_dropped_and_the_job_runs(fp):
    fp.cli("job-status", check=True)  # the store first: a new store's ids start past existing outputs
    jobs = fp.root / "logs" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "1.out").symlink_to("/dev/full")
    run = fp.cli("job-run", FAULTS, "mark", "--params=ran", "--wait", "--wait-timeout", "30")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split()[:2] == ["1", "succeeded"]
    assert (fp.root / "ran").read_text().count("\n") == 1
    job = row(fp, 1)
    assert "No space left on device" in job["output_error"]
    lost = [r for r in fp.records(errors=True) if r["event"] == "output_lost"]
    assert lost and lost[0]["job_id"] == 1 and "No space left" in lost[0]["error"]


def test_output_past_a_file_size_limit_is_dropped_and_the_job_runs(fp):
    fp.write_config(allowed_classes=[FAULTS], output_max_bytes=1 << 40)
    fp.cli("job-status", check=True)
    jobs = fp.root / "logs" / "jobs"
    jobs.mkdir(parents=True)
    with open(jobs / "1.out", "wb") as f:
        f.truncate(64 << 20)  # sparse: past the limit below, while the store and logs are far below it

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 20, resource.RLIM_INFINITY))

    import subprocess

    proc = subprocess.run(
        [str(Path(sys.executable).parent / "job-run"), FAULTS, "hello", "--wait", "--wait-timeout", "30"],
        env=fp.env,
        cwd=fp.root,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "File too large" in row(fp, 1)["output_error"]


# --- 3. a failing store never turns a success into a second run -----------


def test_a_success_the_store_cannot_take_is_kept_until_it_can(fp):
    job_id = fp.submit("starve_runner", "ran", cls=FAULTS)  # max_retries 0: a lost job would fail
    ran = fp.root / "ran"
    wait_until(ran.exists, what="the attempt to run")
    runner, attempt = map(int, ran.read_text().split())
    wait_until(lambda: not alive(attempt), what="the attempt to end")
    # The runner has the outcome and cannot store it; it must hold on to it.
    assert alive(runner) and row(fp, job_id)["status"] == "running"
    fp.rt.store.close()
    from bgjobs import launcher

    launcher.dispatch(fp.rt)  # a reconcile: the runner holds the lock, so the job is not lost
    assert row(fp, job_id)["status"] == "running"
    resource.prlimit(runner, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    job = final_row(fp, job_id)
    assert (job["status"], job["attempt"]) == ("succeeded", 1), job
    assert ran.read_text().count("\n") == 1


# --- 8. descendants that leave the process group still stop ---------------


@pytest.mark.parametrize("how", ["success", "cancel", "timeout"])
def test_a_descendant_that_left_the_group_is_stopped_with_the_attempt(fp, how):
    pidfile = fp.root / "escapee"
    if how == "success":
        job_id = fp.submit("escape", "escapee", cls=FAULTS)
    elif how == "cancel":
        job_id = fp.submit("escape", "escapee", 600, cls=FAULTS)
    else:
        job_id = fp.submit("escape", "escapee", 600, cls=FAULTS, timeout=1.5)
    wait_until(pidfile.exists, what="the escapee to start")
    escapee = int(pidfile.read_text())
    assert os.getpgid(escapee) != row(fp, job_id)["pid"]  # it left the attempt's group
    if how == "cancel":
        from bgjobs import api

        api.cancel_job(job_id, config=fp.config_path)
    job = final_row(fp, job_id)
    expected = {"success": "succeeded", "cancel": "cancelled", "timeout": "failed"}[how]
    assert job["status"] == expected
    wait_until(lambda: not alive(escapee), timeout=10, what="the escapee to be stopped")


def test_a_class_that_keeps_descendants_leaves_them_running(fp):
    job_id = fp.submit("escape", "escapee", cls="faultjobs.KeepsChildren")
    assert final_row(fp, job_id)["status"] == "succeeded"
    escapee = int((fp.root / "escapee").read_text())
    try:
        assert alive(escapee)
    finally:
        os.kill(escapee, signal.SIGKILL)


# --- 11. output is bounded --------------------------------------------------


def test_output_past_its_bound_keeps_its_start_and_its_tail(fp):
    fp.write_config(allowed_classes=[FAULTS], output_max_bytes=64 * 1024)
    job_id = fp.submit("chatty", 20_000, cls=FAULTS)  # about 2.2 MB
    assert final_row(fp, job_id)["status"] == "succeeded"
    out = (fp.root / "logs" / "jobs" / f"{job_id}.out").read_text()
    assert len(out.encode()) <= 64 * 1024
    assert "FIRST LINE" in out and out.rstrip().endswith("LAST LINE")
    assert "bytes of output cut here" in out
    assert "line 00019999" in out and "line 00010000" not in out


# --- 14. small ones ---------------------------------------------------------


def test_a_large_result_stays_valid_json(fp):
    job_id = fp.submit("big_result", 100_000, cls=FAULTS)
    job = final_row(fp, job_id)
    value = json.loads(job["result"])
    assert value["truncated"] is True and value["length"] == 100_002
    small = fp.submit("big_result", 5000, cls=FAULTS)
    assert json.loads(final_row(fp, small)["result"]) == "x" * 5000


def test_no_lock_file_of_a_final_job_remains(fp):
    fp.write_config(allowed_classes=["testjobs.tasks.Tasks", FAULTS], max_concurrent=2, max_retries=1)
    ids = [fp.submit("hello", str(i), cls=FAULTS) for i in range(40)]
    ids += [fp.submit("fail", cls="testjobs.tasks.Tasks") for _ in range(5)]  # retried once, then failed
    waiting = [fp.submit("hello", cls=FAULTS, delay=600) for _ in range(5)]
    # A job waiting for its retry: its first runner has come and gone.
    waiting += [fp.submit("fail", cls="testjobs.tasks.Tasks", retry_delay=600) for _ in range(3)]
    from bgjobs import api

    for job_id in waiting[-3:]:
        fp.wait_status(job_id, "retrying")
    for job_id in waiting:
        api.cancel_job(job_id, config=fp.config_path)
    for job_id in ids + waiting:
        final_row(fp, job_id)
    locks = fp.root / "state" / "locks"
    wait_until(
        lambda: not list(locks.glob("*.lock")), timeout=10, what=f"no lock files: {list(locks.glob('*'))}"
    )


def test_an_idle_spare_that_exits_is_reaped_at_once(fp):
    from bgjobs import spare

    fp.submit("hello", cls=FAULTS)
    fp.submit("hello", cls=FAULTS)  # from the second launch on, a spare is kept warm
    pid = wait_until(lambda: spare.warm_spare_pid(ready=True), what="a ready spare")
    os.kill(pid, signal.SIGKILL)  # as if it had exited idle
    wait_until(lambda: not psutil.pid_exists(pid), timeout=5, what="the spare to be reaped")
