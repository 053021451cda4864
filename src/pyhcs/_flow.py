"""Compound calls written once, as I/O-free steps, and the blocking driver that runs them.

A flow is a generator: it computes, and wherever it must wait it yields a *step* saying
what for, then goes on with what the driver sends back (or raises what the driver throws in).
Exactly two drivers exist: :func:`run` here, which blocks the calling thread, and
``pyhcs.aio``'s, which awaits. ``ComputeSystem.stop`` is ``run(stop_flow(...))`` and
``aio.ComputeSystem.stop`` is ``await drive(stop_flow(...))``: the escalation, its logging and
its clean-up exist once. The steps:

* :class:`Call`: a synchronous function call that may block in the compute service (open a
  handle, register a callback, a zero wait for an exit). Blocking: called in place. asyncio: run
  in a thread of its own; if the awaiting task is cancelled, ``discard`` receives the result
  when the call returns, so a handle it opened is not leaked.
* :class:`Action`: start an operation-based call and wait for its result. Blocking: ``run``,
  the one synchronous submit-and-wait path (``ComputeSystem._run``/``Process._run``, i.e.
  ``operation.complete``). asyncio: ``submit`` (with a completion callback) and an await.
* :class:`Wait` (:class:`OperationWait`, :class:`EventWait`): wait for an operation to
  complete or for an object's events to make a condition true, against a deadline. Both
  drivers use the same ``ready``/``subscribe``/``finish``; only how they sleep differs.

Why generators rather than subclasses that override the waiting points (pyzmq's way): a
flow here waits in several places of different kinds and mixes in cleanup that must run on
every way out (``try``/``finally`` around a pending shutdown in ``stop``, a kill after a
failed ``run``). A generator keeps that control flow in one readable function, and an
exception thrown into it at the waiting point (a timeout, Ctrl-C, a cancelled task) runs the
same ``except``/``finally`` blocks in both worlds; subclasses would need every wait to be a
method of its own and would split each flow across two class hierarchies.
"""

# The Pythonic layer's modules share their private names (the backend and _log modules, the
# handles' internals that the flows drive); the public surface is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import abc
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._handle import Deadline, timeout_error
from .errors import TimeoutExpiredError

if TYPE_CHECKING:
    from .events import EventHub
    from .operation import Operation
    from .process import Process

__all__ = ["Action", "Call", "Communicate", "EventWait", "Flow", "OperationWait", "Step", "Wait", "run"]

_T = TypeVar("_T")


class Call(Generic[_T]):
    """A synchronous call that may block in the service (no operation, no timeout)."""

    __slots__ = ("discard", "fn")

    def __init__(self, fn: Callable[[], _T], discard: Callable[[_T], object] | None = None) -> None:
        self.fn = fn
        #: what to do with the result when nobody is left to take it (a cancelled task)
        self.discard = discard


class Action:
    """An operation-based call: start it, wait for it, close it; the result document."""

    __slots__ = ("begin", "deadline", "run", "submit")

    def __init__(
        self,
        run: Callable[[float], str | None],
        submit: Callable[[], Operation],
        deadline: Deadline,
        begin: Callable[[], tuple[Operation | None, str | None]] | None = None,
    ) -> None:
        self.run = run
        self.submit = submit
        self.deadline = deadline
        # an event loop's start of the call (pyhcs.operation.begin): (None, document) when the
        # library answered during the initiating call, so nothing is left to await
        self.begin = begin


class Wait(abc.ABC):
    """A wait for a condition that other threads make true, against a deadline.

    ``block()`` waits on this thread. An event loop instead calls ``subscribe(wake)``: False
    if the condition already holds, else ``wake()`` is called (from any thread) at the next
    change, after which it looks again; ``unsubscribe(wake)`` withdraws a ``wake`` that is no
    longer wanted. ``finish()`` (once ready, or at the deadline) returns or raises the outcome.
    """

    deadline: Deadline

    @abc.abstractmethod
    def block(self) -> None:
        """See the class docstring."""

    @abc.abstractmethod
    def subscribe(self, wake: Callable[[], None]) -> bool:
        """See the class docstring."""

    @abc.abstractmethod
    def unsubscribe(self, wake: Callable[[], None]) -> None:
        """See the class docstring."""

    @abc.abstractmethod
    def finish(self) -> None:
        """See the class docstring."""


class OperationWait(Wait):
    """Until ``op`` completed; ``finish`` raises its timeout error (the operation stays alive)
    if it has not, or HandleClosedError if it was closed before it completed."""

    __slots__ = ("deadline", "op")

    def __init__(self, op: Operation, deadline: Deadline) -> None:
        self.op = op
        self.deadline = deadline

    def block(self) -> None:
        if not self.op._done:
            self.op._wait_until(self.deadline)

    def subscribe(self, wake: Callable[[], None]) -> bool:
        if self.op._done:
            return False
        self.op.add_done_callback(lambda _op: wake())
        return True

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        pass  # a late wake() finds its future done and does nothing

    def finish(self) -> None:
        op = self.op
        if not op._done:
            raise op._timeout(self.deadline)
        if op._closed_early:
            raise op._closed_error(op.call)


class EventWait(Wait):
    """Until ``ready()`` holds for ``hub`` (checked under its lock); ``finish`` raises a
    timeout error about ``what`` if it does not."""

    __slots__ = ("deadline", "hub", "ready", "still", "what")

    def __init__(
        self, hub: EventHub, ready: Callable[[], bool], deadline: Deadline, what: str,
        still: str = "it is still running",
    ) -> None:
        self.hub = hub
        self.ready = ready
        self.deadline = deadline
        self.what = what
        self.still = still

    def block(self) -> None:
        self.hub.wait(self.ready, self.deadline)

    def subscribe(self, wake: Callable[[], None]) -> bool:
        return self.hub.notify_when_changed(self.ready, wake)

    def unsubscribe(self, wake: Callable[[], None]) -> None:
        self.hub.forget_waiter(wake)

    def finish(self) -> None:
        with self.hub.cond:
            if self.ready():
                return
        hub = self.hub
        raise timeout_error(self.what, self.deadline, system_id=hub.system_id, process_id=hub.process_id,
                            still=self.still)


class Communicate:
    """Pipe I/O, the one truly asynchronous part of a flow: send ``input`` to a process, read
    its outputs to EOF (``merge``: stderr into stdout) and return ``(stdout, stderr)``.
    Blocking: :meth:`pyhcs.Process.communicate`; asyncio: the loop's own pipe readers."""

    __slots__ = ("deadline", "input", "merge", "proc")

    def __init__(self, proc: Process, input: bytes | None, merge: bool, deadline: Deadline) -> None:
        self.proc = proc
        self.input = input
        self.merge = merge
        self.deadline = deadline


Step = Call[Any] | Action | Wait | Communicate
#: A flow returning ``_T``: send each step's result in, throw its exception in.
Flow = Generator[Step, Any, _T]


def run(flow: Flow[_T]) -> _T:
    """The blocking driver: runs ``flow`` on this thread."""
    send = flow.send
    try:
        step = send(None)
        while True:
            try:
                value: Any = None
                if isinstance(step, Action):
                    deadline = step.deadline
                    try:
                        value = step.run(deadline.remaining())
                    except TimeoutExpiredError as err:
                        err.report_outer(deadline.timeout, deadline.elapsed())  # the caller's, not what was left
                        raise
                elif isinstance(step, Call):
                    value = step.fn()
                elif isinstance(step, Communicate):
                    value = step.proc.communicate(step.input, step.deadline.remaining())
                else:
                    step.block()
                    step.finish()
            except BaseException as exc:  # handed to the flow, which decides
                step = flow.throw(exc)
                continue
            step = send(value)
    except StopIteration as stop:
        result: _T = stop.value
        return result
