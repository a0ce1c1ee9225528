"""Fleet mode's events: every record is also a row of the store's events table,
written in the transition's own transaction, with its host; job-logs on any
host reads them from there. A real PostgreSQL; no job-worker is needed."""

from __future__ import annotations

import json

import pytest
import yaml

from bgjobs import launcher
from bgjobs.wiring import wire

TASKS = "testjobs.tasks.Tasks"


@pytest.fixture
def fleet(project, pg_url):
    project.write_config(store=pg_url, executor="procrastinate", host="client")
    return project


def test_a_launch_writes_its_queued_record_to_the_events_table_with_its_host(fleet):
    rt = wire(fleet.config_path)
    job = launcher.insert_job(rt, launcher.prepare(rt, TASKS, "ok", ["x"]))
    rows = rt.store.events_after(0, job_id=job.id)
    assert [r["event"] for _, r in rows] == ["queued"]
    assert rows[0][1]["host"] == "client"
    # and this host's file has the same record
    assert [r["event"] for r in fleet.records() if r["job_id"] == job.id] == ["queued"]


def test_a_transition_that_rolls_back_leaves_no_record_in_the_table(fleet):
    rt = wire(fleet.config_path)

    def fail(job_id):
        raise RuntimeError("the caller gave up before the commit")

    with pytest.raises(RuntimeError):
        launcher.insert_job(rt, launcher.prepare(rt, TASKS, "ok", ["x"]), on_insert=fail)
    assert rt.store.list_jobs() == []
    assert rt.store.events_after(0) == []


def test_job_logs_reads_the_fleets_records_from_the_store(fleet):
    rt = wire(fleet.config_path)
    job = launcher.insert_job(rt, launcher.prepare(rt, TASKS, "ok", ["x"]))
    from bgjobs import api

    api.cancel_job(job.id, config=fleet.config_path)
    # Another host, with logs of its own (empty here): it reads the table.
    other = fleet.root / "other.yaml"
    config = yaml.safe_load(fleet.config_path.read_text())
    config.update(host="other", log_dir="logs-other", state_dir="state-other")
    other.write_text(yaml.safe_dump(config))
    out = fleet.cli("job-logs", str(job.id), "--json", "--config", str(other), check=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["event"] for r in records] == ["queued", "cancel_requested", "cancelled"]
    assert {r["host"] for r in records} == {"client"}
    errors = fleet.cli("job-logs", "--errors", "--json", "--config", str(other), check=True)
    assert errors.stdout.strip() == ""


def test_a_jobs_output_tail_in_the_store_is_shown_where_its_file_is_not(fleet, pg_url):
    from bgjobs import api
    from bgjobs.pgstore import PgStore

    rt = wire(fleet.config_path)
    job = launcher.insert_job(rt, launcher.prepare(rt, TASKS, "ok", ["x"]))
    h1 = PgStore(pg_url, "h1")  # the host whose runner has the job
    h1.claim_due(max_running=1, class_limits={}, accept=lambda j: 1)
    started = h1.start_attempt(job.id, 123, 456)
    h1.set_output_tail(job.id, "line one\nline two\n", attempt=started.attempt)
    assert api.output_tail(job.id, config=fleet.config_path) == "line one\nline two\n"
    rt.store.set_output_tail(job.id, "a stale host's word", attempt=started.attempt)  # fenced: not its claim
    assert api.output_tail(job.id, config=fleet.config_path).startswith("line one")
