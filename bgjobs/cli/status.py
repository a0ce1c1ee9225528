"""job-status [ID]: a table of recent jobs, or one job."""

from __future__ import annotations

import time

from ..job import Job, Status, iso
from . import null_for_closed_streams
from .common import Command, exit_now, positive_int, print_json, printable, run

STATUS_CHOICES = tuple(s.value for s in Status)


def build_parser() -> Command:
    p = Command(prog="job-status", description="Show recent jobs as a table, or one job in detail.")
    p.add_argument("job_id", metavar="ID", type=int, nargs="?", help="one job's id")
    p.add_argument("--json", action="store_true", help="print JSON (one object, or a list)")
    p.add_argument(
        "--status", action="append", choices=STATUS_CHOICES, help="only jobs in this state (repeatable)"
    )
    p.add_argument(
        "--limit",
        type=positive_int,
        default=20,
        metavar="N",
        help="rows in the table, 1 or more (default 20)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from .. import api

        if args.job_id is not None:
            job = api.get_job(args.job_id, config=args.config)
            if args.json:
                print_json(job.to_dict())
            else:
                print(describe(job))
            return 0
        jobs = api.list_jobs(config=args.config, statuses=tuple(args.status or ()) or None, limit=args.limit)
        if args.json:
            print_json([j.to_dict() for j in jobs])
        else:
            print(table(jobs))
        return 0

    return run(body)


def _age(ts: float | None) -> str:
    if ts is None:
        return "-"
    secs = time.time() - ts
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs / size:.0f}{unit} ago"
    return f"{secs:.0f}s ago"


def _progress(job: Job) -> str:
    if job.progress is None:
        return "-"
    return f"{job.progress * 100:.0f}%"


def table(jobs: list[Job]) -> str:
    if not jobs:
        return "no jobs yet; start one with: job-run jobs.example.ExampleJob handle --params=5"
    rows = [("ID", "STATUS", "JOB", "PARAMS", "TRY", "PRIO", "PROGRESS", "CREATED", "TOOK", "ERROR")]
    for j in jobs:
        took = f"{j.duration:.1f}s" if j.duration is not None else "-"
        # Escaped before they are cut, so no cell holds a newline or an escape
        # sequence: a job's params and error cannot forge a row.
        params = printable(", ".join(map(str, j.params)))
        rows.append(
            (
                str(j.id),
                j.status.value,
                printable(j.name),
                params[:30],
                f"{j.attempt}/{j.max_attempts}",
                str(j.priority),
                _progress(j),
                _age(j.created_at),
                took,
                printable(j.error or "")[:60],
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def describe(job: Job) -> str:
    """The job in detail, one fact a line; what came from the job (params,
    messages, errors, result) has its control characters escaped."""
    d = job.to_dict()
    lines = [
        f"job {job.id}: {job.class_path}.{job.method}({', '.join(map(repr, job.params))})",
        f"  status     {job.status.value}"
        + (f" ({job.progress * 100:.0f}% {job.progress_message or ''})" if job.progress is not None else ""),
        f"  attempts   {job.attempt} of {job.max_attempts}",
        f"  priority   {job.priority}",
    ]
    for key in ("created_at", "run_after", "started_at", "finished_at"):
        if d[key]:
            lines.append(f"  {key.replace('_at', ''):<10} {d[key]}")
    if job.duration is not None:
        lines.append(f"  took       {job.duration:.3f}s")
    if job.error:
        lines.append(f"  error      {f'{job.exception}: ' if job.exception else ''}{job.error}")
    if job.result:
        lines.append(f"  result     {job.result}")
    if job.cancel_source:
        lines.append(
            f"  cancelled  by {job.cancel_source} ({job.cancel_user or 'unknown user'}) at "
            f"{iso(job.cancel_requested_at)}"
        )
    return "\n".join(map(printable, lines))


def console() -> None:
    """The console script's entry point."""
    null_for_closed_streams()
    exit_now(main())


if __name__ == "__main__":
    console()
