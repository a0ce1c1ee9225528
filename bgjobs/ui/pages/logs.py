"""The Logs page; st.navigation in dashboard.py runs this file."""

from bgjobs.ui import logs_page

logs_page.render()
