/* The MoE layer: a config, borrowed weights, and a forward pass composed of the public
 * ops on the layer's context, so every backend runs the same pipeline and each step
 * stays callable (and testable) on its own. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LAYER_ALIGNMENT 1   /* rows per expert are not padded */
#define LAYER_GROUP 128     /* FP8 activation group and weight block */
#define WS_ALIGN 256        /* every workspace buffer starts 256-byte aligned */

struct moe_layer {
    moe_context *ctx;
    moe_layer_config cfg;
    moe_layer_weights w;
    int32_t kp;       /* k' = k + (S > 0): columns of ids and weights */
    int32_t experts;  /* E' = E + S: experts the permutation sees */
    moe_step_hook hook;
    void *hook_user;
    int fuse_gemm1;   /* run GEMM 1 with its activation fused where the backend can */
};

/* ---------------------------------------------------------------- config checks */

static int is_fp8(const moe_layer_config *c) { return c->weights == MOE_WEIGHTS_FP8_BLOCKWISE; }

static moe_status check_config(const moe_layer_config *c) {
    MOE_TRY(moe_check_ptr(c, "config"));
    MOE_TRY(moe_check_range(c->num_experts, "config->num_experts", 1, MOE_MAX_EXPERTS));
    MOE_TRY(moe_check_range(c->hidden, "config->hidden", 1, INT32_MAX));
    MOE_TRY(moe_check_range(c->intermediate, "config->intermediate", 1, INT32_MAX / 2));
    if (c->weights != MOE_WEIGHTS_BF16 && c->weights != MOE_WEIGHTS_FP8_BLOCKWISE)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "config->weights (%d) is not a moe_weight_format",
                        (int)c->weights);
    int64_t mult = is_fp8(c) ? LAYER_GROUP : 8;
    MOE_TRY(moe_check_multiple(c->hidden, "config->hidden", mult));
    MOE_TRY(moe_check_multiple(c->intermediate, "config->intermediate", mult));
    if (!(c->routed_scaling_factor > 0.0f) || isinf(c->routed_scaling_factor))
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "config->routed_scaling_factor (%g) must be positive and finite",
                        (double)c->routed_scaling_factor);
    if (c->routing == MOE_ROUTING_SOFTMAX) {
        MOE_TRY(moe_check_range(c->topk, "config->topk", 1,
                                c->num_experts < MOE_MAX_TOPK ? c->num_experts : MOE_MAX_TOPK));
        if (c->num_shared != 0)
            return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                            "config->num_shared (%d) must be 0 with softmax routing",
                            (int)c->num_shared);
    } else if (c->routing == MOE_ROUTING_GROUPED_SIGMOID) {
        MOE_TRY(moe_check_range(c->num_groups, "config->num_groups", 1, c->num_experts));
        if (c->num_experts % c->num_groups)
            return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                            "config->num_groups (%d) must divide config->num_experts (%d)",
                            (int)c->num_groups, (int)c->num_experts);
        MOE_TRY(moe_check_range(c->topk_group, "config->topk_group", 1, c->num_groups));
        int64_t selectable = (int64_t)c->topk_group * (c->num_experts / c->num_groups);
        MOE_TRY(moe_check_range(c->topk, "config->topk", 1,
                                selectable < MOE_MAX_TOPK ? selectable : MOE_MAX_TOPK));
        MOE_TRY(moe_check_range(c->num_shared, "config->num_shared", 0, MOE_MAX_EXPERTS));
    } else {
        return moe_fail(MOE_ERR_INVALID_ARGUMENT, "config->routing (%d) is not a moe_routing",
                        (int)c->routing);
    }
    return MOE_OK;
}

static moe_status check_weights(const moe_layer_config *c, const moe_layer_weights *w) {
    MOE_TRY(moe_check_ptr(w, "weights"));
    int64_t e = c->num_experts + c->num_shared, h = c->hidden, i = c->intermediate;
    unsigned dt = MOE_DT(is_fp8(c) ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16);
    MOE_TRY(moe_check_tensor(&w->w1, "weights->w1", dt, 3));
    MOE_TRY(moe_check_dim(&w->w1, "weights->w1", 0, e, "E + S"));
    MOE_TRY(moe_check_dim(&w->w1, "weights->w1", 1, 2 * i, "2 * intermediate"));
    MOE_TRY(moe_check_dim(&w->w1, "weights->w1", 2, h, "hidden"));
    MOE_TRY(moe_check_tensor(&w->w2, "weights->w2", dt, 3));
    MOE_TRY(moe_check_dim(&w->w2, "weights->w2", 0, e, "E + S"));
    MOE_TRY(moe_check_dim(&w->w2, "weights->w2", 1, h, "hidden"));
    MOE_TRY(moe_check_dim(&w->w2, "weights->w2", 2, i, "intermediate"));
    if (is_fp8(c)) {
        const int64_t g = LAYER_GROUP;
        MOE_TRY(moe_check_tensor(&w->w1_scales, "weights->w1_scales", MOE_DT(MOE_DTYPE_F32), 3));
        MOE_TRY(moe_check_dim(&w->w1_scales, "weights->w1_scales", 0, e, "E + S"));
        MOE_TRY(moe_check_dim(&w->w1_scales, "weights->w1_scales", 1, 2 * i / g, "2I / 128"));
        MOE_TRY(moe_check_dim(&w->w1_scales, "weights->w1_scales", 2, h / g, "H / 128"));
        MOE_TRY(moe_check_tensor(&w->w2_scales, "weights->w2_scales", MOE_DT(MOE_DTYPE_F32), 3));
        MOE_TRY(moe_check_dim(&w->w2_scales, "weights->w2_scales", 0, e, "E + S"));
        MOE_TRY(moe_check_dim(&w->w2_scales, "weights->w2_scales", 1, h / g, "H / 128"));
        MOE_TRY(moe_check_dim(&w->w2_scales, "weights->w2_scales", 2, i / g, "I / 128"));
    } else if (w->w1_scales.data || w->w2_scales.data) {
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "weights->w1_scales/w2_scales must have NULL data for BF16 weights");
    }
    if (w->router_bias.data) {
        if (c->routing != MOE_ROUTING_GROUPED_SIGMOID)
            return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                            "weights->router_bias is only used by grouped sigmoid routing; "
                            "set its data to NULL for softmax routing");
        MOE_TRY(moe_check_tensor(&w->router_bias, "weights->router_bias",
                                 MOE_DT(MOE_DTYPE_F32), 1));
        MOE_TRY(moe_check_dim(&w->router_bias, "weights->router_bias", 0, c->num_experts,
                              "num_experts"));
    }
    return MOE_OK;
}

moe_status moe_layer_create(moe_layer **layer, moe_context *ctx, const moe_layer_config *config,
                            const moe_layer_weights *weights) {
    moe_clear_error();
    MOE_TRY(moe_check_ptr(layer, "layer"));
    *layer = NULL;
    MOE_TRY(moe_check_ctx(ctx));
    MOE_TRY(check_config(config));
    MOE_TRY(check_weights(config, weights));
    moe_layer *l = calloc(1, sizeof *l);
    if (!l) return moe_fail(MOE_ERR_OUT_OF_MEMORY, "moe_layer_create: out of host memory");
    l->ctx = ctx;
    l->cfg = *config;
    l->w = *weights;
    l->kp = config->topk + (config->num_shared > 0);
    l->experts = config->num_experts + config->num_shared;
    /* MOE_LAYER_FUSE_GEMM1=1 runs the activation in GEMM 1's epilogue where the backend
     * can. Off by default: on the H100 the fused GEMM 1 grew by more than the activation
     * kernel it replaces at every T (bench/NOTES.md, "GEMM 1's fused epilogue") */
    const char *fuse = getenv("MOE_LAYER_FUSE_GEMM1");
    l->fuse_gemm1 = fuse && *fuse && strcmp(fuse, "0") != 0;
    *layer = l;
    return MOE_OK;
}

void moe_layer_destroy(moe_layer *layer) { free(layer); }

moe_status moe_layer_set_step_hook(moe_layer *layer, moe_step_hook hook, void *user) {
    moe_clear_error();
    MOE_TRY(moe_check_ptr(layer, "layer"));
    layer->hook = hook;
    layer->hook_user = user;
    return MOE_OK;
}

const char *moe_layer_step_name(moe_layer_step step) {
    static const char *const names[MOE_STEP_COUNT] = {
        "route", "permute", "quantize", "gemm1", "activate", "gemm2", "combine"};
    return (unsigned)step < MOE_STEP_COUNT ? names[step] : "unknown";
}

/* ---------------------------------------------------------------- workspace plan */

/* The forward pass's buffers, carved from one workspace. Rows are bounded by Rmax, the
 * plan's upper bound: the real row count stays on the device. */
typedef struct {
    moe_tensor ids, weights;           /* [T, k'] routing output */
    moe_tensor counts, offsets;        /* [E'], [E'+1] */
    moe_tensor perm, inv_perm;         /* [Rmax], [T*k'] */
    moe_tensor a1, a1_scales;          /* [Rmax, H] (+ [H/128, Rmax4] FP8 scales) */
    moe_tensor c1;                     /* [Rmax, 2I] bf16 */
    moe_tensor a2, a2_scales;          /* [Rmax, I] (+ [I/128, Rmax4]) */
    moe_tensor c2;                     /* [Rmax, H] bf16 */
    void *permute_ws, *gemm_ws;
    size_t permute_ws_bytes, gemm_ws_bytes;
    size_t total;
} layer_buffers;

/* Places t (contiguous, of the given shape) at the next aligned offset of base (which may
 * be NULL while only sizing). */
static void carve(char *base, size_t *used, moe_tensor *t, moe_dtype dtype, int rank,
                  int64_t n0, int64_t n1) {
    *used = (*used + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    *t = rank == 1 ? moe_tensor_1d(NULL, dtype, n0) : moe_tensor_2d(NULL, dtype, n0, n1);
    t->data = base ? base + *used : NULL;
    *used += (size_t)(n0 * (rank == 1 ? 1 : n1)) * moe_dtype_size(dtype);
}

static void *carve_bytes(char *base, size_t *used, size_t bytes) {
    *used = (*used + WS_ALIGN - 1) / WS_ALIGN * WS_ALIGN;
    void *p = base && bytes ? base + *used : NULL;
    *used += bytes;
    return p;
}

static moe_status plan_buffers(const moe_layer *l, int64_t t, void *base, layer_buffers *b) {
    const moe_layer_config *c = &l->cfg;
    int64_t rmax = moe_permute_max_rows(t, l->kp, l->experts, LAYER_ALIGNMENT);
    if (rmax < 0 || rmax > INT32_MAX)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "tokens (%" PRId64 ") * k' (%d) overflows the i32 row index", t,
                        (int)l->kp);
    int64_t h = c->hidden, i = c->intermediate, r4 = moe_round_up(rmax, 4);
    moe_dtype act = is_fp8(c) ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    size_t used = 0;
    char *p = base;
    carve(p, &used, &b->ids, MOE_DTYPE_I32, 2, t, l->kp);
    carve(p, &used, &b->weights, MOE_DTYPE_F32, 2, t, l->kp);
    carve(p, &used, &b->counts, MOE_DTYPE_I32, 1, l->experts, 0);
    carve(p, &used, &b->offsets, MOE_DTYPE_I32, 1, l->experts + 1, 0);
    carve(p, &used, &b->perm, MOE_DTYPE_I32, 1, rmax, 0);
    carve(p, &used, &b->inv_perm, MOE_DTYPE_I32, 1, t * l->kp, 0);
    carve(p, &used, &b->a1, act, 2, rmax, h);
    carve(p, &used, &b->c1, MOE_DTYPE_BF16, 2, rmax, 2 * i);
    carve(p, &used, &b->a2, act, 2, rmax, i);
    carve(p, &used, &b->c2, MOE_DTYPE_BF16, 2, rmax, h);
    if (is_fp8(c)) {
        carve(p, &used, &b->a1_scales, MOE_DTYPE_F32, 2, h / LAYER_GROUP, r4);
        carve(p, &used, &b->a2_scales, MOE_DTYPE_F32, 2, i / LAYER_GROUP, r4);
    }
    MOE_TRY(moe_permute_workspace_size(l->ctx, t, l->kp, l->experts, &b->permute_ws_bytes));
    MOE_TRY(moe_grouped_gemm_workspace_size(l->ctx, l->experts, &b->gemm_ws_bytes));
    b->permute_ws = carve_bytes(p, &used, b->permute_ws_bytes);
    b->gemm_ws = carve_bytes(p, &used, b->gemm_ws_bytes);
    b->total = used;
    return MOE_OK;
}

moe_status moe_layer_workspace_size(const moe_layer *layer, int64_t max_tokens, size_t *bytes) {
    moe_clear_error();
    MOE_TRY(moe_check_ptr(layer, "layer"));
    MOE_TRY(moe_check_ptr(bytes, "bytes"));
    MOE_TRY(moe_check_range(max_tokens, "max_tokens", 0, INT32_MAX));
    layer_buffers b;
    MOE_TRY(plan_buffers(layer, max_tokens, NULL, &b));
    *bytes = b.total;
    return MOE_OK;
}

/* ---------------------------------------------------------------- forward */

static moe_status check_forward(const moe_layer *l, const moe_tensor *x,
                                const moe_tensor *logits, const moe_tensor *ids,
                                const moe_tensor *weights, const moe_tensor *out) {
    const moe_layer_config *c = &l->cfg;
    MOE_TRY(moe_check_tensor(x, "x", MOE_DT(MOE_DTYPE_BF16), 2));
    int64_t t = x->shape[0];
    MOE_TRY(moe_check_dim(x, "x", 1, c->hidden, "hidden"));
    MOE_TRY(moe_check_tensor(out, "out", MOE_DT(MOE_DTYPE_BF16), 2));
    MOE_TRY(moe_check_dim(out, "out", 0, t, "T (x.shape[0])"));
    MOE_TRY(moe_check_dim(out, "out", 1, c->hidden, "hidden"));
    if (logits) {
        if (ids || weights)
            return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                            "pass either router_logits or topk_ids/topk_weights, not both");
        return MOE_OK; /* the routing op checks the logits */
    }
    if (!ids || !weights)
        return moe_fail(MOE_ERR_INVALID_ARGUMENT,
                        "router_logits is NULL, so topk_ids and topk_weights are required");
    MOE_TRY(moe_check_tensor(ids, "topk_ids", MOE_DT(MOE_DTYPE_I32), 2));
    MOE_TRY(moe_check_dim(ids, "topk_ids", 0, t, "T (x.shape[0])"));
    MOE_TRY(moe_check_dim(ids, "topk_ids", 1, l->kp, "k + (S > 0)"));
    MOE_TRY(moe_check_tensor(weights, "topk_weights", MOE_DT(MOE_DTYPE_F32), 2));
    MOE_TRY(moe_check_dim(weights, "topk_weights", 0, t, "T (x.shape[0])"));
    MOE_TRY(moe_check_dim(weights, "topk_weights", 1, l->kp, "k + (S > 0)"));
    return MOE_OK;
}

static void hook(const moe_layer *l, moe_layer_step step, int end) {
    if (l->hook) l->hook(l->hook_user, step, end);
}

/* GEMM 1 of the FP8 layer, with the activation fused into it where the backend can
 * (*fused = 1: the activate step then has nothing left to do). */
static moe_status fp8_gemm1(moe_layer *l, layer_buffers *b, const moe_fp8_group_params *q,
                            int *fused, void *stream) {
    *fused = 0;
    if (l->fuse_gemm1)
        MOE_TRY(moe_grouped_gemm_silu_quant(l->ctx, &b->a1, &b->a1_scales, q->layout, &l->w.w1,
                                            &l->w.w1_scales, &b->offsets, &b->c1, q, &b->a2,
                                            &b->a2_scales, b->gemm_ws, b->gemm_ws_bytes, fused,
                                            stream));
    if (*fused) return MOE_OK;
    return moe_grouped_gemm(l->ctx, &b->a1, &b->a1_scales, q->layout, &l->w.w1, &l->w.w1_scales,
                            &b->offsets, &b->c1, b->gemm_ws, b->gemm_ws_bytes, stream);
}

/* Runs one step between the hook's begin and end calls. */
#define LAYER_STEP(l, step, call)         \
    do {                                  \
        hook((l), (step), 0);             \
        moe_status step_s_ = (call);      \
        hook((l), (step), 1);             \
        if (step_s_ != MOE_OK) return step_s_; \
    } while (0)

static moe_status route(moe_layer *l, const moe_tensor *logits, layer_buffers *b,
                        void *stream) {
    const moe_layer_config *c = &l->cfg;
    if (c->routing == MOE_ROUTING_SOFTMAX)
        return moe_route_softmax_topk(l->ctx, logits, c->topk, c->renormalize, &b->ids,
                                      &b->weights, stream);
    moe_grouped_topk_params p = {c->num_groups, c->topk_group, c->topk, c->renormalize,
                                 c->routed_scaling_factor, c->scale_output, c->num_shared};
    return moe_route_grouped_topk(l->ctx, logits, l->w.router_bias.data ? &l->w.router_bias : NULL,
                                  &p, &b->ids, &b->weights, stream);
}

moe_status moe_layer_forward(moe_layer *layer, const moe_tensor *x,
                             const moe_tensor *router_logits, const moe_tensor *topk_ids,
                             const moe_tensor *topk_weights, moe_tensor *out, void *workspace,
                             size_t workspace_bytes, void *stream) {
    moe_clear_error();
    MOE_TRY(moe_check_ptr(layer, "layer"));
    MOE_TRY(check_forward(layer, x, router_logits, topk_ids, topk_weights, out));
    moe_layer *l = layer;
    const moe_layer_config *c = &l->cfg;
    int64_t t = x->shape[0];
    layer_buffers b;
    MOE_TRY(plan_buffers(l, t, NULL, &b));
    MOE_TRY(moe_check_workspace(workspace, workspace_bytes, b.total));
    MOE_TRY(plan_buffers(l, t, workspace, &b));

    const moe_tensor *ids = topk_ids, *weights = topk_weights;
    if (router_logits) {
        LAYER_STEP(l, MOE_STEP_ROUTE, route(l, router_logits, &b, stream));
        ids = &b.ids;
        weights = &b.weights;
    }
    LAYER_STEP(l, MOE_STEP_PERMUTE,
               moe_permute_plan(l->ctx, ids, l->experts, LAYER_ALIGNMENT, &b.counts,
                                &b.offsets, &b.perm, &b.inv_perm, b.permute_ws,
                                b.permute_ws_bytes, stream));
    if (is_fp8(c)) {
        moe_fp8_group_params q = {LAYER_GROUP, 1e-10f, 0, MOE_SCALES_COL_MAJOR};
        LAYER_STEP(l, MOE_STEP_QUANTIZE,
                   moe_quant_fp8_group_planned(l->ctx, x, &b.perm, &b.inv_perm, l->kp, &q,
                                               &b.a1, &b.a1_scales, stream));
        int fused;
        LAYER_STEP(l, MOE_STEP_GEMM1, fp8_gemm1(l, &b, &q, &fused, stream));
        LAYER_STEP(l, MOE_STEP_ACTIVATE,
                   fused ? MOE_OK
                         : moe_silu_and_mul_quant_fp8(l->ctx, &b.c1, &q, &b.a2, &b.a2_scales,
                                                      stream));
        LAYER_STEP(l, MOE_STEP_GEMM2,
                   moe_grouped_gemm(l->ctx, &b.a2, &b.a2_scales, q.layout, &l->w.w2,
                                    &l->w.w2_scales, &b.offsets, &b.c2, b.gemm_ws,
                                    b.gemm_ws_bytes, stream));
    } else {
        LAYER_STEP(l, MOE_STEP_QUANTIZE,
                   moe_gather_rows(l->ctx, x, &b.perm, l->kp, &b.a1, stream));
        LAYER_STEP(l, MOE_STEP_GEMM1,
                   moe_grouped_gemm(l->ctx, &b.a1, NULL, MOE_SCALES_ROW_MAJOR, &l->w.w1, NULL,
                                    &b.offsets, &b.c1, b.gemm_ws, b.gemm_ws_bytes, stream));
        LAYER_STEP(l, MOE_STEP_ACTIVATE, moe_silu_and_mul(l->ctx, &b.c1, &b.a2, stream));
        LAYER_STEP(l, MOE_STEP_GEMM2,
                   moe_grouped_gemm(l->ctx, &b.a2, NULL, MOE_SCALES_ROW_MAJOR, &l->w.w2, NULL,
                                    &b.offsets, &b.c2, b.gemm_ws, b.gemm_ws_bytes, stream));
    }
    float scale = c->scale_output ? 1.0f : c->routed_scaling_factor;
    LAYER_STEP(l, MOE_STEP_COMBINE,
               moe_combine(l->ctx, &b.c2, &b.inv_perm, weights, scale, out, stream));
    return MOE_OK;
}
