/* Elementwise ops: add, mul (with suffix broadcast of b), scale, SiLU, SwiGLU, dropout. */
#include "ops/op_util.h"

/* b broadcasts over a when b's shape is a suffix of a's. */
static bool broadcastable(const cb_tensor *a, const cb_tensor *b) {
    if (b->ndim > a->ndim) return false;
    for (int i = 1; i <= b->ndim; i++)
        if (b->shape[b->ndim - i] != a->shape[a->ndim - i]) return false;
    return true;
}

static cb_tensor *binary_out(cb_graph *g, const char *op, cb_tensor *a, cb_tensor *b) {
    if (!cb_op_check_float(g, op, a, "a") || !cb_op_check_float(g, op, b, "b")) return NULL;
    if (!broadcastable(a, b)) {
        char s1[64], s2[64];
        return cb_op_fail(CB_ERR_SHAPE, "%s: shapes %s and %s do not match", op,
                          cb_shape_str(a, s1, sizeof s1), cb_shape_str(b, s2, sizeof s2));
    }
    return cb_graph_tensor(g, g->act_dtype, a->ndim, a->shape);
}

/* dst (+)= alpha * src for the gradient of t: a fresh buffer is written with one pass (scale)
 * instead of zeroed and accumulated into. */
static cb_status grad_axpy(cb_graph *g, cb_tensor *t, float alpha, const cb_tensor *src) {
    bool fresh = false;
    cb_tensor *dst = cb_graph_grad_uninit(g, t, &fresh);
    if (!dst) return cb_tensor_requires_grad(t) ? CB_ERR_NOMEM : CB_OK;
    return fresh ? cb_k(g)->scale(src, alpha, dst) : cb_k(g)->axpy(alpha, src, dst);
}

static cb_status add_backward(cb_graph *g, cb_node *n) {
    cb_tensor *dy = n->out->grad, *a = n->in[0], *b = n->in[1];
    if (cb_tensor_requires_grad(a)) CB_TRY(grad_axpy(g, a, 1.0f, dy));
    if (cb_tensor_requires_grad(b)) {
        if (cb_tensor_numel(b) == cb_tensor_numel(dy)) CB_TRY(grad_axpy(g, b, 1.0f, dy));
        else {
            cb_tensor *db = cb_need_grad(g, b);
            if (!db) return CB_ERR_NOMEM;
            CB_TRY(cb_k(g)->reduce_rows_acc(1.0f, dy, db));
        }
    }
    return CB_OK;
}

cb_tensor *cb_add(cb_graph *g, cb_tensor *a, cb_tensor *b) {
    if (!a || !b) return NULL;
    cb_tensor *y = binary_out(g, "add", a, b);
    if (!y) return NULL;
    CB_OP_KERNEL("add", cb_k(g)->add(a, b, y));
    cb_tensor *ins[2] = {a, b};
    cb_graph_record(g, "add", add_backward, y, ins, 2);
    return y;
}

static cb_status mul_backward(cb_graph *g, cb_node *n) {
    return cb_k(g)->mul_bwd(n->in[0], n->in[1], n->out->grad, cb_need_grad(g, n->in[0]),
                            cb_need_grad(g, n->in[1]));
}

cb_tensor *cb_mul(cb_graph *g, cb_tensor *a, cb_tensor *b) {
    if (!a || !b) return NULL;
    cb_tensor *y = binary_out(g, "mul", a, b);
    if (!y) return NULL;
    CB_OP_KERNEL("mul", cb_k(g)->mul(a, b, y));
    cb_tensor *ins[2] = {a, b};
    cb_graph_record(g, "mul", mul_backward, y, ins, 2);
    return y;
}

static cb_status scale_backward(cb_graph *g, cb_node *n) {
    return cb_tensor_requires_grad(n->in[0]) ? grad_axpy(g, n->in[0], n->f[0], n->out->grad) : CB_OK;
}

cb_tensor *cb_scale(cb_graph *g, cb_tensor *a, float s) {
    if (!a || !cb_op_check_float(g, "scale", a, "input")) return NULL;
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, a->ndim, a->shape);
    if (!y) return NULL;
    CB_OP_KERNEL("scale", cb_k(g)->scale(a, s, y));
    cb_node *n = cb_graph_record(g, "scale", scale_backward, y, &a, 1);
    if (n) n->f[0] = s;
    return y;
}

/* Gradients first created here are written by the kernels, not zeroed and accumulated into. */
static cb_status silu_backward(cb_graph *g, cb_node *n) {
    bool fresh = false;
    cb_tensor *dx = cb_graph_grad_uninit(g, n->in[0], &fresh);
    if (!dx) return cb_tensor_requires_grad(n->in[0]) ? CB_ERR_NOMEM : CB_OK;
    return cb_k(g)->silu_bwd(n->in[0], n->out->grad, dx, fresh);
}

cb_tensor *cb_silu(cb_graph *g, cb_tensor *x) {
    if (!x || !cb_op_check_float(g, "silu", x, "input")) return NULL;
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, x->shape);
    if (!y) return NULL;
    CB_OP_KERNEL("silu", cb_k(g)->silu_fwd(x, y));
    cb_graph_record(g, "silu", silu_backward, y, &x, 1);
    return y;
}

static cb_status swiglu_backward(cb_graph *g, cb_node *n) {
    cb_tensor *gate = n->in[0], *up = n->in[1];
    /* dgate first: when gate == up only dgate is fresh, and the kernels update it first */
    bool fg = false, fu = false;
    cb_tensor *dg = cb_graph_grad_uninit(g, gate, &fg);
    if (!dg && cb_tensor_requires_grad(gate)) return CB_ERR_NOMEM;
    cb_tensor *du = cb_graph_grad_uninit(g, up, &fu);
    if (!du && cb_tensor_requires_grad(up)) return CB_ERR_NOMEM;
    return cb_k(g)->swiglu_bwd(gate, up, n->out->grad, dg, du, fg, fu);
}

cb_tensor *cb_swiglu(cb_graph *g, cb_tensor *gate, cb_tensor *up) {
    if (!gate || !up) return NULL;
    if (!cb_op_check_float(g, "swiglu", gate, "gate") || !cb_op_check_float(g, "swiglu", up, "up"))
        return NULL;
    if (!cb_tensor_same_shape(gate, up)) {
        char s1[64], s2[64];
        return cb_op_fail(CB_ERR_SHAPE, "swiglu: gate %s and up %s differ",
                          cb_shape_str(gate, s1, sizeof s1), cb_shape_str(up, s2, sizeof s2));
    }
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, gate->ndim, gate->shape);
    if (!y) return NULL;
    CB_OP_KERNEL("swiglu", cb_k(g)->swiglu_fwd(gate, up, y));
    cb_tensor *ins[2] = {gate, up};
    cb_graph_record(g, "swiglu", swiglu_backward, y, ins, 2);
    return y;
}

static cb_status dropout_backward(cb_graph *g, cb_node *n) {
    cb_tensor *dx = cb_need_grad(g, n->in[0]);
    return dx ? cb_k(g)->dropout_bwd(n->out->grad, n->f[0], (uint64_t)n->i[0], (uint64_t)n->i[1], dx)
              : CB_OK;
}

cb_tensor *cb_dropout(cb_graph *g, cb_tensor *x, float p) {
    if (!x) return NULL;
    if (p < 0.0f || p >= 1.0f)
        return cb_op_fail(CB_ERR_ARG, "dropout: probability %g outside [0, 1)", (double)p);
    if (!g->training || p == 0.0f) return x;
    if (!cb_op_check_float(g, "dropout", x, "input")) return NULL;
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, x->shape);
    if (!y) return NULL;
    uint64_t offset = g->rng_counter;
    g->rng_counter += (uint64_t)cb_tensor_numel(x);
    CB_OP_KERNEL("dropout", cb_k(g)->dropout_fwd(x, p, g->seed, offset, y));
    cb_node *n = cb_graph_record(g, "dropout", dropout_backward, y, &x, 1);
    if (n) {
        n->f[0] = p;
        n->i[0] = (int64_t)g->seed;
        n->i[1] = (int64_t)offset;
    }
    return y;
}
