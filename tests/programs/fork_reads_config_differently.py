"""Launch through a fork that is told a config other than the file's, as if the
file changed between job-run's read and the fork's; print the job's id.

argv: CONFIG."""

import sys

from bgjobs import fork, launcher
from bgjobs.wiring import wire

runner, rt = fork.start(), wire(sys.argv[1])
# The fault: the config sent to the fork (ForkedRunner.use_config) is not the file's.
runner.use_config(rt.config._replace(max_concurrent=99))
job = fork.submit(rt, launcher.prepare(rt, "testjobs.tasks.Tasks", "sleep", [30]), runner)
print(job.id)
