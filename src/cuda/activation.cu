/* silu_and_mul and its fusion with per-token-group FP8 quantisation (SPEC 5).
 *
 * Every value is moe_silu_mul (silu_mul.cuh: the CPU's silu_mul step for step, but for
 * expf's last ulp). The fused op quantises the f32 results through fp8_group.cuh, the code
 * path of moe_quant_fp8_group, so both round alike. */
#include "fp8_group.cuh"
#include "silu_mul.cuh"

#define SILU_THREADS 256
/* Values per thread of silu_and_mul's vector path: 8 halves are one 16-byte load. */
#define SILU_VEC 8

/* ------------------------------------------------------------------ silu_and_mul */

/* out[r, c] = moe_silu_mul(in[r, c], in[r, I + c]), grid-stride over PER values at a time:
 * SILU_VEC (16-byte loads and stores: I % 8 == 0, rows and halves 16-byte aligned) or 1. */
template <moe_dtype DI, moe_dtype DO, int PER>
__global__ void __launch_bounds__(SILU_THREADS)
    silu_kernel(const typename moe_elem<DI>::T *__restrict__ in, int64_t in_stride,
                typename moe_elem<DO>::T *__restrict__ out, int64_t out_stride, int64_t rows,
                int64_t cols) {
    moe_pdl_release(); /* the next kernel may start (common.cuh) */
    moe_pdl_wait();
    const int64_t chunks = cols / PER;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    const int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t step_r = step / chunks, step_c = step % chunks;
    int64_t r = u / chunks, c = u % chunks;
    while (r < rows) {
        const typename moe_elem<DI>::T *gate = in + r * in_stride + c * PER, *up = gate + cols;
        typename moe_elem<DO>::T *dst = out + r * out_stride + c * PER;
        if (PER == SILU_VEC) {
            float a[SILU_VEC], b[SILU_VEC], y[SILU_VEC];
            moe_fp8_load_vec<DI, SILU_VEC>(gate, a);
            moe_fp8_load_vec<DI, SILU_VEC>(up, b);
#pragma unroll
            for (int i = 0; i < SILU_VEC; i++) y[i] = moe_silu_mul(a[i], b[i]);
            moe_fp8_store_vec<DO, SILU_VEC>(dst, y);
        } else {
            *dst = moe_elem<DO>::store(
                moe_silu_mul(moe_fp8_load1<DI>(gate), moe_fp8_load1<DI>(up)));
        }
        c += step_c, r += step_r;
        if (c >= chunks) c -= chunks, r++;
    }
}

template <moe_dtype DI, moe_dtype DO, int PER>
static void silu_run(const moe_context *ctx, const moe_tensor *in, moe_tensor *out,
                     cudaStream_t st) {
    int64_t rows = out->shape[0], cols = out->shape[1];
    unsigned grid = moe_fp8_resident_grid(ctx, silu_kernel<DI, DO, PER>, SILU_THREADS,
                                          rows * (cols / PER));
    moe_pdl_launch l;
    moe_pdl_config(&l, grid, SILU_THREADS, 0, st, rows);
    cudaLaunchKernelEx(&l.cfg, silu_kernel<DI, DO, PER>,
                       (const typename moe_elem<DI>::T *)in->data, in->stride[0],
                       (typename moe_elem<DO>::T *)out->data, out->stride[0], rows, cols);
}

template <moe_dtype DI, moe_dtype DO>
static moe_status silu_launch(const moe_context *ctx, const moe_tensor *in, moe_tensor *out,
                              void *stream) {
    int64_t ei = (int64_t)sizeof(typename moe_elem<DI>::T);
    int64_t eo = (int64_t)sizeof(typename moe_elem<DO>::T);
    int64_t cols = out->shape[1];
    /* I % 8 == 0 also puts the up half (I elements in) on a 16-byte boundary */
    int vec = cols % SILU_VEC == 0 && moe_fp8_aligned16(in->data) &&
              in->stride[0] * ei % 16 == 0 && moe_fp8_aligned16(out->data) &&
              out->stride[0] * eo % 16 == 0;
    if (vec)
        silu_run<DI, DO, SILU_VEC>(ctx, in, out, moe_cuda_stream(stream));
    else
        silu_run<DI, DO, 1>(ctx, in, out, moe_cuda_stream(stream));
    return moe_cuda_launch_status("moe_silu_and_mul");
}

moe_status moe_cuda_silu_and_mul(moe_context *ctx, const moe_tensor *in, moe_tensor *out,
                                 void *stream) {
    if (out->shape[0] == 0 || out->shape[1] == 0) return MOE_OK;
    MOE_TRY(moe_cuda_use_device(ctx));
    moe_status st = MOE_OK;
    MOE_FLOAT_DTYPE_SWITCH(in->dtype, DI,
                           MOE_FLOAT_DTYPE_SWITCH(out->dtype, DO,
                                                  st = silu_launch<DI, DO>(ctx, in, out, stream)));
    return st;
}

/* ------------------------------------------------------------------ fused FP8 */

/* The rows of silu_mul results as fp8_group.cuh's loops read them: row r's value c is
 * moe_silu_mul(in[r, c], in[r, I + c]). VEC: 16-byte loads (in, its row stride and I
 * elements 16-byte aligned). */
template <moe_dtype D, bool VEC>
struct silu_source {
    typedef const typename moe_elem<D>::T *Row; /* NULL: a row past M, never read */

    Row in;
    int64_t in_stride, half;

    __device__ __forceinline__ Row row(int64_t r) const {
        return r < 0 ? NULL : in + r * in_stride;
    }

    __device__ __forceinline__ void load(Row h, int64_t c, float (&v)[MOE_FP8_VEC]) const {
        if (!h) {
#pragma unroll
            for (int i = 0; i < MOE_FP8_VEC; i++) v[i] = 0.0f;
            return;
        }
        float a[MOE_FP8_VEC], b[MOE_FP8_VEC];
        if (VEC) {
            moe_fp8_load_vec<D, MOE_FP8_VEC>(h + c * MOE_FP8_VEC, a);
            moe_fp8_load_vec<D, MOE_FP8_VEC>(h + half + c * MOE_FP8_VEC, b);
        } else {
            moe_fp8_load_scalar<D, MOE_FP8_VEC>(h + c * MOE_FP8_VEC, a);
            moe_fp8_load_scalar<D, MOE_FP8_VEC>(h + half + c * MOE_FP8_VEC, b);
        }
#pragma unroll
        for (int i = 0; i < MOE_FP8_VEC; i++) v[i] = moe_silu_mul(a[i], b[i]);
    }

    __device__ __forceinline__ float value(Row h, int64_t col) const {
        return moe_silu_mul(moe_fp8_load1<D>(h + col), moe_fp8_load1<D>(h + half + col));
    }
};

template <moe_dtype D>
static moe_status fused_launch(const moe_context *ctx, const moe_tensor *in,
                               const moe_fp8_group_params *params, moe_tensor *q,
                               moe_tensor *scales, void *stream) {
    typedef typename moe_elem<D>::T T;
    moe_fp8_out o = moe_fp8_out_of(params, q, scales);
    int64_t es = (int64_t)sizeof(T), half = q->shape[1];
    int vec = moe_fp8_aligned16(in->data) && in->stride[0] * es % 16 == 0 && half * es % 16 == 0;
    if (o.log2_lanes >= 0 && vec) {
        silu_source<D, true> src = {(const T *)in->data, in->stride[0], half};
        return moe_fp8_launch(ctx, src, o, stream, "moe_silu_and_mul_quant_fp8");
    }
    silu_source<D, false> src = {(const T *)in->data, in->stride[0], half};
    return moe_fp8_launch(ctx, src, o, stream, "moe_silu_and_mul_quant_fp8");
}

moe_status moe_cuda_silu_and_mul_quant_fp8(moe_context *ctx, const moe_tensor *in,
                                           const moe_fp8_group_params *params, moe_tensor *q,
                                           moe_tensor *scales, void *stream) {
    if (q->shape[0] == 0 || q->shape[1] == 0) return MOE_OK;
    MOE_TRY(moe_cuda_use_device(ctx));
    moe_status st = MOE_OK;
    MOE_FLOAT_DTYPE_SWITCH(in->dtype, D,
                           st = fused_launch<D>(ctx, in, params, q, scales, stream));
    return st;
}
