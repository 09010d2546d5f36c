/* Linear layers and batched matmul, forward and backward, on the GEMM kernel.
 *   linear: x [R, in] (any leading dims), W [out, in], b [out] -> y [R, out]
 *   matmul: a [batch, M, K] (or [batch, K, M]), b [batch, K, N] (or [batch, N, K]) -> [batch, M, N]
 */
#include "ops/op_util.h"

static cb_status linear_backward(cb_graph *g, cb_node *n) {
    const cb_kernels *k = cb_k(g);
    cb_tensor *x = n->in[0], *W = n->in[1], *b = n->in[2], *dy = n->out->grad;
    int64_t in = W->shape[1], out = W->shape[0], R = cb_tensor_rows(x);
    bool fresh = false;
    cb_tensor *dx = cb_graph_grad_uninit(g, x, &fresh), *dW = cb_need_grad(g, W),
              *db = b ? cb_need_grad(g, b) : NULL;
    if (dx) /* dx [R, in] (+)= dy [R, out] . W [out, in]; a fresh buffer is written, not zeroed */
        CB_TRY(k->gemm(false, false, R, in, out, 1.0f, dy, out, 0, cb_op_weight(g, W), in, 0,
                       fresh ? 0.0f : 1.0f, dx, in, 0, 1));
    if (dW) /* dW [out, in] += dy^T [out, R] . x [R, in] */
        CB_TRY(k->gemm(true, false, out, in, R, 1.0f, dy, out, 0, x, in, 0, 1.0f, dW, in, 0, 1));
    if (db) CB_TRY(k->bias_grad(dy, db));
    return CB_OK;
}

cb_tensor *cb_linear(cb_graph *g, cb_tensor *x, cb_tensor *W, cb_tensor *b) {
    if (!x || !W) return NULL;
    if (!cb_op_check_float(g, "linear", x, "input") || !cb_op_check_float(g, "linear", W, "weight"))
        return NULL;
    char s1[64], s2[64];
    if (W->ndim != 2 || x->ndim < 1 || cb_tensor_cols(x) != W->shape[1])
        return cb_op_fail(CB_ERR_SHAPE, "linear: input %s does not match weight %s",
                          cb_shape_str(x, s1, sizeof s1), cb_shape_str(W, s2, sizeof s2));
    if (b && (b->ndim != 1 || b->shape[0] != W->shape[0]))
        return cb_op_fail(CB_ERR_SHAPE, "linear: bias %s does not match weight %s",
                          cb_shape_str(b, s1, sizeof s1), cb_shape_str(W, s2, sizeof s2));
    int64_t shape[CB_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = W->shape[0];
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, shape);
    if (!y) return NULL;
    const cb_kernels *k = cb_k(g);
    int64_t R = cb_tensor_rows(x), in = W->shape[1], out = W->shape[0];
    CB_OP_KERNEL("linear", k->gemm(false, true, R, out, in, 1.0f, x, in, 0, cb_op_weight(g, W), in,
                                   0, 0.0f, y, out, 0, 1));
    if (b) CB_OP_KERNEL("linear", k->bias_add(y, b));
    cb_tensor *ins[3] = {x, W, b};
    cb_graph_record(g, "linear", linear_backward, y, ins, b ? 3 : 2);
    return y;
}

/* Flattened [batch, rows, cols] view of a tensor's last two dims. */
static void mat_dims(const cb_tensor *t, int64_t *batch, int64_t *r, int64_t *c) {
    *r = t->shape[t->ndim - 2];
    *c = t->shape[t->ndim - 1];
    *batch = cb_tensor_numel(t) / (*r * *c);
}

static cb_status matmul_backward(cb_graph *g, cb_node *n) {
    const cb_kernels *k = cb_k(g);
    cb_tensor *a = n->in[0], *b = n->in[1], *dy = n->out->grad;
    bool ta = n->i[0], tb = n->i[1];
    int64_t M = n->i[2], N = n->i[3], K = n->i[4], batch = n->i[5], sb = n->i[6];
    cb_tensor *da = cb_need_grad(g, a), *db = cb_need_grad(g, b);
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (da) { /* dA = dY . op(B)^T (stored per A's layout) */
        if (!ta) CB_TRY(k->gemm(false, !tb, M, K, N, 1.0f, dy, N, M * N, b, ldb, sb, 1.0f, da, lda, M * K, batch));
        else CB_TRY(k->gemm(tb, true, K, M, N, 1.0f, b, ldb, sb, dy, N, M * N, 1.0f, da, lda, M * K, batch));
    }
    if (db) { /* dB = op(A)^T . dY; a broadcast B sums over the batch */
        for (int64_t i = 0; i < (sb ? 1 : batch); i++) {
            int64_t nb = sb ? batch : 1;
            cb_tensor av = *a, dyv = *dy;
            av.data = (float *)a->data + i * M * K;
            dyv.data = (float *)dy->data + i * M * N;
            if (!tb) CB_TRY(k->gemm(!ta, false, K, N, M, 1.0f, &av, lda, M * K, &dyv, N, M * N, 1.0f, db, ldb, sb, nb));
            else CB_TRY(k->gemm(true, ta, N, K, M, 1.0f, &dyv, N, M * N, &av, lda, M * K, 1.0f, db, ldb, sb, nb));
        }
    }
    return CB_OK;
}

cb_tensor *cb_matmul(cb_graph *g, cb_tensor *a, cb_tensor *b, bool trans_a, bool trans_b) {
    if (!a || !b) return NULL;
    if (!cb_op_check_float(g, "matmul", a, "a") || !cb_op_check_float(g, "matmul", b, "b"))
        return NULL;
    char s1[64], s2[64];
    if (a->ndim < 2 || b->ndim < 2)
        return cb_op_fail(CB_ERR_SHAPE, "matmul: operands need at least 2 dims, got %s and %s",
                          cb_shape_str(a, s1, sizeof s1), cb_shape_str(b, s2, sizeof s2));
    int64_t ba, ra, ca, bb, rb, cbb;
    mat_dims(a, &ba, &ra, &ca);
    mat_dims(b, &bb, &rb, &cbb);
    int64_t M = trans_a ? ca : ra, K = trans_a ? ra : ca;
    int64_t Kb = trans_b ? cbb : rb, N = trans_b ? rb : cbb;
    bool b_broadcast = b->ndim == 2 && ba > 1;
    if (K != Kb || (!b_broadcast && (ba != bb || a->ndim != b->ndim)))
        return cb_op_fail(CB_ERR_SHAPE, "matmul: %s%s and %s%s do not conform",
                          cb_shape_str(a, s1, sizeof s1), trans_a ? "^T" : "",
                          cb_shape_str(b, s2, sizeof s2), trans_b ? "^T" : "");
    int64_t shape[CB_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) shape[i] = a->shape[i];
    shape[a->ndim - 2] = M;
    shape[a->ndim - 1] = N;
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, a->ndim, shape);
    if (!y) return NULL;
    int64_t sb = b_broadcast ? 0 : K * N;
    CB_OP_KERNEL("matmul", cb_k(g)->gemm(trans_a, trans_b, M, N, K, 1.0f, a, trans_a ? M : K,
                                         M * K, b, trans_b ? K : N, sb, 0.0f, y, N, M * N, ba));
    cb_tensor *ins[2] = {a, b};
    cb_node *n = cb_graph_record(g, "matmul", matmul_backward, y, ins, 2);
    if (n) {
        n->i[0] = trans_a, n->i[1] = trans_b, n->i[2] = M, n->i[3] = N, n->i[4] = K;
        n->i[5] = ba, n->i[6] = sb;
    }
    return y;
}
