"""Fleet mode end to end: a real PostgreSQL, several hosts as real `job-worker`
processes (each its own BGJOBS_HOST, config file, log_dir and state_dir), a
client host that runs no worker, and real faults: SIGKILLed runners and
workers, SIGTERM, a stopped runner whose sessions are cut, a PostgreSQL
restart. Every wait is bounded by a deadline (tests/fleet_helpers.py)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter

import pytest

from tests.conftest import gone_or_zombie, wait_until
from tests.fleet_helpers import (
    Fleet,
    advisory_locks_held,
    alive,
    kill,
    marker_lines,
    terminate_sessions,
    warm_claimers,
)
from tests.overlap import peak_concurrency, recorded_spans


@pytest.fixture
def fleet(project, pg_url):
    fleet = Fleet(project, pg_url)
    yield fleet
    fleet.stop_workers()


@pytest.mark.slow
def test_jobs_spread_over_the_hosts_and_each_shows_its_host(fleet):
    fleet.start_worker("h1")
    fleet.start_worker("h2")
    spans = fleet.root / "spans.jsonl"
    ids = [fleet.submit("record_span", str(spans), 1.5) for _ in range(8)]
    jobs = fleet.wait_final(ids)
    assert [j.status.value for j in jobs] == ["succeeded"] * 8, fleet.diagnostics()

    shown = {j["id"]: j for j in fleet.status_json()}
    hosts = Counter(shown[i]["host"] for i in ids)
    assert set(hosts) == {"h1", "h2"}, hosts  # each host ran some, and no other host did
    # Each job's output file is in the log_dir of the host that ran it.
    for job_id in ids:
        host = shown[job_id]["host"]
        assert (fleet.root / f"logs-{host}" / "jobs" / f"{job_id}.out").exists()
        other = "h2" if host == "h1" else "h1"
        assert not (fleet.root / f"logs-{other}" / "jobs" / f"{job_id}.out").exists()
    assert not (fleet.root / "logs" / "jobs").exists()  # the client ran none
    assert len(recorded_spans(spans)) == 8


def test_job_worker_with_a_sqlite_config_exits_2_with_one_clear_line(fleet):
    fleet.project.write_config(host="client")  # the SQLite file, executor local
    out = fleet.cli("job-worker", timeout=60)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert "store: postgresql://" in lines[0] and "executor: procrastinate" in lines[0]
    assert not (fleet.root / "state" / "jobs.sqlite3").exists()  # it made no SQLite file either


def test_job_worker_with_a_postgresql_store_on_the_local_executor_exits_2(fleet):
    fleet.project.write_config(store=fleet.url, host="client")  # executor: local
    out = fleet.cli("job-worker", timeout=60)
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and "executor: procrastinate" in lines[0], out.stderr


@pytest.mark.slow
def test_a_cross_host_cancel_stops_the_job_and_its_grandchild(fleet, capsys):
    fleet.start_worker("h1")  # the only host with a worker: the job runs there
    pidfile = fleet.root / "grandchild.pid"
    job_id = fleet.submit("spawn_sleep", str(pidfile))
    job = fleet.wait_running(job_id)
    assert job.host == "h1"
    grandchild = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), 30, what="the grandchild"))
    assert alive(grandchild) and alive(job.pid) and alive(job.runner_pid)

    t0 = time.monotonic()
    out = fleet.cli("job-cancel", str(job_id))  # the client's config: a host with no worker
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"job {job_id} cancelled"

    done = fleet.job(job_id)
    assert done.status.value == "cancelled" and done.host == "h1"
    assert done.cancel_source == "cli"
    # The job's whole process group was stopped, its grandchild too.
    wait_until(lambda: gone_or_zombie(grandchild), 10, what="the grandchild to be killed")
    wait_until(lambda: gone_or_zombie(job.pid), 10, what="the attempt to be gone")
    wait_until(lambda: gone_or_zombie(job.runner_pid), 10, what="the runner to exit")
    events = [r["event"] for r in fleet.events(job_id)]
    assert events[-2:] == ["cancel_requested", "cancelled"], events
    hosts = {r["event"]: r["host"] for r in fleet.events(job_id)}
    assert hosts["cancel_requested"] == "client" and hosts["cancelled"] == "h1"
    in_store = done.finished_at - done.cancel_requested_at  # both on the database's clock
    with capsys.disabled():
        print(
            f"\ncross-host cancel: job-cancel took {took:.2f}s; flag to cancelled in the store {in_store:.3f}s"
        )
    assert in_store < 5, in_store  # the NOTIFY, not the grace period's end, stopped it


@pytest.mark.slow
def test_a_sigkilled_runner_is_retried_and_succeeds_with_one_lost_record(fleet):
    fleet.configure(max_retries=1)
    fleet.start_worker("h1")
    fleet.start_worker("h2")
    marker = fleet.root / "runs.jsonl"
    job_id = fleet.submit("record_start", str(marker), 3)
    job = fleet.wait_running(job_id)
    wait_until(lambda: marker_lines(marker), 30, what="the first run to start")
    first_host, attempt_pid = job.host, job.pid
    kill(job.runner_pid, signal.SIGKILL)

    done = fleet.wait_final([job_id], timeout=90)[0]
    assert done.status.value == "succeeded", fleet.diagnostics()
    assert done.attempt == 2
    events = fleet.events(job_id)
    names = [r["event"] for r in events]
    assert names.count("lost") == 1, names
    assert names.count("succeeded") == 1, names
    lost = next(r for r in events if r["event"] == "lost")
    assert lost["attempt"] == 1
    assert len(marker_lines(marker)) == 2  # the killed run, and the retry
    assert gone_or_zombie(attempt_pid)  # the killed runner's attempt went with it
    print(f"first run on {first_host}, the retry on {done.host}")


@pytest.mark.slow
def test_a_sigkilled_job_worker_loses_no_job(fleet):
    """h1 runs two long jobs, and two more wait for its slots, when its worker
    is killed outright. Its runners are detached and finish their jobs there;
    h2's worker, started then, takes up the waiting jobs and the new ones."""
    fleet.start_worker("h1")
    marker = fleet.root / "runs.jsonl"
    running = [fleet.submit("record_start", str(marker), 6) for _ in range(2)]
    on_h1 = [fleet.wait_running(i) for i in running]
    assert {j.host for j in on_h1} == {"h1"}
    waiting = [fleet.submit("record_start", str(marker), 0.5) for _ in range(2)]
    warm = wait_until(lambda: warm_claimers("h1"), 30, what="h1's warm claimer")
    worker = fleet.workers["h1"]
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    assert all(alive(j.runner_pid) for j in on_h1)  # detached: they run on
    assert [fleet.job(i).status.value for i in waiting] == ["queued"] * 2  # h1 had no slot for them
    fleet.start_worker("h2")
    after = [fleet.submit("record_start", str(marker), 0.5) for _ in range(2)]

    ids = running + waiting + after
    jobs = fleet.wait_final(ids, timeout=120)
    assert [j.status.value for j in jobs] == ["succeeded"] * 6, fleet.diagnostics()
    # The jobs h1's runners had, they ran to their end there, once each.
    assert [(fleet.job(i).host, fleet.job(i).attempt) for i in running] == [("h1", 1)] * 2
    runs = Counter(line["id"] for line in marker_lines(marker))
    assert runs == Counter(dict.fromkeys(ids, 1)), runs  # nothing ran twice
    # The remaining worker took up the work (h1's runners were busy for 6 s).
    assert "h2" in {fleet.job(i).host for i in waiting + after}, fleet.diagnostics()
    assert all(r["event"] != "lost" for i in ids for r in fleet.events(i))
    # The warm claimer it kept saw the end of its pipe and left, unused.
    wait_until(lambda: not any(map(alive, warm)), 30, what="h1's warm claimer to exit")


@pytest.mark.slow
def test_job_worker_on_sigterm_exits_0_promptly_and_its_jobs_run_to_success(fleet, capsys):
    fleet.start_worker("h1")
    marker = fleet.root / "runs.jsonl"
    ids = [fleet.submit("record_start", str(marker), 4) for _ in range(2)]
    jobs = [fleet.wait_running(i) for i in ids]
    warm = wait_until(lambda: warm_claimers("h1"), 30, what="h1's warm claimer")
    worker = fleet.workers["h1"]
    t0 = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(20)
    took = time.monotonic() - t0
    assert code == 0, fleet.worker_output("h1")
    with capsys.disabled():
        print(f"\njob-worker exited {code} {took:.2f}s after SIGTERM")
    assert took < 10
    assert all(alive(j.runner_pid) for j in jobs)  # its runners are still at work
    wait_until(lambda: not any(map(alive, warm)), 30, what="its warm claimer to exit")
    done = fleet.wait_final(ids, timeout=60)
    assert [(j.status.value, j.host, j.attempt) for j in done] == [("succeeded", "h1", 1)] * 2
    assert sorted(line["id"] for line in marker_lines(marker)) == sorted(ids)


def _per_host_peaks(fleet, spans_path) -> dict[str, int]:
    """The peak overlap of each host's jobs, from their own timestamps."""
    by_id = {}
    for line in spans_path.read_text().splitlines():
        span = json.loads(line)
        by_id[span["id"]] = (span["start"], span["end"])
    per_host: dict[str, list] = {}
    for job_id, span in by_id.items():
        per_host.setdefault(fleet.job(job_id).host, []).append(span)
    return {host: peak_concurrency(spans) for host, spans in per_host.items()}


LIMITS = {
    # name: (the config, the peak it allows for 9 jobs of 1 s on 3 hosts)
    "max_concurrent": ({"max_concurrent": 3, "worker_slots": 2}, 3),
    "per_class": (
        {
            "max_concurrent": 16,
            "worker_slots": 3,
            "allowed_classes": [
                {"class": "testjobs.tasks.Tasks", "max_concurrent": 2},
                "testjobs.more.Other",
            ],
        },
        2,
    ),
    "worker_slots": ({"max_concurrent": 16, "worker_slots": 1}, 3),
}


@pytest.mark.slow
@pytest.mark.parametrize("limit", sorted(LIMITS))
def test_the_limits_hold_across_hosts(fleet, limit):
    """Three hosts; the peak of the jobs' own [start, end) spans reaches the
    limit and never exceeds it: max_concurrent across the fleet, a class's
    max_concurrent, and worker_slots on each host."""
    config, expected = LIMITS[limit]
    fleet.configure(**config)
    for host in ("h1", "h2", "h3"):
        fleet.start_worker(host)
    spans, others = fleet.root / "spans.jsonl", fleet.root / "others.jsonl"
    ids = [fleet.submit("record_span", str(spans), 1.0) for _ in range(9)]
    if limit == "per_class":  # another class alongside, not held by Tasks' limit
        ids += [fleet.submit("record_span", str(others), 1.0, cls="testjobs.more.Other") for _ in range(4)]
    jobs = fleet.wait_final(ids, timeout=120)
    assert all(j.status.value == "succeeded" for j in jobs), fleet.diagnostics()

    peak = peak_concurrency(recorded_spans(spans))
    assert peak == expected, (limit, peak)  # reached (the measure sees it), never exceeded
    hosts = {j.host for j in jobs}
    if limit == "worker_slots":
        assert _per_host_peaks(fleet, spans) == {"h1": 1, "h2": 1, "h3": 1}
    else:
        assert all(p <= config["worker_slots"] for p in _per_host_peaks(fleet, spans).values())
    if limit == "per_class":
        # Tasks held to 2 while Other ran beside it: the class limit, not the fleet's.
        both = peak_concurrency(recorded_spans(spans) + recorded_spans(others))
        assert both > expected, both
    assert len(hosts) >= 2, hosts


@pytest.mark.slow
def test_a_stale_runner_is_fenced_and_the_second_run_is_the_jobs_end(fleet, pg_server):
    """h1's runner is stopped (SIGSTOP) past fence_after: it keeps its lock, so
    no host settles the job. Then its sessions are cut (a network partition,
    from the server's side): h2 settles the job as lost and runs it again.
    Woken (SIGCONT) with its first attempt still running, the stale runner
    fences itself: it stops that attempt and exits, and writes nothing."""
    from bgjobs.worker import SWEEP

    fence_after = 3
    fleet.configure(max_retries=1, fence_after=fence_after)
    fleet.start_worker("h1")
    runs = fleet.root / "runs.jsonl"
    job_id = fleet.submit("long_then_short", str(runs), 300, 0.5, cls="testjobs.more.Other")
    job = fleet.wait_running(job_id)
    assert job.host == "h1"
    wait_until(lambda: marker_lines(runs), 30, what="the first run to start")
    worker = fleet.workers["h1"]
    worker.send_signal(signal.SIGTERM)  # h1 takes no more work; its runner runs on
    assert worker.wait(20) == 0
    fleet.start_worker("h2")

    kill(job.runner_pid, signal.SIGSTOP)
    try:
        # Its lease is older than fence_after, and h2 has swept since: still
        # its job, as a stopped runner keeps its lock.
        wait_until(
            lambda: fleet.store.db_now() - fleet.job(job_id).updated_at >= fence_after + 2 * SWEEP + 1,
            60,
            interval=0.1,
            what="the stopped runner's lease to age",
        )
        held = fleet.job(job_id)
        assert (held.status.value, held.attempt, held.host) == ("running", 1, "h1")

        assert terminate_sessions(pg_server, fleet.url, "bgjobs h1") >= 1
        second = fleet.wait_final([job_id], timeout=60)[0]
        assert (second.status.value, second.attempt, second.host) == ("succeeded", 2, "h2")
        assert json.loads(second.result) == "run 2"
        assert alive(job.pid)  # the stale attempt runs on: its runner is only stopped
        tail = fleet.store.output_tail(job_id)
    finally:
        kill(job.runner_pid, signal.SIGCONT)

    # The stale runner stops its attempt and exits, long before the attempt's 300 s.
    wait_until(lambda: gone_or_zombie(job.pid), 20, what="the stale attempt to be stopped")
    wait_until(lambda: gone_or_zombie(job.runner_pid), 20, what="the stale runner to exit")
    after = fleet.job(job_id)
    assert after == second  # nothing it wrote landed
    assert fleet.store.output_tail(job_id) == tail
    events = fleet.events(job_id)
    names = [r["event"] for r in events]
    assert names.count("lost") == 1 and names.count("succeeded") == 1, names
    assert next(r for r in events if r["event"] == "succeeded")["host"] == "h2"
    assert [line["run"] for line in marker_lines(runs)] == [1, 2]
    # It said so in its output file, on its own host.
    assert f"fenced: job {job_id}" in (fleet.root / "logs-h1" / "jobs" / f"{job_id}.out").read_text()


@pytest.mark.slow
def test_a_postgresql_restart_with_jobs_running_settles_nothing_early_and_runs_nothing_twice(
    fleet, pg_server, capsys
):
    """A restart frees every advisory lock at once. The runners take theirs
    back within fence_after, so no host settles their jobs, and each runs once
    (a job settled as lost would be retried, and write a second line)."""
    fleet.configure(fence_after=10, max_retries=2)
    fleet.start_worker("h1")
    fleet.start_worker("h2")
    marker = fleet.root / "runs.jsonl"
    ids = [fleet.submit("record_start", str(marker), 8) for _ in range(4)]
    for job_id in ids:
        fleet.wait_running(job_id)
    wait_until(lambda: len(marker_lines(marker)) == 4, 30, what="every job to start")
    assert {fleet.job(i).host for i in ids} == {"h1", "h2"}
    assert advisory_locks_held(pg_server, fleet.url) >= set(ids)

    t0 = time.monotonic()
    try:
        pg_server.restart()
    finally:
        pg_server.wait_ready()  # the session's server stays up for the other tests
    with capsys.disabled():
        print(f"\nPostgreSQL restarted in {time.monotonic() - t0:.2f}s")
    # This process's connections were ended too: the client's first write after
    # the restart goes through on a new one (the ended one is noticed unused).
    late = fleet.submit("record_start", str(marker), 0.2)
    # Each runner takes its job's lock back (within fence_after), while its job runs.
    try:
        wait_until(
            lambda: advisory_locks_held(pg_server, fleet.url) >= set(ids),
            8,
            interval=0.1,
            what="the runners to take their locks back",
        )
    except AssertionError as exc:
        held = advisory_locks_held(pg_server, fleet.url)
        raise AssertionError(f"{exc}: held {held}\n{fleet.diagnostics()}") from None
    assert all(fleet.job(i).status.value == "running" for i in ids)

    jobs = fleet.wait_final(ids, timeout=120)
    assert [(j.status.value, j.attempt) for j in jobs] == [("succeeded", 1)] * 4, fleet.diagnostics()
    runs = Counter(line["id"] for line in marker_lines(marker))
    assert {i: runs[i] for i in ids} == dict.fromkeys(ids, 1), runs
    for job_id in ids:
        assert [r["event"] for r in fleet.events(job_id)].count("lost") == 0
    # The workers came through the restart: they still take work.
    for host in ("h1", "h2"):
        assert fleet.workers[host].poll() is None, fleet.worker_output(host)
    more = [late] + [fleet.submit("record_start", str(marker), 0.2) for _ in range(3)]
    assert all(j.status.value == "succeeded" for j in fleet.wait_final(more, timeout=60)), fleet.diagnostics()
    runs = Counter(line["id"] for line in marker_lines(marker))
    assert runs == Counter(dict.fromkeys(ids + more, 1)), runs


@pytest.mark.slow
def test_a_cross_host_cancel_of_a_stuck_runner_ends_cancelled_by_its_hosts_sweep(fleet, capsys):
    """h1's runner is stopped (SIGSTOP), so it cannot act on the cancel. The
    client cannot signal another host's processes: h1's sweep force-stops the
    runner once the grace (and its margin) is over, and the job is settled
    cancelled. job-cancel waits for that, and says cancelled."""
    fleet.configure(fence_after=20, cancel_grace=1)
    fleet.start_worker("h1")
    pidfile = fleet.root / "grandchild.pid"
    job_id = fleet.submit("spawn_sleep", str(pidfile))
    job = fleet.wait_running(job_id)
    grandchild = int(wait_until(lambda: pidfile.exists() and pidfile.read_text(), 30, what="the grandchild"))
    kill(job.runner_pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        out = fleet.cli("job-cancel", str(job_id))
        took = time.monotonic() - t0
    finally:
        kill(job.runner_pid, signal.SIGCONT)
    done = fleet.wait_final([job_id], timeout=60)[0]
    with capsys.disabled():
        print(f"\ncross-host cancel of a stuck runner: job-cancel took {took:.2f}s, exit {out.returncode}")
    assert done.status.value == "cancelled", fleet.diagnostics()
    wait_until(lambda: gone_or_zombie(grandchild), 10, what="the grandchild to be killed")
    assert gone_or_zombie(job.pid)
    assert (out.returncode, out.stdout.strip()) == (0, f"job {job_id} cancelled"), out


@pytest.mark.slow
def test_a_runner_whose_session_was_cut_waits_out_a_probe_of_its_lock_and_takes_it_back(fleet, pg_server):
    """The runner's sessions are ended (as by a restart); before it can take
    its lock back, another session (a reconciler's probe, here held longer
    than a probe takes, as on a busy host) has it. That is no reason to fence:
    within fence_after the runner waits, takes it back, and its job runs once."""
    import psycopg

    fleet.configure(fence_after=10, max_retries=2)
    fleet.start_worker("h1")
    marker = fleet.root / "runs.jsonl"
    job_id = fleet.submit("record_start", str(marker), 6)
    job = fleet.wait_running(job_id)
    wait_until(lambda: job_id in advisory_locks_held(pg_server, fleet.url), 10, what="the runner's lock")
    with psycopg.connect(fleet.url, autocommit=True) as probe:
        assert terminate_sessions(pg_server, fleet.url, "bgjobs h1") >= 1
        wait_until(
            lambda: probe.execute("SELECT pg_try_advisory_lock(%s)", (job_id,)).fetchone()[0],
            10,
            what="the probe to take the freed lock",
        )
        time.sleep(3)  # the probe holds it across the runner's next polls (not a wait for a condition)
        probe.execute("SELECT pg_advisory_unlock(%s)", (job_id,))
    wait_until(
        lambda: job_id in advisory_locks_held(pg_server, fleet.url), 10, what="the runner to take it back"
    )
    done = fleet.wait_final([job_id], timeout=60)[0]
    assert (done.status.value, done.attempt, done.host) == ("succeeded", 1, "h1"), fleet.diagnostics()
    assert len(marker_lines(marker)) == 1
    assert "fenced" not in (fleet.root / "logs-h1" / "jobs" / f"{job_id}.out").read_text()
    assert gone_or_zombie(job.runner_pid) or fleet.job(job_id).is_final
