/* Small helpers both halves use: strings, error documents, time, logging, files the caller
 * names, Windows command lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "emu.h"

char *emu_strdup(const char *s) { return s ? strdup(s) : NULL; }

char *emu_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *out = NULL;
    if (vasprintf(&out, fmt, ap) < 0) out = NULL;
    va_end(ap);
    return out;
}

char *emu_error_doc(HRESULT hr, const char *fmt, ...) {
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    HRESULT pub = emu_public_hr(hr);
    json *doc = json_new_object();
    json_set(doc, "Error", json_new_int((int32_t)pub));
    json_set(doc, "ErrorMessage", json_new_string(msg ? msg : ""));
    json *events = json_new_array();
    json *ev = json_new_object();
    json_set(ev, "Message", json_new_string(msg ? msg : ""));
    json_set(ev, "Provider", json_new_string("17103e3f-3c6e-4677-bb17-3b267eb5be57"));
    json_set(ev, "EventId", json_new_int(1));
    json_set(ev, "Source", json_new_string("hcsemu"));
    json_append(events, ev);
    json_set(doc, "ErrorEvents", events);
    char *out = json_dump(doc);
    json_free(doc);
    free(msg);
    return out;
}

uint64_t emu_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void emu_deadline(struct timespec *ts, uint32_t timeout_ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += timeout_ms / 1000;
    ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void emu_cond_init(pthread_cond_t *cv) {
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

void emu_log(const char *fmt, ...) {
    static int enabled = -1;
    if (enabled < 0) {
        const char *e = getenv("HCSEMU_DEBUG");
        enabled = e && *e && strcmp(e, "0") != 0;
    }
    if (!enabled) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hcsemu: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int emu_open_regular(const char *path, int flags, unsigned mode) {
    struct stat st = {0};
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return -1;
    }
    /* O_NONBLOCK: a FIFO put in place after the stat must not block the open. */
    int fd = open(path, flags | O_NONBLOCK | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) return errno == ENXIO ? (errno = EINVAL, -1) : -1;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = errno;
        if (e == 0 || S_ISDIR(st.st_mode) || !S_ISREG(st.st_mode)) e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        close(fd);
        errno = e;
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

char **emu_split_windows_cmdline(const char *s, size_t *argc_out) {
    size_t len = strlen(s), cap = 8, argc = 0;
    char **argv = calloc(cap, sizeof *argv);
    char *buf = malloc(len + 1); /* no argument is longer than the command line */
    if (!argv || !buf) goto oom;
    const char *p = s;
    while (*p == ' ' || *p == '\t') p++;
    bool first = true;
    while (*p) {
        size_t o = 0;
        if (first) {
            /* the program: no escapes, quotes only delimit */
            if (*p == '"') {
                p++;
                while (*p && *p != '"') buf[o++] = *p++;
                if (*p == '"') p++;
            } else {
                while (*p && *p != ' ' && *p != '\t') buf[o++] = *p++;
            }
            first = false;
        } else {
            int q = 0; /* quotes seen in the current run: odd = inside a quoted part */
            size_t bs = 0;
            while (*p && !((*p == ' ' || *p == '\t') && q == 0)) {
                if (*p == '\\') {
                    buf[o++] = *p++;
                    bs++;
                    continue;
                }
                if (*p == '"') {
                    if (bs % 2 == 0) {
                        o -= bs / 2; /* half the backslashes; the quote delimits */
                        q++;
                    } else {
                        o -= bs / 2 + 1; /* half, and the last one escapes a literal quote */
                        buf[o++] = '"';
                    }
                    p++;
                    bs = 0;
                    /* a run of further quotes: every third one of the run is a literal quote */
                    while (*p == '"') {
                        if (++q == 3) {
                            buf[o++] = '"';
                            q = 0;
                        }
                        p++;
                    }
                    if (q == 2) q = 0;
                    continue;
                }
                buf[o++] = *p++;
                bs = 0;
            }
        }
        buf[o] = 0;
        if (argc + 2 > cap) {
            char **n = realloc(argv, cap * 2 * sizeof *n);
            if (!n) goto oom;
            argv = n;
            cap *= 2;
        }
        argv[argc] = strdup(buf);
        if (!argv[argc]) goto oom;
        argv[++argc] = NULL;
        while (*p == ' ' || *p == '\t') p++;
    }
    free(buf);
    *argc_out = argc;
    return argv;
oom:
    if (argv)
        for (size_t i = 0; i < argc; i++) free(argv[i]);
    free(argv);
    free(buf);
    return NULL;
}
