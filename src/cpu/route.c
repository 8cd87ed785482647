/* STUB: to be implemented. */
#include "cpu.h"

moe_status moe_cpu_route_grouped_topk(moe_context *ctx, const moe_tensor *logits, const moe_tensor *bias, const moe_grouped_topk_params *params, moe_tensor *ids, moe_tensor *weights, void *stream) {
    (void)ctx;
    (void)logits;
    (void)bias;
    (void)params;
    (void)ids;
    (void)weights;
    (void)stream;
    return moe_unsupported(ctx, "moe_route_grouped_topk");
}

moe_status moe_cpu_route_softmax_topk(moe_context *ctx, const moe_tensor *logits, int32_t topk, int32_t renormalize, moe_tensor *ids, moe_tensor *weights, void *stream) {
    (void)ctx;
    (void)logits;
    (void)topk;
    (void)renormalize;
    (void)ids;
    (void)weights;
    (void)stream;
    return moe_unsupported(ctx, "moe_route_softmax_topk");
}

