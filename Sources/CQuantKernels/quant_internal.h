#ifndef DEBERTA_CQUANTKERNELS_INTERNAL_H
#define DEBERTA_CQUANTKERNELS_INTERNAL_H
/* Private to CQuantKernels: helpers shared by the scalar and the AVX2 translation units. */
#include "cquantkernels.h"
#include <math.h>
#include <string.h>

/* The schemes are defined operation by operation; a fused multiply-add would round differently
 * (and differently on each platform). Clang honours this pragma per translation unit. */
#pragma STDC FP_CONTRACT OFF

#define DQ_BLOCK 32

/* rhe + clamp to [-127, 127], NaN -> 0. v is an f32 quotient x / s. */
static inline int8_t dq_round_clamp(float v) {
    float r = nearbyintf(v); /* default mode: to nearest, ties to even (= torch.round) */
    if (r != r) return 0;
    if (r > 127.0f) r = 127.0f;
    if (r < -127.0f) r = -127.0f;
    return (int8_t)r;
}

/* max |x_j|; NaN if any element is NaN (as torch.amax). */
static inline float dq_absmax(const float *x, size_t k) {
    float amax = 0.0f;
    int nan = 0;
    for (size_t j = 0; j < k; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
        else if (a != a) nan = 1;
    }
    return nan ? NAN : amax;
}

/* One row (or block) of the symmetric int8 scheme with scale = amax / 127. */
static inline float dq_quantize_span_scalar(const float *x, size_t k, int8_t *q) {
    float s = dq_absmax(x, k) / 127.0f;
    if (s == 0.0f) {
        memset(q, 0, k);
        return s;
    }
    for (size_t j = 0; j < k; j++) q[j] = dq_round_clamp(x[j] / s);
    return s;
}

/* The q8 block quantization of one row: q [kp], scales [kp / 32], zeros past k. */
static inline void dq_quantize_row_q8_blocks_scalar(const float *x, size_t k, int8_t *q, float *scales) {
    size_t nb = (k + DQ_BLOCK - 1) / DQ_BLOCK;
    for (size_t b = 0; b < nb; b++) {
        size_t j0 = b * DQ_BLOCK;
        size_t len = k - j0 < DQ_BLOCK ? k - j0 : DQ_BLOCK;
        scales[b] = dq_quantize_span_scalar(x + j0, len, q + j0);
        if (len < DQ_BLOCK) memset(q + j0 + len, 0, DQ_BLOCK - len);
    }
}

/* The fixed reduction of the eight q4 partial sums (see the header). */
static inline float dq_q4_tree(const float p[8]) {
    float a = p[0] + p[4];
    float b = p[2] + p[6];
    float c = p[1] + p[5];
    float d = p[3] + p[7];
    float ab = a + b;
    float cd = c + d;
    return ab + cd;
}

#if defined(__x86_64__)
size_t dq_pack_panel_int8_avx2(const int8_t *rows, size_t k, uint8_t *panel);
void dq_quantize_activations_int8_avx2(const float *x, size_t m, size_t k, size_t ldx, int8_t *q, float *scales);
/* AVX-512 F/BW/VL (quant_avx512.c), bit-identical to the scalar and AVX2 quantizers. */
void dq_quantize_activations_int8_avx512(const float *x, size_t m, size_t k, size_t ldx, int8_t *q, float *scales);
void dq_quantize_activations_q8_blocks_avx2(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                            float *scales);
void dq_gemm_int8_avx2(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const int8_t *wq,
                       const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end);
void dq_gemm_int8_avxvnni(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const int8_t *wq,
                          const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin,
                          size_t n_end);
void dq_gemm_q4_avx2(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *wq,
                     const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end);
void dq_gemm_int8_packed_avxvnni(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                 const uint8_t *packed, const float *ws, const float *bias, float *y, size_t ldy,
                                 size_t n_begin, size_t n_end);
void dq_gemm_q4_packed_avx512vnni(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                  const uint8_t *packed, const float *pscales, const float *bias, float *y,
                                  size_t ldy, size_t n_begin, size_t n_end);
void dq_gemm_int8_packed_avx512vnni(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                    const uint8_t *packed, const float *ws, const float *bias, float *y, size_t ldy,
                                    size_t n_begin, size_t n_end);
#endif

#endif
