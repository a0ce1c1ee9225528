"""Statistics of log records, as the dashboard's charts draw them.

    frame = logtable.read_log(config.main_log)
    events_per_hour(frame)          # outcomes per hour, gaps as 0
    failure_rate_by_class(frame)    # failed attempts / ended attempts, per class
    duration_bins(durations(frame)) # a histogram of how long jobs took

Each function takes a frame as bgjobs.logtable reads it (any subset of its
rows) and returns a small table: a few hundred rows at most, whatever the size
of the log, so a chart never ships a million points to the browser.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

OUTCOMES = ("succeeded", "failed", "cancelled")
ATTEMPT_ENDS = ("succeeded", "attempt_failed", "timed_out", "lost")  # cancelled attempts count for neither
ATTEMPT_FAILURES = ("attempt_failed", "timed_out", "lost")


def events_per_hour(df: pd.DataFrame, outcomes: Iterable[str] = OUTCOMES) -> pd.DataFrame:
    """Counts of outcome events per hour: index `hour` (UTC, every hour from the
    first to the last, gaps as 0), one int column per outcome."""
    outcomes = list(outcomes)
    rows = df[df["event"].isin(outcomes) & df["ts"].notna()]
    hours = rows["ts"].dt.floor("h")
    counts = pd.crosstab(hours, rows["event"].astype(str)) if len(rows) else pd.DataFrame()
    counts = counts.reindex(columns=outcomes, fill_value=0)
    if len(counts):
        full = pd.date_range(counts.index.min(), counts.index.max(), freq="h")
        counts = counts.reindex(full, fill_value=0)
    else:
        counts.index = pd.DatetimeIndex([], tz="UTC")
    counts.index.name = "hour"
    counts.columns.name = None
    return counts.astype("int64")


def failure_rate_by_class(df: pd.DataFrame) -> pd.DataFrame:
    """Per class: attempts that ended (succeeded, attempt_failed, timed_out,
    lost), how many of them failed, and the rate (failures / attempts). Most
    failing first.

    The rate means something only over every record of the attempts counted,
    as the main log holds them: the errors log, or rows kept by level or by
    event, hold the failures alone, and every rate would be 100 %."""
    rows = df[df["event"].isin(ATTEMPT_ENDS) & df["class"].notna()]
    failed = rows["event"].isin(ATTEMPT_FAILURES)
    table = (
        pd.DataFrame({"class": rows["class"].astype(str), "failed": failed.astype("int64")})
        .groupby("class", sort=True)["failed"]
        .agg(attempts="size", failures="sum")
        .reset_index()
    )
    table["attempts"] = table["attempts"].astype("int64")
    table["failures"] = table["failures"].astype("int64")
    table["rate"] = (table["failures"] / table["attempts"]).astype("float64")
    return table.sort_values(["rate", "failures", "class"], ascending=[False, False, True], ignore_index=True)


def durations(df: pd.DataFrame) -> pd.Series:
    """Seconds each finished job took, from the `duration` of its succeeded,
    failed or cancelled record (rows without one are left out)."""
    rows = df[df["event"].isin(OUTCOMES)]
    return rows["duration"].dropna().astype("float64").rename("duration")


def duration_bins(seconds: pd.Series, bins: int = 30) -> pd.DataFrame:
    """A histogram of job durations: columns start, end, jobs. The bins are
    log-spaced when the durations span more than a factor of 20, else even;
    `attrs["log"]` says which. Negative, infinite and missing values are left
    out; none left gives no rows."""
    values = seconds.to_numpy(dtype="float64")
    values = values[np.isfinite(values) & (values >= 0)]
    if not len(values):
        return pd.DataFrame({"start": [], "end": [], "jobs": []})
    low, high = float(values.min()), float(values.max())
    log = low > 0 and high / low > 20
    if log:
        edges = np.geomspace(low, high, bins + 1)
    else:
        edges = np.linspace(low, max(high, low + 1e-3), bins + 1)
    counts, edges = np.histogram(values, bins=edges)
    hist = pd.DataFrame({"start": edges[:-1], "end": edges[1:], "jobs": counts})
    hist.attrs["log"] = log
    return hist
