/* prepare: text files -> one token .npy (documents separated by the end-of-text id) + meta.json. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "caramba/data.h"
#include "caramba/fileio.h"
#include "caramba/tokenizer.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcasecmp(s + n - m, suf) == 0;
}

char *cb_prepare_meta_path(const char *output) {
    size_t n = strlen(output);
    char *p = malloc(n + 16);
    if (!p) return NULL;
    memcpy(p, output, n + 1);
    if (has_suffix(p, ".npy")) p[n - 4] = 0;
    strcat(p, ".meta.json");
    return p;
}

typedef struct file_list {
    char **paths;
    int n, cap;
} file_list;

static cb_status list_add(file_list *l, const char *path) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 16;
        char **p = realloc(l->paths, (size_t)cap * sizeof *p);
        if (!p) return cb_fail(CB_ERR_NOMEM, "out of memory");
        l->paths = p;
        l->cap = cap;
    }
    if (!(l->paths[l->n] = strdup(path))) return cb_fail(CB_ERR_NOMEM, "out of memory");
    l->n++;
    return CB_OK;
}

static void list_free(file_list *l) {
    for (int i = 0; i < l->n; i++) free(l->paths[i]);
    free(l->paths);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A directory contributes its *.txt regular files (not recursive), in byte-wise name order. */
static cb_status expand_input(file_list *l, const char *in) {
    if (!cb_is_dir(in)) {
        if (!cb_file_exists(in)) return cb_fail(CB_ERR_NOTFOUND, "input %s: no such file", in);
        return list_add(l, in);
    }
    DIR *d = opendir(in);
    if (!d) return cb_fail(CB_ERR_IO, "input %s: cannot read the directory", in);
    file_list sub = {0};
    cb_status st = CB_OK;
    struct dirent *e;
    while (st == CB_OK && (e = readdir(d))) {
        if (!has_suffix(e->d_name, ".txt")) continue;
        size_t n = strlen(in) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        if (!p) {
            st = cb_fail(CB_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(p, n, "%s/%s", in, e->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) st = list_add(&sub, p);
        free(p);
    }
    closedir(d);
    if (st == CB_OK && sub.n == 0) st = cb_fail(CB_ERR_NOTFOUND, "input %s: no *.txt files", in);
    if (st == CB_OK) qsort(sub.paths, (size_t)sub.n, sizeof *sub.paths, cmp_str);
    for (int i = 0; st == CB_OK && i < sub.n; i++) st = list_add(l, sub.paths[i]);
    list_free(&sub);
    return st;
}

typedef struct prep {
    const cb_prepare_opts *o;
    cb_tokenizer *tok;
    cb_token_writer *w;
    cb_ids ids;
    cb_prepare_progress prog;
    int64_t next_report;
    double t0;
} prep;

static void report(prep *p, bool final) {
    if (!p->o->progress) return;
    p->prog.seconds = now_s() - p->t0;
    p->prog.final = final;
    p->o->progress(p->o->progress_ctx, &p->prog);
}

static cb_status add_doc(prep *p, const char *text, size_t len, const char *where) {
    p->ids.n = 0;
    if (p->prog.documents > 0) CB_TRY(cb_ids_push(&p->ids, cb_tokenizer_eot_id(p->tok)));
    cb_status st = cb_tokenizer_encode(p->tok, text, len, 0, &p->ids);
    if (st != CB_OK) return cb_fail_context(st, "%s", where);
    CB_TRY(cb_token_writer_append(p->w, p->ids.data, p->ids.n));
    p->prog.documents++;
    p->prog.tokens += (int64_t)p->ids.n;
    return CB_OK;
}

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

static void advance(prep *p, int64_t base, size_t off) {
    p->prog.bytes_done = base + (int64_t)off;
    if (p->prog.bytes_done >= p->next_report) {
        report(p, false);
        p->next_report = p->prog.bytes_done + (1 << 20);
    }
}

static cb_status process_file(prep *p, const char *path, int64_t base) {
    void *map;
    size_t n;
    CB_TRY(cb_map_file(path, &map, &n));
    const char *s = map;
    cb_status st = CB_OK;
    bool jsonl = has_suffix(path, ".jsonl");
    if (!jsonl && p->o->doc_split == CB_DOC_FILE) {
        if (n) st = add_doc(p, s, n, path);
        advance(p, base, n);
        cb_unmap_file(map, n);
        return st;
    }
    size_t line = 0, doc_start = 0, doc_end = 0;
    bool in_doc = false;
    char where[4200];
    for (size_t i = 0; i < n && st == CB_OK;) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t le = nl ? (size_t)(nl - s) : n; /* line is s[i..le) */
        line++;
        bool is_blank = blank(s + i, le - i);
        if (jsonl) {
            if (!is_blank) {
                snprintf(where, sizeof where, "%s:%zu", path, line);
                char *text;
                size_t tlen;
                st = cb_json_string_field(s + i, le - i, "text", &text, &tlen);
                if (st != CB_OK) {
                    st = cb_fail_context(st, "%s: expected a JSON object with a string \"text\"",
                                         where);
                } else {
                    st = add_doc(p, text, tlen, where);
                    free(text);
                }
            }
        } else if (p->o->doc_split == CB_DOC_LINE) {
            size_t e = le;
            if (e > i && s[e - 1] == '\r') e--;
            snprintf(where, sizeof where, "%s:%zu", path, line);
            if (!is_blank) st = add_doc(p, s + i, e - i, where);
        } else { /* blank-line separated: a document runs from its first to its last line */
            if (!is_blank) {
                if (!in_doc) doc_start = i;
                in_doc = true;
                doc_end = le;
            } else if (in_doc) {
                snprintf(where, sizeof where, "%s: document ending at line %zu", path, line - 1);
                st = add_doc(p, s + doc_start, doc_end - doc_start, where);
                in_doc = false;
            }
        }
        i = nl ? le + 1 : n;
        advance(p, base, i);
    }
    if (st == CB_OK && in_doc) {
        snprintf(where, sizeof where, "%s: last document", path);
        st = add_doc(p, s + doc_start, doc_end - doc_start, where);
    }
    cb_unmap_file(map, n);
    return st;
}

static const char *dtype_numpy_name(cb_dtype dt) {
    return dt == CB_U16 ? "uint16" : dt == CB_U32 ? "uint32" : dt == CB_I32 ? "int32" : "int64";
}

static cb_status write_meta(const cb_prepare_opts *o, const cb_tokenizer *tok,
                            const file_list *files, const cb_prepare_stats *s) {
    static const char *const splits[] = {"file", "blank-line", "line"};
    char *meta = cb_prepare_meta_path(o->output);
    cJSON *j = cJSON_CreateObject();
    if (!meta || !j) {
        free(meta);
        cJSON_Delete(j);
        return cb_fail(CB_ERR_NOMEM, "out of memory");
    }
    const char *base = strrchr(o->output, '/');
    cJSON_AddStringToObject(j, "format", "caramba-tokens");
    cJSON_AddNumberToObject(j, "version", 1);
    cJSON_AddStringToObject(j, "tokens_file", base ? base + 1 : o->output);
    cJSON_AddStringToObject(j, "tokenizer", o->tokenizer);
    cJSON_AddStringToObject(j, "tokenizer_name", cb_tokenizer_name(tok));
    if (o->encoding)
        cJSON_AddStringToObject(j, "encoding", o->encoding);
    else
        cJSON_AddNullToObject(j, "encoding");
    cJSON_AddNumberToObject(j, "vocab_size", (double)s->vocab_size);
    cJSON_AddStringToObject(j, "dtype", dtype_numpy_name(s->dtype));
    cJSON_AddNumberToObject(j, "documents", (double)s->documents);
    cJSON_AddNumberToObject(j, "tokens", (double)s->tokens);
    cJSON_AddNumberToObject(j, "separator_id", s->separator_id);
    cJSON_AddStringToObject(j, "separator", "between consecutive documents");
    cJSON_AddStringToObject(j, "doc_split", splits[o->doc_split]);
    cJSON_AddNumberToObject(j, "bytes", (double)s->bytes);
    cJSON *in = cJSON_AddArrayToObject(j, "inputs");
    for (int i = 0; i < files->n; i++)
        cJSON_AddItemToArray(in, cJSON_CreateString(files->paths[i]));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    cb_status st;
    if (!text) {
        st = cb_fail(CB_ERR_NOMEM, "out of memory");
    } else {
        size_t n = strlen(text);
        text[n] = '\n'; /* cJSON_Print's NUL becomes the final newline */
        st = cb_write_file_atomic(meta, text, n + 1);
        cJSON_free(text);
    }
    free(meta);
    return st;
}

cb_status cb_prepare_data(const cb_prepare_opts *o, cb_prepare_stats *stats) {
    memset(stats, 0, sizeof *stats);
    if (!o->output || !*o->output) return cb_fail(CB_ERR_ARG, "prepare-data: no output path");
    if (o->n_inputs <= 0) return cb_fail(CB_ERR_ARG, "prepare-data: no inputs");
    if (o->doc_split < CB_DOC_FILE || o->doc_split > CB_DOC_LINE)
        return cb_fail(CB_ERR_ARG, "prepare-data: bad document split mode");
    prep p = {.o = o, .t0 = now_s()};
    file_list files = {0};
    cb_status st = CB_OK;
    for (int i = 0; st == CB_OK && i < o->n_inputs; i++) st = expand_input(&files, o->inputs[i]);
    for (int i = 0; st == CB_OK && i < files.n; i++) {
        struct stat sb;
        if (stat(files.paths[i], &sb) != 0)
            st = cb_fail(CB_ERR_IO, "%s: cannot stat", files.paths[i]);
        else
            p.prog.bytes_total += (int64_t)sb.st_size;
        if (st == CB_OK && strcmp(files.paths[i], o->output) == 0)
            st = cb_fail(CB_ERR_ARG, "prepare-data: the output %s is also an input", o->output);
    }
    if (st == CB_OK) st = cb_tokenizer_open(&p.tok, o->tokenizer, o->encoding);
    if (st == CB_OK && cb_tokenizer_eot_id(p.tok) < 0)
        st = cb_fail(CB_ERR_ARG, "tokenizer %s has no end-of-text token to separate documents",
                     o->tokenizer);
    p.t0 = now_s(); /* throughput counts encoding, not loading the tokenizer */
    if (st == CB_OK) {
        stats->vocab_size = cb_tokenizer_vocab_size(p.tok);
        stats->dtype = cb_tokens_dtype_for_vocab(stats->vocab_size);
        stats->separator_id = cb_tokenizer_eot_id(p.tok);
        st = cb_token_writer_open(&p.w, o->output, stats->dtype);
    }
    int64_t base = 0;
    for (int i = 0; st == CB_OK && i < files.n; i++) {
        st = process_file(&p, files.paths[i], base);
        struct stat sb;
        if (stat(files.paths[i], &sb) == 0) base += (int64_t)sb.st_size;
    }
    if (p.w) {
        if (st == CB_OK)
            st = cb_token_writer_commit(p.w);
        else
            cb_token_writer_abort(p.w);
    }
    stats->files = files.n;
    stats->documents = p.prog.documents;
    stats->tokens = p.prog.tokens;
    stats->bytes = p.prog.bytes_done;
    if (st == CB_OK) st = write_meta(o, p.tok, &files, stats);
    stats->seconds = now_s() - p.t0;
    if (st == CB_OK) report(&p, true);
    cb_ids_free(&p.ids);
    cb_tokenizer_free(p.tok);
    list_free(&files);
    return st;
}
