/* Shape ops: reshape (a view), transpose, slice, concat, stack (copies through strided_copy).
 * Shapes are right-aligned into 4 dims for the kernel; padded dims have size 1. */
#include <string.h>

#include "ops/op_util.h"

/* Contiguous strides of t, right-aligned into 4 dims (padded dims get stride 0). */
static void strides4(const cb_tensor *t, int64_t st[4]) {
    int64_t s = 1;
    for (int i = 3; i >= 0; i--) {
        int d = t->ndim - (4 - i);
        if (d >= 0) {
            st[i] = s;
            s *= t->shape[d];
        } else {
            st[i] = 0;
        }
    }
}

static void shape4(const cb_tensor *t, int64_t sh[4]) {
    for (int i = 0; i < 4; i++) {
        int d = t->ndim - (4 - i);
        sh[i] = d >= 0 ? t->shape[d] : 1;
    }
}

static cb_status reshape_backward(cb_graph *g, cb_node *n) {
    (void)g;
    (void)n; /* the view's gradient aliases the input's (cb_graph_grad) */
    return CB_OK;
}

cb_tensor *cb_reshape(cb_graph *g, cb_tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (ndim < 0 || ndim > CB_MAX_DIMS || n != cb_tensor_numel(x)) {
        char s1[64], s2[64];
        return cb_op_fail(CB_ERR_SHAPE, "reshape: cannot view %s as %s",
                          cb_shape_str(x, s1, sizeof s1), cb_dims_str(ndim, shape, s2, sizeof s2));
    }
    cb_tensor *y = cb_graph_view(g, x, ndim, shape);
    if (!y) return NULL;
    cb_graph_record(g, "reshape", reshape_backward, y, &x, 1);
    return y;
}

static cb_status transpose_backward(cb_graph *g, cb_node *n) {
    cb_tensor *x = n->in[0], *dx = cb_need_grad(g, x), *dy = n->out->grad;
    if (!dx) return CB_OK;
    int64_t xs[4], ys[4], sh[4];
    strides4(x, xs);
    strides4(dy, ys);
    shape4(dy, sh);
    int a = (int)n->i[0] + 4 - x->ndim, b = (int)n->i[1] + 4 - x->ndim;
    int64_t t = xs[a];
    xs[a] = xs[b];
    xs[b] = t;
    return cb_k(g)->strided_copy(dy, 0, ys, dx, 0, xs, sh, true);
}

cb_tensor *cb_transpose(cb_graph *g, cb_tensor *x, int d0, int d1) {
    if (!x || !cb_op_check_float(g, "transpose", x, "input")) return NULL;
    if (d0 < 0) d0 += x->ndim;
    if (d1 < 0) d1 += x->ndim;
    if (d0 < 0 || d1 < 0 || d0 >= x->ndim || d1 >= x->ndim)
        return cb_op_fail(CB_ERR_ARG, "transpose: dims out of range for rank %d", x->ndim);
    int64_t shape[CB_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[d0] = x->shape[d1];
    shape[d1] = x->shape[d0];
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, shape);
    if (!y) return NULL;
    int64_t xs[4], ys[4], sh[4];
    strides4(x, xs);
    strides4(y, ys);
    shape4(y, sh);
    int a = d0 + 4 - x->ndim, b = d1 + 4 - x->ndim;
    int64_t t = xs[a];
    xs[a] = xs[b];
    xs[b] = t;
    CB_OP_KERNEL("transpose", cb_k(g)->strided_copy(x, 0, xs, y, 0, ys, sh, false));
    cb_node *n = cb_graph_record(g, "transpose", transpose_backward, y, &x, 1);
    if (n) {
        n->i[0] = d0;
        n->i[1] = d1;
    }
    return y;
}

static cb_status slice_backward(cb_graph *g, cb_node *n) {
    cb_tensor *x = n->in[0], *dx = cb_need_grad(g, x), *dy = n->out->grad;
    if (!dx) return CB_OK;
    int64_t xs[4], ys[4], sh[4];
    strides4(x, xs);
    strides4(dy, ys);
    shape4(dy, sh);
    int a = (int)n->i[0] + 4 - x->ndim;
    return cb_k(g)->strided_copy(dy, 0, ys, dx, n->i[1] * xs[a], xs, sh, true);
}

cb_tensor *cb_slice(cb_graph *g, cb_tensor *x, int dim, int64_t start, int64_t len) {
    if (!x || !cb_op_check_float(g, "slice", x, "input")) return NULL;
    if (dim < 0) dim += x->ndim;
    if (dim < 0 || dim >= x->ndim || start < 0 || len < 0 || start + len > x->shape[dim]) {
        char s[64];
        return cb_op_fail(CB_ERR_ARG, "slice: [%lld, %lld) of dim %d is outside %s",
                          (long long)start, (long long)(start + len), dim,
                          cb_shape_str(x, s, sizeof s));
    }
    int64_t shape[CB_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, shape);
    if (!y) return NULL;
    int64_t xs[4], ys[4], sh[4];
    strides4(x, xs);
    strides4(y, ys);
    shape4(y, sh);
    int a = dim + 4 - x->ndim;
    CB_OP_KERNEL("slice", cb_k(g)->strided_copy(x, start * xs[a], xs, y, 0, ys, sh, false));
    cb_node *n = cb_graph_record(g, "slice", slice_backward, y, &x, 1);
    if (n) {
        n->i[0] = dim;
        n->i[1] = start;
    }
    return y;
}

/* in[0..n) are the parts; i[0] = dim, i[1] = number of parts (<= CB_NODE_MAX_IN), or extra
 * holds the array when there are more. */
static cb_status concat_backward(cb_graph *g, cb_node *n) {
    int dim = (int)n->i[0], np = (int)n->i[1];
    cb_tensor *const *parts = np <= CB_NODE_MAX_IN ? n->in : (cb_tensor *const *)n->extra;
    cb_tensor *dy = n->out->grad;
    int64_t ys[4];
    strides4(dy, ys);
    int a = dim + 4 - dy->ndim;
    int64_t off = 0;
    for (int p = 0; p < np; p++) {
        cb_tensor *dx = cb_need_grad(g, parts[p]);
        if (dx) {
            int64_t xs[4], sh[4];
            strides4(dx, xs);
            shape4(dx, sh);
            CB_TRY(cb_k(g)->strided_copy(dy, off * ys[a], ys, dx, 0, xs, sh, true));
        }
        off += parts[p]->shape[dim];
    }
    return CB_OK;
}

cb_tensor *cb_concat(cb_graph *g, cb_tensor *const *xs, int n, int dim) {
    if (n <= 0) return cb_op_fail(CB_ERR_ARG, "concat: nothing to concatenate");
    for (int p = 0; p < n; p++)
        if (!xs[p] || !cb_op_check_float(g, "concat", xs[p], "input")) return NULL;
    int nd = xs[0]->ndim;
    if (dim < 0) dim += nd;
    if (dim < 0 || dim >= nd) return cb_op_fail(CB_ERR_ARG, "concat: dim out of range");
    int64_t shape[CB_MAX_DIMS];
    memcpy(shape, xs[0]->shape, sizeof shape);
    shape[dim] = 0;
    for (int p = 0; p < n; p++) {
        bool ok = xs[p]->ndim == nd;
        for (int d = 0; ok && d < nd; d++) ok = d == dim || xs[p]->shape[d] == xs[0]->shape[d];
        if (!ok) {
            char s1[64], s2[64];
            return cb_op_fail(CB_ERR_SHAPE, "concat: part %d %s does not fit part 0 %s on dim %d", p,
                              cb_shape_str(xs[p], s1, sizeof s1), cb_shape_str(xs[0], s2, sizeof s2), dim);
        }
        shape[dim] += xs[p]->shape[dim];
    }
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, nd, shape);
    if (!y) return NULL;
    int64_t ys[4];
    strides4(y, ys);
    int a = dim + 4 - nd;
    int64_t off = 0;
    for (int p = 0; p < n; p++) {
        int64_t ps[4], sh[4];
        strides4(xs[p], ps);
        shape4(xs[p], sh);
        CB_OP_KERNEL("concat", cb_k(g)->strided_copy(xs[p], 0, ps, y, off * ys[a], ys, sh, false));
        off += xs[p]->shape[dim];
    }
    cb_node *node = cb_graph_record(g, "concat", concat_backward, y, xs, n);
    if (node) {
        node->i[0] = dim;
        node->i[1] = n;
        if (n > CB_NODE_MAX_IN) { /* inputs beyond the node's slots: keep the whole list */
            cb_tensor **copy = cb_arena_alloc(&g->host, sizeof(cb_tensor *) * (size_t)n);
            if (!copy) return NULL;
            memcpy(copy, xs, sizeof(cb_tensor *) * (size_t)n);
            node->extra = copy;
        }
    }
    return y;
}

cb_tensor *cb_stack(cb_graph *g, cb_tensor *const *xs, int n) {
    if (n <= 0 || n > 64) return cb_op_fail(CB_ERR_ARG, "stack: %d parts (1..64 allowed)", n);
    if (!xs[0]) return NULL;
    if (xs[0]->ndim >= CB_MAX_DIMS)
        return cb_op_fail(CB_ERR_SHAPE, "stack: parts already have %d dims", xs[0]->ndim);
    cb_tensor *views[64];
    int64_t shape[CB_MAX_DIMS];
    shape[0] = 1;
    for (int p = 0; p < n; p++) {
        if (!xs[p]) return NULL;
        if (!cb_tensor_same_shape(xs[p], xs[0]))
            return cb_op_fail(CB_ERR_SHAPE, "stack: part %d has a different shape", p);
        memcpy(shape + 1, xs[p]->shape, sizeof(int64_t) * (size_t)xs[p]->ndim);
        views[p] = cb_reshape(g, xs[p], xs[p]->ndim + 1, shape);
        if (!views[p]) return NULL;
    }
    return cb_concat(g, views, n, 0);
}
