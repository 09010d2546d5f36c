/* caramba run MANIFEST [--group NAME] [--resume PATH] [--out DIR] [--data FILE] [--seed S]
 *                      [--dry-run] [--no-progress] [--stop-after N]
 *
 * Loads (parses, lowers, validates) a manifest and runs one group: its training runs in order
 * (src/trainer/group.c: checkpoints, metrics, resume). --dry-run only reports what would run
 * (cb_run_validated). Verification and benchmarks are reported, not run, by this build. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "caramba/manifest.h"
#include "caramba/trainer.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/run_cli.h"

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
    printf("dry run: nothing was trained\n");
    return 0;
}

/* Ctrl-C: finish the current step, write a checkpoint, exit 130. A second Ctrl-C kills. */
static void on_sigint(int sig) {
    (void)sig;
    cb_train_request_stop();
    signal(SIGINT, SIG_DFL);
}

int cb_cli_run_manifest(const char *path, const cb_run_cli_opts *ro) {
    cb_diags errs = {0};
    cb_manifest *m = NULL;
    if (cb_manifest_load_ex(path, NULL, &m, &errs) != CB_OK) {
        cb_cli_print_manifest_errors(&errs);
        cb_diags_free(&errs);
        return 1;
    }
    if (m->n_groups == 0) {
        fprintf(stderr, "error: %s: the manifest has no groups to run\n", path);
        cb_manifest_free(m);
        return 1;
    }
    const cb_group_cfg *g = cb_manifest_group(m, ro->group);
    if (!g) {
        fprintf(stderr, "error: %s: no group '%s'; groups:", path, ro->group);
        for (int i = 0; i < m->n_groups; i++)
            fprintf(stderr, "%s %s", i ? "," : "", m->groups[i].name);
        fprintf(stderr, "\n");
        cb_manifest_free(m);
        return 1;
    }
    int rc;
    if (ro->dry_run) {
        rc = cb_run_validated(m, g);
    } else {
        cb_group_opts go = {
            .out_dir = ro->out,
            .resume = ro->resume,
            .data = ro->data,
            .has_seed = ro->has_seed,
            .seed = ro->seed,
            .progress = ro->no_progress ? 0 : -1,
            .stop_after = ro->stop_after,
            .out = stdout,
        };
        rc = 0;
        cb_train_clear_stop();
        void (*prev)(int) = signal(SIGINT, on_sigint);
        if (cb_train_group(m, g, &go) != CB_OK) {
            fflush(stdout);
            fprintf(stderr, "error: %s\n", cb_last_error());
            rc = cb_train_stop_requested() ? 130 : 1;
        }
        signal(SIGINT, prev == SIG_ERR ? SIG_DFL : prev);
    }
    cb_manifest_free(m);
    return rc;
}

int cb_cmd_run(int argc, char **argv) {
    cb_opt opts[] = {
        {.name = "group", .metavar = "NAME", .help = "the group to run (default: the first)"},
        {.name = "resume", .metavar = "PATH",
         .help = "continue from a checkpoint directory (or a run directory: its 'latest'); the "
                 "checkpoint's run id picks the run, earlier runs are skipped"},
        {.name = "out", .metavar = "DIR", .help = "output directory (default: runs/<group>)"},
        {.name = "data", .metavar = "FILE", .help = "token file instead of the group's data"},
        {.name = "seed", .metavar = "S", .help = "seed for every run instead of each run's seed"},
        {.name = "dry-run", .help = "validate and report what would run; train nothing"},
        {.name = "no-progress", .help = "no progress bar (final lines only)"},
        {.name = "stop-after", .metavar = "N",
         .help = "stop each run after step N with a checkpoint (resume it later)"},
    };
    cb_cmd_spec spec = {
        .name = "run",
        .synopsis = "MANIFEST [--group NAME] [--resume PATH] [--out DIR] [--data FILE] [--seed S] "
                    "[--dry-run]",
        .summary = "Load (parse, lower, validate) a manifest and run one of its groups: its training "
                   "runs in order, with checkpoints (<out>/<run>/final), JSONL metrics "
                   "(<out>/<run>/metrics.jsonl) and bit-exact resume. See docs/training.md.",
        .opts = opts,
        .n_opts = sizeof opts / sizeof opts[0],
        .min_pos = 1,
        .max_pos = 1,
    };
    const char *pos[1];
    int n_pos;
    int rc = cb_args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc == CB_ARGS_HELP) return 0;
    if (rc != CB_ARGS_OK) return 1;
    cb_run_cli_opts ro = {
        .group = cb_args_get(&spec, "group")->value,
        .resume = cb_args_get(&spec, "resume")->value,
        .out = cb_args_get(&spec, "out")->value,
        .data = cb_args_get(&spec, "data")->value,
        .dry_run = cb_args_get(&spec, "dry-run")->present,
        .no_progress = cb_args_get(&spec, "no-progress")->present,
    };
    long long v;
    if (cb_args_get(&spec, "seed")->present) {
        if (cb_args_int(&spec, "seed", 0, -(1LL << 62), 1LL << 62, &v)) return 1;
        ro.has_seed = true;
        ro.seed = v;
    }
    if (cb_args_int(&spec, "stop-after", 0, 0, 1LL << 50, &v)) return 1;
    ro.stop_after = v;
    return cb_cli_run_manifest(pos[0], &ro);
}
