/* Finite-difference gradient checks for every op, plus forward checks against naive
 * double-precision references (attention, rope, norms, cross-entropy). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/graph.h"
#include "caramba/ops.h"
#include "ops/kernels.h"
#include "testutil.h"

#define MAXP 6

typedef struct fd_case fd_case;
typedef cb_tensor *(*build_fn)(cb_graph *g, cb_tensor **p, const fd_case *c);

struct fd_case {
    const char *name;
    build_fn build;
    int np;
    int ndim[MAXP];
    int64_t shape[MAXP][4];
    cb_attn_cfg attn;
    int flag;
    const float *init; /* values of p[0] (cycled) instead of random ones */
};

static uint64_t rng_state = 12345;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* loss = sum(out * R) with a fixed random R, computed as linear(flatten(out), R). */
static cb_tensor *weigh(cb_graph *g, cb_tensor *out, cb_tensor **R) {
    if (!out) return NULL;
    int64_t n = cb_tensor_numel(out);
    if (!*R) {
        int64_t sh[2] = {1, n};
        assert_int_equal(cb_tensor_new(R, CB_F32, CB_CPU, 2, sh), CB_OK);
        for (int64_t i = 0; i < n; i++) cb_f32(*R)[i] = frand();
    }
    int64_t fl[2] = {1, n};
    return cb_linear(g, cb_reshape(g, out, 2, fl), *R, NULL);
}

static double eval_loss(const fd_case *c, cb_tensor **p, cb_tensor **R) {
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    g.training = true;
    cb_graph_set_grad(&g, false);
    cb_tensor *l = weigh(&g, c->build(&g, p, c), R);
    if (!l) fail_msg("%s: %s", c->name, cb_last_error());
    double v = cb_f32(l)[0];
    cb_graph_free(&g);
    return v;
}

static void run_fd(const fd_case *c) {
    cb_tensor *p[MAXP] = {0}, *R = NULL;
    for (int i = 0; i < c->np; i++) {
        assert_int_equal(cb_tensor_new(&p[i], CB_F32, CB_CPU, c->ndim[i], c->shape[i]), CB_OK);
        for (int64_t j = 0; j < cb_tensor_numel(p[i]); j++)
            cb_f32(p[i])[j] = i == 0 && c->init ? c->init[j % 8] : frand();
        assert_int_equal(cb_tensor_enable_grad(p[i]), CB_OK);
    }
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    g.training = true;
    cb_tensor *l = weigh(&g, c->build(&g, p, c), &R);
    if (!l) fail_msg("%s: %s", c->name, cb_last_error());
    if (cb_backward(&g, l) != CB_OK) fail_msg("%s: backward: %s", c->name, cb_last_error());
    cb_graph_free(&g);
    const float eps = 1e-2f;
    for (int i = 0; i < c->np; i++) {
        int64_t n = cb_tensor_numel(p[i]);
        double num = 0, den = 0;
        for (int64_t j = 0; j < n; j++) {
            float *x = &cb_f32(p[i])[j], old = *x;
            *x = old + eps;
            double lp = eval_loss(c, p, &R);
            *x = old - eps;
            double lm = eval_loss(c, p, &R);
            *x = old;
            double fd = (lp - lm) / (2 * eps), an = cb_f32(p[i]->grad)[j];
            num += (fd - an) * (fd - an);
            den += fd * fd;
        }
        double rel = sqrt(num) / fmax(sqrt(den), 1e-12);
        if (!(rel < 5e-3)) fail_msg("%s: param %d gradient rel L2 error %.3g", c->name, i, rel);
    }
    for (int i = 0; i < c->np; i++) cb_tensor_free(p[i]);
    cb_tensor_free(R);
}

/* ---- builders ---------------------------------------------------------------------------- */
static cb_tensor *b_linear(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_linear(g, p[0], p[1], c->np > 2 ? p[2] : NULL);
}
static cb_tensor *b_matmul(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_matmul(g, p[0], p[1], c->flag & 1, c->flag & 2);
}
static cb_tensor *b_add(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_add(g, p[0], p[1]); }
static cb_tensor *b_mul(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_mul(g, p[0], p[1]); }
static cb_tensor *b_scale(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_scale(g, p[0], -1.7f); }
static cb_tensor *b_rmsnorm(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_rmsnorm(g, p[0], c->np > 1 ? p[1] : NULL, 1e-5f);
}
static cb_tensor *b_layernorm(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_layernorm(g, p[0], p[1], p[2], 1e-5f);
}
static cb_tensor *b_silu(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_silu(g, p[0]); }
static cb_tensor *b_swiglu(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_swiglu(g, p[0], p[1]); }
static cb_tensor *b_softmax(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_softmax(g, p[0]); }
static cb_tensor *b_dropout(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_dropout(g, p[0], 0.3f); }
static cb_tensor *b_transpose(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_transpose(g, p[0], 1, 2); }
static cb_tensor *b_slice(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_slice(g, p[0], 1, 1, 2); }
static cb_tensor *b_concat(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_concat(g, p, 2, c->flag); }
static cb_tensor *b_stack(cb_graph *g, cb_tensor **p, const fd_case *c) { return cb_stack(g, p, 3); }
static cb_tensor *b_reshape(cb_graph *g, cb_tensor **p, const fd_case *c) {
    int64_t sh[2] = {3, 8};
    return cb_mul(g, cb_reshape(g, p[0], 2, sh), cb_reshape(g, p[0], 2, sh)); /* x*x through a view */
}
static cb_tensor *b_embedding(cb_graph *g, cb_tensor **p, const fd_case *c) {
    static int32_t ids[6] = {3, 0, 3, 4, 1, 3};
    int64_t sh[2] = {2, 3};
    return cb_embedding(g, cb_graph_wrap(g, CB_I32, 2, sh, ids), p[0]);
}
static cb_tensor *b_ce(cb_graph *g, cb_tensor **p, const fd_case *c) {
    static int64_t tg[5] = {2, -100, 0, 6, 2};
    int64_t n = 5;
    return cb_cross_entropy(g, p[0], cb_graph_wrap(g, CB_I64, 1, &n, tg), -100);
}
static cb_tensor *b_sigmoid(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_sigmoid(g, p[0]);
}
static cb_tensor *b_exp_clamp(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_exp_clamp(g, p[0], -0.5f, 0.4f);
}
static cb_tensor *b_head_scale(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_head_scale(g, p[0], p[1], c->flag);
}
/* Inputs on both sides of exp_clamp's [-0.5, 0.4], none within the step (1e-2) of an edge. */
static const float clamp_inputs[8] = {-1.3f, -0.7f, -0.45f, -0.1f, 0.2f, 0.37f, 0.43f, 1.1f};
static cb_rope_table test_rope;
static cb_tensor *b_rope(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_rope(g, p[0], 2, &test_rope, 3);
}
static cb_tensor *b_attention(cb_graph *g, cb_tensor **p, const fd_case *c) {
    return cb_attention(g, p[0], p[1], p[2], c->np > 3 ? p[3] : NULL, c->np > 3 ? p[4] : NULL, &c->attn);
}

static void make_rope_table(void) {
    int64_t sh[2] = {16, 3};
    assert_int_equal(cb_tensor_new(&test_rope.cos, CB_F32, CB_CPU, 2, sh), CB_OK);
    assert_int_equal(cb_tensor_new(&test_rope.sin, CB_F32, CB_CPU, 2, sh), CB_OK);
    for (int pos = 0; pos < 16; pos++)
        for (int i = 0; i < 3; i++) {
            double a = pos * pow(100.0, -2.0 * i / 6.0);
            cb_f32(test_rope.cos)[pos * 3 + i] = (float)cos(a);
            cb_f32(test_rope.sin)[pos * 3 + i] = (float)sin(a);
        }
    test_rope.max_pos = 16;
    test_rope.pairs = 3;
}

#define SH(...) {__VA_ARGS__}

static void test_fd_all(void **state) {
    (void)state;
    make_rope_table();
    fd_case cases[] = {
        {"linear", b_linear, 2, {3, 2}, {SH(2, 3, 5), SH(4, 5)}},
        {"linear+bias", b_linear, 3, {2, 2, 1}, {SH(3, 5), SH(4, 5), SH(4)}},
        {"matmul", b_matmul, 2, {3, 3}, {SH(2, 3, 4), SH(2, 4, 5)}, .flag = 0},
        {"matmul^T.", b_matmul, 2, {3, 3}, {SH(2, 4, 3), SH(2, 4, 5)}, .flag = 1},
        {"matmul.^T", b_matmul, 2, {3, 3}, {SH(2, 3, 4), SH(2, 5, 4)}, .flag = 2},
        {"matmul^T^T", b_matmul, 2, {3, 3}, {SH(2, 4, 3), SH(2, 5, 4)}, .flag = 3},
        {"matmul bcast", b_matmul, 2, {3, 2}, {SH(2, 3, 4), SH(4, 5)}, .flag = 0},
        {"matmul bcast^T", b_matmul, 2, {3, 2}, {SH(2, 3, 4), SH(5, 4)}, .flag = 2},
        {"add", b_add, 2, {2, 2}, {SH(3, 4), SH(3, 4)}},
        {"add bcast", b_add, 2, {3, 1}, {SH(2, 3, 4), SH(4)}},
        {"mul", b_mul, 2, {2, 2}, {SH(3, 4), SH(3, 4)}},
        {"mul bcast", b_mul, 2, {3, 2}, {SH(2, 3, 4), SH(3, 4)}},
        {"scale", b_scale, 1, {2}, {SH(3, 4)}},
        {"rmsnorm", b_rmsnorm, 2, {3, 1}, {SH(2, 3, 7), SH(7)}},
        {"rmsnorm noaffine", b_rmsnorm, 1, {2}, {SH(4, 6)}},
        {"layernorm", b_layernorm, 3, {2, 1, 1}, {SH(4, 6), SH(6), SH(6)}},
        {"silu", b_silu, 1, {2}, {SH(3, 5)}},
        {"swiglu", b_swiglu, 2, {2, 2}, {SH(3, 5), SH(3, 5)}},
        {"softmax", b_softmax, 1, {2}, {SH(3, 6)}},
        {"sigmoid", b_sigmoid, 1, {2}, {SH(3, 5)}},
        {"exp_clamp", b_exp_clamp, 1, {2}, {SH(3, 5)}, .init = clamp_inputs},
        {"head_scale shared", b_head_scale, 2, {3, 1}, {SH(2, 3, 3 * 4), SH(3)}, .flag = 3},
        {"head_scale per row", b_head_scale, 2, {3, 3}, {SH(2, 3, 2 * 5), SH(2, 3, 2)}, .flag = 2},
        {"head_scale per row 2d", b_head_scale, 2, {3, 2}, {SH(2, 3, 2 * 5), SH(6, 2)}, .flag = 2},
        {"cross_entropy", b_ce, 1, {2}, {SH(5, 7)}},
        {"dropout", b_dropout, 1, {2}, {SH(4, 9)}},
        {"embedding", b_embedding, 1, {2}, {SH(5, 4)}},
        {"transpose", b_transpose, 1, {3}, {SH(2, 3, 4)}},
        {"slice", b_slice, 1, {3}, {SH(2, 4, 3)}},
        {"concat dim1", b_concat, 2, {3, 3}, {SH(2, 2, 3), SH(2, 3, 3)}, .flag = 1},
        {"concat dim-1", b_concat, 2, {3, 3}, {SH(2, 3, 2), SH(2, 3, 4)}, .flag = -1},
        {"stack", b_stack, 3, {2, 2, 2}, {SH(2, 3), SH(2, 3), SH(2, 3)}},
        {"reshape", b_reshape, 1, {3}, {SH(2, 3, 4)}},
        {"rope", b_rope, 1, {3}, {SH(2, 5, 16)}},
        {"attention causal gqa",
         b_attention,
         3,
         {3, 3, 3},
         {SH(2, 5, 4 * 3), SH(2, 5, 2 * 3), SH(2, 5, 2 * 2)},
         .attn = {.n_heads = 4,
                  .n_kv_heads = 2,
                  .head_dim = 3,
                  .v_head_dim = 2,
                  .scale = 0.6f,
                  .causal = true}},
        {"attention full",
         b_attention,
         3,
         {3, 3, 3},
         {SH(1, 4, 2 * 3), SH(1, 6, 2 * 3), SH(1, 6, 2 * 3)},
         .attn = {.n_heads = 2, .n_kv_heads = 2, .head_dim = 3, .v_head_dim = 3, .scale = 0.5f}},
        {"attention cached window",
         b_attention,
         3,
         {3, 3, 3},
         {SH(1, 3, 2 * 4), SH(1, 9, 1 * 4), SH(1, 9, 1 * 4)},
         .attn = {.n_heads = 2,
                  .n_kv_heads = 1,
                  .head_dim = 4,
                  .v_head_dim = 4,
                  .scale = 0.5f,
                  .causal = true,
                  .window = 4,
                  .q_pos0 = 6}},
        {"attention decoupled",
         b_attention,
         5,
         {3, 3, 3, 3, 3},
         {SH(2, 4, 2 * 3), SH(2, 4, 1 * 3), SH(2, 4, 1 * 5), SH(2, 4, 2 * 2), SH(2, 4, 1 * 2)},
         .attn = {.n_heads = 2,
                  .n_kv_heads = 1,
                  .head_dim = 3,
                  .v_head_dim = 5,
                  .scale = 0.57f,
                  .causal = true,
                  .head_dim2 = 2,
                  .scale2 = 0.7f}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_fd(&cases[i]);
    cb_tensor_free(test_rope.cos);
    cb_tensor_free(test_rope.sin);
}

/* Attention forward against a naive double-precision softmax over long sequences (crosses the
 * kernel's 32-query and 64-key tiles). */
static void test_attention_forward_reference(void **state) {
    (void)state;
    const int B = 2, T = 70, S = 150, H = 4, Hkv = 2, hd = 8, hdv = 6;
    cb_attn_cfg cfg = {.n_heads = H, .n_kv_heads = Hkv, .head_dim = hd, .v_head_dim = hdv,
                       .scale = 0.35f, .causal = true, .window = 100, .q_pos0 = S - T};
    int64_t sq[3] = {B, T, H * hd}, sk[3] = {B, S, Hkv * hd}, sv[3] = {B, S, Hkv * hdv};
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    cb_tensor *q = cb_graph_tensor(&g, CB_F32, 3, sq), *k = cb_graph_tensor(&g, CB_F32, 3, sk),
              *v = cb_graph_tensor(&g, CB_F32, 3, sv);
    for (int64_t i = 0; i < cb_tensor_numel(q); i++) cb_f32(q)[i] = 2 * frand();
    for (int64_t i = 0; i < cb_tensor_numel(k); i++) cb_f32(k)[i] = 2 * frand();
    for (int64_t i = 0; i < cb_tensor_numel(v); i++) cb_f32(v)[i] = frand();
    cb_tensor *o = cb_attention(&g, q, k, v, NULL, NULL, &cfg);
    assert_non_null(o);
    double maxerr = 0;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < T; i++) {
                int kv = h / (H / Hkv);
                int64_t qp = cfg.q_pos0 + i;
                double sc[S], m = -1e300, sum = 0;
                for (int j = 0; j < S; j++) {
                    bool ok = j <= qp && j > qp - cfg.window;
                    double s = 0;
                    for (int d = 0; d < hd; d++)
                        s += (double)cb_f32(q)[((b * T + i) * H + h) * hd + d] *
                             cb_f32(k)[((b * S + j) * Hkv + kv) * hd + d];
                    sc[j] = ok ? s * cfg.scale : -INFINITY;
                    if (sc[j] > m) m = sc[j];
                }
                for (int j = 0; j < S; j++) sum += exp(sc[j] - m);
                for (int d = 0; d < hdv; d++) {
                    double acc = 0;
                    for (int j = 0; j < S; j++)
                        acc += exp(sc[j] - m) / sum * cb_f32(v)[((b * S + j) * Hkv + kv) * hdv + d];
                    double e = fabs(acc - cb_f32(o)[((b * T + i) * H + h) * hdv + d]);
                    if (e > maxerr) maxerr = e;
                }
            }
    assert_true(maxerr < 2e-6);
    cb_graph_free(&g);
}

/* sigmoid, exp_clamp and head_scale forward against their formulas in double precision; the
 * exp_clamp gradient is exactly zero outside [lo, hi]. */
static void test_gate_ops_forward(void **state) {
    (void)state;
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    float xs[8] = {-30.0f, -9.0f, -8.0f, -0.5f, 0.0f, 0.7f, 8.5f, 25.0f};
    int64_t n = 8;
    cb_tensor *x = cb_graph_wrap(&g, CB_F32, 1, &n, xs);
    cb_tensor *sg = cb_sigmoid(&g, x), *ec = cb_exp_clamp(&g, x, -8.0f, 8.0f);
    assert_non_null(sg);
    assert_non_null(ec);
    for (int i = 0; i < 8; i++) {
        double s = 1.0 / (1.0 + exp(-(double)xs[i]));
        double e = exp(fmin(fmax((double)xs[i], -8.0), 8.0));
        assert_true(fabs(cb_f32(sg)[i] - s) <= 1e-6 * s);
        assert_true(fabs(cb_f32(ec)[i] - e) <= 1e-6 * e);
    }
    assert_true(cb_f32(sg)[4] == 0.5f && cb_f32(ec)[4] == 1.0f); /* neutral at 0, exactly */
    /* q [2, 2, 3*2] scaled per head by s [3] and by s [2, 2, 3] */
    int64_t sq[3] = {2, 2, 6}, s1 = 3, sr[3] = {2, 2, 3};
    cb_tensor *q = cb_graph_tensor(&g, CB_F32, 3, sq), *sh = cb_graph_tensor(&g, CB_F32, 1, &s1),
              *sp = cb_graph_tensor(&g, CB_F32, 3, sr);
    for (int i = 0; i < 24; i++) cb_f32(q)[i] = frand();
    for (int i = 0; i < 3; i++) cb_f32(sh)[i] = frand();
    for (int i = 0; i < 12; i++) cb_f32(sp)[i] = frand();
    cb_tensor *y1 = cb_head_scale(&g, q, sh, 3), *y2 = cb_head_scale(&g, q, sp, 3);
    assert_non_null(y1);
    assert_non_null(y2);
    for (int r = 0; r < 4; r++)
        for (int h = 0; h < 3; h++)
            for (int d = 0; d < 2; d++) {
                int i = r * 6 + h * 2 + d;
                assert_true(cb_f32(y1)[i] == cb_f32(q)[i] * cb_f32(sh)[h]);
                assert_true(cb_f32(y2)[i] == cb_f32(q)[i] * cb_f32(sp)[r * 3 + h]);
            }
    /* a scale that matches neither [H] nor [rows, H] */
    int64_t bad = 6;
    assert_null(cb_head_scale(&g, q, cb_graph_tensor(&g, CB_F32, 1, &bad), 3));
    assert_non_null(strstr(cb_last_error(), "[6]"));
    assert_non_null(strstr(cb_last_error(), "[2, 2, 6]"));
    assert_null(cb_head_scale(&g, q, sh, 4)); /* 6 features are not 4 heads */
    cb_graph_free(&g);

    /* d exp_clamp(x) / dx = 0 where x is clamped */
    cb_tensor *p;
    assert_int_equal(cb_tensor_new(&p, CB_F32, CB_CPU, 2, (int64_t[]){1, 8}), CB_OK);
    memcpy(cb_f32(p), xs, sizeof xs);
    assert_int_equal(cb_tensor_enable_grad(p), CB_OK);
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    cb_tensor *ones;
    assert_int_equal(cb_tensor_new(&ones, CB_F32, CB_CPU, 2, (int64_t[]){1, 8}), CB_OK);
    for (int i = 0; i < 8; i++) cb_f32(ones)[i] = 1.0f;
    cb_tensor *l = cb_linear(&g, cb_exp_clamp(&g, p, -8.0f, 8.0f), ones, NULL);
    assert_non_null(l);
    assert_int_equal(cb_backward(&g, l), CB_OK);
    for (int i = 0; i < 8; i++) {
        double want = xs[i] < -8 || xs[i] > 8 ? 0.0 : exp((double)xs[i]);
        assert_true(fabs(cb_f32(p->grad)[i] - want) <= 1e-6 * want);
    }
    cb_graph_free(&g);
    cb_tensor_free(p);
    cb_tensor_free(ones);
}

static void test_bad_shapes(void **state) {
    (void)state;
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    int64_t a[2] = {3, 4}, b[2] = {5, 3};
    cb_tensor *x = cb_graph_tensor(&g, CB_F32, 2, a), *w = cb_graph_tensor(&g, CB_F32, 2, b);
    assert_null(cb_linear(&g, x, w, NULL));
    assert_non_null(strstr(cb_last_error(), "[3, 4]"));
    assert_non_null(strstr(cb_last_error(), "[5, 3]"));
    assert_null(cb_add(&g, x, w));
    assert_null(cb_linear(&g, NULL, w, NULL)); /* NULL propagates */
    int32_t bad_ids[2] = {0, 9};
    int64_t n = 2;
    assert_null(cb_embedding(&g, cb_graph_wrap(&g, CB_I32, 1, &n, bad_ids), x));
    assert_non_null(strstr(cb_last_error(), "token id 9"));
    cb_graph_free(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_all),
        cmocka_unit_test(test_attention_forward_reference),
        cmocka_unit_test(test_gate_ops_forward),
        cmocka_unit_test(test_bad_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
