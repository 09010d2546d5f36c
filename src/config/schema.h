/* Table-driven reading of mappings into C structs: every key is looked up in a field table
 * (unknown keys are errors with a suggestion), every value is type- and range-checked, required
 * keys are enforced. Shared by src/config/schema_*.c and src/compiler/. */
#ifndef CARAMBA_CONFIG_SCHEMA_H
#define CARAMBA_CONFIG_SCHEMA_H

#include <stddef.h>

#include "caramba/manifest.h"
#include "config/config_internal.h"

/* Extra documents (eval-suite files) kept alive as long as the manifest. */
typedef struct cb_doc_link {
    cb_doc *doc;
    struct cb_doc_link *next;
} cb_doc_link;

typedef struct cb_sctx {
    cb_pool *pool; /* the manifest's pool: every string and struct read lands here */
    cb_doc *doc;   /* the source document (for copies made while lowering) */
    cb_diags *errs;
    int errs0;       /* errs->n + errs->dropped when reading started */
    const char *dir; /* directory of the manifest, for relative paths ("" = cwd) */
    const cb_manifest_opts *opts;
    int depth; /* nesting of topologies (bounded by the document depth) */
    cb_doc_link *docs;
} cb_sctx;

/* Errors so far in this load. */
int cb_sc_nerr(const cb_sctx *c);
/* Error at node `at` (its position; the document's first position when NULL). */
void cb_sc_err(cb_sctx *c, const cb_doc_node *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Error about key `key` of the mapping src->node: at the key's value when present, else at
 * the mapping; path is src->path + "." + key (or src->path when key is NULL). */
void cb_sc_err_key(cb_sctx *c, const cb_cfg_src *src, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The value of key in src->node when present and not null. */
const cb_doc_node *cb_sc_given(const cb_cfg_src *src, const char *key);
/* Fills a cb_cfg_src for node at path. */
cb_cfg_src cb_sc_src(cb_sctx *c, const cb_doc_node *n, const char *path);
/* "the string 'abc'", "the integer 5", "a mapping", ... (pool string). */
const char *cb_sc_describe(cb_sctx *c, const cb_doc_node *v);

enum cb_sf_type { SF_INT, SF_FLOAT, SF_BOOL, SF_STR, SF_ENUM, SF_FN, SF_IGNORE };
enum cb_sf_flags {
    SF_REQ = 1u << 0,
    SF_POS = 1u << 1,    /* > 0 */
    SF_NONNEG = 1u << 2, /* >= 0 */
    SF_PROB = 1u << 3,   /* in [0, 1] */
    SF_NULLOK = 1u << 4, /* null means "unset": the default stays */
    SF_DIM = 1u << 5,    /* at most CB_MANIFEST_MAX_DIM */
};

typedef int (*cb_sf_fn)(cb_sctx *c, const cb_doc_node *v, const char *path, void *dst);

typedef struct cb_sfield {
    const char *name;
    int type;
    unsigned flags;
    size_t off;
    const char *const *enums; /* SF_ENUM: value names, stored as int index */
    int n_enums;
    cb_sf_fn fn; /* SF_FN: reads v into (char *)base + off */
} cb_sfield;

#define SF_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Reads mapping v into base. Returns the number of errors found in it (0 = fine). `what`
 * names the object in messages ("an AttentionLayer"). */
int cb_sc_object(cb_sctx *c, const cb_doc_node *v, const char *path, const char *what,
                 const cb_sfield *f, int nf, void *base);

/* Scalar readers: return 0, or 1 after recording an error. */
int cb_sc_int(cb_sctx *c, const cb_doc_node *v, const char *path, unsigned flags, int64_t *out);
int cb_sc_float(cb_sctx *c, const cb_doc_node *v, const char *path, unsigned flags, double *out);
int cb_sc_bool(cb_sctx *c, const cb_doc_node *v, const char *path, bool *out);
int cb_sc_str(cb_sctx *c, const cb_doc_node *v, const char *path, const char **out);
int cb_sc_enum(cb_sctx *c, const cb_doc_node *v, const char *path, const char *const *names, int n,
               int *out);
int cb_sc_int_list(cb_sctx *c, const cb_doc_node *v, const char *path, unsigned flags,
                   cb_cfg_ints *out);
int cb_sc_str_list(cb_sctx *c, const cb_doc_node *v, const char *path, cb_cfg_strs *out);
int cb_sc_is_null(const cb_doc_node *v);

/* Registry of field tables for cb_manifest_schema_keys. */
void cb_sc_register(const char *section, const cb_sfield *f, int nf);

/* schema_model.c / schema_run.c / schema_bench.c */
int cb_read_model(cb_sctx *c, const cb_doc_node *v, const char *path, cb_model_cfg *out);
int cb_read_defaults(cb_sctx *c, const cb_doc_node *v, const char *path, cb_defaults_cfg *out);
void cb_defaults_init(cb_defaults_cfg *d);
int cb_read_groups(cb_sctx *c, const cb_doc_node *v, const char *path, cb_group_cfg **out, int *n);
int cb_read_suite(cb_sctx *c, const cb_doc_node *root, const char *file, cb_eval_suite *out);
int cb_read_bench_list(cb_sctx *c, const cb_doc_node *v, const char *path, cb_bench_cfg **out,
                       int *n);
void cb_schema_register_all(void);

/* Canonical type name for a `type` value under model (aliases like rms_norm, stacked), or NULL
 * when unknown. */
const char *cb_type_canonical(const char *name);
int cb_cfg_kind_from_name(const char *canonical); /* -1 when not a module kind */

#endif
