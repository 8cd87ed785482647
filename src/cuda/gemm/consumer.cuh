/* The grouped GEMM's consumer warpgroups (grouped_gemm.cu): wgmma from the ring, FP8
 * promotion, and the epilogues.
 *
 * Consumers. Each consumer warpgroup owns 64 rows of the tile (wgmma m64n128, K-major
 * A and B straight from shared memory). FP8: per K block, four k32 wgmmas accumulate
 * the block's partial sum p in a temporary (the first one with scale-d = 0, so nothing
 * needs zeroing), then acc = fma(p, sa * sb, acc): the CPU reference's order, with one
 * rounding less per K block (the reference rounds the product and the sum separately),
 * well inside SPEC 4's tolerance next to the tensor core's own order inside p. Two K
 * blocks are in flight per warpgroup, in two temporaries, so promoting one overlaps the
 * other's wgmmas. BF16: one accumulator over all of K, keeping one wgmma group in flight.
 * The scales come from shared memory, staged with the tiles: read from global memory in
 * the main loop, their latency stalled the consumers (half of all stall samples) and
 * held decode to 1.9 TB/s. Strides cover both scale layouts and the masked layout.
 *
 * Wide tiles (FP8, experts of 256 to 1023 rows on average): 128 x 256, a stage holding
 * B's 256 rows, each warpgroup's K block computed as two 128-column halves through one
 * temporary (consume_wide). At DeepSeek-V3 T = 8192 they were 16% faster, at 4 x 8192
 * rows 5% slower, where the second temporary's overlap matters more (bench/NOTES.md).
 *
 * Epilogue. Results are rounded once (cvt.rn) and stored straight from registers as
 * pairs of columns (4 bytes), only for rows the expert owns and columns < N; D's row
 * stride may exceed N. No workspace, no allocation, no host synchronisation: the launch
 * can be captured in a CUDA graph.
 *
 * GEMM 1 with its activation (moe_grouped_gemm_silu_quant, FUSED kernels; the layer's
 * opt-in MOE_LAYER_FUSE_GEMM1). A tile covers 128 of the I outputs and runs two
 * sub-tiles through the same ring, W1's gate rows n0.. then its up rows I + n0.., so W1
 * keeps its natural layout (no weight preparation); the epilogue rounds both to bf16 as
 * the unfused GEMM's output would be, applies silu(gate) * up and quantises the row's 128
 * values, one FP8 group, exactly as moe_silu_and_mul_quant_fp8 does, so the codes are the
 * unfused layer's bit for bit. Decode-sized calls (split tiles) are not fused. Measured
 * on the H100 it loses at every T: the epilogue's SIMT arithmetic runs on both consumer
 * warpgroups while the tensor cores wait (bench/NOTES.md). */
#ifndef MOE_CUDA_GEMM_CONSUMER_CUH
#define MOE_CUDA_GEMM_CONSUMER_CUH

#include "../common.cuh"
#include "../fp8_group.cuh"
#include "../silu_mul.cuh"
#include "layout.cuh"
#include "ptx.cuh"

/* Two outputs rounded once and packed, the lower column in the low half. */
template <moe_dtype OUT> static __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<MOE_DTYPE_BF16>(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}
template <> __device__ __forceinline__ uint32_t pack2<MOE_DTYPE_F16>(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* One warp is done reading a stage. wgmma has finished (waited) in every lane first.
 * FP8: the lanes also read the stage's scales with ordinary loads, and each lane arrives
 * for its own reads, the per-thread ordering compute-sanitizer's racecheck follows.
 * Paired, the other CTA writes half of this stage's A too, so the warp also arrives on
 * that CTA's barrier (once: its producer only waits for the stage to be free). */
template <bool FP8> static __device__ __forceinline__ void release(const gemm_smem &s, int stage) {
    uint32_t empty = s.empty + 8u * stage;
    if (FP8) mbar_arrive(empty);
    if (!FP8 || s.pair) {
        __syncwarp();
        if ((threadIdx.x & 31) == 0) {
            if (!FP8) mbar_arrive(empty);
            if (s.pair) mbar_arrive_cluster(empty, s.rank ^ 1u);
        }
    }
}

/* FP8, regular tile: waits for the next stage, reads its scales (the products
 * a_scale x b_scale for this thread's two rows; read before the stage is released, as
 * the scale warp refills it after) and issues its K block's four k32 wgmmas into part as
 * one group; the first one with scale-d = 0, so part needs no zeroing. Advances the ring. */
static __device__ __forceinline__ void fp8_block_issue(float (&part)[64], const gemm_smem &s,
                                                       int wg, int &stage, uint32_t &phase,
                                                       int32_t r_lo, int32_t r_hi, float &s_lo,
                                                       float &s_hi, int stages) {
    mbar_wait(s.full + 8u * stage, phase);
    const float *sc = s.scale + stage * GEMM_SCALE_FLOATS;
    float b = sc[GEMM_BM];
    s_lo = __fmul_rn(sc[r_lo], b);
    s_hi = __fmul_rn(sc[r_hi], b);
    uint64_t da = wgmma_desc(stage_a(s, stage) + (uint32_t)wg * 64 * GEMM_ROW_BYTES);
    uint64_t db = wgmma_desc(stage_b(s, stage));
    reg_fence(part);
    wgmma_fence();
#pragma unroll
    for (int k = 0; k < 4; k++) wgmma_fp8_n128(part, da + 2 * k, db + 2 * k, k);
    wgmma_commit();
    next_stage(stage, phase, stages);
}

/* FP8, regular tile: once the group in part has completed (the caller waited), releases
 * its stage and adds it into acc: acc = fma(part, s, acc). */
static __device__ __forceinline__ void fp8_block_promote(float (&acc)[64], float (&part)[64],
                                                         const gemm_smem &s, int stage,
                                                         float s_lo, float s_hi) {
    reg_fence(part);
    release<true>(s, stage);
#pragma unroll
    for (int i = 0; i < 64; i++) acc[i] = __fmaf_rn(part[i], (i & 2) ? s_hi : s_lo, acc[i]);
}

/* f32 through bf16 and back: the value GEMM 1's bf16 output holds. */
static __device__ __forceinline__ float bf16_rounded(float v) {
    return __uint_as_float(pack2<MOE_DTYPE_BF16>(v, v) << 16);
}

/* The two halves of a packed bf16 pair as f32 (lo: the lower column). */
static __device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
static __device__ __forceinline__ float bf16_hi(uint32_t w) {
    return __uint_as_float(w & 0xffff0000u);
}

/* The scale of a group from its amax, and the divisor its codes are made with. */
static __device__ __forceinline__ moe_fp8_divisor act_divisor(const gemm_params &p, float amax) {
    return moe_fp8_make_divisor(moe_fp8_group_scale(amax, p.eps, p.ue8m0), p.ue8m0);
}

/* 64 rows x 128 columns of results from a wgmma fragment (acc, as m64n128 lays it out) to
 * D from column n0: this thread's two rows d_lo, d_hi where they are the expert's, in
 * pairs of columns below N. */
template <moe_dtype OUT>
static __device__ __forceinline__ void store_fragment(const gemm_params &p, const float *acc,
                                                      int32_t n0, uint16_t *d_lo, uint16_t *d_hi,
                                                      bool v_lo, bool v_hi) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int32_t col = n0 + 8 * j + 2 * (lane & 3);
        if (col < p.n) { /* N is a multiple of 8, so col + 1 < N too */
            if (v_lo) *(uint32_t *)(d_lo + col) = pack2<OUT>(acc[4 * j], acc[4 * j + 1]);
            if (v_hi) *(uint32_t *)(d_hi + col) = pack2<OUT>(acc[4 * j + 2], acc[4 * j + 3]);
        }
    }
}

/* A regular tile: this warpgroup's 64 rows x 128 columns. Fused: the gate sub-tile's
 * results go to d as bf16 (the unfused GEMM's output, gate half), then the up sub-tile is
 * computed into the same registers and the epilogue reads its gate values back (the same
 * thread's stores, from L2), so both operands of silu(gate) * up are the bf16 values the
 * unfused layer hands its activation kernel, and the codes match it bit for bit. The gate
 * stays out of registers: the two K blocks in flight already use 192 of 224. A row's 128
 * outputs, one quantisation group, are held by the 4 lanes of a quad. */
template <bool FP8, moe_dtype OUT, bool FUSED>
static __device__ void consume_tile(const gemm_params &p, const gemm_smem &s, const gemm_tile &g,
                                    int wg, int &stage, uint32_t &phase) {
    int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    int32_t r_lo = 64 * wg + 16 * warp + (lane >> 2), r_hi = r_lo + 8;
    bool v_lo = r_lo < g.rows, v_hi = r_hi < g.rows;
    int64_t a_e = p.masked ? g.e : 0;
    if (64 * wg >= g.rows) {
        /* an expert's last tile with at most 64 rows: the other warpgroup alone computes
         * it and gets the tensor cores to itself; this one only releases the stages */
        for (int32_t kb = 0; kb < passes<FUSED>() * p.k_blocks; kb++) {
            mbar_wait(s.full + 8u * stage, phase);
            release<FP8>(s, stage);
            next_stage(stage, phase, p.stages);
        }
        return;
    }
    float acc[64];
#pragma unroll 1
    for (int pass = 0; pass < passes<FUSED>(); pass++) {
#pragma unroll
        for (int i = 0; i < 64; i++) acc[i] = 0.0f;

        if constexpr (FP8) {
            /* two K blocks in flight: block kb + 1's wgmmas are issued before block kb's
             * partial sum is promoted, so the promotion overlaps this warpgroup's own tensor
             * work (4 x 8192 rows: +3 to +14% over one block in flight, bench/NOTES.md). The
             * body is unrolled twice so each partial sum keeps fixed registers, and no wgmma
             * is issued under a condition inside the loop: ptxas then serialises every wgmma
             * of the kernel (tests/check_wgmma.sh catches that). */
            float part0[64], part1[64], s0_lo, s0_hi, s1_lo, s1_hi;
            int st0 = stage, st1 = stage;
            int32_t kb = 0;
            if (p.k_blocks > 0) {
                fp8_block_issue(part0, s, wg, stage, phase, r_lo, r_hi, s0_lo, s0_hi, p.stages);
                for (; kb + 2 < p.k_blocks; kb += 2) {
                    st1 = stage;
                    fp8_block_issue(part1, s, wg, stage, phase, r_lo, r_hi, s1_lo, s1_hi, p.stages);
                    wgmma_wait_all_but_one();
                    fp8_block_promote(acc, part0, s, st0, s0_lo, s0_hi);
                    st0 = stage;
                    fp8_block_issue(part0, s, wg, stage, phase, r_lo, r_hi, s0_lo, s0_hi, p.stages);
                    wgmma_wait_all_but_one();
                    fp8_block_promote(acc, part1, s, st1, s1_lo, s1_hi);
                }
                if (kb + 1 < p.k_blocks) { /* two blocks left: kb in part0, kb + 1 */
                    st1 = stage;
                    fp8_block_issue(part1, s, wg, stage, phase, r_lo, r_hi, s1_lo, s1_hi, p.stages);
                    wgmma_wait_all_but_one();
                    fp8_block_promote(acc, part0, s, st0, s0_lo, s0_hi);
                    wgmma_wait_all();
                    fp8_block_promote(acc, part1, s, st1, s1_lo, s1_hi);
                } else {
                    wgmma_wait_all();
                    fp8_block_promote(acc, part0, s, st0, s0_lo, s0_hi);
                }
            }
        } else {
            /* one wgmma group stays in flight: the stage of K block kb - 1 is released once
             * block kb has been issued and kb - 1 has completed */
            int prev = -1;
            for (int32_t kb = 0; kb < p.k_blocks; kb++) {
                mbar_wait(s.full + 8u * stage, phase);
                uint64_t da = wgmma_desc(stage_a(s, stage) + (uint32_t)wg * 64 * GEMM_ROW_BYTES);
                uint64_t db = wgmma_desc(stage_b(s, stage));
                reg_fence(acc);
                wgmma_fence();
#pragma unroll
                for (int k = 0; k < 4; k++) wgmma_bf16_n128(acc, da + 2 * k, db + 2 * k, 1);
                wgmma_commit();
                asm volatile("wgmma.wait_group.sync.aligned 1;" ::: "memory");
                if (prev >= 0) release<FP8>(s, prev);
                prev = stage;
                next_stage(stage, phase, p.stages);
            }
            wgmma_wait_all();
            reg_fence(acc);
            if (prev >= 0) release<FP8>(s, prev);
        }
        if (FUSED && pass == 1) break; /* the up sub-tile: to the epilogue below */

        uint16_t *d = (uint16_t *)p.d + a_e * p.d_e + (int64_t)g.row * p.d_r;
        store_fragment<OUT>(p, acc, g.n0, d + (int64_t)r_lo * p.d_r, d + (int64_t)r_hi * p.d_r,
                            v_lo, v_hi);
    }
    if constexpr (FUSED) {
        /* acc = silu(gate) * up for both rows, and each row's amax over its quad */
        const uint16_t *d = (const uint16_t *)p.d + (int64_t)g.row * p.d_r;
        const uint16_t *d_lo = d + (int64_t)r_lo * p.d_r, *d_hi = d + (int64_t)r_hi * p.d_r;
        float amax_lo = 0.0f, amax_hi = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int32_t col = g.n0 + 8 * j + 2 * (lane & 3);
            uint32_t gl = v_lo ? *(const uint32_t *)(d_lo + col) : 0u;
            uint32_t gh = v_hi ? *(const uint32_t *)(d_hi + col) : 0u;
            uint32_t ul = pack2<MOE_DTYPE_BF16>(acc[4 * j], acc[4 * j + 1]);
            uint32_t uh = pack2<MOE_DTYPE_BF16>(acc[4 * j + 2], acc[4 * j + 3]);
            acc[4 * j] = moe_silu_mul(bf16_lo(gl), bf16_lo(ul));
            acc[4 * j + 1] = moe_silu_mul(bf16_hi(gl), bf16_hi(ul));
            acc[4 * j + 2] = moe_silu_mul(bf16_lo(gh), bf16_lo(uh));
            acc[4 * j + 3] = moe_silu_mul(bf16_hi(gh), bf16_hi(uh));
            amax_lo = moe_fp8_amax(moe_fp8_amax(amax_lo, acc[4 * j]), acc[4 * j + 1]);
            amax_hi = moe_fp8_amax(moe_fp8_amax(amax_hi, acc[4 * j + 2]), acc[4 * j + 3]);
        }
#pragma unroll
        for (int o = 1; o < 4; o <<= 1) {
            amax_lo = fmaxf(amax_lo, __shfl_xor_sync(MOE_FULL_MASK, amax_lo, o));
            amax_hi = fmaxf(amax_hi, __shfl_xor_sync(MOE_FULL_MASK, amax_hi, o));
        }
        moe_fp8_divisor q_lo = act_divisor(p, amax_lo), q_hi = act_divisor(p, amax_hi);
        uint8_t *q = p.q + (int64_t)g.row * p.q_r;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int32_t col = g.n0 + 8 * j + 2 * (lane & 3);
            if (v_lo)
                *(uint16_t *)(q + (int64_t)r_lo * p.q_r + col) =
                    (uint16_t)moe_fp8_code2(acc[4 * j], acc[4 * j + 1], q_lo);
            if (v_hi)
                *(uint16_t *)(q + (int64_t)r_hi * p.q_r + col) =
                    (uint16_t)moe_fp8_code2(acc[4 * j + 2], acc[4 * j + 3], q_hi);
        }
        if ((lane & 3) == 0) {
            int64_t group = g.n0 / GEMM_SCALE_BLOCK;
            if (v_lo) p.qs[(g.row + r_lo) * p.qs_r + group * p.qs_g] = q_lo.scale;
            if (v_hi) p.qs[(g.row + r_hi) * p.qs_r + group * p.qs_g] = q_hi.scale;
        }
    }
}

/* FP8, a wide tile (128 rows x 256 columns): this warpgroup's 64 rows in two halves of
 * 128 columns, each K block's halves computed one after the other into one temporary and
 * promoted into acc (128 + 64 registers: no room for a second temporary), so while one
 * warpgroup promotes, the other's wgmmas keep the tensor cores busy. The sums are the
 * regular tile's, term for term, so the output is the same bits. */
template <moe_dtype OUT>
static __device__ void consume_wide(const gemm_params &p, const gemm_smem &s, const gemm_tile &g,
                                    int wg, int &stage, uint32_t &phase) {
    int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    int32_t r_lo = 64 * wg + 16 * warp + (lane >> 2), r_hi = r_lo + 8;
    int64_t a_e = p.masked ? g.e : 0;
    if (64 * wg >= g.rows) { /* the other warpgroup computes the tile alone */
        for (int32_t kb = 0; kb < p.k_blocks; kb++) {
            mbar_wait(s.full + 8u * stage, phase);
            release<true>(s, stage);
            next_stage(stage, phase, p.stages);
        }
        return;
    }
    float acc[2 * 64], part[64];
#pragma unroll
    for (int i = 0; i < 2 * 64; i++) acc[i] = 0.0f;
    for (int32_t kb = 0; kb < p.k_blocks; kb++) {
        mbar_wait(s.full + 8u * stage, phase);
        const float *sc = s.scale + stage * GEMM_SCALE_FLOATS;
        float a_lo = sc[r_lo], a_hi = sc[r_hi], b[2] = {sc[GEMM_BM], sc[GEMM_BM + 1]};
        uint64_t da = wgmma_desc(stage_a<true>(s, stage) + (uint32_t)wg * 64 * GEMM_ROW_BYTES);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            uint64_t db = wgmma_desc(stage_b<true>(s, stage) + (uint32_t)h * GEMM_TILE_BYTES);
            reg_fence(part);
            wgmma_fence();
#pragma unroll
            for (int k = 0; k < 4; k++) wgmma_fp8_n128(part, da + 2 * k, db + 2 * k, k);
            wgmma_commit();
            wgmma_wait_all();
            reg_fence(part);
            if (h == 1) release<true>(s, stage); /* the scales were read above */
            float s_lo = __fmul_rn(a_lo, b[h]), s_hi = __fmul_rn(a_hi, b[h]);
#pragma unroll
            for (int i = 0; i < 64; i++)
                acc[64 * h + i] = __fmaf_rn(part[i], (i & 2) ? s_hi : s_lo, acc[64 * h + i]);
        }
        next_stage(stage, phase, p.stages);
    }
    uint16_t *d = (uint16_t *)p.d + a_e * p.d_e + (int64_t)g.row * p.d_r;
#pragma unroll
    for (int h = 0; h < 2; h++)
        store_fragment<OUT>(p, acc + 64 * h, g.n0 + GEMM_BN * h, d + (int64_t)r_lo * p.d_r,
                            d + (int64_t)r_hi * p.d_r, r_lo < g.rows, r_hi < g.rows);
}

/* A fused swapped tile's epilogue: acc holds the up sub-tile, gate the gate one, as
 * consume_small lays them out. The group of an expert row (the tile's 128 intermediate
 * columns) spans the 8 lane rows of a warp, both register slots of each, the 4 warps and
 * both warpgroups: its amax is reduced across lanes with shuffles, then across the 8
 * consumer warps through shared memory. */
static __device__ void small_act_epilogue(const gemm_params &p, const gemm_smem &s,
                                          const gemm_tile &g, int wg, float (&acc)[16],
                                          const float (&gate)[16]) {
    int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    /* m[q]: the amax of expert row 8 (q/2) + 2 (lane%4) + q%2, slot q = 2 (i/4) + i%2 */
    float m[8];
#pragma unroll
    for (int q = 0; q < 8; q++) m[q] = 0.0f;
#pragma unroll
    for (int i = 0; i < 16; i++) {
        acc[i] = moe_silu_mul(gate[i], bf16_rounded(acc[i]));
        m[2 * (i >> 2) + (i & 1)] = moe_fp8_amax(m[2 * (i >> 2) + (i & 1)], acc[i]);
    }
#pragma unroll
    for (int o = 4; o < 32; o <<= 1)
#pragma unroll
        for (int q = 0; q < 8; q++) m[q] = fmaxf(m[q], __shfl_xor_sync(MOE_FULL_MASK, m[q], o));
    float *red = s.reduce; /* [8 consumer warps][32 expert rows] */
    if (lane < 4)
#pragma unroll
        for (int q = 0; q < 8; q++)
            red[(4 * wg + warp) * 32 + 8 * (q >> 1) + 2 * lane + (q & 1)] = m[q];
    consumers_sync();
    moe_fp8_divisor dv[8];
#pragma unroll
    for (int q = 0; q < 8; q++) {
        int32_t er = 8 * (q >> 1) + 2 * (lane & 3) + (q & 1);
        float v = 0.0f;
        for (int w = 0; w < 2 * 4; w++) v = fmaxf(v, red[w * 32 + er]);
        dv[q] = act_divisor(p, v);
    }
    consumers_sync(); /* red is free for the next tile */
    uint8_t *qd = p.q + (int64_t)g.row * p.q_r;
    int32_t col = g.n0 + 64 * wg + 16 * warp + (lane >> 2);
#pragma unroll
    for (int i = 0; i < 16; i++) {
        int32_t er = 8 * (i >> 2) + 2 * (lane & 3) + (i & 1);
        if (er < g.rows)
            qd[(int64_t)er * p.q_r + col + 8 * ((i >> 1) & 1)] =
                (uint8_t)moe_fp8_code(acc[i], dv[2 * (i >> 2) + (i & 1)]);
    }
    if (wg == 0 && warp == 0 && lane < 4) {
        int64_t group = g.n0 / GEMM_SCALE_BLOCK;
#pragma unroll
        for (int q = 0; q < 8; q++) {
            int32_t er = 8 * (q >> 1) + 2 * lane + (q & 1);
            if (er < g.rows) p.qs[(int64_t)(g.row + er) * p.qs_r + group * p.qs_g] = dv[q].scale;
        }
    }
}

/* A swapped tile (at most 32 rows) with the expert's rows as wgmma's N = 32 and weight
 * rows as its M. Unsplit: this warpgroup's 64 of the tile's 128 weight rows, over all of
 * K. Split (a decode expert's 64-row tile): this warpgroup's K blocks, the first or the
 * second of each stage; warpgroup 2 then hands its sums to warpgroup 1 through shared
 * memory, which adds them (always in that order) and stores. Element i of the fragment is
 * weight row 16 warp + lane/4 + 8 ((i/2)%2) of the warpgroup's 64 and expert row
 * 8 (i/4) + 2 (lane%4) + i%2. Fused (never split): the gate sub-tile's results stay in
 * registers, rounded to bf16, while the up sub-tile is computed. */
template <bool FP8, moe_dtype OUT, bool FUSED>
static __device__ void consume_small(const gemm_params &p, const gemm_smem &s, const gemm_tile &g,
                                     int wg, int &stage, uint32_t &phase) {
    int lane = threadIdx.x & 31, warp = (threadIdx.x >> 5) & 3;
    int64_t a_e = p.masked ? g.e : 0;
    /* this warpgroup's K block within a stage, and where its operands lie */
    int32_t h = g.split ? wg : 0, step = k_per_stage(g);
    uint32_t a_off = (uint32_t)h * GEMM_SPLIT_A_HALF, b_off = (uint32_t)wg * GEMM_SPLIT_B_HALF;
    float acc[16], gate[16];
    for (int pass = 0; pass < passes<FUSED>(); pass++) {
#pragma unroll
        for (int i = 0; i < 16; i++) acc[i] = 0.0f;

        for (int32_t kb = 0; kb < p.k_blocks; kb += step) {
            mbar_wait(s.full + 8u * stage, phase);
            if (kb + h < p.k_blocks) {
                uint64_t da = wgmma_desc(stage_b(s, stage) + b_off);
                uint64_t db = wgmma_desc(stage_a(s, stage) + a_off);
                if constexpr (FP8) {
                    /* expert row of slot q = 2 (i/4) + i%2 is 8 (q/2) + 2 (lane%4) + q%2; read
                     * before the stage is released */
                    const float *sc = s.scale + stage * GEMM_SCALE_FLOATS;
                    float a[8], b = sc[GEMM_BM + h], part[16];
#pragma unroll
                    for (int q = 0; q < 8; q++)
                        a[q] = sc[32 * h + 8 * (q >> 1) + 2 * (lane & 3) + (q & 1)];
                    reg_fence(part);
                    wgmma_fence();
#pragma unroll
                    for (int k = 0; k < 4; k++) wgmma_fp8_n32(part, da + 2 * k, db + 2 * k, k);
                    wgmma_commit();
                    wgmma_wait_all();
                    reg_fence(part);
#pragma unroll
                    for (int i = 0; i < 16; i++) {
                        float sab = __fmul_rn(a[2 * (i >> 2) + (i & 1)], b);
                        acc[i] = __fadd_rn(acc[i], __fmul_rn(part[i], sab));
                    }
                } else {
                    reg_fence(acc);
                    wgmma_fence();
#pragma unroll
                    for (int k = 0; k < 4; k++) wgmma_bf16_n32(acc, da + 2 * k, db + 2 * k, 1);
                    wgmma_commit();
                    wgmma_wait_all();
                    reg_fence(acc);
                }
            }
            release<FP8>(s, stage);
            next_stage(stage, phase, p.stages);
        }
        if (FUSED && pass == 0)
#pragma unroll
            for (int i = 0; i < 16; i++) gate[i] = bf16_rounded(acc[i]);
    }
    if constexpr (FUSED) {
        small_act_epilogue(p, s, g, wg, acc, gate);
        return;
    }

    if (g.split) {
        int t = threadIdx.x & 127;
        if (wg == 1)
            for (int i = 0; i < 16; i++) s.reduce[i * 128 + t] = acc[i];
        consumers_sync();
        if (wg == 0)
            for (int i = 0; i < 16; i++) acc[i] = __fadd_rn(acc[i], s.reduce[i * 128 + t]);
        consumers_sync(); /* the buffer is free for the next split tile */
        if (wg == 1) return;
    }

    /* D[row][n] with n = the weight row: lanes l and l ^ 4 hold weight rows w and w + 1
     * for the same expert rows, so one shuffle gives each lane two adjacent columns of
     * one row: the lane of even lane/4 keeps expert row c (slot i), the odd one c + 1
     * (slot i + 1). */
    int32_t wrow = 64 * wg + 16 * warp + (lane >> 2);
    bool odd = (lane >> 2) & 1;
    uint16_t *d = (uint16_t *)p.d + a_e * p.d_e + (int64_t)g.row * p.d_r;
#pragma unroll
    for (int i = 0; i < 16; i += 2) {
        float give = odd ? acc[i] : acc[i + 1];
        float got = __shfl_xor_sync(0xffffffffu, give, 4);
        int32_t n = g.n0 + wrow + 8 * ((i >> 1) & 1) - (odd ? 1 : 0);
        int32_t r = 8 * (i >> 2) + 2 * (lane & 3) + (odd ? 1 : 0);
        float lo = odd ? got : acc[i], hi = odd ? acc[i + 1] : got;
        if (r < g.rows && n < p.n) *(uint32_t *)(d + (int64_t)r * p.d_r + n) = pack2<OUT>(lo, hi);
    }
}

#endif /* MOE_CUDA_GEMM_CONSUMER_CUH */
