/* The plugin's one exported entry point: the table of the CUDA backend (ops/cuda_api.h). */
#include "ops/cuda/cuda_backend.h"
#include "ops/cuda_api.h"

static const cb_cuda_api api = {
    CB_CUDA_API_VERSION,
    cb_cuda_alloc,
    cb_cuda_free,
    cb_cuda_memset0,
    cb_cuda_copy,
    cb_cuda_available,
    cb_cuda_sync,
    cb_cuda_release_cached,
    cb_cuda_memory_stats,
    cb_cuda_device_description,
    cb_cuda_stream,
    cb_cuda_kernels,
    cb_cuda_adamw_multi,
    cb_cuda_sum_squares_multi,
    cb_cuda_dec_new,
    cb_cuda_dec_free,
    cb_cuda_dec_reset,
    cb_cuda_dec_fill,
    cb_cuda_dec_steps,
    cb_cuda_dec_tokens,
    cb_cuda_dec_logits,
    cb_cuda_dec_cache_row,
    cb_cuda_dec_cache_bytes,
    cb_cuda_quantize_rows,
    cb_cuda_dec_write_kv,
    cb_cuda_dec_start,
};

extern "C" __attribute__((visibility("default"))) const cb_cuda_api *cb_cuda_plugin_api(void) {
    return &api;
}
