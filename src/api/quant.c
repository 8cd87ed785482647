/* Argument checks and dispatch: quant. */
#include "internal.h"

moe_status moe_quant_fp8_group(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm, int32_t topk, const moe_fp8_group_params *params, moe_tensor *q, moe_tensor *scales, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, quant_fp8_group, ctx, x, perm, topk, params, q, scales, stream);
}

moe_status moe_dequant_fp8_group(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales, const moe_fp8_group_params *params, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, dequant_fp8_group, ctx, q, scales, params, out, stream);
}

moe_status moe_quant_mxfp8(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets, moe_mx_rule rule, moe_tensor *q, moe_tensor *scales, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, quant_mxfp8, ctx, x, offsets, rule, q, scales, stream);
}

moe_status moe_dequant_mxfp8(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales, const moe_tensor *offsets, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, dequant_mxfp8, ctx, q, scales, offsets, out, stream);
}

moe_status moe_quant_nvfp4(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets, const moe_tensor *global_scale, moe_tensor *q, moe_tensor *scales, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, quant_nvfp4, ctx, x, offsets, global_scale, q, scales, stream);
}

moe_status moe_dequant_nvfp4(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales, const moe_tensor *offsets, const moe_tensor *global_scale, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, dequant_nvfp4, ctx, q, scales, offsets, global_scale, out, stream);
}

