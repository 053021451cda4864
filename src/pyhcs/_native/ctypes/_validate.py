"""Argument validation of the ctypes backend: the same rules, errors and order as the compiled
backend's conversions (the rules are documented in pyhcs/_backend.pyi; a hypothesis test in
tests/raw/test_backends.py compares the two backends on random values of random types).

ctypes alone would convert too much: ``c_void_p`` takes a ``str`` (the address of its buffer)
and wraps an int of any size, ``c_uint32`` truncates, and a wrong type surfaces as
``ctypes.ArgumentError``. So every function of the flat API checks its arguments here first,
in parameter order, chosen by parameter name and annotation (both backends share them).
"""

from __future__ import annotations

import ctypes
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: The largest handle or context: a pointer of this platform.
PTR_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_void_p)) - 1
DWORD_MAX = 0xFFFFFFFF
_DWORDS = frozenset({"requested_access", "process_id", "callback_options"})


def handle(value: object, name: str) -> None:
    """A handle or context: None (NULL) or an int that fits a pointer."""
    if value is None:
        return
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int handle or None, not {type(value).__name__}")
    if not 0 <= value <= PTR_MAX:
        raise OverflowError(f"{name} {value} does not fit a pointer (0 to {PTR_MAX})")


def dword(value: object, name: str) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= DWORD_MAX:
        raise OverflowError(f"{name} {value} does not fit a DWORD (0 to 0xFFFFFFFF)")


def timeout(value: object, name: str) -> None:
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of milliseconds, not {type(value).__name__}")
    if not 0 <= value <= DWORD_MAX:
        raise ValueError("timeout_ms must be between 0 and INFINITE (0xFFFFFFFF)")


def string(value: object, name: str) -> None:
    """A string for HCS: a str or None (NULL), without NUL characters."""
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"expected str or None, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError("strings passed to HCS cannot contain NUL characters")


def name_string(value: object, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")


def callback(value: object, name: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {type(value).__name__}")


def reserved(value: object, name: str) -> None:
    if value is not None:
        raise ValueError(f"{name} is reserved and must be None")


def _checker(param: inspect.Parameter) -> Callable[[object, str], None] | None:
    name, annotation = param.name, str(param.annotation)
    if name == "timeout_ms":
        return timeout
    if name in _DWORDS:
        return dword
    if name == "callback":
        return callback
    if name == "security_descriptor":
        return reserved
    if name == "name":
        return name_string
    if annotation == "int":
        return handle
    if annotation.startswith("str"):
        return string
    return None  # e.g. flush_callbacks' float timeout: Python code, nothing reaches C


def validated(fn: F) -> F:
    """``fn`` with its arguments checked first, in parameter order."""
    params = list(inspect.signature(fn).parameters.values())
    checks = [(p.name, _checker(p)) for p in params]
    if all(check is None for _, check in checks):
        return fn

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            for i, (name, check) in enumerate(checks):
                if check is None:
                    continue
                if i < len(args):
                    check(args[i], name)
                elif name in kwargs:
                    check(kwargs[name], name)
        else:
            for (name, check), value in zip(checks, args, strict=False):
                if check is not None:
                    check(value, name)
        return fn(*args, **kwargs)

    return call  # type: ignore[return-value]
