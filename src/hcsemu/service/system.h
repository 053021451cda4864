/*
 * The service's records of compute systems and their processes, shared by systems.c (systems,
 * their states, properties, modifications) and processes.c (processes). Internal to the
 * service half.
 */
#ifndef HCSEMU_SYSTEM_H
#define HCSEMU_SYSTEM_H

#include <stdarg.h>
#include <time.h>

#include "cgroup.h"
#include "control.h"
#include "proc.h"
#include "svc.h"

enum { ST_CREATED, ST_RUNNING, ST_PAUSED, ST_STOPPED, ST_SAVED_AS_TEMPLATE };
enum { T_CONTAINER, T_VM, T_HOSTED };

typedef struct sproc {
    uint32_t pid;
    int in_w, out_r, err_r; /* the service's pipe ends: stdin's (or the console), outputs only while withheld */
    bool console;
    bool exited, exit_delivered;
    int exit_code;
    int handles;
    uint64_t created_ms_epoch;
    char *image;
    uint16_t rows, cols;
    struct sproc *next;
} sproc;

struct svc_system {
    atomic_int refs; /* atomic: taken and dropped on every call, without svc_mu */
    char *id, *owner;
    int type;
    json *config;
    char runtime_id[37];
    int state;
    bool registered, stopping, force_stop, terminate_on_close;
    int handles;
    int pgid; /* the process group (= its leader's pid), 0 until the first process */
    /* Console processes (EmulateConsole) lead sessions of their own, with the console as their
     * controlling terminal (so a Ctrl-C typed there is their SIGINT): one more process group
     * each, pinned like pgid (the leader's zombie is kept until the system stops). */
    int *console_groups;
    size_t n_console_groups, cap_console_groups;
    uint64_t start_ms_epoch, start_mono_ms;
    uint64_t exited_user_100ns, exited_kernel_100ns, exited_read, exited_write, exited_rops, exited_wops;
    uint64_t peak_commit_bytes; /* the highest commit a GuestMemory query has seen */
    char *exit_doc;
    bool exit_delivered; /* its SystemExited event has been delivered: waits report the exit */
    sproc *procs;
    char *workdir; /* default working directory: the container's merged layer view */
    uint64_t serial;
    char marker[96]; /* HCSEMU_SYSTEM=<service pid>:<runtime id>, in every process's environment */
    struct iso_system *iso; /* its namespaces and init while running isolated (isolate.h), else NULL */
    json *iso_report;       /* what isolation is in effect (EmulatorIsolation); NULL if never isolated */
    cg_sys *cg;       /* the system's cgroup while it runs (cgroup.h) */
    json *cg_report;  /* after it stopped: what was in effect */
    cg_stat cg_final; /* after it stopped: its last figures */
    struct svc_system *next;
    struct svc_system *prev;    /* the registered list is doubly linked: an unregister is O(1) */
    struct svc_system *id_next; /* the chain of its bucket in the index by id (systems.c) */
};

/* One lock guards every system and process record; one condition variable announces every
 * state change (see systems.c). */
extern pthread_mutex_t svc_mu;
extern pthread_cond_t svc_cv;
extern pthread_once_t svc_once;
void svc_init(void); /* pthread_once(&svc_once, svc_init) before svc_cv is used */
extern svc_system *systems; /* the registered systems */
extern size_t n_systems, n_procs;


/* A member of the wanted type, or return HCS_E_INVALID_JSON naming it (with *doc set). */
#define WANT(kind, obj, ctx, path, out)                                                            \
    do {                                                                                           \
        char je_[320];                                                                             \
        if (!json_want_##kind((obj), (ctx), (path), (out), je_, sizeof je_))                       \
            return svc_fail(doc, HCS_E_INVALID_JSON, "%s", je_);                                   \
    } while (0)

/* Every process group of a system: the main one (pgid) and one per console process. */
typedef struct group_set {
    int *id;
    size_t n;
} group_set;
/* A copy of s's groups (svc_mu held); free with group_set_free. */
group_set groups_of_locked(const svc_system *s);
void group_set_free(group_set *g);
void groups_signal(const group_set *g, int sig);
bool groups_empty(const group_set *g);
/* Adds a console process's group to s (svc_mu held); false when out of memory. */
bool add_console_group_locked(svc_system *s, int pgid);
/* The processes of every group of s (svc_mu held), at most cap. */
size_t list_system_procs_locked(const svc_system *s, proc_stat *out, size_t cap);

/* Sets *doc to an error document for hr (message by fmt) and returns hr. */
HRESULT svc_fail(char **doc, HRESULT hr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* HCS_E_INVALID_STATE (or the state's own error) naming what cannot be done in s's state st. */
HRESULT wrong_state(char **doc, svc_system *s, int st, const char *what);
/* HCS_E_INVALID_JSON when a string in v holds U+0000 (what names the document). */
HRESULT refuse_nul(const json *v, const char *what, char **doc);
uint64_t now_ms_epoch(void);
svc_system *find_locked(const char *id); /* with svc_mu held */
void free_proc(sproc *p);
/* Waits on svc_cv (svc_mu held) until the deadline; false once it passed. */
bool timed_wait_locked(struct timespec *deadline, uint32_t timeout_ms);
bool abandoned_now(const atomic_bool *a);

#endif /* HCSEMU_SYSTEM_H */
