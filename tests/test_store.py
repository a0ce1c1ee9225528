"""The store's promises: schema versioning, compare-and-set, final is final."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from bgjobs.errors import StoreError
from bgjobs.job import Status
from bgjobs.store import SCHEMA_VERSION, Store


def _insert(store: Store, **overrides):
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
    return store.insert(**values)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "jobs.sqlite3")
    yield s
    s.close()


def test_schema_is_versioned_and_in_wal_mode(store, tmp_path):
    _insert(store)
    conn = sqlite3.connect(tmp_path / "jobs.sqlite3")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="upgrade bgjobs"):
        Store(path).get(1)


def test_row_round_trip(store):
    job = _insert(store)
    assert job.id == 1 and job.status is Status.QUEUED and job.params == ("a", 1)
    assert store.get(1) == job


def claim_all(store):
    return store.claim_due(max_running=10, class_limits={}, accept=lambda job: object())


def test_final_states_never_change(store):
    job = _insert(store)
    claim_all(store)
    assert store.start_attempt(job.id, 1, 1).attempt == 1
    assert store.succeed(job.id, None).status is Status.SUCCEEDED
    assert store.cancel_waiting(job.id, "cli", None) is None
    assert store.request_cancel(job.id, "cli", None, 1.0) is None
    assert store.fail_attempt(job.id, retry_at=None, error="x") is None
    assert store.cancelled(job.id) is None
    assert store.get(job.id).status is Status.SUCCEEDED


def test_claim_respects_priority_then_age_and_limits(store):
    ids = [_insert(store, priority=p).id for p in (5, 0, 5, -1, 0)]
    claimed = store.claim_due(max_running=3, class_limits={}, accept=lambda job: True)
    assert [j.id for j, _ in claimed] == [ids[3], ids[1], ids[4]]
    assert store.claim_due(max_running=3, class_limits={}, accept=lambda job: True) == []


def test_per_class_limit_in_claim(store):
    _insert(store, class_path="a.A")
    _insert(store, class_path="a.A")
    b = _insert(store, class_path="b.B")
    claimed = store.claim_due(max_running=5, class_limits={"a.A": 1}, accept=lambda job: True)
    assert sorted(j.id for j, _ in claimed) == [1, b.id]


RACE = textwrap.dedent("""
    import sys
    from bgjobs.store import Store
    store = Store(sys.argv[1])
    won = store.request_cancel(1, sys.argv[2], None, 1.0)
    print("won" if won else "lost")
""")


def test_racing_writers_cannot_both_win(store, tmp_path):
    job = _insert(store)
    claim_all(store)
    store.start_attempt(job.id, 1, 1)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(tmp_path / "jobs.sqlite3"), f"w{i}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(12)
    ]
    results = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert results.count("won") == 1, results
    assert results.count("lost") == 11


def test_a_schema_3_store_is_migrated_to_class_path(tmp_path):
    """Schema 4 renames the column `class` to `class_path`, as Job names it; the
    partial index on running jobs follows the rename and is still used."""
    from bgjobs.store import MIGRATIONS

    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:3]:
        for ddl in step:
            old.execute(ddl)
    old.execute("PRAGMA user_version = 3")
    columns = "class, method, params, status, max_attempts, retry_delay, retry_backoff, cancel_grace"
    for status in ("running", "queued", "queued"):
        old.execute(
            f"INSERT INTO jobs ({columns}, run_after, created_at, updated_at) "
            "VALUES ('a.A', 'run', '[1]', ?, 1, 0, 1, 1, 0, 0, 0)",
            (status,),
        )
    old.close()

    store = Store(path)
    assert store.get(1).class_path == "a.A" and store.get(1).to_dict()["class"] == "a.A"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    names = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
    assert "class_path" in names and "class" not in names
    (index,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_running'").fetchone()
    assert index == "CREATE INDEX jobs_running ON jobs (class_path) WHERE status = 'running'"
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    # The running a.A job fills its class's one slot: nothing more of a.A is claimed.
    assert store.claim_due(max_running=5, class_limits={"a.A": 1}, accept=lambda job: True) == []
    assert [j.id for j in store.list_jobs(class_path="a.A")] == [3, 2, 1]
    assert [j.id for j in store.list_jobs(text="A.run")] == [3, 2, 1]
    store.close()
