"""bgjobs.records.record and bgjobs.job.Status: what they stand in for
(collections.namedtuple and a str Enum) does the same here."""

from __future__ import annotations

import copy
import json
import pickle
from collections import namedtuple

import pytest

from bgjobs.job import FINAL, Job, Status
from bgjobs.records import record

Point = record("Point", "x y z", defaults=(0,))
NTPoint = namedtuple("NTPoint", "x y z", defaults=(0,))


def test_a_record_is_built_as_a_namedtuple_is():
    for args, kwargs in [((1, 2, 3), {}), ((1, 2), {}), ((1,), {"y": 2}), ((), {"z": 5, "y": 2, "x": 1})]:
        ours, theirs = Point(*args, **kwargs), NTPoint(*args, **kwargs)
        assert tuple(ours) == tuple(theirs)
        assert (ours.x, ours.y, ours.z) == (theirs.x, theirs.y, theirs.z)
        assert ours._asdict() == theirs._asdict()
        assert repr(ours) == repr(theirs).replace("NTPoint", "Point")
    assert Point._fields == NTPoint._fields and Point._field_defaults == NTPoint._field_defaults
    assert Point.__match_args__ == ("x", "y", "z")
    assert Point(1, 2) == (1, 2, 0) and hash(Point(1, 2)) == hash((1, 2, 0))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1,), {}, "missing required argument: 'y'"),
        ((1, 2, 3, 4), {}, "takes 3 arguments but 4 were given"),
        ((1, 2), {"x": 1}, "multiple values for argument 'x'"),
        ((1, 2), {"w": 1}, "unexpected keyword argument 'w'"),
    ],
)
def test_a_wrong_call_is_a_type_error_that_names_the_field(args, kwargs, message):
    with pytest.raises(TypeError, match=message):
        Point(*args, **kwargs)
    with pytest.raises(TypeError):
        NTPoint(*args, **kwargs)  # the same call is wrong for a namedtuple too


def test_make_replace_and_immutability():
    p = Point._make([1, 2, 3])
    assert type(p) is Point and p == (1, 2, 3)
    with pytest.raises(TypeError, match="expected 3 values, got 2"):
        Point._make([1, 2])
    assert p._replace(y=9) == (1, 9, 3) and type(p._replace(y=9)) is Point
    with pytest.raises(ValueError, match=r"no fields \['w'\]"):
        p._replace(w=1)
    with pytest.raises(AttributeError):
        p.x = 5
    with pytest.raises(AttributeError):
        p.other = 5  # __slots__ = (): no instance dict


def test_a_record_pickles_copies_and_matches():
    p = Point(1, 2, 3)
    assert Point.__module__ == __name__
    for q in (pickle.loads(pickle.dumps(p)), copy.copy(p), copy.deepcopy(p)):
        assert q == p and type(q) is Point
    if hasattr(copy, "replace"):  # Python 3.13 and later
        assert copy.replace(p, y=5) == (1, 5, 3) and type(copy.replace(p, y=5)) is Point
    match p:
        case Point(x, y, z=3):
            assert (x, y) == (1, 2)
        case _:
            pytest.fail("no match")


def test_a_subclass_keeps_its_methods_and_its_type():
    class Vec(record("Vec", "x y")):
        __slots__ = ()

        @property
        def norm1(self):
            return abs(self.x) + abs(self.y)

    v = Vec(x=3, y=-4)
    assert v.norm1 == 7 and repr(v) == "Vec(x=3, y=-4)"
    assert type(v._replace(x=1)) is Vec and type(Vec._make((1, 2))) is Vec


def test_bad_field_names_are_refused():
    for names in ("a a", "a _b", "a 1b"):
        with pytest.raises(ValueError, match="field names"):
            record("Bad", names)
    with pytest.raises(TypeError, match="more defaults"):
        record("Bad", "a", defaults=(1, 2))


def test_status_is_a_str_enum_in_all_a_caller_sees():
    assert [s.value for s in Status] == ["queued", "running", "retrying", "succeeded", "failed", "cancelled"]
    assert len(Status) == 6 and list(Status)[0] is Status.QUEUED
    for s in Status:
        assert Status(s.value) is s and Status(s) is s
        assert getattr(Status, s.name) is s and s.name == s.value.upper()
        assert s == s.value and str(s) == s.value and f"{s}" == s.value and type(s.value) is str
        assert repr(s) == f"<Status.{s.name}: {s.value!r}>"
        assert pickle.loads(pickle.dumps(s)) is s and copy.deepcopy(s) is s
    assert Status.FAILED.is_final and not Status.RUNNING.is_final
    assert "failed" in FINAL  # hashes as its value
    assert json.dumps({"status": Status.RUNNING}) == '{"status": "running"}'
    for bad in ("QUEUED", "nope", None, 3):
        with pytest.raises(ValueError, match="is not a valid Status"):
            Status(bad)


def test_status_class_holds_its_members_as_an_enum_class_does():
    assert Status["QUEUED"] is Status.QUEUED and list(reversed(Status))[0] is Status.CANCELLED
    with pytest.raises(KeyError):
        Status["queued"]
    assert list(Status.__members__) == [s.name for s in Status]
    assert Status.__members__["FAILED"] is Status.FAILED
    assert "queued" in Status and Status.RUNNING in Status and "nope" not in Status and [] not in Status
    with pytest.raises(AttributeError, match="cannot reassign member"):
        Status.QUEUED = "x"
    with pytest.raises(AttributeError, match="cannot delete member"):
        del Status.FAILED
    with pytest.raises(TypeError):
        Status.__members__["X"] = Status.QUEUED  # a read-only view
    assert Status.QUEUED.value == "queued" and Status.FAILED.is_final


def test_a_job_reads_back_its_json_and_its_row():
    job = Job._make([None] * len(Job._fields))._replace(
        id=7, class_path="a.B", method="m", params=(1, "x"), status=Status.RETRYING, attempt=1
    )
    back = Job.from_json(job.to_json())
    assert back == job and back.status is Status.RETRYING and type(back.params) is tuple
    row = {**job._asdict(), "class": "a.B", "params": '[1, "x"]', "status": "retrying"}
    del row["class_path"]
    assert Job.from_row(row) == job
