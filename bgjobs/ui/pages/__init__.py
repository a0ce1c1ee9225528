"""Page scripts that st.navigation runs (one per page). Each calls its page
module's render(); the package marker only makes them install with bgjobs."""
