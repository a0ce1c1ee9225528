"""The events seam across hosts: each host's two JSON Lines files, as on one
host (with `host` in every record), and every record also a row of the
store's `events` table, so that any host can read the fleet's history.

A transition's record is written in the same transaction as the transition
(bgjobs.lifecycle runs both inside `store.unit()`): the table never says a
job moved that did not, nor misses one that did.
"""

from __future__ import annotations

from .eventlog import EventLog


class FleetEvents:
    """Writes each record to this host's files and to the store's events table."""

    def __init__(self, files: EventLog, store) -> None:
        self.files = files
        self.store = store

    def emit(self, event: str, **kwargs) -> dict:
        record = self.files.emit(event, **kwargs)
        self.store.insert_event(record)
        return record

    def close(self) -> None:
        self.files.close()

    def __getattr__(self, name: str):
        return getattr(self.files, name)  # log_dir, write, ... as the files have them


class EventsTail:
    """The fleet's records from the events table, read incrementally by id (as
    bgjobs.logread.RecordTail reads a file by offset): each `poll()` returns the
    records written since the last. `errors`: only ERROR records."""

    bad_lines = 0  # rows are whole records; kept for the file tail's callers

    def __init__(self, store, *, job_id: int | None = None, errors: bool = False) -> None:
        self.store = store
        self.job_id = job_id
        self.errors = errors
        self.last_id = 0

    def poll(self) -> list[dict]:
        rows = self.store.events_after(self.last_id, job_id=self.job_id)
        if rows:
            self.last_id = rows[-1][0]
        return [record for _, record in rows if not self.errors or record.get("level") == "ERROR"]

    def close(self) -> None:
        pass
