"""The host compute service itself: its properties and settings, WER reports, and a sweep
for systems left behind.

::

    >>> pyhcs.service.supported_schema_versions()
    [(2, 6)]
    >>> pyhcs.service.properties("Basic", "ProcessorTopology")
    [{'SupportedSchemaVersions': [...]}, {'LogicalProcessorCount': 8, ...}]

These calls are synchronous in HCS (no operation), and short.
"""

# The Pythonic layer's modules share their private names (the backend and _log modules, the
# handles' internals that the flows drive); the public surface is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import math
from typing import Any

from . import _log
from ._docs import Document, loads, to_json
from ._handle import DEFAULT, Deadline, Timeout, resolve_timeout
from ._native import _backend as B
from .errors import HcsError, is_already_stopped, is_json_array, is_json_object, is_not_found, make_error

__all__ = [
    "basic",
    "modify_settings",
    "properties",
    "submit_wer_report",
    "supported_schema_versions",
    "sweep",
]

_E_UNEXPECTED = 0x8000FFFF


def properties(*types: str, query: Document | None = None) -> list[Any]:
    """HcsGetServiceProperties: one entry per requested type, in order ("Basic",
    "ProcessorTopology", "CpuGroup", "ContainerCredentialGuard", "QoSCapabilities"), or the
    ``Properties`` of a full ``query=`` document. No types: just "Basic"."""
    if query is not None and types:
        raise TypeError("pass property types or query=, not both")
    text = to_json(query, "service property query") if query is not None else None
    if text is None:
        text = to_json({"PropertyTypes": list(types) or ["Basic"]})
    doc: Any = loads(_log.timed("HcsGetServiceProperties", None, B.hcs_get_service_properties, text))
    props: Any = doc.get("Properties") if is_json_object(doc) else None
    if not is_json_array(props):
        raise make_error(
            _E_UNEXPECTED, message="HcsGetServiceProperties returned no Properties", call="HcsGetServiceProperties"
        )
    return props


def basic() -> dict[str, Any]:
    """The "Basic" service properties (``SupportedSchemaVersions``)."""
    value: Any = properties("Basic")[0]
    return value if is_json_object(value) else {}


def supported_schema_versions() -> list[tuple[int, int]]:
    """(major, minor) pairs the service supports; ``(2, 5)`` means 2.0 to 2.5."""
    out: list[tuple[int, int]] = []
    versions: Any = basic().get("SupportedSchemaVersions") or []
    for v in versions if is_json_array(versions) else []:
        if is_json_object(v):
            out.append((int(v.get("Major", 0)), int(v.get("Minor", 0))))
    return out


def modify_settings(settings: Document) -> Any:
    """HcsModifyServiceSettings with a ModificationRequest
    (``{"PropertyType": "CpuGroup", "Settings": {...}}``). Returns the result document, parsed
    (usually None)."""
    text = to_json(settings, "service settings")
    if text is None:
        raise TypeError("settings are required")
    return loads(_log.timed("HcsModifyServiceSettings", None, B.hcs_modify_service_settings, text))


def submit_wer_report(report: Document) -> None:
    """HcsSubmitWerReport: files a CrashReport, typically the data of a SystemCrashReport event
    passed on unchanged (``event.data``)."""
    text = to_json(report, "crash report")
    if text is None:
        raise TypeError("a crash report is required")
    _log.timed("HcsSubmitWerReport", None, B.hcs_submit_wer_report, text)


def sweep(owner: str, *, timeout: Timeout = DEFAULT) -> dict[str, str]:
    """Terminates every compute system whose ``Owner`` is ``owner`` (systems a crashed
    program left behind) and reports what happened to each, by id: "terminated",
    "already stopped", "gone", or the error's name. Never raises for one system's failure.
    """
    from .system import ComputeSystem

    deadline = Deadline(resolve_timeout(timeout))
    report: dict[str, str] = {}
    for info in ComputeSystem.enumerate(owners=[owner], timeout=deadline.remaining()):
        system_id = info.get("Id")
        if not isinstance(system_id, str):
            continue
        try:
            with ComputeSystem.open(system_id) as system:
                stopped = system.terminate(timeout=deadline.remaining())
                report[system_id] = "terminated" if stopped else "already stopped"
        except HcsError as err:
            if is_not_found(err):
                report[system_id] = "gone"
            elif is_already_stopped(err):
                report[system_id] = "already stopped"
            else:
                report[system_id] = err.name
        _log.log.info("pyhcs: sweep %r: %s", system_id, report[system_id])
        if math.isfinite(deadline.timeout) and deadline.expired():
            break
    return report
