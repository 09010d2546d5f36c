/* The whole model on the GPU (issue 6): the tiny_llama3 fixture's logits, loss and every gradient
 * on cuda in f32 within the CPU conformance tolerances (logits max|d| <= 1e-4 max|ref|, loss 1e-5
 * relative, every gradient relative L2 <= 1e-3, references from Hugging Face transformers), the
 * other Llama variants likewise, AMP (bf16 compute, f32 master weights and gradients) within
 * bf16 tolerances, training steps through the trainer's optimizer agreeing with the CPU, the
 * batch-1 GPU decoder against the CPU's cached forward with the same cache format (fp16, q8_0,
 * q4_0, nf4) and the same (bf16-rounded) weights, the device quantizer byte for byte against the
 * CPU quantizer, and `caramba logits/grads --device cuda`.
 *
 * Without a GPU every test is skipped with the reason printed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/device.h"
#include "caramba/gpu_decode.h"
#include "caramba/model.h"
#include "caramba/npy.h"
#include "caramba/quant.h"
#include "caramba/safetensors.h"
#include "caramba/trainer.h"
#include "ops/cuda_api.h"
#include "testutil.h"

static bool have_gpu;

#define NEED_GPU()                                                                                 \
    do {                                                                                           \
        if (!have_gpu) skip();                                                                     \
    } while (0)

/* A host f32 copy of any tensor (device or host, any float dtype). Caller frees. */
static float *host_f32(const cb_tensor *t) {
    cb_tensor *h = NULL;
    if (cb_tensor_new(&h, CB_F32, CB_CPU, t->ndim, t->shape) != CB_OK)
        fail_msg("%s", cb_last_error());
    if (cb_tensor_copy(h, t) != CB_OK) fail_msg("copy to host: %s", cb_last_error());
    float *p = h->data;
    h->flags &= ~(unsigned)CB_TENSOR_OWNS_DATA;
    cb_tensor_free(h);
    return p;
}

static cb_model *open_on(const char *dir, cb_device dev) {
    cb_model *m = NULL;
    if (cb_model_open_hf(&m, dir, dev) != CB_OK) fail_msg("open %s: %s", dir, cb_last_error());
    return m;
}

/* Forward logits, next-token loss and gradients of a Hugging Face directory's reference data. */
static void check_dir(const char *dir, cb_dtype act, double tol_logits, double tol_loss,
                      double tol_grad, const double *ref_loss) {
    char path[1024];
    cb_model *m = open_on(dir, CB_CUDA);
    assert_int_equal(m->device, CB_CUDA);
    if (act != CB_F32) assert_int_equal(cb_model_set_compute_dtype(m, act), CB_OK);
    assert_int_equal(cb_model_enable_grads(m), CB_OK);
    cb_npy *in, *ref;
    snprintf(path, sizeof path, "%s/ref_input_ids.npy", dir);
    assert_int_equal(cb_npy_open(&in, path), CB_OK);
    snprintf(path, sizeof path, "%s/ref_logits.npy", dir);
    assert_int_equal(cb_npy_open(&ref, path), CB_OK);
    cb_tensor ids = cb_npy_tensor(in);
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CUDA), CB_OK);
    g.act_dtype = act;
    cb_graph_set_grad(&g, false);
    cb_tensor *logits = cb_model_forward(m, &g, &ids, NULL);
    if (!logits) fail_msg("%s: forward: %s", dir, cb_last_error());
    assert_int_equal(logits->device, CB_CUDA);
    int64_t n = cb_tensor_numel(logits);
    assert_int_equal((size_t)n * 4, ref->nbytes);
    float *lh = host_f32(logits);
    double diff = tu_max_abs_diff(lh, ref->data, n), mx = tu_max_abs(ref->data, n);
    print_message("  %s [%s]: logits max|d| %.3g (%.3g of max|ref|)\n", dir, cb_dtype_name(act),
                  diff, diff / mx);
    if (!(diff <= tol_logits * mx))
        fail_msg("%s: logits max diff %g (max |ref| %g)", dir, diff, mx);
    free(lh);
    cb_graph_reset(&g);
    cb_graph_set_grad(&g, true);
    cb_tensor *loss = cb_model_next_token_loss(m, &g, &ids);
    if (!loss) fail_msg("%s: loss: %s", dir, cb_last_error());
    float lv;
    assert_int_equal(cb_device_copy(CB_CPU, &lv, loss->device, loss->data, sizeof lv), CB_OK);
    if (ref_loss) {
        double rel = fabs(lv - *ref_loss) / *ref_loss;
        print_message("  loss %.9g (ref %.9g, rel %.3g)\n", (double)lv, *ref_loss, rel);
        if (!(rel <= tol_loss)) fail_msg("%s: loss %g vs %g", dir, (double)lv, *ref_loss);
    }
    assert_int_equal(cb_backward(&g, loss), CB_OK);
    cb_safetensors *rg;
    snprintf(path, sizeof path, "%s/ref_grads.safetensors", dir);
    assert_int_equal(cb_safetensors_open(&rg, path), CB_OK);
    assert_int_equal(rg->n_entries, m->n_params);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m->n_params; i++) {
        const cb_st_entry *e = cb_safetensors_find(rg, m->params[i]->name);
        if (!e) fail_msg("%s: no reference gradient for %s", dir, m->params[i]->name);
        assert_int_equal(m->params[i]->t->grad->dtype, CB_F32);
        float *gh = host_f32(m->params[i]->t->grad);
        double rel = tu_rel_l2(gh, e->data, cb_tensor_numel(m->params[i]->t));
        free(gh);
        if (rel > worst) worst = rel, worst_name = m->params[i]->name;
        if (!(rel <= tol_grad)) fail_msg("%s: %s gradient rel L2 %g", dir, m->params[i]->name, rel);
    }
    print_message("  worst gradient rel L2 %.3g (%s)\n", worst, worst_name);
    cb_safetensors_close(rg);
    cb_graph_free(&g);
    cb_npy_close(in);
    cb_npy_close(ref);
    cb_model_free(m);
}

static void test_fixture_f32(void **state) {
    (void)state;
    NEED_GPU();
    const double ref_loss = 6.247769355773926; /* tests/data/tiny_llama3/ref_info.json */
    check_dir(tu_path("tests/data/tiny_llama3"), CB_F32, 1e-4, 1e-5, 1e-3, &ref_loss);
}

static void test_variants_f32(void **state) {
    (void)state;
    NEED_GPU();
    const char *names[] = {"tied",        "mha_bias",      "bf16",    "fp16_sharded",
                           "rope_llama3", "legacy_llama3", "head_dim"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", tu_path("tests/data/llama_variants"), names[i]);
        check_dir(dir, CB_F32, 1e-4, 0, 1e-3, NULL);
    }
}

/* AMP: bf16 activations and weights copies, f32 accumulation, master weights and gradients. The
 * tolerances are bf16's: 8 mantissa bits, so ~4e-3 per rounding, a few roundings deep. */
static void test_fixture_amp(void **state) {
    (void)state;
    NEED_GPU();
    const double ref_loss = 6.247769355773926;
    check_dir(tu_path("tests/data/tiny_llama3"), CB_BF16, 5e-2, 1e-2, 1e-1, &ref_loss);
}

/* ids [2, 24] of the fixture as int32 host tensors x = ids[:, :-1], y = ids[:, 1:]. */
static void fixture_batch(int32_t *xb, int32_t *yb, cb_tensor *x, cb_tensor *y) {
    cb_npy *in;
    assert_int_equal(cb_npy_open(&in, tu_path("tests/data/tiny_llama3/ref_input_ids.npy")), CB_OK);
    cb_tensor ids = cb_npy_tensor(in);
    int64_t B = ids.shape[0], T = ids.shape[1];
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t + 1 < T; t++) {
            int64_t i = b * T + t;
            int64_t v0 = ids.dtype == CB_I64 ? ((int64_t *)ids.data)[i] : ((int32_t *)ids.data)[i];
            int64_t v1 =
                ids.dtype == CB_I64 ? ((int64_t *)ids.data)[i + 1] : ((int32_t *)ids.data)[i + 1];
            xb[b * (T - 1) + t] = (int32_t)v0;
            yb[b * (T - 1) + t] = (int32_t)v1;
        }
    int64_t sh[2] = {B, T - 1};
    cb_tensor_init(x, CB_I32, CB_CPU, 2, sh, xb);
    cb_tensor_init(y, CB_I32, CB_CPU, 2, sh, yb);
    cb_npy_close(in);
}

/* Three optimizer steps (the trainer's gradient, norm, clipping and AdamW functions) on the GPU
 * in f32 and on the CPU give the same losses and weights; in bf16 (AMP) the losses stay close and
 * every 16-bit weight copy equals its master rounded to bf16 after each step. */
static void run_steps(cb_device dev, cb_dtype act, double *losses, cb_model **out) {
    cb_model *m = open_on(tu_path("tests/data/tiny_llama3"), dev);
    if (act != CB_F32) assert_int_equal(cb_model_set_compute_dtype(m, act), CB_OK);
    assert_int_equal(cb_model_enable_grads(m), CB_OK);
    cb_adamw_cfg ac;
    cb_adamw_defaults(&ac);
    cb_optimizer *opt;
    assert_int_equal(cb_optimizer_new(&opt, m, &ac), CB_OK);
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, dev), CB_OK);
    g.act_dtype = act;
    int32_t xb[64], yb[64];
    cb_tensor x, y;
    fixture_batch(xb, yb, &x, &y);
    cb_batch batch = {&x, &y};
    for (int s = 0; s < 3; s++) {
        double loss, norm;
        if (cb_train_grads(m, NULL, &g, NULL, &batch, 1, &loss) != CB_OK)
            fail_msg("%s", cb_last_error());
        assert_int_equal(cb_grad_global_norm(m, &norm), CB_OK);
        assert_int_equal(cb_optimizer_step(opt, 3e-3, cb_clip_scale(norm, 0.5)), CB_OK);
        losses[s] = loss;
        if (act != CB_F32)
            for (int i = 0; i < m->n_params; i++) {
                cb_tensor *t = m->params[i]->t;
                if (!t->lowp) continue;
                int64_t n = cb_tensor_numel(t);
                float *master = host_f32(t);
                uint16_t *low = malloc(sizeof(uint16_t) * (size_t)n);
                assert_int_equal(cb_device_copy(CB_CPU, low, CB_CUDA, t->lowp->data, (size_t)n * 2),
                                 CB_OK);
                for (int64_t k = 0; k < n; k++)
                    if (low[k] != cb_f32_to_bf16(master[k]))
                        fail_msg("%s: bf16 copy is stale after step %d at %lld", m->params[i]->name,
                                 s + 1, (long long)k);
                free(master);
                free(low);
            }
    }
    cb_graph_free(&g);
    cb_optimizer_free(opt);
    *out = m;
}

static void test_train_steps(void **state) {
    (void)state;
    NEED_GPU();
    double lc[3], lg[3], la[3];
    cb_model *mc, *mg, *ma;
    run_steps(CB_CPU, CB_F32, lc, &mc);
    run_steps(CB_CUDA, CB_F32, lg, &mg);
    run_steps(CB_CUDA, CB_BF16, la, &ma);
    for (int s = 0; s < 3; s++) {
        print_message("  step %d loss: cpu %.7f  cuda f32 %.7f  cuda bf16 %.7f\n", s + 1, lc[s],
                      lg[s], la[s]);
        assert_true(fabs(lg[s] - lc[s]) <= 1e-5 * fabs(lc[s]));
        assert_true(fabs(la[s] - lc[s]) <= 1e-2 * fabs(lc[s]));
    }
    assert_true(lc[2] < lc[0]);
    double worst = 0;
    for (int i = 0; i < mc->n_params; i++) {
        float *a = host_f32(mg->params[i]->t);
        double rel = tu_rel_l2(a, mc->params[i]->t->data, cb_tensor_numel(mc->params[i]->t));
        if (rel > worst) worst = rel;
        free(a);
    }
    print_message("  weights after 3 steps, cuda f32 vs cpu: worst rel L2 %.3g\n", worst);
    assert_true(worst <= 1e-4);
    cb_model_free(mc);
    cb_model_free(mg);
    cb_model_free(ma);
}

/* ---- GPU decoder ------------------------------------------------------------------------------
 */

static const char *DEC_CONFIG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 512, "
    "\"hidden_size\": 192, \"intermediate_size\": 320, \"num_hidden_layers\": 2, "
    "\"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"head_dim\": 32, "
    "\"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
    "\"tie_word_embeddings\": false, \"hidden_act\": \"silu\", \"bos_token_id\": 1, "
    "\"eos_token_id\": 2, \"torch_dtype\": \"float32\"}";

static cb_model *dec_model(const char *dir, cb_device dev) {
    cb_llama_config cfg;
    if (cb_llama_config_load(dir, &cfg) != CB_OK) fail_msg("%s", cb_last_error());
    cb_model *m;
    if (cb_model_from_llama_config(&m, &cfg, dev) != CB_OK) fail_msg("%s", cb_last_error());
    return m;
}

/* The decoder's model on cuda (bf16 compute) and the CPU reference with the same weights (the bf16
 * copies, widened), from the text of a config.json. */
static void dec_model_pair(const char *config, cb_model **mg, cb_model **mc) {
    const char *dir = tu_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(tu_write_file(path, config, strlen(config)), 0);
    *mg = dec_model(dir, CB_CUDA), *mc = dec_model(dir, CB_CPU);
    tu_rmtree(dir);
    assert_int_equal(cb_model_set_compute_dtype(*mg, CB_BF16), CB_OK);
    for (int i = 0; i < (*mc)->n_params; i++) {
        cb_tensor *t = (*mg)->params[i]->t, *src = t->lowp ? t->lowp : t;
        assert_int_equal(cb_tensor_copy((*mc)->params[i]->t, src), CB_OK);
    }
}

/* Steps the decoder through prompt[0, np) and checks its logits at every position p > 0 against
 * the CPU model's cached forward (ctx: an empty cache of the same kind) within tol; returns the
 * worst rel L2. Position 0 is skipped: there the CPU attends over the unquantized key and value. */
static double step_and_compare(cb_gpu_decoder *d, cb_model *mc, cb_infer_ctx *ctx,
                               const int32_t *prompt, int np, double tol, cb_kv_kind kind) {
    int64_t V = mc->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)V);
    cb_graph g;
    assert_int_equal(cb_graph_init(&g, CB_CPU), CB_OK);
    cb_graph_set_grad(&g, false);
    double worst = 0;
    for (int p = 0; p < np; p++) {
        assert_int_equal(cb_gpu_decoder_steps(d, 1), CB_OK);
        assert_int_equal(cb_gpu_decoder_logits(d, lg), CB_OK);
        cb_graph_reset(&g);
        cb_infer_ctx_begin(ctx, p);
        int64_t sh[2] = {1, 1};
        cb_tensor ids;
        cb_tensor_init(&ids, CB_I32, CB_CPU, 2, sh, (void *)&prompt[p]);
        cb_tensor *ref = cb_model_forward(mc, &g, &ids, ctx);
        if (!ref) fail_msg("%s", cb_last_error());
        assert_int_equal(cb_infer_ctx_end(ctx), CB_OK);
        double rel = tu_rel_l2(lg, ref->data, V);
        if (p > 0 && rel > worst) worst = rel;
        if (p > 0 && !(rel <= tol))
            fail_msg("%s cache, position %d: decoder logits rel L2 %g", cb_kv_kind_name(kind), p,
                     rel);
    }
    cb_graph_free(&g);
    free(lg);
    return worst;
}

static void test_decoder(void **state) {
    (void)state;
    NEED_GPU();
    cb_model *mg, *mc;
    dec_model_pair(DEC_CONFIG, &mg, &mc);
    enum { NP = 24 };
    int32_t prompt[NP];
    for (int i = 0; i < NP; i++) prompt[i] = (int32_t)((i * 131 + 7) % 512);
    const cb_kv_kind kinds[4] = {CB_KV_FP16, CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    /* q4_0 / nf4 codes are 1/8 of a block's range apart: an f32 rounding difference between the
     * CPU and GPU keys that flips one code moves a score visibly (the bytes are checked below) */
    const double tol[4] = {2e-3, 5e-3, 3e-2, 3e-2};
    int64_t V = mg->vocab_size;
    float *lg = malloc(sizeof(float) * (size_t)V);
    for (int k = 0; k < 4; k++) {
        cb_gpu_decoder *d;
        if (cb_gpu_decoder_new(&d, mg, kinds[k], 64) != CB_OK) fail_msg("%s", cb_last_error());
        assert_int_equal(cb_gpu_decoder_reset(d, prompt, NP), CB_OK);
        cb_kv_policy pol;
        assert_int_equal(cb_kv_policy_parse(cb_kv_kind_name(kinds[k]), &pol), CB_OK);
        cb_infer_ctx ctx;
        assert_int_equal(cb_model_caches_new(mc, 1, 64, &pol, &ctx), CB_OK);
        double worst = step_and_compare(d, mc, &ctx, prompt, NP, tol[k], kinds[k]);
        print_message("  decoder %s cache: logits vs CPU cached forward, worst rel L2 %.3g\n",
                      cb_kv_kind_name(kinds[k]), worst);
        /* the cache rows are the CPU's format: every key and value row equals the CPU cache's
         * bytes (the same values quantized; f32 rounding differences between the two forwards
         * may flip a rare code) */
        size_t rb = cb_kv_bytes_per_token(kinds[k], 2 * 32);
        uint8_t *row = malloc(rb);
        size_t same = 0, total = 0;
        for (int l = 0; l < mg->n_attn; l++)
            for (int w = 0; w < 2; w++)
                for (int p = 0; p < NP; p++) {
                    assert_int_equal(cb_gpu_decoder_cache_row(d, l, w, p, row), CB_OK);
                    const uint8_t *crow =
                        cb_seq_cache_row(w ? &ctx.caches[l].v : &ctx.caches[l].k, 0, p);
                    for (size_t b = 0; b < rb; b++) same += row[b] == crow[b];
                    total += rb;
                }
        print_message("    cache rows: %zu of %zu bytes identical to the CPU cache's\n", same,
                      total);
        assert_true(same * 100 >= total * 99);
        free(row);
        /* generation: 8 greedy tokens, each the argmax of the decoder's own logits */
        assert_int_equal(cb_gpu_decoder_steps(d, 8), CB_OK);
        int32_t out[NP + 9];
        assert_int_equal(cb_gpu_decoder_tokens(d, 0, NP + 9, out), CB_OK);
        for (int i = 0; i < NP; i++) assert_int_equal(out[i], prompt[i]);
        assert_int_equal(cb_gpu_decoder_logits(d, lg), CB_OK);
        int64_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = i;
        assert_int_equal(out[NP + 8], best);
        if (kinds[k] == CB_KV_FP16) {
            /* the batched prefill (bf16 forward of the whole prompt) writes the same keys and
             * values as stepping through the prompt, up to bf16 rounding */
            cb_gpu_decoder *d2;
            if (cb_gpu_decoder_new(&d2, mg, CB_KV_FP16, 64) != CB_OK)
                fail_msg("%s", cb_last_error());
            if (cb_gpu_decoder_prefill(d2, prompt, NP) != CB_OK)
                fail_msg("prefill: %s", cb_last_error());
            uint16_t *r1 = malloc(rb), *r2 = malloc(rb);
            double num = 0, den = 0;
            for (int l = 0; l < mg->n_attn; l++)
                for (int w = 0; w < 2; w++)
                    for (int p = 0; p < NP; p++) {
                        assert_int_equal(cb_gpu_decoder_cache_row(d, l, w, p, r1), CB_OK);
                        assert_int_equal(cb_gpu_decoder_cache_row(d2, l, w, p, r2), CB_OK);
                        for (size_t i = 0; i < rb / 2; i++) {
                            double a = cb_f16_to_f32(r1[i]), b = cb_f16_to_f32(r2[i]);
                            num += (a - b) * (a - b);
                            den += a * a;
                        }
                    }
            double rel = sqrt(num / den);
            print_message("  batched prefill vs token-by-token: cache rows rel L2 %.3g\n", rel);
            assert_true(rel <= 2e-2);
            assert_int_equal(cb_gpu_decoder_steps(d2, 8), CB_OK);
            int32_t out2[NP + 9];
            assert_int_equal(cb_gpu_decoder_tokens(d2, 0, NP + 9, out2), CB_OK);
            int agree = 0;
            while (agree < 9 && out2[NP + agree] == out[NP + agree]) agree++;
            print_message("  prefill path: %d of 9 greedy tokens equal the token-by-token path's\n",
                          agree);
            for (int i = 0; i < NP + 9; i++) assert_true(out2[i] >= 0 && out2[i] < V);
            free(r1);
            free(r2);
            cb_gpu_decoder_free(d2);
        }
        cb_model_caches_free(&ctx);
        cb_gpu_decoder_free(d);
    }
    free(lg);
    cb_model_free(mg);
    cb_model_free(mc);
}

/* The decoder's greedy choice (folded into its head GEMV: per-block first maxima merged through one
 * atomic key) keeps the CPU's rule: the first index of the maximum, NaN never chosen. The head and
 * the final norm are edited in place (the decoder reads the model's device tensors). */
/* Head size 64 with 4 query heads per kv head (the `small` / `1b` geometry: q8_0 takes the
 * tensor-core passes there) and chunks forced to 320 keys, so that a chunk spans whole and
 * partial tiles (256 rows quantized, 128 f16) and 560 positions split into two chunks that the
 * combine joins: every position's logits against the CPU cached forward. The block formats
 * stage their tiles as whole 16-byte words here (a partial tile reads past its last row). */
static const char *DEC64_CONFIG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 512, "
    "\"hidden_size\": 256, \"intermediate_size\": 256, \"num_hidden_layers\": 2, "
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 1, \"head_dim\": 64, "
    "\"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
    "\"tie_word_embeddings\": false, \"hidden_act\": \"silu\", \"bos_token_id\": 1, "
    "\"eos_token_id\": 2, \"torch_dtype\": \"float32\"}";

static void test_decoder_chunk_tiles(void **state) {
    (void)state;
    NEED_GPU();
    cb_model *mg, *mc;
    dec_model_pair(DEC64_CONFIG, &mg, &mc);
    enum { NP = 560, MAXLEN = 600 };
    int32_t *prompt = malloc(sizeof(int32_t) * NP);
    for (int i = 0; i < NP; i++) prompt[i] = (int32_t)((i * 197 + 11) % 512);
    const cb_kv_kind kinds[4] = {CB_KV_FP16, CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    const double tol[4] = {2e-3, 5e-3, 3e-2, 3e-2};
    setenv("CARAMBA_CUDA_DEC_CHUNK", "320", 1);
    for (int k = 0; k < 4; k++) {
        cb_gpu_decoder *d;
        if (cb_gpu_decoder_new(&d, mg, kinds[k], MAXLEN) != CB_OK) fail_msg("%s", cb_last_error());
        assert_int_equal(cb_gpu_decoder_reset(d, prompt, NP), CB_OK);
        cb_kv_policy pol;
        assert_int_equal(cb_kv_policy_parse(cb_kv_kind_name(kinds[k]), &pol), CB_OK);
        cb_infer_ctx ctx;
        assert_int_equal(cb_model_caches_new(mc, 1, MAXLEN, &pol, &ctx), CB_OK);
        double worst = step_and_compare(d, mc, &ctx, prompt, NP, tol[k], kinds[k]);
        print_message("  head size 64, 320-key chunks, %s cache: %d positions, worst rel L2 %.3g\n",
                      cb_kv_kind_name(kinds[k]), NP, worst);
        cb_model_caches_free(&ctx);
        cb_gpu_decoder_free(d);
    }
    unsetenv("CARAMBA_CUDA_DEC_CHUNK");
    free(prompt);
    cb_model_free(mg);
    cb_model_free(mc);
}

static void test_greedy_ties(void **state) {
    (void)state;
    NEED_GPU();
    const char *dir = tu_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    assert_int_equal(tu_write_file(path, DEC_CONFIG, strlen(DEC_CONFIG)), 0);
    cb_model *mg = dec_model(dir, CB_CUDA);
    assert_int_equal(cb_model_set_compute_dtype(mg, CB_BF16), CB_OK);
    cb_gpu_decoder *d;
    if (cb_gpu_decoder_new(&d, mg, CB_KV_FP16, 64) != CB_OK) fail_msg("%s", cb_last_error());
    int64_t D = mg->d_model, V = mg->vocab_size;
    cb_tensor *fnorm = cb_model_find_param(mg, "model.norm.weight")->t;
    cb_tensor *head = cb_model_find_param(mg, "lm_head.weight")->t->lowp;
    assert_non_null(head);
    /* 1. a zero final norm: every logit is 0, the choice is id 0 */
    float *g = calloc((size_t)D, sizeof(float));
    cb_tensor gt;
    cb_tensor_init(&gt, CB_F32, CB_CPU, 1, &D, g);
    assert_int_equal(cb_tensor_copy(fnorm, &gt), CB_OK);
    int32_t prompt[4] = {11, 22, 33, 44}, out[6];
    assert_int_equal(cb_gpu_decoder_reset(d, prompt, 4), CB_OK);
    assert_int_equal(cb_gpu_decoder_steps(d, 4), CB_OK);
    assert_int_equal(cb_gpu_decoder_tokens(d, 0, 5, out), CB_OK);
    assert_int_equal(out[4], 0);
    /* 2. only input dimension 0 reaches the head; its column holds +1 in rows 5 and 9, -1 in
     * rows 3 and 7, NaN in row 2 and 0 elsewhere: whatever the sign of the normalised input,
     * two rows tie for the maximum and the first of them must be chosen */
    g[0] = 1.0f;
    assert_int_equal(cb_tensor_copy(fnorm, &gt), CB_OK);
    uint16_t *w = malloc(sizeof(uint16_t) * (size_t)(V * D));
    int64_t hs[2] = {V, D};
    cb_tensor ht;
    cb_tensor_init(&ht, CB_BF16, CB_CPU, 2, hs, w);
    assert_int_equal(cb_tensor_copy(&ht, head), CB_OK);
    for (int64_t r = 0; r < V; r++) w[r * D] = 0;
    w[5 * D] = w[9 * D] = 0x3F80; /* +1 */
    w[3 * D] = w[7 * D] = 0xBF80; /* -1 */
    w[2 * D] = 0x7FC0;            /* NaN */
    assert_int_equal(cb_tensor_copy(head, &ht), CB_OK);
    assert_int_equal(cb_gpu_decoder_steps(d, 1), CB_OK);
    assert_int_equal(cb_gpu_decoder_tokens(d, 0, 6, out), CB_OK);
    float *lg = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(cb_gpu_decoder_logits(d, lg), CB_OK);
    assert_true(isnan(lg[2]));
    int64_t best = -1, ties = 0;
    for (int64_t i = 0; i < V; i++) {
        if (isnan(lg[i])) continue;
        if (best < 0 || lg[i] > lg[best])
            best = i, ties = 1;
        else if (lg[i] == lg[best])
            ties++;
    }
    print_message("  greedy choice with tied maxima (logit %g, %lld rows): id %d (expected %lld)\n",
                  (double)lg[best], (long long)ties, out[5], (long long)best);
    assert_true(ties >= 2);
    assert_true(best == 3 || best == 5);
    assert_int_equal(out[5], best);
    free(lg);
    free(w);
    free(g);
    cb_gpu_decoder_free(d);
    cb_model_free(mg);
    tu_rmtree(dir);
}

/* The device quantizer writes the CPU quantizer's bytes (q8_0, q4_0, nf4, f16), padding included.
 */
static void test_quantize_bytes(void **state) {
    (void)state;
    NEED_GPU();
    const cb_cuda_api *cu = cb_cuda_api_get();
    assert_non_null(cu);
    const int64_t widths[2] = {256, 100};
    const cb_dtype dts[4] = {CB_Q8_0, CB_Q4_0, CB_NF4, CB_F16};
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int w = 0; w < 2; w++) {
        int64_t W = widths[w], R = 64;
        float *x = malloc(sizeof(float) * (size_t)(R * W));
        for (int64_t i = 0; i < R * W; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            x[i] = ((float)(s >> 40) / 16777216.0f - 0.5f) * (float)(1 + (i / W) % 7);
        }
        for (int64_t i = 0; i < W; i++) x[i] = 0.0f; /* an all-zero row */
        x[W] = -0.0f;
        for (int64_t i = 0; i < 32 && 2 * W + i < R * W; i++)
            x[2 * W + i] = (i % 2 ? 1.5f : -1.5f); /* ties */
        float *dx = cb_device_alloc(CB_CUDA, sizeof(float) * (size_t)(R * W));
        assert_non_null(dx);
        assert_int_equal(cb_device_copy(CB_CUDA, dx, CB_CPU, x, sizeof(float) * (size_t)(R * W)),
                         CB_OK);
        for (int k = 0; k < 4; k++) {
            size_t rb = cb_quant_row_bytes(dts[k], W);
            uint8_t *cpu = malloc(rb * (size_t)R), *gpu = malloc(rb * (size_t)R);
            void *dq = cb_device_alloc(CB_CUDA, rb * (size_t)R);
            for (int64_t r = 0; r < R; r++)
                assert_int_equal(cb_quantize_row(dts[k], x + r * W, W, cpu + r * rb), CB_OK);
            assert_int_equal(cu->quantize_rows(dts[k], dx, R, W, dq), CB_OK);
            assert_int_equal(cb_device_copy(CB_CPU, gpu, CB_CUDA, dq, rb * (size_t)R), CB_OK);
            for (size_t b = 0; b < rb * (size_t)R; b++)
                if (cpu[b] != gpu[b])
                    fail_msg("%s width %lld: byte %zu differs (cpu %02x, gpu %02x)",
                             cb_dtype_name(dts[k]), (long long)W, b, cpu[b], gpu[b]);
            cb_device_free(CB_CUDA, dq);
            free(cpu);
            free(gpu);
        }
        cb_device_free(CB_CUDA, dx);
        free(x);
    }
}

/* caramba logits / grads --device cuda on the fixture. */
static void test_cli(void **state) {
    (void)state;
    NEED_GPU();
    if (!tu_bin()) {
        print_message("skipping: CARAMBA_BIN is not set\n");
        skip();
    }
    const char *dir = tu_tmpdir();
    char fx[1024], out[8192], lp[4200], gp[4200];
    snprintf(fx, sizeof fx, "%s", tu_path("tests/data/tiny_llama3"));
    snprintf(lp, sizeof lp, "%s/logits.npy", dir);
    snprintf(gp, sizeof gp, "%s/grads.safetensors", dir);
    int rc =
        tu_run(out, sizeof out,
               "'%s' logits --model '%s' --ids '%s/ref_input_ids.npy' --out '%s' --device cuda",
               tu_bin(), fx, fx, lp);
    if (rc) fail_msg("caramba logits: %s", out);
    cb_npy *a, *b;
    assert_int_equal(cb_npy_open(&a, lp), CB_OK);
    char rp[1100];
    snprintf(rp, sizeof rp, "%s/ref_logits.npy", fx);
    assert_int_equal(cb_npy_open(&b, rp), CB_OK);
    int64_t n = (int64_t)(b->nbytes / 4);
    assert_int_equal(a->nbytes, b->nbytes);
    assert_true(tu_max_abs_diff(a->data, b->data, n) <= 1e-4 * tu_max_abs(b->data, n));
    cb_npy_close(a);
    cb_npy_close(b);
    rc = tu_run(out, sizeof out,
                "'%s' grads --model '%s' --ids '%s/ref_input_ids.npy' --out '%s' --device cuda",
                tu_bin(), fx, fx, gp);
    if (rc) fail_msg("caramba grads: %s", out);
    double loss = 0;
    const char *l = strstr(out, "loss: ");
    assert_non_null(l);
    loss = atof(l + 6);
    assert_true(fabs(loss - 6.247769355773926) <= 1e-5 * 6.247769355773926);
    cb_safetensors *g, *r;
    assert_int_equal(cb_safetensors_open(&g, gp), CB_OK);
    snprintf(rp, sizeof rp, "%s/ref_grads.safetensors", fx);
    assert_int_equal(cb_safetensors_open(&r, rp), CB_OK);
    assert_int_equal(g->n_entries, r->n_entries);
    for (int i = 0; i < r->n_entries; i++) {
        const cb_st_entry *e = &r->entries[i], *f = cb_safetensors_find(g, e->name);
        assert_non_null(f);
        assert_int_equal(f->nbytes, e->nbytes);
        double rel = tu_rel_l2(f->data, e->data, (int64_t)(e->nbytes / 4));
        if (!(rel <= 1e-3)) fail_msg("%s: rel L2 %g", e->name, rel);
    }
    cb_safetensors_close(g);
    cb_safetensors_close(r);
    tu_rmtree(dir);
}

static int group_setup(void **state) {
    (void)state;
    have_gpu = cb_device_available(CB_CUDA);
    if (!have_gpu)
        print_message("skipping CUDA model tests: %s\n", cb_last_error());
    else {
        const cb_cuda_api *cu = cb_cuda_api_get();
        print_message("CUDA device: %s\n", cu->device_description());
    }
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_f32), cmocka_unit_test(test_variants_f32),
        cmocka_unit_test(test_fixture_amp), cmocka_unit_test(test_train_steps),
        cmocka_unit_test(test_decoder),     cmocka_unit_test(test_decoder_chunk_tiles),
        cmocka_unit_test(test_greedy_ties), cmocka_unit_test(test_quantize_bytes),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
