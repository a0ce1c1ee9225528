"""The parts one process works with, built once from one config file."""

from __future__ import annotations

import os
from typing import NamedTuple

from .config import Config, load_config
from .eventlog import EventLog
from .spawner import LocalSpawner
from .store import Store, highest_used_id


class Runtime(NamedTuple):
    """The config, store, event log and spawner one process works with."""

    config: Config
    store: Store
    log: EventLog
    spawner: LocalSpawner

    def lock_path(self, job_id: int) -> str:
        """The runner of job `job_id` holds an exclusive flock on this file."""
        return os.path.join(self.config.state_dir, "locks", f"{job_id}.lock")

    @property
    def waker_lock(self) -> str:
        return os.path.join(self.config.state_dir, "waker.lock")


_cache: dict[tuple, Runtime] = {}


def open_runtime(config: Config | str | os.PathLike | None = None) -> Runtime:
    """A Runtime for `config` (a Config, a path, or None for the default file).

    Runtimes are cached per config file and contents, so a long-lived caller
    reuses one database connection per thread.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    key = (config.path, repr(config))
    rt = _cache.get(key)
    if rt is None:
        rt = Runtime(
            config=config,
            # A new store never hands out an id that an output file or a log
            # record already names (the store was moved aside, say).
            store=Store(
                config.db_path,
                id_floor=lambda: highest_used_id(
                    os.path.join(config.log_dir, "jobs"), (config.main_log, f"{config.main_log}.1")
                ),
            ),
            log=EventLog.for_config(config),
            spawner=LocalSpawner(config),
        )
        _cache[key] = rt
    return rt
