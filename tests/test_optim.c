/* AdamW against a hand-computed update (the first step's closed form, then a double-precision
 * reimplementation of the published algorithm: Loshchilov & Hutter, "Decoupled Weight Decay
 * Regularization", Algorithm 2), weight-decay exclusion of norms / biases / embeddings, frozen
 * parameters, global-norm clipping, and the moments' save / load round trip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "caramba/manifest.h"
#include "caramba/trainer.h"
#include "testutil.h"

/* embedding (no decay), RMSNorm weight (no decay), Linear weight (decay) and bias (no decay) */
static const char *YAML = "version: 1\nname: opt\nmodel:\n  type: TransformerModel\n"
                          "  embedder: {type: token, vocab_size: 8, d_model: 4}\n"
                          "  tied_embeddings: false\n  topology:\n    type: StackedTopology\n"
                          "    layers:\n      - {type: RMSNormLayer, d_model: 4}\n"
                          "      - {type: LinearLayer, d_in: 4, d_out: 8, bias: true}\n";

static cb_model *build(void) {
    cb_manifest *man = NULL;
    if (cb_manifest_parse("opt.yml", YAML, strlen(YAML), NULL, &man, NULL) != CB_OK)
        fail_msg("manifest: %s", cb_last_error());
    cb_model *m = NULL;
    if (cb_model_from_manifest(&m, &man->model, CB_CPU, 3, 16) != CB_OK) fail_msg("build: %s", cb_last_error());
    cb_manifest_free(man);
    if (cb_model_enable_grads(m) != CB_OK) fail_msg("%s", cb_last_error());
    return m;
}

static float gval(int p, int64_t i, int step) { return 0.05f * (float)(((i * 7 + p * 3 + step * 5) % 11) - 5); }

static void set_grads(cb_model *m, int step) {
    for (int p = 0; p < m->n_params; p++) {
        cb_tensor *g = m->params[p]->t->grad;
        if (!g) continue;
        for (int64_t i = 0; i < cb_tensor_numel(g); i++) cb_f32(g)[i] = gval(p, i, step);
    }
}

static void test_first_step_closed_form(void **state) {
    (void)state;
    cb_model *m = build();
    cb_optimizer *o;
    cb_adamw_cfg c;
    cb_adamw_defaults(&c);
    assert_true(c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8 && c.weight_decay == 0.01);
    assert_int_equal(cb_optimizer_new(&o, m, &c), CB_OK);
    cb_param *w = cb_model_find_param(m, "topology.layers.1.linear.weight");
    cb_param *b = cb_model_find_param(m, "topology.layers.1.linear.bias");
    cb_param *e = cb_model_find_param(m, "embedder.token_embedding.weight");
    assert_non_null(w);
    assert_non_null(b);
    assert_non_null(e);
    cb_f32(w->t)[0] = 0.5f;
    cb_f32(w->t->grad)[0] = 0.2f;
    cb_f32(b->t)[0] = 0.5f;
    cb_f32(b->t->grad)[0] = -0.2f;
    cb_f32(e->t)[0] = -0.25f;
    cb_f32(e->t->grad)[0] = 0.0f;
    assert_int_equal(cb_optimizer_step(o, 0.1, 1.0), CB_OK);
    /* step 1: m^ = g, v^ = g^2, so the update is g / (|g| + eps) ~ sign(g):
     *   w: 0.5 - 0.1 * (0.2 / (0.2 + 1e-8) + 0.01 * 0.5) = 0.3995000005
     *   b (no decay): 0.5 + 0.1 * (0.2 / (0.2 + 1e-8)) = 0.5999999950
     *   e (no decay, zero gradient): unchanged */
    assert_float_equal(cb_f32(w->t)[0], 0.3995000005, 2e-7);
    assert_float_equal(cb_f32(b->t)[0], 0.5999999950, 2e-7);
    assert_true(cb_f32(e->t)[0] == -0.25f);
    assert_int_equal(o->step, 1);
    assert_true(cb_optimizer_decay(o, 0) == 0.0); /* the embedding */
    cb_optimizer_free(o);
    cb_model_free(m);
}

/* Several steps with changing gradients, learning rates and a clip scale, against a double
 * reference of the same algorithm. */
static void run_reference(bool decay_all) {
    cb_model *m = build();
    cb_adamw_cfg c = {.beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1, .decay_all = decay_all};
    cb_optimizer *o;
    assert_int_equal(cb_optimizer_new(&o, m, &c), CB_OK);
    int np = m->n_params;
    double **p = calloc((size_t)np, sizeof *p), **mm = calloc((size_t)np, sizeof *mm),
           **vv = calloc((size_t)np, sizeof *vv);
    for (int k = 0; k < np; k++) {
        int64_t n = cb_tensor_numel(m->params[k]->t);
        p[k] = malloc(sizeof(double) * (size_t)n);
        mm[k] = calloc((size_t)n, sizeof(double));
        vv[k] = calloc((size_t)n, sizeof(double));
        for (int64_t i = 0; i < n; i++) p[k][i] = cb_f32(m->params[k]->t)[i];
    }
    const double lrs[4] = {1e-2, 5e-3, 2e-2, 1e-3}, scales[4] = {1.0, 0.5, 1.0, 0.25};
    for (int t = 1; t <= 4; t++) {
        set_grads(m, t);
        assert_int_equal(cb_optimizer_step(o, lrs[t - 1], scales[t - 1]), CB_OK);
        for (int k = 0; k < np; k++) {
            cb_param *pr = m->params[k];
            double wd = pr->no_decay && !decay_all ? 0.0 : 0.1;
            for (int64_t i = 0; i < cb_tensor_numel(pr->t); i++) {
                double g = (double)gval(k, i, t) * scales[t - 1];
                mm[k][i] = 0.8 * mm[k][i] + 0.2 * g;
                vv[k][i] = 0.95 * vv[k][i] + 0.05 * g * g;
                double mh = mm[k][i] / (1 - pow(0.8, t)), vh = vv[k][i] / (1 - pow(0.95, t));
                p[k][i] -= lrs[t - 1] * (mh / (sqrt(vh) + 1e-6) + wd * p[k][i]);
            }
        }
    }
    double worst = 0;
    for (int k = 0; k < np; k++)
        for (int64_t i = 0; i < cb_tensor_numel(m->params[k]->t); i++) {
            double d = fabs(cb_f32(m->params[k]->t)[i] - p[k][i]) / fmax(1e-3, fabs(p[k][i]));
            worst = fmax(worst, d);
        }
    assert_true(worst < 2e-5);
    /* the flags: norms, biases and embeddings carry no_decay */
    int nd = 0;
    for (int k = 0; k < np; k++) {
        nd += m->params[k]->no_decay;
        assert_true(cb_optimizer_decay(o, k) == (m->params[k]->no_decay && !decay_all ? 0.0 : 0.1));
    }
    assert_int_equal(nd, 3);
    for (int k = 0; k < np; k++) {
        free(p[k]);
        free(mm[k]);
        free(vv[k]);
    }
    free(p);
    free(mm);
    free(vv);
    cb_optimizer_free(o);
    cb_model_free(m);
}

static void test_reference_steps(void **state) {
    (void)state;
    run_reference(false);
    run_reference(true);
}

static void test_frozen_and_clip(void **state) {
    (void)state;
    cb_model *m = build();
    cb_adamw_cfg c;
    cb_adamw_defaults(&c);
    cb_optimizer *o;
    assert_int_equal(cb_optimizer_new(&o, m, &c), CB_OK);
    /* a parameter without a gradient is neither moved nor decayed */
    cb_param *w = cb_model_find_param(m, "topology.layers.1.linear.weight");
    float before = cb_f32(w->t)[3];
    cb_tensor_free(w->t->grad);
    w->t->grad = NULL;
    set_grads(m, 1);
    assert_int_equal(cb_optimizer_step(o, 0.5, 1.0), CB_OK);
    assert_true(cb_f32(w->t)[3] == before);
    /* global norm = sqrt(sum of squares over every gradient) */
    double want = 0;
    for (int k = 0; k < m->n_params; k++) {
        cb_tensor *g = m->params[k]->t->grad;
        if (!g) continue;
        for (int64_t i = 0; i < cb_tensor_numel(g); i++) want += (double)cb_f32(g)[i] * cb_f32(g)[i];
    }
    double norm;
    assert_int_equal(cb_grad_global_norm(m, &norm), CB_OK);
    assert_true(fabs(norm - sqrt(want)) < 1e-6 * sqrt(want)); /* f32 partial sums */
    assert_true(cb_clip_scale(10.0, 1.0) == 1.0 / (10.0 + 1e-6));
    assert_true(cb_clip_scale(0.5, 1.0) == 1.0);
    assert_true(cb_clip_scale(1e9, 0.0) == 1.0); /* 0 = off */
    cb_optimizer_free(o);
    cb_model_free(m);
}

static void test_save_load(void **state) {
    (void)state;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    char path[4200];
    snprintf(path, sizeof path, "%s/opt.safetensors", dir);
    cb_model *m = build();
    cb_adamw_cfg c;
    cb_adamw_defaults(&c);
    cb_optimizer *o, *o2;
    assert_int_equal(cb_optimizer_new(&o, m, &c), CB_OK);
    for (int t = 1; t <= 3; t++) {
        set_grads(m, t);
        assert_int_equal(cb_optimizer_step(o, 1e-2, 1.0), CB_OK);
    }
    assert_int_equal(cb_optimizer_save(o, path), CB_OK);
    assert_int_equal(cb_optimizer_new(&o2, m, &c), CB_OK);
    if (cb_optimizer_load(o2, path) != CB_OK) fail_msg("%s", cb_last_error());
    assert_int_equal(o2->step, 3);
    for (int k = 0; k < o->n; k++) {
        size_t n = cb_tensor_nbytes(o->m[k]);
        assert_memory_equal(o->m[k]->data, o2->m[k]->data, n);
        assert_memory_equal(o->v[k]->data, o2->v[k]->data, n);
    }
    cb_optimizer_free(o2);
    /* a moments file of another model is refused with the tensor's name */
    const char *bad = "version: 1\nname: opt\nmodel:\n  type: TransformerModel\n"
                      "  embedder: {type: token, vocab_size: 6, d_model: 4}\n"
                      "  tied_embeddings: false\n  topology:\n    type: StackedTopology\n"
                      "    layers:\n      - {type: RMSNormLayer, d_model: 4}\n"
                      "      - {type: LinearLayer, d_in: 4, d_out: 6, bias: true}\n";
    cb_manifest *man;
    assert_int_equal(cb_manifest_parse("bad.yml", bad, strlen(bad), NULL, &man, NULL), CB_OK);
    cb_model *m2;
    assert_int_equal(cb_model_from_manifest(&m2, &man->model, CB_CPU, 1, 16), CB_OK);
    cb_manifest_free(man);
    assert_int_equal(cb_optimizer_new(&o2, m2, &c), CB_OK);
    assert_int_equal(cb_optimizer_load(o2, path), CB_ERR_SHAPE);
    assert_non_null(strstr(cb_last_error(), "exp_avg.embedder.token_embedding.weight"));
    cb_optimizer_free(o2);
    cb_model_free(m2);
    cb_optimizer_free(o);
    cb_model_free(m);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_step_closed_form),
        cmocka_unit_test(test_reference_steps),
        cmocka_unit_test(test_frozen_and_clip),
        cmocka_unit_test(test_save_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
