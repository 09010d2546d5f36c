/* Checkpoints: one safetensors file, or the shards named by model.safetensors.index.json.
 *
 * All shards are mapped at open; a name index sorted over every shard gives lookups in
 * O(log n) and a stable listing order. The index file is untrusted like the shards: shard names
 * must be plain file names inside the checkpoint's directory. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/fileio.h"
#include "caramba/hf.h"
#include "caramba/safetensors.h"

#define CK_MAX_INDEX_BYTES ((size_t)64 << 20)

typedef struct ck_item {
    const char *name; /* owned by the shard's entry */
    int shard;
    const cb_st_entry *e;
} ck_item;

struct cb_checkpoint {
    char *path; /* the file or index the checkpoint was opened from (for messages) */
    int n_shards;
    cb_safetensors **shards;
    ck_item *items; /* sorted by name */
    int n_items;
};

static int cmp_item(const void *a, const void *b) {
    return strcmp(((const ck_item *)a)->name, ((const ck_item *)b)->name);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

void cb_checkpoint_close(cb_checkpoint *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->n_shards; i++) cb_safetensors_close(ck->shards[i]);
    free(ck->shards);
    free(ck->items);
    free(ck->path);
    free(ck);
}

/* Builds the sorted name index over all shards; a name in two shards is an error. */
static cb_status ck_build_index(cb_checkpoint *ck) {
    size_t total = 0;
    for (int s = 0; s < ck->n_shards; s++) total += (size_t)ck->shards[s]->n_entries;
    if (total > INT32_MAX) return cb_fail(CB_ERR_FORMAT, "%s: too many tensors", ck->path);
    ck->items = calloc(total ? total : 1, sizeof *ck->items);
    if (!ck->items) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", ck->path);
    for (int s = 0; s < ck->n_shards; s++)
        for (int i = 0; i < ck->shards[s]->n_entries; i++) {
            ck_item *it = &ck->items[ck->n_items++];
            it->e = &ck->shards[s]->entries[i];
            it->name = it->e->name;
            it->shard = s;
        }
    qsort(ck->items, (size_t)ck->n_items, sizeof *ck->items, cmp_item);
    for (int i = 1; i < ck->n_items; i++)
        if (strcmp(ck->items[i - 1].name, ck->items[i].name) == 0)
            return cb_fail(CB_ERR_FORMAT, "%s: tensor '%s' appears in two shards, %s and %s",
                           ck->path, ck->items[i].name, ck->shards[ck->items[i - 1].shard]->path,
                           ck->shards[ck->items[i].shard]->path);
    return CB_OK;
}

static cb_status ck_add_shard(cb_checkpoint *ck, const char *file) {
    cb_safetensors **grown = realloc(ck->shards, (size_t)(ck->n_shards + 1) * sizeof *grown);
    if (!grown) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", ck->path);
    ck->shards = grown;
    CB_TRY(cb_safetensors_open(&ck->shards[ck->n_shards], file));
    ck->n_shards++;
    return CB_OK;
}

/* A shard name from the index must name a file directly inside the index's directory. */
static cb_status ck_check_shard_name(const char *index, const char *tensor, const char *shard) {
    if (!shard[0] || strchr(shard, '/') || strchr(shard, '\\') || strcmp(shard, ".") == 0 ||
        strcmp(shard, "..") == 0 || strstr(shard, ".."))
        return cb_fail(CB_ERR_FORMAT,
                       "%s: weight_map entry '%s' names shard '%s', which is not a plain file name "
                       "inside the checkpoint directory",
                       index, tensor, shard);
    if (ends_with(shard, ".index.json"))
        return cb_fail(CB_ERR_FORMAT, "%s: shard '%s' is an index file, expected a tensor file",
                       index, shard);
    return CB_OK;
}

static cb_status ck_open_index(cb_checkpoint *ck, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    CB_TRY(cb_read_file(index_path, CK_MAX_INDEX_BYTES, &text, &len));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    int trailing = 0;
    for (size_t i = root ? (size_t)(end - text) : len; i < len; i++)
        if (!strchr(" \t\r\n", text[i]) || !text[i]) trailing = 1;
    free(text);
    cb_status s = CB_OK;
    const char **names = NULL;
    char *dir = NULL;
    if (!root || trailing) {
        s = cb_fail(CB_ERR_FORMAT, "%s: not valid JSON%s", index_path,
                    root ? " (trailing garbage after the object)" : "");
        goto out;
    }
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        s = cb_fail(CB_ERR_FORMAT, "%s: invalid index file: missing 'weight_map' object",
                    index_path);
        goto out;
    }
    int n = cJSON_GetArraySize(wm);
    names = calloc(n ? (size_t)n : 1, sizeof *names);
    if (!names) {
        s = cb_fail(CB_ERR_NOMEM, "%s: out of memory", index_path);
        goto out;
    }
    int k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, wm) {
        if (!cJSON_IsString(it)) {
            s = cb_fail(CB_ERR_FORMAT, "%s: weight_map entry '%s' must be a shard file name",
                        index_path, it->string);
            goto out;
        }
        s = ck_check_shard_name(index_path, it->string, it->valuestring);
        if (s != CB_OK) goto out;
        names[k++] = it->valuestring;
    }
    if (k == 0) {
        s = cb_fail(CB_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto out;
    }
    /* Distinct shard names, opened in sorted order. */
    qsort(names, (size_t)k, sizeof *names, cmp_str);
    dir = strdup(index_path);
    if (!dir) {
        s = cb_fail(CB_ERR_NOMEM, "%s: out of memory", index_path);
        goto out;
    }
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    for (int i = 0; i < k && s == CB_OK; i++) {
        if (i && strcmp(names[i], names[i - 1]) == 0) continue;
        char *file = join_path(dir, names[i]);
        if (!file) {
            s = cb_fail(CB_ERR_NOMEM, "%s: out of memory", index_path);
            break;
        }
        if (!cb_file_exists(file))
            s = cb_fail(CB_ERR_NOTFOUND, "%s: shard '%s' named in weight_map does not exist (%s)",
                        index_path, names[i], file);
        else
            s = ck_add_shard(ck, file);
        free(file);
    }
    if (s == CB_OK) s = ck_build_index(ck);
    /* The index must agree with the shards it names. */
    cJSON_ArrayForEach(it, wm) {
        if (s != CB_OK) break;
        const char *file = NULL;
        const cb_st_entry *e = cb_checkpoint_find(ck, it->string, &file);
        const char *base = file ? strrchr(file, '/') : NULL;
        base = base ? base + 1 : file;
        if (!e || strcmp(base, it->valuestring) != 0)
            s = cb_fail(CB_ERR_FORMAT, "%s: weight_map puts tensor '%s' in %s, but it is %s",
                        index_path, it->string, it->valuestring,
                        e ? "in another shard" : "not there");
    }
out:
    free(dir);
    free(names);
    cJSON_Delete(root);
    return s;
}

cb_status cb_checkpoint_open(cb_checkpoint **out, const char *path) {
    if (!out || !path) return cb_fail(CB_ERR_ARG, "cb_checkpoint_open: NULL argument");
    *out = NULL;
    char resolved[4096];
    if (strncmp(path, "hf://", 5) == 0) {
        CB_TRY(cb_hf_resolve(path, resolved, sizeof resolved));
        path = resolved;
    }
    cb_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck) return cb_fail(CB_ERR_NOMEM, "out of memory");
    cb_status s;
    int index = 0;
    if (cb_is_dir(path)) {
        /* transformers prefers the single file when both are present */
        ck->path = join_path(path, "model.safetensors");
        if (ck->path && !cb_file_exists(ck->path)) {
            free(ck->path);
            ck->path = join_path(path, "model.safetensors.index.json");
            index = 1;
            if (ck->path && !cb_file_exists(ck->path)) {
                cb_checkpoint_close(ck);
                return cb_fail(CB_ERR_NOTFOUND,
                               "%s: directory holds neither model.safetensors nor "
                               "model.safetensors.index.json",
                               path);
            }
        }
    } else if (cb_file_exists(path)) {
        ck->path = strdup(path);
        index = ends_with(path, ".index.json");
    } else {
        free(ck);
        return cb_fail(CB_ERR_NOTFOUND, "%s: no such checkpoint file or directory", path);
    }
    if (!ck->path) {
        free(ck);
        return cb_fail(CB_ERR_NOMEM, "out of memory");
    }
    if (index) {
        s = ck_open_index(ck, ck->path);
    } else {
        s = ck_add_shard(ck, ck->path);
        if (s == CB_OK) s = ck_build_index(ck);
    }
    if (s != CB_OK) {
        cb_checkpoint_close(ck);
        return s;
    }
    *out = ck;
    return CB_OK;
}

const cb_st_entry *cb_checkpoint_find(const cb_checkpoint *ck, const char *name,
                                      const char **file) {
    if (file) *file = NULL;
    if (!ck || !name || !ck->items) return NULL;
    ck_item key = {.name = name};
    const ck_item *it = bsearch(&key, ck->items, (size_t)ck->n_items, sizeof key, cmp_item);
    if (!it) return NULL;
    if (file) *file = ck->shards[it->shard]->path;
    return it->e;
}

int cb_checkpoint_count(const cb_checkpoint *ck) {
    return ck ? ck->n_items : 0;
}

const char *cb_checkpoint_name(const cb_checkpoint *ck, int i) {
    if (!ck || i < 0 || i >= ck->n_items) return NULL;
    return ck->items[i].name;
}

cb_status cb_checkpoint_load(const cb_checkpoint *ck, const char *name, cb_tensor *dst) {
    if (!ck || !name || !dst) return cb_fail(CB_ERR_ARG, "cb_checkpoint_load: NULL argument");
    const char *file = NULL;
    const cb_st_entry *e = cb_checkpoint_find(ck, name, &file);
    if (!e) return cb_fail(CB_ERR_NOTFOUND, "%s: tensor '%s' not found", ck->path, name);
    char want[96], have[96];
    if (dst->ndim != e->ndim || memcmp(dst->shape, e->shape, sizeof(int64_t) * (size_t)e->ndim))
        return cb_fail(CB_ERR_SHAPE, "%s: tensor '%s' has shape %s but the model expects %s", file,
                       name, cb_dims_str(e->ndim, e->shape, have, sizeof have),
                       cb_shape_str(dst, want, sizeof want));
    int sf = cb_dtype_is_float(e->dtype), df = cb_dtype_is_float(dst->dtype);
    if (sf != df || cb_dtype_block(dst->dtype) != 1)
        return cb_fail(CB_ERR_UNSUPPORTED,
                       "%s: tensor '%s' is %s and cannot be loaded into a %s "
                       "tensor",
                       file, name, cb_dtype_name(e->dtype), cb_dtype_name(dst->dtype));
    if (!dst->data && e->nbytes)
        return cb_fail(CB_ERR_ARG, "%s: tensor '%s': destination has no storage", file, name);
    /* Files from other writers may leave a tensor off its natural alignment: stage a copy so the
     * conversion loops read aligned elements. */
    const void *data = e->data;
    void *aligned = NULL;
    if (e->nbytes && (uintptr_t)data % cb_dtype_size(e->dtype) != 0) {
        aligned = malloc(e->nbytes);
        if (!aligned) return cb_fail(CB_ERR_NOMEM, "%s: tensor '%s': out of memory", file, name);
        memcpy(aligned, data, e->nbytes);
        data = aligned;
    }
    cb_tensor src;
    cb_status s = cb_tensor_init(&src, e->dtype, CB_CPU, e->ndim, e->shape, (void *)data);
    if (s == CB_OK && e->nbytes) s = cb_tensor_copy(dst, &src);
    free(aligned);
    if (s != CB_OK) return cb_fail_context(s, "%s: tensor '%s'", file, name);
    return CB_OK;
}
