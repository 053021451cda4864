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

The modules import one way: ``pyhcs._native._backend`` hands itself to the recorder
(``_record``) when ``PYHCS_TRACE`` is set, and the recorder never imports it; the ``trace``
subcommand (``_cli``, added by :mod:`pyhcs.cli`) imports the replay module, and this package
does not import the subcommand.

See docs/tracing.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from pathlib import Path

from . import _record
from ._file import Call, Event, Trace, TraceFormatError, load
from ._record import ENV, Tracer
from ._replay import Divergence, ReplayReport, replay

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
    "load",
    "replay",
    "start",
    "stop",
    "tracing",
]


def start(path: str | Path) -> Tracer:
    """Starts tracing every HCS call of this process to ``path`` (``{pid}`` is replaced by the
    process id). Raises RuntimeError if a trace is already being written."""
    from .._native import _backend

    tracer = _record.install(_record.expand(str(path)), _backend)
    try:
        tracer.open()  # a path that cannot be written fails here, not in the first HCS call
    except BaseException:
        _record.uninstall()
        raise
    return tracer


def stop() -> Path | None:
    """Stops tracing; returns the path of the trace that was written (None if none was)."""
    tracer = _record.uninstall()
    return Path(tracer.path) if tracer is not None else None


def active() -> Path | None:
    """The trace being written, or None."""
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
