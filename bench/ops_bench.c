/* moe-bench-ops: times every bandwidth op of the CUDA backend at DeepSeek-V3 and Kimi K2
 * shapes over T in {1, 32, 512, 4096, 16384}, with the device's copy bandwidth measured
 * in the same run. L2 is flushed (bench/bench_gpu.cu) before each timed call; the median of
 * many calls is reported. Prints a table and writes JSON (argv[1], default ops.json). */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/common/formats.h"
#include "bench_gpu.h"
#include "moe.h"

#define MK(x)                                                                       \
    do {                                                                            \
        moe_status s_ = (x);                                                        \
        if (s_ != MOE_OK) {                                                         \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, moe_last_error()); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

typedef struct {
    const char *name;
    int32_t e, k, g, tg, s;
    float r;
    int64_t h, i;
} model;

static const model models[] = {
    {"deepseek-v3", 256, 8, 8, 4, 1, 2.5f, 7168, 2048},
    {"kimi-k2", 384, 8, 1, 1, 1, 2.827f, 7168, 2048},
};
static const int64_t token_counts[] = {1, 32, 512, 4096, 16384};

/* ---------------------------------------------------------------- device memory */

static unsigned long long rng = 42;
static uint32_t next_u32(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

/* Device buffer of n random values of a float dtype in [-a, a) (never zeros). */
static void *dev_random(moe_dtype dt, size_t n, float a) {
    size_t es = moe_dtype_size(dt);
    unsigned char *h = malloc(n * es);
    for (size_t i = 0; i < n; i++) {
        float v = a * ((float)(next_u32() & 0xffffff) / 8388608.0f - 1.0f);
        if (v == 0.0f) v = a * 0.5f;
        if (dt == MOE_DTYPE_F32) ((float *)h)[i] = v;
        else if (dt == MOE_DTYPE_BF16) ((uint16_t *)h)[i] = moe_f32_to_bf16(v);
        else if (dt == MOE_DTYPE_F16) ((uint16_t *)h)[i] = moe_f32_to_f16(v);
    }
    void *d = moe_bench_dev_alloc(n * es);
    CK(cudaMemcpy(d, h, n * es, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

/* ---------------------------------------------------------------- timing */

static void *flush_buf;
static cudaEvent_t ev0, ev1;

typedef moe_status (*op_fn)(void *args);

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median microseconds of one call, L2 flushed before each. */
static double time_op(op_fn fn, void *args, int iters) {
    MK(fn(args)); /* warm-up: module load, first-touch */
    CK(cudaDeviceSynchronize());
    float *ms = malloc(sizeof(float) * (size_t)iters);
    for (int i = 0; i < iters; i++) {
        if (moe_bench_flush_l2(flush_buf, 0, NULL) != 0) {
            fprintf(stderr, "moe-bench-ops: the L2 flush failed\n");
            exit(1);
        }
        CK(cudaEventRecord(ev0, 0));
        MK(fn(args));
        CK(cudaEventRecord(ev1, 0));
        CK(cudaEventSynchronize(ev1));
        CK(cudaEventElapsedTime(&ms[i], ev0, ev1));
    }
    qsort(ms, (size_t)iters, sizeof(float), cmp_f);
    double med = ms[iters / 2] * 1e3;
    free(ms);
    return med;
}

/* ---------------------------------------------------------------- one case's buffers */

typedef struct {
    moe_context *ctx;
    const model *m;
    int64_t t, rmax;
    int32_t kp, ep;
    moe_grouped_topk_params rp;
    moe_fp8_group_params qp;
    moe_tensor logits, bias, ids, wts, counts, offsets, perm, inv, x, xg, q, qs;
    moe_tensor mq, ms_, nq, ns, gs, c1, a2, a2q, a2s, y, out;
    void *ws;
    size_t ws_bytes;
} bufs;

static moe_status op_route(void *p) {
    bufs *b = p;
    return moe_route_grouped_topk(b->ctx, &b->logits, &b->bias, &b->rp, &b->ids, &b->wts, NULL);
}
static moe_status op_permute(void *p) {
    bufs *b = p;
    return moe_permute_plan(b->ctx, &b->ids, b->ep, 1, &b->counts, &b->offsets, &b->perm,
                            &b->inv, b->ws, b->ws_bytes, NULL);
}
static moe_status op_gather(void *p) {
    bufs *b = p;
    return moe_gather_rows(b->ctx, &b->x, &b->perm, b->kp, &b->xg, NULL);
}
static moe_status op_quant_fp8(void *p) {
    bufs *b = p;
    return moe_quant_fp8_group(b->ctx, &b->x, &b->perm, b->kp, &b->qp, &b->q, &b->qs, NULL);
}
static moe_status op_mxfp8(void *p) {
    bufs *b = p;
    return moe_quant_mxfp8(b->ctx, &b->xg, &b->offsets, MOE_MX_RULE_CEIL, &b->mq, &b->ms_, NULL);
}
static moe_status op_nvfp4(void *p) {
    bufs *b = p;
    return moe_quant_nvfp4(b->ctx, &b->xg, &b->offsets, &b->gs, &b->nq, &b->ns, NULL);
}
static moe_status op_silu(void *p) {
    bufs *b = p;
    return moe_silu_and_mul(b->ctx, &b->c1, &b->a2, NULL);
}
static moe_status op_silu_q(void *p) {
    bufs *b = p;
    return moe_silu_and_mul_quant_fp8(b->ctx, &b->c1, &b->qp, &b->a2q, &b->a2s, NULL);
}
static moe_status op_combine(void *p) {
    bufs *b = p;
    return moe_combine(b->ctx, &b->y, &b->inv, &b->wts, 1.0f, &b->out, NULL);
}

static void setup(bufs *b, moe_context *ctx, const model *m, int64_t t) {
    memset(b, 0, sizeof *b);
    b->ctx = ctx, b->m = m, b->t = t;
    b->kp = m->k + (m->s > 0);
    b->ep = m->e + m->s;
    b->rmax = moe_permute_max_rows(t, b->kp, b->ep, 1);
    b->rp = (moe_grouped_topk_params){m->g, m->tg, m->k, 1, m->r, 0, m->s};
    b->qp = (moe_fp8_group_params){128, 1e-10f, 0, MOE_SCALES_COL_MAJOR};
    int64_t r = b->rmax, r4 = (r + 3) / 4 * 4, h = m->h, in = m->i;
    b->logits = moe_tensor_2d(dev_random(MOE_DTYPE_F32, (size_t)(t * m->e), 3.0f), MOE_DTYPE_F32, t, m->e);
    b->bias = moe_tensor_1d(dev_random(MOE_DTYPE_F32, (size_t)m->e, 0.1f), MOE_DTYPE_F32, m->e);
    size_t picks = (size_t)(t * b->kp) * 4;
    b->ids = moe_tensor_2d(moe_bench_dev_alloc(picks), MOE_DTYPE_I32, t, b->kp);
    b->wts = moe_tensor_2d(moe_bench_dev_alloc(picks), MOE_DTYPE_F32, t, b->kp);
    b->counts = moe_tensor_1d(moe_bench_dev_alloc((size_t)b->ep * 4), MOE_DTYPE_I32, b->ep);
    b->offsets =
        moe_tensor_1d(moe_bench_dev_alloc((size_t)(b->ep + 1) * 4), MOE_DTYPE_I32, b->ep + 1);
    b->perm = moe_tensor_1d(moe_bench_dev_alloc((size_t)r * 4), MOE_DTYPE_I32, r);
    b->inv = moe_tensor_1d(moe_bench_dev_alloc((size_t)(t * b->kp) * 4), MOE_DTYPE_I32, t * b->kp);
    MK(moe_permute_workspace_size(ctx, t, b->kp, b->ep, &b->ws_bytes));
    b->ws = moe_bench_dev_alloc(b->ws_bytes);
    b->x = moe_tensor_2d(dev_random(MOE_DTYPE_BF16, (size_t)(t * h), 2.0f), MOE_DTYPE_BF16, t, h);
    b->xg = moe_tensor_2d(moe_bench_dev_alloc((size_t)(r * h) * 2), MOE_DTYPE_BF16, r, h);
    b->q = moe_tensor_2d(moe_bench_dev_alloc((size_t)(r * h)), MOE_DTYPE_E4M3, r, h);
    b->qs = moe_tensor_2d(moe_bench_dev_alloc((size_t)(h / 128 * r4) * 4), MOE_DTYPE_F32,
                          h / 128, r4);
    int64_t srows = moe_swizzled_scale_rows(r, b->ep);
    b->mq = moe_tensor_2d(moe_bench_dev_alloc((size_t)(r * h)), MOE_DTYPE_E4M3, r, h);
    int64_t mx_cols = (h / 32 + 3) / 4 * 4, nv_cols = (h / 16 + 3) / 4 * 4;
    b->ms_ = moe_tensor_2d(moe_bench_dev_alloc((size_t)(srows * mx_cols)), MOE_DTYPE_E8M0, srows,
                           mx_cols);
    b->nq = moe_tensor_2d(moe_bench_dev_alloc((size_t)(r * h / 2)), MOE_DTYPE_E2M1X2, r, h / 2);
    b->ns = moe_tensor_2d(moe_bench_dev_alloc((size_t)(srows * nv_cols)), MOE_DTYPE_E4M3, srows,
                          nv_cols);
    float *gsh = malloc(sizeof(float) * (size_t)b->ep);
    for (int e = 0; e < b->ep; e++) gsh[e] = 448.0f * 6.0f / 2.0f;
    b->gs = moe_tensor_1d(moe_bench_dev_alloc((size_t)b->ep * 4), MOE_DTYPE_F32, b->ep);
    CK(cudaMemcpy(b->gs.data, gsh, (size_t)b->ep * 4, cudaMemcpyHostToDevice));
    free(gsh);
    b->c1 = moe_tensor_2d(dev_random(MOE_DTYPE_BF16, (size_t)(r * 2 * in), 3.0f), MOE_DTYPE_BF16, r, 2 * in);
    b->a2 = moe_tensor_2d(moe_bench_dev_alloc((size_t)(r * in) * 2), MOE_DTYPE_BF16, r, in);
    b->a2q = moe_tensor_2d(moe_bench_dev_alloc((size_t)(r * in)), MOE_DTYPE_E4M3, r, in);
    b->a2s = moe_tensor_2d(moe_bench_dev_alloc((size_t)(in / 128 * r4) * 4), MOE_DTYPE_F32,
                           in / 128, r4);
    b->y = moe_tensor_2d(dev_random(MOE_DTYPE_BF16, (size_t)(r * h), 1.0f), MOE_DTYPE_BF16, r, h);
    b->out = moe_tensor_2d(moe_bench_dev_alloc((size_t)(t * h) * 2), MOE_DTYPE_BF16, t, h);
    /* the inputs each op sees are what the pipeline before it produced */
    MK(op_route(b));
    MK(op_permute(b));
    MK(op_gather(b));
    CK(cudaDeviceSynchronize());
}

static void teardown(bufs *b) {
    void *ptrs[] = {b->logits.data, b->bias.data, b->ids.data, b->wts.data, b->counts.data,
                    b->offsets.data, b->perm.data, b->inv.data, b->ws, b->x.data, b->xg.data,
                    b->q.data, b->qs.data, b->mq.data, b->ms_.data, b->nq.data, b->ns.data,
                    b->gs.data, b->c1.data, b->a2.data, b->a2q.data, b->a2s.data, b->y.data,
                    b->out.data};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) cudaFree(ptrs[i]);
}

int main(int argc, char **argv) {
    const char *json_path = argc > 1 ? argv[1] : "ops.json";
    moe_context *ctx = NULL;
    MK(moe_context_create(&ctx, MOE_BACKEND_CUDA, 0));
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    CK(cudaEventCreate(&ev0));
    CK(cudaEventCreate(&ev1));
    flush_buf = moe_bench_flush_alloc();
    if (!flush_buf) {
        fprintf(stderr, "moe-bench-ops: cannot allocate the L2 flush buffer\n");
        return 1;
    }
    double copy_gbps = moe_bench_copy_bandwidth() / 1e9;
    FILE *js = fopen(json_path, "w");
    if (!js) return 1;
    fprintf(js,
            "{\"gpu\": \"%s\", \"copy_GBps\": %.1f, "
            "\"l2_flush\": \"read of 256 MB before each call\", \"cases\": [\n",
            prop.name, copy_gbps);
    printf("%s, copy bandwidth %.0f GB/s (read + written)\n", prop.name, copy_gbps);
    printf("%-12s %6s %-18s %10s %10s %8s %7s\n", "model", "T", "op", "us", "MB", "GB/s", "%copy");
    int first = 1;
    for (size_t mi = 0; mi < sizeof models / sizeof models[0]; mi++) {
        for (size_t ti = 0; ti < sizeof token_counts / sizeof token_counts[0]; ti++) {
            const model *m = &models[mi];
            int64_t t = token_counts[ti];
            bufs b;
            setup(&b, ctx, m, t);
            int64_t rr = t * b.kp, h = m->h, in = m->i, e = m->e, kp = b.kp;
            /* bytes each op reads and writes once (rows = T*k' routed pairs) */
            struct {
                const char *name;
                op_fn fn;
                double bytes;
            } ops[] = {
                {"route_grouped", op_route, (double)t * e * 4 + e * 4 + (double)t * kp * 8},
                {"permute_plan", op_permute, (double)t * kp * 4 * 3 + (double)b.ep * 8},
                {"gather_rows", op_gather, (double)rr * h * 2 * 2},
                {"quant_fp8_gather", op_quant_fp8, (double)rr * h * 2 + rr * h + rr * h / 128.0 * 4},
                {"quant_mxfp8", op_mxfp8, (double)rr * h * 2 + rr * h + rr * h / 32.0},
                {"quant_nvfp4", op_nvfp4, (double)rr * h * 2 + rr * h / 2.0 + rr * h / 16.0},
                {"silu_and_mul", op_silu, (double)rr * in * 2 * 2 + rr * in * 2},
                {"silu_mul_quant_fp8", op_silu_q, (double)rr * in * 2 * 2 + rr * in + rr * in / 128.0 * 4},
                {"combine", op_combine, (double)rr * h * 2 + (double)t * kp * 8 + (double)t * h * 2},
            };
            for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
                int iters = t >= 4096 ? 30 : 100;
                double us = time_op(ops[oi].fn, &b, iters);
                double gbps = ops[oi].bytes / (us * 1e-6) / 1e9;
                printf("%-12s %6lld %-18s %10.2f %10.2f %8.0f %6.1f%%\n", m->name, (long long)t,
                       ops[oi].name, us, ops[oi].bytes / 1e6, gbps, 100.0 * gbps / copy_gbps);
                fprintf(js, "%s  {\"model\": \"%s\", \"T\": %lld, \"op\": \"%s\", \"us\": %.3f, "
                            "\"bytes\": %.0f, \"GBps\": %.1f, \"pct_copy\": %.1f}",
                        first ? "" : ",\n", m->name, (long long)t, ops[oi].name, us,
                        ops[oi].bytes, gbps, 100.0 * gbps / copy_gbps);
                first = 0;
            }
            teardown(&b);
        }
    }
    fprintf(js, "\n]}\n");
    fclose(js);
    moe_context_destroy(ctx);
    return 0;
}
