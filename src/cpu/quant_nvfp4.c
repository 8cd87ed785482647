/* NVFP4 (SPEC 3): blocks of 16 along K, one e4m3 scale each on top of a per-expert f32
 * global scale, two e2m1 values per byte, scales in the swizzled per-expert layout of
 * src/common/swizzle.h. Rows that no expert covers are neither read nor written. */
#include "block_scales.h"

/* Below this many elements waking the threads costs more than the work. */
#define PARALLEL_MIN_ELEMENTS (1 << 16)

#define NV_BLOCK 16

/* Quantises block c of one row into q's bytes 8c..8c+7; returns its scale byte. arg: the
 * expert's f32 global scale. */
static uint8_t quant_block(moe_dtype dtype, const void *x, int64_t c, const void *arg, uint8_t *q) {
    float gs = *(const float *)arg;
    float amax = 0.0f;
    for (int64_t i = c * NV_BLOCK; i < (c + 1) * NV_BLOCK; i++)
        amax = moe_fold_amax(amax, moe_cpu_load(dtype, x, i));
    uint8_t sf = moe_f32_to_e4m3(gs * amax / MOE_E2M1_MAX);
    float sf32 = moe_e4m3_to_f32(sf);
    for (int64_t i = c * NV_BLOCK; i < (c + 1) * NV_BLOCK; i += 2) {
        uint8_t lo = 0, hi = 0;
        if (sf32 != 0.0f) {
            lo = moe_f32_to_e2m1(moe_cpu_load(dtype, x, i) * gs / sf32);
            hi = moe_f32_to_e2m1(moe_cpu_load(dtype, x, i + 1) * gs / sf32);
        }
        q[i / 2] = (uint8_t)(lo | hi << 4);
    }
    return sf;
}

static float global_scale_of(const moe_tensor *global_scale, int64_t e) {
    return *(const float *)moe_cpu_at(global_scale, e, 0, 0);
}

moe_status moe_cpu_quant_nvfp4(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets,
                               const moe_tensor *global_scale, moe_tensor *q, moe_tensor *scales,
                               void *stream) {
    (void)ctx;
    (void)stream;
    moe_expert_block b = {0, 0, 0};
    for (int64_t e = 0; e < moe_cpu_num_experts(offsets); e++) {
        b = moe_next_expert_block(b, moe_cpu_offset_data(offsets), e, x->shape[0]);
        float gs = global_scale_of(global_scale, e);
        moe_cpu_quant_expert_blocks(x, b, NV_BLOCK, quant_block, &gs, q, scales->data);
    }
    return MOE_OK;
}

static void dequant_expert(const moe_tensor *q, const uint8_t *scales, moe_expert_block b, float gs,
                           moe_tensor *out) {
    int64_t k = out->shape[1], cols = moe_swizzle_cols(k / NV_BLOCK);
#pragma omp parallel for schedule(static) if (b.rows * k >= PARALLEL_MIN_ELEMENTS)
    for (int64_t m = 0; m < b.rows; m++) {
        const uint8_t *qr = moe_cpu_at(q, b.row_begin + m, 0, 0);
        void *o = moe_cpu_at(out, b.row_begin + m, 0, 0);
        for (int64_t i = 0; i < k; i++) {
            int64_t at = moe_swizzle_index(b.block_row, m, i / NV_BLOCK, cols);
            uint8_t nibble = (uint8_t)(i % 2 ? qr[i / 2] >> 4 : qr[i / 2] & 0xfu);
            float v = moe_e2m1_to_f32(nibble) * moe_e4m3_to_f32(scales[at]) / gs;
            moe_cpu_store(out->dtype, o, i, v);
        }
    }
}

moe_status moe_cpu_dequant_nvfp4(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales,
                                 const moe_tensor *offsets, const moe_tensor *global_scale,
                                 moe_tensor *out, void *stream) {
    (void)ctx;
    (void)stream;
    moe_expert_block b = {0, 0, 0};
    for (int64_t e = 0; e < moe_cpu_num_experts(offsets); e++) {
        b = moe_next_expert_block(b, moe_cpu_offset_data(offsets), e, out->shape[0]);
        dequant_expert(q, scales->data, b, global_scale_of(global_scale, e), out);
    }
    return MOE_OK;
}
