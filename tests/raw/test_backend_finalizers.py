"""Finalizers that run inside the callback registry's critical sections.

A garbage collection can start at any allocation, so it can run a finalizer in the middle of a
registry method, on the thread that holds the registry's lock; a dropped ComputeSystem's
``__del__`` then closes its handle, which calls ``Dispatcher.forget``. That must neither wait
for the lock its own thread holds (a deadlock, seen in a stack dump) nor be lost. Each test
forces the collection at a fixed point inside ``register`` (while the lock is held), so the
re-entry is certain, not a matter of allocation counts.
"""

# Tests the backends' private dispatcher.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import pyhcs
from pyhcs._native import _dispatch

from conftest import BACKENDS
from rawutil import ignore_event

SRC = Path(pyhcs.__file__).resolve().parent.parent


class _CollectingHandle(int):
    """A handle whose hashing (done by register under the registry's lock) runs a full
    garbage collection, once."""

    armed = False

    def __hash__(self) -> int:
        if _CollectingHandle.armed:
            _CollectingHandle.armed = False
            gc.collect()
        return int.__hash__(self)


def test_forget_from_a_finalizer_inside_register_does_not_deadlock() -> None:
    stop = threading.Event()

    def wait_batch() -> list[_dispatch.Item]:
        stop.wait()
        return []

    d = _dispatch.Dispatcher(wait_batch)
    seen: dict[str, Any] = {}

    class Dropped:
        """Stands for a ComputeSystem nobody closed: its finalizer closes its handle."""

        def __init__(self) -> None:
            self.cycle = self  # only the cycle collector frees it

        def __del__(self) -> None:
            seen["lock held by this thread"] = d._owned()
            d.forget(100, _dispatch.KIND_EVENT)
            seen["forgotten"] = True

    d.register(100, _dispatch.KIND_EVENT, ignore_event, 1)
    Dropped()
    gc.collect(0)  # nothing else in the youngest generation but the cycle above (best effort)
    Dropped()

    result: list[int] = []

    def register() -> None:
        _CollectingHandle.armed = True
        result.append(d.register(_CollectingHandle(200), _dispatch.KIND_EVENT, ignore_event, 2))

    t = threading.Thread(target=register, daemon=True)
    t.start()
    t.join(10)
    try:
        assert not t.is_alive(), "register deadlocked in a finalizer's forget()"
        assert seen == {"lock held by this thread": True, "forgotten": True}
        assert len(result) == 1
        # the deferred forget was carried out when register released the lock
        assert d.entry(100, _dispatch.KIND_EVENT) is None
        assert d.entry(200, _dispatch.KIND_EVENT) is not None
        assert d.live_entries() == 1
        assert d._deferred == []
    finally:
        d.finalizing = True
        stop.set()


_SCRIPT = """
import gc, json, sys, warnings
from pyhcs import ComputeSystem; from pyhcs._native import _backend as B
warnings.simplefilter("ignore", ResourceWarning)
module = B._module
d = module._api._dispatcher if hasattr(module, "_api") else module._dispatcher

class CollectOnce(dict):
    # The registry's handle table: a lookup inside register (the lock held) collects once.
    armed = False
    def get(self, key, default=None):
        if CollectOnce.armed:
            CollectOnce.armed = False
            gc.collect()
        return super().get(key, default)

config = {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": "pyhcs-tests", "Container": {}}
system = ComputeSystem.create("finalizer-" + str(id(d)), config)
handle = system._handle
system.cycle = system  # dropped, it waits for the cycle collector
del system
assert d.entry(handle, 1) is not None
d._by_handle = CollectOnce(d._by_handle)
CollectOnce.armed = True
op = B.hcs_create_operation(7, lambda op, ctx: None)  # registers: the collection closes the system
assert not CollectOnce.armed, "the collection did not run inside register"
assert d.entry(handle, 1) is None, "the finalizer's close was lost"
B.hcs_close_operation(op)
print("ok", B.backend, flush=True)
"""


@pytest.mark.parametrize("name", BACKENDS)
def test_dropped_compute_system_collected_inside_register(name: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYHCS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    env["PYHCS_BACKEND"] = name
    try:
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(_SCRIPT)], capture_output=True, text=True, env=env, timeout=30
        )
    except subprocess.TimeoutExpired as exc:  # pragma: no cover - the bug this test is about
        raise AssertionError(f"deadlocked: {exc.stdout!r} {exc.stderr!r}") from None
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split() == ["ok", name]
