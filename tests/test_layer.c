/* The whole layer against a float64 composition of the math, the router-logits path
 * against routing + the ids path, the step hook, and bad configs and inputs. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#include "layer_ref.h"

/* Runs the layer from caller-given ids (some -1) and compares with the float64 reference;
 * then runs it from logits and checks that equals routing + the ids path bit for bit. */
static void check_layer(moe_layer_config cfg, int64_t tokens, double tol) {
    moe_context *ctx = test_cpu();
    layer_fixture f = {.cfg = cfg};
    layer_make_weights(&f);
    moe_layer *layer = NULL;
    CHECK_OK(moe_layer_create(&layer, ctx, &f.cfg, &f.w));
    if (!layer) return;
    size_t ws_bytes = 0;
    CHECK_OK(moe_layer_workspace_size(layer, tokens, &ws_bytes));
    void *ws = test_alloc(ws_bytes);

    moe_tensor x, ids, wts;
    layer_random_inputs(&f, tokens, &x, &ids, &wts);
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    CHECK_OK(moe_layer_forward(layer, &x, NULL, &ids, &wts, &out, ws, ws_bytes, NULL));
    double *ref = test_alloc(sizeof(double) * (size_t)(tokens * cfg.hidden));
    layer_ref_forward(&f, &x, &ids, &wts, ref);
    double err = layer_rel_err(&out, ref);
    CHECK(err <= tol, "%s layer, T=%lld: relative error %.3g > %.3g",
          cfg.weights == MOE_WEIGHTS_FP8_BLOCKWISE ? "fp8" : "bf16", (long long)tokens, err, tol);

    /* logits path == routing op + ids path */
    moe_tensor logits = test_tensor2(MOE_DTYPE_F32, tokens, cfg.num_experts);
    test_fill_normal(&logits, 2.0);
    moe_tensor out_logits = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    CHECK_OK(moe_layer_forward(layer, &x, &logits, NULL, NULL, &out_logits, ws, ws_bytes, NULL));
    moe_tensor r_ids = test_tensor2(MOE_DTYPE_I32, tokens, f.kp);
    moe_tensor r_wts = test_tensor2(MOE_DTYPE_F32, tokens, f.kp);
    if (cfg.routing == MOE_ROUTING_SOFTMAX) {
        CHECK_OK(moe_route_softmax_topk(ctx, &logits, cfg.topk, cfg.renormalize, &r_ids, &r_wts, NULL));
    } else {
        moe_grouped_topk_params p = {cfg.num_groups, cfg.topk_group, cfg.topk, cfg.renormalize,
                                     cfg.routed_scaling_factor, cfg.scale_output, cfg.num_shared};
        CHECK_OK(moe_route_grouped_topk(ctx, &logits, &f.w.router_bias, &p, &r_ids, &r_wts, NULL));
    }
    moe_tensor out_ids = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    CHECK_OK(moe_layer_forward(layer, &x, NULL, &r_ids, &r_wts, &out_ids, ws, ws_bytes, NULL));
    CHECK(memcmp(out_logits.data, out_ids.data, (size_t)(tokens * cfg.hidden) * 2) == 0,
          "layer from logits differs from routing + layer from ids");
    layer_ref_forward(&f, &x, &r_ids, &r_wts, ref);
    err = layer_rel_err(&out_logits, ref);
    CHECK(err <= tol, "layer from logits: relative error %.3g > %.3g", err, tol);
    moe_layer_destroy(layer);
}

/* Tolerances: the reference repeats every rounding the SPEC's pipeline makes, so the two
 * differ only where f32 and double sums land on different sides of a rounding boundary:
 * one bf16 ulp (2^-8) on a few GEMM outputs, or one e4m3 ulp (2^-3 relative) on a few
 * requantised activations. Both average out over K; measured errors are ~1e-3. */
static void test_layer_fp8_grouped(void) { check_layer(layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE), 24, 1e-2); }
static void test_layer_bf16_grouped(void) { check_layer(layer_small_grouped(MOE_WEIGHTS_BF16), 24, 5e-3); }
static void test_layer_fp8_softmax(void) { check_layer(layer_small_softmax(MOE_WEIGHTS_FP8_BLOCKWISE), 17, 1e-2); }
static void test_layer_bf16_softmax(void) { check_layer(layer_small_softmax(MOE_WEIGHTS_BF16), 17, 5e-3); }
static void test_layer_one_token(void) { check_layer(layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE), 1, 1e-2); }

static void test_layer_zero_tokens(void) {
    layer_fixture f = {.cfg = layer_small_softmax(MOE_WEIGHTS_BF16)};
    layer_make_weights(&f);
    moe_layer *layer = NULL;
    CHECK_OK(moe_layer_create(&layer, test_cpu(), &f.cfg, &f.w));
    size_t bytes = 1;
    CHECK_OK(moe_layer_workspace_size(layer, 0, &bytes));
    void *ws = test_alloc(bytes);
    moe_tensor x = moe_tensor_2d(NULL, MOE_DTYPE_BF16, 0, f.cfg.hidden);
    moe_tensor out = moe_tensor_2d(NULL, MOE_DTYPE_BF16, 0, f.cfg.hidden);
    moe_tensor logits = moe_tensor_2d(NULL, MOE_DTYPE_F32, 0, f.cfg.num_experts);
    CHECK_OK(moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, ws, bytes, NULL));
    moe_layer_destroy(layer);
}

typedef struct {
    int calls;
    int order_ok;
    int next;
} hook_log;

static void record_step(void *user, moe_layer_step step, int end) {
    hook_log *log = user;
    int want = log->next;
    if ((int)step * 2 + end != want) log->order_ok = 0;
    log->next = want + 1;
    log->calls++;
}

static void test_layer_step_hook(void) {
    layer_fixture f = {.cfg = layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE)};
    layer_make_weights(&f);
    moe_layer *layer = NULL;
    CHECK_OK(moe_layer_create(&layer, test_cpu(), &f.cfg, &f.w));
    size_t bytes = 0;
    CHECK_OK(moe_layer_workspace_size(layer, 4, &bytes));
    void *ws = test_alloc(bytes);
    moe_tensor x = test_tensor2(MOE_DTYPE_BF16, 4, f.cfg.hidden);
    test_fill_normal(&x, 1.0);
    moe_tensor logits = test_tensor2(MOE_DTYPE_F32, 4, f.cfg.num_experts);
    test_fill_normal(&logits, 1.0);
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, 4, f.cfg.hidden);
    hook_log log = {0, 1, 0};
    CHECK_OK(moe_layer_set_step_hook(layer, record_step, &log));
    CHECK_OK(moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, ws, bytes, NULL));
    CHECK(log.calls == 2 * MOE_STEP_COUNT && log.order_ok, "hook: %d calls, in order %d",
          log.calls, log.order_ok);
    CHECK(strcmp(moe_layer_step_name(MOE_STEP_GEMM1), "gemm1") == 0, "step name");
    CHECK(strcmp(moe_layer_step_name((moe_layer_step)99), "unknown") == 0, "unknown step");
    CHECK_OK(moe_layer_set_step_hook(layer, NULL, NULL));
    CHECK_ERR(moe_layer_set_step_hook(NULL, NULL, NULL), MOE_ERR_INVALID_ARGUMENT, "layer");
    /* workspace too small */
    CHECK_ERR(moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, ws, bytes - 1, NULL),
              MOE_ERR_WORKSPACE_TOO_SMALL, "workspace");
    moe_layer_destroy(layer);
}

static void test_layer_bad_config(void) {
    moe_context *ctx = test_cpu();
    layer_fixture f = {.cfg = layer_small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE)};
    layer_make_weights(&f);
    moe_layer *layer = NULL;
    moe_layer_config c;
    CHECK_ERR(moe_layer_create(NULL, ctx, &f.cfg, &f.w), MOE_ERR_INVALID_ARGUMENT, "layer");
    CHECK_ERR(moe_layer_create(&layer, NULL, &f.cfg, &f.w), MOE_ERR_INVALID_ARGUMENT, "ctx");
    CHECK_ERR(moe_layer_create(&layer, ctx, NULL, &f.w), MOE_ERR_INVALID_ARGUMENT, "config");
    CHECK_ERR(moe_layer_create(&layer, ctx, &f.cfg, NULL), MOE_ERR_INVALID_ARGUMENT, "weights");
    c = f.cfg, c.num_experts = 0;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "num_experts");
    c = f.cfg, c.num_groups = 3;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "num_groups");
    c = f.cfg, c.topk_group = 5;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "topk_group");
    c = f.cfg, c.topk = 5; /* > TG * E / G = 4 */
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "topk");
    c = f.cfg, c.hidden = 200;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "hidden");
    c = f.cfg, c.intermediate = 100;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "intermediate");
    c = f.cfg, c.routed_scaling_factor = 0;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "routed_scaling_factor");
    c = f.cfg, c.routing = (moe_routing)5;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "routing");
    c = f.cfg, c.weights = (moe_weight_format)5;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "weights");
    c = f.cfg, c.num_shared = -1;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "num_shared");
    c = layer_small_softmax(MOE_WEIGHTS_BF16), c.num_shared = 1;
    CHECK_ERR(moe_layer_create(&layer, ctx, &c, &f.w), MOE_ERR_INVALID_ARGUMENT, "num_shared");
    moe_layer_weights w = f.w;
    w.w1.shape[0] = 3;
    CHECK_ERR(moe_layer_create(&layer, ctx, &f.cfg, &w), MOE_ERR_INVALID_ARGUMENT, "w1");
    w = f.w, w.w2.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(moe_layer_create(&layer, ctx, &f.cfg, &w), MOE_ERR_INVALID_ARGUMENT, "w2");
    w = f.w, w.w1_scales.shape[1] = 1;
    CHECK_ERR(moe_layer_create(&layer, ctx, &f.cfg, &w), MOE_ERR_INVALID_ARGUMENT, "w1_scales");
    w = f.w, w.w2_scales.data = NULL;
    CHECK_ERR(moe_layer_create(&layer, ctx, &f.cfg, &w), MOE_ERR_INVALID_ARGUMENT, "w2_scales");
    w = f.w, w.router_bias.shape[0] = 7;
    CHECK_ERR(moe_layer_create(&layer, ctx, &f.cfg, &w), MOE_ERR_INVALID_ARGUMENT, "router_bias");
    CHECK(layer == NULL, "no layer after failures");
}

static void test_layer_bad_forward(void) {
    moe_context *ctx = test_cpu();
    layer_fixture f = {.cfg = layer_small_grouped(MOE_WEIGHTS_BF16)};
    layer_make_weights(&f);
    moe_layer *layer = NULL;
    CHECK_OK(moe_layer_create(&layer, ctx, &f.cfg, &f.w));
    size_t bytes = 0;
    CHECK_ERR(moe_layer_workspace_size(NULL, 4, &bytes), MOE_ERR_INVALID_ARGUMENT, "layer");
    CHECK_ERR(moe_layer_workspace_size(layer, 4, NULL), MOE_ERR_INVALID_ARGUMENT, "bytes");
    CHECK_ERR(moe_layer_workspace_size(layer, -1, &bytes), MOE_ERR_INVALID_ARGUMENT, "max_tokens");
    CHECK_OK(moe_layer_workspace_size(layer, 4, &bytes));
    void *ws = test_alloc(bytes);
    moe_tensor x = test_tensor2(MOE_DTYPE_BF16, 4, f.cfg.hidden);
    test_fill_normal(&x, 1.0);
    moe_tensor logits = test_tensor2(MOE_DTYPE_F32, 4, f.cfg.num_experts);
    test_fill_normal(&logits, 1.0);
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, 4, f.kp), wts = test_tensor2(MOE_DTYPE_F32, 4, f.kp);
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, 4, f.cfg.hidden);
    CHECK_ERR(moe_layer_forward(NULL, &x, &logits, NULL, NULL, &out, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "layer");
    CHECK_ERR(moe_layer_forward(layer, NULL, &logits, NULL, NULL, &out, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "x");
    moe_tensor bad = x;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(moe_layer_forward(layer, &bad, &logits, NULL, NULL, &out, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "x");
    bad = out, bad.shape[0] = 3;
    CHECK_ERR(moe_layer_forward(layer, &x, &logits, NULL, NULL, &bad, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "out");
    CHECK_ERR(moe_layer_forward(layer, &x, NULL, NULL, NULL, &out, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "topk_ids");
    CHECK_ERR(moe_layer_forward(layer, &x, &logits, &ids, &wts, &out, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "either");
    bad = ids, bad.shape[1] = f.kp - 1;
    CHECK_ERR(moe_layer_forward(layer, &x, NULL, &bad, &wts, &out, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "topk_ids");
    bad = wts, bad.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(moe_layer_forward(layer, &x, NULL, &ids, &bad, &out, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "topk_weights");
    bad = logits, bad.shape[1] = 5;
    CHECK_ERR(moe_layer_forward(layer, &x, &bad, NULL, NULL, &out, ws, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "logits");
    CHECK_ERR(moe_layer_forward(layer, &x, &logits, NULL, NULL, &out, NULL, bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "workspace");
    moe_layer_destroy(layer);
    moe_layer_destroy(NULL);
}

void suite_layer(void) {
    RUN(test_layer_fp8_grouped);
    RUN(test_layer_bf16_grouped);
    RUN(test_layer_fp8_softmax);
    RUN(test_layer_bf16_softmax);
    RUN(test_layer_one_token);
    RUN(test_layer_zero_tokens);
    RUN(test_layer_step_hook);
    RUN(test_layer_bad_config);
    RUN(test_layer_bad_forward);
}
