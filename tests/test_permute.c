/* Permutation (SPEC 2): both plans, problem sizes and the row gather, each against a plain
 * formula written here, at DeepSeek-V3-like sizes (T = 512, k' = 9, E' = 257) with ids
 * that include -1 and out-of-range values. Outputs come poisoned, and every i32 output
 * carries a guard element past its end, so an unwritten or overrun element is caught. */
#include <string.h>

#include "harness.h"

#define POISON_I32 0x7BADBAD7
#define GUARD 4 /* poisoned i32 elements after each output */

/* ---------------------------------------------------------------- data */

/* Mostly a valid expert; sometimes -1 (a non-local expert) or another id outside [0, E)
 * that every op must skip. */
static int32_t random_id(int32_t experts) {
    int64_t u = rng_int(0, 99);
    if (u < 5) return -1;
    if (u < 7) return (int32_t)(experts + rng_int(0, 3));
    if (u == 7) return rng_int(0, 1) ? INT32_MAX : INT32_MIN;
    if (u == 8) return (int32_t)-rng_int(2, 1000);
    return (int32_t)rng_int(0, experts - 1);
}

static moe_tensor random_ids(int64_t tokens, int32_t kp, int32_t experts) {
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, tokens, kp);
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < kp; j++) test_set_i32(&ids, t, j, random_id(experts));
    return ids;
}

static moe_tensor constant_ids(int64_t tokens, int32_t kp, int32_t id) {
    moe_tensor ids = test_tensor2(MOE_DTYPE_I32, tokens, kp);
    for (int64_t t = 0; t < tokens; t++)
        for (int32_t j = 0; j < kp; j++) test_set_i32(&ids, t, j, id);
    return ids;
}

/* A 1-D (rank 1) or [n0, n1] i32 output with GUARD poisoned elements after its end. */
static moe_tensor guarded_i32(int rank, int64_t n0, int64_t n1) {
    int64_t n = rank == 1 ? n0 : n0 * n1;
    moe_tensor t = test_tensor1(MOE_DTYPE_I32, n + GUARD);
    if (rank == 1) {
        t.shape[0] = n0;
    } else {
        t = moe_tensor_2d(t.data, MOE_DTYPE_I32, n0, n1);
    }
    return t;
}

static int guard_intact(const moe_tensor *t) {
    int64_t n = t->rank == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
    const int32_t *p = t->data;
    for (int64_t i = n; i < n + GUARD; i++)
        if (p[i] != POISON_I32) return 0;
    return 1;
}

static const int32_t *i32s(const moe_tensor *t) { return t->data; }

/* Index of the first i with got[i] != want[i], or -1. */
static int64_t first_diff(const int32_t *got, const int32_t *want, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (got[i] != want[i]) return i;
    return -1;
}

#define CHECK_SAME(got, want, n, what)                                                    \
    do {                                                                                  \
        int64_t d_ = first_diff((got), (want), (n));                                      \
        CHECK(d_ < 0, "%s[%lld] = %d, want %d", (what), (long long)d_,                   \
              d_ < 0 ? 0 : (got)[d_], d_ < 0 ? 0 : (want)[d_]);                           \
    } while (0)

static void *plan_workspace(int64_t tokens, int32_t kp, int32_t experts, size_t *bytes) {
    CHECK_OK(moe_permute_workspace_size(test_cpu(), tokens, kp, experts, bytes));
    return test_alloc(*bytes); /* poisoned: the op must initialise its scratch */
}

/* The id of pair p if it names an expert, else -1. */
static int32_t expert_of(const moe_tensor *ids, int64_t p, int32_t experts) {
    int64_t kp = ids->shape[1];
    int32_t e = test_get_i32(ids, p / kp, p % kp);
    return e >= 0 && e < experts ? e : -1;
}

/* ---------------------------------------------------------------- contiguous plan */

/* SPEC 2, written out: counts, offsets, then each expert's pairs in ascending order
 * followed by its padding, then -1 up to Rmax; inv_perm inverts perm. */
typedef struct {
    int32_t *counts, *offsets, *perm, *inv_perm;
    int64_t rmax, pairs;
} ref_plan;

static ref_plan reference_plan(const moe_tensor *ids, int32_t experts, int32_t align) {
    ref_plan r;
    r.pairs = ids->shape[0] * ids->shape[1];
    r.rmax = moe_permute_max_rows(ids->shape[0], (int32_t)ids->shape[1], experts, align);
    r.counts = test_alloc((size_t)experts * sizeof(int32_t));
    r.offsets = test_alloc(((size_t)experts + 1) * sizeof(int32_t));
    r.perm = test_alloc((size_t)r.rmax * sizeof(int32_t) + 1);
    r.inv_perm = test_alloc((size_t)r.pairs * sizeof(int32_t) + 1);
    for (int64_t i = 0; i < r.rmax; i++) r.perm[i] = -1;
    for (int64_t p = 0; p < r.pairs; p++) r.inv_perm[p] = -1;
    r.offsets[0] = 0;
    for (int32_t e = 0; e < experts; e++) {
        int32_t n = 0, row = r.offsets[e];
        for (int64_t p = 0; p < r.pairs; p++) {
            if (expert_of(ids, p, experts) != e) continue;
            r.perm[row] = (int32_t)p;
            r.inv_perm[p] = row++;
            n++;
        }
        r.counts[e] = n;
        r.offsets[e + 1] = r.offsets[e] + (n + align - 1) / align * align;
    }
    return r;
}

/* Runs moe_permute_plan (with counts or without) and compares every output. */
static void check_plan(const moe_tensor *ids, int32_t experts, int32_t align, int with_counts) {
    int64_t tokens = ids->shape[0];
    int32_t kp = (int32_t)ids->shape[1];
    ref_plan want = reference_plan(ids, experts, align);
    moe_tensor counts = guarded_i32(1, experts, 0), offsets = guarded_i32(1, experts + 1, 0);
    moe_tensor perm = guarded_i32(1, want.rmax, 0), inv = guarded_i32(1, want.pairs, 0);
    size_t bytes;
    void *ws = plan_workspace(tokens, kp, experts, &bytes);
    CHECK_OK(moe_permute_plan(test_cpu(), ids, experts, align, with_counts ? &counts : NULL,
                              &offsets, &perm, &inv, ws, bytes, NULL));
    if (with_counts) {
        CHECK_SAME(i32s(&counts), want.counts, experts, "counts");
        CHECK(guard_intact(&counts), "counts: nothing written past E'");
    } else {
        CHECK(i32s(&counts)[0] == POISON_I32, "counts NULL: the buffer is not touched");
    }
    CHECK_SAME(i32s(&offsets), want.offsets, experts + 1, "offsets");
    CHECK_SAME(i32s(&perm), want.perm, want.rmax, "perm");
    CHECK_SAME(i32s(&inv), want.inv_perm, want.pairs, "inv_perm");
    CHECK(guard_intact(&offsets) && guard_intact(&perm) && guard_intact(&inv),
          "nothing written past offsets, perm (Rmax %lld) or inv_perm", (long long)want.rmax);
    /* the real row count never exceeds the bound the buffers were sized with */
    CHECK(want.offsets[experts] <= want.rmax, "offsets[E'] (%d) <= Rmax (%lld)",
          want.offsets[experts], (long long)want.rmax);
}

static void test_plan_random(void) {
    const int32_t aligns[] = {1, 4, 128};
    moe_tensor ids = random_ids(512, 9, 257);
    for (int a = 0; a < 3; a++) check_plan(&ids, 257, aligns[a], 1);
    check_plan(&ids, 257, 4, 0);
    moe_tensor few = random_ids(37, 3, 5); /* many pairs per expert, odd T */
    for (int a = 0; a < 3; a++) check_plan(&few, 5, aligns[a], 1);
}

static void test_plan_edges(void) {
    const int32_t aligns[] = {1, 4, 128};
    moe_tensor none = test_tensor2(MOE_DTYPE_I32, 0, 9);
    moe_tensor one_expert = constant_ids(100, 9, 256); /* every pair to the last expert */
    moe_tensor skipped = constant_ids(20, 9, -1);       /* every pair non-local */
    moe_tensor just_out = constant_ids(20, 2, 257);     /* id == E': one past the end */
    moe_tensor sparse = test_tensor2(MOE_DTYPE_I32, 64, 9); /* most experts get nothing */
    for (int64_t t = 0; t < 64; t++)
        for (int j = 0; j < 9; j++) test_set_i32(&sparse, t, j, (int32_t)(rng_int(0, 2) * 128));
    for (int a = 0; a < 3; a++) {
        check_plan(&none, 257, aligns[a], 1);
        check_plan(&one_expert, 257, aligns[a], 1);
        check_plan(&skipped, 257, aligns[a], 1);
        check_plan(&just_out, 257, aligns[a], 1);
        check_plan(&sparse, 257, aligns[a], 1);
    }
    moe_tensor single = random_ids(50, 1, 1); /* E' = 1, k' = 1 */
    check_plan(&single, 1, 1, 1);
    check_plan(&single, 1, 128, 0);
}

/* The plan's outputs fit together: perm and inv_perm are inverse, each expert's rows hold
 * its pairs in ascending order. Checked on the library's own outputs, not the reference. */
static void test_plan_invariants(void) {
    moe_tensor ids = random_ids(300, 9, 257);
    int32_t experts = 257, align = 4;
    int64_t rmax = moe_permute_max_rows(300, 9, experts, align), pairs = 300 * 9;
    moe_tensor counts = test_tensor1(MOE_DTYPE_I32, experts);
    moe_tensor offsets = test_tensor1(MOE_DTYPE_I32, experts + 1);
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, rmax), inv = test_tensor1(MOE_DTYPE_I32, pairs);
    size_t bytes;
    void *ws = plan_workspace(300, 9, experts, &bytes);
    CHECK_OK(moe_permute_plan(test_cpu(), &ids, experts, align, &counts, &offsets, &perm, &inv,
                              ws, bytes, NULL));
    int bad_inverse = 0, bad_order = 0, bad_expert = 0, bad_align = 0;
    for (int64_t p = 0; p < pairs; p++) {
        int32_t r = i32s(&inv)[p];
        if (r >= 0 && i32s(&perm)[r] != p) bad_inverse++;
        if ((r >= 0) != (expert_of(&ids, p, experts) >= 0)) bad_inverse++;
    }
    for (int32_t e = 0; e < experts; e++) {
        int32_t lo = i32s(&offsets)[e], n = i32s(&counts)[e];
        if ((i32s(&offsets)[e + 1] - lo) % align != 0) bad_align++;
        for (int32_t i = 0; i < n; i++) {
            int32_t p = i32s(&perm)[lo + i];
            if (p < 0 || p >= pairs || expert_of(&ids, p, experts) != e) {
                bad_expert++;
                continue;
            }
            if (i > 0 && p <= i32s(&perm)[lo + i - 1]) bad_order++;
        }
    }
    CHECK(!bad_inverse, "perm[inv_perm[p]] == p for every placed pair (%d bad)", bad_inverse);
    CHECK(!bad_expert, "every row holds a pair of its expert (%d bad)", bad_expert);
    CHECK(!bad_order, "rows of an expert ascend in pair index (%d bad)", bad_order);
    CHECK(!bad_align, "every expert spans a multiple of the alignment (%d bad)", bad_align);
}

/* ---------------------------------------------------------------- masked plan */

/* Each expert keeps its first C pairs (ascending pair index); the rest are dropped. */
static void check_masked(const moe_tensor *ids, int32_t experts, int64_t cap) {
    int64_t tokens = ids->shape[0], pairs = tokens * ids->shape[1];
    int32_t kp = (int32_t)ids->shape[1];
    int32_t *want_counts = test_alloc((size_t)experts * sizeof(int32_t));
    int32_t *want_perm = test_alloc((size_t)(experts * cap) * sizeof(int32_t) + 1);
    int32_t *want_inv = test_alloc((size_t)pairs * sizeof(int32_t) + 1);
    int32_t want_dropped = 0;
    for (int64_t p = 0; p < pairs; p++) want_inv[p] = -1;
    for (int32_t e = 0; e < experts; e++) {
        int32_t seen = 0;
        for (int64_t i = 0; i < cap; i++) want_perm[e * cap + i] = -1;
        for (int64_t p = 0; p < pairs; p++) {
            if (expert_of(ids, p, experts) != e) continue;
            if (seen < cap) {
                want_perm[e * cap + seen] = (int32_t)p;
                want_inv[p] = (int32_t)(e * cap + seen);
            }
            seen++;
        }
        want_counts[e] = seen < cap ? seen : (int32_t)cap;
        want_dropped += seen - want_counts[e];
    }

    moe_tensor counts = guarded_i32(1, experts, 0), perm = guarded_i32(2, experts, cap);
    moe_tensor inv = guarded_i32(1, pairs, 0), overflow = guarded_i32(1, 1, 0);
    size_t bytes;
    void *ws = plan_workspace(tokens, kp, experts, &bytes);
    CHECK_OK(moe_permute_plan_masked(test_cpu(), ids, experts, cap, &counts, &perm, &inv,
                                     &overflow, ws, bytes, NULL));
    CHECK_SAME(i32s(&counts), want_counts, experts, "masked counts");
    CHECK_SAME(i32s(&perm), want_perm, experts * cap, "masked perm");
    CHECK_SAME(i32s(&inv), want_inv, pairs, "masked inv_perm");
    CHECK(i32s(&overflow)[0] == want_dropped, "overflow %d, want %d (C = %lld)",
          i32s(&overflow)[0], want_dropped, (long long)cap);
    CHECK(guard_intact(&counts) && guard_intact(&perm) && guard_intact(&inv) &&
              guard_intact(&overflow),
          "nothing written past the masked outputs");
}

static void test_masked_random(void) {
    /* 4608 pairs over 257 experts is about 16 valid pairs each: C = 8 and 16 drop some */
    moe_tensor ids = random_ids(512, 9, 257);
    const int64_t caps[] = {0, 1, 8, 16, 4608};
    for (int c = 0; c < 5; c++) check_masked(&ids, 257, caps[c]);
}

static void test_masked_edges(void) {
    moe_tensor none = test_tensor2(MOE_DTYPE_I32, 0, 9);
    check_masked(&none, 257, 16);
    check_masked(&none, 257, 0);
    moe_tensor one_expert = constant_ids(100, 3, 7); /* 300 pairs, one expert */
    check_masked(&one_expert, 16, 50);                /* drops 250: the last 250 pairs */
    check_masked(&one_expert, 16, 300);               /* exactly full: drops nothing */
    check_masked(&one_expert, 16, 299);               /* one too many: drops pair 299 */
    moe_tensor skipped = constant_ids(10, 9, -1);
    check_masked(&skipped, 8, 4); /* skipped pairs are not counted as overflow */
    moe_tensor single = random_ids(40, 1, 1);
    check_masked(&single, 1, 10);
}

/* ---------------------------------------------------------------- problem sizes */

static void test_problem_sizes(void) {
    int32_t experts = 257;
    moe_tensor counts = test_tensor1(MOE_DTYPE_I32, experts);
    for (int32_t e = 0; e < experts; e++) test_set_i32(&counts, e, 0, (int32_t)rng_int(0, 900));
    test_set_i32(&counts, 3, 0, 0);
    moe_tensor out = guarded_i32(2, experts, 3);
    CHECK_OK(moe_problem_sizes(test_cpu(), &counts, 4096, 7168, &out, NULL));
    int bad = 0;
    for (int32_t e = 0; e < experts; e++)
        bad += test_get_i32(&out, e, 0) != test_get_i32(&counts, e, 0) ||
               test_get_i32(&out, e, 1) != 4096 || test_get_i32(&out, e, 2) != 7168;
    CHECK(!bad, "(counts[e], n, k) for every expert (%d rows wrong)", bad);
    CHECK(guard_intact(&out), "nothing written past out");
    moe_tensor one = test_tensor1(MOE_DTYPE_I32, 1), out1 = test_tensor2(MOE_DTYPE_I32, 1, 3);
    test_set_i32(&one, 0, 0, 12);
    CHECK_OK(moe_problem_sizes(test_cpu(), &one, 1, INT32_MAX, &out1, NULL));
    CHECK(test_get_i32(&out1, 0, 0) == 12 && test_get_i32(&out1, 0, 1) == 1 &&
              test_get_i32(&out1, 0, 2) == INT32_MAX,
          "one expert, k = INT32_MAX");
}

/* ---------------------------------------------------------------- gather */

/* out[r] must be x[perm[r] / topk] bit for bit, or a row of zeros. */
static void check_gather(const moe_tensor *x, const moe_tensor *perm, int32_t topk,
                         const moe_tensor *out) {
    int64_t tokens = x->shape[0], h = x->shape[1];
    size_t row_bytes = (size_t)h * moe_dtype_size(x->dtype);
    int bad_copy = 0, bad_zero = 0, zero_rows = 0;
    for (int64_t r = 0; r < out->shape[0]; r++) {
        int64_t p = test_get_i32(perm, r, 0);
        const char *dst = (const char *)out->data +
                          r * out->stride[0] * (int64_t)moe_dtype_size(out->dtype);
        if (p >= 0 && p / topk < tokens) {
            const char *src = (const char *)x->data +
                              (p / topk) * x->stride[0] * (int64_t)moe_dtype_size(x->dtype);
            bad_copy += memcmp(dst, src, row_bytes) != 0;
            continue;
        }
        zero_rows++;
        for (int64_t c = 0; c < h; c++)
            if (test_get(out, r, c, 0) != 0.0) {
                bad_zero++;
                break;
            }
    }
    CHECK(!bad_copy, "%s: %d gathered rows differ from x", moe_dtype_name(x->dtype), bad_copy);
    CHECK(!bad_zero, "%s: %d of %d rows for skipped entries are not zero",
          moe_dtype_name(x->dtype), bad_zero, zero_rows);
}

/* A float tensor of n0 x n1 values whose rows are ld >= n1 elements apart. */
static moe_tensor padded_tensor(moe_dtype dtype, int64_t n0, int64_t n1, int64_t ld) {
    moe_tensor t = test_tensor2(dtype, n0, ld);
    t.shape[1] = n1;
    return t;
}

static void test_gather_random(void) {
    const moe_dtype dtypes[] = {MOE_DTYPE_F32, MOE_DTYPE_F16, MOE_DTYPE_BF16, MOE_DTYPE_E4M3};
    int64_t tokens = 64, h = 136, rows = 700;
    int32_t topk = 9;
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, rows);
    for (int64_t r = 0; r < rows; r++)
        test_set_i32(&perm, r, 0, (int32_t)rng_int(-3, tokens * topk + 20));
    /* the edges of "names a token < T" */
    const int32_t edges[] = {0, 8, 9, (int32_t)(tokens * topk - 1), (int32_t)(tokens * topk),
                             -1, INT32_MAX, INT32_MIN};
    for (int i = 0; i < 8; i++) test_set_i32(&perm, i * 13, 0, edges[i]);
    for (int d = 0; d < 4; d++) {
        for (int padded = 0; padded < 2; padded++) {
            moe_tensor x = padded ? padded_tensor(dtypes[d], tokens, h, h + 8)
                                  : test_tensor2(dtypes[d], tokens, h);
            moe_tensor out = padded ? padded_tensor(dtypes[d], rows, h, h + 3)
                                    : test_tensor2(dtypes[d], rows, h);
            for (int64_t t = 0; t < tokens; t++)
                for (int64_t c = 0; c < h; c++) test_set(&x, t, c, 0, 4.0 * rng_normal());
            CHECK_OK(moe_gather_rows(test_cpu(), &x, &perm, topk, &out, NULL));
            check_gather(&x, &perm, topk, &out);
        }
    }
}

/* Gather by a real plan's perm, padding rows included, then by a masked perm viewed 1-D. */
static void test_gather_plan(void) {
    int64_t tokens = 512, h = 256;
    int32_t kp = 9, experts = 257, align = 4;
    moe_tensor ids = random_ids(tokens, kp, experts);
    int64_t rmax = moe_permute_max_rows(tokens, kp, experts, align);
    moe_tensor offsets = test_tensor1(MOE_DTYPE_I32, experts + 1);
    moe_tensor perm = test_tensor1(MOE_DTYPE_I32, rmax);
    moe_tensor inv = test_tensor1(MOE_DTYPE_I32, tokens * kp);
    size_t bytes;
    void *ws = plan_workspace(tokens, kp, experts, &bytes);
    CHECK_OK(moe_permute_plan(test_cpu(), &ids, experts, align, NULL, &offsets, &perm, &inv, ws,
                              bytes, NULL));
    moe_tensor x = test_tensor2(MOE_DTYPE_BF16, tokens, h);
    test_fill_normal(&x, 1.0);
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, rmax, h);
    CHECK_OK(moe_gather_rows(test_cpu(), &x, &perm, kp, &out, NULL));
    check_gather(&x, &perm, kp, &out);

    int64_t cap = 12;
    moe_tensor counts = test_tensor1(MOE_DTYPE_I32, experts);
    moe_tensor mperm = test_tensor2(MOE_DTYPE_I32, experts, cap);
    moe_tensor overflow = test_tensor1(MOE_DTYPE_I32, 1);
    CHECK_OK(moe_permute_plan_masked(test_cpu(), &ids, experts, cap, &counts, &mperm, &inv,
                                     &overflow, ws, bytes, NULL));
    moe_tensor flat = moe_tensor_1d(mperm.data, MOE_DTYPE_I32, experts * cap);
    moe_tensor mout = test_tensor2(MOE_DTYPE_BF16, experts * cap, h);
    CHECK_OK(moe_gather_rows(test_cpu(), &x, &flat, kp, &mout, NULL));
    check_gather(&x, &flat, kp, &mout);
}

static void test_gather_empty(void) {
    moe_tensor x = test_tensor2(MOE_DTYPE_F16, 0, 32), perm = test_tensor1(MOE_DTYPE_I32, 5);
    moe_tensor out = test_tensor2(MOE_DTYPE_F16, 5, 32);
    for (int r = 0; r < 5; r++) test_set_i32(&perm, r, 0, r); /* no token exists: all zero */
    CHECK_OK(moe_gather_rows(test_cpu(), &x, &perm, 1, &out, NULL));
    check_gather(&x, &perm, 1, &out);
    moe_tensor none = test_tensor1(MOE_DTYPE_I32, 0), out0 = test_tensor2(MOE_DTYPE_F16, 0, 32);
    CHECK_OK(moe_gather_rows(test_cpu(), &x, &none, 1, &out0, NULL));
}

/* ---------------------------------------------------------------- max rows */

static void test_max_rows(void) {
    CHECK(moe_permute_max_rows(512, 9, 257, 1) == 4608, "no padding");
    CHECK(moe_permute_max_rows(512, 9, 257, 128) == 4608 + 257 * 127, "alignment 128");
    CHECK(moe_permute_max_rows(0, 9, 257, 4) == 257 * 3, "T = 0 still has padding");
    CHECK(moe_permute_max_rows(-1, 9, 257, 4) == -1, "negative T");
    CHECK(moe_permute_max_rows(8, -1, 257, 4) == -1, "negative topk");
    CHECK(moe_permute_max_rows(8, 9, -1, 4) == -1, "negative experts");
    CHECK(moe_permute_max_rows(8, 9, 257, 0) == -1, "alignment 0");
    CHECK(moe_permute_max_rows(INT64_MAX / 2, 3, 1, 1) == -1, "T*k overflows");
    CHECK(moe_permute_max_rows(INT64_MAX - 10, 1, 2, 7) == -1, "the padding overflows");
    CHECK(moe_permute_max_rows(INT64_MAX - 12, 1, 2, 7) == INT64_MAX, "just fits");
    CHECK(moe_permute_max_rows(INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX) ==
              (int64_t)INT32_MAX * INT32_MAX + (int64_t)INT32_MAX * (INT32_MAX - 1),
          "largest i32 arguments");
}

/* ---------------------------------------------------------------- bad input */

static void test_workspace_size_errors(void) {
    moe_context *ctx = test_cpu();
    size_t bytes = 0;
    CHECK_OK(moe_permute_workspace_size(ctx, 0, 1, 1, &bytes));
    CHECK_ERR(moe_permute_workspace_size(NULL, 8, 9, 257, &bytes), MOE_ERR_INVALID_ARGUMENT, "ctx");
    CHECK_ERR(moe_permute_workspace_size(ctx, 8, 9, 257, NULL), MOE_ERR_INVALID_ARGUMENT, "bytes");
    CHECK_ERR(moe_permute_workspace_size(ctx, -1, 9, 257, &bytes), MOE_ERR_INVALID_ARGUMENT,
              "num_tokens (-1)");
    CHECK_ERR(moe_permute_workspace_size(ctx, 8, 0, 257, &bytes), MOE_ERR_INVALID_ARGUMENT,
              "topk (0)");
    CHECK_ERR(moe_permute_workspace_size(ctx, 8, 9, 0, &bytes), MOE_ERR_INVALID_ARGUMENT,
              "num_experts (0)");
    CHECK_ERR(moe_permute_workspace_size(ctx, INT32_MAX / 8, 9, 257, &bytes),
              MOE_ERR_INVALID_ARGUMENT, "num_tokens * topk");
}

/* Valid arguments of a small contiguous plan, each test breaking one. */
typedef struct {
    moe_tensor ids, counts, offsets, perm, inv;
    void *ws;
    size_t bytes;
} plan_args;

enum { BT = 8, BK = 3, BE = 5, BA = 4, BRMAX = BT * BK + BE * (BA - 1), BC = 6 };

static plan_args plan_fixture(void) {
    plan_args a;
    a.ids = random_ids(BT, BK, BE);
    a.counts = test_tensor1(MOE_DTYPE_I32, BE);
    a.offsets = test_tensor1(MOE_DTYPE_I32, BE + 1);
    a.perm = test_tensor1(MOE_DTYPE_I32, BRMAX);
    a.inv = test_tensor1(MOE_DTYPE_I32, BT * BK);
    a.ws = plan_workspace(BT, BK, BE, &a.bytes);
    return a;
}

#define PLAN(ids, e, al, counts, offsets, perm, inv, ws, bytes) \
    moe_permute_plan(ctx, ids, e, al, counts, offsets, perm, inv, ws, bytes, NULL)

static void test_plan_errors(void) {
    moe_context *ctx = test_cpu();
    plan_args a = plan_fixture();
    moe_tensor bad;
    CHECK_OK(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes));
    CHECK_OK(PLAN(&a.ids, BE, BA, NULL, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes));
    CHECK_ERR(moe_permute_plan(NULL, &a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv,
                               a.ws, a.bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "ctx");
    /* ids */
    CHECK_ERR(PLAN(NULL, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "ids is NULL");
    bad = a.ids;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(PLAN(&bad, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "ids has dtype f32");
    bad = moe_tensor_1d(a.ids.data, MOE_DTYPE_I32, BT * BK);
    CHECK_ERR(PLAN(&bad, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "ids has rank 1");
    bad = moe_tensor_2d(a.ids.data, MOE_DTYPE_I32, BT, 0);
    CHECK_ERR(PLAN(&bad, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "ids.shape[1] (0)");
    bad = moe_tensor_2d(a.ids.data, MOE_DTYPE_I32, (int64_t)1 << 20, 4096); /* never read */
    CHECK_ERR(PLAN(&bad, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "pairs exceed INT32_MAX");
    /* sizes */
    CHECK_ERR(PLAN(&a.ids, 0, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "num_experts (0)");
    CHECK_ERR(PLAN(&a.ids, -3, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "num_experts (-3)");
    CHECK_ERR(PLAN(&a.ids, BE, 0, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "alignment (0)");
    CHECK_ERR(PLAN(&a.ids, BE, 2048, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "alignment (2048)");
    CHECK_ERR(PLAN(&a.ids, 4000000, 1024, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws,
                   a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "Rmax");
    /* counts (optional) */
    bad = a.counts;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(PLAN(&a.ids, BE, BA, &bad, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "counts has dtype");
    bad = moe_tensor_1d(a.counts.data, MOE_DTYPE_I32, BE - 1);
    CHECK_ERR(PLAN(&a.ids, BE, BA, &bad, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "counts.shape[0] (4)");
    /* offsets */
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, NULL, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "offsets is NULL");
    bad = moe_tensor_1d(a.offsets.data, MOE_DTYPE_I32, BE);
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &bad, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "offsets.shape[0] (5) must equal num_experts + 1 (6)");
    bad = moe_tensor_2d(a.offsets.data, MOE_DTYPE_I32, 1, BE + 1);
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &bad, &a.perm, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "offsets has rank 2");
    /* perm */
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, NULL, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "perm is NULL");
    bad = moe_tensor_1d(a.perm.data, MOE_DTYPE_I32, BRMAX - 1);
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &bad, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "perm.shape[0] (38) must equal Rmax");
    bad = moe_tensor_1d(a.perm.data, MOE_DTYPE_I32, BT * BK); /* sized without padding */
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &bad, &a.inv, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "perm.shape[0] (24) must equal Rmax");
    /* inv_perm */
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, NULL, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "inv_perm is NULL");
    bad = moe_tensor_1d(a.inv.data, MOE_DTYPE_I32, BT * BK - 1);
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, &bad, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "inv_perm.shape[0] (23)");
    bad = a.inv;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, &bad, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "inv_perm has dtype");
    /* workspace */
    CHECK(a.bytes > 0, "the CPU plan uses scratch (%zu bytes)", a.bytes);
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, a.ws, a.bytes - 1),
              MOE_ERR_WORKSPACE_TOO_SMALL, "workspace_bytes");
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, NULL, 0),
              MOE_ERR_WORKSPACE_TOO_SMALL, "workspace_bytes (0)");
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, NULL, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "workspace is NULL");
    char *big = test_alloc(a.bytes + 8);
    CHECK_ERR(PLAN(&a.ids, BE, BA, &a.counts, &a.offsets, &a.perm, &a.inv, big + 1, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "aligned");
}

#define MASKED(ids, e, cap, counts, perm, inv, overflow, ws, bytes) \
    moe_permute_plan_masked(ctx, ids, e, cap, counts, perm, inv, overflow, ws, bytes, NULL)

static void test_masked_errors(void) {
    moe_context *ctx = test_cpu();
    plan_args a = plan_fixture();
    moe_tensor perm = test_tensor2(MOE_DTYPE_I32, BE, BC), of = test_tensor1(MOE_DTYPE_I32, 1);
    moe_tensor bad;
    CHECK_OK(MASKED(&a.ids, BE, BC, &a.counts, &perm, &a.inv, &of, a.ws, a.bytes));
    CHECK_ERR(moe_permute_plan_masked(NULL, &a.ids, BE, BC, &a.counts, &perm, &a.inv, &of,
                                      a.ws, a.bytes, NULL),
              MOE_ERR_INVALID_ARGUMENT, "ctx");
    CHECK_ERR(MASKED(NULL, BE, BC, &a.counts, &perm, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "ids is NULL");
    bad = a.ids;
    bad.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(MASKED(&bad, BE, BC, &a.counts, &perm, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "ids has dtype bf16");
    bad = moe_tensor_2d(a.ids.data, MOE_DTYPE_I32, (int64_t)1 << 30, 4);
    CHECK_ERR(MASKED(&bad, BE, BC, &a.counts, &perm, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "pairs exceed INT32_MAX");
    CHECK_ERR(MASKED(&a.ids, 0, BC, &a.counts, &perm, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "num_experts (0)");
    CHECK_ERR(MASKED(&a.ids, BE, -1, &a.counts, &perm, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "capacity (-1)");
    CHECK_ERR(MASKED(&a.ids, BE, (int64_t)1 << 40, &a.counts, &perm, &a.inv, &of, a.ws,
                     a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "capacity (1099511627776)");
    CHECK_ERR(MASKED(&a.ids, BE, INT32_MAX / 4, &a.counts, &perm, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "num_experts (5) * capacity");
    /* counts is required here */
    CHECK_ERR(MASKED(&a.ids, BE, BC, NULL, &perm, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "counts is NULL");
    bad = moe_tensor_1d(a.counts.data, MOE_DTYPE_I32, BE + 1);
    CHECK_ERR(MASKED(&a.ids, BE, BC, &bad, &perm, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "counts.shape[0] (6)");
    /* perm [E', C] */
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, NULL, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "perm is NULL");
    bad = moe_tensor_1d(perm.data, MOE_DTYPE_I32, BE * BC);
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &bad, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "perm has rank 1");
    bad = moe_tensor_2d(perm.data, MOE_DTYPE_I32, BE - 1, BC);
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &bad, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "perm.shape[0] (4)");
    bad = moe_tensor_2d(perm.data, MOE_DTYPE_I32, BE, BC - 1);
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &bad, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "perm.shape[1] (5) must equal capacity (6)");
    bad = perm;
    bad.dtype = MOE_DTYPE_E4M3;
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &bad, &a.inv, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "perm has dtype");
    /* inv_perm, overflow */
    bad = moe_tensor_1d(a.inv.data, MOE_DTYPE_I32, BT * BK + 1);
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &perm, &bad, &of, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "inv_perm.shape[0] (25)");
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &perm, &a.inv, NULL, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "overflow is NULL");
    bad = moe_tensor_1d(a.counts.data, MOE_DTYPE_I32, 2);
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &perm, &a.inv, &bad, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "overflow.shape[0] (2)");
    bad = of;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &perm, &a.inv, &bad, a.ws, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "overflow has dtype");
    /* workspace */
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &perm, &a.inv, &of, a.ws, a.bytes - 1),
              MOE_ERR_WORKSPACE_TOO_SMALL, "workspace_bytes");
    CHECK_ERR(MASKED(&a.ids, BE, BC, &a.counts, &perm, &a.inv, &of, NULL, a.bytes),
              MOE_ERR_INVALID_ARGUMENT, "workspace is NULL");
}

static void test_problem_sizes_errors(void) {
    moe_context *ctx = test_cpu();
    moe_tensor counts = test_tensor1(MOE_DTYPE_I32, 4), out = test_tensor2(MOE_DTYPE_I32, 4, 3);
    moe_tensor bad;
    CHECK_OK(moe_problem_sizes(ctx, &counts, 256, 128, &out, NULL));
    CHECK_ERR(moe_problem_sizes(NULL, &counts, 256, 128, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "ctx");
    CHECK_ERR(moe_problem_sizes(ctx, NULL, 256, 128, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "counts is NULL");
    bad = counts;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(moe_problem_sizes(ctx, &bad, 256, 128, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "counts has dtype");
    bad = moe_tensor_2d(counts.data, MOE_DTYPE_I32, 4, 1);
    CHECK_ERR(moe_problem_sizes(ctx, &bad, 256, 128, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "counts has rank 2");
    bad = moe_tensor_1d(counts.data, MOE_DTYPE_I32, 0);
    CHECK_ERR(moe_problem_sizes(ctx, &bad, 256, 128, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "counts.shape[0] (0)");
    CHECK_ERR(moe_problem_sizes(ctx, &counts, 0, 128, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "n (0)");
    CHECK_ERR(moe_problem_sizes(ctx, &counts, (int64_t)INT32_MAX + 1, 128, &out, NULL),
              MOE_ERR_INVALID_ARGUMENT, "n (2147483648)");
    CHECK_ERR(moe_problem_sizes(ctx, &counts, 256, -1, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "k (-1)");
    CHECK_ERR(moe_problem_sizes(ctx, &counts, 256, 128, NULL, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out is NULL");
    bad = out;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(moe_problem_sizes(ctx, &counts, 256, 128, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out has dtype");
    bad = moe_tensor_2d(out.data, MOE_DTYPE_I32, 3, 3);
    CHECK_ERR(moe_problem_sizes(ctx, &counts, 256, 128, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out.shape[0] (3)");
    bad = moe_tensor_2d(out.data, MOE_DTYPE_I32, 4, 2);
    CHECK_ERR(moe_problem_sizes(ctx, &counts, 256, 128, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out.shape[1] (2)");
}

static void test_gather_errors(void) {
    moe_context *ctx = test_cpu();
    moe_tensor x = test_tensor2(MOE_DTYPE_BF16, 4, 16), perm = test_tensor1(MOE_DTYPE_I32, 6);
    moe_tensor out = test_tensor2(MOE_DTYPE_BF16, 6, 16), bad;
    for (int r = 0; r < 6; r++) test_set_i32(&perm, r, 0, r - 1);
    CHECK_OK(moe_gather_rows(ctx, &x, &perm, 2, &out, NULL));
    CHECK_ERR(moe_gather_rows(NULL, &x, &perm, 2, &out, NULL), MOE_ERR_INVALID_ARGUMENT, "ctx");
    CHECK_ERR(moe_gather_rows(ctx, NULL, &perm, 2, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "x is NULL");
    bad = x;
    bad.dtype = MOE_DTYPE_E8M0;
    CHECK_ERR(moe_gather_rows(ctx, &bad, &perm, 2, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "x has dtype e8m0");
    bad.dtype = MOE_DTYPE_I32;
    CHECK_ERR(moe_gather_rows(ctx, &bad, &perm, 2, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "x has dtype i32");
    bad = moe_tensor_1d(x.data, MOE_DTYPE_BF16, 64);
    CHECK_ERR(moe_gather_rows(ctx, &bad, &perm, 2, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "x has rank 1");
    CHECK_ERR(moe_gather_rows(ctx, &x, NULL, 2, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "perm is NULL");
    bad = perm;
    bad.dtype = MOE_DTYPE_F32;
    CHECK_ERR(moe_gather_rows(ctx, &x, &bad, 2, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "perm has dtype");
    bad = moe_tensor_2d(perm.data, MOE_DTYPE_I32, 2, 3);
    CHECK_ERR(moe_gather_rows(ctx, &x, &bad, 2, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "perm has rank 2");
    CHECK_ERR(moe_gather_rows(ctx, &x, &perm, 0, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "topk (0)");
    CHECK_ERR(moe_gather_rows(ctx, &x, &perm, -2, &out, NULL), MOE_ERR_INVALID_ARGUMENT,
              "topk (-2)");
    CHECK_ERR(moe_gather_rows(ctx, &x, &perm, 2, NULL, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out is NULL");
    bad = out;
    bad.dtype = MOE_DTYPE_F16;
    CHECK_ERR(moe_gather_rows(ctx, &x, &perm, 2, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "x (bf16) and out (f16)");
    bad = moe_tensor_2d(out.data, MOE_DTYPE_BF16, 5, 16);
    CHECK_ERR(moe_gather_rows(ctx, &x, &perm, 2, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out.shape[0] (5) must equal R (perm.shape[0]) (6)");
    bad = moe_tensor_2d(out.data, MOE_DTYPE_BF16, 6, 8);
    CHECK_ERR(moe_gather_rows(ctx, &x, &perm, 2, &bad, NULL), MOE_ERR_INVALID_ARGUMENT,
              "out.shape[1] (8)");
}

void suite_permute(void) {
    RUN(test_max_rows);
    RUN(test_plan_random);
    RUN(test_plan_edges);
    RUN(test_plan_invariants);
    RUN(test_masked_random);
    RUN(test_masked_edges);
    RUN(test_problem_sizes);
    RUN(test_gather_random);
    RUN(test_gather_plan);
    RUN(test_gather_empty);
    RUN(test_workspace_size_errors);
    RUN(test_plan_errors);
    RUN(test_masked_errors);
    RUN(test_problem_sizes_errors);
    RUN(test_gather_errors);
}
