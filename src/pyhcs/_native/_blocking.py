"""Synchronous HCS calls that Ctrl-C can interrupt, shared by both backends.

HCS gives its synchronous functions (opening a system or process, the service functions, the
VM utilities, the storage functions, callback registration, the exit waits) neither a timeout
nor a way to cancel, and any of them can block for as long as the service does: the calls
that hung for hours in production, or the emulator's ``Hang`` fault. Python runs signal
handlers only on the main thread and only between bytecodes, so a main thread blocked in such a
call never sees Ctrl-C, whatever the call does with the GIL. Operation waits do not have the
problem: they are cut into slices with signal checks between them (pyhcs._native.cython._core ``_wait``,
pyhcs._native.ctypes ``_sliced``), which a single synchronous call cannot be.

So on the main thread those calls run on a helper thread, and the main thread waits for it in
slices of ``SLICE_S``, in which signal handlers run (at once on POSIX, where the wait is
interrupted; between slices on Windows, where Ctrl-C arrives on a thread of its own). An
exception from a handler (KeyboardInterrupt) ends the wait; the call itself goes on to its
end on the helper thread, like an interrupted operation wait leaves the operation running,
and whatever it returns that needs releasing (a handle it opened) is released then. An exit
wait that was given up stops at its next slice (:func:`abandoned`).

This is the only design that works on both platforms without help from the service: the
emulator could return early on EINTR, but Windows cannot interrupt a thread blocked in a call
to the service, so a test passing on the emulator would promise what Windows does not do.

The cost is one thread handoff per call on the main thread (tens of microseconds, see
docs/architecture.md); other threads call directly, since Python never raises
KeyboardInterrupt there. A call made while this thread holds the callback registry's lock (a
finalizer that runs during a registry method) is also made directly: the helper could need
that lock.
"""

# The backend's private modules share their internals (the dispatchers' registry).
# pyright: reportPrivateUsage=false

from __future__ import annotations

import functools
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from . import _dispatch
from ._api_names import SYNCHRONOUS

log = logging.getLogger("pyhcs")

#: The main thread's wait for a helper is cut into slices of this many seconds.
SLICE_S = 0.2
#: Idle helpers kept for the next call (more are made when calls that were given up still run).
_MAX_IDLE = 2

F = TypeVar("F", bound=Callable[..., Any])


class Abandoned(Exception):
    """Raised inside a helper by a sliced wait whose caller has given it up."""


class _Job:
    __slots__ = ("abandoned", "args", "cleanup", "done", "error", "finished", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], cleanup: Callable[[Any], None] | None) -> None:
        self.fn = fn
        self.args = args
        self.cleanup = cleanup
        self.done = threading.Lock()
        self.done.acquire()  # released by the helper when the call has returned
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.abandoned = False


_lock = threading.Lock()  # guards _idle and the finished/abandoned handshake of every job
_idle: list[queue.SimpleQueue[_Job | None]] = []
_local = threading.local()


def _helper(jobs: queue.SimpleQueue[_Job | None]) -> None:
    while (job := jobs.get()) is not None:
        _local.job = job
        result: Any = None
        error: BaseException | None = None
        try:
            result = job.fn(*job.args)
        except BaseException as exc:  # handed to the caller, who re-raises it
            error = exc
        finally:
            _local.job = None
        with _lock:
            job.result, job.error, job.finished = result, error, True
            abandoned = job.abandoned
        job.done.release()
        if abandoned:
            job.result = job.error = None
            if error is None and job.cleanup is not None:
                try:
                    job.cleanup(result)
                except Exception:  # nobody is left to tell
                    log.debug("pyhcs: releasing the result of an interrupted %s failed", job.fn, exc_info=True)
        del job, result, error
        with _lock:
            if len(_idle) >= _MAX_IDLE:
                return
            _idle.append(jobs)


def abandoned() -> bool:
    """Whether the call running on this (helper) thread was given up by its caller."""
    job: _Job | None = getattr(_local, "job", None)
    return job is not None and job.abandoned


def _direct() -> bool:
    """Whether the call should run on the calling thread."""
    if threading.current_thread() is not threading.main_thread() or sys.is_finalizing():
        return True
    return any(d._owned() for d in _dispatch._all)


def _call(fn: Callable[..., Any], args: tuple[Any, ...], cleanup: Callable[[Any], None] | None) -> Any:
    job = _Job(fn, args, cleanup)
    with _lock:
        jobs = _idle.pop() if _idle else None
    if jobs is None:
        jobs = queue.SimpleQueue[_Job | None]()
        try:
            threading.Thread(target=_helper, args=(jobs,), name="pyhcs-sync-call", daemon=True).start()
        except RuntimeError:  # no new threads (interpreter shutdown): call here
            return fn(*args)
    jobs.put(job)
    try:
        while not job.done.acquire(timeout=SLICE_S):
            pass  # signal handlers run here, between slices at the latest
    except BaseException:
        with _lock:
            job.abandoned = True
            finished = job.finished
        if finished and job.error is None and cleanup is not None:
            cleanup(job.result)  # it returned just as the wait was given up
        raise
    error = job.error
    if error is not None:
        job.error = None
        try:
            raise error
        finally:
            del error
    return job.result


def interruptible(fn: F, cleanup: Callable[[Any], None] | None = None) -> F:
    """``fn`` (a synchronous HCS call, positional arguments only) made interruptible on the
    main thread. ``cleanup(result)`` releases the result of a call whose caller gave up."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        if kwargs:
            bound = functools.partial(fn, **kwargs)
            return fn(*args, **kwargs) if _direct() else _call(bound, args, cleanup)
        return fn(*args) if _direct() else _call(fn, args, cleanup)

    return call  # type: ignore[return-value]


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _idle.clear()  # their threads did not survive the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def wrap_synchronous(namespace: dict[str, Any]) -> None:
    """Replaces the SYNCHRONOUS functions of a backend's module namespace with interruptible
    ones; a handle opened by a call whose caller gave up is closed when the call returns."""
    close_system = namespace["hcs_close_compute_system"]
    close_process = namespace["hcs_close_process"]

    def closing(close: Callable[[int], None]) -> Callable[[Any], None]:
        def cleanup(handle: Any) -> None:
            if handle:
                close(handle)

        return cleanup

    cleanups = {"hcs_open_compute_system": closing(close_system), "hcs_open_process": closing(close_process)}
    for name in SYNCHRONOUS:
        namespace[name] = interruptible(namespace[name], cleanups.get(name))
