"""The HCS emulator bundled with pyhcs.

Off Windows, pyhcs talks to a C library that exports the same ABI as computecore.dll and
computestorage.dll and really does the work (processes are real child processes, layers are
real folders). Other programs can use it too: link a C, Go or Rust client against
:func:`library_path` and it behaves like HCS.

The emulator's own controls (quirk switches, faults, statistics) go through the normal API
(HcsModifyServiceSettings / HcsGetServiceProperties with emulator-only property types); the
helpers below wrap them. On real HCS those property types are rejected, so nothing here can
silently run against Windows.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from ._library import emulator_path, is_emulator


def _b() -> ModuleType:
    # Imported on first use: ``pyhcs.emulator`` is reachable right after ``import pyhcs``,
    # which must not load the native library.
    from . import _backend

    return _backend


def library_path() -> str:
    """Absolute path of the emulator library (``libhcsemu.so``)."""
    return str(emulator_path())


def active() -> bool:
    """Whether pyhcs is talking to an emulator (rather than Windows' computecore.dll)."""
    return is_emulator(_b().library_path())


def _query(kind: str) -> Any:
    doc = json.loads(_b().hcs_get_service_properties(json.dumps({"PropertyTypes": [kind]})))
    return doc["Properties"][0]


def _modify(kind: str, settings: Any) -> None:
    _b().hcs_modify_service_settings(json.dumps({"PropertyType": kind, "Settings": settings}))


def settings() -> dict[str, Any]:
    """The current quirk switches and tunables (see docs/emulator.md)."""
    result: dict[str, Any] = _query("EmulatorSettings")
    return result


def configure(**switches: Any) -> None:
    """Changes quirk switches, e.g. ``configure(CancelOperation="Implemented")``. All or nothing."""
    _modify("Emulator", switches)


def add_faults(*faults: dict[str, Any], reset: bool = False) -> None:
    """Adds fault rules (see docs/emulator.md), e.g.
    ``add_faults({"Function": "HcsStartComputeSystem", "Where": "Result", "HResult": "0x80370109"})``."""
    _modify("EmulatorFaults", {"Faults": list(faults), "Reset": reset})


def faults() -> list[dict[str, Any]]:
    """The configured faults with how often each was seen and fired."""
    result: list[dict[str, Any]] = _query("EmulatorFaults")
    return result


def call_counts() -> dict[str, int]:
    """How often each native function has been called in this process."""
    result: dict[str, int] = _query("EmulatorCallCounts")
    return result


def statistics() -> dict[str, Any]:
    """Live objects inside the emulator: handles, systems, processes, documents, threads."""
    result: dict[str, Any] = _query("EmulatorStatistics")
    return result


def action(name: str, **args: Any) -> None:
    """Emulator actions: ``ServiceDisconnect``, ``Reconnect``, ``Reset``,
    ``UnexpectedExit`` (SystemId=…), ``ProcessExit`` (SystemId=…, ProcessId=…)."""
    _modify("EmulatorActions", {"Action": name, **args})


def reset() -> None:
    """Back to the documented defaults: no faults, default switches, service connected."""
    action("Reset")
