/* Every subcommand of the caramba tool: `int cb_cmd_NAME(int argc, char **argv)` where argv[0]
 * is the subcommand's name. Returns the process exit status (0 ok, 1 error). */
#ifndef CARAMBA_CLI_COMMANDS_H
#define CARAMBA_CLI_COMMANDS_H

typedef int (*cb_cmd_fn)(int argc, char **argv);

typedef struct cb_command {
    const char *name;
    cb_cmd_fn fn;
    const char *summary;
} cb_command;

int cb_cmd_version(int argc, char **argv);
int cb_cmd_compile(int argc, char **argv);
int cb_cmd_run(int argc, char **argv);
int cb_cmd_logits(int argc, char **argv);
int cb_cmd_grads(int argc, char **argv);
int cb_cmd_tokenize(int argc, char **argv);
int cb_cmd_prepare_data(int argc, char **argv);
int cb_cmd_generate(int argc, char **argv);

#endif
