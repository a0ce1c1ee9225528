"""A job module that reports what its process had loaded before it was imported.

tests/test_launch_startup.py copies it into a test project as `testjobs/probe.py`:
the runner (and the attempt, its fork) import it on the job's first line.
"""

import sys

LOADED_BEFORE_ME = set(sys.modules)  # what the runner (and the attempt) had loaded


class Probe:
    def loaded(self, names: list) -> list:
        return sorted(n for n in names if n in LOADED_BEFORE_ME)
