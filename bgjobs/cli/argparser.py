"""argparse for the console scripts: imported only when a command line needs it
(see common.Command): for --help, and to report a mistake."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable


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
    """argparse, but a usage error goes to `on_error(prog, message)` (which
    says what to do and exits with EXIT_USAGE; see common.usage_error)."""

    def __init__(self, *, on_error: Callable[[str, str], None], **kwargs) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        self.on_error = on_error
        super().__init__(**kwargs)

    def error(self, message: str) -> None:
        self.on_error(self.prog, message)
