/* CUDA combine (SPEC 6): out[t, h] = scale * sum_j w[t, j] * y[inv_perm[t*k' + j], h].
 *
 * Bit-identical to the CPU reference: every product is rounded to f32 before it is added
 * (__fmul_rn/__fadd_rn, which the compiler never contracts into an FMA), the sum starts
 * from +0 and runs over j in ascending order, and the final scale is one more rounded
 * product, exactly the CPU's statements. Rows outside [0, R), R = y's row count, are
 * skipped: inv_perm is caller data (the seed compared rows with T).
 *
 * Each thread owns VE consecutive columns of one token (16 bytes of y: 8 bf16/f16 or 4
 * f32) and walks the token's rows in batches of COMBINE_BATCH: the batch's row indices
 * and weights first, then all its y loads, then the in-order adds, so a thread keeps
 * COMBINE_BATCH independent 16-byte loads in flight. No atomics, no shared memory. */
#include <string.h>

#include "common.cuh"

/* One batch holds DeepSeek-V3's and Kimi K2's k' = 8 routed + 1 shared rows. */
#define COMBINE_BATCH 9
#define COMBINE_THREADS 256

typedef struct combine_args {
    const void *y;
    int64_t y_ld; /* elements */
    int64_t rows; /* R */
    const int32_t *inv;
    const float *w;
    int64_t w_ld;
    int32_t topk; /* k' */
    float scale;
    void *out;
    int64_t out_ld;
    int64_t tokens;
    int64_t nvec;    /* VE-column groups per row */
    int32_t per_tok; /* threads per (token, slice) */
    int32_t slices;  /* slices of a token's column groups, each a unit of work */
    int64_t span;    /* column groups per slice: a multiple of per_tok */
} combine_args;

/* The unsigned type of B bytes, B <= 16. */
template <int B> struct combine_word;
template <> struct combine_word<16> { typedef uint4 T; };
template <> struct combine_word<8> { typedef uint2 T; };
template <> struct combine_word<4> { typedef unsigned int T; };
template <> struct combine_word<2> { typedef unsigned short T; };

/* N elements of type E as whole words of at most 16 bytes (the host checked alignment). */
template <typename E, int N> struct combine_pack {
    enum { BYTES = N * (int)sizeof(E), WORD = BYTES < 16 ? BYTES : 16, WORDS = BYTES / WORD };
    typedef typename combine_word<WORD>::T W;
};

/* Rows and weights of pairs j0 .. j0 + COMBINE_BATCH - 1 of token t; row -1 = skip. */
static __device__ __forceinline__ void load_batch(const combine_args &a, int64_t t, int j0,
                                                  int row[COMBINE_BATCH],
                                                  float w[COMBINE_BATCH]) {
#pragma unroll
    for (int i = 0; i < COMBINE_BATCH; i++) {
        int j = j0 + i;
        row[i] = -1;
        w[i] = 0.0f;
        if (j < a.topk) {
            int32_t r = __ldg(a.inv + t * a.topk + j);
            if (r >= 0 && r < a.rows) {
                row[i] = r;
                w[i] = __ldg(a.w + t * a.w_ld + j);
            }
        }
    }
}

/* acc += w[i] * y[row[i], cols of v] for the batch's rows, in order. */
template <moe_dtype YD, int VE>
static __device__ __forceinline__ void add_batch(const combine_args &a, int64_t v,
                                                 const int row[COMBINE_BATCH],
                                                 const float w[COMBINE_BATCH], float acc[VE]) {
    typedef typename moe_elem<YD>::T YT;
    typedef combine_pack<YT, VE> P;
    typename P::W raw[COMBINE_BATCH][P::WORDS];
    const YT *y = (const YT *)a.y;
#pragma unroll
    for (int i = 0; i < COMBINE_BATCH; i++) {
        if (row[i] < 0) continue;
        /* each row of y is read once per combine: stream it past the caches */
        const typename P::W *src = (const typename P::W *)(y + row[i] * a.y_ld + v * VE);
#pragma unroll
        for (int k = 0; k < P::WORDS; k++) raw[i][k] = __ldcs(src + k);
    }
#pragma unroll
    for (int i = 0; i < COMBINE_BATCH; i++) {
        if (row[i] < 0) continue;
        YT vals[VE];
        memcpy(vals, raw[i], sizeof vals);
#pragma unroll
        for (int k = 0; k < VE; k++)
            acc[k] = __fadd_rn(acc[k], __fmul_rn(w[i], moe_elem<YD>::load(vals[k])));
    }
}

template <moe_dtype YD, moe_dtype OD, int VE>
static __global__ void __launch_bounds__(COMBINE_THREADS, 2) combine_kernel(combine_args a) {
    typedef typename moe_elem<OD>::T OT;
    typedef combine_pack<OT, VE> P;
    moe_pdl_wait(); /* launched with PDL (common.cuh): y is GEMM 2's output */
    moe_pdl_release();
    int sub = threadIdx.x / a.per_tok, lane = threadIdx.x % a.per_tok;
    int64_t per_block = blockDim.x / a.per_tok;
    /* a unit is one slice of one token's column groups: with few tokens a token is cut
     * into slices so they still spread over many SMs (T = 1: 4 units of 224 threads, where
     * one block walked the 4 passes in turn); otherwise one slice is the whole row */
    for (int64_t u = blockIdx.x * per_block + sub; u < a.tokens * a.slices;
         u += (int64_t)gridDim.x * per_block) {
        int64_t t = u / a.slices, v0 = (u % a.slices) * a.span;
        int64_t v1 = v0 + a.span < a.nvec ? v0 + a.span : a.nvec;
        /* the first batch serves every column group of the unit: load it once */
        int row0[COMBINE_BATCH];
        float w0[COMBINE_BATCH];
        if (v0 + lane < v1) load_batch(a, t, 0, row0, w0);
        for (int64_t v = v0 + lane; v < v1; v += a.per_tok) {
            float acc[VE];
#pragma unroll
            for (int k = 0; k < VE; k++) acc[k] = 0.0f;
            add_batch<YD, VE>(a, v, row0, w0, acc);
            for (int j0 = COMBINE_BATCH; j0 < a.topk; j0 += COMBINE_BATCH) {
                int row[COMBINE_BATCH];
                float w[COMBINE_BATCH];
                load_batch(a, t, j0, row, w);
                add_batch<YD, VE>(a, v, row, w, acc);
            }
            OT o[VE];
#pragma unroll
            for (int k = 0; k < VE; k++) o[k] = moe_elem<OD>::store(__fmul_rn(a.scale, acc[k]));
            typename P::W packed[P::WORDS];
            memcpy(packed, o, sizeof o);
            typename P::W *dst =
                (typename P::W *)((OT *)a.out + t * a.out_ld + v * VE);
#pragma unroll
            for (int k = 0; k < P::WORDS; k++) dst[k] = packed[k];
        }
    }
}

/* ---------------------------------------------------------------- host */

/* VE columns per thread work if H is a multiple of VE and every row start of y and out
 * is aligned to one access (VE elements, at most 16 bytes). */
static int columns_fit(int ve, int64_t h, const moe_tensor *y, const moe_tensor *out) {
    if (h % ve) return 0;
    int64_t ys = (int64_t)moe_dtype_size(y->dtype), os = (int64_t)moe_dtype_size(out->dtype);
    int64_t ya = ve * ys < 16 ? ve * ys : 16, oa = ve * os < 16 ? ve * os : 16;
    /* y is never read when it has no rows (its data may then be NULL) */
    if (y->shape[0] > 0 && ((uintptr_t)y->data % (uintptr_t)ya || (y->stride[0] * ys) % ya))
        return 0;
    return (uintptr_t)out->data % (uintptr_t)oa == 0 && (out->stride[0] * os) % oa == 0;
}

template <moe_dtype YD, moe_dtype OD>
static void launch_combine(int ve, unsigned grid, unsigned block, const combine_args &a,
                           cudaStream_t s) {
    /* 16 bytes of y a load at most: f32 y never asks for 8 columns, so its case 8 only
     * names the 4-column kernel instead of instantiating a 32-byte one */
    enum { PER16 = 16 / sizeof(typename moe_elem<YD>::T), WIDE = PER16 < 8 ? PER16 : 8 };
    moe_pdl_launch l;
    moe_pdl_config(&l, grid, block, 0, s, a.rows);
    switch (ve) {
    case 8: cudaLaunchKernelEx(&l.cfg, combine_kernel<YD, OD, WIDE>, a); break;
    case 4: cudaLaunchKernelEx(&l.cfg, combine_kernel<YD, OD, 4>, a); break;
    case 2: cudaLaunchKernelEx(&l.cfg, combine_kernel<YD, OD, 2>, a); break;
    default: cudaLaunchKernelEx(&l.cfg, combine_kernel<YD, OD, 1>, a); break;
    }
}

moe_status moe_cuda_combine(moe_context *ctx, const moe_tensor *y, const moe_tensor *inv_perm,
                            const moe_tensor *weights, float scale, moe_tensor *out,
                            void *stream) {
    int64_t tokens = out->shape[0], h = out->shape[1];
    if (tokens == 0 || h == 0) return MOE_OK; /* nothing to write */
    MOE_TRY(moe_cuda_use_device(ctx));
    const moe_cuda_state *st = (const moe_cuda_state *)ctx->state;

    int ve = y->dtype == MOE_DTYPE_F32 ? 4 : 8;
    while (ve > 1 && !columns_fit(ve, h, y, out)) ve /= 2;
    combine_args a;
    a.y = y->data;
    a.y_ld = y->stride[0];
    a.rows = y->shape[0];
    a.inv = (const int32_t *)inv_perm->data;
    a.w = (const float *)weights->data;
    a.w_ld = weights->stride[0];
    a.topk = (int32_t)weights->shape[1];
    a.scale = scale;
    a.out = out->data;
    a.out_ld = out->stride[0];
    a.tokens = tokens;
    a.nvec = h / ve;
    /* Threads per (token, slice): few slices of a row, each thread the same count (896
     * groups of DeepSeek-V3's H = 7168 bf16 -> 4 slices of 224 threads), whole warps where
     * the row is long enough, several tokens a block where it is short. */
    int64_t per_tok;
    if (a.nvec >= 32) {
        int64_t passes = (a.nvec + COMBINE_THREADS - 1) / COMBINE_THREADS;
        per_tok = (a.nvec + passes - 1) / passes;
        per_tok = (per_tok + 31) / 32 * 32;
    } else {
        per_tok = 1;
        while (per_tok < a.nvec) per_tok *= 2;
    }
    a.per_tok = (int32_t)per_tok;
    /* a pass per slice while the tokens alone cannot fill the SMs (measured: T = 1 9.5 ->
     * 5.8 us, T = 32 10.0 -> 7.0; at T >= 512 slicing lost 5-20%), else whole rows */
    int64_t passes = (a.nvec + per_tok - 1) / per_tok;
    int64_t per_block_tokens = COMBINE_THREADS / per_tok;
    a.slices = tokens < 2 * (int64_t)st->sm_count * per_block_tokens ? (int32_t)passes : 1;
    a.span = (passes + a.slices - 1) / a.slices * per_tok;
    int64_t per_block = COMBINE_THREADS / per_tok;
    unsigned block = (unsigned)(per_tok * per_block);
    unsigned grid = moe_grid(tokens * a.slices, per_block, 32 * (int64_t)st->sm_count);
    cudaStream_t s = moe_cuda_stream(stream);
    moe_dtype yd = y->dtype, od = out->dtype;
    MOE_FLOAT_DTYPE_SWITCH(yd, YD, MOE_FLOAT_DTYPE_SWITCH(od, OD,
        launch_combine<YD, OD>(ve, grid, block, a, s)));
    return moe_cuda_launch_status("moe_combine");
}
