/* Argument checks and dispatch: activation. */
#include "internal.h"

moe_status moe_silu_and_mul(moe_context *ctx, const moe_tensor *in, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, silu_and_mul, ctx, in, out, stream);
}

moe_status moe_silu_and_mul_quant_fp8(moe_context *ctx, const moe_tensor *in, const moe_fp8_group_params *params, moe_tensor *q, moe_tensor *scales, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, silu_and_mul_quant_fp8, ctx, in, params, q, scales, stream);
}

