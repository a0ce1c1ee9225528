"""Print the modules a bare interpreter has loaded, space-separated."""

import sys

print(" ".join(sys.modules))
