/* Training end to end on small generated data:
 *   - the loss decreases (a Markov chain whose next token is mostly a fixed function of the
 *     current one: held-out loss must fall far below log V)
 *   - k micro-batches accumulate to the gradient of one k-times batch (1e-6 relative)
 *   - metrics.jsonl lines parse (cJSON) with the documented fields; TensorBoard files appear
 *   - RuntimePlan: saved, reused while the key matches, a new key when the train config changes;
 *     auto batch size
 *   - a later run starting from an earlier run's checkpoint (init_from / global)
 *   - bad train configs and unreadable data fail with clear messages and leave earlier
 *     checkpoints byte-for-byte intact
 *   - unigram entropy; JSONL number formatting */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/data.h"
#include "caramba/device.h"
#include "caramba/fileio.h"
#include "caramba/rng.h"
#include "caramba/runtime_plan.h"
#include "caramba/trainer.h"
#include "testutil.h"

enum { V = 16 };
static char root[4096];

static void write_markov(const char *path, int n, int vocab_limit) {
    cb_token_writer *w;
    assert_int_equal(cb_token_writer_open(&w, path, CB_U16), CB_OK);
    cb_rng r;
    cb_rng_seed(&r, 5);
    int32_t x = 1;
    for (int i = 0; i < n; i++) {
        x = cb_rng_uniform(&r) < 0.9f ? (x * 7 + 3) % V : (int32_t)cb_rng_below(&r, V);
        int32_t y = i == n / 2 ? vocab_limit : x; /* vocab_limit > 0: one id outside the vocabulary */
        if (vocab_limit <= 0) y = x;
        assert_int_equal(cb_token_writer_append(w, &y, 1), CB_OK);
    }
    assert_int_equal(cb_token_writer_commit(w), CB_OK);
}

#define MODEL                                                                                      \
    "model:\n  type: TransformerModel\n"                                                           \
    "  embedder: {type: token, vocab_size: 16, d_model: 32}\n"                                      \
    "  tied_embeddings: false\n  topology:\n    type: StackedTopology\n    layers:\n"              \
    "      - type: NestedTopology\n        repeat: 1\n        layers:\n"                           \
    "          - type: ResidualTopology\n            layers:\n"                                    \
    "              - {type: RMSNormLayer, d_model: 32}\n"                                          \
    "              - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2, mode: gqa, "   \
    "bias: false}\n"                                                                               \
    "          - type: ResidualTopology\n            layers:\n"                                    \
    "              - {type: RMSNormLayer, d_model: 32}\n"                                          \
    "              - {type: SwiGLULayer, d_model: 32, d_ff: 64, bias: false}\n"                    \
    "      - {type: RMSNormLayer, d_model: 32}\n"                                                  \
    "      - {type: LinearLayer, d_in: 32, d_out: 16, bias: false}\n"

static cb_manifest *parse(const char *defaults, const char *runs, const char *data) {
    char yaml[16384];
    snprintf(yaml, sizeof yaml,
             "version: 1\nname: t\ndefaults: {%s}\n" MODEL "groups:\n  - name: g\n    data: %s\n    runs:\n%s",
             defaults, data, runs);
    cb_manifest *m = NULL;
    if (cb_manifest_parse("t.yml", yaml, strlen(yaml), NULL, &m, NULL) != CB_OK)
        fail_msg("manifest: %s", cb_last_error());
    return m;
}

static cb_status train(cb_manifest *m, const char *out) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", root, out);
    FILE *devnull = fopen("/dev/null", "w");
    cb_group_opts o = {.out_dir = dir, .progress = 0, .out = devnull};
    cb_status st = cb_train_group(m, &m->groups[0], &o);
    fclose(devnull);
    return st;
}

static const char *p(const char *rel) {
    static char bufs[4][4300];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 4300, "%s/%s", root, rel);
    return b;
}

/* ---- the loss goes down ------------------------------------------------------------------- */

static void test_loss_decreases(void **state) {
    (void)state;
    cb_manifest *m = parse("val_frac: 0.1, eval_iters: 20, save_every: 0",
                           "      - id: a\n        mode: train\n        steps: 80\n"
                           "        train: {phase: standard, batch_size: 8, block_size: 16, lr: 0.01, "
                           "scheduler: cosine, warmup_steps: 5, min_lr_ratio: 0.1, grad_clip: 1.0, eval_batches: 8}\n",
                           p("markov.npy"));
    /* held-out loss of the freshly initialised model, the same way the loop measures it */
    cb_model *model;
    assert_int_equal(cb_model_from_manifest(&model, &m->model, CB_CPU, 1337, 16), CB_OK);
    cb_token_file *f;
    assert_int_equal(cb_tokens_open(&f, p("markov.npy")), CB_OK);
    cb_dataset tr, va;
    assert_int_equal(cb_dataset_split(f, 0.1, 16, 1, &tr, &va), CB_OK);
    cb_graph g;
    cb_graph_init(&g, CB_CPU);
    double before;
    int64_t ntok;
    assert_int_equal(cb_eval_loss(model, &g, &va, 8, 8, &before, &ntok), CB_OK);
    assert_int_equal(ntok, 8 * 8 * 16);
    assert_true(fabs(before - log(V)) < 0.5); /* an untrained model is close to uniform */
    cb_graph_free(&g);
    cb_model_free(model);
    cb_tokens_close(f);

    assert_int_equal(train(m, "dec"), CB_OK);
    /* metrics: training loss falls, and the last validation is far below the start */
    char *txt;
    size_t n;
    assert_int_equal(cb_read_file(p("dec/a/metrics.jsonl"), 1 << 22, &txt, &n), CB_OK);
    double first = 0, last = 0, val = NAN;
    int steps = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        if (strcmp(cJSON_GetObjectItem(o, "type")->valuestring, "metrics") == 0) {
            int s = (int)cJSON_GetObjectItem(o, "step")->valuedouble;
            double l = cJSON_GetObjectItem(o, "loss")->valuedouble;
            if (s <= 10) first += l / 10;
            if (s > 70) last += l / 10;
            cJSON *v = cJSON_GetObjectItem(o, "val_loss");
            if (v) val = v->valuedouble;
            steps++;
        }
        cJSON_Delete(o);
    }
    free(txt);
    assert_int_equal(steps, 80);
    /* the chain's entropy rate: 0.9 deterministic + 0.1 uniform over 16 is about 0.6 nats */
    assert_true(last < first - 1.0);
    assert_true(val < before - 1.2);
    cb_manifest_free(m);
}

/* ---- gradient accumulation ---------------------------------------------------------------- */

static void test_accumulation_equals_big_batch(void **state) {
    (void)state;
    cb_manifest *m = parse("val_frac: 0.1", "      - id: a\n        mode: train\n        steps: 1\n"
                                            "        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.01}\n",
                           p("markov.npy"));
    cb_model *a, *b;
    assert_int_equal(cb_model_from_manifest(&a, &m->model, CB_CPU, 3, 16), CB_OK);
    assert_int_equal(cb_model_from_manifest(&b, &m->model, CB_CPU, 3, 16), CB_OK);
    assert_int_equal(cb_model_enable_grads(a), CB_OK);
    assert_int_equal(cb_model_enable_grads(b), CB_OK);
    cb_token_file *f;
    assert_int_equal(cb_tokens_open(&f, p("markov.npy")), CB_OK);
    cb_dataset ds;
    assert_int_equal(cb_dataset_init(&ds, f, 0, f->n, 16, 1), CB_OK);
    enum { K = 4, B = 2, T = 16 };
    int32_t big_x[K * B * T], big_y[K * B * T];
    int64_t win[K * B];
    for (int i = 0; i < K * B; i++) win[i] = 37 * i + 5;
    int64_t shb[2] = {K * B, T}, shm[2] = {B, T};
    cb_tensor X, Y, mx[K], my[K];
    cb_tensor_init(&X, CB_I32, CB_CPU, 2, shb, big_x);
    cb_tensor_init(&Y, CB_I32, CB_CPU, 2, shb, big_y);
    assert_int_equal(cb_dataset_batch(&ds, win, K * B, &X, &Y), CB_OK);
    cb_batch micro[K], big = {&X, &Y};
    for (int k = 0; k < K; k++) {
        cb_tensor_init(&mx[k], CB_I32, CB_CPU, 2, shm, big_x + k * B * T);
        cb_tensor_init(&my[k], CB_I32, CB_CPU, 2, shm, big_y + k * B * T);
        micro[k].x = &mx[k];
        micro[k].y = &my[k];
    }
    cb_graph g;
    cb_graph_init(&g, CB_CPU);
    double la, lb;
    assert_int_equal(cb_train_grads(a, NULL, &g, NULL, micro, K, &la), CB_OK);
    assert_int_equal(cb_train_grads(b, NULL, &g, NULL, &big, 1, &lb), CB_OK);
    assert_true(fabs(la - lb) < 1e-6 * fabs(lb));
    double num = 0, den = 0, worst = 0;
    for (int i = 0; i < a->n_params; i++) {
        const float *ga = cb_f32(a->params[i]->t->grad), *gb = cb_f32(b->params[i]->t->grad);
        int64_t n = cb_tensor_numel(a->params[i]->t);
        double pn = 0, pd = 0;
        for (int64_t j = 0; j < n; j++) {
            pn += (double)(ga[j] - gb[j]) * (ga[j] - gb[j]);
            pd += (double)gb[j] * gb[j];
        }
        num += pn;
        den += pd;
        worst = fmax(worst, sqrt(pn / fmax(pd, 1e-30)));
    }
    assert_true(den > 0);
    assert_true(sqrt(num / den) < 1e-6); /* all gradients together */
    assert_true(worst < 1e-5);           /* and every tensor on its own */
    /* accumulating twice without zeroing is not what a step does: cb_train_grads zeroes first */
    assert_int_equal(cb_train_grads(b, NULL, &g, NULL, &big, 1, &lb), CB_OK);
    assert_true(fabs(cb_f32(b->params[0]->t->grad)[0] - cb_f32(a->params[0]->t->grad)[0]) <=
                1e-5 * fabs(cb_f32(a->params[0]->t->grad)[0]) + 1e-9);
    cb_graph_free(&g);
    cb_model_free(a);
    cb_model_free(b);
    cb_tokens_close(f);
    cb_manifest_free(m);
}

/* ---- logs ---------------------------------------------------------------------------------- */

static int count_files(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) n++;
    closedir(d);
    return n;
}

static void test_jsonl_and_tensorboard(void **state) {
    (void)state;
    cb_manifest *m = parse("val_frac: 0.1, eval_iters: 4, save_every: 5, instrument: \"rich + TensorBoard\"",
                           "      - id: a\n        mode: train\n        steps: 10\n"
                           "        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.01, eval_batches: 2}\n"
                           "      - id: b\n        mode: train\n        steps: 4\n"
                           "        train: {phase: global, batch_size: 2, block_size: 8, lr: 0.001, eval_every: 0}\n"
                           "      - id: c\n        mode: train\n        steps: 1\n"
                           "        train: {phase: standard, batch_size: 1, block_size: 4, lr: 1.0e-30, init_from: a}\n",
                           p("markov.npy"));
    assert_int_equal(train(m, "logs"), CB_OK);
    /* c started from a's final weights (by run id) and barely moved them: the same bytes */
    {
        char *wa, *wc;
        size_t na, nc;
        assert_int_equal(cb_read_file(p("logs/a/final/model.safetensors"), 1 << 24, &wa, &na), CB_OK);
        assert_int_equal(cb_read_file(p("logs/c/final/model.safetensors"), 1 << 24, &wc, &nc), CB_OK);
        assert_int_equal(na, nc);
        assert_memory_equal(wa, wc, na);
        free(wc);
        /* init_from a run directory: its `latest` checkpoint */
        char runs[1024];
        snprintf(runs, sizeof runs,
                 "      - id: d\n        mode: train\n        steps: 1\n"
                 "        train: {phase: standard, batch_size: 1, block_size: 4, lr: 1.0e-30, init_from: %s}\n",
                 p("logs/a"));
        cb_manifest *m2 = parse("val_frac: 0.1", runs, p("markov.npy"));
        assert_int_equal(train(m2, "logs2"), CB_OK);
        cb_manifest_free(m2);
        assert_int_equal(cb_read_file(p("logs2/d/final/model.safetensors"), 1 << 24, &wc, &nc), CB_OK);
        assert_int_equal(na, nc);
        assert_memory_equal(wa, wc, na);
        free(wa);
        free(wc);
    }
    char *txt;
    size_t n;
    assert_int_equal(cb_read_file(p("logs/a/metrics.jsonl"), 1 << 22, &txt, &n), CB_OK);
    int metrics = 0, vals = 0, starts = 0, ckpts = 0, completes = 0, prev = 0;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        assert_true(cJSON_IsObject(o));
        const cJSON *type = cJSON_GetObjectItem(o, "type");
        assert_true(cJSON_IsString(type));
        assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "ts")));
        assert_string_equal(cJSON_GetObjectItem(o, "run_id")->valuestring, "a");
        if (strcmp(type->valuestring, "metrics") == 0) {
            const char *fields[] = {"step", "loss", "lr", "grad_norm", "tok_s", "tokens", "elapsed_s"};
            for (int i = 0; i < 7; i++) assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, fields[i])));
            assert_string_equal(cJSON_GetObjectItem(o, "phase")->valuestring, "standard");
            int s = (int)cJSON_GetObjectItem(o, "step")->valuedouble;
            assert_int_equal(s, prev + 1);
            prev = s;
            assert_true(cJSON_GetObjectItem(o, "lr")->valuedouble == 0.01); /* scheduler none */
            assert_int_equal((int)cJSON_GetObjectItem(o, "tokens")->valuedouble, s * 2 * 16);
            const cJSON *v = cJSON_GetObjectItem(o, "val_loss");
            if (s % 4 == 0 || s == 10) {
                assert_true(cJSON_IsNumber(v));
                assert_int_equal((int)cJSON_GetObjectItem(o, "val_tokens")->valuedouble, 2 * 2 * 16);
                vals++;
            } else {
                assert_null(v);
            }
            metrics++;
        } else if (strcmp(type->valuestring, "run_start") == 0) {
            starts++;
        } else if (strcmp(type->valuestring, "checkpoint") == 0) {
            ckpts++;
            assert_true(cJSON_IsString(cJSON_GetObjectItem(o, "path")));
        } else if (strcmp(type->valuestring, "run_complete") == 0) {
            completes++;
            assert_true(cJSON_IsNumber(cJSON_GetObjectItem(o, "final_loss")));
        }
        cJSON_Delete(o);
    }
    free(txt);
    assert_int_equal(metrics, 10);
    assert_int_equal(vals, 3);
    assert_int_equal(starts, 1);
    assert_int_equal(ckpts, 2); /* step 5 and final */
    assert_int_equal(completes, 1);
    /* checkpoint layout */
    const char *files[] = {"model.safetensors", "config.json", "optimizer.safetensors", "trainer.json"};
    for (int i = 0; i < 4; i++) {
        char f1[4400], f2[4400];
        snprintf(f1, sizeof f1, "%s/%s", p("logs/a/final"), files[i]);
        snprintf(f2, sizeof f2, "%s/%s", p("logs/a/step_00000005"), files[i]);
        assert_true(cb_file_exists(f1));
        assert_true(cb_file_exists(f2));
    }
    /* Llama-shaped: weights under Hugging Face names, readable as a checkpoint */
    cb_checkpoint *ck;
    assert_int_equal(cb_checkpoint_open(&ck, p("logs/a/final")), CB_OK);
    assert_non_null(cb_checkpoint_find(ck, "model.embed_tokens.weight", NULL));
    assert_non_null(cb_checkpoint_find(ck, "model.layers.0.self_attn.q_proj.weight", NULL));
    assert_non_null(cb_checkpoint_find(ck, "lm_head.weight", NULL));
    cb_checkpoint_close(ck);
    cb_llama_config hc;
    assert_int_equal(cb_llama_config_load(p("logs/a/final"), &hc), CB_OK);
    assert_int_equal(hc.hidden_size, 32);
    assert_int_equal(hc.num_key_value_heads, 2);
    assert_int_equal(hc.intermediate_size, 64);
    assert_int_equal(hc.vocab_size, 16);
    /* TensorBoard ("TensorBoard" matched case-insensitively) for both runs; run b has no eval */
    assert_int_equal(count_files(p("logs/tb/a"), "events.out.tfevents."), 1);
    assert_int_equal(count_files(p("logs/tb/b"), "events.out.tfevents."), 1);
    assert_int_equal(cb_read_file(p("logs/b/metrics.jsonl"), 1 << 22, &txt, &n), CB_OK);
    assert_null(strstr(txt, "val_loss"));
    assert_non_null(strstr(txt, "\"phase\": \"global\""));
    /* b's own settings, not a's: batch 2 x block 8 */
    assert_non_null(strstr(txt, "\"batch_size\": 2, \"block_size\": 8,"));
    assert_non_null(strstr(txt, "\"tokens\": 16,"));
    free(txt);
    cb_manifest_free(m);

    char buf[40];
    assert_string_equal(cb_fmt_double(0.1, buf, sizeof buf), "0.1"); /* shortest exact form */
    assert_string_equal(cb_fmt_double(1.0 / 3.0, buf, sizeof buf), "0.3333333333333333");
    assert_true(strtod(cb_fmt_double(0.1f, buf, sizeof buf), NULL) == (double)0.1f);
    assert_string_equal(cb_fmt_double(NAN, buf, sizeof buf), "null");
    assert_string_equal(cb_fmt_double(INFINITY, buf, sizeof buf), "null");
    assert_string_equal(cb_fmt_double(3.0, buf, sizeof buf), "3");
}

/* ---- RuntimePlan -------------------------------------------------------------------------- */

static void test_runtime_plan(void **state) {
    (void)state;
    cb_manifest *m = parse("val_frac: 0.1",
                           "      - id: a\n        mode: train\n        steps: 1\n"
                           "        train: {phase: standard, batch_size: 8, block_size: 1024, lr: 0.01, "
                           "auto_batch_size: true, auto_batch_ref_block_size: 512, auto_batch_min: 1}\n"
                           "      - id: b\n        mode: train\n        steps: 1\n"
                           "        train: {phase: standard, batch_size: 8, block_size: 1024, lr: 0.02, "
                           "auto_batch_size: true, auto_batch_ref_block_size: 512, auto_batch_min: 1, init_from: a}\n",
                           p("markov.npy"));
    const cb_train_cfg *ta = &m->groups[0].runs[0].train, *tb = &m->groups[0].runs[1].train;
    cb_runtime_plan p1, p2, p3;
    assert_int_equal(cb_runtime_plan_get(p("plans"), &m->model, ta, &p1), CB_OK);
    assert_false(p1.reused);
    assert_int_equal(p1.batch_size, 4); /* 8 * 512 / 1024 (spec-train §12: 8 @ 1024, ref 512 -> 4) */
    assert_string_equal(p1.dtype, "float32");
    assert_string_equal(p1.device, "cpu");
    assert_true(p1.threads >= 1);
    assert_int_equal(strlen(p1.key), 16);
    assert_true(cb_file_exists(p1.path));
    assert_int_equal(cb_runtime_plan_get(p("plans"), &m->model, ta, &p2), CB_OK);
    assert_true(p2.reused);
    assert_string_equal(p2.key, p1.key);
    assert_int_equal(p2.batch_size, 4);
    /* another train config (lr) is another key; init_from does not count */
    assert_int_equal(cb_runtime_plan_get(p("plans"), &m->model, tb, &p3), CB_OK);
    assert_false(p3.reused);
    assert_string_not_equal(p3.key, p1.key);
    /* the file: canonical JSON with the payload and the plan, one line */
    char *txt;
    size_t n;
    assert_int_equal(cb_read_file(p1.path, 1 << 22, &txt, &n), CB_OK);
    assert_int_equal(txt[n - 1], '\n');
    assert_null(strstr(txt, "\": ")); /* no whitespace */
    assert_null(strstr(txt, ", \""));
    cJSON *o = cJSON_Parse(txt);
    assert_non_null(o);
    cJSON *plan = cJSON_GetObjectItem(o, "plan");
    assert_string_equal(cJSON_GetObjectItem(plan, "key")->valuestring, p1.key);
    assert_int_equal((int)cJSON_GetObjectItem(plan, "batch_size")->valuedouble, 4);
    /* the key is FNV-1a-64 of the canonical payload */
    char *payload = cb_runtime_payload(&m->model, ta, "cpu");
    char key[17];
    cb_runtime_key(payload, key);
    assert_string_equal(key, p1.key);
    assert_null(strstr(payload, "teacher_ckpt"));
    free(payload);
    cJSON_Delete(o);
    free(txt);
    /* FNV-1a-64 reference values */
    assert_true(cb_fnv1a64("", 0) == 0xcbf29ce484222325ull);
    assert_true(cb_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cull);
    assert_true(cb_fnv1a64("foobar", 6) == 0x85944171f73967e8ull);
    /* a corrupt plan file is treated as absent and rewritten */
    assert_int_equal(cb_write_file_atomic(p1.path, "{not json", 9), CB_OK);
    assert_int_equal(cb_runtime_plan_get(p("plans"), &m->model, ta, &p2), CB_OK);
    assert_false(p2.reused);
    assert_int_equal(cb_runtime_plan_get(p("plans"), &m->model, ta, &p2), CB_OK);
    assert_true(p2.reused);
    cb_manifest_free(m);
}

/* ---- errors leave earlier checkpoints intact ------------------------------------------------ */

typedef struct snap {
    char *files[8];
    size_t sizes[8];
} snap;

static const char *CK_FILES[] = {"good/a/final/model.safetensors", "good/a/final/optimizer.safetensors",
                                 "good/a/final/trainer.json", "good/a/final/config.json", "good/a/latest"};

static void take(snap *s) {
    for (int i = 0; i < 5; i++) {
        size_t n;
        assert_int_equal(cb_read_file(p(CK_FILES[i]), 1 << 26, &s->files[i], &n), CB_OK);
        s->sizes[i] = n;
    }
}

static void same(const snap *a) {
    for (int i = 0; i < 5; i++) {
        char *t;
        size_t n;
        assert_int_equal(cb_read_file(p(CK_FILES[i]), 1 << 26, &t, &n), CB_OK);
        assert_int_equal(n, a->sizes[i]);
        assert_memory_equal(t, a->files[i], n);
        free(t);
    }
}

static void expect_fail(const char *defaults, const char *runs, const char *data, const char *msg) {
    cb_manifest *m = parse(defaults, runs, data);
    cb_status st = train(m, "good");
    if (st == CB_OK) fail_msg("expected an error containing '%s'", msg);
    if (!strstr(cb_last_error(), msg)) fail_msg("error '%s' lacks '%s'", cb_last_error(), msg);
    cb_manifest_free(m);
}

static void test_errors_keep_checkpoints(void **state) {
    (void)state;
    const char *D = "val_frac: 0.1, save_every: 0";
    cb_manifest *m = parse(D, "      - id: a\n        mode: train\n        steps: 3\n"
                              "        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.01}\n",
                           p("markov.npy"));
    assert_int_equal(train(m, "good"), CB_OK);
    cb_manifest_free(m);
    snap s;
    take(&s);
    const char *RUN = "      - id: a\n        mode: train\n        steps: 3\n        train: {phase: standard, "
                      "batch_size: 2, block_size: 16, lr: 0.01";
    char runs[2048];
    /* unreadable data */
    snprintf(runs, sizeof runs, "%s}\n", RUN);
    expect_fail(D, runs, p("missing.npy"), "missing.npy");
    same(&s);
    assert_int_equal(tu_write_file(p("garbage.npy"), "not a numpy file", 16), 0);
    expect_fail(D, runs, p("garbage.npy"), "garbage.npy");
    same(&s);
    /* a token outside the vocabulary */
    write_markov(p("oov.npy"), 2000, 40);
    expect_fail(D, runs, p("oov.npy"), "token 40 at position 1000 is outside [0, 16)");
    same(&s);
    /* block_size larger than the data */
    write_markov(p("short.npy"), 40, 0);
    expect_fail(D, runs, p("short.npy"), "block_size must be smaller than data length");
    same(&s);
    /* phases and dtypes this build cannot run */
    expect_fail(D, "      - id: a\n        mode: train\n        steps: 3\n        train: {phase: blockwise, "
                   "batch_size: 2, block_size: 16, lr: 0.01, teacher_ckpt: x}\n",
                p("markov.npy"), "phase blockwise (distillation) is not implemented");
    same(&s);
    snprintf(runs, sizeof runs, "%s, dtype: bfloat16}\n", RUN);
    expect_fail(D, runs, p("markov.npy"), "train.dtype bfloat16 is not supported on the CPU");
    same(&s);
    if (!cb_device_available(CB_CUDA)) {
        snprintf(runs, sizeof runs, "%s, device: cuda}\n", RUN);
        expect_fail(D, runs, p("markov.npy"), "train.device is 'cuda'");
        same(&s);
    }
    /* starting weights that are not there */
    snprintf(runs, sizeof runs, "%s, init_from: %s}\n", RUN, p("nowhere"));
    expect_fail(D, runs, p("markov.npy"), "nowhere");
    same(&s);
    /* resuming another run's checkpoint, and a checkpoint of another shape */
    snprintf(runs, sizeof runs,
             "      - id: z\n        mode: train\n        steps: 3\n        train: {phase: standard, "
             "batch_size: 2, block_size: 16, lr: 0.01, resume: %s}\n",
             p("good/a"));
    expect_fail(D, runs, p("markov.npy"), "belongs to run 'a', not 'z'");
    same(&s);
    snprintf(runs, sizeof runs,
             "      - id: a\n        mode: train\n        steps: 6\n        train: {phase: standard, "
             "batch_size: 4, block_size: 16, lr: 0.01}\n");
    {
        cb_manifest *mm = parse(D, runs, p("markov.npy"));
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/good", root);
        FILE *devnull = fopen("/dev/null", "w");
        cb_group_opts o = {.out_dir = dir, .resume = p("good/a"), .progress = 0, .out = devnull};
        assert_int_equal(cb_train_group(mm, &mm->groups[0], &o), CB_ERR_ARG);
        assert_non_null(strstr(cb_last_error(), "written with batch_size 2"));
        fclose(devnull);
        cb_manifest_free(mm);
    }
    same(&s);
    /* a run that diverges stops with a message; the earlier checkpoint stays (the diverged
     * forward also exercises the kernels on NaN under the sanitizers) */
    {
        snprintf(runs, sizeof runs,
                 "      - id: a\n        mode: train\n        steps: 20\n        train: {phase: standard, "
                 "batch_size: 2, block_size: 16, lr: 1.0e+30}\n");
        expect_fail(D, runs, p("markov.npy"), "diverged");
        same(&s);
    }
    /* schema errors never reach training */
    const char *bad[][2] = {
        {"        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.01, beta2: 1.0}\n",
         "AdamW betas must be below 1"},
        {"        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.01, grad_clip: -1}\n",
         "grad_clip"},
        {"        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.01, init_from: a}\n",
         "which is this run"},
        {"        train: {phase: global, batch_size: 2, block_size: 16, lr: 0.01}\n",
         "phase: global fine-tunes existing weights"},
        {"        train: {phase: standard, batch_size: 2, block_size: 16, lr: 0.01, eval_batches: 0}\n",
         "eval_batches"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[8192];
        snprintf(yaml, sizeof yaml,
                 "version: 1\nname: t\n" MODEL "groups:\n  - name: g\n    data: x.npy\n    runs:\n"
                 "      - id: a\n        mode: train\n        steps: 3\n%s",
                 bad[i][0]);
        cb_manifest *mm = NULL;
        cb_diags errs = {0};
        assert_int_not_equal(cb_manifest_parse("bad.yml", yaml, strlen(yaml), NULL, &mm, &errs), CB_OK);
        if (!strstr(cb_last_error(), bad[i][1])) fail_msg("'%s' lacks '%s'", cb_last_error(), bad[i][1]);
        cb_diags_free(&errs);
    }
    for (int i = 0; i < 5; i++) free(s.files[i]);
}

static void test_unigram_entropy(void **state) {
    (void)state;
    cb_token_writer *w;
    assert_int_equal(cb_token_writer_open(&w, p("uni.npy"), CB_U16), CB_OK);
    int32_t ids[8] = {0, 0, 1, 1, 2, 2, 3, 3};
    assert_int_equal(cb_token_writer_append(w, ids, 8), CB_OK);
    assert_int_equal(cb_token_writer_commit(w), CB_OK);
    cb_token_file *f;
    assert_int_equal(cb_tokens_open(&f, p("uni.npy")), CB_OK);
    double h;
    assert_int_equal(cb_unigram_entropy(f, 0, 8, &h), CB_OK);
    assert_true(fabs(h - log(4.0)) < 1e-12);
    assert_int_equal(cb_unigram_entropy(f, 0, 4, &h), CB_OK); /* 0 0 1 1 */
    assert_true(fabs(h - log(2.0)) < 1e-12);
    assert_int_equal(cb_unigram_entropy(f, 0, 2, &h), CB_OK); /* one symbol */
    assert_true(h == 0.0);
    assert_int_equal(cb_unigram_entropy(f, 0, 3, &h), CB_OK); /* 2/3, 1/3 */
    assert_true(fabs(h - (-(2.0 / 3) * log(2.0 / 3) - (1.0 / 3) * log(1.0 / 3))) < 1e-12);
    cb_tokens_close(f);
}

static int setup(void **state) {
    (void)state;
    snprintf(root, sizeof root, "%s", tu_tmpdir());
    write_markov(p("markov.npy"), 20000, 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tu_rmtree(root);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_decreases),
        cmocka_unit_test(test_accumulation_equals_big_batch),
        cmocka_unit_test(test_jsonl_and_tensorboard),
        cmocka_unit_test(test_runtime_plan),
        cmocka_unit_test(test_errors_keep_checkpoints),
        cmocka_unit_test(test_unigram_entropy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
