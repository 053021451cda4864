"""Call tracing: record what a program asks of HCS and what HCS answers, then replay it.

Record (any backend, any library, real HCS or the emulator)::

    PYHCS_TRACE=/tmp/run.jsonl python my_tool.py       # or, in code:
    with pyhcs.trace.tracing("/tmp/run.jsonl"):
        ...

Every HCS call is one JSON line: the function, its arguments (documents parsed), the HRESULT
(and its name and error class), the result document, the thread, the time and the duration;
events and operation completions get a line each, naming the handle they were delivered to.
Handles appear as symbolic ids (``system#1``), so a trace can be replayed.

Read and replay::

    pyhcs trace show /tmp/run.jsonl
    pyhcs trace replay /tmp/run.jsonl      # exit 0: no divergence, 1: divergences, 2: error

See docs/tracing.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path
from types import ModuleType

from ._file import Call, Event, Trace, TraceFormatError, load
from ._record import ENV, Tracer
from ._replay import Divergence, ReplayReport

__all__ = [
    "ENV",
    "Call",
    "Divergence",
    "Event",
    "ReplayReport",
    "Trace",
    "TraceFormatError",
    "Tracer",
    "active",
    "add_trace_command",
    "load",
    "replay",
    "start",
    "stop",
    "tracing",
]


def start(path: str | Path) -> Tracer:
    """Starts tracing every HCS call of this process to ``path`` (``{pid}`` is replaced by the
    process id). Raises RuntimeError if a trace is already being written."""
    from . import _record

    tracer = _record.install(_record.expand(str(path)))
    try:
        tracer.open()  # a path that cannot be written fails here, not in the first HCS call
    except BaseException:
        _record.uninstall()
        raise
    return tracer


def stop() -> Path | None:
    """Stops tracing; returns the path of the trace that was written (None if none was)."""
    from . import _record

    tracer = _record.uninstall()
    return Path(tracer.path) if tracer is not None else None


def active() -> Path | None:
    """The trace being written, or None."""
    from . import _record

    tracer = _record.current()
    return Path(tracer.path) if tracer is not None and tracer.active else None


@contextlib.contextmanager
def tracing(path: str | Path) -> Generator[Tracer, None, None]:
    """``with tracing(path):`` traces the block."""
    tracer = start(path)
    try:
        yield tracer
    finally:
        stop()


def replay(
    trace: Trace | str | Path,
    *,
    strict: bool = False,
    wait_bound: float = 30.0,
    raw: ModuleType | None = None,
) -> ReplayReport:
    """Replays ``trace`` against the library pyhcs loaded (``raw``: a backend module, default
    ``pyhcs._native._backend``) and reports every divergence.

    ``strict`` compares volatile members too (ids, times, pids, GUIDs) and reports timing
    differences; ``wait_bound`` (seconds) bounds every wait and every precondition.
    Raises :class:`TraceFormatError` for a malformed trace, ValueError for a library that is
    not the emulator (replaying against the real HCS would create real compute systems).
    """
    from .._native._library import is_emulator
    from ._replay import replay as _replay

    if raw is None:
        import pyhcs._native._backend as raw_module

        raw = raw_module
    library = str(raw.library_path())
    if not is_emulator(library):
        raise ValueError(f"replay runs against the HCS emulator; this pyhcs loads {library}")
    if not isinstance(trace, Trace):
        trace = load(trace)
    return _replay(trace, raw, strict=strict, wait_bound=wait_bound)


def add_trace_command(subparsers: object) -> None:
    """Adds ``trace show`` and ``trace replay`` to the ``pyhcs`` command's subparsers."""
    from ._cli import add_trace_command as add

    add(subparsers)
