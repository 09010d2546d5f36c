/* Token embedding: integer ids index rows directly (never through a float dtype). */
#include "ops/op_util.h"

static cb_status embedding_backward(cb_graph *g, cb_node *n) {
    cb_tensor *dW = cb_need_grad(g, n->in[1]);
    return dW ? cb_k(g)->embedding_bwd(n->in[0], n->out->grad, dW) : CB_OK;
}

cb_tensor *cb_embedding(cb_graph *g, const cb_tensor *ids, cb_tensor *W) {
    if (!ids || !W) return NULL;
    if (ids->dtype != CB_I32 && ids->dtype != CB_I64)
        return cb_op_fail(CB_ERR_ARG, "embedding: ids must be int32 or int64, got %s",
                          cb_dtype_name(ids->dtype));
    if (!cb_op_check_float(g, "embedding", W, "table")) return NULL;
    if (W->ndim != 2 || ids->ndim < 1 || ids->ndim > 3)
        return cb_op_fail(CB_ERR_SHAPE, "embedding: table must be [V, D] and ids at most 3-d");
    int64_t shape[CB_MAX_DIMS];
    for (int i = 0; i < ids->ndim; i++) shape[i] = ids->shape[i];
    shape[ids->ndim] = W->shape[1];
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, ids->ndim + 1, shape);
    if (!y) return NULL;
    CB_OP_KERNEL("embedding", cb_k(g)->embedding_fwd(ids, cb_op_weight(g, W), y));
    cb_tensor *ins[2] = {(cb_tensor *)ids, W};
    cb_graph_record(g, "embedding", embedding_backward, y, ins, 2);
    return y;
}
