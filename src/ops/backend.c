/* Chooses the kernel table for a device. */
#include "caramba/device.h"
#include "ops/kernels.h"

const cb_kernels *cb_kernels_for(cb_device dev) {
    if (dev == CB_CPU) return cb_cpu_kernels();
#ifdef CARAMBA_CUDA
    if (!cb_device_available(CB_CUDA)) {
        cb_fail(CB_ERR_DEVICE, "device cuda requested but no CUDA device is present");
        return NULL;
    }
    return cb_cuda_kernels();
#else
    cb_fail(CB_ERR_UNSUPPORTED, "device cuda requested but this build has no CUDA backend");
    return NULL;
#endif
}
