/* Times the CUDA kernel table on shapes of a GPT-2-small-class training step and prints achieved
 * TFLOP/s or GB/s per kernel (median of 5 timed runs after warm-up; the host clock around a
 * synchronised batch of launches). Run `python3 bench/cuda_torch_ref.py` on the same card for the
 * PyTorch numbers of the same shapes. Prints a reason and exits 0 when no GPU is present. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caramba/device.h"
#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef CARAMBA_CUDA
#include "ops/cuda/cuda_backend.h"
#include "ops/kernels.h"

static const cb_kernels *K;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static cb_tensor *gnew(cb_dtype dt, int ndim, const int64_t *shape) {
    cb_tensor *t;
    if (cb_tensor_new(&t, dt, CB_CUDA, ndim, shape) != CB_OK) {
        fprintf(stderr, "error: %s\n", cb_last_error());
        exit(1);
    }
    return t;
}

/* Fills a device tensor with uniform values in [lo, hi) (host-generated, converted). */
static void gfill(cb_tensor *t, float lo, float hi, uint64_t seed) {
    int64_t n = cb_tensor_numel(t);
    cb_tensor h;
    float *buf = malloc((size_t)n * sizeof(float));
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        buf[i] = lo + (hi - lo) * (float)(s >> 40) * (1.0f / 16777216.0f);
    }
    cb_tensor_init(&h, CB_F32, CB_CPU, t->ndim, t->shape, buf);
    if (cb_tensor_copy(t, &h) != CB_OK) {
        fprintf(stderr, "error: %s\n", cb_last_error());
        exit(1);
    }
    free(buf);
}

#define S(...) ((const int64_t[]){__VA_ARGS__})
#define CHK(x)                                                                                     \
    do {                                                                                           \
        if ((x) != CB_OK) {                                                                        \
            fprintf(stderr, "error: %s: %s\n", #x, cb_last_error());                               \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Median seconds per call of body over 5 runs of `iters` calls. */
#define TIME(iters, body)                                                                          \
    ({                                                                                             \
        for (int w_ = 0; w_ < 2; w_++) { body; }                                                   \
        CHK(cb_cuda_sync());                                                                       \
        double ts_[5];                                                                             \
        for (int r_ = 0; r_ < 5; r_++) {                                                           \
            double t0_ = now();                                                                    \
            for (int i_ = 0; i_ < (iters); i_++) { body; }                                         \
            CHK(cb_cuda_sync());                                                                   \
            ts_[r_] = (now() - t0_) / (iters);                                                     \
        }                                                                                          \
        for (int a_ = 0; a_ < 5; a_++)                                                             \
            for (int b_ = a_ + 1; b_ < 5; b_++)                                                    \
                if (ts_[b_] < ts_[a_]) {                                                           \
                    double x_ = ts_[a_];                                                           \
                    ts_[a_] = ts_[b_];                                                             \
                    ts_[b_] = x_;                                                                  \
                }                                                                                  \
        ts_[2];                                                                                    \
    })

static void row(const char *what, double sec, double flops, double bytes) {
    printf("%-58s %9.3f ms", what, sec * 1e3);
    if (flops > 0) printf("  %8.1f TFLOP/s", flops / sec * 1e-12);
    if (bytes > 0) printf("  %8.1f GB/s", bytes / sec * 1e-9);
    printf("\n");
}

static void bench_gemm(cb_dtype dt, cb_dtype cdt, int64_t M, int64_t N, int64_t K_, bool tB) {
    cb_tensor *A = gnew(dt, 2, S(M, K_)), *B = gnew(dt, 2, tB ? S(N, K_) : S(K_, N));
    cb_tensor *C = gnew(cdt, 2, S(M, N));
    gfill(A, -1, 1, 1);
    gfill(B, -1, 1, 2);
    double t = TIME(10, CHK(K->gemm(false, tB, M, N, K_, 1.f, A, K_, 0, B, tB ? K_ : N, 0, 0.f, C,
                                    N, 0, 1)));
    char w[128];
    snprintf(w, sizeof w, "gemm %s->%s %lldx%lldx%lld%s", cb_dtype_name(dt), cb_dtype_name(cdt),
             (long long)M, (long long)N, (long long)K_, tB ? " (B^T)" : "");
    row(w, t, 2.0 * M * N * K_, 0);
    cb_tensor_free(A);
    cb_tensor_free(B);
    cb_tensor_free(C);
}

static void bench_attention(cb_dtype dt, int64_t B, int64_t T, int H, int hd) {
    cb_attn_cfg cfg = {.n_heads = H, .n_kv_heads = H, .head_dim = hd, .v_head_dim = hd,
                       .scale = 0.125f, .causal = true};
    int64_t W = (int64_t)H * hd;
    cb_tensor *q = gnew(dt, 3, S(B, T, W)), *k = gnew(dt, 3, S(B, T, W)), *v = gnew(dt, 3, S(B, T, W));
    cb_tensor *o = gnew(dt, 3, S(B, T, W)), *lse = gnew(CB_F32, 3, S(B, H, T));
    cb_tensor *go = gnew(dt, 3, S(B, T, W));
    cb_tensor *dq = gnew(CB_F32, 3, S(B, T, W)), *dk = gnew(CB_F32, 3, S(B, T, W)),
              *dv = gnew(CB_F32, 3, S(B, T, W));
    gfill(q, -1, 1, 3);
    gfill(k, -1, 1, 4);
    gfill(v, -1, 1, 5);
    gfill(go, -1, 1, 6);
    double causal_flops = 4.0 * B * H * (double)T * T * hd / 2; /* QK^T and PV, half masked */
    char w[128];
    double t = TIME(3, CHK(K->attention_fwd(&cfg, q, k, v, NULL, NULL, o, lse)));
    snprintf(w, sizeof w, "attention fwd %s B=%lld T=%lld H=%d hd=%d causal", cb_dtype_name(dt),
             (long long)B, (long long)T, H, hd);
    row(w, t, causal_flops, 0);
    t = TIME(2, CHK(K->attention_bwd(&cfg, q, k, v, NULL, NULL, o, lse, go, dq, dk, dv, NULL, NULL)));
    snprintf(w, sizeof w, "attention bwd %s B=%lld T=%lld H=%d hd=%d causal", cb_dtype_name(dt),
             (long long)B, (long long)T, H, hd);
    row(w, t, 2.5 * causal_flops, 0);
    cb_tensor *ts[] = {q, k, v, o, lse, go, dq, dk, dv};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) cb_tensor_free(ts[i]);
}

static void bench_rows(cb_dtype dt, int64_t R, int64_t D, int64_t V) {
    size_t es = cb_dtype_size(dt);
    cb_tensor *x = gnew(dt, 2, S(R, D)), *y = gnew(dt, 2, S(R, D)), *w = gnew(dt, 1, S(D));
    cb_tensor *rs = gnew(CB_F32, 1, S(R)), *dy = gnew(CB_F32, 2, S(R, D)), *dx = gnew(CB_F32, 2, S(R, D));
    cb_tensor *dw = gnew(CB_F32, 1, S(D));
    gfill(x, -1, 1, 7);
    gfill(w, 0.5, 1.5, 8);
    gfill(dy, -1, 1, 9);
    char lbl[128];
    double t = TIME(20, CHK(K->rmsnorm_fwd(x, w, 1e-5f, y, rs)));
    snprintf(lbl, sizeof lbl, "rmsnorm fwd %s %lldx%lld", cb_dtype_name(dt), (long long)R, (long long)D);
    row(lbl, t, 0, 2.0 * R * D * es);
    t = TIME(20, CHK(K->rmsnorm_bwd(x, w, rs, dy, dx, dw)));
    snprintf(lbl, sizeof lbl, "rmsnorm bwd %s %lldx%lld (dx, dw)", cb_dtype_name(dt), (long long)R,
             (long long)D);
    row(lbl, t, 0, (double)R * D * (es + 4 + 8) + R * D * (es + 4)); /* + the dw pass */
    t = TIME(20, CHK(K->add(x, y, y)));
    snprintf(lbl, sizeof lbl, "add %s %lld elements", cb_dtype_name(dt), (long long)(R * D));
    row(lbl, t, 0, 3.0 * R * D * es);
    /* cross-entropy over a GPT-2 vocabulary */
    cb_tensor *lg = gnew(dt, 2, S(R, V)), *tg = gnew(CB_I32, 1, S(R)), *loss = gnew(CB_F32, 1, S(1));
    cb_tensor *lse = gnew(CB_F32, 1, S(R)), *dl = gnew(CB_F32, 2, S(R, V));
    gfill(lg, -4, 4, 10);
    int64_t cnt = 0;
    t = TIME(5, CHK(K->cross_entropy_fwd(lg, tg, -100, loss, lse, &cnt)));
    snprintf(lbl, sizeof lbl, "cross_entropy fwd %s %lldx%lld", cb_dtype_name(dt), (long long)R,
             (long long)V);
    row(lbl, t, 0, (double)R * V * es);
    t = TIME(5, CHK(K->cross_entropy_bwd(lg, tg, -100, lse, 1.f, cnt, dl, false)));
    snprintf(lbl, sizeof lbl, "cross_entropy bwd %s %lldx%lld (f32 dlogits +=)", cb_dtype_name(dt),
             (long long)R, (long long)V);
    row(lbl, t, 0, (double)R * V * (es + 8));
    cb_tensor *ts[] = {x, y, w, rs, dy, dx, dw, lg, tg, loss, lse, dl};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) cb_tensor_free(ts[i]);
}

static void bench_embedding(int64_t N, int64_t V, int64_t D) {
    cb_tensor *ids = gnew(CB_I32, 1, S(N)), *W = gnew(CB_F32, 2, S(V, D)), *o = gnew(CB_F32, 2, S(N, D));
    cb_tensor *dW = gnew(CB_F32, 2, S(V, D));
    double t = TIME(10, CHK(K->embedding_fwd(ids, W, o)));
    row("embedding fwd f32 8192 ids x 768 (with id check)", t, 0, 2.0 * N * D * 4);
    t = TIME(10, CHK(K->embedding_bwd(ids, o, dW)));
    row("embedding bwd f32 8192 ids x 768 (all ids equal: worst)", t, 0, 2.0 * N * D * 4);
    cb_tensor_free(ids);
    cb_tensor_free(W);
    cb_tensor_free(o);
    cb_tensor_free(dW);
}

static void bench_adamw(int64_t nparams) {
    /* 50 tensors like a 12-layer model's: one multi-tensor launch */
    enum { NT = 50 };
    cb_tensor *p[NT], *g[NT], *m[NT], *v[NT];
    int64_t each = nparams / NT;
    for (int i = 0; i < NT; i++) {
        p[i] = gnew(CB_F32, 1, S(each));
        g[i] = gnew(CB_F32, 1, S(each));
        m[i] = gnew(CB_F32, 1, S(each));
        v[i] = gnew(CB_F32, 1, S(each));
    }
    double t = TIME(5, CHK(cb_cuda_adamw_multi(NT, p, (const cb_tensor *const *)g, m, v, 1e-4f, 0.9f,
                                               0.95f, 1e-8f, 0.1f, 1, 1.f)));
    row("adamw multi-tensor f32, 124M params", t, 0, 28.0 * each * NT);
    double ss = 0;
    t = TIME(5, CHK(cb_cuda_sum_squares_multi(NT, (const cb_tensor *const *)g, &ss)));
    row("sum_squares multi-tensor f32, 124M params (1 sync)", t, 0, 4.0 * each * NT);
    for (int i = 0; i < NT; i++) {
        cb_tensor_free(p[i]);
        cb_tensor_free(g[i]);
        cb_tensor_free(m[i]);
        cb_tensor_free(v[i]);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    if (!cb_device_available(CB_CUDA)) {
        printf("bench_cuda_ops: skipped: %s\n", cb_last_error());
        return 0;
    }
    K = cb_kernels_for(CB_CUDA);
    if (!K) {
        printf("bench_cuda_ops: skipped: %s\n", cb_last_error());
        return 0;
    }
    printf("device: %s\n", cb_cuda_device_description());
    bench_gemm(CB_BF16, CB_BF16, 8192, 8192, 8192, false);
    bench_gemm(CB_BF16, CB_F32, 8192, 3072, 768, true);
    bench_gemm(CB_BF16, CB_BF16, 8192, 3072, 768, true);
    bench_gemm(CB_F32, CB_F32, 4096, 4096, 4096, false);
    bench_attention(CB_BF16, 8, 1024, 12, 64);
    bench_attention(CB_F32, 8, 1024, 12, 64);
    bench_attention(CB_BF16, 2, 1024, 16, 128);
    bench_rows(CB_BF16, 8192, 768, 50257);
    bench_rows(CB_F32, 8192, 768, 50257);
    bench_embedding(8192, 50257, 768);
    bench_adamw(124000000);
    return 0;
}

#else
int main(void) {
    printf("bench_cuda_ops: skipped: this build has no CUDA backend\n");
    return 0;
}
#endif
