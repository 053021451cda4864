/*
 * The storage runtime folder, the global lock (a flock across processes) and the registry of
 * attached layers (which layer is in use by which).
 */
#define _GNU_SOURCE
#include "storage_int.h"

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

char *runtime_sub(const char *sub) {
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

pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

void lock_acquire(glock *l) {
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

void lock_release(glock *l) {
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

HRESULT index_add(const char *layer, const char *mode, const strvec *parents) {
    char *p = index_entry_path(layer);
    if (!p) return storage_fail(E_FAIL, "no runtime directory for the storage registry");
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

void index_remove(const char *layer) {
    char *p = index_entry_path(layer);
    if (p) unlink(p);
    free(p);
}

/* Is `target` attached, a parent of an attached layer, or a folder inside or containing one?
 * *by: the attached layer (malloc'd).
 * Prunes entries whose layer is gone or detached. */
bool index_in_use(const char *target, char **by) {
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
