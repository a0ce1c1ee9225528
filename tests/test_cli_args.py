"""The console scripts' quick reader of a command line gives argparse's result,
or leaves the command line to argparse (cli.common.Command)."""

from __future__ import annotations

import contextlib
import io
import itertools
import random
import subprocess
import sys

import pytest

from bgjobs.cli import cancel, logs, run, status

# Words a command line of each script might hold: right, wrong, abbreviated, odd.
COMMON = ["--config", "c.yaml", "--config=c.yaml", "--config=", "--conf", "--json", "--json=1"]
COMMON += ["-h", "--help", "--", "-", "", "x y", "a=b", "-5", "5", "7.5", "--nope", "--nope=1"]
WORDS = {
    run: [
        *["jobs.example.ExampleJob", "handle", "--params", "--params=5", "--params=", "--params=-1"],
        *["--params=--x", "-p", "-p5", "-p=5", "--para", "--priority", "--priority=-5", "--priority=x"],
        *["--delay", "--delay=1.5", "--delay=nan", "--at", "2026-12-01T09:30:00Z", "--max-retries=2"],
        *["--max_retries=2", "--retry-delay", "0.5", "--timeout=3", "--wait", "--wait-timeout=1", "[1, 2]"],
    ],
    cancel: ["12", "--grace", "--grace=2", "--grace=-1", "--grace=x", "--gr=2", "abc"],
    status: ["3", "--status", "queued", "--status=failed", "--status=bogus", "--limit", "--limit=5", "-1"],
    logs: ["3", "--errors", "--follow", "-f", "--since=2h", "--since", "--level=warning", "--interval=0.1"],
}

# Well-formed pieces, so that many generated command lines are plain ones.
PLAIN = {
    run: (["C", "m"], [["--params=5"], ["-p", "x"], ["--priority", "3"], ["--wait"], ["--delay=2"]]),
    cancel: (["12"], [["--grace", "2"], ["--json"], ["--config=c.yaml"]]),
    status: ([], [["3"], ["--status", "queued"], ["--status=failed"], ["--limit=5"], ["--json"]]),
    logs: ([], [["3"], ["--errors"], ["-f"], ["--since", "2h"], ["--interval=0.1"], ["--level", "error"]]),
}


def outcome(parse, argv):
    """What a parser makes of argv: its values, or how it stopped (exit code)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            return {name: repr(value) for name, value in vars(parse(argv)).items()}  # nan == nan
        except SystemExit as exc:
            return ("exit", exc.code)


def command_lines(words, seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        yield [rng.choice(words) for _ in range(rng.randint(0, 6))]


@pytest.mark.parametrize("module", list(WORDS), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_quick_reader_agrees_with_argparse(module):
    command = module.build_parser()
    assert command.quick, "every argument of this script should be quick to read"
    reference = command.argparser()
    words = COMMON + WORDS[module]
    lines = [[]] + [[a, b] for a, b in itertools.product(words, repeat=2)]
    lines += list(command_lines(words, seed=7, count=3000))
    rng, (required, pieces) = random.Random(8), PLAIN[module]
    for _ in range(500):
        chosen = [rng.choice(pieces) for _ in range(rng.randint(0, 4))] + [[word] for word in required]
        rng.shuffle(chosen)
        lines.append([token for piece in chosen for token in piece])
    read = 0
    for argv in lines:
        quick = command._read(argv)
        if quick is None:
            continue  # left to argparse: nothing to compare
        read += 1
        assert outcome(lambda _, q=quick: q, argv) == outcome(reference.parse_args, argv), argv
    assert read > 400, "the quick reader should take the plain command lines"


def test_plain_command_lines_are_read_without_argparse():
    command = run.build_parser()
    args = command._read(["jobs.example.ExampleJob", "handle", "--params=5", "-p", "true", "--priority", "3"])
    assert args is not None
    assert (args.job_class, args.method, args.params, args.priority) == (
        "jobs.example.ExampleJob",
        "handle",
        ["5", "true"],
        3,
    )
    assert args.wait is False and args.config is None and args.delay is None
    code = (
        "import sys; from bgjobs.cli import run;"
        "run.build_parser().parse_args(['C', 'm', '--params=1', '--wait']);"
        "print(sorted(m for m in ('argparse', 'gettext') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_and_mistakes_still_go_through_argparse(capsys):
    command = cancel.build_parser()
    with pytest.raises(SystemExit) as exc:
        command.parse_args(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert "usage: job-cancel" in help_text and "--grace SECONDS" in help_text and "exit codes:" in help_text
    with pytest.raises(SystemExit) as exc:
        command.parse_args(["12", "--grace", "soon"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "job-cancel: error: argument --grace: invalid float value: 'soon'; see job-cancel --help\n"
    )
    # An abbreviation is argparse's to expand.
    assert command.parse_args(["12", "--gr", "2"]).grace == 2.0


def test_an_argument_only_argparse_reads_turns_the_quick_reader_off():
    command = run.build_parser()
    command.add_argument("--mode", required=True)
    assert not command.quick
    with pytest.raises(SystemExit):
        with contextlib.redirect_stderr(io.StringIO()):
            command.parse_args(["C", "m"])  # argparse: --mode is required
    assert command.parse_args(["C", "m", "--mode", "x"]).mode == "x"
