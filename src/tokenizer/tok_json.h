/* Minimal JSON document for the tokenizer loaders (tok_json.c): arena-allocated, strings as
 * (pointer, length) so "\u0000" survives. */
#ifndef CARAMBA_TOK_JSON_H
#define CARAMBA_TOK_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "caramba/status.h"

enum { TJ_MAX_DEPTH = 256 };

typedef enum tj_type { TJ_NULL = 0, TJ_BOOL, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ } tj_type;

typedef struct tj_val {
    tj_type type;
    uint32_t n; /* string bytes, array elements, object members */
    union {
        bool b;
        double num;
        const char *s;        /* not NUL-terminated when it points into the source */
        struct tj_val *items; /* TJ_ARR */
        struct tj_mem *mem;   /* TJ_OBJ */
    };
} tj_val;

typedef struct tj_mem {
    const char *key;
    uint32_t klen;
    tj_val v;
} tj_mem;

typedef struct tj_doc {
    tj_val root;
    struct tj_block *blocks;
} tj_doc;

/* Parses text[0..len); the text must outlive the document. Errors name line and column. */
cb_status tj_parse(tj_doc *d, const char *text, size_t len, const char *name);
void tj_free(tj_doc *d);
/* Member of an object by name (the last one when repeated), or NULL. */
const tj_val *tj_get(const tj_val *obj, const char *key);
bool tj_str_eq(const tj_val *v, const char *s);

#endif
