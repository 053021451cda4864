r"""VM utilities: guest and runtime state files, VM access grants, processor compatibility of
a saved state (computecore.dll, all synchronous).

::

    vm.create_empty_guest_state_file("/vms/a/a.vmgs")
    vm.grant_vm_access("vm-a", "/vms/a/disk.vhdx")
    vm.processor_compatibility("/vms/a/saved.vmrs")["ProcessorFeatures"]

Paths may be ``str`` or :class:`os.PathLike`, relative or absolute: pyhcs sends them absolute
(``os.path.abspath``, so Windows' rules on Windows), because the service resolves paths in a
process of its own, whose working directory is not the caller's. Windows' literal paths
(``\\?\...``, ``\\.\...``: extended-length, volume and device paths) are sent as given.
Failures are HcsErrors with ``.filename`` set (the absolute path that was sent):
a missing file is ``errors.Win32FileNotFoundError``/``errors.PathNotFoundError`` (both
FileNotFoundError), an existing one ``errors.Win32FileExistsError`` (a FileExistsError).
"""

# The Pythonic layer's modules share their private names (the backend and _log modules, the
# handles' internals that the flows drive); the public surface is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, cast

from . import _log
from ._native import _backend as B
from ._native._library import host_formats
from .errors import HcsError, is_json_object, make_error

__all__ = [
    "access_entries",
    "create_empty_guest_state_file",
    "create_empty_runtime_state_file",
    "grant_vm_access",
    "grant_vm_group_access",
    "processor_compatibility",
    "revoke_vm_access",
    "revoke_vm_group_access",
]

_E_UNEXPECTED = 0x8000FFFF
_LITERAL_PREFIXES = ("\\\\?\\", "\\\\.\\")  # Windows paths taken literally

PathLike = str | os.PathLike[str]


def _absolute_path(path: PathLike, pathmod: Any = os.path) -> str:
    """``path`` as the absolute path HCS needs (``pathmod``: ``os.path``, or ``ntpath``/
    ``posixpath`` to apply one platform's rules anywhere)."""
    text = cast(object, os.fspath(path))  # bytes for a bytes path, despite the annotation
    if not isinstance(text, str):
        raise TypeError(f"a path is str or os.PathLike[str], not {type(text).__name__}")
    if pathmod.sep == "\\" and text.startswith(_LITERAL_PREFIXES):
        return text  # extended-length, volume and device paths: absolute, never normalized
    result: str = pathmod.abspath(text)
    return result


def _call(name: str, path: PathLike, fn: Callable[..., Any], *args: Any) -> Any:
    text = _absolute_path(path)
    try:
        return _log.timed(name, text, fn, *args, text)
    except HcsError as err:
        err.filename = text
        raise


def create_empty_guest_state_file(path: PathLike) -> None:
    """HcsCreateEmptyGuestStateFile: a new .vmgs (fails if it exists)."""
    _call("HcsCreateEmptyGuestStateFile", path, B.hcs_create_empty_guest_state_file)


def create_empty_runtime_state_file(path: PathLike) -> None:
    """HcsCreateEmptyRuntimeStateFile: a new .vmrs (fails if it exists)."""
    _call("HcsCreateEmptyRuntimeStateFile", path, B.hcs_create_empty_runtime_state_file)


def grant_vm_access(vm_id: str, path: PathLike) -> None:
    """HcsGrantVmAccess: lets the VM ``vm_id`` (its virtual account) use ``path``. Idempotent."""
    _call("HcsGrantVmAccess", path, B.hcs_grant_vm_access, vm_id)


def revoke_vm_access(vm_id: str, path: PathLike) -> None:
    """HcsRevokeVmAccess: removes what :func:`grant_vm_access` added. Idempotent."""
    _call("HcsRevokeVmAccess", path, B.hcs_revoke_vm_access, vm_id)


def grant_vm_group_access(path: PathLike) -> None:
    """HcsGrantVmGroupAccess: read access for every VM (group S-1-5-83-0)."""
    _call("HcsGrantVmGroupAccess", path, B.hcs_grant_vm_group_access)


def revoke_vm_group_access(path: PathLike) -> None:
    """HcsRevokeVmGroupAccess."""
    _call("HcsRevokeVmGroupAccess", path, B.hcs_revoke_vm_group_access)


def processor_compatibility(saved_state_path: PathLike) -> dict[str, Any]:
    """HcsGetProcessorCompatibilityFromSavedState: the VmProcessorRequirements of a saved
    state (``ProcessorFeatures``, ``XsaveProcessorFeatures``, ``CacheLineFlushSize``, ...), to
    check it can be restored on this host."""
    text = _call(
        "HcsGetProcessorCompatibilityFromSavedState",
        saved_state_path,
        B.hcs_get_processor_compatibility_from_saved_state,
    )
    try:
        value = json.loads(text) if text else None
    except ValueError:
        value = None
    if not is_json_object(value):
        raise make_error(
            _E_UNEXPECTED,
            message="HcsGetProcessorCompatibilityFromSavedState returned no document",
            call="HcsGetProcessorCompatibilityFromSavedState",
        )
    return value


def access_entries(path: PathLike) -> list[dict[str, Any]]:
    """The VM access entries the emulator recorded for ``path`` (``Sid``, ``VmId``,
    ``Access``, ``Inherit``). Emulator only: Windows keeps them in the file's ACL, which
    ``icacls`` shows.

    Raises:
        NotImplementedError: pyhcs is talking to real HCS.
        FileNotFoundError: ``path`` does not exist.
    """
    formats = host_formats(B.library_path())
    if formats is None:
        raise NotImplementedError("read the ACL with icacls on Windows")
    entries: list[dict[str, Any]] = formats.access_entries(_absolute_path(path))
    return entries
