/*
 * Compiled (never run): the HRESULT table (tools/errors.toml, generated into
 * src/hcsemu/hresults.h by tools/gen_abi.py) must agree with every constant the Windows SDK
 * defines under the same name.
 *
 *   x86_64-w64-mingw32-gcc -fsyntax-only -Wall -Werror -Isrc/hcsemu tools/check_hresults.c
 *
 * The SDK's winerror.h comes first, so hresults.h's guarded definitions only fill in what the
 * SDK lacks (HCS_E_OPERATION_PENDING_LEGACY, or HCS_E_* in an older mingw-w64) and every name
 * the SDK has is checked against the table's value. With gcc on Linux (no windows.h) the same
 * file checks the generated header against itself and the emulator's HRESULT_FROM_WIN32.
 */
#ifdef _WIN32
#  include <windows.h>
#  include <computecore.h>
#  define HCSEMU_USE_WINDOWS_TYPES 1
#  include "hcs.h"
#  include "hresults.h"
#else
#  include "emu.h"
#endif
#include <stdint.h>

#define SAME_VALUE(name, value) _Static_assert((uint32_t)(name) == (value), #name " differs from tools/errors.toml");
HCSEMU_HRESULT_TABLE(SAME_VALUE)
