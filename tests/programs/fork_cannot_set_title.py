"""job-run, with a fork where the title cannot be set (ps would show the params
for the job's whole life)."""

from bgjobs import fork, procs
from bgjobs.cli.run import main

# The fault: bgjobs.procs.set_title reports that the kernel refused the write to /proc/self/mem.
procs.set_title = lambda title, name: False
main(["testjobs.tasks.Tasks", "sleep", "--params=30"], fork.start())
