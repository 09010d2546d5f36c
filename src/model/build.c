/* Builds a model from the validated, lowered manifest (caramba/manifest.h). The manifest has
 * already checked every width and cross-field rule; this maps each typed node to its module. */
#include <math.h>
#include <stdlib.h>

#include "caramba/manifest.h"
#include "caramba/model.h"
#include "model/module_impl.h"

static cb_status node_fail(const cb_cfg_node *n, cb_status st) {
    return cb_fail_context(st, "%s:%d:%d: %s", n->src.file ? n->src.file : "?", n->src.line,
                           n->src.col, n->src.path ? n->src.path : n->path);
}

static cb_module_kind topology_kind(cb_cfg_kind k) {
    switch (k) {
    case CB_CFG_STACKED: return CB_MOD_STACKED;
    case CB_CFG_SEQUENTIAL: return CB_MOD_SEQUENTIAL;
    case CB_CFG_RESIDUAL: return CB_MOD_RESIDUAL;
    case CB_CFG_NESTED: return CB_MOD_NESTED;
    case CB_CFG_PARALLEL: return CB_MOD_PARALLEL;
    case CB_CFG_BRANCHING: return CB_MOD_BRANCHING;
    case CB_CFG_CYCLIC: return CB_MOD_CYCLIC;
    default: return CB_MOD_RECURRENT;
    }
}

static cb_status attention_from_cfg(const cb_cfg_attention *a, cb_attention_cfg *c) {
    if (a->mem_block > 0)
        return cb_fail(CB_ERR_UNSUPPORTED, "mem_block summarisation is not implemented");
    *c = (cb_attention_cfg){
        .d_model = (int)a->d_model,
        .n_heads = (int)a->n_heads,
        .n_kv_heads = (int)a->kv_heads,
        .mode = a->mode == CB_CFG_ATTN_DECOUPLED ? CB_ATTN_DECOUPLED
                : a->mode == CB_CFG_ATTN_GQA     ? CB_ATTN_GQA
                                                 : CB_ATTN_STANDARD,
        .head_dim = (int)a->head_dim,
        .v_head_dim = (int)a->v_head_dim,
        .sem_head_dim = (int)a->sem_head_dim,
        .geo_head_dim = (int)a->geo_head_dim,
        .rope_enabled = a->rope_enabled,
        .rope_rot = 0, /* the whole (geo) head rotates */
        .rope_basis = (int)a->rope_dim,
        .rope = {.theta = (float)a->rope_base, .type = CB_ROPE_DEFAULT},
        .is_causal = a->is_causal,
        .dropout_p = (float)a->dropout_p,
        .bias = a->bias,
        .learned_temp = a->learned_temp,
        .decoupled_gate = a->decoupled_gate,
        .decoupled_gate_dynamic = a->decoupled_gate_dynamic,
        .q_chunk = (int)a->q_chunk,
        .local_window = (int)a->local_window,
    };
    if (a->rope_scaling.enabled) {
        c->rope.type = CB_ROPE_LLAMA3;
        c->rope.factor = (float)a->rope_scaling.factor;
        c->rope.low_freq_factor = (float)a->rope_scaling.low_freq_factor;
        c->rope.high_freq_factor = (float)a->rope_scaling.high_freq_factor;
        c->rope.original_max_pos = (int)a->rope_scaling.original_max_position_embeddings;
    }
    return CB_OK;
}

static cb_status build_node(const cb_cfg_node *n, cb_module **out) {
    *out = NULL;
    cb_status st = CB_OK;
    if (cb_cfg_is_topology(n->kind)) {
        cb_module **kids = calloc((size_t)n->n_layers + 1, sizeof *kids);
        if (!kids) return cb_fail(CB_ERR_NOMEM, "topology");
        int k = 0;
        for (; k < n->n_layers && st == CB_OK; k++) st = build_node(&n->layers[k], &kids[k]);
        if (st == CB_OK) st = cb_topology_new(out, topology_kind(n->kind), kids, n->n_layers);
        if (st != CB_OK)
            for (int i = 0; i < k; i++) cb_module_free(kids[i]);
        free(kids);
        return st == CB_OK ? st : node_fail(n, st);
    }
    switch (n->kind) {
    case CB_CFG_LINEAR: st = cb_linear_new(out, (int)n->linear.d_in, (int)n->linear.d_out, n->linear.bias); break;
    case CB_CFG_LAYER_NORM: st = cb_layernorm_new(out, (int)n->layer_norm.d_model, (float)n->layer_norm.eps); break;
    case CB_CFG_RMS_NORM:
        st = cb_rmsnorm_new(out, (int)n->rms_norm.d_model, (float)n->rms_norm.eps, n->rms_norm.elementwise_affine);
        break;
    case CB_CFG_DROPOUT: st = cb_dropout_new(out, (float)n->dropout.p); break;
    case CB_CFG_SWIGLU: st = cb_swiglu_new(out, (int)n->swiglu.d_model, (int)n->swiglu.d_ff, n->swiglu.bias); break;
    case CB_CFG_ATTENTION: {
        cb_attention_cfg c;
        st = attention_from_cfg(&n->attention, &c);
        if (st == CB_OK) st = cb_attention_new(out, &c);
        break;
    }
    default: st = cb_fail(CB_ERR_INTERNAL, "unknown node kind %d", (int)n->kind);
    }
    return st == CB_OK ? st : node_fail(n, st);
}

cb_status cb_model_from_manifest(cb_model **out, const cb_model_cfg *cfg, cb_device dev,
                                 uint64_t seed, int64_t max_seq_len) {
    *out = NULL;
    if (cfg->diffusion_head.enabled)
        return cb_fail(CB_ERR_UNSUPPORTED, "model.diffusion_head is not implemented");
    cb_module *root;
    CB_TRY(build_node(&cfg->topology, &root));
    int64_t vocab = cfg->embedder.type == CB_EMBED_TOKEN ? cfg->embedder.vocab_size : 0;
    int d = (int)(vocab ? cfg->embedder.d_model : cfg->topology.d_in);
    cb_model *m;
    cb_status st = cb_model_new(&m, vocab, d, root, vocab ? cfg->tied_embeddings : false);
    if (st != CB_OK) {
        cb_module_free(root);
        return st;
    }
    st = cb_model_finalize(m, dev, seed, max_seq_len);
    if (st != CB_OK) {
        cb_model_free(m);
        return st;
    }
    *out = m;
    return CB_OK;
}
