"""Launch twice through the API (a warm spare boots from the second launch on),
then fork: the child must have no warm spare and none of the spare's pipes.
Prints the spare's pid and the child's exit status (0: it had neither)."""

import os

from bgjobs import api, spare


def is_open(fd: int) -> bool:
    try:
        return os.fstat(fd) is not None
    except OSError:
        return False


def pipes_to(pid: int) -> list[int]:
    """This process's fds on the pipes that are process `pid`'s stdin and stdout."""
    theirs = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1)}
    ours = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") in theirs:
                ours.append(int(fd))
        except OSError:
            pass  # the listing's own fd, closed since
    return sorted(ours)


api.run_background_job("testjobs.tasks.Tasks", "ok", "x")
assert spare.warm_spare_pid() is None  # one launch: maybe a one-shot script
api.run_background_job("testjobs.tasks.Tasks", "ok", "y")
pid = spare.warm_spare_pid()
ends = pipes_to(pid)  # the spare's pipes, as this process holds them
assert ends and all(map(is_open, ends))
child = os.fork()
if child == 0:
    os._exit(0 if spare.warm_spare_pid() is None and not any(map(is_open, ends)) else 1)
print(pid, os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
