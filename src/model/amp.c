/* Mixed precision (AMP) for a model on the GPU: 16-bit copies of the matrix parameters.
 *
 * The f32 parameters stay the master weights (the optimizer updates them, gradients are f32).
 * Every 2-d parameter (the GEMM operands: projections, the embedding table, the head) gets a
 * 16-bit copy in param->lowp; the ops read it instead of the master when the graph's act_dtype
 * is that dtype (ops/op_util.h cb_op_weight), so each GEMM runs bf16 x bf16 on the tensor cores
 * without converting the weight on every call. Norm weights and biases (1-d) are read as f32 by
 * the kernels directly. The multi-tensor AdamW writes the master and its copy in the same pass;
 * anything else that changes the masters calls cb_model_refresh_lowp(). */
#include "caramba/model.h"
#include "caramba/device.h"
#include "ops/kernels.h"

static bool wants_copy(const cb_tensor *t) {
    return t->ndim == 2 && t->dtype == CB_F32;
}

cb_status cb_model_refresh_lowp(cb_model *m) {
    const cb_kernels *k = NULL;
    for (int i = 0; i < m->n_params; i++) {
        cb_tensor *t = m->params[i]->t;
        if (!t->lowp) continue;
        if (!k && !(k = cb_kernels_for(t->device))) return CB_ERR_UNSUPPORTED;
        cb_status st = k->scale(t, 1.0f, t->lowp); /* converts f32 -> 16-bit, rounding to nearest */
        if (st != CB_OK) return cb_fail_context(st, "16-bit copy of %s", m->params[i]->name);
    }
    return CB_OK;
}

cb_status cb_model_set_compute_dtype(cb_model *m, cb_dtype dt) {
    if (dt != CB_F32 && dt != CB_BF16 && dt != CB_F16)
        return cb_fail(CB_ERR_ARG, "compute dtype must be float32, bfloat16 or float16, got %s",
                       cb_dtype_name(dt));
    if (dt != CB_F32 && m->device != CB_CUDA)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "%s compute needs the model on cuda (the CPU computes "
                       "in float32)",
                       cb_dtype_name(dt));
    for (int i = 0; i < m->n_params; i++) {
        cb_tensor *t = m->params[i]->t;
        if (t->lowp && (dt == CB_F32 || t->lowp->dtype != dt)) {
            cb_tensor_free(t->lowp);
            t->lowp = NULL;
        }
        if (dt == CB_F32 || t->lowp || !wants_copy(t)) continue;
        cb_status st = cb_tensor_new(&t->lowp, dt, t->device, t->ndim, t->shape);
        if (st != CB_OK) return cb_fail_context(st, "16-bit copy of %s", m->params[i]->name);
    }
    m->compute_dtype = dt;
    return dt == CB_F32 ? CB_OK : cb_model_refresh_lowp(m);
}
