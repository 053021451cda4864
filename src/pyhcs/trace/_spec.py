"""What a trace knows about each traced function: its C name, the kind of each parameter and
of its result. Recording and replay both read this table; it needs no native library.

Kinds of parameters and results:

* ``op``, ``system``, ``process``: HCS handles, recorded as symbolic ids (``op#3``);
* ``pipe``: a std handle of a process (a pipe HANDLE on Windows, a file descriptor here);
* ``vhd``: a VHD handle the caller opened itself (not made by HCS);
* ``doc``: a JSON document passed as text (recorded parsed);
* ``callback``: a callable (recorded as ``true``/``false``);
* ``timeout``: a wait's timeout in milliseconds;
* ``value``: anything else (strings, integers, contexts), recorded as it is.
"""

from __future__ import annotations

from typing import NamedTuple

from .._native._api_names import PUBLIC_API

HANDLE_KINDS = ("op", "system", "process", "pipe", "vhd")


class Param(NamedTuple):
    name: str
    kind: str
    default: object = None
    required: bool = True


class FunctionSpec(NamedTuple):
    api: str
    """The name in pyhcs.raw (``hcs_start_compute_system``)."""
    cname: str
    """The C name (``HcsStartComputeSystem``)."""
    params: tuple[Param, ...]
    result: str
    """``none``, a handle kind, ``doc``, ``value``, ``procinfo`` (process information and a
    document) or ``text`` (a plain string such as a mount path)."""
    closes: str | None = None
    """The handle kind whose argument this call closes."""

    def param(self, name: str) -> Param | None:
        for p in self.params:
            if p.name == name:
                return p
        return None


_INFINITE = 0xFFFFFFFF
_GENERIC_ALL = 0x10000000

# Parameter name -> kind: the names are those of pyhcs.raw (and of both backends).
_KIND_BY_NAME = {
    "operation": "op",
    "compute_system": "system",
    "process": "process",
    "handle": "pipe",
    "vhd_handle": "vhd",
    "callback": "callback",
    "timeout_ms": "timeout",
    "configuration": "doc",
    "options": "doc",
    "property_query": "doc",
    "settings": "doc",
    "process_parameters": "doc",
    "query": "doc",
    "layer_data": "doc",
}

# name -> (parameters as "name" or "name=default", result kind). Mirrors src/pyhcs/_native/_backend.pyi;
# tests/trace/test_trace.py checks it against inspect.signature of both backends.
_TABLE: dict[str, tuple[tuple[str, ...], str]] = {
    "hcs_create_operation": (("context=0", "callback=None"), "op"),
    "hcs_close_operation": (("operation",), "none"),
    "hcs_get_operation_context": (("operation",), "value"),
    "hcs_set_operation_context": (("operation", "context"), "none"),
    "hcs_get_compute_system_from_operation": (("operation",), "system"),
    "hcs_get_process_from_operation": (("operation",), "process"),
    "hcs_get_operation_type": (("operation",), "value"),
    "hcs_get_operation_id": (("operation",), "value"),
    "hcs_get_operation_result": (("operation",), "doc"),
    "hcs_get_operation_result_and_process_info": (("operation",), "procinfo"),
    "hcs_wait_for_operation_result": (("operation", "timeout_ms=INFINITE"), "doc"),
    "hcs_wait_for_operation_result_and_process_info": (("operation", "timeout_ms=INFINITE"), "procinfo"),
    "hcs_set_operation_callback": (("operation", "context", "callback"), "none"),
    "hcs_cancel_operation": (("operation",), "none"),
    "hcs_enumerate_compute_systems": (("query", "operation"), "none"),
    "hcs_create_compute_system": (("id", "configuration", "operation", "security_descriptor=None"), "system"),
    "hcs_open_compute_system": (("id", "requested_access=GENERIC_ALL"), "system"),
    "hcs_close_compute_system": (("compute_system",), "none"),
    "hcs_start_compute_system": (("compute_system", "operation", "options=None"), "none"),
    "hcs_shut_down_compute_system": (("compute_system", "operation", "options=None"), "none"),
    "hcs_terminate_compute_system": (("compute_system", "operation", "options=None"), "none"),
    "hcs_crash_compute_system": (("compute_system", "operation", "options=None"), "none"),
    "hcs_pause_compute_system": (("compute_system", "operation", "options=None"), "none"),
    "hcs_resume_compute_system": (("compute_system", "operation", "options=None"), "none"),
    "hcs_save_compute_system": (("compute_system", "operation", "options=None"), "none"),
    "hcs_get_compute_system_properties": (("compute_system", "operation", "property_query=None"), "none"),
    "hcs_modify_compute_system": (("compute_system", "operation", "configuration", "identity=0"), "none"),
    "hcs_set_compute_system_callback": (("compute_system", "callback_options", "context", "callback"), "none"),
    "hcs_wait_for_compute_system_exit": (("compute_system", "timeout_ms=INFINITE"), "doc"),
    "hcs_create_process": (("compute_system", "process_parameters", "operation", "security_descriptor=None"), "process"),
    "hcs_open_process": (("compute_system", "process_id", "requested_access=GENERIC_ALL"), "process"),
    "hcs_close_process": (("process",), "none"),
    "hcs_terminate_process": (("process", "operation", "options=None"), "none"),
    "hcs_signal_process": (("process", "operation", "options=None"), "none"),
    "hcs_get_process_info": (("process", "operation"), "none"),
    "hcs_get_process_properties": (("process", "operation", "property_query=None"), "none"),
    "hcs_modify_process": (("process", "operation", "settings"), "none"),
    "hcs_set_process_callback": (("process", "callback_options", "context", "callback"), "none"),
    "hcs_wait_for_process_exit": (("process", "timeout_ms=INFINITE"), "doc"),
    "close_handle": (("handle",), "none"),
    "hcs_get_service_properties": (("property_query=None",), "doc"),
    "hcs_modify_service_settings": (("settings",), "doc"),
    "hcs_submit_wer_report": (("settings",), "none"),
    "hcs_create_empty_guest_state_file": (("guest_state_file_path",), "none"),
    "hcs_create_empty_runtime_state_file": (("runtime_state_file_path",), "none"),
    "hcs_grant_vm_access": (("vm_id", "file_path"), "none"),
    "hcs_revoke_vm_access": (("vm_id", "file_path"), "none"),
    "hcs_grant_vm_group_access": (("file_path",), "none"),
    "hcs_revoke_vm_group_access": (("file_path",), "none"),
    "hcs_get_processor_compatibility_from_saved_state": (("runtime_file_name",), "doc"),
    "hcs_import_layer": (("layer_path", "source_folder_path", "layer_data"), "none"),
    "hcs_export_layer": (("layer_path", "export_folder_path", "layer_data", "options=None"), "none"),
    "hcs_export_legacy_writable_layer": (
        ("writable_layer_mount_path", "writable_layer_folder_path", "export_folder_path", "layer_data"),
        "none",
    ),
    "hcs_destroy_layer": (("layer_path",), "none"),
    "hcs_setup_base_os_layer": (("layer_path", "vhd_handle", "options=None"), "none"),
    "hcs_setup_base_os_volume": (("layer_path", "volume_path", "options=None"), "none"),
    "hcs_initialize_writable_layer": (("writable_layer_path", "layer_data", "options=None"), "none"),
    "hcs_initialize_legacy_writable_layer": (
        ("writable_layer_mount_path", "writable_layer_folder_path", "layer_data", "options=None"),
        "none",
    ),
    "hcs_attach_layer_storage_filter": (("layer_path", "layer_data"), "none"),
    "hcs_detach_layer_storage_filter": (("layer_path",), "none"),
    "hcs_format_writable_layer_vhd": (("vhd_handle",), "none"),
    "hcs_get_layer_vhd_mount_path": (("vhd_handle",), "text"),
}

#: Functions of PUBLIC_API that are not HCS calls and are never traced.
UNTRACED = frozenset({"library_path", "has_function", "flush_callbacks"})

_CLOSES = {
    "hcs_close_operation": "op",
    "hcs_close_compute_system": "system",
    "hcs_close_process": "process",
    "close_handle": "pipe",
}

_DEFAULTS: dict[str, object] = {"None": None, "0": 0, "INFINITE": _INFINITE, "GENERIC_ALL": _GENERIC_ALL}

# C names that title-casing the snake-case name does not give
_CNAME_EXCEPTIONS = {
    "close_handle": "CloseHandle",
    "hcs_setup_base_os_layer": "HcsSetupBaseOSLayer",
    "hcs_setup_base_os_volume": "HcsSetupBaseOSVolume",
}


def _cname(api: str) -> str:
    if api in _CNAME_EXCEPTIONS:
        return _CNAME_EXCEPTIONS[api]
    return "".join(part.capitalize() for part in api.split("_"))


def _build() -> dict[str, FunctionSpec]:
    out: dict[str, FunctionSpec] = {}
    for api, (params, result) in _TABLE.items():
        ps: list[Param] = []
        for text in params:
            name, eq, default = text.partition("=")
            ps.append(Param(name, _KIND_BY_NAME.get(name, "value"), _DEFAULTS[default] if eq else None, not eq))
        out[api] = FunctionSpec(api, _cname(api), tuple(ps), result, _CLOSES.get(api))
    return out


BY_API: dict[str, FunctionSpec] = _build()
BY_CNAME: dict[str, FunctionSpec] = {spec.cname: spec for spec in BY_API.values()}

if set(BY_API) | UNTRACED != set(PUBLIC_API):  # pragma: no cover - caught by the test suite at once
    raise ImportError(
        "pyhcs.trace: the function table does not match PUBLIC_API: "
        f"{sorted(set(PUBLIC_API) ^ (set(BY_API) | UNTRACED))}"
    )


def lookup(name: str) -> FunctionSpec | None:
    """The spec of a function given by C name (``HcsStartComputeSystem``) or pyhcs.raw name."""
    return BY_CNAME.get(name) or BY_API.get(name)
