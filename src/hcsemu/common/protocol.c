/* Frames over a Unix stream socket (format in protocol.h). */
#define _GNU_SOURCE
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put16(unsigned char *p, uint16_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

proto_status proto_send(int fd, uint16_t type, uint32_t call, uint64_t id, const char *meta, const char *doc,
                        const int *fds, int nfds) {
    if (nfds < 0 || nfds > PROTO_MAX_FDS) return PROTO_GARBAGE;
    size_t ml = meta ? strlen(meta) : 0, dl = doc ? strlen(doc) + 1 : 0;
    if (ml + dl > PROTO_MAX_PAYLOAD) return PROTO_GARBAGE;
    unsigned char h[PROTO_HEADER];
    put32(h, PROTO_MAGIC);
    put32(h + 4, (uint32_t)(ml + dl));
    put16(h + 8, type);
    put16(h + 10, (uint16_t)nfds);
    put32(h + 12, call);
    put32(h + 16, (uint32_t)id);
    put32(h + 20, (uint32_t)(id >> 32));
    struct iovec iov[4];
    int n = 0;
    iov[n++] = (struct iovec){h, sizeof h};
    if (ml) iov[n++] = (struct iovec){(void *)meta, ml};
    if (dl) {
        iov[n++] = (struct iovec){(void *)"", 1};
        iov[n++] = (struct iovec){(void *)doc, dl - 1};
    }
    union {
        struct cmsghdr c;
        char buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
    } ctl;
    struct msghdr m = {0};
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)n;
    if (nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        m.msg_control = ctl.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    size_t total = sizeof h + ml + dl;
    while (total > 0) {
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return PROTO_IO;
        }
        total -= (size_t)w;
        m.msg_control = NULL; /* the descriptors went with the first byte */
        m.msg_controllen = 0;
        size_t left = (size_t)w;
        while (m.msg_iovlen > 0 && left >= m.msg_iov[0].iov_len) {
            left -= m.msg_iov[0].iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen > 0) {
            m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + left;
            m.msg_iov[0].iov_len -= left;
        }
    }
    return PROTO_OK;
}

static void close_cmsg_fds(struct msghdr *m, int *keep, int *nkeep, int cap) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *p = (int *)CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            if (keep && *nkeep < cap) keep[(*nkeep)++] = p[i];
            else close(p[i]);
        }
    }
}

proto_status proto_recv(int fd, frame *f) {
    memset(f, 0, sizeof *f);
    for (int i = 0; i < PROTO_MAX_FDS; i++) f->fds[i] = -1;
    unsigned char h[PROTO_HEADER];
    size_t got = 0;
    int fds[PROTO_MAX_FDS + 8];
    int nfds = 0;
    while (got < sizeof h) {
        union {
            struct cmsghdr c;
            char buf[CMSG_SPACE(sizeof(int) * 16)];
        } ctl;
        struct iovec iov = {h + got, sizeof h - got};
        struct msghdr m = {0};
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = ctl.buf;
        m.msg_controllen = sizeof ctl.buf;
        ssize_t r = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            for (int i = 0; i < nfds; i++) close(fds[i]);
            return r == 0 && got == 0 ? PROTO_EOF : PROTO_IO;
        }
        close_cmsg_fds(&m, fds, &nfds, (int)(sizeof fds / sizeof fds[0]));
        got += (size_t)r;
    }
    uint32_t len = get32(h + 4);
    uint16_t declared = get16(h + 10);
    if (get32(h) != PROTO_MAGIC || len > PROTO_MAX_PAYLOAD || declared > PROTO_MAX_FDS || declared != nfds) {
        for (int i = 0; i < nfds; i++) close(fds[i]);
        return PROTO_GARBAGE;
    }
    f->type = get16(h + 8);
    f->nfds = declared;
    f->call = get32(h + 12);
    f->id = (uint64_t)get32(h + 16) | (uint64_t)get32(h + 20) << 32;
    for (int i = 0; i < nfds; i++) f->fds[i] = fds[i];
    f->len = len;
    f->payload = malloc((size_t)len + 1);
    if (!f->payload) {
        frame_release(f);
        return PROTO_IO;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t r = read(fd, f->payload + off, len - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            frame_release(f);
            return PROTO_IO;
        }
        off += (size_t)r;
    }
    f->payload[len] = '\0';
    return PROTO_OK;
}

void frame_release(frame *f) {
    free(f->payload);
    f->payload = NULL;
    for (int i = 0; i < PROTO_MAX_FDS; i++) {
        if (f->fds[i] >= 0) close(f->fds[i]);
        f->fds[i] = -1;
    }
}

const char *frame_doc(const frame *f) {
    if (!f->payload) return NULL;
    size_t ml = strlen(f->payload);
    return ml < f->len ? f->payload + ml + 1 : NULL;
}

bool proto_peer(int fd, int *pid, int *uid) {
    struct ucred cr;
    socklen_t l = sizeof cr;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) != 0) return false;
    *pid = cr.pid;
    *uid = (int)cr.uid;
    return true;
}

char *proto_default_socket_path(void) {
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    struct stat sb;
    char *p = NULL;
    if (xdg && *xdg == '/' && stat(xdg, &sb) == 0 && S_ISDIR(sb.st_mode) && sb.st_uid == getuid()) {
        if (asprintf(&p, "%s/hcsemu/hcsemu.sock", xdg) < 0) p = NULL;
    } else if (asprintf(&p, "/tmp/hcsemu-%u/hcsemu.sock", (unsigned)getuid()) < 0) {
        p = NULL;
    }
    return p;
}

int proto_prepare_socket_dir(const char *path, char *err, size_t errlen) {
    char *dir = strdup(path);
    if (!dir) return ENOMEM;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        snprintf(err, errlen, "socket path '%s' must be absolute and inside a folder", path);
        free(dir);
        return EINVAL;
    }
    *slash = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "cannot create the socket folder '%s': %s", dir, strerror(e));
        free(dir);
        return e;
    }
    struct stat sb;
    int rc = 0;
    if (lstat(dir, &sb) != 0) {
        rc = errno;
        snprintf(err, errlen, "cannot inspect the socket folder '%s': %s", dir, strerror(rc));
    } else if (!S_ISDIR(sb.st_mode)) {
        rc = ENOTDIR;
        snprintf(err, errlen, "the socket folder '%s' is not a folder", dir);
    } else if (sb.st_uid != getuid()) {
        rc = EPERM;
        snprintf(err, errlen, "the socket folder '%s' belongs to uid %u, not to uid %u", dir, (unsigned)sb.st_uid,
                 (unsigned)getuid());
    } else if (sb.st_mode & 077) {
        rc = EPERM;
        snprintf(err, errlen, "the socket folder '%s' is reachable by other users (mode %03o, want 0700)", dir,
                 (unsigned)(sb.st_mode & 0777));
    }
    free(dir);
    return rc;
}
