/* libFuzzer target for the JSON library.
   Build: clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I src/hcsemu \
              src/hcsemu/tests/fuzz_json.c src/hcsemu/json.c -o fuzz_json
   Run:   ./fuzz_json -max_total_time=60 CORPUS_DIR
   Checks: a parse either fails with a positioned message or succeeds; a successful parse dumps,
   re-parses to an equal tree and dumps to the identical text; clones are equal and dump the same. */
#include "json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what, const uint8_t *data, size_t size)
{
    fprintf(stderr, "fuzz_json: %s (input %zu bytes)\n", what, size);
    (void)data;
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[160];
    memset(err, 'X', sizeof err);
    json *v = json_parse((const char *)data, size, err, sizeof err);
    if (!v) {
        if (!memchr(err, 0, sizeof err) || (!strstr(err, " at line ") && strcmp(err, "out of memory")))
            fail("error message missing or without position", data, size);
        return 0;
    }

    char *d1 = json_dump(v);
    if (!d1)
        fail("dump failed", data, size);
    json *w = json_parse(d1, strlen(d1), err, sizeof err);
    if (!w) {
        fprintf(stderr, "re-parse error: %s\n", err);
        fail("dump does not re-parse", data, size);
    }
    char *d2 = json_dump(w);
    if (!d2 || strcmp(d1, d2) != 0)
        fail("dump of re-parsed tree differs", data, size);
    if (!json_equal(v, w) || !json_equal(w, v))
        fail("re-parsed tree not equal", data, size);

    json *c = json_clone(v);
    char *d3 = c ? json_dump(c) : NULL;
    if (!c || !json_equal(c, v) || !d3 || strcmp(d1, d3) != 0)
        fail("clone differs", data, size);

    /* exercise the read API over the top level */
    size_t n = json_len(v);
    for (size_t i = 0; i < n; i++) {
        const char *k = json_key_at(v, i);
        if (k && json_typeof(v) == JSON_OBJECT &&
            json_getn(v, k, json_key_len_at(v, i)) != json_at(v, i))
            fail("member lookup mismatch", data, size);
    }

    free(d1);
    free(d2);
    free(d3);
    json_free(c);
    json_free(w);
    json_free(v);
    return 0;
}
