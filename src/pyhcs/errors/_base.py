"""The hand-written base of :mod:`pyhcs.errors`: HRESULT integer helpers, the table row type,
the class registry, :class:`HcsError` and its families, :func:`make_error`.

Private: import these names from :mod:`pyhcs.errors`. The generated table
(:mod:`pyhcs.errors._table`) subclasses the classes here, and :mod:`pyhcs.errors` joins the two;
this module imports neither, so the imports run one way (``__init__`` -> ``_table`` -> ``_base``).
"""

from __future__ import annotations

import copy as _copy
import json
import operator
import sys
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeGuard

if TYPE_CHECKING:
    from ..operation import Operation

__all__ = [
    "HRESULT_FROM_WIN32",
    "AlreadyStoppedError",
    "CancelledError",
    "HResultInfo",
    "HcsError",
    "NotFoundError",
    "ServiceError",
    "error_class",
    "facility",
    "hresult_info",
    "hresult_name",
    "is_success",
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


# Filled in by pyhcs.errors from the generated table (pyhcs.errors._table).
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
