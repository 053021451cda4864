/*
 * The init of an isolated compute system (`hcsemud --init`, started by isolate.c).
 *
 * It is PID 1 of the system's PID namespace: processes whose parent exits are reparented to
 * it, and it reaps them, so no zombie piles up inside the system. It starts nothing itself
 * (the service creates the system's processes, see isolate.h). Its lifeline is fd 3, a socket
 * whose other end the service holds: when the service is gone (however it ended) the read
 * sees end-of-file, the init exits, and the kernel kills every process of the namespace.
 * Terminal and termination signals are ignored, so only SIGKILL from the service ends it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "isolate.h"

int iso_init_main(void) {
    setsid();
    prctl(PR_SET_NAME, "hcsemu-init", 0, 0, 0);
    static const int ignored[] = {SIGINT, SIGHUP, SIGTERM, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++) signal(ignored[i], SIG_IGN);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    for (;;) {
        struct pollfd p[2] = {{.fd = 3, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        /* Without a signalfd, look for orphans every second. */
        int n = poll(p, sfd >= 0 ? 2 : 1, sfd >= 0 ? -1 : 1000);
        if (n < 0 && errno != EINTR) return 1;
        if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
            char buf[64];
            ssize_t r = read(3, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) return 0;
        }
        if (sfd >= 0 && n > 0 && (p[1].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            }
        }
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
    }
}
