/* KV caches for generation (spec-infer §5.4): one layer cache per attention layer, per-tensor
 * kinds from a policy, an fp16 window for quantized tensors, and the first
 * fp16_prefix_layers layers forced to fp16. The estimate uses the cache's own exact byte
 * function, so the budget filter and the caches agree (and prefix layers are counted). */
#include <stdlib.h>

#include "caramba/generate.h"

typedef struct layer_cfgs {
    bool decoupled;
    int64_t w[3]; /* k (or k_sem), k_geo, v widths */
    cb_kv_tensor_cfg c[3];
} layer_cfgs;

static layer_cfgs layer_cfg(const cb_model *m, int i, const cb_kv_policy *policy,
                            int64_t residual_len, int fp16_prefix_layers) {
    const cb_attention_cfg *a = &m->attn[i]->attn;
    layer_cfgs l = {.decoupled = a->mode == CB_ATTN_DECOUPLED};
    cb_kv_kind fb = CB_KV_FP32;
    cb_kv_kind k = policy ? cb_kv_policy_kind(policy, CB_KV_SLOT_K, fb) : fb;
    cb_kv_kind v = policy ? cb_kv_policy_kind(policy, CB_KV_SLOT_V, fb) : fb;
    cb_kv_kind ks = policy ? cb_kv_policy_kind(policy, CB_KV_SLOT_K_SEM, k) : k;
    cb_kv_kind kg = policy ? cb_kv_policy_kind(policy, CB_KV_SLOT_K_GEO, k) : k;
    if (i < fp16_prefix_layers) k = v = ks = kg = CB_KV_FP16;
    int64_t H = a->n_kv_heads;
    if (l.decoupled) {
        l.w[0] = H * a->sem_head_dim;
        l.w[1] = H * a->geo_head_dim;
        l.c[0].kind = ks;
        l.c[1].kind = kg;
    } else {
        l.w[0] = H * a->head_dim;
        l.c[0].kind = k;
    }
    l.w[2] = H * a->v_head_dim;
    l.c[2].kind = v;
    for (int j = 0; j < 3; j++) l.c[j].residual_len = residual_len;
    return l;
}

cb_status cb_infer_caches_new(const cb_model *m, int64_t batch, int64_t max_len,
                              const cb_kv_policy *policy, int64_t residual_len,
                              int fp16_prefix_layers, cb_infer_ctx *ctx) {
    *ctx = (cb_infer_ctx){0};
    if (policy && policy->is_auto)
        return cb_fail(CB_ERR_ARG, "caches: the 'auto' policy must be resolved first");
    ctx->caches = calloc((size_t)m->n_attn + 1, sizeof *ctx->caches);
    if (!ctx->caches) return cb_fail(CB_ERR_NOMEM, "caches for %d layers", m->n_attn);
    for (int i = 0; i < m->n_attn; i++) {
        layer_cfgs l = layer_cfg(m, i, policy, residual_len, fp16_prefix_layers);
        cb_status st =
            l.decoupled ? cb_layer_cache_init_decoupled(&ctx->caches[i], batch, max_len, l.w[0],
                                                        l.w[1], l.w[2], &l.c[0], &l.c[1], &l.c[2])
                        : cb_layer_cache_init(&ctx->caches[i], batch, max_len, l.w[0], l.w[2],
                                              &l.c[0], &l.c[2]);
        if (st != CB_OK) {
            ctx->n_caches = i;
            cb_model_caches_free(ctx);
            return cb_fail_context(st, "attention layer %d cache", i);
        }
    }
    ctx->n_caches = m->n_attn;
    return CB_OK;
}

size_t cb_infer_caches_estimate(const cb_model *m, int64_t batch, int64_t max_len,
                                const cb_kv_policy *policy, int64_t residual_len,
                                int fp16_prefix_layers) {
    size_t total = 0;
    for (int i = 0; i < m->n_attn; i++) {
        layer_cfgs l = layer_cfg(m, i, policy, residual_len, fp16_prefix_layers);
        for (int j = 0; j < 3; j++) {
            if (j == 1 && !l.decoupled) continue;
            total += cb_kv_tensor_bytes(&l.c[j], batch, max_len, l.w[j], max_len);
        }
    }
    return total;
}

static cb_seq_cache *tensors(cb_layer_cache *lc, cb_seq_cache **t) {
    t[0] = &lc->k;
    t[1] = lc->decoupled ? &lc->k_geo : NULL;
    t[2] = &lc->v;
    return t[0];
}

cb_status cb_infer_caches_truncate(cb_infer_ctx *ctx, int64_t len) {
    for (int i = 0; i < ctx->n_caches; i++)
        if (cb_layer_cache_len(&ctx->caches[i]) > len)
            CB_TRY(cb_layer_cache_truncate(&ctx->caches[i], len));
    return CB_OK;
}

cb_status cb_infer_caches_reserve(cb_infer_ctx *ctx, int64_t n) {
    for (int i = 0; i < ctx->n_caches; i++) {
        cb_seq_cache *t[3];
        tensors(&ctx->caches[i], t);
        for (int j = 0; j < 3; j++)
            if (t[j]) CB_TRY(cb_seq_cache_reserve(t[j], n));
    }
    return CB_OK;
}

size_t cb_infer_caches_bytes(const cb_infer_ctx *ctx) {
    size_t b = 0;
    for (int i = 0; i < ctx->n_caches; i++) b += cb_layer_cache_bytes(&ctx->caches[i]);
    return b;
}

int64_t cb_infer_caches_len(const cb_infer_ctx *ctx) {
    return ctx->n_caches ? cb_layer_cache_len(&ctx->caches[0]) : 0;
}
