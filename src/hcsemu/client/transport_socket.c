/*
 * The socket transport: the service half runs in a service process (hcsemud) and the client
 * half talks to it over a Unix socket (protocol.h).
 *
 * Modes (HCSEMU_SERVICE): "private" starts a service of our own over a socketpair on first use
 * (it ends when this process closes the connection, i.e. exits); "shared" connects to the
 * user's shared service at the default socket path and starts it, detached, when none runs;
 * an absolute path connects to the service listening there and never starts one.
 *
 * One connection at a time. Each request waits for its own response, so any number of
 * threads may be inside calls at once; a reader thread routes responses to their callers and
 * hands events to an event thread (callbacks may call straight back into the API, which the
 * reader thread must stay free to answer). When the service goes away every pending call fails
 * with HCS_E_SERVICE_DISCONNECT, every handle's callback gets ServiceDisconnect, and calls on
 * the old handles keep failing that way; a new call that needs no old handle connects again.
 *
 * The emulator's controls are split: faults, call counts and the simulated disconnect belong
 * to this process (the calls they act on are this process's), the systems, processes, CPU
 * groups and WER reports to the service, and switches are applied on both sides.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "protocol.h"
#include "transport.h"

extern char **environ;

typedef struct pending {
    uint64_t id;
    const atomic_bool *abandon; /* a wait on a handle being closed (see s_wake_waiters) */
    uint64_t ev_mark; /* events received before the response: delivered before the caller goes on */
    bool done;
    HRESULT hr; /* transport failure (the call's own HRESULT is in the frame) */
    frame f;
    pthread_cond_t cv;
    struct pending *next;
} pending;

typedef struct event_item {
    uint64_t serial;
    uint32_t pid;
    int type; /* an HCS_EVENT_TYPE, or -1: the connection was lost */
    char *data;
    struct event_item *next;
} event_item;

typedef struct rsys rsys;

typedef struct conn {
    int fd;
    int service_pidfd; /* private mode: our child, reaped once it is gone */
    atomic_int refs;
    pthread_mutex_t mu; /* pending, proxies, dead, events */
    pthread_mutex_t wmu; /* writes */
    bool dead;
    char *why; /* why it is dead */
    uint64_t next_id;
    pending *pending;
    rsys *proxies;
    event_item *ev_head, *ev_tail;
    pthread_cond_t ev_cv;
    bool ev_thread, ev_stop;
    uint64_t ev_received, ev_delivered;
    bool reading; /* the read token: one thread reads the socket at a time */
    pthread_cond_t read_cv;
    pthread_t ev_tid;
    pthread_cond_t ev_done_cv;
} conn;

/* A reference to a system of the service: one per (connection, system), shared by handles. */
struct rsys {
    conn *c;
    uint64_t serial;
    int refs;        /* local references (under c->mu) */
    uint32_t remote; /* references the service counts for us: each answer that names it adds one */
    char *id;
    rsys *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static conn *g_conn;
static char *g_mode; /* "private", "shared" or a path */
static char *g_last_error;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void conn_unref(conn *c);

/* ------------------------------------------------------------------ errors */

static HRESULT fail_doc(char **doc, HRESULT hr, const char *msg) {
    if (doc) {
        free(*doc);
        *doc = emu_error_doc(hr, "%s", msg);
    }
    return hr;
}

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *m = NULL;
    if (vasprintf(&m, fmt, ap) < 0) m = NULL;
    va_end(ap);
    if (!m) return;
    fprintf(stderr, "hcsemu: %s\n", m);
    free(g_last_error);
    g_last_error = m;
}

/* ------------------------------------------------------------------ starting and connecting */

/* The hcsemud beside this library (HCSEMU_DAEMON overrides). */
static char *daemon_path(void) {
    const char *env = getenv("HCSEMU_DAEMON");
    if (env && *env) return strdup(env);
    Dl_info info;
    if (!dladdr((void *)&daemon_path, &info) || !info.dli_fname) return NULL;
    char *lib = realpath(info.dli_fname, NULL);
    if (!lib) return NULL;
    char *slash = strrchr(lib, '/');
    char *out = NULL;
    if (slash) {
        *slash = '\0';
        if (asprintf(&out, "%s/hcsemud", lib) < 0) out = NULL;
    }
    free(lib);
    return out;
}

static int pidfd_open_(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    return -1;
#endif
}

/* Starts hcsemud with argv[1..]; the child gets a session of its own (no terminal signals
 * reach it), default signal dispositions and an empty mask, and fd `pass` as fd 3. */
static pid_t spawn_daemon(char *const args[], int pass, bool quiet) {
    char *path = daemon_path();
    if (!path) {
        set_error("cannot find hcsemud beside libhcsemu.so (set HCSEMU_DAEMON)");
        return -1;
    }
    char *argv[8] = {path};
    for (int i = 0; args[i] && i < 6; i++) argv[i + 1] = args[i];
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (quiet) posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (pass >= 0) posix_spawn_file_actions_adddup2(&fa, pass, 3);
    posix_spawn_file_actions_addclosefrom_np(&fa, pass >= 0 ? 4 : 3);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        set_error("cannot start %s: %s", path, strerror(rc));
        pid = -1;
    }
    free(path);
    return pid;
}

static void reap_pidfd(int pidfd, bool block) {
    if (pidfd < 0) return;
    siginfo_t si;
    /* P_PIDFD names exactly our child, so a host that already reaped it (and whose new child
     * got the same pid) loses nothing. ECHILD: it was reaped by someone else. */
    while (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &si, WEXITED | (block ? 0 : WNOHANG)) < 0 && errno == EINTR) {
    }
}

static int connect_path(const char *path, char *err, size_t errlen) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof a.sun_path) {
        snprintf(err, errlen, "socket path too long: %s", path);
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        snprintf(err, errlen, "no hcsemu service at %s: %s", path, strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* HELLO / WELCOME. Returns S_OK or the refusal's HRESULT with its message in err. */
static HRESULT handshake(int fd, char *err, size_t errlen) {
    char meta[128];
    snprintf(meta, sizeof meta, "{\"Protocol\":%d,\"Pid\":%d}", HCSEMU_PROTOCOL_VERSION, (int)getpid());
    if (proto_send(fd, FR_HELLO, 0, 0, meta, NULL, NULL, 0) != PROTO_OK) {
        snprintf(err, errlen, "the service closed the connection during the handshake");
        return HCS_E_CONNECTION_CLOSED;
    }
    frame f;
    if (proto_recv(fd, &f) != PROTO_OK) {
        snprintf(err, errlen, "the service closed the connection during the handshake");
        return HCS_E_CONNECTION_CLOSED;
    }
    json *m = json_parse(f.payload, strlen(f.payload), NULL, 0);
    int64_t ver = -1, hr = HCS_E_PROTOCOL_ERROR;
    json_int64(json_get(m, "Protocol"), &ver);
    HRESULT out = S_OK;
    if (f.type == FR_REFUSE) {
        json_int64(json_get(m, "HResult"), &hr);
        const char *why = json_str(json_get(m, "Error"));
        snprintf(err, errlen, "the hcsemu service refused this client: %s", why ? why : "no reason given");
        out = FAILED((HRESULT)hr) ? (HRESULT)hr : HCS_E_PROTOCOL_ERROR;
    } else if (f.type != FR_WELCOME || ver != HCSEMU_PROTOCOL_VERSION) {
        snprintf(err, errlen, "the hcsemu service speaks protocol %lld, this library speaks %d", (long long)ver,
                 HCSEMU_PROTOCOL_VERSION);
        out = HCS_E_UNSUPPORTED_PROTOCOL_VERSION;
    }
    json_free(m);
    frame_release(&f);
    return out;
}

static void *reader_main(void *arg);

static conn *conn_new(int fd, int pidfd) {
    conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->service_pidfd = pidfd;
    atomic_init(&c->refs, 2); /* g_conn's and the reader thread's */
    c->next_id = 1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->wmu, NULL);
    emu_cond_init(&c->ev_cv);
    emu_cond_init(&c->ev_done_cv);
    emu_cond_init(&c->read_cv);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the host's signals are for the host's threads */
    int rc = pthread_create(&t, &a, reader_main, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        pthread_mutex_destroy(&c->mu);
        pthread_mutex_destroy(&c->wmu);
        pthread_cond_destroy(&c->ev_cv);
        free(c);
        return NULL;
    }
    return c;
}

/* Under g_mu. Sets g_conn or returns the failure. */
static HRESULT connect_locked(void) {
    char err[512] = "";
    int fd = -1, pidfd = -1;
    if (strcmp(g_mode, "private") == 0) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
            set_error("socketpair: %s", strerror(errno));
            return HCS_E_SERVICE_NOT_AVAILABLE;
        }
        char *args[] = {"--fd", "3", "--private", NULL};
        pid_t pid = spawn_daemon(args, sv[1], false);
        close(sv[1]);
        if (pid < 0) {
            close(sv[0]);
            return HCS_E_SERVICE_NOT_AVAILABLE;
        }
        pidfd = pidfd_open_(pid);
        fd = sv[0];
    } else {
        char *path = strcmp(g_mode, "shared") == 0 ? proto_default_socket_path() : strdup(g_mode);
        if (!path) return E_OUTOFMEMORY;
        fd = connect_path(path, err, sizeof err);
        if (fd < 0 && strcmp(g_mode, "shared") == 0 && (errno == ENOENT || errno == ECONNREFUSED)) {
            char *args[] = {"--socket", path, "--detach", NULL};
            pid_t pid = spawn_daemon(args, -1, true);
            int pfd = pid > 0 ? pidfd_open_(pid) : -1;
            for (int i = 0; pid > 0 && fd < 0 && i < 500; i++) {
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
                fd = connect_path(path, err, sizeof err);
            }
            reap_pidfd(pfd, false); /* --detach: the child we started exits once it listens */
            if (pfd >= 0) close(pfd);
        }
        free(path);
        if (fd < 0) {
            set_error("%s", err);
            return HCS_E_SERVICE_NOT_AVAILABLE;
        }
    }
    HRESULT hr = handshake(fd, err, sizeof err);
    if (FAILED(hr)) {
        set_error("%s", err);
        close(fd);
        if (pidfd >= 0) {
            reap_pidfd(pidfd, true);
            close(pidfd);
        }
        return hr;
    }
    conn *c = conn_new(fd, pidfd);
    if (!c) {
        close(fd);
        if (pidfd >= 0) close(pidfd);
        return E_OUTOFMEMORY;
    }
    if (g_conn) conn_unref(g_conn);
    g_conn = c;
    return S_OK;
}

static void sync_settings(conn *c);

/* The live connection, with a reference; connects (again) if there is none. */
static conn *conn_get(HRESULT *hr) {
    pthread_mutex_lock(&g_mu);
    bool fresh = false;
    if (!g_conn || g_conn->dead) {
        *hr = connect_locked();
        if (FAILED(*hr)) {
            pthread_mutex_unlock(&g_mu);
            return NULL;
        }
        fresh = true;
    }
    conn *c = g_conn;
    c->refs++;
    pthread_mutex_unlock(&g_mu);
    if (fresh) sync_settings(c);
    *hr = S_OK;
    return c;
}

static void conn_unref(conn *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    if (c->fd >= 0) close(c->fd);
    if (c->service_pidfd >= 0) {
        reap_pidfd(c->service_pidfd, false);
        close(c->service_pidfd);
    }
    free(c->why);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->wmu);
    pthread_cond_destroy(&c->ev_cv);
    pthread_cond_destroy(&c->ev_done_cv);
    pthread_cond_destroy(&c->read_cv);
    free(c);
}

/* ------------------------------------------------------------------ requests */

static const char *const disconnect_msg = "The connection with the compute service was lost";

static void notify(conn *c, uint32_t call, const char *meta);
static void read_with_token_locked(conn *c);

static bool long_call(uint32_t call) {
    switch (call) {
    case CALL_SHUTDOWN: case CALL_TERMINATE: case CALL_CRASH: case CALL_PAUSE: case CALL_RESUME:
    case CALL_SAVE: case CALL_WAIT_EXIT: case CALL_PROCESS_WAIT: case CALL_PROCESS_TERMINATE:
    case CALL_PROCESS_SIGNAL: case CALL_STOP:
        return true;
    default: return false;
    }
}

/* Sends a request and waits for its response (into *resp, which the caller releases). */
static HRESULT rpc_abandonable(conn *c, uint32_t call, const char *meta, const char *doc, const atomic_bool *abandon,
                               frame *resp) {
    memset(resp, 0, sizeof *resp);
    for (int i = 0; i < PROTO_MAX_FDS; i++) resp->fds[i] = -1;
    pending p = {0};
    for (int i = 0; i < PROTO_MAX_FDS; i++) p.f.fds[i] = -1; /* no response yet: nothing to close */
    emu_cond_init(&p.cv);
    pthread_mutex_lock(&c->mu);
    if (c->dead) {
        pthread_mutex_unlock(&c->mu);
        pthread_cond_destroy(&p.cv);
        return HCS_E_SERVICE_DISCONNECT;
    }
    p.id = c->next_id++;
    p.abandon = abandon;
    p.next = c->pending;
    c->pending = &p;
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_lock(&c->wmu);
    proto_status st = proto_send(c->fd, FR_REQUEST, call, p.id, meta, doc, NULL, 0);
    pthread_mutex_unlock(&c->wmu);
    pthread_mutex_lock(&c->mu);
    if (st != PROTO_OK && !p.done) {
        /* The reader notices the broken stream and fails everything; this call fails now. */
        p.done = true;
        p.hr = HCS_E_SERVICE_DISCONNECT;
    }
    /* A quick call reads its own answer (no handoff from the reader thread); a call that may
     * block for long leaves reading to the reader thread, so that closing its handle or a
     * simulated disconnect can end it at once. */
    bool inline_read = !abandon && !long_call(call);
    while (!p.done) {
        if (p.abandon && atomic_load(p.abandon)) { /* closed before s_wake_waiters saw this call */
            p.done = true;
            p.hr = E_HANDLE;
            break;
        }
        if (inline_read && !c->reading && !c->dead) {
            read_with_token_locked(c);
            continue;
        }
        pthread_cond_wait(&p.cv, &c->mu);
    }
    /* The service sent the call's events before its answer: deliver them first, as the
     * in-process service would have (unless this is the event thread, inside a callback). */
    bool on_event_thread = c->ev_thread && pthread_equal(c->ev_tid, pthread_self());
    while (!on_event_thread && !c->dead && c->ev_delivered < p.ev_mark) pthread_cond_wait(&c->ev_done_cv, &c->mu);
    for (pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
        if (*pp == &p) {
            *pp = p.next;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    pthread_cond_destroy(&p.cv);
    if (p.hr == E_HANDLE) {
        /* The handle was closed: the service stops waiting for us too. */
        char m[64];
        snprintf(m, sizeof m, "{\"Request\":%llu}", (unsigned long long)p.id);
        notify(c, CALL_ABANDON, m);
    }
    if (FAILED(p.hr)) {
        frame_release(&p.f);
        return p.hr;
    }
    *resp = p.f;
    return S_OK;
}

static HRESULT rpc(conn *c, uint32_t call, const char *meta, const char *doc, frame *resp) {
    return rpc_abandonable(c, call, meta, doc, NULL, resp);
}

static void notify(conn *c, uint32_t call, const char *meta) {
    pthread_mutex_lock(&c->mu);
    bool dead = c->dead;
    pthread_mutex_unlock(&c->mu);
    if (dead) return;
    pthread_mutex_lock(&c->wmu);
    proto_send(c->fd, FR_NOTIFY, call, 0, meta, NULL, NULL, 0);
    pthread_mutex_unlock(&c->wmu);
}

/* Fails every call waiting on c with hr (a lost connection, or the simulated disconnect). */
static void fail_pending_locked(conn *c, HRESULT hr) {
    for (pending *p = c->pending; p; p = p->next) {
        if (p->done) continue;
        p->done = true;
        p->hr = hr;
        pthread_cond_signal(&p->cv);
    }
}

/* The result of a response: its HRESULT, its document into *doc. */
static HRESULT result_of(frame *f, json **meta, char **doc) {
    *meta = json_parse(f->payload, strlen(f->payload), NULL, 0);
    int64_t hr = HCS_E_PROTOCOL_ERROR;
    if (!json_int64(json_get(*meta, "HResult"), &hr)) hr = HCS_E_PROTOCOL_ERROR;
    const char *d = frame_doc(f);
    if (doc && d) {
        free(*doc);
        *doc = strdup(d);
    }
    return (HRESULT)hr;
}

/* ------------------------------------------------------------------ system references */

/* The proxy for serial on c, with one more local reference and one more remote one. */
static rsys *proxy_take(conn *c, uint64_t serial, const char *id) {
    pthread_mutex_lock(&c->mu);
    rsys *r;
    for (r = c->proxies; r; r = r->next)
        if (r->serial == serial) break;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) {
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
        r->c = c;
        r->serial = serial;
        r->id = strdup(id ? id : "");
        r->next = c->proxies;
        c->proxies = r;
        atomic_fetch_add(&c->refs, 1);
    }
    r->refs++;
    r->remote++;
    pthread_mutex_unlock(&c->mu);
    return r;
}

static void s_ref(svc_system *s) {
    rsys *r = (rsys *)s;
    pthread_mutex_lock(&r->c->mu);
    r->refs++;
    pthread_mutex_unlock(&r->c->mu);
}

static void s_unref(svc_system *s) {
    rsys *r = (rsys *)s;
    conn *c = r->c;
    pthread_mutex_lock(&c->mu);
    if (--r->refs > 0) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    for (rsys **pp = &c->proxies; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    char meta[96];
    snprintf(meta, sizeof meta, "{\"Serial\":%llu,\"Count\":%u}", (unsigned long long)r->serial, r->remote);
    notify(c, CALL_RELEASE, meta);
    free(r->id);
    free(r);
    conn_unref(c);
}

static bool proxy_live(rsys *r, char **doc) {
    pthread_mutex_lock(&r->c->mu);
    bool dead = r->c->dead;
    pthread_mutex_unlock(&r->c->mu);
    if (dead) fail_doc(doc, HCS_E_SERVICE_DISCONNECT, "The compute service that held this system is gone");
    return !dead;
}

/* A request meta with the system's serial and optional fields. */
static char *sys_meta(rsys *r, uint32_t pid, int64_t extra_key_val, const char *extra_key) {
    char *m = NULL;
    if (extra_key) {
        if (asprintf(&m, "{\"Serial\":%llu,\"Pid\":%u,\"%s\":%lld}", (unsigned long long)r->serial, pid, extra_key,
                     (long long)extra_key_val) < 0)
            m = NULL;
    } else if (asprintf(&m, "{\"Serial\":%llu,\"Pid\":%u}", (unsigned long long)r->serial, pid) < 0) {
        m = NULL;
    }
    return m;
}

/* One request on an existing system: meta, optional JSON document, result document. */
static HRESULT sys_rpc_abandonable(rsys *r, uint32_t call, char *meta, const json *opts, const atomic_bool *abandon,
                                   char **doc, frame *keep) {
    if (!meta) return E_OUTOFMEMORY;
    if (emu_service_disconnected()) { /* the simulated disconnect of this process */
        free(meta);
        return fail_doc(doc, HCS_E_SERVICE_DISCONNECT, disconnect_msg);
    }
    if (!proxy_live(r, doc)) {
        free(meta);
        return HCS_E_SERVICE_DISCONNECT;
    }
    char *text = opts ? json_dump(opts) : NULL;
    frame f;
    HRESULT hr = rpc_abandonable(r->c, call, meta, text, abandon, &f);
    free(meta);
    free(text);
    if (hr == E_HANDLE) return hr;
    if (FAILED(hr)) return fail_doc(doc, hr, disconnect_msg);
    json *m;
    hr = result_of(&f, &m, doc);
    json_free(m);
    if (keep) *keep = f;
    else frame_release(&f);
    return hr;
}

static HRESULT sys_rpc(rsys *r, uint32_t call, char *meta, const json *opts, char **doc, frame *keep) {
    return sys_rpc_abandonable(r, call, meta, opts, NULL, doc, keep);
}

/* ------------------------------------------------------------------ the transport functions */

static HRESULT s_create(const char *id, const char *config, svc_system **out, char **doc) {
    HRESULT hr;
    conn *c = conn_get(&hr);
    if (!c) return fail_doc(doc, hr, g_last_error ? g_last_error : "The compute service is not available");
    json *m = json_new_object();
    json_set(m, "Id", json_new_string(id));
    char *meta = json_dump(m);
    json_free(m);
    frame f;
    hr = meta ? rpc(c, CALL_CREATE, meta, config, &f) : E_OUTOFMEMORY;
    free(meta);
    if (FAILED(hr)) {
        conn_unref(c);
        return fail_doc(doc, hr, disconnect_msg);
    }
    json *rm;
    hr = result_of(&f, &rm, doc);
    uint64_t serial = 0;
    if (!FAILED(hr) && json_uint64(json_get(rm, "Serial"), &serial)) {
        *out = (svc_system *)proxy_take(c, serial, id);
        if (!*out) hr = E_OUTOFMEMORY;
    } else if (!FAILED(hr)) {
        hr = fail_doc(doc, HCS_E_PROTOCOL_ERROR, "The service's answer to a create names no system");
    }
    json_free(rm);
    frame_release(&f);
    conn_unref(c);
    return hr;
}

static HRESULT s_open(const char *id, svc_system **out) {
    HRESULT hr;
    conn *c = conn_get(&hr);
    if (!c) return hr;
    json *m = json_new_object();
    json_set(m, "Id", json_new_string(id));
    char *meta = json_dump(m);
    json_free(m);
    frame f;
    hr = meta ? rpc(c, CALL_OPEN, meta, NULL, &f) : E_OUTOFMEMORY;
    free(meta);
    if (!FAILED(hr)) {
        json *rm;
        hr = result_of(&f, &rm, NULL);
        uint64_t serial = 0;
        if (!FAILED(hr)) {
            if (!json_uint64(json_get(rm, "Serial"), &serial)) hr = HCS_E_PROTOCOL_ERROR;
            else if (!(*out = (svc_system *)proxy_take(c, serial, id))) hr = E_OUTOFMEMORY;
        }
        json_free(rm);
        frame_release(&f);
    }
    conn_unref(c);
    return hr;
}

static void handle_notify(svc_system *s, uint32_t call) {
    rsys *r = (rsys *)s;
    char meta[64];
    snprintf(meta, sizeof meta, "{\"Serial\":%llu}", (unsigned long long)r->serial);
    if (call == CALL_HANDLE_CLOSED) {
        notify(r->c, call, meta);
        return;
    }
    /* An open is answered: once it returns, another client's last close cannot overtake it. */
    frame f;
    if (!FAILED(rpc(r->c, call, meta, NULL, &f))) frame_release(&f);
}
static void s_handle_opened(svc_system *s) { handle_notify(s, CALL_HANDLE_OPENED); }
static void s_handle_closed(svc_system *s) { handle_notify(s, CALL_HANDLE_CLOSED); }

static HRESULT s_sys_call(int call, svc_system *s, const json *opts, char **doc) {
    rsys *r = (rsys *)s;
    return sys_rpc(r, (uint32_t)call, sys_meta(r, 0, 0, NULL), opts, doc, NULL);
}

static HRESULT s_wait_exit(svc_system *s, uint32_t timeout_ms, const atomic_bool *abandoned, char **doc) {
    rsys *r = (rsys *)s;
    return sys_rpc_abandonable(r, CALL_WAIT_EXIT, sys_meta(r, 0, timeout_ms, "TimeoutMs"), NULL, abandoned, doc, NULL);
}

/* A closing handle set its abandon flag: its waits return E_HANDLE now. */
static void s_wake_waiters(void) {
    pthread_mutex_lock(&g_mu);
    conn *c = g_conn;
    if (c) c->refs++;
    pthread_mutex_unlock(&g_mu);
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    for (pending *p = c->pending; p; p = p->next) {
        if (!p->done && p->abandon && atomic_load(p->abandon)) {
            p->done = true;
            p->hr = E_HANDLE;
            pthread_cond_signal(&p->cv);
        }
    }
    pthread_mutex_unlock(&c->mu);
    conn_unref(c);
}

static HRESULT s_enumerate(const json *query, char **doc) {
    HRESULT hr;
    conn *c = conn_get(&hr);
    if (!c) return fail_doc(doc, hr, g_last_error ? g_last_error : "The compute service is not available");
    char *text = query ? json_dump(query) : NULL;
    frame f;
    hr = rpc(c, CALL_ENUMERATE, "{}", text, &f);
    free(text);
    if (FAILED(hr)) {
        conn_unref(c);
        return fail_doc(doc, hr, disconnect_msg);
    }
    json *m;
    hr = result_of(&f, &m, doc);
    json_free(m);
    frame_release(&f);
    conn_unref(c);
    return hr;
}

/* Takes the pipe ends a response carries ("Io": which of in/out/err, in that order). */
static void take_stdio(frame *f, svc_stdio *io) {
    json *m = json_parse(f->payload, strlen(f->payload), NULL, 0);
    const json *mask = json_get(m, "Io");
    int *slots[3] = {&io->in, &io->out, &io->err};
    int next = 0;
    for (size_t i = 0; i < 3 && i < json_len(mask); i++) {
        bool present = false;
        json_bool(json_at(mask, i), &present);
        if (present && next < f->nfds && f->fds[next] >= 0) {
            *slots[i] = f->fds[next];
            f->fds[next] = -1;
            next++;
        }
    }
    json_free(m);
}

static HRESULT s_create_process(svc_system *s, const char *params, uint32_t *pid, svc_stdio *io, char **doc) {
    rsys *r = (rsys *)s;
    if (!proxy_live(r, doc)) return HCS_E_SERVICE_DISCONNECT;
    /* The process starts from this process's environment and folder, as it would in-process. */
    json *m = json_new_object();
    json_set(m, "Serial", json_new_uint(r->serial));
    if (g_settings.inherit_environment) {
        json *env = json_new_array();
        for (char **e = environ; e && *e; e++) json_append(env, json_new_string(*e));
        json_set(m, "Environment", env);
    }
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd)) json_set(m, "Cwd", json_new_string(cwd));
    char *meta = json_dump(m);
    json_free(m);
    frame f;
    HRESULT hr = meta ? rpc(r->c, CALL_CREATE_PROCESS, meta, params, &f) : E_OUTOFMEMORY;
    free(meta);
    if (FAILED(hr)) return fail_doc(doc, hr, disconnect_msg);
    json *rm;
    hr = result_of(&f, &rm, doc);
    int64_t p = 0;
    if (!FAILED(hr)) {
        json_int64(json_get(rm, "Pid"), &p);
        *pid = (uint32_t)p;
        take_stdio(&f, io);
    }
    json_free(rm);
    frame_release(&f);
    return hr;
}

static HRESULT s_process_open(svc_system *s, uint32_t pid) {
    rsys *r = (rsys *)s;
    return sys_rpc(r, CALL_PROCESS_OPEN, sys_meta(r, pid, 0, NULL), NULL, NULL, NULL);
}

static void s_process_handle(svc_system *s, uint32_t pid, int delta) {
    rsys *r = (rsys *)s;
    char *meta = sys_meta(r, pid, delta, "Delta");
    frame f;
    if (meta && delta < 0) notify(r->c, CALL_PROCESS_HANDLE, meta);
    else if (meta && !FAILED(rpc(r->c, CALL_PROCESS_HANDLE, meta, NULL, &f))) frame_release(&f); /* as for opens */
    free(meta);
}

static HRESULT s_process_info(svc_system *s, uint32_t pid, svc_stdio *io, char **doc) {
    rsys *r = (rsys *)s;
    frame f;
    memset(&f, 0, sizeof f);
    for (int i = 0; i < PROTO_MAX_FDS; i++) f.fds[i] = -1;
    HRESULT hr = sys_rpc(r, CALL_PROCESS_INFO, sys_meta(r, pid, 0, NULL), NULL, doc, &f);
    if (!FAILED(hr) && f.payload) take_stdio(&f, io);
    frame_release(&f);
    return hr;
}

static HRESULT s_process_call(int call, svc_system *s, uint32_t pid, const json *opts, char **doc) {
    rsys *r = (rsys *)s;
    return sys_rpc(r, (uint32_t)call, sys_meta(r, pid, 0, NULL), opts, doc, NULL);
}

static HRESULT s_process_wait(svc_system *s, uint32_t pid, uint32_t timeout_ms, const atomic_bool *abandoned,
                              char **doc) {
    rsys *r = (rsys *)s;
    return sys_rpc_abandonable(r, CALL_PROCESS_WAIT, sys_meta(r, pid, timeout_ms, "TimeoutMs"), NULL, abandoned, doc,
                               NULL);
}

/* A service-wide request; NULL conn -> the service is not available. */
static HRESULT service_rpc(uint32_t call, const json *in, char **doc) {
    HRESULT hr;
    conn *c = conn_get(&hr);
    if (!c) return fail_doc(doc, hr, g_last_error ? g_last_error : "The compute service is not available");
    char *text = in ? json_dump(in) : NULL;
    frame f;
    hr = rpc(c, call, "{}", text, &f);
    free(text);
    conn_unref(c);
    if (FAILED(hr)) return fail_doc(doc, hr, disconnect_msg);
    json *m;
    hr = result_of(&f, &m, doc);
    json_free(m);
    frame_release(&f);
    return hr;
}

static bool is_local_type(const char *t) {
    return t && (strcmp(t, "EmulatorFaults") == 0 || strcmp(t, "EmulatorCallCounts") == 0 ||
                 strcmp(t, "EmulatorSettings") == 0);
}

/* Local answers for this process's controls, the service's for the rest; EmulatorStatistics
 * merges both (this process's handles, operations and threads; the service's systems). */
static HRESULT s_service_properties(const json *query, char **doc) {
    char *local = NULL;
    HRESULT hr = svc_service_properties(query, &local);
    if (FAILED(hr)) {
        *doc = local;
        return hr;
    }
    const json *types = json_get(query, "PropertyTypes");
    bool need_remote = !types;
    for (size_t i = 0; types && i < json_len(types); i++)
        if (!is_local_type(json_str(json_at(types, i)))) need_remote = true;
    if (!need_remote) {
        *doc = local;
        return hr;
    }
    char *remote = NULL;
    hr = service_rpc(CALL_SERVICE_PROPERTIES, query, &remote);
    if (FAILED(hr)) {
        free(local);
        *doc = remote;
        return hr;
    }
    json *l = json_parse(local, strlen(local), NULL, 0);
    json *r = remote ? json_parse(remote, strlen(remote), NULL, 0) : NULL;
    json *lp = (json *)json_get(l, "Properties"), *rp = (json *)json_get(r, "Properties");
    json *out = json_new_object(), *props = json_new_array();
    for (size_t i = 0; i < json_len(rp); i++) {
        const char *t = types ? json_str(json_at(types, i)) : "Basic";
        if (is_local_type(t)) {
            json_append(props, json_clone(json_at(lp, i)));
        } else if (t && strcmp(t, "EmulatorStatistics") == 0) {
            json *st = json_clone(json_at(lp, i));
            const json *rs = json_at(rp, i);
            json_set(st, "Systems", json_clone(json_get(rs, "Systems")));
            json_set(st, "Processes", json_clone(json_get(rs, "Processes")));
            json_append(props, st);
        } else {
            json_append(props, json_clone(json_at(rp, i)));
        }
    }
    json_set(out, "Properties", props);
    *doc = json_dump(out);
    json_free(out);
    json_free(l);
    json_free(r);
    free(local);
    free(remote);
    return S_OK;
}

static HRESULT s_modify_service(const json *req, char **doc) {
    const char *type = json_str(json_get(req, "PropertyType"));
    const char *action = json_str(json_get(json_get(req, "Settings"), "Action"));
    bool local_only = type && (strcmp(type, "EmulatorFaults") == 0 ||
                               (strcmp(type, "EmulatorActions") == 0 && action &&
                                (strcmp(action, "ServiceDisconnect") == 0 || strcmp(action, "Reconnect") == 0 ||
                                 strcmp(action, "ResetCallCounts") == 0)));
    bool both = type && (strcmp(type, "Emulator") == 0 ||
                         (strcmp(type, "EmulatorActions") == 0 && action && strcmp(action, "Reset") == 0));
    if (local_only || both) {
        HRESULT hr = svc_modify_service(req, doc);
        if (FAILED(hr)) return hr;
        if (action && strcmp(action, "ServiceDisconnect") == 0) {
            /* The simulated disconnect fails this process's waits in the service too. */
            pthread_mutex_lock(&g_mu);
            conn *c = g_conn;
            if (c) c->refs++;
            pthread_mutex_unlock(&g_mu);
            if (c) {
                pthread_mutex_lock(&c->mu);
                fail_pending_locked(c, HCS_E_SERVICE_DISCONNECT);
                pthread_mutex_unlock(&c->mu);
                conn_unref(c);
            }
        }
        if (local_only) return hr;
        pthread_mutex_lock(&g_mu);
        bool connected = g_conn && !g_conn->dead;
        pthread_mutex_unlock(&g_mu);
        if (!connected) return hr; /* applied on connect (sync_settings) */
    }
    if (emu_service_disconnected() && !(type && strncmp(type, "Emulator", 8) == 0))
        return svc_modify_service(req, doc); /* reports the simulated disconnect */
    return service_rpc(CALL_MODIFY_SERVICE, req, doc);
}

static HRESULT s_submit_wer(const json *report, char **doc) {
    if (emu_service_disconnected()) return svc_submit_wer(report, doc);
    return service_rpc(CALL_SUBMIT_WER, report, doc);
}

static bool s_runtime_id(const char *id, char out[37]) {
    svc_system *s = NULL;
    if (!id || FAILED(s_open(id, &s))) return false;
    char *doc = NULL;
    HRESULT hr = s_sys_call(CALL_PROPERTIES, s, NULL, &doc);
    json *v = !FAILED(hr) && doc ? json_parse(doc, strlen(doc), NULL, 0) : NULL;
    const char *rid = json_str(json_get(v, "RuntimeId"));
    bool ok = rid && strlen(rid) == 36;
    if (ok) memcpy(out, rid, 37);
    json_free(v);
    free(doc);
    s_unref(s);
    return ok;
}

/* A new service gets this process's switches. */
static void sync_settings(conn *c) {
    json *req = json_new_object();
    json_set(req, "PropertyType", json_new_string("Emulator"));
    json_set(req, "Settings", emu_settings_to_json());
    char *text = json_dump(req);
    json_free(req);
    frame f;
    if (text && !FAILED(rpc(c, CALL_MODIFY_SERVICE, "{}", text, &f))) frame_release(&f);
    free(text);
}

/* ------------------------------------------------------------------ reader and events */

static void *event_main(void *arg) {
    conn *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->ev_head && !c->ev_stop) pthread_cond_wait(&c->ev_cv, &c->mu);
        event_item *e = c->ev_head;
        if (!e) break;
        c->ev_head = e->next;
        if (!c->ev_head) c->ev_tail = NULL;
        rsys *r = NULL;
        if (e->type >= 0) {
            for (r = c->proxies; r; r = r->next)
                if (r->serial == e->serial) break;
            if (r) r->refs++;
        }
        pthread_mutex_unlock(&c->mu);
        if (e->type < 0) {
            ops_fail_all_pending(HCS_E_SERVICE_DISCONNECT);
            emu_sink_service_disconnect();
        } else if (r && e->pid) {
            emu_sink_process_event((svc_system *)r, e->pid, (HCS_EVENT_TYPE)e->type, e->data);
        } else if (r) {
            emu_sink_system_event((svc_system *)r, (HCS_EVENT_TYPE)e->type, e->data);
        }
        if (r) s_unref((svc_system *)r);
        free(e->data);
        free(e);
        pthread_mutex_lock(&c->mu);
        c->ev_delivered++;
        pthread_cond_broadcast(&c->ev_done_cv);
    }
    c->ev_thread = false;
    pthread_cond_broadcast(&c->ev_done_cv);
    pthread_mutex_unlock(&c->mu);
    conn_unref(c);
    return NULL;
}

static void enqueue_event(conn *c, event_item *e) {
    pthread_mutex_lock(&c->mu);
    c->ev_received++;
    if (c->ev_tail) c->ev_tail->next = e;
    else c->ev_head = e;
    c->ev_tail = e;
    if (!c->ev_thread) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        atomic_fetch_add(&c->refs, 1);
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        if (pthread_create(&t, &a, event_main, c) == 0) {
            c->ev_thread = true;
            c->ev_tid = t;
        } else {
            atomic_fetch_sub(&c->refs, 1);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&a);
    }
    pthread_cond_signal(&c->ev_cv);
    pthread_mutex_unlock(&c->mu);
}

/* Reads one frame and routes it: a response to its caller, an event to the event thread.
 * Called by whoever holds the read token (c->reading). */
static proto_status read_one(conn *c) {
    frame f;
    proto_status st = proto_recv(c->fd, &f);
    if (st != PROTO_OK) return st;
    if (f.type == FR_RESPONSE) {
        pthread_mutex_lock(&c->mu);
        pending *p;
        for (p = c->pending; p; p = p->next)
            if (p->id == f.id && !p->done) break;
        if (p) {
            p->f = f;
            p->ev_mark = c->ev_received;
            p->done = true;
            pthread_cond_signal(&p->cv);
        }
        pthread_mutex_unlock(&c->mu);
        if (!p) frame_release(&f); /* abandoned (simulated disconnect): close its pipes */
    } else if (f.type == FR_EVENT) {
        json *m = json_parse(f.payload, strlen(f.payload), NULL, 0);
        uint64_t serial = 0;
        int64_t pid = 0, type = -1;
        json_uint64(json_get(m, "Serial"), &serial);
        json_int64(json_get(m, "Pid"), &pid);
        json_int64(json_get(m, "Type"), &type);
        json_free(m);
        const char *d = frame_doc(&f);
        event_item *e = calloc(1, sizeof *e);
        if (e && type >= 0) {
            e->serial = serial;
            e->pid = (uint32_t)pid;
            e->type = (int)type;
            e->data = d ? strdup(d) : NULL;
            enqueue_event(c, e);
        } else {
            free(e);
        }
        frame_release(&f);
    } else {
        frame_release(&f);
    }
    return PROTO_OK;
}

/* Under c->mu: the stream is broken or closed. */
static void mark_dead_locked(conn *c) {
    if (c->dead) return;
    c->dead = true;
    fail_pending_locked(c, HCS_E_SERVICE_DISCONNECT);
    pthread_cond_broadcast(&c->read_cv);
}

/* Reads inline while holding the read token (under c->mu on entry and exit). */
static void read_with_token_locked(conn *c) {
    c->reading = true;
    pthread_mutex_unlock(&c->mu);
    proto_status st = read_one(c);
    pthread_mutex_lock(&c->mu);
    c->reading = false;
    pthread_cond_broadcast(&c->read_cv);
    if (st != PROTO_OK) mark_dead_locked(c);
}

/* The background reader: reads whenever data waits and no caller is reading for itself (a
 * caller waiting for a quick answer reads the socket itself, which saves a thread handoff). */
static void *reader_main(void *arg) {
    conn *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->dead) {
        while (c->reading && !c->dead) pthread_cond_wait(&c->read_cv, &c->mu);
        if (c->dead) break;
        pthread_mutex_unlock(&c->mu);
        struct pollfd pf = {c->fd, POLLIN, 0};
        int r = poll(&pf, 1, -1);
        pthread_mutex_lock(&c->mu);
        if (r < 0 && errno != EINTR) mark_dead_locked(c);
        if (r <= 0 || c->dead || c->reading) continue;
        read_with_token_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    emu_log("the service connection was lost");
    event_item *e = calloc(1, sizeof *e);
    if (e) {
        e->type = -1;
        enqueue_event(c, e);
    }
    pthread_mutex_lock(&c->mu);
    c->ev_stop = true;
    pthread_cond_signal(&c->ev_cv);
    pthread_mutex_unlock(&c->mu);
    if (c->service_pidfd >= 0) reap_pidfd(c->service_pidfd, false);
    conn_unref(c);
    return NULL;
}

/* ------------------------------------------------------------------ fork */

/* A forked child shares the parent's socket but must not speak on it: the child forgets the
 * connection (its handles fail as after a disconnect) and connects anew on its next call. */
static void fork_prepare(void) {
    pthread_mutex_lock(&g_mu);
    if (g_conn) {
        pthread_mutex_lock(&g_conn->mu);
        pthread_mutex_lock(&g_conn->wmu);
    }
}
static void fork_parent(void) {
    if (g_conn) {
        pthread_mutex_unlock(&g_conn->wmu);
        pthread_mutex_unlock(&g_conn->mu);
    }
    pthread_mutex_unlock(&g_mu);
}
static void fork_child(void) {
    if (g_conn) {
        conn *c = g_conn;
        pthread_mutex_init(&c->mu, NULL);
        pthread_mutex_init(&c->wmu, NULL);
        emu_cond_init(&c->ev_cv);
        emu_cond_init(&c->ev_done_cv);
        emu_cond_init(&c->read_cv);
        c->reading = false;
        c->dead = true;
        c->ev_thread = true; /* the parent's event thread does not exist here: never start one */
        c->ev_head = c->ev_tail = NULL;
        c->pending = NULL;
        close(c->fd);
        c->fd = -1;
        if (c->service_pidfd >= 0) close(c->service_pidfd);
        c->service_pidfd = -1;
        atomic_store(&c->refs, 1 << 30); /* leaked on purpose: handles copied from the parent still point at it */
        g_conn = NULL;
    }
    pthread_mutex_init(&g_mu, NULL);
}

static void init_once(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static const emu_transport socket_transport = {
    .name = "socket",
    .create = s_create,
    .open = s_open,
    .ref = s_ref,
    .unref = s_unref,
    .handle_opened = s_handle_opened,
    .handle_closed = s_handle_closed,
    .sys_call = s_sys_call,
    .enumerate = s_enumerate,
    .wait_exit = s_wait_exit,
    .wake_waiters = s_wake_waiters,
    .create_process = s_create_process,
    .process_open = s_process_open,
    .process_handle = s_process_handle,
    .process_info = s_process_info,
    .process_call = s_process_call,
    .process_wait = s_process_wait,
    .service_properties = s_service_properties,
    .modify_service = s_modify_service,
    .submit_wer = s_submit_wer,
    .runtime_id = s_runtime_id,
};

const emu_transport *emu_transport_socket(const char *mode, char **err) {
    if (strcmp(mode, "private") != 0 && strcmp(mode, "shared") != 0 && mode[0] != '/') {
        if (asprintf(err, "HCSEMU_SERVICE must be direct, private, shared or an absolute socket path, not '%s'",
                     mode) < 0)
            *err = NULL;
        return NULL;
    }
    pthread_once(&g_once, init_once);
    g_mode = strdup(mode);
    return &socket_transport;
}
