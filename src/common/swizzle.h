/* The swizzled block-scale layout of MXFP8 and NVFP4 (SPEC 3), shared by the CPU
 * backend and the CUDA kernels so both place every scale byte alike.
 *
 * A scale matrix [rows, cols] is padded to rows a multiple of 128 and cols a multiple
 * of 4 and stored as 512-byte tiles of 128 x 4 scales, tiles row-major. Inside a tile,
 * 16-byte line i holds the 4 scales of each of rows i, i+32, i+64 and i+96 (the layout
 * Blackwell's block-scaled MMA reads). Each expert's matrix starts at a 128-aligned row, so its
 * tiles never mix with another expert's. */
#ifndef MOE_COMMON_SWIZZLE_H
#define MOE_COMMON_SWIZZLE_H

#include <stdint.h>

#include "formats.h"

#define MOE_SWIZZLE_TILE_ROWS 128
#define MOE_SWIZZLE_TILE_COLS 4

/* Scale columns after padding to whole tiles. */
MOE_HD int64_t moe_swizzle_cols(int64_t cols) {
    return (cols + MOE_SWIZZLE_TILE_COLS - 1) / MOE_SWIZZLE_TILE_COLS * MOE_SWIZZLE_TILE_COLS;
}

/* Rows of an expert's block: its row count padded to whole tiles. */
MOE_HD int64_t moe_swizzle_rows(int64_t rows) {
    return (rows + MOE_SWIZZLE_TILE_ROWS - 1) / MOE_SWIZZLE_TILE_ROWS * MOE_SWIZZLE_TILE_ROWS;
}

/* Byte offset of scale (m, c) of an expert whose block starts at scale row block_row:
 * m is the row within the expert, c < padded_cols = moe_swizzle_cols(cols). The one
 * place that knows the layout; the scales are one contiguous buffer. */
MOE_HD int64_t moe_swizzle_index(int64_t block_row, int64_t m, int64_t c, int64_t padded_cols) {
    int64_t tile = (m / 128) * (padded_cols / 4) + c / 4;
    return block_row * padded_cols + tile * 512 + (m % 32) * 16 + ((m % 128) / 32) * 4 + c % 4;
}

/* The rows of one expert and where its scale block starts. */
typedef struct moe_expert_block {
    int64_t row_begin; /* first row of the expert in x and q */
    int64_t rows;      /* its row count */
    int64_t block_row; /* first scale row of its block */
} moe_expert_block;

MOE_HD int64_t moe_clamp_i64(int64_t v, int64_t lo, int64_t hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Expert e's rows and block, given the block of expert e - 1 as prev ({0, 0, 0} for
 * e = 0). offsets [E+1] (contiguous) or NULL for one expert over all total_rows rows.
 * Offsets live on the device where no check can see them, so they are read as their
 * running maximum clamped to [0, total_rows]: for non-decreasing offsets within range
 * (every plan makes such) this changes nothing, and for any others no two experts
 * overlap, so the blocks never need more than roundup(total_rows + E*127, 128) rows. */
MOE_HD moe_expert_block moe_next_expert_block(moe_expert_block prev, const int32_t *offsets,
                                              int64_t e, int64_t total_rows) {
    int64_t begin = offsets ? offsets[e] : 0, end = offsets ? offsets[e + 1] : total_rows;
    moe_expert_block b;
    b.row_begin = moe_clamp_i64(begin, prev.row_begin + prev.rows, total_rows);
    b.rows = moe_clamp_i64(end, b.row_begin, total_rows) - b.row_begin;
    b.block_row = prev.block_row + moe_swizzle_rows(prev.rows);
    return b;
}

/* amax of block-scaled formats: NaN is ignored (as fmaxf does), so a NaN spoils only its
 * own element and never the block's scale. */
MOE_HD float moe_fold_amax(float amax, float v) {
    float a = v < 0.0f ? -v : v;
    return a > amax ? a : amax;
}

#endif /* MOE_COMMON_SWIZZLE_H */
