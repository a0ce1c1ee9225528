"""What every console script shares: --config, exit codes, error mapping."""

from __future__ import annotations

import json
import os
import sys

from ..errors import (
    EXIT_ALREADY_FINAL,
    EXIT_CANCEL_IN_PROGRESS,
    EXIT_JOB_FAILED,
    EXIT_NO_JOB,
    EXIT_OK,
    EXIT_STORE,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    BgjobsError,
)

TYPE_CHECKING = False  # collections.abc imports collections: kept out of the start-up path
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  success
  {EXIT_JOB_FAILED}  the job failed or was cancelled (with --wait)
  {EXIT_USAGE}  bad arguments, bad config, or the launch was refused
  {EXIT_NO_JOB}  no such job
  {EXIT_ALREADY_FINAL}  the job was already final (job-cancel)
  {EXIT_CANCEL_IN_PROGRESS}  another cancel of the job won the race (job-cancel)
  {EXIT_TIMEOUT}  gave up waiting (job-run --wait-timeout)
  {EXIT_STORE}  the job store cannot be used (not a bgjobs database, damaged, newer, deleted, disk full)
"""


class Command:
    """A console script's arguments, declared once with add_argument (a subset
    of argparse's) and parsed by one of two parsers. A plain command line
    (options spelled out in full, no value that starts with '-') is read here;
    anything else, --help or a mistake or an abbreviation, goes to argparse
    (argparser.Parser), which is imported only then: importing argparse and
    building a parser cost a command about two thirds of `python -c pass`.
    tests/test_cli_args.py holds the two readers to one result."""

    _QUICK = {"action", "type", "default", "metavar", "help", "nargs", "choices"}

    def __init__(self, prog: str, description: str) -> None:
        self.prog, self.description = prog, description
        self._declared: list[tuple[tuple, dict]] = []
        self._positionals: list[_Arg] = []
        self._options: dict[str, _Arg] = {}
        self.quick = True  # False once an argument needs what only argparse does
        self.add_argument(
            "--config",
            metavar="PATH",
            help="config file (default: $BGJOBS_CONFIG, else ./config.yaml)",
        )

    def add_argument(self, *names: str, **kwargs) -> None:
        self._declared.append((names, kwargs))
        arg = _Arg(names, kwargs)
        if set(kwargs) - self._QUICK or arg.action not in ("store", "append", "store_true"):
            self.quick = False
        elif arg.positional:
            self.quick &= arg.action == "store" and kwargs.get("nargs") in (None, "?")
            self._positionals.append(arg)
        else:
            self.quick &= "nargs" not in kwargs
            self._options.update(dict.fromkeys(names, arg))
        self.quick &= not isinstance(arg.default, str)  # argparse would convert it with `type`

    def parse_args(self, argv: list[str] | None = None):
        argv = sys.argv[1:] if argv is None else list(argv)
        args = self._read(argv) if self.quick else None
        return args if args is not None else self.argparser().parse_args(argv)

    def argparser(self):
        from .argparser import Parser

        parser = Parser(
            prog=self.prog, description=self.description, epilog=EXIT_CODES_HELP, on_error=usage_error
        )
        for names, kwargs in self._declared:
            parser.add_argument(*names, **kwargs)
        return parser

    def error(self, message: str) -> None:
        usage_error(self.prog, message)

    def _read(self, argv: list[str]) -> Args | None:
        """What argparse would make of `argv`, or None where this reader cannot
        be sure of it (argparse then reads it)."""
        values = {arg.dest: arg.default for arg in (*self._positionals, *self._options.values())}
        positionals = []
        tokens = iter(argv)
        for token in tokens:
            if not token.startswith("-"):
                positionals.append(token)
                continue
            name, eq, value = token.partition("=")
            arg = self._options.get(name)
            if arg is None or (eq and (arg.action == "store_true" or not name.startswith("--"))):
                return None  # unknown, abbreviated, --help, '--', '-', or -p=V: argparse's rules
            if arg.action == "store_true":
                values[arg.dest] = True
                continue
            if not eq:
                value = next(tokens, None)
                if value is None or value.startswith("-"):
                    return None
            value = arg.convert(value)
            if value is _Arg.INVALID:
                return None
            values[arg.dest] = [*(values[arg.dest] or ()), value] if arg.action == "append" else value
        required = sum(arg.nargs is None for arg in self._positionals)
        if not required <= len(positionals) <= len(self._positionals):
            return None
        for arg, token in zip(self._positionals, positionals, strict=False):
            values[arg.dest] = arg.convert(token)
            if values[arg.dest] is _Arg.INVALID:
                return None
        return Args(**values)


class _Arg:
    """One add_argument call, as Command._read needs it."""

    INVALID = object()

    def __init__(self, names: tuple[str, ...], kwargs: dict) -> None:
        self.positional = not names[0].startswith("-")
        self.action = kwargs.get("action", "store")
        self.type, self.choices, self.nargs = kwargs.get("type"), kwargs.get("choices"), kwargs.get("nargs")
        self.default = kwargs.get("default", False if self.action == "store_true" else None)
        long = next((n for n in names if n.startswith("--")), names[0])
        self.dest = names[0] if self.positional else long.lstrip("-").replace("-", "_")

    def convert(self, text: str):
        try:
            value = self.type(text) if self.type is not None else text
        except Exception:  # noqa: BLE001 - argparse reports it, in its words
            return self.INVALID
        return value if self.choices is None or value in self.choices else self.INVALID


class Args:
    """The parsed arguments, as attributes (like argparse.Namespace)."""

    def __init__(self, **values) -> None:
        self.__dict__.update(values)

    def __repr__(self) -> str:
        return f"Args({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


# Characters a terminal acts on rather than shows: C0 controls (newline, carriage
# return, tab, ESC ...), DEL and C1 controls (CSI ...), and the Unicode line and
# paragraph separators and bidi overrides, which split or reorder what is shown.
# Each is shown as a visible escape, so text from a job (its params, messages,
# errors) can neither forge a line or a row nor drive the operator's terminal.
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_CONTROLS = {
    c: _NAMED.get(chr(c), f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
    for c in (
        *range(0x20),
        *range(0x7F, 0xA0),
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
}


def printable(value: object) -> str:
    """`value` as text safe to print in a human view: one line, every control
    character (see _CONTROLS) shown as an escape such as \\n or \\x1b. JSON
    output needs none of this: it is exact and escapes for itself."""
    return str(value).translate(_CONTROLS)


def positive_int(text: str) -> int:
    """An argument `type` for a count such as --limit: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        from argparse import ArgumentTypeError  # only to say what was wrong, in argparse's words

        raise ArgumentTypeError(f"must be a whole number >= 1; got {text!r}")
    return value


def usage_error(prog: str, message: str) -> None:
    # One line, like every other refusal: the usage block of a command with
    # a dozen options would bury it; --help has it all.
    print(f"{prog}: error: {printable(message)}; see {prog} --help", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def run(func: Callable[[], int]) -> int:
    """Call a command body; turn a BgjobsError into its message and exit code."""
    try:
        return func()
    except BgjobsError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
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
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the command was started with that fd closed
                stream.flush()
        except BrokenPipeError:
            pass
    os._exit(code)


def print_json(obj) -> None:
    print(json.dumps(obj, default=str))


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
