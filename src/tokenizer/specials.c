/* Special and added tokens: a byte trie for leftmost-longest matching before pre-tokenization. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static int32_t trie_node(cb_tokenizer *t, uint8_t byte) {
    if (t->n_trie == t->cap_trie) {
        int cap = t->cap_trie ? t->cap_trie * 2 : 256;
        tok_trie_node *p = realloc(t->trie, (size_t)cap * sizeof *p);
        if (!p) return -1;
        t->trie = p;
        t->cap_trie = cap;
    }
    t->trie[t->n_trie] = (tok_trie_node){-1, -1, -1, byte};
    return t->n_trie++;
}

cb_status tok_add_special(cb_tokenizer *t, int32_t id, const char *text, size_t len, bool special,
                          bool lstrip, bool rstrip, bool single_word) {
    if (len == 0) return cb_fail(CB_ERR_FORMAT, "special token %d has empty text", id);
    if (t->n_trie == 0 && trie_node(t, 0) < 0) return cb_fail(CB_ERR_NOMEM, "out of memory");
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)text[i];
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != b) c = t->trie[c].sibling;
        if (c < 0) {
            c = trie_node(t, b);
            if (c < 0) return cb_fail(CB_ERR_NOMEM, "out of memory");
            t->trie[c].sibling = t->trie[node].child;
            t->trie[node].child = c;
        }
        node = c;
    }
    if (t->trie[node].special >= 0) {
        /* The same text twice: keep the first, as a lookup by text would. */
        return CB_OK;
    }
    tok_special *sp = realloc(t->specials, (size_t)(t->n_specials + 1) * sizeof *sp);
    if (!sp) return cb_fail(CB_ERR_NOMEM, "out of memory");
    t->specials = sp;
    sp[t->n_specials] = (tok_special){id, special, lstrip, rstrip, single_word};
    t->trie[node].special = t->n_specials++;
    t->special_first[(uint8_t)text[0]] = 1;
    if (!special) t->has_plain_added = true;
    return CB_OK;
}

int tok_trie_match(const cb_tokenizer *t, const uint8_t *s, size_t n, bool allow_special,
                   bool only_special, size_t *len) {
    int best = -1;
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != s[i]) c = t->trie[c].sibling;
        if (c < 0) break;
        node = c;
        int sp = t->trie[node].special;
        if (sp < 0) continue;
        bool special = t->specials[sp].special;
        if (only_special ? special : (!special || allow_special)) {
            best = sp;
            *len = i + 1;
        }
    }
    return best;
}
