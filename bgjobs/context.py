"""What job code can ask while it runs: who am I, was I cancelled, my progress.

These functions work inside an attempt process. Outside a job they are
harmless: `current_job()` is None, `cancel_requested()` is False, and
`progress()` does nothing.
"""

from __future__ import annotations

import signal
import time
from typing import NamedTuple

SIGNALLED = "job cancelled (signal {})"  # a JobCancelled raised for the signal, not by the job


class JobCancelled(BaseException):
    """Raised in the job's main thread when the job is cancelled (SIGTERM).

    A BaseException, so `except Exception` in job code does not swallow it,
    while `finally` blocks and context managers still run.
    """


class JobContext(NamedTuple):
    """The running job's id, attempt number, attempt limit, class and method."""

    id: int
    attempt: int
    max_attempts: int
    class_path: str
    method: str

    @property
    def idempotency_key(self) -> str:
        """Stable across the attempts of one job: `bgjobs-<id>`."""
        return f"bgjobs-{self.id}"


_current: JobContext | None = None
_store = None
_cancelled = False
_raise_on_cancel = True
_PROGRESS_EVERY = 0.25  # seconds; a job may call progress() in a tight loop
_last_write = 0.0
_pending: tuple | None = None


def leave() -> None:
    """Forget the current job and its progress channel: the inverse of `enter`."""
    global _current, _store
    _current = None
    _store = None


def current_job() -> JobContext | None:
    """The running job's id and attempt, or None outside a job."""
    return _current


def cancel_requested() -> bool:
    """True once this job has been asked to stop. Loops that prefer to stop at a
    safe point set `cooperative_cancel = True` on their class and poll this."""
    return _cancelled


def progress(fraction: float | None, message: str | None = None) -> None:
    """Record progress (0.0 to 1.0) and a short message on the job. Cheap: writes
    at most four times a second; the latest value is always kept."""
    global _last_write, _pending
    if _current is None or _store is None:
        return
    if fraction is not None:
        fraction = min(1.0, max(0.0, float(fraction)))
    _pending = (fraction, None if message is None else str(message)[:500])
    now = time.monotonic()
    if now - _last_write >= _PROGRESS_EVERY:
        flush_progress()


def flush_progress() -> None:
    global _last_write, _pending
    if _pending is None or _store is None or _current is None:
        return
    fraction, message = _pending
    _pending = None
    _last_write = time.monotonic()
    try:
        _store.set_progress(_current.id, fraction, message)
    except Exception:  # noqa: BLE001 - progress is advisory; never fail a job over it
        pass


class ProgressPipe:
    """Sends progress to the runner as JSON lines; drops an update rather than
    block when the runner is slow to read (the next one supersedes it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def set_progress(self, job_id: int, fraction: float | None, message: str | None) -> None:
        import json
        import os

        try:
            os.write(self.fd, json.dumps([fraction, message]).encode() + b"\n")
        except (BlockingIOError, BrokenPipeError):
            pass


def _on_sigterm(signum, frame) -> None:
    global _cancelled
    first = not _cancelled
    _cancelled = True
    if first and _raise_on_cancel:
        raise JobCancelled(SIGNALLED.format(signum))


def enter(ctx: JobContext, store, *, cooperative: bool) -> None:
    """Called once in the attempt process before the job's method runs. `store`
    is where progress goes: anything with set_progress(job_id, fraction, message)."""
    global _current, _store, _raise_on_cancel
    _current, _store, _raise_on_cancel = ctx, store, not cooperative
    signal.signal(signal.SIGTERM, _on_sigterm)
