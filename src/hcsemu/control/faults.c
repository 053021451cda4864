/*
 * Fault injection and call accounting: the EmulatorFaults member of HcsModifyServiceSettings
 * and HCSEMU_FAULTS. emu_fault_check decides the fault of a call; emu_fault_sync carries it
 * out for calls without an operation. One helper for every function, so a Reset releases
 * every Hang, whichever half the call is in.
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

const char *const emu_fn_names[FN__COUNT] = {
#define EMU_FN_NAME(ret, name, params) #name,
    HCS_COMPUTECORE_FUNCTIONS(EMU_FN_NAME) HCS_COMPUTESTORAGE_FUNCTIONS(EMU_FN_NAME)
#undef EMU_FN_NAME
};

static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER; /* the faults and the env error */
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

void emu_env_error_set(const char *var, const char *detail) {
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
    if (json_typeof(spec) == JSON_OBJECT) {
        char je[320];
        if (!json_want_bool(spec, NULL, "Reset", &reset, je, sizeof je)) {
            *err = strdup(je);
            return HCS_E_INVALID_JSON;
        }
    }
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
        if (hr && !emu_parse_hr(hr, &x.hr)) {
            *err = emu_printf("Fault %zu: HResult must be a number or a hex string", i);
            return HCS_E_INVALID_JSON;
        }
        /* A success code other than S_OK (S_FALSE...) is allowed: the call returns it, or the
         * operation completes with it, without doing the work; callers must not take it for a
         * failure. */
        /* counts and delays are 32-bit: out of range is an error, never a wrapped value */
        static const char *const u32_members[] = {"OnCall", "Count", "DelayMs"};
        uint32_t *const u32_fields[] = {&x.on_call, &x.count, &x.delay_ms};
        for (int k = 0; k < 3; k++) {
            if (!json_int64(json_get(f, u32_members[k]), &v)) continue;
            if (v < 0 || v > (int64_t)UINT32_MAX) {
                *err = emu_printf("%s.%s must be in 0..4294967295 (got %lld)", ctx, u32_members[k], (long long)v);
                return HCS_E_INVALID_JSON;
            }
            *u32_fields[k] = (uint32_t)v;
        }
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

/* HCSEMU_FAULTS is applied on first use of the service, after the once-function finished. */
static pthread_once_t env_faults_once = PTHREAD_ONCE_INIT;
static void load_env_faults(void) {
    const char *f = getenv("HCSEMU_FAULTS");
    if (!f || !*f) return;
    char msg[256];
    json *v = json_parse(f, strlen(f), msg, sizeof msg);
    char *err = NULL;
    applying_env = true;
    if (!v) emu_env_error_set("HCSEMU_FAULTS", msg);
    else if (FAILED(emu_faults_apply(v, &err))) emu_env_error_set("HCSEMU_FAULTS", err ? err : "invalid");
    applying_env = false;
    free(err);
    json_free(v);
}

/* Settings first: the faults of HCSEMU_FAULTS are checked against them. */
__attribute__((constructor)) static void hcsemu_init(void) {
    emu_settings_init();
    pthread_once(&env_faults_once, load_env_faults);
}

