"""``pyhcs.aio.ComputeSystemPool``: the asyncio twin of :class:`pyhcs.ComputeSystemPool`.

::

    async with aio.ComputeSystemPool(config, max_workers=4, timeout=60) as pool:
        async for result in pool.map([["echo", str(n)] for n in range(20)]):
            print(result.stdout)

Tasks are :class:`asyncio.Task` s whose results are :class:`pyhcs.CompletedProcess` objects;
at most ``max_workers`` run at once, each in a compute system of its own, made from ``config``
(reused for up to ``tasks_per_system`` tasks). Cancelling a task kills its process and tears
its system down. Leaving the ``async with`` block normally waits for the tasks; by an
exception cancels those not started; by cancellation (``asyncio.run`` cancels the main task
on Ctrl-C), KeyboardInterrupt or SystemExit cancels them all. Every system is torn down
before the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._docs import Document
from .._handle import Deadline
from ..pool import (
    DEFAULT,
    Command,
    DefaultType,
    PoolBase,
    RunOptions,
    alive,
    close_attached,
    keeps_system,
    run_options,
    seconds,
)
from ._system import ComputeSystem

if TYPE_CHECKING:
    from ..process import CompletedProcess

__all__ = ["ComputeSystemPool"]


class ComputeSystemPool(PoolBase):
    """Runs commands in compute systems made from ``config``, at most ``max_workers`` at once.

    The arguments are those of :class:`pyhcs.ComputeSystemPool` (``handle_sigterm`` aside:
    SIGTERM is the event loop's business). Use it from one event loop.
    """

    def __init__(
        self,
        config: Document,
        *,
        max_workers: int | None = None,
        tasks_per_system: int = 1,
        timeout: float | None = None,
        teardown_timeout: float = 30.0,
        prefix: str = "pyhcs-aio-pool",
    ) -> None:
        super().__init__(config, max_workers=max_workers, tasks_per_system=tasks_per_system, timeout=timeout,
                         teardown_timeout=teardown_timeout, prefix=prefix)
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[tuple[ComputeSystem, int]] = []
        self._tasks: set[asyncio.Task[CompletedProcess]] = set()
        self._started: set[asyncio.Task[Any]] = set()
        self._teardowns: set[asyncio.Task[None]] = set()
        # Set once nothing will take an idle system any more (shutdown without waiting, abort):
        # a system a task gives back then is torn down, not kept.
        self._closing = False

    # -- submitting --------------------------------------------------------------------------------
    def submit(
        self,
        command: Command,
        *,
        timeout: float | DefaultType | None = DEFAULT,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        capture_output: bool = True,
        check: bool = False,
    ) -> asyncio.Task[CompletedProcess]:
        """Schedules ``command`` on the running loop; the task's result is a
        :class:`pyhcs.CompletedProcess`. Options as :meth:`pyhcs.ComputeSystemPool.submit`."""
        self._check_open()
        limit = self._task_limit(timeout)
        options = run_options(input, env, cwd, capture_output, check)
        task = asyncio.get_running_loop().create_task(self._run(command, limit, options))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def map(
        self,
        commands: Iterable[Command],
        *,
        timeout: float | None = None,
        task_timeout: float | DefaultType | None = DEFAULT,
        check: bool = False,
    ) -> AsyncGenerator[CompletedProcess, None]:
        """Submits every command now; ``async for`` yields the results in order. ``timeout``
        bounds the whole iteration (TimeoutError); the tasks not finished are cancelled when
        the iteration stops early."""
        deadline = Deadline(seconds(timeout, "timeout"))
        tasks = [self.submit(c, timeout=task_timeout, check=check) for c in commands]

        async def results() -> AsyncGenerator[CompletedProcess, None]:
            try:
                for task in tasks:
                    remaining = deadline.remaining()
                    yield await asyncio.wait_for(asyncio.shield(task), None if math.isinf(remaining) else remaining)
            finally:
                for task in tasks:
                    task.cancel()

        return results()

    def as_completed(
        self, tasks: Iterable[asyncio.Task[CompletedProcess]] | None = None, timeout: float | None = None
    ) -> Iterator[asyncio.Future[CompletedProcess]]:
        """:func:`asyncio.as_completed` over ``tasks`` (default: every task not yet done)."""
        chosen = list(self._tasks) if tasks is None else list(tasks)
        return asyncio.as_completed(chosen, timeout=timeout)

    # -- running -----------------------------------------------------------------------------------
    async def _run(self, command: Command, limit: float, options: RunOptions) -> CompletedProcess:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_workers)
        async with self._slots:
            me = asyncio.current_task()
            assert me is not None
            self._started.add(me)
            deadline = Deadline(limit)
            system, uses = await self._take_system(deadline)
            ok = False
            try:
                result = await system.run(command, timeout=deadline.remaining(), **options)
                ok = True
                return result
            except BaseException as err:
                close_attached(err)
                ok = keeps_system(err)
                raise
            finally:
                uses += 1
                if self._reusable(system, ok=ok, uses=uses) and not self._closing:
                    self._idle.append((system, uses))
                else:
                    await self._retire(system)

    async def _take_system(self, deadline: Deadline) -> tuple[ComputeSystem, int]:
        """An idle system still fit for a task (and how many tasks it served), else a new one."""
        while self._idle:
            system, uses = self._idle.pop()
            if alive(system):
                return system, uses
            await self._retire(system)
        return await self._new_system(deadline), 0

    async def _new_system(self, deadline: Deadline) -> ComputeSystem:
        try:
            system = await ComputeSystem.create(self._system_id(), self.config, timeout=deadline.remaining())
        except BaseException as err:
            close_attached(err)
            raise
        try:
            await system.start(timeout=deadline.remaining())
        except BaseException as err:
            close_attached(err)
            await self._retire(system)
            raise
        return system

    async def _retire(self, system: ComputeSystem) -> None:
        """Tears ``system`` down in a task of its own, which a cancellation of the caller does
        not stop; :meth:`shutdown` waits for it."""
        teardown = asyncio.get_running_loop().create_task(self._teardown(system))
        self._teardowns.add(teardown)
        teardown.add_done_callback(self._teardowns.discard)
        await asyncio.shield(teardown)

    async def _teardown(self, system: ComputeSystem) -> None:
        try:
            if alive(system):
                await system.terminate(timeout=self.teardown_timeout)
        except Exception as err:
            self._teardown_failed(system, err)
        finally:
            system.close()

    # -- ending ------------------------------------------------------------------------------------
    async def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new tasks; ``cancel_futures`` cancels those not started; ``wait`` waits for the
        others. The idle systems, and with ``wait`` every system, are torn down on return."""
        self._shutdown = True
        if cancel_futures:
            for task in list(self._tasks):
                if task not in self._started:
                    task.cancel()
        if wait:
            await self._drain()
        else:
            self._closing = True
            await self._retire_idle()

    async def abort(self) -> None:
        """Cancels every task (running ones kill their process) and tears everything down."""
        self._shutdown = self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await self._drain()

    async def _drain(self) -> None:
        while self._tasks or self._teardowns:
            await asyncio.gather(*self._tasks, *self._teardowns, return_exceptions=True)
        await self._retire_idle()

    async def _retire_idle(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._retire(system) for system, _ in idle), return_exceptions=True)

    async def __aenter__(self) -> ComputeSystemPool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            await self.shutdown(wait=True)
        elif isinstance(exc, Exception):
            await self.shutdown(wait=True, cancel_futures=True)
        else:  # CancelledError (Ctrl-C under asyncio.run), KeyboardInterrupt, SystemExit
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._abort_task())

    def _abort_task(self) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(self.abort())

    def __repr__(self) -> str:
        return f"<pyhcs.aio.ComputeSystemPool {self.prefix!r} {self._state()}>"
