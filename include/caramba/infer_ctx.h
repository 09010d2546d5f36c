/* Inference context: the one channel through which caches and positions reach attention layers.
 * Attention layers take caches in execution order (which equals construction order for every
 * topology), so a context built from cb_model's attention count fits any model. */
#ifndef CARAMBA_INFER_CTX_H
#define CARAMBA_INFER_CTX_H

#include <stdint.h>

#include "caramba/kv_cache.h"
#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_infer_ctx cb_infer_ctx;

struct cb_infer_ctx {
    cb_layer_cache *caches; /* one per attention layer, model order */
    int n_caches;
    int next;           /* index of the cache the next attention layer takes */
    int64_t pos_offset; /* position of the first token of this call */
    int q_chunk;        /* overrides (0 = use the layer's setting) */
    int local_window;
    /* Caches that live elsewhere (the GPU decoder's batched prefill, caramba/gpu_decode.h): when
     * set and caches is NULL, every attention layer hands its post-RoPE keys and values
     * [B, T, Hkv*hd] to kv_sink (layer = its index in model order, pos0 = pos_offset), then
     * attends over the fresh keys (so it serves a prefill from position 0). */
    cb_status (*kv_sink)(void *user, int layer, const cb_tensor *k, const cb_tensor *v,
                         int64_t pos0);
    void *kv_sink_user;
};

/* Resets the cache cursor before a forward; pos_offset = current cache length. */
void cb_infer_ctx_begin(cb_infer_ctx *ctx, int64_t pos_offset);
/* After a forward: every cache must have been used exactly once. */
cb_status cb_infer_ctx_end(const cb_infer_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
