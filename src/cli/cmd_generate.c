/* caramba generate --model M --ids PROMPT.npy --max-new-tokens N --out IDS_OUT.npy
 *
 * Greedy by default (temperature 0); output = prompt + new ids, int32, shape (B, S + n) (or
 * (S + n,) for a 1-D prompt). With --tokenizer, --prompt TEXT replaces --ids and the text is
 * streamed to stdout as tokens are produced. Tokens/s go to stderr. See docs/generate.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/cache_policy.h"
#include "caramba/generate.h"
#include "caramba/gpu_decode.h"
#include "caramba/graph.h"
#include "caramba/npy.h"
#include "caramba/speculative.h"
#include "caramba/tokenizer.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/legacy_infer.h"
#include "cli/model_args.h"

static cb_opt gen_opts[] = {
    {.name = "model", .metavar = "M", .help = "Hugging Face model directory or hf://org/name"},
    {.name = "ids", .metavar = "PROMPT.npy", .help = "prompt ids, int32/int64, (B, S) or (S,)"},
    {.name = "out", .metavar = "IDS_OUT.npy", .help = "where to write prompt + new ids (int32)"},
    {.name = "max-new-tokens", .metavar = "N", .help = "tokens to generate per row (default 64)"},
    {.name = "temperature", .metavar = "T", .help = "sampling temperature; 0 = greedy (default 0)"},
    {.name = "top-k", .metavar = "K", .help = "keep the K most likely tokens (ties kept); 0 = off"},
    {.name = "top-p", .metavar = "P", .help = "nucleus: keep tokens up to cumulative P; 0/1 = off"},
    {.name = "seed", .metavar = "S", .help = "random seed for sampling (default 0)"},
    {.name = "eos-id",
     .metavar = "ID",
     .help = "stop a row at this id: a number, 'model' (config.json), or 'none' (default; 'model' "
             "with --prompt)"},
    {.name = "pad-id", .metavar = "ID", .help = "what finished rows emit (default: the EOS id)"},
    {.name = "max-seq-len",
     .metavar = "N",
     .help = "cache capacity (default: prompt + max-new-tokens)"},
    {.name = "cache-kind",
     .metavar = "KIND",
     .help = "fp32 (default), fp16, q8_0, q4_0, nf4, per tensor (k:q8_0,v:q4_0) or auto"},
    {.name = "cache-residual-len",
     .metavar = "R",
     .help = "fp16 window of the R newest tokens for quantized caches"},
    {.name = "cache-fp16-prefix-layers",
     .metavar = "N",
     .help = "first N attention layers cache in fp16"},
    {.name = "cache-budget-mb", .metavar = "MB", .help = "auto: cache memory budget in MiB"},
    {.name = "cache-candidates",
     .metavar = "LIST",
     .help = "auto: ';'-separated policies in quality order (default fp16;q8_0;nf4;q4_0)"},
    {.name = "cache-max-delta-nll",
     .metavar = "X",
     .help = "auto: quality gate on the NLL increase"},
    {.name = "cache-max-ppl-ratio",
     .metavar = "X",
     .help = "auto: quality gate on the perplexity ratio"},
    {.name = "cache-max-mean-kl", .metavar = "X", .help = "auto: needle-in-a-haystack KL gate"},
    {.name = "cache-auto-benchmark",
     .metavar = NULL,
     .help = "auto: time the candidates, take the fastest"},
    {.name = "cache-plan", .metavar = "PATH", .help = "auto: JSON file that keeps decisions"},
    {.name = "cache-plan-probe",
     .metavar = NULL,
     .help = "auto: re-select when the stored decision is stale"},
    {.name = "cache-plan-interval",
     .metavar = "SEC",
     .help = "auto: staleness interval (default 3600)"},
    {.name = "decode-plan", .metavar = "PLAN", .help = "auto (default), fixed or none"},
    {.name = "decode-q-chunk", .metavar = "N", .help = "fixed plan: query chunk"},
    {.name = "decode-local-window",
     .metavar = "N",
     .help = "fixed plan: sliding window (changes results)"},
    {.name = "prefill-chunk", .metavar = "N", .help = "feed long prompts N tokens at a time"},
    {.name = "draft", .metavar = "MODEL", .help = "speculative decoding with this draft model"},
    {.name = "spec-k", .metavar = "K", .help = "draft tokens per round (default 4)"},
    {.name = "spec-adaptive", .metavar = NULL, .help = "adapt k to the acceptance rate"},
    {.name = "spec-method", .metavar = "M", .help = "reject_sampling (default) or greedy"},
    {.name = "spec-disable-below",
     .metavar = "X",
     .help = "fall back to plain decoding below this acceptance"},
    {.name = "device", .metavar = "DEV", .help = "cpu (default) or cuda"},
    {.name = "tokenizer",
     .metavar = "PATH",
     .help = "tokenizer (tokenizer.json, *.tiktoken, 'bytes'): stream text to stdout"},
    {.name = "encoding",
     .metavar = "NAME",
     .help = "encoding of a .tiktoken file (cl100k_base, llama3, ...)"},
    {.name = "prompt",
     .metavar = "TEXT",
     .help = "prompt text (needs --tokenizer; replaces --ids)"},
    {.name = "bos", .metavar = NULL, .help = "prepend the tokenizer's BOS token to --prompt"},
    {.name = "quiet", .metavar = NULL, .help = "do not print tokens/s to stderr"},
};

#define N_GEN_OPTS ((int)(sizeof gen_opts / sizeof gen_opts[0]))

static int opt_id(cb_cmd_spec *spec, const char *name, const cb_model *m, int64_t def,
                  int64_t *out) {
    cb_opt *o = cb_args_get(spec, name);
    if (!o->present) {
        *out = def;
        return 0;
    }
    if (strcmp(o->value, "none") == 0) {
        *out = -1;
        return 0;
    }
    if (strcmp(o->value, "model") == 0) {
        *out = m->eos_id;
        return 0;
    }
    long long v;
    if (cb_args_int(spec, name, -1, -1, m->vocab_size - 1, &v)) return 1;
    *out = v;
    return 0;
}

static int fopt(cb_cmd_spec *spec, const char *name, double def, double lo, double hi,
                double *out) {
    return cb_args_float(spec, name, def, lo, hi, out);
}

static int iopt(cb_cmd_spec *spec, const char *name, long long def, long long lo, long long hi,
                long long *out) {
    return cb_args_int(spec, name, def, lo, hi, out);
}

/* Batch-1 greedy generation with the GPU decoder (caramba/gpu_decode.h). Other configurations
 * are refused with the reason rather than run differently from what was asked. */
static cb_status generate_gpu(cb_model *m, const cb_generate_config *cfg, bool draft,
                              const int32_t *prompt, int64_t B, int64_t S, int64_t max_new,
                              int32_t *out, int64_t *len, bool quiet) {
    if (B != 1 || cfg->temperature != 0 || draft || cfg->eos_token_id >= 0)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "generate --device cuda runs batch-1 greedy decoding without an eos id (the "
                       "GPU decoder); for batches, sampling, --draft or eos use --device cpu");
    cb_kv_kind kind = CB_KV_FP16;
    if (cfg->cache_kind && *cfg->cache_kind) CB_TRY(cb_kv_kind_parse(cfg->cache_kind, &kind));
    cb_gpu_decoder *d = NULL;
    double t0 = cb_now();
    cb_status st = cb_gpu_decoder_new(&d, m, kind, S + max_new);
    if (st == CB_OK) st = cb_gpu_decoder_prefill(d, prompt, S);
    if (st == CB_OK && max_new > 1) st = cb_gpu_decoder_steps(d, max_new - 1);
    memcpy(out, prompt, sizeof(int32_t) * (size_t)S);
    if (st == CB_OK) st = cb_gpu_decoder_tokens(d, S, max_new, out + S);
    double secs = cb_now() - t0;
    cb_gpu_decoder_free(d);
    if (st != CB_OK) return st;
    *len = S + max_new;
    if (!quiet)
        fprintf(stderr, "generate: 1 x %lld new tokens on cuda in %.3f s (%.1f tokens/s), cache %s\n",
                (long long)max_new, secs, secs > 0 ? (double)max_new / secs : 0.0,
                cb_kv_kind_name(kind));
    return CB_OK;
}

int cb_cmd_generate(int argc, char **argv) {
    for (int i = 0; i < N_GEN_OPTS; i++) {
        gen_opts[i].value = NULL;
        gen_opts[i].present = 0;
        gen_opts[i].n_values = 0;
    }
    cb_cmd_spec spec = {"generate",
                        "--model M (--ids PROMPT.npy | --tokenizer PATH --prompt TEXT) "
                        "[--max-new-tokens N] [--out IDS_OUT.npy] [options]",
                        "Generates tokens with the KV cache: greedy by default, or sampled "
                        "(temperature -> top-k -> top-p), optionally with a speculative draft "
                        "model. Writes prompt + new ids; prints tokens/s to stderr.",
                        gen_opts,
                        N_GEN_OPTS,
                        0,
                        0};
    const char *pos[1];
    int np, r = cb_args_parse(&spec, argc, argv, pos, &np);
    if (r) return r == CB_ARGS_HELP ? 0 : 1;
    const char *model = cb_args_require(&spec, "model");
    if (!model) return 1;
    const char *idsp = cb_args_get(&spec, "ids")->value, *outp = cb_args_get(&spec, "out")->value;
    const char *tokp = cb_args_get(&spec, "tokenizer")->value,
               *prompt = cb_args_get(&spec, "prompt")->value;
    if (prompt && !tokp) {
        fprintf(stderr, "error: caramba generate: --prompt needs --tokenizer\n");
        return 1;
    }
    if (prompt && idsp) {
        fprintf(stderr, "error: caramba generate: give either --ids or --prompt, not both\n");
        return 1;
    }
    if (!prompt && !idsp) {
        fprintf(stderr, "error: caramba generate: --ids PROMPT.npy (or --tokenizer with --prompt "
                        "TEXT) is required\n");
        return 1;
    }
    if (!tokp && !outp) {
        fprintf(stderr,
                "error: caramba generate: --out IDS_OUT.npy is required without --tokenizer\n");
        return 1;
    }
    long long max_new, top_k, seed, resid, prefix, qchunk, lwin, pchunk, speck, maxlen;
    double temp, top_p, budget, dnll, ppl, kl, interval, sdis;
    if (iopt(&spec, "max-new-tokens", 64, 0, 1 << 24, &max_new) ||
        fopt(&spec, "temperature", 0, 0, 1e6, &temp) ||
        iopt(&spec, "top-k", 0, 0, 1 << 30, &top_k) || fopt(&spec, "top-p", 0, 0, 1, &top_p) ||
        iopt(&spec, "seed", 0, 0, INT64_MAX, &seed) ||
        iopt(&spec, "cache-residual-len", 0, 0, 1 << 24, &resid) ||
        iopt(&spec, "cache-fp16-prefix-layers", 0, 0, 1 << 20, &prefix) ||
        fopt(&spec, "cache-budget-mb", -1, 0, 1e12, &budget) ||
        fopt(&spec, "cache-max-delta-nll", -1, 0, 1e9, &dnll) ||
        fopt(&spec, "cache-max-ppl-ratio", -1, 0, 1e9, &ppl) ||
        fopt(&spec, "cache-max-mean-kl", -1, 0, 1e9, &kl) ||
        fopt(&spec, "cache-plan-interval", 3600, 0, 1e12, &interval) ||
        iopt(&spec, "decode-q-chunk", 0, 0, 1 << 24, &qchunk) ||
        iopt(&spec, "decode-local-window", 0, 0, 1 << 24, &lwin) ||
        iopt(&spec, "prefill-chunk", 0, 0, 1 << 24, &pchunk) ||
        iopt(&spec, "spec-k", 4, 1, 64, &speck) ||
        fopt(&spec, "spec-disable-below", 0, 0, 1, &sdis) ||
        iopt(&spec, "max-seq-len", 0, 1, 1 << 24, &maxlen))
        return 1;
    const char *draftp = cb_args_get(&spec, "draft")->value;
    if (!draftp &&
        (cb_args_get(&spec, "spec-k")->present || cb_args_get(&spec, "spec-adaptive")->present ||
         cb_args_get(&spec, "spec-method")->present ||
         cb_args_get(&spec, "spec-disable-below")->present)) {
        fprintf(stderr, "error: caramba generate: --spec-* options need --draft MODEL\n");
        return 1;
    }

    cb_generate_config cfg;
    cb_generate_config_default(&cfg);
    cfg.max_new_tokens = max_new;
    cfg.temperature = (float)temp;
    cfg.top_k = (int)top_k;
    cfg.top_p = (float)top_p;
    cfg.seed = (uint64_t)seed;
    cfg.cache_kind = cb_args_get(&spec, "cache-kind")->value;
    cfg.cache_residual_len = resid;
    cfg.cache_fp16_prefix_layers = (int)prefix;
    cfg.cache_budget_mb = budget;
    cfg.cache_auto_candidates = cb_args_get(&spec, "cache-candidates")->value;
    cfg.cache_quality_max_delta_nll = dnll;
    cfg.cache_quality_max_ppl_ratio = ppl;
    cfg.cache_quality_max_mean_kl = kl;
    cfg.cache_auto_benchmark = cb_args_get(&spec, "cache-auto-benchmark")->present;
    cfg.cache_plan_path = cb_args_get(&spec, "cache-plan")->value;
    cfg.cache_plan_probe = cb_args_get(&spec, "cache-plan-probe")->present;
    cfg.cache_plan_probe_interval_sec = interval;
    cfg.cache_plan_model_id = model;
    cfg.decode_plan = cb_args_get(&spec, "decode-plan")->value;
    cfg.decode_q_chunk = (int)qchunk;
    cfg.decode_local_window = (int)lwin;
    cfg.prefill_chunk = pchunk;
    if (cb_generate_config_validate(&cfg) != CB_OK) { /* bad kind / plan before loading anything */
        fprintf(stderr, "error: caramba generate: %s\n", cb_last_error());
        return 1;
    }

    int rc = 1;
    cb_model *m = NULL, *dm = NULL;
    cb_npy *npy = NULL;
    cb_tokenizer *tok = NULL;
    int32_t *prompt_ids = NULL, *out = NULL;
    cb_ids enc = {0};
    const char *dev = cb_args_get(&spec, "device")->value;
    if (cb_cli_open_model(model, dev, &m)) goto done;
    if (draftp && cb_cli_open_model(draftp, dev, &dm)) goto done;
    if (tokp) {
        if (cb_tokenizer_open(&tok, tokp, cb_args_get(&spec, "encoding")->value) != CB_OK) {
            fprintf(stderr, "error: %s\n", cb_last_error());
            goto done;
        }
    }
    int64_t B, S;
    int in_rank = 2;
    if (prompt) {
        unsigned flags = cb_args_get(&spec, "bos")->present ? CB_TOK_BOS : 0;
        if (cb_tokenizer_encode(tok, prompt, strlen(prompt), flags, &enc) != CB_OK) {
            fprintf(stderr, "error: --prompt: %s\n", cb_last_error());
            goto done;
        }
        if (enc.n == 0) {
            fprintf(stderr, "error: caramba generate: --prompt encodes to no tokens\n");
            goto done;
        }
        for (size_t i = 0; i < enc.n; i++)
            if (enc.data[i] >= m->vocab_size) {
                fprintf(stderr,
                        "error: --prompt: token id %d is outside the model's vocabulary of %lld\n",
                        enc.data[i], (long long)m->vocab_size);
                goto done;
            }
        B = 1;
        S = (int64_t)enc.n;
        in_rank = 1;
        prompt_ids = malloc(sizeof(int32_t) * (size_t)S);
        if (!prompt_ids) goto oom;
        memcpy(prompt_ids, enc.data, sizeof(int32_t) * (size_t)S);
    } else {
        cb_tensor ids;
        if (cb_cli_open_ids(idsp, m, &npy, &ids)) goto done;
        in_rank = npy->ndim;
        B = ids.shape[0];
        S = ids.shape[1];
        prompt_ids = malloc(sizeof(int32_t) * (size_t)(B * S));
        if (!prompt_ids) goto oom;
        for (int64_t i = 0; i < B * S; i++)
            prompt_ids[i] = ids.dtype == CB_I64 ? (int32_t)((const int64_t *)ids.data)[i]
                                                : ((const int32_t *)ids.data)[i];
    }
    int64_t eos;
    if (opt_id(&spec, "eos-id", m, prompt ? m->eos_id : -1, &eos)) goto done;
    if (eos < 0 && prompt && tok && cb_tokenizer_eot_id(tok) >= 0 &&
        !cb_args_get(&spec, "eos-id")->present)
        eos = cb_tokenizer_eot_id(tok);
    int64_t pad;
    if (opt_id(&spec, "pad-id", m, -1, &pad)) goto done;
    cfg.eos_token_id = eos;
    cfg.pad_token_id = pad;
    cfg.max_seq_len = maxlen > 0 ? maxlen : (S + max_new > 1 ? S + max_new : 1);

    const int64_t stride = S + max_new;
    out = malloc(sizeof(int32_t) * (size_t)(B * stride));
    if (!out) goto oom;
    cb_cli_stream stream = {.tok = tok, .out = stdout, .skip_id = eos, .printed = 0};
    bool streaming = tok && B == 1;
    int64_t len = 0;
    cb_status st;
    const bool quiet = cb_args_get(&spec, "quiet")->present;
    if (m->device == CB_CUDA) {
        /* On the GPU, generation runs through the batch-1 greedy decoder (one CUDA graph per
         * token, KV cache in device memory); the general generator keeps its caches in host
         * memory and runs on the CPU. */
        st = generate_gpu(m, &cfg, dm != NULL, prompt_ids, B, S, max_new, out, &len, quiet);
    } else if (dm) {
        cb_spec_config sc;
        cb_spec_config_default(&sc);
        sc.gen = cfg;
        sc.spec_k = (int)speck;
        sc.spec_k_adaptive = cb_args_get(&spec, "spec-adaptive")->present;
        sc.spec_method = cb_args_get(&spec, "spec-method")->value;
        sc.spec_disable_below_accept = sdis;
        if (sc.spec_k > sc.spec_k_max) sc.spec_k_max = sc.spec_k;
        cb_spec_stats ss;
        st = cb_speculative_generate(m, dm, &sc, prompt_ids, B, S, out, &len, &ss,
                                     streaming ? cb_cli_stream_token : NULL, &stream);
        if (st == CB_OK && !quiet)
            fprintf(
                stderr,
                "generate: %lld x %lld new tokens in %.3f s (%.1f tokens/s), speculative k=%d%s: "
                "acceptance %.3f (%lld/%lld), %lld target / %lld draft forwards%s\n",
                (long long)B, (long long)(len - S), ss.seconds,
                ss.seconds > 0 ? (double)(B * (len - S)) / ss.seconds : 0.0, ss.k_final,
                sc.spec_k_adaptive ? " (adaptive)" : "", ss.acceptance_rate,
                (long long)ss.accept_total, (long long)ss.propose_total,
                (long long)ss.target_forwards, (long long)ss.draft_forwards,
                ss.fell_back ? ", fell back to plain decoding" : "");
    } else {
        cb_generator *g = NULL;
        st = cb_generator_new(&g, m, &cfg);
        if (st == CB_OK)
            st = cb_generator_generate(g, prompt_ids, B, S, out, &len,
                                       streaming ? cb_cli_stream_token : NULL, &stream);
        if (st == CB_OK && !quiet) {
            cb_generate_stats gs = cb_generator_stats(g);
            double dec = gs.decode_s + gs.sample_s;
            fprintf(
                stderr,
                "generate: %lld x %lld new tokens; prefill %lld tokens in %.3f s (%.1f tokens/s); "
                "decode %.1f tokens/s; cache %s, %.2f MiB\n",
                (long long)B, (long long)(len - S), (long long)(B * S), gs.prefill_s,
                gs.prefill_s > 0 ? (double)(B * S) / gs.prefill_s : 0.0,
                dec > 0 ? (double)(B * gs.decode_tokens) / dec : 0.0, cb_generator_cache_policy(g),
                (double)cb_generator_cache_bytes(g) / 1048576.0);
        }
        cb_generator_free(g);
    }
    if (streaming && stream.printed) {
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (st != CB_OK) {
        fprintf(stderr, "error: %s\n", cb_last_error());
        goto done;
    }
    if (outp) {
        /* compact rows of the final length */
        for (int64_t b = 1; b < B; b++)
            memmove(out + b * len, out + b * stride, sizeof(int32_t) * (size_t)len);
        cb_tensor t;
        int64_t sh2[2] = {B, len}, sh1[1] = {len};
        cb_tensor_init(&t, CB_I32, CB_CPU, in_rank == 1 ? 1 : 2, in_rank == 1 ? sh1 : sh2, out);
        if (cb_npy_write(outp, &t) != CB_OK) {
            fprintf(stderr, "error: %s\n", cb_last_error());
            goto done;
        }
    }
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "error: caramba generate: out of memory\n");
done:
    free(out);
    free(prompt_ids);
    cb_ids_free(&enc);
    cb_tokenizer_free(tok);
    cb_npy_close(npy);
    cb_model_free(dm);
    cb_model_free(m);
    return rc;
}
