/* The grouped GEMM's producer warpgroup (grouped_gemm.cu): one thread issues the TMA loads
 * of every stage, for FP8 a second warp copies the stage's scales.
 *
 * Pairs. Where whole tiles are used (no split tiles), N has an even number of 128-column
 * tiles and experts average at least 64 rows, CTAs run in clusters of two and a tile index
 * names two tiles that share an operand: m tiles 2i and 2i + 1 of an expert with the same n
 * tile share its B tile (rank 0 takes 2i, rank 1 2i + 1), and an expert's odd last m tile
 * is taken as pairs of n tiles 2u, 2u + 1 that share its A tile. Each CTA loads half of the
 * shared tile's rows by TMA multicast into both CTAs' rings, so a CTA reads 24 KiB from L2
 * a stage instead of 32, and the two m tiles of a weight tile read it from DRAM once:
 * unpaired, CTAs that started them together drifted apart and at T = 8192 (DeepSeek-V3, two
 * m tiles an expert) read 19.5 GB from DRAM for 8.5 GB of operands (ncu, bench/NOTES.md).
 * The rings advance in lock step: a stage's "empty" barrier also counts one arrival per
 * consumer warp of the other CTA, since that CTA's producer writes the stage too; the CTAs
 * synchronise once after initialising their barriers and once before exiting, so no arrival
 * or multicast reaches a CTA that is not there. With wide tiles the shared B tile has 256
 * rows and each CTA of an m pair loads one 128-row half. Paired or not, every tile computes
 * the same sums the same way, so the output is the same bits. */
#ifndef MOE_CUDA_GEMM_PRODUCER_CUH
#define MOE_CUDA_GEMM_PRODUCER_CUH

#include "layout.cuh"
#include "ptx.cuh"
#include "tiles.cuh"

template <bool FP8, bool FUSED, bool WIDE>
static __device__ void produce(const gemm_params &p, const gemm_smem &s, const gemm_maps &m) {
    const int32_t k_step = FP8 ? GEMM_ROW_BYTES : GEMM_ROW_BYTES / 2;
    int32_t total = s.prefix[p.experts];
    int stage = 0;
    uint32_t phase = 0;
    for (int32_t t = first_tile(p); t < total; t += tile_stride(p)) {
        gemm_tile g = find_tile<WIDE>(p, s, t);
        int32_t a_e = p.masked ? g.e : 0;
        if (g.split) {
            for (int32_t kb = 0; kb < p.k_blocks; kb += 2) {
                uint32_t full = s.full + 8u * stage, empty = s.empty + 8u * stage;
                int32_t here = min(2, p.k_blocks - kb);
                mbar_wait(empty, phase ^ 1u);
                mbar_arrive_expect_tx(full,
                                      (uint32_t)here * (GEMM_SPLIT_A_HALF + GEMM_SPLIT_B_HALF));
                for (int32_t h = 0; h < here; h++) {
                    int32_t k = (kb + h) * k_step;
                    tma_load_3d(stage_a(s, stage) + (uint32_t)h * GEMM_SPLIT_A_HALF, &m.a_small,
                                full, k, g.row, a_e);
                    tma_load_3d(stage_b(s, stage) + (uint32_t)h * GEMM_SPLIT_B_HALF, &m.b_half,
                                full, k, g.n0, g.e);
                }
                next_stage(stage, phase, p.stages);
            }
            continue;
        }
        int32_t a_rows = g.swapped ? GEMM_SMALL : GEMM_BM;
        /* B tiles of 128 rows in a stage: two for a wide tile */
        const int32_t b_tiles = WIDE ? 2 : 1;
        uint32_t bytes = (uint32_t)b_tiles * GEMM_TILE_BYTES + (uint32_t)a_rows * GEMM_ROW_BYTES;
        /* paired: the shared operand's tile is loaded half by each CTA into both CTAs'
         * stages (maps with half-height boxes); the halves start on 1024-byte boundaries,
         * so the swizzle is that of one whole box */
        bool share_a = p.pair && !g.share_b, share_b = g.share_b;
        uint32_t rank = s.rank;
        for (int pass = 0; pass < passes<FUSED>(); pass++) {
            int32_t n0 = g.n0 + pass * p.up;
            for (int32_t kb = 0; kb < p.k_blocks; kb++) {
                uint32_t full = s.full + 8u * stage, empty = s.empty + 8u * stage;
                uint32_t a = stage_a<WIDE>(s, stage), b = stage_b<WIDE>(s, stage);
                int32_t k = kb * k_step;
                mbar_wait(empty, phase ^ 1u);
                mbar_arrive_expect_tx(full, bytes);
                if (share_a) {
                    int32_t half = a_rows / 2;
                    tma_load_3d_multicast(a + rank * (uint32_t)half * GEMM_ROW_BYTES,
                                          g.swapped ? &m.a_small_half : &m.a_half, full, k,
                                          g.row + (int32_t)rank * half, a_e, 3);
                } else {
                    tma_load_3d(a, g.swapped ? &m.a_small : &m.a, full, k, g.row, a_e);
                }
                if (WIDE && share_b) /* each CTA one of the two 128-row halves */
                    tma_load_3d_multicast(b + rank * GEMM_TILE_BYTES, &m.b, full, k,
                                          n0 + (int32_t)rank * GEMM_BN, g.e, 3);
                else if (share_b)
                    tma_load_3d_multicast(b + rank * (uint32_t)(GEMM_BN / 2) * GEMM_ROW_BYTES,
                                          &m.b_half, full, k, n0 + (int32_t)rank * (GEMM_BN / 2),
                                          g.e, 3);
                else
                    for (int32_t h = 0; h < b_tiles; h++)
                        tma_load_3d(b + (uint32_t)h * GEMM_TILE_BYTES, &m.b, full, k,
                                    n0 + h * GEMM_BN, g.e);
                next_stage(stage, phase, p.stages);
            }
        }
    }
}

/* The FP8 scales of every stage, by warp 1 of the producer warpgroup: per stage, the
 * tile's 128 A scales (0 for rows the expert does not own, so the layout's padding and
 * rows past the tensor are never read) and its b_scale, copied with cp.async. The
 * consumers thus find the scales in shared memory with the tiles and never wait on
 * global memory. Each lane waits for its own copies one stage later, once the next
 * stage's are in flight, and then arrives on the stage's "full" barrier: an ordering
 * compute-sanitizer's racecheck follows, where it does not model the hardware arrival of
 * cp.async.mbarrier.arrive. Running a stage behind costs little: the warp is up to
 * `stages` stages ahead of the consumers. (Arriving early when the ring is full, instead
 * of after the consumers free the next stage, measured no different: bench/NOTES.md.) */
template <bool FUSED, bool WIDE>
static __device__ void produce_scales(const gemm_params &p, const gemm_smem &s) {
    int lane = threadIdx.x & 31;
    int32_t total = s.prefix[p.experts];
    int stage = 0, pending = -1;
    uint32_t phase = 0;
    for (int32_t t = first_tile(p); t < total; t += tile_stride(p)) {
        gemm_tile g = find_tile<WIDE>(p, s, t);
        int64_t a_e = p.masked ? g.e : 0;
        const float *sa = p.sa + a_e * p.sa_e + (int64_t)g.row * p.sa_r;
        int32_t step = k_per_stage(g);
        for (int pass = 0; pass < passes<FUSED>(); pass++) {
            int64_t n_block = (g.n0 + pass * p.up) / GEMM_SCALE_BLOCK;
            const float *sb = p.sb + g.e * p.sb_e + n_block * p.sb_n;
            for (int32_t kb = 0; kb < p.k_blocks; kb += step) {
                uint32_t dst = s.scales + (uint32_t)stage * GEMM_SCALE_BYTES;
                mbar_wait(s.empty + 8u * stage, phase ^ 1u);
                if (g.split) {
                    /* A scale of (K block kb + h, row r) at [32 h + r], b_scale at [128 + h] */
                    int32_t here = min(2, p.k_blocks - kb);
                    bool ok = lane < g.rows;
                    for (int32_t h = 0; h < here; h++) {
                        const float *src =
                            ok ? sa + (int64_t)lane * p.sa_r + (int64_t)(kb + h) * p.sa_k : p.sa;
                        cp_async_4(dst + 4u * (32 * h + lane), src, ok ? 4u : 0u);
                    }
                    if (lane < here)
                        cp_async_4(dst + 4u * (GEMM_BM + lane),
                                   sb + (int64_t)(kb + lane) * p.sb_k, 4u);
                } else {
#pragma unroll
                    for (int j = 0; j < GEMM_BM / 32; j++) {
                        int32_t r = lane + 32 * j;
                        bool ok = r < g.rows;
                        const float *src =
                            ok ? sa + (int64_t)r * p.sa_r + (int64_t)kb * p.sa_k : p.sa;
                        cp_async_4(dst + 4u * r, src, ok ? 4u : 0u);
                    }
                    /* b_scale of the tile's (wide: each half's) 128-column block */
                    if (lane == 0) cp_async_4(dst + 4u * GEMM_BM, sb + (int64_t)kb * p.sb_k, 4u);
                    if (WIDE && lane == 1)
                        cp_async_4(dst + 4u * (GEMM_BM + 1), sb + p.sb_n + (int64_t)kb * p.sb_k,
                                   4u);
                }
                cp_async_commit();
                if (pending >= 0) {
                    cp_async_wait<1>();
                    mbar_arrive(s.full + 8u * pending);
                }
                pending = stage;
                next_stage(stage, phase, p.stages);
            }
        }
    }
    if (pending >= 0) {
        cp_async_wait<0>();
        mbar_arrive(s.full + 8u * pending);
    }
}

#endif /* MOE_CUDA_GEMM_PRODUCER_CUH */
