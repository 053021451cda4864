"""The pyhcs pytest plugin: a clean HCS emulator per test, compute systems that are always torn
down, fault injection, both backends, and a leak check.

Registered through the ``pytest11`` entry point (as ``pyhcs``), so installing pyhcs makes the
fixtures available; ``-p no:pyhcs`` turns it off. Nothing happens to tests that use none of
its fixtures or markers.

Fixtures
--------
``hcs_emulator``
    A clean emulator for the test: no fault rules, the documented default quirk switches, the
    service connected, call counts at zero (then ``HCSEMU_SETTINGS``/``HCSEMU_FAULTS`` if the
    environment sets them). Yields a :class:`pyhcs.testing.Emulator`. At teardown it checks the
    test left nothing behind (see *Leak check*), puts the emulator back and terminates compute
    systems the test created and did not clean up.
``compute_system_factory``
    ``factory(id=None, config=None, *, start=True)`` creates (and starts) a
    :class:`~pyhcs.ComputeSystem` and returns it; every system it made is terminated and closed
    at teardown, whatever the test did (failed, injected faults, disconnected the service).
    The configuration comes from the ``pyhcs_system_config`` fixture, which a conftest can
    override (e.g. with a real container configuration on Windows).
``faults``
    A :class:`pyhcs.testing.Faults`: ``faults.fail(...)``, ``delay``, ``hang``,
    ``unexpected_exit``, ``process_exit``, ``service_disconnect``, ``reconnect``,
    ``quirks(...)``, ``call_counts()``, ``call_budget(...)``. Skips on real HCS.
``hcs``
    The raw API of one backend, ``pyhcs._native._backend.load(name)``
    (``hcs.hcs_create_operation()``...): a test that takes it runs once per backend (ids
    ``[cython]``, ``[ctypes]``), pyhcs itself left on its own backend. Session-scoped, so
    hypothesis tests can take it.
``pyhcs_backend``
    The name of the backend the test runs on: the parameter of a test run on both backends
    (the ``pyhcs_backends`` marker, or ``hcs``), else the backend pyhcs loaded.
``hcs_shared_service``
    A separate emulator service process for tests of multi-process tooling: yields its socket
    path (clients connect with ``HCSEMU_SERVICE=<path>``); stopped at teardown. The session
    itself runs on a private service (``HCSEMU_SERVICE=private`` unless set), so it stays
    hermetic.
``clean_emulator`` (session-scoped, for hypothesis)
    :func:`pyhcs.testing.clean_emulator` with the session's leak options:
    ``with clean_emulator() as faults:`` inside a ``@given`` test gives every example a clean
    emulator and a leak check. Session-scoped, so it passes hypothesis' health checks (which
    reject function-scoped fixtures under ``@given``, since they are not reset per example).

Markers
-------
``@pytest.mark.pyhcs_backends`` / ``@pytest.mark.pyhcs_backends("ctypes")``
    Runs the test once per backend (cython and ctypes, or the ones named), with the whole
    Pythonic layer switched to that backend for the duration of the test.
``@pytest.mark.pyhcs_real_hcs``
    The test may run against the real Host Compute Service on Windows. Off the emulator, the
    fixtures skip every test that lacks this marker, and skip marked tests too unless the run
    opts in with ``--pyhcs-real-hcs`` (or ini ``pyhcs_real_hcs = true``, or
    ``PYHCS_REAL_HCS=1``): real HCS creates real containers and VMs.
``@pytest.mark.pyhcs_no_leak_check``
    Skips the leak check for one test.

Both backends
-------------
One mechanism: the ``pyhcs_backends`` marker and the ``hcs`` fixture both parametrize
``pyhcs_backend`` by backend name (one parametrization when a test has both, and ``hcs`` is then
the module pyhcs was switched to). When ``PYHCS_BACKEND`` names one backend only that one runs;
else every backend in :data:`BACKENDS`, one that does not load here being skipped with the
reason.

Leak check
----------
At the end of every test that uses ``hcs_emulator`` (directly or through the other fixtures),
the plugin compares what is alive with what was alive before the test: emulator handles,
operations, systems, processes and unfreed documents; pyhcs objects not closed (including those
left for the garbage collector to close, which pyhcs reports with a ResourceWarning); file
descriptors; child processes. Anything left fails the test at teardown with a message naming
it. Tests that failed already are not reported again. Turn the check off with
``--pyhcs-no-leak-check`` or ini ``pyhcs_leak_check = false``; ``pyhcs_leak_timeout``
(seconds, default 10) is how long it waits for things to wind down before it reports.

Where pyhcs cannot be loaded (no emulator library, Windows without HCS) the fixtures skip
with the reason instead of failing the session.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import sys
import uuid
import warnings
from collections.abc import Callable, Generator, Iterator, Sequence
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

import pytest

from . import leaks
from .clean import CleanEmulator, sweep, system_ids
from .faults import Emulator, EmulatorRequired, Faults

if TYPE_CHECKING:
    import pluggy

    from ..system import ComputeSystem

__all__ = [
    "BACKENDS",
    "ComputeSystemFactory",
    "available_backends",
    "clean_emulator",
    "compute_system_factory",
    "faults",
    "hcs",
    "hcs_emulator",
    "pyhcs_backend",
    "pyhcs_system_config",
    "registered",
    "selected_backends",
    "use_backend",
]

log = logging.getLogger("pyhcs.testing")

#: The backends the ``pyhcs_backends`` marker knows, in the order tests run on them.
BACKENDS: tuple[str, ...] = ("cython", "ctypes")

REAL_HCS_ENV = "PYHCS_REAL_HCS"

_LEAK_HINT = (
    "Close what the test opened: every ComputeSystem, Process and Operation (a `with` block, or the "
    "compute_system_factory fixture, which tears down for you), every file and pipe; wait for child "
    "processes. To turn the check off: --pyhcs-no-leak-check, ini pyhcs_leak_check = false, or "
    "@pytest.mark.pyhcs_no_leak_check."
)
_UNCLOSED = re.compile(r"unclosed <pyhcs\.")

_call_failed_key = pytest.StashKey[bool]()


# ------------------------------------------------------------------------------------ backends


def _import_pyhcs() -> ModuleType:
    """pyhcs' backend module, or a skip that says why it cannot be loaded here."""
    try:
        from .._native import _backend
    except Exception as exc:  # ImportError, or OSError from loading the native library
        pytest.skip(f"pyhcs cannot be loaded here ({type(exc).__name__}: {exc})")
    return _backend


_availability: dict[str, str | None] | None = None


def available_backends() -> dict[str, str | None]:
    """Backend name -> None if it loads here, else the reason it does not."""
    global _availability
    if _availability is None:
        result: dict[str, str | None] = {}
        try:
            from .._native import _backend
        except Exception as exc:
            reason = f"pyhcs cannot be loaded here ({type(exc).__name__}: {exc})"
            result = dict.fromkeys(BACKENDS, reason)
        else:
            for name in BACKENDS:
                try:
                    _backend.load(name)
                except ImportError as exc:
                    result[name] = f"the {name} backend cannot be loaded: {exc}"
                else:
                    result[name] = None
        _availability = result
    return dict(_availability)


def selected_backends() -> list[str]:
    """The backends tests run on, in order: the one ``PYHCS_BACKEND`` names, else every one
    in :data:`BACKENDS` that loads here (the rule of the ``pyhcs_backends`` marker)."""
    forced = os.environ.get("PYHCS_BACKEND", "auto").strip().lower()
    names = [n for n in BACKENDS if n == forced] if forced in BACKENDS else list(BACKENDS)
    availability = available_backends()
    return [n for n in names if availability.get(n) is None]


@contextlib.contextmanager
def use_backend(name: str) -> Generator[ModuleType, None, None]:
    """Switches the whole of pyhcs (the Pythonic layer, ``pyhcs.raw``, ``pyhcs.emulator``)
    to backend ``name`` for the block, and back afterwards. Yields the backend module.

    Every pyhcs module calls the library through the names in ``pyhcs._native._backend``, so replacing
    those switches everything. Create and close the objects of the block inside it: an object
    keeps the callbacks of the backend it was created with.
    """
    from .._native import _backend as B

    module = B.load(name)
    targets: list[ModuleType] = [B]
    raw = sys.modules.get("pyhcs.raw")
    if raw is not None:
        targets.append(raw)
    pkg = sys.modules.get("pyhcs")
    saved: list[tuple[ModuleType, dict[str, Any]]] = []
    names = (*B.PUBLIC_API, "backend", "backend_features")
    features: frozenset[str] = frozenset(getattr(module, "FEATURES", frozenset[str]()))
    for target in [*targets, *([pkg] if pkg is not None else [])]:
        saved.append((target, {n: target.__dict__[n] for n in names if n in target.__dict__}))
    saved_module = B.__dict__.get("_module")
    try:
        for target in targets:
            for n in B.PUBLIC_API:
                setattr(target, n, getattr(module, n))
        for target in [*targets, *([pkg] if pkg is not None else [])]:
            # setattr: these module attributes are not in the type stubs of every target
            if "backend" in target.__dict__:
                setattr(target, "backend", name)  # noqa: B010
            if "backend_features" in target.__dict__:
                setattr(target, "backend_features", features)  # noqa: B010
        setattr(B, "_module", module)  # noqa: B010
        yield module
    finally:
        for target, values in saved:
            for n, v in values.items():
                setattr(target, n, v)
        if saved_module is not None:
            setattr(B, "_module", saved_module)  # noqa: B010


# ------------------------------------------------------------------------------------ factory


def default_system_config(owner: str = "pyhcs-testing") -> dict[str, Any]:
    """The configuration ``compute_system_factory`` uses by default: an (emulated) container."""
    return {"SchemaVersion": {"Major": 2, "Minor": 1}, "Owner": owner, "Container": {}}


class ComputeSystemFactory:
    """Makes compute systems and tears every one of them down at the end.

    ``factory()`` creates a system from the default configuration, starts it and returns the
    :class:`~pyhcs.ComputeSystem`; ``factory(id, config, start=False)`` to choose. ``close()``
    (the fixture's teardown, or the end of a ``with`` block) terminates and closes every
    system it made that is still open, after putting the emulator back to its defaults so that
    injected faults and a disconnected service cannot block the teardown. Usable without
    pytest::

        with ComputeSystemFactory() as make:
            system = make()
            system.run(["true"])
    """

    def __init__(
        self,
        config: Any = None,
        *,
        prefix: str = "pyhcs-test",
        teardown_timeout: float = 30.0,
        default_timeout: float | None = None,
    ) -> None:
        self.config = config if config is not None else default_system_config()
        self.prefix = _sanitize(prefix)
        self.teardown_timeout = teardown_timeout
        self.default_timeout = default_timeout
        #: Every system made, in order.
        self.systems: list[ComputeSystem] = []
        self._ids = itertools.count(1)
        self._tag = uuid.uuid4().hex[:6]

    def new_id(self) -> str:
        """A fresh, unique system id: ``<prefix>-<n>-<random>``."""
        return f"{self.prefix}-{next(self._ids)}-{self._tag}"

    def __call__(
        self,
        id: str | None = None,
        config: Any = None,
        *,
        start: bool = True,
        timeout: float | None = None,
    ) -> ComputeSystem:
        """Creates (and with ``start=True`` starts) a compute system; it is torn down later
        whatever happens. Errors of create and start propagate (the half-made system is still
        torn down)."""
        from ..system import ComputeSystem

        system = ComputeSystem.create(
            id or self.new_id(),
            config if config is not None else self.config,
            timeout=timeout,
            default_timeout=self.default_timeout,
        )
        self.systems.append(system)
        if start:
            system.start(timeout=timeout)
        return system

    create = __call__

    def close(self) -> None:
        """Terminates and closes every system made here (idempotent; never raises for a system
        that is already gone)."""
        from ..errors import HcsError

        emulator = Emulator()
        with contextlib.suppress(Exception):
            if emulator.active:
                # Faults and a disconnected service are the test's business, not the teardown's.
                emulator.reset(environment=False)
        failures: list[str] = []
        for system in reversed(self.systems):
            if system.closed:
                continue
            try:
                if system.exit_status is None:
                    system.terminate(timeout=self.teardown_timeout)
            except HcsError as err:
                # Already stopped, never created, timed out...: closing is what matters, and
                # with ShouldTerminateOnLastHandleClosed the close ends the system too.
                log.debug("pyhcs.testing: terminating %r at teardown: %s", system, err)
            finally:
                try:
                    system.close()
                except Exception as exc:  # pragma: no cover - close is not supposed to fail
                    failures.append(f"{system!r}: {type(exc).__name__}: {exc}")
        self.systems.clear()
        if failures:
            raise RuntimeError("compute_system_factory could not close: " + "; ".join(failures))

    def __enter__(self) -> ComputeSystemFactory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _sanitize(text: str, limit: int = 48) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "test"
    return cleaned[:limit]


# ------------------------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pyhcs", "pyhcs (HCS emulator fixtures)")
    group.addoption(
        "--pyhcs-no-leak-check",
        action="store_true",
        default=False,
        dest="pyhcs_no_leak_check",
        help="do not check that tests using the pyhcs fixtures leave no handles, systems, fds or processes",
    )
    group.addoption(
        "--pyhcs-real-hcs",
        action="store_true",
        default=False,
        dest="pyhcs_real_hcs",
        help="on Windows: run tests marked pyhcs_real_hcs against the real Host Compute Service",
    )
    parser.addini("pyhcs_leak_check", "check for leaks after tests using the pyhcs fixtures", type="bool", default=True)
    parser.addini("pyhcs_leak_timeout", "seconds to wait for things to wind down before reporting a leak", default="10")
    parser.addini("pyhcs_real_hcs", "run tests marked pyhcs_real_hcs against real HCS", type="bool", default=False)


_sessions = 0


def registered() -> bool:
    """True while a pytest session has this plugin registered (under any name).

    A test module that wants the fixtures whether or not the entry point is installed writes
    ``pytest_plugins = [] if plugin.registered() else ["pyhcs.testing.plugin"]``: asking for
    it again under its module name, while the entry point already registered it as ``pyhcs``,
    is an error in pytest ("Plugin already registered under a different name").
    """
    return _sessions > 0


def pytest_unconfigure(config: pytest.Config) -> None:
    global _sessions
    _sessions = max(0, _sessions - 1)


def pytest_configure(config: pytest.Config) -> None:
    global _sessions
    _sessions += 1
    _hermetic_service()
    config.addinivalue_line(
        "markers",
        "pyhcs_backends(*names): run the test once per pyhcs backend (default: cython and ctypes), "
        "with pyhcs switched to that backend",
    )
    config.addinivalue_line(
        "markers",
        "pyhcs_real_hcs: the test may run against the real Host Compute Service on Windows "
        "(only with --pyhcs-real-hcs)",
    )
    config.addinivalue_line("markers", "pyhcs_no_leak_check: do not run the pyhcs leak check after this test")


def _hermetic_service() -> None:
    """Each test session gets an emulator service of its own: private (a service process of
    this session's, over a socketpair) unless HCSEMU_SERVICE says otherwise; subprocesses of
    the tests inherit the choice and find the service executable through HCSEMU_DAEMON."""
    os.environ.setdefault("HCSEMU_SERVICE", "private")
    with contextlib.suppress(Exception):
        from pyhcs import emulator

        daemon = emulator.hcsemud_path()
        if os.path.exists(daemon):
            os.environ.setdefault("HCSEMU_DAEMON", daemon)


def pytest_report_header(config: pytest.Config) -> str | None:
    # The plugin is registered in every pytest session of the environment (an entry point), so
    # the header describes the library without loading it: loading waits for a test that uses it.
    from .._native._library import library_paths, not_installed

    missing = not_installed()
    if missing is not None:
        return f"pyhcs: cannot be loaded ({missing}); its fixtures will skip"
    path = library_paths()[0]
    loaded = sys.modules.get("pyhcs._native._backend")
    backend = getattr(loaded, "backend", None) or os.environ.get("PYHCS_BACKEND", "").strip().lower() or "auto"
    # by name, as _library.is_emulator judges a library it may not load: HCS is computecore.dll
    where = f"real HCS ({path})" if path.lower().endswith(".dll") else f"HCS emulator {path}"
    return f"pyhcs: {backend} backend, {where}" + ("" if loaded else " (loaded when a test uses it)")


def _backend_params(names: Sequence[str]) -> list[Any]:
    """One parameter per backend a test runs on (ids ``cython``, ``ctypes``), by the selection
    rule of :func:`selected_backends`; a backend that does not load here is skipped, saying why."""
    forced = os.environ.get("PYHCS_BACKEND", "auto").strip().lower()
    if forced in BACKENDS:
        names = [n for n in names if n == forced]
    availability = available_backends()
    params: list[Any] = []
    for name in names:
        reason = availability.get(name)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(name, id=name, marks=marks))
    if not params:
        params.append(
            pytest.param(
                None, id="no-backend", marks=[pytest.mark.skip(reason=f"PYHCS_BACKEND={forced} excludes them")]
            )
        )
    return params


@pytest.hookimpl(tryfirst=True)  # before fixture parameters: the backend leads the test id
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The one way a test runs on both backends: ``pyhcs_backend`` parametrized by backend name.

    A test marked ``pyhcs_backends`` gets it (and ``_pyhcs_backends_marker`` switches all of
    pyhcs to the parameter for the test); so does a test that takes ``hcs``, which returns the
    parameter's module. Both at once are one parametrization, not two.
    """
    marker = metafunc.definition.get_closest_marker("pyhcs_backends")
    # The plugin's hcs takes pyhcs_backend; an hcs a test module defines for itself may not.
    takes_hcs = "hcs" in metafunc.fixturenames and "pyhcs_backend" in metafunc.fixturenames
    if marker is None and not takes_hcs:
        return
    names: Sequence[str] = marker.args if marker is not None and marker.args else BACKENDS
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        pytest.fail(f"pyhcs_backends: unknown backend(s) {unknown}; known: {', '.join(BACKENDS)}", pytrace=False)
    if "pyhcs_backend" not in metafunc.fixturenames:
        metafunc.fixturenames.append("pyhcs_backend")
    # Session scope where the session-scoped hcs takes it (hypothesis' health check refuses a
    # function-scoped fixture argument of a @given test); per test otherwise, so that tests
    # run in the order they are written.
    scope: Literal["session", "function"] = "session" if "hcs" in metafunc.fixturenames else "function"
    metafunc.parametrize("pyhcs_backend", _backend_params(names), indirect=True, scope=scope)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.stash[_call_failed_key] = True


# ------------------------------------------------------------------------------------ helpers


def _real_hcs_opted_in(config: pytest.Config) -> bool:
    if config.getoption("pyhcs_real_hcs", default=False):
        return True
    if config.getini("pyhcs_real_hcs"):
        return True
    return os.environ.get(REAL_HCS_ENV, "").strip().lower() in ("1", "true", "yes")


def _require_real_hcs(request: pytest.FixtureRequest, path: str) -> None:
    if request.node.get_closest_marker("pyhcs_real_hcs") is None:
        pytest.skip(
            f"pyhcs is talking to the real Host Compute Service ({path}); only tests marked "
            "pyhcs_real_hcs run against it, and only with --pyhcs-real-hcs"
        )
    if not _real_hcs_opted_in(request.config):
        pytest.skip(
            "this test would run against the real Host Compute Service (it creates real "
            "containers or VMs); opt in with --pyhcs-real-hcs, ini pyhcs_real_hcs = true or PYHCS_REAL_HCS=1"
        )


def _leak_check_enabled(request: pytest.FixtureRequest) -> bool:
    config = request.config
    if config.getoption("pyhcs_no_leak_check", default=False):
        return False
    if not config.getini("pyhcs_leak_check"):
        return False
    return request.node.get_closest_marker("pyhcs_no_leak_check") is None


def _leak_timeout(config: pytest.Config) -> float:
    text = str(config.getini("pyhcs_leak_timeout")).strip()
    try:
        value = float(text)
    except ValueError:
        raise pytest.UsageError(f"pyhcs_leak_timeout must be a number of seconds, not {text!r}") from None
    return max(0.0, value)


class _UnclosedWarnings:
    """Records the ResourceWarnings pyhcs gives for objects the garbage collector had to close
    (the test dropped them unclosed); every other warning is passed on at the end."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._catcher: warnings.catch_warnings[list[warnings.WarningMessage]] | None = None
        self._log: list[warnings.WarningMessage] = []

    def __enter__(self) -> _UnclosedWarnings:
        self._catcher = warnings.catch_warnings(record=True)
        self._log = self._catcher.__enter__()
        warnings.filterwarnings("always", category=ResourceWarning, message=_UNCLOSED.pattern)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._catcher is not None
        self._catcher.__exit__(exc_type, exc, tb)
        for w in self._log:
            if issubclass(w.category, ResourceWarning) and _UNCLOSED.match(str(w.message)):
                self.messages.append(str(w.message))
            else:
                # Through the outer filters again, as if never caught.
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


# Shared with pyhcs.testing.clean_emulator (which must work without pytest).
_system_ids = system_ids
_sweep = sweep


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def pyhcs_backend(request: pytest.FixtureRequest) -> str:
    """The pyhcs backend this test runs on ("cython" or "ctypes"): the parameter of a test run
    on both backends (marked ``pyhcs_backends``, or taking ``hcs``), else the backend pyhcs
    loaded."""
    param: str | None = getattr(request, "param", None)
    if param is not None:
        return param
    return str(_import_pyhcs().backend)


@pytest.fixture(scope="session")
def hcs(pyhcs_backend: str) -> ModuleType:
    """The raw API of the backend the test runs on (``hcs.hcs_create_operation(...)``): a test
    that takes it runs once per backend. Session-scoped, so that hypothesis tests can take it;
    pyhcs itself is not switched (the ``pyhcs_backends`` marker does that)."""
    module: ModuleType = _import_pyhcs().load(pyhcs_backend)
    return module


@pytest.fixture(autouse=True)
def _pyhcs_backends_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """Switches all of pyhcs to the backend of a test marked ``pyhcs_backends`` for the test,
    even when it asks for no pyhcs fixture (autouse fixtures are set up first, so the switch
    encloses all the test's other function-scoped fixtures)."""
    if request.node.get_closest_marker("pyhcs_backends") is None:
        yield
        return
    name: str = request.getfixturevalue("pyhcs_backend")
    if name == _import_pyhcs().backend:
        yield
        return
    with use_backend(name):
        yield


@pytest.fixture
def hcs_emulator(request: pytest.FixtureRequest, pyhcs_backend: str) -> Iterator[Emulator]:
    """A clean HCS emulator for this test, checked for leaks at teardown (see the module
    docstring). Yields a :class:`pyhcs.testing.Emulator` (``statistics()``, ``settings()``,
    ``call_counts()``...); on real HCS (opted in) its ``active`` is False."""
    backend = _import_pyhcs()
    try:
        emulator = Emulator()
        active = emulator.active
    except Exception as exc:  # pragma: no cover - a library that loads but cannot answer
        pytest.skip(f"pyhcs cannot talk to its library ({type(exc).__name__}: {exc})")
    if not active:
        _require_real_hcs(request, emulator.library_path)
    else:
        emulator.reset()
    check = _leak_check_enabled(request)
    systems_before = _system_ids(backend) if active else None
    before = leaks.snapshot() if check else None
    unclosed = _UnclosedWarnings()
    with unclosed:
        yield emulator

    problems: list[str] = []
    try:
        failed = request.node.stash.get(_call_failed_key, False)
        if before is not None and not failed:
            if unclosed.messages:
                problems.append(
                    "pyhcs objects dropped without close() (the garbage collector closed them): "
                    + ", ".join(unclosed.messages[:10])
                )
            try:
                # Collects garbage itself when a count shows something still open (the
                # finalizers of dropped objects then report through the leak check's recorder).
                leaks.check(before, timeout=_leak_timeout(request.config))
            except leaks.LeakError as err:
                problems.extend(err.problems)
        elif before is not None:
            leaks.release(before)
    finally:
        if active:
            try:
                emulator.reset()
            finally:
                swept = _sweep(backend, systems_before) if systems_before is not None else []
                if swept and problems:
                    problems.append(f"(terminated at teardown: {', '.join(swept)})")
    if problems:
        # pytrace=False: the report is the message, not the plugin's source
        pytest.fail(
            f"pyhcs leak check: {request.node.nodeid} left behind:\n  " + "\n  ".join(problems) + f"\n{_LEAK_HINT}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def clean_emulator(request: pytest.FixtureRequest) -> Callable[..., CleanEmulator]:
    """``clean_emulator(**options)`` -> a context manager giving a clean emulator and a leak
    check per block (see :func:`pyhcs.testing.clean_emulator`), with the session's leak
    options as defaults. Made for ``@given`` tests: one block per example."""
    _import_pyhcs()
    try:
        active = Emulator().active
    except Exception as exc:  # pragma: no cover - a library that loads but cannot answer
        pytest.skip(f"pyhcs cannot talk to its library ({type(exc).__name__}: {exc})")
    if not active:
        pytest.skip("clean_emulator needs the HCS emulator (fault injection and its controls)")
    config = request.config
    check = not config.getoption("pyhcs_no_leak_check", default=False) and bool(config.getini("pyhcs_leak_check"))
    timeout = _leak_timeout(config)

    def make(*, leak_check: bool = check, leak_timeout: float = timeout) -> CleanEmulator:
        return CleanEmulator(leak_check=leak_check, leak_timeout=leak_timeout)

    return make


@pytest.fixture
def hcs_shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A separate emulator service process (hcsemud) for tests of multi-process tooling; yields
    its socket path. Point clients at it with ``HCSEMU_SERVICE=<path>`` (the mode is chosen once
    per process, so those clients are usually subprocesses). Stopped (its systems terminated)
    at teardown."""
    from pyhcs import emulator

    folder = tmp_path_factory.mktemp("hcsemud")
    folder.chmod(0o700)  # the service refuses a folder other users can reach
    path = str(folder / "hcsemu.sock")
    if emulator.serve(path, foreground=False) != 0:
        pytest.fail(f"hcsemud could not start on {path}")
    try:
        yield path
    finally:
        emulator.stop_service(path, timeout=20)


@pytest.fixture
def pyhcs_system_config() -> Any:
    """The configuration ``compute_system_factory`` gives systems by default (override it in a
    conftest, e.g. with a real container configuration on Windows)."""
    return default_system_config()


@pytest.fixture
def compute_system_factory(
    request: pytest.FixtureRequest, hcs_emulator: Emulator, pyhcs_system_config: Any
) -> Iterator[ComputeSystemFactory]:
    """``factory(id=None, config=None, *, start=True) -> ComputeSystem``; every system made is
    terminated and closed at teardown, even when the test failed."""
    factory = ComputeSystemFactory(pyhcs_system_config, prefix=request.node.name)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def faults(hcs_emulator: Emulator) -> Iterator[Faults]:
    """Fault injection, quirk switches and call budgets on the emulator (:class:`Faults`).
    Everything is undone at teardown. Skips on real HCS, which has none of it."""
    try:
        api = Faults()
    except EmulatorRequired as exc:
        pytest.skip(str(exc))
    try:
        yield api
    finally:
        with contextlib.suppress(Exception):
            api.reset()
