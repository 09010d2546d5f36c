/* RMSNormLayer and LayerNormLayer (normalise the last dim).   weight, bias [d] */
#include "model/module_impl.h"

cb_status cb_rmsnorm_new(cb_module **out, int d, float eps, bool affine) {
    if (d <= 0 || !(eps > 0))
        return cb_fail(CB_ERR_ARG, "RMSNormLayer: d_model %d and eps %g must be positive", d, (double)eps);
    CB_TRY(cb_module_alloc(out, CB_MOD_RMSNORM));
    (*out)->d_in = (*out)->d_out = d;
    (*out)->eps = eps;
    (*out)->affine = affine;
    int64_t s = d;
    if (affine) CB_TRY(cb_module_add_param(*out, "weight", 1, &s, CB_INIT_ONES, 0, true));
    return CB_OK;
}

cb_tensor *cb_layer_rmsnorm_forward(cb_module *m, cb_graph *g, cb_tensor *x) {
    if (cb_tensor_cols(x) != m->d_in) {
        char s[64];
        cb_fail(CB_ERR_SHAPE, "expected last dim %d, got %s", m->d_in, cb_shape_str(x, s, sizeof s));
        return NULL;
    }
    return cb_rmsnorm(g, x, m->affine ? m->params[0].t : NULL, m->eps);
}

cb_status cb_layernorm_new(cb_module **out, int d, float eps) {
    if (d <= 0 || !(eps > 0))
        return cb_fail(CB_ERR_ARG, "LayerNormLayer: d_model %d and eps %g must be positive", d, (double)eps);
    CB_TRY(cb_module_alloc(out, CB_MOD_LAYERNORM));
    (*out)->d_in = (*out)->d_out = d;
    (*out)->eps = eps;
    int64_t s = d;
    CB_TRY(cb_module_add_param(*out, "norm.weight", 1, &s, CB_INIT_ONES, 0, true));
    CB_TRY(cb_module_add_param(*out, "norm.bias", 1, &s, CB_INIT_ZEROS, 0, true));
    return CB_OK;
}

cb_tensor *cb_layer_layernorm_forward(cb_module *m, cb_graph *g, cb_tensor *x) {
    return cb_layernorm(g, x, m->params[0].t, m->params[1].t, m->eps);
}

cb_status cb_dropout_new(cb_module **out, float p) {
    if (!(p >= 0 && p < 1)) return cb_fail(CB_ERR_ARG, "DropoutLayer: p %g outside [0, 1)", (double)p);
    CB_TRY(cb_module_alloc(out, CB_MOD_DROPOUT));
    (*out)->p = p;
    return CB_OK;
}
