/* Minimal long-option parser shared by every subcommand: `--name value`, `--name=value`,
 * boolean `--flag`, positionals, `--help`. Unknown flags are errors naming the flag. */
#ifndef CARAMBA_CLI_ARGS_H
#define CARAMBA_CLI_ARGS_H

typedef struct cb_opt {
    const char *name;   /* without the leading "--" */
    const char *metavar; /* NULL for a boolean flag */
    const char *help;
    const char *value;  /* filled by the parser (last occurrence); "1" for booleans */
    int present;
    const char *values[64]; /* every occurrence, for repeatable options */
    int n_values;
} cb_opt;

typedef struct cb_cmd_spec {
    const char *name;     /* e.g. "logits" */
    const char *synopsis; /* e.g. "--model M --ids IDS.npy --out LOGITS.npy" */
    const char *summary;  /* one line */
    cb_opt *opts;
    int n_opts;
    int min_pos, max_pos; /* positional argument counts */
} cb_cmd_spec;

enum { CB_ARGS_OK = 0, CB_ARGS_ERROR = 1, CB_ARGS_HELP = 2 };

/* Parses argv[1..] (argv[0] is the subcommand name). Prints the error or help itself.
 * positional receives up to spec->max_pos arguments. */
int cb_args_parse(cb_cmd_spec *spec, int argc, char **argv, const char **positional, int *n_pos);
void cb_args_help(const cb_cmd_spec *spec);
cb_opt *cb_args_get(cb_cmd_spec *spec, const char *name);
/* Typed accessors: print "error: --name: ..." and return nonzero on a bad value. */
int cb_args_int(cb_cmd_spec *spec, const char *name, long long def, long long lo, long long hi,
                long long *out);
int cb_args_float(cb_cmd_spec *spec, const char *name, double def, double lo, double hi,
                  double *out);
/* Requires the option; prints an error if it is missing. */
const char *cb_args_require(cb_cmd_spec *spec, const char *name);

#endif
