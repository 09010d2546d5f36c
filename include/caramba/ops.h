/* The op API: every layer is written once against these functions.
 *
 * Each op checks its inputs' shapes, allocates its output from the graph, runs the kernel of
 * the inputs' device and, when grad is enabled, records its backward on the tape. Ops return the
 * new tensor, or NULL with a message (cb_last_error) naming the op and the shapes; any NULL input
 * makes an op return NULL at once, so layer code can chain ops and check once. */
#ifndef CARAMBA_OPS_H
#define CARAMBA_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "caramba/graph.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ids [B, T] (i32/i64) -> [B, T, D] rows of W [V, D] */
cb_tensor *cb_embedding(cb_graph *g, const cb_tensor *ids, cb_tensor *W);
/* x [..., in] · W[out, in]^T + b[out] -> [..., out]; b may be NULL */
cb_tensor *cb_linear(cb_graph *g, cb_tensor *x, cb_tensor *W, cb_tensor *b);
/* Batched matmul: a [..., M, K] (or [..., K, M] with trans_a), b [..., K, N] (or [..., N, K]
 * with trans_b). Leading (batch) dims must match, or b may have none (broadcast). */
cb_tensor *cb_matmul(cb_graph *g, cb_tensor *a, cb_tensor *b, bool trans_a, bool trans_b);

/* Elementwise; b may broadcast over a's leading dims (numel(a) % numel(b) == 0 and b's shape is
 * a suffix of a's). */
cb_tensor *cb_add(cb_graph *g, cb_tensor *a, cb_tensor *b);
cb_tensor *cb_mul(cb_graph *g, cb_tensor *a, cb_tensor *b);
cb_tensor *cb_scale(cb_graph *g, cb_tensor *a, float s);

/* Normalisation over the last dim. w (and b) [D]; w may be NULL for RMSNorm without affine. */
cb_tensor *cb_rmsnorm(cb_graph *g, cb_tensor *x, cb_tensor *w, float eps);
cb_tensor *cb_layernorm(cb_graph *g, cb_tensor *x, cb_tensor *w, cb_tensor *b, float eps);

cb_tensor *cb_silu(cb_graph *g, cb_tensor *x);
cb_tensor *cb_sigmoid(cb_graph *g, cb_tensor *x);
/* exp(clamp(x, lo, hi)); the gradient is zero outside [lo, hi] (it passes at the edges, as
 * torch.clamp) */
cb_tensor *cb_exp_clamp(cb_graph *g, cb_tensor *x, float lo, float hi);
/* Scales each of the n_heads heads of q [..., H*hd] by s [H] (shared) or s [..., H] (per row). */
cb_tensor *cb_head_scale(cb_graph *g, cb_tensor *q, cb_tensor *s, int n_heads);
/* silu(gate) * up */
cb_tensor *cb_swiglu(cb_graph *g, cb_tensor *gate, cb_tensor *up);

/* Rotary tables: cos/sin [max_pos, P] where P pairs are rotated (rot_dim = 2P). */
typedef struct cb_rope_table {
    cb_tensor *cos, *sin; /* on the model's device, f32 */
    int64_t max_pos;
    int pairs;
} cb_rope_table;
/* Half-split RoPE on every head of x [B, T, H*hd]; token t sits at position pos0 + t. */
cb_tensor *cb_rope(cb_graph *g, cb_tensor *x, int n_heads, const cb_rope_table *tab, int64_t pos0);

/* Attention geometry and masking, shared by the op and every backend's kernel. */
typedef struct cb_attn_cfg {
    int n_heads;    /* H query heads */
    int n_kv_heads; /* Hkv; query head h reads kv head h / (H / Hkv) */
    int head_dim;   /* q/k head size */
    int v_head_dim; /* value head size */
    float scale;    /* usually 1/sqrt(head_dim) */
    bool causal;
    int window;     /* > 0: key j allowed only when j > qpos - window (sliding window) */
    int64_t q_pos0; /* absolute position of query 0; keys sit at positions 0..S-1 */
    /* Decoupled (DBA) second score term: S += scale2 * <q2_i, k2_j>. Zero when unused. */
    int head_dim2;
    float scale2;
} cb_attn_cfg;

/* Fused causal attention (flash-style online softmax, GQA).
 * q [B, T, H*hd], k [B, S, Hkv*hd], v [B, S, Hkv*hdv] -> [B, T, H*hdv].
 * cfg->q_pos0 places the queries (keys sit at 0..S-1). q2/k2: decoupled second term or NULL. */
cb_tensor *cb_attention(cb_graph *g, cb_tensor *q, cb_tensor *k, cb_tensor *v, cb_tensor *q2,
                        cb_tensor *k2, const cb_attn_cfg *cfg);

cb_tensor *cb_softmax(cb_graph *g, cb_tensor *x);
/* Mean cross-entropy over rows of logits [N, V] (or [B, T, V]) against targets [N] (or [B, T]),
 * skipping targets equal to ignore_index. Returns a 1-element tensor. */
cb_tensor *cb_cross_entropy(cb_graph *g, cb_tensor *logits, const cb_tensor *targets,
                            int64_t ignore_index);
/* Inverted dropout (identity when p == 0 or the graph is not training). */
cb_tensor *cb_dropout(cb_graph *g, cb_tensor *x, float p);

/* Shape ops. reshape shares storage; the others copy. */
cb_tensor *cb_reshape(cb_graph *g, cb_tensor *x, int ndim, const int64_t *shape);
cb_tensor *cb_transpose(cb_graph *g, cb_tensor *x, int d0, int d1);
cb_tensor *cb_slice(cb_graph *g, cb_tensor *x, int dim, int64_t start, int64_t len);
cb_tensor *cb_concat(cb_graph *g, cb_tensor *const *xs, int n, int dim);
/* Stacks n same-shaped tensors on a new leading dim: [n, ...] */
cb_tensor *cb_stack(cb_graph *g, cb_tensor *const *xs, int n);

#ifdef __cplusplus
}
#endif
#endif
