"""Shared fixtures: every raw-level test runs against both backends (multidict style), and
each test leaves the emulator as it found it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from types import ModuleType

import pytest

from pyhcs import _backend

hypothesis = pytest.importorskip("hypothesis")
hypothesis.settings.register_profile("default", deadline=None, max_examples=50)
hypothesis.settings.register_profile("ci", deadline=None, max_examples=100, derandomize=True)
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


@pytest.fixture(autouse=True)
def _clean_emulator() -> Iterator[None]:
    """No faults, default quirk switches and a connected service around every test."""
    reset = json.dumps({"PropertyType": "EmulatorActions", "Settings": {"Action": "Reset"}})
    _backend.hcs_modify_service_settings(reset)
    yield
    _backend.hcs_modify_service_settings(reset)
