/* Legacy inference modes: `caramba --mode sample --ckpt C` and `caramba --mode chat --ckpt C`
 * (the original parsed these flags and ignored them; here they work). The router in main.c owns
 * the legacy flags and calls cb_legacy_sample / cb_legacy_chat, or hands the whole argv to
 * cb_legacy_infer_main. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caramba/device.h"
#include "caramba/fileio.h"
#include "caramba/generate.h"
#include "caramba/hf.h"
#include "caramba/safetensors.h"
#include "caramba/threads.h"
#include "cli/legacy_infer.h"
#include "cli/model_args.h"

void cb_legacy_infer_opts_default(cb_legacy_infer_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1337;
    o->max_new_tokens = 128;
    o->temperature = 0.8;
    o->top_k = 0;
    o->top_p = 0.95;
}

int cb_cli_stream_token(void *user, int64_t step, const int32_t *tokens, int64_t batch) {
    (void)step;
    cb_cli_stream *s = user;
    if (batch < 1) return 0;
    int32_t t = tokens[0];
    if (s->skip_id >= 0 && t == s->skip_id) return 0;
    if (s->tok) {
        const char *bytes;
        size_t n;
        if (cb_tokenizer_token_bytes(s->tok, t, &bytes, &n) == CB_OK)
            fwrite(bytes, 1, n, s->out);
        else
            fprintf(s->out, "<%d>", t); /* an id the tokenizer has no bytes for */
    } else {
        fprintf(s->out, "%s%d", s->printed ? " " : "", t);
    }
    s->printed++;
    fflush(s->out);
    return 0;
}

/* ---- model and tokenizer ------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Directory that holds the checkpoint (for config.json / tokenizer.json), into dir. */
static void ckpt_dir(const char *ckpt, char *dir, size_t n) {
    char resolved[4096];
    if (cb_hf_resolve(ckpt, resolved, sizeof resolved) != CB_OK) {
        cb_clear_error();
        snprintf(resolved, sizeof resolved, "%s", ckpt);
    }
    if (cb_is_dir(resolved)) {
        snprintf(dir, n, "%s", resolved);
        return;
    }
    snprintf(dir, n, "%s", resolved);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, n, ".");
}

static int open_model(const cb_legacy_infer_opts *o, FILE *err, cb_model **owned, cb_model **m) {
    *owned = NULL;
    *m = o->model;
    cb_threads_init(0);
    if (o->model) {
        if (!o->ckpt) return 0;
        cb_checkpoint *ck;
        cb_status st = cb_checkpoint_open(&ck, o->ckpt);
        if (st == CB_OK) {
            st = cb_model_load(o->model, ck);
            cb_checkpoint_close(ck);
        }
        if (st != CB_OK) {
            fprintf(err, "error: --ckpt %s: %s\n", o->ckpt, cb_last_error());
            return 1;
        }
        return 0;
    }
    if (!o->ckpt) {
        fprintf(err,
                "error: --mode sample/chat needs --ckpt (a Hugging Face directory, hf://org/name, "
                "or a .safetensors file with config.json beside it)\n");
        return 1;
    }
    cb_device dev = CB_CPU;
    if (o->device && cb_device_parse(o->device, &dev) != CB_OK) {
        fprintf(err, "error: --device: %s\n", cb_last_error());
        return 1;
    }
    cb_status st;
    if (ends_with(o->ckpt, ".safetensors") && !cb_is_dir(o->ckpt)) {
        char dir[4096];
        ckpt_dir(o->ckpt, dir, sizeof dir);
        cb_llama_config cfg;
        cb_checkpoint *ck = NULL;
        st = cb_llama_config_load(dir, &cfg);
        if (st == CB_OK) st = cb_model_from_llama_config(owned, &cfg, dev);
        if (st == CB_OK) st = cb_checkpoint_open(&ck, o->ckpt);
        if (st == CB_OK) st = cb_model_load(*owned, ck);
        cb_checkpoint_close(ck);
    } else {
        st = cb_model_open_hf(owned, o->ckpt, dev);
    }
    if (st != CB_OK) {
        fprintf(err, "error: --ckpt %s: %s\n", o->ckpt, cb_last_error());
        cb_model_free(*owned);
        *owned = NULL;
        return 1;
    }
    *m = *owned;
    return 0;
}

static int open_tokenizer(const cb_legacy_infer_opts *o, const cb_model *m, FILE *err,
                          cb_tokenizer **tok) {
    *tok = NULL;
    char path[4200];
    const char *p = o->tokenizer;
    if (!p && o->ckpt) {
        char dir[4096];
        ckpt_dir(o->ckpt, dir, sizeof dir);
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (cb_file_exists(path)) p = path;
    }
    if (!p) return 0; /* ids as numbers */
    if (cb_tokenizer_open(tok, p, o->encoding) != CB_OK) {
        fprintf(err, "error: tokenizer %s: %s\n", p, cb_last_error());
        return 1;
    }
    (void)m;
    return 0;
}

/* Text -> ids: the tokenizer, or decimal numbers separated by spaces/commas. */
static int encode(cb_tokenizer *tok, const cb_model *m, const char *text, size_t len,
                  unsigned flags, cb_ids *ids, FILE *err) {
    ids->n = 0;
    if (tok) {
        if (cb_tokenizer_encode(tok, text, len, flags, ids) != CB_OK) {
            fprintf(err, "error: %s\n", cb_last_error());
            return 1;
        }
    } else {
        char *buf = strndup(text, len), *save = NULL;
        if (!buf) return 1;
        for (char *t = strtok_r(buf, " ,\t\r\n", &save); t; t = strtok_r(NULL, " ,\t\r\n", &save)) {
            char *end;
            errno = 0;
            long v = strtol(t, &end, 10);
            if (errno || *end || v < 0 || v >= m->vocab_size) {
                fprintf(err,
                        "error: '%s' is not a token id in [0, %lld) (no tokenizer: type ids)\n", t,
                        (long long)m->vocab_size);
                free(buf);
                return 1;
            }
            cb_ids_push(ids, (int32_t)v);
        }
        free(buf);
    }
    for (size_t i = 0; i < ids->n; i++)
        if (ids->data[i] >= m->vocab_size) {
            fprintf(err, "error: token id %d is outside the model's vocabulary of %lld\n",
                    ids->data[i], (long long)m->vocab_size);
            return 1;
        }
    return 0;
}

static void gen_config(const cb_legacy_infer_opts *o, const cb_model *m, cb_tokenizer *tok,
                       cb_generate_config *c) {
    cb_generate_config_default(c);
    c->temperature = (float)o->temperature;
    c->top_k = o->top_k;
    c->top_p = (float)o->top_p;
    c->seed = o->seed;
    c->cache_kind = o->cache_kind;
    c->max_new_tokens = o->max_new_tokens;
    int64_t eos = tok && cb_tokenizer_eot_id(tok) >= 0 ? cb_tokenizer_eot_id(tok) : m->eos_id;
    c->eos_token_id = eos >= 0 && eos < m->vocab_size ? eos : -1;
    c->max_seq_len = o->max_seq_len > 0 ? o->max_seq_len : 2048;
}

static int32_t start_token(cb_tokenizer *tok, const cb_model *m) {
    if (tok && cb_tokenizer_bos_id(tok) >= 0 && cb_tokenizer_bos_id(tok) < m->vocab_size)
        return cb_tokenizer_bos_id(tok);
    if (m->bos_id >= 0 && m->bos_id < m->vocab_size) return (int32_t)m->bos_id;
    return 0;
}

/* ---- sample ---------------------------------------------------------------------------------- */

int cb_legacy_sample(const cb_legacy_infer_opts *o) {
    FILE *out = o->out ? o->out : stdout, *err = o->err ? o->err : stderr;
    cb_model *owned = NULL, *m;
    cb_tokenizer *tok = NULL;
    cb_ids ids = {0};
    int32_t *buf = NULL;
    int rc = 1;
    if (open_model(o, err, &owned, &m) || open_tokenizer(o, m, err, &tok)) goto done;
    if (o->prompt && *o->prompt) {
        unsigned flags = tok && cb_tokenizer_bos_id(tok) >= 0 ? CB_TOK_BOS : 0;
        if (encode(tok, m, o->prompt, strlen(o->prompt), flags, &ids, err)) goto done;
    }
    if (ids.n == 0) cb_ids_push(&ids, start_token(tok, m));
    cb_generate_config c;
    gen_config(o, m, tok, &c);
    if ((int64_t)ids.n + c.max_new_tokens > c.max_seq_len)
        c.max_seq_len = (int64_t)ids.n + c.max_new_tokens;
    buf = malloc(sizeof(int32_t) * (ids.n + (size_t)c.max_new_tokens));
    if (!buf) goto done;
    if (o->prompt) {
        fputs(o->prompt, out);
        fflush(out);
    }
    cb_cli_stream s = {
        .tok = tok, .out = out, .skip_id = c.eos_token_id, .printed = o->prompt && !tok ? 1 : 0};
    int64_t len;
    if (cb_generate(m, &c, ids.data, 1, (int64_t)ids.n, buf, &len, cb_cli_stream_token, &s) !=
        CB_OK) {
        fprintf(err, "error: %s\n", cb_last_error());
        goto done;
    }
    fputc('\n', out);
    rc = 0;
done:
    free(buf);
    cb_ids_free(&ids);
    cb_tokenizer_free(tok);
    cb_model_free(owned);
    return rc;
}

/* ---- chat ------------------------------------------------------------------------------------ */

typedef struct chat_stream {
    cb_cli_stream s;
    bool stop_at_newline;
} chat_stream;

/* Streams, and ends the reply at the first token that completes a line (base models do not stop
 * on their own; one line per turn keeps the loop interactive). */
static int chat_token(void *user, int64_t step, const int32_t *tokens, int64_t batch) {
    chat_stream *c = user;
    cb_cli_stream_token(&c->s, step, tokens, batch);
    if (!c->stop_at_newline || !c->s.tok) return 0;
    const char *bytes;
    size_t n;
    if (cb_tokenizer_token_bytes(c->s.tok, tokens[0], &bytes, &n) != CB_OK) return 0;
    return n > 0 && memchr(bytes, '\n', n) != NULL;
}

int cb_legacy_chat(const cb_legacy_infer_opts *o) {
    FILE *in = o->in ? o->in : stdin, *out = o->out ? o->out : stdout,
         *err = o->err ? o->err : stderr;
    cb_model *owned = NULL, *m;
    cb_tokenizer *tok = NULL;
    cb_generator *g = NULL;
    cb_ids ids = {0};
    int32_t *reply = NULL;
    char *line = NULL;
    size_t cap = 0;
    int rc = 1;
    if (open_model(o, err, &owned, &m) || open_tokenizer(o, m, err, &tok)) goto done;
    cb_generate_config c;
    gen_config(o, m, tok, &c);
    if (c.max_new_tokens >= c.max_seq_len) {
        fprintf(err, "error: --max-new-tokens %lld does not fit the context of %lld tokens\n",
                (long long)c.max_new_tokens, (long long)c.max_seq_len);
        goto done;
    }
    if (cb_generator_new(&g, m, &c) != CB_OK) {
        fprintf(err, "error: %s\n", cb_last_error());
        goto done;
    }
    reply = malloc(sizeof(int32_t) * (size_t)(c.max_new_tokens + 1));
    if (!reply) goto done;
    const bool interactive = isatty(fileno(in));
    bool first = true;
    for (;;) {
        if (interactive) {
            fputs("> ", err);
            fflush(err);
        }
        ssize_t n = getline(&line, &cap, in);
        if (n < 0) break;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len == 5 && strncmp(line, "/exit", 5) == 0) break;
        if (len == 5 && strncmp(line, "/quit", 5) == 0) break;
        if (len == 6 && strncmp(line, "/reset", 6) == 0) {
            cb_generator_reset(g);
            first = true;
            fprintf(err, "(conversation reset)\n");
            continue;
        }
        /* the turn's text including its newline, so the model sees where the turn ends */
        if (tok) line[len++] = '\n';
        unsigned flags = first && tok && cb_tokenizer_bos_id(tok) >= 0 ? CB_TOK_BOS : 0;
        if (encode(tok, m, line, len, flags, &ids, err)) continue; /* bad input: say so, go on */
        if (ids.n == 0) continue;
        int64_t pending = cb_generator_has_pending(g) ? 1 : 0;
        if (cb_generator_pos(g) + pending + (int64_t)ids.n + c.max_new_tokens - 1 > c.max_seq_len) {
            if ((int64_t)ids.n + c.max_new_tokens - 1 > c.max_seq_len) {
                fprintf(err,
                        "error: this turn (%zu tokens) does not fit the context of %lld tokens\n",
                        ids.n, (long long)c.max_seq_len);
                continue;
            }
            fprintf(err, "(context full: conversation reset)\n");
            cb_generator_reset(g);
            if (tok && cb_tokenizer_bos_id(tok) >= 0 && !(flags & CB_TOK_BOS)) {
                /* re-encode with BOS for the fresh context */
                if (encode(tok, m, line, len, CB_TOK_BOS, &ids, err)) continue;
            }
        }
        first = false;
        chat_stream cs = {.s = {.tok = tok, .out = out, .skip_id = c.eos_token_id},
                          .stop_at_newline = true};
        int64_t got;
        if (cb_generator_continue(g, ids.data, 1, (int64_t)ids.n, c.max_new_tokens, reply, &got,
                                  chat_token, &cs) != CB_OK) {
            fprintf(err, "error: %s\n", cb_last_error());
            goto done;
        }
        /* end the reply's line unless the model did */
        const char *bytes;
        size_t nb;
        bool ended = got > 0 && tok &&
                     cb_tokenizer_token_bytes(tok, reply[got - 1], &bytes, &nb) == CB_OK &&
                     nb > 0 && bytes[nb - 1] == '\n';
        if (!ended) fputc('\n', out);
        fflush(out);
    }
    rc = 0;
done:
    free(line);
    free(reply);
    cb_ids_free(&ids);
    cb_generator_free(g);
    cb_tokenizer_free(tok);
    cb_model_free(owned);
    return rc;
}

/* ---- argv entry point -------------------------------------------------------------------------
 */

int cb_legacy_infer_main(int argc, char **argv) {
    cb_legacy_infer_opts o;
    cb_legacy_infer_opts_default(&o);
    const char *mode = NULL;
    static const char *ignored[] = {"data", "resume", "entity", "project", "group", "out"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "error: unexpected argument '%s'\n", a);
            return 2;
        }
        char name[64];
        const char *eq = strchr(a + 2, '='), *val;
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name) nl = sizeof name - 1;
        memcpy(name, a + 2, nl);
        name[nl] = 0;
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(stderr, "error: --%s needs a value\n", name);
            return 2;
        }
        char *end;
        errno = 0;
        if (strcmp(name, "mode") == 0)
            mode = val;
        else if (strcmp(name, "ckpt") == 0)
            o.ckpt = val;
        else if (strcmp(name, "manifest") == 0)
            o.manifest = val;
        else if (strcmp(name, "exp") == 0)
            o.exp = val;
        else if (strcmp(name, "device") == 0)
            o.device = val;
        else if (strcmp(name, "tokenizer") == 0)
            o.tokenizer = val;
        else if (strcmp(name, "encoding") == 0)
            o.encoding = val;
        else if (strcmp(name, "prompt") == 0)
            o.prompt = val;
        else if (strcmp(name, "cache-kind") == 0)
            o.cache_kind = val;
        else if (strcmp(name, "seed") == 0)
            o.seed = strtoull(val, &end, 10);
        else if (strcmp(name, "max-new-tokens") == 0)
            o.max_new_tokens = strtoll(val, &end, 10);
        else if (strcmp(name, "max-seq-len") == 0)
            o.max_seq_len = strtoll(val, &end, 10);
        else if (strcmp(name, "top-k") == 0)
            o.top_k = (int)strtol(val, &end, 10);
        else if (strcmp(name, "temperature") == 0)
            o.temperature = strtod(val, &end);
        else if (strcmp(name, "top-p") == 0)
            o.top_p = strtod(val, &end);
        else {
            bool ign = false;
            for (size_t k = 0; k < sizeof ignored / sizeof *ignored; k++)
                ign |= strcmp(name, ignored[k]) == 0;
            if (!ign) {
                fprintf(stderr, "error: unknown legacy option '--%s'\n", name);
                return 2;
            }
            fprintf(stderr, "note: --%s is not used in sample/chat mode; ignored\n", name);
            continue;
        }
        bool numeric = strcmp(name, "seed") == 0 || strcmp(name, "max-new-tokens") == 0 ||
                       strcmp(name, "max-seq-len") == 0 || strcmp(name, "top-k") == 0 ||
                       strcmp(name, "temperature") == 0 || strcmp(name, "top-p") == 0;
        if (numeric && (errno || end == val || *end)) {
            fprintf(stderr, "error: --%s: '%s' is not a number\n", name, val);
            return 2;
        }
    }
    if (o.max_new_tokens < 0 || o.top_k < 0 || o.top_p < 0 || o.top_p > 1 || o.max_seq_len < 0) {
        fprintf(
            stderr,
            "error: --max-new-tokens, --top-k, --max-seq-len must be >= 0 and --top-p in [0, 1]\n");
        return 2;
    }
    if (!mode || (strcmp(mode, "sample") != 0 && strcmp(mode, "chat") != 0)) {
        fprintf(stderr, "error: --mode must be sample or chat here (train runs a manifest)\n");
        return 2;
    }
    if (o.exp)
        fprintf(stderr, "note: --exp %s: the architecture comes from the checkpoint's config\n",
                o.exp);
    return strcmp(mode, "sample") == 0 ? cb_legacy_sample(&o) : cb_legacy_chat(&o);
}

int cb_cli_legacy_infer(int argc, char **argv) {
    return cb_legacy_infer_main(argc, argv);
}
