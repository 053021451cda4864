"""asyncio: awaitable compute systems, processes, operations and events.

::

    from pyhcs import aio

    async def main() -> None:
        async with await aio.ComputeSystem.create("demo", config) as system:
            await system.start()
            result = await system.run(["echo", "hi"])
            print(result.stdout)
            async for event in system.events():   # ends after SystemExited
                print(event)

Every wait of the blocking API has an awaitable twin here, with the same ``timeout=`` rules;
both run the same flows (:mod:`pyhcs._flow`, see docs/architecture.md), this module being only
their asyncio driver, the pipes and the loop wake-ups. Nothing blocks the event loop:
operations complete through native completion callbacks, the dispatcher thread hands
completions and events to the loop with ``call_soon_threadsafe``, one wake-up per batch however
many arrived; the synchronous HCS calls (opening a handle, registering a callback, a zero wait
for an exit, closing) run in threads of their own; and process pipes are read and written with
the loop's own readiness callbacks, or on Windows, whose pipes cannot be polled (or with
``PYHCS_FORCE_WINDOWS_IO=1``), in threads of their own, never the loop's default executor, so
a kill() never waits behind a read. ``close()`` stays synchronous (for plain code and
finalizers) and may wait for the service; ``aclose()`` and ``async with`` do not.

Cancelling a task that awaits never frees what HCS may still use: the operation stays alive
(pyhcs' registry holds it) and closes itself once HCS completes it; a system or process whose
creation was cancelled is closed the same way once the creation completes. A loop that closes
with completions still in flight is tolerated: they are dropped, nothing else happens.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import IO, Any, TypeVar

from . import _stdio
from . import process as _process
from . import system as _system
from ._aio_pool import ComputeSystemPool
from ._docs import Document, check_document, to_json
from ._flow import Action, Call, Communicate, Flow, OperationWait, Wait
from ._guest import GuestOs
from ._handle import DEFAULT, Deadline, Timeout, resolve_timeout, timeout_error
from ._runopts import NOT_GIVEN, NotGiven, Stdio, plan_run
from ._stdio import PipeIO
from .errors import HandleClosedError, OperationTimeoutError, TimeoutExpiredError
from .events import Event, EventHub, EventStream, ExitStatus, SystemExitStatus, next_event_flow
from .operation import Operation
from .process import CompletedProcess

__all__ = [
    "AsyncEventStream",
    "AsyncReader",
    "AsyncWriter",
    "ComputeSystem",
    "ComputeSystemPool",
    "Process",
    "enumerate",
    "events",
    "open",
    "wait_operation",
]

_READ_CHUNK = 65536
_T = TypeVar("_T")


# ------------------------------------------------------------------------------ loop wake-ups


class _LoopWaker:
    """Runs functions on one event loop from other threads, batching the wake-ups: whatever
    arrives before the loop gets to it costs one ``call_soon_threadsafe``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[Callable[[], object]] = []
        self._scheduled = False

    def call(self, fn: Callable[[], object]) -> None:
        with self._lock:
            self._pending.append(fn)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            # The loop is closed: nobody can await these any more.
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        for fn in batch:
            fn()


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaker] = weakref.WeakKeyDictionary()
_wakers_lock = threading.Lock()


def _waker(loop: asyncio.AbstractEventLoop) -> _LoopWaker:
    waker = _wakers.get(loop)
    if waker is None:
        with _wakers_lock:
            waker = _wakers.get(loop)
            if waker is None:
                waker = _wakers[loop] = _LoopWaker(loop)
    return waker


def _resolver(fut: asyncio.Future[None]) -> Callable[[], object]:
    def resolve() -> None:
        if not fut.done():
            fut.set_result(None)

    return resolve


def _seconds(deadline: Deadline) -> float | None:
    remaining = deadline.remaining()
    return None if math.isinf(remaining) else remaining


# ------------------------------------------------------------------------------ the driver


async def _wait(step: Wait) -> None:
    """Awaits a :class:`pyhcs._flow.Wait`: subscribes a loop wake-up, looks again at each."""
    loop = asyncio.get_running_loop()
    waker = _waker(loop)
    while True:
        fut: asyncio.Future[None] = loop.create_future()
        resolve = _resolver(fut)

        def wake(resolve: Callable[[], object] = resolve) -> None:
            waker.call(resolve)

        if not step.subscribe(wake):
            break
        try:
            await asyncio.wait_for(fut, _seconds(step.deadline))
        except asyncio.TimeoutError:
            step.unsubscribe(wake)
            break
        except asyncio.CancelledError:
            step.unsubscribe(wake)
            raise
    step.finish()


async def _call(step: Call[_T]) -> _T:
    """Runs a synchronous call in a thread of its own (see :func:`_in_thread`). If the
    awaiting task is cancelled, what the call returns later goes to ``step.discard``: a
    handle it opened is closed, never leaked."""
    return await _in_thread(step.fn, step.discard)


async def _complete(op: Operation, deadline: Deadline) -> str | None:
    """The awaitable :func:`pyhcs.operation.complete`: waits, closes, returns the result."""
    try:
        await _wait(OperationWait(op, deadline))
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


_Io = Callable[[Communicate], Awaitable[tuple[bytes | None, bytes | None]]]


async def drive(flow: Flow[_T], communicate: _Io | None = None) -> _T:
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
                await _wait(step)
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
    await _wait(OperationWait(op, Deadline(resolve_timeout(timeout, op.default_timeout))))
    return op.result(0)


# ------------------------------------------------------------------------------ events


class AsyncEventStream(AsyncIterator[Event]):
    """``async for`` over an object's events; the async twin of :class:`pyhcs.events.EventStream`
    (``source``: an EventStream, or an EventHub to read with ``replay``/``timeout``)."""

    def __init__(self, source: EventStream | EventHub, *, replay: bool = True, timeout: float = math.inf) -> None:
        self._stream = source if isinstance(source, EventStream) else EventStream(source, replay=replay, timeout=timeout)

    def __aiter__(self) -> AsyncEventStream:
        return self

    async def __anext__(self) -> Event:
        ev = await drive(next_event_flow(self._stream))
        if ev is None:
            raise StopAsyncIteration
        return ev


def events(obj: Any, *, replay: bool = True, timeout: Timeout = DEFAULT) -> AsyncEventStream:
    """``async for event in aio.events(system_or_process)`` (blocking or async objects)."""
    target = getattr(obj, "sync", obj)
    stream: EventStream = target.events(replay=replay, timeout=timeout)
    return AsyncEventStream(stream)


# ------------------------------------------------------------------------------ pipes and threads


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """A done callback: marks the outcome of a future nobody may await as seen, so asyncio
    never logs "exception was never retrieved" for it (the awaiter, if any, still gets it)."""
    if not fut.cancelled():
        fut.exception()


def _in_thread(fn: Callable[[], _T], discard: Callable[[_T], object] | None = None) -> asyncio.Future[_T]:
    """Runs ``fn`` in a thread of its own and returns a future of its result.

    Not the loop's default executor: a blocking pipe read can last as long as the child
    stays quiet, and a bounded pool full of such reads would make a kill() wait behind
    them. A thread per call never queues. Cancelling the future leaves ``fn`` running; its
    result, when nobody awaits it any more, goes to ``discard`` (in another thread).
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()
    fut.add_done_callback(_retrieve)
    waker = _waker(loop)
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

    def drop(value: Any) -> None:
        if discard is not None:
            try:
                discard(value)
            except Exception:
                logging.getLogger("pyhcs").debug("pyhcs: discarding %r failed", value, exc_info=True)

    def settle(value: Any, failed: bool) -> None:
        if fut.done():
            if not failed:  # cancelled after the thread handed the result over
                threading.Thread(target=drop, args=(value,), daemon=True, name="pyhcs-aio-discard").start()
            return
        if failed:
            fut.set_exception(value)
        else:
            fut.set_result(value)

    def work() -> None:
        try:
            value = fn()
        except BaseException as exc:
            waker.call(functools.partial(settle, exc, True))
            return
        with lock:
            gone = abandoned
        if gone:
            drop(value)
        else:
            waker.call(functools.partial(settle, value, False))

    threading.Thread(target=work, daemon=True, name="pyhcs-aio-io").start()
    return fut


def _steal(f: IO[bytes]) -> PipeIO:
    """The pipe under a file of :mod:`pyhcs._stdio` (freshly opened: nothing is buffered)."""
    return _stdio.pipe_of(f)


class _Pipe:
    """One std pipe on one event loop: readiness callbacks where the loop can poll pipes,
    else (Windows, or ``PYHCS_FORCE_WINDOWS_IO=1``) blocking I/O in threads of its own."""

    def __init__(self, raw: PipeIO) -> None:
        self._raw = raw
        self._threaded = _stdio.WINDOWS_IO
        if not self._threaded:
            os.set_blocking(raw.fileno(), False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        # Thread I/O still running (its caller may have been cancelled): the next call
        # takes its result over instead of starting another, so nothing read is lost.
        self._pending: asyncio.Future[Any] | None = None

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    async def _ready(self, write: bool) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        fd = self._raw.fileno()
        fut: asyncio.Future[None] = loop.create_future()
        try:
            (loop.add_writer if write else loop.add_reader)(fd, _resolver(fut))
        except NotImplementedError:  # pragma: no cover - a loop without readiness callbacks
            self._threaded = True
            os.set_blocking(fd, True)
            return
        self._waiter = fut
        try:
            await fut
        finally:
            self._waiter = None
            if not self._raw.closed:
                (loop.remove_writer if write else loop.remove_reader)(fd)

    async def _threaded_call(self, fn: Callable[[], Any]) -> Any:
        fut = self._pending
        if fut is None:
            fut = self._pending = _in_thread(fn)
        try:
            return await asyncio.shield(fut)
        finally:
            if fut.done():
                self._pending = None

    def close(self) -> None:
        """Closes the pipe; a task waiting on it wakes up (and gets ValueError). Never blocks:
        a read still running in a thread frees the descriptor when it returns."""
        if self._raw.closed:
            return
        loop = self._loop
        if loop is not None and not loop.is_closed() and not self._threaded:
            fd = self._raw.fileno()
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        pending = self._pending
        if pending is not None and not pending.done():
            # The thread stays blocked until the child writes or exits; its awaiter need not.
            pending.set_exception(ValueError("I/O operation on a closed process pipe"))
        self._raw.close()


class AsyncReader(_Pipe):
    """An async binary reader over a process's stdout or stderr pipe."""

    def __init__(self, raw: PipeIO) -> None:
        super().__init__(raw)
        self._buf = bytearray()
        self._eof = False

    async def _fill(self) -> None:
        while not self._eof:
            if self._threaded:
                data = await self._threaded_call(lambda: self._raw.read(_READ_CHUNK))
            else:
                data = self._raw.read(_READ_CHUNK)
                if data is None:
                    await self._ready(False)
                    continue
            if data:
                self._buf += data
            else:
                self._eof = True
            return

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (at least one unless at EOF); everything up to EOF if ``n < 0``."""
        if n < 0:
            while not self._eof:
                await self._fill()
            data = bytes(self._buf)
            self._buf.clear()
            return data
        if not self._buf and not self._eof:
            await self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def readline(self) -> bytes:
        """One line including its ``\\n`` (the rest at EOF; b"" after it)."""
        while b"\n" not in self._buf and not self._eof:
            await self._fill()
        end = self._buf.find(b"\n")
        end = len(self._buf) if end < 0 else end + 1
        data = bytes(self._buf[:end])
        del self._buf[:end]
        return data

    def at_eof(self) -> bool:
        return self._eof and not self._buf

    def __aiter__(self) -> AsyncReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class AsyncWriter(_Pipe):
    """An async binary writer over a process's stdin pipe (``write`` then ``await drain()``)."""

    def __init__(self, raw: PipeIO) -> None:
        super().__init__(raw)
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        if self._raw.closed:
            raise ValueError("write to a closed stdin")
        self._buf += data

    async def drain(self) -> None:
        """Writes what is buffered. BrokenPipeError when the child closed its stdin (also
        where a Windows pipe reports that as EINVAL)."""
        while self._buf or self._pending is not None:
            if self._threaded:
                if self._pending is None:
                    data = bytes(self._buf)
                    self._buf.clear()
                    await self._threaded_call(functools.partial(self._raw.write_all, data))
                else:
                    await self._threaded_call(lambda: None)  # the write a cancelled drain left
                continue
            try:
                n = self._raw.write(self._buf)
            except BrokenPipeError:
                self._buf.clear()
                raise
            if n is None:
                await self._ready(True)
                continue
            del self._buf[:n]


# ------------------------------------------------------------------------------ processes


class Process:
    """The async twin of :class:`pyhcs.Process`; ``sync`` is the blocking object underneath.

    ``stdin`` is an :class:`AsyncWriter`, ``stdout``/``stderr`` are :class:`AsyncReader`.
    """

    def __init__(self, proc: _process.Process) -> None:
        self.sync = proc
        self.stdin = AsyncWriter(_steal(proc.stdin)) if proc.stdin is not None else None
        self.stdout = AsyncReader(_steal(proc.stdout)) if proc.stdout is not None else None
        self.stderr = AsyncReader(_steal(proc.stderr)) if proc.stderr is not None else None
        proc.stdin = proc.stdout = proc.stderr = None
        self._tasks: list[asyncio.Future[Any]] | None = None
        self._out: list[bytes] | None = None
        self._err: list[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.sync.pid

    @property
    def exit_status(self) -> ExitStatus | None:
        return self.sync.exit_status

    @property
    def exit_code(self) -> int | None:
        return self.sync.exit_code

    returncode = exit_code

    def poll(self) -> int | None:
        """The exit code if the process has exited, else None; never blocks."""
        return self.sync.poll()

    @property
    def default_timeout(self) -> Timeout:
        return self.sync.default_timeout

    def __repr__(self) -> str:
        return f"<pyhcs.aio.Process of {self.sync!r}>"

    def _deadline(self, timeout: Timeout) -> Deadline:
        return Deadline(resolve_timeout(timeout, self.sync.default_timeout))

    async def wait(self, timeout: Timeout = DEFAULT) -> int:
        """Awaits the exit; returns the exit code (see :meth:`pyhcs.Process.wait`)."""
        status = await drive(_process.wait_status_flow(self.sync, self._deadline(timeout)))
        return status.check(system_id=self.sync.system_id)

    async def close_stdin(self, *, timeout: Timeout = DEFAULT) -> None:
        """Flushes and closes stdin, then sends CloseHandle/StdIn (the child sees EOF)."""
        writer, self.stdin = self.stdin, None
        if writer is not None:
            try:
                await writer.drain()
            except OSError:
                pass
            writer.close()
        await drive(_process.close_stdin_flow(self.sync, self._deadline(timeout)))

    async def communicate(
        self, input: bytes | None = None, timeout: Timeout = DEFAULT
    ) -> tuple[bytes | None, bytes | None]:
        """The async :meth:`pyhcs.Process.communicate`: output drained, then the exit.

        A timeout or a cancelled caller leaves the pumps running, so nothing read is lost
        and communicate() may be awaited again. HandleClosedError once the process is closed.
        """
        deadline = self._deadline(timeout)
        if self._tasks is None:
            if input and self.stdin is None:
                raise ValueError("the process has no stdin pipe (create it with stdin=True)")
            self._out = [] if self.stdout is not None else None
            self._err = [] if self.stderr is not None else None

            async def pump(reader: AsyncReader, sink: list[bytes]) -> None:
                while data := await reader.read(_READ_CHUNK):
                    sink.append(data)

            async def feed() -> None:
                if input and self.stdin is not None:
                    self.stdin.write(input)
                    try:
                        await self.stdin.drain()
                    except BrokenPipeError:
                        pass
                await self.close_stdin(timeout=max(deadline.remaining(), 1.0))

            tasks: list[asyncio.Future[Any]] = [asyncio.ensure_future(feed())]
            for reader, sink in ((self.stdout, self._out), (self.stderr, self._err)):
                if reader is not None and sink is not None:
                    tasks.append(asyncio.ensure_future(pump(reader, sink)))
            for task in tasks:
                task.add_done_callback(_retrieve)
            self._tasks = tasks
        elif input:
            raise ValueError("cannot send input after communication has started")
        # asyncio.wait, not gather: it leaves no aggregate future behind whose exception
        # nobody retrieves when the caller times out or is cancelled.
        done, pending = await asyncio.wait(self._tasks, timeout=_seconds(deadline),
                                           return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if task.cancelled() or isinstance(task.exception(), ValueError):
                if self.sync.closed:  # close() stopped the pumps, or closed a pipe under them
                    raise HandleClosedError(call="communicate", system_id=self.sync.system_id,
                                            process_id=self.pid or None)
            if task.cancelled():
                raise asyncio.CancelledError()
            failure = task.exception()
            if failure is not None:
                raise failure
        if pending:
            err = timeout_error(
                f"communicating with process {self.pid}",
                deadline,
                system_id=self.sync.system_id,
                process_id=self.pid or None,
                still="it is still running: await communicate() again to go on reading, or kill() it",
            )
            err.output, err.stderr = self._output()
            raise err
        await drive(_process.wait_status_flow(self.sync, deadline))
        return self._output()

    def _output(self) -> tuple[bytes | None, bytes | None]:
        out = b"".join(self._out) if self._out is not None else None
        err = b"".join(self._err) if self._err is not None else None
        return out, err

    async def signal(self, signal: int | str, *, timeout: Timeout = DEFAULT) -> bool:
        """The async :meth:`pyhcs.Process.signal` (False if it had exited)."""
        return await drive(_process.signal_flow(self.sync, signal, self._deadline(timeout)))

    async def terminate(self, *, timeout: Timeout = DEFAULT) -> bool:
        """The async :meth:`pyhcs.Process.terminate` (False if it had exited)."""
        return await drive(_process.terminate_flow(self.sync, self._deadline(timeout)))

    async def kill(self, *, timeout: Timeout = DEFAULT) -> bool:
        """The async :meth:`pyhcs.Process.kill` (through freshly opened handles)."""
        return await drive(_process.kill_flow(self.sync, self._deadline(timeout)))

    async def resize(self, height: int, width: int, *, timeout: Timeout = DEFAULT) -> None:
        await drive(_process.resize_flow(self.sync, height, width, self._deadline(timeout)))

    async def properties(self, *, timeout: Timeout = DEFAULT) -> dict[str, Any]:
        return await drive(_process.properties_flow(self.sync, None, self._deadline(timeout)))

    def events(self, *, replay: bool = True, timeout: Timeout = DEFAULT) -> AsyncEventStream:
        return events(self, replay=replay, timeout=timeout)

    def _close_pipes(self) -> None:
        if self._tasks is not None:
            for task in self._tasks:
                task.cancel()
        for pipe in (self.stdin, self.stdout, self.stderr):
            if pipe is not None:
                pipe.close()
        self.stdin = None

    def close(self) -> None:
        """Closes the pipes and the handle (the process keeps running, as in HCS). The
        handle's close may wait for the compute service: :meth:`aclose` does not block."""
        self._close_pipes()
        self.sync.close()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the loop."""
        self._close_pipes()
        await drive(_close_flow(self.sync))

    async def __aenter__(self) -> Process:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await drive(_process.leave_flow(self.sync, exc is not None))
        finally:
            self._close_pipes()


def _close_flow(obj: _process.Process | _system.ComputeSystem) -> Flow[None]:
    if not obj.closed:
        yield Call(obj.close)


# ------------------------------------------------------------------------------ systems


class ComputeSystem:
    """The async twin of :class:`pyhcs.ComputeSystem`; ``sync`` is the blocking object."""

    def __init__(self, system: _system.ComputeSystem) -> None:
        self.sync = system

    @property
    def id(self) -> str:
        return self.sync.id

    @property
    def default_timeout(self) -> Timeout:
        return self.sync.default_timeout

    @property
    def exit_status(self) -> SystemExitStatus | None:
        return self.sync.exit_status

    def __repr__(self) -> str:
        return f"<pyhcs.aio.ComputeSystem of {self.sync!r}>"

    def _deadline(self, timeout: Timeout) -> Deadline:
        return Deadline(resolve_timeout(timeout, self.sync.default_timeout))

    @classmethod
    async def create(
        cls, id: str, config: Document, *, timeout: Timeout = DEFAULT, default_timeout: Timeout = DEFAULT,
        guest_os: str | None = None, strict: bool = True,
    ) -> ComputeSystem:
        """The async :meth:`pyhcs.ComputeSystem.create` (the configuration validated strictly
        unless ``strict=False``)."""
        try:
            system = await drive(_system.create_flow(id, config, timeout=timeout, default_timeout=default_timeout,
                                                     guest_os=guest_os, strict=strict))
        except TimeoutExpiredError as err:
            if isinstance(err.system, _system.ComputeSystem):
                err.system = cls(err.system)
            raise
        return cls(system)

    async def wait_created(self, timeout: Timeout = DEFAULT) -> None:
        await drive(_system.wait_created_flow(self.sync, self._deadline(timeout)))

    @classmethod
    async def open(cls, id: str, *, default_timeout: Timeout = DEFAULT, guest_os: str | None = None) -> ComputeSystem:
        """HcsOpenComputeSystem (a synchronous call, made in a thread)."""
        system = await drive(_open_flow(id, default_timeout, guest_os))
        return cls(system)

    async def guest_os(self, *, timeout: Timeout = DEFAULT) -> GuestOs:
        """The async :attr:`pyhcs.ComputeSystem.guest_os` ("windows" or "linux")."""
        return await drive(_system.guest_os_flow(self.sync, self._deadline(timeout)))

    async def _action(self, action: str, document: Document | None, timeout: Timeout) -> str | None:
        return await drive(_system.action_flow(self.sync, action, document, self._deadline(timeout)))

    async def start(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        await self._action("start", options, timeout)

    async def shutdown(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> bool:
        return await drive(_system.end_flow(self.sync, "shutdown", options, self._deadline(timeout)))

    async def terminate(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> bool:
        return await drive(_system.end_flow(self.sync, "terminate", options, self._deadline(timeout)))

    async def crash(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        await self._action("crash", options, timeout)

    async def pause(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        await self._action("pause", options, timeout)

    async def resume(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        await self._action("resume", options, timeout)

    async def save(self, options: Document, *, timeout: Timeout = DEFAULT) -> None:
        await self._action("save", options, timeout)

    async def modify(self, request: Document, *, timeout: Timeout = DEFAULT, strict: bool = True) -> None:
        """The async :meth:`pyhcs.ComputeSystem.modify` (validated strictly unless ``strict=False``)."""
        text = to_json(request, "modify request", strict=False)
        if strict and text is not None:
            check_document(text, "modify", system_id=self.sync.id)
        await self._action("modify", text, timeout)

    async def properties(
        self, *types: str, query: Document | None = None, timeout: Timeout = DEFAULT
    ) -> dict[str, Any]:
        return await drive(_system.properties_flow(self.sync, types, query, self._deadline(timeout)))

    async def state(self, *, timeout: Timeout = DEFAULT) -> str:
        """The ``State`` property (Created, Running, Paused, Stopped, SavedAsTemplate): the
        async twin of :attr:`pyhcs.ComputeSystem.state`, a method here because it queries HCS."""
        return str((await self.properties(timeout=timeout)).get("State", "Unknown"))

    async def wait_exit(self, timeout: Timeout = DEFAULT) -> SystemExitStatus:
        """The async :meth:`pyhcs.ComputeSystem.wait_exit`."""
        return await drive(_system.wait_exit_flow(self.sync, self._deadline(timeout)))

    async def stop(
        self, grace: float = 30.0, *, options: Document | None = None, timeout: Timeout = DEFAULT
    ) -> SystemExitStatus:
        """The async :meth:`pyhcs.ComputeSystem.stop`: shutdown, then terminate after ``grace``
        (each step logged as there)."""
        return await drive(_system.stop_flow(self.sync, grace, options, self._deadline(timeout)))

    async def create_process(
        self,
        command: str | Sequence[str] | None = None,
        *,
        params: Document | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        stdin: Stdio | bool = None,
        stdout: Stdio | bool = None,
        stderr: Stdio | bool = None,
        console: bool | None = None,
        console_size: tuple[int, int] | None = None,
        timeout: Timeout = DEFAULT,
    ) -> Process:
        """The async :meth:`pyhcs.ComputeSystem.create_process`; the pipes are async streams."""
        proc = await drive(_system.create_process_flow(
            self.sync, command, params=params, cwd=cwd, env=env, user=user, stdin=stdin, stdout=stdout,
            stderr=stderr, console=console, console_size=console_size, bufsize=0, deadline=self._deadline(timeout),
        ))
        return Process(proc)

    async def run(
        self,
        command: str | Sequence[str],
        *,
        input: bytes | str | None = None,
        capture_output: bool | None = None,
        stdin: Stdio | bool = None,
        stdout: Stdio | bool | NotGiven = NOT_GIVEN,
        stderr: Stdio | bool | NotGiven = NOT_GIVEN,
        text: bool | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        params: Document | None = None,
        timeout: Timeout = DEFAULT,
        check: bool = False,
    ) -> CompletedProcess:
        """The async :meth:`pyhcs.ComputeSystem.run`, with the same options (with
        ``stderr=STDOUT`` the error output follows the standard output)."""
        plan = plan_run(
            input=input, capture_output=capture_output, stdin=stdin, stdout=stdout, stderr=stderr,
            text=text, encoding=encoding, errors=errors,
        )
        pipes: list[Process] = []

        async def communicate(step: Communicate) -> tuple[bytes | None, bytes | None]:
            proc = Process(step.proc)
            pipes.append(proc)
            out, err = await proc.communicate(step.input, timeout=step.deadline.remaining())
            if step.merge:
                out, err = (out or b"") + (err or b""), None
            return out, err

        try:
            return await drive(_system.run_flow(self.sync, command, plan, cwd=cwd, env=env, user=user, params=params,
                                                check=check, deadline=self._deadline(timeout), bufsize=0),
                               communicate)
        finally:
            for proc in pipes:
                await proc.aclose()  # the pipes; the flow closed the process itself

    async def open_process(self, pid: int, *, stdio: bool = False) -> Process:
        """The async :meth:`pyhcs.ComputeSystem.open_process`."""
        return Process(await drive(_process.open_flow(self.sync, pid, stdio=stdio, bufsize=0)))

    def events(self, *, replay: bool = True, timeout: Timeout = DEFAULT) -> AsyncEventStream:
        return events(self, replay=replay, timeout=timeout)

    def add_event_callback(self, fn: Callable[[Event], None], *, replay: bool = False) -> None:
        self.sync.add_event_callback(fn, replay=replay)

    def close(self) -> None:
        """Closes the handle; it may wait for the compute service: :meth:`aclose` does not block."""
        self.sync.close()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the loop."""
        await drive(_close_flow(self.sync))

    @property
    def closed(self) -> bool:
        return self.sync.closed

    async def __aenter__(self) -> ComputeSystem:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await drive(_system.leave_flow(self.sync, exc is not None))


def _open_flow(id: str, default_timeout: Timeout, guest_os: str | None) -> Flow[_system.ComputeSystem]:
    system: _system.ComputeSystem = yield Call(
        lambda: _system.ComputeSystem.open(id, default_timeout=default_timeout, guest_os=guest_os),
        discard=_system.ComputeSystem.close,
    )
    return system


async def enumerate(
    query: Document | None = None,
    *,
    ids: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    types: Sequence[str] | None = None,
    owners: Sequence[str] | None = None,
    timeout: Timeout = DEFAULT,
) -> list[dict[str, Any]]:
    """The async :meth:`pyhcs.ComputeSystem.enumerate`."""
    text = _system.enumeration_query(query, ids, names, types, owners)
    return await drive(_system.enumerate_flow(text, Deadline(resolve_timeout(timeout))))


async def open(id: str, *, default_timeout: Timeout = DEFAULT) -> ComputeSystem:
    """``await aio.open(id)``: the async :meth:`pyhcs.ComputeSystem.open`."""
    return await ComputeSystem.open(id, default_timeout=default_timeout)
