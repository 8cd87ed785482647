/* STUB: to be implemented. */
#include "cpu.h"

void moe_cpu_quant_fp8_row(const float *x, int64_t k, const moe_fp8_group_params *params,
                           uint8_t *q, float *scales, int64_t scale_stride) {
    int64_t g = params->group;
    for (int64_t c0 = 0; c0 < k; c0 += g) {
        /* amax ignores NaN (as fmaxf does), so a NaN spoils only its own element */
        float amax = 0.0f;
        for (int64_t c = c0; c < c0 + g; c++) {
            float a = x[c] < 0.0f ? -x[c] : x[c];
            if (a > amax) amax = a;
        }
        float scale = (amax > params->eps ? amax : params->eps) / MOE_E4M3_MAX;
        if (params->ue8m0 && scale < 3.0e38f) scale = moe_exp2i(moe_ceil_log2(scale));
        for (int64_t c = c0; c < c0 + g; c++) q[c] = moe_f32_to_e4m3(x[c] / scale);
        scales[(c0 / g) * scale_stride] = scale;
    }
}

moe_status moe_cpu_quant_fp8_group(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm, int32_t topk, const moe_fp8_group_params *params, moe_tensor *q, moe_tensor *scales, void *stream) {
    (void)ctx;
    (void)x;
    (void)perm;
    (void)topk;
    (void)params;
    (void)q;
    (void)scales;
    (void)stream;
    return moe_unsupported(ctx, "moe_quant_fp8_group");
}

moe_status moe_cpu_dequant_fp8_group(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales, const moe_fp8_group_params *params, moe_tensor *out, void *stream) {
    (void)ctx;
    (void)q;
    (void)scales;
    (void)params;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_dequant_fp8_group");
}

