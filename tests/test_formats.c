/* Number formats (src/common/formats.h) against their definitions computed in double:
 * every code of the 8-bit and 4-bit formats, and nearest-even rounding found by brute
 * force over the representable values. */
#include <math.h>
#include <string.h>

#include "../src/common/formats.h"
#include "harness.h"

/* ---------------------------------------------------------------- definitions in double */

static double e4m3_value(int code) {
    int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
    if ((code & 0x7f) == 0x7f) return NAN;
    double v = e == 0 ? m * ldexp(1.0, -9) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
    return s ? -v : v;
}

/* Nearest of a sorted table of non-negative magnitudes, ties to the even index; values
 * past the last saturate. Returns the index. */
static int nearest_even(const double *mag, int n, double a) {
    if (a >= mag[n - 1]) return n - 1;
    for (int i = 0; i + 1 < n; i++) {
        if (a > mag[i + 1]) continue;
        double lo = a - mag[i], hi = mag[i + 1] - a;
        if (lo < hi) return i;
        if (hi < lo) return i + 1;
        return (i % 2 == 0) ? i : i + 1;
    }
    return n - 1;
}

static double e4m3_mag[127];
static void init_e4m3_mag(void) {
    for (int c = 0; c < 127; c++) e4m3_mag[c] = e4m3_value(c);
}

static uint8_t ref_to_e4m3(float f) {
    if (isnan(f)) return (uint8_t)(signbit(f) ? 0xff : 0x7f);
    int idx = nearest_even(e4m3_mag, 127, fabs((double)f));
    return (uint8_t)((signbit(f) ? 0x80 : 0) | idx);
}

/* bf16/f16 reference: the two neighbours of f in the target format found in double. */
static uint16_t ref_round_16(float f, int man_bits, int min_exp, int max_exp, int exp_bias,
                             int is_bf16) {
    (void)exp_bias;
    double a = fabs((double)f);
    uint16_t sign = signbit(f) ? 0x8000 : 0;
    if (a == 0) return sign;
    /* quantum at a's binade (subnormals share the min exponent's quantum) */
    int e = (int)floor(log2(a));
    if (e < min_exp) e = min_exp;
    double q = ldexp(1.0, e - man_bits);
    double lo = floor(a / q) * q, hi = lo + q;
    double pick;
    if (a - lo < hi - a) pick = lo;
    else if (hi - a < a - lo) pick = hi;
    else pick = fmod(lo / q, 2.0) == 0.0 ? lo : hi;
    double maxv = (2.0 - ldexp(1.0, -man_bits)) * ldexp(1.0, max_exp);
    if (pick > maxv) {
        /* overflow: bf16 (from f32, always representable) never gets here; f16 -> inf */
        return (uint16_t)(sign | (is_bf16 ? 0x7f80 : 0x7c00));
    }
    /* encode pick */
    if (pick == 0) return sign;
    int pe = (int)floor(log2(pick));
    if (pe < min_exp) { /* subnormal */
        return (uint16_t)(sign | (uint16_t)(pick / ldexp(1.0, min_exp - man_bits)));
    }
    int bias = is_bf16 ? 127 : 15;
    uint32_t man = (uint32_t)((pick / ldexp(1.0, pe) - 1.0) * ldexp(1.0, man_bits));
    return (uint16_t)(sign | ((uint32_t)(pe + bias) << man_bits) | man);
}

static float random_float(void) {
    /* random sign/exponent/mantissa across the interesting range, plus exact ties */
    uint32_t bits = (uint32_t)rng_u64();
    int exp = (int)rng_int(80, 170);
    bits = (bits & 0x807fffffu) | ((uint32_t)exp << 23);
    return moe_bits_f32(bits);
}

/* ---------------------------------------------------------------- tests */

static void test_e4m3_decode_all_codes(void) {
    for (int c = 0; c < 256; c++) {
        double want = e4m3_value(c);
        float got = moe_e4m3_to_f32((uint8_t)c);
        if (isnan(want))
            CHECK(isnan(got), "code 0x%02x decodes to %g, want NaN", c, (double)got);
        else
            CHECK((double)got == want, "code 0x%02x decodes to %g, want %g", c, (double)got, want);
    }
}

static void test_e4m3_encode(void) {
    init_e4m3_mag();
    /* every code round-trips; every midpoint and its neighbours round as the definition */
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f) continue;
        float v = (float)e4m3_value(c);
        if (moe_f32_to_e4m3(v) != (uint8_t)c && !(v == 0 && (c & 0x7f) == 0)) bad++;
    }
    CHECK(bad == 0, "%d e4m3 codes do not round-trip", bad);
    bad = 0;
    for (int c = 0; c < 126; c++) {
        double mid = (e4m3_mag[c] + e4m3_mag[c + 1]) / 2;
        float f[3] = {(float)mid, nextafterf((float)mid, 0), nextafterf((float)mid, 1000)};
        for (int i = 0; i < 3; i++) {
            bad += moe_f32_to_e4m3(f[i]) != ref_to_e4m3(f[i]);
            bad += moe_f32_to_e4m3(-f[i]) != ref_to_e4m3(-f[i]);
        }
    }
    CHECK(bad == 0, "%d e4m3 midpoint roundings differ from nearest-even", bad);
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        float f = random_float();
        bad += moe_f32_to_e4m3(f) != ref_to_e4m3(f);
    }
    CHECK(bad == 0, "%d random e4m3 roundings differ", bad);
    CHECK(moe_f32_to_e4m3(448.0f) == 0x7e, "448 encodes as 0x7e");
    CHECK(moe_f32_to_e4m3(1e9f) == 0x7e && moe_f32_to_e4m3(-1e9f) == 0xfe, "saturates to 448");
    CHECK(moe_f32_to_e4m3(INFINITY) == 0x7e && moe_f32_to_e4m3(-INFINITY) == 0xfe,
          "infinity saturates to +-448");
    CHECK((moe_f32_to_e4m3(NAN) & 0x7f) == 0x7f, "NaN stays NaN");
    CHECK(moe_f32_to_e4m3(463.9f) == 0x7e, "just below 464 rounds to 448");
}

static void test_bf16_f16(void) {
    int bad_b = 0, bad_h = 0;
    for (int i = 0; i < 300000; i++) {
        float f = random_float();
        if (i % 7 == 0) f = moe_bits_f32((moe_f32_bits(f) & 0xffff0000u) | 0x8000u); /* bf16 tie */
        if (i % 11 == 0) f = moe_bits_f32((moe_f32_bits(f) & 0xffffe000u) | 0x1000u); /* f16 tie */
        bad_b += moe_f32_to_bf16(f) != ref_round_16(f, 7, -126, 127, 127, 1);
        if (fabsf(f) < 65520.0f)
            bad_h += moe_f32_to_f16(f) != ref_round_16(f, 10, -14, 15, 15, 0);
        else
            bad_h += (moe_f32_to_f16(f) & 0x7fff) != 0x7c00;
    }
    CHECK(bad_b == 0, "%d bf16 roundings differ from nearest-even", bad_b);
    CHECK(bad_h == 0, "%d f16 roundings differ from nearest-even", bad_h);
    int bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = moe_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        bad_rt += moe_f32_to_f16(f) != h;
        float g = moe_bf16_to_f32((uint16_t)h);
        if (!isnan(g)) bad_rt += moe_f32_to_bf16(g) != h;
    }
    CHECK(bad_rt == 0, "%d f16/bf16 codes do not round-trip", bad_rt);
    CHECK(moe_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "smallest f16 subnormal");
    CHECK(moe_f16_to_f32(0x7bff) == 65504.0f, "largest f16");
    CHECK(isnan(moe_bf16_to_f32(moe_f32_to_bf16(NAN))), "bf16 keeps NaN");
    CHECK(isnan(moe_f16_to_f32(moe_f32_to_f16(NAN))), "f16 keeps NaN");
}

static void test_e8m0(void) {
    for (int b = 0; b < 255; b++)
        CHECK(moe_e8m0_to_f32((uint8_t)b) == ldexpf(1.0f, b - 127), "e8m0 byte %d", b);
    CHECK(isnan(moe_e8m0_to_f32(0xff)), "e8m0 0xff is NaN");
    int bad = 0;
    for (int i = 0; i < 100000; i++) {
        float x = (float)rng_uniform(1e-30, 1e30) * (float)ldexp(1.0, (int)rng_int(-60, 0));
        if (!(x > 0) || x < 1.2e-38f) continue;
        bad += moe_ceil_log2(x) != (int)ceil(log2((double)x));
        bad += moe_floor_log2(x) != (int)floor(log2((double)x));
    }
    CHECK(bad == 0, "%d ceil/floor log2 mismatches", bad);
    CHECK(moe_ceil_log2(1.0f) == 0 && moe_ceil_log2(1.0000001f) == 1, "ceil_log2 at 1");
}

static void test_e2m1(void) {
    const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
    for (int c = 0; c < 16; c++) {
        double want = (c & 8) ? -mag[c & 7] : mag[c & 7];
        CHECK(moe_e2m1_to_f32((uint8_t)c) == (float)want, "e2m1 code %d", c);
    }
    int bad = 0;
    for (int i = 0; i < 7; i++) {
        double mid = (mag[i] + mag[i + 1]) / 2;
        float f[3] = {(float)mid, nextafterf((float)mid, 0), nextafterf((float)mid, 100)};
        for (int j = 0; j < 3; j++) {
            int want = nearest_even(mag, 8, f[j]);
            bad += moe_f32_to_e2m1(f[j]) != want;
            bad += moe_f32_to_e2m1(-f[j]) != (want | 8);
        }
    }
    for (int i = 0; i < 100000; i++) {
        float f = (float)rng_uniform(-8, 8);
        int want = nearest_even(mag, 8, fabs(f)) | (signbit(f) ? 8 : 0);
        bad += moe_f32_to_e2m1(f) != want;
    }
    CHECK(bad == 0, "%d e2m1 roundings differ from nearest-even", bad);
    CHECK(moe_f32_to_e2m1(100.0f) == 7 && moe_f32_to_e2m1(-INFINITY) == 15, "saturates to 6");
    CHECK(moe_f32_to_e2m1(NAN) == 7, "NaN encodes as +6 (documented)");
}

void suite_formats(void) {
    RUN(test_e4m3_decode_all_codes);
    RUN(test_e4m3_encode);
    RUN(test_bf16_f16);
    RUN(test_e8m0);
    RUN(test_e2m1);
}
