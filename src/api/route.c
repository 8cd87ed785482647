/* Argument checks and dispatch: route. */
#include "internal.h"

moe_status moe_route_grouped_topk(moe_context *ctx, const moe_tensor *logits, const moe_tensor *bias, const moe_grouped_topk_params *params, moe_tensor *ids, moe_tensor *weights, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, route_grouped_topk, ctx, logits, bias, params, ids, weights, stream);
}

moe_status moe_route_softmax_topk(moe_context *ctx, const moe_tensor *logits, int32_t topk, int32_t renormalize, moe_tensor *ids, moe_tensor *weights, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, route_softmax_topk, ctx, logits, topk, renormalize, ids, weights, stream);
}

