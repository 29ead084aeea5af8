/* AVX2 kernels (x86-64 only). Compiled without -mavx2: each function carries a target attribute and
 * is only called after the run-time check in quant.c. Every result is bit-identical to the scalar
 * reference in quant.c (see include/cquantkernels.h). */
#include "quant_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>

#pragma STDC FP_CONTRACT OFF

#define DQ_AVX2 __attribute__((target("avx2,fma,f16c")))
#define DQ_INLINE static inline __attribute__((always_inline))

/* ================================================================== activation quantizers */

DQ_AVX2 DQ_INLINE float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* max |x_j| over k elements, NaN if any element is NaN, as dq_absmax: _mm256_max_ps(a, b) returns b
 * when a is NaN, so the new value goes first and NaNs are tracked separately. Max is
 * order-independent (no NaN, no -0 after fabs), so this equals dq_absmax bit for bit. */
DQ_AVX2 DQ_INLINE float absmax_avx2(const float *x, size_t k) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 vm = _mm256_setzero_ps(), vnan = _mm256_setzero_ps();
    size_t j = 0;
    for (; j + 8 <= k; j += 8) {
        __m256 v = _mm256_loadu_ps(x + j);
        vm = _mm256_max_ps(_mm256_and_ps(v, absmask), vm);
        vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    float amax = hmax8(vm);
    int nan = _mm256_movemask_ps(vnan) != 0;
    for (; j < k; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
        else if (a != a) nan = 1;
    }
    return nan ? NAN : amax;
}

/* 8 quotients x / s -> int32 in [-127, 127]: the same IEEE division, round to nearest even, NaN -> 0,
 * clamp, as dq_round_clamp. */
DQ_AVX2 DQ_INLINE __m256i q8_lanes(__m256 x, __m256 vs) {
    __m256 v = _mm256_div_ps(x, vs);
    v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
    return _mm256_cvtps_epi32(v);
}

/* 32 floats -> 32 int8 in order. */
DQ_AVX2 DQ_INLINE void q8_store32(const float *x, __m256 vs, int8_t *q) {
    __m256i i0 = q8_lanes(_mm256_loadu_ps(x), vs);
    __m256i i1 = q8_lanes(_mm256_loadu_ps(x + 8), vs);
    __m256i i2 = q8_lanes(_mm256_loadu_ps(x + 16), vs);
    __m256i i3 = q8_lanes(_mm256_loadu_ps(x + 24), vs);
    /* packs work per 128-bit lane: the bytes come out as dwords [i0lo i1lo i2lo i3lo | i0hi ...] */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
}

/* One span with scale amax / 127, as dq_quantize_span_scalar. */
DQ_AVX2 static float quantize_span_avx2(const float *x, size_t k, int8_t *q) {
    float s = absmax_avx2(x, k) / 127.0f;
    if (s == 0.0f) {
        memset(q, 0, k);
        return s;
    }
    __m256 vs = _mm256_set1_ps(s);
    size_t j = 0;
    for (; j + 32 <= k; j += 32) q8_store32(x + j, vs, q + j);
    for (; j < k; j++) q[j] = dq_round_clamp(x[j] / s);
    return s;
}

DQ_AVX2 void dq_quantize_activations_int8_avx2(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                               float *scales) {
    for (size_t r = 0; r < m; r++) scales[r] = quantize_span_avx2(x + r * ldx, k, q + r * k);
}

DQ_AVX2 void dq_quantize_activations_q8_blocks_avx2(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                                    float *scales) {
    size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK, full = k / DQ_BLOCK;
    for (size_t r = 0; r < m; r++) {
        const float *xr = x + r * ldx;
        int8_t *qr = q + r * kp;
        float *sr = scales + r * nb;
        for (size_t b = 0; b < full; b++) sr[b] = quantize_span_avx2(xr + b * DQ_BLOCK, DQ_BLOCK, qr + b * DQ_BLOCK);
        if (full < nb) {
            size_t j0 = full * DQ_BLOCK;
            sr[full] = dq_quantize_span_scalar(xr + j0, k - j0, qr + j0);
            memset(qr + k, 0, kp - k);
        }
    }
}

/* ================================================================== int8 product */

/* Register tile: I8_TR activation rows × I8_TC weight rows (output channels): 2×4 = 8 int32
 * accumulators, 4 weight chunks, x, |x|, a product and the ones vector fit the 16 ymm registers.
 * Each inner step is 4 instructions per 32 multiply-adds (vpsignb, vpmaddubsw, vpmaddwd, vpaddd),
 * the floor for ±127 operands without VNNI. Measured (2-core EPYC, 1 thread, M = 128): 2×4 and 3×4
 * both ~190 GOPS at -O3, but with the flags SwiftPM uses for C targets (-O2, frame pointer) 3×4
 * spills accumulators and drops to ~150, 2×4 stays at ~190. A sign-free variant (activations widened
 * to int16, vpmaddwd + vpaddd per 16 multiply-adds) measured ~170.
 * Column blocks of about I8_BLOCK_BYTES of weights (L2-resident) are swept by all row tiles, whose
 * I8_TR·K activation bytes stay in L1; 16 KiB blocks (L1) lost half the speed at K = 3072
 * (activations then stream from L2), 64 KiB and 192 KiB were equal. */
#ifndef I8_TR
#define I8_TR 2
#endif
#define I8_TC 4
#define I8_BLOCK_BYTES 65536

/* acc[r][c] (8 int32 lanes) += Σ over the 32-byte chunks of x_r · w_c, then the lanes are reduced
 * exactly (integer adds) and the last k mod 32 products added in scalar code. sums[r] holds the TC
 * column totals of row r. R, C are compile-time constants after inlining. */
DQ_AVX2 DQ_INLINE void i8_tile(const int R, const int C, size_t k, const int8_t *x, const int8_t *w,
                               __m128i sums[I8_TR]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[I8_TR][I8_TC];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < I8_TC; c++) acc[r][c] = _mm256_setzero_si256();
    size_t kk = 0;
    for (; kk + 32 <= k; kk += 32) {
        __m256i wv[I8_TC];
        for (int c = 0; c < C; c++) wv[c] = _mm256_loadu_si256((const __m256i *)(w + (size_t)c * k + kk));
        for (int r = 0; r < R; r++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x + (size_t)r * k + kk));
            __m256i ax = _mm256_sign_epi8(xv, xv); /* |x| as unsigned bytes (x != -128 by the clamp) */
            for (int c = 0; c < C; c++) {
                /* The sign of x moves onto w: |x|·(sign(x)·w) = x·w, and x == 0 zeroes the pair.
                 * vpmaddubsw adds adjacent u8·s8 products into int16 with saturation; with |x| <= 127
                 * and |w| <= 127 a pair is at most 2·127·127 = 32258 < 32767, so it never saturates. */
                __m256i sw = _mm256_sign_epi8(wv[c], xv);
                __m256i p16 = _mm256_maddubs_epi16(ax, sw);
                acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(p16, ones)); /* exact int32 */
            }
        }
    }
    for (int r = 0; r < R; r++) {
        /* 4 accumulators -> [Σa0, Σa1, Σa2, Σa3]: hadd within 128-bit halves, then add the halves. */
        __m256i h01 = _mm256_hadd_epi32(acc[r][0], acc[r][1]);
        __m256i h23 = _mm256_hadd_epi32(acc[r][2], acc[r][3]);
        __m256i h = _mm256_hadd_epi32(h01, h23);
        sums[r] = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    }
    if (kk < k) {
        for (int r = 0; r < R; r++) {
            int32_t t[4];
            _mm_storeu_si128((__m128i *)t, sums[r]);
            for (int c = 0; c < C; c++) {
                const int8_t *xr = x + (size_t)r * k, *wc = w + (size_t)c * k;
                int32_t s = 0;
                for (size_t j = kk; j < k; j++) s += (int32_t)xr[j] * (int32_t)wc[j];
                t[c] += s;
            }
            sums[r] = _mm_loadu_si128((const __m128i *)t);
        }
    }
}

/* Y[r0 + r, o0 + c] = (xs·ws)·(float)sum (+ bias), the same two/three f32 roundings as the scalar
 * reference (separate multiplies and add; no FMA). */
DQ_AVX2 DQ_INLINE void i8_store(const int R, const int C, const __m128i sums[I8_TR], const float *xs,
                                const float *ws, const float *bias, float *y, size_t ldy) {
    for (int r = 0; r < R; r++) {
        float *yr = y + (size_t)r * ldy;
        if (C == 4) {
            __m128 s = _mm_mul_ps(_mm_set1_ps(xs[r]), _mm_loadu_ps(ws));
            __m128 v = _mm_mul_ps(s, _mm_cvtepi32_ps(sums[r]));
            if (bias) v = _mm_add_ps(v, _mm_loadu_ps(bias));
            _mm_storeu_ps(yr, v);
        } else {
            int32_t t[4];
            _mm_storeu_si128((__m128i *)t, sums[r]);
            for (int c = 0; c < C; c++) {
                float s = xs[r] * ws[c];
                float v = s * (float)t[c];
                if (bias) v = v + bias[c];
                yr[c] = v;
            }
        }
    }
}

DQ_AVX2 DQ_INLINE void i8_block(const int R, const int C, size_t k, const int8_t *x, const float *xs,
                                const int8_t *w, const float *ws, const float *bias, float *y, size_t ldy) {
    __m128i sums[I8_TR];
    i8_tile(R, C, k, x, w, sums);
    i8_store(R, C, sums, xs, ws, bias, y, ldy);
}

/* All output channels [o0, o1) of rows [r0, r0 + R). */
#define I8_COLS(R)                                                                                       \
    do {                                                                                                 \
        size_t o = o0;                                                                                   \
        for (; o + 4 <= o1; o += 4)                                                                      \
            i8_block(R, 4, k, xr, xsr, wq + o * k, ws + o, bias ? bias + o : NULL, yr + o, ldy);         \
        switch (o1 - o) {                                                                                \
        case 3: i8_block(R, 3, k, xr, xsr, wq + o * k, ws + o, bias ? bias + o : NULL, yr + o, ldy); break; \
        case 2: i8_block(R, 2, k, xr, xsr, wq + o * k, ws + o, bias ? bias + o : NULL, yr + o, ldy); break; \
        case 1: i8_block(R, 1, k, xr, xsr, wq + o * k, ws + o, bias ? bias + o : NULL, yr + o, ldy); break; \
        default: break;                                                                                  \
        }                                                                                                \
    } while (0)

DQ_AVX2 void dq_gemm_int8_avx2(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const int8_t *wq,
                               const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin,
                               size_t n_end) {
    if (n_end > n) n_end = n;
    if (m == 0 || n_begin >= n_end) return;
    size_t nbk = k ? (I8_BLOCK_BYTES / k) & ~(size_t)3 : 64;
    if (nbk < 4) nbk = 4;
    if (nbk > 1024) nbk = 1024;
    for (size_t o0 = n_begin; o0 < n_end; o0 += nbk) {
        size_t o1 = o0 + nbk < n_end ? o0 + nbk : n_end;
        size_t r = 0;
        for (; r + I8_TR <= m; r += I8_TR) {
            const int8_t *xr = xq + r * k;
            const float *xsr = xs + r;
            float *yr = y + r * ldy;
            I8_COLS(I8_TR);
        }
        const int8_t *xr = xq + r * k;
        const float *xsr = xs + r;
        float *yr = y + r * ldy;
        switch (m - r) {
#if I8_TR > 3
        case 3: I8_COLS(3); break;
#endif
        case 2: I8_COLS(2); break;
        case 1: I8_COLS(1); break;
        default: break;
        }
    }
}

/* ================================================================== int8 product, AVX-VNNI */

/* The same tiling, blocking, reduction, scalar tail and epilogue as dq_gemm_int8_avx2; only the
 * inner product differs: {vex} vpdpbusd adds the four u8·s8 products of each 32-bit lane to the
 * int32 accumulator in one instruction (no int16 intermediate, no vpmaddwd, no separate add).
 * Same sign trick: |x| as unsigned bytes times sign(x)·w. Each lane gains at most 4·127·127 = 64516
 * per chunk and holds ceil(K/8) products in total, far from int32 overflow for K <= DQ_INT8_MAX_K
 * (the total Σ over all lanes is bounded by 127·127·K as in the scalar reference). vpdpbusd does
 * not saturate, and the integer sums are exact, so the result equals the scalar reference bit for
 * bit. */
#define DQ_VNNI __attribute__((target("avxvnni,avx2,fma,f16c")))

DQ_VNNI DQ_INLINE void i8_tile_vnni(const int R, const int C, size_t k, const int8_t *x, const int8_t *w,
                                    __m128i sums[I8_TR]) {
    __m256i acc[I8_TR][I8_TC];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < I8_TC; c++) acc[r][c] = _mm256_setzero_si256();
    size_t kk = 0;
    for (; kk + 32 <= k; kk += 32) {
        __m256i wv[I8_TC];
        for (int c = 0; c < C; c++) wv[c] = _mm256_loadu_si256((const __m256i *)(w + (size_t)c * k + kk));
        for (int r = 0; r < R; r++) {
            __m256i xv = _mm256_loadu_si256((const __m256i *)(x + (size_t)r * k + kk));
            __m256i ax = _mm256_sign_epi8(xv, xv); /* |x| as unsigned bytes (x != -128 by the clamp) */
            for (int c = 0; c < C; c++)
                acc[r][c] = _mm256_dpbusd_avx_epi32(acc[r][c], ax, _mm256_sign_epi8(wv[c], xv));
        }
    }
    for (int r = 0; r < R; r++) {
        __m256i h01 = _mm256_hadd_epi32(acc[r][0], acc[r][1]);
        __m256i h23 = _mm256_hadd_epi32(acc[r][2], acc[r][3]);
        __m256i h = _mm256_hadd_epi32(h01, h23);
        sums[r] = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    }
    if (kk < k) {
        for (int r = 0; r < R; r++) {
            int32_t t[4];
            _mm_storeu_si128((__m128i *)t, sums[r]);
            for (int c = 0; c < C; c++) {
                const int8_t *xr = x + (size_t)r * k, *wc = w + (size_t)c * k;
                int32_t s = 0;
                for (size_t j = kk; j < k; j++) s += (int32_t)xr[j] * (int32_t)wc[j];
                t[c] += s;
            }
            sums[r] = _mm_loadu_si128((const __m128i *)t);
        }
    }
}

DQ_VNNI DQ_INLINE void i8_block_vnni(const int R, const int C, size_t k, const int8_t *x, const float *xs,
                                     const int8_t *w, const float *ws, const float *bias, float *y, size_t ldy) {
    __m128i sums[I8_TR];
    i8_tile_vnni(R, C, k, x, w, sums);
    i8_store(R, C, sums, xs, ws, bias, y, ldy); /* the same epilogue as the AVX2 kernel */
}

#define I8V_COLS(R)                                                                                      \
    do {                                                                                                 \
        size_t o = o0;                                                                                   \
        for (; o + 4 <= o1; o += 4)                                                                      \
            i8_block_vnni(R, 4, k, xr, xsr, wq + o * k, ws + o, bias ? bias + o : NULL, yr + o, ldy);    \
        switch (o1 - o) {                                                                                \
        case 3: i8_block_vnni(R, 3, k, xr, xsr, wq + o * k, ws + o, bias ? bias + o : NULL, yr + o, ldy); break; \
        case 2: i8_block_vnni(R, 2, k, xr, xsr, wq + o * k, ws + o, bias ? bias + o : NULL, yr + o, ldy); break; \
        case 1: i8_block_vnni(R, 1, k, xr, xsr, wq + o * k, ws + o, bias ? bias + o : NULL, yr + o, ldy); break; \
        default: break;                                                                                  \
        }                                                                                                \
    } while (0)

DQ_VNNI void dq_gemm_int8_avxvnni(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                  const int8_t *wq, const float *ws, const float *bias, float *y, size_t ldy,
                                  size_t n_begin, size_t n_end) {
    if (n_end > n) n_end = n;
    if (m == 0 || n_begin >= n_end) return;
    size_t nbk = k ? (I8_BLOCK_BYTES / k) & ~(size_t)3 : 64;
    if (nbk < 4) nbk = 4;
    if (nbk > 1024) nbk = 1024;
    for (size_t o0 = n_begin; o0 < n_end; o0 += nbk) {
        size_t o1 = o0 + nbk < n_end ? o0 + nbk : n_end;
        size_t r = 0;
        for (; r + I8_TR <= m; r += I8_TR) {
            const int8_t *xr = xq + r * k;
            const float *xsr = xs + r;
            float *yr = y + r * ldy;
            I8V_COLS(I8_TR);
        }
        const int8_t *xr = xq + r * k;
        const float *xsr = xs + r;
        float *yr = y + r * ldy;
        switch (m - r) {
#if I8_TR > 3
        case 3: I8V_COLS(3); break;
#endif
        case 2: I8V_COLS(2); break;
        case 1: I8V_COLS(1); break;
        default: break;
        }
    }
}

/* ================================================================== int8 product on packed weights, AVX-VNNI */

/* dq_gemm_int8_packed for CPUs with AVX-VNNI but not AVX-512 (Alder Lake and later Intel clients): the
 * packed layout and arithmetic of quant_avx512.c with 256-bit {vex} vpdpbusd: a 64-byte panel group is two
 * ymm of 8 channels each. 16 ymm registers: a tile of PV_TR rows × 1 panel (12 accumulators, 2 weight
 * vectors, 1 broadcast). Measured on the Zen 5 test machine (1 thread, M = 128, weights hot): 6 rows
 * ~470-500 GOPS, 4 rows ~450-470, vs ~285 for dq_gemm_int8_avxvnni on the row-major codes. */
#define PV_TR 6
#define PV_BLOCK_BYTES 524288
#define PV_MAX_BLOCK_ROWS 510 /* a multiple of PV_TR */
#define PV_PREFETCH 2048

DQ_VNNI DQ_INLINE int32_t pv_load4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* lanes 8h .. 8h+7 of a 16-bit lane mask as a ymm of all-ones / zero dwords */
DQ_VNNI DQ_INLINE __m256i pv_lane_mask(unsigned mask16, int h) {
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i v = _mm256_set1_epi32((int)((mask16 >> (8 * h)) & 0xFF));
    return _mm256_cmpeq_epi32(_mm256_and_si256(v, bits), bits);
}

DQ_VNNI DQ_INLINE void pv_tile(const int PF, const int R, size_t k, const int8_t *x, const uint8_t *w,
                               const int32_t *rowsum, const float *xs, const float *ws, const float *bias, float *y,
                               size_t ldy, unsigned mask16) {
    __m256i acc[PV_TR][2];
    for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    const size_t full = k / 4;
    for (size_t g = 0; g < full; g++, w += 64) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)w);
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + 32));
        if (PF) _mm_prefetch((const char *)(w + PV_PREFETCH), _MM_HINT_T0);
        for (int r = 0; r < R; r++) {
            const __m256i xb = _mm256_set1_epi32(pv_load4(x + (size_t)r * k + 4 * g));
            acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], w0, xb);
            acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], w1, xb);
        }
    }
    if (k & 3) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)w);
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + 32));
        for (int r = 0; r < R; r++) {
            int32_t v = 0;
            memcpy(&v, x + (size_t)r * k + 4 * full, k & 3);
            const __m256i xb = _mm256_set1_epi32(v);
            acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], w0, xb);
            acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], w1, xb);
        }
    }
    /* the scalar reference's epilogue (see p8_tile); partial panels use masked loads and stores, which
     * never touch the lanes outside the range */
    const int partial = mask16 != 0xFFFFu;
    __m256i lm[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    if (partial) {
        lm[0] = pv_lane_mask(mask16, 0);
        lm[1] = pv_lane_mask(mask16, 1);
    }
    for (int r = 0; r < R; r++) {
        const __m256i corr = _mm256_set1_epi32((int32_t)((uint32_t)rowsum[r] << 7));
        const __m256 sx = _mm256_set1_ps(xs[r]);
        float *yr = y + (size_t)r * ldy;
        for (int h = 0; h < 2; h++) {
            const __m256 vws = partial ? _mm256_maskload_ps(ws + 8 * h, lm[h]) : _mm256_loadu_ps(ws + 8 * h);
            const __m256 s = _mm256_mul_ps(sx, vws);
            __m256 v = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][h], corr)));
            if (bias) v = _mm256_add_ps(v, partial ? _mm256_maskload_ps(bias + 8 * h, lm[h]) : _mm256_loadu_ps(bias + 8 * h));
            if (partial) _mm256_maskstore_ps(yr + 8 * h, lm[h], v);
            else _mm256_storeu_ps(yr + 8 * h, v);
        }
    }
}

DQ_VNNI static void pv_rowsums(size_t m, size_t k, const int8_t *x, int32_t *rowsum) {
    const __m256i ones = _mm256_set1_epi8(1);
    for (size_t r = 0; r < m; r++) {
        const int8_t *xr = x + r * k;
        __m256i a = _mm256_setzero_si256();
        size_t j = 0;
        for (; j + 32 <= k; j += 32) a = _mm256_dpbusd_avx_epi32(a, ones, _mm256_loadu_si256((const __m256i *)(xr + j)));
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
        int32_t s = _mm_cvtsi128_si32(h);
        for (; j < k; j++) s += xr[j];
        rowsum[r] = s;
    }
}

#define PV_TILE(PF, RR)                                                                                          \
    pv_tile(PF, RR, k, xr, w, rowsum + (r - r0), xs + r, ws + o, bias ? bias + o : NULL, yr, ldy, mask)
#define PV_ROWS(PF)                                                                                              \
    switch (R) {                                                                                                 \
    case 6: PV_TILE(PF, 6); break;                                                                               \
    case 5: PV_TILE(PF, 5); break;                                                                               \
    case 4: PV_TILE(PF, 4); break;                                                                               \
    case 3: PV_TILE(PF, 3); break;                                                                               \
    case 2: PV_TILE(PF, 2); break;                                                                               \
    default: PV_TILE(PF, 1); break;                                                                              \
    }

DQ_VNNI void dq_gemm_int8_packed_avxvnni(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                         const uint8_t *packed, const float *ws, const float *bias, float *y,
                                         size_t ldy, size_t n_begin, size_t n_end) {
    if (n_end > n) n_end = n;
    if (m == 0 || n_begin >= n_end) return;
    const size_t kg = (k + 3) / 4, pstride = kg * 64;
    const size_t p_begin = n_begin / DQ_INT8_PANEL, p_end = (n_end + DQ_INT8_PANEL - 1) / DQ_INT8_PANEL;
    size_t max_rows = (PV_BLOCK_BYTES / (kg * 4 + 1)) / PV_TR * PV_TR;
    if (max_rows < PV_TR) max_rows = PV_TR;
    if (max_rows > PV_MAX_BLOCK_ROWS) max_rows = PV_MAX_BLOCK_ROWS;
    const size_t blocks = (m + max_rows - 1) / max_rows;
    size_t mb = ((m + blocks - 1) / blocks + PV_TR - 1) / PV_TR * PV_TR;
    if (mb > PV_MAX_BLOCK_ROWS) mb = PV_MAX_BLOCK_ROWS;
    int32_t rowsum[PV_MAX_BLOCK_ROWS];
    for (size_t r0 = 0; r0 < m; r0 += mb) {
        const size_t r1 = r0 + mb < m ? r0 + mb : m;
        pv_rowsums(r1 - r0, k, xq + r0 * k, rowsum);
        for (size_t p = p_begin; p < p_end; p++) {
            const size_t o = p * DQ_INT8_PANEL;
            const size_t lo = n_begin > o ? n_begin - o : 0;
            const size_t hi = n_end - o < DQ_INT8_PANEL ? n_end - o : DQ_INT8_PANEL;
            const unsigned mask = (0xFFFFu << lo) & (hi >= 16 ? 0xFFFFu : (1u << hi) - 1);
            const uint8_t *w = packed + p * pstride;
            for (size_t r = r0; r < r1; r += PV_TR) {
                const int R = r1 - r < PV_TR ? (int)(r1 - r) : PV_TR;
                const int8_t *xr = xq + r * k;
                float *yr = y + r * ldy + o;
                if (r == r0) {
                    PV_ROWS(1)
                } else {
                    PV_ROWS(0)
                }
            }
        }
    }
}

/* ================================================================== q4 product */

/* Rows per tile. Per 8-block group and row: 8 vpmaddubsw + 8 int16 adds + 1 vpmaddwd and the float
 * update; per output channel and group ~24 instructions of loading, transposing and unpacking the
 * nibbles, shared by the Q4_TR rows. Measured: 6 rows ~220-235 GOPS, 4 rows ~210, 8 rows spill with
 * SwiftPM's flags (~205). */
#ifndef Q4_TR
#define Q4_TR 6
#endif
#define Q4_STACK_GROUPS 16 /* scratch on the stack (16 · Q4_TR · 320 bytes = 30 KiB) up to K = 4096 */

/* Scratch of one row tile, one record of Q4_REC bytes per 8-block group g (rows interleaved, so
 * that a single pointer plus compile-time displacements addresses every row):
 *   xi[t][r][l] (int32, at (t·Q4_TR + r)·32): bytes 4t..4t+3 of block 8g+l of row r (t = 0..7),
 *                 i.e. one 32-byte vector per (t, r) holding 4 activations of each of the 8 blocks
 *   bs[r][l]    (int32, at Q4_BS + r·32): 8 · Σ_j qx over block 8g+l
 *   dx[r][l]    (float, at Q4_DX + r·32): d_x of block 8g+l
 * Blocks >= nb (the tail of the last group) are all zero. */
#define Q4_BS (8 * Q4_TR * 32)
#define Q4_DX (Q4_BS + Q4_TR * 32)
#define Q4_REC (Q4_DX + Q4_TR * 32)

static void q4_prepare_row(const int8_t *xr, const float *xsr, size_t nb, size_t ng, uint8_t *buf, int r) {
    for (size_t g = 0; g < ng; g++) {
        uint8_t *rec = buf + g * Q4_REC;
        for (size_t l = 0; l < 8; l++) {
            size_t b = g * 8 + l;
            int32_t words[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            int32_t sum = 0;
            float d = 0.0f;
            if (b < nb) {
                memcpy(words, xr + b * DQ_BLOCK, DQ_BLOCK);
                for (size_t j = 0; j < DQ_BLOCK; j++) sum += xr[b * DQ_BLOCK + j];
                d = xsr[b];
            }
            for (size_t t = 0; t < 8; t++) memcpy(rec + (t * Q4_TR + (size_t)r) * 32 + l * 4, &words[t], 4);
            sum *= 8;
            memcpy(rec + Q4_BS + (size_t)r * 32 + l * 4, &sum, 4);
            memcpy(rec + Q4_DX + (size_t)r * 32 + l * 4, &d, 4);
        }
    }
}

DQ_AVX2 DQ_INLINE float q4_hsum_tree(__m256 p) {
    /* ((p0+p4)+(p2+p6)) + ((p1+p5)+(p3+p7)), the order of dq_q4_tree */
    __m128 v = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1)); /* [a, c, b, d] */
    v = _mm_add_ps(v, _mm_movehl_ps(v, v));                                          /* [ab, cd, ..] */
    v = _mm_add_ss(v, _mm_movehdup_ps(v));                                           /* ab + cd */
    return _mm_cvtss_f32(v);
}

/* Rows [0, R) of the tile against output channels [o0, o1). */
DQ_AVX2 DQ_INLINE void q4_tile(const int R, size_t nb, size_t ng, const uint8_t *buf, const uint8_t *wq,
                               const float *ws, size_t kp, const float *bias, float *y, size_t ldy, size_t o0,
                               size_t o1) {
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const size_t full = nb / 8; /* groups with 8 real blocks */
    for (size_t o = o0; o < o1; o++) {
        const uint8_t *wo = wq + o * (kp / 2);
        const float *wso = ws + o * nb;
        __m256 P[Q4_TR];
        for (int r = 0; r < R; r++) P[r] = _mm256_setzero_ps();
        for (size_t g = 0; g < ng; g++) {
            const uint8_t *rec = buf + g * Q4_REC;
            const uint8_t *pw = wo + g * 8 * (DQ_BLOCK / 2);
            const float *pws = wso + g * 8;
            uint8_t tmpw[8 * DQ_BLOCK / 2];
            float tmps[8];
            if (g >= full) { /* the last, partial group: zero blocks (code 0, scale 0) past nb */
                size_t have = nb - g * 8;
                memset(tmpw, 0, sizeof tmpw);
                memcpy(tmpw, pw, have * (DQ_BLOCK / 2));
                for (size_t l = 0; l < 8; l++) tmps[l] = l < have ? pws[l] : 0.0f;
                pw = tmpw;
                pws = tmps;
            }
            /* Y_i = [block i | block 4+i] (16 packed bytes each); a 4×4 transpose of 32-bit words in
             * each 128-bit half gives V_t = [word t of blocks 0..3 | word t of blocks 4..7]. Word t
             * holds elements 4t..4t+3 in its low nibbles and 16+4t..16+4t+3 in its high nibbles. */
            __m256i Y0 = _mm256_loadu2_m128i((const __m128i *)(pw + 4 * 16), (const __m128i *)(pw + 0 * 16));
            __m256i Y1 = _mm256_loadu2_m128i((const __m128i *)(pw + 5 * 16), (const __m128i *)(pw + 1 * 16));
            __m256i Y2 = _mm256_loadu2_m128i((const __m128i *)(pw + 6 * 16), (const __m128i *)(pw + 2 * 16));
            __m256i Y3 = _mm256_loadu2_m128i((const __m128i *)(pw + 7 * 16), (const __m128i *)(pw + 3 * 16));
            __m256i t0 = _mm256_unpacklo_epi32(Y0, Y1), t1 = _mm256_unpackhi_epi32(Y0, Y1);
            __m256i t2 = _mm256_unpacklo_epi32(Y2, Y3), t3 = _mm256_unpackhi_epi32(Y2, Y3);
            __m256i V[4];
            V[0] = _mm256_unpacklo_epi64(t0, t2);
            V[1] = _mm256_unpackhi_epi64(t0, t2);
            V[2] = _mm256_unpacklo_epi64(t1, t3);
            V[3] = _mm256_unpackhi_epi64(t1, t3);
            __m256i acc[Q4_TR];
            for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_si256();
            for (int t = 0; t < 8; t++) {
                /* codes 0..15 as unsigned bytes; the -8 offset is applied once per block below */
                __m256i W = t < 4 ? _mm256_and_si256(V[t], m4) : _mm256_and_si256(_mm256_srli_epi16(V[t - 4], 4), m4);
                for (int r = 0; r < R; r++) {
                    const __m256i X = _mm256_loadu_si256((const __m256i *)(rec + (t * Q4_TR + r) * 32));
                    /* a pair is at most 2·15·127 = 3810; 8 of them per int16 lane: <= 30480 < 32767 */
                    acc[r] = _mm256_add_epi16(acc[r], _mm256_maddubs_epi16(W, X));
                }
            }
            const __m256 dw = _mm256_loadu_ps(pws);
            for (int r = 0; r < R; r++) {
                /* lane l = Σ code·qx over block 8g+l, exact; minus 8·Σqx gives Σ (code-8)·qx */
                __m256i isum = _mm256_sub_epi32(_mm256_madd_epi16(acc[r], ones),
                                                _mm256_loadu_si256((const __m256i *)(rec + Q4_BS + r * 32)));
                __m256 s = _mm256_mul_ps(dw, _mm256_loadu_ps((const float *)(rec + Q4_DX + r * 32)));
                P[r] = _mm256_add_ps(P[r], _mm256_mul_ps(s, _mm256_cvtepi32_ps(isum)));
            }
        }
        for (int r = 0; r < R; r++) {
            float v = q4_hsum_tree(P[r]);
            if (bias) v = v + bias[o];
            y[(size_t)r * ldy + o] = v;
        }
    }
}

DQ_AVX2 void dq_gemm_q4_avx2(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *wq,
                             const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin,
                             size_t n_end) {
    if (n_end > n) n_end = n;
    if (m == 0 || n_begin >= n_end) return;
    size_t kp = dq_q4_padded_k(k), nb = kp / DQ_BLOCK, ng = (nb + 7) / 8;
    _Alignas(32) uint8_t stack_buf[Q4_STACK_GROUPS * Q4_REC];
    uint8_t *buf = stack_buf;
    if (ng > Q4_STACK_GROUPS) {
        buf = malloc(ng * Q4_REC);
        if (!buf) {
            dq_gemm_q4_scalar(m, n, k, xq, xs, wq, ws, bias, y, ldy, n_begin, n_end);
            return;
        }
    }
    for (size_t r0 = 0; r0 < m; r0 += Q4_TR) {
        int R = m - r0 < Q4_TR ? (int)(m - r0) : Q4_TR;
        for (int r = 0; r < R; r++) q4_prepare_row(xq + (r0 + r) * kp, xs + (r0 + r) * nb, nb, ng, buf, r);
        float *yr = y + r0 * ldy;
        switch (R) {
#if Q4_TR >= 8
        case 8: q4_tile(8, nb, ng, buf, wq, ws, kp, bias, yr, ldy, n_begin, n_end); break;
        case 7: q4_tile(7, nb, ng, buf, wq, ws, kp, bias, yr, ldy, n_begin, n_end); break;
#endif
#if Q4_TR >= 6
        case 6: q4_tile(6, nb, ng, buf, wq, ws, kp, bias, yr, ldy, n_begin, n_end); break;
        case 5: q4_tile(5, nb, ng, buf, wq, ws, kp, bias, yr, ldy, n_begin, n_end); break;
#endif
        case 4: q4_tile(4, nb, ng, buf, wq, ws, kp, bias, yr, ldy, n_begin, n_end); break;
        case 3: q4_tile(3, nb, ng, buf, wq, ws, kp, bias, yr, ldy, n_begin, n_end); break;
        case 2: q4_tile(2, nb, ng, buf, wq, ws, kp, bias, yr, ldy, n_begin, n_end); break;
        default: q4_tile(1, nb, ng, buf, wq, ws, kp, bias, yr, ldy, n_begin, n_end); break;
        }
    }
    if (buf != stack_buf) free(buf);
}

/* ================================================================== int8 packing (VNNI layout) */

/* One full panel (16 rows of codes, row stride k) -> the packed panel (see dq_pack_weights_int8): the 4-byte
 * groups are moved as 32-bit lanes, 8 groups of 8 rows at a time through an 8 x 8 transpose in registers,
 * biased by +128 (x ^ 0x80 per byte). The last k % 32 bytes go through the caller's scalar loop: this
 * returns the number of whole groups written. */
DQ_AVX2 size_t dq_pack_panel_int8_avx2(const int8_t *rows, size_t k, uint8_t *panel) {
    size_t groups = k / 32 * 8;
    const __m256 bias = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80808080u));
    for (size_t g0 = 0; g0 < groups; g0 += 8) {
        for (size_t half = 0; half < 2; half++) {
            const int8_t *src = rows + half * 8 * k + 4 * g0;
            __m256 r0 = _mm256_loadu_ps((const float *)src), r1 = _mm256_loadu_ps((const float *)(src + k));
            __m256 r2 = _mm256_loadu_ps((const float *)(src + 2 * k)), r3 = _mm256_loadu_ps((const float *)(src + 3 * k));
            __m256 r4 = _mm256_loadu_ps((const float *)(src + 4 * k)), r5 = _mm256_loadu_ps((const float *)(src + 5 * k));
            __m256 r6 = _mm256_loadu_ps((const float *)(src + 6 * k)), r7 = _mm256_loadu_ps((const float *)(src + 7 * k));
            __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            uint8_t *d = panel + g0 * (DQ_INT8_PANEL * 4) + half * 32;
            const size_t G = DQ_INT8_PANEL * 4;
            _mm256_storeu_ps((float *)(d + 0 * G), _mm256_xor_ps(_mm256_permute2f128_ps(u0, u4, 0x20), bias));
            _mm256_storeu_ps((float *)(d + 1 * G), _mm256_xor_ps(_mm256_permute2f128_ps(u1, u5, 0x20), bias));
            _mm256_storeu_ps((float *)(d + 2 * G), _mm256_xor_ps(_mm256_permute2f128_ps(u2, u6, 0x20), bias));
            _mm256_storeu_ps((float *)(d + 3 * G), _mm256_xor_ps(_mm256_permute2f128_ps(u3, u7, 0x20), bias));
            _mm256_storeu_ps((float *)(d + 4 * G), _mm256_xor_ps(_mm256_permute2f128_ps(u0, u4, 0x31), bias));
            _mm256_storeu_ps((float *)(d + 5 * G), _mm256_xor_ps(_mm256_permute2f128_ps(u1, u5, 0x31), bias));
            _mm256_storeu_ps((float *)(d + 6 * G), _mm256_xor_ps(_mm256_permute2f128_ps(u2, u6, 0x31), bias));
            _mm256_storeu_ps((float *)(d + 7 * G), _mm256_xor_ps(_mm256_permute2f128_ps(u3, u7, 0x31), bias));
        }
    }
    return groups;
}

#else
typedef int dq_avx2_unused_t; /* keep the translation unit non-empty on other targets */
#endif /* __x86_64__ */
