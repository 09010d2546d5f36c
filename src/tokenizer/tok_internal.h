/* Internals shared by the tokenizer engine and its front ends (tiktoken, tokenizer.json, bytes).
 *
 * The model is the same for every front end: ids map to byte strings; a merge table maps an
 * adjacent pair of ids (left, right) to (rank, merged id); the pre-tokenizer is a list of regex
 * split stages; special tokens are found with a byte trie before pre-tokenization. */
#ifndef CARAMBA_TOK_INTERNAL_H
#define CARAMBA_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/tokenizer.h"

/* ---- hash maps (tok_map.c) ---------------------------------------------------------------- */

uint64_t tok_hash_bytes(const void *p, size_t n);

/* Byte strings -> u64 values, open addressing with the entries in the slots. */
typedef struct tok_strslot {
    uint64_t head; /* first 8 key bytes, zero-padded */
    uint64_t val;
    uint32_t off; /* the key's bytes after the first 8, in pool */
    uint32_t len;
    uint32_t h32; /* hash bits (never 0) */
    uint32_t used;
} tok_strslot;
typedef struct tok_strmap {
    tok_strslot *slots;
    uint32_t mask; /* slots - 1 (power of two), 0 before the first insert */
    uint32_t n;
    char *pool;
    size_t pool_n, pool_cap;
} tok_strmap;

bool tok_strmap_get(const tok_strmap *m, const void *key, size_t len, uint64_t *val);
/* Inserts key -> val. Returns 1 when inserted, 0 when the key was present (*old receives its
 * value; the map is unchanged), -1 when out of memory. */
int tok_strmap_insert(tok_strmap *m, const void *key, size_t len, uint64_t val, uint64_t *old);
void tok_strmap_clear(tok_strmap *m);
/* Pre-sizes for n keys of key_bytes bytes in all (avoids rehashing while loading). */
int tok_strmap_reserve(tok_strmap *m, size_t n, size_t key_bytes);
void tok_strmap_free(tok_strmap *m);

/* (left id, right id) -> (rank << 32 | merged id). */
typedef struct tok_pairent {
    uint64_t key; /* the pair key + 1; 0 = empty */
    uint64_t val;
} tok_pairent;
typedef struct tok_pairmap {
    tok_pairent *ents;
    uint32_t mask, n;
} tok_pairmap;

static inline uint64_t tok_pair_key(int32_t a, int32_t b) {
    return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}
bool tok_pairmap_get(const tok_pairmap *m, uint64_t key, uint64_t *val);
int tok_pairmap_reserve(tok_pairmap *m, size_t n);
/* Returns 1 inserted, 0 present (value replaced when overwrite), -1 out of memory. */
int tok_pairmap_insert(tok_pairmap *m, uint64_t key, uint64_t val, bool overwrite);
void tok_pairmap_free(tok_pairmap *m);

/* ---- the tokenizer object ----------------------------------------------------------------- */

enum { TOK_BYTES = 0, TOK_TIKTOKEN = 1, TOK_HF = 2 };
enum { TOK_MAX_STAGES = 8, TOK_MAX_TEMPLATE = 8 };
enum { TOK_ID_PRESENT = 1, TOK_ID_SPECIAL = 2, TOK_ID_ADDED = 4 };

/* How a split stage treats the pattern's matches (Hugging Face SplitDelimiterBehavior). */
enum {
    TOK_SPLIT_ISOLATED = 0,
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
};

typedef struct tok_span {
    size_t start, end;
    bool delim;
} tok_span;

typedef struct tok_stage {
    pcre2_code *re;    /* NULL: no split at this stage */
    bool jit;          /* JIT compiled */
    int behavior;      /* TOK_SPLIT_* */
    bool invert;       /* the pattern matches the pieces, not the delimiters */
    bool prefix_space; /* ByteLevel add_prefix_space: a piece not starting with ' ' gets one */
    /* scratch owned by the stage (one piece at a time is processed per stage) */
    char *buf;
    size_t buf_cap;
    tok_span *spans;
    size_t spans_cap;
} tok_stage;

typedef struct tok_special {
    int32_t id;
    bool special; /* recognised only with CB_TOK_ALLOW_SPECIAL; else always (HF added) */
    bool lstrip, rstrip, single_word;
} tok_special;

typedef struct tok_trie_node {
    int32_t child, sibling; /* -1 = none */
    int32_t special;        /* index into specials, -1 = not a token end */
    uint8_t byte;
} tok_trie_node;

typedef struct tok_bpe_sym {
    int32_t id, prev, next;
} tok_bpe_sym;

typedef struct tok_heap_ent {
    uint64_t key; /* rank << 32 | position: the smallest merges first, leftmost on ties */
    int32_t left, right, merged;
} tok_heap_ent;

struct cb_tokenizer {
    char *name;
    int kind;
    /* ids -> bytes */
    int64_t n_ids, ids_cap; /* n_ids: largest id + 1 */
    uint64_t *id_span;      /* off << 32 | len into id_pool */
    uint8_t *id_flags;      /* TOK_ID_* */
    char *id_pool;
    size_t id_pool_n, id_pool_cap;
    /* ordinary tokens: bytes -> id (specials are not here) */
    tok_strmap vocab;
    tok_pairmap merges;
    /* tiktoken semantics instead of a merge table: (a, b) merges into the token whose bytes are
     * bytes(a)+bytes(b), at that token's rank (its id); looked up when needed */
    bool rank_merges;
    size_t max_token_len;
    int32_t byte_id[256];
    bool ignore_merges; /* a piece that is itself a token is emitted whole (tiktoken, llama3) */
    /* pre-tokenizer */
    tok_stage stages[TOK_MAX_STAGES];
    int n_stages;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    /* special / added tokens */
    tok_special *specials;
    int n_specials;
    tok_trie_node *trie;
    int n_trie, cap_trie;
    uint8_t special_first[256];
    bool has_plain_added; /* an added token that is not special: always matched */
    /* CB_TOK_BOS: template ids before and after the text */
    int32_t bos_pre[TOK_MAX_TEMPLATE], bos_post[TOK_MAX_TEMPLATE];
    int n_bos_pre, n_bos_post;
    int32_t eot_id;
    /* piece cache: bytes -> (offset << 32 | count) into cache_ids */
    tok_strmap cache;
    int32_t *cache_ids;
    size_t cache_n, cache_cap;
    /* BPE scratch */
    tok_bpe_sym *syms;
    size_t syms_cap;
    tok_heap_ent *heap;
    size_t heap_cap;
};

cb_tokenizer *tok_new(int kind, const char *name);
/* Sets the bytes of an id (growing the tables); flags TOK_ID_*. Fails on a repeated id. */
cb_status tok_set_id(cb_tokenizer *t, int32_t id, const void *bytes, size_t len, unsigned flags);
/* After all ordinary ids are set: builds vocab (bytes -> id) and byte_id; every single byte must
 * be a token. */
cb_status tok_build_vocab(cb_tokenizer *t, const char *src);
/* Adds a special/added token with its id (bytes set too). */
cb_status tok_add_special(cb_tokenizer *t, int32_t id, const char *text, size_t len, bool special,
                          bool lstrip, bool rstrip, bool single_word);
/* Adds a split stage. pattern is PCRE2 syntax (\s is rewritten to ECMAScript whitespace, see
 * pretok.c); literal: pattern is a plain string. */
cb_status tok_add_stage(cb_tokenizer *t, const char *pattern, bool literal, int behavior,
                        bool invert, bool prefix_space, const char *src);

/* Appends the ids of one pre-tokenized piece (pure BPE, no cache). */
cb_status tok_bpe(cb_tokenizer *t, const uint8_t *s, size_t n, cb_ids *out);
/* Runs the split stages from stage k over s and encodes every resulting piece. */
cb_status tok_pretokenize(cb_tokenizer *t, int k, const uint8_t *s, size_t n, cb_ids *out);
/* Encodes one piece through the cache. */
cb_status tok_encode_piece(cb_tokenizer *t, const uint8_t *s, size_t n, cb_ids *out);
/* Longest special token starting at s (which has n bytes); accept(special) filters. Returns the
 * special's index or -1, and its length. */
int tok_trie_match(const cb_tokenizer *t, const uint8_t *s, size_t n, bool allow_special,
                   bool only_special, size_t *len);

/* Front ends. */
cb_status tok_open_tiktoken(cb_tokenizer **out, const char *path, const char *encoding);
cb_status tok_open_hf(cb_tokenizer **out, const char *path);
cb_status tok_parse_hf(cb_tokenizer **out, const char *json, size_t len, const char *name);
cb_status tok_parse_tiktoken(cb_tokenizer **out, const char *data, size_t len, const char *name,
                             const char *encoding);
cb_status tok_open_bytes(cb_tokenizer **out);

/* Built-in encodings (encodings.c). */
typedef struct tok_encoding_info {
    const char *name;
    const char *pattern;
    int32_t eot_id, bos_id; /* -1 if none */
    int64_t n_ranks;        /* expected number of ranks (0: not checked) */
} tok_encoding_info;
const tok_encoding_info *tok_find_encoding(const char *name);
/* Adds the encoding's special tokens to t. */
cb_status tok_add_encoding_specials(cb_tokenizer *t, const tok_encoding_info *enc);
const char *tok_encoding_names(void);

#endif
