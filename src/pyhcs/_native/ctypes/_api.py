"""The flat API over ctypes: one function per C function, same names in snake case.

Every function takes and returns plain values (ints for handles, ``str`` JSON, callables) and
raises :class:`pyhcs.errors.HcsError` subclasses for failed HRESULTs. ctypes releases the GIL
around every foreign call (the library is loaded with CDLL/WinDLL, never PyDLL), so blocking
calls never stall other Python threads; long waits are cut into slices so Ctrl-C is seen.
"""

# The backend's modules share the dispatcher's internals, and typeshed names ctypes' pointer
# type only privately (ctypes._Pointer).
# pyright: reportPrivateUsage=false

from __future__ import annotations

import atexit
import ctypes
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ... import errors
from .. import _blocking
from .._api_names import PUBLIC_API
from .._dispatch import KIND_EVENT, KIND_OPERATION, Item, new_dispatcher
from .._types import (
    GENERIC_ALL,
    INFINITE,
    EventCallback,
    HcsProcessInformation,
    OperationCallback,
)
from . import _validate
from ._lib import EVENT_CALLBACK, HCS_EVENT, HCS_PROCESS_INFORMATION, OPERATION_COMPLETION, Library

_lib = Library()
# NULL function pointers (ctypes refuses None where a CFUNCTYPE is declared)
_NO_COMPLETION = OPERATION_COMPLETION()
_NO_EVENT_CALLBACK = EVENT_CALLBACK()

#: A wait is cut into slices of this length so that signals (Ctrl-C) are handled between them.
_WAIT_SLICE_MS = 200

# HCS_E_OPERATION_PENDING in both code forms, and the legacy pending value 0xC0370103
_PENDING = frozenset({0x80370117, 0xC0370117, 0xC0370103})
# A wait's "not yet": both forms of HCS_E_OPERATION_TIMEOUT, and the Win32 timeouts
# (WAIT_TIMEOUT, ERROR_TIMEOUT) that HcsWaitFor*Exit may report instead.
_TIMEOUTS = frozenset({0x80370118, 0xC0370118, 0x80070102, 0x800705B4})

# ------------------------------------------------------------------------------ strings


def _w(s: str | None) -> bytes | None:
    """UTF-16LE with its terminator (bytes buffers add one NUL byte; we add the other)."""
    if s is None:
        return None
    if "\x00" in s:
        raise ValueError("strings passed to HCS cannot contain NUL characters")
    return s.encode("utf-16-le", "surrogatepass") + b"\x00"


_wcslen = getattr(ctypes.CDLL(_lib.path) if sys.platform != "win32" else None, "hcsemu_wcslen", None)
if _wcslen is not None:
    _wcslen.argtypes = [ctypes.c_void_p]
    _wcslen.restype = ctypes.c_size_t


def _read_wstr(ptr: int) -> str:
    if sys.platform == "win32":
        return ctypes.wstring_at(ptr)
    if _wcslen is not None:
        n = _wcslen(ptr)
    else:  # another emulator without the helper: measure one unit at a time
        n = 0
        while ctypes.c_uint16.from_address(ptr + 2 * n).value:
            n += 1
    return ctypes.string_at(ptr, 2 * n).decode("utf-16-le", "surrogatepass")


def _take_doc(p: ctypes.c_void_p) -> str | None:
    """Copies a result document and frees it with LocalFree."""
    if not p.value:
        return None
    try:
        return _read_wstr(p.value)
    finally:
        _lib.LocalFree(p.value)


def _check(hr: int, call: str, doc: str | None = None) -> None:
    if hr < 0:
        raise errors.make_error(hr, doc, call=call)


def _check_initiated(hr: int, call: str) -> None:
    """An initiating call succeeded: any success code (S_OK, S_FALSE...), or "pending"."""
    if hr < 0 and (hr & 0xFFFFFFFF) not in _PENDING:
        raise errors.make_error(hr, None, call=call)


# ------------------------------------------------------------------------------ callbacks

_queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
_count_lock = threading.Lock()


def _wait_batch() -> Iterable[Item]:
    first = _queue.get()  # blocks without the GIL
    batch = [first]
    try:
        while True:
            batch.append(_queue.get_nowait())
    except queue.Empty:
        pass
    return batch


_dispatcher = new_dispatcher(_wait_batch)


# These two thunks are what the library calls, on its own threads. They only copy and
# enqueue (the dispatcher thread runs the user's code), must never raise, and live at module
# level for the whole process so ctypes never frees a thunk the library may still call.
@OPERATION_COMPLETION  # type: ignore[untyped-decorator]
def _on_operation(operation: int | None, context: int | None) -> None:
    if _dispatcher.finalizing:
        return
    _queue.put((context or 0, KIND_OPERATION, 0, None, operation or 0))
    with _count_lock:
        _dispatcher.enqueued += 1


@EVENT_CALLBACK  # type: ignore[untyped-decorator]
def _on_event(event: ctypes._Pointer[HCS_EVENT], context: int | None) -> None:
    if _dispatcher.finalizing:
        return
    ev = event.contents
    data = _read_wstr(ev.EventData) if ev.EventData else None
    _queue.put((context or 0, KIND_EVENT, ev.Type & 0xFFFFFFFF, data, ev.Operation or 0))
    with _count_lock:
        _dispatcher.enqueued += 1


# handle -> the Hcs*Callback function its event callback was registered with (for the exit hook)
_event_setters: dict[int, Callable[..., int]] = {}


def _take_callbacks_back() -> None:
    """At exit: a ctypes thunk takes the GIL, and one that a library thread calls after the
    interpreter has finalized crashes the process (PyGILState_Ensure without an interpreter,
    cpython#124619). So before finalization starts, every callback the library could still call
    is unregistered; only a notification the library had already begun to deliver can still
    arrive, and it finds the interpreter alive. (The compiled backend needs none of this: its
    C trampolines never take the GIL.)"""
    _dispatcher.finalizing = True
    with _dispatcher._lock:
        entries = list(_dispatcher._entries.values())
    for entry in entries:
        if entry.kind == KIND_OPERATION:
            _lib.HcsSetOperationCallback(entry.handle, None, _NO_COMPLETION)
        elif (setter := _event_setters.get(entry.handle)) is not None:
            setter(entry.handle, 0, None, _NO_EVENT_CALLBACK)  # waits for callbacks in flight


atexit.register(_take_callbacks_back)


def flush_callbacks(timeout: float = 5.0) -> bool:
    """Waits until every callback queued so far has been delivered."""
    return _dispatcher.flush(timeout)


# ------------------------------------------------------------------------------ operations


def hcs_create_operation(context: int = 0, callback: OperationCallback | None = None) -> int:
    """HcsCreateOperation. ``callback(operation, context)`` runs on pyhcs' dispatcher thread."""
    if callback is None:
        op = _lib.HcsCreateOperation(context or None, _NO_COMPLETION)
        if not op:
            raise errors.make_error(0x8007000E, call="HcsCreateOperation")
        return int(op)
    # The key goes to C; the user's context stays in the registry. The key must be known
    # before C can call back, so register first with a placeholder handle.
    op = _lib.HcsCreateOperation(None, _NO_COMPLETION)
    if not op:
        raise errors.make_error(0x8007000E, call="HcsCreateOperation")
    try:
        hcs_set_operation_callback(int(op), context, callback)
    except BaseException:
        _lib.HcsCloseOperation(op)  # the caller never sees this handle: nobody else could close it
        raise
    return int(op)


def hcs_close_operation(operation: int) -> None:
    _lib.HcsCloseOperation(operation)
    _dispatcher.forget(operation, KIND_OPERATION)


def hcs_get_operation_context(operation: int) -> int:
    entry = _dispatcher.entry(operation, KIND_OPERATION)
    if entry is not None:
        return entry.context
    return int(_lib.HcsGetOperationContext(operation) or 0)


def hcs_set_operation_context(operation: int, context: int) -> None:
    entry = _dispatcher.entry(operation, KIND_OPERATION)
    if entry is not None:
        entry.context = context
        return
    _check(_lib.HcsSetOperationContext(operation, context or None), "HcsSetOperationContext")


def hcs_set_operation_callback(operation: int, context: int, callback: OperationCallback | None) -> None:
    if callback is None:
        _check(_lib.HcsSetOperationCallback(operation, context or None, _NO_COMPLETION), "HcsSetOperationCallback")
        _dispatcher.forget(operation, KIND_OPERATION)
        return
    old = _dispatcher.entry(operation, KIND_OPERATION)
    key = _dispatcher.register(operation, KIND_OPERATION, callback, context)
    hr = _lib.HcsSetOperationCallback(operation, key, _on_operation)
    if hr < 0:
        _dispatcher.forget(operation, KIND_OPERATION)
        if old is not None:  # put the previous registration back
            _dispatcher.register(operation, KIND_OPERATION, old.callback, old.context)
        _check(hr, "HcsSetOperationCallback")


def hcs_get_compute_system_from_operation(operation: int) -> int:
    return int(_lib.HcsGetComputeSystemFromOperation(operation) or 0)


def hcs_get_process_from_operation(operation: int) -> int:
    return int(_lib.HcsGetProcessFromOperation(operation) or 0)


def hcs_get_operation_type(operation: int) -> int:
    return int(_lib.HcsGetOperationType(operation))


def hcs_get_operation_id(operation: int) -> int:
    return int(_lib.HcsGetOperationId(operation))


def _process_info(pi: HCS_PROCESS_INFORMATION) -> HcsProcessInformation:
    return HcsProcessInformation(
        pi.ProcessId,
        pi.StdInput if pi.StdInput else None,
        pi.StdOutput if pi.StdOutput else None,
        pi.StdError if pi.StdError else None,
    )


def hcs_get_operation_result(operation: int) -> str | None:
    doc = ctypes.c_void_p()
    hr = _lib.HcsGetOperationResult(operation, ctypes.byref(doc))
    text = _take_doc(doc)
    _check(hr, "HcsGetOperationResult", text)
    return text


def hcs_get_operation_result_and_process_info(operation: int) -> tuple[HcsProcessInformation, str | None]:
    doc = ctypes.c_void_p()
    pi = HCS_PROCESS_INFORMATION()
    hr = _lib.HcsGetOperationResultAndProcessInfo(operation, ctypes.byref(pi), ctypes.byref(doc))
    text = _take_doc(doc)
    _check(hr, "HcsGetOperationResultAndProcessInfo", text)
    return _process_info(pi), text


def _operation_pending(operation: int) -> bool:
    """Whether the operation is still running (HcsGetOperationResult says "pending")."""
    if "HcsGetOperationResult" not in _lib.present:
        return True
    doc = ctypes.c_void_p()
    hr = _lib.HcsGetOperationResult(operation, ctypes.byref(doc))
    _take_doc(doc)
    return (hr & 0xFFFFFFFF) in _PENDING


def _sliced(
    timeout_ms: int,
    call: str,
    attempt: Callable[[int], tuple[int, str | None]],
    operation: int | None = None,
) -> str | None:
    """Runs attempt(slice_ms) until it stops timing out or the caller's timeout is spent.

    ``operation`` is given for operation waits: a timeout code there may also be the
    operation's own result, which no further slice would change."""
    if timeout_ms < 0 or timeout_ms > INFINITE:
        raise ValueError("timeout_ms must be between 0 and INFINITE (0xFFFFFFFF)")
    deadline = None if timeout_ms == INFINITE else time.monotonic() + timeout_ms / 1000.0
    while True:
        if deadline is None:
            slice_ms = _WAIT_SLICE_MS
        else:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            slice_ms = min(_WAIT_SLICE_MS, left)
        hr, text = attempt(slice_ms)
        if (hr & 0xFFFFFFFF) in _TIMEOUTS:
            if operation is not None and not _operation_pending(operation):
                hr, text = attempt(0)  # complete after all: its final result
            elif _blocking.abandoned():
                raise _blocking.Abandoned(call)  # on a helper thread, for a caller that gave up
            elif deadline is None or time.monotonic() < deadline:
                continue  # the next slice; signals were handled between the two calls
        _check(hr, call, text)
        return text


def hcs_wait_for_operation_result(operation: int, timeout_ms: int = INFINITE) -> str | None:
    def attempt(ms: int) -> tuple[int, str | None]:
        doc = ctypes.c_void_p()
        hr = _lib.HcsWaitForOperationResult(operation, ms, ctypes.byref(doc))
        return hr, _take_doc(doc)

    return _sliced(timeout_ms, "HcsWaitForOperationResult", attempt, operation)


def hcs_wait_for_operation_result_and_process_info(
    operation: int, timeout_ms: int = INFINITE
) -> tuple[HcsProcessInformation, str | None]:
    pi = HCS_PROCESS_INFORMATION()

    def attempt(ms: int) -> tuple[int, str | None]:
        doc = ctypes.c_void_p()
        hr = _lib.HcsWaitForOperationResultAndProcessInfo(operation, ms, ctypes.byref(pi), ctypes.byref(doc))
        return hr, _take_doc(doc)

    text = _sliced(timeout_ms, "HcsWaitForOperationResultAndProcessInfo", attempt, operation)
    return _process_info(pi), text


def hcs_cancel_operation(operation: int) -> None:
    _check(_lib.HcsCancelOperation(operation), "HcsCancelOperation")


# ------------------------------------------------------------------------------ compute systems


def hcs_enumerate_compute_systems(query: str | None, operation: int) -> None:
    _check_initiated(_lib.HcsEnumerateComputeSystems(_w(query), operation), "HcsEnumerateComputeSystems")


def hcs_create_compute_system(id: str, configuration: str, operation: int, security_descriptor: None = None) -> int:
    """HcsCreateComputeSystem. The handle comes back at once, even though creation completes
    through ``operation``; if that later fails the handle must still be closed."""
    if security_descriptor is not None:
        raise ValueError("security_descriptor is reserved and must be None")
    out = ctypes.c_void_p()
    hr = _lib.HcsCreateComputeSystem(_w(id), _w(configuration), operation, None, ctypes.byref(out))
    _check_initiated(hr, "HcsCreateComputeSystem")
    return int(out.value or 0)


def hcs_open_compute_system(id: str, requested_access: int = GENERIC_ALL) -> int:
    out = ctypes.c_void_p()
    _check(_lib.HcsOpenComputeSystem(_w(id), requested_access, ctypes.byref(out)), "HcsOpenComputeSystem")
    return int(out.value or 0)


def hcs_close_compute_system(compute_system: int) -> None:
    # Waits (without the GIL) for native callbacks in flight; then no event of this handle
    # is delivered any more.
    _lib.HcsCloseComputeSystem(compute_system)
    _dispatcher.forget(compute_system, KIND_EVENT)
    _event_setters.pop(compute_system, None)


def hcs_start_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    _check_initiated(_lib.HcsStartComputeSystem(compute_system, operation, _w(options)), "HcsStartComputeSystem")


def hcs_shut_down_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    _check_initiated(
        _lib.HcsShutDownComputeSystem(compute_system, operation, _w(options)), "HcsShutDownComputeSystem"
    )


def hcs_terminate_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    _check_initiated(
        _lib.HcsTerminateComputeSystem(compute_system, operation, _w(options)), "HcsTerminateComputeSystem"
    )


def hcs_crash_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    _check_initiated(_lib.HcsCrashComputeSystem(compute_system, operation, _w(options)), "HcsCrashComputeSystem")


def hcs_pause_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    _check_initiated(_lib.HcsPauseComputeSystem(compute_system, operation, _w(options)), "HcsPauseComputeSystem")


def hcs_resume_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    _check_initiated(_lib.HcsResumeComputeSystem(compute_system, operation, _w(options)), "HcsResumeComputeSystem")


def hcs_save_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    _check_initiated(_lib.HcsSaveComputeSystem(compute_system, operation, _w(options)), "HcsSaveComputeSystem")


def hcs_get_compute_system_properties(compute_system: int, operation: int, property_query: str | None = None) -> None:
    _check_initiated(
        _lib.HcsGetComputeSystemProperties(compute_system, operation, _w(property_query)),
        "HcsGetComputeSystemProperties",
    )


def hcs_modify_compute_system(compute_system: int, operation: int, configuration: str, identity: int = 0) -> None:
    _check_initiated(
        _lib.HcsModifyComputeSystem(compute_system, operation, _w(configuration), identity or None),
        "HcsModifyComputeSystem",
    )


def _set_event_callback(
    fn: Callable[..., int], call: str, handle: int, callback_options: int, context: int, callback: EventCallback | None
) -> None:
    if callback is None:
        _check(fn(handle, callback_options, None, _NO_EVENT_CALLBACK), call)
        # What the library delivered before the callback was cleared reaches it first (see _core)
        flush_callbacks()
        _dispatcher.forget(handle, KIND_EVENT)
        _event_setters.pop(handle, None)
        return
    if _dispatcher.entry(handle, KIND_EVENT) is not None:
        # One registration per handle: let the library say so, without touching ours.
        _check(fn(handle, callback_options, 0, _on_event), call)
    key = _dispatcher.register(handle, KIND_EVENT, callback, context)
    _event_setters[handle] = fn
    hr = fn(handle, callback_options, key, _on_event)
    if hr < 0:
        _dispatcher.forget(handle, KIND_EVENT)
        _event_setters.pop(handle, None)
        _check(hr, call)


def hcs_set_compute_system_callback(
    compute_system: int, callback_options: int, context: int, callback: EventCallback | None
) -> None:
    """HcsSetComputeSystemCallback. ``callback(event, context)`` runs on the dispatcher thread;
    ``None`` unregisters."""
    _set_event_callback(
        _lib.HcsSetComputeSystemCallback, "HcsSetComputeSystemCallback", compute_system, callback_options, context,
        callback,
    )


def hcs_wait_for_compute_system_exit(compute_system: int, timeout_ms: int = INFINITE) -> str | None:
    def attempt(ms: int) -> tuple[int, str | None]:
        doc = ctypes.c_void_p()
        hr = _lib.HcsWaitForComputeSystemExit(compute_system, ms, ctypes.byref(doc))
        return hr, _take_doc(doc)

    return _sliced(timeout_ms, "HcsWaitForComputeSystemExit", attempt)


# ------------------------------------------------------------------------------ processes


def hcs_create_process(compute_system: int, process_parameters: str, operation: int, security_descriptor: None = None) -> int:
    if security_descriptor is not None:
        raise ValueError("security_descriptor is reserved and must be None")
    out = ctypes.c_void_p()
    hr = _lib.HcsCreateProcess(compute_system, _w(process_parameters), operation, None, ctypes.byref(out))
    _check_initiated(hr, "HcsCreateProcess")
    return int(out.value or 0)


def hcs_open_process(compute_system: int, process_id: int, requested_access: int = GENERIC_ALL) -> int:
    out = ctypes.c_void_p()
    _check(_lib.HcsOpenProcess(compute_system, process_id, requested_access, ctypes.byref(out)), "HcsOpenProcess")
    return int(out.value or 0)


def hcs_close_process(process: int) -> None:
    _lib.HcsCloseProcess(process)
    _dispatcher.forget(process, KIND_EVENT)
    _event_setters.pop(process, None)


def hcs_terminate_process(process: int, operation: int, options: str | None = None) -> None:
    _check_initiated(_lib.HcsTerminateProcess(process, operation, _w(options)), "HcsTerminateProcess")


def hcs_signal_process(process: int, operation: int, options: str | None = None) -> None:
    _check_initiated(_lib.HcsSignalProcess(process, operation, _w(options)), "HcsSignalProcess")


def hcs_get_process_info(process: int, operation: int) -> None:
    _check_initiated(_lib.HcsGetProcessInfo(process, operation), "HcsGetProcessInfo")


def hcs_get_process_properties(process: int, operation: int, property_query: str | None = None) -> None:
    _check_initiated(
        _lib.HcsGetProcessProperties(process, operation, _w(property_query)), "HcsGetProcessProperties"
    )


def hcs_modify_process(process: int, operation: int, settings: str) -> None:
    _check_initiated(_lib.HcsModifyProcess(process, operation, _w(settings)), "HcsModifyProcess")


def hcs_set_process_callback(process: int, callback_options: int, context: int, callback: EventCallback | None) -> None:
    _set_event_callback(
        _lib.HcsSetProcessCallback, "HcsSetProcessCallback", process, callback_options, context, callback
    )


def hcs_wait_for_process_exit(process: int, timeout_ms: int = INFINITE) -> str | None:
    def attempt(ms: int) -> tuple[int, str | None]:
        doc = ctypes.c_void_p()
        hr = _lib.HcsWaitForProcessExit(process, ms, ctypes.byref(doc))
        return hr, _take_doc(doc)

    return _sliced(timeout_ms, "HcsWaitForProcessExit", attempt)


def close_handle(handle: int) -> None:
    """Closes a std handle from HCS_PROCESS_INFORMATION (a file descriptor on the emulator)."""
    if sys.platform == "win32":  # where the library has CloseHandle (kernel32's; see _lib.Library)
        if not _lib.CloseHandle(handle):
            raise errors.make_error(errors.HRESULT_FROM_WIN32(ctypes.get_last_error()), call="CloseHandle")
        return
    import os

    os.close(handle)


# ------------------------------------------------------------------------------ host service


def hcs_get_service_properties(property_query: str | None = None) -> str:
    doc = ctypes.c_void_p()
    hr = _lib.HcsGetServiceProperties(_w(property_query), ctypes.byref(doc))
    text = _take_doc(doc)
    _check(hr, "HcsGetServiceProperties", text)
    return text or ""


def hcs_modify_service_settings(settings: str) -> str | None:
    doc = ctypes.c_void_p()
    hr = _lib.HcsModifyServiceSettings(_w(settings), ctypes.byref(doc))
    text = _take_doc(doc)
    _check(hr, "HcsModifyServiceSettings", text)
    return text


def hcs_submit_wer_report(settings: str) -> None:
    _check(_lib.HcsSubmitWerReport(_w(settings)), "HcsSubmitWerReport")


# ------------------------------------------------------------------------------ VM utilities


def hcs_create_empty_guest_state_file(guest_state_file_path: str) -> None:
    _check(_lib.HcsCreateEmptyGuestStateFile(_w(guest_state_file_path)), "HcsCreateEmptyGuestStateFile")


def hcs_create_empty_runtime_state_file(runtime_state_file_path: str) -> None:
    _check(_lib.HcsCreateEmptyRuntimeStateFile(_w(runtime_state_file_path)), "HcsCreateEmptyRuntimeStateFile")


def hcs_grant_vm_access(vm_id: str, file_path: str) -> None:
    _check(_lib.HcsGrantVmAccess(_w(vm_id), _w(file_path)), "HcsGrantVmAccess")


def hcs_revoke_vm_access(vm_id: str, file_path: str) -> None:
    _check(_lib.HcsRevokeVmAccess(_w(vm_id), _w(file_path)), "HcsRevokeVmAccess")


def hcs_grant_vm_group_access(file_path: str) -> None:
    _check(_lib.HcsGrantVmGroupAccess(_w(file_path)), "HcsGrantVmGroupAccess")


def hcs_revoke_vm_group_access(file_path: str) -> None:
    _check(_lib.HcsRevokeVmGroupAccess(_w(file_path)), "HcsRevokeVmGroupAccess")


def hcs_get_processor_compatibility_from_saved_state(runtime_file_name: str) -> str:
    doc = ctypes.c_void_p()
    hr = _lib.HcsGetProcessorCompatibilityFromSavedState(_w(runtime_file_name), ctypes.byref(doc))
    text = _take_doc(doc)
    _check(hr, "HcsGetProcessorCompatibilityFromSavedState", text)
    return text or ""


# ------------------------------------------------------------------------------ storage


def hcs_import_layer(layer_path: str, source_folder_path: str, layer_data: str) -> None:
    _check(_lib.HcsImportLayer(_w(layer_path), _w(source_folder_path), _w(layer_data)), "HcsImportLayer")


def hcs_export_layer(layer_path: str, export_folder_path: str, layer_data: str, options: str | None = None) -> None:
    _check(
        _lib.HcsExportLayer(_w(layer_path), _w(export_folder_path), _w(layer_data), _w(options)), "HcsExportLayer"
    )


def hcs_export_legacy_writable_layer(
    writable_layer_mount_path: str, writable_layer_folder_path: str, export_folder_path: str, layer_data: str
) -> None:
    _check(
        _lib.HcsExportLegacyWritableLayer(
            _w(writable_layer_mount_path), _w(writable_layer_folder_path), _w(export_folder_path), _w(layer_data)
        ),
        "HcsExportLegacyWritableLayer",
    )


def hcs_destroy_layer(layer_path: str) -> None:
    _check(_lib.HcsDestroyLayer(_w(layer_path)), "HcsDestroyLayer")


def hcs_setup_base_os_layer(layer_path: str, vhd_handle: int, options: str | None = None) -> None:
    _check(_lib.HcsSetupBaseOSLayer(_w(layer_path), vhd_handle or None, _w(options)), "HcsSetupBaseOSLayer")


def hcs_setup_base_os_volume(layer_path: str, volume_path: str, options: str | None = None) -> None:
    _check(_lib.HcsSetupBaseOSVolume(_w(layer_path), _w(volume_path), _w(options)), "HcsSetupBaseOSVolume")


def hcs_initialize_writable_layer(writable_layer_path: str, layer_data: str, options: str | None = None) -> None:
    _check(
        _lib.HcsInitializeWritableLayer(_w(writable_layer_path), _w(layer_data), _w(options)),
        "HcsInitializeWritableLayer",
    )


def hcs_initialize_legacy_writable_layer(
    writable_layer_mount_path: str, writable_layer_folder_path: str, layer_data: str, options: str | None = None
) -> None:
    _check(
        _lib.HcsInitializeLegacyWritableLayer(
            _w(writable_layer_mount_path), _w(writable_layer_folder_path), _w(layer_data), _w(options)
        ),
        "HcsInitializeLegacyWritableLayer",
    )


def hcs_attach_layer_storage_filter(layer_path: str, layer_data: str) -> None:
    _check(_lib.HcsAttachLayerStorageFilter(_w(layer_path), _w(layer_data)), "HcsAttachLayerStorageFilter")


def hcs_detach_layer_storage_filter(layer_path: str) -> None:
    _check(_lib.HcsDetachLayerStorageFilter(_w(layer_path)), "HcsDetachLayerStorageFilter")


def hcs_format_writable_layer_vhd(vhd_handle: int) -> None:
    _check(_lib.HcsFormatWritableLayerVhd(vhd_handle), "HcsFormatWritableLayerVhd")


def hcs_get_layer_vhd_mount_path(vhd_handle: int) -> str:
    doc = ctypes.c_void_p()
    hr = _lib.HcsGetLayerVhdMountPath(vhd_handle, ctypes.byref(doc))
    text = _take_doc(doc)
    _check(hr, "HcsGetLayerVhdMountPath", text)
    return text or ""


# ------------------------------------------------------------------------------ about the library


# ------------------------------------------------------------------------------ fused round trips

#: The initiating calls run_call knows, by index (the same table as pyhcs._native.cython._core's).
FUSED_CALLS = (
    "HcsStartComputeSystem", "HcsShutDownComputeSystem", "HcsTerminateComputeSystem",
    "HcsCrashComputeSystem", "HcsPauseComputeSystem", "HcsResumeComputeSystem",
    "HcsSaveComputeSystem", "HcsGetComputeSystemProperties",
    "HcsTerminateProcess", "HcsSignalProcess", "HcsGetProcessProperties", "HcsModifyProcess",
)  # fmt: skip


def run_call(index: int, subject: int, document: str | None, wait_ms: int) -> tuple[int, str | None]:
    """The backend's private ``_run_call`` (the package exports it under that name, like
    pyhcs._native.cython._core._run_call; see there): create an operation, make the
    initiating call, wait up to one slice and close it; ``(0, document)`` on success, else
    ``(operation, None)`` with the operation open for the caller to finish."""
    if type(index) is not int or not 0 <= index < len(FUSED_CALLS):
        raise ValueError(f"no fused call {index!r}")
    _validate.handle(subject, "subject")
    _validate.string(document, "document")
    _validate.dword(wait_ms, "wait_ms")
    ms = min(wait_ms, _WAIT_SLICE_MS)
    name = FUSED_CALLS[index]
    fn = getattr(_lib, name)
    op = _lib.HcsCreateOperation(None, _NO_COMPLETION)
    if not op:
        raise errors.make_error(0x8007000E, call="HcsCreateOperation")
    hr = fn(subject, op, _w(document))
    if hr < 0 and (hr & 0xFFFFFFFF) not in _PENDING:
        _lib.HcsCloseOperation(op)
        raise errors.make_error(hr, None, call=name)
    doc = ctypes.c_void_p()
    hr = _lib.HcsWaitForOperationResult(op, 0, ctypes.byref(doc))
    if ms and (hr & 0xFFFFFFFF) in _TIMEOUTS:
        _take_doc(doc)
        doc = ctypes.c_void_p()
        try:
            hr = _lib.HcsWaitForOperationResult(op, ms, ctypes.byref(doc))
        except BaseException:  # a signal handler's exception, while the operation is still ours
            _lib.HcsCloseOperation(op)
            raise
    text = _take_doc(doc)
    if hr < 0:
        return int(op), None
    _lib.HcsCloseOperation(op)
    return 0, text


def library_path() -> str:
    """The computecore library this backend loaded."""
    return _lib.path


def has_function(name: str) -> bool:
    """Whether the loaded library exports ``name`` (e.g. "HcsSetupBaseOSVolume")."""
    return name in _lib.present


def _finish_module(namespace: dict[str, Any]) -> None:
    # Every argument is checked as the compiled backend checks it (pyhcs/_backend.pyi), and
    # Ctrl-C must be able to interrupt the synchronous calls on the main thread
    # (pyhcs._native._blocking).
    for name in PUBLIC_API:
        namespace[name] = _validate.validated(namespace[name])
    _blocking.wrap_synchronous(namespace)


_finish_module(globals())
