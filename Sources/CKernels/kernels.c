#include "ckernels.h"
#include "attention_internal.h"
#include <math.h>
#include <float.h>

static inline float activate(float x, dk_activation act) {
    switch (act) {
    case DK_ACT_IDENTITY: return x;
    case DK_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case DK_ACT_GELU_TANH: {
        const float c = 0.79788456080286535588f; /* sqrt(2/pi) */
        return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
    }
    case DK_ACT_GELU_FAST: return 0.5f * x * (1.0f + tanhf(x * 0.7978845608f * (1.0f + 0.044715f * x * x)));
    case DK_ACT_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
    case DK_ACT_RELU: return x > 0 ? x : 0;
    case DK_ACT_TANH: return tanhf(x);
    case DK_ACT_SILU: return x / (1.0f + expf(-x));
    case DK_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case DK_ACT_MISH: {
        float sp = x > 20.0f ? x : log1pf(expf(x));
        return x * tanhf(sp);
    }
    }
    return x;
}

void dk_bias_activation(float *y, size_t rows, size_t n, size_t ld, const float *bias, dk_activation act) {
    for (size_t r = 0; r < rows; r++) {
        float *row = y + r * ld;
        if (bias) {
            for (size_t c = 0; c < n; c++) row[c] += bias[c];
        }
        if (act != DK_ACT_IDENTITY) {
            for (size_t c = 0; c < n; c++) row[c] = activate(row[c], act);
        }
    }
}

#if defined(__x86_64__)
#include <immintrin.h>
int dk_has_avx512(void);

/* The same computation as the scalar loop below, 16 floats at a time: the residual added in f32, mean and
 * variance summed in double (8 lanes x 2 accumulators instead of one chain: a different order of double
 * additions, so (float)mean and inv can differ from the scalar loop's only when a double sum rounds across an
 * f32 rounding boundary), then (x - m) * inv * gamma + beta as separate f32 operations, as the scalar code
 * (no fused multiply-add). */
__attribute__((target("avx512f")))
static void layer_norm_avx512(float *x, size_t rows, size_t n, size_t ld, const float *residual, size_t ld_residual,
                              const float *gamma, const float *beta, float eps) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
        size_t c = 0;
        for (; c < n; c += 16) {
            __mmask16 m = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, row + c);
            if (residual) {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, residual + r * ld_residual + c));
                _mm512_mask_storeu_ps(row + c, m, v);
            }
            s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
            s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
        }
        double mean = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1)) / (double)n;
        const __m512d vm = _mm512_set1_pd(mean);
        __m512d q0 = _mm512_setzero_pd(), q1 = _mm512_setzero_pd();
        for (c = 0; c < n; c += 16) {
            __mmask16 m = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, row + c);
            __m512d d0 = _mm512_maskz_sub_pd((__mmask8)m, _mm512_cvtps_pd(_mm512_castps512_ps256(v)), vm);
            __m512d d1 = _mm512_maskz_sub_pd((__mmask8)(m >> 8),
                                             _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), vm);
            q0 = _mm512_add_pd(q0, _mm512_mul_pd(d0, d0));
            q1 = _mm512_add_pd(q1, _mm512_mul_pd(d1, d1));
        }
        double var = _mm512_reduce_add_pd(_mm512_add_pd(q0, q1)) / (double)n;
        const __m512 inv = _mm512_set1_ps((float)(1.0 / sqrt(var + (double)eps)));
        const __m512 mf = _mm512_set1_ps((float)mean);
        for (c = 0; c < n; c += 16) {
            __mmask16 m = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(m, row + c);
            __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(v, mf), inv), _mm512_maskz_loadu_ps(m, gamma + c));
            _mm512_mask_storeu_ps(row + c, m, _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, beta + c)));
        }
    }
}
#endif

void dk_layer_norm(float *x, size_t rows, size_t n, size_t ld, const float *residual, size_t ld_residual,
                   const float *gamma, const float *beta, float eps) {
#if defined(__x86_64__)
    if (n > 0 && dk_has_avx512()) {
        layer_norm_avx512(x, rows, n, ld, residual, ld_residual, gamma, beta, eps);
        return;
    }
#endif
    dk_layer_norm_scalar(x, rows, n, ld, residual, ld_residual, gamma, beta, eps);
}

void dk_layer_norm_scalar(float *x, size_t rows, size_t n, size_t ld, const float *residual, size_t ld_residual,
                          const float *gamma, const float *beta, float eps) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        if (residual) {
            const float *res = residual + r * ld_residual;
            for (size_t c = 0; c < n; c++) row[c] += res[c];
        }
        double mean = 0;
        for (size_t c = 0; c < n; c++) mean += row[c];
        mean /= (double)n;
        double var = 0;
        for (size_t c = 0; c < n; c++) {
            double d = row[c] - mean;
            var += d * d;
        }
        var /= (double)n;
        float inv = (float)(1.0 / sqrt(var + (double)eps));
        float m = (float)mean;
        for (size_t c = 0; c < n; c++) row[c] = (row[c] - m) * inv * gamma[c] + beta[c];
    }
}

/* rel_row[j * rel_step]: a row of a [t×t] table (step 1), or a by-distance table read backwards (step -1). */
void dk_attention_probability_row(float *row, size_t t, float content_scale, const float *c2p_row,
                                  const float *p2c, size_t ld_pos, const int32_t *rel_row, ptrdiff_t rel_step,
                                  const uint8_t *key_mask, int fixed_order) {
    float max;
    if (!dk_attention_logits(row, t, content_scale, c2p_row, p2c, ld_pos, rel_row, rel_step, key_mask, &max)) {
        for (size_t j = 0; j < t; j++) row[j] = 0;
        return;
    }
    if (fixed_order) {
        for (size_t j = 0; j < t; j++) row[j] = key_mask[j] ? dk_exp_lane(row[j] - max) : 0.0f;
        float inv = dk_inverse_row_sum(row, t);
        for (size_t j = 0; j < t; j++) row[j] *= inv;
        return;
    }
    double sum = 0;
    for (size_t j = 0; j < t; j++) {
        if (!key_mask[j]) { row[j] = 0; continue; }
        float e = expf(row[j] - max);
        row[j] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < t; j++) row[j] *= inv;
}

void dk_attention_probabilities(float *scores, size_t t, size_t ld_scores, float content_scale,
                                const float *c2p, const float *p2c, size_t ld_pos, const int32_t *rel,
                                const uint8_t *key_mask) {
    for (size_t i = 0; i < t; i++)
        dk_attention_probability_row(scores + i * ld_scores, t, content_scale, c2p ? c2p + i * ld_pos : NULL, p2c,
                                     ld_pos, rel + i * t, 1, key_mask, 0);
}

void dk_softmax_rows(float *x, size_t rows, size_t n, size_t ld) {
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * ld;
        float max = -FLT_MAX;
        for (size_t c = 0; c < n; c++) if (row[c] > max) max = row[c];
        double sum = 0;
        for (size_t c = 0; c < n; c++) { row[c] = expf(row[c] - max); sum += row[c]; }
        float inv = (float)(1.0 / sum);
        for (size_t c = 0; c < n; c++) row[c] *= inv;
    }
}
