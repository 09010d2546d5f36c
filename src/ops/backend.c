/* Chooses the kernel table for a device. */
#include "caramba/device.h"
#include "ops/cuda_api.h"
#include "ops/kernels.h"

const cb_kernels *cb_kernels_for(cb_device dev) {
    if (dev == CB_CPU) return cb_cpu_kernels();
    const cb_cuda_api *cu = cb_cuda_api_get();
    return cu ? cu->kernels() : NULL;
}
