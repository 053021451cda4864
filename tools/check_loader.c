/*
 * Compiled (never run) with mingw-w64: pyhcs's loader (src/pyhcs/_native/cython/_loader.h) must build for
 * Windows against the SDK's own computecore.h/computestorage.h, and every slot of its function
 * table must have exactly the type of the SDK function it will hold (GetProcAddress casts
 * cannot catch a drift, this can).
 *
 *   x86_64-w64-mingw32-gcc -fsyntax-only -Wall -Wextra -Werror -Isrc/hcsemu -Isrc/pyhcs/_native/cython tools/check_loader.c
 *
 * The same file also compiles with gcc -std=c11 on Linux (against the emulator's hcs.h), which
 * checks the POSIX half of the loader the same way.
 */
#include "_loader.h"

#define SAME_SLOT(ret, name, params)                                                                    \
    _Static_assert(__builtin_types_compatible_p(__typeof__(((pyhcs_table *)0)->name), __typeof__(&name)), \
                   "pyhcs_table." #name " differs from the SDK");
HCS_COMPUTECORE_FUNCTIONS(SAME_SLOT)
HCS_COMPUTESTORAGE_FUNCTIONS(SAME_SLOT)
_Static_assert(__builtin_types_compatible_p(__typeof__(((pyhcs_table *)0)->LocalFree), __typeof__(&LocalFree)),
               "pyhcs_table.LocalFree differs from kernel32's");
_Static_assert(sizeof(WCHAR) == 2, "WCHAR is UTF-16");

/* The callback trampolines pyhcs._native.cython._core hands to the library have this shape. */
static void on_operation(HCS_OPERATION op, void *ctx) { (void)op; (void)ctx; }
static void on_event(HCS_EVENT *ev, void *ctx) { (void)ev; (void)ctx; }

/* Every helper the extension uses, called once with the types the extension passes. */
int check_loader(void);
int check_loader(void) {
    pyhcs_table t;
    char err[512];
    if (pyhcs_load(&t, "C:\\Windows\\System32\\computecore.dll", "C:\\Windows\\System32\\computestorage.dll", err,
                   sizeof err) != 0)
        return -1;
    HCS_OPERATION op = t.HcsCreateOperation(NULL, on_operation);
    HCS_SYSTEM sys = NULL;
    t.HcsSetComputeSystemCallback(sys, HcsEventOptionNone, NULL, on_event);
    PWSTR doc = NULL;
    t.HcsWaitForOperationResult(op, 200, &doc);
    t.LocalFree(doc);
    t.CloseHandle(NULL);
    t.HcsCloseOperation(op);
    pyhcs_mutex m;
    pyhcs_cond c;
    pyhcs_mutex_init(&m);
    pyhcs_cond_init(&c);
    pyhcs_mutex_lock(&m);
    pyhcs_cond_signal(&c);
    pyhcs_cond_broadcast(&c);
    pyhcs_cond_wait(&c, &m);
    pyhcs_mutex_unlock(&m);
    pyhcs_atfork(NULL, NULL, NULL);
    return (int)pyhcs_has_function(&t, "HcsSetupBaseOSVolume") + (int)pyhcs_n_slots() +
           (pyhcs_slot_name(0) != NULL) + (int)pyhcs_last_error() + (int)(pyhcs_monotonic_ns() & 1);
}
