/* Modules: the layers and topologies a model is built from.
 *
 * A module is a node of the model tree. Layers own parameters; topologies own children and
 * compose them (see docs/manifest.md for the semantics of each kind). Every module's forward
 * takes the inference context, so caches and positions reach every attention layer whatever the
 * topology around it. */
#ifndef CARAMBA_MODULE_H
#define CARAMBA_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "caramba/graph.h"
#include "caramba/ops.h"
#include "caramba/rope_freqs.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cb_module_kind {
    CB_MOD_LINEAR = 0,
    CB_MOD_RMSNORM,
    CB_MOD_LAYERNORM,
    CB_MOD_DROPOUT,
    CB_MOD_SWIGLU,
    CB_MOD_ATTENTION,
    CB_MOD_STACKED, /* first topology kind */
    CB_MOD_SEQUENTIAL,
    CB_MOD_RESIDUAL,
    CB_MOD_NESTED,
    CB_MOD_PARALLEL,
    CB_MOD_BRANCHING,
    CB_MOD_CYCLIC,
    CB_MOD_RECURRENT,
    CB_MOD_KIND_COUNT
} cb_module_kind;

static inline bool cb_module_is_topology(cb_module_kind k) { return k >= CB_MOD_STACKED; }
const char *cb_module_kind_name(cb_module_kind k); /* "RMSNormLayer", "ResidualTopology", ... */

typedef enum cb_init { CB_INIT_ZEROS = 0, CB_INIT_ONES, CB_INIT_UNIFORM_FAN_IN, CB_INIT_NORMAL } cb_init;

typedef struct cb_param {
    char *local;   /* name inside its module, e.g. "q_proj.weight" */
    char *name;    /* full name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    cb_tensor *t;  /* persistent (storage allocated when the model is finalised) */
    bool no_decay; /* norms, biases, embeddings: excluded from weight decay by default */
    cb_init init;
    float init_scale; /* fan_in for CB_INIT_UNIFORM_FAN_IN, std for CB_INIT_NORMAL */
} cb_param;

typedef enum cb_attn_mode { CB_ATTN_STANDARD = 0, CB_ATTN_GQA, CB_ATTN_DECOUPLED } cb_attn_mode;

typedef struct cb_attention_cfg {
    int d_model;
    int n_heads, n_kv_heads;
    cb_attn_mode mode;
    int head_dim;   /* q/k head size (standard/gqa) */
    int v_head_dim; /* value head size */
    int sem_head_dim, geo_head_dim; /* decoupled */
    bool rope_enabled;
    int rope_rot;   /* rotated width per head (<= head size); 0: the whole (geo) head */
    int rope_basis; /* head size the frequency table is computed for; 0: rope_rot. A basis wider
                       than the rotated width keeps the first (highest) frequencies of that basis,
                       e.g. a DBA geo head keeping its teacher's exact frequencies. */
    cb_rope_params rope;
    bool is_causal;
    float dropout_p;
    bool bias;
    bool learned_temp;
    bool decoupled_gate, decoupled_gate_dynamic;
    int q_chunk, local_window; /* 0: none */
} cb_attention_cfg;

typedef struct cb_infer_ctx cb_infer_ctx;
typedef struct cb_model cb_model;

typedef struct cb_module {
    cb_module_kind kind;
    char *path; /* dotted path in the model, e.g. "topology.layers.0.layers.1" */
    struct cb_module **children;
    int n_children;
    cb_param *params; /* this module's own parameters */
    int n_params;
    /* layer settings */
    int d_in, d_out; /* linear; norms/swiglu use d_in as the width */
    int d_ff;
    float eps, p;
    bool bias, affine;
    cb_attention_cfg attn;
    const cb_rope_table *rope; /* shared table owned by the model (attention) */
    int attn_index;            /* order among the model's attention layers */
} cb_module;

/* Layer constructors: parameters are allocated on dev and initialised as PyTorch does
 * (Linear U(-1/sqrt(fan_in), 1/sqrt(fan_in)), norms 1/0) from the model's RNG at finalisation. */
cb_status cb_linear_new(cb_module **out, int d_in, int d_out, bool bias);
cb_status cb_rmsnorm_new(cb_module **out, int d, float eps, bool affine);
cb_status cb_layernorm_new(cb_module **out, int d, float eps);
cb_status cb_dropout_new(cb_module **out, float p);
cb_status cb_swiglu_new(cb_module **out, int d, int d_ff, bool bias);
cb_status cb_attention_new(cb_module **out, const cb_attention_cfg *cfg);
/* A topology taking ownership of children[0..n) (already repeat-expanded). */
cb_status cb_topology_new(cb_module **out, cb_module_kind kind, cb_module **children, int n);
void cb_module_free(cb_module *m);

/* Forward. x: [B, T, D] (or whatever the module takes). */
cb_tensor *cb_module_forward(cb_module *m, cb_graph *g, cb_tensor *x, cb_infer_ctx *ctx);

/* Width of the output for an input of width d_in, or -1 with a message when it does not fit. */
int cb_module_out_width(const cb_module *m, int d_in);

/* Calls fn on every module, depth-first pre-order (the order caches are created in). */
void cb_module_walk(cb_module *m, void (*fn)(cb_module *m, void *user), void *user);

#ifdef __cplusplus
}
#endif
#endif
