/* LinearLayer: y = x W^T + b over the last dim.   W [d_out, d_in], b [d_out] */
#include "model/module_impl.h"

cb_status cb_linear_new(cb_module **out, int d_in, int d_out, bool bias) {
    if (d_in <= 0 || d_out <= 0)
        return cb_fail(CB_ERR_ARG, "LinearLayer: d_in %d and d_out %d must be positive", d_in, d_out);
    CB_TRY(cb_module_alloc(out, CB_MOD_LINEAR));
    cb_module *m = *out;
    m->d_in = d_in;
    m->d_out = d_out;
    m->bias = bias;
    int64_t w[2] = {d_out, d_in}, b = d_out;
    CB_TRY(cb_module_add_param(m, "linear.weight", 2, w, CB_INIT_UNIFORM_FAN_IN, (float)d_in, false));
    if (bias) CB_TRY(cb_module_add_param(m, "linear.bias", 1, &b, CB_INIT_UNIFORM_FAN_IN, (float)d_in, true));
    return CB_OK;
}

cb_tensor *cb_layer_linear_forward(cb_module *m, cb_graph *g, cb_tensor *x) {
    return cb_linear(g, x, m->params[0].t, m->bias ? m->params[1].t : NULL);
}
