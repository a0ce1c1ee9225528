"""Logs: both JSON Lines files as filterable tables, newest first, with charts.

Only the open tab is computed (the tabs rerun on switch). Each file is parsed
once per process and then grows by its new lines (bgjobs.ui.logdata).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from bgjobs import logstats, logtable
from bgjobs.eventlog import EVENTS, LEVELS
from bgjobs.ui import charts, common, logdata

TABS = {"All events": "main", "Errors": "errors"}
ROW_CAPS = (100, 500, 1000, 5000, 10000)
LIVE_SECONDS = 5.0
CHART_AGE = logdata.CHART_MAX_AGE
# The filters the failure rate honours: they pick whole attempts. A level, an
# event or a search text keeps some of an attempt's records and not others.
RATE_SCOPE = ("class_path", "job_id", "since", "until")
SHOWN = [
    "ts",
    "level",
    "event",
    "job_id",
    "class",
    "method",
    "attempt",
    "message",
    "exception",
    "error",
    "duration",
    "source",
    "user",
]


def render() -> None:
    cfg = common.config()
    st.title("Logs")
    tabs = st.tabs(list(TABS), key="logs_tab", bind="query-params")
    for tab, prefix in zip(tabs, TABS.values(), strict=True):
        if tab.open is False:
            continue  # a hidden tab costs nothing
        main_log = Path(cfg.main_log)
        path = main_log if prefix == "main" else Path(cfg.errors_log)
        with tab:
            live = st.toggle(
                "Follow",
                value=True,
                key=f"{prefix}_live",
                persist_state="session",
                help=f"Read new records every {LIVE_SECONDS:g} s (only the new lines are parsed).",
            )
            # The fragment reruns on its own, and when a filter in it changes.
            events = _events(cfg, errors=prefix != "main")
            st.fragment(_log_view, run_every=LIVE_SECONDS if live else None)(path, prefix, main_log, events)


def _events(cfg, *, errors: bool):
    """Fleet mode: the store's events table (every host's records); None on one host."""
    if cfg.executor != "procrastinate":
        return None
    from bgjobs.wiring import wire

    return logtable.EventsTail(wire(cfg).store, errors=errors)


def _log_view(path: Path, prefix: str, main_log: Path, events=None) -> None:
    if events is None and not path.exists():
        st.info(f"`{path}` does not exist yet. bgjobs creates it when the first job is queued.")
        return
    if events is not None:
        st.caption("Every host's records, from the fleet's events table.")
    with st.spinner(f"Reading {path.name}…", show_time=True):
        src = logdata.source(path, events)
    frame = src.frame
    if src.bad_lines:
        n = src.bad_lines
        st.warning(
            f"{n} line{'s' if n != 1 else ''} could not be read in `{path.name}` and "
            f"{'are' if n != 1 else 'is'} left out.",
            icon=":material/warning:",
        )
    filters, cap = _filters(prefix, frame)
    key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in filters.items()))
    filtered = src.memo(("filter", key), lambda df: logtable.filter_logs(df, **filters))
    newest = src.memo(("newest", key, cap), lambda _df: _newest(filtered, cap))
    # What the viewer chose (a relative time range's `since` moves on every run).
    choice = tuple((k, v) for k, v in key if k not in ("since", "until"))
    ranged = common.time_range_choice(f"{prefix}_range")
    _table(prefix, newest, len(filtered), len(frame), path, view_key=(choice, ranged, cap))
    _download(prefix, filtered, path)
    main_events = None if events is None else _events_like(events, errors=False)
    _charts(prefix, src, key, filtered, lambda: failure_rates(main_log, filters, main_events))


def _events_like(events, *, errors: bool):
    return logtable.EventsTail(events.store, errors=errors)


def failure_rates(main_log: Path, filters: dict, events=None) -> pd.DataFrame:
    """Failed attempts / ended attempts per class, over every attempt in the
    main log that the class, job and time filters select (see RATE_SCOPE).
    Never from the errors log, which holds the failures alone: every rate
    would be 100 %."""
    scope = {k: v for k, v in filters.items() if k in RATE_SCOPE}
    return logdata.source(main_log, events).memo(
        ("fail_rate", tuple(sorted(scope.items()))),
        lambda df: logstats.failure_rate_by_class(logtable.filter_logs(df, **scope)),
        CHART_AGE,
    )


def _filters(prefix: str, frame: pd.DataFrame) -> tuple[dict, int]:
    """The filter row of one tab; returns filter_logs arguments and the row cap."""
    with st.container(horizontal=True, vertical_alignment="bottom"):
        levels = []  # the errors log holds ERROR records only: no level to choose there
        if prefix == "main":
            levels = st.multiselect(
                "Level",
                list(LEVELS),
                key=f"{prefix}_levels",
                placeholder="any level",
                persist_state="session",
            )
        events = st.multiselect(
            "Event", list(EVENTS), key=f"{prefix}_events", placeholder="any event", persist_state="session"
        )
        classes = _classes(frame)
        class_path = st.selectbox(
            "Class",
            ["", *classes],
            key=f"{prefix}_class",
            format_func=lambda v: v or "any class",
            persist_state="session",
        )
        job_id = st.number_input(
            "Job id",
            min_value=1,
            value=None,
            step=1,
            key=f"{prefix}_job",
            placeholder="any job",
            persist_state="session",
        )
        with st.container():
            since, until = common.time_range_input(f"{prefix}_range")
        text = st.text_input(
            "Search", key=f"{prefix}_text", placeholder="message, error, traceback", persist_state="session"
        )
        cap = st.selectbox(
            "Rows",
            ROW_CAPS,
            index=2,
            key=f"{prefix}_cap",
            persist_state="session",
            help="The newest rows that match are shown; download gets them all.",
        )
    filters: dict = {}
    if levels:
        filters["levels"] = list(levels)
    if events:
        filters["events"] = list(events)
    if class_path:
        filters["class_path"] = class_path
    if job_id is not None:
        filters["job_id"] = int(job_id)
    # Rounded, so a relative range keeps hitting the memo between refreshes.
    if since is not None:
        filters["since"] = pd.Timestamp(math.floor(since / 10) * 10, unit="s", tz="UTC")
    if until is not None:
        filters["until"] = pd.Timestamp(until, unit="s", tz="UTC")
    if text.strip():
        filters["text"] = text.strip()
    return filters, int(cap)


def _classes(frame: pd.DataFrame) -> list[str]:
    if "class" not in frame or frame.empty:
        return []
    col = frame["class"]
    if isinstance(col.dtype, pd.CategoricalDtype):
        values = col.cat.categories
    else:
        values = col.dropna().unique()
    return sorted(str(v) for v in values if v is not None and str(v))


def _newest(filtered: pd.DataFrame, cap: int) -> pd.DataFrame:
    """The `cap` newest rows, newest first. The file is (nearly) in time order,
    so its last rows, reversed, are enough unless it is not."""
    if filtered["ts"].is_monotonic_increasing:
        return filtered.iloc[-cap:].iloc[::-1]  # never copies more than `cap` rows
    return filtered.sort_values("ts", ascending=False, kind="stable").head(cap)


def _table(prefix: str, newest: pd.DataFrame, matched: int, total: int, path: Path, view_key) -> None:
    # A selection is a row position: while one is made, keep showing the rows it
    # was made in, or each new record would shift it onto another. A new filter
    # is a new table (a new key), with no selection.
    table_key = f"{prefix}_table_{hash(view_key) & 0xFFFFFFFF:x}"
    held_key = f"{prefix}_held"
    state = st.session_state.get(table_key)
    rows = list(state.selection.rows) if state else []
    held = st.session_state.get(held_key)
    paused = bool(rows) and held is not None and held[0] == table_key
    if paused:
        newest = held[1]
    st.session_state[held_key] = (table_key, newest)
    if newest.empty:
        st.info("No record matches these filters." if total else f"`{path.name}` is empty.")
        return
    columns = [c for c in SHOWN if c in newest.columns]
    view = newest[columns].copy()
    view["level"] = [[str(v)] if pd.notna(v) else [] for v in view["level"]]
    view["event"] = view["event"].astype("string")
    tz = common.viewer_zone().key
    st.dataframe(
        view,
        key=table_key,
        placeholder="—",
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        height=min(38 + 35 * len(view), 520),
        column_config={
            "ts": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm:ss.SSS", timezone=tz),
            "level": st.column_config.MultiselectColumn(
                "level", options=list(LEVELS), color=[common.LEVEL_CSS[lv] for lv in LEVELS], width="small"
            ),
            "job_id": st.column_config.NumberColumn("job", format="%d", width="small"),
            "attempt": st.column_config.NumberColumn("attempt", format="%d", width="small"),
            "message": st.column_config.TextColumn("message", width="large"),
            "duration": st.column_config.NumberColumn("duration", format="%.2f s", width="small"),
        },
    )
    more = f" (the newest {len(view):,} shown)" if matched > len(view) else ""
    if paused:
        st.caption(
            f"The table holds still while a row is selected ({matched:,} of {total:,} records match "
            f"now); clear the selection to see new records. Times in {tz}."
        )
    else:
        st.caption(
            f"{matched:,} of {total:,} records match{more}; times in {tz}. Select a row to see the whole record."
        )
    if rows and rows[0] < len(newest):
        _record(newest.iloc[rows[0]])


def _record(row: pd.Series) -> None:
    with st.container(border=True):
        st.markdown(
            f"**{row.get('event')}** · {row.get('level')} · job {_fmt(row.get('job_id'))} · "
            f"attempt {_fmt(row.get('attempt'))}"
        )
        st.text(str(row.get("message") or ""))
        tb = row.get("traceback")
        if isinstance(tb, str) and tb:
            st.code(tb, language="python")
        record = {k: _plain(v) for k, v in row.items() if k != "traceback" and _present(v)}
        st.json(record, expanded=False)


def _present(value) -> bool:
    if isinstance(value, (list, dict)):
        return True
    try:
        return not pd.isna(value)
    except (TypeError, ValueError):
        return True


def _plain(value):
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def _fmt(value) -> str:
    try:
        return str(int(value))
    except (TypeError, ValueError):
        return "—"


def _download(prefix: str, filtered: pd.DataFrame, path: Path) -> None:
    if filtered.empty:
        return

    def csv(df: pd.DataFrame = filtered) -> bytes:  # runs only when clicked
        return df.to_csv(index=False).encode("utf-8")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    st.download_button(
        f"Download {common.count(len(filtered), 'row')} as CSV",
        data=csv,
        file_name=f"{path.stem}-{stamp}.csv",
        mime="text/csv",
        key=f"{prefix}_download",
        on_click="ignore",
        icon=":material/download:",
    )


def _charts(
    prefix: str,
    src: logdata.LogSource,
    key: tuple,
    filtered: pd.DataFrame,
    rates: Callable[[], pd.DataFrame],
) -> None:
    if filtered.empty:
        return
    with st.expander("Charts", expanded=True):
        st.caption(
            f"From the {len(filtered):,} matching records; while the log grows, they refresh "
            f"every {CHART_AGE:g} s."
        )
        left, middle, right = st.columns(3)
        with left:
            st.markdown("**Events per hour, by outcome**")
            data = src.memo(("per_hour", key), lambda _df: logstats.events_per_hour(filtered), CHART_AGE)
            charts.events_per_hour(data, key=f"{prefix}_chart_hour")
        with middle:
            st.markdown("**Failure rate per class**")
            charts.failure_rate(rates(), key=f"{prefix}_chart_rate")
            st.caption(
                "Of every attempt that ended, in the main log, for the class, job and time range "
                "chosen; the level, event and search filters leave it as it is."
            )
        with right:
            st.markdown("**Durations**")
            data = src.memo(
                ("durations", key),
                lambda _df: logstats.duration_bins(logstats.durations(filtered)),
                CHART_AGE,
            )
            charts.durations(data, key=f"{prefix}_chart_dur")
