/* Generation on the tiny_llama3 fixture (Hugging Face reference data, tests/data/tiny_llama3):
 * greedy ids reproduce ref_greedy_ids.npy; cached greedy equals recomputing the full forward
 * each step; rollback + regenerate; EOS per row; continuing a context equals generating on the
 * concatenation; capacity checks; decode-plan buckets (spec-infer §11 test values). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/generate.h"
#include "caramba/npy.h"
#include "caramba/threads.h"
#include "testutil.h"

#define FIX "tests/data/tiny_llama3"

static cb_model *open_fixture(void) {
    cb_model *m = NULL;
    if (cb_model_open_hf(&m, tu_path(FIX), CB_CPU) != CB_OK) fail_msg("open: %s", cb_last_error());
    return m;
}

/* ref_input_ids.npy (2, 24) int32 */
static void load_inputs(int32_t ids[2][24]) {
    cb_npy *n;
    assert_int_equal(cb_npy_open(&n, tu_path(FIX "/ref_input_ids.npy")), CB_OK);
    assert_int_equal(n->dtype, CB_I32);
    assert_int_equal(n->shape[0], 2);
    assert_int_equal(n->shape[1], 24);
    memcpy(ids, n->data, sizeof(int32_t) * 48);
    cb_npy_close(n);
}

static cb_generate_config greedy_cfg(int64_t n) {
    cb_generate_config c;
    cb_generate_config_default(&c);
    c.temperature = 0;
    c.max_new_tokens = n;
    c.cache_kind = "fp32";
    c.max_seq_len = 64;
    return c;
}

/* Argmax of the last position of a full forward (no cache) over seq[0..len). */
static int32_t recompute_next(cb_model *m, const int32_t *seq, int64_t len, float *logits_out) {
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    cb_graph_set_grad(&g, false);
    cb_tensor ids;
    int64_t sh[2] = {1, len};
    cb_tensor_init(&ids, CB_I32, CB_CPU, 2, sh, (void *)seq);
    cb_tensor *lg = cb_model_forward(m, &g, &ids, NULL);
    assert_non_null(lg);
    const float *last = cb_f32(lg) + (len - 1) * m->vocab_size;
    if (logits_out) memcpy(logits_out, last, sizeof(float) * (size_t)m->vocab_size);
    int32_t t = cb_argmax(last, m->vocab_size);
    cb_graph_free(&g);
    return t;
}

static void test_greedy_reference(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    int32_t in[2][24];
    load_inputs(in);
    cb_npy *ref;
    assert_int_equal(cb_npy_open(&ref, tu_path(FIX "/ref_greedy_ids.npy")), CB_OK);
    assert_int_equal(ref->shape[1], 24);
    cb_generate_config c = greedy_cfg(16);
    int32_t out[24];
    int64_t len;
    assert_int_equal(cb_generate(m, &c, in[0], 1, 8, out, &len, NULL, NULL), CB_OK);
    assert_int_equal(len, 24);
    assert_memory_equal(out, ref->data, sizeof out);
    /* the default config (cache_kind NULL = fp32) gives the same */
    c.cache_kind = NULL;
    assert_int_equal(cb_generate(m, &c, in[0], 1, 8, out, &len, NULL, NULL), CB_OK);
    assert_memory_equal(out, ref->data, sizeof out);
    cb_npy_close(ref);
    cb_model_free(m);
}

/* Cached greedy == argmax of a full forward at every step, for both fixture rows, batched. */
static void test_greedy_equals_recompute(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    const int64_t V = m->vocab_size;
    int32_t in[2][24];
    load_inputs(in);
    const int64_t S = 6, N = 20;
    int32_t prompt[2][6];
    for (int b = 0; b < 2; b++) memcpy(prompt[b], in[b], sizeof prompt[b]);
    cb_generate_config c = greedy_cfg(N);
    cb_generator *gen;
    assert_int_equal(cb_generator_new(&gen, m, &c), CB_OK);
    int32_t out[2][26];
    int64_t len;
    assert_int_equal(cb_generator_generate(gen, &prompt[0][0], 2, S, &out[0][0], &len, NULL, NULL),
                     CB_OK);
    assert_int_equal(len, S + N);
    assert_int_equal(cb_generator_pos(gen), S + N - 1); /* the last token is not fed */
    float *ref = malloc(sizeof(float) * (size_t)V);
    for (int b = 0; b < 2; b++)
        for (int64_t t = S; t < S + N; t++) {
            int32_t want = recompute_next(m, out[b], t, ref);
            if (want != out[b][t])
                fail_msg("row %d step %lld: cached %d, recomputed %d", b, (long long)t, out[b][t],
                         want);
        }
    /* logits of the cached decode step match the full forward */
    cb_generator_reset(gen);
    assert_int_equal(cb_generator_feed(gen, out[1], 1, 10, NULL), CB_OK);
    for (int64_t t = 10; t < 16; t++) {
        assert_int_equal(cb_generator_feed(gen, &out[1][t], 1, 1, NULL), CB_OK);
        recompute_next(m, out[1], t + 1, ref);
        const float *lg = cb_generator_logits(gen);
        double mx = tu_max_abs(ref, V), d = tu_max_abs_diff(lg, ref, V);
        if (!(d <= 1e-4 * mx))
            fail_msg("step %lld: cached logits differ by %g (max %g)", (long long)t, d, mx);
    }
    free(ref);
    cb_generator_free(gen);
    cb_model_free(m);
}

/* Every cache kind runs and the quantized ones stay close to fp32 on this model. */
static void test_cache_kinds_run(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    int32_t in[2][24];
    load_inputs(in);
    const char *kinds[] = {"fp32", "fp16", "q8_0", "q4_0", "nf4", "k:q8_0,v:q4_0"};
    int32_t base[24];
    for (int i = 0; i < 6; i++) {
        cb_generate_config c = greedy_cfg(16);
        c.cache_kind = kinds[i];
        c.cache_residual_len = i == 3 ? 4 : 0;
        int32_t out[24];
        int64_t len;
        if (cb_generate(m, &c, in[0], 1, 8, out, &len, NULL, NULL) != CB_OK)
            fail_msg("%s: %s", kinds[i], cb_last_error());
        assert_int_equal(len, 24);
        if (i == 0) memcpy(base, out, sizeof base);
        int same = 0;
        for (int t = 8; t < 24; t++) same += out[t] == base[t];
        /* fp16 / q8_0 must agree on the first steps; any kind must produce valid ids */
        if (i <= 2) assert_true(out[8] == base[8] && out[9] == base[9]);
        for (int t = 0; t < 24; t++) assert_true(out[t] >= 0 && out[t] < 384);
        (void)same;
    }
    cb_model_free(m);
}

/* Rolling back k tokens and feeding the same tokens again gives bit-identical logits and the
 * same continuation (fp32, and q4_0 with an fp16 window whose spare slots cover the rollback). */
static void test_rollback_regenerate(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    const int64_t V = m->vocab_size;
    int32_t in[2][24];
    load_inputs(in);
    const char *kinds[] = {"fp32", "q4_0", "q8_0"};
    for (int ki = 0; ki < 3; ki++) {
        cb_generate_config c = greedy_cfg(16);
        c.cache_kind = kinds[ki];
        c.cache_residual_len = ki == 1 ? 8 : 0;
        cb_generator *g;
        assert_int_equal(cb_generator_new(&g, m, &c), CB_OK);
        int32_t out[24];
        int64_t len;
        assert_int_equal(cb_generator_generate(g, in[1], 1, 8, out, &len, NULL, NULL), CB_OK);
        assert_int_equal(cb_generator_pos(g), 23);
        /* replay: feed prompt, then tokens one by one keeping the logits of positions 12..22 */
        cb_generator_reset(g);
        assert_int_equal(cb_generator_feed(g, out, 1, 12, NULL), CB_OK);
        float *keep = malloc(sizeof(float) * (size_t)(11 * V));
        for (int t = 12; t < 23; t++) {
            assert_int_equal(cb_generator_feed(g, &out[t], 1, 1, NULL), CB_OK);
            memcpy(keep + (t - 12) * V, cb_generator_logits(g), sizeof(float) * (size_t)V);
        }
        assert_int_equal(cb_generator_pos(g), 23);
        assert_int_equal(cb_generator_rollback(g, 7), CB_OK);
        assert_int_equal(cb_generator_pos(g), 16);
        assert_null(cb_generator_logits(g));
        for (int t = 16; t < 23; t++) {
            assert_int_equal(cb_generator_feed(g, &out[t], 1, 1, NULL), CB_OK);
            assert_memory_equal(cb_generator_logits(g), keep + (t - 12) * V,
                                sizeof(float) * (size_t)V);
        }
        /* rollback then regenerate with the generator's own loop */
        assert_int_equal(cb_generator_rollback(g, 23 - 13), CB_OK); /* cache holds out[0..13) */
        int32_t again[11];
        int64_t n;
        assert_int_equal(cb_generator_continue(g, &out[13], 1, 1, 10, again, &n, NULL, NULL),
                         CB_OK);
        assert_int_equal(n, 10);
        assert_memory_equal(again, &out[14], sizeof(int32_t) * 10);
        /* rollback past the start clamps to 0 */
        assert_int_equal(cb_generator_rollback(g, 1000), CB_OK);
        assert_int_equal(cb_generator_pos(g), 0);
        free(keep);
        cb_generator_free(g);
    }
    cb_model_free(m);
}

/* Generating on A, then continuing with B, equals generating on A + generated + B. */
static void test_continue_equals_concatenation(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    int32_t in[2][24];
    load_inputs(in);
    cb_generate_config c = greedy_cfg(6);
    cb_generator *g;
    assert_int_equal(cb_generator_new(&g, m, &c), CB_OK);
    int32_t out[14], turn2[6];
    int64_t len, n;
    assert_int_equal(cb_generator_generate(g, in[0], 1, 8, out, &len, NULL, NULL), CB_OK);
    assert_true(cb_generator_has_pending(g));
    assert_int_equal(cb_generator_continue(g, in[1], 1, 5, 6, turn2, &n, NULL, NULL), CB_OK);
    assert_int_equal(n, 6);
    assert_int_equal(cb_generator_pos(g), 14 + 5 + 5);
    int32_t full[19], ref[25];
    memcpy(full, out, sizeof out);
    memcpy(full + 14, in[1], sizeof(int32_t) * 5);
    assert_int_equal(cb_generate(m, &c, full, 1, 19, ref, &len, NULL, NULL), CB_OK);
    assert_memory_equal(turn2, ref + 19, sizeof turn2);
    cb_generator_free(g);
    cb_model_free(m);
}

typedef struct cb_count {
    int calls;
    int stop_at;
} cb_count;
static int count_tokens(void *user, int64_t step, const int32_t *tokens, int64_t batch) {
    cb_count *c = user;
    c->calls++;
    (void)tokens;
    (void)batch;
    return c->stop_at >= 0 && step >= c->stop_at;
}

/* EOS per row: a finished row emits the pad token while the others continue; generation stops
 * when every row has finished. */
static void test_eos_per_row(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    int32_t in[2][24];
    load_inputs(in);
    int32_t prompt[2][8];
    for (int b = 0; b < 2; b++) memcpy(prompt[b], in[b], sizeof prompt[b]);
    cb_generate_config c = greedy_cfg(12);
    int32_t free_run[2][20];
    int64_t len;
    assert_int_equal(cb_generate(m, &c, &prompt[0][0], 2, 8, &free_run[0][0], &len, NULL, NULL),
                     CB_OK);
    /* pick row 0's 4th new token as EOS, one row 1 does not produce before it */
    int32_t eos = free_run[0][8 + 3];
    int first1 = -1;
    for (int t = 8; t < 20 && first1 < 0; t++)
        if (free_run[1][t] == eos) first1 = t;
    int first0 = -1;
    for (int t = 8; t < 20 && first0 < 0; t++)
        if (free_run[0][t] == eos) first0 = t;
    c.eos_token_id = eos;
    c.pad_token_id = 0;
    int32_t out[2][20];
    assert_int_equal(cb_generate(m, &c, &prompt[0][0], 2, 8, &out[0][0], &len, NULL, NULL), CB_OK);
    for (int b = 0; b < 2; b++) {
        int first = b == 0 ? first0 : first1;
        for (int t = 8; t < 20; t++) {
            if (first < 0 || t <= first)
                assert_int_equal(out[b][t], free_run[b][t]);
            else
                assert_int_equal(out[b][t], 0); /* pad after EOS */
        }
    }
    if (first1 < 0)
        assert_int_equal(len, 20);
    else
        assert_int_equal(len, 8 + ((first0 > first1 ? first0 : first1) - 8) + 1);
    /* one row: stops right after EOS, the rest of the buffer holds the pad token */
    int32_t one[20];
    assert_int_equal(cb_generate(m, &c, prompt[0], 1, 8, one, &len, NULL, NULL), CB_OK);
    assert_int_equal(len, first0 + 1);
    assert_int_equal(one[first0], eos);
    for (int t = first0 + 1; t < 20; t++) assert_int_equal(one[t], 0);
    /* the callback sees every step and can stop early */
    cb_count cc = {0, 2};
    c.eos_token_id = -1;
    assert_int_equal(cb_generate(m, &c, prompt[0], 1, 8, one, &len, count_tokens, &cc), CB_OK);
    assert_int_equal(cc.calls, 3);
    assert_int_equal(len, 11);
    cb_model_free(m);
}

static void test_capacity_and_validation(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    int32_t in[2][24];
    load_inputs(in);
    cb_generate_config c = greedy_cfg(9);
    c.max_seq_len = 16; /* 8 + 9 - 1 = 16 positions: fits exactly */
    int32_t out[17];
    int64_t len;
    assert_int_equal(cb_generate(m, &c, in[0], 1, 8, out, &len, NULL, NULL), CB_OK);
    assert_int_equal(len, 17);
    c.max_new_tokens = 10;
    int32_t out2[18];
    assert_int_equal(cb_generate(m, &c, in[0], 1, 8, out2, &len, NULL, NULL), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "max_seq_len"));
    /* max_new_tokens = 0: prompt only */
    c.max_new_tokens = 0;
    assert_int_equal(cb_generate(m, &c, in[0], 1, 8, out, &len, NULL, NULL), CB_OK);
    assert_int_equal(len, 8);
    /* validation names the field */
    cb_generate_config bad = greedy_cfg(4);
    bad.top_p = 1.5f;
    assert_int_equal(cb_generate_config_validate(&bad), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "top_p"));
    bad = greedy_cfg(4);
    bad.cache_qblock = 64;
    assert_int_equal(cb_generate_config_validate(&bad), CB_ERR_UNSUPPORTED);
    bad = greedy_cfg(4);
    bad.cache_kind = "q5_1";
    assert_int_equal(cb_generate_config_validate(&bad), CB_ERR_ARG);
    bad = greedy_cfg(4);
    bad.decode_plan = "autp";
    assert_int_equal(cb_generate_config_validate(&bad), CB_ERR_ARG);
    bad = greedy_cfg(4);
    bad.use_diffusion = true;
    assert_int_equal(cb_generate_config_validate(&bad), CB_ERR_UNSUPPORTED);
    /* ids outside the vocabulary */
    int32_t badids[2] = {1, 384};
    cb_generator *g;
    assert_int_equal(cb_generator_new(&g, m, &c), CB_OK);
    assert_int_equal(cb_generator_feed(g, badids, 1, 2, NULL), CB_ERR_ARG);
    assert_int_equal(cb_generator_pos(g), 0);
    /* prefill sets pos = S, a decode step adds one, batch fixed until reset */
    assert_int_equal(cb_generator_feed(g, in[0], 1, 5, NULL), CB_OK);
    assert_int_equal(cb_generator_pos(g), 5);
    assert_int_equal(cb_generator_feed(g, in[0] + 5, 1, 1, NULL), CB_OK);
    assert_int_equal(cb_generator_pos(g), 6);
    assert_int_equal(cb_generator_feed(g, &in[0][0], 2, 1, NULL), CB_ERR_ARG);
    cb_generator_reset(g);
    assert_int_equal(cb_generator_feed(g, &in[0][0], 2, 3, NULL), CB_OK);
    assert_int_equal(cb_generator_batch(g), 2);
    assert_string_equal(cb_generator_cache_policy(g), "fp32");
    cb_generator_free(g);
    cb_model_free(m);
}

/* Chunked prefill gives the same continuation as one forward. */
static void test_prefill_chunk(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    int32_t in[2][24];
    load_inputs(in);
    cb_generate_config c = greedy_cfg(8);
    int32_t a[32], b[32];
    int64_t la, lb;
    assert_int_equal(cb_generate(m, &c, in[1], 1, 24, a, &la, NULL, NULL), CB_OK);
    c.prefill_chunk = 5;
    assert_int_equal(cb_generate(m, &c, in[1], 1, 24, b, &lb, NULL, NULL), CB_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, sizeof a);
    cb_model_free(m);
}

/* spec-infer §11 test values, with the long bucket's window asked for explicitly. */
static void test_decode_plan(void **state) {
    (void)state;
    cb_generate_config c;
    cb_generate_config_default(&c);
    c.decode_bucket_short = 10;
    c.decode_bucket_mid = 20;
    c.decode_local_window_long = 2048;
    cb_decode_plan_mode mode;
    assert_int_equal(cb_decode_plan_mode_parse("AUTO", &mode), CB_OK);
    int64_t ps[] = {0, 9, 10, 19, 20};
    int qc[] = {0, 0, 128, 128, 64}, lw[] = {0, 0, 0, 0, 2048};
    for (int i = 0; i < 5; i++) {
        cb_decode_plan p = cb_decode_plan_for_pos(&c, mode, ps[i]);
        assert_int_equal(p.q_chunk, qc[i]);
        assert_int_equal(p.local_window, lw[i]);
    }
    c.decode_q_chunk = 32;
    c.decode_local_window = 256;
    assert_int_equal(cb_decode_plan_mode_parse("fixed", &mode), CB_OK);
    cb_decode_plan p = cb_decode_plan_for_pos(&c, mode, 0);
    assert_true(p.q_chunk == 32 && p.local_window == 256);
    p = cb_decode_plan_for_pos(&c, mode, 9999);
    assert_true(p.q_chunk == 32 && p.local_window == 256);
    assert_int_equal(cb_decode_plan_mode_parse("off", &mode), CB_OK);
    p = cb_decode_plan_for_pos(&c, mode, 9999);
    assert_true(p.q_chunk == 0 && p.local_window == 0);
    assert_int_equal(cb_decode_plan_mode_parse("bogus", &mode), CB_ERR_ARG);
    /* defaults: auto never sets a window */
    cb_generate_config d;
    cb_generate_config_default(&d);
    assert_int_equal(cb_decode_plan_mode_parse(NULL, &mode), CB_OK);
    p = cb_decode_plan_for_pos(&d, mode, 100000);
    assert_int_equal(p.local_window, 0);
    assert_int_equal(p.q_chunk, 64);
}

/* A window plan changes what the model attends to: with local_window 1 every token sees only
 * itself, so the logits equal those of the token fed alone at that position. */
static void test_decode_plan_window_applies(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    int32_t in[2][24];
    load_inputs(in);
    cb_generate_config c = greedy_cfg(4);
    c.decode_plan = "fixed";
    c.decode_local_window = 1;
    cb_generator *g;
    assert_int_equal(cb_generator_new(&g, m, &c), CB_OK);
    assert_int_equal(cb_generator_feed(g, in[0], 1, 6, NULL), CB_OK);
    assert_int_equal(cb_generator_feed(g, &in[0][6], 1, 1, NULL), CB_OK);
    float *a = malloc(sizeof(float) * 384);
    memcpy(a, cb_generator_logits(g), sizeof(float) * 384);
    cb_generator *h;
    assert_int_equal(cb_generator_new(&h, m, &c), CB_OK);
    /* same token with a different history: identical logits under a window of 1 */
    int32_t other[6] = {5, 6, 7, 8, 9, 10};
    assert_int_equal(cb_generator_feed(h, other, 1, 6, NULL), CB_OK);
    assert_int_equal(cb_generator_feed(h, &in[0][6], 1, 1, NULL), CB_OK);
    double d = tu_max_abs_diff(a, cb_generator_logits(h), 384);
    assert_true(d <= 1e-5 * tu_max_abs(a, 384));
    free(a);
    cb_generator_free(g);
    cb_generator_free(h);
    cb_model_free(m);
}

int main(void) {
    cb_threads_init(1); /* a model this small gains nothing from threads; spinning workers on a
                           busy machine cost more than the work */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_reference),
        cmocka_unit_test(test_greedy_equals_recompute),
        cmocka_unit_test(test_cache_kinds_run),
        cmocka_unit_test(test_rollback_regenerate),
        cmocka_unit_test(test_continue_equals_concatenation),
        cmocka_unit_test(test_eos_per_row),
        cmocka_unit_test(test_capacity_and_validation),
        cmocka_unit_test(test_prefill_chunk),
        cmocka_unit_test(test_decode_plan),
        cmocka_unit_test(test_decode_plan_window_applies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
