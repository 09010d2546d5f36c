/* Built-in tiktoken encodings: split pattern, special tokens, separator and BOS ids.
 *
 * These are the published definitions (tiktoken's openai_public.py, the npm package js-tiktoken,
 * Meta's Llama 3 tokenizer). Patterns are written as js-tiktoken writes them, since its
 * encodings are this project's reference; the rank files themselves are not built in. */
#include <stdio.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

#define GPT2_PAT                                                                                   \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define CONTRACTIONS "('s|'S|'t|'T|'re|'rE|'Re|'RE|'ve|'vE|'Ve|'VE|'m|'M|'ll|'lL|'Ll|'LL|'d|'D)"
#define CL100K_PAT                                                                                 \
    CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"      \
                 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define O200K_PAT                                                                                  \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]"     \
    "+" CONTRACTIONS "?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"               \
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*" CONTRACTIONS "?|\\p{N}{1,3}|"                                 \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* Meta's Llama 3 tokenizer (tiktoken format, 128000 ranks). */
#define LLAMA3_PAT                                                                                 \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"                      \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static const tok_encoding_info encodings[] = {
    {"cl100k_base", CL100K_PAT, 100257, -1, 100256},
    {"o200k_base", O200K_PAT, 199999, -1, 199998},
    {"p50k_base", GPT2_PAT, 50256, -1, 50280},
    {"r50k_base", GPT2_PAT, 50256, -1, 50256},
    {"gpt2", GPT2_PAT, 50256, -1, 50256},
    {"llama3", LLAMA3_PAT, 128001, 128000, 128000},
};

static const struct {
    const char *enc, *text;
    int32_t id;
} fixed_specials[] = {
    {"cl100k_base", "<|endoftext|>", 100257},   {"cl100k_base", "<|fim_prefix|>", 100258},
    {"cl100k_base", "<|fim_middle|>", 100259},  {"cl100k_base", "<|fim_suffix|>", 100260},
    {"cl100k_base", "<|endofprompt|>", 100276}, {"o200k_base", "<|endoftext|>", 199999},
    {"o200k_base", "<|endofprompt|>", 200018},  {"p50k_base", "<|endoftext|>", 50256},
    {"r50k_base", "<|endoftext|>", 50256},      {"gpt2", "<|endoftext|>", 50256},
};

/* Llama 3.1+ names for 128000..128010; the rest of the 256 are reserved_special_token_N. */
static const char *const llama3_named[11] = {
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|reserved_special_token_2|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
};

const tok_encoding_info *tok_find_encoding(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof encodings / sizeof encodings[0]; i++)
        if (strcmp(encodings[i].name, name) == 0) return &encodings[i];
    return NULL;
}

const char *tok_encoding_names(void) {
    return "cl100k_base, o200k_base, p50k_base, r50k_base (gpt2), llama3";
}

static cb_status add_one(cb_tokenizer *t, int32_t id, const char *text) {
    CB_TRY(tok_set_id(t, id, text, strlen(text), TOK_ID_SPECIAL | TOK_ID_ADDED));
    return tok_add_special(t, id, text, strlen(text), true, false, false, false);
}

cb_status tok_add_encoding_specials(cb_tokenizer *t, const tok_encoding_info *enc) {
    if (strcmp(enc->name, "llama3") == 0) {
        for (int i = 0; i < 256; i++) {
            char buf[64];
            const char *text = buf;
            if (i < 11)
                text = llama3_named[i];
            else
                snprintf(buf, sizeof buf, "<|reserved_special_token_%d|>", i - 8);
            CB_TRY(add_one(t, 128000 + i, text));
        }
    } else {
        for (size_t i = 0; i < sizeof fixed_specials / sizeof fixed_specials[0]; i++)
            if (strcmp(fixed_specials[i].enc, enc->name) == 0)
                CB_TRY(add_one(t, fixed_specials[i].id, fixed_specials[i].text));
    }
    t->eot_id = enc->eot_id;
    if (enc->bos_id >= 0) {
        t->bos_pre[0] = enc->bos_id;
        t->n_bos_pre = 1;
    }
    return CB_OK;
}
