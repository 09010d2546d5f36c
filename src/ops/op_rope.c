/* Rotary position embedding op: the backward is the inverse rotation of the gradient. */
#include "ops/op_util.h"

static cb_status rope_backward(cb_graph *g, cb_node *n) {
    bool fresh = false;
    cb_tensor *dx = cb_graph_grad_uninit(g, n->in[0], &fresh);
    if (!dx) return CB_OK;
    const cb_rope_table *tab = n->extra;
    /* a fresh gradient buffer takes the inverse rotation directly (every element is written) */
    if (fresh) return cb_k(g)->rope(n->out->grad, (int)n->i[0], tab->cos, tab->sin, n->i[1], true, dx);
    /* rotate dy back into a scratch tensor, then accumulate */
    cb_tensor *tmp = cb_graph_tensor(g, CB_F32, dx->ndim, dx->shape);
    if (!tmp) return CB_ERR_NOMEM;
    CB_TRY(cb_k(g)->rope(n->out->grad, (int)n->i[0], tab->cos, tab->sin, n->i[1], true, tmp));
    return cb_k(g)->axpy(1.0f, tmp, dx);
}

cb_tensor *cb_rope(cb_graph *g, cb_tensor *x, int n_heads, const cb_rope_table *tab, int64_t pos0) {
    if (!x || !tab) return NULL;
    if (!cb_op_check_float(g, "rope", x, "input")) return NULL;
    if (x->ndim != 3 || n_heads <= 0 || x->shape[2] % n_heads ||
        2 * tab->pairs > x->shape[2] / n_heads) {
        char s[64];
        return cb_op_fail(CB_ERR_SHAPE, "rope: input %s cannot hold %d heads with %d rotated pairs",
                          cb_shape_str(x, s, sizeof s), n_heads, tab->pairs);
    }
    if (pos0 < 0 || pos0 + x->shape[1] > tab->max_pos)
        return cb_op_fail(CB_ERR_ARG, "rope: positions up to %lld exceed the table (%lld)",
                          (long long)(pos0 + x->shape[1]), (long long)tab->max_pos);
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, x->shape);
    if (!y) return NULL;
    CB_OP_KERNEL("rope", cb_k(g)->rope(x, n_heads, tab->cos, tab->sin, pos0, false, y));
    cb_node *n = cb_graph_record(g, "rope", rope_backward, y, &x, 1);
    if (n) {
        n->i[0] = n_heads;
        n->i[1] = pos0;
        n->extra = (void *)tab;
    }
    return y;
}
