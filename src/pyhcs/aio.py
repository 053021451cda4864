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

Every wait of the blocking API has an awaitable twin here, with the same ``timeout=`` rules.
Nothing blocks the event loop: operations complete through native completion callbacks, the
dispatcher thread hands completions and events to the loop with ``call_soon_threadsafe``, one
wake-up per batch however many arrived, and process pipes are read and written with the loop's
own readiness callbacks; on Windows, whose pipes cannot be polled (or with
``PYHCS_FORCE_WINDOWS_IO=1``), in threads of their own, never the loop's default executor, so
a kill() never waits behind a read.

Cancelling a task that awaits never frees what HCS may still use: the operation stays alive
(pyhcs' registry holds it) and closes itself once HCS completes it; a system or process whose
creation was cancelled is closed the same way once the creation completes. A loop that closes
with completions still in flight is tolerated: they are dropped, nothing else happens.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import IO, Any, TypeVar

from . import _stdio
from . import process as _process
from . import system as _system
from ._aio_pool import ComputeSystemPool
from ._docs import Document, check_document, to_json
from ._guest import GuestOs, signal_value
from ._handle import DEFAULT, Deadline, Timeout, reports_timeout, resolve_timeout, timeout_error
from ._runopts import DEVNULL, NOT_GIVEN, NotGiven, Stdio, pipe_flag, plan_run
from ._stdio import PipeIO
from .errors import HcsError, OperationTimeoutError, TimeoutExpiredError, is_already_stopped
from .events import Event, EventHub, ExitStatus, SystemExitStatus
from .operation import Operation
from .process import CompletedProcess, process_parameters

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


# ------------------------------------------------------------------------------ operations


async def _wait_op(op: Operation, deadline: Deadline) -> None:
    """Waits until ``op`` completed; OperationTimeoutError at the deadline (op left alive)."""
    if op._done:
        return
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    waker = _waker(loop)
    resolve = _resolver(fut)
    op.add_done_callback(lambda _op: waker.call(resolve))
    try:
        await asyncio.wait_for(fut, _seconds(deadline))
    except asyncio.TimeoutError:
        if op._done:
            return
        raise op._timeout(deadline) from None


async def _complete(op: Operation, deadline: Deadline) -> str | None:
    """The awaitable :func:`pyhcs.operation.complete`: waits, closes, returns the result."""
    try:
        await _wait_op(op, deadline)
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


async def wait_operation(op: Operation, timeout: Timeout = DEFAULT) -> str | None:
    """Awaits ``op`` and returns its result document (``await op`` does the same).

    Raises the call's HcsError, or OperationTimeoutError when ``timeout`` runs out (the
    operation is left running; await it again or cancel it). The operation stays open: its
    owner closes it.
    """
    await _wait_op(op, Deadline(resolve_timeout(timeout, op.default_timeout)))
    return op.result(0)


# ------------------------------------------------------------------------------ events


async def _hub_changed(hub: EventHub, ready: Callable[[], bool], deadline: Deadline, what: str) -> None:
    """Returns at the hub's next change (at once if ``ready()``); raises at the deadline."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    waker = _waker(loop)
    resolve = _resolver(fut)

    def changed() -> None:
        waker.call(resolve)

    if not hub.notify_when_changed(ready, changed):
        return
    try:
        await asyncio.wait_for(fut, _seconds(deadline))
    except asyncio.TimeoutError:
        hub.forget_waiter(changed)
        if ready():
            return
        raise timeout_error(what, deadline, system_id=hub.system_id, process_id=hub.process_id,
                            still="it is still running") from None
    except asyncio.CancelledError:
        hub.forget_waiter(changed)
        raise


async def _hub_wait(hub: EventHub, ready: Callable[[], bool], deadline: Deadline, what: str) -> None:
    while True:
        with hub.cond:
            if ready():
                return
        await _hub_changed(hub, ready, deadline, what)


class AsyncEventStream(AsyncIterator[Event]):
    """``async for`` over an object's events; the async twin of :class:`pyhcs.events.EventStream`."""

    def __init__(self, hub: EventHub, *, replay: bool, timeout: float) -> None:
        self._hub = hub
        self._timeout = timeout
        with hub.cond:
            self._pos = 0 if replay else len(hub.history)

    def __aiter__(self) -> AsyncEventStream:
        return self

    def _ready(self) -> bool:
        hub = self._hub
        return self._pos < len(hub.history) or hub.end_reason is not None or hub.closed

    async def __anext__(self) -> Event:
        hub = self._hub
        deadline = Deadline(self._timeout)
        while True:
            with hub.cond:
                if self._pos < len(hub.history):
                    ev = hub.history[self._pos]
                    self._pos += 1
                    return ev
                if hub.end_reason is not None or hub.closed:
                    raise StopAsyncIteration
            await _hub_changed(hub, self._ready, deadline, "waiting for the next event")


def events(obj: Any, *, replay: bool = True, timeout: Timeout = DEFAULT) -> AsyncEventStream:
    """``async for event in aio.events(system_or_process)`` (blocking or async objects)."""
    target = getattr(obj, "sync", obj)
    hub: EventHub = target._hub
    return AsyncEventStream(hub, replay=replay, timeout=resolve_timeout(timeout, target.default_timeout))


# ------------------------------------------------------------------------------ pipes and threads


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """A done callback: marks the outcome of a future nobody may await as seen, so asyncio
    never logs "exception was never retrieved" for it (the awaiter, if any, still gets it)."""
    if not fut.cancelled():
        fut.exception()


def _in_thread(fn: Callable[[], _T]) -> asyncio.Future[_T]:
    """Runs ``fn`` in a thread of its own and returns a future of its result.

    Not the loop's default executor: a blocking pipe read can last as long as the child
    stays quiet, and a bounded pool full of such reads would make a kill() wait behind
    them. A thread per call never queues. Cancelling the future leaves ``fn`` running.
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[_T] = loop.create_future()
    fut.add_done_callback(_retrieve)
    waker = _waker(loop)

    def settle(value: Any, failed: bool) -> None:
        if fut.done():
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

    async def _status(self, deadline: Deadline) -> ExitStatus:
        proc = self.sync
        await _hub_wait(proc._hub, proc._exit_ready, deadline, f"waiting for process {proc.pid} to exit")
        status = proc._exit_outcome()
        if status is None:  # pragma: no cover - _hub_wait returned, so it is ready
            raise timeout_error(f"waiting for process {proc.pid} to exit", deadline)
        return status

    async def wait(self, timeout: Timeout = DEFAULT) -> int:
        """Awaits the exit; returns the exit code (see :meth:`pyhcs.Process.wait`)."""
        status = await self._status(self._deadline(timeout))
        return status.check(system_id=self.sync.system_id)

    async def _run(self, call: str, fn: Callable[..., None], doc: str | None, deadline: Deadline) -> str | None:
        op = self.sync._submit(call, fn, doc, callback=True)
        return await _complete(op, deadline)

    async def close_stdin(self, *, timeout: Timeout = DEFAULT) -> None:
        """Flushes and closes stdin, then sends CloseHandle/StdIn (the child sees EOF)."""
        writer, self.stdin = self.stdin, None
        if writer is not None:
            try:
                await writer.drain()
            except OSError:
                pass
            writer.close()
        proc = self.sync
        if not proc._had_stdin or proc._hub.exit is not None or proc.closed:
            return
        proc._had_stdin = False
        doc = '{"Operation":"CloseHandle","CloseHandle":{"Handle":"StdIn"}}'
        try:
            await self._run("HcsModifyProcess", _process._modify_process, doc, self._deadline(timeout))
        except HcsError as err:
            if not is_already_stopped(err):
                raise

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
                    raise self.sync._closed_error("communicate")
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
        await self._status(deadline)
        return self._output()

    def _output(self) -> tuple[bytes | None, bytes | None]:
        out = b"".join(self._out) if self._out is not None else None
        err = b"".join(self._err) if self._err is not None else None
        return out, err

    async def signal(self, signal: int | str, *, timeout: Timeout = DEFAULT) -> bool:
        """The async :meth:`pyhcs.Process.signal` (False if it had exited)."""
        proc = self.sync
        proc._ensure_open("HcsSignalProcess")
        if proc._hub.exit is not None:
            return False
        deadline = self._deadline(timeout)
        with reports_timeout(deadline):
            value = signal_value(signal, await _guest_os(proc.system, deadline))
            try:
                await self._run("HcsSignalProcess", _process._signal_process, to_json({"Signal": value}), deadline)
            except HcsError as err:
                if proc._benign(err):
                    return False
                raise
            return True

    async def terminate(self, *, timeout: Timeout = DEFAULT) -> bool:
        """The async :meth:`pyhcs.Process.terminate` (False if it had exited)."""
        proc = self.sync
        proc._ensure_open("HcsTerminateProcess")
        if proc._hub.exit is not None:
            return False
        try:
            await self._run("HcsTerminateProcess", _process._terminate_process, None, self._deadline(timeout))
        except HcsError as err:
            if proc._benign(err):
                return False
            raise
        return True

    async def kill(self, *, timeout: Timeout = DEFAULT) -> bool:
        """The async :meth:`pyhcs.Process.kill`. Runs in a thread of its own (it opens fresh
        handles), never queued behind other work; the thread finishes even if the awaiting
        task is cancelled."""
        return await _in_thread(lambda: self.sync.kill(timeout=timeout))

    async def resize(self, height: int, width: int, *, timeout: Timeout = DEFAULT) -> None:
        doc = to_json({"Operation": "ConsoleSize", "ConsoleSize": {"Height": int(height), "Width": int(width)}})
        await self._run("HcsModifyProcess", _process._modify_process, doc, self._deadline(timeout))

    async def properties(self, *, timeout: Timeout = DEFAULT) -> dict[str, Any]:
        doc = await self._run("HcsGetProcessProperties", _process._process_properties, None, self._deadline(timeout))
        value = _system.parse_properties(doc, "HcsGetProcessProperties", self.sync.system_id)
        return value

    def events(self, *, replay: bool = True, timeout: Timeout = DEFAULT) -> AsyncEventStream:
        return events(self, replay=replay, timeout=timeout)

    def close(self) -> None:
        """Closes the pipes and the handle (the process keeps running, as in HCS)."""
        if self._tasks is not None:
            for task in self._tasks:
                task.cancel()
        for pipe in (self.stdin, self.stdout, self.stderr):
            if pipe is not None:
                pipe.close()
        self.stdin = None
        self.sync.close()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Process:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None and not self.sync.closed and self.sync._hub.exit is None:
            try:
                await self.kill()
            except Exception:
                pass
        self.close()


# ------------------------------------------------------------------------------ systems


async def _guest_os(system: _system.ComputeSystem, deadline: Deadline) -> GuestOs:
    """The system's guest; asking HCS for it (opened or hosted systems, once) happens in a
    thread, off the loop."""
    known = system._guest
    if known is not None:
        return known
    return await _in_thread(lambda: system._guest_os(deadline.remaining()))


def _close_when_done(op: Operation, obj: Any) -> None:
    """A creation whose awaiting task was cancelled: close ``obj`` once HCS completed it."""
    op.add_done_callback(lambda _op: obj.close())
    op.abandon()


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
        system = _system.ComputeSystem._begin_create(id, config, callback=True, default_timeout=default_timeout,
                                                     guest_os=guest_os, strict=strict)
        op = system._creation
        assert op is not None
        try:
            await _wait_op(op, Deadline(resolve_timeout(timeout, default_timeout)))
        except TimeoutExpiredError as err:
            err.system = cls(system)
            raise
        except asyncio.CancelledError:
            system._creation = None
            _close_when_done(op, system)
            raise
        system.wait_created(0)
        return cls(system)

    async def wait_created(self, timeout: Timeout = DEFAULT) -> None:
        op = self.sync._creation
        if op is not None:
            await _wait_op(op, self._deadline(timeout))
            self.sync.wait_created(0)

    @classmethod
    async def open(cls, id: str, *, default_timeout: Timeout = DEFAULT, guest_os: str | None = None) -> ComputeSystem:
        """HcsOpenComputeSystem (a synchronous call: it does not wait for anything)."""
        return cls(_system.ComputeSystem.open(id, default_timeout=default_timeout, guest_os=guest_os))

    async def guest_os(self, *, timeout: Timeout = DEFAULT) -> GuestOs:
        """The async :attr:`pyhcs.ComputeSystem.guest_os` ("windows" or "linux")."""
        return await _guest_os(self.sync, self._deadline(timeout))

    async def _run(self, action: str, document: Document | None, timeout: Timeout) -> str | None:
        deadline = self._deadline(timeout)
        if self.sync._creation is not None:  # no coroutine to await in the common case
            await self.wait_created(deadline.remaining())
        op, doc = self.sync._begin(action, document)
        if op is None:
            return doc  # completed already (a query the library answered at once)
        return await _complete(op, deadline)

    async def start(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        await self._run("start", options, timeout)

    async def shutdown(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> bool:
        try:
            await self._run("shutdown", options, timeout)
        except HcsError as err:
            if is_already_stopped(err):
                return False
            raise
        return True

    async def terminate(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> bool:
        try:
            await self._run("terminate", options, timeout)
        except HcsError as err:
            if is_already_stopped(err):
                return False
            raise
        return True

    async def crash(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        await self._run("crash", options, timeout)

    async def pause(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        await self._run("pause", options, timeout)

    async def resume(self, options: Document | None = None, *, timeout: Timeout = DEFAULT) -> None:
        await self._run("resume", options, timeout)

    async def save(self, options: Document, *, timeout: Timeout = DEFAULT) -> None:
        await self._run("save", options, timeout)

    async def modify(self, request: Document, *, timeout: Timeout = DEFAULT, strict: bool = True) -> None:
        """The async :meth:`pyhcs.ComputeSystem.modify` (validated strictly unless ``strict=False``)."""
        text = to_json(request, "modify request", strict=False)
        if strict and text is not None:
            check_document(text, "modify", system_id=self.sync.id)
        await self._run("modify", text, timeout)

    async def properties(
        self, *types: str, query: Document | None = None, timeout: Timeout = DEFAULT
    ) -> dict[str, Any]:
        doc = await self._run("properties", _system._property_query(types, query), timeout)
        return _system.parse_properties(doc, "HcsGetComputeSystemProperties", self.id)

    async def state(self, *, timeout: Timeout = DEFAULT) -> str:
        """The ``State`` property (Created, Running, Paused, Stopped, SavedAsTemplate): the
        async twin of :attr:`pyhcs.ComputeSystem.state`, a method here because it queries HCS."""
        return str((await self.properties(timeout=timeout)).get("State", "Unknown"))

    async def wait_exit(self, timeout: Timeout = DEFAULT) -> SystemExitStatus:
        """The async :meth:`pyhcs.ComputeSystem.wait_exit`."""
        system = self.sync
        deadline = self._deadline(timeout)
        await _hub_wait(system._hub, system._exit_ready, deadline, "waiting for the compute system to exit")
        status = system._exit_outcome()
        assert status is not None
        return status

    async def stop(
        self, grace: float = 30.0, *, options: Document | None = None, timeout: Timeout = DEFAULT
    ) -> SystemExitStatus:
        """The async :meth:`pyhcs.ComputeSystem.stop`: shutdown, then terminate after ``grace``."""
        system = self.sync
        total = self._deadline(timeout)
        with reports_timeout(total):
            if system.exit_status is not None:
                return system.exit_status
            grace_deadline = Deadline(min(max(0.0, grace), total.remaining()))
            shutdown_op: Operation | None = None
            try:
                stopped = await self.shutdown(options, timeout=grace_deadline.remaining())
            except OperationTimeoutError as err:
                shutdown_op = err.operation  # abandoned: it completes after the terminate
            except HcsError:
                pass  # Created, Paused, or the guest refused: terminate
            else:
                if not stopped:
                    return await self.wait_exit(total.remaining())
                try:
                    return await self.wait_exit(grace_deadline.remaining())
                except OperationTimeoutError:
                    pass
            try:
                await self.terminate(timeout=total.remaining())
            except BaseException:
                if shutdown_op is not None:
                    shutdown_op.close()  # nothing will complete it now; closing is safe
                raise
            return await self.wait_exit(total.remaining())

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
        deadline = self._deadline(timeout)
        with reports_timeout(deadline):
            await self.wait_created(deadline.remaining())
            guest: GuestOs = "windows"
            if command is not None and not isinstance(command, str):
                guest = await _guest_os(self.sync, deadline)
            text = process_parameters(
                command, params=params, cwd=cwd, env=env, user=user, stdin=pipe_flag(stdin, "stdin"),
                stdout=pipe_flag(stdout, "stdout"), stderr=pipe_flag(stderr, "stderr"), console=console,
                console_size=console_size, guest_os=guest,
            )
            proc = self.sync._begin_process(text, callback=True, bufsize=0)
            op = proc._creation
            assert op is not None
            try:
                await _wait_op(op, deadline)
            except TimeoutExpiredError as err:
                err.process = proc
                raise
            except asyncio.CancelledError:
                proc._creation = None
                _close_when_done(op, proc)
                raise
            proc._creation_done(op)
            result = Process(proc)
            if stdin is not True and stdin == DEVNULL:
                try:
                    await result.close_stdin(timeout=deadline.remaining())
                except BaseException:
                    result.close()
                    raise
            return result

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
        deadline = self._deadline(timeout)
        try:
            proc = await self.create_process(
                command, params=params, cwd=cwd, env=env, user=user, stdin=plan.stdin,
                stdout=plan.stdout, stderr=plan.stderr, timeout=deadline.remaining(),
            )
        except TimeoutExpiredError as exc:
            half_made = exc.process
            if half_made is not None:
                half_made.close()  # ends the creation: nothing of it stays behind
            raise _system._run_timeout(command, deadline, exc, half_made, plan) from None
        try:
            try:
                out, err = await proc.communicate(plan.input, timeout=deadline.remaining())
                if plan.merge:
                    out, err = (out or b"") + (err or b""), None
                code = await proc.wait(deadline.remaining())
            except BaseException as exc:
                # The kill runs to its end even if this task is cancelled again; whatever
                # it raises then is retrieved, never logged as "never retrieved".
                kill = asyncio.ensure_future(proc.kill(timeout=max(deadline.remaining(), _system._KILL_GRACE)))
                kill.add_done_callback(_retrieve)
                try:
                    await asyncio.shield(kill)
                except Exception:
                    pass
                if isinstance(exc, TimeoutExpiredError):
                    proc.close()
                    raise _system._run_timeout(command, deadline, exc, proc.sync, plan) from None
                raise
            status = proc.exit_status
            assert status is not None
        finally:
            proc.close()
        result = CompletedProcess(command, code, *plan.finish(out, err), status, proc.pid, self.sync.id)
        if check:
            result.check_returncode()
        return result

    async def open_process(self, pid: int, *, stdio: bool = False) -> Process:
        return Process(_process.Process.open(self.sync, pid, stdio=stdio, bufsize=0))

    def events(self, *, replay: bool = True, timeout: Timeout = DEFAULT) -> AsyncEventStream:
        return events(self, replay=replay, timeout=timeout)

    def add_event_callback(self, fn: Callable[[Event], None], *, replay: bool = False) -> None:
        self.sync.add_event_callback(fn, replay=replay)

    def close(self) -> None:
        self.sync.close()

    async def aclose(self) -> None:
        self.sync.close()

    @property
    def closed(self) -> bool:
        return self.sync.closed

    async def __aenter__(self) -> ComputeSystem:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        system = self.sync
        if exc is not None and system._created and not system.closed and system.exit_status is None:
            try:
                await self.terminate()
            except Exception:
                pass
        system.close()


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
    op = _system.begin_enumerate(text, callback=True)
    doc = await _complete(op, Deadline(resolve_timeout(timeout)))
    return _system.parse_enumeration(doc)


async def open(id: str, *, default_timeout: Timeout = DEFAULT) -> ComputeSystem:
    """``await aio.open(id)``: the async :meth:`pyhcs.ComputeSystem.open`."""
    return await ComputeSystem.open(id, default_timeout=default_timeout)

