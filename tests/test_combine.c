/* Combine (SPEC 6) against a float64 sum, for every y/out dtype pair, at DeepSeek-V3-like
 * sizes, with inv_perm entries that are -1, past the last row of y, or between T and R
 * (the seed kernel compared rows with T instead of R). */
#include <math.h>
#include <string.h>

#include "combine_check.h"
#include "harness.h"
#include "../src/common/formats.h"

/* ---------------------------------------------------------------- reference */

/* Unit roundoff of one rounding to the dtype: 2^-(significand bits). */
static double unit_roundoff(moe_dtype d) {
    switch (d) {
    case MOE_DTYPE_F16: return 0x1p-11;
    case MOE_DTYPE_BF16: return 0x1p-8;
    default: return 0x1p-24;
    }
}

/* A result below the dtype's normal range rounds to a subnormal step, an absolute error
 * of half that step at most. */
static double subnormal_slack(moe_dtype d) { return d == MOE_DTYPE_F16 ? 0x1p-25 : 0x1p-150; }

static int row_used(int32_t row, int64_t rows) { return row >= 0 && row < rows; }

/* The SPEC's own arithmetic: f32 products, summed in j order, times scale, rounded once.
 * The product is its own statement so that no compiler fuses it into an FMA. */
static double spec_f32(const moe_tensor *y, const moe_tensor *inv, const moe_tensor *w,
                       float scale, moe_dtype out, int64_t t, int64_t h) {
    int64_t kp = w->shape[1];
    float acc = 0.0f;
    for (int64_t j = 0; j < kp; j++) {
        int32_t row = test_get_i32(inv, t * kp + j, 0);
        if (!row_used(row, y->shape[0])) continue;
        float term = (float)test_get(w, t, j, 0) * (float)test_get(y, row, h, 0);
        acc += term;
    }
    float v = scale * acc;
    if (out == MOE_DTYPE_F16) return moe_f16_to_f32(moe_f32_to_f16(v));
    if (out == MOE_DTYPE_BF16) return moe_bf16_to_f32(moe_f32_to_bf16(v));
    return v;
}

/* Compares every element of out with the float64 sum. The library sums k' f32 products
 * (error <= k' u32 sum|w y|), scales in f32 (one more u32) and rounds once to out's dtype
 * (u_out relative): the tolerance is that bound, with sum|w y| rather than |sum| so
 * that cancellation does not make it too tight. Also checks the result is exactly the
 * SPEC's f32 j-order arithmetic. */
static void check_combine(const moe_tensor *y, const moe_tensor *inv, const moe_tensor *w,
                          float scale, const moe_tensor *out, const char *what) {
    int64_t tokens = out->shape[0], cols = out->shape[1], kp = w->shape[1];
    double u_out = unit_roundoff(out->dtype), slack = subnormal_slack(out->dtype);
    int64_t bad = 0, inexact = 0, bt = 0, bh = 0;
    double worst_got = 0, worst_want = 0;
    for (int64_t t = 0; t < tokens; t++) {
        for (int64_t h = 0; h < cols; h++) {
            double sum = 0, abs_sum = 0;
            for (int64_t j = 0; j < kp; j++) {
                int32_t row = test_get_i32(inv, t * kp + j, 0);
                if (!row_used(row, y->shape[0])) continue;
                double term = test_get(w, t, j, 0) * test_get(y, row, h, 0);
                sum += term;
                abs_sum += fabs(term);
            }
            double want = (double)scale * sum;
            double f32_err = (double)(kp + 1) * 0x1p-24 * fabs((double)scale) * abs_sum * 1.01;
            double tol = f32_err + u_out * (fabs(want) + f32_err) + slack;
            double got = test_get(out, t, h, 0);
            if (!(fabs(got - want) <= tol)) {
                if (!bad) bt = t, bh = h, worst_got = got, worst_want = want;
                bad++;
            }
            if (got != spec_f32(y, inv, w, scale, out->dtype, t, h)) inexact++;
        }
    }
    CHECK(!bad, "%s (%s -> %s): %lld elements off, first out[%lld, %lld] = %.9g, want %.9g",
          what, moe_dtype_name(y->dtype), moe_dtype_name(out->dtype), (long long)bad,
          (long long)bt, (long long)bh, worst_got, worst_want);
    CHECK(!inexact, "%s (%s -> %s): %lld elements differ from the f32 j-order sum", what,
          moe_dtype_name(y->dtype), moe_dtype_name(out->dtype), (long long)inexact);
}

/* ---------------------------------------------------------------- data */


/* ---------------------------------------------------------------- tests */

/* The layer's shape: T = 512, k' = 9 (8 routed + 1 shared), E' = 257, H = 1024, with
 * inv_perm from a real plan over random ids (some -1 and out of range). */
static void test_combine_model(void) {
    int64_t tokens = 512, h = 1024;
    int32_t kp = 9, experts = 257;
    moe_context *ctx = test_cpu();
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, tokens, kp);
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < kp; j++) {
            int64_t u = rng_int(0, 99);
            int32_t id = u < 4 ? -1 : u < 6 ? experts + 5 : (int32_t)rng_int(0, experts - 1);
            test_set_i32(&ids, t, j, id);
        }
    int64_t rows = moe_permute_max_rows(tokens, kp, experts, 1);
    moe_tensor offsets = test_tensor1(MOE_DTYPE_I32, experts + 1);
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, rows);
    moe_tensor inv = test_tensor1(MOE_DTYPE_I32, tokens * kp);
    size_t bytes;
    CHECK_OK(moe_permute_workspace_size(ctx, tokens, kp, experts, &bytes));
    void *ws = test_alloc(bytes);
    CHECK_OK(moe_permute_plan(ctx, &ids, experts, 1, NULL, &offsets, &perm, &inv, ws, bytes,
                              NULL));
    moe_tensor y = test_tensor2(MOE_DTYPE_BF16, rows, h);
    test_fill_normal(&y, 1.0);
    moe_tensor w = combine_random_weights(tokens, kp, kp, 0.0, 1.0);
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, tokens, h);
    CHECK_OK(moe_combine(ctx, &y, &inv, &w, 2.5f, &out, NULL));
    check_combine(&y, &inv, &w, 2.5f, &out, "T=512 k'=9 H=1024");
}

/* Every y/out dtype pair; H = 300 is not a multiple of any chunk or vector width, and
 * weights of both signs make the sums cancel. */
static void test_combine_dtypes(void) {
    const moe_dtype dts[] = {MOE_DTYPE_F32, MOE_DTYPE_F16, MOE_DTYPE_BF16};
    int64_t tokens = 33, kp = 9, h = 300, rows = tokens * kp;
    for (int a = 0; a < 3; a++) {
        for (int b = 0; b < 3; b++) {
            moe_tensor inv = combine_random_inv_perm(tokens * kp, rows, 10);
            moe_tensor y = test_tensor2(dts[a], rows, h);
            test_fill_normal(&y, 3.0);
            moe_tensor w = combine_random_weights(tokens, kp, kp, -1.0, 1.0);
            moe_tensor out = test_tensor2(dts[b], tokens, h);
            float scale = (a + b) % 2 ? 0.5f : 1.0f;
            CHECK_OK(moe_combine(test_cpu(), &y, &inv, &w, scale, &out, NULL));
            check_combine(&y, &inv, &w, scale, &out, "dtype pair");
        }
    }
}

/* T < R < T*k': rows in [T, R) are valid and must be summed, rows in [R, T*k') are past
 * the end of y and must be skipped. y's buffer continues past row R with NaN rows, so
 * reading one poisons the output. */
static void test_combine_row_bounds(void) {
    int64_t tokens = 40, kp = 4, rows = 100, h = 64;
    moe_tensor inv = combine_edge_inv_perm(tokens, kp, rows);

    const moe_dtype dts[] = {MOE_DTYPE_F32, MOE_DTYPE_BF16, MOE_DTYPE_F16};
    for (int d = 0; d < 3; d++) {
        moe_tensor y = test_tensor2(dts[d], rows + 8, h); /* rows R.. stay NaN */
        y.shape[0] = rows;
        test_fill_normal(&y, 1.0);
        moe_tensor w = combine_random_weights(tokens, kp, kp, 0.0, 1.0);
        moe_tensor out = test_tensor2(dts[(d + 1) % 3], tokens, h);
        CHECK_OK(moe_combine(test_cpu(), &y, &inv, &w, 1.0f, &out, NULL));
        check_combine(&y, &inv, &w, 1.0f, &out, "rows near the end of y");
    }
}

/* Leading dimensions beyond H: only the H columns are read and written. */
static void test_combine_strided(void) {
    int64_t tokens = 24, kp = 3, h = 40, rows = 80;
    moe_tensor y = test_tensor2(MOE_DTYPE_BF16, rows, h + 5);
    y.shape[1] = h;
    test_fill_normal(&y, 1.0);
    moe_tensor out = test_tensor2(MOE_DTYPE_F32, tokens, h + 7);
    out.shape[1] = h;
    moe_tensor inv = combine_random_inv_perm(tokens * kp, rows, 5);
    moe_tensor w = combine_random_weights(tokens, kp, kp, 0.0, 1.0);
    CHECK_OK(moe_combine(test_cpu(), &y, &inv, &w, 1.0f, &out, NULL));
    check_combine(&y, &inv, &w, 1.0f, &out, "strided");
    int touched = 0;
    for (int64_t t = 0; t < tokens; t++)
        for (int64_t c = h; c < h + 7; c++) touched += !isnan(((float *)out.data)[t * (h + 7) + c]);
    CHECK(!touched, "row padding of out is not written (%d touched)", touched);
}

static void test_combine_edges(void) {
    moe_context *ctx = test_cpu();
    /* T = 0 */
    moe_tensor y = test_tensor2(MOE_DTYPE_BF16, 16, 32), inv0 = test_tensor1(MOE_DTYPE_I32, 0);
    moe_tensor w0 = test_tensor2(MOE_DTYPE_F32, 0, 9), out0 = test_tensor2(MOE_DTYPE_BF16, 0, 32);
    CHECK_OK(moe_combine(ctx, &y, &inv0, &w0, 1.0f, &out0, NULL));
    /* R = 0: every pair is skipped, every output is +0 */
    moe_tensor y0 = test_tensor2(MOE_DTYPE_F16, 0, 32), inv = test_tensor1(MOE_DTYPE_I32, 12);
    for (int p = 0; p < 12; p++) test_set_i32(&inv, p, 0, p);
    moe_tensor w = combine_random_weights(4, 3, 3, 0.0, 1.0);
    moe_tensor out = test_tensor2(MOE_DTYPE_F16, 4, 32);
    CHECK_OK(moe_combine(ctx, &y0, &inv, &w, 1.0f, &out, NULL));
    check_combine(&y0, &inv, &w, 1.0f, &out, "R = 0");
    /* one token with every pair skipped among others; k' = 1 */
    test_fill_normal(&y, 1.0);
    moe_tensor inv1 = test_tensor1(MOE_DTYPE_I32, 5);
    moe_tensor w1 = combine_random_weights(5, 1, 1, 0.0, 2.0);
    const int32_t rows1[] = {3, -1, 15, 16, 0};
    for (int p = 0; p < 5; p++) test_set_i32(&inv1, p, 0, rows1[p]);
    moe_tensor out1 = test_tensor2(MOE_DTYPE_F32, 5, 32);
    CHECK_OK(moe_combine(ctx, &y, &inv1, &w1, 3.0f, &out1, NULL));
    check_combine(&y, &inv1, &w1, 3.0f, &out1, "k' = 1");
    CHECK(test_get(&out1, 1, 0, 0) == 0.0 && test_get(&out1, 3, 31, 0) == 0.0,
          "tokens with no row get zeros");
    /* H = 0: nothing to write */
    moe_tensor yh = test_tensor2(MOE_DTYPE_F32, 4, 0), oh = test_tensor2(MOE_DTYPE_F32, 4, 0);
    moe_tensor wh = combine_random_weights(4, 3, 3, 0.0, 1.0);
    CHECK_OK(moe_combine(ctx, &yh, &inv, &wh, 1.0f, &oh, NULL));
    /* negative and zero scales are allowed */
    moe_tensor out2 = test_tensor2(MOE_DTYPE_BF16, 5, 32);
    CHECK_OK(moe_combine(ctx, &y, &inv1, &w1, -0.75f, &out2, NULL));
    check_combine(&y, &inv1, &w1, -0.75f, &out2, "negative scale");
    CHECK_OK(moe_combine(ctx, &y, &inv1, &w1, 0.0f, &out2, NULL));
    check_combine(&y, &inv1, &w1, 0.0f, &out2, "zero scale");
}

static void test_combine_errors(void) {
    moe_context *ctx = test_cpu();
    moe_tensor y = test_tensor2(MOE_DTYPE_BF16, 10, 16), inv = test_tensor1(MOE_DTYPE_I32, 12);
    moe_tensor w = test_tensor2(MOE_DTYPE_F32, 4, 3), out = test_tensor2(MOE_DTYPE_BF16, 4, 16);
    moe_tensor bad;
    for (int p = 0; p < 12; p++) test_set_i32(&inv, p, 0, p - 1);
    test_fill_normal(&y, 1.0);
    test_fill_normal(&w, 1.0);
    CHECK_OK(moe_combine(ctx, &y, &inv, &w, 1.0f, &out, NULL));
    CHECK_ERR(moe_combine(NULL, &y, &inv, &w, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "ctx");
    /* y */
    CHECK_ERR(moe_combine(ctx, NULL, &inv, &w, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "y is NULL");
    bad = y;
    bad.dtype = MOE_DTYPE_E4M3;
    CHECK_ERR(moe_combine(ctx, &bad, &inv, &w, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "y has dtype e4m3");
    bad = moe_tensor_1d(y.data, MOE_DTYPE_BF16, 160);
    CHECK_ERR(moe_combine(ctx, &bad, &inv, &w, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "y has rank 1");
    /* weights */
    CHECK_ERR(moe_combine(ctx, &y, &inv, NULL, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "weights is NULL");
    bad = w;
    bad.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(moe_combine(ctx, &y, &inv, &bad, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "weights has dtype bf16");
    bad = moe_tensor_2d(w.data, MOE_DTYPE_F32, 4, 0);
    CHECK_ERR(moe_combine(ctx, &y, &inv, &bad, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "weights.shape[1] (0)");
    bad = moe_tensor_2d(w.data, MOE_DTYPE_F32, (int64_t)1 << 29, 8); /* never read */
    CHECK_ERR(moe_combine(ctx, &y, &inv, &bad, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "pairs exceed INT32_MAX");
    /* inv_perm */
    CHECK_ERR(moe_combine(ctx, &y, NULL, &w, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "inv_perm is NULL");
    bad = inv;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(moe_combine(ctx, &y, &bad, &w, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "inv_perm has dtype f32");
    bad = moe_tensor_1d(inv.data, MOE_DTYPE_I32, 11);
    CHECK_ERR(moe_combine(ctx, &y, &bad, &w, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "inv_perm.shape[0] (11) must equal T*k'");
    bad = moe_tensor_2d(inv.data, MOE_DTYPE_I32, 4, 3);
    CHECK_ERR(moe_combine(ctx, &y, &bad, &w, 1.0f, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "inv_perm has rank 2");
    /* out */
    CHECK_ERR(moe_combine(ctx, &y, &inv, &w, 1.0f, NULL, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out is NULL");
    bad = out;
    bad.dtype = MOE_DTYPE_E4M3;
    CHECK_ERR(moe_combine(ctx, &y, &inv, &w, 1.0f, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out has dtype e4m3");
    bad = moe_tensor_2d(out.data, MOE_DTYPE_BF16, 3, 16);
    CHECK_ERR(moe_combine(ctx, &y, &inv, &w, 1.0f, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out.shape[0] (3) must equal T");
    bad = moe_tensor_2d(out.data, MOE_DTYPE_BF16, 4, 8);
    CHECK_ERR(moe_combine(ctx, &y, &inv, &w, 1.0f, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out.shape[1] (8) must equal H (y.shape[1]) (16)");
    /* scale */
    CHECK_ERR(moe_combine(ctx, &y, &inv, &w, NAN, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "scale (nan)");
    CHECK_ERR(moe_combine(ctx, &y, &inv, &w, INFINITY, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "scale (inf)");
    CHECK_ERR(moe_combine(ctx, &y, &inv, &w, -INFINITY, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "scale (-inf)");
}

void suite_combine(void) {
    RUN(test_combine_model);
    RUN(test_combine_dtypes);
    RUN(test_combine_row_bounds);
    RUN(test_combine_strided);
    RUN(test_combine_edges);
    RUN(test_combine_errors);
}
