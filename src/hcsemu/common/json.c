/* Strict JSON library; see json.h for the semantics. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* newlocale/strtod_l: number conversion must not follow LC_NUMERIC */
#endif
#include "json.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NUM_BIGINT: an integer literal outside the int64/uint64 range, known only as a rounded double,
   so it must never pass for an exact integer. */
enum { NUM_DOUBLE, NUM_INT, NUM_UINT, NUM_BIGINT };

typedef struct {
    char *key;
    size_t klen;
    json *val;
    uint64_t hash;
} member;

struct json {
    json_type type;
    union {
        bool b;
        struct {
            double d;
            int64_t i; /* NUM_INT */
            uint64_t u; /* NUM_UINT: only values above INT64_MAX */
            int kind;
        } n;
        struct {
            char *p; /* always NUL-terminated */
            size_t len;
        } s;
        struct {
            json **v;
            size_t len, cap;
        } a;
        struct {
            member *m;
            size_t len, cap;
            uint32_t *idx; /* open-addressing index of member position + 1; NULL when small */
            size_t icap;   /* power of two */
            uint64_t seed; /* per-object so colliding keys can't be precomputed */
        } o;
    } u;
};

/* Below this many members a linear scan (comparing cached hashes) beats an index. */
#define INDEX_MIN 16

/* ------------------------------------------------------------------ helpers */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t key_hash(const char *k, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t c;
        memcpy(&c, k, 8);
        h = (h ^ c) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
        k += 8;
        n -= 8;
    }
    if (n) {
        uint64_t c = 0;
        memcpy(&c, k, n);
        h = (h ^ c) * 0x94d049bb133111ebULL;
        h ^= h >> 32;
    }
    return mix64(h);
}

static json *node_new(json_type t)
{
    json *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->type = t;
    if (t == JSON_OBJECT)
        v->u.o.seed = mix64((uint64_t)(uintptr_t)v ^ 0x6a09e667f3bcc909ULL);
    return v;
}

/* Length of the valid UTF-8 sequence at p (p < end), 0 if invalid (overlong, surrogate,
   above U+10FFFF, truncated). */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t avail = (size_t)(end - p);
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return (avail >= 2 && (p[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (avail < 3 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (avail < 4 || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

static size_t utf8_encode(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static int hexval(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return (int)(c - 'a' + 10);
    return -1;
}

static bool hex4(const unsigned char *p, const unsigned char *end, uint32_t *out)
{
    uint32_t v = 0;
    if (end - p < 4)
        return false;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return false;
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return true;
}

static bool is_digit(unsigned c) { return c - '0' < 10u; }

/* Converts a literal that already matched the JSON number grammar (or %g output).
   Returns 0 on success, -1 if the magnitude overflows a double, -2 on out of memory.
   *loc caches a "C" locale for the slow path; the caller frees it. */
static int text_to_double(const char *s, size_t n, double *out, locale_t *loc)
{
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    /* Clinger's fast path: an exact mantissa times an exact power of ten rounds correctly. */
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const unsigned char *q = (const unsigned char *)s, *e = q + n;
    bool neg = false, ok = true;
    uint64_t m = 0;
    int nd = 0;
    int64_t dexp = 0;
    if (q < e && *q == '-') {
        neg = true;
        q++;
    }
    for (; q < e && is_digit(*q); q++) {
        if (m == 0 && *q == '0')
            continue;
        if (nd >= 19)
            ok = false;
        else {
            m = m * 10 + (uint64_t)(*q - '0');
            nd++;
        }
    }
    if (q < e && *q == '.') {
        for (q++; q < e && is_digit(*q); q++) {
            dexp--;
            if (m == 0 && *q == '0')
                continue;
            if (nd >= 19)
                ok = false;
            else {
                m = m * 10 + (uint64_t)(*q - '0');
                nd++;
            }
        }
    }
    if (q < e && (*q | 0x20) == 'e') {
        bool eneg = false;
        int64_t ev = 0;
        q++;
        if (q < e && (*q == '+' || *q == '-'))
            eneg = *q++ == '-';
        for (; q < e && is_digit(*q); q++)
            if (ev < 1000000)
                ev = ev * 10 + (*q - '0');
        dexp += eneg ? -ev : ev;
    }
    if (ok && q == e) {
        if (m == 0) {
            *out = neg ? -0.0 : 0.0;
            return 0;
        }
        if (m <= (UINT64_C(1) << 53) && dexp >= -22 && dexp <= 22) {
            double d = (double)m;
            d = dexp < 0 ? d / p10[-dexp] : d * p10[dexp];
            *out = neg ? -d : d;
            return 0;
        }
    }
#endif
    char stackbuf[128];
    char *buf = n < sizeof stackbuf ? stackbuf : malloc(n + 1);
    if (!buf)
        return -2;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (!*loc) {
        *loc = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (!*loc) {
            if (buf != stackbuf)
                free(buf);
            return -2;
        }
    }
    double d = strtod_l(buf, NULL, *loc);
    if (buf != stackbuf)
        free(buf);
    if (isinf(d))
        return -1;
    *out = d;
    return 0;
}

/* ------------------------------------------------------------------ containers */

static bool arr_push(json *a, json *v)
{
    if (a->u.a.len == a->u.a.cap) {
        size_t nc = a->u.a.cap ? a->u.a.cap * 2 : 4;
        json **nv = nc > SIZE_MAX / sizeof *nv ? NULL : realloc(a->u.a.v, nc * sizeof *nv);
        if (!nv) {
            json_free(v);
            return false;
        }
        a->u.a.v = nv;
        a->u.a.cap = nc;
    }
    a->u.a.v[a->u.a.len++] = v;
    return true;
}

static void index_insert(json *o, size_t pos)
{
    size_t mask = o->u.o.icap - 1;
    size_t i = (size_t)o->u.o.m[pos].hash & mask;
    while (o->u.o.idx[i])
        i = (i + 1) & mask;
    o->u.o.idx[i] = (uint32_t)(pos + 1);
}

/* A failed rebuild just drops the index: lookups fall back to the (correct) linear scan. */
static void index_rebuild(json *o)
{
    size_t len = o->u.o.len;
    free(o->u.o.idx);
    o->u.o.idx = NULL;
    o->u.o.icap = 0;
    if (len <= INDEX_MIN || len >= UINT32_MAX / 4)
        return;
    size_t cap = 64;
    while (cap < len * 3)
        cap *= 2;
    o->u.o.idx = calloc(cap, sizeof *o->u.o.idx);
    if (!o->u.o.idx)
        return;
    o->u.o.icap = cap;
    for (size_t i = 0; i < len; i++)
        index_insert(o, i);
}

static size_t obj_find(const json *o, const char *k, size_t kl, uint64_t h)
{
    const member *m = o->u.o.m;
    if (o->u.o.idx) {
        size_t mask = o->u.o.icap - 1;
        for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
            uint32_t s = o->u.o.idx[i];
            if (!s)
                return SIZE_MAX;
            const member *c = &m[s - 1];
            if (c->hash == h && c->klen == kl && memcmp(c->key, k, kl) == 0)
                return s - 1;
        }
    }
    for (size_t i = 0; i < o->u.o.len; i++)
        if (m[i].hash == h && m[i].klen == kl && memcmp(m[i].key, k, kl) == 0)
            return i;
    return SIZE_MAX;
}

/* Appends a member known not to exist; owns key and val in every case. */
static bool obj_append(json *o, char *key, size_t kl, uint64_t h, json *val)
{
    if (o->u.o.len == o->u.o.cap) {
        size_t nc = o->u.o.cap ? o->u.o.cap * 2 : 4;
        member *nm = nc > SIZE_MAX / sizeof *nm ? NULL : realloc(o->u.o.m, nc * sizeof *nm);
        if (!nm) {
            free(key);
            json_free(val);
            return false;
        }
        o->u.o.m = nm;
        o->u.o.cap = nc;
    }
    size_t pos = o->u.o.len++;
    o->u.o.m[pos] = (member){key, kl, val, h};
    if (o->u.o.len > INDEX_MIN) {
        if (o->u.o.idx && o->u.o.len * 3 <= o->u.o.icap * 2)
            index_insert(o, pos);
        else
            index_rebuild(o);
    }
    return true;
}

/* Insert or replace (keeping the position); owns key and val in every case. */
static bool obj_put(json *o, char *key, size_t kl, json *val)
{
    uint64_t h = key_hash(key, kl, o->u.o.seed);
    size_t i = obj_find(o, key, kl, h);
    if (i != SIZE_MAX) {
        free(key);
        if (o->u.o.m[i].val != val) {
            json_free(o->u.o.m[i].val);
            o->u.o.m[i].val = val;
        }
        return true;
    }
    return obj_append(o, key, kl, h, val);
}

/* Removes member i and returns its value. */
static json *obj_take(json *o, size_t i)
{
    json *v = o->u.o.m[i].val;
    free(o->u.o.m[i].key);
    memmove(&o->u.o.m[i], &o->u.o.m[i + 1], (o->u.o.len - i - 1) * sizeof(member));
    o->u.o.len--;
    if (o->u.o.idx)
        index_rebuild(o);
    return v;
}

/* ------------------------------------------------------------------ parser */

typedef struct {
    const unsigned char *start, *p, *end;
    const char *msg;
    const unsigned char *pos;
    bool oom;
    locale_t loc;
} parser;

static void *perr(parser *p, const unsigned char *pos, const char *msg)
{
    if (!p->msg) {
        p->msg = msg;
        p->pos = pos;
    }
    return NULL;
}

static void *poom(parser *p)
{
    p->oom = true;
    return perr(p, p->p, "out of memory");
}

/* At end of input every "expected X" really means the text was cut short. */
static void *pexpect(parser *p, const char *msg)
{
    return perr(p, p->p, p->p >= p->end ? "unexpected end of input" : msg);
}

static inline void skip_ws(parser *p)
{
    const unsigned char *q = p->p, *e = p->end;
    while (q < e && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t'))
        q++;
    p->p = q;
}

static json *parse_value(parser *p, int depth);

/* p->p is at the opening quote. On success *out is malloc'd and NUL-terminated. */
static bool parse_string_raw(parser *p, char **out, size_t *outlen)
{
    const unsigned char *open = p->p, *q = open + 1, *end = p->end;
    const unsigned char *close = NULL, *r = q;

    /* Find the closing quote first so the output can be allocated once (it never grows:
       every escape is at least as long as what it decodes to). */
    while (r < end) {
        const unsigned char *c = memchr(r, '"', (size_t)(end - r));
        if (!c)
            break;
        size_t bs = 0;
        while (c - bs > q && c[-1 - (ptrdiff_t)bs] == '\\')
            bs++;
        if (!(bs & 1)) {
            close = c;
            break;
        }
        r = c + 1;
    }
    const unsigned char *lim = close ? close : end;

    char *buf = malloc((size_t)(lim - q) + 1), *o = buf;
    if (!buf) {
        poom(p);
        return false;
    }
    r = q;
    while (r < lim) {
        const unsigned char *run = r;
        while (r < lim && *r >= 0x20 && *r < 0x80 && *r != '\\')
            r++;
        memcpy(o, run, (size_t)(r - run));
        o += r - run;
        if (r >= lim)
            break;
        unsigned c = *r;
        if (c == '\\') {
            if (lim - r < 2)
                break; /* only when unterminated */
            switch (r[1]) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '/': *o++ = '/'; break;
            case 'b': *o++ = '\b'; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                uint32_t cp, lo;
                if (!hex4(r + 2, lim, &cp)) {
                    perr(p, r, "invalid \\u escape (expected 4 hex digits)");
                    goto fail;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (lim - r >= 8 && r[6] == '\\' && r[7] == 'u' && hex4(r + 8, lim, &lo) &&
                        lo >= 0xDC00 && lo <= 0xDFFF) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        r += 6;
                    } else {
                        perr(p, r, "unpaired high surrogate in \\u escape");
                        goto fail;
                    }
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    perr(p, r, "unpaired low surrogate in \\u escape");
                    goto fail;
                }
                o += utf8_encode(cp, o);
                r += 4;
                break;
            }
            default:
                perr(p, r, "invalid escape sequence");
                goto fail;
            }
            r += 2;
        } else if (c < 0x20) {
            perr(p, r, "unescaped control character in string");
            goto fail;
        } else {
            size_t k = utf8_seq(r, lim);
            if (!k) {
                perr(p, r, "invalid UTF-8 in string");
                goto fail;
            }
            memcpy(o, r, k);
            o += k;
            r += k;
        }
    }
    if (!close) {
        perr(p, open, "unterminated string");
        goto fail;
    }
    *o = '\0';
    *out = buf;
    *outlen = (size_t)(o - buf);
    p->p = close + 1;
    return true;
fail:
    free(buf);
    return false;
}

static json *parse_number(parser *p)
{
    const unsigned char *start = p->p, *q = p->p, *e = p->end;
    bool neg = false, is_int = true;
    if (*q == '-') {
        neg = true;
        q++;
    }
    if (q < e && *q == '0') {
        q++;
        if (q < e && is_digit(*q))
            return perr(p, q, "leading zeros are not allowed in numbers");
    } else if (q < e && is_digit(*q)) {
        while (q < e && is_digit(*q))
            q++;
    } else {
        p->p = q;
        return pexpect(p, "expected digit");
    }
    const unsigned char *int_end = q;
    if (q < e && *q == '.') {
        is_int = false;
        q++;
        if (q >= e || !is_digit(*q)) {
            p->p = q;
            return pexpect(p, "expected digit after decimal point");
        }
        while (q < e && is_digit(*q))
            q++;
    }
    if (q < e && (*q == 'e' || *q == 'E')) {
        is_int = false;
        q++;
        if (q < e && (*q == '+' || *q == '-'))
            q++;
        if (q >= e || !is_digit(*q)) {
            p->p = q;
            return pexpect(p, "expected digit in exponent");
        }
        while (q < e && is_digit(*q))
            q++;
    }

    json *v = node_new(JSON_NUMBER);
    if (!v)
        return poom(p);
    if (is_int) {
        uint64_t mag = 0;
        bool ovf = false;
        for (const unsigned char *s = start + neg; s < int_end; s++) {
            unsigned dg = *s - '0';
            if (mag > (UINT64_MAX - dg) / 10) {
                ovf = true;
                break;
            }
            mag = mag * 10 + dg;
        }
        if (!ovf && (!neg || mag <= (uint64_t)INT64_MAX + 1)) {
            if (neg) {
                v->u.n.kind = NUM_INT;
                v->u.n.i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
                v->u.n.d = -(double)mag;
            } else if (mag <= (uint64_t)INT64_MAX) {
                v->u.n.kind = NUM_INT;
                v->u.n.i = (int64_t)mag;
                v->u.n.d = (double)mag;
            } else {
                v->u.n.kind = NUM_UINT;
                v->u.n.u = mag;
                v->u.n.d = (double)mag;
            }
            p->p = q;
            return v;
        }
    }
    int rc = text_to_double((const char *)start, (size_t)(q - start), &v->u.n.d, &p->loc);
    if (rc) {
        free(v);
        return rc == -2 ? poom(p) : perr(p, start, "number out of range");
    }
    v->u.n.kind = is_int ? NUM_BIGINT : NUM_DOUBLE;
    p->p = q;
    return v;
}

static json *parse_literal(parser *p, const char *word, size_t n, json *v)
{
    if (!v)
        return poom(p);
    for (size_t i = 0; i < n; i++) {
        if (p->p + i >= p->end || p->p[i] != (unsigned char)word[i]) {
            free(v);
            if (p->p + i >= p->end)
                return perr(p, p->end, "unexpected end of input");
            return perr(p, p->p, "invalid literal");
        }
    }
    p->p += n;
    return v;
}

static json *parse_array(parser *p, int depth)
{
    json *a = node_new(JSON_ARRAY);
    if (!a)
        return poom(p);
    p->p++;
    skip_ws(p);
    if (p->p < p->end && *p->p == ']') {
        p->p++;
        return a;
    }
    for (;;) {
        json *v = parse_value(p, depth + 1);
        if (!v)
            goto fail;
        if (!arr_push(a, v)) {
            poom(p);
            goto fail;
        }
        skip_ws(p);
        if (p->p < p->end && *p->p == ',') {
            p->p++;
            skip_ws(p);
            if (p->p < p->end && *p->p == ']') {
                perr(p, p->p, "trailing comma is not allowed");
                goto fail;
            }
            continue;
        }
        if (p->p < p->end && *p->p == ']') {
            p->p++;
            return a;
        }
        pexpect(p, "expected ',' or ']'");
        goto fail;
    }
fail:
    json_free(a);
    return NULL;
}

static json *parse_object(parser *p, int depth)
{
    json *o = node_new(JSON_OBJECT);
    if (!o)
        return poom(p);
    p->p++;
    skip_ws(p);
    if (p->p < p->end && *p->p == '}') {
        p->p++;
        return o;
    }
    for (bool first = true;; first = false) {
        char *k;
        size_t kl;
        if (p->p >= p->end || *p->p != '"') {
            if (!first && p->p < p->end && *p->p == '}')
                perr(p, p->p, "trailing comma is not allowed");
            else
                pexpect(p, first ? "expected string key or '}'" : "expected string key");
            goto fail;
        }
        if (!parse_string_raw(p, &k, &kl))
            goto fail;
        skip_ws(p);
        if (p->p >= p->end || *p->p != ':') {
            free(k);
            pexpect(p, "expected ':'");
            goto fail;
        }
        p->p++;
        skip_ws(p);
        json *v = parse_value(p, depth + 1);
        if (!v) {
            free(k);
            goto fail;
        }
        if (!obj_put(o, k, kl, v)) {
            poom(p);
            goto fail;
        }
        skip_ws(p);
        if (p->p < p->end && *p->p == ',') {
            p->p++;
            skip_ws(p);
            continue;
        }
        if (p->p < p->end && *p->p == '}') {
            p->p++;
            return o;
        }
        pexpect(p, "expected ',' or '}'");
        goto fail;
    }
fail:
    json_free(o);
    return NULL;
}

/* p->p is at the first byte of the value (whitespace already skipped). */
static json *parse_value(parser *p, int depth)
{
    if (p->p >= p->end)
        return perr(p, p->p, "unexpected end of input");
    switch (*p->p) {
    case '{':
    case '[':
        if (depth >= JSON_MAX_DEPTH)
            return perr(p, p->p, "nesting too deep (limit 512)");
        return *p->p == '{' ? parse_object(p, depth) : parse_array(p, depth);
    case '"': {
        char *s;
        size_t n;
        if (!parse_string_raw(p, &s, &n))
            return NULL;
        json *v = node_new(JSON_STRING);
        if (!v) {
            free(s);
            return poom(p);
        }
        v->u.s.p = s;
        v->u.s.len = n;
        return v;
    }
    case 't': {
        json *v = parse_literal(p, "true", 4, node_new(JSON_BOOL));
        if (v)
            v->u.b = true;
        return v;
    }
    case 'f': return parse_literal(p, "false", 5, node_new(JSON_BOOL));
    case 'n': return parse_literal(p, "null", 4, node_new(JSON_NULL));
    default:
        if (*p->p == '-' || is_digit(*p->p))
            return parse_number(p);
        return perr(p, p->p, "expected value");
    }
}

json *json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    static const unsigned char empty[1] = {0};
    parser p = {0};
    p.start = p.p = text ? (const unsigned char *)text : empty;
    p.end = p.start + (text ? len : 0);
    json *v = NULL;
    if (!text && len) {
        perr(&p, p.p, "NULL input");
    } else {
        skip_ws(&p);
        v = parse_value(&p, 0);
        if (v) {
            skip_ws(&p);
            if (p.p < p.end) {
                perr(&p, p.p, "unexpected data after the JSON value");
                json_free(v);
                v = NULL;
            }
        }
    }
    if (p.loc)
        freelocale(p.loc);
    if (!v && err && errlen) {
        if (p.oom) {
            snprintf(err, errlen, "out of memory");
        } else {
            size_t line = 1, col = 1;
            for (const unsigned char *s = p.start; s < p.pos; s++) {
                if (*s == '\n') {
                    line++;
                    col = 1;
                } else if ((*s & 0xC0) != 0x80) {
                    col++;
                }
            }
            snprintf(err, errlen, "%s at line %zu, column %zu", p.msg ? p.msg : "parse error",
                     line, col);
        }
    }
    if (v && err && errlen)
        err[0] = '\0';
    return v;
}

/* ------------------------------------------------------------------ free */

/* Iterative so that hand-built trees of any depth cannot overflow the stack: containers
   waiting to be freed are chained through their (no longer needed) cap field. */
static void free_release(json *c, json **pending)
{
    if (c->type == JSON_ARRAY) {
        c->u.a.cap = (size_t)(uintptr_t)*pending;
        *pending = c;
    } else if (c->type == JSON_OBJECT) {
        c->u.o.cap = (size_t)(uintptr_t)*pending;
        *pending = c;
    } else {
        if (c->type == JSON_STRING)
            free(c->u.s.p);
        free(c);
    }
}

void json_free(json *v)
{
    json *pending = NULL;
    if (!v)
        return;
    free_release(v, &pending);
    while (pending) {
        json *n = pending;
        if (n->type == JSON_ARRAY) {
            pending = (json *)(uintptr_t)n->u.a.cap;
            for (size_t i = 0; i < n->u.a.len; i++)
                free_release(n->u.a.v[i], &pending);
            free(n->u.a.v);
        } else {
            pending = (json *)(uintptr_t)n->u.o.cap;
            for (size_t i = 0; i < n->u.o.len; i++) {
                free(n->u.o.m[i].key);
                free_release(n->u.o.m[i].val, &pending);
            }
            free(n->u.o.m);
            free(n->u.o.idx);
        }
        free(n);
    }
}

/* ------------------------------------------------------------------ read access */

json_type json_typeof(const json *v) { return v ? v->type : JSON_NULL; }

const json *json_getn(const json *obj, const char *key, size_t klen)
{
    if (!obj || obj->type != JSON_OBJECT || (!key && klen))
        return NULL;
    if (!key)
        key = "";
    size_t i = obj_find(obj, key, klen, key_hash(key, klen, obj->u.o.seed));
    return i == SIZE_MAX ? NULL : obj->u.o.m[i].val;
}

const json *json_get(const json *obj, const char *key)
{
    return key ? json_getn(obj, key, strlen(key)) : NULL;
}

size_t json_len(const json *v)
{
    if (!v)
        return 0;
    if (v->type == JSON_ARRAY)
        return v->u.a.len;
    if (v->type == JSON_OBJECT)
        return v->u.o.len;
    return 0;
}

const json *json_at(const json *v, size_t i)
{
    if (!v)
        return NULL;
    if (v->type == JSON_ARRAY)
        return i < v->u.a.len ? v->u.a.v[i] : NULL;
    if (v->type == JSON_OBJECT)
        return i < v->u.o.len ? v->u.o.m[i].val : NULL;
    return NULL;
}

const char *json_key_at(const json *obj, size_t i)
{
    if (!obj || obj->type != JSON_OBJECT || i >= obj->u.o.len)
        return NULL;
    return obj->u.o.m[i].key;
}

size_t json_key_len_at(const json *obj, size_t i)
{
    if (!obj || obj->type != JSON_OBJECT || i >= obj->u.o.len)
        return 0;
    return obj->u.o.m[i].klen;
}

const char *json_str(const json *v) { return v && v->type == JSON_STRING ? v->u.s.p : NULL; }

size_t json_str_len(const json *v) { return v && v->type == JSON_STRING ? v->u.s.len : 0; }

bool json_bool(const json *v, bool *out)
{
    if (!v || v->type != JSON_BOOL)
        return false;
    if (out)
        *out = v->u.b;
    return true;
}

bool json_double(const json *v, double *out)
{
    if (!v || v->type != JSON_NUMBER)
        return false;
    if (out)
        *out = v->u.n.d;
    return true;
}

/* 2^63 and 2^64 as doubles: both exactly representable. */
#define TWO63 9223372036854775808.0
#define TWO64 18446744073709551616.0

bool json_int64(const json *v, int64_t *out)
{
    int64_t r;
    if (!v || v->type != JSON_NUMBER)
        return false;
    switch (v->u.n.kind) {
    case NUM_INT: r = v->u.n.i; break;
    case NUM_UINT:
    case NUM_BIGINT: return false;
    default: {
        double d = v->u.n.d;
        if (!(d >= -TWO63 && d < TWO63) || (double)(int64_t)d != d)
            return false;
        r = (int64_t)d;
    }
    }
    if (out)
        *out = r;
    return true;
}

bool json_uint64(const json *v, uint64_t *out)
{
    uint64_t r;
    if (!v || v->type != JSON_NUMBER)
        return false;
    switch (v->u.n.kind) {
    case NUM_INT:
        if (v->u.n.i < 0)
            return false;
        r = (uint64_t)v->u.n.i;
        break;
    case NUM_UINT: r = v->u.n.u; break;
    case NUM_BIGINT: return false;
    default: {
        double d = v->u.n.d;
        if (!(d >= 0 && d < TWO64) || (double)(uint64_t)d != d)
            return false;
        r = (uint64_t)d;
    }
    }
    if (out)
        *out = r;
    return true;
}

/* ------------------------------------------------------------------ build / mutate */

json *json_new_null(void) { return node_new(JSON_NULL); }

json *json_new_bool(bool b)
{
    json *v = node_new(JSON_BOOL);
    if (v)
        v->u.b = b;
    return v;
}

json *json_new_double(double d)
{
    json *v = node_new(JSON_NUMBER);
    if (v) {
        v->u.n.kind = NUM_DOUBLE;
        v->u.n.d = d;
    }
    return v;
}

json *json_new_int(int64_t i)
{
    json *v = node_new(JSON_NUMBER);
    if (v) {
        v->u.n.kind = NUM_INT;
        v->u.n.i = i;
        v->u.n.d = (double)i;
    }
    return v;
}

json *json_new_uint(uint64_t u)
{
    if (u <= (uint64_t)INT64_MAX)
        return json_new_int((int64_t)u);
    json *v = node_new(JSON_NUMBER);
    if (v) {
        v->u.n.kind = NUM_UINT;
        v->u.n.u = u;
        v->u.n.d = (double)u;
    }
    return v;
}

json *json_new_stringn(const char *utf8, size_t n)
{
    if (!utf8 && n)
        return NULL;
    if (n == SIZE_MAX)
        return NULL;
    json *v = node_new(JSON_STRING);
    if (!v)
        return NULL;
    v->u.s.p = malloc(n + 1);
    if (!v->u.s.p) {
        free(v);
        return NULL;
    }
    if (n)
        memcpy(v->u.s.p, utf8, n);
    v->u.s.p[n] = '\0';
    v->u.s.len = n;
    return v;
}

json *json_new_string(const char *utf8) { return utf8 ? json_new_stringn(utf8, strlen(utf8)) : NULL; }

json *json_new_array(void) { return node_new(JSON_ARRAY); }

json *json_new_object(void) { return node_new(JSON_OBJECT); }

bool json_setn(json *obj, const char *key, size_t klen, json *val)
{
    if (!val)
        return false;
    if (!obj || obj->type != JSON_OBJECT || (!key && klen) || klen == SIZE_MAX) {
        json_free(val);
        return false;
    }
    char *k = malloc(klen + 1);
    if (!k) {
        json_free(val);
        return false;
    }
    if (klen)
        memcpy(k, key, klen);
    k[klen] = '\0';
    return obj_put(obj, k, klen, val);
}

bool json_set(json *obj, const char *key, json *val)
{
    if (!key) {
        json_free(val);
        return false;
    }
    return json_setn(obj, key, strlen(key), val);
}

bool json_append(json *arr, json *val)
{
    if (!val)
        return false;
    if (!arr || arr->type != JSON_ARRAY) {
        json_free(val);
        return false;
    }
    return arr_push(arr, val);
}

json *json_detach(json *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT || !key)
        return NULL;
    size_t kl = strlen(key);
    size_t i = obj_find(obj, key, kl, key_hash(key, kl, obj->u.o.seed));
    return i == SIZE_MAX ? NULL : obj_take(obj, i);
}

bool json_remove(json *obj, const char *key)
{
    json *v = json_detach(obj, key);
    if (!v)
        return false;
    json_free(v);
    return true;
}

static json *clone_rec(const json *v, int depth)
{
    json *c = node_new(v->type);
    if (!c)
        return NULL;
    switch (v->type) {
    case JSON_NULL: break;
    case JSON_BOOL: c->u.b = v->u.b; break;
    case JSON_NUMBER: c->u.n = v->u.n; break;
    case JSON_STRING:
        c->u.s.p = malloc(v->u.s.len + 1);
        if (!c->u.s.p)
            goto fail;
        memcpy(c->u.s.p, v->u.s.p, v->u.s.len + 1);
        c->u.s.len = v->u.s.len;
        break;
    case JSON_ARRAY:
        if (depth >= JSON_MAX_DEPTH)
            goto fail;
        if (v->u.a.len) {
            c->u.a.v = malloc(v->u.a.len * sizeof *c->u.a.v);
            if (!c->u.a.v)
                goto fail;
            c->u.a.cap = v->u.a.len;
        }
        for (size_t i = 0; i < v->u.a.len; i++) {
            json *e = clone_rec(v->u.a.v[i], depth + 1);
            if (!e)
                goto fail;
            c->u.a.v[c->u.a.len++] = e;
        }
        break;
    case JSON_OBJECT:
        if (depth >= JSON_MAX_DEPTH)
            goto fail;
        if (v->u.o.len) {
            c->u.o.m = malloc(v->u.o.len * sizeof *c->u.o.m);
            if (!c->u.o.m)
                goto fail;
            c->u.o.cap = v->u.o.len;
        }
        for (size_t i = 0; i < v->u.o.len; i++) {
            const member *m = &v->u.o.m[i];
            char *k = malloc(m->klen + 1);
            json *e = k ? clone_rec(m->val, depth + 1) : NULL;
            if (!e) {
                free(k);
                goto fail;
            }
            memcpy(k, m->key, m->klen + 1);
            obj_append(c, k, m->klen, key_hash(k, m->klen, c->u.o.seed), e); /* cap reserved */
        }
        break;
    }
    return c;
fail:
    json_free(c);
    return NULL;
}

json *json_clone(const json *v) { return v ? clone_rec(v, 0) : NULL; }

/* An exactly known integer as sign and magnitude, if the number is one. */
static bool num_exact(const json *v, bool *neg, uint64_t *mag)
{
    switch (v->u.n.kind) {
    case NUM_INT:
        *neg = v->u.n.i < 0;
        *mag = *neg ? (uint64_t)0 - (uint64_t)v->u.n.i : (uint64_t)v->u.n.i;
        return true;
    case NUM_UINT:
        *neg = false;
        *mag = v->u.n.u;
        return true;
    case NUM_BIGINT: return false;
    default: {
        double d = v->u.n.d;
        if (!(d >= -TWO63 && d < TWO64))
            return false;
        *neg = d < 0;
        *mag = *neg ? (d == -TWO63 ? (uint64_t)1 << 63 : (uint64_t)(-d)) : (uint64_t)d;
        if ((*neg ? -(double)*mag : (double)*mag) != d)
            return false; /* not integral */
        if (*mag == 0)
            *neg = false;
        return true;
    }
    }
}

static bool num_equal(const json *a, const json *b)
{
    bool da = a->u.n.kind == NUM_DOUBLE || a->u.n.kind == NUM_BIGINT;
    bool db = b->u.n.kind == NUM_DOUBLE || b->u.n.kind == NUM_BIGINT;
    if (da && db) {
        double x = a->u.n.d, y = b->u.n.d;
        return x == y || (isnan(x) && isnan(y));
    }
    /* At least one side is an exact integer: compare exactly, never through a rounded double. */
    bool na, nb;
    uint64_t ma, mb;
    if (!num_exact(a, &na, &ma) || !num_exact(b, &nb, &mb))
        return false;
    return na == nb && ma == mb;
}

static bool equal_rec(const json *a, const json *b, int depth)
{
    if (a == b)
        return true;
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case JSON_NULL: return true;
    case JSON_BOOL: return a->u.b == b->u.b;
    case JSON_NUMBER: return num_equal(a, b);
    case JSON_STRING:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
    case JSON_ARRAY:
        if (depth >= JSON_MAX_DEPTH || a->u.a.len != b->u.a.len)
            return false;
        for (size_t i = 0; i < a->u.a.len; i++)
            if (!equal_rec(a->u.a.v[i], b->u.a.v[i], depth + 1))
                return false;
        return true;
    case JSON_OBJECT:
        if (depth >= JSON_MAX_DEPTH || a->u.o.len != b->u.o.len)
            return false;
        /* Keys are unique within an object, so same size + every key of a in b suffices. */
        for (size_t i = 0; i < a->u.o.len; i++) {
            const member *m = &a->u.o.m[i];
            size_t j = obj_find(b, m->key, m->klen, key_hash(m->key, m->klen, b->u.o.seed));
            if (j == SIZE_MAX || !equal_rec(m->val, b->u.o.m[j].val, depth + 1))
                return false;
        }
        return true;
    }
    return false;
}

bool json_equal(const json *a, const json *b)
{
    if (!a || !b)
        return a == b;
    return equal_rec(a, b, 0);
}

/* ------------------------------------------------------------------ dump */

typedef struct {
    char *p;
    size_t len, cap;
    bool fail;
    locale_t loc;
} outbuf;

static bool ob_reserve(outbuf *b, size_t n)
{
    if (b->fail)
        return false;
    if (b->cap - b->len > n)
        return true;
    size_t nc = b->cap ? b->cap : 256;
    while (nc - b->len <= n) {
        if (nc > SIZE_MAX / 2) {
            b->fail = true;
            return false;
        }
        nc *= 2;
    }
    char *np = realloc(b->p, nc);
    if (!np) {
        b->fail = true;
        return false;
    }
    b->p = np;
    b->cap = nc;
    return true;
}

static void ob_put(outbuf *b, const void *s, size_t n)
{
    if (ob_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void ob_putc(outbuf *b, char c)
{
    if (ob_reserve(b, 1))
        b->p[b->len++] = c;
}

/* 1 = byte may be copied verbatim inside a string (printable ASCII other than " and \). */
static const unsigned char plain[256] = {
    ['\x20'] = 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20-0x2F, '"' excluded */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,           /* 0x50, '\\' excluded */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,           /* 0x70 */
};

static void dump_string(outbuf *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str, *e = s + n;
    if (!ob_reserve(b, n + 2))
        return;
    b->p[b->len++] = '"';
    while (s < e) {
        const unsigned char *run = s;
        while (s < e && plain[*s])
            s++;
        ob_put(b, run, (size_t)(s - run));
        if (s >= e)
            break;
        unsigned c = *s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            ob_put(b, esc, 2);
            s++;
        } else if (c < 0x20) {
            char esc[6] = {'\\', 0, 0, 0, 0, 0};
            size_t len = 2;
            switch (c) {
            case '\b': esc[1] = 'b'; break;
            case '\f': esc[1] = 'f'; break;
            case '\n': esc[1] = 'n'; break;
            case '\r': esc[1] = 'r'; break;
            case '\t': esc[1] = 't'; break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                len = 6;
            }
            ob_put(b, esc, len);
            s++;
        } else {
            size_t k = utf8_seq(s, e);
            if (k) {
                ob_put(b, s, k);
                s += k;
            } else {
                ob_put(b, "\xEF\xBF\xBD", 3); /* U+FFFD keeps the output valid UTF-8 */
                s++;
            }
        }
    }
    ob_putc(b, '"');
}

static void dump_u64(outbuf *b, bool neg, uint64_t u)
{
    char tmp[24], *q = tmp + sizeof tmp;
    do {
        *--q = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (neg)
        *--q = '-';
    ob_put(b, q, (size_t)(tmp + sizeof tmp - q));
}

static void dump_double(outbuf *b, double d)
{
    char tmp[48];
    size_t n = 0;
    if (!isfinite(d)) {
        ob_put(b, "null", 4);
        return;
    }
    if (d == 0) {
        /* "-0" would parse back as the integer 0; "-0.0" keeps the sign through a round trip. */
        if (signbit(d))
            ob_put(b, "-0.0", 4);
        else
            ob_putc(b, '0');
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        int w = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (w < 0 || (size_t)w >= sizeof tmp) {
            b->fail = true;
            return;
        }
        /* Normalise whatever decimal separator the current locale used back to '.'. */
        n = 0;
        for (int i = 0; i < w; i++) {
            char c = tmp[i];
            if (is_digit((unsigned char)c) || c == '-' || c == '+' || c == 'e')
                tmp[n++] = c;
            else if (n == 0 || tmp[n - 1] != '.')
                tmp[n++] = '.';
        }
        double back;
        if (prec == 17 || (text_to_double(tmp, n, &back, &b->loc) == 0 && back == d))
            break;
    }
    ob_put(b, tmp, n);
}

static void dump_rec(outbuf *b, const json *v, int depth)
{
    if (b->fail)
        return;
    switch (v->type) {
    case JSON_NULL: ob_put(b, "null", 4); break;
    case JSON_BOOL:
        if (v->u.b)
            ob_put(b, "true", 4);
        else
            ob_put(b, "false", 5);
        break;
    case JSON_NUMBER:
        if (v->u.n.kind == NUM_INT)
            dump_u64(b, v->u.n.i < 0,
                     v->u.n.i < 0 ? (uint64_t)0 - (uint64_t)v->u.n.i : (uint64_t)v->u.n.i);
        else if (v->u.n.kind == NUM_UINT)
            dump_u64(b, false, v->u.n.u);
        else
            dump_double(b, v->u.n.d);
        break;
    case JSON_STRING: dump_string(b, v->u.s.p, v->u.s.len); break;
    case JSON_ARRAY:
        if (depth >= JSON_MAX_DEPTH) {
            b->fail = true;
            return;
        }
        ob_putc(b, '[');
        for (size_t i = 0; i < v->u.a.len && !b->fail; i++) {
            if (i)
                ob_putc(b, ',');
            dump_rec(b, v->u.a.v[i], depth + 1);
        }
        ob_putc(b, ']');
        break;
    case JSON_OBJECT:
        if (depth >= JSON_MAX_DEPTH) {
            b->fail = true;
            return;
        }
        ob_putc(b, '{');
        for (size_t i = 0; i < v->u.o.len && !b->fail; i++) {
            if (i)
                ob_putc(b, ',');
            dump_string(b, v->u.o.m[i].key, v->u.o.m[i].klen);
            ob_putc(b, ':');
            dump_rec(b, v->u.o.m[i].val, depth + 1);
        }
        ob_putc(b, '}');
        break;
    }
}

char *json_dump(const json *v)
{
    outbuf b = {0};
    if (v)
        dump_rec(&b, v, 0);
    else
        ob_put(&b, "null", 4);
    ob_putc(&b, '\0');
    if (b.loc)
        freelocale(b.loc);
    if (b.fail) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ------------------------------------------------------------------ depth and typed reads */

size_t json_depth(const json *v, size_t limit)
{
    /* Iterative, so a tree built by hand is measured without recursion: a stack of
       (node, next child) pairs that never grows past limit + 1. */
    typedef struct { const json *n; size_t i; } frame;
    if (!v || (v->type != JSON_ARRAY && v->type != JSON_OBJECT))
        return 0;
    size_t cap = limit + 2 < 64 ? limit + 2 : 64, top = 0, best = 0;
    frame *st = malloc(cap * sizeof *st);
    if (!st)
        return limit + 1;
    st[top++] = (frame){v, 0};
    while (top) {
        if (top > best)
            best = top;
        if (best > limit)
            break;
        frame *f = &st[top - 1];
        size_t n = f->n->type == JSON_ARRAY ? f->n->u.a.len : f->n->u.o.len;
        if (f->i >= n) {
            top--;
            continue;
        }
        const json *c = f->n->type == JSON_ARRAY ? f->n->u.a.v[f->i] : f->n->u.o.m[f->i].val;
        f->i++;
        if (c->type != JSON_ARRAY && c->type != JSON_OBJECT)
            continue;
        if (top == cap) {
            size_t nc = cap * 2;
            frame *ns = realloc(st, nc * sizeof *ns);
            if (!ns) {
                best = limit + 1;
                break;
            }
            st = ns;
            cap = nc;
        }
        st[top++] = (frame){c, 0};
    }
    free(st);
    return best;
}

static const char *want_kind_name(json_type t)
{
    switch (t) {
    case JSON_BOOL: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    default: return "null";
    }
}

static void want_err(char *err, size_t errlen, const char *ctx, const char *path, size_t plen, const char *what,
                     const json *got)
{
    if (!err || !errlen)
        return;
    snprintf(err, errlen, "%s%s%.*s must be %s (got %s)", ctx && *ctx ? ctx : "", ctx && *ctx ? "." : "",
             (int)plen, path, what, want_kind_name(json_typeof(got)));
}

/* Resolves path below obj. Returns false with err set when a step is not an object;
   *out = NULL when the member is absent or null. */
static bool want_resolve(const json *obj, const char *ctx, const char *path, const json **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    const json *cur = obj;
    const char *seg = path;
    if (!cur || cur->type == JSON_NULL)
        return true;
    for (;;) {
        if (cur->type != JSON_OBJECT) {
            want_err(err, errlen, ctx, path, seg > path ? (size_t)(seg - path - 1) : 0, "an object", cur);
            if (seg == path && err && errlen)
                snprintf(err, errlen, "%s must be an object (got %s)", ctx && *ctx ? ctx : "the document",
                         want_kind_name(cur->type));
            return false;
        }
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        const json *next = json_getn(cur, seg, n);
        if (!next || next->type == JSON_NULL)
            return true;
        if (!dot) {
            *out = next;
            return true;
        }
        cur = next;
        seg = dot + 1;
    }
}

bool json_want_str(const json *obj, const char *ctx, const char *path, const char **out, char *err, size_t errlen)
{
    const json *v;
    if (!want_resolve(obj, ctx, path, &v, err, errlen))
        return false;
    if (!v)
        return true;
    if (v->type != JSON_STRING) {
        want_err(err, errlen, ctx, path, strlen(path), "a string", v);
        return false;
    }
    if (strlen(v->u.s.p) != v->u.s.len) {
        if (err && errlen)
            snprintf(err, errlen, "%s%s%s must not contain U+0000 (NUL)", ctx && *ctx ? ctx : "",
                     ctx && *ctx ? "." : "", path);
        return false;
    }
    *out = v->u.s.p;
    return true;
}

static bool want_type(const json *obj, const char *ctx, const char *path, json_type t, const json **out, char *err,
                      size_t errlen)
{
    const json *v;
    if (!want_resolve(obj, ctx, path, &v, err, errlen))
        return false;
    if (!v)
        return true;
    if (v->type != t) {
        want_err(err, errlen, ctx, path, strlen(path), want_kind_name(t), v);
        return false;
    }
    *out = v;
    return true;
}

bool json_want_obj(const json *obj, const char *ctx, const char *path, const json **out, char *err, size_t errlen)
{
    return want_type(obj, ctx, path, JSON_OBJECT, out, err, errlen);
}

bool json_want_arr(const json *obj, const char *ctx, const char *path, const json **out, char *err, size_t errlen)
{
    return want_type(obj, ctx, path, JSON_ARRAY, out, err, errlen);
}

bool json_want_bool(const json *obj, const char *ctx, const char *path, bool *out, char *err, size_t errlen)
{
    const json *v = NULL;
    if (!want_type(obj, ctx, path, JSON_BOOL, &v, err, errlen))
        return false;
    if (v)
        *out = v->u.b;
    return true;
}

bool json_want_int64(const json *obj, const char *ctx, const char *path, int64_t *out, char *err, size_t errlen)
{
    const json *v = NULL;
    if (!want_resolve(obj, ctx, path, &v, err, errlen))
        return false;
    if (v && !json_int64(v, out)) {
        want_err(err, errlen, ctx, path, strlen(path), "an integer in the 64-bit signed range", v);
        return false;
    }
    return true;
}

bool json_want_uint64(const json *obj, const char *ctx, const char *path, uint64_t *out, char *err, size_t errlen)
{
    const json *v = NULL;
    if (!want_resolve(obj, ctx, path, &v, err, errlen))
        return false;
    if (v && !json_uint64(v, out)) {
        want_err(err, errlen, ctx, path, strlen(path), "a non-negative 64-bit integer", v);
        return false;
    }
    return true;
}

bool json_want_elem_str(const json *arr, const char *name, size_t i, const char **out, char *err, size_t errlen)
{
    const json *v = json_at(arr, i);
    if (json_typeof(v) != JSON_STRING) {
        if (err && errlen)
            snprintf(err, errlen, "%s[%zu] must be a string (got %s)", name, i, want_kind_name(json_typeof(v)));
        return false;
    }
    if (strlen(v->u.s.p) != v->u.s.len) {
        if (err && errlen)
            snprintf(err, errlen, "%s[%zu] must not contain U+0000 (NUL)", name, i);
        return false;
    }
    *out = v->u.s.p;
    return true;
}

bool json_has_nul(const json *v, char *where, size_t whlen)
{
    /* Iterative for the same reason as json_depth. */
    typedef struct { const json *n; size_t i; } frame;
    if (!v)
        return false;
    if (v->type == JSON_STRING) {
        if (strlen(v->u.s.p) == v->u.s.len)
            return false;
        if (where && whlen)
            snprintf(where, whlen, "a string");
        return true;
    }
    if (v->type != JSON_ARRAY && v->type != JSON_OBJECT)
        return false;
    size_t cap = 16, top = 0;
    frame *st = malloc(cap * sizeof *st);
    if (!st)
        return false;
    bool found = false;
    st[top++] = (frame){v, 0};
    while (top && !found) {
        frame *f = &st[top - 1];
        bool arr = f->n->type == JSON_ARRAY;
        size_t n = arr ? f->n->u.a.len : f->n->u.o.len;
        if (f->i >= n) {
            top--;
            continue;
        }
        size_t i = f->i++;
        const json *c = arr ? f->n->u.a.v[i] : f->n->u.o.m[i].val;
        if (!arr && strlen(f->n->u.o.m[i].key) != f->n->u.o.m[i].klen) {
            if (where && whlen)
                snprintf(where, whlen, "the member name '%s...'", f->n->u.o.m[i].key);
            found = true;
        } else if (c->type == JSON_STRING && strlen(c->u.s.p) != c->u.s.len) {
            if (where && whlen) {
                if (arr)
                    snprintf(where, whlen, "element %zu of an array", i);
                else
                    snprintf(where, whlen, "member '%s'", f->n->u.o.m[i].key);
            }
            found = true;
        } else if (c->type == JSON_ARRAY || c->type == JSON_OBJECT) {
            if (top == cap) {
                frame *ns = realloc(st, cap * 2 * sizeof *ns);
                if (!ns)
                    break;
                st = ns;
                cap *= 2;
            }
            st[top++] = (frame){c, 0};
        }
    }
    free(st);
    return found;
}
