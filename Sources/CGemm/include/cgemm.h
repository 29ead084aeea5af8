#ifndef DEBERTA_CGEMM_H
#define DEBERTA_CGEMM_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * f32 products of linear layers with pre-packed weights: Y[M, N] = X[M, K] · Wᵀ (+ epilogue), where
 * W [N, K] is a linear layer's weight in PyTorch layout (row o = output feature o) and X, Y, the
 * residual are row-major with leading dimensions (ld*, in elements, >= the row length).
 *
 * ======================================================================================
 * PACKED LAYOUT (cg_pack_weights). W is cut into panels of CG_PANEL = 24 consecutive output
 * features; the last panel is padded with zero features. Panel p holds, for k = 0..K-1, the 24
 * weights W[24p + j, k] (j = 0..23) contiguously (K-major, "k row" of 96 bytes):
 *     packed[p · S + k · 24 + j] = W[24p + j, k]   (0 for 24p + j >= N)
 * with the panel stride S = cg_panel_stride(k) = 24·K rounded up to a multiple of 16 floats, so
 * that every panel starts 64-byte aligned when `packed` does (the floats between 24·K and S are
 * zero). cg_packed_size(n, k) = ceil(N / 24) · S floats. `packed` should be 64-byte aligned
 * (speed only: every access is an unaligned-tolerant load; 32-byte alignment is what matters).
 *
 * ======================================================================================
 * WHAT IS COMPUTED, element by element (r < M, n_begin <= o < n_end):
 *     a_0   = init(r, o)                                   (see the epilogues)
 *     a_k   = fma(X[r, k-1], W[o, k-1], a_{k-1})            k = 1..K, in increasing k, each a
 *                                                          single-rounding f32 fused multiply-add
 *     Y[r, o] = a_K, or gelu(a_K) for CG_EPILOGUE_BIAS_GELU
 * Epilogues (the `epilogue` argument):
 *     CG_EPILOGUE_NONE          0: init = +0
 *     CG_EPILOGUE_BIAS          1: init = bias[o]
 *     CG_EPILOGUE_BIAS_GELU     2: init = bias[o], then Y = gelu(a_K) (exact erf GELU, below)
 *     CG_EPILOGUE_BIAS_RESIDUAL 3: init = bias[o] + residual[r·ldr + o]  (one f32 addition)
 * bias may be NULL for every code (then it counts as 0: init = +0, or = residual[r, o]). Any other
 * epilogue value is treated as CG_EPILOGUE_NONE.
 * Putting bias / residual into the initial accumulator (instead of adding them after the sum)
 * costs nothing in the inner loop, and it lets `residual` alias `y`: see ALIASING.
 *
 * The AVX-512 and AVX2 kernels and the scalar reference evaluate exactly this sequence, so on x86-64
 * cg_gemm_packed and cg_gemm_packed_scalar return BIT-IDENTICAL results (the GELU included: its
 * scalar form performs the same f32 operations in the same order), whatever the shapes, the
 * column range or the thread split. This holds wherever fmaf is a correctly rounded fused
 * multiply-add (C99 requires it; without FMA hardware it is a slow library call, which only
 * matters for the scalar fallback). Default floating-point environment assumed (round to nearest,
 * no flush-to-zero / denormals-are-zero).
 *
 * ACCURACY against the exact product of the f32 inputs (float64 or better reference), per element,
 * for the linear epilogues (the standard bound γ_{K+1} for a recursive sum of K+2 terms whose
 * products are exact inside each fma; <= K+1 roundings):
 *     |Y - Y_exact| <= 1.01 · (K + 1) · 2^-24 · (Σ_k |X[r,k]| · |W[o,k]| + |bias[o]| + |residual[r,o]|)
 * for K < 160000 (the 1.01 covers γ_n = n·u / (1 - n·u)). Typical errors are ~sqrt(K) times smaller:
 * the tests see up to 7% of the bound for K >= 64 (random data), up to ~66% for K <= 3. With GELU, add the GELU error below, and the
 * propagated sum error times |gelu'| <= 1.13.
 *
 * GELU: gelu(x) = x · Φ(x), Φ(x) = (1 + erf(x/√2)) / 2 = erfc(-x/√2) / 2. With a = |x| < 14.5:
 *     Φ(-a) = exp(-a²/2) · Q(a),   Q(a) = exp(a²/2) · erfc(a/√2) / 2   (a smooth, positive function)
 *   - Q on [0, 2): a degree-10 polynomial in (a - 1); on [2, 14.5): (1/a) · (a degree-10 polynomial in
 *     (1/a - 5/16)), with 1/a corrected by its fma residual (relative fitting error <= 5.3e-8 including
 *     the rounding of the f32 coefficients); both evaluated branch-free in 8 lanes, coefficients chosen
 *     per lane with blendv.
 *   - exp(-a²/2) = 2^n (1 + y): a² split exactly into h + l (h = a·a, l = fma(a, a, -h)), Cody-Waite
 *     reduction by ln 2, a degree-7 polynomial on |r| <= 0.35, 1 + y never rounded on its own, the 2^n
 *     applied as 2^(n+64) · 2^-64 so that subnormal results round once.
 *   - x < 0: gelu = (x · 2^64 Φ(-a)) · 2^-64;  x >= 0: gelu = x - x · Φ(-a) (one fma);
 *     |x| >= 14.5 (or NaN): gelu = x · (x < 0 ? 0 : 1).
 *   Error against double-precision erfc, checked over EVERY f32 x with |x| <= 16 (larger |x| take the
 *   last branch, exact): relative error of gelu(x) <= CG_GELU_MAX_REL_ERROR wherever |gelu(x)| >= 2^-126
 *   (x > -13.1), absolute error <= 2^-148 below (subnormal or ±0 results); relative error of Φ(x), i.e.
 *   of 1 + erf(x/√2), the quantity through which erf enters GELU, <= CG_PHI_MAX_REL_ERROR wherever
 *   Φ(x) >= 2^-126. (1 ulp of f32 is between 6.0e-8 and 1.19e-7 relative; the rms error of gelu over
 *   all those floats is 1.8e-8.) Relative accuracy of erf itself near 0 is not claimed: erf is never
 *   formed, Φ is computed directly, without cancellation for negative x.
 *   Special values: gelu(NaN) = NaN, gelu(+inf) = +inf, gelu(-inf) = NaN (-inf · 0, like PyTorch's
 *   formula), gelu(±0) = ±0, gelu(x) = -0 for x <= -14.5 (|true value| < 2^-150).
 *
 * ======================================================================================
 * COLUMN RANGES and threads: cg_gemm_packed writes only Y[r, o] for o in [n_begin, n_end) (and
 * all r < M); nothing else is read or written in Y. Requirements: n_begin is a multiple of
 * CG_PANEL (24) and n_begin <= n_end <= N; n_end is a multiple of 24 or equal to N. (Calls that
 * break them return without writing anything.) So the caller splits the panels: for T threads use
 * cg_column_range(n, T, t, &begin, &end), which hands out whole panels as evenly as possible.
 * The functions keep no state besides a once-computed CPU probe, allocate nothing, and are
 * thread-safe; disjoint column ranges of one product may run concurrently (they share X, W, bias
 * and the residual's other columns read-only).
 *
 * ALIASING: x and packed must not overlap y. residual may be exactly y (residual == y and
 * ldr == ldy: Y = X·Wᵀ + b + Y, in place); any other overlap of residual with y is not allowed.
 * (Every partial sum is stored in y between K blocks; residual is read only in the first block,
 * element by element right before that element is first written.)
 *
 * Sizes of 0 are allowed: M = 0 or an empty column range does nothing; K = 0 gives Y = epilogue
 * of init (e.g. gelu(bias)).
 */

#define CG_PANEL 24

#define CG_EPILOGUE_NONE 0
#define CG_EPILOGUE_BIAS 1
#define CG_EPILOGUE_BIAS_GELU 2
#define CG_EPILOGUE_BIAS_RESIDUAL 3

/* Measured bounds of the GELU over every f32 x with |x| <= 16 (maxima found: 2.226e-7 for gelu at
 * x = -2.48012638, 1.783e-7 for Φ at x = -2.76056981; AVX2 == scalar for all 2.16e9 inputs). Tests/GemmTests
 * checks them on a dense sample of all floats. */
#define CG_PHI_MAX_REL_ERROR 1.8e-7
#define CG_GELU_MAX_REL_ERROR 2.3e-7

/* Which kernels the dispatching functions use on this CPU: "avx512" (AVX-512 F, 8 x 48 register tile),
 * "avx2" (AVX2 + FMA, 4 x 24 tile) or "scalar". cpu_configure (CCPUFeatures) with cap 1 or 0
 * caps the choice. All three compute the same bits. */
const char *cg_kernel_isa(void);

/* Floats per packed panel for this K: 24·K rounded up to a multiple of 16. */
size_t cg_panel_stride(size_t k);

/* Floats (not bytes) of the packed form of an [n, k] weight: ceil(n / 24) · cg_panel_stride(k). */
size_t cg_packed_size(size_t n, size_t k);

/* w [n, k] row-major (PyTorch layout) -> packed [cg_packed_size(n, k)] as documented above
 * (padding included, every float of `packed` is written). */
void cg_pack_weights(const float *w, size_t n, size_t k, float *packed);

/* The same packing from any strided operand: W[o, j] = b[o·stride_n + j·stride_k] (o < n, j < k), so that
 * small per-call products can use cg_gemm_packed after packing into a scratch buffer of
 * cg_packed_size(n, k) floats (packing reads n·k floats; the product does m·n·k multiply-adds):
 *   attention scores S = Q·Kᵀ (Q [T, d], K [T, d] with row stride ld): cg_pack_strided(K, T, d, ld, 1, buf),
 *     then cg_gemm_packed(T, T, d, Q, ld, buf, ...);
 *   context C = P·V (P [T, T], V [T, d] with row stride ld, W = Vᵀ): cg_pack_strided(V, d, T, 1, ld, buf),
 *     then cg_gemm_packed(T, d, T, P, ldp, buf, ...).
 * stride_k == 1 is the fast path (rows read sequentially); cg_pack_weights(w, n, k, p) is
 * cg_pack_strided(w, n, k, k, 1, p). */
void cg_pack_strided(const float *b, size_t n, size_t k, size_t stride_n, size_t stride_k, float *packed);

/* The inverse, for tests and tools: w[o, j] = W[o, j] from packed. */
void cg_unpack_weights(const float *packed, size_t n, size_t k, float *w);

/* Columns of part `part` (0-based) of `parts`: whole 24-column panels, balanced (part sizes differ by
 * at most one panel), in order, covering [0, n). Empty ranges (begin == end) when parts > panels. */
void cg_column_range(size_t n, size_t parts, size_t part, size_t *begin, size_t *end);

/* Y[r, o] for r < m, n_begin <= o < n_end, as documented above. x [m, k] (ldx >= k), packed from
 * cg_pack_weights(W, n, k, ...), bias [n] or NULL, residual (epilogue 3 only; else ignored, may be
 * NULL) [m, n] with ldr >= n, y with ldy >= n (element (r, o) at y[r·ldy + o]).
 * Dispatching: the AVX-512 F kernel, else the AVX2+FMA kernel when the CPU has it (probed once, capped by
 * the cpu_configure cap), else the scalar reference (also
 * used for K = 0). The scalar reference is slow (one fmaf per multiply-add; a library call on x86-64
 * builds without -mfma): it is the portable fallback and the tests' oracle. */
void cg_gemm_packed(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *packed,
                    const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                    size_t n_begin, size_t n_end);
void cg_gemm_packed_scalar(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *packed,
                           const float *bias, int epilogue, const float *residual, size_t ldr, float *y,
                           size_t ldy, size_t n_begin, size_t n_end);

/* The same product from W [n, k] AS STORED (row o at w + o·ldw, ldw >= k), for weights that are not packed
 * (used once, or too large to keep a packed copy of): the columns [n_begin, n_end) are packed into `scratch`
 * (scratch_size floats, 64-byte aligned, one per concurrent call) as many whole panels at a time as it
 * holds, and cg_gemm_packed multiplies every row of X by each such chunk. cg_unpacked_scratch_size(c, k)
 * floats hold c columns: give it the whole column range (the usual cache blocking over the rows of X then
 * applies; a chunk smaller than the range makes every row of X pass again for each chunk). Nothing is
 * written when the scratch holds less than one panel. Column ranges, epilogues and aliasing as for
 * cg_gemm_packed, and the SAME BITS as cg_gemm_packed on cg_pack_weights(W) (each output depends only on
 * its row of X, its row of W, bias and residual, summed in the same order). Packing reads n·k floats per
 * call: next to the m·n·k multiply-adds, a few percent for m in the hundreds, most of the time for m of a
 * few rows. */
size_t cg_unpacked_scratch_size(size_t columns, size_t k);
void cg_gemm_unpacked(size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *w, size_t ldw,
                      const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                      size_t n_begin, size_t n_end, float *scratch, size_t scratch_size);

/* Test hook: the same product with one named kernel ("scalar", "avx2" or "avx512"), whatever the
 * dispatch would choose. Returns 0 (and writes nothing) when this CPU cannot run that kernel. */
int cg_gemm_packed_isa(const char *isa, size_t m, size_t n, size_t k, const float *x, size_t ldx,
                       const float *packed, const float *bias, int epilogue, const float *residual, size_t ldr,
                       float *y, size_t ldy, size_t n_begin, size_t n_end);

/* y[i] = gelu(x[i]) as in the GELU epilogue (same function, bit for bit). x == y is allowed. */
void cg_gelu(const float *x, float *y, size_t count);
void cg_gelu_scalar(const float *x, float *y, size_t count);

/* Φ(x) = (1 + erf(x / √2)) / 2 as used inside the GELU (for tests). */
void cg_phi_scalar(const float *x, float *y, size_t count);

/* Benchmark helper: runs `iterations` rounds of 12 independent FMA chains of the widest vectors this CPU
 * has (16 lanes with AVX-512 F, else 8 with AVX2 + FMA) and returns the flop count performed
 * (2 · lanes · 12 · iterations), or 0 without AVX2+FMA. This is the machine's FMA peak whatever
 * the cpu_configure cap says. */
double cg_fma_peak_loop(size_t iterations);

#ifdef __cplusplus
}
#endif
#endif
