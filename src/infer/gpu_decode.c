/* The GPU decoder's core side (caramba/gpu_decode.h): checks that the model has the Llama shape
 * the CUDA decoder implements, gathers device pointers of its weights (the bf16 AMP copies) and
 * rope tables, and forwards to the plugin (ops/cuda_api.h). */
#include "caramba/gpu_decode.h"

#include <stdio.h>
#include <stdlib.h>

#include "model/model_impl.h"
#include "ops/cuda_api.h"

struct cb_gpu_decoder {
    const cb_cuda_api *cu;
    cb_cuda_decoder *dec;
    cb_model *m;
    cb_graph g; /* the batched prefill's forward */
    bool g_ready;
    int64_t max_len;
    size_t weight_bytes; /* per step, embedding table excluded (one row counted) */
};

static cb_tensor *param(const cb_model *m, const char *fmt, int i) {
    char name[160];
    snprintf(name, sizeof name, fmt, i);
    cb_param *p = cb_model_find_param(m, name);
    return p ? p->t : NULL;
}

static size_t bytes_of(const cb_tensor *t) {
    return cb_tensor_nbytes(t);
}

typedef struct find_state {
    const cb_module *norm, *mlp;
} find_state;

static void find(cb_module *mod, void *user) {
    find_state *f = user;
    if (mod->kind == CB_MOD_RMSNORM && !f->norm) f->norm = mod;
    if (mod->kind == CB_MOD_SWIGLU && !f->mlp) f->mlp = mod;
}

cb_status cb_gpu_decoder_new(cb_gpu_decoder **out, cb_model *m, cb_kv_kind kv, int64_t max_len) {
    *out = NULL;
    if (m->device != CB_CUDA) return cb_fail(CB_ERR_ARG, "GPU decoder: the model is not on cuda");
    if (!m->llama_names || m->n_attn < 1)
        return cb_fail(CB_ERR_UNSUPPORTED, "GPU decoder: only the Llama shape is supported");
    if (kv != CB_KV_FP16 && kv != CB_KV_Q8_0 && kv != CB_KV_Q4_0 && kv != CB_KV_NF4)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "GPU decoder: cache kind %s (supported: fp16, q8_0, q4_0, nf4)",
                       cb_kv_kind_name(kv));
    const cb_cuda_api *cu = cb_cuda_api_get();
    if (!cu) return CB_ERR_UNSUPPORTED;
    const cb_attention_cfg *a = &m->attn[0]->attn;
    for (int i = 0; i < m->n_attn; i++) {
        const cb_attention_cfg *b = &m->attn[i]->attn;
        if (b->mode == CB_ATTN_DECOUPLED || b->learned_temp || b->bias || !b->is_causal ||
            b->local_window > 0 || !b->rope_enabled || b->n_heads != a->n_heads ||
            b->n_kv_heads != a->n_kv_heads || b->head_dim != a->head_dim ||
            b->v_head_dim != b->head_dim || m->attn[i]->rope != m->attn[0]->rope)
            return cb_fail(CB_ERR_UNSUPPORTED,
                           "GPU decoder: attention layer %d is not plain Llama "
                           "attention (bias, window, decoupled, learned_temp or mixed shapes)",
                           i);
    }
    find_state fs = {NULL, NULL};
    cb_module_walk(m->root, find, &fs);
    if (!fs.norm || !fs.mlp || fs.mlp->bias)
        return cb_fail(CB_ERR_UNSUPPORTED, "GPU decoder: no RMSNorm / bias-free SwiGLU found");
    if (!m->embed.t->lowp || m->embed.t->lowp->dtype != CB_BF16)
        CB_TRY(cb_model_set_compute_dtype(m, CB_BF16));
    CB_TRY(cb_model_ensure_positions(m, max_len));
    int L = m->n_attn;
    cb_cuda_dec_layer *layers = calloc((size_t)L, sizeof *layers);
    cb_gpu_decoder *d = calloc(1, sizeof *d);
    if (!layers || !d) {
        free(layers);
        free(d);
        return cb_fail(CB_ERR_NOMEM, "GPU decoder");
    }
    cb_status st = CB_OK;
    size_t wb = 0;
    for (int i = 0; i < L && st == CB_OK; i++) {
        cb_tensor *t[9] = {
            param(m, "model.layers.%d.input_layernorm.weight", i),
            param(m, "model.layers.%d.post_attention_layernorm.weight", i),
            param(m, "model.layers.%d.self_attn.q_proj.weight", i),
            param(m, "model.layers.%d.self_attn.k_proj.weight", i),
            param(m, "model.layers.%d.self_attn.v_proj.weight", i),
            param(m, "model.layers.%d.self_attn.o_proj.weight", i),
            param(m, "model.layers.%d.mlp.gate_proj.weight", i),
            param(m, "model.layers.%d.mlp.up_proj.weight", i),
            param(m, "model.layers.%d.mlp.down_proj.weight", i),
        };
        for (int k = 0; k < 9 && st == CB_OK; k++) {
            if (!t[k] || (k >= 2 && (!t[k]->lowp || t[k]->lowp->dtype != CB_BF16)))
                st = cb_fail(CB_ERR_UNSUPPORTED,
                             "GPU decoder: layer %d lacks a weight (or its bf16 copy)", i);
            else
                wb += k >= 2 ? bytes_of(t[k]->lowp) : bytes_of(t[k]);
        }
        if (st != CB_OK) break;
        layers[i] = (cb_cuda_dec_layer){
            .attn_norm = t[0]->data,
            .mlp_norm = t[1]->data,
            .wq = t[2]->lowp->data,
            .wk = t[3]->lowp->data,
            .wv = t[4]->lowp->data,
            .wo = t[5]->lowp->data,
            .wg = t[6]->lowp->data,
            .wu = t[7]->lowp->data,
            .wd = t[8]->lowp->data,
        };
    }
    cb_tensor *fnorm = cb_model_find_param(m, "model.norm.weight")
                           ? cb_model_find_param(m, "model.norm.weight")->t
                           : NULL;
    cb_tensor *head = m->tied ? m->embed.t
                              : (cb_model_find_param(m, "lm_head.weight")
                                     ? cb_model_find_param(m, "lm_head.weight")->t
                                     : NULL);
    if (st == CB_OK && (!fnorm || !head || !head->lowp))
        st = cb_fail(CB_ERR_UNSUPPORTED, "GPU decoder: no final norm or head");
    const cb_rope_table *rt = m->attn[0]->rope;
    if (st == CB_OK && (!rt || !rt->cos || rt->cos->dtype != CB_F32))
        st = cb_fail(CB_ERR_UNSUPPORTED, "GPU decoder: no f32 rope table");
    if (st == CB_OK) {
        wb += bytes_of(fnorm) + bytes_of(head->lowp) +
              (size_t)m->d_model * cb_dtype_size(m->embed.t->lowp->dtype); /* one embedding row */
        cb_cuda_dec_cfg cfg = {
            .n_layers = L,
            .d_model = m->d_model,
            .n_heads = a->n_heads,
            .n_kv_heads = a->n_kv_heads,
            .head_dim = a->head_dim,
            .d_ff = fs.mlp->d_ff,
            .vocab = m->vocab_size,
            .rms_eps = fs.norm->eps,
            .rope_pairs = rt->pairs,
            .rope_cos = rt->cos->data,
            .rope_sin = rt->sin->data,
            .rope_rows = rt->max_pos,
            .kv_dtype = (int)cb_kv_kind_dtype(kv),
            .max_len = max_len,
            .embed = m->embed.t->lowp->data,
            .embed_dtype = (int)m->embed.t->lowp->dtype,
            .final_norm = fnorm->data,
            .lm_head = head->lowp->data,
            .layers = layers,
        };
        st = cu->dec_new(&cfg, &d->dec);
    }
    free(layers);
    if (st != CB_OK) {
        free(d);
        return st;
    }
    d->cu = cu;
    d->m = m;
    d->max_len = max_len;
    d->weight_bytes = wb;
    *out = d;
    return CB_OK;
}

void cb_gpu_decoder_free(cb_gpu_decoder *d) {
    if (!d) return;
    if (d->g_ready) cb_graph_free(&d->g);
    d->cu->dec_free(d->dec);
    free(d);
}

cb_status cb_gpu_decoder_reset(cb_gpu_decoder *d, const int32_t *prompt, int64_t n) {
    return d->cu->dec_reset(d->dec, prompt, n);
}
static cb_status sink(void *user, int layer, const cb_tensor *k, const cb_tensor *v, int64_t pos0) {
    cb_gpu_decoder *d = user;
    return d->cu->dec_write_kv(d->dec, layer, pos0, k, v);
}

cb_status cb_gpu_decoder_prefill(cb_gpu_decoder *d, const int32_t *prompt, int64_t n) {
    if (n < 1 || n >= d->max_len)
        return cb_fail(CB_ERR_ARG, "GPU decoder: prompt of %lld tokens (cache holds %lld)",
                       (long long)n, (long long)d->max_len);
    for (int64_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= d->m->vocab_size)
            return cb_fail(CB_ERR_ARG, "GPU decoder: token id %d at %lld outside the vocabulary",
                           prompt[i], (long long)i);
    if (!d->g_ready) {
        CB_TRY(cb_graph_init(&d->g, CB_CUDA));
        d->g_ready = true;
    }
    cb_graph_reset(&d->g);
    cb_graph_set_grad(&d->g, false);
    cb_infer_ctx ctx = {.n_caches = d->m->n_attn, .kv_sink = sink, .kv_sink_user = d};
    cb_infer_ctx_begin(&ctx, 0);
    int64_t sh[2] = {1, n};
    cb_tensor ids;
    cb_tensor_init(&ids, CB_I32, CB_CPU, 2, sh, (void *)prompt);
    cb_tensor *logits = cb_model_forward(d->m, &d->g, &ids, &ctx);
    if (!logits) return cb_fail_context(CB_ERR_INTERNAL, "GPU decoder: prefill forward");
    CB_TRY(cb_infer_ctx_end(&ctx));
    int64_t V = d->m->vocab_size;
    cb_tensor last;
    cb_tensor_init(&last, logits->dtype, logits->device, 1, &V,
                   (char *)logits->data + cb_dtype_bytes(logits->dtype, (n - 1) * V));
    return d->cu->dec_start(d->dec, prompt, n, &last);
}

cb_status cb_gpu_decoder_fill(cb_gpu_decoder *d, int64_t n, uint64_t seed) {
    return d->cu->dec_fill(d->dec, n, seed);
}
cb_status cb_gpu_decoder_steps(cb_gpu_decoder *d, int64_t n) {
    return d->cu->dec_steps(d->dec, n);
}
cb_status cb_gpu_decoder_tokens(cb_gpu_decoder *d, int64_t from, int64_t n, int32_t *out) {
    return d->cu->dec_tokens(d->dec, from, n, out);
}
cb_status cb_gpu_decoder_logits(cb_gpu_decoder *d, float *out) {
    return d->cu->dec_logits(d->dec, out);
}
cb_status cb_gpu_decoder_cache_row(cb_gpu_decoder *d, int layer, int which, int64_t pos,
                                   void *out) {
    return d->cu->dec_cache_row(d->dec, layer, which, pos, out);
}
size_t cb_gpu_decoder_step_bytes(const cb_gpu_decoder *d, int64_t len) {
    return d->weight_bytes + d->cu->dec_cache_bytes(d->dec, len);
}
cb_status cb_gpu_sync(void) {
    const cb_cuda_api *cu = cb_cuda_api_get();
    return cu ? cu->sync() : CB_ERR_UNSUPPORTED;
}
