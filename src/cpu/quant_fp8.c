/* Per-token-group FP8 quantisation (SPEC 3) and its inverse. */
#include "cpu.h"

/* Below this many elements waking the threads costs more than the work. */
#define PARALLEL_MIN_ELEMENTS (1 << 16)

/* The group's scale from its amax: the one place this formula lives, so the plain op, the
 * fused gather and silu_and_mul_quant_fp8 round alike. */
static float fp8_group_scale(float amax, const moe_fp8_group_params *params) {
    float scale = (amax > params->eps ? amax : params->eps) / MOE_E4M3_MAX;
    /* an infinite scale (an Inf in the group) has no power of two above it */
    if (params->ue8m0 && scale < 3.0e38f) scale = moe_exp2i(moe_ceil_log2(scale));
    return scale;
}

/* Element c of a row of dtype; row NULL stands for a row of zeros. */
static float load_or_zero(moe_dtype dtype, const void *row, int64_t c) {
    return row ? moe_cpu_load(dtype, row, c) : 0.0f;
}

/* Quantises one row of k values of any float dtype, group by group. */
static void quant_row(moe_dtype dtype, const void *row, int64_t k,
                      const moe_fp8_group_params *params, uint8_t *q, float *scales,
                      int64_t scale_stride) {
    int64_t g = params->group;
    for (int64_t c0 = 0; c0 < k; c0 += g) {
        /* amax ignores NaN (as fmaxf does), so a NaN spoils only its own element */
        float amax = 0.0f;
        for (int64_t c = c0; c < c0 + g; c++) {
            float v = load_or_zero(dtype, row, c);
            float a = v < 0.0f ? -v : v;
            if (a > amax) amax = a;
        }
        float scale = fp8_group_scale(amax, params);
        for (int64_t c = c0; c < c0 + g; c++)
            q[c] = moe_f32_to_e4m3(load_or_zero(dtype, row, c) / scale);
        scales[(c0 / g) * scale_stride] = scale;
    }
}

/* The f32 entry point of silu_and_mul_quant_fp8. quant_fp8_group calls quant_row itself:
 * its f16/bf16 and zero rows have no f32 copy to pass here (ops never allocate). */
void moe_cpu_quant_fp8_row(const float *x, int64_t k, const moe_fp8_group_params *params,
                           uint8_t *q, float *scales, int64_t scale_stride) {
    quant_row(MOE_DTYPE_F32, x, k, params, q, scales, scale_stride);
}

/* Where row r's group scales live: along a row (row-major) or down a column. */
static float *scale_base(const moe_tensor *scales, moe_scale_layout layout, int64_t r,
                         int64_t *stride) {
    if (layout == MOE_SCALES_ROW_MAJOR) {
        *stride = 1;
        return (float *)moe_cpu_at(scales, r, 0, 0);
    }
    *stride = scales->stride[0];
    return (float *)moe_cpu_at(scales, 0, r, 0);
}

/* The x row that output row r reads, or NULL for a zero row. perm entries come from the
 * caller's data, so anything outside [0, T*topk) is a zero row, never an access. */
static const void *source_row(const moe_tensor *x, const moe_tensor *perm, int32_t topk,
                              int64_t r) {
    if (!perm) return moe_cpu_at(x, r, 0, 0);
    int32_t p = moe_cpu_i32(perm, r, 0);
    if (p < 0 || p / topk >= x->shape[0]) return NULL;
    return moe_cpu_at(x, p / topk, 0, 0);
}

moe_status moe_cpu_quant_fp8_group(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm,
                                   const moe_tensor *inv_perm, int32_t topk,
                                   const moe_fp8_group_params *params, moe_tensor *q,
                                   moe_tensor *scales, void *stream) {
    (void)ctx;
    (void)inv_perm; /* row by row here: the inverse only lets the GPU visit tokens once */
    (void)stream;
    int64_t m = q->shape[0], k = q->shape[1];
#pragma omp parallel for schedule(static) if (m * k >= PARALLEL_MIN_ELEMENTS)
    for (int64_t r = 0; r < m; r++) {
        int64_t stride;
        float *s = scale_base(scales, params->layout, r, &stride);
        quant_row(x->dtype, source_row(x, perm, topk, r), k, params,
                  (uint8_t *)moe_cpu_at(q, r, 0, 0), s, stride);
    }
    return MOE_OK;
}

moe_status moe_cpu_dequant_fp8_group(moe_context *ctx, const moe_tensor *q,
                                     const moe_tensor *scales, const moe_fp8_group_params *params,
                                     moe_tensor *out, void *stream) {
    (void)ctx;
    (void)stream;
    int64_t m = q->shape[0], k = q->shape[1], g = params->group;
#pragma omp parallel for schedule(static) if (m * k >= PARALLEL_MIN_ELEMENTS)
    for (int64_t r = 0; r < m; r++) {
        int64_t stride;
        const float *s = scale_base(scales, params->layout, r, &stride);
        const uint8_t *qr = moe_cpu_at(q, r, 0, 0);
        void *o = moe_cpu_at(out, r, 0, 0);
        for (int64_t c = 0; c < k; c++)
            moe_cpu_store(out->dtype, o, c, moe_e4m3_to_f32(qr[c]) * s[(c / g) * stride]);
    }
    return MOE_OK;
}
