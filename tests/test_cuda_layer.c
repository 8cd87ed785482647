/* The layer on the CUDA backend: against the float64 composition at small shapes, against
 * the CPU backend's layer for every model preset at small T, and captured in a CUDA graph
 * that is replayed with new inputs and must equal eager runs bit for bit. */
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../bench/presets.h"
#include "layer_ref.h"

#ifdef MOE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

/* Tolerances: as for the CPU layer (tests/test_layer.c), the two sides repeat the same
 * roundings and differ only where sums taken in another order land on different sides of
 * a rounding boundary: one bf16 ulp (2^-8) on a few GEMM outputs, or one e4m3 ulp (2^-3
 * relative) on a few requantised activations, averaged out over K. */
#define TOL_FP8 1e-2
#define TOL_BF16 5e-3

static double tol_of(const moe_layer_config *c) {
    return c->weights == MOE_WEIGHTS_FP8_BLOCKWISE ? TOL_FP8 : TOL_BF16;
}

static moe_layer_weights weights_to_device(const moe_layer_weights *w) {
    moe_layer_weights d = *w;
    const moe_tensor *src[5] = {&w->w1, &w->w2, &w->w1_scales, &w->w2_scales, &w->router_bias};
    moe_tensor *dst[5] = {&d.w1, &d.w2, &d.w1_scales, &d.w2_scales, &d.router_bias};
    for (int i = 0; i < 5; i++)
        if (src[i]->data) *dst[i] = test_to_device(src[i]);
    return d;
}

static void route_on_cpu(const moe_layer_config *c, const moe_tensor *logits,
                         const moe_tensor *bias, moe_tensor *ids, moe_tensor *wts) {
    if (c->routing == MOE_ROUTING_SOFTMAX) {
        CHECK_OK(moe_route_softmax_topk(test_cpu(), logits, c->topk, c->renormalize, ids, wts,
                                        NULL));
        return;
    }
    moe_grouped_topk_params p = {c->num_groups, c->topk_group, c->topk, c->renormalize,
                                 c->routed_scaling_factor, c->scale_output, c->num_shared};
    CHECK_OK(moe_route_grouped_topk(test_cpu(), logits, bias->data ? bias : NULL, &p, ids, wts,
                                    NULL));
}

/* A device workspace for T tokens; its size in *bytes. */
static void *layer_workspace(const moe_layer *layer, int64_t tokens, size_t *bytes) {
    *bytes = 0;
    CHECK_OK(moe_layer_workspace_size(layer, tokens, bytes));
    return test_device_alloc(*bytes);
}

/* layer_random_inputs' host tensors and their device copies. */
typedef struct {
    moe_tensor x, ids, wts, dx, d_ids, d_wts;
} layer_inputs;

static layer_inputs random_inputs(const layer_fixture *f, int64_t tokens) {
    layer_inputs in;
    layer_random_inputs(f, tokens, &in.x, &in.ids, &in.wts);
    in.dx = test_to_device(&in.x);
    in.d_ids = test_to_device(&in.ids);
    in.d_wts = test_to_device(&in.wts);
    return in;
}

/* ---------------------------------------------------------------- float64 composition */

/* The GPU layer from caller-given ids (some -1) and from router logits, each against the
 * float64 composition of the math. */
static void check_vs_float64(moe_layer_config cfg, int64_t tokens) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    layer_fixture f = {.cfg = cfg};
    layer_make_weights(&f);
    moe_layer_weights dw = weights_to_device(&f.w);
    moe_layer *layer = NULL;
    CHECK_OK(moe_layer_create(&layer, gpu, &cfg, &dw));
    if (!layer) return;
    size_t ws_bytes;
    void *ws = layer_workspace(layer, tokens, &ws_bytes);

    layer_inputs in = random_inputs(&f, tokens);
    moe_tensor x = in.x, ids = in.ids, wts = in.wts, dx = in.dx;
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    moe_tensor d_out = test_device_like(&out);
    CHECK_OK(moe_layer_forward(layer, &dx, NULL, &in.d_ids, &in.d_wts, &d_out, ws, ws_bytes,
                               NULL));
    test_to_host(&d_out, &out);
    double *ref = test_alloc(sizeof(double) * (size_t)(tokens * cfg.hidden));
    layer_ref_forward(&f, &x, &ids, &wts, ref);
    double err = layer_rel_err(&out, ref);
    CHECK(err <= tol_of(&cfg), "GPU %s layer from ids, T=%lld: relative error %.3g > %.3g",
          cfg.weights == MOE_WEIGHTS_FP8_BLOCKWISE ? "fp8" : "bf16", (long long)tokens, err,
          tol_of(&cfg));

    /* from logits: the GPU's routing equals the CPU's bit for bit (test_cuda_route.c), so
     * the reference takes the CPU's ids */
    moe_tensor logits = test_tensor2(MOE_DTYPE_F32, tokens, cfg.num_experts);
    test_fill_normal(&logits, 2.0);
    moe_tensor d_logits = test_to_device(&logits);
    d_out = test_device_like(&out);
    CHECK_OK(moe_layer_forward(layer, &dx, &d_logits, NULL, NULL, &d_out, ws, ws_bytes, NULL));
    test_to_host(&d_out, &out);
    route_on_cpu(&cfg, &logits, &f.w.router_bias, &ids, &wts);
    layer_ref_forward(&f, &x, &ids, &wts, ref);
    err = layer_rel_err(&out, ref);
    CHECK(err <= tol_of(&cfg), "GPU layer from logits, T=%lld: relative error %.3g > %.3g",
          (long long)tokens, err, tol_of(&cfg));
    moe_layer_destroy(layer);
}

static void test_cuda_layer_fp8_grouped(void) {
    check_vs_float64(layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE), 24);
}
static void test_cuda_layer_bf16_grouped(void) {
    check_vs_float64(layer_small_grouped(MOE_WEIGHTS_BF16), 24);
}
static void test_cuda_layer_fp8_softmax(void) {
    check_vs_float64(layer_small_softmax(MOE_WEIGHTS_FP8_BLOCKWISE), 17);
}
static void test_cuda_layer_bf16_softmax(void) {
    check_vs_float64(layer_small_softmax(MOE_WEIGHTS_BF16), 17);
}
static void test_cuda_layer_one_token(void) {
    check_vs_float64(layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE), 1);
}
/* ~70 rows per expert: the GEMM's regular 128-row tiles rather than its small ones */
static void test_cuda_layer_many_rows(void) {
    check_vs_float64(layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE), test_quick() ? 64 : 200);
}

/* A layer whose GEMM 1 takes the fused kernel (moe_grouped_gemm_silu_quant): 64 experts of
 * 2I = 2048 rows are 1024 tiles, far from decode-sized. */
static moe_layer_config layer_fused_grouped(void) {
    moe_layer_config c = layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE);
    c.num_experts = 64, c.topk = 4, c.num_groups = 8, c.topk_group = 4, c.intermediate = 1024;
    return c;
}

/* The layer with the fusion switched on (MOE_LAYER_FUSE_GEMM1=1 when it is created) against
 * the float64 composition (the shared expert's rows fill whole 128-row tiles, the routed
 * experts' ~16 take swapped ones) ... */
static void test_cuda_layer_fused_vs_float64(void) {
    setenv("MOE_LAYER_FUSE_GEMM1", "1", 1);
    check_vs_float64(layer_fused_grouped(), test_quick() ? 64 : 256);
    unsetenv("MOE_LAYER_FUSE_GEMM1");
}

/* ... and bit for bit against the same layer without it: ~45 rows an expert at T = 600
 * mixes swapped, one-warpgroup and whole tiles. */
static void test_cuda_layer_fused_vs_unfused(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    layer_fixture f = {.cfg = layer_fused_grouped()};
    layer_make_weights(&f);
    moe_layer_weights dw = weights_to_device(&f.w);
    moe_layer *fused = NULL, *unfused = NULL;
    CHECK_OK(moe_layer_create(&unfused, gpu, &f.cfg, &dw));
    setenv("MOE_LAYER_FUSE_GEMM1", "1", 1);
    CHECK_OK(moe_layer_create(&fused, gpu, &f.cfg, &dw));
    unsetenv("MOE_LAYER_FUSE_GEMM1");
    if (!fused || !unfused) return;
    int64_t tokens = test_quick() ? 128 : 600;
    size_t ws_bytes;
    void *ws = layer_workspace(fused, tokens, &ws_bytes);
    layer_inputs in = random_inputs(&f, tokens);
    moe_tensor out[2];
    moe_layer *layers[2] = {fused, unfused};
    for (int i = 0; i < 2; i++) {
        out[i] = test_tensor2(MOE_DTYPE_BF16, tokens, f.cfg.hidden);
        moe_tensor d_out = test_device_like(&out[i]);
        CHECK_OK(moe_layer_forward(layers[i], &in.dx, NULL, &in.d_ids, &in.d_wts, &d_out, ws,
                                   ws_bytes, NULL));
        test_to_host(&d_out, &out[i]);
    }
    size_t bytes = (size_t)(tokens * f.cfg.hidden) * 2;
    CHECK(memcmp(out[0].data, out[1].data, bytes) == 0,
          "T=%lld: the fused layer's output differs from the unfused one's", (long long)tokens);
    double *ref = test_alloc(sizeof(double) * (size_t)(tokens * f.cfg.hidden));
    for (int64_t i = 0; i < tokens * f.cfg.hidden; i++) ref[i] = 0.0;
    CHECK(layer_rel_err(&out[0], ref) > 0.0, "the output is all zeros"); /* or NaN: poison */
    moe_layer_destroy(fused);
    moe_layer_destroy(unfused);
}

static void test_cuda_layer_zero_tokens(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    layer_fixture f = {.cfg = layer_small_softmax(MOE_WEIGHTS_BF16)};
    layer_make_weights(&f);
    moe_layer_weights dw = weights_to_device(&f.w);
    moe_layer *layer = NULL;
    CHECK_OK(moe_layer_create(&layer, gpu, &f.cfg, &dw));
    size_t bytes = 1;
    CHECK_OK(moe_layer_workspace_size(layer, 0, &bytes));
    void *ws = test_device_alloc(bytes);
    moe_tensor x = moe_tensor_2d(NULL, MOE_DTYPE_BF16, 0, f.cfg.hidden);
    moe_tensor out = moe_tensor_2d(NULL, MOE_DTYPE_BF16, 0, f.cfg.hidden);
    moe_tensor logits = moe_tensor_2d(NULL, MOE_DTYPE_F32, 0, f.cfg.num_experts);
    CHECK_OK(moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, ws, bytes, NULL));
    test_device_sync();
    moe_layer_destroy(layer);
}

/* ---------------------------------------------------------------- model presets */

/* Random weights for expert e only; the other experts stay untouched zero pages, so a
 * DeepSeek-V3 or Kimi K2 layer costs only the experts that T tokens reach. FP8: codes of
 * magnitude <= 1.875 (no NaN); BF16: magnitudes in [2^-8, 2^-4), signs random. */
static void fill_expert(moe_tensor *w, int64_t e) {
    size_t bytes = (size_t)(w->shape[1] * w->shape[2]) * moe_dtype_size(w->dtype);
    uint8_t *p = (uint8_t *)w->data + (size_t)e * bytes;
    for (size_t i = 0; i < bytes; i += 8) {
        uint64_t r = rng_u64();
        if (w->dtype == MOE_DTYPE_E4M3) {
            for (int b = 0; b < 8; b++) p[i + b] = (uint8_t)((r >> (8 * b)) & 0xbf);
        } else {
            uint16_t *q = (uint16_t *)(p + i);
            for (int b = 0; b < 4; b++) {
                uint16_t v = (uint16_t)(r >> (16 * b));
                q[b] = (uint16_t)((v & 0x807f) | (uint16_t)((119 + ((v >> 7) & 3)) << 7));
            }
        }
    }
}

static size_t expert_bytes(const moe_tensor *w) {
    return (size_t)(w->shape[1] * w->shape[2]) * moe_dtype_size(w->dtype);
}

/* One preset at T tokens from router logits: the GPU layer against the CPU layer on the
 * same weights (only the experts the routing picks are filled). */
static void check_preset(const bench_preset *p, moe_weight_format wf, int64_t tokens) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    moe_layer_config cfg = p->cfg;
    cfg.weights = wf;
    int fp8 = wf == MOE_WEIGHTS_FP8_BLOCKWISE;
    int64_t e_all = cfg.num_experts + cfg.num_shared, h = cfg.hidden, in = cfg.intermediate;
    int32_t kp = cfg.topk + (cfg.num_shared > 0);

    moe_tensor logits = test_tensor2(MOE_DTYPE_F32, tokens, cfg.num_experts);
    test_fill_normal(&logits, 1.0);
    moe_layer_weights w;
    memset(&w, 0, sizeof w);
    if (cfg.routing == MOE_ROUTING_GROUPED_SIGMOID) {
        w.router_bias = test_tensor1(MOE_DTYPE_F32, cfg.num_experts);
        test_fill_normal(&w.router_bias, 0.1);
    }
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, tokens, kp);
    moe_tensor wts = test_tensor2(MOE_DTYPE_F32, tokens, kp);
    route_on_cpu(&cfg, &logits, &w.router_bias, &ids, &wts);

    moe_dtype dt = fp8 ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    w.w1 = moe_tensor_3d(NULL, dt, e_all, 2 * in, h);
    w.w2 = moe_tensor_3d(NULL, dt, e_all, h, in);
    size_t b1 = expert_bytes(&w.w1), b2 = expert_bytes(&w.w2);
    w.w1.data = calloc((size_t)e_all, b1); /* lazily mapped: untouched experts cost nothing */
    w.w2.data = calloc((size_t)e_all, b2);
    CHECK(w.w1.data && w.w2.data, "%s: host weights (%.1f GB) not allocated", p->name,
          (double)e_all * (double)(b1 + b2) / 1e9);
    if (!w.w1.data || !w.w2.data) {
        free(w.w1.data), free(w.w2.data);
        return;
    }
    if (fp8) {
        w.w1_scales = test_tensor3(MOE_DTYPE_F32, e_all, 2 * in / 128, h / 128);
        w.w2_scales = test_tensor3(MOE_DTYPE_F32, e_all, h / 128, in / 128);
        moe_tensor *s[2] = {&w.w1_scales, &w.w2_scales};
        double k[2] = {(double)h, (double)in};
        for (int m = 0; m < 2; m++) {
            float *sp = s[m]->data;
            int64_t n = s[m]->shape[0] * s[m]->shape[1] * s[m]->shape[2];
            for (int64_t i = 0; i < n; i++) sp[i] = (float)(rng_uniform(0.5, 1.5) / sqrt(k[m]));
        }
    }
    moe_layer_weights dw = w;
    dw.w1.data = test_device_alloc((size_t)e_all * b1);
    dw.w2.data = test_device_alloc((size_t)e_all * b2);
    if (fp8) {
        dw.w1_scales = test_to_device(&w.w1_scales);
        dw.w2_scales = test_to_device(&w.w2_scales);
    }
    if (w.router_bias.data) dw.router_bias = test_to_device(&w.router_bias);
    char *seen = calloc((size_t)e_all, 1);
    int touched = 0;
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < kp; j++) {
            int32_t e = test_get_i32(&ids, t, j);
            if (e < 0 || e >= e_all || seen[e]) continue;
            seen[e] = 1, touched++;
            fill_expert(&w.w1, e);
            fill_expert(&w.w2, e);
            test_copy_bytes((char *)dw.w1.data + (size_t)e * b1, (char *)w.w1.data + (size_t)e * b1, b1, 1);
            test_copy_bytes((char *)dw.w2.data + (size_t)e * b2, (char *)w.w2.data + (size_t)e * b2, b2, 1);
        }
    free(seen);

    moe_tensor x = test_tensor2(MOE_DTYPE_BF16, tokens, h);
    test_fill_normal(&x, 1.0);
    moe_tensor out_cpu = test_tensor2(MOE_DTYPE_BF16, tokens, h);
    moe_tensor out_gpu = test_tensor2(MOE_DTYPE_BF16, tokens, h);
    moe_layer *lc = NULL, *lg = NULL;
    CHECK_OK(moe_layer_create(&lc, test_cpu(), &cfg, &w));
    CHECK_OK(moe_layer_create(&lg, gpu, &cfg, &dw));
    size_t ws_bytes = 0;
    if (lc && lg) {
        size_t cpu_bytes = 0;
        CHECK_OK(moe_layer_workspace_size(lc, tokens, &cpu_bytes));
        CHECK_OK(moe_layer_forward(lc, &x, &logits, NULL, NULL, &out_cpu, test_alloc(cpu_bytes),
                                   cpu_bytes, NULL));
        CHECK_OK(moe_layer_workspace_size(lg, tokens, &ws_bytes));
        moe_tensor dx = test_to_device(&x), dl = test_to_device(&logits);
        moe_tensor d_out = test_device_like(&out_gpu);
        CHECK_OK(moe_layer_forward(lg, &dx, &dl, NULL, NULL, &d_out, test_device_alloc(ws_bytes),
                                   ws_bytes, NULL));
        test_to_host(&d_out, &out_gpu);
        double *ref = test_alloc(sizeof(double) * (size_t)(tokens * h));
        for (int64_t t = 0; t < tokens; t++)
            for (int64_t n = 0; n < h; n++) ref[t * h + n] = test_get(&out_cpu, t, n, 0);
        double err = layer_rel_err(&out_gpu, ref);
        CHECK(err <= tol_of(&cfg), "%s %s T=%lld (%d experts touched): GPU vs CPU layer relative "
              "error %.3g > %.3g", p->name, fp8 ? "fp8" : "bf16", (long long)tokens, touched, err,
              tol_of(&cfg));
    }
    moe_layer_destroy(lc);
    moe_layer_destroy(lg);
    test_gpu_free_all(); /* the next preset's weights need the room */
    free(w.w1.data);
    free(w.w2.data);
}

static void test_cuda_layer_presets(void) {
    if (!test_gpu()) return;
    for (size_t i = 0; i < sizeof bench_presets / sizeof bench_presets[0]; i++) {
        const bench_preset *p = &bench_presets[i];
        /* under compute-sanitizer only the small presets: the big ones only add host time */
        if (test_quick() && p->cfg.hidden > 2048) continue;
        check_preset(p, MOE_WEIGHTS_FP8_BLOCKWISE, 5);
        check_preset(p, MOE_WEIGHTS_BF16, 3);
    }
}

/* ---------------------------------------------------------------- CUDA graph */

#ifdef MOE_HAVE_CUDA
static int cuda_ok(cudaError_t e, const char *what) {
    CHECK(e == cudaSuccess, "%s: %s", what, cudaGetErrorString(e));
    return e == cudaSuccess;
}

/* Captures one forward from router logits in a CUDA graph (global capture mode: an
 * allocation, a synchronisation or a host copy inside the forward would end the capture
 * with an error), then per round writes new inputs, replays the graph and runs the same
 * forward eagerly: both outputs must be equal bit for bit, fully written, match the CPU
 * layer, and change with the inputs. */
static void check_graph(moe_layer_config cfg, int64_t tokens) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    layer_fixture f = {.cfg = cfg};
    layer_make_weights(&f);
    moe_layer_weights dw = weights_to_device(&f.w);
    moe_layer *lg = NULL, *lc = NULL;
    CHECK_OK(moe_layer_create(&lg, gpu, &cfg, &dw));
    CHECK_OK(moe_layer_create(&lc, test_cpu(), &cfg, &f.w));
    if (!lg || !lc) return;
    size_t ws_bytes = 0, cpu_bytes = 0;
    CHECK_OK(moe_layer_workspace_size(lg, tokens, &ws_bytes));
    CHECK_OK(moe_layer_workspace_size(lc, tokens, &cpu_bytes));
    void *ws = test_device_alloc(ws_bytes);
    moe_tensor x = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    moe_tensor logits = test_tensor2(MOE_DTYPE_F32, tokens, cfg.num_experts);
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    moe_tensor eager = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    moe_tensor cpu = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    moe_tensor prev = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    moe_tensor dx = test_device_like(&x), dl = test_device_like(&logits);
    moe_tensor d_out = test_device_like(&out);
    size_t out_bytes = (size_t)(tokens * cfg.hidden) * 2;

    cudaStream_t st = NULL;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    if (!cuda_ok(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreate")) return;
    if (cuda_ok(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), "begin capture")) {
        CHECK_OK(moe_layer_forward(lg, &dx, &dl, NULL, NULL, &d_out, ws, ws_bytes, st));
        cuda_ok(cudaStreamEndCapture(st, &graph), "end capture");
    }
    if (graph && cuda_ok(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate")) {
        size_t nodes = 0;
        cudaGraphGetNodes(graph, NULL, &nodes);
        CHECK(nodes >= MOE_STEP_COUNT, "graph has %zu nodes, fewer than the %d steps", nodes,
              MOE_STEP_COUNT);
        for (int round = 0; round < 3; round++) {
            test_fill_normal(&x, 1.0);
            test_fill_normal(&logits, 2.0);
            test_copy_bytes(dx.data, x.data, (size_t)(tokens * cfg.hidden) * 2, 1);
            test_copy_bytes(dl.data, logits.data, (size_t)(tokens * cfg.num_experts) * 4, 1);

            cuda_ok(cudaMemset(d_out.data, 0xFF, out_bytes), "poison");
            cuda_ok(cudaGraphLaunch(exec, st), "cudaGraphLaunch");
            cuda_ok(cudaStreamSynchronize(st), "replay");
            test_to_host(&d_out, &out);

            cuda_ok(cudaMemset(d_out.data, 0xFF, out_bytes), "poison");
            CHECK_OK(moe_layer_forward(lg, &dx, &dl, NULL, NULL, &d_out, ws, ws_bytes, st));
            cuda_ok(cudaStreamSynchronize(st), "eager");
            test_to_host(&d_out, &eager);
            CHECK(memcmp(out.data, eager.data, out_bytes) == 0,
                  "round %d: graph replay differs from the eager forward", round);

            CHECK_OK(moe_layer_forward(lc, &x, &logits, NULL, NULL, &cpu,
                                       test_alloc(cpu_bytes), cpu_bytes, NULL));
            double *ref = test_alloc(sizeof(double) * (size_t)(tokens * cfg.hidden));
            for (int64_t t = 0; t < tokens; t++)
                for (int64_t n = 0; n < cfg.hidden; n++)
                    ref[t * cfg.hidden + n] = test_get(&cpu, t, n, 0);
            double err = layer_rel_err(&out, ref); /* NaN if an element kept its poison */
            CHECK(err <= tol_of(&cfg), "round %d: replay vs CPU layer relative error %.3g",
                  round, err);
            if (round)
                CHECK(memcmp(out.data, prev.data, out_bytes) != 0,
                      "round %d: the replay ignored its new inputs", round);
            memcpy(prev.data, out.data, out_bytes);
        }
    }
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    cudaStreamDestroy(st);
    moe_layer_destroy(lg);
    moe_layer_destroy(lc);
}
#else
static void check_graph(moe_layer_config cfg, int64_t tokens) {
    (void)cfg, (void)tokens;
    test_gpu();
}
#endif

static void test_cuda_layer_graph_fp8(void) {
    check_graph(layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE), 200);
}
static void test_cuda_layer_graph_bf16(void) {
    check_graph(layer_small_softmax(MOE_WEIGHTS_BF16), 77);
}

void suite_cuda_layer(void) {
    RUN(test_cuda_layer_fp8_grouped);
    RUN(test_cuda_layer_bf16_grouped);
    RUN(test_cuda_layer_fp8_softmax);
    RUN(test_cuda_layer_bf16_softmax);
    RUN(test_cuda_layer_one_token);
    RUN(test_cuda_layer_many_rows);
    RUN(test_cuda_layer_fused_vs_float64);
    RUN(test_cuda_layer_fused_vs_unfused);
    RUN(test_cuda_layer_zero_tokens);
    RUN(test_cuda_layer_presets);
    RUN(test_cuda_layer_graph_fp8);
    RUN(test_cuda_layer_graph_bf16);
}
