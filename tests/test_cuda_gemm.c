/* The CUDA grouped GEMM (SPEC 4) against the CPU backend on the same random inputs.
 *
 * The CPU op rounds once from an f32 sum in a documented order; the GPU sums each K block
 * on the tensor core in its own order, so the two f32 results differ by about K * 2^-24
 * relative (more inside an FP8 block, whose tensor-core sum keeps fewer bits) and the
 * rounded outputs now and then by one unit in the last place: far inside SPEC 4's
 * ||D - ref|| / ||ref|| <= 2e-3 (bf16) and 5e-4 (f16), which is what is checked. The CPU
 * output also says which elements must be written: every element it leaves poisoned
 * (rows of no expert, D's row padding, a spare row after a contiguous D) must still be
 * poisoned on the GPU, and every element it writes must be written and finite.
 *
 * Shapes: E from 1 to 256 with 0..1024 rows per expert (uniform and skewed, zeros and
 * ones), N and K in {128, 256, 512}, DeepSeek-V3's gate_up (N=4096, K=7168) and down
 * (N=7168, K=2048) with a few rows per expert, both A-scale layouts, D rows longer than
 * N, bf16 and f16 output, the masked layout with counts above C, negative and zero, and
 * BF16 inputs with N and K that are not multiples of the kernel's tiles (and K = 0). The
 * CPU side stays under about 2 GFLOP in total. */
#include <math.h>
#include <string.h>

#include "../src/api/internal.h"
#include "../src/common/formats.h"
#include "harness.h"

#define BLOCK 128

/* ------------------------------------------------------------------ one problem */

typedef struct gproblem {
    int fp8, masked;
    int64_t experts, n, k, rows; /* rows: R, or C when masked */
    int64_t total;               /* rows of D counted flat: R, or E * C */
    moe_tensor a, b, sb, sa_row, sa_col, bounds; /* host */
    moe_tensor da, db, dsb, dsa_row, dsa_col, dbounds; /* device copies */
    moe_tensor ref[2];           /* CPU result, bf16 and f16, rows n wide, poisoned */
    int late_bounds; /* GPU: the bounds are written by a kernel just before the GEMM */
} gproblem;

/* 8 e4m3 codes per draw; the two NaN codes become the largest finite value. */
static void fill_e4m3(uint8_t *q, int64_t count) {
    for (int64_t i = 0; i < count; i += 8) {
        uint64_t r = rng_u64();
        for (int64_t j = 0; j < 8 && i + j < count; j++) {
            uint8_t c = (uint8_t)(r >> (8 * j));
            if ((c & 0x7fu) == 0x7fu) c ^= 1u;
            q[i + j] = c;
        }
    }
}

static void fill_bf16(uint16_t *h, int64_t count) {
    for (int64_t i = 0; i < count; i++) h[i] = moe_f32_to_bf16((float)rng_normal());
}

/* bounds: offsets [E+1] (contiguous) or counts [E] (masked). */
static gproblem make(int fp8, int masked, int64_t experts, int64_t n, int64_t k, int64_t rows,
                     const int32_t *bounds) {
    gproblem p;
    memset(&p, 0, sizeof p);
    p.fp8 = fp8;
    p.masked = masked;
    p.experts = experts;
    p.n = n;
    p.k = k;
    p.rows = rows;
    p.total = masked ? experts * rows : rows;
    moe_dtype in = fp8 ? MOE_DTYPE_E4M3 : MOE_DTYPE_BF16;
    p.a = masked ? test_tensor3(in, experts, rows, k) : test_tensor2(in, rows, k);
    p.b = test_tensor3(in, experts, n, k);
    if (fp8) {
        fill_e4m3(p.a.data, p.total * k);
        fill_e4m3(p.b.data, experts * n * k);
    } else {
        fill_bf16(p.a.data, p.total * k);
        fill_bf16(p.b.data, experts * n * k);
    }
    int64_t nb = masked ? experts : experts + 1;
    p.bounds = test_tensor1(MOE_DTYPE_I32, nb);
    memcpy(p.bounds.data, bounds, (size_t)nb * sizeof(int32_t));
    p.da = test_to_device(&p.a);
    p.db = test_to_device(&p.b);
    p.dbounds = test_to_device(&p.bounds);
    if (fp8) {
        int64_t kb = k / BLOCK, r4 = (rows + 3) / 4 * 4;
        p.sb = test_tensor3(MOE_DTYPE_F32, experts, n / BLOCK, kb);
        for (int64_t e = 0; e < experts; e++)
            for (int64_t j = 0; j < n / BLOCK; j++)
                for (int64_t b = 0; b < kb; b++)
                    test_set(&p.sb, e, j, b, rng_uniform(0.5, 1.5) / 256.0);
        /* the padding columns of the column-major copy stay NaN: reading them would show */
        p.sa_row = masked ? test_tensor3(MOE_DTYPE_F32, experts, rows, kb)
                          : test_tensor2(MOE_DTYPE_F32, rows, kb);
        p.sa_col = masked ? test_tensor3(MOE_DTYPE_F32, experts, kb, r4)
                          : test_tensor2(MOE_DTYPE_F32, kb, r4);
        for (int64_t t = 0; t < p.total; t++) {
            int64_t i0 = masked ? t / rows : t, i1 = masked ? t % rows : 0;
            for (int64_t b = 0; b < kb; b++) {
                double s = rng_uniform(0.5, 1.5) / 256.0;
                if (masked) {
                    test_set(&p.sa_row, i0, i1, b, s);
                    test_set(&p.sa_col, i0, b, i1, s);
                } else {
                    test_set(&p.sa_row, i0, b, 0, s);
                    test_set(&p.sa_col, b, i0, 0, s);
                }
            }
        }
        p.dsb = test_to_device(&p.sb);
        p.dsa_row = test_to_device(&p.sa_row);
        p.dsa_col = test_to_device(&p.sa_col);
    }
    return p;
}

/* D as a whole poisoned buffer of rows n + pad wide (plus a spare row after a contiguous
 * D) and the op's view of it. */
typedef struct dbuf {
    moe_tensor full, view;
} dbuf;

static dbuf host_d(const gproblem *p, moe_dtype dt, int64_t pad) {
    dbuf d;
    if (p->masked) {
        d.full = test_tensor3(dt, p->experts, p->rows, p->n + pad);
        d.view = d.full;
        d.view.shape[2] = p->n;
    } else {
        d.full = test_tensor2(dt, p->rows + 1, p->n + pad);
        d.view = d.full;
        d.view.shape[0] = p->rows;
        d.view.shape[1] = p->n;
    }
    return d;
}

static dbuf device_d(const gproblem *p, moe_dtype dt, int64_t pad) {
    dbuf h = host_d(p, dt, pad), d;
    d.full = test_device_like(&h.full);
    d.view = h.view;
    d.view.data = d.full.data;
    return d;
}

static moe_status call(moe_context *ctx, const gproblem *p, int device, moe_scale_layout layout,
                       moe_tensor *d) {
    const moe_tensor *sa = NULL, *sb = NULL;
    if (p->fp8) {
        int row = layout == MOE_SCALES_ROW_MAJOR;
        sa = device ? (row ? &p->dsa_row : &p->dsa_col) : (row ? &p->sa_row : &p->sa_col);
        sb = device ? &p->dsb : &p->sb;
    }
    const moe_tensor *a = device ? &p->da : &p->a, *b = device ? &p->db : &p->b;
    const moe_tensor *bounds = device ? &p->dbounds : &p->bounds;
    size_t ws_bytes = 0;
    CHECK_OK(moe_grouped_gemm_workspace_size(ctx, (int32_t)p->experts, &ws_bytes));
    void *ws = ws_bytes ? (device ? test_device_alloc(ws_bytes) : test_alloc(ws_bytes)) : NULL;
#ifdef MOE_HAVE_CUDA
    moe_tensor late;
    if (device && p->late_bounds) {
        /* the GEMM gets a poisoned copy (all -1: no rows) that a kernel fills 50 us
         * after letting the GEMM start; one that kept a table built before its PDL wait
         * would compute nothing and leave D poisoned */
        late = *bounds;
        int n = (int)late.shape[0];
        late.data = test_device_alloc((size_t)n * sizeof(int32_t));
        CHECK(test_late_copy_i32(late.data, bounds->data, n, 50000) == 0, "late copy launch");
        bounds = &late;
    }
#endif
    if (p->masked)
        return moe_grouped_gemm_masked(ctx, a, sa, layout, b, sb, bounds, d, ws, ws_bytes,
                                       NULL);
    return moe_grouped_gemm(ctx, a, sa, layout, b, sb, bounds, d, ws, ws_bytes, NULL);
}

/* The CPU results for both output dtypes (row-major scales: the layout does not change
 * the values). */
static void reference(gproblem *p) {
    for (int o = 0; o < 2; o++) {
        dbuf d = host_d(p, o == 0 ? MOE_DTYPE_BF16 : MOE_DTYPE_F16, 0);
        CHECK_OK(call(test_cpu(), p, 0, MOE_SCALES_ROW_MAJOR, &d.view));
        p->ref[o] = d.full;
    }
}

/* Runs one variant on the GPU and compares every element of D's buffer. */
static void run_variant(const gproblem *p, const char *name, moe_scale_layout layout,
                        moe_dtype out, int64_t pad) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    dbuf d = device_d(p, out, pad);
    moe_status s = call(gpu, p, 1, layout, &d.view);
    const char *dt = out == MOE_DTYPE_BF16 ? "bf16" : "f16";
    const char *lay = layout == MOE_SCALES_ROW_MAJOR ? "row" : "col";
    CHECK(s == MOE_OK, "%s %s %s: %s", name, lay, dt, moe_last_error());
    if (s != MOE_OK) return;
    dbuf h = host_d(p, out, pad);
    test_to_host(&d.full, &h.full);
    const uint16_t *got = h.full.data;
    const uint16_t *want = p->ref[out == MOE_DTYPE_BF16 ? 0 : 1].data;
    int64_t width = p->n + pad, flat_rows = p->total + (p->masked ? 0 : 1);
    double err2 = 0, ref2 = 0;
    int64_t unwritten = 0, not_finite = 0, overwritten = 0;
    for (int64_t t = 0; t < flat_rows; t++)
        for (int64_t j = 0; j < width; j++) {
            uint16_t g = got[t * width + j];
            uint16_t w = (j < p->n && t < p->total) ? want[t * p->n + j] : 0xFFFFu;
            if (w == 0xFFFFu) {
                overwritten += g != 0xFFFFu;
                continue;
            }
            double gv = out == MOE_DTYPE_BF16 ? moe_bf16_to_f32(g) : moe_f16_to_f32(g);
            double wv = out == MOE_DTYPE_BF16 ? moe_bf16_to_f32(w) : moe_f16_to_f32(w);
            unwritten += g == 0xFFFFu;
            if (!isfinite(gv)) {
                not_finite++;
                continue;
            }
            err2 += (gv - wv) * (gv - wv);
            ref2 += wv * wv;
        }
    double tol = out == MOE_DTYPE_BF16 ? 2e-3 : 5e-4;
    double rel = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    CHECK(rel <= tol, "%s %s %s: ||D - ref|| / ||ref|| = %.3g > %.1g", name, lay, dt, rel, tol);
    CHECK(unwritten == 0 && not_finite == 0,
          "%s %s %s: %lld covered elements unwritten, %lld not finite", name, lay, dt,
          (long long)unwritten, (long long)not_finite);
    CHECK(overwritten == 0, "%s %s %s: %lld elements outside the experts' rows written", name,
          lay, dt, (long long)overwritten);
}

static void run_all(gproblem *p, const char *name) {
    reference(p);
    run_variant(p, name, MOE_SCALES_ROW_MAJOR, MOE_DTYPE_BF16, 0);
    run_variant(p, name, MOE_SCALES_ROW_MAJOR, MOE_DTYPE_F16, 24);
    if (!p->fp8) return;
    run_variant(p, name, MOE_SCALES_COL_MAJOR, MOE_DTYPE_BF16, 8);
    run_variant(p, name, MOE_SCALES_COL_MAJOR, MOE_DTYPE_F16, 0);
}

/* ------------------------------------------------------------------ row counts */

/* A contiguous problem: head rows before the first expert and tail rows after the last
 * belong to no one. */
static void contiguous(const char *name, int fp8, int64_t experts, int64_t n, int64_t k,
                       const int32_t *counts, int32_t head, int64_t tail) {
    int32_t *offsets = test_alloc((size_t)(experts + 1) * sizeof(int32_t));
    offsets[0] = head;
    for (int64_t e = 0; e < experts; e++) offsets[e + 1] = offsets[e] + counts[e];
    gproblem p = make(fp8, 0, experts, n, k, offsets[experts] + tail, offsets);
    run_all(&p, name);
}

static void contiguous_random(const char *name, int fp8, int64_t experts, int64_t n, int64_t k,
                              int64_t max, int shape, int32_t head, int64_t tail) {
    int32_t *counts = test_alloc((size_t)experts * sizeof(int32_t));
    draw_counts(counts, experts, max, shape);
    contiguous(name, fp8, experts, n, k, counts, head, tail);
}

/* ------------------------------------------------------------------ tests */

static void test_cuda_gemm_fp8_contiguous(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int32_t one[1] = {1}, big[1] = {300}, lonely[4] = {0, 0, 17, 0}, none[3] = {0, 0, 0};
    int32_t edges[6] = {32, 33, 0, 1, 128, 129}; /* around the swap and tile boundaries */
    /* last tiles of 32 (swapped), 33 and 64 (one warpgroup), 65 and 1 rows (both / swapped) */
    int32_t tails[5] = {160, 161, 192, 193, 257};
    int32_t decode[3] = {5, 32, 1}; /* split tiles: 3 K blocks, the last stage half full */
    contiguous("E=1 M=1", 1, 1, 128, 128, one, 0, 3);
    contiguous("E=1 M=300", 1, 1, 256, 384, big, 0, 0);
    contiguous("one expert of four has rows", 1, 4, 512, 128, lonely, 3, 5);
    contiguous("no rows at all", 1, 3, 128, 256, none, 0, 4);
    contiguous("tile edges", 1, 6, 256, 256, edges, 1, 2);
    contiguous("short last tiles", 1, 5, 256, 384, tails, 2, 1);
    contiguous("decode experts, odd K blocks", 1, 3, 384, 384, decode, 1, 1);
    contiguous_random("E=4 uniform 0..200", 1, 4, 512, 256, 200, COUNTS_UNIFORM, 2, 3);
    contiguous_random("E=8 skewed 1024", 1, 8, 256, 128, 1024, COUNTS_SKEWED, 0, 0);
    contiguous_random("E=64 uniform 0..40", 1, 64, 128, 256, 40, COUNTS_UNIFORM, 0, 1);
    contiguous_random("E=256 uniform 0..6", 1, 256, 128, 128, 6, COUNTS_UNIFORM, 0, 0);
}

/* DeepSeek-V3's expert shapes with a few rows per expert, and a long K on full tiles. */
static void test_cuda_gemm_fp8_deepseek(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int32_t gate_up[2] = {2, 1}, down[3] = {3, 0, 1}, long_k[1] = {70};
    contiguous("gate_up N=4096 K=7168", 1, 2, 4096, 7168, gate_up, 0, 1);
    contiguous("down N=7168 K=2048", 1, 3, 7168, 2048, down, 1, 0);
    contiguous("K=7168 full tile", 1, 1, 128, 7168, long_k, 0, 2);
}

static void test_cuda_gemm_fp8_masked(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int32_t over[4] = {40, -1, 0, 33};
    gproblem p = make(1, 1, 4, 256, 256, 33, over);
    run_all(&p, "masked C=33, counts > C, negative, 0");
    int32_t mixed[4] = {200, 17, 0, 150};
    p = make(1, 1, 4, 128, 384, 200, mixed);
    run_all(&p, "masked C=200, small and large experts");
    int32_t extreme[6] = {1, 0, 1, 5, INT32_MIN, INT32_MAX};
    p = make(1, 1, 6, 128, 128, 1, extreme);
    run_all(&p, "masked C=1, extreme counts");
}

static void test_cuda_gemm_bf16(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int32_t one[1] = {1}, some[3] = {0, 70, 2}, pair[2] = {2, 3};
    contiguous_random("bf16 E=5 N=72 K=200", 0, 5, 72, 200, 30, COUNTS_UNIFORM, 1, 2);
    contiguous_random("bf16 E=8 N=256 K=256", 0, 8, 256, 256, 150, COUNTS_UNIFORM, 0, 1);
    contiguous("bf16 N=K=8 M=1", 0, 1, 8, 8, one, 0, 0);
    contiguous("bf16 N=136 K=8", 0, 3, 136, 8, some, 0, 1);
    contiguous("bf16 K=0 writes zeros", 0, 2, 16, 0, pair, 0, 1);
    int32_t tails[4] = {160, 161, 192, 193}; /* swapped, one-warpgroup, both last tiles */
    contiguous("bf16 short last tiles", 0, 4, 136, 200, tails, 1, 0);
    int32_t counts[3] = {45, -3, 7};
    gproblem p = make(0, 1, 3, 24, 40, 40, counts);
    run_all(&p, "bf16 masked");
}

/* Rows past the last expert that bring R to at least 64 rows an expert, the average from
 * which the kernel pairs CTAs: rows of no expert, as in the layer's padded layout. */
static int64_t tail_to_pair(const int32_t *counts, int64_t experts) {
    int64_t sum = 0;
    for (int64_t e = 0; e < experts; e++) sum += counts[e];
    return sum < 64 * experts ? 64 * experts - sum : 1;
}

/* Calls with enough whole tiles (min(E, rows) x N / 128 >= 4 waves of 132 SMs), an even
 * number of n tiles and at least 64 rows an expert on average run in clusters of two CTAs:
 * two m tiles of an expert share each B tile (the second one also short: swapped or
 * one-warpgroup), an odd last m tile is taken as two n tiles sharing its A tile. Every
 * tile kind, both layouts, both input types; and, unpaired for contrast, few rows an
 * expert and an odd number of n tiles. */
static void test_cuda_gemm_paired_tiles(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const int32_t edges[] = {0, 1, 31, 32, 33, 64, 65, 127, 128, 129, 161, 0, 300};
    const int n_edges = (int)(sizeof edges / sizeof edges[0]);
    int32_t few[64], many[40];
    for (int e = 0; e < 64; e++) few[e] = e < n_edges ? edges[e] : (int32_t)rng_int(0, 40);
    for (int e = 0; e < 40; e++) many[e] = e < n_edges ? edges[e] : (int32_t)rng_int(0, 130);
    contiguous("unpaired, few rows an expert: E=64 N=1280", 1, 64, 1280, 256, few, 2, 3);
    contiguous("unpaired, 9 n tiles: E=64 N=1152", 1, 64, 1152, 128, few, 0, 1);
    contiguous("paired E=40 N=1792 K=128", 1, 40, 1792, 128, many, 2, tail_to_pair(many, 40));
    /* counts < 0, 0, > C, C, two m tiles with a swapped second, one tile */
    int32_t masked_counts[40] = {-5, 0, 170, 160, 129, 33};
    for (int e = 6; e < 40; e++) masked_counts[e] = (int32_t)rng_int(0, 40);
    gproblem p = make(1, 1, 40, 1792, 128, 160, masked_counts);
    run_all(&p, "masked paired E=40 C=160 N=1792");
    if (!test_quick()) {
        contiguous("bf16 paired E=40 N=1792 K=200", 0, 40, 1792, 200, many, 1,
                   tail_to_pair(many, 40));
        draw_counts(few, 64, 400, COUNTS_SKEWED);
        contiguous("paired skewed E=64 N=1280 K=384", 1, 64, 1280, 384, few, 0,
                   tail_to_pair(few, 64));
    }
}

/* FP8 calls with 256 to 1023 rows an expert (on average, or the masked capacity), N a
 * multiple of 256 and enough whole tiles run wide tiles (128 x 256): last m tiles of 1,
 * 32, 44 (one warpgroup) and 65..96 rows, an empty expert, paired (an even number of
 * 256-column tiles) and not (odd), both layouts. */
static void test_cuda_gemm_wide_tiles(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int32_t counts[8] = {300, 257, 0, 385, 160, 512, 200, 224};
    int64_t k = test_quick() ? 128 : 384;
    contiguous("wide paired E=8 N=8704", 1, 8, 8704, k, counts, 3, 300);
    int32_t masked_counts[8] = {300, 257, 0, 33, 129, 64, 65, 290};
    gproblem p = make(1, 1, 8, 8704, k, 300, masked_counts);
    run_all(&p, "wide masked paired E=8 C=300 N=8704");
    if (!test_quick()) contiguous("wide unpaired E=8 N=8448", 1, 8, 8448, k, counts, 0, 200);
}

/* Running twice gives the same bytes (no atomics, no order that depends on timing). */
static void test_cuda_gemm_deterministic(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int32_t counts[5] = {130, 3, 0, 64, 1}, offsets[6] = {0};
    for (int e = 0; e < 5; e++) offsets[e + 1] = offsets[e] + counts[e];
    gproblem p = make(1, 0, 5, 256, 512, offsets[5], offsets);
    dbuf d[2], h[2];
    for (int run = 0; run < 2; run++) {
        d[run] = device_d(&p, MOE_DTYPE_BF16, 0);
        CHECK_OK(call(gpu, &p, 1, MOE_SCALES_COL_MAJOR, &d[run].view));
        h[run] = host_d(&p, MOE_DTYPE_BF16, 0);
        test_to_host(&d[run].full, &h[run].full);
    }
    CHECK(memcmp(h[0].full.data, h[1].full.data, (size_t)(p.rows + 1) * (size_t)p.n * 2) == 0,
          "two runs differ");
}

/* The GEMM runs with programmatic dependent launch at decode sizes and reads the bounds
 * before waiting for the kernel before it; that early read must never be what it uses
 * when the previous kernel writes the bounds (src/cuda/common.cuh). */
static void test_cuda_gemm_bounds_written_just_before(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int32_t counts[5] = {7, 0, 150, 1, 40}, masked_counts[3] = {5, 33, 0};
    for (int fp8 = 0; fp8 < 2; fp8++) {
        int32_t offsets[6] = {0};
        for (int e = 0; e < 5; e++) offsets[e + 1] = offsets[e] + counts[e];
        gproblem p = make(fp8, 0, 5, 256, 256, offsets[5], offsets);
        p.late_bounds = 1;
        run_all(&p, fp8 ? "fp8 bounds written just before" : "bf16 bounds written just before");
        gproblem m = make(fp8, 1, 3, 128, 256, 40, masked_counts);
        m.late_bounds = 1;
        run_all(&m, fp8 ? "fp8 masked counts written just before"
                        : "bf16 masked counts written just before");
    }
}

/* TMA needs 16-byte aligned bases and row strides; the CUDA backend names the argument. */
static void test_cuda_gemm_alignment(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    const moe_status BAD = MOE_ERR_INVALID_ARGUMENT;
    int32_t offsets[2] = {0, 4};
    gproblem p = make(0, 0, 1, 16, 16, 4, offsets);
    dbuf d = device_d(&p, MOE_DTYPE_BF16, 0);
    moe_tensor a = p.da;
    a.data = (char *)a.data + 8;
    a.shape[1] = 8;
    a.stride[0] = 16;
    moe_tensor b = p.db;
    b.shape[2] = 8; /* K = 8 on both: the view is valid, only a's base is misaligned */
    CHECK_ERR(moe_grouped_gemm(gpu, &a, NULL, MOE_SCALES_ROW_MAJOR, &b, NULL, &p.dbounds,
                               &d.view, NULL, 0, NULL),
              BAD, "a.data");
    a = p.da;
    a.shape[1] = 8;
    a.stride[0] = 12; /* 24 bytes */
    a.shape[0] = 4;
    CHECK_ERR(moe_grouped_gemm(gpu, &a, NULL, MOE_SCALES_ROW_MAJOR, &b, NULL, &p.dbounds,
                               &d.view, NULL, 0, NULL),
              BAD, "a.stride[0]");
    size_t bytes = 1;
    CHECK_OK(moe_grouped_gemm_workspace_size(gpu, 256, &bytes));
    CHECK(bytes == 0, "the CUDA grouped GEMM needs no workspace, reported %zu bytes", bytes);
}

/* ------------------------------------------------------------------ fused GEMM 1 */

/* A scale tensor for R rows and I / 128 groups in the given layout. */
static moe_tensor act_scales(int64_t rows, int64_t inter, moe_scale_layout layout) {
    return layout == MOE_SCALES_ROW_MAJOR
               ? test_tensor2(MOE_DTYPE_F32, rows, inter / BLOCK)
               : test_tensor2(MOE_DTYPE_F32, inter / BLOCK, (rows + 3) / 4 * 4);
}

/* moe_grouped_gemm_silu_quant (the layer's GEMM 1 with its activation fused) against the
 * two ops it replaces, moe_grouped_gemm then moe_silu_and_mul_quant_fp8, on the GPU on the
 * same random inputs. Both round GEMM 1's outputs to bf16 and share the activation and
 * quantisation code (silu_mul.cuh, fp8_group.cuh), and the GEMM's sums do not depend on
 * which tile computes them, so codes and scales must be equal bit for bit in every row an
 * expert owns; rows of no expert must keep their poison. want_fused: whether the shape
 * takes the fused kernel (decode-sized calls do not: then nothing may be written). The
 * unfused ops are each compared with the CPU reference in their own tests. */
static void fused_case(const char *name, int64_t experts, int64_t inter, int64_t k,
                       const int32_t *counts, int32_t head, int64_t tail,
                       moe_scale_layout layout, int ue8m0, int want_fused) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    int32_t *offsets = test_alloc((size_t)(experts + 1) * sizeof(int32_t));
    offsets[0] = head;
    for (int64_t e = 0; e < experts; e++) offsets[e + 1] = offsets[e] + counts[e];
    int64_t rows = offsets[experts] + tail;
    gproblem p = make(1, 0, experts, 2 * inter, k, rows, offsets);
    const moe_tensor *sa = layout == MOE_SCALES_ROW_MAJOR ? &p.dsa_row : &p.dsa_col;
    moe_fp8_group_params params = {BLOCK, 1e-10f, ue8m0, layout};

    moe_tensor c_host = test_tensor2(MOE_DTYPE_BF16, rows, 2 * inter);
    moe_tensor q_host = test_tensor2(MOE_DTYPE_E4M3, rows, inter);
    moe_tensor s_host = act_scales(rows, inter, layout);
    moe_tensor c_ref = test_device_like(&c_host), c = test_device_like(&c_host);
    moe_tensor q_ref = test_device_like(&q_host), q = test_device_like(&q_host);
    moe_tensor s_ref = test_device_like(&s_host), s = test_device_like(&s_host);
    CHECK_OK(moe_grouped_gemm(gpu, &p.da, sa, layout, &p.db, &p.dsb, &p.dbounds, &c_ref, NULL,
                              0, NULL));
    CHECK_OK(moe_silu_and_mul_quant_fp8(gpu, &c_ref, &params, &q_ref, &s_ref, NULL));
    int fused = -1;
    CHECK_OK(moe_grouped_gemm_silu_quant(gpu, &p.da, sa, layout, &p.db, &p.dsb, &p.dbounds, &c,
                                         &params, &q, &s, NULL, 0, &fused, NULL));
    CHECK(fused == want_fused, "%s: fused = %d, expected %d", name, fused, want_fused);

    moe_tensor q_want = test_tensor2(MOE_DTYPE_E4M3, rows, inter);
    moe_tensor s_want = act_scales(rows, inter, layout);
    test_to_host(&q_ref, &q_want);
    test_to_host(&s_ref, &s_want);
    test_to_host(&q, &q_host);
    test_to_host(&s, &s_host);
    const uint8_t *qg = q_host.data, *qw = q_want.data;
    const uint32_t *sg = s_host.data, *sw = s_want.data;
    int64_t groups = inter / BLOCK, codes_off = 0, scales_off = 0, touched = 0;
    for (int64_t r = 0; r < rows; r++) {
        int owned = want_fused && r >= head && r < offsets[experts];
        for (int64_t c2 = 0; c2 < inter; c2++) {
            uint8_t g = qg[r * inter + c2];
            codes_off += owned ? g != qw[r * inter + c2] : g != 0xFFu;
        }
        for (int64_t j = 0; j < groups; j++) {
            int64_t at = layout == MOE_SCALES_ROW_MAJOR ? r * groups + j
                                                        : j * s_host.stride[0] + r;
            scales_off += owned ? sg[at] != sw[at] : sg[at] != 0xFFFFFFFFu;
            touched += owned;
        }
    }
    CHECK(codes_off == 0, "%s: %lld codes differ from the unfused ops' (or were written "
          "outside the experts' rows)", name, (long long)codes_off);
    CHECK(scales_off == 0, "%s: %lld scales differ from the unfused ops' (or were written "
          "outside the experts' rows)", name, (long long)scales_off);
    CHECK(!want_fused || touched > 0, "%s: no row was compared", name);
}

/* Tiles of every kind: swapped (<= 32 rows), one warpgroup (<= 64), whole 128-row tiles and
 * several per expert, empty experts, rows before the first and after the last expert. */
static void test_cuda_gemm_silu_quant_fused(void) {
    const int32_t edges[] = {0, 1, 31, 32, 33, 64, 65, 127, 128, 129, 300, 0, 7};
    int32_t counts[64];
    for (int e = 0; e < 64; e++)
        counts[e] = e < (int)(sizeof edges / sizeof edges[0]) ? edges[e]
                                                               : (int32_t)rng_int(0, 150);
    fused_case("E=64 I=1024 K=256 col-major", 64, 1024, 256, counts, 3, 5, MOE_SCALES_COL_MAJOR,
               0, 1);
    draw_counts(counts, 64, 700, COUNTS_SKEWED);
    fused_case("E=64 I=1024 K=128 skewed row-major ue8m0", 64, 1024, 128, counts, 0, 0,
               MOE_SCALES_ROW_MAJOR, 1, 1);
    if (!test_quick()) {
        draw_counts(counts, 18, 200, COUNTS_UNIFORM); /* 18 x 32 tiles: 4.4 waves, not split */
        fused_case("E=18 I=2048 K=2048", 18, 2048, 2048, counts, 0, 2, MOE_SCALES_COL_MAJOR, 0,
                   1);
    }
    /* decode-sized (4 experts x 4 n tiles): split tiles, so no fused kernel */
    int32_t few[4] = {1, 0, 2, 1};
    fused_case("E=4 I=256 decode", 4, 256, 256, few, 0, 0, MOE_SCALES_COL_MAJOR, 0, 0);
}

void suite_cuda_gemm(void) {
    RUN(test_cuda_gemm_fp8_contiguous);
    RUN(test_cuda_gemm_fp8_deepseek);
    RUN(test_cuda_gemm_fp8_masked);
    RUN(test_cuda_gemm_bf16);
    RUN(test_cuda_gemm_paired_tiles);
    RUN(test_cuda_gemm_wide_tiles);
    RUN(test_cuda_gemm_deterministic);
    RUN(test_cuda_gemm_bounds_written_just_before);
    RUN(test_cuda_gemm_alignment);
    RUN(test_cuda_gemm_silu_quant_fused);
}
