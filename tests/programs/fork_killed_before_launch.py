"""job-run whose fork is gone (killed and reaped) before job-run sends it anything."""

import os
import signal

from bgjobs import fork
from bgjobs.cli.run import main

runner = fork.start()
os.kill(runner.pid, signal.SIGKILL)  # the fault: job-run's fork is gone
os.waitpid(runner.pid, 0)
main(["testjobs.tasks.Tasks", "ok", "--params=fallback"], runner)
