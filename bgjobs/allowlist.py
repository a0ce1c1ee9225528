"""Class path + method + raw params -> a validated JobSpec, or a RejectedError.

Only classes listed in config.yaml are imported. A method runs only if it is
public, callable, and defined on the class or one of its own bases (never on
`object` or another builtin). Params are coerced to the method's signature by
the one rule in bgjobs.params, all before a job row exists.
"""

from __future__ import annotations

import json
import sys
from typing import NamedTuple

from .config import ClassPolicy, Config
from .errors import RejectedError
from .params import (
    EMPTY,
    KEYWORD_ONLY,
    VAR_KEYWORD,
    VAR_POSITIONAL,
    coerce_params,
    kind_of,
    parameters,
    signature,
    unwrap,
)


class JobSpec(NamedTuple):
    """A validated launch: an allowed class, one of its methods, coerced params."""

    class_path: str
    method: str
    params: list


def class_path_of(job: object) -> str:
    """A class object or a dotted path string -> the dotted path."""
    if isinstance(job, str):
        return job
    if isinstance(job, type):
        return f"{job.__module__}.{job.__qualname__}"
    raise RejectedError(f"expected a job class or a dotted class path, got {job!r}", field="class")


def ensure_import_path(config: Config) -> None:
    """Put the project root first on sys.path, so `jobs.x.Y` imports from anywhere."""
    root = config.root
    if root not in sys.path:
        sys.path.insert(0, root)


def allowed_entry(config: Config, class_path: str) -> ClassPolicy:
    entry = config.classes.get(class_path)
    if entry is None:
        raise RejectedError(
            f"class {class_path} is not in allowed_classes ({config.file_name}); add it there to allow it",
            field="class",
        )
    return entry


def resolve_class(config: Config, class_path: str) -> type:
    """Import an allowlisted class. Raises RejectedError for anything else."""
    allowed_entry(config, class_path)
    ensure_import_path(config)
    module_name, _, name = class_path.rpartition(".")
    try:
        __import__(module_name)  # importlib.import_module, without importing importlib (and warnings)
        module = sys.modules[module_name]
    except Exception as exc:  # noqa: BLE001 - a broken job module is the user's to fix
        raise RejectedError(
            f"cannot import module {module_name} for {class_path}: {type(exc).__name__}: {exc}",
            field="class",
        ) from None
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise RejectedError(f"{class_path} is not a class in module {module_name}", field="class")
    return cls


def check_listed(config: Config, class_path: str, method: str) -> None:
    """The rules that need only the config, not the class: the class is
    allowlisted, and `method` is a public name its entry allows. The runner
    checks these again before it forks an attempt (which checks the rest)."""
    entry = allowed_entry(config, class_path)
    if not isinstance(method, str) or not method.isidentifier():
        raise RejectedError(f"{method!r} is not a method name", field="method")
    if method.startswith("_"):
        raise RejectedError(
            f"method {method} of {class_path} is private; only public methods "
            f"(no leading underscore) can run",
            field="method",
        )
    if entry.methods is not None and method not in entry.methods:
        raise RejectedError(
            f"method {method} of {class_path} is not in its allowed methods "
            f"({', '.join(entry.methods)}); add it to 'methods' in {config.file_name}",
            field="method",
        )


def find_method(config: Config, cls: type, class_path: str, method: str):
    """The raw attribute for `method`, checked against every rule."""
    check_listed(config, class_path, method)
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue  # object's (and dict's, list's...) methods never count
        if method in vars(klass):
            raw = vars(klass)[method]
            break
    else:
        raise RejectedError(
            f"{class_path} has no method {method}; its public methods are: "
            f"{', '.join(public_methods(cls)) or '(none)'}",
            field="method",
        )
    if isinstance(raw, type) or not callable(unwrap(raw)):
        raise RejectedError(f"{class_path}.{method} is not a callable method", field="method")
    return raw


def public_methods(cls: type) -> list[str]:
    """Names of the public methods defined on `cls` or its non-builtin bases."""
    names = set()
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue
        for name, raw in vars(klass).items():
            if not name.startswith("_") and callable(unwrap(raw)) and not isinstance(raw, type):
                names.add(name)
    return sorted(names)


def allowed_methods(config: Config, cls: type, class_path: str) -> list[str]:
    entry = allowed_entry(config, class_path)
    methods = public_methods(cls)
    return [m for m in methods if entry.methods is None or m in entry.methods]


def validate(config: Config, job: object, method: str, params: tuple | list) -> JobSpec:
    """Check class, method and params; coerce params (bgjobs.params: every shell
    hands its raw values here, so the same input stores the same params).
    Raises RejectedError."""
    class_path = class_path_of(job)
    cls = resolve_class(config, class_path)
    raw = find_method(config, cls, class_path, method)
    _check_constructible(cls, class_path)
    params = coerce_params(raw, f"{class_path}.{method}", list(params))
    try:
        json.dumps(params)
    except (TypeError, ValueError):
        raise RejectedError(
            "params must be JSON values (str, int, float, bool, None, list, dict)",
            field="params",
        ) from None
    return JobSpec(class_path, method, tuple(params))


def check_again(config: Config, class_path: str, method: str):
    """The runner's re-check before it runs anything: the bound callable."""
    cls = resolve_class(config, class_path)
    find_method(config, cls, class_path, method)
    return getattr(cls(), method)


def _check_constructible(cls: type, class_path: str) -> None:
    init = cls.__init__
    if init is object.__init__:
        return
    try:
        params = signature(init)[1:]  # drop self
    except (TypeError, ValueError):
        return  # no signature to read (a C type): let it be
    if any(p.required for p in params):
        raise RejectedError(
            f"{class_path} cannot be created without arguments; job classes are "
            f"instantiated as {cls.__name__}()",
            field="class",
        )


def describe(config: Config) -> list[dict]:
    """Every allowlisted class with its allowed methods and their params:
    [{"class": path, "doc": str, "error": str|None, "methods": [{"name", "doc",
    "params": [{"name", "kind", "default", "required", "varargs"}]}]}]."""
    import inspect

    out = []
    for path in config.classes:
        entry = {"class": path, "doc": "", "error": None, "methods": []}
        try:
            cls = resolve_class(config, path)
        except RejectedError as exc:
            entry["error"] = str(exc)
            out.append(entry)
            continue
        entry["doc"] = inspect.getdoc(cls) or ""
        for name in allowed_methods(config, cls, path):
            raw = find_method(config, cls, path, name)
            params = []
            for p in parameters(raw):
                if p.kind in (KEYWORD_ONLY, VAR_KEYWORD):
                    continue
                params.append(
                    {
                        "name": p.name,
                        "kind": kind_of(p.annotation),
                        "default": None if p.default is EMPTY else p.default,
                        "required": p.required,
                        "varargs": p.kind == VAR_POSITIONAL,
                    }
                )
            doc = inspect.getdoc(unwrap(raw)) or ""
            entry["methods"].append({"name": name, "doc": doc, "params": params})
        out.append(entry)
    return out
