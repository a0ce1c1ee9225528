"""What every console script shares: --config, exit codes, error mapping."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from .. import jsonc
from ..errors import (
    EXIT_ALREADY_FINAL,
    EXIT_CANCEL_IN_PROGRESS,
    EXIT_JOB_FAILED,
    EXIT_NO_JOB,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    BgjobsError,
)

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  success
  {EXIT_JOB_FAILED}  the job failed or was cancelled (with --wait)
  {EXIT_USAGE}  bad arguments, bad config, or the launch was refused
  {EXIT_NO_JOB}  no such job
  {EXIT_ALREADY_FINAL}  the job was already final (job-cancel)
  {EXIT_CANCEL_IN_PROGRESS}  another cancel of the job won the race (job-cancel)
  {EXIT_TIMEOUT}  gave up waiting (job-run --wait-timeout)
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter imports shutil (and with it bz2 and lzma) only to
    learn the terminal width; every console script builds one at start-up."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None) -> None:
        if width is None:
            try:
                width = int(os.environ.get("COLUMNS") or os.get_terminal_size().columns)
            except (OSError, ValueError):
                width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, width)


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors say what to do and exit with EXIT_USAGE."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        kwargs.setdefault("epilog", EXIT_CODES_HELP)
        super().__init__(**kwargs)
        self.add_argument(
            "--config",
            metavar="PATH",
            help="config file (default: $BGJOBS_CONFIG, else ./config.yaml)",
        )

    def error(self, message: str) -> None:
        # One line, like every other refusal: the usage block of a command with
        # a dozen options would bury it; --help has it all.
        print(f"{self.prog}: error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def run(func: Callable[[], int]) -> int:
    """Call a command body; turn a BgjobsError into its message and exit code."""
    try:
        return func()
    except BgjobsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


def exit_now(code: int) -> None:
    """Leave at once with `code`, once output is flushed. Everything a command
    changes is committed when it returns; the interpreter's teardown (and the
    checkpoint SQLite runs when the last connection closes) would only add to
    the wait of whoever called the command."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    os._exit(code)


def print_json(obj) -> None:
    print(jsonc.dumps(obj, default=str))


def local_user() -> str:
    """Who runs this command, as getpass.getuser() finds it (without the 2 ms
    that importing getpass adds to every job-run and job-cancel)."""
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if os.environ.get(name):
            return os.environ[name]
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return "local"
