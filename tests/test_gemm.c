/* Grouped GEMM (SPEC 4): the CPU backend against a float64 formula on random data, the
 * documented f32 order bit for bit, rows that must stay unwritten, and every argument
 * check of moe_grouped_gemm, moe_grouped_gemm_masked and the workspace query. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/api/internal.h"
#include "../src/common/formats.h"
#include "harness.h"

#define BLOCK 128

/* ------------------------------------------------------------------ element access */

/* Address of element (i0, i1, i2) of a tensor of rank <= 3. */
static void *elem(const moe_tensor *t, int64_t i0, int64_t i1, int64_t i2) {
    int64_t idx[3] = {i0, i1, i2}, off = 0;
    for (int d = 0; d < t->rank && d < 3; d++) off += idx[d] * t->stride[d];
    return (char *)t->data + off * (int64_t)moe_dtype_size(t->dtype);
}

static int64_t numel(const moe_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++) n *= t->shape[d];
    return n;
}

/* A random e4m3 code, any finite value (NaN codes 0x7f and 0xff excluded). */
static uint8_t random_e4m3(void) {
    for (;;) {
        uint8_t c = (uint8_t)(rng_u64() & 0xffu);
        if ((c & 0x7fu) != 0x7fu) return c;
    }
}

/* A tensor whose innermost rows are pad elements longer than its shape says: the padding
 * stays poisoned, so a write past the last column shows. */
static moe_tensor padded(moe_dtype dtype, int rank, const int64_t *shape, int64_t pad) {
    int64_t s[3] = {0, 0, 0};
    for (int d = 0; d < rank; d++) s[d] = shape[d];
    s[rank - 1] += pad;
    moe_tensor t = test_tensor(dtype, rank, s);
    t.shape[rank - 1] = shape[rank - 1];
    return t;
}

/* ------------------------------------------------------------------ one problem */

/* The inputs of one grouped GEMM and what it must produce. Rows are numbered t = 0..T-1:
 * row t of A when contiguous, (expert t / C, row t % C) when masked. */
typedef struct problem {
    int fp8, masked;
    int64_t experts, n, k, rows; /* rows: R, or C when masked */
    int64_t total;               /* T: R, or E * C */
    moe_tensor a, b, b_scales, bounds;
    moe_tensor sa_row, sa_col;   /* the same A scales in both layouts */
    int32_t *owner;              /* expert of row t, -1 if no expert covers it */
    double *ref;                 /* [T, N] float64 result, rows of owner -1 unused */
    float *order;                /* [T, N] the documented f32 order, before rounding */
} problem;

/* Leading indices of row t in A, D and the row-major scales. */
static void row_index(const problem *p, int64_t t, int64_t *i0, int64_t *i1) {
    *i0 = p->masked ? t / p->rows : t;
    *i1 = p->masked ? t % p->rows : 0;
}

static double a_value(const problem *p, int64_t t, int64_t k) {
    int64_t i0, i1;
    row_index(p, t, &i0, &i1);
    return p->masked ? test_get(&p->a, i0, i1, k) : test_get(&p->a, i0, k, 0);
}

/* SA of row t, K block b, read from the row-major copy. */
static double a_scale(const problem *p, int64_t t, int64_t b) {
    int64_t i0, i1;
    row_index(p, t, &i0, &i1);
    return p->masked ? test_get(&p->sa_row, i0, i1, b) : test_get(&p->sa_row, i0, b, 0);
}

static void fill_inputs(problem *p) {
    int64_t e_count = p->experts, n = p->n, k = p->k;
    for (int64_t t = 0; t < p->total; t++) {
        int64_t i0, i1;
        row_index(p, t, &i0, &i1);
        for (int64_t c = 0; c < k; c++) {
            void *at = p->masked ? elem(&p->a, i0, i1, c) : elem(&p->a, i0, c, 0);
            if (p->fp8) *(uint8_t *)at = random_e4m3();
            else *(uint16_t *)at = moe_f32_to_bf16((float)rng_normal());
        }
    }
    for (int64_t e = 0; e < e_count; e++)
        for (int64_t j = 0; j < n; j++)
            for (int64_t c = 0; c < k; c++) {
                void *at = elem(&p->b, e, j, c);
                if (p->fp8) *(uint8_t *)at = random_e4m3();
                else *(uint16_t *)at = moe_f32_to_bf16((float)rng_normal());
            }
    if (!p->fp8) return;
    /* scales around 2^-8 keep sums of random e4m3 products well inside f16's range */
    for (int64_t e = 0; e < e_count; e++)
        for (int64_t j = 0; j < n / BLOCK; j++)
            for (int64_t b = 0; b < k / BLOCK; b++)
                test_set(&p->b_scales, e, j, b, rng_uniform(0.5, 1.5) / 256.0);
    for (int64_t t = 0; t < p->total; t++) {
        int64_t i0, i1;
        row_index(p, t, &i0, &i1);
        for (int64_t b = 0; b < k / BLOCK; b++) {
            double s = rng_uniform(0.5, 1.5) / 256.0;
            if (p->masked) {
                test_set(&p->sa_row, i0, i1, b, s);
                test_set(&p->sa_col, i0, b, i1, s);
            } else {
                test_set(&p->sa_row, i0, b, 0, s);
                test_set(&p->sa_col, b, i0, 0, s);
            }
        }
    }
}

/* Which expert covers each row, from the per-expert vector as the contract reads it. */
static void find_owners(problem *p, const int32_t *bounds) {
    for (int64_t t = 0; t < p->total; t++) p->owner[t] = -1;
    for (int64_t e = 0; e < p->experts; e++) {
        if (p->masked) {
            int64_t m = bounds[e] < 0 ? 0 : bounds[e];
            for (int64_t i = 0; i < m && i < p->rows; i++)
                p->owner[e * p->rows + i] = (int32_t)e;
        } else {
            for (int64_t r = bounds[e]; r < bounds[e + 1]; r++) p->owner[r] = (int32_t)e;
        }
    }
}

/* ref: sum over K of the dequantised products, in float64. order: SPEC 4 evaluated in
 * f32 in the order src/cpu/gemm.c documents (per-block partial, times SA * SB, added).
 * bq and bf: expert e's B dequantised (double) and as stored (float), [N][K]. */
static void expected_row(const problem *p, int64_t t, const double *bq, const float *bf,
                         double *ref, float *order) {
    int64_t e = p->owner[t], k = p->k;
    double *aq = malloc((size_t)(k + 1) * sizeof *aq);
    float *af = malloc((size_t)(k + 1) * sizeof *af);
    for (int64_t c = 0; c < k; c++) {
        af[c] = (float)a_value(p, t, c);
        aq[c] = af[c] * (p->fp8 ? a_scale(p, t, c / BLOCK) : 1.0);
    }
    for (int64_t j = 0; j < p->n; j++) {
        double sum = 0.0;
        for (int64_t c = 0; c < k; c++) sum += aq[c] * bq[j * k + c];
        ref[j] = sum;
        float acc = 0.0f;
        for (int64_t b0 = 0; b0 < k; b0 += BLOCK) {
            float part = p->fp8 ? 0.0f : acc;
            for (int64_t c = b0; c < b0 + BLOCK && c < k; c++) part += af[c] * bf[j * k + c];
            if (!p->fp8) {
                acc = part;
                continue;
            }
            float scale = (float)a_scale(p, t, b0 / BLOCK) *
                          (float)test_get(&p->b_scales, e, j / BLOCK, b0 / BLOCK);
            acc += part * scale;
        }
        order[j] = acc;
    }
    free(aq);
    free(af);
}

static void compute_expected(problem *p) {
    int64_t n = p->n, k = p->k;
    size_t count = (size_t)(n * k + 1);
    double *bq = malloc(count * sizeof *bq);
    float *bf = malloc(count * sizeof *bf);
    for (int64_t e = 0; e < p->experts; e++) {
        for (int64_t j = 0; j < n; j++)
            for (int64_t c = 0; c < k; c++) {
                double s = p->fp8 ? test_get(&p->b_scales, e, j / BLOCK, c / BLOCK) : 1.0;
                bf[j * k + c] = (float)test_get(&p->b, e, j, c);
                bq[j * k + c] = bf[j * k + c] * s;
            }
        for (int64_t t = 0; t < p->total; t++)
            if (p->owner[t] == e)
                expected_row(p, t, bq, bf, p->ref + t * n, p->order + t * n);
    }
    free(bq);
    free(bf);
}

/* bounds: offsets [E+1] (contiguous, non-decreasing, last <= R) or counts [E]. */
static problem make_problem(int fp8, int masked, int64_t experts, int64_t n, int64_t k,
                            int64_t rows, const int32_t *bounds) {
    problem p;
    memset(&p, 0, sizeof p);
    p.fp8 = fp8;
    p.masked = masked;
    p.experts = experts;
    p.n = n;
    p.k = k;
    p.rows = rows;
    p.total = masked ? experts * rows : rows;
    moe_dtype in = fp8 ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    int64_t kb = k / BLOCK, r4 = (rows + 3) / 4 * 4;
    p.a = masked ? test_tensor3(in, experts, rows, k) : test_tensor2(in, rows, k);
    p.b = test_tensor3(in, experts, n, k);
    if (fp8) {
        p.b_scales = test_tensor3(MOE_DTYPE_F32, experts, n / BLOCK, kb);
        p.sa_row = masked ? test_tensor3(MOE_DTYPE_F32, experts, rows, kb)
                          : test_tensor2(MOE_DTYPE_F32, rows, kb);
        /* the padding columns of the column-major copy stay NaN: reading them would show */
        p.sa_col = masked ? test_tensor3(MOE_DTYPE_F32, experts, kb, r4)
                          : test_tensor2(MOE_DTYPE_F32, kb, r4);
    }
    int64_t nb = masked ? experts : experts + 1;
    p.bounds = test_tensor1(MOE_DTYPE_I32, nb);
    memcpy(p.bounds.data, bounds, (size_t)nb * sizeof(int32_t));
    p.owner = test_alloc((size_t)(p.total + 1) * sizeof(int32_t));
    p.ref = test_alloc((size_t)(p.total * n + 1) * sizeof(double));
    p.order = test_alloc((size_t)(p.total * n + 1) * sizeof(float));
    fill_inputs(&p);
    find_owners(&p, bounds);
    compute_expected(&p);
    return p;
}

/* ------------------------------------------------------------------ running it */

static uint16_t d_bits(const problem *p, const moe_tensor *d, int64_t t, int64_t j) {
    int64_t i0, i1;
    row_index(p, t, &i0, &i1);
    return *(const uint16_t *)(p->masked ? elem(d, i0, i1, j) : elem(d, i0, j, 0));
}

static double d_value(const moe_tensor *d, uint16_t bits) {
    return d->dtype == MOE_DTYPE_BF16 ? moe_bf16_to_f32(bits) : moe_f16_to_f32(bits);
}

static uint16_t round_out(moe_dtype dtype, float v) {
    return dtype == MOE_DTYPE_BF16 ? moe_f32_to_bf16(v) : moe_f32_to_f16(v);
}

static moe_status run_op(const problem *p, moe_scale_layout layout, moe_tensor *d) {
    const moe_tensor *sa = !p->fp8 ? NULL : layout == MOE_SCALES_ROW_MAJOR ? &p->sa_row
                                                                           : &p->sa_col;
    const moe_tensor *sb = p->fp8 ? &p->b_scales : NULL;
    size_t ws_bytes = 0;
    CHECK_OK(moe_grouped_gemm_workspace_size(test_cpu(), (int32_t)p->experts, &ws_bytes));
    void *ws = test_alloc(ws_bytes);
    if (p->masked)
        return moe_grouped_gemm_masked(test_cpu(), &p->a, sa, layout, &p->b, sb, &p->bounds,
                                       d, ws, ws_bytes, NULL);
    return moe_grouped_gemm(test_cpu(), &p->a, sa, layout, &p->b, sb, &p->bounds, d, ws,
                            ws_bytes, NULL);
}

/* Counts what the checks below found, so one bad case prints one line, not thousands. */
typedef struct verdict {
    double err2, ref2;
    int64_t unwritten, not_finite, overwritten, off_order;
} verdict;

static void judge_row(const problem *p, const moe_tensor *d, int64_t t, verdict *v) {
    for (int64_t j = 0; j < p->n; j++) {
        uint16_t bits = d_bits(p, d, t, j);
        if (p->owner[t] < 0) {
            v->overwritten += bits != 0xFFFFu;
            continue;
        }
        double got = d_value(d, bits), want = p->ref[t * p->n + j];
        v->unwritten += bits == 0xFFFFu;
        v->not_finite += !isfinite(got);
        v->off_order += bits != round_out(d->dtype, p->order[t * p->n + j]);
        v->err2 += (got - want) * (got - want);
        v->ref2 += want * want;
    }
    /* the padding of D's rows belongs to no one */
    int64_t i0, i1;
    row_index(p, t, &i0, &i1);
    for (int64_t j = p->n; j < (p->masked ? d->stride[1] : d->stride[0]); j++)
        v->overwritten += *(const uint16_t *)(p->masked ? elem(d, i0, i1, j)
                                                        : elem(d, i0, j, 0)) != 0xFFFFu;
}

/* Runs one variant (scale layout, output dtype, D row padding) and checks every element. */
static void run_variant(const problem *p, const char *name, moe_scale_layout layout,
                        moe_dtype out, int64_t pad) {
    int64_t shape[3] = {p->experts, p->rows, p->n};
    /* one spare row after a contiguous D catches writes past its end */
    int64_t rows_shape[2] = {p->rows + 1, p->n};
    moe_tensor d = p->masked ? padded(out, 3, shape, pad) : padded(out, 2, rows_shape, pad);
    if (!p->masked) d.shape[0] = p->rows;
    moe_status s = run_op(p, layout, &d);
    CHECK(s == MOE_OK, "%s: %s", name, moe_last_error());
    if (s != MOE_OK) return;
    verdict v = {0};
    for (int64_t t = 0; t < p->total; t++) judge_row(p, &d, t, &v);
    if (!p->masked) {
        for (int64_t j = 0; j < d.stride[0]; j++)
            v.overwritten += *(const uint16_t *)elem(&d, p->rows, j, 0) != 0xFFFFu;
    }
    double tol = out == MOE_DTYPE_BF16 ? 2e-3 : 5e-4;
    double rel = v.ref2 > 0 ? sqrt(v.err2 / v.ref2) : sqrt(v.err2);
    const char *dt = out == MOE_DTYPE_BF16 ? "bf16" : "f16";
    const char *lay = layout == MOE_SCALES_ROW_MAJOR ? "row" : "col";
    CHECK(rel <= tol, "%s %s %s: ||D - ref|| / ||ref|| = %.3g > %.1g", name, lay, dt, rel, tol);
    CHECK(v.unwritten == 0 && v.not_finite == 0,
          "%s %s %s: %lld covered elements unwritten, %lld not finite", name, lay, dt,
          (long long)v.unwritten, (long long)v.not_finite);
    CHECK(v.overwritten == 0, "%s %s %s: %lld elements outside the experts' rows written",
          name, lay, dt, (long long)v.overwritten);
    CHECK(v.off_order == 0, "%s %s %s: %lld elements differ from the documented f32 order",
          name, lay, dt, (long long)v.off_order);
}

/* Every combination of scale layout and output dtype (the layout only matters for FP8),
 * with and without padded D rows. */
static void run_all_variants(const problem *p, const char *name) {
    run_variant(p, name, MOE_SCALES_ROW_MAJOR, MOE_DTYPE_BF16, 0);
    run_variant(p, name, MOE_SCALES_ROW_MAJOR, MOE_DTYPE_F16, 24);
    if (!p->fp8) return;
    run_variant(p, name, MOE_SCALES_COL_MAJOR, MOE_DTYPE_BF16, 8);
    run_variant(p, name, MOE_SCALES_COL_MAJOR, MOE_DTYPE_F16, 0);
}

/* ------------------------------------------------------------------ row counts */


/* offsets from counts, starting at head; returns offsets[E]. */
static int64_t offsets_from(const int32_t *counts, int64_t experts, int32_t head,
                            int32_t *offsets) {
    offsets[0] = head;
    for (int64_t e = 0; e < experts; e++) offsets[e + 1] = offsets[e] + counts[e];
    return offsets[experts];
}

/* A contiguous problem with these counts; tail rows after the last expert and head rows
 * before the first are covered by no one. */
static void contiguous_case(const char *name, int fp8, int64_t experts, int64_t n,
                            int64_t k, const int32_t *counts, int32_t head, int64_t tail) {
    int32_t *offsets = test_alloc((size_t)(experts + 1) * sizeof(int32_t));
    int64_t rows = offsets_from(counts, experts, head, offsets) + tail;
    problem p = make_problem(fp8, 0, experts, n, k, rows, offsets);
    run_all_variants(&p, name);
}

static void contiguous_random(const char *name, int fp8, int64_t experts, int64_t n,
                              int64_t k, int64_t max, int shape, int32_t head, int64_t tail) {
    int32_t *counts = test_alloc((size_t)experts * sizeof(int32_t));
    draw_counts(counts, experts, max, shape);
    contiguous_case(name, fp8, experts, n, k, counts, head, tail);
}

/* ------------------------------------------------------------------ tests */

static void test_fp8_contiguous(void) {
    int32_t one[1] = {1}, big[1] = {300}, lonely[4] = {0, 0, 17, 0}, none[3] = {0, 0, 0};
    contiguous_case("E=1 M=1", 1, 1, 128, 128, one, 0, 3);
    contiguous_case("E=1 M=300", 1, 1, 256, 384, big, 0, 0);
    contiguous_case("one expert of four has rows", 1, 4, 512, 128, lonely, 0, 5);
    contiguous_case("no rows at all", 1, 3, 128, 256, none, 0, 4);
    contiguous_random("E=8 uniform, head rows", 1, 8, 384, 256, 40, COUNTS_UNIFORM, 2, 3);
    contiguous_random("E=40 uniform 0..6", 1, 40, 128, 128, 6, COUNTS_UNIFORM, 0, 1);
    contiguous_random("E=16 skewed", 1, 16, 256, 512, 200, COUNTS_SKEWED, 0, 0);
}

/* DeepSeek-V3's hidden size as K: 56 scale blocks per row. */
static void test_fp8_deepseek_k(void) {
    int32_t counts[2] = {3, 5};
    contiguous_case("K=7168", 1, 2, 256, 7168, counts, 0, 1);
}

static void test_fp8_masked(void) {
    int32_t over[4] = {40, -1, 0, 33};
    problem p = make_problem(1, 1, 4, 256, 256, 33, over);
    run_all_variants(&p, "masked, counts > C, negative, 0");
    int32_t extreme[6] = {1, 0, 1, 5, INT32_MIN, INT32_MAX};
    p = make_problem(1, 1, 6, 128, 128, 1, extreme);
    run_all_variants(&p, "masked C=1, extreme counts");
    int32_t full[3] = {130, 17, 129};
    p = make_problem(1, 1, 3, 128, 384, 130, full);
    run_all_variants(&p, "masked C=130");
}

static void test_bf16(void) {
    int32_t one[1] = {1}, some[3] = {0, 70, 2}, pair[2] = {2, 3};
    contiguous_random("bf16 E=5 N=72 K=200", 0, 5, 72, 200, 30, COUNTS_UNIFORM, 1, 2);
    contiguous_case("bf16 N=K=8 M=1", 0, 1, 8, 8, one, 0, 0);
    contiguous_case("bf16 K=8", 0, 3, 136, 8, some, 0, 1);
    contiguous_case("bf16 K=0 writes zeros", 0, 2, 16, 0, pair, 0, 1);
    int32_t counts[3] = {25, -3, 7};
    problem p = make_problem(0, 1, 3, 24, 40, 20, counts);
    run_all_variants(&p, "bf16 masked");
}

/* Offsets that break the contract (decreasing, negative, past R) must not make the op
 * touch memory outside its tensors; the rows of a valid leading expert stay right, and
 * the result does not depend on the run. */
static void test_bad_offsets(void) {
    int32_t valid[5] = {0, 12, 12, 12, 12};
    problem p = make_problem(1, 0, 4, 128, 128, 20, valid);
    int32_t bad[][5] = {
        {0, 12, 5, 30, 2},
        {0, 12, INT32_MIN, INT32_MAX, -1},
        {0, 12, 40, 7, 20},
    };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        memcpy(p.bounds.data, bad[c], sizeof bad[c]);
        moe_tensor d[2];
        for (int run = 0; run < 2; run++) {
            int64_t shape[2] = {p.rows + 1, p.n};
            d[run] = padded(MOE_DTYPE_BF16, 2, shape, 0);
            d[run].shape[0] = p.rows;
            CHECK_OK(run_op(&p, MOE_SCALES_ROW_MAJOR, &d[run]));
        }
        int64_t wrong = 0, spare = 0, bad_value = 0;
        for (int64_t t = 0; t < p.rows; t++)
            for (int64_t j = 0; j < p.n; j++) {
                uint16_t bits = d_bits(&p, &d[0], t, j);
                if (t < 12) wrong += bits != moe_f32_to_bf16(p.order[t * p.n + j]);
                else bad_value += bits != 0xFFFFu && !isfinite(moe_bf16_to_f32(bits));
            }
        for (int64_t j = 0; j < p.n; j++)
            spare += *(uint16_t *)elem(&d[0], p.rows, j, 0) != 0xFFFFu;
        CHECK(wrong == 0, "bad offsets %zu: %lld elements of expert 0 wrong", c, (long long)wrong);
        CHECK(bad_value == 0 && spare == 0, "bad offsets %zu: %lld bad values, %lld past D",
              c, (long long)bad_value, (long long)spare);
        CHECK(memcmp(d[0].data, d[1].data, (size_t)(p.rows + 1) * (size_t)p.n * 2) == 0,
              "bad offsets %zu: two runs differ", c);
    }
}

/* ------------------------------------------------------------------ bad input */

/* A valid FP8 call (E=2, N=128, K=256; R=6 contiguous, C=6 masked) whose arguments the
 * bad-input tests break one at a time. */
typedef struct call {
    moe_context *ctx;
    moe_tensor a, sa, b, sb, offsets, d;
    const moe_tensor *pa, *psa, *pb, *psb, *poff;
    moe_tensor *pd;
    moe_scale_layout layout;
} call;

static void reset(call *cp, int masked) {
    call c;
    memset(&c, 0, sizeof c);
    c.ctx = test_cpu();
    if (masked) {
        c.a = test_tensor3(MOE_DTYPE_E4M3, 2, 6, 256);
        c.sa = test_tensor3(MOE_DTYPE_F32, 2, 6, 2);
        c.offsets = test_tensor1(MOE_DTYPE_I32, 2);
        c.d = test_tensor3(MOE_DTYPE_BF16, 2, 6, 128);
    } else {
        c.a = test_tensor2(MOE_DTYPE_E4M3, 6, 256);
        c.sa = test_tensor2(MOE_DTYPE_F32, 6, 2);
        c.offsets = test_tensor1(MOE_DTYPE_I32, 3);
        c.d = test_tensor2(MOE_DTYPE_BF16, 6, 128);
    }
    c.b = test_tensor3(MOE_DTYPE_E4M3, 2, 128, 256);
    c.sb = test_tensor3(MOE_DTYPE_F32, 2, 1, 2);
    memset(c.a.data, 0, (size_t)numel(&c.a));
    memset(c.b.data, 0, (size_t)numel(&c.b));
    memset(c.offsets.data, 0, (size_t)numel(&c.offsets) * 4);
    c.layout = MOE_SCALES_ROW_MAJOR;
    *cp = c;
    /* the pointers must name the caller's copy */
    cp->pa = &cp->a;
    cp->psa = &cp->sa;
    cp->pb = &cp->b;
    cp->psb = &cp->sb;
    cp->poff = &cp->offsets;
    cp->pd = &cp->d;
}

static moe_status go(const call *c) {
    return moe_grouped_gemm(c->ctx, c->pa, c->psa, c->layout, c->pb, c->psb, c->poff, c->pd,
                            NULL, 0, NULL);
}

static moe_status go_masked(const call *c) {
    return moe_grouped_gemm_masked(c->ctx, c->pa, c->psa, c->layout, c->pb, c->psb, c->poff,
                                   c->pd, NULL, 0, NULL);
}

/* Switches a valid FP8 call to BF16 inputs (N and K stay multiples of 8). */
static void make_bf16(call *c) {
    c->a.dtype = MOE_DTYPE_BF16;
    c->a.data = test_alloc((size_t)numel(&c->a) * 2);
    c->b.dtype = MOE_DTYPE_BF16;
    c->b.data = test_alloc((size_t)numel(&c->b) * 2);
    c->psa = NULL;
    c->psb = NULL;
}

static void test_bad_operands(void) {
    const moe_status BAD = MOE_ERR_INVALID_ARGUMENT;
    call c;
    reset(&c, 0);
    CHECK_OK(go(&c));
    c.ctx = NULL;
    CHECK_ERR(go(&c), BAD, "ctx");
    reset(&c, 0);
    c.pa = NULL;
    CHECK_ERR(go(&c), BAD, "a is NULL");
    reset(&c, 0);
    c.a.dtype = MOE_DTYPE_F32;
    CHECK_ERR(go(&c), BAD, "a has dtype f32");
    reset(&c, 0);
    c.a.rank = 3;
    CHECK_ERR(go(&c), BAD, "a has rank 3");
    reset(&c, 0);
    c.a.shape[0] = -1;
    CHECK_ERR(go(&c), BAD, "a.shape[0]");
    reset(&c, 0);
    c.a.stride[0] = 100;
    CHECK_ERR(go(&c), BAD, "a.stride[0]");
    reset(&c, 0);
    c.a.data = NULL;
    CHECK_ERR(go(&c), BAD, "a.data is NULL");
    reset(&c, 0);
    c.pb = NULL;
    CHECK_ERR(go(&c), BAD, "b is NULL");
    reset(&c, 0);
    c.b.rank = 2;
    CHECK_ERR(go(&c), BAD, "b has rank 2");
    reset(&c, 0);
    c.b.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(go(&c), BAD, "b (bf16) and a (e4m3)");
    reset(&c, 0);
    c.b.stride[2] = 2;
    CHECK_ERR(go(&c), BAD, "b.stride[2]");
    reset(&c, 0);
    c.pd = NULL;
    CHECK_ERR(go(&c), BAD, "d is NULL");
    reset(&c, 0);
    c.d.dtype = MOE_DTYPE_F32;
    CHECK_ERR(go(&c), BAD, "d has dtype f32");
    reset(&c, 0);
    c.d.rank = 3;
    CHECK_ERR(go(&c), BAD, "d has rank 3");
    reset(&c, 0);
    c.b.shape[0] = 0;
    CHECK_ERR(go(&c), BAD, "b.shape[0] (E = 0 experts)");
    reset(&c, 0);
    c.a.shape[1] = 128;
    CHECK_ERR(go(&c), BAD, "a.shape[1] (128) must equal K");
    reset(&c, 0);
    c.d.shape[0] = 5;
    CHECK_ERR(go(&c), BAD, "d.shape[0] (5) must equal R");
    reset(&c, 0);
    c.d.shape[1] = 64;
    CHECK_ERR(go(&c), BAD, "d.shape[1] (64) must equal N");
    reset(&c, 0);
    c.a.shape[1] = c.b.shape[2] = 200;
    CHECK_ERR(go(&c), BAD, "K (b.shape[2] = 200) must be a multiple of 128");
    reset(&c, 0);
    c.b.shape[1] = c.d.shape[1] = 64;
    CHECK_ERR(go(&c), BAD, "N (b.shape[1] = 64) must be a multiple of 128");
    reset(&c, 0);
    make_bf16(&c);
    CHECK_OK(go(&c));
    c.a.shape[1] = c.b.shape[2] = 12;
    CHECK_ERR(go(&c), BAD, "K (b.shape[2] = 12) must be a multiple of 8");
    reset(&c, 0);
    make_bf16(&c);
    c.b.shape[1] = c.d.shape[1] = 20;
    CHECK_ERR(go(&c), BAD, "N (b.shape[1] = 20) must be a multiple of 8");
}

static void test_bad_offsets_and_scales(void) {
    const moe_status BAD = MOE_ERR_INVALID_ARGUMENT;
    call c;
    reset(&c, 0);
    c.poff = NULL;
    CHECK_ERR(go(&c), BAD, "offsets is NULL");
    reset(&c, 0);
    c.offsets.dtype = MOE_DTYPE_F32;
    CHECK_ERR(go(&c), BAD, "offsets has dtype");
    reset(&c, 0);
    c.offsets.rank = 2;
    c.offsets.shape[1] = 1;
    c.offsets.stride[1] = 1;
    CHECK_ERR(go(&c), BAD, "offsets has rank 2");
    reset(&c, 0);
    c.offsets.shape[0] = 2;
    CHECK_ERR(go(&c), BAD, "offsets.shape[0] (2) must equal E + 1 (3)");
    reset(&c, 0);
    c.layout = (moe_scale_layout)7;
    CHECK_ERR(go(&c), BAD, "a_layout (7)");
    reset(&c, 0);
    c.psa = NULL;
    CHECK_ERR(go(&c), BAD, "a_scales is NULL");
    reset(&c, 0);
    c.sa.dtype = MOE_DTYPE_BF16;
    CHECK_ERR(go(&c), BAD, "a_scales has dtype bf16");
    reset(&c, 0);
    c.sa.rank = 3;
    CHECK_ERR(go(&c), BAD, "a_scales has rank 3");
    reset(&c, 0);
    c.sa.shape[0] = 5;
    CHECK_ERR(go(&c), BAD, "a_scales.shape[0] (5) must equal R (6)");
    reset(&c, 0);
    c.sa.shape[1] = 1;
    CHECK_ERR(go(&c), BAD, "a_scales.shape[1] (1) must equal K / 128");
    reset(&c, 0);
    c.layout = MOE_SCALES_COL_MAJOR; /* the row-major [6, 2] no longer fits */
    CHECK_ERR(go(&c), BAD, "a_scales.shape[0] (6) must equal K / 128");
    reset(&c, 0);
    c.layout = MOE_SCALES_COL_MAJOR;
    c.sa = test_tensor2(MOE_DTYPE_F32, 2, 8);
    CHECK_OK(go(&c));
    c.sa.shape[1] = 6;
    CHECK_ERR(go(&c), BAD, "a_scales.shape[1] (6) must equal R rounded up to 4 (8)");
    reset(&c, 0);
    c.psb = NULL;
    CHECK_ERR(go(&c), BAD, "b_scales is NULL");
    reset(&c, 0);
    c.sb.dtype = MOE_DTYPE_E8M0;
    CHECK_ERR(go(&c), BAD, "b_scales has dtype e8m0");
    reset(&c, 0);
    c.sb.rank = 2;
    CHECK_ERR(go(&c), BAD, "b_scales has rank 2");
    reset(&c, 0);
    c.sb.shape[0] = 1;
    CHECK_ERR(go(&c), BAD, "b_scales.shape[0] (1) must equal E");
    reset(&c, 0);
    c.sb = test_tensor3(MOE_DTYPE_F32, 2, 2, 2);
    CHECK_ERR(go(&c), BAD, "b_scales.shape[1] (2) must equal N / 128 (1)");
    reset(&c, 0);
    c.sb.shape[2] = 1;
    CHECK_ERR(go(&c), BAD, "b_scales.shape[2] (1) must equal K / 128 (2)");
    reset(&c, 0);
    make_bf16(&c);
    c.psa = &c.sa;
    CHECK_ERR(go(&c), BAD, "a_scales must be NULL");
    c.psa = NULL;
    c.psb = &c.sb;
    CHECK_ERR(go(&c), BAD, "b_scales must be NULL");
}

static void test_bad_masked(void) {
    const moe_status BAD = MOE_ERR_INVALID_ARGUMENT;
    call c;
    reset(&c, 1);
    CHECK_OK(go_masked(&c));
    c.ctx = NULL;
    CHECK_ERR(go_masked(&c), BAD, "ctx");
    reset(&c, 1);
    c.a.rank = 2;
    CHECK_ERR(go_masked(&c), BAD, "a has rank 2");
    reset(&c, 1);
    c.d.rank = 2;
    CHECK_ERR(go_masked(&c), BAD, "d has rank 2");
    reset(&c, 1);
    c.a.shape[0] = 3;
    CHECK_ERR(go_masked(&c), BAD, "a.shape[0] (3) must equal E");
    reset(&c, 1);
    c.a.shape[2] = 128;
    CHECK_ERR(go_masked(&c), BAD, "a.shape[2] (128) must equal K");
    reset(&c, 1);
    c.d.shape[0] = 1;
    CHECK_ERR(go_masked(&c), BAD, "d.shape[0] (1) must equal E");
    reset(&c, 1);
    c.d.shape[1] = 5;
    CHECK_ERR(go_masked(&c), BAD, "d.shape[1] (5) must equal C (a.shape[1]) (6)");
    reset(&c, 1);
    c.d.shape[2] = 64;
    CHECK_ERR(go_masked(&c), BAD, "d.shape[2] (64) must equal N");
    reset(&c, 1);
    c.poff = NULL;
    CHECK_ERR(go_masked(&c), BAD, "counts is NULL");
    reset(&c, 1);
    c.offsets.dtype = MOE_DTYPE_F32;
    CHECK_ERR(go_masked(&c), BAD, "counts has dtype");
    reset(&c, 1);
    c.offsets.shape[0] = 3;
    CHECK_ERR(go_masked(&c), BAD, "counts.shape[0] (3) must equal E");
    reset(&c, 1);
    c.sa.rank = 2;
    CHECK_ERR(go_masked(&c), BAD, "a_scales has rank 2");
    reset(&c, 1);
    c.sa.shape[0] = 1;
    CHECK_ERR(go_masked(&c), BAD, "a_scales.shape[0] (1) must equal E");
    reset(&c, 1);
    c.sa.shape[1] = 5;
    CHECK_ERR(go_masked(&c), BAD, "a_scales.shape[1] (5) must equal C (6)");
    reset(&c, 1);
    c.sa.shape[2] = 1;
    CHECK_ERR(go_masked(&c), BAD, "a_scales.shape[2] (1) must equal K / 128");
    reset(&c, 1);
    c.layout = MOE_SCALES_COL_MAJOR;
    c.sa = test_tensor3(MOE_DTYPE_F32, 2, 2, 8);
    CHECK_OK(go_masked(&c));
    c.sa.shape[1] = 1;
    CHECK_ERR(go_masked(&c), BAD, "a_scales.shape[1] (1) must equal K / 128");
    c.sa.shape[1] = 2;
    c.sa.shape[2] = 6;
    CHECK_ERR(go_masked(&c), BAD, "a_scales.shape[2] (6) must equal C rounded up to 4 (8)");
    reset(&c, 1);
    c.layout = (moe_scale_layout)-1;
    CHECK_ERR(go_masked(&c), BAD, "a_layout (-1)");
    reset(&c, 1);
    c.sb.shape[0] = 3;
    CHECK_ERR(go_masked(&c), BAD, "b_scales.shape[0] (3) must equal E");
    reset(&c, 1);
    make_bf16(&c);
    CHECK_OK(go_masked(&c));
    c.psb = &c.sb;
    CHECK_ERR(go_masked(&c), BAD, "b_scales must be NULL");
}

static void test_workspace(void) {
    const moe_status BAD = MOE_ERR_INVALID_ARGUMENT;
    size_t bytes = 12345;
    CHECK_OK(moe_grouped_gemm_workspace_size(test_cpu(), 256, &bytes));
    CHECK(bytes != 12345, "the workspace size was not reported");
    CHECK_ERR(moe_grouped_gemm_workspace_size(NULL, 4, &bytes), BAD, "ctx");
    CHECK_ERR(moe_grouped_gemm_workspace_size(test_cpu(), 0, &bytes), BAD, "num_experts (0)");
    CHECK_ERR(moe_grouped_gemm_workspace_size(test_cpu(), -3, &bytes), BAD, "num_experts (-3)");
    CHECK_ERR(moe_grouped_gemm_workspace_size(test_cpu(), 4, NULL), BAD, "bytes is NULL");
    /* the CPU backend needs none, so no pointer and 0 bytes is enough; more is fine too */
    call c;
    reset(&c, 0);
    CHECK_OK(moe_grouped_gemm(c.ctx, c.pa, c.psa, c.layout, c.pb, c.psb, c.poff, c.pd,
                              test_alloc(64), 64, NULL));
}

/* moe_grouped_gemm_silu_quant (internal: the layer's GEMM 1 with its activation fused):
 * the GEMM's checks and those of the activation's outputs. The CPU backend has no fused
 * path: it reports fused = 0 and writes nothing, and the layer runs the two ops. */
static moe_status go_fused(const call *c, const moe_fp8_group_params *p, moe_tensor *q,
                           moe_tensor *s, int *fused) {
    return moe_grouped_gemm_silu_quant(c->ctx, c->pa, c->psa, c->layout, c->pb, c->psb,
                                       c->poff, c->pd, p, q, s, NULL, 0, fused, NULL);
}

static void fused_reset(call *c, moe_tensor *q, moe_tensor *s) {
    reset(c, 0); /* then N = 2I = 256 */
    c->b = test_tensor3(MOE_DTYPE_E4M3, 2, 256, 256);
    memset(c->b.data, 0, (size_t)numel(&c->b));
    c->sb = test_tensor3(MOE_DTYPE_F32, 2, 2, 2);
    c->d = test_tensor2(MOE_DTYPE_BF16, 6, 256);
    *q = test_tensor2(MOE_DTYPE_E4M3, 6, 128);
    *s = test_tensor2(MOE_DTYPE_F32, 6, 1);
}

static void test_fused_gemm1_entry(void) {
    const moe_status BAD = MOE_ERR_INVALID_ARGUMENT;
    moe_fp8_group_params p = {BLOCK, 1e-10f, 0, MOE_SCALES_ROW_MAJOR};
    call c;
    moe_tensor q, s;
    int fused = -1;
    fused_reset(&c, &q, &s);
    CHECK_OK(go_fused(&c, &p, &q, &s, &fused));
    CHECK(fused == 0, "the CPU backend reported fused = %d", fused);
    int64_t written = 0;
    for (int64_t i = 0; i < numel(&q); i++) written += ((uint8_t *)q.data)[i] != 0xFFu;
    CHECK(written == 0, "%lld codes written where nothing was fused", (long long)written);
    CHECK_ERR(go_fused(&c, &p, &q, &s, NULL), BAD, "fused");
    fused_reset(&c, &q, &s);
    c.pd = NULL;
    CHECK_ERR(go_fused(&c, &p, &q, &s, &fused), BAD, "d is NULL");
    fused_reset(&c, &q, &s);
    c.d.dtype = MOE_DTYPE_F16;
    c.d.data = test_alloc((size_t)numel(&c.d) * 2);
    CHECK_ERR(go_fused(&c, &p, &q, &s, &fused), BAD, "c bf16");
    fused_reset(&c, &q, &s);
    make_bf16(&c);
    CHECK_ERR(go_fused(&c, &p, &q, &s, &fused), BAD, "a must be e4m3");
    fused_reset(&c, &q, &s);
    q = test_tensor2(MOE_DTYPE_E4M3, 6, 64);
    CHECK_ERR(go_fused(&c, &p, &q, &s, &fused), BAD, "q.shape[1] (64) must equal I");
    fused_reset(&c, &q, &s);
    q = test_tensor2(MOE_DTYPE_BF16, 6, 128);
    CHECK_ERR(go_fused(&c, &p, &q, &s, &fused), BAD, "q has dtype bf16");
    fused_reset(&c, &q, &s);
    s = test_tensor2(MOE_DTYPE_F32, 6, 2);
    CHECK_ERR(go_fused(&c, &p, &q, &s, &fused), BAD, "scales.shape[1] (2)");
    fused_reset(&c, &q, &s);
    c.offsets = test_tensor1(MOE_DTYPE_I32, 2);
    CHECK_ERR(go_fused(&c, &p, &q, &s, &fused), BAD, "offsets.shape[0] (2)");
    fused_reset(&c, &q, &s);
    moe_fp8_group_params g64 = {64, 1e-10f, 0, MOE_SCALES_ROW_MAJOR};
    s = test_tensor2(MOE_DTYPE_F32, 6, 2);
    CHECK_OK(go_fused(&c, &g64, &q, &s, &fused)); /* a group the fused kernel lacks */
    CHECK(fused == 0, "group 64: fused = %d", fused);
}

void suite_gemm(void) {
    RUN(test_fused_gemm1_entry);
    RUN(test_fp8_contiguous);
    RUN(test_fp8_deepseek_k);
    RUN(test_fp8_masked);
    RUN(test_bf16);
    RUN(test_bad_offsets);
    RUN(test_bad_operands);
    RUN(test_bad_offsets_and_scales);
    RUN(test_bad_masked);
    RUN(test_workspace);
}
