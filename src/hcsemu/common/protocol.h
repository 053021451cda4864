/*
 * The wire protocol between the client half (libhcsemu.so) and the service process (hcsemud).
 *
 * A stream of frames over a Unix stream socket. Every frame is a 24-byte header followed by
 * `len` payload bytes; file descriptors travel with the header as SCM_RIGHTS (`nfds` of them).
 *
 *   header: magic "HCSF" | u32 len | u16 type | u16 nfds | u32 call | u64 id   (little endian)
 *   payload: a UTF-8 JSON object (the arguments or the result fields), optionally followed by
 *            a NUL byte and a raw UTF-8 JSON document (a configuration, query or result).
 *
 * The first frame of a connection is HELLO from the client with {"Protocol": N, "Pid": ...};
 * the service answers WELCOME {"Protocol": N, "Pid": ...} or REFUSE {"HResult", "Error"}
 * (another uid, another protocol version) and closes. After that the client sends REQUEST
 * (answered by one RESPONSE with the same id, "HResult" and the result document) and NOTIFY
 * frames (no answer: handle counts and released references); the service sends EVENT frames
 * at any time. Everything a peer cannot parse is answered with an error and, if the stream can
 * no longer be trusted (bad magic, oversized frame), the connection is closed.
 */
#ifndef HCSEMU_PROTOCOL_H
#define HCSEMU_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HCSEMU_PROTOCOL_VERSION 1
#define PROTO_MAGIC 0x46534348u /* "HCSF" read as a little-endian u32 */
#define PROTO_HEADER 24
#define PROTO_MAX_PAYLOAD (64u << 20)
#define PROTO_MAX_FDS 3

enum {
    FR_HELLO = 1,
    FR_WELCOME = 2,
    FR_REFUSE = 3,
    FR_REQUEST = 4,
    FR_RESPONSE = 5,
    FR_NOTIFY = 6,
    FR_EVENT = 7,
};

/* The calls of a REQUEST or NOTIFY frame: one per svc_* function of service/svc.h, plus the service's own.
 * The numbers are the wire format (src/pyhcs/emulator/__init__.py speaks STATUS and STOP): append only. */
enum {
    CALL_CREATE = 1,
    CALL_OPEN,
    CALL_HANDLE_OPENED, /* notify */
    CALL_HANDLE_CLOSED, /* notify */
    CALL_RELEASE,       /* notify: the client dropped its references to a system */
    CALL_START,
    CALL_SHUTDOWN,
    CALL_TERMINATE,
    CALL_CRASH,
    CALL_PAUSE,
    CALL_RESUME,
    CALL_SAVE,
    CALL_PROPERTIES,
    CALL_MODIFY,
    CALL_ENUMERATE,
    CALL_WAIT_EXIT,
    CALL_CREATE_PROCESS,
    CALL_PROCESS_OPEN,
    CALL_PROCESS_HANDLE, /* notify */
    CALL_PROCESS_INFO,
    CALL_PROCESS_SIGNAL,
    CALL_PROCESS_TERMINATE,
    CALL_PROCESS_PROPERTIES,
    CALL_PROCESS_MODIFY,
    CALL_PROCESS_WAIT,
    CALL_SERVICE_PROPERTIES,
    CALL_MODIFY_SERVICE,
    CALL_SUBMIT_WER,
    CALL_STATUS = 29, /* the service process itself: pid, uid, socket, clients, systems */
    CALL_STOP = 30,   /* terminate every system and exit */
    CALL_ABANDON = 31, /* notify: the client no longer waits for request "Request" (its handle closed) */
    CALL__COUNT
};

typedef struct frame {
    uint16_t type, nfds;
    uint32_t call;
    uint64_t id;
    char *payload; /* len bytes + a NUL the sender did not send (always NUL-terminated) */
    uint32_t len;
    int fds[PROTO_MAX_FDS];
} frame;

typedef enum {
    PROTO_OK = 0,
    PROTO_EOF = 1,     /* the peer closed the connection cleanly between frames */
    PROTO_IO = 2,      /* a read/write error or EOF inside a frame */
    PROTO_GARBAGE = 3, /* bad magic, an oversized frame or too many fds: close the stream */
} proto_status;

/* Sends one frame: meta (a JSON object text) and, when doc != NULL, a NUL and doc. Safe to call
 * from several threads only under the caller's write lock. fds are duplicated by the kernel;
 * the caller still owns them. */
proto_status proto_send(int fd, uint16_t type, uint32_t call, uint64_t id, const char *meta, const char *doc,
                        const int *fds, int nfds);
/* Receives one frame (blocking). On PROTO_OK the caller frees f->payload and owns f->fds. */
proto_status proto_recv(int fd, frame *f);

/* A connection's read side: whole frames come out of one recvmsg each (a frame and the start
 * of the next may arrive together), where proto_recv needs two reads per frame. Descriptors
 * that came with the bytes wait in fds until their frame is complete. One reader at a time. */
typedef struct proto_reader {
    int fd;
    char *buf;
    size_t start, end, cap;
    int fds[PROTO_MAX_FDS * 4];
    int nfds;
} proto_reader;
void proto_reader_init(proto_reader *r, int fd);
void proto_reader_free(proto_reader *r); /* closes the descriptors no frame took */
/* Whether bytes already read wait in r (a poll of the socket would not see them). */
static inline bool proto_reader_buffered(const proto_reader *r) { return r->end > r->start; }
/* As proto_recv, through r. */
proto_status proto_read_frame(proto_reader *r, frame *f);
void frame_release(frame *f); /* frees the payload and closes unclaimed fds */
/* The document after the JSON meta of a payload, or NULL. */
const char *frame_doc(const frame *f);

/* The peer's credentials (SO_PEERCRED). */
bool proto_peer(int fd, int *pid, int *uid);

/* Paths: the default socket of the user's shared service ($XDG_RUNTIME_DIR/hcsemu/hcsemu.sock,
 * else /tmp/hcsemu-<uid>/hcsemu.sock); malloc'd. */
char *proto_default_socket_path(void);
/* Creates (0700) or checks the folder of a socket path: it must be ours and not reachable by
 * others. Returns 0 or an errno, with a message in err. */
int proto_prepare_socket_dir(const char *path, char *err, size_t errlen);

#endif /* HCSEMU_PROTOCOL_H */
