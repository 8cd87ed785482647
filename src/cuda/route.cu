/* Not yet implemented on the GPU: reports MOE_ERR_UNSUPPORTED. */
#include "cuda.h"

moe_status moe_cuda_route_grouped_topk(moe_context *ctx, const moe_tensor *logits, const moe_tensor *bias, const moe_grouped_topk_params *params, moe_tensor *ids, moe_tensor *weights, void *stream) {
    (void)logits;
    (void)bias;
    (void)params;
    (void)ids;
    (void)weights;
    (void)stream;
    return moe_unsupported(ctx, "moe_route_grouped_topk");
}

moe_status moe_cuda_route_softmax_topk(moe_context *ctx, const moe_tensor *logits, int32_t topk, int32_t renormalize, moe_tensor *ids, moe_tensor *weights, void *stream) {
    (void)logits;
    (void)topk;
    (void)renormalize;
    (void)ids;
    (void)weights;
    (void)stream;
    return moe_unsupported(ctx, "moe_route_softmax_topk");
}

