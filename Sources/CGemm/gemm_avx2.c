/* AVX2 + FMA kernels (x86-64 only). Compiled without -mavx2: every function carries a target attribute
 * and is only called after the run-time check in gemm.c. Results are bit-identical to the scalar
 * reference (include/cgemm.h): each output is one fma chain over k in increasing order, and the GELU
 * performs the scalar reference's operations lane by lane.
 *
 * Blocking (the Goto / BLIS scheme, with the weight side packed once at load time):
 *   for each K block of KC (<= CG_KC_MAX, balanced)      the packed panel slice 24 x KC is contiguous
 *     for each block of MC rows of X                      X[MC, KC] stays in L2 (read in place)
 *       for each 24-column panel of [n_begin, n_end)      the panel slice (KC x 96 bytes) stays in L1
 *         for each 4-row tile                             4 x 24 register tile, 12 ymm accumulators
 * The register tile: per k, 3 loads of packed W (24 floats, 32-byte aligned when `packed` is), 4 broadcasts
 * of X, 12 FMAs; 16 ymm registers in all (12 accumulators + 3 W + 1 broadcast). The k loop is inline
 * assembly (fixed allocation, no spills at any optimization level; see cg_kernel_4x24). Software prefetch:
 * the next tile's partial sums (at kernel entry) and, one line per 4 k steps, the next panel's slice.
 * Partial sums of a K block are stored in Y and reloaded by the next one; bias / residual enter as the
 * initial accumulator of the first block, GELU is applied to the tile after the last one. */
#include "gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

#define CG_AVX2 __attribute__((target("avx2,fma")))
#define CG_INLINE static inline __attribute__((always_inline))

#ifndef CG_KC_MAX
#define CG_KC_MAX 256 /* panel slice 24 x 256 x 4 = 24 KiB: L1 is 32-48 KiB on current x86 cores */
#endif
#ifndef CG_MC
#define CG_MC 192 /* X block 192 x 256 x 4 = 192 KiB in L2 */
#endif

/* ================================================================== GELU, 8 lanes */

/* 2^64 · Φ(-|x|) per lane; see cg_tail_ref in gemm_internal.h for the scalar twin (same operations, same
 * order). */
/* Q(a) per lane for lanes all below CG_GELU_SPLIT: the small polynomial in (a - 1). (The mixed form below gives
 * the same bits in such lanes: there f = 1 and d = 0, and fma(1, g, 0 · g) = g.) */
CG_AVX2 CG_INLINE __m256 cg_q8_small(__m256 a) {
    __m256 t = _mm256_sub_ps(a, _mm256_set1_ps(1.0f));
    __m256 g = _mm256_set1_ps(cg_gelu_small[CG_GELU_DEG]);
    for (int i = CG_GELU_DEG - 1; i >= 0; i--) g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(cg_gelu_small[i]));
    return g;
}

/* Q(a) per lane for lanes all at or above CG_GELU_SPLIT: (v + d) · (the large polynomial in v - V0), v = 1/a. */
CG_AVX2 CG_INLINE __m256 cg_q8_large(__m256 a) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 v = _mm256_div_ps(one, a);
    __m256 t = _mm256_sub_ps(v, _mm256_set1_ps(CG_GELU_V0));
    __m256 d = _mm256_mul_ps(v, _mm256_fnmadd_ps(v, a, one));
    __m256 g = _mm256_set1_ps(cg_gelu_large[CG_GELU_DEG]);
    for (int i = CG_GELU_DEG - 1; i >= 0; i--) g = _mm256_fmadd_ps(g, t, _mm256_set1_ps(cg_gelu_large[i]));
    return _mm256_fmadd_ps(v, g, _mm256_mul_ps(d, g));
}

/* Q(a) per lane, lanes of both kinds: coefficients selected per lane. */
CG_AVX2 CG_INLINE __m256 cg_q8_mixed(__m256 a, __m256 small) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 v = _mm256_div_ps(one, a); /* unused (inf at a = 0) in the small lanes */
    __m256 t = _mm256_blendv_ps(_mm256_sub_ps(v, _mm256_set1_ps(CG_GELU_V0)), _mm256_sub_ps(a, one), small);
    __m256 f = _mm256_blendv_ps(v, one, small);
    __m256 d = _mm256_andnot_ps(small, _mm256_mul_ps(v, _mm256_fnmadd_ps(v, a, one)));
    __m256 g = _mm256_blendv_ps(_mm256_set1_ps(cg_gelu_large[CG_GELU_DEG]),
                                _mm256_set1_ps(cg_gelu_small[CG_GELU_DEG]), small);
    for (int i = CG_GELU_DEG - 1; i >= 0; i--) {
        __m256 c = _mm256_blendv_ps(_mm256_set1_ps(cg_gelu_large[i]), _mm256_set1_ps(cg_gelu_small[i]), small);
        g = _mm256_fmadd_ps(g, t, c);
    }
    return _mm256_fmadd_ps(f, g, _mm256_mul_ps(d, g));
}

CG_AVX2 CG_INLINE __m256 cg_tail8(__m256 x) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 ax = _mm256_and_ps(x, absmask);
    __m256 a = _mm256_min_ps(ax, _mm256_set1_ps(CG_GELU_AMAX)); /* NaN -> AMAX (second operand) */
    __m256 small = _mm256_cmp_ps(a, _mm256_set1_ps(CG_GELU_SPLIT), _CMP_LT_OQ);
    /* activations mostly have |x| < 2: then one polynomial, no division, no blends */
    int kinds = _mm256_movemask_ps(small);
    __m256 q = kinds == 0xff ? cg_q8_small(a) : kinds == 0 ? cg_q8_large(a) : cg_q8_mixed(a, small);
    /* exp(-a²/2) = 2^n · (1 + y) */
    __m256 h = _mm256_mul_ps(a, a);
    __m256 l = _mm256_fmsub_ps(a, a, h);
    __m256 s = _mm256_mul_ps(_mm256_set1_ps(-0.5f), h);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(s, _mm256_set1_ps(CG_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-CG_LN2_HI), s);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-CG_LN2_LO), r);
    r = _mm256_fmadd_ps(l, _mm256_set1_ps(-0.5f), r);
    __m256 p = _mm256_set1_ps(cg_exp_poly[CG_EXP_DEG]);
    for (int i = CG_EXP_DEG - 1; i >= 0; i--) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(cg_exp_poly[i]));
    __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127 + 64)), 23));
    __m256 qs = _mm256_mul_ps(q, scale);
    return _mm256_fmadd_ps(qs, y, qs);
}

/* gelu per lane, as cg_gelu_ref; blendv selects by the sign bit of x (x < 0 or -0: the first form). */
CG_AVX2 CG_INLINE __m256 cg_gelu8(__m256 x) {
    const __m256 down = _mm256_set1_ps(0x1p-64f);
    __m256 ts = cg_tail8(x);
    __m256 neg = _mm256_mul_ps(_mm256_mul_ps(x, ts), down);
    __m256 pos = _mm256_fnmadd_ps(x, _mm256_mul_ps(ts, down), x);
    __m256 r = _mm256_blendv_ps(pos, neg, x);
    /* |x| >= AMAX or NaN: x · (x < 0 ? 0 : 1) */
    __m256 ax = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
    __m256 big = _mm256_cmp_ps(ax, _mm256_set1_ps(CG_GELU_AMAX), _CMP_NLT_UQ);
    __m256 rb = _mm256_mul_ps(x, _mm256_blendv_ps(_mm256_set1_ps(1.0f), _mm256_setzero_ps(), x));
    return _mm256_blendv_ps(r, rb, big);
}

CG_AVX2 void cg_gelu_avx2(const float *x, float *y, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(y + i, cg_gelu8(_mm256_loadu_ps(x + i)));
    if (i < count) {
        float buf[8] = {0};
        for (size_t j = i; j < count; j++) buf[j - i] = x[j];
        _mm256_storeu_ps(buf, cg_gelu8(_mm256_loadu_ps(buf)));
        for (size_t j = i; j < count; j++) y[j] = buf[j - i];
    }
}

/* ================================================================== the 4 x 24 register tile */

/* One k step of the 4 x 24 tile in AT&T syntax: 3 loads of W (byte offset WOFF from %[w]), per row one
 * broadcast of X (byte offset XOFF from row base + %[xi]) and 3 FMAs. */
#define CG_ASM_STEP(WOFF, XOFF)                                  \
    "vmovups " #WOFF "(%[w]), %%ymm12\n"                         \
    "vmovups " #WOFF "+32(%[w]), %%ymm13\n"                      \
    "vmovups " #WOFF "+64(%[w]), %%ymm14\n"                      \
    "vbroadcastss " #XOFF "(%[x0],%[xi]), %%ymm15\n"             \
    "vfmadd231ps %%ymm12, %%ymm15, %[c00]\n"                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[c01]\n"                     \
    "vfmadd231ps %%ymm14, %%ymm15, %[c02]\n"                     \
    "vbroadcastss " #XOFF "(%[x1],%[xi]), %%ymm15\n"             \
    "vfmadd231ps %%ymm12, %%ymm15, %[c10]\n"                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[c11]\n"                     \
    "vfmadd231ps %%ymm14, %%ymm15, %[c12]\n"                     \
    "vbroadcastss " #XOFF "(%[x2],%[xi]), %%ymm15\n"             \
    "vfmadd231ps %%ymm12, %%ymm15, %[c20]\n"                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[c21]\n"                     \
    "vfmadd231ps %%ymm14, %%ymm15, %[c22]\n"                     \
    "vbroadcastss " #XOFF "(%[x3],%[xi]), %%ymm15\n"             \
    "vfmadd231ps %%ymm12, %%ymm15, %[c30]\n"                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[c31]\n"                     \
    "vfmadd231ps %%ymm14, %%ymm15, %[c32]\n"

#define CG_ASM_ACCUMULATORS                                                                                    \
    [c00] "+x"(c00), [c01] "+x"(c01), [c02] "+x"(c02), [c10] "+x"(c10), [c11] "+x"(c11), [c12] "+x"(c12),     \
        [c20] "+x"(c20), [c21] "+x"(c21), [c22] "+x"(c22), [c30] "+x"(c30), [c31] "+x"(c31), [c32] "+x"(c32)

enum { CG_INIT_LOAD = 0, CG_INIT_ZERO = 1, CG_INIT_BIAS = 2, CG_INIT_BIAS_RES = 3, CG_INIT_RES = 4 };

/* c[r·ldc + j] (r < 4, j < 24) = init + Σ_{i<kc} x_r[i] · w[24 i + j] (fma chain in increasing i), then
 * GELU in place if `gelu`. x0..x3 are the four rows (already offset to the K block), w the panel slice.
 * init: LOAD = the current c; ZERO; BIAS = bias[j]; BIAS_RES = bias[j] + res[r·ldr + j]; RES = res[...]. */
CG_AVX2 __attribute__((noinline)) static void cg_kernel_4x24(size_t kc, const float *x0, const float *x1,
                                                            const float *x2, const float *x3, const float *w,
                                                            float *c, size_t ldc, int init, const float *bias,
                                                            const float *res, size_t ldr, int gelu,
                                                            const float *next_c, size_t next_ldc, const float *pf) {
    __m256 c00, c01, c02, c10, c11, c12, c20, c21, c22, c30, c31, c32;
    if (next_c) {
        /* the next tile's partial sums: from L2/L3 now, so that they are in L1 when it starts */
        for (int r = 0; r < 4; r++) {
            _mm_prefetch((const char *)(next_c + r * next_ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(next_c + r * next_ldc + 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(next_c + r * next_ldc + 23), _MM_HINT_T0);
        }
    }
    if (init == CG_INIT_LOAD) {
        c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8), c02 = _mm256_loadu_ps(c + 16);
        c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8), c12 = _mm256_loadu_ps(c + ldc + 16);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c22 = _mm256_loadu_ps(c + 2 * ldc + 16);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c32 = _mm256_loadu_ps(c + 3 * ldc + 16);
    } else {
        __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0;
        if (init == CG_INIT_BIAS || init == CG_INIT_BIAS_RES)
            b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8), b2 = _mm256_loadu_ps(bias + 16);
        c00 = c10 = c20 = c30 = b0;
        c01 = c11 = c21 = c31 = b1;
        c02 = c12 = c22 = c32 = b2;
        if (init == CG_INIT_BIAS_RES) {
            c00 = _mm256_add_ps(c00, _mm256_loadu_ps(res)), c01 = _mm256_add_ps(c01, _mm256_loadu_ps(res + 8));
            c02 = _mm256_add_ps(c02, _mm256_loadu_ps(res + 16));
            c10 = _mm256_add_ps(c10, _mm256_loadu_ps(res + ldr));
            c11 = _mm256_add_ps(c11, _mm256_loadu_ps(res + ldr + 8));
            c12 = _mm256_add_ps(c12, _mm256_loadu_ps(res + ldr + 16));
            c20 = _mm256_add_ps(c20, _mm256_loadu_ps(res + 2 * ldr));
            c21 = _mm256_add_ps(c21, _mm256_loadu_ps(res + 2 * ldr + 8));
            c22 = _mm256_add_ps(c22, _mm256_loadu_ps(res + 2 * ldr + 16));
            c30 = _mm256_add_ps(c30, _mm256_loadu_ps(res + 3 * ldr));
            c31 = _mm256_add_ps(c31, _mm256_loadu_ps(res + 3 * ldr + 8));
            c32 = _mm256_add_ps(c32, _mm256_loadu_ps(res + 3 * ldr + 16));
        } else if (init == CG_INIT_RES) {
            c00 = _mm256_loadu_ps(res), c01 = _mm256_loadu_ps(res + 8), c02 = _mm256_loadu_ps(res + 16);
            c10 = _mm256_loadu_ps(res + ldr), c11 = _mm256_loadu_ps(res + ldr + 8);
            c12 = _mm256_loadu_ps(res + ldr + 16);
            c20 = _mm256_loadu_ps(res + 2 * ldr), c21 = _mm256_loadu_ps(res + 2 * ldr + 8);
            c22 = _mm256_loadu_ps(res + 2 * ldr + 16);
            c30 = _mm256_loadu_ps(res + 3 * ldr), c31 = _mm256_loadu_ps(res + 3 * ldr + 8);
            c32 = _mm256_loadu_ps(res + 3 * ldr + 16);
        }
    }

    /* The k loop is written in assembly so that the register allocation is fixed whatever the compiler:
     * the accumulators in 12 registers chosen by the compiler ("+x" operands), W in ymm12-14, the X
     * broadcast in ymm15, 16 in all. (The same loop in intrinsics compiles at -O2 to a loop that spills
     * an accumulator every step: clang hoists the next step's W loads and runs out of registers.)
     * vfmadd231ps %W, %B, %C is C = fma(B, W, C): one rounding, so the order of B and W is immaterial. */
    size_t xi = 0; /* byte offset into the X rows */
    size_t n4 = kc / 4, n1 = kc % 4;
    if (n4 > 0) {
        __asm__ volatile(
            ".p2align 5\n"
            "1:\n"
            CG_ASM_STEP(0, 0)
            CG_ASM_STEP(96, 4)
            CG_ASM_STEP(192, 8)
            CG_ASM_STEP(288, 12)
            "prefetcht1 (%[pf])\n" /* one line of the slice the next panel will use (see the caller) */
            "add $64, %[pf]\n"
            "add $384, %[w]\n"
            "add $16, %[xi]\n"
            "dec %[n]\n"
            "jnz 1b\n"
            : CG_ASM_ACCUMULATORS, [w] "+r"(w), [xi] "+r"(xi), [n] "+r"(n4), [pf] "+r"(pf)
            : [x0] "r"(x0), [x1] "r"(x1), [x2] "r"(x2), [x3] "r"(x3)
            : "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    }
    if (n1 > 0) {
        __asm__ volatile(
            "2:\n"
            CG_ASM_STEP(0, 0)
            "add $96, %[w]\n"
            "add $4, %[xi]\n"
            "dec %[n]\n"
            "jnz 2b\n"
            : CG_ASM_ACCUMULATORS, [w] "+r"(w), [xi] "+r"(xi), [n] "+r"(n1)
            : [x0] "r"(x0), [x1] "r"(x1), [x2] "r"(x2), [x3] "r"(x3)
            : "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    }

    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01), _mm256_storeu_ps(c + 16, c02);
    _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11), _mm256_storeu_ps(c + ldc + 16, c12);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 2 * ldc + 16, c22);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 3 * ldc + 16, c32);
    if (gelu) {
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 24; j += 8) {
                float *p = c + (size_t)r * ldc + j;
                _mm256_storeu_ps(p, cg_gelu8(_mm256_loadu_ps(p)));
            }
    }
}

/* ================================================================== the blocked product */

CG_AVX2 void cg_gemm_packed_avx2(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *packed,
                                 const float *bias, int epilogue, const float *residual, size_t ldr, float *y,
                                 size_t ldy, size_t n_begin, size_t n_end) {
    (void)n;
    const size_t stride = cg_panel_stride(k);
    const size_t nkb = (k + CG_KC_MAX - 1) / CG_KC_MAX;
    const size_t kc_base = ((k + nkb - 1) / nkb + 3) / 4 * 4; /* balanced K blocks, multiples of 4 */
    const int use_bias = bias != NULL && epilogue >= CG_EPILOGUE_BIAS && epilogue <= CG_EPILOGUE_BIAS_RESIDUAL;
    const int use_res = epilogue == CG_EPILOGUE_BIAS_RESIDUAL;
    const int first_init = use_res ? (use_bias ? CG_INIT_BIAS_RES : CG_INIT_RES) : (use_bias ? CG_INIT_BIAS : CG_INIT_ZERO);
    const int want_gelu = epilogue == CG_EPILOGUE_BIAS_GELU;
    _Alignas(32) float tile[CG_MR * CG_NR];

    for (size_t k0 = 0; k0 < k; k0 += kc_base) {
        const size_t kc = k - k0 < kc_base ? k - k0 : kc_base;
        const int first = k0 == 0, last = k0 + kc == k;
        const int gelu = last && want_gelu;
        for (size_t m0 = 0; m0 < m; m0 += CG_MC) {
            const size_t m1 = m - m0 < CG_MC ? m : m0 + CG_MC;
            for (size_t o0 = n_begin; o0 < n_end; o0 += CG_NR) {
                const float *wp = packed + (o0 / CG_NR) * stride + k0 * CG_NR;
                const size_t cols = n_end - o0 < CG_NR ? n_end - o0 : CG_NR;
                /* The slice the next panel iteration will stream: prefetched into L2 bit by bit by the
                 * tiles of this one (one line per 4 k steps), so that its first tile does not wait on L3. */
                const float *pf_base = o0 + CG_NR < n_end ? wp + stride
                                       : m1 < m       ? packed + (n_begin / CG_NR) * stride + k0 * CG_NR
                                       : k0 + kc < k  ? packed + (n_begin / CG_NR) * stride + (k0 + kc) * CG_NR
                                                      : wp; /* nothing follows: harmless re-touch */
                const size_t pf_span = kc * CG_NR;
                for (size_t r0 = m0; r0 < m1; r0 += CG_MR) {
                    const size_t rows = m1 - r0 < CG_MR ? m1 - r0 : CG_MR;
                    const float *xr[CG_MR];
                    for (size_t i = 0; i < CG_MR; i++) xr[i] = x + (r0 + (i < rows ? i : rows - 1)) * ldx + k0;
                    float *yt = y + r0 * ldy + o0;
                    if (rows == CG_MR && cols == CG_NR) {
                        const float *next = r0 + CG_MR < m1 ? yt + CG_MR * ldy
                                            : (o0 + CG_NR < n_end ? y + m0 * ldy + o0 + CG_NR : NULL);
                        cg_kernel_4x24(kc, xr[0], xr[1], xr[2], xr[3], wp, yt, ldy, first ? first_init : CG_INIT_LOAD,
                                       bias ? bias + o0 : NULL, use_res ? residual + r0 * ldr + o0 : NULL, ldr, gelu,
                                       next, ldy, pf_base + ((r0 - m0) / CG_MR * (kc / 4) * 16) % pf_span);
                        continue;
                    }
                    /* Edge tile: run the same kernel on a 4 x 24 buffer holding the valid part. */
                    for (size_t i = 0; i < CG_MR; i++)
                        for (size_t j = 0; j < CG_NR; j++) {
                            float v = 0.0f;
                            if (i < rows && j < cols) {
                                if (!first) {
                                    v = yt[i * ldy + j];
                                } else {
                                    if (use_bias) v = bias[o0 + j];
                                    if (use_res) {
                                        float res = residual[(r0 + i) * ldr + o0 + j];
                                        v = use_bias ? v + res : res;
                                    }
                                }
                            }
                            tile[i * CG_NR + j] = v;
                        }
                    cg_kernel_4x24(kc, xr[0], xr[1], xr[2], xr[3], wp, tile, CG_NR, CG_INIT_LOAD, NULL, NULL, 0, gelu,
                                   NULL, 0, wp);
                    for (size_t i = 0; i < rows; i++)
                        for (size_t j = 0; j < cols; j++) yt[i * ldy + j] = tile[i * CG_NR + j];
                }
            }
        }
    }
}

/* ================================================================== FMA peak loop (benchmarks) */

CG_AVX2 double cg_fma_peak_loop_avx2(size_t iterations) {
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const __m256 mul = _mm256_set1_ps(0.999999f), add = _mm256_set1_ps(1e-7f);
    for (size_t i = 0; i < iterations; i++) {
        /* 12 independent chains: enough to cover FMA latency (4-5 cycles) x 2 pipes */
        a0 = _mm256_fmadd_ps(a0, mul, add), a1 = _mm256_fmadd_ps(a1, mul, add), a2 = _mm256_fmadd_ps(a2, mul, add);
        a3 = _mm256_fmadd_ps(a3, mul, add), a4 = _mm256_fmadd_ps(a4, mul, add), a5 = _mm256_fmadd_ps(a5, mul, add);
        a6 = _mm256_fmadd_ps(a6, mul, add), a7 = _mm256_fmadd_ps(a7, mul, add), a8 = _mm256_fmadd_ps(a8, mul, add);
        a9 = _mm256_fmadd_ps(a9, mul, add), a10 = _mm256_fmadd_ps(a10, mul, add);
        a11 = _mm256_fmadd_ps(a11, mul, add);
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3)); /* keep the chains (no folding) */
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    volatile float sink = _mm256_cvtss_f32(s);
    (void)sink;
    return 2.0 * 8.0 * 12.0 * (double)iterations;
}

/* ================================================================== packing */

/* One full panel (24 rows of W, row stride ldw) -> dst[kk · 24 + j] for kk < k: blocks of 8 k values of 8 rows
 * are transposed in registers (unpack / shuffle / permute2f128) and stored as 8-float rows; the last k % 8
 * values are copied one by one. Data movement only (the same bits as the scalar packing). */
CG_AVX2 void cg_pack_panel_avx2(const float *w, size_t k, size_t ldw, float *dst) {
    size_t k8 = k / 8 * 8;
    for (size_t k0 = 0; k0 < k8; k0 += 8) {
        for (size_t g = 0; g < CG_NR / 8; g++) {
            const float *src = w + g * 8 * ldw + k0;
            __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ldw);
            __m256 r2 = _mm256_loadu_ps(src + 2 * ldw), r3 = _mm256_loadu_ps(src + 3 * ldw);
            __m256 r4 = _mm256_loadu_ps(src + 4 * ldw), r5 = _mm256_loadu_ps(src + 5 * ldw);
            __m256 r6 = _mm256_loadu_ps(src + 6 * ldw), r7 = _mm256_loadu_ps(src + 7 * ldw);
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *d = dst + k0 * CG_NR + g * 8;
            _mm256_storeu_ps(d + 0 * CG_NR, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(d + 1 * CG_NR, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(d + 2 * CG_NR, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(d + 3 * CG_NR, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(d + 4 * CG_NR, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(d + 5 * CG_NR, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(d + 6 * CG_NR, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(d + 7 * CG_NR, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
    for (size_t kk = k8; kk < k; kk++)
        for (size_t j = 0; j < CG_NR; j++) dst[kk * CG_NR + j] = w[j * ldw + kk];
}

#endif
