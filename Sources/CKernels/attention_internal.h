#ifndef DEBERTA_ATTENTION_INTERNAL_H
#define DEBERTA_ATTENTION_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

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
void dk_attention_position_transposed_avx512(const float *p, size_t rows, size_t d, size_t ldp, float *dst, size_t ldd);
void dk_attention_head_transposed_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                         const float *v, size_t ldv, const float *pkt, const float *pqt, size_t ldt,
                                         size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                         float *out, size_t ldo, float *scratch);
void dk_attention_bf16_position_words_avx512(const float *p, size_t rows, size_t d, size_t ldp, uint32_t *words,
                                             size_t ldw, uint32_t *stage);

/* One query row of dk_attention_probabilities (kernels.c): key j's relative row is rel_row[j * rel_step];
 * c2p_row is the query's c2p row (NULL: no c2p term). The full-matrix and the row-blocked heads both use
 * it, so a row gets the same bits in either. */
void dk_attention_probability_row(float *row, size_t t, float content_scale, const float *c2p_row,
                                  const float *p2c, size_t ld_pos, const int32_t *rel_row, ptrdiff_t rel_step,
                                  const uint8_t *key_mask);
#endif
