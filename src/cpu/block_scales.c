/* The per-expert scale-block walk of MXFP8 and NVFP4; see block_scales.h. */
#include "block_scales.h"

/* Below this many elements waking the threads costs more than the work. */
#define PARALLEL_MIN_ELEMENTS (1 << 16)

void moe_cpu_quant_expert_blocks(const moe_tensor *x, moe_expert_block b, int64_t block_size,
                                 moe_cpu_quant_block_fn quant_block, const void *arg,
                                 moe_tensor *q, uint8_t *scales) {
    int64_t blocks = x->shape[1] / block_size, cols = moe_swizzle_cols(blocks);
    int64_t padded = moe_swizzle_rows(b.rows), work = padded * x->shape[1];
#pragma omp parallel for schedule(static) if (work >= PARALLEL_MIN_ELEMENTS)
    for (int64_t m = 0; m < padded; m++) {
        int real = m < b.rows;
        const void *xr = real ? moe_cpu_at(x, b.row_begin + m, 0, 0) : NULL;
        uint8_t *qr = real ? moe_cpu_at(q, b.row_begin + m, 0, 0) : NULL;
        for (int64_t c = 0; c < cols; c++) {
            int64_t at = moe_swizzle_index(b.block_row, m, c, cols);
            scales[at] = (real && c < blocks) ? quant_block(x->dtype, xr, c, arg, qr) : 0;
        }
    }
}
