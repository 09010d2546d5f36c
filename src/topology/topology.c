/* Topologies: how children compose.
 *   Stacked, Sequential, Nested, Cyclic, Recurrent: x -> c_n(...c_1(x))
 *   Residual:  x + chain(x)      (one skip around the whole chain)
 *   Parallel:  stack(c_i(x)) on a new leading dim  -> [N, B, T, D]
 *   Branching: concat(c_i(x)) on the feature (last) dim -> [B, T, sum D_i] */
#include <stdlib.h>
#include <string.h>

#include "model/module_impl.h"

cb_status cb_topology_new(cb_module **out, cb_module_kind kind, cb_module **children, int n) {
    *out = NULL;
    if (!cb_module_is_topology(kind) || kind >= CB_MOD_KIND_COUNT)
        return cb_fail(CB_ERR_ARG, "not a topology kind: %d", (int)kind);
    if (n == 0 && (kind == CB_MOD_SEQUENTIAL || kind == CB_MOD_PARALLEL ||
                   kind == CB_MOD_RECURRENT || kind == CB_MOD_BRANCHING))
        return cb_fail(CB_ERR_ARG, "%s requires at least one layer", cb_module_kind_name(kind));
    CB_TRY(cb_module_alloc(out, kind));
    cb_module *m = *out;
    if (n > 0) {
        m->children = malloc(sizeof *m->children * (size_t)n);
        if (!m->children) {
            free(m);
            *out = NULL;
            return cb_fail(CB_ERR_NOMEM, "topology children");
        }
        memcpy(m->children, children, sizeof *m->children * (size_t)n);
    }
    m->n_children = n;
    return CB_OK;
}

static cb_tensor *chain(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx) {
    for (int i = 0; i < m->n_children && x; i++) x = cb_module_forward(m->children[i], g, x, ctx);
    return x;
}

/* Chains (Stacked, Sequential, Nested, Cyclic, Recurrent) are where activation checkpointing
 * applies: each Residual / Parallel / Branching child is one checkpointed block. */
static cb_tensor *chain_of_blocks(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx) {
    if (!g->checkpointing) return chain(m, g, x, ctx);
    for (int i = 0; i < m->n_children && x; i++)
        x = cb_module_forward_checkpointed(m->children[i], g, x, ctx);
    return x;
}

cb_tensor *cb_topology_forward(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx) {
    switch (m->kind) {
    case CB_MOD_RESIDUAL: return cb_add(g, x, chain(m, g, x, ctx));
    case CB_MOD_PARALLEL:
    case CB_MOD_BRANCHING: {
        cb_tensor *outs[64];
        if (m->n_children > 64) {
            cb_fail(CB_ERR_UNSUPPORTED, "more than 64 branches");
            return NULL;
        }
        for (int i = 0; i < m->n_children; i++) {
            outs[i] = cb_module_forward(m->children[i], g, x, ctx);
            if (!outs[i]) return NULL;
        }
        return m->kind == CB_MOD_PARALLEL ? cb_stack(g, outs, m->n_children)
                                          : cb_concat(g, outs, m->n_children, -1);
    }
    default: return chain_of_blocks(m, g, x, ctx);
    }
}

int cb_module_out_width(const cb_module *m, int d) {
    switch (m->kind) {
    case CB_MOD_LINEAR:
        if (d != m->d_in) goto mismatch;
        return m->d_out;
    case CB_MOD_DROPOUT: return d;
    case CB_MOD_RMSNORM:
    case CB_MOD_LAYERNORM:
    case CB_MOD_SWIGLU:
    case CB_MOD_ATTENTION:
        if (d != m->d_in) goto mismatch;
        return d;
    case CB_MOD_RESIDUAL: {
        int w = d;
        for (int i = 0; i < m->n_children && w >= 0; i++) w = cb_module_out_width(m->children[i], w);
        if (w >= 0 && w != d) {
            cb_fail(CB_ERR_SHAPE, "residual branch changes the width from %d to %d", d, w);
            return -1;
        }
        return w;
    }
    case CB_MOD_PARALLEL:
    case CB_MOD_BRANCHING: {
        int sum = 0, first = -1;
        for (int i = 0; i < m->n_children; i++) {
            int w = cb_module_out_width(m->children[i], d);
            if (w < 0) return -1;
            if (m->kind == CB_MOD_PARALLEL && first >= 0 && w != first) {
                cb_fail(CB_ERR_SHAPE, "parallel branches differ in width (%d vs %d)", first, w);
                return -1;
            }
            first = w;
            sum += w;
        }
        return m->kind == CB_MOD_PARALLEL ? first : sum;
    }
    default: {
        int w = d;
        for (int i = 0; i < m->n_children && w >= 0; i++) w = cb_module_out_width(m->children[i], w);
        return w;
    }
    }
mismatch:
    cb_fail(CB_ERR_SHAPE, "%s expects width %d but receives %d", cb_module_kind_name(m->kind),
            m->d_in, d);
    return -1;
}
