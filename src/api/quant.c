/* Argument checks and dispatch: quantisation (SPEC 3).
 *
 * Decisions the header leaves to the implementation, kept by every backend:
 * - Rows of x that no expert's offsets cover are neither read nor written: their q (and
 *   dequantised out) rows keep whatever the caller had there.
 * - Offsets are device data no check can read, so the backends take their running
 *   maximum clamped to [0, M] (src/common/swizzle.h); valid offsets are unaffected.
 * - The swizzled scales are one contiguous buffer (scales.stride[0] == scales.shape[1]);
 *   they may have more rows than moe_swizzled_scale_rows(M, E), which stay unwritten.
 * - FP8 group scales in the column-major layout: the padding columns M..M4-1 are not
 *   written. topk is only read (and checked) when perm is given. */
#include <inttypes.h>

#include "../common/swizzle.h"
#include "internal.h"

#define MX_BLOCK 32
#define NV_BLOCK 16

int64_t moe_swizzled_scale_rows(int64_t rows, int32_t num_experts) {
    if (rows < 0 || num_experts < 0) return -1;
    /* each expert's block may waste up to 127 rows rounding its start up to a tile */
    int64_t padding = (int64_t)num_experts * (MOE_SWIZZLE_TILE_ROWS - 1);
    if (rows > INT64_MAX - padding - (MOE_SWIZZLE_TILE_ROWS - 1)) return -1;
    return moe_swizzle_rows(rows + padding);
}

/* ---------------------------------------------------------------- shared checks */

static moe_status check_float_2d(const moe_tensor *t, const char *name) {
    return moe_check_tensor(t, name, MOE_DT_FLOAT, 2);
}

/* t is [rows, cols]; rows_what and cols_what say where the wanted sizes come from. */
static moe_status check_shape(const moe_tensor *t, const char *name, int64_t rows,
                              const char *rows_what, int64_t cols, const char *cols_what) {
    MOE_TRY(moe_check_dim(t, name, 0, rows, rows_what));
    return moe_check_dim(t, name, 1, cols, cols_what);
}

/* perm [M] i32 and topk >= 1 when the gather is fused; nothing to check without perm. */
static moe_status check_perm(const moe_tensor *perm, int32_t topk, int64_t m) {
    if (!perm) return MOE_OK;
    MOE_TRY(moe_check_tensor(perm, "perm", MOE_DT(MOE_DTYPE_I32), 1));
    MOE_TRY(moe_check_dim(perm, "perm", 0, m, "M (q rows)"));
    return moe_check_range(topk, "topk", 1, INT32_MAX);
}

/* offsets [E+1] i32 with E >= 1, or NULL for one expert; sets *experts to E. */
static moe_status check_offsets(const moe_tensor *offsets, int64_t *experts) {
    *experts = 1;
    if (!offsets) return MOE_OK;
    MOE_TRY(moe_check_tensor(offsets, "offsets", MOE_DT(MOE_DTYPE_I32), 1));
    MOE_TRY(
        moe_check_range(offsets->shape[0], "offsets.shape[0] (E + 1)", 2, (int64_t)INT32_MAX + 1));
    *experts = offsets->shape[0] - 1;
    return MOE_OK;
}

/* Swizzled block scales of dtype for M rows, E experts and blocks scales per row:
 * [>= moe_swizzled_scale_rows(M, E), roundup(blocks, 4)], one contiguous buffer. */
static moe_status check_swizzled(const moe_tensor *scales, moe_dtype dtype, int64_t m,
                                 int64_t experts, int64_t blocks, const char *blocks_what) {
    MOE_TRY(moe_check_tensor(scales, "scales", MOE_DT(dtype), 2));
    int64_t rows = moe_swizzled_scale_rows(m, (int32_t)experts);
    if (rows < 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "scales: M (%" PRId64 ") + E (%" PRId64
                        ") * 127 overflows the swizzled scale rows (at most INT64_MAX)",
                        m, experts);
    MOE_TRY(moe_check_dim_at_least(scales, "scales", 0, rows, "moe_swizzled_scale_rows(M, E)"));
    MOE_TRY(moe_check_dim(scales, "scales", 1, moe_swizzle_cols(blocks), blocks_what));
    if (scales->stride[0] != scales->shape[1])
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "scales.stride[0] (%" PRId64 ") must equal scales.shape[1] (%" PRId64
                        "): the swizzled layout is one contiguous buffer",
                        scales->stride[0], scales->shape[1]);
    return MOE_OK;
}

/* global_scale [E] f32. */
static moe_status check_global_scale(const moe_tensor *gs, int64_t experts) {
    MOE_TRY(moe_check_tensor(gs, "global_scale", MOE_DT(MOE_DTYPE_F32), 1));
    return moe_check_dim(gs, "global_scale", 0, experts, "E (offsets.shape[0] - 1, or 1)");
}

/* ---------------------------------------------------------------- FP8 per token group */

/* Both entries' checks; inv_perm only with perm. */
static moe_status quant_fp8_group(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm,
                                  const moe_tensor *inv_perm, int32_t topk,
                                  const moe_fp8_group_params *params, moe_tensor *q,
                                  moe_tensor *scales, void *stream) {
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(check_float_2d(x, "x"));
    MOE_TRY(moe_check_tensor(q, "q", MOE_DT(MOE_DTYPE_E4M3), 2));
    int64_t m = q->shape[0], k = x->shape[1];
    MOE_TRY(moe_check_dim(q, "q", 1, k, "K (x columns)"));
    if (inv_perm) MOE_TRY(moe_check_ptr(perm, "perm (inv_perm needs it)"));
    if (!perm) MOE_TRY(moe_check_dim(q, "q", 0, x->shape[0], "T (x rows, no perm)"));
    MOE_TRY(check_perm(perm, topk, m));
    if (inv_perm) {
        MOE_TRY(moe_check_tensor(inv_perm, "inv_perm", MOE_DT(MOE_DTYPE_I32), 1));
        MOE_TRY(moe_check_dim(inv_perm, "inv_perm", 0, x->shape[0] * topk, "T * topk"));
    }
    MOE_TRY(moe_check_fp8_group(params, m, k, scales));
    return MOE_DISPATCH(ctx, quant_fp8_group, ctx, x, perm, inv_perm, topk, params, q, scales,
                        stream);
}

moe_status moe_quant_fp8_group(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm,
                               int32_t topk, const moe_fp8_group_params *params, moe_tensor *q,
                               moe_tensor *scales, void *stream) {
    moe_clear_error();
    return quant_fp8_group(ctx, x, perm, NULL, topk, params, q, scales, stream);
}

moe_status moe_quant_fp8_group_planned(moe_context *ctx, const moe_tensor *x,
                                       const moe_tensor *perm, const moe_tensor *inv_perm,
                                       int32_t topk, const moe_fp8_group_params *params,
                                       moe_tensor *q, moe_tensor *scales, void *stream) {
    moe_clear_error();
    return quant_fp8_group(ctx, x, perm, inv_perm, topk, params, q, scales, stream);
}

moe_status moe_dequant_fp8_group(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales,
                                 const moe_fp8_group_params *params, moe_tensor *out,
                                 void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(moe_check_tensor(q, "q", MOE_DT(MOE_DTYPE_E4M3), 2));
    int64_t m = q->shape[0], k = q->shape[1];
    MOE_TRY(moe_check_fp8_group(params, m, k, scales));
    MOE_TRY(check_float_2d(out, "out"));
    MOE_TRY(check_shape(out, "out", m, "M (q rows)", k, "K (q columns)"));
    return MOE_DISPATCH(ctx, dequant_fp8_group, ctx, q, scales, params, out, stream);
}

/* ---------------------------------------------------------------- MXFP8 */

moe_status moe_quant_mxfp8(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets,
                           moe_mx_rule rule, moe_tensor *q, moe_tensor *scales, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(check_float_2d(x, "x"));
    int64_t m = x->shape[0], k = x->shape[1], experts;
    MOE_TRY(moe_check_multiple(k, "K (x columns)", MX_BLOCK));
    MOE_TRY(check_offsets(offsets, &experts));
    if (rule != MOE_MX_RULE_CEIL && rule != MOE_MX_RULE_OCP)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "rule (%d) must be MOE_MX_RULE_CEIL (0) or MOE_MX_RULE_OCP (1)", (int)rule);
    MOE_TRY(moe_check_tensor(q, "q", MOE_DT(MOE_DTYPE_E4M3), 2));
    MOE_TRY(check_shape(q, "q", m, "M (x rows)", k, "K (x columns)"));
    MOE_TRY(
        check_swizzled(scales, MOE_DTYPE_E8M0, m, experts, k / MX_BLOCK, "K / 32 rounded up to 4"));
    return MOE_DISPATCH(ctx, quant_mxfp8, ctx, x, offsets, rule, q, scales, stream);
}

moe_status moe_dequant_mxfp8(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales,
                             const moe_tensor *offsets, moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(moe_check_tensor(q, "q", MOE_DT(MOE_DTYPE_E4M3), 2));
    int64_t m = q->shape[0], k = q->shape[1], experts;
    MOE_TRY(moe_check_multiple(k, "K (q columns)", MX_BLOCK));
    MOE_TRY(check_offsets(offsets, &experts));
    MOE_TRY(
        check_swizzled(scales, MOE_DTYPE_E8M0, m, experts, k / MX_BLOCK, "K / 32 rounded up to 4"));
    MOE_TRY(check_float_2d(out, "out"));
    MOE_TRY(check_shape(out, "out", m, "M (q rows)", k, "K (q columns)"));
    return MOE_DISPATCH(ctx, dequant_mxfp8, ctx, q, scales, offsets, out, stream);
}

/* ---------------------------------------------------------------- NVFP4 */

moe_status moe_quant_nvfp4(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets,
                           const moe_tensor *global_scale, moe_tensor *q, moe_tensor *scales,
                           void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(check_float_2d(x, "x"));
    int64_t m = x->shape[0], k = x->shape[1], experts;
    MOE_TRY(moe_check_multiple(k, "K (x columns)", NV_BLOCK));
    MOE_TRY(check_offsets(offsets, &experts));
    MOE_TRY(check_global_scale(global_scale, experts));
    MOE_TRY(moe_check_tensor(q, "q", MOE_DT(MOE_DTYPE_E2M1X2), 2));
    MOE_TRY(check_shape(q, "q", m, "M (x rows)", k / 2, "K / 2 (two values a byte)"));
    MOE_TRY(
        check_swizzled(scales, MOE_DTYPE_E4M3, m, experts, k / NV_BLOCK, "K / 16 rounded up to 4"));
    return MOE_DISPATCH(ctx, quant_nvfp4, ctx, x, offsets, global_scale, q, scales, stream);
}

moe_status moe_dequant_nvfp4(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales,
                             const moe_tensor *offsets, const moe_tensor *global_scale,
                             moe_tensor *out, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ctx(ctx));
    /* out gives K: q's columns count bytes of two values */
    MOE_TRY(check_float_2d(out, "out"));
    int64_t m = out->shape[0], k = out->shape[1], experts;
    MOE_TRY(moe_check_multiple(k, "K (out columns)", NV_BLOCK));
    MOE_TRY(moe_check_tensor(q, "q", MOE_DT(MOE_DTYPE_E2M1X2), 2));
    MOE_TRY(check_shape(q, "q", m, "M (out rows)", k / 2, "K / 2 (two values a byte)"));
    MOE_TRY(check_offsets(offsets, &experts));
    MOE_TRY(check_global_scale(global_scale, experts));
    MOE_TRY(
        check_swizzled(scales, MOE_DTYPE_E4M3, m, experts, k / NV_BLOCK, "K / 16 rounded up to 4"));
    return MOE_DISPATCH(ctx, dequant_nvfp4, ctx, q, scales, offsets, global_scale, out, stream);
}
