"""A long-lived caller: launch 50 jobs through the API and wait until all are
final; print how many of our children are left as zombies (after up to 10 s).

argv: CONFIG."""

import os
import sys
import time

import psutil

from bgjobs import api


def zombies() -> list[int]:
    found = []
    for child in psutil.Process(os.getpid()).children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass  # reaped between the listing and the look
    return found


cfg = sys.argv[1]
ids = [api.run_background_job("testjobs.tasks.Tasks", "ok", str(i), config=cfg) for i in range(50)]
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    if all(api.get_job(i, config=cfg, refresh=False).is_final for i in ids):
        break
    time.sleep(0.1)
else:
    sys.exit("jobs did not finish")
deadline = time.monotonic() + 10
while zombies() and time.monotonic() < deadline:
    time.sleep(0.05)
print(len(zombies()))
