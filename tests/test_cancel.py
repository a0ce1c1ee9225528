"""Cancel and recovery: real signals to real processes, and runners that die."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from bgjobs import api
from bgjobs.errors import AlreadyFinal, NoSuchJob
from bgjobs.executor import WAKER_CODE
from tests.conftest import cmdline, wait_until
from tests.programs import program, run_program


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cancel_kills_the_jobs_own_children(project, tmp_path):
    pidfile = tmp_path / "sleep.pid"
    job_id = project.submit("spawn_sleep", str(pidfile))
    grandchild = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), what="the sleep"))
    assert _alive(grandchild)
    proc = project.cli("job-cancel", str(job_id))
    assert proc.returncode == 0, proc.stderr
    assert f"job {job_id} cancelled" in proc.stdout
    job = project.wait_final(job_id)
    assert job.status.value == "cancelled" and job.error == "cancelled"
    assert "  error      cancelled\n" in project.cli("job-status", str(job_id), check=True).stdout
    wait_until(lambda: not _alive(grandchild), timeout=5, what="the grandchild sleep to die")
    events = project.events(job_id)
    assert events[-2:] == ["cancel_requested", "cancelled"]
    requested = [r for r in project.records() if r["event"] == "cancel_requested"][0]
    assert requested["source"] == "cli" and requested["user"]


def test_job_ignoring_sigterm_is_killed_after_grace(project, tmp_path):
    ready = tmp_path / "ready"
    job_id = project.submit("ignore_term", str(ready))
    wait_until(ready.exists, what="the job to ignore SIGTERM")
    start = time.monotonic()
    result = api.cancel_job(job_id, grace=1.0, config=project.config_path)
    elapsed = time.monotonic() - start
    assert result.cancelled
    assert 1.0 <= elapsed < 1.0 + 3.0
    assert result.job.exit_signal == signal.SIGKILL


def test_except_exception_does_not_swallow_cancel_and_finally_runs(project, tmp_path):
    ready, sentinel = tmp_path / "ready", tmp_path / "sentinel"
    job_id = project.submit("swallow", str(ready), str(sentinel))
    wait_until(ready.exists, what="the job to start")
    start = time.monotonic()
    result = api.cancel_job(job_id, grace=10, config=project.config_path)
    assert result.cancelled
    assert time.monotonic() - start < 5  # it stopped on SIGTERM, not on SIGKILL
    assert sentinel.read_text() == "finally ran"
    assert result.job.status.value == "cancelled"
    assert result.job.exception is None  # a cancelled job has no exception (the cancel clears it)


def test_a_cancel_before_the_job_has_begun_is_not_a_kill_after_the_grace(project, tmp_path, monkeypatch):
    # While the attempt still imports the job's module, a cancel's SIGTERM must
    # stop it: the runner's handler it inherited would only set a flag, and the
    # cancel would wait out the grace period, then SIGKILL.
    shutil.copy(program("slowjobs"), project.root / "testjobs" / "slow.py")
    project.write_config(allowed_classes=["testjobs.slow.Slow"])
    ready = tmp_path / "ready"
    monkeypatch.setenv("SLOW_IMPORT_READY", str(ready))
    monkeypatch.setenv("SLOW_IMPORT_CALLER", str(os.getpid()))
    job_id = project.submit("run", cls="testjobs.slow.Slow")
    wait_until(ready.exists, what="the attempt to begin importing the job's module")
    api.cancel_job(job_id, grace=60, config=project.config_path)  # returns once final
    job = project.job(job_id)
    assert job.status.value == "cancelled" and job.exit_signal == signal.SIGTERM


def test_cooperative_job_stops_at_its_own_check(project, tmp_path):
    ready, sentinel = tmp_path / "ready", tmp_path / "sentinel"
    job_id = project.submit("loop", str(ready), str(sentinel), cls="testjobs.tasks.Cooperative")
    wait_until(ready.exists, what="the loop to start")
    result = api.cancel_job(job_id, config=project.config_path)
    assert result.cancelled and sentinel.read_text() == "stopped cleanly"
    assert result.job.error == "cancelled: stopped"  # the job's own word is kept
    detail = project.cli("job-status", str(job_id), check=True).stdout
    assert "  error      cancelled: stopped\n" in detail


def test_cancel_queued_job_never_runs(project, tmp_path):
    blocker = project.fill_slots()
    marker = tmp_path / "ran.jsonl"
    queued = project.submit("record_start", str(marker))
    assert project.job(queued).status.value == "queued"
    result = api.cancel_job(queued, config=project.config_path)
    assert result.cancelled and result.waited < 1
    api.cancel_job(blocker, config=project.config_path)
    time_limit = time.monotonic() + 1.5
    while time.monotonic() < time_limit:  # give a wrong dispatch the chance to run it
        api.list_jobs(config=project.config_path)
        assert not marker.exists()
        time.sleep(0.1)
    assert project.job(queued).status.value == "cancelled"


def test_cancel_during_retry_delay(project):
    job_id = project.submit("fail", max_retries=3, retry_delay=30)
    project.wait_status(job_id, "retrying")
    start = time.monotonic()
    result = api.cancel_job(job_id, config=project.config_path)
    assert time.monotonic() - start < 1
    assert result.cancelled
    assert project.job(job_id).attempt == 1
    assert project.events(job_id).count("started") == 1


def test_unknown_and_final_jobs(project):
    proc = project.cli("job-cancel", "99")
    assert proc.returncode == 3 and "no job 99" in proc.stderr
    with pytest.raises(NoSuchJob):
        api.cancel_job(99, config=project.config_path)
    job_id = project.submit("ok")
    project.wait_final(job_id)
    proc = project.cli("job-cancel", str(job_id))
    assert proc.returncode == 4 and f"job {job_id} already succeeded" in proc.stderr
    with pytest.raises(AlreadyFinal):
        api.cancel_job(job_id, config=project.config_path)
    body = json.loads(project.cli("job-cancel", str(job_id), "--json").stdout)
    assert body["status"] == "succeeded"


def test_twenty_concurrent_cancels_have_one_winner(project, tmp_path):
    ready = tmp_path / "ready"
    job_id = project.submit("ignore_term", str(ready))
    wait_until(ready.exists, what="the job to start")
    with ThreadPoolExecutor(max_workers=20) as pool:
        procs = list(pool.map(lambda _: project.cli("job-cancel", str(job_id), "--grace", "1"), range(20)))
    codes = sorted(p.returncode for p in procs)
    assert codes.count(0) == 1, [(p.returncode, p.stderr) for p in procs]
    assert all(c in (0, 4, 5) for c in codes)
    assert project.wait_final(job_id).status.value == "cancelled"
    assert project.events(job_id).count("cancel_requested") == 1
    assert project.events(job_id).count("cancelled") == 1


def test_cancel_racing_natural_completion_ends_consistent(project):
    for _ in range(5):
        job_id = project.submit("sleep", 0.05)
        project.wait_status(job_id, "running", "succeeded")
        try:
            result = api.cancel_job(job_id, grace=1, config=project.config_path)
            final = result.job.status.value
        except AlreadyFinal as exc:
            final = exc.job.status.value
        job = project.wait_final(job_id)
        assert job.status.value == final
        events = project.events(job_id)
        assert events.count("succeeded") + events.count("cancelled") == 1


def _runner_of(project, job_id):
    def find():
        job = project.job(job_id)
        return job.runner_pid if job.status.value == "running" and job.pid else None

    return wait_until(find, what=f"job {job_id}'s runner")


def test_kill_9_of_runner_is_lost_then_retried(project, tmp_path):
    marker = tmp_path / "starts.jsonl"
    job_id = project.submit("record_start", str(marker), 30.0, max_retries=1)
    runner = _runner_of(project, job_id)
    wait_until(marker.exists, what="the first attempt to begin")
    os.kill(runner, signal.SIGKILL)
    wait_until(
        lambda: api.list_jobs(config=project.config_path) and "lost" in project.events(job_id),
        what="the job to be found lost",
    )
    lost = [r for r in project.records(errors=True) if r["event"] == "lost"]
    assert lost and lost[0]["job_id"] == job_id and "runner" in lost[0]["message"]
    wait_until(
        lambda: marker.exists() and len(marker.read_text().splitlines()) == 2, what="the second attempt"
    )
    assert project.job(job_id).attempt == 2
    api.cancel_job(job_id, grace=0.5, config=project.config_path)


def test_kill_9_of_runner_with_no_retries_left_fails(project):
    job_id = project.submit("sleep", 30, max_retries=0)
    runner = _runner_of(project, job_id)
    attempt_pid = project.job(job_id).pid
    os.kill(runner, signal.SIGKILL)
    job = project.wait_final(job_id)
    assert job.status.value == "failed" and "runner" in job.error
    wait_until(lambda: not _alive(attempt_pid), timeout=5, what="the orphaned attempt to die")


def test_attempt_dies_with_its_runner_before_anyone_reconciles(project):
    job_id = project.submit("sleep", 30, max_retries=0)
    runner = _runner_of(project, job_id)
    attempt_pid = project.job(job_id).pid
    # Kill the runner and any waker, and do not dispatch: no reconcile can run,
    # so only the kernel (the runner's end of the attempt's lifeline) stops it.
    for proc in project.processes():
        # cmdline: [] for one gone meanwhile (the attempt dies with its runner)
        if proc.pid == runner or WAKER_CODE in cmdline(proc):
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass  # a waker that exited meanwhile
    wait_until(lambda: not _alive(attempt_pid), timeout=5, what="the attempt to die with its runner")
    assert project.job(job_id).status.value == "running"  # nobody has reconciled yet


def test_retry_whose_runner_died_resumes_at_next_reconcile(project, tmp_path):
    marker = tmp_path / "m"
    job_id = project.submit("fail_then_ok", str(marker), max_retries=1, retry_delay=0.5)
    # Past the first attempt (which fails): killed during it, the job would fail.
    wait_until(
        lambda: (j := project.job(job_id)).attempt == 2 or j.status.value == "retrying",
        what="the first attempt to fail",
    )
    project.kill_all()  # every runner and the waker: nothing is left to wake it
    job = project.wait_final(job_id)  # wait_final dispatches, i.e. reconciles
    assert job.status.value == "succeeded" and job.attempt == 2


def test_stale_pid_with_wrong_start_time_is_never_signalled(project):
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        job_id = project.submit("sleep", 30, max_retries=0)
        _runner_of(project, job_id)
        project.kill_all()  # the real runner and attempt are gone
        store = project.rt.store
        with store._tx() as conn:  # forge: the pid is now someone else's
            conn.execute(
                "UPDATE jobs SET runner_pid = ?, runner_start = 1, pid = ?, pid_start = 1 WHERE id = ?",
                (sleeper.pid, sleeper.pid, job_id),
            )
        proc = project.cli("job-cancel", str(job_id), "--grace", "0.2")
        assert proc.returncode in (0, 4), proc.stderr
        assert sleeper.poll() is None, "an unrelated process was signalled"
        assert project.job(job_id).status.value in ("cancelled", "failed")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_group_members_are_the_live_ones_after_the_leader_exits(tmp_path):
    """What a cancelled attempt's group looks like to the runner: the leader has
    exited (a zombie until reaped) and a child it left behind is still alive."""
    from bgjobs import procs
    from tests.conftest import gone_or_zombie

    pidfile = tmp_path / "child.pid"
    leader = subprocess.Popen(["sh", "-c", f'sleep 600 & echo $! > "{pidfile}"; exit 0'], process_group=0)
    try:
        child = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the child"))
        wait_until(lambda: gone_or_zombie(leader.pid), what="the leader to exit")
        assert procs.live_group_members(leader.pid) == [child]  # not the zombie leader
        assert procs.live_group_members(os.getpgid(0)) != []  # our own group: pytest at least
        os.kill(child, signal.SIGKILL)
        wait_until(lambda: procs.live_group_members(leader.pid) == [], what="an empty group")
    finally:
        try:
            os.killpg(leader.pid, signal.SIGKILL)  # while the unreaped leader still holds the group id
        except ProcessLookupError:
            pass
        leader.wait()


@pytest.mark.slow
def test_no_zombies_in_a_long_lived_caller(project):
    project.write_config(max_concurrent=8)
    proc = run_program(project, "no_zombies", project.config_path, timeout=150)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0"


def test_sigterm_inside_job_raises_job_cancelled_in_sleep(project, tmp_path):
    ready, sentinel = tmp_path / "ready", tmp_path / "cleaned"
    job_id = api.run_background_job(
        "testjobs.tasks.Tasks", "swallow", str(ready), str(sentinel), config=project.config_path
    )
    wait_until(ready.exists)
    attempt = project.job(job_id).pid
    os.killpg(attempt, signal.SIGTERM)  # not via cancel: the attempt alone is signalled
    job = project.wait_final(job_id)
    assert sentinel.exists()
    assert job.status.value == "failed" and job.exception == "JobCancelled"


@pytest.mark.slow
def test_non_blocking_cancel_of_a_hung_runner_still_ends_cancelled(project, tmp_path):
    ready = tmp_path / "ready"
    job_id = project.submit("ignore_term", str(ready))
    wait_until(ready.exists)
    job = project.job(job_id)
    os.kill(job.runner_pid, signal.SIGSTOP)  # the runner hangs: it cannot act on the cancel
    try:
        result = api.cancel_job(job_id, grace=0.2, wait=False, config=project.config_path)
        assert result.job.status.value == "running" and result.job.cancel_requested_at
        # Any later reconcile (here: the test's dispatches) stops it after grace + margin.
        done = project.wait_final(job_id, timeout=30)
        assert done.status.value == "cancelled"
        wait_until(lambda: not _alive(job.pid), timeout=5, what="the attempt to die")
    finally:
        try:
            os.kill(job.runner_pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
