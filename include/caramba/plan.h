/* The compile plan: the lowered graph one node per line (dotted path, type, output shape,
 * parameters), total parameters, and the KV-cache bytes per token for every cache kind.
 *
 * KV bytes are counted honestly (DESIGN §6): per attention layer and token the cache holds
 *   standard/gqa: keys Hkv*head_dim, values Hkv*head_dim elements;
 *   decoupled:    keys (sem_dim + geo_dim)*Hkv/H (k_sem and k_geo, stored as two rows),
 *                 values v_dim*Hkv/H elements;
 * and a row of w elements takes cb_kv_bytes_per_token(kind, w) bytes (caramba/kv_cache.h): 4w
 * (fp32), 2w (fp16), or ceil(w/32) blocks of 32 values with a 2-byte fp16 scale: 34 bytes per
 * block (q8_0), 18 bytes per block (q4_0, nf4). */
#ifndef CARAMBA_PLAN_H
#define CARAMBA_PLAN_H

#include <stdint.h>
#include <stdio.h>

#include "caramba/kv_cache.h"
#include "caramba/manifest.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_plan_kv {
    int n_layers;             /* attention layers */
    int64_t k_elems, v_elems; /* cached elements per token, summed over layers */
    int64_t k_bytes, v_bytes; /* bytes per token, summed over layers */
} cb_plan_kv;

/* KV cache per token of the whole (lowered, validated) model with every tensor stored as kind. */
cb_plan_kv cb_plan_model_kv(const cb_model_cfg *m, cb_kv_kind kind);
/* Same for one attention layer. */
cb_plan_kv cb_plan_attention_kv(const cb_cfg_attention *a, cb_kv_kind kind);

typedef struct cb_plan_opts {
    int64_t batch, seq; /* 0: print the symbolic B / T */
} cb_plan_opts;

/* Prints the plan of a loaded manifest. */
void cb_plan_print(FILE *f, const cb_manifest *m, const cb_plan_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
