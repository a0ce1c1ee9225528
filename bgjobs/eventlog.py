"""Append JSON Lines records to the two log files, and rotate them by size.

Every record is one line, written by one write() on an O_APPEND descriptor, so
many processes can log at once without tearing a line. Rotation renames files
under an exclusive flock on `.rotate.lock`; writers hold it shared while they
check and write, so no record lands in a file that is being renamed away.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from pathlib import Path

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
)
MAIN_LOG = "background_jobs.log"
ERRORS_LOG = "background_jobs_errors.log"
# A traceback or message longer than this is cut, so one record stays one
# reasonable line (readers skip lines over a megabyte).
MAX_FIELD = 64 * 1024


def utc_iso(ts: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-28T16:22:15.123Z."""
    ts = time.time() if ts is None else ts
    secs = int(ts)
    ms = int((ts - secs) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z"


class _File:
    """One log file, kept open for appending, reopened when rotated away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.ino: int | None = None

    def _open(self) -> None:
        self.close()
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.ino = os.fstat(self.fd).st_ino

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

    def write(self, data: bytes) -> None:
        written = os.write(self.fd, data)
        if written != len(data):
            raise OSError(f"short write to {self.path} ({written} of {len(data)} bytes)")


class EventLog:
    """Writes records to `log_dir`; thread-compatible, safe across processes."""

    def __init__(self, log_dir: Path, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> None:
        self.log_dir = Path(log_dir)
        self.max_bytes = max_bytes
        self.backups = backups
        self._main = _File(self.log_dir / MAIN_LOG)
        self._errors = _File(self.log_dir / ERRORS_LOG)
        self._lock_fd: int | None = None
        self._warned = False

    @classmethod
    def for_config(cls, config) -> EventLog:
        return cls(config.log_dir, config.log_max_bytes, config.log_backups)

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
        self.write(record)
        return record

    def write(self, record: dict) -> None:
        """Append an already-built record (ERROR also goes to the errors log)."""
        line = (json.dumps(record, default=str, ensure_ascii=False) + "\n").encode(
            "utf-8", "backslashreplace"
        )
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            lock = self._lock()
            fcntl.flock(lock, fcntl.LOCK_SH)
            try:
                targets = [self._main]
                if record.get("level") == "ERROR":
                    targets.append(self._errors)
                if any(f.current_size() >= self.max_bytes for f in targets):
                    fcntl.flock(lock, fcntl.LOCK_EX)  # upgrade; re-checked inside
                    for f in targets:
                        if f.current_size() >= self.max_bytes:
                            self._rotate(f)
                    fcntl.flock(lock, fcntl.LOCK_SH)
                for f in targets:
                    f.current_size()  # reopen if someone else rotated meanwhile
                    f.write(line)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        except OSError as exc:
            # A full disk or an unwritable log must not stop the job: the job's
            # state lives in the store. Say so once, on stderr.
            if not self._warned:
                self._warned = True
                print(f"bgjobs: cannot write to {self.log_dir}: {exc}", file=sys.stderr)

    def _lock(self) -> int:
        if self._lock_fd is None:
            self._lock_fd = os.open(
                self.log_dir / ".rotate.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        return self._lock_fd

    def _rotate(self, f: _File) -> None:
        """file -> file.1 -> file.2 ... ; the oldest beyond `backups` is removed."""
        base = f.path
        if self.backups == 0:
            os.truncate(base, 0)
            return
        oldest = base.with_name(f"{base.name}.{self.backups}")
        if oldest.exists():
            oldest.unlink()
        for n in range(self.backups - 1, 0, -1):
            src = base.with_name(f"{base.name}.{n}")
            if src.exists():
                os.rename(src, base.with_name(f"{base.name}.{n + 1}"))
        os.rename(base, base.with_name(f"{base.name}.1"))
        f.current_size()  # opens the new, empty file

    def close(self) -> None:
        self._main.close()
        self._errors.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def backups_of(path: Path) -> list[Path]:
    """The rotated files of `path` that exist, oldest first (file.N ... file.1)."""
    found = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), candidate))
    return [p for _, p in sorted(found, reverse=True)]
