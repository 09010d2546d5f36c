/* Private interface between the module plumbing, the layers and the topologies. */
#ifndef CARAMBA_MODULE_IMPL_H
#define CARAMBA_MODULE_IMPL_H

#include "caramba/infer_ctx.h"
#include "caramba/module.h"

cb_status cb_module_alloc(cb_module **out, cb_module_kind kind);
cb_status cb_module_add_param(cb_module *m, const char *local, int ndim, const int64_t *shape,
                              cb_init init, float init_scale, bool no_decay);
cb_tensor *cb_module_param(const cb_module *m, const char *local);

cb_tensor *cb_layer_linear_forward(cb_module *m, cb_graph *g, cb_tensor *x);
cb_tensor *cb_layer_rmsnorm_forward(cb_module *m, cb_graph *g, cb_tensor *x);
cb_tensor *cb_layer_layernorm_forward(cb_module *m, cb_graph *g, cb_tensor *x);
cb_tensor *cb_layer_swiglu_forward(cb_module *m, cb_graph *g, cb_tensor *x);
cb_tensor *cb_layer_attention_forward(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx);
/* Forward of a chain's child under activation checkpointing (g->checkpointing): topology
 * children keep only their input and re-run in backward; anything else runs normally. */
cb_tensor *cb_module_forward_checkpointed(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx);
cb_tensor *cb_topology_forward(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx);

#endif
