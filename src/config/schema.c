/* Generic strict readers: scalars with types and ranges, enums with suggestions, lists, and
 * mappings through field tables (unknown keys are errors). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/schema.h"

int cb_sc_nerr(const cb_sctx *c) {
    return c->errs->n + c->errs->dropped - c->errs0;
}

static void vadd(cb_sctx *c, const cb_doc_node *at, const char *path, const char *fmt, va_list ap) {
    if (c->errs->n >= CB_DIAGS_MAX) { /* full: count it, skip the formatting */
        c->errs->dropped++;
        return;
    }
    char msg[900];
    vsnprintf(msg, sizeof msg, fmt, ap);
    const char *file = at && at->file ? at->file : (c->doc ? c->doc->file : "?");
    cb_diags_add(c->errs, file, at ? at->line : 1, at ? at->col : 1, path, "%s", msg);
}

void cb_sc_err(cb_sctx *c, const cb_doc_node *at, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vadd(c, at, path, fmt, ap);
    va_end(ap);
}

const cb_doc_node *cb_sc_given(const cb_cfg_src *src, const char *key) {
    const cb_doc_node *v = cb_doc_get(src->node, key);
    return v && !cb_sc_is_null(v) ? v : NULL;
}

void cb_sc_err_key(cb_sctx *c, const cb_cfg_src *src, const char *key, const char *fmt, ...) {
    const cb_doc_node *at = key ? cb_doc_get(src->node, key) : NULL;
    if (!at) at = src->node;
    const char *path = key ? cb_path_key(c->pool, src->path, key) : src->path;
    va_list ap;
    va_start(ap, fmt);
    vadd(c, at, path ? path : src->path, fmt, ap);
    va_end(ap);
}

cb_cfg_src cb_sc_src(cb_sctx *c, const cb_doc_node *n, const char *path) {
    (void)c;
    cb_cfg_src s = {0};
    s.node = n;
    s.path = path;
    if (n) {
        s.file = n->file;
        s.line = n->line;
        s.col = n->col;
    }
    return s;
}

int cb_sc_is_null(const cb_doc_node *v) {
    return !v || (v->kind == CB_DOC_SCALAR && v->type == CB_SCALAR_NULL);
}

const char *cb_sc_describe(cb_sctx *c, const cb_doc_node *v) {
    if (!v) return "nothing";
    if (v->kind == CB_DOC_MAP) return "a mapping";
    if (v->kind == CB_DOC_SEQ) return "a list";
    const char *r = NULL;
    switch (v->type) {
    case CB_SCALAR_NULL:
        return "null";
    case CB_SCALAR_BOOL:
        return v->b ? "the boolean true" : "the boolean false";
    case CB_SCALAR_INT:
        r = cb_pool_printf(c->pool, "the integer %.40s", v->text);
        break;
    case CB_SCALAR_FLOAT:
        r = cb_pool_printf(c->pool, "the float %.40s", v->text);
        break;
    case CB_SCALAR_STR:
        r = cb_pool_printf(c->pool, "the string \"%.40s%s\"%s", v->text, v->len > 40 ? "..." : "",
                           strstr(v->text, "${") && c->doc && !c->doc->had_vars
                               ? " (the manifest has no vars section, so ${...} is not substituted)"
                               : "");
        break;
    }
    return r ? r : "a value";
}

int cb_sc_int(cb_sctx *c, const cb_doc_node *v, const char *path, unsigned flags, int64_t *out) {
    if (!v || v->kind != CB_DOC_SCALAR || v->type != CB_SCALAR_INT) {
        const char *extra = "";
        if (v && v->kind == CB_DOC_SCALAR && v->type == CB_SCALAR_FLOAT)
            extra = " (no fraction or exponent)";
        else if (v && v->kind == CB_DOC_SCALAR && v->type == CB_SCALAR_STR && v->len &&
                 strspn(v->text, "+-0123456789") == v->len)
            extra = " (remove the quotes)";
        const char *kind = (flags & SF_POS)      ? "a positive integer"
                           : (flags & SF_NONNEG) ? "a non-negative integer"
                                                 : "an integer";
        cb_sc_err(c, v, path, "expected %s%s, got %s", kind, extra, cb_sc_describe(c, v));
        return 1;
    }
    if (v->int_overflow) {
        cb_sc_err(c, v, path, "integer %.40s is out of range", v->text);
        return 1;
    }
    int64_t x = v->i;
    if ((flags & SF_POS) && x <= 0) {
        cb_sc_err(c, v, path, "must be a positive integer, got %lld", (long long)x);
        return 1;
    }
    if ((flags & SF_NONNEG) && x < 0) {
        cb_sc_err(c, v, path, "must be a non-negative integer, got %lld", (long long)x);
        return 1;
    }
    if ((flags & SF_DIM) && x > CB_MANIFEST_MAX_DIM) {
        cb_sc_err(c, v, path, "%lld is an absurd size (the limit is 2^24 = %lld)", (long long)x,
                  (long long)CB_MANIFEST_MAX_DIM);
        return 1;
    }
    *out = x;
    return 0;
}

int cb_sc_float(cb_sctx *c, const cb_doc_node *v, const char *path, unsigned flags, double *out) {
    if (!v || v->kind != CB_DOC_SCALAR ||
        (v->type != CB_SCALAR_INT && v->type != CB_SCALAR_FLOAT)) {
        cb_sc_err(c, v, path, "expected a number, got %s", cb_sc_describe(c, v));
        return 1;
    }
    double x = v->type == CB_SCALAR_INT ? (double)v->i : v->f;
    if (!isfinite(x)) {
        cb_sc_err(c, v, path, "must be a finite number, got %s", v->text);
        return 1;
    }
    if ((flags & SF_POS) && !(x > 0)) {
        cb_sc_err(c, v, path, "must be positive, got %s", v->text);
        return 1;
    }
    if ((flags & SF_NONNEG) && x < 0) {
        cb_sc_err(c, v, path, "must be non-negative, got %s", v->text);
        return 1;
    }
    if ((flags & SF_PROB) && (x < 0 || x > 1)) {
        cb_sc_err(c, v, path, "must be a probability in [0, 1], got %s", v->text);
        return 1;
    }
    *out = x;
    return 0;
}

int cb_sc_bool(cb_sctx *c, const cb_doc_node *v, const char *path, bool *out) {
    if (!v || v->kind != CB_DOC_SCALAR || v->type != CB_SCALAR_BOOL) {
        static const char *const yaml11[] = {"yes", "no", "on",  "off", "y",  "n",  "Yes",
                                             "No",  "On", "Off", "YES", "NO", "ON", "OFF"};
        const char *hint = "";
        if (v && v->kind == CB_DOC_SCALAR && v->type == CB_SCALAR_STR)
            for (size_t k = 0; k < sizeof yaml11 / sizeof yaml11[0]; k++)
                if (strcmp(v->text, yaml11[k]) == 0)
                    hint = " (YAML 1.2 booleans are only true and false)";
        cb_sc_err(c, v, path, "expected true or false, got %s%s", cb_sc_describe(c, v), hint);
        return 1;
    }
    *out = v->b;
    return 0;
}

int cb_sc_str(cb_sctx *c, const cb_doc_node *v, const char *path, const char **out) {
    if (!v || v->kind != CB_DOC_SCALAR || v->type != CB_SCALAR_STR) {
        const char *hint = "";
        if (v && v->kind == CB_DOC_SCALAR && v->type != CB_SCALAR_NULL) hint = " (quote it)";
        cb_sc_err(c, v, path, "expected a string, got %s%s", cb_sc_describe(c, v), hint);
        return 1;
    }
    *out = v->text; /* document strings live as long as the manifest */
    return 0;
}

static const char *join(cb_sctx *c, const char *const *names, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(names[i]) + 2;
    char *s = cb_pool_alloc(c->pool, len);
    if (!s) return "";
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, ", ");
        strcat(s, names[i]);
    }
    return s;
}

int cb_sc_enum(cb_sctx *c, const cb_doc_node *v, const char *path, const char *const *names, int n,
               int *out) {
    if (!v || v->kind != CB_DOC_SCALAR || v->type == CB_SCALAR_NULL || v->type == CB_SCALAR_BOOL) {
        cb_sc_err(c, v, path, "expected one of: %s; got %s", join(c, names, n),
                  cb_sc_describe(c, v));
        return 1;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(v->text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    const char *s = cb_suggest(v->text, names, n);
    if (s)
        cb_sc_err(c, v, path, "invalid value '%.60s' (did you mean '%s'?); allowed: %s", v->text, s,
                  join(c, names, n));
    else
        cb_sc_err(c, v, path, "invalid value '%.60s'; allowed: %s", v->text, join(c, names, n));
    return 1;
}

int cb_sc_int_list(cb_sctx *c, const cb_doc_node *v, const char *path, unsigned flags,
                   cb_cfg_ints *out) {
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of integers, got %s", cb_sc_describe(c, v));
        return 1;
    }
    if (v->n == 0) {
        cb_sc_err(c, v, path, "the list is empty");
        return 1;
    }
    int64_t *a = cb_pool_alloc(c->pool, v->n * sizeof *a);
    if (!a) {
        cb_sc_err(c, v, path, "out of memory");
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < v->n; i++)
        bad += cb_sc_int(c, v->items[i], cb_path_idx(c->pool, path, i), flags, &a[i]);
    out->n = (int)v->n;
    out->v = a;
    return bad ? 1 : 0;
}

int cb_sc_str_list(cb_sctx *c, const cb_doc_node *v, const char *path, cb_cfg_strs *out) {
    if (!v || v->kind != CB_DOC_SEQ) {
        cb_sc_err(c, v, path, "expected a list of strings, got %s", cb_sc_describe(c, v));
        return 1;
    }
    const char **a = cb_pool_alloc(c->pool, (v->n ? v->n : 1) * sizeof *a);
    if (!a) {
        cb_sc_err(c, v, path, "out of memory");
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < v->n; i++)
        bad += cb_sc_str(c, v->items[i], cb_path_idx(c->pool, path, i), &a[i]);
    out->n = (int)v->n;
    out->v = a;
    return bad ? 1 : 0;
}

/* Extra words for keys people carry over from other formats. */
static const char *key_hint(const char *key) {
    if (strcmp(key, "head_dim") == 0)
        return "head_dim is derived as attn_dim / n_heads: remove it (or set attn_dim)";
    if (strcmp(key, "config") == 0)
        return "layer settings go directly in the layer's mapping, not under 'config'";
    if (strcmp(key, "n_layers") == 0) return "repeat a block with a NestedTopology and 'repeat: N'";
    return NULL;
}

int cb_sc_object(cb_sctx *c, const cb_doc_node *v, const char *path, const char *what,
                 const cb_sfield *f, int nf, void *base) {
    int before = cb_sc_nerr(c);
    if (!v || v->kind != CB_DOC_MAP) {
        cb_sc_err(c, v, path, "expected a mapping (%s), got %s", what, cb_sc_describe(c, v));
        return 1;
    }
    const char *names[96];
    int nn = 0;
    for (int i = 0; i < nf && nn < 96; i++) names[nn++] = f[i].name;
    unsigned char seen[96] = {0};
    unsigned char suggested[96] = {0}; /* a misspelt key already pointed here: no "missing" */
    for (size_t k = 0; k < v->n; k++) {
        if (c->errs->n >= CB_DIAGS_MAX) break; /* enough to report; stop working */
        const cb_doc_node *key = v->keys[k], *val = v->vals[k];
        const char *kp = cb_path_key(c->pool, path, key->text);
        int fi = -1;
        for (int i = 0; i < nf; i++)
            if (strcmp(f[i].name, key->text) == 0) {
                fi = i;
                break;
            }
        if (fi < 0) {
            const char *s = cb_suggest(key->text, names, nn);
            const char *h = key_hint(key->text);
            if (h) {
                cb_sc_err(c, key, kp, "unknown key '%.60s' in %s: %s", key->text, what, h);
            } else if (s) {
                cb_sc_err(c, key, kp, "unknown key '%.60s' in %s (did you mean '%s'?)", key->text,
                          what, s);
            } else {
                cb_sc_err(c, key, kp, "unknown key '%.60s' in %s (allowed: %s)", key->text, what,
                          join(c, names, nn));
            }
            if (s)
                for (int i = 0; i < nf && i < 96; i++)
                    if (f[i].name == s) suggested[i] = 1;
            continue;
        }
        const cb_sfield *fd = &f[fi];
        if (fi < 96) seen[fi] = 1;
        if (fd->type == SF_IGNORE) continue;
        if (cb_sc_is_null(val) && (fd->flags & SF_NULLOK)) continue;
        void *dst = (char *)base + fd->off;
        switch (fd->type) {
        case SF_INT:
            cb_sc_int(c, val, kp, fd->flags, (int64_t *)dst);
            break;
        case SF_FLOAT:
            cb_sc_float(c, val, kp, fd->flags, (double *)dst);
            break;
        case SF_BOOL:
            cb_sc_bool(c, val, kp, (bool *)dst);
            break;
        case SF_STR:
            cb_sc_str(c, val, kp, (const char **)dst);
            break;
        case SF_ENUM:
            cb_sc_enum(c, val, kp, fd->enums, fd->n_enums, (int *)dst);
            break;
        case SF_FN:
            fd->fn(c, val, kp, dst);
            break;
        }
    }
    for (int i = 0; i < nf && i < 96; i++) {
        if (!(f[i].flags & SF_REQ)) continue;
        if (!seen[i] && !suggested[i])
            cb_sc_err(c, v, cb_path_key(c->pool, path, f[i].name),
                      "required key '%s' is missing in %s", f[i].name, what);
    }
    return cb_sc_nerr(c) - before;
}

/* ---- registry of tables (documentation checks) ------------------------------------------- */

enum { MAX_SECTIONS = 64, MAX_KEYS = 768 };
static struct {
    const char *section;
    const cb_sfield *f;
    int nf;
} sections[MAX_SECTIONS];
static int n_sections;

void cb_sc_register(const char *section, const cb_sfield *f, int nf) {
    for (int i = 0; i < n_sections; i++)
        if (strcmp(sections[i].section, section) == 0) return;
    if (n_sections < MAX_SECTIONS) {
        sections[n_sections].section = section;
        sections[n_sections].f = f;
        sections[n_sections].nf = nf;
        n_sections++;
    }
}

int cb_manifest_schema_keys(const char ***names) {
    static const char *keys[MAX_KEYS];
    static char store[MAX_KEYS][112];
    cb_schema_register_all();
    int n = 0;
    for (int s = 0; s < n_sections; s++)
        for (int i = 0; i < sections[s].nf && n < MAX_KEYS; i++) {
            snprintf(store[n], sizeof store[n], "%s.%s", sections[s].section,
                     sections[s].f[i].name);
            keys[n] = store[n];
            n++;
        }
    *names = keys;
    return n;
}
