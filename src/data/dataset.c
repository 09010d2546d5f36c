/* Dataset windows over a token file, train/validation split, and the counter-based sampler.
 *
 *   window i:  s = begin + i * stride,   x = tok[s .. s+L-1],   y = tok[s+1 .. s+L]
 *   batch:     x, y of shape (B, L), int64 or int32, CPU */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/data.h"

cb_status cb_dataset_init(cb_dataset *d, const cb_token_file *f, int64_t begin, int64_t end,
                          int64_t block, int64_t stride) {
    memset(d, 0, sizeof *d);
    if (block <= 0)
        return cb_fail(CB_ERR_ARG, "block_size must be positive, got %lld", (long long)block);
    if (stride <= 0)
        return cb_fail(CB_ERR_ARG, "stride must be positive, got %lld", (long long)stride);
    if (begin < 0 || end > f->n || begin > end)
        return cb_fail(CB_ERR_ARG, "%s: token range [%lld, %lld) outside the file's %lld tokens",
                       f->path, (long long)begin, (long long)end, (long long)f->n);
    int64_t len = end - begin;
    if (len <= block)
        return cb_fail(CB_ERR_ARG,
                       "%s: block_size must be smaller than data length, got "
                       "block_size=%lld, len=%lld",
                       f->path, (long long)block, (long long)len);
    d->tokens = f;
    d->begin = begin;
    d->end = end;
    d->block = block;
    d->stride = stride;
    d->n_windows = (len - block - 1) / stride + 1;
    return CB_OK;
}

cb_status cb_dataset_split(const cb_token_file *f, double val_fraction, int64_t block,
                           int64_t train_stride, cb_dataset *train, cb_dataset *val) {
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (!(val_fraction >= 0 && val_fraction < 1))
        return cb_fail(CB_ERR_ARG, "val_fraction must be in [0, 1), got %g", val_fraction);
    int64_t n_val = (int64_t)floor((double)f->n * val_fraction);
    int64_t cut = f->n - n_val;
    CB_TRY(cb_dataset_init(train, f, 0, cut, block, train_stride));
    if (n_val == 0) {
        val->tokens = f;
        val->begin = val->end = f->n;
        val->block = block;
        val->stride = block;
        return CB_OK;
    }
    cb_status st = cb_dataset_init(val, f, cut, f->n, block, block);
    if (st != CB_OK)
        return cb_fail_context(st, "validation split (the last %lld tokens, val_fraction %g)",
                               (long long)n_val, val_fraction);
    return CB_OK;
}

int64_t cb_dataset_window_start(const cb_dataset *d, int64_t i) {
    return d->begin + i * d->stride;
}

cb_status cb_dataset_window(const cb_dataset *d, int64_t i, int64_t *x, int64_t *y) {
    if (i < 0 || i >= d->n_windows)
        return cb_fail(CB_ERR_ARG, "window %lld outside 0..%lld", (long long)i,
                       (long long)d->n_windows - 1);
    int64_t s = cb_dataset_window_start(d, i);
    cb_tokens_read_i64(d->tokens, s, d->block, x);
    cb_tokens_read_i64(d->tokens, s + 1, d->block, y);
    return CB_OK;
}

static cb_status check_batch(const cb_dataset *d, int64_t batch, const cb_tensor *x,
                             const cb_tensor *y) {
    char a[64], b[64];
    if (x->device != CB_CPU || y->device != CB_CPU)
        return cb_fail(CB_ERR_UNSUPPORTED, "dataset batches are built on the CPU");
    if (x->dtype != y->dtype || (x->dtype != CB_I64 && x->dtype != CB_I32))
        return cb_fail(CB_ERR_ARG, "dataset batch: x and y must both be i64 or i32 (got %s, %s)",
                       cb_dtype_name(x->dtype), cb_dtype_name(y->dtype));
    if (x->ndim != 2 || !cb_tensor_same_shape(x, y) || x->shape[0] != batch ||
        x->shape[1] != d->block)
        return cb_fail(CB_ERR_SHAPE, "dataset batch: x %s and y %s must be [%lld, %lld]",
                       cb_shape_str(x, a, sizeof a), cb_shape_str(y, b, sizeof b), (long long)batch,
                       (long long)d->block);
    return CB_OK;
}

cb_status cb_dataset_batch(const cb_dataset *d, const int64_t *windows, int64_t batch, cb_tensor *x,
                           cb_tensor *y) {
    CB_TRY(check_batch(d, batch, x, y));
    int64_t L = d->block;
    for (int64_t b = 0; b < batch; b++) {
        int64_t i = windows[b];
        if (i < 0 || i >= d->n_windows)
            return cb_fail(CB_ERR_ARG, "dataset batch: window %lld outside 0..%lld", (long long)i,
                           (long long)d->n_windows - 1);
        int64_t s = cb_dataset_window_start(d, i);
        if (x->dtype == CB_I64) {
            cb_tokens_read_i64(d->tokens, s, L, (int64_t *)x->data + b * L);
            cb_tokens_read_i64(d->tokens, s + 1, L, (int64_t *)y->data + b * L);
        } else {
            cb_tokens_read_i32(d->tokens, s, L, (int32_t *)x->data + b * L);
            cb_tokens_read_i32(d->tokens, s + 1, L, (int32_t *)y->data + b * L);
        }
    }
    return CB_OK;
}

/* ---- sampler ------------------------------------------------------------------------------ */

/* splitmix64's output function applied to seed + k * golden ratio: draw k depends on nothing
 * but (seed, k). */
static uint64_t draw(uint64_t seed, uint64_t k) {
    uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void cb_sampler_init(cb_sampler *s, uint64_t seed) {
    s->seed = seed;
    s->pos = 0;
}

int64_t cb_sampler_next(cb_sampler *s, int64_t n) {
    if (n <= 1) {
        s->pos++;
        return 0;
    }
    /* Lemire's multiply-shift with rejection: exactly uniform */
    uint64_t un = (uint64_t)n;
    for (;;) {
        unsigned __int128 m = (unsigned __int128)draw(s->seed, s->pos++) * un;
        uint64_t lo = (uint64_t)m;
        if (lo >= un || lo >= (0 - un) % un) return (int64_t)(m >> 64);
    }
}

cb_status cb_dataset_sample_batch(const cb_dataset *d, cb_sampler *s, cb_tensor *x, cb_tensor *y) {
    if (x->ndim != 2) return cb_fail(CB_ERR_SHAPE, "dataset batch: x must be [B, L]");
    int64_t batch = x->shape[0];
    CB_TRY(check_batch(d, batch, x, y));
    if (d->n_windows <= 0) return cb_fail(CB_ERR_ARG, "dataset has no windows to sample");
    int64_t stack[64] = {0};
    int64_t *w = batch <= 64 ? stack : malloc((size_t)batch * sizeof *w);
    if (!w) return cb_fail(CB_ERR_NOMEM, "out of memory");
    for (int64_t b = 0; b < batch; b++) w[b] = cb_sampler_next(s, d->n_windows);
    cb_status st = cb_dataset_batch(d, w, batch, x, y);
    if (w != stack) free(w);
    return st;
}
