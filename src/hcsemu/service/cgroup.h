/*
 * A control group per compute system: limits, accounting, freeze and kill (cgroup.c).
 *
 * The service places every process of a system in the system's cgroup (v2 where a cgroup2
 * hierarchy is usable, else the v1 controllers), below a parent of its own
 * (<service's cgroup>/hcsemu-<service pid>), and removes both when done. Each feature that is
 * not available (not root and no delegation, a controller not mounted, the `Cgroups` switch
 * "Off") falls back to the process-group behaviour of service.c: cg_* then return false and
 * the caller does what it did before. What is in effect is reported by cg_isolation_json.
 */
#ifndef HCSEMU_CGROUP_H
#define HCSEMU_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* The features a cgroup gives a system, each with its own fallback. */
enum {
    CGF_MEMORY,  /* memory limit, usage, peak and OOM-kill accounting */
    CGF_CPU,     /* processor limits (cpu.max / cfs quota, cpu.weight / shares) */
    CGF_CPUACCT, /* CPU time of every process that ran in the system */
    CGF_PIDS,    /* a limit on the number of tasks */
    CGF_FREEZER, /* pause / resume without signals */
    CGF_IO,      /* block I/O accounting (reported in Isolation; Statistics.Storage counts every read/write) */
    CGF__N
};

/* The `Cgroups` switch: Auto (v2 when /sys/fs/cgroup is a cgroup2 mount, else v1), Off, V1
 * (the v1 controllers), V2 (the cgroup2 mount, a hybrid's /sys/fs/cgroup/unified included). */
enum { CGM_AUTO = 0, CGM_OFF = 1, CGM_V1 = 2, CGM_V2 = 3 };

/* The processor and memory limits of a configuration (0: none). */
typedef struct cg_limits {
    uint64_t memory_bytes;
    uint64_t cpu_quota_us, cpu_period_us; /* quota 0: unlimited */
    uint32_t cpu_weight;                  /* 1..10000 as cgroup v2's cpu.weight; 0: the default */
    uint32_t pids_max;                    /* 0: unlimited */
} cg_limits;

/* Reads the limits of a ComputeSystem document (Container.Memory/Processor or
 * VirtualMachine.ComputeTopology.Memory/Processor[/Limits]); host_cpus is the host's number of
 * processors (Container Processor.Maximum is a share of all of them). */
void cg_limits_from_config(const json *config, unsigned host_cpus, uint32_t pids_max, cg_limits *out);

typedef struct cg_sys cg_sys;

/* Creates the cgroup of a system (name: its runtime id) under the service's parent, with the
 * given limits. mode: the Cgroups switch. Never NULL unless out of memory: a system whose
 * cgroup could not be made gets one with no feature (everything falls back). */
cg_sys *cg_create(const char *name, int mode, const cg_limits *lim);
/* Removes the cgroup (it must be empty: call cg_kill first). Frees cg. NULL is fine. */
void cg_destroy(cg_sys *cg);
bool cg_has(const cg_sys *cg, int feature);
/* Whether any process placement is possible (the system has a cgroup at all). */
bool cg_active(const cg_sys *cg);

/* Spawning: cg_spawn_enter moves the calling thread (v1) or this whole process (v2, where a
 * thread cannot leave its process's cgroup) into the system's cgroups, so that the child of a
 * posix_spawn made before cg_spawn_leave is born there (nothing runs outside, not even for a
 * moment); cg_spawn_leave moves it back. The caller must keep the system's freeze and kill
 * away in between. cg_adopt(pid) after the spawn moves the child where the move failed, and is
 * a no-op where the child was born inside. */
void cg_spawn_enter(cg_sys *cg);
void cg_spawn_leave(cg_sys *cg);
void cg_adopt(cg_sys *cg, int pid);

/* Applies new limits (Modify). Returns false with a message in err when the kernel refused
 * (e.g. memory in use above a lower limit that cannot be reclaimed on v1). */
bool cg_set_limits(cg_sys *cg, const cg_limits *lim, char *err, size_t errlen);

/* Freezes (true) or thaws (false) the whole cgroup and waits up to timeout_ms until it is.
 * false: no freezer (the caller falls back to SIGSTOP/SIGCONT). */
bool cg_freeze(cg_sys *cg, bool frozen, uint32_t timeout_ms);
/* Lets a killed process of a frozen (paused) system die: a v1-frozen task acts on SIGKILL only
 * once thawed, so it leaves for the (never frozen) parent; v2 delivers SIGKILL to frozen tasks. */
void cg_release(cg_sys *cg, int pid);
/* Kills every process in the cgroup (cgroup.kill, or freeze + SIGKILL each + thaw until
 * empty) and waits up to timeout_ms until none is left. false: no cgroup, or not empty. */
bool cg_kill(cg_sys *cg, uint32_t timeout_ms);
/* Whether no live process is left in the cgroup (true without a cgroup). */
bool cg_empty(cg_sys *cg);
/* The pids in the cgroup (up to cap); 0 without a cgroup. */
size_t cg_pids(cg_sys *cg, int *out, size_t cap);

typedef struct cg_stat {
    bool have_cpu, have_memory, have_io;
    uint64_t user_100ns, kernel_100ns;            /* CGF_CPUACCT */
    uint64_t mem_usage, mem_peak, mem_anon;       /* CGF_MEMORY, bytes */
    uint64_t io_read_bytes, io_write_bytes, io_read_ops, io_write_ops; /* CGF_IO, block I/O */
} cg_stat;
void cg_read_stats(cg_sys *cg, cg_stat *out);

/* Whether the memory controller has OOM-killed a process of the system since the last call
 * that returned true (each kill is reported once). */
bool cg_take_oom_kill(cg_sys *cg);

/* The "Cgroup" part of the emulator-only Isolation property: {"Version", "Path",
 * "Controllers": [...in effect], "Limits": {...}, "Fallbacks": {feature: what is done instead}}. */
json *cg_isolation_json(const cg_sys *cg);
/* The same for the host as a new system would get it (service properties, `pyhcs info`). */
json *cg_host_json(int mode);

/* Kills every process left in the cgroups of the service with that pid and removes them and
 * its parents (the service's exit, and the guardian after the service died). */
void cg_cleanup_service(int pid);

/* The warning, once per process, when a feature falls back (stderr). */
void cg_warn_once(const cg_sys *cg);

#endif /* HCSEMU_CGROUP_H */
