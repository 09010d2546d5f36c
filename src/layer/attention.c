/* AttentionLayer: standard / GQA and decoupled (DBA) modes.
 *
 *   x [B, T, d]
 *   standard: q [B, T, H*hd] = x Wq^T, k/v [B, T, Hkv*hd] (values Hkv*hdv); RoPE on q and k.
 *   decoupled: qs [B, T, H*ds], ks [B, T, Hkv*ds] (no RoPE), qg [B, T, H*dg], kg [B, T, Hkv*dg]
 *   (RoPE), v [B, T, Hkv*hdv]; score = <qs,ks>/sqrt(ds) + <qg,kg>/sqrt(dg).
 *   y [B, T, d] = out_proj(attention).
 *   learned_temp: logit_scale [H]; decoupled_gate: decoupled_gate_logit [H] and, dynamic,
 *   decoupled_gate_proj.weight [H, d] (see query_factors).
 *
 * Without a context (training, plain forward) attention runs over the fresh keys. With one, the
 * layer appends its post-RoPE keys and values to the next cache; a prefill into an empty cache
 * still attends over the fresh full-precision keys (as the original does), later calls attend
 * over the cache, reading quantized blocks directly. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/module_impl.h"

static cb_status add_proj(cb_module *m, const char *name, int out, int in, bool bias) {
    char buf[64];
    int64_t w[2] = {out, in}, b = out;
    snprintf(buf, sizeof buf, "%s.weight", name);
    CB_TRY(cb_module_add_param(m, buf, 2, w, CB_INIT_UNIFORM_FAN_IN, (float)in, false));
    if (bias) {
        snprintf(buf, sizeof buf, "%s.bias", name);
        CB_TRY(cb_module_add_param(m, buf, 1, &b, CB_INIT_UNIFORM_FAN_IN, (float)in, true));
    }
    return CB_OK;
}

cb_status cb_attention_new(cb_module **out, const cb_attention_cfg *c) {
    *out = NULL;
    if (c->d_model <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0)
        return cb_fail(CB_ERR_ARG, "AttentionLayer: d_model, n_heads and n_kv_heads must be positive");
    if (c->n_heads % c->n_kv_heads)
        return cb_fail(CB_ERR_ARG, "AttentionLayer: n_heads (%d) must be divisible by n_kv_heads (%d)",
                       c->n_heads, c->n_kv_heads);
    bool dec = c->mode == CB_ATTN_DECOUPLED;
    int qk_hd = dec ? c->geo_head_dim : c->head_dim;
    if (dec && (c->sem_head_dim <= 0 || c->geo_head_dim <= 0))
        return cb_fail(CB_ERR_ARG, "AttentionLayer: decoupled mode requires sem_dim and geo_dim");
    if (!dec && c->head_dim <= 0) return cb_fail(CB_ERR_ARG, "AttentionLayer: head size must be positive");
    if (c->v_head_dim <= 0) return cb_fail(CB_ERR_ARG, "AttentionLayer: value head size must be positive");
    int rot = c->rope_rot > 0 ? c->rope_rot : qk_hd, basis = c->rope_basis > 0 ? c->rope_basis : rot;
    if (c->rope_enabled && (rot % 2 || rot > qk_hd))
        return cb_fail(CB_ERR_ARG, "AttentionLayer: rotary width %d must be even and at most the head size %d",
                       rot, qk_hd);
    if (c->rope_enabled && (basis % 2 || basis < rot))
        return cb_fail(CB_ERR_ARG, "AttentionLayer: rope_dim %d must be even and at least the rotated width %d",
                       basis, rot);
    if (c->dropout_p > 0)
        return cb_fail(CB_ERR_UNSUPPORTED, "AttentionLayer: attention-probability dropout "
                                           "(dropout_p > 0) is not implemented; use a DropoutLayer");
    if (c->decoupled_gate && !dec)
        return cb_fail(CB_ERR_ARG,
                       "AttentionLayer: decoupled_gate only applies to mode: decoupled");
    if (c->decoupled_gate_dynamic && !c->decoupled_gate)
        return cb_fail(CB_ERR_ARG, "AttentionLayer: decoupled_gate_dynamic needs decoupled_gate");
    CB_TRY(cb_module_alloc(out, CB_MOD_ATTENTION));
    cb_module *m = *out;
    m->attn = *c;
    m->attn.rope_rot = rot;
    m->attn.rope_basis = basis;
    m->d_in = m->d_out = c->d_model;
    int H = c->n_heads, K = c->n_kv_heads, d = c->d_model;
    if (!dec) {
        CB_TRY(add_proj(m, "q_proj", H * c->head_dim, d, c->bias));
        CB_TRY(add_proj(m, "k_proj", K * c->head_dim, d, c->bias));
        CB_TRY(add_proj(m, "v_proj", K * c->v_head_dim, d, c->bias));
    } else {
        CB_TRY(add_proj(m, "q_sem", H * c->sem_head_dim, d, c->bias));
        CB_TRY(add_proj(m, "k_sem", K * c->sem_head_dim, d, c->bias));
        CB_TRY(add_proj(m, "q_geo", H * c->geo_head_dim, d, c->bias));
        CB_TRY(add_proj(m, "k_geo", K * c->geo_head_dim, d, c->bias));
        CB_TRY(add_proj(m, "v_proj", K * c->v_head_dim, d, c->bias));
    }
    CB_TRY(add_proj(m, "out_proj", d, H * c->v_head_dim, c->bias));
    int64_t h = H, gw[2] = {H, d};
    /* Per-head factors start neutral: exp(0) = 1 and 2 sigmoid(0) = 1. */
    if (c->decoupled_gate) {
        CB_TRY(cb_module_add_param(m, "decoupled_gate_logit", 1, &h, CB_INIT_ZEROS, 0, true));
        if (c->decoupled_gate_dynamic)
            CB_TRY(cb_module_add_param(m, "decoupled_gate_proj.weight", 2, gw, CB_INIT_ZEROS, 0,
                                       false));
    }
    if (c->learned_temp)
        CB_TRY(cb_module_add_param(m, "logit_scale", 1, &h, CB_INIT_ZEROS, 0, true));
    return CB_OK;
}

static cb_tensor *proj(cb_module *m, cb_graph *g, cb_tensor *x, const char *name) {
    char w[64], b[64];
    snprintf(w, sizeof w, "%s.weight", name);
    snprintf(b, sizeof b, "%s.bias", name);
    return cb_linear(g, x, cb_module_param(m, w), cb_module_param(m, b));
}

/* Learned temperature and the DBA gate, as per-head factors on the queries: after RoPE and before
 * any cache or attention, so fresh, cached and device-resident paths all see the same queries.
 *   temperature: q (and q2) head h *= exp(clamp(logit_scale[h], -8, 8))          logit_scale [H]
 *   gate: z [B, T, H] = decoupled_gate_logit [H] (+ x W_gate^T, dynamic), g = sigmoid(z);
 *         q (semantic) *= 2 g, q2 (geometric) *= 2 - 2 g = 2 sigmoid(-z) */
static cb_status query_factors(cb_module *m, cb_graph *g, cb_tensor *x, cb_tensor **q,
                               cb_tensor **q2) {
    const cb_attention_cfg *c = &m->attn;
    int H = c->n_heads;
    if (c->learned_temp) {
        cb_tensor *t = cb_exp_clamp(g, cb_module_param(m, "logit_scale"), -8.0f, 8.0f);
        *q = cb_head_scale(g, *q, t, H);
        if (*q2) *q2 = cb_head_scale(g, *q2, t, H);
        if (!*q || (c->mode == CB_ATTN_DECOUPLED && !*q2)) return CB_ERR_ARG;
    }
    if (c->decoupled_gate) {
        cb_tensor *z = cb_module_param(m, "decoupled_gate_logit");
        if (c->decoupled_gate_dynamic)
            z = cb_add(g, cb_linear(g, x, cb_module_param(m, "decoupled_gate_proj.weight"), NULL),
                       z);
        cb_tensor *sem = cb_scale(g, cb_sigmoid(g, z), 2.0f);
        cb_tensor *geo = cb_scale(g, cb_sigmoid(g, cb_scale(g, z, -1.0f)), 2.0f);
        *q = cb_head_scale(g, *q, sem, H);
        *q2 = cb_head_scale(g, *q2, geo, H);
        if (!*q || !*q2) return CB_ERR_ARG;
    }
    return CB_OK;
}

cb_tensor *cb_layer_attention_forward(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx) {
    const cb_attention_cfg *c = &m->attn;
    bool dec = c->mode == CB_ATTN_DECOUPLED;
    if (x->ndim != 3 || x->shape[2] != c->d_model) {
        char s[64];
        cb_fail(CB_ERR_SHAPE, "expected (B, T, %d), got %s", c->d_model, cb_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t pos0 = ctx ? ctx->pos_offset : 0;
    cb_tensor *q, *k, *q2 = NULL, *k2 = NULL;
    if (!dec) {
        q = proj(m, g, x, "q_proj");
        k = proj(m, g, x, "k_proj");
        if (c->rope_enabled) {
            q = cb_rope(g, q, c->n_heads, m->rope, pos0);
            k = cb_rope(g, k, c->n_kv_heads, m->rope, pos0);
        }
    } else {
        q = proj(m, g, x, "q_sem");
        k = proj(m, g, x, "k_sem");
        q2 = proj(m, g, x, "q_geo");
        k2 = proj(m, g, x, "k_geo");
        if (c->rope_enabled) {
            q2 = cb_rope(g, q2, c->n_heads, m->rope, pos0);
            k2 = cb_rope(g, k2, c->n_kv_heads, m->rope, pos0);
        }
    }
    cb_tensor *v = proj(m, g, x, "v_proj");
    if (!q || !k || !v || (dec && (!q2 || !k2))) return NULL;
    if ((c->learned_temp || c->decoupled_gate) && query_factors(m, g, x, &q, &q2) != CB_OK)
        return NULL;

    cb_attn_cfg ac = {
        .n_heads = c->n_heads,
        .n_kv_heads = c->n_kv_heads,
        .head_dim = dec ? c->sem_head_dim : c->head_dim,
        .v_head_dim = c->v_head_dim,
        .scale = 1.0f / sqrtf((float)(dec ? c->sem_head_dim : c->head_dim)),
        .causal = c->is_causal,
        .window = ctx && ctx->local_window > 0 ? ctx->local_window : c->local_window,
        .q_pos0 = 0,
        .head_dim2 = dec ? c->geo_head_dim : 0,
        .scale2 = dec ? 1.0f / sqrtf((float)c->geo_head_dim) : 0.0f,
    };
    cb_tensor *att;
    cb_layer_cache *lc = NULL;
    if (ctx && ctx->caches) {
        if (ctx->next >= ctx->n_caches) {
            cb_fail(CB_ERR_ARG, "inference context has %d caches but more attention layers ran",
                    ctx->n_caches);
            return NULL;
        }
        lc = &ctx->caches[ctx->next++];
    }
    if (ctx && !ctx->caches && ctx->kv_sink) { /* device-resident caches: hand over, attend fresh */
        if (ctx->kv_sink(ctx->kv_sink_user, ctx->next++, k, v, pos0) != CB_OK) return NULL;
    }
    int64_t old = 0;
    if (lc) {
        cb_status st = dec ? cb_layer_cache_append_decoupled(lc, k, k2, v, &old)
                           : cb_layer_cache_append(lc, k, v, &old);
        if (st != CB_OK) return NULL;
    }
    if (!lc || old == 0) {
        ac.q_pos0 = 0; /* fresh keys: positions relative to this call's first token */
        att = cb_attention(g, q, k, v, q2, k2, &ac);
    } else {
        int64_t osh[3] = {x->shape[0], x->shape[1], (int64_t)c->n_heads * c->v_head_dim};
        att = cb_graph_tensor(g, CB_F32, 3, osh);
        if (!att) return NULL;
        ac.q_pos0 = old;
        cb_kv_attn_cfg kc = CB_KV_ATTN_CFG_FROM(ac);
        if (cb_layer_cache_attention(&kc, lc, q, q2, att, NULL) != CB_OK) return NULL;
    }
    return proj(m, g, att, "out_proj");
}
