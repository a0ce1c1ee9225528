"""Fill the disk under a store: with a file size limit (RLIMIT_FSIZE, as a full
disk refuses a write) and SIGXFSZ ignored, insert jobs until the store says it
cannot write (tests/test_faults_store.py).

argv: DB_PATH LIMIT_BYTES. Prints how many inserts were committed, then the
error's type and message, on one line each."""

import resource
import signal
import sys

from bgjobs.store import Store

path, limit = sys.argv[1], int(sys.argv[2])
store = Store(path)
store.open()  # created within the limit; only what follows meets it
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
committed = 0
try:
    for i in range(10_000):
        store.insert(
            **{
                "class_path": "x.Y",
                "method": "run",
                "params": ["x" * 2000, i],
                "priority": 0,
                "max_attempts": 1,
                "retry_delay": 0.0,
                "retry_backoff": 1.0,
                "timeout": None,
                "cancel_grace": 1.0,
            }
        )
        committed += 1
except Exception as exc:  # noqa: BLE001 - the test reads which error it was
    print(committed)
    print(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
    sys.exit(0)
print(committed)
print("no error")
