/* The CUDA backend's quantisation against the CPU reference on the same inputs.
 *
 * FP8 per token group: codes and scales must equal the CPU's bit for bit (the GPU repeats
 * the CPU's f32 arithmetic: src/cuda/fp8_group.cuh). The one exception is the sign bit
 * of a NaN code (0x7f against 0xff): a NaN's sign carries no meaning (SPEC: NaN stays
 * NaN) and differs between platforms (x86's default NaN is negative, the GPU's is
 * positive), so NaN codes compare equal whatever their sign. Dequantisation must also
 * be bit-exact (one f32 product, one rounding), NaNs again equal whatever their bits.
 *
 * Every output lies inside a larger buffer with guard bytes around and between its rows,
 * and every GPU run is made twice, into buffers prefilled with two different bytes: the
 * elements an op must write are then known to be written (both runs agree) and
 * everything else to be untouched (each run's prefill survives), including the padding
 * columns M..M4-1 of column-major scales, which neither backend writes.
 *
 * MXFP8 and NVFP4 tests belong in the marked section at the end of this file. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../src/api/internal.h"
#include "../src/cuda/fp8_code.h"
#include "harness.h"
#include "guarded_buffer.h"
#include "quant_ref.h"

/* ---------------------------------------------------------------- buffer checks */

/* Whether an element is a NaN of its dtype (e4m3: 0x7f / 0xff). */
static int elem_nan(moe_dtype dtype, const uint8_t *p) {
    uint32_t v = 0;
    memcpy(&v, p, moe_dtype_size(dtype));
    switch (dtype) {
    case MOE_DTYPE_E4M3: return (v & 0x7fu) == 0x7fu;
    case MOE_DTYPE_F16: return (v & 0x7c00u) == 0x7c00u && (v & 0x3ffu);
    case MOE_DTYPE_BF16: return (v & 0x7f80u) == 0x7f80u && (v & 0x7fu);
    case MOE_DTYPE_F32: return (v & 0x7fffffffu) > 0x7f800000u;
    default: return 0;
    }
}

/* Equal bytes, or both NaN. */
static int same_or_nan(moe_dtype dtype, const uint8_t *a, const uint8_t *b) {
    return memcmp(a, b, moe_dtype_size(dtype)) == 0 || (elem_nan(dtype, a) && elem_nan(dtype, b));
}

/* got against want (one layout): written elements through same_or_nan, or bytewise
 * when exact; every other byte of the buffers exactly. One CHECK with the first
 * difference. */
static void check_buffers(const gbuf *got, const gbuf *want, int64_t written, int exact,
                          const char *what, const char *name) {
    moe_dtype dt = got->view.dtype;
    size_t es = moe_dtype_size(dt);
    int64_t bad_in = 0, bad_out = 0, first_r = -1, first_c = -1;
    size_t first_byte = 0;
    for (int64_t r = 0; r < got->view.shape[0]; r++)
        for (int64_t c = 0; c < written; c++) {
            const uint8_t *a = gbuf_elem(got, r, c), *b = gbuf_elem(want, r, c);
            int ok = exact ? memcmp(a, b, es) == 0 : same_or_nan(dt, a, b);
            if (!ok && bad_in++ == 0) first_r = r, first_c = c;
        }
    const uint8_t *ga = got->whole.data, *wa = want->whole.data;
    for (size_t i = 0; i < (size_t)got->whole.shape[0]; i++)
        if (!gbuf_in_written(got, i, written) && ga[i] != wa[i] && bad_out++ == 0) first_byte = i;
    uint32_t gv = 0, wv = 0;
    if (bad_in) {
        memcpy(&gv, gbuf_elem(got, first_r, first_c), es);
        memcpy(&wv, gbuf_elem(want, first_r, first_c), es);
    }
    CHECK(bad_in == 0 && bad_out == 0,
          "%s: %s: %lld elements differ (first (%lld, %lld): 0x%x, want 0x%x), %lld bytes "
          "outside them differ (first at byte %zu)",
          what, name, (long long)bad_in, (long long)first_r, (long long)first_c, gv, wv,
          (long long)bad_out, first_byte);
}

/* ---------------------------------------------------------------- host: the device math */

/* The branch-free code and the division by a reciprocal that the kernels use
 * (src/cuda/fp8_code.h), against moe_f32_to_e4m3 and a true division, on the host with
 * the same IEEE operations. All 2^32 inputs of moe_e4m3_code were checked when it was
 * written (7 s); here every 251st pattern, and every pattern near the subnormal and
 * saturation boundaries. Needs no GPU. */
static void test_cuda_fp8_code_host(void) {
    int64_t bad = 0, n = 0;
    uint32_t first = 0;
    for (uint64_t u = 0; u < (1ull << 32); u += 251, n++)
        if (moe_e4m3_code(moe_bits_f32((uint32_t)u)) != moe_f32_to_e4m3(moe_bits_f32((uint32_t)u)) &&
            bad++ == 0)
            first = (uint32_t)u;
    /* |f| from 2^-10 to 2^-6 * 1.125 (subnormal e4m3 codes and the switch to normal ones)
     * and from 416 to 512 (saturation), both signs */
    static const uint32_t ranges[][2] = {{0x3a800000u, 0x3c900000u}, {0x43d00000u, 0x44000000u}};
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < 2; i++)
            for (uint32_t u = ranges[i][0]; u <= ranges[i][1]; u++, n++) {
                float f = moe_bits_f32(u | (s ? 0x80000000u : 0));
                if (moe_e4m3_code(f) != moe_f32_to_e4m3(f) && bad++ == 0) first = moe_f32_bits(f);
            }
    CHECK(bad == 0, "moe_e4m3_code: %lld of %lld patterns differ, first 0x%08x", (long long)bad,
          (long long)n, first);

    /* v / s for scales across the range and quotients across e4m3's, many near an e4m3
     * rounding midpoint or an f32 one */
    int64_t bad_div = 0;
    float first_v = 0, first_s = 0;
    for (int i = 0; i < 2000000; i++) {
        float s = (float)ldexp(rng_uniform(1.0, 2.0), (int)rng_int(-80, 79));
        if (i % 5 == 0) s = (float)ldexp(1.0, (int)rng_int(-80, 80));
        double q;
        switch (i % 4) {
        case 0: q = ldexp(rng_uniform(1.0, 2.0), (int)rng_int(-16, 12)); break;
        case 1: { /* an e4m3 midpoint */
            int c = (int)rng_int(0, 125);
            q = (ref_e4m3_mag(c) + ref_e4m3_mag(c + 1)) / 2;
            break;
        }
        case 2: { /* an f32 midpoint */
            float f = (float)ldexp(rng_uniform(1.0, 2.0), (int)rng_int(-12, 9));
            q = (double)f + ldexp(1.0, ilogbf(f) - 24);
            break;
        }
        default: q = ldexp(rng_uniform(1.0, 2.0), (int)rng_int(-140, 120)); break;
        }
        float v = (float)(q * s);
        v = moe_bits_f32(moe_f32_bits(v) + (uint32_t)rng_int(-3, 3)); /* around it */
        if (rng_u64() & 1) v = -v;
        if (moe_e4m3_code_div(v, s, 1.0f / s) != moe_f32_to_e4m3(v / s) && bad_div++ == 0)
            first_v = v, first_s = s;
    }
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, 1e-45f, -3.4e38f, 3.4e38f};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        for (int e = -80; e <= 79; e++) {
            float s = ldexpf(1.375f, e), v = special[i];
            if (moe_e4m3_code_div(v, s, 1.0f / s) != moe_f32_to_e4m3(v / s) && bad_div++ == 0)
                first_v = v, first_s = s;
        }
    uint32_t nan_code = moe_e4m3_code_div(NAN, 3.0f, 1.0f / 3.0f);
    CHECK(bad_div == 0 && (nan_code & 0x7fu) == 0x7fu,
          "moe_e4m3_code_div: %lld quotients coded unlike v / s, first %a / %a",
          (long long)bad_div, (double)first_v, (double)first_s);
}

/* The hardware conversion the FP8 kernels code their quotients with (moe_e4m3x2) equals
 * moe_e4m3_code, so moe_f32_to_e4m3, on all 2^32 f32 inputs (every 13th pattern under
 * MOE_TEST_QUICK, for the sanitizers), NaN aside (0x7f or 0xff, sign dropped). */
static void test_cuda_e4m3_hardware(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    unsigned long long bad = 0;
    uint32_t first = 0;
    CHECK(test_e4m3_hardware_mismatches(test_quick() ? 13u : 1u, &bad, &first) == 0,
          "e4m3 comparison kernel: a CUDA error");
    CHECK(bad == 0, "cvt.rn.satfinite.e4m3x2.f32 differs from moe_e4m3_code on %llu inputs, "
                    "first 0x%08x", bad, first);
}

/* ---------------------------------------------------------------- FP8 per token group */

typedef struct fp8_case {
    moe_dtype dtype;
    int64_t t, m, k;     /* x [T, K], q [M, K]; without gather M = T */
    int32_t group, ue8m0;
    moe_scale_layout layout;
    int32_t topk;        /* > 0: fuse a gather through a perm with odd entries */
    int64_t x_pad;       /* x row stride K + x_pad */
    size_t x_lead;       /* bytes before x in its buffer: not a multiple of 16 forces the
                            kernels' element loads */
    int64_t q_pad;
    size_t q_lead;
    int planned;         /* gather through moe_quant_fp8_group_planned: perm is injective
                            and comes with its inverse */
    int special;         /* plant NaN, Inf, zero, tiny and huge groups */
    float eps;           /* 0: the default 1e-10 */
    moe_dtype out;       /* dequantisation's output dtype */
} fp8_case;

/* Random non-zero data whose groups span many binades. */
static void fill_x(moe_tensor *x, const fp8_case *fc) {
    if (fc->dtype == MOE_DTYPE_F16)
        ref_fill(x, fc->group, -8, 8);
    else
        ref_fill(x, fc->group, -30, 30);
}

/* Special groups in the first rows of x (group index j of row r at columns j*g..).
 * Rows 0..3 exist in every case that asks for them. */
static void plant_specials(moe_tensor *x, const fp8_case *fc) {
    int64_t g = fc->group, groups = fc->k / g;
    for (int64_t j = 0; j < groups; j++) {
        int64_t c0 = j * g;
        switch (j % 8) {
        case 0: /* the saturation limit exactly, both signs */
            test_set(x, 0, c0, 0, 448.0 * 4);
            test_set(x, 0, c0 + g - 1, 0, -448.0 * 4);
            break;
        case 1: /* all zero */
            for (int64_t c = c0; c < c0 + g; c++) test_set(x, 0, c, 0, 0.0);
            break;
        case 2: test_set(x, 0, c0 + g / 2, 0, NAN); break;
        case 3: test_set(x, 0, c0, 0, -INFINITY); break;
        case 4: /* below eps (1e-10): the scale is eps / 448 */
            for (int64_t c = c0; c < c0 + g; c++)
                test_set(x, 1, c, 0, fc->dtype == MOE_DTYPE_F16 ? ref_random(-24, -20) : ref_random(-40, -36));
            break;
        case 5: /* a negative zero among positive values, and the smallest subnormals */
            test_set(x, 1, c0, 0, -0.0);
            test_set(x, 1, c0 + 1, 0, fc->dtype == MOE_DTYPE_F16 ? 6e-8 : 1e-38);
            break;
        case 6: /* huge: with f32 a scale beyond 2^80 (the kernels' true-division path) */
            if (fc->dtype == MOE_DTYPE_F32)
                for (int64_t c = c0; c < c0 + g; c++) test_set(x, 2, c, 0, ref_random(96, 100));
            else
                test_set(x, 2, c0, 0, fc->dtype == MOE_DTYPE_F16 ? 65504.0 : 3.0e38);
            break;
        default: /* NaN and Inf together, and a group of one repeated value */
            test_set(x, 3, c0, 0, NAN);
            test_set(x, 3, c0 + 1, 0, INFINITY);
            for (int64_t c = c0; c < c0 + g; c++) test_set(x, 2, c, 0, -1.5);
            break;
        }
    }
}

/* perm for M rows over T tokens: mostly valid entries, every 5th one negative or out of
 * range. */
static moe_tensor make_perm(const fp8_case *fc) {
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, fc->m);
    const int32_t limit = (int32_t)(fc->t * fc->topk);
    const int32_t odd[] = {-1, INT32_MIN, limit, limit + fc->topk, INT32_MAX, -7};
    for (int64_t r = 0; r < fc->m; r++)
        test_set_i32(&perm, r, 0,
                     r % 5 == 4 || limit == 0 ? odd[rng_int(0, 5)] : (int32_t)rng_int(0, limit - 1));
    return perm;
}

/* An injective perm (each token slot on at most one row, every 5th row invalid, some slots
 * on no row) and its inverse, as moe_permute_plan makes them. */
static moe_tensor make_planned_perm(const fp8_case *fc, moe_tensor *inv) {
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, fc->m);
    int64_t slots = fc->t * fc->topk;
    *inv = test_tensor1(MOE_DTYPE_I32, slots);
    int32_t *order = (int32_t *)test_alloc((size_t)(slots > 0 ? slots : 1) * sizeof(int32_t));
    for (int64_t i = 0; i < slots; i++) order[i] = (int32_t)i, test_set_i32(inv, i, 0, -1);
    for (int64_t i = slots - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = rng_int(0, (int32_t)i);
        int32_t tmp = order[i];
        order[i] = order[j], order[j] = tmp;
    }
    const int32_t odd[] = {-1, (int32_t)slots, INT32_MIN, INT32_MAX};
    int64_t next = 0;
    for (int64_t r = 0; r < fc->m; r++) {
        if (r % 5 == 4 || next == slots) {
            test_set_i32(&perm, r, 0, odd[rng_int(0, 3)]);
        } else {
            test_set_i32(&perm, r, 0, order[next]);
            test_set_i32(inv, order[next++], 0, (int32_t)r);
        }
    }
    return perm;
}

static void fp8_what(const fp8_case *fc, char *what, size_t n) {
    snprintf(what, n, "%s T=%lld M=%lld K=%lld g=%d %s ue8m0=%d%s%s%s%s", moe_dtype_name(fc->dtype),
             (long long)fc->t, (long long)fc->m, (long long)fc->k, fc->group,
             fc->layout == MOE_SCALES_ROW_MAJOR ? "row-major" : "col-major", fc->ue8m0,
             fc->planned ? " planned gather" : fc->topk ? " gather" : "", fc->x_pad || fc->x_lead ? " x-strided" : "",
             fc->q_pad || fc->q_lead ? " q-strided" : "", fc->special ? " specials" : "");
}

/* Quantises on the CPU and twice on the GPU, compares; then dequantises the CPU's codes
 * on both and compares. A planned case's first GPU run goes through
 * moe_quant_fp8_group_planned (token by token) and its second through
 * moe_quant_fp8_group (row by row): the two must agree bit for bit. */
static void run_fp8_case(moe_context *gpu, const fp8_case *fc) {
    char what[200];
    fp8_what(fc, what, sizeof what);
    moe_fp8_group_params p = {fc->group, fc->eps > 0 ? fc->eps : 1e-10f, fc->ue8m0, fc->layout};
    int64_t m = fc->m, k = fc->k, groups = k / fc->group, m4 = (m + 3) / 4 * 4;

    gbuf xh = gbuf_host(fc->dtype, fc->t, k, k + fc->x_pad, fc->x_lead, 0);
    fill_x(&xh.view, fc);
    if (fc->special && fc->t >= 4) plant_specials(&xh.view, fc);
    gbuf xd = gbuf_to_device(&xh);
    moe_tensor perm_h, perm_d, inv_h, inv_d, *ph = NULL, *pd = NULL;
    if (fc->topk) {
        perm_h = fc->planned ? make_planned_perm(fc, &inv_h) : make_perm(fc);
        perm_d = test_to_device(&perm_h);
        ph = &perm_h, pd = &perm_d;
        if (fc->planned) inv_d = test_to_device(&inv_h);
    }

    /* scales: [M, K/g] or [K/g, M4] with 3 padding columns, 16 bytes in */
    int row_major = fc->layout == MOE_SCALES_ROW_MAJOR;
    int64_t s_rows = row_major ? m : groups, s_cols = row_major ? groups : m4;
    int64_t s_written = row_major ? groups : m;
    gbuf qc = gbuf_host(MOE_DTYPE_E4M3, m, k, k + fc->q_pad, fc->q_lead, FILL_A);
    gbuf sc = gbuf_host(MOE_DTYPE_F32, s_rows, s_cols, s_cols + 3, 16, FILL_A);
    CHECK_OK(moe_quant_fp8_group(test_cpu(), &xh.view, ph, fc->topk, &p, &qc.view, &sc.view, NULL));

    gbuf qa = gbuf_device(MOE_DTYPE_E4M3, m, k, k + fc->q_pad, fc->q_lead, FILL_A);
    gbuf sa = gbuf_device(MOE_DTYPE_F32, s_rows, s_cols, s_cols + 3, 16, FILL_A);
    gbuf qb = gbuf_device(MOE_DTYPE_E4M3, m, k, k + fc->q_pad, fc->q_lead, FILL_B);
    gbuf sb = gbuf_device(MOE_DTYPE_F32, s_rows, s_cols, s_cols + 3, 16, FILL_B);
    if (fc->planned)
        CHECK_OK(moe_quant_fp8_group_planned(gpu, &xd.view, pd, &inv_d, fc->topk, &p, &qa.view,
                                             &sa.view, NULL));
    else
        CHECK_OK(moe_quant_fp8_group(gpu, &xd.view, pd, fc->topk, &p, &qa.view, &sa.view, NULL));
    CHECK_OK(moe_quant_fp8_group(gpu, &xd.view, pd, fc->topk, &p, &qb.view, &sb.view, NULL));
    gbuf qa_h = gbuf_fetch(&qa), sa_h = gbuf_fetch(&sa), qb_h = gbuf_fetch(&qb),
         sb_h = gbuf_fetch(&sb);
    check_buffers(&qa_h, &qc, k, 0, what, "codes");
    check_buffers(&sa_h, &sc, s_written, 1, what, "scales");
    gbuf_check_second_run(&qb_h, &qa_h, k, what, "codes");
    gbuf_check_second_run(&sb_h, &sa_h, s_written, what, "scales");

    /* dequantise the CPU's codes and scales on both backends */
    gbuf qcd = gbuf_to_device(&qc), scd = gbuf_to_device(&sc);
    int64_t o_pad = fc->q_pad ? 5 : 0;
    size_t o_lead = fc->q_lead % 16 ? moe_dtype_size(fc->out) : 16; /* element-aligned */
    gbuf oc = gbuf_host(fc->out, m, k, k + o_pad, o_lead, FILL_A);
    gbuf oa = gbuf_device(fc->out, m, k, k + o_pad, o_lead, FILL_A);
    gbuf ob = gbuf_device(fc->out, m, k, k + o_pad, o_lead, FILL_B);
    CHECK_OK(moe_dequant_fp8_group(test_cpu(), &qc.view, &sc.view, &p, &oc.view, NULL));
    CHECK_OK(moe_dequant_fp8_group(gpu, &qcd.view, &scd.view, &p, &oa.view, NULL));
    CHECK_OK(moe_dequant_fp8_group(gpu, &qcd.view, &scd.view, &p, &ob.view, NULL));
    gbuf oa_h = gbuf_fetch(&oa), ob_h = gbuf_fetch(&ob);
    check_buffers(&oa_h, &oc, k, 0, what, "dequantised");
    gbuf_check_second_run(&ob_h, &oa_h, k, what, "dequantised");
}

static fp8_case fp8_base(moe_dtype dtype, int64_t m, int64_t k, int32_t group) {
    fp8_case fc;
    memset(&fc, 0, sizeof fc);
    fc.dtype = dtype;
    fc.t = fc.m = m;
    fc.k = k;
    fc.group = group;
    fc.layout = MOE_SCALES_ROW_MAJOR;
    fc.out = MOE_DTYPE_BF16;
    return fc;
}

/* DeepSeek-V3's activations: K = 7168 (hidden) and 2048 (expert width), g = 128, bf16,
 * M from nothing to 4096 rows, both layouts, ue8m0 on and off. */
static void test_cuda_fp8_deepseek(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    static const int64_t ms[] = {0, 1, 32, 4096};
    for (int i = 0; i < 8; i++) {
        if (ms[i % 4] == 4096 && test_quick()) continue;
        fp8_case fc = fp8_base(MOE_DTYPE_BF16, ms[i % 4], i < 4 ? 7168 : 2048, 128);
        fc.layout = (moe_scale_layout)(i % 2);
        fc.ue8m0 = (i / 2) % 2;
        fc.out = REF_FLOAT_DTYPES[i % 3];
        run_fp8_case(gpu, &fc);
    }
}

/* The fused gather: T tokens, k' = 9 rows each, perm entries -1 and out of range. */
static void test_cuda_fp8_gather(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    static const struct {
        int64_t t, m;
    } sizes[] = {{512, 4096}, {4, 32}, {1, 1}, {0, 20}, {300, 1200}};
    for (int i = 0; i < 10; i++) {
        if (sizes[i % 5].m == 4096 && test_quick()) continue;
        fp8_case fc = fp8_base(REF_FLOAT_DTYPES[(i + 2) % 3], sizes[i % 5].m, i % 2 ? 2048 : 7168,
                               128);
        fc.t = sizes[i % 5].t;
        fc.topk = 9;
        fc.layout = (moe_scale_layout)(i % 2);
        fc.ue8m0 = i >= 5;
        fc.special = i == 4 || i == 9;
        fc.out = REF_FLOAT_DTYPES[i % 3];
        run_fp8_case(gpu, &fc);
    }
}

/* The layer's gather, token by token (moe_quant_fp8_group_planned): DeepSeek-V3's k' = 9
 * and other widths, padding rows, tokens with no row, every dtype, both layouts, strided
 * x (element loads) and q (byte stores), specials. The token-by-token kernel runs where
 * T x K/16 >= SMs x 256 (sizes 0, 1, 4, 5, 7 on a 132-SM GPU); the others (T = 0, 1 and a
 * group of 96) take the row-by-row kernel through the same entry. */
static void test_cuda_fp8_planned(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    static const struct {
        int64_t t, m, k;
        int32_t topk, group;
    } sizes[] = {{512, 4700, 7168, 9, 128}, {80, 720, 7168, 9, 128},  {1, 9, 2048, 9, 128},
                 {0, 20, 2048, 9, 128},     {300, 1000, 2048, 4, 64}, {600, 900, 4096, 2, 512},
                 {5, 40, 768, 8, 96},       {1100, 1000, 512, 2, 16}};
    for (int i = 0; i < 16; i++) {
        int c = i % 8;
        if (sizes[c].m > 1000 && test_quick()) continue;
        fp8_case fc = fp8_base(REF_FLOAT_DTYPES[i % 3], sizes[c].m, sizes[c].k, sizes[c].group);
        fc.t = sizes[c].t;
        fc.topk = sizes[c].topk;
        fc.planned = 1;
        fc.layout = (moe_scale_layout)(i / 8);
        fc.ue8m0 = i % 2;
        fc.special = c == 1 || c == 4;
        if (i == 12) /* element loads; f32 rows keep 4-byte elements */
            fc.x_lead = fc.dtype == MOE_DTYPE_F32 ? 4 : 2, fc.x_pad = 3;
        if (i == 13) fc.q_lead = 1, fc.q_pad = 1; /* byte stores */
        run_fp8_case(gpu, &fc);
    }
}

/* Group sizes: lane groups of 1..32 lanes (g = 16..512) and warp groups for the rest
 * (96, 48, 8, 2048), every dtype, both layouts. */
static void test_cuda_fp8_groups(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    static const struct {
        int64_t m, k;
        int32_t g;
    } shapes[] = {{64, 256, 64}, {37, 256, 16}, {33, 512, 32}, {9, 1024, 512},
                  {31, 288, 96}, {5, 96, 48},   {7, 64, 8},    {3, 4096, 2048},
                  {300, 256, 256}, {2, 7168, 128}};
    for (int i = 0; i < 20; i++) {
        int s = i % 10;
        fp8_case fc = fp8_base(REF_FLOAT_DTYPES[i % 3], shapes[s].m, shapes[s].k, shapes[s].g);
        fc.layout = (moe_scale_layout)((i / 3) % 2);
        fc.ue8m0 = i >= 10;
        fc.special = i % 4 == 1;
        fc.out = REF_FLOAT_DTYPES[(i + 1) % 3];
        run_fp8_case(gpu, &fc);
    }
}

/* Strided and misaligned rows: x with a padded stride or starting off a 16-byte
 * boundary (element loads), q likewise (byte stores), and padded but aligned rows that
 * keep the 16-byte path; lane and warp groups. */
static void test_cuda_fp8_strided(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    static const struct {
        int64_t x_pad;
        size_t x_lead;
        int64_t q_pad;
        size_t q_lead;
    } layouts[] = {{44, 2, 0, 16}, {0, 16, 4, 1}, {64, 32, 16, 48}, {3, 4, 7, 3}};
    for (int i = 0; i < 12; i++) {
        int l = i % 4;
        fp8_case fc = fp8_base(REF_FLOAT_DTYPES[i % 3], 45, i < 8 ? 512 : 384, i < 8 ? 128 : 96);
        /* f32 rows are 4-byte elements: keep their lead a multiple of 4 */
        fc.x_pad = layouts[l].x_pad;
        fc.x_lead = fc.dtype == MOE_DTYPE_F32 ? layouts[l].x_lead / 4 * 4 : layouts[l].x_lead / 2 * 2;
        fc.q_pad = layouts[l].q_pad;
        fc.q_lead = layouts[l].q_lead;
        fc.layout = (moe_scale_layout)(i % 2);
        fc.ue8m0 = (i / 2) % 2;
        fc.topk = i % 3 == 0 ? 3 : 0;
        if (fc.topk) fc.t = 20;
        fc.out = REF_FLOAT_DTYPES[(i + 2) % 3];
        run_fp8_case(gpu, &fc);
    }
}

/* NaN, Inf, zero and tiny groups, the saturation limit, scales beyond the kernels'
 * reciprocal range (huge f32 values, a tiny eps), in every dtype with ue8m0 on and off. */
static void test_cuda_fp8_specials(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    for (int i = 0; i < 12; i++) {
        /* K = 1536: 12 groups of 128 or 16 of 96, every special kind at least once */
        fp8_case fc = fp8_base(REF_FLOAT_DTYPES[i % 3], 8, 1536, i % 4 < 2 ? 128 : 96);
        fc.special = 1;
        fc.ue8m0 = (i / 3) % 2;
        fc.layout = (moe_scale_layout)((i / 6) % 2);
        /* a tiny eps puts the zero group's scale below 2^-80 */
        if (i % 4 == 3) fc.eps = 1e-37f;
        fc.out = REF_FLOAT_DTYPES[(i + 1) % 3];
        run_fp8_case(gpu, &fc);
    }
}

/* ---------------------------------------------------------------- MXFP8 and NVFP4 */

/* (Tests of moe_quant_mxfp8 / moe_quant_nvfp4 and their inverses go here, as static
 * test functions run from suite_cuda_quant below.) */

/* ---------------------------------------------------------------- suite */

void suite_cuda_quant(void) {
    /* FP8 per token group */
    RUN(test_cuda_fp8_code_host);
    RUN(test_cuda_e4m3_hardware);
    RUN(test_cuda_fp8_deepseek);
    RUN(test_cuda_fp8_gather);
    RUN(test_cuda_fp8_planned);
    RUN(test_cuda_fp8_groups);
    RUN(test_cuda_fp8_strided);
    RUN(test_cuda_fp8_specials);
    /* MXFP8 and NVFP4: add their RUN lines here */
}
