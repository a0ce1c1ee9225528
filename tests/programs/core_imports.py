"""Import the core's entry points (job-run, job-status, job-cancel, the runner,
the API); exit 1, listing them, if a dashboard-only module came with them."""

import importlib
import sys

for name in ("bgjobs.cli.run", "bgjobs.runner", "bgjobs.api", "bgjobs.cli.status", "bgjobs.cli.cancel"):
    importlib.import_module(name)
bad = [m for m in ("pandas", "streamlit", "pyarrow") if m in sys.modules]
print(bad)
sys.exit(1 if bad else 0)
