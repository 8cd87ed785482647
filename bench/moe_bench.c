/* moe-bench: runs one MoE layer of a model preset with random weights from a fixed seed
 * and prints the time, a per-step breakdown and a checksum of the output. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/common/formats.h"
#include "moe.h"
#include "presets.h"

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

typedef struct {
    const char *preset;
    const char *backend; /* "auto", "cpu", "cuda" */
    const char *weights; /* "fp8", "bf16" */
    const char *json;
    long tokens; /* 0: the backend's default */
    int iters;
    unsigned long long seed;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: moe-bench [--preset NAME] [--tokens T] [--weights fp8|bf16]\n"
            "                 [--backend auto|cpu|cuda] [--iters N] [--seed S] [--json FILE]\n"
            "                 [--list]\n"
            "Runs one MoE layer with random weights and prints time per step and a checksum.\n"
            "Defaults: the GPU runs deepseek-v3 at T=128; the CPU runs qwen3-30b-a3b at T=16.\n");
}

static void list_presets(void) {
    printf("%-16s %-26s %5s %4s %6s %6s  routing\n", "preset", "model", "E", "k", "H", "I");
    for (size_t i = 0; i < sizeof bench_presets / sizeof bench_presets[0]; i++) {
        const moe_layer_config *c = &bench_presets[i].cfg;
        printf("%-16s %-26s %5d %4d %6lld %6lld  %s\n", bench_presets[i].name,
               bench_presets[i].model, (int)c->num_experts, (int)c->topk,
               (long long)c->hidden, (long long)c->intermediate,
               c->routing == MOE_ROUTING_SOFTMAX ? "softmax" : "grouped sigmoid + bias");
    }
}

static int parse(int argc, char **argv, options *o) {
    *o = (options){NULL, "auto", "fp8", NULL, 0, 0, 1234};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        if (!strcmp(a, "--list")) { list_presets(); exit(0); }
        if (!v) { fprintf(stderr, "moe-bench: %s needs a value\n", a); return 0; }
        if (!strcmp(a, "--preset")) o->preset = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--weights")) o->weights = v;
        else if (!strcmp(a, "--json")) o->json = v;
        else if (!strcmp(a, "--tokens")) o->tokens = strtol(v, NULL, 10);
        else if (!strcmp(a, "--iters")) o->iters = atoi(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else { fprintf(stderr, "moe-bench: unknown option %s\n", a); return 0; }
        i++;
    }
    if (strcmp(o->weights, "fp8") && strcmp(o->weights, "bf16")) {
        fprintf(stderr, "moe-bench: --weights must be fp8 or bf16, not %s\n", o->weights);
        return 0;
    }
    if (o->tokens < 0 || o->iters < 0) {
        fprintf(stderr, "moe-bench: --tokens and --iters must be positive\n");
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- random data */

static unsigned long long rng_state;

static unsigned long long next_u64(void) {
    unsigned long long z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float next_signed(void) { return (float)((double)(next_u64() >> 11) * 0x1p-52 - 1.0); }

/* e4m3 codes with magnitudes in [2^-9, 1.875] (no NaN, nothing near saturation). */
static void fill_e4m3(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i += 8) {
        unsigned long long r = next_u64();
        for (size_t b = 0; b < 8 && i + b < n; b++) p[i + b] = (uint8_t)((r >> (8 * b)) & 0xbf);
    }
}

static void fill_bf16(uint16_t *p, size_t n, float amp) {
    for (size_t i = 0; i < n; i++) p[i] = moe_f32_to_bf16(amp * next_signed());
}

static void fill_f32(float *p, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * 0.5f * (next_signed() + 1.0f);
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "moe-bench: cannot allocate %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}

/* ---------------------------------------------------------------- backend memory
 * Buffers live where the backend works. On the GPU, big random tensors are made by
 * repeating one host chunk: generating 11 GB of DeepSeek-V3 weights on the host would
 * take longer than the benchmark. */

static int on_gpu;
#define CHUNK_BYTES ((size_t)64 << 20)

#ifdef MOE_HAVE_CUDA
static void cuda_or_die(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        fprintf(stderr, "moe-bench: %s: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}
#endif

/* Takes a host buffer of bytes (filled for its first min(bytes, CHUNK_BYTES)) and returns
 * the backend's buffer: the same on the CPU, a device copy repeating the chunk on the GPU. */
static void *to_backend(void *host, size_t bytes) {
    if (!on_gpu) return host;
#ifdef MOE_HAVE_CUDA
    void *d = NULL;
    cuda_or_die(cudaMalloc(&d, bytes ? bytes : 1), "cudaMalloc");
    for (size_t o = 0; o < bytes; o += CHUNK_BYTES) {
        size_t n = bytes - o < CHUNK_BYTES ? bytes - o : CHUNK_BYTES;
        cuda_or_die(cudaMemcpy((char *)d + o, host, n, cudaMemcpyHostToDevice), "cudaMemcpy");
    }
    free(host);
    return d;
#else
    return host;
#endif
}

/* Bytes of a host buffer that need generating before to_backend. */
static size_t gen_bytes(size_t bytes) {
    return on_gpu && bytes > CHUNK_BYTES ? CHUNK_BYTES : bytes;
}

static void buf_free(void *p) {
    if (!on_gpu) {
        free(p);
        return;
    }
#ifdef MOE_HAVE_CUDA
    cudaFree(p);
#endif
}

static void to_host(void *dst, const void *src, size_t bytes) {
    if (!on_gpu) {
        memcpy(dst, src, bytes);
        return;
    }
#ifdef MOE_HAVE_CUDA
    cuda_or_die(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
#endif
}

/* A random tensor's storage: e4m3 codes, bf16 of amplitude amp, or f32 in [lo, hi). */
static void *rand_e4m3(size_t n) {
    void *h = xmalloc(gen_bytes(n));
    fill_e4m3(h, gen_bytes(n));
    return to_backend(h, n);
}
static void *rand_bf16(size_t n, float amp) {
    size_t g = gen_bytes(n * 2);
    void *h = xmalloc(g);
    fill_bf16(h, g / 2, amp);
    return to_backend(h, n * 2);
}
static void *rand_f32(size_t n, float lo, float hi) {
    size_t g = gen_bytes(n * 4);
    void *h = xmalloc(g);
    fill_f32(h, g / 4, lo, hi);
    return to_backend(h, n * 4);
}

/* ---------------------------------------------------------------- timing */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

typedef struct {
    double begin[MOE_STEP_COUNT];
    double *ms; /* [iters][MOE_STEP_COUNT] */
    int iter;
#ifdef MOE_HAVE_CUDA
    cudaEvent_t ev[MOE_STEP_COUNT][2]; /* GPU: recorded on the stream around each step */
    int recorded[MOE_STEP_COUNT];
#endif
} step_times;

static void on_step(void *user, moe_layer_step step, int end) {
    step_times *st = user;
#ifdef MOE_HAVE_CUDA
    if (on_gpu) {
        cudaEventRecord(st->ev[step][end], 0);
        st->recorded[step] = 1;
        return;
    }
#endif
    if (!end) st->begin[step] = now_ms();
    else st->ms[st->iter * MOE_STEP_COUNT + step] = now_ms() - st->begin[step];
}

/* After an iteration: the GPU's step times from its events (0 for steps not run). */
static void collect_steps(step_times *st) {
#ifdef MOE_HAVE_CUDA
    if (!on_gpu) return;
    cuda_or_die(cudaDeviceSynchronize(), "forward");
    for (int k = 0; k < MOE_STEP_COUNT; k++) {
        float ms = 0;
        if (st->recorded[k]) cudaEventElapsedTime(&ms, st->ev[k][0], st->ev[k][1]);
        st->ms[st->iter * MOE_STEP_COUNT + k] = ms;
        st->recorded[k] = 0;
    }
#else
    (void)st;
#endif
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---------------------------------------------------------------- main */

static int fail(const char *what, moe_status s) {
    fprintf(stderr, "moe-bench: %s failed: %s: %s\n", what, moe_status_string(s), moe_last_error());
    return 1;
}

int main(int argc, char **argv) {
    options o;
    if (!parse(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    moe_backend backend = MOE_BACKEND_CPU;
    if (!strcmp(o.backend, "cuda") ||
        (!strcmp(o.backend, "auto") && moe_backend_available(MOE_BACKEND_CUDA)))
        backend = MOE_BACKEND_CUDA;
    else if (strcmp(o.backend, "cpu") && strcmp(o.backend, "auto")) {
        fprintf(stderr, "moe-bench: --backend must be auto, cpu or cuda\n");
        return 2;
    }
    on_gpu = backend == MOE_BACKEND_CUDA;
#ifndef MOE_HAVE_CUDA
    if (on_gpu) {
        fprintf(stderr, "moe-bench: this build has no CUDA backend\n");
        return 1;
    }
#endif
    if (!o.preset) o.preset = on_gpu ? "deepseek-v3" : "qwen3-30b-a3b";
    if (!o.tokens) o.tokens = on_gpu ? 128 : 16;
    if (!o.iters) o.iters = on_gpu ? 20 : 3;
    const bench_preset *p = bench_find_preset(o.preset);
    if (!p) {
        fprintf(stderr, "moe-bench: unknown preset %s (see --list)\n", o.preset);
        return 2;
    }
    moe_layer_config cfg = p->cfg;
    int fp8 = !strcmp(o.weights, "fp8");
    cfg.weights = fp8 ? MOE_WEIGHTS_FP8_BLOCKWISE : MOE_WEIGHTS_BF16;
    int64_t e = cfg.num_experts + cfg.num_shared, h = cfg.hidden, in = cfg.intermediate;
    int64_t t = o.tokens;
    rng_state = o.seed;

    moe_context *ctx = NULL;
    moe_status s = moe_context_create(&ctx, backend, 0);
    if (s) return fail("moe_context_create", s);

    double t0 = now_ms();
    moe_layer_weights w;
    memset(&w, 0, sizeof w);
    moe_dtype wt = fp8 ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    size_t n1 = (size_t)(e * 2 * in * h), n2 = (size_t)(e * h * in);
    if (fp8) {
        size_t s1 = (size_t)(e * 2 * in * h / 16384), s2 = (size_t)(e * h * in / 16384);
        w.w1 = moe_tensor_3d(rand_e4m3(n1), wt, e, 2 * in, h);
        w.w2 = moe_tensor_3d(rand_e4m3(n2), wt, e, h, in);
        w.w1_scales = moe_tensor_3d(rand_f32(s1, 1.0f / sqrtf((float)h), 2.0f / sqrtf((float)h)),
                                    MOE_DTYPE_F32, e, 2 * in / 128, h / 128);
        w.w2_scales = moe_tensor_3d(rand_f32(s2, 1.0f / sqrtf((float)in), 2.0f / sqrtf((float)in)),
                                    MOE_DTYPE_F32, e, h / 128, in / 128);
    } else {
        w.w1 = moe_tensor_3d(rand_bf16(n1, 1.7f / sqrtf((float)h)), wt, e, 2 * in, h);
        w.w2 = moe_tensor_3d(rand_bf16(n2, 1.7f / sqrtf((float)in)), wt, e, h, in);
    }
    if (cfg.routing == MOE_ROUTING_GROUPED_SIGMOID)
        w.router_bias = moe_tensor_1d(rand_f32((size_t)cfg.num_experts, -0.05f, 0.05f),
                                      MOE_DTYPE_F32, cfg.num_experts);
    moe_tensor x = moe_tensor_2d(rand_bf16((size_t)(t * h), 2.0f), MOE_DTYPE_BF16, t, h);
    moe_tensor logits = moe_tensor_2d(rand_f32((size_t)(t * cfg.num_experts), -3.0f, 3.0f),
                                      MOE_DTYPE_F32, t, cfg.num_experts);
    moe_tensor out = moe_tensor_2d(to_backend(xmalloc((size_t)(t * h) * 2), (size_t)(t * h) * 2),
                                   MOE_DTYPE_BF16, t, h);
    double gen_ms = now_ms() - t0;

    moe_layer *layer = NULL;
    s = moe_layer_create(&layer, ctx, &cfg, &w);
    if (s) return fail("moe_layer_create", s);
    size_t ws_bytes = 0;
    s = moe_layer_workspace_size(layer, t, &ws_bytes);
    if (s) return fail("moe_layer_workspace_size", s);
    void *ws = to_backend(xmalloc(ws_bytes), ws_bytes);

    step_times st;
    memset(&st, 0, sizeof st);
    st.ms = xmalloc(sizeof(double) * (size_t)(o.iters * MOE_STEP_COUNT));
    double *total = xmalloc(sizeof(double) * (size_t)o.iters);
#ifdef MOE_HAVE_CUDA
    if (on_gpu) {
        for (int k = 0; k < MOE_STEP_COUNT; k++)
            for (int j = 0; j < 2; j++) cuda_or_die(cudaEventCreate(&st.ev[k][j]), "cudaEventCreate");
        /* warm-up: module loading and first-touch stay out of the numbers */
        s = moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, ws, ws_bytes, NULL);
        if (s) return fail("moe_layer_forward", s);
        cuda_or_die(cudaDeviceSynchronize(), "warm-up");
    }
#endif
    moe_layer_set_step_hook(layer, on_step, &st);
    for (st.iter = 0; st.iter < o.iters; st.iter++) {
        double a = now_ms();
        s = moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, ws, ws_bytes, NULL);
        if (s) return fail("moe_layer_forward", s);
        collect_steps(&st);
        total[st.iter] = now_ms() - a;
    }

    double sum = 0, sum_abs = 0;
    uint16_t *out_host = xmalloc((size_t)(t * h) * 2);
    to_host(out_host, out.data, (size_t)(t * h) * 2);
    for (int64_t i = 0; i < t * h; i++) {
        double v = moe_bf16_to_f32(out_host[i]);
        sum += v;
        sum_abs += fabs(v);
    }
    double weight_mb = (double)(n1 + n2) * moe_dtype_size(wt) / 1e6;
    printf("libmoe %s | backend %s | %s (%s) | E=%d k=%d H=%lld I=%lld S=%d | %s weights | T=%lld\n",
           moe_version(), backend == MOE_BACKEND_CPU ? "cpu" : "cuda", p->name, p->model,
           (int)cfg.num_experts, (int)cfg.topk, (long long)h, (long long)in, (int)cfg.num_shared,
           o.weights, (long long)t);
    printf("weights: %.1f MB, generated in %.0f ms; workspace %.1f MB\n", weight_mb, gen_ms,
           (double)ws_bytes / 1e6);
    printf("%-10s %12s %7s\n", "step", "ms (median)", "share");
    double med_total = median(total, o.iters), step_ms[MOE_STEP_COUNT];
    double *col = xmalloc(sizeof(double) * (size_t)o.iters);
    for (int k = 0; k < MOE_STEP_COUNT; k++) {
        for (int i = 0; i < o.iters; i++) col[i] = st.ms[i * MOE_STEP_COUNT + k];
        step_ms[k] = median(col, o.iters);
        printf("%-10s %12.3f %6.1f%%\n", moe_layer_step_name((moe_layer_step)k), step_ms[k],
               med_total > 0 ? 100.0 * step_ms[k] / med_total : 0.0);
    }
    printf("%-10s %12.3f   (median of %d)\n", "total", med_total, o.iters);
    printf("checksum: sum %.6e  sum|x| %.6e\n", sum, sum_abs);
    if (o.json) {
        FILE *f = fopen(o.json, "w");
        if (!f) {
            fprintf(stderr, "moe-bench: cannot write %s\n", o.json);
            return 1;
        }
        fprintf(f, "{\"version\": \"%s\", \"backend\": \"%s\", \"preset\": \"%s\", \"weights\": \"%s\", "
                   "\"tokens\": %lld, \"iters\": %d, \"seed\": %llu, \"total_ms\": %.6f, \"steps_ms\": {",
                moe_version(), backend == MOE_BACKEND_CPU ? "cpu" : "cuda", p->name, o.weights,
                (long long)t, o.iters, o.seed, med_total);
        for (int k = 0; k < MOE_STEP_COUNT; k++)
            fprintf(f, "%s\"%s\": %.6f", k ? ", " : "", moe_layer_step_name((moe_layer_step)k), step_ms[k]);
        fprintf(f, "}, \"checksum\": {\"sum\": %.9e, \"sum_abs\": %.9e}}\n", sum, sum_abs);
        fclose(f);
    }
    moe_layer_destroy(layer);
    moe_context_destroy(ctx);
    free(col), free(total), free(st.ms), free(out_host);
    void *bufs[] = {ws, w.w1.data, w.w2.data, w.w1_scales.data, w.w2_scales.data,
                    w.router_bias.data, x.data, logits.data, out.data};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) buf_free(bufs[i]);
    return 0;
}
