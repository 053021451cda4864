"""The one client of the HCS emulator's controls.

The emulator is steered through the ordinary service functions: HcsModifyServiceSettings with
the emulator-only property types ``Emulator`` (quirk switches), ``EmulatorFaults`` and
``EmulatorActions``, and HcsGetServiceProperties with ``EmulatorSettings``,
``EmulatorStatistics``, ``EmulatorCallCounts`` and ``EmulatorFaults`` (docs/emulator.md). Every
part of pyhcs that talks to the emulator's controls (:mod:`pyhcs.emulator`, the testing
toolkit's ``Emulator``/``Faults`` and leak checks, pyhcs' own tests) does it through
:class:`EmulatorControl`, so there is one way to build a request and read an answer.

Real HCS rejects those property types by name; :attr:`EmulatorControl.active` says whether the
library in use is the emulator, and :func:`emulator_only` recognises such a request, so that
callers can refuse or skip before anything is sent.
"""

from __future__ import annotations

import json
import os
from types import ModuleType
from typing import Any

from .._narrow import is_json_list, is_json_object

__all__ = [
    "CONTROL_PREFIX",
    "FAULTS_ENV",
    "SETTINGS_ENV",
    "EmulatorControl",
    "emulator_only",
]

#: Every emulator-only property type starts with this (real HCS has none that does).
CONTROL_PREFIX = "Emulator"

#: The environment variables the emulator reads when it is loaded (docs/emulator.md): a
#: settings object and a fault list, applied as the process's baseline.
SETTINGS_ENV = "HCSEMU_SETTINGS"
FAULTS_ENV = "HCSEMU_FAULTS"


def emulator_only(request: object) -> str | None:
    """The emulator-only property type a service request names (``EmulatorFaults``...), else
    None (also for anything that is not a JSON object)."""
    if not isinstance(request, str):
        return None
    try:
        doc: object = json.loads(request)
    except ValueError:
        return None
    if not is_json_object(doc):
        return None
    names = doc.get("PropertyTypes")
    candidates = [doc.get("PropertyType"), *(names if is_json_list(names) else [])]
    return next((n for n in candidates if isinstance(n, str) and n.startswith(CONTROL_PREFIX)), None)


class EmulatorControl:
    """The emulator's controls, sent through one raw API module.

    ``raw`` is a backend module (``pyhcs._native.cython._core``, ``pyhcs._native.ctypes``) or ``pyhcs._native._backend``;
    None means ``pyhcs._native._backend`` looked up at each call, so that it follows a backend switch
    (``pyhcs.testing.plugin.use_backend``). Errors are the :class:`~pyhcs.errors.HcsError`
    subclasses the emulator answers with (an unknown switch or fault field is
    ``InvalidJsonError``).
    """

    def __init__(self, raw: ModuleType | None = None) -> None:
        self._raw = raw

    @property
    def raw(self) -> ModuleType:
        """The raw API module the controls go through."""
        if self._raw is not None:
            return self._raw
        # Imported on first use: the emulator's modules are reachable right after
        # ``import pyhcs``, which must not load the native library.
        from .._native import _backend

        return _backend

    @property
    def library_path(self) -> str:
        """The native library the controls go to."""
        return str(self.raw.library_path())

    @property
    def active(self) -> bool:
        """Whether that library is the emulator (real HCS would reject every control)."""
        from .._native._library import is_emulator

        return is_emulator(self.library_path)

    # -- the two requests --------------------------------------------------------------------
    def query(self, kind: str) -> Any:
        """The answer to ``HcsGetServiceProperties({"PropertyTypes": [kind]})``."""
        text = self.raw.hcs_get_service_properties(json.dumps({"PropertyTypes": [kind]}))
        return json.loads(text)["Properties"][0]

    def modify(self, kind: str, settings: Any) -> None:
        """``HcsModifyServiceSettings({"PropertyType": kind, "Settings": settings})``."""
        self.raw.hcs_modify_service_settings(json.dumps({"PropertyType": kind, "Settings": settings}))

    # -- reading -----------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The quirk switches and tunables, by the emulator's names."""
        result: dict[str, Any] = self.query("EmulatorSettings")
        return result

    def statistics(self) -> dict[str, Any]:
        """Live objects in the emulator: Operations, SystemHandles, ProcessHandles, Systems,
        Processes, Documents, WorkerThreads, and whether the service is Disconnected."""
        result: dict[str, Any] = self.query("EmulatorStatistics")
        return result

    def call_counts(self) -> dict[str, int]:
        """Native calls by function since the last reset (controls are not counted)."""
        result: dict[str, int] = self.query("EmulatorCallCounts")
        return result

    def faults(self) -> list[dict[str, Any]]:
        """The fault rules as the emulator holds them, with ``Seen`` and ``Fired`` counts."""
        result: list[dict[str, Any]] = self.query("EmulatorFaults")
        return result

    # -- changing ----------------------------------------------------------------------------
    def configure(self, **switches: Any) -> None:
        """Sets quirk switches by the emulator's names; all or nothing."""
        self.modify("Emulator", switches)

    def add_faults(self, *faults: dict[str, Any], reset: bool = False) -> None:
        """Adds fault rules (``reset=True``: replaces the configured ones)."""
        self.modify("EmulatorFaults", {"Faults": list(faults), "Reset": reset})

    def action(self, name: str, **arguments: Any) -> None:
        """Runs an emulator action: ``ServiceDisconnect``, ``Reconnect``, ``Reset``,
        ``ResetCallCounts``, ``UnexpectedExit`` (SystemId=...), ``ProcessExit`` (SystemId=...,
        ProcessId=...)."""
        self.modify("EmulatorActions", {"Action": name, **arguments})

    def reset(self, *, call_counts: bool = False, environment: bool = False) -> None:
        """Back to the documented defaults: no faults, default switches, service connected.

        ``call_counts``: also start the call counts from zero. ``environment``: then apply
        the process's baseline again (:data:`SETTINGS_ENV`, :data:`FAULTS_ENV`), which the
        emulator read when it was loaded; ValueError if a variable is not JSON."""
        self.action("Reset")
        if call_counts:
            self.action("ResetCallCounts")
        if environment:
            for variable, kind in ((SETTINGS_ENV, "Emulator"), (FAULTS_ENV, "EmulatorFaults")):
                text = os.environ.get(variable, "").strip()
                if not text:
                    continue
                try:
                    value = json.loads(text)
                except ValueError as err:
                    raise ValueError(f"{variable} is not valid JSON: {err}") from None
                self.modify(kind, value)
