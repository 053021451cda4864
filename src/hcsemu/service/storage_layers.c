/*
 * The layer calls: import, export, destroy, base OS setup, writable layer initialisation.
 */
#define _GNU_SOURCE
#include "storage_int.h"

/* ------------------------------------------------------------------ operations */

/* Creates dir (parent must exist) unless it exists; *created tells which. */
static HRESULT make_or_open_dir(const char *norm, const char *what, bool *created) {
    *created = false;
    struct stat st;
    if (stat(norm, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return storage_fail(HRESULT_FROM_WIN32(ERROR_DIRECTORY), "%s %s is not a directory", what, norm);
        return S_OK;
    }
    if (mkdir(norm, 0755) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return storage_fail(HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND), "the folder containing %s %s does not exist", what, norm);
        return fail_errno(e, "create", norm);
    }
    *created = true;
    return S_OK;
}

static HRESULT require_empty_dir(const char *real, const char *what) {
    int fd = open_dir_path(real);
    if (fd < 0) return fail_errno(errno, "open", real);
    int e = dir_is_empty(fd);
    close(fd);
    if (e < 0) return fail_errno(-e, "list", real);
    if (!e) return storage_fail(HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY), "%s %s is not empty", what, real);
    return S_OK;
}

static HRESULT parse_optional_doc(const char *text, const char *what, json **out) {
    *out = NULL;
    if (!text || !*text) return S_OK;
    return parse_doc(text, what, out);
}

HRESULT svc_storage_import_layer(const char *layer_path, const char *source_path, const char *layer_data) {
    char *lnorm = NULL, *snorm = NULL, *src = NULL, *layer = NULL;
    strvec pp = {0}, preal = {0}, tombs = {0};
    int sfd = -1, lfd = -1;
    bool created = false, populated = false;
    HRESULT hr = norm_abs_path(layer_path, "layerPath", &lnorm);
    if (hr == S_OK) hr = norm_abs_path(source_path, "sourceFolderPath", &snorm);
    if (hr == S_OK) hr = parse_layer_data(layer_data, NULL, &pp);
    if (hr == S_OK) hr = resolve_dir(snorm, "source folder", &src);
    if (hr == S_OK && (sfd = open_dir_path(src)) < 0) hr = fail_errno(errno, "open", src);
    if (hr == S_OK) hr = check_layout(sfd, src, IN_SOURCE, true);
    if (hr == S_OK) hr = tomb_read(sfd, src, &tombs);
    if (hr == S_OK) hr = make_or_open_dir(lnorm, "layer", &created);
    if (hr == S_OK && !(layer = realpath(lnorm, NULL))) hr = fail_errno(errno, "resolve", lnorm);
    if (hr == S_OK && (path_within(layer, src) || path_within(src, layer)))
        hr = storage_fail(E_INVALIDARG, "layer %s and source %s are the same or nested", layer, src);
    if (hr == S_OK) hr = resolve_parents(&pp, layer, &preal);
    if (hr == S_OK && !created) hr = require_empty_dir(layer, "layer folder");
    if (hr == S_OK && (lfd = open_dir_path(layer)) < 0) hr = fail_errno(errno, "open", layer);
    populated = hr == S_OK;
    static const char *const parts[] = {"Files", "Hives", "UtilityVM", "layout"};
    for (size_t i = 0; hr == S_OK && i < sizeof parts / sizeof parts[0]; i++) {
        struct stat st;
        if (fstatat(sfd, parts[i], &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        copy_ctx cc = {.flags = CP_STRICT, .hr = S_OK};
        hr = copy_entry(&cc, sfd, lfd, parts[i], parts[i]);
    }
    if (hr == S_OK) hr = tomb_write(lfd, &tombs);
    if (hr != S_OK && populated) {
        if (created)
            (void)rm_tree_path(layer);
        else if (lfd >= 0)
            (void)empty_dir(lfd);
    } else if (hr != S_OK && created) {
        (void)rmdir(lnorm);
    }
    if (hr == S_OK) emu_log("storage: imported %s into %s (%zu tombstones)", src, layer, tombs.n);
    if (sfd >= 0) close(sfd);
    if (lfd >= 0) close(lfd);
    free(lnorm);
    free(snorm);
    free(src);
    free(layer);
    sv_free(&pp);
    sv_free(&preal);
    sv_free(&tombs);
    return hr;
}

/* Writes the transport form of a layer into the empty folder efd: Files, UtilityVM, layout and
 * tombstones from layer_fd, Hives from hives_fd's folder. */
static HRESULT export_into(int layer_fd, const char *layer, int hives_fd, int efd) {
    HRESULT hr = S_OK;
    static const char *const parts[] = {"Files", "UtilityVM", "layout"};
    for (size_t i = 0; hr == S_OK && i < sizeof parts / sizeof parts[0]; i++) {
        struct stat st;
        if (fstatat(layer_fd, parts[i], &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        copy_ctx cc = {.flags = 0, .hr = S_OK};
        hr = copy_entry(&cc, layer_fd, efd, parts[i], parts[i]);
    }
    struct stat st;
    if (hr == S_OK && fstatat(hives_fd, "Hives", &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (!S_ISDIR(st.st_mode)) return storage_fail(HCS_E_INVALID_LAYER, "Hives of %s is not a directory", layer);
        copy_ctx cc = {.flags = 0, .hr = S_OK};
        hr = copy_entry(&cc, hives_fd, efd, "Hives", "Hives");
    }
    strvec t = {0};
    if (hr == S_OK) hr = tomb_read(layer_fd, layer, &t);
    if (hr == S_OK) hr = tomb_write(efd, &t);
    sv_free(&t);
    return hr;
}

HRESULT svc_storage_export_layer(const char *layer_path, const char *export_path, const char *layer_data,
                                 const char *options) {
    char *lnorm = NULL, *enorm = NULL, *layer = NULL, *exp = NULL;
    strvec pp = {0}, preal = {0};
    json *opts = NULL, *m = NULL;
    int lfd = -1, efd = -1;
    bool writable_opt = false, locked = false;
    glock lk;
    HRESULT hr = norm_abs_path(layer_path, "layerPath", &lnorm);
    if (hr == S_OK) hr = norm_abs_path(export_path, "exportFolderPath", &enorm);
    if (hr == S_OK) hr = parse_layer_data(layer_data, NULL, &pp);
    if (hr == S_OK) hr = parse_optional_doc(options, "options (ExportLayerOptions)", &opts);
    if (hr == S_OK && opts) hr = check_optional_bool(opts, "IsWritableLayer", "ExportLayerOptions", &writable_opt);
    if (hr == S_OK) hr = resolve_dir(lnorm, "layer", &layer);
    if (hr == S_OK) hr = resolve_dir(enorm, "export folder", &exp);
    if (hr == S_OK && (path_within(layer, exp) || path_within(exp, layer)))
        hr = storage_fail(E_INVALIDARG, "layer %s and export folder %s are the same or nested", layer, exp);
    if (hr == S_OK) hr = resolve_parents(&pp, layer, &preal);
    if (hr == S_OK) hr = open_layer(layer, &lfd);
    if (hr == S_OK) hr = require_empty_dir(exp, "export folder");
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = meta_read(layer, &m);
    }
    if (hr == S_OK && m && meta_attached(m))
        hr = storage_fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "%s is attached; detach its storage filter first", layer);
    if (hr == S_OK && writable_opt && !(m && meta_is_writable(m)))
        hr = storage_fail(HCS_E_INVALID_LAYER, "IsWritableLayer is set but %s is not a writable layer", layer);
    if (hr == S_OK && (efd = open_dir_path(exp)) < 0) hr = fail_errno(errno, "open", exp);
    if (hr == S_OK) {
        hr = export_into(lfd, layer, lfd, efd);
        if (hr != S_OK) (void)empty_dir(efd);
    }
    if (locked) lock_release(&lk);
    if (lfd >= 0) close(lfd);
    if (efd >= 0) close(efd);
    json_free(opts);
    json_free(m);
    free(lnorm);
    free(enorm);
    free(layer);
    free(exp);
    sv_free(&pp);
    sv_free(&preal);
    return hr;
}

HRESULT svc_storage_export_legacy_writable_layer(const char *mount_path, const char *folder_path,
                                                 const char *export_path, const char *layer_data) {
    char *mnorm = NULL, *fnorm = NULL, *enorm = NULL, *mnt = NULL, *folder = NULL, *exp = NULL;
    strvec pp = {0}, preal = {0};
    json *m = NULL;
    int lfd = -1, ffd = -1, efd = -1;
    bool locked = false;
    glock lk;
    HRESULT hr = norm_abs_path(mount_path, "writableLayerMountPath", &mnorm);
    if (hr == S_OK) hr = norm_abs_path(folder_path, "writableLayerFolderPath", &fnorm);
    if (hr == S_OK) hr = norm_abs_path(export_path, "exportFolderPath", &enorm);
    if (hr == S_OK) hr = parse_layer_data(layer_data, NULL, &pp);
    if (hr == S_OK) hr = resolve_dir(mnorm, "writable layer mount path", &mnt);
    if (hr == S_OK) hr = resolve_dir(fnorm, "writable layer folder", &folder);
    if (hr == S_OK) hr = resolve_dir(enorm, "export folder", &exp);
    if (hr == S_OK && (path_within(mnt, exp) || path_within(exp, mnt) || path_within(folder, exp) ||
                       path_within(exp, folder)))
        hr = storage_fail(E_INVALIDARG, "the export folder %s overlaps the writable layer", exp);
    if (hr == S_OK) hr = resolve_parents(&pp, mnt, &preal);
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = meta_read_writable(mnt, &m);
    }
    if (hr == S_OK) {
        const char *lf = json_str(json_get(m, "LegacyFolder"));
        if (!lf || strcmp(lf, folder) != 0)
            hr = storage_fail(HCS_E_INVALID_LAYER, "%s is not a legacy writable layer initialised with folder %s", mnt, folder);
    }
    if (hr == S_OK && meta_attached(m))
        hr = storage_fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "%s is attached; detach its storage filter first", mnt);
    if (hr == S_OK) hr = open_layer(mnt, &lfd);
    if (hr == S_OK && (ffd = open_dir_path(folder)) < 0) hr = fail_errno(errno, "open", folder);
    if (hr == S_OK) hr = require_empty_dir(exp, "export folder");
    if (hr == S_OK && (efd = open_dir_path(exp)) < 0) hr = fail_errno(errno, "open", exp);
    if (hr == S_OK) {
        hr = export_into(lfd, mnt, ffd, efd);
        if (hr != S_OK) (void)empty_dir(efd);
    }
    if (locked) lock_release(&lk);
    if (lfd >= 0) close(lfd);
    if (ffd >= 0) close(ffd);
    if (efd >= 0) close(efd);
    json_free(m);
    free(mnorm);
    free(fnorm);
    free(enorm);
    free(mnt);
    free(folder);
    free(exp);
    sv_free(&pp);
    sv_free(&preal);
    return hr;
}

HRESULT svc_storage_destroy_layer(const char *layer_path) {
    char *norm = NULL, *layer = NULL, *by = NULL;
    json *m = NULL;
    int fd = -1;
    HRESULT hr = norm_abs_path(layer_path, "layerPath", &norm);
    if (hr == S_OK) hr = resolve_dir(norm, "layer", &layer);
    if (hr == S_OK && strcmp(layer, "/") == 0) hr = storage_fail(E_INVALIDARG, "refusing to destroy /");
    if (hr != S_OK) {
        free(norm);
        free(layer);
        return hr;
    }
    glock lk;
    lock_acquire(&lk);
    if (meta_read(layer, &m) != S_OK) emu_log("storage: destroying %s despite its damaged metadata", layer);
    if ((fd = open_dir_path(layer)) < 0) hr = fail_errno(errno, "open", layer);
    if (hr == S_OK && ((m && meta_attached(m)) || is_mountpoint_at(fd, VIEW_DIR)))
        hr = storage_fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "%s is attached (its storage filter is in use)", layer);
    if (hr == S_OK && index_in_use(layer, &by))
        hr = storage_fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "%s is (inside or around) a layer that %s uses",
                  layer, by);
    if (hr == S_OK) hr = check_layout(fd, layer, IN_LAYER, false);
    if (fd >= 0) close(fd);
    if (hr == S_OK) {
        int r = rm_tree_path(layer);
        if (r) hr = fail_errno(-r, "destroy", layer);
        index_remove(layer);
    }
    lock_release(&lk);
    json_free(m);
    free(by);
    free(norm);
    free(layer);
    return hr;
}

/* Parses OsLayerOptions; *vm: Type is "Vm". */
static HRESULT parse_os_layer_options(const char *options, bool *vm, char **type_out) {
    *vm = false;
    json *o = NULL;
    HRESULT hr = parse_optional_doc(options, "options (OsLayerOptions)", &o);
    if (hr == S_OK && o) {
        const json *t = json_get(o, "Type");
        if (!is_absent(t)) {
            const char *s = json_str(t);
            if (s && strcmp(s, "Vm") == 0)
                *vm = true;
            else if (!s || strcmp(s, "Container") != 0)
                hr = storage_fail(HCS_E_INVALID_JSON, "OsLayerOptions: Type must be \"Container\" or \"Vm\"");
        }
        if (hr == S_OK) hr = check_optional_bool(o, "DisableCiCacheOptimization", "OsLayerOptions", NULL);
        if (hr == S_OK) hr = check_optional_bool(o, "SkipUpdateBcdForBoot", "OsLayerOptions", NULL);
    }
    json_free(o);
    if (type_out) *type_out = strdup(*vm ? "Vm" : "Container");
    return hr;
}

/* The common part of SetupBaseOSLayer/Volume: creates Hives and layout, and for a VM base
 * layer copies UtilityVM/Files into the volume. */
static HRESULT setup_base_os(const char *layer, bool vm, const char *type, const char *volume) {
    int lfd = -1, vfd = -1;
    HRESULT hr = open_layer(layer, &lfd);
    struct stat st;
    if (hr == S_OK && (fstatat(lfd, "Hives", &st, AT_SYMLINK_NOFOLLOW) == 0 ||
                       fstatat(lfd, "layout", &st, AT_SYMLINK_NOFOLLOW) == 0))
        hr = storage_fail(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "%s is already set up (it has Hives or layout)", layer);
    int ufd = -1;
    if (hr == S_OK && vm) {
        int u = open_dir_at(lfd, "UtilityVM");
        ufd = u >= 0 ? open_dir_at(u, "Files") : -1;
        if (u >= 0) close(u);
        if (ufd < 0) hr = storage_fail(HCS_E_INVALID_LAYER, "%s has no UtilityVM/Files for a VM base layer", layer);
    }
    if (hr == S_OK && volume && (vfd = open_dir_path(volume)) < 0) hr = fail_errno(errno, "open volume", volume);
    if (hr == S_OK && mkdirat(lfd, "Hives", 0755) != 0) hr = fail_errno(errno, "mkdir Hives in", layer);
    if (hr == S_OK) {
        static const char *const hives[] = {"DefaultUser_Delta", "Sam_Delta", "Security_Delta", "Software_Delta",
                                            "System_Delta"};
        int hfd = open_dir_at(lfd, "Hives");
        for (size_t i = 0; hr == S_OK && i < sizeof hives / sizeof hives[0]; i++) {
            int f = hfd < 0 ? -1 : openat(hfd, hives[i], O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (f < 0)
                hr = fail_errno(errno, "create hive", hives[i]);
            else
                close(f);
        }
        if (hfd >= 0) close(hfd);
    }
    if (hr == S_OK && vfd >= 0 && ufd >= 0) {
        copy_ctx cc = {.flags = CP_MERGE, .hr = S_OK};
        hr = copy_dir_contents(&cc, ufd, vfd, "UtilityVM/Files");
    }
    if (hr == S_OK && vfd >= 0) {
        json *mk = json_new_object();
        json_set(mk, "Layer", json_new_string(layer));
        json_set(mk, "Type", json_new_string(type));
        char *t = json_dump(mk);
        json_free(mk);
        hr = t ? write_file_at(vfd, "hcsemu-base-os.json", t, strlen(t), 0644) : E_OUTOFMEMORY;
        free(t);
    }
    if (hr == S_OK) {
        char *t = emu_printf("{\"Type\":\"%s\",\"Format\":\"hcsemu-layout\",\"Version\":1}\n", type);
        hr = t ? write_file_at(lfd, "layout", t, strlen(t), 0644) : E_OUTOFMEMORY;
        free(t);
    }
    if (hr != S_OK && lfd >= 0 && hr != HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS)) {
        /* leave the layer as it was */
        (void)rm_tree_at(lfd, "Hives");
        (void)unlinkat(lfd, "layout", 0);
    }
    if (ufd >= 0) close(ufd);
    if (vfd >= 0) close(vfd);
    if (lfd >= 0) close(lfd);
    return hr;
}

HRESULT svc_storage_setup_base_os_layer(const char *layer_path, int vhd_fd, const char *options) {
    char *norm = NULL, *layer = NULL, *type = NULL, *vol = NULL;
    bool vm = false;
    HRESULT hr = norm_abs_path(layer_path, "layerPath", &norm);
    if (hr == S_OK) hr = parse_os_layer_options(options, &vm, &type);
    if (hr == S_OK && !vm && vhd_fd != -1)
        hr = storage_fail(E_INVALIDARG, "a Container base layer takes no VHD handle (pass NULL)");
    if (hr == S_OK && vm && vhd_fd == -1)
        hr = storage_fail(E_INVALIDARG, "a Vm base layer needs the handle of its formatted SystemTemplateBase VHD");
    if (hr == S_OK) hr = resolve_dir(norm, "layer", &layer);
    if (hr == S_OK && vm) hr = vhd_volume_dir(vhd_fd, &vol);
    if (hr == S_OK) hr = setup_base_os(layer, vm, type, vol);
    free(norm);
    free(layer);
    free(type);
    free(vol);
    return hr;
}

HRESULT svc_storage_setup_base_os_volume(const char *layer_path, const char *volume_path, const char *options) {
    char *norm = NULL, *vnorm = NULL, *layer = NULL, *vol = NULL, *type = NULL;
    bool vm = false;
    HRESULT hr = norm_abs_path(layer_path, "layerPath", &norm);
    if (hr == S_OK) hr = norm_abs_path(volume_path, "volumePath", &vnorm);
    if (hr == S_OK) hr = parse_os_layer_options(options, &vm, &type);
    if (hr == S_OK) hr = resolve_dir(norm, "layer", &layer);
    if (hr == S_OK) hr = resolve_dir(vnorm, "volume", &vol);
    if (hr == S_OK && (path_within(vol, layer) || path_within(layer, vol)))
        hr = storage_fail(E_INVALIDARG, "volume %s and layer %s are the same or nested", vol, layer);
    if (hr == S_OK) hr = setup_base_os(layer, vm, type, vol);
    free(norm);
    free(vnorm);
    free(layer);
    free(vol);
    free(type);
    return hr;
}

static json *writable_meta(const json *layer_data, const strvec *parents) {
    json *m = json_new_object();
    json_set(m, "Kind", json_new_string("WritableLayer"));
    json_set(m, "LayerData", json_clone(layer_data));
    json_set(m, "Parents", strvec_to_json(parents));
    return m;
}

HRESULT svc_storage_initialize_writable_layer(const char *layer_path, const char *layer_data, const char *options) {
    char *norm = NULL, *layer = NULL;
    strvec pp = {0}, preal = {0};
    json *ld = NULL, *opts = NULL, *m = NULL, *old = NULL;
    bool created = false, locked = false;
    glock lk;
    HRESULT hr = norm_abs_path(layer_path, "writableLayerPath", &norm);
    if (hr == S_OK) hr = parse_layer_data(layer_data, &ld, &pp);
    if (hr == S_OK && options && *options) {
        char err[200];
        opts = json_parse(options, strlen(options), err, sizeof err);
        if (!opts) hr = storage_fail(HCS_E_INVALID_JSON, "options: invalid JSON: %s", err);
    }
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = make_or_open_dir(norm, "writable layer", &created);
    }
    if (hr == S_OK && !(layer = realpath(norm, NULL))) hr = fail_errno(errno, "resolve", norm);
    if (hr == S_OK) hr = resolve_parents(&pp, layer, &preal);
    if (hr == S_OK) hr = meta_read(layer, &old);
    if (hr == S_OK && old) hr = storage_fail(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "%s is already initialised", layer);
    int fd = -1;
    if (hr == S_OK && (fd = open_dir_path(layer)) < 0) hr = fail_errno(errno, "open", layer);
    if (hr == S_OK) hr = check_layout(fd, layer, IN_LAYER, false);
    if (hr == S_OK && mkdirat(fd, "Files", 0755) != 0 && errno != EEXIST) hr = fail_errno(errno, "mkdir Files in", layer);
    if (fd >= 0) close(fd);
    if (hr == S_OK && !(m = writable_meta(ld, &preal))) hr = E_OUTOFMEMORY;
    if (hr == S_OK) hr = meta_write(layer, m);
    if (hr != S_OK && created) (void)rm_tree_path(layer ? layer : norm);
    if (locked) lock_release(&lk);
    json_free(ld);
    json_free(opts);
    json_free(m);
    json_free(old);
    free(norm);
    free(layer);
    sv_free(&pp);
    sv_free(&preal);
    return hr;
}

HRESULT svc_storage_initialize_legacy_writable_layer(const char *mount_path, const char *folder_path,
                                                     const char *layer_data, const char *options) {
    char *mnorm = NULL, *fnorm = NULL, *mnt = NULL, *folder = NULL;
    strvec pp = {0}, preal = {0};
    json *ld = NULL, *opts = NULL, *m1 = NULL, *m2 = NULL, *old = NULL;
    bool created = false, locked = false;
    glock lk;
    int mfd = -1, ffd = -1;
    HRESULT hr = norm_abs_path(mount_path, "writableLayerMountPath", &mnorm);
    if (hr == S_OK) hr = norm_abs_path(folder_path, "writableLayerFolderPath", &fnorm);
    if (hr == S_OK) hr = parse_layer_data(layer_data, &ld, &pp);
    if (hr == S_OK) hr = parse_optional_doc(options, "options", &opts);
    if (hr == S_OK) hr = resolve_dir(mnorm, "writable layer mount path", &mnt);
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = make_or_open_dir(fnorm, "writable layer folder", &created);
    }
    if (hr == S_OK && !(folder = realpath(fnorm, NULL))) hr = fail_errno(errno, "resolve", fnorm);
    if (hr == S_OK && (path_within(mnt, folder) || path_within(folder, mnt)))
        hr = storage_fail(E_INVALIDARG, "mount path %s and folder %s are the same or nested", mnt, folder);
    if (hr == S_OK) hr = resolve_parents(&pp, mnt, &preal);
    for (size_t i = 0; hr == S_OK && i < preal.n; i++)
        if (path_within(folder, preal.v[i]) || path_within(preal.v[i], folder))
            hr = storage_fail(E_INVALIDARG, "folder %s and parent layer %s are the same or nested", folder, preal.v[i]);
    if (hr == S_OK) hr = meta_read(mnt, &old);
    if (hr == S_OK && old) hr = storage_fail(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "%s is already initialised", mnt);
    if (hr == S_OK) hr = meta_read(folder, &old);
    if (hr == S_OK && old) hr = storage_fail(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "%s is already initialised", folder);
    if (hr == S_OK && (mfd = open_dir_path(mnt)) < 0) hr = fail_errno(errno, "open", mnt);
    if (hr == S_OK && (ffd = open_dir_path(folder)) < 0) hr = fail_errno(errno, "open", folder);
    if (hr == S_OK) hr = check_layout(mfd, mnt, IN_LAYER, false);
    if (hr == S_OK) hr = check_layout(ffd, folder, IN_LAYER, false);
    if (hr == S_OK && mkdirat(mfd, "Files", 0755) != 0 && errno != EEXIST) hr = fail_errno(errno, "mkdir Files in", mnt);
    if (hr == S_OK && mkdirat(ffd, "Hives", 0755) != 0 && errno != EEXIST) hr = fail_errno(errno, "mkdir Hives in", folder);
    if (hr == S_OK) {
        m1 = writable_meta(ld, &preal);
        json_set(m1, "LegacyFolder", json_new_string(folder));
        m2 = json_new_object();
        json_set(m2, "Kind", json_new_string("LegacyWritableFolder"));
        json_set(m2, "MountPath", json_new_string(mnt));
        if (opts) json_set(m2, "Options", json_clone(opts));
        hr = meta_write(folder, m2);
        if (hr == S_OK) hr = meta_write(mnt, m1);
    }
    if (hr != S_OK && created) (void)rm_tree_path(folder ? folder : fnorm);
    if (locked) lock_release(&lk);
    if (mfd >= 0) close(mfd);
    if (ffd >= 0) close(ffd);
    json_free(ld);
    json_free(opts);
    json_free(m1);
    json_free(m2);
    json_free(old);
    free(mnorm);
    free(fnorm);
    free(mnt);
    free(folder);
    sv_free(&pp);
    sv_free(&preal);
    return hr;
}
