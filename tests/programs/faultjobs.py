"""Jobs that cause faults on purpose, for tests/test_faults_runner.py.

Each test project gets a copy of this file as `faultjobs.py` and allowlists
`faultjobs.Faults` (and `faultjobs.KeepsChildren`). Files the jobs write go to
$BGJOBS_TEST_DIR, the project's root.
"""

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ESCAPEE = """
import os, sys, time
if os.fork():
    os._exit(0)  # the parent exits: the child is orphaned, and re-parented
os.setsid()  # ... and out of the attempt's process group
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(float(sys.argv[2]))
"""


def _out(name: str) -> Path:
    return Path(os.environ["BGJOBS_TEST_DIR"]) / name


class Faults:
    def hello(self, text: str = "hello") -> str:
        print(text, flush=True)
        return text

    def mark(self, name: str) -> str:
        """Append this attempt's pid to `name`: one line per run."""
        with open(_out(name), "a") as f:
            f.write(f"{os.getpid()}\n")
        return "marked"

    def starve_runner(self, name: str) -> str:
        """Run once (a line in `name`), then leave the runner unable to grow any
        file (RLIMIT_FSIZE 1 byte): its store writes fail until the test lifts it."""
        with open(_out(name), "a") as f:
            f.write(f"{os.getppid()} {os.getpid()}\n")
        resource.prlimit(os.getppid(), resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
        return "done"

    def escape(self, name: str, then_sleep: float = 0.0) -> str:
        """Leave a process behind that has left the attempt's process group
        (setsid) and whose parent has exited; its pid goes to `name`."""
        subprocess.run([sys.executable, "-c", ESCAPEE, str(_out(name)), "300"], check=True)
        deadline = time.monotonic() + 20
        while not _out(name).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(then_sleep)
        return "escaped"

    def big_result(self, size: int) -> str:
        return "x" * size

    def chatty(self, lines: int) -> str:
        print("FIRST LINE", flush=True)
        for i in range(lines):
            print(f"line {i:08d} " + "y" * 100)
        print("LAST LINE", flush=True)
        return "said"


class KeepsChildren(Faults):
    keep_descendants = True  # what it starts is meant to outlive the attempt
