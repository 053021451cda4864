/*
 * The emulator driven from C, as a non-Python client would: many threads running full
 * lifecycles with callbacks, bogus and closed handles, then a check that nothing is left.
 * Built and run under AddressSanitizer with leak detection by `make test`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hcs.h"

size_t hcsemu_wcslen(const WCHAR *s);

static int passed, failed;
#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) passed++;                                                            \
        else {                                                                         \
            failed++;                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

static WCHAR *w(const char *s) {
    size_t n = strlen(s);
    WCHAR *out = malloc((n + 1) * sizeof(WCHAR));
    for (size_t i = 0; i <= n; i++) out[i] = (unsigned char)s[i];
    return out;
}

static char *narrow(PCWSTR s) {
    size_t n = hcsemu_wcslen(s);
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) out[i] = (char)(s[i] < 128 ? s[i] : '?');
    out[n] = 0;
    return out;
}

static HRESULT wait_op(HCS_OPERATION op, char **doc) {
    PWSTR result = NULL;
    HRESULT hr = HcsWaitForOperationResult(op, 10000, &result);
    if (doc) *doc = result ? narrow(result) : NULL;
    LocalFree(result);
    return hr;
}

static atomic_int exits_seen, completions_seen;

static void on_event(HCS_EVENT *ev, void *ctx) {
    (void)ctx;
    if (ev->Type == HcsEventSystemExited) atomic_fetch_add(&exits_seen, 1);
    if (ev->Type == HcsEventProcessExited) CHECK(ev->EventData && hcsemu_wcslen(ev->EventData) > 10);
}

static void on_done(HCS_OPERATION op, void *ctx) {
    CHECK(ctx == (void *)0x5EED);
    CHECK(HcsGetOperationResult(op, NULL) == 0);
    atomic_fetch_add(&completions_seen, 1);
    HcsCloseOperation(op); /* legal inside the operation's own callback */
}

static void *lifecycle(void *arg) {
    long n = (long)arg;
    char id[64];
    for (int round = 0; round < 15; round++) {
        snprintf(id, sizeof id, "c-%ld-%d", n, round);
        WCHAR *wid = w(id);
        WCHAR *cfg = w("{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{}}");
        HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
        HCS_SYSTEM sys = NULL;
        CHECK(HcsCreateComputeSystem(wid, cfg, op, NULL, &sys) == 0 && sys);
        CHECK(wait_op(op, NULL) == 0);
        CHECK(HcsSetComputeSystemCallback(sys, HcsEventOptionNone, NULL, on_event) == 0);
        CHECK(HcsStartComputeSystem(sys, op, NULL) == 0);
        CHECK(wait_op(op, NULL) == 0);
        WCHAR *params = w("{\"CommandLine\":\"echo x\",\"CreateStdOutPipe\":true}");
        HCS_PROCESS proc = NULL;
        CHECK(HcsCreateProcess(sys, params, op, NULL, &proc) == 0);
        HCS_PROCESS_INFORMATION pi;
        PWSTR doc = NULL;
        CHECK(HcsWaitForOperationResultAndProcessInfo(op, 10000, &pi, &doc) == 0);
        LocalFree(doc);
        char buf[16];
        CHECK(read((int)(intptr_t)pi.StdOutput, buf, sizeof buf) == 2);
        close((int)(intptr_t)pi.StdOutput);
        CHECK(HcsSetProcessCallback(proc, HcsEventOptionNone, NULL, on_event) == 0);
        PWSTR status = NULL;
        CHECK(HcsWaitForProcessExit(proc, 10000, &status) == 0 && status);
        LocalFree(status);
        HCS_OPERATION cb_op = HcsCreateOperation((void *)0x5EED, on_done);
        WCHAR *query = w("{\"PropertyTypes\":[\"Statistics\",\"ProcessList\"]}");
        CHECK(HcsGetComputeSystemProperties(sys, cb_op, query) == 0);
        CHECK(HcsTerminateComputeSystem(sys, op, NULL) == 0);
        CHECK(wait_op(op, NULL) == 0);
        CHECK(HcsTerminateComputeSystem(sys, op, NULL) == 0);
        CHECK((uint32_t)wait_op(op, NULL) == 0x80370110u); /* already stopped */
        HcsCloseProcess(proc);
        HcsCloseOperation(op);
        HcsCloseComputeSystem(sys);
        free(wid);
        free(cfg);
        free(params);
        free(query);
    }
    return NULL;
}

int main(void) {
    WCHAR *set = w("{\"PropertyType\":\"Emulator\",\"Settings\":{\"WorkerIdleMs\":20}}");
    CHECK(HcsModifyServiceSettings(set, NULL) == 0);
    free(set);

    /* bogus and closed handles are errors, never crashes */
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HcsCloseOperation(op);
    CHECK((uint32_t)HcsGetOperationResult(op, NULL) == 0x80070006u);
    CHECK((uint32_t)HcsStartComputeSystem((HCS_SYSTEM)(uintptr_t)0x1234, op, NULL) == 0x80070006u);
    CHECK(HcsGetOperationId((HCS_OPERATION)(uintptr_t)0xFFFFFFFF00000001ull) == HCS_INVALID_OPERATION_ID);
    HcsCloseComputeSystem((HCS_SYSTEM)(uintptr_t)42);
    HcsCloseProcess(NULL);
    CHECK(LocalFree((HLOCAL)&op) == (HLOCAL)&op);

    enum { THREADS = 6 };
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, lifecycle, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&exits_seen) == THREADS * 15);

    /* everything closed: the emulator holds nothing and its threads wind down */
    const char *want = "\"Operations\":0,\"SystemHandles\":0,\"ProcessHandles\":0,\"Systems\":0,\"Processes\":0,\"Documents\":0,\"WorkerThreads\":0";
    char *stats = NULL;
    for (int i = 0; i < 200; i++) {
        WCHAR *q = w("{\"PropertyTypes\":[\"EmulatorStatistics\"]}");
        PWSTR doc = NULL;
        HcsGetServiceProperties(q, &doc);
        free(q);
        free(stats);
        stats = narrow(doc);
        LocalFree(doc);
        if (strstr(stats, want) && atomic_load(&completions_seen) == THREADS * 15) break;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK(strstr(stats, want) != NULL);
    CHECK(atomic_load(&completions_seen) == THREADS * 15);
    if (!strstr(stats, want)) fprintf(stderr, "statistics: %s\n", stats);
    free(stats);
    sleep(1); /* let the last idle worker and the reaper exit before LeakSanitizer looks */
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
