/* libFuzzer target: encode arbitrary bytes (invalid UTF-8 included) and decode them back.
 *
 * The first input byte picks the tokenizer (cl100k_base rank file, llama3 tokenizer.json, bytes)
 * and the flags (special tokens allowed or not, BOS/EOS); the rest is the text. Every id must be
 * a token of the vocabulary and decode(encode(x)) must give x back byte for byte. Run from the
 * repository root (make fuzz does) or set CARAMBA_SOURCE_DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cb_tokenizer *toks[3];
static int n_toks;

static void load(const char *rel) {
    const char *root = getenv("CARAMBA_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root ? root : ".", rel);
    if (cb_tokenizer_open(&toks[n_toks], path, NULL) == CB_OK)
        n_toks++;
    else
        fprintf(stderr, "fuzz_tokenizer_encode: skipping %s: %s\n", rel, cb_last_error());
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (cb_tokenizer_open(&toks[n_toks], "bytes", NULL) == CB_OK) n_toks++;
    load("tests/data/tokenizers/cl100k_base.tiktoken");
    load("tests/data/tokenizers/llama3_tokenizer.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || n_toks == 0) return 0;
    cb_tokenizer *tok = toks[data[0] % n_toks];
    unsigned flags =
        (data[0] & 0x10 ? CB_TOK_ALLOW_SPECIAL : 0) | (data[0] & 0x20 ? CB_TOK_EOS : 0);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    cb_ids ids = {0};
    if (cb_tokenizer_encode(tok, text, len, flags, &ids) != CB_OK) __builtin_trap();
    int64_t vocab = cb_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < ids.n; i++)
        if (ids.data[i] < 0 || ids.data[i] >= vocab) __builtin_trap();
    char *back;
    size_t blen;
    if (flags & CB_TOK_EOS) ids.n--; /* the appended separator is not part of the text */
    if (cb_tokenizer_decode(tok, ids.data, ids.n, 0, &back, &blen) != CB_OK) __builtin_trap();
    if (blen != len || memcmp(back, text, len) != 0) __builtin_trap();
    free(back);
    /* refusing special tokens either succeeds with the same ids or fails cleanly */
    cb_ids again = {0};
    if (!(flags & CB_TOK_ALLOW_SPECIAL) &&
        cb_tokenizer_encode(tok, text, len, CB_TOK_REFUSE_SPECIAL, &again) == CB_OK &&
        (again.n != ids.n || (ids.n && memcmp(again.data, ids.data, ids.n * sizeof(int32_t)) != 0)))
        __builtin_trap();
    cb_ids_free(&again);
    cb_ids_free(&ids);
    return 0;
}
