/*
 * Unit tests of cgroup.c: the mapping of a configuration to limits (everywhere), and, where
 * this process may create cgroups (root, or a delegated hierarchy), a cgroup's whole life:
 * limits written, a child born inside, freeze, statistics, kill (a setsid'ed grandchild
 * included) and removal. Without cgroup access that part checks the fallback report instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"

static int failures;
#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c)) {                                                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                                     \
            failures++;                                                                                                \
        }                                                                                                              \
    } while (0)

static cg_limits limits_of(const char *doc, unsigned cpus) {
    json *cfg = json_parse(doc, strlen(doc), NULL, 0);
    cg_limits l;
    cg_limits_from_config(cfg, cpus, 100, &l);
    json_free(cfg);
    return l;
}

static void test_mapping(void) {
    cg_limits l = limits_of("{\"Container\":{}}", 4);
    CHECK(l.memory_bytes == 0 && l.cpu_quota_us == 0 && l.cpu_weight == 0 && l.pids_max == 100);
    CHECK(l.cpu_period_us == 100000);
    l = limits_of("{\"Container\":{\"Memory\":{\"SizeInMB\":64},\"Processor\":{\"Count\":1,\"Weight\":300}}}", 4);
    CHECK(l.memory_bytes == 64u << 20);
    CHECK(l.cpu_quota_us == 100000); /* one processor of four */
    CHECK(l.cpu_weight == 300);
    /* Maximum: hundredths of a percent of the whole host; 2500 of 4 processors is one */
    l = limits_of("{\"Container\":{\"Processor\":{\"Maximum\":2500}}}", 4);
    CHECK(l.cpu_quota_us == 100000);
    /* the smaller of Count and Maximum wins */
    l = limits_of("{\"Container\":{\"Processor\":{\"Count\":3,\"Maximum\":1250}}}", 4);
    CHECK(l.cpu_quota_us == 50000);
    /* Count at least the host's processors: no limit */
    l = limits_of("{\"Container\":{\"Processor\":{\"Count\":8}}}", 4);
    CHECK(l.cpu_quota_us == 0);
    l = limits_of("{\"VirtualMachine\":{\"ComputeTopology\":{\"Memory\":{\"SizeInMB\":512},"
                  "\"Processor\":{\"Count\":2,\"Limit\":50000}}}}", 4);
    CHECK(l.memory_bytes == 512u << 20);
    CHECK(l.cpu_quota_us == 100000); /* half of two virtual processors */
    l = limits_of("{\"VirtualMachine\":{\"ComputeTopology\":{\"Processor\":{\"Count\":2,"
                  "\"Limits\":{\"Limit\":25000,\"Weight\":50}}}}}", 4);
    CHECK(l.cpu_quota_us == 50000 && l.cpu_weight == 50);
    l = limits_of("{\"Container\":{\"Processor\":{\"Weight\":99999}}}", 4);
    CHECK(l.cpu_weight == 10000);
    /* a tiny share still gets the kernel's minimum quota */
    l = limits_of("{\"Container\":{\"Processor\":{\"Maximum\":1}}}", 1);
    CHECK(l.cpu_quota_us == 1000);
    /* HostedSystem carries its Container */
    l = limits_of("{\"HostedSystem\":{\"Container\":{\"Memory\":{\"SizeInMB\":1}}}}", 1);
    CHECK(l.memory_bytes == 1u << 20);
}

static bool dir_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_life(int mode) {
    cg_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.memory_bytes = 256u << 20;
    lim.cpu_period_us = 100000;
    lim.cpu_quota_us = 50000;
    lim.pids_max = 64;
    char name[64];
    snprintf(name, sizeof name, "cgtest-%d-%d", (int)getpid(), mode);
    cg_sys *cg = cg_create(name, mode, &lim);
    CHECK(cg != NULL);
    json *rep = cg_isolation_json(cg);
    const char *path = json_str(json_get(rep, "Path"));
    if (!cg_active(cg)) {
        /* No access: every feature is reported as a fallback, with the reason. */
        CHECK(json_len(json_get(rep, "Controllers")) == 0);
        CHECK(json_len(json_get(rep, "Fallbacks")) == CGF__N);
        CHECK(!cg_freeze(cg, true, 10) && !cg_kill(cg, 10) && cg_empty(cg));
        printf("test_cgroup: mode %d: no cgroup access, fallback reported\n", mode);
        json_free(rep);
        cg_destroy(cg);
        return;
    }
    CHECK(path && dir_exists(path));
    char *saved = path ? strdup(path) : NULL;
    /* A child born inside: it forks a setsid'ed grandchild, then both sleep. */
    char *argv[] = {"/bin/sh", "-c", "setsid sleep 300 & exec sleep 300", NULL};
    pid_t pid;
    cg_spawn_enter(cg);
    int rc = posix_spawn(&pid, argv[0], NULL, NULL, argv, NULL);
    cg_spawn_leave(cg);
    CHECK(rc == 0);
    cg_adopt(cg, pid);
    int pids[16];
    size_t n = 0;
    /* the shell and its setsid'ed child (a busy machine may take a while to start them) */
    for (int i = 0; i < 1000 && (n = cg_pids(cg, pids, 16)) < 2; i++) sleep_ms(5);
    if (n < 2) fprintf(stderr, "test_cgroup: mode %d: %zu processes in the cgroup\n", mode, n);
    CHECK(n >= 2);
    bool found = false;
    for (size_t i = 0; i < n; i++) found = found || pids[i] == pid;
    CHECK(found);
    /* this process stayed where it was */
    for (size_t i = 0; i < n; i++) CHECK(pids[i] != (int)getpid());
    bool reaped = false;
    if (cg_has(cg, CGF_FREEZER)) {
        CHECK(cg_freeze(cg, true, 2000));
        /* a process killed while its system is frozen dies (cg_release), the rest stay frozen */
        kill(pid, SIGKILL);
        cg_release(cg, pid);
        int st2 = 0;
        for (int i = 0; i < 1000 && !reaped; i++) {
            reaped = waitpid(pid, &st2, WNOHANG) == pid;
            if (!reaped) sleep_ms(5);
        }
        CHECK(reaped && WIFSIGNALED(st2) && WTERMSIG(st2) == SIGKILL);
        CHECK(cg_freeze(cg, false, 2000));
    }
    cg_stat st;
    cg_read_stats(cg, &st);
    if (cg_has(cg, CGF_MEMORY)) CHECK(st.have_memory && st.mem_usage > 0 && st.mem_peak >= st.mem_usage);
    if (cg_has(cg, CGF_CPUACCT)) CHECK(st.have_cpu);
    CHECK(cg_kill(cg, 5000));
    CHECK(cg_empty(cg));
    int status = 0;
    if (!reaped) CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    json_free(rep);
    cg_destroy(cg);
    if (saved) CHECK(!dir_exists(saved));
    free(saved);
    printf("test_cgroup: mode %d: cgroup life ok\n", mode);
}

int main(void) {
    test_mapping();
    test_life(CGM_AUTO);
    test_life(CGM_V2);
    test_life(CGM_OFF);
    /* the service's parents go at its exit */
    cg_cleanup_service((int)getpid());
    if (failures) {
        fprintf(stderr, "test_cgroup: %d failures\n", failures);
        return 1;
    }
    printf("test_cgroup: ok\n");
    return 0;
}
