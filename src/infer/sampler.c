/* Next-token sampling (spec-infer §10.1): temperature -> top-k -> top-p, greedy at T <= 0.
 *
 *   logits [V] f32 (one row) -> probs [V] (the distribution a token is drawn from), or a token.
 *
 * Everything runs on one row with two scratch arrays of V entries allocated once per sampler,
 * so the decode loop never allocates. Softmax sums and the cumulative top-p mass are accumulated
 * in double so that the cut does not depend on summation order within float precision. */
#include <float.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/generate.h"

cb_status cb_token_sampler_init(cb_token_sampler *s, int64_t vocab) {
    *s = (cb_token_sampler){0};
    if (vocab <= 0 || vocab > ((int64_t)1 << 31) - 1)
        return cb_fail(CB_ERR_ARG, "sampler: vocabulary size %lld out of range", (long long)vocab);
    s->vocab = vocab;
    s->probs = malloc(sizeof(float) * (size_t)vocab);
    s->order = malloc(sizeof(int32_t) * (size_t)vocab);
    if (!s->probs || !s->order) {
        cb_token_sampler_free(s);
        return cb_fail(CB_ERR_NOMEM, "sampler: scratch for %lld logits", (long long)vocab);
    }
    return CB_OK;
}

void cb_token_sampler_free(cb_token_sampler *s) {
    free(s->probs);
    free(s->order);
    *s = (cb_token_sampler){0};
}

double cb_rng_uniform53(cb_rng *r) {
    return (double)(cb_rng_next(r) >> 11) * 0x1.0p-53;
}

int32_t cb_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best] || (x[best] != x[best] && x[i] == x[i])) best = i;
    return (int32_t)best;
}

int32_t cb_sample_from(const float *probs, int64_t n, cb_rng *rng) {
    double total = 0;
    int64_t last = -1;
    for (int64_t i = 0; i < n; i++)
        if (probs[i] > 0) {
            total += probs[i];
            last = i;
        }
    double u = cb_rng_uniform53(rng) * total, c = 0;
    if (last < 0) return 0; /* no mass anywhere: cannot happen for a softmax */
    for (int64_t i = 0; i < last; i++) {
        if (probs[i] <= 0) continue;
        c += probs[i];
        if (u < c) return (int32_t)i;
    }
    return (int32_t)last;
}

/* Quickselect on idx[lo..hi] by z descending: afterwards idx[k] holds the k-th largest and
 * everything before it is >= it. */
static void select_desc(int32_t *idx, const float *z, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = z[idx[lo + (hi - lo) / 2]];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (z[idx[i]] > pivot) i++;
            while (z[idx[j]] < pivot) j--;
            if (i <= j) {
                int32_t t = idx[i];
                idx[i] = idx[j];
                idx[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

/* Max-heap over idx[0..n) ordered by z descending, ties by lower index (deterministic); used to
 * pop candidates in probability order without sorting them all (and without qsort's buffer). */
static inline bool before(const float *z, int32_t a, int32_t b) {
    return z[a] > z[b] || (z[a] == z[b] && a < b);
}

static void sift_down(int32_t *h, int64_t n, int64_t i, const float *z) {
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < n && before(z, h[l], h[top])) top = l;
        if (r < n && before(z, h[r], h[top])) top = r;
        if (top == i) return;
        int32_t t = h[i];
        h[i] = h[top];
        h[top] = t;
        i = top;
    }
}

cb_status cb_token_sampler_probs(cb_token_sampler *s, const float *logits, float temperature,
                                 int top_k, float top_p) {
    const int64_t V = s->vocab;
    float *z = s->probs;
    if (!(temperature > 0)) {
        memset(z, 0, sizeof(float) * (size_t)V);
        z[cb_argmax(logits, V)] = 1.0f;
        return CB_OK;
    }
    const float inv_t = 1.0f / temperature;
    for (int64_t i = 0; i < V; i++) z[i] = logits[i] * inv_t;

    /* candidates: indices still in play, in s->order[0..n) */
    int64_t n = V;
    for (int64_t i = 0; i < V; i++) s->order[i] = (int32_t)i;
    if (top_k > 0 && top_k < V) {
        select_desc(s->order, z, V, top_k - 1);
        float kth = z[s->order[top_k - 1]];
        n = 0;
        for (int64_t i = 0; i < V; i++) /* ties with the k-th value are kept */
            if (z[i] >= kth)
                s->order[n++] = (int32_t)i;
            else
                z[i] = -INFINITY;
    }
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = fmaxf(mx, z[s->order[j]]);
    if (!isfinite(mx))
        return cb_fail(CB_ERR_ARG, "sampler: logits are not finite (max %g)", (double)mx);
    if (top_p > 0 && top_p < 1 && n > 1) {
        int32_t *h = s->order;
        double tot = 0;
        for (int64_t j = 0; j < n; j++) tot += exp((double)z[h[j]] - mx);
        for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down(h, n, i, z);
        /* pop in descending order; popped entries collect at the end of the array */
        double c = 0;
        int64_t left = n;
        while (left > 0) {
            int32_t top = h[0];
            h[0] = h[left - 1];
            h[left - 1] = top;
            left--;
            sift_down(h, left, 0, z);
            c += exp((double)z[top] - mx) / tot;
            if (c > (double)top_p) break;
        }
        for (int64_t j = 0; j < left; j++) z[h[j]] = -INFINITY;
        n -= left;
    }
    double tot = 0;
    for (int64_t i = 0; i < V; i++) {
        double e = z[i] == -INFINITY ? 0.0 : exp((double)z[i] - mx);
        z[i] = (float)e;
        tot += e;
    }
    const float inv = (float)(1.0 / tot);
    for (int64_t i = 0; i < V; i++) z[i] *= inv;
    return CB_OK;
}

int32_t cb_token_sampler_sample(cb_token_sampler *s, const float *logits, float temperature,
                                int top_k, float top_p, cb_rng *rng) {
    if (!(temperature > 0)) return cb_argmax(logits, s->vocab);
    if (cb_token_sampler_probs(s, logits, temperature, top_k, top_p) != CB_OK)
        return cb_argmax(logits, s->vocab);
    return cb_sample_from(s->probs, s->vocab, rng);
}
