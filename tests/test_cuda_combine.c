/* The CUDA combine against the CPU reference (SPEC 6), bit for bit: the kernel rounds
 * every product before adding it and adds in j order, as the CPU does, so the outputs
 * must be identical bytes, not merely close. Inputs: inv_perm from a real plan over ids
 * with -1 and out-of-range values, or random rows around R (rows in [T, R) are valid,
 * rows >= R are skipped and y continues past R with NaN rows that must never be read).
 * Outputs are poisoned and sit in buffers with padded rows and extra rows after the end,
 * which must stay poisoned. */
#include <math.h>
#include <string.h>

#include "combine_check.h"
#include "guarded_buffer.h"
#include "harness.h"

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* ---------------------------------------------------------------- buffers */

/* Uniform values in [-4, 4): cheap enough for the 38M elements of the largest case. */
static void fill_uniform(moe_tensor *t) {
    for (int64_t r = 0; r < t->shape[0]; r++)
        for (int64_t c = 0; c < t->shape[1]; c++)
            test_set(t, r, c, 0, (double)(rng_u64() >> 40) * 0x1p-21 - 4.0);
}

/* ---------------------------------------------------------------- comparison */

/* Runs both backends on the same inputs; out [T, H] of dtype od with rows out_ld apart,
 * shifted by out_shift elements, two poisoned rows after it. The whole output buffers
 * must be the same bytes. */
static void compare_combine(moe_context *gpu, const padded *y, const moe_tensor *inv,
                            const moe_tensor *w, float scale, moe_dtype od, int64_t out_ld,
                            int64_t out_shift, const char *what) {
    int64_t tokens = w->shape[0], h = y->view.shape[1];
    char where[200];
    snprintf(where, sizeof where,
             "%s (%s -> %s, T %lld, k' %lld, R %lld, H %lld, y ld %lld, out ld %lld +%lld, "
             "scale %g)",
             what, moe_dtype_name(y->view.dtype), moe_dtype_name(od), (long long)tokens,
             (long long)w->shape[1], (long long)y->view.shape[0], (long long)h,
             (long long)y->view.stride[0], (long long)out_ld, (long long)out_shift,
             (double)scale);
    padded o = host_rows(od, tokens, h, out_ld, out_shift, 2);
    padded dy = device_rows(y), dout = device_rows(&o);
    moe_tensor dinv = test_to_device(inv), dw = test_to_device(w);
    CHECK_OK(moe_combine(test_cpu(), &y->view, inv, w, scale, &o.view, NULL));
    moe_status s = moe_combine(gpu, &dy.view, &dinv, &dw, scale, &dout.view, NULL);
    CHECK(s == MOE_OK, "%s: %s: %s", where, moe_status_string(s), moe_last_error());
    if (s != MOE_OK) return;

    size_t es = moe_dtype_size(od), n = (size_t)o.full.shape[0] * es;
    moe_tensor got = dout.full;
    got.data = test_alloc(n);
    test_to_host(&dout.full, &got);
    const unsigned char *g = got.data, *c = o.full.data;
    size_t d = n;
    for (size_t i = 0; i < n && d == n; i++)
        if (g[i] != c[i]) d = i;
    if (d == n) {
        CHECK(1, "same bytes");
        return;
    }
    /* name the element: row, column (or padding) and both values */
    int64_t e = (int64_t)(d / es) - out_shift, r = e >= 0 ? e / out_ld : -1;
    int64_t col = e >= 0 ? e % out_ld : -1;
    moe_tensor gv = got;
    gv.dtype = od;
    double gval = test_get(&gv, (int64_t)(d / es), 0, 0);
    double cval = test_get(&o.full, (int64_t)(d / es), 0, 0);
    CHECK(0, "%s: out[%lld, %lld]%s = %.9g, CPU %.9g", where, (long long)r, (long long)col,
          r >= tokens || col >= h || e < 0 ? " (outside the view: must stay poisoned)" : "",
          gval, cval);
}

/* A plan over random ids (4% -1, 2% out of range) gives inv_perm; y has Rmax rows. */
static void model_case(moe_context *gpu, int64_t tokens, int32_t experts, int32_t align,
                       int64_t h, moe_dtype yd, moe_dtype od, float scale) {
    int32_t kp = 9;
    moe_context *cpu = test_cpu();
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, tokens, kp);
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < kp; j++) {
            int64_t u = rng_int(0, 99);
            int32_t id = u < 4 ? -1 : u < 6 ? experts + 5 : (int32_t)rng_int(0, experts - 1);
            test_set_i32(&ids, t, j, id);
        }
    int64_t rows = moe_permute_max_rows(tokens, kp, experts, align);
    moe_tensor off = test_tensor1(MOE_DTYPE_I32, experts + 1);
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, rows);
    moe_tensor inv = test_tensor1(MOE_DTYPE_I32, tokens * kp);
    size_t bytes;
    CHECK_OK(moe_permute_workspace_size(cpu, tokens, kp, experts, &bytes));
    void *ws = test_alloc(bytes);
    CHECK_OK(moe_permute_plan(cpu, &ids, experts, align, NULL, &off, &perm, &inv, ws, bytes,
                              NULL));
    padded y = host_rows(yd, rows, h, h, 0, 0);
    fill_uniform(&y.view);
    moe_tensor w = combine_random_weights(tokens, kp, kp, 0.0, 1.0);
    compare_combine(gpu, &y, &inv, &w, scale, od, h, 0, "model");
}

/* ---------------------------------------------------------------- tests */

/* Decode to prefill at k' = 9: H = 7168 (DeepSeek-V3) where the CPU reference is cheap
 * enough, smaller H as T grows. */
static void test_cuda_combine_model(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const int64_t ts[] = {0, 1, 32, 512, 4096, 16384}, hs[] = {7168, 7168, 7168, 2048, 512, 256};
    for (int i = 0; i < 6; i++)
        model_case(gpu, ts[i], 257, 1, hs[i], MOE_DTYPE_BF16, MOE_DTYPE_BF16, 1.0f);
    model_case(gpu, 512, 385, 16, 1024, MOE_DTYPE_BF16, MOE_DTYPE_BF16, 2.5f);
    model_case(gpu, 4096, 257, 16, 256, MOE_DTYPE_BF16, MOE_DTYPE_F32, 2.5f);
    model_case(gpu, 32, 385, 1, 7168, MOE_DTYPE_F32, MOE_DTYPE_BF16, 1.0f);
}

/* Every y/out dtype pair at column counts that select each vector width (8, 4, 2, 1
 * columns a thread), weights of both signs so that sums cancel. */
static void test_cuda_combine_dtypes(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const moe_dtype dts[] = {MOE_DTYPE_F32, MOE_DTYPE_F16, MOE_DTYPE_BF16};
    const int64_t hs[] = {256, 300, 258, 7, 1};
    int64_t tokens = 33, kp = 9, rows = tokens * kp;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            for (int hi = 0; hi < 5; hi++) {
                int64_t h = hs[hi];
                moe_tensor inv = combine_random_inv_perm(tokens * kp, rows, 10);
                padded y = host_rows(dts[a], rows, h, h, 0, 0);
                for (int64_t r = 0; r < rows; r++)
                    for (int64_t c = 0; c < h; c++) test_set(&y.view, r, c, 0, 3.0 * rng_normal());
                moe_tensor w = combine_random_weights(tokens, kp, kp, -1.0, 1.0);
                float scale = (a + b + hi) % 2 ? 0.5f : 1.0f;
                compare_combine(gpu, &y, &inv, &w, scale, dts[b], h, 0, "dtype pair");
            }
}

/* Padded and shifted rows of y and out (16-byte alignment lost or kept), padded weights. */
static void test_cuda_combine_strided(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int64_t tokens = 40, kp = 9, rows = 300, h = 256;
    const moe_dtype dts[] = {MOE_DTYPE_BF16, MOE_DTYPE_F32, MOE_DTYPE_F16};
    /* {y ld, y shift, out ld, out shift} */
    const int64_t lay[][4] = {{264, 0, 256, 0}, {261, 0, 263, 0}, {256, 1, 256, 0},
                              {256, 0, 256, 1}, {258, 2, 260, 2}, {256, 4, 264, 4}};
    for (int d = 0; d < 3; d++)
        for (int l = 0; l < 6; l++) {
            padded y = host_rows(dts[d], rows, h, lay[l][0], lay[l][1], 0);
            fill_uniform(&y.view);
            moe_tensor inv = combine_random_inv_perm(tokens * kp, rows, 5);
            moe_tensor w = combine_random_weights(tokens, kp, kp + 3, 0.0, 1.0);
            compare_combine(gpu, &y, &inv, &w, 1.0f, dts[(d + l) % 3], lay[l][2], lay[l][3],
                            "strided");
        }
}

/* R < T*k': rows in [T, R) are summed, rows >= R skipped; y's buffer continues past R
 * with NaN rows, so one read too many would show. Small (scalar and vector widths) and a
 * larger case with R < T*k'. */
static void row_bounds_case(moe_context *gpu, int64_t tokens, int64_t kp, int64_t rows,
                            int64_t h, moe_dtype yd, moe_dtype od) {
    moe_tensor inv = combine_edge_inv_perm(tokens, kp, rows);
    padded y = host_rows(yd, rows, h, h, 0, 8); /* rows R .. R+7 stay NaN */
    fill_uniform(&y.view);
    moe_tensor w = combine_random_weights(tokens, kp, kp, 0.0, 1.0);
    compare_combine(gpu, &y, &inv, &w, 1.0f, od, h, 0, "rows near the end of y");
}

static void test_cuda_combine_row_bounds(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const moe_dtype dts[] = {MOE_DTYPE_F32, MOE_DTYPE_BF16, MOE_DTYPE_F16};
    for (int d = 0; d < 3; d++) {
        row_bounds_case(gpu, 40, 4, 100, 64, dts[d], dts[(d + 1) % 3]);
        row_bounds_case(gpu, 40, 4, 100, 5, dts[d], dts[(d + 2) % 3]);
    }
    row_bounds_case(gpu, 2048, 9, 5000, 512, MOE_DTYPE_BF16, MOE_DTYPE_BF16);
}

static void test_cuda_combine_edges(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    /* T = 0 */
    padded y = host_rows(MOE_DTYPE_BF16, 16, 32, 32, 0, 0);
    fill_uniform(&y.view);
    moe_tensor inv0 = test_tensor1(MOE_DTYPE_I32, 0), w0 = combine_random_weights(0, 9, 9, 0, 1);
    compare_combine(gpu, &y, &inv0, &w0, 1.0f, MOE_DTYPE_BF16, 32, 0, "T = 0");
    /* R = 0: every pair skipped, every output +0 */
    padded y0 = host_rows(MOE_DTYPE_F16, 0, 32, 32, 0, 2);
    moe_tensor inv = test_tensor1(MOE_DTYPE_I32, 12);
    for (int p = 0; p < 12; p++) test_set_i32(&inv, p, 0, p);
    moe_tensor w = combine_random_weights(4, 3, 3, 0.0, 1.0);
    compare_combine(gpu, &y0, &inv, &w, 1.0f, MOE_DTYPE_F16, 32, 0, "R = 0");
    compare_combine(gpu, &y0, &inv, &w, -1.0f, MOE_DTYPE_BF16, 32, 0, "R = 0, -0 out");
    /* k' = 1 with a token whose only row is skipped */
    moe_tensor inv1 = test_tensor1(MOE_DTYPE_I32, 5);
    moe_tensor w1 = combine_random_weights(5, 1, 1, 0.0, 2.0);
    const int32_t rows1[] = {3, -1, 15, 16, 0};
    for (int p = 0; p < 5; p++) test_set_i32(&inv1, p, 0, rows1[p]);
    compare_combine(gpu, &y, &inv1, &w1, 3.0f, MOE_DTYPE_F32, 32, 0, "k' = 1");
    compare_combine(gpu, &y, &inv1, &w1, -0.75f, MOE_DTYPE_BF16, 32, 0, "negative scale");
    compare_combine(gpu, &y, &inv1, &w1, 0.0f, MOE_DTYPE_BF16, 32, 0, "zero scale");
    /* H = 0: nothing to write */
    padded yh = host_rows(MOE_DTYPE_F32, 4, 0, 0, 0, 0);
    moe_tensor wh = combine_random_weights(4, 3, 3, 0.0, 1.0);
    compare_combine(gpu, &yh, &inv, &wh, 1.0f, MOE_DTYPE_F32, 0, 0, "H = 0");
    /* k' beyond one batch of rows: 17 (k = 16 + shared), 18, 20, 40 */
    const int64_t kps[] = {17, 18, 20, 40};
    for (int i = 0; i < 4; i++) {
        int64_t tokens = 50, kp = kps[i], rows = tokens * kp;
        padded yk = host_rows(MOE_DTYPE_BF16, rows, 512, 512, 0, 0);
        fill_uniform(&yk.view);
        moe_tensor ik = combine_random_inv_perm(tokens * kp, rows, 15);
        moe_tensor wk = combine_random_weights(tokens, kp, kp, -1.0, 1.0);
        compare_combine(gpu, &yk, &ik, &wk, 1.0f, MOE_DTYPE_BF16, 512, 0, "large k'");
    }
    /* every pair of every token skipped except a few */
    int64_t tokens = 64, kp = 9, rows = 600;
    padded ys = host_rows(MOE_DTYPE_BF16, rows, 128, 128, 0, 0);
    fill_uniform(&ys.view);
    moe_tensor is = combine_random_inv_perm(tokens * kp, rows, 95);
    moe_tensor ws = combine_random_weights(tokens, kp, kp, 0.0, 1.0);
    compare_combine(gpu, &ys, &is, &ws, 1.0f, MOE_DTYPE_F16, 128, 0, "mostly skipped");
}

/* ---------------------------------------------------------------- timing (information) */

#ifdef MOE_HAVE_CUDA
/* DeepSeek-V3's combine (k' = 9, H = 7168 bf16) next to a device-to-device copy of y:
 * printed for the first GPU runs (goal: >= 85% of the copy's bandwidth at T = 16384).
 * y is left as the device poison (NaN): the arithmetic does not care. */
static void time_combine(moe_context *gpu, int64_t tokens) {
    int64_t kp = 9, h = 7168, pairs = tokens * kp;
    moe_tensor hy = {NULL, MOE_DTYPE_BF16, 2, {pairs, h}, {h, 1}};
    moe_tensor y = test_device_like(&hy);
    moe_tensor inv = combine_random_inv_perm(pairs, pairs, 0), dinv = test_to_device(&inv);
    moe_tensor w = combine_random_weights(tokens, kp, kp, 0.0, 1.0), dw = test_to_device(&w);
    moe_tensor ho = {NULL, MOE_DTYPE_BF16, 2, {tokens, h}, {h, 1}};
    moe_tensor out = test_device_like(&ho);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    int iters = tokens > 1024 ? 10 : 50;
    moe_status s = MOE_OK;
    for (int it = -2; it < iters && s == MOE_OK; it++) {
        if (it == 0) cudaEventRecord(a, NULL);
        s = moe_combine(gpu, &y, &dinv, &dw, 1.0f, &out, NULL);
    }
    cudaEventRecord(b, NULL);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    CHECK(s == MOE_OK, "timed combine: %s", moe_last_error());
    double t = ms * 1e-3 / iters, bytes = (double)(pairs + tokens) * h * 2;
    /* the copy moves y's bytes once each way: the bandwidth a streaming kernel can reach */
    void *dst = test_device_alloc((size_t)pairs * h * 2);
    for (int it = -1; it < 5; it++) {
        if (it == 0) cudaEventRecord(a, NULL);
        cudaMemcpyAsync(dst, y.data, (size_t)pairs * h * 2, cudaMemcpyDeviceToDevice, NULL);
    }
    cudaEventRecord(b, NULL);
    cudaEventSynchronize(b);
    float cms = 0;
    cudaEventElapsedTime(&cms, a, b);
    double ct = cms * 1e-3 / 5, cbw = 2.0 * (double)pairs * h * 2 / ct;
    printf("  info: combine T=%lld k'=9 H=7168 bf16: %.1f us, %.0f GB/s; d2d copy %.0f GB/s "
           "(%.0f%%)\n",
           (long long)tokens, t * 1e6, bytes / t * 1e-9, cbw * 1e-9, 100.0 * bytes / t / cbw);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
}
#endif

static void test_cuda_combine_timing(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
#ifdef MOE_HAVE_CUDA
    time_combine(gpu, 1);
    time_combine(gpu, 32);
    time_combine(gpu, 4096);
    time_combine(gpu, 16384);
#endif
}

void suite_cuda_combine(void) {
    RUN(test_cuda_combine_model);
    RUN(test_cuda_combine_dtypes);
    RUN(test_cuda_combine_strided);
    RUN(test_cuda_combine_row_bounds);
    RUN(test_cuda_combine_edges);
    RUN(test_cuda_combine_timing);
}
