/* UTF-16 <-> UTF-8, result documents and LocalFree, small shared helpers. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emu.h"

char *emu_utf8(PCWSTR w, bool *ok) {
    if (ok) *ok = true;
    if (!w) return NULL;
    size_t n = 0;
    while (w[n]) n++;
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = w[i];
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && w[i + 1] >= 0xDC00 && w[i + 1] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (w[i + 1] - 0xDC00);
            i++;
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            if (ok) *ok = false; /* lone surrogate: not representable, replace and report */
            c = 0xFFFD;
        }
        if (c < 0x80) {
            out[o++] = (char)c;
        } else if (c < 0x800) {
            out[o++] = (char)(0xC0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else if (c < 0x10000) {
            out[o++] = (char)(0xE0 | (c >> 12));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (c >> 18));
            out[o++] = (char)(0x80 | ((c >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (c & 0x3F));
        }
    }
    out[o] = 0;
    return out;
}

/* Live result documents, so that LocalFree can refuse a pointer it never handed out (or one
 * freed twice) instead of corrupting the heap, and so that leaks can be counted. */
static pthread_mutex_t docs_mu = PTHREAD_MUTEX_INITIALIZER;
static uintptr_t *docs_tab;
static size_t docs_cap, docs_len, docs_tomb;
#define DOC_TOMB ((uintptr_t)1)

static size_t doc_slot(uintptr_t p) { return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull); }

static bool docs_grow(void) {
    size_t ncap = docs_cap ? docs_cap * 2 : 256;
    while (docs_len * 2 >= ncap) ncap *= 2;
    uintptr_t *nt = calloc(ncap, sizeof *nt);
    if (!nt) return false;
    for (size_t i = 0; i < docs_cap; i++) {
        uintptr_t p = docs_tab[i];
        if (p > DOC_TOMB) {
            size_t j = doc_slot(p) & (ncap - 1);
            while (nt[j]) j = (j + 1) & (ncap - 1);
            nt[j] = p;
        }
    }
    free(docs_tab);
    docs_tab = nt;
    docs_cap = ncap;
    docs_tomb = 0;
    return true;
}

static bool docs_add(void *ptr) {
    uintptr_t p = (uintptr_t)ptr;
    pthread_mutex_lock(&docs_mu);
    if ((docs_len + docs_tomb + 1) * 2 > docs_cap && !docs_grow()) {
        pthread_mutex_unlock(&docs_mu);
        return false;
    }
    size_t j = doc_slot(p) & (docs_cap - 1);
    while (docs_tab[j] > DOC_TOMB) j = (j + 1) & (docs_cap - 1);
    if (docs_tab[j] == DOC_TOMB) docs_tomb--;
    docs_tab[j] = p;
    docs_len++;
    pthread_mutex_unlock(&docs_mu);
    return true;
}

static bool docs_remove(void *ptr) {
    uintptr_t p = (uintptr_t)ptr;
    bool found = false;
    pthread_mutex_lock(&docs_mu);
    if (docs_cap) {
        size_t j = doc_slot(p) & (docs_cap - 1);
        while (docs_tab[j]) {
            if (docs_tab[j] == p) {
                docs_tab[j] = DOC_TOMB;
                docs_tomb++;
                docs_len--;
                found = true;
                break;
            }
            j = (j + 1) & (docs_cap - 1);
        }
    }
    pthread_mutex_unlock(&docs_mu);
    return found;
}

size_t emu_live_documents(void) {
    pthread_mutex_lock(&docs_mu);
    size_t n = docs_len;
    pthread_mutex_unlock(&docs_mu);
    return n;
}

EMU_EXPORT HLOCAL LocalFree(HLOCAL mem) {
    if (!mem) return NULL;
    if (!docs_remove(mem)) {
        /* Windows returns the handle on failure; we never touch memory we did not hand out. */
        emu_log("LocalFree of a pointer that is not a live result document: %p", mem);
        return mem;
    }
    free(mem);
    return NULL;
}

PWSTR emu_doc(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    WCHAR *w = malloc((n + 1) * sizeof(WCHAR));
    if (!w) return NULL;
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t c = u[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) {
            c = 0xFFFD;
            len = 1;
        } else if (len > 1) {
            c &= (0xFFu >> (len + 1));
            for (size_t k = 1; k < len; k++) c = (c << 6) | (u[i + k] & 0x3F);
        }
        i += len;
        if (c >= 0x10000) {
            c -= 0x10000;
            w[o++] = (WCHAR)(0xD800 + (c >> 10));
            w[o++] = (WCHAR)(0xDC00 + (c & 0x3FF));
        } else {
            w[o++] = (WCHAR)c;
        }
    }
    w[o] = 0;
    if (!docs_add(w)) {
        free(w);
        return NULL;
    }
    return w;
}

PWSTR emu_doc_json(const json *v) {
    char *s = json_dump(v);
    PWSTR w = emu_doc(s);
    free(s);
    return w;
}

char *emu_strdup(const char *s) { return s ? strdup(s) : NULL; }

char *emu_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    if (vasprintf(&out, fmt, ap) < 0) out = NULL;
    va_end(ap);
    return out;
}

char *emu_error_doc(HRESULT hr, const char *fmt, ...) {
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    HRESULT pub = emu_public_hr(hr);
    json *doc = json_new_object();
    json_set(doc, "Error", json_new_int((int32_t)pub));
    json_set(doc, "ErrorMessage", json_new_string(msg ? msg : ""));
    json *events = json_new_array();
    json *ev = json_new_object();
    json_set(ev, "Message", json_new_string(msg ? msg : ""));
    json_set(ev, "Provider", json_new_string("17103e3f-3c6e-4677-bb17-3b267eb5be57"));
    json_set(ev, "EventId", json_new_int(1));
    json_set(ev, "Source", json_new_string("hcsemu"));
    json_append(events, ev);
    json_set(doc, "ErrorEvents", events);
    char *out = json_dump(doc);
    json_free(doc);
    free(msg);
    return out;
}

bool emu_is_empty(PCWSTR w) { return !w || !w[0]; }

HRESULT emu_parse_optional(PCWSTR w, json **out, char **err) {
    *out = NULL;
    if (emu_is_empty(w)) return S_OK;
    bool ok;
    char *s = emu_utf8(w, &ok);
    if (!s) return E_OUTOFMEMORY;
    char msg[256];
    json *v = ok ? json_parse(s, strlen(s), msg, sizeof msg) : NULL;
    if (!ok) snprintf(msg, sizeof msg, "the document is not valid UTF-16 (lone surrogate)");
    free(s);
    if (!v) {
        if (err) *err = emu_error_doc(HCS_E_INVALID_JSON, "Invalid JSON document: %s", msg);
        return HCS_E_INVALID_JSON;
    }
    *out = v;
    return S_OK;
}

uint64_t emu_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void emu_deadline(struct timespec *ts, uint32_t timeout_ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void emu_cond_init(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

void emu_log(const char *fmt, ...) {
    static int enabled = -1;
    if (enabled < 0) {
        const char *e = getenv("HCSEMU_DEBUG");
        enabled = e && *e && strcmp(e, "0") != 0;
    }
    if (!enabled) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hcsemu: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Not part of the HCS ABI: the length (in 16-bit units) of a string the library returned.
 * Off Windows there is no 16-bit wcslen, and a binding that scans memory past the end of a
 * result document would trip AddressSanitizer; this lets it measure exactly. */
EMU_EXPORT size_t hcsemu_wcslen(const WCHAR *s) {
    size_t n = 0;
    if (s)
        while (s[n]) n++;
    return n;
}

int emu_open_regular(const char *path, int flags, unsigned mode) {
    struct stat st = {0};
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    /* O_NONBLOCK: a FIFO put in place after the stat must not block the open. */
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) return errno == ENXIO ? (errno = EINVAL, -1) : -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        if (e == 0 || S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        errno = e;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

char **emu_split_windows_cmdline(const char *s, size_t *argc_out) {
    size_t len = strlen(s), cap = 8, argc = 0;
    char **argv = calloc(cap, sizeof *argv);
    char *buf = malloc(len + 1); /* no argument is longer than the command line */
    if (!argv || !buf) goto oom;
    const char *p = s;
    while (*p == ' ' || *p == '\t') p++;
    bool first = true;
    while (*p) {
        size_t o = 0;
        if (first) {
            /* the program: no escapes, quotes only delimit */
            if (*p == '"') {
                p++;
                while (*p && *p != '"') buf[o++] = *p++;
                if (*p == '"') p++;
            } else {
                while (*p && *p != ' ' && *p != '\t') buf[o++] = *p++;
            }
            first = false;
        } else {
            int q = 0; /* quotes seen in the current run: odd = inside a quoted part */
            size_t bs = 0;
            while (*p && !((*p == ' ' || *p == '\t') && q == 0)) {
                if (*p == '\\') {
                    buf[o++] = *p++;
                    bs++;
                    continue;
                }
                if (*p == '"') {
                    if (bs % 2 == 0) {
                        o -= bs / 2; /* half the backslashes; the quote delimits */
                        q++;
                    } else {
                        o -= bs / 2 + 1; /* half, and the last one escapes a literal quote */
                        buf[o++] = '"';
                    }
                    p++;
                    bs = 0;
                    /* a run of further quotes: every third one of the run is a literal quote */
                    while (*p == '"') {
                        if (++q == 3) {
                            buf[o++] = '"';
                            q = 0;
                        }
                        p++;
                    }
                    if (q == 2) q = 0;
                    continue;
                }
                buf[o++] = *p++;
                bs = 0;
            }
        }
        buf[o] = 0;
        if (argc + 2 > cap) {
            char **n = realloc(argv, cap * 2 * sizeof *n);
            if (!n) goto oom;
            argv = n;
            cap *= 2;
        }
        argv[argc] = strdup(buf);
        if (!argv[argc]) goto oom;
        argv[++argc] = NULL;
        while (*p == ' ' || *p == '\t') p++;
    }
    free(buf);
    *argc_out = argc;
    return argv;
oom:
    if (argv)
        for (size_t i = 0; i < argc; i++) free(argv[i]);
    free(argv);
    free(buf);
    return NULL;
}
