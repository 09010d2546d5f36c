/* Byte-level BPE tokenizers: tiktoken rank files, Hugging Face tokenizer.json, raw bytes.
 *
 * One engine serves every front end: the text is cut at special tokens (only those allowed),
 * each remaining stretch is pre-tokenized with the encoding's PCRE2 split pattern, and every
 * piece is merged pair by pair, lowest merge rank first (leftmost on ties), exactly as tiktoken
 * and Hugging Face `tokenizers` do. Ids are plain int32. decode() returns the exact bytes, so
 * decode(encode(x)) == x for any byte string x, valid UTF-8 or not.
 *
 * A cb_tokenizer keeps a cache of encoded pieces and scratch buffers: encode on one object from
 * one thread at a time (open one tokenizer per thread). decode and the accessors are read-only.
 * See docs/tokenizers.md. */
#ifndef CARAMBA_TOKENIZER_H
#define CARAMBA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "caramba/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_tokenizer cb_tokenizer;

/* A growable id list; encode appends to it. Zero-initialise, release with cb_ids_free. */
typedef struct cb_ids {
    int32_t *data;
    size_t n, cap;
} cb_ids;

enum cb_tok_flags {
    /* Special-token text ("<|endoftext|>") becomes its id. Without this flag it is encoded as
     * ordinary text (tiktoken's encode_ordinary). Hugging Face added tokens that are not marked
     * special are always recognised, as in `tokenizers`. */
    CB_TOK_ALLOW_SPECIAL = 1u << 0,
    /* Fail with CB_ERR_ARG when the text contains special-token text (tiktoken's default
     * encode(), which refuses it). Ignored together with CB_TOK_ALLOW_SPECIAL. */
    CB_TOK_REFUSE_SPECIAL = 1u << 1,
    /* Prepend the beginning-of-text token(s) (the post-processor's template for tokenizer.json;
     * <|begin_of_text|> for llama3); an error when the tokenizer has none. */
    CB_TOK_BOS = 1u << 2,
    /* Append the end-of-text token (cb_tokenizer_eot_id); an error when there is none. */
    CB_TOK_EOS = 1u << 3,
};

enum cb_tok_decode_flags {
    CB_TOK_SKIP_SPECIAL = 1u << 0, /* decode: leave special tokens out */
};

/* Opens a tokenizer.
 *   path "bytes": the raw byte tokenizer (ids 0..255 are bytes; 256 <|endoftext|>,
 *     257 <|begin_of_text|>). Use "./bytes" for a file of that name.
 *   a *.tiktoken rank file: encoding names the split pattern and special tokens: one of
 *     cl100k_base, o200k_base, p50k_base, r50k_base (alias gpt2), llama3, or the path of a JSON
 *     file {"pat_str": ..., "special_tokens": {...}}. NULL: "<stem>.json" beside the rank file
 *     when present, else the file's stem when it names a built-in encoding.
 *   a tokenizer.json file, or a directory holding one (Hugging Face layout); encoding must be
 *     NULL.
 * Truncated or malformed files are errors naming the file, line or key. */
cb_status cb_tokenizer_open(cb_tokenizer **out, const char *path, const char *encoding);
void cb_tokenizer_free(cb_tokenizer *tok);

/* Appends the ids of text[0..len) to out. Flags: cb_tok_flags. Not thread-safe (see above). */
cb_status cb_tokenizer_encode(cb_tokenizer *tok, const char *text, size_t len, unsigned flags,
                              cb_ids *out);
/* Concatenated bytes of the ids into a heap buffer (NUL-terminated for convenience; *out_len
 * excludes the NUL). Ids outside the vocabulary are an error naming the id. */
cb_status cb_tokenizer_decode(const cb_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                              char **out, size_t *out_len);

/* Largest id + 1 (the embedding rows a model needs). Ids without a token inside that range
 * (cl100k_base's 100256..100276 gap) fail to decode. */
int64_t cb_tokenizer_vocab_size(const cb_tokenizer *tok);
/* The document separator: <|endoftext|> (tiktoken, bytes), <|end_of_text|> (llama3); for
 * tokenizer.json the first added token among <|end_of_text|>, <|endoftext|>, </s>, <eos>,
 * <|im_end|>, <|eot_id|>. -1 when there is none. */
int32_t cb_tokenizer_eot_id(const cb_tokenizer *tok);
/* First token CB_TOK_BOS prepends, or -1. */
int32_t cb_tokenizer_bos_id(const cb_tokenizer *tok);
/* "cl100k_base", "llama3", "bytes", or the tokenizer.json's file name. */
const char *cb_tokenizer_name(const cb_tokenizer *tok);
/* The bytes of one id (not NUL-terminated); CB_ERR_ARG for an id without a token. */
cb_status cb_tokenizer_token_bytes(const cb_tokenizer *tok, int32_t id, const char **bytes,
                                   size_t *len);
/* Id of a token given by its bytes (ordinary or special), or -1. */
int32_t cb_tokenizer_token_id(const cb_tokenizer *tok, const char *bytes, size_t len);
int cb_tokenizer_is_special(const cb_tokenizer *tok, int32_t id);

cb_status cb_ids_push(cb_ids *ids, int32_t id);
void cb_ids_free(cb_ids *ids);

#ifdef __cplusplus
}
#endif
#endif
