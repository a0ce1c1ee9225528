"""Open a store at a given moment, then insert one job: many of these at once
race to create the same brand-new database (tests/test_faults_store.py).

argv: DB_PATH START_EPOCH. Prints the new job's id, or the error on one line."""

import sys
import time

from bgjobs.errors import BgjobsError
from bgjobs.store import Store, driver

path, start = sys.argv[1], float(sys.argv[2])
driver()  # loaded before the start, so the racers open at once
time.sleep(max(0.0, start - time.time()))  # all racers leave the line together
try:
    store = Store(path)
    store.open()
    job = store.insert(
        **{
            "class_path": "x.Y",
            "method": "run",
            "params": [],
            "priority": 0,
            "max_attempts": 1,
            "retry_delay": 0.0,
            "retry_backoff": 1.0,
            "timeout": None,
            "cancel_grace": 1.0,
        }
    )
except (BgjobsError, Exception) as exc:  # noqa: BLE001 - the test reads what went wrong
    print(f"error {type(exc).__name__}: {exc}")
    sys.exit(1)
print(job.id)
