/* Argument checks and dispatch: grouped GEMM (SPEC 4). Everything a backend relies on is
 * checked here, before any work; offsets and counts live on the device and are never read
 * (the backends treat them defensively instead). */
#include <inttypes.h>

#include "internal.h"

/* Width of an FP8 scale block along K and N (DeepSeek-V3's 1x128 / 128x128 scales). */
#define GEMM_FP8_BLOCK 128
/* BF16 K and N alignment: 8 elements are 16 bytes, what TMA needs on the device. */
#define GEMM_BF16_ALIGN 8

#define GEMM_INPUTS (MOE_DT(MOE_DTYPE_E4M3) | MOE_DT(MOE_DTYPE_BF16))
#define GEMM_OUTPUTS (MOE_DT(MOE_DTYPE_BF16) | MOE_DT(MOE_DTYPE_F16))

/* The sizes every check below needs. rows is R (contiguous) or C (masked). */
typedef struct gemm_dims {
    int64_t experts, rows, n, k;
    int masked;
} gemm_dims;

/* what (source = v) must be a multiple of m, and why. */
static moe_status check_multiple_for(const char *what, const char *source, int64_t v, int64_t m,
                                     const char *why) {
    if (v % m != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s (%s = %" PRId64 ") must be a multiple of %" PRId64 " %s", what,
                        source, v, m, why);
    return MOE_OK;
}

/* a, b and d: dtypes, ranks and the sizes they share. Fills dims. */
static moe_status check_operands(const moe_tensor *a, const moe_tensor *b, const moe_tensor *d,
                                 gemm_dims *dims) {
    int rank = dims->masked ? 3 : 2;
    MOE_TRY(moe_check_tensor(a, "a", GEMM_INPUTS, rank));
    MOE_TRY(moe_check_tensor(b, "b", GEMM_INPUTS, 3));
    MOE_TRY(moe_check_same_dtype(b, "b", a, "a"));
    MOE_TRY(moe_check_tensor(d, "d", GEMM_OUTPUTS, rank));
    /* the workspace query takes the expert count as an int32_t */
    if (b->shape[0] < 1 || b->shape[0] > INT32_MAX)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "b.shape[0] (E = %" PRId64 " experts) must be in [1, %" PRId32 "]",
                        b->shape[0], INT32_MAX);
    dims->experts = b->shape[0];
    dims->n = b->shape[1];
    dims->k = b->shape[2];
    dims->rows = a->shape[rank - 2];
    if (dims->masked) {
        MOE_TRY(moe_check_dim(a, "a", 0, dims->experts, "E (b.shape[0])"));
        MOE_TRY(moe_check_dim(d, "d", 0, dims->experts, "E (b.shape[0])"));
    }
    MOE_TRY(moe_check_dim(a, "a", rank - 1, dims->k, "K (b.shape[2])"));
    MOE_TRY(moe_check_dim(d, "d", rank - 2, dims->rows, dims->masked ? "C (a.shape[1])"
                                                                     : "R (a.shape[0])"));
    MOE_TRY(moe_check_dim(d, "d", rank - 1, dims->n, "N (b.shape[1])"));
    int fp8 = a->dtype == MOE_DTYPE_E4M3;
    int64_t align = fp8 ? GEMM_FP8_BLOCK : GEMM_BF16_ALIGN;
    const char *why = fp8 ? "for FP8 blockwise scales" : "for BF16 (16-byte rows)";
    MOE_TRY(check_multiple_for("K", "b.shape[2]", dims->k, align, why));
    MOE_TRY(check_multiple_for("N", "b.shape[1]", dims->n, align, why));
    return MOE_OK;
}

/* The per-expert i32 vector: offsets [E+1] or counts [E]. */
static moe_status check_expert_vector(const moe_tensor *t, const char *name, int64_t want,
                                      const char *what) {
    MOE_TRY(moe_check_tensor(t, name, MOE_DT(MOE_DTYPE_I32), 1));
    return moe_check_dim(t, name, 0, want, what);
}

static moe_status check_layout(moe_scale_layout layout) {
    if (layout != MOE_SCALES_ROW_MAJOR && layout != MOE_SCALES_COL_MAJOR)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "a_layout (%d) must be MOE_SCALES_ROW_MAJOR (0) or "
                        "MOE_SCALES_COL_MAJOR (1)",
                        (int)layout);
    return MOE_OK;
}

/* FP8 A: per (row, K block) scales; the masked layout adds a leading expert dimension. */
static moe_status check_a_scales(const moe_tensor *s, moe_scale_layout layout,
                                 const gemm_dims *dims) {
    int lead = dims->masked ? 1 : 0;
    int64_t blocks = dims->k / GEMM_FP8_BLOCK;
    MOE_TRY(moe_check_tensor(s, "a_scales", MOE_DT(MOE_DTYPE_F32), 2 + lead));
    if (dims->masked) MOE_TRY(moe_check_dim(s, "a_scales", 0, dims->experts, "E (b.shape[0])"));
    const char *rows = dims->masked ? "C" : "R";
    if (layout == MOE_SCALES_ROW_MAJOR) {
        MOE_TRY(moe_check_dim(s, "a_scales", lead, dims->rows, rows));
        return moe_check_dim(s, "a_scales", lead + 1, blocks, "K / 128 (row-major layout)");
    }
    MOE_TRY(moe_check_dim(s, "a_scales", lead, blocks, "K / 128 (column-major layout)"));
    return moe_check_dim(s, "a_scales", lead + 1, moe_round_up(dims->rows, 4),
                         dims->masked ? "C rounded up to 4" : "R rounded up to 4");
}

/* FP8 needs both scale tensors; BF16 must not get any, so a caller who meant FP8 hears
 * about it instead of silently getting an unscaled product. */
static moe_status check_scales(const moe_tensor *a, const moe_tensor *a_scales,
                               moe_scale_layout a_layout, const moe_tensor *b_scales,
                               const gemm_dims *dims) {
    MOE_TRY(check_layout(a_layout));
    if (a->dtype == MOE_DTYPE_BF16) {
        if (a_scales)
            return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                            "a_scales must be NULL when a is bf16 (only FP8 inputs are scaled)");
        if (b_scales)
            return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                            "b_scales must be NULL when a is bf16 (only FP8 inputs are scaled)");
        return MOE_OK;
    }
    MOE_TRY(check_a_scales(a_scales, a_layout, dims));
    MOE_TRY(moe_check_tensor(b_scales, "b_scales", MOE_DT(MOE_DTYPE_F32), 3));
    MOE_TRY(moe_check_dim(b_scales, "b_scales", 0, dims->experts, "E (b.shape[0])"));
    MOE_TRY(moe_check_dim(b_scales, "b_scales", 1, dims->n / GEMM_FP8_BLOCK, "N / 128"));
    return moe_check_dim(b_scales, "b_scales", 2, dims->k / GEMM_FP8_BLOCK, "K / 128");
}

/* Asks the backend how much scratch it needs, then checks what the caller gave. */
static moe_status check_gemm_workspace(moe_context *ctx, const gemm_dims *dims,
                                       const void *workspace, size_t workspace_bytes) {
    size_t need = 0;
    MOE_TRY(MOE_DISPATCH(ctx, grouped_gemm_workspace_size, ctx, (int32_t)dims->experts,
                         &need));
    return moe_check_workspace(workspace, workspace_bytes, need);
}

moe_status moe_grouped_gemm_workspace_size(moe_context *ctx, int32_t num_experts,
                                           size_t *bytes) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(moe_check_range(num_experts, "num_experts", 1, INT32_MAX));
    MOE_TRY(moe_check_ptr(bytes, "bytes"));
    return MOE_DISPATCH(ctx, grouped_gemm_workspace_size, ctx, num_experts, bytes);
}

moe_status moe_grouped_gemm(moe_context *ctx, const moe_tensor *a, const moe_tensor *a_scales,
                            moe_scale_layout a_layout, const moe_tensor *b,
                            const moe_tensor *b_scales, const moe_tensor *offsets,
                            moe_tensor *d, void *workspace, size_t workspace_bytes,
                            void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    gemm_dims dims = {.masked = 0};
    MOE_TRY(check_operands(a, b, d, &dims));
    MOE_TRY(check_expert_vector(offsets, "offsets", dims.experts + 1, "E + 1"));
    MOE_TRY(check_scales(a, a_scales, a_layout, b_scales, &dims));
    MOE_TRY(check_gemm_workspace(ctx, &dims, workspace, workspace_bytes));
    return MOE_DISPATCH(ctx, grouped_gemm, ctx, a, a_scales, a_layout, b, b_scales, offsets, d,
                        workspace, workspace_bytes, stream);
}

moe_status moe_grouped_gemm_masked(moe_context *ctx, const moe_tensor *a,
                                   const moe_tensor *a_scales, moe_scale_layout a_layout,
                                   const moe_tensor *b, const moe_tensor *b_scales,
                                   const moe_tensor *counts, moe_tensor *d, void *workspace,
                                   size_t workspace_bytes, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    gemm_dims dims = {.masked = 1};
    MOE_TRY(check_operands(a, b, d, &dims));
    MOE_TRY(check_expert_vector(counts, "counts", dims.experts, "E (b.shape[0])"));
    MOE_TRY(check_scales(a, a_scales, a_layout, b_scales, &dims));
    MOE_TRY(check_gemm_workspace(ctx, &dims, workspace, workspace_bytes));
    return MOE_DISPATCH(ctx, grouped_gemm_masked, ctx, a, a_scales, a_layout, b, b_scales,
                        counts, d, workspace, workspace_bytes, stream);
}

moe_status moe_grouped_gemm_silu_quant(moe_context *ctx, const moe_tensor *a,
                                       const moe_tensor *a_scales, moe_scale_layout a_layout,
                                       const moe_tensor *b, const moe_tensor *b_scales,
                                       const moe_tensor *offsets, moe_tensor *c,
                                       const moe_fp8_group_params *params, moe_tensor *q,
                                       moe_tensor *q_scales, void *workspace,
                                       size_t workspace_bytes, int *fused, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ptr(fused, "fused"));
    *fused = 0;
    MOE_TRY(moe_check_ctx(ctx));
    gemm_dims dims = {.masked = 0};
    MOE_TRY(check_operands(a, b, c, &dims));
    if (a->dtype != MOE_DTYPE_E4M3 || c->dtype != MOE_DTYPE_BF16)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "moe_grouped_gemm_silu_quant: a must be e4m3 and c bf16 (a is %s, c %s)",
                        moe_dtype_name(a->dtype), moe_dtype_name(c->dtype));
    MOE_TRY(check_expert_vector(offsets, "offsets", dims.experts + 1, "E + 1"));
    MOE_TRY(check_scales(a, a_scales, a_layout, b_scales, &dims));
    MOE_TRY(check_gemm_workspace(ctx, &dims, workspace, workspace_bytes));
    MOE_TRY(moe_check_tensor(q, "q", MOE_DT(MOE_DTYPE_E4M3), 2));
    MOE_TRY(moe_check_dim(q, "q", 0, dims.rows, "R (a.shape[0])"));
    MOE_TRY(moe_check_dim(q, "q", 1, dims.n / 2, "I (b.shape[1] / 2)"));
    MOE_TRY(moe_check_fp8_group(params, dims.rows, dims.n / 2, q_scales));
    /* one quantisation group per 128-column GEMM tile, or no fused path */
    if (params->group != GEMM_FP8_BLOCK || (dims.n / 2) % GEMM_FP8_BLOCK != 0 ||
        !ctx->ops->grouped_gemm_silu_quant)
        return MOE_OK;
    return ctx->ops->grouped_gemm_silu_quant(ctx, a, a_scales, a_layout, b, b_scales, offsets, c,
                                             params, q, q_scales, workspace, workspace_bytes,
                                             fused, stream);
}
