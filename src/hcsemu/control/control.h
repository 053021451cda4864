/*
 * The emulator's controls (control/): settings (every inferred behaviour is a switch),
 * fault injection and call accounting, and the actions of HcsModifyServiceSettings
 * "EmulatorActions". Read by both halves.
 */
#ifndef HCSEMU_CONTROL_H
#define HCSEMU_CONTROL_H

#include "emu.h"

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
    int isolation;                  /* ISOLATION_OFF / ISOLATION_AUTO (service/isolate.h) */
    uint32_t isolation_without;     /* isolation features turned off (bits of iso_feature_names) */
    int cgroups;                    /* CGM_* (service/cgroup.h): a cgroup per system, or the process group only */
    uint32_t cgroup_pids_max;       /* pids limit of a system's cgroup (0: none) */
    HRESULT oom_exit_code;          /* exit code of a Windows-guest process the memory limit killed */
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

/* An HRESULT given as a number, a numeric string or one of a few names (settings.c). */
bool emu_parse_hr(const json *v, HRESULT *out);
/* A malformed HCSEMU_SETTINGS or HCSEMU_FAULTS: every counted call fails until a reset (faults.c). */
void emu_env_error_set(const char *var, const char *detail);

/* ---- actions and statistics (actions.c), for the EmulatorActions / EmulatorStatistics
 * members of the host service calls (service/host.c) ---- */
HRESULT emu_control_action(const json *settings, char **doc);
json *emu_control_statistics(void);

#endif /* HCSEMU_CONTROL_H */
