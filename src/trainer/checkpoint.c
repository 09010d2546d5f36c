/* Trainer checkpoints: a directory of model.safetensors (+ config.json for Llama-shaped models),
 * optimizer.safetensors and trainer.json, committed atomically as a whole:
 *
 *   write every file into "<dir>.tmp.<pid>/" (each one temp + fsync + rename, caramba/fileio.h)
 *   fsync that directory
 *   if <dir> exists: rename it to "<dir>.old.<pid>"
 *   rename "<dir>.tmp.<pid>" -> <dir>, fsync the parent, remove the old one
 *
 * A crash at any point leaves either the previous checkpoint or the new one under <dir> (at worst
 * the previous one under .old.<pid>, which resolve does not pick up), never a mixture.
 * 64-bit counters (sampler and dropout state) are stored as decimal strings so JSON doubles never
 * round them. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "caramba/fileio.h"
#include "caramba/instrument.h"
#include "caramba/safetensors.h"
#include "caramba/trainer.h"

#define TRAINER_FORMAT "caramba-trainer-state"

/* ---- small filesystem helpers -------------------------------------------------------------- */

static char *path_join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static char *parent_of(const char *path) {
    char *p = strdup(path);
    if (!p) return NULL;
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') p[--n] = 0;
    char *s = strrchr(p, '/');
    if (!s) {
        free(p);
        return strdup(".");
    }
    if (s == p) s[1] = 0;
    else *s = 0;
    return p;
}

/* Removes a checkpoint directory: plain files only, one level (what this module writes). */
static void remove_ckpt_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char *p = path_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* ---- trainer.json -------------------------------------------------------------------------- */

static void add_u64(cJSON *o, const char *k, uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    cJSON_AddStringToObject(o, k, b);
}

static void add_num(cJSON *o, const char *k, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

static char *state_json(const cb_train_state *s, const cb_model *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "format", TRAINER_FORMAT);
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "run_id", s->run_id);
    cJSON_AddStringToObject(o, "phase", s->phase);
    cJSON_AddNumberToObject(o, "step", (double)s->step);
    cJSON_AddNumberToObject(o, "total_steps", (double)s->total_steps);
    cJSON_AddNumberToObject(o, "batch_size", (double)s->batch_size);
    cJSON_AddNumberToObject(o, "block_size", (double)s->block_size);
    cJSON_AddNumberToObject(o, "gradient_accumulation_steps", (double)s->accum);
    cJSON_AddNumberToObject(o, "tokens_seen", (double)s->tokens_seen);
    add_num(o, "elapsed_s", s->elapsed_s);
    add_num(o, "last_loss", s->last_loss);
    add_num(o, "last_val_loss", s->last_val_loss);
    cJSON *sm = cJSON_AddObjectToObject(o, "sampler");
    add_u64(sm, "seed", s->data_seed);
    add_u64(sm, "pos", s->data_pos);
    cJSON *dr = cJSON_AddObjectToObject(o, "dropout");
    add_u64(dr, "seed", s->dropout_seed);
    add_u64(dr, "counter", s->dropout_counter);
    cJSON *op = cJSON_AddObjectToObject(o, "optimizer");
    cJSON_AddStringToObject(op, "type", "adamw");
    cJSON_AddNumberToObject(op, "beta1", s->adamw.beta1);
    cJSON_AddNumberToObject(op, "beta2", s->adamw.beta2);
    cJSON_AddNumberToObject(op, "eps", s->adamw.eps);
    cJSON_AddNumberToObject(op, "weight_decay", s->adamw.weight_decay);
    cJSON_AddBoolToObject(op, "decay_all", s->adamw.decay_all);
    cJSON_AddNumberToObject(op, "grad_clip", s->grad_clip);
    cJSON *sc = cJSON_AddObjectToObject(o, "schedule");
    cJSON_AddStringToObject(sc, "kind", cb_schedule_name(s->sched.kind));
    cJSON_AddNumberToObject(sc, "lr", s->sched.base_lr);
    cJSON_AddNumberToObject(sc, "warmup_steps", (double)s->sched.warmup);
    cJSON_AddNumberToObject(sc, "total_steps", (double)s->sched.total);
    cJSON_AddNumberToObject(sc, "min_lr_ratio", s->sched.min_ratio);
    add_num(sc, "next_lr", cb_schedule_lr(&s->sched, s->step));
    cJSON *da = cJSON_AddObjectToObject(o, "data");
    cJSON_AddStringToObject(da, "path", s->data_path);
    cJSON_AddNumberToObject(da, "tokens", (double)s->data_tokens);
    if (m) {
        cJSON *mo = cJSON_AddObjectToObject(o, "model");
        cJSON_AddNumberToObject(mo, "parameters", (double)cb_model_param_count(m));
        cJSON_AddNumberToObject(mo, "tensors", m->n_params);
        cJSON_AddBoolToObject(mo, "hf_llama_names", m->llama_names);
    }
    cJSON_AddNumberToObject(o, "saved_at", (double)time(NULL));
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    return txt;
}

static int get_str(const cJSON *o, const char *k, char *dst, size_t n) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= n) return -1;
    snprintf(dst, n, "%s", v->valuestring);
    return 0;
}

static int get_i64(const cJSON *o, const char *k, int64_t *dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) return -1;
    *dst = (int64_t)v->valuedouble;
    return 0;
}

static int get_f64(const cJSON *o, const char *k, double *dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsNull(v)) {
        *dst = NAN;
        return 0;
    }
    if (!cJSON_IsNumber(v)) return -1;
    *dst = v->valuedouble;
    return 0;
}

static int get_u64(const cJSON *o, const char *k, uint64_t *dst) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsString(v) || !v->valuestring[0]) return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v->valuestring, &end, 10);
    if (*end || errno || v->valuestring[0] == '-') return -1;
    *dst = x;
    return 0;
}

static int sched_kind(const char *s, cb_cfg_sched *k) {
    static const cb_cfg_sched kinds[] = {CB_CFG_SCHED_NONE, CB_CFG_SCHED_LINEAR, CB_CFG_SCHED_COSINE,
                                        CB_CFG_SCHED_CONSTANT};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, cb_schedule_name(kinds[i])) == 0) {
            *k = kinds[i];
            return 0;
        }
    return -1;
}

static cb_status parse_state(const char *file, const char *txt, cb_train_state *s) {
    memset(s, 0, sizeof *s);
    cJSON *o = cJSON_Parse(txt);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return cb_fail(CB_ERR_FORMAT, "%s: not a JSON object", file);
    }
    char fmt[64] = "", kind[32] = "";
    const char *bad = NULL;
    const cJSON *sm = cJSON_GetObjectItemCaseSensitive(o, "sampler");
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(o, "dropout");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "optimizer");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(o, "schedule");
    const cJSON *da = cJSON_GetObjectItemCaseSensitive(o, "data");
    const cJSON *dc = op ? cJSON_GetObjectItemCaseSensitive(op, "decay_all") : NULL;
    if (get_str(o, "format", fmt, sizeof fmt) || strcmp(fmt, TRAINER_FORMAT) != 0) bad = "format";
    else if (get_str(o, "run_id", s->run_id, sizeof s->run_id)) bad = "run_id";
    else if (get_str(o, "phase", s->phase, sizeof s->phase)) bad = "phase";
    else if (get_i64(o, "step", &s->step) || s->step < 0) bad = "step";
    else if (get_i64(o, "total_steps", &s->total_steps)) bad = "total_steps";
    else if (get_i64(o, "batch_size", &s->batch_size)) bad = "batch_size";
    else if (get_i64(o, "block_size", &s->block_size)) bad = "block_size";
    else if (get_i64(o, "gradient_accumulation_steps", &s->accum)) bad = "gradient_accumulation_steps";
    else if (get_i64(o, "tokens_seen", &s->tokens_seen)) bad = "tokens_seen";
    else if (get_f64(o, "elapsed_s", &s->elapsed_s)) bad = "elapsed_s";
    else if (get_f64(o, "last_loss", &s->last_loss)) bad = "last_loss";
    else if (get_f64(o, "last_val_loss", &s->last_val_loss)) bad = "last_val_loss";
    else if (!sm || get_u64(sm, "seed", &s->data_seed) || get_u64(sm, "pos", &s->data_pos)) bad = "sampler";
    else if (!dr || get_u64(dr, "seed", &s->dropout_seed) || get_u64(dr, "counter", &s->dropout_counter))
        bad = "dropout";
    else if (!op || get_f64(op, "beta1", &s->adamw.beta1) || get_f64(op, "beta2", &s->adamw.beta2) ||
             get_f64(op, "eps", &s->adamw.eps) || get_f64(op, "weight_decay", &s->adamw.weight_decay) ||
             !cJSON_IsBool(dc) || get_f64(op, "grad_clip", &s->grad_clip))
        bad = "optimizer";
    else if (!sc || get_str(sc, "kind", kind, sizeof kind) || sched_kind(kind, &s->sched.kind) ||
             get_f64(sc, "lr", &s->sched.base_lr) || get_i64(sc, "warmup_steps", &s->sched.warmup) ||
             get_i64(sc, "total_steps", &s->sched.total) || get_f64(sc, "min_lr_ratio", &s->sched.min_ratio))
        bad = "schedule";
    else if (!da || get_str(da, "path", s->data_path, sizeof s->data_path) ||
             get_i64(da, "tokens", &s->data_tokens))
        bad = "data";
    if (!bad) s->adamw.decay_all = cJSON_IsTrue(dc);
    cJSON_Delete(o);
    if (bad) return cb_fail(CB_ERR_FORMAT, "%s: missing or malformed '%s' (not a caramba trainer state?)", file, bad);
    return CB_OK;
}

cb_status cb_train_ckpt_read_state(const char *dir, cb_train_state *st) {
    char *file = path_join(dir, "trainer.json");
    if (!file) return cb_fail(CB_ERR_NOMEM, "out of memory");
    char *txt = NULL;
    size_t n;
    cb_status rc = cb_read_file(file, 1 << 20, &txt, &n);
    if (rc == CB_OK) rc = parse_state(file, txt, st);
    free(txt);
    free(file);
    return rc;
}

/* ---- Hugging Face config.json -------------------------------------------------------------- */

typedef struct hf_scan {
    const cb_module *attn, *mlp, *norm;
} hf_scan;

static void scan(cb_module *m, void *user) {
    hf_scan *s = user;
    if (m->kind == CB_MOD_ATTENTION && !s->attn) s->attn = m;
    if (m->kind == CB_MOD_SWIGLU && !s->mlp) s->mlp = m;
    if (m->kind == CB_MOD_RMSNORM && !s->norm) s->norm = m;
}

/* The shortest decimal that reads back to the same float (1e-05, not 9.99999974737875e-06). */
static double f32_decimal(float v) {
    char b[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, (double)v);
        if ((float)strtod(b, NULL) == v) break;
    }
    return strtod(b, NULL);
}

cb_status cb_model_write_hf_config(const cb_model *m, const char *path) {
    hf_scan s = {0};
    cb_module_walk(m->root, scan, &s);
    if (!m->llama_names || !s.attn || !s.mlp || !s.norm)
        return cb_fail(CB_ERR_UNSUPPORTED, "config.json: the model does not have the Llama shape");
    const cb_attention_cfg *a = &s.attn->attn;
    cJSON *o = cJSON_CreateObject();
    if (!o) return cb_fail(CB_ERR_NOMEM, "config.json");
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(o, "model_type", "llama");
    cJSON_AddNumberToObject(o, "vocab_size", (double)m->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", m->d_model);
    cJSON_AddNumberToObject(o, "intermediate_size", s.mlp->d_ff);
    cJSON_AddNumberToObject(o, "num_hidden_layers", m->n_attn);
    cJSON_AddNumberToObject(o, "num_attention_heads", a->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", a->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", a->head_dim);
    if (a->rope_rot > 0 && a->rope_rot != a->head_dim)
        cJSON_AddNumberToObject(o, "partial_rotary_factor", (double)a->rope_rot / a->head_dim);
    cJSON_AddNumberToObject(o, "max_position_embeddings", (double)m->max_seq_len);
    cJSON_AddNumberToObject(o, "rms_norm_eps", f32_decimal(s.norm->eps));
    cJSON_AddNumberToObject(o, "rope_theta", f32_decimal(a->rope.theta));
    if (a->rope.type == CB_ROPE_LLAMA3) {
        cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        cJSON_AddNumberToObject(rs, "factor", f32_decimal(a->rope.factor));
        cJSON_AddNumberToObject(rs, "low_freq_factor", f32_decimal(a->rope.low_freq_factor));
        cJSON_AddNumberToObject(rs, "high_freq_factor", f32_decimal(a->rope.high_freq_factor));
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", a->rope.original_max_pos);
    } else {
        cJSON_AddNullToObject(o, "rope_scaling");
    }
    cJSON_AddBoolToObject(o, "tie_word_embeddings", m->tied);
    cJSON_AddBoolToObject(o, "attention_bias", a->bias);
    cJSON_AddBoolToObject(o, "mlp_bias", s.mlp->bias);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    if (m->bos_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", (double)m->bos_id);
    else cJSON_AddNullToObject(o, "bos_token_id");
    if (m->eos_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", (double)m->eos_id);
    else cJSON_AddNullToObject(o, "eos_token_id");
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    if (!txt) return cb_fail(CB_ERR_NOMEM, "config.json");
    cb_status st = cb_write_file_atomic(path, txt, strlen(txt));
    free(txt);
    return st;
}

/* ---- save / load --------------------------------------------------------------------------- */

static cb_status write_weights(const cb_model *m, const char *path) {
    cb_named_tensor *nt = calloc((size_t)m->n_params + 1, sizeof *nt);
    if (!nt) return cb_fail(CB_ERR_NOMEM, "save list");
    for (int i = 0; i < m->n_params; i++) {
        nt[i].name = m->params[i]->name;
        nt[i].tensor = m->params[i]->t;
    }
    /* "format": "pt" is what Hugging Face loaders expect in __metadata__ */
    const char *meta[] = {"format", "pt", NULL};
    cb_status st = cb_safetensors_write(path, nt, m->n_params, meta);
    free(nt);
    return st;
}

cb_status cb_train_ckpt_save(const char *dir, const cb_model *m, const cb_optimizer *o,
                             const cb_train_state *s) {
    char *parent = parent_of(dir);
    if (!parent) return cb_fail(CB_ERR_NOMEM, "out of memory");
    cb_status st = cb_mkdirs(parent);
    size_t n = strlen(dir) + 32;
    char *tmp = malloc(n), *old = malloc(n);
    char *f_model = NULL, *f_cfg = NULL, *f_opt = NULL, *f_state = NULL, *txt = NULL;
    if (!tmp || !old) st = cb_fail(CB_ERR_NOMEM, "out of memory");
    if (st == CB_OK) {
        snprintf(tmp, n, "%s.tmp.%d", dir, (int)getpid());
        snprintf(old, n, "%s.old.%d", dir, (int)getpid());
        remove_ckpt_dir(tmp); /* a leftover of an earlier crash of this very pid number */
        if (mkdir(tmp, 0777) != 0)
            st = cb_fail(CB_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    if (st == CB_OK) {
        f_model = path_join(tmp, "model.safetensors");
        f_cfg = path_join(tmp, "config.json");
        f_opt = path_join(tmp, "optimizer.safetensors");
        f_state = path_join(tmp, "trainer.json");
        txt = state_json(s, m);
        if (!f_model || !f_cfg || !f_opt || !f_state || !txt) st = cb_fail(CB_ERR_NOMEM, "out of memory");
    }
    if (st == CB_OK) st = write_weights(m, f_model);
    if (st == CB_OK && m->llama_names) st = cb_model_write_hf_config(m, f_cfg);
    if (st == CB_OK && o) st = cb_optimizer_save(o, f_opt);
    if (st == CB_OK) st = cb_write_file_atomic(f_state, txt, strlen(txt));
    if (st == CB_OK) {
        fsync_dir(tmp);
        bool had_old = cb_file_exists(dir);
        if (had_old && rename(dir, old) != 0)
            st = cb_fail(CB_ERR_IO, "%s: cannot move the previous checkpoint aside: %s", dir,
                         strerror(errno));
        if (st == CB_OK && rename(tmp, dir) != 0) {
            st = cb_fail(CB_ERR_IO, "%s: cannot rename into place: %s", dir, strerror(errno));
            if (had_old) rename(old, dir); /* put the previous one back */
        }
        if (st == CB_OK) {
            fsync_dir(parent);
            if (had_old) remove_ckpt_dir(old);
        }
    }
    if (st != CB_OK && tmp) {
        remove_ckpt_dir(tmp);
        st = cb_fail_context(st, "checkpoint %s", dir);
    }
    free(txt);
    free(f_model);
    free(f_cfg);
    free(f_opt);
    free(f_state);
    free(tmp);
    free(old);
    free(parent);
    return st;
}

cb_status cb_train_ckpt_load(const char *dir, cb_model *m, cb_optimizer *o, cb_train_state *st) {
    cb_train_state local;
    cb_train_state *s = st ? st : &local;
    CB_TRY(cb_train_ckpt_read_state(dir, s));
    char *f_model = path_join(dir, "model.safetensors"), *f_opt = path_join(dir, "optimizer.safetensors");
    cb_status rc = f_model && f_opt ? CB_OK : cb_fail(CB_ERR_NOMEM, "out of memory");
    cb_checkpoint *ck = NULL;
    if (rc == CB_OK) rc = cb_checkpoint_open(&ck, f_model);
    if (rc == CB_OK) rc = cb_model_load(m, ck);
    if (rc == CB_OK && cb_checkpoint_count(ck) != m->n_params)
        rc = cb_fail(CB_ERR_FORMAT, "%s: holds %d tensors, the model has %d parameters (another "
                                    "model?)",
                     f_model, cb_checkpoint_count(ck), m->n_params);
    cb_checkpoint_close(ck);
    if (rc == CB_OK && o) {
        rc = cb_optimizer_load(o, f_opt);
        if (rc == CB_OK && o->step != s->step)
            rc = cb_fail(CB_ERR_FORMAT, "%s: optimizer step %lld differs from trainer.json step %lld",
                         dir, (long long)o->step, (long long)s->step);
    }
    free(f_model);
    free(f_opt);
    return rc;
}

char *cb_train_ckpt_resolve(const char *path) {
    char *state = path_join(path, "trainer.json");
    if (!state) return cb_fail(CB_ERR_NOMEM, "out of memory"), NULL;
    if (cb_file_exists(state)) {
        free(state);
        return strdup(path);
    }
    free(state);
    if (!cb_file_exists(path)) {
        cb_fail(CB_ERR_NOTFOUND, "%s: no such checkpoint", path);
        return NULL;
    }
    char *latest = path_join(path, "latest");
    char *txt = NULL;
    size_t n = 0;
    if (!latest || !cb_is_dir(path) || !cb_file_exists(latest) ||
        cb_read_file(latest, 4096, &txt, &n) != CB_OK) {
        free(latest);
        free(txt);
        cb_fail(CB_ERR_NOTFOUND, "%s: not a trainer checkpoint (no trainer.json) nor a run "
                                 "directory (no 'latest' file)",
                path);
        return NULL;
    }
    free(latest);
    while (n > 0 && (txt[n - 1] == '\n' || txt[n - 1] == ' ')) txt[--n] = 0;
    if (n == 0 || strchr(txt, '/')) {
        cb_fail(CB_ERR_FORMAT, "%s/latest: expected the name of a checkpoint directory", path);
        free(txt);
        return NULL;
    }
    char *dir = path_join(path, txt);
    free(txt);
    char *st2 = dir ? path_join(dir, "trainer.json") : NULL;
    if (!st2 || !cb_file_exists(st2)) {
        cb_fail(CB_ERR_NOTFOUND, "%s: named by %s/latest, but it holds no trainer.json", dir ? dir : "?",
                path);
        free(st2);
        free(dir);
        return NULL;
    }
    free(st2);
    return dir;
}
