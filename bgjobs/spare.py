"""The Python API's warm spare: a runner started before its job exists, so that
a process's next launch starts at once. Both halves of its protocol are here:
`dispatch` (the caller's, used by bgjobs.api) and `serve` (the spare's own).

The spare says `ready` on its stdout once booted, then reads requests on
stdin: one JSON line each, with the config file's path, the environment its
job is to get, and the caller's config as the caller sees it. For each it
claims the next due job, as dispatch would: it replies `taken JOB_ID` and
becomes that job's runner; or, with nothing it may take, it dispatches, replies
`idle` and waits for the next request. A spare that reads the config file
differently replies `mismatch` (and `failed` on any error) and takes nothing:
the caller then dispatches itself. At end of input (its caller exited), or
after SPARE_IDLE seconds without a request, it exits.

One is kept per process, from its second launch on (a script that launches one
job and exits has no use for one). A forked child gets none of its parent's.
"""

from __future__ import annotations

import json
import os
import select
import sys
import threading
import time

from . import executor, launcher, procs
from .pipes import LineReader, send, set_environ, write_all

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .job import Job
    from .seams import Wiring

SPARE_CODE = "import sys; from bgjobs.spare import serve; sys.exit(serve())"
SPARE_IDLE = 300.0  # seconds a spare waits for a request before it exits unused
OFFER_TIMEOUT = 5.0  # seconds the caller waits for a spare's reply


# --- the caller's half ------------------------------------------------------


class Spare:
    """A spare runner this process started, and the pipes it talks to it on."""

    def __init__(self) -> None:
        read_fd, self._requests = _pipe()
        self._replies = reply_w = -1
        try:
            self._replies, reply_w = _pipe()
            self.pid = executor.start_python(
                ["-c", SPARE_CODE],
                executor.clean_env(),
                stdin=(os.POSIX_SPAWN_DUP2, read_fd, 0),
                output=(os.POSIX_SPAWN_DUP2, reply_w, 1),
                errors=(os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            )
        except BaseException:
            self.close()
            raise
        finally:
            _close(read_fd)
            if reply_w >= 0:
                _close(reply_w)
        executor.track(self.pid)  # reaped as soon as it exits, idle or not
        self.reader = LineReader(self._replies)
        self.ready = False

    @property
    def gone(self) -> bool:
        return self.reader.eof

    def offer(self, rt: Wiring, timeout: float = OFFER_TIMEOUT) -> str | None:
        """If the spare has booted, ask it to dispatch for `rt` and wait for its
        reply (`taken JOB_ID`, `idle`, `mismatch`, `failed`). None when it is
        still booting or gone."""
        if not self.is_ready():
            return None
        request = {"config": rt.config.path, "env": rt.executor.runner_env(), "expect": repr(rt.config)}
        if not write_all(self._requests, (json.dumps(request) + "\n").encode()):
            self.reader.eof = True
            return None
        reply = self.reader.read_line(timeout)
        if reply is None:
            self.reader.eof = True  # it died, or hangs: a late claim of its own is harmless
        return reply

    def is_ready(self) -> bool:
        """Whether it has said `ready` (checked without waiting)."""
        if not self.ready:
            self.ready = self.reader.read_line(0.0) == "ready"
        return self.ready

    def close(self) -> None:
        for name in ("_requests", "_replies"):
            fd = getattr(self, name, -1)
            if fd >= 0:
                _close(fd)
                setattr(self, name, -1)


def dispatch(rt: Wiring) -> list[Job]:
    """Dispatch for a launch through the API: through this process's warm spare
    if it has booted (it takes the next due job and, once that job runs,
    dispatches the rest), else as launcher.dispatch does. Then a new spare
    boots for the next launch."""
    if not (rt.config.warm_spare and rt.executor.dispatches_here):
        return launcher.dispatch(rt)  # no spare; in fleet mode the hosts run jobs
    try:
        taken = _through_spare(rt)
        if taken is None:
            return launcher.dispatch(rt)
        return [job] if taken and (job := rt.store.get(taken)) else []
    finally:
        _keep_warm()


def warm_spare_pid(*, ready: bool = False) -> int | None:
    """The pid of this process's warm spare (with `ready`, only once it has booted)."""
    with _warm_lock:
        if _warm is None or _warm.gone or (ready and not _warm.is_ready()):
            return None
        return _warm.pid


def _through_spare(rt: Wiring) -> int | None:
    """The id of the job the spare took, 0 if it took none (and dispatched), or
    None if there is no spare ready, or it could not serve."""
    global _warm
    with _warm_lock:
        if _warm is None:
            return None
        try:
            reply = _warm.offer(rt)
        except Exception:  # noqa: BLE001 - a spare must never cost a launch its dispatch
            _give_up()
            return None
        except BaseException:
            _give_up()  # e.g. Ctrl-C mid-offer: a stale reply must not meet the next launch
            raise
        if reply == "idle":
            return 0
        if reply in (None, "mismatch") and not _warm.gone:
            return None  # still booting, or the caller's config is not the file's: it stays
        taken = int(reply.split()[1]) if reply and reply.startswith("taken ") else None
        _give_up()  # it runs a job now, or it is gone, or it failed
        return taken


def _give_up() -> None:
    global _warm
    _warm.close()  # tracked since its start: reaped once it exits
    _warm = None


def _keep_warm() -> None:
    """Start this process's warm spare if it has none, from its second launch on."""
    global _warm, _launches
    with _warm_lock:
        _launches += 1
        if _warm is None and _launches >= 2:
            try:
                _warm = Spare()
            except OSError:
                pass  # no spare: the next launch starts its runner as usual


# Every pipe end a Spare holds, so that a child forked meanwhile (by another
# thread, even while a Spare is being made) closes its copies: a copy of a
# request pipe's write end would keep the spare from seeing its caller exit.
# A fork waits for _pipe_lock (see register_at_fork below), so it never falls
# between making or closing a pipe end and noting it here.
_pipe_ends: set[int] = set()
_pipe_lock = threading.Lock()
_warm: Spare | None = None
_warm_lock = threading.Lock()
_launches = 0  # through the API, by this process


def _pipe() -> tuple[int, int]:
    with _pipe_lock:
        ends = os.pipe2(os.O_CLOEXEC)
        _pipe_ends.update(ends)
    return ends


def _close(fd: int) -> None:
    with _pipe_lock:
        _pipe_ends.discard(fd)
        os.close(fd)


def _after_fork_in_child() -> None:
    """A forked child (an attempt, or a caller's own child) starts with no spare."""
    global _warm, _warm_lock, _launches, _pipe_lock
    _pipe_lock = threading.Lock()  # the parent's is held, by the fork
    _warm_lock = threading.Lock()
    _launches = 0
    _warm = None
    for fd in _pipe_ends:  # our copies; the parent still has its spare
        try:
            os.close(fd)
        except OSError:
            pass
    _pipe_ends.clear()


os.register_at_fork(
    before=lambda: _pipe_lock.acquire(),
    after_in_parent=lambda: _pipe_lock.release(),
    after_in_child=_after_fork_in_child,
)


# --- the spare's half ---------------------------------------------------------


def serve() -> int:
    """The spare process: wait for a request, claim the next due job in the
    config it names, and run it (see the module's docstring).

    The environment a request carries is applied to os.environ, so the job sees
    the caller's as of the launch; what an interpreter reads only at start-up
    (PYTHONPATH into sys.path, other PYTHON* settings, the locale) stays as it
    was when the spare booted. The project root goes on sys.path when the
    attempt loads its class, as for any runner."""
    import sqlite3  # noqa: F401 - loaded while the caller works, not after

    from . import attempt  # noqa: F401 - the same
    from .runner import Runner, run_chain
    from .wiring import wire

    procs.close_inherited()  # what its caller's process had open for others
    executor.reap_in_loop()  # it may start a waker or runners, and later fork attempts
    send(1, b"ready")
    buf = b""
    while True:
        quiet_until = time.monotonic() + SPARE_IDLE
        while b"\n" not in buf:
            ready, _, _ = select.select([0], [], [], 1.0)
            executor.reap()  # a waker it started may have exited
            if not ready and time.monotonic() < quiet_until:
                continue
            chunk = os.read(0, 4096) if ready else b""
            if not chunk:
                return 0  # end of input, or idle too long
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        rt = None
        try:
            request = json.loads(line)
            set_environ(request["env"])  # what a runner spawned by that caller now would get
            rt = wire(request["config"])
            if request["expect"] != repr(rt.config):
                send(1, b"mismatch")  # the caller's config is not the file's: it dispatches itself
                continue
            os.chdir(rt.config.root)
            claimed = launcher.claim(rt, limit=1)
        except Exception as exc:  # noqa: BLE001 - whatever it was, the job must not be left
            print(f"bgjobs: spare runner {os.getpid()}: {exc!r}", file=sys.stderr, flush=True)
            send(1, b"failed")  # the caller dispatches itself
            continue
        if claimed:
            break
        launcher.dispatch(rt)  # before the reply: the launch returns with its dispatch done
        send(1, b"idle")
    job, token = claimed[0]
    send(1, b"taken %d" % job.id)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # no more requests: the caller sees end of file on its next one
    os.close(null)
    # dispatch_after_start: what the caller's own dispatch would have done.
    return run_chain(Runner(rt, dispatch_after_start=True), job.id, token)
