/* AVX-512 VNNI kernel of the int8 product on packed weights (x86-64 only). Compiled without -mavx512*:
 * each function carries a target attribute and is only called after the run-time check in quant.c.
 * The result is bit-identical to dq_gemm_int8_scalar and dq_gemm_int8_packed_scalar (see
 * include/cquantkernels.h, "PACKED INT8 LAYOUT"). */
#include "quant_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#pragma STDC FP_CONTRACT OFF

#define DQ_AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
#define DQ_INLINE static inline __attribute__((always_inline))

/* Register tile: P8_TR activation rows × P8_TC panels (16 output channels each): 24 zmm accumulators,
 * 3 weight vectors and 1 broadcast of 4 activation bytes; per group of 4 k: 3 loads of 64 bytes, 8
 * vpbroadcastd and 24 vpdpbusd (1536 multiply-adds). Measured on the 2-core EPYC (Zen 5), 1 thread, M = 128,
 * weights hot, SwiftPM's -O2: 8×3 ~950-1010 GOPS, 6×4 and 4×6 the same within noise, 4×4 ~900-960,
 * 12×2 ~440 (it spills); the measured vpdpbusd zmm throughput of this machine is ~1030 GOPS (2 per cycle). */
#define P8_TR 8
#define P8_TC 3
/* Rows of X per block: all row tiles of a block sweep one column strip (P8_TC panels, 48·Kp bytes of
 * weights, L1 for K = 768, L2 for K = 3072) while the block's activations (<= P8_BLOCK_BYTES) stay in L2. */
#define P8_BLOCK_BYTES 524288
#define P8_MAX_BLOCK_ROWS 512
/* The first row tile of every strip reads the strip's weights from memory (each weight matrix of the
 * model is read once per forward, and the model is larger than L3): it prefetches the weight stream
 * P8_PREFETCH bytes ahead. Measured with weights cycled through 128 MB (cold), M = 128: +6%; M = 8: +40%.
 * 512, 1024, 2048, 4096 bytes were within noise of each other; a prefetch of the next strip spread over
 * the row tiles gained the same at M = 128 and nothing at M = 8. */
#define P8_PREFETCH 2048

/* ================================================================== activation quantizer (scheme 1) */

#define DQ_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))

/* max |x_j|, NaN if any element is NaN, as dq_absmax and absmax_avx2 in 16 lanes (the masked tail loads
 * zeros, which cannot raise the maximum); max is order-independent without NaN, so the same bits. */
DQ_AVX512 DQ_INLINE float absmax_avx512(const float *x, size_t k) {
    __m512 vm = _mm512_setzero_ps();
    __mmask16 nan = 0;
    size_t j = 0;
    for (; j + 16 <= k; j += 16) {
        const __m512 v = _mm512_loadu_ps(x + j);
        vm = _mm512_max_ps(_mm512_abs_ps(v), vm); /* a NaN first operand returns vm */
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    if (j < k) {
        const __mmask16 m = (__mmask16)((1u << (k - j)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + j);
        vm = _mm512_max_ps(_mm512_abs_ps(v), vm);
        nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    return nan ? NAN : _mm512_reduce_max_ps(vm);
}

/* 16 quotients x / s -> int8: the same IEEE division, round to nearest even, NaN -> 0 and clamp as
 * dq_round_clamp (and q8_lanes of the AVX2 kernel). */
DQ_AVX512 DQ_INLINE __m128i q8_lanes16(__m512 x, __m512 vs) {
    __m512 v = _mm512_roundscale_ps(_mm512_div_ps(x, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v));
}

DQ_AVX512 static float quantize_span_avx512(const float *x, size_t k, int8_t *q) {
    const float s = absmax_avx512(x, k) / 127.0f;
    if (s == 0.0f) {
        memset(q, 0, k);
        return s;
    }
    const __m512 vs = _mm512_set1_ps(s);
    size_t j = 0;
    for (; j + 16 <= k; j += 16) _mm_storeu_si128((__m128i *)(q + j), q8_lanes16(_mm512_loadu_ps(x + j), vs));
    if (j < k) {
        const __mmask16 m = (__mmask16)((1u << (k - j)) - 1);
        _mm_mask_storeu_epi8(q + j, m, q8_lanes16(_mm512_maskz_loadu_ps(m, x + j), vs));
    }
    return s;
}

DQ_AVX512 void dq_quantize_activations_int8_avx512(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                                   float *scales) {
    for (size_t r = 0; r < m; r++) scales[r] = quantize_span_avx512(x + r * ldx, k, q + r * k);
}

/* ================================================================== int8 product on packed weights */

DQ_INLINE int32_t p8_load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Y[r, 16c + lane] for the R rows at x (row stride k) and the C panels at w (panel stride pstride),
 * lanes selected by mask_first (panel 0) and mask_last (panel C-1), both for C = 1.
 * acc = Σ_k (w + 128)·x (wrapping int32 lanes, see the header), minus 128 · rowsum, is Σ_k w·x exactly. */
DQ_AVX512VNNI DQ_INLINE void p8_tile(const int PF, const int R, const int C, size_t k, const int8_t *x,
                                     const uint8_t *w, size_t pstride, const int32_t *rowsum, const float *xs,
                                     const float *ws, const float *bias, float *y, size_t ldy,
                                     __mmask16 mask_first, __mmask16 mask_last) {
    __m512i acc[P8_TR][P8_TC];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_si512();
    const size_t full = k / 4;
    for (size_t g = 0; g < full; g++, w += 64) {
        __m512i wv[P8_TC];
        for (int c = 0; c < C; c++) wv[c] = _mm512_loadu_si512((const void *)(w + (size_t)c * pstride));
        if (PF)
            for (int c = 0; c < C; c++) _mm_prefetch((const char *)(w + (size_t)c * pstride + P8_PREFETCH), _MM_HINT_T0);
        for (int r = 0; r < R; r++) {
            /* x[r, 4g .. 4g+3] in every 32-bit lane: the signed operand of vpdpbusd */
            const __m512i xb = _mm512_set1_epi32(p8_load4(x + (size_t)r * k + 4 * g));
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], wv[c], xb);
        }
    }
    if (k & 3) { /* the last, partial group: the missing activation bytes are 0 (and so are the weights) */
        __m512i wv[P8_TC];
        for (int c = 0; c < C; c++) wv[c] = _mm512_loadu_si512((const void *)(w + (size_t)c * pstride));
        for (int r = 0; r < R; r++) {
            int32_t v = 0;
            memcpy(&v, x + (size_t)r * k + 4 * full, k & 3);
            const __m512i xb = _mm512_set1_epi32(v);
            for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], wv[c], xb);
        }
    }
    /* Epilogue, the scalar reference's operations: s = xs[r] · ws[o]; v = s · (float)acc; v = v + bias[o]
     * (separate multiplies and add, no FMA; vcvtdq2ps rounds to nearest even like the C conversion).
     * Masked loads never touch ws / bias / y outside the selected lanes. */
    for (int r = 0; r < R; r++) {
        const __m512i corr = _mm512_set1_epi32((int32_t)((uint32_t)rowsum[r] << 7));
        const __m512 sx = _mm512_set1_ps(xs[r]);
        float *yr = y + (size_t)r * ldy;
        for (int c = 0; c < C; c++) {
            __mmask16 mk = 0xFFFF;
            if (c == 0) mk &= mask_first;
            if (c == C - 1) mk &= mask_last;
            const __m512 s = _mm512_mul_ps(sx, _mm512_maskz_loadu_ps(mk, ws + 16 * c));
            __m512 v = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][c], corr)));
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, bias + 16 * c));
            _mm512_mask_storeu_ps(yr + 16 * c, mk, v);
        }
    }
}

/* rowsum[r] = Σ_j x[r, j] (exact: |sum| <= 127·k). vpdpbusd with all-ones unsigned bytes sums 4 signed
 * bytes per lane. */
DQ_AVX512VNNI static void p8_rowsums(size_t m, size_t k, const int8_t *x, int32_t *rowsum) {
    const __m512i ones = _mm512_set1_epi8(1);
    for (size_t r = 0; r < m; r++) {
        const int8_t *xr = x + r * k;
        __m512i a = _mm512_setzero_si512();
        size_t j = 0;
        for (; j + 64 <= k; j += 64) a = _mm512_dpbusd_epi32(a, ones, _mm512_loadu_si512((const void *)(xr + j)));
        int32_t s = _mm512_reduce_add_epi32(a);
        for (; j < k; j++) s += xr[j];
        rowsum[r] = s;
    }
}

#define P8_TILE(PF, RR, CC)                                                                                      \
    p8_tile(PF, RR, CC, k, xr, w, pstride, rowsum + (r - r0), xs + r, ws + o, bias ? bias + o : NULL, yr, ldy, \
            mfirst, mlast)
#define P8_ROWS(PF, CC)                                                                                          \
    switch (R) {                                                                                                 \
    case 8: P8_TILE(PF, 8, CC); break;                                                                           \
    case 7: P8_TILE(PF, 7, CC); break;                                                                           \
    case 6: P8_TILE(PF, 6, CC); break;                                                                           \
    case 5: P8_TILE(PF, 5, CC); break;                                                                           \
    case 4: P8_TILE(PF, 4, CC); break;                                                                           \
    case 3: P8_TILE(PF, 3, CC); break;                                                                           \
    case 2: P8_TILE(PF, 2, CC); break;                                                                           \
    default: P8_TILE(PF, 1, CC); break;                                                                          \
    }
#define P8_COLS(PF)                                                                                              \
    switch (C) {                                                                                                 \
    case 3: P8_ROWS(PF, 3) break;                                                                                \
    case 2: P8_ROWS(PF, 2) break;                                                                                \
    default: P8_ROWS(PF, 1) break;                                                                               \
    }

DQ_AVX512VNNI void dq_gemm_int8_packed_avx512vnni(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                                  const uint8_t *packed, const float *ws, const float *bias,
                                                  float *y, size_t ldy, size_t n_begin, size_t n_end) {
    if (n_end > n) n_end = n;
    if (m == 0 || n_begin >= n_end) return;
    const size_t kg = (k + 3) / 4, pstride = kg * 64;
    const size_t p_begin = n_begin / DQ_INT8_PANEL, p_end = (n_end + DQ_INT8_PANEL - 1) / DQ_INT8_PANEL;
    /* Row blocks: as many rows as fit P8_BLOCK_BYTES of activations, balanced, multiples of P8_TR. */
    size_t max_rows = (P8_BLOCK_BYTES / (kg * 4 + 1)) / P8_TR * P8_TR;
    if (max_rows < P8_TR) max_rows = P8_TR;
    if (max_rows > P8_MAX_BLOCK_ROWS) max_rows = P8_MAX_BLOCK_ROWS;
    const size_t blocks = (m + max_rows - 1) / max_rows;
    size_t mb = ((m + blocks - 1) / blocks + P8_TR - 1) / P8_TR * P8_TR;
    if (mb > P8_MAX_BLOCK_ROWS) mb = P8_MAX_BLOCK_ROWS;
    int32_t rowsum[P8_MAX_BLOCK_ROWS];
    for (size_t r0 = 0; r0 < m; r0 += mb) {
        const size_t r1 = r0 + mb < m ? r0 + mb : m;
        p8_rowsums(r1 - r0, k, xq + r0 * k, rowsum);
        for (size_t p = p_begin; p < p_end; p += P8_TC) {
            const int C = p_end - p < P8_TC ? (int)(p_end - p) : P8_TC;
            const size_t o = p * DQ_INT8_PANEL;
            const size_t first_lo = n_begin > o ? n_begin - o : 0;
            const size_t last_o = (p + (size_t)C - 1) * DQ_INT8_PANEL;
            const size_t last_hi = n_end - last_o; /* 1 ..= 16 */
            const __mmask16 mfirst = (__mmask16)(0xFFFFu << first_lo);
            const __mmask16 mlast = (__mmask16)(last_hi >= 16 ? 0xFFFFu : (1u << last_hi) - 1);
            const uint8_t *w = packed + p * pstride;
            for (size_t r = r0; r < r1; r += P8_TR) {
                const int R = r1 - r < P8_TR ? (int)(r1 - r) : P8_TR;
                const int8_t *xr = xq + r * k;
                float *yr = y + r * ldy + o;
                if (r == r0) {
                    P8_COLS(1)
                } else {
                    P8_COLS(0)
                }
            }
        }
    }
}

/* ================================================================== q4 on packed weights */

/* Register tile: Q4P_TR rows × Q4P_TC panels: 8 int32 block sums and 8 float partial sums (the current
 * residue class mod 8), 4 nibble vectors, 1 broadcast. */
#define Q4P_TR 4
#define Q4P_TC 2
/* Rows per block: their 8·Σqx per block (int32 [rows][nb]) on the stack, at most Q4P_BSUMS values. */
#define Q4P_BSUMS 16384
#define Q4P_MAX_BLOCK_ROWS 256

/* Y for the R rows at x (row stride kp, block sums bs8 with row stride nb, scales xs row stride nb) and the C
 * panels at w / ps (panel strides pstride bytes / sstride floats), lanes masked as in p8_tile. */
DQ_AVX512VNNI DQ_INLINE void q4p_tile(const int R, const int C, size_t nb, size_t kp, const int8_t *x,
                                      const int32_t *bs8, const float *xs, const uint8_t *w, size_t pstride,
                                      const float *ps, size_t sstride, const float *bias, float *y, size_t ldy,
                                      __mmask16 mask_first, __mmask16 mask_last) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 part[8][Q4P_TR][Q4P_TC];
    for (int l = 0; l < 8; l++) {
        __m512 P[Q4P_TR][Q4P_TC];
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) P[r][c] = _mm512_setzero_ps();
        for (size_t b = (size_t)l; b < nb; b += 8) {
            __m512i acc[Q4P_TR][Q4P_TC];
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_si512();
            const uint8_t *wb = w + b * 256;
            const int8_t *xb = x + b * DQ_BLOCK;
            for (int h = 0; h < 4; h++) {
                __m512i lo[Q4P_TC], hi[Q4P_TC];
                for (int c = 0; c < C; c++) {
                    const __m512i v = _mm512_loadu_si512((const void *)(wb + (size_t)c * pstride + h * 64));
                    lo[c] = _mm512_and_si512(v, m4);
                    hi[c] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                }
                for (int r = 0; r < R; r++) {
                    const __m512i x0 = _mm512_set1_epi32(p8_load4(xb + (size_t)r * kp + 8 * h));
                    for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], lo[c], x0);
                    const __m512i x1 = _mm512_set1_epi32(p8_load4(xb + (size_t)r * kp + 8 * h + 4));
                    for (int c = 0; c < C; c++) acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], hi[c], x1);
                }
            }
            /* t_b = (d_w · d_x) · (float)(Σ code·qx − 8·Σqx), added to P[b mod 8]: the scalar's operations */
            for (int r = 0; r < R; r++) {
                const __m512i corr = _mm512_set1_epi32(bs8[(size_t)r * nb + b]);
                const __m512 sx = _mm512_set1_ps(xs[(size_t)r * nb + b]);
                for (int c = 0; c < C; c++) {
                    const __m512 s = _mm512_mul_ps(_mm512_loadu_ps(ps + (size_t)c * sstride + b * DQ_Q4_PANEL), sx);
                    const __m512 t = _mm512_mul_ps(s, _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][c], corr)));
                    P[r][c] = _mm512_add_ps(P[r][c], t);
                }
            }
        }
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) part[l][r][c] = P[r][c];
    }
    for (int r = 0; r < R; r++) {
        float *yr = y + (size_t)r * ldy;
        for (int c = 0; c < C; c++) {
            __mmask16 mk = 0xFFFF;
            if (c == 0) mk &= mask_first;
            if (c == C - 1) mk &= mask_last;
            /* ((P0 + P4) + (P2 + P6)) + ((P1 + P5) + (P3 + P7)), dq_q4_tree lane by lane */
            const __m512 a = _mm512_add_ps(_mm512_add_ps(part[0][r][c], part[4][r][c]), _mm512_add_ps(part[2][r][c], part[6][r][c]));
            const __m512 d = _mm512_add_ps(_mm512_add_ps(part[1][r][c], part[5][r][c]), _mm512_add_ps(part[3][r][c], part[7][r][c]));
            __m512 v = _mm512_add_ps(a, d);
            if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, bias + 16 * c));
            _mm512_mask_storeu_ps(yr + 16 * c, mk, v);
        }
    }
}

#define Q4P_TILE(RR, CC)                                                                                          \
    q4p_tile(RR, CC, nb, kp, xq + r * kp, bs8 + (r - r0) * nb, xs + r * nb, w, pstride, ps, sstride,               \
             bias ? bias + o : NULL, yr, ldy, mfirst, mlast)
#define Q4P_ROWS(CC)                                                                                              \
    switch (R) {                                                                                                  \
    case 4: Q4P_TILE(4, CC); break;                                                                               \
    case 3: Q4P_TILE(3, CC); break;                                                                               \
    case 2: Q4P_TILE(2, CC); break;                                                                               \
    default: Q4P_TILE(1, CC); break;                                                                              \
    }

DQ_AVX512VNNI void dq_gemm_q4_packed_avx512vnni(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                                const uint8_t *packed, const float *pscales, const float *bias,
                                                float *y, size_t ldy, size_t n_begin, size_t n_end) {
    if (n_end > n) n_end = n;
    if (m == 0 || n_begin >= n_end) return;
    const size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK;
    size_t max_rows = Q4P_BSUMS / (nb ? nb : 1) / Q4P_TR * Q4P_TR;
    if (max_rows > Q4P_MAX_BLOCK_ROWS) max_rows = Q4P_MAX_BLOCK_ROWS;
    if (max_rows < Q4P_TR) { /* K beyond ~500k: no room for the block sums of one tile */
        dq_gemm_q4_packed_scalar(m, n, k, xq, xs, packed, pscales, bias, y, ldy, n_begin, n_end);
        return;
    }
    const size_t pstride = nb * 256, sstride = nb * DQ_Q4_PANEL;
    const size_t p_begin = n_begin / DQ_Q4_PANEL, p_end = (n_end + DQ_Q4_PANEL - 1) / DQ_Q4_PANEL;
    int32_t bs8[Q4P_BSUMS];
    for (size_t r0 = 0; r0 < m; r0 += max_rows) {
        const size_t r1 = r0 + max_rows < m ? r0 + max_rows : m;
        /* 8 · Σ_j qx over every block of the rows (exact) */
        const __m256i ones = _mm256_set1_epi8(1);
        for (size_t r = r0; r < r1; r++)
            for (size_t b = 0; b < nb; b++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(xq + r * kp + b * DQ_BLOCK));
                const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, v);
                __m128i q = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4E));
                q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xB1));
                bs8[(r - r0) * nb + b] = _mm_cvtsi128_si32(q) * 8;
            }
        for (size_t p = p_begin; p < p_end; p += Q4P_TC) {
            const int C = p_end - p < Q4P_TC ? (int)(p_end - p) : Q4P_TC;
            const size_t o = p * DQ_Q4_PANEL;
            const size_t first_lo = n_begin > o ? n_begin - o : 0;
            const size_t last_o = (p + (size_t)C - 1) * DQ_Q4_PANEL;
            const size_t last_hi = n_end - last_o;
            const __mmask16 mfirst = (__mmask16)(0xFFFFu << first_lo);
            const __mmask16 mlast = (__mmask16)(last_hi >= 16 ? 0xFFFFu : (1u << last_hi) - 1);
            const uint8_t *w = packed + p * pstride;
            const float *ps = pscales + p * sstride;
            for (size_t r = r0; r < r1; r += Q4P_TR) {
                const int R = r1 - r < Q4P_TR ? (int)(r1 - r) : Q4P_TR;
                float *yr = y + r * ldy + o;
                if (C == 2) {
                    Q4P_ROWS(2)
                } else {
                    Q4P_ROWS(1)
                }
            }
        }
    }
}

#else
typedef int dq_avx512_unused_t; /* keep the translation unit non-empty on other targets */
#endif /* __x86_64__ */
