/* Argument checks and dispatch: routing (SPEC 1). Every check runs before the backend
 * sees the call, so a backend may trust E <= MOE_MAX_EXPERTS and k <= MOE_MAX_TOPK and
 * keep its per-token scratch on the stack. */
#include <math.h>
#include <stdint.h>

#include "internal.h"

static int32_t min_i32(int64_t a, int64_t b) { return (int32_t)(a < b ? a : b); }

/* logits [T, E] f32/f16/bf16 with 1 <= E <= MOE_MAX_EXPERTS. */
static moe_status check_logits(const moe_tensor *logits) {
    MOE_TRY(moe_check_tensor(logits, "logits", MOE_DT_FLOAT, 2));
    if (logits->shape[1] < 1 || logits->shape[1] > MOE_MAX_EXPERTS)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "logits.shape[1] (%lld experts) must be in [1, %d] (MOE_MAX_EXPERTS)",
                        (long long)logits->shape[1], MOE_MAX_EXPERTS);
    return MOE_OK;
}

/* ids [T, cols] i32 and weights [T, cols] f32, the routing outputs. */
static moe_status check_outputs(const moe_tensor *ids, const moe_tensor *weights, int64_t t,
                                int64_t cols, const char *cols_name) {
    MOE_TRY(moe_check_tensor(ids, "ids", MOE_DT(MOE_DTYPE_I32), 2));
    MOE_TRY(moe_check_dim(ids, "ids", 0, t, "T (logits.shape[0])"));
    MOE_TRY(moe_check_dim(ids, "ids", 1, cols, cols_name));
    MOE_TRY(moe_check_tensor(weights, "weights", MOE_DT(MOE_DTYPE_F32), 2));
    MOE_TRY(moe_check_dim(weights, "weights", 0, t, "T (logits.shape[0])"));
    MOE_TRY(moe_check_dim(weights, "weights", 1, cols, cols_name));
    return MOE_OK;
}

/* The params of grouped routing for E experts. */
static moe_status check_grouped_params(const moe_grouped_topk_params *p, int64_t e) {
    MOE_TRY(moe_check_ptr(p, "params"));
    MOE_TRY(moe_check_range(p->num_groups, "params->num_groups", 1, e));
    if (e % p->num_groups != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "params->num_groups (%d) must divide the number of experts "
                        "(logits.shape[1] = %lld)",
                        (int)p->num_groups, (long long)e);
    MOE_TRY(moe_check_range(p->topk_group, "params->topk_group", 1, p->num_groups));
    /* k can be no more than the experts in the kept groups */
    int64_t kept = (int64_t)p->topk_group * (e / p->num_groups);
    MOE_TRY(moe_check_range(p->topk, "params->topk", 1, min_i32(kept, MOE_MAX_TOPK)));
    if (!(p->routed_scaling_factor > 0.0f) || isinf(p->routed_scaling_factor))
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "params->routed_scaling_factor (%g) must be positive and finite",
                        (double)p->routed_scaling_factor);
    /* shared ids E + j' must be representable in the i32 ids */
    MOE_TRY(moe_check_range(p->num_shared, "params->num_shared", 0, INT32_MAX - e));
    return MOE_OK;
}

moe_status moe_route_grouped_topk(moe_context *ctx, const moe_tensor *logits,
                                  const moe_tensor *bias,
                                  const moe_grouped_topk_params *params, moe_tensor *ids,
                                  moe_tensor *weights, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(check_logits(logits));
    int64_t t = logits->shape[0], e = logits->shape[1];
    if (bias) {
        MOE_TRY(moe_check_tensor(bias, "bias", MOE_DT(MOE_DTYPE_F32), 1));
        MOE_TRY(moe_check_dim(bias, "bias", 0, e, "E (logits.shape[1])"));
    }
    MOE_TRY(check_grouped_params(params, e));
    int64_t cols = (int64_t)params->topk + (params->num_shared > 0);
    MOE_TRY(check_outputs(ids, weights, t, cols, "k' (params->topk + (params->num_shared > 0))"));
    return MOE_DISPATCH(ctx, route_grouped_topk, ctx, logits, bias, params, ids, weights,
                        stream);
}

moe_status moe_route_softmax_topk(moe_context *ctx, const moe_tensor *logits, int32_t topk,
                                  int32_t renormalize, moe_tensor *ids, moe_tensor *weights,
                                  void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(check_logits(logits));
    int64_t t = logits->shape[0], e = logits->shape[1];
    MOE_TRY(moe_check_range(topk, "topk", 1, min_i32(e, MOE_MAX_TOPK)));
    MOE_TRY(check_outputs(ids, weights, t, topk, "topk"));
    return MOE_DISPATCH(ctx, route_softmax_topk, ctx, logits, topk, renormalize, ids, weights,
                        stream);
}
