#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

const char *tu_path(const char *rel) {
    static char bufs[4][4096];
    static int k;
    char *b = bufs[k++ & 3];
    const char *root = getenv("CARAMBA_SOURCE_DIR");
    snprintf(b, 4096, "%s/%s", root ? root : ".", rel);
    return b;
}

const char *tu_tmpdir(void) {
    static char dir[4096];
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/caramba-test-XXXXXX", t ? t : "/tmp");
    if (!mkdtemp(dir)) return NULL;
    return dir;
}

void tu_rmtree(const char *dir) {
    if (!dir || !*dir || strstr(dir, "caramba-test-") == NULL) return;
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

const char *tu_bin(void) { return getenv("CARAMBA_BIN"); }

int tu_run(char *out, size_t out_size, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[8300];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    char tmp[4096];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, p)) > 0) {
        if (out && n + 1 < out_size) {
            size_t c = r < out_size - 1 - n ? r : out_size - 1 - n;
            memcpy(out + n, tmp, c);
            n += c;
        }
    }
    if (out && out_size) out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

double tu_max_abs(const float *a, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}

double tu_max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (isnan(d)) return INFINITY;
        m = fmax(m, d);
    }
    return m;
}

double tu_rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (isnan(num)) return INFINITY;
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

int tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}
