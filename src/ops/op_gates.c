/* Ops for per-head gates and temperatures: sigmoid, exp(clamp(x)), per-head scaling. */
#include "ops/op_util.h"

/* Backends may leave these kernels out (NULL table entries). */
static bool have(cb_graph *g, bool present, const char *op) {
    if (present) return true;
    cb_fail(CB_ERR_UNSUPPORTED, "%s is not supported on %s yet", op,
            g->device == CB_CUDA ? "cuda" : "this device");
    return false;
}

static cb_status sigmoid_backward(cb_graph *g, cb_node *n) {
    cb_tensor *dx = cb_need_grad(g, n->in[0]);
    return dx ? cb_k(g)->sigmoid_bwd(n->out, n->out->grad, dx) : CB_OK;
}

cb_tensor *cb_sigmoid(cb_graph *g, cb_tensor *x) {
    if (!x || !cb_op_check_float(g, "sigmoid", x, "input") ||
        !have(g, cb_k(g)->sigmoid_fwd != NULL, "sigmoid"))
        return NULL;
    cb_tensor *y = cb_graph_tensor(g, CB_F32, x->ndim, x->shape);
    if (!y) return NULL;
    CB_OP_KERNEL("sigmoid", cb_k(g)->sigmoid_fwd(x, y));
    cb_graph_record(g, "sigmoid", sigmoid_backward, y, &x, 1);
    return y;
}

static cb_status exp_clamp_backward(cb_graph *g, cb_node *n) {
    cb_tensor *dx = cb_need_grad(g, n->in[0]);
    return dx ? cb_k(g)->exp_clamp_bwd(n->in[0], n->out, n->f[0], n->f[1], n->out->grad, dx)
              : CB_OK;
}

cb_tensor *cb_exp_clamp(cb_graph *g, cb_tensor *x, float lo, float hi) {
    if (!x || !cb_op_check_float(g, "exp_clamp", x, "input") ||
        !have(g, cb_k(g)->exp_clamp_fwd != NULL, "exp_clamp"))
        return NULL;
    cb_tensor *y = cb_graph_tensor(g, CB_F32, x->ndim, x->shape);
    if (!y) return NULL;
    CB_OP_KERNEL("exp_clamp", cb_k(g)->exp_clamp_fwd(x, lo, hi, y));
    cb_node *n = cb_graph_record(g, "exp_clamp", exp_clamp_backward, y, &x, 1);
    if (n) {
        n->f[0] = lo;
        n->f[1] = hi;
    }
    return y;
}

static cb_status head_scale_backward(cb_graph *g, cb_node *n) {
    return cb_k(g)->head_scale_bwd(n->in[0], n->in[1], (int)n->i[0], n->out->grad,
                                   cb_need_grad(g, n->in[0]), cb_need_grad(g, n->in[1]));
}

cb_tensor *cb_head_scale(cb_graph *g, cb_tensor *q, cb_tensor *s, int n_heads) {
    if (!q || !s) return NULL;
    if (!cb_op_check_float(g, "head_scale", q, "input") ||
        !cb_op_check_float(g, "head_scale", s, "scale") ||
        !have(g, cb_k(g)->head_scale_fwd != NULL, "head_scale"))
        return NULL;
    int64_t W = cb_tensor_cols(q), R = cb_tensor_rows(q),
            ns = cb_tensor_numel(s) / (n_heads > 0 ? n_heads : 1);
    if (n_heads <= 0 || W % n_heads || cb_tensor_numel(s) % n_heads || (ns != 1 && ns != R)) {
        char s1[64], s2[64];
        return cb_op_fail(CB_ERR_SHAPE, "head_scale: %s cannot scale the %d heads of %s",
                          cb_shape_str(s, s1, sizeof s1), n_heads, cb_shape_str(q, s2, sizeof s2));
    }
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, q->ndim, q->shape);
    if (!y) return NULL;
    CB_OP_KERNEL("head_scale", cb_k(g)->head_scale_fwd(q, s, n_heads, y));
    cb_tensor *ins[2] = {q, s};
    cb_node *n = cb_graph_record(g, "head_scale", head_scale_backward, y, ins, 2);
    if (n) n->i[0] = n_heads;
    return y;
}
