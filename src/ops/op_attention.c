/* Fused attention op (see ops/cpu/attention.c for the algorithm). */
#include <string.h>

#include "ops/op_util.h"

static cb_status attention_backward(cb_graph *g, cb_node *n) {
    cb_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2], *q2 = n->in[3], *k2 = n->in[4];
    return cb_k(g)->attention_bwd(n->extra, q, k, v, q2, k2, n->out, n->aux[0], n->out->grad,
                                  cb_need_grad(g, q), cb_need_grad(g, k), cb_need_grad(g, v),
                                  q2 ? cb_need_grad(g, q2) : NULL, k2 ? cb_need_grad(g, k2) : NULL);
}

static bool dims_ok(const cb_tensor *t, int64_t B, int64_t T, int64_t W) {
    return t->ndim == 3 && t->shape[0] == B && t->shape[1] == T && t->shape[2] == W;
}

cb_tensor *cb_attention(cb_graph *g, cb_tensor *q, cb_tensor *k, cb_tensor *v, cb_tensor *q2,
                        cb_tensor *k2, const cb_attn_cfg *cfg) {
    if (!q || !k || !v || !cfg) return NULL;
    if ((q2 == NULL) != (k2 == NULL))
        return cb_op_fail(CB_ERR_ARG, "attention: decoupled term needs both q2 and k2");
    cb_tensor *all[5] = {q, k, v, q2, k2};
    for (int i = 0; i < 5; i++)
        if (all[i] && !cb_op_check_float(g, "attention", all[i], "input")) return NULL;
    if (cfg->n_heads <= 0 || cfg->n_kv_heads <= 0 || cfg->n_heads % cfg->n_kv_heads)
        return cb_op_fail(CB_ERR_ARG, "attention: %d heads not divisible by %d kv heads",
                          cfg->n_heads, cfg->n_kv_heads);
    if (q->ndim != 3 || k->ndim != 3)
        return cb_op_fail(CB_ERR_SHAPE, "attention: q and k must be [B, T, H*hd]");
    int64_t B = q->shape[0], T = q->shape[1], S = k->shape[1], H = cfg->n_heads,
            Hkv = cfg->n_kv_heads;
    char s1[64], s2[64], s3[64];
    if (!dims_ok(q, B, T, H * cfg->head_dim) || !dims_ok(k, B, S, Hkv * cfg->head_dim) ||
        !dims_ok(v, B, S, Hkv * cfg->v_head_dim) ||
        (q2 && (!dims_ok(q2, B, T, H * cfg->head_dim2) || !dims_ok(k2, B, S, Hkv * cfg->head_dim2))))
        return cb_op_fail(CB_ERR_SHAPE,
                          "attention: q %s, k %s, v %s do not fit %lld heads / %lld kv heads of "
                          "size %d (values %d)",
                          cb_shape_str(q, s1, sizeof s1), cb_shape_str(k, s2, sizeof s2),
                          cb_shape_str(v, s3, sizeof s3), (long long)H, (long long)Hkv,
                          cfg->head_dim, cfg->v_head_dim);
    int64_t oshape[3] = {B, T, H * cfg->v_head_dim}, lshape[3] = {B, H, T};
    cb_tensor *out = cb_graph_tensor(g, g->act_dtype, 3, oshape);
    cb_tensor *lse = cb_graph_tensor(g, CB_F32, 3, lshape);
    if (!out || !lse) return NULL;
    CB_OP_KERNEL("attention", cb_k(g)->attention_fwd(cfg, q, k, v, q2, k2, out, lse));
    cb_node *n = cb_graph_record(g, "attention", attention_backward, out, all, 5);
    if (n) {
        cb_attn_cfg *c = cb_arena_alloc(&g->host, sizeof *c);
        if (!c) return NULL;
        memcpy(c, cfg, sizeof *c);
        n->extra = c;
        n->aux[0] = lse;
    }
    return out;
}
