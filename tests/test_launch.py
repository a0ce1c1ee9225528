"""The launcher core: jobs run as detached processes, with retries and timeouts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from bgjobs import api
from bgjobs import spare as spares
from bgjobs.config import load_config
from bgjobs.executor import RUNNER_CODE, WAKER_CODE
from bgjobs.spare import SPARE_CODE
from tests.conftest import BIN, cmdline, gone_or_zombie, wait_until


def test_job_run_prints_id_and_job_succeeds(project):
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--params=hello", check=True)
    job_id = int(proc.stdout.strip())
    job = project.wait_final(job_id)
    assert job.status.value == "succeeded"
    assert json.loads(job.result) == "hello"
    assert project.events(job_id) == ["queued", "started", "succeeded"]


def test_wait_exit_codes_and_json(project):
    ok = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--wait", "--json")
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert body["status"] == "succeeded" and isinstance(body["id"], int)
    bad = project.cli("job-run", "testjobs.tasks.Tasks", "fail", "--wait")
    assert bad.returncode == 1
    assert "failed" in bad.stdout


def test_wait_timeout_gives_up_with_exit_6_and_the_job_runs_on(project):
    slow = project.cli(
        "job-run", "testjobs.tasks.Tasks", "sleep", "--params=30", "--wait", "--wait-timeout=0.3"
    )
    assert slow.returncode == 6, slow.stderr
    assert slow.stderr.count("\n") == 1 and "runs on" in slow.stderr and "job-cancel" in slow.stderr
    job_id = int(slow.stderr.split()[2])  # "error: job N is still ..."
    assert project.wait_status(job_id, "running").status.value == "running"
    project.cli("job-cancel", str(job_id), check=True)
    misuse = project.cli("job-run", "testjobs.tasks.Tasks", "ok", "--wait-timeout=5")
    assert misuse.returncode == 2 and misuse.stderr.count("\n") == 1 and "--wait" in misuse.stderr


def test_python_api_with_class_object(project):
    from testjobs.tasks import Tasks

    from bgjobs import run_background_job

    job_id = run_background_job(Tasks, "ok", "param1", config=project.config_path)
    assert isinstance(job_id, int)
    assert project.wait_final(job_id).status.value == "succeeded"


def test_exception_is_retried_then_failed_with_traceback(project):
    job_id = project.submit("fail", "kaput", max_retries=2)
    job = project.wait_final(job_id)
    assert job.status.value == "failed"
    assert job.attempt == 3 and job.exception == "ValueError" and job.error == "kaput"
    events = project.events(job_id)
    assert events.count("attempt_failed") == 3
    assert events.count("retry_scheduled") == 2
    assert events[-1] == "failed"
    errors = [r for r in project.records(errors=True) if r["job_id"] == job_id]
    tracebacks = [r["traceback"] for r in errors if r["event"] == "attempt_failed"]
    assert len(tracebacks) == 3 and all("ValueError: kaput" in tb for tb in tracebacks)
    assert all(r["level"] == "ERROR" for r in errors)


def test_retry_succeeds_on_second_attempt(project, tmp_path):
    job_id = project.submit("fail_then_ok", str(tmp_path / "marker"), max_retries=1)
    job = project.wait_final(job_id)
    assert job.status.value == "succeeded" and job.attempt == 2


def test_retry_delay_grows_with_backoff(project):
    project.write_config(retry_delay=0.3, retry_backoff=2, max_retries=2)
    job_id = project.submit("fail")
    project.wait_final(job_id)
    from datetime import datetime

    starts = [
        datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))
        for r in project.records()
        if r["job_id"] == job_id and r["event"] == "started"
    ]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 2
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6  # 0.3 * 2^0, then 0.3 * 2^1


@pytest.mark.parametrize(
    ("method", "exception", "detail"),
    [
        ("exit_hard", "ExitCode", "exited with code 3"),
        ("kill_self", "KilledBySignal", "SIGKILL"),
        ("segfault", "KilledBySignal", "SIGSEGV"),
    ],
)
def test_hard_deaths_are_recorded_and_retried(project, method, exception, detail):
    job_id = project.submit(method, max_retries=1)
    job = project.wait_final(job_id)
    assert job.status.value == "failed"
    assert job.attempt == 2
    assert job.exception == exception and detail in job.error
    assert job.exit_code == (3 if method == "exit_hard" else None)
    assert project.events(job_id).count("attempt_failed") == 2


def test_timeout_stops_attempt_and_counts_as_failure(project):
    project.write_config(cancel_grace=0.5)
    job_id = project.submit("sleep", 60, timeout=0.3, max_retries=1)
    job = project.wait_final(job_id)
    assert job.status.value == "failed"
    assert job.exception == "TimeoutError" and "timed out" in job.error
    assert project.events(job_id).count("timed_out") == 2


def test_async_method_runs_with_asyncio(project):
    job_id = project.submit("async_ok", "21")
    job = project.wait_final(job_id)
    assert job.status.value == "succeeded" and job.result == "42"


def test_output_goes_to_per_job_file(project):
    job_id = project.submit("print_lines", 3)
    project.wait_final(job_id)
    text = (project.root / "logs" / "jobs" / f"{job_id}.out").read_text()
    assert "line 0\nline 1\nline 2\n" in text and "to stderr" in text


def test_params_are_coerced_to_annotations(project, tmp_path):
    out = tmp_path / "typed.json"
    proc = project.cli(
        "job-run",
        "testjobs.tasks.Tasks",
        "typed",
        f"--params={out}",
        "--params=0",
        "--params=2.5",
        "--params=false",
        '--params=[1, "a"]',
        '--params={"k": 1}',
        "--wait",
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(out.read_text())
    assert got == {
        "n": 0,
        "x": 2.5,
        "flag": False,
        "items": [1, "a"],
        "opts": {"k": 1},
        "types": ["int", "float", "bool", "list", "dict"],
    }


def test_shell_metacharacters_are_passed_literally(project, tmp_path):
    out = tmp_path / "echo.json"
    nasty = ["$(touch pwned)", "; rm -rf /", "`id`", "a && b | c > d", "'\"*?~", "--params=x"]
    args = [f"--params={out}"] + [f"--params={v}" for v in nasty]
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "echo", *args, "--wait")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text()) == nasty
    assert not (project.root / "pwned").exists()
    assert not (project.root / "d").exists()


REFUSALS = [
    (["testjobs.tasks.NotListed", "run"], "not in allowed_classes"),
    (["testjobs.tasks.Nope", "run"], "not in allowed_classes"),
    (["testjobs.tasks.Tasks", "_private"], "private"),
    (["testjobs.tasks.Tasks", "__init__"], "private"),
    (["testjobs.tasks.Tasks", "__class__"], "private"),
    (["testjobs.tasks.Tasks", "mro"], "has no method"),
    (["testjobs.tasks.Tasks", "__subclasshook__"], "private"),
    (["testjobs.tasks.Tasks", "not_callable"], "not a callable"),
    (["testjobs.tasks.Tasks", "missing"], "has no method"),
    (["testjobs.tasks.Tasks", "sleep", "--params=1", "--params=2"], "takes 0 to 1 params"),
    (["testjobs.tasks.Tasks", "typed", "--params=x"], "takes 6 params"),
    (["testjobs.tasks.Tasks", "sleep", "--params=soon"], "must be float"),
    (
        [
            "testjobs.tasks.Tasks",
            "typed",
            "--params=p",
            "--params=1.5",
            "--params=1",
            "--params=true",
            "--params=[]",
            "--params={}",
        ],
        "param n must be int",
    ),
    (
        [
            "testjobs.tasks.Tasks",
            "typed",
            "--params=p",
            "--params=1",
            "--params=1",
            "--params=maybe",
            "--params=[]",
            "--params={}",
        ],
        "param flag must be bool",
    ),
    (
        [
            "testjobs.tasks.Tasks",
            "typed",
            "--params=p",
            "--params=1",
            "--params=1",
            "--params=true",
            "--params=[",
            "--params={}",
        ],
        "param items must be list",
    ),
    (["testjobs.tasks.NeedsArgs", "run"], "cannot be created without arguments"),
]


@pytest.mark.parametrize(("args", "message"), REFUSALS)
def test_refusals_exit_2_with_no_row_and_a_rejected_record(project, args, message):
    proc = project.cli("job-run", *args)
    assert proc.returncode == 2, proc.stdout
    assert message in proc.stderr
    assert proc.stderr.count("\n") == 1  # one clear line
    assert project.rt.store.list_jobs() == []
    rejected = project.records(errors=True)
    assert [r["event"] for r in rejected] == ["rejected"]
    assert rejected[0]["job_id"] is None and message in rejected[0]["message"]
    # job-run's spare runner (started before the arguments were checked) exits unused.
    wait_until(lambda: project.processes() == [], what="no process left in the project")


def test_a_bad_json_param_is_refused_where_nothing_has_imported_json(project):
    # A job module that does not import json, and a document that starts well:
    # (bgjobs once drove the C scanner itself, whose error path failed here.)
    (project.root / "testjobs" / "plain.py").write_text(
        "class Plain:\n    def run(self, items: list, opts: dict) -> None:\n        pass\n"
    )
    project.write_config(allowed_classes=["testjobs.plain.Plain"])
    for params, message in (
        (["[1", "{}"], "param items must be list"),
        (["[]", '{"k" 1}'], "param opts must be dict"),
    ):
        proc = project.cli("job-run", "testjobs.plain.Plain", "run", *(f"--params={p}" for p in params))
        assert (proc.returncode, proc.stderr.count("\n")) == (2, 1), proc.stderr
        assert message in proc.stderr
    assert project.rt.store.list_jobs() == []


def test_a_failure_too_long_to_report_whole_is_cut_and_still_reported(project):
    # 20,000 snowmen: 120 KB as JSON escapes, twice over (the error, and the
    # traceback that ends with it), against a report limit of 60 KiB.
    job_id = project.submit("fail", "\u2603" * 20_000)
    job = project.wait_final(job_id)
    assert (job.status.value, job.exception) == ("failed", "ValueError")
    assert job.error.startswith("\u2603" * 100) and len(job.error) < 20_000
    failed = [r for r in project.records(errors=True) if r["job_id"] == job_id and r.get("traceback")]
    assert failed and failed[-1]["traceback"].rstrip().endswith("\u2603" * 100)


def test_inherited_method_from_a_listed_class_base_is_allowed(project):
    job_id = project.submit("inherited")
    assert project.wait_final(job_id).status.value == "succeeded"


def test_static_method_runs(project):
    job_id = project.submit("static_ok")
    assert project.wait_final(job_id).result == '"static"'


def test_per_class_overrides(project):
    project.write_config(
        allowed_classes=[
            {
                "class": "testjobs.tasks.Tasks",
                "methods": ["ok", "fail"],
                "max_retries": 2,
                "timeout": 7,
                "priority": 3,
            }
        ],
    )
    job_id = project.submit("fail")
    job = project.wait_final(job_id)
    assert (job.max_attempts, job.timeout, job.priority) == (3, 7.0, 3)
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "sleep")
    assert proc.returncode == 2 and "not in its allowed methods" in proc.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_retries: [1\n", "line 2 column 1: malformed YAML: did not find expected ',' or ']'"),
        ("retry_delay: -1\n", "'retry_delay'"),
        ("retry_delay: .nan\n", "'retry_delay'"),
        ("retry_delay: fast\n", "'retry_delay'"),
        ("max_retries: 1.5\n", "'max_retries'"),
        ("colour: blue\n", "unknown key 'colour'"),
        ("allowed_classes: jobs.X\n", "'allowed_classes'"),
        ("allowed_classes:\n  - {class: a.B, retries: 2}\n", "unknown key 'allowed_classes[0].retries'"),
        ("- just\n- a list\n", "top level must be a mapping"),
    ],
)
def test_bad_config_exits_2_naming_file_and_key(project, text, message):
    project.config_path.write_text(text)
    for cmd in (["job-run", "testjobs.tasks.Tasks", "ok"], ["job-status"]):
        proc = project.cli(*cmd)
        assert proc.returncode == 2
        assert str(project.config_path) in proc.stderr and message in proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr  # one line, like every refusal
    assert not (project.root / "state" / "jobs.sqlite3").exists()


def test_missing_config_and_config_flag(project, tmp_path):
    proc = project.cli("job-status", "--config", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "no such config file" in proc.stderr
    proc = project.cli("job-status", "--config", str(project.config_path))
    assert proc.returncode == 0


def test_relative_paths_resolve_against_config_folder(project, tmp_path):
    project.write_config(log_dir="mylogs", state_dir="mystate")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = project.env
    proc = subprocess.run(
        [str(BIN / "job-run"), "testjobs.tasks.Tasks", "ok", "--wait"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (project.root / "mylogs" / "background_jobs.log").exists()
    assert (project.root / "mystate" / "jobs.sqlite3").exists()
    assert not (elsewhere / "mylogs").exists()


def test_job_survives_the_callers_exit(project, tmp_path):
    marker = tmp_path / "started.jsonl"
    code = (
        "import sys; from bgjobs import api;"
        f"print(api.run_background_job('testjobs.tasks.Tasks', 'record_start', {str(marker)!r}, 1.0,"
        f" config={str(project.config_path)!r}))"
    )
    proc = project.python(code, timeout=30)
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout)
    # The caller is gone; the job still runs to the end.
    assert project.wait_final(job_id).status.value == "succeeded"
    assert marker.exists()


@pytest.mark.slow
def test_fifty_concurrent_job_runs(project):
    project.write_config(max_concurrent=4)

    def launch(i):
        return project.cli("job-run", "testjobs.tasks.Tasks", "ok", f"--params=v{i}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        procs = list(pool.map(launch, range(50)))
    assert all(p.returncode == 0 for p in procs), [p.stderr for p in procs if p.returncode]
    ids = [int(p.stdout) for p in procs]
    assert len(set(ids)) == 50
    for job_id in ids:
        assert project.wait_final(job_id, timeout=60).status.value == "succeeded"
    records = project.records()  # every line parses
    assert sum(r["event"] == "succeeded" for r in records) == 50


def test_job_status_table_and_json(project):
    job_id = project.submit("ok", "x")
    project.wait_final(job_id)
    table = project.cli("job-status", check=True).stdout
    assert "Tasks.ok" in table and "succeeded" in table
    body = json.loads(project.cli("job-status", str(job_id), "--json", check=True).stdout)
    for key in (
        "id",
        "status",
        "class",
        "method",
        "params",
        "attempts",
        "error",
        "created_at",
        "started_at",
        "finished_at",
    ):
        assert key in body
    assert body["params"] == ["x"] and body["attempts"] == 1
    missing = project.cli("job-status", "999")
    assert missing.returncode == 3 and "no job 999" in missing.stderr


def test_help_is_complete(project):
    for cmd, words in {
        "job-run": [
            "--params",
            "--priority",
            "--delay",
            "--at",
            "--max-retries",
            "--retry-delay",
            "--timeout",
            "--wait",
            "--json",
            "--config",
            "exit codes",
        ],
        "job-status": ["--json", "--config", "--status", "exit codes"],
        "job-cancel": ["--grace", "--json", "--config", "exit codes"],
    }.items():
        out = project.cli(cmd, "--help", check=True).stdout
        for word in words:
            assert word in out, f"{cmd} --help lacks {word}"


def test_unwritable_log_does_not_kill_the_job(project):
    logs = project.root / "logs"
    logs.mkdir()
    (logs / "background_jobs.log").mkdir()  # a directory where the file should be
    job_id = project.submit("ok")
    assert project.wait_status(job_id, "succeeded", "failed").status.value == "succeeded"


def test_core_does_not_import_pandas_or_streamlit(project):
    code = (
        "import sys, bgjobs.cli.run, bgjobs.runner, bgjobs.api, bgjobs.cli.status, bgjobs.cli.cancel;"
        "bad = [m for m in ('pandas', 'streamlit', 'pyarrow') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Modules the hot paths (job-run, job-cancel, the runner up to the job's first
# line) have no use for: the heavy ones, and those only some commands need.
# (The core imports the standard library plainly: json, enum, typing, signal,
# threading and, at its first connection, sqlite3 are loaded.)
NOT_AT_START_UP = [
    "pathlib",
    "zlib",
    "getpass",
    "runpy",
    "yaml",
    "traceback",
    "inspect",
    "dataclasses",
    "shutil",
    "subprocess",
    "asyncio",
    "pandas",
    "streamlit",
    "pyarrow",
    "argparse",
    "gettext",
]
# And what job-run's own process must not load either: it never opens the store
# (its forked runner does).
NOT_IN_JOB_RUN = ["_sqlite3"]
PROBE = """
import sys

LOADED_BEFORE_ME = set(sys.modules)  # what the runner (and the attempt) had loaded


class Probe:
    def loaded(self, names: list) -> list:
        return sorted(n for n in names if n in LOADED_BEFORE_ME)
"""


def test_start_up_imports_stay_lean(project):
    (project.root / "testjobs" / "probe.py").write_text(PROBE)
    project.write_config(allowed_classes=["testjobs.probe.Probe", "testjobs.tasks.Tasks"])
    # What bgjobs adds, not what this interpreter loads anyway (a setuptools
    # editable install, say, imports pathlib in every interpreter of its venv).
    at_start = set(project.python("import sys; print(' '.join(sys.modules))").stdout.split())
    ours = [name for name in NOT_AT_START_UP if name not in at_start]
    # The runner, as a job sees it on its first line (the attempt is the runner's
    # fork): one the API spawns, and job-run's, a fork of job-run.
    job = project.wait_final(project.submit("loaded", ours, cls="testjobs.probe.Probe"))
    assert job.status.value == "succeeded", job.error
    assert json.loads(job.result) == []
    job_id = int(
        project.cli(
            "job-run", "testjobs.probe.Probe", "loaded", f"--params={json.dumps(ours)}", check=True
        ).stdout
    )
    job = project.wait_final(job_id)
    assert job.status.value == "succeeded", job.error
    assert json.loads(job.result) == []
    # job-run and job-cancel as installed, with every module each one imports
    # listed by -X importtime.
    for args in (["job-run", "testjobs.probe.Probe", "loaded", "--params=[]"], ["job-cancel", str(job_id)]):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", str(BIN / args[0]), *args[1:]],
            env=project.env,
            cwd=project.root,
            capture_output=True,
            text=True,
        )
        lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
        imported = {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # [0] is the header
        assert "bgjobs.cli.common" in imported, proc.stderr
        assert sorted(set(ours) & imported) == [], (args, (BIN / args[0]).read_text())
        if args[0] == "job-run":
            assert sorted(set(NOT_IN_JOB_RUN) & imported - at_start) == [], imported


@pytest.mark.parametrize("launch", ["job-run", "api", "delayed"])
def test_a_runner_keeps_none_of_the_callers_other_fds(project, launch):
    """A caller's inheritable fd (`3>file`, a CI runner's pipe) must not stay open
    in the runner, its waker or its job: a pipe's reader would wait for them."""
    import select

    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        if launch == "job-run":  # the runner is job-run's fork
            proc = subprocess.run(
                [str(BIN / "job-run"), "testjobs.tasks.Tasks", "sleep", "--params=30"],
                env=project.env,
                cwd=project.root,
                pass_fds=(w,),
                capture_output=True,
                text=True,
                timeout=60,
            )
            job_id = int(proc.stdout)
        elif launch == "api":  # spawned, with whatever this process has open
            project.submit("sleep", 30)
            job_id = project.submit("sleep", 30)  # and a warm spare booted for the next launch
        else:  # the waker, spawned to start it when due
            job_id = project.submit("sleep", 30, delay=60)
        wanted = "queued" if launch == "delayed" else "running"
        project.wait_status(job_id, wanted)
        if launch == "delayed":
            wait_until(lambda: any(WAKER_CODE in cmdline(p) for p in project.processes()), what="a waker")
    finally:
        os.close(w)
    readable, _, _ = select.select([r], [], [], 10)
    assert readable and os.read(r, 1) == b"", "a process of the job still holds the caller's pipe"
    os.close(r)
    assert project.job(job_id).status.value == wanted


def test_runner_argv_holds_only_the_job_id(project):
    job_id = project.submit("sleep", 30)
    project.wait_status(job_id, "running")

    def runner_cmdline():
        for p in project.processes():
            cmd = cmdline(p)
            if RUNNER_CODE in cmd:
                return cmd
        return None

    cmd = wait_until(runner_cmdline, what="the runner process")
    # Started for this job, or started ahead of it (a warm spare): no params either way.
    assert cmd[1:] in (["-c", RUNNER_CODE, str(job_id)], ["-c", SPARE_CODE])


def test_parsed_config_is_cached_until_the_file_changes(project, tmp_path, monkeypatch):
    env = dict(project.env, BGJOBS_CACHE_DIR=str(tmp_path / "cache"))
    code = (
        "import sys; from bgjobs.config import load_config;"
        f"c = load_config({str(project.config_path)!r}); print(c.max_concurrent, 'yaml' in sys.modules)"
    )

    def load():
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        return proc.stdout.split(), proc

    assert load()[0] == ["8", "True"]  # parsed, and cached
    assert load()[0] == ["8", "False"]  # from the cache: PyYAML not even imported
    project.write_config(max_concurrent=3)
    assert load()[0] == ["3", "True"]  # the file changed: parsed again
    project.config_path.write_text("max_concurrent: [\n")
    out, proc = load()
    assert proc.returncode != 0 and "malformed YAML" in proc.stderr


def test_callers_secrets_do_not_reach_the_job(project, tmp_path, monkeypatch):
    monkeypatch.setenv("BGJOBS_DASHBOARD_PASSWORD", "hunter2")
    out = tmp_path / "env.json"
    job_id = project.submit("dump_env", str(out))
    project.wait_final(job_id)
    names = json.loads(out.read_text())
    assert "BGJOBS_DASHBOARD_PASSWORD" not in names and "BGJOBS_LOCK_FD" not in names


# --- job-run's runner, a fork of job-run ------------------------------------------
# These tests read the store without dispatching (project.wait_status dispatches),
# so that only job-run, its runner and the waker can start a job.


def _status(project, job_id: int) -> str:
    return project.job(job_id).status.value


def _running(project, job_id: int):
    return wait_until(lambda: (j := project.job(job_id)).pid and j, what="the attempt to start")


def test_job_run_forks_its_runner_and_titles_it_without_the_params(project, tmp_path):
    secret = f"--params={tmp_path / 'hunter2-not-for-ps'}"
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "record_start", secret, "--params=30", check=True)
    job_id = int(proc.stdout)
    job = _running(project, job_id)  # job-run has exited; its output was not held open
    runner, attempt = psutil.Process(job.runner_pid), psutil.Process(job.pid)
    assert RUNNER_CODE not in runner.cmdline()  # forked, not spawned: no interpreter booted
    for p in (runner, attempt):  # the runner and its attempt, as ps and top show them
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            assert f.read() == f"bgjobs.runner {job_id}\0".encode()
        assert p.name() == "bgjobs.runner"
    # Its own session, out of job-run's (and so out of a terminal's reach).
    assert os.getsid(runner.pid) == runner.pid != os.getsid(0)
    api.cancel_job(job_id, grace=0.5, config=project.config_path)


def test_a_title_longer_than_the_command_line_is_cut_to_fit(project):
    code = (
        "from bgjobs import procs; ok = procs.set_title('t' * 100_000, 'a-name-longer-than-fifteen')\n"
        "print(ok, open('/proc/self/cmdline', 'rb').read().count(b't'), open('/proc/self/comm').read())"
    )
    proc = project.python(code)
    ok, kept, name = proc.stdout.split()
    assert ok == "True" and name == "a-name-longer-t"
    # Cut to the argv strings the kernel reads: python, -c and this code, less the final NUL.
    assert int(kept) == len(sys.executable) + len("-c") + len(code) + 2


def _job_run(project, *args: str, env: dict | None = None, shell_redirect: str = "") -> str:
    """job-run's stdout, run with `env` added (and, through sh, a redirection such as `<&-`)."""
    argv = [str(BIN / "job-run"), *args]
    if shell_redirect:
        argv = ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", *argv]
    # `env` first: what comes after a variable the fork erases must still be read.
    proc = subprocess.run(
        argv, env={**(env or {}), **project.env}, cwd=project.root, capture_output=True, text=True
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


def test_job_runs_forked_runner_gets_a_runners_environment(project, tmp_path):
    out, proc_out = tmp_path / "env.json", tmp_path / "proc-environ.json"
    secrets = {"BGJOBS_DASHBOARD_PASSWORD": "hunter2", "BGJOBS_LOCK_FD": "9"}
    job_id = int(_job_run(project, "testjobs.tasks.Tasks", "dump_env", f"--params={out}", env=secrets))
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the job to run")
    names = json.loads(out.read_text())
    assert "BGJOBS_DASHBOARD_PASSWORD" not in names and "BGJOBS_LOCK_FD" not in names
    assert "BGJOBS_CONFIG" in names  # as a spawned runner's
    # Nor in the environment /proc shows (and `ps e`): what job-run started with,
    # in memory the fork and its attempt inherit.
    job_id = int(
        _job_run(project, "testjobs.tasks.Tasks", "dump_proc_environ", f"--params={proc_out}", env=secrets)
    )
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the job to run")
    seen = json.loads(proc_out.read_text())
    assert set(seen) == {"attempt", "runner"}
    for environ in seen.values():
        assert "hunter2" not in environ and "BGJOBS_DASHBOARD_PASSWORD" not in environ
        # Read as psutil reads it, to the first empty entry: nothing after the
        # erased one is hidden.
        entries = environ.split("\0")
        entries = entries[: entries.index("")] if "" in entries else entries
        assert f"BGJOBS_CONFIG={project.config_path}" in entries


def test_job_run_forks_with_a_standard_fd_closed_and_exits_cleanly_without_stdout(project):
    # A pipe made while fd 0 is closed takes it; the fork keeps its pipes above 2.
    job_id = int(_job_run(project, "testjobs.tasks.Tasks", "sleep", "--params=30", shell_redirect="<&-"))
    job = _running(project, job_id)
    assert psutil.Process(job.runner_pid).name() == "bgjobs.runner"  # forked, not the fallback
    api.cancel_job(job_id, grace=0.5, config=project.config_path)
    # Without stdout or stderr, Python's stream is None: job-run opens one on its
    # fd before it forks, and the fork runs the job (whose output still goes to
    # its file), not lost and retried.
    for closed in (">&-", "2>&-"):
        out = _job_run(project, "testjobs.tasks.Tasks", "print_lines", "--wait", shell_redirect=closed)
        job = api.list_jobs(config=project.config_path, refresh=False)[0]
        assert out == ("" if closed == ">&-" else f"{job.id} succeeded\n")
        assert job.status.value == "succeeded" and job.attempt == 1
        assert "line 0" in (project.root / "logs" / "jobs" / f"{job.id}.out").read_text()
    assert "lost" not in {r["event"] for r in project.records()}


@pytest.mark.parametrize("script", ["job-run", "job-status", "job-cancel", "job-logs"])
def test_an_error_without_stderr_never_lands_on_stdout(project, script):
    """Python's sys.stderr is None with fd 2 closed, and print(file=None) writes to
    stdout: in `id=$(job-run ... 2>&-)` the error would pass for the job's id."""
    args = {
        "job-run": "jobs.example.Nope handle",
        "job-status": "999",
        "job-cancel": "999",
        "job-logs": "999",
    }[script]
    proc = subprocess.run(
        f"{BIN / script} {args} 2>&-",
        shell=True,
        env=project.env,
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and proc.stdout == "", proc.stdout


def test_job_run_of_a_delayed_job_leaves_it_to_the_waker(project, tmp_path):
    marker = tmp_path / "starts.jsonl"
    before = time.time()
    proc = project.cli(
        "job-run", "testjobs.tasks.Tasks", "record_start", f"--params={marker}", "--delay=1", check=True
    )
    job_id = int(proc.stdout)
    # The fork records it, finds nothing due, dispatches (which starts the waker) and exits.
    wait_until(lambda: _status(project, job_id) == "succeeded", 15, what="the delayed job to run")
    assert json.loads(marker.read_text().splitlines()[0])["t"] >= before + 1


def test_a_refused_job_run_leaves_its_fork_to_exit_with_nothing_done(project):
    db = load_config(project.config_path).db_path
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "_private")
    assert proc.returncode == 2 and "private" in proc.stderr
    wait_until(lambda: project.processes() == [], what="job-run's fork to exit")
    assert not os.path.exists(db)  # the fork opens the store only if there is one already
    assert api.list_jobs(config=project.config_path, refresh=False) == []
    project.wait_final(project.submit("ok"))  # now there is one
    proc = project.cli("job-run", "testjobs.tasks.Tasks", "_private")
    assert proc.returncode == 2
    wait_until(lambda: project.processes() == [], what="job-run's fork to exit")
    assert len(api.list_jobs(config=project.config_path, refresh=False)) == 1


def _running_in_a_spawned_runner(project, proc):
    """The job whose id `proc` printed last, once it runs, in a runner spawned for it."""
    assert proc.returncode == 0, proc.stderr
    job = _running(project, int(proc.stdout.split()[-1]))
    assert psutil.Process(job.runner_pid).cmdline()[1:] == ["-c", RUNNER_CODE, str(job.id)]
    return job


def _single_job(project, proc) -> int:
    """The id job-run printed, once it has run; the only row in the store."""
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout)  # one id, once: no second job-run printed one
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the job to run after all")
    assert [job.id for job in api.list_jobs(config=project.config_path, refresh=False)] == [job_id]
    return job_id


@pytest.mark.parametrize("error", ["OSError(24, 'Too many open files')", "ImportError('no runner')"])
def test_a_fork_that_fails_before_it_starts_exits_and_never_acts_as_job_run(project, error):
    # An error in the child before the runner's code has begun (an OSError would
    # even look like a failed fork to fork_runner): the child must exit, never go
    # on in job-run's code, where it would record the job a second time.
    code = (
        "from bgjobs import fork; from bgjobs.cli.run import main\n"
        "def failing_detach(*pipes):  # the child's first step after setsid\n"
        f"    raise {error}\n"
        "fork.detach = failing_detach\n"
        "main(['testjobs.tasks.Tasks', 'ok', '--params=once'], fork.start())"
    )
    _single_job(project, project.python(code))


@pytest.mark.parametrize("dies", ["before its commit", "after its commit"])
def test_a_fork_that_dies_around_its_insert_leaves_one_job_that_runs(project, dies):
    # The fork sends the row's id before its commit and the row after it. If it
    # dies in between, job-run finds the row if it was committed (and
    # dispatches it), or records the job itself: never twice, never not at all.
    nth = 1 if dies == "before its commit" else 2  # _send: 1 the id, 2 the row
    code = (
        "import os; import bgjobs.fork as runner\n"
        "send, sent = runner.send, []\n"
        "def dying_send(fd, line):\n"
        "    sent.append(line)\n"
        "    if len(sent) == 1: send(fd, line)\n"
        f"    if len(sent) == {nth}: os._exit(9)\n"
        "runner.send = dying_send\n"
        "from bgjobs.fork import start as fork_runner; from bgjobs.cli.run import main\n"
        "main(['testjobs.tasks.Tasks', 'ok', '--params=once'], fork_runner())"
    )
    _single_job(project, project.python(code))


def test_a_fork_that_dies_before_its_commit_never_lends_its_id_to_another_launch(project):
    # The id the fork sent was rolled back with its insert, and another launch
    # got it before job-run looked: that row is not job-run's, which records its own.
    code = (
        "import os; import bgjobs.fork as runner\n"
        "send = runner.send\n"
        "def dying_send(fd, line):\n"
        "    send(fd, line)\n"
        "    os._exit(9)\n"
        "runner.send = dying_send\n"
        "from bgjobs.fork import start as fork_runner; from bgjobs.cli.run import main\n"
        "runner_ = fork_runner()\n"
        "from bgjobs import api; from bgjobs.store import Store\n"
        "get = Store.get\n"
        "def get_after_another_launch(self, job_id):\n"
        "    Store.get = get\n"
        "    from bgjobs import launcher; from bgjobs.wiring import wire; rt = wire()\n"
        "    print('other', launcher.insert_job(rt, launcher.prepare(rt, 'testjobs.tasks.Tasks', 'ok', ['other'])).id)\n"
        "    return get(self, job_id)\n"
        "Store.get = get_after_another_launch\n"
        "main(['testjobs.tasks.Tasks', 'ok', '--params=mine'], runner_)"
    )
    proc = project.python(code)
    assert proc.returncode == 0, proc.stderr
    (_, other), (mine,) = (line.split() for line in proc.stdout.splitlines())
    assert other != mine
    wait_until(lambda: _status(project, int(mine)) == "succeeded", what="job-run's own job to run")
    assert project.job(int(mine)).result == '"mine"' and project.job(int(other)).params == ("other",)


def test_a_fork_that_fails_after_its_claim_requeues_the_job_for_a_spawned_runner(project):
    # job-run has printed the id and gone: the job must neither wait for the
    # next command's dispatch nor be found lost and retried.
    code = (
        "import bgjobs.procs\n"
        "def broken_title(title, name): raise RuntimeError('no title today')\n"
        "bgjobs.procs.set_title = broken_title\n"
        "from bgjobs.fork import start as fork_runner; from bgjobs.cli.run import main\n"
        "main(['testjobs.tasks.Tasks', 'ok', '--params=once'], fork_runner())"
    )
    job_id = _single_job(project, project.python(code))
    assert project.job(job_id).attempt == 1
    assert "lost" not in {r["event"] for r in project.records()}


def test_a_fork_that_reads_the_config_differently_records_nothing(project):
    # The file changed between job-run's read and the fork's: job-run records.
    code = (
        "from bgjobs import fork, launcher; from bgjobs.wiring import wire\n"
        "from bgjobs.fork import start as fork_runner\n"
        f"runner, rt = fork_runner(), wire({str(project.config_path)!r})\n"
        "runner.use_config(rt.config._replace(max_concurrent=99))\n"
        "job = fork.submit(rt, launcher.prepare(rt, 'testjobs.tasks.Tasks', 'sleep', [30]), runner)\n"
        "print(job.id)"
    )
    job = _running_in_a_spawned_runner(project, project.python(code))
    assert len(api.list_jobs(config=project.config_path, refresh=False)) == 1
    api.cancel_job(job.id, grace=0.5, config=project.config_path)


def test_job_run_records_and_dispatches_itself_when_its_fork_is_gone(project):
    code = (
        "import os, signal; from bgjobs.fork import start as fork_runner; from bgjobs.cli.run import main\n"
        "runner = fork_runner(); os.kill(runner.pid, signal.SIGKILL); os.waitpid(runner.pid, 0)\n"
        "main(['testjobs.tasks.Tasks', 'ok', '--params=fallback'], runner)"
    )
    proc = project.python(code)
    assert proc.returncode == 0, proc.stderr
    job_id = int(proc.stdout.split()[-1])
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the job to run after all")
    assert project.job(job_id).result == '"fallback"'


def test_where_the_title_cannot_be_set_the_job_goes_to_a_spawned_runner(project):
    # As if the kernel refused the write to /proc/self/mem: ps would show the
    # params for the job's whole life, so the fork hands the job on.
    code = (
        "import bgjobs.procs; bgjobs.procs.set_title = lambda title, name: False\n"
        "from bgjobs.fork import start as fork_runner; from bgjobs.cli.run import main\n"
        "main(['testjobs.tasks.Tasks', 'sleep', '--params=30'], fork_runner())"
    )
    job = _running_in_a_spawned_runner(project, project.python(code))
    api.cancel_job(job.id, grace=0.5, config=project.config_path)


def test_job_run_with_a_second_thread_does_not_fork(project):
    code = (
        "import threading; threading.Thread(target=threading.Event().wait, daemon=True).start()\n"
        "from bgjobs.fork import start as fork_runner; print(fork_runner())"
    )
    proc = project.python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None"


def test_a_job_run_started_with_sigchld_ignored_still_sees_its_job_succeed(project):
    # An ignored SIGCHLD is inherited across exec; a runner that kept it would
    # find its attempt already reaped, and take a succeeded job for lost.
    code = (
        "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
        f"os.execv({str(BIN / 'job-run')!r}, ['job-run', 'testjobs.tasks.Tasks', 'ok', '--wait'])"
    )
    proc = project.python(code)
    assert proc.returncode == 0, proc.stderr
    job_id, status = proc.stdout.split()
    assert status == "succeeded" and project.job(int(job_id)).attempt == 1


def test_job_run_wait_reaps_a_fork_that_is_done_before_the_job(project):
    # A delayed job: the fork records it and exits; job-run waits on.
    proc = subprocess.Popen(
        [str(BIN / "job-run"), "testjobs.tasks.Tasks", "ok", "--delay=3", "--wait"],
        env=project.env,
        cwd=project.root,
        stdout=subprocess.PIPE,
        text=True,
    )
    job_run = psutil.Process(proc.pid)
    wait_until(lambda: job_run.children(), what="job-run's fork")
    wait_until(lambda: job_run.children() == [], what="the fork to be reaped, not left a zombie")
    assert proc.poll() is None  # job-run still waits
    assert proc.communicate(timeout=30)[0].split()[1] == "succeeded"


def test_a_runner_never_has_a_thread_when_it_forks(project):
    # After a second, the runner starts the waker as its watchdog. It reaps it in
    # its own loop: a thread in a process that forks attempts would be unsafe.
    job_id = project.submit("sleep", 30, max_retries=0)
    job = wait_until(lambda: (j := project.job(job_id)).pid and j, what="the attempt to start")
    runner = psutil.Process(job.runner_pid)  # recorded by the runner itself with the attempt
    wait_until(lambda: any(WAKER_CODE in cmdline(p) for p in project.processes()), what="the watchdog waker")
    assert runner.num_threads() == 1
    api.cancel_job(job_id, grace=0.5, config=project.config_path)


# --- the Python API's warm spare ------------------------------------------------


def _ready_spare() -> int:
    return wait_until(lambda: spares.warm_spare_pid(ready=True), what="a warm spare to boot")


def _launch_twice(project) -> None:
    """A process keeps a warm spare from its second launch on."""
    for word in ("first", "second"):
        project.wait_final(project.submit("ok", word))


def test_the_api_keeps_a_warm_spare_that_runs_the_next_launch(project):
    _launch_twice(project)
    spare = _ready_spare()
    assert psutil.Process(spare).cmdline()[1:] == ["-c", SPARE_CODE]
    # Nobody else may take the job first: a runner looking for its next job, or
    # the waker's tick (both gone soon after the earlier jobs are done). The idle
    # spare is not listed: it has not entered the project yet.
    wait_until(lambda: project.processes() == [], what="the earlier runners and the waker to exit")
    job_id = project.submit("sleep", 30)
    job = wait_until(lambda: (j := project.job(job_id)).pid and j, what="the job to start")
    assert job.runner_pid == spare  # the spare became its runner
    new = _ready_spare()
    assert new != spare  # and a new one boots for the launch after


def test_a_warm_spare_gives_the_job_the_callers_environment_of_now(project, tmp_path, monkeypatch):
    _launch_twice(project)
    _ready_spare()  # booted with the environment of then
    monkeypatch.setenv("BGJOBS_SET_LATER", "yes")
    monkeypatch.setenv("BGJOBS_DASHBOARD_PASSWORD", "hunter2")
    out = tmp_path / "env.json"
    project.wait_final(project.submit("dump_env", str(out)))
    names = json.loads(out.read_text())
    assert "BGJOBS_SET_LATER" in names and "BGJOBS_DASHBOARD_PASSWORD" not in names


def test_a_warm_spare_with_no_free_slot_takes_nothing_and_stays(project):
    _launch_twice(project)
    blocker = project.fill_slots()
    spare = _ready_spare()
    job_id = project.submit("ok", "later")
    assert project.job(job_id).status.value == "queued"
    assert spares.warm_spare_pid() == spare  # it answered idle, and waits for the next launch
    api.cancel_job(blocker, config=project.config_path)
    assert project.wait_final(job_id).status.value == "succeeded"


def test_a_dead_warm_spare_is_replaced_and_the_launch_still_runs(project):
    _launch_twice(project)
    spare = _ready_spare()
    os.kill(spare, signal.SIGKILL)
    wait_until(lambda: gone_or_zombie(spare), what="the spare to die")
    job_id = project.submit("ok", "after")
    assert project.wait_final(job_id).status.value == "succeeded"
    assert project.job(job_id).runner_pid != spare
    assert _ready_spare() != spare


def test_warm_spare_false_keeps_none(project):
    project.write_config(warm_spare=False)
    before = spares.warm_spare_pid()  # one per process: an earlier test's, maybe
    job_id = project.submit("sleep", 30)
    job = wait_until(lambda: (j := project.job(job_id)).pid and j, what="the job to start")
    assert psutil.Process(job.runner_pid).cmdline()[1:] == ["-c", RUNNER_CODE, str(job_id)]  # spawned for it
    assert spares.warm_spare_pid() == before  # neither used nor started


def test_a_warm_spare_exits_with_its_caller_and_is_not_inherited_by_a_fork(project):
    code = (
        "import os; from bgjobs import api, spare\n"
        "api.run_background_job('testjobs.tasks.Tasks', 'ok', 'x')\n"
        "assert spare.warm_spare_pid() is None  # one launch: maybe a one-shot script\n"
        "api.run_background_job('testjobs.tasks.Tasks', 'ok', 'y')\n"
        "pid = spare.warm_spare_pid()\n"
        "ends = sorted(spare._pipe_ends)  # the spare's pipes, as this process holds them\n"
        "def is_open(fd):\n"
        "    try:\n"
        "        return os.fstat(fd) is not None\n"
        "    except OSError:\n"
        "        return False\n"
        "assert ends and all(map(is_open, ends))\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    os._exit(0 if spare.warm_spare_pid() is None and not any(map(is_open, ends)) else 1)\n"
        "print(pid, os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))\n"
    )
    proc = project.python(code)
    assert proc.returncode == 0, proc.stderr
    spare, child_status = map(int, proc.stdout.split())
    assert child_status == 0  # the forked child had no spare of its parent's, nor its pipes
    # Its caller has exited: the spare reads end of input and exits, unused.
    wait_until(lambda: gone_or_zombie(spare), what="the spare to exit with its caller")


def test_a_fork_never_falls_between_making_a_spare_pipe_and_noting_it(project):
    # Another thread forks while _pipe() has made a pipe but not yet noted its
    # ends: the fork must wait, or the child keeps copies it does not know of.
    code = (
        "import os, threading\n"
        "from bgjobs import spare\n"
        "real_pipe2, made, is_made, go_on = os.pipe2, [], threading.Event(), threading.Event()\n"
        "def paused_pipe2(flags):\n"
        "    made.extend(real_pipe2(flags))\n"
        "    is_made.set()\n"
        "    go_on.wait(10)\n"
        "    return tuple(made)\n"
        "os.pipe2 = paused_pipe2\n"
        "maker = threading.Thread(target=spare._pipe)\n"
        "maker.start()\n"
        "assert is_made.wait(10)\n"
        "threading.Timer(0.2, go_on.set).start()  # the maker goes on while the fork waits for it\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    def is_open(fd):\n"
        "        try:\n"
        "            return os.fstat(fd) is not None\n"
        "        except OSError:\n"
        "            return False\n"
        "    os._exit(1 if any(map(is_open, made)) else 0)\n"
        "maker.join()\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]), sorted(made) == sorted(spare._pipe_ends))\n"
    )
    proc = project.python(code)
    assert proc.stdout.split() == ["0", "True"], proc.stderr  # the child closed both; the parent noted both


def test_a_gone_warm_spare_costs_a_caller_with_default_sigpipe_nothing(project):
    # Some programs put SIGPIPE back to SIG_DFL; a write to the pipe of a spare
    # that has exited (killed here; idle for 5 minutes in life) must not kill them.
    code = (
        "import os, signal; from bgjobs import api, spare\n"
        "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
        "for word in ('a', 'b'): api.run_background_job('testjobs.tasks.Tasks', 'ok', word)\n"
        "import time\n"
        "while spare.warm_spare_pid(ready=True) is None: time.sleep(0.01)\n"
        "pid = spare.warm_spare_pid(); os.kill(pid, signal.SIGKILL); os.waitpid(pid, 0)\n"
        "print(api.run_background_job('testjobs.tasks.Tasks', 'ok', 'after'))\n"
    )
    proc = project.python(code)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    job_id = int(proc.stdout.split()[-1])
    wait_until(lambda: _status(project, job_id) == "succeeded", what="the launch to run after all")


def test_a_warm_spare_serves_a_caller_with_fds_past_1024(project):
    code = (
        "import os, resource, time; from bgjobs import api, spare\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))\n"
        "fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]\n"
        "for word in ('a', 'b'): api.run_background_job('testjobs.tasks.Tasks', 'ok', word)\n"
        "while spare.warm_spare_pid(ready=True) is None: time.sleep(0.01)\n"
        "spare = spare.warm_spare_pid()\n"
        # As in test_the_api_keeps_a_warm_spare_that_runs_the_next_launch: wait
        # until no runner or waker of the project could take job c first.
        "import psutil\n"
        "def others(): return [p for p in psutil.process_iter(['pid', 'cwd', 'cmdline']) if p.info['pid'] "
        "not in (os.getpid(), spare) and p.info['cwd'] == os.getcwd() and 'bgjobs' in str(p.info['cmdline'])]\n"
        "end = time.time() + 15\n"
        "while others() and time.time() < end: time.sleep(0.02)\n"
        "print(spare, api.run_background_job('testjobs.tasks.Tasks', 'ok', 'c'))\n"
    )
    proc = project.python(code)
    if "Operation not permitted" in proc.stderr or "Too many open files" in proc.stderr:
        pytest.skip("cannot open 1100 files here")
    assert proc.returncode == 0, proc.stderr
    spare, job_id = map(int, proc.stdout.split())
    job = wait_until(lambda: (j := project.job(job_id)).status.value == "succeeded" and j, what="job c")
    assert job.runner_pid == spare


def test_a_warm_spare_takes_nothing_when_the_callers_config_is_not_the_files(project):
    from bgjobs.config import load_config

    _launch_twice(project)
    spare = _ready_spare()
    stale = load_config(project.config_path)
    project.write_config(max_retries=2)  # the file moves on; the caller still holds the old one
    job_id = api.run_background_job("testjobs.tasks.Tasks", "ok", "x", config=stale)
    assert project.wait_final(job_id).status.value == "succeeded"  # the caller dispatched it
    assert project.job(job_id).runner_pid != spare
    assert spares.warm_spare_pid() == spare  # it answered `mismatch`, and stays
