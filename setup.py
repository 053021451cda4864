"""Build: the HCS emulator (a plain shared library, off Windows) and the Cython backend.

PYHCS_NO_EXTENSIONS=1   build without the Cython backend, on purpose (pure Python + ctypes)
PYHCS_DEBUG_BUILD=1     -O0 -g3, Cython line tracing, PYHCS_DEBUG counters
PYHCS_SANITIZE=1        build the emulator with AddressSanitizer + UBSan

A compile error is a build error: there is no silent fallback to a pure-Python build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
EMU_DIR = HERE / "src" / "hcsemu"
NO_EXT = os.environ.get("PYHCS_NO_EXTENSIONS", "") not in ("", "0")
DEBUG = os.environ.get("PYHCS_DEBUG_BUILD", "") not in ("", "0")
SANITIZE = os.environ.get("PYHCS_SANITIZE", "") not in ("", "0")
CYTHON_SOURCE = HERE / "src" / "pyhcs" / "_native" / "cython" / "_core.pyx"


class BinaryDistribution(Distribution):
    """The wheel carries a native library even when no extension is built."""

    def has_ext_modules(self) -> bool:  # type: ignore[override]
        return True


class BuildExt(build_ext):
    def copy_extensions_to_source(self) -> None:
        # For --inplace builds: rename into place, never overwrite a library a running
        # process may have mapped (that process would crash).
        for ext in self.extensions:
            fullname = self.get_ext_fullname(ext.name)
            # setuptools builds into build_lib even for --inplace (get_ext_fullpath would
            # already name the in-place destination here)
            built = Path(self.build_lib) / self.get_ext_filename(fullname)
            package = ".".join(fullname.split(".")[:-1])
            dest_dir = Path(self.get_finalized_command("build_py").get_package_dir(package))
            dest = dest_dir / built.name
            tmp = dest.with_name(dest.name + ".tmp")
            shutil.copy2(built, tmp)
            os.replace(tmp, dest)

    def run(self) -> None:
        if sys.platform != "win32":
            self._build_emulator()
        super().run()

    def _build_emulator(self) -> None:
        args = ["make", "-C", str(EMU_DIR), "--no-print-directory"]
        if DEBUG:
            args.append("DEBUG=1")
        if SANITIZE:
            args.append("SANITIZE=1")
        print("pyhcs: building the HCS emulator:", " ".join(args))
        subprocess.check_call(args)
        targets = [Path(self.build_lib) / "pyhcs" / "_emulator"]
        if self.inplace:
            targets = [HERE / "src" / "pyhcs" / "_emulator"]
        for target in targets:
            target.mkdir(parents=True, exist_ok=True)
            # the library and its service process (hcsemud), side by side
            for name in ("libhcsemu.so", "hcsemud"):
                # copy then rename, never overwrite in place: a running process may have it mapped
                tmp = target / (name + ".tmp")
                shutil.copy2(EMU_DIR / name, tmp)
                os.replace(tmp, target / name)


def extensions() -> list[Extension]:
    if NO_EXT or not CYTHON_SOURCE.exists():
        print("pyhcs: Pure Python build (ctypes backend only)")
        return []
    print("pyhcs: Accelerated build (Cython backend)")
    from Cython.Build import cythonize

    macros: list[tuple[str, str | None]] = []
    cflags: list[str] = []
    directives = {"language_level": "3", "embedsignature": True, "binding": True}
    if DEBUG:
        macros += [("CYTHON_TRACE_NOGIL", "1"), ("PYHCS_DEBUG", "1")]
        cflags += ["-O0", "-g3", "-UNDEBUG"]
        directives["linetrace"] = True
    libraries = [] if sys.platform == "win32" else ["dl"]
    ext = Extension(
        "pyhcs._native.cython._core",
        [str(CYTHON_SOURCE.relative_to(HERE))],
        include_dirs=[str(EMU_DIR.relative_to(HERE))],
        define_macros=macros,
        extra_compile_args=cflags if sys.platform != "win32" else [],
        libraries=libraries,
    )
    return cythonize([ext], compiler_directives=directives, annotate=DEBUG)


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExt},
    distclass=BinaryDistribution,
)
