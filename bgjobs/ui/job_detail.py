"""One job's detail: its facts, Cancel and Retry, its log timeline, the
traceback of each failed attempt, and the tail of its output."""

from __future__ import annotations

import json
import re

import pandas as pd
import streamlit as st

from bgjobs import api
from bgjobs.config import Config
from bgjobs.errors import BgjobsError, NoSuchJob
from bgjobs.job import Job, Status
from bgjobs.output import CUT_MARK
from bgjobs.ui import common

JOB_KEY = "job"  # the open job's id, as text; bound to the URL as ?job=ID
MAX_ID = 2**63 - 1  # SQLite's largest integer
_CONFIRM = "_job_confirm_cancel"  # id of the job whose Cancel awaits confirmation
_PENDING = "_job_pending"  # {"id": job id, "action": "cancel" | "retry"}
_FLASH = "_job_flash"  # (kind, message) shown once after an action
OUTPUT_BYTES = 64 * 1024


def open_job(job_id: int | None) -> None:
    """Show job `job_id` (None closes the detail). For callbacks."""
    st.session_state[JOB_KEY] = None if job_id is None else str(int(job_id))
    st.session_state.pop(_CONFIRM, None)


def parse_job_id(text: str) -> int | None:
    """The job id that `text` names, or None if it names none: ids are whole
    numbers from 1 to SQLite's largest integer, in ASCII digits."""
    text = text.strip()
    if not re.fullmatch(r"[0-9]{1,19}", text):
        return None
    job_id = int(text)
    return job_id if 1 <= job_id <= MAX_ID else None


def render(cfg: Config) -> None:
    st.divider()
    # A text box, not a number box: the URL seeds it (?job=...), and a number
    # box's own parsing of a link such as ?job=1e400 raised inside Streamlit.
    # Here any text arrives, and parse_job_id judges it.
    text = st.text_input(
        "Open job",
        value=None,
        key=JOB_KEY,
        bind="query-params",
        placeholder="job id, or select a row above",
        width=260,
    )
    if not text or not text.strip():
        return
    job_id = parse_job_id(text)
    if job_id is None:
        shown = text.strip() if len(text.strip()) <= 40 else text.strip()[:39] + "…"
        st.warning(f"There is no job {common.md(shown)}; a job id is a whole number such as 42.")
        return
    try:
        job = api.get_job(job_id, config=cfg, refresh=False)  # list_jobs just dispatched
    except NoSuchJob:
        st.warning(f"There is no job {job_id}.")
        return
    pending = _pending_action(job)
    _header(job)
    _flash()
    _actions(cfg, job, pending)
    _facts(job)
    timeline, attempts, output = st.tabs(["Timeline", "Failed attempts", "Output"])
    records = _records(cfg, job.id)
    with timeline:
        _timeline(records)
    with attempts:
        _failures(job, records)
    with output:
        _output(cfg, job)


def _pending_action(job: Job) -> str | None:
    """The action that is still under way on this job, if any. A cancel stays
    pending until the job is final."""
    pending = st.session_state.get(_PENDING)
    if pending and pending["id"] == job.id:
        if job.is_final or pending["action"] != "cancel":
            st.session_state.pop(_PENDING, None)
        else:
            return pending["action"]
    if job.cancel_requested_at is not None and not job.is_final:
        return "cancel"
    return None


def _header(job: Job) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.subheader(f"Job {job.id} · {job.name}", anchor=False, width="content")
        common.status_badge(job.status)
    if job.status is Status.RUNNING:
        fraction = min(max(job.progress or 0.0, 0.0), 1.0)
        label = job.progress_message or ("working" if job.progress is None else f"{fraction:.0%}")
        st.progress(fraction, text=label)


def _flash() -> None:
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        kind, message = flash
        (st.success if kind == "success" else st.error)(message)


def _actions(cfg: Config, job: Job, pending: str | None) -> None:
    if st.session_state.get(_CONFIRM) == job.id and job.is_active and pending is None:
        st.warning(
            f"Cancel job {job.id} ({job.name})? A running job gets SIGTERM, and SIGKILL "
            f"after {job.cancel_grace:g} s if it has not stopped.",
            icon=":material/front_hand:",
        )
        with st.container(horizontal=True):
            st.button(
                "Yes, cancel it",
                key="job_cancel_confirm",
                type="primary",
                on_click=_cancel,
                args=(cfg, job.id),
            )
            st.button("No, keep it", key="job_cancel_abort", on_click=_ask_cancel, args=(None,))
        return
    busy = pending is not None
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button(
            "Cancel job",
            key="job_cancel",
            icon=":material/cancel:",
            disabled=busy or not job.is_active,
            on_click=_ask_cancel,
            args=(job.id,),
            help="Stop a queued, running or retrying job (asks first).",
        )
        st.button(
            "Retry",
            key="job_retry",
            icon=":material/replay:",
            disabled=busy or not job.is_final,
            on_click=_retry,
            args=(cfg, job.id),
            help="Launch a new job with the same class, method, params and priority.",
        )
        st.button("Close", key="job_close", icon=":material/close:", on_click=open_job, args=(None,))
        if pending == "cancel":
            st.caption(f"⏳ Cancel requested{_by(job)}; waiting for the job to stop…")


def _by(job: Job) -> str:
    who = job.cancel_user or job.cancel_source
    return f" by {common.md(who)}" if who else ""


def _ask_cancel(job_id: int) -> None:
    st.session_state[_CONFIRM] = job_id


def _cancel(cfg: Config, job_id: int) -> None:
    st.session_state.pop(_CONFIRM, None)
    st.session_state[_PENDING] = {"id": job_id, "action": "cancel"}
    try:
        # wait=False: the runner stops the job within its grace period and the
        # live view shows the outcome; the session is not blocked meanwhile.
        result = api.cancel_job(
            job_id, source=common.SOURCE, user=common.viewer().name, config=cfg, wait=False
        )
    except BgjobsError as exc:
        st.session_state.pop(_PENDING, None)
        st.session_state[_FLASH] = ("error", str(exc))
        return
    if result.job.is_final:
        st.session_state[_FLASH] = ("success", f"Job {job_id} is {result.job.status.value}.")
    else:
        st.session_state[_FLASH] = ("success", f"Cancel of job {job_id} requested; it is stopping.")


def _retry(cfg: Config, job_id: int) -> None:
    st.session_state[_PENDING] = {"id": job_id, "action": "retry"}
    try:
        new = api.retry_job(job_id, source=common.SOURCE, user=common.viewer().name, config=cfg)
    except BgjobsError as exc:
        st.session_state[_FLASH] = ("error", f"Retry refused: {exc}")
        return
    finally:
        st.session_state.pop(_PENDING, None)
    open_job(new.id)
    st.session_state[_FLASH] = ("success", f"Job {job_id} launched again as job {new.id}.")


def _attempt(job: Job) -> str:
    """The attempt number; a job claimed by its runner, whose attempt has not
    started yet (for a moment after a launch or a retry), is `1 (starting)`."""
    if job.status is Status.RUNNING and job.started_at is None:
        return f"{job.attempt + 1} (starting)"
    return str(job.attempt)


def _facts(job: Job) -> None:
    left, right = st.columns(2)
    with left:
        st.markdown(
            f"**Class** `{job.class_path}` · **method** `{job.method}`  \n"
            f"**Attempt** {_attempt(job)} of {job.max_attempts} · **priority** {job.priority} · "
            f"**timeout** {f'{job.timeout:g} s' if job.timeout else 'none'}  \n"
            f"**Launched by** {common.md(job.user or '—')} via {common.md(job.source or '—')}"
            + (f" · **retry of** job {job.retry_of}" if job.retry_of else "")
        )
        params = json.dumps(list(job.params), ensure_ascii=False)
        if len(params) > 80:
            params = json.dumps(list(job.params), indent=1, ensure_ascii=False)
        st.code(params, language="json")
    with right:
        duration = job.duration
        st.markdown(
            f"**Created** {common.fmt_time(job.created_at)}  \n"
            f"**Started** {common.fmt_time(job.started_at)}  \n"
            f"**Finished** {common.fmt_time(job.finished_at)}  \n"
            f"**Duration** {common.fmt_duration(duration)}  \n"
            f"**Process** {job.pid or '—'} · **exit** "
            f"{job.exit_code if job.exit_code is not None else '—'}"
            + (f" · **signal** {job.exit_signal}" if job.exit_signal else "")
        )
        if job.cancel_requested_at:
            st.caption(f"Cancel requested{_by(job)} at {common.fmt_time(job.cancel_requested_at)}")
        if job.result is not None:
            st.markdown(f"**Result** {common.md(job.result[:500])}")
        if job.error:
            kind = f"{common.md(job.exception)}: " if job.exception else ""
            st.markdown(f"**Error** {kind}{common.md(job.error[:500])}")


def _records(cfg: Config, job_id: int) -> pd.DataFrame | None:
    try:
        from bgjobs.ui import logdata

        with st.spinner("Reading the log…"):
            return logdata.job_records(cfg.main_log, job_id)
    except Exception as exc:  # noqa: BLE001 - the detail still works without its log
        st.caption(f"The log could not be read: {exc}")
        return None


def _timeline(records: pd.DataFrame | None) -> None:
    if records is None or records.empty:
        st.caption("No log records for this job yet.")
        return
    rows = records.sort_values("ts", kind="stable")
    view = pd.DataFrame(
        {
            "time": rows["ts"],
            "event": rows["event"].astype("string"),
            "level": rows["level"].astype("string"),
            "attempt": rows["attempt"],
            "message": rows["message"],
        }
    )
    st.dataframe(
        view,
        hide_index=True,
        key="job_timeline",
        placeholder="—",
        column_config={
            "time": st.column_config.DatetimeColumn(
                "time", format="YYYY-MM-DD HH:mm:ss.SSS", timezone=common.viewer_zone().key
            ),
            "attempt": st.column_config.NumberColumn("attempt", format="%d", width="small"),
            "message": st.column_config.TextColumn("message", width="large"),
        },
    )


def _failures(job: Job, records: pd.DataFrame | None) -> None:
    shown = 0
    if records is not None and not records.empty and "traceback" in records:
        failed = records[records["traceback"].notna() & (records["traceback"].astype("string") != "")]
        for _, row in failed.iterrows():
            shown += 1
            # All open when there are a few; else only the latest.
            expanded = len(failed) <= 3 or shown == len(failed)
            title = f"Attempt {_int(row.get('attempt'))} · {row['event']} · {row.get('exception') or ''}"
            with st.expander(title, expanded=expanded):
                if pd.notna(row.get("error")):
                    st.markdown(
                        f"**{common.md(row.get('exception') or 'Error')}:** {common.md(row['error'])}"
                    )
                st.code(str(row["traceback"]), language="python")
    if not shown:
        if job.error and job.status in (Status.FAILED, Status.RETRYING):
            st.markdown(f"**{common.md(job.exception or 'Error')}:** {common.md(job.error)}")
            st.caption("No traceback was logged for this failure.")
        else:
            st.caption("No attempt of this job has failed.")


def _int(value) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "?"


def _output(cfg: Config, job: Job) -> None:
    text = api.output_tail(job.id, max_bytes=OUTPUT_BYTES, config=cfg)
    path = cfg.output_path(job.id)
    if job.output_error:
        st.warning(f"Output was lost from some point on: {job.output_error}. The job ran on.")
    if CUT_MARK in text:
        st.info(
            f"This output passed output_max_bytes ({cfg.output_max_bytes:,} bytes): its start and its "
            "latest tail are kept, and a line marks where the middle was cut."
        )
    if not text:
        st.caption(f"No output yet ({path}).")
        return
    st.code(text, language=None, height=360, line_numbers=False)
    st.caption(f"The last {OUTPUT_BYTES // 1024} KB of {path}.")
