/* CUDA backend: entry points beyond the cb_kernels table, callable from C.
 *
 * Exists only in builds with CARAMBA_CUDA. The kernel table itself is cb_cuda_kernels()
 * (ops/kernels.h); the memory functions below back cb_device_* (core/device.c). */
#ifndef CARAMBA_CUDA_BACKEND_H
#define CARAMBA_CUDA_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Device memory (cudaMalloc behind a caching allocator; never managed memory). */
void *cb_cuda_alloc(size_t bytes);
void cb_cuda_free(void *p);
cb_status cb_cuda_memset0(void *p, size_t bytes);
/* Synchronous with respect to the host for host<->device copies; stream-ordered otherwise. */
cb_status cb_cuda_copy(int dst_is_dev, void *dst, int src_is_dev, const void *src, size_t bytes);
/* 1 when a CUDA device can be used (prints nothing; the reason is in cb_last_error()). */
int cb_cuda_available(void);
/* Waits for every kernel queued so far. */
cb_status cb_cuda_sync(void);
/* Returns all cached, unused blocks to the driver. */
void cb_cuda_release_cached(void);
/* Bytes held from cudaMalloc now (in use + cached) and in use by callers. */
void cb_cuda_memory_stats(size_t *held, size_t *in_use);
/* "NVIDIA H100 80GB HBM3, 132 SMs, sm_90" or the reason there is none. */
const char *cb_cuda_device_description(void);
/* The backend's stream (a cudaStream_t), for code that launches its own work in order. */
void *cb_cuda_stream(void);

/* AdamW over many tensors in one launch (f32 master weights and moments, grads f32 or 16-bit):
 * the same update as cb_kernels.adamw, applied to params[i] for i < n. */
cb_status cb_cuda_adamw_multi(int n, cb_tensor *const *params, const cb_tensor *const *grads,
                              cb_tensor *const *m, cb_tensor *const *v, float lr, float beta1,
                              float beta2, float eps, float weight_decay, int64_t step,
                              float grad_scale);
/* sum over i of sum(x_i^2), f64 accumulation, one synchronisation for all tensors. */
cb_status cb_cuda_sum_squares_multi(int n, const cb_tensor *const *xs, double *out);

/* The batch-1 decoder (decode.cu); see ops/cuda_api.h. */
struct cb_cuda_dec_cfg;
struct cb_cuda_decoder;
cb_status cb_cuda_dec_new(const struct cb_cuda_dec_cfg *cfg, struct cb_cuda_decoder **out);
void cb_cuda_dec_free(struct cb_cuda_decoder *d);
cb_status cb_cuda_dec_reset(struct cb_cuda_decoder *d, const int32_t *prompt, int64_t n);
cb_status cb_cuda_dec_fill(struct cb_cuda_decoder *d, int64_t n, uint64_t seed);
cb_status cb_cuda_dec_steps(struct cb_cuda_decoder *d, int64_t n);
cb_status cb_cuda_dec_tokens(struct cb_cuda_decoder *d, int64_t from, int64_t n, int32_t *out);
cb_status cb_cuda_dec_logits(struct cb_cuda_decoder *d, float *out);
cb_status cb_cuda_dec_cache_row(struct cb_cuda_decoder *d, int layer, int which, int64_t pos,
                                void *out);
size_t cb_cuda_dec_cache_bytes(const struct cb_cuda_decoder *d, int64_t len);
cb_status cb_cuda_quantize_rows(int dtype, const float *x, int64_t rows, int64_t width, void *out);
cb_status cb_cuda_dec_write_kv(struct cb_cuda_decoder *d, int layer, int64_t pos0, const cb_tensor *k,
                               const cb_tensor *v);
cb_status cb_cuda_dec_start(struct cb_cuda_decoder *d, const int32_t *prompt, int64_t n,
                            const cb_tensor *last_logits);

#ifdef __cplusplus
}
#endif
#endif
