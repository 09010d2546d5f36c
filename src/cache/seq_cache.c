/* Sequence cache of one tensor: growable main store (fp32/fp16/q8_0/q4_0/nf4 rows) plus an
 * optional fp16 ring holding the most recent tokens. Semantics in include/caramba/kv_cache.h. */
#include "caramba/kv_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    cb_dtype dtype;
} kinds[CB_KV_KIND_COUNT] = {
    [CB_KV_FP32] = {"fp32", CB_F32},  [CB_KV_FP16] = {"fp16", CB_F16},
    [CB_KV_Q8_0] = {"q8_0", CB_Q8_0}, [CB_KV_Q4_0] = {"q4_0", CB_Q4_0},
    [CB_KV_NF4] = {"nf4", CB_NF4},
};

cb_status cb_kv_kind_parse(const char *name, cb_kv_kind *out) {
    static const struct {
        const char *alias;
        cb_kv_kind k;
    } aliases[] = {
        {"fp32", CB_KV_FP32}, {"f32", CB_KV_FP32},  {"float32", CB_KV_FP32},
        {"fp16", CB_KV_FP16}, {"f16", CB_KV_FP16},  {"float16", CB_KV_FP16},
        {"half", CB_KV_FP16}, {"q8_0", CB_KV_Q8_0}, {"q4_0", CB_KV_Q4_0},
        {"nf4", CB_KV_NF4},
    };
    if (!name) return cb_fail(CB_ERR_ARG, "cache kind: missing name");
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(name, aliases[i].alias) == 0) {
            *out = aliases[i].k;
            return CB_OK;
        }
    return cb_fail(CB_ERR_ARG, "unknown cache kind '%s' (expected fp32, fp16, q8_0, q4_0 or nf4)",
                   name);
}

const char *cb_kv_kind_name(cb_kv_kind k) {
    return (unsigned)k < CB_KV_KIND_COUNT ? kinds[k].name : "?";
}

cb_dtype cb_kv_kind_dtype(cb_kv_kind k) {
    return (unsigned)k < CB_KV_KIND_COUNT ? kinds[k].dtype : CB_DTYPE_COUNT;
}

bool cb_kv_kind_is_quantized(cb_kv_kind k) {
    return k == CB_KV_Q8_0 || k == CB_KV_Q4_0 || k == CB_KV_NF4;
}

size_t cb_kv_bytes_per_token(cb_kv_kind k, int64_t width) {
    return cb_quant_row_bytes(cb_kv_kind_dtype(k), width);
}

/* Ring slots for a config (0 when the kind or R gives none). */
static int64_t ring_slots_for(const cb_kv_tensor_cfg *cfg, int64_t max_len, int64_t *R_out) {
    *R_out = 0;
    if (!cfg || !cb_kv_kind_is_quantized(cfg->kind) || cfg->residual_len <= 0) return 0;
    int64_t R = cfg->residual_len < max_len ? cfg->residual_len : max_len;
    int64_t spare = cfg->residual_spare == 0  ? CB_KV_DEFAULT_SPARE
                    : cfg->residual_spare < 0 ? 0
                                              : cfg->residual_spare;
    int64_t slots = R + spare < max_len ? R + spare : max_len;
    *R_out = R;
    return slots;
}

size_t cb_kv_tensor_bytes(const cb_kv_tensor_cfg *cfg, int64_t batch, int64_t capacity,
                          int64_t width, int64_t max_len) {
    cb_kv_kind kind = cfg ? cfg->kind : CB_KV_FP32;
    int64_t R;
    int64_t slots = ring_slots_for(cfg, max_len, &R);
    return (size_t)batch * (size_t)capacity * cb_kv_bytes_per_token(kind, width) +
           (size_t)batch * (size_t)slots * (size_t)width * 2;
}

static void *alloc64(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, (bytes + 63) / 64 * 64) != 0) return NULL;
    return p;
}

cb_status cb_seq_cache_init(cb_seq_cache *c, const char *name, int64_t batch, int64_t max_len,
                            int64_t width, const cb_kv_tensor_cfg *cfg) {
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name ? name : "cache");
    cb_kv_tensor_cfg def = {.kind = CB_KV_FP32};
    if (!cfg) cfg = &def;
    if ((unsigned)cfg->kind >= CB_KV_KIND_COUNT)
        return cb_fail(CB_ERR_ARG, "cache %s: invalid kind %d", c->name, (int)cfg->kind);
    if (batch <= 0 || max_len <= 0 || width <= 0)
        return cb_fail(CB_ERR_ARG, "cache %s: batch %lld, max_seq_len %lld, width %lld must be > 0",
                       c->name, (long long)batch, (long long)max_len, (long long)width);
    if (cfg->residual_len < 0 || cfg->initial_capacity < 0)
        return cb_fail(CB_ERR_ARG, "cache %s: negative residual_len or initial_capacity", c->name);
    c->kind = cfg->kind;
    c->dtype = cb_kv_kind_dtype(cfg->kind);
    c->batch = batch;
    c->width = width;
    c->max_len = max_len;
    c->row_bytes = cb_quant_row_bytes(c->dtype, width);
    int64_t cap = cfg->initial_capacity ? cfg->initial_capacity : CB_KV_DEFAULT_INITIAL_CAPACITY;
    c->capacity = cap < max_len ? cap : max_len;
    if ((size_t)batch > SIZE_MAX / c->row_bytes / (size_t)max_len)
        return cb_fail(CB_ERR_NOMEM,
                       "cache %s: batch %lld x max_seq_len %lld x %zu bytes overflows", c->name,
                       (long long)batch, (long long)max_len, c->row_bytes);
    c->data = alloc64((size_t)batch * (size_t)c->capacity * c->row_bytes);
    if (!c->data) {
        size_t want = (size_t)batch * (size_t)c->capacity * c->row_bytes;
        return cb_fail(CB_ERR_NOMEM, "cache %s: cannot allocate %zu bytes", c->name, want);
    }
    c->ring_slots = ring_slots_for(cfg, max_len, &c->residual_len);
    if (c->ring_slots) {
        c->ring = alloc64((size_t)batch * (size_t)c->ring_slots * (size_t)width * 2);
        if (!c->ring) {
            free(c->data);
            c->data = NULL;
            return cb_fail(CB_ERR_NOMEM, "cache %s: cannot allocate the fp16 window", c->name);
        }
    }
    return CB_OK;
}

void cb_seq_cache_free(cb_seq_cache *c) {
    if (!c) return;
    free(c->data);
    free(c->ring);
    c->data = NULL;
    c->ring = NULL;
    c->len = c->capacity = 0;
}

static cb_status overflow(const cb_seq_cache *c, int64_t n) {
    return cb_fail(CB_ERR_ARG,
                   "cache %s overflow: %lld tokens needed, max_seq_len is %lld (length now %lld)",
                   c->name, (long long)n, (long long)c->max_len, (long long)c->len);
}

cb_status cb_seq_cache_reserve(cb_seq_cache *c, int64_t n) {
    if (n > c->max_len) return overflow(c, n);
    if (n <= c->capacity) return CB_OK;
    int64_t cap = c->capacity;
    while (cap < n) cap *= 2;
    if (cap > c->max_len) cap = c->max_len;
    uint8_t *p = alloc64((size_t)c->batch * (size_t)cap * c->row_bytes);
    if (!p)
        return cb_fail(CB_ERR_NOMEM, "cache %s: cannot grow to %lld tokens (%zu bytes)", c->name,
                       (long long)cap, (size_t)c->batch * (size_t)cap * c->row_bytes);
    for (int64_t b = 0; b < c->batch; b++)
        memcpy(p + (size_t)b * (size_t)cap * c->row_bytes,
               c->data + (size_t)b * (size_t)c->capacity * c->row_bytes,
               (size_t)c->len * c->row_bytes);
    free(c->data);
    c->data = p;
    c->capacity = cap;
    return CB_OK;
}

cb_status cb_seq_cache_append(cb_seq_cache *c, const float *x, int64_t T, int64_t *old_len) {
    if (old_len) *old_len = c->len;
    if (T < 0) return cb_fail(CB_ERR_ARG, "cache %s: append of %lld tokens", c->name, (long long)T);
    if (T == 0) return CB_OK;
    if (T > c->max_len - c->len) return overflow(c, c->len + T);
    CB_TRY(cb_seq_cache_reserve(c, c->len + T));
    const cb_quant_traits *tr = cb_quant_traits_get(c->dtype);
    if (!tr) return CB_ERR_INTERNAL;
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t t = 0; t < T; t++) {
            const float *row = x + ((size_t)b * (size_t)T + (size_t)t) * (size_t)c->width;
            uint8_t *dst =
                c->data + ((size_t)b * (size_t)c->capacity + (size_t)(c->len + t)) * c->row_bytes;
            CB_TRY(cb_quantize_row(c->dtype, row, c->width, dst));
            /* Only the last ring_slots new tokens survive in the ring. */
            if (c->ring_slots && t >= T - c->ring_slots) {
                int64_t pos = c->len + t;
                uint16_t *slot =
                    c->ring + ((size_t)b * (size_t)c->ring_slots + (size_t)(pos % c->ring_slots)) *
                                  (size_t)c->width;
                cb_convert_f32_to_f16(row, slot, c->width);
            }
        }
    c->len += T;
    return CB_OK;
}

cb_status cb_seq_cache_append_tensor(cb_seq_cache *c, const cb_tensor *x, int64_t *old_len) {
    if (old_len) *old_len = c->len;
    if (x->dtype != CB_F32 || x->device != CB_CPU || x->ndim != 3 || x->shape[0] != c->batch ||
        x->shape[2] != c->width) {
        char buf[64];
        return cb_fail(CB_ERR_SHAPE,
                       "cache %s: append expects an f32 CPU tensor [%lld, T, %lld], got %s %s",
                       c->name, (long long)c->batch, (long long)c->width, cb_dtype_name(x->dtype),
                       cb_shape_str(x, buf, sizeof buf));
    }
    return cb_seq_cache_append(c, x->data, x->shape[1], old_len);
}

cb_status cb_seq_cache_truncate(cb_seq_cache *c, int64_t new_len) {
    if (new_len < 0 || new_len > c->len)
        return cb_fail(CB_ERR_ARG, "cache %s: truncate to %lld outside 0..%lld", c->name,
                       (long long)new_len, (long long)c->len);
    if (c->ring_slots) {
        /* Copies of positions below len - slots were overwritten; positions >= new_len will be
         * rewritten by the next appends. */
        int64_t lo = c->len - c->ring_slots;
        if (lo > c->ring_lo) c->ring_lo = lo;
        if (c->ring_lo > new_len) c->ring_lo = new_len;
    }
    c->len = new_len;
    return CB_OK;
}

void cb_seq_cache_reset(cb_seq_cache *c) {
    c->len = 0;
    c->ring_lo = 0;
}

int64_t cb_seq_cache_window_start(const cb_seq_cache *c) {
    if (!c->ring_slots) return c->len;
    int64_t ws = c->len - c->residual_len;
    if (ws < c->ring_lo) ws = c->ring_lo;
    if (ws < 0) ws = 0;
    if (ws > c->len) ws = c->len;
    return ws;
}

cb_status cb_seq_cache_read(const cb_seq_cache *c, int64_t b, int64_t start, int64_t n,
                            float *out) {
    if (b < 0 || b >= c->batch || start < 0 || n < 0 || start + n > c->len)
        return cb_fail(CB_ERR_ARG,
                       "cache %s: read of batch %lld positions [%lld, %lld) outside "
                       "batch %lld length %lld",
                       c->name, (long long)b, (long long)start, (long long)(start + n),
                       (long long)c->batch, (long long)c->len);
    int64_t ws = cb_seq_cache_window_start(c);
    for (int64_t i = 0; i < n; i++) {
        int64_t pos = start + i;
        float *y = out + (size_t)i * (size_t)c->width;
        if (pos >= ws)
            cb_convert_f16_to_f32(cb_seq_cache_window_row(c, b, pos), y, c->width);
        else
            CB_TRY(cb_dequantize_row(c->dtype, cb_seq_cache_row(c, b, pos), c->width, y));
    }
    return CB_OK;
}

size_t cb_seq_cache_bytes(const cb_seq_cache *c) {
    return (size_t)c->batch * (size_t)c->capacity * c->row_bytes +
           (size_t)c->batch * (size_t)c->ring_slots * (size_t)c->width * 2;
}

size_t cb_seq_cache_bytes_used(const cb_seq_cache *c) {
    return (size_t)c->batch * (size_t)c->len * c->row_bytes +
           (size_t)c->batch * (size_t)c->ring_slots * (size_t)c->width * 2;
}
