/* bf16 products: rounding, packing, the scalar reference and the run-time dispatch. The contract is in
 * include/cgemm_bf16.h. */
#include "gemm_bf16_internal.h"
#include "cpufeatures.h"
#include <string.h>

#pragma STDC FP_CONTRACT OFF

/* 0 = scalar, 1 = AVX2 + FMA emulation, 2 = AVX-512 F emulation, 3 = AVX-512 BF16 (vdpbf16ps). */
static int cgb_level_of(unsigned f) {
    if (!(f & CPU_AVX2_FMA)) return 0;
    if (!(f & CPU_AVX512F)) return 1;
    return (f & CPU_AVX512_BF16) ? 3 : 2;
}
static int cgb_level(void) { return cgb_level_of(cpu_usable()); }
static int cgb_cpu_level(void) { return cgb_level_of(cpu_features()); }

const char *cgb_kernel_isa(void) {
    static const char *names[] = {"scalar", "avx2", "avx512", "avx512bf16"};
    return names[cgb_level()];
}

uint16_t cgb_from_f32(float x) { return (uint16_t)cgb_round_bits(x); }
float cgb_to_f32(uint16_t h) { return cgb_widen(h); }

size_t cgb_pairs(size_t k) { return (k + 1) / 2; }
size_t cgb_packed_words(size_t n, size_t k) { return (n + CGB_NR - 1) / CGB_NR * CGB_NR * cgb_pairs(k); }

void cgb_pack_panels(const float *w, size_t n, size_t k, size_t ldw, uint32_t *packed, size_t p0, size_t p1) {
    const size_t pairs = cgb_pairs(k);
    /* Each weight row is rounded into words by cgb_round_rows (SIMD where the CPU has it: the same bits), a chunk
     * of CGB_PACK_CHUNK words at a time, then spread to its column of the panel. */
    enum { CGB_PACK_CHUNK = 1024 };
    uint32_t words[CGB_PACK_CHUNK];
    for (size_t p = p0; p < p1; p++) {
        uint32_t *dst = packed + p * CGB_NR * pairs;
        for (size_t j = 0; j < CGB_NR; j++) {
            size_t o = p * CGB_NR + j;
            if (o >= n) {
                for (size_t i = 0; i < pairs; i++) dst[i * CGB_NR + j] = 0;
                continue;
            }
            for (size_t i0 = 0; i0 < pairs; i0 += CGB_PACK_CHUNK) {
                size_t in = pairs - i0 < CGB_PACK_CHUNK ? pairs - i0 : CGB_PACK_CHUNK;
                size_t k0 = 2 * i0, kn = k - k0 < 2 * in ? k - k0 : 2 * in;
                cgb_round_rows(w + o * ldw + k0, 1, kn, ldw, words, CGB_PACK_CHUNK);
                for (size_t i = 0; i < in; i++) dst[(i0 + i) * CGB_NR + j] = words[i];
            }
        }
    }
}

void cgb_pack_weights(const float *w, size_t n, size_t k, size_t ldw, uint32_t *packed) {
    cgb_pack_panels(w, n, k, ldw, packed, 0, (n + CGB_NR - 1) / CGB_NR);
}

void cgb_round_rows_scalar(const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb) {
    const size_t pairs = cgb_pairs(k);
    for (size_t r = 0; r < m; r++) {
        const float *xr = x + r * ldx;
        uint32_t *dst = xb + r * ldxb;
        for (size_t i = 0; i < pairs; i++) {
            uint32_t lo = cgb_round_bits(xr[2 * i]);
            uint32_t hi = 2 * i + 1 < k ? cgb_round_bits(xr[2 * i + 1]) : 0;
            dst[i] = lo | hi << 16;
        }
    }
}

void cgb_round_rows(const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb) {
#if defined(__x86_64__)
    int level = cgb_level();
    if (level >= 2) {
        cgb_round_rows_avx512(x, m, k, ldx, xb, ldxb);
        return;
    }
    if (level == 1) {
        cgb_round_rows_avx2(x, m, k, ldx, xb, ldxb);
        return;
    }
#endif
    cgb_round_rows_scalar(x, m, k, ldx, xb, ldxb);
}

void cgb_column_range(size_t n, size_t parts, size_t part, size_t *begin, size_t *end) {
    size_t panels = (n + CGB_NR - 1) / CGB_NR;
    if (parts == 0) parts = 1;
    if (part >= parts) {
        *begin = *end = n;
        return;
    }
    size_t b = panels * part / parts, e = panels * (part + 1) / parts;
    *begin = b * CGB_NR < n ? b * CGB_NR : n;
    *end = e * CGB_NR < n ? e * CGB_NR : n;
}

static int cgb_range_ok(size_t n, size_t n_begin, size_t n_end) {
    if (n_begin % CGB_NR != 0 || n_begin > n_end || n_end > n) return 0;
    return n_end % CGB_NR == 0 || n_end == n;
}

void cgb_gemm_packed_scalar(size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb, const uint32_t *packed,
                            const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                            size_t n_begin, size_t n_end) {
    if (!cgb_range_ok(n, n_begin, n_end)) return;
    const size_t pairs = cgb_pairs(k);
    const int use_bias = bias != NULL && epilogue >= CG_EPILOGUE_BIAS && epilogue <= CG_EPILOGUE_BIAS_RESIDUAL;
    for (size_t r = 0; r < m; r++) {
        const uint32_t *xr = xb + r * ldxb;
        for (size_t o = n_begin; o < n_end; o++) {
            const uint32_t *wp = packed + (o / CGB_NR) * CGB_NR * pairs + o % CGB_NR;
            float a = use_bias ? bias[o] : 0.0f;
            if (epilogue == CG_EPILOGUE_BIAS_RESIDUAL) {
                float res = residual[r * ldr + o];
                a = use_bias ? a + res : res;
            }
            a = cgb_daz(a);
            for (size_t i = 0; i < pairs; i++) {
                uint32_t xw = xr[i], ww = wp[i * CGB_NR];
                a = cgb_daz(fmaf(cgb_widen(xw >> 16), cgb_widen(ww >> 16), a));
                a = cgb_daz(fmaf(cgb_widen(xw & 0xffffu), cgb_widen(ww & 0xffffu), a));
            }
            y[r * ldy + o] = epilogue == CG_EPILOGUE_BIAS_GELU ? cg_gelu_ref(a) : a;
        }
    }
}

void cgb_gemm_packed(size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb, const uint32_t *packed,
                     const float *bias, int epilogue, const float *residual, size_t ldr, float *y, size_t ldy,
                     size_t n_begin, size_t n_end) {
    if (m == 0 || n_begin >= n_end || !cgb_range_ok(n, n_begin, n_end)) return;
#if defined(__x86_64__)
    int level = cgb_level();
    if (k > 0 && level >= 2) {
        cgb_gemm_packed_avx512(level == 3, m, n, k, xb, ldxb, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
        return;
    }
    if (k > 0 && level == 1) {
        cgb_gemm_packed_avx2(m, n, k, xb, ldxb, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
        return;
    }
#endif
    cgb_gemm_packed_scalar(m, n, k, xb, ldxb, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
}

static int cgb_isa_level(const char *isa) {
    if (strcmp(isa, "scalar") == 0) return 0;
    if (strcmp(isa, "avx2") == 0) return 1;
    if (strcmp(isa, "avx512") == 0) return 2;
    if (strcmp(isa, "avx512bf16") == 0) return 3;
    return -1;
}

int cgb_gemm_packed_isa(const char *isa, size_t m, size_t n, size_t k, const uint32_t *xb, size_t ldxb,
                        const uint32_t *packed, const float *bias, int epilogue, const float *residual, size_t ldr,
                        float *y, size_t ldy, size_t n_begin, size_t n_end) {
    int want = cgb_isa_level(isa);
    if (want < 0 || want > cgb_cpu_level()) return 0;
    if (want == 0 || m == 0 || n_begin >= n_end || !cgb_range_ok(n, n_begin, n_end) || k == 0) {
        cgb_gemm_packed_scalar(m, n, k, xb, ldxb, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
        return 1;
    }
#if defined(__x86_64__)
    if (want >= 2)
        cgb_gemm_packed_avx512(want == 3, m, n, k, xb, ldxb, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
    else
        cgb_gemm_packed_avx2(m, n, k, xb, ldxb, packed, bias, epilogue, residual, ldr, y, ldy, n_begin, n_end);
    return 1;
#else
    return 0;
#endif
}

int cgb_round_rows_isa(const char *isa, const float *x, size_t m, size_t k, size_t ldx, uint32_t *xb, size_t ldxb) {
    int want = cgb_isa_level(isa);
    if (want < 0 || want > 2 || want > cgb_cpu_level()) return 0;
#if defined(__x86_64__)
    if (want == 2) {
        cgb_round_rows_avx512(x, m, k, ldx, xb, ldxb);
        return 1;
    }
    if (want == 1) {
        cgb_round_rows_avx2(x, m, k, ldx, xb, ldxb);
        return 1;
    }
#endif
    cgb_round_rows_scalar(x, m, k, ldx, xb, ldxb);
    return 1;
}
