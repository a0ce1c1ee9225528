"""The dashboard, driven headless with Streamlit's AppTest: every page renders
on an empty and a seeded project, the form launches, Cancel cancels, Retry
retries, and the auth gate shows nothing else until the viewer signs in."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from bgjobs.ui import throttle
from tests.conftest import REPO, wait_until

APP = REPO / "dashboard.py"
PAGES = "bgjobs/ui/pages"
TASKS = "testjobs.tasks.Tasks"


@pytest.fixture
def env(project, monkeypatch):
    monkeypatch.setenv("BGJOBS_CONFIG", str(project.config_path))
    monkeypatch.delenv("BGJOBS_DASHBOARD_PASSWORD", raising=False)
    monkeypatch.delenv("BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED", raising=False)
    monkeypatch.chdir(REPO)  # Streamlit reads .streamlit/config.toml from here
    throttle.LIMITER.reset()  # every AppTest session comes from the same (local) address
    yield project
    throttle.LIMITER.reset()


def new_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=30)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(at: AppTest, name: str) -> AppTest:
    return ok(at.switch_page(f"{PAGES}/{name}.py").run())


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def open_job(at: AppTest, job_id: int) -> AppTest:
    return ok(at.text_input(key="job").set_value(str(job_id)).run())


# --- Jobs ----------------------------------------------------------------------------------


def test_jobs_page_empty(env):
    at = ok(new_app().run())
    assert metrics(at) == {"Running": "0", "Queued": "0", "Failed (24 h)": "0", "Succeeded (24 h)": "0"}
    assert "No jobs yet" in texts(at.info)
    assert "Unauthenticated" in texts(at.sidebar.warning)


def test_jobs_page_seeded_table_and_filters(env):
    done = env.submit("ok", "hello")
    failed = env.submit("fail", "kaput")
    running = env.submit("sleep", 60)
    env.wait_final(done), env.wait_final(failed), env.wait_status(running, "running")
    at = ok(new_app().run())
    m = metrics(at)
    assert (m["Running"], m["Failed (24 h)"], m["Succeeded (24 h)"]) == ("1", "1", "1")
    table = at.dataframe[0].value
    assert list(table["id"]) == [running, failed, done]  # newest first
    assert [s[0] for s in table["status"]] == ["running", "failed", "succeeded"]
    assert list(table["job"]) == ["Tasks.sleep", "Tasks.fail", "Tasks.ok"]
    assert table.loc[table["id"] == done, "progress"].item() == 1.0
    assert table.loc[table["id"] == failed, "error"].item() == "kaput"
    assert {"created", "started", "finished", "duration", "priority", "attempts", "params"} <= set(table)

    ok(at.multiselect(key="jobs_status").set_value(["failed"]).run())
    assert list(at.dataframe[0].value["id"]) == [failed]
    ok(at.multiselect(key="jobs_status").set_value([]).run())
    ok(at.text_input(key="jobs_text").set_value("hello").run())
    assert list(at.dataframe[0].value["id"]) == [done]
    ok(at.text_input(key="jobs_text").set_value("no such thing").run())
    assert "No job matches" in texts(at.info)


def test_jobs_table_is_limited(env):
    ids = [env.submit("ok", str(i), delay=3600) for i in range(60)]  # stay queued: cheap
    at = ok(new_app().run())
    ok(at.selectbox(key="jobs_limit").set_value(50).run())
    table = at.dataframe[0].value
    assert len(table) == 50 and table["id"].iloc[0] == ids[-1]
    assert metrics(at)["Queued"] == "60"


def test_job_detail_output_and_failure(env):
    job_id = env.submit("print_lines", 3)
    env.wait_final(job_id)
    failed = env.submit("fail", "kaput")
    env.wait_final(failed)
    at = open_job(ok(new_app().run()), job_id)
    assert f"Job {job_id} · Tasks.print_lines" in texts(at.subheader)
    assert "line 0" in texts(at.code) and "to stderr" in texts(at.code)
    at = open_job(at, failed)
    assert "kaput" in texts(at.markdown)
    assert at.button(key="job_cancel").disabled and not at.button(key="job_retry").disabled
    ok(at.button(key="job_close").click().run())
    assert not [b for b in at.button if b.key == "job_cancel"]


def test_job_detail_opens_from_query_param(env):
    job_id = env.submit("ok")
    env.wait_final(job_id)
    at = new_app()
    at.query_params["job"] = str(job_id)
    ok(at.run())
    assert f"Job {job_id} · Tasks.ok" in texts(at.subheader)


def test_job_detail_unknown_id(env):
    at = open_job(ok(new_app().run()), 999)
    assert "no job 999" in texts(at.warning).lower()


def test_cancel_running_job_from_detail(env):
    job_id = env.submit("sleep", 60)
    env.wait_status(job_id, "running")
    at = open_job(ok(new_app().run()), job_id)
    assert not at.button(key="job_cancel").disabled
    assert at.button(key="job_retry").disabled  # not final yet
    ok(at.button(key="job_cancel").click().run())
    assert env.job(job_id).status.value == "running", "nothing happens before the confirmation"
    ok(at.button(key="job_cancel_confirm").click().run())
    job = env.wait_final(job_id)
    assert job.status.value == "cancelled"
    assert (job.cancel_source, job.cancel_user) == ("dashboard", "local")
    ok(at.run())
    assert at.button(key="job_cancel").disabled
    assert "cancelled" in texts(at.markdown)  # the status badge


def test_cancel_can_be_called_off(env):
    job_id = env.submit("sleep", 60)
    env.wait_status(job_id, "running")
    at = open_job(ok(new_app().run()), job_id)
    ok(at.button(key="job_cancel").click().run())
    ok(at.button(key="job_cancel_abort").click().run())
    assert env.job(job_id).status.value == "running"
    assert not at.button(key="job_cancel").disabled


def test_cancel_queued_job_and_buttons_wait_for_pending_cancel(env):
    job_id = env.submit("ok", delay=3600)
    at = open_job(ok(new_app().run()), job_id)
    ok(at.button(key="job_cancel").click().run())
    ok(at.button(key="job_cancel_confirm").click().run())
    assert env.job(job_id).status.value == "cancelled"
    assert f"Job {job_id} is cancelled" in texts(at.success)

    slow = env.submit("ignore_term", str(env.root / "ready"))
    wait_until(lambda: (env.root / "ready").exists(), what="the job to ignore SIGTERM")
    at = open_job(at, slow)
    ok(at.button(key="job_cancel").click().run())
    ok(at.button(key="job_cancel_confirm").click().run())
    # The job ignores SIGTERM: until the grace period ends, the cancel is pending
    # and both actions stay disabled.
    assert env.job(slow).status.value == "running"
    assert at.button(key="job_cancel").disabled and at.button(key="job_retry").disabled
    assert "Cancel requested" in texts(at.caption)
    assert env.wait_final(slow).status.value == "cancelled"


def test_retry_relaunches_with_same_params(env):
    job_id = env.submit("fail", "again")
    env.wait_final(job_id)
    at = open_job(ok(new_app().run()), job_id)
    ok(at.button(key="job_retry").click().run())
    new = env.rt.store.list_jobs(limit=1)[0]
    assert new.id != job_id and new.retry_of == job_id
    assert (new.method, new.params, new.source, new.user) == ("fail", ("again",), "dashboard", "local")
    assert f"Job {new.id} · Tasks.fail" in texts(at.subheader)  # the new job is open


# --- Launch --------------------------------------------------------------------------------


def choose(at: AppTest, class_path: str, method: str) -> AppTest:
    ok(at.selectbox(key="launch_class").set_value(class_path).run())
    return ok(at.selectbox(key=f"launch_method:{class_path}").set_value(method).run())


def field(class_path: str, method: str, name: str) -> str:
    return f"launch:{class_path}:{method}:{name}"


def test_launch_page_renders_the_allowlist(env):
    at = open_page(ok(new_app().run()), "launch")
    assert at.selectbox(key="launch_class").options == [
        "testjobs.tasks.Tasks",
        "testjobs.tasks.Cooperative",
        "testjobs.tasks.NeedsArgs",
    ]
    methods = at.selectbox(key=f"launch_method:{TASKS}").options
    assert "ok" in methods and "inherited" in methods and "_private" not in methods
    assert "not_callable" not in methods


def test_launch_creates_job(env):
    at = choose(open_page(ok(new_app().run()), "launch"), TASKS, "ok")
    assert at.text_input(key=field(TASKS, "ok", "value")).value == "done"  # the default is shown
    at.text_input(key=field(TASKS, "ok", "value")).set_value("from the form")
    ok(at.button(key="launch_submit").click().run())
    jobs = env.rt.store.list_jobs()
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.class_path, job.method, job.params) == (TASKS, "ok", ("from the form",))
    assert (job.source, job.user) == ("dashboard", "local")
    assert f"Launched job {job.id}" in texts(at.success)
    assert any(f"Open job {job.id}" in link.label for link in at.get("page_link"))
    assert env.wait_final(job.id).result is not None


def test_launch_typed_widgets(env, tmp_path):
    out = tmp_path / "typed.json"
    at = choose(open_page(ok(new_app().run()), "launch"), TASKS, "typed")
    f = lambda name: field(TASKS, "typed", name)  # noqa: E731
    at.text_input(key=f("path")).set_value(str(out))
    at.number_input(key=f("n")).set_value(7)
    at.number_input(key=f("x")).set_value(2.5)
    at.checkbox(key=f("flag")).check()
    at.text_area(key=f("items")).set_value("[1, 2]")
    at.text_area(key=f("opts")).set_value('{"k": "v"}')
    at.number_input(key=f("@delay")).set_value(0.0)
    ok(at.button(key="launch_submit").click().run())
    job = env.rt.store.list_jobs()[0]
    env.wait_final(job.id)
    got = json.loads(out.read_text())
    assert got["types"] == ["int", "float", "bool", "list", "dict"]
    assert (got["n"], got["x"], got["flag"], got["items"], got["opts"]) == (7, 2.5, True, [1, 2], {"k": "v"})


def test_launch_with_priority_and_delay(env):
    at = choose(open_page(ok(new_app().run()), "launch"), TASKS, "ok")
    at.number_input(key=field(TASKS, "ok", "@priority")).set_value(5)
    at.number_input(key=field(TASKS, "ok", "@delay")).set_value(3600.0)
    ok(at.button(key="launch_submit").click().run())
    job = env.rt.store.list_jobs()[0]
    assert job.priority == 5 and job.status.value == "queued"
    assert job.run_after - job.created_at == pytest.approx(3600, abs=5)
    assert job.params == ()  # the untouched default is left to the method


def _launch_typed(items: str):
    """Fill the Launch form for Tasks.typed with `items` as its list param, and submit."""
    at = choose(open_page(ok(new_app().run()), "launch"), TASKS, "typed")
    at.text_input(key=field(TASKS, "typed", "path")).set_value("/tmp/x")
    at.number_input(key=field(TASKS, "typed", "n")).set_value(1)
    at.number_input(key=field(TASKS, "typed", "x")).set_value(1.0)
    at.text_area(key=field(TASKS, "typed", "items")).set_value(items)
    at.text_area(key=field(TASKS, "typed", "opts")).set_value("{}")
    return ok(at.button(key="launch_submit").click().run())


def test_launch_bad_json_shows_error_at_the_field(env):
    at = _launch_typed("[1, 2")
    assert env.rt.store.list_jobs() == []
    errors = [e.value for e in at.error]
    # The library's refusal, as job-run --params='[1, 2' gets it: the form parses nothing.
    assert len(errors) == 1 and errors[0].startswith("param items must be list; got '[1, 2' (pass JSON")


def test_launch_refused_by_the_library_shows_exc_field(env):
    at = _launch_typed('{"not": "a list"}')
    assert env.rt.store.list_jobs() == []
    assert "param items must be list" in texts(at.error)
    # The error sits right under the items field, inside the form.
    form = list(at.get("form")[0].children.values())
    items_at = next(
        i for i, c in enumerate(form) if getattr(c, "key", None) == field(TASKS, "typed", "items")
    )
    assert "param items must be list" in str(form[items_at + 1].value)


def test_launch_required_param_missing(env):
    at = choose(open_page(ok(new_app().run()), "launch"), TASKS, "typed")
    ok(at.button(key="launch_submit").click().run())
    assert env.rt.store.list_jobs() == []
    assert "param n needs a value" in texts(at.error)


def test_launch_unconstructible_class_is_refused(env):
    at = choose(open_page(ok(new_app().run()), "launch"), "testjobs.tasks.NeedsArgs", "run")
    ok(at.button(key="launch_submit").click().run())
    assert env.rt.store.list_jobs() == []
    assert "cannot be created without arguments" in texts(at.error)


# --- Logs ----------------------------------------------------------------------------------


def test_logs_page_empty(env):
    at = open_page(ok(new_app().run()), "logs")
    assert "does not exist yet" in texts(at.info)


def test_logs_page_seeded_filters_and_errors_tab(env):
    good = env.submit("ok")
    bad = env.submit("fail", "kaput")
    env.wait_final(good), env.wait_final(bad)
    with open(env.root / "logs" / "background_jobs.log", "a") as f:
        f.write('not json\n{"also": \n\x00\n')
    at = open_page(ok(new_app().run()), "logs")
    assert "3 lines could not be read" in texts(at.warning)
    table = at.dataframe[0].value
    assert table["ts"].is_monotonic_decreasing  # newest first
    assert {"queued", "started", "succeeded", "failed"} <= set(table["event"])
    assert any(b.label.startswith("Download") for b in at.get("download_button"))

    ok(at.number_input(key="main_job").set_value(bad).run())
    assert set(at.dataframe[0].value["job_id"]) == {bad}
    ok(at.multiselect(key="main_events").set_value(["failed"]).run())
    assert list(at.dataframe[0].value["event"]) == ["failed"]

    errors = new_app()
    errors.query_params["logs_tab"] = "Errors"
    ok(errors.run())
    at = open_page(errors, "logs")
    table = at.dataframe[0].value
    assert len(table) >= 1 and set(table["job_id"]) == {bad}
    assert all(levels == ["ERROR"] for levels in table["level"])


def test_job_detail_timeline_and_traceback(env):
    bad = env.submit("fail", "kaput")
    env.wait_final(bad)
    at = open_job(ok(new_app().run()), bad)
    timeline = at.dataframe[-1].value
    assert list(timeline["event"])[:2] == ["queued", "started"]
    assert "ValueError: kaput" in texts(at.code)


# --- Config --------------------------------------------------------------------------------


def test_config_page(env):
    at = open_page(ok(new_app().run()), "config")
    classes = at.dataframe[0].value
    assert list(classes["class"]) == [TASKS, "testjobs.tasks.Cooperative", "testjobs.tasks.NeedsArgs"]
    assert "Config" in texts(at.title)
    assert str(env.config_path) in list(at.dataframe[3].value["path"])
    assert "None." in texts(at.markdown)  # no auth configured


def test_bad_config_shows_an_error_page(env):
    env.config_path.write_text("max_retries: lots\n")
    at = ok(new_app().run())
    assert "cannot start" in texts(at.title)
    assert "max_retries" in texts(at.code)
    assert not at.metric


# --- Auth ----------------------------------------------------------------------------------


def test_password_gate_blocks_everything(env, monkeypatch):
    monkeypatch.setenv("BGJOBS_DASHBOARD_PASSWORD", "s3cret")
    at = ok(new_app().run())
    assert not at.metric and not at.dataframe and not at.sidebar.button
    assert [t.key for t in at.text_input] == ["login_password"]
    ok(at.switch_page(f"{PAGES}/launch.py").run())  # asking for a page does not get past it
    assert not at.selectbox and [t.key for t in at.text_input] == ["login_password"]

    at.text_input(key="login_password").set_value("wrong")
    ok(at.button[0].click().run())
    assert "Wrong password" in texts(at.error)
    assert not at.metric

    at.text_input(key="login_password").set_value("s3cret")
    ok(at.button[0].click().run())
    assert "Signed in with the dashboard password" in texts(at.sidebar.caption)
    assert "Running" in metrics(open_page(at, "jobs"))

    at = choose(open_page(at, "launch"), TASKS, "ok")
    ok(at.button(key="launch_submit").click().run())
    assert env.rt.store.list_jobs()[0].user == "admin"

    ok(at.button(key="logout").click().run())
    assert not at.metric and [t.key for t in at.text_input] == ["login_password"]


def test_password_from_secrets(env):
    at = new_app()
    at.secrets["dashboard_password"] = "from-secrets"
    ok(at.run())
    assert not at.metric
    at.text_input(key="login_password").set_value("from-secrets")
    ok(at.button[0].click().run())
    assert "Running" in metrics(at)


def test_repeated_wrong_passwords_slow_down(env, monkeypatch):
    monkeypatch.setenv("BGJOBS_DASHBOARD_PASSWORD", "s3cret")
    at = ok(new_app().run())
    for tries in range(1, 4):
        at.text_input(key="login_password").set_value("nope")
        ok(at.button[0].click().run())
        # The third wrong try says that the next one must wait.
        assert texts(at.error) == "Wrong password." + (
            " Too many failed sign-ins from this address; try again in 1 s." if tries == 3 else ""
        )
    at.text_input(key="login_password").set_value("nope")  # too soon
    ok(at.button[0].click().run())
    assert "Too many failed sign-ins from this address; try again in 1 s." in texts(at.error)
    at.text_input(key="login_password").set_value("s3cret")  # right, but too soon
    ok(at.button[0].click().run())
    assert "Too many failed sign-ins" in texts(at.error)
    assert not at.metric


OIDC = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "x" * 32,
    "client_id": "id",
    "client_secret": "secret",
    "server_metadata_url": "https://accounts.example.com/.well-known/openid-configuration",
}


def test_oidc_gate_blocks_until_logged_in(env):
    at = new_app()
    at.secrets["auth"] = OIDC
    at.user = {"is_logged_in": False}
    ok(at.run())
    assert not at.metric and not at.dataframe
    assert [b.label for b in at.button] == ["Log in"]  # Authlib is installed (streamlit[auth])


def test_oidc_user_names_the_records(env):
    at = new_app()
    at.secrets["auth"] = OIDC
    at.user = {"is_logged_in": True, "email": "ana@example.com", "name": "Ana"}
    ok(at.run())
    assert "Running" in metrics(at)
    assert "ana@example" in texts(at.sidebar.caption)
    at = choose(open_page(at, "launch"), TASKS, "ok")
    ok(at.button(key="launch_submit").click().run())
    assert env.rt.store.list_jobs()[0].user == "ana@example.com"


# --- Shape --------------------------------------------------------------------------------


def test_only_the_ui_imports_streamlit():
    """The core stays importable without streamlit: only bgjobs/ui/ and dashboard.py use it."""
    offenders = []
    for path in (REPO / "bgjobs").rglob("*.py"):
        if "ui" in path.relative_to(REPO / "bgjobs").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "streamlit" for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_dashboard_writes_no_sql_and_spawns_nothing():
    sources = [APP, *Path(REPO / "bgjobs" / "ui").rglob("*.py")]
    for path in sources:
        text = path.read_text()
        for word in ("sqlite3.connect", "subprocess", "os.fork", "Popen", "SELECT ", "UPDATE "):
            assert word not in text, f"{path.name} uses {word}"
