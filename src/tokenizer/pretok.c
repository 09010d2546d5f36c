/* Pre-tokenization: the encoding's split pattern(s), run with PCRE2 (UTF + UCP, JIT).
 *
 * Patterns are compiled with PCRE2_MATCH_INVALID_UTF: invalid UTF-8 never matches any pattern
 * item, so such bytes end up in the gaps between matches, which become pieces of their own (as
 * Hugging Face's "Isolated" split keeps gaps): no byte is ever dropped.
 *
 * `\s` / `\S` are rewritten to the ECMAScript whitespace set (tab, LF, VT, FF, CR, space, NBSP,
 * U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000, U+FEFF): the reference
 * encodings come from js-tiktoken and llama3-tokenizer-js, which run these patterns as JavaScript
 * regexes. (PCRE2's own \s would also take U+0085 and U+180E.) For the same reason a caseless
 * group of plain literals such as (?i:'s|'t|'re) becomes (?:'[sS]|'[tT]|'[rR][eE]): ASCII case
 * only, as those libraries do, where PCRE2 would also let 's' match U+017F (long s). */
#include <stdlib.h>
#include <string.h>

#include "caramba/strbuf.h"
#include "tokenizer/tok_internal.h"

static const char JS_SPACE[] = "\\t\\n\\x{0b}\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}"
                               "\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}";


/* "(?i:" at pat[i] opening a group of plain literals (letters, digits, ', -, _, space, |):
 * returns the index of its ')' or 0. */
static size_t plain_caseless_group(const char *pat, size_t i, size_t n) {
    if (strncmp(pat + i, "(?i:", 4) != 0) return 0;
    for (size_t j = i + 4; j < n; j++) {
        char c = pat[j];
        if (c == ')') return j;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '\'' || c == '-' || c == '_' || c == ' ' || c == '|';
        if (!ok) return 0;
    }
    return 0;
}

/* Copies pattern, replacing \s and \S (inside and outside character classes) by explicit sets
 * and plain caseless groups by ASCII case classes. \S inside a class cannot be expressed as a
 * set union; it is left to PCRE2. */
static char *rewrite_pattern(const char *pat) {
    cb_strbuf b = {0};
    bool in_class = false;
    size_t n = strlen(pat);
    for (size_t i = 0; i < n;) {
        char c = pat[i];
        size_t close = in_class ? 0 : plain_caseless_group(pat, i, n);
        if (close) {
            cb_strbuf_put(&b, "(?:", 3);
            for (size_t j = i + 4; j < close; j++) {
                char l = pat[j], u = pat[j];
                if (l >= 'A' && l <= 'Z') l = (char)(l + 32);
                if (u >= 'a' && u <= 'z') u = (char)(u - 32);
                if (l != u) {
                    char cls[4] = {'[', l, u, ']'};
                    cb_strbuf_put(&b, cls, 4);
                } else {
                    cb_strbuf_put(&b, pat + j, 1);
                }
            }
            cb_strbuf_put(&b, ")", 1);
            i = close + 1;
            continue;
        }
        if (c == '\\' && i + 1 < n) {
            char e = pat[i + 1];
            if (e == 's') {
                if (in_class)
                    cb_strbuf_put(&b, JS_SPACE, strlen(JS_SPACE));
                else {
                    cb_strbuf_put(&b, "[", 1);
                    cb_strbuf_put(&b, JS_SPACE, strlen(JS_SPACE));
                    cb_strbuf_put(&b, "]", 1);
                }
                i += 2;
                continue;
            }
            if (e == 'S' && !in_class) {
                cb_strbuf_put(&b, "[^", 2);
                cb_strbuf_put(&b, JS_SPACE, strlen(JS_SPACE));
                cb_strbuf_put(&b, "]", 1);
                i += 2;
                continue;
            }
            if (e == 'Q') { /* \Q...\E quotes everything up to \E */
                const char *end = strstr(pat + i + 2, "\\E");
                size_t len = end ? (size_t)(end - (pat + i)) + 2 : n - i;
                cb_strbuf_put(&b, pat + i, len);
                i += len;
                continue;
            }
            cb_strbuf_put(&b, pat + i, 2); /* \p{..}, \x{..}: the braces hold no backslashes */
            i += 2;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            cb_strbuf_put(&b, pat + i, 1);
            i++;
            if (i < n && pat[i] == '^') cb_strbuf_put(&b, pat + i++, 1);
            if (i < n && pat[i] == ']') cb_strbuf_put(&b, pat + i++, 1); /* a literal ']' first */
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && pat[i + 1] == ':') { /* [:alpha:] */
            const char *end = strstr(pat + i + 2, ":]");
            size_t len = end ? (size_t)(end - (pat + i)) + 2 : 1;
            cb_strbuf_put(&b, pat + i, len);
            i += len;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        cb_strbuf_put(&b, pat + i, 1);
        i++;
    }
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

cb_status tok_add_stage(cb_tokenizer *t, const char *pattern, bool literal, int behavior,
                        bool invert, bool prefix_space, const char *src) {
    if (t->n_stages >= TOK_MAX_STAGES)
        return cb_fail(CB_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer stages", src,
                       TOK_MAX_STAGES);
    tok_stage *st = &t->stages[t->n_stages];
    memset(st, 0, sizeof *st);
    st->behavior = behavior;
    st->invert = invert;
    st->prefix_space = prefix_space;
    if (pattern) {
        char *pat = literal ? strdup(pattern) : rewrite_pattern(pattern);
        if (!pat) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", src);
        int err;
        PCRE2_SIZE erroff;
        uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
        st->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &erroff, NULL);
        free(pat);
        if (!st->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            return cb_fail(CB_ERR_FORMAT,
                           "%s: split pattern does not compile (%s at offset %zu): "
                           "%.200s",
                           src, (const char *)msg, (size_t)erroff, pattern);
        }
        st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0;
        if (!t->md) {
            t->md = pcre2_match_data_create(1, NULL);
            t->mctx = pcre2_match_context_create(NULL);
            t->jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
            if (!t->md || !t->mctx || !t->jit_stack) {
                pcre2_code_free(st->re);
                st->re = NULL;
                return cb_fail(CB_ERR_NOMEM, "%s: out of memory", src);
            }
            pcre2_jit_stack_assign(t->mctx, NULL, t->jit_stack);
            /* The default limit (10M backtracking steps) stops e.g. \s*[\r\n]+ on a run of a
             * few million spaces; these patterns are linear per piece, so lift it. */
            pcre2_set_match_limit(t->mctx, UINT32_MAX);
        }
    }
    t->n_stages++;
    return CB_OK;
}

/* Next match of stage st in s[from..n): *ms, *me; returns 0 none, 1 found, <0 error. Empty
 * matches are skipped (they would give empty pieces, which Hugging Face drops too). */
static int next_match(cb_tokenizer *t, const tok_stage *st, const uint8_t *s, size_t n, size_t from,
                      size_t *ms, size_t *me) {
    while (from < n) {
        int rc = st->jit ? pcre2_jit_match(st->re, s, n, from, 0, t->md, t->mctx)
                         : pcre2_match(st->re, s, n, from, 0, t->md, t->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) return 0;
        if (rc < 0) return rc;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        if (ov[1] > ov[0]) {
            *ms = ov[0];
            *me = ov[1];
            return 1;
        }
        /* empty match at ov[0]: search again one character further */
        from = ov[0] + 1;
        while (from < n && (s[from] & 0xc0) == 0x80) from++;
    }
    return 0;
}

static cb_status match_error(int rc) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    return cb_fail(CB_ERR_INTERNAL, "tokenizer: split pattern failed: %s", (const char *)msg);
}

static cb_status push_span(tok_stage *st, size_t *ns, size_t a, size_t b, bool delim) {
    if (*ns == st->spans_cap) {
        size_t cap = st->spans_cap ? st->spans_cap * 2 : 64;
        tok_span *p = realloc(st->spans, cap * sizeof *p);
        if (!p) return cb_fail(CB_ERR_NOMEM, "tokenizer: out of memory");
        st->spans = p;
        st->spans_cap = cap;
    }
    st->spans[(*ns)++] = (tok_span){a, b, delim};
    return CB_OK;
}

cb_status tok_pretokenize(cb_tokenizer *t, int k, const uint8_t *s, size_t n, cb_ids *out) {
    if (n == 0) return CB_OK;
    if (k == t->n_stages) return tok_encode_piece(t, s, n, out);
    tok_stage *st = &t->stages[k];
    if (st->prefix_space && s[0] != ' ') {
        if (n + 1 > st->buf_cap) {
            char *p = realloc(st->buf, n + 1);
            if (!p) return cb_fail(CB_ERR_NOMEM, "tokenizer: out of memory");
            st->buf = p;
            st->buf_cap = n + 1;
        }
        st->buf[0] = ' ';
        memcpy(st->buf + 1, s, n);
        s = (const uint8_t *)st->buf;
        n++;
    }
    if (!st->re) return tok_pretokenize(t, k + 1, s, n, out);
    size_t pos = 0, ms, me;
    int rc;
    if (st->behavior == TOK_SPLIT_ISOLATED) { /* the common case, streamed */
        while ((rc = next_match(t, st, s, n, pos, &ms, &me)) == 1) {
            if (ms > pos) CB_TRY(tok_pretokenize(t, k + 1, s + pos, ms - pos, out));
            CB_TRY(tok_pretokenize(t, k + 1, s + ms, me - ms, out));
            pos = me;
        }
        if (rc < 0) return match_error(rc);
        return tok_pretokenize(t, k + 1, s + pos, n - pos, out);
    }
    /* The other behaviours need the neighbours: collect (span, is-delimiter) first. The span
     * array belongs to this stage; deeper stages use their own. */
    size_t ns = 0;
    while ((rc = next_match(t, st, s, n, pos, &ms, &me)) == 1) {
        if (ms > pos) CB_TRY(push_span(st, &ns, pos, ms, st->invert));
        CB_TRY(push_span(st, &ns, ms, me, !st->invert));
        pos = me;
    }
    if (rc < 0) return match_error(rc);
    if (pos < n) CB_TRY(push_span(st, &ns, pos, n, st->invert));
    tok_span *sp = st->spans;
    size_t m = 0; /* merged spans written back in place */
    bool prev_delim = false;
    switch (st->behavior) {
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < ns; i++)
            if (!sp[i].delim) sp[m++] = sp[i];
        break;
    case TOK_SPLIT_MERGED_PREV: /* a delimiter joins the piece before it */
        for (size_t i = 0; i < ns; i++) {
            if (sp[i].delim && !prev_delim && m)
                sp[m - 1].end = sp[i].end;
            else
                sp[m++] = sp[i];
            prev_delim = sp[i].delim;
        }
        break;
    case TOK_SPLIT_MERGED_NEXT: { /* a delimiter joins the piece after it: walk backwards */
        size_t w = ns;
        for (size_t i = ns; i-- > 0;) {
            if (sp[i].delim && !prev_delim && w < ns)
                sp[w].start = sp[i].start;
            else
                sp[--w] = sp[i];
            prev_delim = sp[i].delim;
        }
        memmove(sp, sp + w, (ns - w) * sizeof *sp);
        m = ns - w;
        break;
    }
    case TOK_SPLIT_CONTIGUOUS: /* runs of the same kind become one piece */
        for (size_t i = 0; i < ns; i++) {
            if (sp[i].delim == prev_delim && m)
                sp[m - 1].end = sp[i].end;
            else
                sp[m++] = sp[i];
            prev_delim = sp[i].delim;
        }
        break;
    default:
        m = ns;
        break;
    }
    for (size_t i = 0; i < m; i++) {
        /* st->spans may move if a deeper call were to use this stage: it never does */
        tok_span p = st->spans[i];
        CB_TRY(tok_pretokenize(t, k + 1, s + p.start, p.end - p.start, out));
    }
    return CB_OK;
}
