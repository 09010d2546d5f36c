/* Open-addressing hash maps for the tokenizer: byte strings -> u64 and id pairs -> u64.
 * Linear probing, power-of-two tables kept at most half full, no deletion (clear only). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static inline uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return x;
}

/* Word-at-a-time multiplicative hash; pieces are short, so the tail handling matters most. */
uint64_t tok_hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        h = (h ^ rd64(s)) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t t = 0;
        if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, s, 4);
            memcpy(&b, s + n - 4, 4);
            t = (uint64_t)a << 32 | b;
        } else {
            t = (uint64_t)s[0] << 16 | (uint64_t)s[n >> 1] << 8 | s[n - 1];
        }
        h = (h ^ t) * 0x100000001b3ull;
    }
    return mix64(h);
}

/* ---- byte strings ------------------------------------------------------------------------- */

/* Entries live in the slots themselves (one cache miss per lookup); keys longer than 8 bytes
 * keep their tail in the pool. */

/* The first 8 bytes of a key, zero-padded: the whole key for most tokens and pieces. */
static inline uint64_t head8(const void *key, size_t len) {
    uint64_t h = 0;
    memcpy(&h, key, len < 8 ? len : 8);
    return h;
}

static int strmap_rehash(tok_strmap *m, uint32_t cap) {
    tok_strslot *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (uint32_t i = 0; m->mask && i <= m->mask; i++) {
        if (!m->slots[i].used) continue;
        uint32_t j = m->slots[i].h32 & (cap - 1);
        while (slots[j].used) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->mask = cap - 1;
    return 0;
}

int tok_strmap_reserve(tok_strmap *m, size_t n, size_t key_bytes) {
    uint32_t cap = 1024;
    while ((size_t)cap < 2 * n) {
        if (cap >= (1u << 31)) return -1;
        cap *= 2;
    }
    if (cap > (m->mask ? m->mask + 1 : 0) && strmap_rehash(m, cap) != 0) return -1;
    if (key_bytes > m->pool_cap) {
        void *p = realloc(m->pool, key_bytes);
        if (!p) return -1;
        m->pool = p;
        m->pool_cap = key_bytes;
    }
    return 0;
}

/* Slot index holding key, or of the empty slot where it would go. */
static inline uint32_t strmap_find(const tok_strmap *m, const void *key, size_t len, bool *found) {
    uint32_t h32 = (uint32_t)(tok_hash_bytes(key, len) >> 32) | 1u; /* never 0 */
    uint64_t hd = head8(key, len);
    for (uint32_t i = h32 & m->mask;; i = (i + 1) & m->mask) {
        const tok_strslot *e = &m->slots[i];
        if (!e->used) {
            *found = false;
            return i;
        }
        if (e->h32 == h32 && e->len == len && e->head == hd &&
            (len <= 8 || memcmp(m->pool + e->off, (const char *)key + 8, len - 8) == 0)) {
            *found = true;
            return i;
        }
    }
}

bool tok_strmap_get(const tok_strmap *m, const void *key, size_t len, uint64_t *val) {
    if (!m->n) return false;
    bool found;
    uint32_t i = strmap_find(m, key, len, &found);
    if (found) *val = m->slots[i].val;
    return found;
}

int tok_strmap_insert(tok_strmap *m, const void *key, size_t len, uint64_t val, uint64_t *old) {
    if (len > UINT32_MAX) return -1;
    if ((m->n + 1) * 2 > (m->mask ? m->mask + 1 : 0) &&
        strmap_rehash(m, m->mask ? (m->mask + 1) * 2 : 1024) != 0)
        return -1;
    bool found;
    uint32_t i = strmap_find(m, key, len, &found);
    if (found) {
        if (old) *old = m->slots[i].val;
        return 0;
    }
    size_t tail = len > 8 ? len - 8 : 0;
    if (m->pool_n + tail > m->pool_cap) {
        size_t cap = m->pool_cap ? m->pool_cap * 2 : 4096;
        while (cap < m->pool_n + tail) cap *= 2;
        if (cap > UINT32_MAX) return -1;
        void *p = realloc(m->pool, cap);
        if (!p) return -1;
        m->pool = p;
        m->pool_cap = cap;
    }
    if (tail) memcpy(m->pool + m->pool_n, (const char *)key + 8, tail);
    m->slots[i] = (tok_strslot){head8(key, len),
                                val,
                                (uint32_t)m->pool_n,
                                (uint32_t)len,
                                (uint32_t)(tok_hash_bytes(key, len) >> 32) | 1u,
                                1};
    m->pool_n += tail;
    m->n++;
    return 1;
}

void tok_strmap_clear(tok_strmap *m) {
    if (m->slots) memset(m->slots, 0, ((size_t)m->mask + 1) * sizeof *m->slots);
    m->n = 0;
    m->pool_n = 0;
}

void tok_strmap_free(tok_strmap *m) {
    free(m->slots);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

/* ---- id pairs ----------------------------------------------------------------------------- */

/* Keys are stored plus one so that a zeroed table (calloc: untouched pages cost nothing) is
 * empty; real keys are below 2^56. Tables stay at most 3/4 full. */

static inline uint32_t pair_slot(uint64_t key, uint32_t mask) {
    return (uint32_t)mix64(key) & mask;
}

static int pairmap_rehash(tok_pairmap *m, uint32_t cap) {
    tok_pairent *e = calloc(cap, sizeof *e);
    if (!e) return -1;
    for (uint32_t i = 0; m->mask && i <= m->mask; i++) {
        if (!m->ents[i].key) continue;
        uint32_t j = pair_slot(m->ents[i].key - 1, cap - 1);
        while (e[j].key) j = (j + 1) & (cap - 1);
        e[j] = m->ents[i];
    }
    free(m->ents);
    m->ents = e;
    m->mask = cap - 1;
    return 0;
}

static inline bool pairmap_full(const tok_pairmap *m, size_t n) {
    return !m->mask || n * 4 > ((size_t)m->mask + 1) * 3;
}

int tok_pairmap_reserve(tok_pairmap *m, size_t n) {
    uint32_t cap = 1024;
    while ((size_t)cap * 3 < n * 4) {
        if (cap >= (1u << 31)) return -1;
        cap *= 2;
    }
    return cap > (m->mask ? m->mask + 1 : 0) ? pairmap_rehash(m, cap) : 0;
}

bool tok_pairmap_get(const tok_pairmap *m, uint64_t key, uint64_t *val) {
    if (!m->n) return false;
    for (uint32_t i = pair_slot(key, m->mask);; i = (i + 1) & m->mask) {
        uint64_t k = m->ents[i].key;
        if (k == key + 1) {
            *val = m->ents[i].val;
            return true;
        }
        if (!k) return false;
    }
}

int tok_pairmap_insert(tok_pairmap *m, uint64_t key, uint64_t val, bool overwrite) {
    if (pairmap_full(m, (size_t)m->n + 1) &&
        pairmap_rehash(m, m->mask ? (m->mask + 1) * 2 : 1024) != 0)
        return -1;
    uint32_t i = pair_slot(key, m->mask);
    for (; m->ents[i].key; i = (i + 1) & m->mask)
        if (m->ents[i].key == key + 1) {
            if (overwrite) m->ents[i].val = val;
            return 0;
        }
    m->ents[i].key = key + 1;
    m->ents[i].val = val;
    m->n++;
    return 1;
}

void tok_pairmap_free(tok_pairmap *m) {
    free(m->ents);
    memset(m, 0, sizeof *m);
}
