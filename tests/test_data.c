/* Token files (NumPy-written .npy mapped in place, .tokens text), dataset windows and the
 * train/val split (spec-train.md §8.1), the seeded sampler's determinism and resume, the token
 * writer, and prepare-data against the reference encodings of the Brown sample. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/data.h"
#include "caramba/fileio.h"
#include "caramba/tokenizer.h"
#include "testutil.h"

/* tests/data/npy/make_npy.py: element k is (k * 7 + 1) % 30011 */
static int64_t npy_val(int64_t k) {
    return (k * 7 + 1) % 30011;
}

static void test_npy_token_files(void **state) {
    (void)state;
    const struct {
        const char *file;
        cb_dtype dt;
        int64_t n;
    } cases[] = {
        {"u16_1d.npy", CB_U16, 5},  {"u32_2d.npy", CB_U32, 6}, {"i32_2d.npy", CB_I32, 8},
        {"i64_3d.npy", CB_I64, 24}, {"v3_u16.npy", CB_U16, 9},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char rel[128];
        snprintf(rel, sizeof rel, "tests/data/npy/%s", cases[c].file);
        cb_token_file *f;
        assert_int_equal(cb_tokens_open(&f, tu_path(rel)), CB_OK);
        assert_int_equal(f->dtype, cases[c].dt);
        assert_int_equal(f->n, cases[c].n);
        /* mapped in place: the data pointer is the mapping's, whatever the dtype */
        assert_non_null(f->npy);
        assert_ptr_equal(f->data, f->npy->data);
        assert_null(f->owned);
        int64_t buf64[32];
        int32_t buf32[32];
        cb_tokens_read_i64(f, 1, f->n - 1, buf64);
        cb_tokens_read_i32(f, 0, f->n, buf32);
        for (int64_t k = 0; k < f->n; k++) {
            assert_int_equal(cb_tokens_at(f, k), npy_val(k));
            assert_int_equal(buf32[k], npy_val(k));
            if (k) assert_int_equal(buf64[k - 1], npy_val(k));
        }
        assert_int_equal(cb_tokens_validate(f, 30011), CB_OK);
        assert_int_equal(cb_tokens_validate(f, 20), CB_ERR_FORMAT);
        assert_non_null(strstr(cb_last_error(), "token 22 at position 3 is outside [0, 20)"));
        cb_tokens_close(f);
    }
    cb_token_file *f;
    assert_int_equal(cb_tokens_open(&f, tu_path("tests/data/npy/f32_4d.npy")), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "must be integers"));
    assert_int_equal(cb_tokens_open(&f, tu_path("tests/data/npy/bigendian_i4.npy")),
                     CB_ERR_UNSUPPORTED);
    /* any other suffix is read as .npy */
    assert_int_equal(cb_tokens_open(&f, tu_path("tests/data/npy/make_npy.py")), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "bad magic"));
}

static void test_text_token_files(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/a.tokens", dir);
    const char good[] = "  1 2\n3\t4 \r\n\n2147483647\n";
    assert_int_equal(tu_write_file(path, good, strlen(good)), 0);
    cb_token_file *f;
    assert_int_equal(cb_tokens_open(&f, path), CB_OK);
    assert_int_equal(f->dtype, CB_I32);
    assert_int_equal(f->n, 5);
    int64_t want[] = {1, 2, 3, 4, 2147483647};
    for (int i = 0; i < 5; i++) assert_int_equal(cb_tokens_at(f, i), want[i]);
    assert_int_equal(cb_tokens_validate(f, 0), CB_OK);
    assert_int_equal(cb_tokens_validate(f, 5), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "token 2147483647 at position 4 is outside [0, 5)"));
    cb_tokens_close(f);
    const struct {
        const char *text, *needle;
    } bad[] = {
        {"1 2\n3 x4 5", ":2:3: 'x4' is not a token id"},
        {"-1", ":1:1: '-1'"},
        {"2147483648", "'2147483648'"},
        {"The cat", "prepare-data"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(path, sizeof path, "%s/b.txt", dir);
        assert_int_equal(tu_write_file(path, bad[i].text, strlen(bad[i].text)), 0);
        assert_int_equal(cb_tokens_open(&f, path), CB_ERR_FORMAT);
        if (!strstr(cb_last_error(), bad[i].needle))
            fail_msg("'%s' lacks '%s'", cb_last_error(), bad[i].needle);
    }
    snprintf(path, sizeof path, "%s/empty.tokens", dir);
    assert_int_equal(tu_write_file(path, "", 0), 0);
    assert_int_equal(cb_tokens_open(&f, path), CB_OK);
    assert_int_equal(f->n, 0);
    cb_tokens_close(f);
    tu_rmtree(dir);
}

/* Writes 0, 1, ..., n-1 as an i64 token file through the writer. */
static cb_token_file *arange_file(const char *dir, int64_t n, cb_dtype dt) {
    char path[4200];
    snprintf(path, sizeof path, "%s/arange_%lld_%d.npy", dir, (long long)n, (int)dt);
    cb_token_writer *w;
    assert_int_equal(cb_token_writer_open(&w, path, dt), CB_OK);
    for (int64_t i = 0; i < n; i++) {
        int32_t id = (int32_t)i;
        assert_int_equal(cb_token_writer_append(w, &id, 1), CB_OK);
    }
    assert_false(cb_file_exists(path)); /* nothing under the real name before commit */
    assert_int_equal(cb_token_writer_count(w), n);
    assert_int_equal(cb_token_writer_commit(w), CB_OK);
    cb_token_file *f;
    assert_int_equal(cb_tokens_open(&f, path), CB_OK);
    assert_int_equal(f->n, n);
    assert_int_equal(f->dtype, dt);
    return f;
}

static void test_writer(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    cb_dtype dts[] = {CB_U16, CB_U32, CB_I32, CB_I64};
    for (int k = 0; k < 4; k++) {
        cb_token_file *f = arange_file(dir, k == 0 ? 65536 : 70000, dts[k]);
        for (int64_t i = 0; i < f->n; i += 997) assert_int_equal(cb_tokens_at(f, i), i);
        /* the header is a NumPy 1.0 header padded to 64 bytes */
        assert_int_equal((size_t)((const char *)f->data - (const char *)f->npy->map) % 64, 0);
        cb_tokens_close(f);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/small.npy", dir);
    cb_token_writer *w;
    assert_int_equal(cb_token_writer_open(&w, path, CB_U16), CB_OK);
    int32_t big = 65536;
    assert_int_equal(cb_token_writer_append(w, &big, 1), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "65536 does not fit u16"));
    cb_token_writer_abort(w);
    assert_false(cb_file_exists(path));
    assert_int_equal(cb_token_writer_open(&w, path, CB_F32), CB_ERR_ARG);
    assert_int_equal(cb_tokens_dtype_for_vocab(258), CB_U16);
    assert_int_equal(cb_tokens_dtype_for_vocab(65536), CB_U16);
    assert_int_equal(cb_tokens_dtype_for_vocab(65537), CB_U32);
    assert_int_equal(cb_tokens_dtype_for_vocab(128256), CB_U32);
    tu_rmtree(dir);
}

static void test_windows(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    cb_token_file *f = arange_file(dir, 100, CB_U16);
    cb_dataset d;
    /* spec-train.md §8.1: N - L windows, window i = tok[i..i+L-1], y = tok[i+1..i+L] */
    assert_int_equal(cb_dataset_init(&d, f, 0, 100, 8, 1), CB_OK);
    assert_int_equal(d.n_windows, 92);
    int64_t x[8], y[8];
    for (int64_t i = 0; i < d.n_windows; i++) {
        assert_int_equal(cb_dataset_window(&d, i, x, y), CB_OK);
        for (int k = 0; k < 8; k++) {
            assert_int_equal(x[k], i + k);
            assert_int_equal(y[k], i + k + 1);
        }
    }
    assert_int_equal(cb_dataset_window(&d, 92, x, y), CB_ERR_ARG);
    /* stride = block: the windows tile the tokens, every token predicted once */
    assert_int_equal(cb_dataset_init(&d, f, 0, 100, 8, 8), CB_OK);
    assert_int_equal(d.n_windows, 12); /* starts 0, 8, ..., 88; the last y ends at token 96 */
    assert_int_equal(cb_dataset_window(&d, 11, x, y), CB_OK);
    assert_int_equal(x[0], 88);
    assert_int_equal(y[7], 96);
    assert_int_equal(cb_dataset_init(&d, f, 0, 97, 8, 8), CB_OK);
    assert_int_equal(d.n_windows, 12);
    assert_int_equal(cb_dataset_init(&d, f, 0, 96, 8, 8), CB_OK);
    assert_int_equal(d.n_windows, 11);
    /* too short: the original's message */
    assert_int_equal(cb_dataset_init(&d, f, 0, 8, 8, 1), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "block_size must be smaller than data length, got "
                                            "block_size=8, len=8"));
    assert_int_equal(cb_dataset_init(&d, f, 0, 9, 8, 1), CB_OK);
    assert_int_equal(d.n_windows, 1);
    assert_int_equal(cb_dataset_init(&d, f, 0, 101, 8, 1), CB_ERR_ARG);
    assert_int_equal(cb_dataset_init(&d, f, 0, 50, 0, 1), CB_ERR_ARG);
    assert_int_equal(cb_dataset_init(&d, f, 0, 50, 4, 0), CB_ERR_ARG);

    /* split: validation is the tail, non-overlapping windows */
    cb_dataset tr, va;
    assert_int_equal(cb_dataset_split(f, 0.1, 4, 1, &tr, &va), CB_OK);
    assert_int_equal(tr.begin, 0);
    assert_int_equal(tr.end, 90);
    assert_int_equal(tr.n_windows, 86);
    assert_int_equal(va.begin, 90);
    assert_int_equal(va.end, 100);
    assert_int_equal(va.stride, 4);
    assert_int_equal(va.n_windows, 2);
    int64_t vx[4], vy[4];
    assert_int_equal(cb_dataset_window(&va, 1, vx, vy), CB_OK);
    assert_int_equal(vx[0], 94);
    assert_int_equal(vy[3], 98);
    /* no training window reads a validation token */
    assert_int_equal(cb_dataset_window(&tr, tr.n_windows - 1, vx, vy), CB_OK);
    assert_int_equal(vy[3], 89);
    assert_int_equal(cb_dataset_split(f, 0, 4, 1, &tr, &va), CB_OK);
    assert_int_equal(va.n_windows, 0);
    assert_int_equal(tr.end, 100);
    assert_int_equal(cb_dataset_split(f, 0.03, 4, 1, &tr, &va), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "validation split"));
    assert_int_equal(cb_dataset_split(f, 1.0, 4, 1, &tr, &va), CB_ERR_ARG);
    assert_int_equal(cb_dataset_split(f, NAN, 4, 1, &tr, &va), CB_ERR_ARG);

    /* batches, int64 and int32 */
    cb_tensor *bx, *by, *cx, *cy;
    int64_t shape[2] = {3, 4};
    assert_int_equal(cb_tensor_new(&bx, CB_I64, CB_CPU, 2, shape), CB_OK);
    assert_int_equal(cb_tensor_new(&by, CB_I64, CB_CPU, 2, shape), CB_OK);
    assert_int_equal(cb_tensor_new(&cx, CB_I32, CB_CPU, 2, shape), CB_OK);
    assert_int_equal(cb_tensor_new(&cy, CB_I32, CB_CPU, 2, shape), CB_OK);
    assert_int_equal(cb_dataset_split(f, 0.1, 4, 1, &tr, &va), CB_OK);
    int64_t wins[3] = {0, 85, 7};
    assert_int_equal(cb_dataset_batch(&tr, wins, 3, bx, by), CB_OK);
    assert_int_equal(cb_dataset_batch(&tr, wins, 3, cx, cy), CB_OK);
    for (int b = 0; b < 3; b++)
        for (int k = 0; k < 4; k++) {
            assert_int_equal(((int64_t *)bx->data)[b * 4 + k], wins[b] + k);
            assert_int_equal(((int64_t *)by->data)[b * 4 + k], wins[b] + k + 1);
            assert_int_equal(((int32_t *)cx->data)[b * 4 + k], wins[b] + k);
            assert_int_equal(((int32_t *)cy->data)[b * 4 + k], wins[b] + k + 1);
        }
    wins[1] = 86;
    assert_int_equal(cb_dataset_batch(&tr, wins, 3, bx, by), CB_ERR_ARG);
    assert_int_equal(cb_dataset_batch(&tr, wins, 3, bx, cy), CB_ERR_ARG);
    assert_int_equal(cb_dataset_batch(&tr, wins, 2, bx, by), CB_ERR_SHAPE);
    cb_tensor_free(bx);
    cb_tensor_free(by);
    cb_tensor_free(cx);
    cb_tensor_free(cy);
    cb_tokens_close(f);
    tu_rmtree(dir);
}

static void test_sampler(void **state) {
    (void)state;
    cb_sampler a, b, c;
    cb_sampler_init(&a, 1234);
    cb_sampler_init(&b, 1234);
    cb_sampler_init(&c, 1235);
    int same = 0;
    for (int i = 0; i < 1000; i++) {
        int64_t va = cb_sampler_next(&a, 1000003), vb = cb_sampler_next(&b, 1000003);
        assert_int_equal(va, vb);
        same += va == cb_sampler_next(&c, 1000003);
    }
    assert_true(same < 5);
    /* resume: (seed, pos) saved mid-way continues the same sequence */
    cb_sampler run, saved = {0, 0};
    cb_sampler_init(&run, 99);
    int64_t seq[200];
    for (int i = 0; i < 200; i++) {
        if (i == 77) saved = run;
        seq[i] = cb_sampler_next(&run, 37);
    }
    cb_sampler resumed = {.seed = saved.seed, .pos = saved.pos};
    for (int i = 77; i < 200; i++) assert_int_equal(cb_sampler_next(&resumed, 37), seq[i]);
    assert_int_equal(resumed.pos, run.pos);
    /* ranges and uniformity: 10 buckets, 200k draws, chi-square (9 dof) well below 40 */
    int64_t counts[10] = {0};
    for (int i = 0; i < 200000; i++) {
        int64_t v = cb_sampler_next(&a, 10);
        assert_true(v >= 0 && v < 10);
        counts[v]++;
    }
    double chi = 0;
    for (int k = 0; k < 10; k++) chi += pow((double)counts[k] - 20000, 2) / 20000;
    assert_true(chi < 40);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(cb_sampler_next(&a, 1), 0);
        int64_t v = cb_sampler_next(&a, (int64_t)1 << 40);
        assert_true(v >= 0 && v < (int64_t)1 << 40);
        v = cb_sampler_next(&a, 3);
        assert_true(v >= 0 && v < 3);
    }

    /* sample_batch: deterministic given the seed */
    const char *dir = tu_tmpdir();
    cb_token_file *f = arange_file(dir, 1000, CB_U32);
    cb_dataset d;
    assert_int_equal(cb_dataset_init(&d, f, 0, 1000, 16, 1), CB_OK);
    cb_tensor *x1, *y1, *x2, *y2;
    int64_t shape[2] = {8, 16};
    assert_int_equal(cb_tensor_new(&x1, CB_I64, CB_CPU, 2, shape), CB_OK);
    assert_int_equal(cb_tensor_new(&y1, CB_I64, CB_CPU, 2, shape), CB_OK);
    assert_int_equal(cb_tensor_new(&x2, CB_I64, CB_CPU, 2, shape), CB_OK);
    assert_int_equal(cb_tensor_new(&y2, CB_I64, CB_CPU, 2, shape), CB_OK);
    cb_sampler s1, s2;
    cb_sampler_init(&s1, 7);
    cb_sampler_init(&s2, 7);
    for (int step = 0; step < 5; step++) {
        assert_int_equal(cb_dataset_sample_batch(&d, &s1, x1, y1), CB_OK);
        assert_int_equal(cb_dataset_sample_batch(&d, &s2, x2, y2), CB_OK);
        assert_memory_equal(x1->data, x2->data, 8 * 16 * 8);
        assert_memory_equal(y1->data, y2->data, 8 * 16 * 8);
        const int64_t *xv = x1->data, *yv = y1->data;
        for (int b = 0; b < 8; b++)
            for (int k = 0; k < 16; k++) assert_int_equal(yv[b * 16 + k], xv[b * 16 + k] + 1);
    }
    assert_int_equal(s1.pos, 40);
    cb_tensor_free(x1);
    cb_tensor_free(y1);
    cb_tensor_free(x2);
    cb_tensor_free(y2);
    cb_tokens_close(f);
    tu_rmtree(dir);
}

/* prepare-data on the Brown sample (documents separated by blank lines) gives exactly the
 * reference llama3 ids of those documents, with <|end_of_text|> between them. */
static void test_prepare_brown(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char out[4200];
    snprintf(out, sizeof out, "%s/brown.npy", dir);
    const char *inputs[] = {tu_path("tests/data/tokenizers/brown_sample.txt")};
    char input0[4200];
    snprintf(input0, sizeof input0, "%s", inputs[0]);
    inputs[0] = input0;
    char tok[4200];
    snprintf(tok, sizeof tok, "%s", tu_path("tests/data/tokenizers/llama3_tokenizer.json"));
    cb_prepare_opts o = {.tokenizer = tok,
                         .inputs = inputs,
                         .n_inputs = 1,
                         .output = out,
                         .doc_split = CB_DOC_BLANK_LINE};
    cb_prepare_stats s;
    if (cb_prepare_data(&o, &s) != CB_OK) fail_msg("%s", cb_last_error());
    assert_int_equal(s.documents, 40);
    assert_int_equal(s.dtype, CB_U32);
    assert_int_equal(s.separator_id, 128001);
    /* expected: the reference ids of the first 40 texts, joined by the separator */
    char *ref;
    size_t len;
    assert_int_equal(cb_read_file(tu_path("tests/data/tokenizers/reference_encodings.jsonl"),
                                  64 << 20, &ref, &len),
                     CB_OK);
    cb_ids want = {0};
    char *line = ref;
    for (int d = 0; d < 40; d++) {
        char *nl = strchr(line, '\n');
        cJSON *j = cJSON_ParseWithLength(line, (size_t)(nl - line));
        if (d) assert_int_equal(cb_ids_push(&want, 128001), CB_OK);
        for (const cJSON *e = cJSON_GetObjectItem(j, "llama3")->child; e; e = e->next)
            assert_int_equal(cb_ids_push(&want, (int32_t)e->valuedouble), CB_OK);
        cJSON_Delete(j);
        line = nl + 1;
    }
    free(ref);
    cb_token_file *f;
    assert_int_equal(cb_tokens_open(&f, out), CB_OK);
    assert_int_equal(f->n, (int64_t)want.n);
    assert_int_equal(s.tokens, (int64_t)want.n);
    for (size_t i = 0; i < want.n; i++)
        if (cb_tokens_at(f, (int64_t)i) != want.data[i]) fail_msg("token %zu differs", i);
    cb_tokens_close(f);
    cb_ids_free(&want);
    /* meta.json */
    char *meta = cb_prepare_meta_path(out), *text;
    assert_non_null(strstr(meta, "/brown.meta.json"));
    assert_int_equal(cb_read_file(meta, 1 << 20, &text, &len), CB_OK);
    cJSON *m = cJSON_Parse(text);
    assert_int_equal((int64_t)cJSON_GetObjectItem(m, "documents")->valuedouble, 40);
    assert_int_equal((int64_t)cJSON_GetObjectItem(m, "tokens")->valuedouble, s.tokens);
    assert_int_equal((int64_t)cJSON_GetObjectItem(m, "vocab_size")->valuedouble, 128256);
    assert_int_equal((int64_t)cJSON_GetObjectItem(m, "separator_id")->valuedouble, 128001);
    assert_string_equal(cJSON_GetObjectItem(m, "dtype")->valuestring, "uint32");
    assert_string_equal(cJSON_GetObjectItem(m, "tokenizer")->valuestring, tok);
    cJSON_Delete(m);
    free(text);
    free(meta);
    tu_rmtree(dir);
}

static void test_prepare_modes(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char a[4200], sub[4200], b[4200], c[4200], j[4200], out[4200];
    snprintf(a, sizeof a, "%s/a.txt", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    snprintf(b, sizeof b, "%s/sub/b.txt", dir);
    snprintf(c, sizeof c, "%s/sub/a.txt", dir);
    snprintf(j, sizeof j, "%s/d.jsonl", dir);
    snprintf(out, sizeof out, "%s/out.npy", dir);
    assert_int_equal(cb_mkdirs(sub), CB_OK);
    assert_int_equal(tu_write_file(a, "ab\ncd\n\n \nef\n", 12), 0);
    assert_int_equal(tu_write_file(b, "B", 1), 0);
    assert_int_equal(tu_write_file(c, "A", 1), 0);
    assert_int_equal(tu_write_file(j, "{\"text\": \"x\"}\n\n{\"text\": \"yz\"}\n", 30), 0);
    const struct {
        cb_doc_split split;
        const char *want; /* bytes tokenizer: ids are bytes, '|' stands for 256 */
        int64_t docs;
    } cases[] = {
        {CB_DOC_FILE, "ab\ncd\n\n \nef\n|A|B|x|yz", 5},
        {CB_DOC_BLANK_LINE, "ab\ncd|ef|A|B|x|yz", 6},
        {CB_DOC_LINE, "ab|cd|ef|A|B|x|yz", 7},
    };
    const char *inputs[] = {a, sub, j};
    for (size_t k = 0; k < 3; k++) {
        cb_prepare_opts o = {.tokenizer = "bytes",
                             .inputs = inputs,
                             .n_inputs = 3,
                             .output = out,
                             .doc_split = cases[k].split};
        cb_prepare_stats s;
        if (cb_prepare_data(&o, &s) != CB_OK) fail_msg("%s", cb_last_error());
        assert_int_equal(s.documents, cases[k].docs);
        assert_int_equal(s.files, 4);
        assert_int_equal(s.dtype, CB_U16);
        cb_token_file *f;
        assert_int_equal(cb_tokens_open(&f, out), CB_OK);
        assert_int_equal(f->dtype, CB_U16);
        size_t n = strlen(cases[k].want);
        assert_int_equal(f->n, (int64_t)n);
        for (size_t i = 0; i < n; i++) {
            int64_t w = cases[k].want[i] == '|' ? 256 : (uint8_t)cases[k].want[i];
            assert_int_equal(cb_tokens_at(f, (int64_t)i), w);
        }
        cb_tokens_close(f);
    }
    /* errors: missing input, empty dir, output among inputs, tokenizer without a separator */
    char missing[4200], empty[4200];
    snprintf(missing, sizeof missing, "%s/none.txt", dir);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    assert_int_equal(cb_mkdirs(empty), CB_OK);
    const char *bad1[] = {missing};
    cb_prepare_opts o = {.tokenizer = "bytes", .inputs = bad1, .n_inputs = 1, .output = out};
    cb_prepare_stats s;
    assert_int_equal(cb_prepare_data(&o, &s), CB_ERR_NOTFOUND);
    assert_non_null(strstr(cb_last_error(), "none.txt: no such file"));
    const char *bad2[] = {empty};
    o.inputs = bad2;
    assert_int_equal(cb_prepare_data(&o, &s), CB_ERR_NOTFOUND);
    assert_non_null(strstr(cb_last_error(), "no *.txt files"));
    const char *bad3[] = {a, out};
    o.inputs = bad3;
    o.n_inputs = 2;
    assert_int_equal(cb_prepare_data(&o, &s), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "is also an input"));
    char bad_jsonl[4200];
    snprintf(bad_jsonl, sizeof bad_jsonl, "%s/bad.jsonl", dir);
    assert_int_equal(tu_write_file(bad_jsonl, "{\"text\": \"x\"}\n[1]\n", 18), 0);
    const char *bad4[] = {bad_jsonl};
    o.inputs = bad4;
    o.n_inputs = 1;
    char out2[4200];
    snprintf(out2, sizeof out2, "%s/never.npy", dir);
    o.output = out2;
    assert_int_equal(cb_prepare_data(&o, &s), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "bad.jsonl:2: expected a JSON object"));
    assert_false(cb_file_exists(out2)); /* a failed run leaves no output */
    tu_rmtree(dir);
}

static void test_json_text(void **state) {
    (void)state;
    const struct {
        const char *line;
        const char *want;
        size_t len;
    } ok[] = {
        {"{\"text\": \"hi\"}", "hi", 2},
        {" { \"id\": 3, \"text\" : \"a\\u0000b\\n\" , \"x\": [1, {\"text\": 2}]} ", "a\0b\n", 4},
        {"{\"text\": \"\\ud83d\\ude00 \\u00e9\\/\\\"\\\\\"}", "\xf0\x9f\x98\x80 \xc3\xa9/\"\\", 10},
        {"{\"text\": \"\\ud800x\"}", "\xef\xbf\xbdx", 4}, /* lone surrogate: U+FFFD */
        {"{\"meta\": {\"a\": [true, false, null, -1.5e3]}, \"text\": \"\"}", "", 0},
        {"{\"text\": \"old\", \"text\": \"new\"}", "new", 3},
        {"{\"text\": \"caf\xc3\xa9\"}", "caf\xc3\xa9", 5},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char *out;
        size_t len;
        if (cb_json_string_field(ok[i].line, strlen(ok[i].line), "text", &out, &len) != CB_OK)
            fail_msg("case %zu: %s", i, cb_last_error());
        assert_int_equal(len, ok[i].len);
        assert_memory_equal(out, ok[i].want, len);
        assert_int_equal(out[len], 0);
        free(out);
    }
    const char *bad[] = {
        "",
        "[1]",
        "{\"text\": 5}",
        "{\"txt\": \"a\"}",
        "{\"text\": \"a\"",
        "{\"text\": \"a\"} x",
        "{\"text\": \"a\\q\"}",
        "{\"text\": \"a\tb\"}",
        "{\"text\" \"a\"}",
        "{\"a\": [1, 2}",
        "{\"text\": \"\\u12\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = (char *)1;
        size_t len;
        assert_int_equal(cb_json_string_field(bad[i], strlen(bad[i]), "text", &out, &len),
                         CB_ERR_FORMAT);
        assert_null(out);
    }
    /* deep nesting is refused, not a stack overflow */
    size_t n = 100000;
    char *deep = malloc(n + 32);
    size_t k = (size_t)sprintf(deep, "{\"a\": ");
    for (size_t i = 0; i < n / 2; i++) deep[k++] = '[';
    deep[k] = 0;
    char *out;
    size_t len;
    assert_int_equal(cb_json_string_field(deep, k, "text", &out, &len), CB_ERR_FORMAT);
    free(deep);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_token_files), cmocka_unit_test(test_text_token_files),
        cmocka_unit_test(test_writer),          cmocka_unit_test(test_windows),
        cmocka_unit_test(test_sampler),         cmocka_unit_test(test_prepare_brown),
        cmocka_unit_test(test_prepare_modes),   cmocka_unit_test(test_json_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
