/* Unit tests of isolate.c, under AddressSanitizer + UBSan: the path and mapping helpers, and
 * (as root, with HCSEMU_DAEMON naming hcsemud for the init) a whole cycle: start, a process
 * in the system, its host name, root, PID namespace and exit code, a live mapping, stop. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "isolate.h"

static int passed, failed;
#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (cond) passed++;                                                                                            \
        else {                                                                                                         \
            failed++;                                                                                                  \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                                   \
        }                                                                                                              \
    } while (0)

static void path_is(const char *in, const char *want) {
    char *got = iso_container_path(in);
    bool ok = want ? got && strcmp(got, want) == 0 : got == NULL;
    if (!ok) fprintf(stderr, "iso_container_path(%s) = %s, want %s\n", in ? in : "NULL", got ? got : "NULL", want ? want : "NULL");
    CHECK(ok);
    free(got);
}

static void test_paths(void) {
    path_is("C:\\data\\x", "/data/x");
    path_is("c:/data//x/", "/data/x");
    path_is("/a/./b", "/a/b");
    path_is("\\\\a\\b", "/a/b");
    path_is("C:", "/");
    path_is("/", "/");
    path_is("/a/../b", NULL);
    path_is("..", NULL);
    path_is("", NULL);
    path_is(NULL, NULL);
    path_is("/a/..b/c.", "/a/..b/c.");
}

static json *parse(const char *text) { return json_parse(text, strlen(text), NULL, 0); }

static void test_mappings(void) {
    iso_mapping *m = NULL;
    char *err = NULL;
    json *d = parse("[{\"HostPath\":\"/tmp\",\"ContainerPath\":\"C:\\\\t\",\"ReadOnly\":true},{\"HostPath\":\"/srv\"}]");
    CHECK(iso_parse_mappings(d, &m, &err) == 2);
    CHECK(m && strcmp(m[0].container, "/t") == 0 && m[0].read_only && strcmp(m[0].host, "/tmp") == 0);
    CHECK(m && strcmp(m[1].container, "/srv") == 0 && !m[1].read_only); /* no ContainerPath: the host's */
    iso_free_mappings(m, 2);
    json_free(d);
    static const char *const bad[] = {"[{\"HostPath\":\"rel\"}]", "[{\"HostPath\":\"/x\",\"ContainerPath\":\"C:\\\\\"}]",
                                      "[{\"HostPath\":\"/x\",\"ContainerPath\":\"/a/../b\"}]", "[{}]", "[3]", NULL};
    for (int i = 0; bad[i]; i++) {
        d = parse(bad[i]);
        m = NULL;
        err = NULL;
        CHECK(iso_parse_mappings(d, &m, &err) == -1 && err && m == NULL);
        free(err);
        json_free(d);
    }
    m = (iso_mapping *)1;
    CHECK(iso_parse_mappings(NULL, &m, &err) == 0 && m == NULL);
}

/* Runs argv in the system; returns its exit status and its output in out. */
static int run_in(iso_system *iso, char *const *argv, char *out, size_t cap) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    pid_t pid = 0;
    const char *stage = NULL;
    int rc = iso_spawn_stdio(iso, argv, envp, "/", -1, -1, p[1], -1, 0, &pid, &stage);
    close(p[1]);
    if (rc) {
        fprintf(stderr, "iso_spawn: %s at %s\n", strerror(rc), stage ? stage : "?");
        close(p[0]);
        return -1;
    }
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(p[0], out + n, cap - 1 - n)) > 0) n += (size_t)r;
    out[n] = 0;
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_cycle(void) {
    emu_settings_init();
    g_settings.isolation = ISOLATION_AUTO;
    char dir[] = "/tmp/hcsemu-isotest-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char file[64];
    snprintf(file, sizeof file, "%s/f.txt", dir);
    FILE *f = fopen(file, "w");
    if (f) {
        fputs("mapped\n", f);
        fclose(f);
    }
    char text[512];
    snprintf(text, sizeof text,
             "{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{\"GuestOs\":{\"HostName\":\"unit\"},"
             "\"MappedDirectories\":[{\"HostPath\":\"%s\",\"ContainerPath\":\"/m\",\"ReadOnly\":true}]}}",
             dir);
    json *cfg = parse(text), *report = NULL;
    char *err = NULL;
    iso_system *iso = iso_start_config(cfg, "unit-system", NULL, "HCSEMU_SYSTEM=test", &report, &err);
    if (!iso) fprintf(stderr, "iso_start: %s\n", err ? err : "no feature available");
    CHECK(iso != NULL && err == NULL);
    CHECK(json_len(json_get(report, "Namespaces")) == ISO__COUNT);
    json *props = iso_properties(iso, report);
    CHECK(json_get(props, "Init") != NULL && strcmp(json_str(json_get(props, "HostName")), "unit") == 0);
    json_free(props);
    if (iso) {
        char out[256];
        char *a1[] = {"sh", "-c", "hostname; echo $$; cat /m/f.txt; ls /m", NULL};
        CHECK(run_in(iso, a1, out, sizeof out) == 0);
        CHECK(strcmp(out, "unit\n2\nmapped\nf.txt\n") == 0);
        char *a2[] = {"sh", "-c", "echo x > /m/new; exit 5", NULL};
        CHECK(run_in(iso, a2, out, sizeof out) == 5);
        snprintf(file, sizeof file, "%s/new", dir);
        CHECK(access(file, F_OK) != 0); /* read-only */
        char *a3[] = {"no-such-program-here", NULL};
        CHECK(run_in(iso, a3, out, sizeof out) == -1);
        iso_mapping m = {.host = dir, .container = "/live", .read_only = false};
        CHECK(iso_map(iso, &m, true, &err) == 0);
        free(err);
        char *a4[] = {"sh", "-c", "cat /live/f.txt && echo y > /live/new", NULL};
        CHECK(run_in(iso, a4, out, sizeof out) == 0 && strcmp(out, "mapped\n") == 0);
        CHECK(access(file, F_OK) == 0);
        CHECK(iso_map(iso, &m, false, &err) == 0);
        free(err);
        CHECK(run_in(iso, a4, out, sizeof out) != 0);
        char *a5[] = {"sleep", "100", NULL};
        pid_t pid;
        const char *stage;
        char *envp[] = {"PATH=/usr/bin:/bin", NULL};
        CHECK(iso_spawn_stdio(iso, a5, envp, NULL, -1, -1, -1, -1, 0, &pid, &stage) == 0);
        CHECK(iso_owns(iso, pid));
        CHECK(!iso_owns(iso, (int)getpid()));
        iso_kill(iso); /* the init, and with it the sleep */
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        iso_stop(iso);
        unlink(file);
    }
    json_free(report);
    json_free(cfg);
    free(err);
    snprintf(file, sizeof file, "%s/f.txt", dir);
    unlink(file);
    rmdir(dir);
}

static void test_fallback(void) {
    emu_settings_init();
    g_settings.isolation = ISOLATION_AUTO;
    g_settings.isolation_without = (1u << ISO__COUNT) - 1; /* everything off */
    json *cfg = parse("{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"Container\":{}}"), *report = NULL;
    char *err = NULL;
    iso_system *iso = iso_start_config(cfg, "fb", NULL, "HCSEMU_SYSTEM=test", &report, &err);
    CHECK(iso == NULL && err == NULL && report != NULL);
    CHECK(json_len(json_get(report, "Fallbacks")) == ISO__COUNT && json_len(json_get(report, "Namespaces")) == 0);
    json_free(report);
    json_free(cfg);
    g_settings.isolation_without = 0;
}

int main(void) {
    test_paths();
    test_mappings();
    test_fallback();
    if (geteuid() == 0 && getenv("HCSEMU_DAEMON")) test_cycle();
    else fprintf(stderr, "test_isolate: the isolation cycle needs root and HCSEMU_DAEMON (skipped)\n");
    printf("test_isolate: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
