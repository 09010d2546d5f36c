/* Autoregressive generation: sampling, a stateful generator that owns its KV caches, the
 * stateless generate(), and the decode plan. Reference behaviour: spec-infer §10-§12, with the
 * fixes of §16 (see docs/generate.md for every field and every difference from the original).
 *
 * Token ids are int32 everywhere; batches are row-major [B][T]. Logits handed out are f32 host
 * memory [B][V] (last position) or [B][T][V] (every position of a feed). */
#ifndef CARAMBA_GENERATE_H
#define CARAMBA_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/model.h"
#include "caramba/rng.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration (spec-infer §10.2) -------------------------------------------------------
 * Sentinels: an int/float field documented as "none" is off when 0 (top_k, q_chunk, window) or
 * negative (eos/pad ids, budgets, quality thresholds). Fill with cb_generate_config_default(). */
typedef struct cb_generate_config {
    int64_t max_new_tokens; /* 64 */
    float temperature;      /* 1.0; <= 0: greedy (top_k / top_p ignored) */
    int top_k;              /* 0: off. Ties with the k-th value are kept. */
    float top_p;            /* 0 or >= 1: off; nucleus over the top-k-filtered distribution */
    int64_t eos_token_id;   /* -1: none. A row that samples it is finished; see pad_token_id */
    int64_t pad_token_id;   /* -1: eos_token_id. What finished rows emit (and are fed) */
    int64_t max_seq_len;    /* 2048: cache capacity in tokens (hard limit, checked up front) */
    uint64_t seed;          /* sampling stream (cb_rng); also seeds the auto policy's probes */

    /* KV cache (§5.4, §12). cache_kind: a policy text as cb_kv_policy_parse ("fp32", "q8_0",
     * "k:q8_0,v:q4_0", "k_sem:q4_0,k_geo:q8_0,v:q4_0") or "auto". NULL: "fp32" (the model's
     * compute precision on the CPU, so decode reads the same K/V as prefill). */
    const char *cache_kind;
    int cache_qblock; /* 32; the cache formats use blocks of 32 (<= 0: 32; others: error) */
    int64_t cache_residual_len;   /* 0: fp16 window of the most recent tokens (quantized kinds) */
    int cache_fp16_prefix_layers; /* 0: the first N attention layers use fp16 whatever the kind */
    double cache_budget_mb;       /* -1: none. auto: memory budget in MiB */
    bool cache_auto_benchmark;    /* false: auto micro-benchmarks the candidates */
    int cache_auto_bench_steps;   /* 8 (<= 0 disables the benchmark) */
    int cache_auto_bench_prompt_len;      /* 64 */
    double cache_quality_max_delta_nll;   /* -1: none. auto gate */
    double cache_quality_max_ppl_ratio;   /* -1: none. auto gate */
    double cache_quality_max_mean_kl;     /* -1: none. auto needle gate */
    int cache_quality_prompt_len;         /* 64 */
    int cache_quality_decode_steps;       /* 4 */
    const char *cache_plan_path;          /* NULL: decisions are not persisted */
    bool cache_plan_probe;                /* false: re-select when the stored entry is stale */
    double cache_plan_probe_interval_sec; /* 3600 */
    /* auto candidates in quality order, ';'-separated policy texts. NULL: "fp16;q8_0;nf4;q4_0". */
    const char *cache_auto_candidates;
    /* identity of the model in the plan key (e.g. its resolved path); NULL: "caramba". The key
     * also holds the model's shape, the device, the dtype and the candidates. */
    const char *cache_plan_model_id;

    /* diffusion head sampling (Generator only in the original). cb_model has no diffusion head:
     * use_diffusion = true fails with CB_ERR_UNSUPPORTED. */
    bool use_diffusion;
    double diffusion_guidance_scale; /* -1: none */

    /* decode plan (§11): "auto" | "fixed" | "none" (also "off", "disabled"); NULL: "auto" */
    const char *decode_plan;
    int decode_q_chunk;           /* fixed: 0 = none */
    int decode_local_window;      /* fixed: 0 = none */
    int64_t decode_bucket_short;  /* 512: auto below -> no overrides */
    int64_t decode_bucket_mid;    /* 2048: auto below -> mid bucket */
    int decode_q_chunk_mid;       /* 128 */
    int decode_q_chunk_long;      /* 64 */
    int decode_local_window_long; /* 0 (none). The original's 2048 silently turned long contexts
                                     into sliding-window attention; opt in by setting it. */

    /* Prompts longer than this are fed in chunks of this many tokens (0: one forward). Bounds
     * the activation arena for long prompts. */
    int64_t prefill_chunk;
} cb_generate_config;

void cb_generate_config_default(cb_generate_config *c);
/* Range checks (negative max_new_tokens, top_p outside [0, 1], qblock other than 32, a bad
 * decode plan or cache kind, ...). Errors name the field. */
cb_status cb_generate_config_validate(const cb_generate_config *c);
/* Token that finished rows emit: pad_token_id, else eos_token_id, else 0. */
int32_t cb_generate_pad_id(const cb_generate_config *c);

/* ---- sampling (§10.1): temperature -> top-k -> top-p ----------------------------------------- */

/* Scratch for one row of V logits (allocated once, reused every step). */
typedef struct cb_token_sampler {
    int64_t vocab;
    float *probs;   /* [V] */
    int32_t *order; /* [V] */
} cb_token_sampler;

cb_status cb_token_sampler_init(cb_token_sampler *s, int64_t vocab);
void cb_token_sampler_free(cb_token_sampler *s);
/* The distribution sampling draws from, into s->probs [V] (sums to 1): one-hot at the first
 * argmax when temperature <= 0, else softmax(logits / T) restricted by top_k (ties with the k-th
 * largest kept) and then by top_p (keep the most probable tokens up to and including the first
 * whose cumulative probability strictly exceeds top_p), renormalised. */
cb_status cb_token_sampler_probs(cb_token_sampler *s, const float *logits, float temperature,
                                 int top_k, float top_p);
/* Draws one token. Greedy (temperature <= 0) draws no random number. */
int32_t cb_token_sampler_sample(cb_token_sampler *s, const float *logits, float temperature,
                                int top_k, float top_p, cb_rng *rng);
/* Index drawn from probs[0..n) (any non-negative weights, normalised here) with one uniform. */
int32_t cb_sample_from(const float *probs, int64_t n, cb_rng *rng);
/* First index of the largest value. */
int32_t cb_argmax(const float *x, int64_t n);
/* Uniform double in [0, 1) with 53 random bits. */
double cb_rng_uniform53(cb_rng *r);

/* ---- decode plan (§11) ---------------------------------------------------------------------- */

typedef enum cb_decode_plan_mode {
    CB_DECODE_PLAN_AUTO = 0,
    CB_DECODE_PLAN_FIXED,
    CB_DECODE_PLAN_NONE
} cb_decode_plan_mode;

typedef struct cb_decode_plan {
    int q_chunk;      /* 0: none */
    int local_window; /* 0: none */
} cb_decode_plan;

/* "auto", "fixed", "none"/"off"/"disabled" (case-insensitive); NULL -> auto. Anything else is an
 * error (the original treated typos as auto). */
cb_status cb_decode_plan_mode_parse(const char *text, cb_decode_plan_mode *out);
/* Plan for a forward whose last query sits at position p (for a one-token decode step p is the
 * cache length before the step, as in the original; a prefill of T tokens at pos gets the plan
 * of p = pos + T - 1, so long prompts are planned too). */
cb_decode_plan cb_decode_plan_for_pos(const cb_generate_config *c, cb_decode_plan_mode mode,
                                      int64_t p);

/* ---- stateful generator (§10.4) ------------------------------------------------------------- */

typedef struct cb_generator cb_generator;

/* Called after every sampling step with the B tokens just produced (finished rows show the pad
 * token). Return nonzero to stop generating (the tokens of this step are kept). */
typedef int (*cb_token_fn)(void *user, int64_t step, const int32_t *tokens, int64_t batch);

/* The generator keeps m (not owned) and a copy of cfg (strings copied). Caches are created on
 * the first feed (the policy resolved then, "auto" included) and reused by later calls. */
cb_status cb_generator_new(cb_generator **out, cb_model *m, const cb_generate_config *cfg);
void cb_generator_free(cb_generator *g);
/* Empties the caches (keeps their memory), position 0, no pending token. */
void cb_generator_reset(cb_generator *g);
void cb_generator_seed(cb_generator *g, uint64_t seed);
/* Feeds ids [B][T] at the current position (a prefill when the cache is empty, a decode step
 * when T == 1, a verification block otherwise): the caches grow by T. The batch is fixed by the
 * first feed after creation (a reset with no tokens lets it change). all_logits (may be NULL)
 * receives [B][T][V] host logits valid until the next call on g. On failure the caches are
 * rolled back to where they were. */
cb_status cb_generator_feed(cb_generator *g, const int32_t *ids, int64_t B, int64_t T,
                            const float **all_logits);
/* Logits [B][V] of the last position fed (NULL before any feed or after a rollback). */
const float *cb_generator_logits(const cb_generator *g);
/* Samples one token per row from cb_generator_logits with the configured sampler (no feed). */
cb_status cb_generator_sample(cb_generator *g, int32_t *tokens);
/* Drops the last n positions from every cache (truncate); a pending token is dropped too. */
cb_status cb_generator_rollback(cb_generator *g, int64_t n);
int64_t cb_generator_pos(const cb_generator *g);   /* tokens in the caches */
int64_t cb_generator_batch(const cb_generator *g); /* 0 before the first feed */
/* Sampled tokens not yet in the caches (the last token of a generate call is not fed: feeding it
 * would cost a forward nobody needs). 0 or 1 per row; continue feeds it first. */
bool cb_generator_has_pending(const cb_generator *g);
/* The cache policy in use ("q8_0,v:q4_0", or the auto decision); "" before the first feed. */
const char *cb_generator_cache_policy(const cb_generator *g);
/* Bytes the caches hold now (allocated), and the inference context (caches, positions). */
size_t cb_generator_cache_bytes(const cb_generator *g);
cb_infer_ctx *cb_generator_ctx(cb_generator *g);
const cb_generate_config *cb_generator_config(const cb_generator *g);

/* Wall-clock accounting since the generator was created (or cb_generator_stats_clear). */
typedef struct cb_generate_stats {
    int64_t prefill_tokens; /* tokens fed in feeds of more than one token per row */
    double prefill_s;
    int64_t decode_tokens; /* one-token feeds (per row) */
    double decode_s;
    int64_t sampled; /* sampling steps */
    double sample_s;
} cb_generate_stats;
cb_generate_stats cb_generator_stats(const cb_generator *g);
void cb_generator_stats_clear(cb_generator *g);

/* Reset, feed the prompt [B][S], then sample up to max_new_tokens per row. out [B][S + max_new]
 * receives prompt + new tokens (row stride S + max_new_tokens; positions past *out_len are
 * filled with the pad token). *out_len = S + steps run: generation stops early only when every
 * row has finished (EOS) or the callback asks. Needs S + max_new_tokens - 1 <= max_seq_len. */
cb_status cb_generator_generate(cb_generator *g, const int32_t *prompt, int64_t B, int64_t S,
                                int32_t *out, int64_t *out_len, cb_token_fn fn, void *user);
/* Continues the context: feeds the pending token (if any) and ids [B][T] (T may be 0 when a
 * pending token exists), then samples up to max_new new tokens into out_new [B][max_new] (row
 * stride max_new). *n_new = steps run. max_new < 0: the config's max_new_tokens. */
cb_status cb_generator_continue(cb_generator *g, const int32_t *ids, int64_t B, int64_t T,
                                int64_t max_new, int32_t *out_new, int64_t *n_new, cb_token_fn fn,
                                void *user);

/* ---- stateless generate (§10.3) ------------------------------------------------------------- */

/* Same contract as cb_generator_generate with a generator that lives for this call. */
cb_status cb_generate(cb_model *m, const cb_generate_config *cfg, const int32_t *prompt, int64_t B,
                      int64_t S, int32_t *out, int64_t *out_len, cb_token_fn fn, void *user);

/* ---- caches --------------------------------------------------------------------------------- */

/* One layer cache per attention layer of m under the policy: residual_len as the fp16 window of
 * quantized tensors, the first fp16_prefix_layers layers forced to fp16, capacity growing by
 * doubling up to max_len. */
cb_status cb_infer_caches_new(const cb_model *m, int64_t batch, int64_t max_len,
                              const cb_kv_policy *policy, int64_t residual_len,
                              int fp16_prefix_layers, cb_infer_ctx *ctx);
/* Exact bytes those caches hold at full capacity (max_len), windows included. */
size_t cb_infer_caches_estimate(const cb_model *m, int64_t batch, int64_t max_len,
                                const cb_kv_policy *policy, int64_t residual_len,
                                int fp16_prefix_layers);
/* Truncates every cache of ctx to len tokens. */
cb_status cb_infer_caches_truncate(cb_infer_ctx *ctx, int64_t len);
/* Grows every cache's capacity so that n tokens fit (no reallocation until then). */
cb_status cb_infer_caches_reserve(cb_infer_ctx *ctx, int64_t n);
size_t cb_infer_caches_bytes(const cb_infer_ctx *ctx);
int64_t cb_infer_caches_len(const cb_infer_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
