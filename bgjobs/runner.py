"""The runner: one job's own supervisor process. The executor starts it as
`python -c RUNNER_CODE JOB_ID` (`python -m bgjobs.runner JOB_ID` also works);
the API's warm spare (bgjobs.spare) and job-run's fork (bgjobs.fork) become
one.

The runner holds the job's liveness token for its whole life, runs one attempt in a
forked child that leads its own process group, waits for it (with the timeout
and cancel grace), records the outcome as one transition, and before it exits
dispatches the next queued jobs. A retry is a row again: the waker or the
next dispatch starts a fresh runner when its delay is over.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

from . import allowlist, executor, launcher, leftovers, lifecycle, procs
from .context import SIGNALLED
from .errors import RejectedError, StoreError
from .job import Job, Status
from .output import JobOutput, tail
from .seams import Wiring
from .wiring import wire

POLL = 1.0  # seconds between checks of the row for a cancel flag (a backstop)
START_WAIT = 0.05  # seconds the runner waits for its attempt to start before its bookkeeping
TAIL_EVERY = 3.0  # seconds between copies of a fleet job's output tail to the store
TAIL_BYTES = 16 * 1024  # how much of it: rows are read whole (SELECT *), so it stays small
MAX_CHAIN = 10_000  # jobs one runner process takes in a row before it hands over


class Fenced(Exception):
    """This runner lost its claim (fleet mode): it stopped its attempt, and
    writes nothing more; whoever settles the job records it."""


class Runner:
    """Runs claimed jobs one after another, each attempt in a forked child."""

    def __init__(self, rt: Wiring, *, dispatch_after_start: bool = False) -> None:
        self.rt = rt
        executor.reap_in_loop()  # we fork our attempts: no reaper thread here (see executor)
        # A job's descendant that leaves the attempt's process group is
        # re-parented to us, not to init, and stopped with the attempt.
        procs.become_subreaper()
        self.sigterm = False
        self.unreachable_since: float | None = None
        self.last_row: Job | None = None
        self.dispatch_after_start = dispatch_after_start  # once, when the next attempt has started
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # What the caller may have left set for its children: an ignored SIGCHLD
        # would reap attempts before we can wait for them, and a blocked signal
        # would keep a cancel (and, in the job, anything else) from landing.
        # The mask is cleared last: a SIGTERM pending meanwhile meets our handler.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())

    def _on_signal(self, signum, frame) -> None:
        self.sigterm = True  # acted on in the wait loop; handlers only set flags

    def run(self, job_id: int, token) -> Job | None:
        """Run one attempt of claimed job `job_id`, holding its liveness `token`. The
        attempt is counted first: whatever fails after this is that attempt's
        failure, so a job that can never start still ends."""
        self.job_id, self.token, self.sigterm = job_id, token, False
        self.unreachable_since, self.last_row = None, None
        self.tail_due = time.monotonic() + TAIL_EVERY
        rt = self.rt
        me = os.getpid()
        job = rt.store.start_attempt(self.job_id, me, procs.start_time(me))
        if job is None:
            return rt.store.get(self.job_id)  # not claimed for us (cancelled meanwhile)
        self.output = JobOutput(rt.config.output_path(job_id), rt.config.output_max_bytes)
        try:
            self.output.open()
        except OSError as exc:
            _point_output(None)
            kind, error = type(exc).__name__, f"cannot open its output file: {exc}"
            return self._stored(lambda: lifecycle.attempt_failed(rt, job, exception=kind, error=error))
        _point_output(self.output.fd)  # our own prints (and a crash of ours) go there too
        if job.cancel_requested_at is not None:
            self.output.close()
            return self._stored(lambda: lifecycle.cancelled(rt, job, "cancelled before the attempt started"))
        try:
            allowlist.check_listed(rt.config, job.class_path, job.method)
        except RejectedError as exc:
            self.output.close()
            error = f"{job.class_path}.{job.method} is no longer allowed: {exc}; not run"
            return self._stored(
                lambda: lifecycle.attempt_failed(
                    rt, job, exception="RejectedError", error=error, permanent=True
                )
            )
        lifecycle.started(rt, job, me)
        self._write_output(
            f"--- bgjobs: job {job.id} attempt {job.attempt} started at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(),
            job,
        )
        try:
            return self._run_attempt(job)
        finally:
            self._note_lost(self.output.close(), job)
            try:
                self._store_tail(job)
            except StoreError:
                pass  # the file on this host has it all

    def _write_output(self, data: bytes, job: Job) -> None:
        self._note_lost(self.output.write(data), job)

    def _note_lost(self, why: str | None, job: Job) -> None:
        """Output cannot be written any more: the job runs on, and says so."""
        if why is not None:
            try:
                lifecycle.output_lost(self.rt, job, why)
            except StoreError:
                pass  # the errors log has it; the store is failing too

    def _stored(self, write):
        """Run outcome write `write` until it lands. This runner holds the
        job's lock, so no one else records the outcome, and reconcile does not
        take the job for lost: a full or failing store delays the record, and
        never turns an attempt that ran into a second run."""
        pause = 0.05
        while True:
            try:
                return write()
            except StoreError as exc:
                _say(f"bgjobs: runner {os.getpid()}: cannot record job {self.job_id} yet ({exc}); retrying")
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _run_attempt(self, job: Job) -> Job | None:
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        progress_r, progress_w = os.pipe2(os.O_CLOEXEC)
        # We hold the write end for the attempt's whole life: if we die, the
        # kernel closes it and SIGKILLs the attempt (procs.kill_me_when_closed).
        lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
        # The attempt's stdout and stderr: we copy them to the job's file
        # (bgjobs.output), so a full disk never fails the job's own prints.
        output_r, output_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(output_r, False)
        os.set_blocking(progress_r, False)
        os.set_blocking(progress_w, False)  # a job never blocks on its progress
        sys.stdout.flush()
        sys.stderr.flush()
        self.rt.events.close()
        # Loaded once here rather than in every forked attempt (children share
        # these pages copy-on-write).
        from . import attempt

        me = os.getpid()
        # The child never touches the store: SQLite connections must not cross
        # a fork, so progress comes back to us on a pipe and we write it.
        # SIGTERM is blocked across the fork: one that reached the child before
        # it set its own disposition would meet our handler there, and be lost.
        term, pid = {signal.SIGTERM}, -1
        signal.pthread_sigmask(signal.SIG_BLOCK, term)
        try:
            pid = os.fork()
        finally:
            if pid != 0:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, term)
        if pid == 0:
            os.close(result_r)
            os.close(progress_r)
            self.rt.liveness.drop_copy(self.token)  # the token is the runner's alone
            os.close(self.wake_r)
            os.close(lifeline_w)
            os.close(output_r)
            os.dup2(output_w, 1)
            os.dup2(output_w, 2)
            os.close(output_w)
            attempt.child_main(self.rt, job, result_w, progress_w, lifeline_r, parent=me)  # never returns
        os.close(result_w)
        os.close(progress_w)
        os.close(lifeline_r)
        os.close(output_w)
        self.progress_r, self._partial = progress_r, b""
        self.output_r = output_r
        try:
            os.setpgid(pid, pid)  # also done in the child; whichever runs first
        except OSError:
            pass
        # Leave the CPU to the attempt until it says it has started (an empty
        # progress line), has exited, or a signal came: what follows can wait,
        # and on a busy machine it would hold up the job's first line.
        select.select([progress_r, self.wake_r], [], [], START_WAIT)
        try:
            self.rt.store.set_attempt_process(job.id, pid, procs.start_time(pid), attempt=job.attempt)
        except StoreError:
            pass  # cancel and timeout go through us, who know the pid
        if self.dispatch_after_start:
            self.dispatch_after_start = False
            self._dispatch_quietly()  # reconcile, and start what else is due, while the job runs
        try:
            status, stop = self._wait(job, pid)
        finally:
            os.close(lifeline_w)  # the attempt is reaped: nobody is left to signal
        self._apply_progress(job)
        os.close(progress_r)
        report = _read_all(result_r)
        os.close(result_r)
        try:
            info = json.loads(report) if report else {}
        except ValueError:
            info = {}
        if not (info.get("keep_descendants") and stop is None):
            leftovers.stop(pid, job.cancel_grace)
        self._copy_output(job)
        if self.output_r >= 0:
            os.close(self.output_r)
            self.output_r = -1
        return self._record(job, info, status, stop)

    def _copy_output(self, job: Job) -> None:
        """Copy what the attempt wrote since the last look into the job's file."""
        if self.output_r < 0:
            return
        data = _read_all(self.output_r)
        if data:
            self._write_output(data, job)

    def _wait(self, job: Job, pid: int):
        """Wait for the attempt; enforce timeout and cancel. Returns (wait status,
        stop reason) with the child reaped and its group stopped."""
        pidfd = os.pidfd_open(pid)
        started = time.monotonic()
        deadline = started + job.timeout if job.timeout else None
        stop: str | None = None
        kill_at: float | None = None
        next_poll = started + POLL
        while True:
            now = time.monotonic()
            wake = [next_poll]
            if deadline and not stop:
                wake.append(deadline)
            if kill_at:
                wake.append(kill_at)
            watch = [pidfd, self.wake_r, self.progress_r]
            if self.output_r >= 0:
                watch.append(self.output_r)
            told = self.rt.signaller.listen(job.id)  # fleet mode: a cancel's NOTIFY
            if told is not None:
                watch.append(told)
            ready, _, _ = select.select(watch, [], [], max(0.0, min(wake) - now))
            if told is not None and told in ready and self.rt.signaller.heard(job.id):
                next_poll = 0.0  # look at the row now: the cancel flag is there
            if self.output_r in ready:
                data = _read_all(self.output_r)
                if data:
                    self._write_output(data, job)
                else:  # end of file: every writer has closed it
                    os.close(self.output_r)
                    self.output_r = -1
            if pidfd in ready:
                break
            if self.progress_r in ready:
                self._apply_progress(job)
            _drain(self.wake_r)
            executor.reap()  # the waker or runners we started, if they have exited
            now = time.monotonic()
            if not stop and (self.sigterm or now >= next_poll):
                if now >= next_poll and next_poll == started + POLL:
                    # A job that runs this long gets a watchdog: the waker
                    # reconciles each second, in case this runner dies.
                    launcher.ensure_waker(self.rt, watch_running=True)
                next_poll = now + POLL
                row = self._poll(job)
                if row is None:  # fenced: the store was out of reach for fence_after
                    stop, kill_at = "fenced", None
                    _killpg(pid, signal.SIGKILL)
                    continue
                if self.sigterm and row.cancel_requested_at is None:
                    # Someone other than job-cancel sent SIGTERM (a shutdown, kill).
                    row = self.rt.store.request_cancel(job.id, "signal", None, job.cancel_grace) or row
                if row.cancel_requested_at is not None:
                    stop, kill_at = "cancel", now + row.cancel_grace
                    _killpg(pid, signal.SIGTERM)
                    continue
            if deadline and not stop and now >= deadline:
                stop, kill_at = "timeout", now + job.cancel_grace
                _killpg(pid, signal.SIGTERM)
                continue
            if kill_at and now >= kill_at:
                _killpg(pid, signal.SIGKILL)
                kill_at = None
        os.close(pidfd)
        if stop:
            # The leader is a zombie, so its pid (and group id) are still ours.
            # Give the rest of the group the remaining grace, then kill it.
            end = kill_at or time.monotonic()
            while procs.live_group_members(pid) and time.monotonic() < end:
                time.sleep(0.02)
            _killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        return status, stop

    def _poll(self, job: Job) -> Job | None:
        """The job's row, read now (and the runner's lease renewed, and its
        liveness token kept). None when this runner must fence itself: in fleet
        mode, the store has been out of reach for fence_after seconds, or its
        token was taken meanwhile (another host may settle the job and run it
        again, so this attempt must stop and write nothing)."""
        try:
            row = self.rt.store.get(job.id)
            if not self.rt.liveness.renew(job.id):
                return None
            self.rt.store.touch(job.id, attempt=job.attempt)
            if time.monotonic() >= self.tail_due:
                self._store_tail(job)
        except StoreError:
            now = time.monotonic()
            self.unreachable_since = self.unreachable_since or now
            fleet = self.rt.config.store is not None
            if fleet and now - self.unreachable_since >= self.rt.config.fence_after:
                return None
            return self.last_row or job
        self.unreachable_since = None
        self.last_row = row
        return row

    def _store_tail(self, job: Job) -> None:
        """Fleet mode: keep the tail of the job's output in the store, so that
        any host shows it (bgjobs.api.output_tail). On one host the file does."""
        self.tail_due = time.monotonic() + TAIL_EVERY
        if self.rt.config.executor == "procrastinate":
            text = tail(self.rt.config.output_path(job.id), TAIL_BYTES)
            if text:
                self.rt.store.set_output_tail(job.id, text, attempt=job.attempt)

    def _dispatch_quietly(self) -> None:
        """Dispatch while an attempt runs: a failure here (say, a busy store) must
        not take the runner, and so the job, down. The next dispatch retries it."""
        try:
            launcher.dispatch(self.rt)
        except Exception as exc:  # noqa: BLE001
            _say(f"bgjobs: dispatch from runner {os.getpid()} failed: {exc!r}")

    def _apply_progress(self, job: Job) -> None:
        """Store the latest progress line the attempt sent, if any."""
        data = self._partial + _read_all(self.progress_r)
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in reversed(lines):
            if not line:
                continue  # the attempt's word that it has started
            try:
                fraction, message = json.loads(line)
            except (ValueError, TypeError):
                continue
            try:
                self.rt.store.set_progress(job.id, fraction, message, attempt=job.attempt)
            except StoreError:
                pass  # progress is a hint; the next line, or the outcome, will be stored
            return

    # --- outcomes ---------------------------------------------------------

    def _record(self, job: Job, info: dict, status: int, stop: str | None) -> Job | None:
        code = os.waitstatus_to_exitcode(status)
        exit_code, exit_signal = (code, None) if code >= 0 else (None, -code)
        if info.get("ok"):
            return self._succeeded(job, info.get("result"))
        if stop == "fenced":
            raise Fenced(f"job {job.id}: the store was out of reach, or its liveness token was lost")
        if stop == "cancel":
            why = "cancelled"
            if info.get("exception") == "JobCancelled" and info.get("error") not in (
                None,
                "JobCancelled",
                SIGNALLED.format(signal.SIGTERM),
            ):
                why = f"cancelled: {info['error']}"  # the job's own word, e.g. where its loop stopped
            return self._cancelled(job, why, exit_code, exit_signal)
        if stop == "timeout":
            info = {
                "exception": "TimeoutError",
                "error": f"attempt {job.attempt} timed out after {job.timeout:g}s",
                "traceback": info.get("traceback"),
                "event": "timed_out",
            }
        elif not info.get("exception"):
            if exit_signal:
                valid = exit_signal in signal.valid_signals()
                name = signal.Signals(exit_signal).name if valid else exit_signal
                info = {"exception": "KilledBySignal", "error": f"the attempt was killed by signal {name}"}
            else:
                info = {"exception": "ExitCode", "error": f"the attempt exited with code {exit_code}"}
        return self._finish_failed(job, info, exit_code, exit_signal)

    def _succeeded(self, job: Job, result) -> Job | None:
        return self._stored(lambda: lifecycle.succeeded(self.rt, job, result)) or self.rt.store.get(job.id)

    def _cancelled(self, job: Job, why: str, exit_code=None, exit_signal=None) -> Job | None:
        done = self._stored(lambda: lifecycle.cancelled(self.rt, job, why, exit_code, exit_signal))
        return done or self.rt.store.get(job.id)

    def _finish_failed(self, job: Job, info: dict, exit_code, exit_signal) -> Job | None:
        done = self._stored(
            lambda: lifecycle.attempt_failed(
                self.rt,
                job,
                exception=info.get("exception"),
                error=info.get("error"),
                traceback=info.get("traceback"),
                exit_code=exit_code,
                exit_signal=exit_signal,
                permanent=info.get("permanent", False),
                event=info.get("event", "attempt_failed"),
            )
        )
        return done or self.rt.store.get(job.id)


def _point_output(fd: int | None) -> None:
    """Point this process's stdout and stderr at `fd` (the job's file), or at
    /dev/null when there is none."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # what was buffered for a file that cannot take it is dropped
    null = None
    if fd is None:
        fd = null = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if null is not None:
        os.close(null)


def _say(text: str) -> None:
    """A line of the runner's own on its stderr (the job's file); dropped if
    that cannot be written."""
    try:
        print(text, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass  # a grandchild still holds the write end; what was sent is here
    return b"".join(chunks)


def main(argv: list[str] | None = None) -> int:
    """`python -c RUNNER_CODE JOB_ID`: run claimed job JOB_ID, then what else is
    due. With `--claim` instead (fleet mode, started by job-worker): claim the
    next due job first, taking its liveness token inside the claim."""
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["--claim"], ["--claim", "--warm"]):
        return _claim_and_run(warm=argv[-1] == "--warm")
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m bgjobs.runner JOB_ID | --claim", file=sys.stderr)
        return 2
    job_id = int(argv[0])
    rt = wire()
    token = rt.liveness.inherited()  # first: its descriptor is made not inheritable
    procs.close_inherited()  # what its caller's process had open for others
    os.chdir(rt.config.root)
    if token is None:
        token = rt.liveness.take(job_id)
        if token is None:
            print(f"bgjobs: job {job_id} already has a runner", file=sys.stderr)
            return 1
    return run_chain(Runner(rt), job_id, token)


WARM_IDLE = 600.0  # seconds a warm claimer waits for its `go` before it exits unused


def _claim_and_run(*, warm: bool = False) -> int:
    """Fleet mode: claim the next due job, taking its liveness token inside
    the claim, and run it. A warm claimer (job-worker's, see fleet.Claimers)
    first opens its connections, then waits for `go` on its stdin."""
    procs.close_inherited()
    rt = wire()
    os.chdir(rt.config.root)
    if warm:
        from . import attempt  # noqa: F401 - loaded while it waits, not after

        rt.store.open()
        rt.liveness.open()
        ready, _, _ = select.select([0], [], [], WARM_IDLE)
        if not ready or not os.read(0, 16).startswith(b"go"):
            return 0  # its worker stopped, or never needed it
    claimed = launcher.claim(rt, limit=1)
    if not claimed:
        return 0  # another runner took it: a duplicate wake-up
    ((job, token),) = claimed
    return run_chain(Runner(rt), job.id, token)


def run_chain(runner: Runner, job_id: int, token) -> int:
    """Run claimed job `job_id`, then each next due job this runner can claim."""
    rt = runner.rt
    for _ in range(MAX_CHAIN):
        done = None
        try:
            done = runner.run(job_id, token)
        except Fenced as exc:
            _say(f"bgjobs: runner {os.getpid()} fenced: {exc}")
            return 3
        finally:
            # Released first, so a due retry can be claimed; a final job's
            # token goes with it.
            rt.liveness.release(token, job_id, final=done is not None and done.is_final)
        if done is not None and done.status is Status.RETRYING:
            # A short retry delay: wait it out here rather than leave it to the
            # waker's next tick. The job is a row again, so a cancel is immediate.
            time.sleep(max(0.0, min(done.run_after - time.time(), 1.0)))
        # Take the next due job ourselves: a fresh interpreter per job would
        # cost more than the job. Each attempt still gets its own process.
        claimed = launcher.claim(rt, limit=1)
        if not claimed:
            break
        ((job, token),) = claimed
        job_id = job.id
    launcher.dispatch(rt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
