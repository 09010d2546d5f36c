/* Legacy top-level flags (spec-train §1.2): `caramba --manifest M --mode train --data D
 * --resume R --seed S`. Unlike the reference, where they were parsed and ignored ([B3]), they work:
 *   --mode train   runs the manifest's first group (or --group) like `caramba run`, with --data,
 *                  --resume and --seed applied (and --out, an addition)
 *   --mode sample / chat   go to the inference front end (src/cli/legacy_infer.h), which parses
 *                  the whole command line itself (its own flags: --prompt, --temperature, ...)
 *   --exp, --entity, --project   accepted for compatibility; a note says they do nothing
 * Flags take "--flag VALUE" or "--flag=VALUE". A bad choice or unknown flag is a usage error (2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/run_cli.h"

#if defined(__has_include)
#if __has_include("cli/legacy_infer.h")
#include "cli/legacy_infer.h"
#define CB_HAVE_LEGACY_INFER 1
#endif
#endif

static const char *const FLAGS[] = {"manifest", "mode",  "exp",    "data",  "ckpt", "resume",
                                    "seed",     "entity", "project", "group", "out"};
enum { N_FLAGS = sizeof FLAGS / sizeof FLAGS[0] };
/* Flags of the inference modes (src/cli/legacy_infer.h parses them); with --mode train they are
 * an error. */
static const char *const INFER_FLAGS[] = {"device",      "tokenizer",   "encoding", "prompt",
                                          "max-new-tokens", "temperature", "top-k",    "top-p",
                                          "cache-kind",  "max-seq-len"};
enum { N_INFER_FLAGS = sizeof INFER_FLAGS / sizeof INFER_FLAGS[0] };

static bool is_infer_flag(const char *arg) {
    if (strncmp(arg, "--", 2) != 0) return false;
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    for (int i = 0; i < N_INFER_FLAGS; i++)
        if (strlen(INFER_FLAGS[i]) == n && strncmp(INFER_FLAGS[i], name, n) == 0) return true;
    return false;
}

/* The value of --mode in argv ("train" when absent). */
static const char *find_mode(int argc, char **argv) {
    const char *mode = "train";
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "--mode=", 7) == 0) mode = argv[i] + 7;
        else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) mode = argv[++i];
    }
    return mode;
}

static int flag_index(const char *arg, const char **inline_value) {
    *inline_value = NULL;
    if (strncmp(arg, "--", 2) != 0) return -1;
    const char *name = arg + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    for (int i = 0; i < N_FLAGS; i++)
        if (strlen(FLAGS[i]) == n && strncmp(FLAGS[i], name, n) == 0) {
            if (eq) *inline_value = eq + 1;
            return i;
        }
    return -1;
}

bool cb_cli_is_legacy_flag(const char *arg) {
    const char *v;
    return flag_index(arg, &v) >= 0 || is_infer_flag(arg);
}

static void usage(FILE *f) {
    fprintf(f, "usage: caramba [--manifest M] [--mode train|sample|chat] [--data D] [--resume R] "
               "[--seed S] [--ckpt C] [--group NAME] [--out DIR] [--exp E] [--entity X] "
               "[--project X]\n");
}

static bool one_of(const char *v, const char *const *choices, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(v, choices[i]) == 0) return true;
    return false;
}

int cb_cli_legacy(int argc, char **argv) {
    const char *mode0 = find_mode(argc, argv);
    if (strcmp(mode0, "sample") == 0 || strcmp(mode0, "chat") == 0) {
#ifdef CB_HAVE_LEGACY_INFER
        return cb_cli_legacy_infer(argc, argv); /* it parses every flag itself */
#else
        fprintf(stderr, "error: --mode %s is not available in this build (the inference front end "
                        "is not compiled in); use caramba generate\n",
                mode0);
        return 1;
#endif
    }
    const char *val[N_FLAGS] = {0};
    for (int i = 1; i < argc; i++) {
        const char *inl;
        int k = flag_index(argv[i], &inl);
        if (k < 0 && is_infer_flag(argv[i])) {
            usage(stderr);
            fprintf(stderr, "caramba: error: %s only applies to --mode sample or chat\n", argv[i]);
            return 2;
        }
        if (k < 0) {
            usage(stderr);
            fprintf(stderr, "caramba: error: unrecognized argument '%s' (legacy flags come alone; "
                            "subcommands: caramba --help)\n",
                    argv[i]);
            return 2;
        }
        if (!inl) {
            if (i + 1 >= argc) {
                usage(stderr);
                fprintf(stderr, "caramba: error: argument --%s: expected one argument\n", FLAGS[k]);
                return 2;
            }
            inl = argv[++i];
        }
        val[k] = inl;
    }
    static const char *const MODES[] = {"train", "sample", "chat"};
    static const char *const EXPS[] = {"baseline", "gqa", "bottleneck", "decoupled"};
    const char *mode = val[1] ? val[1] : "train";
    if (!one_of(mode, MODES, 3)) {
        usage(stderr);
        fprintf(stderr, "caramba: error: argument --mode: invalid choice: '%s' (choose from 'train', "
                        "'sample', 'chat')\n",
                mode);
        return 2;
    }
    if (val[2] && !one_of(val[2], EXPS, 4)) {
        usage(stderr);
        fprintf(stderr, "caramba: error: argument --exp: invalid choice: '%s' (choose from "
                        "'baseline', 'gqa', 'bottleneck', 'decoupled')\n",
                val[2]);
        return 2;
    }
    long long seed = 0;
    if (val[6]) {
        char *end;
        seed = strtoll(val[6], &end, 10);
        if (!*val[6] || *end) {
            usage(stderr);
            fprintf(stderr, "caramba: error: argument --seed: invalid int value: '%s'\n", val[6]);
            return 2;
        }
    }
    if (val[2]) fprintf(stderr, "note: --exp %s is ignored: the architecture comes from the manifest\n", val[2]);
    if (val[7] || val[8]) fprintf(stderr, "note: --entity / --project are ignored (no W&B client)\n");
    if (val[4]) fprintf(stderr, "note: --ckpt is for --mode sample/chat; training starts from "
                                "train.init_from or resumes with --resume\n");
    const char *manifest = val[0] ? val[0] : "caramba/manifest.json";
    FILE *f = fopen(manifest, "r");
    if (!f) {
        fprintf(stderr, "error: Manifest file not found: %s. Provide --manifest PATH to an existing "
                        "manifest file.\n",
                manifest);
        return 1;
    }
    fclose(f);
    cb_run_cli_opts o = {
        .group = val[9],
        .resume = val[5],
        .out = val[10],
        .data = val[3],
        .has_seed = val[6] != NULL,
        .seed = seed,
    };
    return cb_cli_run_manifest(manifest, &o);
}
