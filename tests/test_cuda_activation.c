/* The CUDA backend's silu_and_mul and silu_and_mul_quant_fp8 against the CPU reference
 * on the same inputs.
 *
 * Both backends compute a / (1 + e^-a) * b in f32 with every step rounded once; only
 * expf differs: CUDA's is within 2 ulp, glibc's within 0.502 ulp. Tolerances follow:
 * - e^-a: the two differ by at most ~3 ulp, 5 * 2^-24 relative. 1 + e^-a, the division
 *   and the product pass that on (each with a factor of at most 1) and add one rounding
 *   each on both sides: at most 11 * 2^-24 relative between the f32 results. f32 outputs
 *   may differ by 2^-20 relative (16 * 2^-24) plus 2^-140 for subnormal results; bf16 and
 *   f16 outputs, whose ulp is 2^-8 or 2^-11 relative, by at most one ulp (a rounding
 *   boundary between the two f32 values), counted exactly.
 * - Fused FP8: a scale is max(amax, eps) / 448 of those results, so without ue8m0 it may
 *   differ by 1e-6 relative; with ue8m0 it is equal unless amax / 448 lies within that
 *   distance of a power of two (then the GPU may round to the next one: allowed when the
 *   CPU's unrounded scale is within 2^-19 of one). A code may differ from the CPU's only
 *   where the CPU's f32 result divided by the GPU's scale lies within 2^-18 relative of an
 *   e4m3 rounding midpoint (the quotients differ by at most ~24 * 2^-24), and then only to
 *   the neighbouring code. Such values are rare (about one in 2^20 of the quotients that
 *   differ at all); more than 1e-4 of all codes would mean a real difference.
 * NaN results compare equal whatever their bits (SPEC: NaN stays NaN). Every output lies
 * inside a guarded buffer, and each GPU op runs twice over different prefills: elements
 * it must write are written, all other bytes untouched. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "guarded_buffer.h"
#include "quant_ref.h"

/* ---------------------------------------------------------------- inputs */

/* in [M, 2I] (row stride 2I + pad, lead bytes in) of N(0, 3) values; row 0 starts with
 * gates in both tails (e^-a overflowing or the result underflowing), NaN, infinities
 * and zero, and has a NaN and an Inf among its up values. */
static gbuf make_input(moe_dtype dtype, int64_t m, int64_t i, int64_t pad, size_t lead) {
    gbuf in = gbuf_host(dtype, m, 2 * i, 2 * i + pad, lead, 0);
    test_fill_normal(&in.view, 3.0);
    static const double gates[] = {30.0, -30.0, 88.0, -88.0, -89.5, -100.0,
                                   NAN,  INFINITY, -INFINITY, 0.0, 1e-30};
    for (size_t c = 0; m > 0 && c < sizeof gates / sizeof gates[0] && (int64_t)c < i; c++)
        test_set(&in.view, 0, (int64_t)c, 0, gates[c]);
    if (m > 0 && i > 13) {
        test_set(&in.view, 0, i + 12, 0, NAN);
        test_set(&in.view, 0, i + 13, 0, -INFINITY);
    }
    return in;
}

/* ---------------------------------------------------------------- silu_and_mul */

/* A 16-bit float's bits on a line where neighbours differ by one (-0 and +0 both 0). */
static int32_t ordered16(uint16_t b) { return b & 0x8000u ? -(int32_t)(b & 0x7fffu) : b; }

static int elem_is_nan(moe_dtype dt, const uint8_t *p) {
    uint32_t v = 0;
    memcpy(&v, p, moe_dtype_size(dt));
    if (dt == MOE_DTYPE_F32) return (v & 0x7fffffffu) > 0x7f800000u;
    if (dt == MOE_DTYPE_F16) return (v & 0x7c00u) == 0x7c00u && (v & 0x3ffu);
    return (v & 0x7f80u) == 0x7f80u && (v & 0x7fu);
}

/* got (GPU) against want (CPU), per the tolerances at the top; 1 for equal bits. */
static int silu_close(moe_dtype dt, const uint8_t *got, const uint8_t *want, int *exact) {
    *exact = memcmp(got, want, moe_dtype_size(dt)) == 0;
    if (*exact) return 1;
    if (elem_is_nan(dt, got) || elem_is_nan(dt, want))
        return elem_is_nan(dt, got) && elem_is_nan(dt, want);
    if (dt == MOE_DTYPE_F32) {
        float g, w;
        memcpy(&g, got, 4);
        memcpy(&w, want, 4);
        if (isinf(g) || isinf(w)) return 0;
        return fabs((double)g - w) <= 0x1p-20 * fabs((double)w) + 0x1p-140;
    }
    uint16_t g, w;
    memcpy(&g, got, 2);
    memcpy(&w, want, 2);
    int32_t d = ordered16(g) - ordered16(w);
    return d >= -1 && d <= 1;
}

typedef struct silu_case {
    moe_dtype in, out;
    int64_t m, i;
    int64_t in_pad, out_pad;
    size_t in_lead, out_lead;
} silu_case;

static void run_silu(moe_context *gpu, const silu_case *sc) {
    char what[160];
    snprintf(what, sizeof what, "silu_and_mul %s -> %s M=%lld I=%lld%s%s", moe_dtype_name(sc->in),
             moe_dtype_name(sc->out), (long long)sc->m, (long long)sc->i,
             sc->in_pad || sc->in_lead % 16 ? " in-strided" : "",
             sc->out_pad || sc->out_lead % 16 ? " out-strided" : "");
    int64_t m = sc->m, i = sc->i, ld = i + sc->out_pad;
    /* rows start on their element size, off 16 bytes where the case asks */
    size_t in_lead = sc->in_lead / moe_dtype_size(sc->in) * moe_dtype_size(sc->in);
    size_t out_lead = sc->out_lead / moe_dtype_size(sc->out) * moe_dtype_size(sc->out);
    gbuf inh = make_input(sc->in, m, i, sc->in_pad, in_lead);
    gbuf ind = gbuf_to_device(&inh);
    gbuf oc = gbuf_host(sc->out, m, i, ld, out_lead, FILL_A);
    gbuf oa = gbuf_device(sc->out, m, i, ld, out_lead, FILL_A);
    gbuf ob = gbuf_device(sc->out, m, i, ld, out_lead, FILL_B);
    CHECK_OK(moe_silu_and_mul(test_cpu(), &inh.view, &oc.view, NULL));
    CHECK_OK(moe_silu_and_mul(gpu, &ind.view, &oa.view, NULL));
    CHECK_OK(moe_silu_and_mul(gpu, &ind.view, &ob.view, NULL));
    gbuf oa_h = gbuf_fetch(&oa), ob_h = gbuf_fetch(&ob);
    int64_t bad = 0, inexact = 0, fr = -1, fc = -1;
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < i; c++) {
            int exact;
            if (!silu_close(sc->out, gbuf_elem(&oa_h, r, c), gbuf_elem(&oc, r, c), &exact) &&
                bad++ == 0)
                fr = r, fc = c;
            inexact += !exact;
        }
    double g = fr >= 0 ? test_get(&oa_h.view, fr, fc, 0) : 0.0,
           w = fr >= 0 ? test_get(&oc.view, fr, fc, 0) : 0.0;
    CHECK(bad == 0, "%s: %lld of %lld outside the expf tolerance, first (%lld, %lld): %.9g, "
          "CPU %.9g", what, (long long)bad, (long long)(m * i), (long long)fr, (long long)fc, g, w);
    CHECK(gbuf_touched_outside(&oa_h, i, FILL_A) == 0, "%s: bytes outside out written", what);
    gbuf_check_second_run(&ob_h, &oa_h, i, what, "out");
    if (inexact)
        printf("  note: %s: %lld of %lld outputs differ from the CPU's (expf), all within "
               "tolerance\n",
               what, (long long)inexact, (long long)(m * i));
}

/* Every pair of dtypes at DeepSeek's expert width and smaller ones; I = 100 and
 * misaligned or padded rows take the one-value-a-thread path; M = 0 and 1. */
static void test_cuda_silu_and_mul(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++) {
            moe_dtype di = REF_FLOAT_DTYPES[a], dout = REF_FLOAT_DTYPES[b];
            silu_case cases[] = {
                {di, dout, 32, 96, 0, 0, 0, 0},   {di, dout, 33, 768, 0, 0, 16, 16},
                {di, dout, 7, 100, 0, 0, 0, 0},   {di, dout, 1, 2048, 0, 0, 0, 0},
                {di, dout, 0, 2048, 0, 0, 0, 0},  {di, dout, 9, 96, 8, 16, 32, 48},
                {di, dout, 9, 96, 3, 5, 4, 6},
            };
            for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) run_silu(gpu, &cases[c]);
            /* large rows for the pairs a layer uses */
            if (!test_quick() && (a == b || dout == MOE_DTYPE_BF16)) {
                silu_case big = {di, dout, 4096, a == b ? 2048 : 768, 0, 0, 0, 0};
                run_silu(gpu, &big);
            }
        }
}

/* ---------------------------------------------------------------- fused FP8 */

typedef struct fused_case {
    moe_dtype in;
    int64_t m, i;
    int32_t group, ue8m0;
    moe_scale_layout layout;
    int64_t in_pad, q_pad;
    size_t in_lead, q_lead;
} fused_case;

/* Whether s (a power of two times 1 + d) has |d| <= 2^-19 towards either neighbour. */
static int near_pow2(double s) {
    int e;
    double f = frexp(s, &e); /* [0.5, 1) */
    return f - 0.5 <= 0x1p-20 || 1.0 - f <= 0x1p-20;
}

static void run_fused(moe_context *gpu, const fused_case *fc) {
    char what[200];
    snprintf(what, sizeof what, "silu_and_mul_quant_fp8 %s M=%lld I=%lld g=%d %s ue8m0=%d%s%s",
             moe_dtype_name(fc->in), (long long)fc->m, (long long)fc->i, fc->group,
             fc->layout == MOE_SCALES_ROW_MAJOR ? "row-major" : "col-major", fc->ue8m0,
             fc->in_pad || fc->in_lead % 16 ? " in-strided" : "",
             fc->q_pad || fc->q_lead % 16 ? " q-strided" : "");
    moe_fp8_group_params p = {fc->group, 1e-10f, fc->ue8m0, fc->layout};
    int64_t m = fc->m, i = fc->i, groups = i / fc->group, m4 = (m + 3) / 4 * 4;
    gbuf inh = make_input(fc->in, m, i, fc->in_pad, fc->in_lead);
    /* an all-zero group: its scale falls back to eps / 448 */
    for (int64_t c = 0; m > 1 && c < fc->group; c++) test_set(&inh.view, 1, c, 0, 0.0);
    gbuf ind = gbuf_to_device(&inh);

    int row_major = fc->layout == MOE_SCALES_ROW_MAJOR;
    int64_t s_rows = row_major ? m : groups, s_cols = row_major ? groups : m4;
    int64_t s_written = row_major ? groups : m;
    int64_t q_ld = i + fc->q_pad;
    gbuf qc = gbuf_host(MOE_DTYPE_E4M3, m, i, q_ld, fc->q_lead, FILL_A);
    gbuf sc = gbuf_host(MOE_DTYPE_F32, s_rows, s_cols, s_cols + 3, 16, FILL_A);
    gbuf y = gbuf_host(MOE_DTYPE_F32, m, i, i, 0, FILL_A);
    CHECK_OK(moe_silu_and_mul_quant_fp8(test_cpu(), &inh.view, &p, &qc.view, &sc.view, NULL));
    /* the f32 values the CPU quantised (its fused op computes them the same way) */
    CHECK_OK(moe_silu_and_mul(test_cpu(), &inh.view, &y.view, NULL));

    gbuf qa = gbuf_device(MOE_DTYPE_E4M3, m, i, q_ld, fc->q_lead, FILL_A);
    gbuf sa = gbuf_device(MOE_DTYPE_F32, s_rows, s_cols, s_cols + 3, 16, FILL_A);
    gbuf qb = gbuf_device(MOE_DTYPE_E4M3, m, i, q_ld, fc->q_lead, FILL_B);
    gbuf sb = gbuf_device(MOE_DTYPE_F32, s_rows, s_cols, s_cols + 3, 16, FILL_B);
    CHECK_OK(moe_silu_and_mul_quant_fp8(gpu, &ind.view, &p, &qa.view, &sa.view, NULL));
    CHECK_OK(moe_silu_and_mul_quant_fp8(gpu, &ind.view, &p, &qb.view, &sb.view, NULL));
    gbuf qa_h = gbuf_fetch(&qa), sa_h = gbuf_fetch(&sa), qb_h = gbuf_fetch(&qb),
         sb_h = gbuf_fetch(&sb);

    int64_t scale_bad = 0, scale_inexact = 0, flipped = 0, code_bad = 0, code_inexact = 0;
    char first[200] = "";
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < groups; j++) {
            int64_t c0 = j * fc->group;
            float sg, sw;
            memcpy(&sg, row_major ? gbuf_elem(&sa_h, r, j) : gbuf_elem(&sa_h, j, r), 4);
            memcpy(&sw, row_major ? gbuf_elem(&sc, r, j) : gbuf_elem(&sc, j, r), 4);
            int flip = 0;
            if (memcmp(&sg, &sw, 4) != 0) {
                float amax = 0.0f;
                for (int64_t c = c0; c < c0 + fc->group; c++) {
                    float v = (float)fabs(test_get(&y.view, r, c, 0));
                    if (v > amax) amax = v;
                }
                double raw = (amax > p.eps ? amax : p.eps) / 448.0f;
                if (!fc->ue8m0 && isfinite(sg) && fabs((double)sg - sw) <= 1e-6 * sw) {
                    scale_inexact++;
                } else if (fc->ue8m0 && (sg == 2 * sw || sw == 2 * sg) && near_pow2(raw)) {
                    flip = 1;
                    flipped++;
                } else {
                    if (scale_bad++ == 0)
                        snprintf(first, sizeof first, "scale (%lld, %lld): %.9g, CPU %.9g",
                                 (long long)r, (long long)j, (double)sg, (double)sw);
                    continue;
                }
            }
            for (int64_t c = c0; c < c0 + fc->group; c++) {
                uint8_t cg = *gbuf_elem(&qa_h, r, c), cw = *gbuf_elem(&qc, r, c);
                if (cg == cw || ((cg & 0x7fu) == 0x7fu && (cw & 0x7fu) == 0x7fu)) continue;
                /* the GPU's code must round the CPU's value by the GPU's scale */
                double v = test_get(&y.view, r, c, 0) / (double)sg;
                if (!isnan(v) && ref_code_ok(ref_e4m3, cg, v)) {
                    code_inexact += !flip;
                } else if (code_bad++ == 0 && scale_bad == 0) {
                    snprintf(first, sizeof first, "code (%lld, %lld): 0x%02x, CPU 0x%02x, y %.9g / %.9g",
                             (long long)r, (long long)c, cg, cw, test_get(&y.view, r, c, 0),
                             (double)sg);
                }
            }
        }
    int64_t n = m * i;
    CHECK(scale_bad == 0 && code_bad == 0 && code_inexact <= n / 10000 + 2,
          "%s: %lld scales and %lld codes beyond the expf tolerance, %lld codes off by one "
          "at a midpoint (of %lld); first: %s",
          what, (long long)scale_bad, (long long)code_bad, (long long)code_inexact, (long long)n,
          first);
    CHECK(gbuf_touched_outside(&qa_h, i, FILL_A) == 0 && gbuf_touched_outside(&sa_h, s_written, FILL_A) == 0,
          "%s: bytes outside q or the scales written (col-major padding included)", what);
    gbuf_check_second_run(&qb_h, &qa_h, i, what, "codes");
    gbuf_check_second_run(&sb_h, &sa_h, s_written, what, "scales");
    if (scale_inexact || flipped || code_inexact)
        printf("  note: %s: %lld scales 1e-6-close, %lld ue8m0 scales one power of two apart, "
               "%lld codes one step apart at a midpoint, of %lld codes (expf)\n",
               what, (long long)scale_inexact, (long long)flipped, (long long)code_inexact,
               (long long)n);
}

/* DeepSeek's I = 2048 with g = 128 from M = 0 to 4096; other widths, the lane-group
 * sizes 1..32 lanes (g = 16..512), warp groups (96, 48, 2048), every input dtype, both
 * layouts, ue8m0 on and off. */
static void test_cuda_silu_quant_fp8(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    static const int64_t ms[] = {0, 1, 32, 4096};
    for (int c = 0; c < 8; c++) {
        if (ms[c % 4] == 4096 && test_quick()) continue;
        fused_case fc = {MOE_DTYPE_BF16, ms[c % 4], 2048, 128, c / 4, (moe_scale_layout)(c % 2),
                         0, 0, 0, 0};
        run_fused(gpu, &fc);
    }
    static const struct {
        int64_t m, i;
        int32_t g;
    } shapes[] = {{33, 768, 128}, {17, 256, 64}, {9, 512, 512}, {21, 96, 16}, {12, 384, 96},
                  {6, 48, 48},    {3, 4096, 2048}, {40, 256, 32}};
    for (int c = 0; c < 16; c++) {
        int s = c % 8;
        fused_case fc = {REF_FLOAT_DTYPES[c % 3], shapes[s].m, shapes[s].i, shapes[s].g,
                         c >= 8, (moe_scale_layout)((c / 3) % 2), 0, 0, 0, 0};
        run_fused(gpu, &fc);
    }
}

/* Padded and misaligned rows: element loads (in off a 16-byte boundary or with an odd
 * stride) and byte stores (q likewise), and padded rows that keep 16-byte accesses. */
static void test_cuda_silu_quant_fp8_strided(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    static const struct {
        int64_t in_pad, q_pad;
        size_t in_lead, q_lead;
    } layouts[] = {{3, 0, 4, 16}, {0, 5, 16, 1}, {16, 32, 32, 48}, {2, 7, 2, 3}};
    for (int c = 0; c < 12; c++) {
        int l = c % 4;
        fused_case fc = {REF_FLOAT_DTYPES[c % 3], 19, c < 8 ? 512 : 384, c < 8 ? 128 : 96,
                         (c / 2) % 2, (moe_scale_layout)(c % 2), layouts[l].in_pad, layouts[l].q_pad,
                         layouts[l].in_lead, layouts[l].q_lead};
        /* f32 rows must start on a 4-byte boundary */
        if (fc.in == MOE_DTYPE_F32) fc.in_lead = fc.in_lead / 4 * 4;
        run_fused(gpu, &fc);
    }
}

void suite_cuda_activation(void) {
    RUN(test_cuda_silu_and_mul);
    RUN(test_cuda_silu_quant_fp8);
    RUN(test_cuda_silu_quant_fp8_strided);
}
