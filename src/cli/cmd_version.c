/* caramba version: version, backends and thread count. */
#include <stdio.h>

#include "caramba/device.h"
#include "cli/commands.h"

int cb_cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("caramba 0.1.0\nbackends: cpu%s\n",
#ifdef CARAMBA_CUDA
           cb_device_available(CB_CUDA) ? ", cuda" : ", cuda (built, no device present)"
#else
           ""
#endif
    );
    return 0;
}
