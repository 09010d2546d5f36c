/* The shared entry of `caramba run` and the legacy flags (`caramba --manifest M --mode train`). */
#ifndef CARAMBA_CLI_RUN_CLI_H
#define CARAMBA_CLI_RUN_CLI_H

#include <stdbool.h>
#include <stdint.h>

typedef struct cb_run_cli_opts {
    const char *group, *resume, *out, *data; /* NULL: defaults */
    bool has_seed;
    int64_t seed;
    bool dry_run, no_progress;
    int64_t stop_after;
} cb_run_cli_opts;

/* Loads the manifest, picks the group and trains it (or reports it with dry_run). Prints
 * `error: ...` on failure. Returns the exit status. */
int cb_cli_run_manifest(const char *path, const cb_run_cli_opts *o);

/* caramba --manifest M [--mode train|sample|chat] [--data D] [--resume R] [--seed S] ...
 * argv[0] is the program name. */
int cb_cli_legacy(int argc, char **argv);
/* True when argv[1] is one of the legacy top-level flags. */
bool cb_cli_is_legacy_flag(const char *arg);

#endif
