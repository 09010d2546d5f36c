/* Document tree: construction, lookup, copies, key paths, error collection, suggestions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <strings.h>

#include "caramba/fileio.h"
#include "config/config_internal.h"

/* ---- errors ------------------------------------------------------------------------------- */

void cb_diags_add(cb_diags *d, const char *file, int line, int col, const char *path,
                  const char *fmt, ...) {
    if (!d) return;
    if (d->n >= CB_DIAGS_MAX) {
        d->dropped++;
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *p = path && path[0] ? path : "(root)";
    char shortp[160];
    size_t lp = strlen(p);
    if (lp > 150) { /* very deep paths: keep both ends */
        snprintf(shortp, sizeof shortp, "%.70s...%s", p, p + lp - 70);
        p = shortp;
    }
    int n = snprintf(NULL, 0, "%s:%d:%d: %s: %s", file ? file : "?", line, col, p, msg);
    char *s = malloc((size_t)n + 1);
    if (!s) {
        d->dropped++;
        return;
    }
    snprintf(s, (size_t)n + 1, "%s:%d:%d: %s: %s", file ? file : "?", line, col, p, msg);
    d->msg[d->n++] = s;
}

void cb_diags_free(cb_diags *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) free(d->msg[i]);
    d->n = 0;
    d->dropped = 0;
}

/* ---- nodes -------------------------------------------------------------------------------- */

cb_doc_node *cb_doc_new_node(cb_doc *doc, cb_doc_kind kind, int line, int col) {
    if (doc->n_nodes >= CB_DOC_MAX_NODES) return NULL;
    cb_doc_node *n = cb_pool_alloc(&doc->pool, sizeof *n);
    if (!n) return NULL;
    doc->n_nodes++;
    n->kind = kind;
    n->type = CB_SCALAR_NULL;
    n->file = doc->file;
    n->line = line;
    n->col = col;
    return n;
}

cb_doc_node *cb_doc_new_str(cb_doc *doc, const char *s, size_t len, int line, int col) {
    cb_doc_node *n = cb_doc_new_node(doc, CB_DOC_SCALAR, line, col);
    if (!n) return NULL;
    n->type = CB_SCALAR_STR;
    n->text = cb_pool_strndup(&doc->pool, s, len);
    if (!n->text) return NULL;
    n->len = len;
    return n;
}

static int grow(cb_doc *doc, cb_doc_node *n) {
    if (n->n < n->cap) return 0;
    size_t cap = n->cap ? n->cap * 2 : 4;
    if (n->kind == CB_DOC_SEQ) {
        cb_doc_node **it = cb_pool_alloc(&doc->pool, cap * sizeof *it);
        if (!it) return -1;
        if (n->n) memcpy(it, n->items, n->n * sizeof *it);
        n->items = it;
    } else {
        cb_doc_node **k = cb_pool_alloc(&doc->pool, cap * sizeof *k);
        cb_doc_node **v = cb_pool_alloc(&doc->pool, cap * sizeof *v);
        if (!k || !v) return -1;
        if (n->n) {
            memcpy(k, n->keys, n->n * sizeof *k);
            memcpy(v, n->vals, n->n * sizeof *v);
        }
        n->keys = k;
        n->vals = v;
    }
    n->cap = cap;
    return 0;
}

int cb_doc_seq_push(cb_doc *doc, cb_doc_node *seq, cb_doc_node *item) {
    if (grow(doc, seq)) return -1;
    seq->items[seq->n++] = item;
    return 0;
}

int cb_doc_map_put(cb_doc *doc, cb_doc_node *map, cb_doc_node *key, cb_doc_node *val) {
    if (grow(doc, map)) return -1;
    map->keys[map->n] = key;
    map->vals[map->n] = val;
    map->n++;
    return 0;
}

cb_doc_node *cb_doc_copy(cb_doc *doc, const cb_doc_node *src) {
    cb_doc_node *n = cb_doc_new_node(doc, src->kind, src->line, src->col);
    if (!n) return NULL;
    *n = *src; /* kind, scalar value, file and position */
    n->items = n->keys = n->vals = NULL;
    n->n = n->cap = 0;
    if (src->kind == CB_DOC_SCALAR) return n; /* text is immutable: shared */
    for (size_t i = 0; i < src->n; i++) {
        if (src->kind == CB_DOC_SEQ) {
            cb_doc_node *c = cb_doc_copy(doc, src->items[i]);
            if (!c || cb_doc_seq_push(doc, n, c)) return NULL;
        } else {
            cb_doc_node *v = cb_doc_copy(doc, src->vals[i]);
            if (!v || cb_doc_map_put(doc, n, src->keys[i], v)) return NULL;
        }
    }
    return n;
}

int cb_doc_height(const cb_doc_node *n) {
    if (!n || n->kind == CB_DOC_SCALAR) return 1;
    int h = 0;
    for (size_t i = 0; i < n->n; i++) {
        int c = cb_doc_height(n->kind == CB_DOC_SEQ ? n->items[i] : n->vals[i]);
        if (c > h) h = c;
    }
    return h + 1;
}

int cb_doc_find(const cb_doc_node *map, const char *key) {
    if (!map || map->kind != CB_DOC_MAP) return -1;
    for (size_t i = 0; i < map->n; i++)
        if (map->keys[i]->text && strcmp(map->keys[i]->text, key) == 0) return (int)i;
    return -1;
}

cb_doc_node *cb_doc_get(const cb_doc_node *map, const char *key) {
    int i = cb_doc_find(map, key);
    return i < 0 ? NULL : map->vals[i];
}

const char *cb_doc_kind_name(const cb_doc_node *n) {
    if (!n) return "nothing";
    if (n->kind == CB_DOC_MAP) return "mapping";
    if (n->kind == CB_DOC_SEQ) return "sequence";
    switch (n->type) {
    case CB_SCALAR_NULL:
        return "null";
    case CB_SCALAR_BOOL:
        return "boolean";
    case CB_SCALAR_INT:
        return "integer";
    case CB_SCALAR_FLOAT:
        return "float";
    case CB_SCALAR_STR:
        return "string";
    }
    return "scalar";
}

/* ---- string sets --------------------------------------------------------------------------- */

static size_t str_hash(const char *k) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *k; k++) h = (h ^ (unsigned char)*k) * 1099511628211ull;
    return (size_t)h;
}

int cb_strset_put(cb_strset *s, const char *key, int val, int *old) {
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 32;
        const char **k = calloc(cap, sizeof *k);
        int *v = calloc(cap, sizeof *v);
        if (!k || !v) {
            free(k);
            free(v);
            return -1;
        }
        for (size_t i = 0; i < s->cap; i++)
            if (s->keys[i]) {
                size_t j = str_hash(s->keys[i]) & (cap - 1);
                while (k[j]) j = (j + 1) & (cap - 1);
                k[j] = s->keys[i];
                v[j] = s->vals[i];
            }
        free(s->keys);
        free(s->vals);
        s->keys = k;
        s->vals = v;
        s->cap = cap;
    }
    size_t j = str_hash(key) & (s->cap - 1);
    while (s->keys[j]) {
        if (strcmp(s->keys[j], key) == 0) {
            if (old) *old = s->vals[j];
            return 1;
        }
        j = (j + 1) & (s->cap - 1);
    }
    s->keys[j] = key;
    s->vals[j] = val;
    s->n++;
    return 0;
}

int cb_strset_get(const cb_strset *s, const char *key) {
    if (!s->cap) return -1;
    size_t j = str_hash(key) & (s->cap - 1);
    while (s->keys[j]) {
        if (strcmp(s->keys[j], key) == 0) return s->vals[j];
        j = (j + 1) & (s->cap - 1);
    }
    return -1;
}

void cb_strset_free(cb_strset *s) {
    free(s->keys);
    free(s->vals);
    memset(s, 0, sizeof *s);
}

/* ---- key paths ---------------------------------------------------------------------------- */

/* Never NULL: out of memory gives a fixed marker (the error is reported elsewhere). */
char *cb_path_key(cb_pool *p, const char *parent, const char *key) {
    char *r =
        !parent || !parent[0] ? cb_pool_strdup(p, key) : cb_pool_printf(p, "%s.%s", parent, key);
    return r ? r : (char *)"(out of memory)";
}

char *cb_path_idx(cb_pool *p, const char *parent, size_t i) {
    char *r = cb_pool_printf(p, "%s[%zu]", parent ? parent : "", i);
    return r ? r : (char *)"(out of memory)";
}

/* ---- suggestions -------------------------------------------------------------------------- */

int cb_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 255;
    int prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            int m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(int));
    }
    return prev[lb] > 255 ? 255 : prev[lb];
}

const char *cb_suggest(const char *s, const char *const *cands, int n) {
    const char *best = NULL;
    int bestd = 255;
    size_t ls = strlen(s);
    for (int i = 0; i < n; i++) {
        if (!cands[i]) continue;
        int d = cb_edit_distance(s, cands[i]);
        if (strcasecmp(s, cands[i]) == 0) d = 0;
        if (d < bestd) {
            bestd = d;
            best = cands[i];
        }
    }
    int limit = ls <= 4 ? 1 : (ls <= 8 ? 2 : 3);
    if (best && bestd <= limit) return best;
    /* a candidate that starts with s (q8 -> q8_0) */
    if (ls >= 2)
        for (int i = 0; i < n; i++)
            if (cands[i] && strncmp(cands[i], s, ls) == 0) return cands[i];
    /* a candidate that contains s or is contained in it (rms -> rms_norm) */
    if (ls >= 3)
        for (int i = 0; i < n; i++)
            if (cands[i] && (strstr(cands[i], s) || strstr(s, cands[i]))) return cands[i];
    return NULL;
}

/* ---- positions and UTF-8 ------------------------------------------------------------------ */

void cb_offset_to_linecol(const char *buf, size_t len, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    if (off > len) off = len;
    for (size_t i = 0; i < off; i++) {
        unsigned char ch = (unsigned char)buf[i];
        if (ch == '\n') {
            l++;
            c = 1;
        } else if ((ch & 0xc0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

size_t cb_utf8_check(const char *buf, size_t len) {
    const unsigned char *s = (const unsigned char *)buf;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            min = 0x80;
            c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            min = 0x800;
            c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return i;
        }
        for (size_t k = 1; k <= n; k++) {
            if (i + k >= len || (s[i + k] & 0xc0) != 0x80) return i;
            c = (c << 6) | (s[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return i;
        i += n + 1;
    }
    return len;
}

/* ---- documents ---------------------------------------------------------------------------- */

static int has_suffix_ci(const char *s, const char *suf) {
    size_t ls = strlen(s), lf = strlen(suf);
    return ls >= lf && strcasecmp(s + ls - lf, suf) == 0;
}

static const char *suffix_of(const char *name) {
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    return dot ? dot : "";
}

static cb_status finish_error(cb_diags *errs) {
    const char *m = errs->n ? errs->msg[0] : "manifest error";
    return cb_fail(CB_ERR_FORMAT, "%s", m);
}

cb_status cb_doc_parse(const char *name, const char *buf, size_t len, cb_doc **out,
                       cb_diags *errs) {
    *out = NULL;
    cb_diags local = {0};
    cb_diags *e = errs ? errs : &local;
    int before = e->n + e->dropped;
    if (len > CB_DOC_MAX_BYTES) {
        cb_diags_add(e, name, 1, 1, "", "file is %zu bytes, more than the %u MiB allowed", len,
                     CB_DOC_MAX_BYTES >> 20);
        cb_status st = finish_error(e);
        cb_diags_free(&local);
        return st;
    }
    int json = has_suffix_ci(name, ".json");
    if (!json && !has_suffix_ci(name, ".yml") && !has_suffix_ci(name, ".yaml")) {
        cb_diags_add(e, name, 1, 1, "",
                     "unsupported manifest format '%s' (use .yml, .yaml or .json)",
                     suffix_of(name));
        cb_status st = finish_error(e);
        cb_diags_free(&local);
        return st;
    }
    cb_doc *doc = calloc(1, sizeof *doc);
    if (!doc) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", name);
    cb_pool_init(&doc->pool);
    doc->file = cb_pool_strdup(&doc->pool, name);
    int rc =
        doc->file ? (json ? cb_json_parse(doc, buf, len, e) : cb_yaml_parse(doc, buf, len, e)) : -1;
    if (rc || e->n + e->dropped > before) {
        if (e->n + e->dropped == before)
            cb_diags_add(e, name, 1, 1, "", "out of memory while parsing");
        cb_status st = finish_error(e);
        cb_doc_free(doc);
        cb_diags_free(&local);
        return st;
    }
    *out = doc;
    return CB_OK;
}

cb_status cb_doc_load(const char *path, cb_doc **out, cb_diags *errs) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    cb_status st = cb_read_file(path, CB_DOC_MAX_BYTES, &buf, &len);
    if (st != CB_OK) {
        /* the reader's message already names the path; give it the position form too */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", cb_last_error());
        const char *m = msg;
        size_t lp = strlen(path);
        if (strncmp(m, path, lp) == 0 && m[lp] == ':') m += lp + 1;
        while (*m == ' ') m++;
        cb_diags local = {0};
        cb_diags *e = errs ? errs : &local;
        cb_diags_add(e, path, 1, 1, "", "%s", m);
        st = cb_fail(st, "%s:1:1: (root): %s", path, m);
        cb_diags_free(&local);
        return st;
    }
    st = cb_doc_parse(path, buf, len, out, errs);
    free(buf);
    return st;
}

cb_doc_node *cb_doc_root(const cb_doc *doc) {
    return doc ? doc->root : NULL;
}
const char *cb_doc_file(const cb_doc *doc) {
    return doc ? doc->file : NULL;
}

void cb_doc_free(cb_doc *doc) {
    if (!doc) return;
    cb_pool_free(&doc->pool);
    cb_diags_free(&doc->own_errs);
    free(doc);
}
