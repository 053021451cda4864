/*
 * Layers on disk: tombstones (deletions recorded by a writable layer), the layout check,
 * the JSON documents (LayerData, options) and the layer metadata ('.hcsemu/layer.json').
 */
#define _GNU_SOURCE
#include "storage_int.h"

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
void tomb_reduce(strvec *t) {
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
HRESULT tomb_read(int layer_fd, const char *layer, strvec *t) {
    char *text = NULL;
    size_t len = 0;
    int r = read_file_at(layer_fd, TOMBSTONES, TOMB_MAX_BYTES, &text, &len);
    if (r == -ENOENT) return S_OK;
    if (r == -EINVAL || r == -ELOOP || r == -EFBIG)
        return storage_fail(HCS_E_INVALID_LAYER, "%s/%s is not a regular file of a sane size", layer, TOMBSTONES);
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
                hr = storage_fail(HCS_E_INVALID_LAYER, "%s/%s line %zu: NUL byte", layer, TOMBSTONES, lineno);
                break;
            }
            char *d = tomb_decode(text + i, n);
            if (!d || !rel_valid(d)) {
                hr = storage_fail(HCS_E_INVALID_LAYER, "%s/%s line %zu: bad path (escape, empty, '.' or '..' component)",
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
HRESULT tomb_write(int layer_fd, const strvec *t) {
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

bool has_suffix(const char *s, const char *suf) {
    size_t ls = strlen(s), lf = strlen(suf);
    return ls > lf && strcmp(s + ls - lf, suf) == 0;
}

/* Checks the top level of a layer folder (or an import source: where = IN_SOURCE).
 * require_files: Files/ must be there. */
HRESULT check_layout(int fd, const char *path, unsigned where, bool require_files) {
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
                hr = storage_fail(HCS_E_INVALID_LAYER, "%s/%s must be a %s (not a symlink or anything else)", path, n,
                          k_entries[k].type == ENT_DIR ? "directory" : "regular file");
            break;
        }
        if (!known && where == IN_LAYER && (has_suffix(n, ".vhdx") || has_suffix(n, ".vhd")) && S_ISREG(st.st_mode))
            known = true;
        if (hr == S_OK && !known)
            hr = storage_fail(HCS_E_INVALID_LAYER, "%s: unexpected entry '%s' (a layer holds Files, Hives, layout, UtilityVM%s)",
                      path, n, where == IN_SOURCE ? " and tombstones.txt" : ", tombstones.txt, disk images");
        if (strcmp(n, "Files") == 0) files = true;
    }
    sv_free(&names);
    if (hr == S_OK && require_files && !files) hr = storage_fail(HCS_E_INVALID_LAYER, "%s has no Files directory", path);
    return hr;
}

/* Opens a layer folder and checks its top level. */
HRESULT open_layer(const char *real, int *fd_out) {
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

HRESULT parse_doc(const char *text, const char *what, json **out) {
    *out = NULL;
    char err[200];
    json *v = json_parse(text, strlen(text), err, sizeof err);
    if (!v) return storage_fail(HCS_E_INVALID_JSON, "%s: invalid JSON: %s", what, err);
    if (json_typeof(v) != JSON_OBJECT) {
        json_free(v);
        return storage_fail(HCS_E_INVALID_JSON, "%s: must be a JSON object", what);
    }
    char where[160];
    if (json_has_nul(v, where, sizeof where)) { /* "keep\u0000/cache" would name keep */
        json_free(v);
        return storage_fail(HCS_E_INVALID_JSON, "%s: %s contains U+0000 (NUL), which no path or name may hold", what, where);
    }
    *out = v;
    return S_OK;
}

bool is_absent(const json *v) { return !v || json_typeof(v) == JSON_NULL; }

static HRESULT check_optional_string(const json *obj, const char *key, const char *what) {
    const json *v = json_get(obj, key);
    if (!is_absent(v) && json_typeof(v) != JSON_STRING)
        return storage_fail(HCS_E_INVALID_JSON, "%s: %s must be a string", what, key);
    return S_OK;
}

HRESULT check_optional_bool(const json *obj, const char *key, const char *what, bool *out) {
    const json *v = json_get(obj, key);
    if (out) *out = false;
    if (is_absent(v)) return S_OK;
    bool b;
    if (!json_bool(v, &b)) return storage_fail(HCS_E_INVALID_JSON, "%s: %s must be true or false", what, key);
    if (out) *out = b;
    return S_OK;
}

/* Parses LayerData (required): the parents' normalised paths, top-most first, into paths. */
HRESULT parse_layer_data(const char *text, json **doc_out, strvec *paths) {
    if (doc_out) *doc_out = NULL;
    if (!text || !*text) return storage_fail(E_INVALIDARG, "layerData is required");
    json *doc;
    HRESULT hr = parse_doc(text, "layerData", &doc);
    if (hr != S_OK) return hr;
    const json *sv = json_get(doc, "SchemaVersion");
    if (!is_absent(sv)) {
        int64_t x;
        if (json_typeof(sv) != JSON_OBJECT || !json_int64(json_get(sv, "Major"), &x) || x < 0 ||
            (!is_absent(json_get(sv, "Minor")) && (!json_int64(json_get(sv, "Minor"), &x) || x < 0))) {
            json_free(doc);
            return storage_fail(HCS_E_INVALID_JSON, "layerData: SchemaVersion must be {\"Major\":n,\"Minor\":n}");
        }
    }
    if ((hr = check_optional_string(doc, "FilterType", "layerData")) != S_OK) {
        json_free(doc);
        return hr;
    }
    const json *layers = json_get(doc, "Layers");
    if (!is_absent(layers) && json_typeof(layers) != JSON_ARRAY) {
        json_free(doc);
        return storage_fail(HCS_E_INVALID_JSON, "layerData: Layers must be an array");
    }
    for (size_t i = 0; i < json_len(layers) && hr == S_OK; i++) {
        const json *l = json_at(layers, i);
        if (json_typeof(l) != JSON_OBJECT) {
            hr = storage_fail(HCS_E_INVALID_JSON, "layerData: Layers[%zu] must be an object", i);
            break;
        }
        if ((hr = check_optional_string(l, "Id", "layerData.Layers[]")) != S_OK) break;
        if ((hr = check_optional_string(l, "Cache", "layerData.Layers[]")) != S_OK) break;
        const json *pt = json_get(l, "PathType");
        if (!is_absent(pt)) {
            const char *s = json_str(pt);
            if (!s) {
                hr = storage_fail(HCS_E_INVALID_JSON, "layerData: Layers[%zu].PathType must be a string", i);
                break;
            }
            if (strcmp(s, "VirtualSmbShareName") == 0) {
                hr = storage_fail(HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED),
                          "layerData: PathType VirtualSmbShareName is not supported by the emulator");
                break;
            }
            if (strcmp(s, "AbsolutePath") != 0) {
                hr = storage_fail(HCS_E_INVALID_JSON, "layerData: unknown PathType '%s'", s);
                break;
            }
        }
        const char *p = json_str(json_get(l, "Path"));
        if (!p || !*p) {
            hr = storage_fail(HCS_E_INVALID_JSON, "layerData: Layers[%zu].Path must be a non-empty string", i);
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
HRESULT resolve_parents(const strvec *paths, const char *self, strvec *real) {
    for (size_t i = 0; i < paths->n; i++) {
        char *r;
        HRESULT hr = resolve_dir(paths->v[i], "parent layer", &r);
        if (hr != S_OK) return hr;
        if (!sv_push(real, r)) return E_OUTOFMEMORY;
        int fd = -1;
        if ((hr = open_layer(r, &fd)) != S_OK) return hr;
        close(fd);
        if (self && (path_within(r, self) || path_within(self, r)))
            return storage_fail(E_INVALIDARG, "parent layer %s and layer %s are the same or nested", r, self);
        for (size_t j = 0; j + 1 < real->n; j++)
            if (path_within(r, real->v[j]) || path_within(real->v[j], r))
                return storage_fail(E_INVALIDARG, "parent layers %s and %s are the same or nested", real->v[j], r);
    }
    return S_OK;
}

json *strvec_to_json(const strvec *s) {
    json *a = json_new_array();
    for (size_t i = 0; a && i < s->n; i++) json_append(a, json_new_string(s->v[i]));
    return a;
}

bool json_to_strvec(const json *a, strvec *out) {
    if (json_typeof(a) != JSON_ARRAY) return false;
    for (size_t i = 0; i < json_len(a); i++) {
        const char *s = json_str(json_at(a, i));
        if (!s || !sv_pushdup(out, s)) return false;
    }
    return true;
}

/* ------------------------------------------------------------------ layer metadata */

/* Reads <layer>/.hcsemu/layer.json: S_OK with *out NULL when there is none. */
HRESULT meta_read(const char *layer, json **out) {
    *out = NULL;
    int lfd = open_dir_path(layer);
    if (lfd < 0) return fail_errno(errno, "open", layer);
    int mfd = open_dir_at(lfd, META_DIR);
    close(lfd);
    if (mfd < 0) return errno == ENOENT ? S_OK : storage_fail(HCS_E_INVALID_LAYER, "%s/%s is not a directory", layer, META_DIR);
    char *text = NULL;
    size_t len = 0;
    int r = read_file_at(mfd, META_FILE, 1u << 20, &text, &len);
    close(mfd);
    if (r == -ENOENT) return S_OK;
    if (r) return storage_fail(HCS_E_INVALID_LAYER, "%s/%s/%s unreadable: %s", layer, META_DIR, META_FILE, strerror(-r));
    char err[200];
    json *v = json_parse(text, len, err, sizeof err);
    free(text);
    if (!v || json_typeof(v) != JSON_OBJECT || !json_str(json_get(v, "Kind"))) {
        json_free(v);
        return storage_fail(HCS_E_INVALID_LAYER, "%s/%s/%s is damaged", layer, META_DIR, META_FILE);
    }
    *out = v;
    return S_OK;
}

HRESULT meta_write(const char *layer, const json *doc) {
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

bool meta_is_writable(const json *m) {
    const char *k = json_str(json_get(m, "Kind"));
    return k && strcmp(k, "WritableLayer") == 0;
}

const json *meta_attached(const json *m) {
    const json *a = json_get(m, "Attached");
    return json_typeof(a) == JSON_OBJECT ? a : NULL;
}

/* Reads a writable layer's metadata; HCS_E_INVALID_LAYER if it is not one. */
HRESULT meta_read_writable(const char *layer, json **out) {
    HRESULT hr = meta_read(layer, out);
    if (hr != S_OK) return hr;
    if (!*out || !meta_is_writable(*out)) {
        json_free(*out);
        *out = NULL;
        return storage_fail(HCS_E_INVALID_LAYER, "%s is not a writable layer (HcsInitializeWritableLayer was not called)", layer);
    }
    return S_OK;
}
