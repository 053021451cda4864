"""The async std pipes of a process: :class:`AsyncReader` (stdout, stderr) and
:class:`AsyncWriter` (stdin), read and written with the loop's own readiness callbacks, or
where the pipes cannot be polled (Windows, ``PYHCS_FORCE_WINDOWS_IO=1``) in threads of their
own (:func:`pyhcs._flow_aio.in_thread`), never the loop's default executor."""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from typing import IO, Any

from .. import _stdio
from .._flow_aio import in_thread, resolver
from .._stdio import PipeIO

__all__ = ["READ_CHUNK", "AsyncReader", "AsyncWriter", "steal"]

#: How much one read asks for.
READ_CHUNK = 65536


def steal(f: IO[bytes]) -> PipeIO:
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
            (loop.add_writer if write else loop.add_reader)(fd, resolver(fut))
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
            fut = self._pending = in_thread(fn)
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
                data = await self._threaded_call(lambda: self._raw.read(READ_CHUNK))
            else:
                data = self._raw.read(READ_CHUNK)
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
