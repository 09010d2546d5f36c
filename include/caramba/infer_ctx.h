/* Inference context: the one channel through which caches and positions reach attention layers.
 * Attention layers take caches in execution order (which equals construction order for every
 * topology), so a context built from cb_model's attention count fits any model. */
#ifndef CARAMBA_INFER_CTX_H
#define CARAMBA_INFER_CTX_H

#include <stdint.h>

#include "caramba/kv_cache.h"
#include "caramba/status.h"

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
};

/* Resets the cache cursor before a forward; pos_offset = current cache length. */
void cb_infer_ctx_begin(cb_infer_ctx *ctx, int64_t pos_offset);
/* After a forward: every cache must have been used exactly once. */
cb_status cb_infer_ctx_end(const cb_infer_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
