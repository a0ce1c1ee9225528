"""The seed's example job, in Python."""

from __future__ import annotations

import time

import bgjobs


class ExampleJob:
    def handle(self, seconds: float = 1.0, fail: bool = False) -> str:
        """Sleep `seconds` (reporting progress), then fail if asked to."""
        steps = max(1, int(seconds * 4))
        for i in range(steps):
            time.sleep(seconds / steps)
            bgjobs.progress((i + 1) / steps, f"step {i + 1} of {steps}")
        if fail:
            raise RuntimeError(f"ExampleJob failed on purpose after {seconds}s")
        print(f"ExampleJob slept {seconds}s")
        return f"slept {seconds}s"
