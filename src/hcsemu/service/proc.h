/* Processes (proc.c): real children, reaped through pidfds. */
#ifndef HCSEMU_PROC_H
#define HCSEMU_PROC_H

#include "emu.h"

typedef struct proc_stat proc_stat;
/* last: the process's final /proc reading (taken while it was a zombie), or NULL. */
typedef void (*proc_exit_fn)(void *ctx, int pid, int wait_status, const proc_stat *last);
/* Start watching pid; fn runs on the reaper thread once it has exited. It has been reaped then,
 * unless keep_zombie: a group leader stays a zombie (pinning its process group id) until the
 * owner calls proc_reap. */
bool proc_watch(int pid, bool keep_zombie, proc_exit_fn fn, void *ctx);
void proc_reap(int pid);
/* The service process is a child subreaper: descendants whose parent exited become its
 * children. Spawns happen under proc_known_lock and add their pid, so proc_reap_orphans (run on
 * SIGCHLD) reaps only the zombies nobody watches. */
void proc_known_lock(void);
void proc_known_unlock(void);
void proc_known_add_locked(int pid);
void proc_reap_orphans(void);
/* Reaps pid if it is an exited child nobody watches (an orphan); cheap, for one SIGCHLD. */
void proc_reap_if_orphan(int pid);
/* Signals every process whose environment holds the entry `marker` (or, with prefix, an entry
 * starting with it); through pidfds, so a recycled pid is never hit. Only pids >= min_pid are
 * looked at, unless pids wrapped. Returns how many. */
size_t proc_kill_marked(const char *marker, bool prefix, int sig, int min_pid);
/* Process statistics from /proc. */
struct proc_stat {
    int pid, pgrp;
    char state; /* R, S, T, Z ... as in /proc/<pid>/stat */
    char name[64];
    uint64_t utime_100ns, stime_100ns, start_ms_epoch;
    uint64_t rss_bytes, vsize_bytes, shared_bytes;
    uint64_t read_bytes, write_bytes, read_ops, write_ops;
};
/* Every process in group pgrp (the group leader included); returns count (<= cap). */
size_t proc_list_group(int pgrp, proc_stat *out, size_t cap);
bool proc_read(int pid, proc_stat *out);
bool proc_group_empty(int pgrp);
/* Waits (up to timeout_ms) until every process of the group is stopped (SIGSTOP delivered). */
bool proc_group_wait_stopped(int pgrp, uint32_t timeout_ms);
/* Waits until every process of the group is stopped (true) or running again (false). */
bool proc_group_wait_state(int pgrp, bool stopped, uint32_t timeout_ms);

#endif /* HCSEMU_PROC_H */
