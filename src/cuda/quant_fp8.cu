/* Not yet implemented on the GPU: reports MOE_ERR_UNSUPPORTED. */
#include "cuda.h"

moe_status moe_cuda_quant_fp8_group(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm, int32_t topk, const moe_fp8_group_params *params, moe_tensor *q, moe_tensor *scales, void *stream) {
    (void)x;
    (void)perm;
    (void)topk;
    (void)params;
    (void)q;
    (void)scales;
    (void)stream;
    return moe_unsupported(ctx, "moe_quant_fp8_group");
}

moe_status moe_cuda_dequant_fp8_group(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales, const moe_fp8_group_params *params, moe_tensor *out, void *stream) {
    (void)q;
    (void)scales;
    (void)params;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_dequant_fp8_group");
}

