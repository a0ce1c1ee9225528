"""The Hosts page (fleet mode): each job-worker's host, its slots, and warnings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from bgjobs import api
from bgjobs.errors import BgjobsError
from bgjobs.ui import common

REFRESH_SECONDS = 3.0


def render() -> None:
    cfg = common.config()
    st.title("Hosts")
    if cfg.executor != "procrastinate":
        st.info(
            "One host: this dashboard's machine runs every job. A fleet (store: postgresql://..., "
            "executor: procrastinate, and job-worker on each host) lists its hosts here."
        )
        return
    st.fragment(_live, run_every=REFRESH_SECONDS)(cfg)


def _live(cfg) -> None:
    try:
        hosts = api.hosts(config=cfg)
    except BgjobsError as exc:
        st.error(f"Cannot read the hosts: {exc}")
        return
    if not hosts:
        st.info("No host has run job-worker yet. Start `job-worker` on each host that should run jobs.")
        return
    for host in hosts:
        for warning in host["warnings"]:
            st.warning(f"**{host['name']}**: {warning}")
    st.dataframe(hosts_frame(hosts), hide_index=True, width="stretch")


def hosts_frame(hosts: list[dict]) -> pd.DataFrame:
    """One row per host, in the shape the table shows."""
    rows = [
        {
            "host": h["name"],
            "last seen": f"{h['seen_ago']:.0f} s ago" if h.get("seen_ago") is not None else "-",
            "slots used": f"{h['running']} / {h['slots']}",
            "version": h.get("version") or "",
            "config": (h.get("config_fingerprint") or "")[:12],
            "pid": h.get("pid"),
            "warnings": "; ".join(h["warnings"]),
        }
        for h in hosts
    ]
    return pd.DataFrame(
        rows, columns=["host", "last seen", "slots used", "version", "config", "pid", "warnings"]
    )
