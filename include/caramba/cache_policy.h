/* cache_kind "auto" (spec-infer §12): budget filter, quality gates (teacher-forced delta NLL /
 * perplexity ratio, and a needle-in-a-haystack KL gate with a real needle), optional
 * micro-benchmark, and the decision persisted as JSON keyed by model, device, dtype and
 * candidates, re-probed after an interval. The JSON schema is in docs/generate.md.
 *
 * Candidates are cache policies (cb_kv_policy texts), so per-tensor mixes such as
 * "k:q8_0,v:q4_0" can be chosen too. The quality baseline is the exact cache ("fp32"). */
#ifndef CARAMBA_CACHE_POLICY_H
#define CARAMBA_CACHE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/generate.h"
#include "caramba/model.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CB_CACHE_MAX_CANDIDATES 8
#define CB_CACHE_DEFAULT_CANDIDATES "fp16;q8_0;nf4;q4_0"
#define CB_CACHE_BASELINE "fp32"

typedef struct cb_cache_candidate {
    char policy[96];
    size_t bytes;     /* exact cache bytes at max_seq_len (windows, prefix layers included) */
    bool fits;        /* within the budget (true when there is none) */
    bool gated;       /* quality gates ran on it */
    bool passed;      /* passed every gate that is set (true when none ran) */
    double delta_nll; /* candidate - baseline mean NLL (NAN when not run) */
    double ppl_ratio; /* exp(delta_nll) */
    double mean_kl;   /* needle gate: mean over decode steps of KL(baseline || candidate) */
    double max_kl;
    double needle_hit; /* fraction of needle tokens the candidate ranks first (NAN when not run) */
    double tps;        /* micro-benchmark decode tokens/s (NAN when not run) */
    char error[160];   /* a probe that failed (the candidate is then dropped, and said so) */
} cb_cache_candidate;

typedef struct cb_cache_decision {
    char policy[96]; /* the chosen policy text */
    char source[16]; /* "default", "bench", "plan", "budget", "gates_failed" */
    double tps;      /* NAN when unknown */
    char key[17];    /* plan key (16 hex digits), "" when no plan path */
    int n_candidates;
    cb_cache_candidate cand[CB_CACHE_MAX_CANDIDATES];
    char note[256]; /* what a user should know: nothing fit the budget, no candidate passed the
                       gates, the plan file could not be written, ... ("" when nothing) */
} cb_cache_decision;

/* Resolves cfg->cache_kind. A non-auto kind is returned as is (source "default"). For "auto":
 * (1) keep candidates whose exact bytes fit cache_budget_mb (none fits: the smallest, source
 * "budget"); (2) a fresh persisted decision is returned (source "plan"); (3) quality gates when
 * any threshold is set (none passes: the first candidate that fit, source "gates_failed", with a
 * note); (4) the micro-benchmark when enabled (source "bench"), else the first remaining
 * candidate; the result is persisted when cache_plan_path is set. Deterministic for a given
 * cfg->seed (the probe prompts are seeded). */
cb_status cb_cache_policy_resolve(cb_model *m, int64_t batch, const cb_generate_config *cfg,
                                  cb_cache_decision *out);

/* Budget-only choice (the original's choose_cache_kind): the first candidate within the budget,
 * else the smallest; no budget: the first candidate. */
cb_status cb_cache_choose_by_budget(const cb_model *m, int64_t batch, const cb_generate_config *cfg,
                                    cb_cache_decision *out);

/* ---- quality probes ------------------------------------------------------------------------ */

typedef struct cb_cache_fidelity {
    double baseline_nll, candidate_nll, delta_nll, ppl_ratio;
} cb_cache_fidelity;

/* Teacher-forced NLL with caches of each policy: prefill tokens[:, :P] (P = clamp(prompt_len,
 * 1, T-1)), score the next token, then feed tokens P..T-2 one at a time scoring each next token;
 * mean over the T-P steps and the batch. tokens [B][T]. cfg supplies max_seq_len (>= T),
 * residual_len and fp16_prefix_layers. */
cb_status cb_cache_fidelity_check(cb_model *m, const cb_generate_config *cfg, const char *baseline,
                                  const char *candidate, const int32_t *tokens, int64_t B,
                                  int64_t T, int64_t prompt_len, cb_cache_fidelity *out);
/* Same, for long prompts: an error unless T >= prompt_len + 1. */
cb_status cb_cache_long_context_check(cb_model *m, const cb_generate_config *cfg,
                                      const char *baseline, const char *candidate,
                                      const int32_t *tokens, int64_t B, int64_t T,
                                      int64_t prompt_len, cb_cache_fidelity *out);

typedef struct cb_needle_result {
    double mean_kl, max_kl;    /* KL(baseline || candidate) per step, over the needle's tokens */
    double base_hit, cand_hit; /* fraction of needle value tokens ranked first */
    int64_t needle_pos;        /* where the needle (key + value) was planted */
    int steps;
} cb_needle_result;

/* Builds a haystack prompt [B][P] of seeded random tokens with a needle planted in it: a key of
 * 2 tokens followed by a value of `steps` tokens at about a fifth of the prompt, and the key
 * again at the end of the prompt, so the continuation should be the value. value [B][steps]
 * receives it. Tokens are drawn from [0, vocab) avoiding the key tokens. Needs P >= steps + 5. */
cb_status cb_cache_needle_prompt(uint64_t seed, int64_t vocab, int64_t B, int64_t P, int steps,
                                 int32_t *prompt, int32_t *value, int64_t *needle_pos);
/* Prefills the needle prompt into a baseline and a candidate cache, then feeds the needle value
 * teacher-forced: at each of the `steps` positions KL(p_base || p_cand) of the next-token
 * distributions (temperature 1, no filters) is measured. P + steps <= max_seq_len, else P is
 * shortened to fit. */
cb_status cb_cache_needle_gate(cb_model *m, const cb_generate_config *cfg, const char *baseline,
                               const char *candidate, int64_t B, int64_t prompt_len, int steps,
                               uint64_t seed, cb_needle_result *out);

/* Decode tokens/s of a policy: prefill a seeded random prompt, one untimed warm-up step, then
 * `steps` greedy steps timed (prefill excluded). */
cb_status cb_cache_bench(cb_model *m, const cb_generate_config *cfg, const char *policy, int64_t B,
                         int64_t prompt_len, int steps, uint64_t seed, double *tps);

/* ---- persisted decisions ------------------------------------------------------------------ */

typedef struct cb_cache_plan_entry {
    char cache_kind[96];
    bool has_ts;
    double ts; /* unix seconds */
    bool has_tps;
    double tps;
    char source[16];
} cb_cache_plan_entry;

/* The key payload of a resolve call, as canonical JSON (keys sorted recursively, no spaces):
 * model identity + shape, device, dtype, candidates, batch, max_seq_len, qblock, residual_len,
 * fp16_prefix_layers, budget, gate thresholds and probe sizes, benchmark settings, seed.
 * Heap string (free()). */
char *cb_cache_plan_payload(const cb_model *m, int64_t batch, const cb_generate_config *cfg);
/* First 16 hex digits of SHA-1 of the canonical form of a JSON text (the original's key
 * function). Fails on malformed JSON. */
cb_status cb_cache_plan_key_of_json(const char *json, char key[17]);
/* Canonical form of a JSON text: sorted keys, "," and ":" separators, non-ASCII kept, integers
 * without a fraction. Heap string. */
cb_status cb_json_canonicalize(const char *json, char **out);
void cb_sha1(const void *data, size_t n, uint8_t digest[20]);

/* Loads the entry stored under key. *found = false on any read/parse problem or a missing,
 * malformed or unknown-kind entry (the file is a cache, not an input). */
cb_status cb_cache_plan_load(const char *path, const char *key, cb_cache_plan_entry *e,
                             bool *found);
/* Read-modify-write of {"plans": {key: entry}, "version": 1}, written atomically (temp file +
 * rename), parent directories created. payload (may be NULL) is stored beside the entry so a
 * reader can see what the key stands for. */
cb_status cb_cache_plan_save(const char *path, const char *key, const cb_cache_plan_entry *e,
                             const char *payload);
/* interval = max(0, interval_sec); stale when interval == 0, no ts, or now - ts >= interval. */
bool cb_cache_plan_stale(const cb_cache_plan_entry *e, double interval_sec, double now);

#ifdef __cplusplus
}
#endif
#endif
