/* The direct transport: the service half runs in the caller's process (HCSEMU_SERVICE=direct). */
#include "protocol.h"
#include "svc.h"
#include "transport.h"

static HRESULT d_sys_call(int call, svc_system *s, const json *opts, char **doc) {
    switch (call) {
    case CALL_START: return svc_start(s, opts, doc);
    case CALL_SHUTDOWN: return svc_shutdown(s, opts, doc);
    case CALL_TERMINATE: return svc_terminate(s, opts, doc);
    case CALL_CRASH: return svc_crash(s, opts, doc);
    case CALL_PAUSE: return svc_pause(s, opts, doc);
    case CALL_RESUME: return svc_resume(s, opts, doc);
    case CALL_SAVE: return svc_save(s, opts, doc);
    case CALL_PROPERTIES: return svc_properties(s, opts, doc);
    case CALL_MODIFY: return svc_modify(s, opts, doc);
    default: return E_UNEXPECTED;
    }
}

static HRESULT d_process_call(int call, svc_system *s, uint32_t pid, const json *opts, char **doc) {
    switch (call) {
    case CALL_PROCESS_TERMINATE: return svc_process_terminate(s, pid, doc);
    case CALL_PROCESS_SIGNAL: return svc_process_signal(s, pid, opts, doc);
    case CALL_PROCESS_PROPERTIES: return svc_process_properties(s, pid, opts, doc);
    case CALL_PROCESS_MODIFY: return svc_process_modify(s, pid, opts, doc);
    default: return E_UNEXPECTED;
    }
}

const emu_transport emu_transport_direct = {
    .name = "direct",
    .create = svc_create,
    .open = svc_open,
    .ref = svc_ref,
    .unref = svc_unref,
    .handle_opened = svc_handle_opened,
    .handle_closed = svc_handle_closed,
    .sys_call = d_sys_call,
    .enumerate = svc_enumerate,
    .wait_exit = svc_wait_exit_or_abandon,
    .wake_waiters = svc_wake_waiters,
    .create_process = svc_create_process,
    .process_open = svc_process_open,
    .process_handle = svc_process_handle,
    .process_info = svc_process_info,
    .process_call = d_process_call,
    .process_wait = svc_process_wait_or_abandon,
    .service_properties = svc_service_properties,
    .modify_service = svc_modify_service,
    .submit_wer = svc_submit_wer,
    .runtime_id = svc_runtime_id,
};
