"""The attempt: runs inside the runner's forked child, in its own process group.

It re-checks the allowlist, sets the job's niceness, runs the method (with
asyncio for `async def`), and reports the outcome to the runner as one JSON
document on a pipe. Whatever happens, it leaves with os._exit, so nothing of
the runner's state (atexit hooks, buffers) runs twice.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from . import allowlist, context, procs
from .errors import RejectedError

MAX_REPORT = 60 * 1024  # stays below a pipe's buffer, so the write never blocks


def child_main(rt, job, result_fd: int, progress_fd: int, lifeline_fd: int, parent: int) -> None:
    code, report, keep = 1, {"ok": False}, False
    try:
        # Until the job's own handler is in (context.enter), a cancel's SIGTERM
        # must stop the attempt: the runner's handler, inherited, only sets a
        # flag. The runner forked us with SIGTERM blocked, so none was lost.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.setpgid(0, 0)
        procs.kill_me_when_closed(lifeline_fd, signal.SIGKILL)  # the runner holds the other end
        if os.getppid() != parent:
            os._exit(70)  # the runner died while we forked
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
        try:
            os.setpriority(os.PRIO_PROCESS, 0, job.priority)
        except OSError as exc:
            raise RejectedError(f"cannot run at priority {job.priority}: {exc.strerror}") from None
        func = allowlist.check_again(rt.config, job.class_path, job.method)
        owner = getattr(func, "__self__", None)
        cooperative = bool(
            getattr(owner if not isinstance(owner, type) else owner, "cooperative_cancel", False)
        )
        # A class that starts processes meant to outlive the attempt says so;
        # otherwise the runner stops whatever the attempt leaves running.
        keep = bool(getattr(owner, "keep_descendants", False))
        ctx = context.JobContext(job.id, job.attempt, job.max_attempts, job.class_path, job.method)
        context.enter(ctx, context.ProgressPipe(progress_fd), cooperative=cooperative)
        _say_started(progress_fd)
        result = func(*job.params)
        if hasattr(result, "__await__"):
            import asyncio

            result = asyncio.run(_awaitable(result))
        code, report = 0, {"ok": True, "result": _result_text(result)}
    except context.JobCancelled as exc:
        code, report = 143, _error_report(exc)
    except SystemExit as exc:
        if exc.code in (None, 0):
            code, report = 0, {"ok": True, "result": None}
        else:
            code = exc.code if isinstance(exc.code, int) else 1
            report = _error_report(exc)
    except RejectedError as exc:
        report = _error_report(exc)
        report["permanent"] = True
    except BaseException as exc:  # noqa: BLE001 - every failure is reported
        report = _error_report(exc)
    finally:
        try:
            context.flush_progress()
            sys.stdout.flush()
            sys.stderr.flush()
            if keep:
                report["keep_descendants"] = True
            os.write(result_fd, _encoded(report))
        finally:
            os._exit(code)


def _say_started(progress_fd: int) -> None:
    """An empty line on the progress pipe: the runner waits for it before its
    own bookkeeping (Runner._run_attempt), so the job starts first."""
    try:
        os.write(progress_fd, b"\n")
    except OSError:
        pass  # the runner does not wait long


def _encoded(report: dict) -> bytes:
    """The report as one JSON document of at most MAX_REPORT bytes. A long error
    and traceback are cut until it fits (the traceback's end, where the error
    is, is kept): an escaped character takes up to 12 bytes, so the cut is
    measured, never a slice of the bytes, which would not parse."""
    data = json.dumps(report, default=repr).encode("utf-8", "backslashreplace")
    keep = MAX_REPORT // 2
    while len(data) > MAX_REPORT and keep >= 64:
        report["traceback"] = (report.get("traceback") or "")[-keep:]
        report["error"] = (report.get("error") or "")[: keep // 2]
        data = json.dumps(report, default=repr).encode("utf-8", "backslashreplace")
        keep //= 2
    if len(data) > MAX_REPORT:  # what is left is too large: say so, at least
        report = {"ok": False, "exception": "ReportTooLarge", "error": "the attempt's report was too large"}
        data = json.dumps(report).encode()
    return data


async def _awaitable(obj):
    return await obj


MAX_RESULT = 32 * 1024  # characters of a result's JSON text kept whole


def _result_text(result) -> str | None:
    """The result as JSON text (its repr, as a JSON string, where it is not
    JSON-able). Past MAX_RESULT it is replaced by a JSON object that says it
    was cut: {"truncated": true, "length": N, "head": "<the text's start>"}.
    Either way it is valid JSON."""
    if result is None:
        return None
    try:
        text = json.dumps(result)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(repr(result))
    if len(text) <= MAX_RESULT:
        return text
    return json.dumps({"truncated": True, "length": len(text), "head": text[: MAX_RESULT // 8]})


def _error_report(exc: BaseException) -> dict:
    if isinstance(exc, (RejectedError, context.JobCancelled)):
        # A refusal needs no traceback, and a cancel is recorded as cancelled
        # (the runner drops the report). Formatting one would import traceback
        # and read the job's source: ~10 ms added to every cooperative cancel.
        tb = None
    else:
        import traceback

        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "ok": False,
        "exception": type(exc).__name__,
        "error": str(exc) or type(exc).__name__,
        "traceback": tb,
    }
