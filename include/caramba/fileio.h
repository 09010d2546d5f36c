/* Small file helpers: whole-file reads with a size cap, atomic writes, read-only mappings. */
#ifndef CARAMBA_FILEIO_H
#define CARAMBA_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a whole file into a NUL-terminated heap buffer; fails beyond max_bytes. */
cb_status cb_read_file(const char *path, size_t max_bytes, char **out, size_t *size);
/* Maps a file read-only. Empty files give map == NULL, size 0. */
cb_status cb_map_file(const char *path, void **map, size_t *size);
void cb_unmap_file(void *map, size_t size);

/* Atomic writer: opens "<path>.tmp.<pid>" in the same directory; commit fsyncs, renames over
 * path and fsyncs the directory; abort removes the temp file. The real path is never half
 * written. */
typedef struct cb_atomic_file {
    FILE *f;
    char *path;
    char *tmp_path;
} cb_atomic_file;

cb_status cb_atomic_open(cb_atomic_file *af, const char *path);
cb_status cb_atomic_commit(cb_atomic_file *af);
void cb_atomic_abort(cb_atomic_file *af);
/* Convenience: write a buffer atomically. */
cb_status cb_write_file_atomic(const char *path, const void *data, size_t n);
/* mkdir -p */
cb_status cb_mkdirs(const char *path);
int cb_file_exists(const char *path);
int cb_is_dir(const char *path);

#ifdef __cplusplus
}
#endif
#endif
