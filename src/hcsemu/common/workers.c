/*
 * The worker pool: detached threads that run queued jobs and exit after
 * g_settings.worker_idle_ms idle. Both halves use it: the client for operations and
 * callbacks, the service for long calls and event delivery.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "control.h"
#include "emu.h"

typedef struct job {
    emu_job_fn fn;
    void *arg;
    struct job *next;
} job;

#define POOL_MAX_THREADS 256

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cv;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static job *q_head, *q_tail;
static size_t n_threads, n_idle;

/* In a forked child only the forking thread exists: the pool starts empty there (queued jobs
 * belonged to the parent's operations). pool_mu is held across fork so it is consistent. */
static void pool_prefork(void) { pthread_mutex_lock(&pool_mu); }
static void pool_parent(void) { pthread_mutex_unlock(&pool_mu); }
static void pool_child(void) {
    pthread_mutex_init(&pool_mu, NULL);
    emu_cond_init(&pool_cv);
    q_head = q_tail = NULL;
    n_threads = n_idle = 0;
}

static void pool_init(void) {
    emu_cond_init(&pool_cv);
    pthread_atfork(pool_prefork, pool_parent, pool_child);
}

static void *worker_main(void *unused) {
    (void)unused;
    pthread_mutex_lock(&pool_mu);
    for (;;) {
        while (!q_head) {
            struct timespec ts;
            emu_deadline(&ts, g_settings.worker_idle_ms);
            n_idle++;
            int rc = pthread_cond_timedwait(&pool_cv, &pool_mu, &ts);
            n_idle--;
            if (rc == ETIMEDOUT && !q_head) {
                n_threads--;
                pthread_mutex_unlock(&pool_mu);
                return NULL;
            }
        }
        job *j = q_head;
        q_head = j->next;
        if (!q_head) q_tail = NULL;
        pthread_mutex_unlock(&pool_mu);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&pool_mu);
    }
}

bool emu_submit(emu_job_fn fn, void *arg) {
    pthread_once(&pool_once, pool_init);
    job *j = malloc(sizeof *j);
    if (!j) return false;
    j->fn = fn;
    j->arg = arg;
    j->next = NULL;
    pthread_mutex_lock(&pool_mu);
    if (q_tail) q_tail->next = j; else q_head = j;
    q_tail = j;
    if (n_idle > 0) {
        pthread_cond_signal(&pool_cv);
    } else if (n_threads < POOL_MAX_THREADS) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&a, 256 * 1024);
        if (pthread_create(&t, &a, worker_main, NULL) == 0) n_threads++;
        pthread_attr_destroy(&a);
        /* If no thread could be made the job waits for a busy worker to come back. */
    }
    pthread_mutex_unlock(&pool_mu);
    return true;
}

size_t emu_live_threads(void) {
    pthread_mutex_lock(&pool_mu);
    size_t n = n_threads;
    pthread_mutex_unlock(&pool_mu);
    return n;
}

