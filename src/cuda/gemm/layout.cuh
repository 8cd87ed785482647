/* The grouped GEMM's sizes and shared state (grouped_gemm.cu): tile and ring constants, the
 * kernel's parameters, a tile's description, the shared-memory carve-up and the ring's
 * position arithmetic, used by every part of the kernel. */
#ifndef MOE_CUDA_GEMM_LAYOUT_CUH
#define MOE_CUDA_GEMM_LAYOUT_CUH

#include <cuda.h>
#include <stdint.h>

#define GEMM_BM 128            /* rows of a tile: two consumer warpgroups of 64 */
#define GEMM_BN 128            /* columns of a tile; the FP8 scale block of N */
#define GEMM_ROW_BYTES 128     /* one shared-memory row of a K block (128B swizzle) */
#define GEMM_SMALL 32          /* tiles with at most this many rows are swapped */
#define GEMM_BN_SPLIT 64       /* weight rows of a decode expert's (split) tile */
static_assert(GEMM_BN_SPLIT == GEMM_BN / 2, "one B map serves split tiles and paired B halves");
#define GEMM_SPLIT_WAVES 4     /* split tiles when whole ones would make fewer waves */
#define GEMM_REDUCE_FLOATS (16 * 128) /* a split tile's hand-over: 16 sums per thread */
#define GEMM_SPLIT_A_HALF (GEMM_SMALL * GEMM_ROW_BYTES)    /* 4 KiB: 32 rows of a K block */
#define GEMM_SPLIT_B_HALF (GEMM_BN_SPLIT * GEMM_ROW_BYTES) /* 8 KiB: 64 rows of a K block */
#define GEMM_TILE_BYTES (GEMM_BM * GEMM_ROW_BYTES) /* 16 KiB */
#define GEMM_STAGE_BYTES (2 * GEMM_TILE_BYTES)     /* A and B of one K block */
/* Wide tiles (FP8, experts of 256 to 1023 rows on average): 128 rows x 256 columns, a stage
 * holding A's 128 rows and B's 256 (two 128-row halves, one after the other) */
#define GEMM_BN_WIDE 256
#define GEMM_WIDE_STAGE_BYTES (3 * GEMM_TILE_BYTES)
#define GEMM_MAX_STAGES 6
#define GEMM_THREADS 384
#define GEMM_CONSUMER_WARPS 8
#define GEMM_GROUP_N 8         /* n tiles per raster group */
#define GEMM_SCALE_BLOCK 128
/* FP8 scales of one stage in shared memory: 128 A scales (one per tile row) and the
 * tile's b_scale at [128] (a wide tile's two at [128], [129]); 136 floats keep every
 * stage's block 16-byte aligned. */
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
    int32_t n_tiles;       /* tiles of N: 128 columns, or 256 in the WIDE kernels */
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

/* Where a stage's A and B start (WIDE: the wide kernels' larger stages). */
template <bool WIDE = false>
static __device__ __forceinline__ uint32_t stage_a(const gemm_smem &s, int stage) {
    return s.ring + (uint32_t)stage * (WIDE ? GEMM_WIDE_STAGE_BYTES : GEMM_STAGE_BYTES);
}
template <bool WIDE = false>
static __device__ __forceinline__ uint32_t stage_b(const gemm_smem &s, int stage) {
    return stage_a<WIDE>(s, stage) + GEMM_TILE_BYTES;
}

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

#endif /* MOE_CUDA_GEMM_LAYOUT_CUH */
