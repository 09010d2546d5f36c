/* The Llama shape: building it from a Hugging Face config, and Hugging Face parameter names.
 *
 * Tree: Stacked[ Nested[ N x (Residual[RMSNorm, Attention], Residual[RMSNorm, SwiGLU]) ],
 *                RMSNorm, Linear (untied only) ] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/safetensors.h"
#include "model/model_impl.h"
#include "model/module_impl.h"

static bool is_chain(const cb_module *m) {
    return m->kind == CB_MOD_STACKED || m->kind == CB_MOD_SEQUENTIAL || m->kind == CB_MOD_NESTED ||
           m->kind == CB_MOD_CYCLIC;
}

static bool is_residual_of(const cb_module *m, cb_module_kind a, cb_module_kind b) {
    return m->kind == CB_MOD_RESIDUAL && m->n_children == 2 && m->children[0]->kind == a &&
           m->children[1]->kind == b;
}

/* Flattens chains of residual blocks into items[]; returns the count (or -1 if it overflows). */
static int flatten(cb_module *m, cb_module **items, int cap, int n) {
    for (int i = 0; i < m->n_children && n >= 0; i++) {
        cb_module *c = m->children[i];
        if (is_chain(c) && c->n_children > 0 && c->children[0]->kind == CB_MOD_RESIDUAL)
            n = flatten(c, items, cap, n);
        else if (n < cap)
            items[n++] = c;
        else
            return -1;
    }
    return n;
}

static int rename_param(cb_module *m, const char *local, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].local, local) == 0) {
            char *n = strdup(name);
            if (!n) return -1;
            free(m->params[i].name);
            m->params[i].name = n;
            return 0;
        }
    return 0;
}

/* A learned query temperature is not part of Hugging Face Llama: such a model keeps its tree
 * names (an HF checkpoint could not hold logit_scale, and the Llama-only GPU decoder and HF export
 * must not take it for plain Llama). */
void cb_model_apply_llama_names(cb_model *m) {
    if (!is_chain(m->root) || m->vocab_size == 0) return;
    enum { CAP = 4096 };
    cb_module **items = malloc(sizeof *items * CAP);
    if (!items) return;
    int n = flatten(m->root, items, CAP, 0);
    int head = m->tied ? 0 : 1;
    int nblocks = (n - 1 - head) / 2;
    bool ok = n >= 1 + head && (n - 1 - head) % 2 == 0;
    for (int i = 0; ok && i < nblocks; i++) {
        cb_module *a = items[2 * i], *f = items[2 * i + 1];
        ok = is_residual_of(a, CB_MOD_RMSNORM, CB_MOD_ATTENTION) &&
             is_residual_of(f, CB_MOD_RMSNORM, CB_MOD_SWIGLU) &&
             a->children[1]->attn.mode != CB_ATTN_DECOUPLED && !a->children[1]->attn.learned_temp &&
             a->children[0]->affine && f->children[0]->affine;
    }
    cb_module *norm = ok ? items[2 * nblocks] : NULL, *lm = ok && head ? items[n - 1] : NULL;
    ok = ok && norm->kind == CB_MOD_RMSNORM && norm->affine &&
         (!lm || (lm->kind == CB_MOD_LINEAR && !lm->bias));
    if (ok) {
        char buf[256];
        static const char *attn_map[][2] = {{"q_proj", "q_proj"}, {"k_proj", "k_proj"},
                                            {"v_proj", "v_proj"}, {"out_proj", "o_proj"}};
        static const char *mlp_map[][2] = {{"w_gate", "gate_proj"}, {"w_up", "up_proj"}, {"w_down", "down_proj"}};
        for (int i = 0; i < nblocks; i++) {
            cb_module *a = items[2 * i], *f = items[2 * i + 1];
            snprintf(buf, sizeof buf, "model.layers.%d.input_layernorm.weight", i);
            rename_param(a->children[0], "weight", buf);
            for (int k = 0; k < 4; k++)
                for (int wb = 0; wb < 2; wb++) {
                    char local[64];
                    snprintf(local, sizeof local, "%s.%s", attn_map[k][0], wb ? "bias" : "weight");
                    snprintf(buf, sizeof buf, "model.layers.%d.self_attn.%s.%s", i, attn_map[k][1], wb ? "bias" : "weight");
                    rename_param(a->children[1], local, buf);
                }
            snprintf(buf, sizeof buf, "model.layers.%d.post_attention_layernorm.weight", i);
            rename_param(f->children[0], "weight", buf);
            for (int k = 0; k < 3; k++)
                for (int wb = 0; wb < 2; wb++) {
                    char local[64];
                    snprintf(local, sizeof local, "%s.%s", mlp_map[k][0], wb ? "bias" : "weight");
                    snprintf(buf, sizeof buf, "model.layers.%d.mlp.%s.%s", i, mlp_map[k][1], wb ? "bias" : "weight");
                    rename_param(f->children[1], local, buf);
                }
        }
        rename_param(norm, "weight", "model.norm.weight");
        if (lm) rename_param(lm, "linear.weight", "lm_head.weight");
        free(m->embed.name);
        m->embed.name = strdup("model.embed_tokens.weight");
        m->llama_names = true;
    }
    free(items);
}

static cb_status llama_block(const cb_llama_config *c, cb_module **attn_res, cb_module **mlp_res) {
    cb_attention_cfg ac = {
        .d_model = (int)c->hidden_size,
        .n_heads = c->num_attention_heads,
        .n_kv_heads = c->num_key_value_heads,
        .mode = c->num_key_value_heads < c->num_attention_heads ? CB_ATTN_GQA : CB_ATTN_STANDARD,
        .head_dim = c->head_dim,
        .v_head_dim = c->head_dim,
        .rope_enabled = true,
        .rope_rot = c->rope_dim,
        .rope = c->rope,
        .is_causal = true,
        .bias = c->attention_bias,
    };
    cb_module *kids[2] = {NULL, NULL};
    cb_status st = cb_rmsnorm_new(&kids[0], (int)c->hidden_size, (float)c->rms_norm_eps, true);
    if (st == CB_OK) st = cb_attention_new(&kids[1], &ac);
    if (st == CB_OK) st = cb_topology_new(attn_res, CB_MOD_RESIDUAL, kids, 2);
    if (st != CB_OK) {
        cb_module_free(kids[0]);
        cb_module_free(kids[1]);
        return st;
    }
    kids[0] = kids[1] = NULL;
    st = cb_rmsnorm_new(&kids[0], (int)c->hidden_size, (float)c->rms_norm_eps, true);
    if (st == CB_OK) st = cb_swiglu_new(&kids[1], (int)c->hidden_size, (int)c->intermediate_size, c->mlp_bias);
    if (st == CB_OK) st = cb_topology_new(mlp_res, CB_MOD_RESIDUAL, kids, 2);
    if (st != CB_OK) {
        cb_module_free(kids[0]);
        cb_module_free(kids[1]);
    }
    return st;
}

cb_status cb_model_from_llama_config(cb_model **out, const cb_llama_config *c, cb_device dev) {
    *out = NULL;
    int L = c->num_hidden_layers;
    cb_module **blocks = calloc((size_t)(2 * L) + 1, sizeof *blocks);
    if (!blocks) return cb_fail(CB_ERR_NOMEM, "llama blocks");
    cb_status st = CB_OK;
    int nb = 0;
    for (int i = 0; i < L && st == CB_OK; i++) {
        st = llama_block(c, &blocks[nb], &blocks[nb + 1]);
        if (st == CB_OK) nb += 2;
    }
    cb_module *top[3] = {NULL, NULL, NULL};
    if (st == CB_OK) st = cb_topology_new(&top[0], CB_MOD_NESTED, blocks, nb);
    if (st != CB_OK) {
        for (int i = 0; i < nb; i++) cb_module_free(blocks[i]);
        free(blocks);
        return st;
    }
    free(blocks);
    int ntop = 1;
    st = cb_rmsnorm_new(&top[ntop], (int)c->hidden_size, (float)c->rms_norm_eps, true);
    if (st == CB_OK) ntop++;
    if (st == CB_OK && !c->tie_word_embeddings) {
        st = cb_linear_new(&top[ntop], (int)c->hidden_size, (int)c->vocab_size, false);
        if (st == CB_OK) ntop++;
    }
    cb_module *root = NULL;
    if (st == CB_OK) st = cb_topology_new(&root, CB_MOD_STACKED, top, ntop);
    if (st != CB_OK) {
        for (int i = 0; i < ntop; i++) cb_module_free(top[i]);
        return st;
    }
    cb_model *m;
    CB_TRY(cb_model_new(&m, c->vocab_size, (int)c->hidden_size, root, c->tie_word_embeddings));
    st = cb_model_finalize(m, dev, 0, c->max_position_embeddings);
    if (st != CB_OK) {
        cb_model_free(m);
        return st;
    }
    m->bos_id = c->bos_token_id;
    m->eos_id = c->eos_token_id;
    *out = m;
    return CB_OK;
}

cb_status cb_model_load(cb_model *m, const cb_checkpoint *ck) {
    for (int i = 0; i < m->n_params; i++) CB_TRY(cb_checkpoint_load(ck, m->params[i]->name, m->params[i]->t));
    return cb_model_refresh_lowp(m); /* no-op unless the model computes in 16 bits */
}

cb_status cb_model_save(const cb_model *m, const char *path) {
    cb_named_tensor *nt = calloc((size_t)m->n_params + 1, sizeof *nt);
    if (!nt) return cb_fail(CB_ERR_NOMEM, "save list");
    for (int i = 0; i < m->n_params; i++) {
        nt[i].name = m->params[i]->name;
        nt[i].tensor = m->params[i]->t;
    }
    cb_status st = cb_safetensors_write(path, nt, m->n_params, NULL);
    free(nt);
    return st;
}

cb_status cb_model_open_hf(cb_model **out, const char *model, cb_device dev) {
    *out = NULL;
    char dir[4096];
    CB_TRY(cb_hf_resolve(model, dir, sizeof dir));
    cb_llama_config cfg;
    CB_TRY(cb_llama_config_load(dir, &cfg));
    cb_checkpoint *ck;
    CB_TRY(cb_checkpoint_open(&ck, dir));
    cb_model *m;
    cb_status st = cb_model_from_llama_config(&m, &cfg, dev);
    if (st == CB_OK) st = cb_model_load(m, ck);
    cb_checkpoint_close(ck);
    if (st != CB_OK) {
        cb_model_free(m);
        return st;
    }
    *out = m;
    return CB_OK;
}
