/* JSON -> node tree. cJSON checks the syntax and decodes strings; cJSON keeps no positions, so a
 * small scanner walks the (now known to be valid) text in step with cJSON's tree and records the
 * line and column of every value. Integers and floats are told apart by their text, as in YAML.
 * Nesting depth is checked by a pre-scan, before cJSON recurses. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"

typedef struct jctx {
    cb_doc *doc;
    cb_diags *errs;
    const char *buf;
    size_t len, pos;
    int line, col;
    int failed;
} jctx;

static void jerr(jctx *c, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void jerr(jctx *c, int line, int col, const char *path, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cb_diags_add(c->errs, c->doc->file, line, col, path, "%s", msg);
}

static void adv(jctx *c, size_t n) {
    for (size_t k = 0; k < n && c->pos < c->len; k++) {
        unsigned char ch = (unsigned char)c->buf[c->pos++];
        if (ch == '\n') {
            c->line++;
            c->col = 1;
        } else if ((ch & 0xc0) != 0x80) {
            c->col++;
        }
    }
}

static void skip_ws(jctx *c) {
    while (c->pos < c->len && (unsigned char)c->buf[c->pos] <= 32) adv(c, 1);
}

static int expect(jctx *c, char ch, const char *path) {
    skip_ws(c);
    if (c->pos >= c->len || c->buf[c->pos] != ch) {
        jerr(c, c->line, c->col, path, "JSON position scanner lost track (expected '%c')", ch);
        return -1;
    }
    adv(c, 1);
    return 0;
}

static void skip_string(jctx *c) {
    adv(c, 1); /* opening quote */
    while (c->pos < c->len && c->buf[c->pos] != '"') adv(c, c->buf[c->pos] == '\\' ? 2 : 1);
    adv(c, 1);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? ; returns 1 int, 2 float, 0 malformed */
static int classify_number(const char *t, size_t n) {
    size_t i = 0;
    int isf = 0;
    if (i < n && t[i] == '-') i++;
    if (i >= n) return 0;
    if (t[i] == '0')
        i++;
    else if (t[i] >= '1' && t[i] <= '9')
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
    else
        return 0;
    if (i < n && t[i] == '.') {
        isf = 1;
        i++;
        size_t s = i;
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
        if (i == s) return 0;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        isf = 1;
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) i++;
        size_t s = i;
        while (i < n && t[i] >= '0' && t[i] <= '9') i++;
        if (i == s) return 0;
    }
    return i == n ? (isf ? 2 : 1) : 0;
}

static void fail_oom(jctx *c, int line, int col, const char *path) {
    if (c->failed) return;
    if (c->doc->n_nodes >= CB_DOC_MAX_NODES)
        jerr(c, line, col, path, "the document has more than %d nodes", CB_DOC_MAX_NODES);
    else
        jerr(c, line, col, path, "out of memory (document too large)");
}

static cb_doc_node *build(jctx *c, const cJSON *it, const char *path);

static cb_doc_node *build_object(jctx *c, const cJSON *it, const char *path, cb_doc_node *m,
                                 cb_strset *seen) {
    cb_pool *pool = &c->doc->pool;
    for (const cJSON *ch = it->child; ch; ch = ch->next) {
        skip_ws(c);
        int kl = c->line, kc = c->col;
        if (c->pos >= c->len || c->buf[c->pos] != '"') {
            jerr(c, kl, kc, path, "JSON position scanner lost track (expected a key)");
            return NULL;
        }
        skip_string(c);
        const char *ktext = ch->string ? ch->string : "";
        char *kpath = cb_path_key(pool, path, ktext);
        cb_doc_node *k = cb_doc_new_str(c->doc, ktext, strlen(ktext), kl, kc);
        if (!k) {
            fail_oom(c, kl, kc, path);
            return NULL;
        }
        if (m->n >= CB_DOC_MAX_KEYS) {
            jerr(c, kl, kc, path, "mapping has more than %d keys", CB_DOC_MAX_KEYS);
            return NULL;
        }
        int prev = -1;
        int added = cb_strset_put(seen, k->text, (int)m->n, &prev);
        if (added < 0) {
            fail_oom(c, kl, kc, path);
            return NULL;
        }
        if (added == 1) {
            jerr(c, kl, kc, kpath, "duplicate key '%s' (first defined at line %d, column %d)",
                 ktext, m->keys[prev]->line, m->keys[prev]->col);
            return NULL;
        }
        if (expect(c, ':', kpath)) return NULL;
        cb_doc_node *v = build(c, ch, kpath);
        if (!v) return NULL;
        if (cb_doc_map_put(c->doc, m, k, v)) {
            fail_oom(c, kl, kc, path);
            return NULL;
        }
        skip_ws(c);
        if (ch->next && expect(c, ',', path)) return NULL;
    }
    if (expect(c, '}', path)) return NULL;
    return m;
}

static cb_doc_node *build_scalar(jctx *c, const cJSON *it, const char *path, int line, int col) {
    cb_pool *pool = &c->doc->pool;
    if (cJSON_IsString(it)) {
        if (c->buf[c->pos] != '"') {
            jerr(c, line, col, path, "JSON position scanner lost track (expected a string)");
            return NULL;
        }
        skip_string(c);
        const char *v = it->valuestring ? it->valuestring : "";
        cb_doc_node *n = cb_doc_new_str(c->doc, v, strlen(v), line, col);
        if (!n) fail_oom(c, line, col, path);
        return n;
    }
    cb_doc_node *n = cb_doc_new_node(c->doc, CB_DOC_SCALAR, line, col);
    if (!n) {
        fail_oom(c, line, col, path);
        return NULL;
    }
    if (cJSON_IsNumber(it)) {
        size_t s = c->pos;
        while (c->pos < c->len && c->buf[c->pos] && strchr("0123456789+-.eE", c->buf[c->pos]))
            adv(c, 1);
        size_t tl = c->pos - s;
        int kind = classify_number(c->buf + s, tl);
        if (!kind || tl > 64) {
            jerr(c, line, col, path, "malformed JSON number '%.*s'", (int)(tl > 40 ? 40 : tl),
                 c->buf + s);
            return NULL;
        }
        char tmp[80];
        memcpy(tmp, c->buf + s, tl);
        tmp[tl] = 0;
        n->text = cb_pool_strdup(pool, tmp);
        if (!n->text) {
            fail_oom(c, line, col, path);
            return NULL;
        }
        n->len = tl;
        if (kind == 1) {
            errno = 0;
            n->type = CB_SCALAR_INT;
            n->i = strtoll(tmp, NULL, 10);
            n->int_overflow = errno == ERANGE;
            n->f = (double)n->i;
        } else {
            n->type = CB_SCALAR_FLOAT;
            n->f = strtod(tmp, NULL);
        }
        return n;
    }
    const char *lit = cJSON_IsTrue(it) ? "true" : cJSON_IsFalse(it) ? "false" : "null";
    size_t ll = strlen(lit);
    if (c->len - c->pos < ll || memcmp(c->buf + c->pos, lit, ll) != 0) {
        jerr(c, line, col, path, "JSON position scanner lost track (expected %s)", lit);
        return NULL;
    }
    adv(c, ll);
    n->text = (char *)lit;
    n->len = ll;
    n->type = cJSON_IsNull(it) ? CB_SCALAR_NULL : CB_SCALAR_BOOL;
    n->b = cJSON_IsTrue(it);
    return n;
}

static cb_doc_node *build(jctx *c, const cJSON *it, const char *path) {
    skip_ws(c);
    int line = c->line, col = c->col;
    if (c->pos >= c->len) {
        jerr(c, line, col, path, "JSON position scanner ran past the end");
        return NULL;
    }
    if (cJSON_IsObject(it)) {
        cb_doc_node *m = cb_doc_new_node(c->doc, CB_DOC_MAP, line, col);
        if (!m) {
            fail_oom(c, line, col, path);
            return NULL;
        }
        if (expect(c, '{', path)) return NULL;
        cb_strset seen = {0};
        cb_doc_node *r = build_object(c, it, path, m, &seen);
        cb_strset_free(&seen);
        return r;
    }
    if (cJSON_IsArray(it)) {
        cb_doc_node *s = cb_doc_new_node(c->doc, CB_DOC_SEQ, line, col);
        if (!s) {
            fail_oom(c, line, col, path);
            return NULL;
        }
        if (expect(c, '[', path)) return NULL;
        size_t i = 0;
        for (const cJSON *ch = it->child; ch; ch = ch->next, i++) {
            cb_doc_node *v = build(c, ch, cb_path_idx(&c->doc->pool, path, i));
            if (!v) return NULL;
            if (cb_doc_seq_push(c->doc, s, v)) {
                fail_oom(c, line, col, path);
                return NULL;
            }
            if (ch->next && expect(c, ',', path)) return NULL;
        }
        if (expect(c, ']', path)) return NULL;
        return s;
    }
    return build_scalar(c, it, path, line, col);
}

int cb_json_parse(cb_doc *doc, const char *buf, size_t len, cb_diags *errs) {
    jctx c = {.doc = doc, .errs = errs, .buf = buf, .len = len, .line = 1, .col = 1};
    size_t bad = cb_utf8_check(buf, len);
    if (bad < len) {
        int l, co;
        cb_offset_to_linecol(buf, len, bad, &l, &co);
        jerr(&c, l, co, "", "invalid UTF-8 (byte 0x%02X)", (unsigned char)buf[bad]);
        return -1;
    }
    const char *nul = memchr(buf, 0, len);
    if (nul) {
        int l, co;
        cb_offset_to_linecol(buf, len, (size_t)(nul - buf), &l, &co);
        jerr(&c, l, co, "", "NUL byte in the file");
        return -1;
    }
    /* UTF-8 byte order mark, as cJSON skips it */
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) c.pos = 3;
    size_t start = c.pos;
    skip_ws(&c);
    if (c.pos >= len) return 0; /* empty document: root stays NULL */
    /* depth pre-scan */
    int depth = 0, in_str = 0;
    for (size_t i = start; i < len; i++) {
        char ch = buf[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
            continue;
        }
        if (ch == '"')
            in_str = 1;
        else if (ch == '{' || ch == '[') {
            if (++depth > CB_DOC_MAX_DEPTH) {
                int l, co;
                cb_offset_to_linecol(buf, len, i, &l, &co);
                jerr(&c, l, co, "", "nesting deeper than %d levels", CB_DOC_MAX_DEPTH);
                return -1;
            }
        } else if (ch == '}' || ch == ']')
            depth--;
    }
    /* cJSON wants the terminating NUL inside the buffer it is given */
    char *copy = malloc(len + 1);
    if (!copy) return -1;
    memcpy(copy, buf, len);
    copy[len] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
    if (!root) {
        size_t off = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
        int l, co;
        cb_offset_to_linecol(buf, len, off, &l, &co);
        char near[24] = "";
        size_t k = 0;
        for (size_t i = off; i < len && k < 16 && buf[i] != '\n'; i++) near[k++] = buf[i];
        near[k] = 0;
        if (off >= len)
            jerr(&c, l, co, "", "JSON syntax error: unexpected end of file");
        else
            jerr(&c, l, co, "", "JSON syntax error near '%s'", near);
        free(copy);
        return -1;
    }
    doc->root = build(&c, root, "");
    cJSON_Delete(root);
    free(copy);
    if (c.failed) return -1;
    if (!doc->root) return -1;
    return 0;
}
