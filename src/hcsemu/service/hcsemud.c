/*
 * hcsemud: the HCS emulator's service process (what vmcompute is on Windows).
 *
 *   hcsemud [--socket PATH] [--detach]   the user's shared service, listening on PATH
 *                                        (default: see proto_default_socket_path)
 *   hcsemud --fd N --private             a library's private service on an inherited socket;
 *                                        it ends when that connection ends
 *
 * The socket's folder is created 0700 (an existing one must be ours and private), the socket
 * is 0600, and every connection's peer uid is checked (server.c). A lock file beside the
 * socket (PATH.lock, held for the service's life) keeps two services off one path.
 *
 * The service owns the processes of its systems: it is a child subreaper, so a container
 * process whose parent exits (including one that called setsid) is reparented here and reaped
 * here instead of escaping to init; every process of a system carries HCSEMU_SYSTEM=<service
 * pid>:<runtime id> in its environment, which terminate uses to find the ones that left the
 * process group (service/processes.c). A guardian process, forked before any thread, holds a
 * pipe from the service: when the service dies, however it dies, the pipe reaches EOF and the
 * guardian kills every process that carries this service's marker, then detaches the layers
 * attached through this service (svc_storage_detach_owned: their overlay mounts undone).
 *
 * Exit codes: 0 stopped, 2 bad arguments or socket folder, 3 a service already runs there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "isolate.h"
#include "cgroup.h"
#include "proc.h"
#include "protocol.h"
#include "server.h"
#include "storage.h"
#include "svc.h"

static int stop_efd = -1;

static void request_stop(void) {
    uint64_t one = 1;
    ssize_t w = write(stop_efd, &one, sizeof one);
    (void)w;
}

/* Forked before any thread exists: waits for the service's end, then ends its processes and
 * detaches the layers attached through it. */
static void start_guardian(void) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return;
    pid_t service = getpid();
    char identity[48];
    bool have_identity = emu_process_identity(service, identity);
    pid_t g = fork();
    if (g < 0) {
        close(p[0]);
        close(p[1]);
        return;
    }
    if (g == 0) {
        /* Nothing of the service's but the pipe: not its clients' sockets, listener or lock. */
        if (p[0] > 3) close_range(3, (unsigned)p[0] - 1, 0);
        close_range((unsigned)p[0] + 1, ~0u, 0);
        prctl(PR_SET_NAME, "hcsemud-guard");
        char b;
        while (read(p[0], &b, 1) < 0 && errno == EINTR) {
        }
        char marker[64];
        snprintf(marker, sizeof marker, "HCSEMU_SYSTEM=%d:", (int)service);
        /* Twice: a process forking at that moment may have a child the first pass missed. */
        proc_kill_marked(marker, true, SIGKILL, 0);
        proc_kill_marked(marker, true, SIGKILL, 0);
        cg_cleanup_service((int)service);
        /* and the layers its clients attached are detached (their overlay mounts undone) */
        if (have_identity) svc_storage_detach_owned(identity);
        _exit(0);
    }
    close(p[0]); /* p[1] stays open (close-on-exec) for the service's whole life */
}

static void usage(FILE *to) {
    fprintf(to,
            "usage: hcsemud [--socket PATH] [--detach]\n"
            "       hcsemud --fd N --private\n"
            "       hcsemud --version\n"
            "The HCS emulator's service process. Without --socket it listens on the user's\n"
            "default socket (HCSEMU_SERVICE=shared finds it there).\n");
}

static int listen_on(const char *path, int *lock_fd) {
    char err[512];
    if (proto_prepare_socket_dir(path, err, sizeof err) != 0) {
        fprintf(stderr, "hcsemud: %s\n", err);
        return -2;
    }
    char *lockp = NULL;
    if (asprintf(&lockp, "%s.lock", path) < 0) return -2;
    int lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lockp);
    if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "hcsemud: a service already runs at %s\n", path);
        if (lfd >= 0) close(lfd);
        return -3;
    }
    *lock_fd = lfd;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        fprintf(stderr, "hcsemud: socket path too long: %s\n", path);
        return -2;
    }
    strcpy(a.sun_path, path);
    unlink(path); /* a stale socket: the lock says no service owns it */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    mode_t old = umask(077);
    int rc = fd >= 0 ? bind(fd, (struct sockaddr *)&a, sizeof a) : -1;
    umask(old);
    if (rc != 0 || chmod(path, 0600) != 0 || listen(fd, 128) != 0) {
        fprintf(stderr, "hcsemud: cannot listen on %s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -2;
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--init") == 0) return iso_init_main(); /* a system's PID 1 (init.c) */
    const char *socket_path = NULL;
    int inherited = -1;
    bool private_mode = false, detach = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) socket_path = argv[++i];
        else if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc) inherited = atoi(argv[++i]);
        else if (strcmp(argv[i], "--private") == 0) private_mode = true;
        else if (strcmp(argv[i], "--detach") == 0) detach = true;
        else if (strcmp(argv[i], "--foreground") == 0) detach = false;
        else if (strcmp(argv[i], "--version") == 0) {
            printf("hcsemud protocol %d\n", HCSEMU_PROTOCOL_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (private_mode != (inherited >= 0)) {
        usage(stderr);
        return 2;
    }
    /* Signals are read from a signalfd by the main thread; every thread starts with them blocked. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that went away is seen as EOF/EPIPE */
    int sfd = signalfd(-1, &set, SFD_CLOEXEC);
    stop_efd = eventfd(0, EFD_CLOEXEC);

    char *default_path = NULL;
    int lfd = -1, lock_fd = -1;
    if (!private_mode) {
        if (!socket_path) socket_path = default_path = proto_default_socket_path();
        if (!socket_path) return 2;
        lfd = listen_on(socket_path, &lock_fd);
        if (lfd < 0) return -lfd;
        if (detach) {
            pid_t pid = fork();
            if (pid < 0) return 2;
            if (pid > 0) _exit(0); /* listening already: a client may connect as soon as we return */
            setsid();
        } else {
            fprintf(stderr, "hcsemud: listening on %s (pid %d)\n", socket_path, (int)getpid());
        }
    }
    start_guardian();
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    struct stat sock_st = {0};
    if (socket_path) stat(socket_path, &sock_st);
    server_config cfg = {private_mode, socket_path, request_stop};
    server_init(&cfg);
    if (private_mode && !server_serve(inherited)) return 1;

    for (;;) {
        struct pollfd p[3] = {{stop_efd, POLLIN, 0}, {sfd, POLLIN, 0}, {lfd, POLLIN, 0}};
        /* Orphans (reparented to this subreaper) are reaped when a SIGCHLD names one, and by a
         * scan of /proc every few seconds for those whose signals were merged into another's:
         * a scan per exit would tax every process the systems run. */
        int n = poll(p, lfd >= 0 ? 3 : 2, 5000);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) proc_reap_orphans();
        if (p[0].revents) break;
        if (p[1].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo != SIGCHLD) break;
                proc_reap_if_orphan((int)si.ssi_pid);
            }
        }
        if (lfd >= 0 && (p[2].revents & POLLIN)) {
            int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (c >= 0 && !server_serve(c)) close(c);
        }
    }
    /* Stopping: nothing of ours may outlive the service. */
    server_stop_all_systems();
    if (socket_path) {
        struct stat now;
        if (stat(socket_path, &now) == 0 && now.st_ino == sock_st.st_ino && now.st_dev == sock_st.st_dev)
            unlink(socket_path);
    }
    free(default_path);
    cg_cleanup_service((int)getpid());
    _exit(0);
}
