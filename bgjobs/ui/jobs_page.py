"""Jobs: live counts, a filtered table that refreshes itself, and one job's detail."""

from __future__ import annotations

import json
import sqlite3
import time

import pandas as pd
import streamlit as st

from bgjobs import api
from bgjobs.config import Config
from bgjobs.errors import BgjobsError
from bgjobs.job import Job, Status
from bgjobs.ui import common, job_detail

REFRESH_SECONDS = 3.0
ROW_LIMITS = (50, 200, 500, 1000)
TABLE_KEY = "jobs_table"
_IDS_KEY = "_jobs_table_ids"  # job id of each table row, for the selection callback


def render() -> None:
    cfg = common.config()
    st.title("Jobs")
    filters = _filters(cfg)
    live = st.session_state.get("jobs_live", True)
    # Only this fragment reruns on the timer, so the filters above keep their
    # state and the page does not flicker.
    st.fragment(_live_view, run_every=REFRESH_SECONDS if live else None)(cfg, filters)


def _filters(cfg: Config) -> dict:
    """The filter row; returns keyword arguments for api.list_jobs."""
    with st.container(horizontal=True, vertical_alignment="bottom"):
        statuses = st.multiselect(
            "Status",
            [s.value for s in Status],
            key="jobs_status",
            placeholder="any status",
            persist_state="session",
        )
        class_path = st.selectbox(
            "Class",
            ["", *cfg.classes],
            key="jobs_class",
            persist_state="session",
            format_func=lambda v: v or "any class",
        )
        with st.container():
            since, until = common.time_range_input("jobs_range")
        host = ""
        if cfg.executor == "procrastinate":  # fleet mode: which host's runner has (or had) the job
            host = st.selectbox(
                "Host",
                ["", *(h["name"] for h in _hosts(cfg))],
                key="jobs_host",
                persist_state="session",
                format_func=lambda v: v or "any host",
            )
        text = st.text_input(
            "Search", key="jobs_text", placeholder="class, method, params, error", persist_state="session"
        )
        limit = st.selectbox(
            "Rows",
            ROW_LIMITS,
            index=1,
            key="jobs_limit",
            persist_state="session",
            help="The newest jobs that match are shown; older ones are not loaded.",
        )
        st.toggle(
            "Live",
            value=True,
            key="jobs_live",
            persist_state="session",
            help=f"Refresh the counts, the table and the open job every {REFRESH_SECONDS:g} s.",
        )
    filters = {
        "statuses": tuple(statuses) or None,
        "class_path": class_path or None,
        "since": since,
        "until": until,
        "text": text.strip() or None,
        "limit": int(limit),
    }
    if host:
        filters["host"] = host
    return filters


def _hosts(cfg: Config) -> list[dict]:
    try:
        return api.hosts(config=cfg)
    except BgjobsError:
        return []


def _live_view(cfg: Config, filters: dict) -> None:
    try:
        jobs = api.list_jobs(config=cfg, **filters)  # also dispatches and reconciles
        counts = api.job_counts(config=cfg, since=time.time() - 24 * 3600)
    except (BgjobsError, sqlite3.Error, OSError) as exc:
        st.error(f"Cannot read the job store: {exc}")
        return
    _metrics(counts)
    _table(jobs, filters)
    job_detail.render(cfg)


def _metrics(counts: dict[str, int]) -> None:
    retrying = counts.get(Status.RETRYING, 0)
    cols = st.columns(4)
    cols[0].metric("Running", counts.get(Status.RUNNING, 0), border=True)
    cols[1].metric(
        "Queued",
        counts.get(Status.QUEUED, 0) + retrying,
        border=True,
        help=f"Waiting for a free slot or their start time; {retrying} of them "
        "wait to retry after a failed attempt.",
    )
    cols[2].metric("Failed (24 h)", counts.get(Status.FAILED, 0), border=True)
    cols[3].metric("Succeeded (24 h)", counts.get(Status.SUCCEEDED, 0), border=True)


def jobs_frame(jobs: list[Job], now: float | None = None) -> pd.DataFrame:
    """One row per job, in the shape the table shows."""
    now = time.time() if now is None else now
    rows = []
    for j in jobs:
        if j.status is Status.SUCCEEDED:
            progress = 1.0
        else:
            progress = j.progress
        if j.started_at is None:
            duration = None
        else:
            duration = (j.finished_at if j.finished_at is not None else now) - j.started_at
        rows.append(
            {
                "id": j.id,
                "job": j.name,
                "params": _params_text(j.params),
                "status": [j.status.value],
                "priority": j.priority,
                "attempts": f"{j.attempt}/{j.max_attempts}",
                "progress": progress,
                "created": j.created_at,
                "started": j.started_at,
                "finished": j.finished_at,
                "duration": duration,
                "user": j.user or j.source or "",
                "error": j.error or "",
                "host": j.host or "",
            }
        )
    df = pd.DataFrame(
        rows,
        columns=[
            "id",
            "job",
            "params",
            "status",
            "priority",
            "attempts",
            "progress",
            "created",
            "started",
            "finished",
            "duration",
            "user",
            "error",
            "host",
        ],
    )
    for col in ("created", "started", "finished"):
        df[col] = pd.to_datetime(df[col].astype("float64"), unit="s", utc=True)
    df["progress"] = df["progress"].astype("float64")
    df["duration"] = df["duration"].astype("float64")
    return df


def _params_text(params: tuple) -> str:
    text = json.dumps(list(params), ensure_ascii=False)
    return text if len(text) <= 200 else text[:199] + "…"


def _table(jobs: list[Job], filters: dict) -> None:
    if not jobs:
        if any(v for k, v in filters.items() if k != "limit"):
            st.info("No job matches these filters.")
        else:
            st.info(
                "No jobs yet. Start one on the Launch page, or run "
                "`job-run jobs.example.ExampleJob handle --params=5`."
            )
            st.page_link(common.page_path("launch"), label="Launch a job", icon=":material/rocket_launch:")
        st.session_state[_IDS_KEY] = []
        return
    df = jobs_frame(jobs)
    if not df["host"].any():
        df = df.drop(columns="host")  # one host: the column would say nothing
    st.session_state[_IDS_KEY] = df["id"].tolist()
    tz = common.viewer_zone().key
    when = {"format": "MMM D, HH:mm:ss", "timezone": tz}
    st.dataframe(
        df,
        key=TABLE_KEY,
        placeholder="—",
        on_select=_open_selected,
        selection_mode="single-row",
        hide_index=True,
        height=min(38 + 35 * len(df), 420),
        column_config={
            "id": st.column_config.NumberColumn("id", format="%d", width="small", pinned=True),
            "job": st.column_config.TextColumn("class.method"),
            "params": st.column_config.TextColumn("params", width="small"),
            "status": common.status_tags_column(),
            "priority": st.column_config.NumberColumn(
                "prio", format="%d", width="small", help="Niceness: lower runs first"
            ),
            "attempts": st.column_config.TextColumn("attempt", width="small", help="Attempts made / allowed"),
            "progress": st.column_config.ProgressColumn(
                "progress", min_value=0.0, max_value=1.0, format="percent", width="small", color="#1c83e1"
            ),
            "created": st.column_config.DatetimeColumn("created", **when),
            "started": st.column_config.DatetimeColumn("started", **when),
            "finished": st.column_config.DatetimeColumn("finished", **when),
            "duration": st.column_config.NumberColumn("duration", format="%.1f s", width="small"),
            "user": st.column_config.TextColumn("by", width="small"),
            "error": st.column_config.TextColumn("error", width="medium"),
            "host": st.column_config.TextColumn(
                "host", width="small", help="The host whose runner has the job"
            ),
        },
    )
    shown = f"{len(df)} newest matching jobs" if len(df) >= filters["limit"] else common.count(len(df), "job")
    st.caption(f"{shown}; times in {tz}. Select a row to open the job.")


def _open_selected() -> None:
    """Selecting a row opens that job; the selection itself is cleared, because
    row positions move as new jobs arrive."""
    state = st.session_state.get(TABLE_KEY)
    rows = list(state.selection.rows) if state else []
    ids = st.session_state.get(_IDS_KEY, [])
    if rows and rows[0] < len(ids):
        job_detail.open_job(ids[rows[0]])
    st.session_state[TABLE_KEY] = {"selection": {"rows": [], "columns": [], "cells": []}}
