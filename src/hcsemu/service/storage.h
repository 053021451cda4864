/*
 * Storage half of the service (storage*.c): what computestorage.dll asks vmcompute to do.
 *
 * The exported Hcs*Layer* functions (client/storage_api.c) only convert their UTF-16 arguments
 * and call the svc_storage_* functions below (the tree walks through storage_call), which take
 * UTF-8 paths and UTF-8 JSON text (NULL or "" for an absent optional document) and return an
 * internal HRESULT (not yet passed through emu_public_hr). They run in the caller's process:
 * the paths are the caller's, opened with its permissions.
 *
 * The on-disk formats, the merged-view mechanism and the VHD image format are described in
 * the comment at the top of storage.c.
 */
#ifndef HCSEMU_STORAGE_H
#define HCSEMU_STORAGE_H

#include "control.h"

/* Not in hresults.h: the volume of an unformatted (or damaged) emulated VHD. */
#ifndef ERROR_UNRECOGNIZED_VOLUME
#define ERROR_UNRECOGNIZED_VOLUME 1005
#endif

HRESULT svc_storage_import_layer(const char *layer_path, const char *source_path, const char *layer_data);
HRESULT svc_storage_export_layer(const char *layer_path, const char *export_path, const char *layer_data,
                                 const char *options);
HRESULT svc_storage_export_legacy_writable_layer(const char *mount_path, const char *folder_path,
                                                 const char *export_path, const char *layer_data);
HRESULT svc_storage_destroy_layer(const char *layer_path);
HRESULT svc_storage_setup_base_os_layer(const char *layer_path, int vhd_fd /* -1: none */, const char *options);
HRESULT svc_storage_setup_base_os_volume(const char *layer_path, const char *volume_path, const char *options);
HRESULT svc_storage_initialize_writable_layer(const char *layer_path, const char *layer_data, const char *options);
HRESULT svc_storage_initialize_legacy_writable_layer(const char *mount_path, const char *folder_path,
                                                     const char *layer_data, const char *options);
HRESULT svc_storage_attach(const char *layer_path, const char *layer_data);
HRESULT svc_storage_detach(const char *layer_path);
HRESULT svc_storage_format_vhd(int fd);
/* *mount_path: malloc'd UTF-8 on success. */
HRESULT svc_storage_vhd_mount_path(int fd, char **mount_path);

/*
 * For the compute-system half: the merged view of an attached writable layer (malloc'd
 * absolute path, the caller frees), or NULL if writable_layer_path is not a writable layer
 * whose storage filter is attached. Accepts the same path spellings as the exported
 * functions (POSIX absolute, backslashes read as '/').
 */
char *storage_merged_view_path(const char *writable_layer_path);

/* The storage calls that walk layer trees, run by storage_call on a thread with a stack large
 * enough for the deepest walk (so it never depends on the caller's stack size); the reason for
 * a failure (storage_last_error) is carried back to the calling thread. */
typedef enum {
    SC_IMPORT,         /* a: layer, b: source, c: layer data */
    SC_EXPORT,         /* a: layer, b: export folder, c: layer data, d: options */
    SC_EXPORT_LEGACY,  /* a: mount path, b: folder, c: export folder, d: layer data */
    SC_SETUP_OS,       /* a: layer, fd: the VHD (-1: none), b: options */
    SC_SETUP_VOLUME,   /* a: layer, b: volume, c: options */
    SC_ATTACH,         /* a: layer, b: layer data */
    SC_DETACH          /* a: layer */
} storage_call_kind;
HRESULT storage_call(storage_call_kind kind, const char *a, const char *b, const char *c, const char *d, int fd);

/* Records a failure's reason (storage_last_error) and returns hr. */
HRESULT storage_fail(HRESULT hr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The reason for the last storage failure on this thread (for logs and tests). */
const char *storage_last_error(void);

/* The directory the emulator keeps its cross-process storage state in (malloc'd; created
 * 0700 on demand). HCSEMU_RUNTIME_DIR overrides the default. NULL if none is usable. */
char *storage_runtime_dir(void);

#endif /* HCSEMU_STORAGE_H */
