/* libFuzzer target: random sequences of API calls with random arguments against the emulator.
   Build and run: make -C src/hcsemu fuzz FUZZ_SECONDS=60 (clang, -fsanitize=fuzzer,address,undefined).

   Each input is a program: one opcode byte per call, then the bytes its arguments are drawn
   from. Arguments are live, closed and made-up handles; JSON documents generated from the bytes
   (the members the emulator reads, wrong types, deep nesting, "\u0000" in strings) or the raw
   bytes themselves; ids and paths holding lone UTF-16 surrogates. Anything that reaches the
   file system is confined: every path argument lies under a private temporary folder, and a
   process only ever runs one of a few harmless programs (true, echo, cat, sleep 0), so no input
   can delete or run anything else. Every wait has a short timeout and no hanging fault is ever
   injected, so an input cannot block the run. After each input everything is closed and the
   emulator is reset. A crash, a sanitizer report or a hang (libFuzzer's -timeout) is a bug. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hcs.h"

typedef struct rd {
    const uint8_t *p;
    size_t n, i;
} rd;

static unsigned u8(rd *r) { return r->i < r->n ? r->p[r->i++] : 0; }
static unsigned pick(rd *r, unsigned n) { return n ? u8(r) % n : 0; }

/* ------------------------------------------------------------------ text building */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* UTF-8 -> UTF-16; the bytes 0x01 and 0x02 stand for lone surrogates (U+D800, U+DC00). */
static WCHAR *wide(const char *s) {
    size_t n = strlen(s);
    WCHAR *w = malloc((n + 1) * sizeof *w);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        if (c == 1 || c == 2) {
            cp = c == 1 ? 0xD800 : 0xDC00;
            i++;
        } else if (c < 0x80) {
            cp = c;
            i++;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < n) {
            cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
            i += 2;
        } else if ((c & 0xF0) == 0xE0 && i + 2 < n) {
            cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
            i += 3;
        } else {
            cp = 0xFFFD;
            i++;
        }
        w[o++] = (WCHAR)cp;
    }
    w[o] = 0;
    return w;
}

static const char *const keys[] = {
    "SchemaVersion", "Major", "Minor", "Container", "VirtualMachine", "HostedSystem", "Owner", "HostingSystemId",
    "ShouldTerminateOnLastHandleClosed", "Storage", "Layers", "Path", "MappedDirectories", "HostPath", "Memory",
    "SizeInMB", "GuestState", "GuestStateFilePath", "RuntimeStateFilePath", "RestoreState", "SaveStateFilePath",
    "TemplateSystemId", "Chipset", "LinuxKernelDirect", "ComputeTopology", "PropertyTypes", "Queries",
    "ResourcePath", "RequestType", "Settings", "GuestRequest", "CommandLine", "CommandArgs", "WorkingDirectory",
    "Environment", "CreateStdInPipe", "CreateStdOutPipe", "CreateStdErrPipe", "EmulateConsole", "ConsoleSize",
    "Signal", "Operation", "OperationDetails", "GroupId", "SaveType", "SuspensionLevel", "HostedNotification",
    "Reason", "Type", "Ids", "Names", "Types", "Owners", "FilterType", "PathType", "Id", "Cache", "CloseHandle",
    "Handle", "Kind", "Action", "SystemId", "ProcessId", "a"};
static const char *const words[] = {
    "Memory", "Statistics", "ProcessList", "EmulatorConfiguration", "Container/Memory/SizeInMB", "Container/a/b",
    "VirtualMachine/Devices/Scsi", "Add", "Remove", "Update", "ToFile", "AsTemplate", "CtrlC", "CtrlBreak",
    "Suspend", "Save", "AbsolutePath", "VirtualSmbShareName", "StdIn", "ConsoleSize", "fuzz-0", "fuzz-1", "",
    "a\\u0000b", "/tmp", "C:\\\\x", "\\u00e9", "\\ud83d\\ude00", "x\\\"y", "SavedState"};

static void gen_str(rd *r, buf *b) {
    puts_(b, "\"");
    if (pick(r, 2)) {
        puts_(b, words[pick(r, sizeof words / sizeof *words)]);
    } else {
        unsigned n = pick(r, 12);
        for (unsigned i = 0; i < n; i++) {
            unsigned c = u8(r);
            char t[8];
            if (c < 0x20 || c == '"' || c == '\\' || c >= 0x7F) snprintf(t, sizeof t, "\\u%04x", c & 0x7F);
            else snprintf(t, sizeof t, "%c", c);
            puts_(b, t);
        }
    }
    puts_(b, "\"");
}

static void gen_json(rd *r, buf *b, int depth) {
    unsigned k = pick(r, depth > 6 ? 5 : 8);
    char t[32];
    switch (k) {
    case 0: puts_(b, "null"); break;
    case 1: puts_(b, pick(r, 2) ? "true" : "false"); break;
    case 2:
        snprintf(t, sizeof t, "%lld", (long long)(int8_t)u8(r) * (pick(r, 4) ? 1 : 100000007LL));
        puts_(b, t);
        break;
    case 3:
    case 4: gen_str(r, b); break;
    case 5: {
        puts_(b, "[");
        unsigned n = pick(r, 4);
        for (unsigned i = 0; i < n; i++) {
            if (i) puts_(b, ",");
            gen_json(r, b, depth + 1);
        }
        puts_(b, "]");
        break;
    }
    case 6: { /* very deep nesting, around the limits */
        unsigned d = 480 + pick(r, 64);
        for (unsigned i = 0; i < d; i++) puts_(b, "[");
        for (unsigned i = 0; i < d; i++) puts_(b, "]");
        break;
    }
    default: {
        puts_(b, "{");
        unsigned n = pick(r, 5);
        for (unsigned i = 0; i < n; i++) {
            if (i) puts_(b, ",");
            puts_(b, "\"");
            puts_(b, keys[pick(r, sizeof keys / sizeof *keys)]);
            puts_(b, "\":");
            gen_json(r, b, depth + 1);
        }
        puts_(b, "}");
    }
    }
}

/* A document: generated, raw bytes, or a valid-looking skeleton with generated members. */
static char *gen_doc(rd *r, int kind) {
    buf b = {0};
    puts_(&b, "");
    unsigned how = pick(r, 8);
    if (how == 0) {
        unsigned n = pick(r, 64);
        for (unsigned i = 0; i < n && r->i < r->n; i++) {
            char c = (char)u8(r);
            if (!c) c = ' ';
            put(&b, &c, 1);
        }
    } else if (how <= 2 || kind == 0) {
        gen_json(r, &b, 0);
    } else if (kind == 1) { /* a compute system configuration */
        puts_(&b, "{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},");
        puts_(&b, pick(r, 3) ? "\"Container\":" : "\"VirtualMachine\":");
        gen_json(r, &b, 1);
        puts_(&b, ",\"Owner\":");
        gen_json(r, &b, 1);
        puts_(&b, "}");
    } else { /* an object with a few known members */
        puts_(&b, "{\"");
        puts_(&b, keys[pick(r, sizeof keys / sizeof *keys)]);
        puts_(&b, "\":");
        gen_json(r, &b, 1);
        puts_(&b, ",\"");
        puts_(&b, keys[pick(r, sizeof keys / sizeof *keys)]);
        puts_(&b, "\":");
        gen_json(r, &b, 1);
        puts_(&b, "}");
    }
    return b.p;
}

/* ------------------------------------------------------------------ the sandbox */

static char root[64];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)ftw;
    if (flag == FTW_DP) rmdir(path);
    else unlink(path);
    return 0;
}

/* The sandbox goes when the run ends (not after a crash: its files may help). */
static void remove_root(void) {
    if (root[0]) nftw(root, rm_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static void init_root(void) {
    if (root[0]) return;
    snprintf(root, sizeof root, "/tmp/hcsemu-fuzz-XXXXXX");
    if (!mkdtemp(root)) abort();
    atexit(remove_root);
    char p[256];
    snprintf(p, sizeof p, "%s/runtime", root);
    mkdir(p, 0700);
    setenv("HCSEMU_RUNTIME_DIR", p, 1);
    setenv("HCSEMU_STORAGE_MODE", "copy", 1);
    /* the service half in this process, so that the sanitizers and the fuzzer's coverage see it */
    setenv("HCSEMU_SERVICE", "direct", 1);
    snprintf(p, sizeof p, "%s/src/Files/d", root);
    char q[256];
    snprintf(q, sizeof q, "%s/src", root);
    mkdir(q, 0755);
    snprintf(q, sizeof q, "%s/src/Files", root);
    mkdir(q, 0755);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/src/Files/f", root);
    int fd = open(p, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
}

/* A path under the sandbox: one of a few names, maybe with a surrogate or odd characters. */
static char *gen_path(rd *r) {
    static const char *const names[] = {"l0", "l1", "w0", "w1", "src", "exp", "x.vhdx", "s.vmrs", "fifo", "l0/Files",
                                        "w0/Merged", "w0/Merged/d", "runtime", "l0/../l1", "w0/", "./w1"};
    buf b = {0};
    puts_(&b, root);
    puts_(&b, "/");
    puts_(&b, names[pick(r, sizeof names / sizeof *names)]);
    unsigned odd = pick(r, 8);
    if (odd == 1) puts_(&b, "\x01");
    if (odd == 2) puts_(&b, "\\sub");
    return b.p;
}

static char *gen_id(rd *r) {
    static const char *const ids[] = {"fuzz-0", "fuzz-1", "fuzz-\x01", "fuzz-\x02x", "", "fuzz-0\xef\xbf\xbd"};
    return strdup(ids[pick(r, sizeof ids / sizeof *ids)]);
}

/* Process parameters: generated members around one harmless program (never a shell). */
static char *gen_params(rd *r) {
    static const char *const progs[] = {"true", "echo a \\\"b c\\\"", "cat", "sleep 0", "false", "echo \\u0000"};
    buf b = {0};
    puts_(&b, "{");
    unsigned form = pick(r, 3);
    if (form == 0) {
        puts_(&b, "\"CommandLine\":\"");
        puts_(&b, progs[pick(r, sizeof progs / sizeof *progs)]);
        puts_(&b, "\"");
    } else if (form == 1) {
        puts_(&b, "\"CommandArgs\":[\"echo\",");
        gen_str(r, &b);
        puts_(&b, "]");
    } else {
        puts_(&b, "\"CommandLine\":");
        gen_json(r, &b, 5); /* never a string the fuzzer controls: at most a word from the list */
    }
    static const char *const extras[] = {"CreateStdInPipe", "CreateStdOutPipe", "CreateStdErrPipe", "EmulateConsole",
                                         "Environment", "WorkingDirectory", "ConsoleSize"};
    unsigned n = pick(r, 4);
    for (unsigned i = 0; i < n; i++) {
        puts_(&b, ",\"");
        puts_(&b, extras[pick(r, sizeof extras / sizeof *extras)]);
        puts_(&b, "\":");
        unsigned v = pick(r, 4);
        if (v == 0) puts_(&b, "true");
        else if (v == 1) {
            puts_(&b, "\"");
            puts_(&b, root);
            puts_(&b, "\"");
        } else gen_json(r, &b, 5);
    }
    puts_(&b, "}");
    /* a string the fuzzer wrote as CommandLine would name any program: keep only the list */
    if (form == 2 && strstr(b.p, "\"CommandLine\":\"")) {
        free(b.p);
        return strdup("{\"CommandLine\":\"true\"}");
    }
    return b.p;
}

/* ------------------------------------------------------------------ handles */

enum { NH = 4 };
static HCS_SYSTEM sys[NH];
static HCS_PROCESS proc[NH];
static HCS_OPERATION ops[NH];
static void *stale[3];

static void *any_handle(rd *r, void **pool) {
    unsigned k = pick(r, 8);
    if (k < 5) return pool[k % NH];
    if (k == 5) return stale[pick(r, 3)];
    if (k == 6) return NULL;
    return (void *)(uintptr_t)(u8(r) | (u8(r) << 8) | ((uintptr_t)u8(r) << 40));
}

static HCS_OPERATION an_op(rd *r) {
    unsigned k = pick(r, NH + 1);
    if (k < NH) {
        if (!ops[k]) ops[k] = HcsCreateOperation(NULL, NULL);
        return ops[k];
    }
    return (HCS_OPERATION)stale[0];
}

static void wait_some(HCS_OPERATION op) {
    PWSTR doc = NULL;
    HcsWaitForOperationResult(op, 20, &doc);
    LocalFree(doc);
}

static void reset_all(void) {
    HCS_OPERATION op = HcsCreateOperation(NULL, NULL);
    for (int i = 0; i < NH; i++) {
        if (proc[i]) {
            HcsTerminateProcess(proc[i], op, NULL);
            wait_some(op);
            stale[1] = proc[i];
            HcsCloseProcess(proc[i]);
            proc[i] = NULL;
        }
    }
    for (int i = 0; i < NH; i++) {
        if (sys[i]) {
            HcsTerminateComputeSystem(sys[i], op, NULL);
            PWSTR doc = NULL;
            HcsWaitForOperationResult(op, 2000, &doc);
            LocalFree(doc);
            stale[2] = sys[i];
            HcsCloseComputeSystem(sys[i]);
            sys[i] = NULL;
        }
        if (ops[i]) {
            stale[0] = ops[i];
            HcsCloseOperation(ops[i]);
            ops[i] = NULL;
        }
    }
    HcsCloseOperation(op);
    WCHAR *reset = wide("{\"PropertyType\":\"EmulatorActions\",\"Settings\":{\"Action\":\"Reset\"}}");
    HcsModifyServiceSettings(reset, NULL);
    free(reset);
    /* leave no system behind under the fixed ids */
    for (int i = 0; i < 2; i++) {
        WCHAR *id = wide(i ? "fuzz-1" : "fuzz-0");
        HCS_SYSTEM s = NULL;
        if (HcsOpenComputeSystem(id, GENERIC_ALL, &s) == 0) {
            HCS_OPERATION o = HcsCreateOperation(NULL, NULL);
            HcsTerminateComputeSystem(s, o, NULL);
            PWSTR doc = NULL;
            HcsWaitForOperationResult(o, 2000, &doc);
            LocalFree(doc);
            HcsCloseOperation(o);
            HcsCloseComputeSystem(s);
        }
        free(id);
    }
}

static void close_fds(HCS_PROCESS_INFORMATION *pi) {
    if (pi->StdInput) close((int)(intptr_t)pi->StdInput);
    if (pi->StdOutput) close((int)(intptr_t)pi->StdOutput);
    if (pi->StdError) close((int)(intptr_t)pi->StdError);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    init_root();
    WCHAR *set = wide("{\"PropertyType\":\"Emulator\",\"Settings\":{\"WorkerIdleMs\":50,\"TerminateTimeoutMs\":2000,"
                      "\"ShutdownGraceMs\":50}}");
    HcsModifyServiceSettings(set, NULL);
    free(set);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_root();
    rd r = {data, size, 0};
    int steps = 0;
    while (r.i < r.n && steps++ < 24) {
        unsigned opc = u8(&r) % 26;
        HCS_OPERATION op = an_op(&r);
        char *a = NULL, *b = NULL, *c = NULL;
        WCHAR *wa = NULL, *wb = NULL, *wc = NULL;
        PWSTR out = NULL;
        switch (opc) {
        case 0: { /* create a system */
            unsigned k = pick(&r, NH);
            a = gen_id(&r);
            b = gen_doc(&r, 1);
            wa = wide(a);
            wb = wide(b);
            HCS_SYSTEM s = NULL;
            if (HcsCreateComputeSystem(wa, wb, op, NULL, &s) == 0 && s) {
                wait_some(op);
                if (sys[k]) HcsCloseComputeSystem(sys[k]);
                sys[k] = s;
            }
            break;
        }
        case 1: HcsStartComputeSystem(any_handle(&r, (void **)sys), op, NULL); wait_some(op); break;
        case 2:
        case 3: { /* properties, modify */
            a = gen_doc(&r, 2);
            wa = wide(a);
            if (opc == 2) HcsGetComputeSystemProperties(any_handle(&r, (void **)sys), op, wa);
            else HcsModifyComputeSystem(any_handle(&r, (void **)sys), op, wa, NULL);
            wait_some(op);
            break;
        }
        case 4: HcsPauseComputeSystem(any_handle(&r, (void **)sys), op, NULL); wait_some(op); break;
        case 5: HcsResumeComputeSystem(any_handle(&r, (void **)sys), op, NULL); wait_some(op); break;
        case 6: { /* save, to a path in the sandbox */
            a = gen_path(&r);
            buf d = {0};
            puts_(&d, "{\"SaveType\":\"ToFile\",\"SaveStateFilePath\":\"");
            puts_(&d, a);
            puts_(&d, "\"}");
            wb = wide(d.p);
            free(d.p);
            HcsSaveComputeSystem(any_handle(&r, (void **)sys), op, pick(&r, 2) ? wb : NULL);
            wait_some(op);
            break;
        }
        case 7: HcsTerminateComputeSystem(any_handle(&r, (void **)sys), op, NULL); wait_some(op); break;
        case 8: HcsShutDownComputeSystem(any_handle(&r, (void **)sys), op, NULL); wait_some(op); break;
        case 9: { /* create a process */
            unsigned k = pick(&r, NH);
            a = gen_params(&r);
            wa = wide(a);
            HCS_PROCESS p = NULL;
            if (HcsCreateProcess(any_handle(&r, (void **)sys), wa, op, NULL, &p) == 0 && p) {
                HCS_PROCESS_INFORMATION pi = {0};
                if (HcsWaitForOperationResultAndProcessInfo(op, 2000, &pi, &out) == 0) close_fds(&pi);
                if (proc[k]) HcsCloseProcess(proc[k]);
                proc[k] = p;
            }
            break;
        }
        case 10: { /* signal / modify / properties of a process */
            a = gen_doc(&r, 2);
            wa = wide(a);
            HCS_PROCESS p = any_handle(&r, (void **)proc);
            unsigned w = pick(&r, 4);
            if (w == 0) HcsSignalProcess(p, op, wa);
            else if (w == 1) HcsModifyProcess(p, op, wa);
            else if (w == 2) HcsGetProcessProperties(p, op, wa);
            else HcsTerminateProcess(p, op, NULL);
            wait_some(op);
            break;
        }
        case 11: HcsWaitForProcessExit(any_handle(&r, (void **)proc), pick(&r, 30), &out); break;
        case 12: HcsWaitForComputeSystemExit(any_handle(&r, (void **)sys), pick(&r, 30), &out); break;
        case 13: { /* close something */
            unsigned k = pick(&r, NH), w = pick(&r, 3);
            if (w == 0 && proc[k]) {
                stale[1] = proc[k];
                HcsCloseProcess(proc[k]);
                proc[k] = NULL;
            } else if (w == 1 && sys[k]) {
                stale[2] = sys[k];
                HcsCloseComputeSystem(sys[k]);
                sys[k] = NULL;
            } else if (w == 2 && ops[k]) {
                stale[0] = ops[k];
                HcsCloseOperation(ops[k]);
                ops[k] = NULL;
            }
            break;
        }
        case 14: { /* open by id */
            a = gen_id(&r);
            wa = wide(a);
            HCS_SYSTEM s = NULL;
            if (HcsOpenComputeSystem(wa, GENERIC_ALL, &s) == 0) HcsCloseComputeSystem(s);
            break;
        }
        case 15: { /* enumerate, service properties */
            a = gen_doc(&r, 2);
            wa = wide(a);
            if (pick(&r, 2)) {
                HcsEnumerateComputeSystems(wa, op);
                wait_some(op);
            } else {
                HcsGetServiceProperties(wa, &out);
            }
            break;
        }
        case 16: { /* switches (never a hanging fault) */
            static const char *const sets[] = {
                "{\"PropertyType\":\"Emulator\",\"Settings\":{\"ContainerCommandLine\":\"Windows\"}}",
                "{\"PropertyType\":\"Emulator\",\"Settings\":{\"ContainerCommandArgs\":\"Refuse\"}}",
                "{\"PropertyType\":\"Emulator\",\"Settings\":{\"CancelOperation\":\"Implemented\"}}",
                "{\"PropertyType\":\"Emulator\",\"Settings\":{\"NullSuccessDocuments\":true}}",
                "{\"PropertyType\":\"EmulatorFaults\",\"Settings\":{\"Faults\":[{\"Function\":\"*\",\"HResult\":"
                "\"0x80370109\",\"Probability\":0.2,\"Seed\":7}]}}",
                "{\"PropertyType\":\"EmulatorActions\",\"Settings\":{\"Action\":\"Reset\"}}",
                "{\"PropertyType\":\"EmulatorActions\",\"Settings\":{\"Action\":\"UnexpectedExit\",\"SystemId\":\"fuzz-0\"}}",
                "{\"PropertyType\":\"CpuGroup\",\"Settings\":{\"Operation\":\"CreateGroup\",\"OperationDetails\":"
                "{\"GroupId\":\"g\",\"LogicalProcessors\":[0]}}}",
            };
            wa = wide(sets[pick(&r, sizeof sets / sizeof *sets)]);
            HcsModifyServiceSettings(wa, &out);
            break;
        }
        case 17: HcsCancelOperation(op); break;
        case 18: HcsGetOperationResult(op, &out); break;
        case 19: { /* storage: import, initialize, attach, detach, destroy, export */
            a = gen_path(&r);
            b = gen_doc(&r, 2);
            wa = wide(a);
            wb = wide(b);
            buf sp = {0};
            puts_(&sp, root);
            puts_(&sp, "/src");
            wc = wide(sp.p);
            free(sp.p);
            switch (pick(&r, 7)) {
            case 0: HcsImportLayer(wa, wc, wb); break;
            case 1: HcsInitializeWritableLayer(wa, pick(&r, 2) ? wb : (wb[0] = 0, wb), NULL); break;
            case 2: HcsAttachLayerStorageFilter(wa, wb); break;
            case 3: HcsDetachLayerStorageFilter(wa); break;
            case 4: HcsDestroyLayer(wa); break;
            case 5: {
                c = gen_path(&r);
                WCHAR *wx = wide(c);
                HcsExportLayer(wa, wx, wb, NULL);
                free(wx);
                break;
            }
            default: HcsSetupBaseOSVolume(wa, wc, wb); break;
            }
            break;
        }
        case 20: { /* VHDs: a sandbox image or a made-up descriptor (only disk images are written) */
            a = gen_path(&r);
            bool ours = pick(&r, 2);
            int fd = ours ? open(a, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644) : (int)pick(&r, 64);
            HANDLE h = (HANDLE)(intptr_t)fd;
            if (pick(&r, 2)) HcsFormatWritableLayerVhd(h);
            else HcsGetLayerVhdMountPath(h, &out);
            if (ours && fd >= 0) close(fd);
            break;
        }
        case 21: { /* VM access */
            a = gen_path(&r);
            b = gen_id(&r);
            wa = wide(a);
            wb = wide(b);
            switch (pick(&r, 4)) {
            case 0: HcsGrantVmAccess(wb, wa); break;
            case 1: HcsRevokeVmAccess(wb, wa); break;
            case 2: HcsGrantVmGroupAccess(wa); break;
            default: HcsRevokeVmGroupAccess(wa); break;
            }
            break;
        }
        case 22: { /* state files */
            a = gen_path(&r);
            wa = wide(a);
            if (pick(&r, 2)) HcsCreateEmptyRuntimeStateFile(wa);
            else HcsGetProcessorCompatibilityFromSavedState(wa, (PCWSTR *)&out);
            break;
        }
        case 23: { /* a FIFO where a state file may be asked for */
            char p[256];
            snprintf(p, sizeof p, "%s/fifo", root);
            mkfifo(p, 0600);
            break;
        }
        case 24: {
            HCS_PROCESS p = NULL;
            if (HcsOpenProcess(any_handle(&r, (void **)sys), u8(&r) | (u8(&r) << 8), GENERIC_ALL, &p) == 0)
                HcsCloseProcess(p);
            break;
        }
        default: {
            HCS_PROCESS_INFORMATION pi = {0};
            if (HcsGetProcessInfo(any_handle(&r, (void **)proc), op) == 0 &&
                HcsWaitForOperationResultAndProcessInfo(op, 200, &pi, &out) == 0)
                close_fds(&pi);
            break;
        }
        }
        LocalFree(out);
        free(a);
        free(b);
        free(c);
        free(wa);
        free(wb);
        free(wc);
    }
    reset_all();
    return 0;
}
