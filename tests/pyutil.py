"""Shared scaffolding of the Pythonic-layer tests: ids, a default configuration, and the
leak check every such test module runs around each test (built on pyhcs.testing.leaks)."""

from __future__ import annotations

import gc
import itertools
import os
import warnings
from collections.abc import Iterator
from typing import Any

from pyhcs.testing import leaks

_ids = itertools.count()
CONFIG: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-tests", "Container": {}}


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def no_leaks() -> Iterator[None]:
    """Nothing a test opened may stay open (handles, operations, registry entries, fds, child
    processes), and no pyhcs object may have been left for __del__ to close."""
    before = leaks.snapshot()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning) and "pyhcs" in str(w.message)]
    assert not unclosed, unclosed
    leaks.check(before, timeout=15)
