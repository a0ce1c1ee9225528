"""What every page shares: the config, who is looking, how a status and a time look."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import streamlit as st

from bgjobs.config import Config, load_config
from bgjobs.errors import ConfigError
from bgjobs.job import Status

PAGES_DIR = Path(__file__).resolve().parent / "pages"
SOURCE = "dashboard"  # the `source` of every launch and cancel made here

_CONFIG_KEY = "_bgjobs_config"
_VIEWER_KEY = "_bgjobs_viewer"


@dataclass(frozen=True)
class Viewer:
    """The person using the dashboard, as the job records name them."""

    name: str  # passed as user= to the api: OIDC email or name, "admin", or "local"
    method: str  # "oidc", "password" or "none"

    @property
    def authenticated(self) -> bool:
        return self.method != "none"


def set_viewer(viewer: Viewer) -> None:
    st.session_state[_VIEWER_KEY] = viewer


def viewer() -> Viewer:
    """Who is signed in (set by the auth gate on every full run)."""
    return st.session_state.get(_VIEWER_KEY) or Viewer("local", "none")


def load_config_or_stop() -> Config:
    """Read the config ($BGJOBS_CONFIG or ./config.yaml) once per run. On a bad
    config, show what is wrong and how to fix it, and stop the page."""
    try:
        cfg = load_config()
    except ConfigError as exc:
        st.title("bgjobs cannot start")
        st.error("The configuration could not be loaded, so no page can be shown.", icon=":material/error:")
        st.code(str(exc), language=None, wrap_lines=True)
        st.markdown(
            "Fix the file and reload this page. The dashboard reads the file named by "
            "`BGJOBS_CONFIG`, or `config.yaml` in the folder it was started from."
        )
        st.stop()
    st.session_state[_CONFIG_KEY] = cfg
    return cfg


def config() -> Config:
    """The config loaded by this session's last full run."""
    cfg = st.session_state.get(_CONFIG_KEY)
    return cfg if cfg is not None else load_config_or_stop()


# --- statuses --------------------------------------------------------------------

# Material icons ship with Streamlit, so they render where emoji fonts are missing.
STATUS_ICON = {
    Status.QUEUED: ":material/schedule:",
    Status.RUNNING: ":material/play_circle:",
    Status.RETRYING: ":material/replay:",
    Status.SUCCEEDED: ":material/check_circle:",
    Status.FAILED: ":material/error:",
    Status.CANCELLED: ":material/block:",
}
# Streamlit's named colours for st.badge, and CSS colours for table tags.
STATUS_BADGE = {
    Status.QUEUED: "gray",
    Status.RUNNING: "blue",
    Status.RETRYING: "orange",
    Status.SUCCEEDED: "green",
    Status.FAILED: "red",
    Status.CANCELLED: "violet",
}
STATUS_CSS = {
    Status.QUEUED: "#9aa0a6",
    Status.RUNNING: "#1c83e1",
    Status.RETRYING: "#ff8c00",
    Status.SUCCEEDED: "#21c354",
    Status.FAILED: "#ff4b4b",
    Status.CANCELLED: "#803df5",
}
LEVEL_CSS = {"INFO": "#1c83e1", "WARNING": "#ff8c00", "ERROR": "#ff4b4b"}


def status_badge(status: Status) -> None:
    st.badge(status.value, icon=STATUS_ICON[status], color=STATUS_BADGE[status])


def status_tags_column(label: str = "status"):
    """A read-only tag column that colours each status."""
    statuses = list(Status)
    return st.column_config.MultiselectColumn(
        label,
        options=[s.value for s in statuses],
        color=[STATUS_CSS[s] for s in statuses],
    )


# --- times -------------------------------------------------------------------------

TIME_RANGES = {
    "Last 15 minutes": 15 * 60,
    "Last hour": 3600,
    "Last 24 hours": 24 * 3600,
    "Last 7 days": 7 * 24 * 3600,
    "Last 30 days": 30 * 24 * 3600,
    "All time": None,
    "Custom dates": "custom",
}


def time_range_input(key: str, default: str = "All time") -> tuple[float | None, float | None]:
    """A time-range picker; returns (since, until) as epoch seconds (None: open)."""
    labels = list(TIME_RANGES)
    choice = st.selectbox("Time range", labels, index=labels.index(default), key=key, persist_state="session")
    span = TIME_RANGES[choice]
    if span is None:
        return None, None
    if span != "custom":
        return time.time() - span, None
    zone = viewer_zone()
    today = datetime.now(zone).date()
    picked = st.date_input(
        f"From / to ({zone.key})",
        value=(today - timedelta(days=1), today),
        key=f"{key}_dates",
        persist_state="session",
    )
    if not isinstance(picked, (tuple, list)) or not picked:
        return None, None
    start = datetime.combine(picked[0], dtime.min, zone).timestamp()
    end = datetime.combine(picked[-1], dtime.max, zone).timestamp()
    return start, end


def time_range_choice(key: str) -> tuple:
    """What the viewer picked in time_range_input(key). Unlike the (since, until)
    it returns, this does not move with the clock ("last hour")."""
    return st.session_state.get(key), str(st.session_state.get(f"{key}_dates"))


def viewer_zone() -> ZoneInfo:
    """The viewer's timezone: every time on every page is shown in it (UTC if unknown)."""
    try:
        return ZoneInfo(st.context.timezone or "UTC")
    except Exception:  # noqa: BLE001 - no browser context (a bare script run), or a name this system lacks
        return ZoneInfo("UTC")


def fmt_duration(seconds: float | None) -> str:
    """1.2 s, 3 m 04 s, 2 h 05 m: short and unambiguous."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return "—"
    zone = viewer_zone()
    return f"{datetime.fromtimestamp(ts, zone):%Y-%m-%d %H:%M:%S} {zone.key}"


_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+-.!|<>~:$"})


def count(n: int, noun: str) -> str:
    """`1 job`, `2 jobs`, `1,000 rows`."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def md(text: object) -> str:
    """`text` escaped for st.markdown, so a job's error or a user name shows as
    typed (no links, images, colours or icons from data)."""
    return str(text).translate(_MARKDOWN)


def page_path(name: str) -> str:
    """The file of a page (jobs, launch, logs, config), for st.Page and st.page_link."""
    return str(PAGES_DIR / f"{name}.py")
