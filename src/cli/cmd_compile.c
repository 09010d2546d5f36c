/* caramba compile MANIFEST [--print-plan]: parse, lower and validate a manifest; print the plan. */
#include <stdio.h>

#include "caramba/manifest.h"
#include "caramba/plan.h"
#include "cli/args.h"
#include "cli/commands.h"

/* Prints every collected manifest error as "error: FILE:LINE:COL: key.path: message". */
void cb_cli_print_manifest_errors(const cb_diags *errs);
void cb_cli_print_manifest_errors(const cb_diags *errs) {
    for (int i = 0; i < errs->n; i++) fprintf(stderr, "error: %s\n", errs->msg[i]);
    if (errs->dropped)
        fprintf(stderr, "error: ... and %d more error%s\n", errs->dropped,
                errs->dropped == 1 ? "" : "s");
    if (errs->n == 0 && errs->dropped == 0) fprintf(stderr, "error: invalid manifest\n");
}

int cb_cmd_compile(int argc, char **argv) {
    cb_opt opts[] = {
        {.name = "print-plan", .help = "print the lowered graph, parameters and KV-cache bytes"},
        {.name = "batch",
         .metavar = "N",
         .help = "batch size for the shapes in the plan (default B)"},
        {.name = "seq",
         .metavar = "T",
         .help = "sequence length for the shapes in the plan (default T)"},
    };
    cb_cmd_spec spec = {
        .name = "compile",
        .synopsis = "MANIFEST [--print-plan] [--batch N] [--seq T]",
        .summary = "Parse, lower (vars, type aliases, repeat) and validate a manifest (.yml, .yaml "
                   "or .json).\nPrints 'compiled: NAME' and exits 0; on errors prints "
                   "'error: FILE:LINE:COL: key.path: message' and exits 1.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
        .min_pos = 1,
        .max_pos = 1,
    };
    const char *pos[1];
    int n_pos;
    int rc = cb_args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc == CB_ARGS_HELP) return 0;
    if (rc != CB_ARGS_OK) return 1;
    long long batch, seq;
    if (cb_args_int(&spec, "batch", 0, 1, 1LL << 30, &batch)) return 1;
    if (cb_args_int(&spec, "seq", 0, 1, 1LL << 30, &seq)) return 1;
    cb_diags errs = {0};
    cb_manifest *m = NULL;
    if (cb_manifest_load_ex(pos[0], NULL, &m, &errs) != CB_OK) {
        cb_cli_print_manifest_errors(&errs);
        cb_diags_free(&errs);
        return 1;
    }
    if (cb_args_get(&spec, "print-plan")->present) {
        cb_plan_opts po = {.batch = batch, .seq = seq};
        cb_plan_print(stdout, m, &po);
        printf("\n");
    }
    printf("compiled: %s\n", m->name);
    cb_manifest_free(m);
    return 0;
}
