"""A launch's params and what is refused: coercion to annotations, literal passing, refusals."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_until


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
