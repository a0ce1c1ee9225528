"""Config, read-only: the allowlist, the defaults, the paths, and who may sign in."""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from bgjobs import api
from bgjobs.config import Policy
from bgjobs.errors import BgjobsError
from bgjobs.ui import auth, common

POLICY_FIELDS = ("max_retries", "retry_delay", "retry_backoff", "timeout", "cancel_grace", "priority")


def render() -> None:
    cfg = common.config()
    st.title("Config")
    st.caption(f"Read-only. Edit `{cfg.path}` to change it; the dashboard reads it on every page load.")

    st.subheader("Allowed classes", anchor=False)
    try:
        catalog = {e["class"]: e for e in api.catalog(config=cfg)}
    except BgjobsError as exc:
        st.error(str(exc))
        catalog = {}
    rows = []
    for path, entry in cfg.classes.items():
        described = catalog.get(path, {})
        overrides = {k: v for k, v in entry.policy._asdict().items() if getattr(cfg.defaults, k) != v}
        rows.append(
            {
                "class": path,
                "methods": ", ".join(m["name"] for m in described.get("methods", []))
                or ("every public method" if entry.methods is None else ", ".join(entry.methods)),
                "restricted to": "—" if entry.methods is None else ", ".join(entry.methods),
                "overrides": ", ".join(f"{k}={_show(v)}" for k, v in overrides.items()) or "—",
                "max concurrent": entry.max_concurrent,
                "import": described.get("error") or "ok",
            }
        )
    if rows:
        st.dataframe(
            pd.DataFrame(rows),
            hide_index=True,
            placeholder="—",
            key="config_classes",
            column_config={"max concurrent": st.column_config.NumberColumn(format="%d")},
        )
    else:
        st.info("allowed_classes is empty: no job can run.")

    left, right = st.columns(2)
    with left:
        st.subheader("Defaults", anchor=False)
        st.dataframe(_policy_frame(cfg.defaults), hide_index=True, placeholder="—", key="config_defaults")
        st.subheader("Limits", anchor=False)
        st.dataframe(
            pd.DataFrame(
                [
                    {"setting": "max_concurrent", "value": str(cfg.max_concurrent)},
                    {"setting": "log_max_bytes", "value": f"{cfg.log_max_bytes:,}"},
                    {"setting": "log_backups", "value": str(cfg.log_backups)},
                ]
            ),
            hide_index=True,
            placeholder="—",
            key="config_limits",
        )
    with right:
        st.subheader("Paths", anchor=False)
        st.dataframe(
            pd.DataFrame(
                [
                    {"what": "config file", "path": str(cfg.path)},
                    {"what": "job store", "path": cfg.store_label},
                    {"what": "main log", "path": str(cfg.main_log)},
                    {"what": "errors log", "path": str(cfg.errors_log)},
                    {"what": "job output", "path": os.path.dirname(cfg.output_path(0))},
                    {"what": "state dir", "path": str(cfg.state_dir)},
                ]
            ),
            hide_index=True,
            placeholder="—",
            key="config_paths",
        )
        st.subheader("Dashboard access", anchor=False)
        st.markdown(_access_text())


def _policy_frame(policy: Policy) -> pd.DataFrame:
    return pd.DataFrame([{"setting": k, "value": _show(getattr(policy, k))} for k in POLICY_FIELDS])


def _show(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _access_text() -> str:
    mode = auth.mode()
    if mode == "oidc":
        return f"OIDC login (`[auth]` in secrets.toml). Signed in as **{common.md(common.viewer().name)}**."
    if mode == "password":
        return (
            f"Password, from `{auth.PASSWORD_ENV}` or `{auth.PASSWORD_SECRET}` in secrets.toml. "
            "Records name the user `admin`."
        )
    return (
        f"**None.** Set `{auth.PASSWORD_ENV}`, or configure OIDC in `.streamlit/secrets.toml`. "
        "Without either, the dashboard serves only on a loopback address, unless "
        f"`{auth.ALLOW_ENV}` is set. Records name the user `local`."
    )
