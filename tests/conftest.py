"""The suite's one conftest, on the pytest plugin's fixtures (pyhcs.testing.plugin).

* Both backends, one mechanism (the plugin's): a test marked ``pyhcs_backends`` or taking the
  plugin's ``hcs`` fixture is parametrized by backend name (``pyhcs_backend``, ids ``[cython]``,
  ``[ctypes]``). The marker switches all of pyhcs to the parameter for the test; ``hcs`` is the
  parameter's raw module, passed explicitly (session-scoped, so that hypothesis tests can take
  it); a test with both is parametrized once. The selection: ``PYHCS_BACKEND`` names one, else
  every backend (one that does not load is skipped, saying why). ``--no-cython-backend`` skips
  the ``[cython]`` variants.
* A clean emulator around every test: modules of the Pythonic layer use the plugin's
  ``hcs_emulator`` (``pytestmark = pytest.mark.usefixtures("hcs_emulator")``: reset, leak check
  at teardown, systems left behind swept); every other test gets the emulator reset before
  and after it (``_clean_emulator``).
* ``system``: a started container for the test, closed afterwards (implies ``hcs_emulator``).

On a real Host Compute Service (Windows, or PYHCS_LIBRARY naming something that is not the
emulator) nothing emulator-only is ever sent: the emulator reset around each test is left
out, and a test that would send an emulator-only property type (faults, quirk switches,
actions, counters) is skipped at that point, saying so, instead of sending it.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pyhcs._native import _backend, _library
from pyhcs.emulator._control import EmulatorControl, emulator_only
from pyhcs.testing.plugin import selected_backends

from pyutil import CONFIG, new_id

if TYPE_CHECKING:
    from pyhcs import ComputeSystem


def _plugin_autoloaded() -> bool:
    """Whether pytest loads pyhcs' plugin by itself: pyhcs installed (its pytest11 entry point)."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    from importlib.metadata import entry_points

    return any(ep.value == "pyhcs.testing.plugin" for ep in entry_points(group="pytest11"))


# A source checkout run with PYTHONPATH=src, pyhcs not installed, has no entry point: the
# plugin is loaded from here then, and only then (registering it twice is an error).
pytest_plugins = [] if _plugin_autoloaded() else ["pyhcs.testing.plugin"]

# A command that a non-interactive shell starts in the background (`cmd &`, as CI does) inherits
# SIGINT ignored, and Python then installs no KeyboardInterrupt handler; the Ctrl-C tests need
# the interpreter's default, here and in the subprocesses they start (exec resets a handled
# signal to SIG_DFL, where an ignored one would stay ignored).
# The suite never reaches the user's shared emulator service: a client that asks for the shared
# mode without naming a socket finds it under this session's own runtime folder (one per xdist
# worker), and a service started there is stopped when the session ends.
_RUNTIME = tempfile.mkdtemp(prefix="pyhcs-run-", dir="/tmp")
os.environ["XDG_RUNTIME_DIR"] = _RUNTIME


@atexit.register
def _end_session_service() -> None:
    from pyhcs import emulator

    socket_path = f"{_RUNTIME}/hcsemu/hcsemu.sock"
    try:
        if os.path.exists(socket_path) and emulator.service_status(socket_path) is not None:
            emulator.stop_service(socket_path, timeout=20)
    except Exception as err:  # reported, never fatal at exit
        print(f"pyhcs tests: stopping the session's shared service failed: {err}", file=sys.stderr)
    shutil.rmtree(_RUNTIME, ignore_errors=True)


if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

hypothesis = pytest.importorskip("hypothesis")
hypothesis.settings.register_profile("default", deadline=None, max_examples=50)
hypothesis.settings.register_profile("ci", deadline=None, max_examples=100, derandomize=True)
# the repeat passes of CI (ctypes from the wheel, ASan): same properties, fewer examples
hypothesis.settings.register_profile("ci-repeat", deadline=None, max_examples=25, derandomize=True)
hypothesis.settings.register_profile("expensive", deadline=None, max_examples=1000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


#: The backends the tests run on (the plugin's selection rule), for the guards below.
BACKENDS = selected_backends()


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


# ----------------------------------------------------------------------------- emulator-only requests

ON_EMULATOR = _library.is_emulator(_backend.library_path())
_SERVICE_FUNCTIONS = ("hcs_modify_service_settings", "hcs_get_service_properties")


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
        [_backend, *(sys.modules[m] for m in ("pyhcs.raw", "pyhcs._native.cython._core", "pyhcs._native.ctypes") if m in sys.modules)],
        _backend.library_path(),
    )
    for _name in BACKENDS:
        guard_emulator_controls([_backend.load(_name)], _backend.library_path())


@pytest.fixture(autouse=True)
def _clean_emulator(request: pytest.FixtureRequest) -> Iterator[None]:
    """No faults, default quirk switches and a connected service around every test (on the
    emulator; a real HCS has none of these to reset). Tests using the plugin's hcs_emulator
    get that (and its leak check) instead."""
    if not ON_EMULATOR or "hcs_emulator" in request.fixturenames:
        yield
        return
    control = EmulatorControl(_backend)
    control.reset()
    yield
    control.reset()


@pytest.fixture
def system(hcs_emulator: object) -> Iterator[ComputeSystem]:
    """A started container (``CONFIG``), closed after the test."""
    from pyhcs import ComputeSystem

    with ComputeSystem.create(new_id(), CONFIG) as s:
        s.start()
        yield s
