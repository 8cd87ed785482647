/* MXFP8 (SPEC 3): blocks of 32 along K, one e8m0 scale each, scales in the swizzled
 * per-expert layout of src/common/swizzle.h. Rows that no expert covers are neither
 * read nor written. */
#include <float.h>

#include "block_scales.h"

/* Below this many elements waking the threads costs more than the work. */
#define PARALLEL_MIN_ELEMENTS (1 << 16)

#define MX_BLOCK 32
#define MX_MIN_EXP (-127)
#define MX_MAX_EXP 127

/* The block's exponent. Worked from amax's bits rather than from log2(amax / 448) in
 * floating point, so it is exact for every amax, subnormal ones included. */
static int32_t mx_exponent(float amax, moe_mx_rule rule) {
    if (!(amax >= FLT_MIN)) return MX_MIN_EXP; /* zero or subnormal: below 2^-127 */
    if (amax > FLT_MAX) return MX_MAX_EXP;     /* an Inf in the block */
    int32_t e = moe_floor_log2(amax) - 8;
    /* 448 = 1.75 * 2^8, so amax / 448 passes a power of two, and ceil moves up one, exactly
     * when amax's significand exceeds 1.75 (mantissa bits above 0x600000) */
    if (rule == MOE_MX_RULE_CEIL && (moe_f32_bits(amax) & 0x7fffffu) > 0x600000u) e++;
    return e < MX_MIN_EXP ? MX_MIN_EXP : e > MX_MAX_EXP ? MX_MAX_EXP : e;
}

/* Quantises block c of one row; returns its scale byte. arg: the moe_mx_rule. */
static uint8_t quant_block(moe_dtype dtype, const void *x, int64_t c, const void *arg,
                           uint8_t *q) {
    moe_mx_rule rule = *(const moe_mx_rule *)arg;
    float amax = 0.0f;
    for (int64_t i = c * MX_BLOCK; i < (c + 1) * MX_BLOCK; i++)
        amax = moe_fold_amax(amax, moe_cpu_load(dtype, x, i));
    int32_t exp = mx_exponent(amax, rule);
    float scale = moe_exp2i(exp);
    for (int64_t i = c * MX_BLOCK; i < (c + 1) * MX_BLOCK; i++)
        q[i] = moe_f32_to_e4m3(moe_cpu_load(dtype, x, i) / scale);
    return (uint8_t)(exp + 127);
}

moe_status moe_cpu_quant_mxfp8(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets,
                               moe_mx_rule rule, moe_tensor *q, moe_tensor *scales, void *stream) {
    (void)ctx;
    (void)stream;
    moe_expert_block b = {0, 0, 0};
    for (int64_t e = 0; e < moe_cpu_num_experts(offsets); e++) {
        b = moe_next_expert_block(b, moe_cpu_offset_data(offsets), e, x->shape[0]);
        moe_cpu_quant_expert_blocks(x, b, MX_BLOCK, quant_block, &rule, q, scales->data);
    }
    return MOE_OK;
}

static void dequant_expert(const moe_tensor *q, const uint8_t *scales, moe_expert_block b,
                           moe_tensor *out) {
    int64_t k = q->shape[1], cols = moe_swizzle_cols(k / MX_BLOCK);
#pragma omp parallel for schedule(static) if (b.rows * k >= PARALLEL_MIN_ELEMENTS)
    for (int64_t m = 0; m < b.rows; m++) {
        const uint8_t *qr = moe_cpu_at(q, b.row_begin + m, 0, 0);
        void *o = moe_cpu_at(out, b.row_begin + m, 0, 0);
        for (int64_t i = 0; i < k; i++) {
            float scale =
                moe_e8m0_to_f32(scales[moe_swizzle_index(b.block_row, m, i / MX_BLOCK, cols)]);
            moe_cpu_store(out->dtype, o, i, moe_e4m3_to_f32(qr[i]) * scale);
        }
    }
}

moe_status moe_cpu_dequant_mxfp8(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales,
                                 const moe_tensor *offsets, moe_tensor *out, void *stream) {
    (void)ctx;
    (void)stream;
    moe_expert_block b = {0, 0, 0};
    for (int64_t e = 0; e < moe_cpu_num_experts(offsets); e++) {
        b = moe_next_expert_block(b, moe_cpu_offset_data(offsets), e, q->shape[0]);
        dequant_expert(q, scales->data, b, out);
    }
    return MOE_OK;
}
