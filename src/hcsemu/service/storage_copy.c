/*
 * Merged views by copying (where overlayfs is unavailable): materialising a layer chain and
 * diffing the view back into the writable layer.
 */
#define _GNU_SOURCE
#include "storage_int.h"

/* ------------------------------------------------------------------ copy-mode views */

void chain_free(chain *c) {
    for (size_t i = 0; i < c->n; i++) {
        free(c->l[i].path);
        if (c->l[i].files_fd >= 0) close(c->l[i].files_fd);
        sv_free(&c->l[i].tombs);
    }
    free(c->l);
    c->l = NULL;
    c->n = 0;
}

/* Opens layers (top-most first) for reading. */
HRESULT chain_open(const strvec *paths, chain *c) {
    c->l = calloc(paths->n ? paths->n : 1, sizeof *c->l);
    c->n = 0;
    if (!c->l) return E_OUTOFMEMORY;
    for (size_t i = 0; i < paths->n; i++) {
        chain_layer *cl = &c->l[c->n++];
        cl->files_fd = -1;
        cl->path = strdup(paths->v[i]);
        int lfd = open_dir_path(paths->v[i]);
        if (!cl->path || lfd < 0) return lfd < 0 ? fail_errno(errno, "open layer", paths->v[i]) : E_OUTOFMEMORY;
        cl->files_fd = open_dir_at(lfd, "Files");
        HRESULT hr = cl->files_fd < 0 ? storage_fail(HCS_E_INVALID_LAYER, "%s/Files: %s", paths->v[i], strerror(errno))
                                      : tomb_read(lfd, paths->v[i], &cl->tombs);
        close(lfd);
        if (hr != S_OK) return hr;
    }
    return S_OK;
}

/* Materialises layers [from, c->n) (applied base first) into the directory dst_fd. */
HRESULT chain_materialise(const chain *c, size_t from, int dst_fd) {
    for (size_t k = c->n; k-- > from;) {
        const chain_layer *l = &c->l[k];
        for (size_t t = 0; t < l->tombs.n; t++) {
            int r = rm_rel(dst_fd, l->tombs.v[t]);
            if (r) return fail_errno(-r, "apply tombstone", l->tombs.v[t]);
        }
        copy_ctx cc = {.flags = CP_MERGE, .hr = S_OK};
        HRESULT hr = copy_dir_contents(&cc, l->files_fd, dst_fd, "");
        if (hr != S_OK) return hr;
    }
    return S_OK;
}

/* Output directory created on demand while diffing. */

static int outdir_fd(outdir *o) {
    if (o->fd >= 0) return o->fd;
    int pfd = outdir_fd(o->parent);
    if (pfd < 0) return -1;
    if (mkdirat(pfd, o->name, 0700) != 0 && errno != EEXIST) return -1;
    o->fd = open_dir_at(pfd, o->name);
    return o->fd;
}

static int same_content(int afd, const char *an, int bfd, const char *bn) {
    int a = openat(afd, an, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (a < 0) return -errno;
    int b = openat(bfd, bn, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (b < 0) {
        int e = errno;
        close(a);
        return -e;
    }
    char ba[1 << 15], bb[1 << 15];
    int res = 1;
    for (;;) {
        ssize_t ra = read(a, ba, sizeof ba);
        if (ra < 0 && errno == EINTR) continue;
        if (ra < 0) {
            res = -errno;
            break;
        }
        ssize_t rb = 0;
        while (rb < ra) {
            ssize_t x = read(b, bb + rb, (size_t)(ra - rb));
            if (x < 0 && errno == EINTR) continue;
            if (x <= 0) break;
            rb += x;
        }
        if (rb != ra || memcmp(ba, bb, (size_t)ra) != 0) {
            res = 0;
            break;
        }
        if (ra == 0) break;
    }
    close(a);
    close(b);
    return res;
}

/* Does merged entry m differ from base entry b (both lstat'ed, same non-directory type)? */
static int entry_differs(int mfd, int bfd, const char *n, const struct stat *ms, const struct stat *bs) {
    if ((ms->st_mode & S_IFMT) != (bs->st_mode & S_IFMT) || ms->st_mode != bs->st_mode ||
        ms->st_uid != bs->st_uid || ms->st_gid != bs->st_gid)
        return 1;
    if (S_ISLNK(ms->st_mode)) {
        char *a = NULL, *b = NULL;
        int r1 = read_link_at(mfd, n, &a), r2 = read_link_at(bfd, n, &b);
        int res = (r1 || r2) ? (r1 ? r1 : r2) : strcmp(a, b) != 0;
        free(a);
        free(b);
        return res;
    }
    if (ms->st_size != bs->st_size || ms->st_mtim.tv_sec != bs->st_mtim.tv_sec ||
        ms->st_mtim.tv_nsec != bs->st_mtim.tv_nsec)
        return 1;
    int same = same_content(mfd, n, bfd, n);
    return same < 0 ? same : !same;
}

/* Writes into out what turns base into merged (bfd -1: nothing below). */
HRESULT diff_dir(int mfd, int bfd, outdir *out, const char *rel, strvec *tombs, size_t depth) {
    if (depth >= TREE_MAX_DEPTH)
        return storage_fail(HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), "%.200s...: directories nested deeper than %d levels",
                    rel, TREE_MAX_DEPTH);
    strvec mn = {0}, bn = {0};
    int r = list_dir(mfd, &mn);
    if (r == 0 && bfd >= 0) r = list_dir(bfd, &bn);
    if (r) {
        sv_free(&mn);
        sv_free(&bn);
        return fail_errno(-r, "list", rel);
    }
    HRESULT hr = S_OK;
    for (size_t i = 0; i < mn.n && hr == S_OK; i++) {
        const char *n = mn.v[i];
        char *crel = *rel ? emu_printf("%s/%s", rel, n) : strdup(n);
        if (!crel) {
            hr = E_OUTOFMEMORY;
            break;
        }
        struct stat ms, bs;
        if (fstatat(mfd, n, &ms, AT_SYMLINK_NOFOLLOW) != 0) {
            hr = fail_errno(errno, "stat", crel);
            free(crel);
            break;
        }
        bool representable = S_ISDIR(ms.st_mode) || S_ISREG(ms.st_mode) || S_ISLNK(ms.st_mode);
        bool in_base = bfd >= 0 && fstatat(bfd, n, &bs, AT_SYMLINK_NOFOLLOW) == 0;
        if (!representable) {
            emu_log("storage: %s in the merged view is not a file, directory or symlink: not kept", crel);
            if (in_base && !sv_push(tombs, crel)) hr = E_OUTOFMEMORY;
            else if (!in_base) free(crel);
            continue;
        }
        if (S_ISDIR(ms.st_mode) && in_base && S_ISDIR(bs.st_mode)) {
            int m2 = open_dir_at(mfd, n), b2 = open_dir_at(bfd, n);
            if (m2 < 0 || b2 < 0) {
                hr = fail_errno(errno, "open", crel);
            } else {
                outdir child = {.parent = out, .name = n, .fd = -1, .model_fd = m2};
                if (ms.st_mode != bs.st_mode || ms.st_uid != bs.st_uid || ms.st_gid != bs.st_gid) {
                    if (outdir_fd(&child) < 0) hr = fail_errno(errno, "mkdir", crel);
                }
                if (hr == S_OK) hr = diff_dir(m2, b2, &child, crel, tombs, depth + 1);
                if (child.fd >= 0) {
                    if (hr == S_OK) set_meta_fd(child.fd, &ms);
                    close(child.fd);
                }
            }
            if (m2 >= 0) close(m2);
            if (b2 >= 0) close(b2);
            free(crel);
            continue;
        }
        int differs = 1;
        if (in_base && !S_ISDIR(ms.st_mode) && !S_ISDIR(bs.st_mode)) differs = entry_differs(mfd, bfd, n, &ms, &bs);
        if (differs < 0) {
            hr = fail_errno(-differs, "compare", crel);
        } else if (differs) {
            int ofd = outdir_fd(out);
            if (ofd < 0) {
                hr = fail_errno(errno, "mkdir", rel);
            } else {
                copy_ctx cc = {.flags = 0, .hr = S_OK, .depth = depth + 1};
                hr = copy_entry(&cc, mfd, ofd, n, crel);
            }
        }
        free(crel);
    }
    for (size_t i = 0; i < bn.n && hr == S_OK; i++) {
        struct stat ms;
        if (fstatat(mfd, bn.v[i], &ms, AT_SYMLINK_NOFOLLOW) == 0) continue;
        if (errno != ENOENT) {
            hr = fail_errno(errno, "stat", bn.v[i]);
            break;
        }
        char *crel = *rel ? emu_printf("%s/%s", rel, bn.v[i]) : strdup(bn.v[i]);
        if (!sv_push(tombs, crel)) hr = E_OUTOFMEMORY;
    }
    sv_free(&mn);
    sv_free(&bn);
    return hr;
}
