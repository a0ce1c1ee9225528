"""Priority and concurrency without a broker: queue order, niceness, delays, progress."""

from __future__ import annotations

import json
import os
import time

import psutil
import pytest

from bgjobs import api
from bgjobs.errors import RejectedError
from tests.conftest import wait_until
from tests.overlap import peak_concurrency, recorded_spans


def _starts(marker) -> list[dict]:
    """The complete lines the jobs wrote to `marker` (a job may be mid-write)."""
    if not marker.exists():
        return []
    return [json.loads(line) for line in marker.read_text().splitlines(keepends=True) if line.endswith("\n")]


def test_queue_takes_lower_priority_value_first_then_oldest(project, tmp_path):
    project.write_config(max_concurrent=1)
    blocker = project.submit("sleep", 30)
    project.wait_status(blocker, "running")
    marker = tmp_path / "order.jsonl"
    ids = {}
    for name, prio in [("a", 5), ("b", 0), ("c", 5), ("d", -3 if os.geteuid() == 0 else 1), ("e", 0)]:
        ids[project.submit("record_start", str(marker), priority=prio)] = name
    assert all(project.job(i).status.value == "queued" for i in ids)
    api.cancel_job(blocker, grace=0.2, config=project.config_path)
    wait_until(lambda: len(_starts(marker)) == 5, timeout=30, what="all five to start")
    started = [r["job_id"] for r in project.records() if r["event"] == "started" and r["job_id"] in ids]
    assert [ids[i] for i in started] == ["d", "b", "e", "a", "c"]


def _run_spans(project, marker, count: int, seconds: float) -> list[tuple[float, float]]:
    """Launch `count` jobs that each run for `seconds` and record when they ran in
    `marker`; wait (without a dispatch of ours: the runners take the queue)
    until all have succeeded. Returns their [start, end) spans."""
    ids = [project.submit("record_span", str(marker), seconds) for _ in range(count)]
    store = project.rt.store
    wait_until(
        lambda: store.counts().get("succeeded", 0) == count, timeout=90, what=f"all {count} jobs to succeed"
    )
    assert all(project.job(i).status.value == "succeeded" for i in ids)
    spans = recorded_spans(marker)
    assert len(spans) == count
    return spans


def test_peak_concurrency_counts_overlapping_runs():
    assert peak_concurrency([]) == 0
    assert peak_concurrency([(0, 1), (1, 2), (2, 3)]) == 1  # back to back: never two at once
    assert peak_concurrency([(0, 2), (1, 3), (2, 4)]) == 2
    assert peak_concurrency([(0, 10), (1, 2), (1.5, 3.5), (3, 4)]) == 3


@pytest.mark.slow
def test_never_more_than_the_limit_running(project, tmp_path):
    project.write_config(max_concurrent=2)
    peak = peak_concurrency(_run_spans(project, tmp_path / "spans.jsonl", 30, 0.1))
    assert peak <= 2
    assert peak == 2


def test_the_peak_shows_more_running_than_a_lower_limit_allows(project, tmp_path):
    # The negative control for the test above: the same measure, where the limit
    # lets more than 2 run at once, sees them (as it would an overshoot of 2).
    project.write_config(max_concurrent=6)
    assert 2 < peak_concurrency(_run_spans(project, tmp_path / "spans.jsonl", 6, 2.0)) <= 6


def test_per_class_limit(project, tmp_path):
    project.write_config(
        max_concurrent=4,
        allowed_classes=[
            {"class": "testjobs.tasks.Tasks", "max_concurrent": 1},
            "testjobs.tasks.Cooperative",
        ],
    )
    first = project.submit("sleep", 30)
    second = project.submit("sleep", 30)
    project.wait_status(first, "running")
    api.list_jobs(config=project.config_path)
    assert project.job(second).status.value == "queued"
    api.cancel_job(first, grace=0.2, config=project.config_path)
    project.wait_status(second, "running")
    api.cancel_job(second, grace=0.2, config=project.config_path)


@pytest.mark.parametrize("class_limit", [1, None], ids=["limited", "control"])
def test_per_class_limit_holds_for_the_whole_run(project, tmp_path, class_limit):
    policy = {"class": "testjobs.tasks.Tasks"} | ({"max_concurrent": class_limit} if class_limit else {})
    project.write_config(max_concurrent=4, allowed_classes=[policy, "testjobs.tasks.Cooperative"])
    peak = peak_concurrency(_run_spans(project, tmp_path / "spans.jsonl", 3, 1.5))
    if class_limit:
        assert peak == 1
    else:
        assert peak > 1  # the control: without the class's limit, the same jobs overlap


def test_job_runs_at_its_niceness(project, tmp_path):
    marker = tmp_path / "nice.jsonl"
    job_id = project.submit("record_start", str(marker), 30.0, priority=7)
    wait_until(lambda: _starts(marker))
    job = project.job(job_id)
    assert psutil.Process(job.pid).nice() == 7
    assert _starts(marker)[0]["nice"] == 7
    api.cancel_job(job_id, grace=0.2, config=project.config_path)


def test_negative_priority(project, tmp_path):
    if os.geteuid() != 0:
        with pytest.raises(RejectedError, match="needs privilege"):
            project.submit("ok", priority=-5)
        proc = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--priority=-5")
        assert proc.returncode == 2 and "needs privilege" in proc.stderr
        return
    # Running as root: the privilege is there, so the priority must be applied.
    marker = tmp_path / "nice.jsonl"
    job_id = project.submit("record_start", str(marker), priority=-5)
    project.wait_final(job_id)
    assert _starts(marker)[0]["nice"] == -5


def test_priority_out_of_range_is_refused(project):
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--priority=20")
    assert proc.returncode == 2 and "priority must be a whole number from -20 to 19" in proc.stderr


def test_delayed_job_starts_no_earlier_than_its_time(project, tmp_path):
    marker = tmp_path / "t.jsonl"
    before = time.time()
    job_id = project.submit("record_start", str(marker), delay=1.5)
    assert project.job(job_id).status.value == "queued"
    wait_until(lambda: _starts(marker), timeout=10, what="the delayed job to start")  # the waker starts it
    assert _starts(marker)[0]["t"] >= before + 1.5


def test_at_time_and_bad_at(project, tmp_path):
    from datetime import UTC, datetime, timedelta

    marker = tmp_path / "t.jsonl"
    at = datetime.now(UTC) + timedelta(seconds=1)
    proc = project.cli(
        "job-run",
        "testjobs.tasks.Tasks",
        "record_start",
        f"--params={marker}",
        f"--at={at.isoformat()}",
        check=True,
    )
    wait_until(lambda: _starts(marker), timeout=10, what="the --at job to start")
    assert _starts(marker)[0]["t"] >= at.timestamp()
    assert int(proc.stdout) > 0
    bad = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--at=tomorrow")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr


def test_progress_is_visible_in_job_status_json(project, tmp_path):
    ready = tmp_path / "ready"
    job_id = project.submit("progress", str(ready))
    wait_until(ready.exists)
    body = json.loads(project.cli("job-status", str(job_id), "--json", check=True).stdout)
    assert body["progress"] == pytest.approx(0.4) and body["progress_message"] == "step 2 of 5"
    assert "40%" in project.cli("job-status", check=True).stdout
    api.cancel_job(job_id, grace=0.2, config=project.config_path)


def test_progress_is_rate_limited():
    from bgjobs import context
    from bgjobs.context import JobContext

    writes = []

    class Spy:
        def set_progress(self, job_id, fraction, message):
            writes.append(fraction)

    context.enter(JobContext(1, 1, 1, "x.Y", "m"), Spy(), cooperative=True)
    try:
        for i in range(10_000):
            context.progress(i / 10_000)
        assert len(writes) <= 2  # a tight loop costs at most a few writes
        context.flush_progress()
        assert writes[-1] == pytest.approx(9_999 / 10_000)
    finally:
        context.leave()


def test_current_job_gives_id_and_attempt(project, tmp_path):
    marker = tmp_path / "ctx.jsonl"
    job_id = project.submit("record_start", str(marker))
    project.wait_final(job_id)
    assert _starts(marker)[0]["id"] == job_id
    from bgjobs import current_job

    assert current_job() is None  # outside a job


def test_queued_job_survives_a_crash_of_everything(project, tmp_path):
    blocker = project.fill_slots()
    marker = tmp_path / "t.jsonl"
    queued = project.submit("record_start", str(marker))
    project.kill_all()  # runners, attempts and the waker: the machine "crashed"
    assert project.processes() == []
    assert project.job(queued).status.value == "queued"
    api.list_jobs(config=project.config_path)  # the next dispatch
    wait_until(marker.exists, timeout=10, what="the queued job to start after the crash")
    assert project.wait_final(queued).status.value == "succeeded"
    assert project.job(blocker).status.value in ("retrying", "failed", "running", "succeeded")


def test_a_runner_that_takes_the_next_job_keeps_outputs_apart(project):
    project.write_config(max_concurrent=1)
    blocker = project.submit("sleep", 30)
    project.wait_status(blocker, "running")
    ids = [project.submit("print_lines", n) for n in (1, 2, 3)]
    api.cancel_job(blocker, grace=0.2, config=project.config_path)
    for job_id in ids:
        project.wait_final(job_id)
    for n, job_id in zip((1, 2, 3), ids, strict=True):
        text = (project.root / "logs" / "jobs" / f"{job_id}.out").read_text()
        assert text.count("line ") == n and f"job {job_id} attempt 1" in text
        assert "job " + str(blocker) not in text
