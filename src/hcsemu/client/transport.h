/*
 * The one interface between the client half and the service half.
 *
 * The client half calls the tp_* functions below (the same shapes as the svc_* functions of
 * service/svc.h). Behind them sits one transport, chosen once per process by HCSEMU_SERVICE:
 *   private (the default), shared or a socket path (transport_socket.c): a service process
 *           (hcsemud, hcsemud.c + server.c) over a Unix socket, protocol in protocol.h.
 *   direct  (transport_direct.c): the svc_* functions in this process.
 * A svc_system pointer the client holds is opaque: a service record (direct) or a reference
 * to one in the service process (socket); the client only passes it back.
 */
#ifndef HCSEMU_TRANSPORT_H
#define HCSEMU_TRANSPORT_H

#include <stdatomic.h>

#include "control.h"
#include "protocol.h"
#include "svc.h"

typedef struct emu_transport {
    const char *name;
    HRESULT (*create)(const char *id, const char *config, svc_system **out, char **doc);
    HRESULT (*open)(const char *id, svc_system **out);
    void (*ref)(svc_system *s);
    void (*unref)(svc_system *s);
    void (*handle_opened)(svc_system *s);
    void (*handle_closed)(svc_system *s);
    HRESULT (*sys_call)(int call, svc_system *s, const json *opts, char **doc); /* start..modify */
    HRESULT (*enumerate)(const json *query, char **doc);
    /* Waits end early with E_HANDLE once *abandoned is set and wake_waiters is called. */
    HRESULT (*wait_exit)(svc_system *s, uint32_t timeout_ms, const atomic_bool *abandoned, char **doc);
    void (*wake_waiters)(void);
    HRESULT (*create_process)(svc_system *s, const char *params, uint32_t *pid, svc_stdio *io, char **doc);
    HRESULT (*process_open)(svc_system *s, uint32_t pid);
    void (*process_handle)(svc_system *s, uint32_t pid, int delta);
    HRESULT (*process_info)(svc_system *s, uint32_t pid, svc_stdio *io, char **doc);
    HRESULT (*process_call)(int call, svc_system *s, uint32_t pid, const json *opts, char **doc);
    HRESULT (*process_wait)(svc_system *s, uint32_t pid, uint32_t timeout_ms, const atomic_bool *abandoned, char **doc);
    HRESULT (*service_properties)(const json *query, char **doc);
    HRESULT (*modify_service)(const json *settings, char **doc);
    HRESULT (*submit_wer)(const json *report, char **doc);
    bool (*runtime_id)(const char *id, char out[37]); /* a system's RuntimeId (VM access grants) */
} emu_transport;

extern const emu_transport emu_transport_direct;
/* NULL with *err set (malloc'd) when HCSEMU_SERVICE names a mode that cannot be used. */
const emu_transport *emu_transport_socket(const char *mode, char **err);

/* The transport of this process (chosen on first use); never NULL. */
const emu_transport *emu_tp(void);

/* Shorthands used by the client half (client.c, settings.c). */
#define tp_create(...) emu_tp()->create(__VA_ARGS__)
#define tp_open(...) emu_tp()->open(__VA_ARGS__)
#define tp_ref(s) emu_tp()->ref(s)
#define tp_unref(s) emu_tp()->unref(s)
#define tp_handle_opened(s) emu_tp()->handle_opened(s)
#define tp_handle_closed(s) emu_tp()->handle_closed(s)
#define tp_enumerate(...) emu_tp()->enumerate(__VA_ARGS__)
#define tp_wait_exit(...) emu_tp()->wait_exit(__VA_ARGS__)
#define tp_wake_waiters() emu_tp()->wake_waiters()
#define tp_create_process(...) emu_tp()->create_process(__VA_ARGS__)
#define tp_process_open(...) emu_tp()->process_open(__VA_ARGS__)
#define tp_process_handle(...) emu_tp()->process_handle(__VA_ARGS__)
#define tp_process_info(...) emu_tp()->process_info(__VA_ARGS__)
#define tp_process_wait(...) emu_tp()->process_wait(__VA_ARGS__)
#define tp_service_properties(...) emu_tp()->service_properties(__VA_ARGS__)
#define tp_modify_service(...) emu_tp()->modify_service(__VA_ARGS__)
#define tp_submit_wer(...) emu_tp()->submit_wer(__VA_ARGS__)
#define tp_runtime_id(...) emu_tp()->runtime_id(__VA_ARGS__)
/* Passed as function pointers by the client half. */
HRESULT tp_service_properties_fn(const json *query, char **doc);
HRESULT tp_modify_service_fn(const json *settings, char **doc);
HRESULT tp_submit_wer_fn(const json *report, char **doc);

#endif /* HCSEMU_TRANSPORT_H */
