#ifndef DEBERTA_CGEMM_BF16_H
#define DEBERTA_CGEMM_BF16_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * bf16 products of linear layers: Y[M, N] = bf16(X)[M, K] · bf16(W)ᵀ (+ epilogue), accumulated in f32 the
 * way AVX-512 BF16's vdpbf16ps does, for the runtime's bf16 precision tier.
 *
 * bf16 ROUNDING (cgb_from_f32, used for the weights once and for the activations per product): the upper 16
 * bits of the f32 rounded to nearest even; NaN stays a quiet NaN (its top 16 bits with the quiet bit set);
 * ±inf stays ±inf; an f32 whose exponent field is 0 (±0 and the subnormals) becomes ±0 (the products treat
 * subnormal inputs as zero anyway, so flushing them here changes nothing and keeps the emulations simple).
 * Finite values that round past the largest bf16 become ±inf.
 *
 * PACKED LAYOUT (cgb_pack_weights). Kp = K rounded up to even, P = Kp / 2 pairs of k. W [N, K] is cut into
 * panels of CGB_PANEL = 48 output features (the last one padded with zero features); panel p holds, for each
 * pair i < P and feature j < 48, one 32-bit word
 *     packed[p · 48 · P + i · 48 + j] = bf16(W[48p + j, 2i]) | bf16(W[48p + j, 2i + 1]) << 16
 * (0 halves beyond K or N). cgb_packed_words(n, k) = ceil(N / 48) · 48 · P words (each panel starts 64-byte
 * aligned when `packed` does). Activations are rounded the same way into rows of words
 *     xb[r · ldxb + i] = bf16(X[r, 2i]) | bf16(X[r, 2i + 1]) << 16       (0 beyond K), ldxb >= P.
 *
 * WHAT IS COMPUTED for r < M, n_begin <= o < n_end, with daz(v) = (|v| < 2^-126 ? ±0 with v's sign : v):
 *     a   = daz(init(r, o))        init as for cg_gemm_packed: 0, bias[o], or bias[o] + residual[r, o]
 *     for i = 0 .. P-1:            (vdpbf16ps, per lane: the odd element first, then the even one; each
 *       a = daz(fma(x[2i+1], w[2i+1], a))  step a single-rounding f32 fma (the bf16 product is exact in f32)
 *       a = daz(fma(x[2i],   w[2i],   a))  with its subnormal result flushed to zero, sign kept)
 *     Y[r, o] = a, or gelu(a) for CG_EPILOGUE_BIAS_GELU (cg_gelu, the f32 product's exact GELU)
 * This is what AVX-512 BF16 hardware does (checked on Zen 4 against 2·10^7 random operand sets, subnormals
 * included: Intel's pseudo-code order, DAZ, FTZ, round to nearest even). The vdpbf16ps kernel, the AVX-512 F
 * and AVX2 emulations (bf16 halves widened with integer shifts, two fmas per pair, MXCSR FTZ for the flush)
 * and the scalar reference give BIT-IDENTICAL results whatever the shapes, the column range or the split.
 *
 * Column ranges: n_begin a multiple of CGB_PANEL, n_begin <= n_end <= N, n_end a multiple of 48 or N (else
 * nothing is written). Aliasing: as cg_gemm_packed (residual may be exactly y with ldr == ldy).
 */

#define CGB_PANEL 48

/* Which kernel cgb_gemm_packed uses: "avx512bf16" (vdpbf16ps), "avx512" (AVX-512 F emulation), "avx2"
 * (AVX2 + FMA emulation) or "scalar"; cpu_configure's cap applies (cap 1: avx2, cap 0: scalar). */
const char *cgb_kernel_isa(void);

/* f32 -> bf16 bits as documented above; and back (exact). */
uint16_t cgb_from_f32(float x);
float cgb_to_f32(uint16_t h);

/* Words of the packed form of an [n, k] weight. */
size_t cgb_packed_words(size_t n, size_t k);
/* Pairs per row of k values: (k + 1) / 2. */
size_t cgb_pairs(size_t k);

/* W [n, k] (row o at w + o·ldw) -> packed, every word written. Panels [p0, p1) only with the _panels form
 * (for splitting the packing over threads; the panel at index p is written at packed + p · 48 · P). */
void cgb_pack_weights(const float *w, size_t n, size_t k, size_t ldw, uint32_t *packed);
void cgb_pack_panels(const float *w, size_t n, size_t k, size_t ldw, uint32_t *packed, size_t p0, size_t p1);

/* Rounds rows of activations: x [m, k] (ldx) -> xb [m, ldxb words], as documented (words past P untouched). */
void cgb_round_rows(const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb);
void cgb_round_rows_scalar(const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb);

/* Columns of part `part` of `parts`: whole 48-column panels, balanced. */
void cgb_column_range(size_t n, size_t parts, size_t part, size_t *begin, size_t *end);

void cgb_gemm_packed(size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb, const uint32_t *packed,
                     const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                     size_t n_begin, size_t n_end);
void cgb_gemm_packed_scalar(size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb, const uint32_t *packed,
                            const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                            size_t n_begin, size_t n_end);

/* Test hook: one named kernel ("scalar", "avx2", "avx512", "avx512bf16"); 0 (nothing written) when this CPU
 * cannot run it. The same for the activation rounding ("scalar", "avx2", "avx512"). */
int cgb_gemm_packed_isa(const char *isa, size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb,
                        const uint32_t *packed, const float *bias, int epilogue, const float *residual, size_t ldr,
                        float *y, size_t ldy, size_t n_begin, size_t n_end);
int cgb_round_rows_isa(const char *isa, const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb);

#ifdef __cplusplus
}
#endif
#endif
