#include "json_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void json_printf(json_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) exit(1);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) exit(1);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void json_string(json_buf *b, const char *s) {
    json_printf(b, "\"");
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') json_printf(b, "\\%c", ch);
        else if (ch < 0x20) json_printf(b, "\\u%04x", ch);
        else json_printf(b, "%c", ch);
    }
    json_printf(b, "\"");
}
