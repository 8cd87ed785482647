/* Argument checks and dispatch: permute. */
#include "internal.h"

moe_status moe_permute_workspace_size(moe_context *ctx, int64_t num_tokens, int32_t topk, int32_t num_experts, size_t *bytes) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, permute_workspace_size, ctx, num_tokens, topk, num_experts, bytes);
}

moe_status moe_permute_plan(moe_context *ctx, const moe_tensor *ids, int32_t num_experts, int32_t alignment, moe_tensor *counts, moe_tensor *offsets, moe_tensor *perm, moe_tensor *inv_perm, void *workspace, size_t workspace_bytes, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, permute_plan, ctx, ids, num_experts, alignment, counts, offsets, perm, inv_perm, workspace, workspace_bytes, stream);
}

moe_status moe_permute_plan_masked(moe_context *ctx, const moe_tensor *ids, int32_t num_experts, int64_t capacity, moe_tensor *counts, moe_tensor *perm, moe_tensor *inv_perm, moe_tensor *overflow, void *workspace, size_t workspace_bytes, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, permute_plan_masked, ctx, ids, num_experts, capacity, counts, perm, inv_perm, overflow, workspace, workspace_bytes, stream);
}

moe_status moe_problem_sizes(moe_context *ctx, const moe_tensor *counts, int64_t n, int64_t k, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, problem_sizes, ctx, counts, n, k, out, stream);
}

moe_status moe_gather_rows(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm, int32_t topk, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, gather_rows, ctx, x, perm, topk, out, stream);
}

