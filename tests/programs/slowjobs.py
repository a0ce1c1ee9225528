"""A job module that takes a minute to import in the attempt, so that the job's
own signal handler is not in yet (tests/test_cancel.py copies it into a test
project as `testjobs/slow.py`).

$SLOW_IMPORT_CALLER is the pid of the process that launches the job (which
imports the module to check the call, and must not wait); the attempt writes
"importing" to $SLOW_IMPORT_READY, then sleeps.
"""

import os
import time
from pathlib import Path

if os.getpid() != int(os.environ["SLOW_IMPORT_CALLER"]):  # in the attempt, not when checked
    Path(os.environ["SLOW_IMPORT_READY"]).write_text("importing")
    time.sleep(60)  # a module that takes long to import: the job's own handler is not in yet


class Slow:
    def run(self) -> None:
        pass
