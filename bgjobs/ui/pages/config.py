"""The Config page; st.navigation in dashboard.py runs this file."""

from bgjobs.ui import config_page

config_page.render()
