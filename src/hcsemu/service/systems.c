/*
 * The service half: compute systems and their processes.
 *
 * One lock (svc_mu) guards every system and process record and one condition variable
 * (svc_cv) announces every state change; waits are rare and short-lived, so simplicity wins
 * over finer locking. Events are always delivered after svc_mu is released, because event
 * callbacks may call straight back into the API.
 *
 * A running system's processes share one process group, led by the first process created in
 * it. When that leader exits, its zombie is left unreaped until the system stops, so the group
 * (and its id) outlives it and can never be recycled by an unrelated process: pause, resume
 * and terminate are one killpg each, and statistics are the sum over the group in /proc. A
 * console process (EmulateConsole) leads a session of its own instead, whose group is pinned
 * and covered the same way (console_groups, group_set).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <stdatomic.h>
#include <unistd.h>

#include "cgroup.h"
#include "control.h"
#include "isolate.h"
#include "proc.h"
#include "storage.h"
#include "svc.h"
#include "system.h"

extern char **environ;

const svc_event_sink *svc_events;

void svc_emit_system_event(svc_system *s, HCS_EVENT_TYPE type, const char *data) {
    const svc_event_sink *sink = svc_events;
    if (sink) sink->system_event(s, type, data);
}

void svc_emit_process_event(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data) {
    const svc_event_sink *sink = svc_events;
    if (sink) sink->process_event(s, pid, type, data);
}


static const char *const state_names[] = {"Created", "Running", "Paused", "Stopped", "SavedAsTemplate"};

pthread_mutex_t svc_mu = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t svc_cv;
pthread_once_t svc_once = PTHREAD_ONCE_INIT;
svc_system *systems;
size_t n_systems, n_procs;

void svc_init(void) { emu_cond_init(&svc_cv); }

/* The system whose SystemExited this thread is delivering now (do_stop): a wait from inside
 * that callback sees the exit. */
static __thread const svc_system *tls_exit_sys;

/* ------------------------------------------------------------------ helpers */

HRESULT svc_fail(char **doc, HRESULT hr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
HRESULT svc_fail(char **doc, HRESULT hr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    if (doc) {
        free(*doc);
        *doc = emu_error_doc(hr, "%s", msg ? msg : "");
    }
    free(msg);
    return hr;
}

static void iso_time(uint64_t ms_epoch, char *out, size_t n) {
    time_t t = (time_t)(ms_epoch / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, n, "%s.%03uZ", base, (unsigned)(ms_epoch % 1000));
}

uint64_t now_ms_epoch(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void make_guid(char out[37]) {
    unsigned char b[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, b, sizeof b) != (ssize_t)sizeof b) {
        for (int i = 0; i < 16; i++) b[i] = (unsigned char)(rand() & 0xFF);
    }
    if (fd >= 0) close(fd);
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
             b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* The registered systems by id (a chained hash table under svc_mu), so that create and open
 * cost the same with a thousand systems as with ten. */
#define ID_BUCKETS 1024
static svc_system *by_id[ID_BUCKETS];

static size_t id_bucket(const char *id) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % ID_BUCKETS);
}

svc_system *find_locked(const char *id) {
    for (svc_system *s = by_id[id_bucket(id)]; s; s = s->id_next)
        if (s->registered && strcmp(s->id, id) == 0) return s;
    return NULL;
}

static void register_locked(svc_system *s) {
    s->registered = true;
    s->prev = NULL;
    s->next = systems;
    if (systems) systems->prev = s;
    systems = s;
    svc_system **bucket = &by_id[id_bucket(s->id)];
    s->id_next = *bucket;
    *bucket = s;
}

static void unregister_locked(svc_system *s) {
    if (!s->registered) return;
    if (s->prev) s->prev->next = s->next;
    else systems = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = NULL;
    for (svc_system **pp = &by_id[id_bucket(s->id)]; *pp; pp = &(*pp)->id_next) {
        if (*pp == s) {
            *pp = s->id_next;
            break;
        }
    }
    s->registered = false;
    n_systems--;
    s->refs--; /* the list's reference; the caller still holds one */
}

void free_proc(sproc *p) {
    if (p->in_w >= 0) close(p->in_w);
    if (p->out_r >= 0) close(p->out_r);
    if (p->err_r >= 0) close(p->err_r);
    free(p->image);
    free(p);
    n_procs--;
}

void svc_ref(svc_system *s) { atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed); }

void svc_unref(svc_system *s) {
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) return;
    while (s->procs) {
        sproc *p = s->procs;
        s->procs = p->next;
        pthread_mutex_lock(&svc_mu);
        free_proc(p);
        pthread_mutex_unlock(&svc_mu);
    }
    free(s->id);
    free(s->owner);
    free(s->exit_doc);
    free(s->workdir);
    free(s->console_groups);
    iso_stop(s->iso);
    json_free(s->iso_report);
    json_free(s->config);
    if (s->cg) cg_kill(s->cg, 1000);
    cg_destroy(s->cg);
    json_free(s->cg_report);
    free(s);
}

const char *svc_id(const svc_system *s) { return s->id; }
uint64_t svc_serial(const svc_system *s) { return s->serial; }

size_t svc_live_systems(void) {
    pthread_mutex_lock(&svc_mu);
    size_t n = n_systems;
    pthread_mutex_unlock(&svc_mu);
    return n;
}

size_t svc_live_processes(void) {
    pthread_mutex_lock(&svc_mu);
    size_t n = n_procs;
    pthread_mutex_unlock(&svc_mu);
    return n;
}

static const char *type_name(int t) { return t == T_VM ? "VirtualMachine" : "Container"; }

/* ------------------------------------------------------------------ create / open */

/* Typed reads of request members (json_want_*, json.h): a member of the wrong type, or a
 * string with U+0000 in it, fails the call with HCS_E_INVALID_JSON naming the member. */
/* No string of a document may hold U+0000: its values become C strings (paths, argv,
 * environment, ids), which would silently end at the NUL and name something else. */
HRESULT refuse_nul(const json *v, const char *what, char **doc) {
    char where[160];
    if (json_has_nul(v, where, sizeof where))
        return svc_fail(doc, HCS_E_INVALID_JSON, "%s: %s contains U+0000 (NUL), which no name or path may hold", what,
                    where);
    return S_OK;
}

/* Configurations are kept a few levels below the JSON nesting limit, so that every document
 * that wraps one (properties, PropertyResponses, a saved state) can still be written. */
#define EMU_CONFIG_MAX_DEPTH (JSON_MAX_DEPTH - 8)

static HRESULT check_path_exists(const char *p, const char *what, bool regular, char **doc) {
    if (!p || !*p) return S_OK;
    struct stat st;
    if (stat(p, &st) != 0)
        return svc_fail(doc, HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND), "%s '%s' was not found", what, p);
    if (regular && !S_ISREG(st.st_mode))
        return svc_fail(doc, E_INVALIDARG, "%s '%s' is not a regular file", what, p);
    return S_OK;
}

/* ------------------------------------------------------------------ GUID members */

/* The members of a ComputeSystem document that the schema types as Guid (found by walking
 * pyhcs.schema's ComputeSystem model for StrFormat("guid")): HCS's typed parser refuses any
 * other text there, so a made-up id fails the create or modify instead of being kept.
 * '*' stands for any key of a map or index of an array. */
static const char *const guid_members[] = {
    "Container.Storage.Layers.*.Id",
    "Container.AssignedDevices.*.InterfaceClassGuid",
    "HostedSystem.Container.Storage.Layers.*.Id",
    "HostedSystem.Container.AssignedDevices.*.InterfaceClassGuid",
    "VirtualMachine.Chipset.Uefi.SecureBootTemplateId",
    "VirtualMachine.ComputeTopology.Processor.CpuGroup.Id",
    "VirtualMachine.Devices.FlexibleIov.*.EmulatorId",
    "VirtualMachine.Devices.NetworkAdapters.*.EndpointId",
    "VirtualMachine.Devices.NetworkAdapters.*.InstanceId",
    NULL};

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" in hex digits of any case; braces are refused. */
static bool guid_text(const char *s) {
    if (strlen(s) != 36) return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i])) return false;
    }
    return true;
}

/* Checks the members that pattern (dot-separated, from *pattern on) names under node;
 * where names the node for the message. */
static HRESULT check_guid_pattern(const json *node, const char *pattern, const char *where, char **doc) {
    if (!node) return S_OK;
    if (!*pattern) {
        if (json_typeof(node) == JSON_NULL) return S_OK;
        const char *text = json_str(node);
        if (!text || !guid_text(text))
            return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, no braces), "
                        "got %.60s", where, text ? text : "a non-string");
        return S_OK;
    }
    const char *dot = strchr(pattern, '.');
    size_t len = dot ? (size_t)(dot - pattern) : strlen(pattern);
    const char *rest = dot ? dot + 1 : pattern + len;
    char sub[256];
    if (len == 1 && *pattern == '*') {
        int t = json_typeof(node);
        if (t != JSON_OBJECT && t != JSON_ARRAY) return S_OK; /* the shape is checked elsewhere */
        for (size_t i = 0; i < json_len(node); i++) {
            if (t == JSON_OBJECT) snprintf(sub, sizeof sub, "%s.%.60s", where, json_key_at(node, i));
            else snprintf(sub, sizeof sub, "%s[%zu]", where, i);
            HRESULT hr = check_guid_pattern(json_at(node, i), rest, sub, doc);
            if (FAILED(hr)) return hr;
        }
        return S_OK;
    }
    if (json_typeof(node) != JSON_OBJECT) return S_OK;
    char key[64];
    if (len >= sizeof key) return S_OK;
    memcpy(key, pattern, len);
    key[len] = 0;
    snprintf(sub, sizeof sub, "%s%s%s", where, *where ? "." : "", key);
    return check_guid_pattern(json_get(node, key), rest, sub, doc);
}

static HRESULT check_guid_members(const json *cfg, char **doc) {
    for (size_t i = 0; guid_members[i]; i++) {
        HRESULT hr = check_guid_pattern(cfg, guid_members[i], "", doc);
        if (FAILED(hr)) return hr;
    }
    return S_OK;
}

/* The same check on a modify's Settings: the resource path (segments separated by '/')
 * places the settings in the document, and each pattern it is a prefix of goes on inside. */
static HRESULT check_guid_members_at(const char *path, const json *settings, char **doc) {
    if (!path || !settings) return S_OK;
    for (size_t i = 0; guid_members[i]; i++) {
        const char *pat = guid_members[i], *seg = path;
        bool match = true;
        while (*seg && match) {
            const char *slash = strchr(seg, '/');
            size_t sl = slash ? (size_t)(slash - seg) : strlen(seg);
            const char *dot = strchr(pat, '.');
            size_t pl = dot ? (size_t)(dot - pat) : strlen(pat);
            if (!*pat) match = false; /* the path goes below the member */
            else if (!(pl == 1 && *pat == '*') && (pl != sl || strncmp(pat, seg, sl) != 0)) match = false;
            pat = dot ? dot + 1 : pat + pl;
            seg = slash ? slash + 1 : seg + sl;
        }
        if (!match) continue;
        HRESULT hr = check_guid_pattern(settings, pat, path, doc);
        if (FAILED(hr)) return hr;
    }
    return S_OK;
}

/* ------------------------------------------------------------------ VM devices */

/* What a VM's disk attachments must be, as the VM worker opens them: a VHD ("conectix" in
 * the footer of the last 512 bytes, and in the copy at offset 0 of a dynamic disk), a VHDX
 * ("vhdxfile" at offset 0), or the emulator's own image (HcsFormatWritableLayerVhd:
 * "HCSEMUVD" at offset 0); an Iso attachment an ISO 9660 image ("CD001" at 0x8001). */
typedef enum { IMG_DISK, IMG_ISO } image_kind;

static bool read_at(int fd, off_t off, char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, off + (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += (size_t)r;
    }
    return true;
}

static HRESULT check_image(const char *p, image_kind kind, const char *ctx, char **doc) {
    if (!p || !*p) return svc_fail(doc, HCS_E_INVALID_JSON, "%s.Path is required", ctx);
    struct stat st;
    if (stat(p, &st) != 0)
        return svc_fail(doc, HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND), "%s: the file '%s' was not found", ctx, p);
    if (!S_ISREG(st.st_mode))
        return svc_fail(doc, ERROR_VIRTDISK_NOT_VIRTUAL_DISK, "%s: '%s' is not a regular file", ctx, p);
    int fd = emu_open_regular(p, O_RDONLY, 0);
    if (fd < 0) return svc_fail(doc, E_ACCESSDENIED, "%s: '%s' could not be opened", ctx, p);
    char head[8], foot[8], iso[5];
    bool ok;
    if (kind == IMG_ISO) {
        ok = read_at(fd, 0x8001, iso, 5) && memcmp(iso, "CD001", 5) == 0;
    } else {
        bool h = read_at(fd, 0, head, 8);
        ok = h && (memcmp(head, "vhdxfile", 8) == 0 || memcmp(head, "conectix", 8) == 0 ||
                   memcmp(head, "HCSEMUVD", 8) == 0);
        if (!ok && st.st_size >= 512) ok = read_at(fd, st.st_size - 512, foot, 8) && memcmp(foot, "conectix", 8) == 0;
    }
    close(fd);
    if (!ok)
        return svc_fail(doc, ERROR_VIRTDISK_NOT_VIRTUAL_DISK, "%s: '%s' is not %s", ctx, p,
                    kind == IMG_ISO ? "an ISO image" : "a virtual disk (VHD or VHDX)");
    return S_OK;
}

/* One Scsi attachment. ExtensibleVirtualDisk paths (evd://) name a provider's volume, not a
 * file; PassThru names a host disk: neither is a file to look at. */
static HRESULT check_attachment(const json *a, const char *ctx, char **doc) {
    if (json_typeof(a) != JSON_OBJECT) return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be a JSON object", ctx);
    const char *type = "VirtualDisk", *path = NULL;
    WANT(str, a, ctx, "Type", &type);
    WANT(str, a, ctx, "Path", &path);
    if (!type) type = "VirtualDisk";
    if (strcmp(type, "ExtensibleVirtualDisk") == 0 || strcmp(type, "PassThru") == 0) return S_OK;
    if (strcmp(type, "VirtualDisk") != 0 && strcmp(type, "Iso") != 0)
        return svc_fail(doc, HCS_E_INVALID_JSON, "%s.Type '%s' is not an attachment type", ctx, type);
    return check_image(path, strcmp(type, "Iso") == 0 ? IMG_ISO : IMG_DISK, ctx, doc);
}

static HRESULT check_scsi_controller(const json *c, const char *ctx, char **doc) {
    if (json_typeof(c) != JSON_OBJECT) return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be a JSON object", ctx);
    const json *atts = NULL;
    WANT(obj, c, ctx, "Attachments", &atts);
    HRESULT hr = S_OK;
    for (size_t i = 0; i < json_len(atts) && !FAILED(hr); i++) {
        char sub[160];
        snprintf(sub, sizeof sub, "%s.Attachments.%.40s", ctx, json_key_at(atts, i));
        hr = check_attachment(json_at(atts, i), sub, doc);
    }
    return hr;
}

static HRESULT check_pmem_device(const json *d, const char *ctx, char **doc) {
    if (json_typeof(d) != JSON_OBJECT) return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be a JSON object", ctx);
    const char *path = NULL;
    WANT(str, d, ctx, "HostPath", &path);
    return check_image(path, IMG_DISK, ctx, doc);
}

/* A share (VirtualSmb, Plan9) exports a host directory, or for a single-file share a file. */
static HRESULT check_share(const json *sh, const char *ctx, char **doc) {
    if (json_typeof(sh) != JSON_OBJECT) return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be a JSON object", ctx);
    const char *path = NULL;
    WANT(str, sh, ctx, "Path", &path);
    if (!path || !*path) return svc_fail(doc, HCS_E_INVALID_JSON, "%s.Path is required", ctx);
    struct stat st;
    if (stat(path, &st) != 0)
        return svc_fail(doc, HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND), "%s: '%s' was not found", ctx, path);
    return S_OK;
}

static HRESULT check_shares(const json *shares, const char *ctx, char **doc) {
    if (json_typeof(shares) == JSON_OBJECT) return check_share(shares, ctx, doc);
    if (json_typeof(shares) != JSON_ARRAY) return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be an array", ctx);
    HRESULT hr = S_OK;
    for (size_t i = 0; i < json_len(shares) && !FAILED(hr); i++) {
        char sub[96];
        snprintf(sub, sizeof sub, "%s[%zu]", ctx, i);
        hr = check_share(json_at(shares, i), sub, doc);
    }
    return hr;
}

/* The devices of a VM configuration whose files the VM worker opens at start. */
static HRESULT check_vm_devices(const json *vm, char **doc) {
    const json *dev = json_get(vm, "Devices");
    if (!dev) return S_OK;
    if (json_typeof(dev) != JSON_OBJECT) return svc_fail(doc, HCS_E_INVALID_JSON, "VirtualMachine.Devices must be a JSON object");
    const json *scsi = NULL, *pmem = NULL, *smb = NULL, *p9 = NULL;
    WANT(obj, dev, "VirtualMachine.Devices", "Scsi", &scsi);
    WANT(obj, dev, "VirtualMachine.Devices", "VirtualPMem.Devices", &pmem);
    WANT(arr, dev, "VirtualMachine.Devices", "VirtualSmb.Shares", &smb);
    WANT(arr, dev, "VirtualMachine.Devices", "Plan9.Shares", &p9);
    HRESULT hr = S_OK;
    char ctx[160];
    for (size_t i = 0; i < json_len(scsi) && !FAILED(hr); i++) {
        snprintf(ctx, sizeof ctx, "VirtualMachine.Devices.Scsi.%.40s", json_key_at(scsi, i));
        hr = check_scsi_controller(json_at(scsi, i), ctx, doc);
    }
    for (size_t i = 0; i < json_len(pmem) && !FAILED(hr); i++) {
        snprintf(ctx, sizeof ctx, "VirtualMachine.Devices.VirtualPMem.Devices.%.40s", json_key_at(pmem, i));
        hr = check_pmem_device(json_at(pmem, i), ctx, doc);
    }
    if (!FAILED(hr) && smb) hr = check_shares(smb, "VirtualMachine.Devices.VirtualSmb.Shares", doc);
    if (!FAILED(hr) && p9) hr = check_shares(p9, "VirtualMachine.Devices.Plan9.Shares", doc);
    return hr;
}

/* A hot-add (modify Add/Update) of a device: the same checks as at create, on the settings of
 * the resource path. Paths of other resources are not devices with files. */
static HRESULT check_device_modify(const char *path, const json *settings, char **doc) {
    static const char scsi[] = "VirtualMachine/Devices/Scsi/";
    static const char pmem[] = "VirtualMachine/Devices/VirtualPMem/Devices/";
    if (!path || !settings) return S_OK;
    if (strncmp(path, scsi, sizeof scsi - 1) == 0) {
        const char *rest = path + sizeof scsi - 1;
        const char *slash = strchr(rest, '/');
        if (!slash) return check_scsi_controller(settings, path, doc);
        if (strncmp(slash, "/Attachments/", 13) == 0 && slash[13] && !strchr(slash + 13, '/'))
            return check_attachment(settings, path, doc);
        return S_OK;
    }
    if (strncmp(path, pmem, sizeof pmem - 1) == 0 && !strchr(path + sizeof pmem - 1, '/'))
        return check_pmem_device(settings, path, doc);
    if (strcmp(path, "VirtualMachine/Devices/VirtualSmb/Shares") == 0 ||
        strcmp(path, "VirtualMachine/Devices/Plan9/Shares") == 0)
        return check_shares(settings, path, doc);
    return S_OK;
}

#define VMRS_MAGIC "HCSEMU-VMRS 1\n"

/* Whether path is a runtime state file that Save wrote (not an empty one). */
static bool is_saved_state(const char *path) {
    int fd = emu_open_regular(path, O_RDONLY, 0);
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        return false;
    }
    char head[sizeof VMRS_MAGIC];
    size_t n = fread(head, 1, sizeof head - 1, f);
    head[n] = 0;
    bool ok = strcmp(head, VMRS_MAGIC) == 0;
    char *body = NULL;
    size_t cap = 0;
    ok = ok && getdelim(&body, &cap, 0, f) > 0;
    fclose(f);
    json *doc = ok ? json_parse(body, strlen(body), NULL, 0) : NULL;
    free(body);
    const char *kind = json_str(json_get(doc, "Kind"));
    ok = kind && strcmp(kind, "SavedState") == 0;
    json_free(doc);
    return ok;
}

/* The members of a Container body (a Container document's, or a HostedSystem's) that the
 * service reads, here and later (cgroup.c: limits, isolate.c: mappings and host name, with
 * lenient accessors), typed once so that a wrong type is an error naming it, never a default. */
static HRESULT check_container_body(const json *c, const char *ctx, bool files, char **doc) {
    const char *str = NULL;
    bool b;
    int64_t i64;
    uint64_t u64; /* Processor.Count is a UInt32 in the schema, Maximum and Weight Int64 */
    const json *layers = NULL, *dirs = NULL;
    HRESULT hr = S_OK;
    WANT(str, c, ctx, "Storage.Path", &str);
    WANT(arr, c, ctx, "Storage.Layers", &layers);
    WANT(arr, c, ctx, "MappedDirectories", &dirs);
    WANT(int64, c, ctx, "Memory.SizeInMB", &i64);
    WANT(uint64, c, ctx, "Processor.Count", &u64);
    WANT(int64, c, ctx, "Processor.Maximum", &i64);
    WANT(int64, c, ctx, "Processor.Weight", &i64);
    WANT(str, c, ctx, "GuestOs.HostName", &str);
    for (size_t i = 0; i < json_len(layers) && !FAILED(hr); i++) {
        char sub[96];
        const char *p = NULL;
        snprintf(sub, sizeof sub, "%s.Storage.Layers[%zu]", ctx, i);
        if (json_typeof(json_at(layers, i)) != JSON_OBJECT)
            return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be a JSON object", sub);
        WANT(str, json_at(layers, i), sub, "Path", &p);
        if (files) hr = check_path_exists(p, "Layer", false, doc);
    }
    for (size_t i = 0; i < json_len(dirs) && !FAILED(hr); i++) {
        char sub[96];
        const char *p = NULL;
        const json *d = json_at(dirs, i);
        snprintf(sub, sizeof sub, "%s.MappedDirectories[%zu]", ctx, i);
        if (json_typeof(d) != JSON_OBJECT) return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be a JSON object", sub);
        WANT(str, d, sub, "ContainerPath", &str);
        WANT(bool, d, sub, "ReadOnly", &b);
        WANT(str, d, sub, "HostPath", &p);
        if (files) hr = check_path_exists(p, "Mapped directory", false, doc);
    }
    return hr;
}

/* A VirtualMachine body's members read later by cgroup.c (processor limits) and isolate.c
 * (host name) with lenient accessors. */
static HRESULT check_vm_body(const json *vm, char **doc) {
    const char *str = NULL;
    int64_t i64;
    uint64_t u64; /* the schema's UInt64 and UInt32 members */
    WANT(int64, vm, "VirtualMachine", "ComputeTopology.Memory.SizeInMB", &i64);
    WANT(uint64, vm, "VirtualMachine", "ComputeTopology.Processor.Count", &u64);
    WANT(uint64, vm, "VirtualMachine", "ComputeTopology.Processor.Limit", &u64);
    WANT(uint64, vm, "VirtualMachine", "ComputeTopology.Processor.Weight", &u64);
    WANT(uint64, vm, "VirtualMachine", "ComputeTopology.Processor.Limits.Limit", &u64);
    WANT(uint64, vm, "VirtualMachine", "ComputeTopology.Processor.Limits.Weight", &u64);
    WANT(str, vm, "VirtualMachine", "GuestOs.HostName", &str);
    return S_OK;
}

/* The members typed at create, checked again on a configuration a modify produced (the
 * files are not looked at again: a modify's own checks cover what it adds). */
static HRESULT check_config_types(const json *cfg, char **doc) {
    const json *c = json_get(cfg, "Container"), *vm = json_get(cfg, "VirtualMachine");
    const json *hc = json_get(json_get(cfg, "HostedSystem"), "Container");
    HRESULT hr = S_OK;
    if (json_typeof(vm) == JSON_OBJECT) hr = check_vm_body(vm, doc);
    if (!FAILED(hr) && json_typeof(c) == JSON_OBJECT) hr = check_container_body(c, "Container", false, doc);
    if (!FAILED(hr) && json_typeof(hc) == JSON_OBJECT) hr = check_container_body(hc, "HostedSystem.Container", false, doc);
    return hr;
}

/* Every member the emulator reads from a configuration, checked for its type up front, so the
 * code that uses them later meets only the types it expects. */
static HRESULT validate_config(const json *cfg, int *type, char **doc) {
    if (json_typeof(cfg) != JSON_OBJECT)
        return svc_fail(doc, HCS_E_INVALID_JSON, "The compute system configuration must be a JSON object");
    HRESULT hr = refuse_nul(cfg, "The compute system configuration", doc);
    if (FAILED(hr)) return hr;
    if (json_depth(cfg, EMU_CONFIG_MAX_DEPTH) > EMU_CONFIG_MAX_DEPTH)
        return svc_fail(doc, HCS_E_INVALID_JSON, "The compute system configuration is nested deeper than %d levels",
                    EMU_CONFIG_MAX_DEPTH);
    const json *sv = json_get(cfg, "SchemaVersion");
    int64_t major, minor;
    if (!sv) return svc_fail(doc, HCS_E_INVALID_JSON, "SchemaVersion is required");
    if (json_typeof(sv) != JSON_OBJECT || !json_int64(json_get(sv, "Major"), &major) ||
        !json_int64(json_get(sv, "Minor"), &minor))
        return svc_fail(doc, HCS_E_INVALID_JSON, "SchemaVersion must be an object with integer Major and Minor");
    if (major != (int64_t)g_settings.schema_major || minor < 0 || minor > (int64_t)g_settings.schema_minor)
        return svc_fail(doc, HCS_E_INVALID_JSON, "Schema version %lld.%lld is not supported (this host supports %u.0 to %u.%u)",
                    (long long)major, (long long)minor, g_settings.schema_major, g_settings.schema_major,
                    g_settings.schema_minor);
    const json *c = json_get(cfg, "Container"), *vm = json_get(cfg, "VirtualMachine"),
               *hs = json_get(cfg, "HostedSystem");
    int count = (c != NULL) + (vm != NULL) + (hs != NULL);
    if (count != 1)
        return svc_fail(doc, HCS_E_INVALID_JSON,
                    "Exactly one of Container, VirtualMachine and HostedSystem must be set (found %d)", count);
    const json *body = c ? c : vm ? vm : hs;
    if (json_typeof(body) != JSON_OBJECT)
        return svc_fail(doc, HCS_E_INVALID_JSON, "%s must be a JSON object", c ? "Container" : vm ? "VirtualMachine" : "HostedSystem");
    *type = c ? T_CONTAINER : vm ? T_VM : T_HOSTED;
    const char *str = NULL;
    bool b;
    const json *o = NULL;
    WANT(str, cfg, NULL, "Owner", &str);
    WANT(str, cfg, NULL, "HostingSystemId", &str);
    WANT(bool, cfg, NULL, "ShouldTerminateOnLastHandleClosed", &b);
    WANT(str, cfg, NULL, "HostName", &str);
    hr = check_guid_members(cfg, doc);
    if (FAILED(hr)) return hr;
    if (vm) {
        const char *gsf = NULL, *rsf = NULL, *ssf = NULL;
        WANT(str, vm, "VirtualMachine", "GuestState.GuestStateFilePath", &gsf);
        WANT(str, vm, "VirtualMachine", "GuestState.RuntimeStateFilePath", &rsf);
        WANT(str, vm, "VirtualMachine", "RestoreState.SaveStateFilePath", &ssf);
        WANT(str, vm, "VirtualMachine", "RestoreState.TemplateSystemId", &str);
        WANT(obj, vm, "VirtualMachine", "Chipset", &o);
        WANT(obj, vm, "VirtualMachine", "GuestConnection", &o);
        hr = check_vm_body(vm, doc);
        if (!FAILED(hr)) hr = check_path_exists(gsf, "Guest state file", true, doc);
        if (!FAILED(hr)) hr = check_path_exists(rsf, "Runtime state file", true, doc);
        if (!FAILED(hr)) hr = check_path_exists(ssf, "Saved state file", true, doc);
        if (ssf && *ssf && !FAILED(hr) && !is_saved_state(ssf))
            hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_INVALID_DATA), "'%s' holds no saved state to restore", ssf);
        if (!FAILED(hr)) hr = check_vm_devices(vm, doc);
    }
    const json *hc = NULL;
    if (hs) WANT(obj, hs, "HostedSystem", "Container", &hc);
    if (!FAILED(hr) && c) hr = check_container_body(c, "Container", true, doc);
    if (!FAILED(hr) && hc) hr = check_container_body(hc, "HostedSystem.Container", true, doc);
    return hr;
}

HRESULT svc_create(const char *id, const char *config, svc_system **out, char **doc) {
    pthread_once(&svc_once, svc_init);
    *out = NULL;
    char err[256];
    json *cfg = json_parse(config, strlen(config), err, sizeof err);
    if (!cfg) return svc_fail(doc, HCS_E_INVALID_JSON, "The compute system configuration is not valid JSON: %s", err);
    int type = T_CONTAINER;
    HRESULT hr = validate_config(cfg, &type, doc);
    const char *hosting = json_str(json_get(cfg, "HostingSystemId"));
    if (FAILED(hr)) {
        json_free(cfg);
        return hr;
    }
    svc_system *s = calloc(1, sizeof *s);
    if (!s) {
        json_free(cfg);
        return E_OUTOFMEMORY;
    }
    s->refs = 2; /* the list's and the caller's */
    s->id = strdup(id);
    const char *owner = json_str(json_get(cfg, "Owner"));
    s->owner = owner ? strdup(owner) : NULL;
    s->type = type;
    s->config = cfg;
    bool term = false;
    json_bool(json_get(cfg, "ShouldTerminateOnLastHandleClosed"), &term);
    s->terminate_on_close = term;
    make_guid(s->runtime_id);
    snprintf(s->marker, sizeof s->marker, "HCSEMU_SYSTEM=%d:%s", (int)getpid(), s->runtime_id);
    s->state = ST_CREATED;
    if (type == T_CONTAINER) {
        /* A container whose writable layer has the storage filter attached runs in the
         * merged view of its layers. */
        const json *layers = json_get(json_get(json_get(cfg, "Container"), "Storage"), "Layers");
        const char *rw = json_str(json_get(json_get(json_get(cfg, "Container"), "Storage"), "Path"));
        if (rw) s->workdir = storage_merged_view_path(rw);
        for (size_t i = 0; !s->workdir && i < json_len(layers); i++) {
            const char *p = json_str(json_get(json_at(layers, i), "Path"));
            if (p) s->workdir = storage_merged_view_path(p);
        }
    }
    pthread_mutex_lock(&svc_mu);
    const char *template_id = json_str(json_get(json_get(json_get(cfg, "VirtualMachine"), "RestoreState"), "TemplateSystemId"));
    if (template_id) {
        svc_system *t = find_locked(template_id);
        if (!t || t->state != ST_SAVED_AS_TEMPLATE) {
            pthread_mutex_unlock(&svc_mu);
            HRESULT thr = svc_fail(doc, t ? HCS_E_INVALID_STATE : HCS_E_SYSTEM_NOT_FOUND, "The template system '%s' %s",
                               template_id, t ? "was not saved as a template" : "does not exist");
            s->refs = 1;
            svc_unref(s); /* template_id pointed into the configuration freed here */
            return thr;
        }
    }
    if (hosting && !find_locked(hosting)) {
        pthread_mutex_unlock(&svc_mu);
        /* the message first: hosting points into the configuration that unref frees */
        svc_fail(doc, HCS_E_SYSTEM_NOT_FOUND, "The hosting system '%s' does not exist", hosting);
        s->refs = 1;
        svc_unref(s);
        return HCS_E_SYSTEM_NOT_FOUND;
    }
    if (find_locked(id)) {
        pthread_mutex_unlock(&svc_mu);
        s->refs = 1;
        svc_unref(s);
        return svc_fail(doc, HCS_E_SYSTEM_ALREADY_EXISTS, "A compute system with the id '%s' already exists", id);
    }
    static uint64_t next_serial;
    s->serial = ++next_serial;
    register_locked(s);
    n_systems++;
    pthread_mutex_unlock(&svc_mu);
    *out = s;
    return S_OK;
}

HRESULT svc_open(const char *id, svc_system **out) {
    pthread_once(&svc_once, svc_init);
    pthread_mutex_lock(&svc_mu);
    svc_system *s = id ? find_locked(id) : NULL;
    if (s) s->refs++;
    pthread_mutex_unlock(&svc_mu);
    *out = s;
    return s ? S_OK : HCS_E_SYSTEM_NOT_FOUND;
}

bool svc_runtime_id(const char *id, char out[37]) {
    pthread_once(&svc_once, svc_init);
    pthread_mutex_lock(&svc_mu);
    svc_system *s = id ? find_locked(id) : NULL;
    if (s) memcpy(out, s->runtime_id, 37);
    pthread_mutex_unlock(&svc_mu);
    return s != NULL;
}

void svc_handle_opened(svc_system *s) {
    pthread_mutex_lock(&svc_mu);
    s->handles++;
    pthread_mutex_unlock(&svc_mu);
}

static void stop_job(void *arg);

typedef struct sweep {
    int min_pid;
    char marker[96];
} sweep;

static void sweep_job(void *arg) {
    sweep *w = arg;
    proc_kill_marked(w->marker, false, SIGKILL, w->min_pid);
    free(w);
}

/* Processes of the system that left its group (setsid) are found by their environment marker;
 * a scan of /proc, so it runs off the stop's critical path (the group itself is already dead). */
static void sweep_marked(const char *marker, int first_pid) {
    sweep *w = malloc(sizeof *w);
    if (!w) return;
    w->min_pid = first_pid;
    snprintf(w->marker, sizeof w->marker, "%s", marker);
    if (!emu_submit(sweep_job, w)) sweep_job(w);
}

void svc_handle_closed(svc_system *s) {
    pthread_mutex_lock(&svc_mu);
    bool last = --s->handles == 0;
    bool terminate = last && s->terminate_on_close && s->state != ST_STOPPED && !s->stopping;
    if (last && s->state == ST_STOPPED) unregister_locked(s);
    if (terminate) s->refs++; /* for the job */
    pthread_mutex_unlock(&svc_mu);
    if (terminate && !emu_submit(stop_job, s)) stop_job(s);
}

/* ------------------------------------------------------------------ process groups */

group_set groups_of_locked(const svc_system *s) {
    group_set g = {calloc(s->n_console_groups + 1, sizeof(int)), 0};
    if (!g.id) return g;
    if (s->pgid > 0) g.id[g.n++] = s->pgid;
    for (size_t i = 0; i < s->n_console_groups; i++) g.id[g.n++] = s->console_groups[i];
    return g;
}

void group_set_free(group_set *g) {
    free(g->id);
    g->id = NULL;
    g->n = 0;
}

void groups_signal(const group_set *g, int sig) {
    for (size_t i = 0; i < g->n; i++) killpg(g->id[i], sig);
}

bool groups_empty(const group_set *g) {
    for (size_t i = 0; i < g->n; i++)
        if (!proc_group_empty(g->id[i])) return false;
    return true;
}

bool add_console_group_locked(svc_system *s, int pgid) {
    if (s->n_console_groups == s->cap_console_groups) {
        size_t cap = s->cap_console_groups ? s->cap_console_groups * 2 : 4;
        int *n = realloc(s->console_groups, cap * sizeof *n);
        if (!n) return false;
        s->console_groups = n;
        s->cap_console_groups = cap;
    }
    s->console_groups[s->n_console_groups++] = pgid;
    return true;
}

size_t list_system_procs_locked(const svc_system *s, proc_stat *out, size_t cap) {
    group_set g = groups_of_locked(s);
    size_t n = 0;
    for (size_t i = 0; i < g.n && n < cap; i++) n += proc_list_group(g.id[i], out + n, cap - n);
    group_set_free(&g);
    return n;
}

/* ------------------------------------------------------------------ stopping */

static bool all_exits_delivered_locked(svc_system *s) {
    for (sproc *p = s->procs; p; p = p->next)
        if (!p->exit_delivered) return false;
    return true;
}

/* The bug check a requested guest crash reports: MANUALLY_INITIATED_CRASH and four zeros. */
static json *crash_parameters(void) {
    json *params = json_new_array();
    json_append(params, json_new_uint(0xE2));
    for (int i = 0; i < 4; i++) json_append(params, json_new_uint(0));
    return params;
}

/* A guest crash is attributed by a GuestCrash record (SystemExitDetail has no crash value),
 * next to the SystemExit record saying the guest ended unexpectedly. */
static char *exit_status_doc(HRESULT status, const char *exit_type, const char *detail, const char *initiator,
                             bool guest_crash) {
    json *d = json_new_object();
    json_set(d, "Status", json_new_int((int32_t)emu_public_hr(status)));
    json_set(d, "ExitType", json_new_string(exit_type));
    json *attr = json_new_array();
    json *a = json_new_object();
    json *se = json_new_object();
    json_set(se, "Detail", json_new_string(detail));
    json_set(se, "Initiator", json_new_string(initiator));
    json_set(a, "SystemExit", se);
    json_append(attr, a);
    if (guest_crash) {
        json *c = json_new_object();
        json *gc = json_new_object();
        json_set(gc, "CrashParameters", crash_parameters());
        json_set(c, "GuestCrash", gc);
        json_append(attr, c);
    }
    json_set(d, "Attribution", attr);
    char *out = json_dump(d);
    json_free(d);
    return out;
}

typedef enum { STOP_GRACEFUL, STOP_FORCED, STOP_UNEXPECTED, STOP_CRASH } stop_kind;

/* Ends the system's processes and moves it to Stopped. Blocking: runs on a worker.
 * Returns S_OK, HCS_E_SYSTEM_ALREADY_STOPPED, HCS_E_INVALID_STATE or (for a graceful stop
 * that a terminate overtook) HCS_E_TERMINATED. */
static HRESULT do_stop(svc_system *s, stop_kind kind, char **doc) {
    pthread_mutex_lock(&svc_mu);
    if (s->state == ST_STOPPED) {
        pthread_mutex_unlock(&svc_mu);
        return svc_fail(doc, HCS_E_SYSTEM_ALREADY_STOPPED, "The compute system '%s' has already stopped", s->id);
    }
    if (kind == STOP_GRACEFUL && (s->state == ST_CREATED || s->state == ST_PAUSED || s->state == ST_SAVED_AS_TEMPLATE)) {
        int st = s->state;
        pthread_mutex_unlock(&svc_mu);
        return svc_fail(doc, HCS_E_INVALID_STATE, "A %s compute system cannot be shut down", state_names[st]);
    }
    if (s->stopping) {
        if (kind == STOP_GRACEFUL) {
            pthread_mutex_unlock(&svc_mu);
            return svc_fail(doc, HCS_E_SYSTEM_ALREADY_STOPPED, "The compute system '%s' is already stopping", s->id);
        }
        /* A terminate overtakes a shutdown in progress: escalate, then wait for Stopped. */
        s->force_stop = true;
        pthread_cond_broadcast(&svc_cv);
        while (s->state != ST_STOPPED) pthread_cond_wait(&svc_cv, &svc_mu);
        pthread_mutex_unlock(&svc_mu);
        return S_OK;
    }
    s->stopping = true;
    group_set gs = groups_of_locked(s);
    int pg = gs.n > 0 ? gs.id[0] : 0; /* > 0: the system has processes */
    for (size_t i = 1; i < gs.n; i++)
        if (gs.id[i] < pg) pg = gs.id[i]; /* the oldest: where the marker sweep starts */
    pthread_mutex_unlock(&svc_mu);

    bool graceful_done = kind == STOP_GRACEFUL && pg <= 0 && !g_settings.ignore_shutdown;
    if (kind == STOP_GRACEFUL && pg <= 0 && g_settings.ignore_shutdown) {
        pthread_mutex_lock(&svc_mu); /* a guest that ignores shutdown: only a terminate ends it */
        while (!s->force_stop) pthread_cond_wait(&svc_cv, &svc_mu);
        pthread_mutex_unlock(&svc_mu);
    }
    if (kind == STOP_GRACEFUL && pg > 0) {
        if (!g_settings.ignore_shutdown) groups_signal(&gs, SIGTERM);
        uint64_t deadline = emu_now_ms() + g_settings.shutdown_grace_ms;
        pthread_mutex_lock(&svc_mu);
        for (;;) {
            if (s->force_stop) break;
            if (!g_settings.ignore_shutdown && groups_empty(&gs)) {
                graceful_done = true;
                break;
            }
            if (!g_settings.ignore_shutdown && emu_now_ms() >= deadline) break;
            struct timespec ts;
            emu_deadline(&ts, 10);
            pthread_cond_timedwait(&svc_cv, &svc_mu, &ts);
        }
        pthread_mutex_unlock(&svc_mu);
    }
    if (pg > 0) {
        /* SIGKILL also ends stopped (paused) processes; processes that left the group
         * (setsid) are found by the marker in their environment. */
        groups_signal(&gs, SIGKILL);
        iso_kill(s->iso); /* every process of its PID namespace, setsid or not */
        cg_kill(s->cg, g_settings.terminate_timeout_ms); /* everything in it, setsid or not */
        sweep_marked(s->marker, pg);
        uint64_t deadline = emu_now_ms() + g_settings.terminate_timeout_ms;
        pthread_mutex_lock(&svc_mu);
        while (!all_exits_delivered_locked(s) && emu_now_ms() < deadline) {
            struct timespec ts;
            emu_deadline(&ts, 5);
            pthread_cond_timedwait(&svc_cv, &svc_mu, &ts);
        }
        pthread_mutex_unlock(&svc_mu);
        /* Every process we started has been seen to exit, the leader included: reap its
         * zombie. From here on only signal 0 goes to the group id, so even a recycled id
         * could not be hurt; members left (grandchildren) keep the id pinned meanwhile. */
        for (size_t i = 0; i < gs.n; i++) proc_reap(gs.id[i]);
        while (!groups_empty(&gs) && emu_now_ms() < deadline) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    group_set_free(&gs);
    pthread_mutex_lock(&svc_mu);
    struct iso_system *iso = s->iso;
    s->iso = NULL;
    pthread_mutex_unlock(&svc_mu);
    iso_stop(iso); /* its init, namespaces and mount points */
    HRESULT status = S_OK;
    const char *exit_type = "ForcedExit", *detail = "Terminate", *initiator = "Client";
    if (kind == STOP_GRACEFUL && (graceful_done || !s->force_stop)) {
        exit_type = graceful_done ? "GracefulExit" : "ForcedExit";
        detail = graceful_done ? "Shutdown" : "ShutdownTimeout";
    }
    if (kind == STOP_UNEXPECTED) {
        status = HCS_E_UNEXPECTED_EXIT;
        exit_type = "UnexpectedExit";
        detail = "UnexpectedExit";
        initiator = "GuestOS";
    } else if (kind == STOP_CRASH) {
        status = HCS_E_UNEXPECTED_EXIT;
        exit_type = "UnexpectedExit";
        detail = "UnexpectedExit";
        initiator = "GuestOS";
    } else if (kind == STOP_GRACEFUL && s->force_stop && !graceful_done) {
        status = HCS_E_TERMINATED;
        exit_type = "ForcedExit";
        detail = "Terminate";
    }
    char *exit_doc = exit_status_doc(status, exit_type, detail, initiator, kind == STOP_CRASH);
    pthread_mutex_lock(&svc_mu);
    cg_sys *cg = s->cg;
    s->cg = NULL;
    if (cg) {
        cg_read_stats(cg, &s->cg_final);
        json_free(s->cg_report);
        s->cg_report = cg_isolation_json(cg);
    }
    pthread_mutex_unlock(&svc_mu);
    if (cg && pg <= 0) cg_kill(cg, g_settings.terminate_timeout_ms);
    cg_destroy(cg);
    pthread_mutex_lock(&svc_mu);
    s->state = ST_STOPPED;
    s->pgid = 0;
    s->n_console_groups = 0;
    s->stopping = false;
    free(s->exit_doc);
    s->exit_doc = strdup(exit_doc);
    if (s->handles == 0) unregister_locked(s);
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
    tls_exit_sys = s;
    svc_emit_system_event(s, HcsEventSystemExited, exit_doc);
    tls_exit_sys = NULL;
    pthread_mutex_lock(&svc_mu);
    s->exit_delivered = true;
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
    free(exit_doc);
    if (kind == STOP_GRACEFUL && s->force_stop && !graceful_done)
        return svc_fail(doc, HCS_E_TERMINATED, "The compute system '%s' was terminated during shutdown", s->id);
    return S_OK;
}

static void stop_job(void *arg) {
    svc_system *s = arg;
    do_stop(s, STOP_FORCED, NULL);
    svc_unref(s);
}

static void unexpected_job(void *arg) {
    svc_system *s = arg;
    do_stop(s, STOP_UNEXPECTED, NULL);
    svc_unref(s);
}

HRESULT svc_shutdown(svc_system *s, const json *opts, char **doc) {
    if (opts && json_typeof(opts) != JSON_OBJECT)
        return svc_fail(doc, HCS_E_INVALID_JSON, "Shutdown options must be a JSON object");
    return do_stop(s, STOP_GRACEFUL, doc);
}

HRESULT svc_terminate(svc_system *s, const json *opts, char **doc) {
    (void)opts;
    return do_stop(s, STOP_FORCED, doc);
}

HRESULT svc_crash(svc_system *s, const json *opts, char **doc) {
    const char *type = NULL;
    WANT(str, opts, "CrashOptions", "Type", &type);
    if (opts && type && strcmp(type, "CrashGuest") != 0)
        return svc_fail(doc, HCS_E_INVALID_JSON, "Unknown crash type '%s'", type);
    pthread_mutex_lock(&svc_mu);
    int st = s->state;
    pthread_mutex_unlock(&svc_mu);
    if (st != ST_RUNNING) {
        if (st == ST_STOPPED) return svc_fail(doc, HCS_E_SYSTEM_ALREADY_STOPPED, "The compute system has stopped");
        return svc_fail(doc, HCS_E_INVALID_STATE, "Only a running compute system can be crashed (state %s)", state_names[st]);
    }
    json *rep = json_new_object();
    json_set(rep, "SystemId", json_new_string(s->id));
    char guid[37];
    make_guid(guid);
    json_set(rep, "ActivityId", json_new_string(guid));
    json_set(rep, "CrashParameters", crash_parameters());
    json_set(rep, "CrashLog", json_new_string("The guest was crashed on request (HcsCrashComputeSystem)"));
    json_set(rep, "Status", json_new_int(0));
    json_set(rep, "PreOSId", json_new_int(0));
    json_set(rep, "CrashStackUnavailable", json_new_bool(true));
    char *text = json_dump(rep);
    json_free(rep);
    svc_emit_system_event(s, HcsEventSystemCrashInitiated, text);
    svc_emit_system_event(s, HcsEventSystemCrashReport, text);
    free(text);
    return do_stop(s, STOP_CRASH, doc);
}

HRESULT svc_inject_unexpected_exit(const char *id) {
    svc_system *s;
    if (FAILED(svc_open(id, &s))) return HCS_E_SYSTEM_NOT_FOUND;
    pthread_mutex_lock(&svc_mu);
    int st = s->state;
    bool stopping = s->stopping;
    pthread_mutex_unlock(&svc_mu);
    if (st != ST_RUNNING && st != ST_PAUSED) {
        svc_unref(s);
        (void)stopping;
        return HCS_E_INVALID_STATE; /* only a running or paused system can die */
    }
    /* The "guest" dies: stop on a worker, as the service would notice it there. */
    if (!emu_submit(unexpected_job, s)) unexpected_job(s); /* unexpected_job drops the reference */
    return S_OK;
}

/* ------------------------------------------------------------------ state changes */

HRESULT wrong_state(char **doc, svc_system *s, int st, const char *what) {
    if (st == ST_STOPPED)
        return svc_fail(doc, HCS_E_SYSTEM_ALREADY_STOPPED, "The compute system '%s' has stopped", s->id);
    return svc_fail(doc, HCS_E_INVALID_STATE, "Cannot %s compute system '%s' in state %s", what, s->id, state_names[st]);
}

HRESULT svc_start(svc_system *s, const json *opts, char **doc) {
    (void)opts;
    cg_limits lim;
    pthread_mutex_lock(&svc_mu);
    cg_limits_from_config(s->config, (unsigned)sysconf(_SC_NPROCESSORS_ONLN), g_settings.cgroup_pids_max, &lim);
    bool created = s->state == ST_CREATED;
    json *cfg = created && g_settings.isolation == ISOLATION_AUTO ? json_clone(s->config) : NULL;
    char *root = cfg && s->workdir ? strdup(s->workdir) : NULL;
    pthread_mutex_unlock(&svc_mu);
    cg_sys *cg = created ? cg_create(s->runtime_id, g_settings.cgroups, &lim) : NULL;
    cg_warn_once(cg);
    iso_system *iso = NULL;
    json *report = NULL;
    if (cfg) {
        /* The system's namespaces, root and init (isolate.h). Under svc_mu: a spawn holds it
         * while the service may sit in another system's cgroup (cgroup v2), where the init
         * must not be born. */
        char *err = NULL;
        pthread_mutex_lock(&svc_mu);
        iso = iso_start_config(cfg, s->id, root, s->marker, &report, &err);
        pthread_mutex_unlock(&svc_mu);
        json_free(cfg);
        free(root);
        if (err) {
            cg_destroy(cg);
            HRESULT hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "Cannot start compute system '%s': %s",
                                  s->id, err);
            free(err);
            return hr;
        }
    }
    pthread_mutex_lock(&svc_mu);
    if (s->state != ST_CREATED || s->stopping || s->cg) {
        int st = s->state;
        pthread_mutex_unlock(&svc_mu);
        iso_stop(iso);
        json_free(report);
        cg_destroy(cg);
        return svc_fail(doc, HCS_E_INVALID_STATE, "Cannot start compute system '%s' in state %s", s->id, state_names[st]);
    }
    s->cg = cg;
    s->iso = iso;
    json_free(s->iso_report);
    s->iso_report = report;
    /* Nothing else to boot: the system's process group comes into being with its first process. */
    s->state = ST_RUNNING;
    s->start_ms_epoch = now_ms_epoch();
    s->start_mono_ms = emu_now_ms();
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
    return S_OK;
}

static const char *const suspension_levels[] = {"Suspend", "MemoryLow", "MemoryMedium", "MemoryHigh", NULL};
static const char *const pause_reasons[] = {"None", "Save", "Template", NULL};

static bool one_of(const char *v, const char *const *list) {
    for (; *list; list++)
        if (strcmp(v, *list) == 0) return true;
    return false;
}

HRESULT svc_pause(svc_system *s, const json *opts, char **doc) {
    if (opts) {
        const char *lvl = NULL, *reason = NULL;
        WANT(str, opts, "PauseOptions", "SuspensionLevel", &lvl);
        WANT(str, opts, "PauseOptions", "HostedNotification.Reason", &reason);
        if (lvl && !one_of(lvl, suspension_levels))
            return svc_fail(doc, HCS_E_INVALID_JSON, "PauseOptions.SuspensionLevel is not a known level");
        if (reason && !one_of(reason, pause_reasons))
            return svc_fail(doc, HCS_E_INVALID_JSON, "PauseOptions.HostedNotification.Reason is not a known reason");
    }
    pthread_mutex_lock(&svc_mu);
    int st = s->state;
    if (st != ST_RUNNING || s->stopping) {
        pthread_mutex_unlock(&svc_mu);
        return wrong_state(doc, s, st, "pause");
    }
    group_set gs = groups_of_locked(s);
    bool frozen = cg_freeze(s->cg, true, 2000); /* atomic, and no signal the processes could see */
    if (!frozen) groups_signal(&gs, SIGSTOP);
    s->state = ST_PAUSED;
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
    /* Pause completes once the stop has reached every process, as a VM pause completes once
     * the virtual processors are halted. */
    if (!frozen)
        for (size_t i = 0; i < gs.n; i++) proc_group_wait_stopped(gs.id[i], 2000);
    group_set_free(&gs);
    return S_OK;
}

HRESULT svc_resume(svc_system *s, const json *opts, char **doc) {
    (void)opts;
    pthread_mutex_lock(&svc_mu);
    int st = s->state;
    if (st != ST_PAUSED || s->stopping) {
        pthread_mutex_unlock(&svc_mu);
        return wrong_state(doc, s, st, "resume");
    }
    group_set gs = groups_of_locked(s);
    bool thawed = cg_freeze(s->cg, false, 2000);
    if (!thawed) groups_signal(&gs, SIGCONT);
    s->state = ST_RUNNING;
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
    if (!thawed)
        for (size_t i = 0; i < gs.n; i++) proc_group_wait_state(gs.id[i], false, 2000);
    group_set_free(&gs);
    return S_OK;
}

/* The .vmrs format of the emulator: VMRS_MAGIC, then one JSON object. */


HRESULT svc_save(svc_system *s, const json *opts, char **doc) {
    const char *type = NULL, *path = NULL;
    WANT(str, opts, "SaveOptions", "SaveType", &type);
    WANT(str, opts, "SaveOptions", "SaveStateFilePath", &path);
    if (type && strcmp(type, "ToFile") != 0 && strcmp(type, "AsTemplate") != 0)
        return svc_fail(doc, HCS_E_INVALID_JSON, "SaveOptions.SaveType must be ToFile or AsTemplate");
    bool as_template = type && strcmp(type, "AsTemplate") == 0;
    pthread_mutex_lock(&svc_mu);
    int st = s->state;
    if (st != ST_PAUSED || s->stopping) {
        pthread_mutex_unlock(&svc_mu);
        if (st == ST_RUNNING)
            return svc_fail(doc, HCS_E_INVALID_STATE, "The compute system '%s' cannot be saved as it is still running", s->id);
        return wrong_state(doc, s, st, "save");
    }
    json *cfg = json_clone(s->config);
    pthread_mutex_unlock(&svc_mu);
    if (path && *path) {
        json *state = json_new_object();
        json_set(state, "Kind", json_new_string("SavedState"));
        json_set(state, "SystemId", json_new_string(s->id));
        json_set(state, "RuntimeId", json_new_string(s->runtime_id));
        char when[40];
        iso_time(now_ms_epoch(), when, sizeof when);
        json_set(state, "SavedAt", json_new_string(when));
        json_set(state, "SaveType", json_new_string(as_template ? "AsTemplate" : "ToFile"));
        json_set(state, "Configuration", cfg);
        cfg = NULL;
        json_set(state, "ProcessorRequirements", emu_host_processor_requirements());
        char *text = json_dump(state);
        json_free(state);
        /* never a silent loss: a state the JSON writer refuses (nested too deep) is an error */
        if (!text)
            return svc_fail(doc, HCS_E_INVALID_JSON, "The configuration of '%s' cannot be saved (nested deeper than %d "
                        "levels, or out of memory)", s->id, JSON_MAX_DEPTH);
        int fd = emu_open_regular(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f && fd >= 0) close(fd);
        bool ok = f && fputs(VMRS_MAGIC, f) >= 0 && fputs(text, f) >= 0;
        int e = errno;
        if (f && fclose(f) != 0 && ok) {
            ok = false;
            e = errno;
        }
        free(text);
        if (!ok) {
            if (e == EINVAL || e == EISDIR)
                return svc_fail(doc, E_INVALIDARG, "The saved state file '%s' is not a regular file", path);
            return svc_fail(doc, HRESULT_FROM_WIN32(e == ENOENT ? ERROR_PATH_NOT_FOUND : ERROR_ACCESS_DENIED),
                        "Cannot write the saved state file '%s': %s", path, strerror(e));
        }
    } else if (!as_template) {
        json_free(cfg);
        return svc_fail(doc, E_INVALIDARG, "SaveOptions.SaveStateFilePath is required to save to a file");
    }
    json_free(cfg);
    pthread_mutex_lock(&svc_mu);
    if (as_template) s->state = ST_SAVED_AS_TEMPLATE; /* ToFile stays Paused [INFER] */
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
    return S_OK;
}

/* ------------------------------------------------------------------ properties */

static json *basic_properties_locked(svc_system *s) {
    json *p = json_new_object();
    json_set(p, "Id", json_new_string(s->id));
    json_set(p, "SystemType", json_new_string(type_name(s->type)));
    json_set(p, "Name", json_new_string(s->id));
    if (s->owner) json_set(p, "Owner", json_new_string(s->owner));
    json_set(p, "RuntimeId", json_new_string(s->runtime_id));
    const json *vm = json_get(s->config, "VirtualMachine");
    bool linux_vm = vm && (json_get(json_get(vm, "Chipset"), "LinuxKernelDirect") || json_get(vm, "LinuxKernelDirect"));
    json_set(p, "RuntimeOsType", json_new_string(linux_vm ? "Linux" : "Windows"));
    const char *hosting = json_str(json_get(s->config, "HostingSystemId"));
    if (hosting) json_set(p, "HostingSystemId", json_new_string(hosting));
    json_set(p, "State", json_new_string(state_names[s->state]));
    json_set(p, "Stopped", json_new_bool(s->state == ST_STOPPED));
    const char *exit_type = "None";
    json *ed = NULL;
    if (s->exit_doc) {
        ed = json_parse(s->exit_doc, strlen(s->exit_doc), NULL, 0);
        const char *t = json_str(json_get(ed, "ExitType"));
        if (t) exit_type = t;
    }
    json_set(p, "ExitType", json_new_string(exit_type));
    json_free(ed);
    return p;
}

static json *statistics_locked(svc_system *s) {
    json *st = json_new_object();
    char ts[40];
    iso_time(now_ms_epoch(), ts, sizeof ts);
    json_set(st, "Timestamp", json_new_string(ts));
    if (s->start_ms_epoch) {
        iso_time(s->start_ms_epoch, ts, sizeof ts);
        json_set(st, "ContainerStartTime", json_new_string(ts));
    }
    uint64_t uptime = s->start_mono_ms && s->state != ST_STOPPED ? (emu_now_ms() - s->start_mono_ms) * 10000u : 0;
    json_set(st, "Uptime100ns", json_new_uint(uptime));
    uint64_t user = s->exited_user_100ns, kern = s->exited_kernel_100ns, rss = 0, shared = 0, vsz = 0;
    uint64_t rb = s->exited_read, wb = s->exited_write, rops = s->exited_rops, wops = s->exited_wops;
    if (s->pgid > 0 || s->n_console_groups > 0) {
        proc_stat *ps = malloc(sizeof *ps * 4096);
        size_t n = ps ? list_system_procs_locked(s, ps, 4096) : 0;
        for (size_t i = 0; i < n; i++) {
            user += ps[i].utime_100ns;
            kern += ps[i].stime_100ns;
            rss += ps[i].rss_bytes;
            shared += ps[i].shared_bytes;
            vsz += ps[i].vsize_bytes;
            rb += ps[i].read_bytes;
            wb += ps[i].write_bytes;
            rops += ps[i].read_ops;
            wops += ps[i].write_ops;
        }
        free(ps);
    }
    /* The cgroup counts every process that ran in the system (setsid'ed ones included). */
    cg_stat cs = s->cg_final;
    if (s->cg) cg_read_stats(s->cg, &cs);
    if (cs.have_cpu) {
        user = cs.user_100ns;
        kern = cs.kernel_100ns;
    }
    if (cs.have_memory) {
        vsz = cs.mem_usage;
        rss = cs.mem_anon;
        shared = 0;
    }
    json *proc = json_new_object();
    json_set(proc, "TotalRuntime100ns", json_new_uint(user + kern));
    json_set(proc, "RuntimeUser100ns", json_new_uint(user));
    json_set(proc, "RuntimeKernel100ns", json_new_uint(kern));
    json_set(st, "Processor", proc);
    json *mem = json_new_object();
    json_set(mem, "MemoryUsageCommitBytes", json_new_uint(vsz));
    json_set(mem, "MemoryUsageCommitPeakBytes", json_new_uint(cs.have_memory ? cs.mem_peak : vsz));
    json_set(mem, "MemoryUsagePrivateWorkingSetBytes", json_new_uint(rss > shared ? rss - shared : 0));
    json_set(st, "Memory", mem);
    json *sto = json_new_object();
    json_set(sto, "ReadCountNormalized", json_new_uint(rops));
    json_set(sto, "ReadSizeBytes", json_new_uint(rb));
    json_set(sto, "WriteCountNormalized", json_new_uint(wops));
    json_set(sto, "WriteSizeBytes", json_new_uint(wb));
    json_set(st, "Storage", sto);
    return st;
}

static json *process_list_locked(svc_system *s) {
    json *arr = json_new_array();
    bool pidns = iso_has_pid_namespace(s->iso); /* then every process of its namespace, setsid or not */
    if (s->pgid <= 0 && s->n_console_groups == 0 && !pidns) return arr;
    proc_stat *ps = malloc(sizeof *ps * 4096);
    size_t n = !ps ? 0 : pidns ? iso_list(s->iso, ps, 4096) : list_system_procs_locked(s, ps, 4096);
    for (size_t i = 0; i < n; i++) {
        if (ps[i].state == 'Z' || ps[i].state == 'X') continue; /* exited, awaiting its reaper */
        json *d = json_new_object();
        json_set(d, "ProcessId", json_new_uint((uint64_t)ps[i].pid));
        json_set(d, "ImageName", json_new_string(ps[i].name));
        char ts[40];
        iso_time(ps[i].start_ms_epoch, ts, sizeof ts);
        json_set(d, "CreateTimestamp", json_new_string(ts));
        json_set(d, "UserTime100ns", json_new_uint(ps[i].utime_100ns));
        json_set(d, "KernelTime100ns", json_new_uint(ps[i].stime_100ns));
        json_set(d, "MemoryCommitBytes", json_new_uint(ps[i].vsize_bytes));
        json_set(d, "MemoryWorkingSetPrivateBytes",
                 json_new_uint(ps[i].rss_bytes > ps[i].shared_bytes ? ps[i].rss_bytes - ps[i].shared_bytes : 0));
        json_set(d, "MemoryWorkingSetSharedBytes", json_new_uint(ps[i].shared_bytes));
        json_append(arr, d);
    }
    free(ps);
    return arr;
}

static json *memory_locked(svc_system *s) {
    int64_t mb = 0;
    const json *vm = json_get(s->config, "VirtualMachine");
    /* the memory figures are int32 megabytes in the schema: clamp what a config may overflow */
    if (vm) json_int64(json_get(json_get(json_get(vm, "ComputeTopology"), "Memory"), "SizeInMB"), &mb);
    else json_int64(json_get(json_get(json_get(s->config, "Container"), "Memory"), "SizeInMB"), &mb);
    if (mb < 0) mb = 0;
    if (mb > INT32_MAX) mb = INT32_MAX;
    json *m = json_new_object();
    json_set(m, "VirtualNodeCount", json_new_int(1));
    json *vmm = json_new_object();
    json_set(vmm, "AvailableMemory", json_new_int(mb));
    json_set(vmm, "AvailableMemoryBuffer", json_new_int(0));
    json_set(vmm, "ReservedMemory", json_new_int(0));
    json_set(vmm, "AssignedMemory", json_new_int(mb));
    json_set(vmm, "SlpActive", json_new_bool(false));
    json_set(vmm, "BalancingEnabled", json_new_bool(false));
    json_set(vmm, "DmOperationInProgress", json_new_bool(false));
    json_set(m, "VirtualMachineMemory", vmm);
    json_set(m, "VirtualNodes", json_new_array());
    return m;
}

/* GuestMemoryInfo: memory as the guest sees it. Its size is the configured SizeInMB (the
 * host's physical memory when none is configured); its use is that of the system's processes. */
static json *guest_memory_locked(svc_system *s) {
    int64_t mb = 0;
    const json *vm = json_get(s->config, "VirtualMachine");
    if (vm) json_int64(json_get(json_get(json_get(vm, "ComputeTopology"), "Memory"), "SizeInMB"), &mb);
    else json_int64(json_get(json_get(json_get(s->config, "Container"), "Memory"), "SizeInMB"), &mb);
    uint64_t total = mb > 0 ? (uint64_t)mb << 20
                            : (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t rss = 0, shared = 0, vsz = 0;
    if (s->pgid > 0 || s->n_console_groups > 0) {
        proc_stat *ps = malloc(sizeof *ps * 4096);
        size_t n = ps ? list_system_procs_locked(s, ps, 4096) : 0;
        for (size_t i = 0; i < n; i++) {
            rss += ps[i].rss_bytes;
            shared += ps[i].shared_bytes;
            vsz += ps[i].vsize_bytes;
        }
        free(ps);
    }
    if (vsz > s->peak_commit_bytes) s->peak_commit_bytes = vsz;
    json *m = json_new_object();
    json_set(m, "TotalPhysicalBytes", json_new_uint(total));
    json_set(m, "TotalUsage", json_new_uint(rss));
    json_set(m, "CommittedBytes", json_new_uint(vsz));
    json_set(m, "SharedCommittedBytes", json_new_uint(shared));
    json_set(m, "CommitLimitBytes", json_new_uint(total > vsz ? total : vsz));
    json_set(m, "PeakCommitmentBytes", json_new_uint(s->peak_commit_bytes));
    return m;
}


/* The emulator-only Isolation property: what of the isolation is in effect for the system. */
static json *isolation_locked(svc_system *s) {
    json *iso = iso_properties(s->iso, s->iso_report); /* namespaces, root, init (isolate.h) */
    json_set(iso, "Cgroup", s->cg ? cg_isolation_json(s->cg)
                            : s->cg_report ? json_clone(s->cg_report) : cg_host_json(g_settings.cgroups));
    return iso;
}

static const char *const known_props[] = {
    "Memory", "Statistics", "ProcessList", "TerminateOnLastHandleClosed", "SharedMemoryRegion", "GuestConnection",
    "SystemGUID", "ProcessorTopology", "ICHeartbeatStatus", "GuestMemory", "CpuGroup", "ContainerCredentialGuard",
    "EmulatorConfiguration", "EmulatorIsolation", "Isolation", NULL};

/* Adds one requested property to p. Returns S_OK, or a failure for an unknown type. */
static HRESULT add_property_locked(svc_system *s, json *p, const char *name, char **doc) {
    if (!one_of(name, known_props))
        return svc_fail(doc, HCS_E_INVALID_JSON, "Unknown property type '%s'", name);
    if (strcmp(name, "Statistics") == 0) json_set(p, "Statistics", statistics_locked(s));
    else if (strcmp(name, "ProcessList") == 0) json_set(p, "ProcessList", process_list_locked(s));
    else if (strcmp(name, "Memory") == 0) json_set(p, "Memory", memory_locked(s));
    else if (strcmp(name, "TerminateOnLastHandleClosed") == 0)
        json_set(p, "TerminateOnLastHandleClosed", json_new_bool(s->terminate_on_close));
    else if (strcmp(name, "SharedMemoryRegion") == 0) json_set(p, "SharedMemoryRegionInfo", json_new_array());
    else if (strcmp(name, "SystemGUID") == 0) json_set(p, "SystemGUID", json_new_string(s->runtime_id));
    else if (strcmp(name, "EmulatorConfiguration") == 0) json_set(p, "EmulatorConfiguration", json_clone(s->config));
    else if (strcmp(name, "EmulatorIsolation") == 0 || strcmp(name, "Isolation") == 0)
        json_set(p, "Isolation", isolation_locked(s));
    else if (strcmp(name, "GuestConnection") == 0) {
        if (json_get(json_get(s->config, "VirtualMachine"), "GuestConnection")) {
            json *g = json_new_object();
            json *vers = json_new_array();
            json *v = json_new_object();
            json_set(v, "Major", json_new_uint(g_settings.schema_major));
            json_set(v, "Minor", json_new_uint(g_settings.schema_minor));
            json_append(vers, v);
            json_set(g, "SupportedSchemaVersions", vers);
            json_set(g, "ProtocolVersion", json_new_int(4));
            json_set(g, "GuestDefinedCapabilities", json_new_object());
            json_set(p, "GuestConnectionInfo", g);
        }
    } else if (strcmp(name, "ICHeartbeatStatus") == 0) {
        bool running = s->state == ST_RUNNING;
        json *hb = json_new_object();
        json_set(hb, "IsEnabled", json_new_bool(true));
        json_set(hb, "State", json_new_string(running ? "Ok" : "NoContact"));
        json_set(hb, "Reason", json_new_string(running ? "HealthyApps" : "Unknown"));
        json_set(p, "ICHeartbeatStatus", hb);
    } else if (strcmp(name, "GuestMemory") == 0) {
        json_set(p, "GuestMemoryInfo", guest_memory_locked(s));
    } else {
        return svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED),
                    "The property type '%s' is not supported by the emulator", name);
    }
    return S_OK;
}

HRESULT svc_properties(svc_system *s, const json *query, char **doc) {
    if (query && json_typeof(query) != JSON_OBJECT)
        return svc_fail(doc, HCS_E_INVALID_JSON, "The property query must be a JSON object");
    const json *types = NULL, *queries = NULL;
    const char *tname;
    WANT(arr, query, "PropertyQuery", "PropertyTypes", &types);
    WANT(obj, query, "PropertyQuery", "Queries", &queries);
    for (size_t i = 0; i < json_len(types); i++) WANT(elem_str, types, "PropertyQuery.PropertyTypes", i, &tname);
    HRESULT nhr = refuse_nul(query, "The property query", doc);
    if (FAILED(nhr)) return nhr;
    pthread_mutex_lock(&svc_mu);
    json *p = basic_properties_locked(s);
    HRESULT hr = S_OK;
    for (size_t i = 0; i < json_len(types) && !FAILED(hr); i++) {
        const char *name = json_str(json_at(types, i));
        hr = name ? add_property_locked(s, p, name, doc)
                  : svc_fail(doc, HCS_E_INVALID_JSON, "PropertyTypes must be an array of strings");
    }
    if (!FAILED(hr) && json_len(queries)) {
        json *responses = json_new_object();
        for (size_t i = 0; i < json_len(queries); i++) {
            const char *name = json_key_at(queries, i);
            json *one = json_new_object();
            char *err = NULL;
            json *resp = json_new_object();
            HRESULT r = add_property_locked(s, one, name, &err);
            if (FAILED(r)) {
                json_set(resp, "Error", json_parse(err, strlen(err), NULL, 0));
            } else if (json_len(one)) {
                json_set(resp, "Response", json_clone(json_at(one, 0)));
            }
            free(err);
            json_free(one);
            json_set(responses, name, resp);
        }
        json_set(p, "PropertyResponses", responses);
    }
    pthread_mutex_unlock(&svc_mu);
    if (!FAILED(hr)) {
        free(*doc);
        *doc = json_dump(p);
        if (!*doc) hr = svc_fail(doc, E_OUTOFMEMORY, "The properties document could not be written");
    }
    json_free(p);
    return hr;
}

/* ------------------------------------------------------------------ modify */

/* A Remove: the member, or when the Settings name one element of an array (a MappedDirectory)
 * that element: the one equal to them or with the same ContainerPath. */
static HRESULT remove_member(json *node, const char *key, const json *settings, const char *path, char **doc) {
    const json *arr = json_get(node, key);
    if (json_typeof(arr) != JSON_ARRAY || json_typeof(settings) != JSON_OBJECT) {
        json_remove(node, key);
        return S_OK;
    }
    const char *cp = json_str(json_get(settings, "ContainerPath"));
    json *kept = json_new_array();
    bool removed = false;
    for (size_t i = 0; i < json_len(arr); i++) {
        const json *e = json_at(arr, i);
        const char *ecp = json_str(json_get(e, "ContainerPath"));
        if (!removed && (json_equal(e, settings) || (cp && ecp && strcmp(cp, ecp) == 0))) removed = true;
        else json_append(kept, json_clone(e));
    }
    if (!removed) {
        json_free(kept);
        return svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_FOUND), "Resource '%s' holds no such element", path);
    }
    json_set(node, key, kept);
    return S_OK;
}

/* An Add to an array member (created when absent). */
static void add_element(json *node, const char *key, const json *settings) {
    json *arr = (json *)json_get(node, key);
    if (json_typeof(arr) != JSON_ARRAY) {
        arr = json_new_array();
        json_set(node, key, arr);
    }
    json_append(arr, settings ? json_clone(settings) : json_new_null());
}

/* A modify of a running isolated system's mapped directories mounts or unmounts them. */
static HRESULT apply_live(svc_system *s, const char *path, const char *rtype, const json *settings, char **doc) {
    if (!s->iso) return S_OK;
    char *err = NULL;
    int e = iso_modify_config(s->iso, path, rtype, settings, &err);
    HRESULT hr = S_OK;
    if (e)
        hr = svc_fail(doc, e == ENOENT ? HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND) : e == EINVAL ? E_INVALIDARG
                                                                             : HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED),
                      "%s", err ? err : "the mapped directory could not be changed");
    free(err);
    return hr;
}

/* Applies a ModifySettingRequest to the stored configuration, so what was added, removed
 * or updated shows in later properties and in EmulatorConfiguration. */
HRESULT svc_modify(svc_system *s, const json *req, char **doc) {
    if (json_typeof(req) != JSON_OBJECT)
        return svc_fail(doc, HCS_E_INVALID_JSON, "The modify request must be a JSON object");
    const char *path = NULL, *rtype = NULL;
    WANT(str, req, "ModifySettingRequest", "ResourcePath", &path);
    WANT(str, req, "ModifySettingRequest", "RequestType", &rtype);
    HRESULT nhr = refuse_nul(req, "The modify request", doc);
    if (FAILED(nhr)) return nhr;
    size_t segs = 0;
    for (const char *c = path; c && *c; c++) segs += *c == '/';
    if (segs >= EMU_CONFIG_MAX_DEPTH)
        return svc_fail(doc, HCS_E_INVALID_JSON, "ResourcePath has more than %d segments", EMU_CONFIG_MAX_DEPTH);
    const json *settings = json_get(req, "Settings");
    const json *guest = json_get(req, "GuestRequest");
    if (json_typeof(settings) == JSON_NULL) settings = NULL;
    if (json_typeof(guest) == JSON_NULL) guest = NULL;
    if (!path && !guest) return svc_fail(doc, HCS_E_INVALID_JSON, "ResourcePath or GuestRequest is required");
    if (rtype && strcmp(rtype, "Add") != 0 && strcmp(rtype, "Remove") != 0 && strcmp(rtype, "Update") != 0)
        return svc_fail(doc, HCS_E_INVALID_JSON, "RequestType must be Add, Remove or Update (got '%s')", rtype);
    if (!rtype) rtype = "Add";
    if (strcmp(rtype, "Remove") != 0) {
        HRESULT dhr = check_guid_members_at(path, settings, doc);
        if (!FAILED(dhr) && s->type == T_VM) dhr = check_device_modify(path, settings, doc);
        if (FAILED(dhr)) return dhr;
    }
    pthread_mutex_lock(&svc_mu);
    int st = s->state;
    if (st == ST_STOPPED || st == ST_SAVED_AS_TEMPLATE || s->stopping) {
        pthread_mutex_unlock(&svc_mu);
        return wrong_state(doc, s, st, "modify");
    }
    HRESULT hr = S_OK;
    /* Applied to a copy that replaces the configuration only when complete and within the
     * nesting limit: a failed or over-deep modify leaves nothing half-done. */
    json *work = json_clone(s->config);
    if (!work) {
        pthread_mutex_unlock(&svc_mu);
        return svc_fail(doc, E_OUTOFMEMORY, "Out of memory applying the modify request");
    }
    if (path) {
        char *copy = strdup(path);
        char *save = NULL;
        char *seg = strtok_r(copy, "/", &save);
        const char *root = s->type == T_VM ? "VirtualMachine" : "Container";
        if (!seg || (strcmp(seg, root) != 0 && strcmp(seg, "HostedSystem") != 0)) {
            hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "Resource path '%s' does not apply to a %s",
                      path, root);
        } else {
            json *node = (json *)json_get(work, seg);
            char *next = strtok_r(NULL, "/", &save);
            if (json_typeof(node) != JSON_OBJECT) {
                hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "Resource path '%s': the configuration has "
                          "no %s object", path, seg);
            } else if (!next) {
                hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "Resource path '%s' names no resource", path);
            }
            while (!FAILED(hr) && next) {
                char *after = strtok_r(NULL, "/", &save);
                if (!after) {
                    bool exists = json_get(node, next) != NULL;
                    if (strcmp(rtype, "Remove") == 0) {
                        if (!exists) hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_FOUND), "Resource '%s' does not exist", path);
                        else hr = remove_member(node, next, settings, path, doc);
                    } else if (strcmp(rtype, "Add") == 0 && exists && json_typeof(json_get(node, next)) == JSON_OBJECT &&
                               json_typeof(settings) == JSON_OBJECT && json_len(json_get(node, next)) &&
                               strstr(path, "/Shares") == NULL) {
                        hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "Resource '%s' already exists", path);
                    } else if (strcmp(rtype, "Add") == 0 && (json_typeof(json_get(node, next)) == JSON_ARRAY ||
                                                             (!exists && strcmp(next, "MappedDirectories") == 0))) {
                        add_element(node, next, settings); /* MappedDirectories is an array of them */
                    } else {
                        json_set(node, next, settings ? json_clone(settings) : json_new_object());
                    }
                    if (!FAILED(hr) && strcmp(path, "Container/Memory/SizeInMB") != 0 && strstr(path, "Memory/SizeInMB") &&
                        settings && json_typeof(settings) != JSON_NUMBER) {
                        hr = svc_fail(doc, HCS_E_INVALID_JSON, "Memory/SizeInMB takes a number");
                    }
                    break;
                }
                json *child = (json *)json_get(node, next);
                if (!child) {
                    if (strcmp(rtype, "Remove") == 0) {
                        hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_FOUND), "Resource '%s' does not exist", path);
                        break;
                    }
                    child = json_new_object();
                    json_set(node, next, child);
                } else if (json_typeof(child) != JSON_OBJECT) {
                    hr = svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "Resource path '%s' crosses a value", path);
                    break;
                }
                node = child;
                next = after;
            }
        }
        free(copy);
    }
    if (!FAILED(hr) && guest) {
        json *log = (json *)json_get(work, "EmulatorGuestRequests");
        if (json_typeof(log) != JSON_ARRAY) {
            log = json_new_array();
            json_set(work, "EmulatorGuestRequests", log);
        }
        json_append(log, json_clone(guest));
    }
    if (!FAILED(hr) && json_depth(work, EMU_CONFIG_MAX_DEPTH) > EMU_CONFIG_MAX_DEPTH)
        hr = svc_fail(doc, HCS_E_INVALID_JSON,
                  "The modify request would nest the configuration deeper than %d levels", EMU_CONFIG_MAX_DEPTH);
    /* what the modify changed is read later as the create's members are: typed alike */
    if (!FAILED(hr)) hr = check_config_types(work, doc);
    if (!FAILED(hr) && s->cg) { /* memory and processor changes apply live */
        cg_limits lim;
        char cerr[256];
        cg_limits_from_config(work, (unsigned)sysconf(_SC_NPROCESSORS_ONLN), g_settings.cgroup_pids_max, &lim);
        if (!cg_set_limits(s->cg, &lim, cerr, sizeof cerr)) hr = svc_fail(doc, E_FAIL, "%s: %s", path ? path : "modify", cerr);
    }
    if (!FAILED(hr)) hr = apply_live(s, path, rtype, settings, doc);
    if (!FAILED(hr)) {
        json_free(s->config);
        s->config = work;
        work = NULL;
        if (path && strcmp(path, "Container/Memory/SizeInMB") != 0 && strcmp(rtype, "Remove") != 0 &&
            strstr(path, "TerminateOnLastHandleClosed")) {
            bool b;
            if (json_bool(settings, &b)) s->terminate_on_close = b;
        }
    }
    pthread_mutex_unlock(&svc_mu);
    json_free(work);
    return hr;
}

/* ------------------------------------------------------------------ enumerate / wait */

static bool filter_match(const json *list, const char *value) {
    if (json_typeof(list) != JSON_ARRAY) return true; /* absent or null: no filter */
    for (size_t i = 0; i < json_len(list); i++) {
        const char *v = json_str(json_at(list, i));
        if (v && value && strcmp(v, value) == 0) return true;
    }
    return false;
}

HRESULT svc_enumerate(const json *query, char **doc) {
    pthread_once(&svc_once, svc_init);
    if (query && json_typeof(query) != JSON_OBJECT)
        return svc_fail(doc, HCS_E_INVALID_JSON, "The system query must be a JSON object");
    static const char *const fields[] = {"Ids", "Names", "Types", "Owners"};
    for (int i = 0; i < 4; i++) {
        const json *f = NULL;
        const char *e;
        char name[32];
        WANT(arr, query, "SystemQuery", fields[i], &f);
        snprintf(name, sizeof name, "SystemQuery.%s", fields[i]);
        for (size_t k = 0; k < json_len(f); k++) WANT(elem_str, f, name, k, &e);
    }
    json *arr = json_new_array();
    pthread_mutex_lock(&svc_mu);
    for (svc_system *s = systems; s; s = s->next) {
        if (!filter_match(json_get(query, "Ids"), s->id) || !filter_match(json_get(query, "Names"), s->id) ||
            !filter_match(json_get(query, "Types"), type_name(s->type)) ||
            !filter_match(json_get(query, "Owners"), s->owner))
            continue;
        json_append(arr, basic_properties_locked(s));
    }
    pthread_mutex_unlock(&svc_mu);
    free(*doc);
    *doc = json_dump(arr);
    json_free(arr);
    return S_OK;
}

bool timed_wait_locked(struct timespec *deadline, uint32_t timeout_ms) {
    if (timeout_ms == INFINITE) {
        pthread_cond_wait(&svc_cv, &svc_mu);
        return true;
    }
    return pthread_cond_timedwait(&svc_cv, &svc_mu, deadline) != ETIMEDOUT;
}

HRESULT svc_wait_exit(svc_system *s, uint32_t timeout_ms, char **doc) {
    return svc_wait_exit_or_abandon(s, timeout_ms, NULL, doc);
}

void svc_wake_waiters(void) {
    pthread_once(&svc_once, svc_init);
    pthread_mutex_lock(&svc_mu);
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
}

bool abandoned_now(const atomic_bool *a) { return a && atomic_load_explicit(a, memory_order_acquire); }

/* A system has exited, for a wait, once its SystemExited event has been delivered (or is being
 * delivered to the caller), as for processes (processes.c, exit_seen_locked). */
static bool system_exit_seen_locked(const svc_system *s) {
    return s->state == ST_STOPPED && (s->exit_delivered || tls_exit_sys == s);
}

HRESULT svc_wait_exit_or_abandon(svc_system *s, uint32_t timeout_ms, const atomic_bool *abandoned, char **doc) {
    struct timespec ts;
    emu_deadline(&ts, timeout_ms == INFINITE ? 0 : timeout_ms);
    pthread_mutex_lock(&svc_mu);
    HRESULT hr = S_OK;
    while (!system_exit_seen_locked(s)) {
        if (abandoned_now(abandoned)) {
            hr = E_HANDLE;
            break;
        }
        if (emu_service_disconnected()) {
            hr = HCS_E_SERVICE_DISCONNECT;
            break;
        }
        if (timeout_ms == 0 || !timed_wait_locked(&ts, timeout_ms)) {
            if (!system_exit_seen_locked(s)) hr = g_settings.wait_exit_timeout_hr;
            break;
        }
    }
    if (!FAILED(hr) && s->exit_doc) *doc = strdup(s->exit_doc);
    pthread_mutex_unlock(&svc_mu);
    return hr;
}

void svc_disconnect_all(void) {
    pthread_once(&svc_once, svc_init);
    pthread_mutex_lock(&svc_mu);
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
}

