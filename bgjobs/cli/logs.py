"""job-logs [ID]: print log records as lines or JSON, and follow them like tail -f.

Reads with bgjobs.logread (plain json, no pandas), so it starts as fast as job-run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from ..errors import EXIT_OK, NoSuchJob
from ..eventlog import json_line
from . import null_for_closed_streams
from .common import Command, printable, run

TYPE_CHECKING = False  # typing itself is kept out of the start-up path
if TYPE_CHECKING:
    from datetime import datetime

EXAMPLES = """examples:
  job-logs                    every record of the main log, oldest first
  job-logs 12                 the records of job 12
  job-logs 12 --follow        ... and new ones as they come (Ctrl-C stops)
  job-logs --errors --since 2h
  job-logs --level warning --since 2026-11-28T09:00:00Z --json
"""


def build_parser() -> Command:
    p = Command(
        prog="job-logs",
        description="Print the records of the job log (or the errors log), oldest first:\n"
        "time (UTC), level, job, event and message, with tracebacks indented below.\n"
        "Rotated backups (background_jobs.log.N) are read too.\n\n" + EXAMPLES,
    )
    p.add_argument("job_id", metavar="ID", type=int, nargs="?", help="only the records of this job")
    p.add_argument("--errors", action="store_true", help="read the errors log (ERROR records only)")
    p.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="after the records so far, print new ones as they are written, across "
        "rotation, until Ctrl-C (exit 130) or SIGTERM (exit 143)",
    )
    p.add_argument(
        "--since",
        metavar="T",
        help="only records at or after T: an ISO time (UTC unless it has an offset) "
        "or a duration back from now, like 90s, 10m, 2h, 1d",
    )
    p.add_argument("--level", metavar="L", help="only records at level L or above: INFO, WARNING, ERROR")
    p.add_argument("--json", action="store_true", help="print each record as one line of JSON")
    p.add_argument(
        "--interval",
        type=float,
        default=0.25,
        metavar="SECONDS",
        help="how often --follow looks for new records (default 0.25)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    null_for_closed_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..logread import parse_level, parse_since

    since = level = None
    try:
        since = parse_since(args.since) if args.since is not None else None
    except ValueError as exc:
        parser.error(f"--since: {exc}")
    try:
        level = parse_level(args.level) if args.level is not None else None
    except ValueError as exc:
        parser.error(f"--level: {exc}")
    if not 0 < args.interval < float("inf"):  # also refuses nan, which would poll without a pause
        parser.error(f"--interval must be a positive, finite number of seconds; got {args.interval!r}")

    def body() -> int:
        from ..config import load_config
        from ..logread import RecordTail, job_lines

        config = load_config(args.config)
        path = config.errors_log if args.errors else config.main_log
        show = Printer(as_json=args.json, job_id=args.job_id, since=since, min_level=level)
        if config.executor == "procrastinate":  # fleet mode: every host's records, from the store
            from ..fleetevents import EventsTail
            from ..wiring import wire

            rt = wire(config)
            path = f"the events table of {rt.store.path}"
            tail = EventsTail(rt.store, job_id=args.job_id, errors=args.errors)
        else:
            tail = RecordTail(path, select=None if args.job_id is None else job_lines(args.job_id))
        try:
            records = tail.poll()
            if args.job_id is not None and not any(r.get("job_id") == args.job_id for r in records):
                if not _job_exists(config, args.job_id):
                    raise NoSuchJob(args.job_id)
                if not args.follow:
                    print(f"job {args.job_id} has no records in {printable(path)}", file=sys.stderr)
            show(records)
            if args.follow:
                return follow(tail, show, args.interval)
            return EXIT_OK
        except BrokenPipeError:
            # The reader went away (job-logs | head): stop quietly.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        finally:
            if tail.bad_lines:
                print(f"job-logs: skipped {tail.bad_lines} bad line(s) in {printable(path)}", file=sys.stderr)
            tail.close()

    return run(body)


class Printer:
    """Prints the records that pass the filters, as text or JSON lines."""

    def __init__(
        self, *, as_json: bool, job_id: int | None, since: datetime | None, min_level: str | None
    ) -> None:
        from ..logread import matches

        self.as_json = as_json
        self.filters = dict(job_id=job_id, since=since, min_level=min_level)
        self.matches = matches

    def __call__(self, records: list[dict]) -> None:
        out = [self.format(r) for r in records if self.matches(r, **self.filters)]
        if out:
            sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()

    def format(self, record: dict) -> str:
        if self.as_json:
            return json_line(json.dumps(record, ensure_ascii=False))
        return format_record(record)


def format_record(record: dict) -> str:
    """One record as a line (time, level, job, event, message), then its
    traceback indented below. Every field is shown with its control characters
    escaped (common.printable): a record stays one line and sends the terminal
    nothing but text; only the traceback keeps its own newlines, each of its
    lines indented below the record."""
    job_id = record.get("job_id")
    ts, level, event = (printable(record.get(key) or "-") for key in ("ts", "level", "event"))
    job = printable(f"job {job_id}") if job_id is not None else "-"
    line = f"{ts:<24} {level:<7} {job:>8}  {event:<16} {printable(record.get('message') or '')}"
    traceback = record.get("traceback")
    if isinstance(traceback, str) and traceback.strip():
        # Split at newlines only: splitlines() also splits at \r, \f, \x1c ...,
        # which are escaped in place instead.
        line += "\n" + "\n".join("    " + printable(t) for t in traceback.rstrip("\n").split("\n"))
    return line.rstrip(" ")


def follow(tail, show: Printer, interval: float) -> int:
    """Poll `tail` (a logread.RecordTail) and print what is new until SIGINT or
    SIGTERM; the exit code is 128 + the signal number (130 for Ctrl-C)."""
    stop: list[int] = []

    def on_signal(signum, frame) -> None:
        stop.append(signum)  # acted on in the loop; handlers only set flags

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop:
            show(tail.poll())
            deadline = time.monotonic() + interval
            while not stop and time.monotonic() < deadline:
                time.sleep(min(0.05, interval))
        return 128 + stop[0]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _job_exists(config, job_id: int) -> bool:
    """Whether the store knows job `job_id` (a SQLite store that does not exist yet knows none)."""
    if config.store is None and not os.path.exists(config.db_path):
        return False
    from ..wiring import wire

    return wire(config).store.get(job_id) is not None


if __name__ == "__main__":
    sys.exit(main())
