/* Hugging Face model directories: config.json for Llama-family models, and hf://org/name
 * resolution through the local Hugging Face cache (nothing is ever downloaded).
 *
 * config.json is untrusted input: every key read is type- and range-checked, and errors read
 * "PATH: key 'NAME': what is wrong". Both the legacy layout (top-level rope_theta + rope_scaling)
 * and the newer rope_parameters object are accepted. See docs/formats.md for the keys. */
#ifndef CARAMBA_HF_H
#define CARAMBA_HF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/rope_freqs.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CB_LLAMA_MAX_EOS 16

typedef struct cb_llama_config {
    int64_t vocab_size;
    int64_t hidden_size;
    int64_t intermediate_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads; /* default: num_attention_heads */
    int head_dim;            /* default: hidden_size / num_attention_heads */
    int rope_dim;            /* rotary width: head_dim * partial_rotary_factor (default 1) */
    int64_t max_position_embeddings; /* default 2048 */
    double rms_norm_eps;             /* default 1e-6 */
    double rope_theta;               /* as written (default 10000); rope.theta is its float32 */
    cb_rope_params rope;             /* type CB_ROPE_DEFAULT or CB_ROPE_LLAMA3 */
    bool tie_word_embeddings;        /* default false */
    bool attention_bias;             /* default false */
    bool mlp_bias;                   /* default false */
    int64_t bos_token_id;            /* -1 when null (absent: 1, as transformers) */
    int64_t eos_token_id;            /* first eos id, -1 when none (absent: 2) */
    int n_eos_token_ids;             /* eos_token_id may be a list: all of them */
    int64_t eos_token_ids[CB_LLAMA_MAX_EOS];
    char hidden_act[16]; /* always "silu" after a successful load */
    char dtype[16];      /* "torch_dtype" or "dtype" ("float32", "bfloat16", ...); "" if absent */
    char model_type[32]; /* "" if absent */
} cb_llama_config;

/* path: a config.json file, a directory holding config.json, or hf://org/name. */
cb_status cb_llama_config_load(const char *path, cb_llama_config *cfg);
/* Parses config.json text (len bytes, need not be NUL-terminated); name is used in messages. */
cb_status cb_llama_config_parse(const char *json, size_t len, const char *name,
                                cb_llama_config *cfg);

/* Resolves a model reference to a local path (written to out, at most n bytes with the NUL):
 *  - a local path: returned as-is; it must exist;
 *  - hf://org/name: the snapshot directory in the Hugging Face cache,
 *    <cache>/models--org--name/snapshots/<rev>, where <cache> is $HF_HUB_CACHE, else
 *    $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub (each one
 *    that is set is tried in that order) and <rev> is the commit in refs/main when that snapshot
 *    exists, else the only (or most recently modified) snapshot;
 *  - hf://org/name/path/in/repo: that file inside the snapshot.
 * CB_ERR_NOTFOUND lists every path tried. */
cb_status cb_hf_resolve(const char *model, char *out, size_t n);

#ifdef __cplusplus
}
#endif
#endif
