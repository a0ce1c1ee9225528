"""The Jobs page; st.navigation in dashboard.py runs this file."""

from bgjobs.ui import jobs_page

jobs_page.render()
