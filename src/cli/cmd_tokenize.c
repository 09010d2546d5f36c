/* caramba tokenize: text -> token ids as JSON lines (see docs/tokenizers.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caramba/data.h"
#include "caramba/fileio.h"
#include "caramba/tokenizer.h"
#include "cli/args.h"
#include "cli/commands.h"

static void print_ids(FILE *out, const cb_ids *ids) {
    fputs("{\"ids\": [", out);
    char buf[16];
    for (size_t i = 0; i < ids->n; i++) {
        int n = 0;
        uint32_t v = (uint32_t)ids->data[i];
        char tmp[12];
        do {
            tmp[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        int k = 0;
        if (i) {
            buf[k++] = ',';
            buf[k++] = ' ';
        }
        while (n) buf[k++] = tmp[--n];
        fwrite(buf, 1, (size_t)k, out);
    }
    fputs("]}\n", out);
}

static int fail(const char *what) {
    fprintf(stderr, "error: caramba tokenize: %s\n", what);
    return 1;
}

static int encode_jsonl(cb_tokenizer *tok, const char *path, unsigned flags) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: caramba tokenize: %s: cannot open\n", path);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    size_t lineno = 0;
    int rc = 0;
    cb_ids ids = {0};
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)len;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' ||
                     line[n - 1] == '\t'))
            n--;
        size_t s = 0;
        while (s < n && (line[s] == ' ' || line[s] == '\t')) s++;
        if (s == n) continue;
        char *text;
        size_t tlen;
        if (cb_json_string_field(line + s, n - s, "text", &text, &tlen) != CB_OK) {
            fprintf(stderr,
                    "error: caramba tokenize: %s:%zu: expected a JSON object with a string "
                    "\"text\" (%s)\n",
                    path, lineno, cb_last_error());
            rc = 1;
            break;
        }
        ids.n = 0;
        cb_status st = cb_tokenizer_encode(tok, text, tlen, flags, &ids);
        free(text);
        if (st != CB_OK) {
            fprintf(stderr, "error: caramba tokenize: %s:%zu: %s\n", path, lineno, cb_last_error());
            rc = 1;
            break;
        }
        print_ids(stdout, &ids);
    }
    if (rc == 0 && ferror(f)) rc = fail("read error");
    free(line);
    cb_ids_free(&ids);
    if (f != stdin) fclose(f);
    return rc;
}

int cb_cmd_tokenize(int argc, char **argv) {
    cb_opt opts[] = {
        {.name = "tokenizer",
         .metavar = "PATH",
         .help = "'bytes', a .tiktoken rank file, a tokenizer.json or a directory holding one"},
        {.name = "encoding",
         .metavar = "NAME",
         .help = "for a .tiktoken file: cl100k_base, o200k_base, p50k_base, r50k_base, llama3, or "
                 "an encoding .json (default: FILE.json beside it, else the file's name)"},
        {.name = "text-file",
         .metavar = "FILE",
         .help =
             "encode the whole file (any bytes; '-' = stdin); prints one line {\"ids\": [...]}"},
        {.name = "jsonl",
         .metavar = "FILE",
         .help = "one {\"text\": ...} object per line ('-' = stdin): one {\"ids\": [...]} line "
                 "per input line, in order; blank lines are skipped"},
        {.name = "bos", .help = "prepend the beginning-of-text token(s)"},
        {.name = "eos", .help = "append the end-of-text token"},
        {.name = "allow-special",
         .help = "encode special-token text such as <|endoftext|> as its id (default: as plain "
                 "text)"},
    };
    cb_cmd_spec spec = {"tokenize",
                        "--tokenizer PATH [--encoding NAME] (--text-file FILE | --jsonl FILE) "
                        "[--bos] [--eos] [--allow-special]",
                        "Encodes text with a tokenizer and prints the ids as JSON lines on stdout.",
                        opts,
                        sizeof opts / sizeof opts[0],
                        0,
                        0};
    const char *pos[1];
    int n_pos;
    int r = cb_args_parse(&spec, argc, argv, pos, &n_pos);
    if (r == CB_ARGS_HELP) return 0;
    if (r != CB_ARGS_OK) return 1;
    const char *path = cb_args_require(&spec, "tokenizer");
    if (!path) return 1;
    const char *text_file = cb_args_get(&spec, "text-file")->value;
    const char *jsonl = cb_args_get(&spec, "jsonl")->value;
    if (!!text_file == !!jsonl) return fail("give exactly one of --text-file and --jsonl");
    unsigned flags = (cb_args_get(&spec, "bos")->present ? CB_TOK_BOS : 0) |
                     (cb_args_get(&spec, "eos")->present ? CB_TOK_EOS : 0) |
                     (cb_args_get(&spec, "allow-special")->present ? CB_TOK_ALLOW_SPECIAL : 0);
    cb_tokenizer *tok;
    if (cb_tokenizer_open(&tok, path, cb_args_get(&spec, "encoding")->value) != CB_OK)
        return fail(cb_last_error());
    int rc = 0;
    if (jsonl) {
        rc = encode_jsonl(tok, jsonl, flags);
    } else {
        void *map = NULL;
        char *buf = NULL;
        size_t size = 0;
        cb_ids ids = {0};
        cb_status st = CB_OK;
        if (strcmp(text_file, "-") == 0) { /* all of stdin */
            size_t cap = 0;
            for (;;) {
                if (size == cap) {
                    char *p = realloc(buf, cap = cap ? cap * 2 : 1 << 16);
                    if (!p) {
                        st = cb_fail(CB_ERR_NOMEM, "out of memory reading stdin");
                        break;
                    }
                    buf = p;
                }
                size_t got = fread(buf + size, 1, cap - size, stdin);
                size += got;
                if (got == 0) break;
            }
            if (st == CB_OK && ferror(stdin)) st = cb_fail(CB_ERR_IO, "cannot read stdin");
        } else {
            st = cb_map_file(text_file, &map, &size);
        }
        if (st == CB_OK) st = cb_tokenizer_encode(tok, buf ? buf : map, size, flags, &ids);
        if (st == CB_OK)
            print_ids(stdout, &ids);
        else
            rc = fail(cb_last_error());
        if (map) cb_unmap_file(map, size);
        free(buf);
        cb_ids_free(&ids);
    }
    cb_tokenizer_free(tok);
    if (fflush(stdout) != 0 && rc == 0) rc = fail("cannot write to stdout");
    return rc;
}
