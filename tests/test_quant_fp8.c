/* Per-token-group FP8 quantisation against the float64 formula of SPEC 3: every scale
 * and every code of random data in all input dtypes and both scale layouts, with and
 * without ue8m0, plain and through a fused gather; the edges (saturation, zero groups,
 * NaN, Inf, values below eps, M = 0); and every argument check. */
#include <math.h>
#include <string.h>

#include "../src/api/internal.h"
#include "harness.h"
#include "quant_ref.h"

static moe_fp8_group_params fp8_params(int32_t group, int32_t ue8m0, moe_scale_layout layout) {
    moe_fp8_group_params p = {group, 1e-10f, ue8m0, layout};
    return p;
}

/* A scales tensor of the layout for M rows and K / g groups. */
static moe_tensor fp8_scales(const moe_fp8_group_params *p, int64_t m, int64_t k) {
    if (p->layout == MOE_SCALES_ROW_MAJOR) return test_tensor2(MOE_DTYPE_F32, m, k / p->group);
    return test_tensor2(MOE_DTYPE_F32, k / p->group, (m + 3) / 4 * 4);
}

static float *fp8_scale_at(const moe_tensor *s, const moe_fp8_group_params *p, int64_t r,
                           int64_t grp) {
    int64_t i0 = p->layout == MOE_SCALES_ROW_MAJOR ? r : grp;
    int64_t i1 = p->layout == MOE_SCALES_ROW_MAJOR ? grp : r;
    return (float *)s->data + i0 * s->stride[0] + i1;
}

/* The scale the formula gives for a group with amax a (in double); *either is set to the
 * other power of two when ue8m0 rounding is too close to call in f32. */
static double ref_fp8_scale(double amax, const moe_fp8_group_params *p, double *either) {
    double s = fmax(amax, (double)p->eps) / 448.0;
    *either = -1.0;
    if (!p->ue8m0 || isinf(s)) return s;
    int e;
    double f = frexp(s, &e); /* s = f * 2^e, f in [0.5, 1) */
    if (f == 0.5) return s;  /* already a power of two */
    if (f < 0.5 * (1.0 + 0x1p-22)) *either = ldexp(1.0, e - 1);
    return ldexp(1.0, e);
}

/* The code for x / s with the library's f32 scale s. */
static int fp8_code_ok(uint8_t q, double x, double s) {
    if (isnan(x / s)) return (q & 0x7f) == 0x7f;
    return ref_code_ok(ref_e4m3, q, x / s);
}

/* Checks q and scales of M rows against the formula. src[r] is the x row that row r
 * quantised, or -1 for a zero row. Returns through the tallies. */
static void check_fp8_quant(const moe_tensor *x, const int64_t *src, const moe_tensor *q,
                            const moe_tensor *scales, const moe_fp8_group_params *p, ref_tally *ts,
                            ref_tally *tq) {
    int64_t k = q->shape[1], g = p->group;
    for (int64_t r = 0; r < q->shape[0]; r++)
        for (int64_t c0 = 0; c0 < k; c0 += g) {
            double amax = 0.0;
            int64_t at_max = -1;
            for (int64_t c = c0; c < c0 + g; c++) {
                double a = src[r] < 0 ? 0.0 : fabs(test_get(x, src[r], c, 0));
                if (a > amax) amax = a, at_max = c;
            }
            double either, want = ref_fp8_scale(amax, p, &either);
            double s = *fp8_scale_at(scales, p, r, c0 / g);
            int scale_ok = p->ue8m0 || isinf(want) ? (s == want || s == either)
                                                   : fabs(s - want) <= 0x1p-24 * want;
            ref_expect(ts, scale_ok, "row %lld group %lld: scale %.9g, formula %.9g", (long long)r,
                       (long long)(c0 / g), s, want);
            const uint8_t *qr = (const uint8_t *)q->data + r * q->stride[0];
            for (int64_t c = c0; c < c0 + g; c++) {
                double xv = src[r] < 0 ? 0.0 : test_get(x, src[r], c, 0);
                ref_expect(tq, fp8_code_ok(qr[c], xv, s), "(%lld, %lld): x %.9g / %.9g -> 0x%02x",
                           (long long)r, (long long)c, xv, s, qr[c]);
            }
            /* without ue8m0 the largest element lands on the saturation limit */
            if (!p->ue8m0 && at_max >= 0 && amax > p->eps && isfinite(amax))
                ref_expect(tq, (qr[at_max] & 0x7f) == 0x7e, "(%lld, %lld): amax code 0x%02x",
                           (long long)r, (long long)at_max, qr[at_max]);
        }
}

/* Dequantises q and checks out == q * scale (one rounding to out's dtype) and that it is
 * within half an e4m3 step of x: 2^-4 relative, or 2^-10 * scale among subnormals. */
static void check_fp8_dequant(const moe_tensor *x, const int64_t *src, const moe_tensor *q,
                              const moe_tensor *scales, const moe_fp8_group_params *p,
                              moe_dtype out_dtype, ref_tally *tout, ref_tally *terr) {
    moe_tensor out = test_tensor2(out_dtype, q->shape[0], q->shape[1]);
    CHECK_OK(moe_dequant_fp8_group(test_cpu(), q, scales, p, &out, NULL));
    for (int64_t r = 0; r < q->shape[0]; r++)
        for (int64_t c = 0; c < q->shape[1]; c++) {
            double s = *fp8_scale_at(scales, p, r, c / p->group);
            double qv = ref_e4m3_value(((const uint8_t *)q->data)[r * q->stride[0] + c]);
            double want = (double)(float)(qv * s), got = test_get(&out, r, c, 0);
            if (isnan(want) || isinf(want)) {
                ref_expect(tout, isnan(want) ? isnan(got) : got == want,
                           "(%lld, %lld): out %g, want %g", (long long)r, (long long)c, got, want);
                continue;
            }
            ref_expect(tout, fabs(got - want) <= ref_dtype_err(out_dtype, want),
                       "(%lld, %lld): out %.9g, q * scale %.9g", (long long)r, (long long)c, got,
                       want);
            double xv = src[r] < 0 ? 0.0 : test_get(x, src[r], c, 0);
            double bound = fmax(0x1p-4 * fabs(xv), 0x1p-10 * s) * (1 + 0x1p-16);
            ref_expect(terr, fabs(qv * s - xv) <= bound, "(%lld, %lld): x %.9g, dequant %.9g",
                       (long long)r, (long long)c, xv, qv * s);
        }
}

/* Quantises x (through perm when given), then checks quantisation and dequantisation. */
static void run_fp8_case(const moe_tensor *x, const moe_tensor *perm, int32_t topk, int64_t m,
                         const moe_fp8_group_params *p, moe_dtype out_dtype, const char *what) {
    int64_t k = x->shape[1];
    moe_tensor q = test_tensor2(MOE_DTYPE_E4M3, m, k), s = fp8_scales(p, m, k);
    CHECK_OK(moe_quant_fp8_group(test_cpu(), x, perm, topk, p, &q, &s, NULL));
    int64_t *src = test_alloc((size_t)(m ? m : 1) * sizeof *src);
    for (int64_t r = 0; r < m; r++) {
        int64_t e = perm ? test_get_i32(perm, r, 0) : r;
        src[r] = e < 0 ? -1 : perm ? (e / topk < x->shape[0] ? e / topk : -1) : e;
    }
    ref_tally ts = {0}, tq = {0}, tout = {0}, terr = {0};
    check_fp8_quant(x, src, &q, &s, p, &ts, &tq);
    check_fp8_dequant(x, src, &q, &s, p, out_dtype, &tout, &terr);
    char name[160];
    snprintf(name, sizeof name, "%s scales", what);
    CHECK_TALLY(ts, name, m > 0);
    snprintf(name, sizeof name, "%s codes", what);
    CHECK_TALLY(tq, name, m > 0);
    snprintf(name, sizeof name, "%s dequant", what);
    CHECK_TALLY(tout, name, m > 0);
    snprintf(name, sizeof name, "%s dequant error", what);
    CHECK_TALLY(terr, name, m > 0);
}

static void test_fp8_random(void) {
    static const struct {
        int64_t m, k;
        int32_t g;
    } shapes[] = {
        {300, 2048, 128}, {37, 7168, 128}, {5, 256, 64}, {1, 256, 256}, {64, 256, 32}, {3, 96, 32},
    };
    for (int i = 0; i < 12; i++) {
        moe_dtype dt = REF_FLOAT_DTYPES[i % 3];
        moe_scale_layout layout = (moe_scale_layout)((i / 3) % 2);
        int ue8m0 = i / 6;
        int64_t m = shapes[i % 6].m, k = shapes[i % 6].k;
        moe_fp8_group_params p = fp8_params(shapes[i % 6].g, ue8m0, layout);
        moe_dtype out_dt = REF_FLOAT_DTYPES[(i + 1) % 3];
        moe_tensor x = test_tensor2(dt, m, k);
        /* f16 has the narrowest range; f32 and bf16 also get tiny and huge groups */
        if (dt == MOE_DTYPE_F16 || out_dt == MOE_DTYPE_F16)
            ref_fill(&x, p.group, -8, 8);
        else
            ref_fill(&x, p.group, -60, 60);
        char what[96];
        snprintf(what, sizeof what, "%s M=%lld K=%lld g=%d %s ue8m0=%d", moe_dtype_name(dt),
                 (long long)m, (long long)k, p.group, layout ? "col-major" : "row-major", ue8m0);
        run_fp8_case(&x, NULL, 1, m, &p, out_dt, what);
    }
}

/* The fused gather: row r quantises x[perm[r] / topk], a zero row for entries that are
 * negative or name a token >= T, and matches quantising the gathered rows one by one. */
static void test_fp8_gather(void) {
    const int64_t t = 40, m = 150, k = 512;
    const int32_t topk = 3;
    static const int32_t odd[] = {-1, INT32_MIN, 120 /* = T*topk */, 127, INT32_MAX, -7};
    for (int i = 0; i < 6; i++) {
        moe_dtype dt = REF_FLOAT_DTYPES[i % 3];
        moe_fp8_group_params p = fp8_params(128, i / 3, (moe_scale_layout)(i % 2));
        moe_tensor x = test_tensor2(dt, t, k), perm = test_tensor1(MOE_DTYPE_I32, m);
        ref_fill(&x, 128, -8, 8);
        for (int64_t r = 0; r < m; r++)
            test_set_i32(&perm, r, 0,
                         r % 5 == 4 ? odd[rng_int(0, 5)] : (int32_t)rng_int(0, t * topk - 1));
        char what[64];
        snprintf(what, sizeof what, "gather %s ue8m0=%d", moe_dtype_name(dt), i / 3);
        run_fp8_case(&x, &perm, topk, m, &p, MOE_DTYPE_F32, what);

        /* the same rows quantised unfused, one at a time */
        moe_tensor q = test_tensor2(MOE_DTYPE_E4M3, m, k), s = fp8_scales(&p, m, k);
        moe_tensor q1 = test_tensor2(MOE_DTYPE_E4M3, 1, k), s1 = fp8_scales(&p, 1, k);
        CHECK_OK(moe_quant_fp8_group(test_cpu(), &x, &perm, topk, &p, &q, &s, NULL));
        int same = 1, zero_rows = 0;
        for (int64_t r = 0; r < m; r++) {
            int32_t e = test_get_i32(&perm, r, 0);
            if (e < 0 || e / topk >= t) {
                zero_rows++;
                continue;
            }
            moe_tensor xr = x;
            xr.data = (char *)x.data + (e / topk) * x.stride[0] * (int64_t)moe_dtype_size(dt);
            xr.shape[0] = 1;
            CHECK_OK(moe_quant_fp8_group(test_cpu(), &xr, NULL, 1, &p, &q1, &s1, NULL));
            same &= memcmp((uint8_t *)q.data + r * k, q1.data, (size_t)k) == 0;
            for (int64_t grp = 0; grp < k / 128; grp++)
                same &= *fp8_scale_at(&s, &p, r, grp) == *fp8_scale_at(&s1, &p, 0, grp);
        }
        CHECK(same && zero_rows > 0, "%s: fused rows equal unfused (%d zero rows)", what,
              zero_rows);
    }
}

/* Saturation, zero groups, NaN and Inf elements, values below eps. */
static void test_fp8_edges(void) {
    const int64_t k = 128 * 6;
    for (int i = 0; i < 6; i++) {
        moe_dtype dt = REF_FLOAT_DTYPES[i % 3];
        moe_fp8_group_params p = fp8_params(128, i / 3, MOE_SCALES_ROW_MAJOR);
        /* f16 cannot hold values far below the default eps: give it a larger one */
        int small = dt == MOE_DTYPE_F16 ? -15 : -38;
        if (dt == MOE_DTYPE_F16) p.eps = 1e-3f;
        moe_tensor x = test_tensor2(dt, 2, k);
        ref_fill(&x, 128, -4, 4);
        /* group 0: +-448 * 2^3 exactly, the limit itself */
        test_set(&x, 0, 5, 0, 448.0 * 8);
        test_set(&x, 0, 9, 0, -448.0 * 8);
        /* group 1: all zero */
        for (int64_t c = 128; c < 256; c++) test_set(&x, 0, c, 0, 0.0);
        /* group 2: one NaN; group 3: one Inf */
        test_set(&x, 0, 300, 0, NAN);
        test_set(&x, 0, 400, 0, -INFINITY);
        /* group 4: every value below eps; group 5: far below it (quantise to zero) */
        for (int64_t c = 512; c < 640; c++) test_set(&x, 0, c, 0, ref_random(small, small + 2));
        if (dt != MOE_DTYPE_F16)
            for (int64_t c = 640; c < 768; c++) test_set(&x, 0, c, 0, ref_random(-90, -80));
        char what[64];
        snprintf(what, sizeof what, "edges %s ue8m0=%d", moe_dtype_name(dt), i / 3);
        run_fp8_case(&x, NULL, 1, 2, &p, MOE_DTYPE_F32, what);

        moe_tensor q = test_tensor2(MOE_DTYPE_E4M3, 2, k), s = fp8_scales(&p, 2, k);
        CHECK_OK(moe_quant_fp8_group(test_cpu(), &x, NULL, 1, &p, &q, &s, NULL));
        const uint8_t *q0 = q.data;
        const float *s0 = s.data;
        CHECK(q0[5] == 0x7e && q0[9] == 0xfe && s0[0] == 8.0f,
              "%s: +-448*8 -> 0x%02x 0x%02x, scale %g", what, q0[5], q0[9], s0[0]);
        int zeros = 1;
        for (int64_t c = 128; c < 256; c++) zeros &= q0[c] == 0;
        double unused;
        float zero_scale = (float)ref_fp8_scale(0.0, &p, &unused);
        CHECK(zeros && s0[1] == zero_scale, "%s: zero group -> zero codes, scale %g (want %g)",
              what, s0[1], zero_scale);
        CHECK((q0[300] & 0x7f) == 0x7f && isfinite(s0[2]), "%s: NaN stays NaN, scale %g", what,
              s0[2]);
        int spoiled = isinf(s0[3]) && (q0[400] & 0x7f) == 0x7f;
        for (int64_t c = 384; c < 512; c++)
            if (c != 400) spoiled &= (q0[c] & 0x7f) == 0;
        CHECK(spoiled, "%s: an Inf makes the scale Inf, itself NaN, the rest zero", what);
        int nonzero = 0;
        for (int64_t c = 512; c < 640; c++) nonzero += (q0[c] & 0x7f) != 0;
        CHECK(s0[4] == zero_scale && nonzero > 64, "%s: below eps: scale %g, %d non-zero codes",
              what, s0[4], nonzero);
    }
}

/* M = 0 (with and without a perm) and a group as wide as K. */
static void test_fp8_empty(void) {
    moe_context *ctx = test_cpu();
    for (int layout = 0; layout < 2; layout++) {
        moe_fp8_group_params p = fp8_params(128, 0, (moe_scale_layout)layout);
        moe_tensor x = test_tensor2(MOE_DTYPE_BF16, 0, 256),
                   q = test_tensor2(MOE_DTYPE_E4M3, 0, 256);
        moe_tensor s = fp8_scales(&p, 0, 256), out = test_tensor2(MOE_DTYPE_F32, 0, 256);
        CHECK_OK(moe_quant_fp8_group(ctx, &x, NULL, 1, &p, &q, &s, NULL));
        CHECK_OK(moe_dequant_fp8_group(ctx, &q, &s, &p, &out, NULL));
        moe_tensor x5 = test_tensor2(MOE_DTYPE_BF16, 5, 256), perm = test_tensor1(MOE_DTYPE_I32, 0);
        CHECK_OK(moe_quant_fp8_group(ctx, &x5, &perm, 2, &p, &q, &s, NULL));
    }
    moe_fp8_group_params p = fp8_params(2048, 1, MOE_SCALES_COL_MAJOR);
    moe_tensor x = test_tensor2(MOE_DTYPE_F32, 6, 2048);
    ref_fill(&x, 2048, -3, 3);
    run_fp8_case(&x, NULL, 1, 6, &p, MOE_DTYPE_BF16, "per-token group");
}

/* Rows with padded strides (leading dimensions) in every tensor give the contiguous
 * result and leave the gaps alone. */
static void test_fp8_strided(void) {
    moe_context *ctx = test_cpu();
    const int64_t m = 20, k = 256;
    for (int layout = 0; layout < 2; layout++) {
        moe_fp8_group_params p = fp8_params(128, layout, (moe_scale_layout)layout);
        moe_tensor x = ref_padded(MOE_DTYPE_BF16, m, k, 44),
                   xc = test_tensor2(MOE_DTYPE_BF16, m, k);
        ref_fill(&x, 128, -5, 5);
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < k; c++) test_set(&xc, r, c, 0, test_get(&x, r, c, 0));
        moe_tensor q = ref_padded(MOE_DTYPE_E4M3, m, k, 4), qc = test_tensor2(MOE_DTYPE_E4M3, m, k);
        moe_tensor sc = fp8_scales(&p, m, k);
        moe_tensor s = ref_padded(MOE_DTYPE_F32, sc.shape[0], sc.shape[1], 3);
        moe_tensor out = ref_padded(MOE_DTYPE_F16, m, k, 14),
                   outc = test_tensor2(MOE_DTYPE_F16, m, k);
        CHECK_OK(moe_quant_fp8_group(ctx, &x, NULL, 1, &p, &q, &s, NULL));
        CHECK_OK(moe_quant_fp8_group(ctx, &xc, NULL, 1, &p, &qc, &sc, NULL));
        CHECK_OK(moe_dequant_fp8_group(ctx, &q, &s, &p, &out, NULL));
        CHECK_OK(moe_dequant_fp8_group(ctx, &qc, &sc, &p, &outc, NULL));
        CHECK(ref_same_bytes(&q, &qc) && ref_same_bytes(&s, &sc) && ref_same_bytes(&out, &outc),
              "layout %d: strided results equal contiguous ones", layout);
        CHECK(ref_gaps_untouched(&q) && ref_gaps_untouched(&s) && ref_gaps_untouched(&out),
              "layout %d: row gaps not written", layout);
    }
}

/* ---------------------------------------------------------------- bad input */

static moe_fp8_group_params bad_params;
static int32_t bad_topk;

static moe_status call_quant(moe_tensor **a) {
    return moe_quant_fp8_group(test_cpu(), a[0], a[1], bad_topk, &bad_params, a[2], a[3], NULL);
}

static moe_status call_dequant(moe_tensor **a) {
    return moe_dequant_fp8_group(test_cpu(), a[0], a[1], &bad_params, a[2], NULL);
}

static void test_fp8_bad_input(void) {
    moe_context *ctx = test_cpu();
    moe_fp8_group_params p = fp8_params(128, 0, MOE_SCALES_ROW_MAJOR);
    moe_tensor x = test_tensor2(MOE_DTYPE_BF16, 6, 256), perm = test_tensor1(MOE_DTYPE_I32, 5);
    moe_tensor q = test_tensor2(MOE_DTYPE_E4M3, 5, 256), s = fp8_scales(&p, 5, 256);
    moe_tensor out = test_tensor2(MOE_DTYPE_F16, 5, 256);
    for (int64_t r = 0; r < 5; r++) test_set_i32(&perm, r, 0, (int32_t)r);
    ref_fill(&x, 128, -2, 2);
    CHECK_OK(moe_quant_fp8_group(ctx, &x, &perm, 1, &p, &q, &s, NULL));
    CHECK_OK(moe_dequant_fp8_group(ctx, &q, &s, &p, &out, NULL));

    bad_params = p;
    bad_topk = 1;
    moe_tensor *qa[] = {&x, &perm, &q, &s};
    static const char *const qn[] = {"x", "perm", "q", "scales"};
    ref_tensor_faults(call_quant, qa, qn, 4, 1u << 1, "moe_quant_fp8_group");
    moe_tensor *da[] = {&q, &s, &out};
    static const char *const dn[] = {"q", "scales", "out"};
    ref_tensor_faults(call_dequant, da, dn, 3, 0, "moe_dequant_fp8_group");

    const moe_status bad = MOE_ERR_INVALID_ARGUMENT;
    CHECK_ERR(moe_quant_fp8_group(NULL, &x, &perm, 1, &p, &q, &s, NULL), bad, "ctx");
    CHECK_ERR(moe_dequant_fp8_group(NULL, &q, &s, &p, &out, NULL), bad, "ctx");

    /* shapes */
    moe_tensor q_wide = test_tensor2(MOE_DTYPE_E4M3, 5, 384);
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 1, &p, &q_wide, &s, NULL), bad, "q.shape[1]");
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, NULL, 1, &p, &q, &s, NULL), bad, "q.shape[0]");
    moe_tensor perm6 = test_tensor1(MOE_DTYPE_I32, 6);
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm6, 1, &p, &q, &s, NULL), bad, "perm.shape[0]");
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 0, &p, &q, &s, NULL), bad, "topk");
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, -3, &p, &q, &s, NULL), bad, "topk (-3)");

    /* the layer's entry with perm's inverse: x has 6 tokens, topk 1, so inv_perm [6] */
    moe_tensor inv = test_tensor1(MOE_DTYPE_I32, 6), inv5 = test_tensor1(MOE_DTYPE_I32, 5);
    moe_tensor inv_f = test_tensor1(MOE_DTYPE_F32, 6);
    for (int64_t t = 0; t < 6; t++) test_set_i32(&inv, t, 0, t < 5 ? (int32_t)t : -1);
    moe_tensor q2 = test_tensor2(MOE_DTYPE_E4M3, 5, 256), s2 = fp8_scales(&p, 5, 256);
    CHECK_OK(moe_quant_fp8_group_planned(ctx, &x, &perm, &inv, 1, &p, &q2, &s2, NULL));
    CHECK(memcmp(q2.data, q.data, 5 * 256) == 0 && memcmp(s2.data, s.data, 5 * 2 * 4) == 0,
          "the planned entry gives the row-by-row result");
    CHECK_ERR(moe_quant_fp8_group_planned(ctx, &x, &perm, &inv5, 1, &p, &q, &s, NULL), bad,
              "inv_perm.shape[0]");
    CHECK_ERR(moe_quant_fp8_group_planned(ctx, &x, &perm, &inv_f, 1, &p, &q, &s, NULL), bad,
              "inv_perm");
    CHECK_ERR(moe_quant_fp8_group_planned(ctx, &x, NULL, &inv, 1, &p, &q, &s, NULL), bad,
              "perm (inv_perm needs it)");
    moe_tensor out_rows = test_tensor2(MOE_DTYPE_F16, 4, 256),
               out_cols = test_tensor2(MOE_DTYPE_F16, 5, 128);
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &s, &p, &out_rows, NULL), bad, "out.shape[0]");
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &s, &p, &out_cols, NULL), bad, "out.shape[1]");

    /* params and the scales' shape for each layout, through both functions */
    moe_fp8_group_params pp;
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 1, NULL, &q, &s, NULL), bad, "params");
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &s, NULL, &out, NULL), bad, "params");
    pp = p, pp.group = 0;
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 1, &pp, &q, &s, NULL), bad, "params->group");
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &s, &pp, &out, NULL), bad, "params->group");
    pp = p, pp.group = 96;
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 1, &pp, &q, &s, NULL), bad, "K (columns)");
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &s, &pp, &out, NULL), bad, "K (columns)");
    pp = p, pp.eps = 0.0f;
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 1, &pp, &q, &s, NULL), bad, "params->eps");
    pp.eps = NAN;
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &s, &pp, &out, NULL), bad, "params->eps");
    pp = p, pp.layout = (moe_scale_layout)2;
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 1, &pp, &q, &s, NULL), bad, "params->layout");
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &s, &pp, &out, NULL), bad, "params->layout");
    moe_tensor s_rows = test_tensor2(MOE_DTYPE_F32, 4, 2),
               s_cols = test_tensor2(MOE_DTYPE_F32, 5, 1);
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 1, &p, &q, &s_rows, NULL), bad,
              "scales.shape[0]");
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &s_cols, &p, &out, NULL), bad, "scales.shape[1]");
    pp = p, pp.layout = MOE_SCALES_COL_MAJOR;
    moe_tensor c_groups = test_tensor2(MOE_DTYPE_F32, 3, 8),
               c_m4 = test_tensor2(MOE_DTYPE_F32, 2, 5);
    CHECK_ERR(moe_quant_fp8_group(ctx, &x, &perm, 1, &pp, &q, &c_groups, NULL), bad, "K / group");
    CHECK_ERR(moe_dequant_fp8_group(ctx, &q, &c_m4, &pp, &out, NULL), bad, "M rounded up to 4");
    moe_tensor c_ok = test_tensor2(MOE_DTYPE_F32, 2, 8);
    CHECK_OK(moe_quant_fp8_group(ctx, &x, &perm, 1, &pp, &q, &c_ok, NULL));
}

void suite_quant_fp8(void) {
    RUN(test_fp8_random);
    RUN(test_fp8_gather);
    RUN(test_fp8_edges);
    RUN(test_fp8_empty);
    RUN(test_fp8_strided);
    RUN(test_fp8_bad_input);
}
