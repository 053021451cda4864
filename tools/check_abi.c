/*
 * Compiled (never run) with mingw-w64 against the Windows SDK's own HCS headers: every
 * function in hcs.h's X-macro lists must have exactly the SDK's type, and the shared
 * structs and enums the same layout and values. `make -C src/hcsemu check-abi` runs it.
 */
#include <windows.h>
#include <computecore.h>
#include <computestorage.h>
#include <stddef.h>

#define HCSEMU_USE_WINDOWS_TYPES 1
#include "hcs.h"

#define SAME_TYPE(ret, name, params) \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&name), ret(WINAPI *) params), #name " differs from the SDK");
HCS_COMPUTECORE_FUNCTIONS(SAME_TYPE)
HCS_COMPUTESTORAGE_FUNCTIONS(SAME_TYPE)

_Static_assert(sizeof(WCHAR) == 2, "WCHAR is UTF-16");
_Static_assert(sizeof(HCS_PROCESS_INFORMATION) == 32, "HCS_PROCESS_INFORMATION layout");
_Static_assert(offsetof(HCS_PROCESS_INFORMATION, StdInput) == 8, "StdInput offset");
_Static_assert(offsetof(HCS_PROCESS_INFORMATION, StdError) == 24, "StdError offset");
_Static_assert(sizeof(HCS_EVENT) == 24, "HCS_EVENT layout");
_Static_assert(offsetof(HCS_EVENT, EventData) == 8, "EventData offset");
_Static_assert(offsetof(HCS_EVENT, Operation) == 16, "Operation offset");
_Static_assert(HcsOperationTypeCrash == 15 && HcsOperationTypeNone == -1, "operation types");
_Static_assert(HcsEventServiceDisconnect == 0x02000000 && HcsEventProcessExited == 0x00010000, "event types");
_Static_assert(HcsEventOptionEnableOperationCallbacks == 1, "event options");
