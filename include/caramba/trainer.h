/* Training: AdamW, learning-rate schedules, global-norm clipping, gradient accumulation, the
 * train loop, trainer checkpoints (bit-exact resume) and the group runner behind `caramba run`.
 * docs/training.md describes every manifest key, the checkpoint layout and the metric logs.
 *
 * Layering:
 *   cb_optimizer / cb_schedule / cb_grad_global_norm   one concept each, no I/O
 *   cb_train_grads                                      one optimizer step's gradients (k micro-batches)
 *   cb_train_run                                        the loop: steps, eval, logs, checkpoints, resume
 *   cb_train_group                                      the runs of a manifest group, in order */
#ifndef CARAMBA_TRAINER_H
#define CARAMBA_TRAINER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "caramba/data.h"
#include "caramba/graph.h"
#include "caramba/instrument.h"
#include "caramba/manifest.h"
#include "caramba/model.h"
#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- AdamW -------------------------------------------------------------------------------- */

typedef struct cb_adamw_cfg {
    double beta1, beta2, eps; /* 0.9, 0.999, 1e-8 */
    double weight_decay;      /* 0.01, decoupled: p -= lr * wd * p */
    bool decay_all;           /* false: parameters marked no_decay (norms, biases, embeddings) skip decay */
} cb_adamw_cfg;

void cb_adamw_defaults(cb_adamw_cfg *c);

/* State: the update count and two f32 moments per parameter, on the parameters' device. Update t
 * (1-based) for each element with gradient g (times grad_scale):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *   p -= lr * ( (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd * p ) */
typedef struct cb_optimizer {
    cb_adamw_cfg cfg;
    int64_t step; /* updates applied so far */
    int n;
    cb_param **params; /* borrowed from the model */
    cb_tensor **m, **v;
} cb_optimizer;

cb_status cb_optimizer_new(cb_optimizer **out, cb_model *model, const cb_adamw_cfg *cfg);
void cb_optimizer_free(cb_optimizer *o);
/* One update of every parameter that has a gradient, at learning rate lr. */
cb_status cb_optimizer_step(cb_optimizer *o, double lr, double grad_scale);
/* Weight decay actually applied to parameter i (0 for no_decay parameters unless decay_all). */
double cb_optimizer_decay(const cb_optimizer *o, int i);
/* Moments as safetensors ("exp_avg.<param name>", "exp_avg_sq.<param name>", f32), atomically;
 * load checks that every parameter's moments are present with the right shape. */
cb_status cb_optimizer_save(const cb_optimizer *o, const char *path);
cb_status cb_optimizer_load(cb_optimizer *o, const char *path);

/* ---- learning-rate schedule --------------------------------------------------------------- */

/* lr(t) = base_lr * factor(t) for update t = 0, 1, ..., total-1, with W = warmup, T = total,
 * r = min_ratio:
 *   none:                        factor 1 (warmup and floor ignored)
 *   t < W (other kinds):         (t + 1) / W
 *   else f = min(D, t - W) / D with D = max(1, T - W):
 *     constant: 1;   linear: r + (1 - r)(1 - f);   cosine: r + (1 - r)(1 + cos(pi f)) / 2 */
typedef struct cb_schedule {
    cb_cfg_sched kind;
    double base_lr;
    int64_t warmup, total;
    double min_ratio;
} cb_schedule;

double cb_schedule_factor(const cb_schedule *s, int64_t t);
double cb_schedule_lr(const cb_schedule *s, int64_t t);
const char *cb_schedule_name(cb_cfg_sched kind);

/* ---- gradients ---------------------------------------------------------------------------- */

/* sqrt of the sum of squares of every parameter gradient (f64 accumulation). */
cb_status cb_grad_global_norm(const cb_model *m, double *norm);
/* Scale that brings norm down to max_norm: max_norm / (norm + 1e-6) when norm > max_norm > 0,
 * else 1 (max_norm 0 = no clipping). */
double cb_clip_scale(double norm, double max_norm);

/* One micro-batch: token ids x and targets y, CPU tensors [B, L] (i32 or i64). */
typedef struct cb_batch {
    cb_tensor *x, *y;
} cb_batch;

/* The loss a phase trains: a scalar recorded on g (so cb_backward reaches the student's
 * parameters). Standard and global use next-token cross-entropy; blockwise distillation plugs a
 * hook reading the teacher here. */
typedef struct cb_loss_hook {
    const char *name;
    cb_tensor *(*fn)(void *ctx, cb_model *student, cb_model *teacher, cb_graph *g,
                     const cb_batch *b);
    void *ctx;
} cb_loss_hook;

/* Mean cross-entropy of the student's logits for b->x against b->y. */
extern const cb_loss_hook cb_loss_next_token;

/* Gradients of one optimizer step: zeroes the model's persistent gradients, then for each of the
 * n micro-batches resets g, evaluates the hook and back-propagates loss / n (so k micro-batches of
 * B rows give the gradient of one batch of k*B rows). *mean_loss = mean of the micro losses. g
 * keeps its dropout seed and counter across micro-batches. */
cb_status cb_train_grads(cb_model *m, cb_model *teacher, cb_graph *g, const cb_loss_hook *hook,
                         const cb_batch *micro, int n, double *mean_loss);

/* Mean loss over the first max_batches batches of B non-overlapping windows of ds, in order
 * (max_batches <= 0: every window). No gradients, no dropout; g is reset. Tokens counted: *tokens. */
cb_status cb_eval_loss(cb_model *m, cb_graph *g, const cb_dataset *ds, int64_t batch,
                       int64_t max_batches, double *loss, int64_t *tokens);

/* ---- trainer checkpoints ------------------------------------------------------------------ */

/* A checkpoint is a directory:
 *   model.safetensors      weights (Hugging Face Llama names when the model has the Llama shape)
 *   config.json            Hugging Face LlamaConfig (Llama-shaped models only)
 *   optimizer.safetensors  AdamW moments
 *   trainer.json           cb_train_state below
 * written into "<dir>.tmp.<pid>" (every file fsynced) and renamed into place; an existing
 * checkpoint of the same name is replaced only after the new one is complete. */
typedef struct cb_train_state {
    char run_id[128], phase[32];
    int64_t step, total_steps;          /* optimizer updates done / planned */
    int64_t batch_size, block_size, accum;
    uint64_t data_seed, data_pos;       /* training-window sampler (cb_sampler) */
    uint64_t dropout_seed, dropout_counter;
    int64_t tokens_seen;
    double elapsed_s;                   /* training time so far (all invocations) */
    double last_loss, last_val_loss;    /* NaN when none */
    cb_adamw_cfg adamw;
    cb_schedule sched;
    double grad_clip;
    char data_path[1024];
    int64_t data_tokens;
} cb_train_state;

cb_status cb_train_ckpt_save(const char *dir, const cb_model *m, const cb_optimizer *o,
                             const cb_train_state *st);
/* Reads trainer.json of a checkpoint directory. */
cb_status cb_train_ckpt_read_state(const char *dir, cb_train_state *st);
/* Loads weights, moments (o may be NULL) and state (st may be NULL). */
cb_status cb_train_ckpt_load(const char *dir, cb_model *m, cb_optimizer *o, cb_train_state *st);
/* A checkpoint directory for PATH: PATH itself when it holds trainer.json, else the checkpoint a
 * run directory's `latest` file names. Heap string, or NULL with a message. */
char *cb_train_ckpt_resolve(const char *path);
/* Writes the Hugging Face config.json of a Llama-shaped model (CB_ERR_UNSUPPORTED otherwise). */
cb_status cb_model_write_hf_config(const cb_model *m, const char *path);

/* ---- the train loop ----------------------------------------------------------------------- */

typedef struct cb_train_spec {
    const char *run_id, *phase; /* labels: logs, checkpoints */
    cb_model *model;
    cb_model *teacher;          /* for hooks that need one (NULL otherwise) */
    const cb_loss_hook *loss;   /* NULL: cb_loss_next_token */
    const cb_dataset *train;    /* windows sampled uniformly with replacement */
    const cb_dataset *val;      /* NULL or empty: no validation */
    int64_t batch_size, accum, steps;
    cb_adamw_cfg adamw;
    cb_schedule sched;
    double grad_clip;
    bool activation_checkpointing; /* re-run blocks in backward instead of keeping activations */
    double activation_checkpoint_threshold_mb; /* only blocks whose input is at least this big */
    uint64_t data_seed, dropout_seed;
    int64_t eval_every, eval_batches; /* every N steps and at the end; 0: never */
    int64_t save_every;               /* 0: only the final checkpoint */
    const char *ckpt_dir;             /* run directory (step_<N>/, final/, latest); NULL: none */
    const char *resume;               /* checkpoint directory to continue from, or NULL */
    int64_t stop_after;               /* > 0: stop after this step (checkpoint written) */
    cb_jsonl *log;                    /* may be NULL */
    cb_tb_writer *tb;                 /* may be NULL */
    bool progress;                    /* console progress bar on stderr */
    FILE *out;                        /* console messages (stdout when NULL) */
    double *losses;                   /* optional [steps]: loss of every step, by step index */
} cb_train_spec;

typedef struct cb_train_result {
    bool interrupted; /* stopped by cb_train_request_stop (checkpoint written) */
    int64_t start_step, end_step;
    double final_loss, val_loss; /* val_loss: last evaluation, NaN when none */
    double seconds, tok_s;       /* this invocation */
    char ckpt[1100];             /* last checkpoint written ("" when none) */
} cb_train_result;

cb_status cb_train_run(const cb_train_spec *s, cb_train_result *r);

/* Asks the running loop to stop after the current step and write a checkpoint (the group runner
 * then reports how to resume). Async-signal-safe: the CLI calls it from its SIGINT handler. */
void cb_train_request_stop(void);
bool cb_train_stop_requested(void);
void cb_train_clear_stop(void);

/* ---- the group runner --------------------------------------------------------------------- */

typedef struct cb_group_opts {
    const char *out_dir; /* default "runs/<group>" */
    const char *resume;  /* checkpoint (or run directory) to resume; its run id picks the run */
    const char *data;    /* overrides the group's data */
    bool has_seed;
    int64_t seed;        /* overrides every run's seed */
    int progress;        /* 1 on, 0 off, -1 auto (on; plain lines when stderr is not a terminal) */
    int64_t stop_after;  /* testing: stop each run after this step */
    FILE *out;           /* console (stdout when NULL) */
} cb_group_opts;

/* Runs the group's runs in order (sample/chat runs are skipped with a note). Every check that can
 * fail before training (phase support, device, dtype, data readable and in the vocabulary,
 * init_from / resume checkpoints) runs for all runs before the first step. */
cb_status cb_train_group(const cb_manifest *m, const cb_group_cfg *g, const cb_group_opts *o);

/* Unigram entropy (nats/token) of tokens [begin, end) of f: -sum p log p over token frequencies. */
cb_status cb_unigram_entropy(const cb_token_file *f, int64_t begin, int64_t end, double *nats);

#ifdef __cplusplus
}
#endif
#endif
