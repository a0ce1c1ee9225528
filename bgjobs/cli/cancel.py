"""job-cancel JOB_ID: stop a job, wait until it has stopped, print its final state."""

from __future__ import annotations

import sys

from ..errors import EXIT_JOB_FAILED, EXIT_USAGE, AlreadyFinal, CancelInProgress
from . import null_for_closed_streams
from .common import Command, exit_now, local_user, print_json, run


def build_parser() -> Command:
    p = Command(
        prog="job-cancel",
        description="Cancel a job. A queued or retrying job is cancelled at once. A running job gets\n"
        "SIGTERM in its whole process group (raising bgjobs.JobCancelled in the job), then\n"
        "SIGKILL after the grace period. Prints the job's final state.",
    )
    p.add_argument("job_id", metavar="JOB_ID", type=int, help="the job's id (from job-run or job-status)")
    p.add_argument(
        "--grace",
        type=float,
        metavar="SECONDS",
        help="seconds between SIGTERM and SIGKILL (default: cancel_grace in config)",
    )
    p.add_argument("--json", action="store_true", help="print the final job as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from .. import api

        # Refused here before the library sees it (nan compares false with all;
        # the upper bound is the library's, bgjobs.cancel).
        if args.grace is not None and not 0 <= args.grace < float("inf"):
            print(
                f"error: --grace must be a finite number of seconds >= 0; got {args.grace!r}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        try:
            result = api.cancel_job(
                args.job_id, grace=args.grace, source="cli", user=local_user(), config=args.config
            )
        except (AlreadyFinal, CancelInProgress) as exc:
            if args.json:
                print_json({**exc.job.to_dict(), "message": str(exc)})
            raise
        job = result.job
        if args.json:
            print_json(job.to_dict())
        elif result.cancelled:
            print(f"job {job.id} cancelled")
        else:
            print(f"job {job.id} {job.status.value} before it could be cancelled")
        return 0 if result.cancelled else EXIT_JOB_FAILED

    return run(body)


def console() -> None:
    """The console script's entry point."""
    null_for_closed_streams()
    exit_now(main())


if __name__ == "__main__":
    console()
