/* Device memory seam: the CPU uses aligned host memory; the CUDA backend provides its own
 * implementation when built with CARAMBA_CUDA. */
#ifndef CARAMBA_DEVICE_H
#define CARAMBA_DEVICE_H

#include <stddef.h>

#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

void *cb_device_alloc(cb_device dev, size_t bytes);
void cb_device_free(cb_device dev, void *p);
cb_status cb_device_memset0(cb_device dev, void *p, size_t bytes);
/* Copies between any two devices. */
cb_status cb_device_copy(cb_device dst_dev, void *dst, cb_device src_dev, const void *src,
                         size_t bytes);
/* True when the backend was compiled in and a device is present. */
int cb_device_available(cb_device dev);
const char *cb_device_name(cb_device dev);
cb_status cb_device_parse(const char *name, cb_device *out);

#ifdef __cplusplus
}
#endif
#endif
