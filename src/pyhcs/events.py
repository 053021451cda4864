"""Events of compute systems and processes, and the exit statuses they carry.

Every :class:`~pyhcs.ComputeSystem` and :class:`~pyhcs.Process` registers one native event
callback as soon as it has a handle (before Start, so no exit can be missed). The
native callback only names an integer key; the backend's dispatcher thread hands the copied
event to this module, which records it in the object's :class:`EventHub`. From there it goes:

* to callbacks (``system.add_event_callback(fn)``), called on the dispatcher thread in order,
  and only then recorded, so a wait that sees an event knows its callbacks have run;
* to blocking iterators (``for ev in system.events(): ...``) and async iterators
  (``async for ev in pyhcs.aio.events(system)``).

Nothing is ever dropped: the hub keeps the object's whole event history (a handful of events
in a system's life) and each iterator reads it at its own pace, so a slow reader loses nothing
and a late one can replay from the start. The terminal events end the stream: SystemExited for
a system, ProcessExited for a process, ServiceDisconnect for both, and so does closing the
object. Waits on the object (``wait_exit``, ``Process.wait``) fail with the matching error when
the stream ends without the exit they wait for.

Exit statuses are typed values that say where they came from (``source``: ``"event"``,
``"wait"`` for HcsWaitFor*Exit, ``"properties"``) and are never made up: an exit code is only
reported when HCS reported the process exited with ``LastWaitResult`` 0.
"""

# The Pythonic layer's modules share their private names (the backend and _log modules, the
# handles' internals that the flows drive); the public surface is each module's __all__.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import itertools
import json
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import _log
from ._flow import EventWait, Flow, run
from ._handle import Deadline, in_dispatcher, mark_dispatcher_thread
from ._native._types import EventType, HcsEvent
from .errors import HcsError, is_json_array, is_json_object, make_error, to_unsigned

__all__ = ["Event", "EventHub", "EventStream", "EventType", "ExitStatus", "SystemExitStatus"]

_HCS_E_PROCESS_INFO_NOT_AVAILABLE = 0x8037011D

#: Why a stream ended.
END_EXITED = "exited"
END_DISCONNECTED = "disconnected"
END_CLOSED = "closed"
END_LOST = "lost"


def _event_type(value: int) -> EventType | int:
    try:
        return EventType(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class Event:
    """One HCS event, copied out of the callback.

    ``type`` is an :class:`~pyhcs.EventType` (a plain int for types this version does not
    know); ``data`` the event's JSON text, or None.
    """

    type: EventType | int
    data: str | None
    system_id: str | None = None
    process_id: int | None = None

    @property
    def document(self) -> Any:
        """``data`` parsed as JSON (None when there is none or it is not JSON)."""
        if not self.data:
            return None
        try:
            return json.loads(self.data)
        except ValueError:
            return None

    @property
    def name(self) -> str:
        """The event's name as the HCS documentation writes it, without its ``HcsEvent``
        prefix (``SystemExited``, ``ProcessExited``, ``ServiceDisconnect``); ``0x...`` for a
        type pyhcs does not know."""
        if isinstance(self.type, EventType):
            return "".join(part.capitalize() for part in self.type.name.split("_"))
        return f"0x{self.type:08X}"

    def __repr__(self) -> str:
        subject = f" system={self.system_id!r}" if self.system_id is not None else ""
        if self.process_id is not None:
            subject += f" pid={self.process_id}"
        return f"<Event {self.name}{subject} data={self.data!r}>"


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended (ProcessStatus).

    ``code`` is the exit code when HCS reported the process exited and its ``LastWaitResult``
    is 0; otherwise it is None and :meth:`check` raises the HRESULT HCS gave instead. On the
    emulator a process killed by a signal exits with 128 + the signal number.
    """

    process_id: int
    exited: bool
    code: int | None
    last_wait_result: int
    source: str
    document: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_document(cls, text: str, source: str, process_id: int = 0) -> ExitStatus:
        parsed: Any = json.loads(text) if text else {}
        doc: dict[str, Any] = parsed if is_json_object(parsed) else {}
        exited = bool(doc.get("Exited", False))
        lwr = to_unsigned(int(doc.get("LastWaitResult", 0) or 0))
        raw_code = doc.get("ExitCode")
        code = int(raw_code) if exited and lwr == 0 and isinstance(raw_code, int) else None
        pid = int(doc.get("ProcessId", process_id) or process_id)
        return cls(pid, exited, code, lwr, source, text)

    @property
    def ok(self) -> bool:
        """True when ``code`` is a real exit code (whatever its value)."""
        return self.code is not None

    def error(self, *, system_id: str | None = None, call: str | None = None) -> HcsError | None:
        """The error that explains a missing exit code, or None when there is a code."""
        if self.code is not None:
            return None
        if self.last_wait_result:
            return make_error(
                self.last_wait_result,
                message=f"HCS could not wait for process {self.process_id} (LastWaitResult "
                f"0x{self.last_wait_result:08X}); its exit code is unknown",
                call=call,
                system_id=system_id,
                process_id=self.process_id,
            )
        return make_error(
            _HCS_E_PROCESS_INFO_NOT_AVAILABLE,
            message=f"HCS reported no exit code for process {self.process_id}",
            call=call,
            system_id=system_id,
            process_id=self.process_id,
        )

    def check(self, *, system_id: str | None = None, call: str | None = None) -> int:
        """The exit code; raises the HcsError that explains its absence otherwise."""
        err = self.error(system_id=system_id, call=call)
        if err is not None:
            raise err
        assert self.code is not None
        return self.code


@dataclass(frozen=True)
class SystemExitStatus:
    """How a compute system ended (SystemExitStatus, the SystemExited event's data).

    ``status`` is the HRESULT (0 for a clean stop), ``exit_type`` one of ``GracefulExit``,
    ``ForcedExit``, ``UnexpectedExit``, ``None``, ``Unknown``; ``attribution`` says who and why
    (schema 2.4+).
    """

    status: int
    exit_type: str
    attribution: tuple[Any, ...]
    source: str
    document: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_document(cls, text: str | None, source: str) -> SystemExitStatus:
        parsed: Any = {}
        if text:
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = {}
        doc: dict[str, Any] = parsed if is_json_object(parsed) else {}
        status = to_unsigned(int(doc.get("Status", 0) or 0))
        exit_type = str(doc.get("ExitType") or "Unknown")
        attribution: Any = doc.get("Attribution") or []
        return cls(status, exit_type, tuple(attribution) if is_json_array(attribution) else (), source, text)

    @property
    def unexpected(self) -> bool:
        """True when the guest went away by itself (crash, power loss): hcsshim treats this as
        an error."""
        return self.exit_type == "UnexpectedExit"

    def error(self, *, system_id: str | None = None) -> HcsError | None:
        """The HcsError for a failed ``status``, or None."""
        if self.status == 0 or not self.status & 0x80000000:
            return None
        return make_error(
            self.status, message=f"the compute system exited ({self.exit_type})", system_id=system_id
        )


# ------------------------------------------------------------------------------------- hubs

_hubs: dict[int, EventHub] = {}
_keys = itertools.count(1)


def dispatch_event(event: HcsEvent, context: int) -> None:
    """The native event callback of every system and process (runs on the dispatcher thread).

    ``context`` is the hub's key; an unknown key (a closed object) is ignored.
    """
    mark_dispatcher_thread()
    hub = _hubs.get(context)
    if hub is not None:
        hub.deliver(event)


class EventHub:
    """The event state of one system or process handle: history, callbacks, exit, end.

    Kept in a module registry (``key`` -> hub) while the native callback is registered. The
    hub holds no reference to its owner, so an owner dropped without close() is still
    collected (and its ``__del__`` closes it).
    """

    def __init__(self, kind: str, system_id: str | None, process_id: int | None = None) -> None:
        self.kind = kind  # "system" or "process"
        self.system_id = system_id
        self.process_id = process_id
        self.cond = threading.Condition(threading.Lock())
        self.history: list[Event] = []
        self.exit: ExitStatus | SystemExitStatus | None = None
        self.end_reason: str | None = None
        self.failure: HcsError | None = None  # why a stream ended without an exit
        self.system_gone = False  # process hubs: their system exited
        self.callbacks: list[Callable[[Event], None]] = []
        self._waiters: list[Callable[[], None]] = []
        self.children: weakref.WeakSet[EventHub] = weakref.WeakSet()
        self.key = 0
        self._closed = False

    # -- registry ----------------------------------------------------------------------------
    def register(self) -> int:
        self.key = next(_keys)
        _hubs[self.key] = self
        return self.key

    def unregister(self) -> None:
        _hubs.pop(self.key, None)

    # -- state changes -----------------------------------------------------------------------
    def deliver(self, raw: HcsEvent) -> None:
        """Records an event from the dispatcher and passes it on.

        Callbacks run first; only then is the event recorded and are waiters woken, so a
        wait or an iterator that sees an event knows that its callbacks have run.
        """
        ev = Event(_event_type(raw.type), raw.event_data, self.system_id, self.process_id)
        with self.cond:
            if self._closed:
                return
            callbacks = list(self.callbacks)
        self._run_callbacks(callbacks, ev)
        children: list[EventHub] = []
        with self.cond:
            self.history.append(ev)
            if ev.type == EventType.SERVICE_DISCONNECT:
                self._end_locked(END_DISCONNECTED)
            elif ev.type == EventType.SYSTEM_EXITED and self.kind == "system":
                if self.exit is None:
                    self.exit = SystemExitStatus.from_document(ev.data, "event")
                self._end_locked(END_EXITED)
                children = list(self.children)
            elif ev.type == EventType.PROCESS_EXITED and self.kind == "process":
                if self.exit is None and ev.data:
                    try:
                        self.exit = ExitStatus.from_document(ev.data, "event", self.process_id or 0)
                    except (ValueError, TypeError):
                        _log.log.warning("pyhcs: unreadable ProcessExited data %r", ev.data)
                self._end_locked(END_EXITED)
            self.cond.notify_all()
            # A callback added while the others ran saw a history without this event.
            late = [cb for cb in self.callbacks if cb not in callbacks]
            waiters = self._take_waiters_locked()
        self._run_callbacks(late, ev)
        self._run_waiters(waiters)
        for child in children:
            child.mark_system_gone()

    @staticmethod
    def _run_callbacks(callbacks: list[Callable[[Event], None]], ev: Event) -> None:
        for cb in callbacks:
            try:
                cb(ev)
            except Exception:
                _log.log.exception("pyhcs: an event callback raised (%r)", ev)

    def set_exit(self, status: ExitStatus | SystemExitStatus) -> None:
        """Records an exit learnt without an event (HcsWaitFor*Exit, properties)."""
        with self.cond:
            if self.exit is None:
                self.exit = status
            self._end_locked(END_EXITED)
            self.cond.notify_all()
            waiters = self._take_waiters_locked()
        self._run_waiters(waiters)

    def end(self, reason: str, failure: HcsError | None = None) -> None:
        """Ends the stream (first reason wins); wakes everyone."""
        with self.cond:
            if failure is not None and self.failure is None:
                self.failure = failure
            if reason == END_CLOSED:
                # Closing always ends the stream, even one ended by an exit, so iterators
                # and waiters of a closed object return.
                self.end_reason = self.end_reason or END_CLOSED
                self._closed = True
            else:
                self._end_locked(reason)
            self.cond.notify_all()
            waiters = self._take_waiters_locked()
        self._run_waiters(waiters)

    def mark_system_gone(self) -> None:
        with self.cond:
            self.system_gone = True
            self.cond.notify_all()
            waiters = self._take_waiters_locked()
        self._run_waiters(waiters)

    def _end_locked(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason

    @property
    def closed(self) -> bool:
        return self._closed

    # -- one-shot change notifications (asyncio) -------------------------------------------
    def notify_when_changed(self, ready: Callable[[], bool], fn: Callable[[], None]) -> bool:
        """Calls ``fn()`` (on the thread that changes the hub) at the next change, unless
        ``ready()`` is already true, in which case it returns False and does nothing."""
        with self.cond:
            if ready():
                return False
            self._waiters.append(fn)
            return True

    def forget_waiter(self, fn: Callable[[], None]) -> None:
        with self.cond:
            try:
                self._waiters.remove(fn)
            except ValueError:
                pass

    def _take_waiters_locked(self) -> list[Callable[[], None]]:
        waiters, self._waiters = self._waiters, []
        return waiters

    @staticmethod
    def _run_waiters(waiters: list[Callable[[], None]]) -> None:
        for fn in waiters:
            try:
                fn()
            except Exception:  # pragma: no cover - our own wake-up functions
                _log.log.exception("pyhcs: an event waiter raised")

    # -- waiting -------------------------------------------------------------------------------
    def wait(self, ready: Callable[[], bool], deadline: Deadline) -> bool:
        """Blocks until ``ready()`` (checked under the hub's lock) or the deadline; sliced so
        signals are handled. True when ready."""
        with self.cond:
            while not ready():
                if deadline.expired():
                    return False
                if in_dispatcher():
                    # Events are delivered by this very thread: waiting here for one
                    # would hang until the timeout. Fail at once instead.
                    raise RuntimeError(
                        "pyhcs: cannot wait for an event inside an event or completion callback "
                        "(the callback runs on the thread that delivers events)"
                    )
                self.cond.wait(deadline.slice())
            return True

    # -- subscriptions ---------------------------------------------------------------------------
    def add_callback(self, fn: Callable[[Event], None], replay: bool = False) -> None:
        with self.cond:
            past = list(self.history) if replay else []
            self.callbacks.append(fn)
        for ev in past:
            try:
                fn(ev)
            except Exception:
                _log.log.exception("pyhcs: an event callback raised (%r)", ev)

    def remove_callback(self, fn: Callable[[Event], None]) -> None:
        with self.cond:
            try:
                self.callbacks.remove(fn)
            except ValueError:
                pass


class EventStream(Iterator[Event]):
    """A blocking iterator over an object's events (see the module docstring).

    ``next()`` waits up to ``timeout`` seconds for the next event and raises
    :class:`~pyhcs.errors.OperationTimeoutError` when none came (the stream stays usable: iterate
    again to keep waiting). Iteration stops after the terminal event, or when the object is
    closed, once every recorded event has been returned.
    """

    def __init__(self, hub: EventHub, *, replay: bool, timeout: float) -> None:
        self._hub = hub
        self._timeout = timeout
        with hub.cond:
            self._pos = 0 if replay else len(hub.history)

    def __iter__(self) -> EventStream:
        return self

    def _ready(self) -> bool:
        hub = self._hub
        return self._pos < len(hub.history) or hub.end_reason is not None or hub.closed

    def __next__(self) -> Event:
        ev = run(next_event_flow(self))
        if ev is None:
            raise StopIteration
        return ev


def next_event_flow(stream: EventStream) -> Flow[Event | None]:
    """The next event of ``stream`` (None once it ended), waiting up to its timeout; run by
    ``next()`` here and by ``pyhcs.aio``'s ``async for``."""
    hub = stream._hub
    deadline = Deadline(stream._timeout)
    while True:
        with hub.cond:
            if stream._pos < len(hub.history):
                ev = hub.history[stream._pos]
                stream._pos += 1
                return ev
            if hub.end_reason is not None or hub.closed:
                return None
        if in_dispatcher():
            raise RuntimeError("pyhcs: cannot iterate events inside an event or completion callback")
        yield EventWait(hub, stream._ready, deadline, "waiting for the next event",
                        still="the stream stays open; iterate again to keep waiting")
