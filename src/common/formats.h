/* Number formats shared by the CPU backend (C11) and the CUDA kernels (CUDA C): the
 * conversions SPEC.md defines, written once so both backends round identically. */
#ifndef MOE_COMMON_FORMATS_H
#define MOE_COMMON_FORMATS_H

#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define MOE_HD static __host__ __device__ __forceinline__
#else
#define MOE_HD static inline
#endif

#define MOE_E4M3_MAX 448.0f
#define MOE_E2M1_MAX 6.0f

MOE_HD uint32_t moe_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

MOE_HD float moe_bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

MOE_HD int moe_isnan(float f) { return (moe_f32_bits(f) & 0x7fffffffu) > 0x7f800000u; }

/* ---------------------------------------------------------------- bf16 */

MOE_HD float moe_bf16_to_f32(uint16_t h) { return moe_bits_f32((uint32_t)h << 16); }

/* Round to nearest even; NaN stays a (quiet) NaN. */
MOE_HD uint16_t moe_f32_to_bf16(float f) {
    uint32_t u = moe_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ---------------------------------------------------------------- f16 */

MOE_HD float moe_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1fu) return moe_bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return moe_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

/* Round to nearest even, overflow to infinity, NaN stays NaN. */
MOE_HD uint16_t moe_f32_to_f16(float f) {
    uint32_t u = moe_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (a < 0x38800000u) {
        /* below 2^-14: subnormal f16, value = n * 2^-24, n = RNE(|f| * 2^24) */
        int32_t e = (int32_t)(a >> 23);
        if (e < 102) return sign; /* < 2^-25: rounds to zero (ties at 2^-25 go to 0) */
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = (uint32_t)(126 - e); /* 14..24 */
        uint32_t n = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (n & 1u))) n++;
        return (uint16_t)(sign | n);
    }
    /* normal: rebias exponent, round 23 -> 10 mantissa bits */
    uint32_t r = a - 0x38000000u; /* exponent bias 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

/* ---------------------------------------------------------------- fp8 e4m3 (E4M3FN) */

MOE_HD float moe_e4m3_to_f32(uint8_t c) {
    uint32_t exp = (c >> 3) & 0xfu, man = c & 7u;
    float v;
    if ((c & 0x7fu) == 0x7fu) return moe_bits_f32(0x7fc00000u | ((uint32_t)(c & 0x80u) << 24));
    if (exp == 0)
        v = (float)man * 0.001953125f; /* man * 2^-9 */
    else
        v = moe_bits_f32(((exp + 120u) << 23) | (man << 20));
    return (c & 0x80u) ? -v : v;
}

/* Round to nearest even, saturate to +-448 (infinities too), NaN -> NaN (0x7f/0xff). */
MOE_HD uint8_t moe_f32_to_e4m3(float f) {
    uint32_t u = moe_f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7fu);
    if (a >= 0x43e00000u) return (uint8_t)(sign | 0x7eu); /* >= 448 */
    if (a < 0x3c800000u) {
        /* below 2^-6: subnormal e4m3 n * 2^-9, n = RNE(|f| * 2^9) in 0..8 (8 = 2^-6) */
        int32_t e = (int32_t)(a >> 23);
        if (e < 117) return sign; /* < 2^-10 (half of 2^-9): rounds to zero */
        uint32_t m = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = (uint32_t)(141 - e); /* 21..24: |f| * 2^9 = m * 2^(e - 141) */
        uint32_t n = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (n & 1u))) n++;
        return (uint8_t)(sign | n);
    }
    /* normal: exponent -6..8 -> biased 1..15, round 23 -> 3 mantissa bits */
    uint32_t r = a - (120u << 23);
    r += 0x7ffffu + ((r >> 20) & 1u);
    uint32_t code = r >> 20;
    if (code > 0x7eu) code = 0x7eu; /* 448 < |f| rounding up to 480 saturates */
    return (uint8_t)(sign | code);
}

/* ---------------------------------------------------------------- e8m0 (UE8M0) */

MOE_HD float moe_e8m0_to_f32(uint8_t b) {
    if (b == 0xffu) return moe_bits_f32(0x7fc00000u);
    if (b == 0) return moe_bits_f32(0x00400000u); /* 2^-127, an f32 subnormal */
    return moe_bits_f32((uint32_t)b << 23);
}

/* 2^e as f32 for e in [-127, 127]. */
MOE_HD float moe_exp2i(int32_t e) { return moe_e8m0_to_f32((uint8_t)(e + 127)); }

/* ceil(log2(x)) for finite x > 0 that is a normal f32: the exponent of the smallest power
 * of two >= x. */
MOE_HD int32_t moe_ceil_log2(float x) {
    uint32_t u = moe_f32_bits(x);
    int32_t e = (int32_t)((u >> 23) & 0xffu) - 127;
    return (u & 0x7fffffu) ? e + 1 : e;
}

/* floor(log2(x)) for finite normal x > 0. */
MOE_HD int32_t moe_floor_log2(float x) {
    return (int32_t)((moe_f32_bits(x) >> 23) & 0xffu) - 127;
}

/* ---------------------------------------------------------------- fp4 e2m1 */

MOE_HD float moe_e2m1_to_f32(uint8_t nibble) {
    const float mag[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float v = mag[nibble & 7u];
    return (nibble & 8u) ? -v : v;
}

/* Round to nearest even (ties to the even code), saturate to +-6. e2m1 has no NaN:
 * NaN encodes as +6, the choice that keeps a poisoned value visible. */
MOE_HD uint8_t moe_f32_to_e2m1(float f) {
    if (moe_isnan(f)) return 7u;
    uint8_t sign = (moe_f32_bits(f) >> 31) ? 8u : 0u;
    float a = f < 0.0f ? -f : f;
    uint8_t code;
    if (a <= 0.25f) code = 0;
    else if (a < 0.75f) code = 1;
    else if (a <= 1.25f) code = 2;
    else if (a < 1.75f) code = 3;
    else if (a <= 2.5f) code = 4;
    else if (a < 3.5f) code = 5;
    else if (a <= 5.0f) code = 6;
    else code = 7;
    return (uint8_t)(sign | code);
}

#endif /* MOE_COMMON_FORMATS_H */
