/* Legacy inference modes (`caramba --mode sample --ckpt C`, `caramba --mode chat --ckpt C`) as
 * functions the legacy-flag router in main.c calls, plus the token-streaming helper shared with
 * `caramba generate`. See docs/generate.md. */
#ifndef CARAMBA_CLI_LEGACY_INFER_H
#define CARAMBA_CLI_LEGACY_INFER_H

#include <stdint.h>
#include <stdio.h>

#include "caramba/model.h"
#include "caramba/tokenizer.h"

typedef struct cb_legacy_infer_opts {
    const char *manifest;  /* --manifest: reported; the router builds `model` from it when it can */
    const char *ckpt;      /* --ckpt: HF directory, hf://org/name, or a .safetensors file with a
                              config.json beside it */
    cb_model *model;       /* optional, not owned: an already built model (e.g. from the manifest).
                              When ckpt is also set its weights are loaded into this model. */
    const char *exp;       /* --exp: accepted and reported (architecture comes from the model) */
    uint64_t seed;         /* --seed (1337) */
    const char *device;    /* NULL: cpu */
    const char *tokenizer; /* NULL: tokenizer.json beside the checkpoint, else ids are read and
                              written as decimal numbers */
    const char *encoding;
    const char *prompt; /* sample: the prompt text (NULL: the model's BOS token, else token 0) */
    int64_t max_new_tokens; /* 128 (sample), per reply (chat) */
    double temperature;     /* 0.8 */
    int top_k;              /* 0 */
    double top_p;           /* 0.95 */
    const char *cache_kind; /* NULL: fp32 */
    int64_t max_seq_len;    /* chat context in tokens (0: 2048) */
    FILE *in, *out, *err;   /* NULL: stdin, stdout, stderr */
} cb_legacy_infer_opts;

void cb_legacy_infer_opts_default(cb_legacy_infer_opts *o);
/* One sample: encode the prompt, generate, stream the text (or ids) to out. Returns the exit
 * status (0, or 1 after printing "error: ..." to err). */
int cb_legacy_sample(const cb_legacy_infer_opts *o);
/* Interactive loop: read a line from in, stream the reply to out, keep the KV cache between
 * turns. Lines "/reset" (forget the conversation) and "/exit" (or end of input) are commands.
 * When the context is full the conversation is reset with a note on err. */
int cb_legacy_chat(const cb_legacy_infer_opts *o);
/* Parses the legacy flags itself (argv[0] is the program): --mode sample|chat, --ckpt,
 * --manifest, --exp, --seed, --device, --tokenizer, --encoding, --prompt, --max-new-tokens,
 * --temperature, --top-k, --top-p, --cache-kind, --max-seq-len; the other legacy flags (--data,
 * --resume, --entity, --project, --group, --out) are accepted and ignored with a note. Returns the
 * exit status (2 on a usage error). */
int cb_legacy_infer_main(int argc, char **argv);
/* The name the legacy router (src/cli/legacy.c) calls: the same as cb_legacy_infer_main. */
int cb_cli_legacy_infer(int argc, char **argv);

/* ---- streaming (shared with caramba generate) ------------------------------------------------ */

typedef struct cb_cli_stream {
    const cb_tokenizer *tok; /* NULL: decimal ids separated by spaces */
    FILE *out;
    int64_t skip_id; /* not printed (EOS), -1: none */
    int64_t printed;
} cb_cli_stream;

/* cb_token_fn: writes the bytes of tokens[0] (batch 1) as they come, flushed. */
int cb_cli_stream_token(void *user, int64_t step, const int32_t *tokens, int64_t batch);

#endif
