/* Model assembly: naming, parameter allocation and initialisation, rope tables, forward, loss. */
#include "caramba/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/device.h"
#include "caramba/rng.h"
#include "model/module_impl.h"
#include "model/model_impl.h"

cb_status cb_model_new(cb_model **out, int64_t vocab_size, int d_model, cb_module *root, bool tied) {
    *out = NULL;
    if (!root) return cb_fail(CB_ERR_ARG, "model: no topology");
    if (vocab_size < 0 || d_model <= 0)
        return cb_fail(CB_ERR_ARG, "model: bad vocab size %lld or d_model %d", (long long)vocab_size, d_model);
    if (tied && vocab_size == 0)
        return cb_fail(CB_ERR_ARG, "model: tied embeddings need a token embedder");
    cb_model *m = calloc(1, sizeof *m);
    if (!m) return cb_fail(CB_ERR_NOMEM, "model");
    m->vocab_size = vocab_size;
    m->d_model = d_model;
    m->root = root;
    m->tied = tied;
    m->bos_id = m->eos_id = -1;
    if (vocab_size > 0) {
        m->embed.local = strdup("token_embedding.weight");
        m->embed.t = calloc(1, sizeof *m->embed.t);
        int64_t sh[2] = {vocab_size, d_model};
        if (!m->embed.local || !m->embed.t || cb_tensor_init(m->embed.t, CB_F32, CB_CPU, 2, sh, NULL) != CB_OK) {
            cb_model_free(m);
            return cb_fail(CB_ERR_NOMEM, "model: embedding");
        }
        m->embed.init = CB_INIT_NORMAL;
        m->embed.init_scale = 1.0f;
        m->embed.no_decay = true;
    }
    *out = m;
    return CB_OK;
}

static cb_status assign_paths(cb_module *mod, const char *path) {
    free(mod->path);
    mod->path = strdup(path);
    if (!mod->path) return cb_fail(CB_ERR_NOMEM, "module path");
    for (int i = 0; i < mod->n_params; i++) {
        free(mod->params[i].name);
        size_t n = strlen(path) + strlen(mod->params[i].local) + 2;
        mod->params[i].name = malloc(n);
        if (!mod->params[i].name) return cb_fail(CB_ERR_NOMEM, "parameter name");
        snprintf(mod->params[i].name, n, "%s.%s", path, mod->params[i].local);
    }
    for (int i = 0; i < mod->n_children; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s.layers.%d", path, i);
        CB_TRY(assign_paths(mod->children[i], buf));
    }
    return CB_OK;
}

typedef struct collect_state {
    cb_model *m;
    cb_status st;
} collect_state;

static void collect(cb_module *mod, void *user) {
    collect_state *cs = user;
    cb_model *m = cs->m;
    if (cs->st != CB_OK) return;
    for (int i = 0; i < mod->n_params; i++) m->params[m->n_params++] = &mod->params[i];
    if (mod->kind == CB_MOD_ATTENTION) {
        mod->attn_index = m->n_attn;
        m->attn[m->n_attn++] = mod;
    }
}

static void count(cb_module *mod, void *user) {
    int *c = user;
    c[0] += mod->n_params;
    c[1] += mod->kind == CB_MOD_ATTENTION;
}

static cb_status init_param(cb_param *p, cb_device dev, cb_rng *rng) {
    cb_tensor *t = p->t;
    int64_t n = cb_tensor_numel(t);
    float *host = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!host) return cb_fail(CB_ERR_NOMEM, "%s: cannot allocate %lld values", p->name, (long long)n);
    float bound = p->init_scale > 0 ? 1.0f / sqrtf(p->init_scale) : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        switch (p->init) {
        case CB_INIT_ZEROS: host[i] = 0; break;
        case CB_INIT_ONES: host[i] = 1; break;
        case CB_INIT_UNIFORM_FAN_IN: host[i] = (2.0f * cb_rng_uniform(rng) - 1.0f) * bound; break;
        case CB_INIT_NORMAL: host[i] = p->init_scale * cb_rng_normal(rng); break;
        }
    }
    t->device = dev;
    t->data = cb_device_alloc(dev, cb_tensor_nbytes(t));
    cb_status st = t->data ? cb_device_copy(dev, t->data, CB_CPU, host, cb_tensor_nbytes(t))
                           : CB_ERR_NOMEM;
    t->flags |= CB_TENSOR_OWNS_DATA | CB_TENSOR_PARAM;
    free(host);
    return st;
}

cb_status cb_model_finalize(cb_model *m, cb_device dev, uint64_t seed, int64_t max_seq_len) {
    if (m->finalized) return cb_fail(CB_ERR_ARG, "model already finalised");
    int w = cb_module_out_width(m->root, m->d_model);
    if (w < 0) return cb_fail_context(CB_ERR_SHAPE, "model");
    if (m->tied && w != m->d_model)
        return cb_fail(CB_ERR_SHAPE, "model: tied embeddings need features of width %d, the topology "
                                     "ends with width %d (an explicit head with tied embeddings?)",
                       m->d_model, w);
    if (!m->tied && m->vocab_size > 0 && w != m->vocab_size)
        return cb_fail(CB_ERR_SHAPE, "model: untied model must end with a head of width %lld (vocab), "
                                     "the topology ends with width %d",
                       (long long)m->vocab_size, w);
    CB_TRY(assign_paths(m->root, "topology"));
    if (m->vocab_size > 0) {
        free(m->embed.name);
        m->embed.name = strdup("embedder.token_embedding.weight");
    }
    int c[2] = {m->vocab_size > 0, 0};
    cb_module_walk(m->root, count, c);
    m->params = calloc((size_t)c[0] + 1, sizeof *m->params);
    m->attn = calloc((size_t)c[1] + 1, sizeof *m->attn);
    if (!m->params || !m->attn) return cb_fail(CB_ERR_NOMEM, "model parameter lists");
    if (m->vocab_size > 0) m->params[m->n_params++] = &m->embed;
    collect_state cs = {m, CB_OK};
    cb_module_walk(m->root, collect, &cs);
    CB_TRY(cs.st);
    cb_model_apply_llama_names(m);
    m->device = dev;
    cb_rng rng;
    cb_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_params; i++) CB_TRY(init_param(m->params[i], dev, &rng));
    m->max_seq_len = max_seq_len > 0 ? max_seq_len : 2048;
    CB_TRY(cb_model_build_ropes(m));
    m->finalized = true;
    return CB_OK;
}

void cb_model_free(cb_model *m) {
    if (!m) return;
    cb_module_free(m->root);
    free(m->embed.local);
    free(m->embed.name);
    cb_tensor_free(m->embed.t);
    free(m->params);
    free(m->attn);
    cb_model_free_ropes(m);
    free(m);
}

cb_status cb_model_enable_grads(cb_model *m) {
    for (int i = 0; i < m->n_params; i++) CB_TRY(cb_tensor_enable_grad(m->params[i]->t));
    return CB_OK;
}

cb_status cb_model_zero_grads(cb_model *m) {
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i]->t->grad) CB_TRY(cb_tensor_zero(m->params[i]->t->grad));
    return CB_OK;
}

int64_t cb_model_param_count(const cb_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += cb_tensor_numel(m->params[i]->t);
    return n;
}

cb_param *cb_model_find_param(const cb_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i]->name, name) == 0) return m->params[i];
    return NULL;
}

cb_tensor *cb_model_forward(cb_model *m, cb_graph *g, const cb_tensor *ids, cb_infer_ctx *ctx) {
    if (!ids) return NULL;
    if (ids->ndim != (m->vocab_size > 0 ? 2 : 3)) {
        char s[64];
        cb_fail(CB_ERR_SHAPE, "model input must be %s, got %s", m->vocab_size > 0 ? "ids [B, T]" : "[B, T, d]",
                cb_shape_str(ids, s, sizeof s));
        return NULL;
    }
    int64_t end = (ctx ? ctx->pos_offset : 0) + ids->shape[1];
    if (cb_model_ensure_positions(m, end) != CB_OK) return NULL;
    if (m->compute_dtype != CB_F32 && g->device == m->device) g->act_dtype = m->compute_dtype;
    if (ids->device != g->device) { /* host ids (or features) to the graph's device */
        cb_tensor *d = cb_graph_tensor(g, ids->dtype, ids->ndim, ids->shape);
        if (!d || cb_device_copy(g->device, d->data, ids->device, ids->data, cb_tensor_nbytes(ids)) != CB_OK)
            return NULL;
        ids = d;
    }
    cb_tensor *x = m->vocab_size > 0 ? cb_embedding(g, ids, m->embed.t) : (cb_tensor *)ids;
    cb_tensor *f = cb_module_forward(m->root, g, x, ctx);
    return m->tied ? cb_linear(g, f, m->embed.t, NULL) : f;
}

cb_tensor *cb_model_loss(cb_model *m, cb_graph *g, const cb_tensor *x, const cb_tensor *y) {
    if (y && y->device != g->device) { /* targets live where the logits are */
        cb_tensor *d = cb_graph_tensor(g, y->dtype, y->ndim, y->shape);
        if (!d || cb_device_copy(g->device, d->data, y->device, y->data, cb_tensor_nbytes(y)) != CB_OK)
            return NULL;
        y = d;
    }
    return cb_cross_entropy(g, cb_model_forward(m, g, x, NULL), y, -100);
}

cb_tensor *cb_model_next_token_loss(cb_model *m, cb_graph *g, const cb_tensor *ids) {
    if (!ids || ids->ndim != 2 || ids->shape[1] < 2) {
        cb_fail(CB_ERR_SHAPE, "next-token loss needs ids [B, T] with T >= 2");
        return NULL;
    }
    int64_t B = ids->shape[0], T = ids->shape[1];
    int64_t *tg = cb_arena_alloc(&g->host, sizeof(int64_t) * (size_t)(B * T));
    if (!tg) return NULL;
    /* targets[b, t] = ids[b, t+1]; the last position of each row is ignored */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t + 1;
            tg[b * T + t] = t + 1 < T ? (ids->dtype == CB_I64 ? ((const int64_t *)ids->data)[i]
                                                               : ((const int32_t *)ids->data)[i])
                                      : -100;
        }
    int64_t sh[2] = {B, T};
    cb_tensor *targets = cb_graph_wrap(g, CB_I64, 2, sh, tg);
    if (targets) targets->device = CB_CPU; /* host arena memory: cb_model_loss moves it */
    return cb_model_loss(m, g, ids, targets);
}
