"""The raw level: every HCS function, one to one, from the selected backend.

Handles are ints, documents are ``str`` JSON, failures raise :class:`pyhcs.errors.HcsError`.
See ``pyhcs._native._backend.PUBLIC_API`` for the list. :func:`open_std_handle` turns a std handle
of ``HcsProcessInformation`` into a Python file on every platform (a Windows HANDLE or, on
the emulator, a file descriptor).
"""

from __future__ import annotations

from ._native._api_names import PUBLIC_API as _PUBLIC_API
from ._native._backend import *  # noqa: F403
from ._native._backend import backend, backend_features
from ._native._types import (
    GENERIC_ALL,
    HCS_INVALID_OPERATION_ID,
    INFINITE,
    EventOptions,
    EventType,
    HcsEvent,
    HcsProcessInformation,
    OperationType,
)
from ._stdio import open_std_handle

# The flat API's names are generated (pyhcs._native._api_names): pyright cannot follow the unpacking,
# but sees them through the wildcard import above, which re-exports them.
__all__ = [  # pyright: ignore[reportUnsupportedDunderAll]
    *_PUBLIC_API,
    "GENERIC_ALL",
    "HCS_INVALID_OPERATION_ID",
    "INFINITE",
    "EventOptions",
    "EventType",
    "HcsEvent",
    "HcsProcessInformation",
    "OperationType",
    "backend",
    "backend_features",
    "open_std_handle",
]
