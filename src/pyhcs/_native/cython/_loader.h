/*
 * The platform layer of pyhcs._native.cython._core: loads computecore + computestorage into a table of
 * function pointers, and gives the GIL-free callback queue a mutex, a condition variable, a
 * monotonic clock and a fork hook. Header-only (static functions), included by _core.pyx
 * *before* hcs.h, and compiled for Windows by tools/check_loader.c with mingw-w64.
 *
 * Why a table and not direct calls: one compiled extension serves the Windows DLLs and the
 * emulator (or any PYHCS_LIBRARY), and an export missing from an older Windows build leaves
 * one NULL slot (that function raises, naming itself) instead of failing the import.
 *
 * Why LoadLibraryExW(LOAD_LIBRARY_SEARCH_SYSTEM32) with a full path: the DLL is never looked
 * up in the program's folder, the current directory or PATH, so no DLL can be planted beside
 * the program, and the DLL's own dependencies also resolve from System32 only.
 */
#ifndef PYHCS_LOADER_H
#define PYHCS_LOADER_H

/* clock_gettime and pthread_atfork are POSIX, not ISO C: ask for them when nobody has (in the
 * extension Python.h has already done so, before any system header). */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#  define _POSIX_C_SOURCE 200809L
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef _WIN32
#  if defined(HCSEMU_HCS_H) && !defined(HCSEMU_USE_WINDOWS_TYPES)
#    error "_loader.h must be included before hcs.h on Windows (hcs.h then takes the SDK's types)"
#  endif
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <windows.h>
#  include <computecore.h>
#  include <computestorage.h>
#  define HCSEMU_USE_WINDOWS_TYPES 1
#  define PYHCS_CALL WINAPI
#else
#  include <dlfcn.h>
#  include <errno.h>
#  include <pthread.h>
#  include <time.h>
#  define PYHCS_CALL
#endif

#include "hcs.h"

/* Everything here is static and inline: included once per extension, and a helper one
 * platform does not use costs no warning. */
#define PYHCS_FN static inline

/* ------------------------------------------------------------------ the function table */

typedef struct pyhcs_table {
#define PYHCS_SLOT(ret, name, params) ret (PYHCS_CALL *name) params;
    HCS_COMPUTECORE_FUNCTIONS(PYHCS_SLOT)
    HCS_COMPUTESTORAGE_FUNCTIONS(PYHCS_SLOT)
#undef PYHCS_SLOT
    HLOCAL (PYHCS_CALL *LocalFree)(HLOCAL mem);
    /* kernel32's CloseHandle on Windows (process std handles); NULL elsewhere, where the
     * emulator hands out file descriptors that os.close() closes. */
    int (PYHCS_CALL *CloseHandle)(HANDLE handle);
    void *core;    /* library handles; never unloaded (a late callback may still be running) */
    void *storage; /* NULL when computestorage could not be loaded (see storage_error) */
    /* Why computestorage could not be loaded ("" when it was): its functions then raise,
     * naming the library, and everything of computecore still works. */
    char storage_error[384];
} pyhcs_table;

typedef struct pyhcs_slot {
    const char *name;
    size_t offset;
    int storage; /* 0: computecore, 1: computestorage */
} pyhcs_slot;

static const pyhcs_slot pyhcs_slots[] = {
#define PYHCS_CORE_SLOT(ret, name, params) {#name, offsetof(pyhcs_table, name), 0},
#define PYHCS_STORAGE_SLOT(ret, name, params) {#name, offsetof(pyhcs_table, name), 1},
    HCS_COMPUTECORE_FUNCTIONS(PYHCS_CORE_SLOT)
    HCS_COMPUTESTORAGE_FUNCTIONS(PYHCS_STORAGE_SLOT)
#undef PYHCS_CORE_SLOT
#undef PYHCS_STORAGE_SLOT
};
#define PYHCS_N_SLOTS (sizeof pyhcs_slots / sizeof pyhcs_slots[0])

#define PYHCS_SLOT_PTR(t, i) ((void **)((char *)(t) + pyhcs_slots[i].offset))

#ifdef _WIN32
PYHCS_FN void pyhcs_win_error(const char *what, const char *path, char *err, size_t errlen) {
    DWORD code = GetLastError();
    char msg[256] = "";
    FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code, 0, msg,
                   (DWORD)sizeof msg, NULL);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' ')) msg[--n] = 0;
    snprintf(err, errlen, "%s %s failed (error %lu: %s)", what, path, (unsigned long)code, msg);
}

/* path is UTF-8 (what the Python side passes on every platform). */
PYHCS_FN void *pyhcs_dlopen(const char *path, char *err, size_t errlen) {
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, NULL, 0);
    if (n <= 0) {
        snprintf(err, errlen, "library path is not valid UTF-8: %s", path);
        return NULL;
    }
    wchar_t *wide = (wchar_t *)HeapAlloc(GetProcessHeap(), 0, (SIZE_T)n * sizeof(wchar_t));
    if (!wide) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, wide, n);
    HMODULE m = LoadLibraryExW(wide, NULL, LOAD_LIBRARY_SEARCH_SYSTEM32);
    HeapFree(GetProcessHeap(), 0, wide);
    if (!m) pyhcs_win_error("LoadLibraryExW", path, err, errlen);
    return (void *)m;
}

PYHCS_FN void *pyhcs_dlsym(void *lib, const char *name) {
    /* The cast goes through an integer: ISO C has no conversion between function and object
     * pointers, and FARPROC is the generic function pointer type. */
    return (void *)(uintptr_t)GetProcAddress((HMODULE)lib, name);
}
#else
PYHCS_FN void *pyhcs_dlopen(const char *path, char *err, size_t errlen) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(err, errlen, "dlopen %s failed: %s", path, why ? why : "unknown error");
    }
    return h;
}

PYHCS_FN void *pyhcs_dlsym(void *lib, const char *name) { return dlsym(lib, name); }
#endif

/*
 * Fills t from the two libraries (the same path twice is fine: the second open returns the
 * same handle). Returns 0, or -1 with a message in err when computecore or LocalFree cannot be
 * loaded. Missing HCS exports are not an error: their slots stay NULL. Neither is a missing
 * computestorage (a Windows without the storage part, or a build that ships only
 * computecore): its slots stay NULL and t->storage_error says why.
 */
PYHCS_FN int pyhcs_load(pyhcs_table *t, const char *core_path, const char *storage_path, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    if (errlen) err[0] = 0;
    t->core = pyhcs_dlopen(core_path, err, errlen);
    if (!t->core) return -1;
    t->storage = strcmp(core_path, storage_path) == 0
                     ? t->core
                     : pyhcs_dlopen(storage_path, t->storage_error, sizeof t->storage_error);
    for (size_t i = 0; i < PYHCS_N_SLOTS; i++) {
        void *lib = pyhcs_slots[i].storage ? t->storage : t->core;
        *PYHCS_SLOT_PTR(t, i) = lib ? pyhcs_dlsym(lib, pyhcs_slots[i].name) : NULL;
    }
#ifdef _WIN32
    t->LocalFree = LocalFree;
    t->CloseHandle = (int (PYHCS_CALL *)(HANDLE))CloseHandle;
#else
    {
        void *p = dlsym(t->core, "LocalFree");
        memcpy(&t->LocalFree, &p, sizeof p); /* object -> function pointer, as POSIX allows */
    }
    t->CloseHandle = NULL;
    if (!t->LocalFree) {
        snprintf(err, errlen, "%s does not export LocalFree", core_path);
        return -1;
    }
#endif
    return 0;
}

/* 1 when name is a function of computestorage, 0 otherwise. */
PYHCS_FN int pyhcs_is_storage_function(const char *name) {
    for (size_t i = 0; i < PYHCS_N_SLOTS; i++) {
        if (strcmp(pyhcs_slots[i].name, name) == 0) return pyhcs_slots[i].storage;
    }
    return 0;
}

/* 1 when the loaded library exports name, 0 when it does not, -1 when name is not an HCS
 * function at all. */
PYHCS_FN int pyhcs_has_function(const pyhcs_table *t, const char *name) {
    for (size_t i = 0; i < PYHCS_N_SLOTS; i++) {
        if (strcmp(pyhcs_slots[i].name, name) == 0) return *PYHCS_SLOT_PTR(t, i) != NULL;
    }
    return -1;
}

PYHCS_FN size_t pyhcs_n_slots(void) { return PYHCS_N_SLOTS; }
PYHCS_FN const char *pyhcs_slot_name(size_t i) { return i < PYHCS_N_SLOTS ? pyhcs_slots[i].name : NULL; }

/* GetLastError() on Windows, errno elsewhere (for CloseHandle failures). */
PYHCS_FN unsigned long pyhcs_last_error(void) {
#ifdef _WIN32
    return (unsigned long)GetLastError();
#else
    return (unsigned long)errno;
#endif
}

/* ------------------------------------------------------------------ mutex, condvar, clock */

#ifdef _WIN32
typedef SRWLOCK pyhcs_mutex;
typedef CONDITION_VARIABLE pyhcs_cond;
PYHCS_FN void pyhcs_mutex_init(pyhcs_mutex *m) { InitializeSRWLock(m); }
PYHCS_FN void pyhcs_mutex_lock(pyhcs_mutex *m) { AcquireSRWLockExclusive(m); }
PYHCS_FN void pyhcs_mutex_unlock(pyhcs_mutex *m) { ReleaseSRWLockExclusive(m); }
PYHCS_FN void pyhcs_cond_init(pyhcs_cond *c) { InitializeConditionVariable(c); }
PYHCS_FN void pyhcs_cond_signal(pyhcs_cond *c) { WakeConditionVariable(c); }
PYHCS_FN void pyhcs_cond_broadcast(pyhcs_cond *c) { WakeAllConditionVariable(c); }
PYHCS_FN void pyhcs_cond_wait(pyhcs_cond *c, pyhcs_mutex *m) { SleepConditionVariableSRW(c, m, INFINITE, 0); }

PYHCS_FN int64_t pyhcs_monotonic_ns(void) {
    static LARGE_INTEGER freq;
    LARGE_INTEGER now;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    /* in integers: a double would lose sub-millisecond precision after a few days of uptime */
    int64_t sec = now.QuadPart / freq.QuadPart, rem = now.QuadPart % freq.QuadPart;
    return sec * 1000000000 + rem * 1000000000 / freq.QuadPart;
}

/* No fork on Windows. */
PYHCS_FN int pyhcs_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
    (void)prepare;
    (void)parent;
    (void)child;
    return 0;
}
#else
typedef pthread_mutex_t pyhcs_mutex;
typedef pthread_cond_t pyhcs_cond;
PYHCS_FN void pyhcs_mutex_init(pyhcs_mutex *m) { pthread_mutex_init(m, NULL); }
PYHCS_FN void pyhcs_mutex_lock(pyhcs_mutex *m) { pthread_mutex_lock(m); }
PYHCS_FN void pyhcs_mutex_unlock(pyhcs_mutex *m) { pthread_mutex_unlock(m); }
PYHCS_FN void pyhcs_cond_init(pyhcs_cond *c) { pthread_cond_init(c, NULL); }
PYHCS_FN void pyhcs_cond_signal(pyhcs_cond *c) { pthread_cond_signal(c); }
PYHCS_FN void pyhcs_cond_broadcast(pyhcs_cond *c) { pthread_cond_broadcast(c); }
PYHCS_FN void pyhcs_cond_wait(pyhcs_cond *c, pyhcs_mutex *m) { pthread_cond_wait(c, m); }

PYHCS_FN int64_t pyhcs_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

PYHCS_FN int pyhcs_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
    return pthread_atfork(prepare, parent, child);
}
#endif

#endif /* PYHCS_LOADER_H */
