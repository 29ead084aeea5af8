#ifndef DEBERTA_ATTENTION_INTERNAL_H
#define DEBERTA_ATTENTION_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>

/* The AVX-512 head (attention_avx512.c), used by attention.c when dk_has_avx512() says the CPU has
 * AVX-512 F/BW/VL/DQ. `by_distance` has 2t - 1 entries: the relative row of query i and key j is
 * by_distance[i - j + t - 1]. */
int dk_has_avx512(void);
size_t dk_attention_scratch_avx512(size_t t, size_t d, size_t span);
void dk_attention_head_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                              const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                              const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                              size_t ldo, float *scratch);
void dk_exp_avx512_rows(const float *x, float *y, size_t n);
/* The same head with bf16 products (attention_bf16.c's contract); native: vdpbf16ps, else its emulation. */
size_t dk_attention_bf16_scratch_avx512(size_t t, size_t d, size_t span);
void dk_attention_head_bf16_avx512(int native, size_t t, size_t d, const float *q, size_t ldq, const float *k,
                                   size_t ldk, const float *v, size_t ldv, const float *pk, const float *pq,
                                   size_t ldp, const uint32_t *pkw, const uint32_t *pqw, size_t ldw, size_t span,
                                   const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                                   size_t ldo, float *scratch);
/* The f32 head with P·V in f32 (mode 3: dk_attention_head_f32's contract): position rows pk / pq, or transposed
 * pkt / pqt (ld ldt) when given. Scratch: dk_attention_scratch_avx512 floats. */
void dk_attention_head_f32_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                  const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                  const float *pkt, const float *pqt, size_t ldt, size_t span,
                                  const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                                  size_t ldo, float *scratch);
void dk_attention_position_transposed_avx512(const float *p, size_t rows, size_t d, size_t ldp, float *dst, size_t ldd);
void dk_attention_head_transposed_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                         const float *v, size_t ldv, const float *pkt, const float *pqt, size_t ldt,
                                         size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                         float *out, size_t ldo, float *scratch);
void dk_attention_bf16_position_words_avx512(const float *p, size_t rows, size_t d, size_t ldp, uint32_t *words,
                                             size_t ldw, uint32_t *stage);

/* One query row of dk_attention_probabilities (kernels.c): key j's relative row is rel_row[j * rel_step];
 * c2p_row is the query's c2p row (NULL: no c2p term). The full-matrix and the row-blocked heads both use
 * it, so a row gets the same bits in either. fixed_order: the AVX-512 head's exp (dk_exp_lane) and row sum
 * (dk_inverse_row_sum), as dk_attention_head_f32 needs, instead of expf and a sum in key order. */
void dk_attention_probability_row(float *row, size_t t, float content_scale, const float *c2p_row,
                                  const float *p2c, size_t ld_pos, const int32_t *rel_row, ptrdiff_t rel_step,
                                  const uint8_t *key_mask, int fixed_order);

/* The logits of one query row in key order: row[j] = row[j] · content_scale + c2p_row[rel] + p2c[j][rel] for the
 * kept keys (masked entries untouched), their maximum in *max_out (-FLT_MAX to start; NaN never wins). Returns 0
 * when no key is kept. dk_attention_probability_row and the AVX2 fixed-order row share it. */
static inline int dk_attention_logits(float *row, size_t t, float content_scale, const float *c2p_row, const float *p2c,
                                      size_t ld_pos, const int32_t *rel_row, ptrdiff_t rel_step, const uint8_t *key_mask,
                                      float *max_out) {
    float max = -FLT_MAX;
    int any = 0;
    for (size_t j = 0; j < t; j++) {
        if (!key_mask[j]) continue;
        float s = row[j] * content_scale;
        int32_t k = rel_row[(ptrdiff_t)j * rel_step];
        if (c2p_row) s += c2p_row[(size_t)k];
        if (p2c) s += p2c[j * ld_pos + (size_t)k];
        row[j] = s;
        if (s > max) max = s;
        any = 1;
    }
    *max_out = max;
    return any;
}

/* The AVX-512 head's exp (exp16 in attention_avx512.c), one lane, to the bit. */
static inline float dk_exp_lane(float x) {
    x = x > -200.0f ? x : -200.0f; /* vmaxps(x, -200): -200 for NaN as well */
    float n = nearbyintf(x * 1.44269504088896341f);
    float r = fmaf(-n, 0.693359375f, x);
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float r2 = r * r;
    p = fmaf(p, r2, r + 1.0f);
    return ldexpf(p, (int)n);
}

/* 1 / Σ s[j] as the AVX-512 bf16 and f32-sums heads sum a row: lane j mod 16 in double, lanes l and l + 8, then
 * ((0+4)+(2+6))+((1+5)+(3+7)); rounded to f32. Entries past the keys (zeros) may be included or not. */
static inline float dk_inverse_of_lane_sums(const double lane[16]) {
    double l[8];
    for (int c = 0; c < 8; c++) l[c] = lane[c] + lane[c + 8];
    return (float)(1.0 / (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))));
}

static inline float dk_inverse_row_sum(const float *s, size_t n) {
    double lane[16] = {0};
    for (size_t j = 0; j < n; j++) lane[j % 16] += (double)s[j];
    return dk_inverse_of_lane_sums(lane);
}
#endif
