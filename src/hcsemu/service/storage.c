/*
 * Container storage: the twelve computestorage.dll functions, really done on Linux.
 *
 * PATH ARGUMENTS
 *   Paths arrive as UTF-16. They must be absolute POSIX paths; backslashes are read as '/'
 *   (so "\\tmp\\layers\\base" is "/tmp/layers/base"), repeated separators, "." components and
 *   a trailing separator are dropped. A ".." component, a relative path or a Windows drive
 *   path ("C:\\...") is refused with E_INVALIDARG. The argument paths themselves are resolved
 *   normally (they are the caller's); everything *inside* a layer is walked with
 *   openat(O_NOFOLLOW)/fstatat(AT_SYMLINK_NOFOLLOW): symlinks are copied as symlinks and never
 *   followed, so nothing outside a layer is ever read, written or deleted through one.
 *
 * DELETION AND TREE WALKS
 *   Trees are deleted without recursion (an explicit stack), never through a symlink, and
 *   never across a mount: mount ids (statx STATX_MNT_ID) tell bind mounts of the same file
 *   system apart. A first pass only looks; if anything inside is a mount point, nothing is
 *   deleted and the call fails with HRESULT_FROM_WIN32(ERROR_BUSY) (destroy, detach). The walks
 *   that copy, compare and convert layers run on a thread of their own with a large stack and
 *   accept at most TREE_MAX_DEPTH (4096) nested directories; a detach checks both limits
 *   before it changes anything, so a refused detach leaves the layer attached and usable.
 *
 * LAYER FOLDERS (the Windows layout)
 *   Files/           the layer's file system (required)
 *   Hives/           registry hives (HcsSetupBaseOSLayer creates placeholder hive files)
 *   layout           a regular file HcsSetupBaseOSLayer writes (JSON of our own)
 *   UtilityVM/       optional UtilityVM/Files for VM base layers
 *   tombstones.txt   deletions this layer makes in its parents (see below); absent if none
 *   blank-base.vhdx, blank.vhdx, sandbox.vhdx, other .vhd/.vhdx files: disk images callers keep here
 *   .hcsemu/         emulator metadata of writable layers (layer.json, overlay work dir)
 *   Merged/          the merged view of an attached writable layer (see MERGED VIEW)
 *   An import source / export folder (the "transport format") holds only Files, Hives, layout,
 *   UtilityVM and tombstones.txt; Files is required. Anything else, a symlink or a wrong type
 *   at the top level, or a device/FIFO/socket anywhere inside, is HCS_E_INVALID_LAYER.
 *   Hard links are copied as separate files; extended attributes are not copied.
 *
 * TOMBSTONES (our export format for deletions)
 *   tombstones.txt is UTF-8 text, one deleted path per line, relative to Files/ with '/'
 *   separators. Lines that are empty or start with '#' are ignored. In each path the bytes
 *   '%', '#', control characters, DEL and bytes that are not part of valid UTF-8 are written
 *   as %XX (hex), so every Linux file name round-trips. "." / ".." / empty components are
 *   refused (HCS_E_INVALID_LAYER). Meaning: a tombstoned path hides whatever the parent layers
 *   have there; if this layer also has that path as a directory, that directory replaces the
 *   parents' one (it is "opaque"). The set is kept sorted and reduced (entries below another
 *   tombstone are dropped), so export -> import -> export is stable.
 *
 * WRITABLE LAYERS
 *   HcsInitializeWritableLayer creates Files/ and .hcsemu/layer.json:
 *     {"Kind":"WritableLayer","LayerData":<as given>,"Parents":[<resolved parent folders,
 *      top-most parent first, base last>],"Attached":{"Mode":"overlay"|"copy","View":<path>}}
 *   ("Attached" only while the storage filter is attached; "LegacyFolder" for legacy layers).
 *   While detached, a writable layer is stored exactly like any layer: changed and new files in
 *   Files/, deletions in tombstones.txt, so it exports like any other layer.
 *   A legacy writable layer (HcsInitializeLegacyWritableLayer) is a writable layer rooted at
 *   the mount path (for instance the folder HcsGetLayerVhdMountPath returned) whose Hives/
 *   live in the separate layer folder; that folder gets .hcsemu/layer.json
 *   {"Kind":"LegacyWritableFolder","MountPath":...}.
 *
 * MERGED VIEW (HcsAttachLayerStorageFilter / HcsDetachLayerStorageFilter)
 *   The view is the directory <writable layer>/Merged; storage_merged_view_path() returns it.
 *   Reads see the writable layer over its parents (top-most first); writes land in the
 *   writable layer; deleting a parent's file hides it (whiteout). Two mechanisms:
 *   - overlay: a real overlayfs mount on Merged, lowerdir = the parents' Files (top-most first),
 *     upperdir = <writable>/Files, workdir = <writable>/.hcsemu/work, with redirect_dir,
 *     index and metacopy off so that the upper layer holds only whole files, whiteouts and
 *     opaque marks. At attach, tombstones are turned into overlayfs whiteouts (0:0 character
 *     devices) and opaque directories (trusted.overlay.opaque=y) in the writable layer; a
 *     parent's tombstones get such marks added too (they mean the same as its tombstones.txt,
 *     which stays authoritative). At detach the mount is removed (ERROR_BUSY while a process
 *     still uses it) and the marks are converted back into tombstones.txt.
 *   - copy: needs no privilege. Attach materialises the merged tree into Merged (parents
 *     applied base first, tombstones applied before each layer's files). Detach materialises
 *     the parents again, compares, and rewrites the writable layer as the difference: new and
 *     changed files (content, type, mode, owner, mtime, link target) in Files/, deleted paths in
 *     tombstones.txt; then removes Merged. A process still inside Merged at detach loses it.
 *   HCSEMU_STORAGE_MODE=overlay|copy|auto (default auto) chooses. auto probes overlayfs once
 *   per process (a throw-away mount in the runtime dir) and uses copy, logging why once, when
 *   overlayfs is unavailable (not root, no overlay in the kernel, ...) or when the real mount
 *   fails; overlay makes such failures errors (HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED) or
 *   E_ACCESSDENIED).
 *
 * REGISTRY (in-use protection)
 *   Besides the per-layer "Attached" record, every attached writable layer has an entry
 *   <runtime>/storage/attached/<hash>.json {"Path","Mode","Parents"} so that every process
 *   using the library (and a future service daemon) sees which layers are in use. Entries
 *   whose layer is gone or no longer attached are pruned when seen. A process mutex plus
 *   flock(<runtime>/storage/lock) serialise attach, detach, destroy, initialise and export.
 *   HcsDestroyLayer fails with HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION) for an attached
 *   layer or a parent of an attached layer; an attached layer cannot be exported, re-attached
 *   (HCS_E_INVALID_STATE) or used as a parent of another attach (ERROR_SHARING_VIOLATION).
 *   The runtime dir is $HCSEMU_RUNTIME_DIR, else /run/hcsemu (root), $XDG_RUNTIME_DIR/hcsemu,
 *   or /tmp/hcsemu-<uid> (created 0700).
 *
 * VHDS
 *   A VHD HANDLE is a POSIX file descriptor cast to HANDLE (NULL and fd 0 are "no handle").
 *   It must be an open regular file (E_HANDLE for a bad descriptor, E_INVALIDARG for a
 *   non-regular file, E_ACCESSDENIED if format gets a read-only descriptor). Format takes only
 *   a disk image: a file named *.vhd / *.vhdx that is empty or already holds the header below
 *   (E_INVALIDARG otherwise), so a stray descriptor (stdout, a log) is never overwritten.
 *   HcsFormatWritableLayerVhd writes this 512-byte header at offset 0 (little-endian):
 *     0 "HCSEMUVD"  8 u32 version=1  12 u32 header size=512  16 volume GUID (16 bytes, random
 *     per format)  32 "EMUFS1\0\0" (file-system tag)  40 u64 format time (Unix seconds)
 *     48 label "hcsemu-layer-volume" (32 bytes, NUL padded)  80..507 zero
 *     508 u32 CRC-32 (IEEE) of bytes 0..507
 *   and erases the volume the image held before. Every open descriptor of a formatted image
 *   counts as mounted: HcsGetLayerVhdMountPath returns the volume directory
 *   <runtime>/volumes/{GUID}/ (created on demand; stable for the image until it is formatted
 *   again; a trailing '/' like Windows' trailing '\'). An unformatted or damaged image gives
 *   HRESULT_FROM_WIN32(ERROR_UNRECOGNIZED_VOLUME).
 *
 * All functions are synchronous. Failures are logged (HCSEMU_DEBUG=1) with the reason.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "emu.h"
#include "storage.h"

#define ERROR_DIRECTORY 267
#define ERROR_NOT_SAME_DEVICE 17
#define ERROR_TOO_MANY_OPEN_FILES 4
#define ERROR_WRITE_PROTECT 19
#define ERROR_FILENAME_EXCED_RANGE 206

/* FICLONE from <linux/fs.h>, which clashes with <sys/mount.h> on some glibc versions. */
#define HCSEMU_FICLONE _IOW(0x94, 9, int)

/* The new mount API (fsopen & co), by syscall number so that old glibc builds too. */
#define HCSEMU_FSOPEN_CLOEXEC 0x00000001u
#define HCSEMU_FSCONFIG_SET_STRING 1u
#define HCSEMU_FSCONFIG_CMD_CREATE 6u
#define HCSEMU_FSMOUNT_CLOEXEC 0x00000001u
#define HCSEMU_MOVE_MOUNT_F_EMPTY_PATH 0x00000004u

#define OVL_OPAQUE_XATTR "trusted.overlay.opaque"
#define OVL_XATTR_PREFIX "trusted.overlay."
#define META_DIR ".hcsemu"
#define META_FILE "layer.json"
#define VIEW_DIR "Merged"
#define TOMBSTONES "tombstones.txt"
#define TOMB_HEADER "# hcsemu tombstones v1: paths relative to Files/, one per line, %XX-escaped\n"
#define TOMB_MAX_BYTES (64u << 20)
/* The deepest directory nesting the tree walks that copy, compare and convert layers accept
 * (a deeper tree is refused with ERROR_FILENAME_EXCED_RANGE before anything changes). They
 * run on a thread of their own with WALK_STACK bytes of stack, enough for this depth;
 * deletion has no limit (it keeps no per-level stack). */
#define TREE_MAX_DEPTH 4096
#define WALK_STACK ((size_t)64 << 20)

/* ------------------------------------------------------------------ errors */

static __thread char t_msg[1024];

const char *storage_last_error(void) { return t_msg; }

static HRESULT fail(HRESULT hr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static HRESULT fail(HRESULT hr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_msg, sizeof t_msg, fmt, ap);
    va_end(ap);
    emu_log("storage: %s (0x%08X)", t_msg, (unsigned)hr);
    return hr;
}

static HRESULT hr_from_errno(int e) {
    switch (e) {
    case 0: return E_FAIL;
    case ENOENT:
    case ENOTDIR: return HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND);
    case EACCES:
    case EPERM: return E_ACCESSDENIED;
    case EEXIST: return HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS);
    case ENOTEMPTY: return HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY);
    case ENOSPC:
    case EDQUOT: return HRESULT_FROM_WIN32(ERROR_DISK_FULL);
    case ENOMEM: return E_OUTOFMEMORY;
    case EBUSY: return HRESULT_FROM_WIN32(ERROR_BUSY);
    case ELOOP: return HRESULT_FROM_WIN32(ERROR_BAD_PATHNAME);
    case ENAMETOOLONG: return HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE);
    case EROFS: return HRESULT_FROM_WIN32(ERROR_WRITE_PROTECT);
    case EBADF: return E_HANDLE;
    case EINVAL: return E_INVALIDARG;
    case EXDEV: return HRESULT_FROM_WIN32(ERROR_NOT_SAME_DEVICE);
    case EMFILE:
    case ENFILE: return HRESULT_FROM_WIN32(ERROR_TOO_MANY_OPEN_FILES);
    case ENODEV:
    case EOPNOTSUPP: return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    default: return E_FAIL;
    }
}

static HRESULT fail_errno(int e, const char *what, const char *path) {
    return fail(hr_from_errno(e), "%s %s: %s", what, path ? path : "", strerror(e));
}

/* ------------------------------------------------------------------ string vectors */

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

static bool sv_push(strvec *s, char *owned) {
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

static bool sv_pushdup(strvec *s, const char *str) { return sv_push(s, strdup(str)); }

static void sv_free(strvec *s) {
    for (size_t i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void sv_sort_unique(strvec *s) {
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

static bool sv_has_sorted(const strvec *s, const char *x) {
    return s->n && bsearch(&x, s->v, s->n, sizeof *s->v, cmp_strp) != NULL;
}

static bool sv_equal(const strvec *a, const strvec *b) {
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], b->v[i]) != 0) return false;
    return true;
}

static char *path_join(const char *a, const char *b) {
    if (!a || !*a) return strdup(b);
    size_t la = strlen(a);
    return emu_printf("%s%s%s", a, a[la - 1] == '/' ? "" : "/", b);
}

/* ------------------------------------------------------------------ path arguments */

/* Normalises an argument path (see PATH ARGUMENTS). */
static HRESULT norm_abs_path(const char *in, const char *what, char **out) {
    *out = NULL;
    if (!in || !*in) return fail(E_INVALIDARG, "%s: empty path", what);
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
        return fail(E_INVALIDARG, "%s: '%s' is not an absolute POSIX path", what, in);
    }
    size_t o = 0;
    char *save = NULL;
    for (char *c = strtok_r(tmp, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0) continue;
        if (strcmp(c, "..") == 0) {
            free(tmp);
            free(res);
            return fail(E_INVALIDARG, "%s: '%s' has a '..' component", what, in);
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
static bool rel_valid(const char *r) {
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
static bool path_within(const char *a, const char *b) {
    if (strcmp(b, "/") == 0) return true;
    size_t lb = strlen(b);
    return strncmp(a, b, lb) == 0 && (a[lb] == 0 || a[lb] == '/');
}

/* Resolves an existing directory argument to its real path. */
static HRESULT resolve_dir(const char *norm, const char *what, char **real) {
    *real = NULL;
    struct stat st;
    if (stat(norm, &st) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return fail(HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND), "%s %s does not exist", what, norm);
        return fail_errno(e, what, norm);
    }
    if (!S_ISDIR(st.st_mode)) return fail(HRESULT_FROM_WIN32(ERROR_DIRECTORY), "%s %s is not a directory", what, norm);
    char *r = realpath(norm, NULL);
    if (!r) return fail_errno(errno, what, norm);
    *real = r;
    return S_OK;
}

/* ------------------------------------------------------------------ file-system primitives */

static int open_dir_at(int dfd, const char *name) {
    return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static int open_dir_path(const char *path) { return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); }

static bool is_whiteout(const struct stat *st) { return S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0); }

/* Names in a directory (sorted, without . and ..). Returns 0 or -errno. */
static int list_dir(int dfd, strvec *out) {
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

static int dir_is_empty(int dfd) {
    strvec names = {0};
    int rc = list_dir(dfd, &names);
    size_t n = names.n;
    sv_free(&names);
    if (rc < 0) return rc;
    return n == 0;
}

/* The mount a name resolves to (0 with -errno when unknown): statx's mount id tells apart
 * mounts of the same file system (bind mounts), which st_dev cannot. */
static int mount_id_at(int dfd, const char *name, uint64_t *id, dev_t *dev) {
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
static int rm_tree_pass(int dfd, const char *name, bool delete, size_t max_depth) {
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
static int rm_tree_at(int dfd, const char *name) {
    int rc = rm_tree_pass(dfd, name, false, 0);
    return rc ? rc : rm_tree_pass(dfd, name, true, 0);
}

static int rm_tree_path(const char *path) {
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
static int empty_dir(int dfd) {
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

static void set_meta_fd(int fd, const struct stat *st) {
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

static int read_link_at(int dfd, const char *name, char **out) {
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

enum {
    CP_STRICT = 1, /* devices, FIFOs, sockets (whiteouts included) are HCS_E_INVALID_LAYER */
    CP_MERGE = 2,  /* the destination may exist: directories merge, anything else is replaced,
                      a whiteout in the source deletes the destination entry */
};

typedef struct copy_ctx {
    unsigned flags;
    HRESULT hr;   /* first failure */
    size_t depth; /* directories entered (bounded by TREE_MAX_DEPTH) */
} copy_ctx;

static HRESULT copy_fail_errno(copy_ctx *c, int e, const char *what, const char *rel) {
    if (c->hr == S_OK) c->hr = fail_errno(e, what, rel);
    return c->hr;
}

static HRESULT copy_dir_contents(copy_ctx *c, int sfd, int dfd, const char *rel);

/* Copies sfd/name to dfd/name. rel is the path for messages. */
static HRESULT copy_entry(copy_ctx *c, int sfd, int dfd, const char *name, const char *rel) {
    struct stat st;
    if (fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return copy_fail_errno(c, errno, "stat", rel);
    bool merge = c->flags & CP_MERGE;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
        if (c->flags & CP_STRICT) {
            c->hr = fail(HCS_E_INVALID_LAYER, "%s is a %s; layers hold only files, directories and symlinks", rel,
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
            c->hr = fail(HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), "%.200s...: directories nested deeper than %d "
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

static HRESULT copy_dir_contents(copy_ctx *c, int sfd, int dfd, const char *rel) {
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
static int open_rel_dir(int root, const char *rel, bool create) {
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
static char *rel_split(const char *rel, const char **leaf) {
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
static int rm_rel(int root, const char *rel) {
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

static HRESULT write_file_at(int dfd, const char *name, const char *data, size_t len, mode_t mode) {
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
static int read_file_at(int dfd, const char *name, size_t max, char **out, size_t *len) {
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

/* ------------------------------------------------------------------ tombstones */

/* Length of the valid UTF-8 sequence at s (1..4), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    unsigned min;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (avail < n) return 0;
    unsigned cp = c & (0x7Fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

static char *tomb_encode(const char *rel) {
    size_t n = strlen(rel);
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)rel;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t l = c >= 0x80 ? utf8_len(s + i, n - i) : 1;
        if (c == '%' || c == '#' || c < 0x20 || c == 0x7F || l == 0) {
            o += (size_t)sprintf(out + o, "%%%02X", c);
            i++;
        } else {
            memcpy(out + o, s + i, l);
            o += l;
            i += l;
        }
    }
    out[o] = 0;
    return out;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes one line; NULL if malformed (bad escape, NUL byte). */
static char *tomb_decode(const char *line, size_t n) {
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '%') {
            int h = i + 2 < n ? hexval(line[i + 1]) : -1;
            int l = i + 2 < n ? hexval(line[i + 2]) : -1;
            if (h < 0 || l < 0 || (h == 0 && l == 0)) {
                free(out);
                return NULL;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = line[i];
        }
    }
    out[o] = 0;
    return out;
}

/* Sorts, de-duplicates and drops entries below another entry. */
static void tomb_reduce(strvec *t) {
    sv_sort_unique(t);
    if (t->n < 2) return;
    bool *covered = calloc(t->n, sizeof *covered);
    if (!covered) return; /* keeping redundant entries is harmless */
    for (size_t i = 0; i < t->n; i++) {
        const char *s = t->v[i];
        for (const char *p = strchr(s, '/'); p && !covered[i]; p = strchr(p + 1, '/')) {
            char *prefix = strndup(s, (size_t)(p - s));
            covered[i] = prefix && sv_has_sorted(t, prefix);
            free(prefix);
        }
    }
    size_t o = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (covered[i])
            free(t->v[i]);
        else
            t->v[o++] = t->v[i];
    }
    t->n = o;
    free(covered);
}

/* Reads layer_fd/tombstones.txt into t (reduced). Missing file: empty set. */
static HRESULT tomb_read(int layer_fd, const char *layer, strvec *t) {
    char *text = NULL;
    size_t len = 0;
    int r = read_file_at(layer_fd, TOMBSTONES, TOMB_MAX_BYTES, &text, &len);
    if (r == -ENOENT) return S_OK;
    if (r == -EINVAL || r == -ELOOP || r == -EFBIG)
        return fail(HCS_E_INVALID_LAYER, "%s/%s is not a regular file of a sane size", layer, TOMBSTONES);
    if (r) return fail_errno(-r, "read", TOMBSTONES);
    HRESULT hr = S_OK;
    size_t lineno = 0;
    for (size_t i = 0; i < len && hr == S_OK;) {
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        size_t n = e - i;
        lineno++;
        if (n && text[i + n - 1] == '\r') n--;
        if (n && text[i] != '#') {
            if (memchr(text + i, 0, n)) {
                hr = fail(HCS_E_INVALID_LAYER, "%s/%s line %zu: NUL byte", layer, TOMBSTONES, lineno);
                break;
            }
            char *d = tomb_decode(text + i, n);
            if (!d || !rel_valid(d)) {
                hr = fail(HCS_E_INVALID_LAYER, "%s/%s line %zu: bad path (escape, empty, '.' or '..' component)",
                          layer, TOMBSTONES, lineno);
                free(d);
                break;
            }
            if (!sv_push(t, d)) hr = E_OUTOFMEMORY;
        }
        i = e + 1;
    }
    free(text);
    if (hr == S_OK) tomb_reduce(t);
    return hr;
}

/* Writes (or removes, if empty) layer_fd/tombstones.txt. t must be reduced. */
static HRESULT tomb_write(int layer_fd, const strvec *t) {
    if (t->n == 0) {
        if (unlinkat(layer_fd, TOMBSTONES, 0) != 0 && errno != ENOENT) return fail_errno(errno, "remove", TOMBSTONES);
        return S_OK;
    }
    size_t cap = strlen(TOMB_HEADER) + 1, n = 0;
    for (size_t i = 0; i < t->n; i++) cap += strlen(t->v[i]) * 3 + 1;
    char *buf = malloc(cap);
    if (!buf) return E_OUTOFMEMORY;
    n += (size_t)sprintf(buf, "%s", TOMB_HEADER);
    for (size_t i = 0; i < t->n; i++) {
        char *e = tomb_encode(t->v[i]);
        if (!e) {
            free(buf);
            return E_OUTOFMEMORY;
        }
        n += (size_t)sprintf(buf + n, "%s\n", e);
        free(e);
    }
    HRESULT hr = write_file_at(layer_fd, TOMBSTONES, buf, n, 0644);
    free(buf);
    return hr;
}

/* ------------------------------------------------------------------ layer layout */

enum { ENT_DIR, ENT_REG };
enum { IN_SOURCE = 1, IN_LAYER = 2 };
static const struct {
    const char *name;
    int type;
    unsigned where;
} k_entries[] = {
    {"Files", ENT_DIR, IN_SOURCE | IN_LAYER},   {"Hives", ENT_DIR, IN_SOURCE | IN_LAYER},
    {"layout", ENT_REG, IN_SOURCE | IN_LAYER},  {"UtilityVM", ENT_DIR, IN_SOURCE | IN_LAYER},
    {TOMBSTONES, ENT_REG, IN_SOURCE | IN_LAYER}, {META_DIR, ENT_DIR, IN_LAYER},
    {VIEW_DIR, ENT_DIR, IN_LAYER},
};

static bool has_suffix(const char *s, const char *suf) {
    size_t ls = strlen(s), lf = strlen(suf);
    return ls > lf && strcmp(s + ls - lf, suf) == 0;
}

/* Checks the top level of a layer folder (or an import source: where = IN_SOURCE).
 * require_files: Files/ must be there. */
static HRESULT check_layout(int fd, const char *path, unsigned where, bool require_files) {
    strvec names = {0};
    int r = list_dir(fd, &names);
    if (r) {
        sv_free(&names);
        return fail_errno(-r, "list", path);
    }
    HRESULT hr = S_OK;
    bool files = false;
    for (size_t i = 0; i < names.n && hr == S_OK; i++) {
        const char *n = names.v[i];
        struct stat st;
        if (fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            hr = fail_errno(errno, "stat", n);
            break;
        }
        bool known = false;
        for (size_t k = 0; k < sizeof k_entries / sizeof k_entries[0]; k++) {
            if (strcmp(n, k_entries[k].name) != 0) continue;
            known = (k_entries[k].where & where) != 0;
            if (known && !(k_entries[k].type == ENT_DIR ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode)))
                hr = fail(HCS_E_INVALID_LAYER, "%s/%s must be a %s (not a symlink or anything else)", path, n,
                          k_entries[k].type == ENT_DIR ? "directory" : "regular file");
            break;
        }
        if (!known && where == IN_LAYER && (has_suffix(n, ".vhdx") || has_suffix(n, ".vhd")) && S_ISREG(st.st_mode))
            known = true;
        if (hr == S_OK && !known)
            hr = fail(HCS_E_INVALID_LAYER, "%s: unexpected entry '%s' (a layer holds Files, Hives, layout, UtilityVM%s)",
                      path, n, where == IN_SOURCE ? " and tombstones.txt" : ", tombstones.txt, disk images");
        if (strcmp(n, "Files") == 0) files = true;
    }
    sv_free(&names);
    if (hr == S_OK && require_files && !files) hr = fail(HCS_E_INVALID_LAYER, "%s has no Files directory", path);
    return hr;
}

/* Opens a layer folder and checks its top level. */
static HRESULT open_layer(const char *real, int *fd_out) {
    int fd = open_dir_path(real);
    if (fd < 0) return fail_errno(errno, "open layer", real);
    HRESULT hr = check_layout(fd, real, IN_LAYER, true);
    if (hr != S_OK) {
        close(fd);
        return hr;
    }
    *fd_out = fd;
    return S_OK;
}

/* ------------------------------------------------------------------ JSON documents */

static HRESULT parse_doc(const char *text, const char *what, json **out) {
    *out = NULL;
    char err[200];
    json *v = json_parse(text, strlen(text), err, sizeof err);
    if (!v) return fail(HCS_E_INVALID_JSON, "%s: invalid JSON: %s", what, err);
    if (json_typeof(v) != JSON_OBJECT) {
        json_free(v);
        return fail(HCS_E_INVALID_JSON, "%s: must be a JSON object", what);
    }
    char where[160];
    if (json_has_nul(v, where, sizeof where)) { /* "keep\u0000/cache" would name keep */
        json_free(v);
        return fail(HCS_E_INVALID_JSON, "%s: %s contains U+0000 (NUL), which no path or name may hold", what, where);
    }
    *out = v;
    return S_OK;
}

static bool is_absent(const json *v) { return !v || json_typeof(v) == JSON_NULL; }

static HRESULT check_optional_string(const json *obj, const char *key, const char *what) {
    const json *v = json_get(obj, key);
    if (!is_absent(v) && json_typeof(v) != JSON_STRING)
        return fail(HCS_E_INVALID_JSON, "%s: %s must be a string", what, key);
    return S_OK;
}

static HRESULT check_optional_bool(const json *obj, const char *key, const char *what, bool *out) {
    const json *v = json_get(obj, key);
    if (out) *out = false;
    if (is_absent(v)) return S_OK;
    bool b;
    if (!json_bool(v, &b)) return fail(HCS_E_INVALID_JSON, "%s: %s must be true or false", what, key);
    if (out) *out = b;
    return S_OK;
}

/* Parses LayerData (required): the parents' normalised paths, top-most first, into paths. */
static HRESULT parse_layer_data(const char *text, json **doc_out, strvec *paths) {
    if (doc_out) *doc_out = NULL;
    if (!text || !*text) return fail(E_INVALIDARG, "layerData is required");
    json *doc;
    HRESULT hr = parse_doc(text, "layerData", &doc);
    if (hr != S_OK) return hr;
    const json *sv = json_get(doc, "SchemaVersion");
    if (!is_absent(sv)) {
        int64_t x;
        if (json_typeof(sv) != JSON_OBJECT || !json_int64(json_get(sv, "Major"), &x) || x < 0 ||
            (!is_absent(json_get(sv, "Minor")) && (!json_int64(json_get(sv, "Minor"), &x) || x < 0))) {
            json_free(doc);
            return fail(HCS_E_INVALID_JSON, "layerData: SchemaVersion must be {\"Major\":n,\"Minor\":n}");
        }
    }
    if ((hr = check_optional_string(doc, "FilterType", "layerData")) != S_OK) {
        json_free(doc);
        return hr;
    }
    const json *layers = json_get(doc, "Layers");
    if (!is_absent(layers) && json_typeof(layers) != JSON_ARRAY) {
        json_free(doc);
        return fail(HCS_E_INVALID_JSON, "layerData: Layers must be an array");
    }
    for (size_t i = 0; i < json_len(layers) && hr == S_OK; i++) {
        const json *l = json_at(layers, i);
        if (json_typeof(l) != JSON_OBJECT) {
            hr = fail(HCS_E_INVALID_JSON, "layerData: Layers[%zu] must be an object", i);
            break;
        }
        if ((hr = check_optional_string(l, "Id", "layerData.Layers[]")) != S_OK) break;
        if ((hr = check_optional_string(l, "Cache", "layerData.Layers[]")) != S_OK) break;
        const json *pt = json_get(l, "PathType");
        if (!is_absent(pt)) {
            const char *s = json_str(pt);
            if (!s) {
                hr = fail(HCS_E_INVALID_JSON, "layerData: Layers[%zu].PathType must be a string", i);
                break;
            }
            if (strcmp(s, "VirtualSmbShareName") == 0) {
                hr = fail(HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED),
                          "layerData: PathType VirtualSmbShareName is not supported by the emulator");
                break;
            }
            if (strcmp(s, "AbsolutePath") != 0) {
                hr = fail(HCS_E_INVALID_JSON, "layerData: unknown PathType '%s'", s);
                break;
            }
        }
        const char *p = json_str(json_get(l, "Path"));
        if (!p || !*p) {
            hr = fail(HCS_E_INVALID_JSON, "layerData: Layers[%zu].Path must be a non-empty string", i);
            break;
        }
        char *norm;
        if ((hr = norm_abs_path(p, "layerData parent layer", &norm)) != S_OK) break;
        if (!sv_push(paths, norm)) hr = E_OUTOFMEMORY;
    }
    if (hr == S_OK && doc_out)
        *doc_out = doc;
    else
        json_free(doc);
    return hr;
}

/* Resolves and checks parent layers: each exists, is a layer, is not `self` (may be NULL),
 * appears once, and does not nest with self or another parent. real: resolved paths. */
static HRESULT resolve_parents(const strvec *paths, const char *self, strvec *real) {
    for (size_t i = 0; i < paths->n; i++) {
        char *r;
        HRESULT hr = resolve_dir(paths->v[i], "parent layer", &r);
        if (hr != S_OK) return hr;
        if (!sv_push(real, r)) return E_OUTOFMEMORY;
        int fd = -1;
        if ((hr = open_layer(r, &fd)) != S_OK) return hr;
        close(fd);
        if (self && (path_within(r, self) || path_within(self, r)))
            return fail(E_INVALIDARG, "parent layer %s and layer %s are the same or nested", r, self);
        for (size_t j = 0; j + 1 < real->n; j++)
            if (path_within(r, real->v[j]) || path_within(real->v[j], r))
                return fail(E_INVALIDARG, "parent layers %s and %s are the same or nested", real->v[j], r);
    }
    return S_OK;
}

static json *strvec_to_json(const strvec *s) {
    json *a = json_new_array();
    for (size_t i = 0; a && i < s->n; i++) json_append(a, json_new_string(s->v[i]));
    return a;
}

static bool json_to_strvec(const json *a, strvec *out) {
    if (json_typeof(a) != JSON_ARRAY) return false;
    for (size_t i = 0; i < json_len(a); i++) {
        const char *s = json_str(json_at(a, i));
        if (!s || !sv_pushdup(out, s)) return false;
    }
    return true;
}

/* ------------------------------------------------------------------ layer metadata */

/* Reads <layer>/.hcsemu/layer.json: S_OK with *out NULL when there is none. */
static HRESULT meta_read(const char *layer, json **out) {
    *out = NULL;
    int lfd = open_dir_path(layer);
    if (lfd < 0) return fail_errno(errno, "open", layer);
    int mfd = open_dir_at(lfd, META_DIR);
    close(lfd);
    if (mfd < 0) return errno == ENOENT ? S_OK : fail(HCS_E_INVALID_LAYER, "%s/%s is not a directory", layer, META_DIR);
    char *text = NULL;
    size_t len = 0;
    int r = read_file_at(mfd, META_FILE, 1u << 20, &text, &len);
    close(mfd);
    if (r == -ENOENT) return S_OK;
    if (r) return fail(HCS_E_INVALID_LAYER, "%s/%s/%s unreadable: %s", layer, META_DIR, META_FILE, strerror(-r));
    char err[200];
    json *v = json_parse(text, len, err, sizeof err);
    free(text);
    if (!v || json_typeof(v) != JSON_OBJECT || !json_str(json_get(v, "Kind"))) {
        json_free(v);
        return fail(HCS_E_INVALID_LAYER, "%s/%s/%s is damaged", layer, META_DIR, META_FILE);
    }
    *out = v;
    return S_OK;
}

static HRESULT meta_write(const char *layer, const json *doc) {
    int lfd = open_dir_path(layer);
    if (lfd < 0) return fail_errno(errno, "open", layer);
    if (mkdirat(lfd, META_DIR, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        close(lfd);
        return fail_errno(e, "mkdir", META_DIR);
    }
    int mfd = open_dir_at(lfd, META_DIR);
    close(lfd);
    if (mfd < 0) return fail_errno(errno, "open", META_DIR);
    char *text = json_dump(doc);
    HRESULT hr = text ? write_file_at(mfd, META_FILE, text, strlen(text), 0644) : E_OUTOFMEMORY;
    free(text);
    close(mfd);
    return hr;
}

static bool meta_is_writable(const json *m) {
    const char *k = json_str(json_get(m, "Kind"));
    return k && strcmp(k, "WritableLayer") == 0;
}

static const json *meta_attached(const json *m) {
    const json *a = json_get(m, "Attached");
    return json_typeof(a) == JSON_OBJECT ? a : NULL;
}

/* Reads a writable layer's metadata; HCS_E_INVALID_LAYER if it is not one. */
static HRESULT meta_read_writable(const char *layer, json **out) {
    HRESULT hr = meta_read(layer, out);
    if (hr != S_OK) return hr;
    if (!*out || !meta_is_writable(*out)) {
        json_free(*out);
        *out = NULL;
        return fail(HCS_E_INVALID_LAYER, "%s is not a writable layer (HcsInitializeWritableLayer was not called)", layer);
    }
    return S_OK;
}

/* ------------------------------------------------------------------ runtime dir, lock, registry */

static HRESULT mkdir_p(const char *path, mode_t mode) {
    char *dup = strdup(path);
    if (!dup) return E_OUTOFMEMORY;
    for (char *p = dup + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(dup, mode) != 0 && errno != EEXIST) {
                int e = errno;
                free(dup);
                return hr_from_errno(e);
            }
            *p = c;
            if (!c) break;
        }
    }
    free(dup);
    return S_OK;
}

static bool usable_private_dir(const char *p) {
    struct stat st;
    if (mkdir_p(p, 0700) != S_OK) return false;
    return lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() && access(p, W_OK | X_OK) == 0;
}

char *storage_runtime_dir(void) {
    const char *e = getenv("HCSEMU_RUNTIME_DIR");
    char *cand[4] = {0};
    size_t n = 0;
    if (e && *e == '/') cand[n++] = strdup(e);
    if (geteuid() == 0) cand[n++] = strdup("/run/hcsemu");
    const char *x = getenv("XDG_RUNTIME_DIR");
    if (x && *x == '/') cand[n++] = path_join(x, "hcsemu");
    cand[n++] = emu_printf("/tmp/hcsemu-%u", (unsigned)geteuid());
    char *found = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!found && cand[i] && usable_private_dir(cand[i])) {
            found = cand[i];
            continue;
        }
        free(cand[i]);
    }
    if (!found) emu_log("storage: no usable runtime directory");
    return found;
}

static char *runtime_sub(const char *sub) {
    char *rt = storage_runtime_dir();
    if (!rt) return NULL;
    char *p = path_join(rt, sub);
    free(rt);
    if (p && mkdir_p(p, 0700) != S_OK) {
        free(p);
        return NULL;
    }
    return p;
}

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct glock {
    int fd;
} glock;

static void lock_acquire(glock *l) {
    pthread_mutex_lock(&g_mu);
    l->fd = -1;
    char *dir = runtime_sub("storage");
    if (!dir) return;
    char *p = path_join(dir, "lock");
    free(dir);
    if (!p) return;
    l->fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    free(p);
    if (l->fd >= 0)
        while (flock(l->fd, LOCK_EX) != 0 && errno == EINTR) {
        }
}

static void lock_release(glock *l) {
    if (l->fd >= 0) {
        flock(l->fd, LOCK_UN);
        close(l->fd);
    }
    pthread_mutex_unlock(&g_mu);
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static char *index_entry_path(const char *layer) {
    char *dir = runtime_sub("storage/attached");
    if (!dir) return NULL;
    char *p = emu_printf("%s/%016llx.json", dir, (unsigned long long)fnv1a(layer));
    free(dir);
    return p;
}

static HRESULT index_add(const char *layer, const char *mode, const strvec *parents) {
    char *p = index_entry_path(layer);
    if (!p) return fail(E_FAIL, "no runtime directory for the storage registry");
    json *e = json_new_object();
    json_set(e, "Path", json_new_string(layer));
    json_set(e, "Mode", json_new_string(mode));
    json_set(e, "Parents", strvec_to_json(parents));
    json_set(e, "Pid", json_new_int(getpid()));
    char *text = json_dump(e);
    json_free(e);
    HRESULT hr = E_OUTOFMEMORY;
    if (text) {
        char *slash = strrchr(p, '/');
        *slash = 0;
        int dfd = open_dir_path(p);
        *slash = '/';
        hr = dfd < 0 ? fail_errno(errno, "open", p) : write_file_at(dfd, slash + 1, text, strlen(text), 0600);
        if (dfd >= 0) close(dfd);
    }
    free(text);
    free(p);
    return hr;
}

static void index_remove(const char *layer) {
    char *p = index_entry_path(layer);
    if (p) unlink(p);
    free(p);
}

/* Is `target` attached, a parent of an attached layer, or a folder inside or containing one?
 * *by: the attached layer (malloc'd).
 * Prunes entries whose layer is gone or detached. */
static bool index_in_use(const char *target, char **by) {
    *by = NULL;
    char *dir = runtime_sub("storage/attached");
    if (!dir) return false;
    int dfd = open_dir_path(dir);
    free(dir);
    if (dfd < 0) return false;
    strvec names = {0};
    (void)list_dir(dfd, &names);
    bool used = false;
    for (size_t i = 0; i < names.n && !used; i++) {
        if (!has_suffix(names.v[i], ".json")) continue;
        char *text = NULL;
        size_t len;
        if (read_file_at(dfd, names.v[i], 1u << 20, &text, &len) != 0) continue;
        json *e = json_parse(text, len, NULL, 0);
        free(text);
        const char *lp = json_str(json_get(e, "Path"));
        json *m = NULL;
        bool live = lp && meta_read(lp, &m) == S_OK && m && meta_attached(m);
        json_free(m);
        if (!live) {
            emu_log("storage: pruning stale registry entry %s (%s)", names.v[i], lp ? lp : "?");
            unlinkat(dfd, names.v[i], 0);
        } else {
            strvec parents = {0};
            json_to_strvec(json_get(e, "Parents"), &parents);
            /* the layer itself, one of its parents, or a folder inside or around either */
            bool hit = path_within(lp, target) || path_within(target, lp);
            for (size_t k = 0; !hit && k < parents.n; k++)
                hit = path_within(parents.v[k], target) || path_within(target, parents.v[k]);
            if (hit) {
                used = true;
                *by = strdup(lp);
            }
            sv_free(&parents);
        }
        json_free(e);
    }
    sv_free(&names);
    close(dfd);
    return used;
}

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

static int ovl_mount(const char *target, const strvec *lowers, const char *upper, const char *work) {
    int rc = ovl_mount_newapi(target, lowers, upper, work);
    if (rc == -ENOSYS) rc = ovl_mount_legacy(target, lowers, upper, work);
    return rc;
}

static int g_ovl_state = -1; /* -1 not probed, 0 unavailable, 1 available (under g_mu) */
static int g_ovl_errno;      /* errno of a failed probe */
static char g_ovl_why[256];

static bool overlay_probe(void) {
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

static bool is_mountpoint_at(int pfd, const char *name) {
    uint64_t a = 0, b = 0;
    dev_t da = 0, db = 0;
    if (mount_id_at(pfd, "", &a, &da) != 0 || mount_id_at(pfd, name, &b, &db) != 0) return false;
    return a != b || da != db; /* mount ids tell bind mounts of the same file system apart */
}

/* Makes tombstones native overlayfs marks in files_fd (a layer's Files): whiteout devices for
 * deleted paths, opaque marks on replaced directories. below: the Files dirs of the layers
 * underneath (top-most first), whose directories give the modes of directories created on the
 * way; a tombstone nothing below has is skipped. */
static HRESULT ensure_native_marks(int files_fd, const strvec *tombs, const int *below, size_t nbelow) {
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
static HRESULT native_to_tombstones(int dfd, const char *rel, strvec *tombs, const int *below, size_t nbelow,
                                    bool *prunable, size_t depth) {
    if (depth >= TREE_MAX_DEPTH)
        return fail(HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), "%.200s...: directories nested deeper than %d levels",
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

/* ------------------------------------------------------------------ copy-mode views */

typedef struct chain_layer {
    char *path;     /* layer folder (real path) */
    int files_fd;   /* its Files */
    strvec tombs;   /* its tombstones (reduced) */
} chain_layer;

typedef struct chain {
    chain_layer *l;
    size_t n;
} chain;

static void chain_free(chain *c) {
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
static HRESULT chain_open(const strvec *paths, chain *c) {
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
        HRESULT hr = cl->files_fd < 0 ? fail(HCS_E_INVALID_LAYER, "%s/Files: %s", paths->v[i], strerror(errno))
                                      : tomb_read(lfd, paths->v[i], &cl->tombs);
        close(lfd);
        if (hr != S_OK) return hr;
    }
    return S_OK;
}

/* Materialises layers [from, c->n) (applied base first) into the directory dst_fd. */
static HRESULT chain_materialise(const chain *c, size_t from, int dst_fd) {
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
typedef struct outdir {
    struct outdir *parent;
    const char *name;
    int fd;
    int model_fd; /* the merged directory it mirrors */
} outdir;

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
static HRESULT diff_dir(int mfd, int bfd, outdir *out, const char *rel, strvec *tombs, size_t depth) {
    if (depth >= TREE_MAX_DEPTH)
        return fail(HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), "%.200s...: directories nested deeper than %d levels",
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
        hr = fail(HCS_E_INVALID_LAYER, "%s/Files: %s", wl, strerror(errno));
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
        hr = fail(rc == -EPERM || rc == -EACCES ? E_ACCESSDENIED : HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "%s", why);
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
        return fail(HRESULT_FROM_WIN32(ERROR_BUSY), "something is mounted inside %s/%s: unmount it before detaching",
                    wl, tree);
    if (r == -ENAMETOOLONG)
        return fail(HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE), "%s/%s has directories nested deeper than %d "
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
            return fail(HRESULT_FROM_WIN32(ERROR_BUSY), "the merged view of %s is still in use (open files or a "
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
        return fail(HCS_E_INVALID_STATE, "%s/%s is a mount point but the layer is recorded as a copy view", wl, VIEW_DIR);
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

/* ------------------------------------------------------------------ operations */

/* Creates dir (parent must exist) unless it exists; *created tells which. */
static HRESULT make_or_open_dir(const char *norm, const char *what, bool *created) {
    *created = false;
    struct stat st;
    if (stat(norm, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return fail(HRESULT_FROM_WIN32(ERROR_DIRECTORY), "%s %s is not a directory", what, norm);
        return S_OK;
    }
    if (mkdir(norm, 0755) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return fail(HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND), "the folder containing %s %s does not exist", what, norm);
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
    if (!e) return fail(HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY), "%s %s is not empty", what, real);
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
        hr = fail(E_INVALIDARG, "layer %s and source %s are the same or nested", layer, src);
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
        if (!S_ISDIR(st.st_mode)) return fail(HCS_E_INVALID_LAYER, "Hives of %s is not a directory", layer);
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
        hr = fail(E_INVALIDARG, "layer %s and export folder %s are the same or nested", layer, exp);
    if (hr == S_OK) hr = resolve_parents(&pp, layer, &preal);
    if (hr == S_OK) hr = open_layer(layer, &lfd);
    if (hr == S_OK) hr = require_empty_dir(exp, "export folder");
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = meta_read(layer, &m);
    }
    if (hr == S_OK && m && meta_attached(m))
        hr = fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "%s is attached; detach its storage filter first", layer);
    if (hr == S_OK && writable_opt && !(m && meta_is_writable(m)))
        hr = fail(HCS_E_INVALID_LAYER, "IsWritableLayer is set but %s is not a writable layer", layer);
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
        hr = fail(E_INVALIDARG, "the export folder %s overlaps the writable layer", exp);
    if (hr == S_OK) hr = resolve_parents(&pp, mnt, &preal);
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = meta_read_writable(mnt, &m);
    }
    if (hr == S_OK) {
        const char *lf = json_str(json_get(m, "LegacyFolder"));
        if (!lf || strcmp(lf, folder) != 0)
            hr = fail(HCS_E_INVALID_LAYER, "%s is not a legacy writable layer initialised with folder %s", mnt, folder);
    }
    if (hr == S_OK && meta_attached(m))
        hr = fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "%s is attached; detach its storage filter first", mnt);
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
    if (hr == S_OK && strcmp(layer, "/") == 0) hr = fail(E_INVALIDARG, "refusing to destroy /");
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
        hr = fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "%s is attached (its storage filter is in use)", layer);
    if (hr == S_OK && index_in_use(layer, &by))
        hr = fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "%s is (inside or around) a layer that %s uses",
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
                hr = fail(HCS_E_INVALID_JSON, "OsLayerOptions: Type must be \"Container\" or \"Vm\"");
        }
        if (hr == S_OK) hr = check_optional_bool(o, "DisableCiCacheOptimization", "OsLayerOptions", NULL);
        if (hr == S_OK) hr = check_optional_bool(o, "SkipUpdateBcdForBoot", "OsLayerOptions", NULL);
    }
    json_free(o);
    if (type_out) *type_out = strdup(*vm ? "Vm" : "Container");
    return hr;
}

static HRESULT vhd_volume_dir(int fd, char **dir);

/* The common part of SetupBaseOSLayer/Volume: creates Hives and layout, and for a VM base
 * layer copies UtilityVM/Files into the volume. */
static HRESULT setup_base_os(const char *layer, bool vm, const char *type, const char *volume) {
    int lfd = -1, vfd = -1;
    HRESULT hr = open_layer(layer, &lfd);
    struct stat st;
    if (hr == S_OK && (fstatat(lfd, "Hives", &st, AT_SYMLINK_NOFOLLOW) == 0 ||
                       fstatat(lfd, "layout", &st, AT_SYMLINK_NOFOLLOW) == 0))
        hr = fail(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "%s is already set up (it has Hives or layout)", layer);
    int ufd = -1;
    if (hr == S_OK && vm) {
        int u = open_dir_at(lfd, "UtilityVM");
        ufd = u >= 0 ? open_dir_at(u, "Files") : -1;
        if (u >= 0) close(u);
        if (ufd < 0) hr = fail(HCS_E_INVALID_LAYER, "%s has no UtilityVM/Files for a VM base layer", layer);
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
        hr = fail(E_INVALIDARG, "a Container base layer takes no VHD handle (pass NULL)");
    if (hr == S_OK && vm && vhd_fd == -1)
        hr = fail(E_INVALIDARG, "a Vm base layer needs the handle of its formatted SystemTemplateBase VHD");
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
        hr = fail(E_INVALIDARG, "volume %s and layer %s are the same or nested", vol, layer);
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
        if (!opts) hr = fail(HCS_E_INVALID_JSON, "options: invalid JSON: %s", err);
    }
    if (hr == S_OK) {
        lock_acquire(&lk);
        locked = true;
        hr = make_or_open_dir(norm, "writable layer", &created);
    }
    if (hr == S_OK && !(layer = realpath(norm, NULL))) hr = fail_errno(errno, "resolve", norm);
    if (hr == S_OK) hr = resolve_parents(&pp, layer, &preal);
    if (hr == S_OK) hr = meta_read(layer, &old);
    if (hr == S_OK && old) hr = fail(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "%s is already initialised", layer);
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
        hr = fail(E_INVALIDARG, "mount path %s and folder %s are the same or nested", mnt, folder);
    if (hr == S_OK) hr = resolve_parents(&pp, mnt, &preal);
    for (size_t i = 0; hr == S_OK && i < preal.n; i++)
        if (path_within(folder, preal.v[i]) || path_within(preal.v[i], folder))
            hr = fail(E_INVALIDARG, "folder %s and parent layer %s are the same or nested", folder, preal.v[i]);
    if (hr == S_OK) hr = meta_read(mnt, &old);
    if (hr == S_OK && old) hr = fail(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "%s is already initialised", mnt);
    if (hr == S_OK) hr = meta_read(folder, &old);
    if (hr == S_OK && old) hr = fail(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "%s is already initialised", folder);
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
    if (hr == S_OK && meta_attached(m)) hr = fail(HCS_E_INVALID_STATE, "the storage filter of %s is already attached", wl);
    if (hr == S_OK && !json_to_strvec(json_get(m, "Parents"), &rec))
        hr = fail(HCS_E_INVALID_LAYER, "%s: damaged metadata (Parents)", wl);
    if (hr == S_OK) hr = resolve_parents(&pp, wl, &preal);
    if (hr == S_OK && !sv_equal(&preal, &rec))
        hr = fail(E_INVALIDARG, "layerData names %zu parent layer(s) that differ from the %zu %s was initialised with",
                  preal.n, rec.n, wl);
    for (size_t i = 0; hr == S_OK && i < preal.n; i++) {
        json *pm = NULL;
        if (meta_read(preal.v[i], &pm) == S_OK && pm && meta_attached(pm))
            hr = fail(HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION), "parent layer %s is itself attached", preal.v[i]);
        json_free(pm);
    }
    if (hr == S_OK) hr = open_layer(wl, &fd);
    if (hr == S_OK) {
        view_mode vm = mode_setting();
        if (vm != MODE_COPY) {
            if (!overlay_probe()) {
                if (vm == MODE_OVERLAY)
                    hr = fail(g_ovl_errno == EPERM || g_ovl_errno == EACCES ? E_ACCESSDENIED
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
    if (hr == S_OK && !a) hr = fail(HCS_E_INVALID_STATE, "the storage filter of %s is not attached", wl);
    if (hr == S_OK && !json_to_strvec(json_get(m, "Parents"), &rec))
        hr = fail(HCS_E_INVALID_LAYER, "%s: damaged metadata (Parents)", wl);
    if (hr == S_OK && (fd = open_dir_path(wl)) < 0) hr = fail_errno(errno, "open", wl);
    if (hr == S_OK) {
        const char *mode = json_str(json_get(a, "Mode"));
        if (mode && strcmp(mode, "overlay") == 0)
            hr = detach_overlay(wl, fd, &rec);
        else if (mode && strcmp(mode, "copy") == 0)
            hr = detach_copy(wl, fd, &rec);
        else
            hr = fail(HCS_E_INVALID_LAYER, "%s: damaged metadata (Attached.Mode)", wl);
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

/* ------------------------------------------------------------------ VHDs */

#define VHD_MAGIC "HCSEMUVD"
#define VHD_HEADER 512u
#define VHD_FSTAG "EMUFS1\0\0"

static uint32_t crc32_ieee(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static HRESULT vhd_check_fd(int fd, bool for_write) {
    if (fd == -1) return fail(E_HANDLE, "NULL VHD handle");
    if (fd < 0) return fail(E_HANDLE, "the VHD handle is not a file descriptor");
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return fail(E_HANDLE, "VHD handle %d is not an open file descriptor", fd);
    struct stat st;
    if (fstat(fd, &st) != 0) return fail(E_HANDLE, "VHD handle %d: %s", fd, strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(E_INVALIDARG, "VHD handle %d is not a regular file (disk image)", fd);
    if (for_write && (fl & O_ACCMODE) == O_RDONLY)
        return fail(E_ACCESSDENIED, "VHD handle %d is open read-only", fd);
    if (!for_write && (fl & O_ACCMODE) == O_WRONLY)
        return fail(E_ACCESSDENIED, "VHD handle %d is open write-only", fd);
    return S_OK;
}

/* Reads the volume GUID of a formatted image; *formatted false if it is not one of ours. */
static HRESULT vhd_read_guid(int fd, bool *formatted, char guid[39]) {
    unsigned char h[VHD_HEADER];
    *formatted = false;
    ssize_t n = pread(fd, h, sizeof h, 0);
    if (n < 0) return fail_errno(errno, "read VHD header", "");
    if (n < (ssize_t)sizeof h || memcmp(h, VHD_MAGIC, 8) != 0 || get_le32(h + 8) != 1 ||
        get_le32(h + 12) != VHD_HEADER || memcmp(h + 32, VHD_FSTAG, 8) != 0 ||
        get_le32(h + 508) != crc32_ieee(h, 508))
        return S_OK;
    const unsigned char *g = h + 16;
    snprintf(guid, 39, "{%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x}", g[0], g[1], g[2], g[3],
             g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
    *formatted = true;
    return S_OK;
}

static char *volume_dir_for(const char *guid) {
    char *vols = runtime_sub("volumes");
    if (!vols) return NULL;
    char *p = emu_printf("%s/Volume%s", vols, guid);
    free(vols);
    return p;
}

static HRESULT vhd_volume_dir(int fd, char **dir) {
    *dir = NULL;
    HRESULT hr = vhd_check_fd(fd, false);
    if (hr != S_OK) return hr;
    bool formatted;
    char guid[39];
    if ((hr = vhd_read_guid(fd, &formatted, guid)) != S_OK) return hr;
    if (!formatted)
        return fail(HRESULT_FROM_WIN32(ERROR_UNRECOGNIZED_VOLUME),
                    "the VHD has no recognised volume (format it with HcsFormatWritableLayerVhd)");
    char *p = volume_dir_for(guid);
    if (!p) return fail(E_FAIL, "no runtime directory for VHD volumes");
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        free(p);
        return fail_errno(e, "create volume directory", "");
    }
    *dir = p;
    return S_OK;
}

/* Whether fd may be formatted: only a disk image, i.e. a file named *.vhd or *.vhdx that is
 * blank (empty, or a first sector of zeros as a freshly created disk has) or already holds
 * the emulator's volume header. Any other
 * writable descriptor (stdout redirected to a file, a log, a database) is refused, so a wrong
 * handle value can never overwrite someone's data. */
static HRESULT vhd_check_image(int fd, bool *formatted, char guid[39]) {
    *formatted = false;
    char link[64], name[PATH_MAX + 1];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, name, sizeof name - 1);
    if (n < 0) return fail_errno(errno, "name of VHD handle", "");
    name[n] = 0;
    size_t l = (size_t)n;
    bool image = (l > 4 && strcasecmp(name + l - 4, ".vhd") == 0) || (l > 5 && strcasecmp(name + l - 5, ".vhdx") == 0);
    struct stat st;
    if (fstat(fd, &st) != 0) return fail_errno(errno, "stat VHD", "");
    HRESULT hr = (fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY ? S_OK : vhd_read_guid(fd, formatted, guid);
    if (hr != S_OK) return hr;
    bool blank = st.st_size == 0;
    if (!blank && !*formatted && (fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY) {
        unsigned char first[VHD_HEADER];
        ssize_t got = pread(fd, first, sizeof first, 0);
        blank = got > 0;
        for (ssize_t i = 0; blank && i < got; i++) blank = first[i] == 0;
    }
    if (!image || (!blank && !*formatted))
        return fail(E_INVALIDARG, "VHD handle %d (%s) is not a disk image: only a blank .vhd/.vhdx file or one "
                    "this emulator formatted can be formatted", fd, name);
    return S_OK;
}

HRESULT svc_storage_format_vhd(int fd) {
    HRESULT hr = vhd_check_fd(fd, true);
    if (hr != S_OK) return hr;
    bool formatted = false;
    char old[39];
    if ((hr = vhd_check_image(fd, &formatted, old)) != S_OK) return hr;
    if (formatted) {
        char *p = volume_dir_for(old);
        if (p) {
            int r = rm_tree_path(p);
            if (r) emu_log("storage: could not erase the old volume %s: %s", p, strerror(-r));
        }
        free(p);
    }
    unsigned char h[VHD_HEADER] = {0};
    memcpy(h, VHD_MAGIC, 8);
    put_le32(h + 8, 1);
    put_le32(h + 12, VHD_HEADER);
    unsigned char *g = h + 16;
    size_t got = 0;
    while (got < 16) {
        ssize_t r = getrandom(g + got, 16 - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail_errno(errno, "getrandom", "");
        got += (size_t)r;
    }
    g[6] = (unsigned char)((g[6] & 0x0F) | 0x40);
    g[8] = (unsigned char)((g[8] & 0x3F) | 0x80);
    memcpy(h + 32, VHD_FSTAG, 8);
    uint64_t now = (uint64_t)time(NULL);
    for (int i = 0; i < 8; i++) h[40 + i] = (unsigned char)(now >> (8 * i));
    memcpy(h + 48, "hcsemu-layer-volume", strlen("hcsemu-layer-volume"));
    put_le32(h + 508, crc32_ieee(h, 508));
    for (size_t off = 0; off < sizeof h;) {
        ssize_t w = pwrite(fd, h + off, sizeof h - off, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return fail_errno(errno, "write VHD header", "");
        off += (size_t)w;
    }
    if (fsync(fd) != 0 && errno != EINVAL) return fail_errno(errno, "fsync VHD", "");
    emu_log("storage: formatted VHD fd %d", fd);
    return S_OK;
}

HRESULT svc_storage_vhd_mount_path(int fd, char **mount_path) {
    *mount_path = NULL;
    char *dir = NULL;
    HRESULT hr = vhd_volume_dir(fd, &dir);
    if (hr != S_OK) return hr;
    *mount_path = emu_printf("%s/", dir);
    free(dir);
    return *mount_path ? S_OK : E_OUTOFMEMORY;
}

/* ------------------------------------------------------------------ entry */

/* The calls that walk layer trees run on a thread with WALK_STACK bytes of stack, so their
 * depth (bounded by TREE_MAX_DEPTH) never depends on the caller's stack size. */
typedef struct walk_job {
    storage_call_kind kind;
    const char *a, *b, *c, *d;
    int fd;
    HRESULT hr;
    char msg[sizeof t_msg];
} walk_job;

static void *walk_main(void *p) {
    walk_job *j = p;
    switch (j->kind) {
    case SC_IMPORT: j->hr = svc_storage_import_layer(j->a, j->b, j->c); break;
    case SC_EXPORT: j->hr = svc_storage_export_layer(j->a, j->b, j->c, j->d); break;
    case SC_EXPORT_LEGACY: j->hr = svc_storage_export_legacy_writable_layer(j->a, j->b, j->c, j->d); break;
    case SC_SETUP_OS: j->hr = svc_storage_setup_base_os_layer(j->a, j->fd, j->b); break;
    case SC_SETUP_VOLUME: j->hr = svc_storage_setup_base_os_volume(j->a, j->b, j->c); break;
    case SC_ATTACH: j->hr = svc_storage_attach(j->a, j->b); break;
    case SC_DETACH: j->hr = svc_storage_detach(j->a); break;
    }
    memcpy(j->msg, t_msg, sizeof t_msg);
    return NULL;
}

HRESULT storage_call(storage_call_kind kind, const char *a, const char *b, const char *c, const char *d, int fd) {
    walk_job j = {.kind = kind, .a = a, .b = b, .c = c, .d = d, .fd = fd, .hr = E_FAIL};
    pthread_attr_t attr;
    pthread_t t;
    bool started = pthread_attr_init(&attr) == 0;
    started = started && pthread_attr_setstacksize(&attr, WALK_STACK) == 0 && pthread_create(&t, &attr, walk_main, &j) == 0;
    pthread_attr_destroy(&attr);
    if (!started) return fail(E_OUTOFMEMORY, "no thread for the storage call");
    pthread_join(t, NULL);
    memcpy(t_msg, j.msg, sizeof t_msg);
    return j.hr;
}

HRESULT storage_fail(HRESULT hr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_msg, sizeof t_msg, fmt, ap);
    va_end(ap);
    emu_log("storage: %s (0x%08X)", t_msg, (unsigned)hr);
    return hr;
}
