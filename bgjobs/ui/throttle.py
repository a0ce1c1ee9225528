"""Failed sign-ins, counted per client address and shared by every session.

A browser session is free to make, so counting wrong passwords per session
let anyone start over by opening a new tab. The count lives here instead,
once per server process, keyed by the address the connection comes from.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

FREE_TRIES = 3  # failures from one address before each next try must wait
FIRST_WAIT = 1.0  # the wait after the last free try; it doubles with each failure after it
MAX_WAIT = 300.0
FORGET_AFTER = 3600.0  # an address that has not failed for this long starts again from zero
MAX_CLIENTS = 10_000  # addresses remembered at once, so a flood of them cannot fill the memory


@dataclass(frozen=True)
class Attempt:
    """The outcome of one sign-in try.

    checked: False if the try was refused unchecked, because the address must wait.
    passed: True if it was checked and the password was right.
    wait: seconds before this address may try again (0 if it may now).
    """

    checked: bool
    passed: bool
    wait: float

    @property
    def wait_text(self) -> str:
        """The wait, rounded up to whole seconds, as "try again in N s"."""
        return f"try again in {math.ceil(self.wait)} s"


def wait_after(failures: int) -> float:
    """The wait before the next try after `failures` failures in a row."""
    if failures < FREE_TRIES:
        return 0.0
    return min(FIRST_WAIT * 2.0 ** (failures - FREE_TRIES), MAX_WAIT)


class SignInLimiter:
    """Counts failed sign-ins per client address; thread-safe, one per process.

    :param clock: the time source (seconds); tests pass their own.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (count, time of the last)

    def attempt(self, client: str, check: Callable[[], bool]) -> Attempt:
        """Run `check` (the password comparison) for `client`, unless it must wait.

        The wait and the count are read and updated under one lock, so two
        sessions from the same address cannot both slip through one free try.

        :param client: the address the try comes from.
        :param check: returns True if the password is right.
        :return: what happened, and how long `client` must now wait.
        """
        with self._lock:
            now = self._clock()
            count, last = self._current(client, now)
            left = wait_after(count) - (now - last)
            if left > 0:
                return Attempt(checked=False, passed=False, wait=left)
            if check():
                self._failures.pop(client, None)
                return Attempt(checked=True, passed=True, wait=0.0)
            self._remember(client, count + 1, now)
            return Attempt(checked=True, passed=False, wait=wait_after(count + 1))

    def reset(self) -> None:
        """Forget every address (tests start each from a clean slate)."""
        with self._lock:
            self._failures.clear()

    def __len__(self) -> int:
        return len(self._failures)

    def _current(self, client: str, now: float) -> tuple[int, float]:
        count, last = self._failures.get(client, (0, 0.0))
        if count and now - last > FORGET_AFTER:
            del self._failures[client]
            return 0, 0.0
        return count, last

    def _remember(self, client: str, count: int, now: float) -> None:
        self._failures.pop(client, None)  # to the end: the order is the order of last failure
        self._failures[client] = (count, now)
        if len(self._failures) <= MAX_CLIENTS:
            return
        for address, (_, last) in list(self._failures.items()):
            if now - last > FORGET_AFTER:
                del self._failures[address]
        while len(self._failures) > MAX_CLIENTS:
            # the first address is the one whose last failure is the oldest
            del self._failures[next(iter(self._failures))]


LIMITER = SignInLimiter()  # the server's one limiter, shared by all sessions
