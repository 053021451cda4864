"""Backend selection: the one place that knows there are two.

``PYHCS_BACKEND`` chooses: ``cython`` (the compiled ``pyhcs._native.cython._core``), ``ctypes``
(``pyhcs._native.ctypes``) or ``auto`` (the default: cython when it is built, else ctypes).

An explicit choice is strict: if that backend cannot be imported, importing pyhcs fails with
an ImportError that names the backend and the cause, instead of quietly running something
slower than asked for. ``auto`` prefers the compiled backend; if it exists but fails to load
for any reason (a broken build, a missing library symbol, an exception at its import) one
RuntimeWarning names the cause, because a silent fallback to ctypes is the most common
performance complaint about dual-backend libraries. If it was simply not built, auto takes
ctypes without a warning (the reason is logged at DEBUG).

When the HCS library itself does not exist (Windows without the "Containers"/"Hyper-V"
features, an emulator that was not built) no backend is tried and nothing is warned: the
first use of the library (``pyhcs.backend``, a Pythonic class, ``pyhcs.raw``; ``import pyhcs``
loads nothing) raises ``HcsNotInstalledError``, an ImportError saying what to install.

Both backends export exactly ``PUBLIC_API`` with the same signatures (a test checks it); the
names are copied into this module, so ``from pyhcs._native import _backend as B; B.hcs_...`` is how
the rest of pyhcs calls the library.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from types import ModuleType
from typing import Any

from ._api_names import PUBLIC_API
from ._library import not_installed

log = logging.getLogger("pyhcs")


_MODULES = {"cython": "pyhcs._native.cython._core", "ctypes": "pyhcs._native.ctypes"}


def load(name: str) -> ModuleType:
    """Imports one backend by name ("cython" or "ctypes") and checks it is complete."""
    try:
        module = importlib.import_module(_MODULES[name])
    except ImportError:
        raise
    except Exception as exc:
        # Whatever broke, the caller gets an ImportError naming it. OSError: the native
        # library could not be loaded; anything else is a bug of the
        # backend's import on this platform (e.g. an API the platform lacks).
        raise ImportError(f"pyhcs backend {name!r} failed to import: {type(exc).__name__}: {exc}") from exc
    missing = [n for n in PUBLIC_API if not hasattr(module, n)]
    if missing:
        raise ImportError(f"pyhcs backend {name!r} lacks {', '.join(missing)}")
    return module


def _select() -> tuple[str, ModuleType]:
    choice = os.environ.get("PYHCS_BACKEND", "auto").strip().lower() or "auto"
    if choice not in ("auto", "cython", "ctypes"):
        raise ImportError(f"pyhcs: PYHCS_BACKEND={choice!r} is not one of auto, cython, ctypes")
    absent = not_installed()
    if absent is not None:
        raise absent
    if choice != "auto":
        try:
            return choice, load(choice)
        except ImportError as exc:
            raise ImportError(
                f"pyhcs: PYHCS_BACKEND={choice} requested but {_MODULES[choice]} could not be imported: {exc}"
            ) from exc
    try:
        return "cython", load("cython")
    except ImportError as exc:
        not_built = isinstance(exc, ModuleNotFoundError) and exc.name == "pyhcs._native.cython._core"
        if not_built:
            log.debug("pyhcs: the compiled backend is not built; using ctypes")
        else:
            warnings.warn(
                f"pyhcs: the compiled backend failed to load ({exc}); falling back to the slower ctypes backend",
                RuntimeWarning,
                stacklevel=3,
            )
        try:
            return "ctypes", load("ctypes")
        except ImportError as fallback_exc:
            raise ImportError(f"pyhcs: no backend could be loaded: cython: {exc}; ctypes: {fallback_exc}") from exc


backend, _module = _select()
backend_features: frozenset[str] = frozenset(getattr(_module, "FEATURES", frozenset()))

globals().update({name: getattr(_module, name) for name in PUBLIC_API})

if os.environ.get("PYHCS_TRACE"):  # only then are the names above wrapped: no cost otherwise
    import sys

    import pyhcs.trace._record as _record

    # The recorder is handed this module rather than importing it: it sits above the backend.
    _record.install_from_env(sys.modules[__name__])


def __getattr__(name: str) -> Any:  # pragma: no cover - only for type checkers and typos
    raise AttributeError(f"module 'pyhcs._native._backend' has no attribute {name!r}")
