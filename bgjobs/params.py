"""A job method's parameters: its signature, read cheaply, and the one rule
that turns the values a caller gives into the values the method gets.

The rule is the same for every shell, so `job-run`, the dashboard's Launch
form and `run_background_job` store the same params for the same input:

- A value given as text (job-run's `--params=V`, a field of the Launch form)
  is coerced to the parameter's annotation: `int`, `float`, `bool` (true/false,
  yes/no, on/off, 1/0), `str`, and JSON for `list`, `tuple` and `dict`. For a
  union such as `int | None`, `null` or `none` gives None, else each type is
  tried in turn.
- A parameter with no annotation (or `Any`, or a type not listed above) takes
  the value as given: text stays text, so `--params=5` passes the string
  `'5'`. Annotate the parameter to get another type. (Guessing a type from
  the text, such as JSON if it parses, would turn a code `007` into the
  number 7 and a name `null` into None.)
- A value from Python (run_background_job) that already has the annotated
  type passes as it is; an int is accepted where a float is wanted.

Nothing here runs the method or imports the job's module: callers hand in
the raw attribute (allowlist.find_method).
"""

from __future__ import annotations

import json
import sys
import types
from typing import NamedTuple

from .errors import RejectedError

# Parameter kinds, as our own small values (inspect's are costly to import).
POSITIONAL, VAR_POSITIONAL, KEYWORD_ONLY, VAR_KEYWORD = "positional", "varargs", "keyword", "varkw"
EMPTY = type("EMPTY", (), {"__repr__": lambda self: "EMPTY"})()
UnionType = types.UnionType

_CO_VARARGS = 0x04
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
# Annotation -> the kind a form shows (describe's "kind"); anything else is "any".
_KINDS = {bool: "bool", int: "int", float: "float", str: "str", list: "list", tuple: "list", dict: "dict"}


class Param(NamedTuple):
    """One parameter of a job method: `default` and `annotation` are EMPTY when absent."""

    name: str
    kind: str
    default: object
    annotation: object

    @property
    def required(self) -> bool:
        return self.default is EMPTY and self.kind in (POSITIONAL, KEYWORD_ONLY)


def signature(func) -> list[Param]:
    """The parameters of a function, read from its code object (fast), or through
    inspect for anything that is not plain Python code. Raises TypeError or
    ValueError for a callable without a signature to read."""
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
    for name in names[n_pos : n_pos + n_kw]:
        params.append(Param(name, KEYWORD_ONLY, kwdefaults.get(name, EMPTY), notes.get(name, EMPTY)))
    if code.co_flags & _CO_VARARGS:  # *args sits after the positionals, before the keyword-only
        name = names[n_pos + n_kw]
        params.insert(n_pos, Param(name, VAR_POSITIONAL, EMPTY, notes.get(name, EMPTY)))
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
            except Exception:  # noqa: BLE001 - unresolvable: pass values through as given
                notes[name] = EMPTY  # unresolvable: pass values through as given
    return notes


def unwrap(raw):
    """The function behind a method attribute (a staticmethod's or classmethod's own)."""
    return raw.__func__ if isinstance(raw, (staticmethod, classmethod)) else raw


def parameters(raw) -> list[Param]:
    """The parameters of method attribute `raw` as callers pass them (no self
    or cls), with their annotations."""
    params = signature(unwrap(raw))
    if not isinstance(raw, staticmethod) and params and params[0].kind == POSITIONAL:
        params = params[1:]  # self, or cls for a classmethod
    return params


def coerce_params(raw, where: str, values: list) -> list:
    """`values`, one per positional parameter of method `raw` (named `where` in
    messages, e.g. "jobs.x.Y.run"), each coerced by `coerce`. Raises
    RejectedError for a wrong number of values or a value that does not fit."""
    params = parameters(raw)
    positional = [p for p in params if p.kind == POSITIONAL]
    varargs = next((p for p in params if p.kind == VAR_POSITIONAL), None)
    required = [p for p in positional if p.default is EMPTY]
    if len(values) < len(required) or (len(values) > len(positional) and varargs is None):
        names = ", ".join(p.name for p in positional) or "none"
        if varargs is not None:
            want = f"at least {len(required)}"
        elif len(required) == len(positional):
            want = f"{len(required)}"
        else:
            want = f"{len(required)} to {len(positional)}"
        raise RejectedError(
            f"{where} takes {want} params ({names}); got {len(values)}; "
            f"give one value per param, in order (with job-run, one --params=VALUE each)",
            field="params",
        )
    out = []
    for i, value in enumerate(values):
        p = positional[i] if i < len(positional) else varargs
        out.append(coerce(value, p.annotation, p.name))
    return out


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
    """`value` (text from a shell, or a value from Python) as parameter `name`
    annotated `annotation` takes it, by the rule in this module's docstring;
    RejectedError (with `field=name`) if it does not fit."""
    typing = sys.modules.get("typing")
    if annotation is EMPTY or (typing is not None and annotation is typing.Any):
        return value  # no annotation: the value as given (text stays text)
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
            result = float(value)
        elif isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise bad() from None
        else:
            raise bad()
        if result != result or result in (float("inf"), float("-inf")):
            raise bad(" (NaN and infinity are not allowed)")
        return result
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


def kind_of(annotation) -> str:
    """What a form should ask for: "bool", "int", "float", "str", "list",
    "dict", or "any" (no annotation, or one the rule passes through). For
    `X | None`, the kind of X."""
    if annotation is EMPTY:
        return "any"
    origin, args = _origin_args(annotation)
    if origin is UnionType:
        kinds = [a for a in args if a is not type(None)]
        annotation = kinds[0] if len(kinds) == 1 else annotation
        origin, _ = _origin_args(annotation)
    return _KINDS.get(origin or annotation, "any")
