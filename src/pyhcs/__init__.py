"""pyhcs: the Windows Host Compute System API from Python, with an HCS emulator for Linux.

Two levels: :mod:`pyhcs.raw` mirrors the C API one function to one, and the objects here
(:class:`ComputeSystem`, :class:`Process`, :class:`Operation`) give handles that cannot leak,
waits that always have a timeout and errors that name their HRESULT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

from . import errors  # noqa: I001  (errors first: the generated table imports it)
from .errors import HcsError

# The Pythonic layer. DEFAULT_TIMEOUT is read at each wait, so assigning
# ``pyhcs.DEFAULT_TIMEOUT = 30`` changes the default of every later wait.
from ._handle import DEFAULT, Timeout
from ._runopts import DEVNULL, PIPE, STDOUT
from ._handle import default_timeout_from_env as _default_timeout_from_env
from ._log import call_statistics, reset_call_statistics, set_slow_call_threshold, slow_call_threshold
from ._native._types import EventType, OperationType

if TYPE_CHECKING:
    from . import aio, emulator, service, vm
    from ._native._backend import backend, backend_features
    from .events import Event, ExitStatus, SystemExitStatus
    from .operation import Operation
    from .pool import ComputeSystemPool
    from .process import CompletedProcess, Process
    from .system import ComputeSystem

# Everything that needs the native library is imported on first use, so that ``import pyhcs``
# (and pyhcs.errors, pyhcs.schema, the pytest plugin) works on a machine without HCS; the
# first touch of the library then raises ImportError naming what could not be loaded.
_LAZY = {
    "backend": "._native._backend",
    "backend_features": "._native._backend",
    "Event": ".events",
    "ExitStatus": ".events",
    "SystemExitStatus": ".events",
    "Operation": ".operation",
    "CompletedProcess": ".process",
    "Process": ".process",
    "ComputeSystem": ".system",
    "ComputeSystemPool": ".pool",
    "aio": None,
    "emulator": None,
    "service": None,
    "vm": None,
}

#: Seconds every wait waits when its ``timeout=`` is omitted (env PYHCS_TIMEOUT; math.inf:
#: no limit). ``timeout=None`` on a call always means no limit.
DEFAULT_TIMEOUT: float = _default_timeout_from_env()

__all__ = [
    "DEFAULT",
    "DEFAULT_TIMEOUT",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CompletedProcess",
    "ComputeSystem",
    "ComputeSystemPool",
    "Event",
    "EventType",
    "ExitStatus",
    "HcsError",
    "Operation",
    "OperationType",
    "Process",
    "SystemExitStatus",
    "Timeout",
    "__version__",
    "aio",
    "backend",
    "backend_features",
    "call_statistics",
    "emulator",
    "errors",
    "reset_call_statistics",
    "service",
    "set_slow_call_threshold",
    "slow_call_threshold",
    "vm",
]


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    where = _LAZY[name]
    value: object = importlib.import_module(where or f".{name}", __name__)
    if where is not None:
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
