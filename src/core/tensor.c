/* Tensor descriptors, owned allocations, copies with dtype conversion. */
#include "caramba/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/device.h"

int64_t cb_tensor_numel(const cb_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

int64_t cb_tensor_rows(const cb_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i + 1 < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t cb_tensor_nbytes(const cb_tensor *t) {
    return cb_dtype_bytes(t->dtype, cb_tensor_numel(t));
}

bool cb_tensor_same_shape(const cb_tensor *a, const cb_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

char *cb_dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, n - off, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}

char *cb_shape_str(const cb_tensor *t, char *buf, size_t n) {
    return cb_dims_str(t->ndim, t->shape, buf, n);
}

cb_status cb_tensor_init(cb_tensor *t, cb_dtype dt, cb_device dev, int ndim, const int64_t *shape,
                         void *data) {
    if (ndim < 0 || ndim > CB_MAX_DIMS)
        return cb_fail(CB_ERR_ARG, "tensor rank %d outside 0..%d", ndim, CB_MAX_DIMS);
    if ((unsigned)dt >= CB_DTYPE_COUNT) return cb_fail(CB_ERR_ARG, "bad dtype %d", (int)dt);
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->device = dev;
    t->ndim = ndim;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return cb_fail(CB_ERR_ARG, "negative dimension %lld", (long long)shape[i]);
        t->shape[i] = shape[i];
        if (shape[i] && numel > INT64_MAX / 16 / shape[i])
            return cb_fail(CB_ERR_NOMEM, "tensor size overflows");
        numel *= shape[i];
    }
    for (int i = ndim; i < CB_MAX_DIMS; i++) t->shape[i] = 1;
    t->data = data;
    return CB_OK;
}

cb_status cb_tensor_new(cb_tensor **out, cb_dtype dt, cb_device dev, int ndim,
                        const int64_t *shape) {
    *out = NULL;
    cb_tensor *t = calloc(1, sizeof *t);
    if (!t) return cb_fail(CB_ERR_NOMEM, "cannot allocate tensor descriptor");
    cb_status st = cb_tensor_init(t, dt, dev, ndim, shape, NULL);
    if (st != CB_OK) {
        free(t);
        return st;
    }
    size_t bytes = cb_tensor_nbytes(t);
    t->data = cb_device_alloc(dev, bytes);
    if (!t->data) {
        free(t);
        return CB_ERR_NOMEM;
    }
    st = cb_device_memset0(dev, t->data, bytes);
    if (st != CB_OK) {
        cb_device_free(dev, t->data);
        free(t);
        return st;
    }
    t->flags = CB_TENSOR_OWNS_DATA;
    *out = t;
    return CB_OK;
}

cb_status cb_tensor_enable_grad(cb_tensor *t) {
    if (!t->grad) CB_TRY(cb_tensor_new(&t->grad, CB_F32, t->device, t->ndim, t->shape));
    t->flags |= CB_TENSOR_REQUIRES_GRAD;
    return CB_OK;
}

void cb_tensor_free(cb_tensor *t) {
    if (!t) return;
    if (t->grad) cb_tensor_free(t->grad);
    if (t->lowp) cb_tensor_free(t->lowp);
    if (t->flags & CB_TENSOR_OWNS_DATA) cb_device_free(t->device, t->data);
    free(t);
}

cb_status cb_tensor_zero(cb_tensor *t) {
    return cb_device_memset0(t->device, t->data, cb_tensor_nbytes(t));
}

static double load_element(const void *p, cb_dtype dt, int64_t i) {
    switch (dt) {
    case CB_F32: return ((const float *)p)[i];
    case CB_BF16: return cb_bf16_to_f32(((const uint16_t *)p)[i]);
    case CB_F16: return cb_f16_to_f32(((const uint16_t *)p)[i]);
    case CB_I32: return ((const int32_t *)p)[i];
    case CB_I64: return (double)((const int64_t *)p)[i];
    case CB_U16: return ((const uint16_t *)p)[i];
    case CB_U32: return ((const uint32_t *)p)[i];
    case CB_U8: return ((const uint8_t *)p)[i];
    default: return 0;
    }
}

static void store_element(void *p, cb_dtype dt, int64_t i, double v) {
    switch (dt) {
    case CB_F32: ((float *)p)[i] = (float)v; break;
    case CB_BF16: ((uint16_t *)p)[i] = cb_f32_to_bf16((float)v); break;
    case CB_F16: ((uint16_t *)p)[i] = cb_f32_to_f16((float)v); break;
    case CB_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case CB_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case CB_U16: ((uint16_t *)p)[i] = (uint16_t)v; break;
    case CB_U32: ((uint32_t *)p)[i] = (uint32_t)v; break;
    case CB_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    default: break;
    }
}

static cb_status copy_host(void *dst, cb_dtype ddt, const void *src, cb_dtype sdt, int64_t n) {
    if (ddt == sdt) {
        memcpy(dst, src, cb_dtype_bytes(ddt, n));
        return CB_OK;
    }
    if (cb_dtype_block(ddt) != 1 || cb_dtype_block(sdt) != 1)
        return cb_fail(CB_ERR_UNSUPPORTED, "copy %s -> %s: use the quantization routines",
                       cb_dtype_name(sdt), cb_dtype_name(ddt));
    if (ddt == CB_F32 && sdt == CB_F16) cb_convert_f16_to_f32(src, dst, n);
    else if (ddt == CB_F32 && sdt == CB_BF16) cb_convert_bf16_to_f32(src, dst, n);
    else if (ddt == CB_F16 && sdt == CB_F32) cb_convert_f32_to_f16(src, dst, n);
    else if (ddt == CB_BF16 && sdt == CB_F32) cb_convert_f32_to_bf16(src, dst, n);
    else if (ddt == CB_I64 && sdt == CB_I32)
        for (int64_t i = 0; i < n; i++) ((int64_t *)dst)[i] = ((const int32_t *)src)[i];
    else
        for (int64_t i = 0; i < n; i++) store_element(dst, ddt, i, load_element(src, sdt, i));
    return CB_OK;
}

cb_status cb_tensor_copy(cb_tensor *dst, const cb_tensor *src) {
    int64_t n = cb_tensor_numel(src);
    if (cb_tensor_numel(dst) != n) {
        char a[64], b[64];
        return cb_fail(CB_ERR_SHAPE, "copy: destination %s and source %s differ in size",
                       cb_shape_str(dst, a, sizeof a), cb_shape_str(src, b, sizeof b));
    }
    if (dst->device == CB_CPU && src->device == CB_CPU)
        return copy_host(dst->data, dst->dtype, src->data, src->dtype, n);
    if (dst->dtype == src->dtype)
        return cb_device_copy(dst->device, dst->data, src->device, src->data,
                              cb_tensor_nbytes(src));
    /* cross-device with conversion: stage through the host */
    size_t sb = cb_tensor_nbytes(src), db = cb_tensor_nbytes(dst);
    void *hs = malloc(sb ? sb : 1), *hd = malloc(db ? db : 1);
    cb_status st = (!hs || !hd) ? cb_fail(CB_ERR_NOMEM, "copy staging") : CB_OK;
    if (st == CB_OK) st = cb_device_copy(CB_CPU, hs, src->device, src->data, sb);
    if (st == CB_OK) st = copy_host(hd, dst->dtype, hs, src->dtype, n);
    if (st == CB_OK) st = cb_device_copy(dst->device, dst->data, CB_CPU, hd, db);
    free(hs);
    free(hd);
    return st;
}
