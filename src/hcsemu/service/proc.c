/*
 * Real processes: the reaper thread and /proc readings.
 *
 * Children are watched through pidfds in one epoll set, so thousands of processes need one
 * thread, not one each; the thread exits when nothing is left to watch. Where pidfd_open is
 * missing (kernels before 5.3) a thread per process waits instead.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

extern char **environ;

typedef struct watch {
    int pid, pidfd;
    bool keep_zombie;
    proc_exit_fn fn;
    void *ctx;
} watch;

static pthread_mutex_t reap_mu = PTHREAD_MUTEX_INITIALIZER;
static int reap_epfd = -1;
static size_t reap_count;
static bool reap_running;

static int pidfd_open_(int pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

static void known_remove(int pid);

static void reap_one(watch *w) {
    int status = 0;
    proc_stat last;
    bool have_last = proc_read(w->pid, &last); /* a zombie still shows its final CPU times */
    if (w->keep_zombie) {
        /* Read the status but leave the zombie: it keeps its process group (and pid) from
         * being reused until the owner reaps it with proc_reap. */
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r;
        do {
            r = waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOWAIT);
        } while (r < 0 && errno == EINTR);
        if (r == 0 && si.si_code == CLD_EXITED) status = (si.si_status & 0xFF) << 8;
        else if (r == 0) status = si.si_status & 0x7F; /* killed (or dumped) by a signal */
        w->fn(w->ctx, w->pid, status, have_last ? &last : NULL);
        return;
    }
    pid_t r;
    do {
        r = waitpid(w->pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0) status = 0; /* reaped by someone else (SIGCHLD=SIG_IGN): exit code unknown */
    known_remove(w->pid);
    w->fn(w->ctx, w->pid, status, have_last ? &last : NULL);
}

static void *reaper_main(void *unused) {
    (void)unused;
    struct epoll_event evs[64];
    for (;;) {
        pthread_mutex_lock(&reap_mu);
        if (reap_count == 0) {
            /* Nothing to watch: leave, so an idle library holds no threads. */
            close(reap_epfd);
            reap_epfd = -1;
            reap_running = false;
            pthread_mutex_unlock(&reap_mu);
            return NULL;
        }
        int epfd = reap_epfd;
        pthread_mutex_unlock(&reap_mu);
        int n = epoll_wait(epfd, evs, 64, 200);
        for (int i = 0; i < n; i++) {
            watch *w = evs[i].data.ptr;
            epoll_ctl(epfd, EPOLL_CTL_DEL, w->pidfd, NULL);
            close(w->pidfd);
            reap_one(w);
            free(w);
            pthread_mutex_lock(&reap_mu);
            reap_count--;
            pthread_mutex_unlock(&reap_mu);
        }
    }
}

/* Pids this process spawned and has not reaped yet (so the orphan reaper leaves them alone). */
static pthread_mutex_t known_mu = PTHREAD_MUTEX_INITIALIZER;
static int *known;
static size_t n_known, cap_known;

void proc_known_lock(void) { pthread_mutex_lock(&known_mu); }
void proc_known_unlock(void) { pthread_mutex_unlock(&known_mu); }
void proc_known_add_locked(int pid) {
    if (n_known == cap_known) {
        size_t nc = cap_known ? cap_known * 2 : 64;
        int *nk = realloc(known, nc * sizeof *nk);
        if (!nk) return;
        known = nk;
        cap_known = nc;
    }
    known[n_known++] = pid;
}
static void known_remove(int pid) {
    pthread_mutex_lock(&known_mu);
    for (size_t i = 0; i < n_known; i++) {
        if (known[i] == pid) {
            known[i] = known[--n_known];
            break;
        }
    }
    pthread_mutex_unlock(&known_mu);
}

void proc_reap_if_orphan(int pid) {
    pthread_mutex_lock(&known_mu); /* a spawn registers its pid under it: never one in flight */
    bool found = false;
    for (size_t i = 0; i < n_known && !found; i++) found = known[i] == pid;
    if (!found && pid > 0) waitpid((pid_t)pid, NULL, WNOHANG); /* a running or foreign pid: no-op */
    pthread_mutex_unlock(&known_mu);
}

void proc_reap_orphans(void) {
    /* The scan runs without known_mu (it reads all of /proc): a zombie child found here was
     * spawned before the scan, so its spawn has registered it by the time the lock is taken. */
    DIR *d = opendir("/proc");
    if (!d) return;
    int self = (int)getpid();
    int zombies[256];
    size_t nz = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nz < sizeof zombies / sizeof zombies[0]) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0) continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self && state == 'Z') zombies[nz++] = (int)pid;
    }
    closedir(d);
    pthread_mutex_lock(&known_mu);
    for (size_t z = 0; z < nz; z++) {
        bool is_known = false;
        for (size_t i = 0; i < n_known && !is_known; i++) is_known = known[i] == zombies[z];
        if (!is_known) waitpid((pid_t)zombies[z], NULL, WNOHANG);
    }
    pthread_mutex_unlock(&known_mu);
}

/* /proc lists processes in pid order, and the position of a pid's entry is
 * PROC_TGID_OFFSET + pid (fs/proc/base.c: TGID_OFFSET, FIRST_PROCESS_ENTRY + 2), so a walk
 * that only wants pids from min_pid on can seek there instead of reading every process's
 * entry: with a thousand systems alive that read was a third of the service's time. The
 * encoding is checked once on this process's own entry; where it does not hold, walks start
 * at the beginning as before. */
#define PROC_TGID_OFFSET 258L

static int proc_seek_ok(void) {
    static atomic_int ok; /* 0 unknown, 1 yes, -1 no */
    int v = atomic_load(&ok);
    if (v) return v > 0;
    v = -1;
    DIR *d = opendir("/proc");
    if (d) {
        long self = (long)getpid();
        seekdir(d, PROC_TGID_OFFSET + self);
        struct dirent *e = readdir(d);
        char *end;
        if (e && strtol(e->d_name, &end, 10) == self && !*end) v = 1;
        closedir(d);
    }
    atomic_store(&ok, v);
    return v > 0;
}

/* min_pid itself, or 0 when pids wrapped since it was handed out (the last pid handed out
 * is below it): then a younger process may have any pid. */
static int unwrapped_min_pid(int min_pid) {
    if (min_pid <= 0) return 0;
    FILE *lp = fopen("/proc/sys/kernel/ns_last_pid", "re");
    int last = 0;
    if (!lp || fscanf(lp, "%d", &last) != 1 || last < min_pid) min_pid = 0;
    if (lp) fclose(lp);
    return min_pid;
}

/* /proc, positioned at the first process whose pid is >= min_pid where that is possible
 * (readers still skip smaller pids themselves). */
static DIR *proc_dir_from(int min_pid) {
    DIR *d = opendir("/proc");
    if (d && min_pid > 1 && proc_seek_ok()) seekdir(d, PROC_TGID_OFFSET + min_pid);
    return d;
}

size_t proc_kill_marked(const char *marker, bool prefix, int sig, int min_pid) {
    /* Descendants are younger than their system's first process, so unless pids wrapped
     * since (the last pid handed out is below min_pid) older pids need no look. */
    min_pid = unwrapped_min_pid(min_pid);
    DIR *d = proc_dir_from(min_pid);
    if (!d) return 0;
    size_t ml = strlen(marker), hits = 0;
    int self = (int)getpid();
    char *buf = malloc(1 << 16);
    struct dirent *e;
    while (buf && (e = readdir(d))) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1 || pid == self || pid < min_pid) continue;
        int pfd = pidfd_open_((int)pid);
        if (pfd < 0) continue;
        char path[64];
        snprintf(path, sizeof path, "/proc/%ld/environ", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, buf, (1 << 16) - 1) : -1;
        if (fd >= 0) close(fd);
        bool match = false;
        for (ssize_t off = 0; n > 0 && off < n && !match;) {
            size_t len = strnlen(buf + off, (size_t)(n - off));
            match = prefix ? len >= ml && memcmp(buf + off, marker, ml) == 0
                           : len == ml && memcmp(buf + off, marker, ml) == 0;
            off += (ssize_t)len + 1;
        }
#ifdef SYS_pidfd_send_signal
        if (match && syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0) == 0) hits++;
#else
        if (match && kill((pid_t)pid, sig) == 0) hits++;
#endif
        close(pfd);
    }
    free(buf);
    closedir(d);
    return hits;
}

static void *waiter_main(void *arg) {
    reap_one(arg);
    free(arg);
    return NULL;
}

/* A forked child has no reaper thread and none of the parent's children. */
static void reap_prefork(void) { pthread_mutex_lock(&reap_mu); }
static void reap_parent(void) { pthread_mutex_unlock(&reap_mu); }
static void reap_child(void) {
    pthread_mutex_init(&reap_mu, NULL);
    if (reap_epfd >= 0) close(reap_epfd);
    reap_epfd = -1;
    reap_count = 0;
    reap_running = false;
}
static pthread_once_t reap_once = PTHREAD_ONCE_INIT;
static void reap_init(void) { pthread_atfork(reap_prefork, reap_parent, reap_child); }

bool proc_watch(int pid, bool keep_zombie, proc_exit_fn fn, void *ctx) {
    pthread_once(&reap_once, reap_init);
    watch *w = malloc(sizeof *w);
    if (!w) return false;
    w->pid = pid;
    w->keep_zombie = keep_zombie;
    w->fn = fn;
    w->ctx = ctx;
    w->pidfd = pidfd_open_(pid);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 128 * 1024);
    bool ok = true;
    if (w->pidfd < 0) {
        pthread_t t;
        ok = pthread_create(&t, &a, waiter_main, w) == 0;
        if (!ok) free(w);
    } else {
        pthread_mutex_lock(&reap_mu);
        if (reap_epfd < 0) reap_epfd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = w};
        if (reap_epfd < 0 || epoll_ctl(reap_epfd, EPOLL_CTL_ADD, w->pidfd, &ev) < 0) {
            ok = false;
        } else {
            reap_count++;
            if (!reap_running) {
                pthread_t t;
                reap_running = pthread_create(&t, &a, reaper_main, NULL) == 0;
                if (!reap_running) {
                    epoll_ctl(reap_epfd, EPOLL_CTL_DEL, w->pidfd, NULL);
                    reap_count--;
                    ok = false;
                }
            }
        }
        pthread_mutex_unlock(&reap_mu);
        if (!ok) {
            close(w->pidfd);
            free(w);
        }
    }
    pthread_attr_destroy(&a);
    return ok;
}

void proc_reap(int pid) {
    pid_t r;
    do {
        r = waitpid(pid, NULL, 0);
    } while (r < 0 && errno == EINTR);
    known_remove(pid);
}

/* ------------------------------------------------------------------ /proc */

static long ticks_per_sec(void) {
    static long t;
    if (!t) t = sysconf(_SC_CLK_TCK);
    return t > 0 ? t : 100;
}

static uint64_t boot_time_ms_epoch(void) {
    static uint64_t bt;
    if (!bt) {
        FILE *f = fopen("/proc/stat", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f)) {
            unsigned long long v;
            if (sscanf(line, "btime %llu", &v) == 1) {
                bt = (uint64_t)v * 1000u;
                break;
            }
        }
        if (f) fclose(f);
    }
    return bt;
}

bool proc_read(int pid, proc_stat *out) {
    memset(out, 0, sizeof *out);
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = 0;
    char *lp = strchr(buf, '('), *rp = strrchr(buf, ')');
    if (!lp || !rp) return false;
    size_t nl = (size_t)(rp - lp - 1);
    if (nl >= sizeof out->name) nl = sizeof out->name - 1;
    memcpy(out->name, lp + 1, nl);
    out->name[nl] = 0;
    char state;
    int ppid, pgrp;
    unsigned long long utime, stime, start, vsize;
    long long rss;
    /* fields after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt
     * cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime vsize rss */
    if (sscanf(rp + 2, "%c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d %llu %llu %lld",
               &state, &ppid, &pgrp, &utime, &stime, &start, &vsize, &rss) != 8)
        return false;
    out->pid = pid;
    out->pgrp = pgrp;
    out->state = state;
    long tps = ticks_per_sec();
    out->utime_100ns = utime * 10000000ull / (uint64_t)tps;
    out->stime_100ns = stime * 10000000ull / (uint64_t)tps;
    out->start_ms_epoch = boot_time_ms_epoch() + start * 1000ull / (uint64_t)tps;
    out->vsize_bytes = vsize;
    out->rss_bytes = (uint64_t)(rss > 0 ? rss : 0) * (uint64_t)sysconf(_SC_PAGESIZE);
    snprintf(path, sizeof path, "/proc/%d/statm", pid);
    FILE *f = fopen(path, "re");
    if (f) {
        unsigned long long size, res, shared;
        if (fscanf(f, "%llu %llu %llu", &size, &res, &shared) == 3)
            out->shared_bytes = shared * (uint64_t)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    snprintf(path, sizeof path, "/proc/%d/io", pid);
    f = fopen(path, "re");
    if (f) {
        char line[128];
        unsigned long long v;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "syscr: %llu", &v) == 1) out->read_ops = v;
            else if (sscanf(line, "syscw: %llu", &v) == 1) out->write_ops = v;
            else if (sscanf(line, "rchar: %llu", &v) == 1) out->read_bytes = v;
            else if (sscanf(line, "wchar: %llu", &v) == 1) out->write_bytes = v;
        }
        fclose(f);
    }
    return true;
}

size_t proc_list_group(int pgrp, proc_stat *out, size_t cap) {
    /* The group's leader (pid pgrp) is the system's first process; every member is spawned
     * into the group later or descends from one that was, so it is younger than the leader
     * unless pids wrapped: the walk starts at the leader. */
    int min_pid = unwrapped_min_pid(pgrp);
    DIR *d = proc_dir_from(min_pid);
    if (!d) return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid < min_pid) continue;
        /* cheap filter first: getpgid is one syscall, the full read is several */
        if (getpgid((pid_t)pid) != pgrp) continue;
        if (proc_read((int)pid, &out[n]) && out[n].pgrp == pgrp) n++;
    }
    closedir(d);
    return n;
}

bool proc_group_empty(int pgrp) {
    if (kill(-pgrp, 0) < 0 && errno == ESRCH) return true;
    /* Orphaned grandchildren that died are zombies until init reaps them, which some
     * container inits do slowly; a zombie runs nothing, so it does not keep a group alive. */
    proc_stat ps[64];
    size_t n = proc_list_group(pgrp, ps, 64);
    for (size_t i = 0; i < n; i++)
        if (ps[i].state != 'Z' && ps[i].state != 'X') return false;
    return n < 64;
}

bool proc_group_wait_stopped(int pgrp, uint32_t timeout_ms) { return proc_group_wait_state(pgrp, true, timeout_ms); }

bool proc_group_wait_state(int pgrp, bool stopped, uint32_t timeout_ms) {
    uint64_t deadline = emu_now_ms() + timeout_ms;
    proc_stat *ps = malloc(sizeof *ps * 1024);
    if (!ps) return false;
    bool all = false;
    while (!all) {
        size_t n = proc_list_group(pgrp, ps, 1024);
        all = true;
        for (size_t i = 0; i < n; i++) {
            bool is_stopped = ps[i].state == 'T' || ps[i].state == 't';
            bool gone = ps[i].state == 'Z' || ps[i].state == 'X';
            if (!gone && is_stopped != stopped) all = false;
        }
        if (all || emu_now_ms() >= deadline) break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    free(ps);
    return all;
}
