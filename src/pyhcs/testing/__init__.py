"""Helpers for testing code that uses pyhcs.

* :mod:`pyhcs.testing.plugin`: the pytest plugin (registered as ``pyhcs`` through the
  ``pytest11`` entry point): fixtures ``hcs_emulator``, ``compute_system_factory``, ``faults``;
  markers ``pyhcs_backends``, ``pyhcs_real_hcs``, ``pyhcs_no_leak_check``; a leak check.
* :mod:`pyhcs.testing.faults`: fault injection, quirk switches and call budgets on the
  emulator, usable without pytest (:class:`Faults`).
* :mod:`pyhcs.testing.leaks`: snapshots of what is alive, and their comparison.
* :func:`clean_emulator` (:mod:`pyhcs.testing.clean`): a clean emulator and a leak check for a
  block, a call or a hypothesis example.
* :mod:`pyhcs.testing.strategies`: hypothesis strategies that generate valid HCS documents
  (imported explicitly, so that hypothesis is only needed by those who use it).

The names below are loaded on first use, so importing this package costs nothing and needs
neither pytest nor hypothesis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .clean import CleanEmulator, clean_emulator
    from .faults import (
        CallBudget,
        CallBudgetExceeded,
        Emulator,
        EmulatorRequired,
        FaultRule,
        Faults,
        FaultSchedule,
        FaultSpec,
        Quirks,
        hresult_of,
    )
    from .leaks import LeakError, Snapshot

__all__ = [
    "CallBudget",
    "CallBudgetExceeded",
    "CleanEmulator",
    "Emulator",
    "EmulatorRequired",
    "FaultRule",
    "FaultSchedule",
    "FaultSpec",
    "Faults",
    "LeakError",
    "Quirks",
    "Snapshot",
    "clean_emulator",
    "hresult_of",
]

_HOMES = {
    "CallBudget": "faults",
    "CallBudgetExceeded": "faults",
    "Emulator": "faults",
    "EmulatorRequired": "faults",
    "FaultRule": "faults",
    "FaultSchedule": "faults",
    "FaultSpec": "faults",
    "Faults": "faults",
    "CleanEmulator": "clean",
    "clean_emulator": "clean",
    "Quirks": "faults",
    "hresult_of": "faults",
    "LeakError": "leaks",
    "Snapshot": "leaks",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
