/*
 * Compiled (never run) with mingw-w64 by tools/windows/build_core.sh: every size and
 * alignment tools/windows/pyconfig.h states must be the compiler's own for win_amd64, and the
 * CPython headers must pick the Windows branches from it.
 */
#include "pyconfig.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>
#include <wchar.h>
#include <windows.h>

#define SAME(macro, expr) _Static_assert((macro) == (expr), #macro " != " #expr " for win_amd64")
SAME(SIZEOF_SHORT, sizeof(short));
SAME(SIZEOF_INT, sizeof(int));
SAME(SIZEOF_LONG, sizeof(long));
SAME(SIZEOF_LONG_LONG, sizeof(long long));
SAME(SIZEOF_FLOAT, sizeof(float));
SAME(SIZEOF_DOUBLE, sizeof(double));
SAME(SIZEOF_VOID_P, sizeof(void *));
SAME(SIZEOF_SIZE_T, sizeof(size_t));
SAME(SIZEOF_TIME_T, sizeof(time_t));
SAME(SIZEOF_OFF_T, sizeof(_off_t));
SAME(SIZEOF_FPOS_T, sizeof(fpos_t));
SAME(SIZEOF_WCHAR_T, sizeof(wchar_t));
SAME(SIZEOF__BOOL, sizeof(_Bool));
SAME(SIZEOF_HKEY, sizeof(HKEY));
SAME(ALIGNOF_SIZE_T, alignof(size_t));
SAME(SIZEOF_PID_T, sizeof(int));
/* NT_THREADS makes Py_tss_t hold an unsigned long, the size of the DWORD TlsAlloc returns */
_Static_assert(sizeof(unsigned long) == sizeof(DWORD), "Py_tss_t key is a DWORD");

#include <Python.h>

#ifndef MS_WINDOWS
#error "Python.h did not see MS_WINDOWS"
#endif
#ifdef HAVE_FORK
#error "Windows has no fork()"
#endif
_Static_assert(sizeof(Py_ssize_t) == 8, "Py_ssize_t is 64-bit on win_amd64");
_Static_assert(sizeof(Py_UCS4) == 4 && sizeof(wchar_t) == 2, "wchar_t is UTF-16");
_Static_assert(sizeof(Py_tss_t) == sizeof(int) + sizeof(unsigned long), "Py_tss_t as on Windows");
