"""Shared scaffolding of the Pythonic-layer tests: ids and a default configuration (the clean
emulator and the leak check come from the plugin's hcs_emulator, see tests/conftest.py)."""

from __future__ import annotations

import itertools
import os
from typing import Any

_ids = itertools.count()
CONFIG: dict[str, Any] = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-tests", "Container": {}}


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{os.getpid()}-{next(_ids)}"
