/*
 * The host service calls: HcsGetServiceProperties, HcsModifyServiceSettings, HcsSubmitWerReport,
 * with the host's facts (processor topology and features), CPU groups and WER reports. The
 * Emulator* property types and modifications are handed to the controls (control/).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "control.h"
#include "isolate.h"
#include "svc.h"

static pthread_mutex_t host_mu = PTHREAD_MUTEX_INITIALIZER; /* CPU groups and WER reports */

/* ------------------------------------------------------------------ host facts */

json *emu_host_processor_topology(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    json *t = json_new_object();
    json_set(t, "LogicalProcessorCount", json_new_uint((uint64_t)n));
    json *lps = json_new_array();
    for (long i = 0; i < n; i++) {
        char path[128];
        long core = i, pkg = 0;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", i);
        FILE *f = fopen(path, "re");
        if (f) {
            if (fscanf(f, "%ld", &core) != 1) core = i;
            fclose(f);
        }
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", i);
        f = fopen(path, "re");
        if (f) {
            if (fscanf(f, "%ld", &pkg) != 1) pkg = 0;
            fclose(f);
        }
        json *lp = json_new_object();
        json_set(lp, "LpIndex", json_new_uint((uint64_t)i));
        json_set(lp, "NodeNumber", json_new_uint(0));
        json_set(lp, "PackageId", json_new_uint((uint64_t)pkg));
        json_set(lp, "CoreId", json_new_uint((uint64_t)core));
        json_set(lp, "RootVpIndex", json_new_uint((uint64_t)i));
        json_append(lps, lp);
    }
    json_set(t, "LogicalProcessors", lps);
    return t;
}

/* What a saved state needs of the processor, from /proc/cpuinfo's flags (Linux flag name ->
 * HCS ProcessorFeature / XsaveProcessorFeature name). */
json *emu_host_processor_requirements(void) {
    static const char *const feat[][2] = {
        {"pni", "Sse3"},         {"lahf_lm", "LahfSahf"}, {"ssse3", "Ssse3"},     {"sse4_1", "Sse4_1"},
        {"sse4_2", "Sse4_2"},    {"sse4a", "Sse4A"},      {"popcnt", "Popcnt"},   {"cx16", "Cmpxchg16B"},
        {"abm", "Lzcnt"},        {"pdpe1gb", "Page1Gb"},  {"aes", "AmdAes"},      {"pclmulqdq", "Pclmulqdq"},
        {"pcid", "Pcid"},        {"f16c", "F16C"},        {"rdrand", "Rdrand"},   {"fsgsbase", "Rdwrfsgs"},
        {"smep", "Smep"},        {"erms", "EnhancedFastString"}, {"bmi1", "Bmi1"}, {"bmi2", "Bmi2"},
        {"movbe", "Movbe"},      {"rdseed", "Rdseed"},    {"adx", "Adx"},         {"smap", "Smap"},
        {"rdtscp", "Rdtscp"},    {"clflushopt", "Clflushopt"}, {"clwb", "Clwb"},  {"sha_ni", "Sha"},
        {"invpcid", "Invpcid"},  {"umip", "Umip"},        {"rdpid", "Rdpid"},     {"la57", "La57"}};
    static const char *const xfeat[][2] = {{"xsave", "Xsave"},   {"xsaveopt", "Xsave_Opt"}, {"avx", "Avx"},
                                           {"avx2", "Avx2"},     {"fma", "Fma"},            {"avx512f", "Avx512"},
                                           {"avx512dq", "Avx512Dq"}, {"avx512cd", "Avx512Cd"}, {"avx512bw", "Avx512Bw"},
                                           {"avx512vl", "Avx512Vl"}, {"xsavec", "Xsave_Comp"}, {"gfni", "Gfni"},
                                           {"vaes", "Vaes"},     {"vpclmulqdq", "Vpclmulqdq"}};
    char *flags = NULL;
    unsigned clflush = 64, phys_bits = 0;
    FILE *f = fopen("/proc/cpuinfo", "re");
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        if (!flags && strncmp(line, "flags", 5) == 0) {
            char *c = strchr(line, ':');
            if (c) flags = emu_printf(" %s ", c + 1);
        }
        unsigned v;
        if (sscanf(line, "clflush size : %u", &v) == 1) clflush = v;
        if (sscanf(line, "address sizes : %u bits physical", &v) == 1) phys_bits = v;
    }
    free(line);
    if (f) fclose(f);
    if (flags) {
        char *nl = strchr(flags, '\n');
        if (nl) *nl = ' ';
    }
    json *r = json_new_object();
    json *pf = json_new_array(), *xf = json_new_array();
    for (size_t i = 0; flags && i < sizeof feat / sizeof feat[0]; i++) {
        char pat[40];
        snprintf(pat, sizeof pat, " %s ", feat[i][0]);
        if (strstr(flags, pat)) json_append(pf, json_new_string(feat[i][1]));
    }
    for (size_t i = 0; flags && i < sizeof xfeat / sizeof xfeat[0]; i++) {
        char pat[40];
        snprintf(pat, sizeof pat, " %s ", xfeat[i][0]);
        if (strstr(flags, pat)) json_append(xf, json_new_string(xfeat[i][1]));
    }
    free(flags);
    json_set(r, "ProcessorFeatures", pf);
    json_set(r, "XsaveProcessorFeatures", xf);
    json_set(r, "CacheLineFlushSize", json_new_uint(clflush));
    if (phys_bits) json_set(r, "ImplementedPhysicalAddressBits", json_new_uint(phys_bits));
    json_set(r, "NonArchitecturalCoreSharing", json_new_string("Unreported"));
    return r;
}

/* ------------------------------------------------------------------ host service */

typedef struct cpu_group {
    char id[64];
    json *affinity;   /* CpuGroupAffinity */
    json *properties; /* array of CpuGroupProperty */
} cpu_group;
#define MAX_GROUPS 64
static cpu_group groups[MAX_GROUPS];
static size_t n_groups;
static json *wer_reports;

static json *cpu_groups_json(void) {
    json *o = json_new_object();
    json *arr = json_new_array();
    for (size_t i = 0; i < n_groups; i++) {
        json *g = json_new_object();
        json_set(g, "GroupId", json_new_string(groups[i].id));
        json_set(g, "Affinity", json_clone(groups[i].affinity));
        json_set(g, "GroupProperties", json_clone(groups[i].properties));
        json_append(arr, g);
    }
    json_set(o, "CpuGroups", arr);
    return o;
}

HRESULT svc_service_properties(const json *query, char **doc) {
    static const char *const basic[] = {"Basic"};
    const json *types = json_get(query, "PropertyTypes");
    if (query && (json_typeof(query) != JSON_OBJECT || (types && json_typeof(types) != JSON_ARRAY))) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "The service property query must be {\"PropertyTypes\": [...]}");
        return HCS_E_INVALID_JSON;
    }
    for (size_t i = 0; types && i < json_len(types); i++) {
        const char *t;
        char je[320];
        if (!json_want_elem_str(types, "PropertyTypes", i, &t, je, sizeof je)) {
            *doc = emu_error_doc(HCS_E_INVALID_JSON, "%s", je);
            return HCS_E_INVALID_JSON;
        }
    }
    size_t n = types ? json_len(types) : 1;
    json *props = json_new_array();
    HRESULT hr = S_OK;
    pthread_mutex_lock(&host_mu);
    for (size_t i = 0; i < n && !FAILED(hr); i++) {
        const char *t = types ? json_str(json_at(types, i)) : basic[0];
        if (t && emu_service_disconnected() && strncmp(t, "Emulator", 8) != 0) {
            hr = HCS_E_SERVICE_DISCONNECT;
            *doc = emu_error_doc(hr, "The connection with the compute service was lost");
        } else if (!t) {
            hr = HCS_E_INVALID_JSON;
            *doc = emu_error_doc(hr, "PropertyTypes must be an array of strings");
        } else if (strcmp(t, "Basic") == 0) {
            json *b = json_new_object();
            json *vers = json_new_array();
            json *v = json_new_object();
            json_set(v, "Major", json_new_uint(g_settings.schema_major));
            json_set(v, "Minor", json_new_uint(g_settings.schema_minor));
            json_append(vers, v);
            json_set(b, "SupportedSchemaVersions", vers);
            json_append(props, b);
        } else if (strcmp(t, "ProcessorTopology") == 0) {
            json_append(props, emu_host_processor_topology());
        } else if (strcmp(t, "CpuGroup") == 0) {
            json_append(props, cpu_groups_json());
        } else if (strcmp(t, "ContainerCredentialGuard") == 0) {
            json *o = json_new_object();
            json_set(o, "Instances", json_new_array()); /* no CCG on Linux: none running */
            json_append(props, o);
        } else if (strcmp(t, "QoSCapabilities") == 0) {
            json *o = json_new_object();
            json_set(o, "ProcessorQoSSupported", json_new_bool(access("/sys/fs/cgroup/cpu.max", F_OK) == 0));
            json_append(props, o);
        } else if (strcmp(t, "EmulatorSettings") == 0) {
            json_append(props, emu_settings_to_json());
        } else if (strcmp(t, "EmulatorFaults") == 0) {
            json_append(props, emu_faults_to_json());
        } else if (strcmp(t, "EmulatorCallCounts") == 0) {
            json_append(props, emu_call_counts_to_json());
        } else if (strcmp(t, "EmulatorStatistics") == 0) {
            json_append(props, emu_control_statistics());
        } else if (strcmp(t, "EmulatorIsolation") == 0) {
            json *o = iso_host_report(); /* what a system started now would get */
            json_set(o, "Cgroup", cg_host_json(g_settings.cgroups));
            json_append(props, o);
        } else if (strcmp(t, "EmulatorWerReports") == 0) {
            json_append(props, wer_reports ? json_clone(wer_reports) : json_new_array());
        } else {
            hr = HCS_E_INVALID_JSON;
            *doc = emu_error_doc(hr, "Unknown service property type '%s'", t);
        }
    }
    pthread_mutex_unlock(&host_mu);
    if (!FAILED(hr)) {
        json *out = json_new_object();
        json_set(out, "Properties", props);
        *doc = json_dump(out);
        json_free(out);
    } else {
        json_free(props);
    }
    return hr;
}

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (hex digits, any case), the form HCS's documents use. */
static bool is_guid(const char *s) {
    if (strlen(s) != 36) return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i])) return false;
    }
    return true;
}

static HRESULT modify_cpu_group(const json *settings, char **doc) {
    const char *op = NULL, *gid = NULL;
    const json *det = NULL, *lpa = NULL;
    char je[320];
    if (!json_want_str(settings, "CpuGroup", "Operation", &op, je, sizeof je) ||
        !json_want_obj(settings, "CpuGroup", "OperationDetails", &det, je, sizeof je) ||
        !json_want_str(settings, "CpuGroup", "OperationDetails.GroupId", &gid, je, sizeof je) ||
        !json_want_arr(settings, "CpuGroup", "OperationDetails.LogicalProcessors", &lpa, je, sizeof je)) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "%s", je);
        return HCS_E_INVALID_JSON;
    }
    if (!op || !gid) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "CpuGroup settings need Operation and OperationDetails.GroupId");
        return HCS_E_INVALID_JSON;
    }
    if (!is_guid(gid)) { /* a GUID-typed member: HCS's parser refuses anything else */
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "CpuGroup.OperationDetails.GroupId must be a GUID (got '%.60s')", gid);
        return HCS_E_INVALID_JSON;
    }
    size_t idx = n_groups;
    for (size_t i = 0; i < n_groups; i++)
        if (strcmp(groups[i].id, gid) == 0) idx = i;
    if (strcmp(op, "CreateGroup") == 0) {
        if (idx < n_groups) {
            *doc = emu_error_doc(HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS), "CPU group %s already exists", gid);
            return HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS);
        }
        const json *lps = json_get(det, "LogicalProcessors");
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        for (size_t i = 0; i < json_len(lps); i++) {
            int64_t lp;
            if (!json_int64(json_at(lps, i), &lp) || lp < 0 || lp >= ncpu) {
                *doc = emu_error_doc(E_INVALIDARG, "Logical processor %zu of the group does not exist", i);
                return E_INVALIDARG;
            }
        }
        if (n_groups >= MAX_GROUPS || strlen(gid) >= sizeof groups[0].id) {
            *doc = emu_error_doc(E_INVALIDARG, "Too many CPU groups or group id too long");
            return E_INVALIDARG;
        }
        cpu_group *g = &groups[n_groups++];
        snprintf(g->id, sizeof g->id, "%s", gid);
        g->affinity = json_new_object();
        json_set(g->affinity, "LogicalProcessorCount", json_new_uint(json_len(lps)));
        json_set(g->affinity, "LogicalProcessors", lps ? json_clone(lps) : json_new_array());
        g->properties = json_new_array();
        return S_OK;
    }
    if (idx == n_groups) {
        *doc = emu_error_doc(HRESULT_FROM_WIN32(ERROR_NOT_FOUND), "CPU group %s does not exist", gid);
        return HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
    }
    if (strcmp(op, "DeleteGroup") == 0) {
        json_free(groups[idx].affinity);
        json_free(groups[idx].properties);
        groups[idx] = groups[--n_groups];
        return S_OK;
    }
    if (strcmp(op, "SetProperty") == 0) {
        int64_t code, value;
        if (!json_int64(json_get(det, "PropertyCode"), &code) || !json_int64(json_get(det, "PropertyValue"), &value)) {
            *doc = emu_error_doc(HCS_E_INVALID_JSON, "SetProperty needs PropertyCode and PropertyValue");
            return HCS_E_INVALID_JSON;
        }
        json *p = json_new_object();
        json_set(p, "PropertyCode", json_new_int(code));
        json_set(p, "PropertyValue", json_new_int(value));
        json_append(groups[idx].properties, p);
        return S_OK;
    }
    *doc = emu_error_doc(HCS_E_INVALID_JSON, "Unknown CpuGroup operation '%s'", op);
    return HCS_E_INVALID_JSON;
}

HRESULT svc_modify_service(const json *req, char **doc) {
    const char *type = NULL;
    const json *settings = json_get(req, "Settings");
    char je[320];
    if (!json_want_str(req, "ModificationRequest", "PropertyType", &type, je, sizeof je)) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "%s", je);
        return HCS_E_INVALID_JSON;
    }
    if (json_has_nul(req, je, sizeof je)) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "The modification request: %s contains U+0000 (NUL)", je);
        return HCS_E_INVALID_JSON;
    }
    if (!type) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "ModificationRequest needs a PropertyType");
        return HCS_E_INVALID_JSON;
    }
    char *err = NULL;
    HRESULT hr;
    if (emu_service_disconnected() && strncmp(type, "Emulator", 8) != 0) {
        *doc = emu_error_doc(HCS_E_SERVICE_DISCONNECT, "The connection with the compute service was lost");
        return HCS_E_SERVICE_DISCONNECT;
    }
    if (strcmp(type, "CpuGroup") == 0) {
        pthread_mutex_lock(&host_mu);
        hr = modify_cpu_group(settings, doc);
        pthread_mutex_unlock(&host_mu);
        return hr;
    }
    if (strcmp(type, "ContainerCredentialGuard") == 0) {
        *doc = emu_error_doc(HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED),
                             "Container Credential Guard does not exist on this host");
        return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    }
    if (strcmp(type, "Emulator") == 0) hr = emu_settings_apply(settings, &err);
    else if (strcmp(type, "EmulatorFaults") == 0) hr = emu_faults_apply(settings, &err);
    else if (strcmp(type, "EmulatorActions") == 0) return emu_control_action(settings, doc);
    else {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "Unknown service property type '%s'", type);
        return HCS_E_INVALID_JSON;
    }
    if (FAILED(hr)) *doc = emu_error_doc(hr, "%s", err ? err : "invalid emulator request");
    free(err);
    return hr;
}

HRESULT svc_submit_wer(const json *report, char **doc) {
    if (emu_service_disconnected()) {
        *doc = emu_error_doc(HCS_E_SERVICE_DISCONNECT, "The connection with the compute service was lost");
        return HCS_E_SERVICE_DISCONNECT;
    }
    if (json_typeof(report) != JSON_OBJECT) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "A WER report must be a CrashReport object");
        return HCS_E_INVALID_JSON;
    }
    const json *sid = json_get(report, "SystemId");
    const json *params = json_get(report, "CrashParameters");
    if ((sid && json_typeof(sid) != JSON_STRING) || (params && json_typeof(params) != JSON_ARRAY) ||
        (!sid && !json_get(report, "WindowsCrashInfo"))) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "A CrashReport needs a SystemId (string) and array CrashParameters");
        return HCS_E_INVALID_JSON;
    }
    pthread_mutex_lock(&host_mu);
    if (!wer_reports) wer_reports = json_new_array();
    json_append(wer_reports, json_clone(report));
    pthread_mutex_unlock(&host_mu);
    return S_OK;
}
