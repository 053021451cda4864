/* Shared internals of the client half (ops.c, client.c). */
#ifndef HCSEMU_CLIENT_H
#define HCSEMU_CLIENT_H

#include <stdatomic.h>

#include "control.h"
#include "handles.h"
#include "svc.h"
#include "wstr.h"

/* A system or process handle. */
typedef struct chandle {
    hobj base;
    svc_system *sys;   /* NULL: a create that failed, every call gives HCS_E_SYSTEM_NOT_FOUND */
    uint32_t pid;      /* process handles */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    HCS_EVENT_CALLBACK cb;
    void *cb_ctx;
    HCS_EVENT_OPTIONS cb_opts;
    int inflight;      /* callback invocations running now */
    bool closed;
    atomic_bool abandon_waits; /* set by close: every HcsWaitFor*Exit on this handle returns E_HANDLE */
    bool cb_ever_set;          /* a callback was set once: no more early events are kept */
    HCS_EVENT_TYPE early_type; /* an exit that came before the first callback (DeliverEarlyEvents) */
    char *early_doc;
    bool has_early;
    bool exit_seen;            /* an exit reached this handle (kept or delivered): never twice */
    uintptr_t late_op;         /* the create operation whose completion may still be routed here */
    struct chandle *by_sys_prev, *by_sys_next; /* its bucket in client.c's index by system */
    svc_system *indexed;       /* the system it is indexed under (NULL: not indexed) */
} chandle;

/* Runs the body of an asynchronous call; returns its HRESULT and a UTF-8 document. */
typedef HRESULT (*op_work_fn)(void *arg, char **doc, HCS_PROCESS_INFORMATION *pi, bool *has_pi);

typedef struct op_call {
    HCS_OPERATION_TYPE type;
    emu_fn fn;
    uintptr_t system, process; /* what HcsGet{ComputeSystem,Process}FromOperation report */
    chandle *target;           /* handle the call is made on (operation-callback routing) */
    op_work_fn work;
    void *arg;
    void (*free_arg)(void *arg);
    bool blocking;             /* may take long: never run on the caller's thread */
    fault_action fa;           /* decided by the exported function (which counted the call) */
    chandle *late_target;      /* a create's new handle (see op_route_late) */
} op_call;

/* Starts c on the operation `h`. Returns the initiating call's HRESULT; c->arg is consumed. */
HRESULT op_launch(HCS_OPERATION h, op_call *c);
/* h's callback with operation callbacks was just set: if opv (the create that made h) is
 * pending it now completes to h's callback; if it completed and nobody read its result yet,
 * the completion is delivered now (DeliverEarlyEvents). */
void op_route_late(chandle *h, uintptr_t opv);
/* Fails every pending operation (service disconnect). */
void ops_fail_all_pending(HRESULT hr);
size_t ops_live(void);

/* Events for this process's handles (client.c): from the service in this process (direct
 * mode, through emu_client_sink) or from the socket transport. */
void emu_sink_system_event(svc_system *s, HCS_EVENT_TYPE type, const char *data);
void emu_sink_process_event(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data);
void emu_sink_service_disconnect(void);
extern const svc_event_sink emu_client_sink;

/* Delivers one event to a handle's callback, honouring close (client.c). */
void chandle_deliver(chandle *h, HCS_EVENT_TYPE type, const char *data, HCS_OPERATION op);

#endif
