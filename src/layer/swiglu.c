/* SwiGLULayer: y = W_down (silu(W_gate x) * (W_up x)).
 *   x [B, T, d]; W_gate, W_up [d_ff, d]; W_down [d, d_ff] */
#include "model/module_impl.h"

cb_status cb_swiglu_new(cb_module **out, int d, int d_ff, bool bias) {
    if (d <= 0 || d_ff <= 0)
        return cb_fail(CB_ERR_ARG, "SwiGLULayer: d_model %d and d_ff %d must be positive", d, d_ff);
    CB_TRY(cb_module_alloc(out, CB_MOD_SWIGLU));
    cb_module *m = *out;
    m->d_in = m->d_out = d;
    m->d_ff = d_ff;
    m->bias = bias;
    int64_t up[2] = {d_ff, d}, down[2] = {d, d_ff}, bf = d_ff, bd = d;
    CB_TRY(cb_module_add_param(m, "w_gate.weight", 2, up, CB_INIT_UNIFORM_FAN_IN, (float)d, false));
    if (bias) CB_TRY(cb_module_add_param(m, "w_gate.bias", 1, &bf, CB_INIT_UNIFORM_FAN_IN, (float)d, true));
    CB_TRY(cb_module_add_param(m, "w_up.weight", 2, up, CB_INIT_UNIFORM_FAN_IN, (float)d, false));
    if (bias) CB_TRY(cb_module_add_param(m, "w_up.bias", 1, &bf, CB_INIT_UNIFORM_FAN_IN, (float)d, true));
    CB_TRY(cb_module_add_param(m, "w_down.weight", 2, down, CB_INIT_UNIFORM_FAN_IN, (float)d_ff, false));
    if (bias) CB_TRY(cb_module_add_param(m, "w_down.bias", 1, &bd, CB_INIT_UNIFORM_FAN_IN, (float)d_ff, true));
    return CB_OK;
}

cb_tensor *cb_layer_swiglu_forward(cb_module *m, cb_graph *g, cb_tensor *x) {
    cb_tensor *gate = cb_linear(g, x, cb_module_param(m, "w_gate.weight"), cb_module_param(m, "w_gate.bias"));
    cb_tensor *up = cb_linear(g, x, cb_module_param(m, "w_up.weight"), cb_module_param(m, "w_up.bias"));
    return cb_linear(g, cb_swiglu(g, gate, up), cb_module_param(m, "w_down.weight"),
                     cb_module_param(m, "w_down.bias"));
}
