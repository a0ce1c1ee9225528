"""The two log files as tables, shared by every session of the dashboard.

Each file is parsed once per server process by a bgjobs.logtable.LogTail,
shared by every session (keyed by path), and read in the background as soon as
the dashboard starts (warm_up). Every run calls refresh(), which reads only the
lines appended since the last run. Derived tables (filters, charts) are
memoized against the tail's version, so an unchanged file costs nothing, and
charts are recomputed at most every CHART_MAX_AGE seconds while the file grows.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path

import pandas as pd

from bgjobs import logtable

MEMO_SIZE = 64
CHART_MAX_AGE = 30.0  # seconds a chart may lag behind a growing log


class LogSource:
    """One log file, parsed incrementally; safe to share between sessions."""

    def __init__(self, path: Path, tail=None) -> None:
        self.path = Path(path)
        self._tail = tail if tail is not None else logtable.LogTail(self.path)
        self._lock = threading.Lock()
        self._memo: OrderedDict[tuple, object] = OrderedDict()
        self._version = 0
        self._frame = self._tail.frame

    def refresh(self) -> pd.DataFrame:
        """Read what was appended since the last call; return every row."""
        with self._lock:
            before = (len(self._frame), self._tail.bad_lines)
            self._tail.refresh()
            frame = self._tail.frame
            if frame is not self._frame or (len(frame), self._tail.bad_lines) != before:
                self._version += 1
            self._frame = frame
            return frame

    def close(self) -> None:
        self._tail.close()

    @property
    def frame(self) -> pd.DataFrame:
        return self._frame

    @property
    def bad_lines(self) -> int:
        return int(self._frame.attrs.get("bad_lines", self._tail.bad_lines))

    def memo(self, key: Hashable, compute: Callable[[pd.DataFrame], object], max_age: float = 0.0):
        """compute(frame), remembered until the file grows, or for `max_age`
        seconds even if it grew (for charts, which may lag a little behind a
        busy log). Computed outside the lock, so one slow chart does not hold
        up other sessions."""
        now = time.monotonic()
        with self._lock:
            version, frame = self._version, self._frame
            hit = self._memo.get(key)
            if hit is not None and (hit[0] == version or now - hit[1] < max_age):
                self._memo.move_to_end(key)
                return hit[2]
        value = compute(frame)
        with self._lock:
            if self._version == version:
                self._memo[key] = (version, now, value)
                self._memo.move_to_end(key)
                while len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
        return value


# One LogSource per path for the whole server process (every session shares
# it). A plain registry rather than st.cache_resource, so a background thread
# can fill it before any page asks (see warm_up).
_SOURCES: OrderedDict[str, LogSource] = OrderedDict()
_SOURCES_LOCK = threading.Lock()
MAX_SOURCES = 8


def _source(path: Path, events=None) -> LogSource:
    key = str(path) if events is None else f"{events.store.path}#{'errors' if events.errors else 'main'}"
    with _SOURCES_LOCK:
        src = _SOURCES.get(key)
        if src is None:
            src = _SOURCES[key] = LogSource(Path(path), events)
            while len(_SOURCES) > MAX_SOURCES:  # config changes or tests; not the normal case
                _SOURCES.popitem(last=False)[1].close()
        _SOURCES.move_to_end(key)
        return src


def source(path: Path, events=None) -> LogSource:
    """The shared LogSource of `path`, refreshed: only new lines are parsed.
    With `events` (a logtable.EventsTail, fleet mode), the fleet's events
    table stands in for the file."""
    src = _source(path, events)
    src.refresh()
    return src


def warm_up(*paths: Path) -> None:
    """Start parsing these logs in a background thread, once per process, so
    the Logs page and the job timelines find them ready. Returns at once."""
    for path in paths:
        with _SOURCES_LOCK:
            if str(path) in _SOURCES:
                continue
        _source(path)  # registered now; the thread takes its lock to parse
        threading.Thread(
            target=source, args=(path,), name=f"bgjobs-read-{Path(path).name}", daemon=True
        ).start()


def job_records(path: Path, job_id: int) -> pd.DataFrame:
    """Every record of job `job_id` in the log at `path`, oldest first."""
    src = source(path)
    return src.memo(("job", int(job_id)), lambda df: logtable.filter_logs(df, job_id=int(job_id)))
