/*
 * The service process's side of the protocol (protocol.h): one thread per client connection
 * reads its frames and answers them with the svc_* functions; calls that can block for long
 * (waits, stops, pause) run on the worker pool so one client's wait never holds up another
 * call. Each connection records what its client holds (system references, system handles,
 * process handles); when the connection ends, however the client ended, those handles are
 * closed, so ShouldTerminateOnLastHandleClosed counts every client's handles, crashed ones
 * included.
 */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "control.h"
#include "protocol.h"
#include "svc.h"

#define CONN_BUCKETS 256

static size_t held_bucket(uint64_t serial) { return (size_t)(serial * 0x9E3779B97F4A7C15ULL >> 56); }
static size_t ph_bucket(uint64_t serial, uint32_t pid) { return held_bucket(serial ^ ((uint64_t)pid << 32)); }

typedef struct held {
    uint64_t serial;
    svc_system *s; /* one reference for the entry */
    uint64_t refs; /* references the client counts (released with CALL_RELEASE) */
    int64_t handles;
    struct held *next;
} held;

typedef struct phandle {
    uint64_t serial;
    uint32_t pid;
    int64_t count;
    struct phandle *next;
} phandle;

/* A wait in progress, which the client can abandon (its handle was closed). */
typedef struct inflight {
    uint64_t id;
    atomic_bool abandon;
    struct inflight *next;
} inflight;

typedef struct sconn {
    int fd;
    inflight *waits;
    atomic_int refs;
    pthread_mutex_t mu;  /* held, ph, dead */
    pthread_mutex_t wmu; /* writes */
    bool dead;
    int uid, pid;
    /* Hash tables (chained), so that a request's lookups stay O(1) however many systems and
     * process handles a client holds. */
    held *held[CONN_BUCKETS];
    phandle *ph[CONN_BUCKETS];
    struct sconn *next;
} sconn;

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static sconn *conns;
static size_t n_conns;
static server_config cfg;

static void sconn_unref(sconn *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    close(c->fd);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->wmu);
    free(c);
}

static void send_frame(sconn *c, uint16_t type, uint32_t call, uint64_t id, const json *meta, const char *doc,
                       const int *fds, int nfds) {
    char *m = json_dump(meta);
    if (!m) return;
    pthread_mutex_lock(&c->wmu);
    /* A client that stops reading (stopped, hung) must not stall the service: after the send
     * timeout the stream may hold half a frame, so the connection ends (see server_serve). */
    if (proto_send(c->fd, type, call, id, m, doc, fds, nfds) != PROTO_OK) shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&c->wmu);
    free(m);
}

static void respond(sconn *c, const frame *f, HRESULT hr, json *extra, const char *doc, const int *fds, int nfds) {
    json *m = extra ? extra : json_new_object();
    json_set(m, "HResult", json_new_int(hr));
    send_frame(c, FR_RESPONSE, f->call, f->id, m, doc, fds, nfds);
    json_free(m);
}

static void respond_error(sconn *c, const frame *f, HRESULT hr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void respond_error(sconn *c, const frame *f, HRESULT hr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    char *doc = emu_error_doc(hr, "%s", msg ? msg : "");
    respond(c, f, hr, NULL, doc, NULL, 0);
    free(doc);
    free(msg);
}

/* ------------------------------------------------------------------ what a client holds */

static held *find_held_locked(sconn *c, uint64_t serial) {
    for (held *h = c->held[held_bucket(serial)]; h; h = h->next)
        if (h->serial == serial) return h;
    return NULL;
}

/* Records one more client reference to s; consumes the caller's reference on s. */
static bool hold(sconn *c, svc_system *s) {
    pthread_mutex_lock(&c->mu);
    held *h = find_held_locked(c, svc_serial(s));
    if (h) {
        h->refs++;
        pthread_mutex_unlock(&c->mu);
        svc_unref(s);
        return true;
    }
    h = calloc(1, sizeof *h);
    if (!h) {
        pthread_mutex_unlock(&c->mu);
        svc_unref(s);
        return false;
    }
    h->serial = svc_serial(s);
    h->s = s;
    h->refs = 1;
    held **bucket = &c->held[held_bucket(h->serial)];
    h->next = *bucket;
    *bucket = h;
    pthread_mutex_unlock(&c->mu);
    return true;
}

/* The system a request names ("Serial"), referenced, or NULL. */
static svc_system *lookup(sconn *c, const json *meta, uint64_t *serial_out) {
    uint64_t serial = 0;
    if (!json_uint64(json_get(meta, "Serial"), &serial)) return NULL;
    pthread_mutex_lock(&c->mu);
    held *h = find_held_locked(c, serial);
    svc_system *s = h ? h->s : NULL;
    if (s) svc_ref(s);
    pthread_mutex_unlock(&c->mu);
    if (serial_out) *serial_out = serial;
    return s;
}

/* Counts a process handle of this client; a close it never opened is refused (false). */
static bool count_process_handle(sconn *c, uint64_t serial, uint32_t pid, int64_t delta) {
    pthread_mutex_lock(&c->mu);
    phandle **pp = &c->ph[ph_bucket(serial, pid)], *p;
    for (; (p = *pp); pp = &p->next)
        if (p->serial == serial && p->pid == pid) break;
    if (!p && (p = calloc(1, sizeof *p))) {
        p->serial = serial;
        p->pid = pid;
        p->next = NULL;
        *pp = p;
    }
    bool ok = p && p->count + delta >= 0;
    if (ok) p->count += delta;
    if (p && p->count == 0) { /* no handle left: the entry goes (it used to stay for good) */
        *pp = p->next;
        free(p);
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* The client is gone: close every handle it held, as its own closes would have. */
static void abandon_waits(sconn *c, bool all, uint64_t id);

static void release_all(sconn *c) {
    abandon_waits(c, true, 0); /* nobody is left to answer */
    held *hl[CONN_BUCKETS];
    phandle *ph[CONN_BUCKETS];
    pthread_mutex_lock(&c->mu);
    c->dead = true;
    memcpy(hl, c->held, sizeof hl);
    memcpy(ph, c->ph, sizeof ph);
    memset(c->held, 0, sizeof c->held);
    memset(c->ph, 0, sizeof c->ph);
    pthread_mutex_unlock(&c->mu);
    for (size_t b = 0; b < CONN_BUCKETS; b++) {
        for (phandle *p = ph[b], *n; p; p = n) {
            n = p->next;
            held *h = hl[held_bucket(p->serial)];
            while (h && h->serial != p->serial) h = h->next;
            if (h && p->count > 0) svc_process_handle(h->s, p->pid, (int)-p->count);
            free(p);
        }
    }
    for (size_t b = 0; b < CONN_BUCKETS; b++) {
        for (held *h = hl[b], *n; h; h = n) {
            n = h->next;
            for (int64_t i = 0; i < h->handles; i++) svc_handle_closed(h->s);
            svc_unref(h->s);
            free(h);
        }
    }
}

/* ------------------------------------------------------------------ events */

static void send_event(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data) {
    uint64_t serial = svc_serial(s);
    pthread_mutex_lock(&conns_mu);
    size_t n = 0;
    sconn **to = n_conns ? calloc(n_conns, sizeof *to) : NULL;
    for (sconn *c = conns; to && c; c = c->next) {
        pthread_mutex_lock(&c->mu);
        bool holds = !c->dead && find_held_locked(c, serial);
        pthread_mutex_unlock(&c->mu);
        if (holds) {
            atomic_fetch_add(&c->refs, 1);
            to[n++] = c;
        }
    }
    pthread_mutex_unlock(&conns_mu);
    if (!n) {
        free(to);
        return;
    }
    json *m = json_new_object();
    json_set(m, "Serial", json_new_uint(serial));
    json_set(m, "Pid", json_new_uint(pid));
    json_set(m, "Type", json_new_int(type));
    for (size_t i = 0; i < n; i++) {
        send_frame(to[i], FR_EVENT, 0, 0, m, data, NULL, 0);
        sconn_unref(to[i]);
    }
    json_free(m);
    free(to);
}

static void on_system_event(svc_system *s, HCS_EVENT_TYPE type, const char *data) { send_event(s, 0, type, data); }
static void on_process_event(svc_system *s, uint32_t pid, HCS_EVENT_TYPE type, const char *data) {
    send_event(s, pid, type, data);
}
static const svc_event_sink event_sink = {on_system_event, on_process_event};

/* ------------------------------------------------------------------ requests */

static const json *parse_doc(const frame *f, json **owned, HRESULT *hr, char **err) {
    *owned = NULL;
    const char *d = frame_doc(f);
    if (!d || !*d) return NULL;
    char msg[256];
    *owned = json_parse(d, strlen(d), msg, sizeof msg);
    if (!*owned) {
        *hr = HCS_E_INVALID_JSON;
        *err = emu_error_doc(HCS_E_INVALID_JSON, "The document is not valid JSON: %s", msg);
    }
    return *owned;
}

static json *stdio_meta(json *m, const svc_stdio *io, int *fds, int *nfds) {
    json *mask = json_new_array();
    const int in[3] = {io->in, io->out, io->err};
    *nfds = 0;
    for (int i = 0; i < 3; i++) {
        json_append(mask, json_new_bool(in[i] >= 0));
        if (in[i] >= 0) fds[(*nfds)++] = in[i];
    }
    json_set(m, "Io", mask);
    return m;
}

static json *status_json(void) {
    json *o = json_new_object();
    json_set(o, "Protocol", json_new_int(HCSEMU_PROTOCOL_VERSION));
    json_set(o, "Pid", json_new_int(getpid()));
    json_set(o, "Uid", json_new_int(getuid()));
    json_set(o, "Private", json_new_bool(cfg.private_mode));
    json_set(o, "Socket", cfg.socket_path ? json_new_string(cfg.socket_path) : json_new_null());
    pthread_mutex_lock(&conns_mu);
    json_set(o, "Clients", json_new_uint(n_conns));
    pthread_mutex_unlock(&conns_mu);
    json_set(o, "Systems", json_new_uint(svc_live_systems()));
    json_set(o, "Processes", json_new_uint(svc_live_processes()));
    return o;
}

/* A wait for a system's or a process's exit (pid 0: the system's), registered so that the
 * client's death or a cancel ends it (abandon_waits). */
static HRESULT serve_wait(sconn *c, frame *f, svc_system *s, uint32_t pid, uint32_t timeout, char **doc) {
    inflight w = {.id = f->id};
    atomic_init(&w.abandon, false);
    pthread_mutex_lock(&c->mu);
    w.next = c->waits;
    c->waits = &w;
    if (c->dead) atomic_store(&w.abandon, true);
    pthread_mutex_unlock(&c->mu);
    HRESULT hr = f->call == CALL_WAIT_EXIT ? svc_wait_exit_or_abandon(s, timeout, &w.abandon, doc)
                                           : svc_process_wait_or_abandon(s, pid, timeout, &w.abandon, doc);
    pthread_mutex_lock(&c->mu);
    for (inflight **pp = &c->waits; *pp; pp = &(*pp)->next) {
        if (*pp == &w) {
            *pp = w.next;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return hr;
}

/* A process created with the client's environment and working directory (the request's
 * Environment and Cwd). */
static HRESULT serve_create_process(frame *f, json *meta, svc_system *s, uint32_t *pid, svc_stdio *io, char **doc) {
    const char *params = frame_doc(f);
    if (!params) {
        *doc = emu_error_doc(HCS_E_INVALID_JSON, "CreateProcess needs process parameters");
        return HCS_E_INVALID_JSON;
    }
    const json *envs = json_get(meta, "Environment");
    char **env = NULL;
    if (json_typeof(envs) == JSON_ARRAY && (env = calloc(json_len(envs) + 1, sizeof *env))) {
        size_t k = 0;
        for (size_t i = 0; i < json_len(envs); i++) {
            const char *e = json_str(json_at(envs, i));
            if (e && strchr(e, '=')) env[k++] = (char *)e;
        }
    }
    svc_caller_environ = env;
    svc_caller_cwd = json_str(json_get(meta, "Cwd"));
    HRESULT hr = svc_create_process(s, params, pid, io, doc);
    svc_caller_environ = NULL;
    svc_caller_cwd = NULL;
    free(env);
    return hr;
}

static void handle_request(sconn *c, frame *f, json *meta) {
    char *doc = NULL;
    HRESULT hr = S_OK;
    json *opts_owned = NULL;
    const json *opts = parse_doc(f, &opts_owned, &hr, &doc);
    if (FAILED(hr)) {
        respond(c, f, hr, NULL, doc, NULL, 0);
        free(doc);
        return;
    }
    json *out = json_new_object();
    uint32_t call = f->call;
    int64_t pid64 = 0, timeout = 0;
    json_int64(json_get(meta, "Pid"), &pid64);
    uint32_t pid = (uint32_t)pid64;
    if (call == CALL_CREATE || call == CALL_OPEN) {
        const char *id = json_str(json_get(meta, "Id"));
        svc_system *s = NULL;
        if (!id || !*id) {
            hr = HCS_E_PROTOCOL_ERROR;
            doc = emu_error_doc(hr, "The request names no system Id");
        } else if (call == CALL_CREATE) {
            const char *config = frame_doc(f);
            hr = config ? svc_create(id, config, &s, &doc) : HCS_E_INVALID_JSON;
            if (!config) doc = emu_error_doc(hr, "A create needs a configuration document");
        } else {
            hr = svc_open(id, &s);
        }
        if (!FAILED(hr)) {
            json_set(out, "Serial", json_new_uint(svc_serial(s)));
            if (!hold(c, s)) hr = E_OUTOFMEMORY;
        }
    } else if (call == CALL_ENUMERATE) {
        hr = svc_enumerate(opts, &doc);
    } else if (call == CALL_SERVICE_PROPERTIES) {
        hr = svc_service_properties(opts, &doc);
    } else if (call == CALL_MODIFY_SERVICE || call == CALL_SUBMIT_WER) {
        if (!opts) {
            hr = HCS_E_INVALID_JSON;
            doc = emu_error_doc(hr, "A JSON document is required");
        } else {
            hr = call == CALL_MODIFY_SERVICE ? svc_modify_service(opts, &doc) : svc_submit_wer(opts, &doc);
        }
    } else if (call == CALL_STATUS) {
        json *st = status_json();
        doc = json_dump(st);
        json_free(st);
    } else if (call == CALL_STOP) {
        respond(c, f, S_OK, out, NULL, NULL, 0);
        json_free(opts_owned);
        if (cfg.on_stop) cfg.on_stop();
        return;
    } else {
        uint64_t serial = 0;
        svc_system *s = lookup(c, meta, &serial);
        if (!s) {
            hr = HCS_E_SYSTEM_NOT_FOUND;
            doc = emu_error_doc(hr, "This client holds no compute system with serial %llu", (unsigned long long)serial);
            respond(c, f, hr, out, doc, NULL, 0);
            free(doc);
            json_free(opts_owned);
            return;
        }
        json_int64(json_get(meta, "TimeoutMs"), &timeout);
        svc_stdio io = {-1, -1, -1};
        int fds[3], nfds = 0;
        switch (call) {
        case CALL_START: hr = svc_start(s, opts, &doc); break;
        case CALL_SHUTDOWN: hr = svc_shutdown(s, opts, &doc); break;
        case CALL_TERMINATE: hr = svc_terminate(s, opts, &doc); break;
        case CALL_CRASH: hr = svc_crash(s, opts, &doc); break;
        case CALL_PAUSE: hr = svc_pause(s, opts, &doc); break;
        case CALL_RESUME: hr = svc_resume(s, opts, &doc); break;
        case CALL_SAVE: hr = svc_save(s, opts, &doc); break;
        case CALL_PROPERTIES: hr = svc_properties(s, opts, &doc); break;
        case CALL_MODIFY: hr = svc_modify(s, opts, &doc); break;
        case CALL_WAIT_EXIT:
        case CALL_PROCESS_WAIT: hr = serve_wait(c, f, s, pid, (uint32_t)timeout, &doc); break;
        case CALL_PROCESS_OPEN: hr = svc_process_open(s, pid); break;
        case CALL_PROCESS_SIGNAL: hr = svc_process_signal(s, pid, opts, &doc); break;
        case CALL_PROCESS_TERMINATE: hr = svc_process_terminate(s, pid, &doc); break;
        case CALL_PROCESS_PROPERTIES: hr = svc_process_properties(s, pid, opts, &doc); break;
        case CALL_PROCESS_MODIFY: hr = svc_process_modify(s, pid, opts, &doc); break;
        case CALL_PROCESS_INFO:
            hr = svc_process_info(s, pid, &io, &doc);
            if (!FAILED(hr)) stdio_meta(out, &io, fds, &nfds);
            break;
        case CALL_CREATE_PROCESS: {
            uint32_t newpid = 0;
            hr = serve_create_process(f, meta, s, &newpid, &io, &doc);
            if (!FAILED(hr)) {
                count_process_handle(c, serial, newpid, +1); /* the creating handle */
                json_set(out, "Pid", json_new_uint(newpid));
                stdio_meta(out, &io, fds, &nfds);
            }
            break;
        }
        default:
            hr = HCS_E_UNKNOWN_MESSAGE;
            doc = emu_error_doc(hr, "Unknown call %u", call);
        }
        svc_unref(s);
        respond(c, f, hr, out, doc, fds, nfds);
        for (int i = 0; i < nfds; i++) close(fds[i]); /* the client has its own now */
        free(doc);
        json_free(opts_owned);
        return;
    }
    respond(c, f, hr, out, doc, NULL, 0);
    free(doc);
    json_free(opts_owned);
}

/* Ends the client's waits (all of them, or the one of request id). */
static void abandon_waits(sconn *c, bool all, uint64_t id) {
    pthread_mutex_lock(&c->mu);
    for (inflight *w = c->waits; w; w = w->next)
        if (all || w->id == id) atomic_store(&w->abandon, true);
    pthread_mutex_unlock(&c->mu);
    svc_wake_waiters();
}

static void handle_notify(sconn *c, frame *f, json *meta) {
    if (f->call == CALL_ABANDON) {
        uint64_t id = 0;
        if (json_uint64(json_get(meta, "Request"), &id)) abandon_waits(c, false, id);
        return;
    }
    uint64_t serial = 0;
    json_uint64(json_get(meta, "Serial"), &serial);
    if (f->call == CALL_RELEASE) {
        uint64_t count = 0;
        json_uint64(json_get(meta, "Count"), &count);
        pthread_mutex_lock(&c->mu);
        held *h = find_held_locked(c, serial), *drop = NULL;
        if (h) {
            h->refs = count >= h->refs ? 0 : h->refs - count;
            if (h->refs == 0 && h->handles <= 0) {
                for (held **pp = &c->held[held_bucket(serial)]; *pp; pp = &(*pp)->next) {
                    if (*pp == h) {
                        *pp = h->next;
                        break;
                    }
                }
                drop = h;
            }
        }
        pthread_mutex_unlock(&c->mu);
        if (drop) {
            svc_unref(drop->s);
            free(drop);
        }
        return;
    }
    svc_system *s = lookup(c, meta, NULL);
    if (!s) return;
    if (f->call == CALL_HANDLE_OPENED || f->call == CALL_HANDLE_CLOSED) {
        bool open = f->call == CALL_HANDLE_OPENED;
        pthread_mutex_lock(&c->mu);
        held *h = find_held_locked(c, serial);
        bool ok = h && (open || h->handles > 0);
        if (ok) h->handles += open ? 1 : -1;
        pthread_mutex_unlock(&c->mu);
        if (ok && open) svc_handle_opened(s);
        else if (ok) svc_handle_closed(s);
    } else if (f->call == CALL_PROCESS_HANDLE) {
        int64_t pid = 0, delta = 0;
        json_int64(json_get(meta, "Pid"), &pid);
        json_int64(json_get(meta, "Delta"), &delta);
        if ((delta == 1 || delta == -1) && count_process_handle(c, serial, (uint32_t)pid, delta))
            svc_process_handle(s, (uint32_t)pid, (int)delta);
    }
    svc_unref(s);
}

typedef struct job {
    sconn *c;
    frame f;
    json *meta;
} job;

static void run_job(void *arg) {
    job *j = arg;
    handle_request(j->c, &j->f, j->meta);
    json_free(j->meta);
    frame_release(&j->f);
    sconn_unref(j->c);
    free(j);
}

static bool blocking_call(uint32_t call) {
    switch (call) {
    case CALL_SHUTDOWN: case CALL_TERMINATE: case CALL_CRASH: case CALL_PAUSE: case CALL_RESUME:
    case CALL_SAVE: case CALL_WAIT_EXIT: case CALL_PROCESS_WAIT: case CALL_PROCESS_TERMINATE:
    case CALL_PROCESS_SIGNAL: case CALL_STOP:
        return true;
    default: return false;
    }
}

/* ------------------------------------------------------------------ connections */

static void refuse(sconn *c, HRESULT hr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void refuse(sconn *c, HRESULT hr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    json *m = json_new_object();
    json_set(m, "HResult", json_new_int(hr));
    json_set(m, "Protocol", json_new_int(HCSEMU_PROTOCOL_VERSION));
    json_set(m, "Error", json_new_string(msg ? msg : "refused"));
    send_frame(c, FR_REFUSE, 0, 0, m, NULL, NULL, 0);
    json_free(m);
    emu_log("refused a client: %s", msg ? msg : "");
    free(msg);
}

static bool handshake(sconn *c) {
    /* A peer that never says HELLO must not hold a thread forever. */
    struct timeval tv = {10, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    frame f;
    proto_status st = proto_recv(c->fd, &f);
    if (st == PROTO_GARBAGE) refuse(c, HCS_E_PROTOCOL_ERROR, "malformed frame: expected a HELLO");
    if (st != PROTO_OK) return false;
    tv.tv_sec = 0;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    bool ok = false;
    json *m = json_parse(f.payload, strlen(f.payload), NULL, 0);
    int64_t ver = -1;
    if (c->uid != (int)getuid()) {
        refuse(c, E_ACCESSDENIED, "uid %d may not use the hcsemu service of uid %d (peer credentials checked)",
               c->uid, (int)getuid());
    } else if (f.type != FR_HELLO || !json_int64(json_get(m, "Protocol"), &ver)) {
        refuse(c, HCS_E_PROTOCOL_ERROR, "the first frame must be a HELLO with a Protocol version");
    } else if (ver != HCSEMU_PROTOCOL_VERSION) {
        refuse(c, HCS_E_UNSUPPORTED_PROTOCOL_VERSION, "the client speaks protocol %lld, this service speaks %d",
               (long long)ver, HCSEMU_PROTOCOL_VERSION);
    } else {
        json *w = json_new_object();
        json_set(w, "Protocol", json_new_int(HCSEMU_PROTOCOL_VERSION));
        json_set(w, "Pid", json_new_int(getpid()));
        send_frame(c, FR_WELCOME, 0, 0, w, NULL, NULL, 0);
        json_free(w);
        ok = true;
    }
    json_free(m);
    frame_release(&f);
    return ok;
}

static void *conn_main(void *arg) {
    sconn *c = arg;
    bool ok = handshake(c);
    while (ok) {
        frame f;
        proto_status st = proto_recv(c->fd, &f);
        if (st == PROTO_GARBAGE) {
            frame bad = {0};
            respond_error(c, &bad, HCS_E_PROTOCOL_ERROR, "malformed frame: the connection is closed");
            break;
        }
        if (st != PROTO_OK) break;
        json *meta = json_parse(f.payload, strlen(f.payload), NULL, 0);
        if (f.type != FR_REQUEST && f.type != FR_NOTIFY) {
            if (f.type != FR_RESPONSE) respond_error(c, &f, HCS_E_UNKNOWN_MESSAGE, "unexpected frame type %u", f.type);
        } else if (json_typeof(meta) != JSON_OBJECT) {
            if (f.type == FR_REQUEST) respond_error(c, &f, HCS_E_PROTOCOL_ERROR, "the request's arguments are not a JSON object");
        } else if (f.call == 0 || f.call >= CALL__COUNT) {
            if (f.type == FR_REQUEST) respond_error(c, &f, HCS_E_UNKNOWN_MESSAGE, "unknown call %u", f.call);
        } else if (f.type == FR_NOTIFY) {
            handle_notify(c, &f, meta);
        } else if (f.call == CALL_HANDLE_OPENED || f.call == CALL_PROCESS_HANDLE) {
            handle_notify(c, &f, meta); /* the same, answered (an open must be counted before it returns) */
            respond(c, &f, S_OK, NULL, NULL, NULL, 0);
        } else if (blocking_call(f.call)) {
            job *j = malloc(sizeof *j);
            if (j) {
                atomic_fetch_add(&c->refs, 1);
                *j = (job){c, f, meta};
                if (emu_submit(run_job, j)) continue; /* the job owns the frame and meta */
                sconn_unref(c);
                free(j);
            }
            respond_error(c, &f, E_OUTOFMEMORY, "the service cannot start a worker");
        } else {
            handle_request(c, &f, meta);
        }
        json_free(meta);
        frame_release(&f);
    }
    shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_lock(&conns_mu);
    for (sconn **pp = &conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            n_conns--;
            break;
        }
    }
    pthread_mutex_unlock(&conns_mu);
    release_all(c);
    emu_log("client %d disconnected", c->pid);
    sconn_unref(c);
    if (cfg.private_mode && cfg.on_stop) cfg.on_stop(); /* its only client is gone */
    return NULL;
}

void server_init(const server_config *config) {
    cfg = *config;
    svc_events = &event_sink;
}

bool server_serve(int fd) {
    sconn *c = calloc(1, sizeof *c);
    if (!c) return false;
    c->fd = fd;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->wmu, NULL);
    if (!proto_peer(fd, &c->pid, &c->uid)) c->uid = -1;
    struct timeval send_timeout = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    pthread_mutex_lock(&conns_mu);
    c->next = conns;
    conns = c;
    n_conns++;
    pthread_mutex_unlock(&conns_mu);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &a, conn_main, c);
    pthread_attr_destroy(&a);
    if (rc != 0) {
        pthread_mutex_lock(&conns_mu);
        for (sconn **pp = &conns; *pp; pp = &(*pp)->next) {
            if (*pp == c) {
                *pp = c->next;
                n_conns--;
                break;
            }
        }
        pthread_mutex_unlock(&conns_mu);
        sconn_unref(c);
        return false;
    }
    return true;
}

void server_stop_all_systems(void) {
    char *doc = NULL;
    if (FAILED(svc_enumerate(NULL, &doc)) || !doc) {
        free(doc);
        return;
    }
    json *list = json_parse(doc, strlen(doc), NULL, 0);
    free(doc);
    for (size_t i = 0; i < json_len(list); i++) {
        const char *id = json_str(json_get(json_at(list, i), "Id"));
        svc_system *s = NULL;
        if (!id || FAILED(svc_open(id, &s))) continue;
        char *d = NULL;
        svc_terminate(s, NULL, &d);
        free(d);
        svc_unref(s);
    }
    json_free(list);
}
