/* Micro-benchmark of single CPU kernels at the `tiny` training shapes (B=8, T=256, d=256,
 * 8 heads / 2 kv heads of 32): GFLOP/s or GB/s per kernel. For tuning, not a peer comparison.
 * Usage: bench_ops [--threads N] [--iters K] [--only NAME] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/graph.h"
#include "caramba/rng.h"
#include "caramba/threads.h"
#include "ops/kernels.h"

static cb_tensor *rnd(int ndim, const int64_t *shape, cb_rng *r) {
    cb_tensor *t;
    cb_tensor_new(&t, CB_F32, CB_CPU, ndim, shape);
    for (int64_t i = 0; i < cb_tensor_numel(t); i++) cb_f32(t)[i] = cb_rng_uniform(r) * 2 - 1;
    return t;
}

int main(int argc, char **argv) {
    int threads = 2, iters = 10;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    }
    cb_threads_init(threads);
    const cb_kernels *k = cb_cpu_kernels();
    cb_rng r;
    cb_rng_seed(&r, 1);
    const int B = 8, T = 256, H = 8, Hkv = 2, hd = 32;
    int64_t sq[3] = {B, T, H * hd}, sk[3] = {B, T, Hkv * hd}, sl[3] = {B, H, T};
    cb_tensor *q = rnd(3, sq, &r), *kk = rnd(3, sk, &r), *v = rnd(3, sk, &r), *o = rnd(3, sq, &r),
              *lse = rnd(3, sl, &r), *dout = rnd(3, sq, &r), *dq = rnd(3, sq, &r), *dk = rnd(3, sk, &r),
              *dv = rnd(3, sk, &r);
    cb_attn_cfg c = {.n_heads = H, .n_kv_heads = Hkv, .head_dim = hd, .v_head_dim = hd,
                     .scale = 1.0f / sqrtf(hd), .causal = true};
    double flops_fwd = 4.0 * B * H * (T * (T + 1) / 2.0) * hd;
    struct {
        const char *name;
        double flops;
    } tests[] = {{"attention_fwd", flops_fwd}, {"attention_bwd", 2.5 * flops_fwd}};
    for (int t = 0; t < 2; t++) {
        if (only && strcmp(only, tests[t].name)) continue;
        double best = 1e9;
        for (int it = 0; it < iters; it++) {
            double t0 = cb_now();
            if (t == 0) k->attention_fwd(&c, q, kk, v, NULL, NULL, o, lse);
            else k->attention_bwd(&c, q, kk, v, NULL, NULL, o, lse, dout, dq, dk, dv, NULL, NULL);
            double dt = cb_now() - t0;
            if (dt < best) best = dt;
        }
        printf("%-16s %8.3f ms %8.1f GFLOP/s\n", tests[t].name, best * 1e3, tests[t].flops / best / 1e9);
    }
    return 0;
}
