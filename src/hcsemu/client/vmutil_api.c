/* The VM utility exports: UTF-16 and faults here, the work in service/vmutil.c. */
#include <stdlib.h>

#include "control.h"
#include "transport.h"
#include "vmutil.h"
#include "wstr.h"

/* UTF-16 -> UTF-8: E_INVALIDARG for an empty or invalid (lone surrogate: another name) string. */
static HRESULT arg8(PCWSTR w, char **out) {
    *out = NULL;
    if (emu_is_empty(w)) return E_INVALIDARG;
    bool ok;
    *out = emu_utf8(w, &ok);
    if (!*out) return E_OUTOFMEMORY;
    if (!ok) {
        free(*out);
        *out = NULL;
        return E_INVALIDARG;
    }
    return S_OK;
}

static HRESULT create_state_file(emu_fn fn, PCWSTR wpath, bool runtime) {
    HRESULT hr = emu_fault_sync(fn);
    if (hr) return emu_public_hr(hr);
    char *path;
    hr = arg8(wpath, &path);
    if (hr == S_OK) hr = svc_vm_create_state_file(path, runtime);
    free(path);
    return emu_public_hr(hr);
}

EMU_EXPORT HRESULT HcsCreateEmptyGuestStateFile(PCWSTR guestStateFilePath) {
    return create_state_file(FN_HcsCreateEmptyGuestStateFile, guestStateFilePath, false);
}

EMU_EXPORT HRESULT HcsCreateEmptyRuntimeStateFile(PCWSTR runtimeStateFilePath) {
    return create_state_file(FN_HcsCreateEmptyRuntimeStateFile, runtimeStateFilePath, true);
}

static HRESULT change_access(emu_fn fn, PCWSTR wvm, PCWSTR wpath, bool grant, bool group) {
    HRESULT hr = emu_fault_sync(fn);
    if (hr) return emu_public_hr(hr);
    if (emu_is_empty(wpath) || (!group && emu_is_empty(wvm))) return E_INVALIDARG;
    char *path = NULL, *vm = NULL;
    hr = arg8(wpath, &path);
    if (hr == S_OK && !group) hr = arg8(wvm, &vm);
    char runtime[37];
    /* a VM's account is that of the compute system the id names, if one does */
    if (hr == S_OK) hr = svc_vm_change_access(vm, vm && tp_runtime_id(vm, runtime) ? runtime : NULL, path, grant);
    free(path);
    free(vm);
    return emu_public_hr(hr);
}

EMU_EXPORT HRESULT HcsGrantVmAccess(PCWSTR vmId, PCWSTR filePath) {
    return change_access(FN_HcsGrantVmAccess, vmId, filePath, true, false);
}
EMU_EXPORT HRESULT HcsRevokeVmAccess(PCWSTR vmId, PCWSTR filePath) {
    return change_access(FN_HcsRevokeVmAccess, vmId, filePath, false, false);
}
EMU_EXPORT HRESULT HcsGrantVmGroupAccess(PCWSTR filePath) {
    return change_access(FN_HcsGrantVmGroupAccess, NULL, filePath, true, true);
}
EMU_EXPORT HRESULT HcsRevokeVmGroupAccess(PCWSTR filePath) {
    return change_access(FN_HcsRevokeVmGroupAccess, NULL, filePath, false, true);
}

EMU_EXPORT HRESULT HcsGetProcessorCompatibilityFromSavedState(PCWSTR RuntimeFileName, PCWSTR *ProcessorFeaturesString) {
    if (ProcessorFeaturesString) *ProcessorFeaturesString = NULL;
    HRESULT hr = emu_fault_sync(FN_HcsGetProcessorCompatibilityFromSavedState);
    if (hr) return emu_public_hr(hr);
    if (!ProcessorFeaturesString) return E_POINTER;
    char *path, *doc = NULL;
    hr = arg8(RuntimeFileName, &path);
    if (hr == S_OK) hr = svc_vm_saved_processor_requirements(path, &doc);
    if (hr == S_OK) {
        *ProcessorFeaturesString = emu_doc(doc);
        if (!*ProcessorFeaturesString) hr = E_OUTOFMEMORY;
    }
    free(doc);
    free(path);
    return emu_public_hr(hr);
}
