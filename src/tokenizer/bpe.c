/* Byte-pair merging of one pre-tokenized piece, and the piece cache in front of it.
 *
 * piece: n bytes -> symbols sym[0..n) (one per byte, a doubly linked list) -> ids.
 * Every adjacent pair with an entry in the merge table sits in a min-heap keyed by
 * (rank, position of its left symbol). Popping the smallest key and merging it is exactly
 * "merge the lowest-ranked pair, leftmost first" of tiktoken and Hugging Face BPE; a popped entry
 * whose symbols changed since it was pushed is stale and skipped. Each merge pushes at most two
 * new pairs, so a piece costs O(n log n), never a rescan of the whole piece. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

cb_status cb_ids_push(cb_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 256;
        int32_t *p = realloc(ids->data, cap * sizeof *p);
        if (!p) return cb_fail(CB_ERR_NOMEM, "token ids: out of memory (%zu ids)", cap);
        ids->data = p;
        ids->cap = cap;
    }
    ids->data[ids->n++] = id;
    return CB_OK;
}

static cb_status ids_reserve(cb_ids *ids, size_t more) {
    if (ids->n + more <= ids->cap) return CB_OK;
    size_t cap = ids->cap ? ids->cap : 256;
    while (cap < ids->n + more) cap *= 2;
    int32_t *p = realloc(ids->data, cap * sizeof *p);
    if (!p) return cb_fail(CB_ERR_NOMEM, "token ids: out of memory (%zu ids)", cap);
    ids->data = p;
    ids->cap = cap;
    return CB_OK;
}

void cb_ids_free(cb_ids *ids) {
    if (!ids) return;
    free(ids->data);
    memset(ids, 0, sizeof *ids);
}

static inline void heap_push(tok_heap_ent *h, size_t *n, tok_heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p].key <= e.key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static inline tok_heap_ent heap_pop(tok_heap_ent *h, size_t *n) {
    tok_heap_ent top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1].key < h[c].key) c++;
        if (last.key <= h[c].key) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

/* (rank << 32 | merged id) of the pair (a, b), if it merges. With tiktoken's rank semantics the
 * answer comes from the vocabulary (bytes(a)+bytes(b)) and is remembered in t->merges, which then
 * serves as a cache of pairs seen (TOK_NO_MERGE marks a pair that does not merge). */
#define TOK_NO_MERGE UINT64_MAX
static inline bool pair_merge(cb_tokenizer *t, int32_t a, int32_t b, uint64_t *v) {
    uint64_t key = tok_pair_key(a, b);
    if (tok_pairmap_get(&t->merges, key, v)) return *v != TOK_NO_MERGE;
    if (!t->rank_merges) return false;
    uint64_t sa = t->id_span[a], sb = t->id_span[b];
    size_t la = (uint32_t)sa, lb = (uint32_t)sb;
    char buf[512];
    uint64_t id;
    bool found = false;
    if (la + lb <= t->max_token_len && la + lb <= sizeof buf) {
        memcpy(buf, t->id_pool + (sa >> 32), la);
        memcpy(buf + la, t->id_pool + (sb >> 32), lb);
        found = tok_strmap_get(&t->vocab, buf, la + lb, &id);
    }
    *v = found ? id << 32 | id : TOK_NO_MERGE;
    if (t->merges.n >= (1u << 22)) { /* bounded: start over */
        tok_pairmap_free(&t->merges);
    }
    tok_pairmap_insert(&t->merges, key, *v, false); /* a failed insert only loses the memo */
    return found;
}

/* Pushes the pair (sym[i], sym[j]) if it merges; false when the heap cannot grow. */
static inline bool push_pair(cb_tokenizer *t, size_t *nh, const tok_bpe_sym *sym, int32_t i,
                             int32_t j) {
    uint64_t v;
    if (!pair_merge(t, sym[i].id, sym[j].id, &v)) return true;
    if (*nh == t->heap_cap) {
        size_t cap = t->heap_cap < 256 ? 256 : t->heap_cap + t->heap_cap / 2;
        tok_heap_ent *h = realloc(t->heap, cap * sizeof *h);
        if (!h) return false;
        t->heap = h;
        t->heap_cap = cap;
    }
    heap_push(t->heap, nh,
              (tok_heap_ent){(v & 0xffffffff00000000ull) | (uint32_t)i, sym[i].id, sym[j].id,
                             (int32_t)(uint32_t)v});
    return true;
}

cb_status tok_bpe(cb_tokenizer *t, const uint8_t *s, size_t n, cb_ids *out) {
    if (n == 0) return CB_OK;
    if (n == 1) return cb_ids_push(out, t->byte_id[s[0]]);
    if (n > INT32_MAX / 2)
        return cb_fail(CB_ERR_ARG, "tokenizer: a piece of %zu bytes is too long", n);
    if (n > t->syms_cap) {
        size_t cap = n < 64 ? 64 : n;
        tok_bpe_sym *sy = realloc(t->syms, cap * sizeof *sy);
        if (!sy) return cb_fail(CB_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte piece", n);
        t->syms = sy;
        t->syms_cap = cap;
    }
    tok_bpe_sym *sym = t->syms;
    size_t nh = 0;
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        sym[i] = (tok_bpe_sym){t->byte_id[s[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    for (size_t i = 0; ok && i + 1 < n; i++)
        ok = push_pair(t, &nh, sym, (int32_t)i, (int32_t)i + 1);
    size_t left = n;
    while (ok && nh) {
        tok_heap_ent e = heap_pop(t->heap, &nh);
        int32_t i = (int32_t)(uint32_t)e.key;
        int32_t j = sym[i].next;
        if (sym[i].id != e.left || j < 0 || sym[j].id != e.right) continue; /* stale */
        sym[i].id = e.merged;
        sym[i].next = sym[j].next;
        if (sym[j].next >= 0) sym[sym[j].next].prev = i;
        sym[j].id = -1;
        left--;
        /* at most two new pairs per merge: the heap never outgrows 2n entries */
        if (sym[i].prev >= 0) ok = push_pair(t, &nh, sym, sym[i].prev, i);
        if (ok && sym[i].next >= 0) ok = push_pair(t, &nh, sym, i, sym[i].next);
    }
    if (!ok) return cb_fail(CB_ERR_NOMEM, "tokenizer: out of memory for a %zu-byte piece", n);
    CB_TRY(ids_reserve(out, left));
    for (int32_t i = 0; i >= 0; i = sym[i].next) out->data[out->n++] = sym[i].id;
    return CB_OK;
}

enum { TOK_CACHE_MAX_PIECE = 128, TOK_CACHE_MAX_ENTRIES = 1 << 18 };

cb_status tok_encode_piece(cb_tokenizer *t, const uint8_t *s, size_t n, cb_ids *out) {
    if (n == 0) return CB_OK;
    if (t->kind == TOK_BYTES) {
        CB_TRY(ids_reserve(out, n));
        for (size_t i = 0; i < n; i++) out->data[out->n++] = s[i];
        return CB_OK;
    }
    uint64_t v;
    if (n <= TOK_CACHE_MAX_PIECE && tok_strmap_get(&t->cache, s, n, &v)) {
        size_t off = (size_t)(v >> 32), cnt = (uint32_t)v;
        CB_TRY(ids_reserve(out, cnt));
        memcpy(out->data + out->n, t->cache_ids + off, cnt * sizeof(int32_t));
        out->n += cnt;
        return CB_OK;
    }
    size_t start = out->n;
    if (t->ignore_merges && tok_strmap_get(&t->vocab, s, n, &v))
        CB_TRY(cb_ids_push(out, (int32_t)v));
    else
        CB_TRY(tok_bpe(t, s, n, out));
    if (n > TOK_CACHE_MAX_PIECE) return CB_OK;
    size_t cnt = out->n - start;
    if (t->cache.n >= TOK_CACHE_MAX_ENTRIES) { /* bounded: start over rather than evict */
        tok_strmap_clear(&t->cache);
        t->cache_n = 0;
    }
    if (t->cache_n + cnt > t->cache_cap) {
        size_t cap = t->cache_cap ? t->cache_cap * 2 : 4096;
        while (cap < t->cache_n + cnt) cap *= 2;
        int32_t *p = realloc(t->cache_ids, cap * sizeof *p);
        if (!p) return CB_OK; /* the cache is an optimisation only */
        t->cache_ids = p;
        t->cache_cap = cap;
    }
    if (tok_strmap_insert(&t->cache, s, n, (uint64_t)t->cache_n << 32 | cnt, NULL) == 1) {
        memcpy(t->cache_ids + t->cache_n, out->data + start, cnt * sizeof(int32_t));
        t->cache_n += cnt;
    }
    return CB_OK;
}
