"""job-worker's loop: Procrastinate's worker for this host, plus its sweep.

Wake-ups come through Procrastinate (bgjobs.fleet); each starts runners on
this host for due jobs, up to `worker_slots`. A thread sweeps every SWEEP
seconds: it upserts this host's row (name, pid, slots, running, version and a
fingerprint of the allowlist), settles lost runners of any host, and starts
runners here for due jobs a wake-up may have missed. Runners are detached
processes: a worker that stops (SIGTERM) or dies (SIGKILL) leaves them
running, and another host's sweep takes up what it would have done.
"""

from __future__ import annotations

import sys
import threading
import time

from . import executor, fleet
from .errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .seams import Wiring

SWEEP = 2.0  # seconds between sweeps (and heartbeats)


def run(rt: Wiring) -> int:
    """Serve wake-ups until SIGTERM or SIGINT; returns the exit code."""
    if rt.config.executor != "procrastinate":
        raise ConfigError(
            f"{rt.config.path}: job-worker runs a host of a fleet: set store: postgresql://... "
            "and executor: procrastinate in config.yaml"
        )
    started, fingerprint = time.time(), fleet.config_fingerprint(rt.config)
    stop = threading.Event()
    claimers = fleet.Claimers(rt)
    lock = threading.Lock()  # one start of runners at a time in this process

    def on_wake(job_id: int | None) -> None:
        with lock:
            fleet.start_claimers(rt, claimers)

    def sweeper() -> None:
        while not stop.wait(SWEEP):
            try:
                executor.reap()
                fleet.heartbeat(rt, started, fingerprint)
                with lock:
                    fleet.sweep(rt, claimers)
            except Exception as exc:  # noqa: BLE001 - a sweep that fails is tried again next tick
                print(f"bgjobs worker: sweep failed: {exc}", file=sys.stderr, flush=True)

    fleet.heartbeat(rt, started, fingerprint)
    with lock:
        fleet.sweep(rt, claimers)
    thread = threading.Thread(target=sweeper, name="bgjobs-sweep", daemon=True)
    thread.start()
    print(
        f"bgjobs worker {rt.config.host}: {rt.config.worker_slots} slots, store {rt.store.path}", flush=True
    )
    try:
        app = fleet.procrastinate_app(rt.config.store, on_wake)
        app.run_worker(queues=[fleet.QUEUE], concurrency=1, install_signal_handlers=True, name=rt.config.host)
    finally:
        stop.set()
        with lock:
            claimers.close()
    return 0
