/* The runs of one manifest group, in order (what `caramba run` does).
 *
 *   preflight (every run, before any step): phase supported, device present, dtype supported on
 *     it, data readable and inside the vocabulary, splits non-empty, init_from / teacher / resume
 *     checkpoints present and belonging to the right run
 *   per run: RuntimePlan -> threads -> model (run seed) -> starting weights -> data split ->
 *     logs -> cb_train_run -> summary
 *
 * Nothing carries from one run to the next except checkpoints on disk: every run builds its own
 * model, optimizer, schedule, batch size and plan from its own config (the reference shares the
 * first run's, spec-train [B4]).
 *
 * Output layout under <out> (default runs/<group>):
 *   <run>/metrics.jsonl  <run>/step_NNNNNNNN/  <run>/final/  <run>/latest
 *   tb/<run>/events.out.tfevents.*   plans/<key>.json */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caramba/device.h"
#include "caramba/fileio.h"
#include "caramba/hf.h"
#include "caramba/runtime_plan.h"
#include "caramba/threads.h"
#include "caramba/trainer.h"

static const char *const PHASES[] = {"standard", "blockwise", "global"};

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

cb_status cb_unigram_entropy(const cb_token_file *f, int64_t begin, int64_t end, double *nats) {
    *nats = NAN;
    if (begin < 0 || end > f->n || end <= begin)
        return cb_fail(CB_ERR_ARG, "unigram entropy: empty token range");
    int64_t maxid = 0;
    for (int64_t i = begin; i < end; i++) {
        int64_t t = cb_tokens_at(f, i);
        if (t < 0) return cb_fail(CB_ERR_ARG, "%s: negative token id at %lld", f->path, (long long)i);
        if (t > maxid) maxid = t;
    }
    if (maxid >= ((int64_t)1 << 31)) return cb_fail(CB_ERR_ARG, "%s: token id %lld too large", f->path, (long long)maxid);
    int64_t *cnt = calloc((size_t)maxid + 1, sizeof *cnt);
    if (!cnt) return cb_fail(CB_ERR_NOMEM, "unigram entropy: %lld counters", (long long)maxid + 1);
    for (int64_t i = begin; i < end; i++) cnt[cb_tokens_at(f, i)]++;
    double n = (double)(end - begin), h = 0;
    for (int64_t i = 0; i <= maxid; i++)
        if (cnt[i]) {
            double p = (double)cnt[i] / n;
            h -= p * log(p);
        }
    free(cnt);
    *nats = h;
    return CB_OK;
}

/* ---- helpers ------------------------------------------------------------------------------- */

static char *fmt_path(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + (c ? strlen(c) : 0) + 3;
    char *s = malloc(n);
    if (!s) return NULL;
    if (c) snprintf(s, n, "%s/%s/%s", a, b, c);
    else snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* instrument: tokens split on ',', '+' and blanks, case-insensitive; tb / tensorboard */
static bool wants_tensorboard(const char *inst) {
    if (!inst) return false;
    char tok[64];
    size_t n = 0;
    for (const char *p = inst;; p++) {
        if (*p == 0 || *p == ',' || *p == '+' || isspace((unsigned char)*p)) {
            tok[n] = 0;
            if (strcmp(tok, "tb") == 0 || strcmp(tok, "tensorboard") == 0) return true;
            n = 0;
            if (*p == 0) break;
        } else if (n + 1 < sizeof tok) {
            tok[n++] = (char)tolower((unsigned char)*p);
        }
    }
    return false;
}

static const char *run_label(const cb_run_cfg *r) { return r->id; }

/* Where a run's starting weights come from (NULL: fresh initialisation). `prev` is the closest
 * earlier training run (global phase default). */
typedef struct weights_src {
    const char *label; /* for messages */
    char *path;        /* checkpoint path (heap) */
} weights_src;

static cb_status weights_for(const cb_group_cfg *g, int i, const char *out_dir, weights_src *w) {
    const cb_train_cfg *t = &g->runs[i].train;
    w->label = NULL;
    w->path = NULL;
    const char *from = t->init_from;
    if (!from && t->phase == CB_PHASE_GLOBAL) {
        from = t->teacher_ckpt;
        if (!from)
            for (int j = i - 1; j >= 0 && !from; j--)
                if (g->runs[j].has_train) from = g->runs[j].id;
    }
    if (!from) return CB_OK;
    w->label = from;
    for (int j = 0; j < i; j++)
        if (strcmp(from, g->runs[j].id) == 0) {
            w->path = fmt_path(out_dir, from, "final");
            return w->path ? CB_OK : cb_fail(CB_ERR_NOMEM, "out of memory");
        }
    /* a run directory (no weights of its own, a `latest` file) means its newest checkpoint */
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/latest", from);
    if (strncmp(from, "hf://", 5) != 0 && cb_is_dir(from) && cb_file_exists(probe)) {
        snprintf(probe, sizeof probe, "%s/model.safetensors", from);
        if (!cb_file_exists(probe)) {
            w->path = cb_train_ckpt_resolve(from);
            return w->path ? CB_OK : cb_fail_context(CB_ERR_NOTFOUND, "starting weights '%s'", from);
        }
    }
    w->path = strdup(from);
    return w->path ? CB_OK : cb_fail(CB_ERR_NOMEM, "out of memory");
}

static cb_status open_weights(const char *src, cb_checkpoint **ck) {
    if (strncmp(src, "hf://", 5) == 0) {
        char dir[4096];
        CB_TRY(cb_hf_resolve(src, dir, sizeof dir));
        return cb_checkpoint_open(ck, dir);
    }
    return cb_checkpoint_open(ck, src);
}

static cb_status load_weights(cb_model *model, const char *src) {
    cb_checkpoint *ck;
    CB_TRY(open_weights(src, &ck));
    cb_status st = cb_model_load(model, ck);
    cb_checkpoint_close(ck);
    return st;
}

/* ---- preflight ----------------------------------------------------------------------------- */

typedef struct run_plan {
    bool skip;          /* before the resume point, or not a training run */
    char *resume;       /* checkpoint directory this run continues from */
    weights_src init;   /* starting weights */
} run_plan;

static cb_status check_device(const cb_train_cfg *t, const char *where) {
    const char *d = t->device ? t->device : "cpu";
    bool cuda = strncmp(d, "cuda", 4) == 0 || (strcmp(d, "auto") == 0 && cb_device_available(CB_CUDA));
    if (cuda && !cb_device_available(CB_CUDA))
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: train.device is '%s', but %s", where, d,
#ifdef CARAMBA_CUDA
                       "no CUDA device is present"
#else
                       "this build has no CUDA backend (configure with -DCARAMBA_CUDA=ON)"
#endif
        );
    if (!cuda && (t->dtype == CB_TDTYPE_FLOAT16 || t->dtype == CB_TDTYPE_BFLOAT16))
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: train.dtype %s is not supported on the CPU (it "
                                           "computes in float32; use dtype: float32 or auto)",
                       where, t->dtype == CB_TDTYPE_FLOAT16 ? "float16" : "bfloat16");
    return CB_OK;
}

static cb_status resolve_resume(const char *path, const char *want_run, char **dir_out,
                                const char *where) {
    char *dir = cb_train_ckpt_resolve(path);
    if (!dir) return cb_fail_context(CB_ERR_NOTFOUND, "%s: resume", where);
    cb_train_state st;
    cb_status rc = cb_train_ckpt_read_state(dir, &st);
    if (rc == CB_OK && want_run && strcmp(st.run_id, want_run) != 0)
        rc = cb_fail(CB_ERR_ARG, "%s: resume checkpoint %s belongs to run '%s', not '%s'", where, dir,
                     st.run_id, want_run);
    if (rc != CB_OK) {
        free(dir);
        return rc;
    }
    *dir_out = dir;
    return CB_OK;
}

static void free_plans(run_plan *rp, int n) {
    for (int i = 0; rp && i < n; i++) {
        free(rp[i].resume);
        free(rp[i].init.path);
    }
    free(rp);
}

static cb_status preflight(const cb_manifest *m, const cb_group_cfg *g, const cb_group_opts *o,
                           const char *out_dir, const char *data, cb_token_file **tokens,
                           run_plan **plans_out) {
    *tokens = NULL;
    *plans_out = NULL;
    run_plan *rp = calloc((size_t)g->n_runs + 1, sizeof *rp);
    if (!rp) return cb_fail(CB_ERR_NOMEM, "out of memory");
    cb_status st = CB_OK;
    int resume_run = -1;
    char *resume_dir = NULL;
    if (o->resume) {
        st = resolve_resume(o->resume, NULL, &resume_dir, "--resume");
        if (st == CB_OK) {
            cb_train_state s;
            st = cb_train_ckpt_read_state(resume_dir, &s);
            for (int i = 0; st == CB_OK && i < g->n_runs; i++)
                if (strcmp(g->runs[i].id, s.run_id) == 0) resume_run = i;
            if (st == CB_OK && resume_run < 0)
                st = cb_fail(CB_ERR_ARG, "--resume %s: the checkpoint is of run '%s', which group '%s' "
                                         "does not have",
                             o->resume, s.run_id, g->name);
        }
    }
    int n_train = 0;
    for (int i = 0; st == CB_OK && i < g->n_runs; i++) {
        const cb_run_cfg *r = &g->runs[i];
        char where[200];
        snprintf(where, sizeof where, "%s: run '%s'", m->file, r->id);
        if (r->mode != CB_RUN_TRAIN || !r->has_train) {
            rp[i].skip = true;
            continue;
        }
        n_train++;
        const cb_train_cfg *t = &r->train;
        if (t->phase == CB_PHASE_BLOCKWISE) {
            st = cb_fail(CB_ERR_UNSUPPORTED, "%s: phase blockwise (distillation) is not implemented "
                                             "in this build; phases: standard, global",
                         where);
            break;
        }
        if (m->model.embedder.type != CB_EMBED_TOKEN) {
            st = cb_fail(CB_ERR_UNSUPPORTED, "%s: training needs a token embedder (model.embedder.type: "
                                             "token): the loss is next-token cross-entropy",
                         where);
            break;
        }
        st = check_device(t, where);
        if (st != CB_OK) break;
        if (i < resume_run) rp[i].skip = true;
        if (i == resume_run) {
            rp[i].resume = resume_dir;
            resume_dir = NULL;
        } else if (t->resume && !rp[i].skip) {
            st = resolve_resume(t->resume, r->id, &rp[i].resume, where);
            if (st != CB_OK) break;
        }
        st = weights_for(g, i, out_dir, &rp[i].init);
        if (st != CB_OK) break;
        /* a checkpoint that exists now must be readable; one an earlier run of this invocation will
         * write is checked when that run has finished */
        bool produced_here = false;
        for (int j = 0; j < i && rp[i].init.path; j++)
            if (strcmp(rp[i].init.label, g->runs[j].id) == 0 && !rp[j].skip) produced_here = true;
        if (rp[i].init.path && !rp[i].resume && !produced_here &&
            strncmp(rp[i].init.path, "hf://", 5) != 0) {
            cb_checkpoint *ck;
            st = cb_checkpoint_open(&ck, rp[i].init.path);
            if (st != CB_OK) {
                st = cb_fail_context(st, "%s: starting weights '%s'", where, rp[i].init.label);
                break;
            }
            cb_checkpoint_close(ck);
        }
    }
    free(resume_dir);
    if (st == CB_OK && n_train > 0) {
        if (!data || !data[0]) {
            st = cb_fail(CB_ERR_ARG, "%s: group '%s' has no data: set groups[].data to a token file "
                                     "(caramba prepare-data writes one) or pass --data",
                         m->file, g->name);
        } else {
            st = cb_tokens_open(tokens, data);
            if (st != CB_OK) st = cb_fail_context(st, "group '%s' data", g->name);
            if (st == CB_OK) {
                st = cb_tokens_validate(*tokens, m->model.embedder.vocab_size);
                if (st != CB_OK)
                    st = cb_fail_context(st, "group '%s' data does not fit the model's vocabulary "
                                             "(vocab_size %lld)",
                                         g->name, (long long)m->model.embedder.vocab_size);
            }
            for (int i = 0; st == CB_OK && i < g->n_runs; i++) {
                if (rp[i].skip) continue;
                cb_dataset tr, va;
                st = cb_dataset_split(*tokens, m->defaults.val_frac, g->runs[i].train.block_size, 1, &tr, &va);
                if (st != CB_OK) st = cb_fail_context(st, "run '%s'", g->runs[i].id);
            }
        }
    }
    if (st != CB_OK) {
        free_plans(rp, g->n_runs);
        cb_tokens_close(*tokens);
        *tokens = NULL;
        return st;
    }
    *plans_out = rp;
    return CB_OK;
}

/* ---- one run ------------------------------------------------------------------------------- */

static cb_status run_one(const cb_manifest *m, const cb_group_cfg *g, int i, const cb_group_opts *o,
                         const char *out_dir, cb_token_file *tokens, run_plan *rp, FILE *out,
                         char *final_ckpt, size_t final_n) {
    const cb_run_cfg *r = &g->runs[i];
    const cb_train_cfg *t = &r->train;
    cb_status st;
    char *plans_dir = fmt_path(out_dir, "plans", NULL);
    cb_runtime_plan plan;
    st = plans_dir ? cb_runtime_plan_get(plans_dir, &m->model, t, &plan) : cb_fail(CB_ERR_NOMEM, "oom");
    free(plans_dir);
    if (st != CB_OK) return st;
    int env_threads = cb_runtime_env_threads();
    int threads = cb_threads_init(env_threads > 0 ? env_threads : plan.threads);
    cb_device dev = CB_CPU;
    if (strncmp(plan.device, "cuda", 4) == 0) dev = CB_CUDA;
    int64_t seed = o->has_seed ? o->seed : r->seed;
    int64_t B = plan.batch_size, K = t->gradient_accumulation_steps;
    int64_t eval_every = t->eval_every >= 0 ? t->eval_every : m->defaults.eval_iters;

    cb_model *model = NULL;
    st = cb_model_from_manifest(&model, &m->model, dev, (uint64_t)seed, t->block_size);
    if (st != CB_OK) return cb_fail_context(st, "run '%s': building the model", r->id);
    const char *start_from = "fresh initialisation (seed)";
    if (rp->init.path && !rp->resume) {
        st = load_weights(model, rp->init.path);
        if (st != CB_OK) {
            cb_model_free(model);
            return cb_fail_context(st, "run '%s': starting weights '%s'", r->id, rp->init.label);
        }
        start_from = rp->init.path;
    }
    /* AMP on the GPU: 16-bit activations and weight copies, f32 master weights (src/model/amp.c) */
    cb_dtype compute = strcmp(plan.compute_dtype, "bfloat16") == 0  ? CB_BF16
                       : strcmp(plan.compute_dtype, "float16") == 0 ? CB_F16
                                                                    : CB_F32;
    if (dev == CB_CUDA && compute != CB_F32) {
        if (compute == CB_F16)
            fprintf(stderr, "warning: run '%s': float16 compute without loss scaling may underflow "
                            "gradients; bfloat16 is the safer choice\n", r->id);
        st = cb_model_set_compute_dtype(model, compute);
        if (st != CB_OK) {
            cb_model_free(model);
            return cb_fail_context(st, "run '%s': mixed precision", r->id);
        }
    }
    cb_dataset train, val;
    st = cb_dataset_split(tokens, m->defaults.val_frac, t->block_size, 1, &train, &val);
    char *run_dir = fmt_path(out_dir, r->id, NULL);
    char *jl_path = fmt_path(out_dir, r->id, "metrics.jsonl");
    char *tb_dir = fmt_path(out_dir, "tb", r->id);
    cb_jsonl *log = NULL;
    cb_tb_writer *tb = NULL;
    if (st == CB_OK && (!run_dir || !jl_path || !tb_dir)) st = cb_fail(CB_ERR_NOMEM, "out of memory");
    if (st == CB_OK) st = cb_jsonl_open(&log, jl_path);
    if (st == CB_OK && wants_tensorboard(m->defaults.instrument)) {
        if (cb_tb_open(&tb, tb_dir) != CB_OK) {
            fprintf(stderr, "warning: TensorBoard disabled: %s\n", cb_last_error());
            tb = NULL;
        }
    }
    if (st == CB_OK) {
        fprintf(out, "  model: %lld parameters%s; %s\n", (long long)cb_model_param_count(model),
                model->llama_names ? " (Hugging Face Llama names)" : "", start_from);
        fprintf(out, "  plan: %s, %s%s%s, %d thread%s%s, batch %lld x %lld tokens", plan.device,
                plan.dtype, strcmp(plan.compute_dtype, plan.dtype) ? ", compute " : "",
                strcmp(plan.compute_dtype, plan.dtype) ? plan.compute_dtype : "", threads, threads == 1 ? "" : "s", env_threads > 0 ? " (environment)" : "",
                (long long)B, (long long)t->block_size);
        if (K > 1) fprintf(out, " x %lld micro-batches", (long long)K);
        fprintf(out, " (%s %s)\n", plan.reused ? "reused" : "new", plan.path[0] ? plan.path : "plan");
        fprintf(out, "  schedule: lr %g %s", t->lr, cb_schedule_name(t->scheduler));
        if (t->scheduler != CB_CFG_SCHED_NONE)
            fprintf(out, ", warmup %lld, floor %g", (long long)t->warmup_steps, t->min_lr_ratio);
        fprintf(out, "; AdamW wd %g, clip %g; %lld steps; ", t->weight_decay, t->grad_clip,
                (long long)r->steps);
        if (val.n_windows <= 0 || eval_every <= 0)
            fprintf(out, "no validation (%s)\n", val.n_windows <= 0 ? "val_frac is 0" : "eval_every is 0");
        else
            fprintf(out, "eval every %lld steps on %lld x %lld held-out tokens\n", (long long)eval_every,
                    (long long)(val.n_windows < t->eval_batches * B ? val.n_windows : t->eval_batches * B),
                    (long long)t->block_size);
        if (rp->resume) fprintf(out, "  resuming from %s\n", rp->resume);
        fprintf(out, "  metrics: %s%s%s\n", jl_path, tb ? "  tensorboard: " : "", tb ? tb_dir : "");
        fflush(out);
    }
    if (t->use_amp && dev == CB_CPU)
        fprintf(stderr, "warning: run '%s': use_amp has no effect on the CPU (float32 compute)\n", r->id);
    cb_train_result res;
    memset(&res, 0, sizeof res);
    if (st == CB_OK) {
        cb_train_spec spec = {
            .run_id = r->id,
            .phase = PHASES[t->phase],
            .model = model,
            .loss = &cb_loss_next_token,
            .train = &train,
            .val = val.n_windows > 0 ? &val : NULL,
            .batch_size = B,
            .accum = K,
            .steps = r->steps,
            .adamw = {.beta1 = t->beta1, .beta2 = t->beta2, .eps = t->adam_eps,
                      .weight_decay = t->weight_decay, .decay_all = t->decay_all},
            .sched = {.kind = t->scheduler, .base_lr = t->lr, .warmup = t->warmup_steps,
                      .total = r->steps, .min_ratio = t->min_lr_ratio},
            .grad_clip = t->grad_clip,
            .activation_checkpointing = t->activation_checkpointing,
            .activation_checkpoint_threshold_mb = t->activation_checkpoint_threshold_mb,
            .data_seed = mix64((uint64_t)seed ^ 0x64617461ull),    /* "data" */
            .dropout_seed = mix64((uint64_t)seed ^ 0x64726f70ull), /* "drop" */
            .eval_every = eval_every,
            .eval_batches = t->eval_batches,
            .save_every = m->defaults.save_every,
            .ckpt_dir = run_dir,
            .resume = rp->resume,
            .stop_after = o->stop_after,
            .log = log,
            .tb = tb,
            .progress = o->progress != 0,
            .out = out,
        };
        st = cb_train_run(&spec, &res);
    }
    if (st == CB_OK) {
        char d[32];
        fprintf(out, "✓ run '%s': steps %lld..%lld in %s (%.0f tok/s), loss %.4f", r->id,
                (long long)res.start_step, (long long)res.end_step, cb_fmt_duration(res.seconds, d, sizeof d),
                res.tok_s, res.final_loss);
        if (!isnan(res.val_loss)) fprintf(out, ", val loss %.4f", res.val_loss);
        fprintf(out, " (nats/token)\n");
        if (res.ckpt[0]) fprintf(out, "  checkpoint: %s\n", res.ckpt);
        snprintf(final_ckpt, final_n, "%s", res.ckpt);
        fflush(out);
        if (res.interrupted)
            st = cb_fail(CB_ERR_IO, "interrupted at step %lld of run '%s'; continue with: caramba run %s "
                                    "--out %s --resume %s",
                         (long long)res.end_step, r->id, m->file, out_dir,
                         res.ckpt[0] ? res.ckpt : "(no checkpoint: nothing was trained)");
    }
    cb_tb_close(tb);
    cb_jsonl_close(log);
    free(run_dir);
    free(jl_path);
    free(tb_dir);
    cb_model_free(model);
    return st;
}

cb_status cb_train_group(const cb_manifest *m, const cb_group_cfg *g, const cb_group_opts *o) {
    cb_group_opts defaults = {.progress = -1};
    if (!o) o = &defaults;
    FILE *out = o->out ? o->out : stdout;
    char out_buf[1024];
    const char *out_dir = o->out_dir;
    if (!out_dir) {
        snprintf(out_buf, sizeof out_buf, "runs/%s", g->name);
        out_dir = out_buf;
    }
    const char *data = o->data ? o->data : g->data;
    cb_token_file *tokens = NULL;
    run_plan *rp = NULL;
    CB_TRY(preflight(m, g, o, out_dir, data, &tokens, &rp));

    fprintf(out, "━━━ Experiment • %s ━━━\n", m->name);
    if (g->description && g->description[0]) fprintf(out, "  %s\n", g->description);
    fprintf(out, "  manifest: %s   group: %s   runs: %d   out: %s\n", m->file, g->name, g->n_runs, out_dir);
    cb_status st = CB_OK;
    if (tokens) {
        int64_t n_val = (int64_t)floor((double)tokens->n * m->defaults.val_frac);
        double h = NAN;
        st = cb_unigram_entropy(tokens, 0, tokens->n - n_val, &h);
        if (st == CB_OK) {
            fprintf(out, "  data: %s (%lld tokens: %lld train, %lld held out)\n", data,
                    (long long)tokens->n, (long long)(tokens->n - n_val), (long long)n_val);
            fprintf(out, "  unigram entropy of the training tokens: %.4f nats/token (%.4f bits): the "
                         "loss of a model that ignores context\n",
                    h, h / log(2.0));
        }
    }
    fflush(out);
    int done = 0;
    for (int i = 0; i < g->n_runs && st == CB_OK; i++) {
        const cb_run_cfg *r = &g->runs[i];
        fprintf(out, "[%d/%d] Run '%s' (%s)", i + 1, g->n_runs, run_label(r),
                r->has_train ? PHASES[r->train.phase] : "no train block");
        if (r->mode != CB_RUN_TRAIN) {
            fprintf(out, ": mode %s, skipped (caramba generate / --mode %s run models)\n",
                    r->mode == CB_RUN_SAMPLE ? "sample" : "chat", r->mode == CB_RUN_SAMPLE ? "sample" : "chat");
            continue;
        }
        if (rp[i].skip) {
            fprintf(out, ": skipped (resuming a later run)\n");
            continue;
        }
        fprintf(out, "\n");
        fflush(out);
        char ckpt[1100] = "";
        st = run_one(m, g, i, o, out_dir, tokens, &rp[i], out, ckpt, sizeof ckpt);
        if (st == CB_OK) done++;
    }
    if (st == CB_OK) fprintf(out, "✓ Experiment complete • %d run%s trained • outputs in %s\n", done,
                             done == 1 ? "" : "s", out_dir);
    free_plans(rp, g->n_runs);
    cb_tokens_close(tokens);
    return st;
}
