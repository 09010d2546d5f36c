/* Decode benchmark (issue 7): the `tiny` config (d_model 256, 4 layers, 8 heads / 2 kv heads,
 * d_ff 704, vocab 4096, random weights), batch 1, greedy.
 *
 * 1. Prompt 128, 128 new tokens: caramba's generator (fp32 KV cache) against PyTorch eager with a
 *    KV cache (bench/decode_peer.py, run here as a subprocess with the same thread count, on the
 *    SAME weights: this program writes them as a Hugging Face directory, config.json +
 *    model.safetensors, and both sides load that). The peer's greedy ids are compared with ours.
 * 2. 4k and 16k-token contexts with each cache kind (fp32, fp16, q8_0, q4_0, nf4): decode tokens/s,
 *    cache bytes, and the fraction of the machine's memory bandwidth reached, counting the bytes a
 *    decode step must read (weights except the embedding table + one embedding row + the whole
 *    KV cache) against a copy-loop bandwidth measured in the same run (read + write bytes).
 *    The context is prefilled once through the model with an fp32 cache; every other kind gets the
 *    same keys/values appended (quantized on append), which is exactly what a prefill into that
 *    kind would store.
 *
 * Usage: bench_decode [--threads N] [--prompt 128] [--new 128] [--reps 5] [--contexts 4096,16384]
 *                     [--long-steps 32] [--python /usr/bin/python3] [--peer bench/decode_peer.py]
 *                     [--no-peer] [--dir DIR] [--json FILE]
 * Timings are the best of the repetitions (the median beside it): the machine is shared. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caramba/fileio.h"
#include "caramba/generate.h"
#include "caramba/hf.h"
#include "caramba/model.h"
#include "caramba/threads.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
static double maxv(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

#define CHECK(st)                                                                                  \
    do {                                                                                           \
        if ((st) != CB_OK) {                                                                       \
            fprintf(stderr, "bench_decode: %s:%d: %s\n", __FILE__, __LINE__, cb_last_error());     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static const char *TINY_CONFIG =
    "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
    "  \"vocab_size\": 4096,\n  \"hidden_size\": 256,\n  \"intermediate_size\": 704,\n"
    "  \"num_hidden_layers\": 4,\n  \"num_attention_heads\": 8,\n  \"num_key_value_heads\": 2,\n"
    "  \"head_dim\": 32,\n  \"max_position_embeddings\": 32768,\n  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_theta\": 10000.0,\n  \"tie_word_embeddings\": false,\n  \"hidden_act\": \"silu\",\n"
    "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n  \"torch_dtype\": \"float32\"\n}\n";

/* Random-weight tiny model written as a Hugging Face directory. */
static void write_tiny(const char *dir) {
    char path[4200];
    CHECK(cb_mkdirs(dir));
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(cb_write_file_atomic(path, TINY_CONFIG, strlen(TINY_CONFIG)));
    cb_llama_config cfg;
    CHECK(cb_llama_config_load(dir, &cfg));
    cb_model *m;
    CHECK(cb_model_from_llama_config(&m, &cfg, CB_CPU));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(cb_model_save(m, path));
    cb_model_free(m);
}

/* Copy bandwidth with the decode's thread count: best of 5 passes over 2 x 256 MiB, counting
 * read + write bytes. */
static double copy_bandwidth(int threads) {
    const size_t n = (size_t)256 << 20;
    char *a = malloc(n), *b = malloc(n);
    if (!a || !b) return NAN;
    memset(a, 1, n);
    memset(b, 2, n);
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t0 = now_s();
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t chunk = (n / (size_t)nt + 4095) / 4096 * 4096, lo = (size_t)t * chunk;
            size_t hi = lo + chunk < n ? lo + chunk : n;
            if (lo < hi) memcpy(b + lo, a + lo, hi - lo);
        }
        double bw = 2.0 * (double)n / (now_s() - t0);
        if (r > 0 && bw > best) best = bw; /* pass 0 faults the pages in */
    }
    volatile char sink = b[n / 2];
    (void)sink;
    free(a);
    free(b);
    return best;
}

/* Bytes of parameters a decode step reads: everything but the embedding table, plus one row. */
static double weight_bytes(const cb_model *m) {
    double b = 0;
    for (int i = 0; i < m->n_params; i++) b += (double)cb_tensor_numel(m->params[i]->t) * 4.0;
    if (m->vocab_size > 0) b -= (double)m->vocab_size * m->d_model * 4.0 - (double)m->d_model * 4.0;
    return b;
}

/* KV bytes holding `len` tokens for this policy (what one decode step streams). */
static double kv_bytes(const cb_model *m, const cb_kv_policy *p, int64_t len) {
    double b = 0;
    for (int i = 0; i < m->n_attn; i++) {
        const cb_attention_cfg *a = &m->attn[i]->attn;
        b += (double)len *
             (double)cb_kv_bytes_per_token(cb_kv_policy_kind(p, CB_KV_SLOT_K, CB_KV_FP32),
                                           (int64_t)a->n_kv_heads * a->head_dim);
        b += (double)len *
             (double)cb_kv_bytes_per_token(cb_kv_policy_kind(p, CB_KV_SLOT_V, CB_KV_FP32),
                                           (int64_t)a->n_kv_heads * a->v_head_dim);
    }
    return b;
}

/* One greedy forward of `tok` at ctx's position; returns the next token. */
static int32_t step(cb_model *m, cb_graph *g, cb_infer_ctx *ctx, int32_t tok) {
    cb_graph_reset(g);
    cb_infer_ctx_begin(ctx, cb_infer_caches_len(ctx));
    int64_t sh[2] = {1, 1};
    cb_tensor *x = cb_graph_wrap(g, CB_I32, 2, sh, &tok);
    cb_tensor *lg = cb_model_forward(m, g, x, ctx);
    if (!lg) CHECK(CB_ERR_INTERNAL);
    CHECK(cb_infer_ctx_end(ctx));
    return cb_argmax(cb_f32(lg), m->vocab_size);
}

static void copy_caches(cb_infer_ctx *dst, const cb_infer_ctx *src, int64_t len, float *buf,
                        int64_t chunk) {
    for (int i = 0; i < src->n_caches; i++) {
        const cb_seq_cache *s[2] = {&src->caches[i].k, &src->caches[i].v};
        cb_seq_cache *d[2] = {&dst->caches[i].k, &dst->caches[i].v};
        for (int t = 0; t < 2; t++)
            for (int64_t p = 0; p < len; p += chunk) {
                int64_t n = len - p < chunk ? len - p : chunk;
                CHECK(cb_seq_cache_read(s[t], 0, p, n, buf));
                CHECK(cb_seq_cache_append(d[t], buf, n, NULL));
            }
    }
}

/* A JSON number, or null when the peer gave none. */
static const char *jnum(double v, char *buf) {
    if (isnan(v) || isinf(v)) return "null";
    snprintf(buf, 32, "%.6g", v);
    return buf;
}

/* The PyTorch peer as a child process in --serve mode: one repetition per "run" line. */
typedef struct peer_proc {
    pid_t pid;
    FILE *to, *from;
    char *line;
    size_t cap;
} peer_proc;

static int peer_start(peer_proc *p, const char *python, const char *script, const char *dir,
                      int n_new, int threads, const char *csv, char *torch_ver, size_t tv) {
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return -1;
    char nn[16], nt[16];
    snprintf(nn, sizeof nn, "%d", n_new);
    snprintf(nt, sizeof nt, "%d", threads);
    fflush(NULL);
    p->pid = fork();
    if (p->pid < 0) return -1;
    if (p->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(python, python, script, "--serve", "--model", dir, "--new", nn, "--threads", nt,
              "--prompt", csv, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    p->to = fdopen(in[1], "w");
    p->from = fdopen(out[0], "r");
    if (!p->to || !p->from || getline(&p->line, &p->cap, p->from) <= 0 ||
        !strstr(p->line, "\"ready\": true"))
        return -1;
    char *s = strstr(p->line, "\"torch\": \"");
    if (s) sscanf(s + 10, "%63[^\"]", torch_ver);
    (void)tv;
    return 0;
}

/* One peer repetition; *match = how many of its greedy ids equal ours (from the start). */
static int peer_run(peer_proc *p, const int32_t *ids, int n, double *pre, double *dec, int *match) {
    fprintf(p->to, "run\n");
    fflush(p->to);
    if (getline(&p->line, &p->cap, p->from) <= 0) return -1;
    char *s;
    if (!(s = strstr(p->line, "\"decode_tok_s\": "))) return -1;
    *dec = strtod(s + 16, NULL);
    if ((s = strstr(p->line, "\"prefill_tok_s\": "))) *pre = strtod(s + 17, NULL);
    *match = 0;
    if ((s = strstr(p->line, "\"ids\": ["))) {
        s += 8;
        for (int i = 0; i < n; i++) {
            char *e;
            long v = strtol(s, &e, 10);
            if (e == s || v != ids[i]) break;
            (*match)++;
            s = e + (*e == ',' ? 1 : 0);
            while (*s == ' ') s++;
        }
    }
    return 0;
}

static void peer_stop(peer_proc *p) {
    if (p->to) {
        fprintf(p->to, "quit\n");
        fclose(p->to);
    }
    if (p->from) fclose(p->from);
    if (p->pid > 0) waitpid(p->pid, NULL, 0);
    free(p->line);
    *p = (peer_proc){0};
}

int main(int argc, char **argv) {
    int threads = 0, prompt_len = 128, n_new = 128, reps = 5, long_steps = 32, peer = 1;
    const char *python = "/usr/bin/python3", *peer_path = NULL, *dir = NULL, *json = NULL;
    char contexts[256] = "4096,16384";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--threads") && v)
            threads = atoi(argv[++i]);
        else if (!strcmp(a, "--prompt") && v)
            prompt_len = atoi(argv[++i]);
        else if (!strcmp(a, "--new") && v)
            n_new = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && v)
            reps = atoi(argv[++i]);
        else if (!strcmp(a, "--long-steps") && v)
            long_steps = atoi(argv[++i]);
        else if (!strcmp(a, "--contexts") && v)
            snprintf(contexts, sizeof contexts, "%s", argv[++i]);
        else if (!strcmp(a, "--python") && v)
            python = argv[++i];
        else if (!strcmp(a, "--peer") && v)
            peer_path = argv[++i];
        else if (!strcmp(a, "--dir") && v)
            dir = argv[++i];
        else if (!strcmp(a, "--json") && v)
            json = argv[++i];
        else if (!strcmp(a, "--no-peer"))
            peer = 0;
        else {
            fprintf(
                stderr,
                "usage: bench_decode [--threads N] [--prompt N] [--new N] [--reps N] "
                "[--contexts 4096,16384] [--long-steps N] [--python PY] [--peer decode_peer.py] "
                "[--no-peer] [--dir DIR] [--json FILE]\n");
            return 2;
        }
    }
    if (prompt_len < 1 || n_new < 2 || reps < 1 || long_steps < 1) {
        fprintf(stderr,
                "bench_decode: --prompt >= 1, --new >= 2, --reps >= 1, --long-steps >= 1\n");
        return 2;
    }
    threads = cb_threads_init(threads > 0 ? threads : (getenv("CARAMBA_THREADS") ? 0 : 2));
    char dirbuf[64], peerbuf[4096];
    if (!dir) {
        snprintf(dirbuf, sizeof dirbuf, "/tmp/caramba-bench-decode-%d", (int)getpid());
        dir = dirbuf;
    }
    if (!peer_path) {
        const char *src = getenv("CARAMBA_SOURCE_DIR");
        snprintf(peerbuf, sizeof peerbuf, "%s/bench/decode_peer.py", src ? src : ".");
        peer_path = peerbuf;
    }
    write_tiny(dir);
    cb_model *m;
    CHECK(cb_model_open_hf(&m, dir, CB_CPU));
    printf("bench_decode: tiny (d 256, 4 layers, 8/2 heads, d_ff 704, vocab 4096, %.2f M params), "
           "%d threads, weights in %s\n",
           (double)cb_model_param_count(m) / 1e6, threads, dir);

    /* ---- 1. prompt 128, 128 new tokens, vs PyTorch --------------------------------------------
     */
    cb_rng r;
    cb_rng_seed(&r, 42);
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)prompt_len);
    for (int i = 0; i < prompt_len; i++) prompt[i] = (int32_t)cb_rng_below(&r, 4096);
    cb_generate_config gc;
    cb_generate_config_default(&gc);
    gc.temperature = 0;
    gc.max_new_tokens = n_new;
    gc.max_seq_len = prompt_len + n_new;
    gc.cache_kind = "fp32";
    cb_generator *gen;
    CHECK(cb_generator_new(&gen, m, &gc));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n_new), tok;
    double *dec = calloc((size_t)reps, sizeof(double)), *pre = calloc((size_t)reps, sizeof(double));
    double *pdec = calloc((size_t)reps, sizeof(double)),
           *ppre = calloc((size_t)reps, sizeof(double));
    double *ratio = calloc((size_t)reps, sizeof(double));
    peer_proc pp = {0};
    int have_peer = 0, match = -1;
    char torch_ver[64] = "?";
    if (peer) {
        size_t cap = (size_t)prompt_len * 8 + 16;
        char *csv = malloc(cap);
        int o = 0;
        for (int i = 0; i < prompt_len; i++)
            o += snprintf(csv + o, cap - (size_t)o, "%s%d", i ? "," : "", prompt[i]);
        have_peer = peer_start(&pp, python, peer_path, dir, n_new, threads, csv, torch_ver,
                               sizeof torch_ver) == 0;
        if (!have_peer)
            fprintf(stderr, "bench_decode: the PyTorch peer did not start (%s %s --serve ...)\n",
                    python, peer_path);
        free(csv);
    }
    /* repetitions alternate caramba / PyTorch so both see the same machine load; rep 0 warms up */
    for (int rep = 0; rep <= reps; rep++) {
        cb_generator_reset(gen);
        double t0 = now_s();
        CHECK(cb_generator_feed(gen, prompt, 1, prompt_len, NULL));
        double t1 = now_s();
        CHECK(cb_generator_sample(gen, &tok));
        ids[0] = tok;
        for (int i = 1; i < n_new; i++) {
            CHECK(cb_generator_feed(gen, &tok, 1, 1, NULL));
            CHECK(cb_generator_sample(gen, &tok));
            ids[i] = tok;
        }
        double t2 = now_s();
        if (rep == 0) continue;
        pre[rep - 1] = prompt_len / (t1 - t0);
        dec[rep - 1] = (n_new - 1) / (t2 - t1);
        if (have_peer) {
            int mt = -1;
            if (peer_run(&pp, ids, n_new, &ppre[rep - 1], &pdec[rep - 1], &mt)) {
                fprintf(stderr, "bench_decode: the PyTorch peer stopped answering\n");
                have_peer = 0;
                peer_stop(&pp);
            }
            if (rep == 1) match = mt;
            ratio[rep - 1] = dec[rep - 1] / pdec[rep - 1];
        }
    }
    if (peer && pp.pid) peer_stop(&pp);
    double c_dec = maxv(dec, reps), c_dec_med = median(dec, reps), c_pre = maxv(pre, reps);
    double py_dec = peer && match >= 0 ? maxv(pdec, reps) : NAN;
    double py_dec_med = peer && match >= 0 ? median(pdec, reps) : NAN;
    double py_pre = peer && match >= 0 ? maxv(ppre, reps) : NAN;
    double ratio_med = peer && match >= 0 ? median(ratio, reps) : NAN;
    cb_generator_free(gen);
    double wbytes = weight_bytes(m);

    double bw = copy_bandwidth(threads);
    printf("copy bandwidth (read + write, %d threads): %.2f GB/s\n", threads, bw / 1e9);
    printf("\n| decode, prompt %d, %d new tokens, batch 1, greedy | tokens/s (best) | median | "
           "prefill tokens/s |\n"
           "|---|---|---|---|\n",
           prompt_len, n_new);
    printf("| caramba, fp32 KV cache | %.0f | %.0f | %.0f |\n", c_dec, c_dec_med, c_pre);
    if (peer) {
        printf("| PyTorch %s eager, KV cache | %.0f | %.0f | %.0f |\n", torch_ver, py_dec,
               py_dec_med, py_pre);
        printf("| **ratio** | **%.2fx** | %.2fx | %.2fx |\n", c_dec / py_dec,
               c_dec_med / py_dec_med, c_pre / py_pre);
        printf("median of the per-repetition ratios (each caramba run next to a PyTorch run): "
               "%.2fx\n",
               ratio_med);
    }
    cb_kv_policy fp32p = {.all = CB_KV_FP32, .slot = {-1, -1, -1, -1}};
    double short_bytes = wbytes + kv_bytes(m, &fp32p, prompt_len + n_new / 2);
    printf("greedy ids identical to PyTorch for %d of %d tokens; caramba reads %.1f MB per token "
           "(%.0f%% of the copy bandwidth)\n",
           match, n_new, short_bytes / 1e6, 100.0 * c_dec * short_bytes / bw);

    /* ---- 2. long contexts x cache kinds ----------------------------------------------------- */
    FILE *jf = json ? fopen(json, "w") : NULL;
    char jb[4][32];
    if (jf)
        fprintf(jf,
                "{\"threads\": %d, \"copy_bandwidth_Bps\": %.6g, \"short\": {\"prompt\": %d, "
                "\"new\": %d, \"caramba_tok_s\": %.6g, \"caramba_tok_s_median\": %.6g, "
                "\"caramba_prefill_tok_s\": %.6g, \"torch_tok_s\": %s, \"torch_tok_s_median\": "
                "%s, \"torch_prefill_tok_s\": %s, \"ratio_median_paired\": %s, "
                "\"ids_match\": %d}, \"long\": [",
                threads, bw, prompt_len, n_new, c_dec, c_dec_med, c_pre, jnum(py_dec, jb[0]),
                jnum(py_dec_med, jb[1]), jnum(py_pre, jb[2]), jnum(ratio_med, jb[3]), match);
    printf("\n| context | cache | cache bytes | tokens/s (best) | median | bytes/token read | "
           "bandwidth fraction |\n"
           "|---|---|---|---|---|---|---|\n");
    const char *kinds[] = {"fp32", "fp16", "q8_0", "q4_0", "nf4"};
    int first_json = 1;
    char *save = NULL;
    for (char *c = strtok_r(contexts, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        int64_t L = atoll(c);
        if (L < 2) continue;
        int64_t cap = L + long_steps + 8;
        cb_kv_policy p32;
        CHECK(cb_kv_policy_parse("fp32", &p32));
        cb_infer_ctx base;
        CHECK(cb_infer_caches_new(m, 1, cap, &p32, 0, 0, &base));
        CHECK(cb_infer_caches_reserve(&base, cap));
        int32_t *ctx_ids = malloc(sizeof(int32_t) * (size_t)L);
        for (int64_t i = 0; i < L; i++) ctx_ids[i] = (int32_t)cb_rng_below(&r, 4096);
        cb_graph g;
        CHECK(cb_graph_init(&g, CB_CPU));
        cb_graph_set_grad(&g, false);
        double tp = now_s();
        const int64_t chunk = 1024;
        for (int64_t p0 = 0; p0 < L; p0 += chunk) { /* chunked prefill bounds the logits buffer */
            int64_t n = L - p0 < chunk ? L - p0 : chunk;
            cb_graph_reset(&g);
            cb_infer_ctx_begin(&base, p0);
            int64_t sh[2] = {1, n};
            cb_tensor *x = cb_graph_wrap(&g, CB_I32, 2, sh, ctx_ids + p0);
            if (!cb_model_forward(m, &g, x, &base)) CHECK(CB_ERR_INTERNAL);
            CHECK(cb_infer_ctx_end(&base));
        }
        printf("(context %lld prefilled in %.1f s)\n", (long long)L, now_s() - tp);
        float *buf = malloc(sizeof(float) * 512 * 64);
        for (int k = 0; k < 5; k++) {
            cb_kv_policy pk;
            CHECK(cb_kv_policy_parse(kinds[k], &pk));
            cb_infer_ctx kc;
            CHECK(cb_infer_caches_new(m, 1, cap, &pk, 0, 0, &kc));
            CHECK(cb_infer_caches_reserve(&kc, cap));
            copy_caches(&kc, &base, L, buf, 512);
            double *tps = malloc(sizeof(double) * (size_t)reps);
            int32_t t = ctx_ids[L - 1];
            for (int rep = 0; rep < reps; rep++) {
                CHECK(cb_infer_caches_truncate(&kc, L));
                t = step(m, &g, &kc, t); /* warm-up */
                double t0 = now_s();
                for (int s = 0; s < long_steps; s++) t = step(m, &g, &kc, t);
                tps[rep] = long_steps / (now_s() - t0);
            }
            double best = maxv(tps, reps), med = median(tps, reps);
            double bytes_tok = wbytes + kv_bytes(m, &pk, L + long_steps / 2);
            size_t cache_bytes = (size_t)kv_bytes(m, &pk, L);
            printf("| %lld | %s | %.2f MiB | %.0f | %.0f | %.2f MB | %.2f |\n", (long long)L,
                   kinds[k], (double)cache_bytes / 1048576.0, best, med, bytes_tok / 1e6,
                   best * bytes_tok / bw);
            if (jf)
                fprintf(jf,
                        "%s{\"context\": %lld, \"kind\": \"%s\", \"cache_bytes\": %zu, \"tok_s\": "
                        "%.6g, "
                        "\"tok_s_median\": %.6g, \"bytes_per_token\": %.6g, "
                        "\"bandwidth_fraction\": %.6g}",
                        first_json ? "" : ", ", (long long)L, kinds[k], cache_bytes, best, med,
                        bytes_tok, best * bytes_tok / bw);
            first_json = 0;
            fflush(stdout);
            free(tps);
            cb_model_caches_free(&kc);
        }
        free(buf);
        free(ctx_ids);
        cb_graph_free(&g);
        cb_model_caches_free(&base);
    }
    if (jf) {
        fprintf(jf, "]}\n");
        fclose(jf);
    }
    free(prompt);
    free(ids);
    free(dec);
    free(pre);
    free(pdec);
    free(ppre);
    free(ratio);
    cb_model_free(m);
    return 0;
}
