"""Loading the library and declaring every prototype for ctypes.

Strings cross as UTF-16LE with a terminating NUL, whatever the platform: ctypes' c_wchar_p
is 32-bit on Linux, so it is never used. PCWSTR arguments are passed as bytes (their buffer
ends in a NUL byte, which with the explicit one makes the UTF-16 terminator); PWSTR results
come back as raw pointers, are copied, then freed with the library's LocalFree.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from typing import Any

from .. import errors
from .._library import library_paths

c_hr = ctypes.c_int32
c_dword = ctypes.c_uint32
c_handle = ctypes.c_void_p
c_pcwstr = ctypes.c_char_p
c_pwstr_p = ctypes.POINTER(ctypes.c_void_p)

# HCS_OPERATION_COMPLETION and HCS_EVENT_CALLBACK: WINAPI is the only convention on x64.
_FUNCTYPE = getattr(ctypes, "WINFUNCTYPE", ctypes.CFUNCTYPE)


class HCS_PROCESS_INFORMATION(ctypes.Structure):
    _fields_ = [
        ("ProcessId", ctypes.c_uint32),
        ("Reserved", ctypes.c_uint32),
        ("StdInput", ctypes.c_void_p),
        ("StdOutput", ctypes.c_void_p),
        ("StdError", ctypes.c_void_p),
    ]


class HCS_EVENT(ctypes.Structure):
    _fields_ = [("Type", ctypes.c_int32), ("EventData", ctypes.c_void_p), ("Operation", ctypes.c_void_p)]


OPERATION_COMPLETION = _FUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
EVENT_CALLBACK = _FUNCTYPE(None, ctypes.POINTER(HCS_EVENT), ctypes.c_void_p)

P = c_pcwstr
H = c_handle
# name -> (restype, argtypes); every function of HCS_COMPUTECORE_FUNCTIONS and
# HCS_COMPUTESTORAGE_FUNCTIONS in src/hcsemu/hcs.h (a test compares the two lists).
COMPUTECORE: dict[str, tuple[Any, list[Any]]] = {
    "HcsEnumerateComputeSystems": (c_hr, [P, H]),
    "HcsCreateOperation": (H, [ctypes.c_void_p, OPERATION_COMPLETION]),
    "HcsCloseOperation": (None, [H]),
    "HcsGetOperationContext": (ctypes.c_void_p, [H]),
    "HcsSetOperationContext": (c_hr, [H, ctypes.c_void_p]),
    "HcsGetComputeSystemFromOperation": (H, [H]),
    "HcsGetProcessFromOperation": (H, [H]),
    "HcsGetOperationType": (ctypes.c_int32, [H]),
    "HcsGetOperationId": (ctypes.c_uint64, [H]),
    "HcsGetOperationResult": (c_hr, [H, c_pwstr_p]),
    "HcsGetOperationResultAndProcessInfo": (c_hr, [H, ctypes.POINTER(HCS_PROCESS_INFORMATION), c_pwstr_p]),
    "HcsGetProcessorCompatibilityFromSavedState": (c_hr, [P, c_pwstr_p]),
    "HcsWaitForOperationResult": (c_hr, [H, c_dword, c_pwstr_p]),
    "HcsWaitForOperationResultAndProcessInfo": (
        c_hr,
        [H, c_dword, ctypes.POINTER(HCS_PROCESS_INFORMATION), c_pwstr_p],
    ),
    "HcsSetOperationCallback": (c_hr, [H, ctypes.c_void_p, OPERATION_COMPLETION]),
    "HcsCancelOperation": (c_hr, [H]),
    "HcsCreateComputeSystem": (c_hr, [P, P, H, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]),
    "HcsOpenComputeSystem": (c_hr, [P, c_dword, ctypes.POINTER(ctypes.c_void_p)]),
    "HcsCloseComputeSystem": (None, [H]),
    "HcsStartComputeSystem": (c_hr, [H, H, P]),
    "HcsShutDownComputeSystem": (c_hr, [H, H, P]),
    "HcsTerminateComputeSystem": (c_hr, [H, H, P]),
    "HcsCrashComputeSystem": (c_hr, [H, H, P]),
    "HcsPauseComputeSystem": (c_hr, [H, H, P]),
    "HcsResumeComputeSystem": (c_hr, [H, H, P]),
    "HcsSaveComputeSystem": (c_hr, [H, H, P]),
    "HcsGetComputeSystemProperties": (c_hr, [H, H, P]),
    "HcsModifyComputeSystem": (c_hr, [H, H, P, H]),
    "HcsWaitForComputeSystemExit": (c_hr, [H, c_dword, c_pwstr_p]),
    "HcsSetComputeSystemCallback": (c_hr, [H, ctypes.c_int32, ctypes.c_void_p, EVENT_CALLBACK]),
    "HcsCreateProcess": (c_hr, [H, P, H, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]),
    "HcsOpenProcess": (c_hr, [H, c_dword, c_dword, ctypes.POINTER(ctypes.c_void_p)]),
    "HcsCloseProcess": (None, [H]),
    "HcsTerminateProcess": (c_hr, [H, H, P]),
    "HcsSignalProcess": (c_hr, [H, H, P]),
    "HcsGetProcessInfo": (c_hr, [H, H]),
    "HcsGetProcessProperties": (c_hr, [H, H, P]),
    "HcsModifyProcess": (c_hr, [H, H, P]),
    "HcsSetProcessCallback": (c_hr, [H, ctypes.c_int32, ctypes.c_void_p, EVENT_CALLBACK]),
    "HcsWaitForProcessExit": (c_hr, [H, c_dword, c_pwstr_p]),
    "HcsGetServiceProperties": (c_hr, [P, c_pwstr_p]),
    "HcsModifyServiceSettings": (c_hr, [P, c_pwstr_p]),
    "HcsSubmitWerReport": (c_hr, [P]),
    "HcsCreateEmptyGuestStateFile": (c_hr, [P]),
    "HcsCreateEmptyRuntimeStateFile": (c_hr, [P]),
    "HcsGrantVmAccess": (c_hr, [P, P]),
    "HcsRevokeVmAccess": (c_hr, [P, P]),
    "HcsGrantVmGroupAccess": (c_hr, [P]),
    "HcsRevokeVmGroupAccess": (c_hr, [P]),
}
COMPUTESTORAGE: dict[str, tuple[Any, list[Any]]] = {
    "HcsImportLayer": (c_hr, [P, P, P]),
    "HcsExportLayer": (c_hr, [P, P, P, P]),
    "HcsExportLegacyWritableLayer": (c_hr, [P, P, P, P]),
    "HcsDestroyLayer": (c_hr, [P]),
    "HcsSetupBaseOSLayer": (c_hr, [P, H, P]),
    "HcsInitializeWritableLayer": (c_hr, [P, P, P]),
    "HcsInitializeLegacyWritableLayer": (c_hr, [P, P, P, P]),
    "HcsAttachLayerStorageFilter": (c_hr, [P, P]),
    "HcsDetachLayerStorageFilter": (c_hr, [P]),
    "HcsFormatWritableLayerVhd": (c_hr, [H]),
    "HcsGetLayerVhdMountPath": (c_hr, [H, c_pwstr_p]),
    "HcsSetupBaseOSVolume": (c_hr, [P, P, P]),
}


def _missing(name: str, why: str | None = None) -> Callable[..., int]:
    message = f"{name} is unavailable: computestorage could not be loaded ({why})" if why else None

    def call(*args: object) -> int:
        raise errors.make_error(
            errors.HRESULT_FROM_WIN32(127),  # ERROR_PROC_NOT_FOUND
            message=message,
            call=name,
        )

    call.__name__ = name
    return call


class Library:
    """The loaded library: attributes are the C functions (a missing export raises
    ProcedureNotFoundError when called, so an older Windows build loses one function, not
    the import), plus LocalFree and CloseHandle. A computestorage that cannot be loaded costs
    only its own functions: they raise naming it (``storage_error`` says why)."""

    def __init__(self) -> None:
        core_path, storage_path = library_paths()
        self.path = core_path
        self.storage_path = storage_path
        self.storage_error: str | None = None
        storage: Any
        if sys.platform == "win32":
            # LOAD_LIBRARY_SEARCH_SYSTEM32 (0x800) keeps dependency resolution in System32.
            core = ctypes.WinDLL(core_path, winmode=0x800)
            try:
                storage = ctypes.WinDLL(storage_path, winmode=0x800)
            except OSError as exc:
                storage, self.storage_error = None, f"loading {storage_path} failed: {exc}"
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            self.LocalFree = kernel32.LocalFree
            self.CloseHandle = kernel32.CloseHandle
            self.CloseHandle.argtypes = [ctypes.c_void_p]
            self.CloseHandle.restype = ctypes.c_int
        else:
            core = ctypes.CDLL(core_path)
            try:
                storage = core if storage_path == core_path else ctypes.CDLL(storage_path)
            except OSError as exc:
                storage, self.storage_error = None, f"loading {storage_path} failed: {exc}"
            self.LocalFree = core.LocalFree
            self.CloseHandle = None
        self.LocalFree.argtypes = [ctypes.c_void_p]
        self.LocalFree.restype = ctypes.c_void_p
        self.present: set[str] = set()
        for table, dll in ((COMPUTECORE, core), (COMPUTESTORAGE, storage)):
            for name, (restype, argtypes) in table.items():
                if dll is None:
                    setattr(self, name, _missing(name, self.storage_error))
                    continue
                try:
                    fn = getattr(dll, name)
                except AttributeError:
                    setattr(self, name, _missing(name))
                    continue
                fn.restype = restype
                fn.argtypes = argtypes
                setattr(self, name, fn)
                self.present.add(name)

    def __getattr__(self, name: str) -> Any:  # for mypy: the functions are set dynamically
        raise AttributeError(name)
