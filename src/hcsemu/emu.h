/*
 * Internal interfaces of the HCS emulator.
 *
 * Two halves, as on Windows:
 *   client  (client.c, ops.c, handles.c, wstr.c): what computecore.dll does in the caller's
 *           process: UTF-16, handles, operations, waits, callbacks, LocalFree.
 *   service (service.c, proc.c, vmutil.c, storage.c): what the vmcompute service does:
 *           compute systems, processes, storage, events.
 * They meet only through the svc_* functions below (UTF-8 JSON in, an HRESULT and a UTF-8
 * JSON document out, events through emu_sink_*), so the service can later move into a
 * daemon without the client noticing.
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

/* ---- settings: every [INFER] behaviour of the spec is a switch here (settings.c) ---- */
typedef enum { CANCEL_NOT_IMPLEMENTED = 0, CANCEL_IMPLEMENTED = 1 } cancel_mode;
typedef struct emu_settings {
    cancel_mode cancel;             /* HcsCancelOperation: E_NOTIMPL (docs) or really cancel */
    bool legacy_error_forms;        /* report HCS_E_* as 0xC037xxxx, as old vmcompute did */
    bool pending_on_initiate;       /* initiating calls return HCS_E_OPERATION_PENDING, not S_OK */
    bool null_success_documents;    /* success results carry no document, even properties */
    bool create_process_sync_quirk; /* WS2022: CreateProcess wait fails spuriously (E_INVALIDARG) */
    bool close_waits_in_own_callback; /* real HCS deadlocks here; default: do not wait */
    bool inherit_environment;       /* processes start from the caller's environment */
    bool ignore_shutdown;           /* graceful shutdown is never honoured (guest ignores it) */
    HRESULT wait_exit_timeout_hr;   /* HcsWaitFor*Exit timeout code */
    uint32_t shutdown_grace_ms;     /* SIGTERM -> SIGKILL grace in a graceful shutdown */
    uint32_t worker_idle_ms;        /* idle worker threads exit after this */
    uint32_t schema_major, schema_minor; /* SupportedSchemaVersions reported by the service */
    uint32_t terminate_timeout_ms;  /* how long a terminate waits for the process group */
    int container_cmdline;          /* CMDLINE_WINDOWS: split by the Windows rules; CMDLINE_SHELL: /bin/sh -c */
    int container_cmdargs;          /* CMDARGS_REFUSE: a Windows guest refuses CommandArgs; CMDARGS_ACCEPT */
    bool deliver_early_events;      /* an exit/create completion before the first callback reaches it */
    int isolation;                  /* ISOLATION_OFF / ISOLATION_AUTO (isolate.h) */
    uint32_t isolation_without;     /* isolation features turned off (bits of iso_feature_names) */
} emu_settings;
enum { CMDLINE_WINDOWS = 0, CMDLINE_SHELL = 1 };
enum { CMDARGS_REFUSE = 0, CMDARGS_ACCEPT = 1 };

extern emu_settings g_settings;
void emu_settings_init(void);
/* Applies an Emulator settings object (the emulator-only section of HcsModifyServiceSettings).
 * Returns S_OK or HCS_E_INVALID_JSON with a message in *err (malloc'd). */
HRESULT emu_settings_apply(const json *settings, char **err);
json *emu_settings_to_json(void);
void emu_settings_reset(void);
/* Maps an HRESULT to the form the current settings report (legacy 0xC037 or modern). */
HRESULT emu_public_hr(HRESULT hr);

/* ---- fault injection and call accounting (faults.c) ---- */
typedef enum {
#define EMU_FN_ENUM(ret, name, params) FN_##name,
    HCS_COMPUTECORE_FUNCTIONS(EMU_FN_ENUM) HCS_COMPUTESTORAGE_FUNCTIONS(EMU_FN_ENUM)
#undef EMU_FN_ENUM
    FN__COUNT
} emu_fn;
extern const char *const emu_fn_names[FN__COUNT];

typedef struct fault_action {
    HRESULT call_hr;     /* fail the initiating call itself (0 = no) */
    HRESULT result_hr;   /* fail the operation's result (0 = no) */
    uint32_t delay_ms;   /* complete late */
    bool hang;           /* never complete (until close or service disconnect) */
} fault_action;
/* Counts the call and decides its fault, if any. Cheap when no fault is configured. */
void emu_fault_check(emu_fn fn, fault_action *out);
/* The same for a synchronous function (one without an operation), which also carries the
 * fault out: a Call or Result failure fails the call itself (there is no operation for a
 * result), DelayMs sleeps, Hang blocks until the service disconnects (the call then fails
 * with HCS_E_SERVICE_DISCONNECT) or the faults are reset. S_OK: go on with the call. */
HRESULT emu_fault_sync(emu_fn fn);
/* Forgets the call counts (action ResetCallCounts). */
void emu_call_counts_reset(void);
HRESULT emu_faults_apply(const json *faults, char **err);
void emu_faults_reset(void);
json *emu_faults_to_json(void);
json *emu_call_counts_to_json(void);
bool emu_service_disconnected(void);
void emu_service_set_disconnected(bool d);

/* ---- UTF-16 and result documents (wstr.c) ---- */
/* UTF-16 -> malloc'd UTF-8; NULL for NULL input. *ok=false on invalid UTF-16 (lone surrogate). */
char *emu_utf8(PCWSTR w, bool *ok);
/* A result document for the caller: allocated so that the exported LocalFree frees it. */
PWSTR emu_doc(const char *utf8);
PWSTR emu_doc_json(const json *v);
/* Duplicate a document handed out earlier (for repeated Get/Wait). */
size_t emu_live_documents(void);
/* A ResultError document (UTF-8, malloc'd). */
char *emu_error_doc(HRESULT hr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *emu_strdup(const char *s);
char *emu_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
bool emu_is_empty(PCWSTR w); /* NULL or L"" */
/* Parse an optional JSON argument: NULL/"" -> *out=NULL, S_OK. Otherwise HCS_E_INVALID_JSON with *err. */
HRESULT emu_parse_optional(PCWSTR w, json **out, char **err);

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

/* ---- worker pool (ops.c) ---- */
typedef void (*emu_job_fn)(void *arg);
/* Runs fn(arg) on a worker thread. Returns false on resource exhaustion. */
bool emu_submit(emu_job_fn fn, void *arg);
size_t emu_live_threads(void);

/* ---- the service half ---- */
typedef struct svc_system svc_system;

HRESULT svc_create(const char *id, const char *config, svc_system **out, char **doc);
HRESULT svc_open(const char *id, svc_system **out);
/* The RuntimeId (GUID text) of the compute system id, if it exists. */
bool svc_runtime_id(const char *id, char out[37]);
void svc_ref(svc_system *s);
void svc_unref(svc_system *s);
const char *svc_id(const svc_system *s);
/* Client handle accounting: ShouldTerminateOnLastHandleClosed and record lifetime. */
void svc_handle_opened(svc_system *s);
void svc_handle_closed(svc_system *s);

HRESULT svc_start(svc_system *s, const json *opts, char **doc);
HRESULT svc_shutdown(svc_system *s, const json *opts, char **doc);
HRESULT svc_terminate(svc_system *s, const json *opts, char **doc);
HRESULT svc_crash(svc_system *s, const json *opts, char **doc);
HRESULT svc_pause(svc_system *s, const json *opts, char **doc);
HRESULT svc_resume(svc_system *s, const json *opts, char **doc);
HRESULT svc_save(svc_system *s, const json *opts, char **doc);
HRESULT svc_properties(svc_system *s, const json *query, char **doc);
HRESULT svc_modify(svc_system *s, const json *request, char **doc);
HRESULT svc_enumerate(const json *query, char **doc);
HRESULT svc_wait_exit(svc_system *s, uint32_t timeout_ms, char **doc);
/* The same, ending early with E_HANDLE once *abandoned is set (the waiting handle was closed:
 * the closer sets it, then calls svc_wake_waiters). abandoned may be NULL. */
HRESULT svc_wait_exit_or_abandon(svc_system *s, uint32_t timeout_ms, const atomic_bool *abandoned, char **doc);
void svc_wake_waiters(void);
/* Kill a system as if its "guest" died (fault injection). */
HRESULT svc_inject_unexpected_exit(const char *id);
HRESULT svc_inject_process_exit(const char *id, uint32_t pid, int code);
/* Service disconnect: every system's callbacks get ServiceDisconnect; waits fail. */
void svc_disconnect_all(void);
size_t svc_live_systems(void);
size_t svc_live_processes(void);

typedef struct svc_stdio {
    int in, out, err; /* host-side pipe ends for the caller (owned by the caller), -1 if absent */
} svc_stdio;
HRESULT svc_create_process(svc_system *s, const char *params, uint32_t *pid, svc_stdio *io, char **doc);
/* The calling client's environment and working directory, when it is another process (set
 * by the service process around svc_create_process); NULL: this process's. */
extern __thread char *const *svc_caller_environ;
extern __thread const char *svc_caller_cwd;
HRESULT svc_process_open(svc_system *s, uint32_t pid);
void svc_process_handle(svc_system *s, uint32_t pid, int delta);
HRESULT svc_process_info(svc_system *s, uint32_t pid, svc_stdio *io, char **doc);
HRESULT svc_process_signal(svc_system *s, uint32_t pid, const json *opts, char **doc);
HRESULT svc_process_terminate(svc_system *s, uint32_t pid, char **doc);
HRESULT svc_process_properties(svc_system *s, uint32_t pid, const json *query, char **doc);
HRESULT svc_process_modify(svc_system *s, uint32_t pid, const json *req, char **doc);
HRESULT svc_process_wait(svc_system *s, uint32_t pid, uint32_t timeout_ms, char **doc);
HRESULT svc_process_wait_or_abandon(svc_system *s, uint32_t pid, uint32_t timeout_ms, const atomic_bool *abandoned,
                                    char **doc);

HRESULT svc_service_properties(const json *query, char **doc);
HRESULT svc_modify_service(const json *settings, char **doc);
HRESULT svc_submit_wer(const json *report, char **doc);

/* ---- events from the service to the client (client.c) ---- */
void emu_sink_system_event(svc_system *s, HCS_EVENT_TYPE type, const char *data);
void emu_sink_process_event(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data);
void emu_sink_service_disconnect(void);
/* In the service process the events go to the connected clients instead (server.c). */
typedef struct emu_event_sink {
    void (*system_event)(svc_system *s, HCS_EVENT_TYPE type, const char *data);
    void (*process_event)(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data);
} emu_event_sink;
extern const emu_event_sink *emu_event_hook;
/* A number naming a system for the life of the service process (never reused). */
uint64_t svc_serial(const svc_system *s);

/* ---- processes (proc.c): real children, reaped through pidfds ---- */
typedef struct proc_stat proc_stat;
/* last: the process's final /proc reading (taken while it was a zombie), or NULL. */
typedef void (*proc_exit_fn)(void *ctx, int pid, int wait_status, const proc_stat *last);
/* Start watching pid; fn runs on the reaper thread once it has exited. It has been reaped then,
 * unless keep_zombie: a group leader stays a zombie (pinning its process group id) until the
 * owner calls proc_reap. */
bool proc_watch(int pid, bool keep_zombie, proc_exit_fn fn, void *ctx);
void proc_reap(int pid);
/* The service process is a child subreaper: descendants whose parent exited become its
 * children. Spawns happen under proc_known_lock and add their pid, so proc_reap_orphans (run on
 * SIGCHLD) reaps only the zombies nobody watches. */
void proc_known_lock(void);
void proc_known_unlock(void);
void proc_known_add_locked(int pid);
void proc_reap_orphans(void);
/* Reaps pid if it is an exited child nobody watches (an orphan); cheap, for one SIGCHLD. */
void proc_reap_if_orphan(int pid);
/* Signals every process whose environment holds the entry `marker` (or, with prefix, an entry
 * starting with it); through pidfds, so a recycled pid is never hit. Only pids >= min_pid are
 * looked at, unless pids wrapped. Returns how many. */
size_t proc_kill_marked(const char *marker, bool prefix, int sig, int min_pid);
/* Process statistics from /proc. */
struct proc_stat {
    int pid, pgrp;
    char state; /* R, S, T, Z ... as in /proc/<pid>/stat */
    char name[64];
    uint64_t utime_100ns, stime_100ns, start_ms_epoch;
    uint64_t rss_bytes, vsize_bytes, shared_bytes;
    uint64_t read_bytes, write_bytes, read_ops, write_ops;
};
/* Every process in group pgrp (the group leader included); returns count (<= cap). */
size_t proc_list_group(int pgrp, proc_stat *out, size_t cap);
bool proc_read(int pid, proc_stat *out);
bool proc_group_empty(int pgrp);
/* Waits (up to timeout_ms) until every process of the group is stopped (SIGSTOP delivered). */
bool proc_group_wait_stopped(int pgrp, uint32_t timeout_ms);
/* Waits until every process of the group is stopped (true) or running again (false). */
bool proc_group_wait_state(int pgrp, bool stopped, uint32_t timeout_ms);

/* ---- logging (HCSEMU_DEBUG=1) ---- */
void emu_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* HCSEMU_EMU_H */
