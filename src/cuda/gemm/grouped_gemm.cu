/* Hopper grouped GEMM (SPEC 4): FP8 e4m3 with DeepSeek-V3 blockwise scales, and BF16;
 * contiguous and masked layouts; bf16 or f16 output. One persistent, warp-specialised
 * kernel per (input dtype, output dtype), sm_90a only.
 *
 * Work. A tile is 128 rows of one expert x 128 columns of N (BN = 128 is also the FP8
 * scale block of N, so a tile has one b_scale per K block). Every CTA reads the offsets
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
 * Pipeline. 384 threads: warpgroup 0 is the producer (one thread issues the TMA loads,
 * for FP8 a second warp copies the stage's scales; setmaxnreg gives the warpgroup's
 * registers to the others), warpgroups 1 and 2 are consumers.
 * Shared memory is a ring of up to 6 stages, each one K block of A (128 rows x 128
 * bytes) and of B (128 rows x 128 bytes): 128 e4m3 or 64 bf16 per row, so each row is
 * exactly one 128-byte swizzle row and TMA and wgmma agree on the layout. A stage's
 * "full" mbarrier completes when its bytes have landed (expect_tx) and, for FP8, its
 * scales too (one arrival per scale-warp lane); its "empty" one when all 8 consumer
 * warps (for FP8 all their lanes) are done with it. Rows past the end of A, B or an
 * expert's N are zero-filled by TMA; rows of the next expert inside a contiguous tile are
 * loaded and computed but never stored.
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
 * Split tiles are used only where whole tiles would make fewer than 3 waves even if every
 * row went to its own expert (min(E, rows) x N/128 tiles): decode-sized calls. With more
 * waves balance is no problem, and measured at T = 8, 32 and 512 split tiles were
 * slower (bench/NOTES.md). The choice is per tile, made on the device in the same
 * launch. A regular tile with at most 64 rows is computed by one consumer warpgroup
 * alone. At uniform routing with ~128 rows an expert (DeepSeek-V3 at T = 4096) half the
 * experts have a short last tile, so without both rules a third of the tensor work was
 * padding.
 *
 * Pairs. Where whole tiles are used (no split tiles), N has an even number of 128-column
 * tiles and experts average at least 64 rows, CTAs run in clusters of two and a tile index names two tiles that share an
 * operand: m tiles 2i and 2i + 1 of an expert with the same n tile share its B tile (rank
 * 0 takes 2i, rank 1 2i + 1), and an expert's odd last m tile is taken as pairs of n tiles
 * 2u, 2u + 1 that share its A tile. Each CTA loads half of the shared tile's rows by TMA
 * multicast into both CTAs' rings, so a CTA reads 24 KiB from L2 a stage instead of 32,
 * and the two m tiles of a weight tile read it from DRAM once: unpaired, CTAs that started
 * them together drifted apart and at T = 8192 (DeepSeek-V3, two m tiles an expert) read
 * 19.5 GB from DRAM for 8.5 GB of operands (ncu, bench/NOTES.md). The rings advance in
 * lock step: a stage's "empty" barrier also counts one arrival per consumer warp of the
 * other CTA, since that CTA's producer writes the stage too; the CTAs synchronise once
 * after initialising their barriers and once before exiting, so no arrival or multicast
 * reaches a CTA that is not there. Paired or not, every tile computes the same sums the
 * same way, so the output is the same bits.
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
 * warpgroups while the tensor cores wait (bench/NOTES.md).
 *
 * Dependent launch (common.cuh, decode sizes). The kernel may start while the kernel
 * before it runs: it builds the table from the bounds as they are then, waits for the
 * predecessor, and rebuilds the table if the bounds changed. In the layer the bounds come
 * from the permutation two kernels back, so the early table stands; called on its own
 * after a kernel that writes the bounds, the kernel is still correct. (Prefetching the
 * first weight tile into L2 before the wait was tried and measured 8 us slower at T = 1:
 * bench/NOTES.md.) Tensor maps are encoded on the host per call through
 * the driver entry point the runtime hands out, so the library does not link libcuda. */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <string.h>

#include "../common.cuh"
#include "../fp8_group.cuh"
#include "../silu_mul.cuh"
#include "gemm.h"
#include "ptx.cuh"

#define GEMM_BM 128            /* rows of a tile: two consumer warpgroups of 64 */
#define GEMM_BN 128            /* columns of a tile; the FP8 scale block of N */
#define GEMM_ROW_BYTES 128     /* one shared-memory row of a K block (128B swizzle) */
#define GEMM_SMALL 32          /* tiles with at most this many rows are swapped */
#define GEMM_BN_SPLIT 64       /* weight rows of a decode expert's (split) tile */
static_assert(GEMM_BN_SPLIT == GEMM_BN / 2, "one B map serves split tiles and paired B halves");
#define GEMM_SPLIT_WAVES 3     /* split tiles when whole ones would make fewer waves */
#define GEMM_REDUCE_FLOATS (16 * 128) /* a split tile's hand-over: 16 sums per thread */
#define GEMM_SPLIT_A_HALF (GEMM_SMALL * GEMM_ROW_BYTES)    /* 4 KiB: 32 rows of a K block */
#define GEMM_SPLIT_B_HALF (GEMM_BN_SPLIT * GEMM_ROW_BYTES) /* 8 KiB: 64 rows of a K block */
#define GEMM_TILE_BYTES (GEMM_BM * GEMM_ROW_BYTES) /* 16 KiB */
#define GEMM_STAGE_BYTES (2 * GEMM_TILE_BYTES)     /* A and B of one K block */
#define GEMM_MAX_STAGES 6
#define GEMM_THREADS 384
#define GEMM_CONSUMER_WARPS 8
#define GEMM_GROUP_N 8         /* n tiles per raster group */
#define GEMM_SCALE_BLOCK 128
/* FP8 scales of one stage in shared memory: 128 A scales (one per tile row) and the
 * tile's b_scale at [128]; 136 floats keep every stage's block 16-byte aligned. */
#define GEMM_SCALE_FLOATS 136
#define GEMM_SCALE_BYTES (GEMM_SCALE_FLOATS * 4)

/* Registers after setmaxnreg: 56 for the producer warpgroup (its two active warps spill
 * below that), 224 for each consumer one (56 + 2 * 224 = 504 per lane position, within
 * the 512 of 64K registers / 128). */
#define GEMM_PRODUCER_REGS 56
#define GEMM_CONSUMER_REGS 224

typedef struct gemm_params {
    const int32_t *bounds; /* offsets [E+1], or counts [E] when masked */
    int32_t experts;
    int32_t masked;
    int32_t rows;          /* R, or C when masked */
    int32_t n;
    int32_t n_tiles;
    int32_t pair;          /* 1: CTAs run in clusters of two, a tile index names two tiles */
    int32_t n_split_tiles; /* ceil(N / 64): the tiles of an expert of <= 32 rows, or 0 */
    int32_t k_blocks;      /* stages per tile: K / 128 (FP8) or ceil(K / 64) (BF16) */
    int32_t stages;
    const float *sa;       /* FP8 A scales: (expert, row, K block) at sa_e, sa_r, sa_k */
    int64_t sa_e, sa_r, sa_k;
    const float *sb;       /* FP8 B scales [E, N/128, K/128] */
    int64_t sb_e, sb_n, sb_k;
    void *d;               /* (expert, row) at d_e, d_r elements */
    int64_t d_e, d_r;
    /* GEMM 1 with the activation fused (FUSED kernels): a tile is a gate sub-tile (weight
     * rows n0..) then an up one (weight rows up + n0..), n and n_tiles count the I
     * outputs, d holds the gate half as bf16, and the codes and scales of
     * silu(gate) * up go to q and qs */
    int32_t up;            /* I: the first up row of B */
    uint8_t *q;            /* codes [R, I] at row stride q_r */
    int64_t q_r;
    float *qs;             /* the scale of (row r, group j) at qs[r * qs_r + j * qs_g] */
    int64_t qs_r, qs_g;
    float eps;
    int32_t ue8m0;
} gemm_params;

/* Where a tile lies. */
typedef struct gemm_tile {
    int32_t e;
    int32_t swapped; /* at most 32 rows: weights are wgmma's M */
    int32_t split;   /* an expert of at most 32 rows: 64 weight rows, K split in two */
    int32_t row;     /* first row: of A's row dimension, and of D's */
    int32_t rows;    /* rows of the tile the expert owns, 1..128 */
    int32_t n0;
    int32_t share_b; /* paired: 1 shares B with the other CTA (m tiles 2i, 2i + 1), 0 A */
} gemm_tile;

/* The shared-memory carve-up, 1024-byte aligned for the 128-byte swizzle. */
typedef struct gemm_smem {
    uint32_t ring;     /* shared address of stage 0 */
    uint32_t full, empty; /* shared addresses of the barrier arrays */
    uint32_t scales;   /* shared address of the per-stage FP8 scales */
    const float *scale; /* the same, for the consumers' reads */
    int32_t *prefix;   /* [E+1] tiles before expert e */
    int32_t *start;    /* [E] first row of expert e (in A's row dimension) */
    int32_t *count;    /* [E] rows of expert e */
    int32_t *bounds;   /* [E+1] the bounds as read, to check them after the PDL wait */
    float *reduce;     /* [16][128]: a split tile's odd-K-block sums, warpgroup 2 to 1 */
    int32_t pair;      /* p.pair: this CTA shares its A tiles with the other of its cluster */
    uint32_t rank;     /* this CTA's rank in the cluster: which n tile of the pair it owns */
} gemm_smem;

/* The kernel's tensor maps: A with 128-row and 32-row boxes and, for paired CTAs, their
 * halves; B with 128-row and 64-row boxes (the latter for split tiles and B's halves). */
typedef struct gemm_maps {
    CUtensorMap a, a_small, a_half, a_small_half, b, b_half;
} gemm_maps;

static __device__ __forceinline__ uint32_t stage_a(const gemm_smem &s, int stage) {
    return s.ring + (uint32_t)stage * GEMM_STAGE_BYTES;
}
static __device__ __forceinline__ uint32_t stage_b(const gemm_smem &s, int stage) {
    return stage_a(s, stage) + GEMM_TILE_BYTES;
}

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
    int32_t m_units = m_tiles >> p.pair, grid = m_units * p.n_tiles, m, n;
    if (local < grid) {
        int32_t group = GEMM_GROUP_N * m_units;
        int32_t gi = local / group, rem = local - gi * group;
        int32_t width = min(GEMM_GROUP_N, p.n_tiles - gi * GEMM_GROUP_N);
        int32_t mu = rem / width;
        n = gi * GEMM_GROUP_N + (rem - mu * width);
        m = p.pair ? 2 * mu + rank : mu;
        g.share_b = p.pair;
    } else {
        m = m_tiles - 1;
        n = 2 * (local - grid) + rank;
        g.share_b = 0;
    }
    g.row += m * GEMM_BM;
    g.rows = min(count - m * GEMM_BM, GEMM_BM);
    g.swapped = g.rows <= GEMM_SMALL;
    g.split = 0;
    g.n0 = n * GEMM_BN;
    return g;
}

/* ---------------------------------------------------------------- producer */

/* The ring position after this one: the phase flips at each wrap. */
static __device__ __forceinline__ void next_stage(int &stage, uint32_t &phase, int stages) {
    if (++stage == stages) {
        stage = 0;
        phase ^= 1u;
    }
}

/* K blocks a stage holds: a split tile's stage holds two, the first for consumer
 * warpgroup 1 and the second for warpgroup 2, each in its own half of the A and B areas
 * (1024-byte aligned, so the 128-byte swizzle is the same as at the area's start). */
static __device__ __forceinline__ int32_t k_per_stage(const gemm_tile &g) {
    return g.split ? 2 : 1;
}

/* Sub-tiles a tile runs through in turn: a fused tile's gate, then its up rows. */
template <bool FUSED> static __device__ __forceinline__ constexpr int passes() {
    return FUSED ? 2 : 1;
}

template <bool FP8, bool FUSED>
static __device__ void produce(const gemm_params &p, const gemm_smem &s, const gemm_maps &m) {
    const int32_t k_step = FP8 ? GEMM_ROW_BYTES : GEMM_ROW_BYTES / 2;
    int32_t total = s.prefix[p.experts];
    int stage = 0;
    uint32_t phase = 0;
    for (int32_t t = first_tile(p); t < total; t += tile_stride(p)) {
        gemm_tile g = find_tile(p, s, t);
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
        uint32_t bytes = GEMM_TILE_BYTES + (uint32_t)a_rows * GEMM_ROW_BYTES;
        /* paired: the shared operand's tile is loaded half by each CTA into both CTAs'
         * stages (maps with half-height boxes); the halves start on 1024-byte boundaries,
         * so the swizzle is that of one whole box */
        bool share_a = p.pair && !g.share_b, share_b = g.share_b;
        uint32_t rank = s.rank;
        for (int pass = 0; pass < passes<FUSED>(); pass++) {
            int32_t n0 = g.n0 + pass * p.up;
            for (int32_t kb = 0; kb < p.k_blocks; kb++) {
                uint32_t full = s.full + 8u * stage, empty = s.empty + 8u * stage;
                uint32_t a = stage_a(s, stage), b = stage_b(s, stage);
                int32_t k = kb * k_step;
                mbar_wait_cluster(empty, phase ^ 1u);
                mbar_arrive_expect_tx(full, bytes);
                if (share_a) {
                    int32_t half = a_rows / 2;
                    tma_load_3d_multicast(a + rank * (uint32_t)half * GEMM_ROW_BYTES,
                                          g.swapped ? &m.a_small_half : &m.a_half, full, k,
                                          g.row + (int32_t)rank * half, a_e, 3);
                } else {
                    tma_load_3d(a, g.swapped ? &m.a_small : &m.a, full, k, g.row, a_e);
                }
                if (share_b)
                    tma_load_3d_multicast(b + rank * (uint32_t)(GEMM_BN / 2) * GEMM_ROW_BYTES,
                                          &m.b_half, full, k, n0 + (int32_t)rank * (GEMM_BN / 2),
                                          g.e, 3);
                else
                    tma_load_3d(b, &m.b, full, k, n0, g.e);
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
template <bool FUSED>
static __device__ void produce_scales(const gemm_params &p, const gemm_smem &s) {
    int lane = threadIdx.x & 31;
    int32_t total = s.prefix[p.experts];
    int stage = 0, pending = -1;
    uint32_t phase = 0;
    for (int32_t t = first_tile(p); t < total; t += tile_stride(p)) {
        gemm_tile g = find_tile(p, s, t);
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
                    if (lane == 0) cp_async_4(dst + 4u * GEMM_BM, sb + (int64_t)kb * p.sb_k, 4u);
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

/* ---------------------------------------------------------------- consumers */

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
        uint16_t *d_lo = d + (int64_t)r_lo * p.d_r, *d_hi = d + (int64_t)r_hi * p.d_r;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            int32_t col = g.n0 + 8 * j + 2 * (lane & 3);
            if (col < p.n) { /* N is a multiple of 8, so col + 1 < N too */
                if (v_lo) *(uint32_t *)(d_lo + col) = pack2<OUT>(acc[4 * j], acc[4 * j + 1]);
                if (v_hi) *(uint32_t *)(d_hi + col) = pack2<OUT>(acc[4 * j + 2], acc[4 * j + 3]);
            }
        }
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

template <bool FP8, moe_dtype OUT, bool FUSED>
__global__ void __launch_bounds__(GEMM_THREADS, 1)
    grouped_gemm_kernel(const __grid_constant__ gemm_maps maps, const gemm_params p) {
    extern __shared__ uint8_t smem_raw[];
    uint32_t raw = smem_u32(smem_raw);
    uint32_t pad = ((raw + 1023u) & ~1023u) - raw;
    uint8_t *base = smem_raw + pad;
    gemm_smem s;
    s.ring = raw + pad;
    s.full = s.ring + (uint32_t)p.stages * GEMM_STAGE_BYTES;
    s.empty = s.full + 8u * (uint32_t)p.stages;
    s.scales = s.empty + 8u * (uint32_t)p.stages;
    s.scale = (const float *)(base + (size_t)p.stages * (GEMM_STAGE_BYTES + 16));
    s.prefix = (int32_t *)(base + (size_t)p.stages * (GEMM_STAGE_BYTES + 16 + GEMM_SCALE_BYTES));
    s.start = s.prefix + p.experts + 1;
    s.count = s.start + p.experts;
    s.bounds = s.count + p.experts;
    s.reduce = (float *)(s.bounds + p.experts + 1);
    s.pair = p.pair;
    s.rank = p.pair ? cluster_rank() : 0u;

    if (threadIdx.x == 0) {
        for (int i = 0; i < p.stages; i++) {
            /* FP8: the TMA thread's expect_tx arrival and one per scale-warp lane. Empty:
             * this CTA's consumers (FP8 per lane, else per warp) and, paired, one arrival
             * per consumer warp of the other CTA */
            mbar_init(s.full + 8u * i, FP8 ? 33 : 1);
            mbar_init(s.empty + 8u * i,
                      GEMM_CONSUMER_WARPS * ((FP8 ? 32 : 1) + (p.pair ? 1 : 0)));
        }
        mbar_init_fence();
        if (p.k_blocks > 0) {
            tma_prefetch_map(&maps.a);
            tma_prefetch_map(&maps.a_small);
            if (p.pair) {
                tma_prefetch_map(&maps.a_half);
                tma_prefetch_map(&maps.a_small_half);
            }
            tma_prefetch_map(&maps.b);
            tma_prefetch_map(&maps.b_half);
        }
    }
    /* launched with PDL (common.cuh): the table from the bounds as they are now, which
     * in the layer were written two kernels back; then the wait, after which the bounds
     * are read again and the table rebuilt if they changed. Everything else the kernel
     * reads or writes comes after the wait. */
    build_table(p, s); /* ends with __syncthreads: barriers and table are ready */
    if (p.pair) cluster_sync(); /* and the other CTA's barriers, before any multicast */
    moe_pdl_wait();
    if (bounds_changed(p, s)) build_table(p, s);
    moe_pdl_release();

    int wg = threadIdx.x / 128;
    if (wg == 0) {
        regs_shrink<GEMM_PRODUCER_REGS>();
        if (threadIdx.x == 0) produce<FP8, FUSED>(p, s, maps);
        else if (FP8 && threadIdx.x / 32 == 1) produce_scales<FUSED>(p, s);
    } else {
        regs_grow<GEMM_CONSUMER_REGS>();
        int32_t total = s.prefix[p.experts];
        int stage = 0;
        uint32_t phase = 0;
        for (int32_t t = first_tile(p); t < total; t += tile_stride(p)) {
            gemm_tile g = find_tile(p, s, t);
            if (g.swapped) consume_small<FP8, OUT, FUSED>(p, s, g, wg - 1, stage, phase);
            else consume_tile<FP8, OUT, FUSED>(p, s, g, wg - 1, stage, phase);
        }
    }
    /* paired: the other CTA may still arrive on this one's barriers; stay until it is done */
    if (p.pair) {
        __syncwarp();
        cluster_sync();
    }
}

/* ---------------------------------------------------------------- host */

static int aligned16(int64_t v) { return v % 16 == 0; }

/* The op's TMA needs: 16-byte aligned bases and row strides. */
static moe_status check_tma(const char *op, const moe_tensor *t, const char *name) {
    int64_t es = (int64_t)moe_dtype_size(t->dtype);
    if (((uintptr_t)t->data % 16) != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s: %s.data must be 16-byte aligned on the CUDA backend (TMA loads)",
                        op, name);
    for (int dim = 0; dim + 1 < t->rank; dim++)
        if (!aligned16(t->stride[dim] * es))
            return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                            "%s: %s.stride[%d] (%lld elements) must be a multiple of 16 bytes "
                            "on the CUDA backend (TMA loads)",
                            op, name, dim, (long long)t->stride[dim]);
    return MOE_OK;
}

typedef CUresult (*encode_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *,
                              const cuuint64_t *, const cuuint64_t *, const cuuint32_t *,
                              const cuuint32_t *, CUtensorMapInterleave, CUtensorMapSwizzle,
                              CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

/* A 3-D map over (K, rows, outer) with a box of (128 bytes of K, box_rows, 1), 128-byte
 * swizzle and zero fill outside the tensor. */
static moe_status encode_3d(const char *op, encode_fn encode, CUtensorMap *map, int fp8,
                            void *data, int64_t k, int64_t rows, int64_t outer,
                            int64_t row_bytes, int64_t outer_bytes, uint32_t box_rows,
                            const char *name) {
    cuuint64_t dims[3] = {(cuuint64_t)k, (cuuint64_t)rows, (cuuint64_t)outer};
    cuuint64_t strides[2] = {(cuuint64_t)row_bytes, (cuuint64_t)outer_bytes};
    cuuint32_t box[3] = {(cuuint32_t)(fp8 ? GEMM_ROW_BYTES : GEMM_ROW_BYTES / 2), box_rows, 1};
    cuuint32_t elem[3] = {1, 1, 1};
    CUresult r = encode(map, fp8 ? CU_TENSOR_MAP_DATA_TYPE_UINT8 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16,
                        3, data, dims, strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                        CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return moe_fail(MOE_ERR_BACKEND, "%s: cuTensorMapEncodeTiled for %s failed (CUresult %d)",
                        op, name, (int)r);
    return MOE_OK;
}

/* Launches one CTA per SM for up to `work` tile indices; paired, in clusters of two, as
 * many clusters as the GPU can hold at once (SMs pair up within a GPC, so that may be
 * fewer than half the SMs). */
template <bool FP8, moe_dtype OUT, bool FUSED = false>
static moe_status launch(const char *op, const gemm_maps *maps, const gemm_params *p,
                         int64_t work, int sm_count, size_t smem, cudaStream_t stream) {
    void (*kernel)(const gemm_maps, const gemm_params) = grouped_gemm_kernel<FP8, OUT, FUSED>;
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess)
        return moe_fail(MOE_ERR_BACKEND, "%s: cudaFuncSetAttribute: %s", op, cudaGetErrorString(e));
    int64_t ctas = p->pair ? sm_count / 2 : sm_count;
    moe_pdl_launch l;
    moe_pdl_config(&l, 1, GEMM_THREADS, smem, stream, p->rows);
    cudaLaunchAttribute attrs[2] = {l.attr, cudaLaunchAttribute()};
    if (p->pair) {
        attrs[1].id = cudaLaunchAttributeClusterDimension;
        attrs[1].val.clusterDim.x = 2;
        attrs[1].val.clusterDim.y = 1;
        attrs[1].val.clusterDim.z = 1;
        l.cfg.attrs = attrs;
        l.cfg.numAttrs = 2;
        l.cfg.gridDim = dim3((unsigned)(2 * ctas));
        int clusters = 0;
        e = cudaOccupancyMaxActiveClusters(&clusters, kernel, &l.cfg);
        if (e != cudaSuccess || clusters < 1)
            return moe_fail(MOE_ERR_BACKEND, "%s: cudaOccupancyMaxActiveClusters: %s (%d)", op,
                            cudaGetErrorString(e), clusters);
        ctas = clusters;
    }
    if (ctas > work) ctas = work;
    if (ctas < 1) ctas = 1;
    l.cfg.gridDim = dim3((unsigned)(ctas << p->pair));
    cudaLaunchKernelEx(&l.cfg, kernel, *maps, *p);
    return moe_cuda_launch_status(op);
}

/* The fused activation's outputs (moe_cuda_grouped_gemm_silu_quant), or none. */
typedef struct gemm_act {
    const moe_fp8_group_params *params;
    moe_tensor *q, *scales;
} gemm_act;

/* The GEMM, or with act GEMM 1 and its activation fused; *done = 0 where the fused kernel
 * does not run (decode-sized calls, which use split tiles) and nothing was launched. */
static moe_status run(moe_context *ctx, int masked, const moe_tensor *a,
                      const moe_tensor *a_scales, moe_scale_layout a_layout, const moe_tensor *b,
                      const moe_tensor *b_scales, const moe_tensor *bounds, moe_tensor *d,
                      const gemm_act *act, int *done, void *stream) {
    const char *op = act ? "moe_grouped_gemm_silu_quant"
                         : masked ? "moe_grouped_gemm_masked" : "moe_grouped_gemm";
    *done = 0;
    MOE_TRY(moe_cuda_use_device(ctx));
    const moe_cuda_state *st = (const moe_cuda_state *)ctx->state;
    if (st->cc_major != 9)
        return moe_fail(MOE_ERR_UNSUPPORTED,
                        "%s: the CUDA grouped GEMM needs a Hopper GPU (sm_90a); device %d is "
                        "sm_%d%d",
                        op, ctx->device, st->cc_major, st->cc_minor);
    int fp8 = a->dtype == MOE_DTYPE_E4M3;
    /* n: the output columns; b has 2n rows (gate, up) when fused */
    int64_t experts = b->shape[0], n_b = b->shape[1], k = b->shape[2];
    int64_t n = act ? n_b / 2 : n_b;
    int lead = masked ? 1 : 0;
    int64_t rows = a->shape[lead];
    if (rows == 0 || n == 0) { /* nothing to write */
        *done = 1;
        return MOE_OK;
    }

    if (k > 0) { /* with K = 0 nothing is loaded */
        MOE_TRY(check_tma(op, a, "a"));
        MOE_TRY(check_tma(op, b, "b"));
    }
    if ((uintptr_t)d->data % 4 != 0 || d->stride[lead] % 2 != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s: d.data must be 4-byte aligned and d's row stride (%lld) even on "
                        "the CUDA backend (outputs are stored in pairs)",
                        op, (long long)d->stride[lead]);
    if (masked && d->stride[0] % 2 != 0)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "%s: d.stride[0] (%lld) must be even on the CUDA backend", op,
                        (long long)d->stride[0]);

    int64_t n_tiles = (n + GEMM_BN - 1) / GEMM_BN;
    /* m tiles over all experts, + E: a decode expert has 2 n_tiles split tiles */
    int64_t m_bound = (masked ? experts * ((rows + GEMM_BM - 1) / GEMM_BM)
                              : (rows + GEMM_BM - 1) / GEMM_BM + experts) +
                      experts;
    if (rows > INT32_MAX - 2 * GEMM_BM || n > INT32_MAX - GEMM_BN || k > INT32_MAX ||
        m_bound > INT32_MAX / n_tiles)
        return moe_fail(MOE_ERR_UNSUPPORTED,
                        "%s: the problem is too large for the CUDA kernel's 32-bit tile indices",
                        op);

    /* shared memory: the stage ring, 2 barriers and the scales per stage, the expert table
     * and, where split tiles can occur, their reduction buffer */
    int64_t most_experts = masked || rows > experts ? experts : rows;
    int split = most_experts * ((n_b + GEMM_BN - 1) / GEMM_BN) <
                (int64_t)GEMM_SPLIT_WAVES * st->sm_count;
    if (act && split) return MOE_OK; /* the caller runs the GEMM and the activation */
    /* CTAs in pairs wherever whole tiles are used, the n tiles pair up, and experts average
     * at least half a tile of rows (the masked layout: capacity). Pairs pay where experts
     * have several m tiles that then share B; where nearly every expert has one short
     * tile, only A (a few KiB a stage) is shared and the lock step costs more than it
     * saves: DeepSeek-V3's layer at T = 512 (16 rows an expert) was 1.5% slower paired
     * (bench/NOTES.md). */
    int64_t rows_per_expert = masked ? rows : rows / (experts > 0 ? experts : 1);
    int pair = !split && n_tiles % 2 == 0 && rows_per_expert >= GEMM_BM / 2;
    size_t table = (size_t)(4 * experts + 2) * sizeof(int32_t) +
                   (split || act ? GEMM_REDUCE_FLOATS * sizeof(float) : 0);
    size_t fixed = 1024 /* alignment slack */ + (16 + GEMM_SCALE_BYTES) * GEMM_MAX_STAGES + table;
    int64_t stages = st->smem_optin > fixed ? (int64_t)((st->smem_optin - fixed) / GEMM_STAGE_BYTES)
                                            : 0;
    if (stages > GEMM_MAX_STAGES) stages = GEMM_MAX_STAGES;
    if (stages < 2)
        return moe_fail(MOE_ERR_UNSUPPORTED,
                        "%s: %lld experts do not fit the CUDA kernel's shared-memory table", op,
                        (long long)experts);
    size_t smem = 1024 + (size_t)stages * (GEMM_STAGE_BYTES + 16 + GEMM_SCALE_BYTES) + table;

    int64_t es = (int64_t)moe_dtype_size(a->dtype);
    gemm_params p;
    memset(&p, 0, sizeof p);
    p.bounds = (const int32_t *)bounds->data;
    p.experts = (int32_t)experts;
    p.masked = masked;
    p.rows = (int32_t)rows;
    p.n = (int32_t)n;
    p.n_tiles = (int32_t)n_tiles;
    p.pair = pair;
    if (split)
        p.n_split_tiles = (int32_t)((n + GEMM_BN_SPLIT - 1) / GEMM_BN_SPLIT);
    p.k_blocks = (int32_t)(fp8 ? k / GEMM_SCALE_BLOCK : (k + 63) / 64);
    p.stages = (int32_t)stages;
    if (fp8) {
        int row_dim = lead + (a_layout == MOE_SCALES_ROW_MAJOR ? 0 : 1);
        int blk_dim = lead + (a_layout == MOE_SCALES_ROW_MAJOR ? 1 : 0);
        p.sa = (const float *)a_scales->data;
        p.sa_e = masked ? a_scales->stride[0] : 0;
        p.sa_r = a_scales->stride[row_dim];
        p.sa_k = a_scales->stride[blk_dim];
        p.sb = (const float *)b_scales->data;
        p.sb_e = b_scales->stride[0];
        p.sb_n = b_scales->stride[1];
        p.sb_k = b_scales->stride[2];
    }
    p.d = d->data;
    p.d_e = masked ? d->stride[0] : 0;
    p.d_r = d->stride[lead];
    if (act) {
        moe_fp8_scale_strides ss = moe_fp8_scale_layout(act->scales, act->params->layout);
        p.up = (int32_t)n;
        p.q = (uint8_t *)act->q->data;
        p.q_r = act->q->stride[0];
        p.qs = (float *)act->scales->data;
        p.qs_r = ss.row;
        p.qs_g = ss.group;
        p.eps = act->params->eps;
        p.ue8m0 = act->params->ue8m0 != 0;
    }

    gemm_maps maps;
    memset(&maps, 0, sizeof maps);
    if (k > 0) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                         cudaEnableDefault, &q);
        if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !fn)
            return moe_fail(MOE_ERR_BACKEND, "%s: the driver has no cuTensorMapEncodeTiled (%s)",
                            op, cudaGetErrorString(e));
        encode_fn encode = (encode_fn)fn;
        int64_t a_row = a->stride[lead] * es;
        int64_t a_outer = masked ? a->stride[0] * es : rows * a_row;
        int64_t a_count = masked ? experts : 1;
        MOE_TRY(encode_3d(op, encode, &maps.a, fp8, a->data, k, rows, a_count, a_row, a_outer,
                          GEMM_BM, "a"));
        MOE_TRY(encode_3d(op, encode, &maps.a_small, fp8, a->data, k, rows, a_count, a_row,
                          a_outer, GEMM_SMALL, "a"));
        if (pair) {
            MOE_TRY(encode_3d(op, encode, &maps.a_half, fp8, a->data, k, rows, a_count, a_row,
                              a_outer, GEMM_BM / 2, "a"));
            MOE_TRY(encode_3d(op, encode, &maps.a_small_half, fp8, a->data, k, rows, a_count,
                              a_row, a_outer, GEMM_SMALL / 2, "a"));
        }
        MOE_TRY(encode_3d(op, encode, &maps.b, fp8, b->data, k, n_b, experts,
                          b->stride[1] * es, b->stride[0] * es, GEMM_BN, "b"));
        MOE_TRY(encode_3d(op, encode, &maps.b_half, fp8, b->data, k, n_b, experts,
                          b->stride[1] * es, b->stride[0] * es, GEMM_BN_SPLIT, "b"));
    }

    int64_t work = m_bound * n_tiles; /* tile indices at most */
    int sms = st->sm_count;
    cudaStream_t s = moe_cuda_stream(stream);
    *done = 1;
    if (act) return launch<true, MOE_DTYPE_BF16, true>(op, &maps, &p, work, sms, smem, s);
    if (fp8) {
        if (d->dtype == MOE_DTYPE_BF16)
            return launch<true, MOE_DTYPE_BF16>(op, &maps, &p, work, sms, smem, s);
        return launch<true, MOE_DTYPE_F16>(op, &maps, &p, work, sms, smem, s);
    }
    if (d->dtype == MOE_DTYPE_BF16)
        return launch<false, MOE_DTYPE_BF16>(op, &maps, &p, work, sms, smem, s);
    return launch<false, MOE_DTYPE_F16>(op, &maps, &p, work, sms, smem, s);
}

extern "C" moe_status moe_cuda_grouped_gemm_workspace_size(moe_context *ctx, int32_t num_experts,
                                                           size_t *bytes) {
    (void)ctx;
    (void)num_experts;
    *bytes = 0;
    return MOE_OK;
}

extern "C" moe_status moe_cuda_grouped_gemm(moe_context *ctx, const moe_tensor *a,
                                            const moe_tensor *a_scales, moe_scale_layout a_layout,
                                            const moe_tensor *b, const moe_tensor *b_scales,
                                            const moe_tensor *offsets, moe_tensor *d,
                                            void *workspace, size_t workspace_bytes,
                                            void *stream) {
    (void)workspace;
    (void)workspace_bytes;
    int done;
    return run(ctx, 0, a, a_scales, a_layout, b, b_scales, offsets, d, NULL, &done, stream);
}

extern "C" moe_status moe_cuda_grouped_gemm_masked(moe_context *ctx, const moe_tensor *a,
                                                   const moe_tensor *a_scales,
                                                   moe_scale_layout a_layout,
                                                   const moe_tensor *b,
                                                   const moe_tensor *b_scales,
                                                   const moe_tensor *counts, moe_tensor *d,
                                                   void *workspace, size_t workspace_bytes,
                                                   void *stream) {
    (void)workspace;
    (void)workspace_bytes;
    int done;
    return run(ctx, 1, a, a_scales, a_layout, b, b_scales, counts, d, NULL, &done, stream);
}

extern "C" moe_status moe_cuda_grouped_gemm_silu_quant(
    moe_context *ctx, const moe_tensor *a, const moe_tensor *a_scales, moe_scale_layout a_layout,
    const moe_tensor *b, const moe_tensor *b_scales, const moe_tensor *offsets, moe_tensor *c,
    const moe_fp8_group_params *params, moe_tensor *q, moe_tensor *q_scales, void *workspace,
    size_t workspace_bytes, int *fused, void *stream) {
    (void)workspace;
    (void)workspace_bytes;
    gemm_act act = {params, q, q_scales};
    return run(ctx, 0, a, a_scales, a_layout, b, b_scales, offsets, c, &act, fused, stream);
}
