/* NumPy .npy files (format versions 1.0, 2.0, 3.0): read by mmap (no copy), write atomically.
 * The header is validated: magic, version, header length within the file, a dict with 'descr',
 * 'fortran_order' (must be False) and 'shape', little-endian dtypes only, data size matching the
 * shape. */
#ifndef CARAMBA_NPY_H
#define CARAMBA_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_npy {
    char *path;
    void *map;
    size_t map_size;
    cb_dtype dtype; /* f32, f16, i32, i64, u16, u32, u8 ('<f4','<f2','<i4','<i8','<u2','<u4','|u1') */
    int ndim;       /* up to 4 */
    int64_t shape[CB_MAX_DIMS];
    const void *data; /* into the mapping */
    size_t nbytes;
} cb_npy;

cb_status cb_npy_open(cb_npy **out, const char *path);
cb_status cb_npy_parse(cb_npy **out, const void *buf, size_t size, const char *name_for_errors);
void cb_npy_close(cb_npy *n);
/* A borrowed tensor view of the mapped data (cpu, read-only by convention). */
cb_tensor cb_npy_tensor(const cb_npy *n);
/* Writes t (host or device) as a version 1.0 .npy file, atomically. */
cb_status cb_npy_write(const char *path, const cb_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
