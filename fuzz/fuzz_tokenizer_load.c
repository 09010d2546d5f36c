/* libFuzzer target: tokenizer files from arbitrary bytes: a Hugging Face tokenizer.json and a
 * tiktoken rank file (read with the r50k_base encoding, whose rank count makes most inputs fail
 * late, after the whole file was parsed). A tokenizer that loads must encode and decode a
 * fixed text exactly. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void exercise(cb_tokenizer *t) {
    static const char text[] = "Hello, world! <|endoftext|> 123 \xff\xfe  tabs\tand\nlines ";
    cb_ids ids = {0};
    /* a split pattern from the file may hit PCRE2's match limit: an error, not a crash */
    if (cb_tokenizer_encode(t, text, sizeof text - 1, CB_TOK_ALLOW_SPECIAL, &ids) != CB_OK) return;
    /* Two documented exceptions to decode(encode(x)) == x, as in `tokenizers`: lstrip/rstrip
     * added tokens swallow spaces, and ByteLevel's add_prefix_space adds one. */
    bool exact = true;
    for (int i = 0; i < t->n_specials; i++)
        if (t->specials[i].lstrip || t->specials[i].rstrip) exact = false;
    for (int i = 0; i < t->n_stages; i++)
        if (t->stages[i].prefix_space) exact = false;
    if (!exact) {
        cb_ids_free(&ids);
        return;
    }
    char *back;
    size_t n;
    if (cb_tokenizer_decode(t, ids.data, ids.n, 0, &back, &n) != CB_OK) __builtin_trap();
    if (n != sizeof text - 1 || memcmp(back, text, n) != 0) __builtin_trap();
    free(back);
    cb_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cb_tokenizer *t = NULL;
    if (tok_parse_hf(&t, (const char *)data, size, "fuzz.json") == CB_OK) {
        exercise(t);
        cb_tokenizer_free(t);
    } else if (t) {
        __builtin_trap();
    }
    t = NULL;
    if (tok_parse_tiktoken(&t, (const char *)data, size, "fuzz.tiktoken", "r50k_base") == CB_OK) {
        exercise(t);
        cb_tokenizer_free(t);
    } else if (t) {
        __builtin_trap();
    }
    return 0;
}
