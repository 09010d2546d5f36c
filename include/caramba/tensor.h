/* Tensors: dtype, device, up to 4 dims, contiguous row-major storage, optional gradient.
 *
 * A tensor either owns its storage (heap/device allocation freed with cb_tensor_free), borrows it
 * (an arena, an mmap'd checkpoint, another tensor's data), or is a pure view. Strides are implied
 * by the shape: every tensor is contiguous. */
#ifndef CARAMBA_TENSOR_H
#define CARAMBA_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/dtype.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CB_MAX_DIMS 4

typedef enum cb_device { CB_CPU = 0, CB_CUDA = 1 } cb_device;

enum cb_tensor_flags {
    CB_TENSOR_OWNS_DATA = 1u << 0,     /* data freed with the tensor */
    CB_TENSOR_REQUIRES_GRAD = 1u << 1, /* ops record onto the tape when this is an input */
    CB_TENSOR_PARAM = 1u << 2,         /* a persistent parameter (its grad is persistent too) */
};

typedef struct cb_tensor {
    cb_dtype dtype;
    cb_device device;
    int ndim;
    int64_t shape[CB_MAX_DIMS];
    void *data;
    struct cb_tensor *grad; /* same shape, f32, or NULL */
    struct cb_tensor *view_of; /* storage (and gradient) alias this tensor's, or NULL */
    unsigned flags;
    /* Mixed precision (AMP): a 16-bit copy of a parameter's values that the ops read instead of
     * the f32 master when the graph computes in that dtype (owned; freed with the tensor; kept
     * current by the optimizer, see cb_model_set_compute_dtype). NULL when there is none. */
    struct cb_tensor *lowp;
} cb_tensor;

int64_t cb_tensor_numel(const cb_tensor *t);
size_t cb_tensor_nbytes(const cb_tensor *t);
/* Size of the last dimension, and the product of all the others. */
static inline int64_t cb_tensor_cols(const cb_tensor *t) { return t->shape[t->ndim - 1]; }
int64_t cb_tensor_rows(const cb_tensor *t);
bool cb_tensor_same_shape(const cb_tensor *a, const cb_tensor *b);
static inline bool cb_tensor_requires_grad(const cb_tensor *t) {
    return t && (t->flags & CB_TENSOR_REQUIRES_GRAD);
}
static inline float *cb_f32(const cb_tensor *t) { return (float *)t->data; }

/* Fills a descriptor (no allocation). Fails on ndim outside 0..4 or negative dims. */
cb_status cb_tensor_init(cb_tensor *t, cb_dtype dt, cb_device dev, int ndim, const int64_t *shape,
                         void *data);
/* Heap (or device) allocation, zero-filled, owned. */
cb_status cb_tensor_new(cb_tensor **out, cb_dtype dt, cb_device dev, int ndim,
                        const int64_t *shape);
/* Allocates t->grad (f32, zeroed, owned) if missing and marks t as requiring grad. */
cb_status cb_tensor_enable_grad(cb_tensor *t);
void cb_tensor_free(cb_tensor *t);
/* Copies src into dst (same shape), converting dtype where needed (float types and ints). */
cb_status cb_tensor_copy(cb_tensor *dst, const cb_tensor *src);
/* Zero-fills the tensor's storage. */
cb_status cb_tensor_zero(cb_tensor *t);

/* Writes "[2, 24, 64]" into buf; returns buf. */
char *cb_shape_str(const cb_tensor *t, char *buf, size_t n);
char *cb_dims_str(int ndim, const int64_t *shape, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
