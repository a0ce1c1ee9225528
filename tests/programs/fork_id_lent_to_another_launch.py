"""job-run, with a fork that sends the new row's id and dies before its commit;
the id, rolled back with the insert, goes to another launch just before job-run
looks it up. Prints `other ID` (the other launch's id), then job-run's id."""

import os

from bgjobs import fork, launcher
from bgjobs.cli.run import main
from bgjobs.store import Store
from bgjobs.wiring import wire

send = fork.send


def dying_send(fd, line):
    # The fault: the fork (bgjobs.fork.send) sends the row's id, then dies before its commit.
    send(fd, line)
    os._exit(9)


fork.send = dying_send
runner = fork.start()  # before Store.get is wrapped: only job-run's lookup meets the other launch
get = Store.get


def get_after_another_launch(self, job_id):
    # The fault: another launch inserts a row (Store.get, once) just before job-run reads its id.
    Store.get = get
    rt = wire()
    print("other", launcher.insert_job(rt, launcher.prepare(rt, "testjobs.tasks.Tasks", "ok", ["other"])).id)
    return get(self, job_id)


Store.get = get_after_another_launch
main(["testjobs.tasks.Tasks", "ok", "--params=mine"], runner)
