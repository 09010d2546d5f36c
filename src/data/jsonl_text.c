/* One string member of a one-line JSON object, decoded to exact bytes.
 *
 * A small strict scanner rather than a JSON DOM: "\u0000" must become a NUL byte inside the text
 * (a C-string DOM would cut the text there), and texts are the bulk of a .jsonl file. A lone
 * surrogate escape becomes U+FFFD, as JavaScript's TextEncoder writes it. */
#include <stdlib.h>
#include <string.h>

#include "caramba/data.h"

typedef struct jscan {
    const char *p, *end;
    int depth;
} jscan;

static void ws(jscan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const char *p, const char *end) {
    if (end - p < 4) return -1;
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

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* At '"': decodes the string into out (capacity >= raw length; escapes never grow) when out is
 * not NULL. Returns false on malformed input. */
static bool string(jscan *s, char *out, size_t *len) {
    if (s->p >= s->end || *s->p != '"') return false;
    s->p++;
    size_t o = 0;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p;
        if (c == '"') {
            s->p++;
            if (len) *len = o;
            return true;
        }
        if (c < 0x20) return false; /* raw control characters are not JSON */
        if (c != '\\') {
            if (out) out[o] = (char)c;
            o++;
            s->p++;
            continue;
        }
        if (s->end - s->p < 2) return false;
        char e = s->p[1];
        s->p += 2;
        char one = 0;
        switch (e) {
        case '"':
            one = '"';
            break;
        case '\\':
            one = '\\';
            break;
        case '/':
            one = '/';
            break;
        case 'b':
            one = '\b';
            break;
        case 'f':
            one = '\f';
            break;
        case 'n':
            one = '\n';
            break;
        case 'r':
            one = '\r';
            break;
        case 't':
            one = '\t';
            break;
        case 'u': {
            int u = hex4(s->p, s->end);
            if (u < 0) return false;
            s->p += 4;
            uint32_t cp = (uint32_t)u;
            if (cp >= 0xd800 && cp < 0xdc00 && s->end - s->p >= 6 && s->p[0] == '\\' &&
                s->p[1] == 'u') {
                int lo = hex4(s->p + 2, s->end);
                if (lo >= 0xdc00 && lo < 0xe000) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (uint32_t)(lo - 0xdc00);
                    s->p += 6;
                }
            }
            if (cp >= 0xd800 && cp < 0xe000) cp = 0xfffd; /* lone surrogate */
            char buf[4];
            size_t k = put_utf8(buf, cp);
            if (out) memcpy(out + o, buf, k);
            o += k;
            continue;
        }
        default:
            return false;
        }
        if (out) out[o] = one;
        o++;
    }
    return false;
}

static bool value(jscan *s);

static bool container(jscan *s, char close) {
    if (++s->depth > 512) return false;
    s->p++;
    ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        ws(s);
        if (close == '}') {
            if (!string(s, NULL, NULL)) return false;
            ws(s);
            if (s->p >= s->end || *s->p++ != ':') return false;
        }
        if (!value(s)) return false;
        ws(s);
        if (s->p >= s->end) return false;
        char c = *s->p++;
        if (c == close) break;
        if (c != ',') return false;
    }
    s->depth--;
    return true;
}

static bool value(jscan *s) {
    ws(s);
    if (s->p >= s->end) return false;
    char c = *s->p;
    if (c == '"') return string(s, NULL, NULL);
    if (c == '{') return container(s, '}');
    if (c == '[') return container(s, ']');
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(s->end - s->p) >= n && memcmp(s->p, words[i], n) == 0) {
            s->p += n;
            return true;
        }
    }
    const char *start = s->p;
    while (s->p < s->end && strchr("+-0123456789.eE", *s->p)) s->p++;
    return s->p > start;
}

cb_status cb_json_string_field(const char *line, size_t n, const char *key, char **out,
                               size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    jscan s = {line, line + n, 0};
    ws(&s);
    bool ok = s.p < s.end && *s.p == '{';
    const char *found = NULL;
    if (ok) {
        s.p++;
        ws(&s);
        if (s.p < s.end && *s.p == '}')
            s.p++;
        else
            for (;;) {
                ws(&s);
                size_t klen;
                char kbuf[64];
                if (s.p >= s.end || *s.p != '"') {
                    ok = false;
                    break;
                }
                /* keys longer than the buffer are never the one we look for */
                const char *q = memchr(s.p + 1, '"', (size_t)(s.end - s.p - 1));
                bool small = q && (size_t)(q - s.p) < sizeof kbuf;
                if (!(small ? string(&s, kbuf, &klen) : string(&s, NULL, &klen))) {
                    ok = false;
                    break;
                }
                ws(&s);
                if (s.p >= s.end || *s.p++ != ':') {
                    ok = false;
                    break;
                }
                ws(&s);
                bool match = small && klen == strlen(key) && memcmp(kbuf, key, klen) == 0;
                if (match) found = s.p < s.end && *s.p == '"' ? s.p : NULL; /* the last wins */
                if (!value(&s)) {
                    ok = false;
                    break;
                }
                ws(&s);
                if (s.p >= s.end) {
                    ok = false;
                    break;
                }
                char c = *s.p++;
                if (c == '}') break;
                if (c != ',') {
                    ok = false;
                    break;
                }
            }
        ws(&s);
        if (s.p != s.end) ok = false;
    }
    if (!ok) return cb_fail(CB_ERR_FORMAT, "not a JSON object");
    if (!found) return cb_fail(CB_ERR_FORMAT, "no string member \"%s\"", key);
    jscan t = {found, line + n, 0};
    char *buf = malloc((size_t)(line + n - found) + 1);
    if (!buf) return cb_fail(CB_ERR_NOMEM, "out of memory");
    size_t len;
    string(&t, buf, &len);
    buf[len] = 0;
    *out = buf;
    *out_len = len;
    return CB_OK;
}
