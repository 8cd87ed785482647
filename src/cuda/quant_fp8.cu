/* Per-token-group FP8 quantisation with the gather fused (SPEC 3), and its inverse.
 *
 * The group math and the two loops over groups are in fp8_group.cuh (shared with the
 * fused silu_and_mul); this file supplies the rows: row r of q reads x[perm[r] / topk]
 * (x[r] without perm), or a row of zeros where perm[r] is negative or names a token
 * >= T. Codes and scales equal the CPU reference bit for bit (a NaN code may differ in
 * its sign bit: the GPU's NaNs are canonical). As on the CPU, the column-major scales'
 * padding columns M..M4-1 are not written. */
#include "fp8_group.cuh"

/* ------------------------------------------------------------------ quantisation */

/* The rows of x as moe_fp8_lanes_loop / moe_fp8_warps_loop read them. VEC: x and its row
 * stride are 16-byte aligned, so a thread's 16 values come in 16-byte loads. */
template <moe_dtype D, bool VEC>
struct gather_source {
    typedef const typename moe_elem<D>::T *Row; /* NULL: a row of zeros */

    Row x;
    int64_t x_stride, x_rows;
    const int32_t *perm; /* NULL: row r is x[r] */
    int32_t topk;

    __device__ __forceinline__ Row row(int64_t r) const {
        if (r < 0) return NULL;
        int64_t t = r;
        if (perm) {
            /* caller data: anything outside [0, T * topk) is a zero row, never a read */
            int32_t p = __ldg(perm + r);
            if (p < 0) return NULL;
            t = (uint32_t)p / (uint32_t)topk; /* both positive: the cheaper unsigned divide */
            if (t >= x_rows) return NULL;
        }
        return x + t * x_stride;
    }

    __device__ __forceinline__ void load(Row h, int64_t c, float (&v)[MOE_FP8_VEC]) const {
        if (!h) {
#pragma unroll
            for (int i = 0; i < MOE_FP8_VEC; i++) v[i] = 0.0f;
        } else if (VEC) {
            moe_fp8_load_vec<D, MOE_FP8_VEC>(h + c * MOE_FP8_VEC, v);
        } else {
            moe_fp8_load_scalar<D, MOE_FP8_VEC>(h + c * MOE_FP8_VEC, v);
        }
    }

    __device__ __forceinline__ float value(Row h, int64_t col) const {
        return h ? moe_fp8_load1<D>(h + col) : 0.0f;
    }
};

/* The planned gather (moe_quant_fp8_group_planned; lane groups only), token by token:
 * each x row is read and quantised once and its codes stored to every row that copies
 * it, found through inv_perm, where the row-driven kernel reads and quantises a token
 * topk times (9 at DeepSeek-V3 with its shared expert: the row-driven op was compute-bound
 * on the per-value rounding). A row r is stored only if perm agrees (perm[r] = t * topk +
 * j), so every stored row equals the row-driven kernel's. Rows whose perm entry names no
 * token (alignment padding) are then given the zero row's codes and scales, one warp per
 * row through the same group math. The loop runs while any lane of the warp has work, as
 * moe_fp8_lanes_loop's, for the shuffles. Used where the tokens alone fill the GPU. */
template <moe_dtype D, bool VEC>
__global__ void __launch_bounds__(MOE_FP8_THREADS)
    quant_planned_kernel(const gather_source<D, VEC> src, const int32_t *__restrict__ inv,
                         const moe_fp8_out o) {
    moe_pdl_release(); /* the next kernel may start (common.cuh) */
    moe_pdl_wait();
    const int64_t chunks = o.cols / MOE_FP8_VEC, tokens = src.x_rows;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t step_t = step / chunks, step_c = step % chunks;
    const int64_t lane_mask = ((int64_t)1 << o.log2_lanes) - 1;
    const int64_t topk = src.topk;
    int64_t t = u / chunks, c = u % chunks;
    while (__any_sync(MOE_FULL_MASK, t < tokens)) {
        bool live = t < tokens;
        float v[MOE_FP8_VEC];
        src.load(live ? src.x + t * src.x_stride : NULL, c, v);
        uint32_t codes[MOE_FP8_VEC / 4];
        float scale;
        moe_fp8_quant_lanes(v, o.log2_lanes, o.eps, o.ue8m0, codes, &scale);
        for (int64_t j = 0; live && j < topk; j++) {
            int64_t slot = t * topk + j;
            int32_t r = __ldg(inv + slot);
            if (r < 0 || r >= o.rows || __ldg(src.perm + r) != slot) continue;
            moe_fp8_store_codes(o.q + r * o.q_stride + c * MOE_FP8_VEC, codes, o.vec_store);
            if ((c & lane_mask) == 0) o.scales[r * o.s_row + (c >> o.log2_lanes) * o.s_group] = scale;
        }
        t += step_t, c += step_c;
        if (c >= chunks) c -= chunks, t++;
    }
    const int lane = threadIdx.x & 31;
    for (int64_t r = u >> 5; r < o.rows; r += step >> 5) {
        if (src.row(r)) continue; /* a token's copy: stored above */
        for (int64_t c0 = 0; c0 < chunks; c0 += 32) {
            int64_t cz = c0 + lane;
            float v[MOE_FP8_VEC];
            src.load(NULL, 0, v);
            uint32_t codes[MOE_FP8_VEC / 4];
            float scale;
            moe_fp8_quant_lanes(v, o.log2_lanes, o.eps, o.ue8m0, codes, &scale);
            if (cz < chunks) {
                moe_fp8_store_codes(o.q + r * o.q_stride + cz * MOE_FP8_VEC, codes, o.vec_store);
                if ((cz & lane_mask) == 0)
                    o.scales[r * o.s_row + (cz >> o.log2_lanes) * o.s_group] = scale;
            }
        }
    }
}

/* The token-by-token kernel when inv is given, else the row-by-row one. */
template <moe_dtype D, bool VEC>
static moe_status quant_run(const moe_context *ctx, const gather_source<D, VEC> &src,
                            const int32_t *inv, const moe_fp8_out &o, void *stream) {
    if (!inv) return moe_fp8_launch(ctx, src, o, stream, "moe_quant_fp8_group");
    unsigned grid = moe_fp8_resident_grid(ctx, quant_planned_kernel<D, VEC>, MOE_FP8_THREADS,
                                          src.x_rows * (o.cols / MOE_FP8_VEC));
    moe_pdl_launch l;
    moe_pdl_config(&l, grid, MOE_FP8_THREADS, 0, moe_cuda_stream(stream), o.rows);
    cudaLaunchKernelEx(&l.cfg, quant_planned_kernel<D, VEC>, src, inv, o);
    return moe_cuda_launch_status("moe_quant_fp8_group");
}

template <moe_dtype D>
static moe_status quant_launch(const moe_context *ctx, const moe_tensor *x,
                               const moe_tensor *perm, const moe_tensor *inv_perm, int32_t topk,
                               const moe_fp8_group_params *params, moe_tensor *q,
                               moe_tensor *scales, void *stream) {
    typedef typename moe_elem<D>::T T;
    moe_fp8_out o = moe_fp8_out_of(params, q, scales);
    const T *xd = (const T *)x->data;
    const int32_t *pd = perm ? (const int32_t *)perm->data : NULL;
    /* 16-byte loads: lane groups only, on 16-byte aligned rows */
    int vec = o.log2_lanes >= 0 && moe_fp8_aligned16(x->data) &&
              x->stride[0] * (int64_t)sizeof(T) % 16 == 0;
    /* token by token only where the tokens alone fill the GPU: with fewer (T = 1: one
     * token's 448 chunks) the row-by-row kernel's topk times as many threads finish
     * sooner (T = 1: 6 vs 8 us in the layer; even at T = 32) */
    const moe_cuda_state *cs = (const moe_cuda_state *)ctx->state;
    int64_t token_work = x->shape[0] * (o.cols / MOE_FP8_VEC);
    const int32_t *inv = pd && inv_perm && o.log2_lanes >= 0 &&
                                 token_work >= (int64_t)cs->sm_count * MOE_FP8_THREADS
                             ? (const int32_t *)inv_perm->data
                             : NULL;
    if (vec) {
        gather_source<D, true> src = {xd, x->stride[0], x->shape[0], pd, topk};
        return quant_run(ctx, src, inv, o, stream);
    }
    gather_source<D, false> src = {xd, x->stride[0], x->shape[0], pd, topk};
    return quant_run(ctx, src, inv, o, stream);
}

moe_status moe_cuda_quant_fp8_group(moe_context *ctx, const moe_tensor *x, const moe_tensor *perm,
                                    const moe_tensor *inv_perm, int32_t topk,
                                    const moe_fp8_group_params *params, moe_tensor *q,
                                    moe_tensor *scales, void *stream) {
    if (q->shape[0] == 0 || q->shape[1] == 0) return MOE_OK;
    MOE_TRY(moe_cuda_use_device(ctx));
    moe_status st = MOE_OK;
    MOE_FLOAT_DTYPE_SWITCH(
        x->dtype, D, st = quant_launch<D>(ctx, x, perm, inv_perm, topk, params, q, scales, stream));
    return st;
}

/* ------------------------------------------------------------------ dequantisation */

#define DEQUANT_THREADS 256

/* out = e4m3(q) * scale, the CPU's one f32 product, grid-stride over PER values at a
 * time: 16 (one 16-byte load of codes under one scale: g % 16 == 0, everything 16-byte
 * aligned) or 1. */
template <moe_dtype D, int PER>
__global__ void __launch_bounds__(DEQUANT_THREADS)
    dequant_kernel(const uint8_t *__restrict__ q, int64_t q_stride,
                   const float *__restrict__ scales, int64_t s_row, int64_t s_group,
                   typename moe_elem<D>::T *__restrict__ out, int64_t out_stride, int64_t rows,
                   int64_t cols, int64_t group) {
    const int64_t chunks = cols / PER;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t step_r = step / chunks, step_c = step % chunks;
    int64_t r = u / chunks, c = u % chunks;
    while (r < rows) {
        int64_t col = c * PER;
        float s = __ldg(scales + r * s_row + col / group * s_group);
        const uint8_t *qp = q + r * q_stride + col;
        if (PER == MOE_FP8_VEC) {
            uint4 w = __ldg(reinterpret_cast<const uint4 *>(qp));
            uint32_t ws[4] = {w.x, w.y, w.z, w.w};
            float v[MOE_FP8_VEC];
#pragma unroll
            for (int i = 0; i < MOE_FP8_VEC; i++)
                v[i] = __fmul_rn(moe_e4m3_to_f32((uint8_t)(ws[i / 4] >> (8 * (i % 4)))), s);
            moe_fp8_store_vec<D, MOE_FP8_VEC>(out + r * out_stride + col, v);
        } else {
            out[r * out_stride + col] = moe_elem<D>::store(__fmul_rn(moe_e4m3_to_f32(*qp), s));
        }
        c += step_c, r += step_r;
        if (c >= chunks) c -= chunks, r++;
    }
}

template <moe_dtype D, int PER>
static void dequant_run(const moe_context *ctx, const moe_tensor *q, const moe_tensor *scales,
                        const moe_fp8_group_params *params, moe_tensor *out, cudaStream_t st) {
    typedef typename moe_elem<D>::T T;
    moe_fp8_scale_strides ss = moe_fp8_scale_layout(scales, params->layout);
    int64_t rows = q->shape[0], cols = q->shape[1];
    unsigned grid = moe_fp8_resident_grid(ctx, dequant_kernel<D, PER>, DEQUANT_THREADS,
                                          rows * (cols / PER));
    dequant_kernel<D, PER><<<grid, DEQUANT_THREADS, 0, st>>>(
        (const uint8_t *)q->data, q->stride[0], (const float *)scales->data, ss.row, ss.group,
        (T *)out->data, out->stride[0], rows, cols, params->group);
}

template <moe_dtype D>
static moe_status dequant_launch(const moe_context *ctx, const moe_tensor *q,
                                 const moe_tensor *scales, const moe_fp8_group_params *params,
                                 moe_tensor *out, void *stream) {
    int64_t es = (int64_t)sizeof(typename moe_elem<D>::T);
    int vec = params->group % MOE_FP8_VEC == 0 && moe_fp8_aligned16(q->data) &&
              q->stride[0] % 16 == 0 && moe_fp8_aligned16(out->data) &&
              out->stride[0] * es % 16 == 0;
    if (vec)
        dequant_run<D, MOE_FP8_VEC>(ctx, q, scales, params, out, moe_cuda_stream(stream));
    else
        dequant_run<D, 1>(ctx, q, scales, params, out, moe_cuda_stream(stream));
    return moe_cuda_launch_status("moe_dequant_fp8_group");
}

moe_status moe_cuda_dequant_fp8_group(moe_context *ctx, const moe_tensor *q,
                                      const moe_tensor *scales,
                                      const moe_fp8_group_params *params, moe_tensor *out,
                                      void *stream) {
    if (q->shape[0] == 0 || q->shape[1] == 0) return MOE_OK;
    MOE_TRY(moe_cuda_use_device(ctx));
    moe_status st = MOE_OK;
    MOE_FLOAT_DTYPE_SWITCH(out->dtype, D,
                           st = dequant_launch<D>(ctx, q, scales, params, out, stream));
    return st;
}
