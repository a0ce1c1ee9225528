"""One conformance suite for both job stores: the SQLite file (bgjobs.store)
and PostgreSQL (bgjobs.pgstore). Each test runs against each store and holds
it to the same promises: rows, filters and counts, claim order and limits,
every transition a compare-and-set, one winner among racing processes, the
fencing of a stale runner, and a delayed job not claimed before its time.

The tests after them hold what only PostgreSQL has to: the database's clock,
claim limits under concurrent claimers on several hosts, the claim's plan, the
schema and its migration, and a server restart. Real processes, a real
PostgreSQL (tests/pgserver.py; skipped, saying why, where none can be had)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from bgjobs.errors import StoreError
from bgjobs.job import Status
from bgjobs.store import Store
from tests.conftest import REPO, wait_until


def _values(**overrides) -> dict:
    values = dict(
        class_path="x.Y",
        method="run",
        params=["a", 1],
        priority=0,
        max_attempts=2,
        retry_delay=0.0,
        retry_backoff=1.0,
        timeout=None,
        cancel_grace=1.0,
    )
    values.update(overrides)
    return values


# How a program in another process opens the store under test: "sqlite:PATH"
# or "postgresql:URL", and a host name.
OPEN_STORE = textwrap.dedent("""
    def open_store(spec, host):
        kind, _, where = spec.partition(":")
        if kind == "sqlite":
            from bgjobs.store import Store
            return Store(where)
        from bgjobs.pgstore import PgStore
        return PgStore(where, host)
""")


class Backend:
    """One store under test, and as many handles on it as a test wants (each
    its own connection, as another process or host would have)."""

    def __init__(self, kind: str, where: str) -> None:
        self.kind, self.where = kind, where
        self.opened: list = []

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.where}"

    @property
    def fleet(self) -> bool:
        return self.kind == "postgresql"

    def store(self, host: str = "h1", **options):
        if self.fleet:
            from bgjobs.pgstore import PgStore

            handle = PgStore(self.where, host, **options)
        else:
            handle = Store(self.where, **options)
        self.opened.append(handle)
        return handle

    def close(self) -> None:
        for handle in self.opened:
            handle.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    if request.param == "sqlite":
        b = Backend("sqlite", str(tmp_path / "jobs.sqlite3"))
    else:
        b = Backend("postgresql", request.getfixturevalue("pg_url"))
    yield b
    b.close()


@pytest.fixture
def store(backend):
    return backend.store()


def claim(store, max_running: int = 10, class_limits=None, **options) -> list:
    taken = store.claim_due(
        max_running=max_running, class_limits=class_limits or {}, accept=lambda job: True, **options
    )
    return [job for job, _ in taken]


def running(store, **values):
    """A new job, claimed and at its first attempt, as its runner sees it."""
    job = store.insert(**_values(**values))
    (claimed,) = store.claim_due(
        max_running=100, class_limits={}, accept=lambda j: True if j.id == job.id else None
    )
    return store.start_attempt(claimed[0].id, os.getpid(), 1)


# --- rows, filters, counts --------------------------------------------------------


def test_insert_and_get_round_trip(store):
    before = time.time()
    job = store.insert(**_values(user="ann", source="cli"), on_insert=lambda i: None)
    assert job.status is Status.QUEUED and job.attempt == 0 and job.params == ("a", 1)
    assert job.user == "ann" and job.source == "cli" and job.class_path == "x.Y"
    assert store.get(job.id) == job
    assert abs(job.created_at - before) < 5 and job.run_after == job.created_at == job.updated_at
    assert store.insert(**_values()).id > job.id
    assert store.get(job.id + 1000) is None


def test_on_insert_sees_the_id_before_the_commit_and_an_error_there_inserts_nothing(store):
    seen = []
    job = store.insert(**_values(), on_insert=seen.append)
    assert seen == [job.id]

    def refuse(job_id):
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        store.insert(**_values(), on_insert=refuse)
    assert [j.id for j in store.list_jobs()] == [job.id]


def test_list_jobs_filters(store):
    a = store.insert(**_values(class_path="a.Alpha", method="fetch"))
    b = store.insert(**_values(class_path="b.Beta", params=["needle"]))
    c = store.insert(**_values(class_path="a.Alpha"))
    claim(store, 1)  # a runs
    assert [j.id for j in store.list_jobs()] == [c.id, b.id, a.id]
    assert [j.id for j in store.list_jobs(limit=2)] == [c.id, b.id]
    assert [j.id for j in store.list_jobs(statuses=("running",))] == [a.id]
    assert [j.id for j in store.list_jobs(statuses=("queued", "running"), class_path="a.Alpha")] == [
        c.id,
        a.id,
    ]
    assert [j.id for j in store.list_jobs(text="NEEDLE")] == [b.id]  # case-insensitive
    assert [j.id for j in store.list_jobs(text="alpha.fetch")] == [a.id]
    assert store.list_jobs(since=time.time() + 60) == []
    assert len(store.list_jobs(since=time.time() - 60, until=time.time() + 60)) == 3
    assert store.list_jobs(until=time.time() - 60) == []
    assert [j.id for j in store.jobs_in(Status.QUEUED)] == [b.id, c.id]


def test_counts_active_waiting_and_next_due(store):
    assert store.counts() == {} and not store.has_active() and not store.has_waiting()
    assert store.next_due() is None
    later = time.time() + 100
    first = store.insert(**_values())
    delayed = store.insert(**_values(), run_after=later)
    assert store.has_waiting() and store.has_active()
    assert store.next_due() == pytest.approx(first.run_after, abs=0.05)
    claim(store)
    assert store.counts() == {"running": 1, "queued": 1}
    assert store.next_due() == pytest.approx(later, abs=0.05)
    store.start_attempt(first.id, os.getpid(), 1)
    store.succeed(first.id, None)
    assert store.counts() == {"succeeded": 1, "queued": 1}
    assert store.counts(since=time.time() + 60) == {"queued": 1}  # finished before then
    assert store.cancel_waiting(delayed.id, "cli", None) is not None
    assert not store.has_active() and not store.has_waiting() and store.next_due() is None


def test_due_count_and_running_on(backend):
    here, there = backend.store(host="h1"), backend.store(host="h2")
    assert here.due_count() == 0 and here.running_on("h1") == 0
    for _ in range(5):
        here.insert(**_values())
    here.insert(**_values(), run_after=time.time() + 100)
    assert here.due_count() == 5 and here.due_count(limit=2) == 2 and here.due_count(limit=0) == 0
    claim(here, 2)
    claim(there, 10, host_slots=3)
    assert here.due_count() == (0 if backend.fleet else 2)
    if backend.fleet:
        assert (here.running_on("h1"), here.running_on("h2"), here.running_on("h3")) == (2, 3, 0)
    else:  # one host: every running job is this host's
        assert here.running_on("h1") == here.running_on("h2") == 3


def test_hosts_are_recorded_with_the_database_clock(backend):
    if not backend.fleet:
        pytest.skip("one host: no hosts table")
    store = backend.store(host="web-1")
    job = store.insert(**_values())
    claim(store)
    store.upsert_host(
        name="web-1", pid=11, started=time.time() - 60, slots=4, version="1.0", config_fingerprint="ab"
    )
    store.upsert_host(
        name="web-2", pid=12, started=time.time(), slots=2, version="1.0", config_fingerprint="ab"
    )
    store.upsert_host(
        name="web-1", pid=13, started=time.time(), slots=8, version="1.1", config_fingerprint="cd"
    )
    rows = store.hosts()
    assert [(r["name"], r["pid"], r["slots"], r["running"], r["version"]) for r in rows] == [
        ("web-1", 13, 8, 1, "1.1"),
        ("web-2", 12, 2, 0, "1.0"),
    ]
    assert all(0 <= r["seen_ago"] < 5 and abs(r["started"] - time.time()) < 5 for r in rows)
    assert store.get(job.id).status is Status.RUNNING


# --- claims ----------------------------------------------------------------------


def test_claim_order_is_priority_then_age(store):
    ids = [store.insert(**_values(priority=p)).id for p in (5, 0, 5, -1, 0)]
    assert [j.id for j in claim(store, 3)] == [ids[3], ids[1], ids[4]]
    assert claim(store, 3) == []
    taken = store.get(ids[3])
    assert taken.status is Status.RUNNING and taken.runner_pid is None and taken.pid is None
    assert [j.id for j in claim(store, 5)] == [ids[0], ids[2]]


def test_claim_limits_global_and_per_class(store):
    a = [store.insert(**_values(class_path="a.A")).id for _ in range(3)]
    b = store.insert(**_values(class_path="b.B")).id
    assert [j.id for j in claim(store, 5, {"a.A": 1})] == [a[0], b]
    assert claim(store, 5, {"a.A": 1}) == []
    assert [j.id for j in claim(store, 3)] == [a[1]]  # the global limit: 3 running
    assert claim(store, 3) == []


def test_a_backlog_of_a_class_at_its_limit_never_blocks_another_class(store):
    store.insert(**_values(class_path="a.A"))
    assert len(claim(store, 4, {"a.A": 1})) == 1
    for _ in range(100):
        store.insert(**_values(class_path="a.A"))
    b = store.insert(**_values(class_path="b.B"))
    offered = []
    taken = store.claim_due(
        max_running=4, class_limits={"a.A": 1}, accept=lambda job: offered.append(job.id) or True
    )
    assert [job.id for job, _ in taken] == [b.id] and offered == [b.id]


def test_a_claim_passes_refused_jobs_and_looks_at_a_bounded_number(store):
    ids = [store.insert(**_values()).id for _ in range(100)]
    taken = store.claim_due(max_running=3, class_limits={}, accept=lambda job: job.id > ids[1] or None)
    assert [job.id for job, _ in taken] == ids[2:5]
    offered = []
    assert store.claim_due(max_running=10, class_limits={}, accept=lambda job: offered.append(job.id)) == []
    assert 0 < len(offered) <= 64 and offered == sorted(offered)
    assert store.get(ids[0]).status is Status.QUEUED


def store_counts_running(store) -> int:
    return store.counts().get("running", 0)


def test_host_slots_cap_what_one_host_runs(backend):
    here, there = backend.store(host="h1"), backend.store(host="h2")
    for _ in range(6):
        here.insert(**_values())
    assert len(claim(here, 10, host_slots=2)) == 2
    assert claim(here, 10, host_slots=2) == []
    # Another host has slots of its own in a fleet; on one host (SQLite) every
    # running job is this host's, so the cap is a second global limit.
    assert len(claim(there, 10, host_slots=2)) == (2 if backend.fleet else 0)
    assert len(claim(there, 10)) == (2 if backend.fleet else 4)  # without it, max_running limits
    assert store_counts_running(here) == 6


def test_a_due_row_with_unreadable_params_fails_at_the_claim(backend, store):
    bad = store.insert(**_values())
    good = store.insert(**_values())
    if backend.fleet:
        import psycopg

        with psycopg.connect(backend.where, autocommit=True) as conn:
            conn.execute("UPDATE jobs SET params = 'not json' WHERE id = %s", (bad.id,))
    else:
        import sqlite3

        conn = sqlite3.connect(backend.where, isolation_level=None)
        conn.execute("UPDATE jobs SET params = 'not json' WHERE id = ?", (bad.id,))
        conn.close()
    assert [j.id for j in claim(store)] == [good.id]
    failed = store.get(bad.id)
    assert failed.status is Status.FAILED and "params are not a JSON array" in failed.error


# --- transitions: each a compare-and-set ---------------------------------------------


def test_every_transition_returns_none_from_the_wrong_state(store):
    waiting = store.insert(**_values())
    # From queued, only a claim or cancel_waiting may move it.
    assert store.unclaim(waiting.id, "x") is None
    assert store.start_attempt(waiting.id, os.getpid(), 1) is None
    assert store.succeed(waiting.id, None) is None
    assert store.fail_attempt(waiting.id, retry_at=None, error="x") is None
    assert store.cancelled(waiting.id) is None
    assert store.request_cancel(waiting.id, "cli", None, 1.0) is None
    assert store.mark_lost(waiting.id, retry_at=None, cancelled=False, error="x") is None
    assert store.get(waiting.id) == waiting
    # From running, a cancel is a flag, not a transition; cancel_waiting is refused.
    job = running(store)
    assert store.cancel_waiting(job.id, "cli", None) is None
    assert store.unclaim(job.id, "no runner").status is Status.QUEUED
    job = running(store)
    flagged = store.request_cancel(job.id, "cli", "ann", 3.0)
    assert flagged.cancel_source == "cli" and flagged.cancel_grace == 3.0 and flagged.status is Status.RUNNING
    assert store.request_cancel(job.id, "api", None, 1.0) is None
    done = store.cancelled(job.id, error="cancelled", exit_code=None, exit_signal=15)
    assert done.status is Status.CANCELLED and done.finished_at >= done.started_at
    # Nothing leaves a final state.
    for final in (done, store.cancel_waiting(waiting.id, "cli", None)):
        assert final.is_final
        assert store.succeed(final.id, None) is None
        assert store.fail_attempt(final.id, retry_at=time.time(), error="x") is None
        assert store.cancelled(final.id) is None
        assert store.cancel_waiting(final.id, "cli", None) is None
        assert store.request_cancel(final.id, "cli", None, 1.0) is None
        assert store.mark_lost(final.id, retry_at=None, cancelled=True, error="x") is None
        assert store.start_attempt(final.id, os.getpid(), 1) is None
        assert store.get(final.id).status is final.status


def test_an_attempt_succeeds_or_fails_into_a_retry(store):
    job = running(store)
    assert job.attempt == 1 and job.started_at is not None and job.runner_pid == os.getpid()
    store.set_attempt_process(job.id, 4242, 99)
    store.set_progress(job.id, 0.5, "half")
    store.set_output_error(job.id, "disk full")
    now = store.get(job.id)
    assert (now.pid, now.pid_start, now.progress, now.progress_message) == (4242, 99, 0.5, "half")
    assert now.output_error == "disk full"
    retry_at = time.time() + 60
    retrying = store.fail_attempt(job.id, retry_at=retry_at, exception="ValueError", error="bad", exit_code=1)
    assert retrying.status is Status.RETRYING and retrying.run_after == pytest.approx(retry_at, abs=0.05)
    assert (retrying.exception, retrying.error, retrying.exit_code) == ("ValueError", "bad", 1)
    assert claim(store) == []  # not due yet
    assert [j.id for j in claim(store, now=retry_at + 1)] == [job.id]
    second = store.start_attempt(job.id, os.getpid(), 1)
    assert second.attempt == 2 and second.started_at == job.started_at and second.progress is None
    done = store.succeed(job.id, '"ok"')
    assert done.status is Status.SUCCEEDED and done.result == '"ok"' and done.exception is None
    assert done.progress == 1.0 and done.exit_code == 0


def test_mark_lost_settles_a_running_job_once(store):
    job = running(store)
    lost = store.mark_lost(job.id, retry_at=time.time(), cancelled=False, error="its runner died")
    assert (
        lost.status is Status.RETRYING and lost.exception == "RunnerLost" and lost.error == "its runner died"
    )
    assert store.mark_lost(job.id, retry_at=None, cancelled=False, error="again") is None
    claim(store)
    store.start_attempt(job.id, os.getpid(), 1)
    failed = store.mark_lost(job.id, retry_at=None, cancelled=False, error="died again")
    assert failed.status is Status.FAILED and failed.finished_at is not None
    other = running(store)
    store.request_cancel(other.id, "cli", None, 1.0)
    cancelled = store.mark_lost(other.id, retry_at=None, cancelled=True, error="cancelled; runner died")
    assert cancelled.status is Status.CANCELLED and cancelled.exception is None


RACE = OPEN_STORE + textwrap.dedent("""
    import sys
    store = open_store(sys.argv[1], sys.argv[2])
    won = store.request_cancel(int(sys.argv[3]), sys.argv[2], None, 1.0)
    print("won" if won else "lost")
""")


def test_racing_cancels_in_many_processes_have_exactly_one_winner(backend, store):
    job = running(store)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, backend.spec, f"w{i}", str(job.id)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for i in range(12)
    ]
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(results) == ["lost"] * 11 + ["won"], results
    winner = store.get(job.id).cancel_source
    assert results[int(winner[1:])] == "won"


# --- fencing -------------------------------------------------------------------------


def test_a_stale_runner_writes_nothing(backend):
    """Attempt 1's runner is cut off; its job is taken for lost, claimed again
    (on another host, in a fleet) and at attempt 2. Whatever the first runner
    writes then, with its attempt, changes nothing."""
    first, second = backend.store(host="h1"), backend.store(host="h2")
    job = running(first)
    assert second.mark_lost(job.id, retry_at=time.time(), cancelled=False, error="lost") is not None
    assert [j.id for j in claim(second)] == [job.id]
    now = second.start_attempt(job.id, os.getpid(), 2)
    assert now.attempt == 2
    first.set_attempt_process(job.id, 1111, 1, attempt=1)
    first.set_progress(job.id, 0.9, "stale", attempt=1)
    first.set_output_error(job.id, "stale", attempt=1)
    assert first.succeed(job.id, '"stale"', attempt=1) is None
    assert first.fail_attempt(job.id, retry_at=None, attempt=1, error="stale") is None
    assert first.fail_attempt(job.id, retry_at=time.time(), attempt=1, error="stale") is None
    assert first.cancelled(job.id, attempt=1, error="stale") is None
    assert second.get(job.id) == now
    # The runner of attempt 2 writes as ever.
    second.set_progress(job.id, 0.3, "fresh", attempt=2)
    assert second.get(job.id).progress_message == "fresh"
    assert second.succeed(job.id, '"fresh"', attempt=2).status is Status.SUCCEEDED


def test_a_runner_on_another_host_writes_nothing(backend):
    if not backend.fleet:
        pytest.skip("one host: there is no other host")
    here, there = backend.store(host="h1"), backend.store(host="h2")
    job = here.insert(**_values())
    assert [j.host for j in claim(here)] == ["h1"]
    assert there.start_attempt(job.id, os.getpid(), 1) is None  # the claim was h1's
    job = here.start_attempt(job.id, os.getpid(), 1)
    # The same attempt number, from the wrong host: refused.
    there.set_progress(job.id, 0.5, "there", attempt=1)
    assert there.succeed(job.id, None, attempt=1) is None
    assert there.cancelled(job.id, attempt=1) is None
    assert here.get(job.id).progress is None
    # Reconcile's writes (no attempt) are not fenced by host.
    assert there.mark_lost(job.id, retry_at=None, cancelled=False, error="lost").status is Status.FAILED


# --- time ------------------------------------------------------------------------------


def test_a_delayed_job_is_not_claimed_before_its_time(store):
    start = time.time()
    job = store.insert(**_values(), run_after=start + 1.0)
    assert claim(store) == []
    assert store.next_due() == pytest.approx(start + 1.0, abs=0.05)
    taken = wait_until(lambda: claim(store), timeout=10, interval=0.02, what="the delayed job to be due")
    assert [j.id for j in taken] == [job.id]
    assert time.time() >= start + 0.98


def test_times_come_from_the_database_clock(backend):
    """A host whose clock is an hour fast: its job is recorded at the
    database's time, and its "in 1 s" is 1 s, for every host."""
    if not backend.fleet:
        pytest.skip("one host: its clock is the store's")
    hour = 3600.0
    fast = backend.store(host="fast", clock=lambda: time.time() + hour)
    right = backend.store(host="right")
    start = time.time()
    job = fast.insert(**_values(), run_after=fast.clock() + 1.0)
    assert abs(job.created_at - start) < 5  # the database's time, not the host's
    assert job.run_after == pytest.approx(start + 1.0, abs=0.5)
    assert fast.next_due() == pytest.approx(fast.clock() + 1.0, abs=0.5)  # on the caller's clock
    assert claim(right) == [] and claim(fast) == []
    taken = wait_until(lambda: claim(fast), timeout=10, interval=0.02, what="the job to be due")
    assert [j.id for j in taken] == [job.id] and time.time() >= start + 0.9
    # The retry of a job whose attempt failed on the fast host: due in 1 s too.
    fast.start_attempt(job.id, os.getpid(), 1)
    retrying = fast.fail_attempt(job.id, retry_at=fast.clock() + 1.0, attempt=1, error="x")
    assert retrying.run_after == pytest.approx(time.time() + 1.0, abs=0.5)
    assert retrying.updated_at < time.time() + 5


# --- PostgreSQL only: concurrent claims across hosts ---------------------------------

CLAIMER = textwrap.dedent("""
    import json, os, random, sys, time
    import psycopg
    from bgjobs import pg
    from bgjobs.pgstore import PgStore

    url, host, seconds, lock = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    if lock == "own":  # the negative control: each claimer locks a key of its own
        pg.CLAIM_KEY = -1000 - os.getpid()
    store = PgStore(url, host)
    watch = psycopg.connect(url, autocommit=True)
    peak = {"all": 0, "a": 0, "host": 0}
    runs, taken = [], 0
    deadline = time.monotonic() + seconds

    def slow_accept(job):
        time.sleep(0.003)  # as a lock would take: widens the claim's window
        return True

    while time.monotonic() < deadline:
        for job, _ in store.claim_due(
            max_running=3, class_limits={"a.A": 1}, accept=slow_accept, host_slots=2
        ):
            store.start_attempt(job.id, os.getpid(), 1)
            runs.append((time.monotonic() + random.uniform(0.0, 0.03), job.id))
            taken += 1
        # What runs fleet-wide now, all of it committed: never over a limit.
        n_all, n_a, n_host = watch.execute(
            "SELECT count(*), count(*) FILTER (WHERE class_path = 'a.A'), "
            "count(*) FILTER (WHERE host = %s) FROM jobs WHERE status = 'running'",
            (host,),
        ).fetchone()
        peak = {"all": max(peak["all"], n_all), "a": max(peak["a"], n_a), "host": max(peak["host"], n_host)}
        for due, job_id in [r for r in runs if r[0] <= time.monotonic()]:
            runs.remove((due, job_id))
            store.succeed(job_id, None, attempt=1)
        time.sleep(random.uniform(0, 0.002))
    for _, job_id in runs:
        store.succeed(job_id, None, attempt=1)
    print(json.dumps({"peak": peak, "taken": taken}))
""")


def _race_claimers(url: str, lock: str) -> list[dict]:
    """Four claimer processes, two per host, that claim and finish jobs as
    fast as they can for 3 s: each one's peaks of what ran fleet-wide."""
    from bgjobs.pgstore import PgStore

    store = PgStore(url, "setup")
    for i in range(400):
        store.insert(**_values(class_path="a.A" if i % 3 == 0 else "b.B"))
    store.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, f"host{i % 2}", "3", lock],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for i in range(4)
    ]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    assert all(r["taken"] > 0 for r in reports), reports
    return reports


@pytest.mark.slow
def test_claim_limits_hold_under_four_concurrent_claimers_on_two_hosts(pg_url):
    """Four claimer processes, two per host, with max_running 3, a.A limited
    to 1, and 2 slots per host. After every claim each reads what runs
    fleet-wide: no limit is ever exceeded, and the limits were reached."""
    reports = _race_claimers(pg_url, "shared")
    assert all(r["peak"]["all"] <= 3 for r in reports), reports
    assert all(r["peak"]["a"] <= 1 for r in reports), reports
    assert all(r["peak"]["host"] <= 2 for r in reports), reports
    # The limits were reached, so the check above meant something.
    assert max(r["peak"]["all"] for r in reports) == 3, reports
    assert max(r["peak"]["a"] for r in reports) == 1, reports


@pytest.mark.slow
def test_without_the_claim_lock_the_same_claimers_exceed_the_limits(pg_url):
    # The negative control: claims that each lock a key of their own overlap,
    # and the check above sees them run more than the limits allow.
    reports = _race_claimers(pg_url, "own")
    assert max(r["peak"]["all"] for r in reports) > 3, reports


# --- PostgreSQL only: the claim's plan ---------------------------------------------------


def _plans(conn, statements) -> dict[str, str]:
    """Each statement (SQL, parameters) -> its query plan, as EXPLAIN shows it."""
    return {
        sql: "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}", args).fetchall())
        for sql, args in statements
    }


def _claim_statements() -> list[tuple[str, list]]:
    """The claim's SELECT in both its shapes (the plain one, and the one with
    every clause: full classes left out, after a refused row), with the other
    statements that read waiting or running jobs."""
    from bgjobs.pgstore import claim_sql

    due = time.time() + 10
    return [
        (claim_sql(0, False), [due, 20]),
        (claim_sql(2, True), [due, "c0.C", "c1.C", 0, 0.0, 0, 20]),
        ("SELECT min(run_after) FROM jobs WHERE status IN ('queued', 'retrying')", []),
        ("SELECT class_path, count(*) FROM jobs WHERE status = 'running' GROUP BY class_path", []),
        ("SELECT count(*) FROM jobs WHERE status = 'running' AND host = 'h1'", []),
    ]


_BULK = (
    "INSERT INTO jobs (class_path, method, params, status, max_attempts, retry_delay, "
    "retry_backoff, cancel_grace, run_after, created_at, updated_at, finished_at, priority) "
    "SELECT 'd.D', 'run', '[]', %s, 1, 0, 1, 1, g, g, g, g, g %% 7 FROM generate_series(1, %s) g"
)


def test_the_claim_reads_waiting_jobs_through_their_partial_indexes(pg_url):
    """A store in use (many finished jobs, a few waiting, some running): no
    statement of the claim scans the table. Under a large backlog of due
    jobs, the claim reads them in claim order from jobs_waiting and stops at
    its limit, with no sort of the backlog."""
    import psycopg

    from bgjobs.pgstore import PgStore

    store = PgStore(pg_url, "h1")
    for i in range(30):
        store.insert(**_values(class_path=f"c{i % 3}.C", priority=i % 4))
    claim(store, 5)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(_BULK, ("succeeded", 50_000))
        conn.execute("ANALYZE jobs")
        for sql, plan in _plans(conn, _claim_statements()).items():
            assert "Seq Scan on jobs" not in plan, (sql, plan)
            assert "jobs_waiting" in plan or "jobs_running" in plan, (sql, plan)
        conn.execute(_BULK, ("queued", 50_000))
        conn.execute("ANALYZE jobs")
        for sql, plan in list(_plans(conn, _claim_statements()).items())[:2]:
            assert "Index Scan using jobs_waiting on jobs" in plan and "Sort" not in plan, (sql, plan)
    store.close()


# --- PostgreSQL only: the schema -----------------------------------------------------------


OPEN = textwrap.dedent("""
    import sys
    from bgjobs.pgstore import PgStore
    PgStore(sys.argv[1], "h").open()
""")


def test_many_processes_opening_a_new_database_at_once_make_the_schema_once(pg_url):
    import psycopg

    from bgjobs import pg

    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN, pg_url], stderr=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM bgjobs_schema_version").fetchall() == [(pg.SCHEMA_VERSION,)]
        columns = {
            table: [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                    "ORDER BY ordinal_position",
                    (table,),
                )
            ]
            for table in pg.TABLES
        }
    from bgjobs.job import Job

    assert set(columns["jobs"]) == {
        *Job._fields,
        "host",
        "output_tail",
    }  # the SQLite store's, host, output_tail
    assert columns["events"] == [
        "id",
        "ts",
        "level",
        "event",
        "job_id",
        "class",
        "method",
        "attempt",
        "message",
        "host",
        "record",
    ]
    assert columns["hosts"] == [
        "name",
        "pid",
        "started",
        "last_seen",
        "slots",
        "running",
        "version",
        "config_fingerprint",
    ]


def test_a_database_of_other_tables_named_jobs_is_refused_untouched(pg_url):
    import psycopg

    from bgjobs.pgstore import PgStore

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE jobs (title text)")
        conn.execute("INSERT INTO jobs VALUES ('plumber')")
    with pytest.raises(StoreError, match="is not a bgjobs database: it holds tables named jobs") as caught:
        PgStore(pg_url, "h").get(1)
    assert "\n" not in str(caught.value) and caught.value.exit_code == 7
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM jobs").fetchall() == [("plumber",)]
        assert conn.execute("SELECT to_regclass('bgjobs_schema_version')").fetchone() == (None,)


def test_a_database_of_a_newer_schema_is_refused(pg_url):
    import psycopg

    from bgjobs import pg
    from bgjobs.pgstore import PgStore

    PgStore(pg_url, "h").open()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE bgjobs_schema_version SET version = %s", (pg.SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=r"has bgjobs schema version \d+, newer than this bgjobs knows"):
        PgStore(pg_url, "h").get(1)


def test_a_new_database_starts_ids_above_the_id_floor(pg_url):
    from bgjobs.pgstore import PgStore

    store = PgStore(pg_url, "h", id_floor=lambda: 41)
    assert store.insert(**_values()).id == 42
    store.close()
    assert PgStore(pg_url, "h", id_floor=lambda: 1000).insert(**_values()).id == 43  # only when it is new


# --- PostgreSQL only: the server goes away ------------------------------------------------


@pytest.mark.slow
def test_a_server_restart_costs_a_write_at_most_and_never_a_read(pg_server, pg_url):
    from bgjobs.pgstore import PgStore

    store = PgStore(pg_url, "h")
    job = store.insert(**_values())
    pg_server.restart()
    assert store.get(job.id) == job  # a read tries once more, on a new connection
    pg_server.restart()
    try:
        store.insert(**_values())
    except StoreError as exc:  # a write does not: it may have landed
        assert "\n" not in str(exc) and "password" not in str(exc)
    assert store.insert(**_values()).id > job.id
    store.close()
