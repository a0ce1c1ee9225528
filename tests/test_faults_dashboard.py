"""Faults at the dashboard's edge, and what it does about each.

- No sign-in configured, but the server listens where other machines reach it:
  only a page that says how to set one (unless the operator opts out).
- Wrong passwords from one address, spread over new sessions: the address is
  throttled, whichever session tries next.
- A link with a job id that is no job id (?job=1e400): a message, never a traceback.
- The dashboard starts no process of its own (the runners it launches are the api's).
"""

# ruff: noqa: F811 - the fixtures imported from test_browser and test_dashboard are test parameters here

from __future__ import annotations

import re
import time

import psutil
import pytest
from streamlit import config as st_config

from bgjobs.ui import auth, common, throttle
from tests.test_browser import (  # noqa: F401 - browser and browser_project are fixtures
    browser,
    browser_project,
    new_page,
    start_server,
)
from tests.test_dashboard import PAGES, env, metrics, new_app, ok, texts  # noqa: F401 - env is a fixture

NAMES_THE_WAYS_OUT = ("BGJOBS_DASHBOARD_PASSWORD", "BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED", "[auth]")


@pytest.fixture
def listen_on():
    """Set Streamlit's server.address for AppTest runs in this process (AppTest
    binds nothing, but the dashboard reads the option, as it does in a server)."""
    before = st_config.get_option("server.address")

    def set_address(address: str | None) -> None:
        st_config.set_option("server.address", address)

    yield set_address
    st_config.set_option("server.address", before)


# --- 1. no sign-in on a reachable address ---------------------------------------------------


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.7", "jobs.example.com", None])
def test_reachable_address_without_sign_in_shows_only_how_to_set_one(env, listen_on, address):
    listen_on(address)
    at = ok(new_app().run())
    assert not at.metric and not at.dataframe and not at.sidebar.button
    message = texts(at.error)
    assert all(name in message for name in NAMES_THE_WAYS_OUT), message
    assert (address or "every interface") in message
    # Asking for another page does not get past it either.
    ok(at.switch_page(f"{PAGES}/launch.py").run())
    assert not at.selectbox and not at.button
    assert "BGJOBS_DASHBOARD_PASSWORD" in texts(at.error)
    assert env.rt.store.list_jobs() == []


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_address_without_sign_in_stays_open(env, listen_on, address):
    listen_on(address)
    at = ok(new_app().run())
    assert "Running" in metrics(at)
    assert "Unauthenticated" in texts(at.sidebar.warning)


def test_reachable_address_with_the_opt_out_serves_and_says_so(env, listen_on, monkeypatch):
    monkeypatch.setenv("BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED", "1")
    listen_on("0.0.0.0")
    at = ok(new_app().run())
    assert "Running" in metrics(at)
    warning = texts(at.sidebar.error)
    assert "Unauthenticated" in warning and "0.0.0.0" in warning
    assert "BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED" in warning


@pytest.mark.parametrize("value", ["0", "", "no"])
def test_opt_out_needs_a_yes(env, listen_on, monkeypatch, value):
    monkeypatch.setenv("BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED", value)
    listen_on("0.0.0.0")
    at = ok(new_app().run())
    assert not at.metric and "BGJOBS_DASHBOARD_PASSWORD" in texts(at.error)


def test_reachable_address_with_a_password_asks_for_it(env, listen_on, monkeypatch):
    monkeypatch.setenv("BGJOBS_DASHBOARD_PASSWORD", "s3cret")
    listen_on("0.0.0.0")
    at = ok(new_app().run())
    assert [t.key for t in at.text_input] == ["login_password"]
    at.text_input(key="login_password").set_value("s3cret")
    ok(at.button[0].click().run())
    assert "Running" in metrics(at)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("myhost", False),
        ("unix:///run/bgjobs.sock", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback(address, loopback):
    assert auth.is_loopback(address) is loopback


# --- 2. sign-in throttling per address ------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_waits_double_after_the_free_tries_up_to_five_minutes():
    clock = Clock()
    limiter = throttle.SignInLimiter(clock=clock)
    waits = []
    for _ in range(14):
        result = limiter.attempt("198.51.100.1", lambda: False)
        assert result.checked and not result.passed
        waits.append(result.wait)
        clock.now += result.wait  # the next try comes just in time
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


def test_limiter_refuses_unchecked_while_waiting_and_keeps_addresses_apart():
    clock = Clock()
    limiter = throttle.SignInLimiter(clock=clock)
    for _ in range(3):
        limiter.attempt("198.51.100.1", lambda: False)
    checked = []
    result = limiter.attempt("198.51.100.1", lambda: checked.append(1) or True)  # right, but too soon
    assert (result.checked, result.passed, checked) == (False, False, [])
    assert result.wait_text == "try again in 1 s"
    assert limiter.attempt("198.51.100.2", lambda: True).passed  # another address is not held up
    clock.now += 1
    assert limiter.attempt("198.51.100.1", lambda: True).passed
    assert len(limiter) == 0  # a success forgets the failures


def test_limiter_forgets_a_quiet_address_and_bounds_its_memory(monkeypatch):
    clock = Clock()
    limiter = throttle.SignInLimiter(clock=clock)
    for _ in range(5):
        limiter.attempt("198.51.100.1", lambda: False)
        clock.now += 10
    clock.now += throttle.FORGET_AFTER + 1
    assert limiter.attempt("198.51.100.1", lambda: False).wait == 0  # counted from zero again

    monkeypatch.setattr(throttle, "MAX_CLIENTS", 3)
    for i in range(10):
        clock.now += 1
        limiter.attempt(f"203.0.113.{i}", lambda: False)
    assert len(limiter) == 3


def test_new_session_from_the_same_address_is_throttled(env, monkeypatch):
    """Three wrong passwords in one session hold up the next session too (AppTest
    sessions all come from this machine), with a clock that stands still."""
    clock = Clock()
    monkeypatch.setattr(throttle, "LIMITER", throttle.SignInLimiter(clock=clock))
    monkeypatch.setenv("BGJOBS_DASHBOARD_PASSWORD", "s3cret")
    first = ok(new_app().run())
    for _ in range(3):
        first.text_input(key="login_password").set_value("nope")
        ok(first.button[0].click().run())
    second = ok(new_app().run())  # a new session: its first try, with the right password
    second.text_input(key="login_password").set_value("s3cret")
    ok(second.button[0].click().run())
    assert texts(second.error) == "Too many failed sign-ins from this address; try again in 1 s."
    assert not second.metric
    clock.now += 1
    second.text_input(key="login_password").set_value("s3cret")
    ok(second.button[0].click().run())
    assert "Running" in metrics(second)


# --- 3. query parameters that name no job ---------------------------------------------------


@pytest.mark.parametrize(
    "value", ["1e400", "abc", "-1", "0", "1.5", "99999999999999999999", "٣", "[x](http://e)"]
)
def test_job_link_that_names_no_job_shows_a_message(env, value):
    at = new_app()
    at.query_params["job"] = value
    ok(at.run())  # no exception, so no traceback on the page
    assert f"There is no job {common.md(value)}; a job id is a whole number" in texts(at.warning)
    assert "Running" in metrics(at)  # the rest of the page is there


def test_job_link_with_a_missing_but_valid_id(env):
    at = new_app()
    at.query_params["job"] = str(2**63 - 1)
    ok(at.run())
    assert f"There is no job {2**63 - 1}." in texts(at.warning)


def test_logs_tab_link_with_an_unknown_tab(env):
    at = new_app()
    at.query_params["logs_tab"] = "1e400"
    at = ok(at.switch_page(f"{PAGES}/logs.py").run())
    assert "Logs" in texts(at.title)


# --- in a real browser ----------------------------------------------------------------------


@pytest.mark.parametrize("allow", [False, True], ids=["refuses", "opted-out"])
@pytest.mark.browser
@pytest.mark.slow
def test_server_on_all_interfaces_without_sign_in(browser_project, browser, tmp_path, allow):
    """A real `streamlit run --server.address 0.0.0.0`, loaded at 127.0.0.1."""
    from playwright.sync_api import expect

    extra = {"BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED": "1"} if allow else {}
    url, _, stop = start_server(browser_project, tmp_path, address="0.0.0.0", env=extra)
    try:
        page = new_page(browser)
        page.goto(f"{url}/launch")
        if allow:
            expect(page.get_by_role("heading", name="Launch a job")).to_be_visible()
            expect(page.get_by_text("BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED", exact=False)).to_be_visible()
            return
        refusal = page.get_by_role("alert").filter(has_text="No sign-in is configured")
        expect(refusal).to_be_visible()
        for name in (*NAMES_THE_WAYS_OUT, "0.0.0.0"):
            expect(refusal).to_contain_text(name)
        expect(page.get_by_role("heading", name="Launch a job")).to_have_count(0)
        expect(page.get_by_role("link", name="Config")).to_have_count(0)
    finally:
        stop()


def _submit(page, password: str) -> None:
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def _try_until(page, password: str, reply: str, deadline: float = 30) -> None:
    """Submit `password` until the page answers `reply` (tries refused while the
    address waits are not counted, so a retry changes nothing else)."""
    from playwright.sync_api import expect

    end = time.monotonic() + deadline
    while True:
        _submit(page, password)
        try:
            expect(page.get_by_text(reply, exact=True)).to_be_visible(timeout=1500)
            return
        except AssertionError:
            if time.monotonic() > end:
                raise


@pytest.mark.browser
@pytest.mark.slow
def test_failed_sign_ins_throttle_a_new_browser_context(browser_project, browser, tmp_path):
    """Five wrong passwords in context A; context B (a new session from the same
    address, 127.0.0.1) is refused at its first try, even with the right password."""
    from playwright.sync_api import expect

    url, _, stop = start_server(browser_project, tmp_path, password="correct horse")
    try:
        other = new_page(browser)  # ready before A fails, so its try falls inside A's wait
        other.goto(url)
        other.get_by_label("Password", exact=True).wait_for()
        page = new_page(browser)
        page.goto(url)
        too_many = "Too many failed sign-ins from this address; try again in {} s."
        for wait in (0, 0, 1, 2, 4):
            reply = "Wrong password." + (" " + too_many.format(wait) if wait else "")
            _try_until(page, "wrong", reply)

        _submit(other, "correct horse")
        refusal = other.get_by_text(
            re.compile(r"^Too many failed sign-ins from this address; try again in \d s\.$")
        )
        expect(refusal).to_be_visible()
        expect(other.get_by_role("link", name="Config")).to_have_count(0)

        # Once the wait is over, the right password gets in.
        _try_until(other, "correct horse", "Signed in with the dashboard password")
        expect(other.get_by_role("link", name="Config")).to_be_visible()
    finally:
        stop()


# --- 4. processes ---------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.slow
def test_dashboard_starts_no_process_of_its_own(browser_project, browser, tmp_path):
    """Every page, opened in a browser, with no launch: the server has no child
    process (the runners it launches, and the api's warm spare, come from the
    api, whose reaping the launch test checks)."""
    from playwright.sync_api import expect

    url, server, stop = start_server(browser_project, tmp_path)
    try:
        page = new_page(browser)
        for path, heading in [
            ("", "Jobs"),
            ("launch", "Launch a job"),
            ("logs", "Logs"),
            ("config", "Config"),
        ]:
            page.goto(f"{url}/{path}")
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        page.goto(f"{url}/?job=1e400")
        expect(
            page.get_by_text("There is no job 1e400; a job id is a whole number such as 42.")
        ).to_be_visible()
        assert psutil.Process(server.pid).children(recursive=True) == []
    finally:
        stop()
