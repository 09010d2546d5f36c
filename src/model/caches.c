/* Inference context and per-model cache construction. */
#include <stdlib.h>

#include "caramba/model.h"

void cb_infer_ctx_begin(cb_infer_ctx *ctx, int64_t pos_offset) {
    ctx->next = 0;
    ctx->pos_offset = pos_offset;
}

cb_status cb_infer_ctx_end(const cb_infer_ctx *ctx) {
    if (ctx->next != ctx->n_caches)
        return cb_fail(CB_ERR_INTERNAL, "inference context: %d of %d caches were used", ctx->next,
                       ctx->n_caches);
    return CB_OK;
}

cb_status cb_model_caches_new(const cb_model *m, int64_t batch, int64_t max_len,
                              const cb_kv_policy *policy, cb_infer_ctx *ctx) {
    *ctx = (cb_infer_ctx){0};
    ctx->caches = calloc((size_t)m->n_attn + 1, sizeof *ctx->caches);
    if (!ctx->caches) return cb_fail(CB_ERR_NOMEM, "caches");
    for (int i = 0; i < m->n_attn; i++) {
        const cb_attention_cfg *c = &m->attn[i]->attn;
        cb_kv_kind fb = CB_KV_FP32;
        cb_kv_tensor_cfg kc = {.kind = policy ? cb_kv_policy_kind(policy, CB_KV_SLOT_K, fb) : fb};
        cb_kv_tensor_cfg vc = {.kind = policy ? cb_kv_policy_kind(policy, CB_KV_SLOT_V, fb) : fb};
        cb_status st;
        if (c->mode == CB_ATTN_DECOUPLED) {
            cb_kv_tensor_cfg sc = {.kind = policy ? cb_kv_policy_kind(policy, CB_KV_SLOT_K_SEM, kc.kind) : fb};
            cb_kv_tensor_cfg gc = {.kind = policy ? cb_kv_policy_kind(policy, CB_KV_SLOT_K_GEO, kc.kind) : fb};
            st = cb_layer_cache_init_decoupled(&ctx->caches[i], batch, max_len,
                                               (int64_t)c->n_kv_heads * c->sem_head_dim,
                                               (int64_t)c->n_kv_heads * c->geo_head_dim,
                                               (int64_t)c->n_kv_heads * c->v_head_dim, &sc, &gc, &vc);
        } else {
            st = cb_layer_cache_init(&ctx->caches[i], batch, max_len,
                                     (int64_t)c->n_kv_heads * c->head_dim,
                                     (int64_t)c->n_kv_heads * c->v_head_dim, &kc, &vc);
        }
        if (st != CB_OK) {
            ctx->n_caches = i;
            cb_model_caches_free(ctx);
            return st;
        }
    }
    ctx->n_caches = m->n_attn;
    return CB_OK;
}

void cb_model_caches_free(cb_infer_ctx *ctx) {
    for (int i = 0; i < ctx->n_caches; i++) cb_layer_cache_free(&ctx->caches[i]);
    free(ctx->caches);
    *ctx = (cb_infer_ctx){0};
}
