/* safetensors files: read (mmap, bounds-checked header) and write (atomic).
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data section. Offsets are relative to the data section. The reader treats the file as
 * hostile: header length past the end, bad JSON, unknown dtypes, offsets out of range, overlapping
 * or mis-sized ranges are all errors naming the file (and tensor). */
#ifndef CARAMBA_SAFETENSORS_H
#define CARAMBA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "caramba/status.h"
#include "caramba/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cb_st_entry {
    char *name;
    cb_dtype dtype; /* F32, BF16, F16, I32, I64, U16, U32, U8 are supported */
    int ndim;
    int64_t shape[CB_MAX_DIMS];
    const void *data; /* points into the mapping; aligned to the element size only when the
                       * writer aligned it (caramba's writer and Hugging Face's do) */
    size_t nbytes;
} cb_st_entry;

typedef struct cb_safetensors {
    char *path;
    void *map;
    size_t map_size;
    cb_st_entry *entries;
    int n_entries;
    char *metadata_json; /* the "__metadata__" object re-serialised, or NULL */
} cb_safetensors;

cb_status cb_safetensors_open(cb_safetensors **out, const char *path);
/* Parses an in-memory image (used by the fuzzer); the buffer must outlive the result. */
cb_status cb_safetensors_parse(cb_safetensors **out, const void *buf, size_t size,
                               const char *name_for_errors);
/* Entries are sorted by name; lookup is a binary search. NULL (no error set) when absent. */
const cb_st_entry *cb_safetensors_find(const cb_safetensors *st, const char *name);
/* Copies the "__metadata__" value of key into out (NUL-terminated); CB_ERR_NOTFOUND if absent. */
cb_status cb_safetensors_metadata_get(const cb_safetensors *st, const char *key, char *out,
                                      size_t n);
void cb_safetensors_close(cb_safetensors *st);

typedef struct cb_named_tensor {
    const char *name;
    const cb_tensor *tensor; /* any device; copied to the host as needed */
} cb_named_tensor;

/* Writes tensors (dtype kept) to path atomically: temp file in the same directory, fsync,
 * rename. metadata_kv: NULL-terminated list of key, value strings for "__metadata__" (or NULL). */
cb_status cb_safetensors_write(const char *path, const cb_named_tensor *tensors, int n,
                               const char *const *metadata_kv);

/* A checkpoint: one .safetensors file, a directory holding model.safetensors, or a directory
 * with model.safetensors.index.json naming shards. Tensors are looked up by name across shards. */
typedef struct cb_checkpoint cb_checkpoint;

cb_status cb_checkpoint_open(cb_checkpoint **out, const char *path);
void cb_checkpoint_close(cb_checkpoint *ck);
/* Finds a tensor; returns NULL (no error set) when absent. *file receives the shard's path. */
const cb_st_entry *cb_checkpoint_find(const cb_checkpoint *ck, const char *name, const char **file);
/* Loads tensor `name` into dst (shape must match exactly; dtype converted to dst's dtype; dst may
 * live on any device). Errors name the file and tensor, and print both shapes on a mismatch. */
cb_status cb_checkpoint_load(const cb_checkpoint *ck, const char *name, cb_tensor *dst);
int cb_checkpoint_count(const cb_checkpoint *ck);
/* i-th tensor name over all shards (stable order). */
const char *cb_checkpoint_name(const cb_checkpoint *ck, int i);

#ifdef __cplusplus
}
#endif
#endif
