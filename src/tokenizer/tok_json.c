/* A small JSON reader for tokenizer files: one pass, no recursion, every node and decoded string
 * in a few large arena blocks.
 *
 * A tokenizer.json is mostly a vocabulary object of ~10^5 members and a merges array of ~10^5
 * strings; a general-purpose DOM that mallocs every node and string spends most of the load
 * time in the allocator (and far more under AddressSanitizer). Strings without escapes point
 * into the source text, which must outlive the document. Errors name line and column. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_json.h"

typedef struct tj_block {
    struct tj_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
} tj_block;

static void *arena_alloc(tj_doc *d, size_t n) {
    n = (n + 15) & ~(size_t)15;
    tj_block *b = d->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = d->blocks;
        b->used = 0;
        b->cap = cap;
        d->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

void tj_free(tj_doc *d) {
    for (tj_block *b = d->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    memset(d, 0, sizeof *d);
}

typedef struct tj_frame {
    size_t first; /* index of the container's first item on the item stack */
    bool object;
} tj_frame;

typedef struct tj_parser {
    const char *s, *p, *end, *name;
    tj_doc *doc;
    tj_mem *items; /* pending members / elements of the open containers */
    size_t n_items, cap_items;
    tj_frame frames[TJ_MAX_DEPTH];
    int depth;
} tj_parser;

static cb_status perr(const tj_parser *ps, const char *what) {
    size_t line = 1, col = 1;
    for (const char *q = ps->s; q < ps->p; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return cb_fail(CB_ERR_FORMAT, "%s: not valid JSON: %s at line %zu, column %zu%s", ps->name,
                   what, line, col, ps->p >= ps->end ? " (truncated?)" : "");
}

static void ws(tj_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\t' || *ps->p == '\r'))
        ps->p++;
}

static int hex4(const char *p) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* At '"'. Lone surrogate escapes become U+FFFD. */
static cb_status parse_string(tj_parser *ps, const char **out, uint32_t *len) {
    const char *start = ++ps->p;
    const char *q = start;
    while (q < ps->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
    if (q < ps->end && *q == '"') { /* no escapes: point into the source */
        if ((size_t)(q - start) > UINT32_MAX) return perr(ps, "string too long");
        *out = start;
        *len = (uint32_t)(q - start);
        ps->p = q + 1;
        return CB_OK;
    }
    /* escapes: decode into the arena (never longer than the source) */
    const char *e = q;
    while (e < ps->end && *e != '"') e += *e == '\\' ? 2 : 1;
    if (e >= ps->end) {
        ps->p = ps->end;
        return perr(ps, "unterminated string");
    }
    char *buf = arena_alloc(ps->doc, (size_t)(e - start) + 1);
    if (!buf) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", ps->name);
    size_t o = (size_t)(q - start);
    memcpy(buf, start, o);
    ps->p = q;
    while (ps->p < e) {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) return perr(ps, "control character in a string");
        if (c != '\\') {
            buf[o++] = (char)c;
            ps->p++;
            continue;
        }
        char x = ps->p[1];
        ps->p += 2;
        switch (x) {
        case '"':
            buf[o++] = '"';
            break;
        case '\\':
            buf[o++] = '\\';
            break;
        case '/':
            buf[o++] = '/';
            break;
        case 'b':
            buf[o++] = '\b';
            break;
        case 'f':
            buf[o++] = '\f';
            break;
        case 'n':
            buf[o++] = '\n';
            break;
        case 'r':
            buf[o++] = '\r';
            break;
        case 't':
            buf[o++] = '\t';
            break;
        case 'u': {
            int u = e - ps->p >= 4 ? hex4(ps->p) : -1;
            if (u < 0) return perr(ps, "bad \\u escape");
            ps->p += 4;
            uint32_t cp = (uint32_t)u;
            if (cp >= 0xd800 && cp < 0xdc00 && e - ps->p >= 6 && ps->p[0] == '\\' &&
                ps->p[1] == 'u') {
                int lo = hex4(ps->p + 2);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (uint32_t)(lo - 0xdc00);
                    ps->p += 6;
                }
            }
            if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd;
            /* \uXXXX is 6 source bytes, at most 3 output bytes; a pair is 12 for 4 */
            if (cp < 0x80) {
                buf[o++] = (char)cp;
            } else if (cp < 0x800) {
                buf[o++] = (char)(0xc0 | cp >> 6);
                buf[o++] = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                buf[o++] = (char)(0xe0 | cp >> 12);
                buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                buf[o++] = (char)(0x80 | (cp & 0x3f));
            } else {
                buf[o++] = (char)(0xf0 | cp >> 18);
                buf[o++] = (char)(0x80 | ((cp >> 12) & 0x3f));
                buf[o++] = (char)(0x80 | ((cp >> 6) & 0x3f));
                buf[o++] = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default:
            ps->p -= 2;
            return perr(ps, "bad escape");
        }
    }
    if (o > UINT32_MAX) return perr(ps, "string too long");
    buf[o] = 0;
    ps->p = e + 1;
    *out = buf;
    *len = (uint32_t)o;
    return CB_OK;
}

static cb_status parse_scalar(tj_parser *ps, tj_val *v) {
    static const struct {
        const char *word;
        tj_type type;
        bool b;
    } words[] = {{"true", TJ_BOOL, true}, {"false", TJ_BOOL, false}, {"null", TJ_NULL, false}};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, words[i].word, n) == 0) {
            ps->p += n;
            v->type = words[i].type;
            v->b = words[i].b;
            return CB_OK;
        }
    }
    const char *q = ps->p;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || *q < '0' || *q > '9') return perr(ps, "expected a value");
    while (q < ps->end && ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
                           *q == '+' || *q == '-'))
        q++;
    char buf[64];
    size_t n = (size_t)(q - ps->p);
    if (n >= sizeof buf) return perr(ps, "number too long");
    memcpy(buf, ps->p, n);
    buf[n] = 0;
    char *endp;
    v->num = strtod(buf, &endp);
    if (endp != buf + n) return perr(ps, "bad number");
    v->type = TJ_NUM;
    ps->p = q;
    return CB_OK;
}

static cb_status push_item(tj_parser *ps, const char *key, uint32_t klen, const tj_val *v) {
    if (ps->n_items == ps->cap_items) {
        size_t cap = ps->cap_items ? ps->cap_items * 2 : 4096;
        tj_mem *p = realloc(ps->items, cap * sizeof *p);
        if (!p) return cb_fail(CB_ERR_NOMEM, "%s: out of memory", ps->name);
        ps->items = p;
        ps->cap_items = cap;
    }
    ps->items[ps->n_items++] = (tj_mem){key, klen, *v};
    return CB_OK;
}

cb_status tj_parse(tj_doc *d, const char *text, size_t len, const char *name) {
    memset(d, 0, sizeof *d);
    tj_parser ps = {.s = text, .p = text, .end = text + len, .name = name, .doc = d};
    cb_status st = CB_OK;
    const char *key = NULL;
    uint32_t klen = 0;
    bool done = false;
    /* Loop invariant: at the start of an iteration the parser expects a value (after '[', ',',
     * ':' or at the top) */
    while (st == CB_OK && !done) {
        ws(&ps);
        if (ps.depth > 0 && ps.frames[ps.depth - 1].object && !key) {
            /* expecting a key, or '}' right after '{' */
            if (ps.p < ps.end && *ps.p == '}' && ps.n_items == ps.frames[ps.depth - 1].first) {
                /* empty object: handled as a closing below */
            } else {
                if (ps.p >= ps.end || *ps.p != '"') {
                    st = perr(&ps, "expected a member name");
                    break;
                }
                if ((st = parse_string(&ps, &key, &klen)) != CB_OK) break;
                ws(&ps);
                if (ps.p >= ps.end || *ps.p != ':') {
                    st = perr(&ps, "expected ':'");
                    break;
                }
                ps.p++;
                continue;
            }
        }
        tj_val v;
        memset(&v, 0, sizeof v);
        bool have_value = false;
        if (ps.p < ps.end && (*ps.p == '{' || *ps.p == '[')) {
            if (ps.depth >= TJ_MAX_DEPTH) {
                st = perr(&ps, "nested too deeply");
                break;
            }
            /* remember the key of the container in the item stack's slot */
            tj_val placeholder = {.type = *ps.p == '{' ? TJ_OBJ : TJ_ARR};
            if ((st = push_item(&ps, key, klen, &placeholder)) != CB_OK) break;
            ps.frames[ps.depth++] = (tj_frame){ps.n_items, *ps.p == '{'};
            key = NULL;
            ps.p++;
            ws(&ps);
            bool obj = ps.frames[ps.depth - 1].object;
            if (ps.p < ps.end && *ps.p == (obj ? '}' : ']')) {
                /* empty container: fall through to the closing code */
            } else {
                continue;
            }
        } else if (ps.p < ps.end && (*ps.p == '}' || *ps.p == ']') && ps.depth > 0 &&
                   ps.n_items == ps.frames[ps.depth - 1].first &&
                   *ps.p == (ps.frames[ps.depth - 1].object ? '}' : ']')) {
            /* empty container closing */
        } else {
            if (ps.p < ps.end && *ps.p == '"') {
                const char *s;
                uint32_t n;
                if ((st = parse_string(&ps, &s, &n)) != CB_OK) break;
                v.type = TJ_STR;
                v.s = s;
                v.n = n;
            } else if ((st = parse_scalar(&ps, &v)) != CB_OK) {
                break;
            }
            have_value = true;
        }
        if (have_value) {
            if (ps.depth == 0) {
                d->root = v;
                done = true;
                break;
            }
            if ((st = push_item(&ps, key, klen, &v)) != CB_OK) break;
            key = NULL;
        }
        /* after a value: ',' continues the container, a closing bracket completes it */
        for (;;) {
            ws(&ps);
            tj_frame *f = &ps.frames[ps.depth - 1];
            char close = f->object ? '}' : ']';
            if (ps.p < ps.end && *ps.p == ',' && ps.n_items > f->first) {
                ps.p++;
                break;
            }
            if (ps.p >= ps.end || *ps.p != close) {
                st = perr(&ps, f->object ? "expected ',' or '}'" : "expected ',' or ']'");
                break;
            }
            ps.p++;
            size_t n = ps.n_items - f->first;
            tj_mem *slot = &ps.items[f->first - 1];
            if (n > UINT32_MAX) {
                st = perr(&ps, "container too large");
                break;
            }
            if (f->object) {
                tj_mem *m = n ? arena_alloc(d, n * sizeof *m) : NULL;
                if (n && !m) {
                    st = cb_fail(CB_ERR_NOMEM, "%s: out of memory", name);
                    break;
                }
                if (n) memcpy(m, ps.items + f->first, n * sizeof *m);
                slot->v.mem = m;
            } else {
                tj_val *a = n ? arena_alloc(d, n * sizeof *a) : NULL;
                if (n && !a) {
                    st = cb_fail(CB_ERR_NOMEM, "%s: out of memory", name);
                    break;
                }
                for (size_t i = 0; i < n; i++) a[i] = ps.items[f->first + i].v;
                slot->v.items = a;
            }
            slot->v.n = (uint32_t)n;
            ps.n_items = f->first;
            ps.depth--;
            if (ps.depth == 0) {
                d->root = slot->v;
                ps.n_items = 0;
                done = true;
                break;
            }
        }
    }
    free(ps.items);
    if (st == CB_OK) {
        ws(&ps);
        if (ps.p != ps.end) st = perr(&ps, "trailing characters after the document");
    }
    if (st != CB_OK) tj_free(d);
    return st;
}

const tj_val *tj_get(const tj_val *obj, const char *key) {
    if (!obj || obj->type != TJ_OBJ) return NULL;
    size_t kl = strlen(key);
    const tj_val *found = NULL;
    for (uint32_t i = 0; i < obj->n; i++) /* the last duplicate wins */
        if (obj->mem[i].klen == kl && memcmp(obj->mem[i].key, key, kl) == 0) found = &obj->mem[i].v;
    return found;
}

bool tj_str_eq(const tj_val *v, const char *s) {
    size_t n = strlen(s);
    return v && v->type == TJ_STR && v->n == n && memcmp(v->s, s, n) == 0;
}
