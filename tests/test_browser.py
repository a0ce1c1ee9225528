"""End to end in a real browser: `streamlit run dashboard.py` against a temp
project, driven by Debian's Chromium through Playwright (no downloaded browser).

Launch a job from the form and watch it succeed in the live table, cancel a long
job, filter the logs to errors; save docs/screenshot.png on the way.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_until, zombie_children

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The README's picture. A normal run writes it to a temp dir, so the tests
# leave the tree clean; BGJOBS_UPDATE_SCREENSHOT=1 refreshes docs/screenshot.png.
SCREENSHOT = REPO / "docs" / "screenshot.png"
TIMEOUT_MS = 30_000
ROW_PX = 35  # Streamlit's default dataframe row (and header) height


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def browser_project(project):
    """The test project, allowed to run the repo's example jobs too (they report
    progress and clean up on cancel, which makes a better screenshot)."""
    project.write_config(
        allowed_classes=[
            "jobs.example.ExampleJob",
            {"class": "jobs.demo.LongTask", "max_retries": 0},
            {"class": "jobs.demo.AlwaysFails", "max_retries": 1, "retry_delay": 0.2},
        ],
        max_retries=0,
        cancel_grace=2,
        max_concurrent=8,
    )
    return project


def start_server(
    project, tmp_path, password: str | None = None, address: str | None = None, env: dict | None = None
):
    """Start `streamlit run dashboard.py` for `project`; returns (url, process, stop).

    `address` binds the server there (the url still says 127.0.0.1, which a
    wildcard address also answers); `env` adds environment variables."""
    if CHROMIUM is None:
        pytest.skip("no Chromium found (looked for `chromium` on PATH and /usr/bin/chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    port = _free_port()
    extra, env = env or {}, project.env
    env["PYTHONPATH"] = os.pathsep.join([str(project.root), str(REPO)])
    env.pop("BGJOBS_DASHBOARD_PASSWORD", None)
    env.pop("BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED", None)
    if password:
        env["BGJOBS_DASHBOARD_PASSWORD"] = password
    env.update(extra)
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "dashboard.py"),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
            *(["--server.address", address] if address else []),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def stop():
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()

    try:
        wait_until(
            lambda: proc.poll() is not None or _healthy(url),
            timeout=60,
            interval=0.1,
            what="streamlit to answer /_stcore/health",
        )
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "streamlit.log").read_text())
    except BaseException:
        stop()
        raise
    return url, proc, stop


@pytest.fixture
def browser():
    """Debian's Chromium, headless, started by Playwright (which downloads nothing)."""
    if CHROMIUM is None:
        pytest.skip("no Chromium found (looked for `chromium` on PATH and /usr/bin/chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser):
    """A page in a new browser context: its own cookies, so its own Streamlit session."""
    pg = browser.new_context(viewport={"width": 1440, "height": 1500}).new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    return pg


@pytest.fixture
def page(browser):
    return new_page(browser)


# --- helpers: Streamlit widgets as a person uses them --------------------------------------


def _select(page, label: str, option: str) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.get_by_role("option", name=option, exact=True).click()


def _status_cell(page, job_id: int):
    """The status cell of job `job_id` in the jobs table (read from the grid's
    accessible table, since the grid itself is drawn on a canvas)."""
    table = page.locator('[data-testid="stDataFrame"]').first
    row = table.locator("tr").filter(
        has=page.locator('td[aria-colindex="1"]', has_text=re.compile(rf"^{job_id}$"))
    )
    return row.locator('td[aria-colindex="4"]')


def _click_row(page, job_id: int) -> None:
    """Click job `job_id`'s row in the jobs table. The grid is a canvas: find the
    row's index in its accessible table, then click where that row is drawn."""
    table = page.locator('[data-testid="stDataFrame"]').first
    cell = table.locator('td[aria-colindex="1"]', has_text=re.compile(rf"^{job_id}$"))
    row = int(cell.get_attribute("id").rsplit("-", 1)[1])
    box = table.bounding_box()
    page.mouse.click(box["x"] + 15, box["y"] + ROW_PX * (row + 1) + ROW_PX / 2)


def _launch(page, url: str, class_path: str, method: str, **fields) -> int:
    page.goto(f"{url}/launch")
    page.get_by_role("heading", name="Launch a job").wait_for()
    if class_path != "jobs.example.ExampleJob":  # the first class is chosen already
        _select(page, "Class", class_path)
    # The form of this class's method, not the one on the page before the rerun
    # for the new class: a click on that one launched the first class instead.
    page.get_by_text(f"Params of {method}", exact=True).wait_for()
    for name, value in fields.items():
        box = page.get_by_role("spinbutton", name=name, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.get_by_role("button", name="Launch").click()
    done = page.get_by_text(re.compile(r"Launched job \d+"))
    done.wait_for()
    return int(re.search(r"Launched job (\d+)", done.inner_text()).group(1))


# --- the tests ---------------------------------------------------------------------------------


def test_launch_watch_cancel_and_logs(browser_project, page, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # a loaded machine renders slowly; 5 s by default

    proj = browser_project
    # Some history, so the table and the screenshot show every kind of row.
    failing = proj.submit("run", "disk full", cls="jobs.demo.AlwaysFails")
    proj.submit("handle", 0.5, cls="jobs.example.ExampleJob")
    proj.submit("handle", 1, True, cls="jobs.example.ExampleJob")
    proj.submit("handle", 90, cls="jobs.example.ExampleJob")  # still running at the end
    proj.submit("handle", 1, cls="jobs.example.ExampleJob", delay=3600)  # queued
    url, server, stop = start_server(proj, tmp_path)
    try:
        # Launch from the form; follow the link to the job; watch the live table.
        job_id = _launch(page, url, "jobs.example.ExampleJob", "handle", seconds=1.5)
        page.get_by_role("link", name=f"Open job {job_id}").click()
        page.wait_for_url(re.compile(rf"[?&]job={job_id}\b"))
        expect(page.get_by_role("heading", name=f"Job {job_id} · ExampleJob.handle")).to_be_visible()
        expect(_status_cell(page, job_id)).to_have_text("succeeded", timeout=TIMEOUT_MS)
        job = proj.job(job_id)
        assert (job.status.value, job.params, job.source, job.user) == (
            "succeeded",
            (1.5,),
            "dashboard",
            "local",
        )

        # Launch a long job and cancel it from its detail, after the confirmation.
        long_id = _launch(page, url, "jobs.demo.LongTask", "run")
        page.get_by_role("link", name=f"Open job {long_id}").click()
        expect(_status_cell(page, long_id)).to_have_text("running", timeout=TIMEOUT_MS)
        page.get_by_role("button", name="Cancel job").click()
        page.get_by_role("button", name="Yes, cancel it").click()
        expect(_status_cell(page, long_id)).to_have_text("cancelled", timeout=TIMEOUT_MS)
        assert proj.job(long_id).cancel_source == "dashboard"

        # The screenshot: the live table, and a failed job's tracebacks.
        proj.wait_final(failing)
        _click_row(page, failing)  # selecting its row opens it
        expect(page.get_by_role("heading", name=f"Job {failing} · AlwaysFails.run")).to_be_visible()
        page.get_by_role("tab", name="Failed attempts").click()
        expect(page.get_by_text("ValueError: disk full (attempt 2)").first).to_be_visible()
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shot = SCREENSHOT if os.environ.get("BGJOBS_UPDATE_SCREENSHOT") else tmp_path / "screenshot.png"
        page.screenshot(path=str(shot))

        # Logs: filter the main log to errors, then open the Errors tab.
        page.goto(f"{url}/logs")
        caption = page.get_by_text(re.compile(r"records match")).first
        caption.wait_for()
        total = int(re.search(r"of ([\d,]+) records", caption.inner_text()).group(1).replace(",", ""))
        page.locator('[data-testid="stMultiSelect"]').filter(has_text="Level").first.click()
        page.get_by_role("option", name="ERROR", exact=True).click()
        page.keyboard.press("Escape")
        expect(page.get_by_text(re.compile(r"^\d+ of [\d,]+ records match")).first).not_to_have_text(
            re.compile(rf"^{total} of"), timeout=TIMEOUT_MS
        )
        levels = page.locator('[data-testid="stDataFrame"]').first.locator('td[aria-colindex="2"]')
        expect(levels.first).to_have_text("ERROR")
        assert set(levels.all_inner_texts()) == {"ERROR"}
        page.get_by_role("tab", name="Errors").click()
        page.wait_for_url(re.compile(r"logs_tab=Errors"))
        expect(page.get_by_text(re.compile(r"records match")).first).to_be_visible()
        expect(page.locator('[data-testid="stDataFrame"]').first).to_contain_text("attempt_failed")

        # Select the newest error: the records that follow must not move the selection.
        box = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
        page.mouse.click(box["x"] + 15, box["y"] + ROW_PX + ROW_PX / 2)
        held = page.get_by_text(re.compile(r"holds still while a row is selected \(\d+ of"))
        held.wait_for()
        matching = int(re.search(r"\((\d+) of", held.inner_text()).group(1))
        record = page.get_by_text(re.compile(r"^\S+ · ERROR · job \d+ · attempt")).first
        picked = record.inner_text()
        proj.submit("run", "later", cls="jobs.demo.AlwaysFails")  # new errors, newest first
        expect(held).not_to_have_text(re.compile(rf"\({matching} of"), timeout=TIMEOUT_MS)
        assert record.inner_text() == picked

        # The dashboard started runners (through the api); none is left a zombie.
        wait_until(
            lambda: not zombie_children(server.pid), timeout=15, what="the dashboard to reap its children"
        )
    finally:
        stop()


def test_password_gate_in_the_browser(browser_project, page, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # a loaded machine renders slowly; 5 s by default

    url, _, stop = start_server(browser_project, tmp_path, password="correct horse")
    try:
        page.goto(f"{url}/logs?logs_tab=Errors")  # a link someone shared
        box = page.get_by_label("Password", exact=True)
        box.wait_for()
        expect(page.get_by_role("heading", name="Logs")).to_have_count(0)
        box.fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Wrong password.")).to_be_visible()
        page.get_by_label("Password", exact=True).fill("correct horse")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in with the dashboard password")).to_be_visible()
        expect(page.get_by_role("link", name="Config")).to_be_visible()
        # The sign-in leads where the link pointed: the Logs page, on its Errors tab.
        expect(page.get_by_role("heading", name="Logs")).to_be_visible()
        page.wait_for_url(re.compile(r"/logs\?.*logs_tab=Errors"))
    finally:
        stop()
