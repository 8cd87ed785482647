/* Routing (SPEC 1): both ops against an independent float64 formula at model shapes, the
 * ranking rules (ties, NaN, infinities) on hand-made rows with exact answers, the weight
 * options including the fused shared expert, and every argument check. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "route_check.h"

#define F32 MOE_DTYPE_F32
#define I32 MOE_DTYPE_I32
#define MAXCOL (MOE_MAX_TOPK + 1)

/* f32 and f64 may order two scores differently when they are this close, so a token whose
 * reference has such a near-tie is skipped (exact f64 ties are kept: both sides then
 * compare equal values and break the tie by index). Scores are O(1) and f32 rounds them
 * with errors near 1e-7, so 1e-5 leaves a factor of 100. */
#define NEAR_TIE 1e-5

/* ---------------------------------------------------------------- float64 reference */

typedef struct ranked {
    double v;
    int32_t i;
} ranked;

/* Descending value, ties to the lower index (inputs here hold no NaN). */
static int by_rank(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : (x->i > y->i);
}

typedef struct ref_route {
    int32_t id[MAXCOL];
    double w[MAXCOL];
    int near_tie; /* some ordering the result depends on is closer than NEAR_TIE */
} ref_route;

static int near(double gap, double scale) { return gap > 0.0 && gap < NEAR_TIE * scale; }

static void ref_grouped(const double *x, const double *bias, int32_t e,
                        const moe_grouped_topk_params *p, int64_t t, ref_route *out) {
    double s[MOE_MAX_EXPERTS], c[MOE_MAX_EXPERTS];
    for (int32_t i = 0; i < e; i++) {
        s[i] = 1.0 / (1.0 + exp(-x[i]));
        c[i] = s[i] + (bias ? bias[i] : 0.0);
    }
    int32_t g_n = p->num_groups, size = e / g_n, k = p->topk;
    ranked groups[MOE_MAX_EXPERTS], cand[MOE_MAX_EXPERTS];
    for (int32_t g = 0; g < g_n; g++) {
        for (int32_t j = 0; j < size; j++) cand[j] = (ranked){c[g * size + j], g * size + j};
        qsort(cand, (size_t)size, sizeof cand[0], by_rank);
        groups[g] = (ranked){size == 1 ? cand[0].v : cand[0].v + cand[1].v, g};
    }
    qsort(groups, (size_t)g_n, sizeof groups[0], by_rank);
    out->near_tie = p->topk_group < g_n &&
                    near(groups[p->topk_group - 1].v - groups[p->topk_group].v, 1.0);

    int n = 0;
    for (int32_t i = 0; i < e; i++)
        for (int32_t g = 0; g < p->topk_group; g++)
            if (groups[g].i == i / size) cand[n++] = (ranked){c[i], i};
    qsort(cand, (size_t)n, sizeof cand[0], by_rank);
    for (int j = 0; j < k && j + 1 < n; j++)
        out->near_tie |= near(cand[j].v - cand[j + 1].v, 1.0);

    double sum = 0.0, r = p->routed_scaling_factor;
    for (int j = 0; j < k; j++) {
        out->id[j] = cand[j].i;
        out->w[j] = s[cand[j].i];
        sum += out->w[j];
    }
    int cols = k;
    if (p->num_shared > 0) {
        out->id[cols] = (int32_t)(e + t % p->num_shared);
        out->w[cols++] = sum / r;
    }
    for (int j = 0; j < cols; j++) {
        if (p->renormalize) out->w[j] /= sum;
        if (p->scale_output) out->w[j] *= r;
    }
}

static void ref_softmax(const double *x, int32_t e, int32_t k, int renorm, ref_route *out) {
    double max = x[0], sum = 0.0, p[MOE_MAX_EXPERTS];
    for (int32_t i = 1; i < e; i++) max = fmax(max, x[i]);
    for (int32_t i = 0; i < e; i++) sum += p[i] = exp(x[i] - max);
    ranked cand[MOE_MAX_EXPERTS];
    for (int32_t i = 0; i < e; i++) cand[i] = (ranked){p[i] / sum, i};
    qsort(cand, (size_t)e, sizeof cand[0], by_rank);
    /* f32 errors in p are relative, so the near-tie test is too */
    out->near_tie = 0;
    for (int j = 0; j < k && j + 1 < e; j++)
        out->near_tie |= near(cand[j].v - cand[j + 1].v, cand[j].v);
    double ksum = 0.0;
    for (int j = 0; j < k; j++) ksum += cand[j].v;
    for (int j = 0; j < k; j++) {
        out->id[j] = cand[j].i;
        out->w[j] = renorm ? cand[j].v / ksum : cand[j].v;
    }
}

/* ---------------------------------------------------------------- comparing outputs */

/* A [rows, cols] tensor whose rows are pad elements longer (a leading dimension), all
 * poisoned, so writes outside the rows show. */
static moe_tensor padded2(moe_dtype dt, int64_t rows, int64_t cols, int64_t pad) {
    moe_tensor t = test_tensor2(dt, rows, cols + pad);
    t.shape[1] = cols;
    return t;
}

/* Compares token t with the reference. Near-tie tokens are only checked to be written
 * with plausible values: ids in [0, id_end), finite positive weights. */
static void compare_token(const moe_tensor *ids, const moe_tensor *w, int64_t t, int cols,
                          const ref_route *ref, int32_t id_end, double tol, tally *y) {
    y->tokens++;
    if (ref->near_tie) y->skipped++;
    for (int j = 0; j < cols; j++) {
        int32_t id = test_get_i32(ids, t, j);
        double got = test_get(w, t, j, 0), want = ref->w[j];
        int ok = ref->near_tie ? (id >= 0 && id < id_end && isfinite(got) && got > 0.0)
                               : (id == ref->id[j] && fabs(got - want) <= tol * fabs(want));
        if (ok) continue;
        if (y->bad++ == 0)
            snprintf(y->first, sizeof y->first,
                     "token %lld slot %d: id %d weight %.9g, want id %d weight %.9g",
                     (long long)t, j, (int)id, got, (int)ref->id[j], want);
    }
}

/* ---------------------------------------------------------------- random, model shapes */

static const moe_dtype float_dtypes[] = {MOE_DTYPE_F32, MOE_DTYPE_BF16, MOE_DTYPE_F16};

/* One random run. bf16 logits and the outputs of odd flag combinations get padded rows;
 * f16 runs go without bias. */
static void grouped_random(const grouped_shape *m, moe_dtype dt, int renorm, int scale) {
    int64_t T = rng_int(64, 200);
    moe_grouped_topk_params p = {m->g, m->tg, m->k, renorm, m->r, scale, m->s};
    int cols = m->k + (m->s > 0);
    moe_tensor logits = padded2(dt, T, m->e, dt == MOE_DTYPE_BF16 ? 3 : 0);
    test_fill_normal(&logits, 2.0);
    moe_tensor bias = test_tensor1(F32, m->e);
    test_fill_normal(&bias, 0.3); /* comparable to the spread of s: it reorders experts */
    const moe_tensor *bias_arg = dt == MOE_DTYPE_F16 ? NULL : &bias;
    int64_t out_pad = (renorm ^ scale) ? 2 : 0;
    moe_tensor ids = padded2(I32, T, cols, out_pad), w = padded2(F32, T, cols, out_pad);
    CHECK_OK(moe_route_grouped_topk(test_cpu(), &logits, bias_arg, &p, &ids, &w, NULL));

    tally y = {0};
    double x[MOE_MAX_EXPERTS], b[MOE_MAX_EXPERTS];
    for (int32_t i = 0; i < m->e; i++) b[i] = test_get(&bias, i, 0, 0);
    for (int64_t t = 0; t < T; t++) {
        for (int32_t i = 0; i < m->e; i++) x[i] = test_get(&logits, t, i, 0);
        ref_route ref;
        ref_grouped(x, bias_arg ? b : NULL, m->e, &p, t, &ref);
        /* expf, the sum of <= 16 weights, a division and a product: a few tens of f32
         * ulps (6e-8 each) at most */
        compare_token(&ids, &w, t, cols, &ref, m->e + (m->s > 0 ? m->s : 0), 1e-5, &y);
    }
    char what[128];
    snprintf(what, sizeof what, "%s %s renorm=%d scale=%d", m->name, moe_dtype_name(dt),
             renorm, scale);
    route_check_tally(&y, what);
    CHECK(route_padding_intact(&ids) && route_padding_intact(&w), "%s: a write went past a row",
          what);
}

static void test_grouped_models(void) {
    for (size_t mi = 0; mi < route_grouped_model_count; mi++)
        for (size_t d = 0; d < 3; d++)
            for (int flags = 0; flags < 4; flags++)
                grouped_random(&route_grouped_models[mi], float_dtypes[d], flags & 1, flags >> 1);
    route_check_skipped("grouped");
}

typedef struct softmax_model {
    const char *name;
    int32_t e, k;
} softmax_model;

static const softmax_model softmax_models[] = {
    {"Qwen3", 128, 8}, {"Mixtral", 8, 2}, {"gpt-oss-20b", 32, 4}, {"E512 k16", 512, 16}};

static void softmax_random(const softmax_model *m, moe_dtype dt, int renorm) {
    int64_t T = rng_int(64, 200);
    moe_tensor logits = padded2(dt, T, m->e, dt == MOE_DTYPE_BF16 ? 5 : 0);
    test_fill_normal(&logits, 2.0);
    int64_t out_pad = renorm ? 0 : 1;
    moe_tensor ids = padded2(I32, T, m->k, out_pad), w = padded2(F32, T, m->k, out_pad);
    CHECK_OK(moe_route_softmax_topk(test_cpu(), &logits, m->k, renorm, &ids, &w, NULL));

    tally y = {0};
    double x[MOE_MAX_EXPERTS];
    for (int64_t t = 0; t < T; t++) {
        for (int32_t i = 0; i < m->e; i++) x[i] = test_get(&logits, t, i, 0);
        ref_route ref;
        ref_softmax(x, m->e, m->k, renorm, &ref);
        /* the softmax sum of E f32 terms adds a worst-case relative error of E ulps on top
         * of the few ulps of expf, the division and renormalisation */
        compare_token(&ids, &w, t, m->k, &ref, m->e, 1e-5 + m->e * 0x1p-24, &y);
    }
    char what[128];
    snprintf(what, sizeof what, "softmax %s %s renorm=%d", m->name, moe_dtype_name(dt), renorm);
    route_check_tally(&y, what);
    CHECK(route_padding_intact(&ids) && route_padding_intact(&w), "%s: a write went past a row",
          what);
}

static void test_softmax_models(void) {
    for (size_t mi = 0; mi < sizeof softmax_models / sizeof softmax_models[0]; mi++)
        for (size_t d = 0; d < 3; d++)
            for (int renorm = 0; renorm < 2; renorm++)
                softmax_random(&softmax_models[mi], float_dtypes[d], renorm);
    route_check_skipped("softmax");
}

/* Enough tokens for the threaded path: each token routed alone gives the same bits. */
static void test_tokens_independent(void) {
    int64_t T = 300;
    int32_t e = 256, cols = 9;
    moe_grouped_topk_params p = {8, 4, 8, 1, 2.5f, 1, 1};
    moe_tensor logits = test_tensor2(MOE_DTYPE_BF16, T, e), bias = test_tensor1(F32, e);
    test_fill_normal(&logits, 2.0);
    test_fill_normal(&bias, 0.3);
    moe_tensor ids = test_tensor2(I32, T, cols), w = test_tensor2(F32, T, cols);
    moe_tensor sids = test_tensor2(I32, T, 8), sw = test_tensor2(F32, T, 8);
    CHECK_OK(moe_route_grouped_topk(test_cpu(), &logits, &bias, &p, &ids, &w, NULL));
    CHECK_OK(moe_route_softmax_topk(test_cpu(), &logits, 8, 1, &sids, &sw, NULL));
    int64_t diff = 0;
    for (int64_t t = 0; t < T; t++) {
        /* one-row views of row t */
        moe_tensor l1 = logits, i1 = ids, w1 = w, si1 = sids, sw1 = sw;
        l1.shape[0] = i1.shape[0] = w1.shape[0] = si1.shape[0] = sw1.shape[0] = 1;
        l1.data = (uint16_t *)logits.data + t * e;
        int32_t one_ids[9], one_sids[8];
        float one_w[9], one_sw[8];
        i1.data = one_ids, w1.data = one_w, si1.data = one_sids, sw1.data = one_sw;
        if (moe_route_grouped_topk(test_cpu(), &l1, &bias, &p, &i1, &w1, NULL) != MOE_OK ||
            moe_route_softmax_topk(test_cpu(), &l1, 8, 1, &si1, &sw1, NULL) != MOE_OK) {
            diff++;
            continue;
        }
        diff += memcmp(one_ids, (int32_t *)ids.data + t * cols, sizeof one_ids) != 0;
        diff += memcmp(one_w, (float *)w.data + t * cols, sizeof one_w) != 0;
        diff += memcmp(one_sids, (int32_t *)sids.data + t * 8, sizeof one_sids) != 0;
        diff += memcmp(one_sw, (float *)sw.data + t * 8, sizeof one_sw) != 0;
    }
    CHECK(diff == 0, "%lld rows differ when routed one token at a time", (long long)diff);
}

/* ---------------------------------------------------------------- hand-made rows */

/* Routes T rows of f32 logits; copies the outputs (T * cols each) to ids and w. */
static moe_status grouped_rows(int64_t T, int32_t e, const float *x, const float *bias,
                               const moe_grouped_topk_params *p, int32_t *ids, float *w) {
    int cols = p->topk + (p->num_shared > 0);
    moe_tensor lt = test_tensor2(F32, T, e), bt = test_tensor1(F32, e);
    moe_tensor it = test_tensor2(I32, T, cols), wt = test_tensor2(F32, T, cols);
    memcpy(lt.data, x, (size_t)(T * e) * sizeof *x);
    if (bias) memcpy(bt.data, bias, (size_t)e * sizeof *bias);
    moe_status st = moe_route_grouped_topk(test_cpu(), &lt, bias ? &bt : NULL, p, &it, &wt, NULL);
    memcpy(ids, it.data, (size_t)(T * cols) * sizeof *ids);
    memcpy(w, wt.data, (size_t)(T * cols) * sizeof *w);
    return st;
}

static moe_status softmax_rows(int64_t T, int32_t e, const float *x, int32_t k, int renorm,
                               int32_t *ids, float *w) {
    moe_tensor lt = test_tensor2(F32, T, e);
    moe_tensor it = test_tensor2(I32, T, k), wt = test_tensor2(F32, T, k);
    memcpy(lt.data, x, (size_t)(T * e) * sizeof *x);
    moe_status st = moe_route_softmax_topk(test_cpu(), &lt, k, renorm, &it, &wt, NULL);
    memcpy(ids, it.data, (size_t)(T * k) * sizeof *ids);
    memcpy(w, wt.data, (size_t)(T * k) * sizeof *w);
    return st;
}

#define EXPECT_IDS(got, ...)                                                     \
    do {                                                                         \
        const int32_t want_[] = {__VA_ARGS__};                                   \
        expect_ids((got), want_, (int)(sizeof want_ / sizeof want_[0]), __LINE__); \
    } while (0)
#define EXPECT_W(got, tol, ...)                                                     \
    do {                                                                            \
        const double want_[] = {__VA_ARGS__};                                       \
        expect_w((got), want_, (int)(sizeof want_ / sizeof want_[0]), (tol), __LINE__); \
    } while (0)

static void expect_ids(const int32_t *got, const int32_t *want, int n, int line) {
    int bad = -1;
    for (int j = 0; j < n && bad < 0; j++)
        if (got[j] != want[j]) bad = j;
    CHECK(bad < 0, "line %d: slot %d has id %d, want %d", line, bad, bad < 0 ? 0 : (int)got[bad],
          bad < 0 ? 0 : (int)want[bad]);
}

/* Relative tolerance; an expected 0 must be exactly 0. */
static void expect_w(const float *got, const double *want, int n, double tol, int line) {
    int bad = -1;
    for (int j = 0; j < n && bad < 0; j++)
        if (!(fabs(got[j] - want[j]) <= tol * fabs(want[j]))) bad = j;
    CHECK(bad < 0, "line %d: slot %d has weight %.9g, want %.9g", line, bad,
          bad < 0 ? 0.0 : (double)got[bad], bad < 0 ? 0.0 : want[bad]);
}

static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

/* The f32 sigmoid the op computes, for weights compared exactly. */
static float sigf(float x) { return 1.0f / (1.0f + expf(-x)); }

static void test_grouped_ties(void) {
    int32_t ids[8];
    float w[8];
    /* all equal: the lowest groups, then the lowest experts */
    float zero[16] = {0};
    moe_grouped_topk_params p = {4, 2, 6, 1, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 16, zero, NULL, &p, ids, w));
    EXPECT_IDS(ids, 0, 1, 2, 3, 4, 5);
    EXPECT_W(w, 1e-7, 1 / 6.0, 1 / 6.0, 1 / 6.0, 1 / 6.0, 1 / 6.0, 1 / 6.0);

    /* equal values interleaved with others */
    float x[8] = {1, 3, 3, 2, 3, 0, 3, -1};
    moe_grouped_topk_params one = {1, 1, 5, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 8, x, NULL, &one, ids, w));
    EXPECT_IDS(ids, 1, 2, 4, 6, 3);

    /* groups 1 and 3 tie on score: group 1 is kept, its better expert first */
    float g[8] = {0, 0, 2, 1, 0, 0, 1, 2};
    moe_grouped_topk_params tg1 = {4, 1, 2, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 8, g, NULL, &tg1, ids, w));
    EXPECT_IDS(ids, 2, 3);

    /* a bias that equalises c makes a tie even though s differs */
    float xb[4] = {1, 0, 0, 0};
    float b[4] = {0, 0, 0, sigf(1) - sigf(0)};
    moe_grouped_topk_params k2 = {1, 1, 2, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 4, xb, b, &k2, ids, w));
    EXPECT_IDS(ids, 0, 3);
    EXPECT_W(w, 0, sigf(1), sigf(0)); /* weight is s, without the bias */
}

static void test_softmax_ties(void) {
    int32_t ids[8];
    float w[8];
    float zero[8] = {0};
    CHECK_OK(softmax_rows(1, 8, zero, 3, 0, ids, w));
    EXPECT_IDS(ids, 0, 1, 2);
    EXPECT_W(w, 0, 0.125, 0.125, 0.125);
    CHECK_OK(softmax_rows(1, 8, zero, 3, 1, ids, w));
    EXPECT_W(w, 1e-7, 1 / 3.0, 1 / 3.0, 1 / 3.0);

    float x[8] = {1, 3, 3, 2, 3, 0, 3, -1};
    CHECK_OK(softmax_rows(1, 8, x, 6, 0, ids, w));
    EXPECT_IDS(ids, 1, 2, 4, 6, 3, 0);
    CHECK(w[0] == w[1] && w[1] == w[2] && w[2] == w[3] && w[3] > w[4] && w[4] > w[5],
          "tied logits have tied weights");
}

/* k == TG*E/G and topk == E: every eligible expert is taken, in rank order. */
static void test_full_selection(void) {
    double xd[16], bd[16];
    float x[16], b[16];
    for (int i = 0; i < 16; i++) {
        x[i] = (float)(2.0 * sin(1.7 * i + 0.3)); /* distinct, no near-ties */
        b[i] = (float)(0.2 * cos(0.9 * i));
        xd[i] = x[i], bd[i] = b[i];
    }
    int32_t ids[9];
    float w[9];
    moe_grouped_topk_params p = {4, 2, 8, 1, 2.5f, 1, 1};
    CHECK_OK(grouped_rows(1, 16, x, b, &p, ids, w));
    ref_route ref;
    ref_grouped(xd, bd, 16, &p, 0, &ref);
    CHECK(!ref.near_tie, "the hand-made row has no near-tie");
    expect_ids(ids, ref.id, 9, __LINE__);
    expect_w(w, ref.w, 9, 1e-6, __LINE__);

    int32_t sids[8];
    float sw[8];
    CHECK_OK(softmax_rows(1, 8, x, 8, 1, sids, sw));
    ref_softmax(xd, 8, 8, 1, &ref);
    expect_ids(sids, ref.id, 8, __LINE__);
    expect_w(sw, ref.w, 8, 1e-6, __LINE__);
}

/* G == E: every group is one expert and scores its single c. */
static void test_groups_of_one(void) {
    float x[8] = {0.5f, -1, 2, 0.1f, 3, -2, 1, 0};
    int32_t ids[3];
    float w[3];
    moe_grouped_topk_params p = {8, 3, 3, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 8, x, NULL, &p, ids, w));
    EXPECT_IDS(ids, 4, 2, 6);
    EXPECT_W(w, 0, sigf(3), sigf(2), sigf(1));
    /* the bias lifts expert 5 (s = 0.12) into the kept groups and to the top */
    float b[8] = {0, 0, 0, 0, 0, 1, 0, 0};
    moe_grouped_topk_params k2 = {8, 3, 2, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 8, x, b, &k2, ids, w));
    EXPECT_IDS(ids, 5, 4);
    EXPECT_W(w, 0, sigf(-2), sigf(3));
}

/* Rule: an expert whose c is NaN is never selected; -1 / 0 fill what nothing can. */
static void test_grouped_nan(void) {
    const float n = NAN;
    int32_t ids[8];
    float w[8];
    moe_grouped_topk_params p = {1, 1, 4, 1, 1.0f, 0, 0};
    float a[8] = {n, 1, n, 2, 0, n, 3, -1};
    CHECK_OK(grouped_rows(1, 8, a, NULL, &p, ids, w));
    EXPECT_IDS(ids, 6, 3, 1, 4);
    double s4 = sig(3) + sig(2) + sig(1) + sig(0);
    EXPECT_W(w, 1e-6, sig(3) / s4, sig(2) / s4, sig(1) / s4, sig(0) / s4);

    /* two selectable experts for four slots */
    float b[8] = {n, 1, n, n, n, n, 2, n};
    CHECK_OK(grouped_rows(1, 8, b, NULL, &p, ids, w));
    EXPECT_IDS(ids, 6, 1, -1, -1);
    double s2 = sig(2) + sig(1);
    EXPECT_W(w, 1e-6, sig(2) / s2, sig(1) / s2, 0, 0);

    /* groups without a number rank last but still fill the kept set */
    float c[8] = {n, n, n, n, n, n, 1, n};
    moe_grouped_topk_params g = {4, 2, 2, 1, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 8, c, NULL, &g, ids, w));
    EXPECT_IDS(ids, 6, -1);
    EXPECT_W(w, 0, 1, 0);

    /* a NaN in a group does not sink it: the score is its selectable c */
    float d[4] = {n, 3, 1, 1.5f};
    moe_grouped_topk_params g1 = {2, 1, 1, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 4, d, NULL, &g1, ids, w));
    EXPECT_IDS(ids, 3); /* sig(1) + sig(1.5) = 1.55 > sig(3) = 0.95 */
    float d2[4] = {n, 3, -3, -3};
    CHECK_OK(grouped_rows(1, 4, d2, NULL, &g1, ids, w));
    EXPECT_IDS(ids, 1);

    /* all NaN: nothing selectable; the shared column keeps its id, weight 0, no NaN */
    float e[8] = {n, n, n, n, n, n, n, n};
    moe_grouped_topk_params s = {2, 1, 3, 1, 2.5f, 1, 1};
    CHECK_OK(grouped_rows(1, 8, e, NULL, &s, ids, w));
    EXPECT_IDS(ids, -1, -1, -1, 8);
    EXPECT_W(w, 0, 0, 0, 0, 0);

    /* a NaN bias makes its expert unselectable too */
    float x[4] = {5, 1, 0, -1}, nb[4] = {n, 0, 0, 0};
    moe_grouped_topk_params k2 = {1, 1, 2, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 4, x, nb, &k2, ids, w));
    EXPECT_IDS(ids, 1, 2);
}

static void test_grouped_inf(void) {
    const float inf = INFINITY;
    int32_t ids[4];
    float w[4];
    float x[4] = {-inf, 0, inf, 1};
    moe_grouped_topk_params p = {1, 1, 4, 1, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 4, x, NULL, &p, ids, w));
    EXPECT_IDS(ids, 2, 3, 1, 0); /* s = 1, 0.73, 0.5, 0: -inf is selectable, weight 0 */
    double sum = 1 + sig(1) + 0.5;
    EXPECT_W(w, 1e-6, 1 / sum, sig(1) / sum, 0.5 / sum, 0);
    /* an infinite bias decides the choice, the weight stays s */
    float b[4] = {0, -inf, 0, inf};
    moe_grouped_topk_params k2 = {1, 1, 2, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 4, x, b, &k2, ids, w));
    EXPECT_IDS(ids, 3, 2);
    EXPECT_W(w, 0, sigf(1), 1);
    /* a group with an infinite c ranks first; +inf meeting -inf makes a NaN score,
     * which ranks last */
    float g[4] = {3, 3, -3, -3}, up[4] = {0, 0, inf, 0}, both[4] = {0, 0, inf, -inf};
    moe_grouped_topk_params g1 = {2, 1, 1, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 4, g, up, &g1, ids, w));
    EXPECT_IDS(ids, 2);
    CHECK_OK(grouped_rows(1, 4, g, both, &g1, ids, w));
    EXPECT_IDS(ids, 0);
    /* ... but is still kept before a lower-ranked NaN group when TG needs it */
    float h[6] = {0, 0, NAN, NAN, 1, 2}, hb[6] = {inf, -inf, 0, 0, 0, 0};
    moe_grouped_topk_params g3 = {3, 2, 3, 0, 1.0f, 0, 0};
    CHECK_OK(grouped_rows(1, 6, h, hb, &g3, ids, w));
    EXPECT_IDS(ids, 0, 5, 4);
}

static void test_softmax_nan_inf(void) {
    const float n = NAN, inf = INFINITY;
    int32_t ids[4];
    float w[4];
    /* NaN logits take no part: the rest share p */
    float a[4] = {n, 0, 0, n};
    CHECK_OK(softmax_rows(1, 4, a, 2, 0, ids, w));
    EXPECT_IDS(ids, 1, 2);
    EXPECT_W(w, 0, 0.5, 0.5);
    CHECK_OK(softmax_rows(1, 4, a, 3, 1, ids, w));
    EXPECT_IDS(ids, 1, 2, -1);
    EXPECT_W(w, 0, 0.5, 0.5, 0);
    float all[4] = {n, n, n, n};
    CHECK_OK(softmax_rows(1, 4, all, 2, 1, ids, w));
    EXPECT_IDS(ids, -1, -1);
    EXPECT_W(w, 0, 0, 0);

    /* +inf: the limit of softmax, the maxima share 1 */
    float b[4] = {0, inf, 1, inf};
    CHECK_OK(softmax_rows(1, 4, b, 3, 0, ids, w));
    EXPECT_IDS(ids, 1, 3, 0); /* the finite ones tie at p = 0 */
    EXPECT_W(w, 0, 0.5, 0.5, 0);
    /* -inf: p = 0, still selectable; all -inf is uniform */
    float c[4] = {-inf, 0, -inf, 0};
    CHECK_OK(softmax_rows(1, 4, c, 3, 1, ids, w));
    EXPECT_IDS(ids, 1, 3, 0);
    EXPECT_W(w, 0, 0.5, 0.5, 0);
    float d[4] = {-inf, -inf, -inf, -inf};
    CHECK_OK(softmax_rows(1, 4, d, 2, 0, ids, w));
    EXPECT_IDS(ids, 0, 1);
    EXPECT_W(w, 0, 0.25, 0.25);
    /* a NaN next to an infinity */
    float e[4] = {n, inf, 2, n};
    CHECK_OK(softmax_rows(1, 4, e, 2, 0, ids, w));
    EXPECT_IDS(ids, 1, 2);
    EXPECT_W(w, 0, 1, 0);
}

/* The four weight options and the shared column: SPEC 1 step 6 says it ends as 1/r after
 * renormalisation and as 1 with scale-on-output too. */
static void test_weight_options(void) {
    const float x[4] = {0, 1, 2, 3};
    const double r = 2.0f * 1.25f, s3 = sig(3), s2 = sig(2), sum = s3 + s2;
    int32_t ids[3];
    float w[3];
    for (int flags = 0; flags < 4; flags++) {
        int renorm = flags & 1, scale = flags >> 1;
        moe_grouped_topk_params p = {1, 1, 2, renorm, (float)r, scale, 1};
        CHECK_OK(grouped_rows(1, 4, x, NULL, &p, ids, w));
        EXPECT_IDS(ids, 3, 2, 4);
        double div = renorm ? sum : 1.0, mul = scale ? r : 1.0;
        EXPECT_W(w, 1e-6, s3 / div * mul, s2 / div * mul, sum / r / div * mul);
        if (renorm && scale) CHECK(fabsf(w[2] - 1.0f) <= 2e-7f, "shared weight %.9g is 1", w[2]);
        if (renorm && !scale)
            CHECK(fabs(w[2] - 1.0 / r) <= 2e-7, "shared weight %.9g is 1/r", w[2]);
    }
    /* the shared id round-robins over tokens */
    float rows[5 * 4];
    for (int i = 0; i < 20; i++) rows[i] = x[i % 4];
    int32_t many[5 * 3];
    float mw[5 * 3];
    moe_grouped_topk_params s3p = {1, 1, 2, 1, 1.0f, 1, 3};
    CHECK_OK(grouped_rows(5, 4, rows, NULL, &s3p, many, mw));
    const int32_t shared[5] = {4, 5, 6, 4, 5};
    int bad = 0;
    for (int t = 0; t < 5; t++) bad += many[t * 3 + 2] != shared[t] || mw[t * 3 + 2] != 1.0f;
    CHECK(bad == 0, "shared ids E + t %% S with weight 1");
}

/* T = 0 succeeds, even with NULL data, and writes nothing. */
static void test_no_tokens(void) {
    moe_tensor logits = test_tensor2(MOE_DTYPE_BF16, 0, 64), bias = test_tensor1(F32, 64);
    moe_tensor ids = test_tensor2(I32, 1, 7), w = test_tensor2(F32, 1, 7);
    ids.shape[0] = w.shape[0] = 0; /* the data is one poisoned row past the end */
    moe_grouped_topk_params p = {8, 2, 6, 1, 2.5f, 1, 1};
    CHECK_OK(moe_route_grouped_topk(test_cpu(), &logits, &bias, &p, &ids, &w, NULL));
    moe_tensor sids = ids, sw = w;
    sids.shape[1] = sw.shape[1] = 6;
    CHECK_OK(moe_route_softmax_topk(test_cpu(), &logits, 6, 1, &sids, &sw, NULL));
    int untouched = 1;
    for (int j = 0; j < 7; j++)
        untouched &= route_is_poison(&ids, 0, j) && route_is_poison(&w, 0, j);
    CHECK(untouched, "T = 0 wrote an output");
    logits.data = ids.data = w.data = NULL;
    CHECK_OK(moe_route_grouped_topk(test_cpu(), &logits, NULL, &p, &ids, &w, NULL));
    sids.data = sw.data = NULL;
    CHECK_OK(moe_route_softmax_topk(test_cpu(), &logits, 6, 0, &sids, &sw, NULL));
}

/* ---------------------------------------------------------------- bad input */

#define BAD MOE_ERR_INVALID_ARGUMENT

static void test_grouped_bad_input(void) {
    moe_context *ctx = test_cpu();
    int64_t T = 3;
    moe_tensor l = test_tensor2(F32, T, 16), b = test_tensor1(F32, 16);
    moe_tensor ids = test_tensor2(I32, T, 5), w = test_tensor2(F32, T, 5);
    test_fill_normal(&l, 1.0);
    test_fill_normal(&b, 0.1);
    const moe_grouped_topk_params ok = {4, 2, 4, 1, 2.5f, 1, 1};
    moe_grouped_topk_params p = ok;
    CHECK_OK(moe_route_grouped_topk(ctx, &l, &b, &p, &ids, &w, NULL));

    CHECK_ERR(moe_route_grouped_topk(NULL, &l, &b, &p, &ids, &w, NULL), BAD, "ctx");
    CHECK_ERR(moe_route_grouped_topk(ctx, NULL, &b, &p, &ids, &w, NULL), BAD, "logits");
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, NULL, &ids, &w, NULL), BAD, "params");
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, NULL, &w, NULL), BAD, "ids");
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &ids, NULL, NULL), BAD, "weights");

    /* logits: dtype, rank, data, strides, E */
    moe_tensor x = l;
    x.dtype = I32;
    CHECK_ERR(moe_route_grouped_topk(ctx, &x, &b, &p, &ids, &w, NULL), BAD, "logits");
    x.dtype = MOE_DTYPE_E4M3;
    CHECK_ERR(moe_route_grouped_topk(ctx, &x, &b, &p, &ids, &w, NULL), BAD, "logits");
    x = l, x.rank = 1;
    CHECK_ERR(moe_route_grouped_topk(ctx, &x, &b, &p, &ids, &w, NULL), BAD, "logits");
    x = l, x.rank = 3, x.shape[2] = 1, x.stride[2] = 1;
    CHECK_ERR(moe_route_grouped_topk(ctx, &x, &b, &p, &ids, &w, NULL), BAD, "logits");
    x = l, x.data = NULL;
    CHECK_ERR(moe_route_grouped_topk(ctx, &x, &b, &p, &ids, &w, NULL), BAD, "logits");
    x = l, x.stride[0] = 8;
    CHECK_ERR(moe_route_grouped_topk(ctx, &x, &b, &p, &ids, &w, NULL), BAD, "logits");
    x = l, x.shape[1] = 0;
    CHECK_ERR(moe_route_grouped_topk(ctx, &x, &b, &p, &ids, &w, NULL), BAD, "logits");
    moe_tensor big = test_tensor2(F32, T, 513);
    moe_grouped_topk_params pb = {1, 1, 4, 1, 2.5f, 1, 1};
    CHECK_ERR(moe_route_grouped_topk(ctx, &big, NULL, &pb, &ids, &w, NULL), BAD, "513");
    CHECK(strstr(moe_last_error(), "logits") && strstr(moe_last_error(), "512"),
          "E > 512 names logits and the limit: %s", moe_last_error());

    /* bias */
    x = b, x.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &x, &p, &ids, &w, NULL), BAD, "bias");
    x = b, x.shape[0] = 15;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &x, &p, &ids, &w, NULL), BAD, "bias");
    moe_tensor b2 = test_tensor2(F32, 1, 16);
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b2, &p, &ids, &w, NULL), BAD, "bias");

    /* params */
    const struct {
        int32_t g, tg, k;
        float r;
        int32_t s;
        const char *name;
    } bad[] = {
        {0, 1, 4, 2.5f, 1, "num_groups"},      {-4, 1, 4, 2.5f, 1, "num_groups"},
        {3, 1, 4, 2.5f, 1, "num_groups"},      {32, 1, 4, 2.5f, 1, "num_groups"},
        {4, 0, 4, 2.5f, 1, "topk_group"},      {4, 5, 4, 2.5f, 1, "topk_group"},
        {4, 2, 0, 2.5f, 1, "topk"},            {4, 2, -1, 2.5f, 1, "topk"},
        {4, 2, 9, 2.5f, 1, "topk"},            {4, 1, 5, 2.5f, 1, "topk"},
        {1, 1, 17, 2.5f, 1, "topk"},           {4, 2, 4, 0.0f, 1, "routed_scaling_factor"},
        {4, 2, 4, -1.0f, 1, "routed_scaling_factor"},
        {4, 2, 4, NAN, 1, "routed_scaling_factor"},
        {4, 2, 4, INFINITY, 1, "routed_scaling_factor"},
        {4, 2, 4, 2.5f, -1, "num_shared"},     {4, 2, 4, 2.5f, INT32_MAX, "num_shared"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = ok;
        p.num_groups = bad[i].g, p.topk_group = bad[i].tg, p.topk = bad[i].k;
        p.routed_scaling_factor = bad[i].r, p.num_shared = bad[i].s;
        CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &ids, &w, NULL), BAD, bad[i].name);
    }
    p = ok, p.topk = 9;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &ids, &w, NULL), BAD, "(9)");
    CHECK(strstr(moe_last_error(), "[1, 8]") != NULL, "names the limit: %s", moe_last_error());

    /* outputs: dtype, rank, shape (k' counts the shared column) */
    p = ok;
    x = ids, x.dtype = F32;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &x, &w, NULL), BAD, "ids");
    x = ids, x.shape[0] = T + 1;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &x, &w, NULL), BAD, "ids");
    x = ids, x.shape[1] = 4;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &x, &w, NULL), BAD, "ids");
    x = ids, x.rank = 1;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &x, &w, NULL), BAD, "ids");
    x = w, x.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &ids, &x, NULL), BAD, "weights");
    x = w, x.shape[0] = T - 1;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &ids, &x, NULL), BAD, "weights");
    x = w, x.shape[1] = 6, x.stride[0] = 6;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &ids, &x, NULL), BAD, "weights");
    p.num_shared = 0; /* then k' = k: the 5-column outputs no longer fit */
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &ids, &w, NULL), BAD, "ids");

    /* a failed call does no work */
    moe_tensor fresh = test_tensor2(I32, T, 5);
    p = ok, p.topk_group = 7;
    CHECK_ERR(moe_route_grouped_topk(ctx, &l, &b, &p, &fresh, &w, NULL), BAD, "topk_group");
    CHECK(route_is_poison(&fresh, 0, 0) && route_is_poison(&fresh, T - 1, 4),
          "failed call wrote ids");
}

static void test_softmax_bad_input(void) {
    moe_context *ctx = test_cpu();
    int64_t T = 3;
    moe_tensor l = test_tensor2(MOE_DTYPE_BF16, T, 8);
    moe_tensor ids = test_tensor2(I32, T, 2), w = test_tensor2(F32, T, 2);
    test_fill_normal(&l, 1.0);
    CHECK_OK(moe_route_softmax_topk(ctx, &l, 2, 1, &ids, &w, NULL));

    CHECK_ERR(moe_route_softmax_topk(NULL, &l, 2, 1, &ids, &w, NULL), BAD, "ctx");
    CHECK_ERR(moe_route_softmax_topk(ctx, NULL, 2, 1, &ids, &w, NULL), BAD, "logits");
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 2, 1, NULL, &w, NULL), BAD, "ids");
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 2, 1, &ids, NULL, NULL), BAD, "weights");

    moe_tensor x = l;
    x.dtype = I32;
    CHECK_ERR(moe_route_softmax_topk(ctx, &x, 2, 1, &ids, &w, NULL), BAD, "logits");
    x.dtype = MOE_DTYPE_E8M0;
    CHECK_ERR(moe_route_softmax_topk(ctx, &x, 2, 1, &ids, &w, NULL), BAD, "logits");
    x = l, x.rank = 1;
    CHECK_ERR(moe_route_softmax_topk(ctx, &x, 2, 1, &ids, &w, NULL), BAD, "logits");
    x = l, x.shape[1] = 0;
    CHECK_ERR(moe_route_softmax_topk(ctx, &x, 2, 1, &ids, &w, NULL), BAD, "logits");
    x = l, x.stride[1] = 2;
    CHECK_ERR(moe_route_softmax_topk(ctx, &x, 2, 1, &ids, &w, NULL), BAD, "logits");
    moe_tensor big = test_tensor2(F32, T, 513);
    CHECK_ERR(moe_route_softmax_topk(ctx, &big, 2, 1, &ids, &w, NULL), BAD, "logits");

    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 0, 1, &ids, &w, NULL), BAD, "topk");
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, -2, 1, &ids, &w, NULL), BAD, "topk");
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 9, 1, &ids, &w, NULL), BAD, "topk (9)");
    CHECK(strstr(moe_last_error(), "[1, 8]") != NULL, "names the limit: %s", moe_last_error());
    moe_tensor wide = test_tensor2(F32, T, 64);
    moe_tensor ids17 = test_tensor2(I32, T, 17), w17 = test_tensor2(F32, T, 17);
    CHECK_ERR(moe_route_softmax_topk(ctx, &wide, 17, 1, &ids17, &w17, NULL), BAD, "topk");

    x = ids, x.dtype = F32;
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 2, 1, &x, &w, NULL), BAD, "ids");
    x = ids, x.shape[1] = 1;
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 2, 1, &x, &w, NULL), BAD, "ids");
    x = ids, x.shape[0] = 4;
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 2, 1, &x, &w, NULL), BAD, "ids");
    x = w, x.dtype = MOE_DTYPE_F16;
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 2, 1, &ids, &x, NULL), BAD, "weights");
    x = w, x.shape[1] = 1;
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 2, 1, &ids, &x, NULL), BAD, "weights");
    x = w, x.rank = 3, x.shape[2] = 1, x.stride[2] = 1, x.stride[1] = 1, x.stride[0] = 2;
    CHECK_ERR(moe_route_softmax_topk(ctx, &l, 2, 1, &ids, &x, NULL), BAD, "weights");
}

void suite_route(void) {
    RUN(test_grouped_models);
    RUN(test_softmax_models);
    RUN(test_tokens_independent);
    RUN(test_grouped_ties);
    RUN(test_softmax_ties);
    RUN(test_full_selection);
    RUN(test_groups_of_one);
    RUN(test_grouped_nan);
    RUN(test_grouped_inf);
    RUN(test_softmax_nan_inf);
    RUN(test_weight_options);
    RUN(test_no_tokens);
    RUN(test_grouped_bad_input);
    RUN(test_softmax_bad_input);
}
