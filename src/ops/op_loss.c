/* Softmax and the fused log-softmax + cross-entropy loss. */
#include "caramba/device.h"
#include "ops/op_util.h"

static cb_status softmax_backward(cb_graph *g, cb_node *n) {
    cb_tensor *dx = cb_need_grad(g, n->in[0]);
    return dx ? cb_k(g)->softmax_bwd(n->out, n->out->grad, dx) : CB_OK;
}

cb_tensor *cb_softmax(cb_graph *g, cb_tensor *x) {
    if (!x || !cb_op_check_float(g, "softmax", x, "input")) return NULL;
    cb_tensor *y = cb_graph_tensor(g, g->act_dtype, x->ndim, x->shape);
    if (!y) return NULL;
    CB_OP_KERNEL("softmax", cb_k(g)->softmax_fwd(x, y));
    cb_graph_record(g, "softmax", softmax_backward, y, &x, 1);
    return y;
}

static cb_status ce_backward(cb_graph *g, cb_node *n) {
    /* the logits' gradient is usually first written here: a fresh buffer skips the zero fill */
    bool fresh = false;
    cb_tensor *dl = cb_graph_grad_uninit(g, n->in[0], &fresh);
    if (!dl) return CB_OK;
    float dloss;
    CB_TRY(cb_device_copy(CB_CPU, &dloss, n->out->grad->device, n->out->grad->data, sizeof dloss));
    return cb_k(g)->cross_entropy_bwd(n->in[0], n->in[1], n->i[0], n->aux[0], dloss, n->i[1], dl,
                                      fresh);
}

cb_tensor *cb_cross_entropy(cb_graph *g, cb_tensor *logits, const cb_tensor *targets,
                            int64_t ignore_index) {
    if (!logits || !targets) return NULL;
    if (!cb_op_check_float(g, "cross_entropy", logits, "logits")) return NULL;
    if (targets->dtype != CB_I32 && targets->dtype != CB_I64)
        return cb_op_fail(CB_ERR_ARG, "cross_entropy: targets must be int32 or int64");
    int64_t N = cb_tensor_rows(logits);
    if (cb_tensor_numel(targets) != N) {
        char s1[64], s2[64];
        return cb_op_fail(CB_ERR_SHAPE, "cross_entropy: logits %s and targets %s disagree",
                          cb_shape_str(logits, s1, sizeof s1),
                          cb_shape_str(targets, s2, sizeof s2));
    }
    int64_t one = 1;
    cb_tensor *loss = cb_graph_tensor(g, CB_F32, 1, &one);
    cb_tensor *lse = cb_graph_tensor(g, CB_F32, 1, &N);
    if (!loss || !lse) return NULL;
    int64_t count = 0;
    CB_OP_KERNEL("cross_entropy",
                 cb_k(g)->cross_entropy_fwd(logits, targets, ignore_index, loss, lse, &count));
    cb_tensor *ins[2] = {logits, (cb_tensor *)targets};
    cb_node *n = cb_graph_record(g, "cross_entropy", ce_backward, loss, ins, 2);
    if (n) {
        n->i[0] = ignore_index;
        n->i[1] = count;
        n->aux[0] = lse;
    }
    return loss;
}
