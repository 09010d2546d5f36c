/* The CUDA backend as a plugin: libcaramba_cuda.so, loaded on first use of device cuda.
 *
 * The core library never links the CUDA runtime or cuBLAS (hundreds of MB that every process
 * would otherwise load at startup); it reaches the GPU only through this table, which the plugin
 * exports as cb_cuda_plugin_api(). Built from src/ops/cuda/ when CMake finds nvcc. */
#ifndef CARAMBA_OPS_CUDA_API_H
#define CARAMBA_OPS_CUDA_API_H

#include <stddef.h>
#include <stdint.h>

#include "caramba/status.h"
#include "caramba/tensor.h"
#include "ops/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CB_CUDA_API_VERSION = 1 };

typedef struct cb_cuda_api {
    int version; /* CB_CUDA_API_VERSION */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    cb_status (*memset0)(void *p, size_t bytes);
    cb_status (*copy)(int dst_is_dev, void *dst, int src_is_dev, const void *src, size_t bytes);
    int (*available)(void);
    cb_status (*sync)(void);
    void (*release_cached)(void);
    void (*memory_stats)(size_t *held, size_t *in_use);
    const char *(*device_description)(void);
    void *(*stream)(void);
    const cb_kernels *(*kernels)(void);
    cb_status (*adamw_multi)(int n, cb_tensor *const *params, const cb_tensor *const *grads,
                             cb_tensor *const *m, cb_tensor *const *v, float lr, float beta1,
                             float beta2, float eps, float weight_decay, int64_t step,
                             float grad_scale);
    cb_status (*sum_squares_multi)(int n, const cb_tensor *const *xs, double *out);
} cb_cuda_api;

/* Exported by the plugin. */
const cb_cuda_api *cb_cuda_plugin_api(void);

/* Core side: loads the plugin once (CARAMBA_CUDA_PLUGIN, else next to libcaramba.so, else the
 * loader's search path). NULL with a message when there is no plugin or no usable GPU. */
const cb_cuda_api *cb_cuda_api_get(void);

#ifdef __cplusplus
}
#endif
#endif
