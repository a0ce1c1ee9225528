"""The one place that builds the seams (bgjobs.seams) from a config: today's
single-host implementations. Every process works with one `Wiring` per config."""

from __future__ import annotations

import os
from typing import NamedTuple

from .config import Config, load_config
from .eventlog import EventLog
from .executor import LocalExecutor
from .liveness import FlockLiveness
from .seams import Events, Executor, Liveness, Signaller, Store
from .signaller import PidSignaller
from .store import Store as SqliteStore
from .store import highest_used_id


class Wiring(NamedTuple):
    """The config, and the implementation of each seam, for one process."""

    config: Config
    store: Store
    events: Events
    liveness: Liveness
    signaller: Signaller
    executor: Executor


_cache: dict[tuple, Wiring] = {}


def wire(config: Config | str | os.PathLike | None = None) -> Wiring:
    """The Wiring for `config` (a Config, a path, or None for the default file).

    Cached per config file and contents, so a long-lived caller reuses one
    database connection per thread.
    """
    if not isinstance(config, Config):
        config = load_config(config)
    key = (config.path, repr(config))
    rt = _cache.get(key)
    if rt is None:
        rt = Wiring(
            config=config,
            # A new store never hands out an id that an output file or a log
            # record already names (the store was moved aside, say).
            store=SqliteStore(
                config.db_path,
                id_floor=lambda: highest_used_id(
                    os.path.join(config.log_dir, "jobs"), (config.main_log, f"{config.main_log}.1")
                ),
            ),
            events=EventLog.for_config(config),
            liveness=FlockLiveness(config.state_dir),
            signaller=PidSignaller(),
            executor=LocalExecutor(config),
        )
        _cache[key] = rt
    return rt
