"""Shared scaffolding of the Pythonic-layer tests: ids and a default configuration (the clean
emulator and the leak check come from the plugin's hcs_emulator, see tests/conftest.py)."""

from __future__ import annotations

import itertools
import os
import sys
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
