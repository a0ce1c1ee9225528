"""Another thread forks while a warm spare (bgjobs.spare.Spare) is being made,
between the making of its first pipe and the noting of its ends: the fork must
wait, or the child keeps copies it does not know of.

Prints the first child's exit status (0: it had neither end of that pipe), and
whether the parent noted the ends (True: a later child has no copy of the one
the spare keeps)."""

import os
import threading

from bgjobs import spare

real_pipe2, made, is_made, go_on = os.pipe2, [], threading.Event(), threading.Event()


def paused_pipe2(flags):
    # The fault: the spare's first pipe is made, then the maker pauses before it notes the ends.
    if made:
        return real_pipe2(flags)
    made.extend(real_pipe2(flags))
    is_made.set()
    go_on.wait(10)
    return tuple(made)


def is_open(fd: int) -> bool:
    try:
        return os.fstat(fd) is not None
    except OSError:
        return False


def child_has_none_of(fds: list[int]) -> int:
    """Fork; the child's exit status: 0 if it has none of `fds` open."""
    child = os.fork()
    if child == 0:
        os._exit(1 if any(map(is_open, fds)) else 0)
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])


os.pipe2 = paused_pipe2
spares = []
maker = threading.Thread(target=lambda: spares.append(spare.Spare()))
maker.start()
assert is_made.wait(10)
threading.Timer(0.2, go_on.set).start()  # the maker goes on while the fork waits for it
first = child_has_none_of(made)
maker.join()
os.pipe2 = real_pipe2
request_end = made[1]  # the end the spare's caller writes to, open while the Spare is
noted = bool(spares) and is_open(request_end) and child_has_none_of([request_end]) == 0
spares[0].close()
print(first, noted)
