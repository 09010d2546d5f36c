/* caramba grads --model M --ids IDS.npy --out GRADS.safetensors */
#include <stdio.h>
#include <stdlib.h>

#include "caramba/device.h"
#include "caramba/safetensors.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_args.h"

static cb_status write_grads(const cb_model *m, const char *path) {
    cb_named_tensor *nt = calloc((size_t)m->n_params + 1, sizeof *nt);
    if (!nt) return cb_fail(CB_ERR_NOMEM, "gradient list");
    for (int i = 0; i < m->n_params; i++) {
        nt[i].name = m->params[i]->name;
        nt[i].tensor = m->params[i]->t->grad;
    }
    cb_status st = cb_safetensors_write(path, nt, m->n_params, NULL);
    free(nt);
    return st;
}

int cb_cmd_grads(int argc, char **argv) {
    cb_opt opts[] = {
        {.name = "model", .metavar = "M", .help = "Hugging Face model directory or hf://org/name"},
        {.name = "ids", .metavar = "IDS.npy", .help = "token ids, int32 or int64, shape (B, T), T >= 2"},
        {.name = "out", .metavar = "GRADS.safetensors", .help = "where to write the f32 gradients"},
        {.name = "device", .metavar = "DEV", .help = "cpu (default) or cuda"},
    };
    cb_cmd_spec spec = {"grads", "--model M --ids IDS.npy --out GRADS.safetensors [--device DEV]",
                        "Gradients of the mean next-token cross-entropy (positions 0..T-2 predicting "
                        "1..T-1, all rows)\nwith respect to every parameter, keyed by Hugging Face "
                        "names. Prints the loss.",
                        opts, 4, 0, 0};
    cb_model *m = NULL;
    cb_npy *npy = NULL;
    cb_tensor ids;
    const char *out = NULL;
    int rc = cb_cli_model_ids_out(&spec, argc, argv, &m, &npy, &ids, &out);
    if (rc == 2) return 0;
    if (!rc && ids.shape[1] < 2) {
        fprintf(stderr, "error: %s: need at least 2 tokens per row for a next-token loss\n",
                cb_args_get(&spec, "ids")->value);
        rc = 1;
    }
    if (!rc) {
        cb_graph g;
        cb_status st = cb_model_enable_grads(m);
        if (st == CB_OK) st = cb_graph_init(&g, m->device);
        if (st == CB_OK) {
            cb_tensor *loss = cb_model_next_token_loss(m, &g, &ids);
            st = loss ? cb_backward(&g, loss) : CB_ERR_ARG;
            float lv = 0;
            if (st == CB_OK) st = cb_device_copy(CB_CPU, &lv, loss->device, loss->data, sizeof lv);
            if (st == CB_OK) st = write_grads(m, out);
            if (st == CB_OK) printf("loss: %.9g\n", (double)lv);
            cb_graph_free(&g);
        }
        if (st != CB_OK) {
            fprintf(stderr, "error: %s\n", cb_last_error());
            rc = 1;
        }
    }
    cb_npy_close(npy);
    cb_model_free(m);
    return rc;
}
