/* Activation (SPEC 5): silu_and_mul against float64 for every input and output format,
 * the fused FP8 variant against a float64 quantisation (and bit for bit against the shared
 * row quantiser), unwritten padding, and every argument check. */
#include <math.h>
#include <string.h>

#include "../src/cpu/cpu.h" /* moe_cpu_quant_fp8_row: the fused op must round as it does */
#include "harness.h"

static const moe_dtype FLOATS[3] = {MOE_DTYPE_F32, MOE_DTYPE_F16, MOE_DTYPE_BF16};

/* A [rows, cols] tensor whose rows are pad elements longer: the padding stays poisoned. */
static moe_tensor padded2(moe_dtype dtype, int64_t rows, int64_t cols, int64_t pad) {
    moe_tensor t = test_tensor2(dtype, rows, cols + pad);
    t.shape[1] = cols;
    return t;
}

/* Number of padding bytes (columns shape[1]..stride[0]-1 of each row) no longer 0xFF. */
static int64_t padding_written(const moe_tensor *t) {
    int64_t size = (int64_t)moe_dtype_size(t->dtype), n = 0;
    for (int64_t m = 0; m < t->shape[0]; m++) {
        const uint8_t *row = (const uint8_t *)t->data + m * t->stride[0] * size;
        for (int64_t b = t->shape[1] * size; b < t->stride[0] * size; b++) n += row[b] != 0xFFu;
    }
    return n;
}

static double silu_mul_ref(double a, double b) { return a / (1.0 + exp(-a)) * b; }

/* in [M, 2I] with N(0, sigma) values; row 0 also gets gates far out in both tails, where
 * e^-a overflows f32 or the result underflows. */
static moe_tensor make_input(moe_dtype dtype, int64_t m, int64_t i, double sigma) {
    moe_tensor in = padded2(dtype, m, 2 * i, 5);
    test_fill_normal(&in, sigma);
    static const double tails[] = {30.0, -30.0, 88.0, -88.0, -89.5, -100.0, 0.0};
    for (size_t c = 0; m > 0 && c < sizeof tails / sizeof tails[0] && (int64_t)c < i; c++)
        test_set(&in, 0, (int64_t)c, 0, tails[c]);
    return in;
}

/* ------------------------------------------------------------------ silu_and_mul */

/* Error allowed on top of the one output rounding: f32 keeps a few ulp of exp, divide and
 * multiply; bf16 and f16 add half an ulp of their own. abs covers results in the
 * subnormal range (and -0 where f32's e^-a overflowed). */
static void tolerance(moe_dtype out, double *rel, double *abs_tol) {
    *rel = out == MOE_DTYPE_F32 ? 2e-6 : out == MOE_DTYPE_BF16 ? 1.0 / 256 : 1.0 / 1024;
    *abs_tol = out == MOE_DTYPE_F16 ? 6e-8 : 1e-35;
}

static void check_silu(moe_dtype in_dt, moe_dtype out_dt, int64_t m, int64_t i) {
    moe_tensor in = make_input(in_dt, m, i, 3.0);
    if (m > 1 && i > 9) test_set(&in, 1, 9, 0, NAN); /* a NaN gate stays NaN */
    moe_tensor out = padded2(out_dt, m, i, 3);
    CHECK_OK(moe_silu_and_mul(test_cpu(), &in, &out, NULL));
    double rel, abs_tol;
    tolerance(out_dt, &rel, &abs_tol);
    int64_t bad = 0, first_r = -1, first_c = -1;
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < i; c++) {
            double want = silu_mul_ref(test_get(&in, r, c, 0), test_get(&in, r, i + c, 0));
            double got = test_get(&out, r, c, 0);
            int ok = isnan(want) ? isnan(got) : fabs(got - want) <= rel * fabs(want) + abs_tol;
            if (!ok && bad++ == 0) first_r = r, first_c = c;
        }
    CHECK(bad == 0, "%s -> %s [%lld, %lld]: %lld elements off, first at (%lld, %lld)",
          moe_dtype_name(in_dt), moe_dtype_name(out_dt), (long long)m, (long long)i,
          (long long)bad, (long long)first_r, (long long)first_c);
    CHECK(padding_written(&out) == 0, "%s -> %s: padding of out written",
          moe_dtype_name(in_dt), moe_dtype_name(out_dt));
}

static void test_silu_and_mul(void) {
    /* 2500 columns exceed the CPU's 2048-value row buffer */
    static const int64_t shapes[][2] = {{0, 4}, {1, 1}, {3, 8}, {17, 100}, {2, 2500}};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                check_silu(FLOATS[a], FLOATS[b], shapes[s][0], shapes[s][1]);
}

/* ------------------------------------------------------------------ fused FP8 */

/* The 127 non-negative finite e4m3 values in ascending order, from the format's
 * definition; value[c] is code c's magnitude. */
static void e4m3_values(double *value) {
    for (int code = 0; code < 127; code++) {
        int e = code >> 3, man = code & 7;
        value[code] = e == 0 ? man / 512.0 : ldexp(1.0 + man / 8.0, e - 7);
    }
}

/* Whether code is a round-to-nearest e4m3 of v (saturating at 448); within a relative
 * 2e-6 of a midpoint either neighbour will do, since the op rounds an f32 quotient. */
static int is_nearest(uint8_t code, double v, const double *value) {
    if ((code & 0x7fu) == 0x7fu) return 0;
    double mag = fabs(v), got = value[code & 0x7fu];
    if (got != 0.0 && ((code & 0x80u) != 0) != (v < 0)) return 0;
    if (mag >= 448.0) return got == 448.0;
    int lo = 0;
    while (lo < 125 && value[lo + 1] <= mag) lo++;
    double mid = 0.5 * (value[lo] + value[lo + 1]), slack = 2e-6 * mag;
    if (mag < mid - slack) return got == value[lo];
    if (mag > mid + slack) return got == value[lo + 1];
    return got == value[lo] || got == value[lo + 1];
}

/* Whether got is the group scale SPEC 3 gives for amax (float64), allowing f32's
 * rounding of amax / 448 and, with ue8m0, either power of two when amax / 448 is one. */
static int is_scale(double got, double amax, const moe_fp8_group_params *p) {
    double s = (amax > p->eps ? amax : p->eps) / 448.0;
    if (!p->ue8m0) return fabs(got - s) <= 4e-6 * s;
    double l = log2(s), k = ceil(l);
    if (fabs(l - round(l)) < 1e-5) return got == ldexp(1.0, (int)round(l)) ||
                                          got == ldexp(1.0, (int)round(l) + 1);
    return got == ldexp(1.0, (int)k);
}

typedef struct fused_case {
    int64_t m, i;
    int32_t group, ue8m0;
    moe_scale_layout layout;
    moe_dtype in;
} fused_case;

static float *scale_at(const moe_tensor *s, const moe_fp8_group_params *p, int64_t r,
                       int64_t g) {
    int64_t i0 = p->layout == MOE_SCALES_ROW_MAJOR ? r : g;
    int64_t i1 = p->layout == MOE_SCALES_ROW_MAJOR ? g : r;
    return (float *)s->data + i0 * s->stride[0] + i1;
}

/* Checks row r's codes and scales against float64, and bit for bit against
 * moe_cpu_quant_fp8_row of the row computed in f32 as SPEC 5 says. Returns the number of
 * elements or scales that failed. */
static int64_t check_fused_row(const moe_tensor *in, const moe_fp8_group_params *p,
                               const moe_tensor *q, const moe_tensor *s, int64_t r,
                               const double *value) {
    int64_t i = q->shape[1], groups = i / p->group, bad = 0;
    const uint8_t *codes = (const uint8_t *)q->data + r * q->stride[0];
    float *y = test_alloc((size_t)i * sizeof *y);
    uint8_t *want_q = test_alloc((size_t)i);
    float *want_s = test_alloc((size_t)groups * sizeof *want_s);
    for (int64_t c = 0; c < i; c++) {
        float a = (float)test_get(in, r, c, 0), b = (float)test_get(in, r, i + c, 0);
        y[c] = a / (1.0f + expf(-a)) * b;
    }
    moe_cpu_quant_fp8_row(y, i, p, want_q, want_s, 1);
    for (int64_t g = 0; g < groups; g++) {
        double amax = 0.0, scale = *scale_at(s, p, r, g);
        int64_t c0 = g * p->group;
        for (int64_t c = c0; c < c0 + p->group; c++)
            amax = fmax(amax, fabs(silu_mul_ref(test_get(in, r, c, 0), test_get(in, r, i + c, 0))));
        bad += !is_scale(scale, amax, p) || (float)scale != want_s[g];
        for (int64_t c = c0; c < c0 + p->group; c++) {
            double v = silu_mul_ref(test_get(in, r, c, 0), test_get(in, r, i + c, 0)) / scale;
            bad += !is_nearest(codes[c], v, value) || codes[c] != want_q[c];
        }
    }
    return bad;
}

static void check_fused(const fused_case *fc) {
    moe_fp8_group_params p = {fc->group, 1e-10f, fc->ue8m0, fc->layout};
    moe_tensor in = make_input(fc->in, fc->m, fc->i, 2.0);
    /* an all-zero group: its scale falls back to eps / 448 and its codes are zeros */
    for (int64_t c = 0; fc->m > 1 && c < fc->group; c++) test_set(&in, 1, c, 0, 0.0);
    moe_tensor q = padded2(MOE_DTYPE_E4M3, fc->m, fc->i, 16);
    int64_t groups = fc->i / fc->group, m4 = (fc->m + 3) / 4 * 4;
    moe_tensor s = fc->layout == MOE_SCALES_ROW_MAJOR ? test_tensor2(MOE_DTYPE_F32, fc->m, groups)
                                                      : test_tensor2(MOE_DTYPE_F32, groups, m4);
    CHECK_OK(moe_silu_and_mul_quant_fp8(test_cpu(), &in, &p, &q, &s, NULL));
    double value[127];
    e4m3_values(value);
    int64_t bad = 0;
    for (int64_t r = 0; r < fc->m; r++) bad += check_fused_row(&in, &p, &q, &s, r, value);
    CHECK(bad == 0, "M=%lld I=%lld group=%d ue8m0=%d layout=%d %s: %lld codes or scales off",
          (long long)fc->m, (long long)fc->i, (int)fc->group, (int)fc->ue8m0, (int)fc->layout,
          moe_dtype_name(fc->in), (long long)bad);
    CHECK(padding_written(&q) == 0, "M=%lld I=%lld: padding of q written", (long long)fc->m,
          (long long)fc->i);
    if (fc->m > 1) {
        float zero_scale = *scale_at(&s, &p, 1, 0);
        const uint8_t *codes = (const uint8_t *)q.data + q.stride[0];
        int zeros = 1;
        for (int64_t c = 0; c < fc->group; c++) zeros &= (codes[c] & 0x7fu) == 0;
        CHECK(zeros && is_scale(zero_scale, 0.0, &p), "zero group: scale %g, codes not 0",
              (double)zero_scale);
    }
}

static void test_silu_and_mul_quant_fp8(void) {
    static const fused_case cases[] = {
        {5, 256, 128, 0, MOE_SCALES_ROW_MAJOR, MOE_DTYPE_BF16},
        {5, 256, 128, 1, MOE_SCALES_COL_MAJOR, MOE_DTYPE_BF16},
        {7, 384, 64, 1, MOE_SCALES_ROW_MAJOR, MOE_DTYPE_F32},
        {1, 128, 32, 0, MOE_SCALES_COL_MAJOR, MOE_DTYPE_F16},
        {6, 48, 16, 1, MOE_SCALES_COL_MAJOR, MOE_DTYPE_F16},
        {0, 128, 128, 0, MOE_SCALES_ROW_MAJOR, MOE_DTYPE_BF16},
        /* rows longer than the CPU's 2048-value buffer, then groups wider than it */
        {2, 6144, 128, 0, MOE_SCALES_COL_MAJOR, MOE_DTYPE_BF16},
        {3, 8192, 4096, 1, MOE_SCALES_ROW_MAJOR, MOE_DTYPE_F32},
        {2, 6000, 3000, 0, MOE_SCALES_COL_MAJOR, MOE_DTYPE_BF16},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) check_fused(&cases[c]);
}

/* ------------------------------------------------------------------ bad input */

static void test_silu_and_mul_bad_input(void) {
    const moe_status BAD = MOE_ERR_INVALID_ARGUMENT;
    moe_context *ctx = test_cpu();
    moe_tensor in = test_tensor2(MOE_DTYPE_BF16, 4, 16), out = test_tensor2(MOE_DTYPE_F32, 4, 8);
    CHECK_OK(moe_silu_and_mul(ctx, &in, &out, NULL));
    CHECK_ERR(moe_silu_and_mul(NULL, &in, &out, NULL), BAD, "ctx");
    CHECK_ERR(moe_silu_and_mul(ctx, NULL, &out, NULL), BAD, "in is NULL");
    CHECK_ERR(moe_silu_and_mul(ctx, &in, NULL, NULL), BAD, "out is NULL");
    moe_tensor t = in;
    t.dtype = MOE_DTYPE_E4M3;
    CHECK_ERR(moe_silu_and_mul(ctx, &t, &out, NULL), BAD, "in has dtype e4m3");
    t = in;
    t.rank = 3;
    CHECK_ERR(moe_silu_and_mul(ctx, &t, &out, NULL), BAD, "in has rank 3");
    t = in;
    t.stride[1] = 2;
    CHECK_ERR(moe_silu_and_mul(ctx, &t, &out, NULL), BAD, "in.stride[1]");
    t = out;
    t.dtype = MOE_DTYPE_I32;
    CHECK_ERR(moe_silu_and_mul(ctx, &in, &t, NULL), BAD, "out has dtype i32");
    t = out;
    t.rank = 1;
    CHECK_ERR(moe_silu_and_mul(ctx, &in, &t, NULL), BAD, "out has rank 1");
    t = out;
    t.shape[0] = 3;
    CHECK_ERR(moe_silu_and_mul(ctx, &in, &t, NULL), BAD, "out.shape[0] (3) must equal M");
    t = out;
    t.shape[1] = 7;
    CHECK_ERR(moe_silu_and_mul(ctx, &in, &t, NULL), BAD, "in.shape[1] (16) must equal 2 * I");
    t = in;
    t.shape[1] = 15; /* odd */
    CHECK_ERR(moe_silu_and_mul(ctx, &t, &out, NULL), BAD, "in.shape[1] (15) must equal 2 * I");
    t = in;
    t.data = NULL;
    CHECK_ERR(moe_silu_and_mul(ctx, &t, &out, NULL), BAD, "in.data is NULL");
}

static void test_silu_and_mul_quant_fp8_bad_input(void) {
    const moe_status BAD = MOE_ERR_INVALID_ARGUMENT;
    moe_context *ctx = test_cpu();
    moe_tensor in = test_tensor2(MOE_DTYPE_BF16, 6, 512);
    moe_tensor q = test_tensor2(MOE_DTYPE_E4M3, 6, 256);
    moe_tensor s = test_tensor2(MOE_DTYPE_F32, 6, 2);
    moe_fp8_group_params p = {128, 1e-10f, 0, MOE_SCALES_ROW_MAJOR};
    memset(in.data, 0, 6 * 512 * 2);
    CHECK_OK(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &q, &s, NULL));
    CHECK_ERR(moe_silu_and_mul_quant_fp8(NULL, &in, &p, &q, &s, NULL), BAD, "ctx");
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, NULL, &p, &q, &s, NULL), BAD, "in is NULL");
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, NULL, &q, &s, NULL), BAD, "params is NULL");
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, NULL, &s, NULL), BAD, "q is NULL");
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &q, NULL, NULL), BAD, "scales is NULL");
    moe_tensor t = in;
    t.dtype = MOE_DTYPE_I32;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &t, &p, &q, &s, NULL), BAD, "in has dtype i32");
    t = q;
    t.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &t, &s, NULL), BAD, "q has dtype bf16");
    t = q;
    t.rank = 3;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &t, &s, NULL), BAD, "q has rank 3");
    t = q;
    t.shape[0] = 5;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &t, &s, NULL), BAD,
              "q.shape[0] (5) must equal M");
    t = q;
    t.shape[1] = 128;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &t, &s, NULL), BAD,
              "in.shape[1] (512) must equal 2 * I");
    moe_fp8_group_params bp = p;
    bp.group = 0;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &bp, &q, &s, NULL), BAD, "params->group (0)");
    bp = p;
    bp.group = 96;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &bp, &q, &s, NULL), BAD,
              "K (columns) (256) must be a multiple of 96");
    bp = p;
    bp.eps = 0.0f;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &bp, &q, &s, NULL), BAD, "params->eps");
    bp = p;
    bp.layout = (moe_scale_layout)5;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &bp, &q, &s, NULL), BAD, "params->layout (5)");
    t = s;
    t.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &q, &t, NULL), BAD,
              "scales has dtype bf16");
    t = s;
    t.shape[0] = 4;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &q, &t, NULL), BAD,
              "scales.shape[0] (4) must equal M");
    t = s;
    t.shape[1] = 1;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &p, &q, &t, NULL), BAD,
              "scales.shape[1] (1) must equal K / group");
    /* column-major wants [I / group, M rounded up to 4] = [2, 8] */
    bp = p;
    bp.layout = MOE_SCALES_COL_MAJOR;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &bp, &q, &s, NULL), BAD,
              "scales.shape[0] (6) must equal K / group");
    moe_tensor sc = test_tensor2(MOE_DTYPE_F32, 2, 8);
    CHECK_OK(moe_silu_and_mul_quant_fp8(ctx, &in, &bp, &q, &sc, NULL));
    sc.shape[1] = 6;
    CHECK_ERR(moe_silu_and_mul_quant_fp8(ctx, &in, &bp, &q, &sc, NULL), BAD,
              "scales.shape[1] (6) must equal M rounded up to 4 (8)");
}

void suite_activation(void) {
    RUN(test_silu_and_mul);
    RUN(test_silu_and_mul_quant_fp8);
    RUN(test_silu_and_mul_bad_input);
    RUN(test_silu_and_mul_quant_fp8_bad_input);
}
