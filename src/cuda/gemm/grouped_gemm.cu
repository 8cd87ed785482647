/* Hopper grouped GEMM (SPEC 4): FP8 e4m3 with DeepSeek-V3 blockwise scales, and BF16;
 * contiguous and masked layouts; bf16 or f16 output. One persistent, warp-specialised
 * kernel per (input dtype, output dtype), sm_90a only, in parts:
 *   layout.cuh    sizes, parameters, the shared-memory carve-up, the ring's positions
 *   tiles.cuh     the work: experts' rows into tiles (swapped, split, paired)
 *   producer.cuh  TMA loads and FP8 scales into the ring; CTA pairs and their multicast
 *   consumer.cuh  wgmma, FP8 promotion, the epilogues and GEMM 1's fused activation
 *   this file     the kernel, its launch and the C entry points.
 *
 * Pipeline. 384 threads: warpgroup 0 is the producer (one thread issues the TMA loads,
 * for FP8 a second warp copies the stage's scales; setmaxnreg gives the warpgroup's
 * registers to the others), warpgroups 1 and 2 are consumers.
 * Shared memory is a ring of up to 6 stages, each one K block of A (128 rows x 128
 * bytes) and of B (128 rows x 128 bytes; wide tiles: 256 rows, 4 stages): 128 e4m3 or
 * 64 bf16 per row, so each row is exactly one 128-byte swizzle row and TMA and wgmma
 * agree on the layout. A stage's
 * "full" mbarrier completes when its bytes have landed (expect_tx) and, for FP8, its
 * scales too (one arrival per scale-warp lane); its "empty" one when all 8 consumer
 * warps (for FP8 all their lanes) are done with it. Rows past the end of A, B or an
 * expert's N are zero-filled by TMA; rows of the next expert inside a contiguous tile are
 * loaded and computed but never stored.
 *
 * Dependent launch (common.cuh, decode sizes). The kernel may start while the kernel
 * before it runs: it builds the table from the bounds as they are then, waits for the
 * predecessor, and rebuilds the table if the bounds changed. In the layer the bounds come
 * from the permutation two kernels back, so the early table stands; called on its own
 * after a kernel that writes the bounds, the kernel is still correct. (Prefetching the
 * first weight tile into L2 before the wait was tried and measured 8 us slower at T = 1:
 * bench/NOTES.md.) Tensor maps are encoded on the host per call through
 * the driver entry point the runtime hands out, so the library does not link libcuda. */
#include <cudaTypedefs.h>
#include <string.h>

#include "../common.cuh"
#include "consumer.cuh"
#include "gemm.h"
#include "layout.cuh"
#include "producer.cuh"
#include "ptx.cuh"
#include "tiles.cuh"

template <bool FP8, moe_dtype OUT, bool FUSED, bool WIDE>
__global__ void __launch_bounds__(GEMM_THREADS, 1)
    grouped_gemm_kernel(const __grid_constant__ gemm_maps maps, const gemm_params p) {
    extern __shared__ uint8_t smem_raw[];
    uint32_t raw = smem_u32(smem_raw);
    uint32_t pad = ((raw + 1023u) & ~1023u) - raw;
    uint8_t *base = smem_raw + pad;
    gemm_smem s;
    s.ring = raw + pad;
    const uint32_t stage_bytes = WIDE ? GEMM_WIDE_STAGE_BYTES : GEMM_STAGE_BYTES;
    s.full = s.ring + (uint32_t)p.stages * stage_bytes;
    s.empty = s.full + 8u * (uint32_t)p.stages;
    s.scales = s.empty + 8u * (uint32_t)p.stages;
    s.scale = (const float *)(base + (size_t)p.stages * (stage_bytes + 16));
    s.prefix = (int32_t *)(base + (size_t)p.stages * (stage_bytes + 16 + GEMM_SCALE_BYTES));
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
        if (threadIdx.x == 0) produce<FP8, FUSED, WIDE>(p, s, maps);
        else if (FP8 && threadIdx.x / 32 == 1) produce_scales<FUSED, WIDE>(p, s);
    } else {
        regs_grow<GEMM_CONSUMER_REGS>();
        int32_t total = s.prefix[p.experts];
        int stage = 0;
        uint32_t phase = 0;
        for (int32_t t = first_tile(p); t < total; t += tile_stride(p)) {
            gemm_tile g = find_tile<WIDE>(p, s, t);
            if (WIDE) consume_wide<OUT>(p, s, g, wg - 1, stage, phase);
            else if (g.swapped) consume_small<FP8, OUT, FUSED>(p, s, g, wg - 1, stage, phase);
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
template <bool FP8, moe_dtype OUT, bool FUSED = false, bool WIDE = false>
static moe_status launch(const char *op, const gemm_maps *maps, const gemm_params *p,
                         int64_t work, int sm_count, size_t smem, cudaStream_t stream) {
    void (*kernel)(const gemm_maps, const gemm_params) =
        grouped_gemm_kernel<FP8, OUT, FUSED, WIDE>;
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
    int64_t rows_per_expert = masked ? rows : rows / experts; /* E >= 1 (api) */
    /* wide tiles (FP8, unfused) where experts average 2 to 7 m tiles: DeepSeek-V3 at
     * T = 8192 (256 rows an expert) gained 16%, 4 x 8192 rows lost 5% (bench/NOTES.md,
     * session 13); between 1024 and 8192 rows it is unmeasured, so left regular */
    int wide = fp8 && !act && !split && n % GEMM_BN_WIDE == 0 &&
               rows_per_expert >= 2 * GEMM_BM && rows_per_expert < 8 * GEMM_BM;
    if (wide) n_tiles = n / GEMM_BN_WIDE;
    uint32_t stage_bytes = wide ? GEMM_WIDE_STAGE_BYTES : GEMM_STAGE_BYTES;
    int pair = !split && n_tiles % 2 == 0 && rows_per_expert >= GEMM_BM / 2;
    size_t table = (size_t)(4 * experts + 2) * sizeof(int32_t) +
                   (split || act ? GEMM_REDUCE_FLOATS * sizeof(float) : 0);
    size_t fixed = 1024 /* alignment slack */ + (16 + GEMM_SCALE_BYTES) * GEMM_MAX_STAGES + table;
    int64_t stages = st->smem_optin > fixed ? (int64_t)((st->smem_optin - fixed) / stage_bytes) : 0;
    if (stages > GEMM_MAX_STAGES) stages = GEMM_MAX_STAGES;
    if (stages < 2)
        return moe_fail(MOE_ERR_UNSUPPORTED,
                        "%s: %lld experts do not fit the CUDA kernel's shared-memory table", op,
                        (long long)experts);
    size_t smem = 1024 + (size_t)stages * (stage_bytes + 16 + GEMM_SCALE_BYTES) + table;

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
    if (wide) { /* FP8 only */
        if (d->dtype == MOE_DTYPE_BF16)
            return launch<true, MOE_DTYPE_BF16, false, true>(op, &maps, &p, work, sms, smem, s);
        return launch<true, MOE_DTYPE_F16, false, true>(op, &maps, &p, work, sms, smem, s);
    }
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
