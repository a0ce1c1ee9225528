"""Launch one job through the API and exit at once, printing its id: the job
(record_start, which appends to MARKER, then sleeps a second) must outlive us.

argv: CONFIG MARKER."""

import sys

from bgjobs import api

config, marker = sys.argv[1], sys.argv[2]
print(api.run_background_job("testjobs.tasks.Tasks", "record_start", marker, 1.0, config=config))
