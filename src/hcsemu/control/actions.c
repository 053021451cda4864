/*
 * EmulatorActions (HcsModifyServiceSettings) and EmulatorStatistics (HcsGetServiceProperties):
 * the emulator's own controls that reach into both halves (a service disconnect fails the
 * client's pending operations; statistics count the client's handles and the service's systems).
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
#include "control.h"
#include "svc.h"

json *emu_control_statistics(void) {
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

HRESULT emu_control_action(const json *settings, char **doc) {
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

