"""The asyncio driver of the flows (:mod:`pyhcs._flow` holds the steps and the blocking driver).

:func:`drive` awaits every step of a flow, and nothing it does blocks the event loop: a
:class:`~pyhcs._flow.Call` runs in a thread of its own (:func:`in_thread`), an
:class:`~pyhcs._flow.Action` is submitted with a completion callback and awaited, a
:class:`~pyhcs._flow.Wait` subscribes a loop wake-up (:class:`LoopWaker`: one
``call_soon_threadsafe`` per batch of completions and events, however many arrived).

A module of its own, below both :mod:`pyhcs.operation` (``await op`` is :func:`wait_operation`)
and :mod:`pyhcs.aio` (the awaitable objects, the pipes), so that neither imports the other
back, and blocking code never imports asyncio.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._flow import Action, Call, Communicate, Flow, OperationWait, Wait
from ._handle import DEFAULT, Deadline, Timeout, resolve_timeout
from .errors import OperationTimeoutError

if TYPE_CHECKING:
    from .operation import Operation

__all__ = [
    "Io",
    "LoopWaker",
    "discard_in_thread",
    "drive",
    "in_thread",
    "resolver",
    "retrieve",
    "seconds",
    "wait",
    "wait_operation",
    "waker",
]

_T = TypeVar("_T")


# ------------------------------------------------------------------------------ loop wake-ups


class LoopWaker:
    """Runs functions on one event loop from other threads, batching the wake-ups: whatever
    arrives before the loop gets to it costs one ``call_soon_threadsafe``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[Callable[[], object]] = []
        self._scheduled = False

    def call(self, fn: Callable[[], object]) -> bool:
        """Runs ``fn`` on the loop soon; False if the loop is closed (``fn`` never runs)."""
        with self._lock:
            self._pending.append(fn)
            if self._scheduled:
                return True
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            # The loop is closed: nobody can await these any more.
            with self._lock:
                self._pending.clear()
                self._scheduled = False
            return False
        return True

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        for fn in batch:
            fn()


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopWaker] = weakref.WeakKeyDictionary()
_wakers_lock = threading.Lock()


def waker(loop: asyncio.AbstractEventLoop) -> LoopWaker:
    """The one :class:`LoopWaker` of ``loop``."""
    found = _wakers.get(loop)
    if found is None:
        with _wakers_lock:
            found = _wakers.get(loop)
            if found is None:
                found = _wakers[loop] = LoopWaker(loop)
    return found


def resolver(fut: asyncio.Future[None]) -> Callable[[], object]:
    """A function that completes ``fut`` (once; later calls do nothing)."""

    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    return resolve


def seconds(deadline: Deadline) -> float | None:
    """What is left of ``deadline`` as asyncio takes a timeout (None: no limit)."""
    remaining = deadline.remaining()
    return None if math.isinf(remaining) else remaining


# ------------------------------------------------------------------------------ the driver


async def wait(step: Wait) -> None:
    """Awaits a :class:`pyhcs._flow.Wait`: subscribes a loop wake-up, looks again at each."""
    loop = asyncio.get_running_loop()
    wakeups = waker(loop)
    while True:
        fut: asyncio.Future[None] = loop.create_future()
        resolve = resolver(fut)

        def wake(resolve: Callable[[], object] = resolve) -> None:
            wakeups.call(resolve)

        if not step.subscribe(wake):
            break
        try:
            await asyncio.wait_for(fut, seconds(step.deadline))
        except asyncio.TimeoutError:
            step.unsubscribe(wake)
            break
        except asyncio.CancelledError:
            step.unsubscribe(wake)
            raise
    step.finish()


async def _call(step: Call[_T]) -> _T:
    """Runs a synchronous call in a thread of its own (see :func:`in_thread`). If the
    awaiting task is cancelled, what the call returns goes to ``step.discard``: a handle it
    opened is closed, never leaked."""
    fut = in_thread(step.fn, step.discard)
    try:
        return await fut
    except asyncio.CancelledError:
        # Task.cancel() between the result's arrival and the task's next step throws the
        # cancellation in instead of the result (it happens under load, when a cancel
        # and the call's return meet): the result is in ``fut`` and nobody else takes it.
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            discard_in_thread(step.discard, fut.result())
        raise


async def _complete(op: Operation, deadline: Deadline) -> str | None:
    """The awaitable :func:`pyhcs.operation.complete`: waits, closes, returns the result."""
    try:
        await wait(OperationWait(op, deadline))
    except (OperationTimeoutError, asyncio.CancelledError):
        op.abandon()  # HCS may still complete it: it closes itself then
        raise
    except BaseException:
        op.close()
        raise
    try:
        return op.result(0)
    finally:
        op.close()


#: What does the pipe I/O of a :class:`~pyhcs._flow.Communicate` step (``ComputeSystem.run``).
Io = Callable[[Communicate], Awaitable[tuple[bytes | None, bytes | None]]]


async def drive(flow: Flow[_T], communicate: Io | None = None) -> _T:
    """The asyncio driver of a flow (see :mod:`pyhcs._flow`): every step is awaited, nothing
    blocks the loop. ``communicate`` does the pipe I/O of a :class:`~pyhcs._flow.Communicate`."""
    value: Any = None
    failure: BaseException | None = None
    while True:
        try:
            step = flow.throw(failure) if failure is not None else flow.send(value)
        except StopIteration as stop:
            result: _T = stop.value
            return result
        value = failure = None
        try:
            if isinstance(step, Call):
                value = await _call(step)
            elif isinstance(step, Action):
                if step.begin is None:
                    value = await _complete(step.submit(), step.deadline)
                else:
                    op, value = step.begin()
                    if op is not None:
                        value = await _complete(op, step.deadline)
            elif isinstance(step, Communicate):
                if communicate is None:  # pragma: no cover - only run() yields it
                    raise TypeError("this flow does pipe I/O: pass communicate=")
                value = await communicate(step)
            else:
                await wait(step)
        except BaseException as exc:  # handed to the flow, which decides
            failure = exc
        finally:
            del step


# ------------------------------------------------------------------------------ operations


async def wait_operation(op: Operation, timeout: Timeout = DEFAULT) -> str | None:
    """Awaits ``op`` and returns its result document (``await op`` does the same).

    Raises the call's HcsError, or OperationTimeoutError when ``timeout`` runs out (the
    operation is left running; await it again or cancel it). The operation stays open: its
    owner closes it.
    """
    await wait(OperationWait(op, Deadline(resolve_timeout(timeout, op.default_timeout))))
    return op.result(0)


# ------------------------------------------------------------------------------ threads


def retrieve(fut: asyncio.Future[Any]) -> None:
    """A done callback: marks the outcome of a future nobody may await as seen, so asyncio
    never logs "exception was never retrieved" for it (the awaiter, if any, still gets it)."""
    if not fut.cancelled():
        fut.exception()


def in_thread(fn: Callable[[], _T], discard: Callable[[_T], object] | None = None) -> asyncio.Future[_T]:
    """Runs ``fn`` in a thread of its own and returns a future of its result.

    Not the loop's default executor: a blocking pipe read can last as long as the child
    stays quiet, and a bounded pool full of such reads would make a kill() wait behind
    them. A thread per call never queues. Cancelling the future leaves ``fn`` running; its
    result, when nobody awaits it any more, goes to ``discard`` (in another thread).
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()
    fut.add_done_callback(retrieve)
    wakeups = waker(loop)
    # Set on the loop when the future is cancelled; read by the thread once fn returned, so
    # a result nobody awaits is discarded exactly once, even if the loop closes meanwhile.
    lock = threading.Lock()
    abandoned = False

    def on_done(done: asyncio.Future[_T]) -> None:
        nonlocal abandoned
        if done.cancelled():
            with lock:
                abandoned = True

    fut.add_done_callback(on_done)

    def settle(value: Any, failed: bool) -> None:
        if fut.done():
            if not failed:  # cancelled after the thread handed the result over
                discard_in_thread(discard, value)
            return
        if failed:
            fut.set_exception(value)
        else:
            fut.set_result(value)

    def work() -> None:
        try:
            value = fn()
        except BaseException as exc:
            wakeups.call(functools.partial(settle, exc, True))
            return
        with lock:
            gone = abandoned
        if gone or not wakeups.call(functools.partial(settle, value, False)):
            _discard(discard, value)  # nobody awaits it, or the loop closed: nobody can

    threading.Thread(target=work, daemon=True, name="pyhcs-aio-io").start()
    return fut


def _discard(discard: Callable[[_T], object] | None, value: _T) -> None:
    if discard is not None:
        try:
            discard(value)
        except Exception:
            logging.getLogger("pyhcs").debug("pyhcs: discarding %r failed", value, exc_info=True)


def discard_in_thread(discard: Callable[[_T], object] | None, value: _T) -> None:
    """Hands a result nobody takes to ``discard`` in a thread of its own (closing a handle
    may wait for the service: never on the loop)."""
    if discard is not None:
        threading.Thread(target=_discard, args=(discard, value), daemon=True, name="pyhcs-aio-discard").start()
