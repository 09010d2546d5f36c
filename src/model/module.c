/* Module tree plumbing: construction helpers, dispatch of forward by kind, walking, freeing. */
#include "model/module_impl.h"

#include "caramba/trace.h"

#include <stdlib.h>
#include <string.h>

static const char *kind_names[CB_MOD_KIND_COUNT] = {
    [CB_MOD_LINEAR] = "LinearLayer",          [CB_MOD_RMSNORM] = "RMSNormLayer",
    [CB_MOD_LAYERNORM] = "LayerNormLayer",    [CB_MOD_DROPOUT] = "DropoutLayer",
    [CB_MOD_SWIGLU] = "SwiGLULayer",          [CB_MOD_ATTENTION] = "AttentionLayer",
    [CB_MOD_STACKED] = "StackedTopology",     [CB_MOD_SEQUENTIAL] = "SequentialTopology",
    [CB_MOD_RESIDUAL] = "ResidualTopology",   [CB_MOD_NESTED] = "NestedTopology",
    [CB_MOD_PARALLEL] = "ParallelTopology",   [CB_MOD_BRANCHING] = "BranchingTopology",
    [CB_MOD_CYCLIC] = "CyclicTopology",       [CB_MOD_RECURRENT] = "RecurrentTopology",
};

const char *cb_module_kind_name(cb_module_kind k) {
    return (unsigned)k < CB_MOD_KIND_COUNT ? kind_names[k] : "?";
}

cb_status cb_module_alloc(cb_module **out, cb_module_kind kind) {
    *out = calloc(1, sizeof **out);
    if (!*out) return cb_fail(CB_ERR_NOMEM, "cannot allocate a %s", cb_module_kind_name(kind));
    (*out)->kind = kind;
    (*out)->attn_index = -1;
    return CB_OK;
}

cb_status cb_module_add_param(cb_module *m, const char *local, int ndim, const int64_t *shape,
                              cb_init init, float init_scale, bool no_decay) {
    cb_param *np = realloc(m->params, sizeof *np * (size_t)(m->n_params + 1));
    if (!np) return cb_fail(CB_ERR_NOMEM, "parameter list");
    m->params = np;
    cb_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    p->local = strdup(local);
    p->t = calloc(1, sizeof *p->t);
    if (!p->local || !p->t) return cb_fail(CB_ERR_NOMEM, "parameter %s", local);
    m->n_params++;
    CB_TRY(cb_tensor_init(p->t, CB_F32, CB_CPU, ndim, shape, NULL));
    p->init = init;
    p->init_scale = init_scale;
    p->no_decay = no_decay;
    return CB_OK;
}

cb_tensor *cb_module_param(const cb_module *m, const char *local) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].local, local) == 0) return m->params[i].t;
    return NULL;
}

void cb_module_free(cb_module *m) {
    if (!m) return;
    for (int i = 0; i < m->n_children; i++) cb_module_free(m->children[i]);
    free(m->children);
    for (int i = 0; i < m->n_params; i++) {
        free(m->params[i].local);
        free(m->params[i].name);
        cb_tensor_free(m->params[i].t);
    }
    free(m->params);
    free(m->path);
    free(m);
}

void cb_module_walk(cb_module *m, void (*fn)(cb_module *m, void *user), void *user) {
    fn(m, user);
    for (int i = 0; i < m->n_children; i++) cb_module_walk(m->children[i], fn, user);
}

cb_tensor *cb_module_forward(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx) {
    if (!x) return NULL;
    cb_tensor *y = NULL;
    switch (m->kind) {
    case CB_MOD_LINEAR: y = cb_layer_linear_forward(m, g, x); break;
    case CB_MOD_RMSNORM: y = cb_layer_rmsnorm_forward(m, g, x); break;
    case CB_MOD_LAYERNORM: y = cb_layer_layernorm_forward(m, g, x); break;
    case CB_MOD_DROPOUT: y = cb_dropout(g, x, m->p); break;
    case CB_MOD_SWIGLU: y = cb_layer_swiglu_forward(m, g, x); break;
    case CB_MOD_ATTENTION: y = cb_layer_attention_forward(m, g, x, ctx); break;
    default: y = cb_topology_forward(m, g, x, ctx); break;
    }
    if (y && g->trace) cb_trace_record(g->trace, m, y);
    if (!y) cb_fail_context(CB_ERR_ARG, "%s (%s)", m->path ? m->path : "?", cb_module_kind_name(m->kind));
    return y;
}
