/* Internals shared by src/config and src/compiler: the memory pool that owns a document's and a
 * manifest's nodes and strings, node construction, and key-path helpers. */
#ifndef CARAMBA_CONFIG_INTERNAL_H
#define CARAMBA_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "caramba/node.h"

/* Keys in one mapping (duplicate detection is a linear scan; real manifests have a few dozen). */
#define CB_DOC_MAX_KEYS 4096

/* Bump allocator: many small objects freed at once. Refuses to grow beyond CB_POOL_MAX_BYTES so
 * hostile input cannot exhaust memory. */
#define CB_POOL_MAX_BYTES ((size_t)512 << 20)

typedef struct cb_pool_block cb_pool_block;
typedef struct cb_pool {
    cb_pool_block *head;
    size_t total; /* bytes held */
} cb_pool;

void cb_pool_init(cb_pool *p);
void cb_pool_free(cb_pool *p);
/* Zeroed memory aligned to 16 bytes; NULL when the pool limit is reached. */
void *cb_pool_alloc(cb_pool *p, size_t n);
char *cb_pool_strndup(cb_pool *p, const char *s, size_t n);
char *cb_pool_strdup(cb_pool *p, const char *s);
char *cb_pool_printf(cb_pool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *cb_pool_vprintf(cb_pool *p, const char *fmt, va_list ap);

struct cb_doc {
    cb_pool pool;
    cb_doc_node *root;
    char *file;
    size_t n_nodes;    /* created so far, capped at CB_DOC_MAX_NODES */
    int had_vars;      /* a top-level `vars` mapping was substituted (and removed) */
    cb_diags own_errs; /* used when the caller passes no cb_diags */
};

/* Node construction inside a document. NULL when the node cap or pool limit is hit (the caller
 * reports "too many nodes"). */
cb_doc_node *cb_doc_new_node(cb_doc *doc, cb_doc_kind kind, int line, int col);
cb_doc_node *cb_doc_new_str(cb_doc *doc, const char *s, size_t len, int line, int col);
/* Appends to a sequence / a key-value pair to a mapping. Returns 0, or -1 when out of memory. */
int cb_doc_seq_push(cb_doc *doc, cb_doc_node *seq, cb_doc_node *item);
int cb_doc_map_put(cb_doc *doc, cb_doc_node *map, cb_doc_node *key, cb_doc_node *val);
/* Deep copy (depth is bounded by the document's depth limit). NULL when the node cap is hit. */
cb_doc_node *cb_doc_copy(cb_doc *doc, const cb_doc_node *src);
/* Height of a tree (a scalar is 1). */
int cb_doc_height(const cb_doc_node *n);

/* Key paths: "a.b", "a.b[3]". parent may be "" (the root). */
char *cb_path_key(cb_pool *p, const char *parent, const char *key);
char *cb_path_idx(cb_pool *p, const char *parent, size_t i);

/* Open-addressing set of strings with an int value each (keys are borrowed, not copied): keeps
 * duplicate-key detection, merges and variable lookup linear on hostile input. */
typedef struct cb_strset {
    size_t cap, n;
    const char **keys;
    int *vals;
} cb_strset;
/* Inserts key -> val. Returns 0 when added, 1 when present (*old = its value), -1 out of memory. */
int cb_strset_put(cb_strset *s, const char *key, int val, int *old);
/* Value of key, or -1. */
int cb_strset_get(const cb_strset *s, const char *key);
void cb_strset_free(cb_strset *s);

/* Levenshtein distance (capped at 255), for "did you mean" suggestions. */
int cb_edit_distance(const char *a, const char *b);
/* Best candidate within a reasonable distance of s, or NULL. */
const char *cb_suggest(const char *s, const char *const *cands, int n);

/* Parsers behind cb_doc_parse. Each fills doc->root or records one error and returns nonzero. */
int cb_yaml_parse(cb_doc *doc, const char *buf, size_t len, cb_diags *errs);
int cb_json_parse(cb_doc *doc, const char *buf, size_t len, cb_diags *errs);

/* Line/column (1-based) of byte offset off in buf; columns count UTF-8 characters. */
void cb_offset_to_linecol(const char *buf, size_t len, size_t off, int *line, int *col);
/* Offset of the first invalid UTF-8 sequence, or len when the buffer is valid UTF-8. */
size_t cb_utf8_check(const char *buf, size_t len);

#endif
