"""The exported ABI: one list in hcs.h, matched by the library, the ctypes prototypes and the
Windows SDK; strings survive the UTF-16 crossing in both directions."""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyhcs import emulator, errors
from pyhcs._native import _backend
from pyhcs._native.ctypes import _lib

from rawutil import container_config, operation, wait

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "src" / "hcsemu" / "hcs.h"


def header_functions() -> list[str]:
    text = HEADER.read_text()
    body = text[text.index("#define HCS_COMPUTECORE_FUNCTIONS") : text.index("#ifndef HCSEMU_USE_WINDOWS_TYPES\n#define HCSEMU_DECLARE")]
    return re.findall(r"X\(\s*[^,]+,\s*(Hcs\w+)\s*,", body)


def test_header_lists_every_seed_function() -> None:
    names = header_functions()
    assert len(names) == len(set(names)) == 49 + 12
    documented = ROOT / "tools" / "hcs-api-functions.txt"
    listed = {line for line in documented.read_text().splitlines() if line and not line.startswith("#")}
    assert len(listed) >= 49
    assert listed <= set(names), sorted(listed - set(names))


def test_ctypes_prototypes_match_the_header() -> None:
    assert set(_lib.COMPUTECORE) | set(_lib.COMPUTESTORAGE) == set(header_functions())


def test_library_exports_everything() -> None:
    lib = ctypes.CDLL(emulator.library_path())
    for name in [*header_functions(), "LocalFree"]:
        assert hasattr(lib, name), name
    assert _backend.has_function("HcsSetupBaseOSVolume")
    assert not _backend.has_function("HcsNoSuchFunction")


@pytest.mark.skipif(shutil.which("x86_64-w64-mingw32-gcc") is None, reason="mingw-w64 not installed")
def test_declarations_match_the_windows_sdk() -> None:
    out = subprocess.run(["make", "-s", "-C", str(HEADER.parent), "check-abi"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


ids = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=60)


@settings(max_examples=40)
@given(system_id=ids, owner=ids)
def test_strings_round_trip(hcs: ModuleType, system_id: str, owner: str) -> None:
    with operation(hcs) as op:
        h = hcs.hcs_create_compute_system(system_id, container_config(Owner=owner), op)
        try:
            wait(hcs, op)
            hcs.hcs_enumerate_compute_systems(json.dumps({"Ids": [system_id]}), op)
            (found,) = json.loads(wait(hcs, op) or "[]")
            assert found["Id"] == system_id and found["Owner"] == owner
            hcs.hcs_terminate_compute_system(h, op)
            wait(hcs, op)
        finally:
            hcs.hcs_close_compute_system(h)


def test_lone_surrogates_are_refused_not_mangled(hcs: ModuleType) -> None:
    with operation(hcs) as op, pytest.raises(errors.InvalidArgumentError):
        hcs.hcs_create_compute_system("bad\ud800id", container_config(), op)


def test_local_free_refuses_foreign_pointers() -> None:
    lib = ctypes.CDLL(emulator.library_path())
    lib.LocalFree.restype = ctypes.c_void_p
    lib.LocalFree.argtypes = [ctypes.c_void_p]
    buf = ctypes.create_string_buffer(16)
    assert lib.LocalFree(ctypes.addressof(buf)) == ctypes.addressof(buf)  # failure: returned as is
    assert lib.LocalFree(None) is None
