"""Example jobs. Each class here is allowlisted in config.yaml."""
