/* Training data: token files, dataset windows, seeded sampling, and prepare (text -> tokens).
 *
 * Token files are chosen by suffix: ".npy" is memory-mapped in place whatever its integer dtype
 * (u8, u16, u32, i32, i64: no copy, no widening); ".tokens" and ".txt" are whitespace-separated
 * decimal ids read into memory as int32; any other suffix is read as .npy. See docs/data.md. */
#ifndef CARAMBA_DATA_H
#define CARAMBA_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/npy.h"
#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- token files -------------------------------------------------------------------------- */

typedef struct cb_token_file {
    char *path;
    cb_dtype dtype;   /* CB_U8, CB_U16, CB_U32, CB_I32 or CB_I64 */
    int64_t n;        /* number of tokens (a multi-dimensional .npy is read flat, C order) */
    const void *data; /* into the mapping (npy) or an owned array (text) */
    cb_npy *npy;      /* the mapping, or NULL for text files */
    void *owned;
} cb_token_file;

cb_status cb_tokens_open(cb_token_file **out, const char *path);
void cb_tokens_close(cb_token_file *f);

static inline int64_t cb_tokens_at(const cb_token_file *f, int64_t i) {
    switch (f->dtype) {
    case CB_U8:
        return ((const uint8_t *)f->data)[i];
    case CB_U16:
        return ((const uint16_t *)f->data)[i];
    case CB_U32:
        return ((const uint32_t *)f->data)[i];
    case CB_I32:
        return ((const int32_t *)f->data)[i];
    default:
        return ((const int64_t *)f->data)[i];
    }
}
/* Copies tokens [start, start + n) into dst, widened to int64 / narrowed to int32 (ids are
 * checked by cb_tokens_validate, not here). The range must lie inside the file. */
void cb_tokens_read_i64(const cb_token_file *f, int64_t start, int64_t n, int64_t *dst);
void cb_tokens_read_i32(const cb_token_file *f, int64_t start, int64_t n, int32_t *dst);
/* Every id in [0, vocab_size) (vocab_size <= 0: [0, 2^31)); the error names the first bad
 * position and value. Reads the whole file once. */
cb_status cb_tokens_validate(const cb_token_file *f, int64_t vocab_size);

/* The smallest dtype holding ids 0..vocab_size-1: CB_U16 up to 65536 ids, else CB_U32. */
cb_dtype cb_tokens_dtype_for_vocab(int64_t vocab_size);

/* Streams a 1-D token .npy: ids are appended, the header gets the final length at commit, and
 * the file appears under its name only then (temp file + fsync + rename). */
typedef struct cb_token_writer cb_token_writer;
cb_status cb_token_writer_open(cb_token_writer **out, const char *path, cb_dtype dtype);
/* Ids must fit the dtype (an error names the id otherwise). */
cb_status cb_token_writer_append(cb_token_writer *w, const int32_t *ids, size_t n);
int64_t cb_token_writer_count(const cb_token_writer *w);
/* Both free w. */
cb_status cb_token_writer_commit(cb_token_writer *w);
void cb_token_writer_abort(cb_token_writer *w);

/* ---- dataset windows ---------------------------------------------------------------------- */

/* Windows over tokens [begin, end) of a file: window i starts at s = begin + i * stride and gives
 * x = tok[s .. s+L-1], y = tok[s+1 .. s+L] (y is x shifted by one). There are
 * (end - begin - L - 1) / stride + 1 windows: with stride 1 every offset is a window (N - L of
 * them); with stride L the windows tile the range without overlap (evaluation). */
typedef struct cb_dataset {
    const cb_token_file *tokens;
    int64_t begin, end;
    int64_t block; /* L */
    int64_t stride;
    int64_t n_windows;
} cb_dataset;

/* Fails when the range holds no window ("block_size must be smaller than data length"). */
cb_status cb_dataset_init(cb_dataset *d, const cb_token_file *f, int64_t begin, int64_t end,
                          int64_t block, int64_t stride);
/* Train / validation split: validation is the last floor(n * val_fraction) tokens, training the
 * rest; training windows use train_stride (1 = every offset), validation windows are
 * non-overlapping (stride = block). val_fraction 0 leaves val empty (n_windows 0). */
cb_status cb_dataset_split(const cb_token_file *f, double val_fraction, int64_t block,
                           int64_t train_stride, cb_dataset *train, cb_dataset *val);
int64_t cb_dataset_window_start(const cb_dataset *d, int64_t i);
/* Window i into x and y (block ids each). */
cb_status cb_dataset_window(const cb_dataset *d, int64_t i, int64_t *x, int64_t *y);
/* Stacks windows[0..B) into x and y: CPU tensors of shape (B, L), dtype CB_I64 or CB_I32. */
cb_status cb_dataset_batch(const cb_dataset *d, const int64_t *windows, int64_t batch, cb_tensor *x,
                           cb_tensor *y);

/* ---- seeded sampling ---------------------------------------------------------------------- */

/* Counter-based: draw k is a pure function of (seed, k), so the whole state is these two
 * numbers. Save them with a checkpoint and restore them to resume bit-exactly. */
typedef struct cb_sampler {
    uint64_t seed;
    uint64_t pos; /* draws made so far */
} cb_sampler;

void cb_sampler_init(cb_sampler *s, uint64_t seed);
/* Uniform in [0, n) (no modulo bias); n >= 1. */
int64_t cb_sampler_next(cb_sampler *s, int64_t n);
/* B = x->shape[0] windows drawn uniformly with replacement. */
cb_status cb_dataset_sample_batch(const cb_dataset *d, cb_sampler *s, cb_tensor *x, cb_tensor *y);

/* The string member `key` of a one-line JSON object (a .jsonl line), decoded to exact UTF-8
 * bytes: "\u0000" gives a NUL byte, a surrogate pair one code point, a lone surrogate U+FFFD.
 * *out is a NUL-terminated heap copy; *out_len excludes the NUL. CB_ERR_FORMAT when the line is
 * not one JSON object or the member is missing or not a string. */
cb_status cb_json_string_field(const char *line, size_t n, const char *key, char **out,
                               size_t *out_len);

/* ---- prepare: text -> tokens -------------------------------------------------------------- */

typedef enum cb_doc_split {
    CB_DOC_FILE = 0,   /* each input file is one document */
    CB_DOC_BLANK_LINE, /* documents are separated by blank lines (data/brown.txt) */
    CB_DOC_LINE,       /* each non-blank line is one document */
} cb_doc_split;

typedef struct cb_prepare_progress {
    int64_t bytes_done, bytes_total, documents, tokens;
    double seconds;
    bool final;
} cb_prepare_progress;

typedef struct cb_prepare_opts {
    const char *tokenizer;     /* as cb_tokenizer_open */
    const char *encoding;      /* or NULL */
    const char *const *inputs; /* files, or directories whose *.txt files are read in name order */
    int n_inputs;
    const char *output;     /* OUT.npy; OUT.meta.json is written beside it */
    cb_doc_split doc_split; /* for text files; a .jsonl file gives one document per line's "text" */
    void (*progress)(void *ctx, const cb_prepare_progress *p); /* optional, about every 1 MB */
    void *progress_ctx;
} cb_prepare_opts;

typedef struct cb_prepare_stats {
    int64_t files, documents, tokens, bytes, vocab_size;
    int32_t separator_id;
    cb_dtype dtype;
    double seconds;
} cb_prepare_stats;

/* Tokenizes every document (special-token text stays plain text), puts the tokenizer's
 * end-of-text id between consecutive documents, writes OUT.npy in the smallest dtype that fits
 * the vocabulary, then OUT.meta.json. Both files are written atomically. */
cb_status cb_prepare_data(const cb_prepare_opts *o, cb_prepare_stats *stats);
/* "OUT.meta.json" for "OUT.npy" (heap string). */
char *cb_prepare_meta_path(const char *output);

#ifdef __cplusplus
}
#endif
#endif
