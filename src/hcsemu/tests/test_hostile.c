/*
 * Hostile input through the C ABI: wrong-type members, embedded NULs, lone surrogates,
 * configurations nested past the limit, waits whose handle another thread closes, and the
 * Windows command-line rules of a Container. Built with the emulator's sources under
 * AddressSanitizer + UBSan by `make test`.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emu.h"

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

/* UTF-8 (ASCII here) -> UTF-16; "\x01" stands for a lone surrogate U+D800. */
static WCHAR *w(const char *s) {
    size_t n = strlen(s);
    WCHAR *out = malloc((n + 1) * sizeof(WCHAR));
    for (size_t i = 0; i <= n; i++) out[i] = s[i] == 1 ? 0xD800 : (unsigned char)s[i];
    return out;
}

static char *narrow(PCWSTR s) {
    if (!s) return NULL;
    size_t n = hcsemu_wcslen(s);
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) out[i] = (char)(s[i] < 128 ? s[i] : '?');
    out[n] = 0;
    return out;
}

static HRESULT wait_op(HCS_OPERATION op, char **doc) {
    PWSTR result = NULL;
    HRESULT hr = HcsWaitForOperationResult(op, 10000, &result);
    if (doc) *doc = narrow(result);
    LocalFree(result);
    return hr;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static HCS_SYSTEM start_container(const char *id, const char *extra) {
    char cfg[512];
    snprintf(cfg, sizeof cfg, "{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{}%s}", extra ? extra : "");
    WCHAR *wid = w(id), *wcfg = w(cfg);
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM sys = NULL;
    CHECK(HcsCreateComputeSystem(wid, wcfg, op, NULL, &sys) == 0 && sys);
    CHECK(wait_op(op, NULL) == 0);
    CHECK(HcsStartComputeSystem(sys, op, NULL) == 0);
    CHECK(wait_op(op, NULL) == 0);
    HcsCloseOperation(op);
    free(wid);
    free(wcfg);
    return sys;
}

static void stop_and_close(HCS_SYSTEM sys) {
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HcsTerminateComputeSystem(sys, op, NULL);
    wait_op(op, NULL);
    HcsCloseOperation(op);
    HcsCloseComputeSystem(sys);
}

/* Runs one system call with a JSON argument; returns the HRESULT and the result document. */
static HRESULT props(HCS_SYSTEM sys, const char *query, char **doc) {
    WCHAR *q = w(query);
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HRESULT hr = HcsGetComputeSystemProperties(sys, op, q);
    if (hr == 0) hr = wait_op(op, doc);
    HcsCloseOperation(op);
    free(q);
    return hr;
}

static HRESULT modify(HCS_SYSTEM sys, const char *req, char **doc) {
    WCHAR *q = w(req);
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HRESULT hr = HcsModifyComputeSystem(sys, op, q, NULL);
    if (hr == 0) hr = wait_op(op, doc);
    HcsCloseOperation(op);
    free(q);
    return hr;
}

static HRESULT create_process(HCS_SYSTEM sys, const char *params, HCS_PROCESS *out, HCS_PROCESS_INFORMATION *pi,
                              char **doc) {
    WCHAR *p = w(params);
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_PROCESS proc = NULL;
    HRESULT hr = HcsCreateProcess(sys, p, op, NULL, &proc);
    PWSTR d = NULL;
    HCS_PROCESS_INFORMATION info = {0};
    if (hr == 0) hr = HcsWaitForOperationResultAndProcessInfo(op, 10000, &info, &d);
    if (doc) *doc = narrow(d);
    LocalFree(d);
    HcsCloseOperation(op);
    free(p);
    if (pi) *pi = info;
    if (out) *out = proc;
    else if (proc) HcsCloseProcess(proc);
    return hr;
}

/* ------------------------------------------------------------------ wrong types, NULs */

static void test_wrong_types(void) {
    HCS_SYSTEM sys = start_container("hostile-types", NULL);
    char *doc = NULL;
    /* "Queries" as an array reached strcmp with NULL once */
    CHECK((uint32_t)props(sys, "{\"Queries\":[1,2]}", &doc) == 0x8037010Du);
    CHECK(doc && strstr(doc, "Queries") && strstr(doc, "an object"));
    free(doc);
    CHECK((uint32_t)props(sys, "{\"PropertyTypes\":[\"Memory\",7]}", &doc) == 0x8037010Du);
    CHECK(doc && strstr(doc, "PropertyTypes[1]"));
    free(doc);
    CHECK((uint32_t)props(sys, "{\"PropertyTypes\":\"Memory\"}", &doc) == 0x8037010Du);
    free(doc);
    CHECK((uint32_t)props(sys, "{\"Queries\":{\"Me\\u0000mory\":{}}}", &doc) == 0x8037010Du);
    CHECK(doc && strstr(doc, "U+0000"));
    free(doc);
    CHECK(props(sys, "{\"Queries\":{\"Memory\":{}}}", &doc) == 0);
    free(doc);
    CHECK((uint32_t)modify(sys, "{\"ResourcePath\":[\"Container\"],\"Settings\":1}", &doc) == 0x8037010Du);
    CHECK(doc && strstr(doc, "ResourcePath"));
    free(doc);
    CHECK((uint32_t)modify(sys, "{\"ResourcePath\":\"Container/a\",\"RequestType\":5}", &doc) == 0x8037010Du);
    CHECK(doc && strstr(doc, "RequestType"));
    free(doc);
    /* a modify that would leave a wrong type where the service reads one later */
    CHECK((uint32_t)modify(sys, "{\"ResourcePath\":\"Container/Processor\",\"RequestType\":\"Update\","
                                "\"Settings\":{\"Count\":\"2\"}}", &doc) == 0x8037010Du);
    CHECK(doc && strstr(doc, "Container.Processor.Count"));
    free(doc);
    CHECK((uint32_t)modify(sys, "{\"ResourcePath\":\"Container/MappedDirectories\",\"RequestType\":\"Add\","
                                "\"Settings\":{\"HostPath\":\"/tmp\",\"ReadOnly\":1}}", &doc) == 0x8037010Du);
    CHECK(doc && strstr(doc, "ReadOnly"));
    free(doc);
    /* a resource root the configuration does not have */
    CHECK((uint32_t)modify(sys, "{\"ResourcePath\":\"HostedSystem/a/b\",\"Settings\":1}", &doc) ==
          0x80070032u);
    free(doc);
    const char *bad_params[][2] = {
        {"{\"CommandLine\":[\"true\"]}", "CommandLine"},
        {"{\"CommandLine\":\"true\",\"WorkingDirectory\":1}", "WorkingDirectory"},
        {"{\"CommandLine\":\"true\",\"Environment\":{\"A\":1}}", "Environment.A"},
        {"{\"CommandLine\":\"true\",\"Environment\":[\"A=1\"]}", "Environment"},
        {"{\"CommandLine\":\"true\",\"CreateStdOutPipe\":1}", "CreateStdOutPipe"},
        {"{\"CommandLine\":\"true\",\"ConsoleSize\":{}}", "ConsoleSize"},
        {"{\"CommandLine\":\"tr\\u0000ue\"}", "U+0000"},
        {"{\"CommandLine\":\"true\",\"Environment\":{\"A\":\"x\\u0000y\"}}", "U+0000"},
        {"{\"CommandLine\":\"true\",\"WorkingDirectory\":\"/tmp\\u0000/x\"}", "U+0000"},
    };
    for (size_t i = 0; i < sizeof bad_params / sizeof bad_params[0]; i++) {
        doc = NULL;
        HRESULT hr = create_process(sys, bad_params[i][0], NULL, NULL, &doc);
        CHECK((uint32_t)hr == 0x8037010Du);
        CHECK(doc && strstr(doc, bad_params[i][1]));
        if (!doc || !strstr(doc, bad_params[i][1])) fprintf(stderr, "  %s -> %s\n", bad_params[i][0], doc);
        free(doc);
    }
    stop_and_close(sys);

    /* configurations: wrong-type members and NULs are refused at create */
    const char *bad_cfgs[][2] = {
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{\"Storage\":{\"Layers\":{}}}}", "Layers"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{\"Storage\":{\"Layers\":[{\"Path\":1}]}}}",
         "Layers[0].Path"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{\"Storage\":[]}}", "Storage"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{},\"HostingSystemId\":5}", "HostingSystemId"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{},\"Owner\":\"a\\u0000b\"}", "U+0000"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"VirtualMachine\":{\"GuestState\":{\"GuestStateFilePath\":1}}}",
         "GuestStateFilePath"},
        /* members read later by the cgroup and isolation code, which take a wrong type as absent */
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{\"MappedDirectories\":[{\"HostPath\":\"/tmp\","
         "\"ContainerPath\":5}]}}", "MappedDirectories[0].ContainerPath"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{\"MappedDirectories\":[{\"HostPath\":\"/tmp\","
         "\"ReadOnly\":\"true\"}]}}", "MappedDirectories[0].ReadOnly"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{\"Processor\":{\"Count\":\"2\"}}}", "Processor.Count"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"HostedSystem\":{\"Container\":{\"Processor\":{\"Weight\":[]}}}}",
         "HostedSystem.Container.Processor.Weight"},
        {"{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"VirtualMachine\":{\"ComputeTopology\":{\"Processor\":"
         "{\"Limits\":{\"Limit\":true}}}}}", "Processor.Limits.Limit"},
    };
    for (size_t i = 0; i < sizeof bad_cfgs / sizeof bad_cfgs[0]; i++) {
        WCHAR *wid = w("hostile-cfg"), *wcfg = w(bad_cfgs[i][0]);
        HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
        HCS_SYSTEM s2 = NULL;
        HRESULT hr = HcsCreateComputeSystem(wid, wcfg, op, NULL, &s2);
        if (hr == 0) hr = wait_op(op, &doc);
        CHECK((uint32_t)hr == 0x8037010Du);
        CHECK(doc && strstr(doc, bad_cfgs[i][1]));
        if (!doc || !strstr(doc, bad_cfgs[i][1])) fprintf(stderr, "  cfg %zu -> %s\n", i, doc);
        free(doc);
        doc = NULL;
        HcsCloseOperation(op);
        HcsCloseComputeSystem(s2);
        free(wid);
        free(wcfg);
    }
}

/* ------------------------------------------------------------------ names */

static void test_surrogates(void) {
    HCS_SYSTEM sys = start_container("hostile-\xef\xbf\xbd", NULL); /* bytes are not UTF-8 here: a plain name */
    WCHAR *bad = w("hostile-\x01");
    HCS_SYSTEM other = NULL;
    CHECK((uint32_t)HcsOpenComputeSystem(bad, GENERIC_ALL, &other) == 0x80070057u && !other);
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    WCHAR *cfg = w("{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{}}");
    CHECK((uint32_t)HcsCreateComputeSystem(bad, cfg, op, NULL, &other) == 0x80070057u);
    WCHAR *tmp = w("/tmp");
    CHECK((uint32_t)HcsGrantVmAccess(bad, tmp) == 0x80070057u);
    free(tmp);
    CHECK((uint32_t)HcsGrantVmGroupAccess(bad) == 0x80070057u);
    CHECK((uint32_t)HcsCreateEmptyRuntimeStateFile(bad) == 0x80070057u);
    CHECK((uint32_t)HcsDestroyLayer(bad) == 0x80070057u);
    HcsCloseOperation(op);
    free(bad);
    free(cfg);
    stop_and_close(sys);
}

/* ------------------------------------------------------------------ nesting limit */

static void test_nesting(void) {
    HCS_SYSTEM sys = start_container("hostile-nest", NULL);
    /* one long path, then settings on top: past the limit is an error, and nothing changes */
    size_t depth = JSON_MAX_DEPTH;
    char *req = malloc(depth * 4 + 128);
    char *p = req + sprintf(req, "{\"ResourcePath\":\"Container");
    for (size_t i = 0; i < depth; i++) p += sprintf(p, "/a");
    sprintf(p, "\",\"Settings\":1}");
    char *doc = NULL;
    CHECK((uint32_t)modify(sys, req, &doc) == 0x8037010Du);
    free(doc);
    /* just under the limit by path, then deeper settings: still refused */
    p = req + sprintf(req, "{\"ResourcePath\":\"Container");
    for (size_t i = 0; i < JSON_MAX_DEPTH - 20; i++) p += sprintf(p, "/a");
    sprintf(p, "\",\"Settings\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{\"i\":{\"j\":{\"k\":{\"l\":{\"m\":{\"n\":{\"o\":{\"p\":{\"q\":{\"r\":{\"s\":{\"t\":{\"u\":1}}}}}}}}}}}}}}}}}}}}}");
    CHECK((uint32_t)modify(sys, req, &doc) == 0x8037010Du);
    CHECK(doc && strstr(doc, "deeper"));
    free(doc);
    free(req);
    /* the configuration is intact and still readable */
    CHECK(props(sys, "{\"PropertyTypes\":[\"EmulatorConfiguration\"]}", &doc) == 0);
    CHECK(doc && strstr(doc, "EmulatorConfiguration") && !strstr(doc, "\"a\""));
    free(doc);
    /* a configuration at create past the limit */
    char *cfg = malloc(2 * JSON_MAX_DEPTH + 200);
    p = cfg + sprintf(cfg, "{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{},\"X\":");
    for (int i = 0; i < JSON_MAX_DEPTH - 4; i++) *p++ = '[';
    for (int i = 0; i < JSON_MAX_DEPTH - 4; i++) *p++ = ']';
    strcpy(p, "}");
    WCHAR *wid = w("hostile-nest2"), *wcfg = w(cfg);
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM s2 = NULL;
    HRESULT hr = HcsCreateComputeSystem(wid, wcfg, op, NULL, &s2);
    if (hr == 0) hr = wait_op(op, NULL);
    CHECK((uint32_t)hr == 0x8037010Du);
    HcsCloseOperation(op);
    HcsCloseComputeSystem(s2);
    free(wid);
    free(wcfg);
    free(cfg);
    stop_and_close(sys);
}

/* ------------------------------------------------------------------ waits and close */

typedef struct waiter {
    void *handle;
    bool process;
    HRESULT hr;
    atomic_bool done;
} waiter;

static void *wait_thread(void *arg) {
    waiter *x = arg;
    PWSTR doc = NULL;
    x->hr = x->process ? HcsWaitForProcessExit(x->handle, INFINITE, &doc)
                       : HcsWaitForComputeSystemExit(x->handle, INFINITE, &doc);
    LocalFree(doc);
    atomic_store(&x->done, true);
    return NULL;
}

static bool joined_within(pthread_t t, waiter *x, uint64_t ms) {
    uint64_t end = now_ms() + ms;
    while (!atomic_load(&x->done) && now_ms() < end) usleep(5000);
    if (!atomic_load(&x->done)) return false;
    pthread_join(t, NULL);
    return true;
}

static void test_close_wakes_waiters(void) {
    HCS_SYSTEM sys = start_container("hostile-wait", NULL);
    HCS_PROCESS proc = NULL;
    CHECK(create_process(sys, "{\"CommandLine\":\"sleep 30\"}", &proc, NULL, NULL) == 0 && proc);
    waiter pw = {proc, true, 0, false};
    pthread_t pt;
    pthread_create(&pt, NULL, wait_thread, &pw);
    usleep(100000);
    CHECK(!atomic_load(&pw.done));
    HcsCloseProcess(proc);
    CHECK(joined_within(pt, &pw, 3000));
    CHECK((uint32_t)pw.hr == 0x80070006u);

    /* a second handle to the system: closing the waited-on one wakes its waiter only */
    WCHAR *wid = w("hostile-wait");
    HCS_SYSTEM other = NULL;
    CHECK(HcsOpenComputeSystem(wid, GENERIC_ALL, &other) == 0);
    free(wid);
    waiter sw = {sys, false, 0, false}, ow = {other, false, 0, false};
    pthread_t st, ot;
    pthread_create(&st, NULL, wait_thread, &sw);
    pthread_create(&ot, NULL, wait_thread, &ow);
    usleep(100000);
    HcsCloseComputeSystem(sys);
    CHECK(joined_within(st, &sw, 3000));
    CHECK((uint32_t)sw.hr == 0x80070006u);
    usleep(50000);
    CHECK(!atomic_load(&ow.done));
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    CHECK(HcsTerminateComputeSystem(other, op, NULL) == 0);
    CHECK(wait_op(op, NULL) == 0);
    CHECK(joined_within(ot, &ow, 5000));
    CHECK(ow.hr == 0);

    HcsCloseOperation(op);
    HcsCloseComputeSystem(other);
}

typedef struct opwaiter {
    HCS_OPERATION op;
    HRESULT hr;
    atomic_bool done;
} opwaiter;

static void *op_wait_thread(void *arg) {
    opwaiter *x = arg;
    PWSTR doc = NULL;
    x->hr = HcsWaitForOperationResult(x->op, INFINITE, &doc);
    LocalFree(doc);
    atomic_store(&x->done, true);
    return NULL;
}

static void test_close_wakes_operation_waiter(void) {
    HCS_SYSTEM sys = start_container("hostile-opwait", NULL);
    WCHAR *fault = w("{\"PropertyType\":\"EmulatorFaults\",\"Settings\":{\"Faults\":[{\"Function\":"
                     "\"HcsGetComputeSystemProperties\",\"Hang\":true}],\"Reset\":true}}");
    CHECK(HcsModifyServiceSettings(fault, NULL) == 0);
    free(fault);
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    CHECK(HcsGetComputeSystemProperties(sys, op, NULL) == 0);
    opwaiter x = {op, 0, false};
    pthread_t t;
    pthread_create(&t, NULL, op_wait_thread, &x);
    usleep(100000);
    CHECK(!atomic_load(&x.done));
    HcsCloseOperation(op);
    uint64_t end = now_ms() + 3000;
    while (!atomic_load(&x.done) && now_ms() < end) usleep(5000);
    CHECK(atomic_load(&x.done));
    if (atomic_load(&x.done)) pthread_join(t, NULL);
    CHECK((uint32_t)x.hr == 0x80070006u);
    WCHAR *reset = w("{\"PropertyType\":\"EmulatorActions\",\"Settings\":{\"Action\":\"Reset\"}}");
    CHECK(HcsModifyServiceSettings(reset, NULL) == 0);
    free(reset);
    stop_and_close(sys);
}

/* ------------------------------------------------------------------ Windows command lines */

static void test_split(void) {
    /* input, then the expected arguments joined by '|' ("" for none) */
    static const char *const table[][2] = {
        {"prog", "prog"},
        {"  prog  a   b  ", "prog|a|b"},
        {"prog\ta\t\tb", "prog|a|b"},
        {"\"C:\\Program Files\\x.exe\" a", "C:\\Program Files\\x.exe|a"},
        {"\"a\\\"b\" c", "a\\|b c"}, /* the program: no escapes; the next argument starts right after it */
        {"\"unterminated prog", "unterminated prog"},
        {"prog\"x y\" z", "prog\"x|y z"}, /* an unquoted program ends at whitespace, quotes and all */
        {"p \"a b\" c", "p|a b|c"},
        {"p a\\\\b", "p|a\\\\b"},               /* backslashes not before a quote: literal */
        {"p a\\\"b", "p|a\"b"},                 /* 1 backslash + quote: literal quote */
        {"p a\\\\\"b c\"", "p|a\\b c"},         /* 2 backslashes + quote: one backslash, quote opens */
        {"p a\\\\\\\"b", "p|a\\\"b"},           /* 3 backslashes + quote: one backslash, literal quote */
        {"p \"a\\\\\"", "p|a\\"},               /* trailing backslash before the closing quote */
        {"p \"\"", "p|"},                       /* an empty argument */
        {"p \"\" \"\"", "p||"},
        {"p \"a\"\"b\"", "p|a\"b"},             /* doubled quote inside: literal quote, quoted part ends */
        {"p \"a\"\" b\"", "p|a\"|b"},           /* ... so the space now separates */
        {"p \"\"\"a\"", "p|\"a"},               /* three quotes: a literal quote */
        {"p a\"b c\"d e", "p|ab cd|e"},
        {"p \\\\server\\share", "p|\\\\server\\share"},
        {"p \"unterminated arg", "p|unterminated arg"},
        {"", ""},
        {"   ", ""},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        size_t argc = 99;
        char **argv = emu_split_windows_cmdline(table[i][0], &argc);
        CHECK(argv != NULL);
        if (!argv) continue;
        char joined[256] = "";
        for (size_t k = 0; k < argc; k++) {
            if (k) strcat(joined, "|");
            strcat(joined, argv[k]);
        }
        CHECK(argv[argc] == NULL);
        CHECK(strcmp(joined, table[i][1]) == 0);
        if (strcmp(joined, table[i][1]) != 0) fprintf(stderr, "  split [%s] -> [%s], want [%s]\n", table[i][0], joined, table[i][1]);
        for (size_t k = 0; k < argc; k++) free(argv[k]);
        free(argv);
    }
}

static char *read_fd(int fd) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 2) buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    close(fd);
    return buf;
}

static void test_container_command_line(void) {
    WCHAR *win = w("{\"PropertyType\":\"Emulator\",\"Settings\":{\"ContainerCommandArgs\":\"Refuse\","
                   "\"ContainerCommandLine\":\"Windows\"}}");
    CHECK(HcsModifyServiceSettings(win, NULL) == 0);
    HCS_SYSTEM sys = start_container("hostile-cmdline", NULL);
    HCS_PROCESS_INFORMATION pi;
    char *doc = NULL;
    /* no shell: ';' and '$' reach the program */
    CHECK(create_process(sys, "{\"CommandLine\":\"echo a;b $HOME \\\"c d\\\"\",\"CreateStdOutPipe\":true}", NULL,
                         &pi, NULL) == 0);
    char *out = read_fd((int)(intptr_t)pi.StdOutput);
    CHECK(strcmp(out, "a;b $HOME c d\n") == 0);
    free(out);
    CHECK((uint32_t)create_process(sys, "{\"CommandArgs\":[\"echo\",\"x\"]}", NULL, NULL, &doc) == 0x80070057u);
    CHECK(doc && strstr(doc, "CommandArgs"));
    free(doc);
    /* the switches: CommandArgs accepted, CommandLine through /bin/sh -c */
    WCHAR *set = w("{\"PropertyType\":\"Emulator\",\"Settings\":{\"ContainerCommandArgs\":\"Accept\","
                   "\"ContainerCommandLine\":\"Shell\"}}");
    CHECK(HcsModifyServiceSettings(set, NULL) == 0);
    free(set);
    CHECK(create_process(sys, "{\"CommandArgs\":[\"echo\",\"x y\"],\"CreateStdOutPipe\":true}", NULL, &pi, NULL) == 0);
    out = read_fd((int)(intptr_t)pi.StdOutput);
    CHECK(strcmp(out, "x y\n") == 0);
    free(out);
    CHECK(create_process(sys, "{\"CommandLine\":\"echo a; echo b\",\"CreateStdOutPipe\":true}", NULL, &pi, NULL) == 0);
    out = read_fd((int)(intptr_t)pi.StdOutput);
    CHECK(strcmp(out, "a\nb\n") == 0);
    free(out);
    WCHAR *reset = w("{\"PropertyType\":\"EmulatorActions\",\"Settings\":{\"Action\":\"Reset\"}}");
    CHECK(HcsModifyServiceSettings(reset, NULL) == 0);
    free(reset);
    stop_and_close(sys);

    /* a Container hosted in a Linux utility VM is a Linux guest: CommandArgs runs */
    CHECK(HcsModifyServiceSettings(win, NULL) == 0);
    free(win);
    WCHAR *vid = w("hostile-lcow-uvm");
    WCHAR *vcfg = w("{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"VirtualMachine\":{\"Chipset\":"
                    "{\"LinuxKernelDirect\":{\"KernelFilePath\":\"/k\"}}}}");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM vm = NULL;
    CHECK(HcsCreateComputeSystem(vid, vcfg, op, NULL, &vm) == 0);
    CHECK(wait_op(op, NULL) == 0);
    HcsCloseOperation(op);
    HCS_SYSTEM lc = start_container("hostile-lcow", ",\"HostingSystemId\":\"hostile-lcow-uvm\"");
    CHECK(create_process(lc, "{\"CommandArgs\":[\"echo\",\"x y\"],\"CreateStdOutPipe\":true}", NULL, &pi, NULL) == 0);
    out = read_fd((int)(intptr_t)pi.StdOutput);
    CHECK(strcmp(out, "x y\n") == 0);
    free(out);
    stop_and_close(lc);
    stop_and_close(vm);
    free(vid);
    free(vcfg);
    reset = w("{\"PropertyType\":\"EmulatorActions\",\"Settings\":{\"Action\":\"Reset\"}}");
    CHECK(HcsModifyServiceSettings(reset, NULL) == 0);
    free(reset);
}

/* ------------------------------------------------------------------ early events */

static atomic_int op_events, exit_events;
static char exit_doc[256];

static void early_cb(HCS_EVENT *ev, void *ctx) {
    (void)ctx;
    /* only the creates count: later operations (start, terminate) are routed here too and
       may be closed by the test before their event runs */
    if (ev->Type == HcsEventOperationCallback && HcsGetOperationType(ev->Operation) == HcsOperationTypeCreate) {
        CHECK(HcsGetOperationResult(ev->Operation, NULL) == 0);
        atomic_fetch_add(&op_events, 1);
    }
    if (ev->Type == HcsEventProcessExited) {
        char *d = narrow(ev->EventData);
        snprintf(exit_doc, sizeof exit_doc, "%s", d ? d : "");
        free(d);
        atomic_fetch_add(&exit_events, 1);
    }
}

static bool wait_count(atomic_int *n, int want, int ms) {
    for (int i = 0; i < ms / 5 && atomic_load(n) < want; i++) usleep(5000);
    return atomic_load(n) >= want;
}

static void test_early_events(bool on) {
    WCHAR *set = w(on ? "{\"PropertyType\":\"Emulator\",\"Settings\":{\"DeliverEarlyEvents\":true}}"
                      : "{\"PropertyType\":\"Emulator\",\"Settings\":{\"DeliverEarlyEvents\":false}}");
    CHECK(HcsModifyServiceSettings(set, NULL) == 0);
    free(set);
    atomic_store(&op_events, 0);
    atomic_store(&exit_events, 0);
    /* the documented pattern: create with a callback-less operation, then set the system
     * callback with operation callbacks, then wait for HcsEventOperationCallback */
    WCHAR *wid = w(on ? "hostile-early-on" : "hostile-early-off");
    WCHAR *cfg = w("{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{}}");
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM sys = NULL;
    CHECK(HcsCreateComputeSystem(wid, cfg, op, NULL, &sys) == 0);
    CHECK(HcsSetComputeSystemCallback(sys, HcsEventOptionEnableOperationCallbacks, NULL, early_cb) == 0);
    CHECK(wait_count(&op_events, 1, 2000) == on);
    usleep(50000);
    CHECK(atomic_load(&op_events) == (on ? 1 : 0)); /* once */
    CHECK(wait_op(op, NULL) == 0);
    HcsCloseOperation(op);
    /* a result already read is not delivered again */
    op = HcsCreateOperation(NULL, NULL);
    HCS_SYSTEM sys2 = NULL;
    WCHAR *wid2 = w(on ? "hostile-early-on2" : "hostile-early-off2");
    CHECK(HcsCreateComputeSystem(wid2, cfg, op, NULL, &sys2) == 0);
    CHECK(wait_op(op, NULL) == 0);
    CHECK(HcsSetComputeSystemCallback(sys2, HcsEventOptionEnableOperationCallbacks, NULL, early_cb) == 0);
    usleep(100000);
    CHECK(atomic_load(&op_events) == (on ? 1 : 0));
    HcsCloseComputeSystem(sys2);
    free(wid2);
    /* a process that exits before its callback is set still reports ProcessExited */
    CHECK(HcsStartComputeSystem(sys, op, NULL) == 0);
    CHECK(wait_op(op, NULL) == 0);
    HcsCloseOperation(op);
    HCS_PROCESS proc = NULL;
    CHECK(create_process(sys, "{\"CommandLine\":\"sh -c \\\"exit 7\\\"\"}", &proc, NULL, NULL) == 0);
    PWSTR st = NULL;
    CHECK(HcsWaitForProcessExit(proc, 5000, &st) == 0);
    LocalFree(st);
    CHECK(HcsSetProcessCallback(proc, HcsEventOptionNone, NULL, early_cb) == 0);
    CHECK(wait_count(&exit_events, 1, 2000) == on);
    if (on) CHECK(strstr(exit_doc, "\"ExitCode\":7") != NULL);
    HcsCloseProcess(proc);
    stop_and_close(sys);
    free(wid);
    free(cfg);
    WCHAR *reset = w("{\"PropertyType\":\"EmulatorActions\",\"Settings\":{\"Action\":\"Reset\"}}");
    CHECK(HcsModifyServiceSettings(reset, NULL) == 0);
    free(reset);
}

int main(void) {
    WCHAR *set = w("{\"PropertyType\":\"Emulator\",\"Settings\":{\"WorkerIdleMs\":20}}");
    CHECK(HcsModifyServiceSettings(set, NULL) == 0);
    free(set);
    test_split();
    test_wrong_types();
    test_surrogates();
    test_nesting();
    test_close_wakes_waiters();
    test_close_wakes_operation_waiter();
    test_container_command_line();
    test_early_events(true);
    test_early_events(false);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
