"""Fleet mode's transport: Procrastinate wake-ups, and what a host does with one.

A job row is the truth; a wake-up only says "look". Submitting a job defers
a `bgjobs.wake` task in the same transaction as the row (the PostgreSQL
store calls `ProcrastinateExecutor.wake` inside its insert), scheduled at the
job's start time; a retry defers one at its retry time. `job-worker` runs
Procrastinate's worker on each host: a wake-up starts, on that host, runners
that claim for themselves (each takes its job's advisory lock inside its
claim). A duplicate or late wake-up finds nothing to claim; a lost one is
made up for by every worker's sweep, which re-wakes due jobs a few seconds
later. So no wake-up can run a job twice or lose one.
"""

from __future__ import annotations

import os
import sys

from .pipes import write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import Config
    from .seams import Wiring

TASK = "bgjobs.wake"
QUEUE = "bgjobs"
CLAIMER_CODE = "import sys; from bgjobs.runner import main; sys.exit(main(['--claim']))"
WARM_CODE = "import sys; from bgjobs.runner import main; sys.exit(main(['--claim', '--warm']))"


def procrastinate_app(url: str, on_wake=None):
    """The Procrastinate App on store `url`, with the wake-up task; `on_wake(job_id)`
    is what a wake-up does on this host (job-worker's), None where this process
    only defers wake-ups."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name=TASK, queue=QUEUE)
    def wake(job_id: int | None = None) -> None:
        if on_wake is not None:
            on_wake(job_id)

    return app


class ProcrastinateExecutor:
    """The executor seam in fleet mode: runners start where a wake-up lands."""

    dispatches_here = False  # a caller's dispatch only reconciles; the hosts start runners

    def __init__(self, config: Config) -> None:
        self.config = config
        self._app = None

    @property
    def app(self):
        if self._app is None:
            self._app = procrastinate_app(self.config.store)
        return self._app

    def wake(self, connection, job_id: int, at: float | None = None) -> None:
        """Defer a wake-up for job `job_id` at `at` (epoch seconds on the
        database's clock; now if None), on `connection`, inside its transaction."""
        from datetime import UTC, datetime

        options = {"connection": connection}
        if at is not None:
            options["schedule_at"] = datetime.fromtimestamp(at, UTC)
        self.app.configure_task(TASK, **options).defer(job_id=job_id)

    def runner_env(self, token=None) -> dict[str, str]:
        from .executor import LocalExecutor

        return LocalExecutor(self.config).runner_env()

    def start_claimer(self, *, warm: bool = False) -> tuple[int, int | None]:
        """Start, on this host, a runner that claims the next due job itself.
        With `warm`, one that boots (psycopg imported, its connections open)
        and then waits for a line on the pipe returned with its pid: `go`, and
        it claims; end of input, and it exits."""
        from .executor import LocalExecutor, start_python, track

        env = LocalExecutor(self.config).runner_env()
        out = os.path.join(self.config.state_dir, "claimers.out")
        os.makedirs(self.config.state_dir, exist_ok=True)
        out_fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        read_fd = write_fd = None
        try:
            if warm:
                read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
                stdin = (os.POSIX_SPAWN_DUP2, read_fd, 0)
            else:
                stdin = (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)
            pid = start_python(
                ["-c", WARM_CODE if warm else CLAIMER_CODE],
                env,
                stdin=stdin,
                output=(os.POSIX_SPAWN_DUP2, out_fd, 1),
            )
        except BaseException:
            if write_fd is not None:
                os.close(write_fd)
            raise
        finally:
            os.close(out_fd)
            if read_fd is not None:
                os.close(read_fd)
        track(pid)
        return pid, write_fd

    def start_runner(self, job_id: int, token) -> int:
        raise OSError("in fleet mode a runner claims its job itself (job-worker starts it)")

    def start_waker(self, token) -> int:
        raise OSError("in fleet mode each job-worker sweeps; there is no waker")


class Claimers:
    """How job-worker starts runners on its host: it keeps one warm claimer
    booted ahead (psycopg imported, connections open), so that a wake-up's job
    does not pay for an interpreter and the driver's import; the first runner
    a wake-up needs is that one, the rest start cold, and a new warm one boots
    for the next wake-up."""

    def __init__(self, rt: Wiring) -> None:
        self.rt = rt
        self.warm: int | None = None  # the write end of the warm claimer's pipe

    def start(self, count: int) -> int:
        started = 0
        try:
            for _ in range(count):
                if not self._go_warm():
                    self.rt.executor.start_claimer()
                started += 1
            self.keep_warm()
        except OSError as exc:
            print(f"bgjobs worker: could not start a runner: {exc}", file=sys.stderr, flush=True)
        return started

    def busy(self) -> int:
        """The runners this worker started that are still alive (booting,
        claiming or running jobs): a slot each, even before their claim."""
        from .executor import reap, tracked_pids

        reap()
        return len(tracked_pids()) - (1 if self.warm is not None else 0)

    def _go_warm(self) -> bool:
        if self.warm is None:
            return False
        fd, self.warm = self.warm, None
        try:
            return write_all(fd, b"go\n")  # False: it died meanwhile; start one cold
        finally:
            os.close(fd)

    def keep_warm(self) -> None:
        if self.warm is None:
            _, self.warm = self.rt.executor.start_claimer(warm=True)

    def close(self) -> None:
        """End of input: the warm claimer exits unused."""
        if self.warm is not None:
            os.close(self.warm)
            self.warm = None


def start_claimers(rt: Wiring, claimers: Claimers) -> int:
    """Start as many claiming runners on this host as there are due jobs and
    free slots here (worker_slots); returns how many were started."""
    free = rt.config.worker_slots - max(rt.store.running_on(rt.config.host), claimers.busy())
    if free <= 0:
        return 0
    due = rt.store.due_count(limit=free)
    return claimers.start(min(free, due))


def sweep(rt: Wiring, claimers: Claimers) -> None:
    """One host's periodic look: settle lost runners (any host's), and start
    runners here for due jobs a wake-up may have missed."""
    from .recovery import reconcile

    reconcile(rt)
    start_claimers(rt, claimers)


def heartbeat(rt: Wiring, started: float, fingerprint: str) -> None:
    """Upsert this host's row in the hosts table."""
    from . import __version__

    rt.store.upsert_host(
        name=rt.config.host,
        pid=os.getpid(),
        started=started,
        slots=rt.config.worker_slots,
        version=__version__,
        config_fingerprint=fingerprint,
    )


def config_fingerprint(config: Config) -> str:
    """What must agree across the fleet: the allowlist and the defaults."""
    import hashlib

    text = repr(sorted((path, repr(entry)) for path, entry in config.classes.items())) + repr(config.defaults)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
