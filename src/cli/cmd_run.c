/* caramba run MANIFEST [--group NAME]: load (parse, lower, validate) a manifest and run one group.
 *
 * The boundary for the pipeline is cb_run_validated(): it receives the validated manifest and the
 * selected group. For now it reports what would run (runs in order with their modes, phases and
 * verify blocks; the group's benchmarks); training, verification and benchmarks plug in there. */
#include <stdio.h>
#include <string.h>

#include "caramba/manifest.h"
#include "cli/args.h"
#include "cli/commands.h"

void cb_cli_print_manifest_errors(const cb_diags *errs); /* cmd_compile.c */
int cb_run_validated(const cb_manifest *m, const cb_group_cfg *g);

static const char *const MODE_NAMES[] = {"train", "sample", "chat"};
static const char *const PHASE_NAMES[] = {"standard", "blockwise", "global"};
static const char *const VERIFY_NAMES[] = {"none", "compare", "fidelity", "eval", "kvcache"};
static const char *const BENCH_NAMES[] = {"perplexity", "latency",    "memory",
                                          "accuracy",   "generation", "suite"};

static void describe_run(const cb_run_cfg *r, int i, int n) {
    printf("  run %d/%d '%s': mode %s, %lld steps, seed %lld", i + 1, n, r->id,
           MODE_NAMES[r->mode], (long long)r->steps, (long long)r->seed);
    if (r->has_train) {
        const cb_train_cfg *t = &r->train;
        printf(", phase %s, batch %lld x block %lld, lr %g, device %s", PHASE_NAMES[t->phase],
               (long long)t->batch_size, (long long)t->block_size, t->lr, t->device);
        if (t->teacher_ckpt) printf(", teacher %s", t->teacher_ckpt);
    }
    if (r->verify.type != CB_VERIFY_NONE) printf("; verify %s", VERIFY_NAMES[r->verify.type]);
    printf("\n");
}

/* Runs group g of the validated manifest m. Returns the exit status. */
int cb_run_validated(const cb_manifest *m, const cb_group_cfg *g) {
    printf("manifest: %s (%s)\n", m->name, m->file);
    printf("model: %lld parameters, %d attention layer%s\n", (long long)m->model.n_params,
           m->model.n_attention, m->model.n_attention == 1 ? "" : "s");
    printf("group '%s'%s%s: %d run%s, %d benchmark%s\n", g->name, g->data[0] ? ", data " : "",
           g->data, g->n_runs, g->n_runs == 1 ? "" : "s", g->n_benchmarks,
           g->n_benchmarks == 1 ? "" : "s");
    for (int i = 0; i < g->n_runs; i++) describe_run(&g->runs[i], i, g->n_runs);
    for (int i = 0; i < g->n_benchmarks; i++) {
        const cb_bench_cfg *b = &g->benchmarks[i];
        printf("  benchmark '%s': %s, models", b->id, BENCH_NAMES[b->type]);
        for (int k = 0; k < b->models.n; k++) printf("%s%s", k ? ", " : " ", b->models.v[k]);
        printf(", %lld repeat%s\n", (long long)b->repeats, b->repeats == 1 ? "" : "s");
    }
    printf("nothing was run: this build validates and plans; training, verification and "
           "benchmarks are not wired in yet\n");
    return 0;
}

int cb_cmd_run(int argc, char **argv) {
    cb_opt opts[] = {
        {.name = "group", .metavar = "NAME", .help = "the group to run (default: the first)"},
    };
    cb_cmd_spec spec = {
        .name = "run",
        .synopsis = "MANIFEST [--group NAME]",
        .summary = "Load (parse, lower, validate) a manifest and run one of its groups: its runs in "
                   "order, then its benchmarks.\nFor now it reports what it would run.",
        .opts = opts,
        .n_opts = 1,
        .min_pos = 1,
        .max_pos = 1,
    };
    const char *pos[1];
    int n_pos;
    int rc = cb_args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc == CB_ARGS_HELP) return 0;
    if (rc != CB_ARGS_OK) return 1;
    cb_diags errs = {0};
    cb_manifest *m = NULL;
    if (cb_manifest_load_ex(pos[0], NULL, &m, &errs) != CB_OK) {
        cb_cli_print_manifest_errors(&errs);
        cb_diags_free(&errs);
        return 1;
    }
    const char *gname = cb_args_get(&spec, "group")->value;
    if (m->n_groups == 0) {
        fprintf(stderr, "error: %s: the manifest has no groups to run\n", pos[0]);
        cb_manifest_free(m);
        return 1;
    }
    const cb_group_cfg *g = cb_manifest_group(m, gname);
    if (!g) {
        fprintf(stderr, "error: %s: no group '%s'; groups:", pos[0], gname);
        for (int i = 0; i < m->n_groups; i++)
            fprintf(stderr, "%s %s", i ? "," : "", m->groups[i].name);
        fprintf(stderr, "\n");
        cb_manifest_free(m);
        return 1;
    }
    rc = cb_run_validated(m, g);
    cb_manifest_free(m);
    return rc;
}
