"""HCS operations as objects: :class:`Operation`.

Most code never sees one: ``system.start()`` creates an operation, starts the call, waits
with a timeout and closes it. ``Operation`` is there for those who want the handle itself
(with :mod:`pyhcs.raw`), several calls in flight at once, completion callbacks or ``await``::

    op = system.submit("properties", {"PropertyTypes": ["Statistics"]})
    op.add_done_callback(lambda op: print("done:", op.exception()))
    doc = op.result(timeout=30)          # the result document (JSON text) or an HcsError

    op = pyhcs.Operation()                # raw use
    pyhcs.raw.hcs_start_compute_system(system.handle, op.handle, None)
    op.wait(timeout=60)

One Operation tracks one call. Its result is read from HCS exactly once and kept, so
``result()``, ``exception()`` and ``done()`` keep working after the operation is closed.

Timeouts: a wait that runs out raises
:class:`~pyhcs.errors.OperationTimeoutError` (a :class:`TimeoutError`) with the operation id and
the elapsed time, and leaves the operation running: wait again, or :meth:`Operation.cancel`
it. Internal operations that time out are handed to the error (``err.operation``) and close
themselves once HCS completes them, so nothing leaks and no call is abandoned.
"""

# The Pythonic layer's modules share their private names (the backend and _log modules, the
# handles' internals that the flows drive); the public surface is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Generator
from typing import Any

from . import _log
from ._handle import (
    DEFAULT,
    WAIT_SLICE,
    Deadline,
    Handle,
    Timeout,
    in_dispatcher,
    mark_dispatcher_thread,
    resolve_timeout,
    timeout_error,
)
from ._native import _backend as B
from ._native._types import HCS_INVALID_OPERATION_ID, HcsProcessInformation, OperationType
from .errors import (
    HandleClosedError,
    HcsError,
    OperationAlreadyCancelledError,
    OperationNotStartedError,
    OperationPendingError,
    OperationTimeoutError,
    make_error,
)
from .events import END_DISCONNECTED

__all__ = ["Operation"]

_HCS_E_SERVICE_DISCONNECT = 0x8037011E

# key -> Operation, for every operation whose native completion callback may still come. The
# strong reference keeps the object (and so its handle) alive while HCS can complete it.
_pending: dict[int, Operation] = {}
_keys = itertools.count(1)


def dispatch_operation(operation: int, context: int) -> None:
    """The native completion callback (runs on the dispatcher thread; ``context`` is a key)."""
    mark_dispatcher_thread()
    op = _pending.pop(context, None)
    if op is not None:
        op._on_completion()


def pending_count() -> int:
    """How many operations wait for a completion callback (for leak tests)."""
    return len(_pending)


class Operation(Handle):
    """An HCS operation (HCS_OPERATION).

    Parameters
    ----------
    callback:
        Register a native completion callback now. Needed for ``await`` and for
        ``add_done_callback`` on operations HCS completes later; pyhcs sets it itself where
        it matters.
    call, system_id, process_id:
        What the operation is about, for error messages.

    Thread safety: an Operation may be shared between threads; only one thread reads the
    result from HCS, the others wait for it.
    """

    _kind = "operation"

    def __init__(
        self,
        *,
        callback: bool = False,
        call: str | None = None,
        system_id: str | None = None,
        process_id: int | None = None,
        owner: Handle | None = None,
        process_info: bool = False,
        default_timeout: Timeout = DEFAULT,
        _adopt: int = 0,
    ) -> None:
        key = next(_keys) if callback else 0
        if _adopt:  # a pending operation started by a fused round trip (see run)
            handle = _adopt
        elif callback:
            handle = _log.timed("HcsCreateOperation", call, B.hcs_create_operation, key, dispatch_operation)
        else:
            handle = _log.timed("HcsCreateOperation", call, B.hcs_create_operation)
        super().__init__(handle)
        self.call = call
        self._system_id = system_id
        self._process_id = process_id
        self._owner = owner
        self._process_info = process_info
        self.default_timeout = default_timeout
        self._key = key
        self._state = self._idle  # the handle's lock guards the completion state too
        self._fetching = False
        self._done = False
        self._doc: str | None = None
        self._error: HcsError | None = None
        self._pi: HcsProcessInformation | None = None
        self._pi_taken = False
        self._done_callbacks: list[Callable[[Operation], None]] = []
        self._close_when_done = False
        self._closed_early = False  # closed before it completed
        self._id: int | None = None
        if key:
            _pending[key] = self

    # -- description ---------------------------------------------------------------------------
    def _context(self) -> tuple[str | None, int | None]:
        return self._system_id, self._process_id

    def __repr__(self) -> str:
        state = "closed" if self._closed else "done" if self._done else "pending"
        about = f" {self.call}" if self.call else ""
        detail = self._detail()
        return f"<pyhcs.Operation{about}{' ' + detail if detail else ''} {state}>"

    @property
    def id(self) -> int | None:
        """HcsGetOperationId: the operation's id once a call started it, else None."""
        if self._id is None and not self._closed:
            try:
                value = self._native("HcsGetOperationId", B.hcs_get_operation_id)
            except HandleClosedError:
                return None
            if value != HCS_INVALID_OPERATION_ID:
                self._id = value
        return self._id

    @property
    def type(self) -> OperationType | int:
        """HcsGetOperationType (``OperationType.NONE`` before a call used it)."""
        value = self._native("HcsGetOperationType", B.hcs_get_operation_type)
        try:
            return OperationType(value)
        except ValueError:
            return value

    # -- completion ------------------------------------------------------------------------------
    def done(self) -> bool:
        """True once the operation completed (successfully or not). Does not block."""
        if self._done:
            return True
        if self._closed:
            return False
        try:
            return self._fetch(None)
        except HandleClosedError:
            return self._done
        except OperationNotStartedError:
            return False

    def _fetch(self, wait_ms: int | None) -> bool:
        """One native Get (``wait_ms`` None) or Wait call; records completion. True if done.

        Only one thread talks to HCS about the result at a time, so process information
        (pipe handles) is taken exactly once.
        """
        with self._state:
            while self._fetching:
                self._state.wait()  # another thread's poll or one wait slice: short
            if self._done:
                return True
            self._fetching = True
        outcome: tuple[str | None, HcsError | None, HcsProcessInformation | None] | None = None
        try:
            handle = self._acquire(self.call)
            try:
                outcome = self._read_result(handle, wait_ms)
            finally:
                self._release()
        finally:
            with self._state:
                self._fetching = False
                self._state.notify_all()
        if outcome is None:
            return False
        self._finish(*outcome)
        return True

    def _read_result(
        self, handle: int, wait_ms: int | None
    ) -> tuple[str | None, HcsError | None, HcsProcessInformation | None] | None:
        """None while pending; else (document, error, process information)."""
        pi: HcsProcessInformation | None = None
        try:
            if self._process_info:
                if wait_ms is None:
                    pi, doc = _log.timed(
                        "HcsGetOperationResultAndProcessInfo", self.call,
                        B.hcs_get_operation_result_and_process_info, handle,
                    )
                else:
                    pi, doc = _log.timed(
                        "HcsWaitForOperationResultAndProcessInfo", self.call,
                        B.hcs_wait_for_operation_result_and_process_info, handle, wait_ms,
                    )
            elif wait_ms is None:
                doc = _log.timed("HcsGetOperationResult", self.call, B.hcs_get_operation_result, handle)
            else:
                doc = _log.timed(
                    "HcsWaitForOperationResult", self.call, B.hcs_wait_for_operation_result, handle, wait_ms
                )
        except OperationPendingError:
            return None
        except OperationTimeoutError as err:
            if wait_ms is not None:
                # Either this slice ran out or the call itself failed with
                # HCS_E_OPERATION_TIMEOUT; the next poll tells them apart (a poll never
                # reports a pending operation as a timeout).
                return None
            return None, self._own_error(err), None
        except HcsError as err:
            if err.hresult == 0x80370115:  # HCS_E_OPERATION_NOT_STARTED: a usage error
                raise self._own_error(err) from None
            return None, self._own_error(err), None
        return doc, None, pi

    def _own_error(self, err: HcsError) -> HcsError:
        """The failure as an error about this operation's call, not about the wait."""
        own = make_error(
            err.hresult,
            err.result_document,
            call=self.call or err.call,
            system_id=self._system_id,
            process_id=self._process_id,
            operation=self,
        )
        return own

    def _finish(self, doc: str | None, error: HcsError | None, pi: HcsProcessInformation | None) -> None:
        with self._state:
            if self._done:
                return  # already recorded (a duplicate read)
            self._done = True
            self._doc = doc
            self._error = error
            self._pi = pi
            callbacks, self._done_callbacks = self._done_callbacks, []
            close_after = self._close_when_done
            self._state.notify_all()
        if self._key:
            _pending.pop(self._key, None)
        for cb in callbacks:
            try:
                cb(self)
            except Exception:
                _log.log.exception("pyhcs: a done-callback of %r raised", self)
        if close_after:
            self.close()

    def _on_completion(self) -> None:
        try:
            self._fetch(None)
        except HandleClosedError:
            pass  # closed meanwhile: close() has recorded that
        except HcsError:
            _log.log.exception("pyhcs: reading the result of %r failed", self)

    # -- waiting -----------------------------------------------------------------------------------
    def _check_owner(self) -> bool:
        """False to go on waiting; True if done after all; raises if the owner was closed or
        the compute service went away (ServiceDisconnect is sticky: every later wait fails too)."""
        owner = self._owner
        if owner is None:
            return False
        hub = getattr(owner, "_hub", None)
        disconnected = hub is not None and hub.end_reason == END_DISCONNECTED
        if not (owner.closed or disconnected):
            return False
        # One last look: the call may have completed just before.
        try:
            if self._fetch(None):
                return True
        except HcsError:
            pass
        if owner.closed:
            raise owner._closed_error(self.call)
        raise make_error(
            _HCS_E_SERVICE_DISCONNECT,
            message="the connection to the compute service was lost while the call was pending",
            call=self.call,
            system_id=self._system_id,
            process_id=self._process_id,
            operation=self,
        )

    def _wait_until(self, deadline: Deadline) -> None:
        """Returns once done; raises OperationTimeoutError at the deadline (the operation stays
        alive) or HandleClosedError when this operation or its owner is closed."""
        while not self._done:
            if self._closed:
                raise self._closed_error(self.call)
            if self._check_owner():
                break
            if self._key and not in_dispatcher():
                # A completion callback will come: wait for the dispatcher to record it.
                # (On the dispatcher thread itself that would never happen: ask HCS.)
                with self._state:
                    if not self._done and not deadline.expired():
                        self._state.wait(deadline.slice())
                if not self._done and deadline.expired():
                    raise self._timeout(deadline)
                continue
            # Poll first (fast when HCS finished during the call, as the emulator often
            # does), then wait one slice; a poll also tells a slice that ran out from a call
            # that failed with HCS_E_OPERATION_TIMEOUT.
            if self._fetch(None):
                break
            if deadline.expired():
                raise self._timeout(deadline)
            self._fetch(deadline.slice_ms())
        if self._closed_early:
            raise self._closed_error(self.call)

    def _timeout(self, deadline: Deadline) -> HcsError:
        return timeout_error(
            self.call or "the operation",
            deadline,
            call=self.call,
            system_id=self._system_id,
            process_id=self._process_id,
            operation=self,
            operation_id=self.id,
            still="it is still running: wait on err.operation again or cancel it",
        )

    def wait(self, timeout: Timeout = DEFAULT) -> None:
        """Waits until the operation completes, successfully or not.

        ``timeout`` in seconds (omitted: the default, ``pyhcs.DEFAULT_TIMEOUT``; None: no
        limit). Raises OperationTimeoutError when it runs out (the operation keeps running) and
        HandleClosedError if the operation is closed before it completes.
        """
        if self._done:
            if self._closed_early:
                raise self._closed_error(self.call)
            return
        self._wait_until(Deadline(resolve_timeout(timeout, self.default_timeout)))

    def result(self, timeout: Timeout = DEFAULT) -> str | None:
        """Waits (see :meth:`wait`) and returns the result document (JSON text, or None), or
        raises the call's :class:`~pyhcs.errors.HcsError` (with ``.operation`` set to this)."""
        self.wait(timeout)
        if self._error is not None:
            raise self._error
        return self._doc

    def _result_by(self, deadline: Deadline) -> str | None:
        """:meth:`result` against a deadline the caller already runs (its timeout is the one
        the error reports)."""
        if not self._done:
            self._wait_until(deadline)
        return self.result(0)

    def exception(self, timeout: Timeout = DEFAULT) -> HcsError | None:
        """Waits (see :meth:`wait`) and returns the call's error, or None if it succeeded."""
        self.wait(timeout)
        return self._error

    def result_and_process_info(self, timeout: Timeout = DEFAULT) -> tuple[HcsProcessInformation, str | None]:
        """For CreateProcess/GetProcessInfo operations created with ``process_info=True``:
        the process information and the result document.

        The std handles in it are owned by this operation until :meth:`take_process_info`
        (closing the operation closes handles nobody took)."""
        doc = self.result(timeout)
        if self._pi is None:
            raise ValueError("this operation does not carry process information")
        return self._pi, doc

    def take_process_info(self) -> HcsProcessInformation | None:
        """Takes ownership of the std handles of a completed process-info operation (once)."""
        with self._state:
            if self._pi is None or self._pi_taken:
                return None
            self._pi_taken = True
            return self._pi

    def add_done_callback(self, fn: Callable[[Operation], None]) -> None:
        """Calls ``fn(operation)`` once the operation completes (at once if it already has).

        It runs on the thread that sees the completion: pyhcs' dispatcher thread, or a thread
        waiting on the operation. Exceptions it raises are logged. It must not block for long.
        """
        with self._state:
            if not self._done:
                self._done_callbacks.append(fn)
                fn_pending = True
            else:
                fn_pending = False
        if not fn_pending:
            try:
                fn(self)
            except Exception:
                _log.log.exception("pyhcs: a done-callback of %r raised", self)
            return
        if not self._closed:
            self._ensure_callback()

    def _ensure_callback(self) -> None:
        """Makes HCS report completion through a native callback, if it does not already."""
        with self._state:
            if self._key or self._done:
                return
            key = next(_keys)
            self._key = key
            _pending[key] = self
        try:
            self._native("HcsSetOperationCallback", B.hcs_set_operation_callback, key, dispatch_operation)
        except HcsError:
            with self._state:
                self._key = 0
            _pending.pop(key, None)
            raise
        # It may have completed before the callback was set: look once.
        try:
            self._fetch(None)
        except HcsError:
            pass

    def abandon(self) -> None:
        """Hands the operation to HCS: it closes itself once it completes (or now, if it has).

        Results stay readable from this object afterwards. Used for operations whose waiter
        gave up (a timeout, a cancelled task): nothing the call uses is freed early.
        """
        with self._state:
            self._close_when_done = True
            done = self._done
        if done:
            self.close()
            return
        try:
            self._ensure_callback()
        except HcsError:
            self.close()  # could not watch it: closing a pending operation is safe

    def cancel(self) -> bool:
        """HcsCancelOperation: asks HCS to cancel the call.

        Returns True if HCS accepted the request (the operation then completes, usually with
        ERROR_CANCELLED), False if it had already completed or been cancelled. Raises
        :class:`~pyhcs.errors.UnimplementedError` (a NotImplementedError) where HCS does not
        implement cancellation, which is what the documentation describes.
        """
        if self._done:
            return False
        try:
            self._native("HcsCancelOperation", B.hcs_cancel_operation)
        except OperationAlreadyCancelledError:
            return False
        except HcsError as err:
            if err.hresult == 0x80004001:
                err.strerror = (
                    "HcsCancelOperation is not implemented by this host (as documented); "
                    "the operation keeps running"
                )
            raise
        return True

    def __await__(self) -> Generator[Any, None, str | None]:
        from ._flow_aio import wait_operation

        return wait_operation(self).__await__()

    # -- closing ---------------------------------------------------------------------------------------
    def _wake_waiters(self) -> None:
        with self._state:
            self._state.notify_all()

    def _close_native(self) -> None:
        if self._key:
            _pending.pop(self._key, None)
        # HcsCloseOperation on a pending operation is safe: HCS keeps running the call and
        # drops its result; no completion callback comes after it returns.
        B.hcs_close_operation(self._handle)
        with self._state:
            untaken = self._pi if (self._pi is not None and not self._pi_taken) else None
            self._pi_taken = True
        if untaken is not None:
            for std in (untaken.std_input, untaken.std_output, untaken.std_error):
                if std is not None:
                    try:
                        B.close_handle(std)
                    except OSError:
                        pass
        if not self._done:
            self._closed_early = True
            self._finish(None, self._closed_error(self.call), None)


# ------------------------------------------------------------------ helpers for systems and processes


def initiate(subject: Handle, op: Operation, call: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Runs the initiating call ``fn(subject_handle, op_handle, *args)``.

    Both handles count as in flight for its duration; an HcsError is annotated with the
    subject's system and process id. The caller closes ``op`` if this raises.
    """
    handle = subject._acquire(call)
    try:
        op_handle = op._acquire(call)
        try:
            return _log.timed(call, subject._detail, fn, handle, op_handle, *args)
        finally:
            op._release()
    except HcsError as err:
        raise subject._annotate(err, call) from None
    finally:
        subject._release()


#: The initiating calls of the backends' fused round trip (``_run_call``), by their index there.
FUSED: dict[str, int] = {
    name: i
    for i, name in enumerate((
        "HcsStartComputeSystem", "HcsShutDownComputeSystem", "HcsTerminateComputeSystem",
        "HcsCrashComputeSystem", "HcsPauseComputeSystem", "HcsResumeComputeSystem",
        "HcsSaveComputeSystem", "HcsGetComputeSystemProperties",
        "HcsTerminateProcess", "HcsSignalProcess", "HcsGetProcessProperties", "HcsModifyProcess",
    ))
}  # fmt: skip


def _snake(call: str) -> str:
    return "hcs_" + "".join("_" + c.lower() if c.isupper() else c for c in call[3:]).lstrip("_")


_INITIATOR = {call: _snake(call) for call in FUSED}
_SLICE_MS = int(WAIT_SLICE * 1000)


def _fusable(call: str) -> int:
    """The fused index of ``call``, or -1 when the public functions it stands for are not the
    backend's own (a trace or a test wraps them: then each call must go through them)."""
    index = FUSED.get(call, -1)
    if index < 0:
        return -1
    module = B._module
    # A trace wraps all of them at once; a test may replace the initiating call alone.
    name = _INITIATOR[call]
    if (
        getattr(B, name) is not getattr(module, name)
        or B.hcs_wait_for_operation_result is not module.hcs_wait_for_operation_result
    ):
        return -1
    return index


def run(
    subject: Handle,
    call: str,
    fn: Callable[..., Any],
    document: str | None,
    deadline: Deadline,
    *,
    system_id: str | None = None,
    process_id: int | None = None,
    default_timeout: Timeout = DEFAULT,
) -> str | None:
    """``complete(op, deadline)`` of a new operation started by ``fn(subject_handle, op_handle,
    document)``: the common round trip of a system or process call.

    The backend's fused entry does create, initiate, a wait of one slice and close in one
    call; anything but a quick success (a failure, a call still running) comes back as the
    open operation, which is finished the ordinary way, so errors, timeouts (``err.operation``)
    and closes of ``subject`` behave as with :func:`initiate` and :func:`complete`.
    """
    index = _fusable(call)
    if index < 0:
        op = Operation(call=call, system_id=system_id, process_id=process_id, owner=subject,
                       default_timeout=default_timeout)  # fmt: skip
        try:
            initiate(subject, op, call, fn, document)
        except BaseException:
            op.close()
            raise
        return complete(op, deadline)
    handle = subject._acquire(call)
    try:
        left = deadline.end - time.monotonic()
        wait_ms = 0 if left <= 0 else _SLICE_MS if left >= WAIT_SLICE else int(left * 1000)
        op_handle, doc = _log.timed(call, subject._detail, B._module._run_call, index, handle, document, wait_ms)
    except HcsError as err:
        raise subject._annotate(err, call) from None
    finally:
        subject._release()
    if not op_handle:
        return doc  # type: ignore[no-any-return]
    op = Operation(call=call, system_id=system_id, process_id=process_id, owner=subject,
                   default_timeout=default_timeout, _adopt=op_handle)  # fmt: skip
    return complete(op, deadline)


#: Queries: answered from what the service knows, so an emulator completes them during the
#: initiating call when no callback is set. Everything else is started with a callback.
_QUERIES = frozenset({"HcsGetComputeSystemProperties", "HcsGetProcessProperties"})


def begin(
    subject: Handle,
    call: str,
    fn: Callable[..., Any],
    document: str | None,
    *,
    system_id: str | None = None,
    process_id: int | None = None,
    default_timeout: Timeout = DEFAULT,
) -> tuple[Operation | None, str | None]:
    """Starts a call whose completion is awaited (pyhcs.aio): ``(None, document)`` when it
    already succeeded, else ``(operation, None)`` with a completion callback set, for the
    caller to await (and close).

    A query goes through the fused round trip without waiting: when the library completed it
    during the initiating call (the emulator does that for calls without a callback), the
    result costs no callback, no dispatcher hop and no future. Any other outcome sets the
    callback on the open operation (which then checks once more whether it completed).
    """
    index = _fusable(call) if call in _QUERIES else -1
    if index < 0:
        op = Operation(call=call, system_id=system_id, process_id=process_id, owner=subject, callback=True,
                       default_timeout=default_timeout)  # fmt: skip
        try:
            initiate(subject, op, call, fn, document)
        except BaseException:
            op.close()
            raise
        return op, None
    handle = subject._acquire(call)
    try:
        op_handle, doc = _log.timed(call, subject._detail, B._module._run_call, index, handle, document, 0)
    except HcsError as err:
        raise subject._annotate(err, call) from None
    finally:
        subject._release()
    if not op_handle:
        return None, doc
    op = Operation(call=call, system_id=system_id, process_id=process_id, owner=subject,
                   default_timeout=default_timeout, _adopt=op_handle)  # fmt: skip
    try:
        op._ensure_callback()
    except BaseException:
        op.close()
        raise
    return op, None


def complete(op: Operation, timeout: Timeout | Deadline) -> str | None:
    """Waits for an internal operation and closes it; returns its result document.

    On a timeout the operation is not closed under HCS: it is abandoned (it closes itself
    when HCS completes it) and handed to the error as ``err.operation`` for a retry or a
    cancel. Any other way out (a failure, Ctrl-C, a close) closes it, which is safe even
    while it runs.
    """
    try:
        doc = op._result_by(timeout) if isinstance(timeout, Deadline) else op.result(timeout)
    except OperationTimeoutError as err:
        if err.operation is op and not op._done:
            op.abandon()
        else:
            op.close()
        raise
    except BaseException:
        op.close()
        raise
    op.close()
    return doc
