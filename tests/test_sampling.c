/* Sampling (spec-infer §10.1): temperature -> top-k -> top-p against distributions computed by
 * hand from the definitions, greedy argmax, and the frequencies of seeded draws (chi-square). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/generate.h"
#include "testutil.h"

static void expect_probs(const float *got, const double *want, int n, double tol) {
    for (int i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= tol))
            fail_msg("p[%d] = %.7f, expected %.7f", i, got[i], want[i]);
}

static void logits_of(const double *p, float *l, int n) {
    for (int i = 0; i < n; i++) l[i] = (float)log(p[i]);
}

static void test_temperature(void **state) {
    (void)state;
    cb_token_sampler s;
    assert_int_equal(cb_token_sampler_init(&s, 4), CB_OK);
    float l[4] = {1, 2, 3, 4};
    assert_int_equal(cb_token_sampler_probs(&s, l, 2.0f, 0, 0), CB_OK);
    double z = exp(0.5) + exp(1.0) + exp(1.5) + exp(2.0);
    double want[4] = {exp(0.5) / z, exp(1.0) / z, exp(1.5) / z, exp(2.0) / z};
    expect_probs(s.probs, want, 4, 1e-6);
    /* top_p = 1 and top_k >= V are no-ops */
    assert_int_equal(cb_token_sampler_probs(&s, l, 2.0f, 4, 1.0f), CB_OK);
    expect_probs(s.probs, want, 4, 1e-6);
    cb_token_sampler_free(&s);
}

static void test_top_k(void **state) {
    (void)state;
    cb_token_sampler s;
    assert_int_equal(cb_token_sampler_init(&s, 4), CB_OK);
    float l[4] = {1, 2, 3, 4};
    assert_int_equal(cb_token_sampler_probs(&s, l, 1.0f, 2, 0), CB_OK);
    double z = exp(3.0) + exp(4.0);
    double want[4] = {0, 0, exp(3.0) / z, exp(4.0) / z};
    expect_probs(s.probs, want, 4, 1e-6);
    /* ties with the k-th value are kept: top_k 1 over [1, 3, 3, 2] keeps both 3s */
    float t[4] = {1, 3, 3, 2};
    assert_int_equal(cb_token_sampler_probs(&s, t, 1.0f, 1, 0), CB_OK);
    double want2[4] = {0, 0.5, 0.5, 0};
    expect_probs(s.probs, want2, 4, 1e-6);
    cb_token_sampler_free(&s);

    /* a larger vocabulary: exactly the k largest survive */
    const int V = 1000, K = 37;
    assert_int_equal(cb_token_sampler_init(&s, V), CB_OK);
    float *x = malloc(sizeof(float) * V), *sorted = malloc(sizeof(float) * V);
    cb_rng r;
    cb_rng_seed(&r, 11);
    for (int i = 0; i < V; i++) x[i] = sorted[i] = cb_rng_normal(&r) * 3;
    for (int i = 0; i < V; i++) /* insertion sort, descending */
        for (int j = i; j > 0 && sorted[j] > sorted[j - 1]; j--) {
            float tmp = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = tmp;
        }
    assert_int_equal(cb_token_sampler_probs(&s, x, 0.7f, K, 0), CB_OK);
    int nz = 0;
    double sum = 0;
    for (int i = 0; i < V; i++) {
        if (s.probs[i] > 0) {
            nz++;
            assert_true(x[i] >= sorted[K - 1]);
        }
        sum += s.probs[i];
    }
    assert_int_equal(nz, K);
    assert_true(fabs(sum - 1) < 1e-5);
    free(x);
    free(sorted);
    cb_token_sampler_free(&s);
}

static void test_top_p(void **state) {
    (void)state;
    cb_token_sampler s;
    assert_int_equal(cb_token_sampler_init(&s, 4), CB_OK);
    const double p[4] = {0.1, 0.4, 0.2, 0.3};
    float l[4];
    logits_of(p, l, 4);
    /* sorted 0.4, 0.3, 0.2, 0.1: cumulative 0.4, 0.7, 0.9, 1.0; keep through the first > top_p */
    assert_int_equal(cb_token_sampler_probs(&s, l, 1.0f, 0, 0.75f), CB_OK);
    double w1[4] = {0, 4.0 / 9, 2.0 / 9, 3.0 / 9};
    expect_probs(s.probs, w1, 4, 1e-6);
    assert_int_equal(cb_token_sampler_probs(&s, l, 1.0f, 0, 0.5f), CB_OK);
    double w2[4] = {0, 4.0 / 7, 0, 3.0 / 7};
    expect_probs(s.probs, w2, 4, 1e-6);
    assert_int_equal(cb_token_sampler_probs(&s, l, 1.0f, 0, 0.3f),
                     CB_OK); /* the top token always stays */
    double w3[4] = {0, 1, 0, 0};
    expect_probs(s.probs, w3, 4, 1e-6);
    cb_token_sampler_free(&s);
}

/* temperature 0.5 squares the probabilities: [.01, .16, .04, .09] / .30; top-k 3 drops .01;
 * top-p 0.6 over the renormalised [.16, .09, .04] / .29 (cumulative .552, .862) keeps two. */
static void test_order(void **state) {
    (void)state;
    cb_token_sampler s;
    assert_int_equal(cb_token_sampler_init(&s, 4), CB_OK);
    const double p[4] = {0.1, 0.4, 0.2, 0.3};
    float l[4];
    logits_of(p, l, 4);
    assert_int_equal(cb_token_sampler_probs(&s, l, 0.5f, 0, 0), CB_OK);
    double w0[4] = {0.01 / 0.30, 0.16 / 0.30, 0.04 / 0.30, 0.09 / 0.30};
    expect_probs(s.probs, w0, 4, 1e-6);
    assert_int_equal(cb_token_sampler_probs(&s, l, 0.5f, 3, 0.6f), CB_OK);
    double w[4] = {0, 16.0 / 25, 0, 9.0 / 25};
    expect_probs(s.probs, w, 4, 1e-6);
    /* top-p 0.5 after top-k 3: .552 > .5 keeps only the top token */
    assert_int_equal(cb_token_sampler_probs(&s, l, 0.5f, 3, 0.5f), CB_OK);
    double w2[4] = {0, 1, 0, 0};
    expect_probs(s.probs, w2, 4, 1e-6);
    cb_token_sampler_free(&s);
}

static void test_greedy(void **state) {
    (void)state;
    cb_token_sampler s;
    assert_int_equal(cb_token_sampler_init(&s, 5), CB_OK);
    float l[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    cb_rng r, r0;
    cb_rng_seed(&r, 3);
    r0 = r;
    /* first maximum; top_k / top_p ignored; no random number drawn */
    assert_int_equal(cb_token_sampler_sample(&s, l, 0.0f, 1, 0.1f, &r), 1);
    assert_int_equal(cb_token_sampler_sample(&s, l, -1.0f, 0, 0, &r), 1);
    assert_memory_equal(&r, &r0, sizeof r);
    assert_int_equal(cb_token_sampler_probs(&s, l, 0.0f, 0, 0), CB_OK);
    double w[5] = {0, 1, 0, 0, 0};
    expect_probs(s.probs, w, 5, 0);
    assert_int_equal(cb_argmax(l, 5), 1);
    cb_token_sampler_free(&s);
}

/* 200000 seeded draws from the top-p 0.75 distribution above: chi-square over the 3 kept tokens
 * (2 degrees of freedom; 13.82 is the 0.999 quantile), and the removed token is never drawn. */
static void test_frequencies(void **state) {
    (void)state;
    cb_token_sampler s;
    assert_int_equal(cb_token_sampler_init(&s, 4), CB_OK);
    const double p[4] = {0.1, 0.4, 0.2, 0.3};
    float l[4];
    logits_of(p, l, 4);
    cb_rng r;
    cb_rng_seed(&r, 2024);
    const int N = 200000;
    long cnt[4] = {0};
    for (int i = 0; i < N; i++) cnt[cb_token_sampler_sample(&s, l, 1.0f, 0, 0.75f, &r)]++;
    assert_int_equal(cnt[0], 0);
    double want[4] = {0, 4.0 / 9, 2.0 / 9, 3.0 / 9}, chi2 = 0;
    for (int i = 1; i < 4; i++) chi2 += pow(cnt[i] - N * want[i], 2) / (N * want[i]);
    print_message("sampling chi-square %.3f (df 2, threshold 13.82)\n", chi2);
    assert_true(chi2 < 13.82);
    /* zero weights are never drawn by cb_sample_from */
    float w[6] = {0, 0.25f, 0, 0.5f, 0.25f, 0};
    for (int i = 0; i < 10000; i++) {
        int32_t t = cb_sample_from(w, 6, &r);
        assert_true(t == 1 || t == 3 || t == 4);
    }
    cb_token_sampler_free(&s);
}

static void test_bad_logits(void **state) {
    (void)state;
    cb_token_sampler s;
    assert_int_equal(cb_token_sampler_init(&s, 3), CB_OK);
    float l[3] = {-INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(cb_token_sampler_probs(&s, l, 1.0f, 0, 0), CB_ERR_ARG);
    cb_token_sampler_free(&s);
    assert_int_equal(cb_token_sampler_init(&s, 0), CB_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_temperature), cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_p),       cmocka_unit_test(test_order),
        cmocka_unit_test(test_greedy),      cmocka_unit_test(test_frequencies),
        cmocka_unit_test(test_bad_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
