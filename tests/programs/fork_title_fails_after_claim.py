"""job-run, with a fork that fails after it has claimed the job: setting its
title (bgjobs.procs.set_title) raises."""

from bgjobs import fork, procs
from bgjobs.cli.run import main


def broken_title(title, name):
    # The fault: the fork's set_title raises, after the claim, before the runner starts.
    raise RuntimeError("no title today")


procs.set_title = broken_title
main(["testjobs.tasks.Tasks", "ok", "--params=once"], fork.start())
