"""Faults of the store, each met the way the user meets it: a damaged, foreign,
newer or deleted file, a full disk, a race to create the file, a row no
version of bgjobs would write, a cancel after a lost runner. Real SQLite files
in tmp_path and real processes; the console script is the real one."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bgjobs.errors import EXIT_STORE, StoreError
from bgjobs.job import Job, Status, iso
from bgjobs.store import SCHEMA_VERSION, Store, highest_used_id
from tests.conftest import BIN, wait_until

PROGRAMS = Path(__file__).resolve().parent / "programs"


def _values(**overrides) -> dict:
    values = {
        "class_path": "testjobs.tasks.Tasks",
        "method": "sleep",
        "params": [0],
        "priority": 0,
        "max_attempts": 2,
        "retry_delay": 0.0,
        "retry_backoff": 1.0,
        "timeout": None,
        "cancel_grace": 1.0,
    }
    values.update(overrides)
    return values


def _claim_all(store: Store) -> list:
    return store.claim_due(max_running=100, class_limits={}, accept=lambda job: True)


def _a_store_with_jobs(path: Path, n: int = 200) -> None:
    """A real bgjobs store of several pages, closed (so all of it is in the file)."""
    store = Store(path)
    for i in range(n):
        store.insert(**_values(params=["p" * 100, i]))
    store.close()


# --- A. a damaged store is a StoreError, exit code 7, the file untouched ------


def _text_file(path: Path) -> None:
    path.write_text("these are my notes, not a database\n" * 50)


def _truncated(path: Path) -> None:
    _a_store_with_jobs(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbled(path: Path) -> None:
    _a_store_with_jobs(path)
    data = path.read_bytes()  # the header page stays; every b-tree page after it is noise
    path.write_bytes(data[:4096] + bytes((i * 7 + 13) % 256 for i in range(len(data) - 4096)))


def _newer_schema(path: Path) -> None:
    _a_store_with_jobs(path, n=3)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA journal_mode = DELETE")  # all of it in the one file
    conn.close()


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE recipes (name TEXT, steps TEXT)")
    conn.execute("INSERT INTO recipes VALUES ('bread', 'knead')")
    conn.commit()
    conn.close()


def _foreign_with_our_version(path: Path) -> None:
    _foreign(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()


DAMAGE = {
    "text file": (_text_file, "is not a bgjobs database (file is not a database); move it aside"),
    "truncated": (_truncated, "is damaged (database disk image is malformed); move it aside"),
    "garbled": (_garbled, "is damaged (database disk image is malformed); move it aside"),
    "newer schema": (_newer_schema, f"has schema version {SCHEMA_VERSION + 1}, newer than this bgjobs"),
    "foreign database": (_foreign, "is not a bgjobs database (it holds other tables); move it aside"),
    "foreign database, our version": (
        _foreign_with_our_version,
        f"is not a bgjobs database (it has schema version {SCHEMA_VERSION} but no jobs table); move it aside",
    ),
}


def _damaged_store(project, kind: str) -> tuple[Path, bytes, str]:
    db = Path(project.rt.config.db_path)
    db.parent.mkdir(parents=True, exist_ok=True)
    make, message = DAMAGE[kind]
    make(db)
    return db, db.read_bytes(), message


def _job_status(project, *args: str, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "job-status"), "--config", str(project.config_path), *args],
        env=project.env,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec_fn,
    )


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_store_is_exit_7_with_one_line_that_names_the_file(project, kind):
    db, before, message = _damaged_store(project, kind)
    for args in ((), ("--json",), ("1",)):
        proc = _job_status(project, *args)
        assert proc.returncode == EXIT_STORE, (args, proc.returncode, proc.stderr)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"error: {db} ") and message in lines[0], lines[0]
        assert "Traceback" not in proc.stderr
    assert db.read_bytes() == before  # never overwritten, never recreated


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_store_raises_store_error_from_the_api(tmp_path, kind):
    db = tmp_path / "jobs.sqlite3"
    make, message = DAMAGE[kind]
    make(db)
    before = db.read_bytes()
    store = Store(db)
    for call in (
        lambda: store.get(1),
        lambda: store.list_jobs(),
        lambda: store.insert(**_values()),
        lambda: _claim_all(store),
        store.next_due,
    ):
        with pytest.raises(StoreError) as caught:
            call()
        assert message in str(caught.value) and str(db) in str(caught.value)
        assert caught.value.exit_code == EXIT_STORE and caught.value.path == str(db)
        assert "\n" not in str(caught.value)
    store.close()
    assert db.read_bytes() == before


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child, before it execs: a full disk, as far as it can tell
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_under_job_status_is_exit_7_and_the_store_survives(project):
    db = Path(project.rt.config.db_path)
    store = Store(db)
    # A due job whose row is big: claiming it rewrites some 75 pages, more than
    # the 32 KiB the disk has room for (the -shm file needs exactly that).
    job = store.insert(**_values(method="ok", params=["x" * 300_000]))
    store.close()
    before = db.read_bytes()
    proc = _job_status(project, preexec_fn=_file_size_limit(32 * 1024))
    assert proc.returncode == EXIT_STORE, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {db} could not be written"), proc.stderr
    assert "free some space" in lines[0]
    assert db.read_bytes() == before
    # With room again, the job is still queued, whole, and runs.
    assert Store(db).get(job.id).status is Status.QUEUED
    assert project.wait_final(job.id).status is Status.SUCCEEDED


def test_a_full_disk_under_the_api_is_a_store_error_and_keeps_what_was_committed(tmp_path):
    db = tmp_path / "jobs.sqlite3"
    proc = subprocess.run(
        [sys.executable, str(PROGRAMS / "store_disk_full.py"), str(db), str(256 * 1024)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    committed, error = proc.stdout.splitlines()
    assert error.startswith(f"bgjobs.errors.StoreError: {db} could not be written"), error
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone() == (int(committed),)
    assert int(committed) > 0
    conn.close()


def test_a_store_deleted_while_open_is_an_error_that_says_so(tmp_path):
    db = tmp_path / "jobs.sqlite3"
    store = Store(db)
    job = store.insert(**_values())
    os.remove(db)
    for call in (lambda: store.get(job.id), lambda: store.insert(**_values()), lambda: _claim_all(store)):
        with pytest.raises(StoreError, match="was deleted or replaced while this process had it open"):
            call()
    # Another process makes a new store there: this handle does not write into it.
    other = Store(db)
    assert other.insert(**_values()).id == 1
    with pytest.raises(StoreError, match=str(db)):
        store.cancel_waiting(1, "cli", None)
    assert other.get(1).status is Status.QUEUED
    store.close()  # and reopened, it uses the file now there
    assert store.get(1).status is Status.QUEUED
    other.close()
    store.close()


def test_a_store_replaced_while_open_is_an_error_that_says_so(tmp_path):
    db = tmp_path / "jobs.sqlite3"
    store = Store(db)
    store.insert(**_values())
    _a_store_with_jobs(tmp_path / "other.sqlite3", n=5)
    os.replace(tmp_path / "other.sqlite3", db)
    with pytest.raises(StoreError, match="deleted or replaced"):
        store.get(1)
    store.close()


def test_a_new_store_starts_ids_above_those_its_outputs_and_logs_used(tmp_path):
    outputs, log = tmp_path / "logs" / "jobs", tmp_path / "logs" / "background_jobs.log"
    outputs.mkdir(parents=True)
    for job_id in (3, 41, 9):
        (outputs / f"{job_id}.out").write_text("old output\n")
    (outputs / "notes.txt").write_text("")
    log.write_text(
        json.dumps({"event": "queued", "job_id": 57})
        + "\n"
        + "not json\n"
        + json.dumps({"job_id": None})
        + "\n"
    )
    assert highest_used_id(outputs, (str(log), str(log) + ".1")) == 57
    assert highest_used_id(tmp_path / "missing") == 0

    db = tmp_path / "state" / "jobs.sqlite3"
    floor_calls = []

    def floor() -> int:
        floor_calls.append(1)
        return highest_used_id(outputs, (str(log),))

    store = Store(db, id_floor=floor)
    assert store.insert(**_values()).id == 58
    store.close()
    # An existing store keeps its own sequence: the floor is for a new file only.
    (outputs / "500.out").write_text("")
    again = Store(db, id_floor=floor)
    assert again.insert(**_values()).id == 59
    assert len(floor_calls) == 1
    again.close()


# --- B. the claim: a saturated class never blocks others; index-only plans ----


def test_a_backlog_of_a_class_at_its_limit_never_blocks_another_class(tmp_path):
    store = Store(tmp_path / "jobs.sqlite3")
    store.insert(**_values(class_path="a.A"))
    assert len(store.claim_due(max_running=4, class_limits={"a.A": 1}, accept=lambda job: True)) == 1
    for _ in range(200):  # far more than any window the claim once read
        store.insert(**_values(class_path="a.A"))
    b = store.insert(**_values(class_path="b.B"))
    offered = []

    def accept(job):
        offered.append(job.id)
        return True

    claimed = store.claim_due(max_running=4, class_limits={"a.A": 1}, accept=accept)
    assert [job.id for job, _ in claimed] == [b.id] and offered == [b.id]
    assert claimed[0][0] == store.get(b.id) and claimed[0][0].status is Status.RUNNING
    store.close()


def test_a_class_that_fills_up_during_the_claim_leaves_room_for_others(tmp_path):
    store = Store(tmp_path / "jobs.sqlite3")
    a_ids = [store.insert(**_values(class_path="a.A")).id for _ in range(150)]
    b = store.insert(**_values(class_path="b.B"))
    c = store.insert(**_values(class_path="c.C", priority=5))
    claimed = store.claim_due(max_running=5, class_limits={"a.A": 2}, accept=lambda job: True)
    assert [job.id for job, _ in claimed] == [a_ids[0], a_ids[1], b.id, c.id]
    store.close()


def test_a_claim_passes_refused_jobs_and_stops_after_a_bounded_number(tmp_path):
    store = Store(tmp_path / "jobs.sqlite3")
    ids = [store.insert(**_values()).id for _ in range(300)]
    # The first two are locked by live runners: the next ones are taken.
    claimed = store.claim_due(max_running=3, class_limits={}, accept=lambda job: job.id > ids[1] or None)
    assert [job.id for job, _ in claimed] == ids[2:5]
    # A caller that takes no more (launcher.claim's limit) is not offered the whole backlog.
    offered = []
    assert store.claim_due(max_running=10, class_limits={}, accept=lambda job: offered.append(job.id)) == []
    assert 0 < len(offered) <= 64 and offered == sorted(offered)
    store.close()


def _plans(store: Store, calls) -> dict[str, list[str]]:
    """Every SELECT the calls ran on the store's connection -> its query plan."""
    seen: list[str] = []
    conn = store._conn()  # the store's own connection: the statements it really runs
    conn.set_trace_callback(seen.append)
    try:
        for call in calls:
            call()
    finally:
        conn.set_trace_callback(None)
    explain = sqlite3.connect(store.path)
    plans = {
        sql: [row[3] for row in explain.execute(f"EXPLAIN QUERY PLAN {sql}")]
        for sql in seen
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE"))
    }
    explain.close()
    return plans


def test_claim_next_due_and_has_waiting_read_only_indexes(tmp_path):
    store = Store(tmp_path / "jobs.sqlite3")
    for i in range(50):
        store.insert(**_values(class_path=f"c{i % 3}.C", priority=i % 4))
    store.claim_due(max_running=3, class_limits={"c0.C": 1}, accept=lambda job: True)
    plans = _plans(
        store,
        [
            # a saturated class and a refusal: the query with every clause
            lambda: store.claim_due(
                max_running=6, class_limits={"c0.C": 1}, accept=lambda job: job.id > 45 or None
            ),
            store.next_due,
            store.has_waiting,
            lambda: store.due_count(limit=5),
            lambda: store.running_on("here"),
        ],
    )
    claim = [sql for sql in plans if "ORDER BY priority, created_at, id" in sql]
    assert any("NOT IN" in sql and "> (" in sql for sql in claim), claim
    assert any("MIN(run_after)" in sql for sql in plans) and any(sql.startswith("SELECT 1") for sql in plans)
    assert sum("SELECT COUNT(*) FROM" in sql for sql in plans) == 2  # due_count, running_on
    for sql, plan in plans.items():
        for step in plan:
            assert step != "SCAN jobs" and "TEMP B-TREE" not in step, (sql, plan)
    store.close()


# --- C. many processes create the same new store at once ----------------------


def test_sixteen_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    db = tmp_path / "state" / "jobs.sqlite3"
    start = time.time() + 3.0  # time for all sixteen to boot and wait at the line
    procs = [
        subprocess.Popen(
            [sys.executable, str(PROGRAMS / "store_first_open.py"), str(db), repr(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(16)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert sorted(int(out) for out, _ in results) == list(range(1, 17))
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()


def test_a_first_open_waits_while_another_process_sets_the_new_store_up(tmp_path):
    """What two racing first opens do to each other, made to last: another
    connection holds the brand-new file's write lock (as a process does while it
    switches the file to WAL). SQLite then refuses the switch at once, without
    its busy wait; the open must wait and go on, not fail."""
    db = tmp_path / "jobs.sqlite3"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    child = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "store_first_open.py"), str(db), "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The child is up once its interpreter has the file open (it waits on us).
    wait_until(
        lambda: _has_open(child.pid, db) or child.poll() is not None, timeout=30, what="the child to open"
    )
    hold_until = time.monotonic() + 0.5
    wait_until(lambda: child.poll() is not None or time.monotonic() > hold_until, timeout=5, what="the hold")
    holder.execute("ROLLBACK")
    holder.close()
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, out + err
    assert out.strip() == "1"


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


# --- D. a bad row never breaks a listing --------------------------------------


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_rows_no_bgjobs_would_write_never_break_job_status(project):
    db = Path(project.rt.config.db_path)
    Store(db).open()
    now = time.time()
    conn = sqlite3.connect(db)
    columns = (
        "class_path, method, params, status, priority, attempt, max_attempts, retry_delay, retry_backoff, "
        "cancel_grace, run_after, created_at, updated_at, started_at, finished_at, progress, timeout"
    )
    good = ("testjobs.tasks.Tasks", "sleep", "[0]")
    rows = {
        "params not json": (
            *good[:2],
            "{not json",
            "failed",
            0,
            1,
            1,
            0,
            1,
            1,
            now,
            now,
            now,
            now,
            now,
            None,
            None,
        ),
        "params not a list": (
            *good[:2],
            '{"a": 1}',
            "succeeded",
            0,
            1,
            1,
            0,
            1,
            1,
            now,
            now,
            now,
            now,
            now,
            1.0,
            5,
        ),
        "unknown status": (*good, "paused", 0, 1, 1, 0, 1, 1, now, now, now, None, None, None, None),
        "text in number columns": (
            *good,
            "failed",
            "high",
            "one",
            "two",
            "x",
            1,
            1,
            "y",
            "z",
            now,
            "a",
            "b",
            "c",
            "d",
        ),
        "run_after 1e300": (*good, "queued", 0, 0, 1, 0, 1, 1, 1e300, now, now, None, None, None, None),
        "run_after inf": (*good, "retrying", 0, 1, 2, 0, 1, 1, float("inf"), now, now, now, None, None, None),
        "times out of range": (
            *good,
            "succeeded",
            0,
            1,
            1,
            0,
            1,
            1,
            -1e300,
            float("-inf"),
            now,
            1e300,
            float("inf"),
            float("inf"),
            float("-inf"),
        ),
        "due, params not json": (
            *good[:2],
            "[1, 2",
            "queued",
            0,
            0,
            1,
            0,
            1,
            1,
            now,
            now,
            now,
            None,
            None,
            None,
            None,
        ),
    }
    ids = {}
    for name, values in rows.items():
        cur = conn.execute(f"INSERT INTO jobs ({columns}) VALUES ({','.join('?' * len(values))})", values)
        ids[name] = cur.lastrowid
    conn.commit()
    conn.close()

    table = project.cli("job-status")
    assert table.returncode == 0, table.stderr
    assert "paused" in table.stdout and "<unreadable params: {not json>" in table.stdout
    listing = project.cli("job-status", "--json")
    assert listing.returncode == 0, listing.stderr
    by_id = {job["id"]: job for job in _strict_json(listing.stdout)}
    assert set(ids.values()) <= set(by_id)
    assert by_id[ids["unknown status"]]["status"] == "paused"
    assert (
        by_id[ids["run_after 1e300"]]["run_after"] is None
        and by_id[ids["run_after inf"]]["run_after"] is None
    )
    assert by_id[ids["text in number columns"]]["priority"] is None
    assert by_id[ids["times out of range"]]["duration"] is None
    for name, job_id in ids.items():
        one = project.cli("job-status", str(job_id))
        assert one.returncode == 0, (name, one.stderr)
        detail = project.cli("job-status", str(job_id), "--json")
        assert detail.returncode == 0, (name, detail.stderr)
        assert _strict_json(detail.stdout)["id"] == job_id
    # The due row whose params cannot be read was not run with made-up params: it failed, saying why.
    bad = by_id[ids["due, params not json"]]
    assert bad["status"] == "failed" and "its row is unreadable (params are not a JSON array" in bad["error"]
    assert not (Path(project.rt.config.log_dir) / "jobs" / f"{ids['due, params not json']}.out").exists()


def test_iso_and_from_row_never_raise():
    for ts in (1e300, -1e300, float("inf"), float("-inf"), float("nan"), "yesterday", b"\x00"):
        assert iso(ts) is None
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"
    row = dict.fromkeys(Job._fields, None)
    row.update(id=1, params="nope", status=None)
    job = Job.from_row(row)
    assert job.params == ("<unreadable params: nope>",) and job.params.text == "nope"
    assert job.status.value == "None" and not job.is_final and not job.is_active
    assert job.to_dict()["created_at"] is None and job.name == "None.None"
    assert job.defect and not job.attempts_left and job.next_retry_delay() == 0.0


# --- E. a cancel clears the exception a lost attempt left ---------------------


def test_a_cancel_after_a_lost_runner_leaves_no_runner_lost_exception(tmp_path):
    store = Store(tmp_path / "jobs.sqlite3")
    job = store.insert(**_values(max_attempts=3))
    _claim_all(store)
    store.start_attempt(job.id, 1, 1)
    lost = store.mark_lost(job.id, retry_at=time.time(), cancelled=False, error="runner died")
    assert (lost.status, lost.exception) == (Status.RETRYING, "RunnerLost")
    # The retry's runner is lost too, after a cancel was asked for.
    _claim_all(store)
    store.start_attempt(job.id, 2, 2)
    store.request_cancel(job.id, "cli", "me", 1.0)
    done = store.mark_lost(job.id, retry_at=None, cancelled=True, error="cancelled; its runner died")
    assert done.status is Status.CANCELLED and done.exception is None
    assert done.to_dict()["exception"] is None and store.get(job.id).to_dict()["exception"] is None

    # The same for a cancel while it waits for its retry, and one the runner carries out.
    waiting = store.insert(**_values(max_attempts=3))
    _claim_all(store)
    store.start_attempt(waiting.id, 1, 1)
    store.mark_lost(waiting.id, retry_at=time.time() + 600, cancelled=False, error="runner died")
    assert store.cancel_waiting(waiting.id, "cli", None).exception is None
    running = store.insert(**_values(max_attempts=3))
    _claim_all(store)
    store.start_attempt(running.id, 1, 1)
    store.mark_lost(running.id, retry_at=time.time(), cancelled=False, error="runner died")
    _claim_all(store)
    store.start_attempt(running.id, 2, 2)
    assert store.cancelled(running.id, error="cancelled", exit_code=None, exit_signal=15).exception is None
    store.close()
