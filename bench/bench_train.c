/* Benchmark: the `tiny` Llama (BENCHMARKS.md) on the CPU — forward+backward tokens/s, full
 * training step (forward, backward, AdamW) tokens/s, 128-token prefill tokens/s and peak memory —
 * against the same model in plain PyTorch (bench/torch_peer.py) run in the same invocation with
 * the same thread count. The training step is the trainer's own (src/trainer: cb_train_grads,
 * the global gradient norm, cb_optimizer_step), i.e. what `caramba run` does per step. Prints a
 * table and writes JSON (argv: --threads N --iters K --json F --no-peer). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "caramba/model.h"
#include "caramba/rng.h"
#include "caramba/threads.h"
#include "caramba/trainer.h"
#include "ops/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
    fprintf(stderr, "bench_train: %s: %s\n", what, cb_last_error());
    exit(1);
}

int main(int argc, char **argv) {
    cb_blas_tune_reexec(argv);
    int threads = 2, iters = 5, peer = 1;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
    }
    cb_threads_init(threads);
    cb_llama_config c = {.vocab_size = 4096, .hidden_size = 256, .intermediate_size = 704,
                         .num_hidden_layers = 4, .num_attention_heads = 8, .num_key_value_heads = 2,
                         .head_dim = 32, .rope_dim = 32, .max_position_embeddings = 512,
                         .rms_norm_eps = 1e-5, .rope = {.theta = 10000.0f}};
    cb_model *m;
    if (cb_model_from_llama_config(&m, &c, CB_CPU) != CB_OK) die("model");
    if (cb_model_enable_grads(m) != CB_OK) die("grads");
    const int B = 8, T = 256, P = 128;
    int32_t *xs = malloc(sizeof(int32_t) * B * (T + 1)), *ys = malloc(sizeof(int32_t) * B * T);
    cb_rng rng;
    cb_rng_seed(&rng, 1);
    for (int i = 0; i < B * (T + 1); i++) xs[i] = (int32_t)cb_rng_below(&rng, 4096);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) ys[b * T + t] = xs[b * (T + 1) + t + 1];
    int32_t *x = malloc(sizeof(int32_t) * B * T);
    for (int b = 0; b < B; b++) memcpy(x + b * T, xs + b * (T + 1), sizeof(int32_t) * T);
    int64_t sh[2] = {B, T}, psh[2] = {1, P};
    cb_tensor X, Y, PX;
    cb_tensor_init(&X, CB_I32, CB_CPU, 2, sh, x);
    cb_tensor_init(&Y, CB_I32, CB_CPU, 2, sh, ys);
    cb_tensor_init(&PX, CB_I32, CB_CPU, 2, psh, x);
    /* AdamW as a run configures it: decay 0.1 except norms / biases / embeddings */
    cb_adamw_cfg ac = {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.1, .decay_all = false};
    cb_optimizer *opt;
    if (cb_optimizer_new(&opt, m, &ac) != CB_OK) die("optimizer");
    cb_batch batch = {&X, &Y};
    cb_graph g;
    if (cb_graph_init(&g, CB_CPU) != CB_OK) die("graph");
    double t_fb = 0, t_step = 0, t_pre = 0;
    float loss = 0;
    for (int mode = 0; mode < 2; mode++)
        for (int it = -2; it < iters; it++) {
            double t0 = now();
            double lv = 0, norm = 0;
            if (cb_train_grads(m, NULL, &g, NULL, &batch, 1, &lv) != CB_OK) die("step");
            if (mode == 1) {
                if (cb_grad_global_norm(m, &norm) != CB_OK) die("grad norm");
                if (cb_optimizer_step(opt, 1e-4, cb_clip_scale(norm, 1.0)) != CB_OK) die("adamw");
            }
            loss = (float)lv;
            if (it >= 0) *(mode ? &t_step : &t_fb) += now() - t0;
        }
    cb_graph pg;
    cb_graph_init(&pg, CB_CPU);
    cb_graph_set_grad(&pg, false);
    int piters = iters * 4 > 10 ? iters * 4 : 10;
    for (int it = -2; it < piters; it++) {
        double t0 = now();
        cb_graph_reset(&pg);
        if (!cb_model_forward(m, &pg, &PX, NULL)) die("prefill");
        if (it >= 0) t_pre += now() - t0;
    }
    if (g.profile) cb_graph_profile_print(&g, stderr);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double fb = B * T * iters / t_fb, st = B * T * iters / t_step, pre = P * piters / t_pre;
    double peak_mb = ru.ru_maxrss / 1024.0, arena_mb = g.act.peak / 1048576.0;

    double pfb = 0, pst = 0, ppre = 0, prss = 0;
    char ver[64] = "-";
    if (peer) {
        char cmd[512];
        const char *py = getenv("CARAMBA_PYTHON"); /* the interpreter that has torch */
        snprintf(cmd, sizeof cmd, "%s bench/torch_peer.py --threads %d --iters %d 2>/dev/null",
                 py ? py : "/usr/bin/python3", threads, iters);
        FILE *pp = popen(cmd, "r");
        char line[4096] = "";
        if (pp && fgets(line, sizeof line, pp)) {
            char *s;
            if ((s = strstr(line, "\"fwd_bwd_tok_s\": "))) pfb = atof(s + 17);
            if ((s = strstr(line, "\"train_step_tok_s\": "))) pst = atof(s + 20);
            if ((s = strstr(line, "\"prefill_tok_s\": "))) ppre = atof(s + 17);
            if ((s = strstr(line, "\"peak_rss_mb\": "))) prss = atof(s + 15);
            if ((s = strstr(line, "\"torch\": \""))) sscanf(s + 10, "%63[^\"]", ver);
        }
        if (pp) pclose(pp);
    }
    printf("tiny Llama (d256 L4 H8/2 ff704 V4096), B=%d T=%d, %d threads, %lld params, loss %.4f\n", B, T,
           threads, (long long)cb_model_param_count(m), loss);
    printf("| metric | caramba | PyTorch %s | ratio |\n|---|---|---|---|\n", ver);
    printf("| forward+backward tok/s | %.0f | %.0f | %.2fx |\n", fb, pfb, pfb > 0 ? fb / pfb : 0);
    printf("| train step (fwd+bwd+AdamW) tok/s | %.0f | %.0f | %.2fx |\n", st, pst, pst > 0 ? st / pst : 0);
    printf("| prefill %d tok/s | %.0f | %.0f | %.2fx |\n", P, pre, ppre, ppre > 0 ? pre / ppre : 0);
    printf("| peak RSS MB | %.0f (activation arena %.0f) | %.0f | |\n", peak_mb, arena_mb, prss);
    if (json) {
        FILE *f = fopen(json, "w");
        if (f) {
            fprintf(f, "{\"threads\": %d, \"fwd_bwd_tok_s\": %.1f, \"train_step_tok_s\": %.1f, "
                       "\"prefill_tok_s\": %.1f, \"peak_rss_mb\": %.1f, \"arena_mb\": %.1f, "
                       "\"peer\": {\"torch\": \"%s\", \"fwd_bwd_tok_s\": %.1f, \"train_step_tok_s\": %.1f, "
                       "\"prefill_tok_s\": %.1f, \"peak_rss_mb\": %.1f}}\n",
                    threads, fb, st, pre, peak_mb, arena_mb, ver, pfb, pst, ppre, prss);
            fclose(f);
        }
    }
    cb_graph_free(&g);
    cb_graph_free(&pg);
    cb_optimizer_free(opt);
    cb_model_free(m);
    free(xs);
    free(ys);
    free(x);
    return 0;
}
