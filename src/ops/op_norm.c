/* RMSNorm and LayerNorm ops (normalise over the last dim). */
#include "ops/op_util.h"

static bool check_norm(cb_graph *g, const char *op, cb_tensor *x, cb_tensor *w, cb_tensor *b) {
    if (!cb_op_check_float(g, op, x, "input")) return false;
    if (x->ndim < 1) {
        cb_op_fail(CB_ERR_SHAPE, "%s: input has no dims", op);
        return false;
    }
    int64_t D = cb_tensor_cols(x);
    for (cb_tensor *p = w; p; p = (p == w ? b : NULL)) {
        if (!cb_op_check_float(g, op, p, "weight")) return false;
        if (p->ndim != 1 || p->shape[0] != D) {
            char s1[64], s2[64];
            cb_op_fail(CB_ERR_SHAPE, "%s: weight %s does not match input %s", op,
                       cb_shape_str(p, s1, sizeof s1), cb_shape_str(x, s2, sizeof s2));
            return false;
        }
    }
    return true;
}

static cb_status rmsnorm_backward(cb_graph *g, cb_node *n) {
    cb_tensor *x = n->in[0], *w = n->in[1];
    return cb_k(g)->rmsnorm_bwd(x, w, n->aux[0], n->out->grad, cb_need_grad(g, x),
                                w ? cb_need_grad(g, w) : NULL);
}

cb_tensor *cb_rmsnorm(cb_graph *g, cb_tensor *x, cb_tensor *w, float eps) {
    if (!x || !check_norm(g, "rmsnorm", x, w, NULL)) return NULL;
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, x->shape);
    int64_t R = cb_tensor_rows(x);
    cb_tensor *rstd = cb_graph_tensor(g, CB_F32, 1, &R);
    if (!y || !rstd) return NULL;
    CB_OP_KERNEL("rmsnorm", cb_k(g)->rmsnorm_fwd(x, w, eps, y, rstd));
    cb_tensor *ins[2] = {x, w};
    cb_node *n = cb_graph_record(g, "rmsnorm", rmsnorm_backward, y, ins, w ? 2 : 1);
    if (n) n->aux[0] = rstd;
    return y;
}

static cb_status layernorm_backward(cb_graph *g, cb_node *n) {
    cb_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    return cb_k(g)->layernorm_bwd(x, w, n->aux[0], n->aux[1], n->out->grad, cb_need_grad(g, x),
                                  w ? cb_need_grad(g, w) : NULL, b ? cb_need_grad(g, b) : NULL);
}

cb_tensor *cb_layernorm(cb_graph *g, cb_tensor *x, cb_tensor *w, cb_tensor *b, float eps) {
    if (!x || !check_norm(g, "layernorm", x, w, b)) return NULL;
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, x->shape);
    int64_t R = cb_tensor_rows(x);
    cb_tensor *mean = cb_graph_tensor(g, CB_F32, 1, &R), *rstd = cb_graph_tensor(g, CB_F32, 1, &R);
    if (!y || !mean || !rstd) return NULL;
    CB_OP_KERNEL("layernorm", cb_k(g)->layernorm_fwd(x, w, b, eps, y, mean, rstd));
    cb_tensor *ins[3] = {x, w, b};
    cb_node *n = cb_graph_record(g, "layernorm", layernorm_backward, y, ins, 3);
    if (n) {
        n->aux[0] = mean;
        n->aux[1] = rstd;
    }
    return y;
}
