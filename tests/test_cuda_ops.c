/* Cross-backend tests: every entry of the CUDA kernel table against the CPU kernel table on fresh
 * random inputs (odd sizes that are not multiples of any tile, GQA ratios, T != S, windows, the
 * decoupled score term, fully masked rows), in f32 and in bf16.
 *
 * Comparison: element i passes when |gpu - cpu| <= atol * max|cpu| + rtol * |cpu_i| (NaN never
 * passes; GPU outputs are poisoned with NaN first, so an unwritten element fails).
 * Tolerances (stated per call below):
 *   f32: 1e-6..1e-5 of max plus 1e-5..1e-4 relative (only the summation order differs);
 *        attention 1e-5/1e-4, GEMM 1e-5/1e-4 (cuBLASLt runs true f32, TF32 is off).
 *   bf16: inputs are rounded to bf16 on the host first, so both backends see the same values;
 *        an output stored in bf16 is allowed one bf16 rounding step (rtol 1e-2, atol 4e-3 of the
 *        max); f32 gradients computed from bf16 inputs keep f32 tolerances unless they depend on a
 *        bf16-rounded intermediate (attention backward reads the bf16 forward output: 2e-2).
 * Without a GPU (or in a build without CUDA) every test is skipped with the reason printed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/device.h"
#include "caramba/dtype.h"
#include "caramba/tensor.h"
#include "testutil.h"

#ifdef CARAMBA_CUDA
#include "ops/cuda/cuda_backend.h"
#include "ops/kernels.h"

static const cb_kernels *G; /* GPU table, NULL when skipped */
static const cb_kernels *C; /* CPU table */

/* ---- helpers --------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x1234abcd5678ef01ull;
static float urand(void) { /* [0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)(rng_state >> 40) * (1.0f / 16777216.0f);
}

enum { MAX_TRACK = 8192 };
static cb_tensor *track_list[MAX_TRACK];
static int ntrack;

static cb_tensor *track(cb_tensor *t) {
    assert_non_null(t);
    assert_true(ntrack < MAX_TRACK);
    track_list[ntrack++] = t;
    return t;
}
static void release_all(void) {
    for (int i = 0; i < ntrack; i++) cb_tensor_free(track_list[i]);
    ntrack = 0;
}

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        cb_status st_ = (expr);                                                                    \
        if (st_ != CB_OK) fail_msg("%s failed: %s", #expr, cb_last_error());                      \
    } while (0)

static cb_tensor *hnew(int ndim, const int64_t *shape, cb_dtype dt) {
    cb_tensor *t;
    CHECK(cb_tensor_new(&t, dt, CB_CPU, ndim, shape));
    return track(t);
}
#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define HNEW(...) hnew(NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), CB_F32)

/* Rounds a host f32 tensor through dt in place, so both backends see identical values. */
static void hround(cb_tensor *h, cb_dtype dt) {
    float *p = h->data;
    int64_t n = cb_tensor_numel(h);
    for (int64_t i = 0; i < n; i++) {
        if (dt == CB_BF16) p[i] = cb_bf16_to_f32(cb_f32_to_bf16(p[i]));
        else if (dt == CB_F16) p[i] = cb_f16_to_f32(cb_f32_to_f16(p[i]));
    }
}

static cb_tensor *hrand_dt(int ndim, const int64_t *shape, float lo, float hi, cb_dtype round) {
    cb_tensor *t = hnew(ndim, shape, CB_F32);
    float *p = t->data;
    for (int64_t i = 0; i < cb_tensor_numel(t); i++) p[i] = lo + (hi - lo) * urand();
    hround(t, round);
    return t;
}
#define HRAND(dt, ...) hrand_dt(NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), -1.f, 1.f, dt)

/* Device copy of a host tensor, converted to dt. */
static cb_tensor *dev(const cb_tensor *h, cb_dtype dt) {
    cb_tensor *d;
    CHECK(cb_tensor_new(&d, dt, CB_CUDA, h->ndim, h->shape));
    track(d);
    CHECK(cb_tensor_copy(d, h));
    return d;
}
/* Device tensor of dtype dt filled with NaN (or 0x7fff... for ints is not needed). */
static cb_tensor *dev_poison(int ndim, const int64_t *shape, cb_dtype dt) {
    cb_tensor *h = hnew(ndim, shape, CB_F32);
    float *p = h->data;
    for (int64_t i = 0; i < cb_tensor_numel(h); i++) p[i] = NAN;
    return dev(h, dt);
}
/* Host f32 tensor of NaN: stands for an uninitialised ("fresh") gradient buffer. */
static cb_tensor *hpoison(int ndim, const int64_t *shape) {
    cb_tensor *h = hnew(ndim, shape, CB_F32);
    float *p = h->data;
    for (int64_t i = 0; i < cb_tensor_numel(h); i++) p[i] = NAN;
    return h;
}
/* Host f32 copy of a device tensor. */
static cb_tensor *back(const cb_tensor *d) {
    cb_tensor *h = hnew(d->ndim, d->shape, CB_F32);
    CHECK(cb_tensor_copy(h, d));
    return h;
}
static cb_tensor *hclone(const cb_tensor *h) {
    cb_tensor *c = hnew(h->ndim, h->shape, CB_F32);
    memcpy(c->data, h->data, cb_tensor_nbytes(h));
    return c;
}
static cb_tensor *ids_host(int64_t n, int64_t lo, int64_t hi, cb_dtype dt) {
    cb_tensor *t = hnew(1, (int64_t[]){n}, dt);
    for (int64_t i = 0; i < n; i++) {
        int64_t v = lo + (int64_t)(urand() * (float)(hi - lo));
        if (v >= hi) v = hi - 1;
        if (dt == CB_I64) ((int64_t *)t->data)[i] = v;
        else ((int32_t *)t->data)[i] = (int32_t)v;
    }
    return t;
}
static cb_tensor *ids_dev(const cb_tensor *h) {
    cb_tensor *d;
    CHECK(cb_tensor_new(&d, h->dtype, CB_CUDA, h->ndim, h->shape));
    track(d);
    CHECK(cb_tensor_copy(d, h));
    return d;
}

/* Compares a device result against a host (CPU-backend) result. */
static void expect_close(const char *what, const cb_tensor *gpu, const cb_tensor *cpu, double atol,
                         double rtol) {
    cb_tensor *g = back(gpu);
    int64_t n = cb_tensor_numel(cpu);
    assert_int_equal(cb_tensor_numel(g), n);
    const float *a = g->data, *b = cpu->data;
    double amax = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(b[i])) amax = fmax(amax, fabs(b[i]));
    double worst = 0;
    int64_t wi = -1;
    for (int64_t i = 0; i < n; i++) {
        double lim = atol * amax + rtol * fabs(b[i]);
        if (isinf(b[i]) && a[i] == b[i]) continue; /* e.g. lse = -inf on both */
        double err = fabs((double)a[i] - (double)b[i]);
        double r = isnan(err) ? INFINITY : (lim > 0 ? err / lim : (err > 0 ? INFINITY : 0));
        if (r > worst) {
            worst = r;
            wi = i;
        }
    }
    double rel = tu_rel_l2(a, b, n);
    if (worst > 1.0)
        fail_msg("%s: element %lld gpu %.9g cpu %.9g (limit %.3g abs of max %.3g + %.3g rel; "
                 "rel_l2 %.3g)",
                 what, (long long)wi, (double)a[wi], (double)b[wi], atol, amax, rtol, rel);
}

static const char *dtn(cb_dtype dt) { return cb_dtype_name(dt); }
static void label(char *buf, size_t n, const char *op, cb_dtype dt) {
    snprintf(buf, n, "%s[%s]", op, dtn(dt));
}

static const cb_dtype DTS[] = {CB_F32, CB_BF16};
#define FOR_DT(dt) for (size_t dti_ = 0; dti_ < 2 && ((dt) = DTS[dti_], 1); dti_++)
/* bf16 output tolerance: one rounding step */
#define OUT_ATOL(dt, f32v) ((dt) == CB_F32 ? (f32v) : 4e-3)
#define OUT_RTOL(dt, f32v) ((dt) == CB_F32 ? (f32v) : 1e-2)

/* Also frees what a previous (possibly failed) test left tracked. */
#define NEED_GPU()                                                                                 \
    do {                                                                                           \
        release_all();                                                                             \
        if (!G) skip();                                                                            \
    } while (0)

/* ---- GEMM ------------------------------------------------------------------------------------ */

static void gemm_case(cb_dtype adt, cb_dtype bdt, cb_dtype cdt, bool tA, bool tB, int64_t M,
                      int64_t N, int64_t K, int64_t batch, int64_t pad, bool bcastB, bool sumC,
                      float alpha, float beta) {
    int64_t arows = tA ? K : M, acols = tA ? M : K, brows = tB ? N : K, bcols = tB ? K : N;
    int64_t lda = acols + pad, ldb = bcols + pad, ldc = N + pad;
    int64_t sA = arows * lda + pad, sB = bcastB ? 0 : brows * ldb + 1, sC = sumC ? 0 : M * ldc + 2;
    int64_t nA = sA * (batch - 1) + arows * lda, nB = sB * (batch - 1) + brows * ldb,
            nC = sC * (batch - 1) + M * ldc;
    /* the GPU rounds an f32 operand paired with a 16-bit one; the CPU must see the same values */
    cb_dtype round = (adt != CB_F32 || bdt != CB_F32) ? CB_BF16 : CB_F32;
    cb_tensor *hA = HRAND(round, nA), *hB = HRAND(round, nB), *hC = HRAND(cdt, nC);
    cb_tensor *dA = dev(hA, adt), *dB = dev(hB, bdt), *dC = dev(hC, cdt);
    CHECK(C->gemm(tA, tB, M, N, K, alpha, hA, lda, sA, hB, ldb, sB, beta, hC, ldc, sC, batch));
    CHECK(G->gemm(tA, tB, M, N, K, alpha, dA, lda, sA, dB, ldb, sB, beta, dC, ldc, sC, batch));
    char what[160];
    snprintf(what, sizeof what, "gemm %s x %s -> %s tA=%d tB=%d M=%lld N=%lld K=%lld b=%lld%s%s",
             dtn(adt), dtn(bdt), dtn(cdt), tA, tB, (long long)M, (long long)N, (long long)K,
             (long long)batch, bcastB ? " bcastB" : "", sumC ? " sumC" : "");
    expect_close(what, dC, hC, cdt == CB_F32 ? 1e-5 : 4e-3, cdt == CB_F32 ? 1e-4 : 1e-2);
}

static void test_gemm(void **state) {
    (void)state;
    NEED_GPU();
    for (int t = 0; t < 4; t++) {
        bool tA = t & 1, tB = t >> 1;
        gemm_case(CB_F32, CB_F32, CB_F32, tA, tB, 37, 53, 71, 1, 0, false, false, 1.f, 0.f);
        gemm_case(CB_F32, CB_F32, CB_F32, tA, tB, 37, 53, 71, 3, 3, false, false, 0.7f, 0.3f);
        gemm_case(CB_BF16, CB_BF16, CB_F32, tA, tB, 65, 33, 130, 2, 5, false, false, 1.f, 1.f);
    }
    gemm_case(CB_BF16, CB_BF16, CB_BF16, false, true, 96, 80, 64, 1, 0, false, false, 1.f, 0.f);
    gemm_case(CB_F32, CB_BF16, CB_F32, false, false, 17, 19, 23, 1, 0, false, false, 1.f, 0.f);
    gemm_case(CB_BF16, CB_F32, CB_F32, true, false, 17, 19, 23, 1, 0, false, false, 1.f, 0.5f);
    gemm_case(CB_F32, CB_F32, CB_F32, false, false, 9, 11, 13, 4, 1, true, false, 1.f, 0.f);
    gemm_case(CB_F32, CB_F32, CB_F32, true, false, 9, 11, 13, 3, 0, false, true, 1.f, 1.f);
    gemm_case(CB_F32, CB_F32, CB_F32, false, false, 5, 7, 0, 1, 0, false, false, 1.f, 0.5f);
    gemm_case(CB_F32, CB_F32, CB_F32, false, false, 1, 1, 1, 1, 0, false, false, 2.f, 0.f);
    release_all();
}

/* ---- bias, elementwise ------------------------------------------------------------------------ */

static void test_bias(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    char w[64];
    FOR_DT(dt) {
        cb_tensor *y = HRAND(dt, 301, 77), *b = HRAND(dt, 77);
        cb_tensor *dy = y, *dy_d = dev(y, dt);
        cb_tensor *y_d = dev(y, dt), *b_d = dev(b, dt);
        cb_tensor *yc = hclone(y);
        CHECK(C->bias_add(yc, b));
        CHECK(G->bias_add(y_d, b_d));
        label(w, sizeof w, "bias_add", dt);
        expect_close(w, y_d, yc, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-6));
        cb_tensor *db = HRAND(CB_F32, 77), *db_d = dev(db, CB_F32);
        CHECK(C->bias_grad(dy, db));
        CHECK(G->bias_grad(dy_d, db_d));
        label(w, sizeof w, "bias_grad", dt);
        expect_close(w, db_d, db, 1e-5, 1e-5);
    }
    release_all();
}

static void test_elementwise(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    char w[64];
    /* odd sizes take the scalar kernels, multiples of 8 the 16-byte vector kernels */
    static const int64_t shapes[2][3] = {{17, 3, 31}, {16, 3, 32}};
    for (int si = 0; si < 2; si++) FOR_DT(dt) {
        const int64_t *sh = shapes[si];
        cb_tensor *a = hrand_dt(3, sh, -1, 1, dt), *b = hrand_dt(3, sh, -1, 1, dt);
        cb_tensor *bb = hrand_dt(1, sh + 2, -1, 1, dt);
        cb_tensor *a_d = dev(a, dt), *b_d = dev(b, dt), *bb_d = dev(bb, dt);
        const cb_tensor *bs[2] = {b, bb}, *bds[2] = {b_d, bb_d};
        for (int k = 0; k < 2; k++) {
            cb_tensor *o = hnew(3, sh, CB_F32);
            cb_tensor *o_d = dev_poison(3, sh, dt);
            CHECK(C->add(a, bs[k], o));
            CHECK(G->add(a_d, bds[k], o_d));
            snprintf(w, sizeof w, "add[%s]%s", dtn(dt), k ? " broadcast" : "");
            expect_close(w, o_d, o, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-6));
            CHECK(C->mul(a, bs[k], o));
            CHECK(G->mul(a_d, bds[k], o_d));
            snprintf(w, sizeof w, "mul[%s]%s", dtn(dt), k ? " broadcast" : "");
            expect_close(w, o_d, o, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-6));
            /* mul backward: da, db accumulate (db reduced when broadcast) */
            cb_tensor *dout = hrand_dt(3, sh, -1, 1, CB_F32), *dout_d = dev(dout, CB_F32);
            cb_tensor *da = hrand_dt(3, sh, -1, 1, CB_F32), *da_d = dev(da, CB_F32);
            cb_tensor *db = hrand_dt(bs[k]->ndim, bs[k]->shape, -1, 1, CB_F32),
                      *db_d = dev(db, CB_F32);
            CHECK(C->mul_bwd(a, bs[k], dout, da, db));
            CHECK(G->mul_bwd(a_d, bds[k], dout_d, da_d, db_d));
            snprintf(w, sizeof w, "mul_bwd.da[%s]%s", dtn(dt), k ? " broadcast" : "");
            expect_close(w, da_d, da, 1e-6, 1e-5);
            snprintf(w, sizeof w, "mul_bwd.db[%s]%s", dtn(dt), k ? " broadcast" : "");
            expect_close(w, db_d, db, 1e-5, 1e-5);
            CHECK(C->mul_bwd(a, bs[k], dout, NULL, db));
            CHECK(G->mul_bwd(a_d, bds[k], dout_d, NULL, db_d));
            expect_close("mul_bwd.db only", db_d, db, 1e-5, 1e-5);
        }
        cb_tensor *o = hnew(3, sh, CB_F32), *o_d = dev_poison(3, sh, dt);
        CHECK(C->scale(a, -0.37f, o));
        CHECK(G->scale(a_d, -0.37f, o_d));
        label(w, sizeof w, "scale", dt);
        expect_close(w, o_d, o, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-6));
        cb_tensor *dst = hrand_dt(3, sh, -1, 1, CB_F32), *dst_d = dev(dst, CB_F32);
        CHECK(C->axpy(1.7f, a, dst));
        CHECK(G->axpy(1.7f, a_d, dst_d));
        label(w, sizeof w, "axpy", dt);
        expect_close(w, dst_d, dst, 1e-6, 1e-6);
        cb_tensor *r1 = hrand_dt(1, sh + 2, -1, 1, CB_F32), *r1_d = dev(r1, CB_F32);
        CHECK(C->reduce_rows_acc(0.5f, a, r1));
        CHECK(G->reduce_rows_acc(0.5f, a_d, r1_d));
        label(w, sizeof w, "reduce_rows_acc[31]", dt);
        expect_close(w, r1_d, r1, 1e-5, 1e-5);
        cb_tensor *r2 = hrand_dt(2, sh + 1, -1, 1, CB_F32), *r2_d = dev(r2, CB_F32);
        CHECK(C->reduce_rows_acc(-2.f, a, r2));
        CHECK(G->reduce_rows_acc(-2.f, a_d, r2_d));
        label(w, sizeof w, "reduce_rows_acc[3,31]", dt);
        expect_close(w, r2_d, r2, 1e-5, 1e-5);
        /* many rows: several chunks in the deterministic column reduction */
        cb_tensor *big = HRAND(dt, 5003, 37), *big_d = dev(big, dt);
        cb_tensor *r3 = HRAND(CB_F32, 37), *r3_d = dev(r3, CB_F32);
        CHECK(C->reduce_rows_acc(1.f, big, r3));
        CHECK(G->reduce_rows_acc(1.f, big_d, r3_d));
        label(w, sizeof w, "reduce_rows_acc[5003 rows]", dt);
        expect_close(w, r3_d, r3, 1e-5, 1e-4);
    }
    release_all();
}

/* ---- embedding ------------------------------------------------------------------------------ */

static void test_embedding(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    char w[64];
    FOR_DT(dt) {
        for (int it = 0; it < 2; it++) {
            cb_dtype idt = it ? CB_I64 : CB_I32;
            int64_t V = 97, D = 67, N = 301;
            /* ids concentrated on few rows: long runs of repeats in the backward */
            cb_tensor *ids = ids_host(N, 0, it ? V : 11, idt), *ids_d = ids_dev(ids);
            cb_tensor *W = HRAND(dt, V, D), *W_d = dev(W, dt);
            cb_tensor *out = HNEW(N, D), *out_d = dev_poison(2, SHAPE(N, D), dt);
            CHECK(C->embedding_fwd(ids, W, out));
            CHECK(G->embedding_fwd(ids_d, W_d, out_d));
            snprintf(w, sizeof w, "embedding_fwd[%s,%s]", dtn(dt), dtn(idt));
            expect_close(w, out_d, out, 0, 0);
            cb_tensor *dout = HRAND(dt, N, D), *dout_d = dev(dout, dt);
            cb_tensor *dW = HRAND(CB_F32, V, D), *dW_d = dev(dW, CB_F32);
            CHECK(C->embedding_bwd(ids, dout, dW));
            CHECK(G->embedding_bwd(ids_d, dout_d, dW_d));
            snprintf(w, sizeof w, "embedding_bwd[%s,%s]", dtn(dt), dtn(idt));
            expect_close(w, dW_d, dW, 1e-6, 1e-5);
            /* an id outside [0, V) fails on both backends */
            if (idt == CB_I64) ((int64_t *)ids->data)[N - 5] = V;
            else ((int32_t *)ids->data)[N - 5] = (int32_t)V;
            cb_tensor *bad_d = ids_dev(ids);
            assert_int_equal(C->embedding_fwd(ids, W, out), CB_ERR_ARG);
            assert_int_equal(G->embedding_fwd(bad_d, W_d, out_d), CB_ERR_ARG);
            assert_non_null(strstr(cb_last_error(), "97"));
        }
    }
    release_all();
}

/* ---- norms, activations ---------------------------------------------------------------------- */

static void norm_case(cb_dtype dt, int64_t R, int64_t D, bool with_w) {
    char w[96];
    cb_tensor *x = HRAND(dt, R, D), *x_d = dev(x, dt);
    cb_tensor *wt = with_w ? hrand_dt(1, (int64_t[]){D}, 0.5f, 1.5f, dt) : NULL;
    cb_tensor *wt_d = with_w ? dev(wt, dt) : NULL;
    cb_tensor *bt = HRAND(dt, D), *bt_d = dev(bt, dt);
    cb_tensor *y = HNEW(R, D), *y_d = dev_poison(2, SHAPE(R, D), dt);
    cb_tensor *rs = HNEW(R), *rs_d = dev_poison(1, SHAPE(R), CB_F32);
    cb_tensor *mu = HNEW(R), *mu_d = dev_poison(1, SHAPE(R), CB_F32);
    /* RMSNorm */
    CHECK(C->rmsnorm_fwd(x, wt, 1e-5f, y, rs));
    CHECK(G->rmsnorm_fwd(x_d, wt_d, 1e-5f, y_d, rs_d));
    snprintf(w, sizeof w, "rmsnorm_fwd[%s] %lldx%lld%s", dtn(dt), (long long)R, (long long)D,
             with_w ? "" : " no w");
    expect_close(w, y_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
    expect_close("rmsnorm_fwd.rstd", rs_d, rs, 1e-6, 1e-5);
    cb_tensor *dy = HRAND(CB_F32, R, D), *dy_d = dev(dy, CB_F32);
    cb_tensor *dx = HRAND(CB_F32, R, D), *dx_d = dev(dx, CB_F32);
    cb_tensor *dw = HRAND(CB_F32, D), *dw_d = dev(dw, CB_F32);
    CHECK(C->rmsnorm_bwd(x, wt, rs, dy, dx, with_w ? dw : NULL));
    CHECK(G->rmsnorm_bwd(x_d, wt_d, rs_d, dy_d, dx_d, with_w ? dw_d : NULL));
    snprintf(w, sizeof w, "rmsnorm_bwd.dx[%s] %lldx%lld", dtn(dt), (long long)R, (long long)D);
    expect_close(w, dx_d, dx, 1e-5, 1e-4);
    if (with_w) expect_close("rmsnorm_bwd.dw", dw_d, dw, 1e-5, 1e-4);
    if (!with_w) return;
    /* LayerNorm */
    CHECK(C->layernorm_fwd(x, wt, bt, 1e-5f, y, mu, rs));
    CHECK(G->layernorm_fwd(x_d, wt_d, bt_d, 1e-5f, y_d, mu_d, rs_d));
    snprintf(w, sizeof w, "layernorm_fwd[%s] %lldx%lld", dtn(dt), (long long)R, (long long)D);
    expect_close(w, y_d, y, OUT_ATOL(dt, 1e-5), OUT_RTOL(dt, 1e-4));
    expect_close("layernorm_fwd.mean", mu_d, mu, 1e-5, 1e-4);
    expect_close("layernorm_fwd.rstd", rs_d, rs, 1e-6, 1e-5);
    cb_tensor *db = HRAND(CB_F32, D), *db_d = dev(db, CB_F32);
    CHECK(C->layernorm_bwd(x, wt, mu, rs, dy, dx, dw, db));
    CHECK(G->layernorm_bwd(x_d, wt_d, mu_d, rs_d, dy_d, dx_d, dw_d, db_d));
    snprintf(w, sizeof w, "layernorm_bwd.dx[%s] %lldx%lld", dtn(dt), (long long)R, (long long)D);
    expect_close(w, dx_d, dx, 1e-5, 1e-4);
    expect_close("layernorm_bwd.dw", dw_d, dw, 1e-5, 1e-4);
    expect_close("layernorm_bwd.db", db_d, db, 1e-5, 1e-4);
}

/* RMSNorm backward with the gradients in the activation dtype (AMP): x, dy, dx of one dtype take
 * the 16-byte kernel when D is a multiple of 8. */
static void rms_bwd_act_case(cb_dtype dt, int64_t R, int64_t D, bool with_w) {
    char w[96];
    cb_tensor *x = HRAND(dt, R, D), *x_d = dev(x, dt);
    cb_tensor *wt = with_w ? hrand_dt(1, (int64_t[]){D}, 0.5f, 1.5f, dt) : NULL;
    cb_tensor *wt_d = with_w ? dev(wt, CB_F32) : NULL; /* f32 master weight, as in AMP */
    cb_tensor *y = HNEW(R, D), *rs = HNEW(R), *rs_d = dev_poison(1, SHAPE(R), CB_F32);
    cb_tensor *y_d = dev_poison(2, SHAPE(R, D), dt);
    CHECK(C->rmsnorm_fwd(x, wt, 1e-5f, y, rs));
    CHECK(G->rmsnorm_fwd(x_d, wt_d, 1e-5f, y_d, rs_d));
    snprintf(w, sizeof w, "rmsnorm_fwd[%s, f32 w] %lldx%lld", dtn(dt), (long long)R, (long long)D);
    expect_close(w, y_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
    cb_tensor *dy = HRAND(dt, R, D), *dy_d = dev(dy, dt);
    cb_tensor *dx = HRAND(dt, R, D), *dx_d = dev(dx, dt);
    cb_tensor *dw = HRAND(CB_F32, D), *dw_d = dev(dw, CB_F32);
    CHECK(C->rmsnorm_bwd(x, wt, rs, dy, dx, with_w ? dw : NULL));
    CHECK(G->rmsnorm_bwd(x_d, wt_d, rs_d, dy_d, dx_d, with_w ? dw_d : NULL));
    snprintf(w, sizeof w, "rmsnorm_bwd.dx[%s grads] %lldx%lld%s", dtn(dt), (long long)R,
             (long long)D, with_w ? "" : " no w");
    expect_close(w, dx_d, dx, OUT_ATOL(dt, 1e-5), OUT_RTOL(dt, 1e-4));
    if (with_w) {
        snprintf(w, sizeof w, "rmsnorm_bwd.dw[%s grads] %lldx%lld", dtn(dt), (long long)R,
                 (long long)D);
        expect_close(w, dw_d, dw, 1e-5, 1e-4);
        /* dw only */
        CHECK(C->rmsnorm_bwd(x, wt, rs, dy, NULL, dw));
        CHECK(G->rmsnorm_bwd(x_d, wt_d, rs_d, dy_d, NULL, dw_d));
        expect_close("rmsnorm_bwd.dw only", dw_d, dw, 1e-5, 1e-4);
    }
}

static void test_norms(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    FOR_DT(dt) {
        norm_case(dt, 37, 193, true);
        norm_case(dt, 37, 193, false);
        norm_case(dt, 3, 4099, true);
        norm_case(dt, 1, 5, true);
        /* multiples of 8: the warp-per-row 16-byte kernels (1 to 8 vectors a lane) */
        norm_case(dt, 37, 768, true);
        norm_case(dt, 37, 768, false);
        norm_case(dt, 9001, 64, true); /* more rows than warps: each warp takes several */
        norm_case(dt, 5, 2048, true);
        norm_case(dt, 3, 4096, true); /* too wide for the registers: block kernels */
        rms_bwd_act_case(dt, 37, 768, true);
        rms_bwd_act_case(dt, 37, 768, false);
        rms_bwd_act_case(dt, 9001, 64, true);
        rms_bwd_act_case(dt, 7, 2048, true);
        rms_bwd_act_case(dt, 5, 1000, true); /* 1000 % 8 == 0 but 125 vectors: partial lanes */
    }
    release_all();
}

static void test_activations(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    char w[64];
    static const int64_t shapes[2][2] = {{29, 131}, {8, 96}};
    for (int si = 0; si < 2; si++) FOR_DT(dt) {
        const int64_t *sh = shapes[si];
        cb_tensor *x = hrand_dt(2, sh, -6.f, 6.f, dt), *x_d = dev(x, dt);
        cb_tensor *u = hrand_dt(2, sh, -1, 1, dt), *u_d = dev(u, dt);
        cb_tensor *y = hnew(2, sh, CB_F32), *y_d = dev_poison(2, sh, dt);
        CHECK(C->silu_fwd(x, y));
        CHECK(G->silu_fwd(x_d, y_d));
        label(w, sizeof w, "silu_fwd", dt);
        expect_close(w, y_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
        cb_tensor *dy = hrand_dt(2, sh, -1, 1, CB_F32), *dy_d = dev(dy, CB_F32);
        cb_tensor *dx = hrand_dt(2, sh, -1, 1, CB_F32), *dx_d = dev(dx, CB_F32);
        CHECK(C->silu_bwd(x, dy, dx, false));
        CHECK(G->silu_bwd(x_d, dy_d, dx_d, false));
        label(w, sizeof w, "silu_bwd", dt);
        expect_close(w, dx_d, dx, 1e-6, 1e-5);
        CHECK(C->swiglu_fwd(x, u, y));
        CHECK(G->swiglu_fwd(x_d, u_d, y_d));
        label(w, sizeof w, "swiglu_fwd", dt);
        expect_close(w, y_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
        cb_tensor *du = hrand_dt(2, sh, -1, 1, CB_F32), *du_d = dev(du, CB_F32);
        CHECK(C->swiglu_bwd(x, u, dy, dx, du, false, false));
        CHECK(G->swiglu_bwd(x_d, u_d, dy_d, dx_d, du_d, false, false));
        label(w, sizeof w, "swiglu_bwd.dgate", dt);
        expect_close(w, dx_d, dx, 1e-6, 1e-5);
        label(w, sizeof w, "swiglu_bwd.dup", dt);
        expect_close(w, du_d, du, 1e-6, 1e-5);
        CHECK(C->swiglu_bwd(x, u, dy, NULL, du, false, false));
        CHECK(G->swiglu_bwd(x_d, u_d, dy_d, NULL, du_d, false, false));
        expect_close("swiglu_bwd.dup only", du_d, du, 1e-6, 1e-5);
        /* Gradients in the activation dtype (AMP): with all operands of one dtype and sizes that
         * are multiples of 8 the 16-byte kernels run. Fresh gradients start as NaN poison on both
         * backends and must be written, not added to. */
        cb_tensor *dya = hrand_dt(2, sh, -1, 1, dt), *dya_d = dev(dya, dt);
        for (int fresh = 0; fresh < 2; fresh++) {
            char f[96];
            cb_tensor *gx = fresh ? hpoison(2, sh) : hrand_dt(2, sh, -1, 1, dt);
            cb_tensor *gu = fresh ? hpoison(2, sh) : hrand_dt(2, sh, -1, 1, dt);
            cb_tensor *gx_d = dev(gx, dt), *gu_d = dev(gu, dt);
            CHECK(C->silu_bwd(x, dya, gx, fresh));
            CHECK(G->silu_bwd(x_d, dya_d, gx_d, fresh));
            snprintf(f, sizeof f, "silu_bwd[%s grads]%s", dtn(dt), fresh ? " fresh" : "");
            expect_close(f, gx_d, gx, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
            if (fresh) { /* silu_bwd wrote them: poison again */
                gx = hpoison(2, sh);
                gx_d = dev(gx, dt);
            }
            CHECK(C->swiglu_bwd(x, u, dya, gx, gu, fresh, fresh));
            CHECK(G->swiglu_bwd(x_d, u_d, dya_d, gx_d, gu_d, fresh, fresh));
            snprintf(f, sizeof f, "swiglu_bwd.dgate[%s grads]%s", dtn(dt), fresh ? " fresh" : "");
            expect_close(f, gx_d, gx, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
            snprintf(f, sizeof f, "swiglu_bwd.dup[%s grads]%s", dtn(dt), fresh ? " fresh" : "");
            expect_close(f, gu_d, gu, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
            /* one gradient only, the other absent */
            cb_tensor *go = fresh ? hpoison(2, sh) : hrand_dt(2, sh, -1, 1, dt);
            cb_tensor *go_d = dev(go, dt);
            CHECK(C->swiglu_bwd(x, u, dya, go, NULL, fresh, false));
            CHECK(G->swiglu_bwd(x_d, u_d, dya_d, go_d, NULL, fresh, false));
            snprintf(f, sizeof f, "swiglu_bwd.dgate only[%s grads]%s", dtn(dt),
                     fresh ? " fresh" : "");
            expect_close(f, go_d, go, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
        }
        /* swiglu(x, x): one buffer for both gradients, dgate fresh and dup accumulating into it */
        cb_tensor *ga = hpoison(2, sh), *ga_d = dev(ga, dt);
        CHECK(C->swiglu_bwd(x, x, dya, ga, ga, true, false));
        CHECK(G->swiglu_bwd(x_d, x_d, dya_d, ga_d, ga_d, true, false));
        label(w, sizeof w, "swiglu_bwd aliased", dt);
        expect_close(w, ga_d, ga, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
    }
    release_all();
}

/* ---- RoPE ------------------------------------------------------------------------------------ */

/* Even P and head size take the pair-vector kernel (with pass-through dims when 2P < hd), odd
 * ones the scalar kernel. */
static void rope_case(cb_dtype dt, int64_t B, int64_t T, int64_t H, int64_t hd, int64_t P) {
    char w[96];
    const int64_t maxpos = 40, pos0 = 5;
    cb_tensor *cs = HNEW(maxpos, P), *sn = HNEW(maxpos, P);
    for (int64_t p = 0; p < maxpos; p++)
        for (int64_t i = 0; i < P; i++) {
            double ang = (double)p * pow(10000.0, -2.0 * (double)i / (double)(2 * P));
            ((float *)cs->data)[p * P + i] = (float)cos(ang);
            ((float *)sn->data)[p * P + i] = (float)sin(ang);
        }
    cb_tensor *cs_d = dev(cs, CB_F32), *sn_d = dev(sn, CB_F32);
    cb_tensor *x = HRAND(dt, B, T, H * hd), *x_d = dev(x, dt);
    for (int inv = 0; inv < 2; inv++) {
        cb_tensor *y = HNEW(B, T, H * hd), *y_d = dev_poison(3, SHAPE(B, T, H * hd), dt);
        CHECK(C->rope(x, (int)H, cs, sn, pos0, inv, y));
        CHECK(G->rope(x_d, (int)H, cs_d, sn_d, pos0, inv, y_d));
        snprintf(w, sizeof w, "rope[%s] hd=%lld P=%lld%s", dtn(dt), (long long)hd, (long long)P,
                 inv ? " inverse" : "");
        expect_close(w, y_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
        /* in place on the GPU */
        cb_tensor *z_d = dev(x, dt);
        CHECK(G->rope(z_d, (int)H, cs_d, sn_d, pos0, inv, z_d));
        snprintf(w, sizeof w, "rope in place[%s] hd=%lld P=%lld%s", dtn(dt), (long long)hd,
                 (long long)P, inv ? " inverse" : "");
        expect_close(w, z_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
    }
    cb_tensor *y_d = dev(x, dt);
    assert_int_equal(G->rope(x_d, (int)H, cs_d, sn_d, maxpos - T + 1, false, y_d), CB_ERR_ARG);
}

static void test_rope(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    FOR_DT(dt) {
        rope_case(dt, 2, 7, 3, 20, 8);  /* pairs, 4 pass-through dims */
        rope_case(dt, 2, 9, 4, 16, 8);  /* pairs, full rotation */
        rope_case(dt, 1, 6, 2, 13, 5);  /* scalar: odd P and head size */
        rope_case(dt, 1, 5, 3, 14, 3);  /* scalar: odd P, even head size */
    }
    release_all();
}

/* ---- attention ------------------------------------------------------------------------------- */

static void attn_case(cb_dtype dt, int64_t B, int64_t T, int64_t S, int H, int Hkv, int hd,
                      int hdv, int hd2, bool causal, int window, int64_t q_pos0) {
    cb_attn_cfg cfg = {.n_heads = H,
                       .n_kv_heads = Hkv,
                       .head_dim = hd,
                       .v_head_dim = hdv,
                       .scale = 1.0f / sqrtf((float)hd),
                       .causal = causal,
                       .window = window,
                       .q_pos0 = q_pos0,
                       .head_dim2 = hd2,
                       .scale2 = hd2 ? 0.8f / sqrtf((float)hd2) : 0.f};
    char w[200];
    snprintf(w, sizeof w,
             "[%s] B=%lld T=%lld S=%lld H=%d Hkv=%d hd=%d hdv=%d hd2=%d causal=%d window=%d pos0=%lld",
             dtn(dt), (long long)B, (long long)T, (long long)S, H, Hkv, hd, hdv, hd2, causal,
             window, (long long)q_pos0);
    /* scores of a few units, so softmax is neither flat nor one-hot */
    cb_tensor *q = hrand_dt(3, SHAPE(B, T, (int64_t)H * hd), -2.f, 2.f, dt);
    cb_tensor *k = hrand_dt(3, SHAPE(B, S, (int64_t)Hkv * hd), -2.f, 2.f, dt);
    cb_tensor *v = HRAND(dt, B, S, (int64_t)Hkv * hdv);
    cb_tensor *q2 = hd2 ? hrand_dt(3, SHAPE(B, T, (int64_t)H * hd2), -2.f, 2.f, dt) : NULL;
    cb_tensor *k2 = hd2 ? hrand_dt(3, SHAPE(B, S, (int64_t)Hkv * hd2), -2.f, 2.f, dt) : NULL;
    cb_tensor *q_d = dev(q, dt), *k_d = dev(k, dt), *v_d = dev(v, dt);
    cb_tensor *q2_d = hd2 ? dev(q2, dt) : NULL, *k2_d = hd2 ? dev(k2, dt) : NULL;
    cb_tensor *out = HNEW(B, T, (int64_t)H * hdv), *lse = HNEW(B, H, T);
    cb_tensor *out_d = dev_poison(3, SHAPE(B, T, (int64_t)H * hdv), dt);
    cb_tensor *lse_d = dev_poison(3, SHAPE(B, H, T), CB_F32);
    CHECK(C->attention_fwd(&cfg, q, k, v, q2, k2, out, lse));
    CHECK(G->attention_fwd(&cfg, q_d, k_d, v_d, q2_d, k2_d, out_d, lse_d));
    char ww[240];
    snprintf(ww, sizeof ww, "attention_fwd.out %s", w);
    expect_close(ww, out_d, out, dt == CB_F32 ? 1e-5 : 1e-2, dt == CB_F32 ? 1e-4 : 2e-2);
    snprintf(ww, sizeof ww, "attention_fwd.lse %s", w);
    expect_close(ww, lse_d, lse, 1e-5, 1e-5);
    /* backward: gradients pre-filled, both backends accumulate */
    cb_tensor *dout = HRAND(dt, B, T, (int64_t)H * hdv), *dout_d = dev(dout, dt);
    cb_tensor *dq = HRAND(CB_F32, B, T, (int64_t)H * hd), *dk = HRAND(CB_F32, B, S, (int64_t)Hkv * hd);
    cb_tensor *dv = HRAND(CB_F32, B, S, (int64_t)Hkv * hdv);
    cb_tensor *dq2 = hd2 ? HRAND(CB_F32, B, T, (int64_t)H * hd2) : NULL;
    cb_tensor *dk2 = hd2 ? HRAND(CB_F32, B, S, (int64_t)Hkv * hd2) : NULL;
    cb_tensor *dq_d = dev(dq, CB_F32), *dk_d = dev(dk, CB_F32), *dv_d = dev(dv, CB_F32);
    cb_tensor *dq2_d = hd2 ? dev(dq2, CB_F32) : NULL, *dk2_d = hd2 ? dev(dk2, CB_F32) : NULL;
    CHECK(C->attention_bwd(&cfg, q, k, v, q2, k2, out, lse, dout, dq, dk, dv, dq2, dk2));
    CHECK(G->attention_bwd(&cfg, q_d, k_d, v_d, q2_d, k2_d, out_d, lse_d, dout_d, dq_d, dk_d, dv_d,
                           dq2_d, dk2_d));
    double at = dt == CB_F32 ? 1e-5 : 2e-2, rt = dt == CB_F32 ? 1e-4 : 2e-2;
    const char *names[5] = {"dq", "dk", "dv", "dq2", "dk2"};
    cb_tensor *gd[5] = {dq_d, dk_d, dv_d, dq2_d, dk2_d}, *cd[5] = {dq, dk, dv, dq2, dk2};
    for (int i = 0; i < 5; i++) {
        if (!cd[i]) continue;
        snprintf(ww, sizeof ww, "attention_bwd.%s %s", names[i], w);
        expect_close(ww, gd[i], cd[i], at, rt);
    }
}

static void test_attention(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    FOR_DT(dt) {
        attn_case(dt, 2, 67, 67, 4, 2, 64, 64, 0, true, 0, 0);       /* causal GQA 2:1 */
        attn_case(dt, 1, 5, 77, 6, 2, 32, 48, 0, true, 20, 72);      /* cached decode, window */
        attn_case(dt, 2, 45, 45, 4, 4, 16, 24, 8, true, 0, 0);       /* decoupled second term */
        attn_case(dt, 1, 33, 50, 2, 1, 80, 80, 0, false, 0, 0);      /* full, MQA, T != S */
        attn_case(dt, 1, 40, 40, 3, 3, 24, 24, 0, false, 9, 0);      /* symmetric window */
        attn_case(dt, 1, 4, 10, 2, 1, 16, 16, 0, true, 4, 12);       /* rows that see no key */
        attn_case(dt, 2, 130, 130, 4, 2, 128, 128, 0, true, 0, 0);   /* hd 128 */
        attn_case(dt, 1, 1, 300, 8, 2, 64, 64, 0, true, 0, 299);     /* one query, long cache */
        /* hd 64 / 128 in bf16 take the tensor-core kernels: their masks and tails too */
        attn_case(dt, 2, 100, 150, 4, 1, 64, 64, 0, true, 37, 50);   /* window, T != S, GQA 4:1 */
        attn_case(dt, 1, 70, 70, 2, 2, 64, 64, 0, false, 0, 0);      /* not causal */
        attn_case(dt, 1, 80, 90, 2, 2, 64, 64, 0, false, 20, 5);     /* symmetric window */
        attn_case(dt, 1, 4, 10, 2, 1, 64, 64, 0, true, 4, 12);       /* rows that see no key */
        attn_case(dt, 1, 33, 200, 2, 1, 128, 128, 0, true, 0, 167);  /* hd 128, cached */
    }
    release_all();
}

/* ---- softmax, cross-entropy ------------------------------------------------------------------ */

static void test_softmax(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    char w[64];
    int64_t Ns[3] = {517, 3, 5000};
    FOR_DT(dt) {
        for (int c = 0; c < 3; c++) {
            int64_t R = 13, N = Ns[c];
            cb_tensor *x = hrand_dt(2, SHAPE(R, N), -8.f, 8.f, dt), *x_d = dev(x, dt);
            cb_tensor *y = HNEW(R, N), *y_d = dev_poison(2, SHAPE(R, N), dt);
            CHECK(C->softmax_fwd(x, y));
            CHECK(G->softmax_fwd(x_d, y_d));
            snprintf(w, sizeof w, "softmax_fwd[%s] N=%lld", dtn(dt), (long long)N);
            expect_close(w, y_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
            /* backward from the CPU's y so only the kernel differs */
            cb_tensor *yy_d = dev(y, CB_F32);
            cb_tensor *dy = HRAND(CB_F32, R, N), *dy_d = dev(dy, CB_F32);
            cb_tensor *dx = HRAND(CB_F32, R, N), *dx_d = dev(dx, CB_F32);
            CHECK(C->softmax_bwd(y, dy, dx));
            CHECK(G->softmax_bwd(yy_d, dy_d, dx_d));
            snprintf(w, sizeof w, "softmax_bwd[%s] N=%lld", dtn(dt), (long long)N);
            expect_close(w, dx_d, dx, 1e-6, 1e-5);
        }
    }
    release_all();
}

static void test_cross_entropy(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    char w[80];
    FOR_DT(dt) {
        for (int it = 0; it < 3; it++) {
            cb_dtype idt = it == 1 ? CB_I64 : CB_I32;
            int64_t N = 29, V = it == 2 ? 50257 : it == 1 ? 1024 : 1031, ignore = -100;
            cb_tensor *logits = hrand_dt(2, SHAPE(N, V), -5.f, 5.f, dt), *lg_d = dev(logits, dt);
            cb_tensor *tg = ids_host(N, 0, V, idt);
            for (int64_t i = 0; i < N; i += 5) { /* every fifth row ignored */
                if (idt == CB_I64) ((int64_t *)tg->data)[i] = ignore;
                else ((int32_t *)tg->data)[i] = (int32_t)ignore;
            }
            cb_tensor *tg_d = ids_dev(tg);
            cb_tensor *loss = HNEW(1), *lse = HNEW(N);
            cb_tensor *loss_d = dev_poison(1, SHAPE(1), CB_F32), *lse_d = dev_poison(1, SHAPE(N), CB_F32);
            int64_t cc = -1, cg = -2;
            CHECK(C->cross_entropy_fwd(logits, tg, ignore, loss, lse, &cc));
            CHECK(G->cross_entropy_fwd(lg_d, tg_d, ignore, loss_d, lse_d, &cg));
            assert_int_equal(cc, cg);
            assert_int_equal(cc, N - (N + 4) / 5);
            snprintf(w, sizeof w, "cross_entropy_fwd.loss[%s,%s] V=%lld", dtn(dt), dtn(idt), (long long)V);
            expect_close(w, loss_d, loss, 1e-6, 1e-5);
            snprintf(w, sizeof w, "cross_entropy_fwd.lse[%s,%s] V=%lld", dtn(dt), dtn(idt), (long long)V);
            expect_close(w, lse_d, lse, 1e-6, 1e-5);
            cb_tensor *dl = HRAND(CB_F32, N, V), *dl_d = dev(dl, CB_F32);
            CHECK(C->cross_entropy_bwd(logits, tg, ignore, lse, 1.3f, cc, dl, false));
            CHECK(G->cross_entropy_bwd(lg_d, tg_d, ignore, lse_d, 1.3f, cg, dl_d, false));
            snprintf(w, sizeof w, "cross_entropy_bwd[%s,%s] V=%lld", dtn(dt), dtn(idt), (long long)V);
            expect_close(w, dl_d, dl, 1e-6, 1e-5);
            /* the gradient in the logits' dtype (AMP; V = 1024 takes the 16-byte kernel), added
             * to or fresh: NaN poison on both backends that must be overwritten, zeros on the
             * ignored rows */
            for (int fresh = 0; fresh < 2; fresh++) {
                cb_tensor *da = fresh ? hpoison(2, SHAPE(N, V)) : hrand_dt(2, SHAPE(N, V), -1, 1, dt);
                cb_tensor *da_d = dev(da, dt);
                CHECK(C->cross_entropy_bwd(logits, tg, ignore, lse, 1.3f, cc, da, fresh));
                CHECK(G->cross_entropy_bwd(lg_d, tg_d, ignore, lse_d, 1.3f, cg, da_d, fresh));
                snprintf(w, sizeof w, "cross_entropy_bwd[%s grads,%s] V=%lld%s", dtn(dt), dtn(idt),
                         (long long)V, fresh ? " fresh" : "");
                expect_close(w, da_d, da, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
            }
        }
    }
    /* every row ignored: count 0, loss 0 */
    cb_tensor *logits = HRAND(CB_F32, 3, 7), *lg_d = dev(logits, CB_F32);
    cb_tensor *tg = ids_host(3, -1, 0, CB_I32), *tg_d = ids_dev(tg);
    cb_tensor *loss_d = dev_poison(1, SHAPE(1), CB_F32), *lse_d = dev_poison(1, SHAPE(3), CB_F32);
    int64_t cnt = -1;
    CHECK(G->cross_entropy_fwd(lg_d, tg_d, -1, loss_d, lse_d, &cnt));
    assert_int_equal(cnt, 0);
    cb_tensor *lh = back(loss_d);
    assert_true(((float *)lh->data)[0] == 0.0f);
    /* a target outside [0, V) that is not ignored fails */
    ((int32_t *)tg->data)[1] = 7;
    cb_tensor *bad_d = ids_dev(tg);
    assert_int_equal(G->cross_entropy_fwd(lg_d, bad_d, -1, loss_d, lse_d, &cnt), CB_ERR_ARG);
    release_all();
}

/* ---- dropout, strided copy ------------------------------------------------------------------- */

static void test_dropout(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    char w[64];
    float ps[3] = {0.25f, 0.f, 1.f};
    FOR_DT(dt) {
        for (int c = 0; c < 3; c++) {
            cb_tensor *x = HRAND(dt, 4099), *x_d = dev(x, dt);
            cb_tensor *y = HNEW(4099), *y_d = dev_poison(1, SHAPE(4099), dt);
            CHECK(C->dropout_fwd(x, ps[c], 1234567, 99, y));
            CHECK(G->dropout_fwd(x_d, ps[c], 1234567, 99, y_d));
            snprintf(w, sizeof w, "dropout_fwd[%s] p=%g", dtn(dt), (double)ps[c]);
            expect_close(w, y_d, y, OUT_ATOL(dt, 0), OUT_RTOL(dt, 1e-6));
            /* the masks agree exactly: zeros in the same places */
            cb_tensor *yb = back(y_d);
            for (int64_t i = 0; i < 4099; i++)
                assert_true((((float *)yb->data)[i] == 0.f) == (((float *)y->data)[i] == 0.f) ||
                            ((float *)x->data)[i] == 0.f);
            cb_tensor *dx = HRAND(CB_F32, 4099), *dx_d = dev(dx, CB_F32);
            cb_tensor *dy = HRAND(CB_F32, 4099), *dy_d = dev(dy, CB_F32);
            CHECK(C->dropout_bwd(dy, ps[c], 1234567, 99, dx));
            CHECK(G->dropout_bwd(dy_d, ps[c], 1234567, 99, dx_d));
            snprintf(w, sizeof w, "dropout_bwd[%s] p=%g", dtn(dt), (double)ps[c]);
            expect_close(w, dx_d, dx, 1e-7, 1e-6);
        }
    }
    release_all();
}

static void test_strided_copy(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    char w[64];
    FOR_DT(dt) {
        /* [2, 5, 3, 4] -> transposed [2, 3, 5, 4] */
        cb_tensor *src = HRAND(dt, 2, 5, 3, 4), *src_d = dev(src, dt);
        cb_tensor *dst = HNEW(2, 3, 5, 4), *dst_d = dev_poison(4, SHAPE(2, 3, 5, 4), dt);
        const int64_t shape[4] = {2, 3, 5, 4}, ss[4] = {60, 4, 12, 1}, ds[4] = {60, 20, 4, 1};
        CHECK(C->strided_copy(src, 0, ss, dst, 0, ds, shape, false));
        CHECK(G->strided_copy(src_d, 0, ss, dst_d, 0, ds, shape, false));
        label(w, sizeof w, "strided_copy transpose", dt);
        expect_close(w, dst_d, dst, 0, 0);
        /* slice with offsets, accumulated into a larger f32 buffer (a concat backward) */
        cb_tensor *big = HRAND(CB_F32, 3, 7, 11), *big_d = dev(big, CB_F32);
        const int64_t sh2[4] = {1, 2, 5, 3}, s2[4] = {0, 12, 1, 4}, d2[4] = {0, 77, 11, 2};
        CHECK(C->strided_copy(src, 7, s2, big, 5, d2, sh2, true));
        CHECK(G->strided_copy(src_d, 7, s2, big_d, 5, d2, sh2, true));
        label(w, sizeof w, "strided_copy accumulate", dt);
        expect_close(w, big_d, big, 1e-7, 1e-6);
    }
    /* integer tensors copy raw */
    cb_tensor *ids = ids_host(24, 0, 1000, CB_I64), *ids_d = ids_dev(ids);
    cb_tensor *out = ids_host(24, 0, 1, CB_I64), *out_d = ids_dev(out);
    const int64_t shape[4] = {1, 1, 4, 6}, ss[4] = {0, 0, 1, 4}, ds[4] = {0, 0, 6, 1};
    CHECK(G->strided_copy(ids_d, 0, ss, out_d, 0, ds, shape, false));
    CHECK(cb_tensor_copy(out, out_d));
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++)
            assert_int_equal(((int64_t *)out->data)[i * 6 + j], ((int64_t *)ids->data)[i + 4 * j]);
    release_all();
}

/* ---- optimizer ------------------------------------------------------------------------------- */

static void test_adamw(void **state) {
    (void)state;
    NEED_GPU();
    const int64_t sizes[3] = {5003, 17, 1};
    cb_tensor *p[3], *g[3], *m[3], *v[3], *pd[3], *gd[3], *md[3], *vd[3];
    for (int i = 0; i < 3; i++) {
        p[i] = HRAND(CB_F32, sizes[i]);
        g[i] = HRAND(CB_F32, sizes[i]);
        m[i] = HRAND(CB_F32, sizes[i]);
        v[i] = hrand_dt(1, &sizes[i], 0.f, 0.1f, CB_F32);
        pd[i] = dev(p[i], CB_F32);
        gd[i] = dev(g[i], CB_F32);
        md[i] = dev(m[i], CB_F32);
        vd[i] = dev(v[i], CB_F32);
    }
    /* single-tensor entry on tensor 0 */
    CHECK(C->adamw(p[0], g[0], m[0], v[0], 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 3, 0.5f));
    CHECK(G->adamw(pd[0], gd[0], md[0], vd[0], 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 3, 0.5f));
    expect_close("adamw.param", pd[0], p[0], 1e-6, 1e-5);
    expect_close("adamw.m", md[0], m[0], 1e-6, 1e-5);
    expect_close("adamw.v", vd[0], v[0], 1e-6, 1e-5);
    /* multi-tensor launcher, one more step over all three */
    for (int i = 0; i < 3; i++)
        CHECK(C->adamw(p[i], g[i], m[i], v[i], 3e-3f, 0.8f, 0.95f, 1e-6f, 0.f, 4, 1.f));
    CHECK(cb_cuda_adamw_multi(3, pd, (const cb_tensor *const *)gd, md, vd, 3e-3f, 0.8f, 0.95f,
                              1e-6f, 0.f, 4, 1.f));
    for (int i = 0; i < 3; i++) {
        expect_close("adamw_multi.param", pd[i], p[i], 1e-6, 1e-5);
        expect_close("adamw_multi.m", md[i], m[i], 1e-6, 1e-5);
        expect_close("adamw_multi.v", vd[i], v[i], 1e-6, 1e-5);
    }
    /* bf16 gradients */
    cb_tensor *gb = HRAND(CB_BF16, 5003), *gb_d = dev(gb, CB_BF16);
    CHECK(C->adamw(p[0], gb, m[0], v[0], 1e-3f, 0.9f, 0.99f, 1e-8f, 0.01f, 5, 1.f));
    CHECK(G->adamw(pd[0], gb_d, md[0], vd[0], 1e-3f, 0.9f, 0.99f, 1e-8f, 0.01f, 5, 1.f));
    expect_close("adamw.param[bf16 grad]", pd[0], p[0], 1e-6, 1e-5);
    release_all();
}

static void test_sum_squares(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    FOR_DT(dt) {
        cb_tensor *x = HRAND(dt, 100003), *x_d = dev(x, dt);
        double a = 0, b = 0;
        CHECK(C->sum_squares(x, &a));
        CHECK(G->sum_squares(x_d, &b));
        if (fabs(a - b) > 1e-5 * fabs(a)) fail_msg("sum_squares[%s]: gpu %.12g cpu %.12g", dtn(dt), b, a);
        cb_tensor *y = HRAND(dt, 7), *y_d = dev(y, dt);
        double c = 0, m = 0;
        CHECK(C->sum_squares(y, &c));
        const cb_tensor *xs[2] = {x_d, y_d};
        CHECK(cb_cuda_sum_squares_multi(2, xs, &m));
        if (fabs(a + c - m) > 1e-5 * fabs(a + c)) fail_msg("sum_squares_multi: %.12g vs %.12g", m, a + c);
    }
    release_all();
}

/* ---- determinism, memory --------------------------------------------------------------------- */

static int same_bits(const cb_tensor *a_d, const cb_tensor *b_d) {
    cb_tensor *a = hnew(a_d->ndim, a_d->shape, a_d->dtype), *b = hnew(b_d->ndim, b_d->shape, b_d->dtype);
    CHECK(cb_tensor_copy(a, a_d));
    CHECK(cb_tensor_copy(b, b_d));
    return memcmp(a->data, b->data, cb_tensor_nbytes(a)) == 0;
}

static void test_determinism(void **state) {
    (void)state;
    NEED_GPU();
    int64_t V = 50, D = 96, N = 4000;
    cb_tensor *ids = ids_host(N, 0, 7, CB_I32), *ids_d = ids_dev(ids);
    cb_tensor *dout = HRAND(CB_F32, N, D), *dout_d = dev(dout, CB_F32);
    cb_tensor *z = HNEW(V, D), *w1 = dev(z, CB_F32), *w2 = dev(z, CB_F32);
    CHECK(G->embedding_bwd(ids_d, dout_d, w1));
    CHECK(G->embedding_bwd(ids_d, dout_d, w2));
    assert_true(same_bits(w1, w2));
    cb_attn_cfg cfg = {.n_heads = 4, .n_kv_heads = 1, .head_dim = 32, .v_head_dim = 32,
                       .scale = 0.2f, .causal = true};
    cb_tensor *q = dev(HRAND(CB_F32, 2, 90, 128), CB_F32), *k = dev(HRAND(CB_F32, 2, 90, 32), CB_F32);
    cb_tensor *v = dev(HRAND(CB_F32, 2, 90, 32), CB_F32), *go = dev(HRAND(CB_F32, 2, 90, 128), CB_F32);
    cb_tensor *o = dev(HNEW(2, 90, 128), CB_F32), *l = dev(HNEW(2, 4, 90), CB_F32);
    CHECK(G->attention_fwd(&cfg, q, k, v, NULL, NULL, o, l));
    cb_tensor *dk[2], *dq[2];
    for (int r = 0; r < 2; r++) {
        dk[r] = dev(HNEW(2, 90, 32), CB_F32);
        dq[r] = dev(HNEW(2, 90, 128), CB_F32);
        CHECK(G->attention_bwd(&cfg, q, k, v, NULL, NULL, o, l, go, dq[r], dk[r], NULL, NULL, NULL));
    }
    assert_true(same_bits(dk[0], dk[1]));
    assert_true(same_bits(dq[0], dq[1]));
    /* the bf16 tensor-core kernels too */
    cb_attn_cfg c2 = {.n_heads = 4, .n_kv_heads = 2, .head_dim = 64, .v_head_dim = 64,
                      .scale = 0.125f, .causal = true};
    cb_tensor *qb = dev(HRAND(CB_F32, 2, 150, 256), CB_BF16), *kb = dev(HRAND(CB_F32, 2, 150, 128), CB_BF16);
    cb_tensor *vb = dev(HRAND(CB_F32, 2, 150, 128), CB_BF16), *gb = dev(HRAND(CB_F32, 2, 150, 256), CB_BF16);
    cb_tensor *ob = dev(HNEW(2, 150, 256), CB_BF16), *lb = dev(HNEW(2, 4, 150), CB_F32);
    CHECK(G->attention_fwd(&c2, qb, kb, vb, NULL, NULL, ob, lb));
    for (int r = 0; r < 2; r++) {
        dk[r] = dev(HNEW(2, 150, 128), CB_F32);
        dq[r] = dev(HNEW(2, 150, 256), CB_F32);
        CHECK(G->attention_bwd(&c2, qb, kb, vb, NULL, NULL, ob, lb, gb, dq[r], dk[r], NULL, NULL, NULL));
    }
    assert_true(same_bits(dk[0], dk[1]));
    assert_true(same_bits(dq[0], dq[1]));
    release_all();
}

/* ---- per-head gates and temperatures -------------------------------------------------------- */

/* sigmoid and exp_clamp forward (outputs stored in dt) and backward (accumulating into f32 and
 * into dt gradients); exp_clamp inputs straddle [lo, hi] and hit both edges exactly (the gradient
 * passes there, as torch.clamp) and the first bf16 values outside them (no gradient). */
static void gate_unary_case(const int64_t *sh, cb_dtype dt) {
    char w[96];
    const float lo = -8.f, hi = 8.f;
    cb_tensor *x = hrand_dt(2, sh, -8.f, 8.f, dt), *x_d = dev(x, dt);
    cb_tensor *y = hnew(2, sh, CB_F32), *y_d = dev_poison(2, sh, dt);
    CHECK(C->sigmoid_fwd(x, y));
    CHECK(G->sigmoid_fwd(x_d, y_d));
    label(w, sizeof w, "sigmoid_fwd", dt);
    expect_close(w, y_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
    /* backward reads y: both backends get the same (dt-rounded) values */
    hround(y, dt);
    cb_tensor *yr_d = dev(y, dt);
    cb_tensor *dy = hrand_dt(2, sh, -1, 1, CB_F32), *dy_d = dev(dy, CB_F32);
    for (int gdt = 0; gdt < 2; gdt++) {
        cb_dtype g = gdt ? dt : CB_F32;
        cb_tensor *dx = hrand_dt(2, sh, -1, 1, g), *dx_d = dev(dx, g);
        CHECK(C->sigmoid_bwd(y, dy, dx));
        CHECK(G->sigmoid_bwd(yr_d, dy_d, dx_d));
        snprintf(w, sizeof w, "sigmoid_bwd[%s, %s grads]", dtn(dt), dtn(g));
        expect_close(w, dx_d, dx, OUT_ATOL(g, 1e-6), OUT_RTOL(g, 1e-5));
    }

    cb_tensor *e = hrand_dt(2, sh, -12.f, 12.f, dt);
    float *ep = e->data;
    ep[0] = lo;
    ep[1] = hi;
    ep[2] = lo - 0.0625f; /* exact in bf16 */
    ep[3] = hi + 0.0625f;
    ep[4] = hi - 0.03125f;
    ep[5] = lo + 0.03125f;
    cb_tensor *e_d = dev(e, dt), *ey_d = dev_poison(2, sh, dt);
    CHECK(C->exp_clamp_fwd(e, lo, hi, y));
    CHECK(G->exp_clamp_fwd(e_d, lo, hi, ey_d));
    label(w, sizeof w, "exp_clamp_fwd", dt);
    expect_close(w, ey_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));
    hround(y, dt);
    yr_d = dev(y, dt);
    for (int gdt = 0; gdt < 2; gdt++) {
        cb_dtype g = gdt ? dt : CB_F32;
        cb_tensor *dx = hrand_dt(2, sh, -1, 1, g), *dx_d = dev(dx, g), *dx0 = hclone(dx);
        CHECK(C->exp_clamp_bwd(e, y, lo, hi, dy, dx));
        CHECK(G->exp_clamp_bwd(e_d, yr_d, lo, hi, dy_d, dx_d));
        snprintf(w, sizeof w, "exp_clamp_bwd[%s, %s grads]", dtn(dt), dtn(g));
        expect_close(w, dx_d, dx, OUT_ATOL(g, 1e-6), OUT_RTOL(g, 1e-5));
        /* the reference itself: the edges pass the gradient, just outside leaves dx untouched */
        cb_tensor *got = back(dx_d);
        const float *gp = got->data, *d0 = dx0->data, *dyp = dy->data, *yp = y->data;
        for (int i = 0; i < 2; i++)
            assert_true(fabs(gp[i] - (d0[i] + dyp[i] * yp[i])) <=
                        (g == CB_F32 ? 1e-3 : 2e-2) * (1 + fabs(d0[i] + dyp[i] * yp[i])));
        for (int i = 2; i < 4; i++) assert_true(gp[i] == d0[i]);
    }
}

/* head_scale forward and backward: q [R, H*hd] (as [2, R/2, W] when R is even) in dt, scales s
 * [1, H] shared or [R, H] per row in f32; dq and ds accumulate, either may be NULL. The shared ds
 * is a reduction over all R rows (several chunks when R is large) and must be bitwise repeatable.
 */
static void head_scale_case(int64_t R, int H, int64_t hd, bool per_row, cb_dtype dt) {
    char w[128];
    int64_t W = H * hd, ns = per_row ? R : 1;
    int64_t qs3[3] = {2, R / 2, W}, qs2[2] = {R, W}, ss[2] = {ns, H};
    int qnd = R % 2 == 0 ? 3 : 2;
    const int64_t *qsh = qnd == 3 ? qs3 : qs2;
    snprintf(w, sizeof w, "head_scale R=%lld H=%d hd=%lld %s [%s]", (long long)R, H, (long long)hd,
             per_row ? "per-row" : "shared", dtn(dt));
    size_t wl = strlen(w);
    cb_tensor *q = hrand_dt(qnd, qsh, -1, 1, dt), *q_d = dev(q, dt);
    cb_tensor *s = hrand_dt(2, ss, 0.25f, 2.f, CB_F32), *s_d = dev(s, CB_F32);
    cb_tensor *y = hnew(qnd, qsh, CB_F32), *y_d = dev_poison(qnd, qsh, dt);
    CHECK(C->head_scale_fwd(q, s, H, y));
    CHECK(G->head_scale_fwd(q_d, s_d, H, y_d));
    snprintf(w + wl, sizeof w - wl, " fwd");
    expect_close(w, y_d, y, OUT_ATOL(dt, 1e-6), OUT_RTOL(dt, 1e-5));

    cb_tensor *dy = hrand_dt(qnd, qsh, -1, 1, dt), *dy_d = dev(dy, dt);
    for (int which = 0; which < 4; which++) { /* both, dq only, ds only, both with dq in dt */
        cb_dtype gq = which == 3 ? dt : CB_F32;
        bool want_dq = which != 2, want_ds = which != 1;
        cb_tensor *dq = want_dq ? hrand_dt(qnd, qsh, -1, 1, gq) : NULL;
        cb_tensor *dq_d = want_dq ? dev(dq, gq) : NULL;
        cb_tensor *ds = want_ds ? hrand_dt(2, ss, -1, 1, CB_F32) : NULL;
        cb_tensor *ds_d = want_ds ? dev(ds, CB_F32) : NULL;
        cb_tensor *ds2_d = want_ds ? dev(ds, CB_F32) : NULL;
        CHECK(C->head_scale_bwd(q, s, H, dy, dq, ds));
        CHECK(G->head_scale_bwd(q_d, s_d, H, dy_d, dq_d, ds_d));
        if (dq) {
            snprintf(w + wl, sizeof w - wl, " bwd.dq (case %d)", which);
            expect_close(w, dq_d, dq, OUT_ATOL(gq, 1e-6), OUT_RTOL(gq, 1e-5));
        }
        if (ds) {
            snprintf(w + wl, sizeof w - wl, " bwd.ds (case %d)", which);
            expect_close(w, ds_d, ds, 2e-5, 1e-4);
            CHECK(G->head_scale_bwd(q_d, s_d, H, dy_d, NULL, ds2_d));
            snprintf(w + wl, sizeof w - wl, " bwd.ds repeatable (case %d)", which);
            if (!same_bits(ds_d, ds2_d)) fail_msg("%s: two runs differ", w);
        }
    }
}

static void test_gates(void **state) {
    (void)state;
    NEED_GPU();
    cb_dtype dt;
    static const int64_t shapes[2][2] = {{29, 131}, {8, 96}};
    FOR_DT(dt) {
        for (int si = 0; si < 2; si++) gate_unary_case(shapes[si], dt);
        head_scale_case(37, 5, 24, false, dt);
        head_scale_case(37, 5, 24, true, dt);
        head_scale_case(1, 3, 7, false, dt);    /* one row: ns = 1 = R */
        head_scale_case(600, 4, 33, false, dt); /* many row chunks */
        head_scale_case(200, 2, 80, true, dt);  /* hd > 32: lanes loop */
        head_scale_case(64, 1, 5, false, dt);
        release_all();
    }
    release_all();
}

static void test_memory(void **state) {
    (void)state;
    NEED_GPU();
    void *p = cb_device_alloc(CB_CUDA, 1000);
    assert_non_null(p);
    cb_device_free(CB_CUDA, p);
    void *q = cb_device_alloc(CB_CUDA, 900); /* same size class: served from the cache */
    assert_ptr_equal(p, q);
    unsigned char host[1000], back_[1000];
    for (int i = 0; i < 1000; i++) host[i] = (unsigned char)(i * 7);
    CHECK(cb_device_copy(CB_CUDA, q, CB_CPU, host, 900));
    void *r = cb_device_alloc(CB_CUDA, 900);
    CHECK(cb_device_copy(CB_CUDA, r, CB_CUDA, q, 900));
    CHECK(cb_device_copy(CB_CPU, back_, CB_CUDA, r, 900));
    assert_memory_equal(host, back_, 900);
    CHECK(cb_device_memset0(CB_CUDA, r, 100));
    CHECK(cb_device_copy(CB_CPU, back_, CB_CUDA, r, 900));
    for (int i = 0; i < 100; i++) assert_int_equal(back_[i], 0);
    assert_int_equal(back_[100], host[100]);
    size_t held = 0, used = 0;
    cb_cuda_memory_stats(&held, &used);
    assert_true(held >= used && used >= 1800);
    cb_device_free(CB_CUDA, q);
    cb_device_free(CB_CUDA, r);
    /* absurd request fails cleanly with a message */
    assert_null(cb_device_alloc(CB_CUDA, (size_t)1 << 50));
    assert_non_null(strstr(cb_last_error(), "GPU memory"));
    cb_cuda_release_cached();
}

static int group_setup(void **state) {
    (void)state;
    C = cb_cpu_kernels();
    if (!cb_device_available(CB_CUDA)) {
        print_message("skipping CUDA tests: %s\n", cb_last_error());
        G = NULL;
        return 0;
    }
    G = cb_kernels_for(CB_CUDA);
    if (!G) print_message("skipping CUDA tests: %s\n", cb_last_error());
    else print_message("CUDA device: %s\n", cb_cuda_device_description());
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_bias),          cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_embedding),     cmocka_unit_test(test_norms),
        cmocka_unit_test(test_activations),   cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),     cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_cross_entropy), cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_strided_copy),  cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_sum_squares),   cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_gates),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}

#else /* no CUDA backend in this build */

static void test_cuda_ops_skipped(void **state) {
    (void)state;
    print_message("skipping CUDA tests: this build has no CUDA backend (CARAMBA_CUDA off)\n");
    skip();
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cuda_ops_skipped)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
