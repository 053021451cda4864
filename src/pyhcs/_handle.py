"""What every handle-owning object of the Pythonic layer shares: the lock, the closed state,
the close order, the finalizer rules, timeouts and the fork and exit guards.

Invariants (for ComputeSystem, Process and Operation alike):

* Every native call on the handle goes through :meth:`Handle._native` (or brackets itself with
  :meth:`Handle._acquire`/:meth:`Handle._release`). That raises :class:`HandleClosedError`
  locally once the object is closed, so a closed handle never reaches native code, and counts
  the call as in flight.
* :meth:`Handle.close` is idempotent and follows one order, written here once:
  mark closed (new calls now fail locally) -> wake the object's waiters -> close children ->
  wait until no native call on the handle is in flight (waits are sliced, so this is short;
  pyhcs never closes a handle under a running call: hcsshim's use-after-free lesson) ->
  unregister the event callback -> close the native handle -> drop the registry entry.
  The native steps run with the GIL released (ctypes, or ``nogil`` in the compiled backend).
* Close is safe from the dispatcher thread (a callback closing its own handle) and from any
  other thread while a callback runs: the object's lock is never held across a native call or
  a user callback, so the dispatcher can never wait for a thread that waits for it.
* ``__del__`` warns (ResourceWarning) and closes, except at interpreter exit and in a forked
  child, where it does nothing: the child does not own the parent's handles.
"""

# The Pythonic layer's modules share their private names (the _log module); the public surface
# is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import atexit
import contextlib
import enum
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from . import _log
from .errors import HandleClosedError, HcsError, TimeoutExpiredError

if TYPE_CHECKING:
    from .operation import Operation

__all__ = [
    "DEFAULT",
    "DEFAULT_TIMEOUT_ENV",
    "WAIT_SLICE",
    "Deadline",
    "Handle",
    "Timeout",
    "default_timeout_from_env",
    "in_dispatcher",
    "reports_timeout",
    "resolve_timeout",
    "timeout_error",
]

_T = TypeVar("_T")
_H = TypeVar("_H", bound="Handle")

#: Environment variable holding the default timeout of every wait, in seconds.
DEFAULT_TIMEOUT_ENV = "PYHCS_TIMEOUT"
_FALLBACK_TIMEOUT = 240.0  # hcsshim's watchdog default

#: Waits are cut into slices of this many seconds. Between slices the waiter notices that the
#: object was closed (so close() is never held up for long by a waiter) and Python handles
#: signals, so Ctrl-C works on every platform.
WAIT_SLICE = 0.25

_exiting = False
_fork_generation = 0
_dispatch_ident = 0


def _at_exit() -> None:
    global _exiting
    _exiting = True


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def mark_dispatcher_thread() -> None:
    """Called by the dispatch functions: records which thread delivers callbacks."""
    global _dispatch_ident
    _dispatch_ident = threading.get_ident()


def in_dispatcher() -> bool:
    """True on the backend's dispatcher thread (inside a pyhcs callback)."""
    return threading.get_ident() == _dispatch_ident


# --------------------------------------------------------------------------------- timeouts


def default_timeout_from_env() -> float:
    """The default wait timeout: ``PYHCS_TIMEOUT`` if set (seconds, ``inf`` allowed), else 240."""
    text = os.environ.get(DEFAULT_TIMEOUT_ENV, "").strip()
    if not text:
        return _FALLBACK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        _log.log.warning("pyhcs: ignoring %s=%r (not a number of seconds)", DEFAULT_TIMEOUT_ENV, text)
        return _FALLBACK_TIMEOUT
    if math.isnan(value) or value < 0:
        _log.log.warning("pyhcs: ignoring %s=%r (must be >= 0)", DEFAULT_TIMEOUT_ENV, text)
        return _FALLBACK_TIMEOUT
    return value


class _DefaultTimeout(enum.Enum):
    """The type of :data:`DEFAULT` (an enum, so type checkers can narrow on ``is DEFAULT``)."""

    DEFAULT = "DEFAULT"

    def __repr__(self) -> str:
        return "pyhcs.DEFAULT"

    __str__ = __repr__


#: "Not given": the timeout of a call whose ``timeout=`` was omitted, and the
#: ``default_timeout`` of an object created without one. It stands for the object's
#: ``default_timeout``, else ``pyhcs.DEFAULT_TIMEOUT``.
DEFAULT = _DefaultTimeout.DEFAULT

#: What every ``timeout=`` takes: seconds (``math.inf`` allowed), None for no limit (as in
#: subprocess, asyncio and concurrent.futures), or :data:`DEFAULT`.
Timeout: TypeAlias = float | _DefaultTimeout | None


def resolve_timeout(timeout: Timeout, default: Timeout = DEFAULT) -> float:
    """The seconds a wait may take: ``timeout`` unless it is :data:`DEFAULT`, else the
    object's ``default``, else ``pyhcs.DEFAULT_TIMEOUT``. None (no limit) is ``math.inf``:
    such a wait is still sliced, so Ctrl-C and close() interrupt it."""
    if timeout is DEFAULT:
        timeout = default
    if timeout is DEFAULT:
        pkg = sys.modules.get("pyhcs")
        timeout = getattr(pkg, "DEFAULT_TIMEOUT", _FALLBACK_TIMEOUT)
        if timeout is DEFAULT:
            timeout = _FALLBACK_TIMEOUT
    if timeout is None:
        return math.inf
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise ValueError(f"timeout must be >= 0 seconds (None for no limit), not {timeout!r}")
    return value


class Deadline:
    """A point in time a wait must not pass."""

    __slots__ = ("end", "start", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.start = time.monotonic()
        self.end = self.start + timeout

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.end

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def slice(self) -> float:
        """Seconds the next slice of a wait may last."""
        return min(WAIT_SLICE, self.remaining())

    def slice_ms(self) -> int:
        return int(self.slice() * 1000)


def timeout_error(
    what: str,
    deadline: Deadline,
    *,
    call: str | None = None,
    system_id: str | None = None,
    process_id: int | None = None,
    operation: Operation | None = None,
    operation_id: int | None = None,
    still: str = "it is still running; wait again or cancel it",
) -> TimeoutExpiredError:
    """A :class:`~pyhcs.errors.TimeoutExpiredError` (an OperationTimeoutError, TimeoutError
    and subprocess.TimeoutExpired) for a wait that ran out; ``.operation`` is the
    still-pending :class:`~pyhcs.Operation`, if any."""
    elapsed = deadline.elapsed()
    op_part = f" (operation {operation_id})" if operation_id is not None else ""
    message = f"{what}{op_part} did not finish within {deadline.timeout:g} s ({elapsed:.3f} s elapsed); {still}"
    return TimeoutExpiredError(
        message,
        timeout=deadline.timeout,
        elapsed=elapsed,
        cmd=call or what,
        call=call,
        system_id=system_id,
        process_id=process_id,
        operation=operation,
        operation_id=operation_id,
    )


@contextlib.contextmanager
def reports_timeout(deadline: Deadline) -> Generator[None, None, None]:
    """A timeout raised inside reports ``deadline``'s timeout: the one the caller gave, not
    what was left of it for the inner wait that ran out."""
    try:
        yield
    except TimeoutExpiredError as err:
        err.report_outer(deadline.timeout, deadline.elapsed())
        raise


# --------------------------------------------------------------------------------- handles


class Handle:
    """Base of every object that owns a native HCS handle. See the module docstring.

    Subclasses implement :meth:`_close_native` (and optionally :meth:`_close_children` and
    :meth:`_wake_waiters`) and describe themselves in :meth:`_context`.
    """

    _kind = "handle"

    _handle: int
    _closed: bool

    def __init__(self, handle: int) -> None:
        self._handle = handle
        self._lock = threading.Lock()
        # One condition for "no call in flight" and "close finished" (and, in subclasses,
        # their own state changes); waiters re-check their predicate.
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._close_finished = False
        self._inflight = 0
        self._closer = 0
        self._generation = _fork_generation

    # -- context used in errors and logs -------------------------------------------------
    def _context(self) -> tuple[str | None, int | None]:
        """(system id, process id) this handle is about, for error messages."""
        return None, None

    def _detail(self) -> str | None:
        system_id, process_id = self._context()
        parts: list[str] = []
        if system_id is not None:
            parts.append(f"system {system_id!r}")
        if process_id is not None:
            parts.append(f"pid {process_id}")
        return ", ".join(parts) or None

    def _annotate(self, err: HcsError, call: str | None = None) -> HcsError:
        """Adds this object's system id, process id and the call name to ``err``."""
        system_id, process_id = self._context()
        if err.system_id is None:
            err.system_id = system_id
        if err.process_id is None:
            err.process_id = process_id
        if err.call is None:
            err.call = call
        return err

    def _closed_error(self, call: str | None = None) -> HandleClosedError:
        system_id, process_id = self._context()
        if self._generation != _fork_generation:
            message = f"this {self._kind} handle belongs to the parent process (the process forked)"
        else:
            message = f"the {self._kind} was closed by this process; it can no longer be used"
        return HandleClosedError(message, call=call, system_id=system_id, process_id=process_id)

    # -- in-flight accounting ---------------------------------------------------------------
    def _acquire(self, call: str | None = None) -> int:
        """Counts a native call as in flight and returns the handle; raises locally if closed."""
        with self._lock:
            if self._closed or self._generation != _fork_generation:
                raise self._closed_error(call)
            self._inflight += 1
            return self._handle

    def _ensure_open(self, call: str | None = None) -> None:
        """Raises HandleClosedError (locally) once the object is closed."""
        if self._closed or self._generation != _fork_generation:
            raise self._closed_error(call)

    def _release(self) -> None:
        with self._lock:
            self._inflight -= 1
            if self._inflight == 0 and self._closed:
                self._idle.notify_all()

    def _native(self, call: str, fn: Callable[..., _T], *args: Any) -> _T:
        """Calls ``fn(handle, *args)`` as an in-flight native call, with errors annotated."""
        handle = self._acquire(call)
        try:
            return _log.timed(call, self._detail, fn, handle, *args)
        except HcsError as err:
            raise self._annotate(err, call) from None
        finally:
            self._release()

    # -- state ------------------------------------------------------------------------------
    @property
    def handle(self) -> int:
        """The raw handle, for :mod:`pyhcs.raw`. Raises HandleClosedError once closed.

        The object still owns it: never close it yourself.
        """
        with self._lock:
            if self._closed or self._generation != _fork_generation:
                raise self._closed_error()
            return self._handle

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or in a forked child)."""
        return self._closed or self._generation != _fork_generation

    # -- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        """Closes the handle; idempotent. See the module docstring for the order.

        Safe from any thread, including from a callback of this very object. A second
        caller waits until the first one has finished, except on the dispatcher thread (it
        returns at once, because the first closer may be waiting for that thread).
        """
        me = threading.get_ident()
        with self._lock:
            already = self._closed
            if not already:
                self._closed = True
                self._closer = me
        if already:
            if self._closer != me and not in_dispatcher():
                with self._lock:
                    while not self._close_finished:
                        self._idle.wait(WAIT_SLICE)
            return
        try:
            if self._generation != _fork_generation:
                return  # a forked child owns none of this
            self._wake_waiters()
            self._close_children()
            with self._lock:
                # Never close under a running call; in-flight waits notice the close within
                # one slice. A call made by this very thread cannot be in flight here.
                while self._inflight > 0:
                    self._idle.wait(WAIT_SLICE)
            _log.timed(f"close {self._kind}", self._detail, self._close_native)
        finally:
            with self._lock:
                self._close_finished = True
                self._idle.notify_all()

    def _wake_waiters(self) -> None:
        """Wakes threads blocked in waits on this object (they then raise HandleClosedError)."""

    def _close_children(self) -> None:
        """Closes objects that must go before this one (a system's processes)."""

    def _close_native(self) -> None:
        """Unregisters callbacks, closes the native handle, drops registry entries."""
        raise NotImplementedError

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A gentle finalizer: nothing at exit or in a forked child; else
        # warn and close. A half-constructed object has no _closed attribute.
        if _exiting or getattr(self, "_closed", True) or self._generation != _fork_generation:
            return
        try:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, source=self, stacklevel=2)
        except Exception:  # pragma: no cover - warnings machinery torn down
            pass
        try:
            self.close()
        except Exception:  # pragma: no cover - never raise from a finalizer
            _log.log.debug("pyhcs: closing %r from __del__ failed", self, exc_info=True)
