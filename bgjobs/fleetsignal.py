"""The signaller across hosts: a cancel reaches a job's runner wherever it runs.

A pid means nothing on another host, so a job's processes are only ever
signalled by its own host. For a job on this host the signaller is today's,
pid-verified (bgjobs.signaller). For a job on another host, the cancel flag
itself is the message: the store sends a NOTIFY on `bgjobs_cancel` in the
same transaction as the flag, the runner listens for it on its own connection,
and its poll of its row every second is the backstop. The runner then takes
today's SIGTERM, grace, SIGKILL path. A runner that misses its grace is
force-stopped by its own host's sweep (reconcile), with today's code.
"""

from __future__ import annotations

from .job import Job
from .signaller import PidSignaller

CANCEL_CHANNEL = "bgjobs_cancel"


class FleetSignaller:
    """Signals the jobs of `host`; leaves other hosts' jobs to them."""

    def __init__(self, host: str, connect=None) -> None:
        self.host = host
        self.local = PidSignaller()
        self._connect = connect  # a connection of its own, to LISTEN on (runners only)
        self._conn = None
        self._heard: set[int] = set()

    def listen(self, job_id: int) -> int | None:
        """The descriptor of a connection that LISTENs on CANCEL_CHANNEL (opened
        on first use): readable when a cancel's NOTIFY may have come."""
        if self._connect is None:
            return None
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = self._connect()
                self._conn.execute(f"LISTEN {CANCEL_CHANNEL}")
            return self._conn.fileno()
        except Exception:  # noqa: BLE001 - the runner's poll of its row is the backstop
            self._conn = None
            return None

    def heard(self, job_id: int) -> bool:
        """Whether a cancel of `job_id` has been announced (reads what came)."""
        if self._conn is None:
            return False
        try:
            for note in self._conn.notifies(timeout=0, stop_after=100):
                if note.payload.isdigit():
                    self._heard.add(int(note.payload))
        except Exception:  # noqa: BLE001 - as above
            self._conn = None
        if job_id in self._heard:
            self._heard.discard(job_id)
            return True
        return False

    def _mine(self, job: Job) -> bool:
        return getattr(job, "host", None) in (None, self.host)

    def request_stop(self, job: Job) -> bool:
        """SIGTERM the runner if it is on this host; for another host's job the
        flag's NOTIFY has told it already (True: the request is on its way)."""
        if self._mine(job):
            return self.local.request_stop(job)
        return True

    def runner_alive(self, job: Job) -> bool:
        """For another host's job, liveness (its advisory lock) decides, not a pid."""
        return self.local.runner_alive(job) if self._mine(job) else True

    def force_stop(self, job: Job) -> None:
        if self._mine(job):
            self.local.force_stop(job)

    def stop_leftovers(self, job: Job) -> None:
        if self._mine(job):
            self.local.stop_leftovers(job)
