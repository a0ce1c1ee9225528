"""Who may use the dashboard: an OIDC login, a shared password, or nobody checks.

- An `[auth]` section in .streamlit/secrets.toml turns on Streamlit's OIDC
  login (st.login / st.user / st.logout).
- Else a password from $BGJOBS_DASHBOARD_PASSWORD, or `dashboard_password` in
  the secrets, shows a login form until it is entered.
- Else nothing is checked, but only while the server listens on a loopback
  address (.streamlit/config.toml binds to 127.0.0.1), or the operator sets
  $BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED=1. Anywhere else the dashboard shows
  only how to set a password. The sidebar says that nobody is checked.

Wrong passwords are counted per client address, across sessions (throttle.py).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from bgjobs.ui import throttle
from bgjobs.ui.common import Viewer, md, set_viewer

PASSWORD_ENV = "BGJOBS_DASHBOARD_PASSWORD"
PASSWORD_SECRET = "dashboard_password"
ALLOW_ENV = "BGJOBS_DASHBOARD_ALLOW_UNAUTHENTICATED"
_YES = {"1", "true", "yes", "on"}

_SIGNED_IN = "_bgjobs_signed_in"  # a fingerprint of the password that was entered
_MESSAGE = "_bgjobs_login_message"
_WANTED = "_bgjobs_wanted_page"  # the page a link asked for, opened once the viewer signs in


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
        _refuse_if_exposed()
        viewer = Viewer("local", "none")
    set_viewer(viewer)
    return viewer


# --- no sign-in: loopback only ---------------------------------------------------------


def listen_address() -> str | None:
    """The server's `server.address` option; None when it is not set."""
    return st.get_option("server.address") or None


def is_loopback(address: str | None) -> bool:
    """True if a server bound to `address` is reachable from this machine only.

    Unset is not loopback: Streamlit then listens on every interface. A host
    name other than localhost, and a unix socket (which exists to sit behind a
    proxy), are not either.
    """
    if not address:
        return False
    host = address.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def unauthenticated_allowed() -> bool:
    """True if the operator opted out of the sign-in on a reachable address."""
    return os.environ.get(ALLOW_ENV, "").strip().lower() in _YES


def _where(address: str | None) -> str:
    return f"`{address}`" if address else "every interface (`server.address` is not set)"


def _refuse_if_exposed() -> None:
    """With no sign-in configured, serve only on a loopback address, unless the
    operator says otherwise. Else show how to set a sign-in, and stop."""
    address = listen_address()
    if is_loopback(address) or unauthenticated_allowed():
        return
    st.title("bgjobs")
    st.error(
        f"**No sign-in is configured, and this dashboard listens on {_where(address)}**, "
        "so other machines may reach it, and anyone there could launch and cancel jobs. "
        "It shows nothing until you do one of these and restart it:\n\n"
        f"- set `{PASSWORD_ENV}` (or `{PASSWORD_SECRET}` in `.streamlit/secrets.toml`) to "
        "require a password, or add an `[auth]` section to `.streamlit/secrets.toml` for OIDC login;\n"
        "- listen on this machine only: `--server.address 127.0.0.1`;\n"
        "- if something in front of it already checks who comes in, set "
        f"`{ALLOW_ENV}=1`.",
        icon=":material/lock:",
    )
    st.stop()


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


def client_address() -> str:
    """The address the viewer connects from, as the server's socket sees it.

    Streamlit reports this machine as None; it counts as one client. Headers
    such as X-Forwarded-For are not used: a client writes them itself, and
    each new value would get it fresh tries. Behind a reverse proxy, every
    viewer therefore shares the proxy's address (and its count).
    """
    address = st.context.ip_address
    return address if isinstance(address, str) and address else "this machine"


def _check_password() -> None:
    entered = st.session_state.get("login_password") or ""
    st.session_state["login_password"] = ""
    password = configured_password()
    result = throttle.LIMITER.attempt(
        client_address(),
        lambda: bool(password) and hmac.compare_digest(entered.encode(), password.encode()),
    )
    if result.passed:
        st.session_state[_SIGNED_IN] = _fingerprint(password)
        st.session_state.pop(_MESSAGE, None)
        return
    too_many = f"Too many failed sign-ins from this address; {result.wait_text}."
    if not result.checked:
        st.session_state[_MESSAGE] = too_many
    else:
        st.session_state[_MESSAGE] = "Wrong password." + (f" {too_many}" if result.wait else "")


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
            address = listen_address()
            text = (
                "**Unauthenticated.** Anyone who can reach this address can launch and "
                f"cancel jobs. Set `{PASSWORD_ENV}` to require a password."
            )
            if is_loopback(address):
                st.warning(f"{text} Listening on {_where(address)} only.", icon=":material/lock_open:")
            else:  # only with the opt-out; else the gate showed nothing
                st.error(
                    f"{text} Listening on {_where(address)}, because `{ALLOW_ENV}` is set.",
                    icon=":material/lock_open:",
                )
