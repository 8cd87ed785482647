/* The whole layer against a float64 composition of the math, the router-logits path
 * against routing + the ids path, the step hook, and bad configs and inputs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/common/formats.h"
#include "harness.h"

typedef struct {
    moe_layer_config cfg;
    moe_layer_weights w;
    int32_t kp, experts;
} layer_fixture;

static void make_weights(layer_fixture *f) {
    const moe_layer_config *c = &f->cfg;
    int64_t e = c->num_experts + c->num_shared, h = c->hidden, i = c->intermediate;
    int fp8 = c->weights == MOE_WEIGHTS_FP8_BLOCKWISE;
    moe_dtype dt = fp8 ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    memset(&f->w, 0, sizeof f->w);
    f->w.w1 = test_tensor3(dt, e, 2 * i, h);
    f->w.w2 = test_tensor3(dt, e, h, i);
    /* fp8: N(0,1) codes with 1/sqrt(K) block scales; bf16: N(0, 1/K) values */
    test_fill_normal(&f->w.w1, fp8 ? 1.0 : 1.0 / sqrt((double)h));
    test_fill_normal(&f->w.w2, fp8 ? 1.0 : 1.0 / sqrt((double)i));
    if (fp8) {
        f->w.w1_scales = test_tensor3(MOE_DTYPE_F32, e, 2 * i / 128, h / 128);
        f->w.w2_scales = test_tensor3(MOE_DTYPE_F32, e, h / 128, i / 128);
        moe_tensor *s[2] = {&f->w.w1_scales, &f->w.w2_scales};
        double k[2] = {(double)h, (double)i};
        for (int m = 0; m < 2; m++) {
            float *p = s[m]->data;
            int64_t n_scales = s[m]->shape[0] * s[m]->shape[1] * s[m]->shape[2];
            for (int64_t n = 0; n < n_scales; n++) p[n] = (float)(rng_uniform(0.5, 1.5) / sqrt(k[m]));
        }
    }
    if (c->routing == MOE_ROUTING_GROUPED_SIGMOID) {
        f->w.router_bias = test_tensor1(MOE_DTYPE_F32, c->num_experts);
        test_fill_normal(&f->w.router_bias, 0.1);
    }
    f->kp = c->topk + (c->num_shared > 0);
    f->experts = c->num_experts + c->num_shared;
}

/* ---------------------------------------------------------------- float64 reference */

static double w_at(const moe_tensor *w, const moe_tensor *s, int64_t e, int64_t n, int64_t k) {
    double v = test_get(w, e, n, k);
    if (s->data) v *= test_get(s, e, n / 128, k / 128);
    return v;
}

/* One row through per-128-group FP8 quantisation, in double (SPEC 3). */
static void ref_quant_row(double *v, int64_t k) {
    for (int64_t g = 0; g < k; g += 128) {
        double amax = 0;
        for (int64_t c = g; c < g + 128; c++) amax = fmax(amax, fabs(v[c]));
        double scale = fmax(amax, 1e-10) / 448.0;
        for (int64_t c = g; c < g + 128; c++) v[c] = moe_e4m3_to_f32(moe_f32_to_e4m3((float)(v[c] / scale))) * scale;
    }
}

static double bf16r(double v) { return moe_bf16_to_f32(moe_f32_to_bf16((float)v)); }

/* out_ref[t, h] for caller-given ids and weights: the SPEC 7 pipeline with its
 * intermediate roundings (bf16 GEMM outputs, FP8 activations), arithmetic in double. */
static void ref_layer(const layer_fixture *f, const moe_tensor *x, const moe_tensor *ids,
                      const moe_tensor *wts, double *out) {
    const moe_layer_config *c = &f->cfg;
    int64_t t_n = x->shape[0], h = c->hidden, i_n = c->intermediate;
    int fp8 = c->weights == MOE_WEIGHTS_FP8_BLOCKWISE;
    double *xin = malloc(sizeof(double) * (size_t)h), *h1 = malloc(sizeof(double) * 2 * (size_t)i_n);
    double *act = malloc(sizeof(double) * (size_t)i_n);
    double scale = c->scale_output ? 1.0 : c->routed_scaling_factor;
    for (int64_t t = 0; t < t_n; t++) {
        for (int64_t n = 0; n < h; n++) out[t * h + n] = 0;
        for (int32_t j = 0; j < f->kp; j++) {
            int32_t e = test_get_i32(ids, t, j);
            if (e < 0 || e >= f->experts) continue;
            double wj = test_get(wts, t, j, 0);
            for (int64_t k = 0; k < h; k++) xin[k] = test_get(x, t, k, 0);
            if (fp8) ref_quant_row(xin, h);
            for (int64_t n = 0; n < 2 * i_n; n++) {
                double s = 0;
                for (int64_t k = 0; k < h; k++) s += xin[k] * w_at(&f->w.w1, &f->w.w1_scales, e, n, k);
                h1[n] = bf16r(s);
            }
            for (int64_t n = 0; n < i_n; n++) {
                double a = h1[n] / (1 + exp(-h1[n])) * h1[i_n + n];
                act[n] = fp8 ? a : bf16r(a);
            }
            if (fp8) ref_quant_row(act, i_n);
            for (int64_t n = 0; n < h; n++) {
                double s = 0;
                for (int64_t k = 0; k < i_n; k++) s += act[k] * w_at(&f->w.w2, &f->w.w2_scales, e, n, k);
                out[t * h + n] += wj * bf16r(s);
            }
        }
        for (int64_t n = 0; n < h; n++) out[t * h + n] *= scale;
    }
    free(xin);
    free(h1);
    free(act);
}

static double rel_err(const moe_tensor *out, const double *ref) {
    double num = 0, den = 0;
    for (int64_t t = 0; t < out->shape[0]; t++)
        for (int64_t n = 0; n < out->shape[1]; n++) {
            double d = test_get(out, t, n, 0) - ref[t * out->shape[1] + n];
            num += d * d;
            den += ref[t * out->shape[1] + n] * ref[t * out->shape[1] + n];
        }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---------------------------------------------------------------- fixtures */

static moe_layer_config small_grouped(moe_weight_format wf) {
    moe_layer_config c = {0};
    c.num_experts = 8, c.topk = 3, c.hidden = 256, c.intermediate = 128;
    c.routing = MOE_ROUTING_GROUPED_SIGMOID, c.num_groups = 4, c.topk_group = 2;
    c.renormalize = 1, c.routed_scaling_factor = 2.5f, c.scale_output = 0, c.num_shared = 1;
    c.weights = wf;
    return c;
}

static moe_layer_config small_softmax(moe_weight_format wf) {
    moe_layer_config c = {0};
    c.num_experts = 6, c.topk = 2, c.hidden = 256, c.intermediate = 256;
    c.routing = MOE_ROUTING_SOFTMAX, c.num_groups = 1, c.topk_group = 1;
    c.renormalize = 1, c.routed_scaling_factor = 1.0f, c.weights = wf;
    return c;
}

/* Runs the layer from caller-given ids (some -1) and compares with the float64 reference;
 * then runs it from logits and checks that equals routing + the ids path bit for bit. */
static void check_layer(moe_layer_config cfg, int64_t tokens, double tol) {
    moe_context *ctx = test_cpu();
    layer_fixture f = {.cfg = cfg};
    make_weights(&f);
    moe_layer *layer = NULL;
    CHECK_OK(moe_layer_create(&layer, ctx, &f.cfg, &f.w));
    if (!layer) return;
    size_t ws_bytes = 0;
    CHECK_OK(moe_layer_workspace_size(layer, tokens, &ws_bytes));
    void *ws = test_alloc(ws_bytes);

    moe_tensor x = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    test_fill_normal(&x, 1.0);
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, tokens, f.kp);
    moe_tensor wts = test_tensor2(MOE_DTYPE_F32, tokens, f.kp);
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < f.kp; j++) {
            int32_t e = (int32_t)rng_int(0, f.experts - 1);
            if (rng_int(0, 9) == 0) e = -1; /* a non-local expert */
            test_set_i32(&ids, t, j, e);
            test_set(&wts, t, j, 0, rng_uniform(0.05, 1.0));
        }
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, tokens, cfg.hidden);
    CHECK_OK(moe_layer_forward(layer, &x, NULL, &ids, &wts, &out, ws, ws_bytes, NULL));
    double *ref = test_alloc(sizeof(double) * (size_t)(tokens * cfg.hidden));
    ref_layer(&f, &x, &ids, &wts, ref);
    double err = rel_err(&out, ref);
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
    ref_layer(&f, &x, &r_ids, &r_wts, ref);
    err = rel_err(&out_logits, ref);
    CHECK(err <= tol, "layer from logits: relative error %.3g > %.3g", err, tol);
    moe_layer_destroy(layer);
}

/* Tolerances: the reference repeats every rounding the SPEC's pipeline makes, so the two
 * differ only where f32 and double sums land on different sides of a rounding boundary:
 * one bf16 ulp (2^-8) on a few GEMM outputs, or one e4m3 ulp (2^-3 relative) on a few
 * requantised activations. Both average out over K; measured errors are ~1e-3. */
static void test_layer_fp8_grouped(void) { check_layer(small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE), 24, 1e-2); }
static void test_layer_bf16_grouped(void) { check_layer(small_grouped(MOE_WEIGHTS_BF16), 24, 5e-3); }
static void test_layer_fp8_softmax(void) { check_layer(small_softmax(MOE_WEIGHTS_FP8_BLOCKWISE), 17, 1e-2); }
static void test_layer_bf16_softmax(void) { check_layer(small_softmax(MOE_WEIGHTS_BF16), 17, 5e-3); }
static void test_layer_one_token(void) { check_layer(small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE), 1, 1e-2); }

static void test_layer_zero_tokens(void) {
    layer_fixture f = {.cfg = small_softmax(MOE_WEIGHTS_BF16)};
    make_weights(&f);
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
    layer_fixture f = {.cfg = small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE)};
    make_weights(&f);
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
    layer_fixture f = {.cfg = small_grouped(MOE_WEIGHTS_FP8_BLOCKWISE)};
    make_weights(&f);
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
    c = small_softmax(MOE_WEIGHTS_BF16), c.num_shared = 1;
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
    layer_fixture f = {.cfg = small_grouped(MOE_WEIGHTS_BF16)};
    make_weights(&f);
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
