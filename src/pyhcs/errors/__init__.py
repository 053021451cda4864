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

from __future__ import annotations

import copy as _copy
import json
import operator
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeGuard

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

# ---------------------------------------------------------------------------------------------
# Integer helpers
# ---------------------------------------------------------------------------------------------

_U32 = 0x1_0000_0000
_SEVERITY = 0x8000_0000
_FACILITY_WIN32 = 7


def to_unsigned(hr: int) -> int:
    """Return *hr* as an unsigned 32-bit value.

    Accepts the signed int32 ctypes returns (``-2143878907``) or the unsigned form
    (``0x80370105``); anything outside ``-2**31 .. 2**32 - 1`` raises :class:`ValueError`.
    """
    value = operator.index(hr)
    if 0 <= value < _U32:
        return value
    if -_SEVERITY <= value < 0:
        return value + _U32
    raise ValueError(f"not a 32-bit HRESULT: {value!r}")


def to_signed(hr: int) -> int:
    """Return *hr* as a signed int32 (the form ``HRESULT`` has in C and in result documents)."""
    value = to_unsigned(hr)
    return value - _U32 if value & _SEVERITY else value


def is_success(hr: int) -> bool:
    """True when *hr* is a success code (``SUCCEEDED(hr)``: signed value >= 0)."""
    return not to_unsigned(hr) & _SEVERITY


def normalize(hr: int) -> int:
    """Map the NTSTATUS-shaped 0xC037xxxx twin of an HCS code to 0x8037xxxx.

    Every other value is returned unchanged (as unsigned). Purely arithmetic and idempotent:
    ``normalize(0xC0370103)`` is 0x80370103, which is not an HCS code; the legacy pending value
    is recognised by exact match instead (see :func:`is_pending`).
    """
    value = to_unsigned(hr)
    if value & 0xFFFF_0000 == 0xC037_0000:
        return value ^ 0x4000_0000
    return value


def facility(hr: int) -> int:
    """The facility field (bits 16-28) of *hr*: 7 for Win32, 0x37 for HCS."""
    return (to_unsigned(hr) >> 16) & 0x1FFF


def HRESULT_FROM_WIN32(code: int) -> int:
    """Unsigned ``HRESULT_FROM_WIN32(code)``: ``0x8007xxxx`` for a positive Win32 code.

    As in the SDK macro, a value that is already <= 0 as an int32 (0, or an HRESULT) is returned
    unchanged.
    """
    value = to_unsigned(code)
    if value == 0 or value & _SEVERITY:
        return value
    return (value & 0xFFFF) | (_FACILITY_WIN32 << 16) | _SEVERITY


def win32_from_hresult(hr: int) -> int | None:
    """The Win32 error code inside *hr* when its facility is WIN32, else None.

    Uses the test from the HCS spec (``hr & 0x1FFF0000 == 0x00070000``) and returns the low 16
    bits, so ``win32_from_hresult(0x80070490) == 0x490``.
    """
    value = to_unsigned(hr)
    if value & 0x1FFF_0000 == _FACILITY_WIN32 << 16:
        return value & 0xFFFF
    return None


# ---------------------------------------------------------------------------------------------
# Table access (the table itself is generated into pyhcs.errors._table)
# ---------------------------------------------------------------------------------------------


class HResultInfo(NamedTuple):
    """One row of the generated HRESULT table (``pyhcs.errors.CODES``)."""

    symbol: str
    """SDK-style name, for example ``"HCS_E_INVALID_STATE"``."""
    hresult: int
    """Unsigned value as listed (0x8037xxxx for HCS codes)."""
    meaning: str
    """Short description, used as the default exception message."""
    suggestion: str
    """What the user can do about it ("" for success codes)."""
    class_name: str | None
    """Name of the exception class in :mod:`pyhcs.errors`; None for success codes."""
    tags: frozenset[str]
    """Predicates matching this code (``"not_found"``, ``"retryable"``, ...)."""


# Filled in from the generated table at the bottom of this module.
_INFO_BY_HRESULT: dict[int, HResultInfo] = {}


def hresult_info(hr: int) -> HResultInfo | None:
    """The table row for *hr* (exact value first, then its normalised form), or None."""
    value = to_unsigned(hr)
    info = _INFO_BY_HRESULT.get(value)
    if info is None:
        info = _INFO_BY_HRESULT.get(normalize(value))
    return info


def hresult_name(hr: int) -> str:
    """Symbolic name of *hr*, for example ``"HCS_E_INVALID_STATE"``.

    The 0xC037xxxx twin of a code gets the code's name. Unknown values give
    ``"HRESULT 0x%08X"`` with the value as passed (unsigned).
    """
    info = hresult_info(hr)
    if info is not None:
        return info.symbol
    return f"HRESULT 0x{to_unsigned(hr):08X}"


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

# Keyed by normalised HRESULT. _BY_EXACT holds extra exact values (``hresult_aliases``) such as
# the legacy pending code 0xC0370103 whose normalised form is not an HCS code.
_BY_HRESULT: dict[int, type[HcsError]] = {}
_BY_EXACT: dict[int, type[HcsError]] = {}


def _register(cls: type[HcsError]) -> None:
    declared = cls.__dict__["hresult"]
    if not isinstance(declared, int) or isinstance(declared, bool):
        kind = type(declared).__name__
        raise TypeError(f"{cls.__qualname__}.hresult must be an int, not {kind}")
    key = normalize(declared)
    if is_success(key):
        raise ValueError(f"{cls.__qualname__}.hresult 0x{key:08X} is a success code")
    aliases = tuple(to_unsigned(a) for a in cls.__dict__.get("hresult_aliases", ()))
    # Check everything before registering anything, so a failed class leaves no trace.
    clashes = [(key, _BY_HRESULT.get(key) or _BY_EXACT.get(key))]
    clashes += [(a, _BY_EXACT.get(a) or _BY_HRESULT.get(a)) for a in aliases]
    for code, existing in clashes:
        if existing is not None:
            raise TypeError(
                f"cannot register {cls.__module__}.{cls.__qualname__} for HRESULT 0x{code:08X}: "
                f"already registered to {existing.__module__}.{existing.__qualname__}"
            )
    cls.hresult = key
    cls.hresult_aliases = aliases
    _BY_HRESULT[key] = cls
    for alias in aliases:
        _BY_EXACT[alias] = cls


def error_class(hresult: int) -> type[HcsError]:
    """The exception class for *hresult* (either code form); :class:`HcsError` when unknown."""
    value = to_unsigned(hresult)
    cls = _BY_EXACT.get(value)
    if cls is None:
        cls = _BY_HRESULT.get(normalize(value), HcsError)
    return cls


# ---------------------------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------------------------

_UNSET: Any = object()

# Attributes HcsError.__init__ owns; everything else in __dict__ (user attributes, __notes__)
# is carried through pickling and copying as extra state.
_OWN_ATTRS = frozenset(
    {
        "hresult",
        "result_document",
        "call",
        "system_id",
        "process_id",
        "operation",
        "winerror",
        "_message",
        "_result",
    }
)


class HcsError(OSError):
    """A failed Host Compute Service call.

    Parameters
    ----------
    hresult:
        The HRESULT as returned, signed (ctypes) or unsigned. Stored unsigned in ``.hresult``.
    message:
        Overrides the message. By default it is the result document's ``ErrorMessage``, else the
        table's meaning for the code.
    result_document:
        The raw ``ResultError`` JSON text from the call or operation, if any.
    call:
        Name of the HCS function, for example ``"HcsStartComputeSystem"``.
    system_id, process_id:
        The compute system id and process id the call was about, when known.
    operation:
        The pyhcs ``Operation`` object involved, if any. Settable; not pickled (it owns a live
        handle) but kept by :func:`copy.copy` and :func:`copy.deepcopy`.

    Attributes
    ----------
    hresult: int
        Unsigned 32-bit HRESULT exactly as reported (0xC037xxxx stays 0xC037xxxx).
    errno: None
        Always None: HRESULTs are not errno values.
    winerror: int | None
        The Win32 code when the facility is WIN32 (E_HANDLE -> 6), else None.
    strerror: str
        Same as ``.message``.

    Subclasses registered to a code declare ``hresult = 0x...`` in the class body (and
    optionally ``hresult_aliases = (0x...,)`` for extra exact values). A second class for the
    same normalised code raises :class:`TypeError` at class creation.
    """

    hresult: int
    hresult_aliases: ClassVar[tuple[int, ...]] = ()

    # OSError has a native winerror slot only on Windows (typed int there, but None is what
    # OSError itself stores when there is no Win32 code); elsewhere it lives in __dict__.
    if sys.platform == "win32":
        winerror: int | None  # type: ignore[assignment]
    else:
        winerror: int | None

    result_document: str | None
    call: str | None
    system_id: str | None
    process_id: int | None
    operation: Operation | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "hresult" in cls.__dict__:
            _register(cls)

    def __init__(
        self,
        hresult: int,
        message: str | None = None,
        *,
        result_document: str | None = None,
        call: str | None = None,
        system_id: str | None = None,
        process_id: int | None = None,
        operation: Operation | None = None,
    ) -> None:
        value = to_unsigned(hresult)
        cls = type(self)
        if cls is not HcsError:
            expected = error_class(value)
            if not (issubclass(expected, cls) or issubclass(cls, expected)):
                raise ValueError(
                    f"HRESULT 0x{value:08X} ({hresult_name(value)}) belongs to "
                    f"{expected.__name__}, not {cls.__name__}; use make_error() to pick the class"
                )
        # Two positional args would make OSError parse them as (errno, strerror); we reset errno
        # below. OSError_new does not look at the arguments because __init__ is overridden.
        if message:
            super().__init__(value, message)
        else:
            super().__init__(value)
        self.errno = None
        self.hresult = value
        self.winerror = win32_from_hresult(value)
        self._message: str | None = message or None
        self._result: Any = _UNSET
        self.result_document = result_document
        self.call = call
        self.system_id = system_id
        self.process_id = process_id
        self.operation = operation

    # -- derived attributes -------------------------------------------------------------------

    @property
    def normalized_hresult(self) -> int:
        """``.hresult`` with 0xC037xxxx mapped to 0x8037xxxx (see :func:`normalize`)."""
        return normalize(self.hresult)

    @property
    def name(self) -> str:
        """Symbol of the code (``"HCS_E_INVALID_STATE"``), or ``"HRESULT 0x..."`` if unknown."""
        return hresult_name(self.hresult)

    @property
    def info(self) -> HResultInfo | None:
        """The table row for this code, or None for an unknown HRESULT."""
        return hresult_info(self.hresult)

    @property
    def message(self) -> str:
        """Explicit message, else the result document's ErrorMessage, else the table meaning."""
        if self._message:
            return self._message
        result = self.result
        if result is not None:
            text = result.get("ErrorMessage")
            if isinstance(text, str) and text.strip():
                return text.strip()
        info = self.info
        if info is not None:
            return info.meaning
        return (
            f"Unrecognised HRESULT (facility 0x{facility(self.hresult):X}, "
            f"code 0x{self.hresult & 0xFFFF:04X})"
        )

    # OSError declares strerror a plain attribute; a property that reads and writes the same
    # values keeps its contract, which the checker cannot see.
    @property
    def strerror(self) -> str:
        """OSError compatibility: the same text as ``.message``."""
        return self.message

    @strerror.setter
    def strerror(self, value: str | None) -> None:  # pyright: ignore[reportIncompatibleVariableOverride]
        self._message = value or None

    @property
    def suggestion(self) -> str | None:
        """What the user can do next (from the table), or None for an unknown code."""
        info = self.info
        return info.suggestion if info is not None else None

    @property
    def error_document(self) -> str | None:
        """Alias of ``.result_document``."""
        return self.result_document

    @property
    def result(self) -> dict[str, Any] | None:
        """The result document parsed as a JSON object, or None.

        None when there is no document, it is empty, it is not valid JSON, or it is valid JSON
        but not an object. Parsed on first access; never raises.
        """
        if self._result is _UNSET:
            self._result = _parse_document(self.result_document)
        parsed: dict[str, Any] | None = self._result
        return parsed

    @property
    def error_events(self) -> list[dict[str, Any]]:
        """The ``ErrorEvents`` entries of the result document that are objects ([] if none)."""
        result = self.result
        events = result.get("ErrorEvents") if result is not None else None
        if not is_json_array(events):
            return []
        return [event for event in events if is_json_object(event)]

    # -- formatting -----------------------------------------------------------------------------

    def _context(self) -> str:
        parts: list[str] = []
        if self.system_id is not None:
            parts.append(f"system {self.system_id!r}")
        if self.process_id is not None:
            parts.append(f"pid {self.process_id}")
        return f" [{', '.join(parts)}]" if parts else ""

    def __str__(self) -> str:
        if self.info is not None:
            head = f"{self.name} (0x{self.hresult:08X})"
        else:
            head = self.name  # already "HRESULT 0x..."
        if self.call:
            head += f" in {self.call}"
        return f"{head}{self._context()}: {self.message}"

    def __repr__(self) -> str:
        args = [f"0x{self.hresult:08X}"]
        if self._message:
            args.append(repr(self._message))
        for key in ("call", "system_id", "process_id"):
            value = getattr(self, key)
            if value is not None:
                args.append(f"{key}={value!r}")
        if self.result_document is not None:
            args.append(f"result_document=<{len(self.result_document)} chars>")
        return f"{type(self).__name__}({', '.join(args)})"

    # -- pickling and copying -------------------------------------------------------------------

    def _core_args(self) -> tuple[Any, ...]:
        return (
            type(self),
            self.hresult,
            self._message,
            self.result_document,
            self.call,
            self.system_id,
            self.process_id,
        )

    def _extra_state(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _OWN_ATTRS}

    def __reduce__(self) -> tuple[Any, ...]:
        # OSError.__reduce__ would call cls(*self.args), which loses the keyword arguments and
        # does not fit subclasses with their own signature (HandleClosedError).
        state = self._extra_state()
        return (_rebuild, self._core_args(), state or None)

    def __copy__(self) -> HcsError:
        new = _rebuild(*self._core_args())
        new.__dict__.update(self._extra_state())
        new.operation = self.operation
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> HcsError:
        new = _rebuild(*self._core_args())
        memo[id(self)] = new
        new.__dict__.update(_copy.deepcopy(self._extra_state(), memo))
        new.operation = self.operation  # a live handle: share it, never duplicate it
        return new


def _rebuild(
    cls: object,
    hresult: int,
    message: str | None,
    result_document: str | None,
    call: str | None,
    system_id: str | None,
    process_id: int | None,
) -> HcsError:
    """Unpickle helper: build *cls* without running a subclass's own ``__init__``."""
    if not (isinstance(cls, type) and issubclass(cls, HcsError)):  # a pickle may hold anything here
        raise TypeError(f"not an HcsError class: {cls!r}")
    obj = cls.__new__(cls)
    HcsError.__init__(
        obj,
        hresult,
        message,
        result_document=result_document,
        call=call,
        system_id=system_id,
        process_id=process_id,
    )
    return obj


def is_json_object(value: object) -> TypeGuard[dict[str, Any]]:
    """Whether a parsed JSON value is an object (typed for the checkers)."""
    return isinstance(value, dict)


def is_json_array(value: object) -> TypeGuard[list[Any]]:
    """Whether a parsed JSON value is an array (typed for the checkers)."""
    return isinstance(value, list)


def _parse_document(document: object) -> dict[str, Any] | None:
    if isinstance(document, (bytes, bytearray)):
        try:
            document = bytes(document).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(document, str) or not document.strip():
        return None
    try:
        parsed = json.loads(document)
    except (ValueError, RecursionError):
        return None
    return parsed if is_json_object(parsed) else None


# -- families: intermediate bases, never registered to a code ----------------------------------


class AlreadyStoppedError(HcsError):
    """The system or process had already stopped (HCS_E_SYSTEM/PROCESS_ALREADY_STOPPED).

    :func:`is_already_stopped` is wider: it also accepts ERROR_NOT_FOUND.
    """


class NotFoundError(HcsError):
    """The named system or element does not exist (HCS_E_SYSTEM_NOT_FOUND, ERROR_NOT_FOUND)."""


class ServiceError(HcsError):
    """The compute service is unavailable or went away.

    HCS_E_SERVICE_DISCONNECT, HCS_E_SERVICE_NOT_AVAILABLE, RPC_S_SERVER_UNAVAILABLE.
    """


class CancelledError(HcsError):
    """The call was cancelled or aborted.

    ERROR_CANCELLED, ERROR_OPERATION_ABORTED, HCS_E_OPERATION_ALREADY_CANCELLED.
    Unrelated to :class:`asyncio.CancelledError`, which it does not inherit from.
    """


# ---------------------------------------------------------------------------------------------
# Functions
# ---------------------------------------------------------------------------------------------


def make_error(
    hresult: int,
    result_document: str | None = None,
    *,
    message: str | None = None,
    call: str | None = None,
    system_id: str | None = None,
    process_id: int | None = None,
    operation: Operation | None = None,
) -> HcsError:
    """Build (but do not raise) the right :class:`HcsError` subclass for *hresult*."""
    cls = error_class(hresult)
    # HcsError.__init__ directly: subclasses with their own __init__ (HandleClosedError) are
    # never registered, but a user subclass might be.
    err = cls.__new__(cls)
    HcsError.__init__(
        err,
        hresult,
        message,
        result_document=result_document,
        call=call,
        system_id=system_id,
        process_id=process_id,
        operation=operation,
    )
    return err


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
    return _matches(exc_or_hr, _gen.NOT_FOUND_CODES)


def is_already_stopped(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_SYSTEM_ALREADY_STOPPED, HCS_E_PROCESS_ALREADY_STOPPED or ERROR_NOT_FOUND.

    Never ERROR_PROC_NOT_FOUND (moby #42610) and never HCS_E_SYSTEM_NOT_FOUND.
    """
    return _matches(exc_or_hr, _gen.ALREADY_STOPPED_CODES)


def is_pending(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_OPERATION_PENDING (either form) or the legacy 0xC0370103."""
    return _matches(exc_or_hr, _gen.PENDING_CODES)


def is_access_denied(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_ACCESS_DENIED or E_ACCESSDENIED."""
    return _matches(exc_or_hr, _gen.ACCESS_DENIED_CODES)


def is_invalid_state(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_INVALID_STATE (either form)."""
    return _matches(exc_or_hr, _gen.INVALID_STATE_CODES)


def is_timeout(exc_or_hr: BaseException | int) -> bool:
    """HCS_E_OPERATION_TIMEOUT, HCS_E_CONNECTION_TIMEOUT or WAIT_TIMEOUT."""
    return _matches(exc_or_hr, _gen.TIMEOUT_CODES)


def is_cancelled(exc_or_hr: BaseException | int) -> bool:
    """ERROR_CANCELLED, ERROR_OPERATION_ABORTED or HCS_E_OPERATION_ALREADY_CANCELLED."""
    return _matches(exc_or_hr, _gen.CANCELLED_CODES)


def is_retryable(exc_or_hr: BaseException | int) -> bool:
    """True when repeating the same call after a short delay may succeed.

    HCS_E_CONNECTION_TIMEOUT, HCS_E_INVALID_STATE, HCS_E_OPERATION_PENDING (and legacy),
    HCS_E_OPERATION_TIMEOUT, WAIT_TIMEOUT, ERROR_BUSY, ERROR_SHARING_VIOLATION. Always bound the
    retries. Service failures are excluded on purpose (see the module docstring).
    """
    return _matches(exc_or_hr, _gen.RETRYABLE_CODES)


# ---------------------------------------------------------------------------------------------
# Generated table and classes. Imported last because pyhcs.errors._table subclasses the classes
# above; import names from this module, never from pyhcs.errors._table directly.
# ---------------------------------------------------------------------------------------------

from . import _table as _gen  # noqa: E402  (the table needs the classes above)

if not hasattr(_gen, "CODES"):
    # pyhcs.errors._table was imported first and is importing us: its classes do not exist yet.
    raise ImportError(
        f"{_gen.__name__} is private and must not be imported first; "
        f"import {__name__} instead (it loads the generated module itself)"
    )

# pyhcs.errors is the public home of the generated names: imported and listed one by one,
# because type checkers only read a literal __all__ (tools/gen_errors.py writes this block).
# BEGIN names generated by tools/gen_errors.py (do not edit by hand)
from ._table import (  # noqa: E402, I001
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


def _adopt_generated() -> None:
    for name in _gen.__all__:
        obj = getattr(_gen, name)
        if isinstance(obj, type):
            # Show and pickle the classes under their public home, pyhcs.errors.
            obj.__module__ = __name__
    for info in _gen.CODES:
        _INFO_BY_HRESULT[info.hresult] = info


_adopt_generated()
del _adopt_generated


class HandleClosedError(_gen.InvalidHandleError):
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
            _gen.E_HANDLE,
            message or self.DEFAULT_MESSAGE,
            call=call,
            system_id=system_id,
            process_id=process_id,
            operation=operation,
        )


HcsClosedError = HandleClosedError
"""Alias of :class:`HandleClosedError`."""


class TimeoutExpiredError(_gen.OperationTimeoutError, subprocess.TimeoutExpired):
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
            _gen.HCS_E_OPERATION_TIMEOUT,
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
