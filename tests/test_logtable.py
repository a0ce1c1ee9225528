"""Log files as DataFrames: dtypes, bad input, incremental reads, filters.
What the charts compute from the frames is tested in tests/test_logstats.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from bgjobs import logtable
from bgjobs.eventlog import ERRORS_LOG, EVENTS, MAIN_LOG, EventLog, backups_of
from bgjobs.logread import read_records
from bgjobs.logtable import (
    COLUMNS,
    DTYPES,
    LogTail,
    filter_logs,
    read_log,
)
from tests.test_logread import (
    append,
    check_all_written,
    job,
    rec,
    start_writers,
    wait_writers,
)


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a, b)
    assert a.attrs.get("bad_lines") == b.attrs.get("bad_lines")


def check_dtypes(df: pd.DataFrame) -> None:
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    for name, dtype in DTYPES.items():
        assert df[name].dtype == dtype, name


def test_missing_and_empty_files_have_the_fixed_columns(tmp_path):
    missing = read_log(tmp_path / "nope.log")
    (tmp_path / "empty.log").touch()
    empty = read_log(tmp_path / "empty.log")
    for df in (missing, empty):
        assert len(df) == 0 and df.attrs["bad_lines"] == 0
        check_dtypes(df)
        assert list(df.columns) == list(COLUMNS)
    assert str(DTYPES["ts"]) == "datetime64[ms, UTC]"
    assert list(DTYPES["level"].categories) == ["INFO", "WARNING", "ERROR"]
    assert list(DTYPES["event"].categories) == list(EVENTS)


def test_round_trip_with_eventlog(tmp_path):
    log = EventLog(tmp_path)
    written = [
        log.emit(
            "queued",
            job=job(3),
            message="queued",
            params=[5, True, "x"],
            priority=2,
            source="cli",
            user="ann",
            run_after="2026-11-28T16:22:15.123Z",
        ),
        log.emit("started", job=job(3), message="started", pid=4242),
        log.emit(
            "attempt_failed",
            level="ERROR",
            job=job(3),
            message="attempt 1 failed: boom",
            exception="ValueError",
            error="boom",
            traceback="Traceback...\nValueError: boom\n",
            exit_code=1,
            exit_signal=None,
        ),
        log.emit("retry_scheduled", level="WARNING", job=job(3), message="retry", delay=0.5),
        log.emit("succeeded", job=job(3, 2), message="done", duration=1.25, result='"ok"', custom_key="x"),
        log.emit(
            "rejected",
            level="ERROR",
            message="no",
            class_path="jobs.Nope",
            method="run",
            exception="RejectedError",
            error="no",
            traceback=None,
        ),
    ]
    log.close()
    df = read_log(tmp_path / MAIN_LOG)
    check_dtypes(df)
    assert len(df) == len(written) and df.attrs["bad_lines"] == 0
    for row, record in zip(df.to_dict("records"), written, strict=True):
        for key, value in record.items():
            got = row[key]
            if key == "ts":
                assert got == pd.Timestamp(value)
            elif value is None:
                assert pd.isna(got), key
            else:
                assert got == value, key
    assert pd.isna(df.loc[5, "job_id"]) and df.loc[5, "class"] == "jobs.Nope"
    errors = read_log(tmp_path / ERRORS_LOG)
    assert list(errors["event"]) == ["attempt_failed", "rejected"]


def test_bad_lines_are_skipped_and_counted(tmp_path):
    path = tmp_path / "log"
    junk = [
        b'{"ts": "2026-11-28T16:00:00.000Z", "lev\n',
        b"\xff\xfe not utf-8 \xc3\n",
        bytes(range(256)).replace(b"\n", b"") + b"\n",
        b"[1, 2, 3]\n",
        b"42\n",
        b"{" * 100_000 + b"\n",
        b"x" * (10 * 1024 * 1024) + b"\n",
        b'{"ts": "2026-11-28T16:00:00.000Z", "seq": 1}{"a": \n',  # an object and then junk
    ]
    data = rec(0)
    for i, line in enumerate(junk, 1):
        data += line + rec(i)
    append(path, data + rec(99)[:25])  # and a torn last line, maybe still being written
    df = read_log(path)
    assert list(df["seq"]) == list(range(len(junk) + 1))
    assert df.attrs["bad_lines"] == len(junk)  # the torn last line is not counted
    check_dtypes(df)
    with LogTail(path) as tail:
        assert list(tail.refresh()["seq"]) == list(range(len(junk) + 1))
        assert tail.bad_lines == len(junk)
        append(path, rec(99)[25:])
        assert list(tail.refresh()["seq"]) == [99] and tail.bad_lines == len(junk)
        assert_same(tail.frame, read_log(path))


def test_a_bad_line_in_a_big_chunk_costs_only_its_neighbours(tmp_path, monkeypatch):
    """A refused chunk is split until the bad line is found; only a small piece
    around it is read line by line."""
    path = tmp_path / "log"
    lines = [rec(i, message="m" * 100) for i in range(20_000)]
    lines[12_345] = b'{"broken": \n'
    append(path, b"".join(lines))
    slow = []
    real = logtable.parse_lines
    monkeypatch.setattr(
        logtable, "parse_lines", lambda data, good: slow.append(len(data)) or real(data, good)
    )
    df = read_log(path)
    assert df.attrs["bad_lines"] == 1 and len(df) == 19_999 and 12_345 not in set(df["seq"])
    assert len(slow) == 1 and slow[0] <= logtable.LEAF


def test_values_of_odd_types_fall_back_without_loss(tmp_path):
    path = tmp_path / "log"
    append(
        path,
        b"".join(
            [
                rec(1, params=[2, True, "x"]),  # mixed list: pyarrow refuses it
                rec(2, params=[5]),
                rec(3, job_id="seven", level=5, duration="slow", message=7, ts="not a time"),
                rec(4, extra={"nested": [1, {"a": None}]}),
                rec(5, message="\udcff bytes", note="\udcfe"),
            ]
        ),
    )
    df = read_log(path)
    check_dtypes(df)
    assert list(df["seq"]) == [1, 2, 3, 4, 5] and df.attrs["bad_lines"] == 0
    assert df.loc[0, "params"] == [2, True, "x"] and df.loc[1, "params"] == [5]
    assert pd.isna(df.loc[2, "job_id"]) and pd.isna(df.loc[2, "level"]) and pd.isna(df.loc[2, "duration"])
    assert df.loc[2, "message"] == "7" and pd.isna(df.loc[2, "ts"])
    assert df.loc[3, "extra"] == {"nested": [1, {"a": None}]}
    assert df.loc[4, "message"] == "\\udcff bytes" and df.loc[4, "note"] == "\\udcfe"
    assert df["note"].dtype == "str"


def test_unknown_keys_are_kept_as_columns(tmp_path):
    path = tmp_path / "log"
    append(path, rec(1, host="a", shard=3) + rec(2, ratio=0.5) + rec(3, shard=4, flag=True))
    df = read_log(path)
    assert list(df.columns[len(COLUMNS) :]) == ["flag", "host", "ratio", "seq", "shard"]
    assert df["shard"].dtype == "Int64" and list(df["shard"].fillna(0)) == [3, 0, 4]
    assert df["host"].tolist()[0] == "a"


# --- incremental reading -------------------------------------------------------


def emit_many(log: EventLog, start: int, n: int, **extra) -> None:
    for seq in range(start, start + n):
        log.emit("started", job=job(seq), message=f"record {seq}", seq=seq, **extra)


def test_refresh_returns_only_new_rows_and_frame_equals_read_log(tmp_path):
    log = EventLog(tmp_path)
    path = tmp_path / MAIN_LOG
    with LogTail(path) as tail:
        assert len(tail.refresh()) == 0
        assert_same(tail.frame, read_log(path))
        emit_many(log, 0, 50)
        assert list(tail.refresh()["seq"]) == list(range(50))
        assert len(tail.refresh()) == 0
        emit_many(log, 50, 7, note="n")
        new = tail.refresh()
        assert list(new["seq"]) == list(range(50, 57)) and list(new["note"]) == ["n"] * 7
        assert_same(tail.frame, read_log(path))


def test_incremental_read_after_rotation_equals_full_read(tmp_path, monkeypatch):
    log = EventLog(tmp_path, max_bytes=4_000, backups=3)
    path = tmp_path / MAIN_LOG
    with LogTail(path) as tail:
        emit_many(log, 0, 30)
        tail.refresh()
        emit_many(log, 30, 5)  # rotates once, or more
        assert list(tail.refresh()["seq"]) == list(range(30, 35))
        assert_same(tail.frame, read_log(path))
        # many rotations between refreshes: the oldest backups are gone
        emit_many(log, 35, 100)
        new = tail.refresh()
        assert list(new["seq"])[-1] == 134
        assert len(backups_of(path)) == 3
        assert_same(tail.frame, read_log(path))
        assert tail.frame["seq"].iloc[0] > 0

        # a rotation reparses nothing that was read before
        parsed = []
        real = logtable.parse_block
        monkeypatch.setattr(logtable, "parse_block", lambda data: parsed.append(data) or real(data))
        while path.stat().st_size < 4_000:
            emit_many(log, 1000, 1)
            tail.refresh()
        parsed.clear()
        live = path.stat().st_ino
        emit_many(log, 2000, 1)  # this one rotates
        assert path.stat().st_ino != live
        assert list(tail.refresh()["seq"]) == [2000]
        assert [data.count(b"\n") for data in parsed] == [1]
        assert_same(tail.frame, read_log(path))


def test_incremental_read_after_truncation_equals_full_read(tmp_path):
    log = EventLog(tmp_path, max_bytes=3_000, backups=0)
    path = tmp_path / MAIN_LOG
    with LogTail(path) as tail:
        emit_many(log, 0, 10)
        tail.refresh()
        emit_many(log, 10, 40)  # truncated at least once
        new = tail.refresh()
        assert list(new["seq"])[-1] == 49
        assert_same(tail.frame, read_log(path))
        assert tail.frame["seq"].iloc[0] > 0


def test_refresh_costs_the_new_lines_not_the_file(tmp_path, monkeypatch):
    path = tmp_path / "log"
    append(path, b"".join(rec(i, message="m" * 300) for i in range(30_000)))
    with LogTail(path) as tail:
        assert len(tail.refresh()) == 30_000
        parsed = []
        real = logtable.parse_block
        monkeypatch.setattr(logtable, "parse_block", lambda data: parsed.append(len(data)) or real(data))
        append(path, rec(30_000) + rec(30_001))
        assert list(tail.refresh()["seq"]) == [30_000, 30_001]
        assert parsed == [len(rec(30_000)) * 2]


def test_backups_are_cached_by_identity(tmp_path, monkeypatch):
    log = EventLog(tmp_path, max_bytes=2_000, backups=5)
    emit_many(log, 0, 60)
    path = tmp_path / MAIN_LOG
    first = read_log(path)
    parsed = []
    real = logtable.parse_block
    monkeypatch.setattr(logtable, "parse_block", lambda data: parsed.append(data) or real(data))
    second = read_log(path)
    assert_same(first, second)
    assert len(parsed) == 1  # only the live file
    second.loc[0, "message"] = "changed"  # a caller's change does not reach the cache
    assert_same(read_log(path), first)


@pytest.mark.slow
def test_tail_follows_concurrent_writers_across_rotation(tmp_path):
    procs = start_writers(tmp_path, writers=20, n=400, max_bytes=300_000, backups=10_000)
    path = tmp_path / MAIN_LOG
    with LogTail(path) as tail:
        rows = []
        while any(p.poll() is None for p in procs):
            rows.append(tail.refresh())
        wait_writers(procs)
        rows.append(tail.refresh())
        assert len(backups_of(path)) > 5
        full = read_log(path)
        assert_same(tail.frame, full)
        assert full.attrs["bad_lines"] == 0 and tail.bad_lines == 0
        pd.testing.assert_frame_equal(logtable.concat_frames(rows), full)  # nothing twice, nothing lost
    records, _ = read_records(path)
    check_all_written(records, 20, 400)
    assert list(full["seq"]) == [r["seq"] for r in records]


# --- selecting rows ------------------------------------------------------------


def sample(tmp_path: Path) -> pd.DataFrame:
    lines = []

    def add(ts, level, event, job_id, cls, **extra):
        lines.append(
            json.dumps(
                {
                    "ts": ts,
                    "level": level,
                    "event": event,
                    "job_id": job_id,
                    "class": cls,
                    "method": "run",
                    "attempt": 1,
                    "message": f"{event} {job_id}",
                    **extra,
                }
            )
        )

    add("2026-11-28T10:05:00.000Z", "INFO", "queued", 1, "jobs.A")
    add("2026-11-28T10:06:00.000Z", "INFO", "succeeded", 1, "jobs.A", duration=2.5)
    add(
        "2026-11-28T10:10:00.000Z",
        "ERROR",
        "attempt_failed",
        2,
        "jobs.B",
        error="Disk Full",
        traceback="Traceback\nOSError: disk full\n",
    )
    add("2026-11-28T12:01:00.000Z", "ERROR", "timed_out", 2, "jobs.B", error="timed out")
    add("2026-11-28T12:02:00.000Z", "ERROR", "failed", 2, "jobs.B", duration=60.0)
    add("2026-11-28T12:30:00.000Z", "WARNING", "cancelled", 3, "jobs.A", duration=1.0)
    add("2026-11-28T12:40:00.000Z", "INFO", "succeeded", 4, "jobs.B", duration=3.0)
    path = tmp_path / "sample.log"
    path.write_text("\n".join(lines) + "\n")
    return read_log(path)


def test_filter_logs(tmp_path):
    df = sample(tmp_path)
    assert list(filter_logs(df, levels=["ERROR"])["job_id"]) == [2, 2, 2]
    assert len(filter_logs(df, levels="WARNING")) == 1
    assert list(filter_logs(df, events=["succeeded", "failed"])["job_id"]) == [1, 2, 4]
    assert list(filter_logs(df, job_id=2)["event"]) == ["attempt_failed", "timed_out", "failed"]
    assert list(filter_logs(df, job_id=[1, 3])["job_id"]) == [1, 1, 3]
    assert list(filter_logs(df, class_path="jobs.A")["job_id"]) == [1, 1, 3]
    assert len(filter_logs(df, since="2026-11-28T12:00:00Z", until="2026-11-28T12:30:00")) == 2
    assert len(filter_logs(df, since=pd.Timestamp("2026-11-28T12:30:00", tz="UTC"))) == 2
    assert list(filter_logs(df, text="disk")["event"]) == ["attempt_failed"]  # error and traceback
    assert len(filter_logs(df, text="JOBS.b")) == 4  # class, any case
    assert len(filter_logs(df, text="OSError")) == 1
    assert len(filter_logs(df, levels=["ERROR"], text="timed")) == 1
    assert len(filter_logs(df)) == len(df)
    empty = filter_logs(read_log(tmp_path / "none.log"), levels=["ERROR"], text="x", job_id=1)
    assert len(empty) == 0


def test_logtable_and_logstats_are_the_only_core_modules_that_import_pandas():
    root = Path(logtable.__file__).parent
    for path in root.rglob("*.py"):
        if path.name in ("logtable.py", "logstats.py") or "ui" in path.relative_to(root).parts:
            continue  # ui: the dashboard
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(pandas|pyarrow)\b", text, re.M), path


def test_tail_closes_its_files(tmp_path):
    log = EventLog(tmp_path, max_bytes=1_000, backups=3)
    emit_many(log, 0, 30)
    before = len(os.listdir("/proc/self/fd"))
    with LogTail(tmp_path / MAIN_LOG) as tail:
        tail.refresh()
        assert len(os.listdir("/proc/self/fd")) > before
    assert len(os.listdir("/proc/self/fd")) == before
