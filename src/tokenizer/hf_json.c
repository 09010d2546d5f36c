/* Hugging Face tokenizer.json (byte-level BPE): model.vocab + model.merges (+ ignore_merges),
 * pre_tokenizer Sequence / Split / ByteLevel / Digits, added_tokens, and the BOS template of a
 * TemplateProcessing (or Roberta/Bert) post-processor.
 *
 * Vocabulary strings are in GPT-2's byte-level alphabet (every byte drawn as a printable
 * character: ' ' is 'Ġ', '\n' is 'Ċ'); they are turned back into raw bytes on load, so the
 * engine works on the text's bytes directly and decode needs no mapping. A merge "a b" at index
 * r makes the pair (id(a), id(b)) merge into id(a+b) with rank r (later duplicates win, as in
 * `tokenizers`). */
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_json.h"

/* GPT-2 bytes_to_unicode, inverted: printable Latin-1 bytes stand for themselves; the 68 others
 * (0..32, 127..160, 173) are drawn as U+0100 + k in increasing byte order. -1: not in the
 * alphabet. */
static int byte_of_codepoint(unsigned cp) {
    if ((cp >= '!' && cp <= '~') || (cp >= 0xa1 && cp <= 0xac) || (cp >= 0xae && cp <= 0xff))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    unsigned k = cp - 256;
    if (k <= 32) return (int)k;
    if (k <= 66) return (int)(127 + k - 33);
    return 173;
}

/* Byte-level string -> raw bytes; returns the length or -1 when a character is outside the
 * alphabet. out needs strlen(s) bytes. */
static long byte_level_decode(const char *s, size_t n, uint8_t *out) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned c = (uint8_t)s[i];
        unsigned cp;
        if (c < 0x80) {
            cp = c;
            i++;
        } else if (c >= 0xc2 && c <= 0xc5 && i + 1 < n && ((uint8_t)s[i + 1] & 0xc0) == 0x80) {
            cp = (c & 0x1f) << 6 | ((uint8_t)s[i + 1] & 0x3f);
            i += 2;
        } else {
            return -1;
        }
        int b = byte_of_codepoint(cp);
        if (b < 0) return -1;
        out[o++] = (uint8_t)b;
    }
    return (long)o;
}

static bool json_bool(const tj_val *obj, const char *key, bool def) {
    const tj_val *v = tj_get(obj, key);
    return v && v->type == TJ_BOOL ? v->b : def;
}

static bool json_id(const tj_val *v, int32_t *id) {
    if (!v || v->type != TJ_NUM || !(v->num >= 0) || v->num >= (1 << 24) ||
        v->num != (double)(int32_t)v->num)
        return false;
    *id = (int32_t)v->num;
    return true;
}

static bool is_null(const tj_val *v) {
    return !v || v->type == TJ_NULL;
}
static bool is_str(const tj_val *v) {
    return v && v->type == TJ_STR;
}

/* "type" of an object, as a NUL-terminated copy in buf ("" when missing). */
static const char *json_type(const tj_val *obj, char *buf, size_t cap) {
    const tj_val *t = tj_get(obj, "type");
    if (!is_str(t) || t->n >= cap || memchr(t->s, 0, t->n)) return "";
    memcpy(buf, t->s, t->n);
    buf[t->n] = 0;
    return buf;
}

/* NUL-terminated heap copy of a string value (NULL when it holds a NUL byte). */
static char *str_dup(const tj_val *v) {
    if (memchr(v->s, 0, v->n)) return NULL;
    char *p = malloc((size_t)v->n + 1);
    if (p) {
        memcpy(p, v->s, v->n);
        p[v->n] = 0;
    }
    return p;
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static cb_status add_pretokenizer(cb_tokenizer *t, const tj_val *pt, const char *src,
                                  const char *key, bool *byte_level, int depth) {
    if (is_null(pt)) return CB_OK;
    char tb[64];
    const char *type = json_type(pt, tb, sizeof tb);
    if (!*type) return cb_fail(CB_ERR_FORMAT, "%s: %s: missing \"type\"", src, key);
    if (strcmp(type, "Sequence") == 0) {
        const tj_val *list = tj_get(pt, "pretokenizers");
        if (!list || list->type != TJ_ARR)
            return cb_fail(CB_ERR_FORMAT, "%s: %s.pretokenizers must be an array", src, key);
        if (depth > 4) return cb_fail(CB_ERR_UNSUPPORTED, "%s: %s: nested too deeply", src, key);
        for (uint32_t i = 0; i < list->n; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%u]", key, i);
            CB_TRY(add_pretokenizer(t, &list->items[i], src, sub, byte_level, depth + 1));
        }
        return CB_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        *byte_level = true;
        bool regex = json_bool(pt, "use_regex", true);
        return tok_add_stage(t, regex ? GPT2_PATTERN : NULL, false, TOK_SPLIT_ISOLATED, false,
                             json_bool(pt, "add_prefix_space", false), src);
    }
    if (strcmp(type, "Digits") == 0)
        return tok_add_stage(t, json_bool(pt, "individual_digits", false) ? "\\p{N}" : "\\p{N}+",
                             false, TOK_SPLIT_ISOLATED, false, false, src);
    if (strcmp(type, "Split") == 0) {
        const tj_val *pat = tj_get(pt, "pattern");
        const tj_val *re = tj_get(pat, "Regex"), *str = tj_get(pat, "String");
        if (!is_str(re) && !is_str(str))
            return cb_fail(CB_ERR_FORMAT,
                           "%s: %s.pattern must be {\"Regex\": ...} or "
                           "{\"String\": ...}",
                           src, key);
        const tj_val *beh = tj_get(pt, "behavior");
        static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        int behavior = -1;
        for (int i = 0; i < 5; i++)
            if (tj_str_eq(beh, names[i])) behavior = i;
        if (behavior < 0)
            return cb_fail(CB_ERR_FORMAT,
                           "%s: %s.behavior must be one of Isolated, Removed, "
                           "MergedWithPrevious, MergedWithNext, Contiguous",
                           src, key);
        char *pattern = str_dup(is_str(re) ? re : str);
        if (!pattern)
            return cb_fail(CB_ERR_UNSUPPORTED, "%s: %s.pattern holds a NUL character", src, key);
        cb_status st = tok_add_stage(t, pattern, !is_str(re), behavior,
                                     json_bool(pt, "invert", false), false, src);
        free(pattern);
        return st == CB_OK ? st : cb_fail_context(st, "%s", key);
    }
    return cb_fail(CB_ERR_UNSUPPORTED,
                   "%s: %s: pre-tokenizer type '%s' is not supported "
                   "(Sequence, Split, ByteLevel, Digits are)",
                   src, key, type);
}

static cb_status template_ids(cb_tokenizer *t, const tj_val *tp, const char *src) {
    const tj_val *single = tj_get(tp, "single");
    const tj_val *specials = tj_get(tp, "special_tokens");
    if (!single || single->type != TJ_ARR)
        return cb_fail(CB_ERR_FORMAT, "%s: post_processor.single must be an array", src);
    bool after = false;
    for (uint32_t k = 0; k < single->n; k++) {
        const tj_val *e = &single->items[k];
        if (tj_get(e, "Sequence")) {
            after = true;
            continue;
        }
        const tj_val *name = tj_get(tj_get(e, "SpecialToken"), "id");
        char nb[256];
        if (!is_str(name) || name->n >= sizeof nb || memchr(name->s, 0, name->n))
            return cb_fail(CB_ERR_FORMAT,
                           "%s: post_processor.single: expected Sequence or "
                           "SpecialToken items",
                           src);
        memcpy(nb, name->s, name->n);
        nb[name->n] = 0;
        const tj_val *ids = tj_get(tj_get(specials, nb), "ids");
        if (!ids || ids->type != TJ_ARR)
            return cb_fail(CB_ERR_FORMAT, "%s: post_processor.special_tokens has no ids for '%s'",
                           src, nb);
        for (uint32_t i = 0; i < ids->n; i++) {
            int32_t id;
            if (!json_id(&ids->items[i], &id))
                return cb_fail(CB_ERR_FORMAT, "%s: post_processor.special_tokens.%s: bad id", src,
                               nb);
            int *n = after ? &t->n_bos_post : &t->n_bos_pre;
            if (*n >= TOK_MAX_TEMPLATE)
                return cb_fail(CB_ERR_UNSUPPORTED, "%s: post_processor template too long", src);
            (after ? t->bos_post : t->bos_pre)[(*n)++] = id;
        }
    }
    return CB_OK;
}

static cb_status add_post_processor(cb_tokenizer *t, const tj_val *pp, const char *src, int depth) {
    if (is_null(pp)) return CB_OK;
    char tb[64];
    const char *type = json_type(pp, tb, sizeof tb);
    if (!*type) return cb_fail(CB_ERR_FORMAT, "%s: post_processor: missing \"type\"", src);
    if (strcmp(type, "Sequence") == 0) {
        const tj_val *list = tj_get(pp, "processors");
        if (!list || list->type != TJ_ARR)
            return cb_fail(CB_ERR_FORMAT, "%s: post_processor.processors must be an array", src);
        if (depth > 4)
            return cb_fail(CB_ERR_UNSUPPORTED, "%s: post_processor nested too deeply", src);
        for (uint32_t i = 0; i < list->n; i++)
            CB_TRY(add_post_processor(t, &list->items[i], src, depth + 1));
        return CB_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) return CB_OK; /* offsets only */
    if (strcmp(type, "TemplateProcessing") == 0) return template_ids(t, pp, src);
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        const tj_val *cls = tj_get(pp, "cls"), *sep = tj_get(pp, "sep");
        int32_t a, b;
        if (!cls || !sep || cls->type != TJ_ARR || sep->type != TJ_ARR || cls->n != 2 ||
            sep->n != 2 || !json_id(&cls->items[1], &a) || !json_id(&sep->items[1], &b))
            return cb_fail(CB_ERR_FORMAT, "%s: post_processor.cls/sep must be [token, id]", src);
        t->bos_pre[0] = a;
        t->bos_post[0] = b;
        t->n_bos_pre = t->n_bos_post = 1;
        return CB_OK;
    }
    return cb_fail(CB_ERR_UNSUPPORTED, "%s: post_processor type '%s' is not supported", src, type);
}

static cb_status load_added(cb_tokenizer *t, const tj_val *added, const char *src) {
    if (is_null(added)) return CB_OK;
    if (added->type != TJ_ARR)
        return cb_fail(CB_ERR_FORMAT, "%s: added_tokens must be an array", src);
    for (uint32_t i = 0; i < added->n; i++) {
        const tj_val *e = &added->items[i];
        const tj_val *content = tj_get(e, "content");
        int32_t id;
        if (!json_id(tj_get(e, "id"), &id) || !is_str(content) || content->n == 0)
            return cb_fail(CB_ERR_FORMAT,
                           "%s: added_tokens[%u] needs an integer \"id\" and a "
                           "non-empty \"content\"",
                           src, i);
        bool special = json_bool(e, "special", false);
        cb_status st = tok_set_id(t, id, content->s, content->n,
                                  TOK_ID_ADDED | (special ? TOK_ID_SPECIAL : 0));
        if (st == CB_OK)
            st = tok_add_special(t, id, content->s, content->n, special,
                                 json_bool(e, "lstrip", false), json_bool(e, "rstrip", false),
                                 json_bool(e, "single_word", false));
        if (st != CB_OK) return cb_fail_context(st, "%s: added_tokens[%u]", src, i);
    }
    static const char *const eot_names[] = {"<|end_of_text|>", "<|endoftext|>", "</s>",
                                            "<eos>",           "<|im_end|>",    "<|eot_id|>"};
    for (size_t k = 0; k < sizeof eot_names / sizeof eot_names[0] && t->eot_id < 0; k++)
        for (uint32_t i = 0; i < added->n; i++)
            if (tj_str_eq(tj_get(&added->items[i], "content"), eot_names[k])) {
                json_id(tj_get(&added->items[i], "id"), &t->eot_id);
                break;
            }
    return CB_OK;
}

static cb_status load_model(cb_tokenizer *t, const tj_val *model, const char *src) {
    if (!model || model->type != TJ_OBJ)
        return cb_fail(CB_ERR_FORMAT, "%s: missing \"model\"", src);
    char tb[64];
    const char *type = json_type(model, tb, sizeof tb);
    if (tj_get(model, "type") && strcmp(type, "BPE") != 0)
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (only BPE)", src,
                       type);
    const tj_val *dropout = tj_get(model, "dropout");
    if (!is_null(dropout) && !(dropout->type == TJ_NUM && dropout->num == 0))
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: model.dropout is not supported", src);
    if (json_bool(model, "byte_fallback", false))
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "%s: model.byte_fallback (SentencePiece-style BPE) is "
                       "not supported; only byte-level BPE is",
                       src);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const tj_val *a = tj_get(model, affixes[i]);
        if (!is_null(a) && !(is_str(a) && a->n == 0))
            return cb_fail(CB_ERR_UNSUPPORTED, "%s: model.%s is not supported", src, affixes[i]);
    }
    t->ignore_merges = json_bool(model, "ignore_merges", false);
    const tj_val *vocab = tj_get(model, "vocab");
    if (!vocab || vocab->type != TJ_OBJ)
        return cb_fail(CB_ERR_FORMAT, "%s: model.vocab must be an object", src);
    uint8_t *buf = NULL;
    size_t cap = 0;
    cb_status st = CB_OK;
    for (uint32_t k = 0; k < vocab->n && st == CB_OK; k++) {
        const tj_mem *e = &vocab->mem[k];
        int32_t id;
        int show = (int)(e->klen < 80 ? e->klen : 80);
        if (!json_id(&e->v, &id)) {
            st = cb_fail(CB_ERR_FORMAT, "%s: model.vocab[\"%.*s\"] must be an id", src, show,
                         e->key);
            break;
        }
        if (id < t->n_ids && (t->id_flags[id] & TOK_ID_ADDED)) continue; /* content wins */
        if (e->klen > cap) {
            cap = (size_t)e->klen * 2 + 64;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                st = cb_fail(CB_ERR_NOMEM, "out of memory");
                break;
            }
            buf = p;
        }
        long nb = byte_level_decode(e->key, e->klen, buf);
        if (nb <= 0) {
            st = cb_fail(CB_ERR_UNSUPPORTED,
                         "%s: model.vocab: token '%.*s' (id %d) is not in the "
                         "byte-level alphabet; only byte-level BPE is supported",
                         src, show, e->key, id);
            break;
        }
        st = tok_set_id(t, id, buf, (size_t)nb, 0);
        if (st != CB_OK) cb_fail_context(st, "%s: model.vocab[\"%.*s\"]", src, show, e->key);
    }
    if (st == CB_OK) st = tok_build_vocab(t, src);
    const tj_val *merges = tj_get(model, "merges");
    if (st == CB_OK && !is_null(merges) && merges->type != TJ_ARR)
        st = cb_fail(CB_ERR_FORMAT, "%s: model.merges must be an array", src);
    uint32_t n_merges = st == CB_OK && !is_null(merges) ? merges->n : 0;
    if (n_merges && tok_pairmap_reserve(&t->merges, n_merges))
        st = cb_fail(CB_ERR_NOMEM, "%s: out of memory", src);
    for (uint32_t rank = 0; rank < n_merges && st == CB_OK; rank++) {
        const tj_val *m = &merges->items[rank];
        const char *a, *b;
        size_t la, lb;
        if (is_str(m)) { /* "a b" */
            a = m->s;
            const char *sp = memchr(a, ' ', m->n);
            if (!sp || memchr(sp + 1, ' ', (size_t)(a + m->n - sp - 1))) {
                st = cb_fail(CB_ERR_FORMAT,
                             "%s: model.merges[%u] '%.*s' is not two tokens "
                             "separated by one space",
                             src, rank, (int)(m->n < 80 ? m->n : 80), a);
                break;
            }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = (size_t)(a + m->n - b);
        } else if (m->type == TJ_ARR && m->n == 2 && is_str(&m->items[0]) && is_str(&m->items[1])) {
            a = m->items[0].s;
            la = m->items[0].n;
            b = m->items[1].s;
            lb = m->items[1].n;
        } else {
            st = cb_fail(CB_ERR_FORMAT, "%s: model.merges[%u] must be \"a b\" or [\"a\", \"b\"]",
                         src, rank);
            break;
        }
        if (la + lb > cap) {
            cap = (la + lb) * 2 + 64;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                st = cb_fail(CB_ERR_NOMEM, "out of memory");
                break;
            }
            buf = p;
        }
        long na = byte_level_decode(a, la, buf),
             nb = na > 0 ? byte_level_decode(b, lb, buf + na) : -1;
        uint64_t ia, ib, im;
        if (na <= 0 || nb <= 0 || !tok_strmap_get(&t->vocab, buf, (size_t)na, &ia) ||
            !tok_strmap_get(&t->vocab, buf + na, (size_t)nb, &ib)) {
            st = cb_fail(CB_ERR_FORMAT,
                         "%s: model.merges[%u]: '%.*s' or '%.*s' is not in the "
                         "vocabulary",
                         src, rank, (int)(la < 80 ? la : 80), a, (int)(lb < 80 ? lb : 80), b);
            break;
        }
        if (!tok_strmap_get(&t->vocab, buf, (size_t)(na + nb), &im)) {
            st = cb_fail(CB_ERR_FORMAT,
                         "%s: model.merges[%u]: the merge of '%.*s' and '%.*s' is "
                         "not in the vocabulary",
                         src, rank, (int)(la < 80 ? la : 80), a, (int)(lb < 80 ? lb : 80), b);
            break;
        }
        if (tok_pairmap_insert(&t->merges, tok_pair_key((int32_t)ia, (int32_t)ib),
                               (uint64_t)rank << 32 | (uint32_t)im, true) < 0)
            st = cb_fail(CB_ERR_NOMEM, "%s: out of memory", src);
    }
    free(buf);
    return st;
}

cb_status tok_parse_hf(cb_tokenizer **out, const char *json, size_t len, const char *name) {
    *out = NULL;
    tj_doc doc;
    CB_TRY(tj_parse(&doc, json, len, name));
    const tj_val *root = &doc.root;
    const char *base = strrchr(name, '/');
    cb_tokenizer *t = tok_new(TOK_HF, base ? base + 1 : name);
    cb_status st = t ? CB_OK : cb_fail(CB_ERR_NOMEM, "out of memory");
    if (st == CB_OK && root->type != TJ_OBJ)
        st = cb_fail(CB_ERR_FORMAT, "%s: not a tokenizer.json object", name);
    const tj_val *norm = tj_get(root, "normalizer");
    char tb[64];
    if (st == CB_OK && !is_null(norm))
        st = cb_fail(CB_ERR_UNSUPPORTED,
                     "%s: normalizer '%s' is not supported (byte-level BPE "
                     "tokenizers have none)",
                     name, *json_type(norm, tb, sizeof tb) ? tb : "?");
    if (st == CB_OK) st = load_added(t, tj_get(root, "added_tokens"), name);
    if (st == CB_OK) st = load_model(t, tj_get(root, "model"), name);
    bool byte_level = false;
    if (st == CB_OK)
        st = add_pretokenizer(t, tj_get(root, "pre_tokenizer"), name, "pre_tokenizer", &byte_level,
                              0);
    if (st == CB_OK && !byte_level)
        st = cb_fail(CB_ERR_UNSUPPORTED,
                     "%s: no ByteLevel pre-tokenizer: only byte-level BPE "
                     "tokenizers are supported",
                     name);
    if (st == CB_OK) st = add_post_processor(t, tj_get(root, "post_processor"), name, 0);
    for (int i = 0; st == CB_OK && i < t->n_bos_pre + t->n_bos_post; i++) {
        int32_t id = i < t->n_bos_pre ? t->bos_pre[i] : t->bos_post[i - t->n_bos_pre];
        if (id >= t->n_ids || !(t->id_flags[id] & TOK_ID_PRESENT))
            st = cb_fail(CB_ERR_FORMAT, "%s: post_processor names id %d, which is not a token",
                         name, id);
    }
    tj_free(&doc);
    if (st != CB_OK) {
        cb_tokenizer_free(t);
        return st;
    }
    *out = t;
    return CB_OK;
}

cb_status tok_open_hf(cb_tokenizer **out, const char *path) {
    char *data;
    size_t len;
    CB_TRY(cb_read_file(path, 512 << 20, &data, &len));
    cb_status st = tok_parse_hf(out, data, len, path);
    free(data);
    return st;
}
