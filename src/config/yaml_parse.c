/* YAML -> node tree with libyaml's event parser. No recursion: containers live on an explicit
 * stack limited to CB_DOC_MAX_DEPTH, so deeply nested input is an error, not a stack overflow.
 * Aliases become independent copies counted against CB_DOC_MAX_NODES (alias bombs stop there). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/config_internal.h"

#define TAG_PREFIX "tag:yaml.org,2002:"

typedef struct anchor {
    char *name;
    cb_doc_node *node;
    int complete;
    int height;
} anchor;

typedef struct frame {
    cb_doc_node *node;
    char *path;
    cb_doc_node *pending_key; /* mappings: key read, value not yet */
    int merge_pending;        /* the pending key is a plain `<<` */
    cb_doc_node **merges;     /* merge sources, in order */
    int n_merges, cap_merges;
    int anchor_idx; /* -1 when the container has no anchor */
    cb_strset keys; /* mappings: keys so far -> index */
} frame;

typedef struct yctx {
    cb_doc *doc;
    cb_diags *errs;
    const char *buf;
    size_t len;
    frame stack[CB_DOC_MAX_DEPTH + 1];
    int sp;
    anchor *anchors;
    int n_anchors, cap_anchors;
    int failed;
    int docs;
    int root_set;
} yctx;

/* Path of the node about to be attached to the top container (key_text: the key just read when
 * the error is about a key). */
static const char *cur_path(yctx *c, const char *key_text) {
    if (c->sp == 0) return "";
    frame *t = &c->stack[c->sp - 1];
    cb_pool *p = &c->doc->pool;
    const char *r;
    if (t->node->kind == CB_DOC_SEQ)
        r = cb_path_idx(p, t->path, t->node->n);
    else if (key_text)
        r = cb_path_key(p, t->path, key_text);
    else if (t->pending_key)
        r = cb_path_key(p, t->path, t->pending_key->text);
    else
        r = t->path;
    return r ? r : "";
}

static void err(yctx *c, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void err(yctx *c, int line, int col, const char *path, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = 1;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cb_diags_add(c->errs, c->doc->file, line, col, path, "%s", msg);
}

static void oom(yctx *c, int line, int col) {
    if (c->doc->n_nodes >= CB_DOC_MAX_NODES)
        err(c, line, col, cur_path(c, NULL),
            "the document expands to more than %d nodes (an alias bomb?)", CB_DOC_MAX_NODES);
    else
        err(c, line, col, cur_path(c, NULL), "out of memory (document too large)");
}

static const char *event_name(const char *tag) {
    return strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0 ? tag + strlen(TAG_PREFIX) : tag;
}

/* Does line `line0` (0-based) of the buffer contain a tab in its indentation or at col0? */
static int tab_near(const yctx *c, size_t line0, size_t col0) {
    size_t i = 0, l = 0;
    while (i < c->len && l < line0) {
        if (c->buf[i] == '\n') l++;
        i++;
    }
    size_t col = 0;
    for (; i < c->len && c->buf[i] != '\n'; i++, col++) {
        if (c->buf[i] == '\t' && (col <= col0 + 1)) return 1;
        if (c->buf[i] != ' ' && c->buf[i] != '\t' && col > col0) break;
    }
    return 0;
}

/* Path of the innermost open container: where a syntax error sits. */
static const char *container_path(yctx *c) {
    return c->sp ? c->stack[c->sp - 1].path : "";
}

static void parser_error(yctx *c, yaml_parser_t *p) {
    if (p->error == YAML_MEMORY_ERROR) {
        err(c, 1, 1, container_path(c), "out of memory while parsing YAML");
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        int line, col;
        cb_offset_to_linecol(c->buf, c->len, p->problem_offset, &line, &col);
        if (p->problem_value != -1)
            err(c, line, col, container_path(c),
                "invalid input: %s (byte 0x%02X); manifests are UTF-8 text",
                p->problem ? p->problem : "unreadable", (unsigned)p->problem_value & 0xffu);
        else
            err(c, line, col, container_path(c), "invalid input: %s",
                p->problem ? p->problem : "unreadable");
        return;
    }
    yaml_mark_t m = p->problem_mark;
    int tab = tab_near(c, m.line, m.column);
    char ctx[256] = "";
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s at line %zu, column %zu)", p->context,
                 p->context_mark.line + 1, p->context_mark.column + 1);
    err(c, (int)m.line + 1, (int)m.column + 1, container_path(c), "YAML syntax error: %s%s%s",
        p->problem ? p->problem : "malformed YAML", ctx,
        tab ? "; tab characters cannot be used for indentation, use spaces" : "");
}

static int find_anchor(yctx *c, const char *name) {
    for (int i = c->n_anchors - 1; i >= 0; i--)
        if (strcmp(c->anchors[i].name, name) == 0) return i;
    return -1;
}

static int add_anchor(yctx *c, const char *name, cb_doc_node *n, int complete) {
    if (c->n_anchors == c->cap_anchors) {
        int cap = c->cap_anchors ? c->cap_anchors * 2 : 16;
        anchor *a = cb_pool_alloc(&c->doc->pool, (size_t)cap * sizeof *a);
        if (!a) return -1;
        if (c->n_anchors) memcpy(a, c->anchors, (size_t)c->n_anchors * sizeof *a);
        c->anchors = a;
        c->cap_anchors = cap;
    }
    anchor *a = &c->anchors[c->n_anchors];
    a->name = cb_pool_strdup(&c->doc->pool, name);
    if (!a->name) return -1;
    a->node = n;
    a->complete = complete;
    a->height = complete ? cb_doc_height(n) : 0;
    return c->n_anchors++;
}

static int add_merge(yctx *c, frame *f, cb_doc_node *src) {
    if (f->n_merges == f->cap_merges) {
        int cap = f->cap_merges ? f->cap_merges * 2 : 4;
        cb_doc_node **m = cb_pool_alloc(&c->doc->pool, (size_t)cap * sizeof *m);
        if (!m) return -1;
        if (f->n_merges) memcpy(m, f->merges, (size_t)f->n_merges * sizeof *m);
        f->merges = m;
        f->cap_merges = cap;
    }
    f->merges[f->n_merges++] = src;
    return 0;
}

/* Attaches a finished (scalar, alias copy) or just-opened (container) node to the top
 * container. plain: the node is a plain scalar (for `<<`). */
static void attach(yctx *c, cb_doc_node *n, int plain) {
    if (c->failed) return;
    if (c->sp == 0) {
        if (c->root_set) {
            err(c, n->line, n->col, "", "unexpected second root node");
            return;
        }
        c->doc->root = n;
        c->root_set = 1;
        return;
    }
    frame *t = &c->stack[c->sp - 1];
    if (t->node->kind == CB_DOC_SEQ) {
        if (cb_doc_seq_push(c->doc, t->node, n)) oom(c, n->line, n->col);
        return;
    }
    if (!t->pending_key) {
        if (n->kind != CB_DOC_SCALAR) {
            err(c, n->line, n->col, t->path,
                "mapping keys must be plain scalars, got a %s (complex keys are not supported)",
                cb_doc_kind_name(n));
            return;
        }
        if (plain && strcmp(n->text, "<<") == 0) {
            t->pending_key = n;
            t->merge_pending = 1;
            return;
        }
        if (t->node->n >= CB_DOC_MAX_KEYS) {
            err(c, n->line, n->col, t->path, "mapping has more than %d keys", CB_DOC_MAX_KEYS);
            return;
        }
        int prev = -1;
        int r = cb_strset_put(&t->keys, n->text, (int)t->node->n, &prev);
        if (r < 0) {
            oom(c, n->line, n->col);
            return;
        }
        if (r == 1) {
            const cb_doc_node *k = t->node->keys[prev];
            err(c, n->line, n->col, cur_path(c, n->text),
                "duplicate key '%s' (first defined at line %d, column %d)", n->text, k->line,
                k->col);
            return;
        }
        t->pending_key = n;
        return;
    }
    if (t->merge_pending) {
        const char *path = cur_path(c, NULL);
        if (n->kind == CB_DOC_MAP) {
            if (add_merge(c, t, n)) oom(c, n->line, n->col);
        } else if (n->kind == CB_DOC_SEQ) {
            /* a sequence being opened: its items are checked when it closes */
            if (add_merge(c, t, n)) oom(c, n->line, n->col);
        } else {
            err(c, n->line, n->col, path,
                "the merge key '<<' needs a mapping or a list of mappings, got %s '%.40s'",
                n->type == CB_SCALAR_INT ? "an integer" : "the scalar", n->text);
        }
        t->pending_key = NULL;
        t->merge_pending = 0;
        return;
    }
    if (cb_doc_map_put(c->doc, t->node, t->pending_key, n)) oom(c, n->line, n->col);
    t->pending_key = NULL;
}

/* Adds merged keys that the mapping does not define itself (earlier sources win). */
static void apply_merges(yctx *c, frame *f) {
    for (int m = 0; m < f->n_merges && !c->failed; m++) {
        cb_doc_node *src = f->merges[m];
        size_t n_src = src->kind == CB_DOC_SEQ ? src->n : 1;
        for (size_t s = 0; s < n_src && !c->failed; s++) {
            cb_doc_node *map = src->kind == CB_DOC_SEQ ? src->items[s] : src;
            if (map->kind != CB_DOC_MAP) {
                err(c, map->line, map->col, f->path, "the merge key '<<' needs mappings, got a %s",
                    cb_doc_kind_name(map));
                return;
            }
            for (size_t k = 0; k < map->n; k++) {
                int r = cb_strset_put(&f->keys, map->keys[k]->text, (int)f->node->n, NULL);
                if (r < 0) {
                    oom(c, map->line, map->col);
                    return;
                }
                if (r == 1) continue; /* defined by the mapping itself or an earlier source */
                if (f->node->n >= CB_DOC_MAX_KEYS) {
                    err(c, map->line, map->col, f->path, "mapping has more than %d keys",
                        CB_DOC_MAX_KEYS);
                    return;
                }
                if (cb_doc_map_put(c->doc, f->node, map->keys[k], map->vals[k])) {
                    oom(c, map->line, map->col);
                    return;
                }
            }
        }
    }
}

static int tag_is(const char *tag, const char *what) {
    return strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0 &&
           strcmp(tag + strlen(TAG_PREFIX), what) == 0;
}

static cb_doc_node *make_scalar(yctx *c, const yaml_event_t *ev) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    cb_doc_node *n = cb_doc_new_node(c->doc, CB_DOC_SCALAR, line, col);
    if (!n) {
        oom(c, line, col);
        return NULL;
    }
    n->text = cb_pool_strndup(&c->doc->pool, text, len);
    if (!n->text) {
        oom(c, line, col);
        return NULL;
    }
    n->len = len;
    if (memchr(text, 0, len)) {
        err(c, line, col, cur_path(c, NULL), "strings must not contain NUL characters");
        return NULL;
    }
    if (!tag && !plain) {
        n->type = CB_SCALAR_STR;
        return n;
    }
    if (tag && (strcmp(tag, "!") == 0 || tag_is(tag, "str"))) {
        n->type = CB_SCALAR_STR;
        return n;
    }
    cb_scalar_type ty;
    int64_t iv;
    double fv;
    bool bv;
    bool ok = cb_scalar_resolve(text, len, &ty, &iv, &fv, &bv);
    n->type = ty;
    n->i = iv;
    n->f = fv;
    n->b = bv;
    n->int_overflow = !ok;
    if (!tag) return n;
    const char *want = NULL;
    if (tag_is(tag, "int"))
        want = ty == CB_SCALAR_INT ? NULL : "an integer";
    else if (tag_is(tag, "float")) {
        if (ty == CB_SCALAR_INT)
            n->type = CB_SCALAR_FLOAT;
        else if (ty != CB_SCALAR_FLOAT)
            want = "a float";
    } else if (tag_is(tag, "bool"))
        want = ty == CB_SCALAR_BOOL ? NULL : "a boolean";
    else if (tag_is(tag, "null"))
        want = ty == CB_SCALAR_NULL ? NULL : "null";
    else {
        err(c, line, col, cur_path(c, NULL), "unsupported tag '%s'", event_name(tag));
        return NULL;
    }
    if (want) {
        err(c, line, col, cur_path(c, NULL), "the tag !!%s needs %s, got '%.40s'", event_name(tag),
            want, n->text);
        return NULL;
    }
    return n;
}

static int container_tag_ok(yctx *c, const char *tag, const char *what, int line, int col) {
    if (!tag || strcmp(tag, "!") == 0 || tag_is(tag, what)) return 1;
    err(c, line, col, cur_path(c, NULL), "unsupported tag '%s'", event_name(tag));
    return 0;
}

static void open_container(yctx *c, const yaml_event_t *ev, cb_doc_kind kind) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *tag = (const char *)(kind == CB_DOC_SEQ ? ev->data.sequence_start.tag
                                                        : ev->data.mapping_start.tag);
    const char *anc = (const char *)(kind == CB_DOC_SEQ ? ev->data.sequence_start.anchor
                                                        : ev->data.mapping_start.anchor);
    if (!container_tag_ok(c, tag, kind == CB_DOC_SEQ ? "seq" : "map", line, col)) return;
    if (c->sp >= CB_DOC_MAX_DEPTH) {
        err(c, line, col, cur_path(c, NULL), "nesting deeper than %d levels", CB_DOC_MAX_DEPTH);
        return;
    }
    cb_doc_node *n = cb_doc_new_node(c->doc, kind, line, col);
    if (!n) {
        oom(c, line, col);
        return;
    }
    const char *path = cur_path(c, NULL);
    attach(c, n, 0);
    if (c->failed) return;
    frame *f = &c->stack[c->sp++];
    memset(f, 0, sizeof *f);
    f->node = n;
    f->path = cb_pool_strdup(&c->doc->pool, path);
    f->anchor_idx = -1;
    if (!f->path) {
        oom(c, line, col);
        return;
    }
    if (anc) {
        f->anchor_idx = add_anchor(c, anc, n, 0);
        if (f->anchor_idx < 0) oom(c, line, col);
    }
}

static void close_container(yctx *c, const yaml_event_t *ev) {
    if (c->sp == 0) return;
    frame *f = &c->stack[c->sp - 1];
    if (f->node->kind == CB_DOC_MAP) {
        if (f->pending_key) { /* cannot happen with a well-formed event stream */
            err(c, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1, f->path,
                "mapping key without a value");
            return;
        }
        apply_merges(c, f);
    }
    cb_strset_free(&f->keys);
    if (f->anchor_idx >= 0) {
        anchor *a = &c->anchors[f->anchor_idx];
        a->complete = 1;
        a->height = cb_doc_height(a->node);
    }
    c->sp--;
}

static void on_alias(yctx *c, const yaml_event_t *ev) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *name = (const char *)ev->data.alias.anchor;
    int i = find_anchor(c, name);
    if (i < 0) {
        err(c, line, col, cur_path(c, NULL), "unknown alias '*%s' (no anchor '&%s' before it)",
            name, name);
        return;
    }
    anchor *a = &c->anchors[i];
    if (!a->complete) {
        err(c, line, col, cur_path(c, NULL),
            "alias '*%s' refers to a node that contains it (recursive alias)", name);
        return;
    }
    if (c->sp + a->height > CB_DOC_MAX_DEPTH) {
        err(c, line, col, cur_path(c, NULL), "nesting deeper than %d levels (through alias '*%s')",
            CB_DOC_MAX_DEPTH, name);
        return;
    }
    cb_doc_node *copy = cb_doc_copy(c->doc, a->node);
    if (!copy) {
        oom(c, line, col);
        return;
    }
    attach(c, copy, 0);
}

int cb_yaml_parse(cb_doc *doc, const char *buf, size_t len, cb_diags *errs) {
    yctx *c = calloc(1, sizeof *c);
    if (!c) return -1;
    c->doc = doc;
    c->errs = errs;
    c->buf = buf;
    c->len = len;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        free(c);
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
    int done = 0;
    while (!done && !c->failed) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            parser_error(c, &p);
            break;
        }
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++c->docs > 1)
                err(c, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1, "",
                    "more than one YAML document in the file (a manifest is one document)");
            break;
        case YAML_ALIAS_EVENT:
            on_alias(c, &ev);
            break;
        case YAML_SCALAR_EVENT: {
            cb_doc_node *n = make_scalar(c, &ev);
            if (n) {
                attach(c, n,
                       ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev.data.scalar.tag);
                if (ev.data.scalar.anchor && !c->failed &&
                    add_anchor(c, (const char *)ev.data.scalar.anchor, n, 1) < 0)
                    oom(c, n->line, n->col);
            }
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
            open_container(c, &ev, CB_DOC_SEQ);
            break;
        case YAML_MAPPING_START_EVENT:
            open_container(c, &ev, CB_DOC_MAP);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            close_container(c, &ev);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    for (int i = 0; i < c->sp; i++) cb_strset_free(&c->stack[i].keys); /* after an error */
    int failed = c->failed;
    free(c);
    return failed ? -1 : 0;
}
