/*
 * VM utility functions of the service: state files, VM access grants, the processor
 * requirements a saved state holds. The exports (UTF-16, faults) are client/vmutil_api.c.
 *
 * State files are a magic line then one JSON object ("HCSEMU-VMGS 1" guest state,
 * "HCSEMU-VMRS 1" runtime state), so a test can read what Save wrote.
 *
 * Access grants stand for the ACEs Windows adds: one for the VM's virtual account
 * (S-1-5-83-1-<four 32-bit words of the VM GUID>) or the "Virtual Machines" group
 * (S-1-5-83-0, read access); the VM's account is that of the compute system's RuntimeId when the
 * id names one (the caller looks it up: svc_vm_change_access's runtime_id). They are kept as a JSON list in the extended attribute
 * user.hcs.acl, or in a sidecar file "<path>.hcs-acl" where the filesystem has no user
 * xattrs; pyhcs.vm reads either. A VM id that is not a GUID is turned into one by hashing
 * the id ([INFER]: Windows derives it from the id string by an undocumented rule).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "vmutil.h"

#define ACL_XATTR "user.hcs.acl"
#define ACL_SIDECAR ".hcs-acl"
#define VMRS_MAGIC "HCSEMU-VMRS 1\n"
#define VMGS_MAGIC "HCSEMU-VMGS 1\n"

static HRESULT errno_hr(int e) {
    switch (e) {
    case ENOENT: return HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND);
    case ENOTDIR: return HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND);
    case EEXIST: return HRESULT_FROM_WIN32(ERROR_FILE_EXISTS);
    case EACCES:
    case EPERM: return E_ACCESSDENIED;
    case ENOSPC: return HRESULT_FROM_WIN32(ERROR_DISK_FULL);
    case ENAMETOOLONG: return HRESULT_FROM_WIN32(ERROR_INVALID_NAME);
    default: return E_FAIL;
    }
}

/* Creates path exclusively with the state file's magic and an empty JSON body. */
HRESULT svc_vm_create_state_file(const char *path, bool runtime) {
    const char *magic = runtime ? VMRS_MAGIC : VMGS_MAGIC, *kind = runtime ? "RuntimeState" : "GuestState";
    bool ok;
    /* O_EXCL never follows a symlink and never opens an existing FIFO */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return e == ENOENT ? HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND) : errno_hr(e);
    }
    json *o = json_new_object();
    json_set(o, "Kind", json_new_string(kind));
    json_set(o, "Empty", json_new_bool(true));
    json_set(o, "CreatedAt", json_new_int((int64_t)time(NULL)));
    char *body = json_dump(o);
    json_free(o);
    if (!body) {
        close(fd);
        unlink(path);
        return E_OUTOFMEMORY;
    }
    size_t ml = strlen(magic), bl = strlen(body);
    ok = write(fd, magic, ml) == (ssize_t)ml && write(fd, body, bl) == (ssize_t)bl;
    int e = errno;
    free(body);
    if (close(fd) != 0) ok = false;
    if (!ok) unlink(path);
    return ok ? S_OK : errno_hr(e);
}

/* ------------------------------------------------------------------ access grants */

static bool parse_guid(const char *s, uint8_t out[16]) {
    if (*s == '{') s++;
    int n = 0;
    for (const char *p = s; *p && n < 32; p++) {
        if (*p == '-') continue;
        int v = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
               : (*p >= 'A' && *p <= 'F') ? *p - 'A' + 10 : -1;
        if (v < 0) return false;
        if (n % 2 == 0) out[n / 2] = (uint8_t)(v << 4);
        else out[n / 2] |= (uint8_t)v;
        n++;
    }
    size_t len = strlen(s);
    return n == 32 && (len == 36 || (len == 37 && s[36] == '}'));
}

static void vm_sid(const char *vm_id, const char *runtime, char *out, size_t n) {
    uint8_t g[16];
    /* A VM's account is NT VIRTUAL MACHINE\<its GUID>: for a compute system that exists, its
     * RuntimeId; otherwise the id itself when it is a GUID, else a hash of it. */
    bool known = runtime && parse_guid(runtime, g);
    if (!known && !parse_guid(vm_id, g)) {
        /* FNV-1a over the id, spread over 16 bytes */
        uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
        for (const unsigned char *p = (const unsigned char *)vm_id; *p; p++) {
            h1 = (h1 ^ *p) * 0x100000001b3ull;
            h2 = (h2 ^ *p) * 0x100000001b3ull ^ (h1 >> 29);
        }
        memcpy(g, &h1, 8);
        memcpy(g + 8, &h2, 8);
    }
    /* The GUID's fields as Windows lays them out in memory (little-endian Data1..Data3). */
    uint8_t le[16] = {g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6],
                      g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]};
    uint32_t w[4];
    memcpy(w, le, 16);
    snprintf(out, n, "S-1-5-83-1-%u-%u-%u-%u", w[0], w[1], w[2], w[3]);
}

/* The sidecar "<path>.hcs-acl" is reached through its parent directory and never through a
 * symlink: a link planted at that name cannot redirect a grant (made as root) to another file,
 * and anything there that is not a regular file is refused. */
typedef struct sidecar_ref {
    int dirfd;
    char *name; /* "<last component of path>.hcs-acl" */
} sidecar_ref;

static int sidecar_at(const char *path, sidecar_ref *r) {
    r->dirfd = -1;
    r->name = NULL;
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--; /* "dir/" names dir, not a file inside it */
    const char *slash = NULL;
    for (size_t i = 0; i < n; i++)
        if (path[i] == '/') slash = path + i;
    const char *base = slash ? slash + 1 : path;
    size_t bl = n - (size_t)(base - path);
    if (bl == 0 || (bl == 1 && base[0] == '.') || (bl == 2 && base[0] == '.' && base[1] == '.')) {
        errno = EINVAL;
        return -1;
    }
    char *dir = slash ? (slash == path ? strdup("/") : strndup(path, (size_t)(slash - path))) : strdup(".");
    r->name = emu_printf("%.*s%s", (int)bl, base, ACL_SIDECAR);
    if (!dir || !r->name) {
        free(dir);
        free(r->name);
        r->name = NULL;
        errno = ENOMEM;
        return -1;
    }
    r->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    free(dir);
    if (r->dirfd < 0) {
        free(r->name);
        r->name = NULL;
        errno = e;
        return -1;
    }
    return 0;
}

static void sidecar_close(sidecar_ref *r) {
    if (r->dirfd >= 0) close(r->dirfd);
    free(r->name);
}

/* Opens the sidecar (O_NOFOLLOW, O_NONBLOCK so a FIFO there cannot block) and checks it is a
 * regular file. -1 with errno (ENOENT: none; EINVAL: something that is not a regular file). */
static int sidecar_open(const sidecar_ref *r, int flags) {
    int fd = openat(r->dirfd, r->name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (errno == ELOOP || errno == ENXIO || errno == EISDIR) errno = EINVAL;
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

/* Reads the ACE list; *sidecar_mode tells where it lives. */
static HRESULT acl_read(const char *path, bool *sidecar_mode, json **out) {
    char buf[65536];
    ssize_t n = getxattr(path, ACL_XATTR, buf, sizeof buf - 1);
    *sidecar_mode = false;
    *out = NULL;
    if (n < 0 && errno != ENODATA && errno != ENOTSUP && errno != EPERM) return errno_hr(errno);
    if (n < 0 && (errno == ENOTSUP || errno == EPERM)) {
        *sidecar_mode = true;
        sidecar_ref r;
        if (sidecar_at(path, &r) != 0) return errno == EINVAL ? E_INVALIDARG : errno_hr(errno);
        int fd = sidecar_open(&r, O_RDONLY);
        int e = errno;
        sidecar_close(&r);
        if (fd < 0 && e != ENOENT) {
            emu_log("the VM access sidecar of %s is not a regular file: refused", path);
            return e == EINVAL ? E_INVALIDARG : errno_hr(e);
        }
        n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0) close(fd);
    }
    json *v = n > 0 ? json_parse(buf, (size_t)n, NULL, 0) : NULL;
    if (json_typeof(v) != JSON_ARRAY) {
        json_free(v);
        v = json_new_array();
    }
    *out = v;
    return S_OK;
}

static HRESULT acl_write(const char *path, const json *acl, bool sidecar_mode) {
    char *text = json_dump(acl);
    if (!text) return E_OUTOFMEMORY;
    int rc = 0;
    if (!sidecar_mode) {
        rc = json_len(acl) ? setxattr(path, ACL_XATTR, text, strlen(text), 0) : removexattr(path, ACL_XATTR);
        if (rc < 0 && errno == ENODATA) rc = 0;
        if (rc < 0 && (errno == ENOTSUP || errno == EPERM)) sidecar_mode = true;
    }
    if (sidecar_mode) {
        emu_log("no user xattrs on %s: VM access grants go to a sidecar file", path);
        sidecar_ref r;
        rc = sidecar_at(path, &r);
        if (rc == 0 && json_len(acl)) {
            int fd = sidecar_open(&r, O_WRONLY | O_CREAT);
            size_t len = strlen(text);
            rc = fd >= 0 && ftruncate(fd, 0) == 0 && write(fd, text, len) == (ssize_t)len ? 0 : -1;
            if (fd >= 0) close(fd);
        } else if (rc == 0) {
            struct stat st;
            if (fstatat(r.dirfd, r.name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                rc = errno == ENOENT ? 0 : -1;
            else if (!S_ISREG(st.st_mode))
                rc = -1, errno = EINVAL; /* never unlink what a grant did not write */
            else
                rc = unlinkat(r.dirfd, r.name, 0) == 0 || errno == ENOENT ? 0 : -1;
        }
        int e = errno;
        if (rc == 0 || r.name) sidecar_close(&r);
        errno = e;
    }
    int e = errno;
    free(text);
    return rc == 0 ? S_OK : e == EINVAL ? E_INVALIDARG : errno_hr(e);
}

HRESULT svc_vm_change_access(const char *vm, const char *runtime_id, const char *path, bool grant) {
    bool group = vm == NULL;
    HRESULT hr = S_OK;
    struct stat st;
    if (stat(path, &st) != 0) {
        hr = errno_hr(errno);
        goto out;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        /* a VM is granted files and folders (disks, state files, shares); a device, FIFO or
         * socket has no ACL HCS would set */
        emu_log("VM access: %s is not a regular file or directory: refused", path);
        hr = E_INVALIDARG;
        goto out;
    }
    char sid[96];
    if (group) snprintf(sid, sizeof sid, "S-1-5-83-0");
    else vm_sid(vm, runtime_id, sid, sizeof sid);
    bool sc;
    json *acl = NULL;
    hr = acl_read(path, &sc, &acl);
    if (FAILED(hr)) goto out;
    json *next = json_new_array();
    bool present = false;
    for (size_t i = 0; i < json_len(acl); i++) {
        const json *ace = json_at(acl, i);
        const char *s = json_str(json_get(ace, "Sid"));
        if (s && strcmp(s, sid) == 0) {
            present = true;
            if (!grant) continue;
        }
        json_append(next, json_clone(ace));
    }
    if (grant && !present) {
        json *ace = json_new_object();
        json_set(ace, "Sid", json_new_string(sid));
        if (vm) json_set(ace, "VmId", json_new_string(vm));
        json_set(ace, "Access", json_new_string(group ? "GenericRead" : "GenericAll"));
        json_set(ace, "Inherit", json_new_bool(S_ISDIR(st.st_mode)));
        json_append(next, ace);
    }
    if (grant != present) hr = acl_write(path, next, sc);
    json_free(acl);
    json_free(next);
out:
    return hr;
}

HRESULT svc_vm_saved_processor_requirements(const char *path, char **doc) {
    *doc = NULL;
    int fd = emu_open_regular(path, O_RDONLY, 0);
    int e = errno;
    if (fd < 0) return (e == EINVAL || e == EISDIR) ? E_INVALIDARG : errno_hr(e);
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return E_OUTOFMEMORY;
    }
    char *buf = NULL;
    size_t cap = 0, len = 0;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return E_OUTOFMEMORY;
            }
            buf = nb;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    size_t ml = strlen(VMRS_MAGIC);
    json *saved = (buf && len > ml && memcmp(buf, VMRS_MAGIC, ml) == 0) ? json_parse(buf + ml, len - ml, NULL, 0) : NULL;
    free(buf);
    const json *req = json_get(saved, "ProcessorRequirements");
    HRESULT hr = S_OK;
    if (!req) {
        hr = HRESULT_FROM_WIN32(ERROR_INVALID_DATA); /* not a runtime state file, or holds no saved state */
    } else {
        *doc = json_dump(req);
        if (!*doc) hr = E_OUTOFMEMORY;
    }
    json_free(saved);
    return hr;
}
