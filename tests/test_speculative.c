/* Speculative decoding: with draft = target everything is accepted and the output equals greedy
 * decoding (the original crashed there); with a different draft the output tokens follow the
 * target's sampling distribution exactly (chi-square against distributions computed from full
 * forwards of the target, no draft involved); adaptive k; fall-back; cache lengths.
 *
 * Chi-square thresholds are the 0.999 quantiles (Wilson-Hilferty), at fixed seeds. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/generate.h"
#include "caramba/hf.h"
#include "caramba/npy.h"
#include "caramba/speculative.h"
#include "caramba/threads.h"
#include "testutil.h"

#define FIX "tests/data/tiny_llama3"

static cb_model *open_fixture(void) {
    cb_model *m = NULL;
    if (cb_model_open_hf(&m, tu_path(FIX), CB_CPU) != CB_OK) fail_msg("open: %s", cb_last_error());
    return m;
}

/* A randomly initialised small model with the fixture's vocabulary (1 layer, width 32). */
static cb_model *small_draft(void) {
    cb_llama_config c;
    assert_int_equal(cb_llama_config_load(tu_path(FIX), &c), CB_OK);
    c.num_hidden_layers = 1;
    c.hidden_size = 32;
    c.intermediate_size = 64;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 16;
    c.rope_dim = 16;
    cb_model *m = NULL;
    if (cb_model_from_llama_config(&m, &c, CB_CPU) != CB_OK) fail_msg("draft: %s", cb_last_error());
    return m;
}

/* The fixture with noise on its output head: a draft that agrees with the target often but
 * not always, so acceptance, rejection and the residual distribution are all exercised. */
static cb_model *perturbed_draft(float noise) {
    cb_model *m = open_fixture();
    cb_param *w = cb_model_find_param(m, "lm_head.weight");
    assert_non_null(w);
    cb_rng r;
    cb_rng_seed(&r, 99);
    float *x = cb_f32(w->t);
    for (int64_t i = 0; i < cb_tensor_numel(w->t); i++) x[i] += noise * cb_rng_normal(&r);
    return m;
}

static void prompt_of(int32_t p[8]) {
    cb_npy *n;
    assert_int_equal(cb_npy_open(&n, tu_path(FIX "/ref_input_ids.npy")), CB_OK);
    memcpy(p, n->data, sizeof(int32_t) * 8);
    cb_npy_close(n);
}

static double chi2_quantile_999(int df) {
    double z = 3.0902323, a = 2.0 / (9.0 * df);
    return df * pow(1 - a + z * sqrt(a), 3);
}

/* Pearson statistic over bins with expected count >= 5 (the rest pooled); any count where the
 * probability is 0 fails outright. Returns the statistic, *df the degrees of freedom. */
static double chi_square(const long *cnt, const double *p, int64_t V, long N, int *df) {
    double stat = 0, pool_e = 0;
    long pool_o = 0;
    int bins = 0;
    for (int64_t v = 0; v < V; v++) {
        if (p[v] <= 0) {
            if (cnt[v])
                fail_msg("token %lld drawn %ld times but has probability 0", (long long)v, cnt[v]);
            continue;
        }
        double e = p[v] * N;
        if (e >= 5) {
            stat += (cnt[v] - e) * (cnt[v] - e) / e;
            bins++;
        } else {
            pool_e += e;
            pool_o += cnt[v];
        }
    }
    if (pool_e > 0) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        bins++;
    }
    *df = bins - 1;
    return stat;
}

/* Target sampling distribution after seq[0..len) from a full forward (no cache, no draft). */
static void target_probs(cb_model *m, const int32_t *seq, int64_t len, const cb_generate_config *g,
                         double *out) {
    cb_graph gr;
    assert_int_equal(cb_graph_init(&gr, CB_CPU), CB_OK);
    cb_graph_set_grad(&gr, false);
    cb_tensor ids;
    int64_t sh[2] = {1, len};
    cb_tensor_init(&ids, CB_I32, CB_CPU, 2, sh, (void *)seq);
    cb_tensor *lg = cb_model_forward(m, &gr, &ids, NULL);
    assert_non_null(lg);
    cb_token_sampler s;
    assert_int_equal(cb_token_sampler_init(&s, m->vocab_size), CB_OK);
    assert_int_equal(cb_token_sampler_probs(&s, cb_f32(lg) + (len - 1) * m->vocab_size,
                                            g->temperature, g->top_k, g->top_p),
                     CB_OK);
    for (int64_t v = 0; v < m->vocab_size; v++) out[v] = s.probs[v];
    cb_token_sampler_free(&s);
    cb_graph_free(&gr);
}

static void greedy_ref(cb_model *m, const int32_t *prompt, int64_t S, int64_t N, int32_t *out) {
    cb_generate_config c;
    cb_generate_config_default(&c);
    c.temperature = 0;
    c.max_new_tokens = N;
    c.max_seq_len = 64;
    int64_t len;
    assert_int_equal(cb_generate(m, &c, prompt, 1, S, out, &len, NULL, NULL), CB_OK);
}

static cb_spec_config spec_cfg(int64_t N, float temperature) {
    cb_spec_config c;
    cb_spec_config_default(&c);
    c.gen.max_new_tokens = N;
    c.gen.temperature = temperature;
    c.gen.max_seq_len = 64;
    return c;
}

/* draft == target, greedy: every proposal accepted (the original crashed on the first fully
 * accepted round), the output is the greedy output, k adapts 2 -> 4. */
static void test_self_draft_greedy(void **state) {
    (void)state;
    cb_model *m = open_fixture();
    int32_t prompt[8], ref[24], out[24];
    prompt_of(prompt);
    greedy_ref(m, prompt, 8, 16, ref);
    cb_spec_config c = spec_cfg(16, 0);
    c.spec_k = 2;
    c.spec_k_adaptive = true;
    c.spec_k_max = 4;
    c.spec_k_adjust_interval = 1;
    cb_spec_stats st;
    int64_t len;
    assert_int_equal(cb_speculative_generate(m, m, &c, prompt, 1, 8, out, &len, &st, NULL, NULL),
                     CB_OK);
    assert_int_equal(len, 24);
    assert_memory_equal(out, ref, sizeof out);
    assert_true(st.propose_total > 0);
    assert_int_equal(st.accept_total, st.propose_total);
    assert_true(st.acceptance_rate == 1.0);
    assert_int_equal(st.full_accepts, st.rounds);
    assert_int_equal(st.k_final, 4);
    assert_int_equal(st.target_cache_len, len - 1);
    assert_true(st.draft_cache_len <= len - 1);
    /* fewer target forwards than tokens: that is the point */
    assert_true(st.target_forwards < 16);
    /* without the extra token, and with the greedy method at temperature 1: same output */
    c.spec_extra_token = false;
    assert_int_equal(cb_speculative_generate(m, m, &c, prompt, 1, 8, out, &len, &st, NULL, NULL),
                     CB_OK);
    assert_memory_equal(out, ref, sizeof out);
    c = spec_cfg(16, 1.0f);
    c.spec_method = "greedy";
    assert_int_equal(cb_speculative_generate(m, m, &c, prompt, 1, 8, out, &len, &st, NULL, NULL),
                     CB_OK);
    assert_memory_equal(out, ref, sizeof out);
    /* sampling with draft == target: p == q up to rounding, so (almost) everything is accepted */
    c = spec_cfg(16, 1.0f);
    c.gen.seed = 5;
    assert_int_equal(cb_speculative_generate(m, m, &c, prompt, 1, 8, out, &len, &st, NULL, NULL),
                     CB_OK);
    assert_true(st.acceptance_rate >= 0.95);
    cb_model_free(m);
}

/* A poor draft: output still greedy-exact, k adapts down to 1, and the fall-back switches
 * speculation off once acceptance is below the threshold. Batch rows are independent. */
static void test_poor_draft(void **state) {
    (void)state;
    cb_model *m = open_fixture(), *d = small_draft();
    int32_t prompt[2][8], ref[2][24], out[2][24];
    prompt_of(prompt[0]);
    {
        cb_npy *n;
        assert_int_equal(cb_npy_open(&n, tu_path(FIX "/ref_input_ids.npy")), CB_OK);
        memcpy(prompt[1], (const int32_t *)n->data + 24, sizeof(int32_t) * 8);
        cb_npy_close(n);
    }
    greedy_ref(m, prompt[0], 8, 16, ref[0]);
    greedy_ref(m, prompt[1], 8, 16, ref[1]);
    cb_spec_config c = spec_cfg(16, 0);
    c.spec_k = 4;
    c.spec_k_adaptive = true;
    c.spec_k_adjust_interval = 1;
    cb_spec_stats st;
    int64_t len;
    assert_int_equal(
        cb_speculative_generate(m, d, &c, prompt[0], 1, 8, out[0], &len, &st, NULL, NULL), CB_OK);
    assert_memory_equal(out[0], ref[0], sizeof out[0]);
    assert_true(st.acceptance_rate < 0.6);
    assert_int_equal(st.k_final, 1);
    assert_int_equal(st.target_cache_len, len - 1);
    /* fall-back */
    c = spec_cfg(16, 0);
    c.spec_disable_below_accept = 0.9;
    c.spec_k = 2;
    assert_int_equal(
        cb_speculative_generate(m, d, &c, &prompt[0][0], 2, 8, &out[0][0], &len, &st, NULL, NULL),
        CB_OK);
    assert_memory_equal(out, ref, sizeof out);
    assert_true(st.fell_back);
    assert_true(st.plain_steps > 0);
    assert_true(st.propose_total <= 12 + 2);
    /* vocabularies must agree */
    cb_llama_config lc;
    assert_int_equal(cb_llama_config_load(tu_path(FIX), &lc), CB_OK);
    lc.vocab_size = 100;
    lc.num_hidden_layers = 1;
    cb_model *bad;
    assert_int_equal(cb_model_from_llama_config(&bad, &lc, CB_CPU), CB_OK);
    assert_int_equal(
        cb_speculative_generate(m, bad, &c, prompt[0], 1, 8, out[0], &len, &st, NULL, NULL),
        CB_ERR_ARG);
    cb_model_free(bad);
    cb_model_free(d);
    cb_model_free(m);
}

/* The verification alone with fixed distributions: the first emitted token follows p[0], the
 * second p[1] (200000 rounds of k = 2). */
static void test_verify_distribution(void **state) {
    (void)state;
    enum { V = 6, K = 2 };
    const float p[(K + 1) * V] = {0.10f, 0.20f, 0.30f, 0.40f, 0.00f, 0.00f,  /* p0 */
                                  0.05f, 0.05f, 0.50f, 0.10f, 0.30f, 0.00f,  /* p1 */
                                  0.25f, 0.25f, 0.25f, 0.25f, 0.00f, 0.00f}; /* p2 */
    const float q[K * V] = {0.40f, 0.30f, 0.20f, 0.05f, 0.05f, 0.00f,
                            0.20f, 0.20f, 0.20f, 0.20f, 0.10f, 0.10f};
    cb_rng r;
    cb_rng_seed(&r, 7);
    float scratch[V];
    const long N = 200000;
    long c0[V] = {0}, c1[V] = {0};
    long n1 = 0;
    for (long it = 0; it < N; it++) {
        int32_t d[K];
        for (int j = 0; j < K; j++) d[j] = cb_sample_from(q + j * V, V, &r);
        int32_t next;
        bool has;
        int a = cb_spec_verify(p, q, d, K, V, false, true, &r, scratch, &next, &has);
        assert_true(has);
        int32_t emitted[K + 1];
        for (int i = 0; i < a; i++) emitted[i] = d[i];
        emitted[a] = next;
        c0[emitted[0]]++;
        if (a >= 1) {
            c1[emitted[1]]++;
            n1++;
        }
    }
    double p0[V], p1[V];
    for (int v = 0; v < V; v++) p0[v] = p[v], p1[v] = p[V + v];
    int df0, df1;
    double s0 = chi_square(c0, p0, V, N, &df0), s1 = chi_square(c1, p1, V, n1, &df1);
    print_message("verify: chi2 %.2f (df %d, threshold %.2f), %.2f (df %d, threshold %.2f)\n", s0,
                  df0, chi2_quantile_999(df0), s1, df1, chi2_quantile_999(df1));
    assert_true(s0 < chi2_quantile_999(df0));
    assert_true(s1 < chi2_quantile_999(df1));
    /* greedy: accept while draft == argmax */
    int32_t d[K] = {3, 2};
    int32_t next;
    bool has;
    assert_int_equal(cb_spec_verify(p, NULL, d, K, V, true, true, &r, scratch, &next, &has), 2);
    assert_int_equal(next, 0); /* argmax of p2: first of the ties */
    d[1] = 4;
    assert_int_equal(cb_spec_verify(p, NULL, d, K, V, true, true, &r, scratch, &next, &has), 1);
    assert_int_equal(next, 2);
    assert_int_equal(cb_spec_verify(p, NULL, d, K, V, true, false, &r, scratch, &next, &has), 1);
    d[1] = 2;
    assert_int_equal(cb_spec_verify(p, NULL, d, K, V, true, false, &r, scratch, &next, &has), 2);
    assert_false(has);
}

/* End to end with real models: the first and second generated tokens, over many seeded runs of
 * speculative decoding, are distributed as the target's sampling distribution (temperature,
 * top-k and top-p applied), computed from full forwards of the target alone. */
static void check_distribution(cb_model *m, cb_model *d, const char *what, int k, long N,
                               float noise) {
    (void)noise;
    const int64_t V = m->vocab_size;
    int32_t prompt[8];
    prompt_of(prompt);
    cb_spec_config c = spec_cfg(3, 1.0f);
    c.gen.top_k = 24;
    c.gen.top_p = 0.9f;
    c.spec_k = k;
    double *p1 = calloc((size_t)V, sizeof(double)), *p2 = calloc((size_t)V, sizeof(double)),
           *cond = calloc((size_t)V, sizeof(double));
    target_probs(m, prompt, 8, &c.gen, p1);
    int32_t seq[9];
    memcpy(seq, prompt, sizeof prompt);
    for (int64_t x = 0; x < V; x++) {
        if (p1[x] <= 0) continue;
        seq[8] = (int32_t)x;
        target_probs(m, seq, 9, &c.gen, cond);
        for (int64_t v = 0; v < V; v++) p2[v] += p1[x] * cond[v];
    }
    long *c1 = calloc((size_t)V, sizeof(long)), *c2 = calloc((size_t)V, sizeof(long));
    int64_t accepted = 0, proposed = 0;
    c.gen.seed = 1000;
    cb_spec_decoder *sd; /* one decoder, one random stream: the runs are independent draws */
    assert_int_equal(cb_spec_decoder_new(&sd, m, d, &c), CB_OK);
    for (long it = 0; it < N; it++) {
        int32_t out[11];
        int64_t len;
        cb_spec_stats st;
        if (cb_spec_decoder_generate(sd, prompt, 1, 8, out, &len, &st, NULL, NULL) != CB_OK)
            fail_msg("%s", cb_last_error());
        assert_int_equal(len, 11);
        c1[out[8]]++;
        c2[out[9]]++;
        accepted += st.accept_total;
        proposed += st.propose_total;
    }
    cb_spec_decoder_free(sd);
    int df1, df2;
    double s1 = chi_square(c1, p1, V, N, &df1), s2 = chi_square(c2, p2, V, N, &df2);
    print_message(
        "%s: acceptance %.3f; token 1 chi2 %.2f (df %d, threshold %.2f); token 2 chi2 %.2f "
        "(df %d, threshold %.2f)\n",
        what, (double)accepted / (double)proposed, s1, df1, chi2_quantile_999(df1), s2, df2,
        chi2_quantile_999(df2));
    assert_true(s1 < chi2_quantile_999(df1));
    assert_true(s2 < chi2_quantile_999(df2));
    free(p1);
    free(p2);
    free(cond);
    free(c1);
    free(c2);
}

static void test_distribution_random_draft(void **state) {
    (void)state;
    cb_model *m = open_fixture(), *d = small_draft();
    check_distribution(m, d, "random draft", 2, 2000, 0);
    cb_model_free(d);
    cb_model_free(m);
}

static void test_distribution_close_draft(void **state) {
    (void)state;
    cb_model *m = open_fixture(), *d = perturbed_draft(0.08f);
    check_distribution(m, d, "perturbed draft", 2, 2000, 0.08f);
    cb_model_free(d);
    cb_model_free(m);
}

int main(void) {
    cb_threads_init(1); /* a model this small gains nothing from threads; spinning workers on a
                           busy machine cost more than the work */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_draft_greedy),
        cmocka_unit_test(test_poor_draft),
        cmocka_unit_test(test_verify_distribution),
        cmocka_unit_test(test_distribution_random_draft),
        cmocka_unit_test(test_distribution_close_draft),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
