/*
 * The emulated VHD images: format, volume GUID, mount path.
 */
#define _GNU_SOURCE
#include "storage_int.h"

/* ------------------------------------------------------------------ VHDs */

#define VHD_MAGIC "HCSEMUVD"
#define VHD_HEADER 512u
#define VHD_FSTAG "EMUFS1\0\0"

static uint32_t crc32_ieee(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put_le32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static HRESULT vhd_check_fd(int fd, bool for_write) {
    if (fd == -1) return storage_fail(E_HANDLE, "NULL VHD handle");
    if (fd < 0) return storage_fail(E_HANDLE, "the VHD handle is not a file descriptor");
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return storage_fail(E_HANDLE, "VHD handle %d is not an open file descriptor", fd);
    struct stat st;
    if (fstat(fd, &st) != 0) return storage_fail(E_HANDLE, "VHD handle %d: %s", fd, strerror(errno));
    if (!S_ISREG(st.st_mode)) return storage_fail(E_INVALIDARG, "VHD handle %d is not a regular file (disk image)", fd);
    if (for_write && (fl & O_ACCMODE) == O_RDONLY)
        return storage_fail(E_ACCESSDENIED, "VHD handle %d is open read-only", fd);
    if (!for_write && (fl & O_ACCMODE) == O_WRONLY)
        return storage_fail(E_ACCESSDENIED, "VHD handle %d is open write-only", fd);
    return S_OK;
}

/* Reads the volume GUID of a formatted image; *formatted false if it is not one of ours. */
static HRESULT vhd_read_guid(int fd, bool *formatted, char guid[39]) {
    unsigned char h[VHD_HEADER];
    *formatted = false;
    ssize_t n = pread(fd, h, sizeof h, 0);
    if (n < 0) return fail_errno(errno, "read VHD header", "");
    if (n < (ssize_t)sizeof h || memcmp(h, VHD_MAGIC, 8) != 0 || get_le32(h + 8) != 1 ||
        get_le32(h + 12) != VHD_HEADER || memcmp(h + 32, VHD_FSTAG, 8) != 0 ||
        get_le32(h + 508) != crc32_ieee(h, 508))
        return S_OK;
    const unsigned char *g = h + 16;
    snprintf(guid, 39, "{%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x}", g[0], g[1], g[2], g[3],
             g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13], g[14], g[15]);
    *formatted = true;
    return S_OK;
}

static char *volume_dir_for(const char *guid) {
    char *vols = runtime_sub("volumes");
    if (!vols) return NULL;
    char *p = emu_printf("%s/Volume%s", vols, guid);
    free(vols);
    return p;
}

HRESULT vhd_volume_dir(int fd, char **dir) {
    *dir = NULL;
    HRESULT hr = vhd_check_fd(fd, false);
    if (hr != S_OK) return hr;
    bool formatted;
    char guid[39];
    if ((hr = vhd_read_guid(fd, &formatted, guid)) != S_OK) return hr;
    if (!formatted)
        return storage_fail(HRESULT_FROM_WIN32(ERROR_UNRECOGNIZED_VOLUME),
                    "the VHD has no recognised volume (format it with HcsFormatWritableLayerVhd)");
    char *p = volume_dir_for(guid);
    if (!p) return storage_fail(E_FAIL, "no runtime directory for VHD volumes");
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        free(p);
        return fail_errno(e, "create volume directory", "");
    }
    *dir = p;
    return S_OK;
}

/* Whether fd may be formatted: only a disk image, i.e. a file named *.vhd or *.vhdx that is
 * blank (empty, or a first sector of zeros as a freshly created disk has) or already holds
 * the emulator's volume header. Any other
 * writable descriptor (stdout redirected to a file, a log, a database) is refused, so a wrong
 * handle value can never overwrite someone's data. */
static HRESULT vhd_check_image(int fd, bool *formatted, char guid[39]) {
    *formatted = false;
    char link[64], name[PATH_MAX + 1];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, name, sizeof name - 1);
    if (n < 0) return fail_errno(errno, "name of VHD handle", "");
    name[n] = 0;
    size_t l = (size_t)n;
    bool image = (l > 4 && strcasecmp(name + l - 4, ".vhd") == 0) || (l > 5 && strcasecmp(name + l - 5, ".vhdx") == 0);
    struct stat st;
    if (fstat(fd, &st) != 0) return fail_errno(errno, "stat VHD", "");
    HRESULT hr = (fcntl(fd, F_GETFL) & O_ACCMODE) == O_WRONLY ? S_OK : vhd_read_guid(fd, formatted, guid);
    if (hr != S_OK) return hr;
    bool blank = st.st_size == 0;
    if (!blank && !*formatted && (fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY) {
        unsigned char first[VHD_HEADER];
        ssize_t got = pread(fd, first, sizeof first, 0);
        blank = got > 0;
        for (ssize_t i = 0; blank && i < got; i++) blank = first[i] == 0;
    }
    if (!image || (!blank && !*formatted))
        return storage_fail(E_INVALIDARG, "VHD handle %d (%s) is not a disk image: only a blank .vhd/.vhdx file or one "
                    "this emulator formatted can be formatted", fd, name);
    return S_OK;
}

HRESULT svc_storage_format_vhd(int fd) {
    HRESULT hr = vhd_check_fd(fd, true);
    if (hr != S_OK) return hr;
    bool formatted = false;
    char old[39];
    if ((hr = vhd_check_image(fd, &formatted, old)) != S_OK) return hr;
    if (formatted) {
        char *p = volume_dir_for(old);
        if (p) {
            int r = rm_tree_path(p);
            if (r) emu_log("storage: could not erase the old volume %s: %s", p, strerror(-r));
        }
        free(p);
    }
    unsigned char h[VHD_HEADER] = {0};
    memcpy(h, VHD_MAGIC, 8);
    put_le32(h + 8, 1);
    put_le32(h + 12, VHD_HEADER);
    unsigned char *g = h + 16;
    size_t got = 0;
    while (got < 16) {
        ssize_t r = getrandom(g + got, 16 - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return fail_errno(errno, "getrandom", "");
        got += (size_t)r;
    }
    g[6] = (unsigned char)((g[6] & 0x0F) | 0x40);
    g[8] = (unsigned char)((g[8] & 0x3F) | 0x80);
    memcpy(h + 32, VHD_FSTAG, 8);
    uint64_t now = (uint64_t)time(NULL);
    for (int i = 0; i < 8; i++) h[40 + i] = (unsigned char)(now >> (8 * i));
    memcpy(h + 48, "hcsemu-layer-volume", strlen("hcsemu-layer-volume"));
    put_le32(h + 508, crc32_ieee(h, 508));
    for (size_t off = 0; off < sizeof h;) {
        ssize_t w = pwrite(fd, h + off, sizeof h - off, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return fail_errno(errno, "write VHD header", "");
        off += (size_t)w;
    }
    if (fsync(fd) != 0 && errno != EINVAL) return fail_errno(errno, "fsync VHD", "");
    emu_log("storage: formatted VHD fd %d", fd);
    return S_OK;
}

HRESULT svc_storage_vhd_mount_path(int fd, char **mount_path) {
    *mount_path = NULL;
    char *dir = NULL;
    HRESULT hr = vhd_volume_dir(fd, &dir);
    if (hr != S_OK) return hr;
    *mount_path = emu_printf("%s/", dir);
    free(dir);
    return *mount_path ? S_OK : E_OUTOFMEMORY;
}
