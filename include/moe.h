/*
 * libmoe: Mixture-of-Experts inference kernels behind a stable C11 API.
 *
 * Every op computes what docs/SPEC.md defines; the CPU
 * backend implements it literally and every other backend is tested against it.
 *
 * Conventions shared by all functions:
 * - Every function returns a moe_status. On failure moe_last_error() holds one sentence
 *   naming the argument, its value and the limit ("topk (9) > experts (8)").
 * - Tensors are described by moe_tensor: shapes are row-major [rows, cols]; strides are
 *   in elements; the innermost stride must be 1 and outer strides may pad rows
 *   (a leading dimension), never overlap them. Data lives where the context's backend
 *   works: host memory for MOE_BACKEND_CPU, device memory for MOE_BACKEND_CUDA.
 * - Every op takes a stream (a cudaStream_t cast to void*, NULL for the default stream;
 *   ignored by the CPU backend). Ops never allocate, never synchronise and never copy to
 *   the host: scratch memory comes from a caller-provided workspace whose size the
 *   matching *_workspace_size() function reports. So a whole layer can be captured in a
 *   CUDA graph.
 * - Data-dependent values (expert ids, row counts) stay on the device; sizes that bound
 *   them (T, k, E, capacity) are host arguments. Ids outside [0, E) (-1 marks a
 *   non-local expert under expert parallelism) are skipped by every op.
 * - No global mutable state except the thread-local error text.
 */
#ifndef MOE_H
#define MOE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MOE_API __declspec(dllexport)
#else
#define MOE_API __attribute__((visibility("default")))
#endif

#define MOE_VERSION_MAJOR 0
#define MOE_VERSION_MINOR 1
#define MOE_VERSION_PATCH 0

/* ------------------------------------------------------------------ status, errors */

typedef enum moe_status {
    MOE_OK = 0,
    MOE_ERR_INVALID_ARGUMENT = 1, /* null pointer, wrong dtype/rank/shape, out-of-range value */
    MOE_ERR_UNSUPPORTED = 2,      /* the backend or this build lacks the op or combination */
    MOE_ERR_WORKSPACE_TOO_SMALL = 3,
    MOE_ERR_OUT_OF_MEMORY = 4,    /* only from *_create functions; ops never allocate */
    MOE_ERR_NO_DEVICE = 5,        /* the CUDA backend found no usable GPU */
    MOE_ERR_BACKEND = 6           /* the backend's runtime reported an error (CUDA launch) */
} moe_status;

/* A fixed English name for a status ("invalid argument"). Never NULL. */
MOE_API const char *moe_status_string(moe_status status);

/* The sentence describing the last failure on the calling thread; "" after success of a
 * function that cleared it. Valid until the next libmoe call on this thread. */
MOE_API const char *moe_last_error(void);

/* "major.minor.patch" of the library actually linked. */
MOE_API const char *moe_version(void);

/* ------------------------------------------------------------------ tensors */

typedef enum moe_dtype {
    MOE_DTYPE_F32 = 0,
    MOE_DTYPE_F16 = 1,
    MOE_DTYPE_BF16 = 2,
    MOE_DTYPE_E4M3 = 3,   /* fp8 OCP E4M3FN: saturating at +-448, no infinities */
    MOE_DTYPE_E8M0 = 4,   /* UE8M0 scale: 2^(byte - 127); 0xFF is NaN */
    MOE_DTYPE_E2M1X2 = 5, /* two fp4 e2m1 values per byte: element 2i low nibble, 2i+1 high;
                             shapes and strides count bytes */
    MOE_DTYPE_I32 = 6
} moe_dtype;

#define MOE_MAX_RANK 4

typedef struct moe_tensor {
    void *data;
    moe_dtype dtype;
    int32_t rank;                  /* 1..MOE_MAX_RANK */
    int64_t shape[MOE_MAX_RANK];   /* shape[0] is the outermost dimension */
    int64_t stride[MOE_MAX_RANK];  /* in elements; stride[rank-1] must be 1 */
} moe_tensor;

/* Bytes per element of a dtype (1 for E2M1X2, which packs two values a byte); 0 if the
 * dtype is unknown. */
MOE_API size_t moe_dtype_size(moe_dtype dtype);

/* A short lowercase name ("bf16", "e4m3"); "unknown" for an unknown dtype. */
MOE_API const char *moe_dtype_name(moe_dtype dtype);

/* Contiguous row-major descriptors. Inline so they cost nothing and export nothing. */
static inline moe_tensor moe_tensor_1d(void *data, moe_dtype dtype, int64_t n0) {
    moe_tensor t = {data, dtype, 1, {n0, 0, 0, 0}, {1, 0, 0, 0}};
    return t;
}
static inline moe_tensor moe_tensor_2d(void *data, moe_dtype dtype, int64_t n0, int64_t n1) {
    moe_tensor t = {data, dtype, 2, {n0, n1, 0, 0}, {n1, 1, 0, 0}};
    return t;
}
static inline moe_tensor moe_tensor_3d(void *data, moe_dtype dtype, int64_t n0, int64_t n1,
                                       int64_t n2) {
    moe_tensor t = {data, dtype, 3, {n0, n1, n2, 0}, {n1 * n2, n2, 1, 0}};
    return t;
}

/* ------------------------------------------------------------------ contexts */

typedef enum moe_backend {
    MOE_BACKEND_CPU = 0,  /* reference backend, plain C11 (+ OpenMP where built with it) */
    MOE_BACKEND_CUDA = 1  /* NVIDIA GPUs; kernels tuned for Hopper (sm_90a) */
} moe_backend;

typedef struct moe_context moe_context;

/* Creates a context for a backend. device: the CUDA device ordinal (must be 0 for the
 * CPU backend). Fails with MOE_ERR_UNSUPPORTED if the library was built without that
 * backend and MOE_ERR_NO_DEVICE if the device does not exist. */
MOE_API moe_status moe_context_create(moe_context **ctx, moe_backend backend, int device);

/* Releases a context; NULL is allowed. Objects created from it must be destroyed first. */
MOE_API void moe_context_destroy(moe_context *ctx);

/* The backend a context runs on. */
MOE_API moe_backend moe_context_backend(const moe_context *ctx);

/* 1 if moe_context_create(backend, device 0) can succeed in this process, else 0. */
MOE_API int moe_backend_available(moe_backend backend);

/* ------------------------------------------------------------------ 1. routing */

#define MOE_MAX_EXPERTS 512   /* routing limit on E (logits columns) */
#define MOE_MAX_TOPK 16       /* routing limit on k (routed experts per token) */

typedef struct moe_grouped_topk_params {
    int32_t num_groups;          /* G: E % G == 0 */
    int32_t topk_group;          /* TG: 1 <= TG <= G */
    int32_t topk;                /* k: 1 <= k <= min(TG * E / G, MOE_MAX_TOPK) */
    int32_t renormalize;         /* divide the k weights by their sum */
    float routed_scaling_factor; /* r > 0 */
    int32_t scale_output;        /* multiply the weights by r */
    int32_t num_shared;          /* S >= 0 fused shared experts; S > 0 adds one column */
} moe_grouped_topk_params;

/* Grouped top-k with sigmoid and correction bias (DeepSeek-V3, Kimi K2, GLM-4.5).
 * logits [T, E] f32/bf16/f16; bias [E] f32 or NULL (zeros).
 * ids [T, k'] i32 and weights [T, k'] f32 with k' = k + (S > 0). Per token: s = sigmoid,
 * c = s + bias; group score = sum of the two largest c of the group; keep the TG best
 * groups; take the k largest c among them (descending c, ties to the lower index, NaN
 * below every number); weight = s, renormalised and scaled as asked. If fewer than k
 * experts are selectable the rest get id -1, weight 0. The shared column of token t holds
 * expert E + (t % S) with weight (sum of the routed weights before renormalisation) / r,
 * renormalised and scaled like the others (so it ends as 1 / r, or 1 with scale_output).
 * Non-numbers: an expert whose c is NaN is never selected; a group scores its two largest
 * non-NaN c (NaN if it has none) and NaN groups rank below numeric ones; renormalisation
 * is skipped when the sum is 0; infinities are ordinary values. */
MOE_API moe_status moe_route_grouped_topk(moe_context *ctx, const moe_tensor *logits,
                                          const moe_tensor *bias,
                                          const moe_grouped_topk_params *params,
                                          moe_tensor *ids, moe_tensor *weights, void *stream);

/* Softmax top-k (Mixtral, Qwen3-MoE): p = softmax(logits) over E in f32 (max-subtracted);
 * the k largest p in descending order (ties to the lower index, NaN below every number);
 * weight = p, divided by the sum of the k if renormalize (when the sum is > 0).
 * NaN logits are left out of the softmax and never selected (slots beyond the selectable
 * experts get id -1, weight 0); if the maximum logit is infinite, the experts at the
 * maximum share p = 1. logits [T, E] f32/bf16/f16; ids [T, k] i32; weights [T, k] f32;
 * k <= min(E, 16). */
MOE_API moe_status moe_route_softmax_topk(moe_context *ctx, const moe_tensor *logits,
                                          int32_t topk, int32_t renormalize, moe_tensor *ids,
                                          moe_tensor *weights, void *stream);

/* ------------------------------------------------------------------ 2. permutation */

/* Upper bound on the rows of a contiguous plan: T*k' + E'*(alignment - 1). Sizes perm, the
 * gathered activations and every per-row buffer of the layer. -1 for negative sizes,
 * alignment < 1, or overflow. Row indices are i32: plans need Rmax, T*k' <= INT32_MAX. */
MOE_API int64_t moe_permute_max_rows(int64_t num_tokens, int32_t topk, int32_t num_experts,
                                     int32_t alignment);

/* Scratch bytes moe_permute_plan and moe_permute_plan_masked need. */
MOE_API moe_status moe_permute_workspace_size(moe_context *ctx, int64_t num_tokens,
                                              int32_t topk, int32_t num_experts,
                                              size_t *bytes);

/* Contiguous plan. ids [T, k'] i32 (as routing produced them, ids outside [0, E') skipped).
 * counts [E'] i32 (optional, NULL): pairs per expert.
 * offsets [E'+1] i32: offsets[e+1] = offsets[e] + roundup(counts[e], alignment).
 * perm [Rmax] i32, Rmax = moe_permute_max_rows(): perm[r] = t*k' + j of the pair at row r,
 *   pairs of one expert in ascending t*k'+j; padding rows and rows >= offsets[E'] hold -1.
 * inv_perm [T*k'] i32: the row of pair (t, j), or -1 if its id was skipped.
 * 1 <= alignment <= 1024; the workspace must be 4-byte aligned. */
MOE_API moe_status moe_permute_plan(moe_context *ctx, const moe_tensor *ids,
                                    int32_t num_experts, int32_t alignment,
                                    moe_tensor *counts, moe_tensor *offsets, moe_tensor *perm,
                                    moe_tensor *inv_perm, void *workspace,
                                    size_t workspace_bytes, void *stream);

/* Masked plan with capacity C rows per expert. counts [E'] i32: rows kept per expert
 * (<= C). perm [E', C] i32: the pair at row e*C + i, -1 where i >= counts[e].
 * inv_perm [T*k'] i32: row e*C + rank of pair (t, j) within e, -1 if skipped or dropped.
 * overflow [1] i32: set to the number of pairs dropped because an expert was full. */
MOE_API moe_status moe_permute_plan_masked(moe_context *ctx, const moe_tensor *ids,
                                           int32_t num_experts, int64_t capacity,
                                           moe_tensor *counts, moe_tensor *perm,
                                           moe_tensor *inv_perm, moe_tensor *overflow,
                                           void *workspace, size_t workspace_bytes,
                                           void *stream);

/* Per-expert GEMM problem sizes: out [E', 3] i32 = (counts[e], n, k) per expert;
 * 1 <= n, k <= INT32_MAX. */
MOE_API moe_status moe_problem_sizes(moe_context *ctx, const moe_tensor *counts, int64_t n,
                                     int64_t k, moe_tensor *out, void *stream);

/* Gather rows: out[r, :] = x[perm[r] / topk, :]; a zero row where perm[r] is negative or
 * names a token >= T. x [T, H] and out [R, H] of one dtype (f32, f16, bf16, e4m3);
 * perm [R] i32 (R any, e.g. Rmax of a plan, or E'*C for a masked perm viewed as 1-D). */
MOE_API moe_status moe_gather_rows(moe_context *ctx, const moe_tensor *x,
                                   const moe_tensor *perm, int32_t topk, moe_tensor *out,
                                   void *stream);

/* ------------------------------------------------------------------ 3. quantisation */

typedef enum moe_scale_layout {
    MOE_SCALES_ROW_MAJOR = 0, /* [M, K/g] */
    MOE_SCALES_COL_MAJOR = 1  /* [K/g, M4], M4 = M rounded up to 4 (16-byte TMA columns) */
} moe_scale_layout;

typedef struct moe_fp8_group_params {
    int32_t group;           /* g: columns per scale; K % g == 0 (128 for DeepSeek-V3) */
    float eps;               /* floor on a group's amax (1e-10 by default) */
    int32_t ue8m0;           /* round each scale up to a power of two */
    moe_scale_layout layout; /* layout of the f32 scales */
} moe_fp8_group_params;

/* Per-token-group FP8: scale = max(amax, eps) / 448 (rounded up to 2^n if ue8m0);
 * q = e4m3(x / scale). x [T, K] f32/f16/bf16; q [M, K] e4m3; scales f32 per layout.
 * perm: NULL (M = T, row r reads x[r]) or [M] i32 to fuse the gather (row r reads
 * x[perm[r] / topk]; a negative or out-of-range entry quantises a zero row).
 * amax ignores NaN, so a NaN spoils only its own element; an infinite element makes its
 * group's scale infinite (that element becomes NaN, the rest of the group 0). Column-major
 * scales: the padding columns M..M4-1 are not written. */
MOE_API moe_status moe_quant_fp8_group(moe_context *ctx, const moe_tensor *x,
                                       const moe_tensor *perm, int32_t topk,
                                       const moe_fp8_group_params *params, moe_tensor *q,
                                       moe_tensor *scales, void *stream);

/* out = q * scale per group. q [M, K] e4m3; scales as quantisation wrote them; out
 * [M, K] f32/f16/bf16. */
MOE_API moe_status moe_dequant_fp8_group(moe_context *ctx, const moe_tensor *q,
                                         const moe_tensor *scales,
                                         const moe_fp8_group_params *params, moe_tensor *out,
                                         void *stream);

/* Rows of the swizzled block-scale layout for M rows over E experts whose row ranges each
 * start 128-aligned: roundup(M + E*127, 128). */
MOE_API int64_t moe_swizzled_scale_rows(int64_t rows, int32_t num_experts);

typedef enum moe_mx_rule {
    MOE_MX_RULE_CEIL = 0, /* exp = ceil(log2(amax / 448)): nothing saturates */
    MOE_MX_RULE_OCP = 1   /* exp = floor(log2(amax)) - 8, OCP MX spec; may saturate */
} moe_mx_rule;

/* MXFP8: blocks of 32 along K, one e8m0 scale each; q = e4m3(x / 2^exp). An all-zero
 * block gets exp = -127 (byte 0). x [M, K] f32/f16/bf16, K % 32 == 0; q [M, K] e4m3.
 * offsets [E+1] i32 (rows of expert e are offsets[e]..offsets[e+1]-1) or NULL (one
 * expert). scales [moe_swizzled_scale_rows(M, E), roundup(K/32, 4)] e8m0, swizzled:
 * each expert's block starts at row sum_{e'<e} roundup(count[e'], 128); inside it the
 * scale of (row m, col c) is at tile (m/128, c/4) byte (m%32)*16 + ((m%128)/32)*4 + c%4,
 * tiles row-major. Every byte of each expert's padded block is written (padding 0);
 * bytes beyond the last expert's block are not. scales must be contiguous. Rows covered
 * by no expert are neither read nor written; offsets are read as their running maximum
 * clamped to [0, M], so no data can make an op access memory out of bounds. */
MOE_API moe_status moe_quant_mxfp8(moe_context *ctx, const moe_tensor *x,
                                   const moe_tensor *offsets, moe_mx_rule rule, moe_tensor *q,
                                   moe_tensor *scales, void *stream);

/* out = q * 2^exp. Arguments as moe_quant_mxfp8; out [M, K] f32/f16/bf16. */
MOE_API moe_status moe_dequant_mxfp8(moe_context *ctx, const moe_tensor *q,
                                     const moe_tensor *scales, const moe_tensor *offsets,
                                     moe_tensor *out, void *stream);

/* NVFP4: blocks of 16 along K; sf = e4m3(gs[e] * amax / 6) stored as the block scale;
 * q = e2m1(x * gs[e] / sf) (0 where sf is 0). x [M, K] f32/f16/bf16, K % 16 == 0;
 * q [M, K/2] e2m1x2; global_scale [E] f32 (> 0 each, checked by the caller);
 * offsets as moe_quant_mxfp8; scales [moe_swizzled_scale_rows(M, E), roundup(K/16, 4)]
 * e4m3 in the swizzled layout, written as moe_quant_mxfp8 writes its scales. */
MOE_API moe_status moe_quant_nvfp4(moe_context *ctx, const moe_tensor *x,
                                   const moe_tensor *offsets, const moe_tensor *global_scale,
                                   moe_tensor *q, moe_tensor *scales, void *stream);

/* out = q * sf / gs[e]. Arguments as moe_quant_nvfp4; out [M, K] f32/f16/bf16. */
MOE_API moe_status moe_dequant_nvfp4(moe_context *ctx, const moe_tensor *q,
                                     const moe_tensor *scales, const moe_tensor *offsets,
                                     const moe_tensor *global_scale, moe_tensor *out,
                                     void *stream);

/* ------------------------------------------------------------------ 4. grouped GEMM */

/* Scratch bytes of a grouped GEMM over num_experts experts (either layout). */
MOE_API moe_status moe_grouped_gemm_workspace_size(moe_context *ctx, int32_t num_experts,
                                                   size_t *bytes);

/* Contiguous grouped GEMM: D[r, n] = sum_k A[r, k] * B[e, n, k] for the expert e whose
 * rows offsets[e]..offsets[e+1]-1 hold r; f32 accumulation, one rounding at the output.
 * A [R, K] e4m3 or bf16; B [E, N, K] of A's dtype; offsets [E+1] i32 on the device
 * (non-decreasing, offsets[E] <= R; rows beyond offsets[E] are not written).
 * FP8 blockwise (A e4m3): a_scales f32 per (row, 128 K-block) in a_layout
 * ([R, K/128] or [K/128, R4]); b_scales [E, N/128, K/128] f32; each 128-wide K block is
 * summed, then scaled by a_scale * b_scale. N and K multiples of 128.
 * BF16 (A bf16): a_scales and b_scales NULL; N and K multiples of 8.
 * D [R, N] bf16 or f16; its row stride may exceed N. */
MOE_API moe_status moe_grouped_gemm(moe_context *ctx, const moe_tensor *a,
                                    const moe_tensor *a_scales, moe_scale_layout a_layout,
                                    const moe_tensor *b, const moe_tensor *b_scales,
                                    const moe_tensor *offsets, moe_tensor *d, void *workspace,
                                    size_t workspace_bytes, void *stream);

/* Masked grouped GEMM: A [E, C, K], D [E, C, N], counts [E] i32 on the device: rows
 * i < min(counts[e], C) of expert e are computed, the others are not written.
 * a_scales for FP8: [E, C, K/128] (row-major) or [E, K/128, C4] (column-major). Other
 * arguments as moe_grouped_gemm. */
MOE_API moe_status moe_grouped_gemm_masked(moe_context *ctx, const moe_tensor *a,
                                           const moe_tensor *a_scales,
                                           moe_scale_layout a_layout, const moe_tensor *b,
                                           const moe_tensor *b_scales,
                                           const moe_tensor *counts, moe_tensor *d,
                                           void *workspace, size_t workspace_bytes,
                                           void *stream);

/* ------------------------------------------------------------------ 5. activation */

/* out[m, i] = silu(in[m, i]) * in[m, I + i] in f32, silu(a) = a / (1 + e^-a).
 * in [M, 2I] f32/f16/bf16; out [M, I] f32/f16/bf16 (RNE). */
MOE_API moe_status moe_silu_and_mul(moe_context *ctx, const moe_tensor *in, moe_tensor *out,
                                    void *stream);

/* silu_and_mul fused with per-token-group FP8 quantisation of the f32 result (no
 * intermediate rounding): q [M, I] e4m3, scales per params (I % group == 0). */
MOE_API moe_status moe_silu_and_mul_quant_fp8(moe_context *ctx, const moe_tensor *in,
                                              const moe_fp8_group_params *params,
                                              moe_tensor *q, moe_tensor *scales,
                                              void *stream);

/* ------------------------------------------------------------------ 6. combine */

/* out[t, h] = scale * sum_j weights[t, j] * y[inv_perm[t*k' + j], h], summed in j order
 * in f32 (deterministic, no atomics); pairs whose row is negative or >= R are skipped.
 * y [R, H] f32/f16/bf16; inv_perm [T*k'] i32; weights [T, k'] f32; out [T, H]
 * f32/f16/bf16. scale is the routed scaling factor when routing did not apply it, else 1. */
MOE_API moe_status moe_combine(moe_context *ctx, const moe_tensor *y,
                               const moe_tensor *inv_perm, const moe_tensor *weights,
                               float scale, moe_tensor *out, void *stream);

/* ------------------------------------------------------------------ 7. the layer */

typedef enum moe_routing {
    MOE_ROUTING_SOFTMAX = 0,        /* softmax top-k */
    MOE_ROUTING_GROUPED_SIGMOID = 1 /* grouped top-k with sigmoid + correction bias */
} moe_routing;

typedef enum moe_weight_format {
    MOE_WEIGHTS_BF16 = 0,         /* bf16 weights and activations */
    MOE_WEIGHTS_FP8_BLOCKWISE = 1 /* e4m3 weights with 128x128 block scales, 1x128 acts */
} moe_weight_format;

typedef struct moe_layer_config {
    int32_t num_experts;         /* E routed experts */
    int32_t topk;                /* k */
    int64_t hidden;              /* H */
    int64_t intermediate;        /* I, per expert */
    moe_routing routing;
    int32_t num_groups;          /* G (grouped routing; 1 otherwise) */
    int32_t topk_group;          /* TG (grouped routing; 1 otherwise) */
    int32_t renormalize;
    float routed_scaling_factor; /* r (1 for softmax routing) */
    int32_t scale_output;        /* routing applies r to the weights; else combine does */
    int32_t num_shared;          /* S fused shared experts (grouped routing only) */
    moe_weight_format weights;
} moe_layer_config;

/* The layer's weights. They are borrowed, not copied: they must stay valid, in the
 * context's memory, for the layer's lifetime.
 * w1 [E+S, 2I, H] (rows 0..I-1 gate, I..2I-1 up), w2 [E+S, H, I]: bf16 or e4m3 per the
 * config; w1_scales [E+S, 2I/128, H/128] and w2_scales [E+S, H/128, I/128] f32 for FP8
 * (data NULL for BF16); router_bias [E] f32 for grouped routing (data NULL: zeros). */
typedef struct moe_layer_weights {
    moe_tensor w1, w1_scales, w2, w2_scales, router_bias;
} moe_layer_weights;

typedef struct moe_layer moe_layer;

/* Checks the config and the weights' shapes and makes a layer. */
MOE_API moe_status moe_layer_create(moe_layer **layer, moe_context *ctx,
                                    const moe_layer_config *config,
                                    const moe_layer_weights *weights);

/* Releases a layer (not its weights); NULL is allowed. */
MOE_API void moe_layer_destroy(moe_layer *layer);

/* Scratch bytes moe_layer_forward needs for up to max_tokens tokens. */
MOE_API moe_status moe_layer_workspace_size(const moe_layer *layer, int64_t max_tokens,
                                            size_t *bytes);

/* One MoE layer: route -> permute -> quantise -> GEMM 1 -> silu*mul (+quantise) -> GEMM 2
 * -> combine. x [T, H] bf16; out [T, H] bf16. Routing input: router_logits [T, E]
 * (f32/bf16/f16) or, with router_logits NULL, topk_ids [T, k'] i32 and topk_weights
 * [T, k'] f32 as routing would produce them (k' = k + (S > 0)). If the config's
 * scale_output is 0 the output is multiplied by r. The workspace must hold
 * moe_layer_workspace_size(layer, T) bytes. */
MOE_API moe_status moe_layer_forward(moe_layer *layer, const moe_tensor *x,
                                     const moe_tensor *router_logits,
                                     const moe_tensor *topk_ids,
                                     const moe_tensor *topk_weights, moe_tensor *out,
                                     void *workspace, size_t workspace_bytes, void *stream);

/* The steps of moe_layer_forward, in order. */
typedef enum moe_layer_step {
    MOE_STEP_ROUTE = 0,    /* router logits -> top-k ids and weights (skipped if given) */
    MOE_STEP_PERMUTE = 1,  /* ids -> offsets, perm, inverse perm */
    MOE_STEP_QUANTIZE = 2, /* gather x by perm (+ FP8 quantisation) */
    MOE_STEP_GEMM1 = 3,    /* gate/up projection */
    MOE_STEP_ACTIVATE = 4, /* silu * mul (+ FP8 quantisation) */
    MOE_STEP_GEMM2 = 5,    /* down projection */
    MOE_STEP_COMBINE = 6,  /* weighted sum back to tokens */
    MOE_STEP_COUNT = 7
} moe_layer_step;

/* A "lower-case-name" for a step ("gemm1"); "unknown" outside the enum. */
MOE_API const char *moe_layer_step_name(moe_layer_step step);

/* Called by moe_layer_forward on the calling thread before (end = 0) and after (end = 1)
 * enqueuing each step, for profilers: wall clocks on the CPU backend, CUDA events or NVTX
 * ranges on a GPU stream. It must not call back into the layer. */
typedef void (*moe_step_hook)(void *user, moe_layer_step step, int end);

/* Installs (or, with hook NULL, removes) a layer's step hook. */
MOE_API moe_status moe_layer_set_step_hook(moe_layer *layer, moe_step_hook hook, void *user);

#ifdef __cplusplus
}
#endif

#endif /* MOE_H */
