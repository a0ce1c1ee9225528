"""What a job is: its status and an immutable snapshot of its row."""

from __future__ import annotations

from . import jsonc
from .records import record


class _Members(type):
    """Status's metaclass: the class holds its members as an Enum class does.
    It iterates over them in order, looks them up by name (`Status["QUEUED"]`),
    tells a member or a value (`"queued" in Status`), and keeps them fixed."""

    def __iter__(cls):
        return iter(cls._members)

    def __reversed__(cls):
        return reversed(cls._members)

    def __len__(cls) -> int:
        return len(cls._members)

    def __getitem__(cls, name: str):
        return cls.__members__[name]

    def __contains__(cls, value) -> bool:
        try:
            return value in cls._by_value
        except TypeError:  # unhashable
            return False

    @property
    def __members__(cls):
        return _MappingProxy({member.name: member for member in cls._members})

    def __setattr__(cls, name: str, value) -> None:
        if name in cls.__dict__ and isinstance(cls.__dict__[name], cls):
            raise AttributeError(f"cannot reassign member {name!r}")
        super().__setattr__(name, value)

    def __delattr__(cls, name: str) -> None:
        if name in cls.__dict__ and isinstance(cls.__dict__[name], cls):
            raise AttributeError(f"cannot delete member {name!r}")
        super().__delattr__(name)


_MappingProxy = type(type.__dict__)  # types.MappingProxyType, without importing types


class Status(str, metaclass=_Members):
    """A job's state: a `str` (its value, as stored and logged) with a name, like
    a member of a `str` Enum. `Status("queued") is Status.QUEUED`; an unknown
    value is a ValueError. (It is not an `Enum` instance.)

    Not an Enum: importing enum (with functools and collections) cost job-run
    about 8 ms before its first line of work (docs/architecture.md, the start-up
    budget)."""

    __slots__ = ()
    QUEUED: Status  # waiting for a free slot or for its start time
    RUNNING: Status  # a runner holds the job's lock and runs an attempt
    RETRYING: Status  # an attempt failed; waits retry_delay for the next one
    SUCCEEDED: Status  # final: an attempt returned normally
    FAILED: Status  # final: the last attempt failed, or the job was lost with none left
    CANCELLED: Status  # final: stopped on request
    _members: tuple[Status, ...] = ()
    _by_value: dict[str, Status] = {}

    def __new__(cls, value: str) -> Status:
        try:
            return cls._by_value[value]
        except (KeyError, TypeError):
            raise ValueError(f"{value!r} is not a valid Status") from None

    @property
    def value(self) -> str:
        return str.__str__(self)

    @property
    def name(self) -> str:
        return self.value.upper()

    @property
    def is_final(self) -> bool:
        return self in FINAL

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"<Status.{self.name}: {self.value!r}>"

    def __reduce__(self):
        return Status, (self.value,)

    @classmethod
    def read(cls, value: object) -> Status:
        """The member for a stored `value`; for a value this bgjobs does not
        know (a row written by another version, or by hand), a Status that is
        no member: it shows the text as stored, and is neither waiting,
        active nor final, so nothing claims, reconciles or counts it."""
        try:
            return cls._by_value[value]
        except (KeyError, TypeError):
            return str.__new__(cls, value if isinstance(value, str) else repr(value))


Status._members = tuple(
    str.__new__(Status, v) for v in ("queued", "running", "retrying", "succeeded", "failed", "cancelled")
)
Status._by_value = {member.value: member for member in Status._members}
for _member in Status._members:
    type.__setattr__(Status, _member.name, _member)
del _member

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


# The columns of a job row, in order (class is `class_path` here).
JOB_FIELDS = (
    "id",
    "class_path",
    "method",
    "params",
    "status",
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
    "exception",
    "error",
    "result",
    "progress",
    "progress_message",
    "cancel_requested_at",
    "cancel_source",
    "cancel_user",
    "source",
    "user",
    "retry_of",
    "output_error",
)


# A named tuple, not a dataclass: `job-run` and every runner build this class
# at start-up, and dataclasses (which import inspect) cost more than the rest.
class Job(record("Job", JOB_FIELDS)):
    """One job row, as read at one moment: an immutable snapshot. Times are
    epoch seconds; `params` is a tuple; `status` is a Status."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row) -> Job:
        """The snapshot of a row. It never fails on a row that is bad anyway
        (written by another version, or by hand): params that are not a JSON
        array become UnreadableParams, an unknown status a Status that is no
        member (Status.read), and a number column that holds no number None.
        `defect` says what makes such a row one that cannot run."""
        d = dict(row)
        d["class_path"] = d.pop("class")
        d["params"] = _params(d["params"])
        d["status"] = Status.read(d["status"])
        for name in _NUMBERS:
            if type(d[name]) not in (int, float):
                d[name] = None
        return cls._make([d[name] for name in JOB_FIELDS])

    @property
    def defect(self) -> str | None:
        """Why this row cannot be run as it stands, or None if it can."""
        if isinstance(self.params, UnreadableParams):
            return f"params are not a JSON array: {self.params.text[:200]!r}"
        if self.status not in Status:
            return f"status {self.status.value!r} is not one this bgjobs knows"
        if not isinstance(self.class_path, str) or not isinstance(self.method, str):
            return "it names no class or no method"
        missing = [name for name in _REQUIRED_NUMBERS if getattr(self, name) is None]
        if missing:
            return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a number"
        return None

    def to_json(self) -> str:
        """Every field, as from_json reads it back (to_dict is for people)."""
        return jsonc.dumps({**self._asdict(), "params": list(self.params), "status": self.status.value})

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        d = jsonc.loads(text)
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
        params = jsonc.loads(stored)
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
