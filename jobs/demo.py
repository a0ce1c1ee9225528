"""Jobs that show off retries, cancellation, output and progress."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import bgjobs


class AlwaysFails:
    """Fails every attempt, so the retries and the final `failed` can be seen."""

    def run(self, message: str = "this job always fails") -> None:
        job = bgjobs.current_job()
        raise ValueError(f"{message} (attempt {job.attempt if job else '?'})")


class LongTask:
    """Runs long and cleans up when it is cancelled."""

    def run(self, seconds: float = 600, cleanup_file: str = "") -> str:
        start = time.monotonic()
        try:
            while time.monotonic() - start < seconds:
                time.sleep(0.5)
                bgjobs.progress((time.monotonic() - start) / seconds, "working")
            return "finished"
        finally:
            # A cancel raises bgjobs.JobCancelled out of time.sleep; this still runs.
            print("LongTask: cleaning up", flush=True)
            if cleanup_file:
                Path(cleanup_file).write_text("cleaned up\n")


class CooperativeLoop:
    """Stops at a safe point: polls bgjobs.cancel_requested() instead of being
    interrupted (cooperative_cancel = True)."""

    cooperative_cancel = True

    def run(self, items: int = 100, per_item: float = 0.1) -> int:
        done = 0
        for _ in range(items):
            if bgjobs.cancel_requested():
                print(f"stopping cleanly after {done} items")
                raise bgjobs.JobCancelled(f"stopped after {done} items")
            time.sleep(per_item)
            done += 1
            bgjobs.progress(done / items, f"{done}/{items} items")
        return done


class Printer:
    """Prints lines to its output file (see the dashboard or logs/jobs/ID.out)."""

    def run(self, lines: int = 10, text: str = "hello from a background job") -> int:
        for i in range(lines):
            print(f"{i + 1}: {text}", flush=True)
        return lines


class AsyncFetch:
    """An `async def` method: bgjobs runs it with asyncio."""

    async def run(self, urls: list = None, delay: float = 0.2) -> dict:
        async def fake_fetch(url: str) -> int:
            await asyncio.sleep(delay)
            return len(url)

        urls = urls or ["https://example.org/a", "https://example.org/b"]
        sizes = await asyncio.gather(*(fake_fetch(u) for u in urls))
        return dict(zip(urls, sizes, strict=True))
