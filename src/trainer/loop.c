/* The train loop: sample -> gradients (k micro-batches) -> global norm -> clip -> AdamW at the
 * scheduled rate -> log -> evaluate -> checkpoint, for steps [start, steps).
 *
 * Everything a step consumes is a pure function of state saved in the checkpoint: weights,
 * moments and update count, the window sampler (seed, draws so far), the dropout stream (seed,
 * counter) and the step index (the schedule). Resuming restores exactly that state, so the
 * remaining steps compute the same losses bit for bit as an uninterrupted run (same build, same
 * thread count). */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "caramba/trainer.h"

static volatile sig_atomic_t stop_requested;

void cb_train_request_stop(void) { stop_requested = 1; }
bool cb_train_stop_requested(void) { return stop_requested != 0; }
void cb_train_clear_stop(void) { stop_requested = 0; }

typedef struct loop {
    const cb_train_spec *s;
    cb_optimizer *opt;
    cb_graph g;
    bool g_ready;
    cb_sampler sampler;
    cb_train_state st;
    cb_batch *micro;
    cb_tensor *tens;
    int32_t *buf;
    FILE *out;
} loop;

static void fill_state(loop *L, int64_t step, double loss, double val_loss) {
    const cb_train_spec *s = L->s;
    cb_train_state *st = &L->st;
    snprintf(st->run_id, sizeof st->run_id, "%s", s->run_id ? s->run_id : "run");
    snprintf(st->phase, sizeof st->phase, "%s", s->phase ? s->phase : "standard");
    st->step = step;
    st->total_steps = s->steps;
    st->batch_size = s->batch_size;
    st->block_size = s->train->block;
    st->accum = s->accum;
    st->data_seed = L->sampler.seed;
    st->data_pos = L->sampler.pos;
    st->dropout_seed = L->g.seed;
    st->dropout_counter = L->g.rng_counter;
    st->last_loss = loss;
    st->last_val_loss = val_loss;
    st->adamw = s->adamw;
    st->sched = s->sched;
    st->grad_clip = s->grad_clip;
    snprintf(st->data_path, sizeof st->data_path, "%s", s->train->tokens->path);
    st->data_tokens = s->train->tokens->n;
}

static cb_status save(loop *L, const char *name, cb_train_result *r) {
    const cb_train_spec *s = L->s;
    size_t n = strlen(s->ckpt_dir) + strlen(name) + 2;
    char *dir = malloc(n);
    if (!dir) return cb_fail(CB_ERR_NOMEM, "out of memory");
    snprintf(dir, n, "%s/%s", s->ckpt_dir, name);
    cb_status st = cb_train_ckpt_save(dir, s->model, L->opt, &L->st);
    if (st == CB_OK) {
        /* `latest` names the newest complete checkpoint (written after it is in place) */
        char *lp = malloc(strlen(s->ckpt_dir) + 8);
        if (lp) {
            sprintf(lp, "%s/latest", s->ckpt_dir);
            char line[256];
            snprintf(line, sizeof line, "%s\n", name);
            st = cb_write_file_atomic(lp, line, strlen(line));
            free(lp);
        }
    }
    if (st == CB_OK) {
        snprintf(r->ckpt, sizeof r->ckpt, "%s", dir);
        cb_jsonl_begin(s->log, "checkpoint");
        cb_jsonl_str(s->log, "run_id", s->run_id);
        cb_jsonl_int(s->log, "step", L->st.step);
        cb_jsonl_str(s->log, "path", dir);
        cb_jsonl_end(s->log);
    }
    free(dir);
    return st;
}

static cb_status check_resume(loop *L) {
    const cb_train_spec *s = L->s;
    cb_train_state *st = &L->st;
    const char *rid = s->run_id ? s->run_id : "run";
    if (strcmp(st->run_id, rid) != 0)
        return cb_fail(CB_ERR_ARG, "%s: the checkpoint belongs to run '%s', not '%s' (to start a run "
                                   "from another run's weights use train.init_from)",
                       s->resume, st->run_id, rid);
    if (st->batch_size != s->batch_size || st->block_size != s->train->block || st->accum != s->accum)
        return cb_fail(CB_ERR_ARG, "%s: written with batch_size %lld, block_size %lld, "
                                   "gradient_accumulation_steps %lld; this run has %lld, %lld, %lld "
                                   "(a resumed run must keep them)",
                       s->resume, (long long)st->batch_size, (long long)st->block_size,
                       (long long)st->accum, (long long)s->batch_size, (long long)s->train->block,
                       (long long)s->accum);
    if (st->data_tokens != s->train->tokens->n)
        return cb_fail(CB_ERR_ARG, "%s: trained on %s (%lld tokens); this run reads %s (%lld "
                                   "tokens)",
                       s->resume, st->data_path, (long long)st->data_tokens, s->train->tokens->path,
                       (long long)s->train->tokens->n);
    return CB_OK;
}

static void free_loop(loop *L) {
    cb_optimizer_free(L->opt);
    if (L->g_ready) cb_graph_free(&L->g);
    free(L->micro);
    free(L->tens);
    free(L->buf);
}

static void log_metrics(loop *L, int64_t step, double loss, double lr, double norm, double clip,
                        double tok_s, double val, int64_t val_tokens) {
    const cb_train_spec *s = L->s;
    if (s->log) {
        cb_jsonl_begin(s->log, "metrics");
        cb_jsonl_str(s->log, "run_id", s->run_id);
        cb_jsonl_str(s->log, "phase", s->phase);
        cb_jsonl_int(s->log, "step", step);
        cb_jsonl_num(s->log, "loss", loss);
        cb_jsonl_num(s->log, "lr", lr);
        cb_jsonl_num(s->log, "grad_norm", norm);
        if (clip != 1.0) cb_jsonl_num(s->log, "clip_scale", clip);
        cb_jsonl_num(s->log, "tok_s", tok_s);
        cb_jsonl_int(s->log, "tokens", L->st.tokens_seen);
        cb_jsonl_num(s->log, "elapsed_s", L->st.elapsed_s);
        if (!isnan(val)) {
            cb_jsonl_num(s->log, "val_loss", val);
            cb_jsonl_int(s->log, "val_tokens", val_tokens);
        }
        cb_status st = cb_jsonl_end(s->log);
        if (st != CB_OK) fprintf(stderr, "warning: %s\n", cb_last_error());
    }
    if (s->tb) {
        cb_status st = cb_tb_scalar(s->tb, "train/loss", step, (float)loss);
        if (st == CB_OK) st = cb_tb_scalar(s->tb, "train/lr", step, (float)lr);
        if (st == CB_OK) st = cb_tb_scalar(s->tb, "train/grad_norm", step, (float)norm);
        if (st == CB_OK) st = cb_tb_scalar(s->tb, "train/tok_s", step, (float)tok_s);
        if (st == CB_OK && !isnan(val)) st = cb_tb_scalar(s->tb, "val/loss", step, (float)val);
        if (st != CB_OK) fprintf(stderr, "warning: %s\n", cb_last_error());
    }
}

cb_status cb_train_run(const cb_train_spec *s, cb_train_result *r) {
    memset(r, 0, sizeof *r);
    r->final_loss = r->val_loss = NAN;
    if (!s->model || !s->train) return cb_fail(CB_ERR_ARG, "train: no model or no training data");
    if (s->train->n_windows <= 0) return cb_fail(CB_ERR_ARG, "train: the training split has no windows");
    if (s->batch_size < 1 || s->accum < 1 || s->steps < 1)
        return cb_fail(CB_ERR_ARG, "train: batch_size, gradient_accumulation_steps and steps must be "
                                   "positive (got %lld, %lld, %lld)",
                       (long long)s->batch_size, (long long)s->accum, (long long)s->steps);
    const cb_loss_hook *hook = s->loss ? s->loss : &cb_loss_next_token;
    loop L = {.s = s, .out = s->out ? s->out : stdout};
    cb_status st = cb_model_enable_grads(s->model);
    if (st == CB_OK) st = cb_optimizer_new(&L.opt, s->model, &s->adamw);
    if (st == CB_OK) st = cb_graph_init(&L.g, s->model->device);
    if (st != CB_OK) {
        free_loop(&L);
        return st;
    }
    L.g_ready = true;
    L.g.training = true;
    L.g.checkpointing = s->activation_checkpointing;
    if (s->activation_checkpoint_threshold_mb > 0)
        L.g.checkpoint_min_bytes = (size_t)(s->activation_checkpoint_threshold_mb * 1048576.0);
    L.g.seed = s->dropout_seed;
    L.g.rng_counter = 0;
    cb_sampler_init(&L.sampler, s->data_seed);
    int64_t start = 0;
    if (s->resume) {
        st = cb_train_ckpt_load(s->resume, s->model, L.opt, &L.st);
        if (st == CB_OK) st = check_resume(&L);
        if (st != CB_OK) {
            free_loop(&L);
            return cb_fail_context(st, "resume");
        }
        start = L.st.step;
        L.sampler.seed = L.st.data_seed;
        L.sampler.pos = L.st.data_pos;
        L.g.seed = L.st.dropout_seed;
        L.g.rng_counter = L.st.dropout_counter;
        r->final_loss = L.st.last_loss;
        r->val_loss = L.st.last_val_loss;
    }
    r->start_step = r->end_step = start;
    int64_t B = s->batch_size, T = s->train->block, K = s->accum;
    L.micro = calloc((size_t)K, sizeof *L.micro);
    L.tens = calloc((size_t)(2 * K), sizeof *L.tens);
    L.buf = malloc(sizeof(int32_t) * (size_t)(2 * K * B * T));
    if (!L.micro || !L.tens || !L.buf) {
        free_loop(&L);
        return cb_fail(CB_ERR_NOMEM, "train: batch buffers (%lld x %lld x %lld)", (long long)K,
                       (long long)B, (long long)T);
    }
    cb_tensor *tens = L.tens;
    int64_t sh[2] = {B, T};
    for (int64_t k = 0; k < K; k++) {
        cb_tensor_init(&tens[2 * k], CB_I32, CB_CPU, 2, sh, L.buf + 2 * k * B * T);
        cb_tensor_init(&tens[2 * k + 1], CB_I32, CB_CPU, 2, sh, L.buf + (2 * k + 1) * B * T);
        L.micro[k].x = &tens[2 * k];
        L.micro[k].y = &tens[2 * k + 1];
    }
    bool have_val = s->val && s->val->n_windows > 0 && s->eval_every > 0;
    if (s->log) {
        cb_jsonl_begin(s->log, s->resume ? "resume" : "run_start");
        cb_jsonl_str(s->log, "run_id", s->run_id);
        cb_jsonl_str(s->log, "phase", s->phase);
        cb_jsonl_int(s->log, "step", start);
        cb_jsonl_int(s->log, "steps", s->steps);
        cb_jsonl_int(s->log, "batch_size", B);
        cb_jsonl_int(s->log, "block_size", T);
        cb_jsonl_int(s->log, "gradient_accumulation_steps", K);
        cb_jsonl_int(s->log, "parameters", cb_model_param_count(s->model));
        cb_jsonl_str(s->log, "loss_fn", hook->name);
        if (s->resume) cb_jsonl_str(s->log, "checkpoint", s->resume);
        cb_jsonl_end(s->log);
    }
    cb_progress bar;
    cb_progress_start(&bar, s->run_id ? s->run_id : "train", start, s->steps, s->progress);
    double t_begin = cb_clock_seconds(), train_s = 0, ema = NAN;
    int64_t tok_run = 0, saved_step = -1;
    int64_t step = start;
    double last_val = r->val_loss;
    while (step < s->steps && st == CB_OK) {
        if (s->stop_after > 0 && step >= s->stop_after) break;
        if (stop_requested) {
            r->interrupted = true;
            break;
        }
        double t0 = cb_clock_seconds();
        for (int64_t k = 0; k < K && st == CB_OK; k++)
            st = cb_dataset_sample_batch(s->train, &L.sampler, L.micro[k].x, L.micro[k].y);
        double loss = NAN, norm = 0;
        if (st == CB_OK)
            st = cb_train_grads(s->model, s->teacher, &L.g, hook, L.micro, (int)K, &loss);
        if (st == CB_OK) st = cb_grad_global_norm(s->model, &norm);
        if (st == CB_OK && !isfinite(norm))
            st = cb_fail(CB_ERR_ARG, "the gradient norm is not finite at step %lld: the run diverged "
                                     "(lower lr, add warmup or grad_clip)",
                         (long long)step + 1);
        double clip = cb_clip_scale(norm, s->grad_clip);
        double lr = cb_schedule_lr(&s->sched, step);
        if (st == CB_OK) st = cb_optimizer_step(L.opt, lr, clip);
        cb_graph_reset(&L.g);
        if (st != CB_OK) {
            st = cb_fail_context(st, "run '%s', step %lld", s->run_id ? s->run_id : "train",
                                 (long long)step + 1);
            break;
        }
        step++;
        double dt = cb_clock_seconds() - t0;
        int64_t tok = B * T * K;
        train_s += dt;
        tok_run += tok;
        L.st.tokens_seen += tok;
        L.st.elapsed_s += dt;
        if (s->losses) s->losses[step - 1] = loss;
        r->final_loss = loss;
        ema = isnan(ema) ? loss : 0.9 * ema + 0.1 * loss;
        double val = NAN;
        int64_t val_tokens = 0;
        if (have_val && (step % s->eval_every == 0 || step == s->steps)) {
            st = cb_eval_loss(s->model, &L.g, s->val, B, s->eval_batches, &val, &val_tokens);
            if (st != CB_OK) {
                st = cb_fail_context(st, "validation at step %lld", (long long)step);
                break;
            }
            last_val = r->val_loss = val;
        }
        log_metrics(&L, step, loss, lr, norm, clip, (double)tok / dt, val, val_tokens);
        char fields[160];
        int o = snprintf(fields, sizeof fields, "loss %.4f", ema);
        if (!isnan(last_val)) o += snprintf(fields + o, sizeof fields - (size_t)o, " val %.4f", last_val);
        snprintf(fields + o, sizeof fields - (size_t)o, " | %.0f tok/s",
                 train_s > 0 ? (double)tok_run / train_s : 0);
        cb_progress_update(&bar, step, fields);
        if (s->ckpt_dir && s->save_every > 0 && step % s->save_every == 0 && step < s->steps) {
            char name[48];
            snprintf(name, sizeof name, "step_%08lld", (long long)step);
            fill_state(&L, step, loss, last_val);
            st = save(&L, name, r);
            if (st != CB_OK) break;
            saved_step = step;
        }
    }
    r->end_step = step;
    r->seconds = cb_clock_seconds() - t_begin;
    r->tok_s = train_s > 0 ? (double)tok_run / train_s : 0;
    char fields[160];
    if (isnan(r->val_loss)) snprintf(fields, sizeof fields, "loss %.4f | %.0f tok/s", r->final_loss, r->tok_s);
    else snprintf(fields, sizeof fields, "loss %.4f val %.4f | %.0f tok/s", r->final_loss, r->val_loss, r->tok_s);
    cb_progress_finish(&bar, fields);
    if (st == CB_OK && s->ckpt_dir && step > start && (step == s->steps || step != saved_step)) {
        char name[48];
        if (step == s->steps) snprintf(name, sizeof name, "final");
        else snprintf(name, sizeof name, "step_%08lld", (long long)step);
        fill_state(&L, step, r->final_loss, r->val_loss);
        st = save(&L, name, r);
    }
    if (st == CB_OK && s->log) {
        cb_jsonl_begin(s->log, step == s->steps ? "run_complete" : "run_stopped");
        cb_jsonl_str(s->log, "run_id", s->run_id);
        cb_jsonl_str(s->log, "phase", s->phase);
        cb_jsonl_int(s->log, "step", step);
        cb_jsonl_num(s->log, "final_loss", r->final_loss);
        if (!isnan(r->val_loss)) cb_jsonl_num(s->log, "val_loss", r->val_loss);
        cb_jsonl_num(s->log, "seconds", r->seconds);
        cb_jsonl_num(s->log, "tok_s", r->tok_s);
        if (r->ckpt[0]) cb_jsonl_str(s->log, "checkpoint", r->ckpt);
        cb_jsonl_end(s->log);
    }
    free_loop(&L);
    return st;
}
