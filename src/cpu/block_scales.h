/* What MXFP8 and NVFP4 (SPEC 3) share on the CPU: the walk over the experts of offsets
 * and over each expert's padded, swizzled scale block (src/common/swizzle.h). One walk
 * for both formats, so both place every scale byte, padding included, alike; each format
 * supplies only how one block of one row quantises. */
#ifndef MOE_CPU_BLOCK_SCALES_H
#define MOE_CPU_BLOCK_SCALES_H

#include "../common/swizzle.h"
#include "cpu.h"

/* Experts that offsets [E+1] describes, or 1 where offsets is NULL (one expert over
 * every row). */
static inline int64_t moe_cpu_num_experts(const moe_tensor *offsets) {
    return offsets ? offsets->shape[0] - 1 : 1;
}

/* offsets as moe_next_expert_block reads them: its data, or NULL for one expert. */
static inline const int32_t *moe_cpu_offset_data(const moe_tensor *offsets) {
    return offsets ? (const int32_t *)offsets->data : NULL;
}

/* Quantises block c of row xr (of dtype) into row qr; returns its scale byte. arg is
 * what the caller of moe_cpu_quant_expert_blocks passed on (the format's parameter). */
typedef uint8_t (*moe_cpu_quant_block_fn)(moe_dtype dtype, const void *xr, int64_t c,
                                          const void *arg, uint8_t *qr);

/* Quantises expert b of x into q, block by block of block_size columns, and writes every
 * byte of its padded scale block: quant_block's for real blocks, 0 for the padding. */
MOE_INTERNAL void moe_cpu_quant_expert_blocks(const moe_tensor *x, moe_expert_block b,
                                              int64_t block_size,
                                              moe_cpu_quant_block_fn quant_block,
                                              const void *arg, moe_tensor *q, uint8_t *scales);

#endif /* MOE_CPU_BLOCK_SCALES_H */
