/*
 * The service half's interface (service/): what the vmcompute service does. UTF-8 JSON in, an
 * internal HRESULT (not yet passed through emu_public_hr unless said) and a UTF-8 JSON document
 * out; events leave through the sink below. Called by the direct transport
 * (client/transport_direct.c) and by the protocol server (server.c).
 */
#ifndef HCSEMU_SVC_H
#define HCSEMU_SVC_H

#include "control.h"
#include "emu.h"

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


/* ---- host facts and the host service calls (host.c) ---- */
json *emu_host_processor_topology(void);
json *emu_host_processor_requirements(void);

/* ---- events out of the service ---- */
/* Where the service's events go: the client half of this process (direct mode, set by
 * client/transport.c) or the connected clients (server.c). Set before the first system is
 * created; NULL drops events. */
typedef struct svc_event_sink {
    void (*system_event)(svc_system *s, HCS_EVENT_TYPE type, const char *data);
    void (*process_event)(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data);
} svc_event_sink;
extern const svc_event_sink *svc_events;
void svc_emit_system_event(svc_system *s, HCS_EVENT_TYPE type, const char *data);
void svc_emit_process_event(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data);
/* A number naming a system for the life of the service process (never reused). */
uint64_t svc_serial(const svc_system *s);

#endif /* HCSEMU_SVC_H */
