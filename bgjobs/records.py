"""Named tuples without the collections module.

`record("Point", "x y", defaults=(0,))` makes the class `collections.namedtuple`
would make, for what bgjobs uses of one: fields by name and by index, keyword
arguments and defaults, `_make`, `_replace` (and `copy.replace`), `_asdict`, `_fields`,
`_field_defaults`, the repr, pickling and `match`. Nothing else.

It exists for start-up time. `collections` costs about 3 ms to import here, and
each namedtuple compiles its `__new__` with eval; `job-run` and every runner
build nine of these classes before their first line of work
(docs/architecture.md, the start-up budget).
"""

from __future__ import annotations

import sys
from _collections import _tuplegetter  # the C descriptor namedtuple's fields are


def record(typename: str, field_names: str | tuple[str, ...], *, defaults: tuple = ()) -> type:
    """A tuple subclass named `typename` whose fields are `field_names` (a
    space-separated string or a tuple). `defaults` apply to the last fields."""
    fields = tuple(field_names.split()) if isinstance(field_names, str) else tuple(field_names)
    if len(set(fields)) != len(fields) or not all(f.isidentifier() and f[0] != "_" for f in fields):
        raise ValueError(
            f"{typename}: field names must be distinct identifiers without a leading _: {fields}"
        )
    if len(defaults) > len(fields):
        raise TypeError(f"{typename}: more defaults than fields")
    namespace = {
        "__doc__": f"{typename}({', '.join(fields)})",
        "__slots__": (),
        "__module__": sys._getframe(1).f_globals.get("__name__", "__main__"),
        "__match_args__": fields,
        "_fields": fields,
        "_field_defaults": dict(zip(fields[len(fields) - len(defaults) :], defaults, strict=True)),
        "__new__": _new,
        "_make": classmethod(_make),
        "_replace": _replace,
        "__replace__": _replace,  # copy.replace, from Python 3.13
        "_asdict": _asdict,
        "__repr__": _repr,
        "__getnewargs__": _getnewargs,
    }
    for i, name in enumerate(fields):
        namespace[name] = _tuplegetter(i, f"Field {i}: {name}")
    return type(typename, (tuple,), namespace)


def _new(cls, *args, **kwargs):
    if kwargs or len(args) != len(cls._fields):
        args = _bind(cls, args, kwargs)
    return tuple.__new__(cls, args)


def _bind(cls, args: tuple, kwargs: dict) -> list:
    """The values in field order, from positional and keyword arguments and
    the defaults; a TypeError as a function call would raise one."""
    fields = cls._fields
    if len(args) > len(fields):
        raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments but {len(args)} were given")
    values = list(args)
    for name in fields[len(args) :]:
        if name in kwargs:
            values.append(kwargs.pop(name))
        elif name in cls._field_defaults:
            values.append(cls._field_defaults[name])
        else:
            raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
    for name in kwargs:
        problem = "multiple values for argument" if name in fields else "an unexpected keyword argument"
        raise TypeError(f"{cls.__name__}() got {problem} {name!r}")
    return values


def _make(cls, iterable):
    result = tuple.__new__(cls, iterable)
    if len(result) != len(cls._fields):
        raise TypeError(f"{cls.__name__}: expected {len(cls._fields)} values, got {len(result)}")
    return result


def _replace(self, **changes):
    result = self._make([changes.pop(name, value) for name, value in zip(self._fields, self, strict=True)])
    if changes:
        raise ValueError(f"{type(self).__name__} has no fields {sorted(changes)}")
    return result


def _asdict(self) -> dict:
    return dict(zip(self._fields, self, strict=True))


def _repr(self) -> str:
    return (
        f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in zip(self._fields, self, strict=True))})"
    )


def _getnewargs(self) -> tuple:
    return tuple(self)
