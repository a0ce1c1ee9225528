"""job-run's runner: a fork of job-run itself. Both halves of the protocol are
here: `ForkedRunner` (job-run's side) and `forked` (the fork's).

job-run forks first thing, while it has one thread and only the runner's
modules loaded, so no interpreter boots for the job. While job-run reads its
command line and checks the call (importing the job's module), the fork opens
the store; job-run itself never opens it.

job-run sends the fork two lines: the config file with the config as job-run
read it (`use_config`), so that it opens the store meanwhile; then the checked
launch (`record`). The fork inserts the row, sends its id before the commit and
the row after it, and becomes the runner of the next due job. A refused launch
only closes the pipe: the fork reads end of input and exits having done nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys

from . import executor, launcher, procs
from .job import Job
from .lifecycle import Launch
from .pipes import send, set_environ, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .config import Config
    from .seams import Wiring


class ForkedRunner:
    """job-run's side: the fork, and the two pipes to talk to it."""

    def __init__(self) -> None:
        read_fd, self._requests = os.pipe2(os.O_CLOEXEC)
        self._replies, reply_w = os.pipe2(os.O_CLOEXEC)
        try:
            self.pid = os.fork()
        except BaseException:
            for fd in (read_fd, reply_w):
                os.close(fd)
            self.close()
            raise
        if self.pid == 0:
            # The child never returns into job-run's code, whatever happens
            # (a second job-run would record the job again).
            code = 1
            try:
                os.setsid()  # first: out of reach of a terminal's Ctrl-C
                os.close(self._requests)  # job-run's ends: with them open, it would never see end of input
                os.close(self._replies)
                requests, replies = detach(read_fd, reply_w)
                code = forked(requests, replies)
            except BaseException:  # noqa: BLE001 - job-run records the job itself
                pass
            finally:
                os._exit(code)
        os.close(read_fd)
        os.close(reply_w)

    def use_config(self, config: Config) -> None:
        """Tell it the config (as read here), so it opens the store meanwhile."""
        line = json.dumps({"path": config.path, "expect": repr(config)}) + "\n"
        if not write_all(self._requests, line.encode()):
            self.close()  # gone: record() says so

    def record(self, rt: Wiring, launch: Launch) -> Job | None:
        """Have the fork insert checked `launch` in `rt`'s store and run the next
        due job. Returns the row; None if the fork did not insert it (it is
        gone, or it reads the config differently): then the caller inserts and
        dispatches itself."""
        if self._requests < 0:
            return None
        try:
            sent = write_all(self._requests, (launch.to_json() + "\n").encode())
            with open(self._replies, "rb", closefd=False) as replies:
                inserted = replies.readline() if sent else b""
                row = replies.readline() if inserted.endswith(b"\n") else b""
        finally:
            self.close()
        if row.endswith(b"\n"):
            return Job.from_json(row)
        if not inserted.endswith(b"\n"):
            return None  # it inserted nothing: a row it had begun was rolled back with it
        # It died between its insert and its reply: the row is there if the
        # commit was, and then nobody runs it unless we dispatch. If the commit
        # was not, another launch may have the same id since: a row is ours only
        # if it is this launch, at the start time we chose (a float of our clock).
        job = rt.store.get(int(inserted))
        if job is None or not launch.made(job):
            return None
        launcher.dispatch(rt)
        return job

    def reap_when_done(self) -> None:
        """For a caller that outlives the launch (`job-run --wait`): collect the
        fork when it exits, rather than leave a zombie until the caller exits."""
        executor.track(self.pid)

    def close(self) -> None:
        for name in ("_requests", "_replies"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


def submit(rt: Wiring, launch: Launch, runner: ForkedRunner | None) -> Job:
    """Insert checked `launch` and start it: through job-run's fork `runner` if
    it can, else from this process (insert_job, then dispatch)."""
    row = runner.record(rt, launch) if runner is not None else None
    if row is None:
        row = launcher.insert_job(rt, launch)
        launcher.dispatch(rt)
    return row


def start() -> ForkedRunner | None:
    """A ForkedRunner for `job-run`, or None where this process must not fork:
    it has a second thread (a fork copies only the calling one, so a lock
    another thread holds would stay held in the child), or the fork failed."""
    if not procs.single_threaded():
        return None
    try:
        return ForkedRunner()
    except OSError:
        return None


def detach(*pipes: int) -> list[int]:
    """In the fork: fds 0 to 2 from and to /dev/null (whoever reads job-run's
    output must not wait for the fork), the `pipes` kept above them (job-run
    may have started with one of 0 to 2 closed, and a pipe took it), and no
    other fd job-run was started with (procs.close_inherited)."""
    kept = []
    for fd in pipes:
        if fd <= 2:
            fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        kept.append(fd)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd != null:
            os.dup2(null, fd)
    if null > 2:
        os.close(null)
    procs.close_inherited()  # the pipes are not inheritable
    return kept


def forked(requests: int, replies: int) -> int:
    """The fork's side: job-run's runner, detached from its session and output.
    Returns the exit code; the fork exits with it.

    The first line on `requests` is job-run's config: it opens the store (if
    there is one already: a refused launch must not create it) while job-run
    checks the call. The second is the checked launch (end of input instead:
    the launch was refused, or job-run is gone; it exits having done nothing).
    It inserts the job, sending on `replies` the new row's id before the
    commit and the row after it, and claims the next due job, as a spare does.
    It inserts nothing if it reads the config differently from job-run (the
    file changed between the two reads): job-run then inserts the job itself.

    It puts a title of its own where `ps` would show job-run's argv, the user's
    params and all, for the job's whole life (procs.set_title), and gets the
    environment a spawned runner would, with the caller's secrets erased from
    what /proc shows too (procs.erase_environ). If the kernel will not let it
    do either, it hands the job to a spawned runner."""
    import sqlite3  # noqa: F401 - while job-run reads its arguments: job-run itself never needs it

    from .runner import Runner, run_chain
    from .wiring import wire

    executor.reap_in_loop()  # it may start a waker or runners, and forks attempts
    rt, inserted, pending = None, False, None
    try:
        with open(requests, "rb") as lines:
            config = lines.readline()
            if config.endswith(b"\n"):
                config = json.loads(config)
                rt = wire(config["path"])
                if repr(rt.config) != config["expect"]:
                    return 0  # job-run inserts the job itself, as it read the config
                if rt.config.store is not None or os.path.exists(rt.config.db_path):
                    rt.store.open()
            request = lines.readline()
        if rt is None or not request.endswith(b"\n"):
            return 0  # no launch on job-run's command line, or a refused one
        launch = Launch.from_json(request)
        row = launcher.insert_job(rt, launch, on_insert=lambda i: send(replies, b"%d" % i))
        inserted = True
        send(replies, row.to_json().encode())
        os.close(replies)
        if not rt.executor.dispatches_here:
            return 0  # fleet mode: a job-worker's host runs it, woken by the store
        set_environ(rt.executor.runner_env())
        os.chdir(rt.config.root)
        claimed = launcher.claim(rt, limit=1)
        if not claimed:
            launcher.dispatch(rt)  # nothing it may take now (delayed, or no free slot)
            return 0
        ((job, token),) = claimed
        pending = (job, token)  # claimed, not yet in the runner's hands
        sys.argv = ["-c", str(job.id)]  # as a spawned runner's
        shown = procs.set_title(f"bgjobs.runner {job.id}", "bgjobs.runner")
        if not (shown and procs.erase_environ(executor.PRIVATE_ENV)):
            pending = None
            launcher.start_runner(rt, job, token)
            launcher.dispatch(rt)
            return 0
        runner = Runner(rt, dispatch_after_start=True)
        pending = None
        return run_chain(runner, job.id, token)
    except BaseException as exc:  # noqa: BLE001
        print(f"bgjobs: runner {os.getpid()}: {exc!r}", file=sys.stderr, flush=True)
        if inserted:  # job-run has gone on: the job must not wait for the next dispatch
            try:
                if pending is not None:  # queued again, not found lost a moment later
                    rt.store.unclaim(pending[0].id, f"its runner failed before it began: {exc!r}")
                    rt.liveness.release(pending[1], pending[0].id, final=False)
                launcher.dispatch(rt)
            except Exception:  # noqa: BLE001 - the waker or the next command will
                pass
        return 1
    finally:
        if rt is not None:
            # As a spawned runner's exit does: the last connection to close
            # checkpoints the log, so the next process to open the store does
            # not have to read all of it first.
            rt.store.close()
