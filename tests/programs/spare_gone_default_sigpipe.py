"""With SIGPIPE back at SIG_DFL (as some programs put it), launch through the
API once the warm spare is gone: the write to its pipe must not kill us.
Prints the last launch's id."""

import os
import signal
import time

from bgjobs import api, spare

signal.signal(signal.SIGPIPE, signal.SIG_DFL)
for word in ("a", "b"):
    api.run_background_job("testjobs.tasks.Tasks", "ok", word)
while spare.warm_spare_pid(ready=True) is None:
    time.sleep(0.01)
pid = spare.warm_spare_pid()
os.kill(pid, signal.SIGKILL)  # the fault: the spare has exited (idle for 5 minutes, in life)
os.waitpid(pid, 0)
print(api.run_background_job("testjobs.tasks.Tasks", "ok", "after"))
