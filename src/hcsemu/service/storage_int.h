/*
 * Internals shared by the storage modules (service/storage*.c); the service's storage
 * interface is storage.h. The formats and the merged-view mechanism are described at the top
 * of storage.c.
 */
#ifndef HCSEMU_STORAGE_INT_H
#define HCSEMU_STORAGE_INT_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "storage.h"

#define ERROR_DIRECTORY 267
#define ERROR_NOT_SAME_DEVICE 17
#define ERROR_TOO_MANY_OPEN_FILES 4
#define ERROR_WRITE_PROTECT 19
#define ERROR_FILENAME_EXCED_RANGE 206

/* FICLONE from <linux/fs.h>, which clashes with <sys/mount.h> on some glibc versions. */
#define HCSEMU_FICLONE _IOW(0x94, 9, int)

/* The new mount API (fsopen & co), by syscall number so that old glibc builds too. */
#define HCSEMU_FSOPEN_CLOEXEC 0x00000001u
#define HCSEMU_FSCONFIG_SET_STRING 1u
#define HCSEMU_FSCONFIG_CMD_CREATE 6u
#define HCSEMU_FSMOUNT_CLOEXEC 0x00000001u
#define HCSEMU_MOVE_MOUNT_F_EMPTY_PATH 0x00000004u

#define OVL_OPAQUE_XATTR "trusted.overlay.opaque"
#define OVL_XATTR_PREFIX "trusted.overlay."
#define META_DIR ".hcsemu"
#define META_FILE "layer.json"
#define VIEW_DIR "Merged"
#define TOMBSTONES "tombstones.txt"
#define TOMB_HEADER "# hcsemu tombstones v1: paths relative to Files/, one per line, %XX-escaped\n"
#define TOMB_MAX_BYTES (64u << 20)
/* The deepest directory nesting the tree walks that copy, compare and convert layers accept
 * (a deeper tree is refused with ERROR_FILENAME_EXCED_RANGE before anything changes). They
 * run on a thread of their own with WALK_STACK bytes of stack, enough for this depth;
 * deletion has no limit (it keeps no per-level stack). */
#define TREE_MAX_DEPTH 4096
#define WALK_STACK ((size_t)64 << 20)

/* The reason for the last failure on this thread (storage_last_error). */
#define T_MSG_SIZE 1024
extern __thread char t_msg[T_MSG_SIZE];

typedef struct strvec {
    char **v;
    size_t n, cap;
} strvec;

/* where a layer-folder entry may appear (check_layout) */
enum { IN_SOURCE = 1, IN_LAYER = 2 };

/* copy_ctx flags */
enum {
    CP_STRICT = 1, /* devices, FIFOs, sockets (whiteouts included) are HCS_E_INVALID_LAYER */
    CP_MERGE = 2,  /* the destination may exist: directories merge, anything else is replaced,
                      a whiteout in the source deletes the destination entry */
};

typedef struct copy_ctx {
    unsigned flags;
    HRESULT hr;   /* first failure */
    size_t depth; /* directories entered (bounded by TREE_MAX_DEPTH) */
} copy_ctx;

typedef struct glock {
    int fd;
} glock;

typedef struct chain_layer {
    char *path;     /* layer folder (real path) */
    int files_fd;   /* its Files */
    strvec tombs;   /* its tombstones (reduced) */
} chain_layer;

typedef struct chain {
    chain_layer *l;
    size_t n;
} chain;

typedef struct outdir {
    struct outdir *parent;
    const char *name;
    int fd;
    int model_fd; /* the merged directory it mirrors */
} outdir;

/* storage_registry.c */
extern pthread_mutex_t g_mu;

/* storage_overlay.c */
extern int g_ovl_errno;
extern char g_ovl_why[256];

/* storage.c */
HRESULT hr_from_errno(int e);
HRESULT fail_errno(int e, const char *what, const char *path);

/* storage_fs.c */
bool sv_push(strvec *s, char *owned);
bool sv_pushdup(strvec *s, const char *str);
void sv_free(strvec *s);
void sv_sort_unique(strvec *s);
bool sv_has_sorted(const strvec *s, const char *x);
bool sv_equal(const strvec *a, const strvec *b);
char *path_join(const char *a, const char *b);
HRESULT norm_abs_path(const char *in, const char *what, char **out);
bool rel_valid(const char *r);
bool path_within(const char *a, const char *b);
HRESULT resolve_dir(const char *norm, const char *what, char **real);
int open_dir_at(int dfd, const char *name);
int open_dir_path(const char *path);
bool is_whiteout(const struct stat *st);
int list_dir(int dfd, strvec *out);
int dir_is_empty(int dfd);
int mount_id_at(int dfd, const char *name, uint64_t *id, dev_t *dev);
int rm_tree_pass(int dfd, const char *name, bool delete, size_t max_depth);
int rm_tree_at(int dfd, const char *name);
int rm_tree_path(const char *path);
int empty_dir(int dfd);
void set_meta_fd(int fd, const struct stat *st);
int read_link_at(int dfd, const char *name, char **out);
HRESULT copy_entry(copy_ctx *c, int sfd, int dfd, const char *name, const char *rel);
HRESULT copy_dir_contents(copy_ctx *c, int sfd, int dfd, const char *rel);
int open_rel_dir(int root, const char *rel, bool create);
char *rel_split(const char *rel, const char **leaf);
int rm_rel(int root, const char *rel);
HRESULT write_file_at(int dfd, const char *name, const char *data, size_t len, mode_t mode);
int read_file_at(int dfd, const char *name, size_t max, char **out, size_t *len);

/* storage_layer.c */
void tomb_reduce(strvec *t);
HRESULT tomb_read(int layer_fd, const char *layer, strvec *t);
HRESULT tomb_write(int layer_fd, const strvec *t);
bool has_suffix(const char *s, const char *suf);
HRESULT check_layout(int fd, const char *path, unsigned where, bool require_files);
HRESULT open_layer(const char *real, int *fd_out);
HRESULT parse_doc(const char *text, const char *what, json **out);
bool is_absent(const json *v);
HRESULT check_optional_bool(const json *obj, const char *key, const char *what, bool *out);
HRESULT parse_layer_data(const char *text, json **doc_out, strvec *paths);
HRESULT resolve_parents(const strvec *paths, const char *self, strvec *real);
json *strvec_to_json(const strvec *s);
bool json_to_strvec(const json *a, strvec *out);
HRESULT meta_read(const char *layer, json **out);
HRESULT meta_write(const char *layer, const json *doc);
bool meta_is_writable(const json *m);
const json *meta_attached(const json *m);
HRESULT meta_read_writable(const char *layer, json **out);

/* storage_registry.c */
char *runtime_sub(const char *sub);
void lock_acquire(glock *l);
void lock_release(glock *l);
HRESULT index_add(const char *layer, const char *mode, const strvec *parents);
void index_remove(const char *layer);
bool index_in_use(const char *target, char **by);

/* storage_overlay.c */
int ovl_mount(const char *target, const strvec *lowers, const char *upper, const char *work);
bool overlay_probe(void);
bool is_mountpoint_at(int pfd, const char *name);
HRESULT ensure_native_marks(int files_fd, const strvec *tombs, const int *below, size_t nbelow);
HRESULT native_to_tombstones(int dfd, const char *rel, strvec *tombs, const int *below, size_t nbelow,
                                    bool *prunable, size_t depth);

/* storage_copy.c */
void chain_free(chain *c);
HRESULT chain_open(const strvec *paths, chain *c);
HRESULT chain_materialise(const chain *c, size_t from, int dst_fd);
HRESULT diff_dir(int mfd, int bfd, outdir *out, const char *rel, strvec *tombs, size_t depth);

/* storage_vhd.c */
HRESULT vhd_volume_dir(int fd, char **dir);

#endif /* HCSEMU_STORAGE_INT_H */
