"""The Logs page's three charts, drawn with Altair. Their data arrive
aggregated by bgjobs.logstats (a few hundred rows at most), so the browser never
gets a million points; this module only draws."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from bgjobs.job import Status
from bgjobs.ui.common import STATUS_CSS, viewer_zone

MAX_BARS = 24 * 21  # beyond three weeks of hours, show days
HEIGHT = 260


def events_per_hour(counts: pd.DataFrame, *, key: str) -> None:
    """Stacked bars of outcomes (succeeded, failed, cancelled) per hour, from
    logstats.events_per_hour."""
    if counts.empty or not counts.to_numpy().any():
        st.caption("No job finished in this selection.")
        return
    unit = "hour"
    if len(counts) > MAX_BARS:
        counts = counts.resample("D").sum()
        unit = "day"
    long = counts.reset_index(names="time").melt("time", var_name="outcome", value_name="events")
    outcomes = list(counts.columns)
    known = {s.value: STATUS_CSS[s] for s in Status}
    colors = [known.get(o, "#9aa0a6") for o in outcomes]
    chart = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("time:T", title=f"{unit} ({viewer_zone().key})"),  # Vega draws in the browser's zone
            y=alt.Y("sum(events):Q", title=f"events per {unit}"),
            color=alt.Color(
                "outcome:N",
                scale=alt.Scale(domain=outcomes, range=colors),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=[alt.Tooltip("time:T", title=unit, format="%Y-%m-%d %H:00"), "outcome:N", "events:Q"],
        )
        .properties(height=HEIGHT)
    )
    st.altair_chart(chart, key=key)


def failure_rate(table: pd.DataFrame, *, key: str) -> None:
    """Failed attempts / ended attempts per class, from logstats.failure_rate_by_class."""
    if table.empty:
        st.caption("No attempt ended in this selection.")
        return
    data = table.head(20).assign(short=lambda t: t["class"].str.rsplit(".", n=1).str[-1])
    base = alt.Chart(data).encode(
        y=alt.Y("short:N", title=None, sort="-x"),
        tooltip=["class:N", "attempts:Q", "failures:Q", alt.Tooltip("rate:Q", format=".1%")],
    )
    bars = base.mark_bar(color=STATUS_CSS[Status.FAILED], size=18).encode(
        x=alt.X("rate:Q", title="failed attempts", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1]))
    )
    labels = (
        base.mark_text(align="left", dx=4)
        .encode(x="rate:Q", text=alt.Text("label:N"))
        .transform_calculate(label="format(datum.rate, '.0%') + ' of ' + datum.attempts")
    )
    # A fixed step per class: a height computed from the row count left too little
    # room once the axis took its share, and the bars ran into each other.
    st.altair_chart((bars + labels).properties(height=alt.Step(34)), key=key)


def durations(hist: pd.DataFrame, *, key: str) -> None:
    """The histogram from logstats.duration_bins."""
    if hist.empty or not hist["jobs"].any():
        st.caption("No durations in this selection.")
        return
    log = bool(hist.attrs.get("log"))
    domain = [float(hist["start"].iloc[0]), float(hist["end"].iloc[-1])]
    scale = alt.Scale(type="log" if log else "linear", domain=domain, nice=False)
    chart = (
        alt.Chart(hist)
        .mark_bar(color=STATUS_CSS[Status.RUNNING], binSpacing=1)
        .encode(
            x=alt.X("start:Q", title="seconds (log scale)" if log else "seconds", scale=scale),
            x2="end:Q",
            y=alt.Y("jobs:Q", title="jobs", axis=alt.Axis(tickMinStep=1, format="d")),  # no "0.5 jobs"
            y2=alt.datum(0),
            tooltip=[alt.Tooltip("start:Q", format=".3g"), alt.Tooltip("end:Q", format=".3g"), "jobs:Q"],
        )
        .properties(height=HEIGHT)
    )
    st.altair_chart(chart, key=key)
    values = hist["jobs"].sum()
    st.caption(f"{int(values):,} finished jobs with a duration.")
