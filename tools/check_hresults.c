/*
 * Compiled (never run): the HRESULT table (tools/errors.toml, generated into
 * src/hcsemu/hresults.h by tools/gen_abi.py) must agree with every constant the Windows SDK
 * defines under the same name.
 *
 *   x86_64-w64-mingw32-gcc -fsyntax-only -Wall -Werror -Isrc/hcsemu -Isrc/pyhcs/_native/cython tools/check_hresults.c
 *
 * On Windows the headers come in pyhcs._native.cython._core's order (_loader.h brings the SDK, then
 * hresults.h), so hresults.h's guarded definitions only fill in what the SDK lacks
 * (HCS_E_OPERATION_PENDING_LEGACY, or HCS_E_* in an older mingw-w64) and every name the SDK
 * has is checked against the table's value. With gcc on Linux the same file checks the header
 * as the emulator sees it (common/emu.h, with its HRESULT_FROM_WIN32).
 */
#ifdef _WIN32
#  include "_loader.h"
#  include "hresults.h"
#else
#  include "common/emu.h"
#endif
#include <stdint.h>

#define SAME_VALUE(name, value) _Static_assert((uint32_t)(name) == (value), #name " differs from tools/errors.toml");
HCSEMU_HRESULT_TABLE(SAME_VALUE)
