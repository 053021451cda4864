/*
 * pyconfig.h for compiling a CPython extension for win_amd64 with mingw-w64 on Linux, against
 * CPython >= 3.11 as python.org ships it for Windows (built with MSVC, python3XY.dll).
 *
 * Only what the public headers (Python.h) consult is defined; every value below is a fact of
 * the Windows x64 ABI (LLP64: long is 32 bits, pointers and size_t 64) or of how the python.org
 * build is configured. tools/windows/check_pyconfig.c checks the sizes against the compiler.
 * Used by tools/windows/build_core.sh, which compiles with the host's CPython headers with this
 * file in place of the host's own pyconfig.h.
 */
#ifndef PYHCS_WINDOWS_PYCONFIG_H
#define PYHCS_WINDOWS_PYCONFIG_H

#if !defined(_WIN64) || !defined(__x86_64__)
#error "this pyconfig.h describes win_amd64 only"
#endif

/* The platform, as the headers and Cython test it. */
#define MS_WINDOWS 1
#define MS_WIN32 1 /* the Win32 API, on 64-bit Windows too */
#define MS_WIN64 1
#define NT_THREADS 1 /* Windows threads: Py_tss_t holds a DWORD key, not a pthread_key_t */
#define WITH_THREAD 1
#define PLATFORM "win32"

/* The python.org build: a DLL (python3XY.dll) whose API is imported with __declspec(dllimport),
 * and the module's PyInit_ exported with __declspec(dllexport). */
#ifndef Py_NO_ENABLE_SHARED
#define Py_ENABLE_SHARED 1
#endif
#define HAVE_DECLSPEC_DLL 1

/* Release build: no Py_DEBUG (a debug interpreter, python3XY_d.dll, has another object layout),
 * and the stable ABI is not targeted. */
#undef Py_DEBUG
#undef Py_TRACE_REFS

/* Sizes of the C types, LLP64. */
#define SIZEOF_SHORT 2
#define SIZEOF_INT 4
#define SIZEOF_LONG 4
#define SIZEOF_LONG_LONG 8
#define SIZEOF_FLOAT 4
#define SIZEOF_DOUBLE 8
#define SIZEOF_VOID_P 8
#define SIZEOF_SIZE_T 8
#define SIZEOF_TIME_T 8
#define SIZEOF_OFF_T 4 /* MSVC's off_t is long */
#define SIZEOF_FPOS_T 8
#define SIZEOF_WCHAR_T 2 /* UTF-16 */
#define SIZEOF__BOOL 1
#define SIZEOF_HKEY 8
#define SIZEOF_PID_T 4 /* MSVC has no pid_t; CPython's Windows build uses int */
#define ALIGNOF_SIZE_T 8
#define ALIGNOF_MAX_ALIGN_T 8

/* IEEE 754 doubles, little-endian; no WORDS_BIGENDIAN. */
#define DOUBLE_IS_LITTLE_ENDIAN_IEEE754 1

/* Headers MSVC has and the python.org build uses. Not HAVE_UNISTD_H, HAVE_PTHREAD_H or
 * HAVE_SYS_*: MSVC lacks them, and defining them would change struct layouts (Py_tss_t). */
#define HAVE_STDDEF_H 1
#define HAVE_WCHAR_H 1
#define HAVE_STDARG_PROTOTYPES 1
#define HAVE_ERRNO_H 1
#define HAVE_FCNTL_H 1
#define HAVE_SIGNAL_H 1
#define HAVE_PROCESS_H 1
#define HAVE_DIRECT_H 1
#define HAVE_IO_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_SYS_TYPES_H 1

/* Functions the headers may test for. */
#define HAVE_COPYSIGN 1
#define HAVE_ROUND 1
#define HAVE_HYPOT 1
#define HAVE_STRFTIME 1
#define HAVE_CLOCK 1
#define HAVE_FTIME 1
#define HAVE_GETPID 1

#endif /* PYHCS_WINDOWS_PYCONFIG_H */
