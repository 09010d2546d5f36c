/* Conformance: the tiny_llama3 checkpoint (Hugging Face transformers reference outputs in
 * tests/data/tiny_llama3, see PROVENANCE.md) loaded through config.json + safetensors gives the
 * reference logits, hidden states, loss and every gradient. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "caramba/model.h"
#include "caramba/npy.h"
#include "caramba/safetensors.h"
#include "caramba/trace.h"
#include "testutil.h"

static cb_model *open_fixture(void) {
    cb_model *m = NULL;
    if (cb_model_open_hf(&m, tu_path("tests/data/tiny_llama3"), CB_CPU) != CB_OK)
        fail_msg("open: %s", cb_last_error());
    return m;
}

static cb_tensor ids_of(cb_npy **n) {
    assert_int_equal(cb_npy_open(n, tu_path("tests/data/tiny_llama3/ref_input_ids.npy")), CB_OK);
    return cb_npy_tensor(*n);
}

static void test_logits(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    assert_true(m->llama_names);
    assert_int_equal(cb_model_param_count(m), 384 * 64 * 2 + 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 176 + 128) + 64);
    cb_npy *in, *ref;
    cb_tensor ids = ids_of(&in);
    assert_int_equal(cb_npy_open(&ref, tu_path("tests/data/tiny_llama3/ref_logits.npy")), CB_OK);
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    cb_graph_set_grad(&g, false);
    cb_tensor *logits = cb_model_forward(m, &g, &ids, NULL);
    assert_non_null(logits);
    assert_int_equal(logits->shape[2], 384);
    int64_t n = cb_tensor_numel(logits);
    assert_int_equal(n, 2 * 24 * 384);
    double ref_max = tu_max_abs(ref->data, n), diff = tu_max_abs_diff(cb_f32(logits), ref->data, n);
    assert_true(diff <= 1e-4 * ref_max);
    cb_graph_free(&g);
    cb_npy_close(ref);
    cb_npy_close(in);
    cb_model_free(m);
}

/* Hidden states (transformers' output_hidden_states: embeddings, after layer 0, after the final
 * norm) captured with the trace utility. */
static void test_trace_hidden_states(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    cb_npy *in, *ref;
    cb_tensor ids = ids_of(&in);
    assert_int_equal(cb_npy_open(&ref, tu_path("tests/data/tiny_llama3/ref_hidden_states.npy")), CB_OK);
    assert_int_equal(ref->shape[0], 3);
    const int64_t per = 2 * 24 * 64;
    const char *paths[2] = {"topology.layers.0.layers.1", "topology.layers.1"};
    for (int k = 0; k < 2; k++) {
        cb_trace t;
        assert_int_equal(cb_trace_init(&t, paths[k]), CB_OK);
        assert_int_equal(cb_trace_check(&t, m->root), CB_OK);
        cb_graph g;
        assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
        g.trace = &t;
        assert_non_null(cb_model_forward(m, &g, &ids, NULL));
        assert_int_equal(t.n, 1);
        const float *r = (const float *)ref->data + (k + 1) * per;
        assert_int_equal(cb_tensor_numel(t.outputs[0]), per);
        assert_true(tu_max_abs_diff(cb_f32(t.outputs[0]), r, per) <= 1e-4 * tu_max_abs(r, per));
        cb_graph_free(&g);
    }
    cb_trace t; /* by kind: one output per attention layer, in execution order */
    assert_int_equal(cb_trace_init(&t, "AttentionLayer"), CB_OK);
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    g.trace = &t;
    assert_non_null(cb_model_forward(m, &g, &ids, NULL));
    assert_int_equal(t.n, 2);
    assert_int_equal(t.modules[0]->attn_index, 0);
    assert_int_equal(t.modules[1]->attn_index, 1);
    assert_int_equal(t.outputs[1]->shape[2], 64);
    cb_graph_free(&g);
    assert_int_equal(cb_trace_init(&t, "topology.nothing.*"), CB_OK);
    assert_int_equal(cb_trace_check(&t, m->root), CB_ERR_NOTFOUND);
    cb_npy_close(ref);
    cb_npy_close(in);
    cb_model_free(m);
}

static void test_loss_and_grads(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    assert_int_equal(cb_model_enable_grads(m), CB_OK);
    cb_npy *in;
    cb_tensor ids = ids_of(&in);
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    cb_tensor *loss = cb_model_next_token_loss(m, &g, &ids);
    assert_non_null(loss);
    const double ref_loss = 6.247769355773926; /* tests/data/tiny_llama3/ref_info.json */
    assert_true(fabs(cb_f32(loss)[0] - ref_loss) <= 1e-5 * ref_loss);
    assert_int_equal(cb_backward(&g, loss), CB_OK);
    cb_safetensors *rg;
    assert_int_equal(cb_safetensors_open(&rg, tu_path("tests/data/tiny_llama3/ref_grads.safetensors")), CB_OK);
    assert_int_equal(rg->n_entries, m->n_params);
    for (int i = 0; i < m->n_params; i++) {
        const cb_st_entry *e = cb_safetensors_find(rg, m->params[i]->name);
        if (!e) fail_msg("reference has no gradient for %s", m->params[i]->name);
        int64_t n = cb_tensor_numel(m->params[i]->t);
        assert_int_equal(e->nbytes, (size_t)n * 4);
        double rel = tu_rel_l2(cb_f32(m->params[i]->t->grad), e->data, n);
        if (!(rel <= 1e-3)) fail_msg("%s: gradient relative L2 error %g", m->params[i]->name, rel);
    }
    cb_safetensors_close(rg);
    cb_graph_free(&g);
    cb_npy_close(in);
    cb_model_free(m);
}

/* A graph reused across steps (reset in between) gives identical results: nothing leaks from
 * one step into the next, and the arena settles into one block. */
static void test_repeat_steps(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    assert_int_equal(cb_model_enable_grads(m), CB_OK);
    cb_npy *in;
    cb_tensor ids = ids_of(&in);
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    float first = 0, g0 = 0;
    for (int step = 0; step < 3; step++) {
        cb_graph_reset(&g);
        assert_int_equal(cb_model_zero_grads(m), CB_OK);
        cb_tensor *loss = cb_model_next_token_loss(m, &g, &ids);
        assert_int_equal(cb_backward(&g, loss), CB_OK);
        float gv = cb_f32(m->params[0]->t->grad)[5];
        if (step == 0) {
            first = cb_f32(loss)[0];
            g0 = gv;
        } else {
            assert_true(cb_f32(loss)[0] == first);
            assert_true(gv == g0);
        }
    }
    assert_int_equal(cb_arena_blocks(&g.act), 1);
    cb_graph_free(&g);
    cb_npy_close(in);
    cb_model_free(m);
}

/* Every variant in tests/data/llama_variants (tied, MHA + biases, bf16, fp16 sharded, newer
 * config layout, explicit head_dim): logits, loss and gradients as transformers computes them. */
static void check_variant(const char *name) {
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tu_path("tests/data/llama_variants"));
    strncat(dir, "/", sizeof dir - strlen(dir) - 1);
    strncat(dir, name, sizeof dir - strlen(dir) - 1);
    cb_model *m = NULL;
    if (cb_model_open_hf(&m, dir, CB_CPU) != CB_OK) fail_msg("%s: %s", name, cb_last_error());
    assert_int_equal(cb_model_enable_grads(m), CB_OK);
    cb_npy *in, *ref;
    snprintf(path, sizeof path, "%s/ref_input_ids.npy", dir);
    assert_int_equal(cb_npy_open(&in, path), CB_OK);
    snprintf(path, sizeof path, "%s/ref_logits.npy", dir);
    assert_int_equal(cb_npy_open(&ref, path), CB_OK);
    cb_tensor ids = cb_npy_tensor(in);
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    cb_tensor *logits = cb_model_forward(m, &g, &ids, NULL);
    assert_non_null(logits);
    int64_t n = cb_tensor_numel(logits);
    assert_int_equal((size_t)n * 4, ref->nbytes);
    double diff = tu_max_abs_diff(cb_f32(logits), ref->data, n), mx = tu_max_abs(ref->data, n);
    if (!(diff <= 1e-4 * mx)) fail_msg("%s: logits max diff %g (max |ref| %g)", name, diff, mx);
    cb_graph_reset(&g);
    cb_tensor *loss = cb_model_next_token_loss(m, &g, &ids);
    assert_non_null(loss);
    assert_int_equal(cb_backward(&g, loss), CB_OK);
    cb_safetensors *rg;
    snprintf(path, sizeof path, "%s/ref_grads.safetensors", dir);
    assert_int_equal(cb_safetensors_open(&rg, path), CB_OK);
    assert_int_equal(rg->n_entries, m->n_params);
    for (int i = 0; i < m->n_params; i++) {
        const cb_st_entry *e = cb_safetensors_find(rg, m->params[i]->name);
        if (!e) fail_msg("%s: no reference gradient for %s", name, m->params[i]->name);
        double rel = tu_rel_l2(cb_f32(m->params[i]->t->grad), e->data, cb_tensor_numel(m->params[i]->t));
        if (!(rel <= 1e-3)) fail_msg("%s: %s gradient rel error %g", name, m->params[i]->name, rel);
    }
    cb_safetensors_close(rg);
    cb_graph_free(&g);
    cb_npy_close(in);
    cb_npy_close(ref);
    cb_model_free(m);
}

static void test_variants(void **state) {
    (void)state;
    const char *names[] = {"tied", "mha_bias", "bf16", "fp16_sharded", "rope_llama3", "legacy_llama3", "head_dim"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_variant(names[i]);
}

static void test_bad_checkpoints(void **state) {
    (void)state;
    cb_model *m = NULL;
    assert_int_not_equal(cb_model_open_hf(&m, "/nonexistent/model/dir", CB_CPU), CB_OK);
    assert_null(m);
    assert_int_not_equal(cb_model_open_hf(&m, "hf://no-such-org/no-such-model", CB_CPU), CB_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits),
        cmocka_unit_test(test_trace_hidden_states),
        cmocka_unit_test(test_loss_and_grads),
        cmocka_unit_test(test_repeat_steps),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_bad_checkpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
