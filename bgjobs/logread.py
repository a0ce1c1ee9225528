"""Read the JSON Lines logs without pandas: follow a log file and its rotated
backups byte by byte, and turn lines into records.

`Follower` is the byte-level part that `bgjobs.logtable` shares: it remembers
where it stopped in the live file, hands out only whole lines appended since,
and notices rotation (the live file was renamed to file.1 and a new one begun)
and truncation. Each poll costs in proportion to the bytes appended, plus a few
system calls. `RecordTail` and `read_records` parse those lines with `json`,
for `job-logs`, which must start fast and never import pandas.

What counts as a bad line (skipped and counted, never raised): a line that is
not valid UTF-8 JSON, a JSON value that is not an object, a line longer than
MAX_LINE bytes, and a torn last line of a file that can no longer grow (a
rotated backup). A torn last line of the live file is held back, uncounted,
until its newline arrives: a writer may be in the middle of it. Blank lines
are ignored.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .eventlog import LEVELS, MAX_LINE, ROTATE_LOCK, backups_of

CHUNK = 32 * 1024 * 1024  # bytes read and handed out at a time; must exceed MAX_LINE

Key = int  # one file, whatever its name is now: a number given when first seen
_TELLTALE = 256  # bytes before the read offset that are checked to notice a rewrite


class Lines:
    """Whole lines read from one file. Each line of `data` ends in a newline;
    lines over MAX_LINE are already removed and counted in `bad`."""

    __slots__ = ("key", "data", "bad")

    def __init__(self, key: Key, data: bytes, bad: int = 0) -> None:
        self.key, self.data, self.bad = key, data, bad

    def __repr__(self) -> str:
        return f"Lines({self.key}, {len(self.data)} bytes, bad={self.bad})"


class Reset:
    """The file was truncated: whatever was read from it before is gone."""

    __slots__ = ("key",)

    def __init__(self, key: Key) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"Reset({self.key})"


class Sealed:
    """The live file was rotated away and is read to its end; it won't change
    again. `ident` is (dev, ino, size, mtime_ns), as `Backup.ident`."""

    __slots__ = ("key", "ident")

    def __init__(self, key: Key, ident: tuple[int, int, int, int]) -> None:
        self.key, self.ident = key, ident

    def __repr__(self) -> str:
        return f"Sealed({self.key})"


class _Cursor:
    """How far one open file has been read."""

    __slots__ = ("fd", "key", "ino", "offset", "skipping", "before")

    def __init__(self, fd: int, key: Key) -> None:
        self.fd = fd
        self.key = key
        st = os.fstat(fd)
        self.ino = (st.st_dev, st.st_ino)
        self.offset = 0  # just after the last whole line handed out
        self.skipping = False  # inside an over-long line: drop bytes until a newline
        self.before = b""  # the bytes just before `offset`, to notice a rewrite


class Backup:
    """A rotated file the follower has not read before. Its content is final,
    so `ident` (dev, ino, size, mtime_ns) is a safe cache key; `pieces()` reads
    it, until the next poll."""

    def __init__(self, follower: Follower, fd: int, key: Key, ident: tuple) -> None:
        self._follower = follower
        self._fd = fd
        self.key = key
        self.ident = ident

    def pieces(self) -> Iterator[Lines]:
        """Its whole lines, in chunks; the file is closed once they are read."""
        try:
            yield from self._follower._read(_Cursor(self._fd, self.key), self.ident[2], final=True)
        finally:
            self.close()

    def close(self) -> None:
        """Done with it without reading (its rows were cached elsewhere)."""
        self._follower._close_handed(self._fd)


class Follower:
    """Follows `path` and its backups (path.N ... path.1), oldest bytes first.

    `poll()` yields, in order: Sealed for a live file that was rotated away (after
    Lines with its last bytes), Backup for each rotated file not seen before, then
    Lines appended to the live file, or Reset if it was truncated. Consume each
    poll fully. `files` lists the keys of the files that exist, in time order.

    A key is a number given to a file when first seen. Only the live file is held
    open; a backup, whose content no longer changes, is known again by its
    (dev, ino, size, mtime), so a reused inode number is never taken for it.
    """

    def __init__(self, path: str | os.PathLike, *, max_line: int = MAX_LINE, chunk: int = CHUNK) -> None:
        if chunk <= max_line:
            raise ValueError("chunk must be larger than max_line")
        self.path = Path(path)
        self.max_line = max_line
        self.chunk = chunk
        self.files: list[Key] = []
        self._live: _Cursor | None = None
        self._known: dict[tuple, Key] = {}  # ident of each backup seen -> its key
        self._handed: list[int] = []  # fds of the Backups of the last poll
        self._next_key = 0

    def poll(self) -> Iterator[Lines | Reset | Sealed | Backup]:
        self._close_handed()
        live = self._live
        if live is not None:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                st = None
            if st is not None and (st.st_dev, st.st_ino) == live.ino:
                yield from self._read_live(st)
                return
            # Rotated or removed. Writers append only under the shared rotation
            # lock after checking the inode, so the old file can no longer grow.
            final = os.fstat(live.fd)
            yield from self._read(live, final.st_size, final=True)
            self._live = None
            os.close(live.fd)
            self._known[_ident(final)] = live.key
            yield Sealed(live.key, _ident(final))
        yield from self._rescan()

    def close(self) -> None:
        """Close every file this follower holds open."""
        self._close_handed()
        if self._live is not None:
            os.close(self._live.fd)
            self._live = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - __del__ must not raise
            pass

    def _close_handed(self, fd: int | None = None) -> None:
        """Close the file of one Backup handed out (or of all of them)."""
        for handed in [fd] if fd is not None else list(self._handed):
            if handed in self._handed:
                self._handed.remove(handed)
                os.close(handed)

    def _key(self) -> Key:
        self._next_key += 1
        return self._next_key

    def _rescan(self) -> Iterator[Lines | Reset | Backup]:
        """Open the live file, list the backups, and open the new ones, while no
        rotation can run (so each name still means the file that was listed)."""
        order: list[Key] = []
        fresh: list[Backup] = []
        known: dict[tuple, Key] = {}
        with _rotation_paused(self.path.parent):
            live_fd = _open(self.path)
            live_ino = None
            if live_fd is not None:
                st = os.fstat(live_fd)
                live_ino = (st.st_dev, st.st_ino)
            for path in backups_of(self.path):
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                ident = _ident(st)
                if (st.st_dev, st.st_ino) == live_ino or ident in known:
                    continue
                key = self._known.get(ident)
                if key is None:
                    fd = _open(path)
                    if fd is None:
                        continue
                    key = self._key()
                    self._handed.append(fd)
                    fresh.append(Backup(self, fd, key, ident))
                known[ident] = key
                order.append(key)
        self._known = known  # forget the backups that are gone
        self.files = order
        yield from fresh
        if live_fd is not None:
            self._live = _Cursor(live_fd, self._key())
            self.files = order + [self._live.key]
            yield from self._read_live(os.fstat(live_fd))

    def _read_live(self, st: os.stat_result) -> Iterator[Lines | Reset]:
        live = self._live
        size = st.st_size
        if (
            size < live.offset
            # Truncated and written again up to or past where we were: the bytes
            # before our offset are not the ones we read. (Not the mtime: a
            # writer's append moves it before the size.)
            or (
                live.before
                and os.pread(live.fd, len(live.before), live.offset - len(live.before)) != live.before
            )
        ):
            live.offset, live.skipping, live.before = 0, False, b""
            yield Reset(live.key)
        if size > live.offset:
            yield from self._read(live, size, final=False)
            n = min(live.offset, _TELLTALE)
            live.before = os.pread(live.fd, n, live.offset - n) if n else b""

    def _read(self, cur: _Cursor, end: int, final: bool) -> Iterator[Lines]:
        """Whole lines of cur's file from cur.offset up to `end`. A partial last line
        is held back, unless the file is `final` (then it is torn: counted bad)."""
        pos = cur.offset
        try:
            while pos < end:
                buf = os.pread(cur.fd, min(self.chunk, end - pos), pos)
                if not buf:
                    break  # shrank under us; the next poll sees the truncation
                if cur.skipping:
                    nl = buf.find(b"\n")
                    pos += len(buf) if nl < 0 else nl + 1
                    cur.skipping = nl < 0
                    continue
                last = buf.rfind(b"\n")
                if last >= 0:
                    data, bad = drop_long_lines(buf, last + 1, self.max_line)
                    pos += last + 1  # a partial remainder is read again, whole
                    cur.offset = pos
                    yield Lines(cur.key, data, bad)
                    continue
                if len(buf) > self.max_line:  # no newline in sight: not a record
                    cur.skipping = True
                    pos += len(buf)
                    cur.offset = pos
                    yield Lines(cur.key, b"", 1)
                    continue
                # A partial line at the end of what there is (chunk > max_line).
                if final:
                    pos += len(buf)
                    if buf.strip():
                        cur.offset = pos
                        yield Lines(cur.key, b"", 1)
                break
        finally:
            cur.offset = pos


def drop_long_lines(buf: bytes, end: int, max_line: int) -> tuple[bytes, int]:
    """buf[:end] (whole lines) without the lines longer than max_line bytes, and
    how many were dropped. Costs about end / max_line searches, not one per line."""
    if end <= max_line:
        return (buf if end == len(buf) else buf[:end]), 0
    kept: list[bytes] = []
    bad = keep_from = pos = 0
    while pos < end:
        # Every line in buf[pos:nl+1] is at most max_line long when a newline
        # falls within max_line bytes of each line start; rfind takes the last.
        nl = buf.rfind(b"\n", pos, min(pos + max_line + 1, end))
        if nl >= 0:
            pos = nl + 1
            continue
        kept.append(buf[keep_from:pos])
        bad += 1
        pos = keep_from = buf.find(b"\n", pos + max_line) + 1
    if not bad:
        return (buf if end == len(buf) else buf[:end]), 0
    kept.append(buf[keep_from:end])
    return b"".join(kept), bad


def parse_lines(data: bytes, good: list[bytes] | None = None) -> tuple[list[dict], int]:
    """Records in `data` (whole lines), and how many lines were bad. The lines of
    the records are appended to `good` if it is given."""
    records: list[dict] = []
    bad = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # JSON and UTF-8 errors are ValueErrors
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
            if good is not None:
                good.append(line)
        else:
            bad += 1
    return records, bad


class RecordTail:
    """Records of one log (backups and live file) appended since the last poll,
    as dicts. `bad_lines` counts the lines skipped so far.

    With `select` (a bytes regex, see `job_lines`), only the lines it matches are
    parsed, and only their bad lines counted: reading one job's records then
    costs a regex scan, not a JSON parse of every line.
    """

    def __init__(
        self, path: str | os.PathLike, *, max_line: int = MAX_LINE, select: re.Pattern[bytes] | None = None
    ) -> None:
        self.follower = Follower(path, max_line=max_line)
        self.select = select
        self.bad_lines = 0

    def poll(self) -> list[dict]:
        records: list[dict] = []
        for item in self.follower.poll():
            if isinstance(item, Backup):
                pieces: Iterable[Lines] = item.pieces()
            elif isinstance(item, Lines):
                pieces = (item,)
            else:
                continue
            for piece in pieces:
                data = piece.data if self.select is None else _matching_lines(piece.data, self.select)
                found, bad = parse_lines(data)
                records.extend(found)
                self.bad_lines += bad + piece.bad
        return records

    def close(self) -> None:
        self.follower.close()


def job_lines(job_id: int) -> re.Pattern[bytes]:
    """A `select` pattern for the lines that may hold job `job_id`'s records (a
    superset: the records parsed are still checked)."""
    return re.compile(rb'"job_id"\s*:\s*%d(?![0-9.eE])' % job_id)


def _matching_lines(data: bytes, pattern: re.Pattern[bytes]) -> bytes:
    kept: list[bytes] = []
    end = 0
    for match in pattern.finditer(data):
        if match.start() < end:
            continue  # a second match on a line already kept
        start = data.rfind(b"\n", 0, match.start()) + 1
        end = data.find(b"\n", match.end()) + 1 or len(data)
        kept.append(data[start:end])
    return b"".join(kept)


def read_records(path: str | os.PathLike) -> tuple[list[dict], int]:
    """Every record in the log at `path` and its backups, oldest first, and the
    number of bad lines skipped."""
    tail = RecordTail(path)
    try:
        return tail.poll(), tail.bad_lines
    finally:
        tail.close()


# --- choosing records -------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time (UTC unless it has an offset) or a duration back from now
    such as 90s, 10m, 2h, 1d, 1w, as an aware UTC datetime. Raises ValueError."""
    match = _DURATION.match(text)
    if match:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(match[1]) * _UNITS[match[2].lower()])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time; give an ISO time like 2026-11-28T16:00:00Z "
            "or a duration like 10m, 2h or 1d"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_level(text: str) -> str:
    """A level name, any case, as in LEVELS. Raises ValueError."""
    level = text.strip().upper()
    if level == "WARN":
        level = "WARNING"
    if level not in LEVELS:
        raise ValueError(f"unknown level {text!r}; use one of {', '.join(LEVELS)}")
    return level


def record_time(record: dict) -> datetime | None:
    """The record's `ts` as an aware datetime, or None if it has none."""
    ts = record.get("ts")
    if not isinstance(ts, str):
        return None
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def matches(
    record: dict, *, job_id: int | None = None, since: datetime | None = None, min_level: str | None = None
) -> bool:
    """Whether the record is about job `job_id`, at or after `since`, and at
    `min_level` or above (INFO < WARNING < ERROR)."""
    if job_id is not None and record.get("job_id") != job_id:
        return False
    if min_level is not None:
        level = record.get("level")
        if level not in LEVELS or LEVELS.index(level) < LEVELS.index(min_level):
            return False
    if since is not None:
        when = record_time(record)
        if when is None or when < since:
            return False
    return True


# --- helpers ----------------------------------------------------------------


def _ident(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _open(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None


@contextmanager
def _rotation_paused(log_dir: Path, patience: float = 5.0):
    """Hold the writers' rotation lock shared: writers go on, rotations wait.
    A rotation takes milliseconds; if the lock stays taken for `patience`
    seconds (a writer stopped mid-rotation), go on without it rather than hang."""
    try:
        fd = os.open(log_dir / ROTATE_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        yield  # no writer has made the lock file yet (or we may not read it)
        return
    try:
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.002)
        yield
    finally:
        os.close(fd)
