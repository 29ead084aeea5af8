#include "ckernels.h"
#include "attention_internal.h"
#include "cpufeatures.h"
#include <float.h>
#include <math.h>
#include <string.h>

/* C[m×n] = alpha · A[m×k] · B[k×n] (+ C if accumulate), row-major with leading dimensions.
 * The attention's small products: scores against transposed keys, probabilities × values. */

/* fused: each C[i][j] one fma chain over p in increasing order, from +0, then · alpha (the AVX-512 tiles'
 * bits, which dk_attention_head_f32 keeps on every CPU); else separate multiplies and adds (the scalar
 * kernel's f32 tier; gemm_nn_avx2 always fuses, its column tails too). */
static void gemm_nn_scalar(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                           const float *b, size_t ldb, float *c, size_t ldc, int fused) {
    for (size_t i = 0; i < m; i++) {
        float *ci = c + i * ldc;
        for (size_t j = 0; j < n; j++) ci[j] = 0;
        for (size_t p = 0; p < k; p++) {
            float aip = a[i * lda + p];
            const float *bp = b + p * ldb;
            if (fused)
                for (size_t j = 0; j < n; j++) ci[j] = fmaf(aip, bp[j], ci[j]);
            else
                for (size_t j = 0; j < n; j++) ci[j] += aip * bp[j];
        }
        for (size_t j = 0; j < n; j++) ci[j] *= alpha;
    }
}

#if defined(__x86_64__)
#include <immintrin.h>

/* R rows (1..6) × 8·NV columns of C (NV = 1 or 2): R·NV accumulators, NV loads of B and R broadcasts of A per
 * step. The last vector is masked to `last` lanes (maskload / maskstore: nothing past column n is touched). */
__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
void gemm_nn_tile_avx2(const int R, const int NV, size_t k, float alpha, const float *a, size_t lda, const float *b,
                       size_t ldb, float *c, size_t ldc, __m256i last) {
    __m256 acc[6][2];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    for (size_t p = 0; p < k; p++) {
        __m256 bv[2];
        for (int v = 0; v < NV; v++)
            bv[v] = v == NV - 1 ? _mm256_maskload_ps(b + p * ldb + 8 * v, last) : _mm256_loadu_ps(b + p * ldb + 8 * v);
        for (int r = 0; r < R; r++) {
            __m256 x = _mm256_broadcast_ss(a + r * lda + p);
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    const __m256 va = _mm256_set1_ps(alpha);
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) {
            __m256 y = _mm256_mul_ps(acc[r][v], va);
            if (v == NV - 1) _mm256_maskstore_ps(c + r * ldc + 8 * v, last, y);
            else _mm256_storeu_ps(c + r * ldc + 8 * v, y);
        }
}

__attribute__((target("avx2,fma"))) static inline __attribute__((always_inline))
void gemm_nn_rows_avx2(const int R, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
                       size_t ldb, float *c, size_t ldc) {
    const __m256i all = _mm256_set1_epi32(-1);
    size_t j = 0;
    for (; j + 16 <= n; j += 16) gemm_nn_tile_avx2(R, 2, k, alpha, a, lda, b + j, ldb, c + j, ldc, all);
    if (j < n) {
        const size_t rest = n - j;
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        if (rest > 8) {
            __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(rest - 8)), lanes);
            gemm_nn_tile_avx2(R, 2, k, alpha, a, lda, b + j, ldb, c + j, ldc, last);
        } else {
            __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rest), lanes);
            gemm_nn_tile_avx2(R, 1, k, alpha, a, lda, b + j, ldb, c + j, ldc, last);
        }
    }
}

/* Every element is one fused chain over p in increasing order from +0, then · alpha, in the 16-wide tiles of any
 * row count and in the column tails alike: n is the number of keys, and a key's score must not depend on whether
 * its column lands in a tile or in the tail (a sequence padded among longer ones gives the bits it gives alone),
 * nor a query's on its row tile. `fused` is ignored here (the scalar kernel's choice). 6-row tiles: 12 chains
 * in flight, two FMA pipes of 4-6 cycles' latency. */
__attribute__((target("avx2,fma")))
static void gemm_nn_avx2(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
                         size_t ldb, float *c, size_t ldc, int fused) {
    (void)fused;
    size_t i = 0;
    for (; i + 6 <= m; i += 6) gemm_nn_rows_avx2(6, n, k, alpha, a + i * lda, lda, b, ldb, c + i * ldc, ldc);
    switch (m - i) {
    case 5: gemm_nn_rows_avx2(5, n, k, alpha, a + i * lda, lda, b, ldb, c + i * ldc, ldc); break;
    case 4: gemm_nn_rows_avx2(4, n, k, alpha, a + i * lda, lda, b, ldb, c + i * ldc, ldc); break;
    case 3: gemm_nn_rows_avx2(3, n, k, alpha, a + i * lda, lda, b, ldb, c + i * ldc, ldc); break;
    case 2: gemm_nn_rows_avx2(2, n, k, alpha, a + i * lda, lda, b, ldb, c + i * ldc, ldc); break;
    case 1: gemm_nn_rows_avx2(1, n, k, alpha, a + i * lda, lda, b, ldb, c + i * ldc, ldc); break;
    default: break;
    }
}

/* Columns [c0, d) of one output row of P·V, one chain over j per column (the vector tiles' chains, for the
 * columns past their last full vector): in double, and in f32 with fmas. */
__attribute__((target("avx2,fma")))
static inline void pv_columns_double(const float *pi, size_t t, size_t c0, size_t d, const float *v, size_t ldv, float *oi) {
    for (size_t c = c0; c < d; c++) {
        double acc = 0;
        for (size_t j = 0; j < t; j++) acc += (double)pi[j] * (double)v[j * ldv + c];
        oi[c] = (float)acc;
    }
}

__attribute__((target("avx2,fma")))
static inline void pv_columns_f32(const float *pi, size_t t, size_t c0, size_t d, const float *v, size_t ldv, float *oi) {
    for (size_t c = c0; c < d; c++) {
        float acc = 0.0f;
        for (size_t j = 0; j < t; j++) acc = fmaf(pi[j], v[j * ldv + c], acc);
        oi[c] = acc;
    }
}

/* out[i][c] = Σ_j p[i][j] · v[j][c] with the sums in double: the context feeds the next quantized or
 * f32 product, and sums over up to thousands of keys lose several ulps in f32. Each output is one chain over j in
 * increasing order from +0 (products of two f32 are exact in double, so fused and separate multiply-adds agree);
 * tiles of 4 query rows × 8 columns keep 8 chains in flight, which the tile shape does not change. */
__attribute__((target("avx2,fma")))
static void probs_times_values_avx2(size_t m, size_t t, size_t d, const float *p, size_t ldp, const float *v,
                                    size_t ldv, float *out, size_t ldo) {
    size_t i = 0;
    for (; i + 4 <= m; i += 4) {
        const float *p0 = p + i * ldp, *p1 = p0 + ldp, *p2 = p1 + ldp, *p3 = p2 + ldp;
        size_t c = 0;
        for (; c + 8 <= d; c += 8) {
            __m256d a0l = _mm256_setzero_pd(), a0h = _mm256_setzero_pd(), a1l = _mm256_setzero_pd(), a1h = _mm256_setzero_pd();
            __m256d a2l = _mm256_setzero_pd(), a2h = _mm256_setzero_pd(), a3l = _mm256_setzero_pd(), a3h = _mm256_setzero_pd();
            for (size_t j = 0; j < t; j++) {
                __m256 x = _mm256_loadu_ps(v + j * ldv + c);
                __m256d xl = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), xh = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
                __m256d w;
                w = _mm256_set1_pd((double)p0[j]); a0l = _mm256_fmadd_pd(w, xl, a0l); a0h = _mm256_fmadd_pd(w, xh, a0h);
                w = _mm256_set1_pd((double)p1[j]); a1l = _mm256_fmadd_pd(w, xl, a1l); a1h = _mm256_fmadd_pd(w, xh, a1h);
                w = _mm256_set1_pd((double)p2[j]); a2l = _mm256_fmadd_pd(w, xl, a2l); a2h = _mm256_fmadd_pd(w, xh, a2h);
                w = _mm256_set1_pd((double)p3[j]); a3l = _mm256_fmadd_pd(w, xl, a3l); a3h = _mm256_fmadd_pd(w, xh, a3h);
            }
            _mm256_storeu_ps(out + (i + 0) * ldo + c, _mm256_set_m128(_mm256_cvtpd_ps(a0h), _mm256_cvtpd_ps(a0l)));
            _mm256_storeu_ps(out + (i + 1) * ldo + c, _mm256_set_m128(_mm256_cvtpd_ps(a1h), _mm256_cvtpd_ps(a1l)));
            _mm256_storeu_ps(out + (i + 2) * ldo + c, _mm256_set_m128(_mm256_cvtpd_ps(a2h), _mm256_cvtpd_ps(a2l)));
            _mm256_storeu_ps(out + (i + 3) * ldo + c, _mm256_set_m128(_mm256_cvtpd_ps(a3h), _mm256_cvtpd_ps(a3l)));
        }
        for (size_t r = 0; r < 4; r++) pv_columns_double(p + (i + r) * ldp, t, c, d, v, ldv, out + (i + r) * ldo);
    }
    for (; i < m; i++) {
        const float *pi = p + i * ldp;
        size_t c = 0;
        for (; c + 8 <= d; c += 8) {
            __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
            for (size_t j = 0; j < t; j++) {
                __m256d w = _mm256_set1_pd((double)pi[j]);
                __m256 x = _mm256_loadu_ps(v + j * ldv + c);
                lo = _mm256_fmadd_pd(w, _mm256_cvtps_pd(_mm256_castps256_ps128(x)), lo);
                hi = _mm256_fmadd_pd(w, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), hi);
            }
            __m128 r = _mm256_cvtpd_ps(lo), s = _mm256_cvtpd_ps(hi);
            _mm256_storeu_ps(out + i * ldo + c, _mm256_set_m128(s, r));
        }
        pv_columns_double(pi, t, c, d, v, ldv, out + i * ldo);
    }
}

/* out[i][c] = Σ_j p[i][j] · v[j][c] in f32: one fma chain per output over j in increasing order, from +0
 * (dk_attention_head_f32's P·V); tiles of 4 query rows × 16 columns (8 chains in flight), then 8-column
 * steps and single columns, all the same chain. */
__attribute__((target("avx2,fma")))
static void probs_times_values_f32_avx2(size_t m, size_t t, size_t d, const float *p, size_t ldp, const float *v,
                                        size_t ldv, float *out, size_t ldo) {
    size_t i = 0;
    for (; i + 4 <= m; i += 4) {
        const float *p0 = p + i * ldp, *p1 = p0 + ldp, *p2 = p1 + ldp, *p3 = p2 + ldp;
        size_t c = 0;
        for (; c + 16 <= d; c += 16) {
            __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
            __m256 a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps(), a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();
            for (size_t j = 0; j < t; j++) {
                __m256 x0 = _mm256_loadu_ps(v + j * ldv + c), x1 = _mm256_loadu_ps(v + j * ldv + c + 8);
                __m256 w;
                w = _mm256_broadcast_ss(p0 + j); a00 = _mm256_fmadd_ps(w, x0, a00); a01 = _mm256_fmadd_ps(w, x1, a01);
                w = _mm256_broadcast_ss(p1 + j); a10 = _mm256_fmadd_ps(w, x0, a10); a11 = _mm256_fmadd_ps(w, x1, a11);
                w = _mm256_broadcast_ss(p2 + j); a20 = _mm256_fmadd_ps(w, x0, a20); a21 = _mm256_fmadd_ps(w, x1, a21);
                w = _mm256_broadcast_ss(p3 + j); a30 = _mm256_fmadd_ps(w, x0, a30); a31 = _mm256_fmadd_ps(w, x1, a31);
            }
            _mm256_storeu_ps(out + (i + 0) * ldo + c, a00); _mm256_storeu_ps(out + (i + 0) * ldo + c + 8, a01);
            _mm256_storeu_ps(out + (i + 1) * ldo + c, a10); _mm256_storeu_ps(out + (i + 1) * ldo + c + 8, a11);
            _mm256_storeu_ps(out + (i + 2) * ldo + c, a20); _mm256_storeu_ps(out + (i + 2) * ldo + c + 8, a21);
            _mm256_storeu_ps(out + (i + 3) * ldo + c, a30); _mm256_storeu_ps(out + (i + 3) * ldo + c + 8, a31);
        }
        for (; c + 8 <= d; c += 8) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (size_t j = 0; j < t; j++) {
                __m256 x = _mm256_loadu_ps(v + j * ldv + c);
                a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p0 + j), x, a0);
                a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p1 + j), x, a1);
                a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(p2 + j), x, a2);
                a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(p3 + j), x, a3);
            }
            _mm256_storeu_ps(out + (i + 0) * ldo + c, a0); _mm256_storeu_ps(out + (i + 1) * ldo + c, a1);
            _mm256_storeu_ps(out + (i + 2) * ldo + c, a2); _mm256_storeu_ps(out + (i + 3) * ldo + c, a3);
        }
        for (size_t r = 0; r < 4; r++) pv_columns_f32(p + (i + r) * ldp, t, c, d, v, ldv, out + (i + r) * ldo);
    }
    for (; i < m; i++) {
        const float *pi = p + i * ldp;
        size_t c = 0;
        for (; c + 16 <= d; c += 16) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            for (size_t j = 0; j < t; j++) {
                __m256 w = _mm256_broadcast_ss(pi + j);
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + j * ldv + c), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + j * ldv + c + 8), a1);
            }
            _mm256_storeu_ps(out + i * ldo + c, a0);
            _mm256_storeu_ps(out + i * ldo + c + 8, a1);
        }
        pv_columns_f32(pi, t, c, d, v, ldv, out + i * ldo);
    }
}

static int has_avx2_fma(void) { return (cpu_usable() & CPU_AVX2_FMA) != 0; }

/* dk_exp_lane on 8 lanes, to the bit. 2^n is applied as ldexpf does, with one rounding: p · 2^n directly for
 * n >= -125 (an exact power, a normal product: exact, or inf on overflow), else (p · 2^-125, exact and normal)
 * · 2^(n+125), a power that is subnormal below 2^-126 and clamped at 2^-149 (the true product is then below
 * half the least subnormal and rounds to 0 either way); above n = 127, (p · 2^127) · 2^(n-127), clamped. */
__attribute__((target("avx2,fma")))
static inline __m256 pow2_avx2(__m256i e) {
    /* e in [-149, 127]: normal powers from the exponent field, subnormal ones as a single mantissa bit */
    __m256i normal = _mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23);
    __m256i sub = _mm256_sllv_epi32(_mm256_set1_epi32(1), _mm256_add_epi32(e, _mm256_set1_epi32(149)));
    __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(-126), e);
    return _mm256_castsi256_ps(_mm256_blendv_epi8(normal, sub, is_sub));
}

__attribute__((target("avx2,fma")))
static inline __m256 exp8_avx2(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-200.0f)); /* as x > -200 ? x : -200: -200 for NaN as well */
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    p = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    /* n is integral; as int32 (|n| < 2^31 for finite x up to FLT_MAX · log2 e) clamped to [-400, 400] */
    __m256 nc = _mm256_min_ps(_mm256_max_ps(n, _mm256_set1_ps(-400.0f)), _mm256_set1_ps(400.0f));
    __m256i ni = _mm256_cvtps_epi32(nc);
    __m256i a = _mm256_min_epi32(_mm256_max_epi32(ni, _mm256_set1_epi32(-125)), _mm256_set1_epi32(127));
    __m256i b = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(ni, a), _mm256_set1_epi32(-149)), _mm256_set1_epi32(127));
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2_avx2(a)), pow2_avx2(b));
}

/* The fixed-order softmax of dk_attention_probability_row (fixed_order = 1) with AVX2, the same bits: the logits
 * in key order as there, exp8_avx2 for dk_exp_lane, the row sum in dk_inverse_row_sum's 16 double lanes (each
 * lane in key order), then the same reduction and the same products. */
__attribute__((target("avx2,fma")))
static void probability_row_fixed_avx2(float *row, size_t t, const float *c2p_row, const float *p2c, size_t ld_pos,
                                       const int32_t *rel_row, ptrdiff_t rel_step, const uint8_t *key_mask) {
    float max;
    if (!dk_attention_logits(row, t, 1.0f, c2p_row, p2c, ld_pos, rel_row, rel_step, key_mask, &max)) {
        for (size_t j = 0; j < t; j++) row[j] = 0;
        return;
    }
    const __m256 vmax = _mm256_set1_ps(max);
    const __m128i zero = _mm_setzero_si128();
    __m256d l0 = _mm256_setzero_pd(), l1 = _mm256_setzero_pd(), l2 = _mm256_setzero_pd(), l3 = _mm256_setzero_pd();
    size_t j = 0;
    for (; j + 16 <= t; j += 16) {
        for (int h = 0; h < 2; h++) {
            __m128i mb = _mm_loadl_epi64((const __m128i *)(key_mask + j + 8 * h));
            __m256 keep = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_cvtepu8_epi32(_mm_cmpeq_epi8(mb, zero)), _mm256_setzero_si256()));
            /* cvtepu8 of (mb == 0) gives 0xff lanes for masked keys; == 0 inverts that to all-ones for kept keys */
            __m256 e = _mm256_and_ps(exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + j + 8 * h), vmax)), keep);
            _mm256_storeu_ps(row + j + 8 * h, e);
            __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(e)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1));
            if (h == 0) { l0 = _mm256_add_pd(l0, lo); l1 = _mm256_add_pd(l1, hi); }
            else { l2 = _mm256_add_pd(l2, lo); l3 = _mm256_add_pd(l3, hi); }
        }
    }
    double lane[16];
    _mm256_storeu_pd(lane, l0); _mm256_storeu_pd(lane + 4, l1); _mm256_storeu_pd(lane + 8, l2); _mm256_storeu_pd(lane + 12, l3);
    if (j < t) {
        /* the last t mod 16 keys: the same lanes through a zero-padded copy */
        float x[16] = {0}, e[16];
        for (size_t i = 0; j + i < t; i++) x[i] = row[j + i];
        for (int h = 0; h < 2; h++) _mm256_storeu_ps(e + 8 * h, exp8_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + 8 * h), vmax)));
        for (size_t i = 0; j + i < t; i++) {
            row[j + i] = key_mask[j + i] ? e[i] : 0.0f;
            lane[i] += (double)row[j + i];
        }
    }
    const float inv = dk_inverse_of_lane_sums(lane);
    const __m256 vinv = _mm256_set1_ps(inv);
    size_t i = 0;
    for (; i + 8 <= t; i += 8) _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), vinv));
    for (; i < t; i++) row[i] *= inv;
}
#endif

static void gemm_nn(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b, size_t ldb,
                    float *c, size_t ldc, int fused) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { gemm_nn_avx2(m, n, k, alpha, a, lda, b, ldb, c, ldc, fused); return; }
#endif
    gemm_nn_scalar(m, n, k, alpha, a, lda, b, ldb, c, ldc, fused);
}

void dk_gemm_nn(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b, size_t ldb,
                float *c, size_t ldc) {
    gemm_nn(m, n, k, alpha, a, lda, b, ldb, c, ldc, 0);
}

void dk_gemm_nn_scalar(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
                       size_t ldb, float *c, size_t ldc) {
    gemm_nn_scalar(m, n, k, alpha, a, lda, b, ldb, c, ldc, 0);
}

/* m query rows of P · V over t keys. */
static void probs_times_values_scalar(size_t m, size_t t, size_t d, const float *p, size_t ldp, const float *v,
                                      size_t ldv, float *out, size_t ldo) {
    for (size_t i = 0; i < m; i++) {
        for (size_t c = 0; c < d; c++) {
            double acc = 0;
            for (size_t j = 0; j < t; j++) acc += (double)p[i * ldp + j] * (double)v[j * ldv + c];
            out[i * ldo + c] = (float)acc;
        }
    }
}

static void probs_times_values_f32_scalar(size_t m, size_t t, size_t d, const float *p, size_t ldp, const float *v,
                                          size_t ldv, float *out, size_t ldo) {
    for (size_t i = 0; i < m; i++) {
        float *oi = out + i * ldo;
        for (size_t c = 0; c < d; c++) oi[c] = 0.0f;
        for (size_t j = 0; j < t; j++)
            for (size_t c = 0; c < d; c++) oi[c] = fmaf(p[i * ldp + j], v[j * ldv + c], oi[c]);
    }
}

/* f32: P·V in f32 (dk_attention_head_f32), else in double. */
static void probs_times_values(size_t m, size_t t, size_t d, const float *p, size_t ldp, const float *v, size_t ldv,
                               float *out, size_t ldo, int f32) {
#if defined(__x86_64__)
    if (has_avx2_fma()) {
        if (f32) probs_times_values_f32_avx2(m, t, d, p, ldp, v, ldv, out, ldo);
        else probs_times_values_avx2(m, t, d, p, ldp, v, ldv, out, ldo);
        return;
    }
#endif
    if (f32) probs_times_values_f32_scalar(m, t, d, p, ldp, v, ldv, out, ldo);
    else probs_times_values_scalar(m, t, d, p, ldp, v, ldv, out, ldo);
}

void dk_probs_times_values_scalar(size_t t, size_t d, const float *p, size_t ldp, const float *v, size_t ldv,
                                  float *out, size_t ldo) {
    probs_times_values_scalar(t, t, d, p, ldp, v, ldv, out, ldo);
}

void dk_probs_times_values(size_t t, size_t d, const float *p, size_t ldp, const float *v, size_t ldv,
                           float *out, size_t ldo) {
    probs_times_values(t, t, d, p, ldp, v, ldv, out, ldo, 0);
}

/* dst[c][r] = src[r][c] for an [rows × cols] source with leading dimension lds; dst has ld = rows. */
static void transpose(const float *src, size_t rows, size_t cols, size_t lds, float *dst) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) dst[c * rows + r] = src[r * lds + c];
}

/* Query rows per block of the distance head (a row's bits do not depend on its block or on gemm_nn_avx2's row
 * tile: the same chain in every tile). 64 rows of scores stay within L2 up to t ≈ 4000 keys. */
#define DISTANCE_BLOCK 64

static size_t distance_block(size_t t) { return t < DISTANCE_BLOCK ? t : DISTANCE_BLOCK; }

/* The AVX2/scalar head with blocks of b queries: kᵀ [d×t], pkᵀ and pqᵀ [d×span], p2c [t×span], and per
 * block its scores [b×t] and c2p rows [b×span]. */
static size_t blocked_scratch(size_t t, size_t d, size_t span, size_t b) {
    return d * t + 2 * d * span + t * span + b * t + b * span;
}

/* The terms that do not depend on the queries (kᵀ, pkᵀ, pqᵀ, p2c) once, then per block of b queries its
 * scores against every key, its c2p rows, the masked softmax and its output rows. The relative row of query
 * i and key j is rel[i * rel_row + j * rel_col] (a [t×t] table: t, 1; by distance from by_distance + t - 1:
 * 1, -1). Each row goes through the same products and the same row code whatever b is (b = t: the full
 * [t×t] matrix), so the output does not depend on b to the bit. f32sums: dk_attention_head_f32's arithmetic
 * (fused products, the fixed-order exp and row sum, P·V in f32), else dk_attention_head_distance's. */
static void blocked_head(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                         size_t ldv, const float *pk, const float *pq, size_t ldp, const float *pkt_in,
                         const float *pqt_in, size_t ldt, size_t span, const int32_t *rel, ptrdiff_t rel_row,
                         ptrdiff_t rel_col, const uint8_t *key_mask, float scale, float *out, size_t ldo, float *scratch,
                         size_t b, int f32sums) {
    float *kt = scratch;
    float *pkt = kt + d * t;
    float *pqt = pkt + d * span;
    float *p2c = pqt + d * span;
    float *scores = p2c + t * span;
    float *c2p = scores + b * t;
    transpose(k, t, d, ldk, kt);
    /* pkᵀ, pqᵀ: given (already transposed, ld ldt) or transposed here (ld span) */
    const float *pkf = pkt_in ? pkt_in : pkt, *pqf = pqt_in ? pqt_in : pqt;
    const size_t ldk_t = pkt_in ? ldt : span, ldq_t = pqt_in ? ldt : span;
    if (pk && !pkt_in) transpose(pk, span, d, ldp, pkt);
    if (pq && !pqt_in) transpose(pq, span, d, ldp, pqt);
    const int has_c2p = pk || pkt_in, has_p2c = pq || pqt_in;
    if (has_p2c) gemm_nn(t, span, d, scale, k, ldk, pqf, ldq_t, p2c, span, f32sums);
    for (size_t i0 = 0; i0 < t; i0 += b) {
        const size_t mb = t - i0 < b ? t - i0 : b;
        gemm_nn(mb, t, d, scale, q + i0 * ldq, ldq, kt, t, scores, t, f32sums);
        if (has_c2p) gemm_nn(mb, span, d, scale, q + i0 * ldq, ldq, pkf, ldk_t, c2p, span, f32sums);
        for (size_t r = 0; r < mb; r++) {
            const float *c2p_row = has_c2p ? c2p + r * span : NULL;
            const int32_t *rel_r = rel + (ptrdiff_t)(i0 + r) * rel_row;
#if defined(__x86_64__)
            if (f32sums && has_avx2_fma()) {
                probability_row_fixed_avx2(scores + r * t, t, c2p_row, has_p2c ? p2c : NULL, span, rel_r, rel_col, key_mask);
                continue;
            }
#endif
            dk_attention_probability_row(scores + r * t, t, 1.0f, c2p_row, has_p2c ? p2c : NULL, span, rel_r, rel_col,
                                         key_mask, f32sums);
        }
        probs_times_values(mb, t, d, scores, t, v, ldv, out + i0 * ldo, ldo, f32sums);
    }
}

void dk_attention_head_generic(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                               const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                               const int32_t *rel, const uint8_t *key_mask, float scale, float *out, size_t ldo,
                               float *scratch) {
    blocked_head(t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, NULL, NULL, 0, span, rel, (ptrdiff_t)t, 1, key_mask, scale,
                 out, ldo, scratch, t, 0);
}

size_t dk_attention_distance_generic_scratch(size_t t, size_t d, size_t span) {
    return blocked_scratch(t, d, span, distance_block(t));
}

void dk_attention_head_distance_generic(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                        const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                        size_t span, const int32_t *by_distance, const uint8_t *key_mask,
                                        float scale, float *out, size_t ldo, float *scratch) {
    blocked_head(t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, NULL, NULL, 0, span, by_distance + t - 1, 1, -1, key_mask,
                 scale, out, ldo, scratch, distance_block(t), 0);
}

size_t dk_attention_scratch(size_t t, size_t d, size_t span) {
    /* enough for every entry point on any CPU: the full-matrix head plus a [t×t] index table (more than the
     * row-blocked head), or the AVX-512 head plus a by-distance table */
    size_t generic = blocked_scratch(t, d, span, t) + t * t;
    size_t fast = dk_attention_scratch_avx512(t, d, span) + 2 * t;
    return generic > fast ? generic : fast;
}

size_t dk_attention_distance_scratch(size_t t, size_t d, size_t span) {
    if (dk_has_avx512()) return dk_attention_scratch_avx512(t, d, span);
    return dk_attention_distance_generic_scratch(t, d, span);
}

const char *dk_attention_isa(void) {
    if (dk_has_avx512()) return "avx512";
#if defined(__x86_64__)
    if (has_avx2_fma()) return "avx2";
#endif
    return "scalar";
}

void dk_attention_head_distance(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                                const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                                size_t ldo, float *scratch) {
    if (dk_has_avx512()) {
        dk_attention_head_avx512(t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, span, by_distance, key_mask, scale, out,
                                 ldo, scratch);
        return;
    }
    dk_attention_head_distance_generic(t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, span, by_distance, key_mask, scale,
                                       out, ldo, scratch);
}

int dk_attention_position_transposed(const float *p, size_t rows, size_t d, size_t ldp, float *dst, size_t ldd) {
    if (ldd < rows) return 0;
    if (dk_has_avx512()) {
        dk_attention_position_transposed_avx512(p, rows, d, ldp, dst, ldd);
        return 1;
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < d; c++) dst[c * ldd + r] = p[r * ldp + c];
    return 1;
}

void dk_attention_head_distance_transposed(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                           const float *v, size_t ldv, const float *pkt, const float *pqt, size_t ldt,
                                           size_t span, const int32_t *by_distance, const uint8_t *key_mask,
                                           float scale, float *out, size_t ldo, float *scratch) {
    if (dk_has_avx512()) {
        dk_attention_head_transposed_avx512(t, d, q, ldq, k, ldk, v, ldv, pkt, pqt, ldt, span, by_distance, key_mask,
                                            scale, out, ldo, scratch);
        return;
    }
    blocked_head(t, d, q, ldq, k, ldk, v, ldv, NULL, NULL, 0, pkt, pqt, ldt, span, by_distance + t - 1, 1, -1, key_mask,
                 scale, out, ldo, scratch, distance_block(t), 0);
}

void dk_attention_head_f32(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                           size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                           const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out, size_t ldo,
                           float *scratch) {
    if (dk_has_avx512())
        dk_attention_head_f32_avx512(t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, NULL, NULL, 0, span, by_distance,
                                     key_mask, scale, out, ldo, scratch);
    else
        blocked_head(t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, NULL, NULL, 0, span, by_distance + t - 1, 1, -1,
                     key_mask, scale, out, ldo, scratch, distance_block(t), 1);
}

void dk_attention_head_f32_transposed(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                      const float *v, size_t ldv, const float *pkt, const float *pqt, size_t ldt,
                                      size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                      float *out, size_t ldo, float *scratch) {
    if (dk_has_avx512())
        dk_attention_head_f32_avx512(t, d, q, ldq, k, ldk, v, ldv, NULL, NULL, 0, pkt, pqt, ldt, span, by_distance,
                                     key_mask, scale, out, ldo, scratch);
    else
        blocked_head(t, d, q, ldq, k, ldk, v, ldv, NULL, NULL, 0, pkt, pqt, ldt, span, by_distance + t - 1, 1, -1,
                     key_mask, scale, out, ldo, scratch, distance_block(t), 1);
}

void dk_attention_head(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                       const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                       const int32_t *rel, const uint8_t *key_mask, float scale, float *out, size_t ldo,
                       float *scratch) {
    /* The AVX-512 head needs the index to depend on i - j only (true of both DeBERTa families). */
    int toeplitz = dk_has_avx512();
    for (size_t i = 1; toeplitz && i < t; i++)
        if (memcmp(rel + i * t + 1, rel + (i - 1) * t, (t - 1) * sizeof(int32_t)) != 0) toeplitz = 0;
    if (toeplitz) {
        int32_t *by_distance = (int32_t *)(scratch + dk_attention_scratch_avx512(t, d, span));
        for (size_t x = 0; x < t; x++) by_distance[t - 1 + x] = rel[x * t];
        for (size_t x = 1; x < t; x++) by_distance[t - 1 - x] = rel[x];
        dk_attention_head_avx512(t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, span, by_distance, key_mask, scale, out,
                                 ldo, scratch);
        return;
    }
    dk_attention_head_generic(t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, span, rel, key_mask, scale, out, ldo, scratch);
}

void dk_exp_lanes_scalar(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = dk_exp_lane(x[i]);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static void exp_rows_avx2(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8_avx2(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float a[8] = {0}, b[8];
        for (size_t j = 0; i + j < n; j++) a[j] = x[i + j];
        _mm256_storeu_ps(b, exp8_avx2(_mm256_loadu_ps(a)));
        for (size_t j = 0; i + j < n; j++) y[i + j] = b[j];
    }
}
#endif

int dk_exp_avx2(const float *x, float *y, size_t n) {
#if defined(__x86_64__)
    if (has_avx2_fma()) { exp_rows_avx2(x, y, n); return 1; }
#endif
    (void)x; (void)y; (void)n;
    return 0;
}

int dk_exp_avx512(const float *x, float *y, size_t n) {
    if (!dk_has_avx512()) return 0;
    dk_exp_avx512_rows(x, y, n);
    return 1;
}
