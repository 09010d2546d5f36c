/* safetensors reader/writer and checkpoints.
 *
 * References: the tiny_llama3 fixture written by Hugging Face's safetensors library (values read
 * independently with Python's struct/json, recorded below as hex floats), Python's json module on
 * our written headers when python3 is present, and hand-built malformed images. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/dtype.h"
#include "caramba/fileio.h"
#include "caramba/safetensors.h"
#include "caramba/tensor.h"
#include "testutil.h"

#define FIXTURE_DIR "tests/data/tiny_llama3"

static const char *fixture(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", tu_path(FIXTURE_DIR), name);
    return buf;
}

static void assert_msg_has(const char *needle) {
    const char *msg = cb_last_error();
    if (!strstr(msg, needle)) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", msg, needle);
        fail();
    }
}

static float entry_f32(const cb_st_entry *e, int64_t i) {
    float v;
    memcpy(&v, (const char *)e->data + 4 * i, 4);
    return v;
}

/* ---- the fixture ------------------------------------------------------------------------- */

static void test_fixture_read(void **state) {
    (void)state;
    cb_safetensors *st;
    assert_int_equal(cb_safetensors_open(&st, fixture("model.safetensors")), CB_OK);
    assert_int_equal(st->n_entries, 21);
    assert_non_null(st->metadata_json);
    char fmt[16];
    assert_int_equal(cb_safetensors_metadata_get(st, "format", fmt, sizeof fmt), CB_OK);
    assert_string_equal(fmt, "pt");
    assert_int_equal(cb_safetensors_metadata_get(st, "nope", fmt, sizeof fmt), CB_ERR_NOTFOUND);
    for (int i = 1; i < st->n_entries; i++)
        assert_true(strcmp(st->entries[i - 1].name, st->entries[i].name) < 0);

    static const struct {
        const char *name;
        int ndim;
        int64_t d0, d1;
    } shapes[] = {
        {"lm_head.weight", 2, 384, 64},
        {"model.embed_tokens.weight", 2, 384, 64},
        {"model.layers.0.input_layernorm.weight", 1, 64, 0},
        {"model.layers.0.mlp.down_proj.weight", 2, 64, 176},
        {"model.layers.1.mlp.gate_proj.weight", 2, 176, 64},
        {"model.layers.1.mlp.up_proj.weight", 2, 176, 64},
        {"model.layers.0.self_attn.k_proj.weight", 2, 32, 64},
        {"model.layers.1.self_attn.v_proj.weight", 2, 32, 64},
        {"model.layers.1.self_attn.q_proj.weight", 2, 64, 64},
        {"model.layers.1.self_attn.o_proj.weight", 2, 64, 64},
        {"model.layers.1.post_attention_layernorm.weight", 1, 64, 0},
        {"model.norm.weight", 1, 64, 0},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const cb_st_entry *e = cb_safetensors_find(st, shapes[i].name);
        assert_non_null(e);
        assert_int_equal(e->dtype, CB_F32);
        assert_int_equal(e->ndim, shapes[i].ndim);
        assert_int_equal(e->shape[0], shapes[i].d0);
        if (e->ndim == 2) assert_int_equal(e->shape[1], shapes[i].d1);
        assert_int_equal(e->nbytes, 4 * shapes[i].d0 * (e->ndim == 2 ? shapes[i].d1 : 1));
        assert_int_equal((uintptr_t)e->data % 4, 0);
    }
    assert_null(cb_safetensors_find(st, "model.layers.2.mlp.up_proj.weight"));

    /* values read from the file with Python's struct module */
    const cb_st_entry *e = cb_safetensors_find(st, "model.norm.weight");
    assert_true(entry_f32(e, 0) == 0x1.32f8d4p+0f);
    assert_true(entry_f32(e, 63) == 0x1.f201cp-1f);
    double sum = 0;
    for (int i = 0; i < 64; i++) sum += entry_f32(e, i);
    assert_true(fabs(sum - 66.0048115849495) < 1e-9);
    e = cb_safetensors_find(st, "model.embed_tokens.weight");
    assert_true(entry_f32(e, 0) == -0x1.42802ep-4f);
    assert_true(entry_f32(e, 384 * 64 - 1) == 0x1.cdade8p-5f);
    e = cb_safetensors_find(st, "lm_head.weight");
    assert_true(entry_f32(e, 5 * 64 + 7) == -0x1.c8f7eep-6f);
    e = cb_safetensors_find(st, "model.layers.0.self_attn.k_proj.weight");
    assert_true(entry_f32(e, 31 * 64 + 63) == 0x1.b11394p-4f);
    e = cb_safetensors_find(st, "model.layers.1.mlp.down_proj.weight");
    assert_true(entry_f32(e, 63 * 176 + 175) == 0x1.d0dffap-6f);
    cb_safetensors_close(st);

    /* the gradient file pads its header with spaces and has no metadata */
    assert_int_equal(cb_safetensors_open(&st, fixture("ref_grads.safetensors")), CB_OK);
    assert_int_equal(st->n_entries, 21);
    assert_null(st->metadata_json);
    cb_safetensors_close(st);
}

static void test_fixture_checkpoint(void **state) {
    (void)state;
    cb_checkpoint *ck;
    assert_int_equal(cb_checkpoint_open(&ck, tu_path(FIXTURE_DIR)), CB_OK);
    assert_int_equal(cb_checkpoint_count(ck), 21);
    assert_string_equal(cb_checkpoint_name(ck, 0), "lm_head.weight");
    assert_string_equal(cb_checkpoint_name(ck, 20), "model.norm.weight");
    assert_null(cb_checkpoint_name(ck, 21));
    const char *file = NULL;
    assert_non_null(cb_checkpoint_find(ck, "model.norm.weight", &file));
    assert_non_null(strstr(file, "model.safetensors"));

    int64_t n64[1] = {64};
    cb_tensor *f32, *bf, *h;
    assert_int_equal(cb_tensor_new(&f32, CB_F32, CB_CPU, 1, n64), CB_OK);
    assert_int_equal(cb_tensor_new(&bf, CB_BF16, CB_CPU, 1, n64), CB_OK);
    assert_int_equal(cb_tensor_new(&h, CB_F16, CB_CPU, 1, n64), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "model.norm.weight", f32), CB_OK);
    assert_true(cb_f32(f32)[0] == 0x1.32f8d4p+0f);
    assert_true(cb_f32(f32)[63] == 0x1.f201cp-1f);
    assert_int_equal(cb_checkpoint_load(ck, "model.norm.weight", bf), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "model.norm.weight", h), CB_OK);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(((uint16_t *)bf->data)[i], cb_f32_to_bf16(cb_f32(f32)[i]));
        assert_int_equal(((uint16_t *)h->data)[i], cb_f32_to_f16(cb_f32(f32)[i]));
    }
    /* 1.1991093158721924 in bf16 (round to nearest even): 0x3f99 = 1.1953125 */
    assert_int_equal(((uint16_t *)bf->data)[0], 0x3f99);

    /* shape mismatch names the file, the tensor and both shapes */
    int64_t n32[1] = {32};
    cb_tensor *small;
    assert_int_equal(cb_tensor_new(&small, CB_F32, CB_CPU, 1, n32), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "model.norm.weight", small), CB_ERR_SHAPE);
    assert_msg_has("model.safetensors: tensor 'model.norm.weight' has shape [64] but the model "
                   "expects [32]");
    int64_t sq[2] = {64, 1};
    cb_tensor *col;
    assert_int_equal(cb_tensor_new(&col, CB_F32, CB_CPU, 2, sq), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "model.norm.weight", col), CB_ERR_SHAPE);
    assert_msg_has("[64, 1]");
    /* missing tensor */
    assert_int_equal(cb_checkpoint_load(ck, "model.layers.9.mlp.up_proj.weight", f32),
                     CB_ERR_NOTFOUND);
    assert_msg_has("model.safetensors: tensor 'model.layers.9.mlp.up_proj.weight' not found");
    /* float weights do not go into integer tensors */
    cb_tensor *ints;
    assert_int_equal(cb_tensor_new(&ints, CB_I32, CB_CPU, 1, n64), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "model.norm.weight", ints), CB_ERR_UNSUPPORTED);
    assert_msg_has("model.norm.weight");
    cb_tensor_free(f32);
    cb_tensor_free(bf);
    cb_tensor_free(h);
    cb_tensor_free(small);
    cb_tensor_free(col);
    cb_tensor_free(ints);
    cb_checkpoint_close(ck);

    /* a .safetensors file path works as a checkpoint too */
    assert_int_equal(cb_checkpoint_open(&ck, fixture("ref_grads.safetensors")), CB_OK);
    assert_int_equal(cb_checkpoint_count(ck), 21);
    cb_checkpoint_close(ck);
    assert_int_equal(cb_checkpoint_open(&ck, fixture("nope.safetensors")), CB_ERR_NOTFOUND);
    assert_msg_has("nope.safetensors");
}

/* ---- write / read round trip --------------------------------------------------------------- */

static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void test_roundtrip(void **state) {
    (void)state;
    const char *tmp = tu_tmpdir();
    assert_non_null(tmp);
    char dir[1024], path[1100];
    snprintf(dir, sizeof dir, "%s", tmp);
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);

    float f32v[6] = {1.5f, -2.25f, 0.1f, 3.0e-8f, 65504.0f, -0.0f};
    uint16_t bf16v[5], f16v[6];
    float bsrc[5] = {1.0f, -1.0078125f, 3.140625f, 1e30f, -7.5e-3f};
    float hsrc[6] = {1.0f, -2.0f, 0.333251953125f, 65504.0f, 5.9604645e-08f, -0.5f};
    for (int i = 0; i < 5; i++) bf16v[i] = cb_f32_to_bf16(bsrc[i]);
    for (int i = 0; i < 6; i++) f16v[i] = cb_f32_to_f16(hsrc[i]);
    int32_t i32v[4] = {-1, 0, 2147483647, -2147483647 - 1};
    int64_t i64v[4] = {INT64_MIN, -3, 1ll << 40, INT64_MAX};
    uint8_t u8v[3] = {0, 7, 255};
    uint16_t u16v[3] = {0, 1, 65535};
    uint32_t u32v[2] = {4000000000u, 5};
    float scalar = 42.0f;

    cb_tensor t[10];
    int64_t s23[2] = {2, 3}, s5[1] = {5}, s312[3] = {3, 1, 2}, s4[1] = {4}, s22[2] = {2, 2},
            s3[1] = {3}, s2[1] = {2}, s04[2] = {0, 4};
    assert_int_equal(cb_tensor_init(&t[0], CB_F32, CB_CPU, 2, s23, f32v), CB_OK);
    assert_int_equal(cb_tensor_init(&t[1], CB_BF16, CB_CPU, 1, s5, bf16v), CB_OK);
    assert_int_equal(cb_tensor_init(&t[2], CB_F16, CB_CPU, 3, s312, f16v), CB_OK);
    assert_int_equal(cb_tensor_init(&t[3], CB_I32, CB_CPU, 1, s4, i32v), CB_OK);
    assert_int_equal(cb_tensor_init(&t[4], CB_I64, CB_CPU, 2, s22, i64v), CB_OK);
    assert_int_equal(cb_tensor_init(&t[5], CB_U8, CB_CPU, 1, s3, u8v), CB_OK);
    assert_int_equal(cb_tensor_init(&t[6], CB_U16, CB_CPU, 1, s3, u16v), CB_OK);
    assert_int_equal(cb_tensor_init(&t[7], CB_U32, CB_CPU, 1, s2, u32v), CB_OK);
    assert_int_equal(cb_tensor_init(&t[8], CB_F32, CB_CPU, 0, NULL, &scalar), CB_OK);
    assert_int_equal(cb_tensor_init(&t[9], CB_F32, CB_CPU, 2, s04, NULL), CB_OK);
    /* u8 first in the list: the writer still aligns every tensor */
    const cb_named_tensor named[10] = {
        {"bytes", &t[5]},   {"w.f32", &t[0]},
        {"w.bf16", &t[1]},  {"w.f16", &t[2]},
        {"ids.i32", &t[3]}, {"ids.i64", &t[4]},
        {"u16", &t[6]},     {"u32", &t[7]},
        {"scalar", &t[8]},  {"empty \"quoted\"\\", &t[9]},
    };
    const char *meta[] = {"step", "12", "note", "tab\there \"q\" \\ \x01", NULL};
    assert_int_equal(cb_safetensors_write(path, named, 10, meta), CB_OK);
    assert_int_equal(count_dir_entries(dir), 1); /* no temp file left behind */

    cb_safetensors *st;
    assert_int_equal(cb_safetensors_open(&st, path), CB_OK);
    assert_int_equal(st->n_entries, 10);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | ((const unsigned char *)st->map)[i];
    assert_int_equal(hlen % 8, 0);
    for (int i = 0; i < 10; i++) {
        const cb_st_entry *e = cb_safetensors_find(st, named[i].name);
        assert_non_null(e);
        const cb_tensor *src = named[i].tensor;
        assert_int_equal(e->dtype, src->dtype);
        assert_int_equal(e->ndim, src->ndim);
        for (int d = 0; d < src->ndim; d++) assert_int_equal(e->shape[d], src->shape[d]);
        assert_int_equal(e->nbytes, cb_tensor_nbytes(src));
        if (e->nbytes) {
            assert_memory_equal(e->data, src->data, e->nbytes);
            assert_int_equal((uintptr_t)e->data % cb_dtype_size(e->dtype), 0);
        }
    }
    char note[64];
    assert_int_equal(cb_safetensors_metadata_get(st, "note", note, sizeof note), CB_OK);
    assert_string_equal(note, "tab\there \"q\" \\ \x01");
    assert_int_equal(cb_safetensors_metadata_get(st, "step", note, sizeof note), CB_OK);
    assert_string_equal(note, "12");
    cb_safetensors_close(st);

    /* an independent JSON parser agrees on the header (skipped without python3) */
    char out[4096];
    if (tu_run(NULL, 0, "python3 -c 'pass'") == 0) {
        int rc =
            tu_run(out, sizeof out,
                   "python3 -c 'import json,struct,sys; b=open(sys.argv[1],\"rb\").read(); "
                   "n=struct.unpack(\"<Q\",b[:8])[0]; h=json.loads(b[8:8+n]); "
                   "assert n%%8==0; assert h[\"__metadata__\"][\"step\"]==\"12\"; "
                   "e=h[\"w.f16\"]; assert e[\"dtype\"]==\"F16\" and e[\"shape\"]==[3,1,2]; "
                   "assert h[\"scalar\"][\"shape\"]==[]; "
                   "assert h[\"empty \\\"quoted\\\"\\\\\"][\"shape\"]==[0,4]; "
                   "end=max(v[\"data_offsets\"][1] for k,v in h.items() if k!=\"__metadata__\"); "
                   "assert 8+n+end==len(b); print(\"ok\")' '%s'",
                   path);
        if (rc != 0) fprintf(stderr, "%s\n", out);
        assert_int_equal(rc, 0);
    }

    /* loading converts 16-bit floats into f32 destinations */
    cb_checkpoint *ck;
    assert_int_equal(cb_checkpoint_open(&ck, path), CB_OK);
    cb_tensor *dst;
    assert_int_equal(cb_tensor_new(&dst, CB_F32, CB_CPU, 3, s312), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "w.f16", dst), CB_OK);
    for (int i = 0; i < 6; i++) assert_true(cb_f32(dst)[i] == hsrc[i]); /* all exact in f16 */
    cb_tensor_free(dst);
    assert_int_equal(cb_tensor_new(&dst, CB_F32, CB_CPU, 1, s5), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "w.bf16", dst), CB_OK);
    for (int i = 0; i < 5; i++) assert_true(cb_f32(dst)[i] == cb_bf16_to_f32(bf16v[i]));
    assert_true(cb_f32(dst)[2] == 3.140625f);
    cb_tensor_free(dst);
    assert_int_equal(cb_tensor_new(&dst, CB_BF16, CB_CPU, 2, s23), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "w.f32", dst), CB_OK);
    for (int i = 0; i < 6; i++)
        assert_int_equal(((uint16_t *)dst->data)[i], cb_f32_to_bf16(f32v[i]));
    cb_tensor_free(dst);
    assert_int_equal(cb_tensor_new(&dst, CB_I64, CB_CPU, 1, s4), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "ids.i32", dst), CB_OK);
    assert_true(((int64_t *)dst->data)[3] == -2147483648ll);
    cb_tensor_free(dst);
    assert_int_equal(cb_tensor_new(&dst, CB_F32, CB_CPU, 0, NULL), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "scalar", dst), CB_OK);
    assert_true(cb_f32(dst)[0] == 42.0f);
    cb_tensor_free(dst);
    cb_tensor empty_dst;
    assert_int_equal(cb_tensor_init(&empty_dst, CB_F32, CB_CPU, 2, s04, NULL), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "empty \"quoted\"\\", &empty_dst), CB_OK);
    cb_checkpoint_close(ck);

    /* an overwrite replaces the file atomically */
    assert_int_equal(cb_safetensors_write(path, named + 1, 1, NULL), CB_OK);
    assert_int_equal(cb_safetensors_open(&st, path), CB_OK);
    assert_int_equal(st->n_entries, 1);
    assert_null(st->metadata_json);
    cb_safetensors_close(st);
    assert_int_equal(count_dir_entries(dir), 1);

    /* writer errors */
    cb_named_tensor dup[2] = {{"a", &t[0]}, {"a", &t[1]}};
    assert_int_equal(cb_safetensors_write(path, dup, 2, NULL), CB_ERR_ARG);
    assert_msg_has("'a'");
    cb_tensor q;
    int64_t s32[1] = {32};
    char qbuf[34] = {0};
    assert_int_equal(cb_tensor_init(&q, CB_Q8_0, CB_CPU, 1, s32, qbuf), CB_OK);
    cb_named_tensor qn[1] = {{"q", &q}};
    assert_int_equal(cb_safetensors_write(path, qn, 1, NULL), CB_ERR_UNSUPPORTED);
    assert_msg_has("'q'");
    cb_named_tensor meta_name[1] = {{"__metadata__", &t[0]}};
    assert_int_equal(cb_safetensors_write(path, meta_name, 1, NULL), CB_ERR_ARG);
    const char *bad_meta[] = {"k", NULL, NULL};
    assert_int_equal(cb_safetensors_write(path, named, 1, bad_meta), CB_ERR_ARG);
    char nodir[1200];
    snprintf(nodir, sizeof nodir, "%s/missing/x.safetensors", dir);
    assert_int_equal(cb_safetensors_write(nodir, named, 1, NULL), CB_ERR_IO);
    assert_int_equal(count_dir_entries(dir), 1);
    /* zero tensors is a valid file */
    assert_int_equal(cb_safetensors_write(path, NULL, 0, NULL), CB_OK);
    assert_int_equal(cb_safetensors_open(&st, path), CB_OK);
    assert_int_equal(st->n_entries, 0);
    assert_null(cb_safetensors_find(st, "x"));
    cb_safetensors_close(st);
    tu_rmtree(dir);
}

/* ---- sharded checkpoints ------------------------------------------------------------------ */

static void write_text(const char *dir, const char *name, const char *text) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    assert_int_equal(tu_write_file(p, text, strlen(text)), 0);
}

static void test_sharded(void **state) {
    (void)state;
    const char *tmp = tu_tmpdir();
    assert_non_null(tmp);
    char dir[1024], p1[1100], p2[1100];
    snprintf(dir, sizeof dir, "%s", tmp);
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    uint16_t c[3] = {cb_f32_to_bf16(7.0f), cb_f32_to_bf16(-8.5f), cb_f32_to_bf16(0.25f)};
    int64_t s4[1] = {4}, s2[1] = {2}, s3[1] = {3};
    cb_tensor ta, tb, tc;
    cb_tensor_init(&ta, CB_F32, CB_CPU, 1, s4, a);
    cb_tensor_init(&tb, CB_F32, CB_CPU, 1, s2, b);
    cb_tensor_init(&tc, CB_BF16, CB_CPU, 1, s3, c);
    cb_named_tensor sh1[2] = {{"layer.a", &ta}, {"layer.b", &tb}}, sh2[1] = {{"head.c", &tc}};
    assert_int_equal(cb_safetensors_write(p1, sh1, 2, NULL), CB_OK);
    assert_int_equal(cb_safetensors_write(p2, sh2, 1, NULL), CB_OK);
    write_text(dir, "model.safetensors.index.json",
               "{\"metadata\": {\"total_size\": 30}, \"weight_map\": {"
               "\"layer.a\": \"model-00001-of-00002.safetensors\","
               "\"layer.b\": \"model-00001-of-00002.safetensors\","
               "\"head.c\": \"model-00002-of-00002.safetensors\"}}");

    cb_checkpoint *ck;
    assert_int_equal(cb_checkpoint_open(&ck, dir), CB_OK);
    assert_int_equal(cb_checkpoint_count(ck), 3);
    assert_string_equal(cb_checkpoint_name(ck, 0), "head.c");
    assert_string_equal(cb_checkpoint_name(ck, 1), "layer.a");
    assert_string_equal(cb_checkpoint_name(ck, 2), "layer.b");
    const char *file;
    assert_non_null(cb_checkpoint_find(ck, "head.c", &file));
    assert_non_null(strstr(file, "model-00002-of-00002.safetensors"));
    cb_tensor *dst;
    assert_int_equal(cb_tensor_new(&dst, CB_F32, CB_CPU, 1, s3), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "head.c", dst), CB_OK);
    assert_true(cb_f32(dst)[0] == 7.0f && cb_f32(dst)[1] == -8.5f && cb_f32(dst)[2] == 0.25f);
    cb_tensor_free(dst);
    assert_int_equal(cb_tensor_new(&dst, CB_F32, CB_CPU, 1, s2), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "layer.b", dst), CB_OK);
    assert_true(cb_f32(dst)[0] == 5.0f && cb_f32(dst)[1] == 6.0f);
    assert_int_equal(cb_checkpoint_load(ck, "layer.a", dst), CB_ERR_SHAPE);
    assert_msg_has("model-00001-of-00002.safetensors: tensor 'layer.a' has shape [4] but the "
                   "model expects [2]");
    assert_int_equal(cb_checkpoint_load(ck, "layer.z", dst), CB_ERR_NOTFOUND);
    assert_msg_has("model.safetensors.index.json: tensor 'layer.z' not found");
    cb_tensor_free(dst);
    cb_checkpoint_close(ck);
    /* the index file itself can be named */
    char idx[1100];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    assert_int_equal(cb_checkpoint_open(&ck, idx), CB_OK);
    assert_int_equal(cb_checkpoint_count(ck), 3);
    cb_checkpoint_close(ck);

    /* hostile or inconsistent index files */
    static const struct {
        const char *json;
        cb_status st;
        const char *msg;
    } bad[] = {
        {"{\"weight_map\": {\"layer.a\": \"../model-00001-of-00002.safetensors\"}}", CB_ERR_FORMAT,
         "../model-00001-of-00002.safetensors"},
        {"{\"weight_map\": {\"layer.a\": \"/etc/passwd\"}}", CB_ERR_FORMAT, "/etc/passwd"},
        {"{\"weight_map\": {\"layer.a\": \"sub/x.safetensors\"}}", CB_ERR_FORMAT, "sub/x"},
        {"{\"weight_map\": {\"layer.a\": \"..\"}}", CB_ERR_FORMAT, "'..'"},
        {"{\"weight_map\": {\"layer.a\": \"\"}}", CB_ERR_FORMAT, "layer.a"},
        {"{\"weight_map\": {\"layer.a\": \"other.index.json\"}}", CB_ERR_FORMAT, "index file"},
        {"{\"weight_map\": {\"layer.a\": 3}}", CB_ERR_FORMAT, "layer.a"},
        {"{\"weight_map\": {\"x\": \"missing.safetensors\"}}", CB_ERR_NOTFOUND,
         "missing.safetensors"},
        {"{\"metadata\": {}}", CB_ERR_FORMAT, "weight_map"},
        {"{\"weight_map\": []}", CB_ERR_FORMAT, "weight_map"},
        {"{\"weight_map\": {}}", CB_ERR_FORMAT, "empty"},
        {"[1, 2]", CB_ERR_FORMAT, "weight_map"},
        {"{\"weight_map\": {\"layer.a\": ", CB_ERR_FORMAT, "not valid JSON"},
        {"{\"weight_map\": {}} {}", CB_ERR_FORMAT, "trailing garbage"},
        /* tensor listed in the wrong shard / not in any shard */
        {"{\"weight_map\": {\"layer.a\": \"model-00002-of-00002.safetensors\","
         "\"head.c\": \"model-00002-of-00002.safetensors\"}}",
         CB_ERR_FORMAT, "'layer.a'"},
        {"{\"weight_map\": {\"ghost\": \"model-00002-of-00002.safetensors\"}}", CB_ERR_FORMAT,
         "'ghost'"},
        /* the same tensor in two shards */
        {"{\"weight_map\": {\"layer.a\": \"model-00001-of-00002.safetensors\","
         "\"layer.b\": \"dup.safetensors\"}}",
         CB_ERR_FORMAT, "two shards"},
    };
    char dup_path[1100];
    snprintf(dup_path, sizeof dup_path, "%s/dup.safetensors", dir);
    assert_int_equal(cb_safetensors_write(dup_path, sh1 + 1, 1, NULL), CB_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(dir, "model.safetensors.index.json", bad[i].json);
        cb_status st = cb_checkpoint_open(&ck, dir);
        if (st != bad[i].st) fprintf(stderr, "case %zu: %s\n", i, cb_last_error());
        assert_int_equal(st, bad[i].st);
        assert_null(ck);
        assert_msg_has("model.safetensors.index.json");
        assert_msg_has(bad[i].msg);
    }
    /* a directory with neither file */
    char empty[1100];
    snprintf(empty, sizeof empty, "%s/empty", dir);
    assert_int_equal(cb_mkdirs(empty), CB_OK);
    assert_int_equal(cb_checkpoint_open(&ck, empty), CB_ERR_NOTFOUND);
    assert_msg_has("model.safetensors.index.json");
    /* a broken shard reports the shard's path */
    write_text(dir, "model.safetensors.index.json",
               "{\"weight_map\": {\"x\": \"broken.safetensors\"}}");
    write_text(dir, "broken.safetensors", "\x10\0\0\0\0\0\0\0{}");
    assert_int_equal(cb_checkpoint_open(&ck, dir), CB_ERR_FORMAT);
    assert_msg_has("broken.safetensors");
    tu_rmtree(dir);
}

/* ---- malformed images ---------------------------------------------------------------------- */

/* Builds [u64 len][header][data] in buf; returns the size. */
static size_t make_image(unsigned char *buf, size_t cap, const char *header, size_t data_len) {
    size_t n = strlen(header);
    assert_true(8 + n + data_len <= cap);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    for (size_t i = 0; i < data_len; i++) buf[8 + n + i] = (unsigned char)(i * 37 + 1);
    return 8 + n + data_len;
}

static void expect_bad(const char *header, size_t data_len, cb_status want, const char *needle) {
    unsigned char buf[4096];
    size_t n = make_image(buf, sizeof buf, header, data_len);
    cb_safetensors *st = (cb_safetensors *)1;
    cb_status got = cb_safetensors_parse(&st, buf, n, "bad.safetensors");
    if (got != want || !strstr(cb_last_error(), needle) ||
        !strstr(cb_last_error(), "bad.safetensors"))
        fprintf(stderr, "header %s: got %s: %s\n", header, cb_status_name(got), cb_last_error());
    assert_int_equal(got, want);
    assert_null(st);
    assert_msg_has("bad.safetensors");
    assert_msg_has(needle);
}

static void test_malformed(void **state) {
    (void)state;
    /* sanity: the template is valid */
    unsigned char buf[4096];
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"U8\",\"shape\":[1,3],\"data_offsets\":[8,11]}}";
    size_t n = make_image(buf, sizeof buf, good, 11);
    cb_safetensors *st;
    assert_int_equal(cb_safetensors_parse(&st, buf, n, "good.safetensors"), CB_OK);
    assert_int_equal(st->n_entries, 2);
    cb_safetensors_close(st);

    /* header length past the end, truncation */
    assert_int_equal(cb_safetensors_parse(&st, buf, 5, "bad.safetensors"), CB_ERR_FORMAT);
    assert_msg_has("bad.safetensors: file is 5 bytes");
    assert_int_equal(cb_safetensors_parse(&st, buf, 0, "bad.safetensors"), CB_ERR_FORMAT);
    assert_int_equal(cb_safetensors_parse(&st, buf, 8 + 20, "bad.safetensors"), CB_ERR_FORMAT);
    assert_msg_has("runs past the end of the file");
    assert_int_equal(cb_safetensors_parse(&st, buf, n - 1, "bad.safetensors"), CB_ERR_FORMAT);
    assert_msg_has("'b'");
    assert_msg_has("past the end of the data section");
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    assert_int_equal(cb_safetensors_parse(&st, huge, 10, "bad.safetensors"), CB_ERR_FORMAT);
    assert_msg_has("header length 18446744073709551615 runs past the end");
    unsigned char big[16] = {0x00, 0x00, 0x00, 0x10, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(cb_safetensors_parse(&st, big, 10, "bad.safetensors"), CB_ERR_FORMAT);
    assert_msg_has("runs past the end");

    /* the header itself */
    expect_bad("{\"a\": ", 0, CB_ERR_FORMAT, "not valid JSON");
    expect_bad("", 0, CB_ERR_FORMAT, "cannot hold");
    expect_bad("[1, 2, 3]", 0, CB_ERR_FORMAT, "not an object");
    expect_bad("\"text\"", 0, CB_ERR_FORMAT, "not an object");
    expect_bad("{}  x ", 0, CB_ERR_FORMAT, "trailing garbage");
    expect_bad("{}{}", 0, CB_ERR_FORMAT, "trailing garbage");
    expect_bad("{\"a\": 5}", 0, CB_ERR_FORMAT, "'a'");
    expect_bad("{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4, CB_ERR_FORMAT, "dtype");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4, CB_ERR_FORMAT,
               "shape");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4, CB_ERR_FORMAT, "data_offsets");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8,
               CB_ERR_FORMAT, "data_offsets");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4,
               CB_ERR_FORMAT, "'a'");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0.5, 4]}}", 4,
               CB_ERR_FORMAT, "'a'");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [\"0\", 4]}}", 4,
               CB_ERR_FORMAT, "'a'");
    /* dtypes */
    expect_bad("{\"w\": {\"dtype\": \"Q9\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               CB_ERR_FORMAT, "tensor 'w': unknown dtype 'Q9'");
    expect_bad("{\"w\": {\"dtype\": \"F64\", \"shape\": [1], \"data_offsets\": [0, 8]}}", 8,
               CB_ERR_UNSUPPORTED, "tensor 'w': unsupported dtype 'F64'");
    expect_bad("{\"w\": {\"dtype\": \"BOOL\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
               CB_ERR_UNSUPPORTED, "unsupported dtype 'BOOL'");
    expect_bad("{\"w\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1,
               CB_ERR_UNSUPPORTED, "unsupported dtype 'F8_E4M3'");
    expect_bad("{\"w\": {\"dtype\": 4, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               CB_ERR_FORMAT, "'w'");
    expect_bad("{\"w\": {\"dtype\": \"f32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4,
               CB_ERR_FORMAT, "unknown dtype 'f32'");
    /* offsets */
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [250], \"data_offsets\": [0, 1000]}}", 16,
               CB_ERR_FORMAT, "tensor 'w': data_offsets [0, 1000] run past the end");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8,
               CB_ERR_FORMAT, "tensor 'w': data_offsets [8, 4] end before they begin");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 12]}}", 12,
               CB_ERR_FORMAT, "tensor 'w': data_offsets [0, 12] hold 12 bytes but F32 [2] needs 8");
    expect_bad("{\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 3], \"data_offsets\": [0, 6]}}", 6,
               CB_ERR_FORMAT, "needs 12");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
               "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
               12, CB_ERR_FORMAT, "tensors 'a' and 'b' overlap");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
               "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
               8, CB_ERR_FORMAT, "overlap");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
               "\"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]}}",
               16, CB_ERR_FORMAT, "overlap");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
               "\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
               12, CB_ERR_FORMAT, "unreferenced bytes [4, 8) before tensor 'b'");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 9,
               CB_ERR_FORMAT, "5 trailing bytes after the last tensor");
    expect_bad("{}", 3, CB_ERR_FORMAT, "trailing bytes");
    /* shapes */
    expect_bad(
        "{\"r5\": {\"dtype\": \"U8\", \"shape\": [1, 1, 1, 1, 1], \"data_offsets\": [0, 1]}}", 1,
        CB_ERR_UNSUPPORTED, "tensor 'r5': rank 5");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4,
               CB_ERR_FORMAT, "tensor 'w': dimension 0 is -1");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 4]}}", 4,
               CB_ERR_FORMAT, "dimension 0 is 2.5");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [\"3\"], \"data_offsets\": [0, 12]}}", 12,
               CB_ERR_FORMAT, "dimension 0 is not a number");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": 3, \"data_offsets\": [0, 12]}}", 12,
               CB_ERR_FORMAT, "'w'");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [1e15, 1e15], \"data_offsets\": [0, 4]}}",
               4, CB_ERR_FORMAT, "absurdly large");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 0], "
               "\"data_offsets\": [0, 0]}}",
               0, CB_ERR_FORMAT, "absurdly large");
    expect_bad("{\"w\": {\"dtype\": \"F32\", \"shape\": [1e300], \"data_offsets\": [0, 4]}}", 4,
               CB_ERR_FORMAT, "'w'");
    /* names */
    expect_bad("{\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
               "\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
               2, CB_ERR_FORMAT, "duplicate tensor name 'a'");
    expect_bad("{\"a\\u0000x\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1]},"
               "\"a\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [1, 2]}}",
               2, CB_ERR_FORMAT, "duplicate tensor name 'a'");
    /* metadata */
    expect_bad("{\"__metadata__\": {\"k\": 1}}", 0, CB_ERR_FORMAT, "'__metadata__' key 'k'");
    expect_bad("{\"__metadata__\": [\"k\"]}", 0, CB_ERR_FORMAT, "__metadata__");
    expect_bad("{\"__metadata__\": {}, \"__metadata__\": {}}", 0, CB_ERR_FORMAT,
               "duplicate '__metadata__'");

    /* an embedded NUL inside the header is not a place to stop reading */
    char nul_header[] = "{}  ";
    nul_header[2] = 0;
    unsigned char nb[32];
    nb[0] = 4;
    memset(nb + 1, 0, 7);
    memcpy(nb + 8, "{}\0 ", 4);
    (void)nul_header;
    assert_int_equal(cb_safetensors_parse(&st, nb, 12, "bad.safetensors"), CB_ERR_FORMAT);
    assert_msg_has("trailing garbage");

    /* valid corner cases: empty header object, scalars, zero-size tensors, whitespace padding */
    n = make_image(buf, sizeof buf, "{}      ", 0);
    assert_int_equal(cb_safetensors_parse(&st, buf, n, "ok"), CB_OK);
    assert_int_equal(st->n_entries, 0);
    cb_safetensors_close(st);
    n = make_image(buf, sizeof buf,
                   "{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                   "\"e\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
                   "\"__metadata__\":null}",
                   8);
    assert_int_equal(cb_safetensors_parse(&st, buf, n, "ok"), CB_OK);
    assert_int_equal(st->n_entries, 2);
    assert_int_equal(cb_safetensors_find(st, "s")->ndim, 0);
    assert_int_equal(cb_safetensors_find(st, "e")->nbytes, 0);
    cb_safetensors_close(st);
}

/* Files on disk: the path appears in the messages; empty and truncated files. */
static void test_malformed_files(void **state) {
    (void)state;
    const char *tmp = tu_tmpdir();
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s", tmp);
    cb_safetensors *st;
    snprintf(p, sizeof p, "%s/empty.safetensors", dir);
    assert_int_equal(tu_write_file(p, "", 0), 0);
    assert_int_equal(cb_safetensors_open(&st, p), CB_ERR_FORMAT);
    assert_msg_has("empty.safetensors: file is 0 bytes");

    /* the fixture cut at several places */
    char *full;
    size_t size;
    assert_int_equal(cb_read_file(fixture("model.safetensors"), 1 << 22, &full, &size), CB_OK);
    snprintf(p, sizeof p, "%s/cut.safetensors", dir);
    size_t cuts[] = {3, 8, 100, 2143, 2144, 2145, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(tu_write_file(p, full, cuts[i]), 0);
        assert_int_equal(cb_safetensors_open(&st, p), CB_ERR_FORMAT);
        assert_msg_has("cut.safetensors");
        cb_checkpoint *ck;
        assert_int_equal(cb_checkpoint_open(&ck, p), CB_ERR_FORMAT);
        assert_null(ck);
    }
    /* cut inside the data: the message names the tensor whose bytes are missing */
    assert_int_equal(tu_write_file(p, full, size - 1), 0);
    assert_int_equal(cb_safetensors_open(&st, p), CB_ERR_FORMAT);
    assert_msg_has("tensor 'model.norm.weight'");
    /* a byte appended */
    char *plus = malloc(size + 1);
    memcpy(plus, full, size);
    plus[size] = 0;
    assert_int_equal(tu_write_file(p, plus, size + 1), 0);
    assert_int_equal(cb_safetensors_open(&st, p), CB_ERR_FORMAT);
    assert_msg_has("1 trailing bytes");
    free(plus);
    /* a directory is not a file */
    assert_int_equal(cb_safetensors_open(&st, dir), CB_ERR_IO);
    snprintf(p, sizeof p, "%s/none.safetensors", dir);
    assert_int_equal(cb_safetensors_open(&st, p), CB_ERR_IO);
    assert_msg_has("none.safetensors");
    free(full);
    tu_rmtree(dir);
}

/* Every truncation of the header region and many random byte flips: any status, no crash
 * (this runs under ASan/UBSan in CI), and a valid result is internally consistent. */
static void test_mutations(void **state) {
    (void)state;
    char *full;
    size_t size;
    assert_int_equal(cb_read_file(fixture("model.safetensors"), 1 << 22, &full, &size), CB_OK);
    cb_safetensors *st;
    for (size_t cut = 0; cut < 2300; cut++) {
        cb_status s = cb_safetensors_parse(&st, full, cut, "cut");
        assert_int_equal(s, CB_ERR_FORMAT);
    }
    unsigned char *m = malloc(size);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int ok = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, full, size);
        int flips = 1 + it % 3;
        for (int f = 0; f < flips; f++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            size_t at = (size_t)(rng % 2144);
            static const unsigned char pool[] = {'"', '{', '}', '[', ']', ',',  ':', '0', '9',
                                                 '-', '.', 'e', ' ', 0,   0xff, 'F', '1', '6'};
            m[at] = (it & 1) ? pool[(rng >> 32) % sizeof pool] : (unsigned char)(rng >> 40);
        }
        if (cb_safetensors_parse(&st, m, size, "mut") == CB_OK) {
            ok++;
            for (int i = 0; i < st->n_entries; i++) {
                const cb_st_entry *e = &st->entries[i];
                assert_true((const unsigned char *)e->data >= m + 8);
                assert_true((const unsigned char *)e->data + e->nbytes <= m + size);
            }
            cb_safetensors_close(st);
        }
    }
    (void)ok;
    free(m);
    free(full);
}

/* A file whose data section is not aligned (header length not a multiple of 4) still loads. */
static void test_unaligned(void **state) {
    (void)state;
    const char *tmp = tu_tmpdir();
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s", tmp);
    snprintf(p, sizeof p, "%s/odd.safetensors", dir);
    const char *h = "{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[1,5]},"
                    "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[5,13]}}";
    unsigned char buf[512];
    size_t hn = strlen(h);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hn >> (8 * i));
    memcpy(buf + 8, h, hn);
    unsigned char *d = buf + 8 + hn;
    d[0] = 9;
    uint16_t hv[2] = {cb_f32_to_f16(1.5f), cb_f32_to_f16(-3.0f)};
    float fv[2] = {0.125f, -6.5f};
    memcpy(d + 1, hv, 4);
    memcpy(d + 5, fv, 8);
    assert_int_equal(tu_write_file(p, buf, 8 + hn + 13), 0);
    cb_checkpoint *ck;
    assert_int_equal(cb_checkpoint_open(&ck, p), CB_OK);
    int64_t s2[1] = {2};
    cb_tensor *dst;
    assert_int_equal(cb_tensor_new(&dst, CB_F32, CB_CPU, 1, s2), CB_OK);
    assert_int_equal(cb_checkpoint_load(ck, "h", dst), CB_OK);
    assert_true(cb_f32(dst)[0] == 1.5f && cb_f32(dst)[1] == -3.0f);
    assert_int_equal(cb_checkpoint_load(ck, "f", dst), CB_OK);
    assert_true(cb_f32(dst)[0] == 0.125f && cb_f32(dst)[1] == -6.5f);
    cb_tensor_free(dst);
    cb_checkpoint_close(ck);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_read), cmocka_unit_test(test_fixture_checkpoint),
        cmocka_unit_test(test_roundtrip),    cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_malformed),    cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_mutations),    cmocka_unit_test(test_unaligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
