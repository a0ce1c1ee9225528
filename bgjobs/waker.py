"""The waker (`python -c WAKER_CODE`, see executor.py): the one timer, alive only while jobs are active.

Queued rows need someone to start them when their time comes (a --delay, a
retry's backoff, a slot freed by a runner that was killed). The waker holds
the waker's liveness token (on one host, `state_dir/waker.lock`), so at most one runs per store. It dispatches when the
next job is due, and at least once a second while jobs are active, then exits
as soon as no job is active. Any dispatch starts a new one when needed.
"""

from __future__ import annotations

import os
import sys
import time

from . import procs
from .launcher import dispatch
from .wiring import wire

TICK = 1.0  # seconds; the longest a due job or a lost runner waits for us


def main() -> int:
    rt = wire()
    token = rt.liveness.inherited()  # first: its descriptor is made not inheritable
    procs.close_inherited()  # what its caller's process had open for others
    os.chdir(rt.config.root)
    if token is None:
        token = rt.liveness.take_waker()
        if token is None:
            return 0
    store = rt.store
    while True:
        while store.has_active():
            nxt = store.next_due()
            now = time.time()
            if nxt is not None and nxt <= now:
                dispatch_quietly(rt)
                nxt = store.next_due()
                if nxt is not None and nxt <= time.time():
                    # Due, but no free slot: a runner that finishes takes it
                    # itself. Racing it for the slot every few ms would start a
                    # fresh interpreter where a running one was about to go on.
                    nxt = None
            pause = TICK if nxt is None else min(TICK, max(0.005, nxt - time.time()))
            time.sleep(pause)
            if nxt is None or nxt > time.time() + TICK / 2:
                dispatch_quietly(rt)  # a periodic reconcile, for lost runners
        rt.liveness.release_waker(token)
        # A job added after our last look but before the unlock saw our lock
        # held and counted on us; look once more before leaving.
        if not store.has_active():
            return 0
        token = rt.liveness.take_waker()
        if token is None:
            return 0  # another waker took over


def dispatch_quietly(rt) -> None:
    try:
        dispatch(rt)
    except Exception as exc:  # noqa: BLE001 - a busy database must not end the timer
        print(f"bgjobs waker: dispatch failed: {exc}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
