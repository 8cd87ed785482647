/* Not yet implemented on the GPU: reports MOE_ERR_UNSUPPORTED. */
#include "cuda.h"

moe_status moe_cuda_silu_and_mul(moe_context *ctx, const moe_tensor *in, moe_tensor *out, void *stream) {
    (void)in;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_silu_and_mul");
}

moe_status moe_cuda_silu_and_mul_quant_fp8(moe_context *ctx, const moe_tensor *in, const moe_fp8_group_params *params, moe_tensor *q, moe_tensor *scales, void *stream) {
    (void)in;
    (void)params;
    (void)q;
    (void)scales;
    (void)stream;
    return moe_unsupported(ctx, "moe_silu_and_mul_quant_fp8");
}

