/* The tokenizer object: id tables, opening by path, encode (special tokens, then the
 * pre-tokenizer, then BPE per piece), decode, and the raw `bytes` tokenizer. */
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "tokenizer/tok_internal.h"

enum { TOK_MAX_IDS = 1 << 24 }; /* far above any real vocabulary; bounds hostile files */

cb_tokenizer *tok_new(int kind, const char *name) {
    cb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->kind = kind;
    t->name = strdup(name ? name : "");
    if (!t->name) {
        free(t);
        return NULL;
    }
    t->eot_id = -1;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    return t;
}

cb_status tok_set_id(cb_tokenizer *t, int32_t id, const void *bytes, size_t len, unsigned flags) {
    if (id < 0 || id >= TOK_MAX_IDS)
        return cb_fail(CB_ERR_FORMAT, "token id %d outside 0..%d", id, TOK_MAX_IDS - 1);
    if (len > UINT32_MAX / 2) return cb_fail(CB_ERR_FORMAT, "token %d is absurdly long", id);
    if (id >= t->ids_cap) {
        int64_t cap = t->ids_cap ? t->ids_cap : 1024;
        while (cap <= id) cap *= 2;
        if (cap > TOK_MAX_IDS) cap = TOK_MAX_IDS;
        uint64_t *sp = realloc(t->id_span, (size_t)cap * sizeof *sp);
        if (!sp) return cb_fail(CB_ERR_NOMEM, "out of memory for %lld ids", (long long)cap);
        t->id_span = sp;
        uint8_t *fl = realloc(t->id_flags, (size_t)cap);
        if (!fl) return cb_fail(CB_ERR_NOMEM, "out of memory for %lld ids", (long long)cap);
        t->id_flags = fl;
        memset(t->id_flags + t->ids_cap, 0, (size_t)(cap - t->ids_cap));
        t->ids_cap = cap;
    }
    if (id >= t->n_ids) t->n_ids = (int64_t)id + 1;
    if (t->id_flags[id] & TOK_ID_PRESENT) {
        /* An added token may restate an id the vocabulary already has (same bytes). */
        uint64_t s = t->id_span[id];
        if ((flags & TOK_ID_ADDED) && (uint32_t)s == len &&
            memcmp(t->id_pool + (s >> 32), bytes, len) == 0) {
            t->id_flags[id] |= (uint8_t)flags;
            return CB_OK;
        }
        return cb_fail(CB_ERR_FORMAT, "token id %d is defined twice", id);
    }
    if (t->id_pool_n + len > t->id_pool_cap) {
        size_t cap = t->id_pool_cap ? t->id_pool_cap * 2 : 1 << 16;
        while (cap < t->id_pool_n + len) cap *= 2;
        char *p = realloc(t->id_pool, cap);
        if (!p) return cb_fail(CB_ERR_NOMEM, "out of memory");
        t->id_pool = p;
        t->id_pool_cap = cap;
    }
    if (len) memcpy(t->id_pool + t->id_pool_n, bytes, len);
    t->id_span[id] = (uint64_t)t->id_pool_n << 32 | (uint32_t)len;
    t->id_pool_n += len;
    t->id_flags[id] = (uint8_t)(flags | TOK_ID_PRESENT);
    return CB_OK;
}

static inline const char *id_bytes(const cb_tokenizer *t, int32_t id, size_t *len) {
    uint64_t s = t->id_span[id];
    *len = (uint32_t)s;
    return t->id_pool + (s >> 32);
}

cb_status tok_build_vocab(cb_tokenizer *t, const char *src) {
    if (tok_strmap_reserve(&t->vocab, (size_t)t->n_ids, t->id_pool_n) != 0)
        return cb_fail(CB_ERR_NOMEM, "%s: out of memory", src);
    for (int32_t id = 0; id < t->n_ids; id++) {
        if ((t->id_flags[id] & (TOK_ID_PRESENT | TOK_ID_ADDED)) != TOK_ID_PRESENT) continue;
        size_t len;
        const char *b = id_bytes(t, id, &len);
        if (len == 0) return cb_fail(CB_ERR_FORMAT, "%s: token %d is empty", src, id);
        uint64_t old;
        int r = tok_strmap_insert(&t->vocab, b, len, (uint64_t)id, &old);
        if (r < 0) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", src);
        if (r == 0)
            return cb_fail(CB_ERR_FORMAT, "%s: tokens %lld and %d have the same bytes", src,
                           (long long)old, id);
        if (len > t->max_token_len) t->max_token_len = len;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        uint64_t id;
        if (!tok_strmap_get(&t->vocab, &c, 1, &id))
            return cb_fail(CB_ERR_FORMAT,
                           "%s: no token for the byte 0x%02x: not a complete "
                           "byte-level BPE vocabulary",
                           src, b);
        t->byte_id[b] = (int32_t)id;
    }
    return CB_OK;
}

void cb_tokenizer_free(cb_tokenizer *t) {
    if (!t) return;
    free(t->name);
    free(t->id_span);
    free(t->id_flags);
    free(t->id_pool);
    tok_strmap_free(&t->vocab);
    tok_pairmap_free(&t->merges);
    for (int i = 0; i < t->n_stages; i++) {
        pcre2_code_free(t->stages[i].re);
        free(t->stages[i].buf);
        free(t->stages[i].spans);
    }
    pcre2_match_data_free(t->md);
    pcre2_match_context_free(t->mctx);
    pcre2_jit_stack_free(t->jit_stack);
    free(t->specials);
    free(t->trie);
    tok_strmap_free(&t->cache);
    free(t->cache_ids);
    free(t->syms);
    free(t->heap);
    free(t);
}

/* ---- the bytes tokenizer ------------------------------------------------------------------ */

cb_status tok_open_bytes(cb_tokenizer **out) {
    *out = NULL;
    cb_tokenizer *t = tok_new(TOK_BYTES, "bytes");
    if (!t) return cb_fail(CB_ERR_NOMEM, "out of memory");
    cb_status st = CB_OK;
    for (int b = 0; b < 256 && st == CB_OK; b++) {
        uint8_t c = (uint8_t)b;
        st = tok_set_id(t, b, &c, 1, 0);
    }
    static const char eot[] = "<|endoftext|>", bos[] = "<|begin_of_text|>";
    if (st == CB_OK) st = tok_set_id(t, 256, eot, strlen(eot), TOK_ID_SPECIAL | TOK_ID_ADDED);
    if (st == CB_OK) st = tok_set_id(t, 257, bos, strlen(bos), TOK_ID_SPECIAL | TOK_ID_ADDED);
    if (st == CB_OK) st = tok_add_special(t, 256, eot, strlen(eot), true, false, false, false);
    if (st == CB_OK) st = tok_add_special(t, 257, bos, strlen(bos), true, false, false, false);
    if (st == CB_OK) st = tok_build_vocab(t, "bytes");
    if (st != CB_OK) {
        cb_tokenizer_free(t);
        return st;
    }
    t->eot_id = 256;
    t->bos_pre[0] = 257;
    t->n_bos_pre = 1;
    *out = t;
    return CB_OK;
}

/* ---- opening ------------------------------------------------------------------------------ */

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

cb_status cb_tokenizer_open(cb_tokenizer **out, const char *path, const char *encoding) {
    *out = NULL;
    if (!path || !*path) return cb_fail(CB_ERR_ARG, "tokenizer: no path given");
    if (encoding && !*encoding) encoding = NULL;
    if (strcmp(path, "bytes") == 0) {
        if (encoding)
            return cb_fail(CB_ERR_ARG, "tokenizer 'bytes' takes no encoding (got '%s')", encoding);
        return tok_open_bytes(out);
    }
    if (cb_is_dir(path)) {
        size_t n = strlen(path) + 32;
        char *p = malloc(n);
        if (!p) return cb_fail(CB_ERR_NOMEM, "out of memory");
        snprintf(p, n, "%s/tokenizer.json", path);
        cb_status st;
        if (!cb_file_exists(p))
            st = cb_fail(CB_ERR_NOTFOUND, "%s: directory has no tokenizer.json", path);
        else if (encoding)
            st = cb_fail(CB_ERR_ARG, "%s: a tokenizer.json takes no encoding (got '%s')", p,
                         encoding);
        else
            st = tok_open_hf(out, p);
        free(p);
        return st;
    }
    if (!cb_file_exists(path)) {
        if (tok_find_encoding(path))
            return cb_fail(CB_ERR_NOTFOUND,
                           "tokenizer '%s': no such file; the built-in encodings "
                           "need their rank file: --tokenizer FILE.tiktoken "
                           "--encoding %s",
                           path, path);
        return cb_fail(CB_ERR_NOTFOUND,
                       "tokenizer '%s': no such file (expected 'bytes', a "
                       ".tiktoken rank file, a tokenizer.json or a directory "
                       "holding one)",
                       path);
    }
    bool json = has_suffix(path, ".json");
    if (!json && !has_suffix(path, ".tiktoken")) {
        /* Unknown suffix: a JSON document starts with '{'. */
        FILE *f = fopen(path, "rb");
        int c = ' ';
        if (f) {
            while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {
            }
            fclose(f);
        }
        json = c == '{';
    }
    if (json) {
        if (encoding)
            return cb_fail(CB_ERR_ARG, "%s: a tokenizer.json takes no encoding (got '%s')", path,
                           encoding);
        return tok_open_hf(out, path);
    }
    return tok_open_tiktoken(out, path, encoding);
}

/* ---- encode / decode ---------------------------------------------------------------------- */

static bool is_ascii_space(uint8_t c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}
static bool is_word_byte(uint8_t c) {
    return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') ||
           ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static cb_status encode_text(cb_tokenizer *t, const uint8_t *s, size_t n, unsigned flags,
                             cb_ids *out) {
    bool allow = flags & CB_TOK_ALLOW_SPECIAL;
    bool refuse = (flags & CB_TOK_REFUSE_SPECIAL) && !allow;
    /* nothing to look for: no special token may match and none must be refused */
    if (t->n_specials == 0 || (!allow && !refuse && !t->has_plain_added))
        return tok_pretokenize(t, 0, s, n, out);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (!t->special_first[s[i]]) continue;
        size_t ml = 0;
        if (refuse && tok_trie_match(t, s + i, n - i, false, true, &ml) >= 0)
            return cb_fail(CB_ERR_ARG,
                           "text contains the special token '%.*s' at byte %zu; "
                           "allow special tokens to encode it as one",
                           (int)ml, (const char *)s + i, i);
        int sp = tok_trie_match(t, s + i, n - i, allow, false, &ml);
        if (sp < 0) continue;
        const tok_special *spec = &t->specials[sp];
        size_t ms = i, me = i + ml;
        if (spec->single_word &&
            ((ms > 0 && is_word_byte(s[ms - 1])) || (me < n && is_word_byte(s[me]))))
            continue;
        if (spec->lstrip)
            while (ms > pos && is_ascii_space(s[ms - 1])) ms--;
        if (spec->rstrip)
            while (me < n && is_ascii_space(s[me])) me++;
        CB_TRY(tok_pretokenize(t, 0, s + pos, ms - pos, out));
        CB_TRY(cb_ids_push(out, spec->id));
        pos = me;
        i = me - 1;
    }
    return tok_pretokenize(t, 0, s + pos, n - pos, out);
}

cb_status cb_tokenizer_encode(cb_tokenizer *t, const char *text, size_t len, unsigned flags,
                              cb_ids *out) {
    if (!t || !out || (!text && len)) return cb_fail(CB_ERR_ARG, "tokenizer encode: bad arguments");
    size_t start = out->n;
    cb_status st = CB_OK;
    if (flags & CB_TOK_BOS) {
        if (t->n_bos_pre + t->n_bos_post == 0)
            return cb_fail(CB_ERR_ARG, "tokenizer %s has no beginning-of-text token", t->name);
        for (int i = 0; i < t->n_bos_pre && st == CB_OK; i++) st = cb_ids_push(out, t->bos_pre[i]);
    }
    if ((flags & CB_TOK_EOS) && t->eot_id < 0)
        st = cb_fail(CB_ERR_ARG, "tokenizer %s has no end-of-text token", t->name);
    if (st == CB_OK && len) st = encode_text(t, (const uint8_t *)text, len, flags, out);
    if (flags & CB_TOK_BOS)
        for (int i = 0; i < t->n_bos_post && st == CB_OK; i++)
            st = cb_ids_push(out, t->bos_post[i]);
    if (st == CB_OK && (flags & CB_TOK_EOS)) st = cb_ids_push(out, t->eot_id);
    if (st != CB_OK) out->n = start;
    return st;
}

cb_status cb_tokenizer_decode(const cb_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                              char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || !(t->id_flags[id] & TOK_ID_PRESENT))
            return cb_fail(CB_ERR_ARG,
                           "decode: id %d at position %zu is not a token of %s "
                           "(vocabulary size %lld)",
                           id, i, t->name, (long long)t->n_ids);
        if ((flags & CB_TOK_SKIP_SPECIAL) && (t->id_flags[id] & TOK_ID_SPECIAL)) continue;
        total += (uint32_t)t->id_span[id];
    }
    char *buf = malloc(total + 1);
    if (!buf) return cb_fail(CB_ERR_NOMEM, "decode: out of memory (%zu bytes)", total + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if ((flags & CB_TOK_SKIP_SPECIAL) && (t->id_flags[ids[i]] & TOK_ID_SPECIAL)) continue;
        size_t len;
        const char *b = id_bytes(t, ids[i], &len);
        memcpy(buf + o, b, len);
        o += len;
    }
    buf[o] = 0;
    *out = buf;
    if (out_len) *out_len = o;
    return CB_OK;
}

int64_t cb_tokenizer_vocab_size(const cb_tokenizer *t) {
    return t->n_ids;
}
int32_t cb_tokenizer_eot_id(const cb_tokenizer *t) {
    return t->eot_id;
}
int32_t cb_tokenizer_bos_id(const cb_tokenizer *t) {
    return t->n_bos_pre ? t->bos_pre[0] : t->n_bos_post ? t->bos_post[0] : -1;
}
const char *cb_tokenizer_name(const cb_tokenizer *t) {
    return t->name;
}

cb_status cb_tokenizer_token_bytes(const cb_tokenizer *t, int32_t id, const char **bytes,
                                   size_t *len) {
    if (id < 0 || id >= t->n_ids || !(t->id_flags[id] & TOK_ID_PRESENT))
        return cb_fail(CB_ERR_ARG, "id %d is not a token of %s", id, t->name);
    *bytes = id_bytes(t, id, len);
    return CB_OK;
}

int32_t cb_tokenizer_token_id(const cb_tokenizer *t, const char *bytes, size_t len) {
    uint64_t id;
    if (tok_strmap_get(&t->vocab, bytes, len, &id)) return (int32_t)id;
    if (!t->n_trie || !len) return -1;
    int32_t node = 0;
    for (size_t i = 0; i < len && node >= 0; i++) {
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != (uint8_t)bytes[i]) c = t->trie[c].sibling;
        node = c;
    }
    if (node < 0 || t->trie[node].special < 0) return -1;
    return t->specials[t->trie[node].special].id;
}

int cb_tokenizer_is_special(const cb_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->id_flags[id] & TOK_ID_SPECIAL);
}
