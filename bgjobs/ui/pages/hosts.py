"""The Hosts page; st.navigation in dashboard.py runs this file."""

from bgjobs.ui import hosts_page

hosts_page.render()
