/* The FP8 kernels' (fp8_group.cuh) per-value arithmetic, written without branches and
 * shown equal to the CPU reference's: the quotient v / s with s's reciprocal computed
 * once per group, and a software e4m3 code of an f32. C and CUDA alike, so the test suite
 * holds them against moe_f32_to_e4m3 and a true division on the host. The kernels code
 * the quotient with the hardware (moe_e4m3x2, common.cuh); moe_e4m3_code is the
 * reference the GPU test holds that conversion against, on all 2^32 inputs. */
#ifndef MOE_CUDA_FP8_CODE_H
#define MOE_CUDA_FP8_CODE_H

#include <math.h>

#include "../common/formats.h"

/* One f32 product, rounded once, never fused with a neighbouring add. */
#if defined(__CUDA_ARCH__)
#define MOE_FP8_MUL(a, b) __fmul_rn((a), (b))
#else
#define MOE_FP8_MUL(a, b) ((a) * (b))
#endif

/* The byte moe_f32_to_e4m3(f) gives (RNE, saturating to +-448, NaN to sign | 0x7f), for
 * every f32: checked over all 2^32 inputs. moe_f32_to_e4m3's if-chains compile to
 * branches that diverge across a warp; here both roundings are computed and one is
 * selected.
 * - |f| >= 2^-6: moe_f32_to_e4m3's own normal rounding; clamping the code to 0x7e also
 *   covers |f| >= 448 and infinities (a rebased Inf is code 0x438).
 * - |f| < 2^-6: the code is n = RNE(|f| * 2^9) in 0..8. |f| * 512 is exact (a power of two
 *   scaling a value far from overflow and underflow), and adding 2^23 rounds it once to
 *   an integer, ties to even, because f32's spacing in [2^23, 2^24) is 1: the sum's bits
 *   minus those of 2^23 are n. (Contracting the two into an FMA changes nothing: the
 *   product is exact either way.) */
MOE_HD uint32_t moe_e4m3_code(float f) {
    uint32_t u = moe_f32_bits(f);
    uint32_t a = u & 0x7fffffffu;
    uint32_t r = a - (120u << 23); /* wraps for |f| < 2^-7: that result is not selected */
    r += 0x7ffffu + ((r >> 20) & 1u);
    uint32_t normal = r >> 20;
    normal = normal < 0x7eu ? normal : 0x7eu;
    uint32_t sub = moe_f32_bits(moe_bits_f32(a) * 512.0f + 8388608.0f) - 0x4b000000u;
    uint32_t code = a < 0x3c800000u ? sub : normal;
    code = a > 0x7f800000u ? 0x7fu : code;
    return ((u >> 24) & 0x80u) | code;
}

/* Scales whose quotients moe_e4m3_code_div computes: [2^-80, 2^80]. */
#define MOE_FP8_DIV_MIN 0x1p-80f
#define MOE_FP8_DIV_MAX 0x1p80f

/* A float whose e4m3 code is moe_f32_to_e4m3(v / s) (a correctly rounded f32 quotient)
 * for any v and a scale s in [MOE_FP8_DIV_MIN, MOE_FP8_DIV_MAX] with inv = RN(1 / s):
 * five f32 operations instead of a division each (the GPU's division recomputes 1/s
 * every time).
 * - q0 = RN(v * inv) is within 1.5 ulp of v / s (inv is off by at most 2^-24 relative).
 * - One correction q1 = RN(q0 + RN(v - s*q0) * inv) leaves an error below 1/2 ulp plus
 *   2^-22 ulp: q1 is a faithful rounding of v / s.
 * - With q1 faithful and inv within half an ulp of 1/s, Markstein's theorem makes
 *   r1 = v - s*q1 exact and q2 = RN(q1 + r1 * inv) = RN(v / s), without overflow or
 *   underflow: with s in range and |q0| in [2^-12, 2^10], v and the residuals are
 *   multiples of 2^-138 far below 2^128.
 * - The code needs the exact quotient only there: |q0| < 2^-12 puts v / s below 2^-10,
 *   code +-0 either way; |q0| > 2^10 puts it above 464, code +-448 either way; and
 *   zeros, infinities and NaN pass through v * inv as through v / s.
 * Checked against true divisions on the host (tests/test_cuda_quant.c). */
MOE_HD float moe_e4m3_quot_div(float v, float s, float inv) {
    float q0 = MOE_FP8_MUL(v, inv);
    float r0 = fmaf(-s, q0, v);
    float q1 = fmaf(r0, inv, q0);
    float r1 = fmaf(-s, q1, v);
    float q2 = fmaf(r1, inv, q1);
    uint32_t a = moe_f32_bits(q0) & 0x7fffffffu;
    /* 0x39800000 is 2^-12, 0x44800000 is 2^10 */
    return a - 0x39800000u <= 0x44800000u - 0x39800000u ? q2 : q0;
}

/* The code of that quotient: moe_f32_to_e4m3(v / s) for s in range. */
MOE_HD uint32_t moe_e4m3_code_div(float v, float s, float inv) {
    return moe_e4m3_code(moe_e4m3_quot_div(v, s, inv));
}

#endif /* MOE_CUDA_FP8_CODE_H */
