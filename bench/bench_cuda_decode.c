/* GPU decode benchmark (issue 6): the `small` Llama (d_model 768, 12 layers, 12 / 4 heads,
 * d_ff 2048, vocab 32768, random weights; `--config 1b`: the Llama-3.2-1B shape, d_model 2048,
 * 16 layers, 32 / 8 heads, d_ff 8192, vocab 128256, tied embeddings), batch 1, greedy, through the
 * GPU decoder (caramba/gpu_decode.h: bf16 weights, one CUDA graph per token, KV cache on the GPU).
 *
 * 1. Prompt 512, 128 new tokens, fp16 cache: decode tokens/s (127 steps after the first token),
 *    prefill time, end-to-end tokens/s. The weights are written as a Hugging Face directory
 *    (config.json + model.safetensors, f32) and the prompt as text, so that the HF `generate`
 *    peer (bench/hf_decode_peer.py, run by the caller in the same job) loads the same model; our
 *    generated ids go to <dir>/ours_ids.txt for comparison.
 * 2. Long contexts (16k, 64k) with fp16, q8_0 and q4_0 caches: the cache is filled with
 *    pseudo-random rows of that format (a step's cost does not depend on the values), then 32
 *    steps are timed. Bytes a step must read = every weight except the embedding table (bf16, plus
 *    one embedding row) + the whole K and V cache; achieved bandwidth = bytes / step time, as a
 *    fraction of the device-to-device copy bandwidth measured here (read + write bytes). The
 *    attention's own share: (step(ctx) - step(64)) against the cache bytes alone.
 *
 * Usage: bench_cuda_decode [--dir DIR] [--prompt 512] [--new 128] [--reps 5]
 *                          [--contexts 16384,65536] [--kinds fp16,q8_0,q4_0,nf4] [--long-only]
 *                          [--config small|1b] [--json FILE]
 * (--kinds and --long-only narrow a tuning run to the long-context rows of some cache kinds) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caramba/device.h"
#include "caramba/fileio.h"
#include "caramba/gpu_decode.h"
#include "caramba/hf.h"
#include "caramba/model.h"
#include "caramba/rng.h"
#include "ops/cuda_api.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define CHECK(st)                                                                                  \
    do {                                                                                           \
        if ((st) != CB_OK) {                                                                       \
            fprintf(stderr, "bench_cuda_decode: %s:%d: %s\n", __FILE__, __LINE__,                  \
                    cb_last_error());                                                              \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The standard configs of BENCHMARKS.md; `1b` is the Llama-3.2-1B shape (tied embeddings). */
static const char *CONFIG_1B =
    "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
    "  \"vocab_size\": 128256,\n  \"hidden_size\": 2048,\n  \"intermediate_size\": 8192,\n"
    "  \"num_hidden_layers\": 16,\n  \"num_attention_heads\": 32,\n  \"num_key_value_heads\": 8,\n"
    "  \"head_dim\": 64,\n  \"max_position_embeddings\": 66000,\n  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": true,\n  \"hidden_act\": \"silu\",\n"
    "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n  \"torch_dtype\": \"float32\"\n}\n";

static const char *SMALL_CONFIG =
    "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
    "  \"vocab_size\": 32768,\n  \"hidden_size\": 768,\n  \"intermediate_size\": 2048,\n"
    "  \"num_hidden_layers\": 12,\n  \"num_attention_heads\": 12,\n  \"num_key_value_heads\": 4,\n"
    "  \"head_dim\": 64,\n  \"max_position_embeddings\": 66000,\n  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": false,\n  \"hidden_act\": \"silu\",\n"
    "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n  \"torch_dtype\": \"float32\"\n}\n";

/* Device-to-device copy bandwidth (read + write bytes), best of 10 copies of 1 GiB. */
static double copy_bandwidth(void) {
    size_t n = (size_t)1 << 30;
    void *a = cb_device_alloc(CB_CUDA, n), *b = cb_device_alloc(CB_CUDA, n);
    if (!a || !b) return NAN;
    CHECK(cb_device_memset0(CB_CUDA, a, n));
    CHECK(cb_device_memset0(CB_CUDA, b, n));
    double best = 0;
    for (int r = 0; r < 12; r++) {
        double t0 = now_s();
        CHECK(cb_device_copy(CB_CUDA, b, CB_CUDA, a, n));
        CHECK(cb_gpu_sync());
        double bw = 2.0 * (double)n / (now_s() - t0);
        if (r >= 2 && bw > best) best = bw;
    }
    cb_device_free(CB_CUDA, a);
    cb_device_free(CB_CUDA, b);
    return best;
}

/* Median seconds per step of `steps` steps from a cache of `ctx` positions. */
static double time_steps(cb_gpu_decoder *d, int64_t ctx, int steps, int reps) {
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (int r = 0; r < reps; r++) {
        CHECK(cb_gpu_decoder_fill(d, ctx, 1234 + (uint64_t)r));
        CHECK(cb_gpu_decoder_steps(d, 2)); /* the graph is captured on first use */
        CHECK(cb_gpu_sync());
        double t0 = now_s();
        CHECK(cb_gpu_decoder_steps(d, steps));
        CHECK(cb_gpu_sync());
        t[r] = (now_s() - t0) / steps;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    double m = t[reps / 2];
    free(t);
    return m;
}

int main(int argc, char **argv) {
    const char *dir = "bench-cuda-decode", *json = NULL;
    int P = 512, NEW = 128, reps = 5;
    int64_t ctxs[8] = {16384, 65536};
    int nctx = 2, long_only = 0;
    const char *kind_list = "fp16,q8_0,q4_0,nf4", *config_name = "small";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "0";
        if (!strcmp(a, "--dir"))
            dir = v, i++;
        else if (!strcmp(a, "--prompt"))
            P = atoi(v), i++;
        else if (!strcmp(a, "--new"))
            NEW = atoi(v), i++;
        else if (!strcmp(a, "--reps"))
            reps = atoi(v), i++;
        else if (!strcmp(a, "--json"))
            json = v, i++;
        else if (!strcmp(a, "--kinds"))
            kind_list = v, i++;
        else if (!strcmp(a, "--config"))
            config_name = v, i++;
        else if (!strcmp(a, "--long-only"))
            long_only = 1;
        else if (!strcmp(a, "--contexts")) {
            nctx = 0;
            for (char *s = argv[++i]; s && *s && nctx < 8;) {
                ctxs[nctx++] = strtoll(s, &s, 10);
                if (*s == ',') s++;
            }
        }
    }
    if (!cb_device_available(CB_CUDA)) {
        printf("bench_cuda_decode: skipped: %s\n", cb_last_error());
        return 0;
    }
    const cb_cuda_api *cu = cb_cuda_api_get();
    printf("device: %s\n", cu->device_description());
    const char *config_json = !strcmp(config_name, "1b") ? CONFIG_1B : SMALL_CONFIG;
    if (strcmp(config_name, "1b") && strcmp(config_name, "small")) {
        fprintf(stderr, "bench_cuda_decode: --config %s: expected small or 1b\n", config_name);
        return 1;
    }
    printf("config: %s\n", config_name);
    char path[4200];
    CHECK(cb_mkdirs(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(cb_write_file_atomic(path, config_json, strlen(config_json)));
    cb_model *m;
    if (long_only) { /* no peer reads the weights: build them on the GPU directly */
        cb_llama_config cfg;
        CHECK(cb_llama_config_load(dir, &cfg));
        CHECK(cb_model_from_llama_config(&m, &cfg, CB_CUDA));
    } else {
        cb_llama_config cfg;
        CHECK(cb_llama_config_load(dir, &cfg));
        cb_model *mc;
        CHECK(cb_model_from_llama_config(&mc, &cfg, CB_CPU));
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        CHECK(cb_model_save(mc, path));
        cb_model_free(mc);
        CHECK(cb_model_open_hf(&m, dir, CB_CUDA));
    }
    CHECK(cb_model_set_compute_dtype(m, CB_BF16));
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P);
    cb_rng rng;
    cb_rng_seed(&rng, 42);
    for (int i = 0; i < P; i++)
        prompt[i] = (int32_t)(3 + cb_rng_below(&rng, (uint64_t)m->vocab_size - 3));
    snprintf(path, sizeof path, "%s/prompt.txt", dir);
    FILE *pf = fopen(path, "w");
    for (int i = 0; i < P; i++) fprintf(pf, i ? ",%d" : "%d", prompt[i]);
    fprintf(pf, "\n");
    fclose(pf);
    double bw = copy_bandwidth();
    printf("device-to-device copy: %.0f GB/s (read + write)\n", bw / 1e9);

    double dec_tok_s = 0, pre_s = 0, step_s = 0, t_tbt = 0;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(P + NEW));
    double *tp = malloc(sizeof(double) * (size_t)(reps + 1)),
           *td = malloc(sizeof(double) * (size_t)(reps + 1));
    if (!long_only) {
        /* 1. prompt P, NEW new tokens, fp16 cache */
        cb_gpu_decoder *d;
        CHECK(cb_gpu_decoder_new(&d, m, CB_KV_FP16, P + NEW));
        /* t_tbt: the prompt stepped through token by token (no batched prefill) */
        CHECK(cb_gpu_decoder_reset(d, prompt, P));
        CHECK(cb_gpu_decoder_steps(d, P));
        CHECK(cb_gpu_sync());
        {
            CHECK(cb_gpu_decoder_reset(d, prompt, P));
            double t0 = now_s();
            CHECK(cb_gpu_decoder_steps(d, P));
            CHECK(cb_gpu_sync());
            t_tbt = now_s() - t0;
        }
        for (int r = -2; r < reps; r++) {
            CHECK(cb_gpu_sync());
            double t0 = now_s();
            CHECK(cb_gpu_decoder_prefill(d, prompt, P)); /* batched; yields token 1 */
            CHECK(cb_gpu_sync());
            double t1 = now_s();
            CHECK(cb_gpu_decoder_steps(d, NEW - 1));
            CHECK(cb_gpu_sync());
            double t2 = now_s();
            if (r >= 0) tp[r] = t1 - t0, td[r] = t2 - t1;
        }
        CHECK(cb_gpu_decoder_tokens(d, 0, P + NEW, ids));
        snprintf(path, sizeof path, "%s/ours_ids.txt", dir);
        pf = fopen(path, "w");
        for (int i = 0; i < NEW; i++) fprintf(pf, i ? ",%d" : "%d", ids[P + i]);
        fprintf(pf, "\n");
        fclose(pf);
        qsort(tp, (size_t)reps, sizeof *tp, cmp_d);
        qsort(td, (size_t)reps, sizeof *td, cmp_d);
        dec_tok_s = (NEW - 1) / td[reps / 2], pre_s = tp[reps / 2];
        step_s = td[reps / 2] / (NEW - 1);
        double bytes_short = (double)cb_gpu_decoder_step_bytes(d, P + NEW / 2);
        printf(
            "decode, prompt %d, %d new tokens, fp16 cache, bf16 weights: %.0f tok/s (%.1f "
            "us/token, "
            "%.0f%% of copy bandwidth for %.0f MB/step); batched prefill %.2f ms (stepping through "
            "the prompt instead: %.1f ms); end to end %.0f tok/s\n",
            P, NEW, dec_tok_s, step_s * 1e6, 100 * bytes_short / step_s / bw, bytes_short / 1e6,
            pre_s * 1e3, t_tbt * 1e3, NEW / (pre_s + td[reps / 2]));
        printf("first generated ids:");
        for (int i = 0; i < 16 && i < NEW; i++) printf(" %d", ids[P + i]);
        printf("\n");
        cb_gpu_decoder_free(d);
    }

    /* 2. long contexts */
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf)
        fprintf(
            jf,
            "{\"device\": \"%s\", \"copy_gbs\": %.1f, \"prompt\": %d, \"new\": %d, "
            "\"decode_tok_s\": %.1f, \"step_us\": %.2f, \"prefill_ms\": %.2f, \"e2e_tok_s\": %.1f, "
            "\"prompt_stepped_ms\": %.2f, \"long\": [",
            cu->device_description(), bw / 1e9, P, NEW, dec_tok_s, step_s * 1e6, pre_s * 1e3,
            pre_s + step_s > 0 ? NEW / (pre_s + step_s * (NEW - 1)) : 0.0, t_tbt * 1e3);
    printf(
        "| cache | context | step us | tok/s | MB read/step | of which KV MB | GB/s | of copy BW | "
        "attention GB/s (KV / extra time) | of copy BW "
        "|\n|---|---|---|---|---|---|---|---|---|---|\n");
    const cb_kv_kind kinds[4] = {CB_KV_FP16, CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    int first = 1;
    for (int k = 0; k < 4; k++)
        for (int c = 0; c < nctx && strstr(kind_list, cb_kv_kind_name(kinds[k])); c++) {
            int64_t ctx = ctxs[c];
            cb_gpu_decoder *dl;
            CHECK(cb_gpu_decoder_new(&dl, m, kinds[k], ctx + 64));
            double t_short = time_steps(dl, 64, 32, 3);
            double t = time_steps(dl, ctx, 32, 3);
            int64_t len = ctx + 2 + 16; /* mean cache length over the timed steps */
            double bytes = (double)cb_gpu_decoder_step_bytes(dl, len);
            double kvb = bytes - (double)cb_gpu_decoder_step_bytes(dl, 0);
            double kv_short = (double)cb_gpu_decoder_step_bytes(dl, 64 + 18) -
                              (double)cb_gpu_decoder_step_bytes(dl, 0);
            double att_bw = (kvb - kv_short) / (t - t_short);
            printf("| %s | %lld | %.1f | %.0f | %.1f | %.1f | %.0f | %.0f%% | %.0f | %.0f%% |\n",
                   cb_kv_kind_name(kinds[k]), (long long)ctx, t * 1e6, 1.0 / t, bytes / 1e6,
                   kvb / 1e6, bytes / t / 1e9, 100 * bytes / t / bw, att_bw / 1e9,
                   100 * att_bw / bw);
            fflush(stdout);
            if (jf)
                fprintf(jf,
                        "%s{\"kv\": \"%s\", \"ctx\": %lld, \"step_us\": %.2f, \"bytes\": %.0f, "
                        "\"kv_bytes\": %.0f, \"frac\": %.4f, \"attn_frac\": %.4f, "
                        "\"step_us_ctx64\": %.2f}",
                        first ? "" : ", ", cb_kv_kind_name(kinds[k]), (long long)ctx, t * 1e6,
                        bytes, kvb, bytes / t / bw, att_bw / bw, t_short * 1e6);
            first = 0;
            cb_gpu_decoder_free(dl);
        }
    if (jf) {
        fprintf(jf, "]}\n");
        fclose(jf);
    }
    free(tp);
    free(td);
    free(ids);
    free(prompt);
    cb_model_free(m);
    return 0;
}
