/* AVX2 + FMA emulation of the bf16 products and the activation rounding (x86-64 only; target attributes, run
 * after the run-time check in gemm_bf16.c), for CPUs without AVX-512: bit-identical to cgb_gemm_packed_scalar.
 * Tiles of up to 4 rows x 16 columns (8 ymm accumulators); per pair of k the odd bf16 halves (word & 0xffff0000)
 * are multiplied in first, then the even ones (word << 16), each fma followed by the flush of subnormal sums,
 * as vdpbf16ps. Partial tiles go through a small buffer. */
#include "gemm_bf16_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

#define CGB_AVX2 __attribute__((target("avx2,fma")))
#define CGB_INLINE static inline __attribute__((always_inline))

#ifndef CGB2_KC
#define CGB2_KC 256
#endif

/* 8 lanes of cgb_round_bits. */
CGB_AVX2 CGB_INLINE __m256i cgb_round8(__m256 v) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i expo = _mm256_and_si256(u, _mm256_set1_epi32(0x7f800000));
    const __m256i tiny = _mm256_cmpeq_epi32(expo, _mm256_setzero_si256());
    /* |u| > 0x7f800000 as signed compare: both sides are below 2^31 */
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    const __m256i hi = _mm256_srli_epi32(u, 16);
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), _mm256_and_si256(hi, _mm256_set1_epi32(1)));
    r = _mm256_srli_epi32(r, 16);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
    r = _mm256_blendv_epi8(r, _mm256_srli_epi32(_mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u)), 16), tiny);
    return r;
}

/* 16 floats -> 8 words. */
CGB_AVX2 CGB_INLINE __m256i cgb_words8_avx2(__m256 a, __m256 b) {
    __m256i ra = cgb_round8(a), rb = cgb_round8(b);
    ra = _mm256_or_si256(ra, _mm256_srli_epi64(ra, 16)); /* word i of a in dword 2i */
    rb = _mm256_or_si256(rb, _mm256_srli_epi64(rb, 16));
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    ra = _mm256_permutevar8x32_epi32(ra, even);
    rb = _mm256_permutevar8x32_epi32(rb, even);
    return _mm256_permute2x128_si256(ra, rb, 0x20);
}

CGB_AVX2 void cgb_round_rows_avx2(const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb) {
    const size_t pairs = cgb_pairs(k);
    for (size_t r = 0; r < m; r++) {
        const float *xr = x + r * ldx;
        uint32_t *dst = xb + r * ldxb;
        size_t i = 0;
        for (; i + 16 <= k; i += 16)
            _mm256_storeu_si256((__m256i *)(dst + i / 2), cgb_words8_avx2(_mm256_loadu_ps(xr + i), _mm256_loadu_ps(xr + i + 8)));
        if (i < k) {
            float tmp[16] = {0};
            uint32_t out[8];
            memcpy(tmp, xr + i, (k - i) * sizeof(float));
            _mm256_storeu_si256((__m256i *)out, cgb_words8_avx2(_mm256_loadu_ps(tmp), _mm256_loadu_ps(tmp + 8)));
            memcpy(dst + i / 2, out, (pairs - i / 2) * sizeof(uint32_t));
        }
    }
}

CGB_AVX2 CGB_INLINE __m256 cgb_daz8(__m256 v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i tiny = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)), _mm256_setzero_si256());
    __m256i zero = _mm256_and_si256(u, _mm256_set1_epi32((int)0x80000000u));
    return _mm256_castsi256_ps(_mm256_blendv_epi8(u, zero, tiny));
}

/* acc[r][16] += the pairs [0, pc) of rows x (words, ld ldx) against 16 columns of the panel slice w. */
CGB_AVX2 __attribute__((noinline)) static void cgb_tile4x16(int R, size_t pc, const uint32_t *x, size_t ldx,
                                                           const uint32_t *w, float acc[4][16]) {
    __m256 c[4][2];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 2; j++) c[r][j] = _mm256_loadu_ps(acc[r] + 8 * j);
    const __m256i high = _mm256_set1_epi32((int)0xffff0000u);
    for (size_t i = 0; i < pc; i++) {
        const uint32_t *wi = w + i * CGB_NR;
        __m256i w0 = _mm256_loadu_si256((const __m256i *)wi), w1 = _mm256_loadu_si256((const __m256i *)(wi + 8));
        __m256 o0 = _mm256_castsi256_ps(_mm256_and_si256(w0, high)), o1 = _mm256_castsi256_ps(_mm256_and_si256(w1, high));
        __m256 e0 = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16)), e1 = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
        for (int r = 0; r < 4; r++) {
            if (r >= R) break;
            __m256i xw = _mm256_set1_epi32((int)x[(size_t)r * ldx + i]);
            __m256 xo = _mm256_castsi256_ps(_mm256_and_si256(xw, high)), xe = _mm256_castsi256_ps(_mm256_slli_epi32(xw, 16));
            c[r][0] = cgb_daz8(_mm256_fmadd_ps(xo, o0, c[r][0]));
            c[r][1] = cgb_daz8(_mm256_fmadd_ps(xo, o1, c[r][1]));
            c[r][0] = cgb_daz8(_mm256_fmadd_ps(xe, e0, c[r][0]));
            c[r][1] = cgb_daz8(_mm256_fmadd_ps(xe, e1, c[r][1]));
        }
    }
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 2; j++) _mm256_storeu_ps(acc[r] + 8 * j, c[r][j]);
}

CGB_AVX2 void cgb_gemm_packed_avx2(size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb, const uint32_t *packed,
                                   const float *bias, int epilogue, const float *residual, size_t ldr, float *y,
                                   size_t ldy, size_t n_begin, size_t n_end) {
    (void)n;
    const size_t pairs = cgb_pairs(k), stride = CGB_NR * pairs;
    const int use_bias = bias != NULL && epilogue >= CG_EPILOGUE_BIAS && epilogue <= CG_EPILOGUE_BIAS_RESIDUAL;
    const int use_res = epilogue == CG_EPILOGUE_BIAS_RESIDUAL;
    for (size_t o0 = n_begin; o0 < n_end; o0 += 16) {
        const size_t cols = n_end - o0 < 16 ? n_end - o0 : 16;
        const uint32_t *wp = packed + (o0 / CGB_NR) * stride + o0 % CGB_NR;
        for (size_t r0 = 0; r0 < m; r0 += 4) {
            const int R = m - r0 < 4 ? (int)(m - r0) : 4;
            float acc[4][16] = {{0}};
            for (int r = 0; r < R; r++)
                for (size_t j = 0; j < cols; j++) {
                    float a = use_bias ? bias[o0 + j] : 0.0f;
                    if (use_res) {
                        float res = residual[(r0 + r) * ldr + o0 + j];
                        a = use_bias ? a + res : res;
                    }
                    acc[r][j] = cgb_daz(a);
                }
            for (size_t k0 = 0; k0 < pairs; k0 += CGB2_KC) {
                size_t pc = pairs - k0 < CGB2_KC ? pairs - k0 : CGB2_KC;
                cgb_tile4x16(R, pc, xb + r0 * ldxb + k0, ldxb, wp + k0 * CGB_NR, acc);
            }
            for (int r = 0; r < R; r++) {
                float *yr = y + (r0 + r) * ldy + o0;
                memcpy(yr, acc[r], cols * sizeof(float));
                if (epilogue == CG_EPILOGUE_BIAS_GELU) cg_gelu_avx2(yr, yr, cols);
            }
        }
    }
}

#endif
