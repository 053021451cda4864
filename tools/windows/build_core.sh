#!/usr/bin/env bash
# The Cython backend built for Windows x64 on Linux: cythonize src/pyhcs/_native/cython/_core.pyx, compile it
# with mingw-w64 against this Python's headers and tools/windows/pyconfig.h (the python.org
# win_amd64 configuration), link it against an import library of python3XY.dll made from the
# symbols the object imports, and check the result's imports and exports.
#
#   bash tools/windows/build_core.sh [OUTDIR]      (default: build/windows)
#
# MINGW_PREFIX (x86_64-w64-mingw32-) chooses the toolchain, PYTHON (python3) the interpreter
# whose headers and version are used. The .pyd is not run here (no Windows); what can go wrong
# at load time on Windows is checked instead: an import from a DLL other than the CPython
# DLL, KERNEL32 and the C runtime (api-ms-win-crt-*, ucrtbase or msvcrt), a CPython symbol the
# DLL does not export, a wrong type size in pyconfig.h, or a missing PyInit__core.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/tools/windows"
out="$(mkdir -p "${1:-$root/build/windows}" && cd "${1:-$root/build/windows}" && pwd)"
prefix="${MINGW_PREFIX:-x86_64-w64-mingw32-}"
cc="${prefix}gcc" nm="${prefix}nm" dlltool="${prefix}dlltool" objdump="${prefix}objdump"
python="${PYTHON:-python3}"

for tool in "$cc" "$nm" "$dlltool" "$objdump"; do
  command -v "$tool" >/dev/null || { echo "build_core.sh: $tool not found (install mingw-w64)" >&2; exit 1; }
done

read -r ver include < <("$python" -c 'import sys, sysconfig
print(f"{sys.version_info[0]}{sys.version_info[1]}", sysconfig.get_paths()["include"])')
if (( ${ver:1} < 11 )); then
  echo "build_core.sh: tools/windows/pyconfig.h describes CPython >= 3.11, not ${ver:0:1}.${ver:1}" >&2
  exit 1
fi
dll="python$ver.dll"
pyd="$out/_core.cp$ver-win_amd64.pyd"

# The host's headers without the host's pyconfig.h: Python.h includes "pyconfig.h" from its
# own directory first, so an -I ahead of it would not win.
headers="$out/include"
rm -rf "$headers" && mkdir -p "$headers"
cp -R "$include/." "$headers/"
cp "$here/pyconfig.h" "$headers/pyconfig.h"

warn=(-Wall -Werror=implicit-function-declaration -Werror=incompatible-pointer-types -Werror=int-conversion
      -Werror=return-type -Wno-unused-function -Wno-unused-variable)

echo "pyconfig.h: sizes against $cc"
"$cc" -fsyntax-only -Wall -Werror -I"$headers" "$here/check_pyconfig.c"

echo "cythonize src/pyhcs/_native/cython/_core.pyx"
# the same directives as setup.py's release build
"$python" -m cython -3 --module-name pyhcs._native.cython._core -X embedsignature=True -X binding=True \
  -I "$root/src/hcsemu" -I "$root/src/pyhcs/_native/cython" -o "$out/_core.c" "$root/src/pyhcs/_native/cython/_core.pyx"

echo "compile for win_amd64"
"$cc" -c -O2 -DNDEBUG "${warn[@]}" -I"$headers" -I"$root/src/hcsemu" -I"$root/src/pyhcs/_native/cython" \
  -o "$out/_core.o" "$out/_core.c"

echo "import library of $dll"
"$nm" -u "$out/_core.o" > "$out/_core.undefined"
"$python" "$here/make_def.py" "$out/_core.undefined" "$headers" "$dll" > "$out/python$ver.def"
"$dlltool" --dllname "$dll" --def "$out/python$ver.def" --output-lib "$out/libpython$ver.a"
echo "  $(grep -c '^    ' "$out/python$ver.def") CPython symbols imported"

echo "link $(basename "$pyd")"
"$cc" -shared -static-libgcc -Wl,--no-undefined -o "$pyd" "$out/_core.o" "$out/libpython$ver.a"

echo "check imports and exports"
"$objdump" -p "$pyd" > "$out/objdump.txt"
grep -q "file format pei-x86-64" <("$objdump" -f "$pyd") || { echo "not a PE32+ x86-64 image" >&2; exit 1; }
mapfile -t dlls < <(awk '/DLL Name:/ {print $3}' "$out/objdump.txt")
bad=0
for name in "${dlls[@]}"; do
  case "${name,,}" in
    "${dll,,}" | kernel32.dll | msvcrt.dll | ucrtbase.dll | api-ms-win-crt-*.dll) echo "  imports $name" ;;
    *) echo "  unexpected import: $name" >&2; bad=1 ;;
  esac
done
printf '%s\n' "${dlls[@]}" | grep -qix "$dll" || { echo "does not import $dll" >&2; bad=1; }
# the export table lists PyInit__core (what the import system looks up in the .pyd)
grep -Eq '\]\s+PyInit__core$' "$out/objdump.txt" || { echo "PyInit__core is not exported" >&2; bad=1; }
exports=$(awk '/\[Ordinal\/Name Pointer\] Table/ {on=1; next} on && /^[ \t]*\[/ {n++; next} on {on=0} END {print n+0}' "$out/objdump.txt")
if [[ "$exports" != 1 ]]; then echo "exports $exports symbols, expected PyInit__core only" >&2; bad=1; fi
(( bad == 0 )) || exit 1
echo "ok: $pyd"
