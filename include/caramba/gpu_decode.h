/* Greedy batch-1 decoding of a Llama-shaped model on the GPU, one CUDA graph per step
 * (src/ops/cuda/decode.cu): bf16 weights (the model's AMP copies), f32 activations, the KV cache
 * in GPU memory as fp16, q8_0 or q4_0 rows (the CPU cache's row format, caramba/quant.h), split-K
 * attention over the cache. The token stream and the position live on the device, so the host
 * only launches one graph per token.
 *
 * Supported: the Llama tree (cb_model.llama_names) without biases, causal, no window, head size
 * 32, 64 or 128, 1..8 query heads per kv head (not 5 or 7). Anything else fails with
 * CB_ERR_UNSUPPORTED naming what; cb_generate (src/infer) runs every model on every device. */
#ifndef CARAMBA_GPU_DECODE_H
#define CARAMBA_GPU_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "caramba/kv_cache.h"
#include "caramba/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_gpu_decoder cb_gpu_decoder;

/* m must live on cuda; it gets bf16 weight copies (cb_model_set_compute_dtype) if it has none,
 * and its rope tables are grown to max_len. kv: CB_KV_FP16, CB_KV_Q8_0 or CB_KV_Q4_0. */
cb_status cb_gpu_decoder_new(cb_gpu_decoder **out, cb_model *m, cb_kv_kind kv, int64_t max_len);
void cb_gpu_decoder_free(cb_gpu_decoder *d);
/* Starts a sequence: prompt ids [n] (host), position 0; the steps then consume the prompt one
 * token per step (no batched work: the simplest path, and the reference for prefill). */
cb_status cb_gpu_decoder_reset(cb_gpu_decoder *d, const int32_t *prompt, int64_t n);
/* Starts a sequence with a batched forward of the prompt (bf16, the op graph's kernels: GEMMs and
 * the tensor-core attention) that writes every layer's keys and values into the decoder's cache,
 * then makes the first greedy choice: the next step decodes position n. 1 <= n < max_len. */
cb_status cb_gpu_decoder_prefill(cb_gpu_decoder *d, const int32_t *prompt, int64_t n);
/* Benchmarks of long contexts: pseudo-random cache contents for positions [0, n); the next step
 * decodes position n. */
cb_status cb_gpu_decoder_fill(cb_gpu_decoder *d, int64_t n, uint64_t seed);
/* n more steps (asynchronous): the prompt is consumed one token per step, then each step feeds
 * back the previous greedy choice. After n_prompt + k - 1 steps, k tokens have been generated. */
cb_status cb_gpu_decoder_steps(cb_gpu_decoder *d, int64_t n);
/* Token ids [from, from + n) of the stream (prompt then generated); waits for the steps. */
cb_status cb_gpu_decoder_tokens(cb_gpu_decoder *d, int64_t from, int64_t n, int32_t *out);
/* Logits [vocab] of the last step. */
cb_status cb_gpu_decoder_logits(cb_gpu_decoder *d, float *out);
/* The stored bytes of cache row pos of layer `layer` (which 0: keys, 1: values), in the CPU
 * cache's row order (the kv heads' segments end to end; the GPU keeps each head's rows together).
 */
cb_status cb_gpu_decoder_cache_row(cb_gpu_decoder *d, int layer, int which, int64_t pos, void *out);
/* Bytes one step must read from GPU memory at cache length len: every weight except the
 * embedding table (one row of it), plus the whole K and V cache. */
size_t cb_gpu_decoder_step_bytes(const cb_gpu_decoder *d, int64_t len);
/* Waits for everything queued on the GPU. */
cb_status cb_gpu_sync(void);

#ifdef __cplusplus
}
#endif
#endif
