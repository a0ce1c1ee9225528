"""job-run, with a fork that fails before the runner's code has begun; the
child must exit, never go on in job-run's code (where it would record the job
a second time).

argv: OSError (which would even look like a failed fork to fork.start) or ImportError."""

import sys

from bgjobs import fork
from bgjobs.cli.run import main

ERRORS = {"OSError": OSError(24, "Too many open files"), "ImportError": ImportError("no runner")}
error = ERRORS[sys.argv[1]]


def failing_detach(*pipes):
    # The fault: the fork's first step after setsid (bgjobs.fork.detach) raises.
    raise error


fork.detach = failing_detach
main(["testjobs.tasks.Tasks", "ok", "--params=once"], fork.start())
