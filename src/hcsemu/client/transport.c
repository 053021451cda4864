/* Chooses the transport of this process from HCSEMU_SERVICE (see transport.h), once. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "transport.h"

static char *bad_mode_error;

static HRESULT unavailable(char **doc) {
    if (doc) {
        free(*doc);
        *doc = emu_error_doc(HCS_E_SERVICE_NOT_AVAILABLE, "%s", bad_mode_error ? bad_mode_error : "no service");
    }
    return HCS_E_SERVICE_NOT_AVAILABLE;
}
static HRESULT u_create(const char *id, const char *config, svc_system **out, char **doc) {
    (void)id, (void)config, (void)out;
    return unavailable(doc);
}
static HRESULT u_open(const char *id, svc_system **out) {
    (void)id, (void)out;
    return unavailable(NULL);
}
static void u_nop(svc_system *s) { (void)s; }
static HRESULT u_sys_call(int call, svc_system *s, const json *opts, char **doc) {
    (void)call, (void)s, (void)opts;
    return unavailable(doc);
}
static HRESULT u_doc(const json *in, char **doc) {
    (void)in;
    return unavailable(doc);
}
static HRESULT u_wait(svc_system *s, uint32_t t, const atomic_bool *a, char **doc) {
    (void)s, (void)t, (void)a;
    return unavailable(doc);
}
static void u_wake(void) {}
static bool u_runtime_id(const char *id, char out[37]) {
    (void)id, (void)out;
    return false;
}
static HRESULT u_create_process(svc_system *s, const char *p, uint32_t *pid, svc_stdio *io, char **doc) {
    (void)s, (void)p, (void)pid, (void)io;
    return unavailable(doc);
}
static HRESULT u_process_open(svc_system *s, uint32_t pid) {
    (void)s, (void)pid;
    return unavailable(NULL);
}
static void u_process_handle(svc_system *s, uint32_t pid, int d) { (void)s, (void)pid, (void)d; }
static HRESULT u_process_info(svc_system *s, uint32_t pid, svc_stdio *io, char **doc) {
    (void)s, (void)pid, (void)io;
    return unavailable(doc);
}
static HRESULT u_process_call(int call, svc_system *s, uint32_t pid, const json *o, char **doc) {
    (void)call, (void)s, (void)pid, (void)o;
    return unavailable(doc);
}
static HRESULT u_process_wait(svc_system *s, uint32_t pid, uint32_t t, const atomic_bool *a, char **doc) {
    (void)s, (void)pid, (void)t, (void)a;
    return unavailable(doc);
}

/* An HCSEMU_SERVICE that names no mode: every call says so (never a silent fallback). */
static const emu_transport unavailable_transport = {
    .name = "unavailable",
    .create = u_create,
    .open = u_open,
    .ref = u_nop,
    .unref = u_nop,
    .handle_opened = u_nop,
    .handle_closed = u_nop,
    .sys_call = u_sys_call,
    .enumerate = u_doc,
    .wait_exit = u_wait,
    .wake_waiters = u_wake,
    .create_process = u_create_process,
    .process_open = u_process_open,
    .process_handle = u_process_handle,
    .process_info = u_process_info,
    .process_call = u_process_call,
    .process_wait = u_process_wait,
    .service_properties = u_doc,
    .modify_service = u_doc,
    .submit_wer = u_doc,
    .runtime_id = u_runtime_id,
};

static const emu_transport *chosen;
static pthread_once_t chosen_once = PTHREAD_ONCE_INIT;

static void choose(void) {
    const char *mode = getenv("HCSEMU_SERVICE");
    if (!mode || !*mode) mode = "private"; /* the default: a service process of our own */
    if (strcmp(mode, "direct") == 0) {
        chosen = &emu_transport_direct;
        svc_events = &emu_client_sink; /* the service in this process: its events are ours */
        return;
    }
    chosen = emu_transport_socket(mode, &bad_mode_error);
    if (!chosen) {
        fprintf(stderr, "hcsemu: %s\n", bad_mode_error ? bad_mode_error : "bad HCSEMU_SERVICE");
        chosen = &unavailable_transport;
    }
}

const emu_transport *emu_tp(void) {
    pthread_once(&chosen_once, choose);
    return chosen;
}

HRESULT tp_service_properties_fn(const json *query, char **doc) { return tp_service_properties(query, doc); }
HRESULT tp_modify_service_fn(const json *settings, char **doc) { return tp_modify_service(settings, doc); }
HRESULT tp_submit_wer_fn(const json *report, char **doc) { return tp_submit_wer(report, doc); }
