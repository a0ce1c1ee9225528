"""job-run, with a fork that dies as it sends its Nth reply: 1, the new row's id
(sent before the commit), or 2, the row (sent after it).

argv: N."""

import os
import sys

from bgjobs import fork
from bgjobs.cli.run import main

nth = int(sys.argv[1])
send, sent = fork.send, []


def dying_send(fd, line):
    # The fault: the fork (bgjobs.fork.send) sends the id, then dies at its Nth reply.
    sent.append(line)
    if len(sent) == 1:
        send(fd, line)
    if len(sent) == nth:
        os._exit(9)


fork.send = dying_send
main(["testjobs.tasks.Tasks", "ok", "--params=once"], fork.start())
