/*
 * Emulator settings ("quirk switches"), fault injection, call accounting and the host
 * service functions (HcsGetServiceProperties, HcsModifyServiceSettings, HcsSubmitWerReport).
 *
 * Everything emulator-specific is reached through the normal API: HcsModifyServiceSettings
 * with PropertyType "Emulator" (settings), "EmulatorFaults" or "EmulatorActions", and
 * HcsGetServiceProperties with the matching property types. Real HCS rejects these names,
 * so code that depends on them cannot silently pass on Windows. For whole-process runs the
 * same objects can be given as JSON in HCSEMU_SETTINGS and HCSEMU_FAULTS.
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

#include "client.h"
#include "emu.h"
#include "isolate.h"

emu_settings g_settings;

const char *const emu_fn_names[FN__COUNT] = {
#define EMU_FN_NAME(ret, name, params) #name,
    HCS_COMPUTECORE_FUNCTIONS(EMU_FN_NAME) HCS_COMPUTESTORAGE_FUNCTIONS(EMU_FN_NAME)
#undef EMU_FN_NAME
};

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
};
#undef S
#define N_SETTINGS (sizeof table / sizeof table[0])

static bool parse_hr(const json *v, HRESULT *out) {
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
            if (!parse_hr(v, (HRESULT *)field)) goto bad;
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

/* ------------------------------------------------------------------ faults */

typedef struct fault {
    emu_fn fn;           /* FN__COUNT: every function */
    bool in_result;      /* fail the operation's result rather than the call */
    HRESULT hr;
    uint32_t on_call;    /* 1-based call number to start at (0: any) */
    uint32_t count;      /* how many times to fire (0: unlimited) */
    double probability;  /* 0 < p <= 1 */
    uint64_t rng;        /* seeded xorshift state */
    uint32_t delay_ms;
    bool hang;
    uint32_t seen, fired;
} fault;

#define MAX_FAULTS 64
static fault faults[MAX_FAULTS];
static size_t n_faults;
static atomic_bool any_fault;
static atomic_uint_fast64_t call_counts[FN__COUNT];
static atomic_bool disconnected;
static atomic_uint fault_generation; /* bumped when the faults are reset: ends synchronous hangs */

/* A malformed HCSEMU_FAULTS or HCSEMU_SETTINGS: every counted call fails with
 * HCS_E_INVALID_JSON until a Reset or a successful EmulatorFaults modify, so that a test run
 * meant to inject faults cannot pass with none injected. The message (which variable, what is
 * wrong) is in the EmulatorFaults property and on stderr. Guarded by set_mu. */
static atomic_bool env_failed;
static bool applying_env; /* set while HCSEMU_FAULTS is applied, before any other call */
static char *env_error, *env_error_var;

static void env_error_set(const char *var, const char *detail) {
    pthread_mutex_lock(&set_mu);
    free(env_error);
    free(env_error_var);
    env_error = emu_printf("%s is malformed (%s): every call fails with HCS_E_INVALID_JSON until the emulator's "
                           "faults are reset or set", var, detail);
    env_error_var = strdup(var);
    atomic_store(&env_failed, true);
    pthread_mutex_unlock(&set_mu);
    fprintf(stderr, "hcsemu: %s\n", env_error ? env_error : var);
}

/* Called with set_mu held. */
static void env_error_clear_locked(void) {
    atomic_store(&env_failed, false);
    free(env_error);
    free(env_error_var);
    env_error = env_error_var = NULL;
}

static double next_random(fault *f) {
    uint64_t x = f->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    f->rng = x;
    return (double)(x >> 11) / 9007199254740992.0;
}

void emu_fault_check(emu_fn fn, fault_action *out) {
    memset(out, 0, sizeof *out);
    if (fn >= FN__COUNT) return;
    emu_settings_init();
    atomic_fetch_add_explicit(&call_counts[fn], 1, memory_order_relaxed);
    if (atomic_load_explicit(&env_failed, memory_order_acquire)) {
        out->call_hr = HCS_E_INVALID_JSON;
        return;
    }
    if (!atomic_load_explicit(&any_fault, memory_order_acquire)) return;
    pthread_mutex_lock(&set_mu);
    for (size_t i = 0; i < n_faults; i++) {
        fault *f = &faults[i];
        if (f->fn != FN__COUNT && f->fn != fn) continue;
        f->seen++;
        if (f->on_call && f->seen < f->on_call) continue;
        if (f->count && f->fired >= f->count) continue;
        if (f->probability < 1.0 && next_random(f) >= f->probability) continue;
        f->fired++;
        if (f->hr) {
            if (f->in_result) out->result_hr = f->hr;
            else out->call_hr = f->hr;
        }
        if (f->delay_ms > out->delay_ms) out->delay_ms = f->delay_ms;
        if (f->hang) out->hang = true;
    }
    pthread_mutex_unlock(&set_mu);
}

HRESULT emu_fault_sync(emu_fn fn) {
    fault_action fa;
    unsigned gen = atomic_load(&fault_generation);
    emu_fault_check(fn, &fa);
    if (fa.call_hr) return fa.call_hr;
    if (fa.delay_ms) {
        struct timespec ts = {fa.delay_ms / 1000, (long)(fa.delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
        }
    }
    if (fa.hang) {
        /* Polled: a hang is a test scenario, not a hot path, and this needs no wake-ups from
         * the disconnect and reset paths. */
        while (!emu_service_disconnected() && atomic_load(&fault_generation) == gen) {
            struct timespec ts = {0, 20 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (emu_service_disconnected()) return HCS_E_SERVICE_DISCONNECT;
    }
    return fa.result_hr;
}

void emu_call_counts_reset(void) {
    for (int i = 0; i < FN__COUNT; i++) atomic_store_explicit(&call_counts[i], 0, memory_order_relaxed);
}

static emu_fn fn_by_name(const char *name) {
    for (int i = 0; i < FN__COUNT; i++)
        if (strcmp(emu_fn_names[i], name) == 0) return (emu_fn)i;
    return FN__COUNT;
}

HRESULT emu_faults_apply(const json *spec, char **err) {
    emu_settings_init();
    /* {"Faults":[...], "Reset":true} or a bare array */
    const json *list = json_typeof(spec) == JSON_ARRAY ? spec : json_get(spec, "Faults");
    bool reset = false;
    json_bool(json_get(spec, "Reset"), &reset);
    if (list && json_typeof(list) != JSON_ARRAY) {
        *err = strdup("Faults must be an array");
        return HCS_E_INVALID_JSON;
    }
    fault parsed[MAX_FAULTS];
    size_t n = 0;
    for (size_t i = 0; i < json_len(list); i++) {
        const json *f = json_at(list, i);
        if (json_typeof(f) != JSON_OBJECT || n >= MAX_FAULTS) {
            *err = emu_printf("Fault %zu must be an object (at most %d faults)", i, MAX_FAULTS);
            return HCS_E_INVALID_JSON;
        }
        fault x;
        memset(&x, 0, sizeof x);
        /* every member typed: a wrong type is an error, never "absent" (Function 5 must not
           become every function) */
        char ctx[32], je[320];
        snprintf(ctx, sizeof ctx, "Faults[%zu]", i);
        const char *fname = NULL, *where = NULL;
        int64_t v;
        bool ok = json_want_str(f, ctx, "Function", &fname, je, sizeof je) &&
                  json_want_str(f, ctx, "Where", &where, je, sizeof je) &&
                  json_want_int64(f, ctx, "OnCall", &v, je, sizeof je) &&
                  json_want_int64(f, ctx, "Count", &v, je, sizeof je) &&
                  json_want_int64(f, ctx, "DelayMs", &v, je, sizeof je) &&
                  json_want_int64(f, ctx, "Seed", &v, je, sizeof je) &&
                  json_want_bool(f, ctx, "Hang", &x.hang, je, sizeof je);
        double pd;
        if (ok && json_get(f, "Probability") && json_typeof(json_get(f, "Probability")) != JSON_NULL &&
            !json_double(json_get(f, "Probability"), &pd)) {
            ok = false;
            snprintf(je, sizeof je, "%s.Probability must be a number", ctx);
        }
        if (!ok) {
            *err = strdup(je);
            return HCS_E_INVALID_JSON;
        }
        x.fn = FN__COUNT;
        if (fname && strcmp(fname, "*") != 0) {
            x.fn = fn_by_name(fname);
            if (x.fn == FN__COUNT) {
                *err = emu_printf("Fault %zu names an unknown function '%s'", i, fname);
                return HCS_E_INVALID_JSON;
            }
        }
        if (where && strcmp(where, "Result") == 0) x.in_result = true;
        else if (where && strcmp(where, "Call") != 0) {
            *err = emu_printf("Fault %zu: Where must be Call or Result", i);
            return HCS_E_INVALID_JSON;
        }
        const json *hr = json_get(f, "HResult");
        if (hr && !parse_hr(hr, &x.hr)) {
            *err = emu_printf("Fault %zu: HResult must be a number or a hex string", i);
            return HCS_E_INVALID_JSON;
        }
        /* A success code other than S_OK (S_FALSE...) is allowed: the call returns it, or the
         * operation completes with it, without doing the work; callers must not take it for a
         * failure. */
        if (json_int64(json_get(f, "OnCall"), &v) && v >= 0) x.on_call = (uint32_t)v;
        if (json_int64(json_get(f, "Count"), &v) && v >= 0) x.count = (uint32_t)v;
        if (json_int64(json_get(f, "DelayMs"), &v) && v >= 0) x.delay_ms = (uint32_t)v;
        x.probability = 1.0;
        double p;
        if (json_double(json_get(f, "Probability"), &p)) {
            if (!(p > 0.0 && p <= 1.0)) {
                *err = emu_printf("Fault %zu: Probability must be in (0, 1]", i);
                return HCS_E_INVALID_JSON;
            }
            x.probability = p;
        }
        uint64_t seed = 0x9E3779B97F4A7C15ull;
        if (json_int64(json_get(f, "Seed"), &v)) seed ^= (uint64_t)v * 0xBF58476D1CE4E5B9ull;
        x.rng = seed ? seed : 1;
        if (!x.hr && !x.delay_ms && !x.hang) {
            *err = emu_printf("Fault %zu does nothing: give HResult, DelayMs or Hang", i);
            return HCS_E_INVALID_JSON;
        }
        parsed[n++] = x;
    }
    pthread_mutex_lock(&set_mu);
    if (reset) {
        n_faults = 0;
        atomic_fetch_add(&fault_generation, 1);
    }
    if (n_faults + n > MAX_FAULTS) {
        pthread_mutex_unlock(&set_mu);
        *err = emu_printf("At most %d faults", MAX_FAULTS);
        return HCS_E_INVALID_JSON;
    }
    memcpy(&faults[n_faults], parsed, n * sizeof *parsed);
    n_faults += n;
    atomic_store(&any_fault, n_faults > 0);
    if (!applying_env) env_error_clear_locked(); /* HCSEMU_FAULTS must not hide a bad HCSEMU_SETTINGS */
    pthread_mutex_unlock(&set_mu);
    return S_OK;
}

void emu_faults_reset(void) {
    pthread_mutex_lock(&set_mu);
    n_faults = 0;
    atomic_fetch_add(&fault_generation, 1);
    atomic_store(&any_fault, false);
    env_error_clear_locked();
    pthread_mutex_unlock(&set_mu);
}

json *emu_faults_to_json(void) {
    json *arr = json_new_array();
    pthread_mutex_lock(&set_mu);
    if (atomic_load(&env_failed)) {
        json *o = json_new_object();
        json_set(o, "Function", json_new_string("*"));
        json_set(o, "Where", json_new_string("Call"));
        json_set(o, "HResult", json_new_uint((uint32_t)HCS_E_INVALID_JSON));
        json_set(o, "Variable", json_new_string(env_error_var ? env_error_var : ""));
        json_set(o, "Error", json_new_string(env_error ? env_error : ""));
        json_append(arr, o);
    }
    for (size_t i = 0; i < n_faults; i++) {
        const fault *f = &faults[i];
        json *o = json_new_object();
        json_set(o, "Function", json_new_string(f->fn == FN__COUNT ? "*" : emu_fn_names[f->fn]));
        json_set(o, "Where", json_new_string(f->in_result ? "Result" : "Call"));
        if (f->hr) json_set(o, "HResult", json_new_uint((uint32_t)f->hr));
        if (f->on_call) json_set(o, "OnCall", json_new_uint(f->on_call));
        if (f->count) json_set(o, "Count", json_new_uint(f->count));
        if (f->delay_ms) json_set(o, "DelayMs", json_new_uint(f->delay_ms));
        if (f->hang) json_set(o, "Hang", json_new_bool(true));
        if (f->probability < 1.0) json_set(o, "Probability", json_new_double(f->probability));
        json_set(o, "Seen", json_new_uint(f->seen));
        json_set(o, "Fired", json_new_uint(f->fired));
        json_append(arr, o);
    }
    pthread_mutex_unlock(&set_mu);
    return arr;
}

json *emu_call_counts_to_json(void) {
    json *o = json_new_object();
    for (int i = 0; i < FN__COUNT; i++) {
        uint64_t n = atomic_load_explicit(&call_counts[i], memory_order_relaxed);
        if (n) json_set(o, emu_fn_names[i], json_new_uint(n));
    }
    return o;
}

bool emu_service_disconnected(void) { return atomic_load_explicit(&disconnected, memory_order_acquire); }
void emu_service_set_disconnected(bool d) { atomic_store(&disconnected, d); }

static void load_env(void) {
    defaults(&g_settings);
    const char *s = getenv("HCSEMU_SETTINGS");
    char msg[256];
    if (s && *s) {
        json *v = json_parse(s, strlen(s), msg, sizeof msg);
        char *err = NULL;
        if (!v) env_error_set("HCSEMU_SETTINGS", msg);
        else if (FAILED(apply_into(&g_settings, v, &err))) env_error_set("HCSEMU_SETTINGS", err ? err : "invalid");
        free(err);
        json_free(v);
    }
}

/* HCSEMU_FAULTS is applied on first use of the service, after the once-function finished. */
static pthread_once_t env_faults_once = PTHREAD_ONCE_INIT;
static void load_env_faults(void) {
    const char *f = getenv("HCSEMU_FAULTS");
    if (!f || !*f) return;
    char msg[256];
    json *v = json_parse(f, strlen(f), msg, sizeof msg);
    char *err = NULL;
    applying_env = true;
    if (!v) env_error_set("HCSEMU_FAULTS", msg);
    else if (FAILED(emu_faults_apply(v, &err))) env_error_set("HCSEMU_FAULTS", err ? err : "invalid");
    applying_env = false;
    free(err);
    json_free(v);
}

__attribute__((constructor)) static void hcsemu_init(void) {
    emu_settings_init();
    pthread_once(&env_faults_once, load_env_faults);
}

/* ------------------------------------------------------------------ host facts */

json *emu_host_processor_topology(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    json *t = json_new_object();
    json_set(t, "LogicalProcessorCount", json_new_uint((uint64_t)n));
    json *lps = json_new_array();
    for (long i = 0; i < n; i++) {
        char path[128];
        long core = i, pkg = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", i);
        FILE *f = fopen(path, "re");
        if (f) {
            if (fscanf(f, "%ld", &core) != 1) core = i;
            fclose(f);
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", i);
        f = fopen(path, "re");
        if (f) {
            if (fscanf(f, "%ld", &pkg) != 1) pkg = 0;
            fclose(f);
        }
        json *lp = json_new_object();
        json_set(lp, "LpIndex", json_new_uint((uint64_t)i));
        json_set(lp, "NodeNumber", json_new_uint(0));
        json_set(lp, "PackageId", json_new_uint((uint64_t)pkg));
        json_set(lp, "CoreId", json_new_uint((uint64_t)core));
        json_set(lp, "RootVpIndex", json_new_uint((uint64_t)i));
        json_append(lps, lp);
    }
    json_set(t, "LogicalProcessors", lps);
    return t;
}

/* What a saved state needs of the processor, from /proc/cpuinfo's flags (Linux flag name ->
 * HCS ProcessorFeature / XsaveProcessorFeature name). */
json *emu_host_processor_requirements(void) {
    static const char *const feat[][2] = {
        {"pni", "Sse3"},         {"lahf_lm", "LahfSahf"}, {"ssse3", "Ssse3"},     {"sse4_1", "Sse4_1"},
        {"sse4_2", "Sse4_2"},    {"sse4a", "Sse4A"},      {"popcnt", "Popcnt"},   {"cx16", "Cmpxchg16B"},
        {"abm", "Lzcnt"},        {"pdpe1gb", "Page1Gb"},  {"aes", "AmdAes"},      {"pclmulqdq", "Pclmulqdq"},
        {"pcid", "Pcid"},        {"f16c", "F16C"},        {"rdrand", "Rdrand"},   {"fsgsbase", "Rdwrfsgs"},
        {"smep", "Smep"},        {"erms", "EnhancedFastString"}, {"bmi1", "Bmi1"}, {"bmi2", "Bmi2"},
        {"movbe", "Movbe"},      {"rdseed", "Rdseed"},    {"adx", "Adx"},         {"smap", "Smap"},
        {"rdtscp", "Rdtscp"},    {"clflushopt", "Clflushopt"}, {"clwb", "Clwb"},  {"sha_ni", "Sha"},
        {"invpcid", "Invpcid"},  {"umip", "Umip"},        {"rdpid", "Rdpid"},     {"la57", "La57"}};
    static const char *const xfeat[][2] = {{"xsave", "Xsave"},   {"xsaveopt", "Xsave_Opt"}, {"avx", "Avx"},
                                           {"avx2", "Avx2"},     {"fma", "Fma"},            {"avx512f", "Avx512"},
                                           {"avx512dq", "Avx512Dq"}, {"avx512cd", "Avx512Cd"}, {"avx512bw", "Avx512Bw"},
                                           {"avx512vl", "Avx512Vl"}, {"xsavec", "Xsave_Comp"}, {"gfni", "Gfni"},
                                           {"vaes", "Vaes"},     {"vpclmulqdq", "Vpclmulqdq"}};
    char *flags = NULL;
    unsigned clflush = 64, phys_bits = 0;
    FILE *f = fopen("/proc/cpuinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        if (!flags && strncmp(line, "flags", 5) == 0) {
            char *c = strchr(line, ':');
            if (c) flags = emu_printf(" %s ", c + 1);
        }
        unsigned v;
        if (sscanf(line, "clflush size : %u", &v) == 1) clflush = v;
        if (sscanf(line, "address sizes : %u bits physical", &v) == 1) phys_bits = v;
    }
    free(line);
    if (f) fclose(f);
    if (flags) {
        char *nl = strchr(flags, '\n');
        if (nl) *nl = ' ';
    }
    json *r = json_new_object();
    json *pf = json_new_array(), *xf = json_new_array();
    for (size_t i = 0; flags && i < sizeof feat / sizeof feat[0]; i++) {
        char pat[40];
        snprintf(pat, sizeof pat, " %s ", feat[i][0]);
        if (strstr(flags, pat)) json_append(pf, json_new_string(feat[i][1]));
    }
    for (size_t i = 0; flags && i < sizeof xfeat / sizeof xfeat[0]; i++) {
        char pat[40];
        snprintf(pat, sizeof pat, " %s ", xfeat[i][0]);
        if (strstr(flags, pat)) json_append(xf, json_new_string(xfeat[i][1]));
    }
    free(flags);
    json_set(r, "ProcessorFeatures", pf);
    json_set(r, "XsaveProcessorFeatures", xf);
    json_set(r, "CacheLineFlushSize", json_new_uint(clflush));
    if (phys_bits) json_set(r, "ImplementedPhysicalAddressBits", json_new_uint(phys_bits));
    json_set(r, "NonArchitecturalCoreSharing", json_new_string("Unreported"));
    return r;
}

/* ------------------------------------------------------------------ host service */

typedef struct cpu_group {
    char id[64];
    json *affinity;   /* CpuGroupAffinity */
    json *properties; /* array of CpuGroupProperty */
} cpu_group;
#define MAX_GROUPS 64
static cpu_group groups[MAX_GROUPS];
static size_t n_groups;
static json *wer_reports;

static json *cpu_groups_json(void) {
    json *o = json_new_object();
    json *arr = json_new_array();
    for (size_t i = 0; i < n_groups; i++) {
        json *g = json_new_object();
        json_set(g, "GroupId", json_new_string(groups[i].id));
        json_set(g, "Affinity", json_clone(groups[i].affinity));
        json_set(g, "GroupProperties", json_clone(groups[i].properties));
        json_append(arr, g);
    }
    json_set(o, "CpuGroups", arr);
    return o;
}

static json *emulator_statistics(void) {
    json *o = json_new_object();
    json_set(o, "Operations", json_new_uint(handle_count(H_OPERATION)));
    json_set(o, "SystemHandles", json_new_uint(handle_count(H_SYSTEM)));
    json_set(o, "ProcessHandles", json_new_uint(handle_count(H_PROCESS)));
    json_set(o, "Systems", json_new_uint(svc_live_systems()));
    json_set(o, "Processes", json_new_uint(svc_live_processes()));
    json_set(o, "Documents", json_new_uint(emu_live_documents()));
    json_set(o, "WorkerThreads", json_new_uint(emu_live_threads()));
    json_set(o, "Disconnected", json_new_bool(emu_service_disconnected()));
    return o;
}

HRESULT svc_service_properties(const json *query, char **doc) {
    static const char *const basic[] = {"Basic"};
    const json *types = json_get(query, "PropertyTypes");
    if (query && (json_typeof(query) != JSON_OBJECT || (types && json_typeof(types) != JSON_ARRAY))) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "The service property query must be {\"PropertyTypes\": [...]}");
        return HCS_E_INVALID_JSON;
    }
    for (size_t i = 0; types && i < json_len(types); i++) {
        const char *t;
        char je[320];
        if (!json_want_elem_str(types, "PropertyTypes", i, &t, je, sizeof je)) {
            *doc = emu_error_doc(HCS_E_INVALID_JSON, "%s", je);
            return HCS_E_INVALID_JSON;
        }
    }
    size_t n = types ? json_len(types) : 1;
    json *props = json_new_array();
    HRESULT hr = S_OK;
    pthread_mutex_lock(&set_mu);
    for (size_t i = 0; i < n && !FAILED(hr); i++) {
        const char *t = types ? json_str(json_at(types, i)) : basic[0];
        if (t && emu_service_disconnected() && strncmp(t, "Emulator", 8) != 0) {
            hr = HCS_E_SERVICE_DISCONNECT;
            *doc = emu_error_doc(hr, "The connection with the compute service was lost");
        } else if (!t) {
            hr = HCS_E_INVALID_JSON;
            *doc = emu_error_doc(hr, "PropertyTypes must be an array of strings");
        } else if (strcmp(t, "Basic") == 0) {
            json *b = json_new_object();
            json *vers = json_new_array();
            json *v = json_new_object();
            json_set(v, "Major", json_new_uint(g_settings.schema_major));
            json_set(v, "Minor", json_new_uint(g_settings.schema_minor));
            json_append(vers, v);
            json_set(b, "SupportedSchemaVersions", vers);
            json_append(props, b);
        } else if (strcmp(t, "ProcessorTopology") == 0) {
            json_append(props, emu_host_processor_topology());
        } else if (strcmp(t, "CpuGroup") == 0) {
            json_append(props, cpu_groups_json());
        } else if (strcmp(t, "ContainerCredentialGuard") == 0) {
            json *o = json_new_object();
            json_set(o, "Instances", json_new_array()); /* no CCG on Linux: none running */
            json_append(props, o);
        } else if (strcmp(t, "QoSCapabilities") == 0) {
            json *o = json_new_object();
            json_set(o, "ProcessorQoSSupported", json_new_bool(access("/sys/fs/cgroup/cpu.max", F_OK) == 0));
            json_append(props, o);
        } else if (strcmp(t, "EmulatorSettings") == 0) {
            pthread_mutex_unlock(&set_mu);
            json *s = emu_settings_to_json();
            pthread_mutex_lock(&set_mu);
            json_append(props, s);
        } else if (strcmp(t, "EmulatorFaults") == 0) {
            pthread_mutex_unlock(&set_mu);
            json *s = emu_faults_to_json();
            pthread_mutex_lock(&set_mu);
            json_append(props, s);
        } else if (strcmp(t, "EmulatorCallCounts") == 0) {
            json_append(props, emu_call_counts_to_json());
        } else if (strcmp(t, "EmulatorStatistics") == 0) {
            json_append(props, emulator_statistics());
        } else if (strcmp(t, "EmulatorIsolation") == 0) {
            json_append(props, iso_host_report());
        } else if (strcmp(t, "EmulatorWerReports") == 0) {
            json_append(props, wer_reports ? json_clone(wer_reports) : json_new_array());
        } else {
            hr = HCS_E_INVALID_JSON;
            *doc = emu_error_doc(hr, "Unknown service property type '%s'", t);
        }
    }
    pthread_mutex_unlock(&set_mu);
    if (!FAILED(hr)) {
        json *out = json_new_object();
        json_set(out, "Properties", props);
        *doc = json_dump(out);
        json_free(out);
    } else {
        json_free(props);
    }
    return hr;
}

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (hex digits, any case), the form HCS's documents use. */
static bool is_guid(const char *s) {
    if (strlen(s) != 36) return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i])) return false;
    }
    return true;
}

static HRESULT modify_cpu_group(const json *settings, char **doc) {
    const char *op = NULL, *gid = NULL;
    const json *det = NULL, *lpa = NULL;
    char je[320];
    if (!json_want_str(settings, "CpuGroup", "Operation", &op, je, sizeof je) ||
        !json_want_obj(settings, "CpuGroup", "OperationDetails", &det, je, sizeof je) ||
        !json_want_str(settings, "CpuGroup", "OperationDetails.GroupId", &gid, je, sizeof je) ||
        !json_want_arr(settings, "CpuGroup", "OperationDetails.LogicalProcessors", &lpa, je, sizeof je)) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "%s", je);
        return HCS_E_INVALID_JSON;
    }
    if (!op || !gid) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "CpuGroup settings need Operation and OperationDetails.GroupId");
        return HCS_E_INVALID_JSON;
    }
    if (!is_guid(gid)) { /* a GUID-typed member: HCS's parser refuses anything else */
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "CpuGroup.OperationDetails.GroupId must be a GUID (got '%.60s')", gid);
        return HCS_E_INVALID_JSON;
    }
    size_t idx = n_groups;
    for (size_t i = 0; i < n_groups; i++)
        if (strcmp(groups[i].id, gid) == 0) idx = i;
    if (strcmp(op, "CreateGroup") == 0) {
        if (idx < n_groups) {
            *doc = emu_error_doc(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "CPU group %s already exists", gid);
            return HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS);
        }
        const json *lps = json_get(det, "LogicalProcessors");
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        for (size_t i = 0; i < json_len(lps); i++) {
            int64_t lp;
            if (!json_int64(json_at(lps, i), &lp) || lp < 0 || lp >= ncpu) {
                *doc = emu_error_doc(E_INVALIDARG, "Logical processor %zu of the group does not exist", i);
                return E_INVALIDARG;
            }
        }
        if (n_groups >= MAX_GROUPS || strlen(gid) >= sizeof groups[0].id) {
            *doc = emu_error_doc(E_INVALIDARG, "Too many CPU groups or group id too long");
            return E_INVALIDARG;
        }
        cpu_group *g = &groups[n_groups++];
        snprintf(g->id, sizeof g->id, "%s", gid);
        g->affinity = json_new_object();
        json_set(g->affinity, "LogicalProcessorCount", json_new_uint(json_len(lps)));
        json_set(g->affinity, "LogicalProcessors", lps ? json_clone(lps) : json_new_array());
        g->properties = json_new_array();
        return S_OK;
    }
    if (idx == n_groups) {
        *doc = emu_error_doc(HRESULT_FROM_WIN32(ERROR_NOT_FOUND), "CPU group %s does not exist", gid);
        return HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
    }
    if (strcmp(op, "DeleteGroup") == 0) {
        json_free(groups[idx].affinity);
        json_free(groups[idx].properties);
        groups[idx] = groups[--n_groups];
        return S_OK;
    }
    if (strcmp(op, "SetProperty") == 0) {
        int64_t code, value;
        if (!json_int64(json_get(det, "PropertyCode"), &code) || !json_int64(json_get(det, "PropertyValue"), &value)) {
            *doc = emu_error_doc(HCS_E_INVALID_JSON, "SetProperty needs PropertyCode and PropertyValue");
            return HCS_E_INVALID_JSON;
        }
        json *p = json_new_object();
        json_set(p, "PropertyCode", json_new_int(code));
        json_set(p, "PropertyValue", json_new_int(value));
        json_append(groups[idx].properties, p);
        return S_OK;
    }
    *doc = emu_error_doc(HCS_E_INVALID_JSON, "Unknown CpuGroup operation '%s'", op);
    return HCS_E_INVALID_JSON;
}

static HRESULT emulator_action(const json *settings, char **doc) {
    const char *action = NULL, *id = NULL;
    int64_t pid = 0;
    char je[320];
    if (!json_want_str(settings, "EmulatorActions", "Action", &action, je, sizeof je) ||
        !json_want_str(settings, "EmulatorActions", "SystemId", &id, je, sizeof je) ||
        !json_want_int64(settings, "EmulatorActions", "ProcessId", &pid, je, sizeof je)) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "%s", je);
        return HCS_E_INVALID_JSON;
    }
    if (!action) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "EmulatorActions needs an Action");
        return HCS_E_INVALID_JSON;
    }
    if (strcmp(action, "ServiceDisconnect") == 0) {
        emu_service_set_disconnected(true);
        svc_disconnect_all();
        ops_fail_all_pending(HCS_E_SERVICE_DISCONNECT);
        emu_sink_service_disconnect();
        return S_OK;
    }
    if (strcmp(action, "ResetCallCounts") == 0) {
        emu_call_counts_reset();
        return S_OK;
    }
    if (strcmp(action, "Reconnect") == 0 || strcmp(action, "Reset") == 0) {
        emu_service_set_disconnected(false);
        if (strcmp(action, "Reset") == 0) {
            emu_faults_reset();
            emu_settings_reset();
        }
        return S_OK;
    }
    if (!id) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "Action '%s' needs a SystemId", action);
        return HCS_E_INVALID_JSON;
    }
    HRESULT hr;
    if (strcmp(action, "UnexpectedExit") == 0) {
        hr = svc_inject_unexpected_exit(id);
    } else if (strcmp(action, "ProcessExit") == 0) {
        if (pid <= 0 || pid > INT32_MAX) {
            *doc = emu_error_doc(HCS_E_INVALID_JSON, "Action ProcessExit needs a positive ProcessId");
            return HCS_E_INVALID_JSON;
        }
        hr = svc_inject_process_exit(id, (uint32_t)pid, 0);
    } else {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "Unknown emulator action '%s'", action);
        return HCS_E_INVALID_JSON;
    }
    if (FAILED(hr)) *doc = emu_error_doc(hr, "Action '%s' on '%s' failed", action, id);
    return hr;
}

HRESULT svc_modify_service(const json *req, char **doc) {
    const char *type = NULL;
    const json *settings = json_get(req, "Settings");
    char je[320];
    if (!json_want_str(req, "ModificationRequest", "PropertyType", &type, je, sizeof je)) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "%s", je);
        return HCS_E_INVALID_JSON;
    }
    if (json_has_nul(req, je, sizeof je)) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "The modification request: %s contains U+0000 (NUL)", je);
        return HCS_E_INVALID_JSON;
    }
    if (!type) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "ModificationRequest needs a PropertyType");
        return HCS_E_INVALID_JSON;
    }
    char *err = NULL;
    HRESULT hr;
    if (emu_service_disconnected() && strncmp(type, "Emulator", 8) != 0) {
        *doc = emu_error_doc(HCS_E_SERVICE_DISCONNECT, "The connection with the compute service was lost");
        return HCS_E_SERVICE_DISCONNECT;
    }
    if (strcmp(type, "CpuGroup") == 0) {
        pthread_mutex_lock(&set_mu);
        hr = modify_cpu_group(settings, doc);
        pthread_mutex_unlock(&set_mu);
        return hr;
    }
    if (strcmp(type, "ContainerCredentialGuard") == 0) {
        *doc = emu_error_doc(HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED),
                             "Container Credential Guard does not exist on this host");
        return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    }
    if (strcmp(type, "Emulator") == 0) hr = emu_settings_apply(settings, &err);
    else if (strcmp(type, "EmulatorFaults") == 0) hr = emu_faults_apply(settings, &err);
    else if (strcmp(type, "EmulatorActions") == 0) return emulator_action(settings, doc);
    else {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "Unknown service property type '%s'", type);
        return HCS_E_INVALID_JSON;
    }
    if (FAILED(hr)) *doc = emu_error_doc(hr, "%s", err ? err : "invalid emulator request");
    free(err);
    return hr;
}

HRESULT svc_submit_wer(const json *report, char **doc) {
    if (emu_service_disconnected()) {
        *doc = emu_error_doc(HCS_E_SERVICE_DISCONNECT, "The connection with the compute service was lost");
        return HCS_E_SERVICE_DISCONNECT;
    }
    if (json_typeof(report) != JSON_OBJECT) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "A WER report must be a CrashReport object");
        return HCS_E_INVALID_JSON;
    }
    const json *sid = json_get(report, "SystemId");
    const json *params = json_get(report, "CrashParameters");
    if ((sid && json_typeof(sid) != JSON_STRING) || (params && json_typeof(params) != JSON_ARRAY) ||
        (!sid && !json_get(report, "WindowsCrashInfo"))) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "A CrashReport needs a SystemId (string) and array CrashParameters");
        return HCS_E_INVALID_JSON;
    }
    pthread_mutex_lock(&set_mu);
    if (!wer_reports) wer_reports = json_new_array();
    json_append(wer_reports, json_clone(report));
    pthread_mutex_unlock(&set_mu);
    return S_OK;
}
