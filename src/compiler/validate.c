/* Dimension flow over the lowered model: every layer's input width must match the stream it
 * receives; Residual gives back its input shape; Parallel stacks same-shaped branch outputs on a
 * new leading dim; Branching concatenates branch outputs on the feature dim. Also parameter
 * counts, the size limits, and embedder / head / tied-embedding consistency. */
#include <stdio.h>
#include <string.h>

#include "compiler/compiler.h"

typedef struct shape {
    int n_lead;
    int64_t lead[2];
    int64_t w; /* 0 = not fixed yet (no embedder and nothing has set it) */
} shape;

static int64_t sat_add(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t sat_mul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t attention_params(const cb_cfg_attention *a) {
    int64_t d = a->d_model, H = a->n_heads, p = 0;
    if (a->mode != CB_CFG_ATTN_DECOUPLED) {
        /* q_proj [attn_dim, d], k_proj/v_proj [Hkv*hd, d], out_proj [d, attn_dim] */
        p = sat_add(p, sat_mul(a->attn_dim, d));
        p = sat_add(p, sat_mul(2 * a->k_width, d));
        p = sat_add(p, sat_mul(d, a->attn_dim));
        if (a->bias) p = sat_add(p, a->attn_dim + 2 * a->k_width + d);
    } else {
        /* q_sem [sem_dim, d], k_sem [sem_dim*Hkv/H, d], q_geo [geo_dim, d], k_geo [geo_dim*Hkv/H,
         * d], v_proj [v_dim*Hkv/H, d], out_proj [d, v_dim] */
        int64_t rows = a->sem_dim + a->k_sem_width + a->geo_dim + a->k_geo_width + a->v_width;
        p = sat_add(p, sat_mul(rows, d));
        p = sat_add(p, sat_mul(d, a->v_dim));
        if (a->bias) p = sat_add(p, rows + d);
        if (a->decoupled_gate) p = sat_add(p, H);                     /* decoupled_gate_logit */
        if (a->decoupled_gate_dynamic) p = sat_add(p, sat_mul(H, d)); /* decoupled_gate_proj */
    }
    if (a->learned_temp) p = sat_add(p, H); /* logit_scale */
    if (a->mem_block && a->mem_summarize == CB_CFG_MEM_LINEAR)
        p = sat_add(p, sat_mul(2 * a->head_dim, a->head_dim)); /* mem_k_proj, mem_v_proj */
    if (a->mem_block && a->mem_summarize == CB_CFG_MEM_CONV) p = sat_add(p, 3 * a->head_dim);
    return p;
}

static int64_t layer_params(const cb_cfg_node *m) {
    switch (m->kind) {
    case CB_CFG_LINEAR:
        return sat_add(sat_mul(m->linear.d_out, m->linear.d_in),
                       m->linear.bias ? m->linear.d_out : 0);
    case CB_CFG_LAYER_NORM:
        return 2 * m->layer_norm.d_model;
    case CB_CFG_RMS_NORM:
        return m->rms_norm.elementwise_affine ? m->rms_norm.d_model : 0;
    case CB_CFG_DROPOUT:
        return 0;
    case CB_CFG_SWIGLU: {
        int64_t d = m->swiglu.d_model, f = m->swiglu.d_ff;
        return sat_add(sat_mul(3, sat_mul(d, f)), m->swiglu.bias ? 2 * f + d : 0);
    }
    case CB_CFG_ATTENTION:
        return attention_params(&m->attention);
    default:
        return 0;
    }
}

static const char *shape_str(cb_sctx *c, shape s) {
    char lead[64] = "";
    size_t n = 0;
    for (int i = 0; i < s.n_lead; i++)
        n += (size_t)snprintf(lead + n, sizeof lead - n, "%lld, ", (long long)s.lead[i]);
    const char *r = s.w ? cb_pool_printf(c->pool, "(%sB, T, %lld)", lead, (long long)s.w)
                        : cb_pool_printf(c->pool, "(%sB, T, ?)", lead);
    return r ? r : "(?)";
}

static int same_lead(shape a, shape b) {
    if (a.n_lead != b.n_lead) return 0;
    for (int i = 0; i < a.n_lead; i++)
        if (a.lead[i] != b.lead[i]) return 0;
    return 1;
}

static void ferr(cb_sctx *c, const cb_cfg_node *m, int in_rep, const char *key, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
static void ferr(cb_sctx *c, const cb_cfg_node *m, int in_rep, const char *key, const char *fmt,
                 ...) {
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (in_rep)
        cb_sc_err_key(c, &m->src, key, "%s (in the repeated copy %s)", msg, m->path);
    else
        cb_sc_err_key(c, &m->src, key, "%s", msg);
}

/* The input width a node fixes by itself (0 when it takes any width), without walking more than
 * the node's subtree once: layers fix theirs; a chain is fixed by its first child that fixes one,
 * looking only past children that give back their input unchanged (dropout, chains of them);
 * Parallel / Branching by any branch. */
static int64_t input_width(const cb_cfg_node *m) {
    switch (m->kind) {
    case CB_CFG_LINEAR:
        return m->linear.d_in;
    case CB_CFG_LAYER_NORM:
        return m->layer_norm.d_model;
    case CB_CFG_RMS_NORM:
        return m->rms_norm.d_model;
    case CB_CFG_SWIGLU:
        return m->swiglu.d_model;
    case CB_CFG_ATTENTION:
        return m->attention.d_model;
    case CB_CFG_DROPOUT:
        return 0;
    case CB_CFG_PARALLEL:
    case CB_CFG_BRANCHING:
        for (int i = 0; i < m->n_layers; i++) {
            int64_t w = input_width(&m->layers[i]);
            if (w) return w;
        }
        return 0;
    default:
        for (int i = 0; i < m->n_layers; i++) {
            const cb_cfg_node *ch = &m->layers[i];
            int64_t w = input_width(ch);
            if (w) return w;
            if (ch->kind == CB_CFG_PARALLEL || ch->kind == CB_CFG_BRANCHING) return 0;
        }
        return 0;
    }
}

static int flow(cb_sctx *c, cb_cfg_node *m, shape in, shape *out, int in_rep) {
    in_rep |= m->rep > 0;
    m->n_params = 0;
    shape o = in;
    int64_t d = 0;
    switch (m->kind) {
    case CB_CFG_LINEAR:
        if (in.w && in.w != m->linear.d_in) {
            ferr(c, m, in_rep, "d_in",
                 "expected d_in=%lld (the width of the stream here), got %lld", (long long)in.w,
                 (long long)m->linear.d_in);
            return 1;
        }
        in.w = m->linear.d_in;
        o.w = m->linear.d_out;
        break;
    case CB_CFG_LAYER_NORM:
        d = m->layer_norm.d_model;
        goto width_layer;
    case CB_CFG_RMS_NORM:
        d = m->rms_norm.d_model;
        goto width_layer;
    case CB_CFG_SWIGLU:
        d = m->swiglu.d_model;
        goto width_layer;
    case CB_CFG_ATTENTION:
        d = m->attention.d_model;
        if (in.n_lead) {
            ferr(c, m, in_rep, NULL,
                 "an AttentionLayer needs a (B, T, D) input, but a ParallelTopology before it "
                 "made it %s",
                 shape_str(c, in));
            return 1;
        }
    width_layer:
        if (in.w && in.w != d) {
            ferr(c, m, in_rep, "d_model",
                 "expected d_model=%lld (the width of the stream here), got %lld", (long long)in.w,
                 (long long)d);
            return 1;
        }
        in.w = d;
        o.w = d;
        break;
    case CB_CFG_DROPOUT:
        break;
    case CB_CFG_PARALLEL:
    case CB_CFG_BRANCHING: {
        shape first = {0};
        int64_t sum = 0;
        /* every branch reads the same input: one branch that fixes its width fixes it for all
         * (so a dropout branch next to a linear one has a known width) */
        if (!in.w) in.w = input_width(m);
        for (int i = 0; i < m->n_layers; i++) {
            shape b;
            if (flow(c, &m->layers[i], in, &b, in_rep)) return 1;
            if (i == 0) first = b;
            if (!same_lead(b, first)) {
                ferr(c, &m->layers[i], in_rep, NULL,
                     "%s branches must have the same leading dims: layers[0] gives %s, this one %s",
                     cb_cfg_kind_name(m->kind), shape_str(c, first), shape_str(c, b));
                return 1;
            }
            if (m->kind == CB_CFG_PARALLEL && b.w && first.w && b.w != first.w) {
                ferr(c, &m->layers[i], in_rep, NULL,
                     "ParallelTopology stacks its branches on a new leading dim, so they must "
                     "produce the same shape: layers[0] gives %s, this one %s",
                     shape_str(c, first), shape_str(c, b));
                return 1;
            }
            if (m->kind == CB_CFG_BRANCHING) {
                if (!b.w) {
                    ferr(c, &m->layers[i], in_rep, NULL,
                         "BranchingTopology concatenates branch outputs on the feature dim, so "
                         "each branch's output width must be known (this branch leaves it open)");
                    return 1;
                }
                sum = sat_add(sum, b.w);
            }
            m->n_params = sat_add(m->n_params, m->layers[i].n_params);
        }
        if (m->kind == CB_CFG_PARALLEL) {
            o = first;
            if (o.n_lead >= 2) {
                ferr(c, m, in_rep, NULL,
                     "nested ParallelTopology would make a rank-5 tensor %s (tensors have at most "
                     "4 dims)",
                     shape_str(c, o));
                return 1;
            }
            memmove(o.lead + 1, o.lead, (size_t)o.n_lead * sizeof o.lead[0]);
            o.lead[0] = m->n_layers;
            o.n_lead++;
        } else {
            if (sum > CB_MANIFEST_MAX_DIM) {
                ferr(c, m, in_rep, NULL,
                     "BranchingTopology output width %lld is an absurd size (the limit is 2^24)",
                     (long long)sum);
                return 1;
            }
            o = first;
            o.w = sum;
        }
        break;
    }
    default: { /* chains, and Residual around a chain */
        shape cur = in;
        for (int i = 0; i < m->n_layers; i++) {
            if (flow(c, &m->layers[i], cur, &cur, in_rep)) return 1;
            if (!in.w && i == 0) in.w = m->layers[0].d_in;
            m->n_params = sat_add(m->n_params, m->layers[i].n_params);
        }
        o = cur;
        if (m->kind == CB_CFG_RESIDUAL) {
            if (!in.w) in.w = o.w;
            if ((o.w && in.w && o.w != in.w) || !same_lead(o, in)) {
                ferr(c, m, in_rep, NULL,
                     "a ResidualTopology must give back its input shape (x + f(x)): input %s, "
                     "output %s",
                     shape_str(c, in), shape_str(c, o));
                return 1;
            }
            o.w = in.w;
        }
        break;
    }
    }
    if (!cb_cfg_is_topology(m->kind)) m->n_params = layer_params(m);
    m->d_in = in.w;
    m->d_out = o.w;
    m->n_lead = o.n_lead;
    m->lead[0] = o.lead[0];
    m->lead[1] = o.lead[1];
    *out = o;
    return 0;
}

static void count_attention(const cb_cfg_node *m, void *ud) {
    if (m->kind == CB_CFG_ATTENTION) (*(int *)ud)++;
}

int cb_validate_model(cb_sctx *c, cb_model_cfg *m) {
    int before = cb_sc_nerr(c);
    shape in = {0}, out;
    const cb_embedder_cfg *e = &m->embedder;
    if (e->type == CB_EMBED_TOKEN) in.w = e->d_model;
    if (flow(c, &m->topology, in, &out, 0)) return cb_sc_nerr(c) - before;
    int64_t emb = e->type == CB_EMBED_TOKEN ? sat_mul(e->vocab_size, e->d_model) : 0;
    m->n_params = sat_add(emb, m->topology.n_params);
    const cb_cfg_src *ts = &m->topology.src;
    if (m->n_params > CB_MANIFEST_MAX_PARAMS) {
        cb_sc_err(c, ts->node, ts->path,
                  "the model has %lld parameters, more than the 10^12 allowed (an absurd size)",
                  (long long)m->n_params);
        return cb_sc_nerr(c) - before;
    }
    if (e->type == CB_EMBED_TOKEN) {
        if (out.n_lead) {
            cb_sc_err(c, ts->node, ts->path,
                      "a language model must end with shape (B, T, vocab), the topology gives %s",
                      shape_str(c, out));
        } else if (m->tied_embeddings) {
            if (out.w != e->d_model) {
                if (out.w == e->vocab_size)
                    cb_sc_err_key(c, &m->src, "tied_embeddings",
                                  "tied_embeddings is true%s but the topology already ends in a "
                                  "vocab-sized head (width %lld): set tied_embeddings: false, or "
                                  "remove the head",
                                  cb_sc_given(&m->src, "tied_embeddings") ? "" : " (the default)",
                                  (long long)out.w);
                else
                    cb_sc_err(c, ts->node, ts->path,
                              "with tied embeddings the topology must end at width "
                              "embedder.d_model=%lld (logits = features . E^T); it ends at %lld",
                              (long long)e->d_model, (long long)out.w);
            }
        } else if (out.w != e->vocab_size) {
            cb_sc_err(
                c, ts->node, ts->path,
                "tied_embeddings is false, so the topology must end in a head of width "
                "vocab_size=%lld (a LinearLayer d_in=%lld, d_out=%lld); it ends at width %lld",
                (long long)e->vocab_size, (long long)e->d_model, (long long)e->vocab_size,
                (long long)out.w);
        }
        m->d_out = e->vocab_size;
    } else {
        m->d_out = out.w;
    }
    m->n_attention = 0;
    cb_cfg_walk(&m->topology, count_attention, &m->n_attention);
    return cb_sc_nerr(c) - before;
}
