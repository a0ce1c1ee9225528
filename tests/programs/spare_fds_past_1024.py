"""With 1,100 fds open, launch twice through the API, wait for the warm spare,
then launch job c once no other runner or waker of the project could take it.
Prints the spare's pid and job c's id."""

import os
import resource
import time

import psutil

from bgjobs import api, spare

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
for word in ("a", "b"):
    api.run_background_job("testjobs.tasks.Tasks", "ok", word)
while spare.warm_spare_pid(ready=True) is None:
    time.sleep(0.01)
pid = spare.warm_spare_pid()


def others() -> list:
    """The project's runners and wakers, but for the spare."""
    return [
        p
        for p in psutil.process_iter(["pid", "cwd", "cmdline"])
        if p.info["pid"] not in (os.getpid(), pid)
        and p.info["cwd"] == os.getcwd()
        and "bgjobs" in str(p.info["cmdline"])
    ]


# As in test_the_api_keeps_a_warm_spare_that_runs_the_next_launch: wait
# until no runner or waker of the project could take job c first.
end = time.time() + 15
while others() and time.time() < end:
    time.sleep(0.02)
print(pid, api.run_background_job("testjobs.tasks.Tasks", "ok", "c"))
