"""Starting a runner process: the seam where a fleet implementation would differ.

`LocalSpawner` starts the runner (`python -c RUNNER_CODE ID`) as its own session,
with no shell, stdin from /dev/null, and the job's lock handed over as an
inherited descriptor, so the lock is held without a gap from claim to runner exit.
A spare runner (`Spare`, below) is started before its job exists, with a pipe
for stdin instead, and takes its job's lock itself when it claims it. `job-run`
forks its runner instead (`ForkedRunner`, below): no interpreter boots for it.
`-c` rather than `-m bgjobs.runner`: runpy costs every runner about 14 ms (measured
in bench_launch.py), more than half of what the runner's own imports cost.
It uses posix_spawn (no copy of the caller's memory, no subprocess import).
"""

from __future__ import annotations

import os
import sys
import threading
import time

TYPE_CHECKING = False  # typing itself is kept out of the start-up path
if TYPE_CHECKING:
    from .config import Config
    from .job import Job

LOCK_FD_ENV = "BGJOBS_LOCK_FD"
RUNNER_CODE = "import sys; from bgjobs.runner import main; sys.exit(main())"
WAKER_CODE = "import sys; from bgjobs.waker import main; sys.exit(main())"
# Secrets of the caller that a job has no business seeing.
PRIVATE_ENV = ("BGJOBS_DASHBOARD_PASSWORD",)


class LocalSpawner:
    """Runs each job's runner as a detached process on this machine."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def config_env(self) -> dict[str, str]:
        """What a runner's environment says about the project: its config file,
        and its root first on PYTHONPATH (so a job's own subprocesses import
        from it too)."""
        path = os.environ.get("PYTHONPATH")
        root = self.config.root
        if path and (path == root or path.startswith(root + os.pathsep)):
            return {"BGJOBS_CONFIG": self.config.path, "PYTHONPATH": path}
        return {
            "BGJOBS_CONFIG": self.config.path,
            "PYTHONPATH": os.pathsep.join(p for p in (root, path) if p),
        }

    def runner_env(self, lock_fd: int | None = None) -> dict[str, str]:
        env = _clean_env()
        env.update(self.config_env())
        if lock_fd is not None:
            env[LOCK_FD_ENV] = str(lock_fd)
        return env

    def spawn_runner(self, job_id: int, lock_fd: int) -> int:
        """Start the runner for a claimed job; returns its pid."""
        out = self.config.output_path(job_id)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        return self._spawn(["-c", RUNNER_CODE, str(int(job_id))], out, lock_fd)

    def dispatch_through_spare(self, rt):
        return dispatch_through_spare(rt)

    def keep_warm_spare(self) -> None:
        keep_warm_spare()

    def spawn_waker(self, lock_fd: int) -> int:
        os.makedirs(self.config.state_dir, exist_ok=True)
        return self._spawn(["-c", WAKER_CODE], os.path.join(self.config.state_dir, "waker.out"), lock_fd)

    def _spawn(self, args: list[str], output, lock_fd: int) -> int:
        out_fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # The lock reaches the child by a dup2 in the child alone: never by making
        # our descriptor inheritable, which any process another thread spawned
        # meanwhile would inherit (and hold, and so keep that job "alive").
        target = 3 if lock_fd != 3 else 4
        try:
            pid = _start_python(
                args,
                self.runner_env(target),
                stdin=(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                output=(os.POSIX_SPAWN_DUP2, out_fd, 1),
                more=[(os.POSIX_SPAWN_DUP2, lock_fd, target)],
            )
        finally:
            os.close(out_fd)
        _reaper.track(pid)
        return pid


class _Piped:
    """A runner this process talks to on two pipes: requests out (`_fd`),
    replies in (`_replies`)."""

    _fd = _replies = -1

    def close(self) -> None:
        for name in ("_fd", "_replies"):
            fd = getattr(self, name)
            if fd >= 0:
                _close(fd)  # a spare's ends are noted in _pipe_ends; a fork's are not
                setattr(self, name, -1)


class Spare(_Piped):
    """The Python API's warm spare: a runner started before its job exists (see
    runner._spare), so that the caller's next launch starts at once.

    It says `ready` on its stdout once booted, then reads requests on stdin:
    one JSON line each, with the config file's path, the environment its job
    is to get, and the caller's config as the caller sees it. For each it
    claims the next due job, as dispatch would: it replies `taken JOB_ID` and
    becomes that job's runner; or, with nothing it may take, it dispatches,
    replies `idle` and waits for the next request. A spare that reads the
    config file differently replies `mismatch` and takes nothing. At end of
    input, or after SPARE_IDLE seconds without a request, it exits.
    One is kept per process (`offer`, and dispatch_through_spare below).
    """

    def __init__(self) -> None:
        read_fd, self._fd = _pipe()
        self._replies, reply_w, self._buf = -1, -1, b""
        try:
            self._replies, reply_w = _pipe()
            self.pid = _start_python(
                ["-c", RUNNER_CODE, "--spare"],
                _clean_env(),
                stdin=(os.POSIX_SPAWN_DUP2, read_fd, 0),
                output=(os.POSIX_SPAWN_DUP2, reply_w, 1),
                errors=(os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            )
        except BaseException:
            self.close()
            raise
        finally:
            _close(read_fd)
            if reply_w >= 0:
                _close(reply_w)
        self.ready = False
        self.gone = False

    def _request(self, rt) -> bool:
        import json

        request = {"config": rt.config.path, "env": rt.spawner.runner_env(), "expect": repr(rt.config)}
        return _write_all(self._fd, (json.dumps(request) + "\n").encode())

    def offer(self, rt, timeout: float = 5.0) -> str | None:
        """If the spare has booted, ask it to dispatch for `rt` and wait for its
        reply: `taken JOB_ID` (it now runs that job), `idle` (it took nothing,
        and dispatches), or `mismatch` / `failed` (it did nothing). None when it
        is still booting (`ready` is False) or gone (`gone` is True). For all
        but `taken` and `idle`, the caller dispatches itself."""
        if not self.is_ready():
            return None
        if not self._request(rt):
            self.gone = True
            return None
        reply = self._read_line(timeout)
        if reply is None:
            self.gone = True  # it died, or hangs: a late claim of its own is harmless
        return reply

    def is_ready(self) -> bool:
        """Whether it has said `ready` (checked without waiting)."""
        if not self.ready:
            self.ready = self._read_line(0.0) == "ready"
        return self.ready

    def _read_line(self, timeout: float) -> str | None:
        import select

        deadline = time.monotonic() + timeout
        poll = select.poll()  # not select(): a busy caller's fds may be past 1024
        poll.register(self._replies, select.POLLIN)
        while b"\n" not in self._buf and not self.gone:
            if not poll.poll(max(0.0, deadline - time.monotonic()) * 1000):
                return None
            chunk = os.read(self._replies, 4096)
            self._buf += chunk
            self.gone = not chunk  # end of file: it has exited
        if b"\n" not in self._buf:
            return None
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace")


class ForkedRunner(_Piped):
    """`job-run`'s runner: a fork of job-run, made first thing, while it has one
    thread and only the runner's modules loaded. No interpreter boots for the
    job. While job-run reads its command line and checks the call (importing
    the job's module), the fork opens the store; job-run never opens it.

    Job-run sends it two lines (runner.forked): the config file with the
    config as job-run read it (`use_config`), so that it opens the store
    meanwhile; then the checked call (`record`). It inserts the row, sends its
    id before the commit and the row after it, and becomes the runner of the
    next due job. A refused launch only closes the pipe: the fork reads end of
    input and exits having done nothing.
    """

    def __init__(self) -> None:
        read_fd, self._fd = os.pipe2(os.O_CLOEXEC)
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
                os.close(self._fd)  # job-run's ends: with them open, it would never see end of input
                os.close(self._replies)
                requests, replies = _detach(read_fd, reply_w)
                from .runner import forked

                code = forked(requests, replies)
            except BaseException:  # noqa: BLE001, S110 - job-run records the job itself
                pass
            finally:
                os._exit(code)
        os.close(read_fd)
        os.close(reply_w)

    def use_config(self, config: Config) -> None:
        """Tell it the config (as read here), so it opens the store meanwhile."""
        import json

        line = json.dumps({"path": config.path, "expect": repr(config)}) + "\n"
        if not _write_all(self._fd, line.encode()):
            self.close()  # gone: record() says so

    def record(self, rt, request: dict) -> Job | None:
        """Have the fork record the checked job `request` (launcher.insert_job's
        arguments) in `rt`'s store and run the next due job. Returns the row;
        None if the fork did not record it (it is gone, or it reads the config
        differently): then the caller records and dispatches itself."""
        import json

        if self._fd < 0:
            return None
        try:
            sent = _write_all(self._fd, (json.dumps(request) + "\n").encode())
            with open(self._replies, "rb", closefd=False) as replies:
                inserted = replies.readline() if sent else b""
                row = replies.readline() if inserted.endswith(b"\n") else b""
        finally:
            self.close()
        if row.endswith(b"\n"):
            from .job import Job

            return Job.from_json(row)
        if not inserted.endswith(b"\n"):
            return None  # it inserted nothing: a row it had begun was rolled back with it
        # It died between its insert and its reply: the row is there if the
        # commit was, and then nobody runs it unless we dispatch. If the commit
        # was not, another launch may have the same id since: a row is ours only
        # if it is this call, at the start time we chose (a float of our clock).
        job = rt.store.get(int(inserted))
        values = request["values"]
        if job is None or (job.class_path, job.method, list(job.params), job.run_after) != (
            values["class"],
            values["method"],
            list(values["params"]),
            request["run_after"],
        ):
            return None
        from .launcher import dispatch

        dispatch(rt)
        return job

    def reap_when_done(self) -> None:
        """For a caller that outlives the launch (`job-run --wait`): collect the
        fork when it exits, rather than leave a zombie until the caller exits."""
        _reaper.track(self.pid)


def _detach(*pipes: int) -> list[int]:
    """In job-run's fork: fds 0 to 2 from and to /dev/null (whoever reads
    job-run's output must not wait for the fork), the `pipes` kept above them
    (job-run may have started with one of 0 to 2 closed, and a pipe took it),
    and no other fd job-run was started with (procs.close_inherited)."""
    import fcntl

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
    from .procs import close_inherited

    close_inherited()  # the pipes are not inheritable
    return kept


def fork_runner() -> ForkedRunner | None:
    """A ForkedRunner for `job-run`, or None where this process must not fork:
    it has a second thread (a fork copies only the calling one, so a lock
    another thread holds would stay held in the child), or the fork failed."""
    from .procs import single_threaded

    if not single_threaded():
        return None
    try:
        return ForkedRunner()
    except OSError:
        return None


# Every pipe end a Spare holds, so that a child forked meanwhile (by another
# thread, even while a Spare is being made) closes its copies: a copy of a
# request pipe's write end would keep the spare from seeing its caller exit.
# A fork waits for _pipe_lock (see the register_at_fork below), so it never
# falls between making or closing a pipe end and noting it here.
_pipe_ends: set[int] = set()
_pipe_lock = threading.Lock()


def _pipe() -> tuple[int, int]:
    with _pipe_lock:
        ends = os.pipe2(os.O_CLOEXEC)
        _pipe_ends.update(ends)
    return ends


def _close(fd: int) -> None:
    with _pipe_lock:
        _pipe_ends.discard(fd)
        os.close(fd)


def _write_all(fd: int, data: bytes) -> bool:
    """Write all of `data` to pipe `fd`; False if the reader is gone. SIGPIPE is
    blocked meanwhile, for a caller that has it at SIG_DFL (Python ignores it,
    but an embedding program or a CLI idiom may not): a spare that has exited
    must cost the caller a fallback, not its life."""
    import signal

    pipe = {signal.SIGPIPE}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, pipe)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return True
    except OSError:
        if signal.SIGPIPE not in old and signal.SIGPIPE in signal.sigpending():
            signal.sigwait(pipe)  # take back the one our write raised, while it is blocked
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


# The Python API's warm spare: one per process, made after a launch, used by
# the next. A forked child gets none of its parent's (see _after_fork_in_child).
# The reaper tracks a spare from its start, so one that exits idle (after
# SPARE_IDLE) leaves no zombie behind.
_warm: Spare | None = None
_warm_lock = threading.Lock()
_launches = 0  # through the API, by this process


def dispatch_through_spare(rt):
    """Let this process's warm spare dispatch for `rt`. Returns the id of the job
    it took, 0 if it took none (and dispatches), or None if there is no spare
    ready, or it could not serve: then dispatch as usual."""
    global _warm
    with _warm_lock:
        if _warm is None:
            return None
        try:
            reply = _warm.offer(rt)
        except Exception:  # noqa: BLE001 - a spare must never cost a launch its dispatch
            _give_up()
            return None
        except BaseException:
            _give_up()  # e.g. Ctrl-C mid-offer: a stale reply must not meet the next launch
            raise
        if reply == "idle":
            return 0
        if reply in (None, "mismatch") and not _warm.gone:
            return None  # still booting, or the caller's config is not the file's: it stays
        taken = int(reply.split()[1]) if reply and reply.startswith("taken ") else None
        _give_up()  # it runs a job now, or it is gone, or it failed
        return taken


def _give_up() -> None:
    global _warm
    _warm.close()  # tracked since its start: reaped once it exits (a runner now: when its jobs are done)
    _warm = None


def warm_spare_pid(*, ready: bool = False) -> int | None:
    """The pid of this process's warm spare (with `ready`, only once it has booted)."""
    with _warm_lock:
        if _warm is None or _warm.gone or (ready and not _warm.is_ready()):
            return None
        return _warm.pid


def keep_warm_spare() -> None:
    """Start this process's warm spare if it has none, from its second launch
    on: a script that launches one job and exits has no use for one."""
    global _warm, _launches
    with _warm_lock:
        _launches += 1
        if _warm is None and _launches >= 2:
            try:
                _warm = Spare()
            except OSError:
                pass  # no spare: the next launch starts its runner as usual
            else:
                _reaper.track(_warm.pid)  # an idle spare that exits is reaped at once


def _after_fork_in_child() -> None:
    """A forked child (an attempt, or a caller's own child) starts with no spare
    and nothing to reap: those are its parent's."""
    global _warm, _warm_lock, _launches, _pipe_lock
    _pipe_lock = threading.Lock()  # the parent's is held, by the fork
    _warm_lock = threading.Lock()
    _launches = 0
    _warm = None
    for fd in _pipe_ends:  # our copies; the parent still has its spare
        try:
            os.close(fd)
        except OSError:
            pass
    _pipe_ends.clear()
    _reaper.__init__()


def _start_python(
    args: list[str],
    env: dict[str, str],
    *,
    stdin: tuple,
    output: tuple,
    errors: tuple | None = None,
    more: list[tuple] = (),
) -> int:
    """posix_spawn this interpreter with `args` in a session of its own, no
    shell: `stdin`, `output` and `errors` are file actions that set up fds 0, 1
    and 2 (by default, fd 2 is made a copy of 1); `more` come after them."""
    return os.posix_spawn(
        sys.executable,
        [sys.executable, *args],
        env,
        file_actions=[stdin, output, errors or (os.POSIX_SPAWN_DUP2, 1, 2), *more],
        setsid=True,
    )


def _clean_env() -> dict[str, str]:
    """This process's environment, less what a runner must not inherit."""
    env = dict(os.environ)
    env.pop(LOCK_FD_ENV, None)
    for name in PRIVATE_ENV:
        env.pop(name, None)
    return env


class _Reaper:
    """Waits for the processes this process started, so a long-lived caller (the
    dashboard) never collects <defunct> children. A short-lived caller (the
    CLI) exits first and the runners are reparented; the thread dies with it.

    A runner forks its attempts, and a process that forks must not have threads
    (the child would inherit locks held by them): it calls `reap_in_loop()` and
    then `reap()` from its own wait loop instead."""

    def __init__(self) -> None:
        self._pids: set[int] = set()
        self._lock = threading.Lock()
        self._running = False
        self._threaded = True

    def reap_in_loop(self) -> None:
        """From now on this process reaps by calling reap() itself: no thread."""
        self._threaded = False

    def track(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
            if self._threaded and not self._running:
                self._running = True
                threading.Thread(target=self._run, name="bgjobs-reaper", daemon=True).start()

    def reap(self) -> bool:
        """Collect the tracked children that have exited; True if none is left."""
        with self._lock:
            for pid in list(self._pids):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid  # reaped elsewhere
                if done:
                    self._pids.discard(pid)
            return not self._pids

    def _run(self) -> None:
        while True:
            if self.reap():
                with self._lock:
                    if not self._pids:
                        self._running = False
                        return
            time.sleep(0.2)


_reaper = _Reaper()
reap_in_loop = _reaper.reap_in_loop
reap = _reaper.reap


def tracked_pids() -> set[int]:
    """The processes this process started and has not reaped yet."""
    with _reaper._lock:
        return set(_reaper._pids)


def forget(pid: int) -> None:
    """`pid` was reaped elsewhere (a runner reaping its re-parented orphans)."""
    with _reaper._lock:
        _reaper._pids.discard(pid)


os.register_at_fork(
    before=lambda: _pipe_lock.acquire(),
    after_in_parent=lambda: _pipe_lock.release(),
    after_in_child=_after_fork_in_child,
)
