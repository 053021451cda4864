"""Loading the backends where the platform or the installation is not what Linux + the
emulator give: no ``os.register_at_fork`` (Windows), a compiled backend that fails at import,
no HCS library at all, no computestorage library.

Everything runs in fresh interpreters (the backend is chosen once, at first use).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyhcs
from pyhcs._native import _backend, _library

from conftest import BACKENDS

SRC = Path(pyhcs.__file__).resolve().parent.parent
CYTHON_BUILT = importlib.util.find_spec("pyhcs._native.cython._core") is not None and "cython" in BACKENDS
needs_cython = pytest.mark.skipif(not CYTHON_BUILT, reason="the compiled backend is not built")
# The library the suite runs against (the bundled emulator, or a sanitizer build of it).
CORE = _backend.library_path()


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("PYHCS_BACKEND", "PYTHONWARNINGS")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(SRC), full_env.get("PYTHONPATH", "")])
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=120
    )


# ----------------------------------------------------------------------------- no register_at_fork

_NO_FORK_HOOK = """
import os, warnings
del os.register_at_fork  # as on Windows
warnings.simplefilter("error")  # a fallback would warn: it must not be needed
import pyhcs
from pyhcs._native import _backend as B
print(pyhcs.backend)
op = B.hcs_create_operation()
B.hcs_enumerate_compute_systems(None, op)
print(B.hcs_wait_for_operation_result(op, 10000) is not None)
B.hcs_close_operation(op)
"""


@pytest.mark.parametrize("choice", ["auto", *BACKENDS])
def test_imports_without_register_at_fork(choice: str) -> None:
    if choice in ("auto", "cython") and not CYTHON_BUILT:
        pytest.skip("the compiled backend is not built")
    out = _run(_NO_FORK_HOOK, PYHCS_BACKEND=choice)
    assert out.returncode == 0, out.stderr
    expected = "cython" if choice == "auto" else choice
    assert out.stdout.split() == [expected, "True"]


# ----------------------------------------------------------------------------- auto falls back once

# The compiled backend raising something other than ImportError while it is imported (what
# the unconditional os.register_at_fork did on Windows).
_RAISE_IN_CORE = """
import importlib.abc, importlib.machinery, sys
class Loader(importlib.abc.Loader):
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        raise AttributeError("module 'os' has no attribute 'register_at_fork'")
class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pyhcs._native.cython._core":
            return importlib.machinery.ModuleSpec(name, Loader())
        return None
sys.meta_path.insert(0, Finder())
"""


def test_auto_falls_back_with_one_warning_naming_the_cause() -> None:
    out = _run(
        _RAISE_IN_CORE
        + """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import pyhcs
    from pyhcs import ComputeSystem; from pyhcs._native import _backend as B
    first = pyhcs.backend
    B.hcs_get_service_properties()
    again = pyhcs.backend
print(first, again)
for w in caught:
    print(w.category.__name__, "|", w.message)
""",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "ctypes ctypes"
    assert len(lines) == 2, lines  # exactly one warning
    assert lines[1].startswith("RuntimeWarning |")
    assert "AttributeError" in lines[1] and "register_at_fork" in lines[1]


def test_explicit_cython_failing_at_import_names_the_cause() -> None:
    out = _run(
        _RAISE_IN_CORE
        + """
import pyhcs
try:
    pyhcs.backend
except ImportError as exc:
    print("ImportError:", exc)
""",
        PYHCS_BACKEND="cython",
    )
    assert out.returncode == 0, out.stderr
    assert "ImportError:" in out.stdout and "AttributeError" in out.stdout and "register_at_fork" in out.stdout


# ----------------------------------------------------------------------------- HCS not installed


@pytest.mark.parametrize("choice", ["auto", "cython", "ctypes"])
def test_absent_library_says_it_is_not_installed_without_warning(choice: str, tmp_path: Path) -> None:
    out = _run(
        """
import warnings
warnings.simplefilter("error")  # nothing is warned about
import pyhcs
from pyhcs import errors, schema  # the parts that need no library work
for use in ("pyhcs.backend", "from pyhcs import ComputeSystem", "from pyhcs import raw"):
    try:
        exec(use)
    except ImportError as exc:
        print(type(exc).__name__, "|", exc)
""",
        PYHCS_LIBRARY=str(tmp_path / "libhcsemu.so"),
        PYHCS_BACKEND=choice,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3, lines
    for line in lines:
        assert line.startswith("HcsNotInstalledError |") and "does not exist" in line, line
        assert "backend" not in line  # no backend was tried: the library is simply not there
    assert out.stderr == ""


def test_not_installed_on_windows_names_the_features(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PYHCS_LIBRARY", raising=False)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("SystemRoot", str(tmp_path))  # a Windows without computecore.dll
    error = _library.not_installed()
    assert isinstance(error, _library.HcsNotInstalledError) and isinstance(error, ImportError)
    text = str(error)
    assert "not installed" in text and "computecore.dll" in text
    assert '"Containers"' in text and '"Hyper-V"' in text
    (tmp_path / "System32").mkdir()
    (tmp_path / "System32" / "computecore.dll").write_bytes(b"MZ")
    assert _library.not_installed() is None  # present: loading it is the backends' business


# ----------------------------------------------------------------------------- no computestorage

_STORAGE_CALLS = """
import json
from pyhcs._native import _backend as B; from pyhcs import errors
print(B.backend)
# computecore works: an operation round trip and the service
op = B.hcs_create_operation()
B.hcs_enumerate_compute_systems(None, op)
assert B.hcs_wait_for_operation_result(op, 10000) is not None
B.hcs_close_operation(op)
assert json.loads(B.hcs_get_service_properties())["Properties"]
assert B.has_function("HcsCreateComputeSystem")
calls = {
    "HcsImportLayer": lambda: B.hcs_import_layer("/nonexistent/l", "/nonexistent/s", "{}"),
    "HcsExportLayer": lambda: B.hcs_export_layer("/nonexistent/l", "/nonexistent/e", "{}"),
    "HcsExportLegacyWritableLayer": lambda: B.hcs_export_legacy_writable_layer("/n/a", "/n/b", "/n/c", "{}"),
    "HcsDestroyLayer": lambda: B.hcs_destroy_layer("/nonexistent/l"),
    "HcsSetupBaseOSLayer": lambda: B.hcs_setup_base_os_layer("/nonexistent/l", 0),
    "HcsSetupBaseOSVolume": lambda: B.hcs_setup_base_os_volume("/nonexistent/l", "/nonexistent/v"),
    "HcsInitializeWritableLayer": lambda: B.hcs_initialize_writable_layer("/nonexistent/w", "{}"),
    "HcsInitializeLegacyWritableLayer": lambda: B.hcs_initialize_legacy_writable_layer("/n/a", "/n/b", "{}"),
    "HcsAttachLayerStorageFilter": lambda: B.hcs_attach_layer_storage_filter("/nonexistent/l", "{}"),
    "HcsDetachLayerStorageFilter": lambda: B.hcs_detach_layer_storage_filter("/nonexistent/l"),
    "HcsFormatWritableLayerVhd": lambda: B.hcs_format_writable_layer_vhd(0),
    "HcsGetLayerVhdMountPath": lambda: B.hcs_get_layer_vhd_mount_path(0),
}
for name, call in calls.items():
    assert not B.has_function(name), name
    try:
        call()
    except errors.ProcedureNotFoundError as exc:
        assert exc.call == name, (exc.call, name)
        print(name, "|", exc)
    else:
        raise AssertionError(f"{name} did not raise")
"""


@pytest.mark.parametrize("name", BACKENDS)
def test_absent_computestorage_costs_only_the_storage_functions(name: str, tmp_path: Path) -> None:
    storage = tmp_path / "computestorage.so"
    out = _run(_STORAGE_CALLS, PYHCS_BACKEND=name, PYHCS_LIBRARY=f"computecore={CORE};computestorage={storage}")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == name
    assert len(lines) == 13
    for line in lines[1:]:
        # the error names the library that is missing, not only the function
        assert "computestorage could not be loaded" in line and str(storage) in line, line


@pytest.mark.skipif(shutil.which("cc") is None or sys.platform == "win32", reason="needs a C compiler")
@pytest.mark.parametrize("name", BACKENDS)
def test_computestorage_without_exports_costs_only_those(name: str, tmp_path: Path) -> None:
    # A library that loads but exports nothing of computestorage (an older or partial build).
    source = tmp_path / "stub.c"
    source.write_text("int pyhcs_test_stub(void) { return 0; }\n")
    stub = tmp_path / "libstub.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(stub), str(source)], check=True, timeout=60)
    out = _run(_STORAGE_CALLS, PYHCS_BACKEND=name, PYHCS_LIBRARY=f"computecore={CORE};computestorage={stub}")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == name and len(lines) == 13
    assert all("ERROR_PROC_NOT_FOUND" in line for line in lines[1:]), lines
