"""What a job is: its status and an immutable snapshot of its row."""

from __future__ import annotations

import enum
import json
from typing import NamedTuple


class Status(enum.StrEnum):
    """A job's state. Its value is the text stored in the row and logged;
    `Status("queued") is Status.QUEUED`."""

    QUEUED = "queued"  # waiting for a free slot or for its start time
    RUNNING = "running"  # a runner holds the job's lock and runs an attempt
    RETRYING = "retrying"  # an attempt failed; waits retry_delay for the next one
    SUCCEEDED = "succeeded"  # final: an attempt returned normally
    FAILED = "failed"  # final: the last attempt failed, or the job was lost with none left
    CANCELLED = "cancelled"  # final: stopped on request

    @property
    def is_final(self) -> bool:
        return self in FINAL

    @classmethod
    def read(cls, value: object) -> Status | UnknownStatus:
        """The member for a stored `value`; for a value this bgjobs does not
        know (a row written by another version, or by hand), an UnknownStatus:
        it shows the text as stored, and is neither waiting, active nor final,
        so nothing claims, reconciles or counts it."""
        try:
            return cls(value)
        except ValueError:
            return UnknownStatus(value if isinstance(value, str) else repr(value))


class UnknownStatus(str):
    """A stored status that is no member of Status (see Status.read)."""

    __slots__ = ()
    is_final = False

    @property
    def value(self) -> str:
        return str(self)

    @property
    def name(self) -> str:
        return str(self).upper()


FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
WAITING = frozenset({Status.QUEUED, Status.RETRYING})
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING, Status.RETRYING})


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with milliseconds (the log's format).
    None for None, and for a time no calendar date can show (inf, NaN, 1e300,
    or not a number at all: a damaged row), so a listing never fails on one."""
    if ts is None:
        return None
    from .eventlog import utc_iso

    try:
        return utc_iso(ts)
    except (OverflowError, ValueError, TypeError, OSError):
        return None


class Job(NamedTuple):
    """One job row, as read at one moment: an immutable snapshot. Times are
    epoch seconds; `params` is a tuple; `status` is a Status."""

    id: int
    class_path: str
    method: str
    params: tuple
    status: Status
    priority: int
    attempt: int
    max_attempts: int
    retry_delay: float
    retry_backoff: float
    timeout: float | None
    cancel_grace: float
    run_after: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    runner_pid: int | None  # the runner: (pid, start time) names it
    runner_start: int | None
    pid: int | None  # the attempt, which leads its own process group
    pid_start: int | None
    exit_code: int | None
    exit_signal: int | None
    exception: str | None
    error: str | None
    result: str | None  # JSON text
    progress: float | None
    progress_message: str | None
    cancel_requested_at: float | None
    cancel_source: str | None
    cancel_user: str | None
    source: str | None
    user: str | None
    retry_of: int | None
    output_error: str | None  # why its output was lost, if it was
    host: str | None = None  # fleet mode: the host whose runner has the job

    @classmethod
    def from_row(cls, row) -> Job:
        """The snapshot of a row. It never fails on a row that is bad anyway
        (written by another version, or by hand): params that are not a JSON
        array become UnreadableParams, an unknown status a Status that is no
        member (Status.read), and a number column that holds no number None.
        `defect` says what makes such a row one that cannot run."""
        d = dict(row)
        d["params"] = _params(d["params"])
        d["status"] = Status.read(d["status"])
        for name in _NUMBERS:
            if type(d[name]) not in (int, float):
                d[name] = None
        return cls._make([d.get(name) for name in cls._fields])

    @property
    def defect(self) -> str | None:
        """Why this row cannot be run as it stands, or None if it can."""
        if isinstance(self.params, UnreadableParams):
            return f"params are not a JSON array: {self.params.text[:200]!r}"
        if not isinstance(self.status, Status):
            return f"status {self.status.value!r} is not one this bgjobs knows"
        if not isinstance(self.class_path, str) or not isinstance(self.method, str):
            return "it names no class or no method"
        missing = [name for name in _REQUIRED_NUMBERS if getattr(self, name) is None]
        if missing:
            return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a number"
        return None

    def to_json(self) -> str:
        """Every field, as from_json reads it back (to_dict is for people)."""
        return json.dumps({**self._asdict(), "params": list(self.params), "status": self.status.value})

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        d = json.loads(text)
        return cls(**{**d, "params": tuple(d["params"]), "status": Status.read(d["status"])})

    @property
    def is_final(self) -> bool:
        return self.status.is_final

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def attempts_left(self) -> bool:
        """True if another attempt may start; False for a row without its counts."""
        try:
            return self.attempt < self.max_attempts
        except TypeError:
            return False

    def next_retry_delay(self) -> float:
        """Seconds before the retry that follows attempt `self.attempt`:
        retry_delay x backoff^n, where n counts retries from 0 (0 for a row
        without its numbers)."""
        try:
            return self.retry_delay * self.retry_backoff ** max(self.attempt - 1, 0)
        except TypeError:
            return 0.0

    @property
    def name(self) -> str:
        """`Class.method`, as people say it."""
        return f"{str(self.class_path).rsplit('.', 1)[-1]}.{self.method}"

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return _finite(max(0.0, self.finished_at - self.started_at))

    def to_dict(self) -> dict:
        """A JSON-ready dict: the shape of `job-status ID --json`."""
        return {
            "id": self.id,
            "status": self.status.value,
            "class": self.class_path,
            "method": self.method,
            "params": list(self.params),
            "priority": self.priority,
            "attempts": self.attempt,
            "max_attempts": self.max_attempts,
            "error": self.error,
            "exception": self.exception,
            "exit_code": self.exit_code,
            "exit_signal": self.exit_signal,
            "result": self.result,
            "progress": _finite(self.progress),
            "progress_message": self.progress_message,
            "pid": self.pid,
            "timeout": _finite(self.timeout),
            "created_at": iso(self.created_at),
            "run_after": iso(self.run_after),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration": self.duration,
            "cancel_requested_at": iso(self.cancel_requested_at),
            "cancelled_by": self.cancel_source,
            "source": self.source,
            "user": self.user,
            "retry_of": self.retry_of,
            "output_error": self.output_error,
            "host": self.host,
        }


class UnreadableParams(tuple):
    """The params of a row whose params column is not a JSON array: a tuple of
    one marker string, so a listing shows what is stored; `text` is the column
    as stored. Such a job never runs (Store.claim_due fails it)."""

    def __new__(cls, text: str) -> UnreadableParams:
        self = super().__new__(cls, (f"<unreadable params: {text}>",))
        self.text = text
        return self

    def __getnewargs__(self) -> tuple:
        return (self.text,)


def _params(stored) -> tuple:
    try:
        params = json.loads(stored)
    except (ValueError, TypeError, RecursionError):
        params = None
    if isinstance(params, list):
        return tuple(params)
    return UnreadableParams(stored if isinstance(stored, str) else repr(stored))


def _finite(value):
    """`value` if it is a finite number, else None (JSON has no inf or NaN)."""
    if type(value) in (int, float) and value - value == 0:
        return value
    return None


# Columns that hold numbers (a row may hold anything else there: it reads as None).
_NUMBERS = (
    "id",
    "priority",
    "attempt",
    "max_attempts",
    "retry_delay",
    "retry_backoff",
    "timeout",
    "cancel_grace",
    "run_after",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
    "runner_pid",
    "runner_start",
    "pid",
    "pid_start",
    "exit_code",
    "exit_signal",
    "progress",
    "cancel_requested_at",
    "retry_of",
)
# Those a job cannot run without.
_REQUIRED_NUMBERS = (
    "priority",
    "attempt",
    "max_attempts",
    "retry_delay",
    "retry_backoff",
    "cancel_grace",
    "created_at",
)
