"""job-run CLASS METHOD [--params=V]...: queue a job; print its id."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .common import Command


def build_parser() -> Command:
    from .common import Command

    p = Command(
        prog="job-run",
        description="Run an allowlisted CLASS.METHOD(params) as its own background process.\n"
        "Prints the new job's id and returns at once (or waits, with --wait).\n\n"
        "example:\n  job-run jobs.example.ExampleJob handle --params=5\n"
        "  job-run jobs.example.ExampleJob handle --params=2 --params=true --wait",
    )
    p.add_argument("job_class", metavar="CLASS", help="dotted class path listed in allowed_classes")
    p.add_argument("method", metavar="METHOD", help="a public method of CLASS")
    p.add_argument(
        "--params",
        "-p",
        action="append",
        default=[],
        metavar="VALUE",
        help="one positional param; repeat for more, in order. Coerced to the "
        "method's annotated types (int, float, bool, str; JSON for list and dict)",
    )
    p.add_argument(
        "--priority",
        type=int,
        metavar="N",
        help="niceness -20 (most urgent) .. 19; the queue takes lower first (default 0)",
    )
    p.add_argument("--delay", type=float, metavar="SECONDS", help="start no earlier than this from now")
    p.add_argument(
        "--at", metavar="ISO_TIME", help="start no earlier than this time, e.g. 2026-12-01T09:30:00Z"
    )
    p.add_argument("--max-retries", type=int, metavar="N", help="retries after the first attempt")
    p.add_argument("--retry-delay", type=float, metavar="SECONDS", help="seconds before the first retry")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="seconds per attempt")
    p.add_argument(
        "--wait", action="store_true", help="wait until the job is final; exit 0 if it succeeded, 1 if not"
    )
    p.add_argument(
        "--wait-timeout",
        type=float,
        metavar="SECONDS",
        help="with --wait: give up after this long and exit 6 (the job runs on)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: list[str] | None = None, runner=None) -> int:
    """job-run. `runner`, if given, is a fork of this process made as it started
    (bgjobs.fork.ForkedRunner): it inserts the job and runs it."""
    from ..errors import EXIT_JOB_FAILED, EXIT_OK
    from ..job import Status
    from .common import local_user, print_json, printable, run

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.wait_timeout is not None and not (args.wait and args.wait_timeout >= 0):
        parser.error("--wait-timeout needs --wait and a number of seconds >= 0")

    def body() -> int:
        from .. import api, fork, launcher
        from ..wiring import wire

        try:
            rt = wire(args.config)
            if runner is not None:
                # It opens the store while this process checks the call. Sent
                # once the config is read (and its parse cached), not before.
                runner.use_config(rt.config)
            launch = launcher.prepare(
                rt,
                args.job_class,
                args.method,
                args.params,
                priority=args.priority,
                delay=args.delay,
                at=args.at,
                max_retries=args.max_retries,
                retry_delay=args.retry_delay,
                timeout=args.timeout,
                source="cli",
                user=local_user(),
            )
            job = fork.submit(rt, launch, runner)
        finally:
            if runner is not None:
                runner.close()  # a refused launch: the fork exits unused
        if args.wait:
            if runner is not None:
                runner.reap_when_done()
            job = api.wait_for(job.id, timeout=args.wait_timeout, config=args.config)
        if args.json:
            print_json(job.to_dict())
        elif args.wait:
            detail = f": {job.error}" if job.error and job.status is not Status.SUCCEEDED else ""
            print(f"{job.id} {job.status.value}{printable(detail)}")
        else:
            print(job.id)
        if args.wait and job.status is not Status.SUCCEEDED:
            return EXIT_JOB_FAILED
        return EXIT_OK

    return run(body)


def console() -> None:
    """The console script's entry point."""
    from . import null_for_closed_streams

    null_for_closed_streams()  # before the fork: the fork's streams are these
    argv = sys.argv[1:]
    runner = _fork_runner(argv)  # first thing then: it loads its half while this one reads and checks
    from .common import exit_now

    exit_now(main(argv, runner))


def _fork_runner(argv: list[str]):
    """The job's runner, forked now (bgjobs.fork); None for --help or a
    command line that cannot launch, or where this process may not fork."""
    if len([a for a in argv if not a.startswith("-")]) < 2 or {"-h", "--help"} & set(argv):
        return None
    # The runner's modules are loaded before the fork, not in it: an import in
    # a fork also copies every page it touches.
    from .. import attempt, fork, runner, wiring  # noqa: F401

    return fork.start()


if __name__ == "__main__":
    console()
