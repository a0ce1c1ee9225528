"""Executor: start runner processes, and the waker. On one host, posix_spawn.

`LocalExecutor` starts a runner (`python -c RUNNER_CODE ID`) as its own session,
with no shell, stdin from /dev/null, and the job's liveness token (its lock's
descriptor, bgjobs.liveness) handed over as an inherited descriptor, so the lock
is held without a gap from claim to runner exit. posix_spawn: no copy of the
caller's memory. `-c` rather than `-m bgjobs.runner`: runpy would be one more
thing every runner loads.

This module imports nothing above itself: the code a runner runs is named in
a string, and started in a new interpreter. The two other ways a runner
starts (the API's warm spare, job-run's fork) are bgjobs.spare and bgjobs.fork.
It also keeps the reaper: a long-lived caller (the dashboard) never collects
<defunct> children.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from .config import Config
from .liveness import HANDOVER_ENV

RUNNER_CODE = "import sys; from bgjobs.runner import main; sys.exit(main())"
WAKER_CODE = "import sys; from bgjobs.waker import main; sys.exit(main())"
# Secrets of the caller that a job has no business seeing.
PRIVATE_ENV = ("BGJOBS_DASHBOARD_PASSWORD",)


class LocalExecutor:
    """Starts each job's runner, and the waker, as detached processes on this host."""

    dispatches_here = True  # a dispatch claims due jobs and starts their runners itself

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

    def runner_env(self, token: int | None = None) -> dict[str, str]:
        """The environment of a runner: the caller's, less its secrets, with the
        project's settings, and the descriptor of a handed-over lock."""
        env = clean_env()
        env.update(self.config_env())
        if token is not None:
            env[HANDOVER_ENV] = str(token)
        return env

    def start_runner(self, job_id: int, token: int) -> int:
        """Start the runner of claimed job `job_id`, handing it liveness `token`
        (which the caller still closes); returns its pid. Raises OSError when
        it cannot be started (its output file cannot be opened, no process)."""
        out = self.config.output_path(job_id)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        return self._spawn(["-c", RUNNER_CODE, str(int(job_id))], out, token)

    def start_waker(self, token: int) -> int:
        """Start the waker, handing it the waker's lock `token`."""
        os.makedirs(self.config.state_dir, exist_ok=True)
        return self._spawn(["-c", WAKER_CODE], os.path.join(self.config.state_dir, "waker.out"), token)

    def _spawn(self, args: list[str], output, token: int) -> int:
        out_fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # The lock reaches the child by a dup2 in the child alone: never by making
        # our descriptor inheritable, which any process another thread spawned
        # meanwhile would inherit (and hold, and so keep that job "alive").
        target = 3 if token != 3 else 4
        try:
            pid = start_python(
                args,
                self.runner_env(target),
                stdin=(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                output=(os.POSIX_SPAWN_DUP2, out_fd, 1),
                more=[(os.POSIX_SPAWN_DUP2, token, target)],
            )
        finally:
            os.close(out_fd)
        track(pid)
        return pid


def start_python(
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


def clean_env() -> dict[str, str]:
    """This process's environment, less what a runner must not inherit."""
    env = dict(os.environ)
    env.pop(HANDOVER_ENV, None)
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
track = _reaper.track


def tracked_pids() -> set[int]:
    """The processes this process started and has not reaped yet."""
    with _reaper._lock:
        return set(_reaper._pids)


def forget(pid: int) -> None:
    """`pid` was reaped elsewhere (a runner reaping its re-parented orphans)."""
    with _reaper._lock:
        _reaper._pids.discard(pid)


def _after_fork_in_child() -> None:
    """A forked child (an attempt, or a caller's own child) has nothing to reap:
    those processes are its parent's."""
    _reaper.__init__()


os.register_at_fork(after_in_child=_after_fork_in_child)
