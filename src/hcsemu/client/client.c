/*
 * The computecore.dll functions for compute systems, processes, events and the host service:
 * argument checks, handles and operations here; the work itself is done by the service half.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "transport.h"

/* The handle whose callback this thread is running, so a callback that closes its own handle
 * does not wait for itself (real HCS would deadlock there: see settings). */
static __thread chandle *tls_in_callback;

/* ------------------------------------------------------------------ handles by system
 *
 * An event goes to the handles of its system: an index by system (chained hash buckets under
 * by_sys_mu), so that delivering one costs the same with a thousand systems open as with ten
 * (a walk over the whole handle table did it before). A handle is indexed from the moment its
 * system is known until it is destroyed; the fan-out skips handles that were closed
 * (unregistered from the table), as the walk over live handles did. */
#define SYS_BUCKETS 1024
static pthread_mutex_t by_sys_mu = PTHREAD_MUTEX_INITIALIZER;
static chandle *by_sys[SYS_BUCKETS];

static size_t sys_bucket(const svc_system *s) {
    return (size_t)(((uint64_t)(uintptr_t)s * 0x9E3779B97F4A7C15ULL) >> 54); /* 10 bits */
}

static void index_add(chandle *h, svc_system *s) {
    pthread_mutex_lock(&by_sys_mu);
    if (!h->indexed) {
        chandle **bucket = &by_sys[sys_bucket(s)];
        h->indexed = s;
        h->by_sys_prev = NULL;
        h->by_sys_next = *bucket;
        if (*bucket) (*bucket)->by_sys_prev = h;
        *bucket = h;
    }
    pthread_mutex_unlock(&by_sys_mu);
}

static void index_remove(chandle *h) {
    pthread_mutex_lock(&by_sys_mu);
    if (h->indexed) {
        if (h->by_sys_prev) h->by_sys_prev->by_sys_next = h->by_sys_next;
        else by_sys[sys_bucket(h->indexed)] = h->by_sys_next;
        if (h->by_sys_next) h->by_sys_next->by_sys_prev = h->by_sys_prev;
        h->indexed = NULL;
    }
    pthread_mutex_unlock(&by_sys_mu);
}

/* A reference unless the object is already on its way to destruction (no references left). */
static bool try_ref(hobj *o) {
    int r = atomic_load(&o->refs);
    while (r > 0)
        if (atomic_compare_exchange_weak(&o->refs, &r, r + 1)) return true;
    return false;
}

/* Calls fn on every live handle of type t indexed under s, each with a reference held. */
static void foreach_of_system(svc_system *s, htype t, void (*fn)(hobj *o, void *arg), void *arg) {
    size_t n = 0, cap = 8;
    chandle *small[8], **objs = small;
    pthread_mutex_lock(&by_sys_mu);
    for (chandle *h = by_sys[sys_bucket(s)]; h; h = h->by_sys_next) {
        if (h->indexed != s || h->base.type != t || !try_ref(&h->base)) continue;
        if (n == cap) {
            chandle **more = malloc(2 * cap * sizeof *more);
            if (!more) {
                hobj_unref(&h->base); /* not the last reference: the table holds one */
                break;
            }
            memcpy(more, objs, n * sizeof *objs);
            if (objs != small) free(objs);
            objs = more;
            cap *= 2;
        }
        objs[n++] = h;
    }
    pthread_mutex_unlock(&by_sys_mu);
    for (size_t k = 0; k < n; k++) {
        if (handle_live(&objs[k]->base)) fn(&objs[k]->base, arg);
        hobj_unref(&objs[k]->base);
    }
    if (objs != small) free(objs);
}

static void chandle_destroy(hobj *b) {
    chandle *h = (chandle *)b;
    index_remove(h);
    if (h->sys) tp_unref(h->sys);
    free(h->early_doc);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

static chandle *chandle_new(htype t, svc_system *sys, uint32_t pid) {
    chandle *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    hobj_init(&h->base, t, chandle_destroy);
    pthread_mutex_init(&h->mu, NULL);
    emu_cond_init(&h->cv);
    h->sys = sys;
    if (sys) tp_ref(sys);
    h->pid = pid;
    if (sys) index_add(h, sys);
    return h;
}

static chandle *get_system(HCS_SYSTEM s) { return (chandle *)handle_get((uintptr_t)s, H_SYSTEM); }
static chandle *get_process(HCS_PROCESS p) { return (chandle *)handle_get((uintptr_t)p, H_PROCESS); }

/* The service object behind a handle, with a reference, or NULL (a create that never finished). */
static svc_system *handle_sys(chandle *h) {
    pthread_mutex_lock(&h->mu);
    svc_system *s = h->sys;
    if (s) tp_ref(s);
    pthread_mutex_unlock(&h->mu);
    return s;
}

/* One event to h's callback, once per exit (an exit kept for the first callback goes out
 * through early_job instead). */
void chandle_deliver(chandle *h, HCS_EVENT_TYPE type, const char *data, HCS_OPERATION op) {
    pthread_mutex_lock(&h->mu);
    if (type == HcsEventProcessExited || type == HcsEventSystemExited) {
        /* One exit per handle: the early check after a create (or a service process's event
         * arriving after it) may report the same exit twice. */
        if (h->exit_seen) {
            pthread_mutex_unlock(&h->mu);
            return;
        }
        h->exit_seen = true;
    }
    if (!h->closed && !h->cb && !h->cb_ever_set && !h->has_early && g_settings.deliver_early_events &&
        (type == HcsEventProcessExited || type == HcsEventSystemExited)) {
        /* no callback yet on a fresh handle: kept for the first one (DeliverEarlyEvents) */
        h->early_type = type;
        h->early_doc = data ? strdup(data) : NULL;
        h->has_early = true;
    }
    if (h->closed || !h->cb) {
        pthread_mutex_unlock(&h->mu);
        return;
    }
    HCS_EVENT_CALLBACK cb = h->cb;
    void *ctx = h->cb_ctx;
    h->inflight++;
    pthread_mutex_unlock(&h->mu);

    PWSTR w = data ? emu_doc(data) : NULL;
    HCS_EVENT ev = {type, w, op};
    chandle *outer = tls_in_callback;
    tls_in_callback = h;
    cb(&ev, ctx);
    tls_in_callback = outer;
    LocalFree(w); /* EventData belongs to HCS and is valid only during the callback */

    pthread_mutex_lock(&h->mu);
    h->inflight--;
    if (h->inflight == 0) pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Stops callbacks on h: after this returns no invocation is running or will start (except
 * the calling thread's own, when it is itself inside h's callback). */
static void chandle_quiesce(chandle *h, bool closing) {
    pthread_mutex_lock(&h->mu);
    if (closing) h->closed = true;
    h->cb = NULL;
    h->cb_ctx = NULL;
    int self = (tls_in_callback == h) ? 1 : 0;
    if (self && g_settings.close_waits_in_own_callback) self = 0; /* reproduce the deadlock */
    while (h->inflight > self) pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

typedef struct {
    HCS_EVENT_TYPE type;
    const char *data;
    svc_system *sys;
    uint32_t pid;
    bool any;
} fanout;

static void fan_one(hobj *o, void *arg) {
    fanout *f = arg;
    chandle *h = (chandle *)o;
    if (!f->any) {
        pthread_mutex_lock(&h->mu);
        bool match = h->sys == f->sys && (o->type == H_SYSTEM || h->pid == f->pid);
        pthread_mutex_unlock(&h->mu);
        if (!match) return;
    }
    chandle_deliver(h, f->type, f->data, NULL);
}

void emu_sink_system_event(svc_system *s, HCS_EVENT_TYPE type, const char *data) {
    fanout f = {type, data, s, 0, false};
    foreach_of_system(s, H_SYSTEM, fan_one, &f);
}

/* Exits that no process handle of this client knew by pid when they arrived. A handle made by
 * HcsCreateProcess learns its pid only once the service's call returns, and the exit of a
 * process that ends at once can reach this client first: it is kept here, briefly, for that
 * handle to claim (claim_unmatched_exit). pid_mu orders the two: an exit is either matched to
 * a handle whose pid was set before, or kept here before the pid is set and then claimed. */
#define UNMATCHED_MAX 256
#define UNMATCHED_TTL_NS (10ull * 1000000000ull)
static pthread_mutex_t pid_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const svc_system *sys;
    uint32_t pid;
    uint64_t at;
    char *doc;
} unmatched[UNMATCHED_MAX];
static size_t unmatched_next;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct {
    const svc_system *sys;
    uint32_t pid;
    bool matched;
} pid_probe;

static void match_pid(hobj *o, void *arg) {
    pid_probe *p = arg;
    chandle *h = (chandle *)o;
    pthread_mutex_lock(&h->mu);
    if (h->sys == p->sys && h->pid == p->pid) p->matched = true;
    pthread_mutex_unlock(&h->mu);
}

/* Under pid_mu. The oldest entry makes room: only the last moments matter. */
static void keep_unmatched_exit(const svc_system *s, uint32_t pid, const char *data) {
    size_t i = unmatched_next++ % UNMATCHED_MAX;
    free(unmatched[i].doc);
    unmatched[i].sys = s;
    unmatched[i].pid = pid;
    unmatched[i].at = now_ns();
    unmatched[i].doc = strdup(data ? data : "");
    if (!unmatched[i].doc) unmatched[i].sys = NULL;
}

/* Under pid_mu: the exit document of pid of s if one went by unmatched lately (taken), or NULL. */
static char *claim_unmatched_exit(const svc_system *s, uint32_t pid) {
    uint64_t now = now_ns();
    for (size_t i = 0; i < UNMATCHED_MAX; i++) {
        if (unmatched[i].sys != s || unmatched[i].pid != pid || !unmatched[i].doc) continue;
        char *doc = unmatched[i].doc;
        bool fresh = now - unmatched[i].at < UNMATCHED_TTL_NS; /* an older one is a reused pid's */
        unmatched[i].doc = NULL;
        unmatched[i].sys = NULL;
        if (fresh) return doc;
        free(doc);
    }
    return NULL;
}

void emu_sink_process_event(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data) {
    if (type == HcsEventProcessExited) {
        pid_probe probe = {s, pid, false};
        pthread_mutex_lock(&pid_mu);
        foreach_of_system(s, H_PROCESS, match_pid, &probe);
        if (!probe.matched) keep_unmatched_exit(s, pid, data);
        pthread_mutex_unlock(&pid_mu);
    }
    fanout f = {type, data, s, pid, false};
    foreach_of_system(s, H_PROCESS, fan_one, &f);
}

const svc_event_sink emu_client_sink = {emu_sink_system_event, emu_sink_process_event};

void emu_sink_service_disconnect(void) {
    fanout f = {HcsEventServiceDisconnect, NULL, NULL, 0, true};
    handle_foreach(H_SYSTEM, fan_one, &f);
    handle_foreach(H_PROCESS, fan_one, &f);
}

static void early_exit(chandle *h, char *doc);

/* ------------------------------------------------------------------ asynchronous calls */

typedef enum {
    K_CREATE, K_START, K_SHUTDOWN, K_TERMINATE, K_CRASH, K_PAUSE, K_RESUME, K_SAVE, K_PROPERTIES,
    K_MODIFY, K_ENUMERATE, K_CREATE_PROCESS, K_P_TERMINATE, K_P_SIGNAL, K_P_INFO, K_P_PROPERTIES,
    K_P_MODIFY
} call_kind;

typedef struct call_arg {
    call_kind kind;
    chandle *h;       /* the handle the call is on (or the new one, for creates) */
    svc_system *sys;  /* referenced */
    char *text;       /* id or raw document */
    char *text2;
    json *doc;        /* parsed options/query/request */
    HRESULT parse_hr; /* a bad document fails the operation, not the call */
    char *parse_err;
} call_arg;

static void call_free(void *p) {
    call_arg *a = p;
    if (a->h) hobj_unref(&a->h->base);
    if (a->sys) tp_unref(a->sys);
    free(a->text);
    free(a->text2);
    json_free(a->doc);
    free(a->parse_err);
    free(a);
}

static uint32_t handle_pid(chandle *h) {
    pthread_mutex_lock(&h->mu);
    uint32_t pid = h->pid;
    pthread_mutex_unlock(&h->mu);
    return pid;
}

static HRESULT call_work(void *p, char **doc, HCS_PROCESS_INFORMATION *pi, bool *has_pi) {
    call_arg *a = p;
    if (a->parse_hr) {
        *doc = a->parse_err;
        a->parse_err = NULL;
        return a->parse_hr;
    }
    if (a->kind == K_ENUMERATE) return tp_enumerate(a->doc, doc);
    if (a->kind == K_CREATE) {
        svc_system *s = NULL;
        HRESULT hr = tp_create(a->text, a->text2, &s, doc);
        if (FAILED(hr)) return hr;
        pthread_mutex_lock(&a->h->mu);
        bool closed = a->h->closed;
        if (!closed) a->h->sys = s; /* the handle takes this reference */
        pthread_mutex_unlock(&a->h->mu);
        if (!closed) index_add(a->h, s);
        tp_handle_opened(s);
        if (closed) { /* closed before the create finished: behave as a last-handle close */
            tp_handle_closed(s);
            tp_unref(s);
        }
        return hr;
    }
    if (!a->sys) {
        *doc = emu_error_doc(HCS_E_SYSTEM_NOT_FOUND, "The compute system behind this handle was never created");
        return HCS_E_SYSTEM_NOT_FOUND;
    }
    uint32_t pid = a->h ? handle_pid(a->h) : 0;
    switch (a->kind) {
    case K_START: return emu_tp()->sys_call(CALL_START, a->sys, a->doc, doc);
    case K_SHUTDOWN: return emu_tp()->sys_call(CALL_SHUTDOWN, a->sys, a->doc, doc);
    case K_TERMINATE: return emu_tp()->sys_call(CALL_TERMINATE, a->sys, a->doc, doc);
    case K_CRASH: return emu_tp()->sys_call(CALL_CRASH, a->sys, a->doc, doc);
    case K_PAUSE: return emu_tp()->sys_call(CALL_PAUSE, a->sys, a->doc, doc);
    case K_RESUME: return emu_tp()->sys_call(CALL_RESUME, a->sys, a->doc, doc);
    case K_SAVE: return emu_tp()->sys_call(CALL_SAVE, a->sys, a->doc, doc);
    case K_PROPERTIES: return emu_tp()->sys_call(CALL_PROPERTIES, a->sys, a->doc, doc);
    case K_MODIFY: return emu_tp()->sys_call(CALL_MODIFY, a->sys, a->doc, doc);
    case K_CREATE_PROCESS: {
        svc_stdio io = {-1, -1, -1};
        uint32_t newpid = 0;
        HRESULT hr = tp_create_process(a->sys, a->text, &newpid, &io, doc);
        if (FAILED(hr)) return hr;
        pthread_mutex_lock(&pid_mu);
        pthread_mutex_lock(&a->h->mu);
        bool closed = a->h->closed;
        if (!closed) a->h->pid = newpid;
        pthread_mutex_unlock(&a->h->mu);
        /* an exit that reached this client before the handle had its pid went by unmatched */
        char *missed = closed ? NULL : claim_unmatched_exit(a->sys, newpid);
        pthread_mutex_unlock(&pid_mu);
        if (!closed && g_settings.deliver_early_events) {
            /* keep it for the first callback, as chandle_deliver does for a later one; the
             * service is asked too (an exit it had not sent yet when the pid was set comes
             * through the fan-out; one sent to nobody before is answered by the wait) */
            char *st = missed;
            if (!st && tp_process_wait(a->sys, newpid, 0, NULL, &st) != S_OK) {
                free(st);
                st = NULL;
            }
            if (st) early_exit(a->h, st);
        } else {
            free(missed);
        }
        /* The record already counts the creating handle; if that handle was closed before the
         * process existed, HcsCloseProcess could not release it, so release it here. */
        if (closed) tp_process_handle(a->sys, newpid, -1);
        if (g_settings.create_process_sync_quirk) {
            /* WS2022 quirk: the process exists, but the wait reports a spurious failure and
             * the pipe handles are lost; the caller recovers them with HcsGetProcessInfo. */
            if (io.in >= 0) close(io.in);
            if (io.out >= 0) close(io.out);
            if (io.err >= 0) close(io.err);
            free(*doc);
            *doc = emu_error_doc(E_INVALIDARG, "The parameter is incorrect.");
            return E_INVALIDARG;
        }
        pi->ProcessId = newpid;
        pi->StdInput = io.in >= 0 ? (HANDLE)(intptr_t)io.in : NULL;
        pi->StdOutput = io.out >= 0 ? (HANDLE)(intptr_t)io.out : NULL;
        pi->StdError = io.err >= 0 ? (HANDLE)(intptr_t)io.err : NULL;
        *has_pi = true;
        return hr;
    }
    case K_P_INFO: {
        svc_stdio io = {-1, -1, -1};
        HRESULT hr = tp_process_info(a->sys, pid, &io, doc);
        if (FAILED(hr)) return hr;
        pi->ProcessId = pid;
        pi->StdInput = io.in >= 0 ? (HANDLE)(intptr_t)io.in : NULL;
        pi->StdOutput = io.out >= 0 ? (HANDLE)(intptr_t)io.out : NULL;
        pi->StdError = io.err >= 0 ? (HANDLE)(intptr_t)io.err : NULL;
        *has_pi = true;
        return hr;
    }
    case K_P_TERMINATE: return emu_tp()->process_call(CALL_PROCESS_TERMINATE, a->sys, pid, NULL, doc);
    case K_P_SIGNAL: return emu_tp()->process_call(CALL_PROCESS_SIGNAL, a->sys, pid, a->doc, doc);
    case K_P_PROPERTIES: return emu_tp()->process_call(CALL_PROCESS_PROPERTIES, a->sys, pid, a->doc, doc);
    case K_P_MODIFY: return emu_tp()->process_call(CALL_PROCESS_MODIFY, a->sys, pid, a->doc, doc);
    default: return E_UNEXPECTED;
    }
}

/* Builds the call argument; the document, if any, is parsed now and a parse failure is
 * reported through the operation (with a ResultError naming the problem). */
static call_arg *call_new(call_kind k, chandle *h, PCWSTR document, bool required) {
    call_arg *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->kind = k;
    if (h) {
        hobj_ref(&h->base);
        a->h = h;
        a->sys = handle_sys(h);
    }
    if (document || required) {
        if (required && emu_is_empty(document)) {
            a->parse_hr = HCS_E_INVALID_JSON;
            a->parse_err = emu_error_doc(HCS_E_INVALID_JSON, "A JSON document is required");
        } else {
            a->parse_hr = emu_parse_optional(document, &a->doc, &a->parse_err);
        }
    }
    return a;
}

static HRESULT launch(HCS_OPERATION op, HCS_OPERATION_TYPE type, emu_fn fn, const fault_action *fa,
                      chandle *target, uintptr_t sysv, uintptr_t procv, call_arg *a, bool blocking) {
    if (!a) return E_OUTOFMEMORY;
    op_call c = {type, fn, sysv, procv, target, call_work, a, call_free, blocking, *fa};
    return op_launch(op, &c);
}

/* System calls that take (system, operation, options). */
static HRESULT system_call(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR doc, call_kind k,
                           HCS_OPERATION_TYPE t, emu_fn fn, bool required, bool blocking) {
    fault_action fa;
    emu_fault_check(fn, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    chandle *h = get_system(s);
    if (!h) return E_HANDLE;
    call_arg *a = call_new(k, h, doc, required);
    HRESULT hr = launch(op, t, fn, &fa, h, (uintptr_t)s, 0, a, blocking);
    hobj_unref(&h->base);
    return hr;
}

static HRESULT process_call(HCS_PROCESS p, HCS_OPERATION op, PCWSTR doc, call_kind k,
                            HCS_OPERATION_TYPE t, emu_fn fn, bool has_doc, bool required) {
    fault_action fa;
    emu_fault_check(fn, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    chandle *h = get_process(p);
    if (!h) return E_HANDLE;
    call_arg *a = call_new(k, h, has_doc ? doc : NULL, required);
    HRESULT hr = launch(op, t, fn, &fa, h, 0, (uintptr_t)p, a, false);
    hobj_unref(&h->base);
    return hr;
}

/* ------------------------------------------------------------------ compute systems */

EMU_EXPORT HRESULT HcsEnumerateComputeSystems(PCWSTR query, HCS_OPERATION operation) {
    fault_action fa;
    emu_fault_check(FN_HcsEnumerateComputeSystems, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    return launch(operation, HcsOperationTypeEnumerate, FN_HcsEnumerateComputeSystems, &fa, NULL, 0, 0,
                  call_new(K_ENUMERATE, NULL, query, false), false);
}

EMU_EXPORT HRESULT HcsCreateComputeSystem(PCWSTR id, PCWSTR configuration, HCS_OPERATION operation,
                                          const SECURITY_DESCRIPTOR *securityDescriptor,
                                          HCS_SYSTEM *computeSystem) {
    fault_action fa;
    emu_fault_check(FN_HcsCreateComputeSystem, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    if (!computeSystem) return E_POINTER;
    *computeSystem = NULL;
    if (emu_is_empty(id) || !configuration || securityDescriptor) return E_INVALIDARG;
    bool ok;
    char *id8 = emu_utf8(id, &ok);
    if (!ok) {
        free(id8);
        return E_INVALIDARG;
    }
    chandle *h = chandle_new(H_SYSTEM, NULL, 0);
    call_arg *a = h ? call_new(K_CREATE, NULL, NULL, false) : NULL;
    if (!a) {
        free(id8);
        if (h) hobj_unref(&h->base);
        return E_OUTOFMEMORY;
    }
    uintptr_t v = handle_register(&h->base);
    if (!v) {
        free(id8);
        call_free(a);
        hobj_unref(&h->base);
        return E_OUTOFMEMORY;
    }
    hobj_ref(&h->base);
    a->h = h;
    a->text = id8;
    a->text2 = emu_utf8(configuration, &ok);
    if (!ok) {
        a->parse_hr = HCS_E_INVALID_JSON;
        a->parse_err = emu_error_doc(HCS_E_INVALID_JSON, "The configuration is not valid UTF-16");
    }
    pthread_mutex_lock(&h->mu);
    h->late_op = (uintptr_t)operation;
    pthread_mutex_unlock(&h->mu);
    /* no target yet (the handle is new), but a callback set before the completion is read
     * still gets it, as on Windows where the create is still in flight then */
    op_call c = {HcsOperationTypeCreate, FN_HcsCreateComputeSystem, v, 0, NULL, call_work, a, call_free, false, fa, h};
    HRESULT hr = op_launch(operation, &c);
    if (FAILED(hr) && hr != emu_public_hr(HCS_E_OPERATION_PENDING)) {
        hobj *o = handle_unregister(v, H_SYSTEM);
        if (o) hobj_unref(o);
        hobj_unref(&h->base);
        return hr;
    }
    *computeSystem = (HCS_SYSTEM)v;
    hobj_unref(&h->base);
    return hr;
}

EMU_EXPORT HRESULT HcsOpenComputeSystem(PCWSTR id, DWORD requestedAccess, HCS_SYSTEM *computeSystem) {
    if (computeSystem) *computeSystem = NULL;
    HRESULT fhr = emu_fault_sync(FN_HcsOpenComputeSystem);
    if (fhr) return emu_public_hr(fhr);
    if (!computeSystem) return E_POINTER;
    if (emu_is_empty(id) || requestedAccess != GENERIC_ALL) return E_INVALIDARG;
    if (emu_service_disconnected()) return emu_public_hr(HCS_E_SERVICE_DISCONNECT);
    bool ok;
    char *id8 = emu_utf8(id, &ok);
    if (!id8) return E_OUTOFMEMORY;
    if (!ok) { /* a lone surrogate would become U+FFFD and name another system */
        free(id8);
        return E_INVALIDARG;
    }
    svc_system *s = NULL;
    HRESULT hr = tp_open(id8, &s);
    free(id8);
    if (FAILED(hr)) return emu_public_hr(hr);
    chandle *h = chandle_new(H_SYSTEM, s, 0);
    tp_unref(s);
    if (!h) return E_OUTOFMEMORY;
    uintptr_t v = handle_register(&h->base);
    if (v) tp_handle_opened(s);
    hobj_unref(&h->base);
    if (!v) return E_OUTOFMEMORY;
    *computeSystem = (HCS_SYSTEM)v;
    return S_OK;
}

EMU_EXPORT void HcsCloseComputeSystem(HCS_SYSTEM computeSystem) {
    fault_action fa;
    emu_fault_check(FN_HcsCloseComputeSystem, &fa);
    chandle *h = (chandle *)handle_unregister((uintptr_t)computeSystem, H_SYSTEM);
    if (!h) return;
    atomic_store_explicit(&h->abandon_waits, true, memory_order_release);
    tp_wake_waiters();
    chandle_quiesce(h, true);
    svc_system *s = handle_sys(h);
    if (s) {
        tp_handle_closed(s); /* may terminate the system (ShouldTerminateOnLastHandleClosed) */
        tp_unref(s);
    }
    hobj_unref(&h->base);
}

EMU_EXPORT HRESULT HcsStartComputeSystem(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR options) {
    return system_call(s, op, options, K_START, HcsOperationTypeStart, FN_HcsStartComputeSystem, false, false);
}
EMU_EXPORT HRESULT HcsShutDownComputeSystem(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR options) {
    return system_call(s, op, options, K_SHUTDOWN, HcsOperationTypeShutdown, FN_HcsShutDownComputeSystem, false, true);
}
EMU_EXPORT HRESULT HcsTerminateComputeSystem(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR options) {
    return system_call(s, op, options, K_TERMINATE, HcsOperationTypeTerminate, FN_HcsTerminateComputeSystem, false, true);
}
EMU_EXPORT HRESULT HcsCrashComputeSystem(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR options) {
    return system_call(s, op, options, K_CRASH, HcsOperationTypeCrash, FN_HcsCrashComputeSystem, false, true);
}
EMU_EXPORT HRESULT HcsPauseComputeSystem(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR options) {
    return system_call(s, op, options, K_PAUSE, HcsOperationTypePause, FN_HcsPauseComputeSystem, false, false);
}
EMU_EXPORT HRESULT HcsResumeComputeSystem(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR options) {
    return system_call(s, op, options, K_RESUME, HcsOperationTypeResume, FN_HcsResumeComputeSystem, false, false);
}
EMU_EXPORT HRESULT HcsSaveComputeSystem(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR options) {
    return system_call(s, op, options, K_SAVE, HcsOperationTypeSave, FN_HcsSaveComputeSystem, false, false);
}
EMU_EXPORT HRESULT HcsGetComputeSystemProperties(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR propertyQuery) {
    return system_call(s, op, propertyQuery, K_PROPERTIES, HcsOperationTypeGetProperties,
                       FN_HcsGetComputeSystemProperties, false, false);
}
EMU_EXPORT HRESULT HcsModifyComputeSystem(HCS_SYSTEM s, HCS_OPERATION op, PCWSTR configuration, HANDLE identity) {
    (void)identity; /* a user token on Windows; nothing to impersonate here */
    if (!configuration) return E_INVALIDARG;
    return system_call(s, op, configuration, K_MODIFY, HcsOperationTypeModify, FN_HcsModifyComputeSystem, true, false);
}

EMU_EXPORT HRESULT HcsWaitForComputeSystemExit(HCS_SYSTEM computeSystem, DWORD timeoutMs, PWSTR *result) {
    if (result) *result = NULL;
    HRESULT fhr = emu_fault_sync(FN_HcsWaitForComputeSystemExit);
    if (fhr) return emu_public_hr(fhr);
    chandle *h = get_system(computeSystem);
    if (!h) return E_HANDLE;
    svc_system *s = handle_sys(h);
    if (!s) {
        hobj_unref(&h->base);
        return emu_public_hr(HCS_E_SYSTEM_NOT_FOUND);
    }
    char *doc = NULL;
    /* h stays referenced during the wait: closing it (another thread) wakes this wait */
    HRESULT hr = tp_wait_exit(s, timeoutMs, &h->abandon_waits, &doc);
    hobj_unref(&h->base);
    tp_unref(s);
    if (result && doc) *result = emu_doc(doc);
    free(doc);
    return emu_public_hr(hr);
}

/* An exit that reached a fresh handle before its first callback (DeliverEarlyEvents). It counts
 * as a callback in flight from the moment that callback is set, and goes to that callback: so
 * clearing the callback or closing the handle (which wait for callbacks in flight) never
 * overtakes it, and a caller that saw the exit through a wait, then cleared its callback,
 * still gets the event. */
typedef struct early_event {
    chandle *h;
    HCS_EVENT_TYPE type;
    char *doc;
    HCS_EVENT_CALLBACK cb;
    void *ctx;
} early_event;

static void early_job(void *arg) {
    early_event *ev = arg;
    chandle *h = ev->h;
    PWSTR w = ev->doc ? emu_doc(ev->doc) : NULL;
    HCS_EVENT e = {ev->type, w, NULL};
    chandle *outer = tls_in_callback;
    tls_in_callback = h;
    ev->cb(&e, ev->ctx);
    tls_in_callback = outer;
    LocalFree(w);
    pthread_mutex_lock(&h->mu);
    h->inflight--; /* reserved by set_callback */
    if (h->inflight == 0) pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    hobj_unref(&h->base);
    free(ev->doc);
    free(ev);
}

/* The exit of a process that ended before its handle knew its pid (the service's event went by
 * unmatched): kept for the first callback if none was set yet, else delivered to the callback
 * set now (takes doc). */
static void early_exit(chandle *h, char *doc) {
    early_event *ev = NULL;
    pthread_mutex_lock(&h->mu);
    if (!h->closed && !h->exit_seen) {
        h->exit_seen = true;
        if (!h->cb_ever_set && !h->has_early) {
            h->early_type = HcsEventProcessExited;
            h->early_doc = doc;
            h->has_early = true;
            doc = NULL;
        } else if (h->cb && (ev = malloc(sizeof *ev)) != NULL) {
            *ev = (early_event){h, HcsEventProcessExited, doc, h->cb, h->cb_ctx};
            doc = NULL;
            h->inflight++;
            hobj_ref(&h->base);
        }
    }
    pthread_mutex_unlock(&h->mu);
    free(doc);
    if (ev && !emu_submit(early_job, ev)) early_job(ev);
}

static HRESULT set_callback(chandle *h, HCS_EVENT_OPTIONS opts, const void *ctx, HCS_EVENT_CALLBACK cb) {
    if ((uint32_t)opts & ~(uint32_t)HcsEventOptionEnableOperationCallbacks) return E_INVALIDARG;
    if (!cb) {
        /* [INFER] a NULL callback unregisters, draining running invocations first */
        chandle_quiesce(h, false);
        return S_OK;
    }
    pthread_mutex_lock(&h->mu);
    HRESULT hr = S_OK;
    bool first = false, replay = false;
    uintptr_t late_op = 0;
    if (h->cb) {
        hr = HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET;
    } else {
        h->cb = cb;
        h->cb_ctx = (void *)ctx;
        h->cb_opts = opts;
        first = !h->cb_ever_set;
        h->cb_ever_set = true;
        replay = first && h->has_early;
        if (first && (opts & HcsEventOptionEnableOperationCallbacks)) late_op = h->late_op;
        h->late_op = 0;
    }
    early_event *ev = NULL;
    if (replay && (ev = malloc(sizeof *ev)) != NULL) {
        ev->h = h;
        ev->type = h->early_type;
        ev->doc = h->early_doc;
        ev->cb = cb;
        ev->ctx = (void *)ctx;
        h->early_doc = NULL;
        h->has_early = false;
        h->inflight++;
        hobj_ref(&h->base);
    }
    pthread_mutex_unlock(&h->mu);
    /* both on a library thread, as every event is, after this call returns or concurrently */
    if (ev && !emu_submit(early_job, ev)) early_job(ev);
    if (late_op) op_route_late(h, late_op);
    return emu_public_hr(hr);
}

EMU_EXPORT HRESULT HcsSetComputeSystemCallback(HCS_SYSTEM computeSystem, HCS_EVENT_OPTIONS callbackOptions,
                                               const void *context, HCS_EVENT_CALLBACK callback) {
    HRESULT fhr = emu_fault_sync(FN_HcsSetComputeSystemCallback);
    if (fhr) return emu_public_hr(fhr);
    chandle *h = get_system(computeSystem);
    if (!h) return E_HANDLE;
    HRESULT hr = set_callback(h, callbackOptions, context, callback);
    hobj_unref(&h->base);
    return hr;
}

/* ------------------------------------------------------------------ processes */

EMU_EXPORT HRESULT HcsCreateProcess(HCS_SYSTEM computeSystem, PCWSTR processParameters, HCS_OPERATION operation,
                                    const SECURITY_DESCRIPTOR *securityDescriptor, HCS_PROCESS *process) {
    fault_action fa;
    emu_fault_check(FN_HcsCreateProcess, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    if (!process) return E_POINTER;
    *process = NULL;
    if (!processParameters || securityDescriptor) return E_INVALIDARG;
    chandle *sh = get_system(computeSystem);
    if (!sh) return E_HANDLE;
    svc_system *s = handle_sys(sh);
    chandle *ph = chandle_new(H_PROCESS, s, 0);
    if (s) tp_unref(s);
    if (!ph) {
        hobj_unref(&sh->base);
        return E_OUTOFMEMORY;
    }
    uintptr_t v = handle_register(&ph->base);
    call_arg *a = v ? call_new(K_CREATE_PROCESS, ph, NULL, false) : NULL;
    if (!a) {
        if (v) hobj_unref(handle_unregister(v, H_PROCESS));
        hobj_unref(&ph->base);
        hobj_unref(&sh->base);
        return E_OUTOFMEMORY;
    }
    bool ok;
    a->text = emu_utf8(processParameters, &ok);
    if (!ok) {
        a->parse_hr = HCS_E_INVALID_JSON;
        a->parse_err = emu_error_doc(HCS_E_INVALID_JSON, "The process parameters are not valid UTF-16");
    }
    /* Routed through the system handle: that is where operation callbacks are enabled. */
    HRESULT hr = launch(operation, HcsOperationTypeCreateProcess, FN_HcsCreateProcess, &fa, sh, (uintptr_t)computeSystem, v, a, false);
    hobj_unref(&sh->base);
    if (FAILED(hr) && hr != emu_public_hr(HCS_E_OPERATION_PENDING)) {
        hobj *o = handle_unregister(v, H_PROCESS);
        if (o) hobj_unref(o);
        hobj_unref(&ph->base);
        return hr;
    }
    *process = (HCS_PROCESS)v;
    hobj_unref(&ph->base);
    return hr;
}

EMU_EXPORT HRESULT HcsOpenProcess(HCS_SYSTEM computeSystem, DWORD processId, DWORD requestedAccess,
                                  HCS_PROCESS *process) {
    if (process) *process = NULL;
    HRESULT fhr = emu_fault_sync(FN_HcsOpenProcess);
    if (fhr) return emu_public_hr(fhr);
    if (!process) return E_POINTER;
    if (requestedAccess != GENERIC_ALL) return E_INVALIDARG;
    chandle *sh = get_system(computeSystem);
    if (!sh) return E_HANDLE;
    svc_system *s = handle_sys(sh);
    hobj_unref(&sh->base);
    if (!s) return emu_public_hr(HCS_E_SYSTEM_NOT_FOUND);
    HRESULT hr = tp_process_open(s, processId);
    if (FAILED(hr)) {
        tp_unref(s);
        return emu_public_hr(hr);
    }
    chandle *ph = chandle_new(H_PROCESS, s, processId);
    uintptr_t v = ph ? handle_register(&ph->base) : 0;
    if (v) tp_process_handle(s, processId, +1);
    tp_unref(s);
    if (ph) hobj_unref(&ph->base);
    if (!v) return E_OUTOFMEMORY;
    *process = (HCS_PROCESS)v;
    return S_OK;
}

EMU_EXPORT void HcsCloseProcess(HCS_PROCESS process) {
    fault_action fa;
    emu_fault_check(FN_HcsCloseProcess, &fa);
    chandle *h = (chandle *)handle_unregister((uintptr_t)process, H_PROCESS);
    if (!h) return;
    atomic_store_explicit(&h->abandon_waits, true, memory_order_release);
    tp_wake_waiters();
    chandle_quiesce(h, true);
    svc_system *s = handle_sys(h);
    /* Take the pid so that exactly one of close and a still-running create releases it. */
    pthread_mutex_lock(&h->mu);
    uint32_t pid = h->pid;
    h->pid = 0;
    pthread_mutex_unlock(&h->mu);
    if (s && pid) tp_process_handle(s, pid, -1);
    if (s) tp_unref(s);
    hobj_unref(&h->base);
}

EMU_EXPORT HRESULT HcsTerminateProcess(HCS_PROCESS p, HCS_OPERATION op, PCWSTR options) {
    /* [INFER] TerminateProcess has no operation type of its own: it reports SignalProcess. */
    return process_call(p, op, options, K_P_TERMINATE, HcsOperationTypeSignalProcess, FN_HcsTerminateProcess, false, false);
}
EMU_EXPORT HRESULT HcsSignalProcess(HCS_PROCESS p, HCS_OPERATION op, PCWSTR options) {
    return process_call(p, op, options, K_P_SIGNAL, HcsOperationTypeSignalProcess, FN_HcsSignalProcess, true, false);
}
EMU_EXPORT HRESULT HcsGetProcessInfo(HCS_PROCESS p, HCS_OPERATION op) {
    return process_call(p, op, NULL, K_P_INFO, HcsOperationTypeGetProcessInfo, FN_HcsGetProcessInfo, false, false);
}
EMU_EXPORT HRESULT HcsGetProcessProperties(HCS_PROCESS p, HCS_OPERATION op, PCWSTR propertyQuery) {
    return process_call(p, op, propertyQuery, K_P_PROPERTIES, HcsOperationTypeGetProcessProperties,
                        FN_HcsGetProcessProperties, true, false);
}
EMU_EXPORT HRESULT HcsModifyProcess(HCS_PROCESS p, HCS_OPERATION op, PCWSTR settings) {
    if (!settings) return E_INVALIDARG;
    return process_call(p, op, settings, K_P_MODIFY, HcsOperationTypeModifyProcess, FN_HcsModifyProcess, true, true);
}

EMU_EXPORT HRESULT HcsSetProcessCallback(HCS_PROCESS process, HCS_EVENT_OPTIONS callbackOptions, void *context,
                                         HCS_EVENT_CALLBACK callback) {
    HRESULT fhr = emu_fault_sync(FN_HcsSetProcessCallback);
    if (fhr) return emu_public_hr(fhr);
    chandle *h = get_process(process);
    if (!h) return E_HANDLE;
    HRESULT hr = set_callback(h, callbackOptions, context, callback);
    hobj_unref(&h->base);
    return hr;
}

EMU_EXPORT HRESULT HcsWaitForProcessExit(HCS_PROCESS process, DWORD timeoutMs, PWSTR *result) {
    if (result) *result = NULL;
    HRESULT fhr = emu_fault_sync(FN_HcsWaitForProcessExit);
    if (fhr) return emu_public_hr(fhr);
    chandle *h = get_process(process);
    if (!h) return E_HANDLE;
    svc_system *s = handle_sys(h);
    uint32_t pid = handle_pid(h);
    if (!s || !pid) {
        hobj_unref(&h->base);
        if (s) tp_unref(s);
        return emu_public_hr(!s ? HCS_E_SYSTEM_NOT_FOUND : HCS_E_PROCESS_INFO_NOT_AVAILABLE);
    }
    char *doc = NULL;
    /* h stays referenced during the wait: closing it (another thread) wakes this wait */
    HRESULT hr = tp_process_wait(s, pid, timeoutMs, &h->abandon_waits, &doc);
    hobj_unref(&h->base);
    tp_unref(s);
    if (result && doc) *result = emu_doc(doc);
    free(doc);
    return emu_public_hr(hr);
}

/* ------------------------------------------------------------------ host service */

/* A request for the emulator's own controls (PropertyType/PropertyTypes "Emulator..."): these
 * are neither counted nor subject to faults, so a test can always inspect and reset the
 * emulator (even under a "*" fault) and its call budgets do not see its own bookkeeping. */
static bool emulator_request(emu_fn fn, const json *doc) {
    if (fn == FN_HcsModifyServiceSettings) {
        const char *t = json_str(json_get(doc, "PropertyType"));
        return t && strncmp(t, "Emulator", 8) == 0;
    }
    if (fn != FN_HcsGetServiceProperties) return false;
    const json *types = json_get(doc, "PropertyTypes");
    if (json_typeof(types) != JSON_ARRAY || json_len(types) == 0) return false;
    for (size_t i = 0; i < json_len(types); i++) {
        const char *t = json_str(json_at(types, i));
        if (!t || strncmp(t, "Emulator", 8) != 0) return false;
    }
    return true;
}

static HRESULT sync_doc_call(emu_fn fn, PCWSTR in, bool in_required, PWSTR *out, bool out_required,
                             HRESULT (*body)(const json *, char **)) {
    if (out) *out = NULL;
    json *doc = NULL;
    char *text = NULL;
    HRESULT hr = emu_parse_optional(in, &doc, &text);
    HRESULT early = emulator_request(fn, doc) ? S_OK : emu_fault_sync(fn);
    if (!early && out_required && !out) early = E_POINTER;
    if (!early && in_required && emu_is_empty(in)) early = E_INVALIDARG;
    if (early) {
        json_free(doc);
        free(text);
        return emu_public_hr(early);
    }
    /* A disconnected service is reported by the body: the emulator's own controls still work. */
    if (!FAILED(hr)) hr = body(doc, &text);
    json_free(doc);
    if (out && text) *out = emu_doc(text);
    free(text);
    return emu_public_hr(hr);
}

EMU_EXPORT HRESULT HcsGetServiceProperties(PCWSTR propertyQuery, PWSTR *result) {
    return sync_doc_call(FN_HcsGetServiceProperties, propertyQuery, false, result, true, tp_service_properties_fn);
}
EMU_EXPORT HRESULT HcsModifyServiceSettings(PCWSTR settings, PWSTR *result) {
    return sync_doc_call(FN_HcsModifyServiceSettings, settings, true, result, false, tp_modify_service_fn);
}
EMU_EXPORT HRESULT HcsSubmitWerReport(PCWSTR settings) {
    return sync_doc_call(FN_HcsSubmitWerReport, settings, true, NULL, false, tp_submit_wer_fn);
}
