/* Finds and loads the CUDA plugin (see ops/cuda_api.h). The loaded table is process-wide
 * configuration, set once under pthread_once. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/cuda_api.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static const cb_cuda_api *api;
static char load_error[1024];

static void *try_open(const char *path) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(load_error, sizeof load_error, "%s", dlerror());
    return h;
}

static void load(void) {
    void *h = NULL;
    const char *env = getenv("CARAMBA_CUDA_PLUGIN");
    if (env && *env) h = try_open(env);
    if (!h) { /* next to libcaramba.so */
        Dl_info info;
        if (dladdr((void *)cb_cuda_api_get, &info) && info.dli_fname) {
            char path[4096];
            snprintf(path, sizeof path, "%s", info.dli_fname);
            char *slash = strrchr(path, '/');
            if (slash) {
                snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "libcaramba_cuda.so");
                h = try_open(path);
            }
        }
    }
    if (!h) h = try_open("libcaramba_cuda.so");
    if (!h) return;
    const cb_cuda_api *(*entry)(void) = (const cb_cuda_api *(*)(void))dlsym(h, "cb_cuda_plugin_api");
    const cb_cuda_api *a = entry ? entry() : NULL;
    if (!a || a->version != CB_CUDA_API_VERSION) {
        snprintf(load_error, sizeof load_error, "libcaramba_cuda.so does not match this libcaramba");
        return;
    }
    api = a;
}

const cb_cuda_api *cb_cuda_api_get(void) {
    pthread_once(&once, load);
    if (!api) {
        cb_fail(CB_ERR_UNSUPPORTED, "no CUDA backend: %s", load_error[0] ? load_error : "plugin not found");
        return NULL;
    }
    if (!api->available()) return NULL; /* the plugin left the reason */
    return api;
}
