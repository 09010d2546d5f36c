/* Speculative decoding (spec-infer §13) with the fixes of §13.6.
 *
 * Per row (B = 1 each), with L tokens of output so far, the target cache holds L - 1 tokens
 * (the last token is "pending") and the draft cache at most that many:
 *   draft:  feed out[fed_d .. L) -> q_0, d_0 ~ q_0; feed d_{j-1} -> q_j, d_j ~ q_j  (j < k)
 *   target: feed [out[L-1], d_0 .. d_{k-1}]  -> p_0 .. p_k          (one forward, T = k + 1)
 *   verify: a accepted, next ~ residual(p_a - q_a) or p_k          (cb_spec_verify)
 *   out += d_0 .. d_{a-1}, next; truncate target to L + a, draft to min(L + k - 1, L + a).
 * Full acceptance needs no special case: the target already holds L + k tokens, the draft
 * L + k - 1 and feeds d_{k-1} and next at the start of the next round. Every round's p_0 comes
 * from the forward of that round, so nothing is stale, and no verified token is fed twice.
 *
 *   p [k+1][V], q [k][V]: sampling distributions after temperature -> top-k -> top-p. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "caramba/cache_policy.h"
#include "caramba/speculative.h"

void cb_spec_config_default(cb_spec_config *c) {
    memset(c, 0, sizeof *c);
    cb_generate_config_default(&c->gen);
    c->spec_k = 4;
    c->spec_method = NULL;
    c->spec_extra_token = true;
    c->spec_disable_below_accept = 0;
    c->spec_k_adaptive = false;
    c->spec_k_min = 1;
    c->spec_k_max = 16;
    c->spec_k_target_accept = 0.7;
    c->spec_k_adjust_interval = 32;
    c->spec_k_step = 1;
    c->draft_cache_kind = NULL;
}

static cb_status method_greedy(const char *m, bool *greedy) {
    if (!m || strcasecmp(m, "reject_sampling") == 0 || strcasecmp(m, "rejection") == 0)
        *greedy = false;
    else if (strcasecmp(m, "greedy") == 0)
        *greedy = true;
    else
        return cb_fail(CB_ERR_ARG, "speculative: spec_method '%s' is not reject_sampling or greedy",
                       m);
    return CB_OK;
}

cb_status cb_spec_config_validate(const cb_spec_config *c) {
    CB_TRY(cb_generate_config_validate(&c->gen));
    bool g;
    CB_TRY(method_greedy(c->spec_method, &g));
    if (c->spec_k < 1)
        return cb_fail(CB_ERR_ARG, "speculative: spec_k must be >= 1, got %d", c->spec_k);
    if (c->spec_k_min < 1 || c->spec_k_max < c->spec_k_min)
        return cb_fail(CB_ERR_ARG, "speculative: need 1 <= spec_k_min (%d) <= spec_k_max (%d)",
                       c->spec_k_min, c->spec_k_max);
    if (c->spec_k_adjust_interval < 1 || c->spec_k_step < 1)
        return cb_fail(CB_ERR_ARG,
                       "speculative: spec_k_adjust_interval and spec_k_step must be >= 1");
    if (!(c->spec_disable_below_accept >= 0 && c->spec_disable_below_accept <= 1))
        return cb_fail(CB_ERR_ARG, "speculative: spec_disable_below_accept must be in [0, 1]");
    if (!(c->spec_k_target_accept >= 0 && c->spec_k_target_accept <= 1))
        return cb_fail(CB_ERR_ARG, "speculative: spec_k_target_accept must be in [0, 1]");
    if (c->draft_cache_kind) {
        cb_kv_policy p;
        CB_TRY(cb_kv_policy_parse(c->draft_cache_kind, &p));
        if (p.is_auto) return cb_fail(CB_ERR_ARG, "speculative: draft_cache_kind cannot be 'auto'");
    }
    return CB_OK;
}

int cb_spec_verify(const float *p, const float *q, const int32_t *draft, int k, int64_t V,
                   bool greedy, bool extra_token, cb_rng *rng, float *scratch, int32_t *next,
                   bool *has_next) {
    *has_next = true;
    for (int i = 0; i < k; i++) {
        const float *pi = p + (size_t)i * (size_t)V, *qi = q ? q + (size_t)i * (size_t)V : NULL;
        int32_t x = draft[i];
        if (greedy) {
            int32_t best = cb_argmax(pi, V);
            if (x == best) continue;
            *next = best;
            return i;
        }
        double px = pi[x], qx = qi[x];
        double ratio = qx > 0 ? px / qx : 1.0;
        if (cb_rng_uniform53(rng) < ratio) continue; /* accepted with probability min(1, p/q) */
        double mass = 0;
        for (int64_t v = 0; v < V; v++) {
            float r = pi[v] - qi[v];
            scratch[v] = r > 0 ? r : 0;
            mass += scratch[v];
        }
        *next = mass > 1e-12 && isfinite(mass) ? cb_sample_from(scratch, V, rng)
                                               : cb_sample_from(pi, V, rng);
        return i;
    }
    if (!extra_token) {
        *has_next = false;
        return k;
    }
    const float *pk = p + (size_t)k * (size_t)V;
    *next = greedy ? cb_argmax(pk, V) : cb_sample_from(pk, V, rng);
    return k;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct spec_state {
    const cb_spec_config *cfg;
    bool greedy;
    int64_t V;
    cb_generator *tg, *dg;
    cb_token_sampler smp;
    float *p, *q, *scratch; /* [(kmax+1) V], [kmax V], [V] */
    int32_t *blk;           /* [kmax + 1] */
    cb_rng rng;
    int k;
    int64_t last_adjust;
    bool disabled;
    cb_spec_stats *st;
} spec_state;

static double rate(const cb_spec_stats *s) {
    return s->propose_total ? (double)s->accept_total / (double)s->propose_total : 1.0;
}

static void adapt_k(spec_state *S) {
    const cb_spec_config *c = S->cfg;
    cb_spec_stats *s = S->st;
    if (!c->spec_k_adaptive) return;
    if (s->propose_total < c->spec_k_adjust_interval ||
        s->propose_total - S->last_adjust < c->spec_k_adjust_interval)
        return;
    double r = rate(s), hi = fmin(0.99, c->spec_k_target_accept + 0.1),
           lo = fmax(0.0, c->spec_k_target_accept - 0.1);
    if (r >= hi)
        S->k = S->k + c->spec_k_step > c->spec_k_max ? c->spec_k_max : S->k + c->spec_k_step;
    else if (r <= lo)
        S->k = S->k - c->spec_k_step < c->spec_k_min ? c->spec_k_min : S->k - c->spec_k_step;
    S->last_adjust = s->propose_total;
}

/* Distribution used to sample from one row of logits (one-hot argmax when greedy). */
static cb_status probs_of(spec_state *S, const float *logits, float *dst) {
    if (S->greedy) {
        memset(dst, 0, sizeof(float) * (size_t)S->V);
        dst[cb_argmax(logits, S->V)] = 1.0f;
        return CB_OK;
    }
    const cb_generate_config *g = &S->cfg->gen;
    CB_TRY(cb_token_sampler_probs(&S->smp, logits, g->temperature, g->top_k, g->top_p));
    memcpy(dst, S->smp.probs, sizeof(float) * (size_t)S->V);
    return CB_OK;
}

static int32_t draw(spec_state *S, const float *logits, float *probs_out, cb_status *st) {
    if (S->greedy) {
        int32_t t = cb_argmax(logits, S->V);
        if (probs_out) {
            memset(probs_out, 0, sizeof(float) * (size_t)S->V);
            probs_out[t] = 1.0f;
        }
        return t;
    }
    float *dst = probs_out ? probs_out : S->scratch;
    *st = probs_of(S, logits, dst);
    return *st == CB_OK ? cb_sample_from(dst, S->V, &S->rng) : 0;
}

/* Generates one row into seq[S .. S + N); returns the count produced in *n. */
static cb_status run_row(spec_state *S, int32_t *seq, int64_t S0, int64_t N, int64_t *n,
                         cb_token_fn fn, void *user) {
    const cb_spec_config *c = S->cfg;
    cb_spec_stats *st = S->st;
    const int64_t eos = c->gen.eos_token_id;
    cb_generator_reset(S->tg);
    cb_generator_reset(S->dg);
    int64_t L = S0, fed_t = 0, fed_d = 0;
    *n = 0;
    if (S0 > 1) {
        CB_TRY(cb_generator_feed(S->tg, seq, 1, S0 - 1, NULL));
        CB_TRY(cb_generator_feed(S->dg, seq, 1, S0 - 1, NULL));
        st->target_forwards++;
        st->draft_forwards++;
        fed_t = fed_d = S0 - 1;
    }
    bool done = false;
    cb_status s = CB_OK;
    while (!done && L - S0 < N) {
        const int64_t remaining = N - (L - S0);
        if (c->spec_disable_below_accept > 0 && st->propose_total > 10 &&
            rate(st) < c->spec_disable_below_accept)
            S->disabled = st->fell_back = true;
        int64_t produced = 0;
        int32_t toks[64 + 1];
        int32_t *emit = NULL;
        if (S->disabled || remaining <= 1) {
            /* plain target step */
            CB_TRY(cb_generator_feed(S->tg, seq + fed_t, 1, L - fed_t, NULL));
            st->target_forwards++;
            fed_t = L;
            int32_t t = draw(S, cb_generator_logits(S->tg), NULL, &s);
            CB_TRY(s);
            seq[L] = t;
            emit = seq + L;
            produced = 1;
            st->plain_steps++;
        } else {
            const int k = (int)(S->k < remaining - 1 ? S->k : remaining - 1);
            int32_t *d = S->blk + 1;
            /* draft proposes k tokens */
            CB_TRY(cb_generator_feed(S->dg, seq + fed_d, 1, L - fed_d, NULL));
            st->draft_forwards++;
            for (int j = 0; j < k; j++) {
                if (j > 0) {
                    CB_TRY(cb_generator_feed(S->dg, &d[j - 1], 1, 1, NULL));
                    st->draft_forwards++;
                }
                d[j] = draw(S, cb_generator_logits(S->dg), S->q + (size_t)j * (size_t)S->V, &s);
                CB_TRY(s);
            }
            fed_d = L + k - 1;
            /* target verifies the pending token + the k proposals in one forward */
            S->blk[0] = seq[L - 1];
            const float *all;
            CB_TRY(cb_generator_feed(S->tg, S->blk, 1, k + 1, &all));
            st->target_forwards++;
            for (int i = 0; i <= k; i++)
                CB_TRY(
                    probs_of(S, all + (size_t)i * (size_t)S->V, S->p + (size_t)i * (size_t)S->V));
            int32_t next;
            bool has_next;
            int a = cb_spec_verify(S->p, S->q, d, k, S->V, S->greedy, c->spec_extra_token, &S->rng,
                                   S->scratch, &next, &has_next);
            st->accept_total += a;
            st->propose_total += k;
            st->rounds++;
            st->full_accepts += a == k;
            for (int i = 0; i < a; i++) toks[i] = d[i];
            produced = a;
            if (has_next) toks[produced++] = next;
            memcpy(seq + L, toks, sizeof(int32_t) * (size_t)produced);
            emit = seq + L;
            /* roll back what was not kept; the newest token stays pending */
            int64_t keep = L + produced - 1;
            fed_t = L + k;
            if (fed_t > keep) CB_TRY(cb_generator_rollback(S->tg, fed_t - keep));
            fed_t = keep;
            if (fed_d > keep) {
                CB_TRY(cb_generator_rollback(S->dg, fed_d - keep));
                fed_d = keep;
            }
            adapt_k(S);
        }
        for (int64_t i = 0; i < produced; i++) {
            L++;
            (*n)++;
            if (fn && fn(user, *n - 1, &emit[i], 1)) done = true;
            if (eos >= 0 && emit[i] == eos) done = true;
            if (done) break;
        }
    }
    st->target_cache_len = cb_generator_pos(S->tg);
    st->draft_cache_len = cb_generator_pos(S->dg);
    st->k_final = S->k;
    return CB_OK;
}

struct cb_spec_decoder {
    spec_state S;
    cb_spec_config cfg;
    char *own[2];
};

cb_status cb_spec_decoder_new(cb_spec_decoder **out, cb_model *target, cb_model *draft,
                              const cb_spec_config *cfg) {
    *out = NULL;
    CB_TRY(cb_spec_config_validate(cfg));
    if (!target || !draft)
        return cb_fail(CB_ERR_ARG, "speculative: target and draft models are required");
    if (target->vocab_size != draft->vocab_size)
        return cb_fail(CB_ERR_ARG,
                       "speculative: target vocabulary %lld differs from the draft's %lld",
                       (long long)target->vocab_size, (long long)draft->vocab_size);
    const int kmax = cfg->spec_k_max > cfg->spec_k ? cfg->spec_k_max : cfg->spec_k;
    if (kmax > 64) return cb_fail(CB_ERR_ARG, "speculative: k above 64 is not supported");
    cb_spec_decoder *sd = calloc(1, sizeof *sd);
    if (!sd) return cb_fail(CB_ERR_NOMEM, "speculative decoder");
    sd->cfg = *cfg;
    spec_state *S = &sd->S;
    S->cfg = &sd->cfg;
    S->V = target->vocab_size;
    cb_status s = method_greedy(cfg->spec_method, &S->greedy);
    if (!(cfg->gen.temperature > 0)) S->greedy = true;
    cb_rng_seed(&S->rng, cfg->gen.seed);
    /* one cache policy for both models, resolved on the target ("auto" included) */
    cb_cache_decision dec;
    if (s == CB_OK) s = cb_cache_policy_resolve(target, 1, &cfg->gen, &dec);
    cb_generate_config tc = cfg->gen, dc = cfg->gen;
    tc.cache_kind = dec.policy;
    tc.cache_plan_path = NULL;
    dc.cache_kind = cfg->draft_cache_kind ? cfg->draft_cache_kind : dec.policy;
    dc.cache_plan_path = NULL;
    if (s == CB_OK) s = cb_generator_new(&S->tg, target, &tc);
    if (s == CB_OK) s = cb_generator_new(&S->dg, draft, &dc);
    if (s == CB_OK) s = cb_token_sampler_init(&S->smp, S->V);
    if (s == CB_OK) {
        S->p = malloc(sizeof(float) * (size_t)(kmax + 1) * (size_t)S->V);
        S->q = malloc(sizeof(float) * (size_t)kmax * (size_t)S->V);
        S->scratch = malloc(sizeof(float) * (size_t)S->V);
        S->blk = malloc(sizeof(int32_t) * (size_t)(kmax + 1));
        if (!S->p || !S->q || !S->scratch || !S->blk)
            s = cb_fail(CB_ERR_NOMEM, "speculative: buffers");
    }
    /* the config's strings are the caller's; keep copies of the two read later */
    if (s == CB_OK && cfg->spec_method && !(sd->own[0] = strdup(cfg->spec_method)))
        s = cb_fail(CB_ERR_NOMEM, "speculative");
    sd->cfg.spec_method = sd->own[0];
    sd->cfg.draft_cache_kind = NULL;
    sd->cfg.gen.cache_kind = NULL; /* resolved above; the generators hold their own copies */
    sd->cfg.gen.cache_plan_path = sd->cfg.gen.cache_auto_candidates =
        sd->cfg.gen.cache_plan_model_id = NULL;
    sd->cfg.gen.decode_plan = NULL;
    if (s != CB_OK) {
        cb_spec_decoder_free(sd);
        return s;
    }
    *out = sd;
    return CB_OK;
}

void cb_spec_decoder_free(cb_spec_decoder *sd) {
    if (!sd) return;
    spec_state *S = &sd->S;
    cb_generator_free(S->tg);
    cb_generator_free(S->dg);
    cb_token_sampler_free(&S->smp);
    free(S->p);
    free(S->q);
    free(S->scratch);
    free(S->blk);
    free(sd->own[0]);
    free(sd->own[1]);
    free(sd);
}

void cb_spec_decoder_seed(cb_spec_decoder *sd, uint64_t seed) {
    cb_rng_seed(&sd->S.rng, seed);
}

cb_status cb_spec_decoder_generate(cb_spec_decoder *sd, const int32_t *prompt, int64_t B,
                                   int64_t S0, int32_t *out, int64_t *out_len, cb_spec_stats *stats,
                                   cb_token_fn fn, void *user) {
    *out_len = 0;
    cb_spec_stats local;
    cb_spec_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    spec_state *S = &sd->S;
    const cb_spec_config *cfg = &sd->cfg;
    if (B < 1 || S0 < 1)
        return cb_fail(CB_ERR_ARG, "speculative: empty prompt (%lld x %lld)", (long long)B,
                       (long long)S0);
    const int64_t N = cfg->gen.max_new_tokens, stride = S0 + N;
    if (S0 + N - 1 > cfg->gen.max_seq_len)
        return cb_fail(CB_ERR_ARG,
                       "speculative: %lld prompt + %lld new tokens need %lld positions, more than "
                       "max_seq_len %lld",
                       (long long)S0, (long long)N, (long long)(S0 + N - 1),
                       (long long)cfg->gen.max_seq_len);
    double t0 = now_s();
    S->st = st;
    S->k = cfg->spec_k;
    S->last_adjust = 0;
    S->disabled = false;
    const int32_t pad = cb_generate_pad_id(&cfg->gen);
    int64_t longest = 0;
    cb_status s = CB_OK;
    for (int64_t b = 0; s == CB_OK && b < B; b++) {
        int32_t *seq = out + b * stride;
        memcpy(seq, prompt + b * S0, sizeof(int32_t) * (size_t)S0);
        int64_t n = 0;
        s = run_row(S, seq, S0, N, &n, B == 1 ? fn : NULL, user);
        for (int64_t j = S0 + n; j < stride; j++) seq[j] = pad;
        if (n > longest) longest = n;
    }
    if (s == CB_OK && fn && B > 1) {
        int32_t *col = malloc(sizeof(int32_t) * (size_t)B);
        for (int64_t i = 0; col && i < longest; i++) {
            for (int64_t b = 0; b < B; b++) col[b] = out[b * stride + S0 + i];
            if (fn(user, i, col, B)) break;
        }
        free(col);
    }
    st->acceptance_rate = rate(st);
    st->seconds = now_s() - t0;
    S->st = NULL;
    if (s != CB_OK) return s;
    *out_len = S0 + longest;
    return CB_OK;
}

cb_status cb_speculative_generate(cb_model *target, cb_model *draft, const cb_spec_config *cfg,
                                  const int32_t *prompt, int64_t B, int64_t S0, int32_t *out,
                                  int64_t *out_len, cb_spec_stats *stats, cb_token_fn fn,
                                  void *user) {
    *out_len = 0;
    if (stats) memset(stats, 0, sizeof *stats);
    cb_spec_decoder *sd;
    CB_TRY(cb_spec_decoder_new(&sd, target, draft, cfg));
    cb_status s = cb_spec_decoder_generate(sd, prompt, B, S0, out, out_len, stats, fn, user);
    cb_spec_decoder_free(sd);
    return s;
}
