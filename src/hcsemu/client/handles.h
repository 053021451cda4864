/* Handle table of the client half: every HCS_* handle is a slot with a generation counter, so
 * a closed, stale or made-up handle is recognised (E_HANDLE) instead of being dereferenced. */
#ifndef HCSEMU_HANDLES_H
#define HCSEMU_HANDLES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { H_ANY = 0, H_OPERATION = 1, H_SYSTEM = 2, H_PROCESS = 3 } htype;

typedef struct hobj {
    htype type;
    atomic_int refs;
    uintptr_t value; /* the handle value while registered, 0 once closed */
    void (*destroy)(struct hobj *self);
} hobj;

void hobj_init(hobj *o, htype type, void (*destroy)(hobj *));
void hobj_ref(hobj *o);
void hobj_unref(hobj *o);

/* Registers o (the table takes its own reference); returns the handle value, 0 on OOM. */
uintptr_t handle_register(hobj *o);
/* The live object behind h with a new reference, or NULL if h is not a live handle of type t. */
hobj *handle_get(uintptr_t h, htype t);
/* Removes h; returns the object carrying the table's reference, or NULL if h was not live. */
hobj *handle_unregister(uintptr_t h, htype t);
/* Calls fn on every live object of type t (each with a reference held during the call). */
void handle_foreach(htype t, void (*fn)(hobj *o, void *arg), void *arg);
size_t handle_count(htype t);
/* Whether o is still registered (its handle not closed). */
bool handle_live(hobj *o);

#endif
