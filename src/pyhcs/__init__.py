"""pyhcs: the Windows Host Compute System API from Python, with an HCS emulator for Linux.

Two levels: :mod:`pyhcs.raw` mirrors the C API one function to one, and the objects here
(:class:`ComputeSystem`, :class:`Process`, :class:`Operation`) give handles that cannot leak,
waits that always have a timeout and errors that name their HRESULT.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import errors  # noqa: I001  (errors first: the generated table imports it)
from ._backend import backend, backend_features
from .errors import HcsError

__all__ = ["HcsError", "__version__", "backend", "backend_features", "errors"]
