/* Argument checks and dispatch: gemm. */
#include "internal.h"

moe_status moe_grouped_gemm_workspace_size(moe_context *ctx, int32_t num_experts, size_t *bytes) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, grouped_gemm_workspace_size, ctx, num_experts, bytes);
}

moe_status moe_grouped_gemm(moe_context *ctx, const moe_tensor *a, const moe_tensor *a_scales, moe_scale_layout a_layout, const moe_tensor *b, const moe_tensor *b_scales, const moe_tensor *offsets, moe_tensor *d, void *workspace, size_t workspace_bytes, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, grouped_gemm, ctx, a, a_scales, a_layout, b, b_scales, offsets, d, workspace, workspace_bytes, stream);
}

moe_status moe_grouped_gemm_masked(moe_context *ctx, const moe_tensor *a, const moe_tensor *a_scales, moe_scale_layout a_layout, const moe_tensor *b, const moe_tensor *b_scales, const moe_tensor *counts, moe_tensor *d, void *workspace, size_t workspace_bytes, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    return MOE_DISPATCH(ctx, grouped_gemm_masked, ctx, a, a_scales, a_layout, b, b_scales, counts, d, workspace, workspace_bytes, stream);
}

