/*
 * Container storage: the twelve computestorage.dll functions, really done on Linux.
 *
 * PATH ARGUMENTS
 *   Paths arrive as UTF-16. They must be absolute POSIX paths; backslashes are read as '/'
 *   (so "\\tmp\\layers\\base" is "/tmp/layers/base"), repeated separators, "." components and
 *   a trailing separator are dropped. A ".." component, a relative path or a Windows drive
 *   path ("C:\\...") is refused with E_INVALIDARG. The argument paths themselves are resolved
 *   normally (they are the caller's); everything *inside* a layer is walked with
 *   openat(O_NOFOLLOW)/fstatat(AT_SYMLINK_NOFOLLOW): symlinks are copied as symlinks and never
 *   followed, so nothing outside a layer is ever read, written or deleted through one.
 *
 * DELETION AND TREE WALKS
 *   Trees are deleted without recursion (an explicit stack), never through a symlink, and
 *   never across a mount: mount ids (statx STATX_MNT_ID) tell bind mounts of the same file
 *   system apart. A first pass only looks; if anything inside is a mount point, nothing is
 *   deleted and the call fails with HRESULT_FROM_WIN32(ERROR_BUSY) (destroy, detach). The walks
 *   that copy, compare and convert layers run on a thread of their own with a large stack and
 *   accept at most TREE_MAX_DEPTH (4096) nested directories; a detach checks both limits
 *   before it changes anything, so a refused detach leaves the layer attached and usable.
 *
 * LAYER FOLDERS (the Windows layout)
 *   Files/           the layer's file system (required)
 *   Hives/           registry hives (HcsSetupBaseOSLayer creates placeholder hive files)
 *   layout           a regular file HcsSetupBaseOSLayer writes (JSON of our own)
 *   UtilityVM/       optional UtilityVM/Files for VM base layers
 *   tombstones.txt   deletions this layer makes in its parents (see below); absent if none
 *   blank-base.vhdx, blank.vhdx, sandbox.vhdx, other .vhd/.vhdx files: disk images callers keep here
 *   .hcsemu/         emulator metadata of writable layers (layer.json, overlay work dir)
 *   Merged/          the merged view of an attached writable layer (see MERGED VIEW)
 *   An import source / export folder (the "transport format") holds only Files, Hives, layout,
 *   UtilityVM and tombstones.txt; Files is required. Anything else, a symlink or a wrong type
 *   at the top level, or a device/FIFO/socket anywhere inside, is HCS_E_INVALID_LAYER.
 *   Hard links are copied as separate files; extended attributes are not copied.
 *
 * TOMBSTONES (our export format for deletions)
 *   tombstones.txt is UTF-8 text, one deleted path per line, relative to Files/ with '/'
 *   separators. Lines that are empty or start with '#' are ignored. In each path the bytes
 *   '%', '#', control characters, DEL and bytes that are not part of valid UTF-8 are written
 *   as %XX (hex), so every Linux file name round-trips. "." / ".." / empty components are
 *   refused (HCS_E_INVALID_LAYER). Meaning: a tombstoned path hides whatever the parent layers
 *   have there; if this layer also has that path as a directory, that directory replaces the
 *   parents' one (it is "opaque"). The set is kept sorted and reduced (entries below another
 *   tombstone are dropped), so export -> import -> export is stable.
 *
 * WRITABLE LAYERS
 *   HcsInitializeWritableLayer creates Files/ and .hcsemu/layer.json:
 *     {"Kind":"WritableLayer","LayerData":<as given>,"Parents":[<resolved parent folders,
 *      top-most parent first, base last>],"Attached":{"Mode":"overlay"|"copy","View":<path>}}
 *   ("Attached" only while the storage filter is attached; "LegacyFolder" for legacy layers).
 *   While detached, a writable layer is stored exactly like any layer: changed and new files in
 *   Files/, deletions in tombstones.txt, so it exports like any other layer.
 *   A legacy writable layer (HcsInitializeLegacyWritableLayer) is a writable layer rooted at
 *   the mount path (for instance the folder HcsGetLayerVhdMountPath returned) whose Hives/
 *   live in the separate layer folder; that folder gets .hcsemu/layer.json
 *   {"Kind":"LegacyWritableFolder","MountPath":...}.
 *
 * MERGED VIEW (HcsAttachLayerStorageFilter / HcsDetachLayerStorageFilter)
 *   The view is the directory <writable layer>/Merged; storage_merged_view_path() returns it.
 *   Reads see the writable layer over its parents (top-most first); writes land in the
 *   writable layer; deleting a parent's file hides it (whiteout). Two mechanisms:
 *   - overlay: a real overlayfs mount on Merged, lowerdir = the parents' Files (top-most first),
 *     upperdir = <writable>/Files, workdir = <writable>/.hcsemu/work, with redirect_dir,
 *     index and metacopy off so that the upper layer holds only whole files, whiteouts and
 *     opaque marks. At attach, tombstones are turned into overlayfs whiteouts (0:0 character
 *     devices) and opaque directories (trusted.overlay.opaque=y) in the writable layer; a
 *     parent's tombstones get such marks added too (they mean the same as its tombstones.txt,
 *     which stays authoritative). At detach the mount is removed (ERROR_BUSY while a process
 *     still uses it) and the marks are converted back into tombstones.txt.
 *   - copy: needs no privilege. Attach materialises the merged tree into Merged (parents
 *     applied base first, tombstones applied before each layer's files). Detach materialises
 *     the parents again, compares, and rewrites the writable layer as the difference: new and
 *     changed files (content, type, mode, owner, mtime, link target) in Files/, deleted paths in
 *     tombstones.txt; then removes Merged. A process still inside Merged at detach loses it.
 *   HCSEMU_STORAGE_MODE=overlay|copy|auto (default auto) chooses. auto probes overlayfs once
 *   per process (a throw-away mount in the runtime dir) and uses copy, logging why once, when
 *   overlayfs is unavailable (not root, no overlay in the kernel, ...) or when the real mount
 *   fails; overlay makes such failures errors (HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED) or
 *   E_ACCESSDENIED).
 *
 * REGISTRY (in-use protection)
 *   Besides the per-layer "Attached" record, every attached writable layer has an entry
 *   <runtime>/storage/attached/<hash>.json {"Path","Mode","Parents"} so that every process
 *   using the library (and a future service daemon) sees which layers are in use. Entries
 *   whose layer is gone or no longer attached are pruned when seen. A process mutex plus
 *   flock(<runtime>/storage/lock) serialise attach, detach, destroy, initialise and export.
 *   HcsDestroyLayer fails with HRESULT_FROM_WIN32(ERROR_SHARING_VIOLATION) for an attached
 *   layer or a parent of an attached layer; an attached layer cannot be exported, re-attached
 *   (HCS_E_INVALID_STATE) or used as a parent of another attach (ERROR_SHARING_VIOLATION).
 *   The runtime dir is $HCSEMU_RUNTIME_DIR, else /run/hcsemu (root), $XDG_RUNTIME_DIR/hcsemu,
 *   or /tmp/hcsemu-<uid> (created 0700).
 *
 * VHDS
 *   A VHD HANDLE is a POSIX file descriptor cast to HANDLE (NULL and fd 0 are "no handle").
 *   It must be an open regular file (E_HANDLE for a bad descriptor, E_INVALIDARG for a
 *   non-regular file, E_ACCESSDENIED if format gets a read-only descriptor). Format takes only
 *   a disk image: a file named *.vhd / *.vhdx that is empty or already holds the header below
 *   (E_INVALIDARG otherwise), so a stray descriptor (stdout, a log) is never overwritten.
 *   HcsFormatWritableLayerVhd writes this 512-byte header at offset 0 (little-endian):
 *     0 "HCSEMUVD"  8 u32 version=1  12 u32 header size=512  16 volume GUID (16 bytes, random
 *     per format)  32 "EMUFS1\0\0" (file-system tag)  40 u64 format time (Unix seconds)
 *     48 label "hcsemu-layer-volume" (32 bytes, NUL padded)  80..507 zero
 *     508 u32 CRC-32 (IEEE) of bytes 0..507
 *   and erases the volume the image held before. Every open descriptor of a formatted image
 *   counts as mounted: HcsGetLayerVhdMountPath returns the volume directory
 *   <runtime>/volumes/{GUID}/ (created on demand; stable for the image until it is formatted
 *   again; a trailing '/' like Windows' trailing '\'). An unformatted or damaged image gives
 *   HRESULT_FROM_WIN32(ERROR_UNRECOGNIZED_VOLUME).
 *
 * All functions are synchronous. Failures are logged (HCSEMU_DEBUG=1) with the reason.
 */
#define _GNU_SOURCE
#include "storage_int.h"

/* ------------------------------------------------------------------ errors */

__thread char t_msg[T_MSG_SIZE];

const char *storage_last_error(void) { return t_msg; }

HRESULT storage_fail(HRESULT hr, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_msg, sizeof t_msg, fmt, ap);
    va_end(ap);
    emu_log("storage: %s (0x%08X)", t_msg, (unsigned)hr);
    return hr;
}

HRESULT hr_from_errno(int e) {
    switch (e) {
    case 0: return E_FAIL;
    case ENOENT:
    case ENOTDIR: return HRESULT_FROM_WIN32(ERROR_PATH_NOT_FOUND);
    case EACCES:
    case EPERM: return E_ACCESSDENIED;
    case EEXIST: return HRESULT_FROM_WIN32(ERROR_ALREADY_EXISTS);
    case ENOTEMPTY: return HRESULT_FROM_WIN32(ERROR_DIR_NOT_EMPTY);
    case ENOSPC:
    case EDQUOT: return HRESULT_FROM_WIN32(ERROR_DISK_FULL);
    case ENOMEM: return E_OUTOFMEMORY;
    case EBUSY: return HRESULT_FROM_WIN32(ERROR_BUSY);
    case ELOOP: return HRESULT_FROM_WIN32(ERROR_BAD_PATHNAME);
    case ENAMETOOLONG: return HRESULT_FROM_WIN32(ERROR_FILENAME_EXCED_RANGE);
    case EROFS: return HRESULT_FROM_WIN32(ERROR_WRITE_PROTECT);
    case EBADF: return E_HANDLE;
    case EINVAL: return E_INVALIDARG;
    case EXDEV: return HRESULT_FROM_WIN32(ERROR_NOT_SAME_DEVICE);
    case EMFILE:
    case ENFILE: return HRESULT_FROM_WIN32(ERROR_TOO_MANY_OPEN_FILES);
    case ENODEV:
    case EOPNOTSUPP: return HRESULT_FROM_WIN32(ERROR_NOT_SUPPORTED);
    default: return E_FAIL;
    }
}

HRESULT fail_errno(int e, const char *what, const char *path) {
    return storage_fail(hr_from_errno(e), "%s %s: %s", what, path ? path : "", strerror(e));
}

/* ------------------------------------------------------------------ entry */

/* The calls that walk layer trees run on a thread with WALK_STACK bytes of stack, so their
 * depth (bounded by TREE_MAX_DEPTH) never depends on the caller's stack size. */
typedef struct walk_job {
    storage_call_kind kind;
    const char *a, *b, *c, *d;
    int fd;
    HRESULT hr;
    char msg[sizeof t_msg];
} walk_job;

static void *walk_main(void *p) {
    walk_job *j = p;
    switch (j->kind) {
    case SC_IMPORT: j->hr = svc_storage_import_layer(j->a, j->b, j->c); break;
    case SC_EXPORT: j->hr = svc_storage_export_layer(j->a, j->b, j->c, j->d); break;
    case SC_EXPORT_LEGACY: j->hr = svc_storage_export_legacy_writable_layer(j->a, j->b, j->c, j->d); break;
    case SC_SETUP_OS: j->hr = svc_storage_setup_base_os_layer(j->a, j->fd, j->b); break;
    case SC_SETUP_VOLUME: j->hr = svc_storage_setup_base_os_volume(j->a, j->b, j->c); break;
    case SC_ATTACH: j->hr = svc_storage_attach(j->a, j->b); break;
    case SC_DETACH: j->hr = svc_storage_detach(j->a); break;
    }
    memcpy(j->msg, t_msg, sizeof t_msg);
    return NULL;
}

HRESULT storage_call(storage_call_kind kind, const char *a, const char *b, const char *c, const char *d, int fd) {
    walk_job j = {.kind = kind, .a = a, .b = b, .c = c, .d = d, .fd = fd, .hr = E_FAIL};
    pthread_attr_t attr;
    pthread_t t;
    bool started = pthread_attr_init(&attr) == 0;
    started = started && pthread_attr_setstacksize(&attr, WALK_STACK) == 0 && pthread_create(&t, &attr, walk_main, &j) == 0;
    pthread_attr_destroy(&attr);
    if (!started) return storage_fail(E_OUTOFMEMORY, "no thread for the storage call");
    pthread_join(t, NULL);
    memcpy(t_msg, j.msg, sizeof t_msg);
    return j.hr;
}
