"""Starting a runner process: the seam where a fleet implementation would differ.

`LocalSpawner` starts the runner (`python -c RUNNER_CODE ID`) as its own session,
with no shell, stdin from /dev/null, and the job's lock handed over as an
inherited descriptor, so the lock is held without a gap from claim to runner exit.
`-c` rather than `-m bgjobs.runner`: runpy costs every runner about 14 ms (measured
in bench_launch.py), more than half of what the runner's own imports cost.
It uses posix_spawn (no copy of the caller's memory, no subprocess import):
`job-run` pays for it on every launch.
"""

from __future__ import annotations

import _thread
import os
import sys
import time

TYPE_CHECKING = False  # typing itself is kept out of the start-up path
if TYPE_CHECKING:
    from .config import Config

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

    def spawn_waker(self, lock_fd: int) -> int:
        os.makedirs(self.config.state_dir, exist_ok=True)
        return self._spawn(["-c", WAKER_CODE], os.path.join(self.config.state_dir, "waker.out"), lock_fd)

    def _spawn(self, args: list[str], output, lock_fd: int) -> int:
        out_fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.set_inheritable(lock_fd, True)
        try:
            pid = _start_python(
                args,
                self.runner_env(lock_fd),
                stdin=(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                output=(os.POSIX_SPAWN_DUP2, out_fd, 1),
            )
        finally:
            os.set_inheritable(lock_fd, False)
            os.close(out_fd)
        _reaper.track(pid)
        return pid


class Spare:
    """A runner started before its job is recorded (see runner._spare): `job-run`
    starts one first thing, so the runner's interpreter boots while job-run
    validates and records the job, on another CPU. `hand_over` gives it the
    store; dropping it (or exiting) without that makes it exit unused."""

    def __init__(self) -> None:
        read_fd, self._fd = os.pipe()
        try:
            # Until it has a job (and so an output file), it has nothing to say.
            self.pid = _start_python(
                ["-c", RUNNER_CODE, "--spare"],
                _clean_env(),
                stdin=(os.POSIX_SPAWN_DUP2, read_fd, 0),
                output=(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            )
        except BaseException:
            os.close(self._fd)
            raise
        finally:
            os.close(read_fd)

    def hand_over(self, rt) -> None:
        """Have the spare claim the next due job of `rt`'s store (and dispatch
        the rest once that job runs), as `dispatch(rt)` would. If the spare is
        gone, dispatch here instead."""
        try:
            os.write(self._fd, os.fsencode(rt.config.path) + b"\n")
        except OSError:
            from .launcher import dispatch

            dispatch(rt)
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _start_python(args: list[str], env: dict[str, str], *, stdin: tuple, output: tuple) -> int:
    """posix_spawn this interpreter with `args` in a session of its own, no
    shell: `stdin` and `output` are file actions that set up fds 0 and 1 (and
    fd 2 is made a copy of 1)."""
    return os.posix_spawn(
        sys.executable,
        [sys.executable, *args],
        env,
        file_actions=[stdin, output, (os.POSIX_SPAWN_DUP2, 1, 2)],
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
        self._lock = _thread.allocate_lock()  # threading is imported only if a thread is needed
        self._running = False
        self._threaded = True

    def reap_in_loop(self) -> None:
        """From now on this process reaps by calling reap() itself: no thread."""
        self._threaded = False

    def track(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
            if self._threaded and not self._running:
                import threading

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
