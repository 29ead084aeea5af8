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

__attribute__((target("avx2,fma")))
static void gemm_nn_avx2(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                         const float *b, size_t ldb, float *c, size_t ldc, int fused) {
    /* Every element is the fused chain, in the 16-wide tiles and in the column tails alike: n is the number of
     * keys, and a key's score must not depend on whether its column lands in a tile or in the tail (a sequence
     * padded among longer ones gives the bits it gives alone). `fused` is ignored here. */
    (void)fused;
    const __m256 va = _mm256_set1_ps(alpha);
    size_t i = 0;
    /* 4 rows × 16 columns per tile: 8 accumulators, 2 loads of B and 4 broadcasts of A per step. */
    for (; i + 4 <= m; i += 4) {
        size_t j = 0;
        for (; j + 16 <= n; j += 16) {
            __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
            __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
            __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
            __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
            const float *a0 = a + i * lda, *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
            for (size_t p = 0; p < k; p++) {
                __m256 b0 = _mm256_loadu_ps(b + p * ldb + j);
                __m256 b1 = _mm256_loadu_ps(b + p * ldb + j + 8);
                __m256 x;
                x = _mm256_broadcast_ss(a0 + p); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
                x = _mm256_broadcast_ss(a1 + p); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
                x = _mm256_broadcast_ss(a2 + p); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
                x = _mm256_broadcast_ss(a3 + p); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
            }
            _mm256_storeu_ps(c + (i + 0) * ldc + j, _mm256_mul_ps(c00, va)); _mm256_storeu_ps(c + (i + 0) * ldc + j + 8, _mm256_mul_ps(c01, va));
            _mm256_storeu_ps(c + (i + 1) * ldc + j, _mm256_mul_ps(c10, va)); _mm256_storeu_ps(c + (i + 1) * ldc + j + 8, _mm256_mul_ps(c11, va));
            _mm256_storeu_ps(c + (i + 2) * ldc + j, _mm256_mul_ps(c20, va)); _mm256_storeu_ps(c + (i + 2) * ldc + j + 8, _mm256_mul_ps(c21, va));
            _mm256_storeu_ps(c + (i + 3) * ldc + j, _mm256_mul_ps(c30, va)); _mm256_storeu_ps(c + (i + 3) * ldc + j + 8, _mm256_mul_ps(c31, va));
        }
        if (j < n) gemm_nn_scalar(4, n - j, k, alpha, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, 1);
    }
    if (i < m) {
        /* Remaining rows: one row at a time, 16 columns per step. */
        for (; i < m; i++) {
            size_t j = 0;
            for (; j + 16 <= n; j += 16) {
                __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
                for (size_t p = 0; p < k; p++) {
                    __m256 x = _mm256_broadcast_ss(a + i * lda + p);
                    c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + p * ldb + j), c0);
                    c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + p * ldb + j + 8), c1);
                }
                _mm256_storeu_ps(c + i * ldc + j, _mm256_mul_ps(c0, va));
                _mm256_storeu_ps(c + i * ldc + j + 8, _mm256_mul_ps(c1, va));
            }
            if (j < n) gemm_nn_scalar(1, n - j, k, alpha, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, 1);
        }
    }
}

/* out[i][c] = Σ_j p[i][j] · v[j][c] with the sums in double: the context feeds the next quantized or
 * f32 product, and sums over up to thousands of keys lose several ulps in f32. */
__attribute__((target("avx2,fma")))
static void probs_times_values_avx2(size_t m, size_t t, size_t d, const float *p, size_t ldp, const float *v,
                                    size_t ldv, float *out, size_t ldo) {
    for (size_t i = 0; i < m; i++) {
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
        for (; c < d; c++) {
            double acc = 0;
            for (size_t j = 0; j < t; j++) acc += (double)pi[j] * (double)v[j * ldv + c];
            out[i * ldo + c] = (float)acc;
        }
    }
}

/* out[i][c] = Σ_j p[i][j] · v[j][c] in f32: one fma chain per output over j in increasing order, from +0
 * (dk_attention_head_f32's P·V). */
__attribute__((target("avx2,fma")))
static void probs_times_values_f32_avx2(size_t m, size_t t, size_t d, const float *p, size_t ldp, const float *v,
                                        size_t ldv, float *out, size_t ldo) {
    for (size_t i = 0; i < m; i++) {
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
        for (; c < d; c++) {
            float acc = 0.0f;
            for (size_t j = 0; j < t; j++) acc = fmaf(pi[j], v[j * ldv + c], acc);
            out[i * ldo + c] = acc;
        }
    }
}

static int has_avx2_fma(void) { return (cpu_usable() & CPU_AVX2_FMA) != 0; }
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

/* Query rows per block of the distance head: a multiple of 4, gemm_nn_avx2's row tile, so every row
 * takes the same tile code as in the full [t×t] product and gets the same bits. 64 rows of scores stay
 * within L2 up to t ≈ 4000 keys. */
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
        for (size_t r = 0; r < mb; r++)
            dk_attention_probability_row(scores + r * t, t, 1.0f, has_c2p ? c2p + r * span : NULL, has_p2c ? p2c : NULL, span,
                                         rel + (ptrdiff_t)(i0 + r) * rel_row, rel_col, key_mask, f32sums);
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

int dk_exp_avx512(const float *x, float *y, size_t n) {
    if (!dk_has_avx512()) return 0;
    dk_exp_avx512_rows(x, y, n);
    return 1;
}
