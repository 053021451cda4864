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
both run the same flows (:mod:`pyhcs._flow`, see docs/architecture.md), awaited by their
asyncio driver (:mod:`pyhcs._flow_aio`); this package adds only the awaitable objects and the
pipes. Nothing blocks the event loop: operations complete through native completion callbacks,
the dispatcher thread hands completions and events to the loop with ``call_soon_threadsafe``,
one wake-up per batch however many arrived; the synchronous HCS calls (opening a handle,
registering a callback, a zero wait for an exit, closing) run in threads of their own; and
process pipes are read and written with the loop's own readiness callbacks, or on Windows,
whose pipes cannot be polled (or with ``PYHCS_FORCE_WINDOWS_IO=1``), in threads of their own,
never the loop's default executor, so a kill() never waits behind a read. ``close()`` stays
synchronous (for plain code and finalizers) and may wait for the service; ``aclose()`` and
``async with`` do not.

Cancelling a task that awaits never frees what HCS may still use: the operation stays alive
(pyhcs' registry holds it) and closes itself once HCS completes it; a system or process whose
creation was cancelled is closed the same way once the creation completes. A loop that closes
with completions still in flight is tolerated: they are dropped, nothing else happens.
"""


from __future__ import annotations

from .._flow_aio import wait_operation
from .._flow_aio import waker as _waker  # noqa: F401  # pyright: ignore[reportUnusedImport]  (the loop wake-ups, reached here by tests/aio)
from ._pipes import AsyncReader, AsyncWriter
from ._pool import ComputeSystemPool
from ._system import AsyncEventStream, ComputeSystem, Process, enumerate, events, open

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


def _adopt() -> None:
    # Show every public name under its public home, pyhcs.aio, wherever it is defined (as
    # pyhcs.errors does for its generated classes).
    for name in __all__:
        globals()[name].__module__ = __name__


_adopt()
del _adopt
