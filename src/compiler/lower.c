/* Lowering: ${var} substitution and type aliases on the document tree, repeat expansion on the
 * typed model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/compiler.h"

/* ---- vars ---------------------------------------------------------------------------------- */

typedef struct var {
    const char *name;
    cb_doc_node *def; /* as written */
    cb_doc_node *val; /* resolved */
    int state;        /* 0 unresolved, 1 resolving, 2 done */
    int height;
} var;

typedef struct vctx {
    cb_doc *doc;
    cb_diags *errs;
    var *vars;
    int n;
    cb_strset index; /* name -> position in vars */
    int chain[CB_VAR_MAX_CHAIN + 1];
    int depth;
    int failed;
} vctx;

static void verr(vctx *v, const cb_doc_node *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void verr(vctx *v, const cb_doc_node *at, const char *path, const char *fmt, ...) {
    if (v->failed) return;
    v->failed = 1;
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cb_diags_add(v->errs, at ? at->file : v->doc->file, at ? at->line : 1, at ? at->col : 1, path,
                 "%s", msg);
}

static int name_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_';
}

/* Finds the next reference at or after *pos: sets [*s, *e) to the whole "${NAME}" span. */
static int next_ref(const char *t, size_t len, size_t from, size_t *s, size_t *e) {
    for (size_t i = from; i + 1 < len; i++) {
        if (t[i] != '$' || t[i + 1] != '{') continue;
        size_t j = i + 2;
        while (j < len && name_char(t[j])) j++;
        if (j > i + 2 && j < len && t[j] == '}') {
            *s = i;
            *e = j + 1;
            return 1;
        }
    }
    return 0;
}

static int find_var(vctx *v, const char *name, size_t len) {
    char buf[256];
    if (len >= sizeof buf) return -1; /* no variable has such a long name */
    memcpy(buf, name, len);
    buf[len] = 0;
    return cb_strset_get(&v->index, buf);
}

static cb_doc_node *subst(vctx *v, cb_doc_node *n, const char *path, int depth);

static void unknown_var(vctx *v, const cb_doc_node *at, const char *path, const char *name,
                        size_t len) {
    char nm[80];
    snprintf(nm, sizeof nm, "%.*s", (int)(len > 60 ? 60 : len), name);
    const char *cands[256];
    int nc = 0;
    for (int i = 0; i < v->n && nc < 256; i++) cands[nc++] = v->vars[i].name;
    const char *s = cb_suggest(nm, cands, nc);
    if (v->n == 0)
        verr(v, at, path, "unknown variable '%s' (the manifest has no vars section)", nm);
    else if (s)
        verr(v, at, path, "unknown variable '%s' (did you mean '%s'?)", nm, s);
    else
        verr(v, at, path, "unknown variable '%s'", nm);
}

static cb_doc_node *resolve(vctx *v, int idx, const cb_doc_node *at, const char *path) {
    var *x = &v->vars[idx];
    if (x->state == 2) return x->val;
    if (x->state == 1) {
        char chain[600] = "";
        size_t used = 0;
        int start = 0;
        for (int k = 0; k < v->depth; k++)
            if (v->chain[k] == idx) {
                start = k;
                break;
            }
        for (int k = start; k < v->depth && used < sizeof chain - 80; k++)
            used += (size_t)snprintf(chain + used, sizeof chain - used, "%s -> ",
                                     v->vars[v->chain[k]].name);
        snprintf(chain + used, sizeof chain - used, "%s", x->name);
        verr(v, at, path, "variable cycle: %s", chain);
        return NULL;
    }
    if (v->depth >= CB_VAR_MAX_CHAIN) {
        verr(v, at, path, "variables refer to variables more than %d levels deep",
             CB_VAR_MAX_CHAIN);
        return NULL;
    }
    x->state = 1;
    v->chain[v->depth++] = idx;
    char vp[160];
    snprintf(vp, sizeof vp, "vars.%.120s", x->name);
    cb_doc_node *r = subst(v, x->def, vp, 1);
    v->depth--;
    if (!r) return NULL;
    x->val = r;
    x->height = cb_doc_height(r);
    x->state = 2;
    return r;
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int over;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->over) return;
    if (b->n + n > CB_VAR_MAX_TEXT) {
        b->over = 1;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->over = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void render(sbuf *b, const cb_doc_node *n) {
    if (b->over) return;
    if (n->kind == CB_DOC_SEQ) {
        sb_put(b, "[", 1);
        for (size_t i = 0; i < n->n; i++) {
            if (i) sb_put(b, ", ", 2);
            render(b, n->items[i]);
        }
        sb_put(b, "]", 1);
        return;
    }
    if (n->kind == CB_DOC_MAP) {
        sb_put(b, "{", 1);
        for (size_t i = 0; i < n->n; i++) {
            if (i) sb_put(b, ", ", 2);
            sb_put(b, n->keys[i]->text, n->keys[i]->len);
            sb_put(b, ": ", 2);
            render(b, n->vals[i]);
        }
        sb_put(b, "}", 1);
        return;
    }
    char tmp[40];
    switch (n->type) {
    case CB_SCALAR_NULL:
        sb_put(b, "null", 4);
        break;
    case CB_SCALAR_BOOL:
        sb_put(b, n->b ? "true" : "false", n->b ? 4 : 5);
        break;
    case CB_SCALAR_INT:
        if (n->int_overflow)
            sb_put(b, n->text, n->len);
        else {
            int k = snprintf(tmp, sizeof tmp, "%lld", (long long)n->i);
            sb_put(b, tmp, (size_t)k);
        }
        break;
    case CB_SCALAR_FLOAT: {
        const char *f = cb_format_float(n->f, tmp);
        sb_put(b, f, strlen(f));
        break;
    }
    case CB_SCALAR_STR:
        sb_put(b, n->text, n->len);
        break;
    }
}

static cb_doc_node *subst_string(vctx *v, cb_doc_node *n, const char *path, int depth) {
    size_t s, e;
    if (!next_ref(n->text, n->len, 0, &s, &e)) return n;
    if (s == 0 && e == n->len) { /* whole-string reference: keeps the variable's type */
        int idx = find_var(v, n->text + 2, e - 3);
        if (idx < 0) {
            unknown_var(v, n, path, n->text + 2, e - 3);
            return NULL;
        }
        cb_doc_node *r = resolve(v, idx, n, path);
        if (!r) return NULL;
        if (depth - 1 + v->vars[idx].height > CB_DOC_MAX_DEPTH) {
            verr(v, n, path, "substituting ${%s} nests deeper than %d levels", v->vars[idx].name,
                 CB_DOC_MAX_DEPTH);
            return NULL;
        }
        cb_doc_node *c = cb_doc_copy(v->doc, r);
        if (!c) {
            verr(v, n, path, "variable substitution creates more than %d nodes", CB_DOC_MAX_NODES);
            return NULL;
        }
        c->file = n->file;
        c->line = n->line;
        c->col = n->col;
        return c;
    }
    sbuf b = {0};
    size_t pos = 0;
    while (next_ref(n->text, n->len, pos, &s, &e)) {
        sb_put(&b, n->text + pos, s - pos);
        int idx = find_var(v, n->text + s + 2, e - s - 3);
        if (idx < 0) {
            unknown_var(v, n, path, n->text + s + 2, e - s - 3);
            free(b.p);
            return NULL;
        }
        cb_doc_node *r = resolve(v, idx, n, path);
        if (!r) {
            free(b.p);
            return NULL;
        }
        render(&b, r);
        pos = e;
    }
    sb_put(&b, n->text + pos, n->len - pos);
    if (b.over) {
        free(b.p);
        verr(v, n, path, "variable substitution makes a string longer than %zu bytes",
             CB_VAR_MAX_TEXT);
        return NULL;
    }
    cb_doc_node *r = cb_doc_new_str(v->doc, b.p ? b.p : "", b.n, n->line, n->col);
    free(b.p);
    if (!r) verr(v, n, path, "out of memory during variable substitution");
    return r;
}

static cb_doc_node *subst(vctx *v, cb_doc_node *n, const char *path, int depth) {
    if (v->failed) return NULL;
    if (n->kind == CB_DOC_SCALAR)
        return n->type == CB_SCALAR_STR ? subst_string(v, n, path, depth) : n;
    for (size_t i = 0; i < n->n; i++) {
        char *cp = n->kind == CB_DOC_SEQ ? cb_path_idx(&v->doc->pool, path, i)
                                         : cb_path_key(&v->doc->pool, path, n->keys[i]->text);
        if (!cp) {
            verr(v, n, path, "out of memory during variable substitution");
            return NULL;
        }
        cb_doc_node **slot = n->kind == CB_DOC_SEQ ? &n->items[i] : &n->vals[i];
        cb_doc_node *r = subst(v, *slot, cp, depth + 1);
        if (!r) return NULL;
        *slot = r;
    }
    return n;
}

int cb_lower_vars(cb_doc *doc, cb_diags *errs) {
    cb_doc_node *root = doc->root;
    vctx v = {.doc = doc, .errs = errs};
    int vi = cb_doc_find(root, "vars");
    cb_doc_node *vars = vi >= 0 ? root->vals[vi] : NULL;
    if (vi >= 0) {
        if (vars->kind == CB_DOC_SCALAR && vars->type == CB_SCALAR_NULL) {
            vars = NULL;
        } else if (vars->kind != CB_DOC_MAP) {
            verr(&v, vars, "vars", "vars must be a mapping of name: value, got a %s",
                 cb_doc_kind_name(vars));
            return 1;
        }
        /* drop `vars` from the manifest: it is consumed here, never validated as a field */
        for (size_t k = (size_t)vi; k + 1 < root->n; k++) {
            root->keys[k] = root->keys[k + 1];
            root->vals[k] = root->vals[k + 1];
        }
        root->n--;
    }
    if (vars) {
        v.vars = calloc(vars->n ? vars->n : 1, sizeof *v.vars);
        if (!v.vars) {
            verr(&v, vars, "vars", "out of memory");
            return 1;
        }
        for (size_t k = 0; k < vars->n; k++) {
            const cb_doc_node *key = vars->keys[k];
            for (size_t c = 0; c < key->len; c++)
                if (!name_char(key->text[c])) {
                    verr(&v, key, "vars",
                         "variable name '%.60s' cannot be referenced (use letters, digits and _)",
                         key->text);
                    free(v.vars);
                    cb_strset_free(&v.index);
                    return 1;
                }
            if (key->len == 0) {
                verr(&v, key, "vars", "empty variable name");
                free(v.vars);
                cb_strset_free(&v.index);
                return 1;
            }
            v.vars[k].name = key->text;
            v.vars[k].def = vars->vals[k];
            if (cb_strset_put(&v.index, key->text, (int)k, NULL) < 0) {
                verr(&v, key, "vars", "out of memory");
                free(v.vars);
                cb_strset_free(&v.index);
                return 1;
            }
        }
        v.n = (int)vars->n;
    }
    /* spec-core §1.2: without a vars section nothing is substituted (a "${x}" stays text and
     * fails type checks with a hint); resolution is lazy, so unused variables are not checked */
    if (vi >= 0) {
        doc->had_vars = 1;
        subst(&v, root, "", 1);
    }
    free(v.vars);
    cb_strset_free(&v.index);
    return v.failed;
}

/* ---- type aliases -------------------------------------------------------------------------- */

static void canon_type(cb_doc_node *map) {
    cb_doc_node *t = cb_doc_get(map, "type");
    if (!t || t->kind != CB_DOC_SCALAR || t->type != CB_SCALAR_STR) return;
    const char *c = cb_type_canonical(t->text);
    if (c && strcmp(c, t->text) != 0) {
        t->text = (char *)c; /* static string; nodes never free their text */
        t->len = strlen(c);
    }
}

static void canon_topology(cb_doc_node *n, int depth) {
    if (!n || n->kind != CB_DOC_MAP || depth > CB_DOC_MAX_DEPTH) return;
    canon_type(n);
    cb_doc_node *layers = cb_doc_get(n, "layers");
    if (layers && layers->kind == CB_DOC_SEQ)
        for (size_t i = 0; i < layers->n; i++) canon_topology(layers->items[i], depth + 1);
}

void cb_lower_type_aliases(cb_doc_node *root) {
    cb_doc_node *model = cb_doc_get(root, "model");
    if (!model || model->kind != CB_DOC_MAP) return;
    canon_type(model);
    canon_topology(cb_doc_get(model, "topology"), 0);
}

/* ---- repeat expansion ---------------------------------------------------------------------- */

static int64_t count_modules(const cb_cfg_node *m) {
    if (!cb_cfg_is_topology(m->kind)) return 1;
    int64_t sum = 0;
    for (int i = 0; i < m->n_layers; i++) {
        sum += count_modules(&m->layers[i]);
        if (sum > CB_MANIFEST_MAX_MODULES) return CB_MANIFEST_MAX_MODULES + 1;
    }
    if (m->repeat > 0 && sum > (CB_MANIFEST_MAX_MODULES + 1) / m->repeat)
        return CB_MANIFEST_MAX_MODULES + 1;
    sum = 1 + m->repeat * sum;
    return sum > CB_MANIFEST_MAX_MODULES ? CB_MANIFEST_MAX_MODULES + 1 : sum;
}

/* The outermost-first topology whose own repeat makes the subtree too big. */
static const cb_cfg_node *culprit(const cb_cfg_node *m) {
    for (int i = 0; i < m->n_layers; i++)
        if (cb_cfg_is_topology(m->layers[i].kind) &&
            count_modules(&m->layers[i]) > CB_MANIFEST_MAX_MODULES)
            return culprit(&m->layers[i]);
    return m;
}

static int expand(cb_sctx *c, const cb_cfg_node *src, cb_cfg_node *dst, const char *path) {
    *dst = *src;
    dst->path = path;
    if (!cb_cfg_is_topology(src->kind)) return 0;
    int64_t n = src->repeat * (int64_t)src->n_layers;
    cb_cfg_node *arr = cb_pool_alloc(c->pool, (size_t)n * sizeof *arr);
    if (!arr) {
        cb_sc_err(c, src->src.node, src->src.path, "out of memory while expanding repeat");
        return 1;
    }
    for (int64_t r = 0; r < src->repeat; r++)
        for (int i = 0; i < src->n_layers; i++) {
            int64_t k = r * src->n_layers + i;
            const char *cp = cb_pool_printf(c->pool, "%s.layers.%lld", path, (long long)k);
            if (!cp || expand(c, &src->layers[i], &arr[k], cp)) return 1;
            if (r > 0) arr[k].rep = (int)r;
        }
    dst->layers = arr;
    dst->n_layers = (int)n;
    dst->repeat = 1;
    return 0;
}

int cb_lower_repeats(cb_sctx *c, const cb_cfg_node *src, cb_cfg_node *dst, const char *path) {
    if (count_modules(src) > CB_MANIFEST_MAX_MODULES) {
        const cb_cfg_node *m = culprit(src);
        cb_sc_err_key(c, &m->src, m->repeat > 1 ? "repeat" : NULL,
                      "repeat expands the model to more than %d modules", CB_MANIFEST_MAX_MODULES);
        return 1;
    }
    return expand(c, src, dst, path);
}
