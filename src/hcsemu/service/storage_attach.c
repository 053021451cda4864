/*
 * HcsAttachLayerStorageFilter / HcsDetachLayerStorageFilter: the merged view of a writable
 * layer, by overlayfs or by copying, and the view path the compute systems use.
 */
#define _GNU_SOURCE
#include "storage_int.h"

/* ------------------------------------------------------------------ attach / detach */

typedef enum { MODE_AUTO, MODE_OVERLAY, MODE_COPY } view_mode;

static view_mode mode_setting(void) {
    const char *m = getenv("HCSEMU_STORAGE_MODE");
    if (!m || !*m || strcmp(m, "auto") == 0) return MODE_AUTO;
    if (strcmp(m, "overlay") == 0) return MODE_OVERLAY;
    if (strcmp(m, "copy") == 0) return MODE_COPY;
    emu_log("storage: unknown HCSEMU_STORAGE_MODE '%s', using auto", m);
    return MODE_AUTO;
}

static void log_copy_mode_once(const char *why) {
    static bool logged;
    if (logged) return;
    logged = true;
    emu_log("storage: overlayfs is not usable here (%s); merged views are materialised copies "
            "(HCSEMU_STORAGE_MODE=copy), changes are folded into the writable layer at detach",
            why);
}

static HRESULT attach_overlay(const char *wl, int wl_fd, const strvec *parents, char *why, size_t whylen) {
    if (!wl) return E_INVALIDARG;
    chain pc = {0};
    HRESULT hr = chain_open(parents, &pc);
    strvec wt = {0};
    int files = -1;
    int *below = NULL;
    char *upper = NULL, *work = NULL, *view = NULL, *empty = NULL;
    strvec lowers = {0};
    if (hr != S_OK) goto out;
    files = open_dir_at(wl_fd, "Files");
    if (files < 0) {
        hr = storage_fail(HCS_E_INVALID_LAYER, "%s/Files: %s", wl, strerror(errno));
        goto out;
    }
    if ((hr = tomb_read(wl_fd, wl, &wt)) != S_OK) goto out;
    below = calloc(pc.n + 1, sizeof *below);
    if (!below) {
        hr = E_OUTOFMEMORY;
        goto out;
    }
    for (size_t i = 0; i < pc.n; i++) below[i] = pc.l[i].files_fd;
    /* parents' tombstones as native marks (each over the layers below it) */
    for (size_t i = 0; i < pc.n; i++) {
        if (pc.l[i].tombs.n == 0) continue;
        if ((hr = ensure_native_marks(pc.l[i].files_fd, &pc.l[i].tombs, below + i + 1, pc.n - i - 1)) != S_OK) {
            snprintf(why, whylen, "cannot mark whiteouts in parent %.200s: %.250s", pc.l[i].path, t_msg);
            goto out;
        }
    }
    if ((hr = ensure_native_marks(files, &wt, below, pc.n)) != S_OK) {
        snprintf(why, whylen, "cannot mark whiteouts: %.400s", t_msg);
        goto revert;
    }
    upper = path_join(wl, "Files");
    work = emu_printf("%s/%s/work", wl, META_DIR);
    view = path_join(wl, VIEW_DIR);
    if (!upper || !work || !view) {
        hr = E_OUTOFMEMORY;
        goto revert;
    }
    (void)rm_tree_path(work);
    if (mkdirat(wl_fd, META_DIR, 0755) != 0 && errno != EEXIST) {
        hr = fail_errno(errno, "mkdir", META_DIR);
        goto revert;
    }
    if (mkdir(work, 0700) != 0) {
        hr = fail_errno(errno, "mkdir", work);
        goto revert;
    }
    (void)rm_tree_at(wl_fd, VIEW_DIR);
    if (mkdirat(wl_fd, VIEW_DIR, 0755) != 0) {
        hr = fail_errno(errno, "mkdir", view);
        goto revert;
    }
    for (size_t i = 0; i < pc.n; i++)
        if (!sv_push(&lowers, path_join(pc.l[i].path, "Files"))) {
            hr = E_OUTOFMEMORY;
            goto revert;
        }
    if (pc.n == 0) {
        /* overlayfs needs a lower layer: an empty one */
        empty = emu_printf("%s/%s/empty", wl, META_DIR);
        if (!empty || (mkdir(empty, 0755) != 0 && errno != EEXIST) || !sv_pushdup(&lowers, empty)) {
            hr = fail_errno(errno ? errno : ENOMEM, "mkdir", empty);
            goto revert;
        }
    }
    int rc = ovl_mount(view, &lowers, upper, work);
    if (rc != 0) {
        snprintf(why, whylen, "overlay mount on %s failed: %s", view, strerror(-rc));
        hr = storage_fail(rc == -EPERM || rc == -EACCES ? E_ACCESSDENIED : HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "%s", why);
        goto revert;
    }
    /* the upper layer now holds the deletions */
    if ((hr = tomb_write(wl_fd, &(strvec){0})) != S_OK) {
        umount2(view, MNT_DETACH);
        goto revert;
    }
    goto out;
revert : {
    /* put the writable layer back as it was: marks -> tombstones (merged with the file's) */
    bool pr;
    strvec back = {0};
    if (files >= 0 && native_to_tombstones(files, "", &back, below, pc.n, &pr, 0) == S_OK) {
        for (size_t i = 0; i < wt.n; i++) sv_pushdup(&back, wt.v[i]);
        tomb_reduce(&back);
        (void)tomb_write(wl_fd, &back);
    }
    sv_free(&back);
    if (view) (void)rmdir(view);
    if (work) (void)rm_tree_path(work);
    if (empty) (void)rmdir(empty);
}
out:
    free(upper);
    free(work);
    free(view);
    free(empty);
    free(below);
    sv_free(&lowers);
    sv_free(&wt);
    if (files >= 0) close(files);
    chain_free(&pc);
    return hr;
}

static HRESULT attach_copy(const char *wl, int wl_fd, const strvec *parents) {
    strvec all = {0};
    chain c = {0};
    HRESULT hr = sv_pushdup(&all, wl) ? S_OK : E_OUTOFMEMORY;
    for (size_t i = 0; hr == S_OK && i < parents->n; i++)
        if (!sv_pushdup(&all, parents->v[i])) hr = E_OUTOFMEMORY;
    if (hr == S_OK) hr = chain_open(&all, &c);
    int vfd = -1;
    if (hr == S_OK) {
        int r = rm_tree_at(wl_fd, VIEW_DIR);
        if (r) hr = fail_errno(-r, "remove stale view in", wl);
    }
    if (hr == S_OK && mkdirat(wl_fd, VIEW_DIR, 0755) != 0) hr = fail_errno(errno, "mkdir view in", wl);
    if (hr == S_OK && (vfd = open_dir_at(wl_fd, VIEW_DIR)) < 0) hr = fail_errno(errno, "open view in", wl);
    if (hr == S_OK) hr = chain_materialise(&c, 0, vfd);
    if (hr == S_OK) {
        /* the view's root looks like the writable layer's Files */
        struct stat st;
        if (fstat(c.l[0].files_fd, &st) == 0) set_meta_fd(vfd, &st);
    }
    if (vfd >= 0) close(vfd);
    if (hr != S_OK) (void)rm_tree_at(wl_fd, VIEW_DIR);
    chain_free(&c);
    sv_free(&all);
    return hr;
}

/* Before a detach changes anything: tree (a writable layer's Files or its view) holds no
 * mount and is not nested deeper than the walks accept. */
static HRESULT detach_precheck(const char *wl, int wl_fd, const char *tree) {
    int r = rm_tree_pass(wl_fd, tree, false, TREE_MAX_DEPTH);
    if (r == -EBUSY)
        return storage_fail(HRESULT_FROM_WIN32(ERROR_BUSY), "something is mounted inside %s/%s: unmount it before detaching",
                    wl, tree);
    if (r == -ENAMETOOLONG)
        return storage_fail(HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), "%s/%s has directories nested deeper than %d "
                    "levels; flatten them before detaching", wl, tree, TREE_MAX_DEPTH);
    return r ? fail_errno(-r, "check", wl) : S_OK;
}

static HRESULT detach_overlay(const char *wl, int wl_fd, const strvec *parents) {
    HRESULT pre = detach_precheck(wl, wl_fd, "Files");
    if (pre != S_OK) return pre;
    char *view = path_join(wl, VIEW_DIR);
    if (!view) return E_OUTOFMEMORY;
    if (is_mountpoint_at(wl_fd, VIEW_DIR) && umount2(view, UMOUNT_NOFOLLOW) != 0) {
        int e = errno;
        free(view);
        if (e == EBUSY)
            return storage_fail(HRESULT_FROM_WIN32(ERROR_BUSY), "the merged view of %s is still in use (open files or a "
                        "process working in it)", wl);
        return fail_errno(e, "unmount", wl);
    }
    free(view);
    chain pc = {0};
    HRESULT hr = chain_open(parents, &pc);
    int *below = calloc(pc.n + 1, sizeof *below);
    int files = open_dir_at(wl_fd, "Files");
    strvec t = {0};
    if (hr == S_OK && (!below || files < 0)) hr = below ? fail_errno(errno, "open Files of", wl) : E_OUTOFMEMORY;
    if (hr == S_OK) {
        for (size_t i = 0; i < pc.n; i++) below[i] = pc.l[i].files_fd;
        /* anything left in tombstones.txt (normally nothing) still counts */
        hr = tomb_read(wl_fd, wl, &t);
    }
    bool pr;
    if (hr == S_OK) hr = native_to_tombstones(files, "", &t, below, pc.n, &pr, 0);
    if (hr == S_OK) {
        tomb_reduce(&t);
        hr = tomb_write(wl_fd, &t);
    }
    if (hr == S_OK) {
        (void)unlinkat(wl_fd, VIEW_DIR, AT_REMOVEDIR);
        int mfd = open_dir_at(wl_fd, META_DIR);
        if (mfd >= 0) {
            (void)rm_tree_at(mfd, "work");
            (void)rm_tree_at(mfd, "empty");
            close(mfd);
        }
    }
    sv_free(&t);
    if (files >= 0) close(files);
    free(below);
    chain_free(&pc);
    return hr;
}

static HRESULT detach_copy(const char *wl, int wl_fd, const strvec *parents) {
    if (is_mountpoint_at(wl_fd, VIEW_DIR))
        return storage_fail(HCS_E_INVALID_STATE, "%s/%s is a mount point but the layer is recorded as a copy view", wl, VIEW_DIR);
    HRESULT pre = detach_precheck(wl, wl_fd, VIEW_DIR);
    if (pre != S_OK) return pre;
    chain pc = {0};
    HRESULT hr = chain_open(parents, &pc);
    int mfd = -1, base_fd = -1, new_fd = -1, view_fd = -1;
    strvec t = {0};
    if (hr == S_OK && mkdirat(wl_fd, META_DIR, 0755) != 0 && errno != EEXIST) hr = fail_errno(errno, "mkdir", META_DIR);
    if (hr == S_OK && (mfd = open_dir_at(wl_fd, META_DIR)) < 0) hr = fail_errno(errno, "open", META_DIR);
    if (hr == S_OK) {
        (void)rm_tree_at(mfd, "base");
        (void)rm_tree_at(mfd, "Files.new");
        (void)rm_tree_at(mfd, "Files.old");
        if (mkdirat(mfd, "base", 0700) != 0 || mkdirat(mfd, "Files.new", 0755) != 0 ||
            (base_fd = open_dir_at(mfd, "base")) < 0 || (new_fd = open_dir_at(mfd, "Files.new")) < 0)
            hr = fail_errno(errno, "prepare detach in", wl);
    }
    if (hr == S_OK && (view_fd = open_dir_at(wl_fd, VIEW_DIR)) < 0) hr = fail_errno(errno, "open view of", wl);
    if (hr == S_OK) hr = chain_materialise(&pc, 0, base_fd);
    if (hr == S_OK) {
        outdir root = {.parent = NULL, .name = "", .fd = new_fd, .model_fd = view_fd};
        hr = diff_dir(view_fd, base_fd, &root, "", &t, 0);
        struct stat st;
        if (hr == S_OK && fstat(view_fd, &st) == 0) set_meta_fd(new_fd, &st);
    }
    if (hr == S_OK) {
        tomb_reduce(&t);
        /* swap in the new Files, then the tombstones */
        if (renameat(wl_fd, "Files", mfd, "Files.old") != 0) {
            hr = fail_errno(errno, "replace Files of", wl);
        } else if (renameat(mfd, "Files.new", wl_fd, "Files") != 0) {
            hr = fail_errno(errno, "replace Files of", wl);
            (void)renameat(mfd, "Files.old", wl_fd, "Files");
        } else {
            hr = tomb_write(wl_fd, &t);
        }
    }
    if (view_fd >= 0) close(view_fd);
    if (base_fd >= 0) close(base_fd);
    if (new_fd >= 0) close(new_fd);
    if (mfd >= 0) {
        (void)rm_tree_at(mfd, "base");
        (void)rm_tree_at(mfd, "Files.new");
        (void)rm_tree_at(mfd, "Files.old");
        close(mfd);
    }
    if (hr == S_OK) {
        int r = rm_tree_at(wl_fd, VIEW_DIR);
        if (r) emu_log("storage: could not remove the view of %s: %s", wl, strerror(-r));
    }
    sv_free(&t);
    chain_free(&pc);
    return hr;
}

/* ------------------------------------------------------------------ the attach and detach calls */

HRESULT svc_storage_attach(const char *layer_path, const char *layer_data) {
    char *norm = NULL, *wl = NULL;
    strvec pp = {0}, preal = {0}, rec = {0};
    json *m = NULL;
    int fd = -1;
    bool locked = false;
    glock lk;
    const char *used = NULL;
    HRESULT hr = norm_abs_path(layer_path, "layerPath", &norm);
    if (hr == S_OK) hr = parse_layer_data(layer_data, NULL, &pp);
    if (hr == S_OK) hr = resolve_dir(norm, "writable layer", &wl);
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = meta_read_writable(wl, &m);
    }
    if (hr == S_OK && meta_attached(m)) hr = storage_fail(HCS_E_INVALID_STATE, "the storage filter of %s is already attached", wl);
    if (hr == S_OK && !json_to_strvec(json_get(m, "Parents"), &rec))
        hr = storage_fail(HCS_E_INVALID_LAYER, "%s: damaged metadata (Parents)", wl);
    if (hr == S_OK) hr = resolve_parents(&pp, wl, &preal);
    if (hr == S_OK && !sv_equal(&preal, &rec))
        hr = storage_fail(E_INVALIDARG, "layerData names %zu parent layer(s) that differ from the %zu %s was initialised with",
                  preal.n, rec.n, wl);
    for (size_t i = 0; hr == S_OK && i < preal.n; i++) {
        json *pm = NULL;
        if (meta_read(preal.v[i], &pm) == S_OK && pm && meta_attached(pm))
            hr = storage_fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "parent layer %s is itself attached", preal.v[i]);
        json_free(pm);
    }
    if (hr == S_OK) hr = open_layer(wl, &fd);
    if (hr == S_OK) {
        view_mode vm = mode_setting();
        if (vm != MODE_COPY) {
            if (!overlay_probe()) {
                if (vm == MODE_OVERLAY)
                    hr = storage_fail(g_ovl_errno == EPERM || g_ovl_errno == EACCES ? E_ACCESSDENIED
                                                                             : HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED),
                              "HCSEMU_STORAGE_MODE=overlay but overlayfs is not usable: %s", g_ovl_why);
                else
                    log_copy_mode_once(g_ovl_why);
            } else {
                char why[512] = "";
                hr = attach_overlay(wl, fd, &preal, why, sizeof why);
                if (hr == S_OK) {
                    used = "overlay";
                } else if (why[0] && vm == MODE_AUTO) {
                    emu_log("storage: %s; using a copy view for %s", why, wl);
                    log_copy_mode_once(why);
                    hr = S_OK;
                }
            }
        }
        if (hr == S_OK && !used) {
            hr = attach_copy(wl, fd, &preal);
            if (hr == S_OK) used = "copy";
        }
    }
    if (hr == S_OK) {
        json *a = json_new_object();
        json_set(a, "Mode", json_new_string(used));
        char *view = path_join(wl, VIEW_DIR);
        json_set(a, "View", json_new_string(view));
        free(view);
        json_set(m, "Attached", a);
        hr = meta_write(wl, m);
        if (hr == S_OK) hr = index_add(wl, used, &preal);
        if (hr != S_OK) {
            /* could not record it: undo the view */
            if (strcmp(used, "overlay") == 0)
                (void)detach_overlay(wl, fd, &preal);
            else
                (void)rm_tree_at(fd, VIEW_DIR);
            json_remove(m, "Attached");
            (void)meta_write(wl, m);
            index_remove(wl);
        }
    }
    if (hr == S_OK) emu_log("storage: attached %s (%s view, %zu parents)", wl, used, preal.n);
    if (locked) lock_release(&lk);
    if (fd >= 0) close(fd);
    json_free(m);
    free(norm);
    free(wl);
    sv_free(&pp);
    sv_free(&preal);
    sv_free(&rec);
    return hr;
}

HRESULT svc_storage_detach(const char *layer_path) {
    char *norm = NULL, *wl = NULL;
    strvec rec = {0};
    json *m = NULL;
    int fd = -1;
    bool locked = false;
    glock lk;
    HRESULT hr = norm_abs_path(layer_path, "layerPath", &norm);
    if (hr == S_OK) hr = resolve_dir(norm, "writable layer", &wl);
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = meta_read_writable(wl, &m);
    }
    const json *a = hr == S_OK ? meta_attached(m) : NULL;
    if (hr == S_OK && !a) hr = storage_fail(HCS_E_INVALID_STATE, "the storage filter of %s is not attached", wl);
    if (hr == S_OK && !json_to_strvec(json_get(m, "Parents"), &rec))
        hr = storage_fail(HCS_E_INVALID_LAYER, "%s: damaged metadata (Parents)", wl);
    if (hr == S_OK && (fd = open_dir_path(wl)) < 0) hr = fail_errno(errno, "open", wl);
    if (hr == S_OK) {
        const char *mode = json_str(json_get(a, "Mode"));
        if (mode && strcmp(mode, "overlay") == 0)
            hr = detach_overlay(wl, fd, &rec);
        else if (mode && strcmp(mode, "copy") == 0)
            hr = detach_copy(wl, fd, &rec);
        else
            hr = storage_fail(HCS_E_INVALID_LAYER, "%s: damaged metadata (Attached.Mode)", wl);
    }
    if (hr == S_OK) {
        json_remove(m, "Attached");
        hr = meta_write(wl, m);
        index_remove(wl);
    }
    if (hr == S_OK) emu_log("storage: detached %s", wl);
    if (locked) lock_release(&lk);
    if (fd >= 0) close(fd);
    json_free(m);
    free(norm);
    free(wl);
    sv_free(&rec);
    return hr;
}

char *storage_merged_view_path(const char *writable_layer_path) {
    char *norm = NULL;
    if (!writable_layer_path || norm_abs_path(writable_layer_path, "layer", &norm) != S_OK) return NULL;
    char *real = realpath(norm, NULL);
    free(norm);
    if (!real) return NULL;
    json *m = NULL;
    char *view = NULL;
    if (meta_read(real, &m) == S_OK && m && meta_is_writable(m)) {
        const char *v = json_str(json_get(meta_attached(m), "View"));
        struct stat st;
        if (v && stat(v, &st) == 0 && S_ISDIR(st.st_mode)) view = strdup(v);
    }
    json_free(m);
    free(real);
    return view;
}
