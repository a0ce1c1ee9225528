"""The fleet's config keys (store, executor, host, worker_slots, fence_after):
their defaults keep one host on its SQLite file; each wrong value is a
ConfigError that names the key; a password is refused without being shown;
and a PostgreSQL store that cannot be reached is one line and exit 7, with
nothing launched. Through the real console scripts where a user meets it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bgjobs.config import HOST_ENV_VAR, load_config, parse_config
from bgjobs.errors import EXIT_STORE, EXIT_USAGE, ConfigError
from bgjobs.store import Store
from bgjobs.wiring import build_store
from tests.conftest import BIN

URL = "postgresql://bgjobs@db.internal:5432/bgjobs"


def config(**keys):
    return parse_config({"allowed_classes": ["jobs.a.A"], **keys}, "/srv/app/config.yaml")


@pytest.fixture(autouse=True)
def no_host_env(monkeypatch):
    monkeypatch.delenv(HOST_ENV_VAR, raising=False)


def test_the_defaults_are_one_host_on_its_sqlite_file():
    cfg = config()
    assert (cfg.store, cfg.executor, cfg.fence_after) == (None, "local", 30.0)
    assert cfg.host == os.uname().nodename == socket.gethostname()
    assert cfg.worker_slots == (os.cpu_count() or 1)
    assert cfg.store_label == cfg.db_path == "/srv/app/state/jobs.sqlite3"
    store = build_store(cfg)
    assert isinstance(store, Store) and store.path == cfg.db_path


@pytest.mark.parametrize("url", [URL, "postgres://db.internal/bgjobs", "postgresql:///bgjobs?host=/run/pg"])
def test_a_postgresql_url_makes_the_store_postgresql(url):
    from bgjobs.pgstore import PgStore

    cfg = config(store=url, executor="procrastinate", host="web-1", worker_slots=4, fence_after=12.5)
    assert (cfg.store, cfg.executor, cfg.host, cfg.worker_slots, cfg.fence_after) == (
        url,
        "procrastinate",
        "web-1",
        4,
        12.5,
    )
    store = build_store(cfg)  # no connection yet: that is made on first use
    assert isinstance(store, PgStore) and store.host == "web-1" and store.path == url


def test_bgjobs_host_overrides_the_host_key(monkeypatch):
    monkeypatch.setenv(HOST_ENV_VAR, "worker-7")
    assert config(host="web-1").host == "worker-7"
    assert config().host == "worker-7"
    monkeypatch.setenv(HOST_ENV_VAR, "two words")
    with pytest.raises(
        ConfigError, match=r"BGJOBS_HOST \(which overrides key 'host'\) must be this host's name"
    ):
        config()


PASSWORDS = [
    "postgresql://bgjobs:s3cret-pw@db.internal/bgjobs",
    "postgres://bgjobs:s3cret-pw@db.internal:5432/bgjobs?sslmode=require",
    "postgresql://bgjobs@db.internal/bgjobs?password=s3cret-pw",
]


@pytest.mark.parametrize("url", PASSWORDS)
def test_a_password_in_the_url_is_refused_and_never_shown(url):
    with pytest.raises(ConfigError) as caught:
        config(store=url)
    message = str(caught.value)
    assert "key 'store'" in message and "s3cret" not in message
    assert message.endswith(
        "passwords never live in config.yaml; use libpq's passfile (~/.pgpass) or PGPASSWORD"
    )


BAD = [
    (
        {"store": "mysql://u@h/db"},
        "key 'store' must be null (the SQLite file state_dir/jobs.sqlite3) or a postgresql:// URL; got a URL of scheme 'mysql'",
    ),
    ({"store": "sqlite:///state/jobs.sqlite3"}, "got a URL of scheme 'sqlite'"),
    ({"store": "state/jobs.sqlite3"}, "got no URL (it has no postgresql:// scheme)"),
    ({"store": 5}, "key 'store' must be null"),
    ({"store": "postgresql://[::1/db"}, "key 'store' is not a URL that can be read"),
    ({"executor": "procrastinate"}, "key 'executor': executor: procrastinate needs store: postgresql://..."),
    (
        {"executor": "celery", "store": URL},
        "key 'executor' must be one of local, procrastinate; got str 'celery'",
    ),
    ({"host": ""}, "key 'host' must be this host's name in the fleet"),
    ({"host": "web 1"}, "key 'host' must be this host's name in the fleet"),
    ({"host": 7}, "key 'host' must be this host's name in the fleet"),
    ({"host": "h" * 256}, "key 'host' must be this host's name in the fleet"),
    ({"host": "web\x01"}, "key 'host' must be this host's name in the fleet"),
    ({"worker_slots": 0}, "key 'worker_slots' must be a whole number from 1 to 1000000; got int 0"),
    ({"worker_slots": -2}, "key 'worker_slots' must be a whole number from 1"),
    ({"worker_slots": 2.5}, "key 'worker_slots' must be a whole number from 1"),
    ({"worker_slots": True}, "key 'worker_slots' must be a whole number from 1"),
    ({"worker_slots": "4"}, "key 'worker_slots' must be a whole number from 1"),
    ({"fence_after": 0}, "key 'fence_after' must be a finite number >= 1"),
    ({"fence_after": -5}, "key 'fence_after' must be a finite number >= 1"),
    ({"fence_after": float("nan")}, "key 'fence_after' must be a finite number >= 1"),
    ({"fence_after": "30s"}, "key 'fence_after' must be a number of seconds"),
    ({"fence_after": 10**6}, "key 'fence_after' must be a number of seconds from 1 to 86400"),
]


@pytest.mark.parametrize(("keys", "message"), BAD, ids=[str(k) for k, _ in BAD])
def test_each_wrong_fleet_value_is_a_config_error_that_names_the_key(keys, message):
    with pytest.raises(ConfigError) as caught:
        config(**keys)
    assert str(caught.value).startswith("/srv/app/config.yaml: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# --- through the console scripts --------------------------------------------------


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_project(root: Path, **keys) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({"allowed_classes": ["testjobs.tasks.Tasks"], **keys}))
    return path


def run(root: Path, cfg: Path, *args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, BGJOBS_CACHE_DIR=str(root / "cache"))
    env.pop("BGJOBS_CONFIG", None)
    argv = [sys.executable, "-c", code, *args] if code else [str(BIN / args[0]), *args[1:]]
    return subprocess.run(argv, env=env, cwd=root, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args", [(), ("--json",), ("7",)])
def test_an_unreachable_postgresql_is_one_line_and_exit_7_launching_nothing(tmp_path, args):
    port = closed_port()
    cfg = write_project(tmp_path, store=f"postgresql://bgjobs@127.0.0.1:{port}/jobsdb")
    proc = run(tmp_path, cfg, "job-status", "--config", str(cfg), *args)
    assert proc.returncode == EXIT_STORE, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(
        f"error: cannot reach PostgreSQL for the job store, database jobsdb at 127.0.0.1:{port} "
    )
    assert lines[0].endswith("is PostgreSQL running? check store: in config.yaml")
    assert "Traceback" not in proc.stderr
    # Nothing was launched: no runner, no waker, no store file.
    assert not (tmp_path / "state" / "jobs.sqlite3").exists()
    assert not (tmp_path / "state" / "waker.lock").exists()


def test_job_run_against_an_unreachable_postgresql_is_exit_7_and_queues_nothing(tmp_path):
    cfg = write_project(tmp_path, store=f"postgresql://bgjobs@127.0.0.1:{closed_port()}/jobsdb")
    (tmp_path / "testjobs").mkdir()
    (tmp_path / "testjobs" / "__init__.py").write_text("")
    (tmp_path / "testjobs" / "tasks.py").write_text("class Tasks:\n    def ok(self):\n        return 1\n")
    proc = run(tmp_path, cfg, "job-run", "--config", str(cfg), "testjobs.tasks.Tasks", "ok")
    assert proc.returncode == EXIT_STORE, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "is PostgreSQL running?" in proc.stderr
    assert proc.stdout == ""


def test_a_bad_fleet_key_stops_job_status_with_exit_2(tmp_path):
    cfg = write_project(tmp_path, store="postgresql://bgjobs:hunter2@db/bgjobs")
    proc = run(tmp_path, cfg, "job-status", "--config", str(cfg))
    assert proc.returncode == EXIT_USAGE
    assert "passwords never live in config.yaml" in proc.stderr and "hunter2" not in proc.stderr


MISSING_PSYCOPG = """
import sys
sys.modules["psycopg"] = None  # as if the fleet extra were not installed
from bgjobs.cli.status import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_missing_fleet_extra_is_one_error_that_says_how_to_install_it(tmp_path):
    cfg = write_project(tmp_path, store=f"postgresql://bgjobs@127.0.0.1:{closed_port()}/jobsdb")
    proc = run(tmp_path, cfg, "--config", str(cfg), code=MISSING_PSYCOPG)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert 'pip install "bgjobs[fleet]"' in line


def test_a_config_file_with_the_fleet_keys_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("BGJOBS_CACHE_DIR", str(tmp_path / "cache"))
    cfg = write_project(tmp_path, store=URL, host="web-2", worker_slots=3, fence_after=45)
    loaded = load_config(cfg)
    assert (loaded.store, loaded.host, loaded.worker_slots, loaded.fence_after) == (URL, "web-2", 3, 45.0)
    assert loaded.store_label == URL


def test_a_store_given_a_password_from_python_never_shows_it():
    """The API takes a URL as given; its messages and `path` leave the password out."""
    from bgjobs.errors import StoreError
    from bgjobs.pgstore import PgStore

    port = closed_port()
    store = PgStore(f"postgresql://bgjobs:s3cret@127.0.0.1:{port}/jobsdb?password=s3cret", "h")
    assert "s3cret" not in store.path
    with pytest.raises(StoreError) as caught:
        store.get(1)
    assert "s3cret" not in str(caught.value) and "s3cret" not in caught.value.path
    assert f"database jobsdb at 127.0.0.1:{port}" in str(caught.value)


def test_one_host_on_a_postgresql_store_runs_jobs_to_their_end(project, pg_url):
    """Until the fleet's other seams land, a PostgreSQL store serves one host
    with the local ones: a job succeeds, a failing one is retried then fails,
    a delayed one waits, and a running one is cancelled."""
    project.write_config(store=pg_url, max_retries=1)
    ok = project.submit("ok")
    boom = project.submit("fail")
    assert project.wait_final(ok).status.value == "succeeded"
    failed = project.wait_final(boom)
    assert failed.status.value == "failed" and failed.attempt == 2
    assert project.rt.store.path == pg_url  # the rows are in PostgreSQL, not the file
    assert not (project.root / "state" / "jobs.sqlite3").exists()
    proc = project.cli("job-status", str(ok), "--json", check=True)
    assert '"status": "succeeded"' in proc.stdout
    # Still queued while the long one starts, however slow the machine; it is
    # released for good below by a timeline of its own.
    delayed = project.submit("ok", delay=2.0)
    long = project.submit("sleep", 600)
    assert project.rt.store.get(delayed).status.value == "queued"
    project.wait_status(long, "running")
    proc = project.cli("job-cancel", str(long), "--json")
    assert proc.returncode == 0, proc.stderr
    assert project.job(long).status.value == "cancelled"
    assert project.wait_final(delayed).status.value == "succeeded"
    from_cli = int(project.cli("job-run", "testjobs.tasks.Tasks", "ok", check=True).stdout)
    assert project.wait_final(from_cli).status.value == "succeeded"
