"""bgjobs.jsonc gives what the json package gives, without importing it."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from bgjobs import jsonc


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


VALUES = [
    None,
    True,
    0,
    -7,
    10**40,
    1.5,
    -0.0,
    1e300,
    2.5e-320,
    "",
    "plain",
    'quote " and backslash \\ and / slash',
    "control \x00 \x1f \t \n \r",
    "é ü 中文 \u2028 \u2029 😀",
    "lone surrogate \ud800",
    [],
    {},
    [1, [2, [3, [4]]]],
    (1, "tuple"),
    {"nested": {"list": [None, False, 3.25], "empty": {}}},
    {7: "int key", 2.5: "float key", True: "bool key", None: "null key"},
    {"params": ["/tmp/x", 5, {"a": [1, 2]}]},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_dumps_is_json_dumps(value, ensure_ascii):
    assert jsonc.dumps(value, ensure_ascii=ensure_ascii) == json.dumps(value, ensure_ascii=ensure_ascii)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_loads_reads_back_what_json_reads(value):
    text = json.dumps(value)
    assert repr(jsonc.loads(text)) == repr(json.loads(text))
    assert repr(jsonc.loads(text.encode())) == repr(json.loads(text.encode()))


def test_dumps_options_and_refusals_match_json():
    assert jsonc.dumps({"o": Opaque()}, default=repr) == json.dumps({"o": Opaque()}, default=repr)
    assert jsonc.dumps([math.nan, math.inf, -math.inf]) == "[NaN, Infinity, -Infinity]"
    for kwargs, value in [({}, {"o": Opaque()}), ({"allow_nan": False}, [math.nan]), ({}, {(1, 2): 3})]:
        with pytest.raises((TypeError, ValueError)) as ours:
            jsonc.dumps(value, **kwargs)
        with pytest.raises((TypeError, ValueError)) as theirs:
            json.dumps(value, **kwargs)
        assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))
    cycle: list = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular reference"):
        jsonc.dumps(cycle)


BAD = ["", " ", "[1,", "{} x", "nan", "[1] [2]", "{'a': 1}", '"\\x"', "01", "[1,]"]
BAD += ['"tab\tinside"', b"\xff\xfe["]


@pytest.mark.parametrize("text", BAD)
def test_a_bad_document_raises_what_json_raises(text):
    with pytest.raises(ValueError) as ours:
        jsonc.loads(text)
    with pytest.raises(ValueError) as theirs:
        json.loads(text)
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_in_a_fresh_interpreter_a_bad_document_raises_jsons_error():
    # Python 3.11's scanner cannot make its JSONDecodeError unless json.decoder
    # is imported (as it is in this test process): jsonc must not show that.
    # '[1' first: the first error imports json (and so json.decoder) for good.
    bad = ["[1", '{"a" 1}', '"a\x01b"', '"abc'] + [text for text in BAD if isinstance(text, str)]
    code = (
        "import sys; from bgjobs import jsonc\n"
        f"for text in {bad!r}:\n"
        "    try:\n"
        "        jsonc.loads(text)\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    expected = []
    for text in bad:
        with pytest.raises(ValueError) as theirs:
            json.loads(text)
        expected.append(f"{type(theirs.value).__name__} {theirs.value}")
    assert out.splitlines() == expected


@pytest.mark.parametrize("text", [" 1 ", "\n[1]\r\n", "\t{}\t", "-0", "1.5e3", "Infinity", '"\\u00e9"'])
def test_whitespace_and_literals_read_as_json_reads_them(text):
    assert repr(jsonc.loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize(
    "data",
    [b"\xef\xbb\xbf[1]", "[1]".encode("utf-16"), "[1]".encode("utf-16-le"), '"\u00e9"'.encode("utf-32-be")],
    ids=["utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"],
)
def test_bytes_in_any_encoding_json_detects_read_the_same(data):
    assert repr(jsonc.loads(data)) == repr(json.loads(data))


def test_it_does_not_import_the_json_package():
    code = (
        "import sys; from bgjobs import jsonc;"
        "v = jsonc.loads(jsonc.dumps({'a': [1, 'é', None]}, ensure_ascii=False));"
        "print(v, sorted(m for m in ('json', 're', 'enum') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0] == "{'a': [1, 'é', None]} []"
