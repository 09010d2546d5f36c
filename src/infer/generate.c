/* Stateful generator and stateless generate (spec-infer §10.3, §10.4).
 *
 *   feed: ids [B, T] at cache position pos -> logits [B, T, V]; caches grow by T.
 *   loop: sample tokens [B] from the last logits, feed them as [B, 1], repeat.
 *
 * The generator owns its caches, one graph (its arena is reset before every feed, so a decode
 * step allocates nothing once the arena has settled) and all scratch. The last sampled token
 * is kept "pending" instead of being fed (nobody needs its logits), so a call needs
 * S + max_new_tokens - 1 positions; continue() feeds it first.
 *
 * Fixes over the original (spec-infer §16): EOS is per row (finished rows emit the pad token,
 * generation stops when all rows finished); capacity is checked before any work; a second
 * prefill continues the context at the right RoPE position; the decode plan is applied to every
 * feed, prefill included. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caramba/cache_policy.h"
#include "caramba/device.h"
#include "caramba/generate.h"
#include "model/model_impl.h"

struct cb_generator {
    cb_model *m;
    cb_generate_config cfg;
    char *own[6]; /* copies of the config's strings */
    cb_decode_plan_mode plan_mode;
    char policy_text[96];
    bool have_caches;
    cb_infer_ctx ctx;
    int64_t B, V, pos;
    cb_graph g;
    float *last; /* [B][V] */
    bool last_valid;
    int32_t *pending; /* [B] */
    bool has_pending;
    int32_t *tok;       /* [B] */
    bool *finished;     /* [B] */
    int32_t *feedbuf;   /* [B][*] pending + ids */
    size_t feedbuf_cap; /* elements */
    float *host_all;    /* device models: host copy of all logits */
    size_t host_all_cap;
    cb_token_sampler sampler;
    cb_rng rng;
    cb_generate_stats stats;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static cb_status dup_str(cb_generator *g, int slot, const char **field) {
    if (!*field) return CB_OK;
    g->own[slot] = strdup(*field);
    if (!g->own[slot]) return cb_fail(CB_ERR_NOMEM, "generator: config string");
    *field = g->own[slot];
    return CB_OK;
}

cb_status cb_generator_new(cb_generator **out, cb_model *m, const cb_generate_config *cfg) {
    *out = NULL;
    if (!m) return cb_fail(CB_ERR_ARG, "generator: no model");
    if (m->vocab_size <= 0)
        return cb_fail(CB_ERR_ARG, "generator: the model has no token embedder / vocabulary");
    cb_generate_config def;
    if (!cfg) {
        cb_generate_config_default(&def);
        cfg = &def;
    }
    CB_TRY(cb_generate_config_validate(cfg));
    cb_generator *g = calloc(1, sizeof *g);
    if (!g) return cb_fail(CB_ERR_NOMEM, "generator");
    g->m = m;
    g->cfg = *cfg;
    g->V = m->vocab_size;
    cb_status st = CB_OK;
    if (st == CB_OK) st = dup_str(g, 0, &g->cfg.cache_kind);
    if (st == CB_OK) st = dup_str(g, 1, &g->cfg.cache_plan_path);
    if (st == CB_OK) st = dup_str(g, 2, &g->cfg.cache_auto_candidates);
    if (st == CB_OK) st = dup_str(g, 3, &g->cfg.cache_plan_model_id);
    if (st == CB_OK) st = dup_str(g, 4, &g->cfg.decode_plan);
    if (st == CB_OK) st = cb_decode_plan_mode_parse(g->cfg.decode_plan, &g->plan_mode);
    if (st == CB_OK) st = cb_token_sampler_init(&g->sampler, g->V);
    if (st == CB_OK) st = cb_graph_init(&g->g, m->device);
    if (st != CB_OK) {
        cb_token_sampler_free(&g->sampler);
        for (int i = 0; i < 6; i++) free(g->own[i]);
        free(g);
        return st;
    }
    cb_graph_set_grad(&g->g, false);
    cb_rng_seed(&g->rng, cfg->seed);
    *out = g;
    return CB_OK;
}

static void free_batch_state(cb_generator *g) {
    if (g->have_caches) cb_model_caches_free(&g->ctx);
    g->have_caches = false;
    free(g->last);
    free(g->pending);
    free(g->tok);
    free(g->finished);
    g->last = NULL;
    g->pending = g->tok = NULL;
    g->finished = NULL;
    g->B = 0;
}

void cb_generator_free(cb_generator *g) {
    if (!g) return;
    free_batch_state(g);
    cb_graph_free(&g->g);
    cb_token_sampler_free(&g->sampler);
    free(g->feedbuf);
    free(g->host_all);
    for (int i = 0; i < 6; i++) free(g->own[i]);
    free(g);
}

void cb_generator_reset(cb_generator *g) {
    for (int i = 0; g->have_caches && i < g->ctx.n_caches; i++)
        cb_layer_cache_reset(&g->ctx.caches[i]);
    g->pos = 0;
    g->has_pending = false;
    g->last_valid = false;
}

void cb_generator_seed(cb_generator *g, uint64_t seed) {
    cb_rng_seed(&g->rng, seed);
}

static cb_status resolve_policy(cb_generator *g, int64_t B, cb_kv_policy *p) {
    const char *text = g->cfg.cache_kind ? g->cfg.cache_kind : "fp32";
    CB_TRY(cb_kv_policy_parse(text, p));
    if (!p->is_auto) {
        cb_kv_policy_str(p, g->policy_text, sizeof g->policy_text);
        return CB_OK;
    }
    cb_cache_decision d;
    CB_TRY(cb_cache_policy_resolve(g->m, B, &g->cfg, &d));
    CB_TRY(cb_kv_policy_parse(d.policy, p));
    snprintf(g->policy_text, sizeof g->policy_text, "%s", d.policy);
    return CB_OK;
}

static cb_status ensure_caches(cb_generator *g, int64_t B) {
    if (B <= 0) return cb_fail(CB_ERR_ARG, "generator: batch must be >= 1, got %lld", (long long)B);
    if (g->have_caches && g->B == B) return CB_OK;
    if (g->have_caches && g->pos > 0)
        return cb_fail(
            CB_ERR_ARG,
            "generator: batch %lld does not match the %lld rows in the cache (reset first)",
            (long long)B, (long long)g->B);
    free_batch_state(g);
    cb_kv_policy p;
    CB_TRY(resolve_policy(g, B, &p));
    CB_TRY(cb_infer_caches_new(g->m, B, g->cfg.max_seq_len, &p, g->cfg.cache_residual_len,
                               g->cfg.cache_fp16_prefix_layers, &g->ctx));
    g->have_caches = true;
    g->B = B;
    g->last = malloc(sizeof(float) * (size_t)(B * g->V));
    g->pending = malloc(sizeof(int32_t) * (size_t)B);
    g->tok = malloc(sizeof(int32_t) * (size_t)B);
    g->finished = calloc((size_t)B, sizeof(bool));
    if (!g->last || !g->pending || !g->tok || !g->finished) {
        free_batch_state(g);
        return cb_fail(CB_ERR_NOMEM, "generator: buffers for batch %lld", (long long)B);
    }
    g->pos = 0;
    g->has_pending = g->last_valid = false;
    return CB_OK;
}

/* One forward of ids [B, T] at g->pos. */
static cb_status forward(cb_generator *g, const int32_t *ids, int64_t T, const float **all) {
    const int64_t B = g->B, V = g->V;
    if (g->pos + T > g->cfg.max_seq_len)
        return cb_fail(CB_ERR_ARG,
                       "generate: %lld tokens in the cache + %lld new exceed max_seq_len %lld",
                       (long long)g->pos, (long long)T, (long long)g->cfg.max_seq_len);
    double t0 = now_s();
    cb_graph_reset(&g->g);
    cb_infer_ctx_begin(&g->ctx, g->pos);
    cb_decode_plan plan = cb_decode_plan_for_pos(&g->cfg, g->plan_mode, g->pos + T - 1);
    g->ctx.q_chunk = plan.q_chunk;
    g->ctx.local_window = plan.local_window;
    int64_t sh[2] = {B, T};
    cb_tensor *x = cb_graph_wrap(&g->g, CB_I32, 2, sh, (void *)ids);
    if (x) x->device = CB_CPU; /* host ids: the model copies them to its device */
    cb_tensor *logits = x ? cb_model_forward(g->m, &g->g, x, &g->ctx) : NULL;
    cb_status st = logits ? cb_infer_ctx_end(&g->ctx) : CB_ERR_ARG;
    if (st == CB_OK && (logits->ndim != 3 || logits->shape[0] != B || logits->shape[1] != T ||
                        logits->shape[2] != V || logits->dtype != CB_F32)) {
        char s[64];
        st = cb_fail(CB_ERR_SHAPE, "generate: model output %s is not f32 logits [%lld, %lld, %lld]",
                     cb_shape_str(logits, s, sizeof s), (long long)B, (long long)T, (long long)V);
    }
    if (st != CB_OK) {
        cb_infer_caches_truncate(&g->ctx, g->pos); /* undo the layers that did append */
        g->last_valid = false;
        return cb_fail_context(st, "generate: forward of %lld x %lld tokens at position %lld",
                               (long long)B, (long long)T, (long long)g->pos);
    }
    const float *data = cb_f32(logits);
    if (logits->device != CB_CPU) {
        size_t n = (size_t)(B * T * V);
        if (n > g->host_all_cap) {
            float *p = realloc(g->host_all, n * sizeof(float));
            if (!p) return cb_fail(CB_ERR_NOMEM, "generate: host logits");
            g->host_all = p;
            g->host_all_cap = n;
        }
        CB_TRY(cb_device_copy(CB_CPU, g->host_all, logits->device, data, n * sizeof(float)));
        data = g->host_all;
    }
    for (int64_t b = 0; b < B; b++)
        memcpy(g->last + b * V, data + ((size_t)b * (size_t)T + (size_t)(T - 1)) * (size_t)V,
               sizeof(float) * (size_t)V);
    g->last_valid = true;
    g->pos += T;
    if (all) *all = data;
    double dt = now_s() - t0;
    if (T == 1) {
        g->stats.decode_tokens += 1;
        g->stats.decode_s += dt;
    } else {
        g->stats.prefill_tokens += T;
        g->stats.prefill_s += dt;
    }
    return CB_OK;
}

cb_status cb_generator_feed(cb_generator *g, const int32_t *ids, int64_t B, int64_t T,
                            const float **all_logits) {
    if (T <= 0) return cb_fail(CB_ERR_ARG, "generator: feed of %lld tokens", (long long)T);
    CB_TRY(ensure_caches(g, B));
    for (int64_t i = 0; i < B * T; i++)
        if (ids[i] < 0 || ids[i] >= g->V)
            return cb_fail(
                CB_ERR_ARG,
                "generator: token id %d at index %lld is outside the vocabulary [0, %lld)", ids[i],
                (long long)i, (long long)g->V);
    if (g->pos + T > g->cfg.max_seq_len)
        return cb_fail(CB_ERR_ARG,
                       "generate: %lld tokens in the cache + %lld new exceed max_seq_len %lld",
                       (long long)g->pos, (long long)T, (long long)g->cfg.max_seq_len);
    CB_TRY(cb_model_ensure_positions(g->m, g->pos + T));
    g->has_pending = false;
    int64_t chunk = g->cfg.prefill_chunk;
    if (all_logits || chunk <= 0 || T <= chunk) return forward(g, ids, T, all_logits);
    /* chunked prefill: rows of a chunk are strided, so gather each chunk contiguously */
    size_t need = (size_t)(B * chunk);
    if (need > g->feedbuf_cap) {
        int32_t *p = realloc(g->feedbuf, need * sizeof(int32_t));
        if (!p) return cb_fail(CB_ERR_NOMEM, "generator: feed buffer");
        g->feedbuf = p;
        g->feedbuf_cap = need;
    }
    int64_t start = g->pos;
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        int64_t n = T - t0 < chunk ? T - t0 : chunk;
        for (int64_t b = 0; b < B; b++)
            memcpy(g->feedbuf + b * n, ids + b * T + t0, sizeof(int32_t) * (size_t)n);
        cb_status st = forward(g, g->feedbuf, n, NULL);
        if (st != CB_OK) {
            cb_infer_caches_truncate(&g->ctx, start);
            g->pos = start;
            return st;
        }
    }
    return CB_OK;
}

const float *cb_generator_logits(const cb_generator *g) {
    return g->last_valid ? g->last : NULL;
}

cb_status cb_generator_sample(cb_generator *g, int32_t *tokens) {
    if (!g->last_valid)
        return cb_fail(CB_ERR_ARG, "generator: nothing fed yet (no logits to sample from)");
    double t0 = now_s();
    for (int64_t b = 0; b < g->B; b++) {
        const float *row = g->last + b * g->V;
        if (g->cfg.temperature > 0)
            CB_TRY(cb_token_sampler_probs(&g->sampler, row, g->cfg.temperature, g->cfg.top_k,
                                          g->cfg.top_p));
        tokens[b] = g->cfg.temperature > 0 ? cb_sample_from(g->sampler.probs, g->V, &g->rng)
                                           : cb_argmax(row, g->V);
    }
    g->stats.sampled++;
    g->stats.sample_s += now_s() - t0;
    return CB_OK;
}

cb_status cb_generator_rollback(cb_generator *g, int64_t n) {
    if (n < 0) return cb_fail(CB_ERR_ARG, "generator: rollback of %lld tokens", (long long)n);
    int64_t np = g->pos - n < 0 ? 0 : g->pos - n;
    if (g->have_caches) CB_TRY(cb_infer_caches_truncate(&g->ctx, np));
    g->pos = np;
    g->has_pending = false;
    g->last_valid = false;
    return CB_OK;
}

int64_t cb_generator_pos(const cb_generator *g) {
    return g->pos;
}
int64_t cb_generator_batch(const cb_generator *g) {
    return g->have_caches ? g->B : 0;
}
bool cb_generator_has_pending(const cb_generator *g) {
    return g->has_pending;
}
const char *cb_generator_cache_policy(const cb_generator *g) {
    return g->policy_text;
}
size_t cb_generator_cache_bytes(const cb_generator *g) {
    return g->have_caches ? cb_infer_caches_bytes(&g->ctx) : 0;
}
cb_infer_ctx *cb_generator_ctx(cb_generator *g) {
    return g->have_caches ? &g->ctx : NULL;
}
const cb_generate_config *cb_generator_config(const cb_generator *g) {
    return &g->cfg;
}
cb_generate_stats cb_generator_stats(const cb_generator *g) {
    return g->stats;
}
void cb_generator_stats_clear(cb_generator *g) {
    g->stats = (cb_generate_stats){0};
}

/* Feeds pending + ids, then samples up to max_new tokens into out[b * stride + col0 + i]. */
static cb_status run(cb_generator *g, const int32_t *ids, int64_t B, int64_t T, int64_t max_new,
                     int32_t *out, int64_t stride, int64_t col0, int64_t *n_new, cb_token_fn fn,
                     void *user) {
    *n_new = 0;
    if (T < 0 || max_new < 0) return cb_fail(CB_ERR_ARG, "generate: negative length");
    CB_TRY(ensure_caches(g, B));
    const int32_t pad = cb_generate_pad_id(&g->cfg);
    const int64_t eos = g->cfg.eos_token_id;
    if (pad >= g->V)
        return cb_fail(CB_ERR_ARG, "generate: pad/eos id %d is outside the vocabulary", pad);
    int64_t n_feed = (g->has_pending ? 1 : 0) + T;
    if (n_feed == 0 && !g->last_valid)
        return cb_fail(CB_ERR_ARG, "generate: no prompt and no context to continue from");
    int64_t need = g->pos + n_feed + (max_new > 0 ? max_new - 1 : 0);
    if (need > g->cfg.max_seq_len)
        return cb_fail(
            CB_ERR_ARG,
            "generate: %lld cached + %lld prompt tokens + %lld new tokens need %lld positions, "
            "more than max_seq_len %lld",
            (long long)g->pos, (long long)n_feed, (long long)max_new, (long long)need,
            (long long)g->cfg.max_seq_len);
    CB_TRY(cb_infer_caches_reserve(&g->ctx, need));
    CB_TRY(cb_model_ensure_positions(g->m, need));
    if (n_feed > 0) {
        const int32_t *feed = ids;
        if (g->has_pending) {
            size_t cap = (size_t)(B * n_feed);
            if (cap > g->feedbuf_cap) {
                int32_t *p = realloc(g->feedbuf, cap * sizeof(int32_t));
                if (!p) return cb_fail(CB_ERR_NOMEM, "generator: feed buffer");
                g->feedbuf = p;
                g->feedbuf_cap = cap;
            }
            for (int64_t b = 0; b < B; b++) {
                g->feedbuf[b * n_feed] = g->pending[b];
                if (T)
                    memcpy(g->feedbuf + b * n_feed + 1, ids + b * T, sizeof(int32_t) * (size_t)T);
            }
            feed = g->feedbuf;
        }
        CB_TRY(cb_generator_feed(g, feed, B, n_feed, NULL));
    }
    for (int64_t b = 0; b < B; b++) g->finished[b] = false;
    int64_t i = 0;
    for (; i < max_new; i++) {
        CB_TRY(cb_generator_sample(g, g->tok));
        bool all_done = eos >= 0;
        for (int64_t b = 0; b < B; b++) {
            if (g->finished[b])
                g->tok[b] = pad;
            else if (eos >= 0 && g->tok[b] == eos)
                g->finished[b] = true;
            all_done = all_done && g->finished[b];
            out[b * stride + col0 + i] = g->tok[b];
        }
        bool stop = fn && fn(user, i, g->tok, B);
        if (stop || all_done || i == max_new - 1) {
            memcpy(g->pending, g->tok, sizeof(int32_t) * (size_t)B);
            g->has_pending = true;
            i++;
            break;
        }
        CB_TRY(cb_generator_feed(g, g->tok, B, 1, NULL));
    }
    *n_new = i;
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = i; j < max_new; j++) out[b * stride + col0 + j] = pad;
    return CB_OK;
}

cb_status cb_generator_generate(cb_generator *g, const int32_t *prompt, int64_t B, int64_t S,
                                int32_t *out, int64_t *out_len, cb_token_fn fn, void *user) {
    *out_len = 0;
    if (S < 1) return cb_fail(CB_ERR_ARG, "generate: the prompt is empty");
    cb_generator_reset(g);
    const int64_t N = g->cfg.max_new_tokens, stride = S + N;
    for (int64_t b = 0; b < B; b++)
        memcpy(out + b * stride, prompt + b * S, sizeof(int32_t) * (size_t)S);
    int64_t n = 0;
    CB_TRY(run(g, prompt, B, S, N, out, stride, S, &n, fn, user));
    *out_len = S + n;
    return CB_OK;
}

cb_status cb_generator_continue(cb_generator *g, const int32_t *ids, int64_t B, int64_t T,
                                int64_t max_new, int32_t *out_new, int64_t *n_new, cb_token_fn fn,
                                void *user) {
    if (max_new < 0) max_new = g->cfg.max_new_tokens;
    return run(g, ids, B, T, max_new, out_new, max_new, 0, n_new, fn, user);
}

cb_status cb_generate(cb_model *m, const cb_generate_config *cfg, const int32_t *prompt, int64_t B,
                      int64_t S, int32_t *out, int64_t *out_len, cb_token_fn fn, void *user) {
    cb_generator *g;
    CB_TRY(cb_generator_new(&g, m, cfg));
    cb_status st = cb_generator_generate(g, prompt, B, S, out, out_len, fn, user);
    cb_generator_free(g);
    return st;
}
