/* Private pieces of the model shared between model.c, rope_tables.c and llama.c. */
#ifndef CARAMBA_MODEL_IMPL_H
#define CARAMBA_MODEL_IMPL_H

#include "caramba/model.h"

/* Renames parameters to Hugging Face Llama names when the tree has the Llama shape. */
void cb_model_apply_llama_names(cb_model *m);
cb_status cb_model_build_ropes(cb_model *m);
void cb_model_free_ropes(cb_model *m);
/* Grows the rope tables (doubling) so positions [0, n) are covered. */
cb_status cb_model_ensure_positions(cb_model *m, int64_t n);

#endif
