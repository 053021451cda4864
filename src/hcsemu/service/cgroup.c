/*
 * A control group per compute system (interface and fallbacks in cgroup.h).
 *
 * Where the parent lives: below the service's own cgroup of each hierarchy (read from
 * /proc/self/cgroup and /proc/self/mountinfo), as <own>/hcsemu-<service pid>, so the limits
 * the service itself runs under (a CI job's, a user slice's) still hold for its systems. On
 * cgroup v2 the controllers must be enabled in the own cgroup's cgroup.subtree_control, which
 * the kernel refuses while that cgroup holds processes (it holds the service) unless it is the
 * hierarchy's root; then, as root, the parent goes below the root. A parent left behind by a
 * service that died is removed by the next service that uses the same place.
 *
 * Placement is atomic: a child is born inside (moving it after the spawn is too late: a shell
 * forks within microseconds of its start). On v1 the spawning thread moves itself into the
 * system's cgroups around posix_spawn (v1 moves single threads). On v2 a thread cannot leave
 * its process's cgroup and glibc before 2.41 has no posix_spawnattr_setcgroup_np, so the whole
 * service moves in for the spawn and back home after it. cg_adopt moves a child only where
 * that move failed.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *const feature_names[CGF__N] = {"memory", "cpu", "cpuacct", "pids", "freezer", "io"};
/* The v1 controller of each feature. */
static const char *const v1_controllers[CGF__N] = {"memory", "cpu", "cpuacct", "pids", "freezer", "blkio"};
static const char *const fallbacks[CGF__N] = {
    "no memory limit; memory statistics summed from /proc over the process group",
    "no processor limit",
    "CPU time summed from /proc over the process group and its exited processes",
    "no limit on the number of processes",
    "pause and resume send SIGSTOP and SIGCONT to the process group",
    "no block I/O accounting",
};

typedef struct cg_host {
    bool done;
    int version;                 /* 0: none usable */
    bool have[CGF__N];
    bool v2_kill;                /* cgroup.kill (Linux 5.14) */
    char own[CGF__N][PATH_MAX];  /* the service's own cgroup of the feature's hierarchy (its home) */
    char parent[CGF__N][PATH_MAX];
    char why[CGF__N][200];
} cg_host;

struct cg_sys {
    int version;
    bool have[CGF__N];
    bool entered[CGF__N];
    bool v2_kill;
    const cg_host *host;
    char path[CGF__N][PATH_MAX];
    char why[CGF__N][200];
    cg_limits lim;
    uint64_t oom_seen;
};

static pthread_mutex_t host_mu = PTHREAD_MUTEX_INITIALIZER;
static cg_host hosts[4]; /* one per Cgroups mode */

/* ------------------------------------------------------------------ small file helpers */

static bool write_file(const char *dir, const char *file, const char *text) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    int e = errno;
    close(fd);
    errno = e;
    return w == (ssize_t)n;
}

/* Reads a small file into buf (NUL-terminated); false if it cannot be read. */
static bool read_file(const char *dir, const char *file, char *buf, size_t len) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, len - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
        if (got == len - 1) break;
    }
    close(fd);
    buf[got] = 0;
    return true;
}

static bool read_u64(const char *dir, const char *file, uint64_t *out) {
    char buf[64];
    if (!read_file(dir, file, buf, sizeof buf)) return false;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf) return false;
    *out = v;
    return true;
}

/* The value of "key N" in a flat keyed file (memory.stat, cpu.stat, memory.events). */
static bool keyed_u64(const char *text, const char *key, uint64_t *out) {
    size_t kl = strlen(key);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, key, kl) == 0 && l[kl] == ' ') {
            *out = strtoull(l + kl + 1, NULL, 10);
            return true;
        }
    }
    return false;
}

static bool file_exists(const char *dir, const char *file) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    return access(p, F_OK) == 0;
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------ limits from a document */

static const json *path3(const json *o, const char *a, const char *b, const char *c) {
    return json_get(json_get(json_get(o, a), b), c);
}

static int64_t int_or(const json *v, int64_t dflt) {
    int64_t n;
    return json_int64(v, &n) ? n : dflt;
}

#define CG_PERIOD_US 100000u

void cg_limits_from_config(const json *cfg, unsigned host_cpus, uint32_t pids_max, cg_limits *out) {
    memset(out, 0, sizeof *out);
    out->cpu_period_us = CG_PERIOD_US;
    out->pids_max = pids_max;
    if (host_cpus == 0) host_cpus = 1;
    const json *vm = json_get(cfg, "VirtualMachine");
    const json *c = json_get(cfg, "Container");
    if (!c) c = json_get(json_get(cfg, "HostedSystem"), "Container");
    int64_t mb = vm ? int_or(path3(vm, "ComputeTopology", "Memory", "SizeInMB"), 0)
                    : int_or(json_get(json_get(c, "Memory"), "SizeInMB"), 0);
    if (mb > 0 && mb < (int64_t)(UINT64_MAX >> 20)) out->memory_bytes = (uint64_t)mb << 20;
    /* CPU in ten-thousandths of a processor (0: no limit). */
    uint64_t cpus_e4 = 0;
    int64_t weight = 0;
    if (vm) {
        /* VirtualMachine.ComputeTopology.Processor: Count virtual processors, Limit in
         * thousandths of a percent of them (100000 = all), Weight relative (100 = default);
         * Processor.Limits (ProcessorLimits, the modify of .../Processor/Limits) overrides. */
        const json *p = json_get(json_get(vm, "ComputeTopology"), "Processor");
        int64_t count = int_or(json_get(p, "Count"), 0);
        int64_t limit = int_or(json_get(p, "Limit"), 0);
        weight = int_or(json_get(p, "Weight"), 0);
        const json *l = json_get(p, "Limits");
        limit = int_or(json_get(l, "Limit"), limit);
        weight = int_or(json_get(l, "Weight"), weight);
        if (count > 0) cpus_e4 = (uint64_t)count * 10000u;
        if (limit > 0 && limit < 100000) {
            uint64_t base = count > 0 ? (uint64_t)count : host_cpus;
            cpus_e4 = base * (uint64_t)limit / 10u;
        }
    } else if (c) {
        /* Container.Processor: Count processors, Maximum in hundredths of a percent of the
         * whole host (10000 = every processor), Weight relative. The smaller cap wins. */
        const json *p = json_get(c, "Processor");
        int64_t count = int_or(json_get(p, "Count"), 0);
        int64_t max = int_or(json_get(p, "Maximum"), 0);
        weight = int_or(json_get(p, "Weight"), 0);
        if (count > 0) cpus_e4 = (uint64_t)count * 10000u;
        if (max > 0 && max < 10000) {
            uint64_t m = (uint64_t)max * host_cpus;
            if (!cpus_e4 || m < cpus_e4) cpus_e4 = m;
        }
    }
    if (cpus_e4 && cpus_e4 < (uint64_t)host_cpus * 10000u) {
        uint64_t q = cpus_e4 * CG_PERIOD_US / 10000u;
        out->cpu_quota_us = q < 1000 ? 1000 : q; /* the kernel's minimum quota is 1 ms */
    }
    if (weight > 0) out->cpu_weight = weight > 10000 ? 10000 : (uint32_t)weight;
}

/* ------------------------------------------------------------------ host detection */

typedef struct mnt {
    char point[PATH_MAX];
    char root[PATH_MAX];
} mnt;

/* Finds the mount of a v1 controller (controller != NULL) or of cgroup2 (NULL). For cgroup2,
 * prefer /sys/fs/cgroup itself (a pure v2 host) and report whether it is that one. */
static bool find_mount(const char *controller, mnt *out, bool *unified_is_main) {
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    if (unified_is_main) *unified_is_main = false;
    while (getline(&line, &cap, f) > 0) {
        char root[PATH_MAX], point[PATH_MAX], fstype[64], super[512];
        char *dash = strstr(line, " - ");
        if (!dash) continue;
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) != 2) continue;
        if (sscanf(dash + 3, "%63s %*s %511s", fstype, super) != 2) continue;
        bool match = false;
        if (!controller) {
            match = strcmp(fstype, "cgroup2") == 0;
        } else if (strcmp(fstype, "cgroup") == 0) {
            char *save = NULL;
            for (char *o = strtok_r(super, ",", &save); o && !match; o = strtok_r(NULL, ",", &save))
                match = strcmp(o, controller) == 0;
        }
        if (!match) continue;
        bool main = strcmp(point, "/sys/fs/cgroup") == 0;
        if (!found || main) {
            snprintf(out->point, sizeof out->point, "%s", point);
            snprintf(out->root, sizeof out->root, "%s", root);
            found = true;
            if (unified_is_main && main) *unified_is_main = true;
        }
    }
    free(line);
    fclose(f);
    return found;
}

/* The service's own cgroup in a hierarchy: the v1 line naming controller, or the v2 "0::" line. */
static bool own_path(const char *controller, char *out, size_t len) {
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f) return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (!controller) {
            found = strncmp(line, "0", 1) == 0 && c1 == line + 1 && !*ctrls;
        } else {
            char list[256];
            snprintf(list, sizeof list, "%s", ctrls);
            char *save = NULL;
            for (char *o = strtok_r(list, ",", &save); o && !found; o = strtok_r(NULL, ",", &save))
                found = strcmp(o, controller) == 0;
        }
        if (found) snprintf(out, len, "%s", path);
    }
    free(line);
    fclose(f);
    return found;
}

/* mount point + own path relative to the mount's root. */
static bool own_dir(const mnt *m, const char *own, char *out, size_t len) {
    const char *rel = own;
    size_t rl = strlen(m->root);
    if (strcmp(m->root, "/") != 0 && strncmp(own, m->root, rl) == 0) rel = own + rl;
    if (strcmp(rel, "/") == 0) rel = "";
    int n = snprintf(out, len, "%s%s", m->point, rel);
    if (n < 0 || (size_t)n >= len) return false;
    struct stat st;
    return stat(out, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Removes the parents left by services that died (hcsemu-<pid> with no such process). */
static void sweep_stale(const char *base) {
    DIR *d = opendir(base);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "hcsemu-", 7) != 0) continue;
        char *end;
        long pid = strtol(e->d_name + 7, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", base, e->d_name);
        DIR *sd = opendir(p);
        struct dirent *se;
        while (sd && (se = readdir(sd))) {
            if (se->d_type != DT_DIR || se->d_name[0] == '.') continue;
            char sp[PATH_MAX + 600];
            snprintf(sp, sizeof sp, "%s/%s", p, se->d_name);
            rmdir(sp); /* fails (EBUSY) while processes live there: then it is not stale */
        }
        if (sd) closedir(sd);
        rmdir(p);
    }
    closedir(d);
}

static void host_cleanup(void);

/* A dry detection (a report before any system exists) writes nothing. */
static __thread bool dry_run;

static bool make_parent(const char *base, char *parent, size_t len, char *why, size_t wlen) {
    snprintf(parent, len, "%s/hcsemu-%d", base, (int)getpid());
    if (dry_run) return true;
    sweep_stale(base);
    if (mkdir(parent, 0755) == 0 || errno == EEXIST) return true;
    snprintf(why, wlen, "cannot create %.150s: %s", parent, strerror(errno));
    parent[0] = 0;
    return false;
}

static void detect_v1(cg_host *h) {
    h->version = 1;
    bool any = false;
    for (int f = 0; f < CGF__N; f++) {
        mnt m;
        char own[PATH_MAX], base[PATH_MAX];
        if (!find_mount(v1_controllers[f], &m, NULL)) {
            snprintf(h->why[f], sizeof h->why[f], "the %s controller is not mounted", v1_controllers[f]);
            continue;
        }
        if (!own_path(v1_controllers[f], own, sizeof own) || !own_dir(&m, own, base, sizeof base)) {
            snprintf(h->why[f], sizeof h->why[f], "the service's %s cgroup was not found", v1_controllers[f]);
            continue;
        }
        if (access(base, W_OK) != 0) {
            snprintf(h->why[f], sizeof h->why[f], "%.150s is not writable (not root, no delegation)", base);
            continue;
        }
        if (!make_parent(base, h->parent[f], sizeof h->parent[f], h->why[f], sizeof h->why[f])) continue;
        snprintf(h->own[f], sizeof h->own[f], "%s", base);
        h->have[f] = true;
        any = true;
    }
    if (!any) h->version = 0;
}

/* v2: the controllers a feature needs in cgroup.subtree_control (CPU time and the freezer
 * are core files of every non-root cgroup). */
static const char *const v2_controllers[CGF__N] = {"memory", "cpu", NULL, "pids", NULL, "io"};

static bool has_word(const char *list, const char *w) {
    size_t wl = strlen(w);
    for (const char *p = list; (p = strstr(p, w)); p += wl)
        if ((p == list || p[-1] == ' ') && (p[wl] == 0 || p[wl] == ' ' || p[wl] == '\n')) return true;
    return false;
}

/* Enables in dir's cgroup.subtree_control every wanted controller dir offers. */
static void enable_controllers(const char *dir) {
    char avail[512], on[512];
    if (dry_run) return;
    if (!read_file(dir, "cgroup.controllers", avail, sizeof avail)) return;
    if (!read_file(dir, "cgroup.subtree_control", on, sizeof on)) on[0] = 0;
    for (int f = 0; f < CGF__N; f++) {
        if (!v2_controllers[f] || !has_word(avail, v2_controllers[f]) || has_word(on, v2_controllers[f])) continue;
        char w[32];
        snprintf(w, sizeof w, "+%s", v2_controllers[f]);
        write_file(dir, "cgroup.subtree_control", w);
    }
}

static void detect_v2(cg_host *h) {
    mnt m;
    char own[PATH_MAX], base[PATH_MAX];
    const char *why = NULL;
    if (!find_mount(NULL, &m, NULL)) why = "no cgroup2 hierarchy is mounted";
    else if (!own_path(NULL, own, sizeof own) || !own_dir(&m, own, base, sizeof base))
        why = "the service's cgroup2 cgroup was not found";
    else if (access(base, W_OK) != 0) why = "the service's cgroup is not writable (not root, no delegation)";
    if (why) {
        for (int f = 0; f < CGF__N; f++) snprintf(h->why[f], sizeof h->why[f], "%s", why);
        return;
    }
    /* The own cgroup holds the service, so (unless it is the root) the kernel refuses to enable
     * controllers below it; as root the hierarchy's root takes the parent instead. */
    enable_controllers(base);
    char on[512] = "";
    read_file(base, "cgroup.subtree_control", on, sizeof on);
    bool want_more = false;
    char avail_root[512] = "";
    read_file(m.point, "cgroup.controllers", avail_root, sizeof avail_root);
    for (int f = 0; f < CGF__N; f++)
        if (v2_controllers[f] && has_word(avail_root, v2_controllers[f]) && !has_word(on, v2_controllers[f])) want_more = true;
    char home[PATH_MAX];
    snprintf(home, sizeof home, "%s", base);
    if (want_more && strcmp(base, m.point) != 0 && access(m.point, W_OK) == 0) snprintf(base, sizeof base, "%s", m.point);
    char parent[PATH_MAX], pwhy[200] = "";
    if (!make_parent(base, parent, sizeof parent, pwhy, sizeof pwhy)) {
        for (int f = 0; f < CGF__N; f++) snprintf(h->why[f], sizeof h->why[f], "%s", pwhy);
        return;
    }
    enable_controllers(parent);
    const char *probe = dry_run ? base : parent; /* dry: what the parent would inherit */
    if (!dry_run) read_file(parent, "cgroup.subtree_control", on, sizeof on);
    else if (strcmp(base, m.point) == 0) read_file(base, "cgroup.controllers", on, sizeof on);
    h->version = 2;
    h->v2_kill = file_exists(probe, "cgroup.kill") || (dry_run && strcmp(base, m.point) == 0);
    for (int f = 0; f < CGF__N; f++) {
        snprintf(h->parent[f], sizeof h->parent[f], "%s", parent);
        snprintf(h->own[f], sizeof h->own[f], "%s", home);
        if (f == CGF_FREEZER) h->have[f] = file_exists(probe, "cgroup.freeze") || (dry_run && strcmp(base, m.point) == 0);
        else if (f == CGF_CPUACCT) h->have[f] = file_exists(probe, "cpu.stat");
        else h->have[f] = has_word(on, v2_controllers[f]);
        if (!h->have[f])
            snprintf(h->why[f], sizeof h->why[f], "the %s controller is not available in %.150s",
                     v2_controllers[f] ? v2_controllers[f] : feature_names[f], parent);
    }
}

static bool is_main_v2(void) {
    mnt m;
    bool main = false;
    return find_mount(NULL, &m, &main) && main;
}

static pthread_once_t cleanup_once = PTHREAD_ONCE_INIT;
static void register_cleanup(void) { atexit(host_cleanup); }

static const cg_host *host_for(int mode) {
    if (mode < 0 || mode > CGM_V2) mode = CGM_AUTO;
    pthread_mutex_lock(&host_mu);
    cg_host *h = &hosts[mode];
    if (!h->done) {
        memset(h, 0, sizeof *h);
        h->done = true;
        if (mode == CGM_OFF) {
            for (int f = 0; f < CGF__N; f++) snprintf(h->why[f], sizeof h->why[f], "the Cgroups switch is Off");
        } else if (mode == CGM_V2 || (mode == CGM_AUTO && is_main_v2())) {
            detect_v2(h);
        } else {
            detect_v1(h);
        }
        pthread_once(&cleanup_once, register_cleanup);
    }
    pthread_mutex_unlock(&host_mu);
    return h;
}

/* At exit, the parents go (they are empty once every system has stopped). */
static void host_cleanup(void) {
    for (int m = 0; m < 4; m++)
        for (int f = 0; f < CGF__N; f++)
            if (hosts[m].parent[f][0]) rmdir(hosts[m].parent[f]);
}

/* Kills what is left in <base>/hcsemu-<pid>/<system> and removes the folders. */
static void cleanup_parent(const char *base, int pid) {
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/hcsemu-%d", base, pid);
    DIR *d = opendir(p);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
        char sp[PATH_MAX + 400];
        snprintf(sp, sizeof sp, "%s/%s", p, e->d_name);
        char procs[PATH_MAX + 420];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", sp);
        for (int round = 0; round < 100 && rmdir(sp) != 0 && errno == EBUSY; round++) {
            FILE *f = fopen(procs, "re");
            int victim;
            while (f && fscanf(f, "%d", &victim) == 1)
                if (victim > 1 && victim != (int)getpid()) kill(victim, SIGKILL);
            if (f) fclose(f);
            sleep_ms(2);
        }
    }
    closedir(d);
    rmdir(p);
}

void cg_cleanup_service(int pid) {
    for (int f = -1; f < CGF__N; f++) {
        mnt m;
        char own[PATH_MAX], base[PATH_MAX];
        const char *ctl = f < 0 ? NULL : v1_controllers[f];
        if (!find_mount(ctl, &m, NULL)) continue;
        if (own_path(ctl, own, sizeof own) && own_dir(&m, own, base, sizeof base)) cleanup_parent(base, pid);
        cleanup_parent(m.point, pid);
    }
}

/* ------------------------------------------------------------------ a system's cgroup */

bool cg_has(const cg_sys *cg, int feature) { return cg && feature >= 0 && feature < CGF__N && cg->have[feature]; }

bool cg_active(const cg_sys *cg) {
    for (int f = 0; cg && f < CGF__N; f++)
        if (cg->have[f]) return true;
    return false;
}

/* v1 features whose directory an earlier feature already stands for (co-mounted controllers). */
static bool dup_dir(const cg_sys *cg, int f) {
    for (int g = 0; g < f; g++)
        if (cg->have[g] && strcmp(cg->path[g], cg->path[f]) == 0) return true;
    return false;
}

/* The directories of the system, each once (v2: one). */
static size_t dirs(const cg_sys *cg, const char *out[CGF__N]) {
    size_t n = 0;
    for (int f = 0; f < CGF__N; f++) {
        if (!cg->have[f] || dup_dir(cg, f)) continue;
        if (cg->version == 2 && n == 1) break;
        out[n++] = cg->path[f];
    }
    return n;
}

static bool set_v1_memory(const char *dir, uint64_t bytes, char *err, size_t errlen) {
    char v[32];
    if (bytes) snprintf(v, sizeof v, "%llu", (unsigned long long)bytes);
    else snprintf(v, sizeof v, "-1");
    bool memsw = file_exists(dir, "memory.memsw.limit_in_bytes");
    /* memsw (memory + swap) must stay >= the memory limit: raise it first, lower it last. */
    if (memsw && !bytes) write_file(dir, "memory.memsw.limit_in_bytes", v);
    bool ok = write_file(dir, "memory.limit_in_bytes", v);
    if (!ok && errno == EINVAL && memsw) {
        write_file(dir, "memory.memsw.limit_in_bytes", v);
        ok = write_file(dir, "memory.limit_in_bytes", v);
    }
    if (ok && memsw && bytes) write_file(dir, "memory.memsw.limit_in_bytes", v);
    if (!ok) snprintf(err, errlen, "the memory limit %s cannot be set: %s", v, strerror(errno));
    return ok;
}

bool cg_set_limits(cg_sys *cg, const cg_limits *lim, char *err, size_t errlen) {
    if (!cg) return true;
    char v[64];
    bool ok = true;
    if (cg->have[CGF_MEMORY]) {
        const char *d = cg->path[CGF_MEMORY];
        if (cg->version == 2) {
            if (lim->memory_bytes) snprintf(v, sizeof v, "%llu", (unsigned long long)lim->memory_bytes);
            else snprintf(v, sizeof v, "max");
            /* HCS's limit is a commit limit: nothing beyond it, swap included */
            write_file(d, "memory.swap.max", lim->memory_bytes ? "0" : "max");
            if (!write_file(d, "memory.max", v)) {
                snprintf(err, errlen, "the memory limit %s cannot be set: %s", v, strerror(errno));
                ok = false;
            }
        } else {
            ok = set_v1_memory(d, lim->memory_bytes, err, errlen);
        }
    }
    if (ok && cg->have[CGF_CPU]) {
        const char *d = cg->path[CGF_CPU];
        if (cg->version == 2) {
            if (lim->cpu_quota_us)
                snprintf(v, sizeof v, "%llu %llu", (unsigned long long)lim->cpu_quota_us,
                         (unsigned long long)lim->cpu_period_us);
            else snprintf(v, sizeof v, "max %llu", (unsigned long long)lim->cpu_period_us);
            ok = write_file(d, "cpu.max", v);
            snprintf(v, sizeof v, "%u", lim->cpu_weight ? lim->cpu_weight : 100u);
            ok = write_file(d, "cpu.weight", v) && ok;
        } else {
            snprintf(v, sizeof v, "%llu", (unsigned long long)lim->cpu_period_us);
            write_file(d, "cpu.cfs_period_us", v);
            if (lim->cpu_quota_us) snprintf(v, sizeof v, "%llu", (unsigned long long)lim->cpu_quota_us);
            else snprintf(v, sizeof v, "-1");
            ok = write_file(d, "cpu.cfs_quota_us", v);
            /* v2's weight 100 is v1's 1024 shares */
            uint64_t shares = (uint64_t)(lim->cpu_weight ? lim->cpu_weight : 100u) * 1024u / 100u;
            snprintf(v, sizeof v, "%llu", (unsigned long long)(shares < 2 ? 2 : shares));
            ok = write_file(d, "cpu.shares", v) && ok;
        }
        if (!ok) snprintf(err, errlen, "the processor limits cannot be set: %s", strerror(errno));
    }
    if (ok && cg->have[CGF_PIDS]) {
        if (lim->pids_max) snprintf(v, sizeof v, "%u", lim->pids_max);
        else snprintf(v, sizeof v, "max");
        if (!write_file(cg->path[CGF_PIDS], "pids.max", v)) {
            snprintf(err, errlen, "the process limit cannot be set: %s", strerror(errno));
            ok = false;
        }
    }
    if (ok) cg->lim = *lim;
    return ok;
}

cg_sys *cg_create(const char *name, int mode, const cg_limits *lim) {
    cg_sys *cg = calloc(1, sizeof *cg);
    if (!cg) return NULL;
    const cg_host *h = host_for(mode);
    cg->host = h;
    cg->version = h->version;
    cg->v2_kill = h->v2_kill;
    for (int f = 0; f < CGF__N; f++) {
        snprintf(cg->why[f], sizeof cg->why[f], "%s", h->why[f]);
        if (!h->have[f]) continue;
        int n = snprintf(cg->path[f], sizeof cg->path[f], "%s/%s", h->parent[f], name);
        if (n < 0 || (size_t)n >= sizeof cg->path[f]) continue;
        bool made = false;
        for (int g = 0; g < f && !made; g++) made = cg->have[g] && strcmp(cg->path[g], cg->path[f]) == 0;
        if (!made && mkdir(cg->path[f], 0755) != 0 && errno != EEXIST) {
            int e = errno;
            char what[160];
            snprintf(what, sizeof what, "%.150s", cg->path[f]);
            snprintf(cg->why[f], sizeof cg->why[f], "cannot create %s: %s", what, strerror(e));
            continue;
        }
        cg->have[f] = true;
    }
    if (cg->have[CGF_FREEZER] && cg->version == 2 && !file_exists(cg->path[CGF_FREEZER], "cgroup.freeze")) {
        cg->have[CGF_FREEZER] = false;
        snprintf(cg->why[CGF_FREEZER], sizeof cg->why[CGF_FREEZER], "no cgroup.freeze (Linux before 5.2)");
    }
    char err[256];
    if (lim && !cg_set_limits(cg, lim, err, sizeof err)) {
        /* limits the kernel refuses at creation: say so, keep what works */
        for (int f = 0; f < CGF__N; f++)
            if (f == CGF_MEMORY || f == CGF_CPU || f == CGF_PIDS) snprintf(cg->why[f], sizeof cg->why[f], "%.190s", err);
    }
    if (!cg_active(cg)) cg->version = 0;
    return cg;
}

void cg_destroy(cg_sys *cg) {
    if (!cg) return;
    const char *d[CGF__N];
    size_t n = dirs(cg, d);
    for (size_t i = 0; i < n; i++) {
        /* an exiting task may hold it for a moment after cgroup.procs is empty */
        for (int tries = 0; rmdir(d[i]) != 0 && errno == EBUSY && tries < 200; tries++) sleep_ms(1);
    }
    free(cg);
}

/* ------------------------------------------------------------------ placement */

void cg_spawn_enter(cg_sys *cg) {
    if (!cg_active(cg)) return;
    if (cg->version == 2) {
        /* A v2 thread cannot leave its process's cgroup: the whole service goes in for the
         * spawn and back out after (the callers hold the lock that keeps this system's
         * freeze and kill away meanwhile). */
        char pid[24];
        const char *d[CGF__N];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        cg->entered[0] = dirs(cg, d) && write_file(d[0], "cgroup.procs", pid);
        return;
    }
    char tid[24];
    snprintf(tid, sizeof tid, "%ld", (long)syscall(SYS_gettid));
    for (int f = 0; f < CGF__N; f++) {
        cg->entered[f] = false;
        if (!cg->have[f]) continue;
        if (dup_dir(cg, f)) {
            for (int g = 0; g < f; g++)
                if (cg->have[g] && strcmp(cg->path[g], cg->path[f]) == 0) cg->entered[f] = cg->entered[g];
            continue;
        }
        cg->entered[f] = write_file(cg->path[f], "tasks", tid);
    }
}

void cg_spawn_leave(cg_sys *cg) {
    if (!cg_active(cg)) return;
    if (cg->version == 2) {
        char pid[24];
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        if (cg->entered[0] && !write_file(cg->host->own[0], "cgroup.procs", pid))
            fprintf(stderr, "hcsemu: warning: cannot return to %s: %s\n", cg->host->own[0], strerror(errno));
        return;
    }
    char tid[24];
    snprintf(tid, sizeof tid, "%ld", (long)syscall(SYS_gettid));
    for (int f = 0; f < CGF__N; f++)
        if (cg->entered[f] && !dup_dir(cg, f)) write_file(cg->host->own[f], "tasks", tid);
}

void cg_adopt(cg_sys *cg, int pid) {
    if (!cg || pid <= 0) return;
    char p[24];
    snprintf(p, sizeof p, "%d", pid);
    for (int f = 0; f < CGF__N; f++) {
        if (!cg->have[f] || dup_dir(cg, f)) continue;
        if (cg->entered[cg->version == 2 ? 0 : f]) continue; /* born inside */
        write_file(cg->path[f], "cgroup.procs", p);
        if (cg->version == 2) return;
    }
}

/* ------------------------------------------------------------------ freeze, kill */

static bool v1_freezer_state(const char *dir, const char *want) {
    char s[32];
    return read_file(dir, "freezer.state", s, sizeof s) && strncmp(s, want, strlen(want)) == 0;
}

static bool v2_event(const char *dir, const char *key, uint64_t want) {
    char buf[256];
    uint64_t v;
    return read_file(dir, "cgroup.events", buf, sizeof buf) && keyed_u64(buf, key, &v) && v == want;
}

bool cg_freeze(cg_sys *cg, bool frozen, uint32_t timeout_ms) {
    if (!cg_has(cg, CGF_FREEZER)) return false;
    const char *d = cg->path[CGF_FREEZER];
    bool ok = cg->version == 2 ? write_file(d, "cgroup.freeze", frozen ? "1" : "0")
                               : write_file(d, "freezer.state", frozen ? "FROZEN" : "THAWED");
    if (!ok) return false;
    uint64_t deadline = mono_ms() + timeout_ms;
    for (;;) {
        bool done = cg->version == 2 ? v2_event(d, "frozen", frozen ? 1 : 0)
                                     : v1_freezer_state(d, frozen ? "FROZEN" : "THAWED");
        if (done) return true;
        if (mono_ms() >= deadline) return true; /* the freezer is in effect; a straggler finishes later */
        sleep_ms(1);
    }
}

size_t cg_pids(cg_sys *cg, int *out, size_t cap) {
    if (!cg_active(cg)) return 0;
    const char *d[CGF__N];
    size_t nd = dirs(cg, d), n = 0;
    /* Every directory of a system holds the same processes; the first (memory) is enough,
     * unless a child was adopted only into some: merge the lists. */
    for (size_t i = 0; i < nd; i++) {
        char p[PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/cgroup.procs", d[i]);
        FILE *f = fopen(p, "re");
        if (!f) continue;
        int pid;
        while (n < cap && fscanf(f, "%d", &pid) == 1) {
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++) seen = out[k] == pid;
            if (!seen) out[n++] = pid;
        }
        fclose(f);
        if (cg->version == 2) break;
    }
    return n;
}

bool cg_empty(cg_sys *cg) {
    if (!cg_active(cg)) return true;
    const char *d[CGF__N];
    if (cg->version == 2 && dirs(cg, d) && v2_event(d[0], "populated", 0)) return true;
    int x;
    return cg_pids(cg, &x, 1) == 0;
}

void cg_release(cg_sys *cg, int pid) {
    if (!cg_has(cg, CGF_FREEZER) || cg->version != 1 || pid <= 0) return;
    char p[24];
    snprintf(p, sizeof p, "%d", pid);
    write_file(cg->host->parent[CGF_FREEZER], "cgroup.procs", p);
}

bool cg_kill(cg_sys *cg, uint32_t timeout_ms) {
    if (!cg_active(cg)) return false;
    uint64_t deadline = mono_ms() + timeout_ms;
    const char *d[CGF__N];
    dirs(cg, d);
    if (cg->version == 2 && cg->v2_kill) write_file(d[0], "cgroup.kill", "1");
    int self = (int)getpid();
    int *pids = malloc(sizeof *pids * 4096);
    if (!pids) return false;
    for (;;) {
        size_t n = cg_pids(cg, pids, 4096);
        if (n == 0) break;
        /* Frozen, nothing can fork between the read and the kill; a thaw then lets the
         * SIGKILLs land (a v1-frozen task dies only once thawed). */
        bool froze = cg_freeze(cg, true, 50);
        n = cg_pids(cg, pids, 4096);
        for (size_t i = 0; i < n; i++)
            if (pids[i] != self && pids[i] > 1) kill(pids[i], SIGKILL);
        if (froze) cg_freeze(cg, false, 50);
        if (mono_ms() >= deadline) break;
        sleep_ms(1);
    }
    free(pids);
    return cg_empty(cg);
}

/* ------------------------------------------------------------------ statistics */

static void v1_blkio(const char *dir, const char *file, uint64_t *rd, uint64_t *wr) {
    char *buf = malloc(16384);
    if (!buf) return;
    if (read_file(dir, file, buf, 16384)) {
        for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
            char op[16];
            unsigned long long v;
            if (sscanf(l, "%*s %15s %llu", op, &v) != 2) continue;
            if (strcmp(op, "Read") == 0) *rd += v;
            else if (strcmp(op, "Write") == 0) *wr += v;
        }
    }
    free(buf);
}

void cg_read_stats(cg_sys *cg, cg_stat *out) {
    memset(out, 0, sizeof *out);
    if (!cg) return;
    char *buf = malloc(16384);
    if (!buf) return;
    if (cg->have[CGF_CPUACCT]) {
        const char *d = cg->path[CGF_CPUACCT];
        uint64_t u, s;
        if (cg->version == 2) {
            if (read_file(d, "cpu.stat", buf, 16384) && keyed_u64(buf, "user_usec", &u) && keyed_u64(buf, "system_usec", &s)) {
                out->user_100ns = u * 10u;
                out->kernel_100ns = s * 10u;
                out->have_cpu = true;
            }
        } else if (read_u64(d, "cpuacct.usage_user", &u) && read_u64(d, "cpuacct.usage_sys", &s)) {
            out->user_100ns = u / 100u;
            out->kernel_100ns = s / 100u;
            out->have_cpu = true;
        }
    }
    if (cg->have[CGF_MEMORY]) {
        const char *d = cg->path[CGF_MEMORY];
        uint64_t v;
        if (cg->version == 2) {
            out->have_memory = read_u64(d, "memory.current", &out->mem_usage);
            if (!read_u64(d, "memory.peak", &out->mem_peak)) out->mem_peak = out->mem_usage; /* Linux < 5.19 */
            if (read_file(d, "memory.stat", buf, 16384) && keyed_u64(buf, "anon", &v)) out->mem_anon = v;
        } else {
            out->have_memory = read_u64(d, "memory.usage_in_bytes", &out->mem_usage);
            read_u64(d, "memory.max_usage_in_bytes", &out->mem_peak);
            if (read_file(d, "memory.stat", buf, 16384) && keyed_u64(buf, "total_rss", &v)) out->mem_anon = v;
        }
        if (out->mem_peak < out->mem_usage) out->mem_peak = out->mem_usage;
    }
    if (cg->have[CGF_IO]) {
        const char *d = cg->path[CGF_IO];
        if (cg->version == 2) {
            if (read_file(d, "io.stat", buf, 16384)) {
                out->have_io = true;
                for (char *t = strtok(buf, " \n"); t; t = strtok(NULL, " \n")) {
                    unsigned long long v;
                    if (sscanf(t, "rbytes=%llu", &v) == 1) out->io_read_bytes += v;
                    else if (sscanf(t, "wbytes=%llu", &v) == 1) out->io_write_bytes += v;
                    else if (sscanf(t, "rios=%llu", &v) == 1) out->io_read_ops += v;
                    else if (sscanf(t, "wios=%llu", &v) == 1) out->io_write_ops += v;
                }
            }
        } else {
            out->have_io = true;
            v1_blkio(d, "blkio.throttle.io_service_bytes", &out->io_read_bytes, &out->io_write_bytes);
            v1_blkio(d, "blkio.throttle.io_serviced", &out->io_read_ops, &out->io_write_ops);
        }
    }
    free(buf);
}

bool cg_take_oom_kill(cg_sys *cg) {
    if (!cg_has(cg, CGF_MEMORY)) return false;
    char buf[1024];
    uint64_t n;
    const char *file = cg->version == 2 ? "memory.events" : "memory.oom_control";
    if (!read_file(cg->path[CGF_MEMORY], file, buf, sizeof buf) || !keyed_u64(buf, "oom_kill", &n)) return false;
    if (n <= cg->oom_seen) return false;
    cg->oom_seen++;
    return true;
}

/* ------------------------------------------------------------------ reporting */

static json *report(int version, const bool have[CGF__N], const char (*paths)[PATH_MAX],
                    const char (*why)[200], const cg_limits *lim, bool v2_kill) {
    json *o = json_new_object();
    json_set(o, "Version", json_new_int(version));
    bool any = false;
    for (int f = 0; f < CGF__N; f++) any = any || have[f];
    if (any) {
        json *p = json_new_object();
        for (int f = 0; f < CGF__N; f++)
            if (have[f]) json_set(p, feature_names[f], json_new_string(paths[f]));
        const char *main = have[CGF_MEMORY] ? paths[CGF_MEMORY] : NULL;
        for (int f = 0; !main && f < CGF__N; f++)
            if (have[f]) main = paths[f];
        json_set(o, "Path", json_new_string(main));
        if (version == 1) json_set(o, "Paths", p);
        else json_free(p);
    }
    json *ctl = json_new_array();
    for (int f = 0; f < CGF__N; f++)
        if (have[f]) json_append(ctl, json_new_string(feature_names[f]));
    json_set(o, "Controllers", ctl);
    json_set(o, "Kill", json_new_string(!any                       ? "process group and environment marker"
                                        : version == 2 && v2_kill ? "cgroup.kill"
                                        : have[CGF_FREEZER]        ? "freeze, SIGKILL each process, thaw"
                                                                   : "SIGKILL each process until empty"));
    if (lim) {
        json *l = json_new_object(); /* only what is enforced (0: no limit) */
        if (have[CGF_MEMORY]) json_set(l, "MemoryBytes", json_new_uint(lim->memory_bytes));
        if (have[CGF_CPU]) {
            json_set(l, "CpuQuotaUs", json_new_uint(lim->cpu_quota_us));
            json_set(l, "CpuPeriodUs", json_new_uint(lim->cpu_period_us));
            json_set(l, "CpuWeight", json_new_uint(lim->cpu_weight ? lim->cpu_weight : 100));
        }
        if (have[CGF_PIDS]) json_set(l, "PidsMax", json_new_uint(lim->pids_max));
        json_set(o, "Limits", l);
    }
    json *fb = json_new_object();
    for (int f = 0; f < CGF__N; f++) {
        if (have[f]) continue;
        char *t = NULL;
        if (asprintf(&t, "%s (%s)", fallbacks[f], why[f][0] ? why[f] : "unavailable") < 0) t = NULL;
        json_set(fb, feature_names[f], json_new_string(t ? t : fallbacks[f]));
        free(t);
    }
    json_set(o, "Fallbacks", fb);
    return o;
}

json *cg_isolation_json(const cg_sys *cg) {
    if (!cg) {
        bool none[CGF__N] = {false};
        static const char nop[CGF__N][PATH_MAX];
        static const char nwhy[CGF__N][200];
        return report(0, none, nop, nwhy, NULL, false);
    }
    return report(cg->version, cg->have, cg->path, cg->why, &cg->lim, cg->v2_kill);
}

json *cg_host_json(int mode) {
    if (mode < 0 || mode > CGM_V2) mode = CGM_AUTO;
    pthread_mutex_lock(&host_mu);
    bool done = hosts[mode].done;
    pthread_mutex_unlock(&host_mu);
    if (done) {
        const cg_host *h = host_for(mode);
        return report(h->version, h->have, h->parent, h->why, NULL, h->v2_kill);
    }
    /* No system has been made yet: what one would get, found without writing anything. */
    cg_host *h = calloc(1, sizeof *h);
    if (!h) return json_new_object();
    dry_run = true;
    if (mode == CGM_OFF) {
        for (int f = 0; f < CGF__N; f++) snprintf(h->why[f], sizeof h->why[f], "the Cgroups switch is Off");
    } else if (mode == CGM_V2 || (mode == CGM_AUTO && is_main_v2())) {
        detect_v2(h);
    } else {
        detect_v1(h);
    }
    dry_run = false;
    json *o = report(h->version, h->have, h->parent, h->why, NULL, h->v2_kill);
    free(h);
    return o;
}

void cg_warn_once(const cg_sys *cg) {
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    if (!cg) return;
    char missing[200] = "";
    const char *why = NULL;
    for (int f = 0; f < CGF__N; f++) {
        if (cg->have[f]) continue;
        if (strstr(cg->why[f], "switch is Off")) return; /* asked for: no warning */
        size_t l = strlen(missing);
        snprintf(missing + l, sizeof missing - l, "%s%s", l ? ", " : "", feature_names[f]);
        if (!why) why = cg->why[f];
    }
    if (!why || atomic_flag_test_and_set(&warned)) return;
    fprintf(stderr, "hcsemu: warning: no cgroup for %s (%s): those fall back to the process group; the Isolation "
            "property of each system says what is in effect\n", missing, why);
}
