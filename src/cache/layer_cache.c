/* Layer caches: (k, v) for standard/GQA attention, (k_sem, k_geo, v) for decoupled attention.
 * Appends check every tensor first and reserve capacity for all of them before writing, so a
 * failing append leaves all lengths unchanged (the tensors never desynchronise). */
#include "caramba/kv_cache.h"

#include <stdio.h>
#include <string.h>

static int n_tensors(const cb_layer_cache *lc) {
    return lc->decoupled ? 3 : 2;
}

static cb_seq_cache *tensor_at(cb_layer_cache *lc, int i) {
    if (!lc->decoupled) return i == 0 ? &lc->k : &lc->v;
    return i == 0 ? &lc->k_sem : i == 1 ? &lc->k_geo : &lc->v;
}

static const cb_seq_cache *tensor_at_c(const cb_layer_cache *lc, int i) {
    return tensor_at((cb_layer_cache *)lc, i);
}

cb_status cb_layer_cache_init(cb_layer_cache *lc, int64_t batch, int64_t max_len, int64_t k_width,
                              int64_t v_width, const cb_kv_tensor_cfg *k_cfg,
                              const cb_kv_tensor_cfg *v_cfg) {
    memset(lc, 0, sizeof *lc);
    cb_status st = cb_seq_cache_init(&lc->k, "k", batch, max_len, k_width, k_cfg);
    if (st == CB_OK) st = cb_seq_cache_init(&lc->v, "v", batch, max_len, v_width, v_cfg);
    if (st != CB_OK) cb_layer_cache_free(lc);
    return st;
}

cb_status cb_layer_cache_init_decoupled(cb_layer_cache *lc, int64_t batch, int64_t max_len,
                                        int64_t sem_width, int64_t geo_width, int64_t v_width,
                                        const cb_kv_tensor_cfg *sem_cfg,
                                        const cb_kv_tensor_cfg *geo_cfg,
                                        const cb_kv_tensor_cfg *v_cfg) {
    memset(lc, 0, sizeof *lc);
    lc->decoupled = true;
    cb_status st = cb_seq_cache_init(&lc->k_sem, "k_sem", batch, max_len, sem_width, sem_cfg);
    if (st == CB_OK)
        st = cb_seq_cache_init(&lc->k_geo, "k_geo", batch, max_len, geo_width, geo_cfg);
    if (st == CB_OK) st = cb_seq_cache_init(&lc->v, "v", batch, max_len, v_width, v_cfg);
    if (st != CB_OK) cb_layer_cache_free(lc);
    return st;
}

void cb_layer_cache_free(cb_layer_cache *lc) {
    if (!lc) return;
    for (int i = 0; i < n_tensors(lc); i++) cb_seq_cache_free(tensor_at(lc, i));
}

static cb_status append_all(cb_layer_cache *lc, const cb_tensor *const *xs, int64_t *old_len) {
    const int n = n_tensors(lc);
    if (old_len) *old_len = cb_layer_cache_len(lc);
    int64_t T = -1;
    for (int i = 0; i < n; i++) {
        const cb_seq_cache *c = tensor_at(lc, i);
        const cb_tensor *x = xs[i];
        if (!x || x->dtype != CB_F32 || x->device != CB_CPU || x->ndim != 3 ||
            x->shape[0] != c->batch || x->shape[2] != c->width || (T >= 0 && x->shape[1] != T)) {
            char buf[64] = "(null)";
            if (x) cb_shape_str(x, buf, sizeof buf);
            char tbuf[24] = "T";
            if (T >= 0) snprintf(tbuf, sizeof tbuf, "%lld", (long long)T);
            return cb_fail(CB_ERR_SHAPE,
                           "layer cache append: %s expects an f32 CPU tensor [%lld, %s, %lld], "
                           "got %s %s",
                           c->name, (long long)c->batch, tbuf, (long long)c->width,
                           x ? cb_dtype_name(x->dtype) : "", buf);
        }
        T = x->shape[1];
        if (c->len != tensor_at(lc, 0)->len)
            return cb_fail(CB_ERR_INTERNAL, "layer cache: %s length %lld differs from %s %lld",
                           c->name, (long long)c->len, tensor_at(lc, 0)->name,
                           (long long)tensor_at(lc, 0)->len);
    }
    for (int i = 0; i < n; i++)
        CB_TRY(cb_seq_cache_reserve(tensor_at(lc, i), tensor_at(lc, i)->len + T));
    for (int i = 0; i < n; i++) CB_TRY(cb_seq_cache_append_tensor(tensor_at(lc, i), xs[i], NULL));
    return CB_OK;
}

cb_status cb_layer_cache_append(cb_layer_cache *lc, const cb_tensor *k, const cb_tensor *v,
                                int64_t *old_len) {
    if (lc->decoupled)
        return cb_fail(CB_ERR_ARG, "layer cache: decoupled cache needs k_sem, k_geo and v");
    const cb_tensor *xs[2] = {k, v};
    return append_all(lc, xs, old_len);
}

cb_status cb_layer_cache_append_decoupled(cb_layer_cache *lc, const cb_tensor *k_sem,
                                          const cb_tensor *k_geo, const cb_tensor *v,
                                          int64_t *old_len) {
    if (!lc->decoupled)
        return cb_fail(CB_ERR_ARG, "layer cache: standard cache takes k and v, not k_sem/k_geo");
    const cb_tensor *xs[3] = {k_sem, k_geo, v};
    return append_all(lc, xs, old_len);
}

cb_status cb_layer_cache_truncate(cb_layer_cache *lc, int64_t new_len) {
    if (new_len < 0 || new_len > cb_layer_cache_len(lc))
        return cb_fail(CB_ERR_ARG, "layer cache: truncate to %lld outside 0..%lld",
                       (long long)new_len, (long long)cb_layer_cache_len(lc));
    for (int i = 0; i < n_tensors(lc); i++)
        CB_TRY(cb_seq_cache_truncate(tensor_at(lc, i), new_len));
    return CB_OK;
}

void cb_layer_cache_reset(cb_layer_cache *lc) {
    for (int i = 0; i < n_tensors(lc); i++) cb_seq_cache_reset(tensor_at(lc, i));
}

int64_t cb_layer_cache_len(const cb_layer_cache *lc) {
    return lc->k.len;
}

size_t cb_layer_cache_bytes(const cb_layer_cache *lc) {
    size_t s = 0;
    for (int i = 0; i < n_tensors(lc); i++) s += cb_seq_cache_bytes(tensor_at_c(lc, i));
    return s;
}

size_t cb_layer_cache_bytes_used(const cb_layer_cache *lc) {
    size_t s = 0;
    for (int i = 0; i < n_tensors(lc); i++) s += cb_seq_cache_bytes_used(tensor_at_c(lc, i));
    return s;
}
