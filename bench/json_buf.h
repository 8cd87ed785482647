/* A growing text buffer for the benchmarks' JSON (moe-bench --layer, moe-bench-gemm),
 * appended printf-style; a benchmark exits when memory runs out. */
#ifndef MOE_BENCH_JSON_BUF_H
#define MOE_BENCH_JSON_BUF_H

#include <stddef.h>

typedef struct json_buf {
    char *s; /* NUL-terminated once anything was appended; NULL before */
    size_t len, cap;
} json_buf;

#if defined(__GNUC__)
#define JSON_PRINTF __attribute__((format(printf, 2, 3)))
#else
#define JSON_PRINTF
#endif

void json_printf(json_buf *b, const char *fmt, ...) JSON_PRINTF;

/* s as a quoted JSON string: quotes and backslashes escaped, control bytes as \u00XX. */
void json_string(json_buf *b, const char *s);

#endif
