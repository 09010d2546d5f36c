/* RuntimePlan: decide, key, save, reuse (see caramba/runtime_plan.h for the key and the canonical
 * JSON). The decisions:
 *   device      "auto" -> "cuda" when a CUDA device is present, else "cpu"; others as written
 *   dtype       "auto" -> bfloat16 on CUDA, float32 on the CPU; others as written
 *   amp_dtype   "auto" -> bfloat16; others as written
 *   batch_size  train.batch_size; with auto_batch_size:
 *               max(auto_batch_min, floor(batch_size * auto_batch_ref_block_size / block_size))
 *   threads     the host's cores (CARAMBA_THREADS / OMP_NUM_THREADS override a saved plan)
 *   compile     compile_model: true -> on; auto -> on for CUDA; false -> off */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caramba/device.h"
#include "caramba/fileio.h"
#include "caramba/instrument.h"
#include "caramba/runtime_plan.h"
#include "caramba/strbuf.h"

#define CB_VERSION_STRING "caramba 0.1.0"

uint64_t cb_fnv1a64(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void cb_runtime_key(const char *payload, char key[17]) {
    snprintf(key, 17, "%016llx", (unsigned long long)cb_fnv1a64(payload, strlen(payload)));
}

static int env_int(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return (*end == 0 && v > 0 && v < 4096) ? (int)v : 0;
}

int cb_runtime_env_threads(void) {
    int n = env_int("CARAMBA_THREADS");
    return n > 0 ? n : env_int("OMP_NUM_THREADS");
}

static int host_cores(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- canonical JSON ------------------------------------------------------------------------ */

static void sb_str(cb_strbuf *b, const char *s) {
    cb_strbuf_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char e[8];
        if (*c == '"' || *c == '\\') {
            e[0] = '\\';
            e[1] = (char)*c;
            cb_strbuf_put(b, e, 2);
        } else if (*c < 0x20) {
            snprintf(e, sizeof e, "\\u%04x", *c);
            cb_strbuf_put(b, e, 6);
        } else {
            cb_strbuf_put(b, (const char *)c, 1);
        }
    }
    cb_strbuf_put(b, "\"", 1);
}

static int cmp_items(const void *a, const void *b) {
    return strcmp((*(cJSON *const *)a)->string, (*(cJSON *const *)b)->string);
}

static void canon(cb_strbuf *b, const cJSON *v) {
    char num[40];
    if (cJSON_IsObject(v)) {
        int n = cJSON_GetArraySize(v), i = 0;
        cJSON **items = malloc(sizeof *items * (size_t)(n ? n : 1));
        if (!items) {
            b->oom = true;
            return;
        }
        for (cJSON *c = v->child; c; c = c->next) items[i++] = c;
        qsort(items, (size_t)n, sizeof *items, cmp_items);
        cb_strbuf_put(b, "{", 1);
        for (i = 0; i < n; i++) {
            if (i) cb_strbuf_put(b, ",", 1);
            sb_str(b, items[i]->string);
            cb_strbuf_put(b, ":", 1);
            canon(b, items[i]);
        }
        cb_strbuf_put(b, "}", 1);
        free(items);
    } else if (cJSON_IsArray(v)) {
        cb_strbuf_put(b, "[", 1);
        int i = 0;
        for (cJSON *c = v->child; c; c = c->next, i++) {
            if (i) cb_strbuf_put(b, ",", 1);
            canon(b, c);
        }
        cb_strbuf_put(b, "]", 1);
    } else if (cJSON_IsString(v)) {
        sb_str(b, v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) snprintf(num, sizeof num, "%lld", (long long)d);
        else cb_fmt_double(d, num, sizeof num);
        cb_strbuf_put(b, num, strlen(num));
    } else if (cJSON_IsBool(v)) {
        cb_strbuf_put(b, cJSON_IsTrue(v) ? "true" : "false", cJSON_IsTrue(v) ? 4 : 5);
    } else {
        cb_strbuf_put(b, "null", 4);
    }
}

static char *canonical(const cJSON *v) {
    cb_strbuf b = {0};
    canon(&b, v);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- payload ------------------------------------------------------------------------------- */

static const char *const KIND_NAMES[] = {"stacked", "sequential", "residual", "nested",  "parallel",
                                         "branching", "cyclic",   "recurrent", "linear", "layer_norm",
                                         "rms_norm", "dropout",   "swiglu",    "attention"};

static cJSON *node_json(const cb_cfg_node *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "kind", m->kind < CB_CFG_KIND_COUNT ? KIND_NAMES[m->kind] : "?");
    cJSON_AddNumberToObject(o, "d_in", (double)m->d_in);
    cJSON_AddNumberToObject(o, "d_out", (double)m->d_out);
    switch (m->kind) {
    case CB_CFG_LINEAR:
        cJSON_AddBoolToObject(o, "bias", m->linear.bias);
        break;
    case CB_CFG_LAYER_NORM: cJSON_AddNumberToObject(o, "eps", m->layer_norm.eps); break;
    case CB_CFG_RMS_NORM:
        cJSON_AddNumberToObject(o, "eps", m->rms_norm.eps);
        cJSON_AddBoolToObject(o, "affine", m->rms_norm.elementwise_affine);
        break;
    case CB_CFG_DROPOUT: cJSON_AddNumberToObject(o, "p", m->dropout.p); break;
    case CB_CFG_SWIGLU:
        cJSON_AddNumberToObject(o, "d_ff", (double)m->swiglu.d_ff);
        cJSON_AddBoolToObject(o, "bias", m->swiglu.bias);
        break;
    case CB_CFG_ATTENTION: {
        const cb_cfg_attention *a = &m->attention;
        cJSON_AddNumberToObject(o, "mode", a->mode);
        cJSON_AddNumberToObject(o, "n_heads", (double)a->n_heads);
        cJSON_AddNumberToObject(o, "n_kv_heads", (double)a->n_kv_heads);
        cJSON_AddNumberToObject(o, "attn_dim", (double)a->attn_dim);
        cJSON_AddNumberToObject(o, "sem_dim", (double)a->sem_dim);
        cJSON_AddNumberToObject(o, "geo_dim", (double)a->geo_dim);
        cJSON_AddNumberToObject(o, "v_dim", (double)a->v_dim);
        cJSON_AddBoolToObject(o, "rope", a->rope_enabled);
        cJSON_AddNumberToObject(o, "rope_base", a->rope_base);
        cJSON_AddNumberToObject(o, "rope_dim", (double)a->rope_dim);
        if (a->rope_scaling.enabled) {
            cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
            cJSON_AddNumberToObject(rs, "factor", a->rope_scaling.factor);
            cJSON_AddNumberToObject(rs, "low", a->rope_scaling.low_freq_factor);
            cJSON_AddNumberToObject(rs, "high", a->rope_scaling.high_freq_factor);
            cJSON_AddNumberToObject(rs, "original", (double)a->rope_scaling.original_max_position_embeddings);
        }
        cJSON_AddBoolToObject(o, "gate", a->decoupled_gate);
        cJSON_AddBoolToObject(o, "gate_dynamic", a->decoupled_gate_dynamic);
        cJSON_AddBoolToObject(o, "causal", a->is_causal);
        cJSON_AddNumberToObject(o, "dropout_p", a->dropout_p);
        cJSON_AddBoolToObject(o, "bias", a->bias);
        cJSON_AddBoolToObject(o, "learned_temp", a->learned_temp);
        cJSON_AddNumberToObject(o, "q_chunk", (double)a->q_chunk);
        cJSON_AddNumberToObject(o, "local_window", (double)a->local_window);
        cJSON_AddNumberToObject(o, "mem_block", (double)a->mem_block);
        break;
    }
    default: break;
    }
    if (cb_cfg_is_topology(m->kind)) {
        cJSON *kids = cJSON_AddArrayToObject(o, "layers");
        for (int i = 0; i < m->n_layers; i++) cJSON_AddItemToArray(kids, node_json(&m->layers[i]));
    }
    return o;
}

static const char *dtype_name(cb_train_dtype d) {
    switch (d) {
    case CB_TDTYPE_FLOAT16: return "float16";
    case CB_TDTYPE_BFLOAT16: return "bfloat16";
    case CB_TDTYPE_AUTO: return "auto";
    default: return "float32";
    }
}

static cJSON *train_json(const cb_train_cfg *t) {
    static const char *const phases[] = {"standard", "blockwise", "global"};
    static const char *const comp[] = {"false", "true", "auto"};
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "phase", phases[t->phase]);
    cJSON_AddNumberToObject(o, "batch_size", (double)t->batch_size);
    cJSON_AddNumberToObject(o, "block_size", (double)t->block_size);
    cJSON_AddNumberToObject(o, "lr", t->lr);
    cJSON_AddStringToObject(o, "device", t->device ? t->device : "cpu");
    cJSON_AddStringToObject(o, "dtype", dtype_name(t->dtype));
    cJSON_AddBoolToObject(o, "auto_batch_size", t->auto_batch_size);
    cJSON_AddNumberToObject(o, "auto_batch_ref_block_size", (double)t->auto_batch_ref_block_size);
    cJSON_AddNumberToObject(o, "auto_batch_min", (double)t->auto_batch_min);
    cJSON_AddNumberToObject(o, "convergence_target", t->convergence_target);
    cJSON_AddNumberToObject(o, "convergence_patience", (double)t->convergence_patience);
    cJSON_AddNumberToObject(o, "convergence_max_steps", (double)t->convergence_max_steps);
    cJSON_AddBoolToObject(o, "cache_teacher_outputs", t->cache_teacher_outputs);
    cJSON_AddBoolToObject(o, "use_amp", t->use_amp);
    cJSON_AddStringToObject(o, "amp_dtype", dtype_name(t->amp_dtype));
    cJSON_AddNumberToObject(o, "gradient_accumulation_steps", (double)t->gradient_accumulation_steps);
    cJSON_AddNumberToObject(o, "num_workers", (double)t->num_workers);
    cJSON_AddBoolToObject(o, "pin_memory", t->pin_memory);
    cJSON_AddStringToObject(o, "compile_model", comp[t->compile_model]);
    cJSON_AddStringToObject(o, "compile_mode", t->compile_mode ? t->compile_mode : "");
    cJSON_AddBoolToObject(o, "activation_checkpointing", t->activation_checkpointing);
    cJSON_AddNumberToObject(o, "activation_checkpoint_threshold_mb", t->activation_checkpoint_threshold_mb);
    cJSON_AddNumberToObject(o, "scheduler", t->scheduler);
    cJSON_AddNumberToObject(o, "warmup_steps", (double)t->warmup_steps);
    cJSON_AddNumberToObject(o, "min_lr_ratio", t->min_lr_ratio);
    cJSON_AddNumberToObject(o, "weight_decay", t->weight_decay);
    cJSON_AddNumberToObject(o, "beta1", t->beta1);
    cJSON_AddNumberToObject(o, "beta2", t->beta2);
    cJSON_AddNumberToObject(o, "adam_eps", t->adam_eps);
    cJSON_AddBoolToObject(o, "decay_all", t->decay_all);
    cJSON_AddNumberToObject(o, "grad_clip", t->grad_clip);
    cJSON_AddNumberToObject(o, "eval_every", (double)t->eval_every);
    cJSON_AddNumberToObject(o, "eval_batches", (double)t->eval_batches);
    return o;
}

static cJSON *payload_obj(const cb_model_cfg *model, const cb_train_cfg *train, const char *device) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "device", device);
    cJSON *host = cJSON_AddObjectToObject(o, "host");
    cJSON_AddNumberToObject(host, "cores", host_cores());
    cJSON_AddStringToObject(o, "version", CB_VERSION_STRING);
    cJSON *mo = cJSON_AddObjectToObject(o, "model");
    cJSON_AddNumberToObject(mo, "vocab_size", (double)model->embedder.vocab_size);
    cJSON_AddNumberToObject(mo, "d_model", (double)model->embedder.d_model);
    cJSON_AddBoolToObject(mo, "embedder", model->embedder.type == CB_EMBED_TOKEN);
    cJSON_AddBoolToObject(mo, "tied_embeddings", model->tied_embeddings);
    cJSON_AddNumberToObject(mo, "n_params", (double)model->n_params);
    cJSON_AddItemToObject(mo, "topology", node_json(&model->topology));
    cJSON_AddItemToObject(o, "train", train_json(train));
    return o;
}

char *cb_runtime_payload(const cb_model_cfg *model, const cb_train_cfg *train, const char *device) {
    cJSON *o = payload_obj(model, train, device);
    char *s = o ? canonical(o) : NULL;
    cJSON_Delete(o);
    if (!s) cb_fail(CB_ERR_NOMEM, "runtime plan payload: out of memory");
    return s;
}

/* ---- decisions ----------------------------------------------------------------------------- */

static const char *resolve_device(const char *d) {
    if (!d || strcmp(d, "auto") == 0) return cb_device_available(CB_CUDA) ? "cuda" : "cpu";
    return d;
}

cb_status cb_runtime_plan_decide(const cb_model_cfg *model, const cb_train_cfg *t,
                                 cb_runtime_plan *p) {
    memset(p, 0, sizeof *p);
    const char *dev = resolve_device(t->device);
    bool cuda = strncmp(dev, "cuda", 4) == 0;
    snprintf(p->device, sizeof p->device, "%s", dev);
    snprintf(p->version, sizeof p->version, "%s", CB_VERSION_STRING);
    snprintf(p->dtype, sizeof p->dtype, "%s",
             t->dtype == CB_TDTYPE_AUTO ? (cuda ? "bfloat16" : "float32") : dtype_name(t->dtype));
    snprintf(p->amp_dtype, sizeof p->amp_dtype, "%s",
             t->amp_dtype == CB_TDTYPE_AUTO ? "bfloat16" : dtype_name(t->amp_dtype));
    p->use_amp = t->use_amp;
    snprintf(p->compute_dtype, sizeof p->compute_dtype, "%s",
             !cuda ? "float32" : p->use_amp ? p->amp_dtype : p->dtype);
    p->batch_size = t->batch_size;
    if (t->auto_batch_size && t->auto_batch_ref_block_size > 0 && t->block_size > 0) {
        int64_t b = (int64_t)floor((double)t->batch_size * (double)t->auto_batch_ref_block_size /
                                   (double)t->block_size);
        p->batch_size = b > t->auto_batch_min ? b : t->auto_batch_min;
    }
    p->threads = host_cores();
    p->compile = t->compile_model == CB_CFG_COMPILE_ON || (t->compile_model == CB_CFG_COMPILE_AUTO && cuda);
    snprintf(p->compile_mode, sizeof p->compile_mode, "%s", t->compile_mode ? t->compile_mode : "");
    char *payload = cb_runtime_payload(model, t, p->device);
    if (!payload) return CB_ERR_NOMEM;
    cb_runtime_key(payload, p->key);
    free(payload);
    return CB_OK;
}

static cJSON *plan_json(const cb_runtime_plan *p) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "key", p->key);
    cJSON_AddStringToObject(o, "device", p->device);
    cJSON_AddStringToObject(o, "version", p->version);
    cJSON_AddStringToObject(o, "dtype", p->dtype);
    cJSON_AddNumberToObject(o, "batch_size", (double)p->batch_size);
    cJSON_AddNumberToObject(o, "threads", p->threads);
    cJSON_AddBoolToObject(o, "use_amp", p->use_amp);
    cJSON_AddStringToObject(o, "amp_dtype", p->amp_dtype);
    cJSON_AddStringToObject(o, "compute_dtype", p->compute_dtype);
    cJSON_AddBoolToObject(o, "compile", p->compile);
    cJSON_AddStringToObject(o, "compile_mode", p->compile_mode);
    return o;
}

static int copy_str(const cJSON *o, const char *k, char *dst, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= n) return -1;
    snprintf(dst, n, "%s", v->valuestring);
    return 0;
}

/* A saved plan, or -1 when the file is absent, unreadable, malformed or for another key. */
static int load_plan(const char *path, const char *key, cb_runtime_plan *p) {
    char *txt = NULL;
    size_t n;
    if (!cb_file_exists(path) || cb_read_file(path, 1 << 24, &txt, &n) != CB_OK) {
        cb_clear_error();
        return -1;
    }
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    const cJSON *o = root ? cJSON_GetObjectItemCaseSensitive(root, "plan") : NULL;
    cb_runtime_plan q;
    memset(&q, 0, sizeof q);
    int bad = !o;
    if (!bad) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, "batch_size");
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(o, "threads");
        const cJSON *amp = cJSON_GetObjectItemCaseSensitive(o, "use_amp");
        const cJSON *co = cJSON_GetObjectItemCaseSensitive(o, "compile");
        bad = copy_str(o, "key", q.key, sizeof q.key) || copy_str(o, "device", q.device, sizeof q.device) ||
              copy_str(o, "version", q.version, sizeof q.version) ||
              copy_str(o, "dtype", q.dtype, sizeof q.dtype) ||
              copy_str(o, "amp_dtype", q.amp_dtype, sizeof q.amp_dtype) ||
              copy_str(o, "compile_mode", q.compile_mode, sizeof q.compile_mode) ||
              !cJSON_IsNumber(b) || b->valuedouble < 1 || !cJSON_IsNumber(th) || th->valuedouble < 1 ||
              !cJSON_IsBool(amp) || !cJSON_IsBool(co);
        if (!bad) {
            q.batch_size = (int64_t)b->valuedouble;
            q.threads = (int)th->valuedouble;
            q.use_amp = cJSON_IsTrue(amp);
            q.compile = cJSON_IsTrue(co);
            /* plans written before compute_dtype existed: derive it as cb_runtime_plan_decide does */
            if (copy_str(o, "compute_dtype", q.compute_dtype, sizeof q.compute_dtype))
                snprintf(q.compute_dtype, sizeof q.compute_dtype, "%s",
                         strncmp(q.device, "cuda", 4) != 0 ? "float32" : q.use_amp ? q.amp_dtype : q.dtype);
        }
    }
    cJSON_Delete(root);
    if (bad || strcmp(q.key, key) != 0) return -1;
    *p = q;
    return 0;
}

cb_status cb_runtime_plan_get(const char *plans_dir, const cb_model_cfg *model,
                              const cb_train_cfg *train, cb_runtime_plan *out) {
    CB_TRY(cb_runtime_plan_decide(model, train, out));
    if (!plans_dir) return CB_OK;
    char path[1024];
    int w = snprintf(path, sizeof path, "%s/%s.json", plans_dir, out->key);
    if (w < 0 || (size_t)w >= sizeof path) return cb_fail(CB_ERR_ARG, "%s: plan path too long", plans_dir);
    cb_runtime_plan saved;
    if (load_plan(path, out->key, &saved) == 0) {
        *out = saved;
        out->reused = true;
        snprintf(out->path, sizeof out->path, "%s", path);
        return CB_OK;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *payload = payload_obj(model, train, out->device);
    cJSON *plan = plan_json(out);
    char *txt = NULL;
    if (root && payload && plan) {
        cJSON_AddItemToObject(root, "payload", payload);
        cJSON_AddItemToObject(root, "plan", plan);
        payload = plan = NULL;
        txt = canonical(root);
    }
    cJSON_Delete(payload);
    cJSON_Delete(plan);
    cJSON_Delete(root);
    cb_status st = txt ? cb_mkdirs(plans_dir) : cb_fail(CB_ERR_NOMEM, "runtime plan: out of memory");
    if (st == CB_OK) {
        size_t n = strlen(txt);
        txt[n] = 0;
        char *line = malloc(n + 2);
        if (line) {
            memcpy(line, txt, n);
            line[n] = '\n';
            st = cb_write_file_atomic(path, line, n + 1);
            free(line);
        }
    }
    free(txt);
    if (st == CB_OK) snprintf(out->path, sizeof out->path, "%s", path);
    else fprintf(stderr, "warning: runtime plan not saved: %s\n", cb_last_error());
    return CB_OK;
}
