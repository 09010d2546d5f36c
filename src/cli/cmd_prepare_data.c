/* caramba prepare-data: text files -> .npy token file + meta.json (see docs/data.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "caramba/data.h"
#include "cli/args.h"
#include "cli/commands.h"

/* A progress bar with throughput on stderr: redrawn in place on a terminal, one final line
 * otherwise (logs stay readable). */
static void progress(void *ctx, const cb_prepare_progress *p) {
    bool tty = *(bool *)ctx;
    if (!tty && !p->final) return;
    double frac = p->bytes_total > 0 ? (double)p->bytes_done / (double)p->bytes_total : 1.0;
    if (frac > 1) frac = 1;
    char bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '-';
    bar[30] = 0;
    double mbps = p->seconds > 0 ? (double)p->bytes_done / p->seconds / 1e6 : 0;
    double ktps = p->seconds > 0 ? (double)p->tokens / p->seconds / 1e3 : 0;
    fprintf(stderr,
            "%sprepare-data [%s] %3.0f%%  %.1f/%.1f MB  %.1f MB/s  %.0fk tok/s  %lld docs  "
            "%lld tokens%s",
            tty ? "\r" : "", bar, frac * 100, (double)p->bytes_done / 1e6,
            (double)p->bytes_total / 1e6, mbps, ktps, (long long)p->documents, (long long)p->tokens,
            p->final ? "\n" : "");
    fflush(stderr);
}

int cb_cmd_prepare_data(int argc, char **argv) {
    cb_opt opts[] = {
        {.name = "tokenizer",
         .metavar = "T",
         .help = "'bytes', a .tiktoken rank file, a tokenizer.json or a directory holding one"},
        {.name = "encoding", .metavar = "E", .help = "encoding of a .tiktoken file (see tokenize)"},
        {.name = "input",
         .metavar = "FILE_OR_DIR",
         .help = "repeatable (extra arguments are inputs too): a text file, a .jsonl file "
                 "({\"text\": ...} per line), or a directory whose *.txt files are read in name "
                 "order"},
        {.name = "output",
         .metavar = "OUT.npy",
         .help = "token file to write (u16 when the vocabulary fits, else u32); OUT.meta.json "
                 "is written beside it"},
        {.name = "docs",
         .metavar = "MODE",
         .help = "documents in a text file: 'file' (default: the whole file is one), "
                 "'blank-line' (separated by blank lines, as data/brown.txt), 'line' (one per "
                 "line)"},
    };
    cb_cmd_spec spec = {"prepare-data",
                        "--tokenizer T [--encoding E] --input FILE_OR_DIR... --output OUT.npy "
                        "[--docs file|blank-line|line]",
                        "Tokenizes documents into one token file, the end-of-text token between "
                        "documents, and writes OUT.meta.json.",
                        opts,
                        sizeof opts / sizeof opts[0],
                        0,
                        4096};
    static const char *pos[4096];
    int n_pos;
    int r = cb_args_parse(&spec, argc, argv, pos, &n_pos);
    if (r == CB_ARGS_HELP) return 0;
    if (r != CB_ARGS_OK) return 1;
    const char *tok = cb_args_require(&spec, "tokenizer");
    const char *out = tok ? cb_args_require(&spec, "output") : NULL;
    if (!tok || !out) return 1;
    cb_opt *in = cb_args_get(&spec, "input");
    static const char *inputs[4096 + 64];
    int n_in = 0;
    for (int i = 0; i < in->n_values; i++) inputs[n_in++] = in->values[i];
    for (int i = 0; i < n_pos; i++) inputs[n_in++] = pos[i];
    if (n_in == 0) {
        fprintf(stderr,
                "error: caramba prepare-data: --input is required (usage: caramba "
                "prepare-data %s)\n",
                spec.synopsis);
        return 1;
    }
    cb_doc_split split = CB_DOC_FILE;
    const char *docs = cb_args_get(&spec, "docs")->value;
    if (docs) {
        if (strcmp(docs, "file") == 0)
            split = CB_DOC_FILE;
        else if (strcmp(docs, "blank-line") == 0)
            split = CB_DOC_BLANK_LINE;
        else if (strcmp(docs, "line") == 0)
            split = CB_DOC_LINE;
        else {
            fprintf(stderr,
                    "error: caramba prepare-data: --docs must be file, blank-line or line "
                    "(got '%s')\n",
                    docs);
            return 1;
        }
    }
    bool tty = isatty(2);
    cb_prepare_opts o = {.tokenizer = tok,
                         .encoding = cb_args_get(&spec, "encoding")->value,
                         .inputs = inputs,
                         .n_inputs = n_in,
                         .output = out,
                         .doc_split = split,
                         .progress = progress,
                         .progress_ctx = &tty};
    cb_prepare_stats s;
    if (cb_prepare_data(&o, &s) != CB_OK) {
        if (tty) fprintf(stderr, "\n");
        fprintf(stderr, "error: caramba prepare-data: %s\n", cb_last_error());
        return 1;
    }
    char *meta = cb_prepare_meta_path(out);
    printf("wrote %s (%lld tokens, %s, %lld documents from %lld files) and %s\n", out,
           (long long)s.tokens, s.dtype == CB_U16 ? "uint16" : "uint32", (long long)s.documents,
           (long long)s.files, meta ? meta : "meta.json");
    free(meta);
    return 0;
}
