/* Bit-exact resume: N steps straight through and N/2 + resume + N/2 give identical losses, the
 * same final weights and the same optimizer moments, byte for byte. The model has dropout
 * (p = 0.1) and the run uses gradient accumulation, clipping, a cosine schedule with warmup and
 * periodic validation, so every piece of trainer state (weights, moments, update count, window
 * sampler, dropout stream, schedule position) must be restored for this to hold. Resume is
 * exercised three ways: a stopped run continued through its run directory ('latest'), a periodic
 * checkpoint of a finished run continued into another output directory, and the manifest's own
 * train.resume key. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/data.h"
#include "caramba/fileio.h"
#include "caramba/rng.h"
#include "caramba/trainer.h"
#include "testutil.h"

enum { N = 8, V = 32 };
static char root[4096];

static void write_data(const char *path) {
    cb_token_writer *w;
    assert_int_equal(cb_token_writer_open(&w, path, CB_U16), CB_OK);
    cb_rng r;
    cb_rng_seed(&r, 11);
    int32_t x = 1;
    for (int i = 0; i < 6000; i++) {
        x = cb_rng_uniform(&r) < 0.8f ? (x * 5 + 3) % V : (int32_t)cb_rng_below(&r, V);
        assert_int_equal(cb_token_writer_append(w, &x, 1), CB_OK);
    }
    assert_int_equal(cb_token_writer_commit(w), CB_OK);
}

static cb_manifest *manifest(const char *extra_train) {
    char yaml[16384];
    snprintf(yaml, sizeof yaml,
             "version: 1\nname: resume\n"
             "defaults: {val_frac: 0.1, eval_iters: 3, save_every: 4}\n"
             "model:\n  type: TransformerModel\n"
             "  embedder: {type: token, vocab_size: %d, d_model: 32}\n"
             "  tied_embeddings: true\n  topology:\n    type: StackedTopology\n    layers:\n"
             "      - type: ResidualTopology\n        layers:\n"
             "          - {type: RMSNormLayer, d_model: 32}\n"
             "          - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2, mode: gqa, bias: false}\n"
             "          - {type: DropoutLayer, p: 0.1}\n"
             "      - type: ResidualTopology\n        layers:\n"
             "          - {type: RMSNormLayer, d_model: 32}\n"
             "          - {type: SwiGLULayer, d_model: 32, d_ff: 64, bias: false}\n"
             "          - {type: DropoutLayer, p: 0.1}\n"
             "      - {type: RMSNormLayer, d_model: 32}\n"
             "groups:\n  - name: g\n    data: %s/tok.npy\n    runs:\n"
             "      - id: r\n        mode: train\n        seed: 7\n        steps: %d\n"
             "        train: {phase: standard, batch_size: 3, block_size: 16, lr: 0.01, scheduler: cosine,\n"
             "                warmup_steps: 2, min_lr_ratio: 0.1, grad_clip: 0.5, gradient_accumulation_steps: 2,\n"
             "                eval_batches: 2%s}\n",
             V, root, N, extra_train ? extra_train : "");
    cb_manifest *m = NULL;
    if (cb_manifest_parse("resume.yml", yaml, strlen(yaml), NULL, &m, NULL) != CB_OK)
        fail_msg("manifest: %s", cb_last_error());
    return m;
}

static void train(cb_manifest *m, const char *out, const char *resume, int64_t stop_after) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", root, out);
    FILE *devnull = fopen("/dev/null", "w");
    cb_group_opts o = {.out_dir = dir, .resume = resume, .progress = 0, .stop_after = stop_after, .out = devnull};
    if (cb_train_group(m, &m->groups[0], &o) != CB_OK) fail_msg("train %s: %s", out, cb_last_error());
    fclose(devnull);
}

/* Losses by step from a metrics.jsonl (later lines win: a resumed run appends). */
static int read_losses(const char *out, double *loss, double *val) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s/r/metrics.jsonl", root, out);
    char *txt;
    size_t n;
    assert_int_equal(cb_read_file(path, 1 << 22, &txt, &n), CB_OK);
    int got = 0;
    for (int i = 0; i <= N; i++) loss[i] = val[i] = NAN;
    for (char *line = strtok(txt, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        assert_non_null(o);
        const char *type = cJSON_GetObjectItem(o, "type")->valuestring;
        if (strcmp(type, "metrics") == 0) {
            int s = (int)cJSON_GetObjectItem(o, "step")->valuedouble;
            assert_true(s >= 1 && s <= N);
            loss[s] = cJSON_GetObjectItem(o, "loss")->valuedouble;
            cJSON *v = cJSON_GetObjectItem(o, "val_loss");
            if (v) val[s] = v->valuedouble;
            got++;
        }
        cJSON_Delete(o);
    }
    free(txt);
    return got;
}

static void same_file(const char *a, const char *b) {
    char pa[4300], pb[4300];
    snprintf(pa, sizeof pa, "%s/%s", root, a);
    snprintf(pb, sizeof pb, "%s/%s", root, b);
    char *x, *y;
    size_t nx, ny;
    assert_int_equal(cb_read_file(pa, 1 << 26, &x, &nx), CB_OK);
    assert_int_equal(cb_read_file(pb, 1 << 26, &y, &ny), CB_OK);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    free(x);
    free(y);
}

static void test_bit_exact_resume(void **state) {
    (void)state;
    snprintf(root, sizeof root, "%s", tu_tmpdir());
    char data[4200];
    snprintf(data, sizeof data, "%s/tok.npy", root);
    write_data(data);
    cb_manifest *m = manifest(NULL);

    /* A: N steps straight through (periodic checkpoint at N/2) */
    train(m, "A", NULL, 0);
    /* B: stop after N/2, then resume through the run directory's `latest` */
    train(m, "B", NULL, N / 2);
    char bdir[4200];
    snprintf(bdir, sizeof bdir, "%s/B/r", root);
    char *latest = cb_train_ckpt_resolve(bdir);
    assert_non_null(latest);
    assert_non_null(strstr(latest, "step_00000004"));
    free(latest);
    train(m, "B", bdir, 0);
    /* C: resume A's periodic checkpoint into another directory */
    char ack[4200];
    snprintf(ack, sizeof ack, "%s/A/r/step_00000004", root);
    train(m, "C", ack, 0);

    double la[N + 1], va[N + 1], lb[N + 1], vb[N + 1], lc[N + 1], vc[N + 1];
    assert_int_equal(read_losses("A", la, va), N);
    assert_int_equal(read_losses("B", lb, vb), N);
    assert_int_equal(read_losses("C", lc, vc), N / 2);
    for (int s = 1; s <= N; s++) {
        assert_true(isfinite(la[s]));
        assert_true(la[s] == lb[s]); /* identical, not close */
        if (s > N / 2) assert_true(la[s] == lc[s]);
        if (s % 3 == 0 || s == N) {
            assert_true(isfinite(va[s]));
            assert_true(va[s] == vb[s]);
            if (s > N / 2) assert_true(va[s] == vc[s]);
        }
    }
    same_file("A/r/final/model.safetensors", "B/r/final/model.safetensors");
    same_file("A/r/final/model.safetensors", "C/r/final/model.safetensors");
    same_file("A/r/final/optimizer.safetensors", "B/r/final/optimizer.safetensors");
    same_file("A/r/final/optimizer.safetensors", "C/r/final/optimizer.safetensors");

    /* dropout really ran: the stream advanced, and the restored counter is the one saved */
    cb_train_state s4, sf;
    char p[4300];
    snprintf(p, sizeof p, "%s/A/r/step_00000004", root);
    assert_int_equal(cb_train_ckpt_read_state(p, &s4), CB_OK);
    snprintf(p, sizeof p, "%s/A/r/final", root);
    assert_int_equal(cb_train_ckpt_read_state(p, &sf), CB_OK);
    assert_true(s4.dropout_counter > 0);
    assert_true(sf.dropout_counter > s4.dropout_counter);
    assert_int_equal(s4.step, 4);
    assert_int_equal(sf.step, N);
    assert_true(sf.data_pos == 2 * s4.data_pos); /* 2 micro-batches x 3 windows per step */
    assert_int_equal(s4.data_pos, 4 * 2 * 3);
    cb_manifest_free(m);

    /* the manifest's train.resume key does the same */
    char extra[4400];
    snprintf(extra, sizeof extra, ", resume: %s/A/r/step_00000004", root);
    m = manifest(extra);
    train(m, "D", NULL, 0);
    double ld[N + 1], vd[N + 1];
    assert_int_equal(read_losses("D", ld, vd), N / 2);
    for (int s = N / 2 + 1; s <= N; s++) assert_true(la[s] == ld[s]);
    same_file("A/r/final/model.safetensors", "D/r/final/model.safetensors");
    cb_manifest_free(m);

    /* a different seed is a different run: the losses change */
    m = manifest(NULL);
    FILE *devnull = fopen("/dev/null", "w");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/E", root);
    cb_group_opts o = {.out_dir = dir, .progress = 0, .has_seed = true, .seed = 8, .out = devnull};
    assert_int_equal(cb_train_group(m, &m->groups[0], &o), CB_OK);
    fclose(devnull);
    double le[N + 1], ve[N + 1];
    read_losses("E", le, ve);
    assert_true(le[1] != la[1]);
    cb_manifest_free(m);
    tu_rmtree(root);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_exact_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
