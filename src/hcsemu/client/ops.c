/*
 * Operations (HCS_OPERATION); the worker pool they run on is common/workers.c.
 *
 * An operation is NOT_STARTED until a call accepts it, PENDING while the call runs and
 * COMPLETED afterwards; it may be reused once completed. A call whose operation has no
 * completion callback, no event routing, no injected delay and no long-running body is
 * executed on the caller's thread and completes before the initiating call returns: the
 * waiter then finds the result at once, with no thread handoff. Everything with a callback
 * runs on a worker thread, because HCS invokes callbacks on its own threads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

enum { OP_NOT_STARTED, OP_PENDING, OP_COMPLETED };

typedef struct op {
    hobj base;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state;
    HCS_OPERATION_TYPE type;
    uint64_t id;
    uint64_t use; /* bumped on each (re)use: a late completion of an old use is dropped */
    const void *ctx;
    HCS_OPERATION_COMPLETION cb;
    HRESULT hr;
    char *doc;
    HCS_PROCESS_INFORMATION pi;
    bool has_pi, pi_taken, cancelled, closed;
    uintptr_t system, process;
    chandle *route;
    chandle *late;   /* a create's new handle: its operation callback, if set before this
                        operation's result is collected, gets the completion (op_route_late) */
    bool collected;  /* the result was read (Get/Wait) */
    struct op *prev, *next; /* pending list */
    bool listed;
} op;

static atomic_uint_fast64_t next_op_id = 1;
static pthread_mutex_t pending_mu = PTHREAD_MUTEX_INITIALIZER;
static op *pending_head;

/* ------------------------------------------------------------------ operation objects */

static void close_pi(HCS_PROCESS_INFORMATION *pi) {
    HANDLE hs[3] = {pi->StdInput, pi->StdOutput, pi->StdError};
    for (int i = 0; i < 3; i++)
        if (hs[i]) close((int)(intptr_t)hs[i]);
    memset(pi, 0, sizeof *pi);
}

/* Frees the previous use's result; pipe handles nobody collected are closed, not leaked. */
static void op_clear_result(op *o) {
    free(o->doc);
    o->doc = NULL;
    if (o->has_pi && !o->pi_taken) close_pi(&o->pi);
    memset(&o->pi, 0, sizeof o->pi);
    o->has_pi = o->pi_taken = false;
    if (o->route) hobj_unref(&o->route->base);
    o->route = NULL;
    if (o->late) hobj_unref(&o->late->base);
    o->late = NULL;
    o->collected = false;
}

static void op_destroy(hobj *b) {
    op *o = (op *)b;
    op_clear_result(o);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    free(o);
}

static void pending_add(op *o) {
    pthread_mutex_lock(&pending_mu);
    if (!o->listed) {
        o->prev = NULL;
        o->next = pending_head;
        if (pending_head) pending_head->prev = o;
        pending_head = o;
        o->listed = true;
        hobj_ref(&o->base);
    }
    pthread_mutex_unlock(&pending_mu);
}

static void pending_remove(op *o) {
    bool was = false;
    pthread_mutex_lock(&pending_mu);
    if (o->listed) {
        if (o->prev) o->prev->next = o->next; else pending_head = o->next;
        if (o->next) o->next->prev = o->prev;
        o->listed = false;
        was = true;
    }
    pthread_mutex_unlock(&pending_mu);
    if (was) hobj_unref(&o->base);
}

static void op_finish(op *o, uint64_t use, HRESULT hr, char *doc, HCS_PROCESS_INFORMATION *pi, bool has_pi) {
    pthread_mutex_lock(&o->mu);
    if (o->use != use || o->state != OP_PENDING || o->closed) {
        /* Closed or already completed (cancel, disconnect): HCS drops the result. */
        pthread_mutex_unlock(&o->mu);
        free(doc);
        if (has_pi && pi) close_pi(pi);
        pending_remove(o);
        return;
    }
    o->state = OP_COMPLETED;
    o->hr = hr;
    if (g_settings.null_success_documents && !FAILED(hr)) {
        free(doc);
        doc = NULL;
    }
    o->doc = doc;
    if (has_pi && pi) {
        o->pi = *pi;
        o->has_pi = true;
        o->pi_taken = false;
    }
    HCS_OPERATION_COMPLETION cb = o->cb;
    void *ctx = (void *)o->ctx;
    chandle *route = o->route;
    if (route) hobj_ref(&route->base);
    uintptr_t value = o->base.value;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    pending_remove(o);
    if (value && cb) {
        cb((HCS_OPERATION)value, ctx);
    } else if (value && route) {
        chandle_deliver(route, HcsEventOperationCallback, NULL, (HCS_OPERATION)value);
    }
    if (route) hobj_unref(&route->base);
}

/* ------------------------------------------------------------------ running calls */

typedef struct run {
    op *o;
    uint64_t use;
    op_call c;
    fault_action fa;
} run;

static void run_free(run *r) {
    if (r->c.free_arg) r->c.free_arg(r->c.arg);
    hobj_unref(&r->o->base);
    free(r);
}

static void run_body(run *r) {
    if (r->fa.delay_ms) {
        struct timespec ts = {r->fa.delay_ms / 1000, (long)(r->fa.delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
        }
    }
    char *doc = NULL;
    HCS_PROCESS_INFORMATION pi;
    memset(&pi, 0, sizeof pi);
    bool has_pi = false;
    HRESULT hr;
    if (r->fa.result_hr) {
        hr = r->fa.result_hr;
        doc = emu_error_doc(hr, "Injected fault: %s failed", emu_fn_names[r->c.fn]);
    } else if (emu_service_disconnected()) {
        hr = HCS_E_SERVICE_DISCONNECT;
        doc = emu_error_doc(hr, "The connection with the compute service was lost");
    } else {
        hr = r->c.work(r->c.arg, &doc, &pi, &has_pi);
    }
    op_finish(r->o, r->use, emu_public_hr(hr), doc, &pi, has_pi);
    run_free(r);
}

static void run_job(void *arg) { run_body(arg); }

HRESULT op_launch(HCS_OPERATION h, op_call *c) {
    fault_action fa = c->fa;
    HRESULT hr = S_OK;
    op *o = NULL;
    if (fa.call_hr) {
        hr = fa.call_hr;
        goto fail;
    }
    if (!h) {
        hr = E_INVALIDARG;
        goto fail;
    }
    o = (op *)handle_get((uintptr_t)h, H_OPERATION);
    if (!o) {
        hr = E_HANDLE;
        goto fail;
    }
    if (emu_service_disconnected()) {
        hr = HCS_E_SERVICE_DISCONNECT;
        goto fail;
    }
    chandle *route = NULL;
    if (c->target) {
        pthread_mutex_lock(&c->target->mu);
        bool op_events = c->target->cb && (c->target->cb_opts & HcsEventOptionEnableOperationCallbacks);
        pthread_mutex_unlock(&c->target->mu);
        if (op_events) {
            pthread_mutex_lock(&o->mu);
            bool has_cb = o->cb != NULL;
            pthread_mutex_unlock(&o->mu);
            if (has_cb) {
                hr = HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET;
                goto fail;
            }
            route = c->target;
        }
    }
    pthread_mutex_lock(&o->mu);
    if (o->state == OP_PENDING) {
        pthread_mutex_unlock(&o->mu);
        hr = HCS_E_OPERATION_ALREADY_STARTED;
        goto fail;
    }
    op_clear_result(o);
    o->state = OP_PENDING;
    o->type = c->type;
    o->id = atomic_fetch_add(&next_op_id, 1);
    o->use++;
    o->cancelled = false;
    o->hr = HCS_E_OPERATION_PENDING;
    o->system = c->system;
    o->process = c->process;
    if (route) {
        hobj_ref(&route->base);
        o->route = route;
    } else if (c->late_target && !o->cb && g_settings.deliver_early_events) {
        hobj_ref(&c->late_target->base);
        o->late = c->late_target;
    }
    bool async = o->cb || route || fa.delay_ms || c->blocking;
    uint64_t use = o->use;
    pthread_mutex_unlock(&o->mu);
    pending_add(o);

    if (fa.hang) {
        /* Never completes: only close, cancel or a service disconnect ends it. */
        if (c->free_arg) c->free_arg(c->arg);
        hobj_unref(&o->base);
        return emu_public_hr(g_settings.pending_on_initiate ? HCS_E_OPERATION_PENDING : S_OK);
    }
    run *r = malloc(sizeof *r);
    if (!r) {
        op_finish(o, use, E_OUTOFMEMORY, NULL, NULL, false);
        if (c->free_arg) c->free_arg(c->arg);
        hobj_unref(&o->base);
        return S_OK;
    }
    r->o = o; /* the reference from handle_get moves into the run */
    r->use = use;
    r->c = *c;
    r->fa = fa;
    if (!async) {
        run_body(r);
    } else if (!emu_submit(run_job, r)) {
        run_body(r);
    }
    return emu_public_hr(g_settings.pending_on_initiate ? HCS_E_OPERATION_PENDING : S_OK);

fail:
    if (c->free_arg) c->free_arg(c->arg);
    if (o) hobj_unref(&o->base);
    return emu_public_hr(hr);
}

typedef struct late_delivery {
    chandle *h;
    uintptr_t op;
} late_delivery;

static void late_job(void *arg) {
    late_delivery *d = arg;
    chandle_deliver(d->h, HcsEventOperationCallback, NULL, (HCS_OPERATION)d->op);
    hobj_unref(&d->h->base);
    free(d);
}

void op_route_late(chandle *h, uintptr_t opv) {
    op *o = (op *)handle_get(opv, H_OPERATION);
    if (!o) return;
    bool deliver = false;
    pthread_mutex_lock(&o->mu);
    if (o->late == h && !o->cb && !o->closed) {
        if (o->state == OP_PENDING) {
            o->route = h; /* the late reference becomes the route's: op_finish delivers */
            o->late = NULL;
        } else if (o->state == OP_COMPLETED && !o->collected) {
            deliver = true;
            hobj_unref(&o->late->base);
            o->late = NULL;
        }
    }
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    if (!deliver) return;
    late_delivery *d = malloc(sizeof *d);
    if (!d) return;
    hobj_ref(&h->base);
    d->h = h;
    d->op = opv;
    /* on a library thread, as every event is, never inside the caller's set-callback call */
    if (!emu_submit(late_job, d)) late_job(d);
}

void ops_fail_all_pending(HRESULT hr) {
    for (;;) {
        pthread_mutex_lock(&pending_mu);
        op *o = pending_head;
        if (o) hobj_ref(&o->base);
        pthread_mutex_unlock(&pending_mu);
        if (!o) return;
        pthread_mutex_lock(&o->mu);
        uint64_t use = o->use;
        pthread_mutex_unlock(&o->mu);
        op_finish(o, use, emu_public_hr(hr),
                  emu_error_doc(hr, "The connection with the compute service was lost"), NULL, false);
        pending_remove(o); /* also when op_finish dropped it */
        hobj_unref(&o->base);
    }
}

size_t ops_live(void) { return handle_count(H_OPERATION); }

/* ------------------------------------------------------------------ exported API */

EMU_EXPORT HCS_OPERATION HcsCreateOperation(const void *context, HCS_OPERATION_COMPLETION callback) {
    fault_action fa;
    emu_fault_check(FN_HcsCreateOperation, &fa);
    if (fa.call_hr) return NULL;
    op *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    hobj_init(&o->base, H_OPERATION, op_destroy);
    pthread_mutex_init(&o->mu, NULL);
    emu_cond_init(&o->cv);
    o->state = OP_NOT_STARTED;
    o->type = HcsOperationTypeNone;
    o->ctx = context;
    o->cb = callback;
    uintptr_t v = handle_register(&o->base);
    hobj_unref(&o->base);
    return (HCS_OPERATION)v;
}

EMU_EXPORT void HcsCloseOperation(HCS_OPERATION operation) {
    fault_action fa;
    emu_fault_check(FN_HcsCloseOperation, &fa);
    op *o = (op *)handle_unregister((uintptr_t)operation, H_OPERATION);
    if (!o) return;
    /* An operation still in flight keeps running; its result is discarded (hcsshim relies on
     * this for fire-and-forget shutdown). No completion callback fires after this point. */
    pthread_mutex_lock(&o->mu);
    o->closed = true;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    pending_remove(o);
    hobj_unref(&o->base);
}

static op *get_op(HCS_OPERATION h) { return (op *)handle_get((uintptr_t)h, H_OPERATION); }

EMU_EXPORT void *HcsGetOperationContext(HCS_OPERATION operation) {
    fault_action fa;
    emu_fault_check(FN_HcsGetOperationContext, &fa);
    op *o = get_op(operation);
    if (!o) return NULL;
    pthread_mutex_lock(&o->mu);
    void *ctx = (void *)o->ctx;
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return ctx;
}

EMU_EXPORT HRESULT HcsSetOperationContext(HCS_OPERATION operation, const void *context) {
    fault_action fa;
    emu_fault_check(FN_HcsSetOperationContext, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    op *o = get_op(operation);
    if (!o) return E_HANDLE;
    pthread_mutex_lock(&o->mu);
    o->ctx = context;
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return S_OK;
}

EMU_EXPORT HRESULT HcsSetOperationCallback(HCS_OPERATION operation, const void *context,
                                           HCS_OPERATION_COMPLETION callback) {
    fault_action fa;
    emu_fault_check(FN_HcsSetOperationCallback, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    op *o = get_op(operation);
    if (!o) return E_HANDLE;
    pthread_mutex_lock(&o->mu);
    o->ctx = context;
    o->cb = callback;
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return S_OK;
}

EMU_EXPORT HCS_SYSTEM HcsGetComputeSystemFromOperation(HCS_OPERATION operation) {
    fault_action fa;
    emu_fault_check(FN_HcsGetComputeSystemFromOperation, &fa);
    op *o = get_op(operation);
    if (!o) return NULL;
    pthread_mutex_lock(&o->mu);
    uintptr_t s = o->state == OP_NOT_STARTED ? 0 : o->system;
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return (HCS_SYSTEM)s;
}

EMU_EXPORT HCS_PROCESS HcsGetProcessFromOperation(HCS_OPERATION operation) {
    fault_action fa;
    emu_fault_check(FN_HcsGetProcessFromOperation, &fa);
    op *o = get_op(operation);
    if (!o) return NULL;
    pthread_mutex_lock(&o->mu);
    uintptr_t p = o->state == OP_NOT_STARTED ? 0 : o->process;
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return (HCS_PROCESS)p;
}

EMU_EXPORT HCS_OPERATION_TYPE HcsGetOperationType(HCS_OPERATION operation) {
    fault_action fa;
    emu_fault_check(FN_HcsGetOperationType, &fa);
    op *o = get_op(operation);
    if (!o) return HcsOperationTypeNone;
    pthread_mutex_lock(&o->mu);
    HCS_OPERATION_TYPE t = o->type;
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return t;
}

EMU_EXPORT UINT64 HcsGetOperationId(HCS_OPERATION operation) {
    fault_action fa;
    emu_fault_check(FN_HcsGetOperationId, &fa);
    op *o = get_op(operation);
    if (!o) return HCS_INVALID_OPERATION_ID;
    pthread_mutex_lock(&o->mu);
    UINT64 id = o->state == OP_NOT_STARTED ? HCS_INVALID_OPERATION_ID : o->id;
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return id;
}

/* Shared body of the four Get/Wait functions. timeout_ms == 0 polls. */
static HRESULT op_result(HCS_OPERATION operation, bool wait, DWORD timeout_ms, bool want_pi,
                         HCS_PROCESS_INFORMATION *pi, PWSTR *doc) {
    if (doc) *doc = NULL;
    if (want_pi && !pi) return E_POINTER;
    op *o = get_op(operation);
    if (!o) return E_HANDLE;
    HRESULT hr;
    pthread_mutex_lock(&o->mu);
    if (o->state == OP_NOT_STARTED) {
        hr = HCS_E_OPERATION_NOT_STARTED;
        goto out;
    }
    if (want_pi && o->type != HcsOperationTypeCreateProcess && o->type != HcsOperationTypeGetProcessInfo) {
        hr = E_INVALIDARG;
        goto out;
    }
    if (o->state == OP_PENDING) {
        if (!wait || timeout_ms == 0) {
            hr = wait ? HCS_E_OPERATION_TIMEOUT : HCS_E_OPERATION_PENDING;
            goto out;
        }
        struct timespec ts;
        if (timeout_ms != INFINITE) emu_deadline(&ts, timeout_ms);
        while (o->state == OP_PENDING && !o->closed) {
            int rc = timeout_ms == INFINITE ? pthread_cond_wait(&o->cv, &o->mu)
                                            : pthread_cond_timedwait(&o->cv, &o->mu, &ts);
            if (rc == ETIMEDOUT) break;
        }
        if (o->state == OP_PENDING) {
            hr = o->closed ? E_HANDLE : HCS_E_OPERATION_TIMEOUT;
            goto out;
        }
    }
    hr = o->hr;
    o->collected = true;
    if (doc && o->doc) *doc = emu_doc(o->doc);
    if (want_pi && !FAILED(hr)) {
        *pi = o->pi;
        o->pi_taken = true; /* the caller owns the pipe handles now */
    }
out:
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return emu_public_hr(hr);
}

EMU_EXPORT HRESULT HcsGetOperationResult(HCS_OPERATION operation, PWSTR *resultDocument) {
    fault_action fa;
    emu_fault_check(FN_HcsGetOperationResult, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    return op_result(operation, false, 0, false, NULL, resultDocument);
}

EMU_EXPORT HRESULT HcsGetOperationResultAndProcessInfo(HCS_OPERATION operation,
                                                       HCS_PROCESS_INFORMATION *processInformation,
                                                       PWSTR *resultDocument) {
    fault_action fa;
    emu_fault_check(FN_HcsGetOperationResultAndProcessInfo, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    return op_result(operation, false, 0, true, processInformation, resultDocument);
}

EMU_EXPORT HRESULT HcsWaitForOperationResult(HCS_OPERATION operation, DWORD timeoutMs, PWSTR *resultDocument) {
    fault_action fa;
    emu_fault_check(FN_HcsWaitForOperationResult, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    return op_result(operation, true, timeoutMs, false, NULL, resultDocument);
}

EMU_EXPORT HRESULT HcsWaitForOperationResultAndProcessInfo(HCS_OPERATION operation, DWORD timeoutMs,
                                                           HCS_PROCESS_INFORMATION *processInformation,
                                                           PWSTR *resultDocument) {
    fault_action fa;
    emu_fault_check(FN_HcsWaitForOperationResultAndProcessInfo, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    return op_result(operation, true, timeoutMs, true, processInformation, resultDocument);
}

EMU_EXPORT HRESULT HcsCancelOperation(HCS_OPERATION operation) {
    fault_action fa;
    emu_fault_check(FN_HcsCancelOperation, &fa);
    if (fa.call_hr) return emu_public_hr(fa.call_hr);
    op *o = get_op(operation);
    if (!o) return E_HANDLE;
    if (g_settings.cancel == CANCEL_NOT_IMPLEMENTED) {
        hobj_unref(&o->base);
        return E_NOTIMPL;
    }
    HRESULT hr = S_OK;
    pthread_mutex_lock(&o->mu);
    if (o->state == OP_NOT_STARTED) {
        hr = HCS_E_OPERATION_NOT_STARTED;
    } else if (o->cancelled) {
        hr = HCS_E_OPERATION_ALREADY_CANCELLED;
    } else if (o->state == OP_PENDING) {
        o->cancelled = true;
        uint64_t use = o->use;
        pthread_mutex_unlock(&o->mu);
        /* The call's own work may still finish; its result is then dropped. */
        op_finish(o, use, HRESULT_FROM_WIN32(ERROR_CANCELLED),
                  emu_error_doc(HRESULT_FROM_WIN32(ERROR_CANCELLED), "The operation was cancelled"), NULL, false);
        hobj_unref(&o->base);
        return S_OK;
    }
    pthread_mutex_unlock(&o->mu);
    hobj_unref(&o->base);
    return emu_public_hr(hr);
}
