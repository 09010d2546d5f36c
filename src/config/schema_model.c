/* The model section: type, embedder, the topology tree with every layer kind, and the per-layer
 * cross-field rules (attention heads, RoPE sizes, decoupled widths). The width flow through the
 * tree is checked after lowering (src/compiler/validate.c). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config/schema.h"

/* ---- type names ---------------------------------------------------------------------------- */

static const char *const MODULE_NAMES[CB_CFG_KIND_COUNT] = {
    "StackedTopology",  "SequentialTopology", "ResidualTopology", "NestedTopology",
    "ParallelTopology", "BranchingTopology",  "CyclicTopology",   "RecurrentTopology",
    "LinearLayer",      "LayerNormLayer",     "RMSNormLayer",     "DropoutLayer",
    "SwiGLULayer",      "AttentionLayer",
};

static const struct {
    const char *alias, *canonical;
} ALIASES[] = {
    {"transformer", "TransformerModel"},
    {"gpt", "GPTModel"},
    {"vit", "ViTModel"},
    {"mlp", "MLPModel"},
    {"stacked", "StackedTopology"},
    {"sequential", "SequentialTopology"},
    {"residual", "ResidualTopology"},
    {"nested", "NestedTopology"},
    {"parallel", "ParallelTopology"},
    {"branching", "BranchingTopology"},
    {"cyclic", "CyclicTopology"},
    {"recurrent", "RecurrentTopology"},
    {"linear", "LinearLayer"},
    {"layer_norm", "LayerNormLayer"},
    {"rms_norm", "RMSNormLayer"},
    {"dropout", "DropoutLayer"},
    {"swiglu", "SwiGLULayer"},
    {"attention", "AttentionLayer"},
    {"layernorm", "LayerNormLayer"},
    {"rmsnorm", "RMSNormLayer"},
};

static const char *const MODEL_TYPES[] = {"TransformerModel", "GPTModel", "ViTModel", "MLPModel"};

const char *cb_cfg_kind_name(cb_cfg_kind k) {
    return (unsigned)k < CB_CFG_KIND_COUNT ? MODULE_NAMES[k] : "?";
}

int cb_cfg_kind_from_name(const char *canonical) {
    for (int i = 0; i < CB_CFG_KIND_COUNT; i++)
        if (strcmp(MODULE_NAMES[i], canonical) == 0) return i;
    return -1;
}

const char *cb_type_canonical(const char *name) {
    for (int i = 0; i < CB_CFG_KIND_COUNT; i++)
        if (strcmp(MODULE_NAMES[i], name) == 0) return MODULE_NAMES[i];
    for (int i = 0; i < 4; i++)
        if (strcmp(MODEL_TYPES[i], name) == 0) return MODEL_TYPES[i];
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        const char *a = ALIASES[i].alias;
        size_t la = strlen(a);
        if (strcmp(name, a) == 0) return ALIASES[i].canonical;
        /* snake_case of the full name: stacked_topology, rms_norm_layer, transformer_model */
        if (strncmp(name, a, la) == 0 && name[la] == '_') {
            const char *rest = name + la + 1;
            const char *can = ALIASES[i].canonical;
            size_t lc = strlen(can);
            if ((strcmp(rest, "topology") == 0 && lc > 8 &&
                 strcmp(can + lc - 8, "Topology") == 0) ||
                (strcmp(rest, "layer") == 0 && lc > 5 && strcmp(can + lc - 5, "Layer") == 0) ||
                (strcmp(rest, "model") == 0 && lc > 5 && strcmp(can + lc - 5, "Model") == 0))
                return can;
        }
    }
    return NULL;
}

/* ---- field tables -------------------------------------------------------------------------- */

#define MOFF(member) offsetof(cb_cfg_node, member)

static int read_layers(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst);
static int read_rope_scaling(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst);

static const cb_sfield TOPOLOGY_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"layers", SF_FN, SF_REQ, MOFF(layers), NULL, 0, read_layers},
    {"repeat", SF_INT, SF_POS, MOFF(repeat), NULL, 0, NULL},
};

static const cb_sfield LINEAR_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"d_in", SF_INT, SF_REQ | SF_POS | SF_DIM, MOFF(linear.d_in), NULL, 0, NULL},
    {"d_out", SF_INT, SF_REQ | SF_POS | SF_DIM, MOFF(linear.d_out), NULL, 0, NULL},
    {"bias", SF_BOOL, 0, MOFF(linear.bias), NULL, 0, NULL},
};

static const cb_sfield LAYER_NORM_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"d_model", SF_INT, SF_REQ | SF_POS | SF_DIM, MOFF(layer_norm.d_model), NULL, 0, NULL},
    {"eps", SF_FLOAT, SF_POS, MOFF(layer_norm.eps), NULL, 0, NULL},
};

static const cb_sfield RMS_NORM_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"d_model", SF_INT, SF_REQ | SF_POS | SF_DIM, MOFF(rms_norm.d_model), NULL, 0, NULL},
    {"eps", SF_FLOAT, SF_POS, MOFF(rms_norm.eps), NULL, 0, NULL},
    {"elementwise_affine", SF_BOOL, 0, MOFF(rms_norm.elementwise_affine), NULL, 0, NULL},
};

static const cb_sfield DROPOUT_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"p", SF_FLOAT, SF_PROB, MOFF(dropout.p), NULL, 0, NULL},
};

static const cb_sfield SWIGLU_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"d_model", SF_INT, SF_REQ | SF_POS | SF_DIM, MOFF(swiglu.d_model), NULL, 0, NULL},
    {"d_ff", SF_INT, SF_REQ | SF_POS | SF_DIM, MOFF(swiglu.d_ff), NULL, 0, NULL},
    {"bias", SF_BOOL, 0, MOFF(swiglu.bias), NULL, 0, NULL},
};

static const char *const ATTN_MODES[] = {"standard", "gqa", "decoupled"};
static const char *const MEM_KINDS[] = {"mean", "linear", "conv"};

#define POSDIM (SF_POS | SF_DIM | SF_NULLOK)
static const cb_sfield ATTENTION_FIELDS[] = {
    {"type", SF_IGNORE, 0, 0, NULL, 0, NULL},
    {"d_model", SF_INT, SF_REQ | SF_POS | SF_DIM, MOFF(attention.d_model), NULL, 0, NULL},
    {"n_heads", SF_INT, SF_REQ | SF_POS | SF_DIM, MOFF(attention.n_heads), NULL, 0, NULL},
    {"n_kv_heads", SF_INT, POSDIM, MOFF(attention.n_kv_heads), NULL, 0, NULL},
    {"mode", SF_ENUM, 0, MOFF(attention.mode), ATTN_MODES, 3, NULL},
    {"attn_dim", SF_INT, POSDIM, MOFF(attention.attn_dim), NULL, 0, NULL},
    {"sem_dim", SF_INT, POSDIM, MOFF(attention.sem_dim), NULL, 0, NULL},
    {"geo_dim", SF_INT, POSDIM, MOFF(attention.geo_dim), NULL, 0, NULL},
    {"v_dim", SF_INT, POSDIM, MOFF(attention.v_dim), NULL, 0, NULL},
    {"rope_enabled", SF_BOOL, 0, MOFF(attention.rope_enabled), NULL, 0, NULL},
    {"rope_base", SF_FLOAT, SF_POS, MOFF(attention.rope_base), NULL, 0, NULL},
    {"rope_dim", SF_INT, POSDIM, MOFF(attention.rope_dim), NULL, 0, NULL},
    {"rope_scaling", SF_FN, SF_NULLOK, MOFF(attention.rope_scaling), NULL, 0, read_rope_scaling},
    {"decoupled_gate", SF_BOOL, 0, MOFF(attention.decoupled_gate), NULL, 0, NULL},
    {"decoupled_gate_dynamic", SF_BOOL, 0, MOFF(attention.decoupled_gate_dynamic), NULL, 0, NULL},
    {"is_causal", SF_BOOL, 0, MOFF(attention.is_causal), NULL, 0, NULL},
    {"dropout_p", SF_FLOAT, SF_PROB, MOFF(attention.dropout_p), NULL, 0, NULL},
    {"bias", SF_BOOL, 0, MOFF(attention.bias), NULL, 0, NULL},
    {"learned_temp", SF_BOOL, 0, MOFF(attention.learned_temp), NULL, 0, NULL},
    {"q_chunk", SF_INT, POSDIM, MOFF(attention.q_chunk), NULL, 0, NULL},
    {"local_window", SF_INT, POSDIM, MOFF(attention.local_window), NULL, 0, NULL},
    {"mem_block", SF_INT, POSDIM, MOFF(attention.mem_block), NULL, 0, NULL},
    {"mem_summarize", SF_ENUM, 0, MOFF(attention.mem_summarize), MEM_KINDS, 3, NULL},
    {"mem_activation_threshold", SF_INT, POSDIM, MOFF(attention.mem_activation_threshold), NULL, 0,
     NULL},
};

static const char *const ROPE_SCALING_TYPES[] = {"llama3"};
#define RSOFF(m) offsetof(cb_cfg_rope_scaling, m)
static const cb_sfield ROPE_SCALING_FIELDS[] = {
    {"type", SF_ENUM, SF_REQ, 0, ROPE_SCALING_TYPES, 1, NULL}, /* stored nowhere (one value) */
    {"factor", SF_FLOAT, SF_REQ | SF_POS, RSOFF(factor), NULL, 0, NULL},
    {"low_freq_factor", SF_FLOAT, SF_REQ | SF_POS, RSOFF(low_freq_factor), NULL, 0, NULL},
    {"high_freq_factor", SF_FLOAT, SF_REQ | SF_POS, RSOFF(high_freq_factor), NULL, 0, NULL},
    {"original_max_position_embeddings", SF_INT, SF_REQ | SF_POS | SF_DIM,
     RSOFF(original_max_position_embeddings), NULL, 0, NULL},
};

static const char *const EMBEDDER_TYPES[] = {"none", "token"};
#define EOFF(m) offsetof(cb_embedder_cfg, m)
static const cb_sfield EMBEDDER_FIELDS[] = {
    {"type", SF_ENUM, SF_REQ, EOFF(type), EMBEDDER_TYPES, 2, NULL},
    {"vocab_size", SF_INT, SF_POS | SF_DIM, EOFF(vocab_size), NULL, 0, NULL},
    {"d_model", SF_INT, SF_POS | SF_DIM, EOFF(d_model), NULL, 0, NULL},
};

static const char *const DIFF_SCHEDULERS[] = {"ddpm", "ddim", "dpm"};
#define DOFF(m) offsetof(cb_diffusion_cfg, m)
static const cb_sfield DIFFUSION_FIELDS[] = {
    {"enabled", SF_BOOL, 0, DOFF(enabled), NULL, 0, NULL},
    {"num_train_timesteps", SF_INT, SF_POS, DOFF(num_train_timesteps), NULL, 0, NULL},
    {"num_infer_steps", SF_INT, SF_POS, DOFF(num_infer_steps), NULL, 0, NULL},
    {"time_embed_dim", SF_INT, SF_POS | SF_DIM, DOFF(time_embed_dim), NULL, 0, NULL},
    {"mlp_mult", SF_INT, SF_POS, DOFF(mlp_mult), NULL, 0, NULL},
    {"cfg_dropout_p", SF_FLOAT, SF_PROB, DOFF(cfg_dropout_p), NULL, 0, NULL},
    {"cfg_guidance_scale", SF_FLOAT, SF_POS, DOFF(cfg_guidance_scale), NULL, 0, NULL},
    {"scheduler", SF_ENUM, 0, DOFF(scheduler), DIFF_SCHEDULERS, 3, NULL},
    {"loss_weight", SF_FLOAT, SF_POS, DOFF(loss_weight), NULL, 0, NULL},
};

static int read_embedder(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst);
static int read_topology_root(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst);
static int read_diffusion(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst);

#define MDOFF(m) offsetof(cb_model_cfg, m)
static const cb_sfield MODEL_FIELDS[] = {
    {"type", SF_ENUM, SF_REQ, MDOFF(type), MODEL_TYPES, 4, NULL},
    {"embedder", SF_FN, SF_NULLOK, MDOFF(embedder), NULL, 0, read_embedder},
    {"topology", SF_FN, SF_REQ, MDOFF(topology), NULL, 0, read_topology_root},
    {"tied_embeddings", SF_BOOL, 0, MDOFF(tied_embeddings), NULL, 0, NULL},
    {"target_params", SF_INT, SF_POS | SF_NULLOK, MDOFF(target_params), NULL, 0, NULL},
    {"block_size", SF_INT, SF_POS | SF_DIM | SF_NULLOK, MDOFF(block_size), NULL, 0, NULL},
    {"diffusion_head", SF_FN, SF_NULLOK, MDOFF(diffusion_head), NULL, 0, read_diffusion},
};

void cb_schema_register_model(void);
void cb_schema_register_model(void) {
    cb_sc_register("model", MODEL_FIELDS, SF_COUNT(MODEL_FIELDS));
    cb_sc_register("model.embedder", EMBEDDER_FIELDS, SF_COUNT(EMBEDDER_FIELDS));
    cb_sc_register("model.diffusion_head", DIFFUSION_FIELDS, SF_COUNT(DIFFUSION_FIELDS));
    cb_sc_register("model.topology.<Topology>", TOPOLOGY_FIELDS, SF_COUNT(TOPOLOGY_FIELDS));
    cb_sc_register("model.topology.LinearLayer", LINEAR_FIELDS, SF_COUNT(LINEAR_FIELDS));
    cb_sc_register("model.topology.LayerNormLayer", LAYER_NORM_FIELDS, SF_COUNT(LAYER_NORM_FIELDS));
    cb_sc_register("model.topology.RMSNormLayer", RMS_NORM_FIELDS, SF_COUNT(RMS_NORM_FIELDS));
    cb_sc_register("model.topology.DropoutLayer", DROPOUT_FIELDS, SF_COUNT(DROPOUT_FIELDS));
    cb_sc_register("model.topology.SwiGLULayer", SWIGLU_FIELDS, SF_COUNT(SWIGLU_FIELDS));
    cb_sc_register("model.topology.AttentionLayer", ATTENTION_FIELDS, SF_COUNT(ATTENTION_FIELDS));
    cb_sc_register("model.topology.AttentionLayer.rope_scaling", ROPE_SCALING_FIELDS,
                   SF_COUNT(ROPE_SCALING_FIELDS));
}

/* ---- defaults ------------------------------------------------------------------------------ */

static void module_defaults(cb_cfg_node *m) {
    m->repeat = 1;
    switch (m->kind) {
    case CB_CFG_LINEAR:
        m->linear.bias = true;
        break;
    case CB_CFG_LAYER_NORM:
        m->layer_norm.eps = 1e-5;
        break;
    case CB_CFG_RMS_NORM:
        m->rms_norm.eps = 1e-5;
        m->rms_norm.elementwise_affine = true;
        break;
    case CB_CFG_DROPOUT:
        m->dropout.p = 0.0;
        break;
    case CB_CFG_SWIGLU:
        m->swiglu.bias = true;
        break;
    case CB_CFG_ATTENTION:
        m->attention.mode = CB_CFG_ATTN_STANDARD;
        m->attention.rope_enabled = true;
        m->attention.rope_base = 10000.0;
        m->attention.is_causal = true;
        m->attention.mem_summarize = CB_CFG_MEM_MEAN;
        break;
    default:
        break;
    }
}

/* ---- attention rules ----------------------------------------------------------------------- */

static void check_attention(cb_sctx *c, cb_cfg_node *m) {
    cb_cfg_attention *a = &m->attention;
    const cb_cfg_src *s = &m->src;
    int64_t H = a->n_heads;
    if (!a->n_kv_heads) a->n_kv_heads = H;
    int64_t Hkv = a->n_kv_heads;
    a->kv_heads = Hkv;
    if (!a->attn_dim) a->attn_dim = a->d_model;
    if (Hkv > H) {
        cb_sc_err_key(c, s, "n_kv_heads", "n_kv_heads=%lld cannot exceed n_heads=%lld",
                      (long long)Hkv, (long long)H);
        return;
    }
    if (H % Hkv) {
        cb_sc_err_key(c, s, "n_kv_heads",
                      "n_heads=%lld must be divisible by n_kv_heads=%lld (each KV head serves "
                      "n_heads / n_kv_heads query heads)",
                      (long long)H, (long long)Hkv);
        return;
    }
    if (a->decoupled_gate_dynamic && !a->decoupled_gate)
        cb_sc_err_key(c, s, "decoupled_gate_dynamic",
                      "decoupled_gate_dynamic needs decoupled_gate: true");
    if (!a->rope_enabled) {
        if (cb_sc_given(s, "rope_dim"))
            cb_sc_err_key(c, s, "rope_dim", "rope_dim needs rope_enabled: true");
        if (cb_sc_given(s, "rope_scaling"))
            cb_sc_err_key(c, s, "rope_scaling", "rope_scaling needs rope_enabled: true");
    }
    if (a->rope_dim % 2)
        cb_sc_err_key(c, s, "rope_dim", "rope_dim must be even (RoPE rotates pairs), got %lld",
                      (long long)a->rope_dim);
    if (a->mem_block && !a->local_window)
        cb_sc_err_key(
            c, s, "mem_block",
            "mem_block needs local_window (summarization acts on keys outside the window)");
    if (a->mem_activation_threshold && !a->mem_block)
        cb_sc_err_key(c, s, "mem_activation_threshold", "mem_activation_threshold needs mem_block");
    if (a->mode != CB_CFG_ATTN_DECOUPLED) {
        static const char *const only[] = {"sem_dim", "geo_dim", "v_dim"};
        for (int i = 0; i < 3; i++)
            if (cb_sc_given(s, only[i]))
                cb_sc_err_key(c, s, only[i], "%s only applies to mode: decoupled", only[i]);
        if (a->decoupled_gate)
            cb_sc_err_key(c, s, "decoupled_gate", "decoupled_gate only applies to mode: decoupled");
        if (a->attn_dim % H) {
            cb_sc_err_key(
                c, s, cb_sc_given(s, "attn_dim") ? "attn_dim" : "n_heads",
                "attn_dim=%lld%s must be divisible by n_heads=%lld", (long long)a->attn_dim,
                cb_sc_given(s, "attn_dim") ? "" : " (d_model, as attn_dim is unset)", (long long)H);
            return;
        }
        a->head_dim = a->attn_dim / H;
        if (a->rope_enabled && a->head_dim % 2) {
            cb_sc_err_key(c, s, cb_sc_given(s, "attn_dim") ? "attn_dim" : "n_heads",
                          "RoPE needs an even head size, got head_dim = attn_dim / n_heads = "
                          "%lld / %lld = %lld",
                          (long long)a->attn_dim, (long long)H, (long long)a->head_dim);
            return;
        }
        a->v_dim = a->attn_dim;
        a->v_head_dim = a->head_dim;
        a->k_width = Hkv * a->head_dim;
        a->k_sem_width = a->k_width;
        a->k_geo_width = 0;
        a->v_width = Hkv * a->head_dim;
        return;
    }
    /* decoupled (DBA) */
    if (!a->sem_dim || !a->geo_dim) {
        const char *missing = !a->sem_dim ? "sem_dim" : "geo_dim";
        cb_sc_err_key(c, s, missing,
                      "mode: decoupled needs both sem_dim and geo_dim (%s is missing)", missing);
        return;
    }
    if (!a->v_dim) a->v_dim = a->attn_dim;
    static const char *const dims[] = {"sem_dim", "geo_dim", "v_dim"};
    int64_t vals[3] = {a->sem_dim, a->geo_dim, a->v_dim};
    for (int i = 0; i < 3; i++)
        if (vals[i] % H) {
            cb_sc_err_key(c, s, cb_sc_given(s, dims[i]) ? dims[i] : "n_heads",
                          "%s=%lld%s must be divisible by n_heads=%lld (per-head size)", dims[i],
                          (long long)vals[i],
                          i == 2 && !cb_sc_given(s, "v_dim")
                              ? " (attn_dim or d_model, as v_dim is unset)"
                              : "",
                          (long long)H);
            return;
        }
    a->sem_head_dim = a->sem_dim / H;
    a->geo_head_dim = a->geo_dim / H;
    a->v_head_dim = a->v_dim / H;
    a->head_dim = a->attn_dim % H ? 0 : a->attn_dim / H;
    if (a->rope_enabled && a->geo_head_dim % 2) {
        cb_sc_err_key(
            c, s, "geo_dim",
            "RoPE needs an even geometric head size, got geo_dim / n_heads = %lld / %lld = "
            "%lld",
            (long long)a->geo_dim, (long long)H, (long long)a->geo_head_dim);
        return;
    }
    if (a->mem_block && a->mem_summarize != CB_CFG_MEM_MEAN)
        cb_sc_err_key(c, s, "mem_summarize",
                      "mem_summarize: %s is not supported in mode: decoupled (use mean)",
                      MEM_KINDS[a->mem_summarize]);
    a->k_sem_width = a->sem_head_dim * Hkv;
    a->k_geo_width = a->geo_head_dim * Hkv;
    a->k_width = a->k_sem_width + a->k_geo_width;
    a->v_width = a->v_head_dim * Hkv;
}

/* ---- readers ------------------------------------------------------------------------------- */

static const char *const TOPOLOGY_LIST =
    "StackedTopology, SequentialTopology, ResidualTopology, NestedTopology, ParallelTopology, "
    "BranchingTopology, CyclicTopology, RecurrentTopology";

static int read_module(cb_sctx *c, const cb_doc_node *v, const char *path, cb_cfg_node *m) {
    memset(m, 0, sizeof *m);
    m->src = cb_sc_src(c, v, path);
    if (!v || v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path,
                  "expected a mapping with a 'type' key (a layer or a topology), got %s",
                  cb_sc_describe(c, v));
        return 1;
    }
    const cb_doc_node *t = cb_doc_get(v, "type");
    if (!t) {
        cb_sc_err(c, v, cb_path_key(c->pool, path, "type"),
                  "required key 'type' is missing (which layer or topology is this?)");
        return 1;
    }
    const char *tp = cb_path_key(c->pool, path, "type");
    if (t->kind != CB_DOC_SCALAR || t->type != CB_SCALAR_STR) {
        cb_sc_err(c, t, tp, "expected a type name, got %s", cb_sc_describe(c, t));
        return 1;
    }
    const char *can = cb_type_canonical(t->text);
    int kind = can ? cb_cfg_kind_from_name(can) : -1;
    if (kind < 0) {
        const char *cands[CB_CFG_KIND_COUNT + sizeof ALIASES / sizeof ALIASES[0]];
        int nc = 0;
        for (int i = 0; i < CB_CFG_KIND_COUNT; i++) cands[nc++] = MODULE_NAMES[i];
        for (size_t i = 4; i < sizeof ALIASES / sizeof ALIASES[0]; i++) /* not model types */
            cands[nc++] = ALIASES[i].alias;
        const char *s = cb_suggest(t->text, cands, nc);
        if (s)
            cb_sc_err(c, t, tp, "unknown type '%.60s' (did you mean '%s'?)", t->text, s);
        else
            cb_sc_err(c, t, tp,
                      "unknown type '%.60s'; layers: LinearLayer, LayerNormLayer, RMSNormLayer, "
                      "DropoutLayer, SwiGLULayer, AttentionLayer; topologies: %s",
                      t->text, TOPOLOGY_LIST);
        return 1;
    }
    m->kind = (cb_cfg_kind)kind;
    module_defaults(m);
    const char *what = cb_pool_printf(c->pool, "a%s %s", m->kind == CB_CFG_ATTENTION ? "n" : "",
                                      MODULE_NAMES[m->kind]);
    if (!what) what = MODULE_NAMES[m->kind];
    int bad;
    switch (m->kind) {
    case CB_CFG_LINEAR:
        bad = cb_sc_object(c, v, path, what, LINEAR_FIELDS, SF_COUNT(LINEAR_FIELDS), m);
        break;
    case CB_CFG_LAYER_NORM:
        bad = cb_sc_object(c, v, path, what, LAYER_NORM_FIELDS, SF_COUNT(LAYER_NORM_FIELDS), m);
        break;
    case CB_CFG_RMS_NORM:
        bad = cb_sc_object(c, v, path, what, RMS_NORM_FIELDS, SF_COUNT(RMS_NORM_FIELDS), m);
        break;
    case CB_CFG_DROPOUT:
        bad = cb_sc_object(c, v, path, what, DROPOUT_FIELDS, SF_COUNT(DROPOUT_FIELDS), m);
        break;
    case CB_CFG_SWIGLU:
        bad = cb_sc_object(c, v, path, what, SWIGLU_FIELDS, SF_COUNT(SWIGLU_FIELDS), m);
        break;
    case CB_CFG_ATTENTION:
        bad = cb_sc_object(c, v, path, what, ATTENTION_FIELDS, SF_COUNT(ATTENTION_FIELDS), m);
        if (!bad) check_attention(c, m);
        break;
    default:
        bad = cb_sc_object(c, v, path, what, TOPOLOGY_FIELDS, SF_COUNT(TOPOLOGY_FIELDS), m);
        break;
    }
    return bad;
}

static int read_layers(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_cfg_node *m = (cb_cfg_node *)((char *)dst - offsetof(cb_cfg_node, layers));
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of layers and topologies, got %s",
                  cb_sc_describe(c, v));
        return 1;
    }
    if (v->n == 0) {
        cb_sc_err(c, v, path, "%s needs at least one layer", MODULE_NAMES[m->kind]);
        return 1;
    }
    if (c->depth >= CB_DOC_MAX_DEPTH) {
        cb_sc_err(c, v, path, "topologies nested deeper than %d levels", CB_DOC_MAX_DEPTH);
        return 1;
    }
    cb_cfg_node *arr = cb_pool_alloc(c->pool, v->n * sizeof *arr);
    if (!arr) {
        cb_sc_err(c, v, path, "out of memory");
        return 1;
    }
    c->depth++;
    int bad = 0;
    for (size_t i = 0; i < v->n; i++)
        bad += read_module(c, v->items[i], cb_path_idx(c->pool, path, i), &arr[i]);
    c->depth--;
    m->layers = arr;
    m->n_layers = (int)v->n;
    return bad;
}

static int read_rope_scaling(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_cfg_rope_scaling *r = dst;
    int bad = cb_sc_object(c, v, path, "rope_scaling", ROPE_SCALING_FIELDS,
                           SF_COUNT(ROPE_SCALING_FIELDS), r);
    if (bad) return bad;
    if (r->high_freq_factor <= r->low_freq_factor) {
        cb_cfg_src s = cb_sc_src(c, v, path);
        cb_sc_err_key(c, &s, "high_freq_factor",
                      "high_freq_factor must be greater than low_freq_factor (%g <= %g)",
                      r->high_freq_factor, r->low_freq_factor);
        return 1;
    }
    r->enabled = true;
    return 0;
}

static int read_embedder(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_embedder_cfg *e = dst;
    e->src = cb_sc_src(c, v, path);
    int bad =
        cb_sc_object(c, v, path, "the embedder", EMBEDDER_FIELDS, SF_COUNT(EMBEDDER_FIELDS), e);
    if (bad) return bad;
    if (e->type == CB_EMBED_TOKEN) {
        static const char *const req[] = {"vocab_size", "d_model"};
        for (int i = 0; i < 2; i++)
            if (!cb_sc_given(&e->src, req[i])) {
                cb_sc_err(c, v, cb_path_key(c->pool, path, req[i]),
                          "required key '%s' is missing in a token embedder", req[i]);
                bad++;
            }
    } else {
        static const char *const only[] = {"vocab_size", "d_model"};
        for (int i = 0; i < 2; i++)
            if (cb_sc_given(&e->src, only[i])) {
                cb_sc_err_key(c, &e->src, only[i], "%s only applies to type: token", only[i]);
                bad++;
            }
    }
    return bad;
}

static int read_topology_root(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_cfg_node *m = dst;
    int bad = read_module(c, v, path, m);
    if (bad) return bad;
    if (!cb_cfg_is_topology(m->kind)) {
        cb_sc_err(c, v, path,
                  "model.topology must be a topology (%s), got the layer %s; wrap it: "
                  "{type: StackedTopology, layers: [...]}",
                  TOPOLOGY_LIST, MODULE_NAMES[m->kind]);
        return 1;
    }
    return 0;
}

static int read_diffusion(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_diffusion_cfg *d = dst;
    int bad =
        cb_sc_object(c, v, path, "diffusion_head", DIFFUSION_FIELDS, SF_COUNT(DIFFUSION_FIELDS), d);
    if (!bad && d->enabled) {
        cb_cfg_src s = cb_sc_src(c, v, path);
        cb_sc_err_key(c, &s, "enabled",
                      "the diffusion head is not implemented in caramba; set enabled: false");
        bad = 1;
    }
    return bad;
}

int cb_read_model(cb_sctx *c, const cb_doc_node *v, const char *path, cb_model_cfg *out) {
    memset(out, 0, sizeof *out);
    out->tied_embeddings = true;
    out->embedder.type = CB_EMBED_NONE;
    out->src = cb_sc_src(c, v, path);
    cb_diffusion_cfg *d = &out->diffusion_head;
    d->num_train_timesteps = 1000;
    d->num_infer_steps = 12;
    d->time_embed_dim = 128;
    d->mlp_mult = 4;
    d->cfg_dropout_p = 0.10;
    d->cfg_guidance_scale = 1.5;
    d->scheduler = CB_DIFF_DDIM;
    d->loss_weight = 0.10;
    return cb_sc_object(c, v, path, "the model", MODEL_FIELDS, SF_COUNT(MODEL_FIELDS), out);
}
