/* Autograd tape and per-step arenas (see graph.h). */
#include "caramba/graph.h"

#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "caramba/device.h"
#include "ops/cuda_api.h"
#include "ops/kernels.h"

cb_status cb_graph_init(cb_graph *g, cb_device dev) {
    memset(g, 0, sizeof *g);
    const cb_kernels *k = cb_kernels_for(dev);
    if (!k) return CB_ERR_UNSUPPORTED;
    g->device = dev;
    g->act_dtype = CB_F32;
    g->kernels = k;
    g->grad_enabled = true;
    g->seed = 0x5eed;
    const char *prof = getenv("CARAMBA_PROFILE");
    g->profile = prof && *prof && strcmp(prof, "0") != 0;
    cb_arena_init(&g->act, dev);
    cb_arena_init(&g->host, CB_CPU);
    return CB_OK;
}

void cb_graph_reset(cb_graph *g) {
    g->n_nodes = 0;
    cb_arena_reset(&g->act);
    cb_arena_reset(&g->host);
}

void cb_graph_free(cb_graph *g) {
    if (g->recompute) {
        cb_graph_free(g->recompute);
        free(g->recompute);
    }
    free(g->nodes);
    cb_arena_free(&g->act);
    cb_arena_free(&g->host);
    memset(g, 0, sizeof *g);
}

void cb_graph_set_grad(cb_graph *g, bool enabled) { g->grad_enabled = enabled; }

static cb_tensor *new_desc(cb_graph *g, cb_dtype dt, int ndim, const int64_t *shape, void *data) {
    cb_tensor *t = cb_arena_alloc(&g->host, sizeof *t);
    if (!t) return NULL;
    if (cb_tensor_init(t, dt, g->device, ndim, shape, data) != CB_OK) return NULL;
    return t;
}

cb_tensor *cb_graph_tensor(cb_graph *g, cb_dtype dt, int ndim, const int64_t *shape) {
    cb_tensor *t = new_desc(g, dt, ndim, shape, NULL);
    if (!t) return NULL;
    t->data = cb_arena_alloc(&g->act, cb_tensor_nbytes(t));
    return t->data ? t : NULL;
}

cb_tensor *cb_graph_zeros(cb_graph *g, cb_dtype dt, int ndim, const int64_t *shape) {
    cb_tensor *t = new_desc(g, dt, ndim, shape, NULL);
    if (!t) return NULL;
    t->data = cb_arena_calloc(&g->act, cb_tensor_nbytes(t));
    return t->data ? t : NULL;
}

cb_tensor *cb_graph_view(cb_graph *g, const cb_tensor *base, int ndim, const int64_t *shape) {
    cb_tensor *t = new_desc(g, base->dtype, ndim, shape, base->data);
    if (!t) return NULL;
    t->device = base->device;
    t->view_of = (cb_tensor *)base;
    return t;
}

cb_tensor *cb_graph_wrap(cb_graph *g, cb_dtype dt, int ndim, const int64_t *shape, void *data) {
    return new_desc(g, dt, ndim, shape, data);
}

cb_node *cb_graph_record(cb_graph *g, const char *op, cb_backward_fn bw, cb_tensor *out,
                         cb_tensor *const *inputs, int n_inputs) {
    if (!g->grad_enabled) return NULL;
    bool any = false;
    for (int i = 0; i < n_inputs; i++) any |= cb_tensor_requires_grad(inputs[i]);
    if (!any) return NULL;
    if (g->n_nodes == g->cap_nodes) {
        int64_t cap = g->cap_nodes ? 2 * g->cap_nodes : 256;
        cb_node *nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            cb_fail(CB_ERR_NOMEM, "autograd tape: cannot grow to %lld nodes", (long long)cap);
            return NULL;
        }
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    cb_node *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->backward = bw;
    n->out = out;
    for (int i = 0; i < n_inputs && i < CB_NODE_MAX_IN; i++) n->in[i] = inputs[i];
    out->flags |= CB_TENSOR_REQUIRES_GRAD;
    return n;
}

/* Activation gradients take the activation's dtype when it is 16-bit (AMP on a GPU: the backward
 * GEMMs and the tensor-core attention then read 16-bit operands, as autocast does); parameter
 * gradients are persistent f32 tensors and never come from here. */
static cb_dtype grad_dtype(const cb_graph *g, const cb_tensor *t) {
    return g->device == CB_CUDA && (t->dtype == CB_BF16 || t->dtype == CB_F16) ? t->dtype : CB_F32;
}

cb_tensor *cb_graph_grad(cb_graph *g, cb_tensor *t) {
    if (!t || !cb_tensor_requires_grad(t)) return NULL;
    if (t->grad) return t->grad;
    if (t->view_of && cb_tensor_requires_grad(t->view_of)) {
        /* A view's gradient aliases its base's: accumulating into one accumulates into both. */
        cb_tensor *bg = cb_graph_grad(g, t->view_of);
        if (!bg) return NULL;
        t->grad = cb_graph_view(g, bg, t->ndim, t->shape);
        return t->grad;
    }
    t->grad = cb_graph_zeros(g, grad_dtype(g, t), t->ndim, t->shape);
    return t->grad;
}

cb_tensor *cb_graph_grad_uninit(cb_graph *g, cb_tensor *t, bool *fresh) {
    *fresh = false;
    if (!t || !cb_tensor_requires_grad(t)) return NULL;
    if (t->grad) return t->grad;
    if (t->view_of && cb_tensor_requires_grad(t->view_of)) {
        cb_tensor *bg = cb_graph_grad_uninit(g, t->view_of, fresh);
        if (!bg) return NULL;
        t->grad = cb_graph_view(g, bg, t->ndim, t->shape);
        return t->grad;
    }
    t->grad = cb_graph_tensor(g, grad_dtype(g, t), t->ndim, t->shape);
    *fresh = t->grad != NULL;
    return t->grad;
}

static cb_status run_tape(cb_graph *g);

cb_status cb_backward(cb_graph *g, cb_tensor *loss) {
    if (!loss) return cb_fail(CB_ERR_ARG, "backward: no loss tensor");
    if (cb_tensor_numel(loss) != 1)
        return cb_fail(CB_ERR_SHAPE, "backward: loss must have one element");
    if (!cb_tensor_requires_grad(loss))
        return cb_fail(CB_ERR_ARG, "backward: the loss does not depend on any parameter");
    cb_tensor *dl = cb_graph_grad(g, loss);
    if (!dl) return CB_ERR_NOMEM;
    float one = 1.0f;
    uint16_t one16 = dl->dtype == CB_BF16 ? cb_f32_to_bf16(one) : cb_f32_to_f16(one);
    if (dl->dtype == CB_F32) CB_TRY(cb_device_copy(dl->device, dl->data, CB_CPU, &one, sizeof one));
    else CB_TRY(cb_device_copy(dl->device, dl->data, CB_CPU, &one16, sizeof one16));
    return run_tape(g);
}

cb_status cb_backward_from(cb_graph *g, cb_tensor *y, const cb_tensor *dy) {
    if (!y || !dy || cb_tensor_numel(y) != cb_tensor_numel(dy))
        return cb_fail(CB_ERR_SHAPE, "backward: output and its gradient differ in size");
    if (!cb_tensor_requires_grad(y)) return CB_OK; /* nothing in the tape leads to y */
    cb_tensor *gy = cb_graph_grad(g, y);
    if (!gy) return CB_ERR_NOMEM;
    CB_TRY(((const cb_kernels *)g->kernels)->axpy(1.0f, dy, gy));
    return run_tape(g);
}

static cb_status run_tape(cb_graph *g) {
    for (int64_t i = g->n_nodes - 1; i >= 0; i--) {
        cb_node *n = &g->nodes[i];
        if (!n->out->grad) continue; /* nothing downstream needed this output */
        double t0 = g->profile ? cb_graph_prof_clock(g) : 0;
        cb_status st = n->backward(g, n);
        if (g->profile) {
            cb_op_profile *p = cb_graph_prof_slot(g, n->op);
            if (p) p->backward_s += cb_graph_prof_clock(g) - t0;
        }
        if (st != CB_OK) return cb_fail_context(st, "backward of %s", n->op);
    }
    return CB_OK;
}

double cb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double cb_graph_prof_clock(const cb_graph *g) {
    if (g->device == CB_CUDA) {
        const cb_cuda_api *cu = cb_cuda_api_get();
        if (cu) cu->sync();
    }
    return cb_now();
}

cb_op_profile *cb_graph_prof_slot(cb_graph *g, const char *op) {
    for (int i = 0; i < g->n_prof; i++)
        if (g->prof[i].op == op || strcmp(g->prof[i].op, op) == 0) return &g->prof[i];
    if (g->n_prof == CB_PROFILE_MAX_OPS) return NULL;
    g->prof[g->n_prof] = (cb_op_profile){.op = op};
    return &g->prof[g->n_prof++];
}

static int by_total(const void *a, const void *b) {
    const cb_op_profile *x = a, *y = b;
    double tx = x->forward_s + x->backward_s, ty = y->forward_s + y->backward_s;
    return tx < ty ? 1 : tx > ty ? -1 : 0;
}

void cb_graph_profile_print(const cb_graph *g, FILE *f) {
    cb_op_profile sorted[CB_PROFILE_MAX_OPS];
    double total = 0;
    for (int i = 0; i < g->n_prof; i++) {
        sorted[i] = g->prof[i];
        total += sorted[i].forward_s + sorted[i].backward_s;
    }
    qsort(sorted, (size_t)g->n_prof, sizeof sorted[0], by_total);
    fprintf(f, "%-16s %10s %10s %8s %6s\n", "op", "fwd ms", "bwd ms", "calls", "share");
    for (int i = 0; i < g->n_prof; i++)
        fprintf(f, "%-16s %10.2f %10.2f %8lld %5.1f%%\n", sorted[i].op, sorted[i].forward_s * 1e3,
                sorted[i].backward_s * 1e3, (long long)sorted[i].calls,
                total > 0 ? 100 * (sorted[i].forward_s + sorted[i].backward_s) / total : 0);
}
