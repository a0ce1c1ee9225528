"""Starting a runner process: the seam where a fleet implementation would differ.

`LocalSpawner` starts `python -m bgjobs.runner ID` as its own session, with no
shell, stdin from /dev/null, and the job's lock handed over as an inherited
descriptor, so the lock is held without a gap from claim to runner exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from .config import Config

LOCK_FD_ENV = "BGJOBS_LOCK_FD"


class LocalSpawner:
    """Runs each job's runner as a detached process on this machine."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def runner_env(self, lock_fd: int | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["BGJOBS_CONFIG"] = str(self.config.path)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.config.root), env.get("PYTHONPATH")) if p)
        env.pop(LOCK_FD_ENV, None)
        if lock_fd is not None:
            env[LOCK_FD_ENV] = str(lock_fd)
        return env

    def spawn_runner(self, job_id: int, lock_fd: int) -> int:
        """Start the runner for a claimed job; returns its pid."""
        out = self.config.output_path(job_id)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "ab") as output:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bgjobs.runner", str(int(job_id))],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                cwd=self.config.root,
                env=self.runner_env(lock_fd),
                pass_fds=(lock_fd,),
                start_new_session=True,
                close_fds=True,
            )
        _reaper.track(proc)
        return proc.pid

    def spawn_waker(self, lock_fd: int) -> int:
        log = self.config.state_dir / "waker.out"
        with open(log, "ab") as output:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bgjobs.waker"],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                cwd=self.config.root,
                env=self.runner_env(lock_fd),
                pass_fds=(lock_fd,),
                start_new_session=True,
                close_fds=True,
            )
        _reaper.track(proc)
        return proc.pid


class _Reaper:
    """Waits for the runners this process started, so a long-lived caller (the
    dashboard) never collects <defunct> children. A short-lived caller (the
    CLI) exits first and the runners are reparented; no thread outlives need."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: list[subprocess.Popen] = []
        self._thread: threading.Thread | None = None

    def track(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.append(proc)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="bgjobs-reaper", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._procs = [p for p in self._procs if p.poll() is None]
                if not self._procs:
                    self._thread = None
                    return
            time.sleep(0.2)

    def pending(self) -> int:
        with self._lock:
            return sum(1 for p in self._procs if p.poll() is None)


_reaper = _Reaper()
