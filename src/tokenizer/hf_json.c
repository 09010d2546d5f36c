/* Hugging Face tokenizer.json (byte-level BPE): model.vocab + model.merges (+ ignore_merges),
 * pre_tokenizer Sequence / Split / ByteLevel / Digits, added_tokens, and the BOS template of a
 * TemplateProcessing (or Roberta/Bert) post-processor.
 *
 * Vocabulary strings are in GPT-2's byte-level alphabet (every byte drawn as a printable
 * character: ' ' is 'Ġ', '\n' is 'Ċ'); they are turned back into raw bytes on load, so the
 * engine works on the text's bytes directly and decode needs no mapping. A merge "a b" at index
 * r makes the pair (id(a), id(b)) merge into id(a+b) with rank r (later duplicates win, as in
 * `tokenizers`). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "tokenizer/tok_internal.h"

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

static bool json_bool(const cJSON *obj, const char *key, bool def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static bool json_id(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= (1 << 24) ||
        v->valuedouble != (double)(int32_t)v->valuedouble)
        return false;
    *id = (int32_t)v->valuedouble;
    return true;
}

static const char *json_type(const cJSON *obj) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "type");
    return cJSON_IsString(t) ? t->valuestring : NULL;
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static cb_status add_pretokenizer(cb_tokenizer *t, const cJSON *pt, const char *src,
                                  const char *key, bool *byte_level) {
    if (!pt || cJSON_IsNull(pt)) return CB_OK;
    const char *type = json_type(pt);
    if (!type) return cb_fail(CB_ERR_FORMAT, "%s: %s: missing \"type\"", src, key);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
        if (!cJSON_IsArray(list))
            return cb_fail(CB_ERR_FORMAT, "%s: %s.pretokenizers must be an array", src, key);
        int i = 0;
        for (const cJSON *e = list->child; e; e = e->next, i++) {
            char sub[128];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", key, i);
            CB_TRY(add_pretokenizer(t, e, src, sub, byte_level));
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
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pt, "pattern");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
        const cJSON *str = cJSON_GetObjectItemCaseSensitive(pat, "String");
        if (!cJSON_IsString(re) && !cJSON_IsString(str))
            return cb_fail(CB_ERR_FORMAT, "%s: %s.pattern must be {\"Regex\": ...} or "
                                          "{\"String\": ...}",
                           src, key);
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(pt, "behavior");
        static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
        int behavior = -1;
        for (int i = 0; i < 5 && cJSON_IsString(beh); i++)
            if (strcmp(beh->valuestring, names[i]) == 0) behavior = i;
        if (behavior < 0)
            return cb_fail(CB_ERR_FORMAT, "%s: %s.behavior must be one of Isolated, Removed, "
                                          "MergedWithPrevious, MergedWithNext, Contiguous",
                           src, key);
        cb_status st = tok_add_stage(t, cJSON_IsString(re) ? re->valuestring : str->valuestring,
                                     !cJSON_IsString(re), behavior, json_bool(pt, "invert", false),
                                     false, src);
        return st == CB_OK ? st : cb_fail_context(st, "%s", key);
    }
    return cb_fail(CB_ERR_UNSUPPORTED, "%s: %s: pre-tokenizer type '%s' is not supported "
                                       "(Sequence, Split, ByteLevel, Digits are)",
                   src, key, type);
}

static cb_status template_ids(cb_tokenizer *t, const cJSON *tp, const char *src) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(tp, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(tp, "special_tokens");
    if (!cJSON_IsArray(single))
        return cb_fail(CB_ERR_FORMAT, "%s: post_processor.single must be an array", src);
    bool after = false;
    for (const cJSON *e = single->child; e; e = e->next) {
        if (cJSON_GetObjectItemCaseSensitive(e, "Sequence")) {
            after = true;
            continue;
        }
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(e, "SpecialToken");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(st, "id");
        if (!cJSON_IsString(name))
            return cb_fail(CB_ERR_FORMAT, "%s: post_processor.single: expected Sequence or "
                                          "SpecialToken items",
                           src);
        const cJSON *entry = cJSON_GetObjectItemCaseSensitive(specials, name->valuestring);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(entry, "ids");
        if (!cJSON_IsArray(ids))
            return cb_fail(CB_ERR_FORMAT, "%s: post_processor.special_tokens has no ids for '%s'",
                           src, name->valuestring);
        for (const cJSON *i = ids->child; i; i = i->next) {
            int32_t id;
            if (!json_id(i, &id))
                return cb_fail(CB_ERR_FORMAT, "%s: post_processor.special_tokens.%s: bad id", src,
                               name->valuestring);
            int *n = after ? &t->n_bos_post : &t->n_bos_pre;
            if (*n >= TOK_MAX_TEMPLATE)
                return cb_fail(CB_ERR_UNSUPPORTED, "%s: post_processor template too long", src);
            (after ? t->bos_post : t->bos_pre)[(*n)++] = id;
        }
    }
    return CB_OK;
}

static cb_status add_post_processor(cb_tokenizer *t, const cJSON *pp, const char *src) {
    if (!pp || cJSON_IsNull(pp)) return CB_OK;
    const char *type = json_type(pp);
    if (!type) return cb_fail(CB_ERR_FORMAT, "%s: post_processor: missing \"type\"", src);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pp, "processors");
        if (!cJSON_IsArray(list))
            return cb_fail(CB_ERR_FORMAT, "%s: post_processor.processors must be an array", src);
        for (const cJSON *e = list->child; e; e = e->next) CB_TRY(add_post_processor(t, e, src));
        return CB_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) return CB_OK; /* offsets only */
    if (strcmp(type, "TemplateProcessing") == 0) return template_ids(t, pp, src);
    if (strcmp(type, "RobertaProcessing") == 0 || strcmp(type, "BertProcessing") == 0) {
        const cJSON *cls = cJSON_GetObjectItemCaseSensitive(pp, "cls");
        const cJSON *sep = cJSON_GetObjectItemCaseSensitive(pp, "sep");
        int32_t a, b;
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || cJSON_GetArraySize(cls) != 2 ||
            cJSON_GetArraySize(sep) != 2 || !json_id(cJSON_GetArrayItem(cls, 1), &a) ||
            !json_id(cJSON_GetArrayItem(sep, 1), &b))
            return cb_fail(CB_ERR_FORMAT, "%s: post_processor.cls/sep must be [token, id]", src);
        t->bos_pre[0] = a;
        t->bos_post[0] = b;
        t->n_bos_pre = t->n_bos_post = 1;
        return CB_OK;
    }
    return cb_fail(CB_ERR_UNSUPPORTED, "%s: post_processor type '%s' is not supported", src, type);
}

static cb_status load_added(cb_tokenizer *t, const cJSON *added, const char *src) {
    if (!added || cJSON_IsNull(added)) return CB_OK;
    if (!cJSON_IsArray(added))
        return cb_fail(CB_ERR_FORMAT, "%s: added_tokens must be an array", src);
    int i = 0;
    for (const cJSON *e = added->child; e; e = e->next, i++) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        int32_t id;
        if (!json_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id) || !cJSON_IsString(content) ||
            !content->valuestring[0])
            return cb_fail(CB_ERR_FORMAT, "%s: added_tokens[%d] needs an integer \"id\" and a "
                                          "non-empty \"content\"",
                           src, i);
        bool special = json_bool(e, "special", false);
        size_t len = strlen(content->valuestring);
        cb_status st = tok_set_id(t, id, content->valuestring, len,
                                  TOK_ID_ADDED | (special ? TOK_ID_SPECIAL : 0));
        if (st == CB_OK)
            st = tok_add_special(t, id, content->valuestring, len, special,
                                 json_bool(e, "lstrip", false), json_bool(e, "rstrip", false),
                                 json_bool(e, "single_word", false));
        if (st != CB_OK) return cb_fail_context(st, "%s: added_tokens[%d]", src, i);
    }
    static const char *const eot_names[] = {"<|end_of_text|>", "<|endoftext|>", "</s>",
                                            "<eos>",           "<|im_end|>",    "<|eot_id|>"};
    for (size_t k = 0; k < sizeof eot_names / sizeof eot_names[0] && t->eot_id < 0; k++)
        for (const cJSON *e = added->child; e; e = e->next) {
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
            if (strcmp(content->valuestring, eot_names[k]) == 0) {
                json_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &t->eot_id);
                break;
            }
        }
    return CB_OK;
}

static cb_status load_model(cb_tokenizer *t, const cJSON *model, const char *src) {
    if (!cJSON_IsObject(model)) return cb_fail(CB_ERR_FORMAT, "%s: missing \"model\"", src);
    const char *type = json_type(model);
    if (type && strcmp(type, "BPE") != 0)
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (only BPE)", src,
                       type);
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: model.dropout is not supported", src);
    if (json_bool(model, "byte_fallback", false))
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: model.byte_fallback (SentencePiece-style BPE) is "
                                           "not supported; only byte-level BPE is",
                       src);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (a && !cJSON_IsNull(a) && !(cJSON_IsString(a) && !a->valuestring[0]))
            return cb_fail(CB_ERR_UNSUPPORTED, "%s: model.%s is not supported", src, affixes[i]);
    }
    t->ignore_merges = json_bool(model, "ignore_merges", false);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return cb_fail(CB_ERR_FORMAT, "%s: model.vocab must be an object", src);
    uint8_t *buf = NULL;
    size_t cap = 0;
    cb_status st = CB_OK;
    for (const cJSON *e = vocab->child; e && st == CB_OK; e = e->next) {
        int32_t id;
        if (!json_id(e, &id)) {
            st = cb_fail(CB_ERR_FORMAT, "%s: model.vocab[\"%.80s\"] must be an id", src, e->string);
            break;
        }
        size_t n = strlen(e->string);
        if (id < t->n_ids && (t->id_flags[id] & TOK_ID_ADDED)) continue; /* content wins */
        if (n > cap) {
            cap = n * 2 + 64;
            uint8_t *p = realloc(buf, cap);
            if (!p) {
                st = cb_fail(CB_ERR_NOMEM, "out of memory");
                break;
            }
            buf = p;
        }
        long nb = byte_level_decode(e->string, n, buf);
        if (nb <= 0) {
            st = cb_fail(CB_ERR_UNSUPPORTED, "%s: model.vocab: token '%.80s' (id %d) is not in the "
                                             "byte-level alphabet; only byte-level BPE is supported",
                         src, e->string, id);
            break;
        }
        st = tok_set_id(t, id, buf, (size_t)nb, 0);
        if (st != CB_OK) cb_fail_context(st, "%s: model.vocab[\"%.80s\"]", src, e->string);
    }
    if (st == CB_OK) st = tok_build_vocab(t, src);
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (st == CB_OK && merges && !cJSON_IsArray(merges))
        st = cb_fail(CB_ERR_FORMAT, "%s: model.merges must be an array", src);
    if (st == CB_OK && merges && tok_pairmap_reserve(&t->merges, (size_t)cJSON_GetArraySize(merges)))
        st = cb_fail(CB_ERR_NOMEM, "%s: out of memory", src);
    uint32_t rank = 0;
    for (const cJSON *m = merges ? merges->child : NULL; m && st == CB_OK; m = m->next, rank++) {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(m)) { /* "a b" */
            a = m->valuestring;
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = cb_fail(CB_ERR_FORMAT, "%s: model.merges[%u] '%.80s' is not two tokens "
                                            "separated by one space",
                             src, rank, a);
                break;
            }
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
            a = m->child->valuestring;
            b = m->child->next->valuestring;
            la = strlen(a);
            lb = strlen(b);
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
        long na = byte_level_decode(a, la, buf), nb = na > 0 ? byte_level_decode(b, lb, buf + na) : -1;
        uint64_t ia, ib, im;
        if (na <= 0 || nb <= 0 || !tok_strmap_get(&t->vocab, buf, (size_t)na, &ia) ||
            !tok_strmap_get(&t->vocab, buf + na, (size_t)nb, &ib)) {
            st = cb_fail(CB_ERR_FORMAT, "%s: model.merges[%u]: '%.*s' or '%.*s' is not in the "
                                        "vocabulary",
                         src, rank, (int)(la < 80 ? la : 80), a, (int)(lb < 80 ? lb : 80), b);
            break;
        }
        if (!tok_strmap_get(&t->vocab, buf, (size_t)(na + nb), &im)) {
            st = cb_fail(CB_ERR_FORMAT, "%s: model.merges[%u]: the merge of '%.*s' and '%.*s' is "
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
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json && at <= json + len ? (size_t)(at - json) : len;
        size_t line = 1;
        for (size_t i = 0; i < off; i++) line += json[i] == '\n';
        return cb_fail(CB_ERR_FORMAT, "%s: not valid JSON (error near byte %zu, line %zu%s)", name,
                       off, line, off + 2 >= len ? ": truncated?" : "");
    }
    const char *base = strrchr(name, '/');
    cb_tokenizer *t = tok_new(TOK_HF, base ? base + 1 : name);
    cb_status st = t ? CB_OK : cb_fail(CB_ERR_NOMEM, "out of memory");
    if (st == CB_OK && !cJSON_IsObject(root))
        st = cb_fail(CB_ERR_FORMAT, "%s: not a tokenizer.json object", name);
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (st == CB_OK && norm && !cJSON_IsNull(norm))
        st = cb_fail(CB_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported (byte-level BPE "
                                         "tokenizers have none)",
                     name, json_type(norm) ? json_type(norm) : "?");
    if (st == CB_OK) st = load_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), name);
    if (st == CB_OK) st = load_model(t, cJSON_GetObjectItemCaseSensitive(root, "model"), name);
    bool byte_level = false;
    if (st == CB_OK)
        st = add_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), name,
                              "pre_tokenizer", &byte_level);
    if (st == CB_OK && !byte_level)
        st = cb_fail(CB_ERR_UNSUPPORTED, "%s: no ByteLevel pre-tokenizer: only byte-level BPE "
                                         "tokenizers are supported",
                     name);
    if (st == CB_OK)
        st = add_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), name);
    for (int i = 0; st == CB_OK && i < t->n_bos_pre + t->n_bos_post; i++) {
        int32_t id = i < t->n_bos_pre ? t->bos_pre[i] : t->bos_post[i - t->n_bos_pre];
        if (id >= t->n_ids || !(t->id_flags[id] & TOK_ID_PRESENT))
            st = cb_fail(CB_ERR_FORMAT, "%s: post_processor names id %d, which is not a token",
                         name, id);
    }
    cJSON_Delete(root);
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
