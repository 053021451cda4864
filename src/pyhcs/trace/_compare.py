"""Comparing documents member by member, and what counts as volatile.

Volatile members differ between two runs of the same program on the same host, so by default
a difference there is not a divergence (``--strict`` reports them too):

* identifiers a run makes up: ``RuntimeId``, ``ProcessId`` (and every ``*ProcessId``),
  ``ActivityId``, ``OperationId``, and every string value that is (or contains) a GUID;
* times and durations: members ending in ``Time``, ``Timestamp`` or ``100ns``, and ISO 8601
  time strings;
* measurements: the whole ``Statistics`` object, members ending in ``Bytes``;
* diagnostic text: ``ErrorMessage`` and ``ErrorEvents`` of error documents (Windows words and
  localises them its own way).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .._narrow import is_json_list, is_json_object
from ._file import MISSING

VOLATILE_MEMBERS = frozenset({"runtimeid", "activityid", "operationid", "errormessage", "errorevents", "statistics"})
VOLATILE_SUFFIXES = ("processid", "time", "timestamp", "100ns", "bytes")

_GUID = re.compile(r"\{?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}?")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$")


class Difference(NamedTuple):
    member: str
    """Path of the member: ``State``, ``Properties[0].Minor``; ``""`` for the document itself."""
    expected: Any
    """The trace's value (MISSING: the replay has a member the trace lacks)."""
    actual: Any
    """The replay's value (MISSING: the trace has a member the replay lacks)."""
    volatile: bool


def volatile_member(name: str) -> bool:
    low = name.lower()
    return low in VOLATILE_MEMBERS or low.endswith(VOLATILE_SUFFIXES)


def volatile_values(a: object, b: object) -> bool:
    """Two differing scalars that only differ in made-up ids or times."""
    if isinstance(a, str) and isinstance(b, str):
        if _TIME.match(a) and _TIME.match(b):
            return True
        masked_a, n_a = _GUID.subn("{GUID}", a)
        masked_b, n_b = _GUID.subn("{GUID}", b)
        return n_a > 0 and masked_a == masked_b and n_a == n_b
    return False


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def diff(expected: Any, actual: Any, path: str = "", volatile: bool = False) -> list[Difference]:
    """Every difference between the trace's ``expected`` and the replay's ``actual``."""
    if expected is MISSING:
        return []
    out: list[Difference] = []
    if is_json_object(expected) and is_json_object(actual):
        for name, value in expected.items():
            vol = volatile or volatile_member(name)
            if name not in actual:
                out.append(Difference(_join(path, name), value, MISSING, vol))
            else:
                out.extend(diff(value, actual[name], _join(path, name), vol))
        for name, value in actual.items():
            if name not in expected:
                out.append(Difference(_join(path, name), MISSING, value, volatile or volatile_member(name)))
        return out
    if is_json_list(expected) and is_json_list(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            out.extend(diff(e, a, f"{path}[{i}]", volatile))
        for i in range(len(actual), len(expected)):
            out.append(Difference(f"{path}[{i}]", expected[i], MISSING, volatile))
        for i in range(len(expected), len(actual)):
            out.append(Difference(f"{path}[{i}]", MISSING, actual[i], volatile))
        return out
    if type(expected) is not type(actual) and not (
        isinstance(expected, (int, float)) and isinstance(actual, (int, float))
        and not isinstance(expected, bool) and not isinstance(actual, bool)
    ):
        return [Difference(path, expected, actual, volatile)]
    if expected != actual:
        out.append(Difference(path, expected, actual, volatile or volatile_values(expected, actual)))
    return out
