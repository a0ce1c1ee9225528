"""The Launch page; st.navigation in dashboard.py runs this file."""

from bgjobs.ui import launch_page

launch_page.render()
