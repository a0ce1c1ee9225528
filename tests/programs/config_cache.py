"""Load the config file argv[1]; print its max_concurrent, and whether PyYAML was
imported for it (not when the parse came from the cache)."""

import sys

from bgjobs.config import load_config

config = load_config(sys.argv[1])
print(config.max_concurrent, "yaml" in sys.modules)
