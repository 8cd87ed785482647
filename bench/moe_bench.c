/* moe-bench: runs one MoE layer of a model preset with random weights from a fixed seed
 * and prints the time, a per-step breakdown and a checksum of the output.
 *
 * --layer (GPU only) sweeps presets x token counts instead: bench/layer_sweep.c. The random
 * data and backend buffers both modes use are in bench/bench_data.c. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/common/formats.h"
#include "bench_data.h"
#include "moe.h"
#include "presets.h"

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "layer_sweep.h"
#include "nvtx_ranges.h"
#endif

typedef struct {
    const char *preset;
    const char *backend; /* "auto", "cpu", "cuda" */
    const char *weights; /* "fp8", "bf16" ("both": --layer only) */
    const char *json;
    const char *tokens_list; /* --layer: "1,32,512,4096" by default */
    long tokens; /* 0: the backend's default */
    int iters;
    int layer;   /* --layer: the GPU sweep over presets and token counts */
    unsigned long long seed;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: moe-bench [--preset NAME] [--tokens T] [--weights fp8|bf16]\n"
            "                 [--backend auto|cpu|cuda] [--iters N] [--seed S] [--json FILE]\n"
            "                 [--list]\n"
            "       moe-bench --layer [--preset NAME] [--tokens-list 1,32,512,4096]\n"
            "                 [--weights fp8|bf16|both] [--iters N] [--seed S] [--json FILE]\n"
            "Runs one MoE layer with random weights and prints time per step and a checksum.\n"
            "Defaults: the GPU runs deepseek-v3 at T=128; the CPU runs qwen3-30b-a3b at T=16.\n"
            "--layer (GPU only): every preset but tiny (or --preset) at each T, fp8 weights by\n"
            "default: eager and CUDA-graph medians (N=20 iterations, fewer for slow cases),\n"
            "time per step, experts touched and the memory floor; --json keeps every case.\n");
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

#define MAX_TOKEN_COUNTS 32

/* "1,32,512" -> ts[]; 0 (with a message) on anything but positive integers. */
static int parse_tokens_list(const char *s, long *ts, int *n) {
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0 || (*end && *end != ',') || *n == MAX_TOKEN_COUNTS) {
            fprintf(stderr, "moe-bench: --tokens-list wants up to %d positive integers "
                            "joined by commas\n", MAX_TOKEN_COUNTS);
            return 0;
        }
        ts[(*n)++] = v;
        s = *end ? end + 1 : end;
    }
    if (!*n) fprintf(stderr, "moe-bench: --tokens-list is empty\n");
    return *n > 0;
}

static int parse(int argc, char **argv, options *o) {
    *o = (options){NULL, "auto", NULL, NULL, NULL, 0, 0, 0, 1234};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        if (!strcmp(a, "--list")) { list_presets(); exit(0); }
        if (!strcmp(a, "--layer")) { o->layer = 1; continue; }
        if (!v) { fprintf(stderr, "moe-bench: %s needs a value\n", a); return 0; }
        if (!strcmp(a, "--preset")) o->preset = v;
        else if (!strcmp(a, "--backend")) o->backend = v;
        else if (!strcmp(a, "--weights")) o->weights = v;
        else if (!strcmp(a, "--json")) o->json = v;
        else if (!strcmp(a, "--tokens")) o->tokens = strtol(v, NULL, 10);
        else if (!strcmp(a, "--tokens-list")) o->tokens_list = v;
        else if (!strcmp(a, "--iters")) o->iters = atoi(v);
        else if (!strcmp(a, "--seed")) o->seed = strtoull(v, NULL, 10);
        else { fprintf(stderr, "moe-bench: unknown option %s\n", a); return 0; }
        i++;
    }
    if (!o->weights) o->weights = "fp8";
    if (strcmp(o->weights, "fp8") && strcmp(o->weights, "bf16") &&
        (!o->layer || strcmp(o->weights, "both"))) {
        fprintf(stderr, "moe-bench: --weights must be fp8 or bf16%s, not %s\n",
                o->layer ? " or both" : " (both: with --layer)", o->weights);
        return 0;
    }
    if (o->tokens < 0 || o->iters < 0) {
        fprintf(stderr, "moe-bench: --tokens and --iters must be positive\n");
        return 0;
    }
    if (o->tokens_list && !o->layer) {
        fprintf(stderr, "moe-bench: --tokens-list goes with --layer (one run: --tokens)\n");
        return 0;
    }
    if (o->tokens_list && o->tokens) {
        fprintf(stderr, "moe-bench: give --tokens or --tokens-list, not both\n");
        return 0;
    }
    long ts[MAX_TOKEN_COUNTS];
    int nt;
    if (o->tokens_list && !parse_tokens_list(o->tokens_list, ts, &nt)) return 0;
    return 1;
}

/* ---------------------------------------------------------------- step timing
 * CPU: wall clock around each step; GPU: CUDA events on the stream, read after the forward. */

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
    if (buffers_on_gpu()) {
        if (!end) NVTX_PUSH(moe_layer_step_name(step));
        cudaEventRecord(st->ev[step][end], 0);
        if (end) NVTX_POP();
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
    if (!buffers_on_gpu()) return;
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

/* ---------------------------------------------------------------- one run */

static int run_single(options *o) {
    moe_backend backend = MOE_BACKEND_CPU;
    if (!strcmp(o->backend, "cuda") ||
        (!strcmp(o->backend, "auto") && moe_backend_available(MOE_BACKEND_CUDA)))
        backend = MOE_BACKEND_CUDA;
    else if (strcmp(o->backend, "cpu") && strcmp(o->backend, "auto")) {
        fprintf(stderr, "moe-bench: --backend must be auto, cpu or cuda\n");
        return 2;
    }
    int on_gpu = backend == MOE_BACKEND_CUDA;
    set_buffers_on_gpu(on_gpu);
#ifndef MOE_HAVE_CUDA
    if (on_gpu) {
        fprintf(stderr, "moe-bench: this build has no CUDA backend\n");
        return 1;
    }
#endif
    if (!o->preset) o->preset = on_gpu ? "deepseek-v3" : "qwen3-30b-a3b";
    if (!o->tokens) o->tokens = on_gpu ? 128 : 16;
    if (!o->iters) o->iters = on_gpu ? 20 : 3;
    const bench_preset *p = bench_find_preset(o->preset);
    if (!p) {
        fprintf(stderr, "moe-bench: unknown preset %s (see --list)\n", o->preset);
        return 2;
    }
    moe_layer_config cfg = p->cfg;
    int fp8 = !strcmp(o->weights, "fp8");
    cfg.weights = fp8 ? MOE_WEIGHTS_FP8_BLOCKWISE : MOE_WEIGHTS_BF16;
    int64_t h = cfg.hidden, in = cfg.intermediate;
    int64_t t = o->tokens;
    random_seed(o->seed);

    moe_context *ctx = NULL;
    moe_status s = moe_context_create(&ctx, backend, 0);
    if (s) return report_moe_failure("moe_context_create", s);

    double t0 = now_ms();
    moe_layer_weights w;
    memset(&w, 0, sizeof w);
    size_t weight_bytes = random_expert_weights(&cfg, &w);
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
    if (s) return report_moe_failure("moe_layer_create", s);
    size_t ws_bytes = 0;
    s = moe_layer_workspace_size(layer, t, &ws_bytes);
    if (s) return report_moe_failure("moe_layer_workspace_size", s);
    void *ws = to_backend(xmalloc(ws_bytes), ws_bytes);

    step_times st;
    memset(&st, 0, sizeof st);
    st.ms = xmalloc(sizeof(double) * (size_t)(o->iters * MOE_STEP_COUNT));
    double *total = xmalloc(sizeof(double) * (size_t)o->iters);
#ifdef MOE_HAVE_CUDA
    if (on_gpu) {
        for (int k = 0; k < MOE_STEP_COUNT; k++)
            for (int j = 0; j < 2; j++) cuda_or_die(cudaEventCreate(&st.ev[k][j]), "cudaEventCreate");
        /* warm-up: module loading and first-touch stay out of the numbers */
        s = moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, ws, ws_bytes, NULL);
        if (s) return report_moe_failure("moe_layer_forward", s);
        cuda_or_die(cudaDeviceSynchronize(), "warm-up");
    }
#endif
    moe_layer_set_step_hook(layer, on_step, &st);
    for (st.iter = 0; st.iter < o->iters; st.iter++) {
        double a = now_ms();
        s = moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, ws, ws_bytes, NULL);
        if (s) return report_moe_failure("moe_layer_forward", s);
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
    double weight_mb = (double)weight_bytes / 1e6;
    printf("libmoe %s | backend %s | %s (%s) | E=%d k=%d H=%lld I=%lld S=%d | %s weights | T=%lld\n",
           moe_version(), backend == MOE_BACKEND_CPU ? "cpu" : "cuda", p->name, p->model,
           (int)cfg.num_experts, (int)cfg.topk, (long long)h, (long long)in, (int)cfg.num_shared,
           o->weights, (long long)t);
    printf("weights: %.1f MB, generated in %.0f ms; workspace %.1f MB\n", weight_mb, gen_ms,
           (double)ws_bytes / 1e6);
    printf("%-10s %12s %7s\n", "step", "ms (median)", "share");
    double med_total = median(total, o->iters), step_ms[MOE_STEP_COUNT];
    double *col = xmalloc(sizeof(double) * (size_t)o->iters);
    for (int k = 0; k < MOE_STEP_COUNT; k++) {
        for (int i = 0; i < o->iters; i++) col[i] = st.ms[i * MOE_STEP_COUNT + k];
        step_ms[k] = median(col, o->iters);
        printf("%-10s %12.3f %6.1f%%\n", moe_layer_step_name((moe_layer_step)k), step_ms[k],
               med_total > 0 ? 100.0 * step_ms[k] / med_total : 0.0);
    }
    printf("%-10s %12.3f   (median of %d)\n", "total", med_total, o->iters);
    printf("checksum: sum %.6e  sum|x| %.6e\n", sum, sum_abs);
    if (o->json) {
        FILE *f = fopen(o->json, "w");
        if (!f) {
            fprintf(stderr, "moe-bench: cannot write %s\n", o->json);
            return 1;
        }
        fprintf(f, "{\"version\": \"%s\", \"backend\": \"%s\", \"preset\": \"%s\", \"weights\": \"%s\", "
                   "\"tokens\": %lld, \"iters\": %d, \"seed\": %llu, \"total_ms\": %.6f, \"steps_ms\": {",
                moe_version(), backend == MOE_BACKEND_CPU ? "cpu" : "cuda", p->name, o->weights,
                (long long)t, o->iters, o->seed, med_total);
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
        if (bufs[i]) buffer_free(bufs[i]);
    return 0;
}

int main(int argc, char **argv) {
    options o;
    if (!parse(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if (!o.layer) return run_single(&o);
    if (!strcmp(o.backend, "cpu")) {
        fprintf(stderr, "moe-bench: --layer times the layer on a GPU; it has no CPU mode\n");
        return 2;
    }
#ifdef MOE_HAVE_CUDA
    if (!moe_backend_available(MOE_BACKEND_CUDA)) {
        fprintf(stderr, "moe-bench: --layer needs a GPU, and the CUDA backend found none\n");
        return 2;
    }
    long ts[MAX_TOKEN_COUNTS];
    int nt = 0;
    if (o.tokens) ts[nt++] = o.tokens;
    else if (!parse_tokens_list(o.tokens_list ? o.tokens_list : "1,32,512,4096", ts, &nt))
        return 2;
    layer_sweep_options sweep = {o.preset, o.weights, o.json, ts, nt, o.iters, o.seed};
    return run_layer_sweep(&sweep);
#else
    fprintf(stderr, "moe-bench: --layer needs a GPU, and this build has no CUDA backend "
                    "(configure with -DMOE_CUDA=ON)\n");
    return 2;
#endif
}
