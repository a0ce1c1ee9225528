"""job-worker: this host's share of a fleet (fleet mode), until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

from . import null_for_closed_streams
from .common import Command, exit_now, run


def build_parser() -> Command:
    return Command(
        prog="job-worker",
        description="Run this host's part of a bgjobs fleet: take wake-ups from the store's queue\n"
        "(Procrastinate), start runners on this host for due jobs (at most worker_slots at\n"
        "once), sweep every few seconds for lost runners and missed wake-ups, and keep this\n"
        "host's row in the hosts table. Needs store: postgresql://... and executor:\n"
        "procrastinate in config.yaml. SIGTERM or SIGINT stops it gracefully: it takes no\n"
        "new wake-ups, and running jobs keep their runners (they are detached).",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from .. import worker
        from ..wiring import wire

        return worker.run(wire(args.config))

    return run(body)


def console() -> None:
    null_for_closed_streams()
    exit_now(main(sys.argv[1:]))


if __name__ == "__main__":
    console()
