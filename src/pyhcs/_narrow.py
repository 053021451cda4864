"""Narrowing of untyped values (decoded JSON, pydantic's loose members) for the type checkers.

``isinstance(value, dict)`` on an ``object`` tells a checker no more than ``dict[Unknown,
Unknown]``, which strict checking rejects at every use. These guards say what pyhcs relies
on instead: the keys of a JSON object are ``str`` (``json.loads`` makes them so) and whatever
is read out of a container is an ``object``, to be narrowed again before use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import TypeGuard

__all__ = ["as_given", "is_array", "is_json_list", "is_json_mapping", "is_json_object", "is_sequence", "is_set"]


def is_json_object(value: object) -> TypeGuard[dict[str, object]]:
    """A dict, read as a JSON object (str keys)."""
    return isinstance(value, dict)


def is_json_mapping(value: object) -> TypeGuard[Mapping[str, object]]:
    """Any mapping, read as a JSON object (str keys): a dict or a mapping a caller passed as
    a document."""
    return isinstance(value, Mapping)


def is_array(value: object) -> TypeGuard[list[object] | tuple[object, ...]]:
    """A list or tuple (a JSON array, or the tuples a document's code builds)."""
    return isinstance(value, (list, tuple))


def is_sequence(value: object) -> TypeGuard[Sequence[object]]:
    """Any sequence (str and bytes included: exclude them first where they do not belong)."""
    return isinstance(value, Sequence)


def is_json_list(value: object) -> TypeGuard[list[object]]:
    """A list (a JSON array)."""
    return isinstance(value, list)


def is_set(value: object) -> TypeGuard[Set[object]]:
    """A set or frozenset."""
    return isinstance(value, (set, frozenset))


def as_given(value: object) -> object:
    """``value`` as a caller may really have passed it, for the run-time check of an argument
    whose annotation a type checker would otherwise trust (and call the check unnecessary)."""
    return value
