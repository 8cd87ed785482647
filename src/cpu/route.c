/* CPU reference routing (SPEC 1), one token at a time with its scratch on the stack
 * (the API checked E <= MOE_MAX_EXPERTS and k <= MOE_MAX_TOPK).
 *
 * Ranking, the rules every backend must reproduce:
 * - Scores rank by value, larger first; equal values rank by the lower index.
 * - NaN ranks below every number. An expert whose score is NaN is not selectable: when
 *   fewer than k experts are selectable the remaining slots get id -1 and weight 0.
 *   Grouped: an expert's score is c = sigmoid(logit) + bias, so a NaN logit or a NaN bias
 *   makes it unselectable. A group's score is the sum of its two largest selectable c
 *   (its single selectable c if it has one; NaN if none, or if +inf meets -inf); groups
 *   with a NaN score rank below the others but are still kept when fewer than TG groups
 *   have a number. Softmax: NaN logits take no part in the softmax (their p is NaN).
 * - Infinities are ordinary values: sigmoid(+-inf) = 1 or 0, and the softmax of a row
 *   whose maximum is infinite is its limit: the experts at the maximum share p = 1
 *   equally, all others get 0.
 * - Renormalisation divides by the sum of the k weights only when that sum is positive,
 *   so a token with no selectable expert (or only weights of 0) keeps weights of 0
 *   instead of 0/0.
 * Each token depends only on its own row, so the OpenMP loop over tokens is
 * deterministic. */
#include <math.h>

#include "cpu.h"

/* Tokens below which threads cost more than they save. */
#define ROUTE_PARALLEL_MIN_TOKENS 256

/* a (a candidate seen after b) ranks above b: larger, or a number against a NaN. A tie
 * keeps b above, which sends ties to the lower index. */
static int ranks_above(float a, float b) {
    if (moe_isnan(b)) return !moe_isnan(a);
    return a > b;
}

/* A running top-n list in rank order. Candidates must be pushed in ascending index. */
typedef struct topn {
    int n, cap;
    float value[MOE_MAX_EXPERTS];
    int32_t index[MOE_MAX_EXPERTS];
} topn;

static void topn_init(topn *l, int cap) {
    l->n = 0;
    l->cap = cap;
}

static void topn_push(topn *l, float v, int32_t i) {
    int pos = l->n;
    while (pos > 0 && ranks_above(v, l->value[pos - 1])) pos--;
    if (pos >= l->cap) return;
    if (l->n < l->cap) l->n++;
    for (int q = l->n - 1; q > pos; q--) {
        l->value[q] = l->value[q - 1];
        l->index[q] = l->index[q - 1];
    }
    l->value[pos] = v;
    l->index[pos] = i;
}

/* Loads row t of the logits as f32. */
static void load_row(const moe_tensor *logits, int64_t t, float *x) {
    const void *row = moe_cpu_at(logits, t, 0, 0);
    for (int64_t e = 0; e < logits->shape[1]; e++) x[e] = moe_cpu_load(logits->dtype, row, e);
}

/* The sum of the two largest selectable c of one group (see the ranking rules above). */
static float group_score(const float *c, int32_t first, int32_t size) {
    topn best;
    topn_init(&best, 2);
    for (int32_t e = first; e < first + size; e++)
        if (!moe_isnan(c[e])) topn_push(&best, c[e], e);
    if (best.n == 0) return NAN;
    return best.n == 1 ? best.value[0] : best.value[0] + best.value[1];
}

/* Marks in kept[g] the TG groups with the best scores. */
static void keep_groups(const float *c, int32_t e, const moe_grouped_topk_params *p,
                        unsigned char *kept) {
    int32_t size = e / p->num_groups;
    topn best;
    topn_init(&best, p->topk_group);
    for (int32_t g = 0; g < p->num_groups; g++) {
        kept[g] = 0;
        /* NaN scores are pushed too: they fill the kept set after every number */
        topn_push(&best, group_score(c, g * size, size), g);
    }
    for (int i = 0; i < best.n; i++) kept[best.index[i]] = 1;
}

/* Writes slot j of token t. */
static void put(moe_tensor *ids, moe_tensor *weights, int64_t t, int j, int32_t id, float w) {
    *(int32_t *)moe_cpu_at(ids, t, j, 0) = id;
    *(float *)moe_cpu_at(weights, t, j, 0) = w;
}

static void grouped_token(const moe_tensor *logits, const float *bias,
                          const moe_grouped_topk_params *p, int64_t t, moe_tensor *ids,
                          moe_tensor *weights) {
    int32_t e = (int32_t)logits->shape[1], k = p->topk, size = e / p->num_groups;
    float s[MOE_MAX_EXPERTS], c[MOE_MAX_EXPERTS];
    unsigned char kept[MOE_MAX_EXPERTS];
    load_row(logits, t, s);
    for (int32_t i = 0; i < e; i++) {
        s[i] = 1.0f / (1.0f + expf(-s[i]));
        c[i] = s[i] + (bias ? bias[i] : 0.0f);
    }
    keep_groups(c, e, p, kept);

    topn chosen;
    topn_init(&chosen, k);
    for (int32_t i = 0; i < e; i++)
        if (kept[i / size] && !moe_isnan(c[i])) topn_push(&chosen, c[i], i);

    /* weights are s, not c: the bias steers the choice, never the mix */
    float w[MOE_MAX_TOPK + 1], sum = 0.0f;
    for (int j = 0; j < k; j++) {
        w[j] = j < chosen.n ? s[chosen.index[j]] : 0.0f;
        sum += w[j];
    }
    int cols = k;
    float r = p->routed_scaling_factor;
    if (p->num_shared > 0) w[cols++] = sum / r; /* SGLang's fused shared-expert weight */
    for (int j = 0; j < cols; j++) {
        if (p->renormalize && sum > 0.0f) w[j] /= sum;
        if (p->scale_output) w[j] *= r;
    }
    for (int j = 0; j < k; j++) put(ids, weights, t, j, j < chosen.n ? chosen.index[j] : -1, w[j]);
    if (p->num_shared > 0) put(ids, weights, t, k, (int32_t)(e + t % p->num_shared), w[k]);
}

moe_status moe_cpu_route_grouped_topk(moe_context *ctx, const moe_tensor *logits,
                                      const moe_tensor *bias,
                                      const moe_grouped_topk_params *params, moe_tensor *ids,
                                      moe_tensor *weights, void *stream) {
    (void)ctx;
    (void)stream;
    /* the API checked bias is [E] f32 with stride 1 */
    const float *b = bias ? (const float *)bias->data : NULL;
    int64_t T = logits->shape[0];
#pragma omp parallel for schedule(static) if (T >= ROUTE_PARALLEL_MIN_TOKENS)
    for (int64_t t = 0; t < T; t++) grouped_token(logits, b, params, t, ids, weights);
    return MOE_OK;
}

/* p = softmax of a row over its non-NaN entries (see the ranking rules above). */
static void softmax_row(float *x, int32_t e) {
    float max = -INFINITY;
    for (int32_t i = 0; i < e; i++)
        if (!moe_isnan(x[i]) && x[i] > max) max = x[i];
    float sum = 0.0f;
    for (int32_t i = 0; i < e; i++) {
        if (moe_isnan(x[i])) continue;
        /* x - max is NaN when max is infinite; the limit puts all mass on the max */
        x[i] = isinf(max) ? (x[i] == max ? 1.0f : 0.0f) : expf(x[i] - max);
        sum += x[i];
    }
    for (int32_t i = 0; i < e; i++) x[i] /= sum; /* sum >= 1 unless every x is NaN */
}

static void softmax_token(const moe_tensor *logits, int32_t k, int32_t renormalize, int64_t t,
                          moe_tensor *ids, moe_tensor *weights) {
    int32_t e = (int32_t)logits->shape[1];
    float p[MOE_MAX_EXPERTS];
    load_row(logits, t, p);
    softmax_row(p, e);

    topn chosen;
    topn_init(&chosen, k);
    for (int32_t i = 0; i < e; i++)
        if (!moe_isnan(p[i])) topn_push(&chosen, p[i], i);

    float w[MOE_MAX_TOPK], sum = 0.0f;
    for (int j = 0; j < k; j++) {
        w[j] = j < chosen.n ? p[chosen.index[j]] : 0.0f;
        sum += w[j];
    }
    for (int j = 0; j < k; j++) {
        if (renormalize && sum > 0.0f) w[j] /= sum;
        put(ids, weights, t, j, j < chosen.n ? chosen.index[j] : -1, w[j]);
    }
}

moe_status moe_cpu_route_softmax_topk(moe_context *ctx, const moe_tensor *logits,
                                      int32_t topk, int32_t renormalize, moe_tensor *ids,
                                      moe_tensor *weights, void *stream) {
    (void)ctx;
    (void)stream;
    int64_t T = logits->shape[0];
#pragma omp parallel for schedule(static) if (T >= ROUTE_PARALLEL_MIN_TOKENS)
    for (int64_t t = 0; t < T; t++) softmax_token(logits, topk, renormalize, t, ids, weights);
    return MOE_OK;
}
