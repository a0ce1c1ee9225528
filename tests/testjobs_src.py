"""Source of the job module that test projects get as `testjobs/tasks.py`."""

SOURCE = r"""
import asyncio
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bgjobs


def _out(name):
    return Path(os.environ.get("BGJOBS_TEST_DIR", ".")) / name


class Base:
    def inherited(self) -> str:
        return "from base"


class Tasks(Base):
    not_callable = 42

    def ok(self, value: str = "done") -> str:
        return value

    def echo(self, path: str, *rest) -> None:
        Path(path).write_text(json.dumps(list(rest)))

    def typed(self, path: str, n: int, x: float, flag: bool, items: list, opts: dict) -> None:
        Path(path).write_text(json.dumps({"n": n, "x": x, "flag": flag, "items": items, "opts": opts,
                                          "types": [type(v).__name__ for v in (n, x, flag, items, opts)]}))

    def sleep(self, seconds: float = 600.0) -> str:
        time.sleep(seconds)
        return "slept"

    def record_start(self, path: str, seconds: float = 0.0) -> None:
        job = bgjobs.current_job()
        with open(path, "a") as f:
            f.write(json.dumps({"id": job.id, "t": time.time(), "nice": os.getpriority(os.PRIO_PROCESS, 0)}) + "\n")
        time.sleep(seconds)

    def record_span(self, path: str, seconds: float = 0.0) -> None:
        # When this job ran, as its own clock saw it: one line, written as it ends.
        start = time.time()
        time.sleep(seconds)
        line = json.dumps({"id": bgjobs.current_job().id, "start": start, "end": time.time()}) + "\n"
        with open(path, "a") as f:
            f.write(line)

    def dump_env(self, path: str) -> None:
        Path(path).write_text(json.dumps(sorted(os.environ)))

    def dump_proc_environ(self, path: str) -> None:
        # The environment as /proc shows it (and ps e), of this attempt and its runner.
        seen = {}
        for who, pid in (("attempt", os.getpid()), ("runner", os.getppid())):
            with open(f"/proc/{pid}/environ", "rb") as f:
                seen[who] = f.read().decode(errors="replace")
        Path(path).write_text(json.dumps(seen))

    def fail(self, message: str = "boom") -> None:
        raise ValueError(message)

    def fail_then_ok(self, marker: str) -> str:
        p = Path(marker)
        n = int(p.read_text()) if p.exists() else 0
        p.write_text(str(n + 1))
        if n == 0:
            raise RuntimeError("first attempt fails")
        return "ok on retry"

    def exit_hard(self, code: int = 3) -> None:
        os._exit(code)

    def kill_self(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def segfault(self) -> None:
        ctypes.string_at(0)

    def spawn_sleep(self, pidfile: str) -> None:
        proc = subprocess.Popen(["sleep", "600"])
        Path(pidfile).write_text(str(proc.pid))
        time.sleep(600)

    def ignore_term(self, readyfile: str) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        Path(readyfile).write_text("ready")
        time.sleep(600)

    def swallow(self, readyfile: str, sentinel: str) -> None:
        try:
            Path(readyfile).write_text("ready")
            while True:
                try:
                    time.sleep(600)
                except Exception:
                    pass
        finally:
            Path(sentinel).write_text("finally ran")

    def progress(self, readyfile: str) -> None:
        bgjobs.progress(0.4, "step 2 of 5")
        bgjobs.context.flush_progress()
        Path(readyfile).write_text("ready")
        time.sleep(600)

    def print_lines(self, n: int = 3) -> None:
        for i in range(n):
            print(f"line {i}")
        print("to stderr", file=sys.stderr)

    async def async_ok(self, value: int) -> int:
        await asyncio.sleep(0.01)
        return value * 2

    def _private(self) -> None:
        pass

    @staticmethod
    def static_ok() -> str:
        return "static"


class Cooperative:
    cooperative_cancel = True

    def loop(self, readyfile: str, sentinel: str) -> None:
        Path(readyfile).write_text("ready")
        while not bgjobs.cancel_requested():
            time.sleep(0.01)
        Path(sentinel).write_text("stopped cleanly")
        raise bgjobs.JobCancelled("stopped")


class NeedsArgs:
    def __init__(self, x):
        self.x = x

    def run(self) -> None:
        pass


class NotListed:
    def run(self) -> None:
        pass
"""
