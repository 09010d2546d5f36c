/* Activation checkpointing: a block (a Residual, Parallel or Branching child of a chain) runs its forward in a scratch
 * graph with grad off and keeps only its input; backward re-runs the block with grad on in the
 * scratch graph, back-propagates the output gradient through it, and adds the input gradient.
 * Parameter gradients accumulate straight into the persistent parameter grads. Dropout inside
 * the block draws the same counter-based mask both times (the counter is restored). The
 * activation memory of a step becomes the block inputs plus one block's activations. */
#include <stdlib.h>
#include <string.h>

#include "caramba/device.h"
#include "model/module_impl.h"
#include "ops/kernels.h"

typedef struct recompute_extra {
    cb_module *m;
    uint64_t rng_counter; /* dropout counter when the block first ran */
} recompute_extra;

static cb_status scratch(cb_graph *g, cb_graph **out) {
    if (!g->recompute) {
        cb_graph *s = calloc(1, sizeof *s);
        if (!s) return cb_fail(CB_ERR_NOMEM, "recompute graph");
        cb_status st = cb_graph_init(s, g->device);
        if (st != CB_OK) {
            free(s);
            return st;
        }
        g->recompute = s;
    }
    cb_graph *s = g->recompute;
    cb_graph_reset(s);
    s->act_dtype = g->act_dtype;
    s->training = g->training;
    s->seed = g->seed;
    s->profile = false;
    *out = s;
    return CB_OK;
}

static cb_tensor *copy_into(cb_graph *dst, const cb_tensor *src) {
    cb_tensor *t = cb_graph_tensor(dst, src->dtype, src->ndim, src->shape);
    if (t && cb_device_copy(dst->device, t->data, src->device, src->data, cb_tensor_nbytes(src)) != CB_OK)
        return NULL;
    return t;
}

static cb_status recompute_backward(cb_graph *g, cb_node *n) {
    recompute_extra *e = n->extra;
    cb_graph *s = NULL;
    CB_TRY(scratch(g, &s));
    s->grad_enabled = true;
    s->rng_counter = e->rng_counter;
    cb_tensor *x = n->in[0], *xs = copy_into(s, x);
    if (!xs) return CB_ERR_NOMEM;
    xs->flags |= CB_TENSOR_REQUIRES_GRAD;
    cb_tensor *ys = cb_module_forward(e->m, s, xs, NULL);
    if (!ys) return cb_fail_context(CB_ERR_INTERNAL, "re-running %s", e->m->path ? e->m->path : "block");
    CB_TRY(cb_backward_from(s, ys, n->out->grad));
    cb_tensor *dx = cb_tensor_requires_grad(x) ? cb_graph_grad(g, x) : NULL;
    if (dx && xs->grad) CB_TRY(((const cb_kernels *)g->kernels)->axpy(1.0f, xs->grad, dx));
    return CB_OK;
}

cb_tensor *cb_module_forward_checkpointed(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx) {
    /* blocks are the non-chain topologies (Residual, Parallel, Branching); chains nested in
     * chains are walked through, so Stacked[Nested[blocks...]] checkpoints every block */
    bool block = m->kind == CB_MOD_RESIDUAL || m->kind == CB_MOD_PARALLEL || m->kind == CB_MOD_BRANCHING;
    if (!g->checkpointing || !g->grad_enabled || ctx || !x || !cb_tensor_requires_grad(x) || !block ||
        cb_tensor_nbytes(x) < g->checkpoint_min_bytes)
        return cb_module_forward(m, g, x, ctx);
    cb_graph *s = NULL;
    if (scratch(g, &s) != CB_OK) return NULL;
    s->grad_enabled = false;
    s->rng_counter = g->rng_counter;
    uint64_t rng0 = g->rng_counter;
    cb_tensor *ys = cb_module_forward(m, s, x, NULL);
    if (!ys) return NULL;
    g->rng_counter = s->rng_counter; /* as if the block had run inline */
    cb_tensor *y = copy_into(g, ys);
    if (!y) return NULL;
    cb_node *n = cb_graph_record(g, "recompute", recompute_backward, y, &x, 1);
    if (n) {
        recompute_extra *e = cb_arena_alloc(&g->host, sizeof *e);
        if (!e) return NULL;
        e->m = m;
        e->rng_counter = rng0;
        n->extra = e;
    }
    return y;
}
