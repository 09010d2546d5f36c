/* Plan printer and the exact KV-cache byte count per token. */
#include "caramba/plan.h"

#include <stdio.h>
#include <string.h>

static int64_t row_bytes(cb_kv_kind kind, int64_t w) {
    return w > 0 ? (int64_t)cb_kv_bytes_per_token(kind, w) : 0;
}

cb_plan_kv cb_plan_attention_kv(const cb_cfg_attention *a, cb_kv_kind kind) {
    cb_plan_kv r = {0};
    r.n_layers = 1;
    r.k_elems = a->k_width;
    r.v_elems = a->v_width;
    if (a->mode == CB_CFG_ATTN_DECOUPLED)
        r.k_bytes = row_bytes(kind, a->k_sem_width) + row_bytes(kind, a->k_geo_width);
    else
        r.k_bytes = row_bytes(kind, a->k_width);
    r.v_bytes = row_bytes(kind, a->v_width);
    return r;
}

typedef struct kv_acc {
    cb_kv_kind kind;
    cb_plan_kv t;
} kv_acc;

static void kv_visit(const cb_cfg_node *m, void *ud) {
    if (m->kind != CB_CFG_ATTENTION) return;
    kv_acc *acc = ud;
    cb_plan_kv l = cb_plan_attention_kv(&m->attention, acc->kind);
    acc->t.n_layers++;
    acc->t.k_elems += l.k_elems;
    acc->t.v_elems += l.v_elems;
    acc->t.k_bytes += l.k_bytes;
    acc->t.v_bytes += l.v_bytes;
}

cb_plan_kv cb_plan_model_kv(const cb_model_cfg *m, cb_kv_kind kind) {
    kv_acc acc = {.kind = kind};
    cb_cfg_walk(&m->topology, kv_visit, &acc);
    return acc.t;
}

/* ---- printing ------------------------------------------------------------------------------ */

static const char *grouped(int64_t v, char buf[32]) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)(v < 0 ? -v : v));
    int o = 0;
    if (v < 0) buf[o++] = '-';
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

static void dim_str(char *out, size_t cap, int64_t v, const char *sym) {
    if (v > 0)
        snprintf(out, cap, "%lld", (long long)v);
    else
        snprintf(out, cap, "%s", sym);
}

static void shape_of(char *out, size_t cap, int n_lead, const int64_t *lead, int64_t w,
                     const cb_plan_opts *o) {
    char b[24], t[24], lw[96] = "";
    size_t n = 0;
    dim_str(b, sizeof b, o ? o->batch : 0, "B");
    dim_str(t, sizeof t, o ? o->seq : 0, "T");
    for (int i = 0; i < n_lead; i++)
        n += (size_t)snprintf(lw + n, sizeof lw - n, "%lld, ", (long long)lead[i]);
    if (w)
        snprintf(out, cap, "(%s%s, %s, %lld)", lw, b, t, (long long)w);
    else
        snprintf(out, cap, "(%s%s, %s, D)", lw, b, t);
}

typedef struct pctx {
    FILE *f;
    const cb_plan_opts *o;
    int wpath;
} pctx;

static void path_width(const cb_cfg_node *m, void *ud) {
    int *w = ud;
    int l = (int)strlen(m->path);
    if (l > *w) *w = l;
}

static void detail(char *out, size_t cap, const cb_cfg_node *m) {
    switch (m->kind) {
    case CB_CFG_LINEAR:
        snprintf(out, cap, "%lld -> %lld%s", (long long)m->linear.d_in, (long long)m->linear.d_out,
                 m->linear.bias ? ", bias" : "");
        break;
    case CB_CFG_LAYER_NORM:
        snprintf(out, cap, "eps %g", m->layer_norm.eps);
        break;
    case CB_CFG_RMS_NORM:
        snprintf(out, cap, "eps %g%s", m->rms_norm.eps,
                 m->rms_norm.elementwise_affine ? "" : ", no weight");
        break;
    case CB_CFG_DROPOUT:
        snprintf(out, cap, "p %g", m->dropout.p);
        break;
    case CB_CFG_SWIGLU:
        snprintf(out, cap, "d_ff %lld%s", (long long)m->swiglu.d_ff,
                 m->swiglu.bias ? ", bias" : "");
        break;
    case CB_CFG_ATTENTION: {
        const cb_cfg_attention *a = &m->attention;
        if (a->mode == CB_CFG_ATTN_DECOUPLED)
            snprintf(out, cap, "decoupled H %lld/%lld, sem %lld geo %lld v %lld%s%s",
                     (long long)a->n_heads, (long long)a->kv_heads, (long long)a->sem_dim,
                     (long long)a->geo_dim, (long long)a->v_dim, a->rope_enabled ? ", rope" : "",
                     a->decoupled_gate ? ", gate" : "");
        else
            snprintf(out, cap, "%s H %lld/%lld, head_dim %lld%s",
                     a->kv_heads < a->n_heads ? "gqa" : "standard", (long long)a->n_heads,
                     (long long)a->kv_heads, (long long)a->head_dim,
                     a->rope_enabled ? ", rope" : "");
        break;
    }
    case CB_CFG_PARALLEL:
        snprintf(out, cap, "stack %d branches on a new dim 0", m->n_layers);
        break;
    case CB_CFG_BRANCHING:
        snprintf(out, cap, "concat %d branches on the feature dim", m->n_layers);
        break;
    case CB_CFG_RESIDUAL:
        snprintf(out, cap, "x + f(x)");
        break;
    default:
        out[0] = 0;
        break;
    }
}

static void print_node(const cb_cfg_node *m, void *ud) {
    pctx *p = ud;
    char shp[128], par[32], det[160];
    shape_of(shp, sizeof shp, m->n_lead, m->lead, m->d_out, p->o);
    detail(det, sizeof det, m);
    fprintf(p->f, "  %-*s  %-18s  %-20s %14s%s%s\n", p->wpath, m->path, cb_cfg_kind_name(m->kind),
            shp, grouped(m->n_params, par), det[0] ? "  " : "", det);
}

void cb_plan_print(FILE *f, const cb_manifest *m, const cb_plan_opts *opts) {
    cb_plan_opts zero = {0};
    const cb_plan_opts *o = opts ? opts : &zero;
    const cb_model_cfg *md = &m->model;
    static const char *const model_types[] = {"TransformerModel", "GPTModel", "ViTModel",
                                              "MLPModel"};
    char g[32], g2[32], g3[32];
    fprintf(f, "manifest: %s (version %lld, %s)\n", m->name, (long long)m->version, m->file);
    fprintf(f, "model: %s\n", model_types[md->type]);
    const cb_embedder_cfg *e = &md->embedder;
    char b[24], t[24];
    dim_str(b, sizeof b, o->batch, "B");
    dim_str(t, sizeof t, o->seq, "T");
    if (e->type == CB_EMBED_TOKEN)
        fprintf(f,
                "input: token ids (%s, %s); embedder token, vocab_size %lld, d_model %lld; "
                "tied_embeddings %s\n",
                b, t, (long long)e->vocab_size, (long long)e->d_model,
                md->tied_embeddings ? "true (logits = features . E^T)" : "false");
    else
        fprintf(f, "input: features (%s, %s, %lld); no embedder\n", b, t,
                (long long)md->topology.d_in);
    int w = 8;
    cb_cfg_walk(&md->topology, path_width, &w);
    fprintf(f, "\n  %-*s  %-18s  %-20s %14s  %s\n", w, "path", "type", "output", "params",
            "details");
    if (e->type == CB_EMBED_TOKEN) {
        char shp[128];
        shape_of(shp, sizeof shp, 0, NULL, e->d_model, o);
        fprintf(f, "  %-*s  %-18s  %-20s %14s  %s\n", w, "embedder", "TokenEmbedder", shp,
                grouped(e->vocab_size * e->d_model, g), "token_embedding.weight");
    }
    pctx p = {.f = f, .o = o, .wpath = w};
    cb_cfg_walk(&md->topology, print_node, &p);
    if (e->type == CB_EMBED_TOKEN && md->tied_embeddings) {
        char shp[128];
        shape_of(shp, sizeof shp, 0, NULL, e->vocab_size, o);
        fprintf(f, "  %-*s  %-18s  %-20s %14s  %s\n", w, "logits", "TiedHead", shp, "0",
                "features . embedder.token_embedding.weight^T");
    }
    int64_t emb = e->type == CB_EMBED_TOKEN ? e->vocab_size * e->d_model : 0;
    fprintf(f, "\ntotal parameters: %s (embedder %s, topology %s)\n", grouped(md->n_params, g),
            grouped(emb, g2), grouped(md->topology.n_params, g3));
    fprintf(f, "attention layers: %d\n", md->n_attention);
    if (md->n_attention == 0) return;
    cb_plan_kv el = cb_plan_model_kv(md, CB_KV_FP16);
    fprintf(
        f, "\nKV cache per token (all %d attention layers; cached elements: keys %s, values %s):\n",
        el.n_layers, grouped(el.k_elems, g), grouped(el.v_elems, g2));
    fprintf(f, "  %-6s %14s %14s %14s\n", "kind", "keys (B)", "values (B)", "total (B)");
    static const cb_kv_kind kinds[] = {CB_KV_FP32, CB_KV_FP16, CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    static const char *const names[] = {"fp32", "fp16", "q8_0", "q4_0", "nf4"};
    for (int i = 0; i < 5; i++) {
        cb_plan_kv k = cb_plan_model_kv(md, kinds[i]);
        fprintf(f, "  %-6s %14s %14s %14s\n", names[i], grouped(k.k_bytes, g),
                grouped(k.v_bytes, g2), grouped(k.k_bytes + k.v_bytes, g3));
    }
    if (o->batch > 0 && o->seq > 0) {
        cb_plan_kv k = cb_plan_model_kv(md, CB_KV_FP16);
        double mib =
            (double)(k.k_bytes + k.v_bytes) * (double)o->batch * (double)o->seq / (1024.0 * 1024.0);
        fprintf(f, "  fp16 cache for batch %lld x seq %lld: %.2f MiB\n", (long long)o->batch,
                (long long)o->seq, mib);
    }
}
