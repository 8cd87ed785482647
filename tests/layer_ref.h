/* What the layer tests of both backends share: a layer's weights made from the test RNG,
 * small configs, and the float64 composition of SPEC 7's pipeline that defines the layer. */
#ifndef MOE_TEST_LAYER_REF_H
#define MOE_TEST_LAYER_REF_H

#include "harness.h"

typedef struct {
    moe_layer_config cfg;
    moe_layer_weights w;
    int32_t kp, experts;
} layer_fixture;

/* Fills f->w (host tensors) for f->cfg: FP8 codes N(0,1) with block scales ~1/sqrt(K), or
 * BF16 N(0, 1/K); a N(0, 0.1) router bias for grouped routing. Sets kp and experts. */
void layer_make_weights(layer_fixture *f);

/* Host inputs for T tokens: x [T, H] bf16 N(0,1), and caller-given routing ids [T, k'] i32
 * (uniform experts, one in ten -1: a non-local expert) with weights [T, k'] in
 * [0.05, 1). */
void layer_random_inputs(const layer_fixture *f, int64_t tokens, moe_tensor *x, moe_tensor *ids,
                         moe_tensor *wts);

/* out[t * H + h] for caller-given ids and weights: the pipeline with its intermediate
 * roundings (bf16 GEMM outputs, FP8 activations) and every sum in double. */
void layer_ref_forward(const layer_fixture *f, const moe_tensor *x, const moe_tensor *ids,
                       const moe_tensor *wts, double *out);

/* ||out - ref|| / ||ref|| over a [T, H] output. */
double layer_rel_err(const moe_tensor *out, const double *ref);

/* E=8, k=3, H=256, I=128, 4 groups (2 kept), one shared expert, r = 2.5. */
moe_layer_config layer_small_grouped(moe_weight_format wf);
/* E=6, k=2, H=I=256, softmax routing. */
moe_layer_config layer_small_softmax(moe_weight_format wf);

#endif
