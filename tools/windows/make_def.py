"""The module-definition (.def) file of the CPython DLL symbols an extension object imports.

    python tools/windows/make_def.py OBJECT_SYMBOLS HEADERS_DIR DLL_NAME > python3XY.def

OBJECT_SYMBOLS is the output of ``x86_64-w64-mingw32-nm -u`` on the compiled object. With
the python.org pyconfig.h settings every Python API symbol is referenced as ``__imp_NAME``
(``__declspec(dllimport)``), or as plain ``NAME`` where a static initializer takes a
function's address (the import library's thunk); the names that start with ``Py``/``_Py`` are CPython's (the rest
are KERNEL32 and C runtime imports the linker resolves from mingw-w64's own libraries). Data
symbols (``PyAPI_DATA`` in the headers: exception types, type objects, singletons) get ``DATA``
so no call thunk is generated for them. A name the headers do not declare with ``PyAPI_FUNC``
or ``PyAPI_DATA`` is an error: the DLL would not export it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_DECL = re.compile(r"PyAPI_(FUNC|DATA)\s*\((?:[^()]|\([^()]*\))*\)\s*\(?\s*\**\s*(\w+)")


def declared(headers: Path) -> dict[str, str]:
    """name -> "FUNC" or "DATA" for every symbol the public headers declare as exported."""
    out: dict[str, str] = {}
    for path in sorted(headers.rglob("*.h")):
        if "internal" in path.parts:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for kind, name in _DECL.findall(text):
            out.setdefault(name, kind)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    symbols_file, headers_dir, dll = argv[1:]
    decls = declared(Path(headers_dir))
    imported: set[str] = set()
    direct: set[str] = set()
    for line in Path(symbols_file).read_text().splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[0] != "U":
            continue
        name = parts[1].removeprefix("__imp_")
        if name.startswith(("Py", "_Py")):
            imported.add(name)
            if name == parts[1]:
                direct.add(name)
    unknown = sorted(n for n in imported if n not in decls)
    if unknown:
        print(f"not declared as exported by the CPython headers: {', '.join(unknown)}", file=sys.stderr)
        return 1
    # A function's address in a static initializer (a type slot) refers to the import
    # library's thunk, not __imp_; data has no thunk, so data must come through __imp_.
    data_direct = sorted(n for n in direct if decls[n] == "DATA")
    if data_direct:
        print(f"data referenced without dllimport: {', '.join(data_direct)}", file=sys.stderr)
        return 1
    if not imported:
        print("the object imports nothing from CPython: was it compiled with dllimport?", file=sys.stderr)
        return 1
    print(f"LIBRARY {dll}")
    print("EXPORTS")
    for name in sorted(imported):
        print(f"    {name}{' DATA' if decls[name] == 'DATA' else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
