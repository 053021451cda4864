# cython: language_level=3, embedsignature=True, binding=True, annotation_typing=False
# cython: boundscheck=False, wraparound=False, cdivision=True
"""The compiled backend: the flat HCS API of ``pyhcs._native.ctypes``, with the GIL released on
every call that can block or take time, and GIL-free callbacks.

It exports exactly ``pyhcs._native._backend.PUBLIC_API`` with the same signatures, defaults, return
values and exceptions as the ctypes backend (a test compares them); annotations are kept as the
same strings so ``inspect.signature`` of both backends compares equal.

Invariants (read before changing anything here):

* Every library call goes through the table ``T`` that ``_loader.h`` fills at import. A slot
  is NULL when the library lacks that export: call ``_need()`` before using a slot.
* Python-owned inputs are converted to C (UTF-16 copies, pointer values) *before* the GIL is
  released; nothing inside a ``with nogil`` block touches a Python object.
* The callback trampolines ``_on_operation``/``_on_event`` run on the library's threads and
  never take the GIL: integer key in, copy, enqueue, return. Every Python-side decision (which
  callback, is the handle still open) is made by the shared dispatcher in ``pyhcs._native._dispatch``.
"""

# _loader.h must be included before hcs.h: on Windows it brings the SDK's types first, and
# hcs.h then only contributes its function lists. Cython emits includes in declaration order.
cdef extern from "_loader.h":
    pass

cimport cython
from libc.stdint cimport int64_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from cpython.exc cimport PyErr_CheckSignals
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_AsVoidPtr

from pyhcs._native.cython._computecore cimport (
    DWORD,
    HANDLE,
    HCS_EVENT,
    HCS_EVENT_CALLBACK,
    HCS_EVENT_OPTIONS,
    HCS_OPERATION,
    HCS_OPERATION_COMPLETION,
    HCS_OPERATION_TYPE,
    HCS_PROCESS,
    HCS_PROCESS_INFORMATION,
    HCS_SYSTEM,
    HLOCAL,
    HRESULT,
    PCWSTR,
    PWSTR,
    SECURITY_DESCRIPTOR,
    UINT64,
    WCHAR,
)

import atexit
import os

from pyhcs._native import _blocking

from pyhcs import errors
from pyhcs._native._dispatch import KIND_EVENT, KIND_OPERATION, new_dispatcher
from pyhcs._native._library import library_paths
from pyhcs._native._types import GENERIC_ALL, INFINITE, HcsProcessInformation

# ----------------------------------------------------------------------------- the loader

# The function table (generated from hcs.h and _loader.h by tools/gen_abi.py).
include "_functable.pxi"

cdef extern from "_loader.h" nogil:
    int pyhcs_load(pyhcs_table* t, const char* core_path, const char* storage_path, char* err, size_t errlen)
    int pyhcs_has_function(const pyhcs_table* t, const char* name)
    int pyhcs_is_storage_function(const char* name)
    size_t pyhcs_n_slots()
    const char* pyhcs_slot_name(size_t i)
    unsigned long pyhcs_last_error()

    ctypedef struct pyhcs_mutex:
        pass
    ctypedef struct pyhcs_cond:
        pass
    void pyhcs_mutex_init(pyhcs_mutex* m)
    void pyhcs_mutex_lock(pyhcs_mutex* m)
    void pyhcs_mutex_unlock(pyhcs_mutex* m)
    void pyhcs_cond_init(pyhcs_cond* c)
    void pyhcs_cond_signal(pyhcs_cond* c)
    void pyhcs_cond_broadcast(pyhcs_cond* c)
    void pyhcs_cond_wait(pyhcs_cond* c, pyhcs_mutex* m)
    int64_t pyhcs_monotonic_ns()
    int pyhcs_atfork(void (*prepare)() noexcept nogil, void (*parent)() noexcept nogil,
                     void (*child)() noexcept nogil)

# UTF-16 <-> str, in C against the CPython API (a per-call Python codec round trip would cost
# more than most of the calls it wraps).
cdef extern from *:
    """
    /* A NUL-terminated UTF-16 copy of a str (surrogate pairs for astral characters, lone
     * surrogates passed through as "surrogatepass" does), or NULL with ValueError when the
     * string contains NUL, which the C API could not see past. Free with free(). */
    static WCHAR *pyhcs_str_to_wide(PyObject *s) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(s), extra = 0, i;
        int kind = PyUnicode_KIND(s);
        const void *data = PyUnicode_DATA(s);
        WCHAR *out, *o;
        if (kind == PyUnicode_4BYTE_KIND) {
            const Py_UCS4 *u = (const Py_UCS4 *)data;
            for (i = 0; i < n; i++) extra += u[i] > 0xFFFF;
        }
        out = (WCHAR *)malloc(((size_t)(n + extra) + 1) * sizeof(WCHAR));
        if (!out) {
            PyErr_NoMemory();
            return NULL;
        }
        o = out;
        if (kind == PyUnicode_1BYTE_KIND) {
            const Py_UCS1 *u = (const Py_UCS1 *)data;
            Py_UCS1 all = 1;
            for (i = 0; i < n; i++) {
                all &= (u[i] != 0);
                o[i] = u[i];
            }
            if (!all) goto nul;
            o += n;
        } else if (kind == PyUnicode_2BYTE_KIND) {
            const Py_UCS2 *u = (const Py_UCS2 *)data;
            for (i = 0; i < n; i++) {
                if (!u[i]) goto nul;
                o[i] = u[i];
            }
            o += n;
        } else {
            const Py_UCS4 *u = (const Py_UCS4 *)data;
            for (i = 0; i < n; i++) {
                Py_UCS4 c = u[i];
                if (!c) goto nul;
                if (c > 0xFFFF) {
                    c -= 0x10000;
                    *o++ = (WCHAR)(0xD800 | (c >> 10));
                    *o++ = (WCHAR)(0xDC00 | (c & 0x3FF));
                } else {
                    *o++ = (WCHAR)c;
                }
            }
        }
        *o = 0;
        return out;
    nul:
        free(out);
        PyErr_SetString(PyExc_ValueError, "strings passed to HCS cannot contain NUL characters");
        return NULL;
    }

    static size_t pyhcs_wcslen(const WCHAR *p) {
        size_t n = 0;
        while (p[n]) n++;
        return n;
    }

    /* str from a NUL-terminated UTF-16 string; Latin-1 text (all of JSON's syntax and nearly
     * all documents) is copied directly, anything else goes through the UTF-16 codec. */
    static PyObject *pyhcs_wide_to_str(const WCHAR *p) {
        size_t n = 0;
        unsigned int any = 0;
        PyObject *u;
        while (p[n]) any |= p[n++];
        if (any < 0x100) {
            Py_UCS1 *d;
            size_t i;
            u = PyUnicode_New((Py_ssize_t)n, (Py_UCS4)any);
            if (!u) return NULL;
            d = PyUnicode_1BYTE_DATA(u);
            for (i = 0; i < n; i++) d[i] = (Py_UCS1)p[i];
            return u;
        } else {
            int byteorder = -1; /* little-endian, no BOM */
            return PyUnicode_DecodeUTF16((const char *)p, (Py_ssize_t)(n * sizeof(WCHAR)), "surrogatepass",
                                         &byteorder);
        }
    }
    """
    WCHAR* pyhcs_str_to_wide(object s) except NULL
    size_t pyhcs_wcslen(const WCHAR* p) nogil
    object pyhcs_wide_to_str(const WCHAR* p)

cdef pyhcs_table T
cdef char _load_error[512]

_core_path, _storage_path = library_paths()
if pyhcs_load(&T, os.fsencode(_core_path), os.fsencode(_storage_path), _load_error, sizeof(_load_error)) != 0:
    raise ImportError(f"pyhcs._native.cython._core: {_load_error.decode('utf-8', 'replace')}")

# The exports the library has (has_function); computed once, the table never changes.
_present = frozenset(
    name for name in (pyhcs_slot_name(i).decode() for i in range(pyhcs_n_slots()))
    if pyhcs_has_function(&T, name.encode()) == 1
)
# Why computestorage could not be loaded, or None: its functions then raise naming it.
_storage_error = T.storage_error.decode("utf-8", "replace") if T.storage == NULL else None

BACKEND = "cython"
#: Deliberate differences from the ctypes backend (see pyhcs.backend_features):
#: "nogil-calls": blocking calls run without the GIL in compiled code;
#: "nogil-dispatch": library callbacks are queued by C trampolines that never take the GIL.
FEATURES = frozenset({"nogil-calls", "nogil-dispatch"})

# Constants as C macros: compile-time values the C compiler folds (DEF is deprecated).
cdef extern from *:
    """
    /* A wait is cut into slices of this length so that signals (Ctrl-C) are handled between
     * them: the GIL is released for one slice at a time, then PyErr_CheckSignals() runs. */
    #define PYHCS_WAIT_SLICE_MS 200
    #define PYHCS_INFINITE 0xFFFFFFFFu /* a wait without a limit */
    /* HRESULTs, as unsigned 32-bit values, from the table (hresults.h is generated from
     * tools/errors.toml; on Windows the SDK's definitions, which it skips, carry the same values) */
    #include "hresults.h"
    #define PYHCS_HCS_E_OPERATION_TIMEOUT ((uint32_t)HCS_E_OPERATION_TIMEOUT)
    #define PYHCS_HCS_E_OPERATION_TIMEOUT_LEGACY (PYHCS_HCS_E_OPERATION_TIMEOUT | 0x40000000u) /* its 0xC037 twin */
    #define PYHCS_HCS_E_OPERATION_PENDING ((uint32_t)HCS_E_OPERATION_PENDING)
    #define PYHCS_HCS_E_OPERATION_PENDING_TWIN (PYHCS_HCS_E_OPERATION_PENDING | 0x40000000u) /* its 0xC037 twin */
    #define PYHCS_HCS_E_OPERATION_PENDING_LEGACY ((uint32_t)HCS_E_OPERATION_PENDING_LEGACY) /* old builds */
    #define PYHCS_IS_PENDING(u) ((u) == PYHCS_HCS_E_OPERATION_PENDING || (u) == PYHCS_HCS_E_OPERATION_PENDING_TWIN \
                                 || (u) == PYHCS_HCS_E_OPERATION_PENDING_LEGACY)
    #define PYHCS_E_WAIT_TIMEOUT (0x80070000u | (uint32_t)WAIT_TIMEOUT) /* HRESULT_FROM_WIN32(WAIT_TIMEOUT) */
    #define PYHCS_E_ERROR_TIMEOUT 0x800705B4u /* HRESULT_FROM_WIN32(ERROR_TIMEOUT): not in the table */
    #define PYHCS_E_OUTOFMEMORY ((uint32_t)E_OUTOFMEMORY)
    #define PYHCS_ERROR_PROC_NOT_FOUND ERROR_PROC_NOT_FOUND
    """
    DWORD _WAIT_SLICE_MS "PYHCS_WAIT_SLICE_MS"
    DWORD _INFINITE "PYHCS_INFINITE"
    uint32_t _HCS_E_OPERATION_TIMEOUT "PYHCS_HCS_E_OPERATION_TIMEOUT"
    uint32_t _HCS_E_OPERATION_TIMEOUT_LEGACY "PYHCS_HCS_E_OPERATION_TIMEOUT_LEGACY"
    bint _is_pending "PYHCS_IS_PENDING"(uint32_t u) noexcept nogil
    uint32_t _E_WAIT_TIMEOUT "PYHCS_E_WAIT_TIMEOUT"
    uint32_t _E_ERROR_TIMEOUT "PYHCS_E_ERROR_TIMEOUT"
    uint32_t _E_OUTOFMEMORY "PYHCS_E_OUTOFMEMORY"
    int _ERROR_PROC_NOT_FOUND "PYHCS_ERROR_PROC_NOT_FOUND"

#: The wait slice in milliseconds (see PYHCS_WAIT_SLICE_MS above), for tests and benchmarks.
WAIT_SLICE_MS = _WAIT_SLICE_MS

cdef object _make_error = errors.make_error
cdef object _abandoned = _blocking.abandoned
cdef object _HcsProcessInformation = HcsProcessInformation

# ----------------------------------------------------------------------------- small helpers


cdef inline void* _ptr(object value) except? NULL:
    """A handle or context as the C pointer: None (NULL) or an int that fits a pointer;
    TypeError for anything else, OverflowError out of range (the rules of _backend.pyi, which
    pyhcs._native.ctypes._validate applies the same way)."""
    if value is None:
        return NULL
    if not isinstance(value, int):
        raise TypeError(f"expected an int handle or None, not {type(value).__name__}")
    if value < 0:
        raise OverflowError(f"a handle cannot be negative ({value})")
    return PyLong_AsVoidPtr(value)  # OverflowError above the pointer width


cdef inline DWORD _dword(object value, str name) except? 0xFFFFFFFF:
    """A DWORD argument: an int from 0 to 0xFFFFFFFF."""
    if not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0 or value > 0xFFFFFFFF:
        raise OverflowError(f"{name} {value} does not fit a DWORD (0 to 0xFFFFFFFF)")
    return <DWORD>value


cdef inline int _callable(object callback) except -1:
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, not {type(callback).__name__}")
    return 0


cdef inline int _reserved(object security_descriptor) except -1:
    if security_descriptor is not None:
        raise ValueError("security_descriptor is reserved and must be None")
    return 0


cdef inline int _need(const void* fn, str name) except -1:
    """Raises ProcedureNotFoundError naming the function when the library lacks it."""
    if fn == NULL:
        _missing(name)
    return 0


cdef int _missing(str name) except -1:
    message = None
    if _storage_error is not None and pyhcs_is_storage_function(name.encode()):
        message = f"{name} is unavailable: computestorage could not be loaded ({_storage_error})"
    raise _make_error(errors.HRESULT_FROM_WIN32(_ERROR_PROC_NOT_FOUND), message=message, call=name)


cdef inline int _check(HRESULT hr, str call, object doc=None) except -1:
    if hr < 0:
        raise _make_error(hr, doc, call=call)
    return 0


cdef inline int _check_initiated(HRESULT hr, str call) except -1:
    """An initiating call succeeded: any success code (S_OK, S_FALSE...), or "pending" in any
    of its code forms."""
    if hr < 0 and not _is_pending(<uint32_t>hr):
        raise _make_error(hr, None, call=call)
    return 0


cdef inline WCHAR* _w(object s) except? NULL:
    """UTF-16 copy of an optional str (None is NULL); free() it after the call."""
    if s is None:
        return NULL
    if type(s) is not str and not isinstance(s, str):
        raise TypeError(f"expected str or None, not {type(s).__name__}")
    return pyhcs_str_to_wide(s)


cdef object _take_doc(const WCHAR* p):
    """Copies a result document into a str and frees it with the library's LocalFree."""
    if p == NULL:
        return None
    try:
        return pyhcs_wide_to_str(p)
    finally:
        T.LocalFree(<HLOCAL>p)


# Up to four UTF-16 arguments of one call, freed together whatever happens.
cdef struct _WArgs:
    WCHAR* p[4]


cdef inline void _wargs_init(_WArgs* a) noexcept nogil:
    a.p[0] = a.p[1] = a.p[2] = a.p[3] = NULL


cdef inline void _wargs_free(_WArgs* a) noexcept nogil:
    free(a.p[0])
    free(a.p[1])
    free(a.p[2])
    free(a.p[3])


cdef object _process_info(HCS_PROCESS_INFORMATION* pi):
    return _HcsProcessInformation(
        pi.ProcessId,
        <uintptr_t>pi.StdInput if pi.StdInput != NULL else None,
        <uintptr_t>pi.StdOutput if pi.StdOutput != NULL else None,
        <uintptr_t>pi.StdError if pi.StdError != NULL else None,
    )


# ----------------------------------------------------------------------------- callbacks
#
# The library calls _on_operation/_on_event on its own threads. They never take the GIL: if
# they did, one slow Python thread would stall the library's threads, and during interpreter
# shutdown PyGILState_Ensure from a foreign thread hangs or crashes. So a trampoline copies
# what it was given into one malloc'd node, appends it to a C queue under a C mutex, wakes the
# dispatcher if the queue was empty, and returns. The context it receives is an integer key of
# the registry in pyhcs._native._dispatch, never a PyObject*; key 0 (no registration) is a no-op.
#
# The one dispatcher thread (pyhcs._native._dispatch.Dispatcher) calls _wait_batch(), which waits for
# the queue without the GIL, detaches everything queued so far in O(1), and turns it into
# Python tuples: one wake-up and one GIL acquisition per batch, however many events it holds.
#
# Memory is bounded by what is pending: one node per undelivered notification, freed when its
# batch is taken. Nothing is dropped, except (1) after the atexit hook, when the interpreter is
# going away: trampolines then return at once, touching nothing; (2) a node that cannot be
# allocated, which is counted (_queue_stats()["dropped"]).

ctypedef struct _Node:
    _Node* next
    uintptr_t key
    uintptr_t operation
    uint32_t ev_type
    int kind
    Py_ssize_t length       # UTF-16 units of the event data copied after the node; -1: no data

# The functions below that run on library threads or inside fork() are excluded from line
# tracing and profiling: in a PYHCS_DEBUG_BUILD (CYTHON_TRACE_NOGIL) a traced nogil function
# takes the GIL to report its lines, which is exactly what they must never do.
cdef pyhcs_mutex _q_mu
cdef pyhcs_cond _q_cv
cdef _Node* _q_head = NULL
cdef _Node* _q_tail = NULL
cdef uint64_t _q_enqueued = 0       # nodes pushed since start (or fork): flush_callbacks' target
cdef uint64_t _q_dropped = 0        # nodes that could not be allocated
cdef Py_ssize_t _q_pending = 0      # nodes in the queue now
cdef Py_ssize_t _q_high_water = 0   # the most nodes ever pending at once
# Set by the atexit hook: from then on the trampolines drop everything. Read without the lock
# (a stale read only lets one more node through, which is harmless).
cdef volatile int _finalizing = 0

pyhcs_mutex_init(&_q_mu)
pyhcs_cond_init(&_q_cv)


@cython.linetrace(False)
@cython.profile(False)
cdef inline void _q_push(_Node* n) noexcept nogil:
    global _q_head, _q_tail, _q_enqueued, _q_pending, _q_high_water
    cdef bint was_empty
    n.next = NULL
    pyhcs_mutex_lock(&_q_mu)
    was_empty = _q_tail == NULL
    if was_empty:
        _q_head = n
    else:
        _q_tail.next = n
    _q_tail = n
    _q_enqueued += 1
    _q_pending += 1
    if _q_pending > _q_high_water:
        _q_high_water = _q_pending
    pyhcs_mutex_unlock(&_q_mu)
    # The dispatcher only sleeps on an empty queue, so only the push that ends emptiness needs
    # to wake it; signalling after unlocking spares it waking straight into a held mutex.
    if was_empty:
        pyhcs_cond_signal(&_q_cv)


@cython.linetrace(False)
@cython.profile(False)
cdef inline void _q_count_drop() noexcept nogil:
    global _q_dropped
    pyhcs_mutex_lock(&_q_mu)
    _q_dropped += 1
    pyhcs_mutex_unlock(&_q_mu)


@cython.linetrace(False)
@cython.profile(False)
cdef void _on_operation(HCS_OPERATION operation, void* context) noexcept nogil:
    """HCS_OPERATION_COMPLETION: runs on a library thread, without the GIL."""
    cdef _Node* n
    if _finalizing or context == NULL:
        return
    n = <_Node*>malloc(sizeof(_Node))
    if n == NULL:
        _q_count_drop()
        return
    n.key = <uintptr_t>context
    n.kind = 0  # KIND_OPERATION
    n.ev_type = 0
    n.operation = <uintptr_t>operation
    n.length = -1
    _q_push(n)


@cython.linetrace(False)
@cython.profile(False)
cdef void _on_event(HCS_EVENT* event, void* context) noexcept nogil:
    """HCS_EVENT_CALLBACK: runs on a library thread, without the GIL. EventData belongs to the
    library and is valid only during this call, so it is copied here."""
    cdef _Node* n
    cdef size_t length = 0
    if _finalizing or context == NULL or event == NULL:
        return
    if event.EventData != NULL:
        length = pyhcs_wcslen(event.EventData)
    n = <_Node*>malloc(sizeof(_Node) + (length + 1) * sizeof(WCHAR))
    if n == NULL:
        _q_count_drop()
        return
    n.key = <uintptr_t>context
    n.kind = 1  # KIND_EVENT
    n.ev_type = <uint32_t>event.Type
    n.operation = <uintptr_t>event.Operation
    if event.EventData != NULL:
        n.length = <Py_ssize_t>length
        memcpy(<void*>(n + 1), event.EventData, length * sizeof(WCHAR))
        (<WCHAR*>(n + 1))[length] = 0
    else:
        n.length = -1
    _q_push(n)


@cython.linetrace(False)
@cython.profile(False)
cdef _Node* _q_take() noexcept nogil:
    """Waits until something is queued (or the interpreter exits) and detaches all of it."""
    global _q_head, _q_tail, _q_pending
    cdef _Node* head
    pyhcs_mutex_lock(&_q_mu)
    while _q_head == NULL and not _finalizing:
        pyhcs_cond_wait(&_q_cv, &_q_mu)
    head = _q_head
    _q_head = _q_tail = NULL
    _q_pending = 0
    pyhcs_mutex_unlock(&_q_mu)
    return head


@cython.linetrace(False)
@cython.profile(False)
cdef inline void _free_nodes(_Node* n) noexcept nogil:
    cdef _Node* next_node
    while n != NULL:
        next_node = n.next
        free(n)
        n = next_node


def _wait_batch():
    """The dispatcher's source: blocks without the GIL until at least one notification is
    queued, then returns all of them as ``(key, kind, event type, event data, operation)``,
    oldest first (an empty list once the interpreter is exiting)."""
    cdef _Node* head
    cdef _Node* n
    with nogil:
        head = _q_take()
    batch = []
    try:
        while head != NULL:
            n = head
            data = None if n.length < 0 else pyhcs_wide_to_str(<WCHAR*>(n + 1))
            batch.append((n.key, n.kind, n.ev_type, data, n.operation))
            head = n.next
            free(n)
    finally:
        _free_nodes(head)  # only if a conversion failed (out of memory)
    return batch


_dispatcher = new_dispatcher(_wait_batch)

# Operation handles whose completion callback is in the registry. Closing an operation must
# drop its registration (and wait for a delivery in progress), but most operations never had
# one: checking this set first keeps the registry's lock off the hot path. Only this module
# registers operations with _dispatcher, so the set and the registry agree.
cdef set _op_registered = set()
# The registry starts empty in a forked child too. Windows has no fork and no register_at_fork.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_op_registered.clear)


def _queue_stats():
    """Counters of the C queue, for tests and benchmarks: enqueued, pending, high_water,
    dropped."""
    pyhcs_mutex_lock(&_q_mu)
    stats = {
        "enqueued": _q_enqueued,
        "pending": _q_pending,
        "high_water": _q_high_water,
        "dropped": _q_dropped,
    }
    pyhcs_mutex_unlock(&_q_mu)
    return stats


def _at_exit():
    # atexit runs before finalization starts. From here on the trampolines drop notifications
    # without touching anything, and the dispatcher is told to stop (it may be asleep in
    # _q_take, hence the broadcast). Registered after pyhcs._native._dispatch's hook, so it runs first.
    global _finalizing
    _dispatcher.finalizing = True
    pyhcs_mutex_lock(&_q_mu)
    _finalizing = 1
    pyhcs_cond_broadcast(&_q_cv)
    pyhcs_mutex_unlock(&_q_mu)


atexit.register(_at_exit)


# Fork (the emulator only: Windows has none). The queue's mutex must not be copied into the
# child while another thread holds it, so it is taken around fork() by the forking thread (its
# holders never wait for anything while holding it). In the child the library's threads and
# the dispatcher thread are gone, and so are the handles queued notifications name: the queue
# starts empty (pyhcs._native._dispatch resets the registry and restarts the dispatcher on demand).
@cython.linetrace(False)
@cython.profile(False)
cdef void _fork_prepare() noexcept nogil:
    pyhcs_mutex_lock(&_q_mu)


@cython.linetrace(False)
@cython.profile(False)
cdef void _fork_parent() noexcept nogil:
    pyhcs_mutex_unlock(&_q_mu)


@cython.linetrace(False)
@cython.profile(False)
cdef void _fork_child() noexcept nogil:
    global _q_head, _q_tail, _q_enqueued, _q_pending, _q_high_water, _q_dropped
    _free_nodes(_q_head)
    _q_head = _q_tail = NULL
    _q_enqueued = _q_pending = _q_high_water = 0
    _q_dropped = 0
    pyhcs_mutex_unlock(&_q_mu)
    # The parent's dispatcher may have been waiting on the condition variable: the copy can
    # record a waiter that does not exist in the child, so it is made afresh.
    pyhcs_cond_init(&_q_cv)


if pyhcs_atfork(_fork_prepare, _fork_parent, _fork_child) != 0:
    raise ImportError("pyhcs._native.cython._core: pthread_atfork failed")


def flush_callbacks(timeout: float = 5.0) -> bool:
    """Waits until every callback queued so far has been delivered.

    Returns True if it was within ``timeout`` seconds (at once on the dispatcher thread itself).
    """
    pyhcs_mutex_lock(&_q_mu)
    target = _q_enqueued
    pyhcs_mutex_unlock(&_q_mu)
    # The shared dispatcher compares its delivered count with `enqueued`, which the C
    # trampolines cannot update themselves (they never hold the GIL).
    if target > _dispatcher.enqueued:
        _dispatcher.enqueued = target
    return _dispatcher.flush(timeout)

# ----------------------------------------------------------------------------- waits

cdef enum _WaitKind:
    _WAIT_OPERATION = 0
    _WAIT_OPERATION_PROCESS_INFO = 1
    _WAIT_SYSTEM_EXIT = 2
    _WAIT_PROCESS_EXIT = 3


cdef inline bint _is_timeout(HRESULT hr) noexcept nogil:
    """A wait's "not yet": both forms of HCS_E_OPERATION_TIMEOUT, and the Win32 timeouts
    HcsWaitFor*Exit may report instead."""
    cdef uint32_t u = <uint32_t>hr
    return (u == _HCS_E_OPERATION_TIMEOUT or u == _HCS_E_OPERATION_TIMEOUT_LEGACY
            or u == _E_WAIT_TIMEOUT or u == _E_ERROR_TIMEOUT)


cdef inline const void* _wait_fn(int kind) noexcept nogil:
    if kind == _WAIT_OPERATION:
        return <const void*>T.HcsWaitForOperationResult
    if kind == _WAIT_OPERATION_PROCESS_INFO:
        return <const void*>T.HcsWaitForOperationResultAndProcessInfo
    if kind == _WAIT_SYSTEM_EXIT:
        return <const void*>T.HcsWaitForComputeSystemExit
    return <const void*>T.HcsWaitForProcessExit


cdef inline HRESULT _wait_once(int kind, void* h, DWORD ms, HCS_PROCESS_INFORMATION* pi,
                               PWSTR* doc) noexcept nogil:
    if kind == _WAIT_OPERATION:
        return T.HcsWaitForOperationResult(<HCS_OPERATION>h, ms, doc)
    if kind == _WAIT_OPERATION_PROCESS_INFO:
        return T.HcsWaitForOperationResultAndProcessInfo(<HCS_OPERATION>h, ms, pi, doc)
    if kind == _WAIT_SYSTEM_EXIT:
        return T.HcsWaitForComputeSystemExit(<HCS_SYSTEM>h, ms, doc)
    return T.HcsWaitForProcessExit(<HCS_PROCESS>h, ms, doc)


cdef inline bint _operation_pending(void* h) noexcept nogil:
    """Whether the operation is still running (HcsGetOperationResult says "pending")."""
    cdef PWSTR doc = NULL
    cdef HRESULT hr
    if T.HcsGetOperationResult == NULL:
        return True
    hr = T.HcsGetOperationResult(<HCS_OPERATION>h, &doc)
    if doc != NULL:
        T.LocalFree(<HLOCAL>doc)
    return _is_pending(<uint32_t>hr)


cdef object _wait(int kind, object handle, object timeout_ms, HCS_PROCESS_INFORMATION* pi, str call):
    """Waits like the C function named ``call``, in slices of _WAIT_SLICE_MS with the GIL
    released, running signal handlers between slices; returns the result document."""
    cdef void* h
    cdef PWSTR doc = NULL
    cdef HRESULT hr
    cdef DWORD total, slice_ms
    cdef int64_t deadline = 0, left_ns
    cdef bint forever
    cdef int overflow = 0
    cdef long long requested
    h = _ptr(handle)
    if not isinstance(timeout_ms, int):
        raise TypeError(f"timeout_ms must be an int number of milliseconds, not {type(timeout_ms).__name__}")
    requested = PyLong_AsLongLongAndOverflow(timeout_ms, &overflow)
    if overflow or requested < 0 or requested > <long long>_INFINITE:
        raise ValueError("timeout_ms must be between 0 and INFINITE (0xFFFFFFFF)")
    total = <DWORD>requested
    _need(_wait_fn(kind), call)
    forever = total == _INFINITE
    # First a poll (timeout 0). For an operation it is answered by the operation object itself
    # and cannot block, and in a busy program most waits find the operation complete already,
    # so it keeps the GIL: the common case costs no GIL release (a thread handoff when other
    # Python threads are running) and no clock reading. An exit wait asks the service, which
    # can block even for a timeout of 0: without the GIL.
    if kind <= _WAIT_OPERATION_PROCESS_INFO:
        hr = _wait_once(kind, h, 0, pi, &doc)
    else:
        with nogil:
            hr = _wait_once(kind, h, 0, pi, &doc)
    if not forever and _is_timeout(hr):
        deadline = pyhcs_monotonic_ns() + <int64_t>total * 1000000
    while _is_timeout(hr):
        if kind <= _WAIT_OPERATION_PROCESS_INFO and not _operation_pending(h):
            # Complete after all: either it finished just now, or its own result is a timeout
            # code. One more poll returns the final result (a loop here would never end).
            if doc != NULL:
                T.LocalFree(<HLOCAL>doc)
                doc = NULL
            hr = _wait_once(kind, h, 0, pi, &doc)
            break
        if forever:
            slice_ms = _WAIT_SLICE_MS
        else:
            left_ns = deadline - pyhcs_monotonic_ns()
            if left_ns <= 0:
                break  # the caller's timeout is spent: report the library's timeout
            slice_ms = <DWORD>min(<int64_t>_WAIT_SLICE_MS, (left_ns + 999999) // 1000000)
        if doc != NULL:
            T.LocalFree(<HLOCAL>doc)
            doc = NULL
        # Between slices, with the GIL: KeyboardInterrupt (or any handler's exception) ends
        # the wait here; the operation itself is untouched. On a helper thread of
        # pyhcs._native._blocking, a wait its caller gave up ends here too.
        PyErr_CheckSignals()
        if _abandoned():
            raise _blocking.Abandoned(call)
        with nogil:
            hr = _wait_once(kind, h, slice_ms, pi, &doc)
    text = _take_doc(doc)
    _check(hr, call, text)
    return text

# ----------------------------------------------------------------------------- operations
#
# GIL policy: calls that only read or write an operation's fields under the library's own
# short lock (context, type, id, result polls) keep the GIL; everything that can wait for
# another thread, run the service's work or do I/O (initiating calls, waits, close, cancel,
# callback registration) runs `with nogil`, its inputs copied first.


def hcs_create_operation(context: int = 0, callback: OperationCallback | None = None) -> int:
    """HcsCreateOperation. ``callback(operation, context)`` runs on pyhcs' dispatcher thread."""
    cdef HCS_OPERATION op
    cdef void* ctx = _ptr(context)
    _callable(callback)
    _need(<const void*>T.HcsCreateOperation, "HcsCreateOperation")
    if callback is None:
        op = T.HcsCreateOperation(ctx, NULL)
        if op == NULL:
            raise _make_error(_E_OUTOFMEMORY, call="HcsCreateOperation")
        return <uintptr_t>op
    # The key goes to C; the user's context stays in the registry. The key must be known
    # before C can call back, so the operation is created without a callback first.
    op = T.HcsCreateOperation(NULL, NULL)
    if op == NULL:
        raise _make_error(_E_OUTOFMEMORY, call="HcsCreateOperation")
    handle = <uintptr_t>op
    try:
        hcs_set_operation_callback(handle, context, callback)
    except BaseException:
        # The caller never sees this handle, so nobody else could close it.
        with nogil:
            T.HcsCloseOperation(op)
        raise
    return handle


def hcs_close_operation(operation: int) -> None:
    """HcsCloseOperation. Its completion callback, if any, is not delivered afterwards."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    _need(<const void*>T.HcsCloseOperation, "HcsCloseOperation")
    with nogil:
        T.HcsCloseOperation(op)
    if operation in _op_registered:
        _op_registered.discard(operation)
        _dispatcher.forget(operation, KIND_OPERATION)


def hcs_get_operation_context(operation: int) -> int:
    """HcsGetOperationContext (the context given with a Python callback, if any)."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    entry = _dispatcher.entry(operation, KIND_OPERATION) if operation in _op_registered else None
    if entry is not None:
        return entry.context
    _need(<const void*>T.HcsGetOperationContext, "HcsGetOperationContext")
    return <uintptr_t>T.HcsGetOperationContext(op)


def hcs_set_operation_context(operation: int, context: int) -> None:
    """HcsSetOperationContext."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef void* ctx = _ptr(context)
    entry = _dispatcher.entry(operation, KIND_OPERATION) if operation in _op_registered else None
    if entry is not None:
        entry.context = context
        return
    _need(<const void*>T.HcsSetOperationContext, "HcsSetOperationContext")
    _check(T.HcsSetOperationContext(op, ctx), "HcsSetOperationContext")


def hcs_set_operation_callback(operation: int, context: int, callback: OperationCallback | None) -> None:
    """HcsSetOperationCallback. ``callback(operation, context)`` runs on the dispatcher thread;
    ``None`` removes it."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef void* ctx = _ptr(context)
    cdef HRESULT hr
    _callable(callback)
    _need(<const void*>T.HcsSetOperationCallback, "HcsSetOperationCallback")
    if callback is None:
        with nogil:
            hr = T.HcsSetOperationCallback(op, ctx, NULL)
        _check(hr, "HcsSetOperationCallback")
        _op_registered.discard(operation)
        _dispatcher.forget(operation, KIND_OPERATION)
        return
    old = _dispatcher.entry(operation, KIND_OPERATION)
    key = _dispatcher.register(operation, KIND_OPERATION, callback, context)
    _op_registered.add(operation)
    ctx = <void*><uintptr_t>key
    with nogil:
        hr = T.HcsSetOperationCallback(op, ctx, _on_operation)
    if hr < 0:
        _dispatcher.forget(operation, KIND_OPERATION)
        if old is not None:  # put the previous registration back
            _dispatcher.register(operation, KIND_OPERATION, old.callback, old.context)
        else:
            _op_registered.discard(operation)
        _check(hr, "HcsSetOperationCallback")


def hcs_get_compute_system_from_operation(operation: int) -> int:
    """HcsGetComputeSystemFromOperation (0 when none)."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    _need(<const void*>T.HcsGetComputeSystemFromOperation, "HcsGetComputeSystemFromOperation")
    return <uintptr_t>T.HcsGetComputeSystemFromOperation(op)


def hcs_get_process_from_operation(operation: int) -> int:
    """HcsGetProcessFromOperation (0 when none)."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    _need(<const void*>T.HcsGetProcessFromOperation, "HcsGetProcessFromOperation")
    return <uintptr_t>T.HcsGetProcessFromOperation(op)


def hcs_get_operation_type(operation: int) -> int:
    """HcsGetOperationType (an OperationType value)."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    _need(<const void*>T.HcsGetOperationType, "HcsGetOperationType")
    return <int>T.HcsGetOperationType(op)


def hcs_get_operation_id(operation: int) -> int:
    """HcsGetOperationId (HCS_INVALID_OPERATION_ID before the operation is used)."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    _need(<const void*>T.HcsGetOperationId, "HcsGetOperationId")
    return T.HcsGetOperationId(op)


def hcs_get_operation_result(operation: int) -> str | None:
    """HcsGetOperationResult: the result document; raises HcsError for a failed (or still
    pending) operation."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef PWSTR doc = NULL
    cdef HRESULT hr
    _need(<const void*>T.HcsGetOperationResult, "HcsGetOperationResult")
    hr = T.HcsGetOperationResult(op, &doc)
    text = _take_doc(doc)
    _check(hr, "HcsGetOperationResult", text)
    return text


def hcs_get_operation_result_and_process_info(operation: int) -> tuple[HcsProcessInformation, str | None]:
    """HcsGetOperationResultAndProcessInfo: (process information, result document)."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef PWSTR doc = NULL
    cdef HCS_PROCESS_INFORMATION pi
    cdef HRESULT hr
    _need(<const void*>T.HcsGetOperationResultAndProcessInfo, "HcsGetOperationResultAndProcessInfo")
    pi.ProcessId = pi.Reserved = 0
    pi.StdInput = pi.StdOutput = pi.StdError = NULL
    hr = T.HcsGetOperationResultAndProcessInfo(op, &pi, &doc)
    text = _take_doc(doc)
    _check(hr, "HcsGetOperationResultAndProcessInfo", text)
    return _process_info(&pi), text


def hcs_wait_for_operation_result(operation: int, timeout_ms: int = INFINITE) -> str | None:
    """HcsWaitForOperationResult, without the GIL, in slices so that Ctrl-C is seen."""
    return _wait(_WAIT_OPERATION, operation, timeout_ms, NULL, "HcsWaitForOperationResult")


def hcs_wait_for_operation_result_and_process_info(
    operation: int, timeout_ms: int = INFINITE
) -> tuple[HcsProcessInformation, str | None]:
    """HcsWaitForOperationResultAndProcessInfo: (process information, result document)."""
    cdef HCS_PROCESS_INFORMATION pi
    pi.ProcessId = pi.Reserved = 0
    pi.StdInput = pi.StdOutput = pi.StdError = NULL
    text = _wait(_WAIT_OPERATION_PROCESS_INFO, operation, timeout_ms, &pi, "HcsWaitForOperationResultAndProcessInfo")
    return _process_info(&pi), text


def hcs_cancel_operation(operation: int) -> None:
    """HcsCancelOperation."""
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef HRESULT hr
    _need(<const void*>T.HcsCancelOperation, "HcsCancelOperation")
    with nogil:
        hr = T.HcsCancelOperation(op)
    _check(hr, "HcsCancelOperation")


# ----------------------------------------------------------------------------- compute systems

ctypedef HRESULT (*_SystemCall)(HCS_SYSTEM, HCS_OPERATION, PCWSTR) noexcept nogil
ctypedef HRESULT (*_ProcessCall)(HCS_PROCESS, HCS_OPERATION, PCWSTR) noexcept nogil


cdef int _system_call(_SystemCall fn, str call, object compute_system, object operation, object document) except -1:
    """The shape of HcsStart/ShutDown/Terminate/Crash/Pause/Resume/Save/GetProperties."""
    cdef HCS_SYSTEM s = <HCS_SYSTEM>_ptr(compute_system)
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef WCHAR* w
    cdef HRESULT hr
    w = _w(document)
    if fn == NULL:
        free(w)
        _need(<const void*>fn, call)
    with nogil:
        hr = fn(s, op, w)
        free(w)
    return _check_initiated(hr, call)


cdef int _process_call(_ProcessCall fn, str call, object process, object operation, object document) except -1:
    """The shape of HcsTerminate/Signal/GetProperties/ModifyProcess."""
    cdef HCS_PROCESS p = <HCS_PROCESS>_ptr(process)
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef WCHAR* w
    cdef HRESULT hr
    w = _w(document)
    if fn == NULL:
        free(w)
        _need(<const void*>fn, call)
    with nogil:
        hr = fn(p, op, w)
        free(w)
    return _check_initiated(hr, call)


def hcs_enumerate_compute_systems(query: str | None, operation: int) -> None:
    """HcsEnumerateComputeSystems (the list is the operation's result)."""
    cdef HCS_OPERATION op
    cdef WCHAR* w = _w(query)
    cdef HRESULT hr
    try:
        op = <HCS_OPERATION>_ptr(operation)
        _need(<const void*>T.HcsEnumerateComputeSystems, "HcsEnumerateComputeSystems")
    except BaseException:
        free(w)
        raise
    with nogil:
        hr = T.HcsEnumerateComputeSystems(w, op)
        free(w)
    _check_initiated(hr, "HcsEnumerateComputeSystems")


def hcs_create_compute_system(id: str, configuration: str, operation: int, security_descriptor: None = None) -> int:
    """HcsCreateComputeSystem. The handle comes back at once, even though creation completes
    through ``operation``; if that later fails the handle must still be closed."""
    cdef HCS_OPERATION op
    cdef HCS_SYSTEM out = NULL
    cdef _WArgs a
    cdef HRESULT hr
    _wargs_init(&a)
    try:
        a.p[0] = _w(id)
        a.p[1] = _w(configuration)
        op = <HCS_OPERATION>_ptr(operation)
        _reserved(security_descriptor)
        _need(<const void*>T.HcsCreateComputeSystem, "HcsCreateComputeSystem")
        with nogil:
            hr = T.HcsCreateComputeSystem(a.p[0], a.p[1], op, NULL, &out)
    finally:
        _wargs_free(&a)
    _check_initiated(hr, "HcsCreateComputeSystem")
    return <uintptr_t>out


def hcs_open_compute_system(id: str, requested_access: int = GENERIC_ALL) -> int:
    """HcsOpenComputeSystem."""
    cdef DWORD access
    cdef HCS_SYSTEM out = NULL
    cdef WCHAR* w = _w(id)
    cdef HRESULT hr
    try:
        access = _dword(requested_access, "requested_access")
        _need(<const void*>T.HcsOpenComputeSystem, "HcsOpenComputeSystem")
    except BaseException:
        free(w)
        raise
    with nogil:
        hr = T.HcsOpenComputeSystem(w, access, &out)
        free(w)
    _check(hr, "HcsOpenComputeSystem")
    return <uintptr_t>out


def hcs_close_compute_system(compute_system: int) -> None:
    """HcsCloseComputeSystem. Waits (without the GIL) for native callbacks in flight; after it
    returns no event of this handle is delivered."""
    cdef HCS_SYSTEM s = <HCS_SYSTEM>_ptr(compute_system)
    _need(<const void*>T.HcsCloseComputeSystem, "HcsCloseComputeSystem")
    with nogil:
        T.HcsCloseComputeSystem(s)
    _dispatcher.forget(compute_system, KIND_EVENT)


def hcs_start_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    """HcsStartComputeSystem."""
    _system_call(T.HcsStartComputeSystem, "HcsStartComputeSystem", compute_system, operation, options)


def hcs_shut_down_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    """HcsShutDownComputeSystem."""
    _system_call(T.HcsShutDownComputeSystem, "HcsShutDownComputeSystem", compute_system, operation, options)


def hcs_terminate_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    """HcsTerminateComputeSystem."""
    _system_call(T.HcsTerminateComputeSystem, "HcsTerminateComputeSystem", compute_system, operation, options)


def hcs_crash_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    """HcsCrashComputeSystem."""
    _system_call(T.HcsCrashComputeSystem, "HcsCrashComputeSystem", compute_system, operation, options)


def hcs_pause_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    """HcsPauseComputeSystem."""
    _system_call(T.HcsPauseComputeSystem, "HcsPauseComputeSystem", compute_system, operation, options)


def hcs_resume_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    """HcsResumeComputeSystem."""
    _system_call(T.HcsResumeComputeSystem, "HcsResumeComputeSystem", compute_system, operation, options)


def hcs_save_compute_system(compute_system: int, operation: int, options: str | None = None) -> None:
    """HcsSaveComputeSystem."""
    _system_call(T.HcsSaveComputeSystem, "HcsSaveComputeSystem", compute_system, operation, options)


def hcs_get_compute_system_properties(compute_system: int, operation: int, property_query: str | None = None) -> None:
    """HcsGetComputeSystemProperties (the properties are the operation's result)."""
    _system_call(
        T.HcsGetComputeSystemProperties, "HcsGetComputeSystemProperties", compute_system, operation, property_query
    )


def hcs_modify_compute_system(compute_system: int, operation: int, configuration: str, identity: int = 0) -> None:
    """HcsModifyComputeSystem."""
    cdef HCS_SYSTEM s = <HCS_SYSTEM>_ptr(compute_system)
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef HANDLE ident
    cdef WCHAR* w = _w(configuration)
    cdef HRESULT hr
    try:
        ident = _ptr(identity)
        _need(<const void*>T.HcsModifyComputeSystem, "HcsModifyComputeSystem")
    except BaseException:
        free(w)
        raise
    with nogil:
        hr = T.HcsModifyComputeSystem(s, op, w, ident)
        free(w)
    _check_initiated(hr, "HcsModifyComputeSystem")


cdef inline HRESULT _set_callback_raw(bint process, void* h, HCS_EVENT_OPTIONS options, void* ctx,
                                      HCS_EVENT_CALLBACK cb) noexcept nogil:
    if process:
        return T.HcsSetProcessCallback(<HCS_PROCESS>h, options, ctx, cb)
    return T.HcsSetComputeSystemCallback(<HCS_SYSTEM>h, options, ctx, cb)


cdef int _set_event_callback(bint process, str call, object handle, object callback_options, object context,
                             object callback) except -1:
    cdef void* h = _ptr(handle)
    cdef HCS_EVENT_OPTIONS options = <HCS_EVENT_OPTIONS>_dword(callback_options, "callback_options")
    cdef void* ctx = _ptr(context)
    cdef HRESULT hr
    _callable(callback)
    _need(<const void*>T.HcsSetProcessCallback if process else <const void*>T.HcsSetComputeSystemCallback, call)
    if callback is None:
        # Unregistering waits for callbacks in flight: without the GIL.
        with nogil:
            hr = _set_callback_raw(process, h, options, NULL, NULL)
        _check(hr, call)
        # What the library delivered before the callback was cleared reaches it first, as a
        # native callback already invoked runs to completion (bounded: a callback that waits
        # for this thread cannot hold it for longer than the flush's timeout).
        flush_callbacks()
        _dispatcher.forget(handle, KIND_EVENT)
        return 0
    if _dispatcher.entry(handle, KIND_EVENT) is not None:
        # One registration per handle: let the library say so, without touching ours.
        with nogil:
            hr = _set_callback_raw(process, h, options, NULL, _on_event)
        _check(hr, call)
    key = _dispatcher.register(handle, KIND_EVENT, callback, context)
    ctx = <void*><uintptr_t>key
    with nogil:
        hr = _set_callback_raw(process, h, options, ctx, _on_event)
    if hr < 0:
        _dispatcher.forget(handle, KIND_EVENT)
        _check(hr, call)
    return 0


def hcs_set_compute_system_callback(
    compute_system: int, callback_options: int, context: int, callback: EventCallback | None
) -> None:
    """HcsSetComputeSystemCallback. ``callback(event, context)`` runs on the dispatcher thread;
    ``None`` unregisters."""
    _set_event_callback(False, "HcsSetComputeSystemCallback", compute_system, callback_options, context, callback)


def hcs_wait_for_compute_system_exit(compute_system: int, timeout_ms: int = INFINITE) -> str | None:
    """HcsWaitForComputeSystemExit, without the GIL, in slices so that Ctrl-C is seen."""
    return _wait(_WAIT_SYSTEM_EXIT, compute_system, timeout_ms, NULL, "HcsWaitForComputeSystemExit")


# ----------------------------------------------------------------------------- processes


def hcs_create_process(compute_system: int, process_parameters: str, operation: int, security_descriptor: None = None) -> int:
    """HcsCreateProcess. The process information (std handles) is the operation's result."""
    cdef HCS_SYSTEM s = <HCS_SYSTEM>_ptr(compute_system)
    cdef HCS_OPERATION op
    cdef HCS_PROCESS out = NULL
    cdef WCHAR* w = _w(process_parameters)
    cdef HRESULT hr
    try:
        op = <HCS_OPERATION>_ptr(operation)
        _reserved(security_descriptor)
        _need(<const void*>T.HcsCreateProcess, "HcsCreateProcess")
    except BaseException:
        free(w)
        raise
    with nogil:
        hr = T.HcsCreateProcess(s, w, op, NULL, &out)
        free(w)
    _check_initiated(hr, "HcsCreateProcess")
    return <uintptr_t>out


def hcs_open_process(compute_system: int, process_id: int, requested_access: int = GENERIC_ALL) -> int:
    """HcsOpenProcess."""
    cdef HCS_SYSTEM s = <HCS_SYSTEM>_ptr(compute_system)
    cdef DWORD pid = _dword(process_id, "process_id")
    cdef DWORD access = _dword(requested_access, "requested_access")
    cdef HCS_PROCESS out = NULL
    cdef HRESULT hr
    _need(<const void*>T.HcsOpenProcess, "HcsOpenProcess")
    with nogil:
        hr = T.HcsOpenProcess(s, pid, access, &out)
    _check(hr, "HcsOpenProcess")
    return <uintptr_t>out


def hcs_close_process(process: int) -> None:
    """HcsCloseProcess. Waits (without the GIL) for native callbacks in flight."""
    cdef HCS_PROCESS p = <HCS_PROCESS>_ptr(process)
    _need(<const void*>T.HcsCloseProcess, "HcsCloseProcess")
    with nogil:
        T.HcsCloseProcess(p)
    _dispatcher.forget(process, KIND_EVENT)


def hcs_terminate_process(process: int, operation: int, options: str | None = None) -> None:
    """HcsTerminateProcess."""
    _process_call(T.HcsTerminateProcess, "HcsTerminateProcess", process, operation, options)


def hcs_signal_process(process: int, operation: int, options: str | None = None) -> None:
    """HcsSignalProcess."""
    _process_call(T.HcsSignalProcess, "HcsSignalProcess", process, operation, options)


def hcs_get_process_info(process: int, operation: int) -> None:
    """HcsGetProcessInfo (the information is the operation's result)."""
    cdef HCS_PROCESS p = <HCS_PROCESS>_ptr(process)
    cdef HCS_OPERATION op = <HCS_OPERATION>_ptr(operation)
    cdef HRESULT hr
    _need(<const void*>T.HcsGetProcessInfo, "HcsGetProcessInfo")
    with nogil:
        hr = T.HcsGetProcessInfo(p, op)
    _check_initiated(hr, "HcsGetProcessInfo")


def hcs_get_process_properties(process: int, operation: int, property_query: str | None = None) -> None:
    """HcsGetProcessProperties (the properties are the operation's result)."""
    _process_call(T.HcsGetProcessProperties, "HcsGetProcessProperties", process, operation, property_query)


def hcs_modify_process(process: int, operation: int, settings: str) -> None:
    """HcsModifyProcess."""
    _process_call(T.HcsModifyProcess, "HcsModifyProcess", process, operation, settings)


def hcs_set_process_callback(process: int, callback_options: int, context: int, callback: EventCallback | None) -> None:
    """HcsSetProcessCallback. ``callback(event, context)`` runs on the dispatcher thread;
    ``None`` unregisters."""
    _set_event_callback(True, "HcsSetProcessCallback", process, callback_options, context, callback)


def hcs_wait_for_process_exit(process: int, timeout_ms: int = INFINITE) -> str | None:
    """HcsWaitForProcessExit, without the GIL, in slices so that Ctrl-C is seen."""
    return _wait(_WAIT_PROCESS_EXIT, process, timeout_ms, NULL, "HcsWaitForProcessExit")


def close_handle(handle: int) -> None:
    """Closes a std handle from HCS_PROCESS_INFORMATION (a file descriptor on the emulator)."""
    cdef HANDLE h
    cdef int ok
    cdef unsigned long code = 0
    if T.CloseHandle != NULL:
        h = _ptr(handle)
        with nogil:
            ok = T.CloseHandle(h)
            if not ok:
                code = pyhcs_last_error()
        if not ok:
            raise _make_error(errors.HRESULT_FROM_WIN32(code), call="CloseHandle")
        return
    os.close(handle)


# ----------------------------------------------------------------------------- fused round trips
#
# Private (not in PUBLIC_API; the raw level stays one C function per Python function): the
# Pythonic layer's common round trip, create operation + initiating call + wait + close, in one
# call, so that it costs one interpreted call and two GIL releases instead of four calls.
# pyhcs._native.ctypes has the same entry; pyhcs.operation.run uses either.

#: The initiating calls _run_call knows, by index (pyhcs.operation.FUSED lists the same names).
_FUSED_CALLS = (
    "HcsStartComputeSystem", "HcsShutDownComputeSystem", "HcsTerminateComputeSystem",
    "HcsCrashComputeSystem", "HcsPauseComputeSystem", "HcsResumeComputeSystem",
    "HcsSaveComputeSystem", "HcsGetComputeSystemProperties",
    "HcsTerminateProcess", "HcsSignalProcess", "HcsGetProcessProperties", "HcsModifyProcess",
)


cdef inline const void* _fused_fn(int index) noexcept nogil:
    if index == 0:
        return <const void*>T.HcsStartComputeSystem
    if index == 1:
        return <const void*>T.HcsShutDownComputeSystem
    if index == 2:
        return <const void*>T.HcsTerminateComputeSystem
    if index == 3:
        return <const void*>T.HcsCrashComputeSystem
    if index == 4:
        return <const void*>T.HcsPauseComputeSystem
    if index == 5:
        return <const void*>T.HcsResumeComputeSystem
    if index == 6:
        return <const void*>T.HcsSaveComputeSystem
    if index == 7:
        return <const void*>T.HcsGetComputeSystemProperties
    if index == 8:
        return <const void*>T.HcsTerminateProcess
    if index == 9:
        return <const void*>T.HcsSignalProcess
    if index == 10:
        return <const void*>T.HcsGetProcessProperties
    return <const void*>T.HcsModifyProcess


def _run_call(int index, subject: int, document: str | None, wait_ms: int) -> tuple[int, str | None]:
    """Creates an operation, makes the initiating call ``_FUSED_CALLS[index]`` on ``subject``
    (a system or process handle) with ``document``, waits up to ``wait_ms`` (one slice at
    most: the caller's own checks, such as a close of the subject, run between slices) and,
    if the call succeeded, closes the operation and returns ``(0, document)``.

    Any other outcome after a successful initiation (still running, or failed) returns
    ``(operation, None)`` with the operation open, for the caller to adopt and finish the
    ordinary way (its error, its timeout, its ``err.operation``). A failed initiation closes
    the operation and raises; so does an exception from a signal handler during the wait.
    """
    cdef void* h = _ptr(subject)
    cdef const void* fn
    cdef HCS_OPERATION op
    cdef WCHAR* w
    cdef PWSTR doc = NULL
    cdef HRESULT hr
    cdef DWORD ms = _dword(wait_ms, "wait_ms")
    if index < 0 or index >= 12:
        raise ValueError(f"no fused call {index}")
    if ms > _WAIT_SLICE_MS:
        ms = _WAIT_SLICE_MS
    fn = _fused_fn(index)
    name = _FUSED_CALLS[index]
    _need(fn, name)
    _need(<const void*>T.HcsCreateOperation, "HcsCreateOperation")
    _need(<const void*>T.HcsWaitForOperationResult, "HcsWaitForOperationResult")
    w = _w(document)
    op = T.HcsCreateOperation(NULL, NULL)
    if op == NULL:
        free(w)
        raise _make_error(_E_OUTOFMEMORY, call="HcsCreateOperation")
    with nogil:
        if index < 8:
            hr = (<_SystemCall>fn)(<HCS_SYSTEM>h, op, w)
        else:
            hr = (<_ProcessCall>fn)(<HCS_PROCESS>h, op, w)
        free(w)
        if hr < 0 and not _is_pending(<uint32_t>hr):
            T.HcsCloseOperation(op)
    if hr < 0 and not _is_pending(<uint32_t>hr):
        raise _make_error(hr, None, call=name)
    # A poll keeps the GIL (it cannot block: see _wait); only a real wait releases it.
    hr = T.HcsWaitForOperationResult(op, 0, &doc)
    if _is_timeout(hr) and ms:
        if doc != NULL:
            T.LocalFree(<HLOCAL>doc)
            doc = NULL
        with nogil:
            hr = T.HcsWaitForOperationResult(op, ms, &doc)
        try:
            PyErr_CheckSignals()  # KeyboardInterrupt here, while the operation is still ours
        except BaseException:
            if doc != NULL:
                T.LocalFree(<HLOCAL>doc)
            with nogil:
                T.HcsCloseOperation(op)
            raise
    if hr < 0:
        if doc != NULL:
            T.LocalFree(<HLOCAL>doc)
        return <uintptr_t>op, None
    try:
        text = _take_doc(doc)
    finally:
        with nogil:
            T.HcsCloseOperation(op)
    return 0, text


# ----------------------------------------------------------------------------- host service


def hcs_get_service_properties(property_query: str | None = None) -> str:
    """HcsGetServiceProperties."""
    cdef PWSTR doc = NULL
    cdef WCHAR* w
    cdef HRESULT hr
    _need(<const void*>T.HcsGetServiceProperties, "HcsGetServiceProperties")
    w = _w(property_query)
    with nogil:
        hr = T.HcsGetServiceProperties(w, &doc)
        free(w)
    text = _take_doc(doc)
    _check(hr, "HcsGetServiceProperties", text)
    return text or ""


def hcs_modify_service_settings(settings: str) -> str | None:
    """HcsModifyServiceSettings."""
    cdef PWSTR doc = NULL
    cdef WCHAR* w
    cdef HRESULT hr
    _need(<const void*>T.HcsModifyServiceSettings, "HcsModifyServiceSettings")
    w = _w(settings)
    with nogil:
        hr = T.HcsModifyServiceSettings(w, &doc)
        free(w)
    text = _take_doc(doc)
    _check(hr, "HcsModifyServiceSettings", text)
    return text


ctypedef HRESULT (*_OneString)(PCWSTR) noexcept nogil
ctypedef HRESULT (*_TwoStrings)(PCWSTR, PCWSTR) noexcept nogil
ctypedef HRESULT (*_ThreeStrings)(PCWSTR, PCWSTR, PCWSTR) noexcept nogil
ctypedef HRESULT (*_FourStrings)(PCWSTR, PCWSTR, PCWSTR, PCWSTR) noexcept nogil


cdef int _strings_call(const void* fn, int n, str call, object s0, object s1=None, object s2=None,
                       object s3=None) except -1:
    """Calls an HRESULT function of n PCWSTR arguments without the GIL; raises on failure."""
    cdef _WArgs a
    cdef HRESULT hr
    _wargs_init(&a)
    try:
        a.p[0] = _w(s0)
        if n > 1:
            a.p[1] = _w(s1)
        if n > 2:
            a.p[2] = _w(s2)
        if n > 3:
            a.p[3] = _w(s3)
        _need(fn, call)
        with nogil:
            if n == 1:
                hr = (<_OneString>fn)(a.p[0])
            elif n == 2:
                hr = (<_TwoStrings>fn)(a.p[0], a.p[1])
            elif n == 3:
                hr = (<_ThreeStrings>fn)(a.p[0], a.p[1], a.p[2])
            else:
                hr = (<_FourStrings>fn)(a.p[0], a.p[1], a.p[2], a.p[3])
    finally:
        _wargs_free(&a)
    return _check(hr, call)


def hcs_submit_wer_report(settings: str) -> None:
    """HcsSubmitWerReport."""
    _strings_call(<const void*>T.HcsSubmitWerReport, 1, "HcsSubmitWerReport", settings)


# ----------------------------------------------------------------------------- VM utilities


def hcs_create_empty_guest_state_file(guest_state_file_path: str) -> None:
    """HcsCreateEmptyGuestStateFile."""
    _strings_call(<const void*>T.HcsCreateEmptyGuestStateFile, 1, "HcsCreateEmptyGuestStateFile", guest_state_file_path)


def hcs_create_empty_runtime_state_file(runtime_state_file_path: str) -> None:
    """HcsCreateEmptyRuntimeStateFile."""
    _strings_call(
        <const void*>T.HcsCreateEmptyRuntimeStateFile, 1, "HcsCreateEmptyRuntimeStateFile", runtime_state_file_path
    )


def hcs_grant_vm_access(vm_id: str, file_path: str) -> None:
    """HcsGrantVmAccess."""
    _strings_call(<const void*>T.HcsGrantVmAccess, 2, "HcsGrantVmAccess", vm_id, file_path)


def hcs_revoke_vm_access(vm_id: str, file_path: str) -> None:
    """HcsRevokeVmAccess."""
    _strings_call(<const void*>T.HcsRevokeVmAccess, 2, "HcsRevokeVmAccess", vm_id, file_path)


def hcs_grant_vm_group_access(file_path: str) -> None:
    """HcsGrantVmGroupAccess."""
    _strings_call(<const void*>T.HcsGrantVmGroupAccess, 1, "HcsGrantVmGroupAccess", file_path)


def hcs_revoke_vm_group_access(file_path: str) -> None:
    """HcsRevokeVmGroupAccess."""
    _strings_call(<const void*>T.HcsRevokeVmGroupAccess, 1, "HcsRevokeVmGroupAccess", file_path)


def hcs_get_processor_compatibility_from_saved_state(runtime_file_name: str) -> str:
    """HcsGetProcessorCompatibilityFromSavedState: the processor features document."""
    cdef PCWSTR doc = NULL
    cdef WCHAR* w
    cdef HRESULT hr
    _need(
        <const void*>T.HcsGetProcessorCompatibilityFromSavedState, "HcsGetProcessorCompatibilityFromSavedState"
    )
    w = _w(runtime_file_name)
    with nogil:
        hr = T.HcsGetProcessorCompatibilityFromSavedState(w, &doc)
        free(w)
    text = _take_doc(doc)
    _check(hr, "HcsGetProcessorCompatibilityFromSavedState", text)
    return text or ""


# ----------------------------------------------------------------------------- storage


def hcs_import_layer(layer_path: str, source_folder_path: str, layer_data: str) -> None:
    """HcsImportLayer."""
    _strings_call(<const void*>T.HcsImportLayer, 3, "HcsImportLayer", layer_path, source_folder_path, layer_data)


def hcs_export_layer(layer_path: str, export_folder_path: str, layer_data: str, options: str | None = None) -> None:
    """HcsExportLayer."""
    _strings_call(
        <const void*>T.HcsExportLayer, 4, "HcsExportLayer", layer_path, export_folder_path, layer_data, options
    )


def hcs_export_legacy_writable_layer(
    writable_layer_mount_path: str, writable_layer_folder_path: str, export_folder_path: str, layer_data: str
) -> None:
    """HcsExportLegacyWritableLayer."""
    _strings_call(
        <const void*>T.HcsExportLegacyWritableLayer, 4, "HcsExportLegacyWritableLayer",
        writable_layer_mount_path, writable_layer_folder_path, export_folder_path, layer_data,
    )


def hcs_destroy_layer(layer_path: str) -> None:
    """HcsDestroyLayer."""
    _strings_call(<const void*>T.HcsDestroyLayer, 1, "HcsDestroyLayer", layer_path)


def hcs_setup_base_os_layer(layer_path: str, vhd_handle: int, options: str | None = None) -> None:
    """HcsSetupBaseOSLayer."""
    cdef HANDLE vhd
    cdef _WArgs a
    cdef HRESULT hr
    _wargs_init(&a)
    try:
        a.p[0] = _w(layer_path)
        vhd = _ptr(vhd_handle)
        a.p[1] = _w(options)
        _need(<const void*>T.HcsSetupBaseOSLayer, "HcsSetupBaseOSLayer")
        with nogil:
            hr = T.HcsSetupBaseOSLayer(a.p[0], vhd, a.p[1])
    finally:
        _wargs_free(&a)
    _check(hr, "HcsSetupBaseOSLayer")


def hcs_setup_base_os_volume(layer_path: str, volume_path: str, options: str | None = None) -> None:
    """HcsSetupBaseOSVolume."""
    _strings_call(<const void*>T.HcsSetupBaseOSVolume, 3, "HcsSetupBaseOSVolume", layer_path, volume_path, options)


def hcs_initialize_writable_layer(writable_layer_path: str, layer_data: str, options: str | None = None) -> None:
    """HcsInitializeWritableLayer."""
    _strings_call(
        <const void*>T.HcsInitializeWritableLayer, 3, "HcsInitializeWritableLayer",
        writable_layer_path, layer_data, options,
    )


def hcs_initialize_legacy_writable_layer(
    writable_layer_mount_path: str, writable_layer_folder_path: str, layer_data: str, options: str | None = None
) -> None:
    """HcsInitializeLegacyWritableLayer."""
    _strings_call(
        <const void*>T.HcsInitializeLegacyWritableLayer, 4, "HcsInitializeLegacyWritableLayer",
        writable_layer_mount_path, writable_layer_folder_path, layer_data, options,
    )


def hcs_attach_layer_storage_filter(layer_path: str, layer_data: str) -> None:
    """HcsAttachLayerStorageFilter."""
    _strings_call(<const void*>T.HcsAttachLayerStorageFilter, 2, "HcsAttachLayerStorageFilter", layer_path, layer_data)


def hcs_detach_layer_storage_filter(layer_path: str) -> None:
    """HcsDetachLayerStorageFilter."""
    _strings_call(<const void*>T.HcsDetachLayerStorageFilter, 1, "HcsDetachLayerStorageFilter", layer_path)


def hcs_format_writable_layer_vhd(vhd_handle: int) -> None:
    """HcsFormatWritableLayerVhd."""
    cdef HANDLE vhd = _ptr(vhd_handle)
    cdef HRESULT hr
    _need(<const void*>T.HcsFormatWritableLayerVhd, "HcsFormatWritableLayerVhd")
    with nogil:
        hr = T.HcsFormatWritableLayerVhd(vhd)
    _check(hr, "HcsFormatWritableLayerVhd")


def hcs_get_layer_vhd_mount_path(vhd_handle: int) -> str:
    """HcsGetLayerVhdMountPath."""
    cdef HANDLE vhd = _ptr(vhd_handle)
    cdef PWSTR doc = NULL
    cdef HRESULT hr
    _need(<const void*>T.HcsGetLayerVhdMountPath, "HcsGetLayerVhdMountPath")
    with nogil:
        hr = T.HcsGetLayerVhdMountPath(vhd, &doc)
    text = _take_doc(doc)
    _check(hr, "HcsGetLayerVhdMountPath", text)
    return text or ""


# ----------------------------------------------------------------------------- about the library


def library_path() -> str:
    """The computecore library this backend loaded."""
    return _core_path


def has_function(name: str) -> bool:
    """Whether the loaded library exports ``name`` (e.g. "HcsSetupBaseOSVolume")."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, not {type(name).__name__}")
    return name in _present


# Ctrl-C must be able to interrupt the synchronous calls on the main thread (pyhcs._native._blocking).
_blocking.wrap_synchronous(globals())

from pyhcs._native._api_names import PUBLIC_API

__all__ = list(PUBLIC_API)
