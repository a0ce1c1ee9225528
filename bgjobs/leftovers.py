"""What an attempt leaves running, and stopping it.

At the end of every attempt (success, failure, cancel, timeout) its runner
stops what remains: the rest of the attempt's process group, and the
processes that left the group (setsid, setpgid) and were orphaned. The runner
is a child subreaper (procs.become_subreaper), so those are re-parented to
it rather than to init, and stay in reach. A class that means its processes
to outlive an attempt sets `keep_descendants = True` (see bgjobs.attempt).
"""

from __future__ import annotations

import os
import signal
import time

from . import executor, procs

UNKILLABLE_AFTER = 5.0  # seconds past SIGKILL before a process (in uninterruptible sleep) is left


def stop(pgid: int, grace: float) -> None:
    """SIGTERM what is left of process group `pgid` and every orphan of ours,
    then SIGKILL once `grace` seconds have passed. The group is ours while any
    member lives (the kernel does not reuse a group's id); an orphan is our
    unreaped child, so its pid is ours too, and each signal is verified."""
    deadline, sig = time.monotonic() + grace, signal.SIGTERM
    while True:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        found = orphans()
        for pid, started in found:
            procs.signal_verified(pid, started, sig, group=False)
        if not found and not procs.group_alive(pgid):
            return
        if sig == signal.SIGKILL and time.monotonic() > deadline + UNKILLABLE_AFTER:
            return  # unkillable: left, as the docs say
        time.sleep(0.02)
        if sig == signal.SIGTERM and time.monotonic() >= deadline:
            sig = signal.SIGKILL


def orphans() -> list[tuple[int, int]]:
    """(pid, start time) of our living children that we did not start
    ourselves: a job's processes re-parented to us. Exited ones are reaped."""
    if not procs.has_children():
        return []
    mine = executor.tracked_pids()
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        executor.forget(pid)  # one of ours, if it was: reaped now
    return [(pid, started) for pid, started in procs.children() if pid not in mine]
