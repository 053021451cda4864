/*
 * Merged views by overlayfs: the mount (new or legacy API), the probe, and the conversion
 * between overlayfs whiteouts/opaque marks and tombstones.
 */
#define _GNU_SOURCE
#include "storage_int.h"

/* ------------------------------------------------------------------ overlayfs */

static int ovl_mount_newapi(const char *target, const strvec *lowers, const char *upper, const char *work) {
#ifdef SYS_fsopen
    int fs = (int)syscall(SYS_fsopen, "overlay", HCSEMU_FSOPEN_CLOEXEC);
    if (fs < 0) return -errno;
    int rc = 0;
#define CFG(k, v)                                                                              \
    (syscall(SYS_fsconfig, fs, HCSEMU_FSCONFIG_SET_STRING, (k), (v), 0) == 0 ? 0 : -errno)
    if ((rc = CFG("source", "hcsemu")) != 0) goto out;
    for (size_t i = 0; i < lowers->n; i++) {
        if ((rc = CFG("lowerdir+", lowers->v[i])) != 0) {
            if (rc == -EINVAL && i == 0) rc = -ENOSYS; /* kernel < 6.8: no lowerdir+ */
            goto out;
        }
    }
    if ((rc = CFG("upperdir", upper)) != 0) goto out;
    if ((rc = CFG("workdir", work)) != 0) goto out;
    (void)CFG("redirect_dir", "off");
    (void)CFG("index", "off");
    (void)CFG("metacopy", "off");
#undef CFG
    if (syscall(SYS_fsconfig, fs, HCSEMU_FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
        rc = -errno;
        goto out;
    }
    int mfd = (int)syscall(SYS_fsmount, fs, HCSEMU_FSMOUNT_CLOEXEC, 0);
    if (mfd < 0) {
        rc = -errno;
        goto out;
    }
    if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, target, HCSEMU_MOVE_MOUNT_F_EMPTY_PATH) != 0) rc = -errno;
    close(mfd);
out:
    close(fs);
    return rc;
#else
    (void)target, (void)lowers, (void)upper, (void)work;
    return -ENOSYS;
#endif
}

static void append_escaped(char **buf, size_t *n, const char *s) {
    for (; *s; s++) {
        if (*s == '\\' || *s == ':' || *s == ',') (*buf)[(*n)++] = '\\';
        (*buf)[(*n)++] = *s;
    }
}

static int ovl_mount_legacy(const char *target, const strvec *lowers, const char *upper, const char *work) {
    size_t cap = 128 + 2 * (strlen(upper) + strlen(work));
    for (size_t i = 0; i < lowers->n; i++) cap += 2 * strlen(lowers->v[i]) + 1;
    char *opt = malloc(cap);
    if (!opt) return -ENOMEM;
    size_t n = (size_t)sprintf(opt, "lowerdir=");
    for (size_t i = 0; i < lowers->n; i++) {
        if (i) opt[n++] = ':';
        append_escaped(&opt, &n, lowers->v[i]);
    }
    n += (size_t)sprintf(opt + n, ",upperdir=");
    append_escaped(&opt, &n, upper);
    n += (size_t)sprintf(opt + n, ",workdir=");
    append_escaped(&opt, &n, work);
    opt[n] = 0;
    char *full = emu_printf("%s,redirect_dir=off,index=off", opt);
    int rc = mount("hcsemu", target, "overlay", 0, full ? full : opt) == 0 ? 0 : -errno;
    if (rc == -EINVAL && full) rc = mount("hcsemu", target, "overlay", 0, opt) == 0 ? 0 : -errno;
    free(full);
    free(opt);
    return rc;
}

int ovl_mount(const char *target, const strvec *lowers, const char *upper, const char *work) {
    int rc = ovl_mount_newapi(target, lowers, upper, work);
    if (rc == -ENOSYS) rc = ovl_mount_legacy(target, lowers, upper, work);
    return rc;
}

static int g_ovl_state = -1; /* -1 not probed, 0 unavailable, 1 available (under g_mu) */
int g_ovl_errno;      /* errno of a failed probe */
char g_ovl_why[256];

bool overlay_probe(void) {
    if (g_ovl_state >= 0) return g_ovl_state == 1;
    g_ovl_state = 0;
    char *base = runtime_sub("storage");
    char *dir = base ? emu_printf("%s/probe-XXXXXX", base) : NULL;
    free(base);
    if (!dir || !mkdtemp(dir)) {
        snprintf(g_ovl_why, sizeof g_ovl_why, "no runtime directory to probe overlayfs in");
        free(dir);
        return false;
    }
    char *l = path_join(dir, "l"), *u = path_join(dir, "u"), *w = path_join(dir, "w"), *m = path_join(dir, "m");
    int rc = -ENOMEM;
    if (l && u && w && m && mkdir(l, 0700) == 0 && mkdir(u, 0700) == 0 && mkdir(w, 0700) == 0 && mkdir(m, 0700) == 0) {
        /* whiteouts and opaque marks must be possible in an upper layer, and the mount itself */
        int ufd = open_dir_path(u);
        rc = 0;
        if (ufd < 0 || mknodat(ufd, "wh", S_IFCHR, makedev(0, 0)) != 0 || mkdirat(ufd, "op", 0755) != 0 ||
            fsetxattr(ufd, OVL_OPAQUE_XATTR, "y", 1, 0) != 0)
            rc = -errno;
        if (ufd >= 0) close(ufd);
        strvec lo = {0};
        if (rc == 0) rc = sv_pushdup(&lo, l) ? ovl_mount(m, &lo, u, w) : -ENOMEM;
        sv_free(&lo);
        if (rc == 0) umount2(m, MNT_DETACH);
    } else if (l && u && w && m) {
        rc = -errno;
    }
    if (rc == 0) {
        g_ovl_state = 1;
    } else {
        g_ovl_errno = -rc;
        snprintf(g_ovl_why, sizeof g_ovl_why, "%s", strerror(-rc));
    }
    (void)rm_tree_path(dir);
    free(l);
    free(u);
    free(w);
    free(m);
    free(dir);
    return g_ovl_state == 1;
}

bool is_mountpoint_at(int pfd, const char *name) {
    uint64_t a = 0, b = 0;
    dev_t da = 0, db = 0;
    if (mount_id_at(pfd, "", &a, &da) != 0 || mount_id_at(pfd, name, &b, &db) != 0) return false;
    return a != b || da != db; /* mount ids tell bind mounts of the same file system apart */
}

/* Makes tombstones native overlayfs marks in files_fd (a layer's Files): whiteout devices for
 * deleted paths, opaque marks on replaced directories. below: the Files dirs of the layers
 * underneath (top-most first), whose directories give the modes of directories created on the
 * way; a tombstone nothing below has is skipped. */
HRESULT ensure_native_marks(int files_fd, const strvec *tombs, const int *below, size_t nbelow) {
    for (size_t i = 0; i < tombs->n; i++) {
        const char *t = tombs->v[i];
        /* is there anything below to hide? */
        bool below_has = false;
        for (size_t j = 0; j < nbelow && !below_has; j++) {
            struct stat bst;
            const char *leaf;
            char *parent = rel_split(t, &leaf);
            int pfd = parent ? open_rel_dir(below[j], parent, false) : -ENOMEM;
            free(parent);
            if (pfd >= 0) {
                below_has = fstatat(pfd, leaf, &bst, AT_SYMLINK_NOFOLLOW) == 0;
                close(pfd);
            }
        }
        if (!below_has) continue;
        /* walk/create the parents in this layer, modelled on the layers below */
        char *dup = strdup(t);
        if (!dup) return E_OUTOFMEMORY;
        int fd = openat(files_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        char *save = NULL, *c = strtok_r(dup, "/", &save);
        size_t consumed = 0;
        bool moot = false;
        HRESULT hr = S_OK;
        while (fd >= 0 && c) {
            char *next = strtok_r(NULL, "/", &save);
            if (!next) break; /* c is the leaf */
            consumed += strlen(c) + 1;
            struct stat st;
            if (fstatat(fd, c, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                struct stat model;
                bool have_model = false;
                char *prefix = strndup(t, consumed - 1);
                for (size_t j = 0; prefix && j < nbelow && !have_model; j++) {
                    int mfd = open_rel_dir(below[j], prefix, false);
                    if (mfd >= 0) {
                        have_model = fstat(mfd, &model) == 0;
                        close(mfd);
                    }
                }
                free(prefix);
                if (mkdirat(fd, c, have_model ? (model.st_mode & 07777) : 0755) != 0) {
                    hr = fail_errno(errno, "mkdir", t);
                    break;
                }
                int nfd = open_dir_at(fd, c);
                if (nfd >= 0 && have_model) set_meta_fd(nfd, &model);
                close(fd);
                fd = nfd;
            } else if (S_ISDIR(st.st_mode)) {
                int nfd = open_dir_at(fd, c);
                close(fd);
                fd = nfd;
            } else {
                moot = true; /* a non-directory of this layer already hides everything below it */
                break;
            }
            c = next;
        }
        if (hr == S_OK && fd < 0) hr = fail_errno(errno, "open", t);
        if (hr == S_OK && !moot && c) {
            struct stat st;
            if (fstatat(fd, c, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (mknodat(fd, c, S_IFCHR | 0000, makedev(0, 0)) != 0) hr = fail_errno(errno, "whiteout", t);
            } else if (S_ISDIR(st.st_mode)) {
                int dfd = open_dir_at(fd, c);
                if (dfd < 0 || fsetxattr(dfd, OVL_OPAQUE_XATTR, "y", 1, 0) != 0) hr = fail_errno(errno, "opaque mark", t);
                if (dfd >= 0) close(dfd);
            }
        }
        if (fd >= 0) close(fd);
        free(dup);
        if (hr != S_OK) return hr;
    }
    return S_OK;
}

/* The reverse, for a writable layer's Files after overlayfs used it as its upper layer:
 * whiteouts and opaque marks become tombstones (added to tombs), other overlayfs attributes go,
 * and directories that carry nothing (empty, not opaque, same mode and owner as below) are
 * pruned. Returns whether the directory itself may be pruned through *prunable. */
HRESULT native_to_tombstones(int dfd, const char *rel, strvec *tombs, const int *below, size_t nbelow,
                                    bool *prunable, size_t depth) {
    if (depth >= TREE_MAX_DEPTH)
        return storage_fail(HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), "%.200s...: directories nested deeper than %d levels",
                    rel, TREE_MAX_DEPTH);
    strvec names = {0};
    int r = list_dir(dfd, &names);
    if (r) {
        sv_free(&names);
        return fail_errno(-r, "list", rel);
    }
    HRESULT hr = S_OK;
    size_t kept = 0;
    for (size_t i = 0; i < names.n && hr == S_OK; i++) {
        const char *n = names.v[i];
        char *crel = *rel ? emu_printf("%s/%s", rel, n) : strdup(n);
        if (!crel) {
            hr = E_OUTOFMEMORY;
            break;
        }
        struct stat st;
        if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            hr = fail_errno(errno, "stat", crel);
        } else if (is_whiteout(&st)) {
            if (unlinkat(dfd, n, 0) != 0)
                hr = fail_errno(errno, "remove whiteout", crel);
            else if (!sv_push(tombs, crel))
                hr = E_OUTOFMEMORY;
            crel = NULL;
        } else {
            /* drop trusted.overlay.* attributes (origin, impure, opaque, ...) */
            char xp[64];
            snprintf(xp, sizeof xp, "/proc/self/fd/%d/", dfd);
            char *full = emu_printf("%s%s", xp, n);
            bool opaque = false;
            enum { XLIST = 4096 };
            char *list = malloc(XLIST); /* on the heap: this frame is repeated once per level */
            ssize_t ln = full && list ? llistxattr(full, list, XLIST) : -1;
            for (ssize_t off = 0; ln > 0 && off < ln; off += (ssize_t)strlen(list + off) + 1) {
                const char *x = list + off;
                if (strncmp(x, OVL_XATTR_PREFIX, strlen(OVL_XATTR_PREFIX)) != 0) continue;
                if (strcmp(x, OVL_OPAQUE_XATTR) == 0) {
                    char v[8];
                    ssize_t vl = lgetxattr(full, x, v, sizeof v);
                    opaque = vl >= 1 && (v[0] == 'y' || v[0] == 'x');
                }
                (void)lremovexattr(full, x);
            }
            free(list);
            free(full);
            bool child_prunable = false;
            if (S_ISDIR(st.st_mode)) {
                int cfd = open_dir_at(dfd, n);
                if (cfd < 0) {
                    hr = fail_errno(errno, "open", crel);
                } else {
                    int *cb = malloc((nbelow ? nbelow : 1) * sizeof *cb);
                    size_t ncb = 0;
                    for (size_t j = 0; cb && j < nbelow; j++) {
                        int f = below[j] >= 0 ? open_dir_at(below[j], n) : -1;
                        if (f >= 0) cb[ncb++] = f;
                    }
                    hr = cb ? native_to_tombstones(cfd, crel, tombs, cb, ncb, &child_prunable, depth + 1) : E_OUTOFMEMORY;
                    for (size_t j = 0; j < ncb; j++) close(cb[j]);
                    free(cb);
                    close(cfd);
                }
                if (hr == S_OK && opaque) {
                    child_prunable = false;
                    if (!sv_push(tombs, crel)) hr = E_OUTOFMEMORY;
                    crel = NULL;
                }
                if (hr == S_OK && child_prunable) {
                    /* same mode/owner as the first directory below? */
                    child_prunable = false;
                    for (size_t j = 0; j < nbelow; j++) {
                        struct stat bst;
                        if (fstatat(below[j], n, &bst, AT_SYMLINK_NOFOLLOW) != 0) continue;
                        child_prunable = S_ISDIR(bst.st_mode) && bst.st_mode == st.st_mode &&
                                         bst.st_uid == st.st_uid && bst.st_gid == st.st_gid;
                        break;
                    }
                    if (child_prunable && unlinkat(dfd, n, AT_REMOVEDIR) != 0) child_prunable = false;
                }
            }
            if (!child_prunable) kept++;
        }
        free(crel);
    }
    sv_free(&names);
    *prunable = hr == S_OK && kept == 0;
    return hr;
}
