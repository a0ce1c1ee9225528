"""Faults at the console scripts' edge, through the real scripts in .venv/bin:
hostile text in a job's params and errors, and numbers out of range."""

from __future__ import annotations

import json
import re

import pytest

# Text that would forge a record or a row (a newline, then what a record looks
# like), and drive a terminal (colour, clear screen, C1 CSI, carriage return,
# Unicode line separator, bidi override), if printed raw.
FORGED = "2026-11-28T16:22:15.123Z INFO      job 99  succeeded        forged record"
HOSTILE = f"evil\n{FORGED}\x1b[31m red \x1b[2J\r\x9b31m\x7f\u2028\u202eend\tx"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # all but \t, \n
RECORD_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\S+Z +(INFO|WARNING|ERROR) ")


def assert_no_raw_controls(text: str) -> None:
    assert not RAW.search(text), f"raw control character in {text!r}"
    assert "\t" not in text


def launch(project, method: str, *params: str) -> int:
    proc = project.cli("job-run", "testjobs.tasks.Tasks", method, *(f"--params={p}" for p in params))
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout)


@pytest.fixture
def hostile_jobs(project):
    """One job that succeeds with hostile params (and result), one that fails
    with a hostile error; both final, their records written."""
    ok = launch(project, "ok", HOSTILE)
    failed = launch(project, "fail", HOSTILE)
    project.wait_final(ok)
    project.wait_final(failed)
    return ok, failed


def test_job_status_table_shows_hostile_text_escaped_one_row_a_job(project, hostile_jobs):
    proc = project.cli("job-status")
    assert proc.returncode == 0, proc.stderr
    assert_no_raw_controls(proc.stdout)
    lines = proc.stdout.rstrip("\n").split("\n")
    assert len(lines) == 3, proc.stdout  # the header and one row a job
    assert [line.split()[0] for line in lines] == ["ID", *map(str, reversed(hostile_jobs))]
    assert "evil\\n2026" in proc.stdout and "forged" not in lines[0]


def test_job_status_detail_shows_hostile_text_escaped(project, hostile_jobs):
    ok, failed = hostile_jobs
    for job_id in hostile_jobs:
        proc = project.cli("job-status", str(job_id))
        assert proc.returncode == 0, proc.stderr
        assert_no_raw_controls(proc.stdout)
        lines = proc.stdout.rstrip("\n").split("\n")
        assert all(line.startswith(("job ", "  ")) for line in lines), proc.stdout
        assert "\\x1b[31m" in proc.stdout
    detail = project.cli("job-status", str(failed)).stdout
    error = next(line for line in detail.split("\n") if line.startswith("  error "))
    assert error.endswith(
        "ValueError: evil\\n" + FORGED + "\\x1b[31m red \\x1b[2J\\r\\x9b31m\\x7f\\u2028\\u202eend\\tx"
    )


def test_json_output_stays_exact(project, hostile_jobs):
    ok, failed = hostile_jobs
    assert json.loads(project.cli("job-status", str(ok), "--json").stdout)["params"] == [HOSTILE]
    listed = json.loads(project.cli("job-status", "--json").stdout)
    assert {j["id"]: j["params"] for j in listed} == {ok: [HOSTILE], failed: [HOSTILE]}
    records = [json.loads(line) for line in project.cli("job-logs", "--json").stdout.splitlines()]
    assert [r["params"] for r in records if r["event"] == "queued"] == [[HOSTILE], [HOSTILE]]
    assert [r["error"] for r in records if r["event"] == "failed"] == [HOSTILE]


def test_job_logs_shows_each_record_on_one_line(project, hostile_jobs):
    proc = project.cli("job-logs")
    assert proc.returncode == 0, proc.stderr
    assert_no_raw_controls(proc.stdout)
    lines = proc.stdout.rstrip("\n").split("\n")
    # A line is a record, or a line of a traceback indented below its record.
    records = [line for line in lines if not line.startswith("    ")]
    assert all(RECORD_LINE.match(line) for line in records), proc.stdout
    assert len(records) == len(project.records())
    assert not any(line.startswith(FORGED[:10]) and "job 99" in line for line in lines)
    # The traceback keeps its lines (indented); the hostile message within it is escaped.
    traceback = [line for line in lines if line.startswith("    ")]
    assert traceback[0] == "    Traceback (most recent call last):"
    assert "    ValueError: evil" in traceback
    assert f"    {FORGED}\\x1b[31m red \\x1b[2J\\r\\x9b31m\\x7f\\u2028\\u202eend\\tx" in traceback


def test_job_run_wait_shows_the_error_escaped(project):
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "fail", f"--params={HOSTILE}", "--wait")
    assert proc.returncode == 1
    assert_no_raw_controls(proc.stdout)
    assert re.fullmatch(r"\d+ failed: evil\\n2026.*\\tx\n", proc.stdout), proc.stdout


# --- job-status --limit -------------------------------------------------------


@pytest.mark.parametrize("limit", ["0", "-3", "x", "1.5"])
def test_job_status_limit_must_be_a_whole_number_of_at_least_one(project, limit):
    for argv in (["--limit", limit], [f"--limit={limit}"]):
        proc = project.cli("job-status", *argv)
        assert proc.returncode == 2, (argv, proc.stdout)
        assert proc.stdout == ""
        assert proc.stderr == (
            f"job-status: error: argument --limit: must be a whole number >= 1; got {limit!r}; "
            "see job-status --help\n"
        )


def test_job_status_limit_and_status_together(project):
    first, second = launch(project, "ok"), launch(project, "fail")
    project.wait_final(first)
    project.wait_final(second)
    rows = project.cli("job-status", "--limit", "1", check=True).stdout.strip().split("\n")
    assert [row.split()[0] for row in rows] == ["ID", str(second)]
    rows = project.cli("job-status", "--status", "succeeded", "--limit=5", check=True).stdout
    assert [row.split()[0] for row in rows.strip().split("\n")] == ["ID", str(first)]


# --- times out of range -------------------------------------------------------

OUT_OF_RANGE = [
    ("--delay", "1e300"),
    ("--delay", "inf"),
    ("--delay", "nan"),
    ("--delay", "1e400"),
    ("--timeout", "1e300"),
    ("--timeout", "nan"),
    ("--retry-delay", "1e300"),
    ("--retry-delay", "-inf"),
    ("--at", "9999-12-31T23:59:59Z"),
    ("--at", "10000-01-01T00:00:00Z"),
]


@pytest.mark.parametrize(("option", "value"), OUT_OF_RANGE, ids=lambda v: v)
def test_job_run_refuses_a_time_out_of_range(project, option, value):
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "ok", f"{option}={value}")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert option.lstrip("-").replace("-", "_") in proc.stderr or option in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads(project.cli("job-status", "--json", check=True).stdout) == []


@pytest.mark.parametrize("grace", ["1e300", "inf", "1e400", "nan", "-1"])
def test_job_cancel_refuses_a_grace_out_of_range(project, grace):
    job_id = launch(project, "sleep")
    project.wait_status(job_id, "running")
    proc = project.cli("job-cancel", str(job_id), f"--grace={grace}")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and "grace" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    job = json.loads(project.cli("job-status", str(job_id), "--json", check=True).stdout)
    assert job["status"] == "running" and job["cancelled_by"] is None


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf"])
def test_job_logs_interval_must_be_positive_and_finite(project, interval):
    proc = project.cli("job-logs", "--follow", f"--interval={interval}", timeout=30)
    assert proc.returncode == 2
    assert "--interval must be a positive, finite number of seconds" in proc.stderr
