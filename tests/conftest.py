"""Shared fixtures: every raw-level test runs against both backends (multidict style), and
each test leaves the emulator as it found it.

On a real Host Compute Service (Windows, or PYHCS_LIBRARY naming something that is not the
emulator) nothing emulator-only is ever sent: the emulator reset around each test is left
out, and a test that would send an emulator-only property type (faults, quirk switches,
actions, counters) is skipped at that point, saying so, instead of sending it.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from pyhcs import _backend, _library

hypothesis = pytest.importorskip("hypothesis")
hypothesis.settings.register_profile("default", deadline=None, max_examples=50)
hypothesis.settings.register_profile("ci", deadline=None, max_examples=100, derandomize=True)
# the repeat passes of CI (ctypes from the wheel, ASan): same properties, fewer examples
hypothesis.settings.register_profile("ci-repeat", deadline=None, max_examples=25, derandomize=True)
hypothesis.settings.register_profile("expensive", deadline=None, max_examples=1000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def _available() -> list[str]:
    forced = os.environ.get("PYHCS_BACKEND", "auto")
    names = ["cython", "ctypes"] if forced in ("", "auto") else [forced]
    out = []
    for name in names:
        try:
            _backend.load(name)
        except ImportError:
            continue
        out.append(name)
    return out


BACKENDS = _available()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-cython-backend", action="store_true", default=False, help="skip the compiled backend variants"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--no-cython-backend"):
        skip = pytest.mark.skip(reason="--no-cython-backend")
        for item in items:
            if "[cython" in item.nodeid:
                item.add_marker(skip)


@pytest.fixture(params=BACKENDS, scope="session")
def hcs(request: pytest.FixtureRequest) -> ModuleType:
    """The raw API of one backend (``hcs.hcs_create_operation(...)``)."""
    return _backend.load(request.param)


# ----------------------------------------------------------------------------- emulator-only requests

ON_EMULATOR = _library.is_emulator(_backend.library_path())
_SERVICE_FUNCTIONS = ("hcs_modify_service_settings", "hcs_get_service_properties")


def emulator_only(request: object) -> str | None:
    """The emulator-only property type a service request names (``EmulatorFaults``...), else
    None: the emulator's controls are HcsModifyServiceSettings/HcsGetServiceProperties
    requests whose PropertyType(s) start with "Emulator" (docs/emulator.md)."""
    if not isinstance(request, str):
        return None
    try:
        doc = json.loads(request)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    names = doc.get("PropertyTypes")
    names = [doc.get("PropertyType")] + (names if isinstance(names, list) else [])
    return next((n for n in names if isinstance(n, str) and n.startswith("Emulator")), None)


def _guarded(function: Callable[..., Any], library: str) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        request = args[0] if args else next(iter(kwargs.values()), None)
        kind = emulator_only(request)
        if kind is not None:
            pytest.skip(f"needs the HCS emulator: {kind} is emulator-only, and pyhcs is using {library}")
        return function(*args, **kwargs)

    call.pyhcs_emulator_guard = True  # type: ignore[attr-defined]
    return call


def guard_emulator_controls(modules: list[Any], library: str) -> None:
    """Makes the service functions of ``modules`` skip the calling test instead of sending an
    emulator-only request (to a real HCS, which would reject it by name at best)."""
    for module in modules:
        for name in _SERVICE_FUNCTIONS:
            function = getattr(module, name, None)
            if function is not None and not getattr(function, "pyhcs_emulator_guard", False):
                setattr(module, name, _guarded(function, library))


if not ON_EMULATOR:
    guard_emulator_controls(
        [_backend, *(sys.modules[m] for m in ("pyhcs.raw", "pyhcs._core", "pyhcs._fallback") if m in sys.modules)],
        _backend.library_path(),
    )
    for _name in BACKENDS:
        guard_emulator_controls([_backend.load(_name)], _backend.library_path())


@pytest.fixture(autouse=True)
def _clean_emulator() -> Iterator[None]:
    """No faults, default quirk switches and a connected service around every test (on the
    emulator; a real HCS has none of these to reset)."""
    if not ON_EMULATOR:
        yield
        return
    reset = json.dumps({"PropertyType": "EmulatorActions", "Settings": {"Action": "Reset"}})
    _backend.hcs_modify_service_settings(reset)
    yield
    _backend.hcs_modify_service_settings(reset)
