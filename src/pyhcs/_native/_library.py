"""Which native library pyhcs talks to.

On Windows that is the operating system's own computecore.dll and computestorage.dll, always
loaded from System32 by full path (never from the program's folder or PATH, so no DLL can be
planted beside the program). Everywhere else it is the HCS emulator bundled with the package.
``PYHCS_LIBRARY`` names another library, e.g. a sanitizer build of the emulator: a single path
used for both, or ``computecore=<path>;computestorage=<path>`` (``.dll`` suffixes allowed in
the names) on any platform, e.g. to run without a computestorage library.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from types import ModuleType

_EMULATOR_NAME = "libhcsemu.so" if sys.platform != "darwin" else "libhcsemu.dylib"


def emulator_path() -> Path:
    """Absolute path of the bundled emulator library (it may not exist on Windows)."""
    return Path(__file__).resolve().parent.parent / "_emulator" / _EMULATOR_NAME


def library_paths() -> tuple[str, str]:
    """The (computecore, computestorage) libraries to load, as absolute paths."""
    override = os.environ.get("PYHCS_LIBRARY", "").strip()
    if override:
        if "=" in override:
            parts = dict(p.split("=", 1) for p in override.split(";") if "=" in p)
            core = parts.get("computecore.dll") or parts.get("computecore", "")
            storage = parts.get("computestorage.dll") or parts.get("computestorage", core)
            return str(Path(core).resolve()), str(Path(storage).resolve())
        path = str(Path(override).resolve())
        return path, path
    if sys.platform == "win32":
        system32 = Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32"
        return str(system32 / "computecore.dll"), str(system32 / "computestorage.dll")
    path = str(emulator_path())
    return path, path


class HcsNotInstalledError(ImportError):
    """The HCS library itself is absent: on Windows the Host Compute Service is not installed
    (the optional features "Containers" and/or "Hyper-V" are not enabled); elsewhere the
    emulator was not built, or ``PYHCS_LIBRARY`` names a file that does not exist."""


def not_installed() -> HcsNotInstalledError | None:
    """The error to raise when the computecore library does not exist, else None.

    Only a missing file counts: a library that exists but fails to load is a broken
    installation, which the backends report with the loader's own message."""
    core, _ = library_paths()
    if os.path.exists(core):
        return None
    if os.environ.get("PYHCS_LIBRARY", "").strip():
        return HcsNotInstalledError(f"pyhcs: PYHCS_LIBRARY names {core}, which does not exist")
    if sys.platform == "win32":
        return HcsNotInstalledError(
            f"pyhcs: the Host Compute Service is not installed ({core} does not exist). Enable the "
            'Windows features "Containers" (process-isolated containers) and/or "Hyper-V" '
            "(Enable-WindowsOptionalFeature -Online -FeatureName Containers,Microsoft-Hyper-V) and restart"
        )
    return HcsNotInstalledError(
        f"pyhcs: the bundled HCS emulator {core} is missing (build it with `python setup.py build_ext "
        "--inplace`, or set PYHCS_LIBRARY to an emulator library)"
    )


@functools.lru_cache(maxsize=8)
def is_emulator(path: str) -> bool:
    """Whether ``path`` is an HCS emulator build rather than the Windows DLL (or another
    implementation): the emulator exports ``hcsemu_wcslen``, which no Windows DLL has. A
    library that cannot be loaded is judged by its name."""
    if path.lower().endswith(".dll"):
        return False
    import ctypes

    try:
        library = ctypes.CDLL(path)
    except OSError:
        return True
    return hasattr(library, "hcsemu_wcslen")


def host_formats(path: str) -> ModuleType | None:
    """The readers of the emulator's on-disk state (``pyhcs.emulator._formats``: VM access entries,
    a writable layer's merged view and record) when ``path`` is the emulator; None on real
    HCS, which keeps that state in Windows' own forms (ACLs, the layer folder itself). The
    Pythonic layer asks here instead of knowing either form."""
    if not is_emulator(path):
        return None
    from ..emulator import _formats as _emuformats

    return _emuformats
