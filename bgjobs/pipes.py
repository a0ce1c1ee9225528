"""Line-by-line talk on pipes, for the two runners a caller starts and talks to:
the API's warm spare (bgjobs.spare) and job-run's fork (bgjobs.fork).

Each request and each reply is one line of JSON or text. A write to a reader
that has gone is a False, never a SIGPIPE; a reply that does not come in time
is a None.
"""

from __future__ import annotations

import os
import select
import signal
import time


def write_all(fd: int, data: bytes) -> bool:
    """Write all of `data` to pipe `fd`; False if the reader is gone. SIGPIPE is
    blocked meanwhile, for a caller that has it at SIG_DFL (Python ignores it,
    but an embedding program or a CLI idiom may not): a runner that has exited
    must cost the caller a fallback, not its life."""
    pipe = {signal.SIGPIPE}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, pipe)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return True
    except OSError:
        if signal.SIGPIPE not in old and signal.SIGPIPE in signal.sigpending():
            signal.sigwait(pipe)  # take back the one our write raised, while it is blocked
        return False
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def send(fd: int, line: bytes) -> None:
    """One line to the caller; dropped if the caller is gone or gave up (what
    it was told stands all the same)."""
    try:
        os.write(fd, line + b"\n")
    except OSError:
        pass


class LineReader:
    """Reads the lines that come on pipe `fd`, each within a timeout."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def read_line(self, timeout: float) -> str | None:
        """The next line, or None if none came within `timeout` seconds or the
        writer closed its end (then `eof` is True)."""
        deadline = time.monotonic() + timeout
        poll = select.poll()  # not select(): a busy caller's fds may be past 1024
        poll.register(self.fd, select.POLLIN)
        while b"\n" not in self.buf and not self.eof:
            if not poll.poll(max(0.0, deadline - time.monotonic()) * 1000):
                return None
            chunk = os.read(self.fd, 4096)
            self.buf += chunk
            self.eof = not chunk
        if b"\n" not in self.buf:
            return None
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace")


def set_environ(env: dict[str, str]) -> None:
    """Make os.environ `env`, touching only what differs (usually a key or two):
    a runner started ahead of its job takes on the environment its caller's
    runner would have had."""
    for key in [k for k in os.environ if k not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
