"""Create jobs and dispatch queued ones into free slots.

There is no daemon. Queued jobs are rows; every launch, every runner's exit,
every cancel and every status read calls `dispatch`, which first reconciles
lost runners and then claims due jobs (priority, then age) up to the limits.
"""

from __future__ import annotations

import os

from . import lifecycle, limits, procs, recovery
from .errors import RejectedError
from .job import Job
from .runtime import Runtime

TYPE_CHECKING = False  # typing itself is kept out of the start-up path
if TYPE_CHECKING:
    from collections.abc import Callable


def submit(
    rt: Runtime,
    job: object,
    method: str,
    params: tuple | list = (),
    *,
    priority: int | None = None,
    delay: float | None = None,
    at=None,
    max_retries: int | None = None,
    retry_delay: float | None = None,
    timeout: float | None = None,
    source: str = "api",
    user: str | None = None,
    retry_of: int | None = None,
    dispatch_now: bool = True,
    warm_spare: bool = False,
    forked_runner=None,
) -> Job:
    """Validate, insert a queued row, and dispatch. Refusals raise RejectedError
    and are logged as `rejected`; no row and no process exist for them.
    `warm_spare`: dispatch through this process's warm spare runner, and keep
    one for the next launch (see dispatch). `forked_runner` (job-run's, a
    spawner.ForkedRunner): it records the row instead, and dispatches; if it is
    gone, this process does both."""
    from . import allowlist

    config = rt.config
    try:
        spec = allowlist.validate(config, job, method, params)
        policy = config.policy_for(spec.class_path)
        priority = policy.priority if priority is None else limits.whole("priority", priority, -20, 19)
        ok, why = procs.can_set_niceness(priority)
        if not ok:
            raise RejectedError(why, field="priority")
        run_after = limits.start_time(delay, at)
        values = dict(
            class_path=spec.class_path,
            method=spec.method,
            params=spec.params,
            priority=priority,
            max_attempts=(
                policy.max_retries
                if max_retries is None
                else limits.whole("max_retries", max_retries, 0, 1000)
            )
            + 1,
            retry_delay=(
                policy.retry_delay
                if retry_delay is None
                else limits.seconds("retry_delay", retry_delay, maximum=limits.MAX_DELAY)
            ),
            retry_backoff=policy.retry_backoff,
            timeout=(
                policy.timeout
                if timeout is None
                else limits.seconds("timeout", timeout, maximum=limits.MAX_TIMEOUT, positive=True)
            ),
            cancel_grace=policy.cancel_grace,
        )
    except RejectedError as exc:
        rt.log.emit(
            "rejected",
            level="ERROR",
            message=str(exc),
            class_path=job if isinstance(job, str) else _class_name(job),
            method=method,
            exception="RejectedError",
            error=str(exc),
            traceback=None,
            params=_printable(params),
            source=source,
            user=user,
        )
        raise
    values["class"] = values.pop("class_path")
    request = dict(values=values, run_after=run_after, source=source, user=user, retry_of=retry_of)
    if forked_runner is not None and dispatch_now:
        row = forked_runner.record(rt, request)
        if row is not None:
            return row
    row = insert_job(rt, **request)
    if dispatch_now:
        dispatch(rt, warm_spare=warm_spare)
    return row


def insert_job(
    rt: Runtime,
    values: dict,
    *,
    run_after: float,
    source: str,
    user: str | None,
    retry_of: int | None,
    on_insert: Callable[[int], object] | None = None,
) -> Job:
    """Insert a checked job (`values`, as submit builds them) as a queued row, and
    log it. `on_insert(id)` is called before the row is committed."""
    return lifecycle.queued(
        rt, values, run_after=run_after, source=source, user=user, retry_of=retry_of, on_insert=on_insert
    )


def dispatch(rt: Runtime, *, warm_spare: bool = False) -> list[Job]:
    """Reconcile, then start a runner for each due job that fits a free slot.
    Returns the jobs started. Safe to call from any number of processes.

    With `warm_spare` (the Python API's launches, if `warm_spare` is on in the
    config), a runner this process started ahead (spawner.Spare) does it
    instead, if it has booted: it takes the next due job and, once that job
    runs, dispatches the rest. Then a new spare boots for the next launch."""
    if warm_spare and rt.config.warm_spare:
        try:
            taken = rt.spawner.dispatch_through_spare(rt)
            if taken is None:
                return dispatch(rt)
            return [job] if taken and (job := rt.store.get(taken)) else []
        finally:
            rt.spawner.keep_warm_spare()
    recovery.reconcile(rt)
    started = []
    for job, fd in claim(rt):
        if start_runner(rt, job, fd):
            started.append(job)
    ensure_waker(rt)
    return started


def start_runner(rt: Runtime, job: Job, fd: int) -> bool:
    """Spawn the runner of claimed `job`, handing it lock `fd` (closed here).
    If it cannot be started (its output file cannot be opened, no process can
    be made), that is a failed attempt, retried after its backoff; False."""
    try:
        rt.spawner.spawn_runner(job.id, fd)
        os.close(fd)  # the runner holds its own copy of the lock now
        return True
    except OSError as exc:
        done = None
        try:
            done = lifecycle.start_failed(rt, job, exc)
        finally:
            procs.release_lock(fd, rt.lock_path(job.id), remove=done is not None and done.is_final)
        return False


def claim(rt: Runtime, limit: int | None = None) -> list[tuple[Job, int]]:
    """Claim due jobs that fit free slots (at most `limit`): each comes with its
    lock, taken, as an open descriptor the caller must hand on or close."""
    config = rt.config
    limits = {p: c.max_concurrent for p, c in config.classes.items() if c.max_concurrent}
    taken = 0

    def take_lock(job: Job):
        nonlocal taken
        if limit is not None and taken >= limit:
            return None
        fd = procs.take_lock(rt.lock_path(job.id))
        if fd is not None:  # else a live runner (or a reconciler) has it
            taken += 1
        return fd

    return rt.store.claim_due(max_running=config.max_concurrent, class_limits=limits, accept=take_lock)


def ensure_waker(rt: Runtime, *, watch_running: bool = False) -> None:
    """Start the waker if jobs wait (or, with `watch_running`, run) and none
    runs. The waker is the only timer: it starts delayed jobs and retries on
    time, reconciles lost runners each second, and exits when idle."""
    if not (rt.store.has_waiting() or (watch_running and rt.store.has_active())):
        return
    fd = procs.open_lock(rt.waker_lock)
    try:
        if not procs.try_lock(fd):
            return
        rt.spawner.spawn_waker(fd)
    finally:
        os.close(fd)


def _class_name(job) -> str:
    from . import allowlist

    try:
        return allowlist.class_path_of(job)
    except RejectedError:
        return repr(job)


def _printable(params) -> list:
    try:
        return [p if isinstance(p, (str, int, float, bool, type(None))) else repr(p) for p in params]
    except TypeError:
        return [repr(params)]
