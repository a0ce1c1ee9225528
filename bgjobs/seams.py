"""The seams: what the core asks of the parts that differ between one host and
a fleet. Each is a small protocol; `bgjobs.wiring` builds today's single-host
implementations from the config, and nothing above the seams (the lifecycle,
the CLI, the API, the dashboard) knows which implementation it has.

    seam        one host (today)                        module
    store       a SQLite file                           bgjobs.store.Store
    liveness    a flock per job, state/locks/ID.lock    bgjobs.liveness.FlockLiveness
    signaller   pid-verified signals through a pidfd    bgjobs.signaller.PidSignaller
    executor    posix_spawn of a runner, the waker      bgjobs.executor.LocalExecutor
    events      two JSON Lines files                    bgjobs.eventlog.EventLog
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from .config import Config
from .job import Job


class Store(Protocol):
    """Job rows, and every state change as one compare-and-set: a method that
    changes a status returns the job as changed, or None when the job was not
    in the state the change starts from. See bgjobs.store.Store for each.
    `attempt=` fences a runner's write: it lands only on that attempt (and, in
    fleet mode, only on the host whose claim it is)."""

    path: str  # where it is, for messages (a file, or a URL without its password)

    def get(self, job_id: int) -> Job | None: ...
    def list_jobs(self, **filters) -> list[Job]: ...
    def jobs_in(self, *statuses) -> list[Job]: ...
    def counts(self, since: float | None = None) -> dict[str, int]: ...
    def has_active(self) -> bool: ...
    def has_waiting(self) -> bool: ...
    def next_due(self) -> float | None: ...
    def due_count(self, limit: int | None = None) -> int: ...
    def running_on(self, host: str) -> int: ...
    def insert(self, *, on_insert=None, **values) -> Job: ...
    def claim_due(
        self,
        *,
        max_running: int,
        class_limits: dict[str, int],
        accept,
        now: float | None = None,
        host_slots: int | None = None,
    ) -> list[tuple[Job, object]]: ...
    def unclaim(self, job_id: int, error: str) -> Job | None: ...
    def start_attempt(self, job_id: int, runner_pid: int | None, runner_start: int | None) -> Job | None: ...
    def set_attempt_process(
        self, job_id: int, pid: int, pid_start: int | None, *, attempt: int | None = None
    ) -> None: ...
    def set_progress(
        self, job_id: int, fraction: float | None, message: str | None, *, attempt: int | None = None
    ) -> None: ...
    def set_output_error(self, job_id: int, why: str, *, attempt: int | None = None) -> None: ...
    def touch(self, job_id: int, *, attempt: int | None = None) -> None: ...
    def db_now(self) -> float: ...
    def succeed(self, job_id: int, result: str | None, *, attempt: int | None = None) -> Job | None: ...
    def fail_attempt(self, job_id: int, *, retry_at: float | None, **outcome) -> Job | None: ...
    def cancelled(self, job_id: int, *, attempt: int | None = None, **outcome) -> Job | None: ...
    def cancel_waiting(self, job_id: int, source: str, user: str | None) -> Job | None: ...
    def request_cancel(self, job_id: int, source: str, user: str | None, grace: float) -> Job | None: ...
    def mark_lost(
        self, job_id: int, *, retry_at: float | None, cancelled: bool, error: str
    ) -> Job | None: ...
    def open(self) -> None: ...
    def close(self) -> None: ...


class Liveness(Protocol):
    """Whether a job's runner is alive. A token is taken inside the claim and
    held by the job's runner for the job's whole life; it is freed however the
    runner dies, so a running job whose token can be taken has lost its runner."""

    def open(self) -> None:
        """Open what taking a token needs, ahead of the first claim."""

    def take(self, job_id: int) -> object | None:
        """The job's token, or None if a live runner (or a reconciler) holds it."""

    def release(self, token: object, job_id: int, *, final: bool) -> None:
        """Let go of the token; with `final`, forget the job for good."""

    def forget(self, job_id: int) -> None:
        """A job became final with no runner holding its token: clean up after it."""

    def renew(self, job_id: int) -> bool:
        """In the job's runner: whether it still holds the token (taking it
        back after a lost connection, where it can); False means fence."""

    def may_settle(self, job: Job, store: Store) -> bool:
        """Whether a running job whose token was free may be settled now."""

    def drop_copy(self, token: object) -> None:
        """In a process forked from the token's holder: let go of the copy."""

    def inherited(self) -> object | None:
        """In a runner the executor started: the token it was handed, if any."""

    def take_waker(self) -> object | None:
        """The token of the one timer per store, or None if one runs."""

    def release_waker(self, token: object) -> None: ...


class Signaller(Protocol):
    """Stop a running job: ask its runner (which takes the SIGTERM, grace,
    SIGKILL path), or force it when the runner missed its grace."""

    def request_stop(self, job: Job) -> bool:
        """Ask the job's runner to stop it; False if the runner is not provably there."""

    def listen(self, job_id: int) -> int | None:
        """In the job's runner: a descriptor that becomes readable when word of
        a cancel may have come, or None (the word is a signal)."""

    def heard(self, job_id: int) -> bool:
        """In the job's runner: whether a cancel of `job_id` was announced."""

    def runner_alive(self, job: Job) -> bool:
        """Whether the runner recorded on the job is still that runner."""

    def force_stop(self, job: Job) -> None:
        """Kill the job's attempt and its runner."""

    def stop_leftovers(self, job: Job) -> None:
        """Kill what is left of a lost runner's attempt."""


class Executor(Protocol):
    """Start runners, and the timer."""

    dispatches_here: bool  # True: a dispatch starts runners itself; False: hosts' workers do

    def start_runner(self, job_id: int, token: object) -> int:
        """Start the runner of claimed job `job_id`, handing it its liveness
        token; raises OSError when it cannot be started."""

    def start_waker(self, token: object) -> int:
        """Start the timer, handing it its token."""

    def runner_env(self, token: object | None = None) -> dict[str, str]:
        """The environment a runner gets."""


class Events(Protocol):
    """Where log records go."""

    def emit(self, event: str, *, level: str = "INFO", job: Job | None = None, message: str, **extra) -> dict:
        """Build one record and write it; never raises."""

    def close(self) -> None: ...


class Wiring(NamedTuple):
    """The config, and the implementation of each seam, for one process."""

    config: Config
    store: Store
    events: Events
    liveness: Liveness
    signaller: Signaller
    executor: Executor
