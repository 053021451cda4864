"""Callback registry and dispatcher, shared by both backends.

The library calls back on its own threads. Those native callbacks (C trampolines in _core,
enqueue-only ctypes thunks in _fallback) never run user code: they copy the event, put it on a
queue with an integer *key* and return. This module owns the other end:

* the registry maps each key to what the user registered (callback, context, the handle it
  belongs to) and holds a strong reference to it until the handle is closed or the callback
  replaced, so nothing C can still name is ever garbage collected;
* one dispatcher thread drains the queue in batches and calls the user's callbacks in the
  order the library produced the events. An event whose key is gone (closed handle,
  replaced callback) is dropped: after close returns, no callback for that handle runs.
  Clearing a callback (HcsSet*Callback with none) first delivers what the library produced
  before it (the backends flush the queue), as a native callback already invoked would run.

Closing from another thread waits until a delivery of that handle's callback that is already
running has returned, like HcsCloseComputeSystem does for native callbacks; closing from
inside the callback itself does not wait (that would deadlock).

Finalizers: the registry's methods allocate and drop references while they hold its lock, so a
garbage collection, or the last reference to an object going away, can run a finalizer in
the middle of one of them, on the thread that holds the lock (a dropped ComputeSystem's
``__del__`` closes it, which calls ``forget``). Such a re-entrant ``forget`` must not wait for
the lock its own thread holds: it is queued instead and carried out as the outer method
releases the lock (the lock is an RLock only so that its owner can be asked). Objects the
registry lets go of are released after the lock is, so their finalizers run outside it.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ._types import HcsEvent

log = logging.getLogger("pyhcs")

KIND_OPERATION = 0
KIND_EVENT = 1

#: One queued notification: (key, kind, event type, event data, operation handle).
Item = tuple[int, int, int, "str | None", int]


class _Entry:
    __slots__ = ("callback", "context", "handle", "key", "kind")

    def __init__(self, key: int, handle: int, kind: int, callback: Callable[..., Any], context: int) -> None:
        self.key = key
        self.handle = handle
        self.kind = kind
        self.callback = callback
        self.context = context


class Dispatcher:
    """Delivers queued native notifications to Python callbacks on one thread.

    ``wait_batch`` blocks (without holding the GIL) until at least one item is queued and
    returns every item queued by then, oldest first.
    """

    def __init__(self, wait_batch: Callable[[], Iterable[Item]]) -> None:
        self._wait_batch = wait_batch
        self._lock = threading.Condition(threading.RLock())
        # forget() calls made by a finalizer on the thread that holds the lock (see the module
        # docstring); list.append and list.pop need no lock of ours.
        self._deferred: list[tuple[int, int]] = []
        self._keys = itertools.count(1)
        self._entries: dict[int, _Entry] = {}
        self._by_handle: dict[tuple[int, int], int] = {}
        self._thread: threading.Thread | None = None
        self._delivering: int = 0  # key being delivered now, 0 if none
        self.enqueued = 0  # maintained by the producer side, read by flush()
        self.delivered = 0
        self.finalizing = False

    # -- registry -------------------------------------------------------------------
    def _owned(self) -> bool:
        """Whether this thread holds the registry's lock (a finalizer re-entered us)."""
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]

    def _run_deferred(self) -> None:
        """Carries out the forget() calls finalizers queued while this thread held the lock."""
        while self._deferred and not self._owned():
            try:
                handle, kind = self._deferred.pop()
            except IndexError:  # another thread took the last one
                return
            self.forget(handle, kind)

    def register(self, handle: int, kind: int, callback: Callable[..., Any], context: int) -> int:
        """Records a callback for ``handle`` and returns the key to hand to C."""
        entry = _Entry(0, handle, kind, callback, context)
        replaced = None
        with self._lock:
            key = entry.key = next(self._keys)
            old = self._by_handle.get((kind, handle))
            if old is not None:  # a replaced callback: its key is dead from now on
                replaced = self._entries.pop(old, None)
            self._entries[key] = entry
            self._by_handle[(kind, handle)] = key
        del replaced  # its finalizers, if any, run here, without the lock
        if self._deferred:
            self._run_deferred()
        self._ensure_thread()
        return key

    def entry(self, handle: int, kind: int) -> _Entry | None:
        with self._lock:
            key = self._by_handle.get((kind, handle))
            found = self._entries.get(key) if key is not None else None
        if self._deferred:
            self._run_deferred()
        return found

    def forget(self, handle: int, kind: int) -> None:
        """Drops the registration of ``handle``; returns once no delivery of it is running
        (unless called from that very delivery, or by a finalizer that interrupted a method of
        the registry on this thread: that call is carried out when the method returns)."""
        if self._owned():
            self._deferred.append((handle, kind))
            return
        dropped = None
        with self._lock:
            key = self._by_handle.pop((kind, handle), None)
            if key is not None:
                dropped = self._entries.pop(key, None)
                if threading.current_thread() is not self._thread:
                    while self._delivering == key:
                        self._lock.wait(0.1)
        del dropped  # the callback's last reference may go here: its finalizers run unlocked
        if self._deferred:
            self._run_deferred()

    def live_entries(self) -> int:
        with self._lock:
            n = len(self._entries)
        if self._deferred:
            self._run_deferred()
        return n

    # -- delivery -------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="pyhcs-dispatch", daemon=True)
                self._thread.start()
        if self._deferred:
            self._run_deferred()

    def _run(self) -> None:
        while not self.finalizing:
            try:
                batch = list(self._wait_batch())
            except Exception:  # pragma: no cover - the queue itself failed
                log.exception("pyhcs: the callback queue failed")
                return
            for item in batch:
                self._deliver(item)

    def _deliver(self, item: Item) -> None:
        key, kind, ev_type, data, operation = item
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._delivering = key
        try:
            if entry is not None:
                if kind == KIND_OPERATION:
                    entry.callback(operation, entry.context)
                else:
                    entry.callback(HcsEvent(ev_type, data, operation), entry.context)
        except Exception:
            log.exception("pyhcs: a callback raised (key %d)", key)
        finally:
            with self._lock:
                self._delivering = 0
                self.delivered += 1
                self._lock.notify_all()
            if self._deferred:
                self._run_deferred()

    def flush(self, timeout: float = 5.0) -> bool:
        """Waits until everything queued so far has been delivered. True if it was."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True
        target = self.enqueued
        with self._lock:
            done = self._lock.wait_for(lambda: self.delivered >= target, timeout)
        if self._deferred:
            self._run_deferred()
        return done

    def reset_after_fork(self) -> None:
        """In a forked child the native handles and the thread are gone: start empty."""
        self._lock = threading.Condition(threading.RLock())
        self._deferred.clear()
        self._entries.clear()
        self._by_handle.clear()
        self._thread = None
        self._delivering = 0
        self.enqueued = self.delivered = 0


_all: list[Dispatcher] = []


def new_dispatcher(wait_batch: Callable[[], Iterable[Item]]) -> Dispatcher:
    d = Dispatcher(wait_batch)
    _all.append(d)
    return d


def _at_exit() -> None:
    # From here on native callbacks must not run Python: the interpreter is going away.
    for d in _all:
        d.finalizing = True


atexit.register(_at_exit)


def _after_fork_in_child() -> None:
    for d in _all:
        d.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
