/* MXFP8 and NVFP4 (SPEC 3) on the GPU, byte for byte as src/cpu/quant_mxfp8.c and
 * src/cpu/quant_nvfp4.c: offsets read as their running maximum clamped to [0, M], rows
 * no expert covers neither read nor written, every byte of each expert's padded scale
 * block written (padding 0), nothing after the last block.
 *
 * Experts. Each CTA turns the offsets into a table in shared memory: R[e], the first row
 * of expert e, and B[e], the first scale row of its block, with two CTA-wide scans (a
 * running max, then a sum of roundup(rows, 128)). Experts come in chunks of QB_TABLE, so
 * any E runs the same code (one chunk up to 1023 experts). A thread finds the expert of
 * a row by binary search in the table and keeps it while its rows stay in that expert.
 *
 * Work. Quantisation walks the padded scale rows B[0]..B[E], not the rows of x, so the
 * padding rows of every block are work like the real ones and each scale byte has
 * exactly one writer: an item is (scale row, group of 4 scale columns), one 4-byte line
 * of a swizzled tile, handled by GT threads that each own 32 bytes of the row of x (two
 * 16-byte loads in flight per thread). Padding rows and columns load nothing and come
 * out as the 0 the layout wants; the 4 scale bytes meet in the group's first lane and go
 * out as one 32-bit store. Dequantisation walks the covered rows R[0]..R[E], 32 output
 * bytes per thread. Each warp takes one contiguous range of items, so a thread's next
 * item is further along the same row and the row's offsets are worked out once per row.
 *
 * Exactness. A hardware conversion is used where it agrees with src/common/formats.h:
 * f32 -> e4m3 (cvt.rn.satfinite: RNE, saturating, Inf to 448) and f32 -> bf16 / f16
 * (RNE) on every input but NaN, which the hardware makes canonical while the CPU keeps
 * its sign; blocks and chunks with a NaN take the shared software conversions. The MX
 * exponent comes from amax's bits; e2m1 from one fused multiply-add; the NVFP4 divisions
 * from a reciprocal and one Markstein correction where that is provably the correctly
 * rounded quotient, IEEE division elsewhere. The bit tricks were checked on the host
 * against formats.h (e2m1 and the exponent on all 2^32 floats, the divisions on every
 * significand pair they can meet). */
#include <stdint.h>

#include "../common/swizzle.h"
#include "common.cuh"

#define QB_THREADS 256
#define QB_WARPS (QB_THREADS / 32)
/* CTAs per SM the launch bounds promise (<= 64 registers), so a grid of this many per SM
 * is resident at once and every warp's share of the items runs in one wave. */
#define QB_MIN_BLOCKS 4
#define QB_PER_THREAD 4 /* table entries per thread in the scans */
/* experts per table chunk: its QB_TABLE + 1 entries (the end of the last expert too)
 * are exactly the scans' QB_THREADS * QB_PER_THREAD slots */
#define QB_TABLE (QB_THREADS * QB_PER_THREAD - 1)
#define QB_FULL 0xffffffffu

enum { QB_MX = 0, QB_NV = 1 };

/* The sizes of one (dtype, format) pair. A thread owns 32 bytes of a row of the float
 * tensor (ELEMS elements, two 16-byte accesses, so two loads are in flight per thread
 * and the per-item index work is shared by that many elements); TPB threads make one
 * scale block; GT threads one tile column group of 4 scales. */
template <moe_dtype D, int FMT>
struct qb_shape {
    static constexpr int ESIZE = (int)sizeof(typename moe_elem<D>::T);
    static constexpr int ELEMS = 32 / ESIZE;
    static constexpr int BLK = FMT == QB_MX ? 32 : 16;
    static constexpr int TPB = BLK / ELEMS;
    static constexpr int GT = 4 * TPB;
    static constexpr int QBYTES = FMT == QB_MX ? ELEMS : ELEMS / 2; /* q bytes per thread */
};

typedef struct qb_args {
    const void *src;        /* quantise: x; dequantise: q */
    void *dst;              /* quantise: q; dequantise: out */
    uint8_t *scales;        /* written by quantise, read by dequantise */
    const int32_t *offsets; /* [E+1], or NULL: one expert over all rows */
    const float *gs;        /* NVFP4 global scales [E]; NULL for MXFP8 */
    int64_t src_stride;     /* row strides in elements (q: bytes) */
    int64_t dst_stride;
    int64_t rows;        /* M */
    int64_t blocks;      /* scale blocks per row: K/32 or K/16 */
    int64_t padded_cols; /* moe_swizzle_cols(blocks) */
    int64_t units;       /* items per row: tile column groups, or 32-byte output spans */
    int64_t experts;     /* E */
    int32_t rule;        /* MXFP8 exponent rule */
    int32_t scale_words; /* scales 4-byte aligned: one 32-bit store per tile line */
} qb_args;

/* One chunk of experts: R (row) and B (blk) for its experts and the end of the last. */
typedef struct qb_table {
    int64_t row[QB_TABLE + 1];
    int64_t blk[QB_TABLE + 1];
    int64_t warp[QB_WARPS];
} qb_table;

/* The expert a thread last found (index in the table) and the key range it covers:
 * scale rows B[e]..B[e+1]-1 for quantise, rows R[e]..R[e+1]-1 for dequantise. */
typedef struct qb_expert {
    int64_t lo, hi;
    int e;
    float gs, rgs; /* NVFP4: its global scale and 1 / that, rounded */
} qb_expert;

/* ---------------------------------------------------------------- expert table */

__device__ __forceinline__ int64_t qb_offset(const qb_args &a, int64_t i) {
    return a.offsets ? (int64_t)__ldg(a.offsets + i) : (i == 0 ? 0 : a.rows);
}

/* Inclusive scan (max or sum) of the QB_PER_THREAD values of each thread, in thread
 * order, starting from carry. Every thread of the CTA calls it. */
template <bool MAX>
__device__ __forceinline__ void qb_scan(int64_t *v, int64_t carry, int64_t *warp_total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int k = 1; k < QB_PER_THREAD; k++) v[k] = MAX ? max(v[k - 1], v[k]) : v[k - 1] + v[k];
    int64_t t = v[QB_PER_THREAD - 1];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        int64_t y = __shfl_up_sync(QB_FULL, t, o);
        if (lane >= o) t = MAX ? max(y, t) : y + t;
    }
    if (lane == 31) warp_total[warp] = t;
    __syncthreads();
    int64_t pre = carry;
    for (int w = 0; w < warp; w++) pre = MAX ? max(pre, warp_total[w]) : pre + warp_total[w];
    int64_t below = __shfl_up_sync(QB_FULL, t, 1);
    if (lane > 0) pre = MAX ? max(pre, below) : pre + below;
#pragma unroll
    for (int k = 0; k < QB_PER_THREAD; k++) v[k] = MAX ? max(pre, v[k]) : pre + v[k];
    __syncthreads(); /* warp_total is free again */
}

/* Fills the table for experts e0..e0+n-1, reading offsets[e0..e0+n] only. carry_row is
 * R of the previous chunk's end (0 at first), carry_blk its B. R[e] =
 * min(max(carry, offsets[e0..e]), M) is what moe_next_expert_block's chain of clamps
 * works out to. */
__device__ void qb_build(qb_table &t, const qb_args &a, int64_t e0, int n, int64_t carry_row,
                         int64_t carry_blk) {
    int64_t v[QB_PER_THREAD];
#pragma unroll
    for (int k = 0; k < QB_PER_THREAD; k++) {
        int j = (int)threadIdx.x * QB_PER_THREAD + k;
        v[k] = j <= n ? qb_offset(a, e0 + j) : INT64_MIN;
    }
    qb_scan<true>(v, carry_row, t.warp);
#pragma unroll
    for (int k = 0; k < QB_PER_THREAD; k++) {
        int j = (int)threadIdx.x * QB_PER_THREAD + k;
        if (j <= n) t.row[j] = min(v[k], a.rows);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < QB_PER_THREAD; k++) {
        int j = (int)threadIdx.x * QB_PER_THREAD + k;
        v[k] = j < n ? moe_swizzle_rows(t.row[j + 1] - t.row[j]) : 0;
    }
    qb_scan<false>(v, carry_blk, t.warp);
#pragma unroll
    for (int k = 0; k < QB_PER_THREAD; k++) {
        int j = (int)threadIdx.x * QB_PER_THREAD + k;
        if (j < n) t.blk[j + 1] = v[k];
    }
    if (threadIdx.x == 0) t.blk[0] = carry_blk;
    __syncthreads();
}

/* Builds the table of the chunk starting at e0 and returns its size; the previous
 * chunk (full, when e0 > 0) left its end in the table. */
__device__ __forceinline__ int qb_chunk(qb_table &t, const qb_args &a, int64_t e0) {
    int64_t carry_row = 0, carry_blk = 0;
    if (e0 > 0) {
        carry_row = t.row[QB_TABLE];
        carry_blk = t.blk[QB_TABLE];
        __syncthreads(); /* every thread has its carry and is done with the old table */
    }
    const int n = (int)min((int64_t)QB_TABLE, a.experts - e0);
    qb_build(t, a, e0, n, carry_row, carry_blk);
    return n;
}

/* The expert of key (a scale row, or a row when BY_ROW) among the table's n experts:
 * the last e with start[e] <= key, which holds key because key < start[n] (experts
 * before it with the same start are empty). */
template <bool BY_ROW>
__device__ __forceinline__ void qb_find(const qb_table &t, int n, int64_t e0, const qb_args &a,
                                        int64_t key, qb_expert &x) {
    if (key >= x.lo && key < x.hi) return;
    const int64_t *start = BY_ROW ? t.row : t.blk;
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (start[mid] <= key)
            lo = mid;
        else
            hi = mid - 1;
    }
    x.lo = start[lo];
    x.hi = start[lo + 1];
    x.e = lo;
    x.gs = a.gs ? __ldg(a.gs + e0 + lo) : 1.0f;
    x.rgs = 1.0f / x.gs;
}

/* ---------------------------------------------------------------- element access */

/* The ELEMS elements of the float tensor at element offset off, as 32 raw bytes. */
template <moe_dtype D, bool VECTOR>
__device__ __forceinline__ void qb_load_dense(const void *base, int64_t off, uint32_t *w) {
    typedef typename moe_elem<D>::T T;
    constexpr int ELEMS = 32 / (int)sizeof(T);
    const T *p = (const T *)base + off;
    if (VECTOR) {
        const uint4 u0 = __ldg((const uint4 *)p), u1 = __ldg((const uint4 *)p + 1);
        w[0] = u0.x, w[1] = u0.y, w[2] = u0.z, w[3] = u0.w;
        w[4] = u1.x, w[5] = u1.y, w[6] = u1.z, w[7] = u1.w;
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++) w[i] = 0;
#pragma unroll
        for (int i = 0; i < ELEMS; i++) {
            if (sizeof(T) == 4)
                w[i] = __float_as_uint(__ldg((const float *)p + i));
            else
                w[i / 2] |= (uint32_t)__ldg((const unsigned short *)p + i) << (16 * (i % 2));
        }
    }
}

template <moe_dtype D, bool VECTOR>
__device__ __forceinline__ void qb_store_dense(void *base, int64_t off, const uint32_t *w) {
    typedef typename moe_elem<D>::T T;
    constexpr int ELEMS = 32 / (int)sizeof(T);
    T *p = (T *)base + off;
    if (VECTOR) {
        ((uint4 *)p)[0] = make_uint4(w[0], w[1], w[2], w[3]);
        ((uint4 *)p)[1] = make_uint4(w[4], w[5], w[6], w[7]);
    } else {
#pragma unroll
        for (int i = 0; i < ELEMS; i++) {
            if (sizeof(T) == 4)
                ((uint32_t *)p)[i] = w[i];
            else
                ((uint16_t *)p)[i] = (uint16_t)(w[i / 2] >> (16 * (i % 2)));
        }
    }
}

/* N (4, 8 or 16) bytes of q as little-endian words. */
template <int N, bool VECTOR>
__device__ __forceinline__ void qb_load_bytes(const uint8_t *p, uint32_t *w) {
    if (VECTOR && N == 16) {
        const uint4 u = __ldg((const uint4 *)p);
        w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
    } else if (VECTOR && N == 8) {
        const uint2 u = __ldg((const uint2 *)p);
        w[0] = u.x, w[1] = u.y;
    } else if (VECTOR && N == 4) {
        w[0] = __ldg((const unsigned int *)p);
    } else {
#pragma unroll
        for (int i = 0; i < N / 4; i++) w[i] = 0;
#pragma unroll
        for (int i = 0; i < N; i++) w[i / 4] |= (uint32_t)__ldg(p + i) << (8 * (i % 4));
    }
}

template <int N, bool VECTOR>
__device__ __forceinline__ void qb_store_bytes(uint8_t *p, const uint32_t *w) {
    if (VECTOR && N == 16) {
        *(uint4 *)p = make_uint4(w[0], w[1], w[2], w[3]);
    } else if (VECTOR && N == 8) {
        *(uint2 *)p = make_uint2(w[0], w[1]);
    } else if (VECTOR && N == 4) {
        *(uint32_t *)p = w[0];
    } else {
#pragma unroll
        for (int i = 0; i < N; i++) p[i] = (uint8_t)(w[i / 4] >> (8 * (i % 4)));
    }
}

/* The elements as f32, exactly (bf16 and f16 widen exactly; the hardware f16
 * conversion only loses a NaN's sign, which qb_sign keeps). */
template <moe_dtype D>
__device__ __forceinline__ void qb_unpack(const uint32_t *w, float *f) {
    if (D == MOE_DTYPE_F32) {
#pragma unroll
        for (int i = 0; i < 8; i++) f[i] = __uint_as_float(w[i]);
    } else if (D == MOE_DTYPE_BF16) {
#pragma unroll
        for (int i = 0; i < 8; i++) {
            f[2 * i] = __uint_as_float(w[i] << 16);
            f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 8; i++)
            asm("{.reg .b16 l, h;\n\tmov.b32 {l, h}, %2;\n\tcvt.f32.f16 %0, l;\n\t"
                "cvt.f32.f16 %1, h;}"
                : "=f"(f[2 * i]), "=f"(f[2 * i + 1])
                : "r"(w[i]));
    }
}

/* Sign bit of element i of the raw bytes. */
template <moe_dtype D>
__device__ __forceinline__ uint32_t qb_sign(const uint32_t *w, int i) {
    if (D == MOE_DTYPE_F32) return w[i] >> 31;
    return (w[i / 2] >> (16 * (i % 2) + 15)) & 1u;
}

/* Two f32 as a bf16 / f16 pair (lo in the low half), RNE, as the software conversions
 * for every input but NaN. */
__device__ __forceinline__ uint32_t qb_bf16x2(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ uint32_t qb_f16x2(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* max that returns NaN if either is: whether a block holds a NaN in one instruction
 * per element. */
__device__ __forceinline__ float qb_max_nan(float a, float b) {
    float r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
    return r;
}

/* The MX exponent of a block from amax's bits (amax >= 0, not NaN), as mx_exponent in
 * src/cpu/quant_mxfp8.c: zero and subnormal amax give -127, Inf 127, otherwise
 * floor(log2(amax)) - 8, plus one under CEIL when the significand exceeds 1.75. */
__device__ __forceinline__ int32_t qb_mx_exponent(float amax, int32_t rule) {
    const uint32_t b = __float_as_uint(amax), ef = b >> 23;
    if (ef == 0) return -127;
    if (ef == 255) return 127;
    int32_t e = (int32_t)ef - 135 + (rule == MOE_MX_RULE_CEIL && (b & 0x7fffffu) > 0x600000u);
    return e < -127 ? -127 : e;
}

/* e2m1 code of q, as moe_f32_to_e2m1 on every f32 (NaN -> 7 without sign). q is
 * clamped to [-6, 6] (NaN becomes 6: min and max return the number). e2m1 steps are
 * 2^(E-1) in binade E of |v| (E = 0 for |v| < 2, 1 in [2, 4), 2 in [4, 6]); one fused
 * fma(|v|, 2^-22, 2^E) rounds |v| to a multiple of the step, ties to even, leaving
 * k = round(|v| / 2^(E-1)) in the low bits of the sum, and the code is k + 2E. */
__device__ __forceinline__ uint32_t qb_e2m1(float q) {
    const float v = fmaxf(fminf(q, 6.0f), -6.0f);
    const float a = fabsf(v);
    const uint32_t e = __float_as_uint(fmaxf(a, 1.0f)) & 0x7f800000u;
    const float t = __fmaf_rn(a, 0x1p-22f, __uint_as_float(e));
    const uint32_t code = __float_as_uint(t) - e + ((e >> 22) - 254u);
    return code | ((__float_as_uint(v) >> 28) & 8u);
}

/* The value of an e4m3 code other than NaN, as moe_e4m3_to_f32 without its branches:
 * the code's bits moved into an f32 and scaled by 2^120 (subnormal codes land on f32
 * subnormals, which the scaling makes exact). */
__device__ __forceinline__ float qb_e4m3_value(uint32_t c) {
    return __uint_as_float(((c & 0x7fu) << 20) | ((c & 0x80u) << 24)) * 0x1p120f;
}

/* The value of an e2m1 nibble, as moe_e2m1_to_f32 without its table: the nibble's bits
 * moved into an f32 and scaled by 2^126 (code 1 lands on the subnormal 2^-127). */
__device__ __forceinline__ float qb_e2m1_value(uint32_t c) {
    return __uint_as_float(((c & 7u) << 22) | ((c & 8u) << 28)) * 0x1p126f;
}

/* y / s for s > 0 an e4m3 value and r = 1 / s rounded, as far as its e2m1 code goes.
 * Where |y * r| lies in [2^-20, 16] every intermediate is normal and one Markstein
 * correction gives the correctly rounded quotient (checked against IEEE division for
 * every significand of y over that range and every e4m3 significand, so for every
 * exponent by scaling); outside it the code is 0 or 7 with y's sign (or 7 for NaN),
 * which y * r already gives. Replaces a division per element. */
__device__ __forceinline__ float qb_div_scale(float y, float s, float r) {
    const float q0 = __fmul_rn(y, r);
    const float q1 = __fmaf_rn(__fmaf_rn(-q0, s, y), r, q0);
    const float a = fabsf(q0);
    return a >= 0x1p-20f && a <= 16.0f ? q1 : q0;
}

/* p / g, correctly rounded, for p an e2m1 value times an e4m3 value (0, or |p| in
 * [2^-10, 2688]) and g in [2^-60, 2^60] with r = 1 / g rounded: all intermediates are
 * normal, so the Markstein correction is exact (checked for every significand of g
 * and of p); a zero quotient comes from p * r, as the correction would make -0 +0. */
__device__ __forceinline__ float qb_div_global(float p, float g, float r) {
    const float q0 = __fmul_rn(p, r);
    const float q1 = __fmaf_rn(__fmaf_rn(-q0, g, p), r, q0);
    return q0 == 0.0f ? q0 : q1;
}

/* A warp's share of the chunk's items (key-major: key = scale row or row, then unit):
 * one contiguous range, walked IPW items per step (one per GT lanes), so the items of a
 * thread follow each other along a row and what depends on the row is worked out once
 * per row, not per item. */
typedef struct qb_range {
    int64_t end;        /* one past the warp's last item */
    int64_t item;       /* the thread's item in this step */
    int64_t key, unit;  /* that item as (key, unit) */
} qb_range;

template <int IPW>
__device__ __forceinline__ bool qb_range_start(qb_range &w, int64_t key0, int64_t total,
                                               int64_t units, int slot) {
    const int64_t warps = (int64_t)gridDim.x * QB_WARPS;
    const int64_t gw = (int64_t)blockIdx.x * QB_WARPS + (threadIdx.x >> 5);
    const int64_t per_warp = ((total + warps - 1) / warps + IPW - 1) / IPW * IPW;
    const int64_t begin = gw * per_warp;
    w.end = min(begin + per_warp, total);
    w.item = begin + slot;
    w.key = key0 + w.item / units;
    w.unit = w.item % units;
    return begin < w.end; /* the same in every lane of the warp */
}

template <int IPW>
__device__ __forceinline__ void qb_range_next(qb_range &w, int64_t units) {
    w.item += IPW;
    w.unit += IPW;
    if (w.unit >= units) {
        if (units >= IPW) {
            w.unit -= units;
            w.key++;
        } else { /* rows of fewer units than a step: small, so 32-bit */
            const int32_t u = (int32_t)w.unit, n = (int32_t)units;
            w.key += u / n;
            w.unit = u % n;
        }
    }
}

/* ---------------------------------------------------------------- quantise */

/* What a thread's items in one scale row share. */
typedef struct qb_qrow {
    int64_t key;   /* the scale row, -1 before the first */
    int64_t x_off; /* element offset of the row in x */
    int64_t q_off; /* byte offset of the row in q */
    int64_t s_off; /* byte offset of the row's scales of column 0 */
    int has;       /* a covered row (not padding) */
} qb_qrow;

__device__ __forceinline__ void qb_quant_row(const qb_args &a, const qb_table &t, int n,
                                             int64_t e0, int64_t p, qb_expert &ex, qb_qrow &row) {
    qb_find<false>(t, n, e0, a, p, ex);
    const int64_t m = p - ex.lo;
    __builtin_assume(m >= 0);
    const int64_t r = t.row[ex.e] + m;
    row.key = p;
    row.has = m < t.row[ex.e + 1] - t.row[ex.e];
    row.x_off = r * a.src_stride;
    row.q_off = r * a.dst_stride;
    row.s_off = moe_swizzle_index(ex.lo, m, 0, a.padded_cols);
}

/* The 4 scale bytes of (scale row, tile column group g), as one word. */
__device__ __forceinline__ void qb_store_scale_word(const qb_args &a, const qb_qrow &row,
                                                    int64_t g, uint32_t word) {
    /* the layout separates: scale (m, 4g) sits g whole tiles after scale (m, 0) */
    const int64_t s_off = row.s_off + moe_swizzle_index(0, 0, 4 * g, a.padded_cols);
    if (a.scale_words) {
        *(uint32_t *)(a.scales + s_off) = word;
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) a.scales[s_off + i] = (uint8_t)(word >> (8 * i));
    }
}

/* One item (scale row, tile column group g) for this thread: its 32 bytes of x (zero
 * for padding rows and columns), then the block's scale, the codes and the stores. All
 * lanes of the warp call it (the shuffles span the warp); stores follow valid / has. */
template <moe_dtype D, int FMT, bool VECTOR>
__device__ __forceinline__ void qb_quant_item(const qb_args &a, const qb_qrow &row, float gs,
                                              bool valid, int64_t g) {
    typedef qb_shape<D, FMT> S;
    const int j = threadIdx.x % S::GT;
    /* the thread's block is real: a covered row and a column < K / BLK */
    const bool has = valid && row.has && 4 * g + j / S::TPB < a.blocks;
    const int64_t col = 4 * g * S::BLK + (int64_t)j * S::ELEMS;
    uint32_t w[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (has) qb_load_dense<D, VECTOR>(a.src, row.x_off + col, w);
    float f[S::ELEMS];
    qb_unpack<D>(w, f);
    uint32_t byte, codes[4] = {0, 0, 0, 0};
    if (FMT == QB_MX) {
        /* amax skips NaN (as moe_fold_amax); nan_max tells whether there was one */
        float amax = 0.0f, nan_max = 0.0f;
#pragma unroll
        for (int i = 0; i < S::ELEMS; i++) {
            amax = fmaxf(amax, fabsf(f[i]));
            nan_max = qb_max_nan(nan_max, f[i]);
        }
#pragma unroll
        for (int o = 1; o < S::TPB; o <<= 1) {
            amax = fmaxf(amax, __shfl_xor_sync(QB_FULL, amax, o));
            nan_max = qb_max_nan(nan_max, __shfl_xor_sync(QB_FULL, nan_max, o));
        }
        const int32_t e = qb_mx_exponent(amax, a.rule);
        /* x * 2^-e and the CPU's x / 2^e are the same real number rounded once */
        const float inv = moe_exp2i(-e);
#pragma unroll
        for (int i = 0; i < S::ELEMS; i += 2)
            codes[i / 4] |= moe_e4m3x2(f[i] * inv, f[i + 1] * inv) << (8 * (i % 4));
        if (nan_max != nan_max) {
            /* the CPU divides the NaN itself, which keeps its sign */
#pragma unroll
            for (int i = 0; i < S::ELEMS; i++)
                if (f[i] != f[i]) {
                    const int sh = 8 * (i % 4);
                    codes[i / 4] = (codes[i / 4] & ~(0xffu << sh)) |
                                   ((qb_sign<D>(w, i) << 7) | 0x7fu) << sh;
                }
        }
        byte = has ? (uint32_t)(e + 127) : 0u;
    } else {
        float amax = 0.0f;
#pragma unroll
        for (int i = 0; i < S::ELEMS; i++) amax = fmaxf(amax, fabsf(f[i])); /* skips NaN */
#pragma unroll
        for (int o = 1; o < S::TPB; o <<= 1)
            amax = fmaxf(amax, __shfl_xor_sync(QB_FULL, amax, o));
        const float t = gs * amax / MOE_E2M1_MAX;
        /* the hardware conversion agrees with moe_f32_to_e4m3 but for NaN */
        const uint8_t sf = t != t ? moe_f32_to_e4m3(t) : (uint8_t)moe_e4m3x2(t, 0.0f);
        const float sf32 = moe_e4m3_to_f32(sf);
        if (has && sf32 != 0.0f) {
            const float r = 1.0f / sf32;
#pragma unroll
            for (int i = 0; i < S::ELEMS; i++) {
                const float q = qb_div_scale(__fmul_rn(f[i], gs), sf32, r);
                codes[i / 8] |= qb_e2m1(q) << (4 * (i % 8));
            }
        }
        byte = has ? (uint32_t)sf : 0u;
    }
    /* the group's 4 scale bytes into one word in its first lane */
    uint32_t word = byte << (8 * (j / S::TPB));
#pragma unroll
    for (int o = S::TPB; o < S::GT; o <<= 1) word |= __shfl_xor_sync(QB_FULL, word, o);
    if (has)
        qb_store_bytes<S::QBYTES, VECTOR>(
            (uint8_t *)a.dst + row.q_off + (FMT == QB_MX ? col : col / 2), codes);
    if (valid && j == 0) qb_store_scale_word(a, row, g, word);
}

template <moe_dtype D, int FMT, bool VECTOR>
__global__ void __launch_bounds__(QB_THREADS, QB_MIN_BLOCKS) qb_quant_kernel(qb_args a) {
    typedef qb_shape<D, FMT> S;
    constexpr int IPW = 32 / S::GT; /* items per warp step */
    __shared__ qb_table t;
    for (int64_t e0 = 0; e0 < a.experts; e0 += QB_TABLE) {
        const int n = qb_chunk(t, a, e0);
        const int64_t p0 = t.blk[0], p1 = t.blk[n];
        qb_range w;
        if (!qb_range_start<IPW>(w, p0, (p1 - p0) * a.units, a.units, (threadIdx.x & 31) / S::GT))
            continue;
        qb_expert ex = {0, 0, 0, 1.0f, 1.0f};
        qb_qrow row = {-1, 0, 0, 0, 0};
        for (int64_t base = w.item - (threadIdx.x & 31) / S::GT; base < w.end; base += IPW) {
            const bool valid = w.item < w.end;
            if (valid && w.key != row.key) qb_quant_row(a, t, n, e0, w.key, ex, row);
            /* a step on padding rows only (most of the walk when experts hold far fewer
             * than 128 rows: 60 us at DeepSeek-V3 T = 32) writes its zero scale words
             * and skips the math */
            if (__any_sync(QB_FULL, valid && row.has))
                qb_quant_item<D, FMT, VECTOR>(a, row, ex.gs, valid, w.unit);
            else if (valid && threadIdx.x % S::GT == 0)
                qb_store_scale_word(a, row, w.unit, 0u);
            qb_range_next<IPW>(w, a.units);
        }
    }
}

/* ---------------------------------------------------------------- dequantise */

/* What a thread's items in one row share. */
typedef struct qb_drow {
    int64_t key;     /* the row, -1 before the first */
    int64_t q_off;   /* byte offset of the row in q */
    int64_t out_off; /* element offset of the row in out */
    int64_t s_off;   /* byte offset of the row's scale of column 0 */
} qb_drow;

/* The chunk through the CPU's own expressions and software conversions, for chunks
 * where a NaN is involved: the hardware would make it a canonical NaN, the CPU keeps
 * the sign and payload that x86 arithmetic propagates (of the code, else the scale).
 * Out of line, so the rare case costs the hot loop no registers. */
template <moe_dtype D, int FMT, bool VECTOR>
__device__ __noinline__ void qb_dequant_slow(void *dst, int64_t out_off, uint4 qv,
                                             uint32_t scale_byte, float gs) {
    typedef qb_shape<D, FMT> S;
    const uint32_t q[4] = {qv.x, qv.y, qv.z, qv.w};
    uint32_t w[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
    for (int i = 0; i < S::ELEMS; i++) {
        float o;
        if (FMT == QB_MX) {
            const float v = moe_e4m3_to_f32((uint8_t)(q[i / 4] >> (8 * (i % 4))));
            const float scale = moe_e8m0_to_f32((uint8_t)scale_byte);
            o = v != v ? v : scale != scale ? scale : v * scale;
        } else {
            const float sf32 = moe_e4m3_to_f32((uint8_t)scale_byte);
            const float v = qb_e2m1_value((q[i / 8] >> (4 * (i % 8))) & 0xfu);
            o = sf32 != sf32 ? sf32
                : gs != gs   ? __uint_as_float(__float_as_uint(gs) | 0x400000u)
                             : v * sf32 / gs;
        }
        if constexpr (D == MOE_DTYPE_F32)
            w[i] = __float_as_uint(o);
        else
            w[i / 2] |= (uint32_t)moe_elem<D>::store(o) << (16 * (i % 2));
    }
    qb_store_dense<D, VECTOR>(dst, out_off, w);
}

/* out = q * scale for one thread's 32 output bytes (row, span k). */
template <moe_dtype D, int FMT, bool VECTOR>
__device__ __forceinline__ void qb_dequant_item(const qb_args &a, const qb_drow &row,
                                                const qb_expert &ex, int64_t k) {
    typedef qb_shape<D, FMT> S;
    const int64_t col = k * S::ELEMS;
    const uint32_t scale_byte =
        __ldg(a.scales + row.s_off + moe_swizzle_index(0, 0, col / S::BLK, a.padded_cols));
    uint32_t q[4];
    qb_load_bytes<S::QBYTES, VECTOR>(
        (const uint8_t *)a.src + row.q_off + (FMT == QB_MX ? col : col / 2), q);
    float o[S::ELEMS];
    if (FMT == QB_MX) {
        uint32_t nan_bytes = 0; /* bit 7 of a byte set where the code is 0x7f or 0xff */
#pragma unroll
        for (int i = 0; i < S::QBYTES / 4; i++)
            nan_bytes |= ((q[i] & 0x7f7f7f7fu) + 0x01010101u) & 0x80808080u;
        if (nan_bytes != 0 || scale_byte == 0xffu) {
            qb_dequant_slow<D, FMT, VECTOR>(a.dst, row.out_off + col,
                                            make_uint4(q[0], q[1], q[2], q[3]), scale_byte, ex.gs);
            return;
        }
        const float scale = moe_e8m0_to_f32((uint8_t)scale_byte);
#pragma unroll
        for (int i = 0; i < S::ELEMS; i++) {
            o[i] = qb_e4m3_value((q[i / 4] >> (8 * (i % 4))) & 0xffu) * scale;
        }
    } else {
        const float sf32 = moe_e4m3_to_f32((uint8_t)scale_byte), gs = ex.gs;
        if (sf32 != sf32 || gs != gs) {
            qb_dequant_slow<D, FMT, VECTOR>(a.dst, row.out_off + col,
                                            make_uint4(q[0], q[1], q[2], q[3]), scale_byte, gs);
            return;
        }
        const bool fast_div = gs >= 0x1p-60f && gs <= 0x1p60f;
#pragma unroll
        for (int i = 0; i < S::ELEMS; i++) {
            const float v = qb_e2m1_value((q[i / 8] >> (4 * (i % 8))) & 0xfu);
            const float p = __fmul_rn(v, sf32); /* exact */
            o[i] = fast_div ? qb_div_global(p, gs, ex.rgs) : p / gs;
        }
    }
    uint32_t w[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        if constexpr (D == MOE_DTYPE_F32)
            w[i] = __float_as_uint(o[i]);
        else if constexpr (D == MOE_DTYPE_BF16)
            w[i] = qb_bf16x2(o[2 * i], o[2 * i + 1]);
        else
            w[i] = qb_f16x2(o[2 * i], o[2 * i + 1]);
    }
    qb_store_dense<D, VECTOR>(a.dst, row.out_off + col, w);
}

template <moe_dtype D, int FMT, bool VECTOR>
__global__ void __launch_bounds__(QB_THREADS, QB_MIN_BLOCKS) qb_dequant_kernel(qb_args a) {
    __shared__ qb_table t;
    for (int64_t e0 = 0; e0 < a.experts; e0 += QB_TABLE) {
        const int n = qb_chunk(t, a, e0);
        const int64_t r0 = t.row[0], r1 = t.row[n];
        qb_range w;
        if (!qb_range_start<32>(w, r0, (r1 - r0) * a.units, a.units, threadIdx.x & 31))
            continue;
        qb_expert ex = {0, 0, 0, 1.0f, 1.0f};
        qb_drow row = {-1, 0, 0, 0};
        /* no shuffles here: each thread leaves when its own items run out */
        for (; w.item < w.end; qb_range_next<32>(w, a.units)) {
            if (w.key != row.key) {
                qb_find<true>(t, n, e0, a, w.key, ex);
                const int64_t m = w.key - ex.lo;
                __builtin_assume(m >= 0);
                row.key = w.key;
                row.q_off = w.key * a.src_stride;
                row.out_off = w.key * a.dst_stride;
                row.s_off = moe_swizzle_index(t.blk[ex.e], m, 0, a.padded_cols);
            }
            qb_dequant_item<D, FMT, VECTOR>(a, row, ex, w.unit);
        }
    }
}

/* ---------------------------------------------------------------- host side */

static int qb_aligned(const void *p, int64_t stride_bytes, int64_t rows, int64_t align) {
    if ((uintptr_t)p % (uintptr_t)align != 0) return 0;
    return rows <= 1 || stride_bytes % align == 0;
}

static int64_t qb_experts(const moe_tensor *offsets) {
    return offsets ? offsets->shape[0] - 1 : 1;
}

/* CTAs for rows x units work items, per_cta of them per CTA and step, at most what is
 * resident at once. */
static unsigned qb_grid(const moe_context *ctx, int64_t rows, int64_t units, int64_t per_cta) {
    const int64_t cap = (int64_t)QB_MIN_BLOCKS * ((const moe_cuda_state *)ctx->state)->sm_count;
    const int64_t items = rows > INT64_MAX / units ? INT64_MAX - per_cta : rows * units;
    return moe_grid(items, per_cta, cap);
}

/* The arguments both directions share; float_t is x or out. */
static qb_args qb_common(const moe_tensor *float_t, const moe_tensor *offsets,
                         const moe_tensor *gs, const moe_tensor *scales, int64_t blk) {
    qb_args a = {};
    a.scales = (uint8_t *)scales->data;
    a.offsets = offsets ? (const int32_t *)offsets->data : NULL;
    a.gs = gs ? (const float *)gs->data : NULL;
    a.rows = float_t->shape[0];
    a.blocks = float_t->shape[1] / blk;
    a.padded_cols = moe_swizzle_cols(a.blocks);
    a.experts = qb_experts(offsets);
    a.scale_words = (uintptr_t)scales->data % 4 == 0;
    return a;
}

template <moe_dtype D, int FMT>
static void qb_launch_quant(const moe_context *ctx, const moe_tensor *x, const moe_tensor *q,
                            qb_args a, cudaStream_t st) {
    typedef qb_shape<D, FMT> S;
    a.units = a.padded_cols / 4;
    const int vector = qb_aligned(x->data, x->stride[0] * S::ESIZE, a.rows, 16) &&
                       qb_aligned(q->data, q->stride[0], a.rows, S::QBYTES);
    /* padded scale rows B[E]: only experts with rows pad, at most 127 rows each */
    const int64_t rows = a.rows + 127 * (a.experts < a.rows ? a.experts : a.rows);
    const unsigned grid = qb_grid(ctx, rows, a.units, QB_THREADS / S::GT);
    if (vector)
        qb_quant_kernel<D, FMT, true><<<grid, QB_THREADS, 0, st>>>(a);
    else
        qb_quant_kernel<D, FMT, false><<<grid, QB_THREADS, 0, st>>>(a);
}

template <moe_dtype D, int FMT>
static void qb_launch_dequant(const moe_context *ctx, const moe_tensor *q, const moe_tensor *out,
                              qb_args a, cudaStream_t st) {
    typedef qb_shape<D, FMT> S;
    a.units = out->shape[1] / S::ELEMS;
    const int vector = qb_aligned(out->data, out->stride[0] * S::ESIZE, a.rows, 16) &&
                       qb_aligned(q->data, q->stride[0], a.rows, S::QBYTES);
    const unsigned grid = qb_grid(ctx, a.rows, a.units, QB_THREADS);
    if (vector)
        qb_dequant_kernel<D, FMT, true><<<grid, QB_THREADS, 0, st>>>(a);
    else
        qb_dequant_kernel<D, FMT, false><<<grid, QB_THREADS, 0, st>>>(a);
}

moe_status moe_cuda_quant_mxfp8(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets,
                                moe_mx_rule rule, moe_tensor *q, moe_tensor *scales,
                                void *stream) {
    MOE_TRY(moe_cuda_use_device(ctx));
    if (x->shape[0] == 0 || x->shape[1] == 0) return MOE_OK; /* no expert has a row or block */
    qb_args a = qb_common(x, offsets, NULL, scales, 32);
    a.src = x->data;
    a.src_stride = x->stride[0];
    a.dst = q->data;
    a.dst_stride = q->stride[0];
    a.rule = (int32_t)rule;
    cudaStream_t st = moe_cuda_stream(stream);
    MOE_FLOAT_DTYPE_SWITCH(x->dtype, D, qb_launch_quant<D, QB_MX>(ctx, x, q, a, st));
    return moe_cuda_launch_status("moe_quant_mxfp8");
}

moe_status moe_cuda_dequant_mxfp8(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales,
                                  const moe_tensor *offsets, moe_tensor *out, void *stream) {
    MOE_TRY(moe_cuda_use_device(ctx));
    if (out->shape[0] == 0 || out->shape[1] == 0) return MOE_OK;
    qb_args a = qb_common(out, offsets, NULL, scales, 32);
    a.src = q->data;
    a.src_stride = q->stride[0];
    a.dst = out->data;
    a.dst_stride = out->stride[0];
    cudaStream_t st = moe_cuda_stream(stream);
    MOE_FLOAT_DTYPE_SWITCH(out->dtype, D, qb_launch_dequant<D, QB_MX>(ctx, q, out, a, st));
    return moe_cuda_launch_status("moe_dequant_mxfp8");
}

moe_status moe_cuda_quant_nvfp4(moe_context *ctx, const moe_tensor *x, const moe_tensor *offsets,
                                const moe_tensor *global_scale, moe_tensor *q, moe_tensor *scales,
                                void *stream) {
    MOE_TRY(moe_cuda_use_device(ctx));
    if (x->shape[0] == 0 || x->shape[1] == 0) return MOE_OK;
    qb_args a = qb_common(x, offsets, global_scale, scales, 16);
    a.src = x->data;
    a.src_stride = x->stride[0];
    a.dst = q->data;
    a.dst_stride = q->stride[0];
    cudaStream_t st = moe_cuda_stream(stream);
    MOE_FLOAT_DTYPE_SWITCH(x->dtype, D, qb_launch_quant<D, QB_NV>(ctx, x, q, a, st));
    return moe_cuda_launch_status("moe_quant_nvfp4");
}

moe_status moe_cuda_dequant_nvfp4(moe_context *ctx, const moe_tensor *q, const moe_tensor *scales,
                                  const moe_tensor *offsets, const moe_tensor *global_scale,
                                  moe_tensor *out, void *stream) {
    MOE_TRY(moe_cuda_use_device(ctx));
    if (out->shape[0] == 0 || out->shape[1] == 0) return MOE_OK;
    qb_args a = qb_common(out, offsets, global_scale, scales, 16);
    a.src = q->data;
    a.src_stride = q->stride[0];
    a.dst = out->data;
    a.dst_stride = out->stride[0];
    cudaStream_t st = moe_cuda_stream(stream);
    MOE_FLOAT_DTYPE_SWITCH(out->dtype, D, qb_launch_dequant<D, QB_NV>(ctx, q, out, a, st));
    return moe_cuda_launch_status("moe_dequant_nvfp4");
}
