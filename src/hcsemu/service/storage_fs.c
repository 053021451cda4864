/*
 * File-system primitives of the storage service: string vectors, path arguments, directory
 * walks, deletion, copies, small files.
 */
#define _GNU_SOURCE
#include "storage_int.h"

/* ------------------------------------------------------------------ string vectors */

bool sv_push(strvec *s, char *owned) {
    if (!owned) return false;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 8;
        char **nv = realloc(s->v, nc * sizeof *nv);
        if (!nv) {
            free(owned);
            return false;
        }
        s->v = nv;
        s->cap = nc;
    }
    s->v[s->n++] = owned;
    return true;
}

bool sv_pushdup(strvec *s, const char *str) { return sv_push(s, strdup(str)); }

void sv_free(strvec *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void sv_sort_unique(strvec *s) {
    if (s->n < 2) return;
    qsort(s->v, s->n, sizeof *s->v, cmp_strp);
    size_t o = 1;
    for (size_t i = 1; i < s->n; i++) {
        if (strcmp(s->v[i], s->v[o - 1]) == 0)
            free(s->v[i]);
        else
            s->v[o++] = s->v[i];
    }
    s->n = o;
}

bool sv_has_sorted(const strvec *s, const char *x) {
    return s->n && bsearch(&x, s->v, s->n, sizeof *s->v, cmp_strp) != NULL;
}

bool sv_equal(const strvec *a, const strvec *b) {
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0) return false;
    return true;
}

char *path_join(const char *a, const char *b) {
    if (!a || !*a) return strdup(b);
    size_t la = strlen(a);
    return emu_printf("%s%s%s", a, a[la - 1] == '/' ? "" : "/", b);
}

/* ------------------------------------------------------------------ path arguments */

/* Normalises an argument path (see PATH ARGUMENTS). */
HRESULT norm_abs_path(const char *in, const char *what, char **out) {
    *out = NULL;
    if (!in || !*in) return storage_fail(E_INVALIDARG, "%s: empty path", what);
    size_t n = strlen(in);
    char *tmp = strdup(in);
    char *res = malloc(n + 2);
    if (!tmp || !res) {
        free(tmp);
        free(res);
        return E_OUTOFMEMORY;
    }
    for (size_t i = 0; i < n; i++)
        if (tmp[i] == '\\') tmp[i] = '/';
    if (tmp[0] != '/') {
        free(tmp);
        free(res);
        return storage_fail(E_INVALIDARG, "%s: '%s' is not an absolute POSIX path", what, in);
    }
    size_t o = 0;
    char *save = NULL;
    for (char *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0) continue;
        if (strcmp(c, "..") == 0) {
            free(tmp);
            free(res);
            return storage_fail(E_INVALIDARG, "%s: '%s' has a '..' component", what, in);
        }
        res[o++] = '/';
        size_t l = strlen(c);
        memcpy(res + o, c, l);
        o += l;
    }
    if (o == 0) res[o++] = '/';
    res[o] = 0;
    free(tmp);
    *out = res;
    return S_OK;
}

/* A layer-relative name: no leading/trailing '/', no empty, "." or ".." component. */
bool rel_valid(const char *r) {
    if (!r || !*r || r[0] == '/') return false;
    const char *p = r;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 0) return false;
        if (l == 1 && p[0] == '.') return false;
        if (l == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!e) break;
        p = e + 1;
        if (!*p) return false;
    }
    return true;
}

/* a == b or a lies below b (both normalised absolute). */
bool path_within(const char *a, const char *b) {
    if (strcmp(b, "/") == 0) return true;
    size_t lb = strlen(b);
    return strncmp(a, b, lb) == 0 && (a[lb] == 0 || a[lb] == '/');
}

/* Resolves an existing directory argument to its real path. */
HRESULT resolve_dir(const char *norm, const char *what, char **real) {
    *real = NULL;
    struct stat st;
    if (stat(norm, &st) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return storage_fail(HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND), "%s %s does not exist", what, norm);
        return fail_errno(e, what, norm);
    }
    if (!S_ISDIR(st.st_mode)) return storage_fail(HRESULT_FROM_WIN32(ERROR_DIRECTORY), "%s %s is not a directory", what, norm);
    char *r = realpath(norm, NULL);
    if (!r) return fail_errno(errno, what, norm);
    *real = r;
    return S_OK;
}

/* ------------------------------------------------------------------ file-system primitives */

int open_dir_at(int dfd, const char *name) {
    return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int open_dir_path(const char *path) { return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); }

bool is_whiteout(const struct stat *st) { return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0); }

/* Names in a directory (sorted, without . and ..). Returns 0 or -errno. */
int list_dir(int dfd, strvec *out) {
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return -e;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno) rc = -errno;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (!sv_pushdup(out, de->d_name)) {
            rc = -ENOMEM;
            break;
        }
    }
    closedir(d);
    if (rc == 0 && out->n > 1) qsort(out->v, out->n, sizeof *out->v, cmp_strp);
    return rc;
}

int dir_is_empty(int dfd) {
    strvec names = {0};
    int rc = list_dir(dfd, &names);
    size_t n = names.n;
    sv_free(&names);
    if (rc < 0) return rc;
    return n == 0;
}

/* The mount a name resolves to (0 with -errno when unknown): statx's mount id tells apart
 * mounts of the same file system (bind mounts), which st_dev cannot. */
int mount_id_at(int dfd, const char *name, uint64_t *id, dev_t *dev) {
    struct statx sx;
    if (statx(dfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (*name ? 0 : AT_EMPTY_PATH),
              STATX_MNT_ID | STATX_TYPE, &sx) != 0)
        return -errno;
    *id = (sx.stx_mask & STATX_MNT_ID) ? sx.stx_mnt_id : 0;
    *dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
    return 0;
}

typedef struct rm_frame {
    int fd;          /* the directory being emptied */
    char *name;      /* its name in the frame below (or in the caller's dfd) */
    strvec names;    /* its entries */
    size_t next;
} rm_frame;

/* One pass over dfd/name, depth first with an explicit stack (no recursion: the depth is the
 * tree's, which whoever wrote the tree chose). Never follows a symlink; any directory on
 * another mount (a different mount id or device: bind mounts included) stops the pass with
 * -EBUSY. delete: false only checks; true removes each entry after its contents. max_depth
 * (0: none): a directory nested deeper stops the pass with -ENAMETOOLONG. */
int rm_tree_pass(int dfd, const char *name, bool delete, size_t max_depth) {
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode)) {
        if (delete && unlinkat(dfd, name, 0) != 0 && errno != ENOENT) return -errno;
        return 0;
    }
    uint64_t pmnt = 0, mnt = 0;
    dev_t pdev = 0, dev = 0;
    int r = mount_id_at(dfd, "", &pmnt, &pdev);
    if (r == 0) r = mount_id_at(dfd, name, &mnt, &dev);
    if (r) return r;
    if (mnt != pmnt || dev != pdev) return -EBUSY; /* a mount point: never delete through it */
    size_t cap = 16, top = 0;
    rm_frame *stk = calloc(cap, sizeof *stk);
    if (!stk) return -ENOMEM;
    int rc = 0;
    const char *cname = name;
    int cparent = dfd;
    mode_t cmode = st.st_mode;
    for (;;) {
        if (cname) { /* enter the directory cparent/cname (already checked: same mount) */
            if (delete && (cmode & 0700) != 0700) (void)fchmodat(cparent, cname, 0700, 0);
            int fd = open_dir_at(cparent, cname);
            if (fd < 0) {
                rc = -errno;
                break;
            }
            uint64_t m2 = 0;
            dev_t d2 = 0;
            if ((rc = mount_id_at(fd, "", &m2, &d2)) != 0 || m2 != mnt || d2 != dev) {
                close(fd);
                rc = rc ? rc : -EBUSY; /* swapped for a mount since the check */
                break;
            }
            if (max_depth && top >= max_depth) {
                close(fd);
                rc = -ENAMETOOLONG;
                break;
            }
            if (top == cap) {
                rm_frame *n = realloc(stk, cap * 2 * sizeof *n);
                if (!n) {
                    close(fd);
                    rc = -ENOMEM;
                    break;
                }
                stk = n;
                cap *= 2;
            }
            rm_frame *f = &stk[top++];
            memset(f, 0, sizeof *f);
            f->fd = fd;
            f->name = strdup(cname);
            if (!f->name) {
                rc = -ENOMEM;
                break;
            }
            if ((rc = list_dir(fd, &f->names)) != 0) break;
            cname = NULL;
        }
        if (top == 0) break;
        rm_frame *f = &stk[top - 1];
        if (f->next < f->names.n) {
            const char *child = f->names.v[f->next++];
            struct stat cst;
            if (fstatat(f->fd, child, &cst, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT) continue;
                rc = -errno;
                break;
            }
            if (!S_ISDIR(cst.st_mode)) {
                if (delete && unlinkat(f->fd, child, 0) != 0 && errno != ENOENT) {
                    rc = -errno;
                    break;
                }
                continue;
            }
            uint64_t cm = 0;
            dev_t cd = 0;
            if ((rc = mount_id_at(f->fd, child, &cm, &cd)) != 0) break;
            if (cm != mnt || cd != dev) {
                rc = -EBUSY;
                break;
            }
            cname = child;
            cparent = f->fd;
            cmode = cst.st_mode;
            continue;
        }
        /* f is done: leave it, and remove it from its parent */
        int parent = top >= 2 ? stk[top - 2].fd : dfd;
        close(f->fd);
        f->fd = -1;
        if (delete && unlinkat(parent, f->name, AT_REMOVEDIR) != 0 && errno != ENOENT) rc = -errno;
        free(f->name);
        sv_free(&f->names);
        top--;
        if (rc) break;
    }
    while (top) {
        rm_frame *f = &stk[--top];
        if (f->fd >= 0) close(f->fd);
        free(f->name);
        sv_free(&f->names);
    }
    free(stk);
    return rc;
}

/* Removes dfd/name and everything below it without following symlinks, descending into no
 * other mount and without recursion. A first pass only looks: if anything inside is a mount
 * point (a bind mount of the same file system included), nothing is deleted and -EBUSY is
 * returned. Returns 0 (also if it did not exist) or -errno. */
int rm_tree_at(int dfd, const char *name) {
    int rc = rm_tree_pass(dfd, name, false, 0);
    return rc ? rc : rm_tree_pass(dfd, name, true, 0);
}

int rm_tree_path(const char *path) {
    char *dup = strdup(path);
    if (!dup) return -ENOMEM;
    char *slash = strrchr(dup, '/');
    int rc;
    if (!slash || slash == dup) {
        int fd = open_dir_path("/");
        rc = fd < 0 ? -errno : rm_tree_at(fd, slash ? slash + 1 : dup);
        if (fd >= 0) close(fd);
    } else {
        *slash = 0;
        int fd = open_dir_path(dup);
        rc = fd < 0 ? (errno == ENOENT ? 0 : -errno) : rm_tree_at(fd, slash + 1);
        if (fd >= 0) close(fd);
    }
    free(dup);
    return rc;
}

/* Removes every entry of a directory (the directory stays); nothing if a mount is inside. */
int empty_dir(int dfd) {
    strvec names = {0};
    int rc = list_dir(dfd, &names);
    for (size_t i = 0; rc == 0 && i < names.n; i++) rc = rm_tree_pass(dfd, names.v[i], false, 0);
    for (size_t i = 0; rc == 0 && i < names.n; i++) rc = rm_tree_pass(dfd, names.v[i], true, 0);
    sv_free(&names);
    return rc;
}

static void copy_owner_fd(int fd, const struct stat *st) {
    if (geteuid() == 0 && fchown(fd, st->st_uid, st->st_gid) != 0) emu_log("storage: fchown: %s", strerror(errno));
}

void set_meta_fd(int fd, const struct stat *st) {
    copy_owner_fd(fd, st);
    (void)fchmod(fd, st->st_mode & 07777);
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    (void)futimens(fd, ts);
}

static int copy_data(int in, int out) {
    if (ioctl(out, HCSEMU_FICLONE, in) == 0) return 0;
    bool cfr = true;
    for (;;) {
        ssize_t n;
        if (cfr) {
            n = copy_file_range(in, NULL, out, NULL, 1u << 30, 0);
            if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP ||
                          errno == EBADF)) {
                cfr = false;
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) return -errno;
            if (n == 0) return 0;
            continue;
        }
        char buf[1 << 16];
        n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        if (n == 0) return 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return -errno;
            off += w;
        }
    }
}

/* Copies the regular file sfd/sname (whose lstat is *st) to dfd/dname (must not exist). */
static int copy_reg_at(int sfd, const char *sname, const struct stat *st, int dfd, const char *dname) {
    int in = openat(sfd, sname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (in < 0) return -errno;
    struct stat ist;
    if (fstat(in, &ist) != 0 || !S_ISREG(ist.st_mode) || ist.st_ino != st->st_ino) {
        close(in);
        return -ESTALE; /* raced with a rename */
    }
    int out = openat(dfd, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return -e;
    }
    int rc = copy_data(in, out);
    if (rc == 0) set_meta_fd(out, &ist);
    close(in);
    if (close(out) != 0 && rc == 0) rc = -errno;
    if (rc) (void)unlinkat(dfd, dname, 0);
    return rc;
}

int read_link_at(int dfd, const char *name, char **out) {
    size_t cap = 256;
    for (;;) {
        char *buf = malloc(cap);
        if (!buf) return -ENOMEM;
        ssize_t n = readlinkat(dfd, name, buf, cap);
        if (n < 0) {
            int e = errno;
            free(buf);
            return -e;
        }
        if ((size_t)n < cap) {
            buf[n] = 0;
            *out = buf;
            return 0;
        }
        free(buf);
        cap *= 2;
    }
}

static int copy_symlink_at(int sfd, const char *sname, const struct stat *st, int dfd, const char *dname) {
    char *target = NULL;
    int rc = read_link_at(sfd, sname, &target);
    if (rc) return rc;
    if (symlinkat(target, dfd, dname) != 0) rc = -errno;
    free(target);
    if (rc) return rc;
    if (geteuid() == 0) (void)fchownat(dfd, dname, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
    struct timespec ts[2] = {st->st_atim, st->st_mtim};
    (void)utimensat(dfd, dname, ts, AT_SYMLINK_NOFOLLOW);
    return 0;
}

static HRESULT copy_fail_errno(copy_ctx *c, int e, const char *what, const char *rel) {
    if (c->hr == S_OK) c->hr = fail_errno(e, what, rel);
    return c->hr;
}

/* Copies sfd/name to dfd/name. rel is the path for messages. */
HRESULT copy_entry(copy_ctx *c, int sfd, int dfd, const char *name, const char *rel) {
    struct stat st;
    if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return copy_fail_errno(c, errno, "stat", rel);
    bool merge = c->flags & CP_MERGE;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
        if (c->flags & CP_STRICT) {
            c->hr = storage_fail(HCS_E_INVALID_LAYER, "%s is a %s; layers hold only files, directories and symlinks", rel,
                         is_whiteout(&st) ? "whiteout device" : "device, FIFO or socket");
            return c->hr;
        }
        if (is_whiteout(&st)) {
            if (merge) {
                int r = rm_tree_at(dfd, name);
                if (r) return copy_fail_errno(c, -r, "remove", rel);
            }
            return S_OK;
        }
        emu_log("storage: skipping %s (not a file, directory or symlink)", rel);
        return S_OK;
    }
    struct stat dst;
    bool dexists = merge && fstatat(dfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0;
    if (dexists && !(S_ISDIR(st.st_mode) && S_ISDIR(dst.st_mode))) {
        int r = rm_tree_at(dfd, name);
        if (r) return copy_fail_errno(c, -r, "replace", rel);
        dexists = false;
    }
    if (S_ISREG(st.st_mode)) {
        int r = copy_reg_at(sfd, name, &st, dfd, name);
        return r ? copy_fail_errno(c, -r, "copy", rel) : S_OK;
    }
    if (S_ISLNK(st.st_mode)) {
        int r = copy_symlink_at(sfd, name, &st, dfd, name);
        return r ? copy_fail_errno(c, -r, "copy symlink", rel) : S_OK;
    }
    /* directory */
    if (c->depth >= TREE_MAX_DEPTH) {
        if (c->hr == S_OK)
            c->hr = storage_fail(HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), "%.200s...: directories nested deeper than %d "
                         "levels", rel, TREE_MAX_DEPTH);
        return c->hr;
    }
    int s2 = open_dir_at(sfd, name);
    if (s2 < 0) return copy_fail_errno(c, errno, "open", rel);
    if (!dexists && mkdirat(dfd, name, 0700) != 0) {
        int e = errno;
        close(s2);
        return copy_fail_errno(c, e, "mkdir", rel);
    }
    if (dexists && (dst.st_mode & 0700) != 0700) (void)fchmodat(dfd, name, 0700, 0);
    int d2 = open_dir_at(dfd, name);
    if (d2 < 0) {
        int e = errno;
        close(s2);
        return copy_fail_errno(c, e, "open", rel);
    }
    c->depth++;
    HRESULT hr = copy_dir_contents(c, s2, d2, rel);
    c->depth--;
    if (hr == S_OK) set_meta_fd(d2, &st);
    close(s2);
    close(d2);
    return hr;
}

HRESULT copy_dir_contents(copy_ctx *c, int sfd, int dfd, const char *rel) {
    strvec names = {0};
    int r = list_dir(sfd, &names);
    if (r) {
        sv_free(&names);
        return copy_fail_errno(c, -r, "list", rel);
    }
    HRESULT hr = S_OK;
    for (size_t i = 0; hr == S_OK && i < names.n; i++) {
        char *crel = rel && *rel ? emu_printf("%s/%s", rel, names.v[i]) : strdup(names.v[i]);
        if (!crel) {
            hr = E_OUTOFMEMORY;
            break;
        }
        hr = copy_entry(c, sfd, dfd, names.v[i], crel);
        free(crel);
    }
    sv_free(&names);
    return hr;
}

/* Opens the directory at root/rel without following any symlink; -errno on failure.
 * create: missing components are made (mode 0755). */
int open_rel_dir(int root, const char *rel, bool create) {
    int fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    if (!rel || !*rel) return fd;
    char *dup = strdup(rel);
    if (!dup) {
        close(fd);
        return -ENOMEM;
    }
    char *save = NULL;
    for (char *c = strtok_r(dup, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        int nfd = open_dir_at(fd, c);
        if (nfd < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, c, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                close(fd);
                free(dup);
                return -e;
            }
            nfd = open_dir_at(fd, c);
        }
        if (nfd < 0) {
            int e = errno == ELOOP ? ENOTDIR : errno;
            close(fd);
            free(dup);
            return -e;
        }
        close(fd);
        fd = nfd;
    }
    free(dup);
    return fd;
}

/* Splits rel into its parent (malloc'd, "" for top level) and leaf (points into rel). */
char *rel_split(const char *rel, const char **leaf) {
    const char *s = strrchr(rel, '/');
    if (!s) {
        *leaf = rel;
        return strdup("");
    }
    *leaf = s + 1;
    return strndup(rel, (size_t)(s - rel));
}

/* Removes root/rel (a tombstone applied to a materialised tree). Missing is fine, and so is a
 * path through a non-directory or symlink: nothing is there to remove. */
int rm_rel(int root, const char *rel) {
    const char *leaf;
    char *parent = rel_split(rel, &leaf);
    if (!parent) return -ENOMEM;
    int pfd = open_rel_dir(root, parent, false);
    free(parent);
    if (pfd < 0) return (pfd == -ENOENT || pfd == -ENOTDIR) ? 0 : pfd;
    int rc = rm_tree_at(pfd, leaf);
    close(pfd);
    return rc;
}

HRESULT write_file_at(int dfd, const char *name, const char *data, size_t len, mode_t mode) {
    char tmp[NAME_MAX + 1];
    snprintf(tmp, sizeof tmp, ".%s.tmp%d", name, (int)getpid());
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) return fail_errno(errno, "create", name);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            unlinkat(dfd, tmp, 0);
            return fail_errno(e, "write", name);
        }
        off += (size_t)w;
    }
    if (close(fd) != 0 || renameat(dfd, tmp, dfd, name) != 0) {
        int e = errno;
        unlinkat(dfd, tmp, 0);
        return fail_errno(e, "write", name);
    }
    return S_OK;
}

/* Reads a regular file (not through a symlink). -errno; *out NUL-terminated. */
int read_file_at(int dfd, const char *name, size_t max, char **out, size_t *len) {
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL;
    }
    if ((size_t)st.st_size > max) {
        close(fd);
        return -EFBIG;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            if (cap > max) {
                free(buf);
                close(fd);
                return -EFBIG;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return -e;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return 0;
}
