"""JSON through CPython's C accelerator, without importing the json package.

The json package imports `re` for a few patterns, and `re` brings enum,
functools and the regex compiler: about two thirds of `python -c pass` on a
slow machine, paid by every console script and every runner before its job's
first line. The encoder and the scanner json itself uses live in the C module
`_json`; this module drives them with json's defaults, so the text and the
values are the same as json.dumps and json.loads give.

Anything else goes to the json package, which is imported then: a document
that does not parse (so the error, and its message, are json's own), and an
interpreter without `_json`. tests/test_jsonc.py holds the two to the same
results.
"""

from __future__ import annotations

try:
    from _json import encode_basestring, encode_basestring_ascii, make_encoder, make_scanner
except ImportError:  # not CPython: the json package does it all
    make_encoder = make_scanner = None

_WHITESPACE = " \t\n\r"  # what json skips around a document


class _Defaults:
    """What json.loads passes its scanner when called with no options."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_scan = make_scanner(_Defaults) if make_scanner is not None else None


def dumps(obj, *, default=None, ensure_ascii: bool = True, allow_nan: bool = True) -> str:
    """json.dumps(obj) with these options, and json's separators."""
    if make_encoder is None:
        import json

        return json.dumps(obj, default=default, ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    encode = make_encoder(
        {},  # the ids of the containers being encoded: a cycle is an error, not a hang
        default or _not_serializable,
        encode_basestring_ascii if ensure_ascii else encode_basestring,
        None,  # indent
        ": ",
        ", ",
        False,  # sort_keys
        False,  # skipkeys
        allow_nan,
    )
    return "".join(encode(obj, 0))


def loads(data: str | bytes):
    """json.loads(data)."""
    text = data
    if isinstance(data, bytes | bytearray):
        try:
            text = data.decode()
        except UnicodeDecodeError:
            pass  # json tells UTF-16 and UTF-32 apart, or says what is wrong
    if _scan is not None and isinstance(text, str) and not text.startswith("\ufeff"):
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
        except (StopIteration, ValueError, SystemError):
            # Not a document: json says why. (Python 3.11's scanner cannot make
            # its JSONDecodeError unless json.decoder is imported: SystemError.)
            pass
        else:
            if not text[end:].strip(_WHITESPACE):
                return value
    import json

    return json.loads(data)


def load(file):
    """json.load(file)."""
    return loads(file.read())


def _not_serializable(obj):
    raise TypeError(f"Object of type {obj.__class__.__name__} is not JSON serializable")
