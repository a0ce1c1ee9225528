"""config.yaml -> one frozen, validated Config. Read once, at the edge."""

from __future__ import annotations

import os
from typing import NamedTuple

from .errors import ConfigError

ENV_VAR = "BGJOBS_CONFIG"
HOST_ENV_VAR = "BGJOBS_HOST"  # overrides the `host` key
DEFAULT_NAME = "config.yaml"
# A config is a few KB; one this large is a mistake (or an attack on memory).
MAX_BYTES = 1024 * 1024

# Keys a per-class entry may override, with the defaults' keys they shadow.
_POLICY_KEYS = {"max_retries", "retry_delay", "retry_backoff", "timeout", "cancel_grace", "priority"}
_CLASS_KEYS = _POLICY_KEYS | {"class", "methods", "max_concurrent"}
_TOP_KEYS = _POLICY_KEYS | {
    "allowed_classes",
    "max_concurrent",
    "log_dir",
    "state_dir",
    "log_max_bytes",
    "log_backups",
    "warm_spare",
    "output_max_bytes",
    "store",
    "executor",
    "host",
    "worker_slots",
    "fence_after",
}
EXECUTORS = ("local", "procrastinate")
_STORE_SCHEMES = ("postgresql", "postgres")
_NO_PASSWORDS = "passwords never live in config.yaml; use libpq's passfile (~/.pgpass) or PGPASSWORD"


class Policy(NamedTuple):
    """How attempts of a job are run and retried.

    max_retries: retries after the first attempt (3 means up to 4 attempts);
    retry_delay: seconds before the first retry; retry_backoff: each next delay
    is multiplied by this; timeout: seconds per attempt, None for no limit;
    cancel_grace: seconds between SIGTERM and SIGKILL; priority: niceness,
    -20 (most urgent) .. 19.
    """

    max_retries: int = 3
    retry_delay: float = 5.0
    retry_backoff: float = 2.0
    timeout: float | None = None
    cancel_grace: float = 10.0
    priority: int = 0

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1


class ClassPolicy(NamedTuple):
    """One allowlisted class and what it may do. `methods` is None for every
    public method."""

    path: str
    methods: tuple[str, ...] | None
    policy: Policy
    max_concurrent: int | None = None


class Config(NamedTuple):
    """The validated config. `path` is the file; its folder is the project root.

    Paths are absolute `str`s.
    """

    path: str
    classes: dict[str, ClassPolicy]
    defaults: Policy
    max_concurrent: int
    log_dir: str
    state_dir: str
    log_max_bytes: int
    log_backups: int
    warm_spare: bool = True
    output_max_bytes: int = 10 * 1024 * 1024
    # Fleet mode (docs/fleet.md). `store` is None for the SQLite file
    # (db_path), or a postgresql:// URL, never with a password in it.
    store: str | None = None
    executor: str = "local"
    host: str = "localhost"  # this host's name in the fleet ($BGJOBS_HOST, else the host name)
    worker_slots: int = 1  # jobs this host runs at once in fleet mode
    fence_after: float = 30.0  # seconds a runner goes on without the store before it stops its attempt

    @property
    def root(self) -> str:
        return os.path.dirname(self.path)

    @property
    def file_name(self) -> str:
        """The config file's name, as messages show it."""
        return os.path.basename(self.path)

    @property
    def db_path(self) -> str:
        """The SQLite store's file (used when `store` is None)."""
        return os.path.join(self.state_dir, "jobs.sqlite3")

    @property
    def store_label(self) -> str:
        """The job store as messages name it: the SQLite file, or the URL."""
        return self.db_path if self.store is None else self.store

    @property
    def main_log(self) -> str:
        return os.path.join(self.log_dir, "background_jobs.log")

    @property
    def errors_log(self) -> str:
        return os.path.join(self.log_dir, "background_jobs_errors.log")

    def output_path(self, job_id: int) -> str:
        """Where job `job_id` writes its stdout and stderr."""
        return os.path.join(self.log_dir, "jobs", f"{job_id}.out")

    def policy_for(self, class_path: str) -> Policy:
        entry = self.classes.get(class_path)
        return entry.policy if entry else self.defaults


def find_config(path: str | os.PathLike | None = None) -> str:
    """The config file to use: `path`, else $BGJOBS_CONFIG, else ./config.yaml."""
    chosen = path or os.environ.get(ENV_VAR) or DEFAULT_NAME
    return os.path.realpath(os.path.expanduser(os.fspath(chosen)))


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and validate the config file. Raises ConfigError naming the file and key."""
    file = find_config(path)
    try:
        st = os.stat(file)
    except FileNotFoundError:
        raise ConfigError(
            f"{file}: no such config file; create it, or pass --config PATH or set {ENV_VAR}"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror}") from None
    stamp = [st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino]
    raw = _cache_get(file, stamp)
    if raw is not _MISS:
        return parse_config(raw, file)
    raw = _read_yaml(file)
    config = parse_config(raw, file)
    _cache_put(file, stamp, raw)  # only a document that passed: the cache holds no junk
    return config


def _read_yaml(file: str) -> object:
    try:
        with open(file, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"{file}: config is larger than {MAX_BYTES // 1024} KB; a bgjobs config is a few KB, "
            "check that this is the right file"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: config is not UTF-8 text") from None
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        if "*" in text:  # an alias needs one; most configs have none, and skip the scan
            _refuse_aliases(yaml, text, loader, file)
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except (ValueError, RecursionError) as exc:
        # From building a value: an integer of more digits than Python converts,
        # or (pure-Python loader) nesting deeper than the stack.
        raise ConfigError(f"{file}: malformed YAML: {exc}; fix the value there") from None
    except yaml.YAMLError as exc:
        # One line, at the spot: PyYAML's own text spans lines and names "<unicode string>".
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
        context = getattr(exc, "context", None)
        detail = f"{what} ({context})" if context else what
        raise ConfigError(f"{file}{where}: malformed YAML: {detail}; fix the YAML there") from None


def _refuse_aliases(yaml, text: str, loader, file: str) -> None:
    """Raise ConfigError at the first alias (*name) in `text`. The loader shares
    one object per anchor, but whatever walks the document (the JSON cache, a
    repr in an error message) meets each alias as a full copy of its value, so
    a few nested ones ("billion laughs") make a 1 KB file gigabytes of data.
    The events are read without building anything (by the C parser, if there is
    one): about one more parse, and only of a text that holds a '*'."""
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark is not None else "?"
            raise ConfigError(
                f"{file}, line {line}: YAML aliases (*{event.anchor}) are not allowed in a bgjobs "
                "config; write the value out"
            )


# Parsing YAML means importing PyYAML, which costs more than the rest of a
# `job-run`. So the parsed document (plain JSON data) is cached per config file
# and reused while the file's size, times and inode are unchanged.
_MISS = object()


def _cache_file(file: str) -> str:
    base = os.environ.get("BGJOBS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bgjobs"
    )
    return os.path.join(base, f"config-{_fnv1a(file.encode()):016x}.json")


def _fnv1a(data: bytes) -> int:
    """64-bit FNV-1a: a stable name for a path, without importing zlib or
    hashlib (and their shared libraries) into every runner."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _cache_get(file: str, stamp: list) -> object:
    import json

    try:
        with open(_cache_file(file), encoding="utf-8") as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return _MISS
    if not isinstance(cached, dict) or cached.get("stamp") != stamp or cached.get("path") != file:
        return _MISS
    return cached.get("doc")


def _cache_put(file: str, stamp: list, doc: object) -> None:
    import json

    target = _cache_file(file)
    try:
        data = json.dumps({"path": file, "stamp": stamp, "doc": doc}, allow_nan=True)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, target)
    except (OSError, TypeError, ValueError):
        pass  # a YAML value JSON cannot hold, or no writable cache: parse each time


def parse_config(raw: object, file: str) -> Config:
    """Validate an already-loaded mapping (the YAML document) into a Config."""
    v = _Validator(file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of keys, got {_kind(raw)}")
    v.no_unknown(raw, _TOP_KEYS, "")
    defaults = v.policy(raw, Policy(), "")
    classes: dict[str, ClassPolicy] = {}
    allowed = raw.get("allowed_classes", [])
    if not isinstance(allowed, list):
        v.fail("allowed_classes", "must be a list of dotted class paths", allowed)
    for i, item in enumerate(allowed):
        where = f"allowed_classes[{i}]"
        if isinstance(item, str):
            item = {"class": item}
        if not isinstance(item, dict):
            v.fail(where, "must be a dotted class path or a mapping with a 'class' key", item)
        v.no_unknown(item, _CLASS_KEYS, where + ".")
        path = item.get("class")
        if (
            not isinstance(path, str)
            or "." not in path
            or not all(part.isidentifier() for part in path.split("."))
        ):
            v.fail(where + ".class", "must be a dotted path like jobs.example.ExampleJob", path)
        if path in classes:
            v.fail(where, f"lists {path} twice; keep one entry", path)
        methods = item.get("methods")
        if methods is not None:
            if not isinstance(methods, list) or not all(
                isinstance(m, str) and m.isidentifier() and not m.startswith("_") for m in methods
            ):
                v.fail(where + ".methods", "must be a list of public method names", methods)
            methods = tuple(methods)
        classes[path] = ClassPolicy(
            path=path,
            methods=methods,
            policy=v.policy(item, defaults, where + "."),
            max_concurrent=v.positive_int(item, "max_concurrent", None, where + "."),
        )
    root = os.path.dirname(file)
    return Config(
        path=file,
        classes=classes,
        defaults=defaults,
        max_concurrent=v.positive_int(raw, "max_concurrent", os.cpu_count() or 1, ""),
        log_dir=v.directory(raw, "log_dir", "logs", root),
        state_dir=v.directory(raw, "state_dir", "state", root),
        log_max_bytes=v.positive_int(raw, "log_max_bytes", 10 * 1024 * 1024, ""),
        log_backups=v.non_negative_int(raw, "log_backups", 5, ""),
        warm_spare=v.boolean(raw, "warm_spare", True, ""),
        output_max_bytes=v.integer(raw, "output_max_bytes", 10 * 1024 * 1024, "", 1024, 2**50),
        **_fleet(v, raw),
    )


def _fleet(v: _Validator, raw: dict) -> dict:
    """The fleet keys (docs/fleet.md), validated; their defaults keep the
    SQLite store and the local executor."""
    store = v.store_url(raw)
    executor = raw.get("executor", "local")
    if executor not in EXECUTORS:
        v.fail("executor", f"must be one of {', '.join(EXECUTORS)}", executor)
    if executor == "procrastinate" and store is None:
        raise ConfigError(f"{v.file}: key 'executor': executor: procrastinate needs store: postgresql://...")
    host, what = os.environ.get(HOST_ENV_VAR), f"{HOST_ENV_VAR} (which overrides key 'host')"
    if host is None:
        host, what = raw.get("host"), "key 'host'"
    if host is None:
        host = os.uname().nodename  # socket.gethostname(), without importing socket
        host = host if _host_name_ok(host) else "localhost"
    if not _host_name_ok(host):
        raise ConfigError(
            f"{v.file}: {what} must be this host's name in the fleet: 1 to 255 printable characters, "
            f"no spaces; got {_kind(host)}"
        )
    fence_after = v.number(raw, "fence_after", 30.0, "", minimum=1.0)
    if fence_after > 86400:
        v.fail("fence_after", "must be a number of seconds from 1 to 86400", fence_after)
    return dict(
        store=store,
        executor=executor,
        host=host,
        worker_slots=v.integer(raw, "worker_slots", os.cpu_count() or 1, "", 1, 10**6),
        fence_after=fence_after,
    )


def _host_name_ok(host: object) -> bool:
    return (
        isinstance(host, str)
        and 0 < len(host) <= 255
        and host.isprintable()
        and not any(c.isspace() for c in host)
    )


def _kind(value: object) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


class _Validator:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, what: str, value: object) -> None:
        raise ConfigError(f"{self.file}: key '{key}' {what}; got {_kind(value)}")

    def no_unknown(self, mapping: dict, allowed: set[str], prefix: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise ConfigError(
                    f"{self.file}: unknown key '{prefix}{key}'; known keys are: {', '.join(sorted(allowed))}"
                )

    def number(self, mapping, key, default, prefix, *, minimum=0.0, allow_none=False):
        if key not in mapping:
            return default
        value = mapping[key]
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(prefix + key, "must be a number of seconds", value)
        if not minimum <= value < float("inf"):  # also refuses NaN
            self.fail(prefix + key, f"must be a finite number >= {minimum:g}", value)
        return float(value)

    def integer(self, mapping, key, default, prefix, lo, hi):
        if key not in mapping or (mapping[key] is None and default is None):
            return default
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(prefix + key, f"must be a whole number from {lo} to {hi}", value)
        return value

    def boolean(self, mapping, key, default, prefix):
        value = mapping.get(key, default)
        if not isinstance(value, bool):
            self.fail(prefix + key, "must be true or false", value)
        return value

    def positive_int(self, mapping, key, default, prefix):
        return self.integer(mapping, key, default, prefix, 1, 10**12)

    def non_negative_int(self, mapping, key, default, prefix):
        return self.integer(mapping, key, default, prefix, 0, 10**6)

    def policy(self, mapping: dict, base: Policy, prefix: str) -> Policy:
        timeout = self.number(mapping, "timeout", base.timeout, prefix, allow_none=True)
        if timeout is not None and timeout <= 0:
            self.fail(prefix + "timeout", "must be a positive number of seconds, or null", timeout)
        backoff = self.number(mapping, "retry_backoff", base.retry_backoff, prefix, minimum=1.0)
        return Policy(
            max_retries=self.integer(mapping, "max_retries", base.max_retries, prefix, 0, 1000),
            retry_delay=self.number(mapping, "retry_delay", base.retry_delay, prefix),
            retry_backoff=backoff,
            timeout=timeout,
            cancel_grace=self.number(mapping, "cancel_grace", base.cancel_grace, prefix),
            priority=self.integer(mapping, "priority", base.priority, prefix, -20, 19),
        )

    def store_url(self, mapping: dict) -> str | None:
        """`store`: None (the SQLite file), or a postgresql:// URL with no
        password in it. An error never shows a password it found."""
        value = mapping.get("store")
        if value is None:
            return None
        what = "must be null (the SQLite file state_dir/jobs.sqlite3) or a postgresql:// URL"
        if not isinstance(value, str):
            self.fail("store", what, value)
        from urllib.parse import parse_qsl, urlsplit

        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme not in _STORE_SCHEMES:
            got = f"a URL of scheme '{scheme}'" if scheme else "no URL (it has no postgresql:// scheme)"
            raise ConfigError(f"{self.file}: key 'store' {what}; got {got}")
        try:
            parts = urlsplit(value)
            password = parts.password is not None or any(k == "password" for k, _ in parse_qsl(parts.query))
        except ValueError as exc:
            raise ConfigError(f"{self.file}: key 'store' is not a URL that can be read ({exc})") from None
        if password:
            raise ConfigError(f"{self.file}: key 'store' holds a password: {_NO_PASSWORDS}")
        return value

    def directory(self, mapping, key, default, root: str) -> str:
        value = mapping.get(key, default)
        if not isinstance(value, str) or not value:
            self.fail(key, "must be a directory path", value)
        path = os.path.expanduser(value)
        return path if os.path.isabs(path) else os.path.realpath(os.path.join(root, path))
