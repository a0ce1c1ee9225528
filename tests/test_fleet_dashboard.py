"""The dashboard in fleet mode, against a real PostgreSQL: the Hosts page lists
each job-worker's host with its slots and warnings, and the Jobs page has a
host column and a host filter."""

from __future__ import annotations

import time

import pytest

from tests.test_dashboard import env, new_app, ok, open_page  # noqa: F401 - fixtures and helpers

TASKS = "testjobs.tasks.Tasks"


@pytest.fixture
def fleet(env, pg_url):  # noqa: F811 - the env fixture
    env.write_config(store=pg_url, executor="procrastinate", host="dash", worker_slots=2)
    return env


def test_the_hosts_page_lists_hosts_with_their_slots_and_warnings(fleet):
    from bgjobs import fleet as fleet_mode
    from bgjobs.wiring import wire

    rt = wire(fleet.config_path)
    mine = fleet_mode.config_fingerprint(rt.config)
    rt.store.upsert_host(
        name="h1", pid=11, started=time.time(), slots=4, version="1.0", config_fingerprint=mine
    )
    rt.store.upsert_host(
        name="h2", pid=12, started=time.time(), slots=2, version="1.0", config_fingerprint="other"
    )
    at = ok(new_app().run())
    at = open_page(at, "hosts")
    table = at.dataframe[0].value
    assert list(table["host"]) == ["h1", "h2"]
    assert list(table["slots used"]) == ["0 / 4", "0 / 2"]
    warnings = "\n".join(w.value for w in at.warning)
    assert "h2" in warnings and "differ" in warnings and "h1" not in warnings


def test_the_jobs_page_shows_and_filters_by_host(fleet):
    from bgjobs import launcher
    from bgjobs.pgstore import PgStore
    from bgjobs.wiring import wire

    rt = wire(fleet.config_path)
    for host in ("h1", "h2"):  # each host claims one job, as its runner would
        launcher.insert_job(rt, launcher.prepare(rt, TASKS, "ok", [host]))
        PgStore(rt.config.store, host).claim_due(max_running=9, class_limits={}, accept=lambda job: 1)
    rt.store.upsert_host(name="h1", pid=1, started=time.time(), slots=1, version="1", config_fingerprint="")
    at = ok(new_app().run())
    table = at.dataframe[0].value
    assert sorted(table["host"]) == ["h1", "h2"]
    at = ok(at.selectbox(key="jobs_host").set_value("h1").run())
    assert list(at.dataframe[0].value["host"]) == ["h1"]


def test_one_host_has_no_host_column_and_no_hosts_page(env):  # noqa: F811
    env.wait_final(env.submit("ok", "x"))
    at = ok(new_app().run())
    assert "host" not in at.dataframe[0].value.columns
    with pytest.raises(ValueError, match="Known pages"):  # the navigation has no Hosts page
        open_page(at, "hosts")


def test_the_logs_page_reads_every_hosts_records_from_the_events_table(fleet):
    from bgjobs import launcher
    from bgjobs.wiring import wire

    rt = wire(fleet.config_path)
    job = launcher.insert_job(rt, launcher.prepare(rt, TASKS, "ok", ["from another host"]))
    (fleet.root / "logs" / "background_jobs.log").unlink()  # this host's file says nothing
    at = ok(new_app().run())
    at = open_page(at, "logs")
    assert "events table" in "\n".join(c.value for c in at.caption)
    frame = at.dataframe[0].value
    assert job.id in list(frame["job_id"]) and "queued" in list(frame["event"].astype(str))
