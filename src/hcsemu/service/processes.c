/*
 * Processes of a compute system: real children of the service, created by
 * svc_create_process in named steps (parse, command line, working directory, stdio, spawn,
 * record, watch), reaped through pidfds (proc.c).
 *
 * A running system's processes share one process group, led by the first process created in
 * it; the leader's zombie is kept until the system stops (systems.c), so the group id is
 * never recycled under a killpg.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <stdatomic.h>
#include <unistd.h>

#include "control.h"
#include "isolate.h"
#include "proc.h"
#include "storage.h"
#include "svc.h"
#include "system.h"

extern char **environ;

__thread char *const *svc_caller_environ;
__thread const char *svc_caller_cwd;

/* ------------------------------------------------------------------ processes */

static sproc *find_proc_locked(svc_system *s, uint32_t pid) {
    for (sproc *p = s->procs; p; p = p->next)
        if (p->pid == pid) return p;
    return NULL;
}

static void remove_proc_locked(svc_system *s, sproc *p) {
    for (sproc **pp = &s->procs; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    free_proc(p);
}

static char *process_status_doc(const sproc *p) {
    json *d = json_new_object();
    json_set(d, "ProcessId", json_new_uint(p->pid));
    json_set(d, "Exited", json_new_bool(p->exited));
    json_set(d, "ExitCode", json_new_uint(p->exited ? (uint32_t)p->exit_code : 0));
    json_set(d, "LastWaitResult", json_new_int(0));
    char *out = json_dump(d);
    json_free(d);
    return out;
}

typedef struct exit_ctx {
    svc_system *s;
    uint32_t pid;
} exit_ctx;

static bool guest_is_windows(svc_system *s);

/* The exit this thread is delivering now (on_process_exit): a wait made from inside that
 * ProcessExited callback sees the exit, as its event has reached it. */
static __thread const svc_system *tls_exit_sys;
static __thread uint32_t tls_exit_pid;

static void on_process_exit(void *ctx, int pid, int status, const proc_stat *last) {
    exit_ctx *x = ctx;
    svc_system *s = x->s;
    free(x);
    bool windows = guest_is_windows(s);
    pthread_mutex_lock(&svc_mu);
    sproc *p = find_proc_locked(s, (uint32_t)pid);
    char *doc = NULL;
    if (p) {
        p->exited = true;
        /* Windows has no signals; a signalled Linux child reports 128+signal, as shells do. */
        p->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
        /* Killed by the memory limit: a Windows guest reports OutOfMemoryExitCode (a Linux
         * guest's 128+SIGKILL is what its own OOM kill gives). */
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && !s->stopping && cg_take_oom_kill(s->cg) && windows)
            p->exit_code = (int)g_settings.oom_exit_code;
        if (p->in_w >= 0) {
            close(p->in_w);
            p->in_w = -1;
        }
        doc = process_status_doc(p);
    }
    if (last) {
        s->exited_user_100ns += last->utime_100ns;
        s->exited_kernel_100ns += last->stime_100ns;
        s->exited_read += last->read_bytes;
        s->exited_write += last->write_bytes;
        s->exited_rops += last->read_ops;
        s->exited_wops += last->write_ops;
    }
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
    tls_exit_sys = s;
    tls_exit_pid = (uint32_t)pid;
    if (doc) svc_emit_process_event(s, (uint32_t)pid, HcsEventProcessExited, doc);
    tls_exit_sys = NULL;
    free(doc);
    pthread_mutex_lock(&svc_mu);
    p = find_proc_locked(s, (uint32_t)pid);
    if (p) {
        p->exit_delivered = true;
        if (p->handles <= 0) remove_proc_locked(s, p);
    }
    pthread_cond_broadcast(&svc_cv);
    pthread_mutex_unlock(&svc_mu);
    svc_unref(s);
}

static int dup_cloexec(int fd) { return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 3); }

/* A pipe whose ends are never 0..2, so no returned HANDLE is NULL-looking or a std stream. */
static bool make_pipe(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) < 0) return false;
    for (int i = 0; i < 2; i++) {
        if (fds[i] < 3) {
            int n = dup_cloexec(fds[i]);
            close(fds[i]);
            fds[i] = n;
        }
    }
    return fds[0] >= 0 && fds[1] >= 0;
}

/* marker: the system's HCSEMU_SYSTEM entry, which every descendant inherits (unless it clears
 * its environment), so terminate finds processes that left the group (setsid). */
static char **build_env(const json *envobj, const char *marker) {
    char *const *from = svc_caller_environ ? svc_caller_environ : environ;
    size_t base = 0;
    if (g_settings.inherit_environment)
        while (from[base]) base++;
    size_t extra = json_len(envobj);
    char **env = calloc(base + extra + 2, sizeof *env);
    if (!env) return NULL;
    size_t n = 0;
    env[n++] = strdup(marker);
    for (size_t i = 0; i < extra; i++) {
        const char *k = json_key_at(envobj, i), *v = json_str(json_at(envobj, i));
        if (!k || !v) continue;
        env[n++] = emu_printf("%s=%s", k, v);
    }
    for (size_t i = 0; i < base; i++) {
        const char *eq = strchr(from[i], '=');
        size_t kl = eq ? (size_t)(eq - from[i]) : strlen(from[i]);
        bool overridden = false;
        for (size_t j = 0; j < extra && !overridden; j++) {
            const char *k = json_key_at(envobj, j);
            overridden = k && strlen(k) == kl && strncmp(k, from[i], kl) == 0;
        }
        if (!overridden && strncmp(from[i], "HCSEMU_SYSTEM=", 14) != 0) env[n++] = strdup(from[i]);
    }
    return env;
}

static void free_strv(char **v) {
    if (!v) return;
    for (char **p = v; *p; p++) free(*p);
    free(v);
}

/* Whether processes of s run in a Windows guest, as HCS sees it: a Container is one (a
 * process-isolated Windows container, or a Hyper-V isolated one in a Windows utility VM);
 * a Container or HostedSystem hosted in a Linux utility VM (one booted with
 * LinuxKernelDirect) is a Linux guest, and so is any HostedSystem. Virtual machines keep
 * both forms (their guest is whatever the caller's tests make of it). */
static bool guest_is_windows(svc_system *s) {
    if (s->type != T_CONTAINER) return false;
    pthread_mutex_lock(&svc_mu);
    const char *hosting = json_str(json_get(s->config, "HostingSystemId"));
    bool windows = true;
    if (hosting) {
        svc_system *h = find_locked(hosting);
        const json *vm = h ? json_get(h->config, "VirtualMachine") : NULL;
        windows = !(vm && (json_get(json_get(vm, "Chipset"), "LinuxKernelDirect") || json_get(vm, "LinuxKernelDirect")));
    }
    pthread_mutex_unlock(&svc_mu);
    return windows;
}

/* ---- svc_create_process, step by step: each step takes the request, fills its part and
 * returns an HRESULT (with *doc set on failure); cp_free releases whatever was made. */

typedef struct cp_req {
    svc_system *s;
    json *pp; /* the parsed ProcessParameters; the members below point into it */
    const char *cmdline, *cwd;
    const json *cmdargs, *envobj, *size;
    bool want_in, want_out, want_err, console;
    char **argv, **env;
    char *workdir;          /* the system's default working directory (a copy) */
    int in[2], out[2], err[2], pty;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    bool fa_init, attr_init;
    pid_t pid;
    bool leader;            /* it leads a process group: the system's first, or a console process */
    char *in_root;          /* WorkingDirectory as a path in an isolated system's own root */
} cp_req;

/* 1. The ProcessParameters document: members of the right types, no NUL. */
static HRESULT cp_parse(cp_req *r, const char *params, char **doc) {
    char err[256], je[320];
    r->pp = json_parse(params, strlen(params), err, sizeof err);
    if (!r->pp) return svc_fail(doc, HCS_E_INVALID_JSON, "The process parameters are not valid JSON: %s", err);
    json *pp = r->pp;
    if (json_typeof(pp) != JSON_OBJECT)
        return svc_fail(doc, HCS_E_INVALID_JSON, "The process parameters must be a JSON object");
    if (!json_want_str(pp, "ProcessParameters", "CommandLine", &r->cmdline, je, sizeof je) ||
        !json_want_arr(pp, "ProcessParameters", "CommandArgs", &r->cmdargs, je, sizeof je) ||
        !json_want_str(pp, "ProcessParameters", "WorkingDirectory", &r->cwd, je, sizeof je) ||
        !json_want_obj(pp, "ProcessParameters", "Environment", &r->envobj, je, sizeof je) ||
        !json_want_bool(pp, "ProcessParameters", "CreateStdInPipe", &r->want_in, je, sizeof je) ||
        !json_want_bool(pp, "ProcessParameters", "CreateStdOutPipe", &r->want_out, je, sizeof je) ||
        !json_want_bool(pp, "ProcessParameters", "CreateStdErrPipe", &r->want_err, je, sizeof je) ||
        !json_want_bool(pp, "ProcessParameters", "EmulateConsole", &r->console, je, sizeof je) ||
        !json_want_arr(pp, "ProcessParameters", "ConsoleSize", &r->size, je, sizeof je))
        return svc_fail(doc, HCS_E_INVALID_JSON, "%s", je);
    HRESULT hr = refuse_nul(pp, "The process parameters", doc);
    if (FAILED(hr)) return hr;
    for (size_t i = 0; i < json_len(r->envobj); i++) {
        const char *v;
        if (!json_want_str(r->envobj, "ProcessParameters.Environment", json_key_at(r->envobj, i), &v, je, sizeof je) ||
            !json_str(json_at(r->envobj, i)))
            return svc_fail(doc, HCS_E_INVALID_JSON, "ProcessParameters.Environment.%s must be a string",
                            json_key_at(r->envobj, i));
    }
    for (size_t i = 0; i < json_len(r->cmdargs); i++) {
        const char *a;
        if (!json_want_elem_str(r->cmdargs, "ProcessParameters.CommandArgs", i, &a, je, sizeof je))
            return svc_fail(doc, HCS_E_INVALID_JSON, "%s", je);
    }
    return S_OK;
}

/* 2. The argument vector: CommandArgs as given, a Windows guest's CommandLine split by the
 * Windows rules, anything else's CommandLine through /bin/sh -c. */
static HRESULT cp_argv(cp_req *r, char **doc) {
    bool windows = guest_is_windows(r->s);
    if (windows && r->cmdargs && g_settings.container_cmdargs == CMDARGS_REFUSE) {
        /* HCS documents CommandArgs for Linux guests only; a Windows guest takes CommandLine. */
        return svc_fail(doc, E_INVALIDARG, "ProcessParameters.CommandArgs is supported only by Linux guests; this "
                        "compute system is a Windows guest: give CommandLine (quoted by the Windows rules)");
    }
    const char *cmdline = r->cmdline;
    if (r->cmdargs && json_len(r->cmdargs) > 0) {
        r->argv = calloc(json_len(r->cmdargs) + 1, sizeof *r->argv);
        for (size_t i = 0; r->argv && i < json_len(r->cmdargs); i++)
            r->argv[i] = strdup(json_str(json_at(r->cmdargs, i)));
    } else if (cmdline && *cmdline && windows && g_settings.container_cmdline == CMDLINE_WINDOWS) {
        size_t argc = 0;
        r->argv = emu_split_windows_cmdline(cmdline, &argc);
        if (r->argv && argc == 0) return svc_fail(doc, E_INVALIDARG, "ProcessParameters.CommandLine names no program");
    } else if (cmdline && *cmdline) {
        r->argv = calloc(4, sizeof *r->argv);
        if (r->argv) {
            r->argv[0] = strdup("/bin/sh");
            r->argv[1] = strdup("-c");
            r->argv[2] = strdup(cmdline);
        }
    } else {
        return svc_fail(doc, E_INVALIDARG, "The process parameters name no CommandLine or CommandArgs");
    }
    if (!r->argv) return svc_fail(doc, E_OUTOFMEMORY, "Out of memory building the argument vector");
    return S_OK;
}

/* 3. The system must be running; the working directory (given, the system's, or the
 * caller's) must be a directory. Builds the environment. */
static HRESULT cp_workdir(cp_req *r, char **doc) {
    svc_system *s = r->s;
    pthread_mutex_lock(&svc_mu);
    int st = s->state;
    r->workdir = s->workdir ? strdup(s->workdir) : NULL;
    bool own_root = iso_has_root(s->iso); /* its paths are the system's, checked at the chdir */
    pthread_mutex_unlock(&svc_mu);
    if (st != ST_RUNNING) return wrong_state(doc, s, st, "create a process in");
    if (own_root) r->cwd = (r->in_root = r->cwd && *r->cwd ? iso_container_path(r->cwd) : NULL) ? r->in_root : "/";
    if (!r->cwd || !*r->cwd) r->cwd = r->workdir ? r->workdir : svc_caller_cwd;
    struct stat sb;
    if (r->cwd && !own_root && (stat(r->cwd, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        return svc_fail(doc, HRESULT_FROM_WIN32(267 /* ERROR_DIRECTORY */), "The working directory '%s' is not a directory",
                        r->cwd);
    r->env = build_env(r->envobj, s->marker);
    if (!r->env) return svc_fail(doc, E_OUTOFMEMORY, "Out of memory building the environment");
    return S_OK;
}

/* 4a. EmulateConsole: a pseudo-terminal of ConsoleSize on the child's stdin, stdout, stderr,
 * and its controlling terminal: the child leads a session of its own (cp_stdio), and the
 * terminal, opened there without O_NOCTTY, becomes that session's, with the child's group in
 * the foreground, so a Ctrl-C (0x03) written to the console is its SIGINT, as on a console. */
static HRESULT cp_console(cp_req *r, char **doc) {
    /* An isolated system's terminal comes from its own devpts, the only one its processes see
     * (so a tty name resolves inside it); else, or when it has none, the host's. */
    pthread_mutex_lock(&svc_mu);
    bool isolated = r->s->iso != NULL;
    r->pty = iso_open_console(r->s->iso);
    pthread_mutex_unlock(&svc_mu);
    char *name = r->pty >= 0 ? (char *)"" : NULL;
    if (r->pty < 0) {
        r->pty = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        name = r->pty >= 0 && grantpt(r->pty) == 0 && unlockpt(r->pty) == 0 ? ptsname(r->pty) : NULL;
    }
    if (!name)
        return svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "No pseudo-terminal for EmulateConsole: %s",
                        strerror(errno));
    if (r->pty < 3) {
        int n = dup_cloexec(r->pty);
        close(r->pty);
        r->pty = n;
    }
    int64_t h = 0, w = 0;
    if (json_len(r->size) == 2 && json_int64(json_at(r->size, 0), &h) && json_int64(json_at(r->size, 1), &w)) {
        struct winsize ws = {(unsigned short)h, (unsigned short)w, 0, 0};
        ioctl(r->pty, TIOCSWINSZ, &ws);
    }
    if (isolated) return S_OK; /* iso_spawn_stdio opens the terminal from the master */
    posix_spawn_file_actions_addopen(&r->fa, 0, name, O_RDWR, 0);
    posix_spawn_file_actions_adddup2(&r->fa, 0, 1);
    posix_spawn_file_actions_adddup2(&r->fa, 0, 2);
    return S_OK;
}

/* 4. The child's stdio (a console, or a pipe or /dev/null per stream), its working directory,
 * signal dispositions and process group. */
static HRESULT cp_stdio(cp_req *r, char **doc) {
    posix_spawn_file_actions_init(&r->fa);
    r->fa_init = true;
    posix_spawnattr_init(&r->attr);
    r->attr_init = true;
    if (r->console) {
        HRESULT hr = cp_console(r, doc);
        if (FAILED(hr)) return hr;
    } else {
        if ((r->want_in && !make_pipe(r->in)) || (r->want_out && !make_pipe(r->out)) ||
            (r->want_err && !make_pipe(r->err)))
            return svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED), "Cannot create pipes: %s", strerror(errno));
        posix_spawn_file_actions_t *fa = &r->fa;
        if (r->want_in) posix_spawn_file_actions_adddup2(fa, r->in[0], 0);
        else posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
        if (r->want_out) posix_spawn_file_actions_adddup2(fa, r->out[1], 1);
        else posix_spawn_file_actions_addopen(fa, 1, "/dev/null", O_WRONLY, 0);
        if (r->want_err) posix_spawn_file_actions_adddup2(fa, r->err[1], 2);
        else posix_spawn_file_actions_addopen(fa, 2, "/dev/null", O_WRONLY, 0);
    }
    posix_spawn_file_actions_addclosefrom_np(&r->fa, 3);
    if (r->cwd) posix_spawn_file_actions_addchdir_np(&r->fa, r->cwd);
    sigset_t none, def;
    sigemptyset(&none);
    sigfillset(&def);
    sigdelset(&def, SIGKILL);
    sigdelset(&def, SIGSTOP);
    posix_spawnattr_setsigmask(&r->attr, &none);
    posix_spawnattr_setsigdefault(&r->attr, &def); /* Python ignores SIGPIPE: children must not */
    /* a console process leads a new session (its own group: the system tracks it, see
     * console_groups); every other process joins the system's group (cp_spawn_locked) */
    short group = r->console ? POSIX_SPAWN_SETSID : POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setflags(&r->attr, group | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    return S_OK;
}

/* 5. The spawn itself, with svc_mu held (and still held on success, for cp_record_locked): so
 * the child's exit cannot be reaped before its record exists, and a concurrent pause or
 * terminate sees it. The first process leads a new group; later ones join it. */
static HRESULT cp_spawn_locked(cp_req *r, char **doc) {
    svc_system *s = r->s;
    pthread_mutex_lock(&svc_mu);
    if (s->state != ST_RUNNING || s->stopping) {
        int st = s->state;
        pthread_mutex_unlock(&svc_mu);
        return wrong_state(doc, s, st, "create a process in");
    }
    r->leader = r->console || s->pgid <= 0;
    if (!r->console) posix_spawnattr_setpgroup(&r->attr, r->leader ? 0 : s->pgid);
    if (r->console && !add_console_group_locked(s, 0)) { /* room for it, before the spawn */
        pthread_mutex_unlock(&svc_mu);
        return svc_fail(doc, E_OUTOFMEMORY, "Out of memory recording the console's process group");
    }
    proc_known_lock();
    const char *stage = NULL; /* an isolated system's processes start inside it (isolate.h) */
    cg_spawn_enter(s->cg); /* the child is born in the system's cgroup (cgroup.h) */
    int rc = s->iso ? iso_spawn_stdio(s->iso, r->argv, r->env, r->cwd, r->console ? r->pty : -1,
                                      r->want_in ? r->in[0] : -1, r->want_out ? r->out[1] : -1,
                                      r->want_err ? r->err[1] : -1, r->leader ? 0 : s->pgid, &r->pid, &stage)
                    : posix_spawnp(&r->pid, r->argv[0], &r->fa, &r->attr, r->argv, r->env);
    cg_spawn_leave(s->cg);
    if (rc == 0) proc_known_add_locked(r->pid);
    if (rc == 0) cg_adopt(s->cg, r->pid);
    proc_known_unlock();
    if (r->console) {
        s->n_console_groups--; /* the slot reserved above: the child's now */
        if (rc == 0) s->console_groups[s->n_console_groups++] = r->pid;
    }
    if (rc != 0) {
        pthread_mutex_unlock(&svc_mu);
        if (stage && strcmp(stage, "chdir") == 0)
            return svc_fail(doc, HRESULT_FROM_WIN32(267 /* ERROR_DIRECTORY */), "The working directory '%s' is not a "
                            "directory in the compute system: %s", r->cwd, strerror(rc));
        DWORD e = rc == ENOENT ? ERROR_FILE_NOT_FOUND : rc == EACCES ? ERROR_ACCESS_DENIED : ERROR_INVALID_PARAMETER;
        return svc_fail(doc, HRESULT_FROM_WIN32(e), "Cannot start '%s'%s%s: %s", r->argv[0], stage ? " at " : "",
                        stage ? stage : "", strerror(rc));
    }
    return S_OK;
}

static void take_fd(int *dst, int *src) {
    *dst = *src;
    *src = -1;
}

/* 6. The process record (svc_mu held), and the pipe ends handed out. The caller owns its pipe
 * ends and the service keeps no copy of the output ones, so a reader that closes stdout gives
 * the writer SIGPIPE/EPIPE. The service keeps stdin's write end (HcsModifyProcess CloseHandle
 * closes it, GetProcessInfo duplicates it). With the CreateProcess quirk the caller loses its
 * pipes: the service keeps them for GetProcessInfo. */
static void cp_record_locked(cp_req *r, svc_stdio *io) {
    svc_system *s = r->s;
    sproc *p = calloc(1, sizeof *p);
    p->pid = (uint32_t)r->pid;
    p->handles = 1; /* the creating handle's: held from the start, so a fast exit cannot drop the record */
    p->console = r->console;
    p->created_ms_epoch = now_ms_epoch();
    p->image = strdup(r->argv[0]);
    p->in_w = p->out_r = p->err_r = -1;
    io->in = io->out = io->err = -1;
    bool withhold = g_settings.create_process_sync_quirk;
    if (r->console) {
        if (r->want_in && !withhold) io->in = dup_cloexec(r->pty);
        if (r->want_out && !withhold) io->out = dup_cloexec(r->pty);
        take_fd(&p->in_w, &r->pty); /* kept: the console stays usable for GetProcessInfo and resize */
    } else {
        if (r->want_in) {
            take_fd(&p->in_w, &r->in[1]);
            if (!withhold) io->in = dup_cloexec(p->in_w);
        }
        if (r->want_out) take_fd(withhold ? &p->out_r : &io->out, &r->out[0]);
        if (r->want_err) take_fd(withhold ? &p->err_r : &io->err, &r->err[0]);
    }
    p->next = s->procs;
    s->procs = p;
    n_procs++;
    if (r->leader && !r->console) s->pgid = r->pid;
    s->refs++; /* for the watch (cp_watch) */
}

/* 7. Watch for the exit: a group leader (the system's first process, or a console process)
 * stays a zombie (pinning the group id) until the system stops. */
static void cp_watch(cp_req *r) {
    exit_ctx *x = malloc(sizeof *x);
    if (x) {
        x->s = r->s;
        x->pid = (uint32_t)r->pid;
    }
    if (!x || !proc_watch(r->pid, r->leader, on_process_exit, x)) {
        free(x);
        svc_unref(r->s);
    }
}

static void cp_free(cp_req *r) {
    for (int i = 0; i < 2; i++) {
        if (r->in[i] >= 0) close(r->in[i]);
        if (r->out[i] >= 0) close(r->out[i]);
        if (r->err[i] >= 0) close(r->err[i]);
    }
    if (r->pty >= 0) close(r->pty);
    if (r->fa_init) posix_spawn_file_actions_destroy(&r->fa);
    if (r->attr_init) posix_spawnattr_destroy(&r->attr);
    free_strv(r->argv);
    free_strv(r->env);
    free(r->workdir);
    free(r->in_root);
    json_free(r->pp);
}

HRESULT svc_create_process(svc_system *s, const char *params, uint32_t *pid_out, svc_stdio *io, char **doc) {
    cp_req r = {.s = s, .in = {-1, -1}, .out = {-1, -1}, .err = {-1, -1}, .pty = -1};
    HRESULT hr = cp_parse(&r, params, doc);
    if (!FAILED(hr)) hr = cp_argv(&r, doc);
    if (!FAILED(hr)) hr = cp_workdir(&r, doc);
    if (!FAILED(hr)) hr = cp_stdio(&r, doc);
    if (!FAILED(hr)) hr = cp_spawn_locked(&r, doc);
    if (!FAILED(hr)) {
        /* the child has its own copies of its pipe ends: ours go */
        int *childs[] = {&r.in[0], &r.out[1], &r.err[1]};
        for (size_t i = 0; i < 3; i++)
            if (*childs[i] >= 0) close(*childs[i]), *childs[i] = -1;
        cp_record_locked(&r, io);
        pthread_mutex_unlock(&svc_mu);
        cp_watch(&r);
        *pid_out = (uint32_t)r.pid;
        hr = S_OK;
    }
    cp_free(&r);
    return hr;
}

HRESULT svc_process_open(svc_system *s, uint32_t pid) {
    pthread_mutex_lock(&svc_mu);
    sproc *p = find_proc_locked(s, pid);
    HRESULT hr = p && !p->exited ? S_OK : HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
    pthread_mutex_unlock(&svc_mu);
    return hr;
}

void svc_process_handle(svc_system *s, uint32_t pid, int delta) {
    pthread_mutex_lock(&svc_mu);
    sproc *p = find_proc_locked(s, pid);
    if (p) {
        p->handles += delta;
        if (p->handles <= 0 && p->exit_delivered) remove_proc_locked(s, p);
    }
    pthread_mutex_unlock(&svc_mu);
}

static HRESULT with_proc(svc_system *s, uint32_t pid, sproc **out, char **doc) {
    *out = find_proc_locked(s, pid);
    if (!*out) return svc_fail(doc, HRESULT_FROM_WIN32(ERROR_NOT_FOUND), "Process %u was not found", pid);
    return S_OK;
}

HRESULT svc_process_info(svc_system *s, uint32_t pid, svc_stdio *io, char **doc) {
    pthread_mutex_lock(&svc_mu);
    sproc *p;
    HRESULT hr = with_proc(s, pid, &p, doc);
    if (!FAILED(hr)) {
        /* Each call hands out new handles, which the caller must close; output pipes only
         * while the service still holds them (the creator never received them). */
        if (p->console) {
            io->in = dup_cloexec(p->in_w);
            io->out = dup_cloexec(p->in_w);
        } else {
            io->in = dup_cloexec(p->in_w);
            io->out = p->out_r;
            io->err = p->err_r;
            p->out_r = p->err_r = -1;
        }
    }
    pthread_mutex_unlock(&svc_mu);
    return hr;
}

typedef struct sigmap {
    const char *name;
    int sig;
} sigmap;
static const sigmap ctrl_signals[] = {{"CtrlC", SIGINT},       {"CtrlBreak", SIGQUIT},      {"CtrlClose", SIGHUP},
                                      {"CtrlLogOff", SIGHUP},  {"CtrlShutdown", SIGTERM}, {NULL, 0}};

HRESULT svc_process_signal(svc_system *s, uint32_t pid, const json *opts, char **doc) {
    int sig = SIGTERM;
    const json *sv = json_get(opts, "Signal");
    if (opts && json_typeof(opts) != JSON_OBJECT)
        return svc_fail(doc, HCS_E_INVALID_JSON, "Signal options must be a JSON object");
    HRESULT nhr = refuse_nul(opts, "The signal options", doc); /* "CtrlC\u0000x" is not CtrlC */
    if (FAILED(nhr)) return nhr;
    if (json_typeof(sv) == JSON_NULL) sv = NULL;
    if (sv) {
        int64_t n;
        const char *name = json_str(sv);
        if (json_int64(sv, &n)) {
            if (n <= 0 || n >= 65) return svc_fail(doc, E_INVALIDARG, "Signal %lld is not a valid signal number", (long long)n);
            sig = (int)n;
        } else if (name) {
            sig = 0;
            for (const sigmap *m = ctrl_signals; m->name; m++)
                if (strcmp(m->name, name) == 0) sig = m->sig;
            if (!sig) return svc_fail(doc, HCS_E_INVALID_JSON, "Unknown signal '%s'", name);
        } else {
            return svc_fail(doc, HCS_E_INVALID_JSON, "Signal must be a number or a Ctrl event name");
        }
    }
    pthread_mutex_lock(&svc_mu);
    sproc *p;
    HRESULT hr = with_proc(s, pid, &p, doc);
    if (!FAILED(hr) && p->exited) hr = svc_fail(doc, HCS_E_PROCESS_ALREADY_STOPPED, "Process %u has already exited", pid);
    if (!FAILED(hr) && s->state != ST_RUNNING && s->state != ST_PAUSED) hr = wrong_state(doc, s, s->state, "signal a process of");
    if (!FAILED(hr) && kill((pid_t)pid, sig) < 0)
        hr = svc_fail(doc, HCS_E_PROCESS_ALREADY_STOPPED, "Process %u has already exited", pid);
    pthread_mutex_unlock(&svc_mu);
    return hr;
}

HRESULT svc_process_terminate(svc_system *s, uint32_t pid, char **doc) {
    pthread_mutex_lock(&svc_mu);
    sproc *p;
    HRESULT hr = with_proc(s, pid, &p, doc);
    /* Windows semantics: TerminateProcess on a process that already ended is access denied. */
    if (!FAILED(hr) && p->exited) hr = svc_fail(doc, E_ACCESSDENIED, "Process %u has already exited", pid);
    if (!FAILED(hr)) {
        kill((pid_t)pid, SIGKILL);
        if (s->state == ST_PAUSED) kill((pid_t)pid, SIGCONT);
        if (s->state == ST_PAUSED) cg_release(s->cg, (int)pid); /* frozen: it dies once out */
    }
    pthread_mutex_unlock(&svc_mu);
    return hr;
}

HRESULT svc_process_properties(svc_system *s, uint32_t pid, const json *query, char **doc) {
    (void)query;
    pthread_mutex_lock(&svc_mu);
    sproc *p;
    HRESULT hr = with_proc(s, pid, &p, doc);
    if (!FAILED(hr)) {
        free(*doc);
        *doc = process_status_doc(p);
    }
    pthread_mutex_unlock(&svc_mu);
    return hr;
}

HRESULT svc_process_modify(svc_system *s, uint32_t pid, const json *req, char **doc) {
    if (json_typeof(req) != JSON_OBJECT) return svc_fail(doc, HCS_E_INVALID_JSON, "The modify request must be a JSON object");
    const char *op = NULL, *which = NULL;
    const json *cs = NULL;
    WANT(str, req, "ProcessModifyRequest", "Operation", &op);
    WANT(str, req, "ProcessModifyRequest", "CloseHandle.Handle", &which);
    WANT(obj, req, "ProcessModifyRequest", "ConsoleSize", &cs);
    HRESULT nhr = refuse_nul(req, "The process modify request", doc);
    if (FAILED(nhr)) return nhr;
    if (!op) return svc_fail(doc, HCS_E_INVALID_JSON, "Operation is required");
    pthread_mutex_lock(&svc_mu);
    sproc *p;
    HRESULT hr = with_proc(s, pid, &p, doc);
    if (!FAILED(hr) && p->exited) hr = svc_fail(doc, HCS_E_PROCESS_ALREADY_STOPPED, "Process %u has already exited", pid);
    if (!FAILED(hr)) {
        if (strcmp(op, "CloseHandle") == 0) {
            if (!which) {
                hr = svc_fail(doc, HCS_E_INVALID_JSON, "CloseHandle.Handle is required");
            } else if (strcmp(which, "StdIn") == 0 || strcmp(which, "All") == 0) {
                /* The service's copy is the last write end the caller does not own: closing
                 * it is what lets the child see EOF once the caller closed its own. */
                if (!p->console && p->in_w >= 0) {
                    close(p->in_w);
                    p->in_w = -1;
                }
                if (strcmp(which, "All") == 0 && !p->console) {
                    if (p->out_r >= 0) close(p->out_r);
                    if (p->err_r >= 0) close(p->err_r);
                    p->out_r = p->err_r = -1;
                }
            } else if (strcmp(which, "StdOut") == 0) {
                if (!p->console && p->out_r >= 0) close(p->out_r);
                if (!p->console) p->out_r = -1;
            } else if (strcmp(which, "StdErr") == 0) {
                if (p->err_r >= 0) close(p->err_r);
                p->err_r = -1;
            } else {
                hr = svc_fail(doc, HCS_E_INVALID_JSON, "Unknown handle '%s'", which);
            }
        } else if (strcmp(op, "ConsoleSize") == 0) {
            int64_t h, w;
            if (!json_int64(json_get(cs, "Height"), &h) || !json_int64(json_get(cs, "Width"), &w) || h < 0 || w < 0 ||
                h > 0xFFFF || w > 0xFFFF) {
                hr = svc_fail(doc, HCS_E_INVALID_JSON, "ConsoleSize needs Height and Width");
            } else {
                p->rows = (uint16_t)h;
                p->cols = (uint16_t)w;
                if (p->console && p->in_w >= 0) {
                    struct winsize ws = {(unsigned short)h, (unsigned short)w, 0, 0};
                    ioctl(p->in_w, TIOCSWINSZ, &ws);
                }
            }
        } else {
            hr = svc_fail(doc, HCS_E_INVALID_JSON, "Unknown process modify operation '%s'", op);
        }
    }
    pthread_mutex_unlock(&svc_mu);
    return hr;
}

HRESULT svc_process_wait(svc_system *s, uint32_t pid, uint32_t timeout_ms, char **doc) {
    return svc_process_wait_or_abandon(s, pid, timeout_ms, NULL, doc);
}

/* A process has exited, for a wait, once its ProcessExited event has been delivered (or is
 * being delivered to the caller): a wait never reports an exit whose event a callback set on
 * the process has yet to receive, so a caller that clears its callback after the wait never
 * loses the event, whatever the timing (svc_mu held). */
static bool exit_seen_locked(const svc_system *s, const sproc *p) {
    return p->exited && (p->exit_delivered || (tls_exit_sys == s && tls_exit_pid == p->pid));
}

HRESULT svc_process_wait_or_abandon(svc_system *s, uint32_t pid, uint32_t timeout_ms, const atomic_bool *abandoned,
                                    char **doc) {
    struct timespec ts;
    emu_deadline(&ts, timeout_ms == INFINITE ? 0 : timeout_ms);
    pthread_mutex_lock(&svc_mu);
    sproc *p;
    HRESULT hr = with_proc(s, pid, &p, doc);
    while (!FAILED(hr) && !exit_seen_locked(s, p)) {
        if (abandoned_now(abandoned)) {
            hr = E_HANDLE;
            break;
        }
        if (emu_service_disconnected()) {
            hr = HCS_E_SERVICE_DISCONNECT;
            break;
        }
        if (timeout_ms == 0 || !timed_wait_locked(&ts, timeout_ms)) {
            p = find_proc_locked(s, pid);
            if (!p) hr = HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
            else if (!exit_seen_locked(s, p)) hr = g_settings.wait_exit_timeout_hr;
            break;
        }
        p = find_proc_locked(s, pid);
        if (!p) hr = HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
    }
    if (!FAILED(hr) && p && p->exited) *doc = process_status_doc(p);
    pthread_mutex_unlock(&svc_mu);
    return hr;
}

HRESULT svc_inject_process_exit(const char *id, uint32_t pid, int code) {
    (void)code;
    svc_system *s;
    if (FAILED(svc_open(id, &s))) return HCS_E_SYSTEM_NOT_FOUND;
    pthread_mutex_lock(&svc_mu);
    sproc *p = find_proc_locked(s, pid);
    HRESULT hr = p && !p->exited ? S_OK : HRESULT_FROM_WIN32(ERROR_NOT_FOUND);
    if (!FAILED(hr)) kill((pid_t)pid, SIGKILL);
    pthread_mutex_unlock(&svc_mu);
    svc_unref(s);
    return hr;
}
