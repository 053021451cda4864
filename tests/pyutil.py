"""Shared scaffolding of the Pythonic-layer tests: ids and a default configuration (the clean
emulator and the leak check come from the plugin's hcs_emulator, see tests/conftest.py)."""

from __future__ import annotations

import itertools
import os
import sys
import time
from typing import Any

_ids = itertools.count()
CONFIG: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-tests", "Container": {}}


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}"


def python_mappings(*extra: str) -> list[dict[str, Any]]:
    """MappedDirectories that show this interpreter (``sys.executable``: its environment's and its
    installation's prefixes) and the host folders ``extra`` inside a Container at the same paths,
    read-only, as a user of an isolated emulator would map them (docs/emulator.md, "Isolation")."""
    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
              os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))), *extra}
    folders = sorted(os.path.realpath(p) for p in wanted)
    kept = [p for p in folders if not any(p.startswith(q.rstrip("/") + "/") for q in folders if q != p)]
    return [{"HostPath": p, "ContainerPath": p, "ReadOnly": True} for p in kept]


# CONFIG for tests that run this interpreter in a Container.
PYTHON_CONFIG: dict[str, Any] = {**CONFIG, "Container": {"MappedDirectories": python_mappings()}}


def _system_count() -> int:
    from pyhcs.testing import Emulator

    return int(Emulator().statistics()["Systems"])


def settled_system_count(within: float = 5.0) -> int:
    """The number of systems the emulator's service holds once it has stopped changing for a
    moment. A system whose last handle was closed before it ended is ended by the service
    afterwards (ShouldTerminateOnLastHandleClosed, as HCS does), so a count read as a test
    begins can still include one of the previous test's."""
    deadline = time.monotonic() + within
    last, since = _system_count(), time.monotonic()
    while last and time.monotonic() < deadline:  # (none left: nothing to wait for)
        time.sleep(0.05)
        count = _system_count()
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= 0.3:
            break
    return last


def system_count_at_most(limit: int, within: float = 10.0) -> int:
    """The number of systems, read until it is at most ``limit`` or ``within`` seconds passed
    (the systems a test closed are ended by the service a moment later)."""
    deadline = time.monotonic() + within
    while (count := _system_count()) > limit and time.monotonic() < deadline:
        time.sleep(0.05)
    return count
