"""The Streamlit dashboard's pages and helpers.

This package and dashboard.py are the only code that imports streamlit. Each
page reads and acts through bgjobs.api (and the log reader, bgjobs.logtable);
none of them writes SQL or starts a process itself.
"""
