/* UTF-16 <-> UTF-8, result documents and LocalFree: what computecore.dll does for its callers. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wstr.h"

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

/* Not part of the HCS ABI: the length (in 16-bit units) of a string the library returned.
 * Off Windows there is no 16-bit wcslen, and a binding that scans memory past the end of a
 * result document would trip AddressSanitizer; this lets it measure exactly. */
EMU_EXPORT size_t hcsemu_wcslen(const WCHAR *s) {
    size_t n = 0;
    if (s)
        while (s[n]) n++;
    return n;
}

