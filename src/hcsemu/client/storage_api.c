/*
 * The computestorage.dll exports: each converts its UTF-16 arguments and HANDLEs and calls the
 * storage service (service/storage.h) on a thread of its own, where the deep tree walks have a
 * large stack.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "storage.h"
#include "wstr.h"

/* ------------------------------------------------------------------ the exported functions */

/* Fault injection, delays and service disconnect, through the one fault helper of every
 * synchronous function (so a Reset releases a Hang here too). */
static HRESULT storage_enter(emu_fn fn) {
    HRESULT hr = emu_fault_sync(fn);
    if (hr) return hr;
    if (emu_service_disconnected()) return HCS_E_SERVICE_DISCONNECT;
    return S_OK;
}

static HRESULT pub(HRESULT hr) { return FAILED(hr) ? emu_public_hr(hr) : hr; }

/* UTF-16 argument -> UTF-8 (NULL stays NULL). Invalid UTF-16 gives bad_hr. */
static HRESULT arg8(PCWSTR w, HRESULT bad_hr, const char *what, char **out) {
    *out = NULL;
    if (!w) return S_OK;
    bool ok;
    char *s = emu_utf8(w, &ok);
    if (!s) return E_OUTOFMEMORY;
    if (!ok) {
        free(s);
        return storage_fail(bad_hr, "%s is not valid UTF-16 (lone surrogate)", what);
    }
    *out = s;
    return S_OK;
}

#define REQUIRE_STR(w, name)                                                                       \
    do {                                                                                           \
        if (!(w)) return pub(storage_fail(E_INVALIDARG, "%s is NULL", name));                              \
    } while (0)

/* HANDLE -> fd: NULL -> -1 (none), anything not a plausible descriptor -> -2. */
static int handle_fd(HANDLE h) {
    intptr_t v = (intptr_t)h;
    if (!h) return -1;
    if (v <= 0 || v > INT_MAX) return -2;
    return (int)v;
}

EMU_EXPORT HRESULT HcsImportLayer(PCWSTR layerPath, PCWSTR sourceFolderPath, PCWSTR layerData) {
    HRESULT hr = storage_enter(FN_HcsImportLayer);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(layerPath, "layerPath");
    REQUIRE_STR(sourceFolderPath, "sourceFolderPath");
    REQUIRE_STR(layerData, "layerData");
    char *a = NULL, *b = NULL, *c = NULL;
    hr = arg8(layerPath, E_INVALIDARG, "layerPath", &a);
    if (hr == S_OK) hr = arg8(sourceFolderPath, E_INVALIDARG, "sourceFolderPath", &b);
    if (hr == S_OK) hr = arg8(layerData, HCS_E_INVALID_JSON, "layerData", &c);
    if (hr == S_OK) hr = storage_call(SC_IMPORT, a, b, c, NULL, -1);
    free(a);
    free(b);
    free(c);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsExportLayer(PCWSTR layerPath, PCWSTR exportFolderPath, PCWSTR layerData, PCWSTR options) {
    HRESULT hr = storage_enter(FN_HcsExportLayer);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(layerPath, "layerPath");
    REQUIRE_STR(exportFolderPath, "exportFolderPath");
    REQUIRE_STR(layerData, "layerData");
    char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    hr = arg8(layerPath, E_INVALIDARG, "layerPath", &a);
    if (hr == S_OK) hr = arg8(exportFolderPath, E_INVALIDARG, "exportFolderPath", &b);
    if (hr == S_OK) hr = arg8(layerData, HCS_E_INVALID_JSON, "layerData", &c);
    if (hr == S_OK) hr = arg8(options, HCS_E_INVALID_JSON, "options", &d);
    if (hr == S_OK) hr = storage_call(SC_EXPORT, a, b, c, d, -1);
    free(a);
    free(b);
    free(c);
    free(d);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsExportLegacyWritableLayer(PCWSTR writableLayerMountPath, PCWSTR writableLayerFolderPath,
                                                PCWSTR exportFolderPath, PCWSTR layerData) {
    HRESULT hr = storage_enter(FN_HcsExportLegacyWritableLayer);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(writableLayerMountPath, "writableLayerMountPath");
    REQUIRE_STR(writableLayerFolderPath, "writableLayerFolderPath");
    REQUIRE_STR(exportFolderPath, "exportFolderPath");
    REQUIRE_STR(layerData, "layerData");
    char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    hr = arg8(writableLayerMountPath, E_INVALIDARG, "writableLayerMountPath", &a);
    if (hr == S_OK) hr = arg8(writableLayerFolderPath, E_INVALIDARG, "writableLayerFolderPath", &b);
    if (hr == S_OK) hr = arg8(exportFolderPath, E_INVALIDARG, "exportFolderPath", &c);
    if (hr == S_OK) hr = arg8(layerData, HCS_E_INVALID_JSON, "layerData", &d);
    if (hr == S_OK) hr = storage_call(SC_EXPORT_LEGACY, a, b, c, d, -1);
    free(a);
    free(b);
    free(c);
    free(d);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsDestroyLayer(PCWSTR layerPath) {
    HRESULT hr = storage_enter(FN_HcsDestroyLayer);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(layerPath, "layerPath");
    char *a = NULL;
    hr = arg8(layerPath, E_INVALIDARG, "layerPath", &a);
    if (hr == S_OK) hr = svc_storage_destroy_layer(a);
    free(a);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsSetupBaseOSLayer(PCWSTR layerPath, HANDLE vhdHandle, PCWSTR options) {
    HRESULT hr = storage_enter(FN_HcsSetupBaseOSLayer);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(layerPath, "layerPath");
    char *a = NULL, *b = NULL;
    hr = arg8(layerPath, E_INVALIDARG, "layerPath", &a);
    if (hr == S_OK) hr = arg8(options, HCS_E_INVALID_JSON, "options", &b);
    if (hr == S_OK) hr = storage_call(SC_SETUP_OS, a, b, NULL, NULL, handle_fd(vhdHandle));
    free(a);
    free(b);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsSetupBaseOSVolume(PCWSTR layerPath, PCWSTR volumePath, PCWSTR options) {
    HRESULT hr = storage_enter(FN_HcsSetupBaseOSVolume);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(layerPath, "layerPath");
    REQUIRE_STR(volumePath, "volumePath");
    char *a = NULL, *b = NULL, *c = NULL;
    hr = arg8(layerPath, E_INVALIDARG, "layerPath", &a);
    if (hr == S_OK) hr = arg8(volumePath, E_INVALIDARG, "volumePath", &b);
    if (hr == S_OK) hr = arg8(options, HCS_E_INVALID_JSON, "options", &c);
    if (hr == S_OK) hr = storage_call(SC_SETUP_VOLUME, a, b, c, NULL, -1);
    free(a);
    free(b);
    free(c);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsInitializeWritableLayer(PCWSTR writableLayerPath, PCWSTR layerData, PCWSTR options) {
    HRESULT hr = storage_enter(FN_HcsInitializeWritableLayer);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(writableLayerPath, "writableLayerPath");
    REQUIRE_STR(layerData, "layerData");
    char *a = NULL, *b = NULL, *c = NULL;
    hr = arg8(writableLayerPath, E_INVALIDARG, "writableLayerPath", &a);
    if (hr == S_OK) hr = arg8(layerData, HCS_E_INVALID_JSON, "layerData", &b);
    if (hr == S_OK) hr = arg8(options, HCS_E_INVALID_JSON, "options", &c);
    if (hr == S_OK) hr = svc_storage_initialize_writable_layer(a, b, c);
    free(a);
    free(b);
    free(c);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsInitializeLegacyWritableLayer(PCWSTR writableLayerMountPath, PCWSTR writableLayerFolderPath,
                                                    PCWSTR layerData, PCWSTR options) {
    HRESULT hr = storage_enter(FN_HcsInitializeLegacyWritableLayer);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(writableLayerMountPath, "writableLayerMountPath");
    REQUIRE_STR(writableLayerFolderPath, "writableLayerFolderPath");
    REQUIRE_STR(layerData, "layerData");
    char *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    hr = arg8(writableLayerMountPath, E_INVALIDARG, "writableLayerMountPath", &a);
    if (hr == S_OK) hr = arg8(writableLayerFolderPath, E_INVALIDARG, "writableLayerFolderPath", &b);
    if (hr == S_OK) hr = arg8(layerData, HCS_E_INVALID_JSON, "layerData", &c);
    if (hr == S_OK) hr = arg8(options, HCS_E_INVALID_JSON, "options", &d);
    if (hr == S_OK) hr = svc_storage_initialize_legacy_writable_layer(a, b, c, d);
    free(a);
    free(b);
    free(c);
    free(d);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsAttachLayerStorageFilter(PCWSTR layerPath, PCWSTR layerData) {
    HRESULT hr = storage_enter(FN_HcsAttachLayerStorageFilter);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(layerPath, "layerPath");
    REQUIRE_STR(layerData, "layerData");
    char *a = NULL, *b = NULL;
    hr = arg8(layerPath, E_INVALIDARG, "layerPath", &a);
    if (hr == S_OK) hr = arg8(layerData, HCS_E_INVALID_JSON, "layerData", &b);
    if (hr == S_OK) hr = storage_call(SC_ATTACH, a, b, NULL, NULL, -1);
    free(a);
    free(b);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsDetachLayerStorageFilter(PCWSTR layerPath) {
    HRESULT hr = storage_enter(FN_HcsDetachLayerStorageFilter);
    if (hr != S_OK) return pub(hr);
    REQUIRE_STR(layerPath, "layerPath");
    char *a = NULL;
    hr = arg8(layerPath, E_INVALIDARG, "layerPath", &a);
    if (hr == S_OK) hr = storage_call(SC_DETACH, a, NULL, NULL, NULL, -1);
    free(a);
    return pub(hr);
}

EMU_EXPORT HRESULT HcsFormatWritableLayerVhd(HANDLE vhdHandle) {
    HRESULT hr = storage_enter(FN_HcsFormatWritableLayerVhd);
    if (hr != S_OK) return pub(hr);
    return pub(svc_storage_format_vhd(handle_fd(vhdHandle)));
}

EMU_EXPORT HRESULT HcsGetLayerVhdMountPath(HANDLE vhdHandle, PWSTR *mountPath) {
    HRESULT hr = storage_enter(FN_HcsGetLayerVhdMountPath);
    if (hr != S_OK) return pub(hr);
    if (!mountPath) return pub(storage_fail(E_POINTER, "mountPath is NULL"));
    *mountPath = NULL;
    char *p = NULL;
    hr = svc_storage_vhd_mount_path(handle_fd(vhdHandle), &p);
    if (hr == S_OK) {
        *mountPath = emu_doc(p);
        if (!*mountPath) hr = E_OUTOFMEMORY;
    }
    free(p);
    return pub(hr);
}
