#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../src/common/formats.h"

static int n_passed, n_failed, test_failed;
static const char *current_test = "";

void harness_check(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        n_passed++;
        return;
    }
    n_failed++;
    test_failed++;
    if (test_failed > 10) return; /* one broken loop should not flood the log */
    fprintf(stderr, "FAIL %s (%s:%d): ", current_test, file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void harness_check_err(moe_status got, moe_status want, const char *needle, const char *expr,
                       const char *file, int line) {
    const char *msg = moe_last_error();
    harness_check(got == want, file, line, "%s -> %s (%s), expected %s", expr,
                  moe_status_string(got), msg, moe_status_string(want));
    if (got == want && needle)
        harness_check(strstr(msg, needle) != NULL, file, line,
                      "%s: error \"%s\" does not name \"%s\"", expr, msg, needle);
}

/* ---------------------------------------------------------------- memory */

static void **allocs;
static size_t n_allocs, cap_allocs;

void *test_alloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test_alloc(%zu): out of memory\n", bytes);
        exit(2);
    }
    memset(p, 0xFF, bytes);
    if (n_allocs == cap_allocs) {
        cap_allocs = cap_allocs ? 2 * cap_allocs : 64;
        allocs = realloc(allocs, cap_allocs * sizeof *allocs);
        if (!allocs) exit(2);
    }
    allocs[n_allocs++] = p;
    return p;
}

static void free_all(void) {
    for (size_t i = 0; i < n_allocs; i++) free(allocs[i]);
    n_allocs = 0;
}

moe_tensor test_tensor(moe_dtype dtype, int rank, const int64_t *shape) {
    moe_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.rank = rank;
    int64_t n = 1;
    for (int d = rank - 1; d >= 0; d--) {
        t.shape[d] = shape[d];
        t.stride[d] = n;
        n *= shape[d];
    }
    t.data = test_alloc((size_t)n * moe_dtype_size(dtype));
    test_poison(&t);
    return t;
}

moe_tensor test_tensor1(moe_dtype dtype, int64_t n0) {
    int64_t s[1] = {n0};
    return test_tensor(dtype, 1, s);
}
moe_tensor test_tensor2(moe_dtype dtype, int64_t n0, int64_t n1) {
    int64_t s[2] = {n0, n1};
    return test_tensor(dtype, 2, s);
}
moe_tensor test_tensor3(moe_dtype dtype, int64_t n0, int64_t n1, int64_t n2) {
    int64_t s[3] = {n0, n1, n2};
    return test_tensor(dtype, 3, s);
}

static int64_t span_elems(const moe_tensor *t) {
    /* elements from the first to one past the last addressed element */
    int64_t last = 0;
    for (int d = 0; d < t->rank; d++) {
        if (t->shape[d] == 0) return 0;
        last += (t->shape[d] - 1) * t->stride[d];
    }
    return last + 1;
}

void test_poison(moe_tensor *t) {
    int64_t n = span_elems(t);
    if (t->dtype == MOE_DTYPE_I32) {
        for (int64_t i = 0; i < n; i++) ((int32_t *)t->data)[i] = 0x7BADBAD7;
    } else {
        memset(t->data, 0xFF, (size_t)n * moe_dtype_size(t->dtype));
    }
}

static void *addr(const moe_tensor *t, int64_t i0, int64_t i1, int64_t i2) {
    int64_t idx[3] = {i0, i1, i2}, off = 0;
    for (int d = 0; d < t->rank && d < 3; d++) off += idx[d] * t->stride[d];
    return (char *)t->data + off * (int64_t)moe_dtype_size(t->dtype);
}

double test_get(const moe_tensor *t, int64_t i0, int64_t i1, int64_t i2) {
    const void *p = addr(t, i0, i1, i2);
    switch (t->dtype) {
    case MOE_DTYPE_F32: return *(const float *)p;
    case MOE_DTYPE_F16: return moe_f16_to_f32(*(const uint16_t *)p);
    case MOE_DTYPE_BF16: return moe_bf16_to_f32(*(const uint16_t *)p);
    case MOE_DTYPE_E4M3: return moe_e4m3_to_f32(*(const uint8_t *)p);
    case MOE_DTYPE_I32: return *(const int32_t *)p;
    default: return NAN;
    }
}

void test_set(moe_tensor *t, int64_t i0, int64_t i1, int64_t i2, double v) {
    void *p = addr(t, i0, i1, i2);
    switch (t->dtype) {
    case MOE_DTYPE_F32: *(float *)p = (float)v; break;
    case MOE_DTYPE_F16: *(uint16_t *)p = moe_f32_to_f16((float)v); break;
    case MOE_DTYPE_BF16: *(uint16_t *)p = moe_f32_to_bf16((float)v); break;
    case MOE_DTYPE_E4M3: *(uint8_t *)p = moe_f32_to_e4m3((float)v); break;
    case MOE_DTYPE_I32: *(int32_t *)p = (int32_t)v; break;
    default: break;
    }
}

int32_t test_get_i32(const moe_tensor *t, int64_t i0, int64_t i1) {
    return *(const int32_t *)addr(t, i0, i1, 0);
}
void test_set_i32(moe_tensor *t, int64_t i0, int64_t i1, int32_t v) {
    *(int32_t *)addr(t, i0, i1, 0) = v;
}

void test_fill_normal(moe_tensor *t, double sigma) {
    int64_t n0 = t->shape[0], n1 = t->rank > 1 ? t->shape[1] : 1,
            n2 = t->rank > 2 ? t->shape[2] : 1;
    for (int64_t a = 0; a < n0; a++)
        for (int64_t b = 0; b < n1; b++)
            for (int64_t c = 0; c < n2; c++) test_set(t, a, b, c, sigma * rng_normal());
}

/* ---------------------------------------------------------------- rng */

static uint64_t rng_state;

uint64_t rng_u64(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double rng_uniform(double lo, double hi) {
    return lo + (hi - lo) * ((double)(rng_u64() >> 11) * (1.0 / 9007199254740992.0));
}

double rng_normal(void) {
    double u1 = rng_uniform(0.0, 1.0), u2 = rng_uniform(0.0, 1.0);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t rng_int(int64_t lo, int64_t hi) {
    return lo + (int64_t)(rng_u64() % (uint64_t)(hi - lo + 1));
}

void draw_counts(int32_t *counts, int64_t experts, int64_t max, int shape) {
    int64_t hot = experts / 3;
    for (int64_t e = 0; e < experts; e++)
        counts[e] = (int32_t)(shape == COUNTS_UNIFORM ? rng_int(0, max)
                                                      : e == hot ? max : rng_int(0, 2));
}

/* ---------------------------------------------------------------- contexts, running */

static moe_context *cpu_ctx;

int test_quick(void) {
    const char *q = getenv("MOE_TEST_QUICK");
    return q && *q && strcmp(q, "0") != 0;
}

moe_context *test_cpu(void) {
    if (!cpu_ctx && moe_context_create(&cpu_ctx, MOE_BACKEND_CPU, 0) != MOE_OK) {
        fprintf(stderr, "cannot create a CPU context: %s\n", moe_last_error());
        exit(2);
    }
    return cpu_ctx;
}

void harness_run(const char *name, test_fn fn) {
    uint64_t h = 1469598103934665603ull;
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    rng_state = h;
    current_test = name;
    test_failed = 0;
    int before = n_passed + n_failed;
    fn();
    free_all();
    test_gpu_free_all();
    printf("%-48s %s (%d checks)\n", name, test_failed ? "FAILED" : "ok",
           n_passed + n_failed - before);
    fflush(stdout);
}

typedef struct {
    const char *name;
    void (*fn)(void);
} suite;

static const suite suites[] = {
    {"formats", suite_formats},   {"api", suite_api},
    {"route", suite_route},       {"permute", suite_permute},
    {"combine", suite_combine},   {"quant_fp8", suite_quant_fp8},
    {"quant_block", suite_quant_block}, {"activation", suite_activation},
    {"gemm", suite_gemm},         {"layer", suite_layer},
    {"cuda_route", suite_cuda_route}, {"cuda_permute", suite_cuda_permute},
    {"cuda_quant", suite_cuda_quant}, {"cuda_activation", suite_cuda_activation},
    {"cuda_combine", suite_cuda_combine}, {"cuda_quant_block", suite_cuda_quant_block},
    {"cuda_gemm", suite_cuda_gemm},   {"cuda_layer", suite_cuda_layer},
};

int main(int argc, char **argv) {
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], suites[s].name) == 0;
        if (!wanted) continue;
        printf("== %s\n", suites[s].name);
        suites[s].fn();
    }
    moe_context_destroy(cpu_ctx);
    test_gpu_release();
    if (test_gpu_skipped())
        printf("%d GPU tests skipped: no CUDA device\n", test_gpu_skipped());
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
