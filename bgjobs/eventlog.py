"""Append JSON Lines records to the two log files, and rotate them by size.

Every record is one line, written by one write() on an O_APPEND descriptor, so
many processes can log at once without tearing a line. A write that falls
short (a full disk, RLIMIT_FSIZE) still leaves a torn line behind; the next
writer that finds the file not ending in a newline starts its record on a line
of its own, so the torn line costs one bad line, not the next record too. (A
record written at the very moment of another's short write may still be glued
to it: writers share the lock, and the check is one pread, not a lock.)

Rotation renames files under an exclusive flock on `.rotate.lock`; writers
hold it shared while they check and write, so no record lands in a file that
is being renamed away. Readers (bgjobs.logread) take it shared for the moment
they list the files, so they never see a rotation half done.

Within one process the flock is shared by every thread (it belongs to the open
file), so a thread lock serialises writers there; a forked child reopens its
descriptors rather than share the parent's lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from threading import RLock

LEVELS = ("INFO", "WARNING", "ERROR")
EVENTS = (
    "queued",
    "started",
    "succeeded",
    "attempt_failed",
    "retry_scheduled",
    "failed",
    "cancel_requested",
    "cancelled",
    "timed_out",
    "lost",
    "rejected",
    "output_lost",
)
MAIN_LOG = "background_jobs.log"
ERRORS_LOG = "background_jobs_errors.log"
ROTATE_LOCK = ".rotate.lock"
# A traceback or message longer than this is cut, so one record stays one
# reasonable line.
MAX_FIELD = 64 * 1024
# Readers skip a line longer than this as junk; the writer keeps every record
# below it by cutting its largest values.
MAX_LINE = 1024 * 1024
# The keys every record has (all that is kept of a record that cannot be encoded).
CORE_KEYS = ("ts", "level", "event", "job_id", "class", "method", "attempt", "message")


def utc_iso(ts: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-28T16:22:15.123Z."""
    ts = time.time() if ts is None else ts
    secs = int(ts)
    ms = int((ts - secs) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


class _File:
    """One log file, kept open for appending, reopened when rotated away."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = None
        self.ino: int | None = None
        # The file's size just after this writer's last whole record: while the
        # size is still that, the file ends in our newline and needs no look.
        self.left: int | None = None

    def _open(self) -> None:
        self.close()
        flags = os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            # Readable too, to look at the last byte (see append).
            self.fd = os.open(self.path, os.O_RDWR | flags, 0o644)
        except PermissionError:  # a file we may append to but not read
            self.fd = os.open(self.path, os.O_WRONLY | flags, 0o644)
        self.ino = os.fstat(self.fd).st_ino
        self.left = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def current_size(self) -> int:
        """Size of the file now at `path`, reopening it if it was rotated."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._open()
            return 0
        if self.fd is None or st.st_ino != self.ino:
            self._open()
        return st.st_size

    def append(self, data: bytes) -> None:
        """Append one line (reopening the file if it was rotated). If the file
        does not end in a newline, a write fell short and left a torn line: the
        record then starts on a new line rather than glued to the torn one."""
        size = self.current_size()
        if size and size != self.left and not self._ends_in_newline(size):
            data = b"\n" + data
        written = os.write(self.fd, data)
        if written != len(data):
            self.left = None
            raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")
        # Right unless another writer appended meanwhile; then the next append looks.
        self.left = size + written

    def _ends_in_newline(self, size: int) -> bool:
        try:
            return os.pread(self.fd, 1, size - 1) in (b"\n", b"")
        except OSError:  # not readable (opened write-only): append as before
            return True


class EventLog:
    """Writes records to `log_dir`; thread-compatible, safe across processes."""

    def __init__(
        self,
        log_dir: str | os.PathLike,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        host: str | None = None,
    ) -> None:
        self.log_dir = os.fspath(log_dir)
        self.host = host  # fleet mode: every record says which host wrote it
        self.max_bytes = max_bytes
        self.backups = backups
        self._main = _File(os.path.join(self.log_dir, MAIN_LOG))
        self._errors = _File(os.path.join(self.log_dir, ERRORS_LOG))
        self._lock_fd: int | None = None
        self._pid = os.getpid()
        self._thread_lock = RLock()
        self._depth = 0  # > 0 while this thread is inside write()
        self._warned = False

    @classmethod
    def for_config(cls, config) -> EventLog:
        host = config.host if config.executor == "procrastinate" else None
        return cls(config.log_dir, config.log_max_bytes, config.log_backups, host)

    def emit(
        self,
        event: str,
        *,
        level: str = "INFO",
        job=None,
        message: str,
        **extra,
    ) -> dict:
        """Build one record and append it. Never raises: logging must not kill a job."""
        record = {
            "ts": utc_iso(),
            "level": level,
            "event": event,
            "job_id": None,
            "class": None,
            "method": None,
            "attempt": None,
            "message": message,
        }
        if job is not None:
            record["job_id"] = job.id
            record["class"] = job.class_path
            record["method"] = job.method
            record["attempt"] = job.attempt
        for key, value in extra.items():
            if key == "class_path":
                key = "class"
            if isinstance(value, str) and len(value) > MAX_FIELD:
                value = value[:MAX_FIELD] + "... [cut]"
            record[key] = value
        if self.host is not None:
            record.setdefault("host", self.host)
        self.write(record)
        return record

    def write(self, record: dict) -> None:
        """Append an already-built record (ERROR also goes to the errors log)."""
        try:
            line = _encode(record)
        except (TypeError, ValueError, RecursionError) as exc:  # e.g. a value that contains itself
            line = _encode({k: record.get(k) for k in CORE_KEYS} | {"unencodable": repr(exc)})
        with self._thread_lock:
            if self._depth:
                # Re-entered from a signal handler in the middle of a write: the
                # flock is already held, and releasing it here would free the outer
                # write's lock too.
                self._write_locked(record, line, take_lock=False)
                return
            self._depth += 1
            try:
                self._write_locked(record, line, take_lock=True)
            finally:
                self._depth -= 1

    def _write_locked(self, record: dict, line: bytes, take_lock: bool) -> None:
        try:
            if self._pid != os.getpid():
                self._after_fork()
            os.makedirs(self.log_dir, exist_ok=True)
            targets = [self._main]
            if record.get("level") == "ERROR":
                targets.append(self._errors)
            if not take_lock:
                for f in targets:
                    f.append(line)
                return
            lock = self._lock()
            fcntl.flock(lock, fcntl.LOCK_SH)
            try:
                if any(f.current_size() >= self.max_bytes for f in targets):
                    # flock cannot upgrade atomically: it drops the shared lock and
                    # waits, so another writer may rotate first. Hence the re-check.
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    for f in targets:
                        if f.current_size() >= self.max_bytes:
                            self._rotate(f)
                    fcntl.flock(lock, fcntl.LOCK_SH)
                for f in targets:
                    f.append(line)  # reopens the file if someone else rotated it meanwhile
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        except OSError as exc:
            # A full disk or an unwritable log must not stop the job: the job's
            # state lives in the store. Say so once, on stderr.
            if not self._warned:
                self._warned = True
                print(f"bgjobs: cannot write to {self.log_dir}: {exc}", file=sys.stderr)

    def _after_fork(self) -> None:
        """In a forked child: let go of the parent's descriptors. The flock belongs
        to the open file that parent and child share, so the child must never
        unlock it; closing its own copies is harmless."""
        self._main.close()
        self._errors.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._pid = os.getpid()

    def _lock(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = os.open(
                os.path.join(self.log_dir, ROTATE_LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        return self._lock_fd

    def _rotate(self, f: _File) -> None:
        """file -> file.1 -> file.2 ... ; those beyond `backups` are removed.
        Only files that exist are touched: the cost does not grow with `backups`."""
        base = f.path
        if self.backups == 0:
            os.truncate(base, 0)
            return
        for old in backups_of(base):  # highest number first, so no rename overwrites
            n = int(old[len(base) + 1 :])
            if n >= self.backups:
                os.unlink(old)
            else:
                os.rename(old, f"{base}.{n + 1}")
        os.rename(base, f"{base}.1")
        f.current_size()  # opens the new, empty file

    def close(self) -> None:
        with self._thread_lock:
            if self._pid != os.getpid():
                self._after_fork()
            self._main.close()
            self._errors.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None


# Characters JSON may leave raw inside a string, but that a line-based reader
# (str.splitlines splits at NEL and the Unicode separators) or a terminal (C1
# controls; `tail -f` of the log) acts on. As \\uXXXX escapes they mean the same
# value, and a record stays one line for every reader. (JSON escapes C0 itself.)
_RAW_IN_JSON = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), 0x2028, 0x2029)}


def json_line(text: str) -> str:
    """JSON text (from json.dumps with ensure_ascii=False) with the characters
    of _RAW_IN_JSON escaped: the same JSON value, safe as one line anywhere."""
    if text.isascii() and "\x7f" not in text:
        return text
    return text.translate(_RAW_IN_JSON)


def _encode(record: dict) -> bytes:
    """One record as one line of UTF-8 JSON, shorter than MAX_LINE."""
    text = json_line(json.dumps(record, default=str, ensure_ascii=False))
    try:
        data = (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (undecodable bytes in a path or an error message) are
        # not valid in JSON text for most readers: spell them as \\udcXX text.
        text = json_line(json.dumps(_clean(record), default=str, ensure_ascii=False))
        data = (text + "\n").encode("utf-8")
    if len(data) >= MAX_LINE:
        data = (json_line(json.dumps(_fit(record), default=str, ensure_ascii=False)) + "\n").encode(
            "utf-8", "backslashreplace"
        )
    return data


def _clean(value):
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _fit(record: dict) -> dict:
    """The record with its largest values cut until the line fits under MAX_LINE.
    (Sizes are measured with ASCII escapes, an upper bound of the UTF-8 size.)"""
    record = _clean(record)
    sizes = sorted(((len(json.dumps(v, default=str)), k) for k, v in record.items()), reverse=True)
    total = sum(size for size, _ in sizes)
    for size, key in sizes:
        if total < MAX_LINE // 2:
            break
        value = record[key]
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        record[key] = text[: MAX_FIELD // 4] + "... [cut]"
        total -= size - len(json.dumps(record[key]))
    return record


def backups_of(path: str | os.PathLike) -> list[str]:
    """The rotated files of `path` that exist, oldest first (file.N ... file.1)."""
    folder, name = os.path.split(os.fspath(path))
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return []
    found = []
    for entry in entries:
        suffix = entry[len(name) + 1 :]
        if entry.startswith(name + ".") and suffix.isdigit():
            found.append((int(suffix), os.path.join(folder, entry)))
    return [p for _, p in sorted(found, reverse=True)]
