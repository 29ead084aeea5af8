#ifndef DEBERTA_CGEMM_INTERNAL_H
#define DEBERTA_CGEMM_INTERNAL_H
/* Private to CGemm: constants and the scalar GELU shared by the scalar and the AVX2 translation units. */
#include "cgemm.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Every multiply-add that is meant to be fused is written as fmaf / _mm256_fmadd_ps; nothing else may be
 * contracted, or the scalar and AVX2 paths would round differently. */
#pragma STDC FP_CONTRACT OFF

#define CG_NR CG_PANEL /* output columns per panel = register tile width (3 ymm) */
#define CG_MR 4        /* rows per register tile */

/* ---------------------------------------------------------------- GELU constants
 * Q(a) = exp(a²/2) · erfc(a/√2) / 2.
 *   a < 2:  Q ≈ Σ S[i] · (a - 1)^i
 *   a >= 2: Q ≈ (1/a) · Σ L[i] · (1/a - 5/16)^i
 * Coefficients: relative minimax fits (iteratively reweighted least squares on a dense grid, rounded to
 * f32 one coefficient at a time from the highest degree, refitting the rest), made for this file. */
#define CG_GELU_AMAX 14.5f  /* a is clamped here: Φ(-14.5) · 14.5 < 2^-150, so gelu rounds to -0 below */
#define CG_GELU_SPLIT 2.0f
#define CG_GELU_V0 0.3125f
#define CG_GELU_DEG 10

static const float cg_gelu_small[CG_GELU_DEG + 1] = {
    0x1.0bdb2ep-2f, -0x1.19524ep-3f, 0x1.fcc818p-5f, -0x1.9aff12p-6f, 0x1.2f48bep-7f, -0x1.9f4426p-9f,
    0x1.0a087cp-10f, -0x1.3cfd2ap-12f, 0x1.70b3b4p-14f, -0x1.ea5cd0p-16f, 0x1.ec6282p-18f,
};
static const float cg_gelu_large[CG_GELU_DEG + 1] = {
    0x1.78c64cp-2f, -0x1.4b1808p-3f, -0x1.59679cp-4f, 0x1.29df30p-2f, -0x1.562fc0p-2f, 0x1.411a0cp-4f,
    0x1.0d9938p-1f, -0x1.64ee1ap+0f, 0x1.29fa5ep+1f, 0x1.e64066p-3f, -0x1.41f2f8p+3f,
};
/* exp(r) ≈ 1 + (r + r² · Σ E[i] r^i), |r| <= 0.35 (relative fitting error 1.2e-9 with these f32 values). */
#define CG_EXP_DEG 5
static const float cg_exp_poly[CG_EXP_DEG + 1] = {
    0x1.000000p-1f, 0x1.555554p-3f, 0x1.555486p-5f, 0x1.11127ep-7f, 0x1.6d943ap-10f, 0x1.9f02a8p-13f,
};
#define CG_LOG2E 0x1.715476p+0f
#define CG_LN2_HI 0x1.62e400p-1f /* 17 significant bits: n · LN2_HI is exact for |n| < 2^7 · 2 */
#define CG_LN2_LO 0x1.7f7d1cp-20f

static inline float cg_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* 2^64 · exp(-a²/2) · Q(a) for a = min(|x|, AMAX), i.e. 2^64 · Φ(-|x|), operation for operation what the AVX2
 * version (gemm_avx2.c: cg_tail8) does per lane. The 2^64 keeps it a normal float down to a = AMAX. */
static inline float cg_tail_ref(float x) {
    float ax = fabsf(x);
    float a = ax < CG_GELU_AMAX ? ax : CG_GELU_AMAX; /* NaN -> AMAX, like _mm256_min_ps(ax, AMAX) */
    const float *c;
    float t, f, d;
    if (a < CG_GELU_SPLIT) {
        t = a - 1.0f;
        f = 1.0f;
        d = 0.0f;
        c = cg_gelu_small;
    } else {
        float v = 1.0f / a;
        t = v - CG_GELU_V0;
        f = v;
        d = v * fmaf(-v, a, 1.0f); /* 1/a - v, up to a rounding of this tiny correction */
        c = cg_gelu_large;
    }
    float g = c[CG_GELU_DEG];
    for (int i = CG_GELU_DEG - 1; i >= 0; i--) g = fmaf(g, t, c[i]);
    float q = fmaf(f, g, d * g); /* (f + d) · g, one rounding: Q(a) */
    /* exp(-a²/2) = 2^n · (1 + y) */
    float h = a * a;
    float l = fmaf(a, a, -h); /* a² = h + l exactly */
    float s = -0.5f * h;
    float n = nearbyintf(s * CG_LOG2E);
    float r = fmaf(n, -CG_LN2_HI, s);
    r = fmaf(n, -CG_LN2_LO, r);
    r = fmaf(l, -0.5f, r);
    float p = cg_exp_poly[CG_EXP_DEG];
    for (int i = CG_EXP_DEG - 1; i >= 0; i--) p = fmaf(p, r, cg_exp_poly[i]);
    float y = fmaf(p, r * r, r);
    int32_t ni = (int32_t)n;
    float scale = cg_f32_from_bits((uint32_t)(ni + 127 + 64) << 23); /* 2^(n + 64), n >= -153 */
    float qs = q * scale;                                              /* exact */
    return fmaf(qs, y, qs);                                            /* qs · (1 + y), one rounding */
}

/* Φ(x) = Φ(-|x|) for x < 0 (or -0), 1 - Φ(-|x|) otherwise; 0 or 1 from |x| >= AMAX on, NaN for NaN. */
static inline float cg_phi_ref(float x) {
    if (x != x) return x;
    if (!(fabsf(x) < CG_GELU_AMAX)) return signbit(x) ? 0.0f : 1.0f;
    float t = cg_tail_ref(x) * 0x1p-64f;
    return signbit(x) ? t : 1.0f - t;
}

/* gelu(x) = x · Φ(x):
 *   x < 0 (or -0):  (x · 2^64 Φ(-|x|)) · 2^-64, x multiplying the scaled tail before the (exact) 2^-64 so that
 *                   results near the subnormal range round once;
 *   x >= 0:         x - x · Φ(-x), one fma;
 *   |x| >= AMAX or NaN: x · (x < 0 ? 0 : 1), so gelu(+inf) = +inf, gelu(-inf) = NaN, gelu(NaN) = NaN, and
 *                   gelu(x) = -0 for every x <= -AMAX. */
static inline float cg_gelu_ref(float x) {
    if (!(fabsf(x) < CG_GELU_AMAX)) return x * (signbit(x) ? 0.0f : 1.0f);
    float ts = cg_tail_ref(x);
    return signbit(x) ? (x * ts) * 0x1p-64f : fmaf(-x, ts * 0x1p-64f, x);
}

#if defined(__x86_64__)
void cg_gemm_packed_avx2(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *packed,
                         const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                         size_t n_begin, size_t n_end);
void cg_gelu_avx2(const float *x, float *y, size_t count);
double cg_fma_peak_loop_avx2(size_t iterations);
void cg_pack_panel_avx2(const float *w, size_t k, size_t ldw, float *dst);
void cg_gemm_packed_avx512(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *packed,
                           const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                           size_t n_begin, size_t n_end);
double cg_fma_peak_loop_avx512(size_t iterations);
void cg_gelu_avx512(const float *x, float *y, size_t count);
#endif

#endif
