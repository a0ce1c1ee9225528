"""What the dashboard's charts compute from log frames (bgjobs.logstats), and
the Logs page's failure rate, which counts every attempt in the main log."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from bgjobs.logstats import duration_bins, durations, events_per_hour, failure_rate_by_class
from bgjobs.logtable import read_log
from tests.conftest import REPO
from tests.test_logtable import sample


def test_events_per_hour(tmp_path):
    counts = events_per_hour(sample(tmp_path))
    assert counts.index.name == "hour" and list(counts.columns) == ["succeeded", "failed", "cancelled"]
    assert [str(h) for h in counts.index] == [
        "2026-11-28 10:00:00+00:00",
        "2026-11-28 11:00:00+00:00",
        "2026-11-28 12:00:00+00:00",
    ]
    assert counts.to_dict("list") == {"succeeded": [1, 0, 1], "failed": [0, 0, 1], "cancelled": [0, 0, 1]}
    assert len(events_per_hour(read_log(tmp_path / "none.log"))) == 0


def test_failure_rate_by_class(tmp_path):
    table = failure_rate_by_class(sample(tmp_path))
    assert list(table.columns) == ["class", "attempts", "failures", "rate"]
    assert table.to_dict("records") == [
        {"class": "jobs.B", "attempts": 3, "failures": 2, "rate": pytest.approx(2 / 3)},
        {"class": "jobs.A", "attempts": 1, "failures": 0, "rate": 0.0},
    ]
    assert len(failure_rate_by_class(read_log(tmp_path / "none.log"))) == 0


def test_durations(tmp_path):
    d = durations(sample(tmp_path))
    assert d.name == "duration" and d.dtype == "float64"
    assert sorted(d) == [1.0, 2.5, 3.0, 60.0]
    assert len(durations(read_log(tmp_path / "none.log"))) == 0


def test_duration_bins_are_even_or_log_spaced():
    even = duration_bins(pd.Series([1.0, 2.0, 3.0, 4.0]), bins=3)
    assert even.attrs["log"] is False and list(even["jobs"]) == [1, 1, 2]
    assert list(even["start"]) == [1.0, 2.0, 3.0] and list(even["end"]) == [2.0, 3.0, 4.0]
    wide = duration_bins(pd.Series([0.01, 0.1, 1.0, 10.0, np.nan, -1.0, np.inf]), bins=3)
    assert wide.attrs["log"] is True and list(wide["jobs"]) == [1, 1, 2]
    assert wide["end"].iloc[-1] == pytest.approx(10.0) and wide["start"].iloc[0] == pytest.approx(0.01)
    assert duration_bins(pd.Series([], dtype="float64")).empty
    one = duration_bins(pd.Series([5.0]))
    assert one["jobs"].sum() == 1 and one.attrs["log"] is False


# --- the Logs page's failure rate ----------------------------------------------


def attempt(minute: int, job_id: int, event: str, level: str = "INFO", cls: str = "jobs.B") -> str:
    return json.dumps(
        {
            "ts": f"2026-11-28T10:{minute:02d}:00.000Z",
            "level": level,
            "event": event,
            "job_id": job_id,
            "class": cls,
            "method": "run",
            "attempt": 1,
            "message": f"{event} {job_id}",
        }
    )


@pytest.fixture
def logs_app(project, monkeypatch):
    """A project whose main log holds four ended attempts of jobs.B, one of
    them failed, and whose errors log holds that failure alone."""
    from bgjobs.ui import throttle

    monkeypatch.setenv("BGJOBS_CONFIG", str(project.config_path))
    monkeypatch.delenv("BGJOBS_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.delenv("BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED", raising=False)
    monkeypatch.chdir(REPO)  # Streamlit reads .streamlit/config.toml from here
    throttle.LIMITER.reset()
    main = [attempt(2 * n, n, "started") for n in range(1, 5)]
    main += [attempt(2 * n + 1, n, "succeeded") for n in range(1, 4)]
    failure = attempt(9, 4, "attempt_failed", level="ERROR")
    logs = project.root / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "background_jobs.log").write_text("\n".join([*main, failure]) + "\n")
    (logs / "background_jobs_errors.log").write_text(failure + "\n")
    yield project
    throttle.LIMITER.reset()


def open_logs(tab: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30)
    at.query_params["logs_tab"] = tab
    at.run()
    at.switch_page("bgjobs/ui/pages/logs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def failure_rate_chart(at: AppTest) -> pd.DataFrame:
    """The data the failure-rate chart was drawn from (no rows: no chart)."""
    import pyarrow as pa

    for chart in at.get("vega_lite_chart"):
        if '"failed attempts"' in chart.proto.spec:
            (data,) = chart.proto.datasets
            return pa.ipc.open_stream(data.data.data).read_all().to_pandas()
    return pd.DataFrame(columns=["class", "attempts", "failures", "rate"])


def test_the_errors_tab_rates_failures_over_every_attempt(logs_app):
    at = open_logs("Errors")
    assert list(at.dataframe[0].value["event"]) == ["attempt_failed"]  # the tab lists errors only
    rates = failure_rate_chart(at)
    assert rates[["class", "attempts", "failures"]].to_dict("records") == [
        {"class": "jobs.B", "attempts": 4, "failures": 1}
    ]
    assert rates["rate"].tolist() == [0.25]  # not 100 %: the successes are in the main log


def test_the_failure_rate_ignores_filters_that_split_attempts(logs_app):
    at = open_logs("All events")
    assert failure_rate_chart(at)["rate"].tolist() == [0.25]
    at.multiselect(key="main_events").set_value(["attempt_failed"]).run()
    assert list(at.dataframe[0].value["event"]) == ["attempt_failed"]
    assert failure_rate_chart(at)["rate"].tolist() == [0.25]  # an event filter leaves the rate
    at.number_input(key="main_job").set_value(4).run()
    assert failure_rate_chart(at)["rate"].tolist() == [1.0]  # a job filter picks whole attempts
