/* moe-bench --layer: the GPU sweep over presets x token counts. Per case the eager forward's
 * median time and per-step breakdown (CUDA events from the step hook, NVTX ranges for
 * Nsight), the median replay time of the forward captured in a CUDA graph, the distinct
 * experts the routing touched and the memory floor (their weights over the read bandwidth
 * measured at startup by bench/bench_gpu.cu); printed as a table and kept in JSON.
 *
 * Per (weights, preset): weights, inputs and buffers made once for the largest T (smaller
 * T use the leading rows) and freed before the next preset. Per T: the routing op on the
 * same logits gives the experts touched (outside any timing); then eager forwards with the
 * step hook's CUDA events and NVTX ranges, and replays of the forward captured in a CUDA
 * graph. L2 is flushed before every timed forward or replay by reading 256 MB
 * (bench/bench_gpu.cu); the replays are also timed after a 256 MB memset, triton do_bench's
 * flush, which leaves ~50 MB of dirty lines for the layer to write back. Iterations are
 * queued without host synchronisation. */
#define _POSIX_C_SOURCE 200809L
#include "layer_sweep.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/common/formats.h"
#include "bench_data.h"
#include "bench_gpu.h"
#include "json_buf.h"
#include "nvtx_ranges.h"
#include "presets.h"


#define WARMUP_ITERS 3
#define MODE_BUDGET_MS 400.0 /* eager and graph each: iterations shrink to fit */
#define MIN_ITERS 5

/* ---- JSON: the header and the cases so far, rewritten whole after every case */

static json_buf jb;

/* A number, or null for the negative "not measured" marker. */
static void jnum(const char *key, double v, int decimals) {
    if (v < 0 || v != v) json_printf(&jb, ", \"%s\": null", key);
    else json_printf(&jb, ", \"%s\": %.*f", key, decimals, v);
}

static const char *json_path;
static size_t json_header_len; /* jb.s[0 .. json_header_len) is the header */
static int json_cases;

static void write_layer_json(void) {
    if (!json_path) return;
    FILE *f = fopen(json_path, "w");
    if (!f) {
        fprintf(stderr, "moe-bench: cannot write %s\n", json_path);
        exit(1);
    }
    fprintf(f, "%.*s, \"cases\": [\n%s\n]}\n", (int)json_header_len, jb.s, jb.s + json_header_len);
    fclose(f);
}

/* ---- one case */

typedef struct {
    cudaStream_t stream;
    cudaEvent_t *ev;    /* [iters][MOE_STEP_COUNT][2] step begin/end, then [iters][2] totals */
    unsigned char *ran; /* [iters][MOE_STEP_COUNT] */
    int iter, max_iters;
} layer_timer;

static cudaEvent_t *step_event(layer_timer *lt, int it, int step, int end) {
    return &lt->ev[((size_t)it * MOE_STEP_COUNT + (size_t)step) * 2 + (size_t)end];
}
static cudaEvent_t *total_event(layer_timer *lt, int it, int end) {
    return &lt->ev[(size_t)lt->max_iters * MOE_STEP_COUNT * 2 + (size_t)it * 2 + (size_t)end];
}

static void on_layer_step(void *user, moe_layer_step step, int end) {
    layer_timer *lt = user;
    if (!end) NVTX_PUSH(moe_layer_step_name(step));
    cudaEventRecord(*step_event(lt, lt->iter, step, end), lt->stream);
    if (end) NVTX_POP();
    lt->ran[lt->iter * MOE_STEP_COUNT + step] = 1;
}

static double event_us(cudaEvent_t a, cudaEvent_t b) {
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, a, b) != cudaSuccess) {
        cudaGetLastError();
        return -1.0;
    }
    return ms * 1e3;
}

/* The buffers of one (preset, weights) run, sized for its largest T. */
typedef struct {
    const bench_preset *p;
    const char *wname; /* "fp8", "bf16" */
    moe_layer_config cfg;
    moe_layer *layer;
    moe_context *ctx;
    moe_layer_weights w;
    void *x, *logits, *out, *ws, *ids, *rw, *flush;
    size_t ws_bytes;
    int kp;               /* k' = k + (S > 0) */
    double expert_bytes;  /* w1 + w2 (+ FP8 block scales) of one expert */
    double read_bps;
} layer_run;

typedef struct {
    long t;
    int iters_eager, iters_graph;
    double eager_us, graph_us, step_us[MOE_STEP_COUNT], glue_us, glue_pct;
    double graph_memset_us; /* replays after a memset flush instead of a read */
    long touched, rows;
    double floor_us, flops;
    /* output checks: eager output's mean |x| and non-finite count; values where the graph
     * replay's output differs from the eager one (-1: not compared) and the largest diff */
    double out_abs_mean, graph_max_diff;
    long out_nonfinite, graph_mismatch;
    char error[320];
} layer_case;

/* Records a failure in c (the first one wins). */
static int case_fail(layer_case *c, const char *what, const char *why) {
    if (!c->error[0]) snprintf(c->error, sizeof c->error, "%s: %s", what, why);
    return 0;
}
static int cu_ok(layer_case *c, cudaError_t e, const char *what) {
    return e == cudaSuccess ? 1 : case_fail(c, what, cudaGetErrorString(e));
}
static int moe_ok(layer_case *c, moe_status s, const char *what) {
    return s == MOE_OK ? 1 : case_fail(c, what, moe_last_error());
}

/* Distinct experts (routed and shared) the routing op picks for the first t tokens, and
 * the (token, expert) pairs: the expert weights that must be read and the GEMM rows. */
static int count_touched(layer_run *r, long t, layer_case *c) {
    const moe_layer_config *cfg = &r->cfg;
    moe_tensor logits = moe_tensor_2d(r->logits, MOE_DTYPE_F32, t, cfg->num_experts);
    moe_tensor ids = moe_tensor_2d(r->ids, MOE_DTYPE_I32, t, r->kp);
    moe_tensor wts = moe_tensor_2d(r->rw, MOE_DTYPE_F32, t, r->kp);
    moe_status s;
    if (cfg->routing == MOE_ROUTING_SOFTMAX) {
        s = moe_route_softmax_topk(r->ctx, &logits, cfg->topk, cfg->renormalize, &ids, &wts,
                                   NULL);
    } else {
        moe_grouped_topk_params gp = {cfg->num_groups, cfg->topk_group, cfg->topk,
                                      cfg->renormalize, cfg->routed_scaling_factor,
                                      cfg->scale_output, cfg->num_shared};
        s = moe_route_grouped_topk(r->ctx, &logits, r->w.router_bias.data ? &r->w.router_bias : NULL,
                                   &gp, &ids, &wts, NULL);
    }
    if (!moe_ok(c, s, "routing (experts touched)")) return 0;
    size_t n = (size_t)t * (size_t)r->kp;
    int32_t *h = xmalloc(n * sizeof *h);
    if (!cu_ok(c, cudaMemcpy(h, r->ids, n * sizeof *h, cudaMemcpyDeviceToHost), "ids to host")) {
        free(h);
        return 0;
    }
    int experts = cfg->num_experts + cfg->num_shared;
    unsigned char seen[MOE_MAX_EXPERTS * 2];
    memset(seen, 0, sizeof seen);
    c->touched = c->rows = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i] < 0 || h[i] >= experts) continue;
        c->rows++;
        if (!seen[h[i]]) seen[h[i]] = 1, c->touched++;
    }
    free(h);
    return 1;
}

static int iters_for(double est_us, int max_iters) {
    if (est_us <= 0) return max_iters;
    double fit = MODE_BUDGET_MS * 1e3 / est_us;
    int n = fit < max_iters ? (int)fit : max_iters;
    return n < MIN_ITERS ? (max_iters < MIN_ITERS ? max_iters : MIN_ITERS) : n;
}

/* Median microseconds of n replays of exec, L2 flushed before each (write: by a memset);
 * -1 on a CUDA error. */
static double time_replays(layer_case *c, layer_timer *lt, void *flush, cudaGraphExec_t exec,
                           int n, int write, const char *range) {
    for (int i = 0; i < n; i++) {
        moe_bench_flush_l2(flush, write, lt->stream);
        cudaEventRecord(*total_event(lt, i, 0), lt->stream);
        NVTX_PUSH(range);
        cudaGraphLaunch(exec, lt->stream);
        NVTX_POP();
        cudaEventRecord(*total_event(lt, i, 1), lt->stream);
    }
    if (!cu_ok(c, cudaStreamSynchronize(lt->stream), "graph replays")) return -1.0;
    double *g = xmalloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) g[i] = event_us(*total_event(lt, i, 0), *total_event(lt, i, 1));
    double us = median(g, n);
    free(g);
    return us;
}

static void run_case(layer_run *r, layer_timer *lt, long t, layer_case *c) {
    const moe_layer_config *cfg = &r->cfg;
    int64_t h = cfg->hidden;
    moe_tensor x = moe_tensor_2d(r->x, MOE_DTYPE_BF16, t, h);
    moe_tensor logits = moe_tensor_2d(r->logits, MOE_DTYPE_F32, t, cfg->num_experts);
    moe_tensor out = moe_tensor_2d(r->out, MOE_DTYPE_BF16, t, h);
    void *stream = (void *)lt->stream;
    char range[128];
    snprintf(range, sizeof range, "layer %s %s T=%ld", r->p->name, r->wname, t);

    if (!count_touched(r, t, c)) return;
    c->floor_us = (double)c->touched * r->expert_bytes / r->read_bps * 1e6;
    c->flops = 2.0 * (double)c->rows * 3.0 * (double)h * (double)cfg->intermediate;

    /* warm-up (module loading, first touch), then one timed forward to size the runs */
    moe_layer_set_step_hook(r->layer, NULL, NULL);
    for (int i = 0; i < WARMUP_ITERS; i++)
        if (!moe_ok(c, moe_layer_forward(r->layer, &x, &logits, NULL, NULL, &out, r->ws,
                                         r->ws_bytes, stream), "moe_layer_forward (warm-up)"))
            return;
    cudaEvent_t *e0 = total_event(lt, 0, 0), *e1 = total_event(lt, 0, 1);
    cudaEventRecord(*e0, lt->stream);
    moe_layer_forward(r->layer, &x, &logits, NULL, NULL, &out, r->ws, r->ws_bytes, stream);
    cudaEventRecord(*e1, lt->stream);
    if (!cu_ok(c, cudaStreamSynchronize(lt->stream), "warm-up")) return;
    double est = event_us(*e0, *e1);

    /* eager: the step hook records events and NVTX ranges; totals bracket each forward */
    int n = c->iters_eager = iters_for(est, lt->max_iters);
    memset(lt->ran, 0, (size_t)lt->max_iters * MOE_STEP_COUNT);
    moe_layer_set_step_hook(r->layer, on_layer_step, lt);
    for (lt->iter = 0; lt->iter < n; lt->iter++) {
        moe_bench_flush_l2(r->flush, 0, lt->stream);
        cudaEventRecord(*total_event(lt, lt->iter, 0), lt->stream);
        NVTX_PUSH(range);
        moe_status s = moe_layer_forward(r->layer, &x, &logits, NULL, NULL, &out, r->ws,
                                         r->ws_bytes, stream);
        NVTX_POP();
        cudaEventRecord(*total_event(lt, lt->iter, 1), lt->stream);
        if (!moe_ok(c, s, "moe_layer_forward")) break;
    }
    moe_layer_set_step_hook(r->layer, NULL, NULL);
    if (!cu_ok(c, cudaStreamSynchronize(lt->stream), "eager forwards") || c->error[0]) return;
    double *tot = xmalloc(sizeof(double) * (size_t)n * 3), *glue = tot + n, *pct = glue + n;
    double *col = xmalloc(sizeof(double) * (size_t)n);
    for (int i = 0; i < n; i++) {
        tot[i] = event_us(*total_event(lt, i, 0), *total_event(lt, i, 1));
        double g1 = event_us(*step_event(lt, i, MOE_STEP_GEMM1, 0), *step_event(lt, i, MOE_STEP_GEMM1, 1));
        double g2 = event_us(*step_event(lt, i, MOE_STEP_GEMM2, 0), *step_event(lt, i, MOE_STEP_GEMM2, 1));
        glue[i] = tot[i] - g1 - g2;
        pct[i] = tot[i] > 0 ? 100.0 * glue[i] / tot[i] : 0.0;
    }
    for (int k = 0; k < MOE_STEP_COUNT; k++) {
        for (int i = 0; i < n; i++)
            col[i] = lt->ran[i * MOE_STEP_COUNT + k]
                         ? event_us(*step_event(lt, i, k, 0), *step_event(lt, i, k, 1)) : 0.0;
        c->step_us[k] = median(col, n);
    }
    c->glue_us = median(glue, n);
    c->glue_pct = median(pct, n);
    c->eager_us = median(tot, n);
    free(tot);
    free(col);

    /* the eager output, to check the graph against (the layer has no atomics: replays must
     * reproduce it bit for bit; a kernel launched off the stream would be missing) */
    size_t nout = (size_t)t * (size_t)h;
    uint16_t *ref = xmalloc(nout * 2 * sizeof *ref), *got = ref + nout;
    if (!cu_ok(c, cudaMemcpy(ref, r->out, nout * 2, cudaMemcpyDeviceToHost), "output to host")) {
        free(ref);
        return;
    }
    double sum_abs = 0.0;
    for (size_t i = 0; i < nout; i++) {
        float v = moe_bf16_to_f32(ref[i]);
        if (!isfinite(v)) c->out_nonfinite++;
        else sum_abs += fabs(v);
    }
    c->out_abs_mean = sum_abs / (double)nout;

    /* graph: one forward captured on the stream (no hook), replayed */
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    if (!cu_ok(c, cudaStreamBeginCapture(lt->stream, cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture"))
        return;
    moe_status s = moe_layer_forward(r->layer, &x, &logits, NULL, NULL, &out, r->ws, r->ws_bytes,
                                     stream);
    cudaError_t ce = cudaStreamEndCapture(lt->stream, &graph);
    if (!moe_ok(c, s, "moe_layer_forward (graph capture)") ||
        !cu_ok(c, ce, "cudaStreamEndCapture") ||
        !cu_ok(c, cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate")) {
        cudaGetLastError();
        if (graph) cudaGraphDestroy(graph);
        free(ref);
        return;
    }
    snprintf(range, sizeof range, "graph %s %s T=%ld", r->p->name, r->wname, t);
    cudaMemsetAsync(r->out, 0xff, nout * 2, lt->stream); /* NaN: replays must overwrite it */
    for (int i = 0; i < 2; i++) cudaGraphLaunch(exec, lt->stream);
    n = c->iters_graph = iters_for(c->eager_us, lt->max_iters);
    c->graph_us = time_replays(c, lt, r->flush, exec, n, 0, range);
    c->graph_memset_us = time_replays(c, lt, r->flush, exec, n, 1, range);
    if (c->graph_us >= 0) {
        if (cu_ok(c, cudaMemcpy(got, r->out, nout * 2, cudaMemcpyDeviceToHost), "output to host")) {
            c->graph_mismatch = 0;
            for (size_t i = 0; i < nout; i++) {
                if (got[i] == ref[i]) continue;
                c->graph_mismatch++;
                double d = fabs((double)moe_bf16_to_f32(got[i]) - (double)moe_bf16_to_f32(ref[i]));
                if (!(d <= c->graph_max_diff)) c->graph_max_diff = d; /* NaN sticks */
            }
        }
    }
    free(ref);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
}

/* v in a field of width w with d decimals, or a dash where it was not measured. */
static void print_field(double v, int w, int d) {
    if (v < 0) printf(" %*s", w, "-");
    else printf(" %*.*f", w, d, v);
}

static void print_case(const layer_case *c) {
    printf("%6ld", c->t);
    print_field(c->eager_us, 9, 1);
    print_field(c->graph_us, 9, 1);
    print_field(c->graph_memset_us, 9, 1);
    printf(" |");
    for (int k = 0; k < MOE_STEP_COUNT; k++) print_field(c->step_us[k], 8, 1);
    printf(" |");
    print_field(c->glue_pct, 5, 1);
    printf("%%");
    if (c->floor_us < 0) printf(" %7s", "-");
    else printf(" %7ld", c->touched);
    print_field(c->floor_us, 9, 1);
    print_field(c->graph_us > 0 && c->floor_us > 0 ? c->graph_us / c->floor_us : -1.0, 8, 2);
    if (c->error[0]) printf("  FAILED: %s", c->error);
    if (c->graph_mismatch > 0)
        printf("  WARNING: graph output differs from eager in %ld values (max |diff| %g)",
               c->graph_mismatch, c->graph_max_diff);
    if (c->out_nonfinite > 0) printf("  WARNING: %ld non-finite outputs", c->out_nonfinite);
    else if (c->eager_us > 0 && c->out_abs_mean == 0.0) printf("  WARNING: output all zero");
    printf("\n");
    fflush(stdout);
}

static void append_case(const layer_run *r, const layer_case *c) {
    const moe_layer_config *cfg = &r->cfg;
    json_printf(&jb, "%s  {\"preset\": ", json_cases++ ? ",\n" : "");
    json_string(&jb, r->p->name);
    json_printf(&jb, ", \"model\": ");
    json_string(&jb, r->p->model);
    json_printf(&jb,
                ", \"weights\": \"%s\", \"T\": %ld, \"E\": %d, \"k\": %d, \"S\": %d, "
                "\"H\": %lld, \"I\": %lld, \"routing\": \"%s\", \"iters_eager\": %d, "
                "\"iters_graph\": %d",
                r->wname, c->t, (int)cfg->num_experts, (int)cfg->topk, (int)cfg->num_shared,
                (long long)cfg->hidden, (long long)cfg->intermediate,
                cfg->routing == MOE_ROUTING_SOFTMAX ? "softmax" : "grouped_sigmoid",
                c->iters_eager, c->iters_graph);
    jnum("eager_us", c->eager_us, 2);
    jnum("graph_us", c->graph_us, 2);
    jnum("graph_memset_flush_us", c->graph_memset_us, 2);
    json_printf(&jb, ", \"steps_us\": {");
    for (int k = 0; k < MOE_STEP_COUNT; k++) {
        const char *step = moe_layer_step_name((moe_layer_step)k);
        if (c->step_us[k] < 0) json_printf(&jb, "%s\"%s\": null", k ? ", " : "", step);
        else json_printf(&jb, "%s\"%s\": %.2f", k ? ", " : "", step, c->step_us[k]);
    }
    json_printf(&jb, "}");
    jnum("gemm_us", c->step_us[MOE_STEP_GEMM1] >= 0 && c->step_us[MOE_STEP_GEMM2] >= 0
                        ? c->step_us[MOE_STEP_GEMM1] + c->step_us[MOE_STEP_GEMM2] : -1.0, 2);
    jnum("glue_us", c->glue_us, 2);
    jnum("glue_pct", c->glue_pct, 2);
    json_printf(&jb,
                ", \"touched_experts\": %ld, \"rows\": %ld, \"expert_bytes\": %.0f, "
                "\"floor_bytes\": %.0f",
                c->touched, c->rows, r->expert_bytes, (double)c->touched * r->expert_bytes);
    jnum("floor_us", c->floor_us, 2);
    jnum("graph_over_floor", c->graph_us > 0 && c->floor_us > 0 ? c->graph_us / c->floor_us : -1.0, 4);
    jnum("eager_over_floor", c->eager_us > 0 && c->floor_us > 0 ? c->eager_us / c->floor_us : -1.0, 4);
    json_printf(&jb, ", \"flops\": %.0f", c->flops);
    json_printf(&jb, ", \"out_abs_mean\": %.6g, \"out_nonfinite\": %ld", c->out_abs_mean,
                c->out_nonfinite);
    if (c->graph_mismatch < 0)
        json_printf(&jb, ", \"graph_mismatch\": null, \"graph_max_abs_diff\": null");
    else if (c->graph_max_diff != c->graph_max_diff)
        json_printf(&jb, ", \"graph_mismatch\": %ld, \"graph_max_abs_diff\": \"nan\"",
                    c->graph_mismatch);
    else
        json_printf(&jb, ", \"graph_mismatch\": %ld, \"graph_max_abs_diff\": %.6g",
                    c->graph_mismatch, c->graph_max_diff);
    jnum("graph_TFLOPs", c->graph_us > 0 ? c->flops / (c->graph_us * 1e6) : -1.0, 2);
    json_printf(&jb, ", \"error\": ");
    if (c->error[0]) json_string(&jb, c->error);
    else json_printf(&jb, "null");
    json_printf(&jb, "}");
    write_layer_json();
}

/* Weights, inputs and buffers for one preset and weight format; then every T. Returns 0 if
 * the CUDA context is broken (a sticky error): the sweep stops. */
static int run_preset(const layer_sweep_options *o, moe_context *ctx, const bench_preset *p,
                      int pidx, int fp8, layer_timer *lt, void *flush, double read_bps) {
    const long *ts = o->tokens;
    int nt = o->num_tokens;
    layer_run r;
    memset(&r, 0, sizeof r);
    r.p = p, r.ctx = ctx, r.flush = flush, r.read_bps = read_bps;
    r.wname = fp8 ? "fp8" : "bf16";
    r.cfg = p->cfg;
    r.cfg.weights = fp8 ? MOE_WEIGHTS_FP8_BLOCKWISE : MOE_WEIGHTS_BF16;
    const moe_layer_config *cfg = &r.cfg;
    int64_t h = cfg->hidden, in = cfg->intermediate;
    r.kp = cfg->topk + (cfg->num_shared > 0);
    long tmax = 0;
    for (int i = 0; i < nt; i++) tmax = ts[i] > tmax ? ts[i] : tmax;

    /* inputs first, from a per-preset seed: both weight formats see the same tokens */
    random_seed(o->seed + 0x10000ull * (unsigned long long)(pidx + 1));
    double t0 = now_ms();
    if (cfg->routing == MOE_ROUTING_GROUPED_SIGMOID)
        r.w.router_bias = moe_tensor_1d(rand_normal_f32((size_t)cfg->num_experts, 0.1f),
                                        MOE_DTYPE_F32, cfg->num_experts);
    r.logits = rand_normal_f32((size_t)tmax * (size_t)cfg->num_experts, 1.0f);
    r.x = rand_normal_bf16((size_t)tmax * (size_t)h);
    moe_dtype wt = fp8 ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    size_t weight_bytes = random_expert_weights(cfg, &r.w);
    r.expert_bytes = (double)(3 * in * h) * (double)moe_dtype_size(wt) +
                     (fp8 ? (double)((2 * in / 128) * (h / 128) + (h / 128) * (in / 128)) * 4.0 : 0.0);
    r.out = moe_bench_dev_alloc((size_t)tmax * (size_t)h * 2);
    r.ids = moe_bench_dev_alloc((size_t)tmax * (size_t)r.kp * 4);
    r.rw = moe_bench_dev_alloc((size_t)tmax * (size_t)r.kp * 4);
    cuda_or_die(cudaDeviceSynchronize(), "weight generation");
    double gen_ms = now_ms() - t0;

    int alive = 1;
    moe_status s = moe_layer_create(&r.layer, ctx, cfg, &r.w);
    if (!s) s = moe_layer_workspace_size(r.layer, tmax, &r.ws_bytes);
    printf("\n%s (%s), %s weights: E=%d k=%d S=%d H=%lld I=%lld; %.2f GB of weights (%.1f MB an "
           "expert) made in %.0f ms\n",
           p->name, p->model, r.wname, (int)cfg->num_experts, (int)cfg->topk,
           (int)cfg->num_shared, (long long)h, (long long)in,
           (double)weight_bytes / 1e9, r.expert_bytes / 1e6, gen_ms);
    printf("%6s %9s %9s %9s |", "T", "eager us", "graph us", "g memset");
    for (int k = 0; k < MOE_STEP_COUNT; k++) printf(" %8.8s", moe_layer_step_name((moe_layer_step)k));
    printf(" | %6s %7s %9s %8s\n", "glue", "touched", "floor us", "gr/floor");
    if (s) {
        fprintf(stderr, "moe-bench: %s %s: %s: %s\n", p->name, r.wname, moe_status_string(s),
                moe_last_error());
    } else {
        r.ws = moe_bench_dev_alloc(r.ws_bytes);
        for (int i = 0; i < nt && alive; i++) {
            layer_case c;
            memset(&c, 0, sizeof c);
            c.t = ts[i];
            c.eager_us = c.graph_us = c.graph_memset_us = c.glue_us = c.glue_pct = c.floor_us = -1.0;
            c.graph_mismatch = -1;
            for (int k = 0; k < MOE_STEP_COUNT; k++) c.step_us[k] = -1.0;
            NVTX_PUSH(p->name);
            run_case(&r, lt, ts[i], &c);
            NVTX_POP();
            if (c.error[0]) {
                /* a sticky error (illegal address, ...) ends every later case too */
                cudaError_t ce = cudaDeviceSynchronize();
                cudaGetLastError();
                if (ce != cudaSuccess) {
                    alive = 0;
                    fprintf(stderr, "moe-bench: CUDA context lost (%s); stopping the sweep\n",
                            cudaGetErrorString(ce));
                }
            }
            print_case(&c);
            append_case(&r, &c);
        }
    }
    moe_layer_destroy(r.layer);
    void *bufs[] = {r.ws, r.w.w1.data, r.w.w2.data, r.w.w1_scales.data, r.w.w2_scales.data,
                    r.w.router_bias.data, r.x, r.logits, r.out, r.ids, r.rw};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) cudaFree(bufs[i]);
    return alive;
}

int run_layer_sweep(const layer_sweep_options *o) {
    const bench_preset *only = NULL;
    if (o->preset && !(only = bench_find_preset(o->preset))) {
        fprintf(stderr, "moe-bench: unknown preset %s (see --list)\n", o->preset);
        return 2;
    }
    set_buffers_on_gpu(1);
    moe_context *ctx = NULL;
    moe_status s = moe_context_create(&ctx, MOE_BACKEND_CUDA, 0);
    if (s) return report_moe_failure("moe_context_create", s);
    int dev = 0;
    struct cudaDeviceProp prop;
    cuda_or_die(cudaGetDevice(&dev), "cudaGetDevice");
    cuda_or_die(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");

    double read_bps = moe_bench_read_bandwidth();
    const char *read_src = "read kernel over 2 GiB, best of 10 (bench/bench_gpu.cu)";
    if (read_bps <= 0) {
        read_bps = MOE_BENCH_FALLBACK_READ_BPS;
        read_src = "fallback: docs/ANCHORS.md's H100 figure (the read kernel failed)";
        fprintf(stderr, "moe-bench: read bandwidth not measured; using %.0f GB/s\n", read_bps / 1e9);
    }
    int max_iters = o->max_iters ? o->max_iters : 20;
    layer_timer lt;
    memset(&lt, 0, sizeof lt);
    lt.max_iters = max_iters;
    size_t nev = (size_t)max_iters * (MOE_STEP_COUNT * 2 + 2);
    lt.ev = xmalloc(nev * sizeof *lt.ev);
    lt.ran = xmalloc((size_t)max_iters * MOE_STEP_COUNT);
    for (size_t i = 0; i < nev; i++) cuda_or_die(cudaEventCreate(&lt.ev[i]), "cudaEventCreate");
    cuda_or_die(cudaStreamCreateWithFlags(&lt.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    void *flush = moe_bench_flush_alloc();
    if (!flush) cuda_or_die(cudaErrorMemoryAllocation, "the L2 flush buffer");

    char date[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    const char *commit = getenv("MOE_COMMIT");
#ifdef MOE_HAVE_NVTX
    const int nvtx = 1;
#else
    const int nvtx = 0;
#endif
    json_path = o->json;
    json_printf(&jb, "{\"libmoe\": ");
    json_string(&jb, moe_version());
    json_printf(&jb, ", \"commit\": ");
    if (commit && *commit) json_string(&jb, commit);
    else json_printf(&jb, "null");
    json_printf(&jb, ", \"gpu\": ");
    json_string(&jb, prop.name);
    json_printf(&jb,
                ", \"sm_count\": %d, \"date\": \"%s\", \"read_bw_Bps\": %.0f, "
                "\"read_bw_GBps\": %.1f, \"read_bw_source\": ",
                prop.multiProcessorCount, date, read_bps, read_bps / 1e9);
    json_string(&jb, read_src);
    json_printf(&jb,
                ", \"max_iters\": %d, \"warmup_iters\": %d, \"l2_flush_bytes\": %zu, "
                "\"seed\": %llu, \"nvtx\": %s, \"method\": ",
                max_iters, WARMUP_ITERS, MOE_BENCH_FLUSH_BYTES, o->seed, nvtx ? "true" : "false");
    json_string(&jb, "CUDA events; L2 flushed before each timed call by reading l2_flush_bytes "
            "(graph_memset_flush_us: by a memset of them instead); eager: median over forwards of the "
            "event pair around moe_layer_forward, steps from the step hook's events; graph: "
            "median over replays of one forward captured on a non-default stream (its output "
            "compared bit for bit with the eager one: graph_mismatch); floor: "
            "touched experts' weight bytes / read_bw; glue: eager total - gemm1 - gemm2");
    json_header_len = jb.len;
    write_layer_json();

    printf("libmoe %s | %s (%d SMs) | read %.0f GB/s (%s) | %s\n", moe_version(), prop.name,
           prop.multiProcessorCount, read_bps / 1e9, read_bps == MOE_BENCH_FALLBACK_READ_BPS ? "fallback" : "measured",
           date);
    printf("times in us, medians over up to %d iterations (L2 flushed before each); steps from the "
           "eager forwards; glue = eager - gemm1 - gemm2; floor = touched experts' weights / read "
           "bandwidth\n", max_iters);

    int both = !strcmp(o->weights, "both");
    int alive = 1;
    double t0 = now_ms();
    for (int f = 0; f < 2 && alive; f++) {
        int fp8 = f == 0;
        if (!both && fp8 != !strcmp(o->weights, "fp8")) continue;
        for (size_t i = 0; i < sizeof bench_presets / sizeof bench_presets[0] && alive; i++) {
            const bench_preset *p = &bench_presets[i];
            if (only ? p != only : !strcmp(p->name, "tiny")) continue;
            alive = run_preset(o, ctx, p, (int)i, fp8, &lt, flush, read_bps);
        }
    }
    printf("\nsweep: %.1f s%s%s\n", (now_ms() - t0) / 1e3, o->json ? "; JSON in " : "",
           o->json ? o->json : "");
    for (size_t i = 0; i < nev; i++) cudaEventDestroy(lt.ev[i]);
    cudaStreamDestroy(lt.stream);
    cudaFree(flush);
    free(lt.ev), free(lt.ran), free(jb.s);
    moe_context_destroy(ctx);
    return alive ? 0 : 1;
}

