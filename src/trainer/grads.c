/* Gradients of one optimizer step: gradient accumulation over micro-batches, the global norm
 * and the clipping scale.
 *
 * Accumulation: backward kernels add into the parameters' persistent gradients, so k micro-batches
 * back-propagating loss_i / k leave sum_i grad(loss_i) / k, the gradient of the mean loss over
 * all k * B rows (every micro-batch has the same number of tokens). */
#include <math.h>
#include <stdlib.h>

#include "caramba/device.h"
#include "caramba/trainer.h"
#include "ops/cuda_api.h"
#include "ops/kernels.h"

static cb_tensor *next_token_ce(void *ctx, cb_model *student, cb_model *teacher, cb_graph *g,
                                const cb_batch *b) {
    (void)ctx;
    (void)teacher;
    return cb_model_loss(student, g, b->x, b->y);
}

const cb_loss_hook cb_loss_next_token = {"next-token cross-entropy", next_token_ce, NULL};

static cb_status read_scalar(const cb_tensor *t, double *out) {
    float v = 0;
    CB_TRY(cb_device_copy(CB_CPU, &v, t->device, t->data, sizeof v));
    *out = v;
    return CB_OK;
}

cb_status cb_train_grads(cb_model *m, cb_model *teacher, cb_graph *g, const cb_loss_hook *hook,
                         const cb_batch *micro, int n, double *mean_loss) {
    if (n < 1) return cb_fail(CB_ERR_ARG, "train step: need at least one micro-batch");
    if (!hook) hook = &cb_loss_next_token;
    CB_TRY(cb_model_zero_grads(m));
    cb_graph_set_grad(g, true);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        cb_graph_reset(g);
        cb_tensor *loss = hook->fn(hook->ctx, m, teacher, g, &micro[i]);
        if (!loss) return cb_fail_context(CB_ERR_INTERNAL, "%s (micro-batch %d of %d)", hook->name, i + 1, n);
        if (cb_tensor_numel(loss) != 1)
            return cb_fail(CB_ERR_SHAPE, "%s: the loss must be a scalar", hook->name);
        double v;
        CB_TRY(read_scalar(loss, &v));
        if (!isfinite(v))
            return cb_fail(CB_ERR_ARG, "%s is not finite (%g) in micro-batch %d: the run diverged "
                                       "(lower lr, add warmup or grad_clip)",
                           hook->name, v, i + 1);
        sum += v;
        cb_tensor *scaled = n > 1 ? cb_scale(g, loss, 1.0f / (float)n) : loss;
        if (!scaled) return cb_fail_context(CB_ERR_INTERNAL, "scaling the loss");
        CB_TRY(cb_backward(g, scaled));
    }
    *mean_loss = sum / n;
    return CB_OK;
}

cb_status cb_grad_global_norm(const cb_model *m, double *norm) {
    if (m->device == CB_CUDA) { /* one pass, one synchronisation for every gradient */
        const cb_cuda_api *cu = cb_cuda_api_get();
        if (!cu) return CB_ERR_UNSUPPORTED;
        const cb_tensor **gs = malloc(sizeof *gs * (size_t)(m->n_params + 1));
        if (!gs) return cb_fail(CB_ERR_NOMEM, "gradient norm");
        int k = 0;
        for (int i = 0; i < m->n_params; i++)
            if (m->params[i]->t->grad) gs[k++] = m->params[i]->t->grad;
        double s = 0;
        cb_status st = cu->sum_squares_multi(k, gs, &s);
        free(gs);
        CB_TRY(st);
        *norm = sqrt(s);
        return CB_OK;
    }
    double s = 0;
    for (int i = 0; i < m->n_params; i++) {
        cb_tensor *gr = m->params[i]->t->grad;
        if (!gr) continue;
        const cb_kernels *k = cb_kernels_for(gr->device);
        if (!k) return CB_ERR_UNSUPPORTED;
        double part;
        CB_TRY(k->sum_squares(gr, &part));
        s += part;
    }
    *norm = sqrt(s);
    return CB_OK;
}

double cb_clip_scale(double norm, double max_norm) {
    if (max_norm > 0 && norm > max_norm) return max_norm / (norm + 1e-6);
    return 1.0;
}
