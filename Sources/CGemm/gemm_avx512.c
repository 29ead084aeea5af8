/* AVX-512 F kernel of the packed product (x86-64 only). Compiled without -mavx512f: every function carries a
 * target attribute and is only called after the run-time check in gemm.c. Results are bit-identical to the
 * scalar reference and to the AVX2 kernel (include/cgemm.h): each output is one fma chain over k in increasing
 * order, started from the same initial value; partial sums between K blocks are stored in Y and reloaded.
 *
 * The register tile is 8 rows x 48 columns = two consecutive 24-column panels p and p + 1 (the packed layout
 * is the same as for the AVX2 kernel; nothing is repacked). Per k step:
 *   zmm28 = panel p     [k][0..15]        zmm29 = panel p + 1 [k][0..15]
 *   zmm30 = panel p     [k][16..23] | panel p + 1 [k][16..23]   (one ymm load + one vinsertf64x4 from memory)
 * and per row one broadcast of X into zmm31 and 3 FMAs: 24 accumulators, 24 full-width FMAs per 4 loads of W
 * and 8 broadcasts. 32 zmm registers in all; the k loop is inline assembly so that the allocation is fixed.
 * Accumulator c_r2 holds columns 16..23 in its low half and 40..47 in its high half.
 *
 * The 1-7 rows beyond the last multiple of 8 use the same tile with fewer rows (cg_kernel_rx48: intrinsics,
 * the same fma chains); a last single or partial panel goes to the AVX2 kernel, which computes the same bits.
 * (Before the short tiles, those rows went to the AVX2 kernel too: a 45-token f32 forward took 1.9 x as
 * long as a 40- or 48-token one.) Blocking: K blocks of at most CG512_KC (the panel-pair slice,
 * 48 x KC floats, stays in L2 while the row tiles of one M block pass over it), M blocks of CG512_MC rows
 * (X block in L2). */
#include "gemm_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

#define CG_AVX512 __attribute__((target("avx512f,avx2,fma")))

#ifndef CG512_KC
#define CG512_KC 768 /* panel pair slice 48 x 768 x 4 = 144 KiB in L2 (measured: 85% of the zmm FMA peak at
                         * M = 128, against 71-78% with L1-sized blocks of 128-256: the partial sums cost more) */
#endif
#ifndef CG512_MC
#define CG512_MC 128 /* X block 128 x 768 x 4 = 384 KiB in L2 */
#endif

/* ================================================================== GELU, 16 lanes */

/* cg_tail8 / cg_gelu8 of gemm_avx2.c (and cg_tail_ref / cg_gelu_ref of gemm_internal.h) in 16 lanes: the
 * same operations in the same order per lane, so the same bits; blendv becomes a mask blend. */
CG_AVX512 static inline __attribute__((always_inline)) __m512 cg_tail16(__m512 x) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 ax = _mm512_abs_ps(x);
    __m512 a = _mm512_min_ps(ax, _mm512_set1_ps(CG_GELU_AMAX)); /* NaN -> AMAX (second operand) */
    __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(CG_GELU_SPLIT), _CMP_LT_OQ);
    __m512 q;
    if (small == 0xffff) {
        __m512 t = _mm512_sub_ps(a, one);
        __m512 g = _mm512_set1_ps(cg_gelu_small[CG_GELU_DEG]);
        for (int i = CG_GELU_DEG - 1; i >= 0; i--) g = _mm512_fmadd_ps(g, t, _mm512_set1_ps(cg_gelu_small[i]));
        q = g;
    } else {
        __m512 v = _mm512_div_ps(one, a);
        __m512 t = _mm512_mask_blend_ps(small, _mm512_sub_ps(v, _mm512_set1_ps(CG_GELU_V0)), _mm512_sub_ps(a, one));
        __m512 f = _mm512_mask_blend_ps(small, v, one);
        __m512 d = _mm512_maskz_mov_ps((__mmask16)~small, _mm512_mul_ps(v, _mm512_fnmadd_ps(v, a, one)));
        __m512 g = _mm512_mask_blend_ps(small, _mm512_set1_ps(cg_gelu_large[CG_GELU_DEG]),
                                        _mm512_set1_ps(cg_gelu_small[CG_GELU_DEG]));
        for (int i = CG_GELU_DEG - 1; i >= 0; i--) {
            __m512 c = _mm512_mask_blend_ps(small, _mm512_set1_ps(cg_gelu_large[i]), _mm512_set1_ps(cg_gelu_small[i]));
            g = _mm512_fmadd_ps(g, t, c);
        }
        q = _mm512_fmadd_ps(f, g, _mm512_mul_ps(d, g));
    }
    __m512 h = _mm512_mul_ps(a, a);
    __m512 l = _mm512_fmsub_ps(a, a, h);
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(-0.5f), h);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(s, _mm512_set1_ps(CG_LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-CG_LN2_HI), s);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-CG_LN2_LO), r);
    r = _mm512_fmadd_ps(l, _mm512_set1_ps(-0.5f), r);
    __m512 p = _mm512_set1_ps(cg_exp_poly[CG_EXP_DEG]);
    for (int i = CG_EXP_DEG - 1; i >= 0; i--) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(cg_exp_poly[i]));
    __m512 y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    __m512i ni = _mm512_cvtps_epi32(n);
    __m512 scale = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127 + 64)), 23));
    __m512 qs = _mm512_mul_ps(q, scale);
    return _mm512_fmadd_ps(qs, y, qs);
}

CG_AVX512 static inline __attribute__((always_inline)) __m512 cg_gelu16(__m512 x) {
    const __m512 down = _mm512_set1_ps(0x1p-64f);
    __mmask16 negative = _mm512_cmplt_epi32_mask(_mm512_castps_si512(x), _mm512_setzero_si512()); /* sign bit */
    __m512 ts = cg_tail16(x);
    __m512 neg = _mm512_mul_ps(_mm512_mul_ps(x, ts), down);
    __m512 pos = _mm512_fnmadd_ps(x, _mm512_mul_ps(ts, down), x);
    __m512 r = _mm512_mask_blend_ps(negative, pos, neg);
    __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(CG_GELU_AMAX), _CMP_NLT_UQ);
    __m512 rb = _mm512_mul_ps(x, _mm512_mask_blend_ps(negative, _mm512_set1_ps(1.0f), _mm512_setzero_ps()));
    return _mm512_mask_blend_ps(big, r, rb);
}

CG_AVX512 void cg_gelu_avx512(const float *x, float *y, size_t count) {
    size_t i = 0;
    for (; i + 16 <= count; i += 16) _mm512_storeu_ps(y + i, cg_gelu16(_mm512_loadu_ps(x + i)));
    if (i < count) {
        __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, cg_gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* One k step: W of both panels at byte offset WOFF, the 8 rows' X at byte offset XOFF. Rows 0..4 are
 * addressed from %[xa] (+ 0, ld, 2 ld, 3 ld, 4 ld), rows 5..7 from %[xb] = xa + 5 ld (+ 0, ld, 2 ld). */
#define CG512_ROW(ADDR, C0, C1, C2)                 \
    "vbroadcastss " ADDR ", %%zmm31\n"              \
    "vfmadd231ps %%zmm28, %%zmm31, %[" C0 "]\n"     \
    "vfmadd231ps %%zmm29, %%zmm31, %[" C1 "]\n"     \
    "vfmadd231ps %%zmm30, %%zmm31, %[" C2 "]\n"

#define CG512_STEP(WOFF, XOFF)                                         \
    "vmovups " #WOFF "(%[w]), %%zmm28\n"                               \
    "vmovups " #WOFF "(%[w2]), %%zmm29\n"                              \
    "vmovups " #WOFF "+64(%[w]), %%ymm30\n"                            \
    "vinsertf64x4 $1, " #WOFF "+64(%[w2]), %%zmm30, %%zmm30\n"         \
    CG512_ROW(#XOFF "(%[xa])", "c00", "c01", "c02")                    \
    CG512_ROW(#XOFF "(%[xa],%[ld])", "c10", "c11", "c12")              \
    CG512_ROW(#XOFF "(%[xa],%[ld],2)", "c20", "c21", "c22")            \
    CG512_ROW(#XOFF "(%[xa],%[ld3])", "c30", "c31", "c32")             \
    CG512_ROW(#XOFF "(%[xa],%[ld],4)", "c40", "c41", "c42")            \
    CG512_ROW(#XOFF "(%[xb])", "c50", "c51", "c52")                    \
    CG512_ROW(#XOFF "(%[xb],%[ld])", "c60", "c61", "c62")              \
    CG512_ROW(#XOFF "(%[xb],%[ld],2)", "c70", "c71", "c72")

#define CG512_ACC(r) [c##r##0] "+v"(c[r][0]), [c##r##1] "+v"(c[r][1]), [c##r##2] "+v"(c[r][2])
#define CG512_ACCUMULATORS CG512_ACC(0), CG512_ACC(1), CG512_ACC(2), CG512_ACC(3), CG512_ACC(4), CG512_ACC(5), \
                           CG512_ACC(6), CG512_ACC(7)

enum { CG512_LOAD = 0, CG512_ZERO = 1, CG512_BIAS = 2, CG512_BIAS_RES = 3, CG512_RES = 4 };

/* 48 floats of a row laid out as the accumulators: [0..15], [24..39], [16..23 | 40..47]. */
CG_AVX512 static inline __attribute__((always_inline)) void cg512_load48(const float *p, __m512 out[3]) {
    out[0] = _mm512_loadu_ps(p);
    out[1] = _mm512_loadu_ps(p + 24);
    out[2] = _mm512_insertf64x4(_mm512_castps256_ps512(_mm256_loadu_ps(p + 16)),
                                _mm256_castps_pd(_mm256_loadu_ps(p + 40)), 1);
}

CG_AVX512 static inline __attribute__((always_inline)) void cg512_store48(float *p, const __m512 v[3]) {
    _mm512_storeu_ps(p, v[0]);
    _mm512_storeu_ps(p + 24, v[1]);
    _mm256_storeu_ps(p + 16, _mm512_castps512_ps256(v[2]));
    _mm256_storeu_ps(p + 40, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v[2]), 1)));
}

/* The accumulators of an R-row tile at the start of a K block: Y's partial sums (CG512_LOAD), else zero, the
 * bias, the residual or bias + residual (one f32 add). */
CG_AVX512 static inline __attribute__((always_inline)) void cg512_tile_start(const int R, __m512 c[][3], const float *y,
                                                                              size_t ldy, int init, const float *bias,
                                                                              const float *res, size_t ldr) {
    if (init == CG512_LOAD) {
        for (int r = 0; r < R; r++) cg512_load48(y + (size_t)r * ldy, c[r]);
    } else {
        __m512 b[3] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        if (init == CG512_BIAS || init == CG512_BIAS_RES) cg512_load48(bias, b);
        for (int r = 0; r < R; r++) {
            if (init == CG512_BIAS_RES || init == CG512_RES) {
                __m512 v[3];
                cg512_load48(res + (size_t)r * ldr, v);
                for (int j = 0; j < 3; j++) c[r][j] = init == CG512_RES ? v[j] : _mm512_add_ps(b[j], v[j]);
            } else {
                for (int j = 0; j < 3; j++) c[r][j] = b[j];
            }
        }
    }
}

/* Stores an R-row tile and applies GELU to it after the last K block. */
CG_AVX512 static inline __attribute__((always_inline)) void cg512_tile_end(const int R, __m512 c[][3], float *y, size_t ldy,
                                                                            int gelu) {
    for (int r = 0; r < R; r++) cg512_store48(y + (size_t)r * ldy, c[r]);
    if (gelu)
        for (int r = 0; r < R; r++) {
            float *p = y + (size_t)r * ldy;
            _mm512_storeu_ps(p, cg_gelu16(_mm512_loadu_ps(p)));
            _mm512_storeu_ps(p + 16, cg_gelu16(_mm512_loadu_ps(p + 16)));
            _mm512_storeu_ps(p + 32, cg_gelu16(_mm512_loadu_ps(p + 32)));
        }
}

/* c[r·ldc + j] (r < 8, j < 48) = init + Σ_{i<kc} x_r[i] · W[i][j] over the panel slices w (columns 0..23)
 * and w2 (24..47), each an fma chain in increasing i. x rows at x + r·ldx. */
CG_AVX512 __attribute__((noinline)) static void cg_kernel_8x48(size_t kc, const float *x, size_t ldx, const float *w,
                                                              const float *w2, float *y, size_t ldy, int init,
                                                              const float *bias, const float *res, size_t ldr,
                                                              int gelu) {
    __m512 c[8][3];
    cg512_tile_start(8, c, y, ldy, init, bias, res, ldr);
    const size_t ld = ldx * sizeof(float), ld3 = 3 * ld;
    const char *xa = (const char *)x, *xb = (const char *)(x + 5 * ldx);
    size_t n4 = kc / 4, n1 = kc % 4;
    if (n4 > 0) {
        __asm__ volatile(
            ".p2align 5\n"
            "1:\n"
            CG512_STEP(0, 0)
            CG512_STEP(96, 4)
            CG512_STEP(192, 8)
            CG512_STEP(288, 12)
            "add $384, %[w]\n"
            "add $384, %[w2]\n"
            "add $16, %[xa]\n"
            "add $16, %[xb]\n"
            "dec %[n]\n"
            "jnz 1b\n"
            : CG512_ACCUMULATORS, [w] "+r"(w), [w2] "+r"(w2), [xa] "+r"(xa), [xb] "+r"(xb), [n] "+r"(n4)
            : [ld] "r"(ld), [ld3] "r"(ld3)
            : "xmm28", "xmm29", "xmm30", "xmm31", "cc", "memory");
    }
    if (n1 > 0) {
        __asm__ volatile(
            "2:\n"
            CG512_STEP(0, 0)
            "add $96, %[w]\n"
            "add $96, %[w2]\n"
            "add $4, %[xa]\n"
            "add $4, %[xb]\n"
            "dec %[n]\n"
            "jnz 2b\n"
            : CG512_ACCUMULATORS, [w] "+r"(w), [w2] "+r"(w2), [xa] "+r"(xa), [xb] "+r"(xb), [n] "+r"(n1)
            : [ld] "r"(ld), [ld3] "r"(ld3)
            : "xmm28", "xmm29", "xmm30", "xmm31", "cc", "memory");
    }
    cg512_tile_end(8, c, y, ldy, gelu);
}

/* The 8 x 48 tile's operations for R < 8 rows (intrinsics: the compiler keeps the 3R accumulators in
 * registers): per k, the same three W vectors, one broadcast per row and the same fmas, so the same bits. */
CG_AVX512 static inline __attribute__((always_inline)) void cg_tile_rx48(const int R, size_t kc, const float *x, size_t ldx,
                                                                          const float *w, const float *w2, float *y,
                                                                          size_t ldy, int init, const float *bias,
                                                                          const float *res, size_t ldr, int gelu) {
    __m512 c[7][3];
    cg512_tile_start(R, c, y, ldy, init, bias, res, ldr);
    for (size_t i = 0; i < kc; i++, w += CG_NR, w2 += CG_NR) {
        const __m512 w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w2);
        const __m512 wt = _mm512_insertf64x4(_mm512_castps256_ps512(_mm256_loadu_ps(w + 16)),
                                             _mm256_castps_pd(_mm256_loadu_ps(w2 + 16)), 1);
        for (int r = 0; r < R; r++) {
            const __m512 xb = _mm512_set1_ps(x[(size_t)r * ldx + i]);
            c[r][0] = _mm512_fmadd_ps(w0, xb, c[r][0]);
            c[r][1] = _mm512_fmadd_ps(w1, xb, c[r][1]);
            c[r][2] = _mm512_fmadd_ps(wt, xb, c[r][2]);
        }
    }
    cg512_tile_end(R, c, y, ldy, gelu);
}

#define CG512_SHORT(R)                                                                                               \
    CG_AVX512 __attribute__((noinline)) static void cg_kernel_##R##x48(size_t kc, const float *x, size_t ldx,        \
                                                                      const float *w, const float *w2, float *y,     \
                                                                      size_t ldy, int init, const float *bias,       \
                                                                      const float *res, size_t ldr, int gelu) {      \
        cg_tile_rx48(R, kc, x, ldx, w, w2, y, ldy, init, bias, res, ldr, gelu);                                      \
    }
CG512_SHORT(1)
CG512_SHORT(2)
CG512_SHORT(3)
CG512_SHORT(4)
CG512_SHORT(5)
CG512_SHORT(6)
CG512_SHORT(7)

typedef void (*cg512_kernel)(size_t, const float *, size_t, const float *, const float *, float *, size_t, int,
                             const float *, const float *, size_t, int);

CG_AVX512 void cg_gemm_packed_avx512(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *packed,
                                     const float *bias, int epilogue, const float *residual, size_t ldr, float *y,
                                     size_t ldy, size_t n_begin, size_t n_end) {
    static const cg512_kernel kernels[8] = {cg_kernel_8x48, cg_kernel_1x48, cg_kernel_2x48, cg_kernel_3x48,
                                            cg_kernel_4x48, cg_kernel_5x48, cg_kernel_6x48, cg_kernel_7x48};
    const size_t full = (n_end - n_begin) / CG_NR;          /* complete panels in the range */
    const size_t n_pairs_end = n_begin + full / 2 * 2 * CG_NR; /* end of the columns done two panels at a time */
    if (m > 0 && n_pairs_end > n_begin) {
        const size_t stride = cg_panel_stride(k);
        const size_t nkb = (k + CG512_KC - 1) / CG512_KC;
        const size_t kc_base = ((k + nkb - 1) / nkb + 3) / 4 * 4; /* balanced K blocks, multiples of 4 */
        const int use_bias = bias != NULL && epilogue >= CG_EPILOGUE_BIAS && epilogue <= CG_EPILOGUE_BIAS_RESIDUAL;
        const int use_res = epilogue == CG_EPILOGUE_BIAS_RESIDUAL;
        const int first_init = use_res ? (use_bias ? CG512_BIAS_RES : CG512_RES) : (use_bias ? CG512_BIAS : CG512_ZERO);
        for (size_t k0 = 0; k0 < k; k0 += kc_base) {
            const size_t kc = k - k0 < kc_base ? k - k0 : kc_base;
            const int init = k0 == 0 ? first_init : CG512_LOAD;
            const int gelu = k0 + kc == k && epilogue == CG_EPILOGUE_BIAS_GELU;
            for (size_t m0 = 0; m0 < m; m0 += CG512_MC) {
                const size_t m1 = m - m0 < CG512_MC ? m : m0 + CG512_MC;
                for (size_t o0 = n_begin; o0 < n_pairs_end; o0 += 2 * CG_NR) {
                    const float *wp = packed + (o0 / CG_NR) * stride + k0 * CG_NR;
                    for (size_t r0 = m0; r0 < m1; r0 += 8) {
                        const cg512_kernel kernel = kernels[m1 - r0 < 8 ? m1 - r0 : 0];
                        kernel(kc, x + r0 * ldx + k0, ldx, wp, wp + stride, y + r0 * ldy + o0, ldy, init,
                               use_bias ? bias + o0 : NULL, use_res ? residual + r0 * ldr + o0 : NULL, ldr, gelu);
                    }
                }
            }
        }
    }
    /* The rest, bit-identical through the AVX2 kernel: the last single or partial panel of every row. */
    if (n_pairs_end < n_end)
        cg_gemm_packed_avx2(m, n, k, x, ldx, packed, bias, epilogue, residual, ldr, y, ldy, n_pairs_end, n_end);
}

/* ================================================================== FMA peak loop (benchmarks) */

CG_AVX512 double cg_fma_peak_loop_avx512(size_t iterations) {
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m512 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
    for (size_t i = 0; i < iterations; i++) {
        a0 = _mm512_fmadd_ps(a0, mul, add), a1 = _mm512_fmadd_ps(a1, mul, add), a2 = _mm512_fmadd_ps(a2, mul, add);
        a3 = _mm512_fmadd_ps(a3, mul, add), a4 = _mm512_fmadd_ps(a4, mul, add), a5 = _mm512_fmadd_ps(a5, mul, add);
        a6 = _mm512_fmadd_ps(a6, mul, add), a7 = _mm512_fmadd_ps(a7, mul, add), a8 = _mm512_fmadd_ps(a8, mul, add);
        a9 = _mm512_fmadd_ps(a9, mul, add), a10 = _mm512_fmadd_ps(a10, mul, add);
        a11 = _mm512_fmadd_ps(a11, mul, add);
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3)); /* keep the chains (no folding) */
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 2.0 * 16.0 * 12.0 * (double)iterations;
}

#endif
