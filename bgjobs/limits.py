"""The bounds of every time and number a launch or a cancel takes, checked in
the library, so that the CLI, the API and the dashboard refuse the same values.

A value out of bounds is a RejectedError naming the field and the bound. The
bounds keep every time a job row holds within what the clock functions and
ISO 8601 can express: `--delay 1e300` would otherwise be stored, and break
every listing that formats it.
"""

from __future__ import annotations

import math
import time

from .errors import RejectedError

DAY = 86_400.0
MAX_DELAY = 366 * DAY  # --delay, --at (from now), retry_delay
MAX_TIMEOUT = 366 * DAY  # a timeout per attempt
MAX_GRACE = DAY  # cancel_grace: SIGTERM to SIGKILL


def seconds(name: str, value, *, maximum: float, positive: bool = False) -> float:
    """`value` as a float number of seconds in [0, maximum] (> 0 with `positive`)."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        raise RejectedError(f"{name} must be a number of seconds; got {value!r}", field=name) from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or value > maximum:
        low = "> 0" if positive else ">= 0"
        raise RejectedError(
            f"{name} must be a number of seconds {low} and at most {maximum:g} ({_days(maximum)}); "
            f"got {value!r}",
            field=name,
        )
    return value


def whole(name: str, value, lo: int, hi: int) -> int:
    """`value` as a whole number in [lo, hi]; a numeric string is accepted."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise RejectedError(f"{name} must be a whole number from {lo} to {hi}; got {value!r}", field=name)
    return value


def check_grace(grace) -> float:
    """A cancel's grace period: SIGTERM, then SIGKILL this many seconds later."""
    return seconds("grace", grace, maximum=MAX_GRACE)


def start_time(delay, at, now: float | None = None) -> float:
    """When a job may start: now, `delay` seconds from now, or at `at` (an ISO
    8601 string, a datetime, or epoch seconds), at most MAX_DELAY ahead."""
    now = time.time() if now is None else now
    if delay is not None and at is not None:
        raise RejectedError("give --delay or --at, not both", field="delay")
    if delay is not None:
        return now + seconds("delay", delay, maximum=MAX_DELAY)
    if at is None:
        return now
    when = _epoch(at)
    if not math.isfinite(when) or when > now + MAX_DELAY:
        raise RejectedError(
            f"at must be within {_days(MAX_DELAY)} from now; got {at!r}; use a nearer time", field="at"
        )
    return when


def _epoch(at) -> float:
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        return float(at)
    from datetime import datetime

    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise RejectedError(
                f"--at must be an ISO 8601 time like 2026-12-01T09:30:00+00:00; got {at!r}", field="at"
            ) from None
    if isinstance(at, datetime):
        if at.tzinfo is None:
            at = at.astimezone()  # a naive time is local time
        try:
            return at.timestamp()
        except (OverflowError, ValueError, OSError):
            return math.inf
    raise RejectedError(f"at must be an ISO time or a datetime; got {at!r}", field="at")


def _days(secs: float) -> str:
    return f"{secs / DAY:g} days" if secs >= DAY else f"{secs:g} seconds"
