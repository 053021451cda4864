"""Logging and the slow-call watchdog of the Pythonic layer.

Everything pyhcs reports goes to the ``"pyhcs"`` logger: DEBUG for every native call (name,
subject, duration), WARNING for calls that take suspiciously long.

The watchdog. A native HCS call can hang inside the service (moby
#37395 waited 54 hours in HcsStartComputeSystem). hcsshim once answered that by returning to
the caller while the call kept running, which freed buffers the call still used and crashed
computecore.dll. pyhcs never abandons a call: the thread that made it keeps waiting, and every
object the call uses stays alive. What the watchdog adds is visibility: one background thread
looks at the calls in flight and logs a WARNING, once per call, when one has run longer than
the threshold (``PYHCS_SLOW_CALL_SECONDS``, default 30 s, or :func:`set_slow_call_threshold`),
and an INFO line when such a call finally returns. Waits are cut into short slices by the layer
above, so a long *wait* is never reported as a slow *call*.

The bookkeeping is one dict insert and one dict pop per call, without a lock: CPython makes
single dict operations atomic, and the watchdog only ever reads a snapshot.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

__all__ = [
    "call_statistics",
    "log",
    "reset_call_statistics",
    "set_slow_call_threshold",
    "slow_call_threshold",
    "timed",
]

log = logging.getLogger("pyhcs")

_T = TypeVar("_T")

_ENV_THRESHOLD = "PYHCS_SLOW_CALL_SECONDS"
_DEFAULT_THRESHOLD = 30.0


def _threshold_from_env() -> float:
    text = os.environ.get(_ENV_THRESHOLD, "").strip()
    if not text:
        return _DEFAULT_THRESHOLD
    try:
        value = float(text)
    except ValueError:
        log.warning("pyhcs: ignoring %s=%r (not a number of seconds)", _ENV_THRESHOLD, text)
        return _DEFAULT_THRESHOLD
    if not value > 0:
        log.warning("pyhcs: ignoring %s=%r (must be > 0)", _ENV_THRESHOLD, text)
        return _DEFAULT_THRESHOLD
    return value


#: What a call is about: text, or a function giving it (only called when something is logged).
Detail: TypeAlias = "str | Callable[[], str | None] | None"


class _Call:
    __slots__ = ("detail", "name", "start", "warned")

    def __init__(self, name: str, detail: Detail, start: float) -> None:
        self.name = name
        self.detail = detail
        self.start = start
        self.warned = False


def _describe(detail: Any) -> str:
    if callable(detail):
        detail = detail()
    return f" ({detail})" if detail else ""


class _Watchdog:
    """Watches the native calls in flight; see the module docstring."""

    def __init__(self) -> None:
        self.threshold = _threshold_from_env()
        self.active: dict[int, _Call] = {}
        self.tokens = itertools.count(1)
        # name -> [count, total seconds, max seconds]
        self.stats: dict[str, list[float]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        thread = threading.Thread(target=self._run, name="pyhcs-watchdog", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            threshold = self.threshold
            sleep = threshold
            for call in list(self.active.values()):
                if call.warned:
                    continue
                age = now - call.start
                if age >= threshold:
                    call.warned = True
                    log.warning(
                        "pyhcs: %s%s has not returned after %.1f s; still waiting "
                        "(pyhcs never abandons a native call: the objects it uses stay alive)",
                        call.name,
                        _describe(call.detail),
                        age,
                    )
                else:
                    sleep = min(sleep, threshold - age)
            # A call that starts after this point cannot become slow before `threshold`
            # seconds from now, so new calls never need to wake this thread.
            self._wake.wait(max(0.01, sleep))
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def after_fork(self) -> None:
        self._thread = None
        self.active.clear()
        self._wake = threading.Event()


_watchdog = _Watchdog()
_tokens = _watchdog.tokens
_monotonic = time.monotonic


def _debug_enabled() -> bool:
    return log.isEnabledFor(logging.DEBUG)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_watchdog.after_fork)


def slow_call_threshold() -> float:
    """Seconds after which a native call still running is logged as slow."""
    return _watchdog.threshold


def set_slow_call_threshold(seconds: float) -> None:
    """Sets the slow-call threshold (also ``PYHCS_SLOW_CALL_SECONDS``). Must be > 0.

    A slow call is only reported, never abandoned.
    """
    value = float(seconds)
    if not value > 0 or math.isnan(value):
        raise ValueError(f"the slow-call threshold must be > 0 seconds, not {seconds!r}")
    _watchdog.threshold = value
    _watchdog.wake()


def timed(name: str, detail: Detail, fn: Callable[..., _T], *args: Any) -> _T:
    """Runs the native call ``fn(*args)`` under the watchdog and records its duration.

    ``name`` is the HCS function ("HcsStartComputeSystem"), ``detail`` what it is about
    ("system 'vm1'"), for the log lines.
    """
    # On every native call of the Pythonic layer: one object, two clock readings and no
    # formatting unless something is logged (bench/README.md, "The Pythonic layer").
    wd = _watchdog
    if wd._thread is None:
        wd.ensure_thread()
    token = next(_tokens)
    call = _Call(name, detail, _monotonic())
    active = wd.active
    active[token] = call
    try:
        return fn(*args)
    finally:
        active.pop(token, None)
        elapsed = _monotonic() - call.start
        entry = wd.stats.get(name)
        if entry is None:
            wd.stats[name] = [1, elapsed, elapsed]
        else:
            entry[0] += 1
            entry[1] += elapsed
            if elapsed > entry[2]:
                entry[2] = elapsed
        if call.warned:
            log.info("pyhcs: %s%s returned after %.1f s", name, _describe(detail), elapsed)
        elif _debug_enabled():
            log.debug("pyhcs: %s%s took %.3f ms", name, _describe(detail), elapsed * 1e3)


def call_statistics() -> dict[str, dict[str, float]]:
    """Per native function: ``{"count", "total", "max", "mean"}`` (seconds), since start or
    the last :func:`reset_call_statistics`. Useful to see where time goes and to spot calls
    that are slow on this host."""
    out: dict[str, dict[str, float]] = {}
    for name, (count, total, longest) in list(_watchdog.stats.items()):
        out[name] = {"count": count, "total": total, "max": longest, "mean": total / count if count else 0.0}
    return out


def reset_call_statistics() -> None:
    """Forgets the numbers :func:`call_statistics` reports."""
    _watchdog.stats.clear()
