/* Standalone tests for the JSON library.
   Build: gcc -std=c11 -D_GNU_SOURCE -I src/hcsemu src/hcsemu/tests/test_json.c src/hcsemu/json.c -pthread
   A locale with a ',' decimal separator (e.g. de_DE.UTF-8) is used when installed. */
#include "json.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

/* Allocation-failure injection: glibc lets the program replace malloc; sanitizers bring their own
   allocator, so the OOM test runs only in plain (and valgrind) builds. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer) || \
    __has_feature(thread_sanitizer) || __has_feature(hwaddress_sanitizer)
#define NO_OOM_TEST 1
#endif
#endif
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && \
    !defined(__SANITIZE_HWADDRESS__) && !defined(NO_OOM_TEST)
#define HAVE_OOM_TEST 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static long oom_countdown = -1; /* -1: disarmed; else fail the allocation when it reaches 0 */
static bool oom_hit;
static long live_blocks; /* leak accounting for the failure paths */
static bool oom_now(void)
{
    if (oom_countdown < 0)
        return false;
    if (oom_countdown-- == 0) {
        oom_hit = true;
        return true;
    }
    return false;
}
void *malloc(size_t n)
{
    void *r = oom_now() ? NULL : __libc_malloc(n);
    __atomic_add_fetch(&live_blocks, r != NULL, __ATOMIC_RELAXED);
    return r;
}
void *calloc(size_t a, size_t n)
{
    void *r = oom_now() ? NULL : __libc_calloc(a, n);
    __atomic_add_fetch(&live_blocks, r != NULL, __ATOMIC_RELAXED);
    return r;
}
void *realloc(void *p, size_t n)
{
    if (p && n && oom_now())
        return NULL;
    void *r = __libc_realloc(p, n);
    __atomic_add_fetch(&live_blocks, (long)(r != NULL) - (long)(p != NULL && (r || !n)),
                       __ATOMIC_RELAXED);
    return r;
}
void free(void *p)
{
    __atomic_sub_fetch(&live_blocks, p != NULL, __ATOMIC_RELAXED);
    __libc_free(p);
}
static void oom_arm(long n)
{
    oom_hit = false;
    oom_countdown = n;
}
static void oom_disarm(void) { oom_countdown = -1; }
#endif

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            passed++;                                                                \
        } else {                                                                     \
            failed++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECK_STR(got, want)                                                                 \
    do {                                                                                     \
        const char *g_ = (got), *w_ = (want);                                                \
        if (g_ && w_ && strcmp(g_, w_) == 0) {                                               \
            passed++;                                                                        \
        } else {                                                                             \
            failed++;                                                                        \
            fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,         \
                    g_ ? g_ : "(null)", w_ ? w_ : "(null)");                                 \
        }                                                                                    \
    } while (0)

static json *P(const char *s) { return json_parse(s, strlen(s), NULL, 0); }

/* Parse must fail with exactly this message. */
static void expect_err_at(const char *text, size_t len, const char *want, int line)
{
    char err[256];
    memset(err, 'X', sizeof err);
    json *v = json_parse(text, len, err, sizeof err);
    if (v == NULL && strcmp(err, want) == 0) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "%s:%d: parse of [%.*s]: got %s \"%s\", want error \"%s\"\n", __FILE__,
                line, (int)(len > 60 ? 60 : len), text, v ? "success" : "error", v ? "" : err,
                want);
    }
    json_free(v);
}
#define EXPECT_ERR(text, want) expect_err_at(text, strlen(text), want, __LINE__)

/* Parse must fail, message irrelevant. */
static void expect_fail_at(const char *text, size_t len, int line)
{
    char err[256] = "";
    json *v = json_parse(text, len, err, sizeof err);
    if (!v && strstr(err, " at line ")) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "%s:%d: parse of [%.*s] should have failed (err=\"%s\")\n", __FILE__, line,
                (int)len, text, err);
    }
    json_free(v);
}
#define EXPECT_FAIL(text) expect_fail_at(text, strlen(text), __LINE__)

/* Parse then dump must give exactly `want`. */
static void expect_dump_at(const char *text, const char *want, int line)
{
    char err[256] = "";
    json *v = json_parse(text, strlen(text), err, sizeof err);
    char *d = v ? json_dump(v) : NULL;
    if (d && strcmp(d, want) == 0) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "%s:%d: [%s] -> %s, want %s (err=\"%s\")\n", __FILE__, line, text,
                d ? d : "(null)", want, err);
    }
    free(d);
    json_free(v);
}
#define EXPECT_DUMP(text, want) expect_dump_at(text, want, __LINE__)

static void dump_is_at(const json *v, const char *want, int line)
{
    char *d = json_dump(v);
    if (d && strcmp(d, want) == 0) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "%s:%d: dump %s, want %s\n", __FILE__, line, d ? d : "(null)", want);
    }
    free(d);
}
#define DUMP_IS(v, want) dump_is_at(v, want, __LINE__)

static void test_scalars(void)
{
    json *v;
    bool b;
    double d;
    int64_t i;
    uint64_t u;

    v = P("null");
    CHECK(v && json_typeof(v) == JSON_NULL);
    json_free(v);

    v = P("true");
    CHECK(v && json_typeof(v) == JSON_BOOL && json_bool(v, &b) && b);
    json_free(v);
    v = P("false");
    CHECK(v && json_bool(v, &b) && !b);
    CHECK(!json_double(v, &d) && !json_int64(v, &i) && !json_str(v));
    json_free(v);

    v = P(" \t\r\n 42 \n");
    CHECK(v && json_typeof(v) == JSON_NUMBER && json_int64(v, &i) && i == 42);
    CHECK(json_double(v, &d) && d == 42.0);
    CHECK(json_uint64(v, &u) && u == 42);
    json_free(v);

    v = P("\"hi\"");
    CHECK(v && json_typeof(v) == JSON_STRING);
    CHECK_STR(json_str(v), "hi");
    CHECK(json_str_len(v) == 2);
    CHECK(!json_bool(v, &b));
    json_free(v);

    /* not NUL-terminated: only len bytes count */
    v = json_parse("[1,2]garbage", 5, NULL, 0);
    CHECK(v && json_len(v) == 2);
    json_free(v);
    v = json_parse("1234", 2, NULL, 0);
    CHECK(v && json_int64(v, &i) && i == 12);
    json_free(v);

    EXPECT_ERR("", "unexpected end of input at line 1, column 1");
    EXPECT_ERR("   \n ", "unexpected end of input at line 2, column 2");
    CHECK(json_parse(NULL, 0, NULL, 0) == NULL);
    CHECK(json_parse(NULL, 5, NULL, 0) == NULL);
    EXPECT_ERR("tru", "unexpected end of input at line 1, column 4");
    EXPECT_ERR("trux", "invalid literal at line 1, column 1");
    EXPECT_ERR("True", "expected value at line 1, column 1");
    EXPECT_ERR("nulll", "unexpected data after the JSON value at line 1, column 5");
    EXPECT_ERR("1 2", "unexpected data after the JSON value at line 1, column 3");
    EXPECT_ERR("\xEF\xBB\xBF" "1", "expected value at line 1, column 1"); /* BOM */
    EXPECT_FAIL("\f1");
    EXPECT_FAIL("\v1");
    EXPECT_FAIL("\xC2\xA0" "1"); /* NBSP is not JSON whitespace */
    EXPECT_FAIL("/* c */ 1");
    EXPECT_FAIL("1 // c");
    EXPECT_FAIL("undefined");
    EXPECT_FAIL("'str'");
}

static void test_numbers(void)
{
    json *v;
    int64_t i;
    uint64_t u;
    double d;

    v = P("-0");
    CHECK(v && json_int64(v, &i) && i == 0 && json_double(v, &d) && d == 0 && signbit(d));
    json_free(v);

    v = P("9223372036854775807");
    CHECK(json_int64(v, &i) && i == INT64_MAX && json_uint64(v, &u) && u == INT64_MAX);
    json_free(v);
    v = P("-9223372036854775808");
    CHECK(json_int64(v, &i) && i == INT64_MIN && !json_uint64(v, &u));
    json_free(v);
    v = P("9223372036854775808");
    CHECK(!json_int64(v, &i) && json_uint64(v, &u) && u == (uint64_t)INT64_MAX + 1);
    json_free(v);
    v = P("18446744073709551615");
    CHECK(!json_int64(v, &i) && json_uint64(v, &u) && u == UINT64_MAX);
    CHECK(json_double(v, &d) && d == 18446744073709551616.0);
    json_free(v);
    v = P("18446744073709551616"); /* 2^64: only a double */
    CHECK(v && !json_int64(v, &i) && !json_uint64(v, &u) && json_double(v, &d) &&
          d == 18446744073709551616.0);
    json_free(v);
    v = P("-9223372036854775809");
    CHECK(v && !json_int64(v, &i) && !json_uint64(v, &u) && json_double(v, &d) &&
          d == -9223372036854775808.0);
    json_free(v);
    v = P("9007199254740993"); /* 2^53+1: exact as integer, rounded as double */
    CHECK(json_int64(v, &i) && i == 9007199254740993LL);
    CHECK(json_double(v, &d) && d == 9007199254740992.0);
    json_free(v);
    v = P("-12345678901234567");
    CHECK(json_int64(v, &i) && i == -12345678901234567LL);
    json_free(v);

    v = P("1.5");
    CHECK(json_double(v, &d) && d == 1.5 && !json_int64(v, &i) && !json_uint64(v, &u));
    json_free(v);
    v = P("2.0"); /* integral doubles convert */
    CHECK(json_int64(v, &i) && i == 2 && json_uint64(v, &u) && u == 2);
    json_free(v);
    v = P("-3e2");
    CHECK(json_int64(v, &i) && i == -300 && !json_uint64(v, &u));
    json_free(v);
    v = P("1e19");
    CHECK(!json_int64(v, &i) && json_uint64(v, &u) && u == 10000000000000000000ULL);
    json_free(v);
    v = P("1e20");
    CHECK(!json_int64(v, &i) && !json_uint64(v, &u) && json_double(v, &d) && d == 1e20);
    json_free(v);

    /* conversions must agree with strtod (correct rounding) on fast and slow paths */
    static const char *lits[] = {
        "0.1", "0.2", "0.3", "3.14159", "-2.5e-3", "1E2", "1e+2", "1e-2", "0.000001",
        "123456.789e3", "2.2250738585072014e-308", "2.2250738585072011e-308", "4.9e-324",
        "1.7976931348623157e308", "9007199254740993.0", "123456789012345678e-5",
        "0.1e1", "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124", "7.038531e-26",
        "1e22", "1e23", "9999999999999999e22", "0.0000000000000000000000000000001e31",
        "43.1e-1", "-0.0", "5e-324", "1e-400", "-1e-400",
    };
    for (size_t k = 0; k < sizeof lits / sizeof *lits; k++) {
        v = P(lits[k]);
        double want = strtod(lits[k], NULL);
        if (!(v && json_double(v, &d) && memcmp(&d, &want, sizeof d) == 0)) {
            failed++;
            fprintf(stderr, "number %s: got %.17g want %.17g\n", lits[k], d, want);
        } else {
            passed++;
        }
        json_free(v);
    }
    /* long literals take the heap path of the slow conversion */
    char big[400];
    big[0] = '1';
    memset(big + 1, '0', 300);
    strcpy(big + 301, ".5");
    v = P(big);
    CHECK(v && json_double(v, &d) && d == 1e300);
    json_free(v);
    char tiny[400] = "0.";
    memset(tiny + 2, '0', 299);
    strcpy(tiny + 301, "1");
    v = P(tiny);
    CHECK(v && json_double(v, &d) && d == 1e-300);
    json_free(v);

    EXPECT_ERR("1e400", "number out of range at line 1, column 1");
    EXPECT_ERR("[-1e309]", "number out of range at line 1, column 2");
    EXPECT_ERR("01", "leading zeros are not allowed in numbers at line 1, column 2");
    EXPECT_ERR("-01", "leading zeros are not allowed in numbers at line 1, column 3");
    EXPECT_ERR("-", "unexpected end of input at line 1, column 2");
    EXPECT_ERR("-x", "expected digit at line 1, column 2");
    EXPECT_ERR("1.", "unexpected end of input at line 1, column 3");
    EXPECT_ERR("1.e5", "expected digit after decimal point at line 1, column 3");
    EXPECT_ERR("1e", "unexpected end of input at line 1, column 3");
    EXPECT_ERR("1e+", "unexpected end of input at line 1, column 4");
    EXPECT_ERR("[1ex]", "expected digit in exponent at line 1, column 4");
    EXPECT_FAIL(".5");
    EXPECT_FAIL("+1");
    EXPECT_FAIL("0x10");
    EXPECT_FAIL("NaN");
    EXPECT_FAIL("Infinity");
    EXPECT_FAIL("-Infinity");
    EXPECT_FAIL("1.5.2");
    EXPECT_FAIL("- 1");
}

static void test_strings(void)
{
    json *v;

    v = P("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"");
    CHECK_STR(json_str(v), "\" \\ / \b \f \n \r \t");
    json_free(v);
    v = P("\"\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\"");
    CHECK_STR(json_str(v), "A\xC3\xA9\xC3\xA9\xE2\x82\xAC\xEF\xBF\xBF");
    json_free(v);
    v = P("\"\\ud83d\\ude00x\\uD834\\uDD1E\"");
    CHECK_STR(json_str(v), "\xF0\x9F\x98\x80x\xF0\x9D\x84\x9E");
    json_free(v);
    v = P("\"\\udbff\\udfff\""); /* U+10FFFF */
    CHECK_STR(json_str(v), "\xF4\x8F\xBF\xBF");
    json_free(v);
    v = P("\"a\\u0000b\"");
    CHECK(v && json_str_len(v) == 3 && memcmp(json_str(v), "a\0b", 4) == 0);
    json_free(v);
    v = P("\"\"");
    CHECK(v && json_str_len(v) == 0 && json_str(v) && json_str(v)[0] == 0);
    json_free(v);
    /* raw UTF-8 of every length, and DEL */
    v = P("\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x7F\xEF\xBF\xBD\"");
    CHECK_STR(json_str(v), "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x7F\xEF\xBF\xBD");
    json_free(v);

    EXPECT_ERR("\"\\ud800\"", "unpaired high surrogate in \\u escape at line 1, column 2");
    EXPECT_ERR("\"\\udc00\"", "unpaired low surrogate in \\u escape at line 1, column 2");
    EXPECT_ERR("\"ab\\ud800\\u0041\"", "unpaired high surrogate in \\u escape at line 1, column 4");
    EXPECT_ERR("\"\\ud800\\ud800\"", "unpaired high surrogate in \\u escape at line 1, column 2");
    EXPECT_ERR("\"\\ud800x\"", "unpaired high surrogate in \\u escape at line 1, column 2");
    EXPECT_ERR("\"\\ude00\\ud83d\"", "unpaired low surrogate in \\u escape at line 1, column 2");
    EXPECT_ERR("\"\\x\"", "invalid escape sequence at line 1, column 2");
    EXPECT_ERR("\"\\'\"", "invalid escape sequence at line 1, column 2");
    EXPECT_ERR("\"\\U0041\"", "invalid escape sequence at line 1, column 2");
    EXPECT_ERR("\"\\u12\"", "invalid \\u escape (expected 4 hex digits) at line 1, column 2");
    EXPECT_ERR("\"\\u12G4\"", "invalid \\u escape (expected 4 hex digits) at line 1, column 2");
    EXPECT_ERR("\"a\tb\"", "unescaped control character in string at line 1, column 3");
    EXPECT_ERR("\"a\nb\"", "unescaped control character in string at line 1, column 3");
    EXPECT_ERR("\"abc", "unterminated string at line 1, column 1");
    EXPECT_ERR("[\"abc\\\"]", "unterminated string at line 1, column 2");
    EXPECT_ERR("\"abc\\", "unterminated string at line 1, column 1");
    expect_err_at("\"a\0b\"", 5, "unescaped control character in string at line 1, column 3",
                  __LINE__);
    /* invalid UTF-8: overlong, surrogate, too big, stray bytes, truncated */
    EXPECT_ERR("\"\xC0\x80\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xC1\xBF\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xE0\x9F\xBF\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xF0\x8F\xBF\xBF\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xED\xA0\x80\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xF4\x90\x80\x80\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xF5\x80\x80\x80\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xFF\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\x80\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xE2\x82\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\"\xC3\xA9\xE2\x82\"", "invalid UTF-8 in string at line 1, column 3");
    EXPECT_ERR("\"\xF0\x9F\x98\"", "invalid UTF-8 in string at line 1, column 2");
    EXPECT_ERR("\xC3\xA9", "expected value at line 1, column 1");
}

static void test_structures_and_errors(void)
{
    json *v;
    int64_t i;

    v = P(" { \"a\" : [ 1 , { } , [ ] , \"x\" ] , \"b\" : { \"c\" : null } } ");
    CHECK(v && json_typeof(v) == JSON_OBJECT && json_len(v) == 2);
    const json *a = json_get(v, "a");
    CHECK(json_typeof(a) == JSON_ARRAY && json_len(a) == 4);
    CHECK(json_int64(json_at(a, 0), &i) && i == 1);
    CHECK(json_typeof(json_at(a, 1)) == JSON_OBJECT && json_len(json_at(a, 1)) == 0);
    CHECK(json_typeof(json_at(a, 2)) == JSON_ARRAY && json_len(json_at(a, 2)) == 0);
    CHECK_STR(json_str(json_at(a, 3)), "x");
    CHECK(json_at(a, 4) == NULL);
    CHECK(json_typeof(json_get(json_get(v, "b"), "c")) == JSON_NULL);
    CHECK(json_get(json_get(v, "b"), "c") != NULL);
    CHECK(json_get(v, "zz") == NULL);
    json_free(v);

    EXPECT_ERR("[1,]", "trailing comma is not allowed at line 1, column 4");
    EXPECT_ERR("{\"a\":1,}", "trailing comma is not allowed at line 1, column 8");
    EXPECT_ERR("[1 2]", "expected ',' or ']' at line 1, column 4");
    EXPECT_ERR("{\"key\": [1, 2]  x}", "expected ',' or '}' at line 1, column 17");
    EXPECT_ERR("{\"a\" 1}", "expected ':' at line 1, column 6");
    EXPECT_ERR("{1:2}", "expected string key or '}' at line 1, column 2");
    EXPECT_ERR("{\"a\":1,2:3}", "expected string key at line 1, column 8");
    EXPECT_ERR("{'a':1}", "expected string key or '}' at line 1, column 2");
    EXPECT_ERR("{\"a\":1", "unexpected end of input at line 1, column 7");
    EXPECT_ERR("{\"a\":", "unexpected end of input at line 1, column 6");
    EXPECT_ERR("{\"a\"", "unexpected end of input at line 1, column 5");
    EXPECT_ERR("{", "unexpected end of input at line 1, column 2");
    EXPECT_ERR("[", "unexpected end of input at line 1, column 2");
    EXPECT_ERR("[1,", "unexpected end of input at line 1, column 4");
    EXPECT_ERR("[,1]", "expected value at line 1, column 2");
    EXPECT_ERR("]", "expected value at line 1, column 1");
    EXPECT_ERR("[1]]", "unexpected data after the JSON value at line 1, column 4");
    EXPECT_ERR("{\"a\":1}}", "unexpected data after the JSON value at line 1, column 8");
    EXPECT_ERR("{\n  \"a\": 1,\n  \"b\" 2\n}", "expected ':' at line 3, column 7");
    EXPECT_ERR("[\r\n1,\r\n2,\r\n]", "trailing comma is not allowed at line 4, column 1");
    /* columns count characters, not bytes */
    EXPECT_ERR("[\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\", x]", "expected value at line 1, column 9");

    /* message truncation: always NUL-terminated */
    char small[10];
    memset(small, 'X', sizeof small);
    CHECK(json_parse("[1,]", 4, small, sizeof small) == NULL);
    CHECK(memchr(small, 0, sizeof small) != NULL && strncmp(small, "trailing ", 9) == 0);
    char one[1] = {'X'};
    CHECK(json_parse("[", 1, one, 1) == NULL && one[0] == 0);
    char untouched[4] = "abc";
    CHECK(json_parse("[", 1, untouched, 0) == NULL && strcmp(untouched, "abc") == 0);
    char ok[16] = "junk";
    v = json_parse("[]", 2, ok, sizeof ok);
    CHECK(v && ok[0] == 0);
    json_free(v);
}

static void test_depth(void)
{
    char err[128];
    size_t n = 512;
    char *buf = malloc(200000 * 2 + 16);
    memset(buf, '[', n);
    memset(buf + n, ']', n);
    json *v = json_parse(buf, 2 * n, err, sizeof err);
    CHECK(v != NULL);
    char *d = json_dump(v);
    CHECK(d && strlen(d) == 2 * n && memcmp(d, buf, 2 * n) == 0);
    free(d);
    json *c = json_clone(v);
    CHECK(c && json_equal(c, v));
    json_free(c);
    json_free(v);

    n = 513;
    memset(buf, '[', n);
    memset(buf + n, ']', n);
    v = json_parse(buf, 2 * n, err, sizeof err);
    CHECK(v == NULL);
    CHECK_STR(err, "nesting too deep (limit 512) at line 1, column 513");

    /* objects count too, mixed with arrays */
    size_t k = 0;
    for (int j = 0; j < 256; j++) {
        memcpy(buf + k, "{\"a\":[", 6);
        k += 6;
    }
    buf[k++] = '1';
    for (int j = 0; j < 256; j++) {
        memcpy(buf + k, "]}", 2);
        k += 2;
    }
    v = json_parse(buf, k, err, sizeof err);
    CHECK(v != NULL);
    json_free(v);
    memmove(buf + 1, buf, k);
    buf[0] = '[';
    buf[k + 1] = ']';
    v = json_parse(buf, k + 2, err, sizeof err);
    CHECK(v == NULL && strstr(err, "nesting too deep"));

    /* hostile depth: error, not a stack overflow */
    memset(buf, '[', 200000);
    v = json_parse(buf, 200000, err, sizeof err);
    CHECK(v == NULL && strstr(err, "nesting too deep"));
    for (size_t j = 0; j < 100000; j++)
        memcpy(buf + 2 * j, "{\"", 2);
    v = json_parse(buf, 200000, err, sizeof err);
    CHECK(v == NULL);
    free(buf);

    /* hand-built trees deeper than the limit: free is iterative; dump/clone/equal refuse */
    json *root = json_new_array(), *cur = root;
    for (int j = 0; j < 200000; j++) {
        json *nx = (j & 1) ? json_new_array() : json_new_object();
        json *parent = cur;
        if (json_typeof(parent) == JSON_ARRAY)
            json_append(parent, nx);
        else
            json_set(parent, "k", nx);
        cur = nx;
    }
    CHECK(json_dump(root) == NULL);
    CHECK(json_clone(root) == NULL);
    CHECK(!json_equal(root, root) || 1); /* same pointer short-circuits; must not crash */
    json *other = json_new_array();
    cur = other;
    for (int j = 0; j < 600; j++) {
        json *nx = json_new_array();
        json_append(cur, nx);
        cur = nx;
    }
    json *other2 = json_new_array();
    cur = other2;
    for (int j = 0; j < 600; j++) {
        json *nx = json_new_array();
        json_append(cur, nx);
        cur = nx;
    }
    CHECK(!json_equal(other, other2));
    json_free(other);
    json_free(other2);
    json_free(root);

    /* a very wide tree frees fine as well */
    json *wide = json_new_array();
    for (int j = 0; j < 100000; j++)
        json_append(wide, json_new_string("x"));
    CHECK(json_len(wide) == 100000);
    json_free(wide);
}

static void test_objects(void)
{
    json *v;
    int64_t i;

    /* duplicate keys: last value wins, first position kept */
    v = P("{\"a\":1,\"b\":2,\"a\":3}");
    CHECK(v && json_len(v) == 2);
    CHECK_STR(json_key_at(v, 0), "a");
    CHECK_STR(json_key_at(v, 1), "b");
    CHECK(json_int64(json_get(v, "a"), &i) && i == 3);
    DUMP_IS(v, "{\"a\":3,\"b\":2}");
    json_free(v);

    /* keys with embedded NUL are distinct keys */
    v = P("{\"a\\u0000b\":1,\"a\":2}");
    CHECK(v && json_len(v) == 2);
    CHECK(json_int64(json_get(v, "a"), &i) && i == 2);
    CHECK(json_int64(json_getn(v, "a\0b", 3), &i) && i == 1);
    CHECK(json_key_len_at(v, 0) == 3 && json_key_len_at(v, 1) == 1);
    CHECK(json_key_len_at(v, 2) == 0 && json_key_at(v, 2) == NULL);
    DUMP_IS(v, "{\"a\\u0000b\":1,\"a\":2}");
    json_free(v);

    /* keys of every length class hash and compare correctly */
    v = P("{\"abcdefgh\":1,\"abcdefghi\":2,\"abcdefghabcdefgh\":3,\"abcdefghabcdefghX\":4}");
    CHECK(json_int64(json_get(v, "abcdefgh"), &i) && i == 1);
    CHECK(json_int64(json_get(v, "abcdefghi"), &i) && i == 2);
    CHECK(json_int64(json_get(v, "abcdefghabcdefgh"), &i) && i == 3);
    CHECK(json_int64(json_get(v, "abcdefghabcdefghX"), &i) && i == 4);
    CHECK(json_get(v, "abcdefghabcdefgX") == NULL);
    json_free(v);
    EXPECT_ERR("{\"a\\q\":1}", "invalid escape sequence at line 1, column 4");
    EXPECT_ERR("{\"a\":1,\"b\n\":1}", "unescaped control character in string at line 1, column 10");

    /* empty key */
    v = P("{\"\":5}");
    CHECK(json_int64(json_get(v, ""), &i) && i == 5);
    CHECK(json_int64(json_getn(v, NULL, 0), &i) && i == 5);
    json_free(v);

    /* large object: index path; lookups, replacement, removal, order */
    json *o = json_new_object();
    char key[32];
    for (int k = 0; k < 1000; k++) {
        snprintf(key, sizeof key, "key%d", k);
        if (!json_set(o, key, json_new_int(k)))
            failed++;
    }
    CHECK(json_len(o) == 1000);
    int bad = 0;
    for (int k = 0; k < 1000; k++) {
        snprintf(key, sizeof key, "key%d", k);
        if (!json_int64(json_get(o, key), &i) || i != k)
            bad++;
        if (strcmp(json_key_at(o, (size_t)k), key) != 0)
            bad++;
    }
    CHECK(bad == 0);
    CHECK(json_get(o, "key1000") == NULL && json_get(o, "nokey") == NULL);
    CHECK(json_set(o, "key500", json_new_string("replaced")));
    CHECK(json_len(o) == 1000);
    CHECK_STR(json_key_at(o, 500), "key500");
    CHECK_STR(json_str(json_at(o, 500)), "replaced");
    for (int k = 0; k < 1000; k += 3) {
        snprintf(key, sizeof key, "key%d", k);
        if (!json_remove(o, key))
            bad++;
    }
    CHECK(bad == 0);
    CHECK(json_len(o) == 666);
    for (int k = 0; k < 1000; k++) {
        snprintf(key, sizeof key, "key%d", k);
        bool present = json_get(o, key) != NULL;
        if (present != (k % 3 != 0))
            bad++;
    }
    CHECK(bad == 0);
    CHECK_STR(json_key_at(o, 0), "key1");
    CHECK_STR(json_key_at(o, 1), "key2");
    CHECK_STR(json_key_at(o, 2), "key4");
    /* round trip through text keeps everything, and equality ignores order */
    char *d = json_dump(o);
    json *back = d ? P(d) : NULL;
    CHECK(back && json_equal(o, back) && json_len(back) == 666);
    free(d);
    json *rev = json_new_object();
    for (size_t k = json_len(o); k-- > 0;)
        json_set(rev, json_key_at(o, k), json_clone(json_at(o, k)));
    CHECK(json_equal(o, rev) && json_equal(rev, o));
    CHECK_STR(json_key_at(rev, 0), json_key_at(o, json_len(o) - 1));
    json_set(rev, "key1", json_new_int(-1));
    CHECK(!json_equal(o, rev));
    json_free(rev);
    json_free(back);
    /* shrink back below the index threshold and keep working */
    while (json_len(o) > 3)
        json_remove(o, json_key_at(o, json_len(o) - 1));
    CHECK(json_len(o) == 3 && json_get(o, "key4") && !json_get(o, "key5"));
    json_free(o);

    /* parse a big object with many duplicates */
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    buf[n++] = '{';
    for (int k = 0; k < 5000; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s\"k%d\":%d", k ? "," : "", k % 2500, k);
    buf[n++] = '}';
    v = json_parse(buf, n, NULL, 0);
    CHECK(v && json_len(v) == 2500);
    CHECK(json_int64(json_get(v, "k7"), &i) && i == 2507);
    CHECK_STR(json_key_at(v, 7), "k7");
    json_free(v);
    free(buf);
}

static void test_build(void)
{
    json *o = json_new_object();
    CHECK(json_set(o, "name", json_new_string("vm1")));
    CHECK(json_set(o, "cpus", json_new_int(4)));
    CHECK(json_set(o, "ratio", json_new_double(0.5)));
    CHECK(json_set(o, "on", json_new_bool(true)));
    CHECK(json_set(o, "none", json_new_null()));
    json *arr = json_new_array();
    CHECK(json_append(arr, json_new_uint(UINT64_MAX)));
    CHECK(json_append(arr, json_new_int(INT64_MIN)));
    CHECK(json_append(arr, json_new_stringn("a\0b", 3)));
    CHECK(json_append(arr, json_new_stringn(NULL, 0)));
    CHECK(json_set(o, "list", arr));
    DUMP_IS(o, "{\"name\":\"vm1\",\"cpus\":4,\"ratio\":0.5,\"on\":true,\"none\":null,"
               "\"list\":[18446744073709551615,-9223372036854775808,\"a\\u0000b\",\"\"]}");

    /* replace keeps position */
    CHECK(json_set(o, "cpus", json_new_int(8)));
    DUMP_IS(o, "{\"name\":\"vm1\",\"cpus\":8,\"ratio\":0.5,\"on\":true,\"none\":null,"
               "\"list\":[18446744073709551615,-9223372036854775808,\"a\\u0000b\",\"\"]}");
    /* setting the value that is already there is a no-op, not a use-after-free */
    json *same = (json *)json_get(o, "cpus");
    CHECK(json_set(o, "cpus", same));
    int64_t i;
    CHECK(json_int64(json_get(o, "cpus"), &i) && i == 8);

    /* detach gives ownership back */
    json *name = json_detach(o, "name");
    CHECK_STR(json_str(name), "vm1");
    CHECK(json_get(o, "name") == NULL && json_len(o) == 5);
    CHECK(json_detach(o, "name") == NULL);
    CHECK(json_append(arr, name));
    CHECK(json_len(arr) == 5);
    CHECK(json_remove(o, "none") && !json_remove(o, "none"));
    CHECK_STR(json_key_at(o, 0), "cpus");
    DUMP_IS(o, "{\"cpus\":8,\"ratio\":0.5,\"on\":true,"
               "\"list\":[18446744073709551615,-9223372036854775808,\"a\\u0000b\",\"\",\"vm1\"]}");

    /* clone is deep and equal; mutating it leaves the original alone */
    json *c = json_clone(o);
    CHECK(c && c != o && json_equal(c, o));
    json_append((json *)json_get(c, "list"), json_new_null());
    CHECK(!json_equal(c, o));
    CHECK(json_len(json_get(o, "list")) == 5);
    json_free(c);

    /* failures take ownership (leak checkers verify the frees) */
    CHECK(!json_set(arr, "k", json_new_string("leak?")));
    CHECK(!json_set(NULL, "k", json_new_string("leak?")));
    CHECK(!json_set(o, NULL, json_new_string("leak?")));
    CHECK(!json_set(o, "k", NULL));
    CHECK(!json_setn(o, NULL, 3, json_new_int(1)));
    CHECK(!json_append(o, json_new_string("leak?")));
    CHECK(!json_append(NULL, json_new_array()));
    CHECK(!json_append(arr, NULL));
    CHECK(json_len(o) == 4);
    CHECK(json_new_string(NULL) == NULL);
    CHECK(json_new_stringn(NULL, 1) == NULL);
    /* setn with embedded NUL */
    CHECK(json_setn(o, "x\0y", 3, json_new_int(1)));
    CHECK(json_getn(o, "x\0y", 3) != NULL && json_get(o, "x") == NULL);
    CHECK(json_remove(o, "cpus"));
    json_free(o);

    /* wrong types and NULLs never crash */
    json *s = json_new_string("s");
    bool b;
    double d;
    uint64_t u;
    CHECK(json_typeof(NULL) == JSON_NULL);
    CHECK(json_get(NULL, "a") == NULL && json_get(s, "a") == NULL);
    CHECK(json_getn(s, "a", 1) == NULL);
    CHECK(json_len(NULL) == 0 && json_len(s) == 0);
    CHECK(json_at(NULL, 0) == NULL && json_at(s, 0) == NULL);
    CHECK(json_key_at(NULL, 0) == NULL && json_key_at(s, 0) == NULL);
    CHECK(json_key_len_at(NULL, 0) == 0);
    CHECK(json_str(NULL) == NULL && json_str_len(NULL) == 0);
    CHECK(!json_bool(NULL, &b) && !json_double(NULL, &d) && !json_int64(NULL, &i) &&
          !json_uint64(NULL, &u));
    CHECK(!json_double(s, &d) && !json_int64(s, &i) && !json_uint64(s, &u));
    CHECK(!json_remove(NULL, "a") && !json_remove(s, "a") && json_detach(s, "a") == NULL);
    CHECK(json_clone(NULL) == NULL);
    CHECK(json_equal(NULL, NULL) && !json_equal(s, NULL) && !json_equal(NULL, s));
    json *arr2 = json_new_array();
    CHECK(json_get(arr2, "a") == NULL && json_key_at(arr2, 0) == NULL);
    CHECK(json_str_len(arr2) == 0);
    json_free(arr2);
    json_free(s);
    json_free(NULL);
    char *dn = json_dump(NULL);
    CHECK_STR(dn, "null");
    free(dn);

    /* out parameters may be NULL */
    json *t = json_new_bool(true);
    CHECK(json_bool(t, NULL));
    json_free(t);
    json *num = json_new_int(-5);
    CHECK(json_int64(num, NULL) && !json_uint64(num, NULL) && json_double(num, NULL));
    json_free(num);
}

static void test_equal(void)
{
    struct {
        const char *a, *b;
        bool eq;
    } cases[] = {
        {"1", "1.0", true},
        {"1", "1e0", true},
        {"-0", "0", true},
        {"-0.0", "0", true},
        {"100", "1e2", true},
        {"9007199254740993", "9007199254740992.0", false},
        {"9007199254740992", "9007199254740992.0", true},
        {"18446744073709551615", "18446744073709551616", false},
        {"18446744073709551615", "18446744073709551615", true},
        {"-9223372036854775808", "-9.223372036854775808e18", true},
        {"9223372036854775808", "9.223372036854775808e18", true},
        {"1.5", "1.50", true},
        {"1.5", "1", false},
        {"0.1", "0.10000000000000001", true},
        {"1e400x", "", false},
        {"\"a\"", "\"a\"", true},
        {"\"a\"", "\"b\"", false},
        {"\"a\\u0000\"", "\"a\"", false},
        {"null", "false", false},
        {"0", "false", false},
        {"[]", "{}", false},
        {"[1,2]", "[2,1]", false},
        {"[1,2]", "[1,2,3]", false},
        {"{\"a\":1,\"b\":[true]}", "{\"b\":[true],\"a\":1.0}", true},
        {"{\"a\":1,\"b\":2}", "{\"a\":1,\"c\":2}", false},
        {"{\"a\":1}", "{\"a\":1,\"b\":2}", false},
        {"{\"a\":{\"x\":null}}", "{\"a\":{\"x\":false}}", false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        json *a = P(cases[k].a), *b = P(cases[k].b);
        bool eq = a && b && json_equal(a, b) && json_equal(b, a);
        if (eq != cases[k].eq) {
            failed++;
            fprintf(stderr, "equal(%s, %s) != %d\n", cases[k].a, cases[k].b, cases[k].eq);
        } else {
            passed++;
        }
        json_free(a);
        json_free(b);
    }
    json *n1 = json_new_double(NAN), *n2 = json_new_double(NAN), *z = json_new_int(0);
    CHECK(json_equal(n1, n2) && !json_equal(n1, z));
    json *big = json_new_uint(UINT64_MAX), *bigd = json_new_double(18446744073709551616.0);
    CHECK(!json_equal(big, bigd));
    json *m = json_new_int(INT64_MIN), *md = json_new_double(-9223372036854775808.0);
    CHECK(json_equal(m, md));
    json *u = json_new_uint(5), *i5 = json_new_int(5);
    CHECK(json_equal(u, i5));
    json_free(n1);
    json_free(n2);
    json_free(z);
    json_free(big);
    json_free(bigd);
    json_free(m);
    json_free(md);
    json_free(u);
    json_free(i5);
}

static void test_dump(void)
{
    EXPECT_DUMP(" { \"a\" : [ 1 , 2 ] , \"b\" : { } , \"c\" : [ ] } ",
                "{\"a\":[1,2],\"b\":{},\"c\":[]}");
    EXPECT_DUMP("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0001 \\u001f \\u007f\"",
                "\"\\\" \\\\ / \\b \\f \\n \\r \\t \\u0001 \\u001f \x7F\"");
    EXPECT_DUMP("\"\\u00e9\\ud83d\\ude00\"", "\"\xC3\xA9\xF0\x9F\x98\x80\"");
    EXPECT_DUMP("[0,-0,1.0,-1.5,1e2,1E-2,0.1,1e300,-2.5e-300]",
                "[0,0,1,-1.5,100,0.01,0.1,1e+300,-2.5e-300]");
    EXPECT_DUMP("[18446744073709551615,-9223372036854775808,18446744073709551616]",
                "[18446744073709551615,-9223372036854775808,1.8446744073709552e+19]");
    EXPECT_DUMP("[-0.0,1e-400,-1e-400]", "[-0.0,0,-0.0]");
    EXPECT_DUMP("[true,false,null]", "[true,false,null]");
    EXPECT_DUMP("{\"\\n\":\"\\u2028\"}", "{\"\\n\":\"\xE2\x80\xA8\"}");

    json *a = json_new_array();
    json_append(a, json_new_double(NAN));
    json_append(a, json_new_double(INFINITY));
    json_append(a, json_new_double(-INFINITY));
    json_append(a, json_new_double(3.0));
    json_append(a, json_new_double(0.1 + 0.2));
    json_append(a, json_new_double(1.0 / 3));
    json_append(a, json_new_double(-0.0));
    json_append(a, json_new_double(123456789012.0));
    json_append(a, json_new_double(9007199254740992.0));
    DUMP_IS(a, "[null,null,null,3,0.30000000000000004,0.3333333333333333,-0.0,123456789012,"
               "9007199254740992]");
    json_free(a);

    /* invalid UTF-8 in hand-built strings and keys comes out as U+FFFD */
    json *o = json_new_object();
    json_set(o, "k\xFF", json_new_string("a\xC0\x80z\xED\xA0\x80"));
    DUMP_IS(o, "{\"k\xEF\xBF\xBD\":\"a\xEF\xBF\xBD\xEF\xBF\xBDz\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"}");
    char *d = json_dump(o);
    json *back = d ? P(d) : NULL;
    CHECK(back != NULL);
    json_free(back);
    free(d);
    json_free(o);

    /* doubles round-trip bit for bit */
    uint64_t st = 0x9E3779B97F4A7C15ULL;
    int bad = 0;
    for (int k = 0; k < 200000; k++) {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        double x;
        uint64_t bits = st;
        if (k % 4 == 1)
            bits = (bits & 0x800FFFFFFFFFFFFFULL) | ((uint64_t)(1023 + (int)(st % 80) - 40) << 52);
        memcpy(&x, &bits, sizeof x);
        if (!isfinite(x))
            continue;
        json *v = json_new_double(x);
        char *s = json_dump(v);
        json *w = s ? P(s) : NULL;
        double y;
        if (!w || !json_double(w, &y) || memcmp(&x, &y, sizeof x) != 0 || !json_equal(v, w)) {
            if (bad++ < 5)
                fprintf(stderr, "double %.17g dumped as %s\n", x, s ? s : "(null)");
        }
        if (s && strlen(s) > 24)
            bad++;
        free(s);
        json_free(v);
        json_free(w);
    }
    CHECK(bad == 0);
}

static void test_oom(void)
{
#ifdef HAVE_OOM_TEST
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "{\"list\":[1,2.5e-300,\"s\\u00e9\\n\",true,null,{\"k\":\"v\"}],"
                                "\"long\":1%0300d.5,\"big\":123456789012345678901234567890", 0);
    for (int k = 0; k < 40; k++)
        n += (size_t)snprintf(text + n, sizeof text - n, ",\"member_%02d\":[%d]", k, k);
    text[n++] = '}';
    text[n] = 0;
    /* under valgrind the replacement above is not used: nothing to test then */
    void *(*volatile alloc)(size_t) = malloc; /* keep the compiler from eliding the probe */
    oom_arm(0);
    void *probe = alloc(1);
    oom_disarm();
    free(probe);
    if (probe) {
        fprintf(stderr, "note: allocation failures cannot be injected here; OOM test skipped\n");
        return;
    }
    json *ref = json_parse(text, n, NULL, 0);
    char *refdump = json_dump(ref);
    CHECK(ref && refdump);
    if (!ref || !refdump)
        return;
    int bad = 0, steps = 0;
    char err[128];

    long live0 = live_blocks;
    for (long k = 0;; k++, steps++) {
        bad += live_blocks != live0;
        oom_arm(k);
        json *v = json_parse(text, n, err, sizeof err);
        oom_disarm();
        if (!oom_hit) {
            bad += !(v && json_equal(v, ref));
            json_free(v);
            break;
        }
        /* a failed index allocation is tolerated (lookups fall back to a scan) */
        if (v)
            bad += !json_equal(v, ref);
        else
            bad += strcmp(err, "out of memory") != 0;
        json_free(v);
    }
    for (long k = 0;; k++, steps++) {
        bad += live_blocks != live0;
        oom_arm(k);
        char *d = json_dump(ref);
        oom_disarm();
        bad += d && strcmp(d, refdump) != 0;
        free(d);
        if (!oom_hit) {
            bad += !d;
            break;
        }
    }
    for (long k = 0;; k++, steps++) {
        bad += live_blocks != live0;
        oom_arm(k);
        json *c = json_clone(ref);
        oom_disarm();
        bad += c && !json_equal(c, ref);
        json_free(c);
        if (!oom_hit) {
            bad += !c;
            break;
        }
    }
    for (long k = 0;; k++, steps++) {
        bad += live_blocks != live0;
        json *o = json_new_object(), *a = json_new_array();
        oom_arm(k);
        bool ok = true;
        for (int j = 0; j < 40; j++) {
            char key[32];
            snprintf(key, sizeof key, "a_rather_long_key_%d", j);
            ok &= json_set(o, key, json_new_int(j));
            ok &= json_append(a, json_new_string(key));
        }
        ok &= json_set(o, "arr", a); /* a is freed on failure */
        oom_disarm();
        if (!oom_hit) {
            bad += !ok || json_len(o) != 41;
            json_free(o);
            break;
        }
        json_free(o);
    }
    for (long k = 0;; k++, steps++) {
        bad += live_blocks != live0;
        oom_arm(k);
        json *vals[6] = {json_new_null(), json_new_bool(true), json_new_double(1.5),
                         json_new_int(-1), json_new_uint(UINT64_MAX), json_new_string("x")};
        oom_disarm();
        for (int j = 0; j < 6; j++)
            json_free(vals[j]);
        if (!oom_hit)
            break;
    }
    CHECK(live_blocks == live0);
    CHECK(bad == 0);
    CHECK(steps > 100);
    json_free(ref);
    free(refdump);
#endif
}

static void test_locale(void)
{
    static const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "de_DE", "ru_RU.UTF-8"};
    const char *got = NULL;
    for (size_t k = 0; k < sizeof names / sizeof *names && !got; k++)
        got = setlocale(LC_NUMERIC, names[k]);
    if (!got) {
        fprintf(stderr, "note: no locale with a ',' decimal separator installed; locale test skipped\n");
        return;
    }
    char tmp[16];
    snprintf(tmp, sizeof tmp, "%.1f", 1.5);
    CHECK(strcmp(tmp, "1,5") == 0); /* the locale really is active */
    json *v = P("[1.5,-2.25e-300,0.1,123456789.123456789]");
    double d;
    CHECK(v && json_double(json_at(v, 0), &d) && d == 1.5);
    CHECK(json_double(json_at(v, 1), &d) && d == -2.25e-300);
    char *s = json_dump(v);
    CHECK_STR(s, "[1.5,-2.25e-300,0.1,123456789.12345679]");
    free(s);
    json_free(v);
    setlocale(LC_NUMERIC, "C");
}

static void *thread_main(void *arg)
{
    const char *text = arg;
    long bad = 0;
    for (int k = 0; k < 2000; k++) {
        json *v = P(text);
        char *d = v ? json_dump(v) : NULL;
        json *c = json_clone(v);
        if (!d || strcmp(d, text) != 0 || !json_equal(v, c))
            bad++;
        free(d);
        json_free(c);
        json_free(v);
    }
    return (void *)bad;
}

static void test_threads(void)
{
    const char *text = "{\"a\":[1,2.5,\"x\\n\",{\"b\":null}],\"c\":1e+300,\"d\":0.1}";
    pthread_t th[4];
    for (int k = 0; k < 4; k++)
        CHECK(pthread_create(&th[k], NULL, thread_main, (void *)text) == 0);
    for (int k = 0; k < 4; k++) {
        void *r = NULL;
        pthread_join(th[k], &r);
        CHECK(r == NULL);
    }
}

int main(void)
{
    test_scalars();
    test_numbers();
    test_strings();
    test_structures_and_errors();
    test_depth();
    test_objects();
    test_build();
    test_equal();
    test_dump();
    test_oom();
    test_locale();
    test_threads();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
