/* caramba: the command-line front end. Dispatches to one file per subcommand (src/cli/cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "caramba/threads.h"
#include "cli/commands.h"
#include "cli/run_cli.h"

static const cb_command commands[] = {
    {"version", cb_cmd_version, "print the version and the compiled-in backends"},
    {"compile", cb_cmd_compile, "parse, lower and validate a manifest; --print-plan shows the graph"},
    {"run", cb_cmd_run, "load a manifest and run one of its groups (--group NAME)"},
    {"logits", cb_cmd_logits, "run a model forward on token ids and write the logits (.npy)"},
    {"grads", cb_cmd_grads, "next-token cross-entropy gradients of every parameter (.safetensors)"},
    {"generate", cb_cmd_generate, "generate tokens with the KV cache (greedy, sampling, speculative)"},
    {"tokenize", cb_cmd_tokenize, "encode text with a tokenizer; print the ids as JSON lines"},
    {"prepare-data", cb_cmd_prepare_data, "tokenize text files into a .npy token file + meta.json"},
};
enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

static void usage(FILE *f) {
    fprintf(f, "usage: caramba COMMAND [ARGS...]\n\n"
               "caramba: a substrate for transformer architecture research.\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'caramba COMMAND --help' for a command's options. Documentation: docs/cli.md\n");
}

int main(int argc, char **argv) {
    cb_blas_tune_reexec(argv);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("caramba 0.1.0\n");
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    /* legacy top-level flags: caramba --manifest M --mode train --data D --resume R --seed S */
    if (cb_cli_is_legacy_flag(argv[1])) return cb_cli_legacy(argc, argv);
    fprintf(stderr, "error: unknown command '%s' (see caramba --help)\n", argv[1]);
    return 1;
}
