"""A job that does nothing, kept in a module of its own so that importing it
costs nothing either. The benchmarks run thousands of these."""


class Noop:
    def run(self) -> None:
        return None
