"""A job's output file, `log_dir/jobs/ID.out`, as its runner writes it.

The attempt writes its stdout and stderr to a pipe; the runner copies what
comes into this file. So the job never sees a full disk (its prints do not
fail), and the file is bounded: past `max_bytes` the runner keeps the file's
start and its latest tail, with one line in between that says how much was
cut. Output that cannot be written (a full disk, a file size limit) is
dropped, and `write` says why once, so the runner can record it.
"""

from __future__ import annotations

import os
import time

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
FLUSH_EVERY = 1.0  # seconds between rewrites of the tail once output is being cut
CUT_MARK = "bytes of output cut here"  # what readers (the dashboard) look for
CUT_LINE = "\n--- bgjobs: {cut} " + CUT_MARK + " (output_max_bytes is {limit}) ---\n"


class JobOutput:
    """The job's output file, written by its runner alone. `open` raises
    OSError when the file cannot be opened; after that nothing raises."""

    def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max(max_bytes, 1024)
        self.fd: int | None = None
        self.lost: str | None = None  # why output is dropped, once it is
        self.cut = 0  # bytes dropped from the middle
        self._head_end: int | None = None  # set once output is being cut
        self._tail = bytearray()
        self._dirty = False
        self._flushed = 0.0

    def open(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, data: bytes) -> str | None:
        """Append `data` (or keep it in the tail, once cutting). Returns the
        reason output is lost the first time a write fails, else None."""
        if self.fd is None or self.lost is not None or not data:
            return None
        try:
            if self._head_end is None:
                size = os.fstat(self.fd).st_size
                if size + len(data) <= self.max_bytes:
                    _write_all(self.fd, data)
                    return None
                self._start_cutting(size, data)
            else:
                self._keep(data)
                if time.monotonic() - self._flushed >= FLUSH_EVERY:
                    self.flush()
        except OSError as exc:
            return self._lose(exc)
        return None

    def flush(self) -> str | None:
        """Rewrite the tail, if output is being cut and it changed."""
        if self.fd is None or self.lost is not None or not self._dirty:
            return None
        try:
            os.ftruncate(self.fd, self._head_end)
            line = CUT_LINE.format(cut=self.cut, limit=self.max_bytes).encode()
            _write_all(self.fd, line + bytes(self._tail))
        except OSError as exc:
            return self._lose(exc)
        self._dirty = False
        self._flushed = time.monotonic()
        return None

    def close(self) -> str | None:
        why = self.flush()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        return why

    @property
    def _room(self) -> int:
        return self.max_bytes - self._head_end - len(CUT_LINE) - 40

    def _start_cutting(self, size: int, data: bytes) -> None:
        half = self.max_bytes // 2
        if size < half:  # the head is kept whole: fill it first
            take = half - size
            _write_all(self.fd, data[:take])
            size, data = size + len(data[:take]), data[take:]
        self._head_end = min(size, half)
        start = max(self._head_end, size - self._room)
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            seed = os.pread(fd, size - start, start)
        finally:
            os.close(fd)
        self.cut = start - self._head_end
        self._tail = bytearray(seed)
        self._keep(data)
        self.flush()

    def _keep(self, data: bytes) -> None:
        self._tail += data
        over = len(self._tail) - self._room
        if over > 0:
            del self._tail[:over]
            self.cut += over
        self._dirty = True

    def _lose(self, exc: OSError) -> str:
        self.lost = f"cannot write {self.path}: {exc.strerror or exc}"
        return self.lost


def tail(path: str, max_bytes: int = 64 * 1024) -> str | None:
    """The last `max_bytes` of the output file at `path`, from a line's start;
    None if there is no such file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except FileNotFoundError:
        return None
    text = data.decode("utf-8", "replace")
    if size > max_bytes:
        text = text.split("\n", 1)[-1]  # drop the partial first line
    return text


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n == 0:
            raise OSError(28, "No space left on device")
        view = view[n:]
