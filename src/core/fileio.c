/* Whole-file reads, read-only mappings and atomic (temp + fsync + rename) writes. */
#include "caramba/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

cb_status cb_read_file(const char *path, size_t max_bytes, char **out, size_t *size) {
    *out = NULL;
    if (size) *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return cb_fail(CB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return cb_fail(CB_ERR_IO, "%s: not a regular file", path);
    }
    if ((size_t)sb.st_size > max_bytes) {
        fclose(f);
        return cb_fail(CB_ERR_FORMAT, "%s: file is %lld bytes, more than the %zu allowed", path,
                       (long long)sb.st_size, max_bytes);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return cb_fail(CB_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        free(buf);
        return cb_fail(CB_ERR_IO, "%s: short read", path);
    }
    buf[n] = 0;
    *out = buf;
    if (size) *size = n;
    return CB_OK;
}

cb_status cb_map_file(const char *path, void **map, size_t *size) {
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cb_fail(CB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cb_fail(CB_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return CB_OK;
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return cb_fail(CB_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    *map = p;
    *size = (size_t)sb.st_size;
    return CB_OK;
}

void cb_unmap_file(void *map, size_t size) {
    if (map && size) munmap(map, size);
}

cb_status cb_atomic_open(cb_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 48;
    af->path = strdup(path);
    af->tmp_path = malloc(n);
    if (!af->path || !af->tmp_path) {
        cb_atomic_abort(af);
        return cb_fail(CB_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        cb_status st = cb_fail(CB_ERR_IO, "%s: cannot create: %s", af->tmp_path, strerror(errno));
        free(af->path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return st;
    }
    return CB_OK;
}

static void fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

cb_status cb_atomic_commit(cb_atomic_file *af) {
    cb_status st = CB_OK;
    if (fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0)
        st = cb_fail(CB_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && st == CB_OK)
        st = cb_fail(CB_ERR_IO, "%s: close failed: %s", af->path, strerror(errno));
    af->f = NULL;
    if (st == CB_OK && rename(af->tmp_path, af->path) != 0)
        st = cb_fail(CB_ERR_IO, "%s: rename failed: %s", af->path, strerror(errno));
    if (st != CB_OK) unlink(af->tmp_path);
    else fsync_dir_of(af->path);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
    return st;
}

void cb_atomic_abort(cb_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

cb_status cb_write_file_atomic(const char *path, const void *data, size_t n) {
    cb_atomic_file af;
    CB_TRY(cb_atomic_open(&af, path));
    if (n && fwrite(data, 1, n, af.f) != n) {
        cb_status st = cb_fail(CB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        cb_atomic_abort(&af);
        return st;
    }
    return cb_atomic_commit(&af);
}

cb_status cb_mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return cb_fail(CB_ERR_ARG, "bad directory path '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == 0) {
            char c = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return cb_fail(CB_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    if (!cb_is_dir(path)) return cb_fail(CB_ERR_IO, "%s: exists and is not a directory", path);
    return CB_OK;
}

int cb_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

int cb_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}
