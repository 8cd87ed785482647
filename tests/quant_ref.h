/* Float64 references for the quantisation suites (test_quant_fp8.c, test_quant_block.c):
 * the e4m3 and e2m1 values from their definitions, nearest-even rounding found by binary
 * search over them, and random data that is never zero. Nothing here calls libmoe's own
 * conversions, so the suites check the library against an independent derivation. */
#ifndef MOE_TEST_QUANT_REF_H
#define MOE_TEST_QUANT_REF_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

/* How close (relative) to a rounding midpoint a double may lie before the library's f32
 * arithmetic (a few roundings of 2^-24) could land on the other side: codes there are
 * accepted from either neighbour. */
#define REF_AMBIGUOUS 0x1p-18

/* Magnitude of e4m3 code 0..126 from the definition: 4 exponent bits (bias 7), 3 mantissa
 * bits, subnormals m * 2^-9. */
static inline double ref_e4m3_mag(int code) {
    int e = code >> 3, m = code & 7;
    return e == 0 ? m * 0x1p-9 : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
}

/* Value of an e4m3 byte (NaN for 0x7f/0xff). */
static inline double ref_e4m3_value(uint8_t code) {
    if ((code & 0x7f) == 0x7f) return NAN;
    double v = ref_e4m3_mag(code & 0x7f);
    return code & 0x80 ? -v : v;
}

static inline double ref_e2m1_mag(int code) {
    static const double mag[8] = {0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0};
    return mag[code & 7];
}

static inline double ref_e2m1_value(uint8_t nibble) {
    double v = ref_e2m1_mag(nibble & 7);
    return nibble & 8 ? -v : v;
}

/* Index of the nearest of n ascending magnitudes mag(0..n-1) to a >= 0, ties to the even
 * index, saturating at n-1. *ambiguous: a lies within REF_AMBIGUOUS of a midpoint. */
static inline int ref_nearest(double (*mag)(int), int n, double a, int *ambiguous) {
    int lo = 0, hi = n - 1; /* find the last index with mag <= a */
    if (a >= mag(n - 1)) lo = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (mag(mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    *ambiguous = 0;
    if (lo == n - 1) return lo;
    double below = mag(lo), above = mag(lo + 1), midpoint = (below + above) / 2;
    *ambiguous = fabs(a - midpoint) <= REF_AMBIGUOUS * midpoint;
    if (a < midpoint) return lo;
    if (a > midpoint) return lo + 1;
    return lo % 2 == 0 ? lo : lo + 1;
}

/* e4m3 byte nearest to v (RNE, saturating to 448, NaN to 0x7f with v's sign). */
static inline uint8_t ref_e4m3(double v, int *ambiguous) {
    uint8_t sign = signbit(v) ? 0x80 : 0;
    *ambiguous = 0;
    if (isnan(v)) return (uint8_t)(sign | 0x7f);
    return (uint8_t)(sign | ref_nearest(ref_e4m3_mag, 127, fabs(v), ambiguous));
}

/* e2m1 nibble nearest to v (RNE, saturating to 6). */
static inline uint8_t ref_e2m1(double v, int *ambiguous) {
    uint8_t sign = signbit(v) ? 8 : 0;
    return (uint8_t)(sign | ref_nearest(ref_e2m1_mag, 8, fabs(v), ambiguous));
}

/* code is the nearest code to v (by nearest, ref_e4m3 or ref_e2m1), or a neighbour where v
 * lies so close to a midpoint that the library's f32 arithmetic may round it across. */
static inline int ref_code_ok(uint8_t (*nearest)(double, int *), uint8_t code, double v) {
    int amb, dummy;
    if (code == nearest(v, &amb)) return 1;
    return amb && (code == nearest(v * (1 - 2 * REF_AMBIGUOUS), &dummy) ||
                   code == nearest(v * (1 + 2 * REF_AMBIGUOUS), &dummy));
}

/* A random non-zero value: N(0, 1) times 2^e for e uniform in [lo, hi]. */
static inline double ref_random(int lo, int hi) {
    double v;
    do v = rng_normal() * ldexp(1.0, (int)rng_int(lo, hi));
    while (v == 0.0);
    return v;
}

/* Fills a float tensor (f32/f16/bf16) [M, K] with non-zero random values whose magnitude
 * varies by 2^[lo, hi] from group to group of g columns, so scales span many binades;
 * values that round to zero in a narrow dtype are drawn again. */
static inline void ref_fill(moe_tensor *x, int64_t g, int lo, int hi) {
    for (int64_t r = 0; r < x->shape[0]; r++)
        for (int64_t c0 = 0; c0 < x->shape[1]; c0 += g) {
            int e = (int)rng_int(lo, hi);
            for (int64_t c = c0; c < c0 + g && c < x->shape[1]; c++) do
                    test_set(x, r, c, 0, ref_random(e - 3, e));
                while (test_get(x, r, c, 0) == 0.0);
        }
}

/* Bound on |out - v| for a value v rounded to a float dtype, relative plus subnormal. */
static inline double ref_dtype_err(moe_dtype dtype, double v) {
    switch (dtype) {
    case MOE_DTYPE_BF16:
        return 0x1p-8 * fabs(v) + 0x1p-134;
    case MOE_DTYPE_F16:
        return 0x1p-11 * fabs(v) + 0x1p-25;
    default:
        return 0x1p-24 * fabs(v) + 0x1p-149;
    }
}

/* A [rows, cols] tensor whose rows are pad elements apart beyond cols (a leading
 * dimension), all poisoned. */
static inline moe_tensor ref_padded(moe_dtype dtype, int64_t rows, int64_t cols, int64_t pad) {
    moe_tensor t = test_tensor2(dtype, rows, cols + pad);
    t.shape[1] = cols;
    return t;
}

/* The bytes of a padded tensor beyond each row's cols are still poisoned (0xFF). */
static inline int ref_gaps_untouched(const moe_tensor *t) {
    size_t es = moe_dtype_size(t->dtype);
    for (int64_t r = 0; r < t->shape[0]; r++) {
        const uint8_t *row = (const uint8_t *)t->data + (size_t)(r * t->stride[0]) * es;
        for (size_t b = (size_t)t->shape[1] * es; b < (size_t)t->stride[0] * es; b++)
            if (row[b] != 0xff) return 0;
    }
    return 1;
}

/* Two [rows, cols] tensors of one dtype hold the same bytes, whatever their strides. */
static inline int ref_same_bytes(const moe_tensor *a, const moe_tensor *b) {
    size_t es = moe_dtype_size(a->dtype), n = (size_t)a->shape[1] * es;
    for (int64_t r = 0; r < a->shape[0]; r++)
        if (memcmp((const uint8_t *)a->data + (size_t)(r * a->stride[0]) * es,
                   (const uint8_t *)b->data + (size_t)(r * b->stride[0]) * es, n))
            return 0;
    return 1;
}

static const moe_dtype REF_FLOAT_DTYPES[3] = {MOE_DTYPE_F32, MOE_DTYPE_F16, MOE_DTYPE_BF16};

/* ---------------------------------------------------------------- bad tensors */

/* Calls the op under test with its tensor arguments args[0..n). */
typedef moe_status (*ref_call)(moe_tensor **args);

/* Breaks each tensor argument in turn in every way the shared tensor check catches (NULL
 * unless bit i of optional says NULL is allowed, wrong dtype, rank, negative shape,
 * strided innermost dimension, overlapping rows, NULL data) and checks that the op fails
 * naming it. The arguments must be non-empty and otherwise valid. */
static inline void ref_tensor_faults(ref_call call, moe_tensor **args, const char *const *names,
                                     int n, unsigned optional, const char *op) {
    for (int i = 0; i < n; i++) {
        moe_tensor good = *args[i], *keep = args[i];
        int rank = good.rank;
        for (int fault = 0; fault < 7; fault++) {
            char needle[64], what[96];
            moe_tensor bad = good;
            args[i] = &bad;
            switch (fault) {
            case 0:
                if (optional & (1u << i)) continue;
                args[i] = NULL;
                snprintf(needle, sizeof needle, "%s is NULL", names[i]);
                break;
            case 1:
                bad.dtype = good.dtype == MOE_DTYPE_I32 ? MOE_DTYPE_F32 : MOE_DTYPE_I32;
                snprintf(needle, sizeof needle, "%s has dtype", names[i]);
                break;
            case 2:
                bad.rank = rank + 1;
                bad.shape[rank] = 1;
                bad.stride[rank] = 1;
                snprintf(needle, sizeof needle, "%s has rank", names[i]);
                break;
            case 3:
                bad.shape[0] = -1;
                snprintf(needle, sizeof needle, "%s.shape[0]", names[i]);
                break;
            case 4:
                bad.stride[rank - 1] = 2;
                snprintf(needle, sizeof needle, "%s.stride[%d]", names[i], rank - 1);
                break;
            case 5:
                if (rank < 2) continue;
                bad.stride[0] = good.shape[1] * good.stride[1] - 1;
                snprintf(needle, sizeof needle, "%s.stride[0]", names[i]);
                break;
            default:
                bad.data = NULL;
                snprintf(needle, sizeof needle, "%s.data", names[i]);
                break;
            }
            snprintf(what, sizeof what, "%s with %s broken (fault %d)", op, names[i], fault);
            harness_check_err(call(args), MOE_ERR_INVALID_ARGUMENT, needle, what, __FILE__,
                              __LINE__);
        }
        args[i] = keep;
    }
}

/* ---------------------------------------------------------------- mismatch tallies */

/* Counts failed element comparisons and keeps the first one's description, so a check
 * over a million elements is one CHECK with a useful message. */
typedef struct ref_tally {
    int64_t bad, total;
    char first[240];
} ref_tally;

static inline void ref_expect(ref_tally *t, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void ref_expect(ref_tally *t, int ok, const char *fmt, ...) {
    t->total++;
    if (ok || t->bad++) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->first, sizeof t->first, fmt, ap);
    va_end(ap);
}

/* No mismatch, and (when some elements were expected) not a vacuous pass. */
#define CHECK_TALLY(t, what, expect_some)                                                          \
    CHECK((t).bad == 0 && ((t).total > 0 || !(expect_some)), "%s: %lld of %lld wrong; first: %s",  \
          (what), (long long)(t).bad, (long long)(t).total, (t).first)

#endif
