#ifndef DEBERTA_CQUANTKERNELS_H
#define DEBERTA_CQUANTKERNELS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Quantized matrix products for the DeBERTa runtime: Y[M, N] = X[M, K] · W[N, K]ᵀ (+ bias[N]).
 * W is a linear layer's weight in PyTorch layout ([out_features, in_features]), X the activations.
 *
 * Every product exists twice: `*_scalar` is the portable reference; the unsuffixed function
 * dispatches at run time (CPU probed once, decision cached) to an AVX2 kernel on x86-64 CPUs that
 * have AVX2 + FMA, and to the scalar reference everywhere else (arm64 builds only the scalar code).
 * The AVX2 kernels return results BIT-IDENTICAL to the scalar references: integer sums are exact,
 * and every float operation (each multiply and add, in the same order) is the same in both paths.
 * Floating-point contraction (a*b+c -> fma) is disabled in this library so that this also holds
 * for compilers/targets that would otherwise fuse. Results assume the default floating-point
 * environment (round to nearest even, no flush-to-zero / denormals-are-zero).
 *
 * All matrices are row-major and contiguous unless a leading dimension (ld*, in elements) is given.
 * Sizes of 0 are allowed (nothing is read or written). Nothing here allocates except dq_gemm_q4 for
 * K > 4096 (a scratch buffer; if that allocation fails it computes the same result in scalar code).
 * All functions are thread-safe; the products write only the columns [n_begin, n_end) of Y, so
 * threads can split the columns of one product.
 *
 * ======================================================================================
 * Rounding conventions (identical to PyTorch on f32 tensors, so a torch simulation of the
 * schemes reproduces the quantized integers bit for bit):
 *   - "a / s" is an IEEE f32 division (NOT a multiplication by 1/s), like torch's `x / s`;
 *   - rhe(v) rounds to nearest, ties to even (C nearbyintf in the default mode; torch.round);
 *   - clamp(v, -127, 127): -128 never occurs (this also keeps the AVX2 sign trick exact).
 *   - max|.| is NaN if any element is NaN (as torch.amax): that row/block gets scale NaN and
 *     all-zero codes, so its products are NaN. An infinite element gives scale +inf, zero codes
 *     and NaN products. (Only the q4 WEIGHT quantizer follows ggml instead; see scheme 2.)
 *   - if scale_x · scale_w overflows (|x|·|w| beyond ~1e38 · 127²), an exactly-zero sum gives NaN.
 *
 * ======================================================================================
 * SCHEME 1: int8, symmetric, weights per output channel, activations per token.
 *
 *   Weights W[N, K] f32, for each row o:
 *     scale_w[o] = max_k |W[o,k]| / 127                         (f32 division)
 *     qw[o,k]    = scale_w[o] == 0 ? 0 : clamp(rhe(W[o,k] / scale_w[o]), -127, 127)   (int8)
 *   Stored: qw int8 [N, K] row-major, scale_w f32 [N].
 *   Activations X[M, K] f32 (row stride ldx), for each row r: exactly the same formula,
 *     scale_x[r] = max_k |X[r,k]| / 127, qx[r,k] = clamp(rhe(X[r,k] / scale_x[r]), -127, 127).
 *   In torch:  s = x.abs().amax(-1, keepdim=True) / 127
 *              q = torch.where(s > 0, torch.round(x / s), 0).clamp(-127, 127)
 *   Product, for r in [0, M), o in [n_begin, n_end):
 *     acc      = Σ_k qx[r,k] · qw[o,k]                          (exact, int32)
 *     Y[r, o]  = (scale_x[r] · scale_w[o]) · (float)acc         (two f32 roundings, in this order;
 *                                                                (float)acc rounds when |acc| > 2^24)
 *     Y[r, o] += bias[o]                                        (one more f32 rounding; if bias != NULL)
 *   Precondition: K <= DQ_INT8_MAX_K, so that |acc| <= 127·127·K fits in int32.
 *   Accuracy of the f32 evaluation against the same formula in float64: at most 4 roundings,
 *   |Y - Y64| <= 2.5e-7 · (|scale_x·scale_w·acc| + |bias|).
 *   Quantization error: |W - qw·scale_w| <= scale_w / 2 (plus f32 rounding of the quotient and
 *   product, a few ulp of |W|) whenever scale_w is a normal float (max|W| >= 127·2^-126).
 *   For a denormal scale the quotient loses precision (the clamp may then bite); rows whose
 *   max|W| / 127 underflows to 0 quantize to all zeros. At the other end 127 · fl(FLT_MAX / 127)
 *   rounds past FLT_MAX: dequantizing ±FLT_MAX gives ±inf (the codes and scale are finite).
 *
 * ======================================================================================
 * SCHEME 2: q4 weights (GGUF Q4_0 semantics, f32 scales), q8 block activations.
 *
 *   K is padded with zeros to Kp = dq_q4_padded_k(K) = ceil(K / 32) · 32 (the stored shape
 *   records Kp); nb = Kp / 32 blocks per row. Weights W[N, K] f32, per row o and block b
 *   (the 32 values x_0..x_31 = W[o, 32b .. 32b+31], zeros past K):
 *     amax = max_j |x_j|;  m = the x_j with |x_j| == amax, the FIRST one on ties (signed);
 *            found with `if (amax < |x_j|)` as in ggml, so NaN elements are skipped here
 *     d    = m / -8                      (f32; stored as scale_w[o, b]; -0.0f for an all-zero block)
 *     id   = d != 0 ? 1 / d : 0          (f32)
 *     q_j  = min(15, (int)(x_j · id + 8.5f))   (f32 multiply, then f32 add, then truncation
 *                                               toward zero, exactly like ggml's
 *                                               quantize_row_q4_0_ref; for finite inputs the sum
 *                                               lies in [0, 16.5], so q_j is in [0, 15])
 *     value_j = (q_j - 8) · d
 *   Packing: 16 bytes per block; byte j (0..15) = q_j | (q_{j+16} << 4), i.e. element j in the
 *   low nibble and element j+16 in the high nibble (GGUF Q4_0 order, f32 scale instead of f16).
 *   Stored: packed uint8 [N, Kp/2] (block b of row o at byte o·Kp/2 + 16b), scale_w f32 [N, nb].
 *   In torch (per block, f32):  id = torch.where(d != 0, 1 / d, 0)
 *                               q = (x * id + 8.5).to(torch.int8).clamp(max=15)   # trunc
 *   Quantization error: |x - value| <= |d|/2 (plus a few ulp), except the clamp case: elements
 *   of the sign opposite to m with x·id >= 7.5 (|x| > 7.5|d|) map to q = 15, value 7d, with
 *   error <= |d| (since |x| <= 8|d|). The element m itself is reproduced exactly (q = 0).
 *
 *   Activations X[M, K] f32 (row stride ldx), q8 blocks of 32 along K (zeros past K):
 *     d_x[r, b] = max_j |x_j| / 127;  qx_j = d_x == 0 ? 0 : clamp(rhe(x_j / d_x), -127, 127)
 *   (like GGUF Q8_0, but with an f32 scale, a true division and ties-to-even; ggml's own
 *   quantize_row_q8_0 multiplies by 1/d and rounds half away from zero.)
 *   Stored: qx int8 [M, Kp], d_x f32 [M, nb].
 *
 *   Product, for r in [0, M), o in [n_begin, n_end):
 *     isum_b = Σ_{j<32} (q_w[o, b, j] - 8) · qx[r, 32b + j]         (exact, int32; |isum_b| <= 32512)
 *     t_b    = (d_w[o, b] · d_x[r, b]) · (float)isum_b              (two f32 roundings; isum_b is exact)
 *     P[l]   = Σ over blocks b ≡ l (mod 8), b increasing, of t_b     (l = 0..7, each starting at +0.0f,
 *                                                                     one f32 addition per block)
 *     Y[r, o] = ((P[0] + P[4]) + (P[2] + P[6])) + ((P[1] + P[5]) + (P[3] + P[7]))
 *     Y[r, o] += bias[o]                                            (if bias != NULL)
 *   The eight partial sums are how the AVX2 kernel holds blocks in its eight lanes; the scalar
 *   reference evaluates exactly this order. Accuracy against Σ_b d_w·d_x·isum_b (+ bias) in
 *   float64: |Y - Y64| <= (ceil(nb/8) + 6) · 2^-24 · (Σ_b |t_b| + |bias|): about 5.4e-7 relative to
 *   Σ|t_b| for K = 768 (nb = 24) and 1.1e-6 for K = 3072 (nb = 96) in the worst case; typical
 *   errors are several times smaller.
 * ======================================================================================
 */

/* Largest K for which the int8 product's int32 sums cannot overflow: 127·127·K <= 2^31 - 1. */
#define DQ_INT8_MAX_K ((size_t)133144)

/* Which kernels the dispatching functions use on this CPU: "avxvnni" (AVX2 + FMA + AVX-VNNI: the int8
 * product uses the AVX-VNNI kernel, everything else the AVX2 kernels), "avx2" or "scalar". The product on
 * packed int8 weights dispatches separately: dq_int8_packed_isa(). */
const char *dq_kernel_isa(void);

/* ---------------------------------------------------------------- int8 (scheme 1) */

/* W [n, k] -> q int8 [n, k], scales f32 [n]. */
void dq_quantize_weights_int8(const float *w, size_t n, size_t k, int8_t *q, float *scales);

/* w[o, j] = (float)q[o, j] · scales[o]  (one f32 rounding). w [n, k]. */
void dq_dequantize_weights_int8(const int8_t *q, const float *scales, size_t n, size_t k, float *w);

/* X [m, k] with row stride ldx (>= k) -> q int8 [m, k] (row stride k), scales f32 [m].
 * The same formula as the weights. Dispatching (AVX-512 F/BW/VL, else AVX2) and scalar versions
 * give identical bytes. */
void dq_quantize_activations_int8(const float *x, size_t m, size_t k, size_t ldx, int8_t *q, float *scales);
void dq_quantize_activations_int8_scalar(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                         float *scales);

/* Y[r, o] for r < m, n_begin <= o < n_end (n_end <= n), as documented in scheme 1.
 * xq [m, k], xs [m], wq [n, k], ws [n], bias [n] or NULL, y with row stride ldy (element (r, o) at
 * y[r·ldy + o]); other columns of y are not touched. Requires k <= DQ_INT8_MAX_K.
 * AVX2 path: 32-byte chunks along K with 2 rows × 4 output channels (and smaller edge tiles) per
 * inner loop, int32 accumulation over the whole K, a scalar loop for the last k mod 32 elements.
 * AVX-VNNI path (CPUs with AVX-VNNI, e.g. Alder Lake, Sapphire Rapids, Zen 5): the same tiling with
 * 256-bit vpdpbusd (|x| · sign(x)·w, 4 products added to int32 per lane) instead of
 * vpmaddubsw + vpmaddwd + vpaddd; bit-identical as well. */
void dq_gemm_int8(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const int8_t *wq,
                  const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end);
void dq_gemm_int8_scalar(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const int8_t *wq,
                         const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin,
                         size_t n_end);

/* Runs one specific int8 kernel: isa = "scalar", "avx2" or "avxvnni" (same arguments as dq_gemm_int8).
 * Returns 1, or 0 without touching y if that kernel is not built for this target or not supported by
 * this CPU. For tests and benchmarks. */
int dq_gemm_int8_isa(const char *isa, size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                     const int8_t *wq, const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin,
                     size_t n_end);

/* ---------------------------------------------------------------- int8 on packed weights (scheme 1) */

/*
 * PACKED INT8 LAYOUT (dq_pack_weights_int8), made once at load time from the stored codes qw [N, K].
 * The VNNI layout (as oneDNN / MLAS use it): W is cut into panels of DQ_INT8_PANEL = 16 consecutive
 * output channels (the last panel padded with zero channels) and K into groups of 4 (the last group
 * padded with zeros). For panel p and group g the 16 × 4 bytes are contiguous, channel-major, so one
 * 64-byte vector holds 4 consecutive k of 16 channels, in the order vpdpbusd consumes them:
 *     packed[(p · KG + g) · 64 + 4c + j] = (uint8_t)(qw[16p + c, 4g + j] + 128)   if 16p + c < N and 4g + j < K
 *                                        = 0                                       (padding)
 * with KG = ceil(K / 4); dq_int8_packed_size(n, k) = ceil(N / 16) · KG · 64 bytes. The codes are stored
 * biased (w + 128, 1..255) because vpdpbusd multiplies UNSIGNED bytes by signed bytes: the product
 * broadcasts 4 signed activation bytes x[r, 4g..4g+3] to every lane and accumulates, per output channel,
 *     A[r, o] = Σ_k (qw[o,k] + 128) · qx[r,k]                      (padding contributes 0: its weight byte is 0)
 * and then subtracts 128 · Σ_k qx[r,k] (the activation row sum, computed per call):
 *     acc[r, o] = A[r, o] - 128 · Σ_k qx[r,k] = Σ_k qw[o,k] · qx[r,k].
 * A can exceed the int32 range for K > 66311 (|A| <= 255 · 127 · K); the lanes wrap modulo 2^32 (vpdpbusd
 * does not saturate) and so does the subtraction, and the true acc fits int32 (K <= DQ_INT8_MAX_K), so acc
 * is exact. The epilogue is scheme 1's: Y = (scale_x[r] · scale_w[o]) · (float)acc (+ bias[o]), the same
 * f32 operations in the same order, so the packed product is BIT-IDENTICAL to dq_gemm_int8_scalar.
 * (Measured alternative: unbiased signed weights with x ^ 0x80 as the unsigned side and 128 · Σ_k qw[o,k]
 * subtracted: the same speed on Zen 5, one more instruction per broadcast.)
 * `packed` should be 64-byte aligned for speed (any alignment is correct).
 *
 * COLUMN RANGES: any n_begin <= n_end is correct (n_end is clamped to n; columns outside the range are
 * neither read from ws / bias nor written in y). Work is done per panel, so ranges that start at a multiple
 * of DQ_INT8_PANEL and end at one (or at n) do not compute a panel twice; the kernel sweeps strips of
 * DQ_INT8_STRIP panels (its register tile), so threads should split the columns with
 * dq_int8_packed_column_range, which hands out whole strips.
 */
#define DQ_INT8_PANEL 16
#define DQ_INT8_STRIP 3

/* Bytes of the packed form of an [n, k] int8 weight: ceil(n / 16) · ceil(k / 4) · 64. */
size_t dq_int8_packed_size(size_t n, size_t k);

/* qw int8 [n, k] (codes of scheme 1, |q| <= 127) -> packed [dq_int8_packed_size(n, k)] as documented above
 * (every byte written, padding included). */
void dq_pack_weights_int8(const int8_t *q, size_t n, size_t k, uint8_t *packed);

/* The inverse, for tests and tools: q[o, j] for o < n, j < k. */
void dq_unpack_weights_int8(const uint8_t *packed, size_t n, size_t k, int8_t *q);

/* Columns of part `part` (0-based) of `parts` for the packed product: whole strips of DQ_INT8_STRIP panels
 * (48 columns), balanced (part sizes differ by at most one strip), in order, covering [0, n). Empty ranges
 * (begin == end) when parts > strips or part >= parts. */
void dq_int8_packed_column_range(size_t n, size_t parts, size_t part, size_t *begin, size_t *end);

/* Y[r, o] for r < m, n_begin <= o < n_end: the same result as dq_gemm_int8 (scheme 1, bit for bit) with
 * the weights in the packed layout. xq [m, k], xs [m], packed from dq_pack_weights_int8(qw, n, k, ...),
 * ws [n], bias [n] or NULL, y with row stride ldy. Requires k <= DQ_INT8_MAX_K. Allocates nothing.
 * Dispatching: the AVX-512 VNNI kernel when the CPU has AVX-512 F, BW, VL and VNNI (and the OS saves the
 * ZMM state), else the AVX-VNNI kernel when it has AVX2 + FMA + AVX-VNNI, else the scalar reference.
 * AVX-512 VNNI kernel: rows in blocks whose activations fit 512 KiB (L2); per block, strips of 3 panels
 * (48 channels) are swept by register tiles of 8 rows × 48 channels (24 zmm accumulators; per group of 4 k:
 * 3 weight loads, 8 vpbroadcastd, 24 vpdpbusd), the strip's weights staying in L1/L2 across the row
 * tiles; the first row tile of a strip prefetches the weight stream; masked loads/stores at the range
 * edges. ~950-1030 GOPS per core at M = 128 on Zen 5 (quant-bench), 3.3-3.9x dq_gemm_int8 there.
 * AVX-VNNI kernel (16 ymm registers): the same blocking with tiles of 6 rows × 16 channels (12 ymm
 * accumulators, {vex} vpdpbusd); ~470-500 GOPS on the same Zen 5 core, 1.7x dq_gemm_int8's AVX-VNNI kernel.
 * Scalar reference (portable): the same arithmetic one lane at a time, slow; for tests and for CPUs
 * without VNNI (where callers should keep the row-major codes and dq_gemm_int8, see
 * dq_int8_packed_preferred). */
void dq_gemm_int8_packed(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *packed,
                         const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end);
void dq_gemm_int8_packed_scalar(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                                const uint8_t *packed, const float *ws, const float *bias, float *y, size_t ldy,
                                size_t n_begin, size_t n_end);

/* Runs one specific packed kernel: isa = "scalar", "avxvnni" or "avx512vnni" (same arguments as
 * dq_gemm_int8_packed).
 * Returns 1, or 0 without touching y if that kernel is not built for this target or not supported by
 * this CPU. For tests and benchmarks. */
int dq_gemm_int8_packed_isa(const char *isa, size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                            const uint8_t *packed, const float *ws, const float *bias, float *y, size_t ldy,
                            size_t n_begin, size_t n_end);

/* Which kernel dq_gemm_int8_packed uses on this CPU: "avx512vnni", "avxvnni" or "scalar". */
const char *dq_int8_packed_isa(void);

/* 1 if int8 weights should be packed at load time and multiplied with dq_gemm_int8_packed: the CPU has
 * one of its VNNI kernels (AVX-512 VNNI or AVX-VNNI; probed once). 0 otherwise: CPUs with AVX2 only (the
 * biased codes would saturate vpmaddubsw's int16 pairs) and other architectures keep the row-major codes
 * in place and dq_gemm_int8 (nothing is copied). cpu_configure(cap, 0) (CCPUFeatures)
 * makes it 0 everywhere, for side-by-side measurements. */
int dq_int8_packed_preferred(void);

/* ---------------------------------------------------------------- q4 / q8 blocks (scheme 2) */

/* Kp = ceil(k / 32) · 32. Packed q4 weights take n · Kp / 2 bytes, their scales n · Kp / 32 floats;
 * q8-block activations take m · Kp bytes and m · Kp / 32 floats. */
size_t dq_q4_padded_k(size_t k);

/* W [n, k] -> packed uint8 [n, Kp/2], scales f32 [n, Kp/32] (zeros pad each row to Kp). Inputs must
 * be finite for the GGUF semantics; non-finite inputs give defined (memory-safe) but meaningless
 * codes: where x·id + 8.5f is NaN the code is 8 (value 0 · d), +inf gives 15, -inf gives 0. */
void dq_quantize_weights_q4(const float *w, size_t n, size_t k, uint8_t *packed, float *scales);

/* w[o, j] = (float)(q - 8) · d for j < k (the padding columns are not written). w [n, k]. */
void dq_dequantize_weights_q4(const uint8_t *packed, const float *scales, size_t n, size_t k, float *w);

/* X [m, k] (row stride ldx) -> q int8 [m, Kp] (zeros past k), scales f32 [m, Kp/32].
 * Dispatching and scalar versions give identical bytes. */
void dq_quantize_activations_q8_blocks(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                       float *scales);
void dq_quantize_activations_q8_blocks_scalar(const float *x, size_t m, size_t k, size_t ldx, int8_t *q,
                                              float *scales);

/* Y[r, o] for r < m, n_begin <= o < n_end, as documented in scheme 2. k is the logical K (the
 * buffers use Kp = dq_q4_padded_k(k)): xq [m, Kp], xs [m, Kp/32], wq [n, Kp/2], ws [n, Kp/32],
 * bias [n] or NULL, y with row stride ldy.
 * AVX2 path: per tile of 6 rows, the activations are re-laid out once into a scratch buffer that
 * puts 4 bytes of each of 8 consecutive blocks in one 32-byte vector; each output channel's 8
 * packed blocks are transposed the same way in registers and unpacked (and 0x0F / shift 4), so each
 * 32-bit lane of vpmaddubsw+vpmaddwd holds one block's exact dot product. */
void dq_gemm_q4(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *wq,
                const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end);
void dq_gemm_q4_scalar(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *wq,
                       const float *ws, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end);

/* ---------------------------------------------------------------- q4 on packed weights (scheme 2) */

/*
 * PACKED Q4 LAYOUT (dq_pack_weights_q4), made from the stored codes wq [N, Kp/2] and scales ws [N, nb]. W is cut
 * into panels of DQ_Q4_PANEL = 16 consecutive output channels (the last panel padded with zero channels).
 * For panel p and block b (32 k) the 16 × 32 codes take 256 bytes: 4 records h = 0..3 of 64 bytes, and in
 * record h, byte 4c + j (channel c, j = 0..3) holds
 *     code(16p + c, 32b + 8h + j) | code(16p + c, 32b + 8h + 4 + j) << 4
 * so that the low nibbles of a record are the unsigned bytes vpdpbusd needs for k = 32b + 8h .. +3 and the
 * high nibbles those for k = 32b + 8h + 4 .. +7, 16 channels × 4 k each. Panel p, block b starts at byte
 * (p · nb + b) · 256; dq_q4_packed_size(n, k) = ceil(N / 16) · nb · 256 bytes. The scales go to their own
 * array, 16 floats per (panel, block): pscales[(p · nb + b) · 16 + c] = ws[16p + c, b] (0 for padding
 * channels); dq_q4_packed_scales_size(n, k) floats.
 * The product is scheme 2's, BIT-IDENTICAL to dq_gemm_q4_scalar: per block the exact integer dot product
 * Σ code·qx − 8 · Σ qx, t_b = (d_w · d_x) · (float)isum_b, the 8 partial sums P[b mod 8] and their tree.
 * Column ranges as for the packed int8 product (any range is correct; threads should hand out whole panels,
 * e.g. with dq_int8_packed_column_range, whose strips are whole 16-column panels too).
 * AVX-512 VNNI kernel: register tiles of 4 rows × 2 panels; per record, 2 loads unpacked to 4 nibble
 * vectors (and / shift) and 16 vpdpbusd; per block the integer sums become t_b in 16 lanes (one channel per
 * lane), added to the partial sum of the block's residue class mod 8, which the tile walks one class at a
 * time (blocks l, l + 8, l + 16, ...) so that the partial sums stay in registers.
 */
#define DQ_Q4_PANEL 16

size_t dq_q4_packed_size(size_t n, size_t k);
size_t dq_q4_packed_scales_size(size_t n, size_t k);

/* wq [n, Kp/2], ws [n, nb] (dq_quantize_weights_q4's output) -> packed [dq_q4_packed_size(n, k)] and
 * pscales [dq_q4_packed_scales_size(n, k)] as documented above (every byte and float written). */
void dq_pack_weights_q4(const uint8_t *wq, const float *ws, size_t n, size_t k, uint8_t *packed, float *pscales);

/* 1 when this CPU runs the packed q4 kernel (AVX-512 F, BW, VL and VNNI, ZMM state saved by the OS) and
 * cpu_configure has not turned packed kernels off; callers then pack q4 weights and use dq_gemm_q4_packed, else dq_gemm_q4. */
int dq_q4_packed_preferred(void);

/* Y[r, o] for r < m, n_begin <= o < n_end: scheme 2 (bit for bit dq_gemm_q4_scalar) with packed weights.
 * xq [m, Kp], xs [m, nb] (dq_quantize_activations_q8_blocks), bias [n] or NULL, y with row stride ldy.
 * Allocates nothing. Dispatching: the AVX-512 VNNI kernel, else the scalar reference. */
void dq_gemm_q4_packed(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *packed,
                       const float *pscales, const float *bias, float *y, size_t ldy, size_t n_begin, size_t n_end);
void dq_gemm_q4_packed_scalar(size_t m, size_t n, size_t k, const int8_t *xq, const float *xs, const uint8_t *packed,
                              const float *pscales, const float *bias, float *y, size_t ldy, size_t n_begin,
                              size_t n_end);
/* One specific kernel ("scalar" or "avx512vnni"); 0 without touching y if this CPU cannot run it. */
int dq_gemm_q4_packed_isa(const char *isa, size_t m, size_t n, size_t k, const int8_t *xq, const float *xs,
                          const uint8_t *packed, const float *pscales, const float *bias, float *y, size_t ldy,
                          size_t n_begin, size_t n_end);

#ifdef __cplusplus
}
#endif
#endif
