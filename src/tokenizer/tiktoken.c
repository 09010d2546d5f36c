/* tiktoken rank files: one "BASE64 RANK" line per token; a token's rank is its id and its merge
 * priority. The split pattern and special tokens come from a built-in encoding or from a JSON
 * description {"pat_str": "...", "special_tokens": {"<|endoftext|>": 100257}, "n_vocab": N}. */
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_json.h"

enum { TOK_MAX_FILE = 256 << 20 };

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes standard padded base64; returns the byte count or -1. out has room for n/4*3. */
static long b64_decode(const char *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (s[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else {
                if (pad) return -1; /* '=' followed by data */
                v[k] = b64_val((unsigned char)s[i + k]);
                if (v[k] < 0) return -1;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    return (long)o;
}

/* An encoding description from JSON (the layout of tests/data/tokenizers/cl100k_base.json). */
static cb_status apply_encoding_json(cb_tokenizer *t, const char *json_path, int64_t *n_ranks) {
    char *text;
    size_t len;
    CB_TRY(cb_read_file(json_path, 16 << 20, &text, &len));
    tj_doc doc;
    cb_status st = tj_parse(&doc, text, len, json_path);
    if (st != CB_OK) {
        free(text);
        return st;
    }
    const tj_val *root = &doc.root;
    const tj_val *pat = tj_get(root, "pat_str");
    const tj_val *sp = tj_get(root, "special_tokens");
    const tj_val *nv = tj_get(root, "n_vocab");
    char *pattern = NULL;
    if (root->type != TJ_OBJ)
        st = cb_fail(CB_ERR_FORMAT, "%s: not a JSON object", json_path);
    else if (!pat || pat->type != TJ_STR || memchr(pat->s, 0, pat->n))
        st = cb_fail(CB_ERR_FORMAT, "%s: \"pat_str\" must be a string", json_path);
    else if (sp && sp->type != TJ_OBJ)
        st = cb_fail(CB_ERR_FORMAT, "%s: \"special_tokens\" must be an object", json_path);
    else if (nv && (nv->type != TJ_NUM || !(nv->num >= 1) || nv->num > 1 << 24))
        st = cb_fail(CB_ERR_FORMAT, "%s: \"n_vocab\" must be a positive integer", json_path);
    if (st == CB_OK && nv) *n_ranks = (int64_t)nv->num;
    for (uint32_t i = 0; st == CB_OK && sp && i < sp->n; i++) {
        const tj_mem *e = &sp->mem[i];
        int show = (int)(e->klen < 80 ? e->klen : 80);
        if (e->v.type != TJ_NUM || !(e->v.num >= 0) || e->v.num >= 1 << 24 ||
            e->v.num != (double)(int32_t)e->v.num) {
            st = cb_fail(CB_ERR_FORMAT, "%s: special_tokens.%.*s must be a token id", json_path,
                         show, e->key);
            break;
        }
        int32_t id = (int32_t)e->v.num;
        st = tok_set_id(t, id, e->key, e->klen, TOK_ID_SPECIAL | TOK_ID_ADDED);
        if (st == CB_OK) st = tok_add_special(t, id, e->key, e->klen, true, false, false, false);
        if (st != CB_OK) {
            cb_fail_context(st, "%s: special_tokens.%.*s", json_path, show, e->key);
            break;
        }
        if ((e->klen == 13 && memcmp(e->key, "<|endoftext|>", 13) == 0) ||
            (e->klen == 15 && memcmp(e->key, "<|end_of_text|>", 15) == 0))
            t->eot_id = id;
        if (e->klen == 17 && memcmp(e->key, "<|begin_of_text|>", 17) == 0) {
            t->bos_pre[0] = id;
            t->n_bos_pre = 1;
        }
    }
    if (st == CB_OK && !(pattern = malloc((size_t)pat->n + 1)))
        st = cb_fail(CB_ERR_NOMEM, "out of memory");
    if (st == CB_OK) {
        memcpy(pattern, pat->s, pat->n);
        pattern[pat->n] = 0;
        st = tok_add_stage(t, pattern, false, TOK_SPLIT_ISOLATED, false, false, json_path);
    }
    free(pattern);
    tj_free(&doc);
    free(text);
    return st;
}

static char *stem_of(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char *s = strdup(base);
    if (!s) return NULL;
    char *dot = strrchr(s, '.');
    if (dot && dot != s) *dot = 0;
    return s;
}

/* Parses the rank lines into t's ids; returns the rank count. */
static cb_status parse_ranks(cb_tokenizer *t, const char *data, size_t len, const char *name,
                             int64_t *count) {
    *count = 0;
    if (len == 0) return cb_fail(CB_ERR_FORMAT, "%s: empty rank file", name);
    if (data[len - 1] != '\n')
        return cb_fail(CB_ERR_FORMAT, "%s: truncated rank file (the last line has no newline)",
                       name);
    uint8_t buf[768];
    size_t line = 0;
    for (size_t i = 0; i < len;) {
        line++;
        const char *ls = data + i;
        const char *le = memchr(ls, '\n', len - i);
        size_t ll = (size_t)(le - ls);
        i += ll + 1;
        if (ll && ls[ll - 1] == '\r') ll--;
        if (ll == 0) continue;
        const char *sp = memchr(ls, ' ', ll);
        if (!sp || sp == ls || sp + 1 == ls + ll)
            return cb_fail(CB_ERR_FORMAT, "%s:%zu: expected 'BASE64 RANK'", name, line);
        size_t bl = (size_t)(sp - ls);
        if (bl > sizeof buf / 3 * 4)
            return cb_fail(CB_ERR_FORMAT, "%s:%zu: token longer than %zu bytes", name, line,
                           sizeof buf);
        long nb = b64_decode(ls, bl, buf);
        if (nb <= 0)
            return cb_fail(CB_ERR_FORMAT, "%s:%zu: bad base64 '%.*s'", name, line,
                           (int)(bl < 64 ? bl : 64), ls);
        int64_t rank = 0;
        for (const char *p = sp + 1; p < ls + ll; p++) {
            if (*p < '0' || *p > '9' || rank > (1 << 24))
                return cb_fail(CB_ERR_FORMAT, "%s:%zu: bad rank '%.*s'", name, line,
                               (int)(ls + ll - sp - 1 < 32 ? ls + ll - sp - 1 : 32), sp + 1);
            rank = rank * 10 + (*p - '0');
        }
        cb_status st = tok_set_id(t, (int32_t)rank, buf, (size_t)nb, 0);
        if (st != CB_OK) return cb_fail_context(st, "%s:%zu", name, line);
        (*count)++;
    }
    return CB_OK;
}

cb_status tok_parse_tiktoken(cb_tokenizer **out, const char *data, size_t len, const char *name,
                             const char *encoding) {
    *out = NULL;
    const tok_encoding_info *enc = NULL;
    const char *enc_json = NULL;
    if (encoding) {
        enc = tok_find_encoding(encoding);
        if (!enc) {
            size_t el = strlen(encoding);
            if (el > 5 && strcmp(encoding + el - 5, ".json") == 0)
                enc_json = encoding;
            else
                return cb_fail(CB_ERR_ARG,
                               "unknown encoding '%s' (built in: %s; or the path of "
                               "an encoding .json)",
                               encoding, tok_encoding_names());
        }
    }
    if (!enc && !enc_json)
        return cb_fail(CB_ERR_ARG,
                       "%s: cannot tell which encoding this rank file is: pass one "
                       "(%s)",
                       name, tok_encoding_names());
    char *tname = enc ? strdup(enc->name) : stem_of(enc_json);
    cb_tokenizer *t = tname ? tok_new(TOK_TIKTOKEN, tname) : NULL;
    free(tname);
    if (!t) return cb_fail(CB_ERR_NOMEM, "out of memory");
    int64_t count = 0, expect = enc ? enc->n_ranks : 0;
    cb_status st = parse_ranks(t, data, len, name, &count);
    if (st == CB_OK) st = tok_build_vocab(t, name);
    if (st == CB_OK && enc && expect && count != expect)
        st = cb_fail(CB_ERR_FORMAT,
                     "%s: %lld ranks, but encoding %s has %lld (truncated file, or "
                     "the wrong encoding)",
                     name, (long long)count, enc->name, (long long)expect);
    if (st == CB_OK && enc) {
        st = tok_add_encoding_specials(t, enc);
        if (st == CB_OK)
            st = tok_add_stage(t, enc->pattern, false, TOK_SPLIT_ISOLATED, false, false, enc->name);
        if (st != CB_OK) cb_fail_context(st, "%s: encoding %s", name, enc->name);
    } else if (st == CB_OK) {
        st = apply_encoding_json(t, enc_json, &expect);
        if (st == CB_OK && expect && count != expect)
            st = cb_fail(CB_ERR_FORMAT,
                         "%s: %lld ranks, but %s says n_vocab %lld (truncated file, "
                         "or the wrong encoding)",
                         name, (long long)count, enc_json, (long long)expect);
    }
    if (st != CB_OK) {
        cb_tokenizer_free(t);
        return st;
    }
    t->ignore_merges = true; /* tiktoken looks the whole piece up first */
    t->rank_merges = true;
    *out = t;
    return CB_OK;
}

cb_status tok_open_tiktoken(cb_tokenizer **out, const char *path, const char *encoding) {
    *out = NULL;
    char *json = NULL;
    if (!encoding) {
        /* "<stem>.json" beside the rank file describes it; else the stem names the encoding. */
        char *stem = stem_of(path);
        if (!stem) return cb_fail(CB_ERR_NOMEM, "out of memory");
        size_t n = strlen(path) + 8;
        json = malloc(n);
        if (!json) {
            free(stem);
            return cb_fail(CB_ERR_NOMEM, "out of memory");
        }
        snprintf(json, n, "%s", path);
        char *dot = strrchr(json, '.'), *slash = strrchr(json, '/');
        if (dot && (!slash || dot > slash)) *dot = 0;
        strcat(json, ".json");
        if (cb_file_exists(json))
            encoding = json;
        else if (tok_find_encoding(stem))
            encoding = tok_find_encoding(stem)->name;
        free(stem);
    }
    char *data;
    size_t len;
    cb_status st = cb_read_file(path, TOK_MAX_FILE, &data, &len);
    if (st == CB_OK) {
        st = tok_parse_tiktoken(out, data, len, path, encoding);
        free(data);
    }
    free(json);
    return st;
}
