"""The two log files as pandas DataFrames, read fast and incrementally.

    frame = read_log(config.main_log)      # backups and live file, oldest first
    tail = LogTail(config.errors_log)      # remembers where it stopped
    new_rows = tail.refresh()              # only what was appended since
    everything = tail.frame                # equals read_log(config.errors_log)

Whole lines are fed in big chunks to pyarrow's JSON reader with an explicit
schema. A chunk that pyarrow refuses (a bad line, or a key whose values change
type) is split in two until the culprit is found; the last few hundred
kilobytes are read line by line with `json`. Bad lines are skipped and counted
in `LogTail.bad_lines` and `frame.attrs["bad_lines"]`; see bgjobs.logread for
what counts as bad. `filter_logs` selects rows; what the dashboard's charts
compute from them is in bgjobs.logstats. These two are the only modules of the
core that import pandas.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from .eventlog import EVENTS, LEVELS
from .logread import Backup, Follower, Key, Lines, Reset, Sealed, parse_lines

LEVEL_DTYPE = pd.CategoricalDtype(list(LEVELS), ordered=True)  # INFO < WARNING < ERROR
EVENT_DTYPE = pd.CategoricalDtype(list(EVENTS))
STR_DTYPE = pd.Series(["x"]).dtype  # the default string dtype: "str" in pandas 3 (object before)

# Every frame has these columns, in this order, with these dtypes; other keys
# follow in name order, typed as pyarrow infers them.
COLUMNS: dict[str, str] = {
    "ts": "time",
    "level": "level",
    "event": "event",
    "job_id": "int",
    "class": "str",
    "method": "str",
    "attempt": "int",
    "message": "str",
    "exception": "str",
    "error": "str",
    "traceback": "str",
    # extras bgjobs itself writes
    "duration": "float",
    "delay": "float",
    "pid": "int",
    "priority": "int",
    "exit_code": "int",
    "exit_signal": "int",
    "source": "str",
    "user": "str",
    "run_after": "str",
    "result": "str",
}
_ARROW = {
    "time": pa.timestamp("ms", tz="UTC"),
    "level": pa.string(),
    "event": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
}
SCHEMA = pa.schema([(name, _ARROW[kind]) for name, kind in COLUMNS.items()])
_DTYPES = {
    "time": pd.DatetimeTZDtype("ms", "UTC"),
    "level": LEVEL_DTYPE,
    "event": EVENT_DTYPE,
    "int": pd.Int64Dtype(),
    "float": np.dtype("float64"),
    "str": STR_DTYPE,
}
DTYPES: dict[str, object] = {name: _DTYPES[kind] for name, kind in COLUMNS.items()}

BLOCK_SIZE = 8 * 1024 * 1024  # pyarrow's unit of parallel work; must exceed MAX_LINE
LEAF = 256 * 1024  # a refused piece this small is read line by line
_PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="infer")
_PARSE_FIXED = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
_READ = pj.ReadOptions(block_size=BLOCK_SIZE)
_LEVEL_SET = pa.array(list(LEVELS))
_EVENT_SET = pa.array(list(EVENTS))


# --- one chunk of lines -> one DataFrame ---------------------------------------


def parse_block(data: bytes) -> tuple[pd.DataFrame, int]:
    """The records in `data` (whole lines, none over MAX_LINE) and the number of
    bad lines among them."""
    frames: list[pd.DataFrame] = []
    bad = _parse_into(memoryview(data), frames)
    return concat_frames(frames), bad


def _parse_into(data: memoryview, frames: list[pd.DataFrame]) -> int:
    if not len(data):
        return 0
    try:
        buffer = pa.py_buffer(data)
        _check_utf8(buffer)
        table = pj.read_json(pa.BufferReader(buffer), read_options=_READ, parse_options=_PARSE)
        frames.append(_from_table(table))
        return 0
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        pass
    if len(data) > LEAF:
        mid = bytes(data[len(data) // 2 : len(data) // 2 + 1024 * 1024 + 1]).find(b"\n")
        if mid >= 0:
            mid += len(data) // 2 + 1
            if mid < len(data):
                return _parse_into(data[:mid], frames) + _parse_into(data[mid:], frames)
    good: list[bytes] = []
    records, bad = parse_lines(bytes(data), good)
    frames.append(_from_records(records, b"\n".join(good)))
    return bad


def _check_utf8(buffer: pa.Buffer) -> None:
    """Raise ArrowInvalid unless `buffer` is UTF-8. pyarrow's JSON reader does
    not check, and a bad byte must send its chunk to the line-by-line path,
    where the line is found and counted. (Arrow's check is SIMD-fast.)"""
    offsets = pa.array([0, buffer.size], pa.int32()).buffers()[1]
    pa.Array.from_buffers(pa.string(), 1, [None, offsets, buffer]).validate(full=True)


def _arrow_to_pandas(arr: pa.ChunkedArray | pa.Array):
    """An inferred (extra) column, typed the same way from JSON and from Python."""
    t = arr.type
    if pa.types.is_integer(t):
        return arr.cast(pa.int64()).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get).array
    if pa.types.is_floating(t):
        return arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_boolean(t):
        return pd.array(arr.to_pylist(), dtype="boolean")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(pa.string()).to_pandas().array
    if pa.types.is_timestamp(t):
        return arr.to_pandas()
    values = np.empty(len(arr), dtype=object)
    values[:] = arr.to_pylist()  # lists, dicts, None: plain Python objects
    return values


def _categorical(arr: pa.ChunkedArray, value_set: pa.Array, dtype: pd.CategoricalDtype) -> pd.Categorical:
    codes = pc.fill_null(pc.index_in(arr, value_set=value_set), -1)
    return pd.Categorical.from_codes(codes.to_numpy().astype(np.int8), dtype=dtype)


def _from_table(table: pa.Table) -> pd.DataFrame:
    simple = [n for n, kind in COLUMNS.items() if kind not in ("level", "event")]
    frame = table.select(simple).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    frame.insert(1, "level", _categorical(table.column("level"), _LEVEL_SET, LEVEL_DTYPE))
    frame.insert(2, "event", _categorical(table.column("event"), _EVENT_SET, EVENT_DTYPE))
    for name in sorted(set(table.column_names) - COLUMNS.keys()):
        frame[name] = _arrow_to_pandas(table.column(name))
    return frame


def _from_records(records: list[dict], lines: bytes = b"") -> pd.DataFrame:
    """The slow path: records parsed by `json`, coerced to the same dtypes.
    Their `lines` are given to pyarrow once more, for the fixed columns only:
    when what it refused was an extra key (a list of mixed types, say), it
    still types the fixed columns far faster than Python."""
    fixed = None
    if lines:
        try:
            table = pj.read_json(
                pa.BufferReader(pa.py_buffer(lines)), read_options=_READ, parse_options=_PARSE_FIXED
            )
            if table.num_rows == len(records):
                fixed = _from_table(table)
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            pass
    if fixed is not None:
        columns = {name: fixed[name].array for name in COLUMNS}
    else:
        columns = {name: _coerce(kind, [r.get(name) for r in records]) for name, kind in COLUMNS.items()}
    extra = sorted({k for r in records for k in r} - COLUMNS.keys())
    for name in extra:
        values = [r.get(name) for r in records]
        try:
            columns[name] = _arrow_to_pandas(pa.array(values))
            continue
        except (pa.ArrowException, ValueError, TypeError, OverflowError):  # incl. UnicodeEncodeError
            values = [_clean(v) for v in values]
        try:
            columns[name] = _arrow_to_pandas(pa.array(values))
        except (pa.ArrowException, ValueError, TypeError, OverflowError):
            columns[name] = pd.array(values, dtype=object)  # mixed types
    return pd.DataFrame(columns, index=pd.RangeIndex(len(records)))


def _clean(value):
    """Strings made safe for Arrow: lone surrogates (from \\udcXX escapes) spelled out."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _coerce(kind: str, values: list):
    if kind == "time":
        text = pd.Series([v if isinstance(v, str) else None for v in values], dtype=object)
        return pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce").astype(DTYPES["ts"]).array
    if kind in ("level", "event"):
        dtype = LEVEL_DTYPE if kind == "level" else EVENT_DTYPE
        return pd.Categorical([v if isinstance(v, str) else None for v in values], dtype=dtype)
    if kind == "int":
        return pd.array(
            [v if type(v) is int and -(2**63) <= v < 2**63 else None for v in values], dtype="Int64"
        )
    if kind == "float":
        return np.array(
            [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in values],
            dtype="float64",
        )
    return pd.array(
        [_clean(v) if isinstance(v, str) else None if v is None else json.dumps(v) for v in values],
        dtype=STR_DTYPE,
    )


def empty_frame() -> pd.DataFrame:
    """No rows, with every fixed column and dtype."""
    return _from_table(SCHEMA.empty_table())


def concat_frames(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Frames one after another, with a fresh RangeIndex. Fixed columns keep
    their dtypes; an extra column that is Int64 in one frame and float in
    another becomes float64; other disagreements become object."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_frame()
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)  # a copy-on-write copy: callers may change it
    extra = sorted({c for f in frames for c in f.columns} - COLUMNS.keys())
    for name in extra:
        dtype = _common_dtype([f[name] for f in frames if name in f.columns and f[name].notna().any()])
        frames = [_with_column(f, name, dtype) for f in frames]
    return pd.concat(frames, ignore_index=True)[[*COLUMNS, *extra]]


def _common_dtype(columns: list[pd.Series]):
    dtypes = {c.dtype for c in columns}
    if not dtypes:
        return np.dtype(object)
    if len(dtypes) == 1:
        return dtypes.pop()
    if all(pd.api.types.is_numeric_dtype(d) and not pd.api.types.is_bool_dtype(d) for d in dtypes):
        return np.dtype("float64")
    return np.dtype(object)


def _with_column(frame: pd.DataFrame, name: str, dtype) -> pd.DataFrame:
    if name not in frame.columns:
        return frame.assign(**{name: pd.Series(None, index=frame.index, dtype=object).astype(dtype)})
    if frame[name].dtype == dtype:
        return frame
    column = frame[name]
    if dtype == np.dtype("float64"):
        column = column.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    else:
        column = column.astype(dtype)
    return frame.assign(**{name: column})


# --- files -> frames ---------------------------------------------------------

_CACHE_SIZE = 32
_cache: OrderedDict[tuple, tuple[pd.DataFrame, int]] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(ident: tuple) -> tuple[pd.DataFrame, int] | None:
    with _cache_lock:
        hit = _cache.get(ident)
        if hit is not None:
            _cache.move_to_end(ident)
        return hit


def _remember(ident: tuple, frame: pd.DataFrame, bad: int) -> None:
    with _cache_lock:
        _cache[ident] = (frame, bad)
        _cache.move_to_end(ident)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


class _Segment:
    """The rows read so far from one file."""

    __slots__ = ("frames", "bad")

    def __init__(self, frames: list[pd.DataFrame] | None = None, bad: int = 0) -> None:
        self.frames = frames or []
        self.bad = bad

    def frame(self) -> pd.DataFrame:
        if len(self.frames) != 1:
            self.frames = [concat_frames(self.frames)]
        return self.frames[0]


class LogTail:
    """One log file and its rotated backups, read incrementally.

    `refresh()` parses only what was appended since the last call and returns
    those rows; it follows rotation and truncation. `frame` is every row of the
    files that exist now (backups oldest first, then the live file), equal to
    `read_log(path)`. `bad_lines` counts every line skipped so far. Backups are
    parsed once: a rotation turns the rows already read into the backup's rows,
    and backups are cached by (device, inode, size, mtime) across tails.
    A LogTail holds its files open; call close() (or use `with`) when done.
    Safe to share between threads.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.bad_lines = 0
        self._follower = Follower(self.path)
        self._segments: dict[Key, _Segment] = {}
        self._frame: pd.DataFrame | None = None
        self._lock = threading.RLock()

    def refresh(self) -> pd.DataFrame:
        """The rows appended since the last refresh (all rows, the first time)."""
        with self._lock:
            return concat_frames(self._poll())

    @property
    def frame(self) -> pd.DataFrame:
        """Every row so far, oldest first; `.attrs["bad_lines"]` counts the bad
        lines in the files it covers. Built on first use after a change."""
        with self._lock:
            if self._frame is None:
                present = [self._segments[k] for k in self._follower.files if k in self._segments]
                frame = concat_frames([s.frame() for s in present])
                frame.attrs["bad_lines"] = sum(s.bad for s in present)
                self._frame = frame
            return self._frame

    def close(self) -> None:
        with self._lock:
            self._follower.close()

    def __enter__(self) -> LogTail:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _poll(self) -> list[pd.DataFrame]:
        new: list[pd.DataFrame] = []
        changed = False
        for item in self._follower.poll():
            changed = True
            if isinstance(item, Lines):
                frame, bad = parse_block(item.data) if item.data else (None, 0)
                segment = self._segments.setdefault(item.key, _Segment())
                if frame is not None and len(frame):
                    segment.frames.append(frame)
                    new.append(frame)
                segment.bad += bad + item.bad
                self.bad_lines += bad + item.bad
            elif isinstance(item, Backup):
                segment = self._read_backup(item)
                self._segments[item.key] = segment
                new.append(segment.frame())
                self.bad_lines += segment.bad
            elif isinstance(item, Reset):
                self._segments.pop(item.key, None)
            elif isinstance(item, Sealed) and item.key in self._segments:
                segment = self._segments[item.key]
                _remember(item.ident, segment.frame(), segment.bad)
        for key in [k for k in self._segments if k not in self._follower.files]:
            del self._segments[key]
            changed = True
        if changed:
            self._frame = None
        return new

    @staticmethod
    def _read_backup(backup: Backup) -> _Segment:
        hit = _cached(backup.ident)
        if hit is not None:
            backup.close()
            return _Segment([hit[0]], hit[1])
        segment = _Segment()
        for piece in backup.pieces():
            frame, bad = parse_block(piece.data) if piece.data else (None, 0)
            if frame is not None:
                segment.frames.append(frame)
            segment.bad += bad + piece.bad
        _remember(backup.ident, segment.frame(), segment.bad)
        return segment


class EventsTail:
    """Fleet mode: the store's events table (every host's records) as a frame,
    read incrementally by id, as LogTail reads a file by offset. `errors`:
    the ERROR records only, as the errors log holds. Same columns as a file's
    frame, and `host`."""

    bad_lines = 0  # rows are whole records

    def __init__(self, store, *, errors: bool = False) -> None:
        self.store = store
        self.errors = errors
        self._last = 0
        self._frames: list[pd.DataFrame] = []
        self._frame: pd.DataFrame | None = empty_frame()
        self._lock = threading.RLock()

    def refresh(self) -> pd.DataFrame:
        with self._lock:
            new: list[pd.DataFrame] = []
            while True:
                rows = self.store.events_after(self._last)
                if not rows:
                    break
                self._last = rows[-1][0]
                records = [r for _, r in rows if not self.errors or r.get("level") == "ERROR"]
                if records:
                    new.append(_from_records(records))
            if new:
                self._frames.extend(new)
                self._frame = None
            return concat_frames(new)

    @property
    def frame(self) -> pd.DataFrame:
        with self._lock:
            if self._frame is None:
                self._frame = concat_frames(self._frames)
                self._frames = [self._frame]
            return self._frame

    def close(self) -> None:
        pass


def read_log(path: str | os.PathLike) -> pd.DataFrame:
    """Every record of the log at `path` and its rotated backups, oldest first,
    as a DataFrame with the COLUMNS dtypes (plus any other keys found). A missing
    or empty file gives no rows and the same columns. Bad lines are skipped and
    counted in `.attrs["bad_lines"]`. An incomplete last line of the live file
    is left out and not counted: a writer may still be writing it."""
    with LogTail(path) as tail:
        tail._poll()
        return tail.frame


# --- selecting rows ----------------------------------------------------------

TEXT_COLUMNS = ("message", "error", "class", "method", "traceback")


def _utc(when) -> pd.Timestamp:
    ts = pd.Timestamp(when)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _as_list(value) -> list:
    return [value] if isinstance(value, (str, int)) else list(value)


def filter_logs(
    df: pd.DataFrame,
    *,
    levels: str | Iterable[str] | None = None,
    events: str | Iterable[str] | None = None,
    job_id: int | Iterable[int] | None = None,
    class_path: str | None = None,
    since: datetime | pd.Timestamp | str | None = None,
    until: datetime | pd.Timestamp | str | None = None,
    text: str | None = None,
) -> pd.DataFrame:
    """The rows that pass every filter given. `levels`, `events` and `job_id`
    take one value or several; `since` (inclusive) and `until` (exclusive) take
    datetimes or ISO strings, naive ones read as UTC; `text` is a case-insensitive
    substring of message, error, class, method or traceback."""
    keep = np.ones(len(df), dtype=bool)
    if levels is not None:
        keep &= df["level"].isin(_as_list(levels)).to_numpy()
    if events is not None:
        keep &= df["event"].isin(_as_list(events)).to_numpy()
    if job_id is not None:
        keep &= df["job_id"].isin(_as_list(job_id)).fillna(False).to_numpy(dtype=bool)
    if class_path is not None:
        keep &= (df["class"] == class_path).fillna(False).to_numpy(dtype=bool)
    if since is not None:
        keep &= (df["ts"] >= _utc(since)).to_numpy()
    if until is not None:
        keep &= (df["ts"] < _utc(until)).to_numpy()
    if text:
        hit = np.zeros(len(df), dtype=bool)
        for name in TEXT_COLUMNS:
            found = df[name].str.contains(text, case=False, regex=False)
            hit |= found.fillna(False).to_numpy(dtype=bool)
        keep &= hit
    return df[keep]
