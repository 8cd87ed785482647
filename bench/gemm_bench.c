/* moe-bench-gemm: times moe_grouped_gemm (FP8 blockwise with column-major a_scales, and
 * BF16) at DeepSeek-V3 expert shapes (E=256, top-8; T in {1 .. 8192} uniform routing,
 * T in {4096, 8192} Zipf 1.2 skew) and at DeepGEMM's published shapes (contiguous
 * 4 x 8192 rows; masked 1x1024, 2x512, 4x256 through moe_grouped_gemm_masked).
 *
 * Per case: median of ITERS calls, each timed alone with CUDA events after a 256 MB read
 * that flushes L2 (bench/bench_gpu.cu); TFLOP/s over 2*M*N*K; GB/s over the bytes that
 * must move once (A and its scales, the active experts' weights and scales, the output);
 * the floor
 * max(bytes / read bandwidth, flops / dense tensor rate) and the share of it reached.
 * The read bandwidth (a read-only kernel over 2 GiB) and the copy bandwidth (cudaMemcpy
 * D2D, read + written) are measured in the same run (bench/bench_gpu.cu).
 *
 * Writes JSON to argv[1] (default gemm_libmoe.json), rewritten after every case so a run
 * cut short still leaves a valid file. Each case carries the per-expert row counts it used:
 * bench/torch_gemm.py reads them, so torch is timed on exactly the same routing. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_gpu.h"
#include "json_buf.h"
#include "moe.h"

enum { EXPERTS = 256, TOPK = 8, ITERS = 30, WARMUP = 2, MAX_CASE_EXPERTS = 256 };

/* Dense tensor-core peaks of the H100/H200 SXM datasheet (TFLOP/s): a floor nothing beats.
 * cuBLAS reaches 1283 (FP8) and 776 (BF16) at 8192^3 on the lent H100 (docs/ANCHORS.md). */
static const double FP8_DENSE_TFLOPS = 1979.0, BF16_DENSE_TFLOPS = 989.0;

typedef struct {
    const char *name;
    int64_t n, k;
} shape;

static const shape shapes[] = {{"gate_up", 4096, 7168}, {"down", 7168, 2048}};
static const int64_t uniform_tokens[] = {1, 16, 128, 512, 2048, 8192};
static const int64_t zipf_tokens[] = {4096, 8192};
static const double ZIPF_SKEW = 1.2;

/* ---------------------------------------------------------------- random data */

static uint64_t rng = 88172645463325252ull;
static uint64_t xorshift(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

enum fill_kind { FILL_E4M3, FILL_BF16, FILL_SCALE, FILL_KINDS };
static const size_t CHUNK = 64u << 20;
static void *chunk_dev[FILL_KINDS]; /* one random 64 MB chunk per kind, on the device */

/* Random bytes of each kind, made on the host once and kept on the device: filling 15 GB
 * of weights is then a series of device copies instead of host generation and transfer. */
static void make_chunks(void) {
    unsigned char *h = malloc(CHUNK);
    if (!h) exit(1);
    for (int kind = 0; kind < FILL_KINDS; kind++) {
        for (size_t i = 0; i < CHUNK; i += 4) {
            uint32_t r = (uint32_t)xorshift();
            if (kind == FILL_E4M3) {
                for (int j = 0; j < 4; j++) {
                    unsigned char c = (unsigned char)(r >> (8 * j));
                    if ((c & 0x7f) == 0x7f) c ^= 1;          /* NaN -> +-448 */
                    if ((c & 0x7f) == 0) c |= 0x38;          /* zero -> +-1 */
                    h[i + j] = c;
                }
            } else if (kind == FILL_BF16) {
                /* sign, exponent of 0.5, 7 random mantissa bits: +-[0.5, 1) */
                uint16_t a = (uint16_t)(0x3f00 | (r & 0x7f) | ((r >> 7) & 1) << 15);
                uint16_t b = (uint16_t)(0x3f00 | ((r >> 8) & 0x7f) | ((r >> 15) & 1) << 15);
                memcpy(h + i, &a, 2);
                memcpy(h + i + 2, &b, 2);
            } else {
                float f = (0.5f + (float)(r & 0xffff) / 65536.0f) / 256.0f; /* [0.5, 1.5)/256 */
                memcpy(h + i, &f, 4);
            }
        }
        CK(cudaMalloc(&chunk_dev[kind], CHUNK));
        CK(cudaMemcpy(chunk_dev[kind], h, CHUNK, cudaMemcpyHostToDevice));
    }
    free(h);
}

static void *dev_random(size_t bytes, enum fill_kind kind) {
    void *d = moe_bench_dev_alloc(bytes);
    for (size_t o = 0; o < bytes; o += CHUNK) {
        size_t n = bytes - o < CHUNK ? bytes - o : CHUNK;
        CK(cudaMemcpy((char *)d + o, chunk_dev[kind], n, cudaMemcpyDeviceToDevice));
    }
    return d;
}

/* ---------------------------------------------------------------- routing */

/* Rows per expert when t tokens each pick topk distinct experts, expert e drawn with
 * probability proportional to (e+1)^-skew (skew 0: uniform) and a repeat drawn again: the
 * successive sampling without replacement of torch.multinomial. Deterministic per (t, skew)
 * so every dtype and shape sees the same counts. */
static void route_counts(int64_t t, double skew, int32_t *counts) {
    double cdf[EXPERTS], total = 0.0;
    for (int e = 0; e < EXPERTS; e++) {
        total += skew > 0.0 ? pow(e + 1.0, -skew) : 1.0;
        cdf[e] = total;
    }
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1) + (skew > 0.0 ? 12345 : 0);
    memset(counts, 0, sizeof(int32_t) * EXPERTS);
    for (int64_t tok = 0; tok < t; tok++) {
        int chosen[TOPK];
        for (int j = 0; j < TOPK; j++) {
            int e, dup;
            do {
                /* splitmix64, local so the draws do not depend on other random use */
                uint64_t z = (s += 0x9e3779b97f4a7c15ull);
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                z ^= z >> 31;
                double u = (double)(z >> 11) * 0x1.0p-53 * total;
                int lo = 0, hi = EXPERTS - 1;
                while (lo < hi) {
                    int mid = (lo + hi) / 2;
                    if (cdf[mid] > u) hi = mid;
                    else lo = mid + 1;
                }
                e = lo;
                dup = 0;
                for (int q = 0; q < j; q++) dup |= chosen[q] == e;
            } while (dup);
            chosen[j] = e;
            counts[e]++;
        }
    }
}

/* ---------------------------------------------------------------- bandwidth */

static cudaEvent_t ev0, ev1;

static float elapsed_ms(void) {
    float ms = 0.0f;
    CK(cudaEventSynchronize(ev1));
    CK(cudaEventElapsedTime(&ms, ev0, ev1));
    return ms;
}

/* ---------------------------------------------------------------- JSON */

/* The cases written so far, as JSON objects joined by ",\n". */
static json_buf cases;

static const char *json_path;
static char header_json[512];

/* Rewrites the whole file, so it is valid JSON whenever the run stops. */
static void write_json(void) {
    FILE *f = fopen(json_path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", json_path);
        exit(1);
    }
    fprintf(f, "{%s, \"cases\": [\n%s\n]}\n", header_json, cases.s ? cases.s : "");
    fclose(f);
}

/* ---------------------------------------------------------------- one case */

typedef struct {
    moe_context *ctx;
    int masked, fp8;
    moe_tensor a, sa, b, sb, idx, d;
    void *ws;
    size_t ws_bytes;
} gemm_call;

static moe_status call(gemm_call *g) {
    const moe_tensor *sa = g->fp8 ? &g->sa : NULL, *sb = g->fp8 ? &g->sb : NULL;
    if (g->masked)
        return moe_grouped_gemm_masked(g->ctx, &g->a, sa, MOE_SCALES_COL_MAJOR, &g->b, sb,
                                       &g->idx, &g->d, g->ws, g->ws_bytes, NULL);
    return moe_grouped_gemm(g->ctx, &g->a, sa, MOE_SCALES_COL_MAJOR, &g->b, sb, &g->idx, &g->d,
                            g->ws, g->ws_bytes, NULL);
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void *flush_buf;

/* Median microseconds of one call with L2 flushed before each; -1 if libmoe refuses. */
static double time_call(gemm_call *g) {
    for (int i = 0; i < WARMUP; i++)
        if (call(g) != MOE_OK) return -1.0;
    CK(cudaDeviceSynchronize());
    float ms[ITERS];
    for (int i = 0; i < ITERS; i++) {
        if (moe_bench_flush_l2(flush_buf, 0, NULL) != 0) return -1.0;
        CK(cudaEventRecord(ev0, 0));
        moe_status s = call(g);
        CK(cudaEventRecord(ev1, 0));
        if (s != MOE_OK) return -1.0;
        ms[i] = elapsed_ms();
    }
    CK(cudaDeviceSynchronize());
    qsort(ms, ITERS, sizeof(float), cmp_f);
    return ms[ITERS / 2] * 1e3;
}

typedef struct {
    const char *routing; /* "uniform", "zipf1.2", "deepgemm" */
    int64_t t;           /* tokens (DeepSeek-V3 cases), 0 for DeepGEMM's shapes */
    int masked;
    int32_t experts;     /* groups: counts[0 .. experts-1] */
    int64_t cap;         /* masked: rows per group (C) */
    const int32_t *counts;
} case_desc;

static double read_gbps;
static int first_case = 1;

/* The case's name, as printed and written to JSON. */
static void case_name(char *name, size_t size, const shape *sh, const case_desc *c) {
    if (c->t > 0)
        snprintf(name, size, "dsv3 %s T=%lld %s", sh->name, (long long)c->t, c->routing);
    else
        snprintf(name, size, "deepgemm %s %dx%lld %s", c->masked ? "masked" : "contig",
                 (int)c->experts, (long long)(c->masked ? c->cap : c->counts[0]), sh->name);
}

/* MOE_BENCH_GEMM_CASES, if set: a comma-separated list of substrings of "<dtype> <case
 * name>" (e.g. "fp8 deepgemm contig,fp8 dsv3 gate_up T=8192 uniform"); only cases that
 * contain one of them run. For quick A/B runs on the lent GPU. */
static int wanted(int fp8, const char *name) {
    const char *list = getenv("MOE_BENCH_GEMM_CASES");
    if (!list || !*list) return 1;
    char full[128], item[128];
    snprintf(full, sizeof full, "%s %s", fp8 ? "fp8" : "bf16", name);
    while (*list) {
        size_t len = strcspn(list, ",");
        if (len > 0 && len < sizeof item) {
            memcpy(item, list, len);
            item[len] = 0;
            if (strstr(full, item)) return 1;
        }
        list += len + (list[len] == ',');
    }
    return 0;
}

/* Weights of one (dtype, shape), made on first use: up to 15 GB (bf16), shared by every T. */
typedef struct {
    void *b, *sb;
} weights;

static void weights_make(weights *w, int fp8, const shape *sh) {
    if (w->b) return;
    size_t es = fp8 ? 1 : 2;
    w->b = dev_random((size_t)EXPERTS * sh->n * sh->k * es, fp8 ? FILL_E4M3 : FILL_BF16);
    w->sb = fp8 ? dev_random((size_t)EXPERTS * (sh->n / 128) * (sh->k / 128) * 4, FILL_SCALE)
                : NULL;
}

/* Times one grouped GEMM over the first c->experts experts of the weights (made here on
 * first use), prints a table row and appends a JSON case; skipped if not wanted(). */
static void run_case(moe_context *ctx, int fp8, const shape *sh, weights *w,
                     const case_desc *c) {
    char name[96];
    case_name(name, sizeof name, sh, c);
    if (!wanted(fp8, name)) return;
    weights_make(w, fp8, sh);
    void *b = w->b, *sb = w->sb;
    int64_t n = sh->n, k = sh->k, kb = k / 128, e = c->experts;
    size_t es = fp8 ? 1 : 2;
    int64_t m = 0, active = 0;
    for (int64_t i = 0; i < e; i++) {
        int64_t rows = c->counts[i];
        if (c->masked && rows > c->cap) rows = c->cap;
        m += rows;
        active += rows > 0;
    }
    /* A holds R = M rows (contiguous) or E x C (masked); a_scales column-major */
    int64_t a_rows = c->masked ? e * c->cap : m;
    int64_t r4 = ((c->masked ? c->cap : m) + 3) / 4 * 4;
    void *a = dev_random((size_t)(a_rows * k) * es, fp8 ? FILL_E4M3 : FILL_BF16);
    void *sa = fp8 ? dev_random((size_t)((c->masked ? e : 1) * kb * r4) * 4, FILL_SCALE) : NULL;
    void *d = moe_bench_dev_alloc((size_t)(a_rows * n) * 2);
    /* offsets [E+1] (contiguous) or counts [E] (masked), on the device before timing */
    int32_t idx_h[MAX_CASE_EXPERTS + 1];
    int64_t idx_n = c->masked ? e : e + 1;
    idx_h[0] = 0;
    for (int64_t i = 0; i < e; i++) {
        if (c->masked) idx_h[i] = c->counts[i];
        else idx_h[i + 1] = idx_h[i] + c->counts[i];
    }
    void *idx = moe_bench_dev_alloc((size_t)idx_n * 4);
    CK(cudaMemcpy(idx, idx_h, (size_t)idx_n * 4, cudaMemcpyHostToDevice));

    moe_dtype in = fp8 ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    gemm_call g;
    memset(&g, 0, sizeof g);
    g.ctx = ctx, g.masked = c->masked, g.fp8 = fp8;
    g.b = moe_tensor_3d(b, in, e, n, k);
    g.sb = moe_tensor_3d(sb, MOE_DTYPE_F32, e, n / 128, kb);
    g.idx = moe_tensor_1d(idx, MOE_DTYPE_I32, idx_n);
    if (c->masked) {
        g.a = moe_tensor_3d(a, in, e, c->cap, k);
        g.sa = moe_tensor_3d(sa, MOE_DTYPE_F32, e, kb, r4);
        g.d = moe_tensor_3d(d, MOE_DTYPE_BF16, e, c->cap, n);
    } else {
        g.a = moe_tensor_2d(a, in, m, k);
        g.sa = moe_tensor_2d(sa, MOE_DTYPE_F32, kb, r4);
        g.d = moe_tensor_2d(d, MOE_DTYPE_BF16, m, n);
    }
    if (moe_grouped_gemm_workspace_size(ctx, (int32_t)e, &g.ws_bytes) != MOE_OK) {
        fprintf(stderr, "workspace size: %s\n", moe_last_error());
        exit(1);
    }
    g.ws = g.ws_bytes ? moe_bench_dev_alloc(g.ws_bytes) : NULL;

    double us = time_call(&g);
    const char *err = us < 0 ? moe_last_error() : NULL;

    /* bytes that must move once: A (+ scales), active experts' weights (+ scales), D */
    double bytes = (double)m * k * es + (double)active * n * k * es + (double)m * n * 2;
    if (fp8) bytes += (double)m * kb * 4 + (double)active * (n / 128) * kb * 4;
    double flops = 2.0 * m * n * k;
    double dense = fp8 ? FP8_DENSE_TFLOPS : BF16_DENSE_TFLOPS;
    double floor_us = fmax(bytes / (read_gbps * 1e3), flops / (dense * 1e6));
    const char *dt = fp8 ? "fp8" : "bf16";

    if (err) {
        printf("%-34s %-4s %6lld %4lld  FAILED: %s\n", name, dt, (long long)m, (long long)active,
               err);
    } else {
        printf("%-34s %-4s %6lld %4lld %10.1f %8.1f %8.0f %9.1f %6.1f%%\n", name, dt,
               (long long)m, (long long)active, us, flops / (us * 1e6), bytes / (us * 1e3),
               floor_us, 100.0 * floor_us / us);
    }
    fflush(stdout);

    json_printf(&cases,
                "%s  {\"name\": \"%s\", \"dtype\": \"%s\", \"T\": %lld, \"routing\": \"%s\", "
                "\"layout\": \"%s\", \"M\": %lld, \"active_experts\": %lld, \"N\": %lld, "
                "\"K\": %lld, \"bytes\": %.0f, \"flops\": %.0f, \"floor_us\": %.3f, ",
                first_case ? "" : ",\n", name, dt, (long long)c->t, c->routing,
                c->masked ? "masked" : "contiguous", (long long)m, (long long)active,
                (long long)n, (long long)k, bytes, flops, floor_us);
    if (err) {
        json_printf(&cases, "\"us\": null, \"TFLOPs\": null, \"GBps\": null, "
                            "\"pct_floor\": null, \"error\": ");
        json_string(&cases, err);
        json_printf(&cases, ", ");
    } else {
        json_printf(&cases, "\"us\": %.3f, \"TFLOPs\": %.2f, \"GBps\": %.1f, \"pct_floor\": %.2f, ",
                    us, flops / (us * 1e6), bytes / (us * 1e3), 100.0 * floor_us / us);
    }
    if (c->masked) json_printf(&cases, "\"capacity\": %lld, ", (long long)c->cap);
    json_printf(&cases, "\"counts\": [");
    for (int64_t i = 0; i < e; i++) json_printf(&cases, "%s%d", i ? ", " : "", (int)c->counts[i]);
    json_printf(&cases, "]}");
    first_case = 0;
    write_json();

    CK(cudaFree(a));
    if (sa) CK(cudaFree(sa));
    CK(cudaFree(d));
    CK(cudaFree(idx));
    if (g.ws) CK(cudaFree(g.ws));
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    json_path = argc > 1 ? argv[1] : "gemm_libmoe.json";
    moe_context *ctx = NULL;
    if (moe_context_create(&ctx, MOE_BACKEND_CUDA, 0) != MOE_OK) {
        fprintf(stderr, "moe_context_create: %s\n", moe_last_error());
        return 1;
    }
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    CK(cudaEventCreate(&ev0));
    CK(cudaEventCreate(&ev1));

    double copy_gbps = moe_bench_copy_bandwidth() / 1e9;
    read_gbps = moe_bench_read_bandwidth() / 1e9;
    int measured = read_gbps > 0.0;
    const char *read_source = "read kernel over 2 GiB, best of 10 (bench/bench_gpu.cu)";
    if (!measured) {
        read_gbps = MOE_BENCH_FALLBACK_READ_BPS / 1e9;
        fprintf(stderr, "read bandwidth not measured: using %.0f GB/s\n", read_gbps);
        read_source = "docs/ANCHORS.md (the read kernel failed)";
    }
    snprintf(header_json, sizeof header_json,
             "\"gpu\": \"%s\", \"read_GBps\": %.1f, \"read_source\": \"%s\", "
             "\"copy_GBps\": %.1f, \"fp8_dense_TFLOPs\": %.0f, \"bf16_dense_TFLOPs\": %.0f, "
             "\"iters\": %d, \"l2_flush\": \"read of 256 MB before each call\"",
             prop.name, read_gbps, read_source, copy_gbps, FP8_DENSE_TFLOPS, BF16_DENSE_TFLOPS,
             ITERS);
    write_json();
    printf("%s: read %.0f GB/s (%s), copy %.0f GB/s (read + written); floor = max(bytes / "
           "read, flops / dense %.0f fp8, %.0f bf16 TFLOP/s)\n",
           prop.name, read_gbps, measured ? "measured" : "fallback", copy_gbps, FP8_DENSE_TFLOPS,
           BF16_DENSE_TFLOPS);
    printf("%-34s %-4s %6s %4s %10s %8s %8s %9s %7s\n", "case", "type", "M", "act", "us",
           "TFLOP/s", "GB/s", "floor us", "%floor");

    flush_buf = moe_bench_flush_alloc();
    if (!flush_buf) {
        fprintf(stderr, "moe-bench-gemm: cannot allocate the L2 flush buffer\n");
        return 1;
    }
    make_chunks();

    /* routing depends only on (T, skew): drawn once, shared by every dtype and shape */
    enum { NU = sizeof uniform_tokens / sizeof uniform_tokens[0],
           NZ = sizeof zipf_tokens / sizeof zipf_tokens[0] };
    static int32_t uni[NU][EXPERTS], zipf[NZ][EXPERTS];
    for (int i = 0; i < NU; i++) route_counts(uniform_tokens[i], 0.0, uni[i]);
    for (int i = 0; i < NZ; i++) route_counts(zipf_tokens[i], ZIPF_SKEW, zipf[i]);

    for (int fp8 = 1; fp8 >= 0; fp8--) {
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const shape *sh = &shapes[si];
            weights w = {NULL, NULL};
            for (int i = 0; i < NU; i++) {
                case_desc c = {"uniform", uniform_tokens[i], 0, EXPERTS, 0, uni[i]};
                run_case(ctx, fp8, sh, &w, &c);
            }
            for (int i = 0; i < NZ; i++) {
                case_desc c = {"zipf1.2", zipf_tokens[i], 0, EXPERTS, 0, zipf[i]};
                run_case(ctx, fp8, sh, &w, &c);
            }
            /* DeepGEMM's shapes use the first few experts of the same weights */
            static const int32_t full8192[4] = {8192, 8192, 8192, 8192};
            case_desc contig = {"deepgemm", 0, 0, 4, 0, full8192};
            run_case(ctx, fp8, sh, &w, &contig);
            /* masked: every group full (counts = C), as DeepGEMM's table reports */
            static const int32_t masked_shapes[3][2] = {{1, 1024}, {2, 512}, {4, 256}};
            for (int i = 0; i < 3; i++) {
                int32_t g = masked_shapes[i][0], cap = masked_shapes[i][1];
                if (si == 1 && g != 4) continue; /* the down shape: DeepGEMM lists 4x256 only */
                int32_t counts[4] = {cap, cap, cap, cap};
                case_desc c = {"deepgemm", 0, 1, g, cap, counts};
                run_case(ctx, fp8, sh, &w, &c);
            }
            if (w.b) CK(cudaFree(w.b));
            if (w.sb) CK(cudaFree(w.sb));
        }
    }
    for (int kind = 0; kind < FILL_KINDS; kind++) CK(cudaFree(chunk_dev[kind]));
    CK(cudaFree(flush_buf));
    moe_context_destroy(ctx);
    return 0;
}
