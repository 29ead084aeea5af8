#ifndef DEBERTA_CKERNELS_H
#define DEBERTA_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Element-wise and row kernels of the DeBERTa forward pass, in f32. Each works on row-major
 * [rows, n] data with a leading dimension (stride between rows, in elements). */

/* Activation functions by transformers' ACT2FN name. */
typedef enum {
    DK_ACT_IDENTITY = 0,
    DK_ACT_GELU = 1,          /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    DK_ACT_GELU_TANH = 2,     /* gelu_new, gelu_pytorch_tanh */
    DK_ACT_GELU_FAST = 3,
    DK_ACT_QUICK_GELU = 4,
    DK_ACT_RELU = 5,
    DK_ACT_TANH = 6,
    DK_ACT_SILU = 7,
    DK_ACT_SIGMOID = 8,
    DK_ACT_MISH = 9
} dk_activation;

/* y[r][c] = act(y[r][c] + bias[c]); bias may be NULL. */
void dk_bias_activation(float *y, size_t rows, size_t n, size_t ld, const float *bias, dk_activation act);

/* In place: x = LayerNorm(x + residual) * gamma + beta, statistics in double for stability.
 * residual may be NULL. */
void dk_layer_norm(float *x, size_t rows, size_t n, size_t ld, const float *residual, size_t ld_residual,
                   const float *gamma, const float *beta, float eps);
/* The portable loop (tests; dk_layer_norm uses an AVX-512 version of it when the CPU has avx512f). */
void dk_layer_norm_scalar(float *x, size_t rows, size_t n, size_t ld, const float *residual, size_t ld_residual,
                   const float *gamma, const float *beta, float eps);

/* One attention head's scores, in place on `scores` [t, t] (ld_scores):
 *   s[i][j] = s[i][j] * content_scale + c2p[i][rel[i][j]] + p2c[j][rel[i][j]]
 * (c2p and p2c may be NULL: that term is absent; both are [t, span] with ld_pos), then keys with
 * key_mask[j] == 0 are excluded and each row is softmax-normalized. Rows whose keys are all masked
 * become zeros. rel holds indices in [0, span) ([t, t], row-major). */
void dk_attention_probabilities(float *scores, size_t t, size_t ld_scores, float content_scale,
                                const float *c2p, const float *p2c, size_t ld_pos, const int32_t *rel,
                                const uint8_t *key_mask);

/* Softmax of each row, in place. */
void dk_softmax_rows(float *x, size_t rows, size_t n, size_t ld);



/* C[m×n] = alpha · A[m×k] · B[k×n], row-major with leading dimensions (AVX2/FMA when the CPU has it,
 * chosen at run time; `_scalar` is the portable reference). */
void dk_gemm_nn(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b, size_t ldb,
                float *c, size_t ldc);
void dk_gemm_nn_scalar(size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda, const float *b,
                       size_t ldb, float *c, size_t ldc);

/* out[t×d] = P[t×t] · V[t×d] with double accumulation (AVX2 at run time; `_scalar` reference). */
void dk_probs_times_values(size_t t, size_t d, const float *p, size_t ldp, const float *v, size_t ldv,
                           float *out, size_t ldo);
void dk_probs_times_values_scalar(size_t t, size_t d, const float *p, size_t ldp, const float *v, size_t ldv,
                                  float *out, size_t ldo);

/* Floats of scratch any of the attention heads below needs (on any CPU). */
size_t dk_attention_scratch(size_t t, size_t d, size_t span);

/* One head of disentangled attention for one sequence of t tokens, head size d:
 *   s[i][j] = scale · (q_i·k_j + q_i·pk[rel[i][j]] + k_j·pq[rel[i][j]])   (pk / pq NULL: term absent)
 * masked softmax over keys with key_mask[j] != 0, then out_i = Σ_j p_ij v_j.
 * q, k, v rows have leading dimensions ldq, ldk, ldv; pk and pq point at the first reachable row of the
 * relative table ([span × d] with leading dimension ldp); rel is [t × t] in [0, span).
 * Writes out [t × d] (leading dimension ldo). Uses `scratch` (dk_attention_scratch floats).
 * With AVX-512 and an index that depends on i - j only, this runs dk_attention_head_distance's kernel;
 * otherwise dk_attention_head_generic. */
void dk_attention_head(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                       const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                       const int32_t *rel, const uint8_t *key_mask, float scale, float *out, size_t ldo,
                       float *scratch);

/* The same head with the index given by distance: rel[i][j] = by_distance[i - j + t - 1] (2t - 1 entries),
 * as both DeBERTa families index the relative table. Queries are processed in blocks of rows (16 with
 * AVX-512, 64 otherwise), so no [t×t] matrix or index table exists and the scratch is linear in t:
 * O(t·(d + span)). AVX-512 when the CPU has it (zmm products only over the relative rows each block of
 * queries or keys reaches, the c2p/p2c terms picked by in-register permutations instead of gathers, a
 * vectorized exp, P·V summed in double as the generic head does), else
 * dk_attention_head_distance_generic.
 * Scratch: dk_attention_distance_scratch floats (the CPU's path only) or dk_attention_scratch. */
size_t dk_attention_distance_scratch(size_t t, size_t d, size_t span);
void dk_attention_head_distance(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                                const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                                size_t ldo, float *scratch);

/* The AVX2/scalar distance head on any CPU (the tests call it on AVX-512 machines too): blocks of 64
 * queries, each row computed by the same code as in dk_attention_head_generic, so the output equals
 * dk_attention_head_generic's on the [t×t] table of by_distance to the bit.
 * Scratch: dk_attention_distance_generic_scratch floats, d·t + 2·d·span + t·span + 64·(t + span). */
size_t dk_attention_distance_generic_scratch(size_t t, size_t d, size_t span);
void dk_attention_head_distance_generic(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                        const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                        size_t span, const int32_t *by_distance, const uint8_t *key_mask,
                                        float scale, float *out, size_t ldo, float *scratch);

/* The portable head (AVX2/FMA products or scalar, index gathers, P·V summed in double), any rel table:
 * the full [t×t] score matrix in one block (the row-blocked distance head's reference). */
void dk_attention_head_generic(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                               const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                               const int32_t *rel, const uint8_t *key_mask, float scale, float *out, size_t ldo,
                               float *scratch);

/* Position rows shared by several head calls: p [rows × d] (ld ldp) transposed once into dst [d × ldd] (ldd >=
 * rows; returns 0, writing nothing, otherwise); dk_attention_head_distance_transposed then takes pkt / pqt =
 * dst + the column of the sequence's first reachable row (NULL: term absent) instead of pk / pq, with the same
 * bits as dk_attention_head_distance on any CPU. Scratch as dk_attention_distance_scratch. */
int dk_attention_position_transposed(const float *p, size_t rows, size_t d, size_t ldp, float *dst, size_t ldd);
void dk_attention_head_distance_transposed(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                          const float *v, size_t ldv, const float *pkt, const float *pqt, size_t ldt,
                                          size_t span, const int32_t *by_distance, const uint8_t *key_mask,
                                          float scale, float *out, size_t ldo, float *scratch);

/* The quantized tiers' head: dk_attention_head_distance's contract with every product in f32 and P·V too (no
 * double): each score, c2p and p2c term is scale · (an fma chain over the d features in increasing order, from
 * +0); s = ((scale·q·k + scale·q·pk) + scale·k·pq) + (0 or -inf); the AVX-512 head's exp; the row sum in double
 * in the bf16 head's fixed order (below); p = e · (float)(1 / sum); out_i = an fma chain over the keys j < t in
 * increasing order of p_ij · v_j, from +0 (then · 1). Fully masked rows give +0. Its results feed int8 or q4
 * products, whose activation quantization dwarfs the last bits that summing P·V in double keeps for the f32
 * tier; in f32 it runs P·V at twice the double rate. The same bits on every CPU and under every kernel cap
 * (AVX-512 head, or the row-blocked AVX2 / scalar head with the same fma chains, exp and sum order), so a
 * quantized model's answers do not depend on the machine's attention kernel.
 * dk_attention_head_f32 takes the position rows pk / pq (ld ldp), dk_attention_head_f32_transposed the
 * transposed ones of dk_attention_position_transposed (pkt / pqt, ld ldt), with the same bits.
 * Scratch: dk_attention_distance_scratch floats. dk_attention_head_f32_reference is its scalar definition
 * (one key and one output at a time; its own memory: 0 when an allocation fails). */
void dk_attention_head_f32(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk, const float *v,
                           size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                           const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out, size_t ldo,
                           float *scratch);
void dk_attention_head_f32_transposed(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                      const float *v, size_t ldv, const float *pkt, const float *pqt, size_t ldt,
                                      size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                      float *out, size_t ldo, float *scratch);
int dk_attention_head_f32_reference(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                    const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                    size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                    float *out, size_t ldo);

/* Which attention kernel this CPU runs: "avx512", "avx2" or "scalar". */
const char *dk_attention_isa(void);

/* y = exp(x) with the AVX-512 head's vectorized exp; returns 0 (and writes nothing) without AVX-512. */
int dk_exp_avx512(const float *x, float *y, size_t n);
/* y = exp(x) with the fixed-order heads' scalar exp (the AVX-512 exp one lane at a time), and with its AVX2 twin
 * (the same bits; returns 0 and writes nothing without AVX2/FMA). For tests. */
void dk_exp_lanes_scalar(const float *x, float *y, size_t n);
int dk_exp_avx2(const float *x, float *y, size_t n);

/* The bf16 tier's head (dk_attention_head_bf16_words; pk / pq rows in the test hook below):
 * dk_attention_head_distance's contract, with the products in bf16 as vdpbf16ps
 * computes them (cgemm_bf16.h): q, k, pk, pq, v rounded to bf16 (nearest even), the probabilities rounded to
 * f32 and then to bf16; every product accumulated in f32 over pairs of elements (the odd one first, subnormal
 * sums flushed), from +0, over keys padded with zeros to a multiple of 16 (and head sizes to a multiple of
 * 2); s = scale · (q·k) + scale · (q·pk) + scale · (k·pq) + (0 or -inf), the AVX-512 head's exp, the row sum in
 * double over 16 lanes (lane j mod 16; lanes l and l + 8 added, then ((0+4)+(2+6))+((1+5)+(3+7))). AVX-512
 * only: returns 0 (nothing written) when the CPU, under the cap, lacks AVX-512 F/BW/VL/DQ; vdpbf16ps where it
 * has AVX512_BF16, else an emulation with the same bits. Scratch: dk_attention_bf16_scratch floats. */
size_t dk_attention_bf16_scratch(size_t t, size_t d, size_t span);
/* Position rows shared by several heads calls (every sequence of a forward call reads windows of the same
 * rows): p [rows × d] (ld ldp) rounded and transposed once into words [(d + 1)/2 × ldw] (ldw >= rows; stage:
 * rows · (d + 1)/2 words of scratch); then dk_attention_head_bf16_words takes pkw / pqw = words + the column of
 * the sequence's first reachable row (NULL: term absent), with the same bits as the head on pk / pq rows. Both
 * return 0 (nothing written) where the bf16 head cannot run. */
int dk_attention_bf16_position_words(const float *p, size_t rows, size_t d, size_t ldp, uint32_t *words, size_t ldw,
                                     uint32_t *stage);
int dk_attention_head_bf16_words(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                 const float *v, size_t ldv, const uint32_t *pkw, const uint32_t *pqw, size_t ldw,
                                 size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                 float *out, size_t ldo, float *scratch);
/* Which bf16 head this CPU runs: "avx512bf16", "avx512" (emulation) or "none". */
const char *dk_attention_bf16_isa(void);
/* Test hook: the named kernel ("avx512bf16" or "avx512"); 0 when this CPU cannot run it. */
int dk_attention_head_bf16_isa(const char *isa, size_t t, size_t d, const float *q, size_t ldq, const float *k,
                               size_t ldk, const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                               size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                               float *out, size_t ldo, float *scratch);
/* The scalar reference of the bf16 head, one key and one output at a time (its own memory: 0 when an
 * allocation fails). */
int dk_attention_head_bf16_reference(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                     const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                     size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                     float *out, size_t ldo);
#endif
