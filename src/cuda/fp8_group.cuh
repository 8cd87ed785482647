/* Per-token-group FP8 quantisation on the device (SPEC 3), shared by moe_quant_fp8_group
 * (quant_fp8.cu) and moe_silu_and_mul_quant_fp8 (activation.cu): both reach every scale
 * and code through the functions below, so the two ops round alike, and alike with the
 * CPU's moe_cpu_quant_fp8_row (src/cpu/quant_fp8.c), whose arithmetic they repeat step
 * for step in f32 with the conversions of src/common/formats.h (the final f32 -> e4m3
 * by the hardware, equal to it on every input but NaN, whose sign it drops).
 *
 * Two ways to cover a group, chosen on the host:
 * - lane groups (the hot path): a thread owns MOE_FP8_VEC = 16 consecutive values, a
 *   group of g = 16 * L values is L = 1..32 neighbouring lanes (L a power of two), its
 *   amax is reduced with log2(L) xor-shuffles, and the thread writes its 16 codes as one
 *   16-byte store. x is read once, held in registers.
 * - warp groups (any other g, e.g. 96 or a per-token 2048): one warp per group, an amax
 *   pass and a quantise pass over the group with 32-lane strides; the second pass re-reads
 *   the group, which is then in L1/L2. */
#ifndef MOE_CUDA_FP8_GROUP_CUH
#define MOE_CUDA_FP8_GROUP_CUH

#include "common.cuh"
#include "fp8_code.h"

/* Values per thread in lane groups: 16 e4m3 codes are one 16-byte store. */
#define MOE_FP8_VEC 16
/* Threads per block of the FP8 kernels (a multiple of 32: the lane-group loop is
 * warp-uniform). */
#define MOE_FP8_THREADS 256

#define MOE_FULL_MASK 0xffffffffu

/* ------------------------------------------------------------------ the group math */

/* The group's scale from its amax, as the CPU's fp8_group_scale: max(amax, eps) / 448 with
 * a true f32 division, rounded up to a power of two with ue8m0 unless infinite. */
__device__ __forceinline__ float moe_fp8_group_scale(float amax, float eps, int ue8m0) {
    float scale = __fdiv_rn(amax > eps ? amax : eps, MOE_E4M3_MAX);
    /* an infinite scale (an Inf in the group) has no power of two above it */
    if (ue8m0 && scale < 3.0e38f) scale = moe_exp2i(moe_ceil_log2(scale));
    return scale;
}

/* How a group's values are divided by its scale: every way gives the code of the CPU's
 * correctly rounded f32 quotient v / scale. */
enum { MOE_FP8_POW2 = 0, MOE_FP8_RECIP = 1, MOE_FP8_TRUEDIV = 2 };

typedef struct moe_fp8_divisor {
    float scale, inv; /* inv = RN(1 / scale) */
    int how;
} moe_fp8_divisor;

/* With ue8m0 the scale is 2^e (e in [-127, 119]: the largest finite amax / 448 is below
 * 2^120) or +Inf: inv is then exactly 2^-e (or 0), and v * 2^-e is the same real number
 * as v / 2^e rounded once by the same rule: the product is the quotient bit for bit (for
 * an Inf scale v * 0 and v / Inf are both a signed zero, or NaN for an infinite v).
 * Otherwise moe_e4m3_code_div (fp8_code.h) for scales in its range, and a true division
 * for the rest (an Inf scale, or eps or amax beyond 2^+-80). */
__device__ __forceinline__ moe_fp8_divisor moe_fp8_make_divisor(float scale, int ue8m0) {
    moe_fp8_divisor d;
    d.scale = scale;
    d.inv = __frcp_rn(scale);
    d.how = ue8m0 ? MOE_FP8_POW2
                  : scale >= MOE_FP8_DIV_MIN && scale <= MOE_FP8_DIV_MAX ? MOE_FP8_RECIP
                                                                           : MOE_FP8_TRUEDIV;
    return d;
}

/* A float whose e4m3 code is that of the CPU's correctly rounded v / scale; the code
 * itself comes from the hardware (moe_e4m3x2), two values an instruction. */
template <int HOW>
__device__ __forceinline__ float moe_fp8_quot_as(float v, const moe_fp8_divisor &d) {
    if (HOW == MOE_FP8_POW2) return __fmul_rn(v, d.inv);
    if (HOW == MOE_FP8_RECIP) return moe_e4m3_quot_div(v, d.scale, d.inv);
    return __fdiv_rn(v, d.scale);
}

/* The codes of a / scale and b / scale, a's in the low byte (loops that hold a few values
 * of a group: the warp-group loop, GEMM 1's fused epilogue). */
__device__ __forceinline__ uint32_t moe_fp8_code2(float a, float b, const moe_fp8_divisor &d) {
    if (d.how == MOE_FP8_POW2)
        return moe_e4m3x2(moe_fp8_quot_as<MOE_FP8_POW2>(a, d),
                          moe_fp8_quot_as<MOE_FP8_POW2>(b, d));
    if (d.how == MOE_FP8_RECIP)
        return moe_e4m3x2(moe_fp8_quot_as<MOE_FP8_RECIP>(a, d),
                          moe_fp8_quot_as<MOE_FP8_RECIP>(b, d));
    return moe_e4m3x2(moe_fp8_quot_as<MOE_FP8_TRUEDIV>(a, d),
                      moe_fp8_quot_as<MOE_FP8_TRUEDIV>(b, d));
}

/* The code of v / scale for one value. */
__device__ __forceinline__ uint32_t moe_fp8_code(float v, const moe_fp8_divisor &d) {
    return moe_fp8_code2(v, 0.0f, d) & 0xffu;
}

/* A thread's 16 codes, packed little-endian, with the divisor's way fixed. */
template <int HOW>
__device__ __forceinline__ void moe_fp8_codes16(const float (&v)[MOE_FP8_VEC],
                                                const moe_fp8_divisor &d,
                                                uint32_t (&codes)[MOE_FP8_VEC / 4]) {
#pragma unroll
    for (int w = 0; w < MOE_FP8_VEC / 4; w++)
        codes[w] = moe_e4m3x2(moe_fp8_quot_as<HOW>(v[4 * w], d),
                              moe_fp8_quot_as<HOW>(v[4 * w + 1], d)) |
                   moe_e4m3x2(moe_fp8_quot_as<HOW>(v[4 * w + 2], d),
                              moe_fp8_quot_as<HOW>(v[4 * w + 3], d)) << 16;
}

/* The largest |v| seen so far; NaN is ignored (fmaxf returns the other operand), as the
 * CPU's `if (a > amax)` ignores it. Only non-negative values meet, so the result is the
 * same float whatever the order. */
__device__ __forceinline__ float moe_fp8_amax(float amax, float v) {
    return fmaxf(amax, fabsf(v));
}

/* One thread's MOE_FP8_VEC values of a lane group of 2^log2_lanes lanes (a power of two
 * <= 32, the lanes aligned to it): the group's scale into *scale and the thread's codes
 * packed little-endian into codes (byte i of the 16 is value i). Every lane of the warp
 * must call it together: lanes with nothing to do pass zeros. */
__device__ __forceinline__ void moe_fp8_quant_lanes(const float (&v)[MOE_FP8_VEC],
                                                    int log2_lanes, float eps, int ue8m0,
                                                    uint32_t (&codes)[MOE_FP8_VEC / 4],
                                                    float *scale) {
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < MOE_FP8_VEC; i++) amax = moe_fp8_amax(amax, v[i]);
    for (int o = 1; o < (1 << log2_lanes); o <<= 1)
        amax = fmaxf(amax, __shfl_xor_sync(MOE_FULL_MASK, amax, o));
    float s = moe_fp8_group_scale(amax, eps, ue8m0);
    moe_fp8_divisor d = moe_fp8_make_divisor(s, ue8m0);
    /* one test per group, not per value: each way is straight-line code */
    if (d.how == MOE_FP8_POW2)
        moe_fp8_codes16<MOE_FP8_POW2>(v, d, codes);
    else if (d.how == MOE_FP8_RECIP)
        moe_fp8_codes16<MOE_FP8_RECIP>(v, d, codes);
    else
        moe_fp8_codes16<MOE_FP8_TRUEDIV>(v, d, codes);
    *scale = s;
}

/* ------------------------------------------------------------------ loads and stores */

/* f16 -> f32 by the hardware: a widening conversion, exact for every f16 (subnormals
 * included; no .ftz), so it equals moe_f16_to_f32 for every number. A NaN stays a NaN
 * (its payload may differ, which nothing here looks at). */
__device__ __forceinline__ float moe_fp8_f16_to_f32(uint32_t h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"((unsigned short)h));
    return f;
}

/* Element i of 32-bit word w holding a pair of 16-bit values (i = 0: low half). */
template <moe_dtype D>
__device__ __forceinline__ float moe_fp8_unpack16(uint32_t w, int i) {
    if (D == MOE_DTYPE_BF16) return __uint_as_float(i ? (w & 0xffff0000u) : (w << 16));
    return moe_fp8_f16_to_f32(i ? (w >> 16) : (w & 0xffffu));
}

/* One element of a float dtype as f32. */
template <moe_dtype D>
__device__ __forceinline__ float moe_fp8_load1(const typename moe_elem<D>::T *p) {
    if (D == MOE_DTYPE_F32) return moe_elem<D>::load(*p);
    return moe_fp8_unpack16<D>((uint32_t)*p, 0);
}

/* N consecutive elements (N * sizeof(T) a multiple of 16) from a 16-byte aligned p, in
 * 16-byte loads through the read-only path. */
template <moe_dtype D, int N>
__device__ __forceinline__ void moe_fp8_load_vec(const typename moe_elem<D>::T *p,
                                                 float (&v)[N]) {
    const uint4 *p4 = reinterpret_cast<const uint4 *>(p);
    if (D == MOE_DTYPE_F32) {
#pragma unroll
        for (int j = 0; j < N / 4; j++) {
            uint4 w = __ldg(p4 + j);
            v[4 * j] = __uint_as_float(w.x);
            v[4 * j + 1] = __uint_as_float(w.y);
            v[4 * j + 2] = __uint_as_float(w.z);
            v[4 * j + 3] = __uint_as_float(w.w);
        }
    } else {
#pragma unroll
        for (int j = 0; j < N / 8; j++) {
            uint4 w = __ldg(p4 + j);
            uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int k = 0; k < 4; k++) {
                v[8 * j + 2 * k] = moe_fp8_unpack16<D>(ws[k], 0);
                v[8 * j + 2 * k + 1] = moe_fp8_unpack16<D>(ws[k], 1);
            }
        }
    }
}

/* N consecutive elements from any element-aligned p, one load each (the path for rows
 * that 16-byte loads cannot reach; L1 merges the lanes' neighbouring accesses). */
template <moe_dtype D, int N>
__device__ __forceinline__ void moe_fp8_load_scalar(const typename moe_elem<D>::T *p,
                                                    float (&v)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) v[i] = moe_fp8_load1<D>(p + i);
}

/* Stores a thread's 16 codes at q: one 16-byte store if vec (q 16-byte aligned), else
 * byte by byte. */
__device__ __forceinline__ void moe_fp8_store_codes(uint8_t *q,
                                                    const uint32_t (&codes)[MOE_FP8_VEC / 4],
                                                    bool vec) {
    if (vec) {
        *reinterpret_cast<uint4 *>(q) = make_uint4(codes[0], codes[1], codes[2], codes[3]);
    } else {
#pragma unroll
        for (int i = 0; i < MOE_FP8_VEC; i++) q[i] = (uint8_t)(codes[i / 4] >> (8 * (i % 4)));
    }
}

/* 16-byte stores of N consecutive values (N * sizeof(T) a multiple of 16) at a 16-byte
 * aligned p, each rounded by moe_elem<D>::store (the CPU's conversions). */
template <moe_dtype D, int N>
__device__ __forceinline__ void moe_fp8_store_vec(typename moe_elem<D>::T *p,
                                                  const float (&v)[N]) {
    uint4 *p4 = reinterpret_cast<uint4 *>(p);
    if (D == MOE_DTYPE_F32) {
#pragma unroll
        for (int j = 0; j < N / 4; j++)
            p4[j] = make_uint4(__float_as_uint(v[4 * j]), __float_as_uint(v[4 * j + 1]),
                               __float_as_uint(v[4 * j + 2]), __float_as_uint(v[4 * j + 3]));
    } else {
        uint32_t w[N / 2];
#pragma unroll
        for (int i = 0; i < N / 2; i++)
            w[i] = (uint32_t)moe_elem<D>::store(v[2 * i]) |
                   (uint32_t)moe_elem<D>::store(v[2 * i + 1]) << 16;
#pragma unroll
        for (int j = 0; j < N / 8; j++)
            p4[j] = make_uint4(w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]);
    }
}

/* ------------------------------------------------------------------ the loops */

/* Where an op's codes and scales go and how its groups are cut. */
typedef struct moe_fp8_out {
    uint8_t *q;
    int64_t q_stride;     /* elements (bytes) between rows of q */
    float *scales;
    int64_t s_row, s_group; /* the scale of (row r, group j) is scales[r*s_row + j*s_group] */
    int64_t rows;         /* M */
    int64_t cols;         /* K (or I) */
    int32_t group;        /* g */
    int32_t log2_lanes;   /* lane groups: g = 16 << log2_lanes */
    float eps;
    int32_t ue8m0;
    int32_t vec_store;    /* q and its row stride allow 16-byte stores */
} moe_fp8_out;

/* Lane groups over M rows of K / 16 chunks, grid-stride. A Source gives:
 *   typedef ... Row;                         a handle on one input row
 *   Row row(int64_t r) const;                r < 0: a row that is never read
 *   void load(Row h, int64_t c, float (&v)[16]) const;   values 16c..16c+15 in f32
 * Each thread walks its chunks in steps of the whole grid; the next chunk's row handle
 * is fetched before the current chunk's values are used, so a gather's perm load
 * overlaps the x load before it. The loop runs while any lane of the warp has work
 * (the shuffles need the whole warp); K / 16 is a multiple of the lanes of a group, so
 * a group's lanes are all busy or all idle. */
template <class Source>
__device__ __forceinline__ void moe_fp8_lanes_loop(const Source &src, const moe_fp8_out &o) {
    const int64_t chunks = o.cols / MOE_FP8_VEC;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t step_r = step / chunks, step_c = step % chunks;
    const int64_t lane_mask = ((int64_t)1 << o.log2_lanes) - 1;
    int64_t r = u / chunks, c = u % chunks;
    typename Source::Row h = src.row(r < o.rows ? r : -1);
    while (__any_sync(MOE_FULL_MASK, r < o.rows)) {
        int64_t nr = r + step_r, nc = c + step_c;
        if (nc >= chunks) nc -= chunks, nr++;
        typename Source::Row next = src.row(nr < o.rows ? nr : -1);
        float v[MOE_FP8_VEC];
        src.load(h, c, v);
        uint32_t codes[MOE_FP8_VEC / 4];
        float scale;
        moe_fp8_quant_lanes(v, o.log2_lanes, o.eps, o.ue8m0, codes, &scale);
        if (r < o.rows) {
            moe_fp8_store_codes(o.q + r * o.q_stride + c * MOE_FP8_VEC, codes, o.vec_store);
            if ((c & lane_mask) == 0)
                o.scales[r * o.s_row + (c >> o.log2_lanes) * o.s_group] = scale;
        }
        r = nr, c = nc, h = next;
    }
}

/* Warp groups: one warp per (row, group), any g, grid-stride. A Source gives Row and
 * row() as above and
 *   float value(Row h, int64_t col) const;   element col of the row in f32
 * An amax pass and a quantise pass: value() must give the same float both times (it is
 * the same instruction sequence on the same input). */
template <class Source>
__device__ __forceinline__ void moe_fp8_warps_loop(const Source &src, const moe_fp8_out &o) {
    const int lane = threadIdx.x & 31;
    const int64_t groups = o.cols / o.group;
    const int64_t warps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    for (int64_t w = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; w < o.rows * groups;
         w += warps) {
        int64_t r = w / groups, j = w % groups, c0 = j * o.group;
        typename Source::Row h = src.row(r);
        float amax = 0.0f;
        for (int64_t c = lane; c < o.group; c += 32) amax = moe_fp8_amax(amax, src.value(h, c0 + c));
        amax = moe_warp_max(amax);
        float scale = moe_fp8_group_scale(amax, o.eps, o.ue8m0);
        moe_fp8_divisor d = moe_fp8_make_divisor(scale, o.ue8m0);
        uint8_t *qg = o.q + r * o.q_stride + c0;
        for (int64_t c = lane; c < o.group; c += 32)
            qg[c] = (uint8_t)moe_fp8_code(src.value(h, c0 + c), d);
        if (lane == 0) o.scales[r * o.s_row + j * o.s_group] = scale;
    }
}

/* ------------------------------------------------------------------ host side */

/* log2(g / 16) when a group of g values is a lane group (g / 16 a power of two <= 32),
 * else -1 (warp groups). */
static inline int moe_fp8_log2_lanes(int64_t group) {
    if (group % MOE_FP8_VEC != 0) return -1;
    int64_t lanes = group / MOE_FP8_VEC;
    for (int l = 0; l <= 5; l++)
        if (lanes == ((int64_t)1 << l)) return l;
    return -1;
}

static inline int moe_fp8_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Blocks of `threads` for a grid-stride loop over `items` thread-sized items: no more
 * than can be resident at once, so every block of the grid runs in one wave and none
 * waits for another to finish. */
template <typename Kernel>
static unsigned moe_fp8_resident_grid(const moe_context *ctx, Kernel kernel, int threads,
                                      int64_t items) {
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0) !=
            cudaSuccess ||
        per_sm < 1) {
        (void)cudaGetLastError(); /* only a sizing hint: fall back to one block per SM */
        per_sm = 1;
    }
    int sms = ((const moe_cuda_state *)ctx->state)->sm_count;
    return moe_grid(items, threads, (int64_t)(sms > 0 ? sms : 1) * per_sm);
}

/* Where the scale of (row r, group j) lives: scales + r * row + j * group. */
typedef struct moe_fp8_scale_strides {
    int64_t row, group;
} moe_fp8_scale_strides;

static inline moe_fp8_scale_strides moe_fp8_scale_layout(const moe_tensor *scales,
                                                          moe_scale_layout layout) {
    moe_fp8_scale_strides s;
    if (layout == MOE_SCALES_ROW_MAJOR) {
        s.row = scales->stride[0];
        s.group = 1;
    } else {
        /* [K/g, M4]: the padding columns M..M4-1 are not written (src/api/quant.c) */
        s.row = 1;
        s.group = scales->stride[0];
    }
    return s;
}

/* The codes, scales and group cut of an op writing q and scales per params. */
static inline moe_fp8_out moe_fp8_out_of(const moe_fp8_group_params *params, moe_tensor *q,
                                         moe_tensor *scales) {
    moe_fp8_out o;
    moe_fp8_scale_strides ss = moe_fp8_scale_layout(scales, params->layout);
    o.q = (uint8_t *)q->data;
    o.q_stride = q->stride[0];
    o.scales = (float *)scales->data;
    o.s_row = ss.row;
    o.s_group = ss.group;
    o.rows = q->shape[0];
    o.cols = q->shape[1];
    o.group = params->group;
    o.log2_lanes = moe_fp8_log2_lanes(params->group);
    o.eps = params->eps;
    o.ue8m0 = params->ue8m0 != 0;
    o.vec_store = moe_fp8_aligned16(q->data) && q->stride[0] % 16 == 0;
    return o;
}

/* ------------------------------------------------------------------ kernels */

template <class Source>
__global__ void __launch_bounds__(MOE_FP8_THREADS)
    moe_fp8_lanes_kernel(const Source src, const moe_fp8_out o) {
    moe_pdl_release(); /* the next kernel may start (common.cuh) */
    moe_pdl_wait();
    moe_fp8_lanes_loop(src, o);
}

template <class Source>
__global__ void __launch_bounds__(MOE_FP8_THREADS)
    moe_fp8_warps_kernel(const Source src, const moe_fp8_out o) {
    moe_pdl_release();
    moe_pdl_wait();
    moe_fp8_warps_loop(src, o);
}

/* Runs the lane-group kernel when g allows it (o.log2_lanes >= 0) and the warp-group one
 * otherwise; src must suit the kernel (its loads may assume what the caller checked).
 * Nothing is launched for an empty q. */
template <class Source>
static moe_status moe_fp8_launch(const moe_context *ctx, const Source &src,
                                 const moe_fp8_out &o, void *stream, const char *op) {
    if (o.rows == 0 || o.cols == 0) return MOE_OK;
    cudaStream_t st = moe_cuda_stream(stream);
    moe_pdl_launch l;
    if (o.log2_lanes >= 0) {
        unsigned grid = moe_fp8_resident_grid(ctx, moe_fp8_lanes_kernel<Source>, MOE_FP8_THREADS,
                                              o.rows * (o.cols / MOE_FP8_VEC));
        moe_pdl_config(&l, grid, MOE_FP8_THREADS, 0, st, o.rows);
        cudaLaunchKernelEx(&l.cfg, moe_fp8_lanes_kernel<Source>, src, o);
    } else {
        unsigned grid = moe_fp8_resident_grid(ctx, moe_fp8_warps_kernel<Source>, MOE_FP8_THREADS,
                                              o.rows * (o.cols / o.group) * 32);
        moe_pdl_config(&l, grid, MOE_FP8_THREADS, 0, st, o.rows);
        cudaLaunchKernelEx(&l.cfg, moe_fp8_warps_kernel<Source>, src, o);
    }
    return moe_cuda_launch_status(op);
}

#endif /* MOE_CUDA_FP8_GROUP_CUH */
