/* Speculative decoding (spec-infer §13): a draft model proposes k tokens, the target verifies
 * them in one forward, rejection sampling keeps the output distributed exactly as sampling from
 * the target with the same temperature / top-k / top-p; greedy variant; the extra token on full
 * acceptance; adaptive k; fall-back to plain decoding below an acceptance threshold.
 *
 * Fixes over the original (§13.6): correct when every draft token is accepted (B1: the original
 * crashed), the next round verifies against fresh target logits (B2), rows of a batch are run
 * independently (B3), verified tokens are never fed twice (B4), top_p is honoured in every step
 * (B5). Rejected tokens are rolled back in both caches with truncate. */
#ifndef CARAMBA_SPECULATIVE_H
#define CARAMBA_SPECULATIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "caramba/generate.h"
#include "caramba/model.h"
#include "caramba/rng.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_spec_config {
    cb_generate_config gen;  /* sampling, EOS, max_seq_len, target cache policy ("auto" ok) */
    int spec_k;              /* 4: initial draft length */
    const char *spec_method; /* "reject_sampling" (default) | "greedy": accept a draft token iff
                                it is the target's argmax (output = greedy decoding) */
    bool spec_extra_token;   /* true: on full acceptance also emit a token from the target's
                                last verified position (free: its logits are already there) */
    double spec_disable_below_accept; /* 0: > 0 falls back to plain decoding for the rest of the
                                         call once acceptance < this after more than 10 proposals */
    bool spec_k_adaptive;             /* false */
    int spec_k_min;                   /* 1 */
    int spec_k_max;                   /* 16 */
    double spec_k_target_accept;      /* 0.7 */
    int spec_k_adjust_interval;       /* 32 proposals between adjustments */
    int spec_k_step;                  /* 1 */
    const char *draft_cache_kind;     /* NULL: the target's resolved policy */
} cb_spec_config;

typedef struct cb_spec_stats {
    int64_t accept_total;   /* draft tokens accepted */
    int64_t propose_total;  /* draft tokens proposed */
    double acceptance_rate; /* accept / propose; 1.0 when nothing was proposed */
    int64_t rounds;         /* speculative rounds */
    int64_t full_accepts;   /* rounds where every draft token was accepted */
    int64_t plain_steps;    /* tokens produced by plain target steps (fallback, last token) */
    int k_final;            /* k after adaptation (last row) */
    bool fell_back;         /* the acceptance threshold switched speculation off */
    int64_t target_forwards, draft_forwards;
    int64_t target_cache_len, draft_cache_len; /* at the end (last row): output length - 1 at
                                                  most; the last token is never fed */
    double seconds;                            /* wall time of the whole call */
} cb_spec_stats;

void cb_spec_config_default(cb_spec_config *c);
cb_status cb_spec_config_validate(const cb_spec_config *c);

/* A reusable decoder: both generators, their caches and all scratch live across calls, so
 * repeated generations allocate nothing new. The random stream continues across calls. */
typedef struct cb_spec_decoder cb_spec_decoder;
cb_status cb_spec_decoder_new(cb_spec_decoder **out, cb_model *target, cb_model *draft,
                              const cb_spec_config *cfg);
void cb_spec_decoder_free(cb_spec_decoder *sd);
void cb_spec_decoder_seed(cb_spec_decoder *sd, uint64_t seed);
/* As cb_speculative_generate (stats are those of this call; adaptive k and the fall-back start
 * afresh each call). */
cb_status cb_spec_decoder_generate(cb_spec_decoder *sd, const int32_t *prompt, int64_t B, int64_t S,
                                   int32_t *out, int64_t *out_len, cb_spec_stats *stats,
                                   cb_token_fn fn, void *user);

/* One-shot: a decoder for this call. prompt [B][S] -> out [B][S + max_new_tokens] (row stride S +
 * max_new_tokens), *out_len = S + the most tokens any row produced (shorter rows padded). Target
 * and draft must share the vocabulary. Rows are generated one after another, each with its own
 * caches, from one seeded random stream. fn (may be NULL) is called per token when B == 1, else per
 * step at the end. */
cb_status cb_speculative_generate(cb_model *target, cb_model *draft, const cb_spec_config *cfg,
                                  const int32_t *prompt, int64_t B, int64_t S, int32_t *out,
                                  int64_t *out_len, cb_spec_stats *stats, cb_token_fn fn,
                                  void *user);

/* One verification (Leviathan et al. 2023 / Chen et al. 2023), exposed for tests.
 * p [k+1][V]: the target's sampling distributions at the k draft positions and the one after;
 * q [k][V]: the draft's; draft [k]: the proposed tokens (drawn from q). Greedy: accept while
 * draft[i] == argmax p[i]. Returns the number accepted a (0..k); *next is the token after them:
 * drawn from normalise(max(p[a] - q[a], 0)) on a rejection (from p[a] when that has no mass),
 * from p[k] on full acceptance when extra_token, else *has_next = false. scratch [V]. */
int cb_spec_verify(const float *p, const float *q, const int32_t *draft, int k, int64_t V,
                   bool greedy, bool extra_token, cb_rng *rng, float *scratch, int32_t *next,
                   bool *has_next);

#ifdef __cplusplus
}
#endif
#endif
