"""The awaitable compute systems and processes of :mod:`pyhcs.aio`, and their events: each
method builds the blocking twin's flow and awaits it with :func:`pyhcs._flow_aio.drive`."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from .. import process as _process
from .. import system as _system
from .._docs import Document, check_document, to_json
from .._flow import Call, Communicate, Flow
from .._flow_aio import drive, retrieve, seconds
from .._guest import GuestOs
from .._handle import DEFAULT, Deadline, Timeout, resolve_timeout, timeout_error
from .._runopts import NOT_GIVEN, NotGiven, Stdio, plan_run
from ..errors import HandleClosedError, TimeoutExpiredError
from ..events import Event, EventHub, EventStream, ExitStatus, SystemExitStatus, next_event_flow
from ..process import CompletedProcess
from ._pipes import READ_CHUNK, AsyncReader, AsyncWriter, steal

__all__ = ["AsyncEventStream", "ComputeSystem", "Process", "enumerate", "events", "open"]


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


# ------------------------------------------------------------------------------ processes


class Process:
    """The async twin of :class:`pyhcs.Process`; ``sync`` is the blocking object underneath.

    ``stdin`` is an :class:`AsyncWriter`, ``stdout``/``stderr`` are :class:`AsyncReader`.
    """

    def __init__(self, proc: _process.Process) -> None:
        self.sync = proc
        self.stdin = AsyncWriter(steal(proc.stdin)) if proc.stdin is not None else None
        self.stdout = AsyncReader(steal(proc.stdout)) if proc.stdout is not None else None
        self.stderr = AsyncReader(steal(proc.stderr)) if proc.stderr is not None else None
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
                while data := await reader.read(READ_CHUNK):
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
                task.add_done_callback(retrieve)
            self._tasks = tasks
        elif input:
            raise ValueError("cannot send input after communication has started")
        # asyncio.wait, not gather: it leaves no aggregate future behind whose exception
        # nobody retrieves when the caller times out or is cancelled.
        done, pending = await asyncio.wait(self._tasks, timeout=seconds(deadline),
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
