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

enum { CB_CUDA_API_VERSION = 2 };

/* Batch-1 greedy decoder for the Llama shape (src/ops/cuda/decode.cu): one CUDA graph per step,
 * KV cache in GPU memory (f16, q8_0 or q4_0 rows laid out as caramba/quant.h). All pointers are
 * device pointers; the weights stay owned by the caller and must outlive the decoder. */
typedef struct cb_cuda_dec_layer {
    const float *attn_norm, *mlp_norm; /* [d] f32 */
    const void *wq, *wk, *wv, *wo;     /* bf16 [H*hd, d], [Hkv*hd, d] (x2), [d, H*hd] */
    const void *wg, *wu, *wd;          /* bf16 [F, d] (x2), [d, F] */
} cb_cuda_dec_layer;

typedef struct cb_cuda_dec_cfg {
    int n_layers, d_model, n_heads, n_kv_heads, head_dim, d_ff;
    int64_t vocab;
    float rms_eps;
    int rope_pairs;                   /* P: pairs (i, i+P) rotate in every head */
    const float *rope_cos, *rope_sin; /* [rope_rows, P] f32 */
    int64_t rope_rows;
    int kv_dtype; /* cb_dtype: CB_F16, CB_Q8_0 or CB_Q4_0 */
    int64_t max_len;
    const void *embed; /* [vocab, d] */
    int embed_dtype;   /* cb_dtype of embed (f32, bf16 or f16) */
    const float *final_norm;
    const void *lm_head; /* bf16 [vocab, d] */
    const cb_cuda_dec_layer *layers;
} cb_cuda_dec_cfg;

typedef struct cb_cuda_decoder cb_cuda_decoder;

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
    /* The decoder. reset: prompt ids (host) into the token stream, position 0. fill: pseudo-random
     * cache contents for positions [0, n) and position n (long-context benchmarks). steps: n more
     * steps, asynchronous (step p feeds token p, writes the greedy choice to p + 1 past the
     * prompt). tokens: ids [from, from + n) of the stream (synchronises). logits: the last
     * step's [vocab] f32. cache_row: the stored bytes of one row (which 0: keys, 1: values). */
    cb_status (*dec_new)(const cb_cuda_dec_cfg *cfg, cb_cuda_decoder **out);
    void (*dec_free)(cb_cuda_decoder *d);
    cb_status (*dec_reset)(cb_cuda_decoder *d, const int32_t *prompt, int64_t n);
    cb_status (*dec_fill)(cb_cuda_decoder *d, int64_t n, uint64_t seed);
    cb_status (*dec_steps)(cb_cuda_decoder *d, int64_t n);
    cb_status (*dec_tokens)(cb_cuda_decoder *d, int64_t from, int64_t n, int32_t *out);
    cb_status (*dec_logits)(cb_cuda_decoder *d, float *out);
    cb_status (*dec_cache_row)(cb_cuda_decoder *d, int layer, int which, int64_t pos, void *out);
    size_t (*dec_cache_bytes)(const cb_cuda_decoder *d, int64_t len);
    /* Quantizes rows [rows, width] f32 (device) into the cache row format (device), bit for bit
     * what the CPU quantizers write (for the tests and for device-resident caches). */
    cb_status (*quantize_rows)(int dtype, const float *x, int64_t rows, int64_t width, void *out);
    /* Batched prefill: write_kv stores keys / values [1, T, Hkv*hd] (device, any float dtype) of
     * one layer at positions pos0.. of the cache; start then takes the prompt ids (host) and the
     * last position's logits row (device) and makes the greedy choice the next step feeds. */
    cb_status (*dec_write_kv)(cb_cuda_decoder *d, int layer, int64_t pos0, const cb_tensor *k,
                              const cb_tensor *v);
    cb_status (*dec_start)(cb_cuda_decoder *d, const int32_t *prompt, int64_t n,
                           const cb_tensor *last_logits);
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
