"""One params rule for every shell: the same input stores the same params,
whether it comes from the dashboard's Launch form, job-run, or Python."""

from __future__ import annotations

import json
import shlex
import typing

import pytest
from streamlit.testing.v1 import AppTest

from bgjobs.errors import RejectedError
from bgjobs.params import EMPTY, coerce
from bgjobs.ui import throttle
from tests.conftest import REPO

SHAPES = "testjobs.shapes.Shapes"
SHAPES_SOURCE = '''
class Shapes:
    def take(self, n: int, s: str, raw, items: list) -> None:
        """One param of each kind: int, str, no annotation, list."""
'''


# --- the rule ------------------------------------------------------------------------------

RULE = [
    (int, "5", 5),
    (int, " -3 ", -3),
    (float, "2", 2.0),
    (bool, "yes", True),
    (bool, "off", False),
    (str, "5", "5"),
    (EMPTY, "5", "5"),  # no annotation: the text as typed
    (EMPTY, "[1, 2]", "[1, 2]"),
    (typing.Any, "true", "true"),
    (list, '["a", 1]', ["a", 1]),
    (dict, '{"k": 1}', {"k": 1}),
    (int | None, "null", None),
    (int | None, "7", 7),
]


@pytest.mark.parametrize(("annotation", "text", "expected"), RULE)
def test_text_is_coerced_by_the_annotation(annotation, text, expected):
    got = coerce(text, annotation, "p")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    ("annotation", "value"), [(int, "5.5"), (float, "nan"), (float, float("inf")), (list, "[1"), (str, 5)]
)
def test_a_value_that_does_not_fit_is_refused_at_its_field(annotation, value):
    with pytest.raises(RejectedError, match="param p must be") as caught:
        coerce(value, annotation, "p")
    assert caught.value.field == "p"


# --- the Launch form and job-run store the same params ------------------------------------


@pytest.fixture
def env(project, monkeypatch):
    (project.root / "testjobs" / "shapes.py").write_text(SHAPES_SOURCE)
    project.write_config(allowed_classes=[SHAPES])
    monkeypatch.setenv("BGJOBS_CONFIG", str(project.config_path))
    monkeypatch.delenv("BGJOBS_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.delenv("BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED", raising=False)
    monkeypatch.chdir(REPO)  # Streamlit reads .streamlit/config.toml from here
    throttle.LIMITER.reset()
    yield project
    throttle.LIMITER.reset()


def _field(name: str) -> str:
    return f"launch:{SHAPES}:take:{name}"


def _launch_from_the_form(n: int, s: str, raw: str, items: str) -> tuple[AppTest, str]:
    """Fill Shapes.take's Launch form, submit it; the app and the job-run line it shows."""
    at = AppTest.from_file(str(REPO / "dashboard.py"), default_timeout=30).run()
    at = at.switch_page("bgjobs/ui/pages/launch.py").run()
    at.number_input(key=_field("n")).set_value(n)
    at.text_input(key=_field("s")).set_value(s)
    at.text_input(key=_field("raw")).set_value(raw)
    at.text_area(key=_field("items")).set_value(items)
    at.button(key="launch_submit").click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    lines = [c.value for c in at.code if c.value.startswith("job-run ")]
    assert len(lines) == 1, [c.value for c in at.code]
    return at, lines[0]


CASES = {
    "plain": (5, "5", "5", "[1, 2]"),
    "shell metacharacters": (
        -3,
        "it's $HOME; `id` | x > y",
        '"quoted" --params=x\\n',
        '["a b", "c\'d", 1.5]',
    ),
    "empty and unicode": (0, "", "héllo wörld ∑", "[]"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_launch_form_and_job_run_store_the_same_params(env, case):
    n, s, raw, items = case
    _, line = _launch_from_the_form(n, s, raw, items)
    (from_form,) = env.rt.store.list_jobs()
    assert from_form.source == "dashboard"
    # The rule, as README states it: annotated params are coerced, the one without
    # an annotation keeps the text as typed.
    assert list(from_form.params) == [n, s, raw, json.loads(items)]

    words = shlex.split(line)
    assert words[:3] == ["job-run", SHAPES, "take"]
    proc = env.cli(*words)  # the real console script, in the same project and config
    assert proc.returncode == 0, proc.stderr
    from_shell = env.rt.store.list_jobs()[0]
    assert from_shell.id != from_form.id and from_shell.source == "cli"
    assert from_shell.params == from_form.params
    assert [type(v) for v in from_shell.params] == [type(v) for v in from_form.params]
