"""Backend selection: the one place that knows there are two.

``PYHCS_BACKEND`` chooses: ``cython`` (the compiled ``pyhcs._core``), ``ctypes``
(``pyhcs._fallback``) or ``auto`` (the default: cython when it is built, else ctypes).

An explicit choice is strict: if that backend cannot be imported, importing pyhcs fails with
an ImportError that names the backend and the cause, instead of quietly running something
slower than asked for. ``auto`` prefers the compiled backend; if it exists but fails to load
(a broken build, a missing library symbol) a RuntimeWarning says so, because a silent fallback
to ctypes is the most common performance complaint about dual-backend libraries. If it was
simply not built, auto takes ctypes without a warning (the reason is logged at DEBUG).

Both backends export exactly ``PUBLIC_API`` with the same signatures (a test checks it); the
names are copied into this module, so ``from pyhcs import _backend as B; B.hcs_...`` is how
the rest of pyhcs calls the library.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from types import ModuleType
from typing import Any

log = logging.getLogger("pyhcs")

PUBLIC_API: tuple[str, ...] = (
    # operations
    "hcs_create_operation",
    "hcs_close_operation",
    "hcs_get_operation_context",
    "hcs_set_operation_context",
    "hcs_get_compute_system_from_operation",
    "hcs_get_process_from_operation",
    "hcs_get_operation_type",
    "hcs_get_operation_id",
    "hcs_get_operation_result",
    "hcs_get_operation_result_and_process_info",
    "hcs_wait_for_operation_result",
    "hcs_wait_for_operation_result_and_process_info",
    "hcs_set_operation_callback",
    "hcs_cancel_operation",
    # compute systems
    "hcs_enumerate_compute_systems",
    "hcs_create_compute_system",
    "hcs_open_compute_system",
    "hcs_close_compute_system",
    "hcs_start_compute_system",
    "hcs_shut_down_compute_system",
    "hcs_terminate_compute_system",
    "hcs_crash_compute_system",
    "hcs_pause_compute_system",
    "hcs_resume_compute_system",
    "hcs_save_compute_system",
    "hcs_get_compute_system_properties",
    "hcs_modify_compute_system",
    "hcs_set_compute_system_callback",
    "hcs_wait_for_compute_system_exit",
    # processes
    "hcs_create_process",
    "hcs_open_process",
    "hcs_close_process",
    "hcs_terminate_process",
    "hcs_signal_process",
    "hcs_get_process_info",
    "hcs_get_process_properties",
    "hcs_modify_process",
    "hcs_set_process_callback",
    "hcs_wait_for_process_exit",
    "close_handle",
    # host service
    "hcs_get_service_properties",
    "hcs_modify_service_settings",
    "hcs_submit_wer_report",
    # VM utilities
    "hcs_create_empty_guest_state_file",
    "hcs_create_empty_runtime_state_file",
    "hcs_grant_vm_access",
    "hcs_revoke_vm_access",
    "hcs_grant_vm_group_access",
    "hcs_revoke_vm_group_access",
    "hcs_get_processor_compatibility_from_saved_state",
    # storage (computestorage.dll)
    "hcs_import_layer",
    "hcs_export_layer",
    "hcs_export_legacy_writable_layer",
    "hcs_destroy_layer",
    "hcs_setup_base_os_layer",
    "hcs_setup_base_os_volume",
    "hcs_initialize_writable_layer",
    "hcs_initialize_legacy_writable_layer",
    "hcs_attach_layer_storage_filter",
    "hcs_detach_layer_storage_filter",
    "hcs_format_writable_layer_vhd",
    "hcs_get_layer_vhd_mount_path",
    # about the library and the callback machinery
    "library_path",
    "has_function",
    "flush_callbacks",
)

_MODULES = {"cython": "pyhcs._core", "ctypes": "pyhcs._fallback"}


def load(name: str) -> ModuleType:
    """Imports one backend by name ("cython" or "ctypes") and checks it is complete."""
    try:
        module = importlib.import_module(_MODULES[name])
    except OSError as exc:  # the native library itself could not be loaded
        raise ImportError(f"pyhcs backend {name!r} cannot load the HCS library: {exc}") from exc
    missing = [n for n in PUBLIC_API if not hasattr(module, n)]
    if missing:
        raise ImportError(f"pyhcs backend {name!r} lacks {', '.join(missing)}")
    return module


def _select() -> tuple[str, ModuleType]:
    choice = os.environ.get("PYHCS_BACKEND", "auto").strip().lower() or "auto"
    if choice not in ("auto", "cython", "ctypes"):
        raise ImportError(f"pyhcs: PYHCS_BACKEND={choice!r} is not one of auto, cython, ctypes")
    if choice != "auto":
        try:
            return choice, load(choice)
        except ImportError as exc:
            raise ImportError(
                f"pyhcs: PYHCS_BACKEND={choice} requested but {_MODULES[choice]} could not be imported: {exc}"
            ) from exc
    try:
        return "cython", load("cython")
    except ImportError as exc:
        not_built = isinstance(exc, ModuleNotFoundError) and exc.name == "pyhcs._core"
        if not_built:
            log.debug("pyhcs: the compiled backend is not built; using ctypes")
        else:
            warnings.warn(
                f"pyhcs: the compiled backend failed to load ({exc}); falling back to the slower ctypes backend",
                RuntimeWarning,
                stacklevel=3,
            )
        try:
            return "ctypes", load("ctypes")
        except ImportError:
            raise exc from None


backend, _module = _select()
backend_features: frozenset[str] = frozenset(getattr(_module, "FEATURES", frozenset()))

_g = globals()
for _name in PUBLIC_API:
    _g[_name] = getattr(_module, _name)
del _g, _name


def __getattr__(name: str) -> Any:  # pragma: no cover - only for type checkers and typos
    raise AttributeError(f"module 'pyhcs._backend' has no attribute {name!r}")
