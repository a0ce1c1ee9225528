"""Who may use the dashboard: an OIDC login, a shared password, or nobody checks.

- An `[auth]` section in .streamlit/secrets.toml turns on Streamlit's OIDC
  login (st.login / st.user / st.logout).
- Else a password from $BGJOBS_DASHBOARD_PASSWORD, or `dashboard_password` in
  the secrets, shows a login form until it is entered.
- Else nothing is checked. .streamlit/config.toml binds to 127.0.0.1 for that
  case, and the sidebar says so.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import os
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from bgjobs.ui.common import Viewer, md, set_viewer

PASSWORD_ENV = "BGJOBS_DASHBOARD_PASSWORD"
PASSWORD_SECRET = "dashboard_password"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

_SIGNED_IN = "_bgjobs_signed_in"  # a fingerprint of the password that was entered
_FAILURES = "_bgjobs_login_failures"  # (count, time of the last failure)
_MESSAGE = "_bgjobs_login_message"
_WANTED = "_bgjobs_wanted_page"  # the page a link asked for, opened once the viewer signs in
FREE_TRIES = 3  # wrong passwords before each next try must wait
MAX_WAIT = 60.0


def _secret(name: str):
    """A value from st.secrets, or None. A missing or broken secrets file is
    the same as an empty one here."""
    try:
        return st.secrets[name] if name in st.secrets else None
    except (StreamlitSecretNotFoundError, FileNotFoundError):
        return None


def configured_password() -> str | None:
    """The dashboard password: the env var wins over the secrets file."""
    value = os.environ.get(PASSWORD_ENV) or _secret(PASSWORD_SECRET)
    return str(value) if value else None


def oidc_section() -> Mapping | None:
    section = _secret("auth")
    return section if isinstance(section, Mapping) and section else None


def mode() -> str:
    """ "oidc", "password" or "none": what the gate will ask for."""
    if oidc_section() is not None:
        return "oidc"
    return "password" if configured_password() else "none"


def gate() -> Viewer:
    """Return the signed-in viewer, or show only a login screen and stop the run."""
    current = mode()
    if current == "oidc":
        viewer = _oidc_gate()
    elif current == "password":
        viewer = _password_gate(configured_password())
    else:
        viewer = Viewer("local", "none")
    set_viewer(viewer)
    return viewer


# --- OIDC ----------------------------------------------------------------------------


def _providers(section: Mapping) -> list[str | None]:
    """None stands for the default provider (settings at the top of [auth]);
    a sub-table with a client_id is a named provider (st.login("name"))."""
    found: list[str | None] = []
    if "client_id" in section or "server_metadata_url" in section:
        found.append(None)
    found.extend(k for k, v in section.items() if isinstance(v, Mapping) and "client_id" in v)
    return found or [None]


def _oidc_gate() -> Viewer:
    user = st.user
    if not user.get("is_logged_in"):
        _login_frame()
        if importlib.util.find_spec("authlib") is None:
            st.error(
                "OIDC login is configured in secrets.toml, but Authlib is not installed. "
                "Run `pip install 'streamlit[auth]'` and restart the dashboard."
            )
            st.stop()
        for provider in _providers(oidc_section()):
            label = f"Log in with {provider}" if provider else "Log in"
            st.button(
                label,
                key=f"login_{provider or 'default'}",
                type="primary",
                on_click=st.login,
                args=(provider,) if provider else (),
            )
        st.stop()
    name = user.get("email") or user.get("name") or user.get("preferred_username") or user.get("sub")
    return Viewer(str(name or "oidc-user"), "oidc")


# --- password ---------------------------------------------------------------------------


def _fingerprint(password: str) -> str:
    # Kept in the session instead of a flag, so changing the password signs
    # everybody out.
    return hashlib.sha256(b"bgjobs-dashboard\0" + password.encode()).hexdigest()


def _check_password() -> None:
    entered = st.session_state.get("login_password") or ""
    st.session_state["login_password"] = ""
    password = configured_password()
    count, last = st.session_state.get(_FAILURES, (0, 0.0))
    wait = _wait_after(count) - (time.time() - last)
    if wait > 0:
        st.session_state[_MESSAGE] = f"Too many wrong passwords; try again in {wait:.0f} s."
        return
    if password and hmac.compare_digest(entered.encode(), password.encode()):
        st.session_state[_SIGNED_IN] = _fingerprint(password)
        st.session_state.pop(_FAILURES, None)
        st.session_state.pop(_MESSAGE, None)
        return
    st.session_state[_FAILURES] = (count + 1, time.time())
    wait = _wait_after(count + 1)
    st.session_state[_MESSAGE] = "Wrong password." + (
        f" The next try must wait {wait:.0f} s." if wait else ""
    )


def _wait_after(failures: int) -> float:
    if failures < FREE_TRIES:
        return 0.0
    return min(2.0 ** (failures - FREE_TRIES), MAX_WAIT)


def _password_gate(password: str) -> Viewer:
    signed = st.session_state.get(_SIGNED_IN)
    if signed and hmac.compare_digest(signed, _fingerprint(password)):
        return Viewer("admin", "password")
    if _WANTED not in st.session_state:
        # The login screen runs before st.navigation, so Streamlit forgets the
        # page in the address (/logs?...): remember it for after the sign-in.
        path = urlsplit(st.context.url or "").path.rstrip("/")
        st.session_state[_WANTED] = path.rsplit("/", 1)[-1]
    _login_frame()
    with st.form("login_form", clear_on_submit=True):
        st.text_input("Password", type="password", key="login_password")
        st.form_submit_button("Sign in", key="login_submit", type="primary", on_click=_check_password)
    message = st.session_state.get(_MESSAGE)
    if message:
        st.error(message)
    st.stop()


def open_wanted_page(pages: list) -> None:
    """After a sign-in, go to the page the viewer's link named (with its query)."""
    wanted = st.session_state.pop(_WANTED, None)
    for page in pages:
        if wanted and page.url_path == wanted:
            st.switch_page(page, query_params=st.query_params.to_dict())


def _sign_out() -> None:
    st.session_state.pop(_SIGNED_IN, None)


def _login_frame() -> None:
    st.title("bgjobs")
    st.caption("Background jobs dashboard. Sign in to continue.")


# --- sidebar --------------------------------------------------------------------------------


def sidebar(viewer: Viewer) -> None:
    """Who is signed in, a sign-out button, or a warning that nobody is checked."""
    with st.sidebar:
        if viewer.method == "oidc":
            st.caption(f"Signed in as **{md(viewer.name)}**")
            st.button("Log out", key="logout", on_click=st.logout)
        elif viewer.method == "password":
            st.caption("Signed in with the dashboard password")
            st.button("Sign out", key="logout", on_click=_sign_out)
        else:
            address = st.get_option("server.address") or "all interfaces"
            text = (
                "**Unauthenticated.** Anyone who can reach this address can launch and "
                f"cancel jobs. Set `{PASSWORD_ENV}` to require a password."
            )
            if address in LOOPBACK:
                st.warning(f"{text} Listening on {address} only.", icon=":material/lock_open:")
            else:
                st.error(f"{text} Listening on **{address}**.", icon=":material/lock_open:")
