"""Faults in the log files: a torn record (a write cut short by a full disk or
a file size limit) costs one bad line, never the record written after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

from bgjobs.eventlog import ERRORS_LOG, MAIN_LOG, EventLog
from bgjobs.logread import RecordTail, read_records

TORN = b'{"ts": "2026-11-28T16:22:15.123Z", "level": "INFO", "event": "star'


def job(job_id: int = 7) -> SimpleNamespace:
    return SimpleNamespace(id=job_id, class_path="jobs.example.ExampleJob", method="handle", attempt=1)


def test_record_after_a_torn_line_starts_on_its_own_line(tmp_path):
    log = EventLog(tmp_path)
    first = log.emit("queued", job=job(), message="queued")
    # Another process's write fell short: its line has no newline.
    with open(tmp_path / MAIN_LOG, "ab") as f:
        f.write(TORN)
    after = log.emit("started", job=job(), message="job 7 attempt 1 of 1 started")
    log.close()
    records, bad = read_records(tmp_path / MAIN_LOG)
    assert records == [first, after]
    assert bad == 1
    assert (tmp_path / MAIN_LOG).read_bytes().split(b"\n")[1] == TORN


def test_a_fresh_writer_and_the_errors_log_mend_a_torn_line_too(tmp_path):
    for name in (MAIN_LOG, ERRORS_LOG):
        (tmp_path / name).write_bytes(TORN)
    log = EventLog(tmp_path)  # has never written here: knows nothing of the file's end
    failed = log.emit("failed", level="ERROR", job=job(), message="job 7 failed", error="boom")
    log.close()
    for name in (MAIN_LOG, ERRORS_LOG):
        assert read_records(tmp_path / name) == ([failed], 1)


def test_a_follower_counts_the_torn_line_once_the_next_record_lands(tmp_path):
    log = EventLog(tmp_path)
    log.emit("queued", job=job(), message="queued")
    tail = RecordTail(tmp_path / MAIN_LOG)
    try:
        assert [r["event"] for r in tail.poll()] == ["queued"]
        with open(tmp_path / MAIN_LOG, "ab") as f:
            f.write(TORN)
        assert tail.poll() == [] and tail.bad_lines == 0  # maybe still being written: held back
        log.emit("started", job=job(), message="started")
        assert [r["event"] for r in tail.poll()] == ["started"]
        assert tail.bad_lines == 1
    finally:
        tail.close()
        log.close()


# A real short write: RLIMIT_FSIZE lets the record's write reach only part of
# the way (SIGXFSZ ignored, so the process lives on and the write returns short),
# then the limit is lifted and the next record is written whole.
SHORT_WRITER = r"""
import json, os, resource, signal, sys
from bgjobs.eventlog import MAIN_LOG, EventLog

log_dir = sys.argv[1]
path = os.path.join(log_dir, MAIN_LOG)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = EventLog(log_dir)
log.emit("queued", message="before the limit")
before = os.path.getsize(path)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (before + 40, hard))
log.emit("started", message="cut short by RLIMIT_FSIZE " + "x" * 200)
torn = os.path.getsize(path)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
log.emit("succeeded", message="after the limit was lifted")
log.close()
print(json.dumps({"before": before, "torn": torn}))
"""


def test_a_write_cut_short_by_rlimit_fsize_loses_only_itself(tmp_path):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "-c", SHORT_WRITER, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    sizes = json.loads(proc.stdout)
    assert sizes["torn"] == sizes["before"] + 40, "the write should have been cut short"
    assert "short write" in proc.stderr  # said once, on stderr; the process went on
    records, bad = read_records(tmp_path / MAIN_LOG)
    assert [r["message"] for r in records] == ["before the limit", "after the limit was lifted"]
    assert bad == 1


def test_a_record_is_one_line_for_any_line_splitter(tmp_path):
    # JSON leaves DEL, C1 controls (NEL, CSI) and U+2028/U+2029 raw in a string;
    # str.splitlines() splits at NEL and at both separators, a terminal acts on CSI.
    text = "a\x85b\u2028c\u2029d\x9b2Je\x7ff\x1bg\nh"
    log = EventLog(tmp_path)
    written = log.emit("failed", level="ERROR", job=job(), message=text, error=text)
    log.close()
    for name in (MAIN_LOG, ERRORS_LOG):
        content = (tmp_path / name).read_text(encoding="utf-8")
        assert content.isascii()
        assert len(content.splitlines()) == 1
        assert [json.loads(line) for line in content.splitlines()] == [written]
