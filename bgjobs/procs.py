"""Processes, safely: identity by (pid, start time), group signals via pidfd, locks.

A pid alone is not an identity: once a process exits, the kernel may hand its
pid to an unrelated process. Everything here that signals a process first
proves, through /proc, that the pid still names the process that was recorded.
Linux only (flock, /proc, pidfd).
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal

# linux/pidfd.h: deliver to the whole process group of the pidfd's process.
PIDFD_SIGNAL_PROCESS_GROUP = 1 << 2


def _stat(pid: int | str) -> list[bytes] | None:
    """Fields 3 on of /proc/PID/stat (state, ppid, pgrp, ...), or None if it is gone.
    os.open/os.read: a third of the cost of open(), which a /proc scan pays per process."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        try:
            stat = os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; skip past it.
    return stat[stat.rindex(b")") + 2 :].split()


def set_title(title: str, name: str) -> bool:
    """Make `title` this process's command line, as `ps` and /proc/PID/cmdline show
    it, and `name` its command name (/proc/PID/comm, what `top` and `pkill` see).
    For a process forked from a command, whose argv (the user's params and all)
    would otherwise stand for its whole life. The kernel reads the command line
    from the argv strings in the process's memory, which the interpreter copied
    at start-up and never reads again: they are rewritten in place, through
    /proc/self/mem (no ctypes), cut to fit. True once /proc/self/cmdline reads
    back as `title` (cut); False if the kernel refused, and the old line stands."""
    rest = _stat("self")
    try:
        start, end = int(rest[45]), int(rest[46])  # arg_start, arg_end: fields 48 and 49
        text = title.encode()[: max(0, end - start - 1)]
        # A byte other than NUL at the very end tells the kernel the strings were
        # rewritten: it then reads the line only up to its first NUL.
        data = text + b"\0" + b" " * (end - start - len(text) - 1)
        fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
        try:
            os.pwrite(fd, data, start)
        finally:
            os.close(fd)
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
        with open("/proc/self/cmdline", "rb") as f:
            return f.read() == text + b"\0"
    except (OSError, TypeError, ValueError, IndexError):
        return False


def erase_environ(names) -> bool:
    """Erase `names` (their NAME=value strings) from this process's environment
    as the kernel shows it (/proc/PID/environ, `ps e`): the strings it started
    with, in its own memory, which a fork's children inherit. For a process
    forked from one whose secrets its children must not see. Only names already
    gone from os.environ (and so from the C library's list) may be erased.
    True once none of them is left there; False if the kernel refused."""
    rest = _stat("self")
    prefixes = tuple(name.encode() + b"=" for name in names)
    try:
        start, end = int(rest[47]), int(rest[48])  # env_start, env_end: fields 50 and 51
        fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
        try:
            at = start
            for entry in os.pread(fd, end - start, start).split(b"\0"):
                if entry.startswith(prefixes):
                    # A filler with no "=", not NULs: two NULs in a row end the
                    # block for some readers (psutil), hiding what follows.
                    os.pwrite(fd, b"-" * len(entry), at)
                at += len(entry) + 1
        finally:
            os.close(fd)
        with open("/proc/self/environ", "rb") as f:
            return not any(entry.startswith(prefixes) for entry in f.read().split(b"\0"))
    except (OSError, TypeError, ValueError, IndexError):
        return False


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    rest = _stat(pid)
    return None if rest is None else int(rest[19])  # field 22 overall


def same_process(pid: int | None, started: int | None) -> bool:
    """True when `pid` is alive and is the very process that started at `started`."""
    if not pid or started is None:
        return False
    return start_time(pid) == started


def signal_verified(pid: int | None, started: int | None, sig: int, *, group: bool) -> bool:
    """Send `sig` to the process (or its whole group) if, and only if, it is still
    the process recorded as (pid, started). Returns whether a signal was sent.

    A pidfd pins the process while we check its start time, so the check and
    the kill cannot race with pid reuse.
    """
    if not pid or started is None:
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:
        pidfd = None  # no pidfd support: check-then-kill, the best we can do
    try:
        if start_time(pid) != started:
            return False
        if pidfd is not None:
            flags = PIDFD_SIGNAL_PROCESS_GROUP if group else 0
            try:
                signal.pidfd_send_signal(pidfd, sig, None, flags)
                return True
            except ProcessLookupError:
                return False
            except OSError as exc:
                if exc.errno != errno.EINVAL or not group:
                    raise
                # Older kernel: no group flag. The pidfd still pins the pid,
                # so the group id cannot have been reused either.
        try:
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)
            return True
        except ProcessLookupError:
            return False
    finally:
        if pidfd is not None:
            os.close(pidfd)


def live_group_members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes in process group `pgid` (via /proc)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:  # one system call per process; /proc/PID/stat (three) only for members
            if os.getpgid(int(entry.name)) != pgid:
                continue
        except OSError:
            continue  # gone
        rest = _stat(entry.name)
        if rest is not None and int(rest[2]) == pgid and rest[0] not in (b"Z", b"X"):
            members.append(int(entry.name))
    return members


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def kill_me_when_closed(lifeline: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process as soon as nothing holds the
    write end of pipe `lifeline` any more: a parent that keeps that end open
    makes this a parent-death signal. It is the O_ASYNC idiom (F_SETOWN to us,
    F_SETSIG to `sig`); it needs no ctypes for prctl(PR_SET_PDEATHSIG), which
    cost every runner 4 ms and 0.4 MiB. Unlike that, it does not survive exec."""
    fcntl.fcntl(lifeline, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(lifeline, fcntl.F_SETSIG, int(sig))
    flags = fcntl.fcntl(lifeline, fcntl.F_GETFL)
    fcntl.fcntl(lifeline, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)


PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def become_subreaper() -> bool:
    """Have this process's orphaned descendants re-parented to it, not to init
    (prctl PR_SET_CHILD_SUBREAPER): a job's child that leaves the attempt's
    process group (setsid, setpgid) and whose parent exits stays in reach.
    False where the kernel refuses. ctypes is the only public way to prctl."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def has_children() -> bool:
    """Whether this process has any child, living or exited (reaps none)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return True
    except ChildProcessError:
        return False


def children() -> list[tuple[int, int]]:
    """(pid, start time) of each living child of this process, from /proc."""
    me = str(os.getpid()).encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        rest = _stat(entry.name)
        if rest is not None and rest[1] == me and rest[0] not in (b"Z", b"X"):
            found.append((int(entry.name), int(rest[19])))
    return found


# --- locks -----------------------------------------------------------------


def single_threaded() -> bool:
    """True if this process has one thread, Python's or not (False if it cannot
    tell): what must hold across a fork, or while sys.modules is not as it seems."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def close_inherited() -> None:
    """Close the inheritable fds above 2: what the caller left open for this
    process (`3>file`, a CI runner's pipe, make's jobserver), which bgjobs'
    own fds never are. A runner lives as long as its jobs, and passes its fds
    on to the job; a pipe's reader would wait for its end of file that long.
    subprocess's close_fds does this for the programs it starts."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return
    for name in names:
        fd = int(name)
        try:
            if fd > 2 and os.get_inheritable(fd):
                os.close(fd)
        except OSError:
            pass  # the listing's own fd, closed with it


def open_lock(path: str) -> int:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


def try_lock(fd: int) -> bool:
    """Take an exclusive flock without blocking; False if another holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def take_lock(path: str) -> int | None:
    """The exclusive flock on lock file `path`, as an open fd; None if another
    process holds it. A lock file is unlinked by whoever holds its lock once
    its job is final (release_lock), so a lock taken on a file that was
    unlinked meanwhile is no lock at all: it is checked against the path, and
    taken again on the new file."""
    while True:
        fd = open_lock(path)
        if not try_lock(fd):
            os.close(fd)
            return None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # unlinked while we took it: try the file that is there now


def release_lock(fd: int, path: str, *, remove: bool) -> None:
    """Let go of a lock from take_lock; with `remove` (its job is final), unlink
    the file first, while the lock is still held."""
    if remove:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    os.close(fd)


def remove_lock_if_free(path: str) -> None:
    """Unlink lock file `path` if it exists and nobody holds it: for a job that
    became final without a runner (cancelled while it waited, settled lost)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if try_lock(fd) and os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


# --- niceness --------------------------------------------------------------


def can_set_niceness(nice: int) -> tuple[bool, str]:
    """Whether this user may run a process at niceness `nice`, and why not."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice >= current:
        return True, ""
    if _has_cap_sys_nice():
        return True, ""
    soft, _ = _rlimit_nice()
    if soft and nice >= 20 - soft:
        return True, ""
    return False, (
        f"priority {nice} needs privilege: this user may not lower niceness below "
        f"{current} (it needs CAP_SYS_NICE or a higher RLIMIT_NICE); use a priority "
        f">= {current}"
    )


def _rlimit_nice() -> tuple[int, int]:
    import resource

    return resource.getrlimit(resource.RLIMIT_NICE)


def _has_cap_sys_nice() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 23))
    except OSError:
        pass
    return os.geteuid() == 0
