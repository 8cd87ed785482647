/* The grouped GEMM's work (grouped_gemm.cu): experts' rows into tiles, and a tile index
 * back to its expert, rows and columns, computed alike by every role of every CTA.
 *
 * Work. A tile is 128 rows of one expert x 128 columns of N (BN = 128 is also the FP8
 * scale block of N, so a tile has one b_scale per K block); FP8 calls whose experts
 * average 256 to 1023 rows use wide tiles of 256 columns instead (WIDE kernels,
 * consumer.cuh), where a tile with at most 64 rows goes to one warpgroup, never swapped. Every CTA reads the offsets
 * (or masked counts) of all experts from global memory into shared memory, turns them
 * into row ranges exactly as the CPU reference does (clamped to [0, rows]; an expert's
 * range starts no earlier than the end of every earlier one, so invalid offsets can
 * never make two tiles write one row) and into a prefix sum of tiles per expert, then
 * walks tiles t = blockIdx.x, t + gridDim.x, ...; producer and consumers decode t to
 * (expert, m tile, n tile) with a binary search over the prefix, so they agree without
 * talking. The counts never leave the device; experts without rows own no tiles. Inside
 * an expert the tiles go in groups of 8 n tiles, m before n within a group: CTAs running
 * at the same time share the same few B (weight) tiles and A row blocks in L2, and for
 * decode (one m tile) consecutive CTAs walk consecutive weight tiles.
 *
 * Tiles of at most 32 rows (every tile of a decode expert, and the last tile of a larger
 * expert whose rows are not a multiple of 128) use the same ring with A and B swapped:
 * the weight rows of the tile become wgmma's M (64 per warpgroup) and the expert's rows
 * become N = 32, loaded through a second tensor map whose box is 32 rows. This quarters
 * the tensor-core work and the A traffic of a tile that is memory-bound on its weights
 * anyway. A decode expert (at most 32 rows) is cut finer still, into split tiles of 64
 * weight rows whose K blocks alternate between the two consumer warpgroups (two K blocks
 * a stage, so a stage moves as many bytes as before) and are summed at the end, warpgroup
 * 1's part then warpgroup 2's: at T = 1 DeepSeek-V3's gate_up has 9 experts x 64 such
 * tiles, 4.4 waves of 132 SMs where 128-row tiles made 2.2, whose third ran on 24 SMs.
 * Split tiles are used only where whole tiles would make fewer than 4 waves even if every
 * row went to its own expert (min(E, rows) x N/128 tiles): decode-sized calls (at 3, GEMM 2
 * at T = 1, 504 whole tiles, was 2 us slower). With more waves balance is no problem, and
 * measured at T = 8, 32 and 512 split tiles were slower (bench/NOTES.md). The choice is per tile, made on the device in the same
 * launch. A regular tile with at most 64 rows is computed by one consumer warpgroup
 * alone. At uniform routing with ~128 rows an expert (DeepSeek-V3 at T = 4096) half the
 * experts have a short last tile, so without both rules a third of the tensor work was
 * padding. */
#ifndef MOE_CUDA_GEMM_TILES_CUH
#define MOE_CUDA_GEMM_TILES_CUH

#include "layout.cuh"

/* Tile indices of an expert: split tiles, m x n tiles, or paired (find_tile) a pair for
 * each two m tiles and n tile, and for an odd last m tile one per two n tiles. */
static __device__ __forceinline__ int32_t tiles_of(int32_t count, const gemm_params &p) {
    if (count <= 0) return 0;
    if (count <= GEMM_SMALL && p.n_split_tiles > 0) return p.n_split_tiles;
    int32_t m_tiles = (count + GEMM_BM - 1) / GEMM_BM;
    if (!p.pair) return m_tiles * p.n_tiles;
    return (m_tiles >> 1) * p.n_tiles + (m_tiles & 1) * (p.n_tiles >> 1);
}

/* The tile indices a CTA walks (with its partner, when paired): first, first + stride... */
static __device__ __forceinline__ int32_t first_tile(const gemm_params &p) {
    return (int32_t)blockIdx.x >> p.pair;
}
static __device__ __forceinline__ int32_t tile_stride(const gemm_params &p) {
    return (int32_t)gridDim.x >> p.pair;
}

/* Rows and tile prefix of every expert into shared memory; ends with a barrier. The
 * serial part runs on one warp, each lane over a contiguous segment of experts: the
 * contiguous layout's "claimed" (the furthest end of any earlier expert) is a prefix
 * maximum, the tile prefix a prefix sum, both taken across lanes with shuffles. */
static __device__ void build_table(const gemm_params &p, const gemm_smem &s) {
    int32_t experts = p.experts, n_bounds = p.masked ? experts : experts + 1;
    /* ld.global.cg: L2, never a line this SM's L1 kept from before the PDL wait */
    for (int32_t i = threadIdx.x; i < n_bounds; i += blockDim.x) s.bounds[i] = __ldcg(p.bounds + i);
    __syncthreads();
    for (int32_t e = threadIdx.x; e < experts; e += blockDim.x) {
        if (p.masked) {
            s.start[e] = 0;
            s.count[e] = min(max(s.bounds[e], 0), p.rows);
        } else {
            /* start = clamped offsets[e]; count holds the clamped end until the scan */
            s.start[e] = min(max(s.bounds[e], 0), p.rows);
            s.count[e] = min(max(s.bounds[e + 1], 0), p.rows);
        }
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        int32_t lane = threadIdx.x;
        int32_t per = (experts + 31) / 32;
        int32_t beg = min(lane * per, experts), end = min(beg + per, experts);
        if (!p.masked) {
            int32_t seg_end = 0;
            for (int32_t e = beg; e < end; e++) seg_end = max(seg_end, s.count[e]);
            int32_t incl = seg_end;
            for (int o = 1; o < 32; o <<= 1) {
                int32_t v = __shfl_up_sync(0xffffffffu, incl, o);
                if (lane >= o) incl = max(incl, v);
            }
            int32_t claimed = __shfl_up_sync(0xffffffffu, incl, 1);
            if (lane == 0) claimed = 0;
            for (int32_t e = beg; e < end; e++) {
                int32_t lo = max(s.start[e], claimed), hi = s.count[e];
                s.start[e] = lo;
                s.count[e] = max(hi - lo, 0);
                claimed = max(claimed, hi);
            }
        }
        int32_t seg_tiles = 0;
        for (int32_t e = beg; e < end; e++) seg_tiles += tiles_of(s.count[e], p);
        int32_t incl = seg_tiles;
        for (int o = 1; o < 32; o <<= 1) {
            int32_t v = __shfl_up_sync(0xffffffffu, incl, o);
            if (lane >= o) incl += v;
        }
        int32_t before = incl - seg_tiles;
        for (int32_t e = beg; e < end; e++) {
            s.prefix[e] = before;
            before += tiles_of(s.count[e], p);
        }
        if (lane == 31) s.prefix[experts] = incl;
    }
    __syncthreads();
}

/* Whether the bounds now differ from those the table was built from (all threads). */
static __device__ bool bounds_changed(const gemm_params &p, const gemm_smem &s) {
    int32_t n_bounds = p.masked ? p.experts : p.experts + 1;
    int changed = 0;
    for (int32_t i = threadIdx.x; i < n_bounds; i += blockDim.x)
        changed |= __ldcg(p.bounds + i) != s.bounds[i];
    return __syncthreads_or(changed) != 0;
}

/* Tile t (< prefix[E]) to its expert, rows and columns. */
template <bool WIDE>
static __device__ __forceinline__ gemm_tile find_tile(const gemm_params &p,
                                                      const gemm_smem &s, int32_t t) {
    /* the last expert whose prefix is <= t: experts without tiles share their
     * successor's prefix and are skipped by taking the last */
    int32_t lo = 0, hi = p.experts - 1;
    while (lo < hi) {
        int32_t mid = (lo + hi + 1) >> 1;
        if (s.prefix[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    gemm_tile g;
    int32_t count = s.count[lo];
    int32_t local = t - s.prefix[lo];
    g.e = lo;
    g.row = s.start[lo];
    if (count <= GEMM_SMALL && p.n_split_tiles > 0) { /* decode: 64 weight rows a tile */
        g.rows = count;
        g.swapped = g.split = 1;
        g.n0 = local * GEMM_BN_SPLIT;
        return g;
    }
    /* Paired, the CTAs of a cluster take m tiles 2i and 2i + 1 of one n tile, or, for an
     * odd last m tile, n tiles 2u and 2u + 1 of it. */
    int32_t m_tiles = (count + GEMM_BM - 1) / GEMM_BM, rank = (int32_t)s.rank;
    /* m_units: m tiles, or pairs of them; tile indices below `raster` walk those */
    int32_t m_units = m_tiles >> p.pair, raster = m_units * p.n_tiles, m, n;
    if (local < raster) {
        int32_t group = GEMM_GROUP_N * m_units;
        int32_t gi = local / group, rem = local - gi * group;
        int32_t width = min(GEMM_GROUP_N, p.n_tiles - gi * GEMM_GROUP_N);
        int32_t mu = rem / width;
        n = gi * GEMM_GROUP_N + (rem - mu * width);
        m = p.pair ? 2 * mu + rank : mu;
        g.share_b = p.pair;
    } else {
        m = m_tiles - 1;
        n = 2 * (local - raster) + rank;
        g.share_b = 0;
    }
    g.row += m * GEMM_BM;
    g.rows = min(count - m * GEMM_BM, GEMM_BM);
    g.swapped = !WIDE && g.rows <= GEMM_SMALL; /* wide: one warpgroup for <= 64 rows */
    g.split = 0;
    g.n0 = n * (WIDE ? GEMM_BN_WIDE : GEMM_BN);
    return g;
}

#endif /* MOE_CUDA_GEMM_TILES_CUH */
