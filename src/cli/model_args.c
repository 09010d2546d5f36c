#include "cli/model_args.h"

#include "cli/args.h"

#include <stdio.h>

#include "caramba/device.h"
#include "caramba/threads.h"

int cb_cli_open_model(const char *model, const char *device, cb_model **out) {
    cb_device dev = CB_CPU;
    if (device && cb_device_parse(device, &dev) != CB_OK) {
        fprintf(stderr, "error: --device: %s\n", cb_last_error());
        return 1;
    }
    cb_threads_init(0);
    if (cb_model_open_hf(out, model, dev) != CB_OK) {
        fprintf(stderr, "error: %s\n", cb_last_error());
        return 1;
    }
    return 0;
}

int cb_cli_open_ids(const char *path, const cb_model *m, cb_npy **npy, cb_tensor *ids) {
    if (cb_npy_open(npy, path) != CB_OK) {
        fprintf(stderr, "error: %s\n", cb_last_error());
        return 1;
    }
    cb_npy *n = *npy;
    if ((n->dtype != CB_I32 && n->dtype != CB_I64) || n->ndim < 1 || n->ndim > 2) {
        fprintf(stderr, "error: %s: ids must be int32 or int64 with shape (B, T) or (T,), got %s with %d dims\n",
                path, cb_dtype_name(n->dtype), n->ndim);
        return 1;
    }
    int64_t shape[2] = {n->ndim == 2 ? n->shape[0] : 1, n->shape[n->ndim - 1]};
    if (shape[0] < 1 || shape[1] < 1) {
        fprintf(stderr, "error: %s: ids are empty\n", path);
        return 1;
    }
    cb_tensor_init(ids, n->dtype, CB_CPU, 2, shape, (void *)n->data);
    for (int64_t i = 0; i < shape[0] * shape[1]; i++) {
        int64_t id = n->dtype == CB_I64 ? ((const int64_t *)n->data)[i] : ((const int32_t *)n->data)[i];
        if (id < 0 || id >= m->vocab_size) {
            fprintf(stderr, "error: %s: token id %lld at index %lld is outside the vocabulary [0, %lld)\n",
                    path, (long long)id, (long long)i, (long long)m->vocab_size);
            return 1;
        }
    }
    return 0;
}

int cb_cli_model_ids_out(cb_cmd_spec *spec, int argc, char **argv, cb_model **m, cb_npy **npy,
                         cb_tensor *ids, const char **out) {
    *m = NULL;
    *npy = NULL;
    const char *pos[1];
    int np, r = cb_args_parse(spec, argc, argv, pos, &np);
    if (r) return r == CB_ARGS_HELP ? 2 : 1;
    const char *model = cb_args_require(spec, "model"), *idsp = cb_args_require(spec, "ids");
    *out = cb_args_require(spec, "out");
    if (!model || !idsp || !*out) return 1;
    if (cb_cli_open_model(model, cb_args_get(spec, "device")->value, m)) return 1;
    return cb_cli_open_ids(idsp, *m, npy, ids);
}
