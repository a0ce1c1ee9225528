"""Create jobs, and dispatch queued ones into free slots.

A launch is three steps that callers compose: `prepare` checks it (the
allowlist, the params, the bounds) into a `Launch`, `insert_job` makes it a
queued row, and `dispatch` starts what fits. `submit` does all three; the API
dispatches through its warm spare (bgjobs.spare), and job-run has its fork
insert the row (bgjobs.fork).

There is no daemon. Queued jobs are rows; every launch, every runner's exit,
every cancel and every status read calls `dispatch`, which first reconciles
lost runners and then claims due jobs (priority, then age) up to the limits.
"""

from __future__ import annotations

from . import allowlist, lifecycle, limits, procs, recovery
from .errors import RejectedError
from .job import Job
from .lifecycle import Launch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .seams import Wiring


def prepare(
    rt: Wiring,
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
) -> Launch:
    """Check a launch: the class, the method, the params against its signature,
    and every option against its bounds. A refusal raises RejectedError and is
    logged as `rejected`; nothing else exists for it."""
    config = rt.config
    try:
        spec = allowlist.validate(config, job, method, params)
        policy = config.policy_for(spec.class_path)
        priority = policy.priority if priority is None else limits.whole("priority", priority, -20, 19)
        ok, why = procs.can_set_niceness(priority)
        if not ok:
            raise RejectedError(why, field="priority")
        run_after = limits.start_time(delay, at)
        if max_retries is not None:
            max_retries = limits.whole("max_retries", max_retries, 0, 1000)
        if retry_delay is not None:
            retry_delay = limits.seconds("retry_delay", retry_delay, maximum=limits.MAX_DELAY)
        if timeout is not None:
            timeout = limits.seconds("timeout", timeout, maximum=limits.MAX_TIMEOUT, positive=True)
    except RejectedError as exc:
        lifecycle.rejected(
            rt, job if isinstance(job, str) else _class_name(job), method, params, exc, source, user
        )
        raise
    values = dict(
        class_path=spec.class_path,
        method=spec.method,
        params=list(spec.params),
        priority=priority,
        max_attempts=(policy.max_retries if max_retries is None else max_retries) + 1,
        retry_delay=policy.retry_delay if retry_delay is None else retry_delay,
        retry_backoff=policy.retry_backoff,
        timeout=policy.timeout if timeout is None else timeout,
        cancel_grace=policy.cancel_grace,
    )
    return Launch(values=values, run_after=run_after, source=source, user=user, retry_of=retry_of)


def insert_job(rt: Wiring, launch: Launch, *, on_insert: Callable[[int], object] | None = None) -> Job:
    """Insert a checked launch as a queued row, and log it. `on_insert(id)` is
    called before the row is committed."""
    return lifecycle.queued(rt, launch, on_insert=on_insert)


def submit(rt: Wiring, job: object, method: str, params: tuple | list = (), **options) -> Job:
    """prepare, insert_job, and dispatch: a launch from this process."""
    row = insert_job(rt, prepare(rt, job, method, params, **options))
    dispatch(rt)
    return row


def dispatch(rt: Wiring) -> list[Job]:
    """Reconcile, then start a runner for each due job that fits a free slot.
    Returns the jobs started. Safe to call from any number of processes. In
    fleet mode it only reconciles: job-worker starts runners on each host."""
    recovery.reconcile(rt)
    if not rt.executor.dispatches_here:
        return []  # fleet mode: the hosts' workers start runners, woken by the store
    started = []
    for job, token in claim(rt):
        if start_runner(rt, job, token):
            started.append(job)
    ensure_waker(rt)
    return started


def start_runner(rt: Wiring, job: Job, token) -> bool:
    """Start the runner of claimed `job`, handing it liveness `token` (let go of
    here). If it cannot be started (its output file cannot be opened, no
    process can be made), that is a failed attempt, retried after its
    backoff; False."""
    try:
        rt.executor.start_runner(job.id, token)
    except OSError as exc:
        done = None
        try:
            done = lifecycle.start_failed(rt, job, exc)
        finally:
            rt.liveness.release(token, job.id, final=done is not None and done.is_final)
        return False
    rt.liveness.release(token, job.id, final=False)  # the runner holds its own copy now
    return True


def claim(rt: Wiring, limit: int | None = None) -> list[tuple[Job, object]]:
    """Claim due jobs that fit free slots (at most `limit`): each comes with its
    liveness token, taken, which the caller must hand on or release."""
    config = rt.config
    limits_by_class = {p: c.max_concurrent for p, c in config.classes.items() if c.max_concurrent}
    taken = 0

    def take(job: Job):
        nonlocal taken
        if limit is not None and taken >= limit:
            return None
        token = rt.liveness.take(job.id)
        if token is not None:  # else a live runner (or a reconciler) has it
            taken += 1
        return token

    # In fleet mode this host runs at most worker_slots jobs; on one host,
    # max_concurrent is the only cap.
    host_slots = config.worker_slots if config.store is not None else None
    return rt.store.claim_due(
        max_running=config.max_concurrent, class_limits=limits_by_class, accept=take, host_slots=host_slots
    )


def ensure_waker(rt: Wiring, *, watch_running: bool = False) -> None:
    """Start the waker if jobs wait (or, with `watch_running`, run) and none
    runs. The waker is the only timer: it starts delayed jobs and retries on
    time, reconciles lost runners each second, and exits when idle."""
    if not rt.executor.dispatches_here:
        return  # fleet mode: each job-worker sweeps
    if not (rt.store.has_waiting() or (watch_running and rt.store.has_active())):
        return
    token = rt.liveness.take_waker()
    if token is None:
        return
    try:
        rt.executor.start_waker(token)
    finally:
        rt.liveness.release_waker(token)


def _class_name(job) -> str:
    try:
        return allowlist.class_path_of(job)
    except RejectedError:
        return repr(job)
