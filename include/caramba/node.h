/* Parsed manifest documents: a tree of mapping / sequence / scalar nodes that remembers where
 * every node was written (file, 1-based line and column).
 *
 * YAML is read with libyaml, JSON with cJSON; both give the same tree. Plain YAML scalars are
 * typed by the YAML 1.2 core schema:
 *   null, Null, NULL, ~, (empty)           -> null
 *   true/True/TRUE, false/False/FALSE      -> bool      (yes/no/on/off are strings)
 *   [-+]?[0-9]+, 0o[0-7]+, 0x[0-9a-fA-F]+  -> int       (int64; out of range is flagged)
 *   [-+]?(.[0-9]+|[0-9]+(.[0-9]*)?)([eE][-+]?[0-9]+)?, [-+]?.inf, .nan -> float  (so 1e-5 is a
 *                                                                        float)
 * Quoted and block scalars are always strings. The tags !!str !!int !!float !!bool !!null force a
 * type. Anchors and aliases are expanded into independent copies (capped, so an alias bomb is an
 * error, not an allocation storm); `<<` merge keys are supported; duplicate keys are errors.
 *
 * Limits (errors, never crashes): files over CB_DOC_MAX_BYTES, nesting deeper than
 * CB_DOC_MAX_DEPTH, more than CB_DOC_MAX_NODES nodes after alias expansion.
 *
 * Every error message has the form `FILE:LINE:COL: key.path: message`. */
#ifndef CARAMBA_NODE_H
#define CARAMBA_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CB_DOC_MAX_BYTES (16u << 20)
#define CB_DOC_MAX_DEPTH 128
#define CB_DOC_MAX_NODES 1000000

typedef enum cb_doc_kind { CB_DOC_SCALAR = 0, CB_DOC_SEQ, CB_DOC_MAP } cb_doc_kind;

typedef enum cb_scalar_type {
    CB_SCALAR_NULL = 0,
    CB_SCALAR_BOOL,
    CB_SCALAR_INT,
    CB_SCALAR_FLOAT,
    CB_SCALAR_STR,
} cb_scalar_type;

typedef struct cb_doc_node cb_doc_node;
struct cb_doc_node {
    cb_doc_kind kind;
    cb_scalar_type type; /* scalars only */
    bool int_overflow;   /* an integer literal that does not fit int64 (i is saturated) */
    const char *file;    /* shared, owned by the document */
    int line, col;       /* 1-based */
    /* scalars: the text as written (strings: the decoded value), NUL-terminated */
    char *text;
    size_t len;
    int64_t i; /* CB_SCALAR_INT */
    double f;  /* CB_SCALAR_FLOAT (also set for ints) */
    bool b;    /* CB_SCALAR_BOOL */
    /* sequences: items[0..n); mappings: keys[0..n) (string scalars) and vals[0..n) */
    size_t n, cap;
    cb_doc_node **items;
    cb_doc_node **keys;
    cb_doc_node **vals;
};

/* Collected errors: each message is "FILE:LINE:COL: key.path: message". */
#define CB_DIAGS_MAX 16
typedef struct cb_diags {
    int n;       /* messages recorded */
    int dropped; /* further errors that were not recorded */
    char *msg[CB_DIAGS_MAX];
} cb_diags;

void cb_diags_add(cb_diags *d, const char *file, int line, int col, const char *path,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void cb_diags_free(cb_diags *d);

typedef struct cb_doc cb_doc;

/* Parses a buffer; `name` is the file name used in messages and its suffix (.yml, .yaml, .json,
 * case-insensitive) selects the parser. On failure returns an error status, *out is NULL and the
 * error is in `errs` (if non-NULL) and in cb_last_error(). */
cb_status cb_doc_parse(const char *name, const char *buf, size_t len, cb_doc **out, cb_diags *errs);
/* Reads and parses a file (size-checked first). */
cb_status cb_doc_load(const char *path, cb_doc **out, cb_diags *errs);
cb_doc_node *cb_doc_root(const cb_doc *doc);
const char *cb_doc_file(const cb_doc *doc);
void cb_doc_free(cb_doc *doc);

/* Mapping lookup by key (NULL when absent or when map is not a mapping). */
cb_doc_node *cb_doc_get(const cb_doc_node *map, const char *key);
/* Index of key in map, or -1. */
int cb_doc_find(const cb_doc_node *map, const char *key);
/* "mapping", "sequence", "string", "integer", "float", "boolean", "null". */
const char *cb_doc_kind_name(const cb_doc_node *n);

/* The YAML 1.2 core-schema resolution of a plain scalar's text (exposed for tests). Sets *type
 * and the numeric value; returns false only for an integer literal out of int64 range. */
bool cb_scalar_resolve(const char *text, size_t len, cb_scalar_type *type, int64_t *i, double *f,
                       bool *b);
/* Renders a float the way YAML writes it back: shortest text that reads back to the same double,
 * always with a '.' or an exponent ("500000.0", "1.0e-05", "0.0001", ".inf", "-.inf", ".nan").
 * buf needs 32 bytes. */
const char *cb_format_float(double v, char buf[32]);

#ifdef __cplusplus
}
#endif
#endif
