"""The two backends: the same API, strict selection, and what only the compiled one promises.

* parity: both export exactly PUBLIC_API, with identical ``inspect.signature`` (names, kinds,
  defaults, annotations), and the one stub ``_backend.pyi`` agrees with them;
* selection: ``auto`` prefers cython when it is built, and an explicit PYHCS_BACKEND is strict
  (checked in subprocesses, since the choice is made once at import);
* the GIL is really free: a Python thread runs while another waits, and the library's threads
  deliver a burst of callbacks while a Python thread never lets go of the GIL (deterministic:
  with a switch interval of 1000 s, Python only hands the GIL over when C code releases it);
* interpreter shutdown and fork, in isolated subprocesses.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import cast

import hypothesis
import pytest
from hypothesis import strategies as st

import pyhcs
from pyhcs import errors
from pyhcs._native import _backend

from conftest import BACKENDS

# The pyhcs under test (the installed package in CI, src/ in a development tree): subprocesses
# must import the same one, built extension and emulator included.
SRC = Path(pyhcs.__file__).resolve().parent.parent
CYTHON_BUILT = importlib.util.find_spec("pyhcs._native.cython._core") is not None and "cython" in BACKENDS
needs_cython = pytest.mark.skipif(
    not CYTHON_BUILT, reason="the compiled backend is not built (or PYHCS_BACKEND excludes it)"
)


def _settings(hcs: ModuleType, property_type: str, settings: object) -> None:
    hcs.hcs_modify_service_settings(json.dumps({"PropertyType": property_type, "Settings": settings}))


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Runs code in a fresh interpreter with pyhcs importable and the given environment."""
    full_env = {k: v for k, v in os.environ.items() if k != "PYHCS_BACKEND"}
    full_env["PYTHONPATH"] = os.pathsep.join([str(SRC), full_env.get("PYTHONPATH", "")])
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=120
    )


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_exports_exactly_public_api(name: str) -> None:
    module = _backend.load(name)
    assert sorted(module.__all__) == sorted(_backend.PUBLIC_API)
    assert len(set(module.__all__)) == len(module.__all__)
    for api in _backend.PUBLIC_API:
        assert callable(getattr(module, api)), api


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs both backends")
@pytest.mark.parametrize("api", _backend.PUBLIC_API)
def test_signatures_are_identical(api: str) -> None:
    core = getattr(_backend.load("cython"), api)
    fallback = getattr(_backend.load("ctypes"), api)
    sig_core, sig_fallback = inspect.signature(core), inspect.signature(fallback)
    # Names, kinds, defaults and (string) annotations: Signature equality compares them all.
    assert sig_core == sig_fallback
    assert [p.kind for p in sig_core.parameters.values()] == [p.kind for p in sig_fallback.parameters.values()]


def _stub_functions() -> dict[str, ast.FunctionDef]:
    tree = ast.parse((SRC / "pyhcs" / "_native" / "_backend.pyi").read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_stub_types_every_public_function() -> None:
    stub = _stub_functions()
    assert set(_backend.PUBLIC_API) <= set(stub)
    assert set(stub) - set(_backend.PUBLIC_API) == {"load"}


@pytest.mark.parametrize("api", _backend.PUBLIC_API)
def test_stub_matches_the_backends(api: str) -> None:
    node = _stub_functions()[api]
    params = node.args.args
    defaults = [None] * (len(params) - len(node.args.defaults)) + [ast.literal_eval(d) for d in node.args.defaults]
    for name in BACKENDS:
        sig = inspect.signature(getattr(_backend.load(name), api))
        assert [p.arg for p in params] == list(sig.parameters), name
        expected = [None if p.default is inspect.Parameter.empty else p.default for p in sig.parameters.values()]
        assert defaults == expected, name
        # parameter annotations too: the backends keep them as the stub's strings
        annotations = [ast.unparse(p.annotation) if p.annotation else None for p in params]
        assert annotations == [p.annotation for p in sig.parameters.values()], name
        assert node.returns is not None
        assert ast.unparse(node.returns) == sig.return_annotation, name


@pytest.mark.parametrize("name", BACKENDS)
def test_backend_identity(name: str) -> None:
    module = _backend.load(name)
    assert module.BACKEND == name
    features: object = module.FEATURES
    assert isinstance(features, frozenset)
    if name == "cython":
        assert {"nogil-calls", "nogil-dispatch"} <= cast("frozenset[str]", features)


@needs_cython
def test_missing_function_raises_naming_it() -> None:
    # The loader leaves a NULL slot for an export the library lacks; calling it raises
    # ProcedureNotFoundError naming the function, the same error as the ctypes backend.
    core = _backend.load("cython")
    assert core.has_function("HcsGetOperationId")
    assert not core.has_function("HcsNoSuchFunction")
    assert core.library_path() == _backend.load("ctypes").library_path()


# ----------------------------------------------------------------------------- selection


@needs_cython
@pytest.mark.backend_cython
def test_default_backend_is_cython_when_built() -> None:
    out = _run("import pyhcs; print(pyhcs.backend, sorted(pyhcs.backend_features))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "cython"
    assert "nogil-dispatch" in out.stdout


@pytest.mark.parametrize("name", BACKENDS)
def test_explicit_backend_is_used(name: str) -> None:
    out = _run("import pyhcs; print(pyhcs.backend)", PYHCS_BACKEND=name)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == name


def test_unknown_backend_is_an_import_error() -> None:
    out = _run(
        """
        import pyhcs  # the backend is chosen on first use of the library
        try:
            pyhcs.backend
        except ImportError as exc:
            print("ImportError:", exc)
        """,
        PYHCS_BACKEND="cffi",
    )
    assert out.returncode == 0, out.stderr
    assert "ImportError:" in out.stdout
    assert "'cffi'" in out.stdout and "auto" in out.stdout and "ctypes" in out.stdout


_HIDE_CORE = """
import sys
sys.modules["pyhcs._native.cython._core"] = None  # as if the extension were not built
"""

_BREAK_CORE = """
import importlib.abc, sys
class Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pyhcs._native.cython._core":
            raise ImportError("symbol lookup error: the build is broken")
        return None
sys.meta_path.insert(0, Broken())
"""


def test_explicit_cython_that_cannot_load_raises_naming_it() -> None:
    out = _run(
        _HIDE_CORE
        + """
import pyhcs
try:
    pyhcs.backend
except ImportError as exc:
    print("ImportError:", exc, "| cause:", type(exc.__cause__).__name__)
""",
        PYHCS_BACKEND="cython",
    )
    assert out.returncode == 0, out.stderr
    assert "PYHCS_BACKEND=cython" in out.stdout and "pyhcs._native.cython._core" in out.stdout
    assert "cause: ModuleNotFoundError" in out.stdout


def test_auto_without_the_extension_takes_ctypes_quietly() -> None:
    out = _run(_HIDE_CORE + "import pyhcs; print(pyhcs.backend)", PYTHONWARNINGS="error::RuntimeWarning")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ctypes"


def test_auto_with_a_broken_extension_warns() -> None:
    out = _run(
        _BREAK_CORE
        + """
import warnings
import pyhcs
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    backend = pyhcs.backend
print(backend)
print([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
""",
    )
    assert out.returncode == 0, out.stderr
    backend, warned = out.stdout.splitlines()
    assert backend == "ctypes"
    assert "compiled backend failed to load" in warned and "broken" in warned


def test_explicit_ctypes_never_imports_the_extension() -> None:
    out = _run("import sys, pyhcs; print(pyhcs.backend, 'pyhcs._native.cython._core' in sys.modules)", PYHCS_BACKEND="ctypes")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ctypes", "False"]


# ----------------------------------------------------------------------------- the GIL


class _NoSwitching:
    """With a switch interval of 1000 s the interpreter never takes the GIL from a running
    thread: another Python thread runs only while C code has released it. That turns "is the
    GIL released during X" into a yes/no question instead of a timing measurement."""

    def __enter__(self) -> None:
        self.old = sys.getswitchinterval()
        sys.setswitchinterval(1000.0)

    def __exit__(self, *exc: object) -> None:
        sys.setswitchinterval(self.old)


def test_python_threads_run_while_another_waits(hcs: ModuleType) -> None:
    _settings(hcs, "Emulator", {"CancelOperation": "Implemented"})
    _settings(hcs, "EmulatorFaults", {"Faults": [{"Function": "HcsEnumerateComputeSystems", "Hang": True}]})
    op = hcs.hcs_create_operation()
    try:
        hcs.hcs_enumerate_compute_systems(None, op)  # never completes by itself
        waiting = threading.Event()
        progress: list[int] = []

        def other_thread() -> None:
            waiting.wait()
            # Pure Python: this runs only while the waiting thread has released the GIL.
            n = 0
            for _ in range(20_000):
                n += 1
            progress.append(n)
            hcs.hcs_cancel_operation(op)  # ends the wait

        t = threading.Thread(target=other_thread)
        t.start()
        with _NoSwitching():
            waiting.set()
            # If this held the GIL, other_thread could not cancel, and the wait would end with
            # a timeout after 30 s instead of the cancellation.
            with pytest.raises(errors.HcsError) as info:
                hcs.hcs_wait_for_operation_result(op, 30_000)
        t.join()
        assert progress == [20_000]
        assert errors.is_cancelled(info.value), info.value
    finally:
        hcs.hcs_close_operation(op)


def test_library_threads_deliver_while_python_holds_the_gil(hcs: ModuleType) -> None:
    if "nogil-dispatch" not in getattr(hcs, "FEATURES", frozenset[str]()):
        pytest.skip("ctypes callback thunks take the GIL (documented limitation of the ctypes backend)")
    n = 2000
    _settings(hcs, "EmulatorFaults", {"Faults": [{"Function": "HcsEnumerateComputeSystems", "DelayMs": 1}]})
    delivered: list[int] = []

    def on_completion(op: int, ctx: int) -> None:
        delivered.append(ctx)

    ops = [hcs.hcs_create_operation(i, on_completion) for i in range(n)]
    try:
        start = hcs._queue_stats()["enqueued"]
        with _NoSwitching():
            for op in ops:
                hcs.hcs_enumerate_compute_systems(None, op)  # completes on a library thread
            # This thread now spins in Python without ever releasing the GIL; the library's
            # threads must still complete every operation and queue its notification.
            deadline = time.monotonic() + 60  # a bound for a broken build, not a measurement
            while hcs._queue_stats()["enqueued"] - start < n and time.monotonic() < deadline:
                pass
            queued = hcs._queue_stats()["enqueued"] - start
        assert queued == n
        assert hcs.flush_callbacks(30)
        assert sorted(delivered) == list(range(n))
    finally:
        for op in ops:
            hcs.hcs_close_operation(op)


# ----------------------------------------------------------------------------- shutdown and fork

_SHUTDOWN_SCRIPT = f"""
import json, os, sys, threading, time
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from rawutil import container_config, new_id
from pyhcs._native import _backend as B
seen = []
def slow_handler(op, ctx):
    seen.append(ctx)
    time.sleep(0.001)  # a slow Python handler: notifications pile up in the queue
def slow_event_handler(event, ctx):
    seen.append(ctx)
    time.sleep(0.001)
# A running system whose event callback also receives its operations' completions.
op = B.hcs_create_operation()
system = B.hcs_create_compute_system(new_id("exit"), container_config(), op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_start_compute_system(system, op)
B.hcs_wait_for_operation_result(op, 10000)
B.hcs_set_compute_system_callback(system, 1, 7, slow_event_handler)
B.hcs_modify_service_settings(json.dumps({{"PropertyType": "EmulatorFaults", "Settings": {{"Faults": [
    {{"Function": "HcsEnumerateComputeSystems", "DelayMs": 20}},
    {{"Function": "HcsGetComputeSystemProperties", "DelayMs": 20}}]}}}}))
ops = [B.hcs_create_operation(i, slow_handler) for i in range(300)]
for op in ops:
    B.hcs_enumerate_compute_systems(None, op)
routed = [B.hcs_create_operation() for _ in range(100)]
for op in routed:
    B.hcs_get_compute_system_properties(system, op)
# Exit at once: completions and events keep arriving on library threads during and after
# finalization.
print("exiting with", len(seen), "delivered", flush=True)
"""


@pytest.mark.parametrize("name", BACKENDS)
def test_callbacks_during_interpreter_shutdown(name: str) -> None:
    for _ in range(5):
        out = _run(_SHUTDOWN_SCRIPT, PYHCS_BACKEND=name)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "exiting with" in out.stdout
        assert "Fatal" not in out.stderr and "Traceback" not in out.stderr, out.stderr


_FORK_SCRIPT = """
import json, os, sys, threading
from pyhcs._native import _backend as B
B.hcs_modify_service_settings(json.dumps({"PropertyType": "Emulator", "Settings": {"CancelOperation": "Implemented"}}))
B.hcs_modify_service_settings(json.dumps({"PropertyType": "EmulatorFaults", "Settings": {"Faults": [
    {"Function": "HcsEnumerateComputeSystems", "Hang": True}]}}))
got = []
ready = threading.Event()
def handler(op, ctx):
    got.append((os.getpid(), ctx))
    ready.set()
# In the parent: a delivered callback, and one still registered and pending.
done = B.hcs_create_operation(1, handler)
B.hcs_enumerate_compute_systems(None, done)
B.hcs_cancel_operation(done)  # completes it on this thread, through the trampoline
assert B.flush_callbacks(10) and got == [(os.getpid(), 1)], got
pending = B.hcs_create_operation(2, handler)
B.hcs_enumerate_compute_systems(None, pending)
parent = os.getpid()
pid = os.fork()
if pid == 0:
    try:
        got.clear()
        ready.clear()
        if B.backend == "cython":
            stats = B.load("cython")._queue_stats()
            assert stats["pending"] == 0 and stats["enqueued"] == 0, stats
        # The child has its own dispatcher: a callback registered here is delivered here.
        mine = B.hcs_create_operation(3, handler)
        B.hcs_enumerate_compute_systems(None, mine)
        B.hcs_cancel_operation(mine)
        assert ready.wait(10) and B.flush_callbacks(10)
        assert got == [(os.getpid(), 3)], got  # never the parent's registration (2)
        print("child ok", flush=True)
        code = 0
    except BaseException as exc:
        print("child failed:", repr(exc), flush=True)
        code = 1
    os._exit(code)
_, status = os.waitpid(pid, 0)
# The parent is unaffected: its pending operation still completes into its own handler.
got.clear()
B.hcs_cancel_operation(pending)
assert B.flush_callbacks(10) and got == [(parent, 2)], got
print("parent ok", os.waitstatus_to_exitcode(status), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("name", BACKENDS)
def test_callbacks_after_fork(name: str) -> None:
    out = _run(_FORK_SCRIPT, PYHCS_BACKEND=name)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "child ok" in out.stdout, out.stdout + out.stderr
    assert "parent ok 0" in out.stdout, out.stdout + out.stderr


# ----------------------------------------------------------------------------- argument validation

# Both backends validate every argument alike (the rules are in _backend.pyi): for any values of
# any types, both raise the same exception type, or both succeed with the same result. Under a
# "*" fault every HCS call fails with E_ACCESSDENIED before doing anything, so a call that gets
# past validation reaches the library without side effects, and both backends see the same
# HRESULT. Integers are drawn where no emulator handle can be (a handle's top 32 bits are its
# generation, never 0), so a random value never closes a live handle of the session.
_ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**32 - 1),
    st.integers(2**64, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "{}", "C:\\x", "\U0001f600"]),
    st.binary(max_size=4),
    st.lists(st.integers(0, 3), max_size=2),
    st.just(object()),
    st.just(print),
    st.just(threading.Event),
)
_NOT_FUZZED = {"close_handle", "flush_callbacks"}  # closes file descriptors / waits on the dispatcher
_E_ACCESSDENIED = 0x80070005


def _outcome(fn: Callable[..., object], args: list[object]) -> tuple[str, object]:
    try:
        result = fn(*args)
    except Exception as exc:
        return "raised", type(exc)
    return "returned", result


@pytest.mark.skipif(len(BACKENDS) < 2, reason="needs both backends")
@pytest.mark.parametrize("api", sorted(set(_backend.PUBLIC_API) - _NOT_FUZZED))
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture], deadline=None)
@hypothesis.given(data=st.data())
def test_both_backends_validate_arguments_alike(api: str, data: st.DataObject) -> None:
    core = getattr(_backend.load("cython"), api)
    fallback = getattr(_backend.load("ctypes"), api)
    params = list(inspect.signature(core).parameters.values())
    required = sum(p.default is inspect.Parameter.empty for p in params)
    n = data.draw(st.integers(required, len(params)), label="arguments")
    args = [data.draw(_ANY_VALUE, label=p.name) for p in params[:n]]
    _settings(
        _backend, "EmulatorFaults", {"Reset": True, "Faults": [{"Function": "*", "Where": "Call", "HResult": _E_ACCESSDENIED}]}
    )
    try:
        got_core = _outcome(core, args)
        got_fallback = _outcome(fallback, args)
    finally:
        _settings(_backend, "EmulatorFaults", {"Reset": True, "Faults": []})
    assert got_core == got_fallback, (api, args)
