/* The manifest pipeline: parse -> lower vars and type aliases -> typed schema -> expand repeats
 * -> validate. Owns every allocation of a loaded manifest. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "compiler/compiler.h"
#include "config/schema.h"

typedef struct mpriv {
    cb_pool pool;
    cb_doc *doc;
    cb_doc_link *docs;
} mpriv;

static int fn_defaults(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    return cb_read_defaults(c, v, path, dst);
}
static int fn_model(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    return cb_read_model(c, v, path, dst);
}
static int fn_groups(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst) {
    cb_manifest *m = (cb_manifest *)((char *)dst - offsetof(cb_manifest, groups));
    return cb_read_groups(c, v, path, &m->groups, &m->n_groups);
}

#define MOFF(x) offsetof(cb_manifest, x)
static const cb_sfield TOP_FIELDS[] = {
    {"version", SF_INT, SF_REQ | SF_POS, MOFF(version), NULL, 0, NULL},
    {"name", SF_STR, SF_NULLOK, MOFF(name), NULL, 0, NULL},
    {"notes", SF_STR, SF_NULLOK, MOFF(notes), NULL, 0, NULL},
    {"vars", SF_IGNORE, 0, 0, NULL, 0, NULL}, /* consumed by lowering */
    {"defaults", SF_FN, SF_NULLOK, MOFF(defaults), NULL, 0, fn_defaults},
    {"model", SF_FN, SF_REQ, MOFF(model), NULL, 0, fn_model},
    {"groups", SF_FN, SF_NULLOK, MOFF(groups), NULL, 0, fn_groups},
};

void cb_schema_register_model(void);
void cb_schema_register_run(void);
void cb_schema_register_bench(void);

void cb_schema_register_all(void) {
    cb_sc_register("manifest", TOP_FIELDS, SF_COUNT(TOP_FIELDS));
    cb_schema_register_model();
    cb_schema_register_run();
    cb_schema_register_bench();
}

static void free_priv(mpriv *p) {
    if (!p) return;
    for (cb_doc_link *l = p->docs; l; l = l->next) cb_doc_free(l->doc);
    cb_doc_free(p->doc);
    cb_pool_free(&p->pool);
    free(p);
}

void cb_manifest_free(cb_manifest *m) {
    if (!m) return;
    free_priv(m->priv);
    free(m);
}

static const char *stem(cb_pool *pool, const char *path) {
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    const char *dot = strrchr(s, '.');
    return cb_pool_strndup(pool, s, dot && dot != s ? (size_t)(dot - s) : strlen(s));
}

static const char *dir_of(cb_pool *pool, const char *path) {
    const char *s = strrchr(path, '/');
    if (!s) return "";
    if (s == path) return "/";
    return cb_pool_strndup(pool, path, (size_t)(s - path));
}

cb_status cb_manifest_parse(const char *name, const char *buf, size_t len,
                            const cb_manifest_opts *opts, cb_manifest **out, cb_diags *errs) {
    *out = NULL;
    cb_diags local = {0};
    cb_diags *e = errs ? errs : &local;
    int errs0 = e->n + e->dropped;
    cb_manifest *m = calloc(1, sizeof *m);
    mpriv *p = calloc(1, sizeof *p);
    if (!m || !p) {
        free(m);
        free(p);
        return cb_fail(CB_ERR_NOMEM, "%s: out of memory", name);
    }
    cb_pool_init(&p->pool);
    m->priv = p;
    cb_sctx c = {.pool = &p->pool, .errs = e, .errs0 = errs0, .opts = opts};
    cb_status st = cb_doc_parse(name, buf, len, &p->doc, e);
    if (st != CB_OK) goto fail;
    c.doc = p->doc;
    c.dir = dir_of(&p->pool, name);
    if (!c.dir) c.dir = "";
    cb_doc_node *root = p->doc->root;
    if (!root || (root->kind == CB_DOC_SCALAR && root->type == CB_SCALAR_NULL)) {
        cb_diags_add(e, p->doc->file, root ? root->line : 1, root ? root->col : 1, "",
                     "the manifest is empty");
        goto fail;
    }
    if (root->kind != CB_DOC_MAP) {
        cb_sc_err(&c, root, "",
                  "a manifest is a mapping of sections (version, name, model, groups, ...), got %s",
                  cb_sc_describe(&c, root));
        goto fail;
    }
    if (cb_lower_vars(p->doc, e)) goto fail;
    cb_lower_type_aliases(root);
    cb_defaults_init(&m->defaults);
    m->notes = "";
    if (cb_sc_object(&c, root, "", "the manifest", TOP_FIELDS, SF_COUNT(TOP_FIELDS), m)) goto fail;
    if (m->version != 1) {
        cb_cfg_src s = cb_sc_src(&c, root, "");
        cb_sc_err_key(&c, &s, "version",
                      "unsupported manifest version %lld (this caramba reads version 1)",
                      (long long)m->version);
        goto fail;
    }
    cb_cfg_node lowered;
    if (cb_lower_repeats(&c, &m->model.topology, &lowered, "topology")) goto fail;
    m->model.topology = lowered;
    if (cb_validate_model(&c, &m->model)) goto fail;
    if (cb_sc_nerr(&c)) goto fail;
    m->file = cb_pool_strdup(&p->pool, name);
    if (!m->name) m->name = stem(&p->pool, name);
    if (!m->file || !m->name) {
        cb_diags_add(e, name, 1, 1, "", "out of memory");
        goto fail;
    }
    p->docs = c.docs;
    cb_diags_free(&local);
    *out = m;
    return CB_OK;
fail:
    p->docs = c.docs;
    if (e->n + e->dropped == errs0) cb_diags_add(e, name, 1, 1, "", "invalid manifest");
    st = cb_fail(CB_ERR_FORMAT, "%s", e->n > errs0 ? e->msg[errs0] : e->msg[0]);
    cb_manifest_free(m);
    cb_diags_free(&local);
    return st;
}

cb_status cb_manifest_load_ex(const char *path, const cb_manifest_opts *opts, cb_manifest **out,
                              cb_diags *errs) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    cb_status st = cb_read_file(path, CB_DOC_MAX_BYTES, &buf, &len);
    if (st != CB_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", cb_last_error());
        const char *t = msg;
        size_t lp = strlen(path);
        if (strncmp(t, path, lp) == 0 && t[lp] == ':') t += lp + 1;
        while (*t == ' ') t++;
        cb_diags local = {0};
        cb_diags_add(errs ? errs : &local, path, 1, 1, "", "%s", t);
        cb_diags_free(&local);
        return cb_fail(st, "%s:1:1: (root): %s", path, t);
    }
    st = cb_manifest_parse(path, buf, len, opts, out, errs);
    free(buf);
    return st;
}

cb_status cb_manifest_load(const char *path, cb_manifest **out) {
    return cb_manifest_load_ex(path, NULL, out, NULL);
}

const cb_group_cfg *cb_manifest_group(const cb_manifest *m, const char *name) {
    if (!m || m->n_groups == 0) return NULL;
    if (!name) return &m->groups[0];
    for (int i = 0; i < m->n_groups; i++)
        if (strcmp(m->groups[i].name, name) == 0) return &m->groups[i];
    return NULL;
}

void cb_cfg_walk(const cb_cfg_node *root, void (*fn)(const cb_cfg_node *m, void *ud), void *ud) {
    fn(root, ud);
    if (cb_cfg_is_topology(root->kind))
        for (int i = 0; i < root->n_layers; i++) cb_cfg_walk(&root->layers[i], fn, ud);
}
