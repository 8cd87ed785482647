/* MXFP8 and NVFP4 against the float64 formulas of SPEC 3: every scale byte, code and
 * dequantised value of random data over experts with uneven (and empty) row counts, all
 * input dtypes, both MX rules; the swizzled layout checked by walking the buffer with an
 * independent derivation (padding 0, bytes after the last block untouched); the edges
 * (saturation, zero blocks, NaN, Inf, tiny values, M = 0, offsets that make no sense);
 * and every argument check. */
#include <math.h>
#include <string.h>

#include "../src/common/swizzle.h"
#include "harness.h"
#include "quant_ref.h"

#define MAX_E 32

/* An expert's rows and the first scale row of its block, derived here from offsets. */
typedef struct {
    int64_t begin, rows, block_row;
} ref_expert;

/* Which format a case runs. */
typedef enum { FMT_MX, FMT_NV } block_fmt;

static int64_t fmt_block(block_fmt f) { return f == FMT_MX ? 32 : 16; }

static moe_status run_quant(block_fmt f, const moe_tensor *x, const moe_tensor *offsets,
                            moe_mx_rule rule, const moe_tensor *gs, moe_tensor *q,
                            moe_tensor *scales) {
    if (f == FMT_MX) return moe_quant_mxfp8(test_cpu(), x, offsets, rule, q, scales, NULL);
    return moe_quant_nvfp4(test_cpu(), x, offsets, gs, q, scales, NULL);
}

static moe_status run_dequant(block_fmt f, const moe_tensor *q, const moe_tensor *scales,
                              const moe_tensor *offsets, const moe_tensor *gs, moe_tensor *out) {
    if (f == FMT_MX) return moe_dequant_mxfp8(test_cpu(), q, scales, offsets, out, NULL);
    return moe_dequant_nvfp4(test_cpu(), q, scales, offsets, gs, out, NULL);
}

/* ---------------------------------------------------------------- independent layout */

/* Offset of every (m, c) of a block of padded_rows x padded_cols scales, found by
 * walking the buffer byte by byte: byte i of tile (tr, tc) holds row
 * tr*128 + ((i % 16) / 4) * 32 + i / 16 and column tc*4 + i % 4. */
static int64_t *ref_swizzle_map(int64_t padded_rows, int64_t padded_cols) {
    int64_t *map = test_alloc((size_t)(padded_rows * padded_cols + 1) * sizeof *map);
    int64_t byte = 0;
    for (int64_t tr = 0; tr < padded_rows / 128; tr++)
        for (int64_t tc = 0; tc < padded_cols / 4; tc++)
            for (int64_t i = 0; i < 512; i++, byte++) {
                int64_t m = tr * 128 + ((i % 16) / 4) * 32 + i / 16, c = tc * 4 + i % 4;
                map[m * padded_cols + c] = byte;
            }
    return map;
}

/* Row ranges and block rows of valid offsets (NULL: one expert with all m rows). */
static int ref_experts(const moe_tensor *offsets, int64_t m, ref_expert *ex) {
    int n = offsets ? (int)offsets->shape[0] - 1 : 1;
    int64_t block_row = 0;
    for (int e = 0; e < n; e++) {
        ex[e].begin = offsets ? test_get_i32(offsets, e, 0) : 0;
        ex[e].rows = offsets ? test_get_i32(offsets, e + 1, 0) - ex[e].begin : m;
        ex[e].block_row = block_row;
        block_row += (ex[e].rows + 127) / 128 * 128;
    }
    return n;
}

/* Offsets for e experts over rows lead..m-tail-1 with uneven counts, about a quarter of
 * the experts empty. */
static moe_tensor make_offsets(int e, int64_t m, int64_t lead, int64_t tail) {
    moe_tensor off = test_tensor1(MOE_DTYPE_I32, e + 1);
    double w[MAX_E], sum = 0.0;
    for (int i = 0; i < e; i++) {
        double u = rng_uniform(0.1, 1.0);
        w[i] = (e > 1 && rng_int(0, 3) == 0) ? 0.0 : u * u * u;
        sum += w[i];
    }
    if (sum == 0.0) w[e - 1] = sum = 1.0;
    int64_t covered = m - lead - tail, at = lead;
    double acc = 0.0;
    test_set_i32(&off, 0, 0, (int32_t)lead);
    for (int i = 0; i < e; i++) {
        acc += w[i];
        int64_t next = i == e - 1 ? lead + covered : lead + (int64_t)(covered * (acc / sum));
        at = next < at ? at : next;
        test_set_i32(&off, i + 1, 0, (int32_t)at);
    }
    return off;
}

/* ---------------------------------------------------------------- references */

static double row_amax(const moe_tensor *x, int64_t r, int64_t c0, int64_t n) {
    double amax = 0.0;
    for (int64_t c = c0; c < c0 + n; c++) {
        double a = fabs(test_get(x, r, c, 0));
        if (a > amax) amax = a; /* NaN compares false: ignored */
    }
    return amax;
}

/* The MX exponent: ceil(log2(amax / 448)) (found as the least n with 448 * 2^n >= amax)
 * or floor(log2(amax)) - 8, clamped to [-127, 127]; -127 for a zero block. */
static int ref_mx_exp(double amax, moe_mx_rule rule) {
    if (amax == 0.0) return -127;
    if (isinf(amax)) return 127;
    int n;
    if (rule == MOE_MX_RULE_CEIL) {
        n = (int)ceil(log2(amax / 448.0));
        while (ldexp(448.0, n) < amax) n++;
        while (ldexp(448.0, n - 1) >= amax) n--;
    } else {
        frexp(amax, &n); /* amax = f * 2^n, f in [0.5, 1): floor(log2) = n - 1 */
        n = n - 1 - 8;
    }
    return n < -127 ? -127 : n > 127 ? 127 : n;
}

/* The nearest e4m3 (MX, and NV scales) or e2m1 (NV) code to v. */
static int code_ok(block_fmt f, uint8_t code, double v) {
    return ref_code_ok(f == FMT_MX ? ref_e4m3 : ref_e2m1, code, v);
}

/* What a case quantised and where its results are. */
typedef struct {
    block_fmt fmt;
    moe_mx_rule rule;
    const moe_tensor *x, *offsets, *gs;
    moe_tensor q, scales;
    ref_expert ex[MAX_E];
    int experts;
    int64_t cols, padded_cols;
} block_case;

static double case_gs(const block_case *bc, int e) {
    return bc->gs ? test_get(bc->gs, e, 0, 0) : 1.0;
}

static uint8_t q_code(const block_case *bc, int64_t r, int64_t c) {
    const uint8_t *row = (const uint8_t *)bc->q.data + r * bc->q.stride[0];
    if (bc->fmt == FMT_MX) return row[c];
    return (uint8_t)(c % 2 ? row[c / 2] >> 4 : row[c / 2] & 15);
}

static double code_value(block_fmt f, uint8_t code) {
    return f == FMT_MX ? ref_e4m3_value(code) : ref_e2m1_value(code);
}

/* The scale of block c of row m of expert e: its byte and its value as a multiplier of
 * the code (2^exp for MX, sf / gs for NV). */
static uint8_t scale_byte(const block_case *bc, const int64_t *map, int e, int64_t m, int64_t c) {
    int64_t at = bc->ex[e].block_row * bc->padded_cols + map[m * bc->padded_cols + c];
    return ((const uint8_t *)bc->scales.data)[at];
}

static double scale_value(const block_case *bc, int e, uint8_t byte) {
    if (bc->fmt == FMT_MX) return ldexp(1.0, byte - 127);
    return ref_e4m3_value(byte) / case_gs(bc, e);
}

/* Scale bytes of one block against the formula; returns the scale in the library's
 * byte (so code checks do not compound a scale difference). */
static void check_block_scale(const block_case *bc, int e, int64_t r, int64_t c, uint8_t byte,
                              ref_tally *t) {
    int64_t n = fmt_block(bc->fmt);
    double amax = row_amax(bc->x, r, c * n, n);
    if (bc->fmt == FMT_MX) {
        int want = ref_mx_exp(amax, bc->rule) + 127;
        ref_expect(t, byte == want, "row %lld block %lld: amax %.9g -> byte %d, formula %d",
                   (long long)r, (long long)c, amax, byte, want);
    } else {
        double target = case_gs(bc, e) * amax / 6.0;
        ref_expect(t, code_ok(FMT_MX, byte, target),
                   "row %lld block %lld: gs * amax / 6 = %.9g -> sf 0x%02x", (long long)r,
                   (long long)c, target, byte);
    }
}

/* Codes of one block given its scale byte. */
static void check_block_codes(const block_case *bc, int e, int64_t r, int64_t c, uint8_t byte,
                              ref_tally *t) {
    int64_t n = fmt_block(bc->fmt);
    double mult = scale_value(bc, e, byte);
    int amb;
    for (int64_t i = c * n; i < (c + 1) * n; i++) {
        uint8_t code = q_code(bc, r, i);
        double x = test_get(bc->x, r, i, 0);
        int ok;
        if (bc->fmt == FMT_NV && mult == 0.0)
            ok = code == 0;
        else if (isnan(x) || isnan(x / mult))
            ok = bc->fmt == FMT_MX ? (code & 0x7f) == 0x7f : (code & 7) == 7;
        else if (bc->fmt == FMT_MX) /* x / 2^exp is exact: ties are real ties, to even */
            ok = code == ref_e4m3(x / mult, &amb);
        else
            ok = code_ok(bc->fmt, code, x / mult);
        ref_expect(t, ok, "(%lld, %lld): x %.9g / %.9g -> code 0x%02x", (long long)r, (long long)i,
                   x, mult, code);
    }
}

/* Every byte of the scale buffer: real scales against the formula, padding 0, bytes
 * after the last block still poisoned; codes of covered rows; uncovered q rows untouched. */
static void check_quant(const block_case *bc, const char *what) {
    int64_t n = fmt_block(bc->fmt), blocks = bc->x->shape[1] / n;
    const uint8_t *s = bc->scales.data;
    int64_t end = 0;
    for (int e = 0; e < bc->experts; e++) {
        int64_t rows = (bc->ex[e].rows + 127) / 128 * 128;
        end = (bc->ex[e].block_row + rows) * bc->padded_cols;
    }
    int64_t *map = ref_swizzle_map((bc->x->shape[0] + 127) / 128 * 128, bc->padded_cols);
    ref_tally ts = {0}, tq = {0}, tpad = {0}, tpoison = {0}, tuncovered = {0};
    int any = 0;
    int8_t *covered = test_alloc((size_t)bc->x->shape[0] + 1);
    memset(covered, 0, (size_t)bc->x->shape[0] + 1);
    for (int e = 0; e < bc->experts; e++) {
        const ref_expert *ex = &bc->ex[e];
        int64_t padded_rows = (ex->rows + 127) / 128 * 128;
        for (int64_t m = 0; m < padded_rows; m++)
            for (int64_t c = 0; c < bc->padded_cols; c++) {
                uint8_t byte = scale_byte(bc, map, e, m, c);
                if (m >= ex->rows || c >= blocks) {
                    ref_expect(&tpad, byte == 0, "expert %d padding (%lld, %lld) = 0x%02x", e,
                               (long long)m, (long long)c, byte);
                    continue;
                }
                check_block_scale(bc, e, ex->begin + m, c, byte, &ts);
                check_block_codes(bc, e, ex->begin + m, c, byte, &tq);
            }
        for (int64_t m = 0; m < ex->rows; m++) covered[ex->begin + m] = 1;
        any |= ex->rows > 0;
    }
    int64_t total = bc->scales.shape[0] * bc->scales.shape[1];
    for (int64_t i = end; i < total; i++)
        ref_expect(&tpoison, s[i] == 0xff, "byte %lld after the last block = 0x%02x", (long long)i,
                   s[i]);
    for (int64_t r = 0; r < bc->q.shape[0]; r++)
        if (!covered[r])
            for (int64_t c = 0; c < bc->q.shape[1]; c++)
                ref_expect(&tuncovered, ((uint8_t *)bc->q.data)[r * bc->q.stride[0] + c] == 0xff,
                           "uncovered row %lld written", (long long)r);
    char name[160];
    snprintf(name, sizeof name, "%s scales", what);
    CHECK_TALLY(ts, name, any);
    snprintf(name, sizeof name, "%s codes", what);
    CHECK_TALLY(tq, name, any);
    snprintf(name, sizeof name, "%s padding", what);
    CHECK(tpad.bad == 0, "%s: %lld bad; first: %s", name, (long long)tpad.bad, tpad.first);
    snprintf(name, sizeof name, "%s after the last block", what);
    CHECK(tpoison.bad == 0, "%s: %lld bad; first: %s", name, (long long)tpoison.bad, tpoison.first);
    snprintf(name, sizeof name, "%s uncovered rows", what);
    CHECK(tuncovered.bad == 0, "%s: %lld bad; first: %s", name, (long long)tuncovered.bad,
          tuncovered.first);
}

/* Largest |deq - x| the format allows for element x given the block's multiplier:
 * half an e4m3 step (2^-4 relative, 2^-10 among subnormals) or half an e2m1 step
 * (0.25 relative, 0.25 near zero), plus what saturation cuts off. */
static double element_bound(block_fmt f, double x, double mult) {
    if (mult == 0.0) return fabs(x);
    double v = fabs(x / mult), limit = f == FMT_MX ? 448.0 : 6.0;
    double round = f == FMT_MX ? fmax(0x1p-4 * v, 0x1p-10) : fmax(0.25 * v, 0.25);
    return (round + fmax(0.0, v - limit)) * mult * (1 + 0x1p-16);
}

/* Dequantises and checks out == code * multiplier rounded once to out's dtype, the
 * per-element error bound, the NVFP4 per-block bound, and that uncovered rows of out are
 * not written. */
static void check_dequant(const block_case *bc, moe_dtype out_dtype, const char *what) {
    int64_t m = bc->x->shape[0], k = bc->x->shape[1], n = fmt_block(bc->fmt);
    moe_tensor out = test_tensor2(out_dtype, m, k);
    CHECK_OK(run_dequant(bc->fmt, &bc->q, &bc->scales, bc->offsets, bc->gs, &out));
    int64_t *map = ref_swizzle_map((m + 127) / 128 * 128, bc->padded_cols);
    ref_tally tout = {0}, terr = {0}, tblock = {0};
    int any = 0;
    int8_t *covered = test_alloc((size_t)m + 1);
    memset(covered, 0, (size_t)m + 1);
    for (int e = 0; e < bc->experts; e++)
        for (int64_t mm = 0; mm < bc->ex[e].rows; mm++) {
            int64_t r = bc->ex[e].begin + mm;
            covered[r] = any = 1;
            for (int64_t c = 0; c < k / n; c++) {
                uint8_t byte = scale_byte(bc, map, e, mm, c);
                double mult = scale_value(bc, e, byte), max_err = 0.0, amax = 0.0;
                int finite = 1;
                for (int64_t i = c * n; i < (c + 1) * n; i++) {
                    double x = test_get(bc->x, r, i, 0), got = test_get(&out, r, i, 0);
                    double deq = code_value(bc->fmt, q_code(bc, r, i)) * mult;
                    double want = (double)(float)deq;
                    finite &= isfinite(x);
                    if (!isfinite(want) || !isfinite(x)) {
                        ref_expect(&tout, isnan(want) ? isnan(got) : got == want,
                                   "(%lld, %lld): out %g, want %g", (long long)r, (long long)i, got,
                                   want);
                        continue;
                    }
                    ref_expect(&tout, fabs(got - want) <= ref_dtype_err(out_dtype, want),
                               "(%lld, %lld): out %.9g, code * scale %.9g", (long long)r,
                               (long long)i, got, want);
                    ref_expect(&terr, fabs(deq - x) <= element_bound(bc->fmt, x, mult),
                               "(%lld, %lld): x %.9g, dequant %.9g (scale %.9g)", (long long)r,
                               (long long)i, x, deq, mult);
                    max_err = fmax(max_err, fabs(deq - x));
                    amax = fmax(amax, fabs(x));
                }
                /* NVFP4: a block is off by at most half the widest e2m1 step (1) times its
                 * scale, and sf is amax * gs / 6 within an e4m3 half step */
                double target = case_gs(bc, e) * amax / 6.0;
                if (bc->fmt == FMT_NV && finite && target >= 0x1p-6 && target <= 448.0)
                    ref_expect(&tblock, max_err <= amax / 6.0 * (1 + 0x1p-4) * (1 + 0x1p-16),
                               "row %lld block %lld: max error %.9g, amax %.9g", (long long)r,
                               (long long)c, max_err, amax);
            }
        }
    ref_tally tun = {0};
    for (int64_t r = 0; r < m; r++)
        if (!covered[r])
            for (int64_t i = 0; i < k; i++)
                ref_expect(&tun, isnan(test_get(&out, r, i, 0)), "uncovered out row %lld written",
                           (long long)r);
    char name[160];
    snprintf(name, sizeof name, "%s dequant (%s)", what, moe_dtype_name(out_dtype));
    CHECK_TALLY(tout, name, any);
    snprintf(name, sizeof name, "%s dequant error", what);
    CHECK_TALLY(terr, name, any);
    snprintf(name, sizeof name, "%s block error", what);
    CHECK(tblock.bad == 0, "%s: %lld bad; first: %s", name, (long long)tblock.bad, tblock.first);
    snprintf(name, sizeof name, "%s uncovered out rows", what);
    CHECK(tun.bad == 0, "%s: %lld bad; first: %s", name, (long long)tun.bad, tun.first);
}

/* Quantises x with the offsets (NULL: one expert), checks everything, dequantises.
 * The experts' rows come from the offsets unless the case gives them (bc->experts > 0). */
static void run_case(block_case *bc, moe_dtype out_dtype, int64_t extra_rows, const char *what) {
    int64_t m = bc->x->shape[0], k = bc->x->shape[1];
    if (!bc->experts) bc->experts = ref_experts(bc->offsets, m, bc->ex);
    bc->cols = k / fmt_block(bc->fmt);
    bc->padded_cols = (bc->cols + 3) / 4 * 4;
    int64_t rows = moe_swizzled_scale_rows(m, bc->experts);
    bc->q = bc->fmt == FMT_MX ? test_tensor2(MOE_DTYPE_E4M3, m, k)
                              : test_tensor2(MOE_DTYPE_E2M1X2, m, k / 2);
    bc->scales = test_tensor2(bc->fmt == FMT_MX ? MOE_DTYPE_E8M0 : MOE_DTYPE_E4M3,
                              rows + extra_rows, bc->padded_cols);
    CHECK_OK(run_quant(bc->fmt, bc->x, bc->offsets, bc->rule, bc->gs, &bc->q, &bc->scales));
    check_quant(bc, what);
    check_dequant(bc, out_dtype, what);
}

/* Global scales as a caller would pick them, 448 * 6 / amax of the expert's rows, times a
 * random factor in [0.25, 1] so some blocks land among e4m3 subnormals. */
static moe_tensor make_gs(const moe_tensor *x, const moe_tensor *offsets) {
    ref_expert ex[MAX_E];
    int n = ref_experts(offsets, x->shape[0], ex);
    moe_tensor gs = test_tensor1(MOE_DTYPE_F32, n);
    for (int e = 0; e < n; e++) {
        double amax = 0.0;
        for (int64_t r = ex[e].begin; r < ex[e].begin + ex[e].rows; r++)
            amax = fmax(amax, row_amax(x, r, 0, x->shape[1]));
        test_set(&gs, e, 0, 0, (amax > 0 ? 2688.0 / amax : 1.0) * rng_uniform(0.25, 1.0));
    }
    return gs;
}

/* ---------------------------------------------------------------- tests */

static void test_mxfp8_random(void) {
    static const struct {
        moe_mx_rule rule;
        int experts; /* 0: offsets NULL */
        int64_t m, k, lead, tail;
        moe_dtype dt, out;
    } cases[] = {
        {MOE_MX_RULE_CEIL, 0, 300, 2048, 0, 0, MOE_DTYPE_BF16, MOE_DTYPE_F32},
        {MOE_MX_RULE_OCP, 1, 130, 256, 0, 0, MOE_DTYPE_F32, MOE_DTYPE_BF16},
        {MOE_MX_RULE_CEIL, 5, 48, 7168, 0, 0, MOE_DTYPE_F16, MOE_DTYPE_F16},
        {MOE_MX_RULE_OCP, 17, 300, 256, 0, 0, MOE_DTYPE_BF16, MOE_DTYPE_F32},
        {MOE_MX_RULE_CEIL, 3, 200, 160, 7, 9, MOE_DTYPE_F32, MOE_DTYPE_F32},
        {MOE_MX_RULE_OCP, 6, 257, 96, 0, 3, MOE_DTYPE_F16, MOE_DTYPE_F32},
        {MOE_MX_RULE_CEIL, 13, 290, 512, 2, 0, MOE_DTYPE_F16, MOE_DTYPE_BF16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moe_tensor x = test_tensor2(cases[i].dt, cases[i].m, cases[i].k), offsets;
        int wide = cases[i].dt != MOE_DTYPE_F16 && cases[i].out != MOE_DTYPE_F16;
        ref_fill(&x, 32, wide ? -100 : -8, wide ? 100 : 8);
        if (cases[i].experts)
            offsets = make_offsets(cases[i].experts, cases[i].m, cases[i].lead, cases[i].tail);
        block_case bc = {.fmt = FMT_MX,
                         .rule = cases[i].rule,
                         .x = &x,
                         .offsets = cases[i].experts ? &offsets : NULL,
                         .gs = NULL};
        char what[96];
        snprintf(what, sizeof what, "mxfp8 %s E=%d M=%lld K=%lld %s", moe_dtype_name(cases[i].dt),
                 cases[i].experts, (long long)cases[i].m, (long long)cases[i].k,
                 cases[i].rule == MOE_MX_RULE_CEIL ? "ceil" : "ocp");
        run_case(&bc, cases[i].out, (int64_t)i % 3, what);
    }
}

static void test_nvfp4_random(void) {
    static const struct {
        int experts; /* 0: offsets NULL */
        int64_t m, k, lead, tail;
        moe_dtype dt, out;
    } cases[] = {
        {0, 300, 2048, 0, 0, MOE_DTYPE_BF16, MOE_DTYPE_F32},
        {1, 129, 256, 0, 0, MOE_DTYPE_F32, MOE_DTYPE_BF16},
        {4, 40, 7168, 0, 0, MOE_DTYPE_F16, MOE_DTYPE_F16},
        {17, 300, 256, 0, 0, MOE_DTYPE_BF16, MOE_DTYPE_F32},
        {3, 200, 48, 5, 11, MOE_DTYPE_F32, MOE_DTYPE_F32},
        {7, 255, 96, 0, 1, MOE_DTYPE_F16, MOE_DTYPE_F32},
        {9, 280, 512, 1, 1, MOE_DTYPE_F32, MOE_DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moe_tensor x = test_tensor2(cases[i].dt, cases[i].m, cases[i].k), offsets;
        ref_fill(&x, 16, -8, 4);
        if (cases[i].experts)
            offsets = make_offsets(cases[i].experts, cases[i].m, cases[i].lead, cases[i].tail);
        const moe_tensor *off = cases[i].experts ? &offsets : NULL;
        moe_tensor gs = make_gs(&x, off);
        block_case bc = {
            .fmt = FMT_NV, .rule = MOE_MX_RULE_CEIL, .x = &x, .offsets = off, .gs = &gs};
        char what[96];
        snprintf(what, sizeof what, "nvfp4 %s E=%d M=%lld K=%lld", moe_dtype_name(cases[i].dt),
                 cases[i].experts, (long long)cases[i].m, (long long)cases[i].k);
        run_case(&bc, cases[i].out, (int64_t)i % 3, what);
    }
}

/* The library's index function against the walk over the buffer, and the row count. */
static void test_swizzle_layout(void) {
    static const int64_t cols[] = {1, 3, 4, 5, 8, 112, 224};
    int ok = 1;
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        int64_t pc = (cols[i] + 3) / 4 * 4, *map = ref_swizzle_map(384, pc);
        ok &= moe_swizzle_cols(cols[i]) == pc;
        for (int64_t block_row = 0; block_row <= 256; block_row += 128)
            for (int64_t m = 0; m < 384; m++)
                for (int64_t c = 0; c < pc; c++)
                    ok &=
                        moe_swizzle_index(block_row, m, c, pc) == block_row * pc + map[m * pc + c];
    }
    CHECK(ok, "moe_swizzle_index matches the tile walk");
    static const struct {
        int64_t m;
        int32_t e;
        int64_t want;
    } rows[] = {
        {0, 1, 128},
        {1, 1, 128},
        {2, 1, 256},
        {128, 1, 256},
        {300, 17, 2560},
        {0, 0, 0},
        {256, 0, 256},
        {5, 4, 640},
        {-1, 1, -1},
        {1, -1, -1},
        {INT64_MAX - 100, 1, -1},
        {INT64_MAX - 300, 1, INT64_MAX - 127},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t got = moe_swizzled_scale_rows(rows[i].m, rows[i].e);
        CHECK(got == rows[i].want, "moe_swizzled_scale_rows(%lld, %d) = %lld, want %lld",
              (long long)rows[i].m, rows[i].e, (long long)got, (long long)rows[i].want);
    }
}

/* The scale byte of block c of row 0 of a one-expert case. */
static uint8_t first_row_scale(const block_case *bc, int64_t c) {
    int64_t *map = ref_swizzle_map(128, bc->padded_cols);
    return scale_byte(bc, map, 0, 0, c);
}

/* Row 0 of an edge case: block 0 reaches the format's limit, block 1 is zero, block 2 has
 * a NaN, block 3 an Inf, block 4 tiny values; the rest stay random. */
static moe_tensor edge_input(moe_dtype dt, int64_t n, double limit, double tiny) {
    moe_tensor x = test_tensor2(dt, 2, n * 8);
    ref_fill(&x, n, -4, 0);
    test_set(&x, 0, 3, 0, limit);
    test_set(&x, 0, 7, 0, -limit);
    for (int64_t c = n; c < 2 * n; c++) test_set(&x, 0, c, 0, 0.0);
    test_set(&x, 0, 2 * n + 1, 0, NAN);
    test_set(&x, 0, 3 * n + 2, 0, INFINITY);
    for (int64_t c = 4 * n; c < 5 * n; c++)
        test_set(&x, 0, c, 0, tiny * rng_uniform(0.5, 1.0) * (c % 2 ? -1 : 1));
    return x;
}

static void test_mxfp8_edges(void) {
    for (int i = 0; i < 6; i++) {
        moe_dtype dt = REF_FLOAT_DTYPES[i % 3];
        moe_mx_rule rule = (moe_mx_rule)(i / 3);
        /* f32 and bf16 reach below 2^-127 (clamped exponent); f16 only to 2^-24 */
        moe_tensor x = edge_input(dt, 32, 448.0 * 8, dt == MOE_DTYPE_F16 ? 0x1p-20 : 0x1p-130);
        /* block 5: 500, past the limit of exponent 0 (saturates under OCP); block 6: normal
         * f32 values whose exponent falls below -127 and is clamped */
        test_set(&x, 0, 5 * 32 + 4, 0, 500.0);
        if (dt != MOE_DTYPE_F16)
            for (int64_t c = 6 * 32; c < 7 * 32; c++) test_set(&x, 0, c, 0, ref_random(-124, -122));
        block_case bc = {.fmt = FMT_MX, .rule = rule, .x = &x, .offsets = NULL, .gs = NULL};
        char what[64];
        snprintf(what, sizeof what, "mxfp8 edges %s %s", moe_dtype_name(dt),
                 rule == MOE_MX_RULE_CEIL ? "ceil" : "ocp");
        run_case(&bc, MOE_DTYPE_F32, 0, what);
        const uint8_t *q = bc.q.data;
        CHECK(first_row_scale(&bc, 0) == 127 + 3 && q[3] == 0x7e && q[7] == 0xfe,
              "%s: 448 * 2^3 -> exponent 3, codes 0x%02x 0x%02x", what, q[3], q[7]);
        int zeros = first_row_scale(&bc, 1) == 0;
        for (int c = 32; c < 64; c++) zeros &= q[c] == 0;
        CHECK(zeros, "%s: a zero block gets byte 0 and zero codes", what);
        CHECK((q[65] & 0x7f) == 0x7f && first_row_scale(&bc, 2) < 254,
              "%s: NaN stays NaN, the block keeps its scale", what);
        CHECK(first_row_scale(&bc, 3) == 254 && q[98] == 0x7e,
              "%s: an Inf gets exponent 127 and saturates (0x%02x)", what, q[98]);
        if (dt != MOE_DTYPE_F16)
            CHECK(first_row_scale(&bc, 4) == 0 && (q[4 * 32] & 0x7f) != 0,
                  "%s: values below 2^-127 get byte 0 and non-zero codes", what);
        int want5 = rule == MOE_MX_RULE_CEIL ? 127 + 1 : 127;
        if (dt != MOE_DTYPE_F16)
            CHECK(first_row_scale(&bc, 6) == 0, "%s: exponents below -127 are clamped", what);
        CHECK(first_row_scale(&bc, 5) == want5 && (rule == MOE_MX_RULE_CEIL || q[164] == 0x7e),
              "%s: 500 -> byte %d, code 0x%02x", what, first_row_scale(&bc, 5), q[164]);
    }
}

static uint8_t nibble_at(const moe_tensor *q, int64_t c) {
    uint8_t b = ((const uint8_t *)q->data)[c / 2];
    return (uint8_t)(c % 2 ? b >> 4 : b & 15);
}

static void test_nvfp4_edges(void) {
    for (int i = 0; i < 3; i++) {
        moe_dtype dt = REF_FLOAT_DTYPES[i];
        /* gs 1: 12 gives sf = 2 exactly and 12 / 2 = 6, the e2m1 limit */
        moe_tensor x = edge_input(dt, 16, 12.0, 1e-4), gs = test_tensor1(MOE_DTYPE_F32, 1);
        test_set(&gs, 0, 0, 0, 1.0);
        /* block 5: 12.6 gives sf = e4m3(2.1) = 2, so 6.3 saturates; block 6: sf subnormal */
        test_set(&x, 0, 5 * 16 + 4, 0, 12.6);
        for (int64_t c = 6 * 16; c < 7 * 16; c++) test_set(&x, 0, c, 0, 0.01 * rng_uniform(-1, 1));
        block_case bc = {
            .fmt = FMT_NV, .rule = MOE_MX_RULE_CEIL, .x = &x, .offsets = NULL, .gs = &gs};
        char what[64];
        snprintf(what, sizeof what, "nvfp4 edges %s", moe_dtype_name(dt));
        run_case(&bc, MOE_DTYPE_F32, 0, what);
        CHECK(first_row_scale(&bc, 0) == 0x40 && nibble_at(&bc.q, 3) == 7 &&
                  nibble_at(&bc.q, 7) == 15,
              "%s: 12 -> sf 2, codes %d %d", what, nibble_at(&bc.q, 3), nibble_at(&bc.q, 7));
        int zeros = first_row_scale(&bc, 1) == 0;
        for (int c = 16; c < 32; c++) zeros &= nibble_at(&bc.q, c) == 0;
        CHECK(zeros, "%s: a zero block gets sf 0 and zero codes", what);
        CHECK(nibble_at(&bc.q, 33) == 7, "%s: NaN encodes as +6", what);
        CHECK(first_row_scale(&bc, 3) == 0x7e && nibble_at(&bc.q, 50) == 7,
              "%s: an Inf saturates sf to 448 and itself to 6", what);
        zeros = first_row_scale(&bc, 4) == 0;
        for (int c = 64; c < 80; c++) zeros &= nibble_at(&bc.q, c) == 0;
        CHECK(zeros, "%s: tiny values give sf 0 and zero codes", what);
        CHECK(first_row_scale(&bc, 5) == 0x40 && nibble_at(&bc.q, 84) == 7,
              "%s: 12.6 saturates to 6 under sf 2", what);
        uint8_t sf6 = first_row_scale(&bc, 6);
        CHECK(sf6 != 0 && sf6 < 8, "%s: a subnormal sf (0x%02x)", what, sf6);
    }
}

/* Offsets that decrease or leave [0, M] (device data no check sees) are read as their
 * running maximum clamped to [0, M]: nothing is written outside q or past the blocks. */
static void test_block_bad_offsets(void) {
    static const struct {
        int64_t m;
        int n;
        int32_t off[6];
        ref_expert ex[5];
    } cases[] = {
        {200, 4, {5, 3, 400, -2, 150}, {{5, 0, 0}, {5, 195, 0}, {200, 0, 256}, {200, 0, 256}}},
        {80, 2, {-50, 100, 100}, {{0, 80, 0}, {80, 0, 128}}},
        {60, 3, {70, 80, 90, 100}, {{60, 0, 0}, {60, 0, 0}, {60, 0, 0}}},
        {0, 2, {0, 5, 10}, {{0, 0, 0}, {0, 0, 0}}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int f = 0; f < 2; f++) {
            int64_t k = f == FMT_MX ? 64 : 48;
            moe_tensor x = test_tensor2(MOE_DTYPE_BF16, cases[i].m, k);
            moe_tensor off = test_tensor1(MOE_DTYPE_I32, cases[i].n + 1);
            moe_tensor gs = test_tensor1(MOE_DTYPE_F32, cases[i].n);
            ref_fill(&x, 16, -3, 3);
            for (int e = 0; e <= cases[i].n; e++) test_set_i32(&off, e, 0, cases[i].off[e]);
            for (int e = 0; e < cases[i].n; e++) test_set(&gs, e, 0, 0, 100.0);
            block_case bc = {
                .fmt = (block_fmt)f, .rule = MOE_MX_RULE_OCP, .x = &x, .offsets = &off, .gs = &gs};
            bc.experts = cases[i].n;
            memcpy(bc.ex, cases[i].ex, sizeof cases[i].ex);
            char what[64];
            snprintf(what, sizeof what, "%s odd offsets %zu", f ? "nvfp4" : "mxfp8", i);
            run_case(&bc, MOE_DTYPE_BF16, 2, what);
        }
}

/* M = 0 with and without offsets: nothing is written. */
static void test_block_empty(void) {
    for (int f = 0; f < 2; f++)
        for (int with_offsets = 0; with_offsets < 2; with_offsets++) {
            moe_tensor x = test_tensor2(MOE_DTYPE_F16, 0, 64), off = test_tensor1(MOE_DTYPE_I32, 6);
            for (int e = 0; e < 6; e++) test_set_i32(&off, e, 0, 0);
            moe_tensor gs = test_tensor1(MOE_DTYPE_F32, with_offsets ? 5 : 1);
            for (int e = 0; e < gs.shape[0]; e++) test_set(&gs, e, 0, 0, 1.0);
            block_case bc = {.fmt = (block_fmt)f,
                             .rule = MOE_MX_RULE_CEIL,
                             .x = &x,
                             .offsets = with_offsets ? &off : NULL,
                             .gs = &gs};
            char what[64];
            snprintf(what, sizeof what, "%s M=0 offsets=%d", f ? "nvfp4" : "mxfp8", with_offsets);
            run_case(&bc, MOE_DTYPE_F32, 0, what);
        }
}

/* x, q and out with padded row strides give the contiguous result and leave the gaps
 * alone (the swizzled scales are always one contiguous buffer). */
static void test_block_strided(void) {
    const int64_t m = 150, k = 96;
    moe_tensor off = make_offsets(3, m, 2, 2), gs = test_tensor1(MOE_DTYPE_F32, 3);
    for (int e = 0; e < 3; e++) test_set(&gs, e, 0, 0, 50.0 * (e + 1));
    moe_tensor x = ref_padded(MOE_DTYPE_F32, m, k, 20), xc = test_tensor2(MOE_DTYPE_F32, m, k);
    ref_fill(&x, 16, -4, 2);
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < k; c++) test_set(&xc, r, c, 0, test_get(&x, r, c, 0));
    int64_t rows = moe_swizzled_scale_rows(m, 3);
    for (int f = 0; f < 2; f++) {
        moe_dtype qd = f == FMT_MX ? MOE_DTYPE_E4M3 : MOE_DTYPE_E2M1X2;
        int64_t qk = f == FMT_MX ? k : k / 2, cols = f == FMT_MX ? 4 : 8;
        moe_tensor q = ref_padded(qd, m, qk, 8), qc = test_tensor2(qd, m, qk);
        moe_dtype sd = f == FMT_MX ? MOE_DTYPE_E8M0 : MOE_DTYPE_E4M3;
        moe_tensor s = test_tensor2(sd, rows, cols), sc = test_tensor2(sd, rows, cols);
        moe_tensor out = ref_padded(MOE_DTYPE_BF16, m, k, 6),
                   outc = test_tensor2(MOE_DTYPE_BF16, m, k);
        CHECK_OK(run_quant((block_fmt)f, &x, &off, MOE_MX_RULE_CEIL, &gs, &q, &s));
        CHECK_OK(run_quant((block_fmt)f, &xc, &off, MOE_MX_RULE_CEIL, &gs, &qc, &sc));
        CHECK_OK(run_dequant((block_fmt)f, &q, &s, &off, &gs, &out));
        CHECK_OK(run_dequant((block_fmt)f, &qc, &sc, &off, &gs, &outc));
        CHECK(ref_same_bytes(&q, &qc) && ref_same_bytes(&s, &sc) && ref_same_bytes(&out, &outc),
              "%s: strided results equal contiguous ones", f ? "nvfp4" : "mxfp8");
        CHECK(ref_gaps_untouched(&q) && ref_gaps_untouched(&out), "%s: row gaps not written",
              f ? "nvfp4" : "mxfp8");
    }
}

/* ---------------------------------------------------------------- bad input */

static moe_mx_rule bad_rule;

static moe_status call_mx_quant(moe_tensor **a) {
    return moe_quant_mxfp8(test_cpu(), a[0], a[1], bad_rule, a[2], a[3], NULL);
}
static moe_status call_mx_dequant(moe_tensor **a) {
    return moe_dequant_mxfp8(test_cpu(), a[0], a[1], a[2], a[3], NULL);
}
static moe_status call_nv_quant(moe_tensor **a) {
    return moe_quant_nvfp4(test_cpu(), a[0], a[1], a[2], a[3], a[4], NULL);
}
static moe_status call_nv_dequant(moe_tensor **a) {
    return moe_dequant_nvfp4(test_cpu(), a[0], a[1], a[2], a[3], a[4], NULL);
}

/* Scales with a padded row stride: the right shape but not one contiguous buffer. */
static moe_tensor strided(moe_tensor t) {
    moe_tensor s = test_tensor2(t.dtype, t.shape[0], t.shape[1] + 4);
    s.shape[1] = t.shape[1];
    return s;
}

static void test_mxfp8_bad_input(void) {
    moe_context *ctx = test_cpu();
    const moe_status bad = MOE_ERR_INVALID_ARGUMENT;
    moe_tensor x = test_tensor2(MOE_DTYPE_F32, 10, 96), off = test_tensor1(MOE_DTYPE_I32, 3);
    moe_tensor q = test_tensor2(MOE_DTYPE_E4M3, 10, 96);
    moe_tensor s = test_tensor2(MOE_DTYPE_E8M0, moe_swizzled_scale_rows(10, 2), 4);
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, 10, 96);
    ref_fill(&x, 32, -2, 2);
    test_set_i32(&off, 0, 0, 0), test_set_i32(&off, 1, 0, 4), test_set_i32(&off, 2, 0, 10);
    CHECK_OK(moe_quant_mxfp8(ctx, &x, &off, MOE_MX_RULE_CEIL, &q, &s, NULL));
    CHECK_OK(moe_dequant_mxfp8(ctx, &q, &s, &off, &out, NULL));

    bad_rule = MOE_MX_RULE_CEIL;
    moe_tensor *qa[] = {&x, &off, &q, &s};
    static const char *const qn[] = {"x", "offsets", "q", "scales"};
    ref_tensor_faults(call_mx_quant, qa, qn, 4, 1u << 1, "moe_quant_mxfp8");
    moe_tensor *da[] = {&q, &s, &off, &out};
    static const char *const dn[] = {"q", "scales", "offsets", "out"};
    ref_tensor_faults(call_mx_dequant, da, dn, 4, 1u << 2, "moe_dequant_mxfp8");

    CHECK_ERR(moe_quant_mxfp8(NULL, &x, &off, MOE_MX_RULE_CEIL, &q, &s, NULL), bad, "ctx");
    CHECK_ERR(moe_dequant_mxfp8(NULL, &q, &s, &off, &out, NULL), bad, "ctx");
    for (int r = -1; r <= 2; r += 3)
        CHECK_ERR(moe_quant_mxfp8(ctx, &x, &off, (moe_mx_rule)r, &q, &s, NULL), bad, "rule");

    /* K a multiple of 32 */
    moe_tensor x48 = test_tensor2(MOE_DTYPE_F32, 10, 48),
               q48 = test_tensor2(MOE_DTYPE_E4M3, 10, 48);
    CHECK_ERR(moe_quant_mxfp8(ctx, &x48, &off, MOE_MX_RULE_CEIL, &q, &s, NULL), bad,
              "K (x columns)");
    CHECK_ERR(moe_dequant_mxfp8(ctx, &q48, &s, &off, &out, NULL), bad, "K (q columns)");

    /* offsets [E+1], E >= 1 */
    moe_tensor off1 = test_tensor1(MOE_DTYPE_I32, 1), off_huge = off;
    off_huge.shape[0] = (int64_t)INT32_MAX + 2;
    CHECK_ERR(moe_quant_mxfp8(ctx, &x, &off1, MOE_MX_RULE_CEIL, &q, &s, NULL), bad,
              "offsets.shape[0]");
    CHECK_ERR(moe_dequant_mxfp8(ctx, &q, &s, &off_huge, &out, NULL), bad, "offsets.shape[0]");

    /* q and out [M, K] */
    moe_tensor q9 = test_tensor2(MOE_DTYPE_E4M3, 9, 96), q64 = test_tensor2(MOE_DTYPE_E4M3, 10, 64);
    CHECK_ERR(moe_quant_mxfp8(ctx, &x, &off, MOE_MX_RULE_CEIL, &q9, &s, NULL), bad, "q.shape[0]");
    CHECK_ERR(moe_quant_mxfp8(ctx, &x, &off, MOE_MX_RULE_CEIL, &q64, &s, NULL), bad, "q.shape[1]");
    moe_tensor o9 = test_tensor2(MOE_DTYPE_F32, 9, 96), o64 = test_tensor2(MOE_DTYPE_F32, 10, 64);
    CHECK_ERR(moe_dequant_mxfp8(ctx, &q, &s, &off, &o9, NULL), bad, "out.shape[0]");
    CHECK_ERR(moe_dequant_mxfp8(ctx, &q, &s, &off, &o64, NULL), bad, "out.shape[1]");

    /* swizzled scales: rows for M and E (more are fine), K/32 rounded up to 4, contiguous,
     * e8m0 not e4m3 */
    moe_tensor s_few = test_tensor2(MOE_DTYPE_E8M0, moe_swizzled_scale_rows(10, 2) - 1, 4);
    moe_tensor s_one = test_tensor2(MOE_DTYPE_E8M0, moe_swizzled_scale_rows(10, 1), 4);
    moe_tensor s_wide = test_tensor2(MOE_DTYPE_E8M0, moe_swizzled_scale_rows(10, 2), 3);
    moe_tensor s_e4m3 = test_tensor2(MOE_DTYPE_E4M3, moe_swizzled_scale_rows(10, 2), 4);
    moe_tensor s_gap = strided(s);
    CHECK_ERR(moe_quant_mxfp8(ctx, &x, &off, MOE_MX_RULE_CEIL, &q, &s_few, NULL), bad,
              "scales.shape[0]");
    CHECK_OK(moe_quant_mxfp8(ctx, &x, NULL, MOE_MX_RULE_CEIL, &q, &s_one, NULL));
    CHECK_ERR(moe_dequant_mxfp8(ctx, &q, &s_one, &off, &out, NULL), bad,
              "moe_swizzled_scale_rows(M, E)");
    CHECK_ERR(moe_quant_mxfp8(ctx, &x, &off, MOE_MX_RULE_CEIL, &q, &s_wide, NULL), bad,
              "K / 32 rounded up to 4");
    CHECK_ERR(moe_dequant_mxfp8(ctx, &q, &s_wide, &off, &out, NULL), bad, "scales.shape[1]");
    CHECK_ERR(moe_quant_mxfp8(ctx, &x, &off, MOE_MX_RULE_CEIL, &q, &s_e4m3, NULL), bad,
              "scales has dtype e4m3");
    CHECK_ERR(moe_quant_mxfp8(ctx, &x, &off, MOE_MX_RULE_CEIL, &q, &s_gap, NULL), bad,
              "scales.stride[0]");
    CHECK_ERR(moe_dequant_mxfp8(ctx, &q, &s_gap, &off, &out, NULL), bad, "contiguous");

    /* M so large that the scale rows overflow */
    moe_tensor x_big = test_tensor2(MOE_DTYPE_F32, 1, 0),
               q_big = test_tensor2(MOE_DTYPE_E4M3, 1, 0);
    x_big.shape[0] = q_big.shape[0] = INT64_MAX - 10;
    CHECK_ERR(moe_quant_mxfp8(ctx, &x_big, NULL, MOE_MX_RULE_CEIL, &q_big, &s, NULL), bad,
              "overflows");
}

static void test_nvfp4_bad_input(void) {
    moe_context *ctx = test_cpu();
    const moe_status bad = MOE_ERR_INVALID_ARGUMENT;
    moe_tensor x = test_tensor2(MOE_DTYPE_F16, 10, 48), off = test_tensor1(MOE_DTYPE_I32, 3);
    moe_tensor gs = test_tensor1(MOE_DTYPE_F32, 2), q = test_tensor2(MOE_DTYPE_E2M1X2, 10, 24);
    moe_tensor s = test_tensor2(MOE_DTYPE_E4M3, moe_swizzled_scale_rows(10, 2), 4);
    moe_tensor out = test_tensor2(MOE_DTYPE_F32, 10, 48);
    ref_fill(&x, 16, -2, 2);
    test_set_i32(&off, 0, 0, 0), test_set_i32(&off, 1, 0, 4), test_set_i32(&off, 2, 0, 10);
    test_set(&gs, 0, 0, 0, 100.0), test_set(&gs, 1, 0, 0, 200.0);
    CHECK_OK(moe_quant_nvfp4(ctx, &x, &off, &gs, &q, &s, NULL));
    CHECK_OK(moe_dequant_nvfp4(ctx, &q, &s, &off, &gs, &out, NULL));

    moe_tensor *qa[] = {&x, &off, &gs, &q, &s};
    static const char *const qn[] = {"x", "offsets", "global_scale", "q", "scales"};
    ref_tensor_faults(call_nv_quant, qa, qn, 5, 1u << 1, "moe_quant_nvfp4");
    moe_tensor *da[] = {&q, &s, &off, &gs, &out};
    static const char *const dn[] = {"q", "scales", "offsets", "global_scale", "out"};
    ref_tensor_faults(call_nv_dequant, da, dn, 5, 1u << 2, "moe_dequant_nvfp4");

    CHECK_ERR(moe_quant_nvfp4(NULL, &x, &off, &gs, &q, &s, NULL), bad, "ctx");
    CHECK_ERR(moe_dequant_nvfp4(NULL, &q, &s, &off, &gs, &out, NULL), bad, "ctx");

    /* K a multiple of 16 */
    moe_tensor x40 = test_tensor2(MOE_DTYPE_F16, 10, 40), o40 = test_tensor2(MOE_DTYPE_F32, 10, 40);
    CHECK_ERR(moe_quant_nvfp4(ctx, &x40, &off, &gs, &q, &s, NULL), bad, "K (x columns)");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q, &s, &off, &gs, &o40, NULL), bad, "K (out columns)");

    /* offsets [E+1] and global_scale [E] (E = 1 without offsets) */
    moe_tensor off1 = test_tensor1(MOE_DTYPE_I32, 1), gs3 = test_tensor1(MOE_DTYPE_F32, 3);
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, &off1, &gs, &q, &s, NULL), bad, "offsets.shape[0]");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q, &s, &off1, &gs, &out, NULL), bad, "offsets.shape[0]");
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, &off, &gs3, &q, &s, NULL), bad, "global_scale.shape[0]");
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, NULL, &gs, &q, &s, NULL), bad, "global_scale.shape[0] (2)");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q, &s, &off, &gs3, &out, NULL), bad, "global_scale.shape[0]");

    /* q [M, K/2] bytes, out [M, K] */
    moe_tensor q9 = test_tensor2(MOE_DTYPE_E2M1X2, 9, 24),
               q48 = test_tensor2(MOE_DTYPE_E2M1X2, 10, 48);
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, &off, &gs, &q9, &s, NULL), bad, "q.shape[0]");
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, &off, &gs, &q48, &s, NULL), bad, "K / 2");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q9, &s, &off, &gs, &out, NULL), bad, "q.shape[0]");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q48, &s, &off, &gs, &out, NULL), bad, "q.shape[1]");

    /* swizzled scales: rows, K/16 rounded up to 4, contiguous, e4m3 not e8m0 */
    moe_tensor s_few = test_tensor2(MOE_DTYPE_E4M3, moe_swizzled_scale_rows(10, 2) - 1, 4);
    moe_tensor s_wide = test_tensor2(MOE_DTYPE_E4M3, moe_swizzled_scale_rows(10, 2), 8);
    moe_tensor s_e8m0 = test_tensor2(MOE_DTYPE_E8M0, moe_swizzled_scale_rows(10, 2), 4);
    moe_tensor s_gap = strided(s);
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, &off, &gs, &q, &s_few, NULL), bad, "scales.shape[0]");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q, &s_few, &off, &gs, &out, NULL), bad, "scales.shape[0]");
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, &off, &gs, &q, &s_wide, NULL), bad,
              "K / 16 rounded up to 4");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q, &s_wide, &off, &gs, &out, NULL), bad, "scales.shape[1]");
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, &off, &gs, &q, &s_e8m0, NULL), bad, "scales has dtype e8m0");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q, &s_e8m0, &off, &gs, &out, NULL), bad, "scales has dtype");
    CHECK_ERR(moe_quant_nvfp4(ctx, &x, &off, &gs, &q, &s_gap, NULL), bad, "scales.stride[0]");
    CHECK_ERR(moe_dequant_nvfp4(ctx, &q, &s_gap, &off, &gs, &out, NULL), bad, "scales.stride[0]");

    moe_tensor x_big = test_tensor2(MOE_DTYPE_F32, 1, 0),
               q_big = test_tensor2(MOE_DTYPE_E2M1X2, 1, 0);
    moe_tensor gs1 = test_tensor1(MOE_DTYPE_F32, 1);
    x_big.shape[0] = q_big.shape[0] = INT64_MAX - 10;
    CHECK_ERR(moe_quant_nvfp4(ctx, &x_big, NULL, &gs1, &q_big, &s, NULL), bad, "overflows");
}

void suite_quant_block(void) {
    RUN(test_swizzle_layout);
    RUN(test_mxfp8_random);
    RUN(test_nvfp4_random);
    RUN(test_mxfp8_edges);
    RUN(test_nvfp4_edges);
    RUN(test_block_bad_offsets);
    RUN(test_block_empty);
    RUN(test_block_strided);
    RUN(test_mxfp8_bad_input);
    RUN(test_nvfp4_bad_input);
}
