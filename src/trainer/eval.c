/* Validation loss: mean next-token cross-entropy over held-out windows.
 *   windows: non-overlapping (the dataset's stride; cb_dataset_split gives the validation split
 *   stride = block), taken in order from the first, B at a time; the last batch may be smaller.
 * The mean is token-weighted, so it does not depend on how the windows are batched. */
#include <math.h>
#include <stdlib.h>

#include "caramba/device.h"
#include "caramba/trainer.h"

cb_status cb_eval_loss(cb_model *m, cb_graph *g, const cb_dataset *ds, int64_t batch,
                       int64_t max_batches, double *loss, int64_t *tokens) {
    *loss = NAN;
    if (tokens) *tokens = 0;
    if (!ds || ds->n_windows <= 0) return cb_fail(CB_ERR_ARG, "validation: no held-out windows");
    if (batch < 1) return cb_fail(CB_ERR_ARG, "validation: batch size must be positive");
    int64_t n = ds->n_windows;
    if (max_batches > 0 && n > max_batches * batch) n = max_batches * batch;
    int64_t L = ds->block;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)(batch * L));
    int32_t *y = malloc(sizeof(int32_t) * (size_t)(batch * L));
    int64_t *w = malloc(sizeof(int64_t) * (size_t)batch);
    cb_status st = x && y && w ? CB_OK : cb_fail(CB_ERR_NOMEM, "validation batch");
    bool was_training = g->training, had_grad = g->grad_enabled;
    g->training = false;
    cb_graph_set_grad(g, false);
    double sum = 0;
    int64_t count = 0;
    for (int64_t i = 0; i < n && st == CB_OK; i += batch) {
        int64_t b = n - i < batch ? n - i : batch;
        for (int64_t k = 0; k < b; k++) w[k] = i + k;
        int64_t sh[2] = {b, L};
        cb_tensor X, Y;
        cb_tensor_init(&X, CB_I32, CB_CPU, 2, sh, x);
        cb_tensor_init(&Y, CB_I32, CB_CPU, 2, sh, y);
        st = cb_dataset_batch(ds, w, b, &X, &Y);
        if (st != CB_OK) break;
        cb_graph_reset(g);
        cb_tensor *l = cb_model_loss(m, g, &X, &Y);
        if (!l) {
            st = cb_fail_context(CB_ERR_INTERNAL, "validation forward");
            break;
        }
        float v;
        st = cb_device_copy(CB_CPU, &v, l->device, l->data, sizeof v);
        sum += (double)v * (double)(b * L);
        count += b * L;
    }
    cb_graph_reset(g);
    g->training = was_training;
    cb_graph_set_grad(g, had_grad);
    free(x);
    free(y);
    free(w);
    if (st != CB_OK) return st;
    *loss = sum / (double)count;
    if (tokens) *tokens = count;
    return CB_OK;
}
