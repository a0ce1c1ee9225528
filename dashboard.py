"""The bgjobs operations dashboard: `streamlit run dashboard.py`.

Thin on purpose: the page frame, the auth gate and the navigation. The pages
live in bgjobs/ui/ and do everything through bgjobs.api and bgjobs.logtable.
"""

import streamlit as st

from bgjobs.ui import auth, common, logdata

st.set_page_config(page_title="bgjobs", page_icon=":material/memory:", layout="wide")

# Until the viewer is signed in, only a login form is shown; with no sign-in
# configured, on an address other machines can reach, only how to set one.
viewer = auth.gate()
cfg = common.load_config_or_stop()
logdata.warm_up(cfg.main_log, cfg.errors_log)  # big logs are parsed before anyone asks

pages = [
    st.Page(common.page_path("jobs"), title="Jobs", icon=":material/list_alt:", default=True),
    st.Page(common.page_path("launch"), title="Launch", icon=":material/rocket_launch:"),
    st.Page(common.page_path("logs"), title="Logs", icon=":material/receipt_long:"),
    st.Page(common.page_path("config"), title="Config", icon=":material/settings:"),
]
if cfg.executor == "procrastinate":  # fleet mode
    pages.insert(3, st.Page(common.page_path("hosts"), title="Hosts", icon=":material/dns:"))
page = st.navigation(pages)
auth.open_wanted_page(pages)  # a link opened before the sign-in goes where it pointed
auth.sidebar(viewer)
page.run()
