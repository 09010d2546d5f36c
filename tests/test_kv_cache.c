/* KV cache: kinds and policies, append / growth / truncate, exact byte accounting, the fp16
 * window, and attention over fp32 / fp16 / q8_0 / q4_0 / nf4 caches against a plain softmax
 * attention computed here in double precision.
 *
 * Error bounds for attention over a lossy cache (checked per output row):
 *   Let the cache return k'_j, v'_j for the exact k_j, v_j, and let the score of key j move by
 *   delta_j = scale <q, k'_j - k_j> (+ scale2 <q2, k2'_j - k2_j>), |delta_j| <= D over the row's
 *   keys. Softmax weights then satisfy p'_j / p_j in [e^-2D, e^2D], so sum |p' - p| <= e^2D - 1,
 *   and   |o' - o| <= max_j |v'_j - v_j| + (e^2D - 1) max_j |v_j|   (+ 2e-5 for f32 arithmetic).
 *   D and the value error are measured from the cache's own stored values, so the bound is exact
 *   for every kind.
 * Typical quality, relative L2 error of the whole output against exact attention: the relative
 *   RMS error of quantizing uniform [-A, A] data alone is q8_0 (A/127)/sqrt(12) / (A/sqrt(3)) =
 *   0.0039, q4_0 (A/8)/sqrt(12) / (A/sqrt(3)) = 0.0625, nf4 0.093 (integrated over its level
 *   gaps; NF4 is spaced for Gaussian data), fp16 < 2^-11. The key error also moves the softmax
 *   weights (peaked here: |q| up to 3), so the limits are 3x those: fp32 1e-6, fp16 2e-3,
 *   q8_0 0.012, q4_0 0.19, nf4 0.28 (observed: 2.4e-7, 3e-4, 0.0055, 0.08-0.10, 0.12-0.17).
 * Against the values the cache holds (cb_seq_cache_read), every kind must match the double
 * reference to 2e-5, and the fast path must match the scalar reference path to 2e-5. */
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/kv_cache.h"
#include "testutil.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float urand(void) { /* uniform [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static float *rand_array(size_t n, float amp) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = urand() * amp;
    return p;
}

static cb_tensor t3(float *data, int64_t a, int64_t b, int64_t c) {
    cb_tensor t;
    int64_t shape[3] = {a, b, c};
    cb_tensor_init(&t, CB_F32, CB_CPU, 3, shape, data);
    return t;
}

/* ---------------------------------------------------------------- kinds, policies ---- */

static void test_kind_parse(void **state) {
    (void)state;
    cb_kv_kind k;
    const char *names[] = {"fp32", "fp16", "q8_0", "q4_0", "nf4"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(cb_kv_kind_parse(names[i], &k), CB_OK);
        assert_int_equal(k, i);
        assert_string_equal(cb_kv_kind_name(k), names[i]);
    }
    assert_int_equal(cb_kv_kind_parse("F16", &k), CB_OK);
    assert_int_equal(k, CB_KV_FP16);
    assert_int_equal(cb_kv_kind_parse("q5_0", &k), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "'q5_0'"));
    assert_non_null(strstr(cb_last_error(), "nf4"));
    assert_int_equal(cb_kv_kind_dtype(CB_KV_NF4), CB_NF4);
    assert_true(cb_kv_kind_is_quantized(CB_KV_Q4_0));
    assert_false(cb_kv_kind_is_quantized(CB_KV_FP16));
}

static void test_policy_parse(void **state) {
    (void)state;
    cb_kv_policy p;
    char buf[128];
    assert_int_equal(cb_kv_policy_parse("k:q8_0,v:q4_0", &p), CB_OK);
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_K, CB_KV_FP16), CB_KV_Q8_0);
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_V, CB_KV_FP16), CB_KV_Q4_0);
    /* "k" covers both keys of a decoupled layer */
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_K_SEM, CB_KV_FP16), CB_KV_Q8_0);
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_K_GEO, CB_KV_FP16), CB_KV_Q8_0);
    assert_string_equal(cb_kv_policy_str(&p, buf, sizeof buf), "k:q8_0,v:q4_0");

    assert_int_equal(cb_kv_policy_parse(" v:q4_0 , q8_0 ", &p), CB_OK); /* named beats bare */
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_V, CB_KV_FP32), CB_KV_Q4_0);
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_K, CB_KV_FP32), CB_KV_Q8_0);
    assert_string_equal(cb_kv_policy_str(&p, buf, sizeof buf), "q8_0,v:q4_0");

    assert_int_equal(cb_kv_policy_parse("k_sem:q4_0,k_geo:q8_0,v:q4_0", &p), CB_OK);
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_K_SEM, CB_KV_FP16), CB_KV_Q4_0);
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_K_GEO, CB_KV_FP16), CB_KV_Q8_0);
    assert_int_equal(cb_kv_policy_kind(&p, CB_KV_SLOT_K, CB_KV_FP16), CB_KV_FP16); /* fallback */

    assert_int_equal(cb_kv_policy_parse("auto", &p), CB_OK);
    assert_true(p.is_auto);

    assert_int_equal(cb_kv_policy_parse("x:q8_0", &p), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "unknown tensor 'x'"));
    assert_int_equal(cb_kv_policy_parse("k:q9", &p), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "'q9'"));
    assert_int_equal(cb_kv_policy_parse("k:q8_0,k:q4_0", &p), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "twice"));
    assert_int_equal(cb_kv_policy_parse("", &p), CB_ERR_ARG);
}

/* ---------------------------------------------------------------- storage ---------- */

static void test_append_grow_truncate(void **state) {
    (void)state;
    enum { B = 2, W = 24, MAX = 20 };
    cb_seq_cache c;
    cb_kv_tensor_cfg cfg = {.kind = CB_KV_FP32, .initial_capacity = 4};
    assert_int_equal(cb_seq_cache_init(&c, "k", B, MAX, W, &cfg), CB_OK);
    assert_int_equal(c.capacity, 4);
    assert_int_equal(cb_seq_cache_bytes(&c), (size_t)B * 4 * W * 4);
    float *x = rand_array(B * MAX * W, 1.0f); /* token p of row b: x[(b*MAX + p)*W] */
    float tmp[B * MAX * W], out[MAX * W];
    int64_t pos = 0, old;
    const int steps[] = {3, 3, 1, 5};
    for (int s = 0; s < 4; s++) {
        for (int b = 0; b < B; b++)
            memcpy(tmp + (size_t)b * steps[s] * W, x + ((size_t)b * MAX + pos) * W,
                   (size_t)steps[s] * W * sizeof(float));
        assert_int_equal(cb_seq_cache_append(&c, tmp, steps[s], &old), CB_OK);
        assert_int_equal(old, pos);
        pos += steps[s];
    }
    assert_int_equal(c.len, 12);
    assert_int_equal(c.capacity, 16); /* 4 -> 8 -> 16 */
    assert_int_equal(cb_seq_cache_bytes(&c), (size_t)B * 16 * W * 4);
    assert_int_equal(cb_seq_cache_bytes_used(&c), (size_t)B * 12 * W * 4);
    for (int b = 0; b < B; b++) { /* growth kept every row */
        assert_int_equal(cb_seq_cache_read(&c, b, 0, 12, out), CB_OK);
        assert_memory_equal(out, x + (size_t)b * MAX * W, 12 * W * sizeof(float));
    }
    /* 9 more would make 21 > max_seq_len 20: error, nothing changes */
    assert_int_equal(cb_seq_cache_append(&c, x, 9, NULL), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "overflow"));
    assert_int_equal(c.len, 12);
    assert_int_equal(cb_seq_cache_append(&c, x, 8, NULL), CB_OK);
    assert_int_equal(c.capacity, 20); /* capped at max_seq_len */
    assert_int_equal(cb_seq_cache_append(&c, x, 1, NULL), CB_ERR_ARG);
    /* truncate */
    assert_int_equal(cb_seq_cache_truncate(&c, 21), CB_ERR_ARG);
    assert_int_equal(cb_seq_cache_truncate(&c, -1), CB_ERR_ARG);
    assert_int_equal(cb_seq_cache_truncate(&c, 5), CB_OK);
    assert_int_equal(c.len, 5);
    assert_int_equal(cb_seq_cache_read(&c, 0, 0, 6, out), CB_ERR_ARG);
    assert_int_equal(cb_seq_cache_read(&c, 1, 0, 5, out), CB_OK);
    assert_memory_equal(out, x + (size_t)MAX * W, 5 * W * sizeof(float));
    cb_seq_cache_reset(&c);
    assert_int_equal(c.len, 0);
    /* bad tensor shape */
    cb_tensor bad = t3(x, B, 2, W + 1);
    assert_int_equal(cb_seq_cache_append_tensor(&c, &bad, NULL), CB_ERR_SHAPE);
    assert_non_null(strstr(cb_last_error(), "[2, 2, 25]"));
    cb_seq_cache_free(&c);
    free(x);
    /* bad configs */
    assert_int_equal(cb_seq_cache_init(&c, "v", 0, 4, 4, NULL), CB_ERR_ARG);
    cb_kv_tensor_cfg neg = {.kind = CB_KV_Q8_0, .residual_len = -1};
    assert_int_equal(cb_seq_cache_init(&c, "v", 1, 4, 4, &neg), CB_ERR_ARG);
}

static void test_bytes(void **state) {
    (void)state;
    /* per token rows: width 80 = 2.5 blocks -> 3 blocks */
    assert_int_equal(cb_kv_bytes_per_token(CB_KV_FP32, 80), 320);
    assert_int_equal(cb_kv_bytes_per_token(CB_KV_FP16, 80), 160);
    assert_int_equal(cb_kv_bytes_per_token(CB_KV_Q8_0, 80), 3 * 34);
    assert_int_equal(cb_kv_bytes_per_token(CB_KV_Q4_0, 80), 3 * 18);
    assert_int_equal(cb_kv_bytes_per_token(CB_KV_NF4, 64), 2 * 18);
    /* spec-infer §6.1 [verified] example: 2 standard layers, d_model 64 (k and v width 64),
     * B = 1, T = 128, R = 16 -> fp16 65536, fp32 131072, q8_0 43008, q4_0 26624, nf4 26624
     * (no spare window slots, as in the original) */
    const cb_kv_kind kinds[5] = {CB_KV_FP16, CB_KV_FP32, CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    const size_t want[5] = {65536, 131072, 43008, 26624, 26624};
    for (int i = 0; i < 5; i++) {
        cb_kv_tensor_cfg cfg = {
            .kind = kinds[i], .residual_len = 16, .residual_spare = -1, .initial_capacity = 128};
        assert_int_equal(4 * cb_kv_tensor_bytes(&cfg, 1, 128, 64, 128), want[i]);
        /* and what a layer cache really allocates */
        cb_layer_cache lc;
        assert_int_equal(cb_layer_cache_init(&lc, 1, 128, 64, 64, &cfg, &cfg), CB_OK);
        assert_int_equal(2 * cb_layer_cache_bytes(&lc), want[i]);
        cb_layer_cache_free(&lc);
    }
    /* the default spare adds 32 fp16 slots: q8_0, B 2, capacity 256, width 64, R 16 */
    cb_kv_tensor_cfg cfg = {.kind = CB_KV_Q8_0, .residual_len = 16};
    cb_seq_cache c;
    assert_int_equal(cb_seq_cache_init(&c, "k", 2, 1000, 64, &cfg), CB_OK);
    assert_int_equal(c.ring_slots, 48);
    assert_int_equal(cb_seq_cache_bytes(&c), 2 * 256 * 68 + 2 * 48 * 64 * 2);
    assert_int_equal(cb_seq_cache_bytes(&c), cb_kv_tensor_bytes(&cfg, 2, 256, 64, 1000));
    cb_seq_cache_free(&c);
}

static void test_quantized_storage(void **state) {
    (void)state;
    enum { W = 40, N = 7 };
    float *x = rand_array(N * W, 3.0f);
    const cb_kv_kind kinds[3] = {CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    for (int k = 0; k < 3; k++) {
        cb_seq_cache c;
        cb_kv_tensor_cfg cfg = {.kind = kinds[k]};
        assert_int_equal(cb_seq_cache_init(&c, "v", 1, 64, W, &cfg), CB_OK);
        assert_int_equal(cb_seq_cache_append(&c, x, N, NULL), CB_OK);
        unsigned char row[2 * 34];
        float want[W], got[W];
        for (int p = 0; p < N; p++) {
            cb_quantize_row(cb_kv_kind_dtype(kinds[k]), x + p * W, W, row);
            assert_memory_equal(cb_seq_cache_row(&c, 0, p), row, c.row_bytes);
            cb_dequantize_row(cb_kv_kind_dtype(kinds[k]), row, W, want);
            assert_int_equal(cb_seq_cache_read(&c, 0, p, 1, got), CB_OK);
            assert_memory_equal(got, want, sizeof want);
        }
        cb_seq_cache_free(&c);
    }
    free(x);
}

/* fp16 window: exact fp16 copies for the newest R tokens, quantized older ones, and the rollback
 * rules of kv_cache.h. */
static void test_window(void **state) {
    (void)state;
    enum { W = 32, N = 10 };
    float *x = rand_array(N * W, 1.0f);
    float got[W], want[W];
    unsigned char row[34];
    cb_seq_cache c;
    cb_kv_tensor_cfg cfg = {.kind = CB_KV_Q8_0, .residual_len = 4, .residual_spare = -1};
    assert_int_equal(cb_seq_cache_init(&c, "k", 1, 64, W, &cfg), CB_OK);
    assert_int_equal(c.ring_slots, 4);
    assert_int_equal(cb_seq_cache_append(&c, x, 3, NULL), CB_OK);
    assert_int_equal(cb_seq_cache_window_start(&c), 0);
    assert_int_equal(cb_seq_cache_append(&c, x + 3 * W, N - 3, NULL), CB_OK);
    assert_int_equal(cb_seq_cache_window_start(&c), 6);
#define EXPECT_POS(p, fp16)                                                                        \
    do {                                                                                           \
        assert_int_equal(cb_seq_cache_read(&c, 0, (p), 1, got), CB_OK);                            \
        if (fp16) {                                                                                \
            for (int e = 0; e < W; e++) want[e] = cb_f16_to_f32(cb_f32_to_f16(x[(p)*W + e]));      \
        } else {                                                                                   \
            cb_quantize_row(CB_Q8_0, x + (p)*W, W, row);                                           \
            cb_dequantize_row(CB_Q8_0, row, W, want);                                              \
        }                                                                                          \
        assert_memory_equal(got, want, sizeof want);                                               \
    } while (0)
    for (int p = 0; p < N; p++) EXPECT_POS(p, p >= 6);
    /* rollback by 2 with no spare slots: positions 4, 5 lost their fp16 copies (overwritten by
     * 8, 9); they are read from the quantized store, never from stale ring slots */
    assert_int_equal(cb_seq_cache_truncate(&c, 8), CB_OK);
    assert_int_equal(cb_seq_cache_window_start(&c), 6);
    for (int p = 0; p < 8; p++) EXPECT_POS(p, p >= 6);
    /* re-append the same two tokens: identical to the fresh cache again */
    assert_int_equal(cb_seq_cache_append(&c, x + 8 * W, 2, NULL), CB_OK);
    assert_int_equal(cb_seq_cache_window_start(&c), 6);
    for (int p = 0; p < N; p++) EXPECT_POS(p, p >= 6);
    /* a deep rollback to 2 (< every valid copy): window restarts at 2 */
    assert_int_equal(cb_seq_cache_truncate(&c, 2), CB_OK);
    assert_int_equal(cb_seq_cache_window_start(&c), 2);
    assert_int_equal(cb_seq_cache_append(&c, x + 2 * W, 3, NULL), CB_OK);
    assert_int_equal(cb_seq_cache_window_start(&c), 2);
    for (int p = 0; p < 5; p++) EXPECT_POS(p, p >= 2);
    cb_seq_cache_free(&c);

    /* with spare slots a rollback of up to `spare` tokens keeps the window exact */
    cfg.residual_spare = 3;
    assert_int_equal(cb_seq_cache_init(&c, "k", 1, 64, W, &cfg), CB_OK);
    assert_int_equal(cb_seq_cache_append(&c, x, N, NULL), CB_OK);
    assert_int_equal(cb_seq_cache_truncate(&c, 7), CB_OK);
    assert_int_equal(cb_seq_cache_window_start(&c), 3); /* = fresh cache of 7 tokens */
    for (int p = 0; p < 7; p++) EXPECT_POS(p, p >= 3);
    cb_seq_cache_free(&c);
#undef EXPECT_POS
    free(x);
}

/* ---------------------------------------------------------------- attention -------- */

typedef struct shape {
    int B, L, T, H, Hkv, hd, hdv, hd2;
} shape;

/* out[B,T,H*hdv] and lse[B,H,T] in double; k2/q2 may be NULL. */
static void naive_attention(const cb_kv_attn_cfg *cfg, const shape *s, const float *q,
                            const float *k, const float *v, const float *q2, const float *k2,
                            double *out, double *lse) {
    const int G = s->H / s->Hkv;
    double *p = malloc((size_t)s->L * sizeof(double));
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T; t++)
            for (int h = 0; h < s->H; h++) {
                const int g = h / G;
                const int64_t qp = cfg->q_pos0 + t;
                double mx = -INFINITY;
                for (int j = 0; j < s->L; j++) {
                    bool ok =
                        (!cfg->causal || j <= qp) && (cfg->window <= 0 || j > qp - cfg->window);
                    if (!ok) {
                        p[j] = -INFINITY;
                        continue;
                    }
                    double a = 0.0, a2 = 0.0;
                    for (int e = 0; e < s->hd; e++)
                        a += (double)q[((size_t)(b * s->T + t) * s->H + h) * s->hd + e] *
                             k[((size_t)b * s->L + j) * s->Hkv * s->hd + g * s->hd + e];
                    for (int e = 0; e < s->hd2; e++)
                        a2 += (double)q2[((size_t)(b * s->T + t) * s->H + h) * s->hd2 + e] *
                              k2[((size_t)b * s->L + j) * s->Hkv * s->hd2 + g * s->hd2 + e];
                    p[j] = cfg->scale * a + cfg->scale2 * a2;
                    mx = fmax(mx, p[j]);
                }
                double sum = 0.0;
                double *o = out + ((size_t)(b * s->T + t) * s->H + h) * s->hdv;
                for (int e = 0; e < s->hdv; e++) o[e] = 0.0;
                for (int j = 0; j < s->L; j++) {
                    if (p[j] == -INFINITY) continue;
                    double w = exp(p[j] - mx);
                    sum += w;
                    for (int e = 0; e < s->hdv; e++)
                        o[e] += w * v[((size_t)b * s->L + j) * s->Hkv * s->hdv + g * s->hdv + e];
                }
                for (int e = 0; e < s->hdv; e++) o[e] = sum > 0 ? o[e] / sum : 0.0;
                lse[((size_t)b * s->H + h) * s->T + t] = sum > 0 ? mx + log(sum) : -INFINITY;
            }
    free(p);
}

/* The derived per-row bound of the header comment: value error + (e^2D - 1) max |v|. */
static void lossy_bounds(const cb_kv_attn_cfg *cfg, const shape *s, const float *q, const float *k,
                         const float *kq, const float *v, const float *vq, const float *q2,
                         const float *k2, const float *k2q, double *bound) {
    const int G = s->H / s->Hkv;
    for (int b = 0; b < s->B; b++)
        for (int t = 0; t < s->T; t++)
            for (int h = 0; h < s->H; h++) {
                const int g = h / G;
                const int64_t qp = cfg->q_pos0 + t;
                double D = 0.0, ev = 0.0, vmax = 0.0;
                for (int j = 0; j < s->L; j++) {
                    if (!((!cfg->causal || j <= qp) && (cfg->window <= 0 || j > qp - cfg->window)))
                        continue;
                    double d1 = 0.0, d2 = 0.0;
                    for (int e = 0; e < s->hd; e++) {
                        size_t ki = ((size_t)b * s->L + j) * s->Hkv * s->hd + g * s->hd + e;
                        d1 += (double)q[((size_t)(b * s->T + t) * s->H + h) * s->hd + e] *
                              ((double)kq[ki] - k[ki]);
                    }
                    for (int e = 0; e < s->hd2; e++) {
                        size_t ki = ((size_t)b * s->L + j) * s->Hkv * s->hd2 + g * s->hd2 + e;
                        d2 += (double)q2[((size_t)(b * s->T + t) * s->H + h) * s->hd2 + e] *
                              ((double)k2q[ki] - k2[ki]);
                    }
                    D = fmax(D, fabs(cfg->scale * d1 + cfg->scale2 * d2));
                    for (int e = 0; e < s->hdv; e++) {
                        size_t vi = ((size_t)b * s->L + j) * s->Hkv * s->hdv + g * s->hdv + e;
                        ev = fmax(ev, fabs((double)vq[vi] - v[vi]));
                        vmax = fmax(vmax, fabs(v[vi]));
                    }
                }
                bound[(size_t)(b * s->T + t) * s->H + h] = ev + (exp(2 * D) - 1) * vmax + 2e-5;
            }
}

/* Reads back what a cache holds, [B, L, width]. */
static float *read_all(const cb_seq_cache *c) {
    float *r = malloc((size_t)c->batch * c->len * c->width * sizeof(float));
    for (int b = 0; b < c->batch; b++)
        assert_int_equal(cb_seq_cache_read(c, b, 0, c->len, r + (size_t)b * c->len * c->width),
                         CB_OK);
    return r;
}

typedef struct case_result {
    double max_vs_ref, max_vs_stored, rel_l2_vs_exact;
} case_result;

/* Builds caches of the given kinds from random data, runs the fast and reference kernels and
 * checks them against the double attention over the stored and over the exact values. */
static case_result run_case(const shape *s, const cb_kv_attn_cfg *cfg_in, cb_kv_tensor_cfg kc,
                            cb_kv_tensor_cfg vc, cb_kv_tensor_cfg k2c, float qamp) {
    cb_kv_attn_cfg cfg = *cfg_in;
    const size_t nq = (size_t)s->B * s->T * s->H, nk = (size_t)s->B * s->L * s->Hkv;
    float *q = rand_array(nq * s->hd, qamp), *k = rand_array(nk * s->hd, 1.0f);
    float *v = rand_array(nk * s->hdv, 1.0f);
    float *q2 = s->hd2 ? rand_array(nq * s->hd2, qamp) : NULL;
    float *k2 = s->hd2 ? rand_array(nk * s->hd2, 1.0f) : NULL;
    cb_seq_cache ck, cv, ck2;
    assert_int_equal(cb_seq_cache_init(&ck, "k", s->B, s->L + 8, s->Hkv * s->hd, &kc), CB_OK);
    assert_int_equal(cb_seq_cache_init(&cv, "v", s->B, s->L + 8, s->Hkv * s->hdv, &vc), CB_OK);
    assert_int_equal(cb_seq_cache_append(&ck, k, s->L, NULL), CB_OK);
    assert_int_equal(cb_seq_cache_append(&cv, v, s->L, NULL), CB_OK);
    if (s->hd2) {
        assert_int_equal(cb_seq_cache_init(&ck2, "k2", s->B, s->L + 8, s->Hkv * s->hd2, &k2c),
                         CB_OK);
        assert_int_equal(cb_seq_cache_append(&ck2, k2, s->L, NULL), CB_OK);
    }
    float *out = malloc(nq * s->hdv * sizeof(float)),
          *out_ref = malloc(nq * s->hdv * sizeof(float));
    float *lse = malloc(nq * sizeof(float)), *lse_ref = malloc(nq * sizeof(float));
    cb_tensor tq = t3(q, s->B, s->T, s->H * s->hd), tq2 = t3(q2, s->B, s->T, s->H * s->hd2);
    cb_tensor to = t3(out, s->B, s->T, s->H * s->hdv), tor = t3(out_ref, s->B, s->T, s->H * s->hdv);
    cb_tensor tl = t3(lse, s->B, s->H, s->T), tlr = t3(lse_ref, s->B, s->H, s->T);
    assert_int_equal(
        cb_kv_attention(&cfg, &tq, &ck, &cv, q2 ? &tq2 : NULL, q2 ? &ck2 : NULL, &to, &tl), CB_OK);
    assert_int_equal(
        cb_kv_attention_ref(&cfg, &tq, &ck, &cv, q2 ? &tq2 : NULL, q2 ? &ck2 : NULL, &tor, &tlr),
        CB_OK);

    float *ks = read_all(&ck), *vs = read_all(&cv), *k2s = s->hd2 ? read_all(&ck2) : NULL;
    double *o_st = malloc(nq * s->hdv * sizeof(double)),
           *o_ex = malloc(nq * s->hdv * sizeof(double));
    double *l_st = malloc(nq * sizeof(double)), *l_ex = malloc(nq * sizeof(double));
    double *bound = malloc(nq * sizeof(double));
    naive_attention(&cfg, s, q, ks, vs, q2, k2s, o_st, l_st);
    naive_attention(&cfg, s, q, k, v, q2, k2, o_ex, l_ex);
    lossy_bounds(&cfg, s, q, k, ks, v, vs, q2, k2, k2s, bound);

    case_result r = {0};
    double num = 0.0, den = 0.0;
    for (size_t row = 0; row < nq; row++) {
        for (int e = 0; e < s->hdv; e++) {
            size_t i = row * s->hdv + e;
            r.max_vs_ref = fmax(r.max_vs_ref, fabs(out[i] - out_ref[i]));
            r.max_vs_stored = fmax(r.max_vs_stored, fabs(out[i] - o_st[i]));
            double err = fabs(out[i] - o_ex[i]);
            if (!(err <= bound[row])) {
                print_error("row %zu elem %d: |out - exact| = %g > bound %g\n", row, e, err,
                            bound[row]);
                fail();
            }
            num += err * err;
            den += o_ex[i] * o_ex[i];
        }
    }
    /* lse (rows are laid out [B, H, T] there) */
    for (size_t i = 0; i < nq; i++) {
        if (l_st[i] == -INFINITY) {
            assert_true(lse[i] == -INFINITY && lse_ref[i] == -INFINITY);
            continue;
        }
        assert_true(fabs(lse[i] - l_st[i]) <= 2e-5 * fmax(1.0, fabs(l_st[i])));
        assert_true(fabs(lse_ref[i] - l_st[i]) <= 2e-5 * fmax(1.0, fabs(l_st[i])));
    }
    r.rel_l2_vs_exact = den > 0 ? sqrt(num / den) : sqrt(num);
    assert_true(r.max_vs_ref <= 2e-5);
    assert_true(r.max_vs_stored <= 2e-5);

    cb_seq_cache_free(&ck);
    cb_seq_cache_free(&cv);
    if (s->hd2) cb_seq_cache_free(&ck2);
    free(q), free(k), free(v), free(q2), free(k2), free(out), free(out_ref), free(lse);
    free(lse_ref), free(ks), free(vs), free(k2s), free(o_st), free(o_ex), free(l_st), free(l_ex);
    free(bound);
    return r;
}

static const double rel_l2_limit[CB_KV_KIND_COUNT] = {
    [CB_KV_FP32] = 1e-6, [CB_KV_FP16] = 2e-3, [CB_KV_Q8_0] = 0.012,
    [CB_KV_Q4_0] = 0.19, [CB_KV_NF4] = 0.28,
};

/* Every kind, several GQA shapes (aligned and unaligned heads), decode and short chunks. */
static void test_attention_kinds(void **state) {
    (void)state;
    const shape shapes[] = {
        {.B = 2, .L = 150, .T = 1, .H = 8, .Hkv = 2, .hd = 32, .hdv = 32}, /* tiny */
        {.B = 1, .L = 97, .T = 4, .H = 4, .Hkv = 2, .hd = 48, .hdv = 16},  /* unaligned heads */
        {.B = 1, .L = 130, .T = 3, .H = 4, .Hkv = 1, .hd = 64, .hdv = 64}, /* MQA */
        {.B = 1, .L = 70, .T = 2, .H = 3, .Hkv = 3, .hd = 12, .hdv = 20},  /* MHA, odd dims */
    };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *s = &shapes[si];
        cb_kv_attn_cfg cfg = {.n_heads = s->H,
                              .n_kv_heads = s->Hkv,
                              .head_dim = s->hd,
                              .v_head_dim = s->hdv,
                              .scale = 1.0f / sqrtf((float)s->hd),
                              .causal = true,
                              .q_pos0 = s->L - s->T};
        for (int kind = 0; kind < CB_KV_KIND_COUNT; kind++) {
            cb_kv_tensor_cfg c = {.kind = (cb_kv_kind)kind};
            case_result r = run_case(s, &cfg, c, c, c, 3.0f);
            if (getenv("KV_VERBOSE") || r.rel_l2_vs_exact > rel_l2_limit[kind])
                print_error("shape %zu kind %s: rel L2 %g > %g\n", si,
                            cb_kv_kind_name((cb_kv_kind)kind), r.rel_l2_vs_exact,
                            rel_l2_limit[kind]);
            assert_true(r.rel_l2_vs_exact <= rel_l2_limit[kind]);
        }
        /* mixed kinds and an fp16 window on the quantized tensors */
        cb_kv_tensor_cfg kq = {.kind = CB_KV_Q8_0, .residual_len = 16};
        cb_kv_tensor_cfg vq = {.kind = CB_KV_Q4_0, .residual_len = 16};
        case_result r = run_case(s, &cfg, kq, vq, kq, 3.0f);
        assert_true(r.rel_l2_vs_exact <= rel_l2_limit[CB_KV_Q4_0]);
    }
}

/* Sliding window, non-causal, rows with no visible key (zeros, lse -inf), positions past the
 * cache for non-causal queries. */
static void test_attention_masks(void **state) {
    (void)state;
    shape s = {.B = 1, .L = 120, .T = 5, .H = 4, .Hkv = 2, .hd = 32, .hdv = 32};
    cb_kv_attn_cfg cfg = {.n_heads = 4,
                          .n_kv_heads = 2,
                          .head_dim = 32,
                          .v_head_dim = 32,
                          .scale = 0.2f,
                          .causal = true,
                          .window = 7,
                          .q_pos0 = 115};
    const cb_kv_kind kinds[3] = {CB_KV_FP32, CB_KV_Q8_0, CB_KV_NF4};
    for (int i = 0; i < 3; i++) {
        cb_kv_tensor_cfg c = {.kind = kinds[i], .residual_len = 3};
        run_case(&s, &cfg, c, c, c, 2.0f);
    }
    cfg.window = 0;
    cfg.causal = false;
    cfg.q_pos0 = 50;
    cb_kv_tensor_cfg f = {.kind = CB_KV_FP16};
    run_case(&s, &cfg, f, f, f, 2.0f);
    /* causal with q_pos0 = -3: the first three queries see nothing, then keys 0, 0..1 */
    cfg.causal = true;
    cfg.q_pos0 = -3;
    run_case(&s, &cfg, f, f, f, 2.0f);
    cfg.window = 2; /* window + causal, query 4 (position 1) sees keys 0, 1 */
    run_case(&s, &cfg, f, f, f, 2.0f);
}

/* Decoupled (DBA) scores scale <q_sem, k_sem> + scale2 <q_geo, k_geo> with GQA sharing, small
 * per-head sizes (heads straddle block boundaries), per-tensor kinds as the fused kernels of the
 * original wanted them (k_sem q4_0, k_geo q8_0, v q4_0), and via the layer cache API. */
static void test_attention_decoupled(void **state) {
    (void)state;
    shape s = {.B = 2, .L = 90, .T = 2, .H = 8, .Hkv = 4, .hd = 8, .hdv = 24, .hd2 = 16};
    cb_kv_attn_cfg cfg = {.n_heads = 8,
                          .n_kv_heads = 4,
                          .head_dim = 8,
                          .v_head_dim = 24,
                          .scale = 1.0f / sqrtf(8.0f),
                          .causal = true,
                          .q_pos0 = 88,
                          .head_dim2 = 16,
                          .scale2 = 1.0f / 4.0f};
    cb_kv_tensor_cfg sem = {.kind = CB_KV_Q4_0}, geo = {.kind = CB_KV_Q8_0},
                     v = {.kind = CB_KV_Q4_0};
    case_result r = run_case(&s, &cfg, sem, v, geo, 2.0f);
    assert_true(r.rel_l2_vs_exact <= rel_l2_limit[CB_KV_Q4_0]);
    cb_kv_tensor_cfg f32 = {.kind = CB_KV_FP32};
    r = run_case(&s, &cfg, f32, f32, f32, 2.0f);
    assert_true(r.rel_l2_vs_exact <= 1e-6);
    sem.residual_len = 5;
    run_case(&s, &cfg, sem, v, geo, 2.0f);

    /* layer cache API: same result as the tensor-level call */
    cb_layer_cache lc;
    assert_int_equal(
        cb_layer_cache_init_decoupled(&lc, 1, 64, 4 * 8, 4 * 16, 4 * 24, &sem, &geo, &v), CB_OK);
    float *ks = rand_array(10 * 32, 1.0f), *kg = rand_array(10 * 64, 1.0f);
    float *vv = rand_array(10 * 96, 1.0f), *qs = rand_array(64, 1.0f), *qg = rand_array(128, 1.0f);
    cb_tensor tks = t3(ks, 1, 10, 32), tkg = t3(kg, 1, 10, 64), tv = t3(vv, 1, 10, 96);
    int64_t old = -1;
    assert_int_equal(cb_layer_cache_append(&lc, &tks, &tv, NULL), CB_ERR_ARG);
    assert_int_equal(cb_layer_cache_append_decoupled(&lc, &tks, &tkg, &tv, &old), CB_OK);
    assert_int_equal(old, 0);
    assert_int_equal(cb_layer_cache_len(&lc), 10);
    float o1[8 * 24], o2[8 * 24];
    cb_tensor tqs = t3(qs, 1, 1, 64), tqg = t3(qg, 1, 1, 128);
    cb_tensor to1 = t3(o1, 1, 1, 192), to2 = t3(o2, 1, 1, 192);
    cfg.q_pos0 = 9;
    assert_int_equal(cb_layer_cache_attention(&cfg, &lc, &tqs, &tqg, &to1, NULL), CB_OK);
    assert_int_equal(cb_kv_attention(&cfg, &tqs, &lc.k_sem, &lc.v, &tqg, &lc.k_geo, &to2, NULL),
                     CB_OK);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_int_equal(cb_layer_cache_attention(&cfg, &lc, &tqs, NULL, &to1, NULL), CB_ERR_ARG);
    cb_layer_cache_free(&lc);
    free(ks), free(kg), free(vv), free(qs), free(qg);
}

/* Prefill through the cache: T = L = 96 causal queries, several query blocks per kv head. */
static void test_attention_prefill(void **state) {
    (void)state;
    shape s = {.B = 1, .L = 96, .T = 96, .H = 4, .Hkv = 1, .hd = 32, .hdv = 32};
    cb_kv_attn_cfg cfg = {.n_heads = 4,
                          .n_kv_heads = 1,
                          .head_dim = 32,
                          .v_head_dim = 32,
                          .scale = 1.0f / sqrtf(32.0f),
                          .causal = true,
                          .q_pos0 = 0};
    cb_kv_tensor_cfg f = {.kind = CB_KV_FP32}, q = {.kind = CB_KV_Q8_0, .residual_len = 8};
    run_case(&s, &cfg, f, f, f, 3.0f);
    case_result r = run_case(&s, &cfg, q, q, q, 3.0f);
    assert_true(r.rel_l2_vs_exact <= rel_l2_limit[CB_KV_Q8_0]);
}

/* Long cache with one kv head: split-K over the sequence (forced with 4 threads) and the merge
 * of partial states. */
static void test_attention_split_k(void **state) {
    (void)state;
    int saved = omp_get_max_threads();
    omp_set_num_threads(4);
    shape s = {.B = 1, .L = 3000, .T = 1, .H = 2, .Hkv = 1, .hd = 32, .hdv = 32};
    cb_kv_attn_cfg cfg = {.n_heads = 2,
                          .n_kv_heads = 1,
                          .head_dim = 32,
                          .v_head_dim = 32,
                          .scale = 1.0f / sqrtf(32.0f),
                          .causal = true,
                          .q_pos0 = 2999};
    const cb_kv_kind kinds[3] = {CB_KV_FP32, CB_KV_FP16, CB_KV_Q4_0};
    for (int i = 0; i < 3; i++) {
        cb_kv_tensor_cfg c = {.kind = kinds[i], .residual_len = i == 2 ? 100 : 0};
        case_result r = run_case(&s, &cfg, c, c, c, 8.0f);
        assert_true(r.rel_l2_vs_exact <= rel_l2_limit[kinds[i]]);
    }
    cfg.window = 1500; /* window starting inside the second chunk */
    cb_kv_tensor_cfg c = {.kind = CB_KV_Q8_0};
    run_case(&s, &cfg, c, c, c, 8.0f);
    omp_set_num_threads(saved);
}

/* Rollback then re-append equals a fresh cache: same stored bytes, same attention output. */
static void test_rollback(void **state) {
    (void)state;
    enum { W = 64, N = 30 };
    float *a = rand_array(N * W, 1.0f), *b = rand_array(N * W, 1.0f), *q = rand_array(4 * 32, 2.0f);
    cb_kv_attn_cfg cfg = {.n_heads = 4,
                          .n_kv_heads = 2,
                          .head_dim = 32,
                          .v_head_dim = 32,
                          .scale = 0.25f,
                          .causal = true};
    const cb_kv_tensor_cfg cfgs[3] = {{.kind = CB_KV_FP16},
                                      {.kind = CB_KV_Q4_0, .residual_len = 8},
                                      {.kind = CB_KV_NF4, .residual_len = 8, .residual_spare = -1}};
    for (int ci = 0; ci < 3; ci++) {
        cb_layer_cache used, fresh;
        assert_int_equal(cb_layer_cache_init(&used, 1, 64, W, W, &cfgs[ci], &cfgs[ci]), CB_OK);
        assert_int_equal(cb_layer_cache_init(&fresh, 1, 64, W, W, &cfgs[ci], &cfgs[ci]), CB_OK);
        cb_tensor ta = t3(a, 1, 20, W), ta15 = t3(a, 1, 15, W), tb = t3(b, 1, 5, W);
        /* used: 20 tokens of a, roll back 5, then 5 tokens of b; fresh: 15 of a + 5 of b */
        assert_int_equal(cb_layer_cache_append(&used, &ta, &ta, NULL), CB_OK);
        assert_int_equal(cb_layer_cache_truncate(&used, 15), CB_OK);
        assert_int_equal(cb_layer_cache_append(&used, &tb, &tb, NULL), CB_OK);
        assert_int_equal(cb_layer_cache_append(&fresh, &ta15, &ta15, NULL), CB_OK);
        assert_int_equal(cb_layer_cache_append(&fresh, &tb, &tb, NULL), CB_OK);
        assert_int_equal(cb_layer_cache_len(&used), 20);
        for (int p = 0; p < 20; p++)
            assert_memory_equal(cb_seq_cache_row(&used.k, 0, p), cb_seq_cache_row(&fresh.k, 0, p),
                                used.k.row_bytes);
        assert_int_equal(cb_seq_cache_window_start(&used.k), cb_seq_cache_window_start(&fresh.k));
        float o1[4 * 32], o2[4 * 32];
        cb_tensor tq = t3(q, 1, 1, 128), to1 = t3(o1, 1, 1, 128), to2 = t3(o2, 1, 1, 128);
        cfg.q_pos0 = 19;
        assert_int_equal(cb_layer_cache_attention(&cfg, &used, &tq, NULL, &to1, NULL), CB_OK);
        assert_int_equal(cb_layer_cache_attention(&cfg, &fresh, &tq, NULL, &to2, NULL), CB_OK);
        assert_memory_equal(o1, o2, sizeof o1);
        /* all-or-nothing append: a bad v leaves k untouched */
        cb_tensor bad = t3(b, 1, 5, W - 1);
        assert_int_equal(cb_layer_cache_append(&used, &tb, &bad, NULL), CB_ERR_SHAPE);
        assert_int_equal(used.k.len, 20);
        assert_int_equal(used.v.len, 20);
        cb_layer_cache_free(&used);
        cb_layer_cache_free(&fresh);
    }
    free(a), free(b), free(q);
}

static void test_attention_errors(void **state) {
    (void)state;
    cb_seq_cache k, v;
    cb_kv_tensor_cfg c = {.kind = CB_KV_Q8_0};
    assert_int_equal(cb_seq_cache_init(&k, "k", 1, 16, 64, &c), CB_OK);
    assert_int_equal(cb_seq_cache_init(&v, "v", 1, 16, 64, &c), CB_OK);
    float x[64 * 4] = {0}, o[4 * 32];
    cb_seq_cache_append(&k, x, 2, NULL);
    cb_seq_cache_append(&v, x, 1, NULL);
    cb_kv_attn_cfg cfg = {.n_heads = 4,
                          .n_kv_heads = 2,
                          .head_dim = 32,
                          .v_head_dim = 32,
                          .scale = 1.0f,
                          .causal = true,
                          .q_pos0 = 1};
    cb_tensor tq = t3(x, 1, 1, 128), to = t3(o, 1, 1, 128);
    assert_int_equal(cb_kv_attention(&cfg, &tq, &k, &v, NULL, NULL, &to, NULL), CB_ERR_SHAPE);
    assert_non_null(strstr(cb_last_error(), "v cache"));
    cb_seq_cache_append(&v, x, 1, NULL);
    assert_int_equal(cb_kv_attention(&cfg, &tq, &k, &v, NULL, NULL, &to, NULL), CB_OK);
    cfg.n_kv_heads = 3;
    assert_int_equal(cb_kv_attention(&cfg, &tq, &k, &v, NULL, NULL, &to, NULL), CB_ERR_ARG);
    cfg.n_kv_heads = 2;
    cfg.head_dim2 = 8;
    assert_int_equal(cb_kv_attention(&cfg, &tq, &k, &v, NULL, NULL, &to, NULL), CB_ERR_ARG);
    cfg.head_dim2 = 0;
    cb_tensor bad = t3(o, 1, 1, 127);
    assert_int_equal(cb_kv_attention(&cfg, &tq, &k, &v, NULL, NULL, &bad, NULL), CB_ERR_SHAPE);
    assert_non_null(strstr(cb_last_error(), "out"));
    /* an empty cache: nothing to attend to, zeros and lse -inf */
    cb_seq_cache_reset(&k);
    cb_seq_cache_reset(&v);
    float l[4];
    cb_tensor tl = t3(l, 1, 4, 1);
    for (int i = 0; i < 128; i++) o[i] = 1.0f;
    assert_int_equal(cb_kv_attention(&cfg, &tq, &k, &v, NULL, NULL, &to, &tl), CB_OK);
    for (int i = 0; i < 128; i++) assert_true(o[i] == 0.0f);
    for (int i = 0; i < 4; i++) assert_true(l[i] == -INFINITY);
    cb_seq_cache_free(&k);
    cb_seq_cache_free(&v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind_parse),           cmocka_unit_test(test_policy_parse),
        cmocka_unit_test(test_append_grow_truncate), cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_quantized_storage),    cmocka_unit_test(test_window),
        cmocka_unit_test(test_attention_kinds),      cmocka_unit_test(test_attention_masks),
        cmocka_unit_test(test_attention_decoupled),  cmocka_unit_test(test_attention_prefill),
        cmocka_unit_test(test_attention_split_k),    cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_attention_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
