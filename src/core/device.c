/* Device memory dispatch. CUDA memory comes from the CUDA plugin (ops/cuda_api.h), loaded the
 * first time a cuda tensor is needed. */
#include "caramba/device.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ops/cuda_api.h"

void *cb_device_alloc(cb_device dev, size_t bytes) {
    if (bytes == 0) bytes = 64;
    if (dev == CB_CPU) {
        void *p = NULL;
        size_t rounded = (bytes + 63) & ~(size_t)63;
        if (rounded < bytes || posix_memalign(&p, 64, rounded) != 0) {
            cb_fail(CB_ERR_NOMEM, "cannot allocate %zu bytes of host memory", bytes);
            return NULL;
        }
        return p;
    }
    const cb_cuda_api *cu = cb_cuda_api_get();
    return cu ? cu->alloc(bytes) : NULL;
}

void cb_device_free(cb_device dev, void *p) {
    if (!p) return;
    if (dev == CB_CPU) {
        free(p);
        return;
    }
    const cb_cuda_api *cu = cb_cuda_api_get();
    if (cu) cu->free(p);
}

cb_status cb_device_memset0(cb_device dev, void *p, size_t bytes) {
    if (dev == CB_CPU) {
        memset(p, 0, bytes);
        return CB_OK;
    }
    const cb_cuda_api *cu = cb_cuda_api_get();
    return cu ? cu->memset0(p, bytes) : CB_ERR_UNSUPPORTED;
}

cb_status cb_device_copy(cb_device dst_dev, void *dst, cb_device src_dev, const void *src,
                         size_t bytes) {
    if (bytes == 0) return CB_OK;
    if (dst_dev == CB_CPU && src_dev == CB_CPU) {
        memmove(dst, src, bytes);
        return CB_OK;
    }
    const cb_cuda_api *cu = cb_cuda_api_get();
    return cu ? cu->copy(dst_dev == CB_CUDA, dst, src_dev == CB_CUDA, src, bytes) : CB_ERR_UNSUPPORTED;
}

int cb_device_available(cb_device dev) {
    if (dev == CB_CPU) return 1;
    return cb_cuda_api_get() != NULL;
}

const char *cb_device_name(cb_device dev) { return dev == CB_CUDA ? "cuda" : "cpu"; }

cb_status cb_device_parse(const char *name, cb_device *out) {
    if (strcasecmp(name, "cpu") == 0) {
        *out = CB_CPU;
        return CB_OK;
    }
    if (strcasecmp(name, "cuda") == 0 || strncasecmp(name, "cuda:", 5) == 0 ||
        strcasecmp(name, "gpu") == 0) {
        *out = CB_CUDA;
        return CB_OK;
    }
    return cb_fail(CB_ERR_ARG, "unknown device '%s' (expected cpu or cuda)", name);
}
