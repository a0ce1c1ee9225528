"""Console scripts: each parses its arguments, calls one library function, prints."""

import os
import sys


def null_for_closed_streams() -> None:
    """A command started with fd 0, 1 or 2 closed has None for that Python
    stream, and print(file=sys.stderr) then writes to stdout: an error would
    land where a script reads the job id. Such a stream goes to /dev/null.
    Called first thing, while a closed one of fds 0 to 2 is the lowest free
    fd, each stream is opened on its own fd: job-run's fork, and the job,
    then write theirs to fds 1 and 2, as a runner redirects them."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode))  # noqa: SIM115 - for the process's life
