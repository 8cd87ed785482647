/* See layer_ref.h. */
#include "layer_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/common/formats.h"

void layer_random_inputs(const layer_fixture *f, int64_t tokens, moe_tensor *x, moe_tensor *ids,
                         moe_tensor *wts) {
    *x = test_tensor2(MOE_DTYPE_BF16, tokens, f->cfg.hidden);
    test_fill_normal(x, 1.0);
    *ids = test_tensor2(MOE_DTYPE_I32, tokens, f->kp);
    *wts = test_tensor2(MOE_DTYPE_F32, tokens, f->kp);
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < f->kp; j++) {
            int32_t e = (int32_t)rng_int(0, f->experts - 1);
            if (rng_int(0, 9) == 0) e = -1; /* a non-local expert */
            test_set_i32(ids, t, j, e);
            test_set(wts, t, j, 0, rng_uniform(0.05, 1.0));
        }
}

void layer_make_weights(layer_fixture *f) {
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
void layer_ref_forward(const layer_fixture *f, const moe_tensor *x, const moe_tensor *ids,
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

double layer_rel_err(const moe_tensor *out, const double *ref) {
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

moe_layer_config layer_small_grouped(moe_weight_format wf) {
    moe_layer_config c = {0};
    c.num_experts = 8, c.topk = 3, c.hidden = 256, c.intermediate = 128;
    c.routing = MOE_ROUTING_GROUPED_SIGMOID, c.num_groups = 4, c.topk_group = 2;
    c.renormalize = 1, c.routed_scaling_factor = 2.5f, c.scale_output = 0, c.num_shared = 1;
    c.weights = wf;
    return c;
}

moe_layer_config layer_small_softmax(moe_weight_format wf) {
    moe_layer_config c = {0};
    c.num_experts = 6, c.topk = 2, c.hidden = 256, c.intermediate = 256;
    c.routing = MOE_ROUTING_SOFTMAX, c.num_groups = 1, c.topk_group = 1;
    c.renormalize = 1, c.routed_scaling_factor = 1.0f, c.weights = wf;
    return c;
}

