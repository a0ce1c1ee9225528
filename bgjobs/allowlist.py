"""Class path + method + raw params -> a validated JobSpec, or a RejectedError.

Only classes listed in config.yaml are imported. A method runs only if it is
public, callable, and defined on the class or one of its own bases (never on
`object` or another builtin). Params are coerced to the method's annotated
types and bound to its signature, all before a job row exists.
"""

from __future__ import annotations

import json
import sys
import types
from typing import NamedTuple

from .config import ClassPolicy, Config
from .errors import RejectedError


class JobSpec(NamedTuple):
    """A validated launch: an allowed class, one of its methods, coerced params."""

    class_path: str
    method: str
    params: list


UnionType = types.UnionType


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
    except Exception as exc:  # a broken job module is the user's to fix
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
    func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    if isinstance(raw, type) or not callable(func):
        raise RejectedError(f"{class_path}.{method} is not a callable method", field="method")
    return raw


def public_methods(cls: type) -> list[str]:
    """Names of the public methods defined on `cls` or its non-builtin bases."""
    names = set()
    for klass in cls.__mro__:
        if klass.__module__ == "builtins":
            continue
        for name, raw in vars(klass).items():
            func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            if not name.startswith("_") and callable(func) and not isinstance(raw, type):
                names.add(name)
    return sorted(names)


def allowed_methods(config: Config, cls: type, class_path: str) -> list[str]:
    entry = allowed_entry(config, class_path)
    methods = public_methods(cls)
    return [m for m in methods if entry.methods is None or m in entry.methods]


def validate(config: Config, job: object, method: str, params: tuple | list) -> JobSpec:
    """Check class, method and params; coerce params. Raises RejectedError."""
    class_path = class_path_of(job)
    cls = resolve_class(config, class_path)
    raw = find_method(config, cls, class_path, method)
    _check_constructible(cls, class_path)
    params = coerce_params(cls, raw, class_path, method, list(params))
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
        params = _signature(init)[1:]  # drop self
    except (TypeError, ValueError):
        return  # no signature to read (a C type): let it be
    if any(p.required and p.kind != VAR_POSITIONAL for p in params):
        raise RejectedError(
            f"{class_path} cannot be created without arguments; job classes are "
            f"instantiated as {cls.__name__}()",
            field="class",
        )


# Parameter kinds, as our own small values (inspect's are costly to import).
POSITIONAL, VAR_POSITIONAL, KEYWORD_ONLY, VAR_KEYWORD = "positional", "varargs", "keyword", "varkw"
EMPTY = type("EMPTY", (), {"__repr__": lambda self: "EMPTY"})()


class Param(NamedTuple):
    """One parameter of a job method: `default` and `annotation` are EMPTY when absent."""

    name: str
    kind: str
    default: object
    annotation: object

    @property
    def required(self) -> bool:
        return self.default is EMPTY and self.kind in (POSITIONAL, KEYWORD_ONLY)


def _signature(func) -> list[Param]:
    """The parameters of a function, read from its code object (fast), or through
    inspect for anything that is not plain Python code."""
    code = getattr(func, "__code__", None)
    if code is None:
        return _signature_slow(func)
    n_pos, n_kw = code.co_argcount, code.co_kwonlyargcount
    names = code.co_varnames
    defaults = func.__defaults__ or ()
    kwdefaults = func.__kwdefaults__ or {}
    notes = _annotations(func)
    params = []
    for i, name in enumerate(names[:n_pos]):
        d = i - (n_pos - len(defaults))
        params.append(Param(name, POSITIONAL, defaults[d] if d >= 0 else EMPTY, notes.get(name, EMPTY)))
    idx = n_pos
    varargs = None
    if code.co_flags & 0x04:  # CO_VARARGS
        varargs = Param(names[n_pos + n_kw], VAR_POSITIONAL, EMPTY, notes.get(names[n_pos + n_kw], EMPTY))
    for name in names[idx : idx + n_kw]:
        params.append(Param(name, KEYWORD_ONLY, kwdefaults.get(name, EMPTY), notes.get(name, EMPTY)))
    if varargs:
        params.insert(n_pos, varargs)
    return params


def _signature_slow(func) -> list[Param]:
    import inspect

    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: POSITIONAL,
        inspect.Parameter.POSITIONAL_OR_KEYWORD: POSITIONAL,
        inspect.Parameter.VAR_POSITIONAL: VAR_POSITIONAL,
        inspect.Parameter.KEYWORD_ONLY: KEYWORD_ONLY,
        inspect.Parameter.VAR_KEYWORD: VAR_KEYWORD,
    }
    empty = inspect.Parameter.empty
    return [
        Param(
            p.name,
            kinds[p.kind],
            EMPTY if p.default is empty else p.default,
            EMPTY if p.annotation is empty else p.annotation,
        )
        for p in inspect.signature(func).parameters.values()
    ]


def _annotations(func) -> dict:
    """The function's annotations, with string annotations (PEP 563) evaluated
    in the function's module, as typing.get_type_hints would."""
    notes = dict(getattr(func, "__annotations__", None) or {})
    for name, note in notes.items():
        if isinstance(note, str):
            try:
                notes[name] = eval(note, getattr(func, "__globals__", {}))  # noqa: S307 - the job's own code
            except Exception:
                notes[name] = EMPTY  # unresolvable: pass values through as given
    return notes


def parameters(cls: type, raw) -> list[Param]:
    """The method's parameters as callers pass them (no self/cls), with types."""
    func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
    params = _signature(func)
    if not isinstance(raw, staticmethod) and params and params[0].kind == POSITIONAL:
        params = params[1:]  # self, or cls for a classmethod
    return params


def coerce_params(cls: type, raw, class_path: str, method: str, values: list) -> list:
    params = parameters(cls, raw)
    positional = [p for p in params if p.kind == POSITIONAL]
    has_varargs = any(p.kind == VAR_POSITIONAL for p in params)
    required = [p for p in positional if p.default is EMPTY]
    if len(values) < len(required) or (len(values) > len(positional) and not has_varargs):
        names = ", ".join(p.name for p in positional) or "none"
        want = (
            f"{len(required)}"
            if len(required) == len(positional)
            else f"{len(required)} to {len(positional)}"
        )
        if has_varargs:
            want = f"at least {len(required)}"
        raise RejectedError(
            f"{class_path}.{method} takes {want} params ({names}); got {len(values)}; "
            f"give one value per param, in order (with job-run, one --params=VALUE each)",
            field="params",
        )
    varargs = next((p for p in params if p.kind == VAR_POSITIONAL), None)
    out = []
    for i, value in enumerate(values):
        p = positional[i] if i < len(positional) else varargs
        out.append(coerce(value, p.annotation, p.name))
    return out


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _origin_args(annotation) -> tuple[object, tuple]:
    """(origin, args) of a generic or union annotation, without importing typing."""
    if isinstance(annotation, UnionType):
        return UnionType, annotation.__args__
    origin = getattr(annotation, "__origin__", None)
    typing = sys.modules.get("typing")  # imported already if the job used it
    if typing is not None and origin is typing.Union:
        return UnionType, annotation.__args__
    return origin, getattr(annotation, "__args__", ())


def coerce(value: object, annotation: object, name: str) -> object:
    """Turn a CLI string (or an API value) into the annotated type, or refuse."""
    typing = sys.modules.get("typing")
    if annotation is EMPTY or (typing is not None and annotation is typing.Any):
        return value
    origin, args = _origin_args(annotation)
    if origin is UnionType:
        kinds = [a for a in args if a is not type(None)]
        if value is None or (
            isinstance(value, str) and value.lower() in ("null", "none") and len(kinds) < len(args)
        ):
            return None
        errors = []
        for arg in kinds:
            try:
                return coerce(value, arg, name)
            except RejectedError as exc:
                errors.append(str(exc))
        raise RejectedError(errors[0] if errors else f"param {name}: bad value", field=name)
    target = origin or annotation
    label = getattr(annotation, "__name__", str(annotation))

    def bad(why: str = "") -> RejectedError:
        return RejectedError(f"param {name} must be {label}; got {value!r}{why}", field=name)

    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad(" (use true or false)")
    if target is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise bad() from None
        raise bad()
    if target is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise bad() from None
            if result != result or result in (float("inf"), float("-inf")):
                raise bad(" (NaN and infinity are not allowed)")
            return result
        raise bad()
    if target is str:
        if isinstance(value, str):
            return value
        raise bad()
    if target in (list, dict, tuple):
        want = list if target is tuple else target
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise bad(' (pass JSON, e.g. [1, 2] or {"k": 1})') from None
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, want):
            raise bad()
        return value
    return value  # an annotation we do not coerce: passed through as given


def _kind_of(annotation) -> str:
    if annotation is EMPTY:
        return "any"
    origin, args = _origin_args(annotation)
    if origin is UnionType:
        kinds = [a for a in args if a is not type(None)]
        annotation = kinds[0] if len(kinds) == 1 else annotation
        origin, _ = _origin_args(annotation)
    target = origin or annotation
    return {
        bool: "bool",
        int: "int",
        float: "float",
        str: "str",
        list: "list",
        tuple: "list",
        dict: "dict",
    }.get(target, "any")


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
            for p in parameters(cls, raw):
                if p.kind in (KEYWORD_ONLY, VAR_KEYWORD):
                    continue
                params.append(
                    {
                        "name": p.name,
                        "kind": _kind_of(p.annotation),
                        "default": None if p.default is EMPTY else p.default,
                        "required": p.required,
                        "varargs": p.kind == VAR_POSITIONAL,
                    }
                )
            func = raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw
            entry["methods"].append({"name": name, "doc": inspect.getdoc(func) or "", "params": params})
        out.append(entry)
    return out
