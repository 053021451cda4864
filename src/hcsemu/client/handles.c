#define _GNU_SOURCE
#include "handles.h"

#include <pthread.h>
#include <stdlib.h>

/* value = generation << 32 | index << 2 | type. Generations start high so that small
 * integers (a file descriptor, 1, -1) are never mistaken for a handle. */
#define IDX_SHIFT 2
#define TYPE_MASK 3u

typedef struct slot {
    hobj *obj;
    uint32_t gen;
    uint32_t next_free;
} slot;

/* Lookups (every call) take it shared; only open and close take it exclusively. */
static pthread_rwlock_t tab_mu = PTHREAD_RWLOCK_INITIALIZER;
static slot *tab;
static uint32_t tab_cap, free_head = UINT32_MAX, live[4];

void hobj_init(hobj *o, htype type, void (*destroy)(hobj *)) {
    o->type = type;
    atomic_init(&o->refs, 1);
    o->value = 0;
    o->destroy = destroy;
}

void hobj_ref(hobj *o) { atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed); }

void hobj_unref(hobj *o) {
    if (o && atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1) o->destroy(o);
}

uintptr_t handle_register(hobj *o) {
    pthread_rwlock_wrlock(&tab_mu);
    if (free_head == UINT32_MAX) {
        uint32_t ncap = tab_cap ? tab_cap * 2 : 64;
        if (ncap > (1u << 29)) {
            pthread_rwlock_unlock(&tab_mu);
            return 0;
        }
        slot *nt = realloc(tab, ncap * sizeof *nt);
        if (!nt) {
            pthread_rwlock_unlock(&tab_mu);
            return 0;
        }
        for (uint32_t i = tab_cap; i < ncap; i++) {
            nt[i].obj = NULL;
            nt[i].gen = 0x5C3u + i * 7u;
            nt[i].next_free = (i + 1 < ncap) ? i + 1 : UINT32_MAX;
        }
        tab = nt;
        free_head = tab_cap;
        tab_cap = ncap;
    }
    uint32_t i = free_head;
    free_head = tab[i].next_free;
    tab[i].obj = o;
    hobj_ref(o);
    uintptr_t v = ((uintptr_t)tab[i].gen << 32) | ((uintptr_t)i << IDX_SHIFT) | (uintptr_t)o->type;
    o->value = v;
    live[o->type]++;
    pthread_rwlock_unlock(&tab_mu);
    return v;
}

static slot *lookup(uintptr_t h, htype t) {
    if ((h & TYPE_MASK) == 0 || (t != H_ANY && (h & TYPE_MASK) != (uintptr_t)t)) return NULL;
    uint32_t i = (uint32_t)((h & 0xFFFFFFFFu) >> IDX_SHIFT);
    if (i >= tab_cap) return NULL;
    slot *s = &tab[i];
    if (!s->obj || s->gen != (uint32_t)(h >> 32) || s->obj->value != h) return NULL;
    return s;
}

hobj *handle_get(uintptr_t h, htype t) {
    pthread_rwlock_rdlock(&tab_mu);
    slot *s = lookup(h, t);
    hobj *o = s ? s->obj : NULL;
    if (o) hobj_ref(o);
    pthread_rwlock_unlock(&tab_mu);
    return o;
}

hobj *handle_unregister(uintptr_t h, htype t) {
    pthread_rwlock_wrlock(&tab_mu);
    slot *s = lookup(h, t);
    hobj *o = NULL;
    if (s) {
        o = s->obj;
        o->value = 0;
        s->obj = NULL;
        s->gen++;
        uint32_t i = (uint32_t)(s - tab);
        s->next_free = free_head;
        free_head = i;
        live[o->type]--;
    }
    pthread_rwlock_unlock(&tab_mu);
    return o;
}

void handle_foreach(htype t, void (*fn)(hobj *o, void *arg), void *arg) {
    pthread_rwlock_rdlock(&tab_mu);
    size_t n = 0;
    hobj **objs = malloc((live[t] + 1) * sizeof *objs);
    if (objs) {
        for (uint32_t i = 0; i < tab_cap; i++) {
            hobj *o = tab[i].obj;
            if (o && o->type == t) {
                hobj_ref(o);
                objs[n++] = o;
            }
        }
    }
    pthread_rwlock_unlock(&tab_mu);
    /* Callbacks run outside the table lock: they may open or close handles. */
    for (size_t k = 0; k < n; k++) {
        fn(objs[k], arg);
        hobj_unref(objs[k]);
    }
    free(objs);
}

bool handle_live(hobj *o) {
    pthread_rwlock_rdlock(&tab_mu);
    bool live = o->value != 0;
    pthread_rwlock_unlock(&tab_mu);
    return live;
}

size_t handle_count(htype t) {
    pthread_rwlock_rdlock(&tab_mu);
    size_t n = live[t];
    pthread_rwlock_unlock(&tab_mu);
    return n;
}
