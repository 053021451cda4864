"""Run commands in compute systems, the way :mod:`concurrent.futures` runs functions.

::

    config = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "jobs", "Container": {}}
    with pyhcs.ComputeSystemPool(config, max_workers=4, timeout=60) as pool:
        for result in pool.map([["echo", str(n)] for n in range(20)]):
            print(result.returncode, result.stdout)

Each worker thread makes its own compute system from ``config`` (create, start), runs one
task in it (:meth:`pyhcs.ComputeSystem.run`) and tears it down (terminate, close); with
``tasks_per_system=n`` a system serves up to ``n`` tasks in turn before it is replaced.
Results are :class:`pyhcs.CompletedProcess` objects in :class:`concurrent.futures.Future` s,
so ``concurrent.futures.wait``/``as_completed`` work on them.

Nothing is left behind: a system whose task failed (timeout, HCS error) is torn down rather
than reused; ``shutdown()`` and the end of a ``with`` block tear down every system; leaving the
block by an exception also cancels the tasks not started, and leaving it by KeyboardInterrupt
or SystemExit (Ctrl-C) terminates the systems of the running tasks too, whose futures then
raise :class:`TaskAborted`. A pool still open at interpreter exit is aborted the same way, and
so is every open pool on SIGTERM, after which the process dies of the signal as it would have.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import math
import os
import queue
import signal
import subprocess
import threading
import uuid
import weakref
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Final, Protocol, TypedDict

from ._docs import Document
from ._handle import Deadline
from .errors import HcsError

if TYPE_CHECKING:
    from .process import CompletedProcess
    from .system import ComputeSystem

__all__ = ["DEFAULT", "Command", "ComputeSystemPool", "DefaultType", "TaskAborted"]

log = logging.getLogger("pyhcs.pool")

#: A command as :meth:`pyhcs.ComputeSystem.run` takes it: a command line or an argument list.
Command = str | Sequence[str]


class DefaultType:
    """The type of :data:`DEFAULT`."""

    def __repr__(self) -> str:
        return "DEFAULT"


#: ``timeout=DEFAULT``: the pool's own per-task timeout.
DEFAULT: Final = DefaultType()


class TaskAborted(Exception):
    """The pool was aborted (KeyboardInterrupt, SystemExit, interpreter exit) while the task ran;
    its compute system was terminated."""


def positive_int(value: object, what: str) -> int:
    """``value`` if it is an int >= 1 (not a bool), else ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an int >= 1, not {value!r}")
    return value


def seconds(value: float | None, what: str) -> float:
    """``None`` -> no limit (``math.inf``); else a number of seconds >= 0."""
    if value is None:
        return math.inf
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"{what} must be >= 0 seconds or None (no limit), not {value!r}")
    return seconds


class RunOptions(TypedDict):
    """The options of :meth:`pyhcs.ComputeSystem.run` a pool passes on for each task."""

    input: bytes | None
    env: Mapping[str, str] | None
    cwd: str | os.PathLike[str] | None
    capture_output: bool
    check: bool


class PooledSystem(Protocol):
    """What the bookkeeping needs of a system, blocking or async."""

    @property
    def closed(self) -> bool: ...

    @property
    def exit_status(self) -> object | None: ...


class PoolBase:
    """The bookkeeping :class:`ComputeSystemPool` and ``pyhcs.aio.ComputeSystemPool`` share:
    the checked settings, the task limits and options, the system ids, when a system is kept
    for another task, and the error handling of a teardown. How the tasks run (threads or
    asyncio tasks) is each pool's own."""

    def __init__(
        self,
        config: Document,
        *,
        max_workers: int | None,
        tasks_per_system: int,
        timeout: float | None,
        teardown_timeout: float | None,
        prefix: str,
    ) -> None:
        self.config = config
        self.max_workers = positive_int(min(4, os.cpu_count() or 1) if max_workers is None else max_workers,
                                        "max_workers")
        self.tasks_per_system = positive_int(tasks_per_system, "tasks_per_system")
        self.timeout = seconds(timeout, "timeout")
        self.teardown_timeout = seconds(teardown_timeout, "teardown_timeout")
        self.prefix = prefix
        self._ids = itertools.count(1)
        self._tag = uuid.uuid4().hex[:8]
        self._shutdown = False

    def _task_limit(self, timeout: float | DefaultType | None) -> float:
        """A task's limit in seconds (``math.inf``: none): its own, else the pool's."""
        return self.timeout if isinstance(timeout, DefaultType) else seconds(timeout, "timeout")

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new tasks after shutdown")

    def _system_id(self) -> str:
        return f"{self.prefix}-{next(self._ids)}-{self._tag}"

    def _reusable(self, system: PooledSystem, *, ok: bool, uses: int) -> bool:
        """Whether ``system``, whose task ended (``ok``: with a result, or with the command's
        own non-zero exit under ``check=True``), may serve another task. (After a shutdown
        the queued tasks still run, and may use it.)"""
        return ok and uses < self.tasks_per_system and alive(system)

    @staticmethod
    def _teardown_failed(system: PooledSystem, err: Exception) -> None:
        """A terminate at teardown failed or timed out: what it hands over is closed here;
        the close of the system that follows ends it anyway (ShouldTerminateOnLastHandleClosed)."""
        close_attached(err)
        log.debug("pyhcs.pool: terminating %r: %s", system, err)

    def _state(self) -> str:
        return "shut down" if self._shutdown else "open"


def alive(system: PooledSystem) -> bool:
    """Whether ``system`` is open and has not exited: a task may run in it, a teardown must
    terminate it."""
    return not system.closed and system.exit_status is None


def keeps_system(err: BaseException) -> bool:
    """Whether a task that raised ``err`` leaves its system fit for another task: only
    ``check=True``'s CalledProcessError, where the command ran and failed on its own."""
    return isinstance(err, subprocess.CalledProcessError)


def run_options(
    input: bytes | None, env: Mapping[str, str] | None, cwd: str | os.PathLike[str] | None,
    capture_output: bool, check: bool,
) -> RunOptions:
    return {"input": input, "env": env, "cwd": cwd, "capture_output": capture_output, "check": check}


@dataclass
class _Task:
    future: Future[CompletedProcess]
    command: Command
    timeout: float
    options: RunOptions


@dataclass(eq=False)
class _Slot:
    """One worker thread and the system it holds between tasks."""

    thread: threading.Thread | None = None
    system: ComputeSystem | None = None
    uses: int = 0
    task: _Task | None = None
    aborted: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)


class ComputeSystemPool(PoolBase):
    """An executor whose workers run commands in compute systems made from ``config``.

    Args:
        config: the compute system configuration (a ``pyhcs.schema.ComputeSystem`` model, a
            dict or JSON text); every system of the pool is created from it.
        max_workers: how many tasks (and so systems) at once; default ``min(4, cpus)``.
        tasks_per_system: how many tasks a system serves in turn before it is replaced
            (1: a fresh system per task). A system whose task failed is never reused.
        timeout: seconds each task may take, from the moment a worker picks it up to its
            result, including creating and starting its system; ``None``: no limit. A task
            over time fails with ``errors.OperationTimeoutError`` and its process is killed.
        teardown_timeout: seconds each terminate at teardown may take.
        prefix: the system ids are ``<prefix>-<n>-<random>``.
        handle_sigterm: while the pool is open, SIGTERM first aborts the open pools (their
            systems are terminated, within the teardown bounds), then kills the process as
            the default disposition would. Only when the pool is made in the main thread and
            SIGTERM has its default disposition.

    Thread-safe: tasks may be submitted from several threads.
    """

    def __init__(
        self,
        config: Document,
        *,
        max_workers: int | None = None,
        tasks_per_system: int = 1,
        timeout: float | None = None,
        teardown_timeout: float = 30.0,
        prefix: str = "pyhcs-pool",
        handle_sigterm: bool = True,
    ) -> None:
        super().__init__(config, max_workers=max_workers, tasks_per_system=tasks_per_system, timeout=timeout,
                         teardown_timeout=teardown_timeout, prefix=prefix)
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        # Reentrant: the SIGTERM handler runs on the main thread, maybe inside submit().
        self._lock = threading.RLock()
        self._slots: list[_Slot] = []
        self._idle = threading.Semaphore(0)
        self._futures: weakref.WeakSet[Future[CompletedProcess]] = weakref.WeakSet()
        self._sigterm = _install_sigterm() if handle_sigterm else False
        _live_pools.add(self)

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
    ) -> Future[CompletedProcess]:
        """Schedules ``command`` and returns its future (a :class:`pyhcs.CompletedProcess`).

        ``timeout``: this task's limit in seconds (``None``: none; default: the pool's).
        ``input``, ``env``, ``cwd``, ``capture_output``, ``check``: as for
        :meth:`pyhcs.ComputeSystem.run`. RuntimeError after :meth:`shutdown`.
        """
        limit = self._task_limit(timeout)
        options = run_options(input, env, cwd, capture_output, check)
        future: Future[CompletedProcess] = Future()
        with self._lock:
            self._check_open()
            self._futures.add(future)
            self._queue.put(_Task(future, command, limit, options))
            self._adjust_workers()
        return future

    def map(
        self,
        commands: Iterable[Command],
        *,
        timeout: float | None = None,
        task_timeout: float | DefaultType | None = DEFAULT,
        check: bool = False,
    ) -> Generator[CompletedProcess, None, None]:
        """Runs every command; yields the results in the order of ``commands``.

        As :meth:`concurrent.futures.Executor.map`: ``timeout`` bounds the whole iteration
        (TimeoutError), the first failed task raises its error when its turn comes, and the
        tasks not yet started are cancelled when the iteration stops early.
        ``task_timeout`` is each task's own limit (default: the pool's).
        """
        deadline = Deadline(seconds(timeout, "timeout"))
        futures = [self.submit(c, timeout=task_timeout, check=check) for c in commands]

        def results() -> Generator[CompletedProcess, None, None]:
            try:
                futures.reverse()
                while futures:
                    remaining = deadline.remaining()
                    yield futures.pop().result(None if math.isinf(remaining) else remaining)
            finally:
                for f in futures:
                    f.cancel()

        return results()

    def as_completed(
        self, futures: Iterable[Future[CompletedProcess]] | None = None, timeout: float | None = None
    ) -> Iterator[Future[CompletedProcess]]:
        """:func:`concurrent.futures.as_completed` over ``futures`` (default: every task
        submitted to the pool and not yet collected by the garbage collector)."""
        chosen = list(self._futures) if futures is None else list(futures)
        return as_completed(chosen, timeout)

    # -- workers -----------------------------------------------------------------------------------
    def _adjust_workers(self) -> None:
        """Starts a worker unless an idle one will take the task (called with the lock held)."""
        if self._idle.acquire(blocking=False):
            return
        if len(self._slots) >= self.max_workers:
            return
        slot = _Slot()
        thread = threading.Thread(target=self._work, args=(slot,), name=f"{self.prefix}-worker-{len(self._slots)}",
                                  daemon=True)
        slot.thread = thread
        self._slots.append(slot)
        thread.start()

    def _work(self, slot: _Slot) -> None:
        try:
            while True:
                task = self._queue.get()
                if task is None:
                    return
                if task.future.set_running_or_notify_cancel():
                    self._run_task(slot, task)
                del task
                self._idle.release()
        finally:
            self._retire(slot)

    def _new_system(self, deadline: Deadline) -> ComputeSystem:
        from .system import ComputeSystem

        try:
            system = ComputeSystem.create(self._system_id(), self.config, timeout=deadline.remaining())
        except HcsError as err:
            # A create that timed out hands over the half-made system: closing it ends it
            # (ShouldTerminateOnLastHandleClosed) and closes its pending creation.
            close_attached(err)
            raise
        try:
            system.start(timeout=deadline.remaining())
        except BaseException as err:
            close_attached(err)
            self._teardown(system)
            raise
        return system

    def _run_task(self, slot: _Slot, task: _Task) -> None:
        deadline = Deadline(task.timeout)
        ok = False
        try:
            with slot.lock:
                if slot.aborted:
                    raise TaskAborted("the pool was aborted")
                slot.task = task
            system = slot.system
            if system is None or not alive(system):
                self._retire_system(slot)
                system = self._new_system(deadline)
                with slot.lock:
                    slot.system, slot.uses = system, 0
                    if slot.aborted:
                        raise TaskAborted("the pool was aborted")
            slot.uses += 1
            result = system.run(task.command, timeout=deadline.remaining(), **task.options)
            if slot.aborted:
                raise TaskAborted("the pool was aborted: the task's compute system was terminated")
            ok = True
        except BaseException as err:
            close_attached(err)
            if slot.aborted and not isinstance(err, TaskAborted):
                aborted = TaskAborted("the pool was aborted: the task's compute system was terminated")
                aborted.__cause__ = err
                err = aborted
            ok = keeps_system(err)
            task.future.set_exception(err)
            if not isinstance(err, Exception):
                raise
        else:
            task.future.set_result(result)
        finally:
            with slot.lock:
                slot.task = None
            if slot.aborted or (slot.system is not None and not self._reusable(slot.system, ok=ok, uses=slot.uses)):
                self._retire_system(slot)

    def _retire_system(self, slot: _Slot) -> None:
        with slot.lock:
            system, slot.system, slot.uses = slot.system, None, 0
        if system is not None:
            self._teardown(system)

    def _retire(self, slot: _Slot) -> None:
        self._retire_system(slot)

    def _teardown(self, system: ComputeSystem) -> None:
        """Terminates (bounded) and closes ``system``; never raises."""
        try:
            if alive(system):
                system.terminate(timeout=self.teardown_timeout)
        except Exception as err:
            self._teardown_failed(system, err)
        finally:
            try:
                system.close()
            except Exception:  # pragma: no cover - close does not fail
                log.warning("pyhcs.pool: closing %r failed", system, exc_info=True)

    # -- ending ----------------------------------------------------------------------------------
    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As :meth:`concurrent.futures.Executor.shutdown`: no new tasks; ``cancel_futures``
        cancels those not started; ``wait`` waits for the running ones, then every system is
        torn down (without ``wait`` each worker tears its system down when it finishes)."""
        self._stop(cancel_futures, wait, None)

    def _stop(self, cancel_futures: bool, wait: bool, bound: float | None) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                self._cancel_pending()
            for _ in self._slots:
                self._queue.put(None)
            slots = list(self._slots)
        if wait:
            deadline = Deadline(math.inf if bound is None else bound)
            for slot in slots:
                if slot.thread is not None:
                    remaining = deadline.remaining()
                    slot.thread.join(None if math.isinf(remaining) else remaining)
            busy = [slot.thread.name for slot in slots if slot.thread is not None and slot.thread.is_alive()]
            if busy:
                # Only a call HCS never completes, in a pool without a task timeout, gets here.
                log.warning("pyhcs.pool: %s still inside an HCS call after the abort", ", ".join(busy))
        self._release_sigterm()

    def abort(self, *, wait: bool = True) -> None:
        """Shuts down at once: cancels the tasks not started, terminates the systems of the
        running ones (their futures raise :class:`TaskAborted`) and tears everything down."""
        with self._lock:
            self._shutdown = True
            self._cancel_pending()
            slots = list(self._slots)
        for slot in slots:
            with slot.lock:
                slot.aborted = True
                system = slot.system if slot.task is not None else None
            if system is not None:
                try:
                    system.terminate(timeout=self.teardown_timeout)
                except Exception as err:
                    self._teardown_failed(system, err)
        # Bounded: each worker needs at most its teardown (a terminate, then a close) from here.
        self._stop(True, wait, 2 * self.teardown_timeout + 5.0)

    def _cancel_pending(self) -> None:
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                task.future.cancel()

    def _release_sigterm(self) -> None:
        if self._sigterm:
            self._sigterm = False
            _uninstall_sigterm()
        _live_pools.discard(self)

    def __enter__(self) -> ComputeSystemPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.shutdown(wait=True)
        elif isinstance(exc, Exception):
            self.shutdown(wait=True, cancel_futures=True)
        else:  # KeyboardInterrupt, SystemExit: stop now
            self.abort(wait=True)

    def __repr__(self) -> str:
        return f"<pyhcs.ComputeSystemPool {self.prefix!r} {self._state()}, {len(self._slots)}/{self.max_workers} workers>"


def close_attached(err: BaseException) -> None:
    """Closes what an error hands over (a timed-out create's system, a run's process, an
    operation HCS may still complete): the pool owns them, and nothing else will close them."""
    for name in ("process", "system", "operation"):
        obj = getattr(err, name, None)
        close = getattr(obj, "close", None)
        if callable(close) and not getattr(obj, "closed", False):
            with contextlib.suppress(Exception):
                close()


# ------------------------------------------------------------------------------------ SIGTERM

_live_pools: weakref.WeakSet[ComputeSystemPool] = weakref.WeakSet()
_sigterm_lock = threading.Lock()
_sigterm_users = 0


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Not an exception: code under the signal (a test framework, an `except BaseException`)
    # could swallow it. Tear the pools down here, then die of the signal as if unhandled.
    for pool in list(_live_pools):
        with contextlib.suppress(Exception):
            pool.abort(wait=True)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm() -> bool:
    global _sigterm_users
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return False
    with _sigterm_lock:
        if _sigterm_users == 0:
            if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
                return False  # the program handles SIGTERM itself
            signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_users += 1
    return True


def _uninstall_sigterm() -> None:
    global _sigterm_users
    with _sigterm_lock:
        _sigterm_users -= 1
        if _sigterm_users == 0 and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)


@atexit.register
def _abort_live_pools() -> None:
    # Workers are daemon threads, so interpreter exit does not wait for them: abort what is
    # still open, or its systems (real processes on the emulator) would outlive the program.
    for pool in list(_live_pools):
        with contextlib.suppress(Exception):
            pool.abort(wait=True)
