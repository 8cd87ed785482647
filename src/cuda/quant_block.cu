/* Not yet implemented on the GPU: reports MOE_ERR_UNSUPPORTED. */
#include "cuda.h"

moe_status moe_cuda_quant_mxfp8(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets, moe_mx_rule rule, moe_tensor *q, moe_tensor *scales, void *stream) {
    (void)x;
    (void)offsets;
    (void)rule;
    (void)q;
    (void)scales;
    (void)stream;
    return moe_unsupported(ctx, "moe_quant_mxfp8");
}

moe_status moe_cuda_dequant_mxfp8(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales, const moe_tensor *offsets, moe_tensor *out, void *stream) {
    (void)q;
    (void)scales;
    (void)offsets;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_dequant_mxfp8");
}

moe_status moe_cuda_quant_nvfp4(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets, const moe_tensor *global_scale, moe_tensor *q, moe_tensor *scales, void *stream) {
    (void)x;
    (void)offsets;
    (void)global_scale;
    (void)q;
    (void)scales;
    (void)stream;
    return moe_unsupported(ctx, "moe_quant_nvfp4");
}

moe_status moe_cuda_dequant_nvfp4(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales, const moe_tensor *offsets, const moe_tensor *global_scale, moe_tensor *out, void *stream) {
    (void)q;
    (void)scales;
    (void)offsets;
    (void)global_scale;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_dequant_nvfp4");
}

