/* Disentangled attention for one (sequence, head) with AVX-512 (zmm FMAs, run-time dispatch from
 * attention.c). The work per block of 16 queries:
 *   1. content scores  S[i][j]   = scale · q_i·k_j            (product against kᵀ, packed once per head)
 *   2. c2p, banded     C[i][r]   = scale · q_i·pk_r           only for the relative rows r the block reaches
 *   3. p2c, banded     P[j][r]   = scale · k_j·pq_r           (all keys, once per head, before the blocks)
 *   4. logits          S[i][j]  += C[i][g(i-j)] + P[j][g(i-j)] (g: relative row by distance i - j)
 *   5. masked softmax of each row (vectorized exp, sum in double), probabilities rounded to f32
 *   6. out_i = Σ_j p_ij v_j                                    (in double: exact products, zmm FMAs)
 * Mode 3 (the quantized tiers' head, dk_attention_head_f32_transposed) differs in steps 5 and 6 only: the row
 * sum in the fixed lane order of the bf16 head, and P·V in f32, one fma chain per output (6 × 64 tiles).
 * Step 4 needs no gathers: 16 consecutive distances reach at most 16 consecutive rows (the bucketed
 * distances grow by at most one row per step), so each 16-wide piece is one load of a 16-row window
 * and one in-register permutation (vpermps). Along a c2p row the distances run down as j runs up; the
 * p2c pieces run along i for a fixed key j, so they are built as a 16×16 tile [key][query] and
 * transposed in registers before the add. A window wider than 16 rows (only an unusual index table)
 * falls back to a gather. */
#include "ckernels.h"
#include "attention_internal.h"
#include "cgemm_bf16.h"
#include <math.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#include "cpufeatures.h"

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

int dk_has_avx512(void) { return (cpu_usable() & (CPU_AVX512F | CPU_AVX512_BW_VL_DQ)) == (CPU_AVX512F | CPU_AVX512_BW_VL_DQ); }

/* ---- Register-tiled products ------------------------------------------------------------------
 * C[mr × 16·nv] = alpha · Σ_p A[i][p] · B[p][c] (FMAs in p order, then the scale); the last 16-column
 * vector is masked with `last` (loads and stores), so B and C are never touched past the n columns
 * asked for. A is read by broadcasts (any layout), B by rows. */
INLINE AVX512 void tile(const int mr, const int nv, size_t kk, const float *a, size_t lda, const float *b,
                        size_t ldb, float *c, size_t ldc, float alpha, __mmask16 last) {
    __m512 acc[8][4];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();
    for (size_t p = 0; p < kk; p++) {
        __m512 bv[4];
        const float *bp = b + p * ldb;
        for (int v = 0; v < nv; v++)
            bv[v] = v == nv - 1 ? _mm512_maskz_loadu_ps(last, bp + 16 * v) : _mm512_loadu_ps(bp + 16 * v);
        for (int i = 0; i < mr; i++) {
            __m512 x = _mm512_set1_ps(a[i * lda + p]);
            for (int v = 0; v < nv; v++) acc[i][v] = _mm512_fmadd_ps(x, bv[v], acc[i][v]);
        }
    }
    const __m512 s = _mm512_set1_ps(alpha);
    for (int i = 0; i < mr; i++) {
        for (int v = 0; v < nv; v++) {
            __m512 r = _mm512_mul_ps(acc[i][v], s);
            if (v == nv - 1) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, last, r);
            else _mm512_storeu_ps(c + i * ldc + 16 * v, r);
        }
    }
}

typedef void (*tile_fn)(size_t, const float *, size_t, const float *, size_t, float *, size_t, float, __mmask16);
#define TILE(MR, NV)                                                                                        \
    static AVX512 void tile_##MR##_##NV(size_t kk, const float *a, size_t lda, const float *b, size_t ldb, \
                                        float *c, size_t ldc, float alpha, __mmask16 last) {               \
        tile(MR, NV, kk, a, lda, b, ldb, c, ldc, alpha, last);                                              \
    }
#define TILES3(MR) TILE(MR, 1) TILE(MR, 2) TILE(MR, 3)
TILES3(1) TILES3(2) TILES3(3) TILES3(4) TILES3(5) TILES3(6) TILES3(7) TILES3(8)
#define ROW3(MR) {tile_##MR##_1, tile_##MR##_2, tile_##MR##_3}
static const tile_fn tiles3[8][3] = {ROW3(1), ROW3(2), ROW3(3), ROW3(4), ROW3(5), ROW3(6), ROW3(7), ROW3(8)};
/* 6 rows × 64 columns (24 accumulators, 4 loads and 6 broadcasts per 24 FMAs): mode 3's P·V, whose n is the
 * head size (64 in every DeBERTa), where 48-column tiles would leave a 16-column tile bound by its loads. */
#define TILE4(MR) TILE(MR, 4)
TILE4(1) TILE4(2) TILE4(3) TILE4(4) TILE4(5) TILE4(6)
#define ROW4(MR) {tile_##MR##_1, tile_##MR##_2, tile_##MR##_3, tile_##MR##_4}
static const tile_fn tiles4[6][4] = {ROW4(1), ROW4(2), ROW4(3), ROW4(4), ROW4(5), ROW4(6)};

static inline __mmask16 tail_mask(size_t w) { return (__mmask16)(w >= 16 ? 0xFFFF : ((1u << w) - 1)); }

/* Scores and banded position products: 8-row × 48-column tiles (24 accumulators). */
static AVX512 void gemm_tall(size_t m, size_t n, size_t kk, const float *a, size_t lda, const float *b, size_t ldb,
                             float *c, size_t ldc, float alpha) {
    for (size_t j = 0; j < n; j += 48) {
        size_t w = n - j < 48 ? n - j : 48;
        int nv = (int)((w + 15) / 16);
        __mmask16 last = tail_mask(w - 16 * (size_t)(nv - 1));
        for (size_t i = 0; i < m; i += 8) {
            int mr = (int)(m - i < 8 ? m - i : 8);
            tiles3[mr - 1][nv - 1](kk, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, alpha, last);
        }
    }
}

/* C = A · B (alpha 1) in 6 × 64 tiles: the same fma chains as gemm_tall, so the same bits. */
static AVX512 void gemm_wide(size_t m, size_t n, size_t kk, const float *a, size_t lda, const float *b, size_t ldb,
                             float *c, size_t ldc) {
    for (size_t j = 0; j < n; j += 64) {
        size_t w = n - j < 64 ? n - j : 64;
        int nv = (int)((w + 15) / 16);
        __mmask16 last = tail_mask(w - 16 * (size_t)(nv - 1));
        for (size_t i = 0; i < m; i += 6) {
            int mr = (int)(m - i < 6 ? m - i : 6);
            tiles4[mr - 1][nv - 1](kk, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, 1.0f, last);
        }
    }
}

/* Probabilities × values in double: out[i][c] = Σ_j p[i][j] · v[j][c], p given as doubles (f32 values), v as
 * doubles too (converted once per head). The products are exact and the sums lose nothing f32 would: the
 * context feeds the next f32 or quantized product, where a last-bit difference can flip an int8 rounding
 * against the PyTorch simulation. 6 rows × 32 columns per tile (24 zmm of 8 doubles); columns past w are
 * masked. */
INLINE AVX512 void pv_tile(const int mr, size_t kk, const double *p, size_t ldp, const double *v, size_t ldv,
                           float *out, size_t ldo, size_t w) {
    __m512d acc[6][4];
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < 4; c++) acc[i][c] = _mm512_setzero_pd();
    __mmask8 mk[4];
    for (int c = 0; c < 4; c++) {
        size_t lanes = w > 8 * (size_t)c ? w - 8 * (size_t)c : 0;
        mk[c] = (__mmask8)(lanes >= 8 ? 0xFF : ((1u << lanes) - 1));
    }
    for (size_t j = 0; j < kk; j++) {
        const double *vr = v + j * ldv;
        __m512d b[4] = {_mm512_maskz_loadu_pd(mk[0], vr), _mm512_maskz_loadu_pd(mk[1], vr + 8),
                        _mm512_maskz_loadu_pd(mk[2], vr + 16), _mm512_maskz_loadu_pd(mk[3], vr + 24)};
        for (int i = 0; i < mr; i++) {
            __m512d a = _mm512_set1_pd(p[i * ldp + j]);
            for (int c = 0; c < 4; c++) acc[i][c] = _mm512_fmadd_pd(a, b[c], acc[i][c]);
        }
    }
    for (int i = 0; i < mr; i++)
        for (int c = 0; c < 4; c++) _mm256_mask_storeu_ps(out + i * ldo + 8 * c, mk[c], _mm512_cvtpd_ps(acc[i][c]));
}

typedef void (*pv_fn)(size_t, const double *, size_t, const double *, size_t, float *, size_t, size_t);
#define PV_TILE(MR)                                                                                              \
    static AVX512 void pv_tile_##MR(size_t kk, const double *p, size_t ldp, const double *v, size_t ldv, float *out, \
                                    size_t ldo, size_t w) {                                                      \
        pv_tile(MR, kk, p, ldp, v, ldv, out, ldo, w);                                                           \
    }
PV_TILE(1) PV_TILE(2) PV_TILE(3) PV_TILE(4) PV_TILE(5) PV_TILE(6)
static const pv_fn pv_tiles[6] = {pv_tile_1, pv_tile_2, pv_tile_3, pv_tile_4, pv_tile_5, pv_tile_6};

static AVX512 void probs_times_values(size_t m, size_t n, size_t kk, const double *p, size_t ldp, const double *v,
                                      size_t ldv, float *out, size_t ldo) {
    for (size_t c = 0; c < n; c += 32) {
        size_t w = n - c < 32 ? n - c : 32;
        for (size_t i = 0; i < m; i += 6) {
            size_t mr = m - i < 6 ? m - i : 6;
            pv_tiles[mr - 1](kk, p + i * ldp, ldp, v + c, ldv, out + i * ldo + c, ldo, w);
        }
    }
}

/* ---- bf16 products (the bf16 tier's head) -------------------------------------------------------
 * C[mr × 16·nv] = alpha · Σ_p dp(A[i][p], B[p][c]): A and B hold words of two bf16 (element 2p in the low
 * half, 2p + 1 in the high half, as cgb_round_rows writes them), A read by broadcasts, B by rows; dp is
 * vdpbf16ps (odd element first, then the even one, f32 fmas flushing subnormal sums to zero), natively or
 * emulated with two fmas per pair. The accumulators start at +0; the scale is one multiply at the end. */
#define BF16N __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16,avx2,fma")))

INLINE AVX512 __m512 daz16(__m512 v) {
    __m512i u = _mm512_castps_si512(v);
    __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    return _mm512_castsi512_ps(_mm512_mask_and_epi32(u, tiny, u, _mm512_set1_epi32((int)0x80000000u)));
}

INLINE AVX512 __m512 dp_emulated(__m512 acc, __m512i a, __m512i b) {
    const __m512i high = _mm512_set1_epi32((int)0xffff0000u);
    acc = daz16(_mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(a, high)),
                                _mm512_castsi512_ps(_mm512_and_si512(b, high)), acc));
    return daz16(_mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(a, 16)),
                                 _mm512_castsi512_ps(_mm512_slli_epi32(b, 16)), acc));
}
#define DP_EMULATED(acc, a, b) ((acc) = dp_emulated((acc), (a), (b)))
#define DP_NATIVE(acc, a, b) ((acc) = _mm512_dpbf16_ps((acc), (__m512bh)(a), (__m512bh)(b)))

#define BF_TILE_BODY(DP)                                                                                     \
    __m512 acc[8][4];                                                                                        \
    for (int i = 0; i < mr; i++)                                                                             \
        for (int v = 0; v < nv; v++) acc[i][v] = _mm512_setzero_ps();                                        \
    for (size_t p = 0; p < pairs; p++) {                                                                     \
        __m512i bv[4];                                                                                       \
        const uint32_t *bp = b + p * ldb;                                                                    \
        for (int v = 0; v < nv; v++)                                                                         \
            bv[v] = v == nv - 1 ? _mm512_maskz_loadu_epi32(last, bp + 16 * v) : _mm512_loadu_si512(bp + 16 * v); \
        for (int i = 0; i < mr; i++) {                                                                       \
            __m512i x = _mm512_set1_epi32((int)a[i * lda + p]);                                              \
            for (int v = 0; v < nv; v++) DP(acc[i][v], x, bv[v]);                                            \
        }                                                                                                    \
    }                                                                                                        \
    const __m512 s = _mm512_set1_ps(alpha);                                                                  \
    for (int i = 0; i < mr; i++)                                                                             \
        for (int v = 0; v < nv; v++) {                                                                       \
            __m512 r = _mm512_mul_ps(acc[i][v], s);                                                          \
            if (v == nv - 1) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, last, r);                           \
            else _mm512_storeu_ps(c + i * ldc + 16 * v, r);                                                  \
        }

#define BF_TILE_ARGS size_t pairs, const uint32_t *a, size_t lda, const uint32_t *b, size_t ldb, float *c, size_t ldc, \
                     float alpha, __mmask16 last
INLINE BF16N void bf_tile_native(const int mr, const int nv, BF_TILE_ARGS) { BF_TILE_BODY(DP_NATIVE) }
INLINE AVX512 void bf_tile_emulated(const int mr, const int nv, BF_TILE_ARGS) { BF_TILE_BODY(DP_EMULATED) }

typedef void (*bf_tile_fn)(BF_TILE_ARGS);
#define BF_TILE(MR, NV)                                                                                              \
    static BF16N void bfn_##MR##_##NV(BF_TILE_ARGS) { bf_tile_native(MR, NV, pairs, a, lda, b, ldb, c, ldc, alpha, last); } \
    static AVX512 void bfe_##MR##_##NV(BF_TILE_ARGS) { bf_tile_emulated(MR, NV, pairs, a, lda, b, ldb, c, ldc, alpha, last); }
#define BF_TILES(MR) BF_TILE(MR, 1) BF_TILE(MR, 2) BF_TILE(MR, 3) BF_TILE(MR, 4)
BF_TILES(1) BF_TILES(2) BF_TILES(3) BF_TILES(4) BF_TILES(5) BF_TILES(6) BF_TILES(7) BF_TILES(8)
#define BF_ROW(P, MR) {P##_##MR##_1, P##_##MR##_2, P##_##MR##_3, P##_##MR##_4}
#define BF_TABLE(P) {BF_ROW(P, 1), BF_ROW(P, 2), BF_ROW(P, 3), BF_ROW(P, 4), BF_ROW(P, 5), BF_ROW(P, 6), BF_ROW(P, 7), BF_ROW(P, 8)}
static const bf_tile_fn bf_tiles[2][8][4] = {BF_TABLE(bfe), BF_TABLE(bfn)};

/* C[m × n] over `pairs` words per row: 8-row × 48-column tiles, or 6 × 64 where 49-64 columns are left
 * (the P·V product of a 64-wide head in one tile column). */
static AVX512 void gemm_bf16(int native, size_t m, size_t n, size_t pairs, const uint32_t *a, size_t lda,
                             const uint32_t *b, size_t ldb, float *c, size_t ldc, float alpha) {
    for (size_t j = 0; j < n;) {
        size_t w = n - j <= 64 && n - j > 48 ? n - j : (n - j < 48 ? n - j : 48);
        int nv = (int)((w + 15) / 16);
        size_t rows = nv == 4 ? 6 : 8;
        __mmask16 last = tail_mask(w - 16 * (size_t)(nv - 1));
        for (size_t i = 0; i < m; i += rows) {
            int mr = (int)(m - i < rows ? m - i : rows);
            bf_tiles[native ? 1 : 0][mr - 1][nv - 1](pairs, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc, alpha,
                                                      last);
        }
        j += w;
    }
}

/* ---- exp, 16 lanes -----------------------------------------------------------------------------
 * exp(x) = 2^n · e^r, n = round(x / ln 2), r = x - n ln 2 (two-part ln 2), e^r by a degree-7 polynomial
 * (1 + r + r² P(r), Cephes' expf coefficients); 2^n applied with vscalefps, which gives 0 for the
 * clamped -inf of masked keys. Within 2 ulp of expf on [-104, 0] (checked by the tests). */
INLINE AVX512 __m512 exp16(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-200.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 r2 = _mm512_mul_ps(r, r);
    p = _mm512_fmadd_ps(p, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

AVX512 void dk_exp_avx512_rows(const float *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* ---- 16×16 transpose in registers: r[i] (row i) becomes column i ---------------------------------- */
INLINE AVX512 void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    /* u[4a + c], 128-bit lane L: rows 4a..4a+3 of column 4L + c */
    for (int a = 0; a < 4; a++) {
        __m512d t0 = _mm512_castps_pd(t[4 * a]), t1 = _mm512_castps_pd(t[4 * a + 1]);
        __m512d t2 = _mm512_castps_pd(t[4 * a + 2]), t3 = _mm512_castps_pd(t[4 * a + 3]);
        u[4 * a + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2));
        u[4 * a + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2));
        u[4 * a + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3));
        u[4 * a + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3));
    }
    for (int c = 0; c < 4; c++) {
        __m512 a0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), b0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
        __m512 a1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), b1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
        r[c] = _mm512_shuffle_f32x4(a0, a1, 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(a0, a1, 0xDD);
        r[c + 4] = _mm512_shuffle_f32x4(b0, b1, 0x88);
        r[c + 12] = _mm512_shuffle_f32x4(b0, b1, 0xDD);
    }
}

/* dst[c][r] = src[r][c] for r < rows, c < cols; lanes r in [rows, store_rows) of dst get zeros. */
static AVX512 void transpose(const float *src, size_t rows, size_t cols, size_t lds, float *dst, size_t ldd,
                             size_t store_rows) {
    size_t r0 = 0;
    /* whole 16×16 blocks: no masks; the next block's rows are prefetched (the relative tables are read
     * with a stride of all heads and rarely sit in cache) */
    for (; r0 + 16 <= rows; r0 += 16) {
        size_t c0 = 0;
        for (; c0 + 16 <= cols; c0 += 16) {
            __m512 x[16];
            for (size_t i = 0; i < 16; i++) {
                x[i] = _mm512_loadu_ps(src + (r0 + i) * lds + c0);
                if (r0 + 16 + i < rows) _mm_prefetch((const char *)(src + (r0 + 16 + i) * lds + c0), _MM_HINT_T0);
            }
            transpose16(x);
            for (size_t i = 0; i < 16; i++) _mm512_storeu_ps(dst + (c0 + i) * ldd + r0, x[i]);
        }
        if (c0 < cols) {
            __mmask16 cm = tail_mask(cols - c0);
            __m512 x[16];
            for (size_t i = 0; i < 16; i++) x[i] = _mm512_maskz_loadu_ps(cm, src + (r0 + i) * lds + c0);
            transpose16(x);
            for (size_t i = 0; i < cols - c0; i++) _mm512_storeu_ps(dst + (c0 + i) * ldd + r0, x[i]);
        }
    }
    for (; r0 < store_rows; r0 += 16) {
        __mmask16 lanes = tail_mask(store_rows - r0);
        for (size_t c0 = 0; c0 < cols; c0 += 16) {
            __mmask16 cm = tail_mask(cols - c0);
            __m512 x[16];
            for (size_t i = 0; i < 16; i++)
                x[i] = r0 + i < rows ? _mm512_maskz_loadu_ps(cm, src + (r0 + i) * lds + c0) : _mm512_setzero_ps();
            transpose16(x);
            size_t nc = cols - c0 < 16 ? cols - c0 : 16;
            for (size_t i = 0; i < nc; i++) _mm512_mask_storeu_ps(dst + (c0 + i) * ldd + r0, lanes, x[i]);
        }
    }
}

/* ---- Scratch layout ------------------------------------------------------------------------------ */
typedef struct {
    size_t tp;    /* keys padded to 16 */
    size_t ldkt;  /* kᵀ [d × ldkt] */
    size_t ldpt;  /* pkᵀ, pqᵀ [d × ldpt] */
    size_t ldz;   /* banded p2c rows [tp × ldz] and the block's c2p rows [16 × ldz] */
    size_t lds;   /* the block's scores [16 × lds] */
    size_t ldpd;  /* the block's probabilities as doubles [16 × ldpd] */
    size_t xo;    /* offset of distance 0 in the per-distance arrays */
    size_t nx;    /* entries of each per-distance array */
} layout;

static size_t up16(size_t x) { return (x + 15) & ~(size_t)15; }

static layout plan(size_t t, size_t span) {
    layout L;
    L.tp = up16(t);
    L.ldkt = L.tp + 16;
    L.ldpt = up16(span) + 16;
    L.ldz = up16(span) + 32;
    L.lds = L.tp + 16;
    L.ldpd = L.tp + 8;
    L.xo = L.tp + 32;
    L.nx = 2 * L.tp + 80;
    return L;
}

/* Floats before V as doubles (the f32 head's P·V operand, [t × ldvd] from a 64-byte boundary). */
static size_t values_offset(size_t t, size_t d, size_t span) {
    layout L = plan(t, span);
    return up16(2 * 16 * L.ldpd                  /* probabilities (doubles) */
                + d * L.ldkt + 2 * d * L.ldpt     /* kᵀ, pkᵀ, pqᵀ */
                + L.tp * L.ldz + 16 * L.ldz       /* p2c rows, the block's c2p rows */
                + 16 * L.lds + L.tp               /* the block's scores, key mask */
                + 4 * L.nx + L.tp / 16 + 64);     /* per-distance tables, p2c band starts, slack */
}

static size_t values_ld(size_t d) { return (d + 31) & ~(size_t)31; }

size_t dk_attention_scratch_avx512(size_t t, size_t d, size_t span) {
    return values_offset(t, d, span) + 2 * t * values_ld(d);
}

static inline ptrdiff_t clampd(ptrdiff_t x, ptrdiff_t lo, ptrdiff_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* Lowest and highest relative row over distances [xa, xb] (gx indexed by distance). */
static void row_band(const int32_t *gx, ptrdiff_t xa, ptrdiff_t xb, int monotone, int32_t *lo, int32_t *hi) {
    if (monotone) { *lo = gx[xa]; *hi = gx[xb]; return; }
    int32_t a = gx[xa], b = gx[xa];
    for (ptrdiff_t x = xa + 1; x <= xb; x++) { if (gx[x] < a) a = gx[x]; if (gx[x] > b) b = gx[x]; }
    *lo = a; *hi = b;
}

/* One block of up to 16 queries: S[i][j] += c2p + p2c terms + the key mask (0 or -inf), and each row's
 * running maximum (16 lanes). Specialized on the terms present and on whether every 16-distance piece
 * fits a 16-row window (`wide`: some do not, check each). */
typedef struct {
    const int32_t *gx, *grev, *wmin, *wok, *plo;
    const float *p2c, *cb, *madd;
    float *sb;
    size_t ldz, lds, tp;
} block;

/* 16 values of a relative-row table `row` at rows base + idx (idx in [0, 16) when ok): a 16-row window
 * and a permutation, or a gather when the rows do not fit one window (only checked when `wide`). */
INLINE AVX512 __m512 pick(const int wide, const float *row, int32_t base, __m512i idx, int32_t ok) {
    if (!wide || ok) return _mm512_permutexvar_ps(idx, _mm512_loadu_ps(row + base));
    return _mm512_i32gather_ps(_mm512_add_epi32(idx, _mm512_set1_epi32(base)), row, 4);
}

INLINE AVX512 void block_logits(const int c2p, const int p2c, const int wide, const block *c, size_t i0, size_t mb,
                                int32_t clo, __m512 *vmax) {
    for (size_t ii = 0; ii < 16; ii++) vmax[ii] = _mm512_set1_ps(-INFINITY);
    for (size_t j0 = 0; j0 < c->tp; j0 += 16) {
        __m512 z[16];
        if (p2c) {
            const float *rows = c->p2c + j0 * c->ldz - c->plo[j0 / 16];
            for (size_t jj = 0; jj < 16; jj++) {
                ptrdiff_t x = (ptrdiff_t)i0 - (ptrdiff_t)(j0 + jj);
                __m512i idx = _mm512_sub_epi32(_mm512_loadu_si512(c->gx + x), _mm512_set1_epi32(c->wmin[x]));
                z[jj] = pick(wide, rows + jj * c->ldz, c->wmin[x], idx, c->wok[x]);
                /* the next block's window of this key */
                _mm_prefetch((const char *)(rows + jj * c->ldz + c->wmin[x + 16]), _MM_HINT_T0);
            }
            transpose16(z);
        }
        const __m512 ma = _mm512_loadu_ps(c->madd + j0);
        for (size_t ii = 0; ii < mb; ii++) {
            float *srow = c->sb + ii * c->lds + j0;
            /* (content + c2p) + p2c, in the order transformers adds them */
            __m512 s = _mm512_loadu_ps(srow);
            if (c2p) {
                ptrdiff_t x = (ptrdiff_t)(i0 + ii) - (ptrdiff_t)j0 - 15;
                __m512i idx = _mm512_sub_epi32(_mm512_loadu_si512(c->grev + (ptrdiff_t)j0 - (ptrdiff_t)(i0 + ii)),
                                               _mm512_set1_epi32(c->wmin[x]));
                s = _mm512_add_ps(s, pick(wide, c->cb + ii * c->ldz - clo, c->wmin[x], idx, c->wok[x]));
            }
            if (p2c) s = _mm512_add_ps(s, z[ii]);
            s = _mm512_add_ps(s, ma);
            _mm512_storeu_ps(srow, s);
            vmax[ii] = _mm512_max_ps(vmax[ii], s);
        }
    }
}

typedef void (*logits_fn)(const block *, size_t, size_t, int32_t, __m512 *);
#define LOGITS(C2P, P2C, WIDE)                                                                                   \
    static AVX512 void logits_##C2P##P2C##WIDE(const block *c, size_t i0, size_t mb, int32_t clo, __m512 *vmax) { \
        block_logits(C2P, P2C, WIDE, c, i0, mb, clo, vmax);                                                     \
    }
LOGITS(0, 0, 0) LOGITS(1, 0, 0) LOGITS(0, 1, 0) LOGITS(1, 1, 0)
LOGITS(0, 0, 1) LOGITS(1, 0, 1) LOGITS(0, 1, 1) LOGITS(1, 1, 1)
static const logits_fn logits[8] = {logits_000, logits_100, logits_010, logits_110,
                                    logits_001, logits_101, logits_011, logits_111};

/* The bf16 head's words after the f32 layout: k rounded by rows [tp × dp] (the p2c products' A, and kᵀ
 * once transposed), the block's queries [16 × dp], V as key pairs [tp/2 × ldvw], and two staging areas. */
typedef struct {
    size_t dp, ldvw, stage, vtw;
} bf_layout;

static bf_layout bf_plan(size_t t, size_t d, size_t span) {
    bf_layout B;
    const size_t tp = up16(t);
    B.dp = (d + 1) / 2;
    B.ldvw = up16(d);
    B.stage = d * tp > up16(span) * B.dp ? d * tp : up16(span) * B.dp;
    B.vtw = d * (tp / 2);
    return B;
}

size_t dk_attention_bf16_scratch_avx512(size_t t, size_t d, size_t span) {
    bf_layout B = bf_plan(t, d, span);
    const size_t tp = up16(t);
    return dk_attention_scratch_avx512(t, d, span) + tp * B.dp + 16 * B.dp + (tp / 2) * B.ldvw + B.stage + B.vtw + 16;
}

/* Words of the rows of x [rows × d] (ld) transposed: dst[p][r] = word p of row r, r < store_rows (0 past rows). */
static AVX512 void words_transposed(const float *x, size_t rows, size_t d, size_t ld, uint32_t *stage, uint32_t *dst,
                                    size_t ldd, size_t store_rows) {
    const size_t dp = (d + 1) / 2;
    cgb_round_rows(x, rows, d, ld, stage, dp);
    transpose((const float *)stage, rows, dp, dp, (float *)dst, ldd, store_rows);
}

AVX512 void dk_attention_bf16_position_words_avx512(const float *p, size_t rows, size_t d, size_t ldp, uint32_t *words,
                                                   size_t ldw, uint32_t *stage) {
    words_transposed(p, rows, d, ldp, stage, words, ldw, rows);
}

/* mode 0: the f32 head; 1: bf16 products with vdpbf16ps; 2: the same bf16 products emulated; 3: the f32 head with
 * the bf16 head's row sum and P·V in f32. pkw / pqw (ld ldw), when given, are the position rows already
 * transposed, used instead of pk / pq: in bf16 modes their words (dk_attention_bf16_position_words), in f32 modes
 * the floats [d × ldw] (dk_attention_position_transposed). */
static AVX512 void head(int mode, size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                        const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, const void *pkw,
                        const void *pqw, size_t ldw, size_t span, const int32_t *by_distance,
                        const uint8_t *key_mask, float scale, float *out, size_t ldo, float *scratch) {
    const int has_c2p = pk != NULL || pkw != NULL, has_p2c = pq != NULL || pqw != NULL;
    layout L = plan(t, span);
    const size_t tp = L.tp;
    double *pd = (double *)scratch; /* first: aligned as the caller's buffer */
    float *kt = scratch + 2 * 16 * L.ldpd;
    float *pkt = kt + d * L.ldkt;
    float *pqt = pkt + d * L.ldpt;
    float *p2c = pqt + d * L.ldpt;
    float *cb = p2c + tp * L.ldz;
    float *sb = cb + 16 * L.ldz;
    float *madd = sb + 16 * L.lds;
    int32_t *ints = (int32_t *)(madd + tp);
    int32_t *gx = ints + L.xo;                /* gx[x]: relative row at distance x, clamped to ±(t-1) */
    int32_t *grev = ints + L.nx + L.xo;       /* grev[y] = gx[-y] */
    int32_t *wmin = ints + 2 * L.nx + L.xo;   /* wmin[x]: lowest row over distances x .. x+15 */
    int32_t *wok = ints + 3 * L.nx + L.xo;    /* the 16 rows fit one 16-row window */
    int32_t *plo = ints + 4 * L.nx;           /* first row of each key block's p2c band */

    /* Per-distance tables. */
    const ptrdiff_t T1 = (ptrdiff_t)t - 1, X0 = -(ptrdiff_t)L.xo, X1 = (ptrdiff_t)(L.nx - L.xo);
    int monotone = 1;
    for (ptrdiff_t x = X0; x < X1; x++) {
        gx[x] = by_distance[clampd(x, -T1, T1) + T1];
        grev[x] = by_distance[clampd(-x, -T1, T1) + T1];
        if (x > X0 && gx[x] < gx[x - 1]) monotone = 0;
    }
    int narrow = 1;
    for (ptrdiff_t x = X0; x + 16 <= X1; x++) {
        int32_t a, b;
        row_band(gx, x, x + 15, monotone, &a, &b);
        wmin[x] = a;
        wok[x] = b - a <= 15;
        narrow &= wok[x];
    }
    for (size_t j = 0; j < tp; j++) madd[j] = j < t && key_mask[j] ? 0.0f : -INFINITY;

    /* bf16: words of k (rows, and transposed), pk, pq (transposed) and V (key pairs by column) */
    const int bf = mode == 1 || mode == 2, native = mode == 1, f32pv = mode == 3;
    const size_t ldvd = values_ld(d);
    double *vd = (double *)(scratch + values_offset(t, d, span));
    const bf_layout B = bf_plan(t, d, span);
    uint32_t *kw = (uint32_t *)(scratch + dk_attention_scratch_avx512(t, d, span));
    uint32_t *qw = kw + tp * B.dp, *vw = qw + 16 * B.dp, *stage = vw + (tp / 2) * B.ldvw, *vtw = stage + B.stage;
    uint32_t *ktw = (uint32_t *)kt, *pktw = (uint32_t *)pkt, *pqtw = (uint32_t *)pqt, *pw = (uint32_t *)scratch;
    size_t ldpk = L.ldpt, ldpq = L.ldpt;
    const float *pkf = pkt, *pqf = pqt; /* the f32 head's pkᵀ, pqᵀ */
    if (bf) {
        cgb_round_rows(k, t, d, ldk, kw, B.dp);
        memset(kw + t * B.dp, 0, (tp - t) * B.dp * sizeof(uint32_t));
        transpose((const float *)kw, tp, B.dp, B.dp, (float *)ktw, L.ldkt, tp);
        if (pkw) pktw = (uint32_t *)pkw, ldpk = ldw;
        else if (pk) words_transposed(pk, span, d, ldp, stage, pktw, L.ldpt, span);
        if (pqw) pqtw = (uint32_t *)pqw, ldpq = ldw;
        else if (pq) words_transposed(pq, span, d, ldp, stage, pqtw, L.ldpt, span);
        float *vt = (float *)stage;
        transpose(v, t, d, ldv, vt, tp, tp);
        cgb_round_rows(vt, d, tp, tp, vtw, tp / 2);
        transpose((const float *)vtw, d, tp / 2, tp / 2, (float *)vw, B.ldvw, d);
    } else {
        for (size_t j = 0; j < t && !f32pv; j++)
            for (size_t c = 0; c < d; c += 8) {
                __mmask8 m = (__mmask8)(d - c >= 8 ? 0xFF : ((1u << (d - c)) - 1));
                _mm512_mask_storeu_pd(vd + j * ldvd + c, m, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, v + j * ldv + c)));
            }
        transpose(k, t, d, ldk, kt, L.ldkt, tp);
        if (pkw) pkf = (const float *)pkw, ldpk = ldw;
        else if (pk) transpose(pk, span, d, ldp, pkt, L.ldpt, span);
        if (pqw) pqf = (const float *)pqw, ldpq = ldw;
        else if (pq) transpose(pq, span, d, ldp, pqt, L.ldpt, span);
    }
    if (has_p2c) {
        /* p2c for every key, block by block over the rows its 16 keys reach (queries padded to tp). */
        for (size_t j0 = 0; j0 < tp; j0 += 16) {
            int32_t lo, hi;
            row_band(gx, -(ptrdiff_t)(j0 + 15), (ptrdiff_t)(tp - 1 - j0), monotone, &lo, &hi);
            plo[j0 / 16] = lo;
            size_t mb = t - j0 < 16 ? t - j0 : 16;
            if (j0 < t && bf)
                gemm_bf16(native, mb, (size_t)(hi - lo + 1), B.dp, kw + j0 * B.dp, B.dp, pqtw + lo, ldpq,
                          p2c + j0 * L.ldz, L.ldz, scale);
            else if (j0 < t)
                gemm_tall(mb, (size_t)(hi - lo + 1), d, k + j0 * ldk, ldk, pqf + lo, ldpq, p2c + j0 * L.ldz, L.ldz,
                          scale);
            for (size_t j = j0 + (j0 < t ? mb : 0); j < j0 + 16; j++) memset(p2c + j * L.ldz, 0, L.ldz * sizeof(float));
        }
    }

    for (size_t i0 = 0; i0 < t; i0 += 16) {
        const size_t mb = t - i0 < 16 ? t - i0 : 16;
        if (bf) {
            cgb_round_rows(q + i0 * ldq, mb, d, ldq, qw, B.dp);
            gemm_bf16(native, mb, tp, B.dp, qw, B.dp, ktw, L.ldkt, sb, L.lds, scale);
        } else {
            gemm_tall(mb, tp, d, q + i0 * ldq, ldq, kt, L.ldkt, sb, L.lds, scale);
        }
        int32_t clo = 0, chi = 0;
        if (has_c2p) {
            row_band(gx, (ptrdiff_t)i0 - (ptrdiff_t)(tp - 1), (ptrdiff_t)i0 + 15, monotone, &clo, &chi);
            if (bf)
                gemm_bf16(native, mb, (size_t)(chi - clo + 1), B.dp, qw, B.dp, pktw + clo, ldpk, cb, L.ldz, scale);
            else
                gemm_tall(mb, (size_t)(chi - clo + 1), d, q + i0 * ldq, ldq, pkf + clo, ldpk, cb, L.ldz, scale);
        }
        __m512 vmax[16];
        const block c = {gx, grev, wmin, wok, plo, p2c, cb, madd, sb, L.ldz, L.lds, tp};
        logits[(has_c2p ? 1 : 0) + (has_p2c ? 2 : 0) + (narrow ? 0 : 4)](&c, i0, mb, clo, vmax);
        /* exp(s - max), summed in double; p = e · (1/sum) rounded to f32, kept as doubles for the product */
        for (size_t ii = 0; ii < mb; ii++) {
            float *srow = sb + ii * L.lds;
            double *prow = pd + ii * L.ldpd;
            float m = _mm512_reduce_max_ps(vmax[ii]);
            if (m == -INFINITY) {
                if (bf) memset(pw + ii * L.ldpd, 0, (tp / 2) * sizeof(uint32_t));
                else if (f32pv) memset(srow, 0, tp * sizeof(float));
                else memset(prow, 0, tp * sizeof(double));
                continue;
            }
            const __m512 vm = _mm512_set1_ps(m);
            __m512d sum0 = _mm512_setzero_pd(), sum1 = _mm512_setzero_pd();
            for (size_t j0 = 0; j0 < tp; j0 += 16) {
                __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(srow + j0), vm));
                _mm512_storeu_ps(srow + j0, e);
                sum0 = _mm512_add_pd(sum0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
                sum1 = _mm512_add_pd(sum1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
            }
            if (bf || f32pv) {
                /* the sum in a fixed order (the scalar reference's), p rounded to f32 (then to bf16) */
                double l[8];
                _mm512_storeu_pd(l, _mm512_add_pd(sum0, sum1));
                const __m512 inv = _mm512_set1_ps((float)(1.0 / (((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])))));
                for (size_t j0 = 0; j0 < tp; j0 += 16) _mm512_storeu_ps(srow + j0, _mm512_mul_ps(_mm512_loadu_ps(srow + j0), inv));
                if (bf) cgb_round_rows(srow, 1, tp, L.lds, pw + ii * L.ldpd, L.ldpd);
                continue;
            }
            const __m512 inv = _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(sum0, sum1))));
            for (size_t j0 = 0; j0 < tp; j0 += 16) {
                __m512 p = _mm512_mul_ps(_mm512_loadu_ps(srow + j0), inv);
                _mm512_storeu_pd(prow + j0, _mm512_cvtps_pd(_mm512_castps512_ps256(p)));
                _mm512_storeu_pd(prow + j0 + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(p, 1)));
            }
        }
        if (bf) gemm_bf16(native, mb, d, tp / 2, pw, L.ldpd, vw, B.ldvw, out + i0 * ldo, ldo, 1.0f);
        else if (f32pv) gemm_wide(mb, d, t, sb, L.lds, v, ldv, out + i0 * ldo, ldo);
        else probs_times_values(mb, d, t, pd, L.ldpd, vd, ldvd, out + i0 * ldo, ldo);
    }
}

AVX512 void dk_attention_head_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                     const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                     size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                     float *out, size_t ldo, float *scratch) {
    head(0, t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, NULL, NULL, 0, span, by_distance, key_mask, scale, out, ldo,
         scratch);
}

AVX512 void dk_attention_position_transposed_avx512(const float *p, size_t rows, size_t d, size_t ldp, float *dst,
                                                   size_t ldd) {
    transpose(p, rows, d, ldp, dst, ldd, rows);
}

AVX512 void dk_attention_head_transposed_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k,
                                                size_t ldk, const float *v, size_t ldv, const float *pkt,
                                                const float *pqt, size_t ldt, size_t span, const int32_t *by_distance,
                                                const uint8_t *key_mask, float scale, float *out, size_t ldo,
                                                float *scratch) {
    head(0, t, d, q, ldq, k, ldk, v, ldv, NULL, NULL, 0, pkt, pqt, ldt, span, by_distance, key_mask, scale, out, ldo,
         scratch);
}

AVX512 void dk_attention_head_f32_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                         const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                         const float *pkt, const float *pqt, size_t ldt, size_t span,
                                         const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                                         size_t ldo, float *scratch) {
    head(3, t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, pkt, pqt, ldt, span, by_distance, key_mask, scale, out, ldo,
         scratch);
}

AVX512 void dk_attention_head_bf16_avx512(int native, size_t t, size_t d, const float *q, size_t ldq, const float *k,
                                          size_t ldk, const float *v, size_t ldv, const float *pk, const float *pq,
                                          size_t ldp, const uint32_t *pkw, const uint32_t *pqw, size_t ldw, size_t span,
                                          const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                                          size_t ldo, float *scratch) {
    head(native ? 1 : 2, t, d, q, ldq, k, ldk, v, ldv, pk, pq, ldp, pkw, pqw, ldw, span, by_distance, key_mask, scale,
         out, ldo, scratch);
}

#else
int dk_has_avx512(void) { return 0; }
size_t dk_attention_scratch_avx512(size_t t, size_t d, size_t span) { (void)t; (void)d; (void)span; return 0; }
void dk_attention_head_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                              const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp, size_t span,
                              const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                              size_t ldo, float *scratch) {
    (void)t; (void)d; (void)q; (void)ldq; (void)k; (void)ldk; (void)v; (void)ldv; (void)pk; (void)pq; (void)ldp;
    (void)span; (void)by_distance; (void)key_mask; (void)scale; (void)out; (void)ldo; (void)scratch;
}
void dk_exp_avx512_rows(const float *x, float *y, size_t n) { (void)x; (void)y; (void)n; }
size_t dk_attention_bf16_scratch_avx512(size_t t, size_t d, size_t span) { (void)t; (void)d; (void)span; return 0; }
void dk_attention_head_bf16_avx512(int native, size_t t, size_t d, const float *q, size_t ldq, const float *k,
                                   size_t ldk, const float *v, size_t ldv, const float *pk, const float *pq,
                                   size_t ldp, const uint32_t *pkw, const uint32_t *pqw, size_t ldw, size_t span,
                                   const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                                   size_t ldo, float *scratch) {
    (void)native; (void)t; (void)d; (void)q; (void)ldq; (void)k; (void)ldk; (void)v; (void)ldv; (void)pk; (void)pq;
    (void)ldp; (void)pkw; (void)pqw; (void)ldw; (void)span; (void)by_distance; (void)key_mask; (void)scale; (void)out;
    (void)ldo; (void)scratch;
}
void dk_attention_head_f32_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                  const float *v, size_t ldv, const float *pk, const float *pq, size_t ldp,
                                  const float *pkt, const float *pqt, size_t ldt, size_t span,
                                  const int32_t *by_distance, const uint8_t *key_mask, float scale, float *out,
                                  size_t ldo, float *scratch) {
    (void)t; (void)d; (void)q; (void)ldq; (void)k; (void)ldk; (void)v; (void)ldv; (void)pk; (void)pq; (void)ldp;
    (void)pkt; (void)pqt; (void)ldt; (void)span; (void)by_distance; (void)key_mask; (void)scale; (void)out; (void)ldo;
    (void)scratch;
}
void dk_attention_bf16_position_words_avx512(const float *p, size_t rows, size_t d, size_t ldp, uint32_t *words,
                                             size_t ldw, uint32_t *stage) {
    (void)p; (void)rows; (void)d; (void)ldp; (void)words; (void)ldw; (void)stage;
}
void dk_attention_position_transposed_avx512(const float *p, size_t rows, size_t d, size_t ldp, float *dst, size_t ldd) {
    (void)p; (void)rows; (void)d; (void)ldp; (void)dst; (void)ldd;
}
void dk_attention_head_transposed_avx512(size_t t, size_t d, const float *q, size_t ldq, const float *k, size_t ldk,
                                         const float *v, size_t ldv, const float *pkt, const float *pqt, size_t ldt,
                                         size_t span, const int32_t *by_distance, const uint8_t *key_mask, float scale,
                                         float *out, size_t ldo, float *scratch) {
    (void)t; (void)d; (void)q; (void)ldq; (void)k; (void)ldk; (void)v; (void)ldv; (void)pkt; (void)pqt; (void)ldt;
    (void)span; (void)by_distance; (void)key_mask; (void)scale; (void)out; (void)ldo; (void)scratch;
}
#endif
