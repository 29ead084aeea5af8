#ifndef DEBERTA_CGEMM_BF16_INTERNAL_H
#define DEBERTA_CGEMM_BF16_INTERNAL_H
/* Private to CGemm's bf16 products: the scalar twins of the SIMD steps and the kernels' prototypes. */
#include "cgemm_bf16.h"
#include "gemm_internal.h"

#define CGB_NR CGB_PANEL

/* bf16 bits of x, as documented in cgemm_bf16.h (the SIMD versions do these integer steps lane by lane). */
static inline uint32_t cgb_round_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0) return (u & 0x80000000u) >> 16;              /* ±0, subnormals: ±0 */
    if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 0x0040u) & 0xffffu; /* NaN: quiet */
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;                             /* nearest even */
}

static inline float cgb_widen(uint32_t h) { return cg_f32_from_bits(h << 16); }

/* The flush of vdpbf16ps: subnormal results (and inputs) count as zero of the same sign. */
static inline float cgb_daz(float v) { return fabsf(v) < 0x1p-126f ? copysignf(0.0f, v) : v; }

#if defined(__x86_64__)
void cgb_gemm_packed_avx512(int native, size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb,
                            const uint32_t *packed, const float *bias, int epilogue, const float *residual, size_t ldr,
                            float *y, size_t ldy, size_t n_begin, size_t n_end);
void cgb_gemm_packed_avx2(size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb, const uint32_t *packed,
                          const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                          size_t n_begin, size_t n_end);
void cgb_round_rows_avx512(const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb);
void cgb_round_rows_avx2(const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb);
#endif

#endif
