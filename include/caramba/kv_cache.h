/* KV caches for inference: per-tensor sequence caches in fp32, fp16, q8_0, q4_0 or nf4, layer
 * caches (k, v) and decoupled caches (k_sem, k_geo, v), and attention computed directly over the
 * stored blocks. Formats: include/caramba/quant.h. Full description: docs/kv-cache.md.
 *
 * Sequence cache layout: main store [batch][capacity][row_bytes], one token row of `width`
 * values per (b, position), a row being cb_quant_row_bytes(dtype, width) bytes (quantized rows
 * are whole-row blocks of 32, zero-padded at the end; heads are contiguous inside the row, so a
 * head need not start on a block boundary). Capacity starts at initial_capacity and doubles (a
 * copy) up to max_len; appending past max_len fails with CB_ERR_ARG ("cache overflow").
 *
 * fp16 window (quantized kinds with residual_len R > 0): every token is quantized into the main
 * store AND copied as fp16 into a ring of R + spare slots. Readers (attention, cb_seq_cache_read)
 * take positions >= cb_seq_cache_window_start() from the ring (exact fp16) and older ones from
 * the quantized store. The spare slots make rollbacks of up to `spare` tokens keep the window
 * exact (a rollback then re-append gives a cache identical to a fresh one at every length). A
 * deeper rollback shrinks the window until the cache grows back to its old length, because the
 * fp16 copies of the positions just below it were overwritten; those positions are then read from
 * the quantized store (never re-filled with dequantized copies, so the window never holds
 * anything but exact fp16 values). fp32/fp16 caches ignore R.
 *
 * Byte accounting (exact, what is allocated): batch * capacity * row_bytes
 *   + batch * ring_slots * width * 2.  Per token: row_bytes = 4w (fp32), 2w (fp16),
 *   34 * ceil(w/32) (q8_0), 18 * ceil(w/32) (q4_0, nf4). */
#ifndef CARAMBA_KV_CACHE_H
#define CARAMBA_KV_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/dtype.h"
#include "caramba/quant.h"
#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cb_kv_kind {
    CB_KV_FP32 = 0,
    CB_KV_FP16,
    CB_KV_Q8_0,
    CB_KV_Q4_0,
    CB_KV_NF4,
    CB_KV_KIND_COUNT
} cb_kv_kind;

/* "fp32", "fp16", "q8_0", "q4_0", "nf4" (case-insensitive; "f32", "float32", "f16", "float16",
 * "half" also accepted). Unknown names fail with CB_ERR_ARG naming the text and the choices. */
cb_status cb_kv_kind_parse(const char *name, cb_kv_kind *out);
const char *cb_kv_kind_name(cb_kv_kind k); /* canonical name, "?" if invalid */
cb_dtype cb_kv_kind_dtype(cb_kv_kind k);   /* CB_F32, CB_F16, CB_Q8_0, CB_Q4_0, CB_NF4 */
bool cb_kv_kind_is_quantized(cb_kv_kind k);
/* Bytes of one token row of `width` values (block padding included). */
size_t cb_kv_bytes_per_token(cb_kv_kind k, int64_t width);

#define CB_KV_DEFAULT_INITIAL_CAPACITY 256
#define CB_KV_DEFAULT_SPARE 32

typedef struct cb_kv_tensor_cfg {
    cb_kv_kind kind;
    int64_t residual_len;     /* fp16 window of the most recent tokens (quantized kinds only) */
    int64_t residual_spare;   /* extra window slots for exact rollbacks; 0: CB_KV_DEFAULT_SPARE,
                                 < 0: none. Unused when residual_len == 0. */
    int64_t initial_capacity; /* tokens; 0: CB_KV_DEFAULT_INITIAL_CAPACITY (capped at max_len) */
} cb_kv_tensor_cfg;

/* Exact bytes of a sequence cache with the given capacity (as cb_seq_cache_bytes reports once
 * the cache has grown to that capacity). cfg may be NULL (fp32, no window). */
size_t cb_kv_tensor_bytes(const cb_kv_tensor_cfg *cfg, int64_t batch, int64_t capacity,
                          int64_t width, int64_t max_len);

typedef struct cb_seq_cache {
    char name[32]; /* for messages, e.g. "k", "k_geo" */
    cb_kv_kind kind;
    cb_dtype dtype;
    int64_t batch, width, len, capacity, max_len;
    size_t row_bytes;     /* bytes of one token row in the main store */
    uint8_t *data;        /* [batch][capacity][row_bytes] */
    int64_t residual_len; /* R (0: no window) */
    int64_t ring_slots;   /* R + spare, or 0 */
    int64_t ring_lo;      /* fp16 copies are valid for positions >= ring_lo (and >= len - slots) */
    uint16_t *ring;       /* [batch][ring_slots][width] fp16; position p lives in slot p % slots */
} cb_seq_cache;

cb_status cb_seq_cache_init(cb_seq_cache *c, const char *name, int64_t batch, int64_t max_len,
                            int64_t width, const cb_kv_tensor_cfg *cfg);
void cb_seq_cache_free(cb_seq_cache *c);
/* Grows capacity (doubling, capped at max_len) so that n tokens fit; CB_ERR_ARG beyond max_len. */
cb_status cb_seq_cache_reserve(cb_seq_cache *c, int64_t n);
/* Appends T rows per batch element: x is [batch, T, width] f32, row-major. *old_len (may be NULL)
 * receives the length before the append. Fails without changing anything on overflow. */
cb_status cb_seq_cache_append(cb_seq_cache *c, const float *x, int64_t T, int64_t *old_len);
/* Same with a tensor [batch, T, width] (f32, CPU). */
cb_status cb_seq_cache_append_tensor(cb_seq_cache *c, const cb_tensor *x, int64_t *old_len);
/* Rollback: keeps the first new_len tokens (0 <= new_len <= len). */
cb_status cb_seq_cache_truncate(cb_seq_cache *c, int64_t new_len);
/* Empties the cache (keeps the allocation). */
void cb_seq_cache_reset(cb_seq_cache *c);
/* First position served from the fp16 window (len when there is none). */
int64_t cb_seq_cache_window_start(const cb_seq_cache *c);
/* out[n][width] = the values attention sees for positions start..start+n-1 of batch row b
 * (fp16 window or dequantized store). */
cb_status cb_seq_cache_read(const cb_seq_cache *c, int64_t b, int64_t start, int64_t n, float *out);
/* Stored row of position pos (main store, any pos < capacity), and its fp16 window copy (valid
 * for window_start <= pos < len). No checks. */
static inline const void *cb_seq_cache_row(const cb_seq_cache *c, int64_t b, int64_t pos) {
    return c->data + ((size_t)b * (size_t)c->capacity + (size_t)pos) * c->row_bytes;
}
static inline const uint16_t *cb_seq_cache_window_row(const cb_seq_cache *c, int64_t b,
                                                      int64_t pos) {
    return c->ring +
           ((size_t)b * (size_t)c->ring_slots + (size_t)(pos % c->ring_slots)) * (size_t)c->width;
}
/* Bytes allocated now (main store at its current capacity + window ring). */
size_t cb_seq_cache_bytes(const cb_seq_cache *c);
/* Bytes holding the current tokens: batch * len * row_bytes + ring. */
size_t cb_seq_cache_bytes_used(const cb_seq_cache *c);

/* ---- layer caches ------------------------------------------------------------------------ */

typedef struct cb_layer_cache {
    bool decoupled;
    union {
        cb_seq_cache k;     /* standard: keys [B, L, Hkv*hd] (post-RoPE) */
        cb_seq_cache k_sem; /* decoupled: semantic keys [B, L, Hkv*hd_sem] (no RoPE) */
    };
    cb_seq_cache k_geo; /* decoupled only: geometric keys [B, L, Hkv*hd_geo] (post-RoPE) */
    cb_seq_cache v;     /* values [B, L, Hkv*hdv] */
} cb_layer_cache;

cb_status cb_layer_cache_init(cb_layer_cache *lc, int64_t batch, int64_t max_len, int64_t k_width,
                              int64_t v_width, const cb_kv_tensor_cfg *k_cfg,
                              const cb_kv_tensor_cfg *v_cfg);
cb_status cb_layer_cache_init_decoupled(cb_layer_cache *lc, int64_t batch, int64_t max_len,
                                        int64_t sem_width, int64_t geo_width, int64_t v_width,
                                        const cb_kv_tensor_cfg *sem_cfg,
                                        const cb_kv_tensor_cfg *geo_cfg,
                                        const cb_kv_tensor_cfg *v_cfg);
void cb_layer_cache_free(cb_layer_cache *lc);
/* Appends k [B, T, k_width] and v [B, T, v_width] (f32 tensors); all-or-nothing. */
cb_status cb_layer_cache_append(cb_layer_cache *lc, const cb_tensor *k, const cb_tensor *v,
                                int64_t *old_len);
cb_status cb_layer_cache_append_decoupled(cb_layer_cache *lc, const cb_tensor *k_sem,
                                          const cb_tensor *k_geo, const cb_tensor *v,
                                          int64_t *old_len);
cb_status cb_layer_cache_truncate(cb_layer_cache *lc, int64_t new_len);
void cb_layer_cache_reset(cb_layer_cache *lc);
int64_t cb_layer_cache_len(const cb_layer_cache *lc);
size_t cb_layer_cache_bytes(const cb_layer_cache *lc);      /* allocated */
size_t cb_layer_cache_bytes_used(const cb_layer_cache *lc); /* current tokens + rings */

/* ---- per-tensor kind policy ("q8_0", "k:q8_0,v:q4_0", "k_sem:q4_0,k_geo:q8_0,v:q4_0") ------ */

typedef enum cb_kv_slot {
    CB_KV_SLOT_K = 0,
    CB_KV_SLOT_V,
    CB_KV_SLOT_K_SEM,
    CB_KV_SLOT_K_GEO
} cb_kv_slot;

typedef struct cb_kv_policy {
    bool is_auto; /* the text was "auto": resolved by the generator, not here */
    int all;      /* cb_kv_kind from a bare kind, or -1 */
    int slot[4];  /* per cb_kv_slot, or -1 when not named */
} cb_kv_policy;

/* Comma-separated items, each a bare kind (all tensors) or "tensor:kind" with tensor one of k,
 * v, k_sem, k_geo. A named tensor beats a bare kind regardless of order; "k" also covers k_sem
 * and k_geo of decoupled layers unless they are named. Errors name the offending item. */
cb_status cb_kv_policy_parse(const char *text, cb_kv_policy *out);
/* Kind of a tensor slot under the policy (fallback when nothing applies). */
cb_kv_kind cb_kv_policy_kind(const cb_kv_policy *p, cb_kv_slot slot, cb_kv_kind fallback);
/* Canonical text of a policy, e.g. "q8_0,v:q4_0". Returns buf. */
char *cb_kv_policy_str(const cb_kv_policy *p, char *buf, size_t n);

/* ---- attention over a cache ---------------------------------------------------------------- */

/* Same meaning as cb_attn_cfg in src/ops/kernels.h (CB_KV_ATTN_CFG_FROM converts one). Keys sit
 * at positions 0..L-1 (L = cache length); query t sits at q_pos0 + t. Key j is allowed iff
 * (!causal || j <= q_pos0 + t) && (window <= 0 || j > q_pos0 + t - window). */
typedef struct cb_kv_attn_cfg {
    int n_heads;    /* H */
    int n_kv_heads; /* Hkv; query head h reads kv head h / (H / Hkv) */
    int head_dim;   /* q/k head size (semantic head size for decoupled) */
    int v_head_dim; /* value head size */
    float scale;    /* multiplies <q, k> */
    bool causal;
    int window; /* > 0: sliding window */
    int64_t q_pos0;
    int head_dim2; /* decoupled second term: S += scale2 * <q2, k2>; 0 when unused */
    float scale2;
} cb_kv_attn_cfg;

#define CB_KV_ATTN_CFG_FROM(c)                                                                     \
    ((cb_kv_attn_cfg){.n_heads = (c).n_heads,                                                      \
                      .n_kv_heads = (c).n_kv_heads,                                                \
                      .head_dim = (c).head_dim,                                                    \
                      .v_head_dim = (c).v_head_dim,                                                \
                      .scale = (c).scale,                                                          \
                      .causal = (c).causal,                                                        \
                      .window = (c).window,                                                        \
                      .q_pos0 = (c).q_pos0,                                                        \
                      .head_dim2 = (c).head_dim2,                                                  \
                      .scale2 = (c).scale2})

/* out [B, T, H*hdv] = softmax(scale q.k^T (+ scale2 q2.k2^T), masked) v over the cache, online
 * softmax, reading quantized blocks directly (a tile of at most 32 tokens x one head is decoded
 * into an L1 buffer at a time; no full-precision copy of the cache exists). OpenMP over
 * (batch, kv head, query block) and split-K over the sequence for long caches.
 * q [B, T, H*hd] f32; k [B, L, Hkv*hd]; v [B, L, Hkv*hdv]; q2 [B, T, H*hd2] and k2
 * [B, L, Hkv*hd2] or NULL (decoupled); lse [B, H, T] f32 or NULL (natural-log sum of exp of the
 * scaled scores). Rows whose every key is masked give zeros and lse = -inf. */
cb_status cb_kv_attention(const cb_kv_attn_cfg *cfg, const cb_tensor *q, const cb_seq_cache *k,
                          const cb_seq_cache *v, const cb_tensor *q2, const cb_seq_cache *k2,
                          cb_tensor *out, cb_tensor *lse);
/* The scalar reference: one (b, h, t) at a time, one key at a time, scalar traits. Same
 * contract; used by the tests to check the fast path. */
cb_status cb_kv_attention_ref(const cb_kv_attn_cfg *cfg, const cb_tensor *q, const cb_seq_cache *k,
                              const cb_seq_cache *v, const cb_tensor *q2, const cb_seq_cache *k2,
                              cb_tensor *out, cb_tensor *lse);
/* Attention over a layer cache: standard uses (k, v); decoupled uses (k_sem, v) with q the
 * semantic queries and (q2, k_geo) as the second term (cfg->head_dim2 must be set). */
cb_status cb_layer_cache_attention(const cb_kv_attn_cfg *cfg, const cb_layer_cache *lc,
                                   const cb_tensor *q, const cb_tensor *q2, cb_tensor *out,
                                   cb_tensor *lse);

#ifdef __cplusplus
}
#endif
#endif
