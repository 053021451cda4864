"""The ABI declared once: every restatement of hcs.h agrees with it, type by type.

src/hcsemu/hcs.h lists each exported function once (X-macros); tools/gen_abi.py writes the
Cython prototypes and function table, the ctypes prototypes, PUBLIC_API, the stub's signatures,
the testing toolkit's HCS_FUNCTIONS and src/hcsemu/hresults.h from it. These tests read hcs.h
with their own parser and map its C types through the one table below (not the generator's),
then compare: the Cython declarations (as written), the ctypes prototypes (as loaded) and the
stub (as parsed). The generator's own behaviour (--check, errors naming the culprit) is tested
on copies in a temporary directory.
"""

# Tests the backends' private layers against the generated ABI.
# pyright: reportPrivateUsage=false

from __future__ import annotations

import ast
import ctypes
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tomllib

from pyhcs._native._api_names import PUBLIC_API
from pyhcs.testing import faults

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "src" / "hcsemu" / "hcs.h"
PXD = ROOT / "src" / "pyhcs" / "_native" / "cython" / "_computecore.pxd"
PXI = ROOT / "src" / "pyhcs" / "_native" / "cython" / "_functable.pxi"
STUB = ROOT / "src" / "pyhcs" / "_native" / "_backend.pyi"
ABI_TABLE = ROOT / "tools" / "abi.toml"

# C type -> (Python annotation without "| None", out-parameter?). None as the annotation: the
# type is never seen from Python (an HRESULT becomes an exception).
TYPES: dict[str, tuple[str | None, bool]] = {
    "void": ("None", False),
    "HRESULT": (None, False),
    "DWORD": ("int", False),
    "UINT64": ("int", False),
    "PCWSTR": ("str", False),
    "HANDLE": ("int", False),
    "HCS_OPERATION": ("int", False),
    "HCS_SYSTEM": ("int", False),
    "HCS_PROCESS": ("int", False),
    "void*": ("int", False),
    "const void*": ("int", False),
    "const SECURITY_DESCRIPTOR*": ("None", False),
    "HCS_OPERATION_TYPE": ("int", False),
    "HCS_EVENT_OPTIONS": ("int", False),
    "HCS_OPERATION_COMPLETION": ("OperationCallback", False),
    "HCS_EVENT_CALLBACK": ("EventCallback", False),
    "PWSTR*": ("str", True),
    "PCWSTR*": ("str", True),
    "HCS_SYSTEM*": ("int", True),
    "HCS_PROCESS*": ("int", True),
    "HCS_PROCESS_INFORMATION*": ("HcsProcessInformation", True),
}


def fallback_lib() -> ModuleType:
    """pyhcs._native.ctypes._lib, imported only by the tests that need it: importing pyhcs._native.ctypes
    loads the library, and the other tests of this module need none. pyhcs._native._backend comes
    first so that a missing library raises its HcsNotInstalledError (tests/windows_selection.py
    reports that as a skip), not ctypes' OSError."""
    importlib.import_module("pyhcs._native._backend")
    return importlib.import_module("pyhcs._native.ctypes._lib")


def ctypes_of() -> dict[str, object]:
    """C type -> the ctypes type that must stand for it."""
    _lib = fallback_lib()
    vp = ctypes.POINTER(ctypes.c_void_p)
    return {
        "void": None,
        "HRESULT": ctypes.c_int32,
        "DWORD": ctypes.c_uint32,
        "UINT64": ctypes.c_uint64,
        "PCWSTR": ctypes.c_char_p,
        "HANDLE": ctypes.c_void_p,
        "HCS_OPERATION": ctypes.c_void_p,
        "HCS_SYSTEM": ctypes.c_void_p,
        "HCS_PROCESS": ctypes.c_void_p,
        "void*": ctypes.c_void_p,
        "const void*": ctypes.c_void_p,
        "const SECURITY_DESCRIPTOR*": ctypes.c_void_p,
        "HCS_OPERATION_TYPE": ctypes.c_int32,
        "HCS_EVENT_OPTIONS": ctypes.c_int32,
        "HCS_OPERATION_COMPLETION": _lib.OPERATION_COMPLETION,
        "HCS_EVENT_CALLBACK": _lib.EVENT_CALLBACK,
        "PWSTR*": vp,
        "PCWSTR*": vp,
        "HCS_SYSTEM*": vp,
        "HCS_PROCESS*": vp,
        "HCS_PROCESS_INFORMATION*": ctypes.POINTER(_lib.HCS_PROCESS_INFORMATION),
    }


def norm(ctype: str) -> str:
    """'PWSTR *' -> 'PWSTR*', 'const  void *' -> 'const void*'."""
    return re.sub(r"\s*\*", "*", " ".join(ctype.split()))


def header() -> dict[str, tuple[str, str, list[tuple[str, str]]]]:
    """C name -> (DLL, return type, [(parameter type, parameter name)]), in hcs.h order."""
    text = HEADER.read_text().replace("\\\n", " ")
    out: dict[str, tuple[str, str, list[tuple[str, str]]]] = {}
    for macro, dll in (("HCS_COMPUTECORE_FUNCTIONS", "computecore"), ("HCS_COMPUTESTORAGE_FUNCTIONS", "computestorage")):
        body = re.search(rf"#define {macro}\(X\)(.*)", text)
        assert body, macro
        for ret, name, params in re.findall(r"X\(\s*([^,]+?)\s*,\s*(Hcs\w+)\s*,\s*\(([^()]*)\)\s*\)", body.group(1)):
            decls: list[tuple[str, str]] = []
            for param in params.split(","):
                m = re.fullmatch(r"(.*?)\s*(\w+)", param.strip())
                assert m, (name, param)
                decls.append((norm(m.group(1)), m.group(2)))
            out[name] = (dll, norm(ret), decls)
    return out


FUNCTIONS = header()


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def test_the_header_is_read_whole() -> None:
    # 49 computecore + 12 computestorage functions; every X( entry parsed
    text = HEADER.read_text()
    assert len(FUNCTIONS) == 61 == text.count("    X(")
    assert all(ctype in TYPES for _, ret, params in FUNCTIONS.values() for ctype in [ret, *(t for t, _ in params)])


def test_gen_abi_check_passes() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_abi.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------- Cython


def _cython_decls(text: str, pattern: str) -> dict[str, tuple[str, list[str]]]:
    flat = re.sub(r"\(\s*\n\s*", "(", text)
    flat = re.sub(r",\s*\n\s*", ", ", flat)
    return {
        m.group("name"): (norm(m.group("ret")), [p.strip() for p in m.group("params").split(",")])
        for m in re.finditer(pattern, flat, re.M)
    }


def test_cython_function_table_matches_the_header() -> None:
    slots = _cython_decls(
        PXI.read_text(), r"^\s+(?P<ret>[\w ]+?\**)\s*\(\*(?P<name>\w+)\)\((?P<params>[^)]*)\) noexcept nogil$"
    )
    names = [n for n in slots if n.startswith("Hcs")]
    assert names == list(FUNCTIONS)  # hcs.h order, which _loader.h's struct also follows
    for name, (_, ret, params) in FUNCTIONS.items():
        assert slots[name] == (ret, [norm(t) for t, _ in params]), name
    # LocalFree and CloseHandle, which _loader.h adds, are declared too
    assert slots["LocalFree"] == ("HLOCAL", ["HLOCAL"])
    assert slots["CloseHandle"] == ("int", ["HANDLE"])


def test_cython_prototypes_match_the_header() -> None:
    text = PXD.read_text()
    section = text[text.index("BEGIN GENERATED") : text.index("END GENERATED")]
    protos = _cython_decls(section, r"^\s+(?P<ret>[\w ]+?\**)\s*(?P<name>Hcs\w+)\((?P<params>[^)]*)\)$")
    assert list(protos) == list(FUNCTIONS)
    for name, (_, ret, params) in FUNCTIONS.items():
        typed = [re.fullmatch(r"(.*?)\s*(\w+)", p) for p in protos[name][1]]
        assert all(typed), name
        got = [(norm(m.group(1)), m.group(2)) for m in typed if m]
        assert (protos[name][0], got) == (ret, params), name


def test_core_includes_the_generated_table() -> None:
    core = (ROOT / "src" / "pyhcs" / "_native" / "cython" / "_core.pyx").read_text()
    assert 'include "_functable.pxi"' in core
    assert "ctypedef struct pyhcs_table" not in core  # declared once, in the .pxi


# ----------------------------------------------------------------------------- ctypes


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_ctypes_prototype_matches_the_header(name: str) -> None:
    _lib = fallback_lib()
    ctypes_types = ctypes_of()
    assert set(ctypes_types) == set(TYPES)
    dll, ret, params = FUNCTIONS[name]
    table = _lib.COMPUTECORE if dll == "computecore" else _lib.COMPUTESTORAGE
    restype, argtypes = table[name]
    assert restype is ctypes_types[ret]
    assert len(argtypes) == len(params)
    for (ctype, pname), got in zip(params, argtypes, strict=True):
        assert got is ctypes_types[ctype], f"{name}({pname}): {got} for {ctype}"


def test_ctypes_tables_split_by_dll() -> None:
    _lib = fallback_lib()
    assert list(_lib.COMPUTECORE) == [n for n, f in FUNCTIONS.items() if f[0] == "computecore"]
    assert list(_lib.COMPUTESTORAGE) == [n for n, f in FUNCTIONS.items() if f[0] == "computestorage"]


def test_loaded_ctypes_functions_carry_the_prototypes() -> None:
    fallback_lib()
    from pyhcs._native.ctypes import _api

    lib, ctypes_types = _api._lib, ctypes_of()
    for name, (_, ret, params) in FUNCTIONS.items():
        fn = getattr(lib, name)
        assert name in lib.present, name
        assert fn.restype is ctypes_types[ret] and list(fn.argtypes) == [ctypes_types[t] for t, _ in params], name


def test_ctypes_callbacks_and_structs_have_the_c_layout() -> None:
    _lib = fallback_lib()
    # HCS_OPERATION_COMPLETION(HCS_OPERATION, void*), HCS_EVENT_CALLBACK(HCS_EVENT*, void*)
    assert _lib.OPERATION_COMPLETION._restype_ is None
    assert _lib.OPERATION_COMPLETION._argtypes_ == (ctypes.c_void_p, ctypes.c_void_p)
    assert _lib.EVENT_CALLBACK._argtypes_ == (ctypes.POINTER(_lib.HCS_EVENT), ctypes.c_void_p)
    assert ctypes.sizeof(_lib.HCS_PROCESS_INFORMATION) == 32 and _lib.HCS_PROCESS_INFORMATION.StdInput.offset == 8
    assert ctypes.sizeof(_lib.HCS_EVENT) == 24 and _lib.HCS_EVENT.Operation.offset == 16


# ----------------------------------------------------------------------------- the stub


def _stub() -> dict[str, ast.FunctionDef]:
    tree = ast.parse(STUB.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _without_none(annotation: str) -> str:
    return annotation.removesuffix(" | None") if annotation != "None" else annotation


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_stub_signature_matches_the_header(name: str) -> None:
    with ABI_TABLE.open("rb") as fh:
        rename = tomllib.load(fh).get("function", {}).get(name, {}).get("rename", {})
    _, ret, params = FUNCTIONS[name]
    node = _stub()[snake(name)]
    ins = [(t, p) for t, p in params if not TYPES[t][1]]
    outs = [TYPES[t][0] for t, _ in params if TYPES[t][1]]
    assert [a.arg for a in node.args.args] == [rename.get(p, snake(p)) for _, p in ins]
    for arg, (ctype, pname) in zip(node.args.args, ins, strict=True):
        assert arg.annotation is not None
        assert _without_none(ast.unparse(arg.annotation)) == TYPES[ctype][0], f"{name}({pname})"
    assert node.returns is not None
    returns = ast.unparse(node.returns)
    if len(outs) > 1:
        assert isinstance(node.returns, ast.Subscript) and ast.unparse(node.returns.value) == "tuple"
        assert isinstance(node.returns.slice, ast.Tuple)
        assert [_without_none(ast.unparse(e)) for e in node.returns.slice.elts] == outs
    elif outs:
        assert _without_none(returns) == outs[0]
    else:
        assert returns == ("None" if ret in ("HRESULT", "void") else TYPES[ret][0])


def test_public_api_and_testing_names_cover_the_header() -> None:
    assert {snake(n) for n in FUNCTIONS} <= set(PUBLIC_API)
    assert faults.HCS_FUNCTIONS == set(FUNCTIONS)
    # the rest of PUBLIC_API is the declared extras, nothing else
    with ABI_TABLE.open("rb") as fh:
        extras = set(tomllib.load(fh)["extra"])
    assert set(PUBLIC_API) - {snake(n) for n in FUNCTIONS} == extras
    assert len(set(PUBLIC_API)) == len(PUBLIC_API)


# ----------------------------------------------------------------------------- HRESULTs


def test_emulator_and_core_take_hresults_from_the_generated_header() -> None:
    emu = (ROOT / "src" / "hcsemu" / "common" / "emu.h").read_text()
    core = (ROOT / "src" / "pyhcs" / "_native" / "cython" / "_core.pyx").read_text()
    assert '#include "hresults.h"' in emu and '#include "hresults.h"' in core
    # no hand-written HRESULT value left beside it
    assert not re.search(r"#define (S_OK|E_\w+|HCS_E_\w+) ", emu)
    assert not re.search(r"#define PYHCS_\w+ 0x8037", core)


def _gen_errors() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_errors_for_abi", ROOT / "tools" / "gen_errors.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def test_hresults_header_holds_the_table() -> None:
    text = (ROOT / "src" / "hcsemu" / "hresults.h").read_text()
    defined = {
        name: int(value, 0)
        for name, value in re.findall(r"#define (\w+) (?:\(\(HRESULT\))?(0x[0-9A-F]+|\d+)\)?$", text, re.M)
    }
    rows = _gen_errors().load_table(ROOT / "tools" / "errors.toml")
    assert len(rows) > 50
    for row in rows:
        # Win32 codes are their bare value; a virtdisk code (0xC03A....) already is its HRESULT.
        win32_short = row.hresult & 0xFFFF0000 == 0x80070000
        expected = row.hresult if row.symbol.startswith(("S_", "E_", "HCS_E_")) or not win32_short \
            else row.hresult & 0xFFFF
        assert defined[row.symbol] == expected, row.symbol


@pytest.mark.parametrize(
    "compiler", ["gcc", "x86_64-w64-mingw32-gcc"], ids=["emulator", "windows-sdk"]
)
def test_hresults_header_agrees_with_other_definitions(compiler: str) -> None:
    """Compiles tools/check_hresults.c: with mingw-w64 against the SDK's winerror.h, with gcc
    against the emulator's common/emu.h (_Static_assert per row)."""
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} not installed")
    out = subprocess.run(
        [compiler, "-std=c11", "-fsyntax-only", "-Wall", "-Werror", f"-I{ROOT / 'src' / 'hcsemu'}", f"-I{ROOT / 'src' / 'pyhcs' / '_native' / 'cython'}",
         str(ROOT / "tools" / "check_hresults.c")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr


# ----------------------------------------------------------------------------- the generator


@pytest.fixture
def gen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """tools/gen_abi.py working on copies of its inputs and outputs under tmp_path."""
    spec = importlib.util.spec_from_file_location("gen_abi_under_test", ROOT / "tools" / "gen_abi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    for attr in ("HEADER", "LOADER", "TABLE", "PXD", "PXI", "CTYPES", "API_NAMES", "STUB", "FUNCTIONS", "HRESULTS_H",
                 "ERRORS_TABLE", "GEN_ERRORS"):
        src: Path = getattr(module, attr)
        dest = tmp_path / src.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
        monkeypatch.setattr(module, attr, dest)
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module


def test_check_names_each_stale_file(gen: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["--check"]) == 0
    gen.PXI.write_text(gen.PXI.read_text().replace("PWSTR*", "PCWSTR*", 1))
    stub = gen.STUB.read_text()
    gen.STUB.write_text(stub.replace("timeout_ms: int = 0xFFFFFFFF", "timeout_ms: int = 0", 1))
    assert gen.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "src/pyhcs/_native/cython/_functable.pxi is out of date" in err and "src/pyhcs/_native/_backend.pyi is out of date" in err
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
    assert gen.STUB.read_text() == stub  # the hand-written prose around the section survived


def test_a_new_function_reaches_every_output(gen: ModuleType) -> None:
    header = gen.HEADER.read_text()
    gen.HEADER.write_text(
        header.replace(
            "    X(HRESULT, HcsSetupBaseOSVolume,",
            "    X(HRESULT, HcsFrobLayer, (PCWSTR layerPath, DWORD frobCount, PWSTR * result)) \\\n"
            "    X(HRESULT, HcsSetupBaseOSVolume,",
        )
    )
    assert gen.main([]) == 2  # not yet placed in a [[group]] of abi.toml
    table = gen.TABLE.read_text()
    gen.TABLE.write_text(table.replace('"HcsGetLayerVhdMountPath",\n', '"HcsGetLayerVhdMountPath",\n    "HcsFrobLayer",\n'))
    assert gen.main([]) == 0
    assert "def hcs_frob_layer(layer_path: str, frob_count: int) -> str | None: ..." in gen.STUB.read_text()
    assert '"HcsFrobLayer": (c_hr, [P, c_dword, c_pwstr_p]),' in gen.CTYPES.read_text()
    assert "HRESULT (*HcsFrobLayer)(PCWSTR, DWORD, PWSTR*) noexcept nogil" in gen.PXI.read_text()
    assert "HRESULT HcsFrobLayer(PCWSTR layerPath, DWORD frobCount, PWSTR* result)" in gen.PXD.read_text()
    assert '"hcs_frob_layer",' in gen.API_NAMES.read_text()
    assert '"HcsFrobLayer",' in gen.FUNCTIONS.read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("(HANDLE vhdHandle))", "(float vhdHandle))"), "HcsFormatWritableLayerVhd parameter vhdHandle: C type 'float'"),
        (("(PCWSTR layerPath))", "(PCWSTR))"), "a parameter needs a type and a name"),
        (("X(HRESULT, HcsDestroyLayer,", "X(HRESULT, HcsImportLayer,"), "HcsImportLayer is listed twice"),
    ],
)
def test_bad_header_fails_naming_the_culprit(
    gen: ModuleType, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], message: str
) -> None:
    header = gen.HEADER.read_text()
    assert edit[0] in header
    gen.HEADER.write_text(header.replace(edit[0], edit[1], 1))
    assert gen.main(["--check"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("append", "message"),
    [
        ("[function.HcsNoSuch]\nresult = 'str'\n", "[function.HcsNoSuch] is not a function of hcs.h"),
        ("[function.HcsDestroyLayer]\ndefaults = { path = 'None' }\n", "defaults names 'path'"),
        ("[function.HcsFormatWritableLayerVhd]\nnullable = ['vhdHandle']\n", "nullable is for string parameters"),
        ("[function.HcsCloseProcess]\nresult = 'str'\n", "result overrides the one out-string"),
    ],
)
def test_bad_table_fails_naming_the_culprit(
    gen: ModuleType, capsys: pytest.CaptureFixture[str], append: str, message: str
) -> None:
    gen.TABLE.write_text(gen.TABLE.read_text() + "\n" + append)
    assert gen.main(["--check"]) == 2
    assert message in capsys.readouterr().err


def test_missing_markers_fail(gen: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    gen.CTYPES.write_text(gen.CTYPES.read_text().replace("# END GENERATED by tools/gen_abi.py\n", ""))
    assert gen.main(["--check"]) == 2
    assert "src/pyhcs/_native/ctypes/_lib.py: needs one" in capsys.readouterr().err
