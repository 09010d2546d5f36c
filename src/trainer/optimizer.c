/* AdamW: per-parameter first/second moments, decoupled weight decay, bias correction.
 *   param p, grad g, m, v: same shape, f32, on the model's device
 * The update itself is the backend's fused kernel (ops/kernels.h adamw); this file owns the state
 * and which parameters decay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/safetensors.h"
#include "caramba/trainer.h"
#include "ops/cuda_api.h"
#include "ops/kernels.h"

void cb_adamw_defaults(cb_adamw_cfg *c) {
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.01;
    c->decay_all = false;
}

cb_status cb_optimizer_new(cb_optimizer **out, cb_model *model, const cb_adamw_cfg *cfg) {
    *out = NULL;
    if (!(cfg->beta1 >= 0 && cfg->beta1 < 1 && cfg->beta2 >= 0 && cfg->beta2 < 1))
        return cb_fail(CB_ERR_ARG, "AdamW: betas must lie in [0, 1), got %g, %g", cfg->beta1,
                       cfg->beta2);
    if (!(cfg->eps > 0) || !(cfg->weight_decay >= 0))
        return cb_fail(CB_ERR_ARG, "AdamW: eps must be > 0 and weight_decay >= 0 (got %g, %g)",
                       cfg->eps, cfg->weight_decay);
    cb_optimizer *o = calloc(1, sizeof *o);
    if (!o) return cb_fail(CB_ERR_NOMEM, "AdamW: out of memory");
    o->cfg = *cfg;
    o->n = model->n_params;
    o->params = calloc((size_t)o->n + 1, sizeof *o->params);
    o->m = calloc((size_t)o->n + 1, sizeof *o->m);
    o->v = calloc((size_t)o->n + 1, sizeof *o->v);
    if (!o->params || !o->m || !o->v) {
        cb_optimizer_free(o);
        return cb_fail(CB_ERR_NOMEM, "AdamW: out of memory");
    }
    for (int i = 0; i < o->n; i++) {
        cb_param *p = model->params[i];
        o->params[i] = p;
        if (p->t->dtype != CB_F32) {
            cb_optimizer_free(o);
            return cb_fail(CB_ERR_UNSUPPORTED, "AdamW: parameter %s is %s; master weights must be "
                                               "f32",
                           p->name, cb_dtype_name(p->t->dtype));
        }
        cb_status st = cb_tensor_new(&o->m[i], CB_F32, p->t->device, p->t->ndim, p->t->shape);
        if (st == CB_OK) st = cb_tensor_new(&o->v[i], CB_F32, p->t->device, p->t->ndim, p->t->shape);
        if (st != CB_OK) {
            cb_optimizer_free(o);
            return cb_fail_context(st, "AdamW moments of %s", p->name);
        }
    }
    *out = o;
    return CB_OK;
}

void cb_optimizer_free(cb_optimizer *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        if (o->m) cb_tensor_free(o->m[i]);
        if (o->v) cb_tensor_free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o->params);
    free(o);
}

double cb_optimizer_decay(const cb_optimizer *o, int i) {
    return o->params[i]->no_decay && !o->cfg.decay_all ? 0.0 : o->cfg.weight_decay;
}

/* On the GPU: one multi-tensor launch per weight-decay group (ops/cuda_api.h adamw_multi), which
 * also rewrites the parameters' bf16 copies under AMP. */
static cb_status step_cuda(cb_optimizer *o, double lr, double grad_scale) {
    const cb_cuda_api *cu = cb_cuda_api_get();
    if (!cu) return CB_ERR_UNSUPPORTED;
    size_t n = (size_t)o->n + 1;
    cb_tensor **p = malloc(n * sizeof *p), **m = malloc(n * sizeof *m), **v = malloc(n * sizeof *v);
    const cb_tensor **g = malloc(n * sizeof *g);
    cb_status st = p && m && v && g ? CB_OK : cb_fail(CB_ERR_NOMEM, "AdamW: out of memory");
    for (int pass = 0; pass < 2 && st == CB_OK; pass++) {
        double wd = 0;
        int k = 0;
        for (int i = 0; i < o->n; i++) {
            cb_param *pr = o->params[i];
            double d = cb_optimizer_decay(o, i);
            if (!pr->t->grad || (pass == 0) == (d == 0.0)) continue; /* pass 0: decayed */
            wd = d;
            p[k] = pr->t, g[k] = pr->t->grad, m[k] = o->m[i], v[k] = o->v[i];
            k++;
        }
        if (k > 0)
            st = cu->adamw_multi(k, p, g, m, v, (float)lr, (float)o->cfg.beta1, (float)o->cfg.beta2,
                                 (float)o->cfg.eps, (float)wd, o->step, (float)grad_scale);
    }
    free(p);
    free(m);
    free(v);
    free(g);
    return st == CB_OK ? CB_OK : cb_fail_context(st, "AdamW update");
}

cb_status cb_optimizer_step(cb_optimizer *o, double lr, double grad_scale) {
    o->step++;
    bool all_cuda = o->n > 0;
    for (int i = 0; i < o->n; i++) all_cuda &= o->params[i]->t->device == CB_CUDA;
    if (all_cuda) return step_cuda(o, lr, grad_scale);
    for (int i = 0; i < o->n; i++) {
        cb_param *p = o->params[i];
        if (!p->t->grad) continue; /* frozen: neither moved nor decayed */
        const cb_kernels *k = cb_kernels_for(p->t->device);
        if (!k) return CB_ERR_UNSUPPORTED;
        cb_status st = k->adamw(p->t, p->t->grad, o->m[i], o->v[i], (float)lr, (float)o->cfg.beta1,
                                (float)o->cfg.beta2, (float)o->cfg.eps,
                                (float)cb_optimizer_decay(o, i), o->step, (float)grad_scale);
        if (st != CB_OK) return cb_fail_context(st, "AdamW update of %s", p->name);
    }
    return CB_OK;
}

cb_status cb_optimizer_save(const cb_optimizer *o, const char *path) {
    cb_named_tensor *nt = calloc((size_t)(2 * o->n) + 1, sizeof *nt);
    char **names = calloc((size_t)(2 * o->n) + 1, sizeof *names);
    cb_status st = nt && names ? CB_OK : cb_fail(CB_ERR_NOMEM, "optimizer save: out of memory");
    for (int i = 0; i < o->n && st == CB_OK; i++)
        for (int k = 0; k < 2; k++) {
            const char *pre = k ? "exp_avg_sq." : "exp_avg.";
            size_t n = strlen(pre) + strlen(o->params[i]->name) + 1;
            char *s = malloc(n);
            if (!s) {
                st = cb_fail(CB_ERR_NOMEM, "optimizer save: out of memory");
                break;
            }
            snprintf(s, n, "%s%s", pre, o->params[i]->name);
            names[2 * i + k] = s;
            nt[2 * i + k].name = s;
            nt[2 * i + k].tensor = k ? o->v[i] : o->m[i];
        }
    char stepbuf[32];
    snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)o->step);
    const char *meta[] = {"format", "caramba-adamw", "step", stepbuf, NULL};
    if (st == CB_OK) st = cb_safetensors_write(path, nt, 2 * o->n, meta);
    for (int i = 0; names && i < 2 * o->n; i++) free(names[i]);
    free(names);
    free(nt);
    return st;
}

cb_status cb_optimizer_load(cb_optimizer *o, const char *path) {
    cb_safetensors *st;
    CB_TRY(cb_safetensors_open(&st, path));
    cb_status rc = CB_OK;
    char stepbuf[32];
    if (cb_safetensors_metadata_get(st, "step", stepbuf, sizeof stepbuf) != CB_OK) {
        rc = cb_fail(CB_ERR_FORMAT, "%s: no optimizer step in the metadata", path);
    } else {
        char *end;
        long long step = strtoll(stepbuf, &end, 10);
        if (*end || step < 0) rc = cb_fail(CB_ERR_FORMAT, "%s: bad optimizer step '%s'", path, stepbuf);
        else o->step = step;
    }
    for (int i = 0; i < o->n && rc == CB_OK; i++)
        for (int k = 0; k < 2 && rc == CB_OK; k++) {
            char name[1024];
            snprintf(name, sizeof name, "%s%s", k ? "exp_avg_sq." : "exp_avg.", o->params[i]->name);
            const cb_st_entry *e = cb_safetensors_find(st, name);
            cb_tensor *dst = k ? o->v[i] : o->m[i];
            char a[64], b[64];
            if (!e) {
                rc = cb_fail(CB_ERR_FORMAT, "%s: missing optimizer moment %s", path, name);
            } else if (e->dtype != CB_F32 || e->ndim != dst->ndim ||
                       memcmp(e->shape, dst->shape, sizeof(int64_t) * (size_t)dst->ndim) != 0) {
                rc = cb_fail(CB_ERR_SHAPE, "%s: optimizer moment %s is %s %s, the parameter is f32 %s",
                             path, name, cb_dtype_name(e->dtype), cb_dims_str(e->ndim, e->shape, a, sizeof a),
                             cb_shape_str(dst, b, sizeof b));
            } else {
                cb_tensor src;
                cb_tensor_init(&src, CB_F32, CB_CPU, e->ndim, e->shape, (void *)e->data);
                rc = cb_tensor_copy(dst, &src);
            }
        }
    cb_safetensors_close(st);
    return rc;
}
