/*
 * Small strict JSON (RFC 8259) library: parse, read, build, mutate, compare and dump.
 *
 * Semantics worth knowing:
 *  - Parsing is strict: no comments, no trailing commas, no byte order mark, exactly one value
 *    surrounded only by whitespace; strings must be valid UTF-8 with no raw control characters;
 *    \u escapes must not contain lone surrogates.
 *  - Nesting deeper than JSON_MAX_DEPTH arrays/objects is an error (never a stack overflow).
 *    json_dump, json_clone and json_equal apply the same limit to trees built by hand
 *    (dump/clone return NULL, equal returns false), so a dump can always be parsed back.
 *  - Duplicate object keys: the last value wins and the member keeps the position of the first
 *    occurrence (the same rule as json_set).
 *  - Numbers keep their double value and, when the literal is an integer that fits, the exact
 *    int64/uint64 value. json_int64/json_uint64 also accept a number written with a fraction or
 *    exponent (2.0, 1e3) whose double value is an integer in range, but never an integer
 *    literal beyond the 64-bit ranges (it is only known rounded). Literals too large for a
 *    double (e.g. 1e400) are rejected rather than silently becoming infinity; tiny ones
 *    underflow to 0 as usual.
 *  - Number conversion does not depend on the process locale (LC_NUMERIC).
 *  - Strings and keys are byte strings of a given length that may contain U+0000; the
 *    NUL-terminated accessors (json_str, json_key_at) see only the part before it, the _len
 *    variants give the full length. json_dump writes any invalid UTF-8 found in strings built
 *    by hand as U+FFFD, so its output is always valid UTF-8 JSON.
 *  - Non-finite doubles (NaN, infinity) are dumped as null. json_equal treats NaN as equal to
 *    NaN (so a clone always equals its original) and -0.0 as equal to 0.
 *  - No global mutable state: distinct trees may be used from different threads freely; one
 *    tree may be read from several threads at once but needs external locking to be mutated.
 *  - A value passed to json_set/json_append must be a root the caller owns (not part of any
 *    tree, and in particular not the container itself or one of its ancestors).
 */
#ifndef HCSEMU_JSON_H
#define HCSEMU_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define JSON_MAX_DEPTH 512

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;
typedef struct json json; /* opaque node */

/* Parse UTF-8 text of length len (need not be NUL-terminated). Returns NULL on error and writes
   a message such as "expected ',' or '}' at line 1, column 17" into err (if errlen > 0; always
   NUL-terminated). Columns count UTF-8 characters, both are 1-based. */
json *json_parse(const char *text, size_t len, char *err, size_t errlen);
void json_free(json *v);              /* NULL-safe, frees the whole tree */
json_type json_typeof(const json *v); /* JSON_NULL for v == NULL */

/* Read access: NULL-safe and type-safe (wrong type gives NULL/false/0). */
const json *json_get(const json *obj, const char *key);              /* member value or NULL */
const json *json_getn(const json *obj, const char *key, size_t klen); /* key may hold NULs */
size_t json_len(const json *v);                          /* array elements / object members */
const json *json_at(const json *arr_or_obj, size_t i);   /* i-th element / i-th member value */
const char *json_key_at(const json *obj, size_t i);      /* i-th member key, insertion order */
size_t json_key_len_at(const json *obj, size_t i);       /* its length in bytes */
const char *json_str(const json *v);                     /* NUL-terminated, or NULL */
size_t json_str_len(const json *v);                      /* bytes, embedded NULs included */
bool json_bool(const json *v, bool *out);                /* false if not a bool */
bool json_double(const json *v, double *out);            /* false if not a number */
bool json_int64(const json *v, int64_t *out);   /* true only for an exact integer in range */
bool json_uint64(const json *v, uint64_t *out); /* likewise for 0..UINT64_MAX */

/* Build. Constructors return NULL only on out-of-memory (json_new_string(NULL) also gives NULL). */
json *json_new_null(void);
json *json_new_bool(bool b);
json *json_new_double(double d);
json *json_new_int(int64_t i);
json *json_new_uint(uint64_t u);
json *json_new_string(const char *utf8); /* copies */
json *json_new_stringn(const char *utf8, size_t n);
json *json_new_array(void);
json *json_new_object(void);

/* Mutate. json_set/json_append take ownership of val in every case: on failure (out of memory,
   wrong container type, NULL key or val) val is freed and false is returned. json_set replaces
   the value of an existing key in place, keeping its position. */
bool json_set(json *obj, const char *key, json *val);
bool json_setn(json *obj, const char *key, size_t klen, json *val);
bool json_append(json *arr, json *val);
bool json_remove(json *obj, const char *key);   /* true if a member was removed */
json *json_detach(json *obj, const char *key);  /* remove and return the value (caller owns) */
json *json_clone(const json *v);                /* deep copy; NULL on OOM */
bool json_equal(const json *a, const json *b);  /* deep; numbers by value; member order ignored */

/* Nesting depth of v: 0 for a scalar or NULL, 1 for an empty array/object, ... Stops counting
   at limit + 1 (so a tree built by hand deeper than any limit costs nothing extra). */
size_t json_depth(const json *v, size_t limit);

/* Typed member reads for request documents: a mismatch is reported, naming the member.
   path is one member or a '.'-separated chain of members below obj ("Container.Storage.Path");
   obj and every member on the way must be objects. A missing member, or one that is JSON null,
   is absent: the getter returns true and leaves *out as it was. A member of another type, and
   a string holding U+0000 (every string read here becomes a C string), return false and write
   "<ctx>.<path> must be ..." (ctx may be NULL) into err (always NUL-terminated). */
bool json_want_str(const json *obj, const char *ctx, const char *path, const char **out, char *err, size_t errlen);
bool json_want_obj(const json *obj, const char *ctx, const char *path, const json **out, char *err, size_t errlen);
bool json_want_arr(const json *obj, const char *ctx, const char *path, const json **out, char *err, size_t errlen);
bool json_want_bool(const json *obj, const char *ctx, const char *path, bool *out, char *err, size_t errlen);
bool json_want_int64(const json *obj, const char *ctx, const char *path, int64_t *out, char *err, size_t errlen);
bool json_want_uint64(const json *obj, const char *ctx, const char *path, uint64_t *out, char *err, size_t errlen);
/* The i-th element of array arr as a string (same rules); name is the array's name for err. */
bool json_want_elem_str(const json *arr, const char *name, size_t i, const char **out, char *err, size_t errlen);
/* Whether v (any tree) holds a string or member key with U+0000; *where gets a short
   description of the first one ("member 'a.b'", written into where, whlen bytes). */
bool json_has_nul(const json *v, char *where, size_t whlen);

/* Compact dump (no whitespace) into a malloc'd NUL-terminated string the caller free()s;
   NULL on out-of-memory. Members in insertion order, minimal escaping, raw UTF-8, integers
   exact, other doubles in the shortest form that round-trips, NaN/infinity as null. */
char *json_dump(const json *v);

#ifdef __cplusplus
}
#endif

#endif /* HCSEMU_JSON_H */
