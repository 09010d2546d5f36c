/* Building models from manifests: every topology's forward against hand computations, gradients
 * against finite differences, and a Llama-shaped manifest carrying the tiny_llama3 fixture
 * weights reproducing the fixture's logits. */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "caramba/fileio.h"
#include "caramba/manifest.h"
#include "caramba/model.h"
#include "caramba/npy.h"
#include "testutil.h"

static cb_model *build_yaml(const char *yaml) {
    cb_manifest *man = NULL;
    if (cb_manifest_parse("inline.yml", yaml, strlen(yaml), NULL, &man, NULL) != CB_OK)
        fail_msg("manifest: %s", cb_last_error());
    cb_model *m = NULL;
    if (cb_model_from_manifest(&m, &man->model, CB_CPU, 7, 64) != CB_OK) fail_msg("build: %s", cb_last_error());
    cb_manifest_free(man);
    return m;
}

/* Sets a parameter to a ramp so expected values can be written by hand. */
static void set_param(cb_model *m, const char *name, float scale) {
    cb_param *p = cb_model_find_param(m, name);
    if (!p) fail_msg("no parameter %s", name);
    for (int64_t i = 0; i < cb_tensor_numel(p->t); i++) cb_f32(p->t)[i] = scale * (float)((i % 5) - 2);
}

static cb_tensor *run(cb_model *m, cb_graph *g, float *xin, int64_t B, int64_t T, int64_t D) {
    int64_t sh[3] = {B, T, D};
    cb_tensor *x = cb_graph_wrap(g, CB_F32, 3, sh, xin);
    cb_tensor *y = cb_model_forward(m, g, x, NULL);
    if (!y) fail_msg("forward: %s", cb_last_error());
    return y;
}

#define HDR "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  embedder: {type: none}\n  tied_embeddings: false\n  topology:\n"

static float W(int i) { return 0.1f * (float)((i % 5) - 2); } /* the ramp set_param writes */

static void test_topologies_forward(void **state) {
    (void)state;
    float x[2 * 3] = {1, -2, 0.5f, 3, 0.25f, -1}; /* B=1, T=2, D=3 */
    /* Residual[Linear(3->3)]: y = x + x W^T */
    cb_model *m = build_yaml(HDR "    type: ResidualTopology\n    layers:\n"
                                 "      - {type: LinearLayer, d_in: 3, d_out: 3, bias: false}\n");
    set_param(m, "topology.layers.0.linear.weight", 0.1f);
    cb_graph g;
    cb_graph_init(&g, CB_CPU);
    cb_tensor *y = run(m, &g, x, 1, 2, 3);
    for (int t = 0; t < 2; t++)
        for (int o = 0; o < 3; o++) {
            float e = x[t * 3 + o];
            for (int i = 0; i < 3; i++) e += x[t * 3 + i] * W(o * 3 + i);
            assert_float_equal(cb_f32(y)[t * 3 + o], e, 1e-6);
        }
    cb_graph_free(&g);
    cb_model_free(m);

    /* Parallel[Linear(3->2), Linear(3->2)] stacks on a new leading dim: [2, 1, 2, 2] */
    m = build_yaml(HDR "    type: ParallelTopology\n    layers:\n"
                       "      - {type: LinearLayer, d_in: 3, d_out: 2, bias: false}\n"
                       "      - {type: LinearLayer, d_in: 3, d_out: 2, bias: false}\n");
    set_param(m, "topology.layers.0.linear.weight", 0.1f);
    set_param(m, "topology.layers.1.linear.weight", -0.2f);
    cb_graph_init(&g, CB_CPU);
    y = run(m, &g, x, 1, 2, 3);
    assert_int_equal(y->ndim, 4);
    assert_int_equal(y->shape[0], 2);
    assert_int_equal(y->shape[3], 2);
    for (int br = 0; br < 2; br++)
        for (int t = 0; t < 2; t++)
            for (int o = 0; o < 2; o++) {
                float e = 0;
                for (int i = 0; i < 3; i++) e += x[t * 3 + i] * W(o * 3 + i) * (br ? -2.0f : 1.0f);
                assert_float_equal(cb_f32(y)[(br * 2 + t) * 2 + o], e, 1e-6);
            }
    cb_graph_free(&g);
    cb_model_free(m);

    /* Branching[Linear(3->2), Linear(3->1)] concatenates on the feature dim: [1, 2, 3] */
    m = build_yaml(HDR "    type: BranchingTopology\n    layers:\n"
                       "      - {type: LinearLayer, d_in: 3, d_out: 2, bias: false}\n"
                       "      - {type: LinearLayer, d_in: 3, d_out: 1, bias: false}\n");
    set_param(m, "topology.layers.0.linear.weight", 0.1f);
    set_param(m, "topology.layers.1.linear.weight", 0.1f);
    cb_graph_init(&g, CB_CPU);
    y = run(m, &g, x, 1, 2, 3);
    assert_int_equal(y->shape[2], 3);
    for (int t = 0; t < 2; t++)
        for (int o = 0; o < 3; o++) {
            int oo = o < 2 ? o : 0; /* second branch's only output uses its row 0 */
            float e = 0;
            for (int i = 0; i < 3; i++) e += x[t * 3 + i] * W(oo * 3 + i);
            assert_float_equal(cb_f32(y)[t * 3 + o], e, 1e-6);
        }
    cb_graph_free(&g);
    cb_model_free(m);

    /* Sequential / Stacked / Nested / Cyclic / Recurrent chain their children:
     * Linear(3->2) then RMSNorm(2) (weight 1) */
    const char *chains[] = {"SequentialTopology", "StackedTopology", "NestedTopology", "CyclicTopology",
                            "RecurrentTopology"};
    for (int c = 0; c < 5; c++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 HDR "    type: %s\n    layers:\n"
                     "      - {type: LinearLayer, d_in: 3, d_out: 2, bias: false}\n"
                     "      - {type: RMSNormLayer, d_model: 2, eps: 1.0e-6}\n",
                 chains[c]);
        m = build_yaml(yaml);
        set_param(m, "topology.layers.0.linear.weight", 0.1f);
        cb_graph_init(&g, CB_CPU);
        y = run(m, &g, x, 1, 2, 3);
        for (int t = 0; t < 2; t++) {
            float h[2] = {0, 0};
            for (int o = 0; o < 2; o++)
                for (int i = 0; i < 3; i++) h[o] += x[t * 3 + i] * W(o * 3 + i);
            float r = 1.0f / sqrtf((h[0] * h[0] + h[1] * h[1]) / 2 + 1e-6f);
            for (int o = 0; o < 2; o++) assert_float_equal(cb_f32(y)[t * 2 + o], h[o] * r, 1e-5);
        }
        cb_graph_free(&g);
        cb_model_free(m);
    }
}

/* Gradients through every topology (and attention, SwiGLU, LayerNorm, dropout p=0) against
 * central differences of the summed output. */
static void test_topologies_gradients(void **state) {
    (void)state;
    const char *yaml =
        HDR "    type: StackedTopology\n    layers:\n"
            "      - type: ResidualTopology\n        layers:\n"
            "          - {type: LayerNormLayer, d_model: 4}\n"
            "          - {type: AttentionLayer, d_model: 4, n_heads: 2, n_kv_heads: 1, mode: gqa}\n"
            "      - type: BranchingTopology\n        layers:\n"
            "          - {type: SwiGLULayer, d_model: 4, d_ff: 6}\n"
            "          - {type: LinearLayer, d_in: 4, d_out: 2}\n"
            "      - type: ParallelTopology\n        layers:\n"
            "          - {type: LinearLayer, d_in: 6, d_out: 3}\n"
            "          - type: SequentialTopology\n            layers:\n"
            "              - {type: DropoutLayer, p: 0.0}\n"
            "              - {type: LinearLayer, d_in: 6, d_out: 3, bias: false}\n";
    cb_model *m = build_yaml(yaml);
    assert_int_equal(cb_model_enable_grads(m), CB_OK);
    float x[2 * 3 * 4];
    for (int i = 0; i < 24; i++) x[i] = sinf((float)i * 1.3f);
    float wsum[2 * 2 * 3 * 3];
    for (int i = 0; i < 36; i++) wsum[i] = cosf((float)i);
    /* loss = sum(y * wsum) */
    cb_graph g;
    cb_graph_init(&g, CB_CPU);
    cb_tensor *y = run(m, &g, x, 2, 3, 4);
    assert_int_equal(cb_tensor_numel(y), 36);
    int64_t fl[2] = {1, 36}, wsh[2] = {1, 36};
    cb_tensor *wt = cb_graph_wrap(&g, CB_F32, 2, wsh, wsum);
    cb_tensor *loss = cb_linear(&g, cb_reshape(&g, y, 2, fl), wt, NULL);
    assert_int_equal(cb_backward(&g, loss), CB_OK);
    cb_graph_free(&g);
    double num = 0, den = 0;
    for (int pi = 0; pi < m->n_params; pi++) {
        cb_tensor *t = m->params[pi]->t;
        for (int64_t j = 0; j < cb_tensor_numel(t); j++) {
            float old = cb_f32(t)[j];
            double lv[2];
            for (int s = 0; s < 2; s++) {
                cb_f32(t)[j] = old + (s ? -1e-2f : 1e-2f);
                cb_graph_init(&g, CB_CPU);
                cb_graph_set_grad(&g, false);
                cb_tensor *yy = run(m, &g, x, 2, 3, 4);
                lv[s] = 0;
                for (int i = 0; i < 36; i++) lv[s] += (double)cb_f32(yy)[i] * wsum[i];
                cb_graph_free(&g);
            }
            cb_f32(t)[j] = old;
            double fd = (lv[0] - lv[1]) / 2e-2, an = cb_f32(t->grad)[j];
            num += (fd - an) * (fd - an);
            den += fd * fd;
        }
    }
    assert_true(sqrt(num) / sqrt(den) < 5e-3);
    cb_model_free(m);
}

/* Activation checkpointing changes memory, not numbers: same loss and gradients (dropout on, so
 * the re-run must draw the same masks), smaller activation arena. */
static void test_activation_checkpointing(void **state) {
    (void)state;
    const char *yaml =
        "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  embedder: {type: token, vocab_size: 50, d_model: 16}\n"
        "  tied_embeddings: true\n  topology:\n    type: StackedTopology\n    layers:\n"
        "      - type: NestedTopology\n        repeat: 3\n        layers:\n"
        "          - type: ResidualTopology\n            layers:\n"
        "              - {type: RMSNormLayer, d_model: 16}\n"
        "              - {type: AttentionLayer, d_model: 16, n_heads: 4, n_kv_heads: 2, mode: gqa}\n"
        "              - {type: DropoutLayer, p: 0.2}\n"
        "          - type: ResidualTopology\n            layers:\n"
        "              - {type: RMSNormLayer, d_model: 16}\n"
        "              - {type: SwiGLULayer, d_model: 16, d_ff: 40, bias: false}\n"
        "      - {type: RMSNormLayer, d_model: 16}\n";
    cb_model *m = build_yaml(yaml);
    assert_int_equal(cb_model_enable_grads(m), CB_OK);
    int32_t ids[2 * 12];
    for (int i = 0; i < 24; i++) ids[i] = (i * 7 + 3) % 50;
    int64_t sh[2] = {2, 12};
    cb_tensor X;
    cb_tensor_init(&X, CB_I32, CB_CPU, 2, sh, ids);
    float loss[2];
    size_t arena[2];
    float *grads[2];
    int64_t total = 0;
    for (int i = 0; i < m->n_params; i++) total += cb_tensor_numel(m->params[i]->t);
    for (int ck = 0; ck < 2; ck++) {
        cb_graph g;
        cb_graph_init(&g, CB_CPU);
        g.training = true;
        g.checkpointing = ck;
        assert_int_equal(cb_model_zero_grads(m), CB_OK);
        cb_tensor *l = cb_model_next_token_loss(m, &g, &X);
        assert_non_null(l);
        assert_int_equal(cb_backward(&g, l), CB_OK);
        loss[ck] = cb_f32(l)[0];
        arena[ck] = g.act.peak;
        grads[ck] = malloc(sizeof(float) * (size_t)total);
        int64_t off = 0;
        for (int i = 0; i < m->n_params; i++) {
            int64_t n = cb_tensor_numel(m->params[i]->t);
            memcpy(grads[ck] + off, cb_f32(m->params[i]->t->grad), sizeof(float) * (size_t)n);
            off += n;
        }
        cb_graph_free(&g);
    }
    assert_true(loss[0] == loss[1]);
    assert_true(tu_max_abs_diff(grads[0], grads[1], total) <= 1e-6 * tu_max_abs(grads[0], total));
    assert_true(arena[1] < arena[0]);
    free(grads[0]);
    free(grads[1]);
    cb_model_free(m);
}

static void test_llama_manifest_with_fixture_weights(void **state) {
    (void)state;
    cb_manifest *man = NULL;
    assert_int_equal(cb_manifest_load(tu_path("presets/tiny_llama3.yml"), &man), CB_OK);
    cb_model *m = NULL;
    if (cb_model_from_manifest(&m, &man->model, CB_CPU, 1, 256) != CB_OK) fail_msg("%s", cb_last_error());
    assert_true(m->llama_names); /* the Llama shape is recognised: HF names */
    cb_checkpoint *ck;
    assert_int_equal(cb_checkpoint_open(&ck, tu_path("tests/data/tiny_llama3")), CB_OK);
    if (cb_model_load(m, ck) != CB_OK) fail_msg("%s", cb_last_error());
    cb_checkpoint_close(ck);
    cb_npy *in, *ref;
    assert_int_equal(cb_npy_open(&in, tu_path("tests/data/tiny_llama3/ref_input_ids.npy")), CB_OK);
    assert_int_equal(cb_npy_open(&ref, tu_path("tests/data/tiny_llama3/ref_logits.npy")), CB_OK);
    cb_tensor ids = cb_npy_tensor(in);
    cb_graph g;
    cb_graph_init(&g, CB_CPU);
    cb_tensor *logits = cb_model_forward(m, &g, &ids, NULL);
    assert_non_null(logits);
    int64_t n = cb_tensor_numel(logits);
    assert_true(tu_max_abs_diff(cb_f32(logits), ref->data, n) <= 1e-4 * tu_max_abs(ref->data, n));
    cb_graph_free(&g);
    cb_npy_close(in);
    cb_npy_close(ref);
    cb_model_free(m);
    cb_manifest_free(man);
}

/* The same manifest with the widths, vocabulary and depth divided by 8 (`KEY: N` for the keys
 * below, N >= 16 and divisible by 8): heads, head sizes and every option are unchanged, so a
 * 1B-parameter preset builds the same kinds of layers in a fraction of the time and memory. */
static char *shrunk_manifest(const char *text, size_t *len) {
    static const char *const keys[] = {"d_model",    "d_in",  "d_out",  "d_ff",
                                       "vocab_size", "vocab", "repeat", "n_layers"};
    size_t n = strlen(text);
    char *out = malloc(n + 1), *o = out;
    assert_non_null(out);
    for (size_t i = 0; i < n;) {
        bool done = false;
        bool boundary = i == 0 || !(isalnum((unsigned char)text[i - 1]) || text[i - 1] == '_');
        for (size_t k = 0; boundary && !done && k < sizeof keys / sizeof keys[0]; k++) {
            size_t kl = strlen(keys[k]);
            if (strncmp(text + i, keys[k], kl) || strncmp(text + i + kl, ": ", 2)) continue;
            char *end;
            long v = strtol(text + i + kl + 2, &end, 10);
            if (end == text + i + kl + 2 || isalnum((unsigned char)*end) || *end == '.' || v < 16 ||
                v % 8)
                continue;
            o += sprintf(o, "%s: %ld", keys[k], v / 8);
            i = (size_t)(end - text);
            done = true;
        }
        if (!done) *o++ = text[i++];
    }
    *o = 0;
    *len = (size_t)(o - out);
    return out;
}

/* Every manifest in presets/ loads and builds, with the parameter count the validator predicts.
 * Presets over 50M parameters (the Llama 3.2 1B shapes) are validated at full size and built
 * shrunk (shrunk_manifest): allocating and initialising 1.4B parameters three times would take
 * minutes. */
static void test_every_preset_builds(void **state) {
    (void)state;
    DIR *dir = opendir(tu_path("presets"));
    assert_non_null(dir);
    int n = 0, shrunk = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".yml")) continue;
        char rel[300];
        snprintf(rel, sizeof rel, "presets/%s", e->d_name);
        cb_manifest *man = NULL;
        if (cb_manifest_load(tu_path(rel), &man) != CB_OK) fail_msg("%s: %s", rel, cb_last_error());
        if (man->model.n_params > 50000000) {
            char *text = NULL, *small;
            size_t tl, sl;
            assert_int_equal(cb_read_file(tu_path(rel), 1 << 22, &text, &tl), CB_OK);
            small = shrunk_manifest(text, &sl);
            cb_manifest_free(man);
            man = NULL;
            if (cb_manifest_parse(tu_path(rel), small, sl, NULL, &man, NULL) != CB_OK)
                fail_msg("%s (shrunk): %s", rel, cb_last_error());
            assert_true(man->model.n_params < 50000000);
            free(text);
            free(small);
            shrunk++;
        }
        cb_model *m = NULL;
        if (cb_model_from_manifest(&m, &man->model, CB_CPU, 1, 64) != CB_OK)
            fail_msg("%s: %s", rel, cb_last_error());
        assert_int_equal(cb_model_param_count(m), man->model.n_params);
        cb_model_free(m);
        cb_manifest_free(man);
        n++;
    }
    closedir(dir);
    assert_true(n >= 8); /* dba, demo, the three llama32_1b_dba*, llama_block, tiny, tiny_llama3 */
    assert_true(shrunk >= 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topologies_forward),
        cmocka_unit_test(test_topologies_gradients),
        cmocka_unit_test(test_activation_checkpointing),
        cmocka_unit_test(test_llama_manifest_with_fixture_weights),
        cmocka_unit_test(test_every_preset_builds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
