/* AVX-512 bf16 products (x86-64 only): the vdpbf16ps kernel (AVX-512 BF16) and its AVX-512 F emulation, and the
 * activation rounding. Compiled without -mavx512*: every function carries a target attribute and runs only after
 * the run-time check in gemm_bf16.c. Bit-identical to cgb_gemm_packed_scalar (include/cgemm_bf16.h).
 *
 * Register tile: up to 8 rows x one 48-column panel = 24 zmm accumulators; per pair of k, 3 loads of W (48 words:
 * 48 columns x 2 k), per row one broadcast of the row's word (2 bf16 of X) and 3 vdpbf16ps. The emulation widens
 * the bf16 halves with integer shifts (odd element = word & 0xffff0000, even = word << 16) and does the two fmas
 * of each pair in vdpbf16ps's order, flushing subnormal sums to zero after each (exponent-field test). Blocking:
 * K blocks of at most CGB512_KC pairs (panel slice 48 x KC words in L2), blocks of CGB512_MC rows. Partial sums
 * between K blocks are stored in Y and reloaded; bias / residual form the first block's accumulators; the GELU
 * (cg_gelu_avx512, the f32 product's) is applied to a tile after its last block. */
#include "gemm_bf16_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

#define CGB_AVX512 __attribute__((target("avx512f,avx2,fma")))
#define CGB_NATIVE __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")))
#define CGB_INLINE static inline __attribute__((always_inline))

#ifndef CGB512_KC
#define CGB512_KC 384 /* pairs: panel slice 48 x 384 x 4 = 72 KiB */
#endif
#ifndef CGB512_MC
#define CGB512_MC 128 /* rows: X block 128 x 384 x 4 = 192 KiB */
#endif

enum { CGB_LOAD = 0, CGB_ZERO = 1, CGB_BIAS = 2, CGB_BIAS_RES = 3, CGB_RES = 4 };

/* ================================================================== rounding f32 -> bf16 */

/* 16 lanes of cgb_round_bits: bf16 bits in the low half of each dword. */
CGB_AVX512 CGB_INLINE __m512i cgb_round16(__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i absu = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    const __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(absu, _mm512_set1_epi32(0x7f800000));
    const __m512i hi = _mm512_srli_epi32(u, 16);
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), _mm512_and_si512(hi, _mm512_set1_epi32(1)));
    r = _mm512_srli_epi32(r, 16);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    r = _mm512_mask_mov_epi32(r, tiny, _mm512_srli_epi32(_mm512_and_si512(u, _mm512_set1_epi32((int)0x80000000u)), 16));
    return r;
}

/* 16 floats -> 8 words (element 2i in the low half, 2i + 1 in the high half). */
CGB_AVX512 CGB_INLINE __m256i cgb_words8(__m512 v) {
    __m512i r = cgb_round16(v);
    return _mm512_cvtepi64_epi32(_mm512_or_si512(r, _mm512_srli_epi64(r, 16)));
}

CGB_AVX512 void cgb_round_rows_avx512(const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb) {
    const size_t pairs = cgb_pairs(k);
    for (size_t r = 0; r < m; r++) {
        const float *xr = x + r * ldx;
        uint32_t *dst = xb + r * ldxb;
        size_t i = 0;
        for (; i + 16 <= k; i += 16) _mm256_storeu_si256((__m256i *)(dst + i / 2), cgb_words8(_mm512_loadu_ps(xr + i)));
        if (i < k) {
            __mmask16 lm = (__mmask16)((1u << (k - i)) - 1);
            __m256i w = cgb_words8(_mm512_maskz_loadu_ps(lm, xr + i));
            __mmask16 sm = (__mmask16)((1u << (pairs - i / 2)) - 1);
            _mm512_mask_storeu_epi32(dst + i / 2, sm, _mm512_castsi256_si512(w));
        }
    }
}

/* ================================================================== products */

/* v with subnormals (exponent field 0) replaced by zero of the same sign. */
CGB_AVX512 CGB_INLINE __m512 cgb_daz16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    return _mm512_castsi512_ps(_mm512_mask_and_epi32(u, tiny, u, _mm512_set1_epi32((int)0x80000000u)));
}

/* The accumulators of an R x 48 tile: reloaded partial sums, or the first block's initial value (flushed). */
CGB_AVX512 CGB_INLINE void cgb_init_tile(int R, __m512 c[8][3], const __mmask16 mk[3], int init, const float *y,
                                         size_t ldy, const float *bias, const float *res, size_t ldr) {
    if (init == CGB_LOAD) {
        for (int r = 0; r < R; r++)
            for (int j = 0; j < 3; j++) c[r][j] = _mm512_maskz_loadu_ps(mk[j], y + (size_t)r * ldy + 16 * j);
        return;
    }
    __m512 b[3];
    for (int j = 0; j < 3; j++)
        b[j] = (init == CGB_BIAS || init == CGB_BIAS_RES) ? _mm512_maskz_loadu_ps(mk[j], bias + 16 * j) : _mm512_setzero_ps();
    for (int r = 0; r < R; r++)
        for (int j = 0; j < 3; j++) {
            __m512 v = b[j];
            if (init == CGB_BIAS_RES || init == CGB_RES) {
                __m512 rv = _mm512_maskz_loadu_ps(mk[j], res + (size_t)r * ldr + 16 * j);
                v = init == CGB_RES ? rv : _mm512_add_ps(b[j], rv);
            }
            c[r][j] = cgb_daz16(v);
        }
}

CGB_AVX512 CGB_INLINE void cgb_store_tile(int R, __m512 c[8][3], const __mmask16 mk[3], float *y, size_t ldy,
                                          size_t cols, int gelu) {
    for (int r = 0; r < R; r++)
        for (int j = 0; j < 3; j++) _mm512_mask_storeu_ps(y + (size_t)r * ldy + 16 * j, mk[j], c[r][j]);
    if (gelu)
        for (int r = 0; r < R; r++) cg_gelu_avx512(y + (size_t)r * ldy, y + (size_t)r * ldy, cols);
}

/* The masks of a tile's three 16-column vectors when only `cols` of its 48 columns are stored. */
CGB_AVX512 CGB_INLINE void cgb_column_masks(size_t cols, __mmask16 mk[3]) {
    for (int j = 0; j < 3; j++) {
        size_t c0 = 16 * (size_t)j, left = cols > c0 ? cols - c0 : 0;
        mk[j] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
    }
}

/* One tile over pc pairs: x rows of words at x + r·ldx, w the panel slice (48 words per pair). */
CGB_NATIVE CGB_INLINE void cgb_tile_native(int R, size_t pc, const uint32_t *x, size_t ldx, const uint32_t *w, float *y,
                                           size_t ldy, size_t cols, int init, const float *bias, const float *res,
                                           size_t ldr, int gelu) {
    __mmask16 mk[3];
    cgb_column_masks(cols, mk);
    __m512 c[8][3];
    cgb_init_tile(R, c, mk, init, y, ldy, bias, res, ldr);
    for (size_t i = 0; i < pc; i++) {
        const uint32_t *wi = w + i * CGB_NR;
        __m512bh w0 = (__m512bh)_mm512_loadu_si512(wi), w1 = (__m512bh)_mm512_loadu_si512(wi + 16),
                 w2 = (__m512bh)_mm512_loadu_si512(wi + 32);
        for (int r = 0; r < R; r++) {
            __m512bh xv = (__m512bh)_mm512_set1_epi32((int)x[(size_t)r * ldx + i]);
            c[r][0] = _mm512_dpbf16_ps(c[r][0], xv, w0);
            c[r][1] = _mm512_dpbf16_ps(c[r][1], xv, w1);
            c[r][2] = _mm512_dpbf16_ps(c[r][2], xv, w2);
        }
    }
    cgb_store_tile(R, c, mk, y, ldy, cols, gelu);
}

CGB_AVX512 CGB_INLINE void cgb_tile_emulated(int R, size_t pc, const uint32_t *x, size_t ldx, const uint32_t *w, float *y,
                                             size_t ldy, size_t cols, int init, const float *bias, const float *res,
                                             size_t ldr, int gelu) {
    __mmask16 mk[3];
    cgb_column_masks(cols, mk);
    __m512 c[8][3];
    cgb_init_tile(R, c, mk, init, y, ldy, bias, res, ldr);
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    for (size_t i = 0; i < pc; i++) {
        const uint32_t *wi = w + i * CGB_NR;
        __m512i w0 = _mm512_loadu_si512(wi), w1 = _mm512_loadu_si512(wi + 16), w2 = _mm512_loadu_si512(wi + 32);
        /* the odd elements first, as vdpbf16ps */
        __m512 o0 = _mm512_castsi512_ps(_mm512_and_si512(w0, high)), o1 = _mm512_castsi512_ps(_mm512_and_si512(w1, high)),
               o2 = _mm512_castsi512_ps(_mm512_and_si512(w2, high));
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_castsi512_ps(_mm512_and_si512(_mm512_set1_epi32((int)x[(size_t)r * ldx + i]), high));
            c[r][0] = cgb_daz16(_mm512_fmadd_ps(xv, o0, c[r][0]));
            c[r][1] = cgb_daz16(_mm512_fmadd_ps(xv, o1, c[r][1]));
            c[r][2] = cgb_daz16(_mm512_fmadd_ps(xv, o2, c[r][2]));
        }
        __m512 e0 = _mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)), e1 = _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)),
               e2 = _mm512_castsi512_ps(_mm512_slli_epi32(w2, 16));
        for (int r = 0; r < R; r++) {
            __m512 xv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_set1_epi32((int)x[(size_t)r * ldx + i]), 16));
            c[r][0] = cgb_daz16(_mm512_fmadd_ps(xv, e0, c[r][0]));
            c[r][1] = cgb_daz16(_mm512_fmadd_ps(xv, e1, c[r][1]));
            c[r][2] = cgb_daz16(_mm512_fmadd_ps(xv, e2, c[r][2]));
        }
    }
    cgb_store_tile(R, c, mk, y, ldy, cols, gelu);
}

#define CGB_TILE_ARGS size_t pc, const uint32_t *x, size_t ldx, const uint32_t *w, float *y, size_t ldy, size_t cols, \
                      int init, const float *bias, const float *res, size_t ldr, int gelu
#define CGB_TILE_PASS pc, x, ldx, w, y, ldy, cols, init, bias, res, ldr, gelu

/* Row counts 1..8 as compile-time constants, so that the tile's loops unroll and its accumulators stay in
 * registers. */
CGB_NATIVE __attribute__((noinline)) static void cgb_tile_native_rows(int R, CGB_TILE_ARGS) {
    switch (R) {
    case 8: cgb_tile_native(8, CGB_TILE_PASS); break;
    case 7: cgb_tile_native(7, CGB_TILE_PASS); break;
    case 6: cgb_tile_native(6, CGB_TILE_PASS); break;
    case 5: cgb_tile_native(5, CGB_TILE_PASS); break;
    case 4: cgb_tile_native(4, CGB_TILE_PASS); break;
    case 3: cgb_tile_native(3, CGB_TILE_PASS); break;
    case 2: cgb_tile_native(2, CGB_TILE_PASS); break;
    default: cgb_tile_native(1, CGB_TILE_PASS); break;
    }
}

CGB_AVX512 __attribute__((noinline)) static void cgb_tile_emulated_rows(int R, CGB_TILE_ARGS) {
    switch (R) {
    case 8: cgb_tile_emulated(8, CGB_TILE_PASS); break;
    case 7: cgb_tile_emulated(7, CGB_TILE_PASS); break;
    case 6: cgb_tile_emulated(6, CGB_TILE_PASS); break;
    case 5: cgb_tile_emulated(5, CGB_TILE_PASS); break;
    case 4: cgb_tile_emulated(4, CGB_TILE_PASS); break;
    case 3: cgb_tile_emulated(3, CGB_TILE_PASS); break;
    case 2: cgb_tile_emulated(2, CGB_TILE_PASS); break;
    default: cgb_tile_emulated(1, CGB_TILE_PASS); break;
    }
}

CGB_AVX512 void cgb_gemm_packed_avx512(int native, size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb,
                                       const uint32_t *packed, const float *bias, int epilogue, const float *residual,
                                       size_t ldr, float *y, size_t ldy, size_t n_begin, size_t n_end) {
    (void)n;
    const size_t pairs = cgb_pairs(k), stride = CGB_NR * pairs;
    const size_t nkb = (pairs + CGB512_KC - 1) / CGB512_KC;
    const size_t kc_base = (pairs + nkb - 1) / nkb;
    const int use_bias = bias != NULL && epilogue >= CG_EPILOGUE_BIAS && epilogue <= CG_EPILOGUE_BIAS_RESIDUAL;
    const int use_res = epilogue == CG_EPILOGUE_BIAS_RESIDUAL;
    const int first_init = use_res ? (use_bias ? CGB_BIAS_RES : CGB_RES) : (use_bias ? CGB_BIAS : CGB_ZERO);
    for (size_t k0 = 0; k0 < pairs; k0 += kc_base) {
        const size_t pc = pairs - k0 < kc_base ? pairs - k0 : kc_base;
        const int init = k0 == 0 ? first_init : CGB_LOAD;
        const int gelu = k0 + pc == pairs && epilogue == CG_EPILOGUE_BIAS_GELU;
        for (size_t m0 = 0; m0 < m; m0 += CGB512_MC) {
            const size_t m1 = m - m0 < CGB512_MC ? m : m0 + CGB512_MC;
            for (size_t o0 = n_begin; o0 < n_end; o0 += CGB_NR) {
                const size_t cols = n_end - o0 < CGB_NR ? n_end - o0 : CGB_NR;
                const uint32_t *wp = packed + (o0 / CGB_NR) * stride + k0 * CGB_NR;
                for (size_t r0 = m0; r0 < m1; r0 += 8) {
                    const int R = m1 - r0 < 8 ? (int)(m1 - r0) : 8;
                    const float *bp = use_bias ? bias + o0 : NULL;
                    const float *rp = use_res ? residual + r0 * ldr + o0 : NULL;
                    if (native)
                        cgb_tile_native_rows(R, pc, xb + r0 * ldxb + k0, ldxb, wp, y + r0 * ldy + o0, ldy, cols, init, bp,
                                             rp, ldr, gelu);
                    else
                        cgb_tile_emulated_rows(R, pc, xb + r0 * ldxb + k0, ldxb, wp, y + r0 * ldy + o0, ldy, cols, init,
                                               bp, rp, ldr, gelu);
                }
            }
        }
    }
}

#endif
