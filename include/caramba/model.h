/* A model: optional token embedder, a module tree, and the output projection (tied to the
 * embedding, or the tree's own final Linear). Parameters are named after Hugging Face Llama when
 * the tree has the Llama shape, else after their path in the tree. */
#ifndef CARAMBA_MODEL_H
#define CARAMBA_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "caramba/graph.h"
#include "caramba/hf.h"
#include "caramba/infer_ctx.h"
#include "caramba/module.h"
#include "caramba/safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cb_model {
    cb_device device;
    int64_t vocab_size; /* 0 when the embedder is `none` */
    int d_model;
    cb_param embed;     /* [vocab, d_model] when vocab_size > 0 */
    cb_module *root;
    bool tied; /* logits = features . embed^T */
    cb_param **params; /* every parameter, embedder first, then tree order */
    int n_params;
    cb_module **attn; /* attention layers in construction order */
    int n_attn;
    cb_rope_table *ropes; /* one per distinct (rope params, rotary width) */
    cb_rope_params *rope_keys;
    int *rope_rot, *rope_basis;
    int n_ropes;
    int64_t max_seq_len; /* rope tables cover positions [0, max_seq_len) and grow on demand */
    bool llama_names;    /* parameter names are Hugging Face Llama names */
    int64_t bos_id, eos_id; /* from the checkpoint's config, -1 when unknown */
    bool finalized;
    cb_dtype compute_dtype; /* CB_F32, or the AMP dtype (cb_model_set_compute_dtype): a forward
                               then creates 16-bit activations on its graph */
};

/* Takes ownership of root. vocab_size 0 means no embedder (inputs are already [B, T, d]). */
cb_status cb_model_new(cb_model **out, int64_t vocab_size, int d_model, cb_module *root, bool tied);
/* Names parameters, allocates them on dev, initialises them from seed (PyTorch-style), builds the
 * rope tables for max_seq_len positions. Validates that the widths flow through the tree. */
cb_status cb_model_finalize(cb_model *m, cb_device dev, uint64_t seed, int64_t max_seq_len);
void cb_model_free(cb_model *m);

/* Allocates persistent f32 gradients for every parameter (for training / cb grads). */
cb_status cb_model_enable_grads(cb_model *m);
cb_status cb_model_zero_grads(cb_model *m);
int64_t cb_model_param_count(const cb_model *m);
cb_param *cb_model_find_param(const cb_model *m, const char *name);

/* ids [B, T] int32/int64 -> logits [B, T, V] (or features when there is no head). ctx may be
 * NULL (no cache). A model with a 16-bit compute dtype sets g->act_dtype to it (AMP). */
cb_tensor *cb_model_forward(cb_model *m, cb_graph *g, const cb_tensor *ids, cb_infer_ctx *ctx);
/* Mean next-token cross-entropy of logits[:, :-1] against ids[:, 1:]. */
cb_tensor *cb_model_next_token_loss(cb_model *m, cb_graph *g, const cb_tensor *ids);
/* Cross-entropy of the logits of x against targets y (both [B, T]). */
cb_tensor *cb_model_loss(cb_model *m, cb_graph *g, const cb_tensor *x, const cb_tensor *y);

/* Loads every parameter by name (shapes must match; dtypes converted). Errors name the file
 * and the tensor. */
cb_status cb_model_load(cb_model *m, const cb_checkpoint *ck);
/* Writes all parameters (f32) as safetensors, atomically. */
cb_status cb_model_save(const cb_model *m, const char *path);

/* Builds the model a manifest describes (validated and lowered by cb_manifest_load), initialised
 * from seed. */
struct cb_model_cfg;
cb_status cb_model_from_manifest(cb_model **out, const struct cb_model_cfg *cfg, cb_device dev,
                                 uint64_t seed, int64_t max_seq_len);
/* Builds the Llama tree of a Hugging Face config (untrained). */
cb_status cb_model_from_llama_config(cb_model **out, const cb_llama_config *cfg, cb_device dev);
/* Resolves M (directory or hf://org/name), reads config.json, builds and loads the weights. */
cb_status cb_model_open_hf(cb_model **out, const char *model, cb_device dev);

/* Mixed precision on the GPU (src/model/amp.c): dt = CB_BF16 or CB_F16 gives every 2-d parameter
 * a 16-bit copy (param->t->lowp) that the ops read when the graph's act_dtype is dt; the f32
 * parameters stay the master weights. CB_F32 drops the copies. Fails on the CPU for 16-bit. */
cb_status cb_model_set_compute_dtype(cb_model *m, cb_dtype dt);
/* Rewrites the 16-bit copies from the masters (after loading weights into a model that has them;
 * the GPU optimizer refreshes them itself). */
cb_status cb_model_refresh_lowp(cb_model *m);

/* Inference caches for this model: one layer cache per attention layer. */
cb_status cb_model_caches_new(const cb_model *m, int64_t batch, int64_t max_len,
                              const cb_kv_policy *policy, cb_infer_ctx *ctx);
void cb_model_caches_free(cb_infer_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
