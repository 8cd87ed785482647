/* The CUDA MXFP8 and NVFP4 kernels against the CPU reference, byte for byte: the same
 * inputs go through both backends and every byte must agree. q and out are compared as
 * whole buffers (row gaps and rows no expert covers must stay poisoned on both), the
 * scales as the whole buffer (padding rows and columns 0, bytes after the last block
 * still poisoned), and dequantisation of the same bytes must give the same bytes too.
 * Cases: one expert (offsets NULL or [2]) and E in {3, 5, 17, 64, 257} with uneven
 * counts, empty experts and uncovered rows, E past one table chunk (1023, 1024, 2100),
 * offsets that decrease or leave [0, M], M in {0, 1, 33, 4096}, K from one block to
 * 7168, all three float dtypes, both MX rules, strided and misaligned tensors (the
 * kernels' scalar paths), NaN / Inf / saturation / zero / subnormal values, exact
 * rounding ties, global scales that vary per expert and reach the ends of f32, and
 * dequantisation of arbitrary bytes (NaN codes and NaN scales). Timings are moe-bench-ops'
 * (bench/ops_bench.c), not these tests'. */
#include <math.h>
#include <string.h>

#include "../src/common/swizzle.h"
#include "harness.h"
#include "quant_ref.h"


void suite_cuda_quant_block(void);

typedef enum { QB_MX, QB_NV } qb_fmt;

static const char *fmt_name(qb_fmt f) { return f == QB_MX ? "mxfp8" : "nvfp4"; }
static int64_t fmt_block(qb_fmt f) { return f == QB_MX ? 32 : 16; }

/* ---------------------------------------------------------------- buffers */

/* A 2-D tensor [n0, n1] with rows ld apart, starting shift elements into a poisoned
 * buffer with extra elements after it: the op's view and the whole buffer. */
typedef struct {
    moe_tensor view, full;
} buf;

static buf host_buf(moe_dtype dt, int64_t n0, int64_t n1, int64_t ld, int64_t shift,
                    int64_t extra) {
    buf b;
    int64_t n = (n0 > 0 ? (n0 - 1) * ld + n1 : 0) + shift + extra;
    b.full = test_tensor1(dt, n > 0 ? n : 1);
    b.view = moe_tensor_2d((char *)b.full.data + shift * (int64_t)moe_dtype_size(dt), dt, n0, n1);
    b.view.stride[0] = ld;
    return b;
}

static buf device_buf(const buf *h) {
    buf d;
    d.full = test_to_device(&h->full);
    d.view = h->view;
    d.view.data = (char *)d.full.data + ((char *)h->view.data - (char *)h->full.data);
    return d;
}

/* The device buffer's bytes in a fresh host buffer of the same layout. */
static buf fetch(const buf *d, const buf *like) {
    buf h = *like;
    h.full = test_tensor1(like->full.dtype, like->full.shape[0]);
    h.view.data = (char *)h.full.data + ((char *)like->view.data - (char *)like->full.data);
    test_to_host(&d->full, &h.full);
    return h;
}

static size_t buf_bytes(const buf *b) {
    return (size_t)b->full.shape[0] * moe_dtype_size(b->full.dtype);
}

/* Whole buffers equal; on a mismatch, the first differing byte in the message. */
static void check_same(const buf *cpu, const buf *gpu, const char *what, const char *part) {
    const uint8_t *a = cpu->full.data, *b = gpu->full.data;
    size_t n = buf_bytes(cpu), first = n, count = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            if (first == n) first = i;
            count++;
        }
    CHECK(count == 0,
          "%s: %s differs in %zu of %zu bytes, first at byte %zu: cpu 0x%02x gpu 0x%02x", what,
          part, count, n, first, first < n ? a[first] : 0, first < n ? b[first] : 0);
}

/* ---------------------------------------------------------------- inputs */

/* Offsets for e experts over rows lead..m-tail-1, uneven, about a quarter empty. */
static moe_tensor uneven_offsets(int e, int64_t m, int64_t lead, int64_t tail) {
    moe_tensor off = test_tensor1(MOE_DTYPE_I32, e + 1);
    double *w = test_alloc((size_t)e * sizeof *w), sum = 0.0;
    for (int i = 0; i < e; i++) {
        double u = rng_uniform(0.1, 1.0);
        w[i] = (e > 1 && rng_int(0, 3) == 0) ? 0.0 : u * u * u;
        sum += w[i];
    }
    if (sum == 0.0) w[e - 1] = sum = 1.0;
    int64_t covered = m - lead - tail, at = lead;
    double acc = 0.0;
    test_set_i32(&off, 0, 0, (int32_t)lead);
    for (int i = 0; i < e; i++) {
        acc += w[i];
        int64_t next =
            i == e - 1 ? lead + covered : lead + (int64_t)((double)covered * (acc / sum));
        at = next < at ? at : next;
        test_set_i32(&off, i + 1, 0, (int32_t)at);
    }
    return off;
}

/* Global scales that differ per expert: around 2688 / 2^top (what a caller picks for
 * values below 2^top) times 2^[-4, 4], or when far anywhere from the smallest subnormal
 * to the largest f32. */
static moe_tensor varied_gs(int e, int top, int far) {
    moe_tensor gs = test_tensor1(MOE_DTYPE_F32, e);
    for (int i = 0; i < e; i++) {
        double mant = rng_uniform(1.0, 2.0);
        double g = far ? ldexp(mant, (int)rng_int(-149, 127))
                       : 2688.0 / ldexp(1.0, top) * ldexp(mant, (int)rng_int(-4, 3));
        test_set(&gs, i, 0, 0, g);
    }
    return gs;
}

/* Stores raw bits at (r, c) of a float tensor (to plant NaNs with a sign or payload). */
static void set_bits(moe_tensor *t, int64_t r, int64_t c, uint32_t bits) {
    size_t es = moe_dtype_size(t->dtype);
    uint8_t *p = (uint8_t *)t->data + (size_t)(r * t->stride[0] + c) * es;
    if (es == 4) {
        memcpy(p, &bits, 4);
    } else {
        uint16_t h = (uint16_t)bits;
        memcpy(p, &h, 2);
    }
}

/* Edge values in the first rows of x, one kind per block along row r = kind % rows:
 * NaN of both signs and a signalling NaN (alone and among numbers), +-Inf, the dtype's
 * largest value, a block of zeros with a -0, values that saturate under OCP, subnormals,
 * a -0 among numbers. */
static void plant_edges(moe_tensor *x, int64_t blk) {
    moe_dtype dt = x->dtype;
    int f32 = dt == MOE_DTYPE_F32, f16 = dt == MOE_DTYPE_F16;
    uint32_t qnan = f32 ? 0x7fc00000u : f16 ? 0x7e00u : 0x7fc0u;
    uint32_t sign = f32 ? 0x80000000u : 0x8000u;
    uint32_t snan = f32 ? 0x7f812345u : f16 ? 0x7c01u : 0x7f81u;
    uint32_t inf = f32 ? 0x7f800000u : f16 ? 0x7c00u : 0x7f80u;
    double big = f32 ? 3.0e38 : f16 ? 65504.0 : 3.0e38;
    double tiny = f32 ? 1e-42 : f16 ? 3e-7 : 1e-40;
    int64_t rows = x->shape[0], blocks = x->shape[1] / blk;
    for (int64_t kind = 0; kind < 12 && rows > 0; kind++) {
        int64_t r = kind % rows, c0 = ((kind / rows) * 3 + kind % 3) % blocks * blk;
        switch (kind) {
        case 0: set_bits(x, r, c0 + 1, qnan); break;
        case 1: set_bits(x, r, c0 + 2, qnan | sign); break;
        case 2: set_bits(x, r, c0 + 3, snan | sign); break;
        case 3:
            for (int64_t c = c0; c < c0 + blk; c++) set_bits(x, r, c, c % 2 ? snan : qnan | sign);
            break;
        case 4: set_bits(x, r, c0, inf); break;
        case 5: set_bits(x, r, c0 + 5, inf | sign); break;
        case 6: test_set(x, r, c0 + 4, 0, -big); break;
        case 7:
            for (int64_t c = c0; c < c0 + blk; c++) test_set(x, r, c, 0, 0.0);
            set_bits(x, r, c0 + 1, sign);
            break;
        case 8: /* 1.8 * 2^k next to 1.0 * 2^k: saturates under OCP */
            for (int64_t c = c0; c < c0 + blk; c++) test_set(x, r, c, 0, c % 2 ? -1.0 : 1.0);
            test_set(x, r, c0 + 6, 0, 1.8);
            break;
        case 9:
            for (int64_t c = c0; c < c0 + blk; c++) test_set(x, r, c, 0, tiny * (c % 2 ? -1 : 3));
            break;
        case 10: set_bits(x, r, c0 + 7, sign); break;
        default: test_set(x, r, c0 + 2, 0, -tiny); break;
        }
    }
}

/* Exact rounding ties in every block of the first rows. MX: amax 448 * 2^k fixes the
 * exponent at k under both rules and the other values are midpoints between e4m3 codes
 * (normal and subnormal), so x / 2^k is a tie the conversion must send to even. NV
 * (with global scale 1): amax 6s for an e4m3 value s makes sf = s exactly, and the
 * other values are s times an e2m1 midpoint (0.25, 0.75, ..., 5), so x / sf is a tie,
 * with neighbours just above and below. All are exact in bf16, f16 and f32. */
static void plant_ties(moe_tensor *x, qb_fmt fmt) {
    static const double e4m3_mid[] = {1.0625, 1.1875, 17.0, 0.75 * 0x1p-8, 3 * 0x1p-10,
                                      0x1p-10, 232.0, 0.3125, 9.5, 2.375, 120.0};
    static const double e2m1_mid[] = {0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0};
    /* significands 1.75 and 1.875 are where y * (1 / sf) alone would miss a tie */
    static const double sf[] = {3.0,   1.875, 7.0,         0.375, 15.0,           240.0,
                                448.0, 13.0,  0.029296875, 3.5,   0.013671875, 0.005859375};
    int64_t blk = fmt_block(fmt), blocks = x->shape[1] / blk;
    int64_t rows = x->shape[0] < 8 ? x->shape[0] : 8;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < blocks; b++) {
            int64_t c0 = b * blk, n = r * blocks + b;
            if (fmt == QB_MX) {
                double scale = ldexp(1.0, (int)(n % 7) - 3);
                test_set(x, r, c0, 0, 448.0 * scale);
                for (int64_t i = 1; i < blk; i++)
                    test_set(x, r, c0 + i, 0, e4m3_mid[(n + i) % 11] * scale * (i % 2 ? -1 : 1));
            } else {
                double s = sf[n % 12];
                test_set(x, r, c0, 0, 6.0 * s);
                for (int64_t i = 1; i < blk; i++) {
                    float v = (float)(e2m1_mid[(n + i) % 7] * s * (i % 4 < 2 ? 1 : -1));
                    /* f32 holds the neighbours one ulp away; narrower dtypes 2^-7 away */
                    if (x->dtype == MOE_DTYPE_F32)
                        v = i % 3 == 0 ? v : nextafterf(v, i % 3 == 1 ? INFINITY : -INFINITY);
                    else
                        v *= i % 3 == 0 ? 1.0f : i % 3 == 1 ? 1 + 0x1p-7f : 1 - 0x1p-7f;
                    test_set(x, r, c0 + i, 0, v);
                }
            }
        }
}

/* ---------------------------------------------------------------- one case */

typedef struct {
    qb_fmt fmt;
    moe_mx_rule rule;
    moe_dtype dt, out_dt;
    int experts; /* 0: offsets NULL */
    int64_t m, k;
    int64_t lead, tail;   /* rows before the first and after the last expert */
    int64_t x_pad, q_pad, out_pad; /* row strides past the row */
    int64_t shift;        /* x, q, out and scales this many elements into their buffers */
    int lo, hi;           /* x magnitudes 2^[lo, hi] per block */
    int edges;            /* plant edge values */
    int far_gs;           /* global scales anywhere in [2^-100, 2^100] */
    double gs_fixed;      /* every global scale this, or 0 for varied ones */
    int ties;             /* plant exact rounding ties */
    const int32_t *raw_offsets; /* offsets as given (may make no sense), or NULL */
} qb_case;

/* Bytes of the scale buffer the experts' blocks cover, from offsets as the CPU reads
 * them (running maximum clamped to [0, M]). */
static int64_t blocks_end(const moe_tensor *off, int experts, int64_t m, int64_t cols) {
    moe_expert_block b = {0, 0, 0};
    for (int e = 0; e < experts; e++)
        b = moe_next_expert_block(b, off ? (const int32_t *)off->data : NULL, e, m);
    return (b.block_row + moe_swizzle_rows(b.rows)) * cols;
}

static moe_status quant(moe_context *ctx, const qb_case *c, const moe_tensor *x,
                        const moe_tensor *off, const moe_tensor *gs, moe_tensor *q,
                        moe_tensor *s) {
    if (c->fmt == QB_MX) return moe_quant_mxfp8(ctx, x, off, c->rule, q, s, NULL);
    return moe_quant_nvfp4(ctx, x, off, gs, q, s, NULL);
}

static moe_status dequant(moe_context *ctx, const qb_case *c, const moe_tensor *q,
                          const moe_tensor *s, const moe_tensor *off, const moe_tensor *gs,
                          moe_tensor *out) {
    if (c->fmt == QB_MX) return moe_dequant_mxfp8(ctx, q, s, off, out, NULL);
    return moe_dequant_nvfp4(ctx, q, s, off, gs, out, NULL);
}

/* The case's tensors on both sides. */
typedef struct {
    buf x, q, s, out;
    moe_tensor off, gs;
    int has_off;
    int64_t end; /* scale bytes the blocks cover */
} qb_side;

static void make_case(const qb_case *c, qb_side *h) {
    int64_t blk = fmt_block(c->fmt), cols = moe_swizzle_cols(c->k / blk);
    int experts = c->experts ? c->experts : 1;
    h->x = host_buf(c->dt, c->m, c->k, c->k + c->x_pad, c->shift, 3);
    ref_fill(&h->x.view, blk, c->lo, c->hi);
    if (c->edges) plant_edges(&h->x.view, blk);
    h->has_off = c->experts > 0;
    if (c->raw_offsets) {
        h->off = test_tensor1(MOE_DTYPE_I32, c->experts + 1);
        for (int e = 0; e <= c->experts; e++) test_set_i32(&h->off, e, 0, c->raw_offsets[e]);
    } else if (h->has_off) {
        h->off = uneven_offsets(c->experts, c->m, c->lead, c->tail);
    }
    h->gs = varied_gs(experts, c->hi + 2, c->far_gs);
    for (int e = 0; e < experts && c->gs_fixed != 0.0; e++) test_set(&h->gs, e, 0, 0, c->gs_fixed);
    if (c->ties) plant_ties(&h->x.view, c->fmt);
    int64_t qk = c->fmt == QB_MX ? c->k : c->k / 2;
    moe_dtype qd = c->fmt == QB_MX ? MOE_DTYPE_E4M3 : MOE_DTYPE_E2M1X2;
    h->q = host_buf(qd, c->m, qk, qk + c->q_pad, c->shift, 5);
    int64_t rows = moe_swizzled_scale_rows(c->m, experts) + 3; /* 3 rows stay unwritten */
    moe_dtype sd = c->fmt == QB_MX ? MOE_DTYPE_E8M0 : MOE_DTYPE_E4M3;
    h->s = host_buf(sd, rows, cols, cols, c->shift, 0);
    h->out = host_buf(c->out_dt, c->m, c->k, c->k + c->out_pad, c->shift, 3);
    h->end = blocks_end(h->has_off ? &h->off : NULL, experts, c->m, cols);
}

/* Quantises and dequantises on both backends from the same inputs; every byte equal. */
static void run_compare(const qb_case *c, const char *what) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    qb_side h;
    make_case(c, &h);
    buf dx = device_buf(&h.x), dq = device_buf(&h.q), ds = device_buf(&h.s),
        dout = device_buf(&h.out);
    moe_tensor doff = h.has_off ? test_to_device(&h.off) : h.off, dgs = test_to_device(&h.gs);
    const moe_tensor *hoff = h.has_off ? &h.off : NULL, *goff = h.has_off ? &doff : NULL;

    CHECK_OK(quant(test_cpu(), c, &h.x.view, hoff, &h.gs, &h.q.view, &h.s.view));
    CHECK_OK(quant(gpu, c, &dx.view, goff, &dgs, &dq.view, &ds.view));
    buf gq = fetch(&dq, &h.q), gsc = fetch(&ds, &h.s);
    check_same(&h.q, &gq, what, "q");
    check_same(&h.s, &gsc, what, "scales");
    /* explicit: nothing after the last block (the CPU never writes there either) */
    const uint8_t *sb = (const uint8_t *)gsc.view.data;
    int64_t total = h.s.view.shape[0] * h.s.view.shape[1], written = 0;
    for (int64_t i = h.end; i < total; i++) written += sb[i] != 0xff;
    CHECK(written == 0, "%s: %lld scale bytes after the last block (byte %lld) written", what,
          (long long)written, (long long)h.end);

    CHECK_OK(dequant(test_cpu(), c, &h.q.view, &h.s.view, hoff, &h.gs, &h.out.view));
    CHECK_OK(dequant(gpu, c, &dq.view, &ds.view, goff, &dgs, &dout.view));
    buf gout = fetch(&dout, &h.out);
    check_same(&h.out, &gout, what, "dequantised out");
}

static void case_name(char *s, size_t n, const qb_case *c, const char *tag) {
    snprintf(s, n, "%s %s %s E=%d M=%lld K=%lld %s out %s", tag, fmt_name(c->fmt),
             moe_dtype_name(c->dt), c->experts, (long long)c->m, (long long)c->k,
             c->fmt == QB_MX ? (c->rule == MOE_MX_RULE_CEIL ? "ceil" : "ocp") : "",
             moe_dtype_name(c->out_dt));
}

/* ---------------------------------------------------------------- tests */

/* The matrix: experts, rows, K, dtypes, rules, strides and uncovered rows. */
static void test_cuda_block_matrix(void) {
    static const struct {
        int experts;
        int64_t m, k_mx, k_nv, lead, tail, x_pad, q_pad, out_pad;
        int dt; /* index into REF_FLOAT_DTYPES */
        int out_dt;
    } cases[] = {
        {0, 1, 32, 16, 0, 0, 0, 0, 0, 2, 0},         /* one row, one block, offsets NULL */
        {1, 1, 96, 48, 0, 0, 0, 0, 0, 0, 2},         /* offsets [2] */
        {3, 33, 96, 48, 2, 3, 8, 16, 8, 0, 1},       /* uncovered rows, strided */
        {5, 33, 7168, 7168, 0, 0, 0, 0, 0, 1, 2},    /* K = 7168 */
        {17, 4096, 7168, 7168, 1, 0, 0, 0, 0, 2, 2}, /* the production shape */
        {64, 4096, 96, 48, 0, 7, 8, 16, 8, 0, 0},    /* many experts, strided */
        {257, 4096, 32, 16, 3, 0, 0, 0, 0, 2, 1},    /* E not a multiple of 4 or 16, 1 block */
        {257, 33, 96, 48, 0, 0, 24, 8, 0, 1, 0},     /* most experts empty */
        {5, 0, 96, 48, 0, 0, 0, 0, 0, 2, 2},         /* M = 0 */
        {0, 0, 64, 32, 0, 0, 0, 0, 0, 0, 0},         /* M = 0, offsets NULL */
        {0, 4096, 224, 112, 0, 0, 0, 0, 0, 1, 0},    /* one expert, 7 blocks a row */
    };
    for (int f = 0; f < 2; f++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            qb_case c = {0};
            c.fmt = (qb_fmt)f;
            c.rule = (moe_mx_rule)(i % 2);
            c.dt = REF_FLOAT_DTYPES[cases[i].dt];
            c.out_dt = REF_FLOAT_DTYPES[cases[i].out_dt];
            c.experts = cases[i].experts;
            c.m = cases[i].m;
            c.k = f == QB_MX ? cases[i].k_mx : cases[i].k_nv;
            c.lead = cases[i].lead;
            c.tail = cases[i].tail;
            c.x_pad = cases[i].x_pad;
            c.q_pad = cases[i].q_pad;
            c.out_pad = cases[i].out_pad;
            int f16 = c.dt == MOE_DTYPE_F16 || c.out_dt == MOE_DTYPE_F16;
            c.lo = f == QB_MX ? (f16 ? -14 : -100) : -8;
            c.hi = f == QB_MX ? (f16 ? 10 : 100) : 4;
            char what[160];
            case_name(what, sizeof what, &c, "matrix");
            run_compare(&c, what);
        }
}

/* Both MX rules on every dtype over the same shapes (the rule only moves exponents). */
static void test_cuda_block_rules(void) {
    for (int d = 0; d < 3; d++)
        for (int rule = 0; rule < 2; rule++) {
            qb_case c = {.fmt = QB_MX, .rule = (moe_mx_rule)rule, .dt = REF_FLOAT_DTYPES[d],
                         .out_dt = REF_FLOAT_DTYPES[(d + 1) % 3], .experts = 5, .m = 300,
                         .k = 96, .lo = -20, .hi = 10};
            char what[160];
            case_name(what, sizeof what, &c, "rules");
            run_compare(&c, what);
        }
}

/* NaN (both signs, signalling), Inf, the largest values, zeros with -0, saturation,
 * subnormals: all dtypes, both formats, both rules. */
static void test_cuda_block_edges(void) {
    for (int f = 0; f < 2; f++)
        for (int d = 0; d < 3; d++)
            for (int rule = 0; rule < 2; rule++) {
                if (f == QB_NV && rule) continue;
                qb_case c = {.fmt = (qb_fmt)f, .rule = (moe_mx_rule)rule,
                             .dt = REF_FLOAT_DTYPES[d], .out_dt = REF_FLOAT_DTYPES[2 - d],
                             .experts = 3, .m = 40, .k = f == QB_MX ? 128 : 64, .lo = -6,
                             .hi = 2, .edges = 1};
                char what[160];
                case_name(what, sizeof what, &c, "edges");
                run_compare(&c, what);
            }
}

/* Tensors the kernels cannot read or write 16 bytes at a time: x, q, out and the scales
 * one element into their buffers, odd row strides. */
static void test_cuda_block_unaligned(void) {
    for (int f = 0; f < 2; f++)
        for (int d = 0; d < 3; d++) {
            qb_case c = {.fmt = (qb_fmt)f, .rule = MOE_MX_RULE_CEIL, .dt = REF_FLOAT_DTYPES[d],
                         .out_dt = REF_FLOAT_DTYPES[d], .experts = 4, .m = 70,
                         .k = f == QB_MX ? 160 : 80, .lead = 1, .tail = 2, .x_pad = 1,
                         .q_pad = 3, .out_pad = 1, .shift = 1, .lo = -8, .hi = 4};
            char what[160];
            case_name(what, sizeof what, &c, "unaligned");
            run_compare(&c, what);
            c.x_pad = c.q_pad = c.out_pad = 0; /* only the base pointers off */
            case_name(what, sizeof what, &c, "shifted");
            run_compare(&c, what);
        }
}

/* More experts than one shared-memory table holds (1023): the chunked scans. */
static void test_cuda_block_many_experts(void) {
    static const int experts[] = {1023, 1024, 2100};
    for (int f = 0; f < 2; f++)
        for (size_t i = 0; i < sizeof experts / sizeof experts[0]; i++) {
            qb_case c = {.fmt = (qb_fmt)f, .rule = MOE_MX_RULE_OCP, .dt = MOE_DTYPE_BF16,
                         .out_dt = MOE_DTYPE_F32, .experts = experts[i], .m = 4096,
                         .k = f == QB_MX ? 64 : 32, .lead = 5, .tail = 9, .lo = -8, .hi = 4};
            char what[160];
            case_name(what, sizeof what, &c, "many experts");
            run_compare(&c, what);
        }
}

/* Offsets that decrease or leave [0, M]: read as their running maximum clamped to
 * [0, M], like the CPU; nothing outside the blocks written. */
static void test_cuda_block_bad_offsets(void) {
    static const int32_t a[] = {5, 3, 400, -2, 150, 150, 90, 700};      /* M = 200, E = 7 */
    static const int32_t b[] = {-50, 100, 100};                          /* M = 80, E = 2 */
    static const int32_t c3[] = {70, 80, 90, 100};                       /* M = 60, E = 3 */
    static const int32_t d[] = {0, 1, 1, 1, 1, 2, 2, 200, 199, 198, 300}; /* M = 250, E = 10 */
    static const struct {
        const int32_t *off;
        int experts;
        int64_t m;
    } cases[] = {{a, 7, 200}, {b, 2, 80}, {c3, 3, 60}, {d, 10, 250}};
    for (int f = 0; f < 2; f++)
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            qb_case c = {.fmt = (qb_fmt)f, .rule = MOE_MX_RULE_CEIL, .dt = MOE_DTYPE_F16,
                         .out_dt = MOE_DTYPE_BF16, .experts = cases[i].experts, .m = cases[i].m,
                         .k = f == QB_MX ? 96 : 48, .lo = -8, .hi = 4,
                         .raw_offsets = cases[i].off};
            char what[160];
            case_name(what, sizeof what, &c, "bad offsets");
            run_compare(&c, what);
        }
}

/* NVFP4 global scales anywhere in f32, subnormal ones too (outside [2^-60, 2^60] the
 * dequant kernel divides per element), with wide input magnitudes. */
static void test_cuda_nvfp4_far_scales(void) {
    for (int d = 0; d < 3; d++) {
        qb_case c = {.fmt = QB_NV, .dt = REF_FLOAT_DTYPES[d], .out_dt = REF_FLOAT_DTYPES[d],
                     .experts = 40, .m = 600, .k = 64, .lo = d == 1 ? -14 : -60,
                     .hi = d == 1 ? 10 : 60, .far_gs = 1};
        char what[160];
        case_name(what, sizeof what, &c, "far scales");
        run_compare(&c, what);
    }
}

/* Exact ties of the e4m3 and e2m1 roundings (see plant_ties), every dtype. */
static void test_cuda_block_ties(void) {
    for (int f = 0; f < 2; f++)
        for (int d = 0; d < 3; d++) {
            qb_case c = {.fmt = (qb_fmt)f, .rule = (moe_mx_rule)(d % 2), .dt = REF_FLOAT_DTYPES[d],
                         .out_dt = REF_FLOAT_DTYPES[d], .experts = 2, .m = 16,
                         .k = f == QB_MX ? 32 * 11 : 16 * 12, .lo = -4, .hi = 4,
                         .gs_fixed = 1.0, .ties = 1};
            char what[160];
            case_name(what, sizeof what, &c, "ties");
            run_compare(&c, what);
        }
}

/* Dequantisation of arbitrary bytes: codes and scales anywhere, NaN ones included (an
 * MX block never has a NaN code and a NaN scale together: which of the two NaNs the
 * CPU's product keeps is the host compiler's choice). */
static void test_cuda_block_dequant_bytes(void) {
    moe_context *gpu = test_gpu();
    if (!gpu) return;
    for (int f = 0; f < 2; f++)
        for (int d = 0; d < 3; d++) {
            qb_case c = {.fmt = (qb_fmt)f, .dt = REF_FLOAT_DTYPES[d],
                         .out_dt = REF_FLOAT_DTYPES[d], .experts = 6, .m = 500,
                         .k = f == QB_MX ? 256 : 128, .lead = 3, .tail = 4, .lo = 0, .hi = 0};
            qb_side h;
            make_case(&c, &h);
            uint8_t *q = h.q.full.data, *s = h.s.full.data;
            for (size_t i = 0; i < buf_bytes(&h.q); i++) q[i] = (uint8_t)rng_u64();
            for (size_t i = 0; i < buf_bytes(&h.s); i++) s[i] = (uint8_t)rng_u64();
            int64_t blk = fmt_block(c.fmt), cols = h.s.view.shape[1], nan_scales = 0;
            moe_expert_block b = {0, 0, 0};
            for (int e = 0; e < c.experts && f == QB_MX; e++) {
                b = moe_next_expert_block(b, (const int32_t *)h.off.data, e, c.m);
                for (int64_t m = 0; m < b.rows; m++)
                    for (int64_t k = 0; k < c.k / blk; k++) {
                        uint8_t *sc = (uint8_t *)h.s.view.data +
                                      moe_swizzle_index(b.block_row, m, k, cols);
                        if (rng_int(0, 40) == 0) *sc = 0xff;
                        if (*sc != 0xff) continue;
                        nan_scales++;
                        uint8_t *row = (uint8_t *)h.q.view.data +
                                       (b.row_begin + m) * h.q.view.stride[0];
                        for (int64_t i = k * blk; i < (k + 1) * blk; i++)
                            if ((row[i] & 0x7f) == 0x7f) row[i] = 0x3c;
                    }
            }
            buf dq = device_buf(&h.q), ds = device_buf(&h.s), dout = device_buf(&h.out);
            moe_tensor doff = test_to_device(&h.off), dgs = test_to_device(&h.gs);
            CHECK_OK(dequant(test_cpu(), &c, &h.q.view, &h.s.view, &h.off, &h.gs, &h.out.view));
            CHECK_OK(dequant(gpu, &c, &dq.view, &ds.view, &doff, &dgs, &dout.view));
            buf gout = fetch(&dout, &h.out);
            char what[160];
            case_name(what, sizeof what, &c, "dequant bytes");
            check_same(&h.out, &gout, what, "out");
            CHECK(f == QB_NV || nan_scales > 0, "%s: some NaN scales were tested", what);
        }
}

void suite_cuda_quant_block(void) {
    RUN(test_cuda_block_matrix);
    RUN(test_cuda_block_rules);
    RUN(test_cuda_block_edges);
    RUN(test_cuda_block_unaligned);
    RUN(test_cuda_block_many_experts);
    RUN(test_cuda_block_bad_offsets);
    RUN(test_cuda_nvfp4_far_scales);
    RUN(test_cuda_block_ties);
    RUN(test_cuda_block_dequant_bytes);
}
