"""The one place that builds the seams (bgjobs.seams) from a config: today's
single-host implementations, with the job store in the SQLite file or, when
`store:` is a postgresql:// URL, in PostgreSQL (bgjobs.pgstore; the other
fleet seams are still the local ones, see docs/fleet.md). Every process works
with one `Wiring` per config."""

from __future__ import annotations

import os

from .config import Config, load_config
from .eventlog import EventLog
from .executor import LocalExecutor
from .liveness import FlockLiveness
from .seams import Store, Wiring
from .signaller import PidSignaller
from .store import Store as SqliteStore
from .store import highest_used_id

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
        rt = _fleet(config) if config.executor == "procrastinate" else _local(config)
        _cache[key] = rt
    return rt


def _local(config: Config) -> Wiring:
    """One host: the store (SQLite, or PostgreSQL for a single host), flocks,
    pid-verified signals, posix_spawn."""
    return Wiring(
        config=config,
        store=build_store(config),
        events=EventLog.for_config(config),
        liveness=FlockLiveness(config.state_dir),
        signaller=PidSignaller(),
        executor=LocalExecutor(config),
    )


def _fleet(config: Config) -> Wiring:
    """A fleet (docs/fleet.md): PostgreSQL, advisory locks, the cancel flag's
    NOTIFY, and Procrastinate wake-ups deferred with each waiting row."""
    from . import pg
    from .fleet import ProcrastinateExecutor
    from .fleetevents import FleetEvents
    from .fleetsignal import FleetSignaller
    from .pgliveness import AdvisoryLiveness
    from .pgstore import PgStore

    executor = ProcrastinateExecutor(config)
    store = PgStore(config.store, config.host, id_floor=_id_floor(config), wake=executor.wake)
    return Wiring(
        config=config,
        store=store,
        events=FleetEvents(EventLog.for_config(config), store),
        liveness=AdvisoryLiveness(lambda: pg.connect(config.store, config.host), window=config.fence_after),
        signaller=FleetSignaller(config.host, connect=lambda: pg.connect(config.store, config.host)),
        executor=executor,
    )


def _id_floor(config: Config):
    def id_floor() -> int:
        return highest_used_id(
            os.path.join(config.log_dir, "jobs"), (config.main_log, f"{config.main_log}.1")
        )

    return id_floor


def build_store(config: Config) -> Store:
    """The job store `config` names: the SQLite file, or PostgreSQL (imported
    only then). A new store never hands out an id that an output file or a
    log record of this host already names (the store was moved aside, say)."""

    id_floor = _id_floor(config)

    if config.store is None:
        return SqliteStore(config.db_path, id_floor=id_floor)
    from .pgstore import PgStore

    return PgStore(config.store, config.host, id_floor=id_floor)
