/* caramba prepare-data: text files -> .npy token file + meta.json (see docs/data.md). */
#include <stdio.h>

#include "cli/commands.h"

int cb_cmd_prepare_data(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "error: caramba prepare-data: not implemented yet\n");
    return 1;
}
