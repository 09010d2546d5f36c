/* Tokenizers against reference encodings made by js-tiktoken (cl100k_base) and
 * llama3-tokenizer-js (llama3), see tests/data/tokenizers/PROVENANCE.md; round trips on any bytes;
 * special tokens; and broken tokenizer files. */
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caramba/fileio.h"
#include "caramba/tokenizer.h"
#include "testutil.h"
#include "tokenizer/tok_json.h"

#define TOKDIR "tests/data/tokenizers/"

typedef struct ref_case {
    char *text;
    size_t len;
    cb_ids cl100k, llama3;
} ref_case;

static ref_case *g_cases;
static int g_n_cases;
static cb_tokenizer *g_cl100k, *g_llama3;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void json_ids(const cJSON *arr, cb_ids *out) {
    assert_true(cJSON_IsArray(arr));
    for (const cJSON *e = arr->child; e; e = e->next)
        assert_int_equal(cb_ids_push(out, (int32_t)e->valuedouble), CB_OK);
}

static int setup(void **state) {
    (void)state;
    char *data;
    size_t len;
    if (cb_read_file(tu_path(TOKDIR "reference_encodings.jsonl"), 64 << 20, &data, &len) != CB_OK)
        return -1;
    int cap = 64;
    g_cases = calloc((size_t)cap, sizeof *g_cases);
    for (char *line = data; line < data + len;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        if (ll) {
            cJSON *j = cJSON_ParseWithLength(line, ll);
            if (!j) return -1;
            if (g_n_cases == cap) {
                cap *= 2;
                g_cases = realloc(g_cases, (size_t)cap * sizeof *g_cases);
            }
            ref_case *c = &g_cases[g_n_cases++];
            memset(c, 0, sizeof *c);
            const cJSON *text = cJSON_GetObjectItem(j, "text");
            c->text = strdup(text->valuestring);
            c->len = strlen(c->text);
            json_ids(cJSON_GetObjectItem(j, "cl100k_base"), &c->cl100k);
            json_ids(cJSON_GetObjectItem(j, "llama3"), &c->llama3);
            cJSON_Delete(j);
        }
        line += ll + 1;
    }
    free(data);
    double t0 = now_s();
    if (cb_tokenizer_open(&g_cl100k, tu_path(TOKDIR "cl100k_base.tiktoken"), NULL) != CB_OK) {
        fprintf(stderr, "%s\n", cb_last_error());
        return -1;
    }
    double t1 = now_s();
    if (cb_tokenizer_open(&g_llama3, tu_path(TOKDIR "llama3_tokenizer.json"), NULL) != CB_OK) {
        fprintf(stderr, "%s\n", cb_last_error());
        return -1;
    }
    double t2 = now_s();
    fprintf(stderr,
            "loaded %d reference texts; cl100k_base in %.0f ms, llama3 tokenizer.json in "
            "%.0f ms\n",
            g_n_cases, (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < g_n_cases; i++) {
        free(g_cases[i].text);
        cb_ids_free(&g_cases[i].cl100k);
        cb_ids_free(&g_cases[i].llama3);
    }
    free(g_cases);
    cb_tokenizer_free(g_cl100k);
    cb_tokenizer_free(g_llama3);
    return 0;
}

static void check_roundtrip(const cb_tokenizer *tok, const cb_ids *ids, const char *text,
                            size_t len) {
    char *back;
    size_t blen;
    assert_int_equal(cb_tokenizer_decode(tok, ids->data, ids->n, 0, &back, &blen), CB_OK);
    assert_int_equal(blen, len);
    assert_memory_equal(back, text, len);
    free(back);
}

static void expect_ids(cb_tokenizer *tok, const ref_case *c, const cb_ids *want, int index) {
    cb_ids got = {0};
    assert_int_equal(cb_tokenizer_encode(tok, c->text, c->len, 0, &got), CB_OK);
    size_t n = got.n < want->n ? got.n : want->n;
    size_t first = n;
    for (size_t i = 0; i < n; i++)
        if (got.data[i] != want->data[i]) {
            first = i;
            break;
        }
    if (got.n != want->n || first != n)
        fail_msg("%s, text %d: %zu ids (want %zu), first difference at %zu", cb_tokenizer_name(tok),
                 index, got.n, want->n, first);
    check_roundtrip(tok, &got, c->text, c->len);
    cb_ids_free(&got);
}

static void test_cl100k_reference(void **state) {
    (void)state;
    assert_string_equal(cb_tokenizer_name(g_cl100k), "cl100k_base");
    for (int i = 0; i < g_n_cases; i++) expect_ids(g_cl100k, &g_cases[i], &g_cases[i].cl100k, i);
    assert_int_equal(cb_tokenizer_eot_id(g_cl100k), 100257);
    assert_int_equal(cb_tokenizer_vocab_size(g_cl100k), 100277);
}

/* The built-in cl100k_base definition gives the same ids, and its pattern and special tokens are
 * exactly those of the fixture's cl100k_base.json. */
static void test_cl100k_builtin(void **state) {
    (void)state;
    cb_tokenizer *tok;
    assert_int_equal(cb_tokenizer_open(&tok, tu_path(TOKDIR "cl100k_base.tiktoken"), "cl100k_base"),
                     CB_OK);
    for (int i = 0; i < g_n_cases; i++) expect_ids(tok, &g_cases[i], &g_cases[i].cl100k, i);
    char *json;
    size_t len;
    assert_int_equal(cb_read_file(tu_path(TOKDIR "cl100k_base.json"), 1 << 20, &json, &len), CB_OK);
    cJSON *j = cJSON_Parse(json);
    const cJSON *sp = cJSON_GetObjectItem(j, "special_tokens");
    int n = 0;
    for (const cJSON *e = sp->child; e; e = e->next, n++) {
        assert_int_equal(cb_tokenizer_token_id(tok, e->string, strlen(e->string)),
                         (int32_t)e->valuedouble);
        assert_true(cb_tokenizer_is_special(tok, (int32_t)e->valuedouble));
    }
    assert_int_equal(n, 5);
    cJSON_Delete(j);
    free(json);
    cb_tokenizer_free(tok);
}

static void test_llama3_reference(void **state) {
    (void)state;
    for (int i = 0; i < g_n_cases; i++) expect_ids(g_llama3, &g_cases[i], &g_cases[i].llama3, i);
    assert_int_equal(cb_tokenizer_vocab_size(g_llama3), 128256);
    assert_int_equal(cb_tokenizer_eot_id(g_llama3), 128001);
    assert_int_equal(cb_tokenizer_bos_id(g_llama3), 128000);
    /* BOS from the TemplateProcessing post-processor, EOS on request */
    cb_ids ids = {0};
    assert_int_equal(cb_tokenizer_encode(g_llama3, "Hello", 5, CB_TOK_BOS | CB_TOK_EOS, &ids),
                     CB_OK);
    assert_int_equal(ids.n, 3);
    assert_int_equal(ids.data[0], 128000);
    assert_int_equal(ids.data[1], 9906); /* "Hello" */
    assert_int_equal(ids.data[2], 128001);
    char *s;
    size_t n;
    assert_int_equal(cb_tokenizer_decode(g_llama3, ids.data, ids.n, CB_TOK_SKIP_SPECIAL, &s, &n),
                     CB_OK);
    assert_string_equal(s, "Hello");
    free(s);
    assert_int_equal(cb_tokenizer_decode(g_llama3, ids.data, ids.n, 0, &s, &n), CB_OK);
    assert_string_equal(s, "<|begin_of_text|>Hello<|end_of_text|>");
    free(s);
    cb_ids_free(&ids);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64(FILE *f, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
                     (i + 2 < n ? s[i + 2] : 0);
        fputc(B64[w >> 18], f);
        fputc(B64[(w >> 12) & 63], f);
        fputc(i + 1 < n ? B64[(w >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? B64[w & 63] : '=', f);
    }
}

/* The llama3 vocabulary written as a tiktoken rank file (rank = id) and opened with the built-in
 * "llama3" encoding: tiktoken's rank semantics must give llama3-tokenizer-js's ids too, and the
 * built-in special tokens must be the tokenizer.json's added tokens. */
static void test_llama3_tiktoken(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/meta_llama3.tiktoken", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int32_t id = 0; id < 128000; id++) {
        const char *b;
        size_t n;
        assert_int_equal(cb_tokenizer_token_bytes(g_llama3, id, &b, &n), CB_OK);
        b64(f, (const uint8_t *)b, n);
        fprintf(f, " %d\n", id);
    }
    fclose(f);
    cb_tokenizer *tok;
    /* the stem names no encoding and there is no .json beside it */
    assert_int_equal(cb_tokenizer_open(&tok, path, NULL), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "cannot tell which encoding"));
    assert_int_equal(cb_tokenizer_open(&tok, path, "llama3"), CB_OK);
    for (int i = 0; i < g_n_cases; i++) expect_ids(tok, &g_cases[i], &g_cases[i].llama3, i);
    for (int32_t id = 128000; id < 128256; id++) {
        const char *a, *b;
        size_t na, nb;
        assert_int_equal(cb_tokenizer_token_bytes(g_llama3, id, &a, &na), CB_OK);
        assert_int_equal(cb_tokenizer_token_bytes(tok, id, &b, &nb), CB_OK);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, na);
        assert_true(cb_tokenizer_is_special(tok, id));
    }
    assert_int_equal(cb_tokenizer_eot_id(tok), 128001);
    assert_int_equal(cb_tokenizer_bos_id(tok), 128000);
    assert_int_equal(cb_tokenizer_vocab_size(tok), 128256);
    /* the wrong encoding for this file: the rank count gives it away */
    cb_tokenizer *bad;
    assert_int_equal(cb_tokenizer_open(&bad, path, "cl100k_base"), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "128000 ranks"));
    cb_tokenizer_free(tok);
    tu_rmtree(dir);
}

static void check_all_roundtrip(const char *text, size_t len) {
    cb_tokenizer *toks[2] = {g_cl100k, g_llama3};
    for (int k = 0; k < 2; k++) {
        cb_ids ids = {0};
        assert_int_equal(cb_tokenizer_encode(toks[k], text, len, 0, &ids), CB_OK);
        check_roundtrip(toks[k], &ids, text, len);
        cb_ids_free(&ids);
        assert_int_equal(cb_tokenizer_encode(toks[k], text, len, CB_TOK_ALLOW_SPECIAL, &ids),
                         CB_OK);
        check_roundtrip(toks[k], &ids, text, len);
        cb_ids_free(&ids);
    }
}

static void test_invalid_utf8(void **state) {
    (void)state;
    static const char *const texts[] = {
        "\xff",
        "\xfe\xff abc",
        "caf\xc3 ok",                  /* truncated 2-byte sequence */
        "\xe2\x82 euro cut",           /* truncated 3-byte sequence */
        "surrogate \xed\xa0\x80 here", /* UTF-16 surrogate encoded in UTF-8 */
        "overlong \xc0\xaf slash",
        "\x80\x80\x80 continuation bytes \x80",
        "emoji cut \xf0\x9f\x98",
        "ok \xf4\x90\x80\x80 beyond U+10FFFF",
        "  \xff  \n\xfe\r\n",
        "<|endoftext|>\xff<|endoftext|>",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        check_all_roundtrip(texts[i], strlen(texts[i]));
    /* embedded NUL bytes */
    check_all_roundtrip("a\0b\0\0 c", 7);
    /* random byte strings */
    uint64_t x = 0x243f6a8885a308d3ull;
    char buf[512];
    for (int r = 0; r < 300; r++) {
        size_t n = (size_t)(r * 7 % 500) + 1;
        for (size_t i = 0; i < n; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            uint8_t b = (uint8_t)(x >> 56);
            /* mostly ASCII and multi-byte leads, to exercise the regex paths */
            buf[i] = (char)(r % 3 == 0 ? b : (b & 0x80 ? b : (uint8_t)(' ' + b % 95)));
        }
        check_all_roundtrip(buf, n);
    }
}

/* Edge cases beyond the reference file: every one must survive a round trip, and the pieces must
 * cover all the text (checked by decode). */
static void test_roundtrip_edge_cases(void **state) {
    (void)state;
    static const char *const texts[] = {
        "",
        " ",
        "\n",
        "\r\n\r\n",
        "\t\t\t",
        "                                        x",
        "a                                                                               ",
        "\xef\xbb\xbf"
        "BOM at the start",
        "NEL\xc2\x85next",
        "zero\xe2\x80\x8bwidth",
        "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb family emoji",
        "1234567890123",
        "x=1+2*3/4",
        "don't WON'T y'all 'S",
        "\xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac",
        "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82",
        "<|endoftext|>",
        "<|endoftext",
        "<|begin_of_text|>hi<|eot_id|>",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        check_all_roundtrip(texts[i], strlen(texts[i]));
    /* a very long piece (one run of letters) must not be quadratic or overflow */
    size_t n = getenv("CARAMBA_SANITIZED") ? 50000 : 200000;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + (i * 7 + i / 13) % 26);
    double t0 = now_s();
    check_all_roundtrip(big, n);
    for (size_t i = 0; i < n; i++) big[i] = ' ';
    check_all_roundtrip(big, n);
    fprintf(stderr, "two %zu KB single-piece texts, both tokenizers, twice: %.2f s\n", n / 1000,
            now_s() - t0);
    free(big);
}

static void test_special_tokens(void **state) {
    (void)state;
    const char *text = "Hello<|endoftext|> world<|fim_prefix|>";
    cb_ids plain = {0}, allowed = {0}, parts = {0};
    assert_int_equal(cb_tokenizer_encode(g_cl100k, text, strlen(text), 0, &plain), CB_OK);
    for (size_t i = 0; i < plain.n; i++) assert_true(plain.data[i] < 100256);
    assert_int_equal(
        cb_tokenizer_encode(g_cl100k, text, strlen(text), CB_TOK_ALLOW_SPECIAL, &allowed), CB_OK);
    assert_int_equal(cb_tokenizer_encode(g_cl100k, "Hello", 5, 0, &parts), CB_OK);
    assert_int_equal(cb_ids_push(&parts, 100257), CB_OK);
    assert_int_equal(cb_tokenizer_encode(g_cl100k, " world", 6, 0, &parts), CB_OK);
    assert_int_equal(cb_ids_push(&parts, 100258), CB_OK);
    assert_int_equal(allowed.n, parts.n);
    assert_memory_equal(allowed.data, parts.data, parts.n * sizeof(int32_t));
    check_roundtrip(g_cl100k, &allowed, text, strlen(text));
    check_roundtrip(g_cl100k, &plain, text, strlen(text));
    /* refusing, like tiktoken's encode(): a clear error, and out is left as it was */
    cb_ids refused = {0};
    assert_int_equal(cb_ids_push(&refused, 7), CB_OK);
    assert_int_equal(
        cb_tokenizer_encode(g_cl100k, text, strlen(text), CB_TOK_REFUSE_SPECIAL, &refused),
        CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "<|endoftext|>"));
    assert_int_equal(refused.n, 1);
    /* BOS on a tokenizer without one is an error */
    assert_int_equal(cb_tokenizer_encode(g_cl100k, "x", 1, CB_TOK_BOS, &refused), CB_ERR_ARG);
    assert_int_equal(cb_tokenizer_encode(g_cl100k, "x", 1, CB_TOK_EOS, &refused), CB_OK);
    assert_int_equal(refused.data[refused.n - 1], 100257);
    /* llama3: the same rules for its 256 specials */
    cb_ids l = {0};
    const char *chat = "<|start_header_id|>user<|end_header_id|>";
    assert_int_equal(cb_tokenizer_encode(g_llama3, chat, strlen(chat), CB_TOK_ALLOW_SPECIAL, &l),
                     CB_OK);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.data[0], 128006);
    assert_int_equal(l.data[2], 128007);
    cb_ids_free(&l);
    assert_int_equal(cb_tokenizer_encode(g_llama3, chat, strlen(chat), 0, &l), CB_OK);
    assert_true(l.n > 3);
    for (size_t i = 0; i < l.n; i++) assert_true(l.data[i] < 128000);
    cb_ids_free(&l);
    cb_ids_free(&plain);
    cb_ids_free(&allowed);
    cb_ids_free(&parts);
    cb_ids_free(&refused);
}

static void test_decode_errors(void **state) {
    (void)state;
    char *s;
    size_t n;
    int32_t bad[] = {5, -1};
    assert_int_equal(cb_tokenizer_decode(g_cl100k, bad, 2, 0, &s, &n), CB_ERR_ARG);
    assert_non_null(strstr(cb_last_error(), "id -1 at position 1"));
    int32_t gap[] = {100256}; /* between the ranks and the specials */
    assert_int_equal(cb_tokenizer_decode(g_cl100k, gap, 1, 0, &s, &n), CB_ERR_ARG);
    int32_t big[] = {128256};
    assert_int_equal(cb_tokenizer_decode(g_llama3, big, 1, 0, &s, &n), CB_ERR_ARG);
    assert_null(s);
}

static void test_bytes_tokenizer(void **state) {
    (void)state;
    cb_tokenizer *tok;
    assert_int_equal(cb_tokenizer_open(&tok, "bytes", NULL), CB_OK);
    assert_int_equal(cb_tokenizer_vocab_size(tok), 258);
    assert_int_equal(cb_tokenizer_eot_id(tok), 256);
    assert_int_equal(cb_tokenizer_bos_id(tok), 257);
    const char text[] = "h\xffi<|endoftext|>";
    cb_ids ids = {0};
    assert_int_equal(cb_tokenizer_encode(tok, text, sizeof text - 1, CB_TOK_BOS | CB_TOK_EOS, &ids),
                     CB_OK);
    assert_int_equal(ids.n, 2 + sizeof text - 1);
    assert_int_equal(ids.data[0], 257);
    assert_int_equal(ids.data[1], 'h');
    assert_int_equal(ids.data[2], 0xff);
    assert_int_equal(ids.data[ids.n - 1], 256);
    cb_ids_free(&ids);
    assert_int_equal(cb_tokenizer_encode(tok, text, sizeof text - 1, CB_TOK_ALLOW_SPECIAL, &ids),
                     CB_OK);
    assert_int_equal(ids.n, 4);
    assert_int_equal(ids.data[3], 256);
    check_roundtrip(tok, &ids, text, sizeof text - 1);
    cb_ids_free(&ids);
    cb_tokenizer_free(tok);
    assert_int_equal(cb_tokenizer_open(&tok, "bytes", "cl100k_base"), CB_ERR_ARG);
}

/* ---- broken files ------------------------------------------------------------------------- */

static cb_status open_text(const char *dir, const char *name, const char *content, size_t len,
                           const char *encoding) {
    char path[4200];
    assert_true(snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path);
    assert_int_equal(tu_write_file(path, content, len), 0);
    cb_tokenizer *tok = (cb_tokenizer *)1;
    cb_status st = cb_tokenizer_open(&tok, path, encoding);
    if (st == CB_OK)
        cb_tokenizer_free(tok);
    else
        assert_null(tok);
    return st;
}

static void expect_msg(const char *needle) {
    if (!strstr(cb_last_error(), needle))
        fail_msg("message '%s' lacks '%s'", cb_last_error(), needle);
}

static void test_bad_tiktoken(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char *data;
    size_t len;
    assert_int_equal(cb_read_file(tu_path(TOKDIR "cl100k_base.tiktoken"), 64 << 20, &data, &len),
                     CB_OK);
    /* cut in the middle of a line */
    assert_int_equal(open_text(dir, "cut.tiktoken", data, len / 2, "cl100k_base"), CB_ERR_FORMAT);
    expect_msg("truncated");
    /* cut at a line end: the rank count no longer matches the encoding */
    size_t at = len / 2;
    while (data[at - 1] != '\n') at--;
    assert_int_equal(open_text(dir, "short.tiktoken", data, at, "cl100k_base"), CB_ERR_FORMAT);
    expect_msg("ranks, but encoding cl100k_base has 100256");
    free(data);
    const struct {
        const char *text, *needle;
    } cases[] = {
        {"IQ== 0\nIg== 1\nI*== 2\n", "cut.tiktoken:3: bad base64"},
        {"IQ== 0\nIg==1\n", "cut.tiktoken:2: expected 'BASE64 RANK'"},
        {"IQ== 0\nIg== x1\n", "cut.tiktoken:2: bad rank"},
        {"IQ== 0\nIg== 0\n", "cut.tiktoken:2: token id 0 is defined twice"},
        {"IQ== 0\nIQ== 1\n", "same bytes"},
        {"IQ== 99999999999\n", "bad rank"},
        {"", "empty rank file"},
        {"IQ= 0\n", "bad base64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_not_equal(
            open_text(dir, "cut.tiktoken", cases[i].text, strlen(cases[i].text), "r50k_base"),
            CB_OK);
        expect_msg(cases[i].needle);
    }
    /* all 256 bytes present, but the encoding name is unknown */
    assert_int_equal(open_text(dir, "cut.tiktoken", "IQ== 0\n", 7, "cl99k"), CB_ERR_ARG);
    expect_msg("unknown encoding 'cl99k'");
    /* a name with no file */
    cb_tokenizer *tok;
    assert_int_equal(cb_tokenizer_open(&tok, "cl100k_base", NULL), CB_ERR_NOTFOUND);
    expect_msg("need their rank file");
    tu_rmtree(dir);
}

/* A small byte-level BPE tokenizer.json: the 256 byte tokens (in GPT-2's alphabet) plus extra
 * tokens and merges given by the caller. */
static char *mini_json(const char *extra_vocab, const char *merges, const char *pre,
                       const char *extra) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n,
                          "{\"version\": \"1.0\", \"normalizer\": null, %s "
                          "\"pre_tokenizer\": %s, \"model\": {\"type\": \"BPE\", "
                          "\"ignore_merges\": true, \"vocab\": {",
                          extra, pre);
    int id = 0, k = 0;
    for (int b = 0; b < 256; b++) { /* id b is byte b */
        bool printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        int cp = printable ? b : 256 + k++;
        char u[4];
        if (cp < 0x80) {
            u[0] = (char)cp;
            u[1] = 0;
        } else {
            u[0] = (char)(0xc0 | cp >> 6);
            u[1] = (char)(0x80 | (cp & 0x3f));
            u[2] = 0;
        }
        if (cp == '"' || cp == '\\')
            n += (size_t)snprintf(s + n, cap - n, "\"\\%s\": %d, ", u, id++);
        else
            n += (size_t)snprintf(s + n, cap - n, "\"%s\": %d, ", u, id++);
    }
    if (!*extra_vocab) n -= 2; /* drop the last ", " */
    n += (size_t)snprintf(s + n, cap - n, "%s}, \"merges\": [%s]}}", extra_vocab, merges);
    return s;
}

static void test_bad_tokenizer_json(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    char *data;
    size_t len;
    assert_int_equal(cb_read_file(tu_path(TOKDIR "llama3_tokenizer.json"), 64 << 20, &data, &len),
                     CB_OK);
    assert_int_equal(open_text(dir, "cut.json", data, len / 3, NULL), CB_ERR_FORMAT);
    expect_msg("not valid JSON");
    expect_msg("truncated?");
    free(data);
    static const char BL[] =
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}";
    char *ok = mini_json("\"ab\": 256", "\"a b\"", BL, "");
    assert_int_equal(open_text(dir, "ok.json", ok, strlen(ok), NULL), CB_OK);
    assert_int_equal(open_text(dir, "ok.json", ok, strlen(ok), "cl100k_base"), CB_ERR_ARG);
    /* a model directory holding tokenizer.json */
    char model[4200];
    snprintf(model, sizeof model, "%s/model", dir);
    assert_int_equal(cb_mkdirs(model), CB_OK);
    cb_tokenizer *tok;
    assert_int_equal(cb_tokenizer_open(&tok, model, NULL), CB_ERR_NOTFOUND);
    expect_msg("directory has no tokenizer.json");
    assert_int_equal(open_text(model, "tokenizer.json", ok, strlen(ok), NULL), CB_OK);
    assert_int_equal(cb_tokenizer_open(&tok, model, NULL), CB_OK);
    assert_string_equal(cb_tokenizer_name(tok), "tokenizer.json");
    cb_ids ids = {0};
    assert_int_equal(cb_tokenizer_encode(tok, "abab", 4, 0, &ids), CB_OK);
    assert_int_equal(ids.n, 2);
    assert_int_equal(ids.data[0], 256);
    assert_int_equal(ids.data[1], 256);
    cb_ids_free(&ids);
    cb_tokenizer_free(tok);
    free(ok);
    /* added tokens not marked special are always recognised, special ones only when allowed */
    ok = mini_json("", "", BL,
                   "\"added_tokens\": [{\"id\": 300, \"content\": \"xyz\", \"special\": false}, "
                   "{\"id\": 301, \"content\": \"<s>\", \"special\": true}],");
    assert_int_equal(open_text(model, "tokenizer.json", ok, strlen(ok), NULL), CB_OK);
    free(ok);
    assert_int_equal(cb_tokenizer_open(&tok, model, NULL), CB_OK);
    assert_int_equal(cb_tokenizer_encode(tok, "axyz<s>", 7, 0, &ids), CB_OK);
    int32_t plain[] = {'a', 300, '<', 's', '>'};
    assert_int_equal(ids.n, 5);
    assert_memory_equal(ids.data, plain, sizeof plain);
    ids.n = 0;
    assert_int_equal(cb_tokenizer_encode(tok, "axyz<s>", 7, CB_TOK_ALLOW_SPECIAL, &ids), CB_OK);
    int32_t allowed[] = {'a', 300, 301};
    assert_int_equal(ids.n, 3);
    assert_memory_equal(ids.data, allowed, sizeof allowed);
    cb_ids_free(&ids);
    cb_tokenizer_free(tok);
    const struct {
        const char *vocab, *merges, *pre, *extra, *needle;
    } cases[] = {
        {"\"ab\": 256", "\"a c\"", BL, "", "merge of 'a' and 'c' is not in the vocabulary"},
        {"\"ab\": 256", "\"a zz\"", BL, "", "'a' or 'zz' is not in the vocabulary"},
        {"\"ab\": 256", "\"ab\"", BL, "", "not two tokens separated by one space"},
        {"\"ab\": 256", "7", BL, "", "merges[0] must be"},
        {"\"ab\": -3", "", BL, "", "model.vocab[\"ab\"] must be an id"},
        {"\"a b\": 256", "", BL, "", "not in the byte-level alphabet"},
        {"\"ab\": 5", "", BL, "", "token id 5 is defined twice"},
        {"", "", "null", "", "no ByteLevel pre-tokenizer"},
        {"", "", "{\"type\": \"Whitespace\"}", "", "pre-tokenizer type 'Whitespace'"},
        {"", "",
         "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}", "",
         "does not compile"},
        {"", "", "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"x\"}, \"behavior\": \"Odd\"}",
         "", "behavior must be"},
        {"", "", BL, "\"added_tokens\": [{\"id\": 300}],", "added_tokens[0] needs"},
        {"", "", BL,
         "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
         "[{\"SpecialToken\": {\"id\": \"<s>\"}}], \"special_tokens\": {\"<s>\": "
         "{\"ids\": [999]}}},",
         "names id 999"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *j = mini_json(cases[i].vocab, cases[i].merges, cases[i].pre, cases[i].extra);
        assert_int_not_equal(open_text(dir, "bad.json", j, strlen(j), NULL), CB_OK);
        expect_msg(cases[i].needle);
        free(j);
    }
    const struct {
        const char *text, *needle;
    } whole[] = {
        {"[1, 2]", "not a tokenizer.json object"},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model.type 'WordPiece'"},
        {"{\"normalizer\": {\"type\": \"NFC\"}, \"model\": {}}", "normalizer 'NFC'"},
        {"{\"pre_tokenizer\": null}", "missing \"model\""},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         "no token for the byte 0x00"},
    };
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        assert_int_not_equal(open_text(dir, "bad.json", whole[i].text, strlen(whole[i].text), NULL),
                             CB_OK);
        expect_msg(whole[i].needle);
    }
    tu_rmtree(dir);
}

/* Split behaviours, with the example of Hugging Face's SplitDelimiterBehavior documentation:
 * "the-final--countdown" split on "-". ignore_merges makes each piece that is a token come out
 * whole, so the ids show the pieces. */
static void test_split_behaviours(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    const char *vocab = "\"the\": 256, \"final\": 257, \"countdown\": 258, \"--\": 259, "
                        "\"the-\": 260, \"final-\": 261, \"-final\": 262, \"-countdown\": 263";
    const struct {
        const char *behaviour;
        int32_t want[8];
        int n;
    } cases[] = {
        {"Removed", {256, 257, 258}, 3},
        {"Isolated", {256, '-', 257, '-', '-', 258}, 6},
        {"MergedWithPrevious", {260, 261, '-', 258}, 4},
        {"MergedWithNext", {256, 262, '-', 263}, 4},
        {"Contiguous", {256, '-', 257, 259, 258}, 5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char pre[512];
        snprintf(pre, sizeof pre,
                 "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
                 "{\"String\": \"-\"}, \"behavior\": \"%s\", \"invert\": false}, {\"type\": "
                 "\"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}",
                 cases[i].behaviour);
        char *j = mini_json(vocab, "", pre, "");
        char path[4200];
        snprintf(path, sizeof path, "%s/split.json", dir);
        assert_int_equal(tu_write_file(path, j, strlen(j)), 0);
        free(j);
        cb_tokenizer *tok;
        if (cb_tokenizer_open(&tok, path, NULL) != CB_OK) fail_msg("%s", cb_last_error());
        cb_ids ids = {0};
        const char *text = "the-final--countdown";
        assert_int_equal(cb_tokenizer_encode(tok, text, strlen(text), 0, &ids), CB_OK);
        /* mini_json numbers the byte tokens by byte value: '-' is id 45 */
        if (ids.n != (size_t)cases[i].n ||
            memcmp(ids.data, cases[i].want, ids.n * sizeof(int32_t)) != 0)
            fail_msg("%s: got %zu ids", cases[i].behaviour, ids.n);
        if (strcmp(cases[i].behaviour, "Removed") != 0)
            check_roundtrip(tok, &ids, text, strlen(text));
        cb_ids_free(&ids);
        cb_tokenizer_free(tok);
    }
    tu_rmtree(dir);
}

/* A whitespace run of millions of bytes: \s*[\r\n]+ backtracks over all of it once, beyond
 * PCRE2's default match limit; the split must still succeed (no merges here, so BPE is cheap). */
static void test_long_whitespace(void **state) {
    (void)state;
    const char *dir = tu_tmpdir();
    const char *pre =
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
        "\"pattern\": {\"Regex\": \"\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+|\\\\S+\"}, "
        "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "
        "\"add_prefix_space\": false, \"use_regex\": false}]}";
    char *j = mini_json("", "", pre, "");
    char path[4200];
    snprintf(path, sizeof path, "%s/ws.json", dir);
    assert_int_equal(tu_write_file(path, j, strlen(j)), 0);
    free(j);
    cb_tokenizer *tok;
    if (cb_tokenizer_open(&tok, path, NULL) != CB_OK) fail_msg("%s", cb_last_error());
    double t0 = now_s();
    size_t n = 12u << 20;
    char *text = malloc(n);
    memset(text, ' ', n - 1);
    text[n - 1] = 'x';
    cb_ids ids = {0};
    if (cb_tokenizer_encode(tok, text, n, 0, &ids) != CB_OK) fail_msg("%s", cb_last_error());
    assert_int_equal(ids.n, n);
    check_roundtrip(tok, &ids, text, n);
    fprintf(stderr, "12 MB whitespace run: %.2f s\n", now_s() - t0);
    cb_ids_free(&ids);
    free(text);
    cb_tokenizer_free(tok);
    tu_rmtree(dir);
}

/* The tokenizer files' JSON reader (src/tokenizer/tok_json.c). */
static void test_json_reader(void **state) {
    (void)state;
    const char *text = " {\"a\": [1, -2.5e1, true, false, null, \"x\\u0000y\", {}, []],\n"
                       "  \"b\": {\"c\": \"\\ud83d\\ude00\\u00e9\\n\"}, \"a\": 7} ";
    tj_doc d;
    if (tj_parse(&d, text, strlen(text), "t.json") != CB_OK) fail_msg("%s", cb_last_error());
    assert_int_equal(d.root.type, TJ_OBJ);
    assert_int_equal(d.root.n, 3);
    const tj_val *a = &d.root.mem[0].v;
    assert_int_equal(a->type, TJ_ARR);
    assert_int_equal(a->n, 8);
    assert_true(a->items[0].type == TJ_NUM && a->items[0].num == 1);
    assert_true(a->items[1].num == -25);
    assert_true(a->items[2].type == TJ_BOOL && a->items[2].b);
    assert_true(a->items[3].type == TJ_BOOL && !a->items[3].b);
    assert_int_equal(a->items[4].type, TJ_NULL);
    assert_int_equal(a->items[5].n, 3);
    assert_memory_equal(a->items[5].s, "x\0y", 3);
    assert_true(a->items[6].type == TJ_OBJ && a->items[6].n == 0);
    assert_true(a->items[7].type == TJ_ARR && a->items[7].n == 0);
    assert_true(tj_str_eq(tj_get(tj_get(&d.root, "b"), "c"), "\xf0\x9f\x98\x80\xc3\xa9\n"));
    assert_true(tj_get(&d.root, "a")->type == TJ_NUM); /* the last duplicate wins */
    assert_null(tj_get(&d.root, "zz"));
    tj_free(&d);
    const struct {
        const char *text, *needle;
    } bad[] = {
        {"", "expected a value at line 1, column 1 (truncated?)"},
        {"{\"a\": 1,}", "expected a member name"},
        {"[1, 2,]", "expected a value"},
        {"{\"a\" 1}", "expected ':'"},
        {"[1 2]", "expected ',' or ']'"},
        {"{\"a\": [1}", "expected ',' or ']'"},
        {"{\"a\": \"b}", "unterminated string"},
        {"\"\\x\"", "bad escape"},
        {"\"\\u12g4\"", "bad \\u escape"},
        {"{}\n{}", "trailing characters after the document at line 2, column 1"},
        {"[tru]", "expected a value"},
        {"-", "expected a value"},
        {"1.2.3", "bad number"},
        {"\"a\tb\\n\"", "control character"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(tj_parse(&d, bad[i].text, strlen(bad[i].text), "b.json"), CB_ERR_FORMAT);
        if (!strstr(cb_last_error(), bad[i].needle))
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].text, cb_last_error(), bad[i].needle);
        assert_null(d.blocks);
    }
    char deep[600];
    memset(deep, '[', sizeof deep);
    assert_int_equal(tj_parse(&d, deep, sizeof deep, "deep.json"), CB_ERR_FORMAT);
    assert_non_null(strstr(cb_last_error(), "nested too deeply"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cl100k_reference),   cmocka_unit_test(test_cl100k_builtin),
        cmocka_unit_test(test_llama3_reference),   cmocka_unit_test(test_llama3_tiktoken),
        cmocka_unit_test(test_invalid_utf8),       cmocka_unit_test(test_roundtrip_edge_cases),
        cmocka_unit_test(test_special_tokens),     cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_bytes_tokenizer),    cmocka_unit_test(test_bad_tiktoken),
        cmocka_unit_test(test_bad_tokenizer_json), cmocka_unit_test(test_split_behaviours),
        cmocka_unit_test(test_long_whitespace),    cmocka_unit_test(test_json_reader),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
