/* Lowering and validation passes of the manifest pipeline (internal to the library). */
#ifndef CARAMBA_COMPILER_H
#define CARAMBA_COMPILER_H

#include "caramba/manifest.h"
#include "config/schema.h"

/* Longest string an embedded ${var} reference may produce. */
#define CB_VAR_MAX_TEXT ((size_t)1 << 20)
/* Deepest chain of variables referring to variables. */
#define CB_VAR_MAX_CHAIN 64

/* Removes the top-level `vars` mapping from the document root and substitutes every ${name}
 * reference in the rest of the tree (values only, never keys):
 *  - a string that is exactly one reference becomes a copy of the variable's value, with its
 *    type (int, float, bool, null, list, mapping), positioned at the reference;
 *  - references embedded in a longer string are rendered as text: integers in decimal, floats
 *    the way YAML writes them back (cb_format_float: 500000.0, 1.0e-05), true/false, null,
 *    lists/mappings in flow style ([1, 2], {a: 1}); the result is a string;
 *  - variables may refer to variables (resolved once, memoised); a name is [A-Za-z0-9_]+;
 *    anything else (`$x`, `${ x }`) is literal text;
 *  - unknown variables and cycles are errors naming the key path; resolution is lazy (as in
 *    spec-core §1.2), so a variable nobody references is not checked; without a top-level `vars`
 *    section nothing is substituted.
 * Returns 0, or nonzero after recording one error. */
int cb_lower_vars(cb_doc *doc, cb_diags *errs);

/* Rewrites `type` aliases (rms_norm, stacked, transformer, ...) to canonical names inside
 * `model` only (model.type and every node of model.topology). */
void cb_lower_type_aliases(cb_doc_node *root);

/* Expands every `repeat` of src (post-order: children first; the whole child list is repeated as
 * a unit, [A, B] x 2 -> A, B, A, B) into dst, assigning lowered paths under `path`. Every copy is
 * independent. Fails (one error) when the result would exceed CB_MANIFEST_MAX_MODULES modules. */
int cb_lower_repeats(cb_sctx *c, const cb_cfg_node *src, cb_cfg_node *dst, const char *path);

/* Width flow, leading dims, parameter counts and size limits over the lowered model; embedder,
 * head and tied-embedding consistency. Returns the number of errors recorded. */
int cb_validate_model(cb_sctx *c, cb_model_cfg *m);

#endif
