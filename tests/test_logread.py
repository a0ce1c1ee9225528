"""The writer (bgjobs.eventlog) and the pandas-free reader (bgjobs.logread),
with real files and real concurrent writer processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from bgjobs.eventlog import ERRORS_LOG, MAIN_LOG, MAX_LINE, EventLog, backups_of
from bgjobs.logread import (
    Backup,
    Follower,
    Lines,
    RecordTail,
    Reset,
    Sealed,
    drop_long_lines,
    job_lines,
    matches,
    parse_level,
    parse_lines,
    parse_since,
    read_records,
)
from tests.conftest import wait_until

# A writer process: waits for the `go` file so that all writers start together,
# then emits N records; every 50th is an ERROR with a ~20 KB traceback.
WRITER = r"""
import os, sys, time
from bgjobs.eventlog import EventLog
log_dir, writer, n, max_bytes, backups = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
log = EventLog(log_dir, max_bytes, backups)
tb = "Traceback (most recent call last):\n" + "".join(
    f'  File "/srv/jobs/w{writer}.py", line {i}, in step_{i}\n    raise_it(batch[{i}])\n' for i in range(400))
open(os.path.join(log_dir, f"ready-{writer}"), "w").close()
while not os.path.exists(os.path.join(log_dir, "go")):
    time.sleep(0.001)
for seq in range(n):
    long = seq % 50 == 7
    log.emit("attempt_failed" if long else "started", level="ERROR" if long else "INFO",
             message=f"writer {writer} record {seq}", writer=writer, seq=seq,
             traceback=tb if long else None)
"""


def traceback_of(writer: int) -> str:
    return "Traceback (most recent call last):\n" + "".join(
        f'  File "/srv/jobs/w{writer}.py", line {i}, in step_{i}\n    raise_it(batch[{i}])\n'
        for i in range(400)
    )


def start_writers(
    log_dir: Path, writers: int, n: int, max_bytes: int, backups: int
) -> list[subprocess.Popen]:
    """Start the writer processes, and release them all at once."""
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(log_dir), str(w), str(n), str(max_bytes), str(backups)]
        )
        for w in range(writers)
    ]
    wait_until(
        lambda: all((log_dir / f"ready-{w}").exists() for w in range(writers)), 30, what="writers ready"
    )
    (log_dir / "go").touch()
    return procs


def wait_writers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        assert p.wait(timeout=120) == 0


def check_all_written(records: list[dict], writers: int, n: int) -> None:
    """Every (writer, seq) once, each writer's records in order, tracebacks whole."""
    seen: dict[int, list[int]] = {w: [] for w in range(writers)}
    for r in records:
        seen[r["writer"]].append(r["seq"])
        assert r["message"] == f"writer {r['writer']} record {r['seq']}"
        if r["seq"] % 50 == 7:
            assert r["traceback"] == traceback_of(r["writer"])
    for w, seqs in seen.items():
        assert seqs == list(range(n)), f"writer {w} lost or reordered records"


def job(job_id: int = 7, attempt: int = 1) -> SimpleNamespace:
    return SimpleNamespace(id=job_id, class_path="jobs.example.ExampleJob", method="handle", attempt=attempt)


# --- the writer -------------------------------------------------------------


def test_round_trip(tmp_path):
    log = EventLog(tmp_path)
    written = [
        log.emit("queued", job=job(), message="queued", params=[5, True, "x"], source="cli"),
        log.emit(
            "rejected",
            level="ERROR",
            message="no such class",
            class_path="jobs.Nope",
            method="run",
            exception="RejectedError",
            error="no such class",
            traceback=None,
        ),
        log.emit(
            "attempt_failed",
            level="ERROR",
            job=job(),
            message="boom ✓",
            exception="ValueError",
            error="boom",
            traceback="Traceback (most recent call last):\n  ...\nValueError: boom\n",
        ),
    ]
    log.close()
    records, bad = read_records(tmp_path / MAIN_LOG)
    assert records == written and bad == 0
    errors, bad = read_records(tmp_path / ERRORS_LOG)
    assert errors == written[1:] and bad == 0
    assert records[1]["class"] == "jobs.Nope" and records[1]["job_id"] is None


def test_writer_keeps_odd_records_readable(tmp_path):
    log = EventLog(tmp_path)
    log.emit("failed", level="ERROR", job=job(), message="cannot open /tmp/\udcff", error="\udcff")
    log.emit("queued", job=job(), message="huge params", params=list(range(300_000)))
    log.close()
    data = (tmp_path / MAIN_LOG).read_bytes()
    data.decode("utf-8")  # strict: no lone surrogates written raw
    assert all(len(line) < MAX_LINE for line in data.split(b"\n"))
    records, bad = read_records(tmp_path / MAIN_LOG)
    assert bad == 0
    assert records[0]["message"] == "cannot open /tmp/\\udcff"
    assert records[1]["params"].endswith("... [cut]")


@pytest.mark.slow
def test_concurrent_writers_tear_no_line(tmp_path):
    procs = start_writers(tmp_path, writers=20, n=1000, max_bytes=10**12, backups=5)
    wait_writers(procs)
    records, bad = read_records(tmp_path / MAIN_LOG)
    assert bad == 0 and len(records) == 20_000
    check_all_written(records, 20, 1000)
    errors, bad = read_records(tmp_path / ERRORS_LOG)
    assert bad == 0 and len(errors) == 20 * 20


@pytest.mark.slow
def test_rotation_under_concurrent_writers_loses_nothing(tmp_path):
    """Writers rotate a small log many times while a RecordTail follows it."""
    procs = start_writers(tmp_path, writers=20, n=1000, max_bytes=200_000, backups=10_000)
    tail = RecordTail(tmp_path / MAIN_LOG)
    followed: list[dict] = []
    while any(p.poll() is None for p in procs):
        followed += tail.poll()
    wait_writers(procs)
    followed += tail.poll()
    assert len(backups_of(tmp_path / MAIN_LOG)) > 20  # it did rotate, many times
    records, bad = read_records(tmp_path / MAIN_LOG)
    assert bad == 0 and len(records) == 20_000
    check_all_written(records, 20, 1000)
    assert tail.bad_lines == 0 and followed == records
    for f in backups_of(tmp_path / MAIN_LOG):
        # rotated once over the limit: at most one round of writes beyond it
        assert os.stat(f).st_size < 200_000 + 20 * 30_000


def test_threads_sharing_one_eventlog(tmp_path):
    log = EventLog(tmp_path, max_bytes=20_000, backups=10_000)

    def write(t: int) -> None:
        for seq in range(300):
            log.emit("started", message=f"thread {t}", writer=t, seq=seq)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    records, bad = read_records(tmp_path / MAIN_LOG)
    assert bad == 0 and len(records) == 8 * 300
    for t in range(8):
        assert [r["seq"] for r in records if r["writer"] == t] == list(range(300))


def test_forked_child_keeps_its_own_lock(tmp_path):
    log = EventLog(tmp_path, max_bytes=5_000, backups=10_000)
    log.emit("queued", message="before fork", writer=0, seq=0)
    pid = os.fork()
    if pid == 0:  # the child: write through the inherited EventLog, then leave
        try:
            for seq in range(300):
                log.emit("started", message="child", writer=1, seq=seq)
        finally:
            os._exit(0)
    for seq in range(1, 300):
        log.emit("started", message="parent", writer=0, seq=seq)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    records, bad = read_records(tmp_path / MAIN_LOG)
    assert bad == 0
    assert [r["seq"] for r in records if r["writer"] == 0] == list(range(300))
    assert [r["seq"] for r in records if r["writer"] == 1] == list(range(300))


def test_backups_zero_truncates(tmp_path):
    log = EventLog(tmp_path, max_bytes=2_000, backups=0)
    for seq in range(100):
        log.emit("started", message="x", seq=seq)
    assert backups_of(tmp_path / MAIN_LOG) == []
    records, _ = read_records(tmp_path / MAIN_LOG)
    assert records and records[-1]["seq"] == 99


# --- the byte-level follower -----------------------------------------------


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def rec(seq: int, **extra) -> bytes:
    return (
        json.dumps(
            {"ts": "2026-11-28T16:00:00.000Z", "level": "INFO", "event": "started", "seq": seq, **extra}
        )
        + "\n"
    ).encode()


def seqs(records: list[dict]) -> list[int]:
    return [r["seq"] for r in records]


def rotate(path: Path, backups: int = 100) -> None:
    """What EventLog._rotate does: file.N -> file.N+1, file -> file.1."""
    for old in map(Path, reversed(backups_of(path))):
        n = int(old.name.rsplit(".", 1)[1])
        if n >= backups:
            old.unlink()
    for old in map(Path, backups_of(path)):
        n = int(old.name.rsplit(".", 1)[1])
        old.rename(path.with_name(f"{path.name}.{n + 1}"))
    path.rename(path.with_name(path.name + ".1"))


def test_follower_holds_back_a_torn_line_until_it_is_whole(tmp_path):
    path = tmp_path / "log"
    tail = RecordTail(path)
    assert tail.poll() == []  # no file yet
    append(path, rec(1) + rec(2)[:20])
    assert seqs(tail.poll()) == [1] and tail.bad_lines == 0
    assert tail.poll() == [] and tail.bad_lines == 0
    append(path, rec(2)[20:] + rec(3))
    assert seqs(tail.poll()) == [2, 3] and tail.bad_lines == 0
    # one-shot reads leave it out too, uncounted
    append(path, rec(4)[:10])
    assert read_records(path) == (read_records(path)[0], 0)
    assert seqs(read_records(path)[0]) == [1, 2, 3]


def test_bad_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "log"
    junk = [
        b'{"ts": "2026-11-28T16:00:00.000Z", "lev\n',  # torn in the middle (a crash), then a newline
        b"\xff\xfe not utf-8 \xc3\n",
        bytes(range(256)).replace(b"\n", b"") + b"\n",  # binary junk
        b"[1, 2, 3]\n",  # JSON, not an object
        b'"just a string"\n',
        b"42\n",
        b"null\n",
        b"{" * 100_000 + b"\n",  # deeply nested garbage
        b"x" * (10 * 1024 * 1024) + b"\n",  # a 10 MB line
    ]
    data = rec(0)
    for i, line in enumerate(junk, 1):
        data += line + rec(i)
    data += b"\n   \n"  # blank lines are not records, and not bad either
    append(path, data)
    records, bad = read_records(path)
    assert seqs(records) == list(range(len(junk) + 1))
    assert bad == len(junk)


def test_over_long_line_being_written_is_skipped_once(tmp_path):
    path = tmp_path / "log"
    tail = RecordTail(path, max_line=1000)
    append(path, rec(1) + b"y" * 1500)  # no newline yet, already too long
    assert seqs(tail.poll()) == [1] and tail.bad_lines == 1
    append(path, b"y" * 5000)
    assert tail.poll() == [] and tail.bad_lines == 1
    append(path, b"yyy\n" + rec(2))
    assert seqs(tail.poll()) == [2] and tail.bad_lines == 1


def test_drop_long_lines():
    lines = [b"a" * 10, b"b" * 11, b"c" * 3, b"d" * 50, b"", b"e" * 10]
    data = b"".join(line + b"\n" for line in lines)
    kept, bad = drop_long_lines(data, len(data), 10)
    assert kept == b"a" * 10 + b"\n" + b"c" * 3 + b"\n\n" + b"e" * 10 + b"\n" and bad == 2
    assert drop_long_lines(data, len(data), 100) == (data, 0)


def test_follower_across_rotation_and_truncation(tmp_path):
    path = tmp_path / "log"
    append(path, rec(1) + rec(2))
    tail = RecordTail(path)
    assert seqs(tail.poll()) == [1, 2]
    append(path, rec(3) + rec(4)[:15])  # rotated with a torn tail: it can never complete
    rotate(path)
    append(path, rec(5))
    assert seqs(tail.poll()) == [3, 5] and tail.bad_lines == 1
    # two rotations between polls: the middle file is read whole
    append(path, rec(6))
    rotate(path)
    append(path, rec(7))
    rotate(path)
    append(path, rec(8))
    assert seqs(tail.poll()) == [6, 7, 8]
    # truncation (backups=0 mode), then more writes
    os.truncate(path, 0)
    tail.poll()
    append(path, rec(9))
    assert seqs(tail.poll()) == [9]
    # truncated and grown past where we were, between two polls
    append(path, rec(10))
    tail.poll()
    os.truncate(path, 0)
    append(path, rec(11, pad="z" * 200))
    assert seqs(tail.poll()) == [11]
    # truncated and grown back to the very same size
    before = path.stat().st_size
    os.truncate(path, 0)
    append(path, rec(12, pad="y" * 200))
    assert path.stat().st_size == before
    assert seqs(tail.poll()) == [12]
    # the live file removed, later made again
    path.unlink()
    assert tail.poll() == []
    append(path, rec(13))
    assert seqs(tail.poll()) == [13]
    assert tail.bad_lines == 1


def test_follower_events(tmp_path):
    path = tmp_path / "log"
    append(path, rec(1))
    rotate(path)
    append(path, rec(2))
    f = Follower(path)
    items = list(f.poll())
    assert [type(i) for i in items] == [Backup, Lines]
    backup, lines = items
    assert b"".join(p.data for p in backup.pieces()) == rec(1)
    assert lines.data == rec(2) and f.files == [backup.key, lines.key]
    rotate(path)
    append(path, rec(3))
    items = list(f.poll())
    assert [type(i) for i in items] == [Sealed, Lines]
    assert items[0].key == lines.key and f.files == [backup.key, lines.key, items[1].key]
    os.truncate(path, 0)
    append(path, rec(4) + rec(5))
    assert [type(i) for i in f.poll()] == [Reset, Lines]
    f.close()


def test_follower_forgets_removed_backups(tmp_path):
    path = tmp_path / "log"
    for seq in range(4):
        append(path, rec(seq))
        rotate(path, backups=2)
    append(path, rec(9))
    f = Follower(path)
    assert len([i for i in f.poll() if isinstance(i, Backup)]) == 2
    rotate(path, backups=2)
    list(f.poll())
    assert len(f.files) == 2 and len(f._known) == 2  # no live file: rotate() makes none
    f.close()


def test_follower_holds_only_the_live_file_open(tmp_path):
    path = tmp_path / "log"
    for seq in range(50):
        append(path, rec(seq))
        rotate(path)
    append(path, rec(99))
    before = len(os.listdir("/proc/self/fd"))
    tail = RecordTail(path)
    assert seqs(tail.poll()) == [*range(50), 99]
    assert len(os.listdir("/proc/self/fd")) == before + 1
    tail.close()
    assert len(os.listdir("/proc/self/fd")) == before


# --- choosing records ---------------------------------------------------------


def test_parse_since():
    now = datetime(2026, 11, 28, 16, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since("90s", now) == now - timedelta(seconds=90)
    assert parse_since("2026-11-28T09:30:00Z") == datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    assert parse_since("2026-11-28T09:30:00") == datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    assert parse_since("2026-11-28T10:30:00+01:00") == datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration like 10m"):
        parse_since("yesterday")


def test_parse_level_and_matches():
    assert parse_level("warning") == "WARNING" and parse_level("warn") == "WARNING"
    with pytest.raises(ValueError, match="INFO, WARNING, ERROR"):
        parse_level("loud")
    r = {"ts": "2026-11-28T16:00:00.000Z", "level": "WARNING", "job_id": 3}
    assert matches(r, job_id=3, min_level="INFO")
    assert matches(r, min_level="WARNING") and not matches(r, min_level="ERROR")
    assert not matches(r, job_id=4)
    assert matches(r, since=datetime(2026, 11, 28, 16, tzinfo=UTC))
    assert not matches(r, since=datetime(2026, 11, 28, 16, 0, 1, tzinfo=UTC))
    assert not matches({"level": "INFO"}, since=datetime(2026, 1, 1, tzinfo=UTC))


def test_parse_lines_counts():
    records, bad = parse_lines(rec(1) + b"oops\n\n" + rec(2) + b"[]\n")
    assert seqs(records) == [1, 2] and bad == 2


def test_select_parses_only_one_jobs_lines(tmp_path):
    path = tmp_path / "log"
    lines = [
        rec(1, job_id=7),
        rec(2, job_id=77),
        rec(3, job_id=17),
        b'{"job_id":7,"seq":4}\n',  # written by someone else, without spaces
        rec(5, job_id=7, message='says "job_id": 8'),
        rec(6, job_id=8, message='mentions \\"job_id\\": 7'),
        b'{"job_id": 7, "seq": 7, broken\n',  # bad, and about job 7: counted
        b'{"job_id": 9, broken\n',  # bad, about another job: not even parsed
    ]
    append(path, b"".join(lines))
    tail = RecordTail(path, select=job_lines(7))
    records = tail.poll()
    assert [r["seq"] for r in records if r["job_id"] == 7] == [1, 4, 5]
    assert tail.bad_lines == 1
