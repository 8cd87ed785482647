/* Not yet implemented on the GPU: reports MOE_ERR_UNSUPPORTED. */
#include "cuda.h"

moe_status moe_cuda_combine(moe_context *ctx, const moe_tensor *y, const moe_tensor *inv_perm, const moe_tensor *weights, float scale, moe_tensor *out, void *stream) {
    (void)y;
    (void)inv_perm;
    (void)weights;
    (void)scale;
    (void)out;
    (void)stream;
    return moe_unsupported(ctx, "moe_combine");
}

