/* Shared helpers for commands that take --model and --ids. */
#ifndef CARAMBA_CLI_MODEL_ARGS_H
#define CARAMBA_CLI_MODEL_ARGS_H

#include "caramba/model.h"
#include "caramba/npy.h"

/* Opens the model named by --model (HF directory or hf://org/name) on --device (default cpu).
 * Prints the error and returns 1 on failure. */
int cb_cli_open_model(const char *model, const char *device, cb_model **out);
/* Opens an ids .npy: int32 or int64, shape (B, T) or (T,) (taken as B = 1). Ids are checked
 * against the vocabulary. Prints the error and returns 1 on failure. */
int cb_cli_open_ids(const char *path, const cb_model *m, cb_npy **npy, cb_tensor *ids);

/* The shared front of commands shaped `--model M --ids IDS.npy --out FILE [--device DEV]`:
 * parses argv against spec (which must define those four options), opens the model and the ids.
 * Returns 0 when everything is open, 1 on an error (printed), 2 when --help was printed. */
struct cb_cmd_spec;
int cb_cli_model_ids_out(struct cb_cmd_spec *spec, int argc, char **argv, cb_model **m,
                         cb_npy **npy, cb_tensor *ids, const char **out);

#endif
