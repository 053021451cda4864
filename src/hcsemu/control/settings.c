/*
 * Emulator settings ("quirk switches"): every inferred behaviour of the emulator is one.
 *
 * Everything emulator-specific is reached through the normal API: HcsModifyServiceSettings
 * with PropertyType "Emulator" (settings), "EmulatorFaults" (faults.c) or "EmulatorActions"
 * (actions.c), and HcsGetServiceProperties with the matching property types
 * (service/host.c). Real HCS rejects these names, so code that depends on them cannot
 * silently pass on Windows. For whole-process runs the same objects can be given as JSON in
 * HCSEMU_SETTINGS and HCSEMU_FAULTS.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "isolate.h"

emu_settings g_settings;


static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void defaults(emu_settings *s) {
    memset(s, 0, sizeof *s);
    s->cancel = CANCEL_NOT_IMPLEMENTED; /* the documented behaviour */
    s->inherit_environment = true;
    s->wait_exit_timeout_hr = HCS_E_OPERATION_TIMEOUT;
    s->shutdown_grace_ms = 5000;
    s->worker_idle_ms = 2000;
    s->schema_major = 2;
    s->schema_minor = 6;
    s->terminate_timeout_ms = 10000;
    /* container_cmdline/container_cmdargs stay 0 (Windows/Refuse): a Container is a Windows
       guest, as in HCS */
    s->deliver_early_events = true;
    s->cgroup_pids_max = 16384;
    s->oom_exit_code = (HRESULT)0xC0000017u; /* STATUS_NO_MEMORY */
    s->isolation = ISOLATION_AUTO; /* containers are contained; "Off" is the switch for speed */
}

/* Each switch: its JSON name, its kind, where it lives. Documented in docs/emulator.md. */
typedef enum { K_BOOL, K_U32, K_HR, K_CANCEL, K_CHOICE, K_NAMES } kind;
typedef struct setting {
    const char *name;
    kind k;
    size_t off;
    const char *const *choices; /* K_CHOICE: the names of the values 0, 1, ... (an int field);
                                 * K_NAMES: the names of the bits of a uint32_t, set from an array */
} setting;
#define S(name, k, field) {name, k, offsetof(emu_settings, field), NULL}
#define C(name, field, list) {name, K_CHOICE, offsetof(emu_settings, field), list}
static const char *const cmdline_modes[] = {"Windows", "Shell", NULL};
static const char *const cmdargs_modes[] = {"Refuse", "Accept", NULL};
static const char *const isolation_modes[] = {"Off", "Auto", NULL};
static const char *const cgroup_modes[] = {"Auto", "Off", "V1", "V2", NULL}; /* CGM_* in service/cgroup.h */
static const setting table[] = {
    S("CancelOperation", K_CANCEL, cancel),
    S("LegacyErrorForms", K_BOOL, legacy_error_forms),
    S("PendingOnInitiate", K_BOOL, pending_on_initiate),
    S("NullSuccessDocuments", K_BOOL, null_success_documents),
    S("CreateProcessSyncQuirk", K_BOOL, create_process_sync_quirk),
    S("CloseWaitsInOwnCallback", K_BOOL, close_waits_in_own_callback),
    S("InheritEnvironment", K_BOOL, inherit_environment),
    S("IgnoreShutdown", K_BOOL, ignore_shutdown),
    S("WaitExitTimeoutResult", K_HR, wait_exit_timeout_hr),
    S("ShutdownGraceMs", K_U32, shutdown_grace_ms),
    S("WorkerIdleMs", K_U32, worker_idle_ms),
    S("SchemaMajor", K_U32, schema_major),
    S("SchemaMinor", K_U32, schema_minor),
    S("TerminateTimeoutMs", K_U32, terminate_timeout_ms),
    S("DeliverEarlyEvents", K_BOOL, deliver_early_events),
    C("ContainerCommandLine", container_cmdline, cmdline_modes),
    C("ContainerCommandArgs", container_cmdargs, cmdargs_modes),
    C("Isolation", isolation, isolation_modes),
    {"IsolationWithout", K_NAMES, offsetof(emu_settings, isolation_without), iso_feature_names},
    C("Cgroups", cgroups, cgroup_modes),
    S("CgroupPidsMax", K_U32, cgroup_pids_max),
    S("OutOfMemoryExitCode", K_HR, oom_exit_code),
};
#undef S
#define N_SETTINGS (sizeof table / sizeof table[0])

bool emu_parse_hr(const json *v, HRESULT *out) {
    int64_t i;
    uint64_t u;
    if (json_int64(v, &i) && i >= INT32_MIN && i <= (int64_t)UINT32_MAX) {
        *out = (HRESULT)(uint32_t)i;
        return true;
    }
    if (json_uint64(v, &u) && u <= UINT32_MAX) {
        *out = (HRESULT)(uint32_t)u;
        return true;
    }
    const char *s = json_str(v);
    if (s) {
        char *end;
        unsigned long long x = strtoull(s, &end, 0);
        if (*s && !*end && x <= UINT32_MAX) {
            *out = (HRESULT)(uint32_t)x;
            return true;
        }
        /* a few names, so tests read well */
        static const struct { const char *n; HRESULT hr; } names[] = {
            {"OperationTimeout", HCS_E_OPERATION_TIMEOUT}, {"WaitTimeout", HRESULT_FROM_WIN32(WAIT_TIMEOUT)}};
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            if (strcmp(s, names[k].n) == 0) {
                *out = names[k].hr;
                return true;
            }
    }
    return false;
}

static HRESULT apply_into(emu_settings *dst, const json *obj, char **err) {
    if (json_typeof(obj) != JSON_OBJECT) {
        *err = strdup("Emulator settings must be a JSON object");
        return HCS_E_INVALID_JSON;
    }
    for (size_t i = 0; i < json_len(obj); i++) {
        const char *key = json_key_at(obj, i);
        const json *v = json_at(obj, i);
        const setting *st = NULL;
        for (size_t k = 0; k < N_SETTINGS; k++)
            if (strcmp(table[k].name, key) == 0 && strlen(key) == json_key_len_at(obj, i)) st = &table[k];
        if (!st) {
            *err = emu_printf("Unknown emulator setting '%s'", key);
            return HCS_E_INVALID_JSON;
        }
        char *field = (char *)dst + st->off;
        bool b;
        int64_t n;
        switch (st->k) {
        case K_BOOL:
            if (!json_bool(v, &b)) goto bad;
            *(bool *)field = b;
            break;
        case K_U32:
            if (!json_int64(v, &n) || n < 0 || n > UINT32_MAX) goto bad;
            *(uint32_t *)field = (uint32_t)n;
            break;
        case K_HR:
            if (!emu_parse_hr(v, (HRESULT *)field)) goto bad;
            break;
        case K_CANCEL: {
            const char *s = json_str(v);
            if (s && strcmp(s, "NotImplemented") == 0) *(cancel_mode *)field = CANCEL_NOT_IMPLEMENTED;
            else if (s && strcmp(s, "Implemented") == 0) *(cancel_mode *)field = CANCEL_IMPLEMENTED;
            else goto bad;
            break;
        }
        case K_CHOICE: {
            const char *s = json_str(v);
            int found = -1;
            for (int c = 0; s && st->choices[c]; c++)
                if (strcmp(s, st->choices[c]) == 0) found = c;
            if (found < 0) goto bad;
            *(int *)field = found;
            break;
        }
        case K_NAMES: {
            if (json_typeof(v) != JSON_ARRAY) goto bad;
            uint32_t bits = 0;
            for (size_t e = 0; e < json_len(v); e++) {
                const char *s = json_str(json_at(v, e));
                int found = -1;
                for (int c = 0; s && st->choices[c]; c++)
                    if (strcmp(s, st->choices[c]) == 0) found = c;
                if (found < 0) goto bad;
                bits |= 1u << found;
            }
            *(uint32_t *)field = bits;
            break;
        }
        }
        continue;
    bad:
        *err = emu_printf("Emulator setting '%s' has a value of the wrong type", key);
        return HCS_E_INVALID_JSON;
    }
    return S_OK;
}

static void load_env(void);

void emu_settings_init(void) { pthread_once(&init_once, load_env); }

HRESULT emu_settings_apply(const json *settings, char **err) {
    emu_settings_init();
    pthread_mutex_lock(&set_mu);
    emu_settings copy = g_settings;
    HRESULT hr = apply_into(&copy, settings, err);
    if (!FAILED(hr)) g_settings = copy; /* all or nothing */
    pthread_mutex_unlock(&set_mu);
    return hr;
}

void emu_settings_reset(void) {
    pthread_mutex_lock(&set_mu);
    defaults(&g_settings);
    pthread_mutex_unlock(&set_mu);
}

json *emu_settings_to_json(void) {
    emu_settings_init();
    json *o = json_new_object();
    for (size_t k = 0; k < N_SETTINGS; k++) {
        const char *field = (const char *)&g_settings + table[k].off;
        switch (table[k].k) {
        case K_BOOL: json_set(o, table[k].name, json_new_bool(*(const bool *)field)); break;
        case K_U32: json_set(o, table[k].name, json_new_uint(*(const uint32_t *)field)); break;
        case K_HR: json_set(o, table[k].name, json_new_uint((uint32_t) * (const HRESULT *)field)); break;
        case K_CANCEL:
            json_set(o, table[k].name,
                     json_new_string(*(const cancel_mode *)field == CANCEL_IMPLEMENTED ? "Implemented" : "NotImplemented"));
            break;
        case K_CHOICE: json_set(o, table[k].name, json_new_string(table[k].choices[*(const int *)field])); break;
        case K_NAMES: {
            json *a = json_new_array();
            for (int c = 0; table[k].choices[c]; c++)
                if (*(const uint32_t *)field & (1u << c)) json_append(a, json_new_string(table[k].choices[c]));
            json_set(o, table[k].name, a);
            break;
        }
        }
    }
    return o;
}

HRESULT emu_public_hr(HRESULT hr) {
    /* Old vmcompute reported HCS errors in their NTSTATUS-shaped 0xC037 form. */
    if (g_settings.legacy_error_forms && ((uint32_t)hr & 0xFFFF0000u) == 0x80370000u)
        return (HRESULT)(((uint32_t)hr & 0x0000FFFFu) | 0xC0370000u);
    return hr;
}

static void load_env(void) {
    defaults(&g_settings);
    const char *s = getenv("HCSEMU_SETTINGS");
    char msg[256];
    if (s && *s) {
        json *v = json_parse(s, strlen(s), msg, sizeof msg);
        char *err = NULL;
        if (!v) emu_env_error_set("HCSEMU_SETTINGS", msg);
        else if (FAILED(apply_into(&g_settings, v, &err))) emu_env_error_set("HCSEMU_SETTINGS", err ? err : "invalid");
        free(err);
        json_free(v);
    }
}

