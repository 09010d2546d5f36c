/* caramba logits --model M --ids IDS.npy --out LOGITS.npy */
#include <stdio.h>

#include "caramba/npy.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/model_args.h"

int cb_cmd_logits(int argc, char **argv) {
    cb_opt opts[] = {
        {.name = "model", .metavar = "M", .help = "Hugging Face model directory or hf://org/name"},
        {.name = "ids", .metavar = "IDS.npy", .help = "token ids, int32 or int64, shape (B, T)"},
        {.name = "out", .metavar = "LOGITS.npy", .help = "where to write the f32 logits (B, T, V)"},
        {.name = "device", .metavar = "DEV", .help = "cpu (default) or cuda"},
    };
    cb_cmd_spec spec = {"logits", "--model M --ids IDS.npy --out LOGITS.npy [--device DEV]",
                        "Runs the model forward on the ids and writes the logits of every position.",
                        opts, 4, 0, 0};
    cb_model *m = NULL;
    cb_npy *npy = NULL;
    cb_tensor ids;
    const char *out = NULL;
    int rc = cb_cli_model_ids_out(&spec, argc, argv, &m, &npy, &ids, &out);
    if (rc == 2) return 0;
    if (!rc) {
        cb_graph g;
        cb_status st = cb_graph_init(&g, m->device);
        if (st == CB_OK) {
            cb_graph_set_grad(&g, false);
            cb_tensor *logits = cb_model_forward(m, &g, &ids, NULL);
            st = logits ? cb_npy_write(out, logits) : CB_ERR_ARG;
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
