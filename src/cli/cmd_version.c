/* caramba version: version, backends and thread count. */
#include <stdio.h>

#include "caramba/device.h"
#include "cli/commands.h"

int cb_cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    int cuda = cb_device_available(CB_CUDA);
    printf("caramba 0.1.0\nbackends: cpu%s\n", cuda ? ", cuda" : "");
    if (!cuda) printf("cuda: %s\n", cb_last_error());
    return 0;
}
