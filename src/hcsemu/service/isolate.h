/*
 * Isolation of a compute system (isolate.c): Linux namespaces, the system's own root, its
 * mapped directories, its host name and a small init (init.c) as PID 1.
 *
 * A system started while the Isolation switch is "Auto" gets, as far as the service's
 * privileges allow, new mount, UTS, IPC, PID and network namespaces, created by cloning the
 * init with them. Every later process of the system is created by iso_spawn: the calling
 * thread enters the PID namespace (for its children only), clones a child that enters the
 * other namespaces and execs, and leaves the PID namespace again, so the system's processes
 * stay children of the service (its reaper, exit codes and group logic are unchanged) and
 * their pids, as the service sees them, are host pids. Orphans inside the system are
 * reparented to the init, which reaps them. Killing the init ends every process of the PID
 * namespace, and with the last process the namespaces and every mount in them go away.
 *
 * Each missing feature falls back on its own (no namespace: the host's; no mount namespace:
 * the host's root and no mapped directory mounts) and is named in the report with its reason.
 */
#ifndef HCSEMU_ISOLATE_H
#define HCSEMU_ISOLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "json.h"

/* The features, as named in IsolationWithout and in the report (bit i = iso_feature_names[i]). */
enum { ISO_MOUNT, ISO_UTS, ISO_IPC, ISO_PID, ISO_NETWORK, ISO__COUNT };
extern const char *const iso_feature_names[ISO__COUNT + 1]; /* NULL-terminated */

/* The settings (emu_settings.isolation): off, or as much as the privileges allow. */
enum { ISOLATION_OFF = 0, ISOLATION_AUTO = 1 };

typedef struct iso_mapping {
    char *host;      /* absolute host path */
    char *container; /* absolute path inside the system's root (iso_container_path) */
    bool read_only;
} iso_mapping;

/* What a system asks for, from its document (the caller owns the strings). */
typedef struct iso_request {
    bool container;            /* Container/HostedSystem: own root; false: a VM (host's files) */
    const char *id;            /* the system id: the host name when hostname is NULL */
    const char *hostname;      /* the document's HostName, or NULL */
    const char *root;          /* the merged view of its writable layer, or NULL (scratch root) */
    const iso_mapping *maps;   /* MappedDirectories */
    size_t n_maps;
    bool networking;           /* the document attaches networking: keep the host's network */
    unsigned without;          /* features the IsolationWithout switch turns off (bits) */
    const char *marker;        /* the HCSEMU_SYSTEM=... entry, given to the init's environment */
} iso_request;

typedef struct iso_system iso_system;

/* Creates the system's namespaces and init. Returns NULL when no feature could be had (the
 * system then runs as a plain process group); *report (always set, caller frees) says what is
 * in effect and why each missing feature is missing. A failure of a feature that the
 * privileges allow (a mapped directory that cannot be mounted, ...) is an error: NULL, *err
 * (malloc'd) set, *report NULL. */
iso_system *iso_start(const iso_request *req, json **report, char **err);

/* Ends every process of the system (SIGKILL to the init), reaps the init, and removes the
 * mount points the emulator created in a writable layer. Frees iso. NULL is a no-op. The
 * init's exit waits until every process of its namespace is reaped: the caller reaps its own
 * children there first (iso_kill, then their waits), or the init is reaped later, by a thread. */
void iso_stop(iso_system *iso);

/* The standard streams of a new process: descriptors (never closed by iso_spawn). */
typedef struct iso_spawn_req {
    char *const *argv;
    char *const *envp;
    const char *cwd;    /* inside the system (NULL: its root, or the host cwd without a mount namespace) */
    int fd[3];          /* become 0, 1, 2 */
    int pgid;           /* 0: lead a new process group; else the group's leader (a host pid);
                         * -1 with console: lead a new session */
    bool console;       /* fd[0] is a terminal: it becomes the new session's controlling one */
} iso_spawn_req;

/* Starts a process inside the system. Returns 0 with *pid (a host pid, a child of the
 * caller), or an errno; *stage says what failed: "chdir", "exec", "setns", "clone". */
int iso_spawn(iso_system *iso, const iso_spawn_req *req, pid_t *pid, const char **stage);

/* Sends SIGKILL to the init (ending the PID namespace's processes) without waiting. */
void iso_kill(iso_system *iso);
/* iso_spawn with the standard streams svc_create_process has: a console (the master of its
 * pseudo-terminal, >= 0: the process leads a session whose controlling terminal it is), or
 * pipe ends (-1: /dev/null). */
int iso_spawn_stdio(iso_system *iso, char *const *argv, char *const *envp, const char *cwd, int console_master,
                    int in, int out, int err, int pgid, pid_t *pid, const char **stage);
/* The master of a new, unlocked pseudo-terminal of the system's own devpts (close-on-exec), or
 * -1 when the system has no root of its own (or no devpts): the caller then takes the host's. */
int iso_open_console(const iso_system *iso);
/* Whether the system has its own root (mount namespace). */
bool iso_has_root(const iso_system *iso);
/* Every process of the system's PID namespace but the init, read from /proc (<= cap). */
struct proc_stat;
size_t iso_list(const iso_system *iso, struct proc_stat *out, size_t cap);

/* Whether host pid `pid` runs in the system's PID namespace and is not its init. False for
 * every pid when the system has no PID namespace. */
bool iso_has_pid_namespace(const iso_system *iso);
bool iso_owns(const iso_system *iso, int pid);

/* Mounts (add) or unmounts a mapped directory in the running system. Returns 0 or an errno
 * with *err (malloc'd) saying what failed; ENOTSUP when the system has no mount namespace. */
int iso_map(iso_system *iso, const iso_mapping *m, bool add, char **err);

/* Isolation's part of the emulator-only "Isolation" member of a system's properties (a new
 * object). iso may be NULL (the system runs without isolation); report is what iso_start
 * said. The member is built in one place, isolation_locked in systems.c, which adds the
 * cgroup's part ("Cgroup", cgroup.h) to this. */
json *iso_properties(const iso_system *iso, const json *report);

/* What this host allows (service property EmulatorIsolation): the setting, the features
 * available and why the others are not. */
json *iso_host_report(void);

/* iso_start for a compute system document (Container, HostedSystem or VirtualMachine): the
 * host name from Container.GuestOs.HostName (or HostName), MappedDirectories, networking from
 * Container.Networking / VirtualMachine.Devices.NetworkAdapters, the switches' features. */
iso_system *iso_start_config(const json *cfg, const char *id, const char *root, const char *marker, json **report,
                             char **err);
/* A modify of MappedDirectories on a running system, applied live (0), or an errno with *err.
 * Other resource paths are not isolation's: 0. */
int iso_modify_config(iso_system *iso, const char *path, const char *rtype, const json *settings, char **err);

/* ---- pure helpers (unit tested in tests/test_isolate.c) ---- */

/* A MappedDirectory's ContainerPath as a path in the system's root: backslashes become '/',
 * a drive ("C:") is dropped, "." and empty components go; ".." is refused. NULL if invalid. */
char *iso_container_path(const char *container_path);
/* Parses MappedDirectories (an array of {HostPath, ContainerPath, ReadOnly}); returns the
 * count, or -1 with *err (malloc'd) for an entry without a usable path. */
long iso_parse_mappings(const json *dirs, iso_mapping **out, char **err);
void iso_free_mappings(iso_mapping *m, size_t n);

/* The init program (init.c), run as `hcsemud --init` with its lifeline on fd 3. */
int iso_init_main(void);

#endif /* HCSEMU_ISOLATE_H */
