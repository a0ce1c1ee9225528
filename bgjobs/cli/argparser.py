"""argparse for the console scripts: imported only when a command line needs it
(see common.Command): for --help, and to report a mistake."""

from __future__ import annotations

import argparse
import os

from .common import EXIT_CODES_HELP, usage_error


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter imports shutil (and with it bz2 and lzma) only to
    learn the terminal width."""

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

    def error(self, message: str) -> None:
        usage_error(self.prog, message)
