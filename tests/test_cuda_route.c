/* CUDA routing against the CPU reference (SPEC 1): both ops at the model shapes and at
 * odd ones (E not a multiple of 4, groups of one expert, more than 32 groups, group sizes
 * that are and are not a power-of-two run of vectors), every logits dtype and layout the
 * kernels pick a different load for (contiguous, padded rows, odd strides, a misaligned
 * start), exact ties, NaN and infinities, logits extreme enough for the kernels' rare
 * exact-division paths, the weight options, T = 0, and writes that must stay inside the
 * outputs.
 *
 * Ids must equal the CPU's except on tokens whose float64 reference has a near-tie (two
 * scores the result depends on closer than NEAR_TIE), where the device's expf (within 2
 * ulp of the true value, the host's within 1) or the order of a sum may break the tie
 * the other way; such tokens are only checked to be plausible, and must stay rare. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "route_check.h"

#define F32 MOE_DTYPE_F32
#define I32 MOE_DTYPE_I32

/* f32 rounds a score with an error near 1e-7 of the operands that make it (a couple of
 * ulps more on the device): a gap under 1e-5 of them is a near-tie, a factor of 50 to
 * spare. Exact ties (gap 0) are kept: both backends then compare equal values and break
 * the tie by index. */
#define NEAR_TIE 1e-5

/* Grouped weights are s = 1 / (1 + expf(-x)), renormalised and scaled in the same f32
 * operations on both backends; only expf differs (the device's is within 2 ulp, the
 * host's within 1), which moves a weight by a few ulps, a few 1e-7 relative. */
#define GROUPED_TOL 1e-5

/* Subnormal weights (s of logits near -88, p of logits 70 below the maximum) keep only a
 * few bits, where an ulp of expf is a large relative error: a few subnormal ulps more. */
#define SUBNORMAL_SLACK (4 * 0x1p-149)

static const moe_dtype float_dtypes[] = {MOE_DTYPE_F32, MOE_DTYPE_BF16, MOE_DTYPE_F16};

/* ---------------------------------------------------------------- float64 near-ties */

typedef struct ranked {
    double v;
    int32_t i;
    double mag; /* the size of the operands that made v: f32 errors scale with it */
} ranked;

/* Descending value, NaN last, ties to the lower index: the CPU's ranking. */
static int by_rank(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    int xn = isnan(x->v), yn = isnan(y->v);
    if (xn != yn) return xn ? 1 : -1;
    if (!xn && x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* A gap of infinities (inf - inf) is NaN and an exact tie is 0: neither is near. */
static int near(double gap, double scale) { return gap > 0.0 && gap < NEAR_TIE * scale; }

/* Two adjacent scores are near if their gap is small next to the larger operands that
 * made them: O(1) for ordinary rows, tiny for subnormal sigmoids without a bias. */
static int near_ranked(const ranked *a, const ranked *b) {
    return near(a->v - b->v, a->mag > b->mag ? a->mag : b->mag);
}

/* Whether a grouped result depends on an ordering closer than NEAR_TIE: the TG-th
 * against the next group score, or adjacent experts among the first k + 1 candidates. */
static int grouped_near_tie(const double *x, const double *bias, int32_t e,
                            const moe_grouped_topk_params *p) {
    double c[MOE_MAX_EXPERTS], mag[MOE_MAX_EXPERTS];
    for (int32_t i = 0; i < e; i++) {
        double s = 1.0 / (1.0 + exp(-x[i])), b = bias ? bias[i] : 0.0;
        c[i] = s + b;
        mag[i] = fabs(s) + fabs(b);
    }
    int32_t g_n = p->num_groups, size = e / g_n;
    ranked groups[MOE_MAX_EXPERTS], cand[MOE_MAX_EXPERTS];
    for (int32_t g = 0; g < g_n; g++) {
        int n = 0;
        for (int32_t j = 0; j < size; j++) {
            int32_t i = g * size + j;
            if (!isnan(c[i])) cand[n++] = (ranked){c[i], i, mag[i]};
        }
        qsort(cand, (size_t)n, sizeof cand[0], by_rank);
        groups[g] = n == 0   ? (ranked){NAN, g, 0.0}
                    : n == 1 ? (ranked){cand[0].v, g, cand[0].mag}
                             : (ranked){cand[0].v + cand[1].v, g, cand[0].mag + cand[1].mag};
    }
    qsort(groups, (size_t)g_n, sizeof groups[0], by_rank);
    int tie = p->topk_group < g_n &&
              near_ranked(&groups[p->topk_group - 1], &groups[p->topk_group]);
    int n = 0;
    for (int32_t i = 0; i < e; i++)
        for (int32_t g = 0; g < p->topk_group; g++)
            if (groups[g].i == i / size && !isnan(c[i])) cand[n++] = (ranked){c[i], i, mag[i]};
    qsort(cand, (size_t)n, sizeof cand[0], by_rank);
    for (int j = 0; j < p->topk && j + 1 < n; j++) tie |= near_ranked(&cand[j], &cand[j + 1]);
    return tie;
}

/* The same for softmax, on p with the CPU's NaN and infinity rules; f32 errors in p are
 * relative, so the test is too. */
static int softmax_near_tie(const double *x, int32_t e, int32_t k) {
    double max = -INFINITY, sum = 0.0, p[MOE_MAX_EXPERTS];
    for (int32_t i = 0; i < e; i++)
        if (!isnan(x[i]) && x[i] > max) max = x[i];
    for (int32_t i = 0; i < e; i++) {
        p[i] = isnan(x[i]) ? NAN : isinf(max) ? (x[i] == max ? 1.0 : 0.0) : exp(x[i] - max);
        if (!isnan(p[i])) sum += p[i];
    }
    ranked cand[MOE_MAX_EXPERTS];
    int n = 0;
    for (int32_t i = 0; i < e; i++)
        if (!isnan(p[i])) cand[n++] = (ranked){p[i] / sum, i, p[i] / sum};
    qsort(cand, (size_t)n, sizeof cand[0], by_rank);
    int tie = 0;
    for (int j = 0; j < k && j + 1 < n; j++) tie |= near_ranked(&cand[j], &cand[j + 1]);
    return tie;
}

/* ---------------------------------------------------------------- inputs */

typedef enum fill_mode {
    FILL_NORMAL,  /* N(0, 2): distinct values, rare near-ties */
    FILL_TIES,    /* a handful of values: many exact ties of experts and of groups */
    FILL_SPECIAL  /* N(0, 2) with NaN, +inf and -inf sprinkled in, some rows all special */
} fill_mode;

/* No two pairs of these have sigmoids with equal sums (as -a and a would: s(-a) + s(a)
 * = 1), so equal group scores come from equal values, not from rounding. */
static const double tie_values[] = {-1.5, -0.25, 0.5, 1.0, 2.0};

/* Fills row t of a float tensor (E = shape[1] columns) per mode. */
static void fill_row(moe_tensor *t, int64_t row, fill_mode mode) {
    int64_t e = t->shape[1];
    int whole = mode == FILL_SPECIAL ? (int)rng_int(0, 15) : 99; /* 0..3: an all-special row */
    for (int64_t i = 0; i < e; i++) {
        double v = 2.0 * rng_normal();
        if (mode == FILL_TIES) v = tie_values[rng_int(0, 4)];
        if (mode == FILL_SPECIAL) {
            int64_t u = rng_int(0, 19);
            if (whole == 0) u = 0;            /* all NaN */
            if (whole == 1) u = 2;            /* all -inf */
            if (whole == 2 && u > 4) u = 1;   /* mostly +inf */
            if (whole == 3) u = u < 10 ? 0 : 2; /* NaN and -inf only */
            if (u == 0) v = NAN;
            if (u == 1) v = INFINITY;
            if (u == 2) v = -INFINITY;
        }
        test_set(t, row, i, 0, v);
    }
}

static void fill_all(moe_tensor *t, fill_mode mode) {
    for (int64_t r = 0; r < t->shape[0]; r++) fill_row(t, r, mode);
}

/* A bias per mode: N(0, 0.3) (comparable to the spread of s, so it reorders experts),
 * one constant for ties (different biases could make sums that are equal in reals but
 * not after f32 rounding, where an ulp of expf decides), and a few NaN / infinite
 * entries for the special mode. */
static moe_tensor make_bias(int32_t e, fill_mode mode) {
    moe_tensor b = test_tensor1(F32, e);
    for (int32_t i = 0; i < e; i++) {
        double v = 0.3 * rng_normal();
        if (mode == FILL_TIES) v = 0.25;
        if (mode == FILL_SPECIAL) {
            int64_t u = rng_int(0, 39);
            v = u == 0 ? NAN : u == 1 ? INFINITY : u == 2 ? -INFINITY : v;
        }
        test_set(&b, i, 0, 0, v);
    }
    return b;
}

/* A [rows, cols] host tensor whose rows are pad elements longer, all poisoned. */
static moe_tensor padded2(moe_dtype dt, int64_t rows, int64_t cols, int64_t pad) {
    moe_tensor t = test_tensor2(dt, rows, cols + pad);
    t.shape[1] = cols;
    return t;
}

/* How the logits sit in device memory; each picks another load path of the kernels. */
typedef enum layout {
    LAYOUT_DENSE,      /* contiguous: the widest vectors */
    LAYOUT_PAD8,       /* rows padded by 8 elements: still vectors, stride != E */
    LAYOUT_PAD3,       /* rows padded by 3: odd stride, element loads */
    LAYOUT_MISALIGNED, /* the data starts one element into its allocation */
    LAYOUT_COUNT
} layout;

static const char *layout_name(layout l) {
    return l == LAYOUT_DENSE ? "dense" : l == LAYOUT_PAD8 ? "pad8" : l == LAYOUT_PAD3 ? "pad3"
                                                                                  : "misaligned";
}

static int64_t layout_pad(layout l) { return l == LAYOUT_PAD8 ? 8 : l == LAYOUT_PAD3 ? 3 : 0; }

/* Bytes from a tensor's first to one past its last element. */
static size_t span_bytes(const moe_tensor *t) {
    int64_t last = 0;
    for (int d = 0; d < t->rank; d++) {
        if (t->shape[d] == 0) return 0;
        last += (t->shape[d] - 1) * t->stride[d];
    }
    return (size_t)(last + 1) * moe_dtype_size(t->dtype);
}

/* A device copy of a host tensor; with misaligned, its data starts one element past the
 * start of the allocation (the element before it poisoned). */
static moe_tensor device_copy(const moe_tensor *host, int misaligned) {
    if (!misaligned) return test_to_device(host);
    size_t es = moe_dtype_size(host->dtype), bytes = span_bytes(host);
    moe_tensor carrier = test_tensor1(MOE_DTYPE_I32, (int64_t)((bytes + es + 3) / 4));
    memset(carrier.data, 0xFF, (size_t)carrier.shape[0] * 4);
    memcpy((char *)carrier.data + es, host->data, bytes);
    moe_tensor dev = test_to_device(&carrier);
    moe_tensor view = *host;
    view.data = (char *)dev.data + es;
    return view;
}

/* ---------------------------------------------------------------- comparing */

/* Compares token t of the device outputs with the CPU's. Near-tie tokens are only checked
 * to be written with plausible values: ids in [-1, id_end), weights finite and >= 0. */
static void compare_token(const moe_tensor *want_ids, const moe_tensor *want_w,
                          const moe_tensor *got_ids, const moe_tensor *got_w, int64_t t,
                          int cols, int near_tie, int32_t id_end, double tol, tally *y) {
    y->tokens++;
    if (near_tie) y->skipped++;
    for (int j = 0; j < cols; j++) {
        int32_t id = test_get_i32(got_ids, t, j), want_id = test_get_i32(want_ids, t, j);
        double got = test_get(got_w, t, j, 0), want = test_get(want_w, t, j, 0);
        int ok;
        if (near_tie)
            ok = id >= -1 && id < id_end && isfinite(got) && got >= 0.0;
        else /* an expected 0 (an empty slot, or s of -inf) must be exactly 0 */
            ok = id == want_id &&
                 (want == 0.0 ? got == 0.0
                              : fabs(got - want) <= tol * fabs(want) + SUBNORMAL_SLACK);
        if (ok) continue;
        if (y->bad++ == 0)
            snprintf(y->first, sizeof y->first,
                     "token %lld slot %d: id %d weight %.9g, want id %d weight %.9g%s",
                     (long long)t, j, (int)id, got, (int)want_id, want,
                     near_tie ? " (near-tie token)" : "");
    }
}

/* ---------------------------------------------------------------- one run of each op */

typedef struct run_opts {
    moe_dtype dt;
    int64_t tokens;
    layout lay;
    int64_t out_pad;
    int renorm, scale, bias;
    fill_mode fill;
} run_opts;

/* Routes random logits on both backends and compares token by token. */
static void grouped_run(moe_context *gpu, const grouped_shape *m, const run_opts *o) {
    int64_t T = o->tokens;
    moe_grouped_topk_params p = {m->g, m->tg, m->k, o->renorm, m->r, o->scale, m->s};
    int cols = m->k + (m->s > 0);
    moe_tensor logits = padded2(o->dt, T, m->e, layout_pad(o->lay));
    fill_all(&logits, o->fill);
    moe_tensor bias = make_bias(m->e, o->fill);
    const moe_tensor *bias_arg = o->bias ? &bias : NULL;
    moe_tensor ids = padded2(I32, T, cols, o->out_pad), w = padded2(F32, T, cols, o->out_pad);
    CHECK_OK(moe_route_grouped_topk(test_cpu(), &logits, bias_arg, &p, &ids, &w, NULL));

    moe_tensor d_logits = device_copy(&logits, o->lay == LAYOUT_MISALIGNED);
    moe_tensor d_bias = test_to_device(&bias);
    moe_tensor d_ids = test_device_like(&ids), d_w = test_device_like(&w);
    CHECK_OK(moe_route_grouped_topk(gpu, &d_logits, o->bias ? &d_bias : NULL, &p, &d_ids, &d_w,
                                    NULL));
    moe_tensor g_ids = padded2(I32, T, cols, o->out_pad), g_w = padded2(F32, T, cols, o->out_pad);
    test_to_host(&d_ids, &g_ids);
    test_to_host(&d_w, &g_w);

    tally y = {0};
    double x[MOE_MAX_EXPERTS], b[MOE_MAX_EXPERTS];
    for (int32_t i = 0; i < m->e; i++) b[i] = test_get(&bias, i, 0, 0);
    for (int64_t t = 0; t < T; t++) {
        for (int32_t i = 0; i < m->e; i++) x[i] = test_get(&logits, t, i, 0);
        int tie = grouped_near_tie(x, o->bias ? b : NULL, m->e, &p);
        compare_token(&ids, &w, &g_ids, &g_w, t, cols, tie, m->e + (m->s > 0 ? m->s : 0),
                      GROUPED_TOL, &y);
    }
    char what[200];
    snprintf(what, sizeof what,
             "%s E=%d G=%d TG=%d k=%d S=%d %s T=%lld %s renorm=%d scale=%d bias=%d fill=%d",
             m->name, (int)m->e, (int)m->g, (int)m->tg, (int)m->k, (int)m->s,
             moe_dtype_name(o->dt), (long long)T, layout_name(o->lay), o->renorm, o->scale,
             o->bias, (int)o->fill);
    route_check_tally(&y, what);
    CHECK(route_padding_intact(&g_ids) && route_padding_intact(&g_w),
          "%s: a write went past a row", what);
}

typedef struct softmax_shape {
    const char *name;
    int32_t e, k;
} softmax_shape;

static void softmax_run(moe_context *gpu, const softmax_shape *m, const run_opts *o) {
    int64_t T = o->tokens;
    moe_tensor logits = padded2(o->dt, T, m->e, layout_pad(o->lay));
    fill_all(&logits, o->fill);
    moe_tensor ids = padded2(I32, T, m->k, o->out_pad), w = padded2(F32, T, m->k, o->out_pad);
    CHECK_OK(moe_route_softmax_topk(test_cpu(), &logits, m->k, o->renorm, &ids, &w, NULL));

    moe_tensor d_logits = device_copy(&logits, o->lay == LAYOUT_MISALIGNED);
    moe_tensor d_ids = test_device_like(&ids), d_w = test_device_like(&w);
    CHECK_OK(moe_route_softmax_topk(gpu, &d_logits, m->k, o->renorm, &d_ids, &d_w, NULL));
    moe_tensor g_ids = padded2(I32, T, m->k, o->out_pad), g_w = padded2(F32, T, m->k, o->out_pad);
    test_to_host(&d_ids, &g_ids);
    test_to_host(&d_w, &g_w);

    /* The softmax sum of E terms: the CPU adds them in index order, the device as a tree,
     * and each order is within E ulps of the exact sum, which moves every p (not the
     * renormalised weights, where the sum cancels). Plus expf's few ulps. */
    double tol = 1e-5 + (o->renorm ? 0.0 : m->e * 0x1p-24);
    tally y = {0};
    double x[MOE_MAX_EXPERTS];
    for (int64_t t = 0; t < T; t++) {
        for (int32_t i = 0; i < m->e; i++) x[i] = test_get(&logits, t, i, 0);
        compare_token(&ids, &w, &g_ids, &g_w, t, m->k, softmax_near_tie(x, m->e, m->k), m->e,
                      tol, &y);
    }
    char what[160];
    snprintf(what, sizeof what, "softmax %s E=%d k=%d %s T=%lld %s renorm=%d fill=%d", m->name,
             (int)m->e, (int)m->k, moe_dtype_name(o->dt), (long long)T, layout_name(o->lay),
             o->renorm, (int)o->fill);
    route_check_tally(&y, what);
    CHECK(route_padding_intact(&g_ids) && route_padding_intact(&g_w),
          "%s: a write went past a row", what);
}

/* ---------------------------------------------------------------- model shapes */

static const int64_t model_tokens[] = {1, 32, 200, 4096};

/* Every model, T, dtype; the layout, weight flags, bias and output padding rotate so
 * each model meets each of them. */
static void test_cuda_grouped_models(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int run = 0;
    for (size_t mi = 0; mi < route_grouped_model_count; mi++)
        for (size_t ti = 0; ti < 4; ti++)
            for (size_t d = 0; d < 3; d++, run++) {
                run_opts o = {float_dtypes[d], model_tokens[ti], (layout)(run % LAYOUT_COUNT),
                              (run / 3) % 2 ? 2 : 0, run & 1, (run >> 1) & 1, run % 5 != 4,
                              FILL_NORMAL};
                grouped_run(gpu, &route_grouped_models[mi], &o);
            }
    route_check_skipped("grouped models");
}

static const softmax_shape softmax_models[] = {
    {"Qwen3", 128, 8},      {"Mixtral", 8, 2},   {"gpt-oss-20b", 32, 4},
    {"E512 k16", 512, 16},  {"E384 k8", 384, 8},
};

static void test_cuda_softmax_models(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int run = 0;
    for (size_t mi = 0; mi < sizeof softmax_models / sizeof softmax_models[0]; mi++)
        for (size_t ti = 0; ti < 4; ti++)
            for (size_t d = 0; d < 3; d++, run++) {
                run_opts o = {float_dtypes[d], model_tokens[ti], (layout)(run % LAYOUT_COUNT),
                              (run / 2) % 2 ? 1 : 0, run & 1, 0, 0, FILL_NORMAL};
                softmax_run(gpu, &softmax_models[mi], &o);
            }
    route_check_skipped("softmax models");
}

/* ---------------------------------------------------------------- odd shapes */

/* E not a multiple of 4 (element loads only), groups of one to a hundred experts, more
 * than 32 groups (a lane per group), TG == G with G > 1 (no group phase), k = 1 and
 * k = 16, every slot bucket from E <= 32 to E <= 512. */
static const grouped_shape odd_grouped[] = {
    {"E75 G5", 75, 5, 2, 7, 2.0f, 1},      {"E75 G1", 75, 1, 1, 9, 1.0f, 0},
    {"E75 G75", 75, 75, 10, 5, 2.5f, 1},   {"E75 G25", 75, 25, 4, 12, 1.0f, 0},
    {"E512 G64", 512, 64, 8, 16, 2.5f, 1}, {"E510 G255", 510, 255, 100, 16, 1.0f, 0},
    {"E512 G512", 512, 512, 20, 16, 1.0f, 3}, {"E96 G32", 96, 32, 5, 8, 2.0f, 1},
    {"E300 G4", 300, 4, 2, 16, 2.5f, 2},   {"E6 G3", 6, 3, 2, 3, 1.0f, 1},
    {"E1", 1, 1, 1, 1, 2.0f, 1},           {"E33 G3", 33, 3, 1, 11, 1.0f, 0},
    {"E200 G2", 200, 2, 1, 16, 1.0f, 1},   {"E448 G7", 448, 7, 3, 10, 2.5f, 1},
    {"E384 G8", 384, 8, 2, 8, 2.5f, 1},    {"E20 G4 all kept", 20, 4, 4, 5, 1.0f, 0},
    {"E128 G16 all kept", 128, 16, 16, 8, 1.0f, 0}, {"E64 G2 k1", 64, 2, 1, 1, 1.0f, 1},
    {"E256 G8 k16", 256, 8, 4, 16, 1.0f, 0}, {"E160 G20", 160, 20, 3, 8, 2.5f, 1},
};

static void test_cuda_grouped_odd_shapes(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int run = 0;
    for (size_t mi = 0; mi < sizeof odd_grouped / sizeof odd_grouped[0]; mi++)
        for (int64_t T = 37; T <= 300; T += 263)
            for (size_t d = 0; d < 3; d++, run++) {
                run_opts o = {float_dtypes[d], T, (layout)(run % LAYOUT_COUNT), run % 3 == 1,
                              (run >> 1) & 1, (run >> 2) & 1, run % 7 != 3, FILL_NORMAL};
                grouped_run(gpu, &odd_grouped[mi], &o);
            }
    route_check_skipped("grouped odd shapes");
}

static const softmax_shape odd_softmax[] = {
    {"E5", 5, 3},     {"E75", 75, 16},   {"E1", 1, 1},   {"E33", 33, 5},
    {"E160", 160, 16}, {"E256", 256, 8}, {"E6 k6", 6, 6}, {"E510", 510, 1},
};

static void test_cuda_softmax_odd_shapes(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int run = 0;
    for (size_t mi = 0; mi < sizeof odd_softmax / sizeof odd_softmax[0]; mi++)
        for (int64_t T = 37; T <= 300; T += 263)
            for (size_t d = 0; d < 3; d++, run++) {
                run_opts o = {float_dtypes[d], T, (layout)(run % LAYOUT_COUNT), run % 3 == 2,
                              run & 1, 0, 0, FILL_NORMAL};
                softmax_run(gpu, &odd_softmax[mi], &o);
            }
    route_check_skipped("softmax odd shapes");
}

/* ---------------------------------------------------------------- ties */

/* Rows of a handful of values: experts and groups tie exactly all the time, and a lane
 * often holds several of the winners (its cached second best and its rescan). */
static void test_cuda_route_ties(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const grouped_shape shapes[] = {
        {"DeepSeek-V3", 256, 8, 4, 8, 2.5f, 1}, {"Kimi K2", 384, 1, 1, 16, 2.827f, 1},
        {"E75 G5", 75, 5, 3, 12, 1.0f, 0},     {"E512 G64", 512, 64, 7, 16, 1.0f, 0},
        {"E16 G4", 16, 4, 2, 6, 1.0f, 0},
    };
    int run = 0;
    for (size_t mi = 0; mi < sizeof shapes / sizeof shapes[0]; mi++)
        for (size_t d = 0; d < 3; d++, run++) {
            run_opts o = {float_dtypes[d], 150, (layout)(run % LAYOUT_COUNT), 0, run & 1, 0,
                          run % 4 != 3, FILL_TIES};
            grouped_run(gpu, &shapes[mi], &o);
        }
    const softmax_shape sm[] = {{"E384", 384, 16}, {"E128", 128, 8}, {"E8", 8, 6}, {"E75", 75, 9}};
    for (size_t mi = 0; mi < sizeof sm / sizeof sm[0]; mi++)
        for (size_t d = 0; d < 3; d++, run++) {
            run_opts o = {float_dtypes[d], 150, (layout)(run % LAYOUT_COUNT), 0, run & 1, 0, 0,
                          FILL_TIES};
            softmax_run(gpu, &sm[mi], &o);
        }
    route_check_skipped("ties");
}

/* Routes hand-made f32 rows on both backends: ids must be equal and weights within
 * GROUPED_TOL (expected zeros exactly). */
static void grouped_rows_both(moe_context *gpu, int64_t T, int32_t e, const float *x,
                              const float *bias, const moe_grouped_topk_params *p, int line) {
    int cols = p->topk + (p->num_shared > 0);
    moe_tensor lt = test_tensor2(F32, T, e), bt = test_tensor1(F32, e);
    memcpy(lt.data, x, (size_t)(T * e) * sizeof *x);
    if (bias) memcpy(bt.data, bias, (size_t)e * sizeof *bias);
    moe_tensor ids = test_tensor2(I32, T, cols), w = test_tensor2(F32, T, cols);
    CHECK_OK(moe_route_grouped_topk(test_cpu(), &lt, bias ? &bt : NULL, p, &ids, &w, NULL));
    moe_tensor d_l = test_to_device(&lt), d_b = test_to_device(&bt);
    moe_tensor d_ids = test_device_like(&ids), d_w = test_device_like(&w);
    CHECK_OK(moe_route_grouped_topk(gpu, &d_l, bias ? &d_b : NULL, p, &d_ids, &d_w, NULL));
    moe_tensor g_ids = test_tensor2(I32, T, cols), g_w = test_tensor2(F32, T, cols);
    test_to_host(&d_ids, &g_ids);
    test_to_host(&d_w, &g_w);
    tally y = {0};
    for (int64_t t = 0; t < T; t++)
        compare_token(&ids, &w, &g_ids, &g_w, t, cols, 0, 0, GROUPED_TOL, &y);
    char what[64];
    snprintf(what, sizeof what, "hand-made rows of line %d", line);
    route_check_tally(&y, what);
}

static void softmax_rows_both(moe_context *gpu, int64_t T, int32_t e, const float *x, int32_t k,
                              int renorm, int line) {
    moe_tensor lt = test_tensor2(F32, T, e);
    memcpy(lt.data, x, (size_t)(T * e) * sizeof *x);
    moe_tensor ids = test_tensor2(I32, T, k), w = test_tensor2(F32, T, k);
    CHECK_OK(moe_route_softmax_topk(test_cpu(), &lt, k, renorm, &ids, &w, NULL));
    moe_tensor d_l = test_to_device(&lt);
    moe_tensor d_ids = test_device_like(&ids), d_w = test_device_like(&w);
    CHECK_OK(moe_route_softmax_topk(gpu, &d_l, k, renorm, &d_ids, &d_w, NULL));
    moe_tensor g_ids = test_tensor2(I32, T, k), g_w = test_tensor2(F32, T, k);
    test_to_host(&d_ids, &g_ids);
    test_to_host(&d_w, &g_w);
    tally y = {0};
    for (int64_t t = 0; t < T; t++)
        compare_token(&ids, &w, &g_ids, &g_w, t, k, 0, 0, 1e-5 + e * 0x1p-24, &y);
    char what[64];
    snprintf(what, sizeof what, "hand-made softmax rows of line %d", line);
    route_check_tally(&y, what);
}

/* The tie cases of tests/test_route.c, and rows of one repeated value at every slot
 * bucket (the winners come from the first lanes, several from each). */
static void test_cuda_route_exact_ties(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    float half[16];
    for (int i = 0; i < 16; i++) half[i] = 0.5f;
    moe_grouped_topk_params p = {4, 2, 6, 1, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 16, half, NULL, &p, __LINE__);
    float x[8] = {1, 3, 3, 2, 3, 0.25f, 3, -1};
    moe_grouped_topk_params one = {1, 1, 5, 0, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 8, x, NULL, &one, __LINE__);
    float g[8] = {0.5f, 0.5f, 2, 1, 0.5f, 0.5f, 1, 2}; /* groups 1 and 3 tie */
    moe_grouped_topk_params tg1 = {4, 1, 2, 0, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 8, g, NULL, &tg1, __LINE__);
    /* a bias that equalises c: s(inf) = 1 and s(0) + 0.5 = 1 on any expf */
    float xb[4] = {INFINITY, 0, 0, 0};
    float b[4] = {0, 0, 0, 0.5f};
    moe_grouped_topk_params k2 = {1, 1, 2, 0, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 4, xb, b, &k2, __LINE__);

    static float same[4 * 512];
    for (int i = 0; i < 4 * 512; i++) same[i] = 0.75f;
    const int32_t es[] = {32, 64, 128, 256, 384, 512, 75};
    for (size_t i = 0; i < sizeof es / sizeof es[0]; i++) {
        moe_grouped_topk_params all = {1, 1, 16, 1, 2.0f, 1, 1};
        grouped_rows_both(gpu, 4, es[i], same, NULL, &all, __LINE__);
        int32_t groups = es[i] == 75 ? 5 : 8, kept = 3 * (es[i] / groups);
        moe_grouped_topk_params grp = {groups, 3, kept < 16 ? kept : 16, 0, 1.0f, 0, 0};
        grouped_rows_both(gpu, 4, es[i], same, NULL, &grp, __LINE__);
        softmax_rows_both(gpu, 4, es[i], same, 16, 1, __LINE__);
        softmax_rows_both(gpu, 4, es[i], same, 7, 0, __LINE__);
    }
    float sx[8] = {1, 3, 3, 2, 3, 0.5f, 3, -1};
    softmax_rows_both(gpu, 1, 8, sx, 6, 0, __LINE__);
}

/* ---------------------------------------------------------------- NaN and infinities */

/* Random rows with NaN, +inf and -inf in the logits (and in the bias), some rows all
 * NaN or all -inf: unselectable experts, -1 slots, NaN group scores, infinite c, and the
 * softmax limit must all match the CPU. */
static void test_cuda_route_nan_inf(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const grouped_shape shapes[] = {
        {"DeepSeek-V3", 256, 8, 4, 8, 2.5f, 1}, {"Kimi K2", 384, 1, 1, 8, 2.827f, 1},
        {"E75 G5", 75, 5, 2, 7, 2.0f, 1},      {"E512 G64", 512, 64, 8, 16, 1.0f, 0},
        {"E16 G4", 16, 4, 2, 6, 1.0f, 2},      {"E8 G8", 8, 8, 3, 3, 1.0f, 0},
    };
    int run = 0;
    for (size_t mi = 0; mi < sizeof shapes / sizeof shapes[0]; mi++)
        for (size_t d = 0; d < 3; d++, run++) {
            run_opts o = {float_dtypes[d], 160, (layout)(run % LAYOUT_COUNT), 0, run & 1,
                          (run >> 1) & 1, run % 3 != 2, FILL_SPECIAL};
            grouped_run(gpu, &shapes[mi], &o);
        }
    const softmax_shape sm[] = {{"Qwen3", 128, 8}, {"E384", 384, 16}, {"E5", 5, 3}, {"E75", 75, 9}};
    for (size_t mi = 0; mi < sizeof sm / sizeof sm[0]; mi++)
        for (size_t d = 0; d < 3; d++, run++) {
            run_opts o = {float_dtypes[d], 160, (layout)(run % LAYOUT_COUNT), 0, run & 1, 0, 0,
                          FILL_SPECIAL};
            softmax_run(gpu, &sm[mi], &o);
        }
    /* NaN and infinity rows produce more near-ties than normal ones (e.g. +inf among
     * saturated sigmoids), still few */
    route_check_skipped("NaN / inf");

    /* the hand-made rows of tests/test_route.c */
    const float n = NAN, inf = INFINITY;
    moe_grouped_topk_params p = {1, 1, 4, 1, 1.0f, 0, 0};
    float a[8] = {n, 1, n, 2, 0.5f, n, 3, -1};
    grouped_rows_both(gpu, 1, 8, a, NULL, &p, __LINE__);
    float bb[8] = {n, 1, n, n, n, n, 2, n};
    grouped_rows_both(gpu, 1, 8, bb, NULL, &p, __LINE__);
    float c[8] = {n, n, n, n, n, n, 1, n};
    moe_grouped_topk_params gp = {4, 2, 2, 1, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 8, c, NULL, &gp, __LINE__);
    float e8[8] = {n, n, n, n, n, n, n, n};
    moe_grouped_topk_params s = {2, 1, 3, 1, 2.5f, 1, 1};
    grouped_rows_both(gpu, 1, 8, e8, NULL, &s, __LINE__);
    float xi[4] = {-inf, 0.5f, inf, 1};
    moe_grouped_topk_params p4 = {1, 1, 4, 1, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 4, xi, NULL, &p4, __LINE__);
    float bi[4] = {0.25f, -inf, 0.25f, inf};
    moe_grouped_topk_params k2 = {1, 1, 2, 0, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 4, xi, bi, &k2, __LINE__);
    float gg[4] = {3, 3, -3, -3}, both[4] = {0.5f, 0.5f, inf, -inf};
    moe_grouped_topk_params g1 = {2, 1, 1, 0, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 4, gg, both, &g1, __LINE__);
    float h[6] = {0.5f, 0.5f, n, n, 1, 2}, hb[6] = {inf, -inf, 0, 0, 0, 0};
    moe_grouped_topk_params g3 = {3, 2, 3, 0, 1.0f, 0, 0};
    grouped_rows_both(gpu, 1, 6, h, hb, &g3, __LINE__);

    float sa[4] = {n, 0.5f, 0.5f, n};
    softmax_rows_both(gpu, 1, 4, sa, 3, 1, __LINE__);
    float sall[4] = {n, n, n, n};
    softmax_rows_both(gpu, 1, 4, sall, 2, 1, __LINE__);
    float sb[4] = {0.5f, inf, 1, inf};
    softmax_rows_both(gpu, 1, 4, sb, 3, 0, __LINE__);
    float sc[4] = {-inf, 0.5f, -inf, 0.5f};
    softmax_rows_both(gpu, 1, 4, sc, 3, 1, __LINE__);
    float sd[4] = {-inf, -inf, -inf, -inf};
    softmax_rows_both(gpu, 1, 4, sd, 2, 0, __LINE__);
    float se[4] = {n, inf, 2, n};
    softmax_rows_both(gpu, 1, 4, se, 2, 0, __LINE__);
}

/* ---------------------------------------------------------------- extreme logits */

/* Logits that reach the rare exact paths of the kernels: sigmoids of x in [-88.7, -87.3]
 * are subnormal (1 + e^-x >= 2^126), and softmax terms e^(x - max) below 2^-100 (x more
 * than 69 under the maximum) leave the fast division. The window right at expf's
 * overflow (x near -88.72) is left out: there the host's and the device's expf may
 * disagree on overflowing, which would turn s from subnormal into 0. Grouped logits stop
 * at 4, where sigmoid has not yet saturated into near-ties. */
static double extreme_logit(int softmax) {
    if (softmax) return rng_uniform(-110.0, 0.0);
    if (rng_int(0, 9) < 3) return rng_uniform(-88.70, -87.2); /* subnormal s */
    double v = rng_uniform(-95.0, 4.0);
    return v > -88.74 && v < -88.70 ? -87.5 : v;
}

static void fill_extreme(moe_tensor *t, int softmax) {
    for (int64_t r = 0; r < t->shape[0]; r++)
        for (int64_t i = 0; i < t->shape[1]; i++) test_set(t, r, i, 0, extreme_logit(softmax));
}

static void test_cuda_route_extreme(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const grouped_shape shapes[] = {
        {"DeepSeek-V3", 256, 8, 4, 8, 2.5f, 1}, {"Kimi K2", 384, 1, 1, 8, 2.827f, 1},
        {"E75 G5", 75, 5, 2, 7, 2.0f, 1},      {"E16 G4", 16, 4, 2, 6, 1.0f, 0},
        {"E12 G1 k12", 12, 1, 1, 12, 1.0f, 0},
    };
    int run = 0;
    for (size_t mi = 0; mi < sizeof shapes / sizeof shapes[0]; mi++)
        for (size_t d = 0; d < 3; d++, run++) {
            const grouped_shape *m = &shapes[mi];
            int64_t T = 96;
            int use_bias = run % 2, cols = m->k + (m->s > 0);
            layout lay = (layout)(run % LAYOUT_COUNT);
            moe_grouped_topk_params p = {m->g, m->tg, m->k, run % 3 != 0, m->r, run % 4 == 1,
                                         m->s};
            moe_tensor logits = padded2(float_dtypes[d], T, m->e, layout_pad(lay));
            fill_extreme(&logits, 0);
            moe_tensor bias = make_bias(m->e, FILL_NORMAL);
            moe_tensor ids = test_tensor2(I32, T, cols), w = test_tensor2(F32, T, cols);
            CHECK_OK(moe_route_grouped_topk(test_cpu(), &logits, use_bias ? &bias : NULL, &p, &ids,
                                            &w, NULL));
            moe_tensor d_l = device_copy(&logits, lay == LAYOUT_MISALIGNED);
            moe_tensor d_b = test_to_device(&bias);
            moe_tensor d_ids = test_device_like(&ids), d_w = test_device_like(&w);
            CHECK_OK(moe_route_grouped_topk(gpu, &d_l, use_bias ? &d_b : NULL, &p, &d_ids, &d_w,
                                            NULL));
            moe_tensor g_ids = test_tensor2(I32, T, cols), g_w = test_tensor2(F32, T, cols);
            test_to_host(&d_ids, &g_ids);
            test_to_host(&d_w, &g_w);
            tally y = {0};
            double x[MOE_MAX_EXPERTS], b[MOE_MAX_EXPERTS];
            for (int32_t i = 0; i < m->e; i++) b[i] = test_get(&bias, i, 0, 0);
            for (int64_t t = 0; t < T; t++) {
                for (int32_t i = 0; i < m->e; i++) x[i] = test_get(&logits, t, i, 0);
                compare_token(&ids, &w, &g_ids, &g_w, t, cols,
                              grouped_near_tie(x, use_bias ? b : NULL, m->e, &p),
                              m->e + (m->s > 0 ? m->s : 0), GROUPED_TOL, &y);
            }
            char what[128];
            snprintf(what, sizeof what, "extreme %s %s bias=%d", m->name,
                     moe_dtype_name(float_dtypes[d]), use_bias);
            route_check_tally(&y, what);
        }
    const softmax_shape sm[] = {{"E5", 5, 5}, {"E16", 16, 16}, {"E32", 32, 16}, {"E75", 75, 9}};
    for (size_t mi = 0; mi < sizeof sm / sizeof sm[0]; mi++)
        for (size_t d = 0; d < 3; d++, run++) {
            int64_t T = 96;
            const softmax_shape *m = &sm[mi];
            layout lay = (layout)(run % LAYOUT_COUNT);
            int renorm = run & 1;
            moe_tensor logits = padded2(float_dtypes[d], T, m->e, layout_pad(lay));
            fill_extreme(&logits, 1);
            moe_tensor ids = test_tensor2(I32, T, m->k), w = test_tensor2(F32, T, m->k);
            CHECK_OK(moe_route_softmax_topk(test_cpu(), &logits, m->k, renorm, &ids, &w, NULL));
            moe_tensor d_l = device_copy(&logits, lay == LAYOUT_MISALIGNED);
            moe_tensor d_ids = test_device_like(&ids), d_w = test_device_like(&w);
            CHECK_OK(moe_route_softmax_topk(gpu, &d_l, m->k, renorm, &d_ids, &d_w, NULL));
            moe_tensor g_ids = test_tensor2(I32, T, m->k), g_w = test_tensor2(F32, T, m->k);
            test_to_host(&d_ids, &g_ids);
            test_to_host(&d_w, &g_w);
            tally y = {0};
            double x[MOE_MAX_EXPERTS];
            for (int64_t t = 0; t < T; t++) {
                for (int32_t i = 0; i < m->e; i++) x[i] = test_get(&logits, t, i, 0);
                compare_token(&ids, &w, &g_ids, &g_w, t, m->k, softmax_near_tie(x, m->e, m->k),
                              m->e, 1e-5 + (renorm ? 0.0 : m->e * 0x1p-24), &y);
            }
            char what[128];
            snprintf(what, sizeof what, "extreme softmax %s %s", m->name,
                     moe_dtype_name(float_dtypes[d]));
            route_check_tally(&y, what);
        }
    route_check_skipped("extreme logits");
}

/* ---------------------------------------------------------------- weight options */

/* All four renormalise / scale combinations with S = 0, 1, 3: the shared column holds
 * E + t % S with weight sum / r, renormalised and scaled like the routed ones. */
static void test_cuda_weight_options(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const int32_t shared[] = {0, 1, 3};
    int run = 0;
    for (int flags = 0; flags < 4; flags++)
        for (size_t si = 0; si < 3; si++, run++) {
            grouped_shape m = {"DeepSeek-V3", 256, 8, 4, 8, 2.5f, shared[si]};
            run_opts o = {float_dtypes[run % 3], 50, LAYOUT_DENSE, 0, flags & 1, flags >> 1, 1,
                          FILL_NORMAL};
            grouped_run(gpu, &m, &o);
            grouped_shape m2 = {"E75 G1", 75, 1, 1, 4, 1.25f, shared[si]};
            grouped_run(gpu, &m2, &o);
        }
    route_check_skipped("weight options");

    /* the shared column directly: id E + t % 3; weight 1 with renormalise and scale */
    int64_t T = 7;
    moe_grouped_topk_params p = {8, 4, 8, 1, 2.5f, 1, 3};
    moe_tensor logits = test_tensor2(F32, T, 256);
    test_fill_normal(&logits, 2.0);
    moe_tensor d_l = test_to_device(&logits);
    moe_tensor ids = test_tensor2(I32, T, 9), w = test_tensor2(F32, T, 9);
    moe_tensor d_ids = test_device_like(&ids), d_w = test_device_like(&w);
    CHECK_OK(moe_route_grouped_topk(gpu, &d_l, NULL, &p, &d_ids, &d_w, NULL));
    test_to_host(&d_ids, &ids);
    test_to_host(&d_w, &w);
    int bad = 0;
    for (int64_t t = 0; t < T; t++)
        bad += test_get_i32(&ids, t, 8) != 256 + t % 3 || fabs(test_get(&w, t, 8, 0) - 1.0) > 3e-7;
    CHECK(bad == 0, "shared column: %d tokens without id E + t %% S and weight 1", bad);
}

/* ---------------------------------------------------------------- T = 0, bounds */

/* T = 0 succeeds, even with NULL data, and writes nothing. */
static void test_cuda_route_no_tokens(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    moe_tensor h_logits = test_tensor2(MOE_DTYPE_BF16, 1, 64), h_bias = test_tensor1(F32, 64);
    test_fill_normal(&h_logits, 1.0);
    test_fill_normal(&h_bias, 0.3);
    moe_tensor h_ids = test_tensor2(I32, 1, 7), h_w = test_tensor2(F32, 1, 7);
    moe_tensor logits = test_to_device(&h_logits), bias = test_to_device(&h_bias);
    moe_tensor ids = test_device_like(&h_ids), w = test_device_like(&h_w);
    logits.shape[0] = ids.shape[0] = w.shape[0] = 0; /* one poisoned row past the end */
    moe_grouped_topk_params p = {8, 2, 6, 1, 2.5f, 1, 1};
    CHECK_OK(moe_route_grouped_topk(gpu, &logits, &bias, &p, &ids, &w, NULL));
    moe_tensor sids = ids, sw = w;
    sids.shape[1] = sw.shape[1] = 6;
    CHECK_OK(moe_route_softmax_topk(gpu, &logits, 6, 1, &sids, &sw, NULL));
    ids.shape[0] = w.shape[0] = 1;
    test_to_host(&ids, &h_ids);
    test_to_host(&w, &h_w);
    int untouched = 1;
    for (int j = 0; j < 7; j++)
        untouched &= route_is_poison(&h_ids, 0, j) && route_is_poison(&h_w, 0, j);
    CHECK(untouched, "T = 0 wrote an output");
    ids.shape[0] = w.shape[0] = 0;
    logits.data = ids.data = w.data = NULL;
    CHECK_OK(moe_route_grouped_topk(gpu, &logits, NULL, &p, &ids, &w, NULL));
    sids.data = sw.data = NULL;
    CHECK_OK(moe_route_softmax_topk(gpu, &logits, 6, 0, &sids, &sw, NULL));
}

/* The outputs are views of the front of larger poisoned buffers: every byte after them
 * must still be poison, and every byte of them written. */
static void test_cuda_route_tail_untouched(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const struct {
        int32_t e, g, tg, k, s;
        int64_t T;
        int softmax;
    } cases[] = {
        {256, 8, 4, 8, 1, 33, 0}, {384, 1, 1, 16, 0, 5, 0}, {75, 5, 2, 7, 2, 9, 0},
        {128, 1, 1, 8, 0, 33, 1}, {5, 1, 1, 3, 0, 7, 1},    {512, 1, 1, 16, 0, 3, 1},
    };
    const int64_t tail = 64; /* elements after the outputs */
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int64_t T = cases[ci].T;
        int32_t e = cases[ci].e, cols = cases[ci].k + (!cases[ci].softmax && cases[ci].s > 0);
        moe_tensor h_logits = test_tensor2(F32, T, e);
        test_fill_normal(&h_logits, 2.0);
        moe_tensor logits = test_to_device(&h_logits);
        moe_tensor h_ids = test_tensor1(I32, T * cols + tail);
        moe_tensor h_w = test_tensor1(F32, T * cols + tail);
        moe_tensor d_ids = test_device_like(&h_ids), d_w = test_device_like(&h_w);
        moe_tensor ids = d_ids, w = d_w; /* [T, cols] views of the front */
        ids.rank = w.rank = 2;
        ids.shape[0] = w.shape[0] = T;
        ids.shape[1] = w.shape[1] = cols;
        ids.stride[0] = w.stride[0] = cols;
        ids.stride[1] = w.stride[1] = 1;
        if (cases[ci].softmax) {
            CHECK_OK(moe_route_softmax_topk(gpu, &logits, cases[ci].k, 1, &ids, &w, NULL));
        } else {
            moe_grouped_topk_params p = {cases[ci].g, cases[ci].tg, cases[ci].k, 1, 2.5f, 1,
                                         cases[ci].s};
            CHECK_OK(moe_route_grouped_topk(gpu, &logits, NULL, &p, &ids, &w, NULL));
        }
        test_to_host(&d_ids, &h_ids);
        test_to_host(&d_w, &h_w);
        int64_t written = 0, tail_ok = 0;
        for (int64_t i = 0; i < T * cols + tail; i++) {
            int pi = route_is_poison(&h_ids, 0, i), pw = route_is_poison(&h_w, 0, i);
            if (i < T * cols)
                written += !pi && !pw;
            else
                tail_ok += pi && pw;
        }
        CHECK(written == T * cols && tail_ok == tail,
              "case %zu: %lld of %lld outputs written, %lld of %lld tail elements untouched", ci,
              (long long)written, (long long)(T * cols), (long long)tail_ok, (long long)tail);
    }
}

void suite_cuda_route(void) {
    RUN(test_cuda_grouped_models);
    RUN(test_cuda_softmax_models);
    RUN(test_cuda_grouped_odd_shapes);
    RUN(test_cuda_softmax_odd_shapes);
    RUN(test_cuda_route_ties);
    RUN(test_cuda_route_exact_ties);
    RUN(test_cuda_route_nan_inf);
    RUN(test_cuda_route_extreme);
    RUN(test_cuda_weight_options);
    RUN(test_cuda_route_no_tokens);
    RUN(test_cuda_route_tail_untouched);
}
