"""One stub for both backends: pyhcs._native._backend re-exports PUBLIC_API from whichever of
pyhcs._native.cython._core (Cython) and pyhcs._native.ctypes (ctypes) it selected, and both have exactly these
signatures (tests/raw/test_backends.py compares them with inspect.signature).

Argument rules, the same in both backends (checked in parameter order, before the library is
called; tests/raw/test_backends.py compares the backends on random values of random types):

* handles and contexts (``operation``, ``compute_system``, ``process``, ``vhd_handle``,
  ``identity``, ``context``): ``None`` (NULL) or an ``int`` from 0 to the largest pointer
  (2**64 - 1 on 64-bit); another type raises TypeError, an int out of range OverflowError;
* DWORDs (``requested_access``, ``process_id``, ``callback_options``): an ``int`` from 0 to
  0xFFFFFFFF; TypeError / OverflowError;
* ``timeout_ms``: an ``int`` from 0 to ``INFINITE`` (0xFFFFFFFF); TypeError for another type,
  ValueError out of range;
* strings: ``str`` or ``None`` (NULL); TypeError for another type (bytes included), ValueError
  for a NUL character, which C would stop at; lone surrogates pass through unchanged;
* ``callback``: callable or ``None``, else TypeError; ``security_descriptor``: ``None``, else
  ValueError; ``has_function(name)``: a ``str``, else TypeError.

Success is every SUCCEEDED HRESULT (S_OK, S_FALSE, any code >= 0), plus the pending codes for
initiating calls; failures raise HcsError subclasses.

The synchronous functions that can block in the service (SYNCHRONOUS in pyhcs._native._api_names, generated: the calls with no operation of their own) run on
a helper thread when called from the main thread, so that Ctrl-C interrupts them.

What each function does (one per C function, named in snake_case: ``hcs_start_compute_system``
is HcsStartComputeSystem; documents are JSON text, handles ints):

Operations (HCS_OPERATION: one asynchronous call and its result)

* ``hcs_create_operation(context, callback)``: a new operation; with ``callback``, HCS calls
  ``callback(operation, context)`` (on pyhcs' dispatcher thread) once the call it is given to
  completes. ``hcs_close_operation``: frees it (safe while pending: HCS drops the result).
* ``hcs_get_operation_context``/``hcs_set_operation_context``: the caller's context value.
* ``hcs_get_compute_system_from_operation``/``hcs_get_process_from_operation``: the handle the
  operation's call was made on (0 if none).
* ``hcs_get_operation_type``: which call used it (``OperationType``); ``hcs_get_operation_id``:
  HCS's id for it (``HCS_INVALID_OPERATION_ID`` before a call).
* ``hcs_get_operation_result``: the result document without waiting (OperationPendingError
  while it runs); ``hcs_wait_for_operation_result``: waits up to ``timeout_ms`` for it. The
  ``..._and_process_info`` variants also return the HCS_PROCESS_INFORMATION of a
  CreateProcess/GetProcessInfo call: its std handles then belong to the caller.
* ``hcs_set_operation_callback``: sets (or replaces) the completion callback afterwards.
* ``hcs_cancel_operation``: asks HCS to cancel the call (E_NOTIMPL on hosts that do not).

Compute systems (HCS_SYSTEM)

* ``hcs_enumerate_compute_systems(query, operation)``: the operation's result is a JSON array
  of the systems that match the SystemQuery (all of them for None).
* ``hcs_create_compute_system(id, configuration, operation)``: creates the system (state
  Created) and returns its handle at once; the operation says whether creation succeeded.
* ``hcs_open_compute_system(id)``: a new handle to an existing system (SystemNotFoundError);
  ``hcs_close_compute_system``: closes a handle (the last one ends a system created with
  ``ShouldTerminateOnLastHandleClosed``).
* ``hcs_start_``/``hcs_shut_down_``/``hcs_terminate_``/``hcs_crash_``/``hcs_pause_``/
  ``hcs_resume_``/``hcs_save_compute_system(compute_system, operation, options)``: start
  the state change; the operation completes when it is done (shutdown asks the guest, terminate
  powers off, crash makes the guest crash, save writes its state to a file).
* ``hcs_get_compute_system_properties``: the operation's result is the Properties document
  (basic properties plus the PropertyTypes the query asks for).
* ``hcs_modify_compute_system``: applies a ModifySettingRequest (add/remove a device, resize
  memory...).
* ``hcs_set_compute_system_callback``: the event callback (SystemExited, ...) of this handle,
  ``callback(event, context)``; None removes it.
* ``hcs_wait_for_compute_system_exit(compute_system, timeout_ms)``: waits until the system
  exited; returns the SystemExitStatus document.

Processes (HCS_PROCESS)

* ``hcs_create_process(compute_system, process_parameters, operation)``: starts a process in a
  running system and returns its handle; the operation carries its HCS_PROCESS_INFORMATION (pid
  and the std pipes that were asked for).
* ``hcs_open_process(compute_system, process_id)``: a handle to a process by pid;
  ``hcs_close_process``: closes it (the process keeps running).
* ``hcs_terminate_process``: ends the process; ``hcs_signal_process``: sends the signal of a
  ProcessSignal document (a Ctrl event for Windows guests, a POSIX number for Linux ones).
* ``hcs_get_process_info``: the operation carries new handles to the process's std pipes.
* ``hcs_get_process_properties``: the operation's result is the ProcessStatus document.
* ``hcs_modify_process``: a ProcessModifyRequest (close stdin, resize the console).
* ``hcs_set_process_callback``: the event callback (ProcessExited, ...) of this handle.
* ``hcs_wait_for_process_exit(process, timeout_ms)``: waits until the process exited; returns
  its ProcessStatus document (ExitCode, LastWaitResult).
* ``close_handle(handle)``: closes a std handle of HCS_PROCESS_INFORMATION (a HANDLE on
  Windows, a descriptor on the emulator) that was not made a file.

Host service

* ``hcs_get_service_properties(query)``: the service's properties (supported schema versions,
  basic information...).
* ``hcs_modify_service_settings(settings)``: one ModificationRequest (a ``PropertyType`` such
  as CpuGroup or ContainerCredentialGuard, and its ``Settings``); returns the result document,
  if any.
* ``hcs_submit_wer_report(settings)``: submits a Windows Error Report: ``settings`` is a
  CrashReport, typically the data of a system's crash-report event forwarded as it came.

VM utilities (files a virtual machine uses)

* ``hcs_create_empty_guest_state_file``/``hcs_create_empty_runtime_state_file(path)``: create
  an empty .vmgs / .vmrs file.
* ``hcs_grant_vm_access``/``hcs_revoke_vm_access(vm_id, file_path)``: give or take away the
  VM's access to a file; ``hcs_grant_vm_group_access``/``hcs_revoke_vm_group_access(path)``:
  the same for every VM.
* ``hcs_get_processor_compatibility_from_saved_state(runtime_file_name)``: the processor
  requirements (VmProcessorRequirements JSON) of a saved state (.vmrs).

Storage (computestorage.dll: container image layers)

* ``hcs_import_layer(layer_path, source_folder_path, layer_data)``: copies a layer in transport
  format into ``layer_path``; ``hcs_export_layer``: the reverse;
  ``hcs_export_legacy_writable_layer``: exports a legacy (volume-backed) writable layer.
* ``hcs_destroy_layer``: deletes a layer folder.
* ``hcs_setup_base_os_layer``/``hcs_setup_base_os_volume``: makes an imported layer (or a
  mounted volume) a base OS layer.
* ``hcs_initialize_writable_layer``/``hcs_initialize_legacy_writable_layer``: prepares a
  writable layer over the parents in ``layer_data``.
* ``hcs_attach_layer_storage_filter``/``hcs_detach_layer_storage_filter``: mounts / unmounts
  the merged view of a writable layer and its parents.
* ``hcs_format_writable_layer_vhd(vhd_handle)``: formats a virtual disk for a writable layer;
  ``hcs_get_layer_vhd_mount_path``: the volume path of such a mounted disk.

The library and the callback machinery

* ``library_path()``: the path of the computecore library (or emulator) that was loaded.
* ``has_function(name)``: whether the library exports ``name`` (an HCS function name).
* ``flush_callbacks(timeout)``: waits until every callback queued so far was delivered; True
  if it was within ``timeout`` seconds.
* ``load(name)``: the backend module ``name`` ("cython" or "ctypes"), loaded on its own.
"""

from types import ModuleType
from typing import Final

from ._types import EventCallback, HcsProcessInformation, OperationCallback

PUBLIC_API: Final[tuple[str, ...]]
backend: str
backend_features: frozenset[str]
#: The selected backend module; its private entries (``_run_call``, the fused round trip of
#: pyhcs.operation.run) are reached through it.
_module: ModuleType

def load(name: str) -> ModuleType: ...

# BEGIN GENERATED by tools/gen_abi.py from src/hcsemu/hcs.h and tools/abi.toml: run it, do not edit.

# operations
def hcs_create_operation(context: int = 0, callback: OperationCallback | None = None) -> int: ...
def hcs_close_operation(operation: int) -> None: ...
def hcs_get_operation_context(operation: int) -> int: ...
def hcs_set_operation_context(operation: int, context: int) -> None: ...
def hcs_get_compute_system_from_operation(operation: int) -> int: ...
def hcs_get_process_from_operation(operation: int) -> int: ...
def hcs_get_operation_type(operation: int) -> int: ...
def hcs_get_operation_id(operation: int) -> int: ...
def hcs_get_operation_result(operation: int) -> str | None: ...
def hcs_get_operation_result_and_process_info(operation: int) -> tuple[HcsProcessInformation, str | None]: ...
def hcs_wait_for_operation_result(operation: int, timeout_ms: int = 0xFFFFFFFF) -> str | None: ...
def hcs_wait_for_operation_result_and_process_info(
    operation: int, timeout_ms: int = 0xFFFFFFFF
) -> tuple[HcsProcessInformation, str | None]: ...
def hcs_set_operation_callback(operation: int, context: int, callback: OperationCallback | None) -> None: ...
def hcs_cancel_operation(operation: int) -> None: ...

# compute systems
def hcs_enumerate_compute_systems(query: str | None, operation: int) -> None: ...
def hcs_create_compute_system(id: str, configuration: str, operation: int, security_descriptor: None = None) -> int: ...
def hcs_open_compute_system(id: str, requested_access: int = 0x10000000) -> int: ...
def hcs_close_compute_system(compute_system: int) -> None: ...
def hcs_start_compute_system(compute_system: int, operation: int, options: str | None = None) -> None: ...
def hcs_shut_down_compute_system(compute_system: int, operation: int, options: str | None = None) -> None: ...
def hcs_terminate_compute_system(compute_system: int, operation: int, options: str | None = None) -> None: ...
def hcs_crash_compute_system(compute_system: int, operation: int, options: str | None = None) -> None: ...
def hcs_pause_compute_system(compute_system: int, operation: int, options: str | None = None) -> None: ...
def hcs_resume_compute_system(compute_system: int, operation: int, options: str | None = None) -> None: ...
def hcs_save_compute_system(compute_system: int, operation: int, options: str | None = None) -> None: ...
def hcs_get_compute_system_properties(
    compute_system: int, operation: int, property_query: str | None = None
) -> None: ...
def hcs_modify_compute_system(compute_system: int, operation: int, configuration: str, identity: int = 0) -> None: ...
def hcs_set_compute_system_callback(
    compute_system: int, callback_options: int, context: int, callback: EventCallback | None
) -> None: ...
def hcs_wait_for_compute_system_exit(compute_system: int, timeout_ms: int = 0xFFFFFFFF) -> str | None: ...

# processes
def hcs_create_process(
    compute_system: int, process_parameters: str, operation: int, security_descriptor: None = None
) -> int: ...
def hcs_open_process(compute_system: int, process_id: int, requested_access: int = 0x10000000) -> int: ...
def hcs_close_process(process: int) -> None: ...
def hcs_terminate_process(process: int, operation: int, options: str | None = None) -> None: ...
def hcs_signal_process(process: int, operation: int, options: str | None = None) -> None: ...
def hcs_get_process_info(process: int, operation: int) -> None: ...
def hcs_get_process_properties(process: int, operation: int, property_query: str | None = None) -> None: ...
def hcs_modify_process(process: int, operation: int, settings: str) -> None: ...
def hcs_set_process_callback(
    process: int, callback_options: int, context: int, callback: EventCallback | None
) -> None: ...
def hcs_wait_for_process_exit(process: int, timeout_ms: int = 0xFFFFFFFF) -> str | None: ...
def close_handle(handle: int) -> None: ...

# host service
def hcs_get_service_properties(property_query: str | None = None) -> str: ...
def hcs_modify_service_settings(settings: str) -> str | None: ...
def hcs_submit_wer_report(settings: str) -> None: ...

# VM utilities
def hcs_create_empty_guest_state_file(guest_state_file_path: str) -> None: ...
def hcs_create_empty_runtime_state_file(runtime_state_file_path: str) -> None: ...
def hcs_grant_vm_access(vm_id: str, file_path: str) -> None: ...
def hcs_revoke_vm_access(vm_id: str, file_path: str) -> None: ...
def hcs_grant_vm_group_access(file_path: str) -> None: ...
def hcs_revoke_vm_group_access(file_path: str) -> None: ...
def hcs_get_processor_compatibility_from_saved_state(runtime_file_name: str) -> str: ...

# storage (computestorage.dll)
def hcs_import_layer(layer_path: str, source_folder_path: str, layer_data: str) -> None: ...
def hcs_export_layer(layer_path: str, export_folder_path: str, layer_data: str, options: str | None = None) -> None: ...
def hcs_export_legacy_writable_layer(
    writable_layer_mount_path: str, writable_layer_folder_path: str, export_folder_path: str, layer_data: str
) -> None: ...
def hcs_destroy_layer(layer_path: str) -> None: ...
def hcs_setup_base_os_layer(layer_path: str, vhd_handle: int, options: str | None = None) -> None: ...
def hcs_setup_base_os_volume(layer_path: str, volume_path: str, options: str | None = None) -> None: ...
def hcs_initialize_writable_layer(writable_layer_path: str, layer_data: str, options: str | None = None) -> None: ...
def hcs_initialize_legacy_writable_layer(
    writable_layer_mount_path: str, writable_layer_folder_path: str, layer_data: str, options: str | None = None
) -> None: ...
def hcs_attach_layer_storage_filter(layer_path: str, layer_data: str) -> None: ...
def hcs_detach_layer_storage_filter(layer_path: str) -> None: ...
def hcs_format_writable_layer_vhd(vhd_handle: int) -> None: ...
def hcs_get_layer_vhd_mount_path(vhd_handle: int) -> str: ...

# about the library and the callback machinery
def library_path() -> str: ...
def has_function(name: str) -> bool: ...
def flush_callbacks(timeout: float = 5.0) -> bool: ...

# END GENERATED by tools/gen_abi.py
