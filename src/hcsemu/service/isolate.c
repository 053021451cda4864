/*
 * Isolation of a compute system: namespaces, its root, mapped directories, host name, init.
 * The design is described in isolate.h; what a system gets is in docs/emulator.md.
 *
 * Everything that runs between a clone and an exec runs in a child that shares the caller's
 * memory (CLONE_VM | CLONE_VFORK, as posix_spawn does): it makes system calls only, reading a
 * list of steps (an "op" list) the parent prepared, and records a failure in that list, so
 * no allocation, lock or stdio is ever touched in the child of a multi-threaded process.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "isolate.h"
#include "proc.h"
#include "storage.h"

const char *const iso_feature_names[ISO__COUNT + 1] = {"Mount", "Uts", "Ipc", "Pid", "Network", NULL};
static const int ns_flags[ISO__COUNT] = {CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET};
static const char *const ns_files[ISO__COUNT] = {"mnt", "uts", "ipc", "pid", "net"};

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

/* ------------------------------------------------------------------ steps run in a child */

/* The code a child runs is not instrumented by the sanitizers: the child runs on a stack of its
 * own but shares the parent's memory and thread-local state, so AddressSanitizer would take
 * its frames for the parent thread's, poison their shadow and, at a noreturn call
 * (child_fail), unpoison "the thread's stack" by writing into frames it has poisoned: a false
 * report that aborts the child before it can record why it failed. */
#define CHILD_CODE __attribute__((no_sanitize("address", "undefined")))
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

enum {
    OP_MOUNT,      /* a: source (or NULL), b: target, fstype, data, flags */
    OP_REMOUNT_RO, /* b: a bind mount to make read-only */
    OP_MKDIR,      /* b: a directory to create if missing (created = it was) */
    OP_MKFILE,     /* b: an empty file to create if missing (a mount point for a file) */
    OP_SYMLINK,    /* a: target, b: the link to create if missing */
    OP_WRITE,      /* b: a file to create with content a */
    OP_HOSTNAME,   /* a: the host name */
    OP_LOOPBACK,   /* bring "lo" up */
    OP_PIVOT,      /* b: the new root */
    OP_OPEN_TREE,  /* a: a host path whose tree is cloned (before setns), kept in fd */
    OP_MOVE_TREE,  /* b: where the tree of op `ref` goes */
    OP_UMOUNT,     /* b: a mount point to detach */
    OP_PROC_WRITE, /* b: a /proc file (a user namespace's map) to write a to */
};

typedef struct iso_op {
    int kind;
    char *a, *b;
    const char *fstype, *data;
    unsigned long flags;
    int group;    /* > 0: a failed optional op skips the other ops of its group */
    bool optional;
    int ref;      /* OP_MOVE_TREE: the index of its OP_OPEN_TREE */
    /* written by the child */
    bool created;
    int fd;
} iso_op;

typedef struct oplist {
    iso_op *v;
    size_t n, cap;
} oplist;

static iso_op *op_add(oplist *l, int kind, const char *a, const char *b) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        iso_op *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return NULL;
        l->v = nv;
        l->cap = nc;
    }
    iso_op *o = &l->v[l->n++];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->a = a ? strdup(a) : NULL;
    o->b = b ? strdup(b) : NULL;
    o->fd = -1;
    return o;
}

static void ops_free(oplist *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].a);
        free(l->v[i].b);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* The shared record of a child: what it is to do and how it went. */
typedef struct child_job {
    oplist *ops;
    int ns_fds[ISO__COUNT]; /* setns into these (-1: no) after the OP_OPEN_TREE steps */
    int user_fd;            /* >= 0: a system in a user namespace: entered first; the child is then
                             * a copy (not sharing memory: the kernel lets no such process enter a
                             * user namespace), reports through report_fd, and, with a PID
                             * namespace, starts the process as a sibling (CLONE_PARENT) born in it */
    int report_fd;          /* the write end of run_child's pipe (a copy child), or -1 */
    char *stack2;           /* the top of the sibling's stack (in the copy) */
    /* exec */
    int exec_fd;            /* execveat this (the init), or -1 */
    char *const *argv, *const *envp;
    const char *cwd;
    int fd[3];              /* become 0..2 (-1: leave) */
    int lifeline;           /* becomes fd 3 (the init's) */
    int pgid;               /* -1: leave; 0: new group; else join */
    bool new_session;
    bool ctty;              /* fd 0 becomes the controlling terminal (after new_session) */
    bool exit_after_ops;    /* a child that only makes mounts: no exec */
    /* result */
    bool reached;           /* the child got to its exec (or, exit_after_ops, to its end) */
    pid_t sibling;          /* the process a copy child started (a host pid), or 0 */
    int err;
    int failed_op;          /* -1: not an op */
    const char *stage;
} child_job;

CHILD_CODE static int run_op(iso_op *o, child_job *j) {
    switch (o->kind) {
    case OP_MOUNT:
        return mount(o->a, o->b, o->fstype, o->flags, o->data) == 0 ? 0 : errno;
    case OP_REMOUNT_RO: {
        /* mount_setattr changes only what it sets: a remount must repeat every flag, and in a
         * user namespace the flags the host's mount had (nodev, noexec, ...) are locked */
        struct {
            uint64_t set, clr, propagation, userns_fd;
        } attr = {0x00000001 /* MOUNT_ATTR_RDONLY */ | (o->flags & MS_NOSUID ? 0x00000002 : 0), 0, 0, 0};
        if (syscall(SYS_mount_setattr, AT_FDCWD, o->b, 0, &attr, sizeof attr) == 0) return 0;
        if (errno != ENOSYS) return errno;
        return mount(NULL, o->b, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | o->flags, NULL) == 0 ? 0 : errno;
    }
    case OP_MKDIR:
        if (mkdir(o->b, 0755) == 0) {
            o->created = true;
            return 0;
        }
        return errno == EEXIST ? 0 : errno;
    case OP_MKFILE: {
        int fd = open(o->b, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd >= 0) {
            close(fd);
            o->created = true;
            return 0;
        }
        return errno == EEXIST ? 0 : errno;
    }
    case OP_SYMLINK:
        if (symlink(o->a, o->b) == 0) {
            o->created = true;
            return 0;
        }
        return errno == EEXIST ? 0 : errno;
    case OP_WRITE: {
        int fd = open(o->b, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) return errno;
        size_t len = strlen(o->a);
        ssize_t w = write(fd, o->a, len);
        int e = w == (ssize_t)len ? 0 : errno ? errno : EIO;
        close(fd);
        return e;
    }
    case OP_HOSTNAME:
        return sethostname(o->a, strlen(o->a)) == 0 ? 0 : errno;
    case OP_LOOPBACK: {
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0) return errno;
        struct ifreq ifr;
        memset(&ifr, 0, sizeof ifr);
        memcpy(ifr.ifr_name, "lo", 3);
        int e = 0;
        if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) e = errno;
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        if (!e && ioctl(s, SIOCSIFFLAGS, &ifr) < 0) e = errno;
        close(s);
        return e;
    }
    case OP_PIVOT:
        if (chdir(o->b) < 0) return errno;
        if (syscall(SYS_pivot_root, ".", ".") < 0) return errno;
        if (umount2(".", MNT_DETACH) < 0) return errno;
        return chdir("/") < 0 ? errno : 0;
    case OP_OPEN_TREE:
        o->fd = (int)syscall(SYS_open_tree, AT_FDCWD, o->a, OPEN_TREE_CLONE | AT_RECURSIVE);
        return o->fd >= 0 ? 0 : errno;
    case OP_MOVE_TREE:
        return syscall(SYS_move_mount, j->ops->v[o->ref].fd, "", AT_FDCWD, o->b, MOVE_MOUNT_F_EMPTY_PATH) == 0 ? 0 : errno;
    case OP_UMOUNT:
        return umount2(o->b, MNT_DETACH) == 0 ? 0 : errno;
    case OP_PROC_WRITE: {
        int fd = open(o->b, O_WRONLY | O_CLOEXEC);
        if (fd < 0) return errno;
        size_t len = strlen(o->a);
        int e = write(fd, o->a, len) == (ssize_t)len ? 0 : errno ? errno : EIO;
        close(fd);
        return e;
    }
    }
    return EINVAL;
}

/* What a copy child tells its parent (it shares no memory with it): string pointers stay
 * valid, the copy has the same mappings. */
typedef struct child_record {
    int tag; /* REC_* */
    int a, b;
    const char *stage;
} child_record;
enum { REC_FAIL = 1, REC_REACHED, REC_SIBLING, REC_CREATED };

CHILD_CODE static void child_tell(child_job *j, int tag, int a, int b, const char *stage) {
    if (j->report_fd < 0) return;
    child_record r = {tag, a, b, stage};
    while (write(j->report_fd, &r, sizeof r) < 0 && errno == EINTR) {
    }
}

CHILD_CODE static int child_fail(child_job *j, int err, const char *stage, int op) {
    j->err = err ? err : EINVAL;
    j->stage = stage;
    j->failed_op = op;
    child_tell(j, REC_FAIL, j->err, op, stage);
    _exit(127);
}

CHILD_CODE static void child_reached(child_job *j) {
    j->reached = true;
    child_tell(j, REC_REACHED, 0, 0, NULL);
}

/* PATH lookup without allocation: each directory of the environment's PATH in turn. */
CHILD_CODE static void exec_path(child_job *j) {
    const char *file = j->argv[0];
    if (strchr(file, '/')) {
        execve(file, j->argv, j->envp);
        return;
    }
    const char *path = "/usr/local/bin:/usr/bin:/bin";
    for (char *const *e = j->envp; e && *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    char buf[PATH_MAX];
    int last = ENOENT;
    size_t fl = strlen(file);
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t dl = colon ? (size_t)(colon - p) : strlen(p);
        if (dl + fl + 2 <= sizeof buf) {
            if (dl == 0) buf[0] = '.', dl = 1;
            else memcpy(buf, p, dl);
            buf[dl] = '/';
            memcpy(buf + dl + 1, file, fl + 1);
            execve(buf, j->argv, j->envp);
            if (errno != ENOENT && errno != ENOTDIR) last = errno;
        }
        if (!colon) break;
        p = colon + 1;
    }
    errno = last;
}

/* dup2 that also works onto the same number (dup2 onto itself would keep O_CLOEXEC). */
CHILD_CODE static bool move_fd(int from, int to) {
    if (from != to) return dup2(from, to) == to;
    int flags = fcntl(to, F_GETFD);
    return flags >= 0 && fcntl(to, F_SETFD, flags & ~FD_CLOEXEC) == 0;
}

/* The last steps of a process: its session or group, streams, working directory, exec. */
CHILD_CODE static int child_exec(void *arg) {
    child_job *j = arg;
    sigset_t none;
    sigemptyset(&none);
    if (j->new_session && setsid() < 0) child_fail(j, errno, "setsid", -1);
    if (j->pgid >= 0 && setpgid(0, j->pgid) < 0) child_fail(j, errno, "setpgid", -1);
    for (int k = 0; k < 3; k++)
        if (j->fd[k] >= 0 && !move_fd(j->fd[k], k)) child_fail(j, errno, "dup2", -1);
    if (j->lifeline >= 0 && !move_fd(j->lifeline, 3)) child_fail(j, errno, "dup2", -1);
    if (j->ctty && ioctl(0, TIOCSCTTY, 0) < 0) child_fail(j, errno, "the console's controlling terminal", -1);
    /* Everything else closes at the exec (not now: the init's program is still to be run). */
    syscall(SYS_close_range, j->lifeline >= 0 ? 4 : 3, ~0u, 4 /* CLOSE_RANGE_CLOEXEC */);
    if (j->cwd && chdir(j->cwd) < 0) child_fail(j, errno, "chdir", -1);
    sigprocmask(SIG_SETMASK, &none, NULL);
    child_reached(j);
    if (j->exec_fd >= 0) {
        syscall(SYS_execveat, j->exec_fd, "", j->argv, j->envp, AT_EMPTY_PATH);
        child_fail(j, errno, "exec", -1);
    }
    exec_path(j);
    child_fail(j, errno, "exec", -1);
    return 127;
}

CHILD_CODE static int child_main(void *arg) {
    child_job *j = arg;
    /* Default dispositions and an empty mask (the parent blocked every signal around the
     * clone, and the service's caller may ignore SIGPIPE: children must not). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL);
    size_t i = 0;
    oplist *ops = j->ops;
    /* The trees a live mapping moves are opened in the service's mount namespace first. */
    for (; ops && i < ops->n && ops->v[i].kind == OP_OPEN_TREE; i++) {
        int e = run_op(&ops->v[i], j);
        if (e) child_fail(j, e, "open_tree", (int)i);
    }
    /* A user namespace first: it gives the rights to enter the others (its own). */
    if (j->user_fd >= 0 && setns(j->user_fd, CLONE_NEWUSER) < 0) child_fail(j, errno, "setns", -1);
    bool sibling = j->user_fd >= 0 && j->ns_fds[ISO_PID] >= 0 && !j->exit_after_ops;
    for (int f = 0; f < ISO__COUNT; f++)
        if ((f != ISO_PID || sibling) && j->ns_fds[f] >= 0 && setns(j->ns_fds[f], ns_flags[f]) < 0)
            child_fail(j, errno, "setns", -1);
    int skip_group = 0;
    for (; ops && i < ops->n; i++) {
        iso_op *o = &ops->v[i];
        if (skip_group && o->group == skip_group) continue;
        int e = run_op(o, j);
        if (!e) {
            if (o->created) child_tell(j, REC_CREATED, (int)i, 0, NULL);
            continue;
        }
        if (o->optional && o->group > 0) {
            skip_group = o->group;
            continue;
        }
        if (o->optional) continue;
        child_fail(j, e, "mount", (int)i);
    }
    if (j->exit_after_ops) {
        child_reached(j);
        _exit(0);
    }
    if (sibling) {
        /* Only a process's children are born in the PID namespace it entered: the process is
         * started as this copy's sibling, a child of the service (which reaps it). */
        pid_t pid = clone(child_exec, j->stack2, CLONE_PARENT | CLONE_VFORK | SIGCHLD, j);
        if (pid < 0) child_fail(j, errno, "clone", -1);
        child_tell(j, REC_SIBLING, pid, 0, NULL);
        _exit(0);
    }
    return child_exec(j);
}

static void reap_now(pid_t pid) {
    while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

/* Reads what a copy child (and its sibling) reported, until both have exec'd or ended. */
static void read_reports(child_job *j, int fd) {
    child_record r;
    for (;;) {
        ssize_t n = read(fd, &r, sizeof r);
        if (n < 0 && errno == EINTR) continue;
        if (n != (ssize_t)sizeof r) break;
        if (r.tag == REC_FAIL) {
            j->err = r.a;
            j->failed_op = r.b;
            j->stage = r.stage;
        } else if (r.tag == REC_REACHED) {
            j->reached = true;
        } else if (r.tag == REC_SIBLING) {
            j->sibling = r.a;
        } else if (r.tag == REC_CREATED && j->ops && r.a >= 0 && (size_t)r.a < j->ops->n) {
            j->ops->v[r.a].created = true;
        }
    }
}

/* Clones child_main with `flags` (new namespaces) and waits until it has exec'd or failed.
 * Returns the child's pid, or -1 with j->err/j->stage. A failed child has been reaped. The
 * caller holds proc_known_lock, so a copy child is reaped here before the reaper sees it. */
static pid_t run_child(child_job *j, int flags) {
    const size_t stack_size = 256 * 1024;
    bool copy = j->user_fd >= 0;
    char *stack = mmap(NULL, 2 * stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        j->err = errno;
        j->stage = "clone";
        return -1;
    }
    UNPOISON(stack, 2 * stack_size); /* a mapping may reuse the shadow of an earlier one */
    j->err = 0;
    j->reached = false;
    j->sibling = 0;
    j->failed_op = -1;
    j->stage = NULL;
    j->report_fd = -1;
    j->stack2 = stack + 2 * stack_size;
    int rp[2] = {-1, -1};
    if (copy) {
        /* above 0..3, which the child fills before its exec */
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            j->err = errno;
            j->stage = "pipe";
            munmap(stack, 2 * stack_size);
            return -1;
        }
        rp[0] = fcntl(p[0], F_DUPFD_CLOEXEC, 10);
        rp[1] = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
        close(p[0]);
        close(p[1]);
        j->report_fd = rp[1];
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = rp[0] >= 0 || !copy ? clone(child_main, stack + stack_size, (copy ? 0 : CLONE_VM) | CLONE_VFORK | SIGCHLD | flags, j)
                                    : -1;
    int ce = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, 2 * stack_size);
    if (rp[1] >= 0) close(rp[1]);
    j->report_fd = -1;
    if (copy && pid > 0) read_reports(j, rp[0]);
    if (rp[0] >= 0) close(rp[0]);
    if (pid < 0) {
        j->err = ce;
        j->stage = "clone";
        return -1;
    }
    if (j->sibling > 0) {
        reap_now(pid); /* the copy, which started the process as its sibling and ended */
        pid = j->sibling;
    }
    if (!j->err && !j->reached) {
        /* it ended before its exec without saying why: killed by a signal */
        j->err = ECHILD;
        j->stage = "the child ended before its exec";
    }
    if (j->err) {
        reap_now(pid);
        return -1;
    }
    return pid;
}

/* ------------------------------------------------------------------ host facts */

static bool cap_sys_admin(void) {
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    unsigned long long caps = 0;
    bool found = false;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %llx", &caps) == 1) found = true;
    if (f) fclose(f);
    return found && (caps & (1ull << 21)); /* CAP_SYS_ADMIN */
}

/* The init program: this executable when it is hcsemud, else the hcsemud beside the library
 * (HCSEMU_DAEMON overrides, as for the service). */
static char *init_program(void) {
    const char *env = getenv("HCSEMU_DAEMON");
    if (env && *env) return strdup(env);
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        const char *base = strrchr(self, '/');
        base = base ? base + 1 : self;
        if (strncmp(base, "hcsemud", 7) == 0) return strdup(self);
    }
    Dl_info info;
    if (!dladdr((void *)&init_program, &info) || !info.dli_fname) return NULL;
    char *lib = realpath(info.dli_fname, NULL);
    char *slash = lib ? strrchr(lib, '/') : NULL;
    char *out = NULL;
    if (slash) {
        *slash = 0;
        out = emu_printf("%s/hcsemud", lib);
    }
    free(lib);
    return out;
}

static void reap_now(pid_t pid);

CHILD_CODE static int userns_probe_child(void *arg) {
    (void)arg;
    _exit(0);
}

/* Whether this process may create a user namespace (0), else why not (an errno); asked once. */
static int userns_error = -1;
static pthread_once_t userns_once = PTHREAD_ONCE_INIT;
static void probe_userns(void) {
    const size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        userns_error = errno;
        return;
    }
    UNPOISON(stack, size);
    pid_t pid = clone(userns_probe_child, stack + size, CLONE_VM | CLONE_VFORK | CLONE_NEWUSER | SIGCHLD, NULL);
    userns_error = pid < 0 ? errno : 0;
    if (pid > 0) reap_now(pid);
    munmap(stack, size);
}

/* Why no feature is available at all, or NULL; *via_user: through a user namespace of the
 * service's own (it lacks CAP_SYS_ADMIN but may create one). */
static char *host_blocker(bool *via_user) {
    *via_user = false;
    if (!cap_sys_admin()) {
        pthread_once(&userns_once, probe_userns);
        if (userns_error != 0)
            return emu_printf("the service (uid %d) lacks CAP_SYS_ADMIN, which namespaces and mounts need, and cannot "
                              "create a user namespace: %s", (int)geteuid(), strerror(userns_error));
        *via_user = true;
    }
    char *init = init_program();
    bool ok = init && access(init, X_OK) == 0;
    char *why = ok ? NULL : emu_printf("the init program '%s' is missing (set HCSEMU_DAEMON)", init ? init : "hcsemud");
    free(init);
    return why;
}

static pthread_mutex_t warn_mu = PTHREAD_MUTEX_INITIALIZER;
static bool warned;

/* One warning per service process: isolation was asked for and something is missing. */
static void warn_once(const json *fallbacks) {
    pthread_mutex_lock(&warn_mu);
    bool first = !warned;
    warned = true;
    pthread_mutex_unlock(&warn_mu);
    if (!first) return;
    char *text = json_dump(fallbacks);
    fprintf(stderr, "hcsemu: warning: isolation is partial; these features fall back to the host's: %s "
                    "(the EmulatorIsolation property says so per system)\n", text ? text : "?");
    free(text);
}

/* ------------------------------------------------------------------ paths */

char *iso_container_path(const char *cp) {
    if (!cp || !*cp) return NULL;
    if (((cp[0] | 0x20) >= 'a' && (cp[0] | 0x20) <= 'z') && cp[1] == ':') cp += 2;
    size_t len = strlen(cp);
    char *out = malloc(len + 2);
    if (!out) return NULL;
    size_t o = 0;
    const char *p = cp;
    while (*p) {
        while (*p == '/' || *p == '\\') p++;
        if (!*p) break;
        const char *s = p;
        while (*p && *p != '/' && *p != '\\') p++;
        size_t cl = (size_t)(p - s);
        if (cl == 1 && s[0] == '.') continue;
        if (cl == 2 && s[0] == '.' && s[1] == '.') {
            free(out);
            return NULL;
        }
        out[o++] = '/';
        memcpy(out + o, s, cl);
        o += cl;
    }
    if (o == 0) out[o++] = '/';
    out[o] = 0;
    return out;
}

void iso_free_mappings(iso_mapping *m, size_t n) {
    for (size_t i = 0; m && i < n; i++) {
        free(m[i].host);
        free(m[i].container);
    }
    free(m);
}

static bool parse_mapping(const json *d, iso_mapping *m, size_t i, char **err) {
    const char *host = json_str(json_get(d, "HostPath"));
    const char *cont = json_str(json_get(d, "ContainerPath"));
    bool ro = false;
    json_bool(json_get(d, "ReadOnly"), &ro);
    if (!host || host[0] != '/') {
        *err = emu_printf("MappedDirectories[%zu].HostPath must be an absolute host path", i);
        return false;
    }
    m->container = iso_container_path(cont ? cont : host);
    if (!m->container || strcmp(m->container, "/") == 0) {
        free(m->container);
        m->container = NULL;
        *err = emu_printf("MappedDirectories[%zu].ContainerPath '%s' is not a usable path in the container "
                          "(absolute, no '..', not the root)", i, cont ? cont : host);
        return false;
    }
    m->host = strdup(host);
    m->read_only = ro;
    return true;
}

long iso_parse_mappings(const json *dirs, iso_mapping **out, char **err) {
    *out = NULL;
    size_t n = json_len(dirs);
    if (n == 0) return 0;
    iso_mapping *m = calloc(n, sizeof *m);
    if (!m) return -1;
    for (size_t i = 0; i < n; i++) {
        if (!parse_mapping(json_at(dirs, i), &m[i], i, err)) {
            iso_free_mappings(m, n);
            return -1;
        }
    }
    *out = m;
    return (long)n;
}

/* ------------------------------------------------------------------ the system */

struct iso_system {
    pid_t init;
    int lifeline;             /* the service's end of the init's fd 3 */
    int ns_fds[ISO__COUNT];   /* -1: the host's */
    int user_fd;              /* its user namespace (the service lacks CAP_SYS_ADMIN), or -1 */
    unsigned long pidns_ino;
    char *root;               /* the host path of the root before pivot (view or scratch mount point) */
    bool view;                /* the root is a writable layer's merged view (host-visible) */
    char **created;           /* host paths of mount points made in the view, to remove at stop */
    size_t n_created;
};

static int self_pidns = -1;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;
static void open_self_pidns(void) { self_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC); }

static void add_created(iso_system *iso, const char *path) {
    char **nv = realloc(iso->created, (iso->n_created + 1) * sizeof *nv);
    if (!nv) return;
    iso->created = nv;
    nv[iso->n_created++] = strdup(path);
}

/* mkdir -p of root + cpath (a container path), as ops; the last component is a file when
 * `file`. */
static void plan_mount_point(oplist *ops, const char *root, const char *cpath, bool file) {
    if (!root || !cpath) return;
    char *full = emu_printf("%s%s", strcmp(root, "/") == 0 ? "" : root, cpath);
    size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
    for (char *p = full + rl + 1; full && *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        op_add(ops, OP_MKDIR, NULL, full);
        *p = '/';
    }
    if (full) op_add(ops, file ? OP_MKFILE : OP_MKDIR, NULL, full);
    free(full);
}

static void plan_bind(oplist *ops, const char *host, const char *root, const char *cpath, bool ro, int group,
                      bool optional) {
    struct stat st;
    bool file = stat(host, &st) == 0 && !S_ISDIR(st.st_mode);
    size_t first = ops->n;
    plan_mount_point(ops, root, cpath, file);
    char *target = emu_printf("%s%s", root, cpath);
    iso_op *o = op_add(ops, OP_MOUNT, host, target);
    if (o) o->flags = MS_BIND | MS_REC;
    if (ro && (o = op_add(ops, OP_REMOUNT_RO, NULL, target))) o->flags = MS_NOSUID;
    free(target);
    for (size_t i = first; i < ops->n; i++) {
        ops->v[i].group = group;
        ops->v[i].optional = optional;
    }
}

/* The host's folders a command needs, bound read-only under the root. */
static const char *const system_dirs[] = {"bin", "sbin", "usr", "lib", "lib32", "lib64", "libx32", NULL};
static const char *const etc_entries[] = {"passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf",
                                          "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "services",
                                          "protocols", "alternatives", "ssl", "ca-certificates", "mime.types",
                                          NULL};
static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};

static iso_op *mount_op(oplist *ops, const char *src, const char *dst, const char *fstype, unsigned long flags,
                        const char *data) {
    iso_op *o = op_add(ops, OP_MOUNT, src, dst);
    if (o) {
        o->fstype = fstype;
        o->flags = flags;
        o->data = data;
    }
    return o;
}

static void plan_root(oplist *ops, const char *root, bool view, const iso_request *req, int *group) {
    char path[PATH_MAX];
    if (view) mount_op(ops, root, root, NULL, MS_BIND | MS_REC, NULL);
    else mount_op(ops, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    for (size_t i = 0; system_dirs[i]; i++) {
        char host[64];
        snprintf(host, sizeof host, "/%s", system_dirs[i]);
        struct stat st;
        if (lstat(host, &st) != 0) continue;
        snprintf(path, sizeof path, "%s/%s", root, system_dirs[i]);
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(host, target, sizeof target - 1);
            if (n <= 0) continue;
            target[n] = 0;
            iso_op *o = op_add(ops, OP_SYMLINK, target, path);
            if (o) o->optional = true;
        } else if (S_ISDIR(st.st_mode)) {
            char cpath[64];
            snprintf(cpath, sizeof cpath, "/%s", system_dirs[i]);
            plan_bind(ops, host, root, cpath, true, ++*group, true);
        }
    }
    /* /etc: the layer's own when it has one, else a small tmpfs holding the host's essentials */
    snprintf(path, sizeof path, "%s/etc", root);
    struct stat st;
    bool own_etc = view && lstat(path, &st) == 0;
    if (!own_etc) {
        op_add(ops, OP_MKDIR, NULL, path);
        mount_op(ops, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
        for (size_t i = 0; etc_entries[i]; i++) {
            char host[64], cpath[64];
            snprintf(host, sizeof host, "/etc/%s", etc_entries[i]);
            snprintf(cpath, sizeof cpath, "/etc/%s", etc_entries[i]);
            if (stat(host, &st) == 0) plan_bind(ops, host, root, cpath, true, ++*group, true);
        }
        char *hn = emu_printf("%s\n", req->hostname && *req->hostname ? req->hostname : req->id);
        snprintf(path, sizeof path, "%s/etc/hostname", root);
        iso_op *o = op_add(ops, OP_WRITE, hn, path);
        if (o) o->optional = true;
        free(hn);
    }
    /* /dev: a tmpfs with the harmless host devices, a private devpts and shm */
    snprintf(path, sizeof path, "%s/dev", root);
    op_add(ops, OP_MKDIR, NULL, path);
    mount_op(ops, "tmpfs", path, "tmpfs", MS_NOSUID, "mode=0755");
    for (size_t i = 0; dev_nodes[i]; i++) {
        char host[64], cpath[64];
        snprintf(host, sizeof host, "/dev/%s", dev_nodes[i]);
        snprintf(cpath, sizeof cpath, "/dev/%s", dev_nodes[i]);
        if (stat(host, &st) == 0) plan_bind(ops, host, root, cpath, false, ++*group, true);
    }
    static const char *const links[][2] = {{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
                                           {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
                                           {"pts/ptmx", "ptmx"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(path, sizeof path, "%s/dev/%s", root, links[i][1]);
        iso_op *o = op_add(ops, OP_SYMLINK, links[i][0], path);
        if (o) o->optional = true;
    }
    int g = ++*group;
    snprintf(path, sizeof path, "%s/dev/pts", root);
    iso_op *o = op_add(ops, OP_MKDIR, NULL, path);
    if (o) o->group = g, o->optional = true;
    o = mount_op(ops, "devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    if (o) o->group = g, o->optional = true;
    g = ++*group;
    snprintf(path, sizeof path, "%s/dev/shm", root);
    if ((o = op_add(ops, OP_MKDIR, NULL, path))) o->group = g, o->optional = true;
    if ((o = mount_op(ops, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"))) o->group = g, o->optional = true;
    /* /proc of the system's PID namespace (the host's pids without one) */
    snprintf(path, sizeof path, "%s/proc", root);
    op_add(ops, OP_MKDIR, NULL, path);
    mount_op(ops, "proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    /* /tmp: private to the system, never in the layer */
    snprintf(path, sizeof path, "%s/tmp", root);
    op_add(ops, OP_MKDIR, NULL, path);
    mount_op(ops, "tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
}

/* Where a scratch root is mounted (inside the system's mount namespace only): one folder
 * in the runtime directory, shared by every system, never holding anything on the host. */
static const char *scratch_mount_point(void) {
    static char *path;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    char *have = path;
    pthread_mutex_unlock(&mu);
    if (have) return have;
    char *rt = storage_runtime_dir();
    if (!rt) return NULL;
    char *p = emu_printf("%s/isolation-root", rt);
    free(rt);
    if (p && mkdir(p, 0700) < 0 && errno != EEXIST) {
        free(p);
        return NULL;
    }
    pthread_mutex_lock(&mu);
    if (!path) path = p;
    else free(p);
    pthread_mutex_unlock(&mu);
    return path;
}

static unsigned long ns_inode(int fd) {
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

iso_system *iso_start(const iso_request *req, json **report, char **err) {
    *report = NULL;
    *err = NULL;
    json *rep = json_new_object();
    json *fallbacks = json_new_object();
    json *shared = json_new_object();
    unsigned want = 0;
    for (int f = 0; f < ISO__COUNT; f++) want |= 1u << f;
    if (!req->container) {
        want &= ~(1u << ISO_MOUNT);
        json_set(shared, "Mount", json_new_string("a virtual machine's files are its disks, which the emulator does "
                                                  "not read: its processes see the host's file system"));
    }
    if (req->networking) {
        want &= ~(1u << ISO_NETWORK);
        json_set(shared, "Network", json_new_string("the document attaches networking: the host's network"));
    }
    for (int f = 0; f < ISO__COUNT; f++) {
        if ((want & (1u << f)) && (req->without & (1u << f))) {
            want &= ~(1u << f);
            json_set(fallbacks, iso_feature_names[f], json_new_string("turned off by the IsolationWithout switch"));
        }
    }
    bool via_user = false;
    char *blocker = want ? host_blocker(&via_user) : NULL;
    if (blocker) {
        for (int f = 0; f < ISO__COUNT; f++)
            if (want & (1u << f)) json_set(fallbacks, iso_feature_names[f], json_new_string(blocker));
        want = 0;
        free(blocker);
    }
    const char *root = NULL;
    bool view = false;
    if (want & (1u << ISO_MOUNT)) {
        view = req->root != NULL;
        root = view ? req->root : scratch_mount_point();
        if (!root) {
            want &= ~(1u << ISO_MOUNT);
            json_set(fallbacks, "Mount", json_new_string("no runtime folder for the scratch root's mount point"));
        }
    }
    iso_system *iso = NULL;
    if (want) {
        iso = calloc(1, sizeof *iso);
        iso->lifeline = -1;
        iso->user_fd = -1;
        for (int f = 0; f < ISO__COUNT; f++) iso->ns_fds[f] = -1;
        oplist ops = {0};
        int group = 0;
        if (via_user) {
            /* The caller's uid and gid map to themselves: its processes are who they are on the
             * host, with rights only over what the namespace owns. The child writes its own maps
             * (a process may map its own ids); setgroups must be denied first. */
            char *uid = emu_printf("%u %u 1", (unsigned)geteuid(), (unsigned)geteuid());
            char *gid = emu_printf("%u %u 1", (unsigned)getegid(), (unsigned)getegid());
            op_add(&ops, OP_PROC_WRITE, "deny", "/proc/self/setgroups");
            op_add(&ops, OP_PROC_WRITE, uid, "/proc/self/uid_map");
            op_add(&ops, OP_PROC_WRITE, gid, "/proc/self/gid_map");
            free(uid);
            free(gid);
        }
        if (want & (1u << ISO_MOUNT)) {
            /* nothing made here may propagate to the host */
            mount_op(&ops, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
            plan_root(&ops, root, view, req, &group);
            for (size_t i = 0; i < req->n_maps; i++)
                plan_bind(&ops, req->maps[i].host, root, req->maps[i].container, req->maps[i].read_only, 0, false);
        }
        if (want & (1u << ISO_UTS)) op_add(&ops, OP_HOSTNAME, req->hostname && *req->hostname ? req->hostname : req->id, NULL);
        if (want & (1u << ISO_NETWORK)) {
            iso_op *o = op_add(&ops, OP_LOOPBACK, NULL, NULL);
            if (o) o->optional = true;
        }
        if (want & (1u << ISO_MOUNT)) op_add(&ops, OP_PIVOT, NULL, root);
        int sp[2] = {-1, -1};
        char *prog = init_program();
        int exec_fd = prog ? open(prog, O_RDONLY | O_CLOEXEC) : -1;
        if (exec_fd >= 0 && exec_fd < 10) {
            /* above 0..3, which the child fills with its streams and lifeline before the exec */
            int high = fcntl(exec_fd, F_DUPFD_CLOEXEC, 10);
            close(exec_fd);
            exec_fd = high;
        }
        char *argv[] = {"hcsemu-init", "--init", NULL};
        char *envp[] = {(char *)req->marker, NULL};
        child_job j = {.ops = &ops, .exec_fd = exec_fd, .argv = argv, .envp = envp, .lifeline = -1, .pgid = -1,
                       .new_session = true, .user_fd = -1};
        for (int f = 0; f < ISO__COUNT; f++) j.ns_fds[f] = -1;
        for (int k = 0; k < 3; k++) j.fd[k] = -1;
        int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        j.fd[0] = j.fd[1] = null_fd;
        /* the init's stderr stays the service's: an ASan report of the init must be seen */
        pid_t pid = -1;
        int flags = via_user ? CLONE_NEWUSER : 0;
        for (int f = 0; f < ISO__COUNT; f++)
            if (want & (1u << f)) flags |= ns_flags[f];
        if (exec_fd < 0) {
            j.err = errno;
            j.stage = "open the init program";
        } else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
            j.err = errno;
            j.stage = "socketpair";
        } else {
            j.lifeline = sp[1];
            proc_known_lock();
            pid = run_child(&j, flags);
            if (pid > 0) proc_known_add_locked(pid);
            proc_known_unlock();
        }
        if (null_fd >= 0) close(null_fd);
        if (exec_fd >= 0) close(exec_fd);
        if (sp[1] >= 0) close(sp[1]);
        free(prog);
        if (pid < 0) {
            const char *what = j.failed_op >= 0 && j.failed_op < (int)ops.n ? ops.v[j.failed_op].b : NULL;
            if (!what && j.failed_op >= 0 && j.failed_op < (int)ops.n) what = ops.v[j.failed_op].a;
            char *why = emu_printf("isolation: %s%s%s failed: %s", j.stage ? j.stage : "clone", what ? " of " : "",
                                   what ? what : "", strerror(j.err));
            bool refused = j.err == EPERM || j.err == EACCES || j.err == EINVAL || j.err == ENOSPC || j.err == EUSERS;
            if (via_user && refused && why) {
                /* what the user namespace does not allow here: every feature falls back, said why */
                char *reason = emu_printf("the service lacks CAP_SYS_ADMIN and its user namespace was refused (%s)", why);
                for (int f = 0; f < ISO__COUNT; f++)
                    if (want & (1u << f)) json_set(fallbacks, iso_feature_names[f], json_new_string(reason ? reason : why));
                free(reason);
                free(why);
                if (sp[0] >= 0) close(sp[0]);
                ops_free(&ops);
                free(iso);
                iso = NULL;
                want = 0;
                via_user = false;
                goto report;
            }
            *err = why;
            if (sp[0] >= 0) close(sp[0]);
            ops_free(&ops);
            free(iso);
            json_free(rep);
            json_free(fallbacks);
            json_free(shared);
            return NULL;
        }
        iso->init = pid;
        iso->lifeline = sp[0];
        for (int f = 0; f < ISO__COUNT; f++) {
            if (!(want & (1u << f))) continue;
            char p[64];
            snprintf(p, sizeof p, "/proc/%d/ns/%s", (int)pid, ns_files[f]);
            iso->ns_fds[f] = open(p, O_RDONLY | O_CLOEXEC);
        }
        iso->pidns_ino = ns_inode(iso->ns_fds[ISO_PID]);
        if (via_user) {
            char p[64];
            snprintf(p, sizeof p, "/proc/%d/ns/user", (int)pid);
            iso->user_fd = open(p, O_RDONLY | O_CLOEXEC);
        }
        if (want & (1u << ISO_MOUNT)) {
            iso->root = strdup(root);
            iso->view = view;
            for (size_t i = 0; view && i < ops.n; i++)
                if (ops.v[i].created && ops.v[i].b && strncmp(ops.v[i].b, root, strlen(root)) == 0)
                    add_created(iso, ops.v[i].b);
        }
        ops_free(&ops);
    }
report:;
    json *names = json_new_array();
    json *ids = json_new_object();
    for (int f = 0; f < ISO__COUNT; f++) {
        if (!(want & (1u << f))) continue;
        json_append(names, json_new_string(iso_feature_names[f]));
        json_set(ids, iso_feature_names[f], json_new_uint(ns_inode(iso->ns_fds[f])));
    }
    json_set(rep, "Namespaces", names);
    json_set(rep, "NamespaceIds", ids);
    if (want & (1u << ISO_MOUNT)) json_set(rep, "Root", json_new_string(view ? req->root : "Scratch"));
    else json_set(rep, "Root", json_new_string("Host"));
    json_set(rep, "HostName", json_new_string(want & (1u << ISO_UTS) ? (req->hostname && *req->hostname ? req->hostname : req->id) : "Host"));
    if (iso) json_set(rep, "Init", json_new_int(iso->init));
    json_set(rep, "UserNamespace", json_new_bool(iso && iso->user_fd >= 0));
    if (json_len(fallbacks)) warn_once(fallbacks);
    json_set(rep, "Fallbacks", fallbacks);
    json_set(rep, "Shared", shared);
    *report = rep;
    return iso;
}

void iso_kill(iso_system *iso) {
    if (iso && iso->init > 0) kill(iso->init, SIGKILL);
}

static void *late_reap(void *arg) {
    proc_reap((int)(intptr_t)arg);
    return NULL;
}

/* The init of a PID namespace ends only once every process of the namespace has been reaped,
 * and the system's processes are the service's children: a zombie the service has not reaped
 * yet holds the init back. So the wait is bounded, and a thread finishes it if need be. */
static void reap_init(pid_t init) {
    /* A pidfd is readable once the init has ended: woken at once rather than by a poll loop */
    int pfd = (int)syscall(SYS_pidfd_open, init, 0);
    if (pfd >= 0) {
        struct pollfd p = {.fd = pfd, .events = POLLIN};
        int n;
        while ((n = poll(&p, 1, 2000)) < 0 && errno == EINTR) {
        }
        close(pfd);
        if (n > 0) {
            proc_reap(init);
            return;
        }
    }
    for (int i = 0; pfd < 0 && i < 2000; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r = waitid(P_PID, (id_t)init, &si, WEXITED | WNOHANG | WNOWAIT); /* looks, leaves it */
        if ((r == 0 && si.si_pid == init) || (r < 0 && errno == ECHILD)) {
            proc_reap(init); /* reaps it and forgets the pid */
            return;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &a, late_reap, (void *)(intptr_t)init) != 0) emu_log("isolation: init %d left unreaped", (int)init);
    pthread_attr_destroy(&a);
}

void iso_stop(iso_system *iso) {
    if (!iso) return;
    if (iso->init > 0) {
        kill(iso->init, SIGKILL);
        reap_init(iso->init);
    }
    if (iso->lifeline >= 0) close(iso->lifeline);
    for (int f = 0; f < ISO__COUNT; f++)
        if (iso->ns_fds[f] >= 0) close(iso->ns_fds[f]);
    if (iso->user_fd >= 0) close(iso->user_fd);
    /* The mount points made in a writable layer, newest first; rmdir/unlink leave anything the
     * system's processes filled in. */
    for (size_t i = iso->n_created; i-- > 0;) {
        struct stat st;
        if (lstat(iso->created[i], &st) == 0) {
            if (S_ISDIR(st.st_mode)) rmdir(iso->created[i]);
            else if (st.st_size == 0 || S_ISLNK(st.st_mode)) unlink(iso->created[i]);
        }
        free(iso->created[i]);
    }
    free(iso->created);
    free(iso->root);
    free(iso);
}

bool iso_has_pid_namespace(const iso_system *iso) { return iso && iso->ns_fds[ISO_PID] >= 0; }
bool iso_has_root(const iso_system *iso) { return iso && iso->ns_fds[ISO_MOUNT] >= 0; }

bool iso_owns(const iso_system *iso, int pid) {
    if (!iso_has_pid_namespace(iso) || pid == iso->init) return false;
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/ns/pid", pid);
    struct stat st;
    return stat(p, &st) == 0 && (unsigned long)st.st_ino == iso->pidns_ino;
}

size_t iso_list(const iso_system *iso, proc_stat *out, size_t cap) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || !iso_owns(iso, (int)pid)) continue;
        if (proc_read((int)pid, &out[n])) n++;
    }
    closedir(d);
    return n;
}

/* The pid of host pid `pid` in the system's PID namespace (its last NSpid), or -1. */
static int ns_pid_of(int pid) {
    char p[64], line[256];
    snprintf(p, sizeof p, "/proc/%d/status", pid);
    FILE *f = fopen(p, "re");
    int out = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "NSpid:", 6) != 0) continue;
        char *s = line + 6, *end;
        for (;;) {
            long v = strtol(s, &end, 10);
            if (end == s) break;
            out = (int)v;
            s = end;
        }
    }
    if (f) fclose(f);
    return out;
}

int iso_spawn(iso_system *iso, const iso_spawn_req *req, pid_t *pid, const char **stage) {
    pthread_once(&self_once, open_self_pidns);
    child_job j = {.argv = req->argv, .envp = req->envp, .cwd = req->cwd, .exec_fd = -1, .lifeline = -1,
                   .user_fd = iso->user_fd};
    for (int k = 0; k < 3; k++) j.fd[k] = req->fd[k];
    for (int f = 0; f < ISO__COUNT; f++) j.ns_fds[f] = iso->ns_fds[f];
    j.pgid = 0;
    if (req->console) {
        j.pgid = -1; /* a session leader leads its group already */
        j.new_session = j.ctty = true;
    } else if (req->pgid > 0) {
        j.pgid = iso_has_pid_namespace(iso) ? ns_pid_of(req->pgid) : req->pgid;
        if (j.pgid <= 0) {
            *stage = "setpgid";
            return ESRCH;
        }
    }
    /* (in a user namespace the child enters the PID namespace itself: the service has not the
     * right to, see child_main) */
    bool pidns = iso->ns_fds[ISO_PID] >= 0 && iso->user_fd < 0;
    if (pidns && (self_pidns < 0 || setns(iso->ns_fds[ISO_PID], CLONE_NEWPID) < 0)) {
        *stage = "setns";
        return self_pidns < 0 ? EBADF : errno;
    }
    pid_t p = run_child(&j, 0);
    /* Back to the service's own namespace for this thread's later children. */
    if (pidns && setns(self_pidns, CLONE_NEWPID) < 0) emu_log("isolation: cannot leave a PID namespace: %s", strerror(errno));
    if (p < 0) {
        *stage = j.stage ? j.stage : "clone";
        return j.err ? j.err : EINVAL;
    }
    *pid = p;
    return 0;
}

int iso_map(iso_system *iso, const iso_mapping *m, bool add, char **err) {
    *err = NULL;
    if (!iso_has_root(iso)) {
        *err = emu_printf("the system has no mount namespace: '%s' cannot be %s", m->container, add ? "mounted" : "unmounted");
        return ENOTSUP;
    }
    oplist ops = {0};
    if (add) {
        struct stat st;
        if (stat(m->host, &st) != 0) {
            *err = emu_printf("the mapped directory '%s' does not exist", m->host);
            return ENOENT;
        }
        op_add(&ops, OP_OPEN_TREE, m->host, NULL);
        plan_mount_point(&ops, "/", m->container, !S_ISDIR(st.st_mode));
        iso_op *o = op_add(&ops, OP_MOVE_TREE, NULL, m->container);
        if (o) o->ref = 0;
        /* a clone of a shared host mount joins its peer group: made private, or mounts would
         * propagate between the host and the system (a root's binds are made after the
         * namespace was made private, so they are private already) */
        mount_op(&ops, NULL, m->container, NULL, MS_REC | MS_PRIVATE, NULL);
        if (m->read_only && (o = op_add(&ops, OP_REMOUNT_RO, NULL, m->container))) o->flags = MS_NOSUID;
    } else {
        op_add(&ops, OP_UMOUNT, NULL, m->container);
    }
    child_job j = {.ops = &ops, .exec_fd = -1, .lifeline = -1, .pgid = -1, .exit_after_ops = true,
                   .user_fd = iso->user_fd};
    for (int f = 0; f < ISO__COUNT; f++) j.ns_fds[f] = f == ISO_MOUNT ? iso->ns_fds[f] : -1;
    for (int k = 0; k < 3; k++) j.fd[k] = -1;
    proc_known_lock();
    pid_t pid = run_child(&j, 0);
    if (pid > 0) proc_known_add_locked(pid);
    proc_known_unlock();
    int rc = 0;
    if (pid < 0) {
        const char *what = j.failed_op >= 0 && j.failed_op < (int)ops.n ? ops.v[j.failed_op].b : NULL;
        if (!what && j.failed_op >= 0 && j.failed_op < (int)ops.n) what = ops.v[j.failed_op].a;
        *err = emu_printf("%s of '%s' failed at %s%s: %s", add ? "mounting" : "unmounting", m->container,
                          j.stage ? j.stage : "clone", what ? what : "", strerror(j.err));
        rc = j.err ? j.err : EINVAL;
    } else {
        proc_reap(pid);
        if (iso->view)
            for (size_t i = 0; i < ops.n; i++)
                if (ops.v[i].created && ops.v[i].b) {
                    char *host = emu_printf("%s%s", iso->root, ops.v[i].b);
                    if (host) add_created(iso, host);
                    free(host);
                }
    }
    ops_free(&ops);
    return rc;
}

/* ------------------------------------------------------------------ reports */

json *iso_properties(const iso_system *iso, const json *report) {
    json *o = report ? json_clone(report) : json_new_object();
    json_set(o, "Enabled", json_new_bool(report != NULL));
    json_set(o, "Running", json_new_bool(iso != NULL));
    if (!report) {
        json_set(o, "Namespaces", json_new_array());
        json_set(o, "Root", json_new_string("Host"));
        json_set(o, "HostName", json_new_string("Host"));
        json *fb = json_new_object();
        json_set(o, "Fallbacks", fb);
    }
    return o;
}

json *iso_host_report(void) {
    json *o = json_new_object();
    json_set(o, "Isolation", json_new_string(g_settings.isolation == ISOLATION_AUTO ? "Auto" : "Off"));
    bool via_user = false;
    char *blocker = host_blocker(&via_user);
    json_set(o, "UserNamespace", json_new_bool(!blocker && via_user));
    json *avail = json_new_array();
    json *fb = json_new_object();
    for (int f = 0; f < ISO__COUNT; f++) {
        if (blocker) json_set(fb, iso_feature_names[f], json_new_string(blocker));
        else if (g_settings.isolation_without & (1u << f))
            json_set(fb, iso_feature_names[f], json_new_string("turned off by the IsolationWithout switch"));
        else json_append(avail, json_new_string(iso_feature_names[f]));
    }
    free(blocker);
    json_set(o, "Available", avail);
    json_set(o, "Fallbacks", fb);
    return o;
}

/* ------------------------------------------------------------------ from a document */

/* The body of a Container or HostedSystem document (HostedSystem.Container), a VM's, or NULL. */
static const json *container_body(const json *cfg) {
    const json *c = json_get(cfg, "Container");
    if (!c) c = json_get(json_get(cfg, "HostedSystem"), "Container");
    return c;
}

iso_system *iso_start_config(const json *cfg, const char *id, const char *root, const char *marker, json **report,
                             char **err) {
    *report = NULL;
    *err = NULL;
    const json *c = container_body(cfg);
    const json *vm = json_get(cfg, "VirtualMachine");
    bool container = !vm;
    iso_request req = {.container = container, .id = id, .root = container ? root : NULL, .marker = marker,
                       .without = g_settings.isolation_without};
    req.hostname = json_str(json_get(json_get(c, "GuestOs"), "HostName"));
    if (!req.hostname) req.hostname = json_str(json_get(cfg, "HostName"));
    if (!req.hostname && vm) req.hostname = json_str(json_get(json_get(vm, "GuestOs"), "HostName"));
    const json *net = container ? json_get(c, "Networking") : json_get(json_get(vm, "Devices"), "NetworkAdapters");
    req.networking = json_len(net) > 0;
    iso_mapping *maps = NULL;
    long n = container ? iso_parse_mappings(json_get(c, "MappedDirectories"), &maps, err) : 0;
    if (n < 0) return NULL;
    req.maps = maps;
    req.n_maps = (size_t)n;
    iso_system *iso = iso_start(&req, report, err);
    iso_free_mappings(maps, (size_t)n);
    return iso;
}

int iso_modify_config(iso_system *iso, const char *path, const char *rtype, const json *settings, char **err) {
    *err = NULL;
    if (!path || (strcmp(path, "Container/MappedDirectories") != 0 &&
                  strcmp(path, "HostedSystem/Container/MappedDirectories") != 0))
        return 0;
    if (!iso_has_root(iso)) return 0; /* no root of its own: the configuration changes, nothing mounts */
    bool add = !rtype || strcmp(rtype, "Remove") != 0;
    if (json_typeof(settings) != JSON_OBJECT) {
        *err = emu_printf("%s: a %s needs a MappedDirectory object as Settings", path, add ? "Add" : "Remove");
        return EINVAL;
    }
    iso_mapping m = {0};
    if (!parse_mapping(settings, &m, 0, err)) return EINVAL;
    int rc = iso_map(iso, &m, add, err);
    free(m.host);
    free(m.container);
    return rc;
}

int iso_open_console(const iso_system *iso) {
    if (!iso_has_root(iso) || iso->init <= 0) return -1;
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/root/dev/pts/ptmx", (int)iso->init);
    int fd = open(p, O_RDWR | O_NOCTTY | O_CLOEXEC);
    int unlock = 0;
    if (fd >= 0 && ioctl(fd, TIOCSPTLCK, &unlock) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

int iso_spawn_stdio(iso_system *iso, char *const *argv, char *const *envp, const char *cwd, int console_master,
                    int in, int out, int err, int pgid, pid_t *pid, const char **stage) {
    iso_spawn_req req = {.argv = argv, .envp = envp, .cwd = cwd, .pgid = pgid};
    int opened = -1;
    if (console_master >= 0) {
        /* the terminal through its master, not by name: the name is the system's devpts' */
        opened = ioctl(console_master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (opened < 0) {
            *stage = "open the console";
            return errno;
        }
        req.fd[0] = req.fd[1] = req.fd[2] = opened;
        req.console = true;
    } else {
        int null_in = in < 0 || out < 0 || err < 0 ? open("/dev/null", O_RDWR | O_CLOEXEC) : -1;
        opened = null_in;
        req.fd[0] = in >= 0 ? in : null_in;
        req.fd[1] = out >= 0 ? out : null_in;
        req.fd[2] = err >= 0 ? err : null_in;
    }
    int rc = iso_spawn(iso, &req, pid, stage);
    if (opened >= 0) close(opened);
    return rc;
}
