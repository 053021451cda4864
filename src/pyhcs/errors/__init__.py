"""HRESULT handling and the pyhcs exception hierarchy.

Pure Python, shared by both backends. Every failure the Host Compute
Service reports becomes an :class:`HcsError`. The class is picked from the HRESULT through a
registry, so callers can catch exactly what they mean::

    try:
        system.shutdown()
    except errors.AlreadyStoppedError:
        pass

Hierarchy
---------
``HcsError(OSError)``
    Base class. ``.hresult``, ``.name``, ``.message``, ``.suggestion``, ``.result_document``,
    ``.result``, ``.error_events``, ``.call``, ``.system_id``, ``.process_id``, ``.operation``.
Families (intermediate bases, never registered to a code)
    ``AlreadyStoppedError``: HCS_E_SYSTEM_ALREADY_STOPPED, HCS_E_PROCESS_ALREADY_STOPPED.
    ``NotFoundError``: HCS_E_SYSTEM_NOT_FOUND, ERROR_NOT_FOUND.
    ``ServiceError``: HCS_E_SERVICE_DISCONNECT, HCS_E_SERVICE_NOT_AVAILABLE,
    RPC_S_SERVER_UNAVAILABLE.
    ``CancelledError``: ERROR_CANCELLED, ERROR_OPERATION_ABORTED,
    HCS_E_OPERATION_ALREADY_CANCELLED.
    This ``CancelledError`` is *not* :class:`asyncio.CancelledError` and does not inherit from it:
    an HCS cancellation is an ordinary failure of one call, not a request to unwind a task.
One class per code (generated in :mod:`pyhcs.errors._table` from ``tools/errors.toml``)
    HCS_E_* codes: the symbol without ``HCS_E_`` in CamelCase plus ``Error`` (not doubled), for
    example HCS_E_INVALID_STATE -> ``InvalidStateError``, HCS_E_PROTOCOL_ERROR ->
    ``ProtocolError``. Exceptions to the rule: HCS_E_HYPERV_NOT_INSTALLED ->
    ``HyperVNotInstalledError``; HCS_E_SERVICE_DISCONNECT -> ``ServiceDisconnectedError`` (alias
    ``ServiceDisconnectError``).

    Generic and Win32 codes (a ``Win32`` prefix marks a name that would otherwise clash with a
    builtin, a family or an HCS class):

    ========================== ============ ===============================
    Symbol                     HRESULT      Class
    ========================== ============ ===============================
    E_NOTIMPL                  0x80004001   ``UnimplementedError``
    E_POINTER                  0x80004003   ``InvalidPointerError``
    E_FAIL                     0x80004005   ``UnspecifiedError``
    E_UNEXPECTED               0x8000FFFF   ``UnexpectedFailureError``
    E_INVALIDARG               0x80070057   ``InvalidArgumentError``
    E_HANDLE                   0x80070006   ``InvalidHandleError``
    E_OUTOFMEMORY              0x8007000E   ``OutOfMemoryError``
    E_ACCESSDENIED             0x80070005   ``Win32AccessDeniedError``
    ERROR_FILE_NOT_FOUND       0x80070002   ``Win32FileNotFoundError``
    ERROR_PATH_NOT_FOUND       0x80070003   ``PathNotFoundError``
    ERROR_NOT_FOUND            0x80070490   ``ElementNotFoundError``
    ERROR_INVALID_DATA         0x8007000D   ``InvalidDataError``
    ERROR_NOT_SUPPORTED        0x80070032   ``NotSupportedError``
    ERROR_PROC_NOT_FOUND       0x8007007F   ``ProcedureNotFoundError``
    ERROR_ALREADY_EXISTS       0x800700B7   ``AlreadyExistsError``
    ERROR_FILE_EXISTS          0x80070050   ``Win32FileExistsError``
    ERROR_CANCELLED            0x800704C7   ``Win32CancelledError``
    ERROR_OPERATION_ABORTED    0x800703E3   ``OperationAbortedError``
    RPC_S_SERVER_UNAVAILABLE   0x800706BA   ``RpcServerUnavailableError``
    RPC_X_SS_IN_NULL_CONTEXT   0x800706EF   ``RpcNullContextError``
    WAIT_TIMEOUT               0x80070102   ``WaitTimeoutError``
    ERROR_SHARING_VIOLATION    0x80070020   ``SharingViolationError``
    ERROR_DIR_NOT_EMPTY        0x80070091   ``DirectoryNotEmptyError``
    ERROR_BAD_PATHNAME         0x800700A1   ``BadPathnameError``
    ERROR_INVALID_NAME         0x8007007B   ``InvalidNameError``
    ERROR_BUSY                 0x800700AA   ``ResourceBusyError``
    ERROR_DISK_FULL            0x80070070   ``DiskFullError``
    ERROR_DIRECTORY            0x8007010B   ``InvalidDirectoryError``
    ========================== ============ ===============================

    Note that the ``ERROR_*``, ``WAIT_TIMEOUT`` and ``RPC_*`` *constants* in this module hold the
    HRESULT form (``HRESULT_FROM_WIN32(code)``), not the bare Win32 code. The bare code is in
    ``err.winerror`` or :func:`win32_from_hresult`.
Raised locally, with no HRESULT from the service
    ``HandleClosedError(InvalidHandleError)`` (alias ``HcsClosedError``): a pyhcs object was used
    after this process closed it. Its hresult is E_HANDLE.
    ``ServiceDisconnectedError`` and ``UnexpectedExitError`` are the HCS_E_SERVICE_DISCONNECT and
    HCS_E_UNEXPECTED_EXIT classes; the binding also raises them itself when it sees the service
    disconnect or the system exit while waiting for something else.

Builtin mix-ins
---------------
Where a builtin fits, a class also inherits from it, so ``except TimeoutError`` and friends work:

* ``TimeoutError``: HCS_E_OPERATION_TIMEOUT, HCS_E_CONNECTION_TIMEOUT, WAIT_TIMEOUT.
* ``PermissionError``: HCS_E_ACCESS_DENIED, E_ACCESSDENIED (two different classes).
* ``FileNotFoundError``: HCS_E_SYSTEM_NOT_FOUND, ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND,
  ERROR_NOT_FOUND.
* ``FileExistsError``: HCS_E_SYSTEM_ALREADY_EXISTS, ERROR_ALREADY_EXISTS, ERROR_FILE_EXISTS.
* ``NotImplementedError``: E_NOTIMPL (``UnimplementedError``), so ``except NotImplementedError``
  around an optional call such as ``Operation.cancel()`` does what it says. NotImplementedError
  is a RuntimeError, not an OSError; the two layouts are compatible (``io.UnsupportedOperation``
  mixes OSError and ValueError the same way) and the class is still an ``HcsError``.

The mix-ins do not change ``errno``: it is always ``None`` on an HcsError, because HRESULTs are
not POSIX errno values. Code that tests ``err.errno == errno.ENOENT`` keeps working for real OS
errors and simply does not match HCS errors; use ``isinstance`` or the predicates below.
``errno`` is never passed to the OSError constructor, so OSError's errno-to-subclass mapping
never applies either.

Predicates
----------
Built from the ``tags`` column of the table; each accepts an HRESULT (signed or unsigned) or an
exception (a non-HcsError exception never matches). HCS codes match in both the 0x8037xxxx and
the legacy 0xC037xxxx form. Bare Win32 codes (0x490) are not HRESULTs and never match; convert
them with :func:`HRESULT_FROM_WIN32` first.

* :func:`is_not_found`: HCS_E_SYSTEM_NOT_FOUND, ERROR_NOT_FOUND (the ``NotFoundError`` family).
  Missing files and paths (ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND) are *not* included: a
  missing VHD is not a missing system. Catch ``FileNotFoundError`` for all four.
* :func:`is_already_stopped`: HCS_E_SYSTEM_ALREADY_STOPPED, HCS_E_PROCESS_ALREADY_STOPPED,
  ERROR_NOT_FOUND. Never ERROR_PROC_NOT_FOUND (a missing DLL export; treating it as "stopped"
  leaked running containers in moby #42610) and never HCS_E_SYSTEM_NOT_FOUND.
* :func:`is_pending`: HCS_E_OPERATION_PENDING and the legacy 0xC0370103.
* :func:`is_access_denied`: HCS_E_ACCESS_DENIED, E_ACCESSDENIED.
* :func:`is_invalid_state`: HCS_E_INVALID_STATE.
* :func:`is_timeout`: HCS_E_OPERATION_TIMEOUT, HCS_E_CONNECTION_TIMEOUT, WAIT_TIMEOUT.
* :func:`is_cancelled`: ERROR_CANCELLED, ERROR_OPERATION_ABORTED,
  HCS_E_OPERATION_ALREADY_CANCELLED.
* :func:`is_retryable`: the same call may succeed if repeated after a short delay, with no change
  by the caller: HCS_E_CONNECTION_TIMEOUT, HCS_E_INVALID_STATE (a state transition may be in
  progress), HCS_E_OPERATION_PENDING (and legacy), HCS_E_OPERATION_TIMEOUT, WAIT_TIMEOUT,
  ERROR_BUSY, ERROR_SHARING_VIOLATION. Bound the number of retries: INVALID_STATE is also what a
  permanently wrong call returns. Deliberately excluded: the ``ServiceError`` family
  (HCS_E_SERVICE_NOT_AVAILABLE means a feature is not installed; after a disconnect or RPC
  failure the handles are stale, so the fix is to reopen, not to repeat the call).
"""

# The package's modules share their private names (the registry, the unpickling helper).
# pyright: reportPrivateUsage=false

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from . import _base, _table
from ._base import _BY_EXACT as _BY_EXACT  # the registry, reached here by the tests
from ._base import _BY_HRESULT as _BY_HRESULT
from ._base import (
    _INFO_BY_HRESULT,
    _SEVERITY,
    HRESULT_FROM_WIN32,
    AlreadyStoppedError,
    CancelledError,
    HcsError,
    HResultInfo,
    NotFoundError,
    ServiceError,
    _rebuild,
    error_class,
    facility,
    hresult_info,
    hresult_name,
    is_success,
    make_error,
    normalize,
    to_signed,
    to_unsigned,
    win32_from_hresult,
)
from ._base import is_json_array as is_json_array  # JSON guards, for the rest of pyhcs
from ._base import is_json_object as is_json_object

if TYPE_CHECKING:
    from ..aio import ComputeSystem as AsyncComputeSystem
    from ..events import ExitStatus
    from ..operation import Operation
    from ..process import Process
    from ..system import ComputeSystem

__all__: list[str] = [
    "HRESULT_FROM_WIN32",
    "AlreadyStoppedError",
    "CancelledError",
    "HResultInfo",
    "HandleClosedError",
    "HcsClosedError",
    "HcsError",
    "NotFoundError",
    "ServiceError",
    "check_hr",
    "error_class",
    "facility",
    "hresult_info",
    "hresult_name",
    "is_access_denied",
    "is_already_stopped",
    "is_cancelled",
    "is_invalid_state",
    "is_not_found",
    "is_pending",
    "is_retryable",
    "is_success",
    "is_timeout",
    "make_error",
    "normalize",
    "to_signed",
    "to_unsigned",
    "win32_from_hresult",
]

# pyhcs.errors is the public home of the generated names: imported and listed one by one,
# because type checkers only read a literal __all__ (tools/gen_errors.py writes this block).
# BEGIN names generated by tools/gen_errors.py (do not edit by hand)
from ._table import (  # noqa: I001
    ACCESS_DENIED_CODES as ACCESS_DENIED_CODES,
    ALREADY_STOPPED_CODES as ALREADY_STOPPED_CODES,
    CANCELLED_CODES as CANCELLED_CODES,
    CODES as CODES,
    ERROR_ALREADY_EXISTS as ERROR_ALREADY_EXISTS,
    ERROR_BAD_PATHNAME as ERROR_BAD_PATHNAME,
    ERROR_BUSY as ERROR_BUSY,
    ERROR_CANCELLED as ERROR_CANCELLED,
    ERROR_DIRECTORY as ERROR_DIRECTORY,
    ERROR_DIR_NOT_EMPTY as ERROR_DIR_NOT_EMPTY,
    ERROR_DISK_FULL as ERROR_DISK_FULL,
    ERROR_FILE_EXISTS as ERROR_FILE_EXISTS,
    ERROR_FILE_NOT_FOUND as ERROR_FILE_NOT_FOUND,
    ERROR_INVALID_DATA as ERROR_INVALID_DATA,
    ERROR_INVALID_NAME as ERROR_INVALID_NAME,
    ERROR_NOT_FOUND as ERROR_NOT_FOUND,
    ERROR_NOT_SUPPORTED as ERROR_NOT_SUPPORTED,
    ERROR_OPERATION_ABORTED as ERROR_OPERATION_ABORTED,
    ERROR_PATH_NOT_FOUND as ERROR_PATH_NOT_FOUND,
    ERROR_PROC_NOT_FOUND as ERROR_PROC_NOT_FOUND,
    ERROR_SHARING_VIOLATION as ERROR_SHARING_VIOLATION,
    ERROR_VIRTDISK_NOT_VIRTUAL_DISK as ERROR_VIRTDISK_NOT_VIRTUAL_DISK,
    E_ACCESSDENIED as E_ACCESSDENIED,
    E_FAIL as E_FAIL,
    E_HANDLE as E_HANDLE,
    E_INVALIDARG as E_INVALIDARG,
    E_NOTIMPL as E_NOTIMPL,
    E_OUTOFMEMORY as E_OUTOFMEMORY,
    E_POINTER as E_POINTER,
    E_UNEXPECTED as E_UNEXPECTED,
    HCS_E_ACCESS_DENIED as HCS_E_ACCESS_DENIED,
    HCS_E_CONNECTION_CLOSED as HCS_E_CONNECTION_CLOSED,
    HCS_E_CONNECTION_TIMEOUT as HCS_E_CONNECTION_TIMEOUT,
    HCS_E_CONNECT_FAILED as HCS_E_CONNECT_FAILED,
    HCS_E_GUEST_CRITICAL_ERROR as HCS_E_GUEST_CRITICAL_ERROR,
    HCS_E_HYPERV_NOT_INSTALLED as HCS_E_HYPERV_NOT_INSTALLED,
    HCS_E_IMAGE_MISMATCH as HCS_E_IMAGE_MISMATCH,
    HCS_E_INVALID_JSON as HCS_E_INVALID_JSON,
    HCS_E_INVALID_LAYER as HCS_E_INVALID_LAYER,
    HCS_E_INVALID_STATE as HCS_E_INVALID_STATE,
    HCS_E_OPERATION_ALREADY_CANCELLED as HCS_E_OPERATION_ALREADY_CANCELLED,
    HCS_E_OPERATION_ALREADY_STARTED as HCS_E_OPERATION_ALREADY_STARTED,
    HCS_E_OPERATION_NOT_STARTED as HCS_E_OPERATION_NOT_STARTED,
    HCS_E_OPERATION_PENDING as HCS_E_OPERATION_PENDING,
    HCS_E_OPERATION_PENDING_LEGACY as HCS_E_OPERATION_PENDING_LEGACY,
    HCS_E_OPERATION_RESULT_ALLOCATION_FAILED as HCS_E_OPERATION_RESULT_ALLOCATION_FAILED,
    HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET as HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET,
    HCS_E_OPERATION_TIMEOUT as HCS_E_OPERATION_TIMEOUT,
    HCS_E_PROCESS_ALREADY_STOPPED as HCS_E_PROCESS_ALREADY_STOPPED,
    HCS_E_PROCESS_INFO_NOT_AVAILABLE as HCS_E_PROCESS_INFO_NOT_AVAILABLE,
    HCS_E_PROTOCOL_ERROR as HCS_E_PROTOCOL_ERROR,
    HCS_E_SERVICE_DISCONNECT as HCS_E_SERVICE_DISCONNECT,
    HCS_E_SERVICE_NOT_AVAILABLE as HCS_E_SERVICE_NOT_AVAILABLE,
    HCS_E_SYSTEM_ALREADY_EXISTS as HCS_E_SYSTEM_ALREADY_EXISTS,
    HCS_E_SYSTEM_ALREADY_STOPPED as HCS_E_SYSTEM_ALREADY_STOPPED,
    HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION as HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
    HCS_E_SYSTEM_NOT_FOUND as HCS_E_SYSTEM_NOT_FOUND,
    HCS_E_TERMINATED as HCS_E_TERMINATED,
    HCS_E_TERMINATED_DURING_START as HCS_E_TERMINATED_DURING_START,
    HCS_E_UNEXPECTED_EXIT as HCS_E_UNEXPECTED_EXIT,
    HCS_E_UNKNOWN_MESSAGE as HCS_E_UNKNOWN_MESSAGE,
    HCS_E_UNSUPPORTED_PROTOCOL_VERSION as HCS_E_UNSUPPORTED_PROTOCOL_VERSION,
    HCS_E_WINDOWS_INSIDER_REQUIRED as HCS_E_WINDOWS_INSIDER_REQUIRED,
    INVALID_STATE_CODES as INVALID_STATE_CODES,
    NOT_FOUND_CODES as NOT_FOUND_CODES,
    PENDING_CODES as PENDING_CODES,
    RETRYABLE_CODES as RETRYABLE_CODES,
    RPC_S_SERVER_UNAVAILABLE as RPC_S_SERVER_UNAVAILABLE,
    RPC_X_SS_IN_NULL_CONTEXT as RPC_X_SS_IN_NULL_CONTEXT,
    S_OK as S_OK,
    TIMEOUT_CODES as TIMEOUT_CODES,
    WAIT_TIMEOUT as WAIT_TIMEOUT,
    AccessDeniedError as AccessDeniedError,
    AlreadyExistsError as AlreadyExistsError,
    BadPathnameError as BadPathnameError,
    ConnectFailedError as ConnectFailedError,
    ConnectionClosedError as ConnectionClosedError,
    ConnectionTimeoutError as ConnectionTimeoutError,
    DirectoryNotEmptyError as DirectoryNotEmptyError,
    DiskFullError as DiskFullError,
    ElementNotFoundError as ElementNotFoundError,
    GuestCriticalError as GuestCriticalError,
    HyperVNotInstalledError as HyperVNotInstalledError,
    ImageMismatchError as ImageMismatchError,
    InvalidArgumentError as InvalidArgumentError,
    InvalidDataError as InvalidDataError,
    InvalidDirectoryError as InvalidDirectoryError,
    InvalidHandleError as InvalidHandleError,
    InvalidJsonError as InvalidJsonError,
    InvalidLayerError as InvalidLayerError,
    InvalidNameError as InvalidNameError,
    InvalidPointerError as InvalidPointerError,
    InvalidStateError as InvalidStateError,
    NotSupportedError as NotSupportedError,
    NotVirtualDiskError as NotVirtualDiskError,
    OperationAbortedError as OperationAbortedError,
    OperationAlreadyCancelledError as OperationAlreadyCancelledError,
    OperationAlreadyStartedError as OperationAlreadyStartedError,
    OperationNotStartedError as OperationNotStartedError,
    OperationPendingError as OperationPendingError,
    OperationResultAllocationFailedError as OperationResultAllocationFailedError,
    OperationSystemCallbackAlreadySetError as OperationSystemCallbackAlreadySetError,
    OperationTimeoutError as OperationTimeoutError,
    OutOfMemoryError as OutOfMemoryError,
    PathNotFoundError as PathNotFoundError,
    ProcedureNotFoundError as ProcedureNotFoundError,
    ProcessAlreadyStoppedError as ProcessAlreadyStoppedError,
    ProcessInfoNotAvailableError as ProcessInfoNotAvailableError,
    ProtocolError as ProtocolError,
    ResourceBusyError as ResourceBusyError,
    RpcNullContextError as RpcNullContextError,
    RpcServerUnavailableError as RpcServerUnavailableError,
    ServiceDisconnectError as ServiceDisconnectError,
    ServiceDisconnectedError as ServiceDisconnectedError,
    ServiceNotAvailableError as ServiceNotAvailableError,
    SharingViolationError as SharingViolationError,
    SystemAlreadyExistsError as SystemAlreadyExistsError,
    SystemAlreadyStoppedError as SystemAlreadyStoppedError,
    SystemNotConfiguredForOperationError as SystemNotConfiguredForOperationError,
    SystemNotFoundError as SystemNotFoundError,
    TerminatedDuringStartError as TerminatedDuringStartError,
    TerminatedError as TerminatedError,
    UnexpectedExitError as UnexpectedExitError,
    UnexpectedFailureError as UnexpectedFailureError,
    UnimplementedError as UnimplementedError,
    UnknownMessageError as UnknownMessageError,
    UnspecifiedError as UnspecifiedError,
    UnsupportedProtocolVersionError as UnsupportedProtocolVersionError,
    WaitTimeoutError as WaitTimeoutError,
    Win32AccessDeniedError as Win32AccessDeniedError,
    Win32CancelledError as Win32CancelledError,
    Win32FileExistsError as Win32FileExistsError,
    Win32FileNotFoundError as Win32FileNotFoundError,
    WindowsInsiderRequiredError as WindowsInsiderRequiredError,
)

__all__ += [
    "ACCESS_DENIED_CODES",
    "ALREADY_STOPPED_CODES",
    "CANCELLED_CODES",
    "CODES",
    "ERROR_ALREADY_EXISTS",
    "ERROR_BAD_PATHNAME",
    "ERROR_BUSY",
    "ERROR_CANCELLED",
    "ERROR_DIRECTORY",
    "ERROR_DIR_NOT_EMPTY",
    "ERROR_DISK_FULL",
    "ERROR_FILE_EXISTS",
    "ERROR_FILE_NOT_FOUND",
    "ERROR_INVALID_DATA",
    "ERROR_INVALID_NAME",
    "ERROR_NOT_FOUND",
    "ERROR_NOT_SUPPORTED",
    "ERROR_OPERATION_ABORTED",
    "ERROR_PATH_NOT_FOUND",
    "ERROR_PROC_NOT_FOUND",
    "ERROR_SHARING_VIOLATION",
    "ERROR_VIRTDISK_NOT_VIRTUAL_DISK",
    "E_ACCESSDENIED",
    "E_FAIL",
    "E_HANDLE",
    "E_INVALIDARG",
    "E_NOTIMPL",
    "E_OUTOFMEMORY",
    "E_POINTER",
    "E_UNEXPECTED",
    "HCS_E_ACCESS_DENIED",
    "HCS_E_CONNECTION_CLOSED",
    "HCS_E_CONNECTION_TIMEOUT",
    "HCS_E_CONNECT_FAILED",
    "HCS_E_GUEST_CRITICAL_ERROR",
    "HCS_E_HYPERV_NOT_INSTALLED",
    "HCS_E_IMAGE_MISMATCH",
    "HCS_E_INVALID_JSON",
    "HCS_E_INVALID_LAYER",
    "HCS_E_INVALID_STATE",
    "HCS_E_OPERATION_ALREADY_CANCELLED",
    "HCS_E_OPERATION_ALREADY_STARTED",
    "HCS_E_OPERATION_NOT_STARTED",
    "HCS_E_OPERATION_PENDING",
    "HCS_E_OPERATION_PENDING_LEGACY",
    "HCS_E_OPERATION_RESULT_ALLOCATION_FAILED",
    "HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET",
    "HCS_E_OPERATION_TIMEOUT",
    "HCS_E_PROCESS_ALREADY_STOPPED",
    "HCS_E_PROCESS_INFO_NOT_AVAILABLE",
    "HCS_E_PROTOCOL_ERROR",
    "HCS_E_SERVICE_DISCONNECT",
    "HCS_E_SERVICE_NOT_AVAILABLE",
    "HCS_E_SYSTEM_ALREADY_EXISTS",
    "HCS_E_SYSTEM_ALREADY_STOPPED",
    "HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION",
    "HCS_E_SYSTEM_NOT_FOUND",
    "HCS_E_TERMINATED",
    "HCS_E_TERMINATED_DURING_START",
    "HCS_E_UNEXPECTED_EXIT",
    "HCS_E_UNKNOWN_MESSAGE",
    "HCS_E_UNSUPPORTED_PROTOCOL_VERSION",
    "HCS_E_WINDOWS_INSIDER_REQUIRED",
    "INVALID_STATE_CODES",
    "NOT_FOUND_CODES",
    "PENDING_CODES",
    "RETRYABLE_CODES",
    "RPC_S_SERVER_UNAVAILABLE",
    "RPC_X_SS_IN_NULL_CONTEXT",
    "S_OK",
    "TIMEOUT_CODES",
    "WAIT_TIMEOUT",
    "AccessDeniedError",
    "AlreadyExistsError",
    "BadPathnameError",
    "ConnectFailedError",
    "ConnectionClosedError",
    "ConnectionTimeoutError",
    "DirectoryNotEmptyError",
    "DiskFullError",
    "ElementNotFoundError",
    "GuestCriticalError",
    "HyperVNotInstalledError",
    "ImageMismatchError",
    "InvalidArgumentError",
    "InvalidDataError",
    "InvalidDirectoryError",
    "InvalidHandleError",
    "InvalidJsonError",
    "InvalidLayerError",
    "InvalidNameError",
    "InvalidPointerError",
    "InvalidStateError",
    "NotSupportedError",
    "NotVirtualDiskError",
    "OperationAbortedError",
    "OperationAlreadyCancelledError",
    "OperationAlreadyStartedError",
    "OperationNotStartedError",
    "OperationPendingError",
    "OperationResultAllocationFailedError",
    "OperationSystemCallbackAlreadySetError",
    "OperationTimeoutError",
    "OutOfMemoryError",
    "PathNotFoundError",
    "ProcedureNotFoundError",
    "ProcessAlreadyStoppedError",
    "ProcessInfoNotAvailableError",
    "ProtocolError",
    "ResourceBusyError",
    "RpcNullContextError",
    "RpcServerUnavailableError",
    "ServiceDisconnectError",
    "ServiceDisconnectedError",
    "ServiceNotAvailableError",
    "SharingViolationError",
    "SystemAlreadyExistsError",
    "SystemAlreadyStoppedError",
    "SystemNotConfiguredForOperationError",
    "SystemNotFoundError",
    "TerminatedDuringStartError",
    "TerminatedError",
    "UnexpectedExitError",
    "UnexpectedFailureError",
    "UnimplementedError",
    "UnknownMessageError",
    "UnspecifiedError",
    "UnsupportedProtocolVersionError",
    "WaitTimeoutError",
    "Win32AccessDeniedError",
    "Win32CancelledError",
    "Win32FileExistsError",
    "Win32FileNotFoundError",
    "WindowsInsiderRequiredError",
]
# END names generated by tools/gen_errors.py


def _adopt() -> None:
    # Show and pickle every class (and the unpickling helpers) under their public home,
    # pyhcs.errors, wherever they are defined.
    for module in (_base, _table):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                obj.__module__ = __name__
    _rebuild.__module__ = __name__
    for info in _table.CODES:
        _INFO_BY_HRESULT[info.hresult] = info


_adopt()
del _adopt


# ---------------------------------------------------------------------------------------------
# Functions over the table
# ---------------------------------------------------------------------------------------------


def check_hr(
    hresult: int,
    result_document: str | None = None,
    *,
    call: str | None = None,
    system_id: str | None = None,
    process_id: int | None = None,
    operation: Operation | None = None,
    accept_pending: bool = False,
) -> int:
    """Return *hresult* if it is a success code, else raise the matching :class:`HcsError`.

    Accepts the signed int32 ctypes returns or the unsigned form; the return value is the
    (non-negative) success code. With ``accept_pending=True``, HCS_E_OPERATION_PENDING and the
    legacy 0xC0370103 are also returned instead of raised (unsigned): use it for the initiating
    call of an asynchronous operation, where old hosts report "started" that way.
    """
    if type(hresult) is int and 0 <= hresult < _SEVERITY:  # fast path: S_OK and friends
        return hresult
    value = to_unsigned(hresult)
    if not value & _SEVERITY:
        return value
    if accept_pending and is_pending(value):
        return value
    raise make_error(
        value,
        result_document,
        call=call,
        system_id=system_id,
        process_id=process_id,
        operation=operation,
    )


def _matches(exc_or_hr: BaseException | int, codes: frozenset[int]) -> bool:
    if isinstance(exc_or_hr, HcsError):
        value = exc_or_hr.hresult
    elif isinstance(exc_or_hr, BaseException):
        return False
    else:
        value = to_unsigned(exc_or_hr)
    return value in codes or normalize(value) in codes


def is_not_found(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_SYSTEM_NOT_FOUND or ERROR_NOT_FOUND (not missing files/paths)."""
    return _matches(exc_or_hr, NOT_FOUND_CODES)


def is_already_stopped(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_SYSTEM_ALREADY_STOPPED, HCS_E_PROCESS_ALREADY_STOPPED or ERROR_NOT_FOUND.

    Never ERROR_PROC_NOT_FOUND (moby #42610) and never HCS_E_SYSTEM_NOT_FOUND.
    """
    return _matches(exc_or_hr, ALREADY_STOPPED_CODES)


def is_pending(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_OPERATION_PENDING (either form) or the legacy 0xC0370103."""
    return _matches(exc_or_hr, PENDING_CODES)


def is_access_denied(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_ACCESS_DENIED or E_ACCESSDENIED."""
    return _matches(exc_or_hr, ACCESS_DENIED_CODES)


def is_invalid_state(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_INVALID_STATE (either form)."""
    return _matches(exc_or_hr, INVALID_STATE_CODES)


def is_timeout(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_OPERATION_TIMEOUT, HCS_E_CONNECTION_TIMEOUT or WAIT_TIMEOUT."""
    return _matches(exc_or_hr, TIMEOUT_CODES)


def is_cancelled(exc_or_hr: BaseException | int) -> bool:
    """ERROR_CANCELLED, ERROR_OPERATION_ABORTED or HCS_E_OPERATION_ALREADY_CANCELLED."""
    return _matches(exc_or_hr, CANCELLED_CODES)


def is_retryable(exc_or_hr: BaseException | int) -> bool:
    """True when repeating the same call after a short delay may succeed.

    HCS_E_CONNECTION_TIMEOUT, HCS_E_INVALID_STATE, HCS_E_OPERATION_PENDING (and legacy),
    HCS_E_OPERATION_TIMEOUT, WAIT_TIMEOUT, ERROR_BUSY, ERROR_SHARING_VIOLATION. Always bound the
    retries. Service failures are excluded on purpose (see the module docstring).
    """
    return _matches(exc_or_hr, RETRYABLE_CODES)


# ---------------------------------------------------------------------------------------------
# Raised by pyhcs itself
# ---------------------------------------------------------------------------------------------


class HandleClosedError(InvalidHandleError):
    """A pyhcs object was used after this process closed its handle.

    Raised by pyhcs itself, without calling HCS. The hresult is E_HANDLE, so it is also an
    :class:`InvalidHandleError`. Not registered: ``error_class(E_HANDLE)`` stays
    ``InvalidHandleError``.
    """

    DEFAULT_MESSAGE: ClassVar[str] = (
        "The handle was closed by this process; the object can no longer be used"
    )

    def __init__(
        self,
        message: str | None = None,
        *,
        call: str | None = None,
        system_id: str | None = None,
        process_id: int | None = None,
        operation: Operation | None = None,
    ) -> None:
        super().__init__(
            E_HANDLE,
            message or self.DEFAULT_MESSAGE,
            call=call,
            system_id=system_id,
            process_id=process_id,
            operation=operation,
        )


HcsClosedError = HandleClosedError
"""Alias of :class:`HandleClosedError`."""


#: The part of a timeout message that states the timeout and the time taken.
_WITHIN = re.compile(r"within [^ ]+ s \([0-9.]+ s elapsed\)")


class TimeoutExpiredError(OperationTimeoutError, subprocess.TimeoutExpired):
    """A pyhcs wait ran out: an :class:`OperationTimeoutError` (so a :class:`TimeoutError`
    and an :class:`HcsError`) and a :class:`subprocess.TimeoutExpired`.

    Every timeout pyhcs itself raises is one (HCS's own HCS_E_OPERATION_TIMEOUT stays a plain
    :class:`OperationTimeoutError`). Not registered: ``error_class()`` of the code is unchanged.

    Attributes
    ----------
    cmd:
        The command of :meth:`ComputeSystem.run` (else the name of what was waited for).
    timeout: float
        The timeout that was given to the call (``math.inf`` for none), not the time that
        was left of it.
    elapsed: float
        Seconds the wait took.
    output, stdout, stderr:
        What :meth:`ComputeSystem.run` or :meth:`Process.communicate` had read (else None).
    operation: Operation | None
        The operation still pending in HCS, if any. It closes itself once HCS completes it;
        ``close()`` it to give up sooner, or wait on it again.
    operation_id: int | None
        Its HCS id.
    system: ComputeSystem | aio.ComputeSystem | None
        Set by :meth:`ComputeSystem.create` (and its async twin): the half-created system. The caller owns it:
        ``wait_created()`` to go on, or ``close()`` it (which ends it).
    process: Process | None
        Set by :meth:`ComputeSystem.create_process`: the process still being created. The
        caller owns it (``wait_started()`` or ``close()``). After :meth:`ComputeSystem.run`
        it is the process ``run()`` killed and already closed (for its ``pid``), or None.
    """

    elapsed: float
    operation_id: int | None
    system: ComputeSystem | AsyncComputeSystem | None
    process: Process | None

    def __init__(
        self,
        message: str,
        *,
        timeout: float,
        elapsed: float,
        cmd: str | Sequence[str] = "",
        output: bytes | str | None = None,
        stderr: bytes | str | None = None,
        call: str | None = None,
        system_id: str | None = None,
        process_id: int | None = None,
        operation: Operation | None = None,
        operation_id: int | None = None,
    ) -> None:
        HcsError.__init__(
            self,
            HCS_E_OPERATION_TIMEOUT,
            message,
            call=call,
            system_id=system_id,
            process_id=process_id,
            operation=operation,
        )
        self.cmd = cmd
        self.timeout = timeout
        self.output = output
        self.stderr = stderr  # type: ignore[assignment]  # str with text=True, as subprocess does
        self.elapsed = elapsed
        self.operation_id = operation_id
        self.system = None
        self.process = None

    def report_outer(self, timeout: float, elapsed: float) -> None:
        """Restates a timeout of an inner wait as the caller's: the timeout the caller gave
        (not what was left of it for the inner wait) and the time since the caller's call."""
        self.timeout = timeout
        self.elapsed = max(self.elapsed, elapsed)
        self.strerror = _WITHIN.sub(f"within {timeout:g} s ({self.elapsed:.3f} s elapsed)", self.message, count=1)

    def _extra_state(self) -> dict[str, Any]:
        # Live objects own handles: never pickled or duplicated (like ``operation``).
        state = super()._extra_state()
        state.pop("system", None)
        state.pop("process", None)
        return state

    def __setstate__(self, state: dict[str, Any] | None) -> None:
        self.__dict__.update(state or {})
        self.__dict__.setdefault("system", None)
        self.__dict__.setdefault("process", None)

    def __str__(self) -> str:
        return HcsError.__str__(self)


class CalledProcessError(subprocess.CalledProcessError):
    """A process run with ``check=True`` exited with a non-zero code: a
    :class:`subprocess.CalledProcessError` (``returncode``, ``cmd``, ``output``/``stdout``,
    ``stderr``) with the compute system it ran in.

    Not an :class:`HcsError`: every HCS call succeeded; the command itself failed.
    """

    system_id: str | None
    pid: int
    exit_status: ExitStatus | None

    def __init__(
        self,
        returncode: int,
        cmd: str | Sequence[str],
        output: bytes | str | None = None,
        stderr: bytes | str | None = None,
        *,
        system_id: str | None = None,
        pid: int = 0,
        exit_status: ExitStatus | None = None,
    ) -> None:
        super().__init__(returncode, cmd, output, stderr)
        self.system_id = system_id
        self.pid = pid
        self.exit_status = exit_status

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_called,
            (type(self), self.returncode, self.cmd, self.output, self.stderr, self.system_id, self.pid),
        )

    def __str__(self) -> str:
        where = f" in compute system {self.system_id!r}" if self.system_id is not None else ""
        return f"{super().__str__()[:-1]}{where}."


def _rebuild_called(
    cls: type[CalledProcessError], returncode: int, cmd: str | Sequence[str], output: bytes | str | None,
    stderr: bytes | str | None, system_id: str | None, pid: int,
) -> CalledProcessError:
    return cls(returncode, cmd, output, stderr, system_id=system_id, pid=pid)


__all__ += ["CalledProcessError", "TimeoutExpiredError"]
