"""A job's transitions: each is one function that does the store's
compare-and-set and writes the transition's log record. No other module
writes a transition's record.

    queued --claim--> running --succeeded-----------> succeeded
                         |----attempt_failed--------> retrying --claim--> running
                         |                 '--------> failed
                         |----cancelled-------------> cancelled
                         '----lost (runner died)----> retrying | failed | cancelled
    queued | retrying --cancel_waiting--------------> cancelled

A function returns the job as the transition left it, or None when the
compare-and-set lost (the job was not in the state the transition starts from).

The runner's transitions (succeeded, attempt_failed, cancelled, output_lost)
are fenced by the job's attempt (`attempt=job.attempt`): a runner whose
attempt is over, because its job was taken for lost and started again
(elsewhere, in a fleet), changes nothing. Reconcile's (lost, start_failed) are
not: they settle a job whose runner is gone.
"""

from __future__ import annotations

import functools
import json
import time
from typing import NamedTuple

from .job import Job, Status, iso

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .seams import Wiring


class Launch(NamedTuple):
    """A checked launch, ready to be inserted: the row's spec and policy
    (`values`), when it may start, and who asked."""

    values: dict
    run_after: float
    source: str
    user: str | None
    retry_of: int | None

    def to_json(self) -> str:
        return json.dumps(self._asdict())

    @classmethod
    def from_json(cls, text: str | bytes) -> Launch:
        return cls(**json.loads(text))

    def made(self, job: Job) -> bool:
        """Whether `job` is the row this launch inserted: the same call, at the
        start time it chose (within a second: a PostgreSQL store keeps it on the
        database's clock, converted by offset)."""
        v = self.values
        same_call = (job.class_path, job.method, list(job.params)) == (
            v["class_path"],
            v["method"],
            list(v["params"]),
        )
        return same_call and abs(job.run_after - self.run_after) < 1.0


def _atomic(transition):
    """Run `transition` inside `rt.store.unit()`: where the store keeps the
    records too (fleet mode's events table), the change and its record
    commit together."""

    @functools.wraps(transition)
    def atomic(rt, *args, **kwargs):
        with rt.store.unit():
            return transition(rt, *args, **kwargs)

    return atomic


@_atomic
def queued(rt: Wiring, launch: Launch, *, on_insert=None) -> Job:
    """A new row, queued, for checked `launch` (launcher.prepare); `on_insert(id)`
    runs before the commit."""
    row = rt.store.insert(
        **launch.values,
        run_after=launch.run_after,
        source=launch.source,
        user=launch.user,
        retry_of=launch.retry_of,
        on_insert=on_insert,
    )
    when = "" if launch.run_after <= time.time() else f", not before {iso(launch.run_after)}"
    rt.events.emit(
        "queued",
        job=row,
        message=f"{row.name} queued with priority {row.priority}{when}",
        params=list(row.params),
        priority=row.priority,
        source=launch.source,
        user=launch.user,
        run_after=iso(launch.run_after),
    )
    return row


def rejected(rt: Wiring, class_path: str, method: str, params, exc: Exception, source: str, user) -> None:
    """The `rejected` record of a refused launch: no row exists for it."""
    rt.events.emit(
        "rejected",
        level="ERROR",
        message=str(exc),
        class_path=class_path,
        method=method,
        exception=type(exc).__name__,
        error=str(exc),
        traceback=None,
        params=_printable(params),
        source=source,
        user=user,
    )


def _printable(params) -> list:
    try:
        return [p if isinstance(p, (str, int, float, bool, type(None))) else repr(p) for p in params]
    except TypeError:
        return [repr(params)]


def started(rt: Wiring, job: Job, pid: int) -> None:
    """The `started` record of an attempt the runner has begun (start_attempt)."""
    rt.events.emit(
        "started",
        job=job,
        message=f"job {job.id} attempt {job.attempt} of {job.max_attempts} started",
        pid=pid,
        priority=job.priority,
    )


@_atomic
def succeeded(rt: Wiring, job: Job, result: str | None) -> Job | None:
    """running -> succeeded."""
    done = rt.store.succeed(job.id, result, attempt=job.attempt)
    if done:
        rt.events.emit(
            "succeeded", job=done, message=f"job {job.id} succeeded", duration=done.duration, result=result
        )
    return done


@_atomic
def attempt_failed(
    rt: Wiring,
    job: Job,
    *,
    exception: str | None,
    error: str | None,
    traceback: str | None = None,
    exit_code: int | None = None,
    exit_signal: int | None = None,
    permanent: bool = False,
    event: str = "attempt_failed",
) -> Job | None:
    """running -> retrying (attempts left, after the backoff) or failed, for
    the runner of `job`'s attempt. `event` is the failed attempt's record:
    attempt_failed, or timed_out."""
    return _failed(
        rt,
        job,
        exception=exception,
        error=error,
        traceback=traceback,
        exit_code=exit_code,
        exit_signal=exit_signal,
        permanent=permanent,
        event=event,
        attempt=job.attempt,
    )


def _failed(
    rt: Wiring,
    job: Job,
    *,
    exception: str | None,
    error: str | None,
    traceback: str | None = None,
    exit_code: int | None = None,
    exit_signal: int | None = None,
    permanent: bool = False,
    event: str = "attempt_failed",
    attempt: int | None,
) -> Job | None:
    """attempt_failed's transition, fenced by `attempt` (None: not fenced)."""
    retry_at = None
    if job.attempts_left and not permanent:
        retry_at = time.time() + job.next_retry_delay()
    done = rt.store.fail_attempt(
        job.id,
        retry_at=retry_at,
        attempt=attempt,
        exception=exception,
        error=error,
        exit_code=exit_code,
        exit_signal=exit_signal,
    )
    if done is None:
        return None
    rt.events.emit(
        event,
        level="ERROR",
        job=done,
        message=f"job {job.id} attempt {job.attempt} failed: {error}",
        exception=exception,
        error=error,
        traceback=traceback,
        exit_code=exit_code,
        exit_signal=exit_signal,
    )
    why = "not retried" if permanent else f"after {job.attempt} attempt(s)"
    _next_step(rt, job, done, why, exception, error)
    return done


@_atomic
def cancelled(rt: Wiring, job: Job, why: str, exit_code=None, exit_signal=None) -> Job | None:
    """running -> cancelled, once the runner has stopped the attempt."""
    done = rt.store.cancelled(
        job.id, attempt=job.attempt, error=why, exit_code=exit_code, exit_signal=exit_signal
    )
    if done:
        _cancelled_record(rt, done, f"job {job.id} {why}", duration=done.duration)
    return done


def cancel_requested(rt: Wiring, job: Job, source: str, user: str | None, **extra) -> None:
    """The `cancel_requested` record of a cancel that won its compare-and-set."""
    rt.events.emit(
        "cancel_requested",
        job=job,
        message=f"cancel of job {job.id} requested by {source}",
        source=source,
        user=user,
        **extra,
    )


@_atomic
def request_cancel(rt: Wiring, job_id: int, source: str, user: str | None, grace: float) -> Job | None:
    """Flag running job `job_id` for cancellation; exactly one caller wins."""
    flagged = rt.store.request_cancel(job_id, source, user, grace)
    if flagged is not None:
        cancel_requested(rt, flagged, source, user, grace=grace)
    return flagged


@_atomic
def cancel_waiting(rt: Wiring, job: Job, source: str, user: str | None) -> Job | None:
    """queued | retrying -> cancelled, at once: no runner is doing anything."""
    done = rt.store.cancel_waiting(job.id, source, user)
    if done is not None:
        cancel_requested(rt, done, source, user)
        _cancelled_record(rt, done, f"job {job.id} cancelled while {job.status.value}")
    return done


@_atomic
def lost(rt: Wiring, job: Job, reason: str) -> Job | None:
    """running -> cancelled (if asked), retrying (attempts left) or failed, for a
    job whose runner died. A runner that died before its attempt began still
    used up an attempt: otherwise a runner that can never start (an
    unwritable output file, a broken interpreter) would be retried for ever."""
    store = rt.store
    if job.cancel_requested_at is not None:
        done = store.mark_lost(job.id, retry_at=None, cancelled=True, error=f"cancelled; {reason}")
        if done:
            _cancelled_record(rt, done, f"job {job.id} cancelled ({reason})")
        return done
    if job.runner_pid is None:
        job = store.start_attempt(job.id, None, None) or job
    retry_at = time.time() + job.next_retry_delay() if job.attempts_left else None
    done = store.mark_lost(job.id, retry_at=retry_at, cancelled=False, error=reason)
    if done is None:
        return None
    rt.events.emit(
        "lost",
        level="ERROR",
        job=done,
        message=f"job {job.id} lost: {reason}",
        exception="RunnerLost",
        error=reason,
        traceback=None,
        pid=job.runner_pid,
    )
    _next_step(rt, job, done, f"after {job.attempt} attempt(s)", "RunnerLost", reason)
    return done


@_atomic
def start_failed(rt: Wiring, job: Job, exc: OSError) -> Job | None:
    """A claimed job whose runner could not be started: that counts as a failed
    attempt, with the OSError as its error, and backs off like any retry."""
    begun = rt.store.start_attempt(job.id, None, None)
    if begun is None:
        return None
    return _failed(
        rt, begun, exception=type(exc).__name__, error=f"could not start its runner: {exc}", attempt=None
    )


@_atomic
def output_lost(rt: Wiring, job: Job, why: str) -> None:
    """The job's output cannot be written (a full disk, a file size limit): the
    job runs on, and its row and the errors log say its output was lost."""
    rt.store.set_output_error(job.id, why, attempt=job.attempt)
    rt.events.emit(
        "output_lost",
        level="ERROR",
        job=job,
        message=f"job {job.id}: its output is lost from here on: {why}",
        exception="OutputLost",
        error=why,
        traceback=None,
    )


def _cancelled_record(rt: Wiring, done: Job, message: str, **extra) -> None:
    rt.events.emit(
        "cancelled",
        level="WARNING",
        job=done,
        message=message,
        source=done.cancel_source,
        user=done.cancel_user,
        **extra,
    )


def _next_step(rt: Wiring, job: Job, done: Job, why: str, exception: str | None, error: str | None) -> None:
    """After a failed attempt of `job` (now `done`): the retry's record, or the failure's."""
    if done.status is Status.RETRYING:
        rt.events.emit(
            "retry_scheduled",
            level="WARNING",
            job=done,
            message=f"job {job.id} will retry in {job.next_retry_delay():g}s "
            f"(attempt {job.attempt + 1} of {job.max_attempts})",
            delay=job.next_retry_delay(),
        )
    else:
        rt.events.emit(
            "failed",
            level="ERROR",
            job=done,
            message=f"job {job.id} failed {why}: {error}",
            exception=exception,
            error=error,
            duration=done.duration,
        )
