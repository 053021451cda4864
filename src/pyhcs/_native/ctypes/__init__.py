"""The ctypes backend: the flat HCS API with no compiled code (see ``pyhcs._native._backend``).

Its names are exactly ``PUBLIC_API``, taken from ``_api``; a name missing there fails the import."""

from .._api_names import PUBLIC_API
from . import _api

BACKEND = "ctypes"
FEATURES: frozenset[str] = frozenset()

globals().update({name: getattr(_api, name) for name in PUBLIC_API})
# private here, as in the compiled backend: the fused round trip of pyhcs.operation.run
_run_call = _api.run_call
_FUSED_CALLS = _api.FUSED_CALLS
# PUBLIC_API is generated (pyhcs._native._api_names): pyright cannot follow a computed __all__.
__all__ = list(PUBLIC_API)  # pyright: ignore[reportUnsupportedDunderAll]
