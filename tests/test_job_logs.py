"""job-logs, run as the real console script against real log files."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from bgjobs.eventlog import MAIN_LOG, EventLog, utc_iso
from tests.conftest import BIN, wait_until


class Logs:
    """A temp project with a config.yaml whose log_dir holds our records."""

    def __init__(self, root: Path, **config) -> None:
        self.root = root
        self.config = root / "config.yaml"
        self.config.write_text(yaml.safe_dump({"log_dir": "logs", "state_dir": "state", **config}))
        self.log_dir = root / "logs"
        self.env = {"BGJOBS_CONFIG": str(self.config), "PATH": f"{BIN}:/usr/bin:/bin"}

    def writer(self, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> EventLog:
        return EventLog(self.log_dir, max_bytes, backups)

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "job-logs"), *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
        )


def job(job_id: int, attempt: int = 1) -> SimpleNamespace:
    return SimpleNamespace(id=job_id, class_path="jobs.example.ExampleJob", method="handle", attempt=attempt)


TB = 'Traceback (most recent call last):\n  File "jobs/example.py", line 9, in handle\n    1 / 0\nZeroDivisionError: division by zero\n'


@pytest.fixture
def logs(tmp_path) -> Logs:
    logs = Logs(tmp_path)
    log = logs.writer()
    log.emit("queued", job=job(1), message="jobs.example.ExampleJob.handle queued", params=[5])
    log.emit("started", job=job(1), message="job 1 attempt 1 of 1 started")
    log.emit("succeeded", job=job(1), message="job 1 succeeded", duration=0.5)
    log.emit("queued", job=job(2), message="job 2 queued")
    log.emit(
        "attempt_failed",
        level="ERROR",
        job=job(2),
        message="job 2 attempt 1 failed: division by zero",
        exception="ZeroDivisionError",
        error="division by zero",
        traceback=TB,
    )
    log.emit("retry_scheduled", level="WARNING", job=job(2), message="job 2 will retry in 1s")
    log.close()
    return logs


def test_human_output(logs):
    proc = logs.run()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    first = lines[0].split()
    assert first[0].endswith("Z") and first[1:5] == ["INFO", "job", "1", "queued"]
    assert lines[0].endswith("jobs.example.ExampleJob.handle queued")
    failed = next(i for i, line in enumerate(lines) if "attempt_failed" in line)
    assert "ERROR" in lines[failed] and "job 2 attempt 1 failed: division by zero" in lines[failed]
    assert lines[failed + 1 : failed + 5] == ["    " + t for t in TB.splitlines()]
    assert "retry_scheduled" in lines[failed + 5]
    assert len(lines) == 6 + len(TB.splitlines())


def test_json_output(logs):
    proc = logs.run("--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["event"] for r in records] == [
        "queued",
        "started",
        "succeeded",
        "queued",
        "attempt_failed",
        "retry_scheduled",
    ]
    assert records[4]["traceback"] == TB and records[0]["params"] == [5]


def test_job_id_errors_and_level(logs):
    proc = logs.run("2", "--json")
    assert [json.loads(line)["event"] for line in proc.stdout.splitlines()] == [
        "queued",
        "attempt_failed",
        "retry_scheduled",
    ]
    proc = logs.run("--errors", "--json")
    assert [json.loads(line)["event"] for line in proc.stdout.splitlines()] == ["attempt_failed"]
    proc = logs.run("--level", "warning", "--json")
    assert [json.loads(line)["level"] for line in proc.stdout.splitlines()] == ["ERROR", "WARNING"]
    proc = logs.run("1", "--level", "ERROR")
    assert proc.returncode == 0 and proc.stdout == ""


def test_since(tmp_path):
    logs = Logs(tmp_path)
    log = logs.writer()
    now = datetime.now(UTC)
    for hours, message in ((30, "day old"), (3, "three hours"), (0.1, "just now")):
        ts = utc_iso((now - timedelta(hours=hours)).timestamp())
        log.write(
            {
                "ts": ts,
                "level": "INFO",
                "event": "started",
                "job_id": 1,
                "class": "c",
                "method": "m",
                "attempt": 1,
                "message": message,
            }
        )
    log.close()

    def messages(*args):
        proc = logs.run("--json", *args)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line)["message"] for line in proc.stdout.splitlines()]

    assert messages("--since", "2h") == ["just now"]
    assert messages("--since", "1d") == ["three hours", "just now"]
    assert messages("--since", "10m") == ["just now"]
    iso = (now - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert messages("--since", iso) == ["three hours", "just now"]
    assert messages("--since", (now - timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%S")) == [
        "three hours",
        "just now",
    ]


def test_bad_arguments_exit_2_and_say_what_to_do(logs):
    proc = logs.run("--since", "last tuesday")
    assert proc.returncode == 2
    assert (
        "--since" in proc.stderr and "duration like 10m" in proc.stderr and "job-logs --help" in proc.stderr
    )
    proc = logs.run("--level", "loud")
    assert proc.returncode == 2 and "use one of INFO, WARNING, ERROR" in proc.stderr
    proc = logs.run("notanumber")
    assert proc.returncode == 2


def test_unknown_job_id(logs):
    proc = logs.run("99")
    assert proc.returncode == 3
    assert "no job 99" in proc.stderr and "job-status" in proc.stderr
    assert proc.stdout == ""


def test_missing_log_and_bad_lines(tmp_path):
    logs = Logs(tmp_path)
    proc = logs.run()
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    logs.log_dir.mkdir()
    good = json.dumps(
        {
            "ts": "2026-11-28T16:00:00.000Z",
            "level": "INFO",
            "event": "started",
            "job_id": 1,
            "message": "fine",
        }
    )
    (logs.log_dir / MAIN_LOG).write_bytes(
        b"\xff junk\n" + good.encode() + b"\n[1]\n" + good.encode()[:10]  # the last line is torn
    )
    proc = logs.run()
    assert proc.returncode == 0
    assert proc.stdout.count("fine") == 1
    assert "skipped 2 bad line(s)" in proc.stderr


def test_does_not_import_pandas(logs):
    code = (
        "import sys; from bgjobs.cli.logs import main; rc = main(['--json']); "
        "heavy = [m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy; sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=logs.env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 6


class Follower:
    """job-logs --follow in the background, its output collected line by line."""

    def __init__(self, logs: Logs, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "job-logs"), "--follow", "--interval", "0.05", *args],
            env=logs.env,
            cwd=logs.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, count: int = 1) -> None:
        wait_until(
            lambda: sum(text in line for line in self.lines) >= count,
            20,
            what=f"{text!r} in job-logs --follow output",
        )

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=20)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def test_follow_picks_up_new_lines_and_rotation(logs):
    follower = Follower(logs, "--json")
    try:
        follower.wait_for('"retry_scheduled"')
        log = logs.writer(max_bytes=3_000, backups=20)
        log.emit("started", job=job(3), message="after start 1")
        follower.wait_for("after start 1")
        for i in range(100):  # several rotations, some between two polls
            log.emit("started", job=job(3), message=f"burst {i}")
        follower.wait_for("burst 99")
        assert len(list(logs.log_dir.glob(MAIN_LOG + ".*"))) >= 3
        log.emit("succeeded", job=job(3), message="after rotation")
        follower.wait_for("after rotation")
        messages = [json.loads(line)["message"] for line in follower.lines]
        assert messages[6:] == ["after start 1", *[f"burst {i}" for i in range(100)], "after rotation"]
        assert follower.stop(signal.SIGINT) == 130
        assert "Traceback" not in follower.proc.stderr.read()
    finally:
        follower.kill()


def test_follow_one_job_stops_on_sigterm(logs):
    log = logs.writer()
    log.emit("queued", job=job(3), message="job 3 queued")
    follower = Follower(logs, "3")
    try:
        follower.wait_for("job 3 queued")
        log.emit("queued", job=job(4), message="job 4 queued")
        log.emit("started", job=job(3), message="job 3 started")
        log.emit("attempt_failed", level="ERROR", job=job(3), message="job 3 failed", traceback=TB)
        follower.wait_for("ZeroDivisionError")
        assert not any("job 4" in line for line in follower.lines)
        assert follower.stop(signal.SIGTERM) == 143
    finally:
        follower.kill()


def test_follow_unknown_job_says_so(logs):
    proc = logs.run("42", "--follow")
    assert proc.returncode == 3 and "no job 42" in proc.stderr
