/* Tokenizer encode throughput, single thread, against js-tiktoken and llama3-tokenizer-js in the
 * same run on the same machine (see BENCHMARKS.md: speed is a ratio against a peer).
 *
 *   bench_tokenizer [--sample FILE] [--seconds S] [--json OUT.json] [--npm-dir DIR] [--no-peer]
 *
 * Run from the repository root (or set CARAMBA_SOURCE_DIR). The peers are the npm packages the
 * reference encodings came from (js-tiktoken 1.0.21, llama3-tokenizer-js 1.2.0); they are
 * installed with npm into --npm-dir (default build/npm, git-ignored) when missing and run by
 * bench/tokenizer_peer.js. "cold" clears caramba's caches (pieces; pairs for tiktoken files)
 * before every pass, so each pass starts as a freshly opened tokenizer would (repeats within the
 * text are still cached, as in any encode); "warm" keeps them between passes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caramba/fileio.h"
#include "caramba/tokenizer.h"
#include "tokenizer/tok_internal.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint32_t checksum(const cb_ids *ids) {
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < ids->n; i++) {
        h ^= (uint32_t)ids->data[i];
        h *= 0x01000193u;
    }
    return h;
}

typedef struct row {
    char name[64];
    double mbps, warm_mbps, load_ms;
    size_t tokens;
    uint32_t sum;
    int ok;
} row;

static void clear_cache(cb_tokenizer *t) {
    tok_strmap_clear(&t->cache);
    t->cache_n = 0;
    if (t->rank_merges) tok_pairmap_free(&t->merges); /* tiktoken mode memoises pairs there */
}

static int bench_caramba(row *r, const char *name, const char *path, const char *text, size_t n,
                         double seconds) {
    snprintf(r->name, sizeof r->name, "caramba %s", name);
    double t0 = now_s();
    cb_tokenizer *tok;
    if (cb_tokenizer_open(&tok, path, NULL) != CB_OK) {
        fprintf(stderr, "error: %s\n", cb_last_error());
        return 1;
    }
    r->load_ms = (now_s() - t0) * 1e3;
    cb_ids ids = {0};
    for (int pass = 0; pass < 2; pass++) {
        bool cold = pass == 0;
        int reps = 0;
        double start = now_s(), dt;
        do {
            if (cold) clear_cache(tok);
            ids.n = 0;
            if (cb_tokenizer_encode(tok, text, n, 0, &ids) != CB_OK) {
                fprintf(stderr, "error: %s\n", cb_last_error());
                return 1;
            }
            reps++;
            dt = now_s() - start;
        } while (dt < seconds);
        double mbps = (double)n * reps / dt / 1e6;
        if (cold)
            r->mbps = mbps;
        else
            r->warm_mbps = mbps;
    }
    r->tokens = ids.n;
    r->sum = checksum(&ids);
    r->ok = 1;
    cb_ids_free(&ids);
    cb_tokenizer_free(tok);
    return 0;
}

static int peer_installed(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/node_modules/js-tiktoken/package.json", dir);
    if (!cb_file_exists(p)) return 0;
    snprintf(p, sizeof p, "%s/node_modules/llama3-tokenizer-js/package.json", dir);
    return cb_file_exists(p);
}

/* Runs the node peer; fills rows[0..1]. Returns the number of rows read. */
static int run_peer(row *rows, const char *root, const char *npm_dir, const char *sample,
                    double seconds) {
    if (system("node --version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "peer: node not found (make bench installs nodejs and npm)\n");
        return 0;
    }
    char cmd[9000];
    if (!peer_installed(npm_dir)) {
        fprintf(stderr, "peer: installing js-tiktoken and llama3-tokenizer-js into %s\n", npm_dir);
        snprintf(cmd, sizeof cmd,
                 "mkdir -p '%s' && npm install --no-save --no-audit --no-fund --silent --prefix "
                 "'%s' js-tiktoken@1.0.21 llama3-tokenizer-js@1.2.0 >&2",
                 npm_dir, npm_dir);
        if (system(cmd) != 0 || !peer_installed(npm_dir)) {
            fprintf(stderr, "peer: npm install failed\n");
            return 0;
        }
    }
    snprintf(cmd, sizeof cmd, "node '%s/bench/tokenizer_peer.js' '%s' '%s' %g", root, npm_dir,
             sample, seconds);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[1024];
    int n = 0;
    while (n < 2 && fgets(line, sizeof line, p)) {
        row *r = &rows[n];
        char *nm = strstr(line, "\"name\":\"");
        char *tk = strstr(line, "\"tokens\":");
        char *cs = strstr(line, "\"checksum\":");
        char *mb = strstr(line, "\"mb_per_s\":");
        if (!nm || !tk || !cs || !mb) continue;
        nm += 8;
        char *end = strchr(nm, '"');
        snprintf(r->name, sizeof r->name, "%.*s", (int)(end - nm), nm);
        r->tokens = strtoull(tk + 9, NULL, 10);
        r->sum = (uint32_t)strtoull(cs + 11, NULL, 10);
        r->mbps = strtod(mb + 11, NULL);
        r->warm_mbps = r->mbps;
        r->ok = 1;
        n++;
    }
    if (pclose(p) != 0) fprintf(stderr, "peer: node exited with an error\n");
    return n;
}

int main(int argc, char **argv) {
    const char *root = getenv("CARAMBA_SOURCE_DIR");
    if (!root) root = ".";
    char sample[4200], npm_dir[4200], cl100k[4200], llama3[4200];
    snprintf(sample, sizeof sample, "%s/tests/data/tokenizers/brown_sample.txt", root);
    snprintf(npm_dir, sizeof npm_dir, "%s/build/npm", root);
    const char *json = NULL;
    double seconds = 2;
    int peer = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sample") && i + 1 < argc)
            snprintf(sample, sizeof sample, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else if (!strcmp(argv[i], "--npm-dir") && i + 1 < argc)
            snprintf(npm_dir, sizeof npm_dir, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--no-peer"))
            peer = 0;
        else {
            fprintf(stderr, "usage: bench_tokenizer [--sample FILE] [--seconds S] [--json OUT] "
                            "[--npm-dir DIR] [--no-peer]\n");
            return 2;
        }
    }
    snprintf(cl100k, sizeof cl100k, "%s/tests/data/tokenizers/cl100k_base.tiktoken", root);
    snprintf(llama3, sizeof llama3, "%s/tests/data/tokenizers/llama3_tokenizer.json", root);
    char *text;
    size_t n;
    if (cb_read_file(sample, 1u << 30, &text, &n) != CB_OK) {
        fprintf(stderr, "error: %s\n", cb_last_error());
        return 1;
    }
    /* The machine may be shared: the peer runs before and after caramba and the table shows
     * the mean of its two measurements, so slow drift in the load does not bias the ratio. */
    row rows[4], after[2];
    memset(rows, 0, sizeof rows);
    memset(after, 0, sizeof after);
    int np = peer ? run_peer(rows + 2, root, npm_dir, sample, seconds) : 0;
    if (bench_caramba(&rows[0], "cl100k_base", cl100k, text, n, seconds) ||
        bench_caramba(&rows[1], "llama3", llama3, text, n, seconds))
        return 1;
    if (np && run_peer(after, root, npm_dir, sample, seconds) == np)
        for (int i = 0; i < np; i++) {
            rows[2 + i].mbps = (rows[2 + i].mbps + after[i].mbps) / 2;
            rows[2 + i].warm_mbps = rows[2 + i].mbps;
        }

    double base = np >= 1 ? rows[2].mbps : 0;
    printf("tokenizer encode, 1 thread, %s (%zu bytes), %g s per measurement%s\n\n", sample, n,
           seconds, np ? "; peers: mean of a run before and one after caramba's" : "");
    printf("| encoder | tokens | MB/s (cold cache) | MB/s (warm cache) | vs js-tiktoken | vs "
           "same-encoding peer |\n");
    printf("|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < 2 + np; i++) {
        const row *r = &rows[i];
        const row *same = i < 2 && np > i ? &rows[2 + i] : NULL;
        char vs_js[32] = "-", vs_peer[32] = "-";
        if (base > 0) snprintf(vs_js, sizeof vs_js, "%.1fx", r->mbps / base);
        if (same) snprintf(vs_peer, sizeof vs_peer, "%.1fx", r->mbps / same->mbps);
        printf("| %s | %zu | %.2f | %.2f | %s | %s |\n", r->name, r->tokens, r->mbps, r->warm_mbps,
               vs_js, vs_peer);
    }
    int mismatch = 0;
    for (int i = 0; i < np && i < 2; i++)
        if (rows[i].tokens != rows[2 + i].tokens || rows[i].sum != rows[2 + i].sum) {
            printf("\nMISMATCH: %s and %s give different ids\n", rows[i].name, rows[2 + i].name);
            mismatch = 1;
        }
    if (np == 2 && !mismatch) printf("\nids identical to the peers' (count and FNV-1a checksum)\n");
    printf("load: cl100k_base %.0f ms, llama3 tokenizer.json %.0f ms\n", rows[0].load_ms,
           rows[1].load_ms);
    if (json) {
        FILE *f = fopen(json, "w");
        if (f) {
            fprintf(f, "{\"bench\": \"tokenizer\", \"sample_bytes\": %zu, \"rows\": [", n);
            for (int i = 0; i < 2 + np; i++)
                fprintf(f,
                        "%s{\"name\": \"%s\", \"tokens\": %zu, \"mb_per_s\": %.4f, "
                        "\"warm_mb_per_s\": %.4f}",
                        i ? ", " : "", rows[i].name, rows[i].tokens, rows[i].mbps,
                        rows[i].warm_mbps);
            fprintf(f, "]}\n");
            fclose(f);
        }
    }
    free(text);
    return mismatch;
}
