/*
 * What both halves of the HCS emulator share (common/): the HRESULT helpers, small utilities
 * (util.c), the worker pool (workers.c), the JSON library (json.h) and the protocol (protocol.h).
 *
 * The emulator has two halves, as on Windows, plus the controls:
 *   client/  what computecore.dll/computestorage.dll do in the caller's process: every export,
 *            UTF-16, handles, operations, waits, callbacks, LocalFree, the transport's client
 *            side (client.h, transport.h).
 *   service/ what the vmcompute service does: compute systems, processes, storage, VM
 *            utilities, and the server side of the protocol (svc.h is its interface).
 *   control/ the emulator's own switches: settings, faults, actions (control.h), read by both.
 * The halves meet only through the svc_* functions of service/svc.h (UTF-8 JSON in, an HRESULT
 * and a UTF-8 JSON document out, events through a svc_event_sink), called directly
 * (client/transport_direct.c) or over a socket (client/transport_socket.c -> service/server.c).
 * The service half compiles without the client's headers (the Makefile gives each half its own
 * include path).
 */
#ifndef HCSEMU_EMU_H
#define HCSEMU_EMU_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hcs.h"
#include "json.h"

#define EMU_EXPORT __attribute__((visibility("default")))

/* ---- HRESULTs: hresults.h is generated from tools/errors.toml (tools/gen_abi.py) ---- */
#include "hresults.h"
#define HRESULT_FROM_WIN32(x) ((HRESULT)((x) <= 0 ? (uint32_t)(x) : (((uint32_t)(x)&0xFFFFu) | 0x80070000u)))
/* Win32 codes whose HRESULT the table lists under its COM name */
#define ERROR_ACCESS_DENIED 5      /* HRESULT_FROM_WIN32: E_ACCESSDENIED */
#define ERROR_INVALID_PARAMETER 87 /* HRESULT_FROM_WIN32: E_INVALIDARG */
#define FAILED(hr) ((HRESULT)(hr) < 0)

/* ---- small helpers (util.c) ---- */
/* A ResultError document (UTF-8, malloc'd). */
char *emu_error_doc(HRESULT hr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *emu_strdup(const char *s);
char *emu_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Opens a file the caller named that must be a regular file (state files): never blocks on a
 * FIFO and never opens a device. flags: O_RDONLY, or O_WRONLY with O_CREAT/O_TRUNC. A path that
 * exists and is not a regular file fails with errno EINVAL (EISDIR for a directory) before it
 * is opened; what was opened is checked again (fstat), so a swap in between is refused too.
 * Returns the descriptor (O_CLOEXEC, blocking) or -1 with errno. */
int emu_open_regular(const char *path, int flags, unsigned mode);

/* Splits a Windows command line into arguments as CommandLineToArgvW does (UTF-8 in, the
 * delimiters are ASCII): arguments are separated by spaces and tabs; the first argument (the
 * program) ends at the next space or tab, or, when it starts with '"', at the next '"', with
 * no escapes at all; in the other arguments 2n backslashes before '"' give n backslashes and
 * the '"' opens or closes a quoted part, 2n+1 backslashes before '"' give n backslashes and a
 * literal '"', backslashes before anything else are literal, and inside a quoted part '""'
 * gives a literal '"' and ends the quoted part. Returns a NULL-terminated malloc'd vector
 * (free each string, then the vector) with *argc set, or NULL (out of memory). An empty or
 * blank command line gives argc 0. */
char **emu_split_windows_cmdline(const char *cmdline, size_t *argc);

/* ---- monotonic time ---- */
uint64_t emu_now_ms(void);
void emu_deadline(struct timespec *ts, uint32_t timeout_ms); /* CLOCK_MONOTONIC */
void emu_cond_init(pthread_cond_t *cv);                     /* condvar on CLOCK_MONOTONIC */

/* ---- worker pool (workers.c) ---- */
typedef void (*emu_job_fn)(void *arg);
/* Runs fn(arg) on a worker thread. Returns false on resource exhaustion. */
bool emu_submit(emu_job_fn fn, void *arg);
size_t emu_live_threads(void);

/* ---- logging (HCSEMU_DEBUG=1; util.c) ---- */
void emu_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* HCSEMU_EMU_H */
