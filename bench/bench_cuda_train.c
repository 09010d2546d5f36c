/* GPU training benchmark (issue 6): the `small` Llama (d_model 768, 12 layers, 12 heads / 4 kv
 * heads, d_ff 2048, vocab 32768, untied head; BENCHMARKS.md) on cuda, batch 16 x 1024 tokens,
 * one full training step as `caramba run` does it (src/trainer: cb_train_grads, the global
 * gradient norm, clipping, cb_optimizer_step = multi-tensor AdamW) in bf16 AMP (bf16 activations
 * and weight copies, f32 master weights, gradients and moments), or f32 with --f32.
 *
 * Prints tokens/s (median step), forward-only and forward+backward times, MFU in the llm.c
 * convention (FLOPs/token = 6 N + 6 L d T, N all parameters) against the bf16 matmul rate that
 * this program measures itself through the same GEMM entry (8192^3, random data) and against the
 * 989 TFLOP/s datasheet peak, and the GPU memory held. The PyTorch peers (bench/torch_peer.py,
 * eager and torch.compile) are run by the caller in the same job (bench/run_cuda_e2e.sh).
 *
 * Usage: bench_cuda_train [--iters 10] [--batch 16] [--seq 1024] [--f32] [--profile]
 *                         [--json FILE] [--d-model 768 --layers 12 --heads 12 --kv-heads 4
 *                          --d-ff 2048 --vocab 32768] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caramba/device.h"
#include "caramba/gpu_decode.h"
#include "caramba/model.h"
#include "caramba/rng.h"
#include "caramba/trainer.h"
#include "ops/cuda_api.h"
#include "ops/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    fprintf(stderr, "bench_cuda_train: %s: %s\n", what, cb_last_error());
    exit(1);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* bf16 GEMM rate through the kernel table: C [n, n] = A [n, n] . B [n, n]^T, random inputs. */
static double matmul_tflops(const cb_cuda_api *cu, int64_t n) {
    const cb_kernels *k = cu->kernels();
    int64_t sh[2] = {n, n};
    cb_tensor *a, *b, *c;
    if (cb_tensor_new(&a, CB_BF16, CB_CUDA, 2, sh) || cb_tensor_new(&b, CB_BF16, CB_CUDA, 2, sh) ||
        cb_tensor_new(&c, CB_BF16, CB_CUDA, 2, sh))
        die("matmul buffers");
    uint16_t *h = malloc(sizeof(uint16_t) * (size_t)(n * n));
    cb_rng rng;
    cb_rng_seed(&rng, 7);
    for (int64_t i = 0; i < n * n; i++) h[i] = cb_f32_to_bf16(cb_rng_normal(&rng));
    if (cb_device_copy(CB_CUDA, a->data, CB_CPU, h, (size_t)(n * n) * 2) ||
        cb_device_copy(CB_CUDA, b->data, CB_CPU, h, (size_t)(n * n) * 2))
        die("matmul upload");
    free(h);
    double best = 0;
    for (int rep = -3; rep < 10; rep++) {
        double t0 = now();
        if (k->gemm(false, true, n, n, n, 1.0f, a, n, 0, b, n, 0, 0.0f, c, n, 0, 1)) die("gemm");
        cu->sync();
        double dt = now() - t0, tf = 2.0 * n * n * n / dt / 1e12;
        if (rep >= 0 && tf > best) best = tf;
    }
    cb_tensor_free(a);
    cb_tensor_free(b);
    cb_tensor_free(c);
    return best;
}

/* Attention forward + backward through the kernel table at the step's shape (bf16, causal),
 * median ms of 10: shows which kernels the step gets (CARAMBA_CUDA_TRACE prints the choice). */
static void attn_bench(const cb_cuda_api *cu, int B, int T, int H, int Hkv, int hd) {
    const cb_kernels *k = cu->kernels();
    int64_t sq[3] = {B, T, (int64_t)H * hd}, skv[3] = {B, T, (int64_t)Hkv * hd}, sl[3] = {B, H, T};
    cb_tensor *q, *kk, *v, *o, *lse, *dq, *dk, *dv, *dout;
    if (cb_tensor_new(&q, CB_BF16, CB_CUDA, 3, sq) ||
        cb_tensor_new(&kk, CB_BF16, CB_CUDA, 3, skv) ||
        cb_tensor_new(&v, CB_BF16, CB_CUDA, 3, skv) || cb_tensor_new(&o, CB_BF16, CB_CUDA, 3, sq) ||
        cb_tensor_new(&lse, CB_F32, CB_CUDA, 3, sl) ||
        cb_tensor_new(&dq, CB_BF16, CB_CUDA, 3, sq) ||
        cb_tensor_new(&dk, CB_BF16, CB_CUDA, 3, skv) ||
        cb_tensor_new(&dv, CB_BF16, CB_CUDA, 3, skv) ||
        cb_tensor_new(&dout, CB_BF16, CB_CUDA, 3, sq))
        die("attention buffers");
    cb_tensor *fill[4] = {q, kk, v, dout};
    cb_rng rng;
    cb_rng_seed(&rng, 3);
    for (int i = 0; i < 4; i++) {
        int64_t n = cb_tensor_numel(fill[i]);
        uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n);
        for (int64_t j = 0; j < n; j++) h[j] = cb_f32_to_bf16(cb_rng_normal(&rng));
        if (cb_device_copy(CB_CUDA, fill[i]->data, CB_CPU, h, (size_t)n * 2)) die("upload");
        free(h);
    }
    cb_attn_cfg cfg = {.n_heads = H,
                       .n_kv_heads = Hkv,
                       .head_dim = hd,
                       .v_head_dim = hd,
                       .scale = 1.0f / sqrtf((float)hd),
                       .causal = true};
    double tf[10], tb[10];
    for (int it = -2; it < 10; it++) {
        double t0 = now();
        if (k->attention_fwd(&cfg, q, kk, v, NULL, NULL, o, lse)) die("attention fwd");
        cu->sync();
        double t1 = now();
        if (k->attention_bwd(&cfg, q, kk, v, NULL, NULL, o, lse, dout, dq, dk, dv, NULL, NULL))
            die("attention bwd");
        cu->sync();
        if (it >= 0) tf[it] = t1 - t0, tb[it] = now() - t1;
        if (it == -2) unsetenv("CARAMBA_CUDA_TRACE");
    }
    qsort(tf, 10, sizeof *tf, cmp_d);
    qsort(tb, 10, sizeof *tb, cmp_d);
    printf("attention bf16 causal B=%d T=%d H=%d Hkv=%d hd=%d: fwd %.3f ms, bwd %.3f ms\n", B, T, H,
           Hkv, hd, tf[5] * 1e3, tb[5] * 1e3);
    cb_tensor *all[9] = {q, kk, v, o, lse, dq, dk, dv, dout};
    for (int i = 0; i < 9; i++) cb_tensor_free(all[i]);
}

int main(int argc, char **argv) {
    int iters = 10, B = 16, T = 1024, f32 = 0, profile = 0;
    int d = 768, L = 12, H = 12, Hkv = 4, F = 2048, V = 32768;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "--iters"))
            iters = atoi(v), i++;
        else if (!strcmp(a, "--batch"))
            B = atoi(v), i++;
        else if (!strcmp(a, "--seq"))
            T = atoi(v), i++;
        else if (!strcmp(a, "--d-model"))
            d = atoi(v), i++;
        else if (!strcmp(a, "--layers"))
            L = atoi(v), i++;
        else if (!strcmp(a, "--heads"))
            H = atoi(v), i++;
        else if (!strcmp(a, "--kv-heads"))
            Hkv = atoi(v), i++;
        else if (!strcmp(a, "--d-ff"))
            F = atoi(v), i++;
        else if (!strcmp(a, "--vocab"))
            V = atoi(v), i++;
        else if (!strcmp(a, "--json"))
            json = v, i++;
        else if (!strcmp(a, "--f32"))
            f32 = 1;
        else if (!strcmp(a, "--profile"))
            profile = 1;
    }
    if (!cb_device_available(CB_CUDA)) {
        printf("bench_cuda_train: skipped: %s\n", cb_last_error());
        return 0;
    }
    const cb_cuda_api *cu = cb_cuda_api_get();
    printf("device: %s\n", cu->device_description());
    double mm = matmul_tflops(cu, 8192);
    printf("bf16 matmul 8192^3 through caramba's GEMM (cuBLASLt): %.0f TFLOP/s\n", mm);
    cb_llama_config c = {.vocab_size = V,
                         .hidden_size = d,
                         .intermediate_size = F,
                         .num_hidden_layers = L,
                         .num_attention_heads = H,
                         .num_key_value_heads = Hkv,
                         .head_dim = d / H,
                         .rope_dim = d / H,
                         .max_position_embeddings = T,
                         .rms_norm_eps = 1e-5,
                         .rope = {.theta = 10000.0f}};
    cb_model *m;
    if (cb_model_from_llama_config(&m, &c, CB_CUDA) != CB_OK) die("model");
    if (!f32 && cb_model_set_compute_dtype(m, CB_BF16) != CB_OK) die("amp");
    if (cb_model_enable_grads(m) != CB_OK) die("grads");
    cb_adamw_cfg ac = {
        .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1, .decay_all = false};
    cb_optimizer *opt;
    if (cb_optimizer_new(&opt, m, &ac) != CB_OK) die("optimizer");
    int32_t *x = malloc(sizeof(int32_t) * (size_t)B * T),
            *y = malloc(sizeof(int32_t) * (size_t)B * T);
    cb_rng rng;
    cb_rng_seed(&rng, 1);
    for (int b = 0; b < B; b++) {
        int32_t prev = (int32_t)cb_rng_below(&rng, (uint64_t)V);
        for (int t = 0; t < T; t++) {
            x[b * T + t] = prev;
            prev = (int32_t)cb_rng_below(&rng, (uint64_t)V);
            y[b * T + t] = prev;
        }
    }
    int64_t sh[2] = {B, T};
    cb_tensor X, Y;
    cb_tensor_init(&X, CB_I32, CB_CPU, 2, sh, x);
    cb_tensor_init(&Y, CB_I32, CB_CPU, 2, sh, y);
    cb_batch batch = {&X, &Y};
    cb_graph g;
    if (cb_graph_init(&g, CB_CUDA) != CB_OK) die("graph");
    g.profile = false;
    int64_t N = cb_model_param_count(m);
    double flops_tok = 6.0 * (double)N + 6.0 * L * d * (double)T;
    double tok = (double)B * T;

    /* forward only (loss, no tape) */
    double *ts = malloc(sizeof(double) * (size_t)(iters + 1));
    double t_fwd, t_fb, t_step;
    float lossv = 0;
    for (int it = -2; it < iters; it++) {
        cb_graph_reset(&g);
        cb_graph_set_grad(&g, false);
        double t0 = now();
        cb_tensor *loss = cb_model_loss(m, &g, &X, &Y);
        if (!loss) die("forward");
        if (cb_device_copy(CB_CPU, &lossv, CB_CUDA, loss->data, 4)) die("loss");
        if (it >= 0) ts[it] = now() - t0;
    }
    qsort(ts, (size_t)iters, sizeof *ts, cmp_d);
    t_fwd = ts[iters / 2];
    cb_graph_set_grad(&g, true);
    for (int it = -2; it < iters; it++) {
        double t0 = now(), lv;
        if (cb_train_grads(m, NULL, &g, NULL, &batch, 1, &lv) != CB_OK) die("forward+backward");
        cu->sync();
        if (it >= 0) ts[it] = now() - t0;
    }
    qsort(ts, (size_t)iters, sizeof *ts, cmp_d);
    t_fb = ts[iters / 2];
    double first_loss = 0, last_loss = 0;
    for (int it = -3; it < iters; it++) {
        double t0 = now(), lv, norm;
        if (cb_train_grads(m, NULL, &g, NULL, &batch, 1, &lv) != CB_OK) die("step");
        if (cb_grad_global_norm(m, &norm) != CB_OK) die("grad norm");
        if (cb_optimizer_step(opt, 1e-4, cb_clip_scale(norm, 1.0)) != CB_OK) die("adamw");
        cu->sync();
        if (it >= 0) ts[it] = now() - t0;
        if (it == -3) first_loss = lv;
        last_loss = lv;
    }
    qsort(ts, (size_t)iters, sizeof *ts, cmp_d);
    t_step = ts[iters / 2];
    size_t held = 0, in_use = 0;
    cu->memory_stats(&held, &in_use);
    double tok_s = tok / t_step, tflops = flops_tok * tok / t_step / 1e12;
    printf("small Llama (d%d L%d H%d/%d ff%d V%d, untied), B=%d T=%d, %s, %lld params\n", d, L, H,
           Hkv, F, V, B, T, f32 ? "f32" : "bf16 AMP (f32 master weights)", (long long)N);
    printf("loss %.4f at the first step, %.4f after %d AdamW steps (lr 1e-4)\n", first_loss,
           last_loss, iters + 2);
    printf("| phase | ms | tok/s |\n|---|---|---|\n");
    printf("| forward (+loss) | %.2f | %.0f |\n", t_fwd * 1e3, tok / t_fwd);
    printf("| forward+backward | %.2f | %.0f |\n", t_fb * 1e3, tok / t_fb);
    printf("| train step (fwd+bwd+norm+AdamW) | %.2f | %.0f |\n", t_step * 1e3, tok_s);
    printf("MFU: %.1f TFLOP/s = %.1f%% of the measured bf16 matmul rate (%.0f), %.1f%% of 989 "
           "TFLOP/s; GPU memory held %.1f GiB\n",
           tflops, 100 * tflops / mm, mm, 100 * tflops / 989.0, held / 1073741824.0);
    if (profile) {
        setenv("CARAMBA_CUDA_TRACE", "1", 1);
        attn_bench(cu, B, T, H, Hkv, d / H);
        setenv("CARAMBA_CUDA_TRACE", "1", 1);
        attn_bench(cu, B, T, H, H, d / H);
        g.profile = true;
        for (int it = 0; it < 2; it++) {
            double lv;
            if (it == 1) memset(g.prof, 0, sizeof g.prof), g.n_prof = 0;
            if (it == 1) setenv("CARAMBA_CUDA_TRACE", "1", 1);
            if (cb_train_grads(m, NULL, &g, NULL, &batch, 1, &lv) != CB_OK) die("profile");
        }
        unsetenv("CARAMBA_CUDA_TRACE");
        printf("per-op GPU time of one forward+backward (synchronised per op):\n");
        cb_graph_profile_print(&g, stdout);
        g.profile = false;
    }
    if (json) {
        FILE *f = fopen(json, "w");
        if (f) {
            fprintf(
                f,
                "{\"device\": \"%s\", \"dtype\": \"%s\", \"params\": %lld, \"batch\": %d, \"seq\": "
                "%d, "
                "\"matmul_tflops\": %.1f, \"fwd_ms\": %.3f, \"fwd_bwd_ms\": %.3f, \"step_ms\": "
                "%.3f, "
                "\"train_step_tok_s\": %.1f, \"fwd_bwd_tok_s\": %.1f, \"flops_per_token\": %.1f, "
                "\"tflops\": %.2f, \"gpu_mem_gib\": %.2f}\n",
                cu->device_description(), f32 ? "float32" : "bfloat16", (long long)N, B, T, mm,
                t_fwd * 1e3, t_fb * 1e3, t_step * 1e3, tok_s, tok / t_fb, flops_tok, tflops,
                held / 1073741824.0);
            fclose(f);
        }
    }
    cb_graph_free(&g);
    cb_optimizer_free(opt);
    cb_model_free(m);
    free(ts);
    free(x);
    free(y);
    return 0;
}
