/* cache_kind "auto" (spec-infer §12): budget filter, quality gates, micro-benchmark, persisted
 * decision.
 *
 * Fixes over the original (spec-infer §16.5-7): the probe prompts are seeded (a fixed probe
 * seed, so a decision does not depend on the sampling seed) and drawn from the model's whole
 * vocabulary; the needle gate plants a real needle (a key/value pair that the end of the prompt
 * asks for) and measures KL(baseline || candidate) as its name says; when no candidate passes
 * the gates, or a probe fails, the decision says so (source / note / per-candidate error)
 * instead of silently dropping gates or candidates; the benchmark warms up and times only the
 * decode steps; the quality baseline is the exact fp32 cache. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caramba/cache_policy.h"

#define PROBE_SEED 0x5eedcace5eedull

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A generator for probing one policy: the caller's cache settings with this kind. */
static cb_status probe_gen(cb_model *m, const cb_generate_config *cfg, const char *policy,
                           int64_t max_len, cb_generator **out) {
    cb_generate_config c = *cfg;
    c.cache_kind = policy;
    c.max_seq_len = max_len;
    c.temperature = 0;
    c.top_k = 0;
    c.top_p = 0;
    c.eos_token_id = -1;
    c.pad_token_id = -1;
    c.cache_plan_path = NULL;
    c.prefill_chunk = 0;
    CB_TRY(cb_generator_new(out, m, &c));
    return CB_OK;
}

static void random_tokens(cb_rng *r, int64_t vocab, int32_t *t, int64_t n) {
    for (int64_t i = 0; i < n; i++) t[i] = (int32_t)cb_rng_below(r, (uint64_t)vocab);
}

/* log-softmax of one row in double: lse = log sum exp(x) */
static double logsumexp(const float *x, int64_t n) {
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, x[i]);
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

/* ---- teacher-forced NLL ---------------------------------------------------------------------- */

static cb_status teacher_forced_nll(cb_model *m, const cb_generate_config *cfg, const char *policy,
                                    const int32_t *tokens, int64_t B, int64_t T, int64_t P,
                                    double *nll) {
    cb_generator *g;
    CB_TRY(probe_gen(m, cfg, policy, T, &g));
    const int64_t V = m->vocab_size;
    int32_t *buf = malloc(sizeof(int32_t) * (size_t)(B * (P > 1 ? P : 1)));
    cb_status st = buf ? CB_OK : cb_fail(CB_ERR_NOMEM, "fidelity check");
    for (int64_t b = 0; st == CB_OK && b < B; b++)
        memcpy(buf + b * P, tokens + b * T, sizeof(int32_t) * (size_t)P);
    if (st == CB_OK) st = cb_generator_feed(g, buf, B, P, NULL);
    double total = 0;
    int64_t steps = 0;
    for (int64_t i = P; st == CB_OK; i++) {
        const float *lg = cb_generator_logits(g);
        double s = 0;
        for (int64_t b = 0; b < B; b++) {
            const float *row = lg + b * V;
            s += logsumexp(row, V) - row[tokens[b * T + i]];
        }
        total += s / (double)B;
        steps++;
        if (i + 1 >= T) break;
        for (int64_t b = 0; b < B; b++) buf[b] = tokens[b * T + i];
        st = cb_generator_feed(g, buf, B, 1, NULL);
    }
    free(buf);
    cb_generator_free(g);
    if (st == CB_OK) *nll = total / (double)steps;
    return st;
}

static cb_status fidelity(cb_model *m, const cb_generate_config *cfg, const char *baseline,
                          const char *candidate, const int32_t *tokens, int64_t B, int64_t T,
                          int64_t prompt_len, cb_cache_fidelity *out) {
    if (T < 2)
        return cb_fail(CB_ERR_ARG, "fidelity check: needs at least 2 tokens, got %lld",
                       (long long)T);
    int64_t P = prompt_len < 1 ? 1 : prompt_len > T - 1 ? T - 1 : prompt_len;
    CB_TRY(teacher_forced_nll(m, cfg, baseline, tokens, B, T, P, &out->baseline_nll));
    CB_TRY(teacher_forced_nll(m, cfg, candidate, tokens, B, T, P, &out->candidate_nll));
    out->delta_nll = out->candidate_nll - out->baseline_nll;
    out->ppl_ratio = exp(out->delta_nll);
    return CB_OK;
}

cb_status cb_cache_fidelity_check(cb_model *m, const cb_generate_config *cfg, const char *baseline,
                                  const char *candidate, const int32_t *tokens, int64_t B,
                                  int64_t T, int64_t prompt_len, cb_cache_fidelity *out) {
    return fidelity(m, cfg, baseline, candidate, tokens, B, T, prompt_len, out);
}

cb_status cb_cache_long_context_check(cb_model *m, const cb_generate_config *cfg,
                                      const char *baseline, const char *candidate,
                                      const int32_t *tokens, int64_t B, int64_t T,
                                      int64_t prompt_len, cb_cache_fidelity *out) {
    if (T < prompt_len + 1)
        return cb_fail(CB_ERR_ARG,
                       "long-context check: %lld tokens, needs at least prompt_len + 1 = %lld",
                       (long long)T, (long long)prompt_len + 1);
    return fidelity(m, cfg, baseline, candidate, tokens, B, T, prompt_len, out);
}

/* ---- needle in a haystack -------------------------------------------------------------------- */

static int32_t draw_not(cb_rng *r, int64_t vocab, int32_t a, int32_t b) {
    int32_t t;
    do t = (int32_t)cb_rng_below(r, (uint64_t)vocab);
    while ((t == a || t == b) && vocab > 2);
    return t;
}

cb_status cb_cache_needle_prompt(uint64_t seed, int64_t vocab, int64_t B, int64_t P, int steps,
                                 int32_t *prompt, int32_t *value, int64_t *needle_pos) {
    if (steps < 1 || P < steps + 5)
        return cb_fail(
            CB_ERR_ARG,
            "needle prompt: %lld tokens cannot hold a key of 2, a value of %d and the question",
            (long long)P, steps);
    if (vocab < 3)
        return cb_fail(CB_ERR_ARG, "needle prompt: vocabulary of %lld is too small",
                       (long long)vocab);
    cb_rng r;
    cb_rng_seed(&r, seed);
    int64_t at = P / 5;
    if (at + 2 + steps > P - 3)
        at = P - 3 - 2 - steps; /* keep haystack between needle and question */
    if (at < 0) at = 0;
    for (int64_t b = 0; b < B; b++) {
        int32_t *row = prompt + b * P;
        int32_t k1 = (int32_t)cb_rng_below(&r, (uint64_t)vocab), k2;
        do k2 = (int32_t)cb_rng_below(&r, (uint64_t)vocab);
        while (k2 == k1);
        for (int64_t i = 0; i < P; i++) row[i] = draw_not(&r, vocab, k1, k2);
        row[at] = k1;
        row[at + 1] = k2;
        for (int s = 0; s < steps; s++) {
            int32_t v = draw_not(&r, vocab, k1, k2);
            row[at + 2 + s] = v;
            value[b * steps + s] = v;
        }
        row[P - 2] = k1;
        row[P - 1] = k2;
    }
    *needle_pos = at;
    return CB_OK;
}

/* Baseline distributions are computed once per resolve; base_lp [steps][B][V] log-probs. */
static cb_status needle_run(cb_model *m, const cb_generate_config *cfg, const char *policy,
                            const int32_t *prompt, const int32_t *value, int64_t B, int64_t P,
                            int steps, double *lp, double *hit) {
    cb_generator *g;
    CB_TRY(probe_gen(m, cfg, policy, P + steps, &g));
    const int64_t V = m->vocab_size;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B);
    cb_status st =
        tok ? cb_generator_feed(g, prompt, B, P, NULL) : cb_fail(CB_ERR_NOMEM, "needle gate");
    int64_t hits = 0;
    for (int s = 0; st == CB_OK && s < steps; s++) {
        const float *lg = cb_generator_logits(g);
        for (int64_t b = 0; b < B; b++) {
            const float *row = lg + b * V;
            double lse = logsumexp(row, V);
            double *dst = lp + ((size_t)s * (size_t)B + (size_t)b) * (size_t)V;
            for (int64_t v = 0; v < V; v++) dst[v] = (double)row[v] - lse;
            hits += cb_argmax(row, V) == value[b * steps + s];
            tok[b] = value[b * steps + s];
        }
        if (s + 1 < steps) st = cb_generator_feed(g, tok, B, 1, NULL);
    }
    free(tok);
    cb_generator_free(g);
    *hit = (double)hits / (double)(B * steps);
    return st;
}

static void needle_kl(const double *base, const double *cand, int64_t B, int64_t V, int steps,
                      cb_needle_result *r) {
    r->mean_kl = 0;
    r->max_kl = 0;
    for (int s = 0; s < steps; s++) {
        double kl = 0;
        for (int64_t b = 0; b < B; b++) {
            const double *pb = base + ((size_t)s * (size_t)B + (size_t)b) * (size_t)V;
            const double *pc = cand + ((size_t)s * (size_t)B + (size_t)b) * (size_t)V;
            for (int64_t v = 0; v < V; v++)
                kl += exp((double)pb[v]) * ((double)pb[v] - (double)pc[v]);
        }
        kl /= (double)B;
        if (kl < 0) kl = 0; /* >= 0 mathematically; rounding of equal distributions */
        r->mean_kl += kl / steps;
        if (kl > r->max_kl) r->max_kl = kl;
    }
}

static cb_status needle_sizes(const cb_generate_config *cfg, int64_t prompt_len, int steps,
                              int64_t *P, int *S) {
    *S = steps < 1 ? 1 : steps;
    *P = prompt_len;
    if (*P + *S > cfg->max_seq_len) *P = cfg->max_seq_len - *S;
    if (*P < *S + 5)
        return cb_fail(
            CB_ERR_ARG,
            "needle gate: max_seq_len %lld is too small for a needle prompt and %d steps",
            (long long)cfg->max_seq_len, *S);
    return CB_OK;
}

cb_status cb_cache_needle_gate(cb_model *m, const cb_generate_config *cfg, const char *baseline,
                               const char *candidate, int64_t B, int64_t prompt_len, int steps,
                               uint64_t seed, cb_needle_result *out) {
    memset(out, 0, sizeof *out);
    int64_t P;
    int S;
    CB_TRY(needle_sizes(cfg, prompt_len, steps, &P, &S));
    const int64_t V = m->vocab_size;
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(B * P));
    int32_t *value = malloc(sizeof(int32_t) * (size_t)(B * S));
    double *lb = malloc(sizeof(double) * (size_t)(S * B * V));
    double *lc = malloc(sizeof(double) * (size_t)(S * B * V));
    cb_status st = prompt && value && lb && lc ? CB_OK : cb_fail(CB_ERR_NOMEM, "needle gate");
    if (st == CB_OK) st = cb_cache_needle_prompt(seed, V, B, P, S, prompt, value, &out->needle_pos);
    if (st == CB_OK) st = needle_run(m, cfg, baseline, prompt, value, B, P, S, lb, &out->base_hit);
    if (st == CB_OK) st = needle_run(m, cfg, candidate, prompt, value, B, P, S, lc, &out->cand_hit);
    if (st == CB_OK) {
        needle_kl(lb, lc, B, V, S, out);
        out->steps = S;
    }
    free(prompt);
    free(value);
    free(lb);
    free(lc);
    return st;
}

/* ---- micro-benchmark ---------------------------------------------------------------------------
 */

cb_status cb_cache_bench(cb_model *m, const cb_generate_config *cfg, const char *policy, int64_t B,
                         int64_t prompt_len, int steps, uint64_t seed, double *tps) {
    int N = steps < 1 ? 1 : steps;
    int64_t P = prompt_len;
    if (P + 1 + N > cfg->max_seq_len) P = cfg->max_seq_len - 1 - N;
    if (P < 1)
        return cb_fail(CB_ERR_ARG, "cache benchmark: max_seq_len %lld is too small for %d steps",
                       (long long)cfg->max_seq_len, N);
    cb_generator *g;
    CB_TRY(probe_gen(m, cfg, policy, P + 1 + N, &g));
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(B * P)),
            *tok = malloc(sizeof(int32_t) * (size_t)B);
    cb_status st = prompt && tok ? CB_OK : cb_fail(CB_ERR_NOMEM, "cache benchmark");
    cb_rng r;
    cb_rng_seed(&r, seed);
    if (st == CB_OK) {
        random_tokens(&r, m->vocab_size, prompt, B * P);
        st = cb_generator_feed(g, prompt, B, P, NULL);
    }
    /* one untimed step: arena sizing, first-touch of the cache pages */
    if (st == CB_OK) st = cb_generator_sample(g, tok);
    if (st == CB_OK) st = cb_generator_feed(g, tok, B, 1, NULL);
    double t0 = mono_s();
    for (int i = 0; st == CB_OK && i < N; i++) {
        st = cb_generator_sample(g, tok);
        if (st == CB_OK) st = cb_generator_feed(g, tok, B, 1, NULL);
    }
    double dt = mono_s() - t0;
    free(prompt);
    free(tok);
    cb_generator_free(g);
    if (st == CB_OK) *tps = (double)N / (dt > 1e-9 ? dt : 1e-9);
    return st;
}

/* ---- resolution ------------------------------------------------------------------------------ */

static cb_status parse_candidates(const cb_model *m, int64_t batch, const cb_generate_config *cfg,
                                  cb_cache_decision *d) {
    char buf[1024];
    const char *list =
        cfg->cache_auto_candidates ? cfg->cache_auto_candidates : CB_CACHE_DEFAULT_CANDIDATES;
    if (strlen(list) >= sizeof buf)
        return cb_fail(CB_ERR_ARG, "cache auto: candidate list too long");
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    d->n_candidates = 0;
    for (char *t = strtok_r(buf, ";", &save); t; t = strtok_r(NULL, ";", &save)) {
        cb_kv_policy p;
        if (cb_kv_policy_parse(t, &p) != CB_OK)
            return cb_fail_context(CB_ERR_ARG, "cache auto candidates");
        if (p.is_auto)
            return cb_fail(CB_ERR_ARG, "cache auto candidates: 'auto' cannot be a candidate");
        if (d->n_candidates == CB_CACHE_MAX_CANDIDATES)
            return cb_fail(CB_ERR_ARG, "cache auto candidates: at most %d",
                           CB_CACHE_MAX_CANDIDATES);
        cb_cache_candidate *c = &d->cand[d->n_candidates++];
        memset(c, 0, sizeof *c);
        cb_kv_policy_str(&p, c->policy, sizeof c->policy);
        c->bytes = cb_infer_caches_estimate(m, batch, cfg->max_seq_len, &p, cfg->cache_residual_len,
                                            cfg->cache_fp16_prefix_layers);
        c->fits = cfg->cache_budget_mb < 0 || (double)c->bytes <= cfg->cache_budget_mb * 1048576.0;
        c->passed = true;
        c->delta_nll = c->ppl_ratio = c->mean_kl = c->max_kl = c->needle_hit = c->tps = NAN;
    }
    if (d->n_candidates == 0) return cb_fail(CB_ERR_ARG, "cache auto: no candidates");
    return CB_OK;
}

static void choose(cb_cache_decision *d, int idx, const char *source) {
    memcpy(d->policy, d->cand[idx].policy, sizeof d->policy); /* same size, NUL-terminated */
    snprintf(d->source, sizeof d->source, "%s", source);
    d->tps = d->cand[idx].tps;
}

static void add_note(cb_cache_decision *d, const char *fmt, const char *a) {
    char msg[256], arg[192];
    snprintf(arg, sizeof arg, "%s", a); /* a may point into d */
    snprintf(msg, sizeof msg, fmt, arg);
    size_t o = strlen(d->note);
    snprintf(d->note + o, sizeof d->note - o, "%s%s", o ? "; " : "", msg);
}

cb_status cb_cache_choose_by_budget(const cb_model *m, int64_t batch, const cb_generate_config *cfg,
                                    cb_cache_decision *d) {
    memset(d, 0, sizeof *d);
    d->tps = NAN;
    CB_TRY(parse_candidates(m, batch, cfg, d));
    int best = -1, smallest = 0;
    for (int i = 0; i < d->n_candidates; i++) {
        if (best < 0 && d->cand[i].fits) best = i;
        if (d->cand[i].bytes <= d->cand[smallest].bytes) smallest = i; /* ties: the later one */
    }
    if (best >= 0)
        choose(d, best, "default");
    else {
        choose(d, smallest, "budget");
        add_note(d, "no candidate fits the budget; using the smallest, %s",
                 d->cand[smallest].policy);
    }
    return CB_OK;
}

cb_status cb_cache_policy_resolve(cb_model *m, int64_t batch, const cb_generate_config *cfg,
                                  cb_cache_decision *d) {
    memset(d, 0, sizeof *d);
    d->tps = NAN;
    cb_kv_policy p;
    CB_TRY(cb_kv_policy_parse(cfg->cache_kind ? cfg->cache_kind : CB_CACHE_BASELINE, &p));
    if (!p.is_auto) {
        cb_kv_policy_str(&p, d->policy, sizeof d->policy);
        snprintf(d->source, sizeof d->source, "default");
        return CB_OK;
    }
    CB_TRY(parse_candidates(m, batch, cfg, d));
    const int n = d->n_candidates;
    bool alive[CB_CACHE_MAX_CANDIDATES];
    int n_alive = 0, smallest = 0;
    for (int i = 0; i < n; i++) {
        alive[i] = d->cand[i].fits;
        n_alive += alive[i];
        if (d->cand[i].bytes <= d->cand[smallest].bytes) smallest = i;
    }
    bool budget_fallback = n_alive == 0;
    if (budget_fallback) {
        alive[smallest] = true;
        n_alive = 1;
        char mb[32];
        snprintf(mb, sizeof mb, "%g", cfg->cache_budget_mb);
        add_note(d, "no candidate fits the budget of %s MiB; using the smallest", mb);
    }

    /* (2) a persisted decision */
    char *payload = NULL;
    if (cfg->cache_plan_path) {
        payload = cb_cache_plan_payload(m, batch, cfg);
        if (!payload) return cb_fail(CB_ERR_NOMEM, "cache plan payload");
        cb_status st = cb_cache_plan_key_of_json(payload, d->key);
        if (st != CB_OK) {
            free(payload);
            return st;
        }
        cb_cache_plan_entry e;
        bool found;
        cb_cache_plan_load(cfg->cache_plan_path, d->key, &e, &found);
        if (found && (!cfg->cache_plan_probe ||
                      !cb_cache_plan_stale(&e, cfg->cache_plan_probe_interval_sec, wall_s()))) {
            snprintf(d->policy, sizeof d->policy, "%s", e.cache_kind);
            snprintf(d->source, sizeof d->source, "plan");
            d->tps = e.has_tps ? e.tps : NAN;
            free(payload);
            return CB_OK;
        }
    }

    cb_status st = CB_OK;
    const char *source = budget_fallback ? "budget" : "default";
    /* (3) quality gates */
    bool gate_nll = cfg->cache_quality_max_delta_nll >= 0,
         gate_ppl = cfg->cache_quality_max_ppl_ratio >= 0,
         gate_kl = cfg->cache_quality_max_mean_kl >= 0;
    if (gate_nll || gate_ppl || gate_kl) {
        const int64_t V = m->vocab_size, P = cfg->cache_quality_prompt_len;
        int64_t T = P + 16 < cfg->max_seq_len ? P + 16 : cfg->max_seq_len;
        if (T < 2) T = 2;
        int32_t *tokens = malloc(sizeof(int32_t) * (size_t)(batch * T));
        if (!tokens) st = cb_fail(CB_ERR_NOMEM, "cache gates");
        cb_rng r;
        cb_rng_seed(&r, PROBE_SEED);
        if (st == CB_OK) random_tokens(&r, V, tokens, batch * T);
        double base_nll = 0;
        int64_t Pc = P < 1 ? 1 : P > T - 1 ? T - 1 : P;
        if (st == CB_OK && (gate_nll || gate_ppl))
            st = teacher_forced_nll(m, cfg, CB_CACHE_BASELINE, tokens, batch, T, Pc, &base_nll);
        /* needle baseline */
        int64_t NP = 0;
        int NS = 0;
        int32_t *nprompt = NULL, *nvalue = NULL;
        double *lb = NULL, *lc = NULL;
        double base_hit = 0;
        int64_t npos = 0;
        if (st == CB_OK && gate_kl) {
            st = needle_sizes(cfg, P, cfg->cache_quality_decode_steps, &NP, &NS);
            if (st == CB_OK) {
                nprompt = malloc(sizeof(int32_t) * (size_t)(batch * NP));
                nvalue = malloc(sizeof(int32_t) * (size_t)(batch * NS));
                lb = malloc(sizeof(double) * (size_t)(NS * batch * V));
                lc = malloc(sizeof(double) * (size_t)(NS * batch * V));
                if (!nprompt || !nvalue || !lb || !lc) st = cb_fail(CB_ERR_NOMEM, "needle gate");
            }
            if (st == CB_OK)
                st = cb_cache_needle_prompt(PROBE_SEED + 1, V, batch, NP, NS, nprompt, nvalue,
                                            &npos);
            if (st == CB_OK)
                st = needle_run(m, cfg, CB_CACHE_BASELINE, nprompt, nvalue, batch, NP, NS, lb,
                                &base_hit);
        }
        int n_passed = 0, first_alive = -1;
        for (int i = 0; st == CB_OK && i < n; i++) {
            if (!alive[i]) continue;
            if (first_alive < 0) first_alive = i;
            cb_cache_candidate *c = &d->cand[i];
            c->gated = true;
            cb_status ps = CB_OK;
            if (gate_nll || gate_ppl) {
                double nll;
                ps = teacher_forced_nll(m, cfg, c->policy, tokens, batch, T, Pc, &nll);
                if (ps == CB_OK) {
                    c->delta_nll = nll - base_nll;
                    c->ppl_ratio = exp(c->delta_nll);
                }
            }
            if (ps == CB_OK && gate_kl) {
                cb_needle_result nr = {0};
                ps =
                    needle_run(m, cfg, c->policy, nprompt, nvalue, batch, NP, NS, lc, &nr.cand_hit);
                if (ps == CB_OK) {
                    needle_kl(lb, lc, batch, V, NS, &nr);
                    c->mean_kl = nr.mean_kl;
                    c->max_kl = nr.max_kl;
                    c->needle_hit = nr.cand_hit;
                }
            }
            if (ps != CB_OK) {
                snprintf(c->error, sizeof c->error, "%s", cb_last_error());
                c->passed = false;
                add_note(d, "probe of %s failed (see its error)", c->policy);
                cb_clear_error();
            } else {
                c->passed = !(gate_nll && c->delta_nll > cfg->cache_quality_max_delta_nll) &&
                            !(gate_ppl && c->ppl_ratio > cfg->cache_quality_max_ppl_ratio) &&
                            !(gate_kl && c->mean_kl > cfg->cache_quality_max_mean_kl);
            }
            n_passed += c->passed;
        }
        if (st == CB_OK) {
            if (n_passed == 0) {
                for (int i = 0; i < n; i++) alive[i] = i == first_alive;
                source = "gates_failed";
                add_note(d, "no candidate passed the quality gates; using %s",
                         d->cand[first_alive].policy);
            } else {
                for (int i = 0; i < n; i++) alive[i] = alive[i] && d->cand[i].passed;
            }
        }
        free(tokens);
        free(nprompt);
        free(nvalue);
        free(lb);
        free(lc);
    }
    if (st != CB_OK) {
        free(payload);
        return cb_fail_context(st, "cache auto: quality gates");
    }

    /* (4) micro-benchmark, else the first (highest-quality) survivor */
    int chosen = -1;
    if (cfg->cache_auto_benchmark && cfg->cache_auto_bench_steps > 0) {
        for (int i = 0; i < n; i++) {
            if (!alive[i]) continue;
            cb_cache_candidate *c = &d->cand[i];
            double tps;
            int64_t steps_p = cfg->cache_auto_bench_prompt_len;
            if (cb_cache_bench(m, cfg, c->policy, batch, steps_p, cfg->cache_auto_bench_steps,
                               PROBE_SEED + 2, &tps) != CB_OK) {
                snprintf(c->error, sizeof c->error, "%s", cb_last_error());
                add_note(d, "benchmark of %s failed (see its error)", c->policy);
                cb_clear_error();
                continue;
            }
            c->tps = tps;
            if (chosen < 0 || tps > d->cand[chosen].tps) chosen = i; /* ties: the earlier */
        }
        if (chosen >= 0 && strcmp(source, "default") == 0) source = "bench";
    }
    for (int i = 0; chosen < 0 && i < n; i++)
        if (alive[i]) chosen = i;
    choose(d, chosen, source);

    if (cfg->cache_plan_path) {
        cb_cache_plan_entry e = {
            .has_ts = true, .ts = wall_s(), .has_tps = isfinite(d->tps), .tps = d->tps};
        snprintf(e.cache_kind, sizeof e.cache_kind, "%s", d->policy);
        snprintf(e.source, sizeof e.source, "%s", d->source);
        if (cb_cache_plan_save(cfg->cache_plan_path, d->key, &e, payload) != CB_OK) {
            add_note(d, "the decision was not saved: %s", cb_last_error());
            cb_clear_error();
        }
    }
    free(payload);
    return CB_OK;
}
